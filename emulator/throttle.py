"""ARM's subscription throttling: token buckets for reads, writes and deletes (off unless asked
for).

Azure Resource Manager (docs, *Understand how Azure Resource Manager throttles requests*, the
regional token-bucket limits of 2024): per subscription, service principal and operation type a
bucket of 250 reads refilled at 25/s, 200 writes at 10/s and 200 deletes at 10/s, and a global
subscription bucket 15 times as large shared by every principal. Past either: 429 with
Retry-After. Every answer carries x-ms-ratelimit-remaining-subscription-{kind} and
x-ms-ratelimit-remaining-subscription-global-{kind} (as seen in azure-powershell#26256).
"""

from __future__ import annotations

import math
import threading
import time

DEFAULT = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}
GLOBAL_FACTOR = 15  # the global subscription limit: 15x one principal's


class Bucket:
    def __init__(self, burst: int, rate: float):
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def available(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def wait(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, (1 - self.tokens) / self.rate)

    def take(self) -> tuple[bool, int, float]:
        """-> (allowed, remaining, seconds until one token is back)."""
        if self.available() >= 1:
            self.tokens -= 1
            return True, int(self.tokens), 0.0
        return False, 0, self.wait()


def kind_of(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


class Throttle:
    def __init__(self, limits: dict | None = None):
        self.limits = {**DEFAULT, **(limits or {})}
        self._lock = threading.Lock()
        self._buckets: dict[tuple, Bucket] = {}

    def _bucket(self, key: tuple, burst: int, rate: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(burst, rate)
        return bucket

    def take(self, subscription: str, method: str, principal: str | None = None
             ) -> tuple[bool, dict]:
        kind = kind_of(method)
        burst, rate = self.limits[kind]
        sub = subscription.lower()
        with self._lock:
            own = self._bucket((sub, kind, principal or ""), burst, rate)
            shared = self._bucket((sub, kind, "*"), burst * GLOBAL_FACTOR, rate * GLOBAL_FACTOR)
            ok = own.available() >= 1 and shared.available() >= 1
            if ok:
                own.take()
                shared.take()
            wait = 0.0 if ok else max(b.wait() for b in (own, shared) if b.tokens < 1)
        headers = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(int(own.tokens)),
                   f"x-ms-ratelimit-remaining-subscription-global-{kind}": str(int(shared.tokens))}
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return ok, headers
