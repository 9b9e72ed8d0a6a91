"""Retry policy for ARM calls that never sleeps past the caller's time budget.

azure-core's RetryPolicy honours Retry-After, which is right for short throttles (ARM 429s,
Microsoft.Network's RetryableErrorDueToAnotherOperation). A function invocation has a hard
timeout, though: sleeping for a long Retry-After would get it killed mid-remediation. This
policy raises RetryBudgetExceeded instead, so the caller can stop cleanly and leave a
resumable record (Cloud Custodian gives up past 45 s for the same reason).
"""

from __future__ import annotations

import time

from azure.core.pipeline.policies import RetryPolicy


class RetryBudgetExceeded(Exception):
    """The server asked us to wait longer than the remaining budget allows."""

    def __init__(self, retry_after: float, remaining: float) -> None:
        super().__init__(
            f"ARM asked to retry after {retry_after:.0f} s; only {remaining:.0f} s of budget left"
        )
        self.retry_after = retry_after
        self.remaining = remaining


class BudgetedRetryPolicy(RetryPolicy):
    """RetryPolicy that refuses a Retry-After longer than `max_retry_after` or the deadline."""

    def __init__(
        self,
        *,
        max_retry_after: float = 45.0,
        deadline: float | None = None,
        clock=time.monotonic,
        **kwargs,
    ) -> None:
        kwargs.setdefault("retry_total", 8)
        kwargs.setdefault("retry_backoff_factor", 0.8)
        kwargs.setdefault("retry_backoff_max", 30)
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self._clock = clock

    def get_retry_after(self, response):
        retry_after = super().get_retry_after(response)
        if retry_after is None:
            return None
        remaining = self.max_retry_after
        if self.deadline is not None:
            remaining = min(remaining, self.deadline - self._clock())
        if retry_after > remaining:
            raise RetryBudgetExceeded(retry_after, max(remaining, 0.0))
        return retry_after
