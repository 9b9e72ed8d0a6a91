"""ARM's subscription throttling: token buckets for reads and writes (off unless asked for).

Azure Resource Manager: per subscription (and region) a bucket of 250 reads refilled at 25/s
and 200 writes refilled at 10/s (docs/azure-facts.md, "Throttling"). Past it: 429 with
Retry-After; every answer carries x-ms-ratelimit-remaining-subscription-{reads,writes}.
"""

from __future__ import annotations

import math
import threading
import time

DEFAULT = {"reads": (250, 25.0), "writes": (200, 10.0)}


class Bucket:
    def __init__(self, burst: int, rate: float):
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> tuple[bool, int, float]:
        """-> (allowed, remaining, seconds until one token is back)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, int(self.tokens), 0.0
        return False, 0, (1 - self.tokens) / self.rate


class Throttle:
    def __init__(self, limits: dict | None = None):
        self.limits = {**DEFAULT, **(limits or {})}
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def take(self, subscription: str, write: bool) -> tuple[bool, dict]:
        kind = "writes" if write else "reads"
        with self._lock:
            bucket = self._buckets.get((subscription.lower(), kind))
            if bucket is None:
                bucket = Bucket(*self.limits[kind])
                self._buckets[(subscription.lower(), kind)] = bucket
            ok, remaining, wait = bucket.take()
        headers = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return ok, headers
