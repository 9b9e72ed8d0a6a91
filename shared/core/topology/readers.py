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

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- small readers


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _ref(value: Any) -> str | None:
    """`{"id": "..."}` -> the id text."""
    if type(value) is dict:
        rid = value.get("id")
        if type(rid) is str and rid:
            return rid
    return None


_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def _ip(value: Any) -> str | None:
    """Canonical address text, or None. Dotted-quad IPv4 (the common case) skips `ipaddress`."""
    if not isinstance(value, str):
        return None
    if _IPV4.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _tags(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        return _EMPTY
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _vnet_of_subnet(subnet_key: str | None) -> str | None:
    if subnet_key is None:
        return None
    head, sep, _ = subnet_key.rpartition("/subnets/")
    return head if sep else None


def _parent_key(key: str, child_segment: str) -> str:
    """`/.../networkinterfaces/n/ipconfigurations/c` with '/ipconfigurations/' -> NIC key."""
    head, sep, _ = key.rpartition(child_segment)
    return head if sep else key


def _lb_key_of(key: str) -> str:
    # .../providers/microsoft.network/loadbalancers/{name}/{childType}/{child}
    parts = key.split("/")
    try:
        i = parts.index("loadbalancers")
    except ValueError:
        return key
    return "/".join(parts[: i + 2])


def _name(doc: Mapping[str, Any], rid: str) -> str:
    return _str(doc.get("name")) or rid.rstrip("/").rsplit("/", 1)[-1]


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str)
