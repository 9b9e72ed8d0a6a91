"""Pure: Azure subnet address math.

Azure reserves five addresses in every subnet: the network address, the default gateway (first
usable, x.x.x.1 of a /24; 10.1.0.129 for 10.1.0.128/25), two addresses for Azure DNS, and the
broadcast address. Only the primary NIC gets the gateway via DHCP, so routes added for a
secondary NIC name it explicitly.

Choice of a free static address (documented contract, the planner relies on it): the first
*preferred* address that is free, in the order given, else the lowest free address. The risk
model prefers "primary IP + 1" (the seed article gives 10.0.1.10 the secondary 10.0.1.11), so
the choice is deterministic for a given estate and reads naturally to an operator.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "AZURE_RESERVED_LOW",
    "parse_prefix",
    "gateway",
    "reserved",
    "usable_count",
    "is_usable",
    "free_addresses",
    "choose_free_ip",
    "is_full",
    "AddressAllocator",
    "address_value",
]

# network address + gateway + two DNS addresses at the bottom of every subnet.
AZURE_RESERVED_LOW = 4


def parse_prefix(prefix: str | IPNetwork) -> IPNetwork:
    """`"10.0.1.0/24"` -> network; raises ValueError for host bits set or garbage."""
    if isinstance(prefix, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return prefix
    return ipaddress.ip_network(str(prefix).strip(), strict=True)


def _check_size(net: IPNetwork) -> None:
    # Azure's smallest IPv4 subnet is a /29: below that nothing is left after the reservations.
    if net.num_addresses < AZURE_RESERVED_LOW + 2:
        raise ValueError(f"{net} is too small for an Azure subnet (minimum /29)")


def gateway(prefix: str | IPNetwork) -> IPAddress:
    """The subnet's default gateway: the first usable address."""
    net = parse_prefix(prefix)
    _check_size(net)
    return net.network_address + 1


def reserved(prefix: str | IPNetwork) -> frozenset[IPAddress]:
    """Network address, gateway, the two DNS addresses and the broadcast address."""
    net = parse_prefix(prefix)
    _check_size(net)
    low = {net.network_address + i for i in range(AZURE_RESERVED_LOW)}
    return frozenset(low | {net.broadcast_address})


def usable_count(prefix: str | IPNetwork) -> int:
    net = parse_prefix(prefix)
    _check_size(net)
    return net.num_addresses - AZURE_RESERVED_LOW - 1


def is_usable(address: str | IPAddress, prefix: str | IPNetwork) -> bool:
    """Inside the subnet and not one of Azure's reserved addresses."""
    net = parse_prefix(prefix)
    addr = ipaddress.ip_address(str(address))
    if addr.version != net.version or addr not in net:
        return False
    return addr not in reserved(net)


def _normalise_used(used: Iterable[str | IPAddress | None]) -> set[IPAddress]:
    out: set[IPAddress] = set()
    for item in used:
        if item is None:
            continue
        if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
            out.add(item)  # already parsed: the common case, and much cheaper
            continue
        try:
            out.add(ipaddress.ip_address(str(item)))
        except ValueError:
            continue  # a malformed address in a document cannot block a real one
    return out


def free_addresses(
    prefix: str | IPNetwork, used: Iterable[str | IPAddress | None] = ()
) -> Iterator[IPAddress]:
    """Free usable addresses in ascending order (lazy: a /16 is not materialised)."""
    net = parse_prefix(prefix)
    _check_size(net)
    taken = _normalise_used(used)
    first = int(net.network_address) + AZURE_RESERVED_LOW
    last = int(net.broadcast_address) - 1
    make = type(net.network_address)
    for value in range(first, last + 1):
        addr = make(value)
        if addr not in taken:
            yield addr


def choose_free_ip(
    prefix: str | IPNetwork,
    used: Iterable[str | IPAddress | None] = (),
    prefer: Iterable[str | IPAddress] = (),
) -> IPAddress | None:
    """First free preferred address, else the lowest free one; `None` when the subnet is full."""
    net = parse_prefix(prefix)
    taken = _normalise_used(used)
    blocked = reserved(net)
    for candidate in prefer:
        try:
            addr = ipaddress.ip_address(str(candidate))
        except ValueError:
            continue
        if (
            addr.version == net.version
            and addr in net
            and addr not in blocked
            and addr not in taken
        ):
            return addr
    return next(free_addresses(net, taken), None)


def is_full(prefix: str | IPNetwork, used: Iterable[str | IPAddress | None] = ()) -> bool:
    return choose_free_ip(prefix, used) is None


_DOTTED_QUAD = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def address_value(item: object) -> int | None:
    """Integer value of an address (text, object or int); dotted-quad text without `ipaddress`.

    Values of the other IP version never compare equal to this subnet's range in practice
    (callers check the range), so IPv6 text simply goes through `ipaddress`.
    """
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return int(item)
    if not isinstance(item, str):
        return None
    if _DOTTED_QUAD.fullmatch(item):
        # The pattern already fixed the form: four octets 0-255.
        a, b, c, d = (int(octet) for octet in item.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    try:
        return int(ipaddress.ip_address(item))
    except ValueError:
        return None


class AddressAllocator:
    """Hands out free addresses of one subnet, never the same one twice.

    For planning several NICs in one pass (the risk model gives every VM a distinct candidate):
    same contract as `choose_free_ip`, but O(1) amortised per address instead of a scan from
    the bottom of the subnet each time. Pure: state lives only in the object.
    """

    def __init__(
        self, prefix: str | IPNetwork, used: Iterable[str | IPAddress | None] = ()
    ) -> None:
        self.network = parse_prefix(prefix)
        _check_size(self.network)
        self._make = type(self.network.network_address)
        self._taken = set()
        for item in used:
            value = address_value(item)
            if value is not None:
                self._taken.add(value)
        self._first = int(self.network.network_address) + AZURE_RESERVED_LOW
        self._last = int(self.network.broadcast_address) - 1
        self._cursor = self._first

    def take(self, prefer: Iterable[str | IPAddress] = ()) -> IPAddress | None:
        """First free preferred address, else the lowest free one; `None` when full."""
        for candidate in prefer:
            value = address_value(candidate)
            if (
                value is not None
                and self._first <= value <= self._last
                and value not in self._taken
            ):
                self._taken.add(value)
                return self._make(value)
        while self._cursor <= self._last and self._cursor in self._taken:
            self._cursor += 1
        if self._cursor > self._last:
            return None
        self._taken.add(self._cursor)
        return self._make(self._cursor)
