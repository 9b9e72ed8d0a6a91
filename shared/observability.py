"""Structured logs with correlation IDs, optional OpenTelemetry, and a tiny counter API.

Correlation: `correlate(event_id=..., finding_id=..., plan_hash=..., operation_id=...)` is a
context manager (contextvars: safe across threads started inside it with `copy_context`, and
across asyncio tasks); every log record emitted inside it carries those IDs as attributes,
added by `CorrelationFilter`. OpenTelemetry's logging handler (what `configure_azure_monitor()`
installs) exports non-standard record attributes as Application Insights customDimensions, so
the IDs become queryable columns (`customDimensions.finding_id`). Without OpenTelemetry the
Functions host only forwards the message text, so the filter can also append the IDs to the
message (`annotate=True`, the default `setup()` chooses when no exporter is configured).

OpenTelemetry: `setup()` calls `azure.monitor.opentelemetry.configure_azure_monitor()` only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, importing it lazily; when the variable is not set
nothing is imported or configured. A user-assigned identity for Entra ID ingestion is taken
from APPLICATIONINSIGHTS_AUTHENTICATION_STRING (`ClientId=<id>;Authorization=AAD`).

Counters: `counters.add("findings", 3, severity="high")`; names are `findings`,
`remediations`, `failures`, `drift` (others are allowed). Values are kept in process (for
tests, health output and summaries) and, once OpenTelemetry is configured, also recorded on an
OTel meter (`hairpin.<name>`) that Azure Monitor exports as customMetrics.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

__all__ = [
    "CORRELATION_KEYS",
    "correlate",
    "current",
    "CorrelationFilter",
    "CorrelationAdapter",
    "get_logger",
    "setup",
    "current_filter",
    "reset",
    "Counters",
    "counters",
    "COUNTER_NAMES",
    "record_findings",
    "record_outcome",
    "record_drift",
]

# The IDs that tie a log line to an event, a finding, an approved plan and a long apply.
CORRELATION_KEYS: tuple[str, ...] = ("event_id", "finding_id", "plan_hash", "operation_id",
                                     "vm_id", "trigger")
COUNTER_NAMES: tuple[str, ...] = ("findings", "remediations", "failures", "drift")
_MAX_VALUE = 512  # a correlation value longer than this is cut (ARM ids are < 300 chars)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "hairpin_correlation", default=_EMPTY)


def current() -> dict[str, str]:
    """The correlation IDs in effect here (a copy)."""
    return dict(_context.get())


def _clean(value: Any) -> str:
    text = str(value)
    # One line, bounded: values end up in log text and in customDimensions.
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


@contextmanager
def correlate(**ids: Any) -> Iterator[dict[str, str]]:
    """Add IDs to the correlation context for the duration of the block (nested blocks add to
    and may override the outer ones; None values are ignored). Unknown keys are rejected so a
    typo cannot silently lose a correlation ID."""
    unknown = set(ids) - set(CORRELATION_KEYS)
    if unknown:
        raise ValueError(f"unknown correlation keys {sorted(unknown)}; "
                         f"use {', '.join(CORRELATION_KEYS)}")
    merged = dict(_context.get())
    merged.update({k: _clean(v) for k, v in ids.items() if v is not None})
    token = _context.set(merged)
    try:
        yield dict(merged)
    finally:
        _context.reset(token)


class CorrelationFilter(logging.Filter):
    """Puts the correlation IDs on every record as attributes (`record.finding_id`, ...) and as
    `record.correlation` (`"event_id=... finding_id=..."`, empty when none). With
    `annotate=True` the IDs are also appended to the message, for sinks that keep only text."""

    def __init__(self, annotate: bool = False) -> None:
        super().__init__()
        self.annotate = annotate

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for key in CORRELATION_KEYS:
            # Explicit `extra={...}` on the call wins over the context.
            if not hasattr(record, key) and key in ids:
                setattr(record, key, ids[key])
        present = {k: getattr(record, k) for k in CORRELATION_KEYS
                   if getattr(record, k, None) is not None}
        record.correlation = " ".join(f"{k}={v}" for k, v in present.items())
        if self.annotate and present and not getattr(record, "_hairpin_annotated", False):
            record.msg = f"{record.getMessage()} [{record.correlation}]"
            record.args = None
            record._hairpin_annotated = True
        return True


class CorrelationAdapter(logging.LoggerAdapter):
    """`get_logger(__name__, finding_id=...)`: fixed IDs for one logger, merged with the
    context's (the record attributes are set through `extra`)."""

    def process(self, msg, kwargs):
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def get_logger(name: str, **ids: Any) -> logging.Logger | CorrelationAdapter:
    logger = logging.getLogger(name)
    if not ids:
        return logger
    unknown = set(ids) - set(CORRELATION_KEYS)
    if unknown:
        raise ValueError(f"unknown correlation keys {sorted(unknown)}")
    return CorrelationAdapter(logger, {k: _clean(v) for k, v in ids.items() if v is not None})


# --------------------------------------------------------------------------- setup

_setup_lock = threading.Lock()
_state: dict[str, Any] = {"done": False, "otel": False, "filter": None}


def _client_id_from_auth_string(text: str | None) -> str | None:
    """`ClientId=<guid>;Authorization=AAD` -> the guid (App Insights' documented format)."""
    if not text:
        return None
    parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    return parts.get("ClientId") or None


def setup(environ: Mapping[str, str] | None = None, *, logger: logging.Logger | None = None,
          configure=None) -> dict[str, Any]:
    """Install the correlation filter on `logger`'s handlers (default: the root logger) and, when
    APPLICATIONINSIGHTS_CONNECTION_STRING is set, configure Azure Monitor OpenTelemetry.
    Idempotent. `configure` replaces `configure_azure_monitor` (tests). Returns the state:
    `{"otel": bool, "reason": str}`."""
    environ = os.environ if environ is None else environ
    with _setup_lock:
        root = logger or logging.getLogger()
        connection = (environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or "").strip()
        reason = "APPLICATIONINSIGHTS_CONNECTION_STRING not set"
        if connection and not _state["otel"]:
            try:
                if configure is None:
                    from azure.monitor.opentelemetry import configure_azure_monitor as configure
                kwargs: dict[str, Any] = {"connection_string": connection,
                                          "logger_name": root.name if logger else None}
                kwargs = {k: v for k, v in kwargs.items() if v is not None}
                client_id = _client_id_from_auth_string(
                    environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"))
                if client_id:
                    from azure.identity import ManagedIdentityCredential

                    kwargs["credential"] = ManagedIdentityCredential(client_id=client_id)
                configure(**kwargs)
                _state["otel"] = True
                reason = "configured"
            except ImportError as exc:
                reason = f"azure-monitor-opentelemetry not installed ({exc.name})"
                logging.getLogger(__name__).warning(
                    "Application Insights connection string is set but %s; logs go to the "
                    "Functions host only", reason)
        elif _state["otel"]:
            reason = "configured"
        flt = _state["filter"]
        if flt is None:
            flt = _state["filter"] = CorrelationFilter()
        # Text-only sinks get the IDs in the message; OTel exports them as attributes.
        flt.annotate = not _state["otel"]
        for handler in root.handlers:
            if flt not in handler.filters:
                handler.addFilter(flt)
        if flt not in root.filters:
            root.addFilter(flt)  # records logged on the root logger itself
        _state["done"] = True
        return {"otel": _state["otel"], "reason": reason}


def current_filter() -> CorrelationFilter | None:
    """The correlation filter `setup()` installed (None before it ran)."""
    return _state["filter"]


def reset() -> None:
    """Forget what `setup()` did (for tests of setup itself; handlers keep their filters)."""
    with _setup_lock:
        _state.update({"done": False, "otel": False, "filter": None})


def install_filter(handler: logging.Handler, annotate: bool = False) -> CorrelationFilter:
    """Attach a correlation filter to one handler (e.g. a test's or the CLI's)."""
    flt = CorrelationFilter(annotate=annotate)
    handler.addFilter(flt)
    return flt


# --------------------------------------------------------------------------- counters


class Counters:
    """In-process counters with labels, mirrored to OpenTelemetry when it is configured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._otel: dict[str, Any] = {}

    def add(self, name: str, amount: int = 1, **labels: Any) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"counter name {name!r}: letters, digits and _ only")
        key = (name, tuple(sorted((k, _clean(v)) for k, v in labels.items() if v is not None)))
        with self._lock:
            self._values[key] += amount
        if _state["otel"]:
            self._otel_add(name, amount, dict(key[1]))

    def _otel_add(self, name: str, amount: int, labels: dict) -> None:
        try:
            instrument = self._otel.get(name)
            if instrument is None:
                from opentelemetry import metrics

                meter = metrics.get_meter("hairpin")
                instrument = self._otel[name] = meter.create_counter(
                    f"hairpin.{name}", unit="1", description=f"hairpin {name}")
            instrument.add(amount, labels)
        except Exception:  # noqa: BLE001 - telemetry must never break the product
            logging.getLogger(__name__).debug("counter %s not exported", name, exc_info=True)

    def get(self, name: str, **labels: Any) -> int:
        """Sum of `name` over every label set that includes `labels`."""
        want = {(k, _clean(v)) for k, v in labels.items()}
        with self._lock:
            return sum(v for (n, lbl), v in self._values.items()
                       if n == name and want <= set(lbl))

    def snapshot(self) -> dict[str, int]:
        """Totals by name (labels summed)."""
        out: Counter[str] = Counter()
        with self._lock:
            for (name, _), value in self._values.items():
                out[name] += value
        return dict(out)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


counters = Counters()


# --------------------------------------------------------------------------- one-line wiring
# Helpers the services (or the triggers) call with the objects they already have; duck-typed so
# this module imports none of them.

def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def record_findings(findings: Any, *, source: str = "audit") -> int:
    """Count findings by severity (`hairpin.findings{severity, source}`); returns the total."""
    total = 0
    for finding in findings or ():
        counters.add("findings", 1, severity=_field(finding, "severity", "unknown"),
                     source=source)
        total += 1
    return total


def record_outcome(outcome: Any, *, trigger: str | None = None) -> str:
    """Count a remediation outcome: `remediations{status}` for every outcome that changed
    something or verified, `failures{status}` for failed ones. Returns the status."""
    status = str(_field(outcome, "status", "unknown")).lower()
    if status in ("applied", "verified", "repaired"):
        counters.add("remediations", 1, status=status, trigger=trigger)
    elif status == "failed":
        counters.add("failures", 1, status=status, trigger=trigger)
    return status


def record_drift(summary: Any) -> int:
    """Count a sweep's drift by kind (`drift{kind}`) from its summary's `drift` mapping."""
    total = 0
    for kind, count in (_field(summary, "drift", None) or {}).items():
        if count:
            counters.add("drift", int(count), kind=kind)
            total += int(count)
    return total
