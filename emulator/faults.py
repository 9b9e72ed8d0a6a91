"""Fault injection per route: throttling, server errors, failed LROs, dropped connections, delay,
and actions that change the world while a request is in flight."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_CODES = {
    400: "BadRequest",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class Fault:
    """One rule. `times=None` fires forever; `hits` counts how often it fired.

    status: answer with this status and ARM's error body (with Retry-After when given).
    lro_failed: let the request start normally but end its long-running operation as Failed
        (the change is not applied).
    drop_connection: close the socket without any response.
    delay_seconds: sleep before answering (combined with the above or alone).
    action: call this before answering (e.g. someone starts a VM just as our read arrives);
        alone, the request is then served normally.
    must_fire: a rule that never fired means the test did not test what it says (the tests'
        emulator fixture checks it); False for a rule that guards against a request.
    """

    method: str | None = None
    path: str = ".*"
    status: int | None = None
    retry_after: float | None = None
    times: int | None = 1
    error_code: str | None = None
    message: str | None = None
    lro_failed: bool = False
    drop_connection: bool = False
    delay_seconds: float = 0.0
    action: Callable[[], None] | None = None
    must_fire: bool = True
    hits: int = 0
    _rx: re.Pattern = field(init=False, repr=False)

    def __post_init__(self):
        self._rx = re.compile(self.path, re.IGNORECASE)

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return bool(self._rx.search(path))

    @property
    def changes_the_answer(self) -> bool:
        return bool(self.status or self.lro_failed or self.drop_connection or self.delay_seconds)

    @property
    def code(self) -> str:
        return self.error_code or DEFAULT_CODES.get(self.status or 500, "InternalServerError")

    def text(self) -> str:
        if self.message:
            return self.message
        if self.status == 429:
            return "The request is being throttled. Please retry after the time in Retry-After."
        return "Injected fault from the emulator."


class Faults:
    """Ordered rule list; the first matching rule fires and uses up one of its `times`."""

    def __init__(self):
        self._lock = threading.Lock()
        self.rules: list[Fault] = []

    def add(
        self,
        method: str | None = None,
        path: str = ".*",
        status: int | None = None,
        *,
        retry_after: float | None = None,
        times: int | None = 1,
        error_code: str | None = None,
        message: str | None = None,
        lro_failed: bool = False,
        drop_connection: bool = False,
        delay_seconds: float = 0.0,
        action: Callable[[], None] | None = None,
        must_fire: bool = True,
    ) -> Fault:
        rule = Fault(
            method=method,
            path=path,
            status=status,
            retry_after=retry_after,
            times=times,
            error_code=error_code,
            message=message,
            lro_failed=lro_failed,
            drop_connection=drop_connection,
            delay_seconds=delay_seconds,
            action=action,
            must_fire=must_fire,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def unfired(self) -> list[str]:
        """The rules that must fire and never did (method and path)."""
        with self._lock:
            return [f"{r.method or '*'} {r.path}" for r in self.rules
                    if r.must_fire and r.hits == 0]

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None
