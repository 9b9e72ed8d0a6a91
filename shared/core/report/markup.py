"""Pure: the small text helpers every part of the report page uses; every estate name is
untrusted, so every text and attribute goes through `escape`."""

from __future__ import annotations

import html
import ipaddress
from typing import Any


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def pct(p: Any) -> str:
    try:
        return f"{round(float(p) * 100)}%"
    except (TypeError, ValueError):
        return "?"


def ip_key(ip: Any) -> tuple:
    """Sort key: addresses in numeric order, anything unparsable last."""
    try:
        a = ipaddress.ip_address(str(ip))
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, str(ip))
