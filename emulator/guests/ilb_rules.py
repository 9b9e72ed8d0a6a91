"""The internal load balancer as one nftables table: DNAT of VIP:port to the healthy backends,
spread per connection (``numgen inc`` round-robin, or ``numgen random``), no SNAT; floating-IP
rules are DSR (a connection mark picks the backend, the destination stays the VIP). Pure text:
the fabric loads it into its router namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from emulator.guests.scenario import IlbRule

TABLE = "hairpin_ilb"


@dataclass(frozen=True)
class DsrRoute:
    """One floating-IP backend: marked flows are policy-routed to it through its router port."""

    mark: int
    backend: IPv4Address
    port: str


def ilb_ruleset(rules: Iterable[IlbRule], backends_of: Callable[[IlbRule], list[IPv4Address]],
                port_of: Callable[[IPv4Address], str], *, deterministic: bool
                ) -> tuple[str, list[DsrRoute]]:
    """The table text (replaced atomically, which also resets the round-robin counters: each
    reload starts with the first backend) and the DSR routes it needs."""
    gen = "inc" if deterministic else "random"
    nat, mangle, dsr, mark = [], [], [], 0x100
    for rule in rules:
        backends = backends_of(rule)
        if rule.protocol == "All":
            match = f"ip daddr {rule.vip} meta l4proto {{ tcp, udp }}"
        else:
            match = f"ip daddr {rule.vip} {rule.protocol.lower()} dport {rule.frontend_port}"
        if not backends:
            nat.append(f"{match} drop")
            continue
        if rule.floating_ip:
            marks = []
            for i, ip in enumerate(backends):
                mark += 1
                marks.append(f"{i} : {mark:#x}")
                dsr.append(DsrRoute(mark, ip, port_of(ip)))
            mangle.append(f"{match} ct state new ct mark set numgen {gen} mod "
                          f"{len(backends)} map {{ {', '.join(marks)} }}")
            continue
        port_changes = rule.protocol != "All" and rule.backend_port != rule.frontend_port
        targets = ", ".join(f"{i} : {ip} . {rule.backend_port}" if port_changes
                            else f"{i} : {ip}" for i, ip in enumerate(backends))
        nat.append(f"{match} dnat ip to numgen {gen} mod {len(backends)} map {{ {targets} }}")
    lines = [f"table ip {TABLE} {{",
             "  chain dsr {", "    type filter hook prerouting priority mangle; policy accept;",
             *[f"    {x}" for x in mangle],
             # Only the original direction follows the mark: replies route normally.
             "    ct direction original ct mark != 0 meta mark set ct mark", "  }",
             "  chain ilb {", "    type nat hook prerouting priority dstnat; policy accept;",
             *[f"    {x}" for x in nat], "  }", "}"]
    return "\n".join(lines) + "\n", dsr
