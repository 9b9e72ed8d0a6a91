# ruff: noqa: E501  (long lines are inside the embedded bash/PowerShell templates)
"""Pure: typed, validated values -> guest route scripts (Linux bash, Windows PowerShell).

Nothing here does I/O or imports an Azure SDK. Every value that reaches a script passes through
a strict type first (``IPv4Address``, ``int`` ports, ``MacAddress``, ``Protocol``), so untrusted
text (resource names, tags, API input) can never become script text.

Why the Linux script is more than the documented host route: see AZURE-FACTS.md section 3. The
ILB DNATs a flow from this VM's secondary address back to this VM's primary address without SNAT;
the reply then goes to a *local* address and never returns through the fabric's reverse NAT.
Narrow policy rules (one per backend port and protocol) send exactly those replies back out of
the primary NIC via the gateway, which requires the ``local`` table rule to move after them.

Known limit of the narrow rule (measured in the namespace model): a local client that explicitly
binds the managed secondary address and connects to the primary address's backend port gets its
replies routed via the fabric and fails; nothing should bind the managed NIC's address.

Scripts end their output with ONE JSON object line (parsed by :func:`parse_run_command_output`),
kept well below Run Command's 4,096-byte output limit.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

FORMAT_VERSION = 1
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
HEREDOC_END = "HAIRPIN_ROUTES_EOF"

HA_PORTS_SIDE_EFFECT = (
    "HA-ports rule: the policy rule cannot be narrowed to a port, so ALL traffic from the "
    "primary address to the secondary address (including local connections between the VM's "
    "two addresses) is routed out through the Azure gateway instead of staying inside the VM"
)


class GuestScriptError(ValueError):
    """Invalid input for a guest script (raised before any text is rendered)."""


class RunCommandOutputError(ValueError):
    """Run Command output carries no JSON result line."""


# ---------------------------------------------------------------- typed values

_MAC_RE = re.compile(r"\A[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}\Z")


@dataclass(frozen=True, slots=True)
class MacAddress:
    """A unicast MAC. Accepts ARM's ``00-0D-3A-12-34-56`` and Linux's ``00:0d:3a:12:34:56``."""

    octets: tuple[int, ...]

    @classmethod
    def parse(cls, text: object) -> MacAddress:
        if isinstance(text, MacAddress):
            return text
        if not isinstance(text, str) or not _MAC_RE.match(text):
            raise GuestScriptError(f"not a MAC address: {text!r:.40}")
        return cls(tuple(int(part, 16) for part in re.split(r"[:-]", text)))

    def __post_init__(self) -> None:
        if len(self.octets) != 6 or not all(isinstance(o, int) and 0 <= o <= 255
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
    """IPv4 address from an ``IPv4Address`` or a dotted-quad string; nothing else."""
    if isinstance(value, IPv4Address):
        address = value
    elif isinstance(value, str):
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
    # bool is an int subclass: reject it explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
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
        if isinstance(self.prefix_len, bool) or not isinstance(self.prefix_len, int) \
                or not 8 <= self.prefix_len <= 29:  # Azure subnets: /8 .. /29
            raise GuestScriptError("prefix_len must be an integer between 8 and 29")
        if not isinstance(self.ha_ports_broad_rule_allowed, bool):
            raise GuestScriptError("ha_ports_broad_rule_allowed must be a bool")
        routes = tuple(self.routes)
        if not all(isinstance(r, VipRoute) for r in routes):
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
    lines.append(f"move the local-table rule from pref 0 to pref {LOCAL_RULE_PREF}")
    lines.append(f"persist: {BODY_PATH} run at boot by {UNIT_NAME} (enabled for "
                 "multi-user.target)")
    return lines


# ---------------------------------------------------------------- Linux (bash)

_BASH_PRELUDE = r"""set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CHANGES=''
WARNINGS=''
# Only our own fixed tokens and kernel interface names reach the JSON; strip anything else.
clean() { local s="$*"; printf '%s' "${s//[^A-Za-z0-9 ._:\/+@(),-]/?}"; }
change() { CHANGES="${CHANGES:+$CHANGES,}\"$(clean "$*")\""; }
warn() { WARNINGS="${WARNINGS:+$WARNINGS,}\"$(clean "$*")\""; }
fail() { # $1 code, $2 exit status, $3 message
  echo "hairpin: error: $3" >&2
  printf '{"result":"error","error":"%s","message":"%s","changes":[%s]}\n' \
    "$1" "$(clean "$3")" "$CHANGES"
  exit "$2"
}
"""

_BASH_FIND_DEVS = r"""find_devs() {
  SEC_DEV=''
  local d mac n=0
  for d in /sys/class/net/*; do
    [ -r "$d/address" ] || continue
    mac=$(cat "$d/address" 2>/dev/null) || continue
    [ "${mac,,}" = "$SECONDARY_MAC" ] || continue
    # Accelerated networking: the VF shares the MAC and is enslaved to the synthetic NIC.
    [ -e "$d/master" ] && continue
    SEC_DEV=${d##*/}; n=$((n + 1))
  done
  [ "$n" -gt 1 ] && fail ambiguous_mac 3 "$n interfaces carry MAC $SECONDARY_MAC"
  PRI_DEV=''
  local line
  line=$(ip -o -4 addr show to "$PRIMARY_IP/32" 2>/dev/null | head -n 1)
  [ -n "$line" ] && { read -r _ PRI_DEV _ <<<"$line"; }
  [ -n "$SEC_DEV" ] && [ -n "$PRI_DEV" ]
}
"""

_BASH_APPLY = r"""BOOT=0
PENDING=''
for arg in "$@"; do
  case "$arg" in
    --boot) BOOT=1 ;;
    *) PENDING="${PENDING:+$PENDING,}\"$(clean "$arg")\"" ;;  # installer: files it will write
  esac
done
if ! ip rule help 2>&1 | grep -q ipproto; then
  fail iproute2_too_old 2 "ip rule lacks ipproto/sport selectors (iproute2 4.17+ needed)"
fi
# At boot the secondary NIC may appear a little after this unit starts: wait for it.
tries=$(( BOOT ? 30 : 1 ))
until find_devs; do
  tries=$((tries - 1))
  if [ "$tries" -le 0 ]; then
    [ -z "$SEC_DEV" ] && fail nic_not_found 3 "no interface with MAC $SECONDARY_MAC (secondary NIC not attached or not up)"
    fail primary_not_found 4 "no interface holds the primary address $PRIMARY_IP"
  fi
  sleep 2
done
flags=$(cat "/sys/class/net/$SEC_DEV/flags")
if (( (flags & 1) == 0 )); then
  ip link set dev "$SEC_DEV" up || fail link_up 5 "cannot bring $SEC_DEV up"
  change "+link up $SEC_DEV"
fi
if [ -z "$(ip -o -4 addr show dev "$SEC_DEV" to "$SECONDARY_IP/32")" ]; then
  # Normally DHCP configures it; add it without a subnet route so nothing else changes.
  ip addr add "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV" noprefixroute \
    || fail address 5 "cannot add $SECONDARY_IP/$PREFIX_LEN to $SEC_DEV"
  mkdir -p "$STATE_DIR" && : >"$ADDRESS_MARKER"
  change "+address $SECONDARY_IP/$PREFIX_LEN $SEC_DEV"
fi
# Gateway reachability: the link must have carrier; when ping exists, ARP must resolve too.
for _ in 1 2 3; do
  [ "$(cat "/sys/class/net/$SEC_DEV/carrier" 2>/dev/null)" = 1 ] && break
  sleep 1
done
if [ "$(cat "/sys/class/net/$SEC_DEV/carrier" 2>/dev/null)" != 1 ]; then
  fail gateway_unreachable 6 "gateway $GATEWAY unreachable: $SEC_DEV has no link"
fi
if command -v ping >/dev/null 2>&1; then
  ping -c 1 -W 2 -I "$SEC_DEV" "$GATEWAY" >/dev/null 2>&1
  if ! ip neigh show "$GATEWAY" dev "$SEC_DEV" | grep -q lladdr; then
    fail gateway_unreachable 6 "gateway $GATEWAY unreachable via $SEC_DEV (no ARP reply)"
  fi
fi
ensure_vip_route() { # $1 = VIP
  [ -n "$(ip route show table main exact "$1/32" via "$GATEWAY" dev "$SEC_DEV" proto "$RT_PROTO")" ] && return 0
  ip route replace "$1/32" via "$GATEWAY" dev "$SEC_DEV" src "$SECONDARY_IP" onlink proto "$RT_PROTO" table main \
    || fail route 7 "cannot add route $1/32 via $GATEWAY dev $SEC_DEV"
  change "+route $1/32 $SEC_DEV"
}
ensure_return_route() {
  [ -n "$(ip route show table "$TABLE" exact "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" proto "$RT_PROTO" 2>/dev/null)" ] && return 0
  ip route replace "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" onlink proto "$RT_PROTO" table "$TABLE" \
    || fail route 7 "cannot add route $SECONDARY_IP/32 to table $TABLE"
  change "+route $SECONDARY_IP/32 table $TABLE $PRI_DEV"
}
our_rules() { ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" to "$SECONDARY_IP"; }
ensure_rule() { # $1 = protocol name, $2 = protocol number, $3 = backend port (reply source port)
  our_rules | grep -Eq " ipproto ($1|$2) sport $3 lookup " && return 0
  ip rule add pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" ipproto "$1" sport "$3" lookup "$TABLE" \
    || fail rule 8 "cannot add rule for $1 sport $3"
  change "+rule $1 sport $3"
}
ensure_broad_rule() {
  our_rules | grep -v ' ipproto ' | grep -q . && return 0
  ip rule add pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" lookup "$TABLE" \
    || fail rule 8 "cannot add the HA-ports rule"
  change "+rule all ports"
}
# Converge: drop routes/rules of ours that the current values no longer want.
drop_stale() {
  local line dst rest
  while read -r dst _; do
    [ -n "$dst" ] || continue
    case " $WANT_VIPS " in *" ${dst%/32} "*) continue ;; esac
    ip route del "${dst%/32}/32" table main proto "$RT_PROTO" && change "-route $dst"
  done < <(ip route show table main proto "$RT_PROTO")
  while read -r line; do
    [ -n "$line" ] || continue
    read -r _ rest <<<"$line"  # drop "100:"
    case "$rest" in *" sport "*) ;; *) [ "$WANT_BROAD" = 1 ] && continue ;; esac
    local keep=0 w
    for w in $WANT_RULES; do
      [[ "$rest" =~ \ ipproto\ (${w%%/*})\ sport\ ${w##*/}\ lookup\  ]] && keep=1
    done
    [ "$keep" = 1 ] && continue
    # shellcheck disable=SC2086  # fields of ip's own output, re-used as its arguments
    ip rule del pref "$RULE_PREF" $rest && change "-rule $rest"
  done < <(our_rules)
}
"""

_BASH_APPLY_END = r"""# The local table must be consulted after the narrow rules, or they never match.
if [ -z "$(ip rule show pref "$LOCAL_PREF" table local)" ]; then
  ip rule add pref "$LOCAL_PREF" lookup local || fail rule 8 "cannot add local rule at $LOCAL_PREF"
  change "+rule local pref $LOCAL_PREF"
fi
if [ -n "$(ip rule show pref 0 table local)" ]; then
  ip rule del pref 0 lookup local || fail rule 8 "cannot move the local rule"
  change "-rule local pref 0"
fi
drop_stale
[ -n "$PENDING" ] && CHANGES="$PENDING${CHANGES:+,$CHANGES}"
RESULT=unchanged
[ -n "$CHANGES" ] && RESULT=applied
printf '{"result":"%s","os":"linux","format":%d,"secondary_dev":"%s","primary_dev":"%s","boot":%d,"changes":[%s],"warnings":[%s]}\n' \
  "$RESULT" "$FORMAT" "$(clean "$SEC_DEV")" "$(clean "$PRI_DEV")" "$BOOT" "$CHANGES" "$WARNINGS"
"""


def _bash_vars(spec: GuestRouteSpec) -> str:
    want_rules = " ".join(f"{_ipproto_alt(p)}/{port}" for p, port in spec.narrow_rules)
    return "\n".join([
        f"FORMAT={FORMAT_VERSION}",
        f"PRIMARY_IP={spec.primary_ip}",
        f"SECONDARY_IP={spec.secondary_ip}",
        f"SECONDARY_MAC={spec.secondary_mac.linux}",
        f"GATEWAY={spec.gateway}",
        f"PREFIX_LEN={spec.prefix_len}",
        f"TABLE={POLICY_TABLE}",
        f"RULE_PREF={RULE_PREF}",
        f"LOCAL_PREF={LOCAL_RULE_PREF}",
        f"RT_PROTO={ROUTE_PROTO}",
        f"STATE_DIR={STATE_DIR}",
        f"ADDRESS_MARKER={ADDRESS_MARKER}",
        f"WANT_VIPS='{' '.join(str(v) for v in spec.vips)}'",
        f"WANT_RULES='{want_rules}'",
        f"WANT_BROAD={1 if spec.needs_broad_rule else 0}",
    ]) + "\n"


def _ipproto(p: Protocol) -> tuple[str, int]:
    return {Protocol.TCP: ("tcp", 6), Protocol.UDP: ("udp", 17)}[p]


def _ipproto_alt(p: Protocol) -> str:
    name, number = _ipproto(p)
    return f"{name}|{number}"


def _header(title: str, spec: GuestRouteSpec) -> str:
    lines = [
        "#!/bin/bash",
        f"# azure-ilb-hairpin {title} (format {FORMAT_VERSION}). Rendered from validated values;",
        "# re-render instead of editing. Output ends with one JSON line.",
    ]
    if spec.needs_broad_rule:
        lines.append(f"# WARNING: {HA_PORTS_SIDE_EFFECT}.")
    return "\n".join(lines) + "\n"


def render_linux_body(spec: GuestRouteSpec) -> str:
    """The persisted apply script (``/etc/hairpin/hairpin-routes.sh``), run at boot by the unit
    and by the installer; safe to re-run (checks before every add)."""
    spec.check_broad_rule()
    steps = [f"ensure_vip_route {vip}" for vip in spec.vips]
    steps.append("ensure_return_route")
    for p, port in spec.narrow_rules:
        name, number = _ipproto(p)
        steps.append(f"ensure_rule {name} {number} {port}")
    if spec.needs_broad_rule:
        steps.append("warn 'HA-ports broad rule: local traffic between the two addresses "
                     "leaves through the gateway'")
        steps.append("ensure_broad_rule")
    return (_header("hairpin routes: apply", spec) + _bash_vars(spec) + _BASH_PRELUDE
            + _BASH_FIND_DEVS + _BASH_APPLY + "\n".join(steps) + "\n" + _BASH_APPLY_END)


def render_linux_unit() -> str:
    return "\n".join([
        "[Unit]",
        "Description=Azure ILB hairpin routes (azure-ilb-hairpin)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/bin/bash {BODY_PATH} --boot",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


_BASH_INSTALL = r"""set -u
umask 022
TMPD=$(mktemp -d) || { echo '{"result":"error","error":"tempdir"}'; exit 9; }
trap 'rm -rf "$TMPD"' EXIT
# True when file $2 is missing or differs from $1 (what would change on install).
differs() { ! { [ -f "$2" ] && [ "$(cat "$1")" = "$(cat "$2")" ]; }; }
"""

_BASH_INSTALL_END = r"""PENDING=()
differs "$TMPD/body" "$BODY_PATH" && PENDING+=("+file $BODY_PATH")
differs "$TMPD/unit" "$UNIT_PATH" && PENDING+=("+file $UNIT_PATH")
[ "$(readlink "$UNIT_LINK" 2>/dev/null)" = "$UNIT_PATH" ] || PENDING+=("+enable $UNIT_NAME")
# Apply first; persist only what applied cleanly (a failing unit would stall every boot).
/bin/bash "$TMPD/body" ${PENDING[@]+"${PENDING[@]}"}
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
install_one() { # $1 source, $2 target: atomic replace
  mkdir -p "${2%/*}" && cp "$1" "$2.tmp.$$" && chmod 0644 "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}
if { ! differs "$TMPD/body" "$BODY_PATH" || install_one "$TMPD/body" "$BODY_PATH"; } &&
   { ! differs "$TMPD/unit" "$UNIT_PATH" || install_one "$TMPD/unit" "$UNIT_PATH"; } &&
   { [ "$(readlink "$UNIT_LINK" 2>/dev/null)" = "$UNIT_PATH" ] ||
     { mkdir -p "${UNIT_LINK%/*}" && ln -sfn "$UNIT_PATH" "$UNIT_LINK"; }; }; then
  if [ "${#PENDING[@]}" -gt 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
  exit 0
fi
echo "hairpin: error: applied, but cannot persist to $BODY_PATH / $UNIT_PATH" >&2
echo '{"result":"error","error":"persist","message":"routes applied but not persisted"}'
exit 9
"""


def render_linux_apply(spec: GuestRouteSpec) -> str:
    """The Run Command (RunShellScript) apply script: runs the body from a temp copy, and only
    when it succeeded installs it with the boot unit (only files whose content changed)."""
    body = render_linux_body(spec)
    unit = render_linux_unit()
    for text in (body, unit):  # the heredoc terminator can never occur inside
        assert HEREDOC_END not in text
    return (_header("hairpin routes: install and apply", spec) + _BASH_INSTALL
            + f"BODY_PATH={BODY_PATH}\nUNIT_PATH={UNIT_PATH}\nUNIT_LINK={UNIT_LINK}\n"
            + f"UNIT_NAME={UNIT_NAME}\n"
            + f"cat >\"$TMPD/body\" <<'{HEREDOC_END}'\n" + body + HEREDOC_END + "\n"
            + f"cat >\"$TMPD/unit\" <<'{HEREDOC_END}'\n" + unit + HEREDOC_END + "\n"
            + _BASH_INSTALL_END)


_BASH_CLEANUP = r"""find_devs || true
# Routes carry our proto tag; rules sit at our pref and table: remove exactly those.
while read -r dst _; do
  [ -n "$dst" ] || continue
  ip route del "${dst%/32}/32" table main proto "$RT_PROTO" && change "-route $dst"
done < <(ip route show table main proto "$RT_PROTO")
while read -r dst _; do
  [ -n "$dst" ] || continue
  ip route del "${dst%/32}/32" table "$TABLE" proto "$RT_PROTO" && change "-route $dst table $TABLE"
done < <(ip route show table "$TABLE" proto "$RT_PROTO" 2>/dev/null)
while read -r line; do
  [ -n "$line" ] || continue
  read -r _ rest <<<"$line"  # drop "100:"
  # shellcheck disable=SC2086  # fields of ip's own output, re-used as its arguments
  ip rule del pref "$RULE_PREF" $rest && change "-rule $rest"
done < <(ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" to "$SECONDARY_IP")
# Put the local-table rule back at pref 0 (add first, then remove the moved one).
if [ -z "$(ip rule show pref 0 table local)" ]; then
  ip rule add pref 0 lookup local || fail rule 8 "cannot restore the local rule at pref 0"
  change "+rule local pref 0"
fi
if [ -n "$(ip rule show pref "$LOCAL_PREF" table local)" ]; then
  ip rule del pref "$LOCAL_PREF" lookup local && change "-rule local pref $LOCAL_PREF"
fi
if [ -f "$ADDRESS_MARKER" ] && [ -n "$SEC_DEV" ]; then
  ip addr del "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV" 2>/dev/null && change "-address $SECONDARY_IP/$PREFIX_LEN"
fi
if [ -L "$UNIT_LINK" ]; then rm -f "$UNIT_LINK" && change "-enable $UNIT_NAME"; fi
for f in "$UNIT_PATH" "$BODY_PATH" "$ADDRESS_MARKER"; do
  if [ -e "$f" ]; then rm -f "$f" && change "-file $f"; fi
done
rmdir "$STATE_DIR" 2>/dev/null
if [ -d /run/systemd/system ] && [ -n "$CHANGES" ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
RESULT=unchanged
[ -n "$CHANGES" ] && RESULT=cleaned
printf '{"result":"%s","os":"linux","format":%d,"changes":[%s]}\n' "$RESULT" "$FORMAT" "$CHANGES"
"""


def render_linux_cleanup(spec: GuestRouteSpec) -> str:
    """Run Command cleanup script: removes exactly what apply added (routes tagged with our
    proto, rules at our pref/table, the moved local rule, the address only if we added it,
    the persisted files and unit)."""
    return (_header("hairpin routes: cleanup", spec) + _bash_vars(spec)
            + f"BODY_PATH={BODY_PATH}\nUNIT_PATH={UNIT_PATH}\nUNIT_LINK={UNIT_LINK}\n"
            + f"UNIT_NAME={UNIT_NAME}\n"
            + _BASH_PRELUDE + _BASH_FIND_DEVS + _BASH_CLEANUP)


_BASH_VERIFY = r"""set -u
export LC_ALL=C
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT
RESULTS=''
ALL_OK=1
# One fresh TCP connection (new source port) per attempt, all in parallel; a server that
# answers a line first names the backend.
probe() { # $1 vip, $2 port
  local i ok=0 line name backends='' seen=''
  for i in $(seq 1 "$COUNT"); do
    timeout "$TIMEOUT" bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; echo C
      IFS= read -r -t 1 l <&3 && printf "L %s\n" "$l"; exit 0' _ "$1" "$2" \
      >"$TMP/$i" 2>/dev/null &
  done
  wait
  declare -A per=()
  for i in $(seq 1 "$COUNT"); do
    grep -qx C "$TMP/$i" || continue
    ok=$((ok + 1))
    line=$(grep -m 1 '^L ' "$TMP/$i")
    name=${line#L }; name=${name%% *}; name=${name//[^A-Za-z0-9._-]/}; name=${name:0:32}
    [ -n "$name" ] || continue
    [ -n "${per[$name]+x}" ] || [ "${#per[@]}" -lt 4 ] || name=other
    per[$name]=$(( ${per[$name]:-0} + 1 ))
  done
  for name in "${!per[@]}"; do backends="${backends:+$backends,}\"$name\":${per[$name]}"; done
  [ "$ok" -eq "$COUNT" ] || ALL_OK=0
  RESULTS="${RESULTS:+$RESULTS,}{\"vip\":\"$1\",\"port\":$2,\"ok\":$ok,\"total\":$COUNT,\"backends\":{$backends}}"
  rm -f "$TMP"/*
}
"""

_BASH_VERIFY_END = r"""OUT="{\"verify\":[$RESULTS],\"ok\":$( [ "$ALL_OK" = 1 ] && echo true || echo false )}"
[ "${#OUT}" -lt 3500 ] || OUT="{\"verify\":[],\"ok\":$( [ "$ALL_OK" = 1 ] && echo true || echo false ),\"truncated\":true}"
printf '%s\n' "$OUT"
[ "$ALL_OK" = 1 ] || exit 1
"""


def _targets(targets: GuestRouteSpec | Iterable[VerifyTarget]) -> tuple[VerifyTarget, ...]:
    items = targets.verify_targets() if isinstance(targets, GuestRouteSpec) else tuple(targets)
    if not items or not all(isinstance(t, VerifyTarget) for t in items):
        raise GuestScriptError("verification needs at least one VerifyTarget")
    if len(items) > MAX_ROUTES:
        raise GuestScriptError(f"at most {MAX_ROUTES} verification targets")
    return tuple(dict.fromkeys(items))


def _count_timeout(count: int, timeout_s: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200:
        raise GuestScriptError("count must be an integer between 1 and 200")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 1 <= timeout_s <= 30:
        raise GuestScriptError("timeout_s must be an integer between 1 and 30")


def render_linux_verify(targets: GuestRouteSpec | Iterable[VerifyTarget], *, count: int = 20,
                        timeout_s: int = 2) -> str:
    """bash + coreutils ``timeout`` (present in minimal images): N connects per VIP:port."""
    items = _targets(targets)
    _count_timeout(count, timeout_s)
    return ("#!/bin/bash\n# azure-ilb-hairpin verification: N TCP connects per VIP:port.\n"
            + f"COUNT={count}\nTIMEOUT={timeout_s}\n" + _BASH_VERIFY
            + "".join(f"probe {t.vip} {t.port}\n" for t in items) + _BASH_VERIFY_END)


# ---------------------------------------------------------------- Windows (PowerShell)

_PS_PRELUDE = r"""$ErrorActionPreference = 'Stop'
$changes = New-Object System.Collections.Generic.List[string]
# Any unexpected terminating error still ends with one JSON line and a non-zero exit.
trap { Fail 'unexpected' 10 ("" + $_.Exception.Message) }
function Write-Result([string]$result, [hashtable]$extra) {
  $o = [ordered]@{ result = $result; os = 'windows'; format = $Format; changes = [string[]]$changes.ToArray() }
  if ($extra) { foreach ($k in $extra.Keys) { $o[$k] = $extra[$k] } }
  Write-Output ([pscustomobject]$o | ConvertTo-Json -Compress -Depth 4)
}
function Fail([string]$code, [int]$status, [string]$message) {
  [Console]::Error.WriteLine("hairpin: error: $message")
  Write-Result 'error' @{ error = $code; message = $message }
  exit $status
}
# The accelerated-networking VF (Mellanox, MANA) shares the synthetic adapter's MAC; never
# route on it. Prefer the Hyper-V synthetic adapter if more than one candidate remains.
function Find-SecondaryAdapter {
  $all = @(Get-NetAdapter | Where-Object { $_.MacAddress -eq $Mac -and
    $_.InterfaceDescription -notmatch 'Mellanox|Virtual Function|Microsoft Azure Network Adapter|MANA' })
  if ($all.Count -gt 1) { $all = @($all | Where-Object { $_.InterfaceDescription -like '*Hyper-V Network Adapter*' }) }
  if ($all.Count -ne 1) { return $null }
  return $all[0]
}
"""

_PS_APPLY = r"""$adapter = Find-SecondaryAdapter
if (-not $adapter) { Fail 'nic_not_found' 3 "no single (non-VF) adapter with MAC $Mac" }
$idx = $adapter.ifIndex
if (-not (Get-NetIPAddress -InterfaceIndex $idx -AddressFamily IPv4 -IPAddress $SecondaryIp -ErrorAction SilentlyContinue)) {
  Fail 'address_missing' 5 "adapter $idx does not hold $SecondaryIp yet (DHCP)"
}
if ($adapter.Status -ne 'Up') { Fail 'gateway_unreachable' 6 "gateway $Gateway unreachable: adapter $idx is $($adapter.Status)" }
try { $null = & ping.exe -n 1 -w 2000 -S $SecondaryIp $Gateway } catch { }  # fills the ARP cache
$nb = Get-NetNeighbor -InterfaceIndex $idx -IPAddress $Gateway -ErrorAction SilentlyContinue
if (-not $nb -or $nb.State -in @('Unreachable', 'Incomplete')) {
  Fail 'gateway_unreachable' 6 "gateway $Gateway unreachable via adapter $idx"
}
foreach ($vip in $Vips) {
  $prefix = "$vip/32"
  $sel = @{ DestinationPrefix = $prefix; InterfaceIndex = $idx; NextHop = $Gateway; ErrorAction = 'SilentlyContinue' }
  $active = Get-NetRoute @sel -PolicyStore ActiveStore
  $persistent = Get-NetRoute @sel -PolicyStore PersistentStore
  if (-not $active -and -not $persistent) {
    # No store given: New-NetRoute writes the active and the persistent store.
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1
    $changes.Add("+route $prefix")
  } elseif (-not $persistent) {
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1 -PolicyStore PersistentStore
    $changes.Add("+route $prefix persistent")
  } elseif (-not $active) {
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1 -PolicyStore ActiveStore
    $changes.Add("+route $prefix active")
  }
}
# The managed adapter carries only our host routes: a /32 via the gateway to a VIP that is no
# longer wanted (its frontend was removed) goes, from both stores.
$wanted = @($Vips | ForEach-Object { "$_/32" })
foreach ($store in 'ActiveStore', 'PersistentStore') {
  Get-NetRoute -InterfaceIndex $idx -NextHop $Gateway -PolicyStore $store -ErrorAction SilentlyContinue |
    Where-Object { $_.DestinationPrefix -like '*/32' -and $wanted -notcontains $_.DestinationPrefix } |
    ForEach-Object {
      Remove-NetRoute -InputObject $_ -Confirm:$false
      $changes.Add("-route $($_.DestinationPrefix) $store")
    }
}
$result = if ($changes.Count) { 'applied' } else { 'unchanged' }
Write-Result $result @{ interface_index = $idx }
"""

_PS_CLEANUP = r"""foreach ($vip in $Vips) {
  foreach ($store in 'ActiveStore', 'PersistentStore') {
    $have = @(Get-NetRoute -DestinationPrefix "$vip/32" -NextHop $Gateway -PolicyStore $store -ErrorAction SilentlyContinue)
    if ($have.Count) {
      $have | Remove-NetRoute -Confirm:$false
      $changes.Add("-route $vip/32 $store")
    }
  }
}
$result = if ($changes.Count) { 'cleaned' } else { 'unchanged' }
Write-Result $result $null
"""


def _ps_vars(spec: GuestRouteSpec) -> str:
    vips = ", ".join(f"'{v}'" for v in spec.vips)
    return "\n".join([
        f"$Format = {FORMAT_VERSION}",
        f"$Mac = '{spec.secondary_mac.windows}'",
        f"$SecondaryIp = '{spec.secondary_ip}'",
        f"$Gateway = '{spec.gateway}'",
        f"$Vips = @({vips})",
    ]) + "\n"


def _ps_header(title: str) -> str:
    return (f"# azure-ilb-hairpin {title} (format {FORMAT_VERSION}). Rendered from validated "
            "values.\n# Output ends with one JSON line (ConvertTo-Json -Compress).\n")


def render_windows_apply(spec: GuestRouteSpec) -> str:
    """RunPowerShellScript apply: host routes only (Windows uses the strong host model); routes
    to VIPs no longer wanted are removed from the managed adapter."""
    return _ps_header("hairpin routes: apply") + _ps_vars(spec) + _PS_PRELUDE + _PS_APPLY


def render_windows_cleanup(spec: GuestRouteSpec) -> str:
    return _ps_header("hairpin routes: cleanup") + _ps_vars(spec) + _PS_PRELUDE + _PS_CLEANUP


_PS_VERIFY = r"""$ErrorActionPreference = 'Stop'
$results = @()
$allOk = $true
foreach ($t in $Targets) {
  $clients = @(1..$Count | ForEach-Object { New-Object System.Net.Sockets.TcpClient })
  $tasks = @($clients | ForEach-Object { $_.ConnectAsync($t[0], [int]$t[1]) })
  try { $null = [System.Threading.Tasks.Task]::WaitAll([System.Threading.Tasks.Task[]]$tasks, $TimeoutMs) } catch { }
  $ok = 0; $backends = [ordered]@{}
  for ($i = 0; $i -lt $Count; $i++) {
    if ($tasks[$i].Status -ne 'RanToCompletion') { continue }
    $ok++
    try {
      $s = $clients[$i].GetStream(); $s.ReadTimeout = 1000
      $line = (New-Object System.IO.StreamReader($s)).ReadLine()
      $name = (($line -split ' ')[0] -replace '[^A-Za-z0-9._-]', '')
      if ($name.Length -gt 32) { $name = $name.Substring(0, 32) }
      if ($name) {
        if (-not $backends.Contains($name) -and $backends.Count -ge 4) { $name = 'other' }
        $backends[$name] = 1 + [int]$backends[$name]
      }
    } catch { }
  }
  $clients | ForEach-Object { $_.Dispose() }
  if ($ok -lt $Count) { $allOk = $false }
  $results += [pscustomobject]@{ vip = $t[0]; port = [int]$t[1]; ok = $ok; total = $Count; backends = [pscustomobject]$backends }
}
Write-Output ([pscustomobject]@{ verify = @($results); ok = $allOk } | ConvertTo-Json -Compress -Depth 4)
if (-not $allOk) { exit 1 }
"""


def render_windows_verify(targets: GuestRouteSpec | Iterable[VerifyTarget], *, count: int = 20,
                          timeout_s: int = 2) -> str:
    items = _targets(targets)
    _count_timeout(count, timeout_s)
    # `+= ,@(...)` keeps each pair an array (a one-element @(@(...)) would be flattened).
    pairs = "".join(f"$Targets += ,@('{t.vip}', {t.port})\n" for t in items)
    return (_ps_header("verification: N TCP connects per VIP:port")
            + f"$Count = {count}\n$TimeoutMs = {timeout_s * 1000}\n"
            + "$Targets = @()\n" + pairs + _PS_VERIFY)


# ---------------------------------------------------------------- dispatch and parsing

def render(spec: GuestRouteSpec, os_type: str, mode: str = "apply") -> str:
    """``os_type`` linux|windows, ``mode`` apply|cleanup|verify."""
    table = {
        ("linux", "apply"): render_linux_apply, ("linux", "cleanup"): render_linux_cleanup,
        ("linux", "verify"): render_linux_verify,
        ("windows", "apply"): render_windows_apply, ("windows", "cleanup"): render_windows_cleanup,
        ("windows", "verify"): render_windows_verify,
    }
    key = (str(os_type).lower(), str(mode).lower())
    if key not in table:
        raise GuestScriptError(f"unknown os/mode {os_type!r:.20}/{mode!r:.20}")
    return table[key](spec)


def command_id(os_type: str) -> str:
    return "RunPowerShellScript" if str(os_type).lower() == "windows" else "RunShellScript"


def script_lines(script: str) -> list[str]:
    """The ``script`` list RunCommandInput takes."""
    return script.split("\n")


def _stdout_part(message: str) -> str:
    # Linux Run Command message: "Enable succeeded: \n[stdout]\n...\n[stderr]\n..."
    if "[stdout]" in message:
        message = message.split("[stdout]", 1)[1]
        message = message.split("[stderr]", 1)[0]
    return message


def parse_run_command_output(output: str | Sequence[object]) -> dict:
    """The JSON object on the last JSON line of Run Command output.

    Accepts a plain stdout string, the Linux ``value[0].message`` string with its
    ``[stdout]``/``[stderr]`` sections, or the ``value`` list (dicts or SDK objects with
    ``code``/``message``; Windows puts StdOut and StdErr in separate items)."""
    if isinstance(output, str):
        texts = [_stdout_part(output)]
    else:
        texts = []
        for item in output:
            code = (item.get("code") if isinstance(item, dict) else getattr(item, "code", "")) or ""
            msg = item.get("message") if isinstance(item, dict) else getattr(item, "message", "")
            if "StdErr" in str(code):
                continue
            texts.append(_stdout_part(str(msg or "")))
    for text in reversed(texts):
        for line in reversed(text.splitlines()):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise RunCommandOutputError("no JSON result line in the Run Command output")
