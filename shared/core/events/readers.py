"""Pure: tolerant readers of event payload fields (a bad value reads as None, never raises)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["MAX_EVENT_BYTES", "text_of", "is_text", "short", "time_of", "mapping_of"]

MAX_EVENT_BYTES = 1_048_576  # Event Grid's own limit for one event (1 MB)


def text_of(value: Any, limit: int = 4096) -> str | None:
    """A non-empty string of at most `limit` characters, stripped; else None. A string with a
    lone surrogate (JSON allows "\\ud800") is not text: it cannot be encoded, stored or sent."""
    if isinstance(value, str) and value.strip() and len(value) <= limit \
            and (value.isascii() or is_text(value)):
        return value.strip()
    return None


def is_text(value: str) -> bool:
    """Can `value` be encoded as UTF-8 (no lone surrogate)?"""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def short(value: Any, limit: int = 80) -> str:
    """Printable and bounded, for reasons and log lines."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def time_of(value: Any) -> datetime | None | bool:
    """datetime, None when absent, False when present but not a time."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > 64:
        return False
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Event Grid sends up to 7 fractional digits; fromisoformat takes at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +14:00: no UTC time exists; read as absent
        return None


def mapping_of(value: Any) -> Mapping[str, Any] | None:
    """A JSON object given as a dict or as a JSON string (Event Grid sends both shapes)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip().startswith("{") and len(value) < MAX_EVENT_BYTES:
        try:
            loaded = json.loads(value)
        except ValueError:
            return None
        return loaded if isinstance(loaded, Mapping) else None
    return None
