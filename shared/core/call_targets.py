"""Pure: `VIP:port` targets a VM's services are declared to call (settings and the VM tag)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class CallTarget:
    """`VIP:port` a VM's services are declared to call; `port=None` means any port."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return host if self.port is None else f"{host}:{self.port}"

    def matches(self, ip: object, ports: tuple[int, ...] | list[int] = ()) -> bool:
        """Same VIP and (any port, or one of `ports`; port 0 = HA ports rule = every port)."""
        if str(self.ip) != str(ip):
            return False
        return self.port is None or self.port in ports or 0 in ports


_TARGET_SPLIT = re.compile(r"[,;\s]+")


_V6_TARGET = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?")


def parse_call_targets(text: str) -> tuple[CallTarget, ...]:
    """`"10.0.1.100:1972,10.0.1.101:1972"` -> targets (also `;`/space separated, `[v6]:port`)."""
    if not isinstance(text, str):
        raise ValueError(f"expected text like '10.0.1.100:1972', got {type(text).__name__}")
    targets: list[CallTarget] = []
    for item in _TARGET_SPLIT.split(text.strip()):
        if not item:
            continue
        v6 = _V6_TARGET.fullmatch(item)
        if v6:
            host, port_text = v6.group(1), v6.group(2)
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        else:
            host, port_text = item, None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{item!r} is not VIP[:port] (bad IP address {host!r})") from None
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"{item!r} is not VIP[:port] (port must be 1-65535)")
            port = int(port_text)
        targets.append(CallTarget(ip, port))
    return tuple(sorted(set(targets), key=lambda t: (t.ip.version, int(t.ip), t.port or 0)))
