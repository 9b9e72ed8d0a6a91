"""Pure: the typed, validated values a guest route script is rendered from.

Every value that reaches a script passes through a strict type first (``IPv4Address``, ``int``
ports, ``MacAddress``, ``Protocol``), so untrusted text (resource names, tags, API input) can
never become script text. The constants name what the scripts create in the guest (policy
table, rule preferences, the route ``proto`` tag, the persisted files and boot unit).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

FORMAT_VERSION = 2  # 2: stack-owned persistence, numeric selectors, guard and rollback


MAX_ROUTES = 16  # keeps the JSON result line far below the 4,096-byte Run Command limit


POLICY_TABLE = 100


RULE_PREF = 100


LOCAL_RULE_PREF = 1000


ROUTE_PROTO = 211  # `proto` tag on every route we add: ownership marker for converge/cleanup


STATE_DIR = "/etc/hairpin"


BODY_PATH = f"{STATE_DIR}/hairpin-routes.sh"


ADDRESS_MARKER = f"{STATE_DIR}/address-added"


UNIT_NAME = "hairpin-routes.service"


UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"


UNIT_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"


WATCH_UNIT_NAME = "hairpin-routes-watch.service"  # re-applies on link/address events


WATCH_UNIT_PATH = f"/etc/systemd/system/{WATCH_UNIT_NAME}"


WATCH_UNIT_LINK = f"/etc/systemd/system/multi-user.target.wants/{WATCH_UNIT_NAME}"


MECHANISM_FILE = f"{STATE_DIR}/mechanism"  # which stack owns the persistence


MANIFEST = f"{STATE_DIR}/manifest"  # every file and directory apply created: cleanup's list


NETWORKD_DIR = "/etc/systemd/network"


NETWORKD_DROPIN = "50-azure-ilb-hairpin.conf"  # in the primary's <file>.network.d/


NETWORKD_SECONDARY = "04-azure-ilb-hairpin-secondary.network"  # before netplan's 10-netplan-*


IFUP_HOOK = "/etc/network/if-up.d/azure-ilb-hairpin"


DHCLIENT_ENTER_HOOK = "/etc/dhcp/dhclient-enter-hooks.d/azure-ilb-hairpin"


DHCLIENT_EXIT_HOOK = "/etc/dhcp/dhclient-exit-hooks.d/azure-ilb-hairpin"


NM_DISPATCHER = "/etc/NetworkManager/dispatcher.d/50-azure-ilb-hairpin"


# Held by the installer and cleanup; the NetworkManager dispatcher hook waits for it, so that
# the reapply they trigger does not re-apply concurrently with them.
LOCK_PATH = "/run/azure-ilb-hairpin.lock"


HEREDOC_END = "HAIRPIN_ROUTES_EOF"


class Mechanism(enum.StrEnum):
    """Who restores the routes after the network stack's own events (the script's JSON
    ``mechanism``): the stack itself from its configuration, or our unit plus a watcher."""

    NETWORKD = "networkd"  # .network drop-in + a .network for the secondary (netplan too)
    NETWORKMANAGER = "networkmanager"  # the profiles' routes and rules + a dispatcher hook
    IFUPDOWN = "ifupdown"  # if-up.d and dhclient hooks
    UNIT_WATCH = "unit-watch"  # none recognised: boot unit + re-apply on link/address events


HA_PORTS_SIDE_EFFECT = (
    "HA-ports rule: the policy rule cannot be narrowed to a port, so ALL traffic from the "
    "primary address to the secondary address (including local connections between the VM's "
    "two addresses) is routed out through the Azure gateway instead of staying inside the VM"
)


class GuestScriptError(ValueError):
    """Invalid input for a guest script (raised before any text is rendered)."""


_MAC_RE = re.compile(r"\A[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}\Z")


@dataclass(frozen=True, slots=True)
class MacAddress:
    """A unicast MAC. Accepts ARM's ``00-0D-3A-12-34-56`` and Linux's ``00:0d:3a:12:34:56``."""

    octets: tuple[int, ...]

    @classmethod
    def parse(cls, text: object) -> MacAddress:
        if type(text) is MacAddress:
            return text
        if type(text) is not str or not _MAC_RE.fullmatch(text):
            raise GuestScriptError(f"not a MAC address: {text!r:.40}")
        return cls(tuple(int(part, 16) for part in re.split(r"[:-]", text)))

    def __post_init__(self) -> None:
        if len(self.octets) != 6 or not all(type(o) is int and 0 <= o <= 255
                                            for o in self.octets):
            raise GuestScriptError("a MAC address has six octets")
        if self.octets[0] & 1:
            raise GuestScriptError("a NIC MAC address must be unicast")

    @property
    def linux(self) -> str:
        return ":".join(f"{o:02x}" for o in self.octets)

    @property
    def windows(self) -> str:  # the form Get-NetAdapter's MacAddress uses (and ARM)
        return "-".join(f"{o:02X}" for o in self.octets)

    def __str__(self) -> str:
        return self.linux


class Protocol(enum.Enum):
    """Load-balancing rule protocol, as ARM spells it."""

    TCP = "Tcp"
    UDP = "Udp"
    ALL = "All"

    @classmethod
    def parse(cls, value: object) -> Protocol:
        if isinstance(value, Protocol):
            return value
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        raise GuestScriptError(f"protocol must be Tcp, Udp or All, not {value!r:.40}")


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _ip(value: object, what: str) -> IPv4Address:
    """IPv4 address from an ``IPv4Address`` or a dotted-quad string; nothing else. Exact types:
    a subclass could render itself (``__str__``/``__format__``) as any script text."""
    if type(value) is IPv4Address:
        address = value
    elif type(value) is str:
        try:
            address = IPv4Address(value)
        except ValueError:
            raise GuestScriptError(f"{what}: not an IPv4 address: {value!r:.40}") from None
    else:
        raise GuestScriptError(f"{what}: expected an IPv4 address, got {type(value).__name__}")
    if (address.is_unspecified or address.is_loopback or address.is_multicast
            or address.is_link_local or address.is_reserved or address in _THIS_NETWORK):
        raise GuestScriptError(f"{what}: {address} cannot be a VNet address")
    return address


def _port(value: object, what: str, *, allow_zero: bool = False) -> int:
    # Exactly int: bool is a subclass, and any subclass may format itself as script text.
    if type(value) is not int:
        raise GuestScriptError(f"{what}: port must be an integer")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise GuestScriptError(f"{what}: port {value} out of range")
    return value


@dataclass(frozen=True, slots=True)
class VipRoute:
    """One load-balancing rule the VM hairpins through: VIP, protocol, ports.

    An HA-ports rule is ``Protocol.ALL`` with both ports 0 (as ARM writes it)."""

    vip: IPv4Address
    protocol: Protocol
    frontend_port: int
    backend_port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "vip", _ip(self.vip, "vip"))
        object.__setattr__(self, "protocol", Protocol.parse(self.protocol))
        ha = self.protocol is Protocol.ALL
        object.__setattr__(self, "frontend_port",
                           _port(self.frontend_port, "frontend_port", allow_zero=ha))
        object.__setattr__(self, "backend_port",
                           _port(self.backend_port, "backend_port", allow_zero=ha))
        if ha and (self.frontend_port, self.backend_port) != (0, 0):
            raise GuestScriptError("protocol All is only valid for HA ports (ports 0)")

    @property
    def ha_ports(self) -> bool:
        return self.protocol is Protocol.ALL


@dataclass(frozen=True, slots=True)
class VerifyTarget:
    vip: IPv4Address
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "vip", _ip(self.vip, "vip"))
        object.__setattr__(self, "port", _port(self.port, "port"))


@dataclass(frozen=True, slots=True)
class GuestRouteSpec:
    """Everything a guest route script is rendered from."""

    primary_ip: IPv4Address
    secondary_ip: IPv4Address
    secondary_mac: MacAddress
    gateway: IPv4Address
    prefix_len: int
    routes: tuple[VipRoute, ...] = field(default_factory=tuple)
    ha_ports_broad_rule_allowed: bool = False

    def __post_init__(self) -> None:
        for name in ("primary_ip", "secondary_ip", "gateway"):
            object.__setattr__(self, name, _ip(getattr(self, name), name))
        object.__setattr__(self, "secondary_mac", MacAddress.parse(self.secondary_mac))
        # Azure subnets: /8 .. /29
        if type(self.prefix_len) is not int or not 8 <= self.prefix_len <= 29:
            raise GuestScriptError("prefix_len must be an integer between 8 and 29")
        if not isinstance(self.ha_ports_broad_rule_allowed, bool):
            raise GuestScriptError("ha_ports_broad_rule_allowed must be a bool")
        routes = tuple(self.routes)
        if not all(type(r) is VipRoute for r in routes):
            raise GuestScriptError("routes must be VipRoute values")
        if not routes:
            raise GuestScriptError("at least one VIP route is needed")
        if len(routes) > MAX_ROUTES:
            raise GuestScriptError(f"at most {MAX_ROUTES} VIP routes per VM")
        object.__setattr__(self, "routes", routes)
        subnet = ipaddress.IPv4Network(f"{self.secondary_ip}/{self.prefix_len}", strict=False)
        if self.gateway not in subnet:
            raise GuestScriptError(f"gateway {self.gateway} is not in {subnet}")
        if self.secondary_ip in (subnet.network_address, subnet.broadcast_address, self.gateway):
            raise GuestScriptError(f"secondary_ip {self.secondary_ip} is reserved in {subnet}")
        if self.primary_ip == self.secondary_ip:
            raise GuestScriptError("primary_ip and secondary_ip must differ")
        if self.primary_ip == self.gateway:
            raise GuestScriptError("primary_ip cannot be the gateway")
        vips = {r.vip for r in routes}
        if vips & {self.primary_ip, self.secondary_ip, self.gateway}:
            raise GuestScriptError("a VIP cannot be a NIC or gateway address")

    # Derived, de-duplicated views (stable order) used by every renderer.
    @property
    def vips(self) -> tuple[IPv4Address, ...]:
        return tuple(dict.fromkeys(r.vip for r in self.routes))

    @property
    def narrow_rules(self) -> tuple[tuple[Protocol, int], ...]:
        return tuple(dict.fromkeys((r.protocol, r.backend_port)
                                   for r in self.routes if not r.ha_ports))

    @property
    def needs_broad_rule(self) -> bool:
        return any(r.ha_ports for r in self.routes)

    def verify_targets(self) -> tuple[VerifyTarget, ...]:
        """TCP targets the verification step connects to (frontend ports; HA/UDP skipped)."""
        return tuple(dict.fromkeys(VerifyTarget(r.vip, r.frontend_port)
                                   for r in self.routes if r.protocol is Protocol.TCP))

    def check_broad_rule(self) -> None:
        if self.needs_broad_rule and not self.ha_ports_broad_rule_allowed:
            raise GuestScriptError(
                "an HA-ports rule cannot be narrowed by port; the broad policy rule needs the "
                "setting that allows it. Side effect: " + HA_PORTS_SIDE_EFFECT)


def describe(spec: GuestRouteSpec, os_type: str = "linux") -> list[str]:
    """Plain-language list of what the apply script changes (for plans)."""
    lines = [f"find the secondary NIC by MAC {spec.secondary_mac.linux}"]
    lines += [f"host route {vip}/32 via {spec.gateway} out of the secondary NIC, "
              f"source {spec.secondary_ip}" for vip in spec.vips]
    if os_type.lower() == "windows":
        lines.append("routes written with New-NetRoute (active and persistent store)")
        return lines
    lines.append(f"table {POLICY_TABLE}: {spec.secondary_ip}/32 via {spec.gateway} "
                 "out of the primary NIC")
    lines += [f"rule pref {RULE_PREF}: from {spec.primary_ip} to {spec.secondary_ip} "
              f"ipproto {p.value.lower()} sport {port} lookup {POLICY_TABLE}"
              for p, port in spec.narrow_rules]
    if spec.needs_broad_rule:
        spec.check_broad_rule()
        lines.append(f"rule pref {RULE_PREF}: from {spec.primary_ip} to {spec.secondary_ip} "
                     f"lookup {POLICY_TABLE} (WARNING: {HA_PORTS_SIDE_EFFECT})")
    lines.append(f"move the local-table rule from pref 0 to pref {LOCAL_RULE_PREF} (the new "
                 "one added first; a rule lookup local is never missing)")
    lines.append(f"persist: {BODY_PATH} run at boot by {UNIT_NAME} (enabled for "
                 "multi-user.target), and in the configuration of the network stack found in "
                 "the guest (systemd-networkd/netplan, NetworkManager or ifupdown); with none, "
                 f"{WATCH_UNIT_NAME} re-applies after link and address events")
    return lines


def verify_items(targets: GuestRouteSpec | Iterable[VerifyTarget]) -> tuple[VerifyTarget, ...]:
    items = targets.verify_targets() if type(targets) is GuestRouteSpec else tuple(targets)
    if not items or not all(type(t) is VerifyTarget for t in items):
        raise GuestScriptError("verification needs at least one VerifyTarget")
    if len(items) > MAX_ROUTES:
        raise GuestScriptError(f"at most {MAX_ROUTES} verification targets")
    return tuple(dict.fromkeys(items))


def check_count_timeout(count: int, timeout_s: int) -> None:
    if type(count) is not int or not 1 <= count <= 200:
        raise GuestScriptError("count must be an integer between 1 and 200")
    if type(timeout_s) is not int or not 1 <= timeout_s <= 30:
        raise GuestScriptError("timeout_s must be an integer between 1 and 30")
