"""Pure: tolerant readers of raw ARM document fields, for building the topology.

A missing or odd value reads as `None` (or an empty mapping/list), never an exception; the
builder (`shared.core.topology.build`) turns those into `Unknown` facts.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- small readers


def as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else EMPTY


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_bool(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def ref_id(value: Any) -> str | None:
    """`{"id": "..."}` -> the id text."""
    if type(value) is dict:
        rid = value.get("id")
        if type(rid) is str and rid:
            return rid
    return None


_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def as_ip(value: Any) -> str | None:
    """Canonical address text, or None. Dotted-quad IPv4 (the common case) skips `ipaddress`."""
    if not isinstance(value, str):
        return None
    if _IPV4.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def as_tags(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        return EMPTY
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def vnet_of_subnet(subnet_key: str | None) -> str | None:
    if subnet_key is None:
        return None
    head, sep, _ = subnet_key.rpartition("/subnets/")
    return head if sep else None


def name_or_last_segment(doc: Mapping[str, Any], rid: str) -> str:
    return as_str(doc.get("name")) or rid.rstrip("/").rsplit("/", 1)[-1]


def canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str)
