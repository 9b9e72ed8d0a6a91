"""Pure: validated values -> the Linux (bash, RunShellScript) apply, cleanup and verify scripts,
assembled from ``templates/*.sh``.

Why the apply script is more than the documented host route (docs/azure-facts.md, "Hairpin
through a second NIC"): the ILB DNATs a flow from this VM's secondary address back to this VM's
primary address without SNAT; the reply then goes to a *local* address and never returns
through the fabric's reverse NAT. Narrow policy rules (one per backend port and protocol) send
exactly those replies back out of the primary NIC via the gateway, which requires the ``local``
table rule to move after them.

Known limit of the narrow rule (measured in the namespace model): a local client that explicitly
binds the managed secondary address and connects to the primary address's backend port gets its
replies routed via the fabric and fails; nothing should bind the managed NIC's address.

Scripts end their output with ONE JSON object line (read by ``output.parse_run_command_output``),
kept well below Run Command's 4,096-byte output limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.core.guest.spec import (
    ADDRESS_MARKER,
    BODY_PATH,
    DHCLIENT_ENTER_HOOK,
    DHCLIENT_EXIT_HOOK,
    FORMAT_VERSION,
    HA_PORTS_SIDE_EFFECT,
    HEREDOC_END,
    IFUP_HOOK,
    LOCAL_RULE_PREF,
    LOCK_PATH,
    MANIFEST,
    MECHANISM_FILE,
    NETWORKD_DIR,
    NETWORKD_DROPIN,
    NETWORKD_SECONDARY,
    NM_DISPATCHER,
    POLICY_TABLE,
    ROUTE_PROTO,
    RULE_PREF,
    STATE_DIR,
    UNIT_LINK,
    UNIT_NAME,
    UNIT_PATH,
    WATCH_UNIT_LINK,
    WATCH_UNIT_NAME,
    WATCH_UNIT_PATH,
    GuestRouteSpec,
    Protocol,
    VerifyTarget,
    check_count_timeout,
    verify_items,
)
from shared.core.guest.templates import fill, template


# The values the body reads; the installer and cleanup also read the paths in FILE_VARS.
def _bash_values(spec: GuestRouteSpec) -> dict[str, str]:
    want_rules = " ".join(f"{_ipproto_alt(p)}/{port}" for p, port in spec.narrow_rules)
    return {
        "FORMAT": str(FORMAT_VERSION),
        "PRIMARY_IP": str(spec.primary_ip),
        "SECONDARY_IP": str(spec.secondary_ip),
        "SECONDARY_MAC": spec.secondary_mac.linux,
        "GATEWAY": str(spec.gateway),
        "PREFIX_LEN": str(spec.prefix_len),
        "TABLE": str(POLICY_TABLE),
        "RULE_PREF": str(RULE_PREF),
        "LOCAL_PREF": str(LOCAL_RULE_PREF),
        "RT_PROTO": str(ROUTE_PROTO),
        "STATE_DIR": STATE_DIR,
        "ADDRESS_MARKER": ADDRESS_MARKER,
        "MECHANISM_FILE": MECHANISM_FILE,
        "WANT_VIPS": f"'{' '.join(str(v) for v in spec.vips)}'",
        "WANT_RULES": f"'{want_rules}'",
        "WANT_BROAD": "1" if spec.needs_broad_rule else "0",
    }


BODY_VARS = ("FORMAT", "PRIMARY_IP", "SECONDARY_IP", "SECONDARY_MAC", "GATEWAY", "PREFIX_LEN",
             "TABLE", "RULE_PREF", "LOCAL_PREF", "RT_PROTO", "STATE_DIR", "ADDRESS_MARKER",
             "MECHANISM_FILE", "WANT_VIPS", "WANT_RULES", "WANT_BROAD")
FILE_VARS = {
    "BODY_PATH": BODY_PATH, "UNIT_PATH": UNIT_PATH, "UNIT_LINK": UNIT_LINK,
    "WATCH_UNIT_NAME": WATCH_UNIT_NAME, "WATCH_UNIT_PATH": WATCH_UNIT_PATH,
    "WATCH_UNIT_LINK": WATCH_UNIT_LINK, "MANIFEST": MANIFEST, "NETWORKD_DIR": NETWORKD_DIR,
    "DROPIN_NAME": NETWORKD_DROPIN, "SECONDARY_NETWORK_NAME": NETWORKD_SECONDARY,
    "IFUP_HOOK": IFUP_HOOK, "DHCLIENT_ENTER_HOOK": DHCLIENT_ENTER_HOOK,
    "DHCLIENT_EXIT_HOOK": DHCLIENT_EXIT_HOOK, "NM_DISPATCHER": NM_DISPATCHER,
    "LOCK_PATH": LOCK_PATH,
}
# What the installer and cleanup read (shellcheck flags any value a script does not use).
INSTALL_VARS = ("FORMAT", "PRIMARY_IP", "SECONDARY_IP", "SECONDARY_MAC", "GATEWAY", "TABLE",
                "RULE_PREF", "LOCAL_PREF", "RT_PROTO", "STATE_DIR", "MECHANISM_FILE",
                "WANT_VIPS", "WANT_RULES", "WANT_BROAD",
                *(k for k in FILE_VARS if k != "WATCH_UNIT_NAME"))
CLEANUP_VARS = ("FORMAT", "PRIMARY_IP", "SECONDARY_IP", "SECONDARY_MAC", "GATEWAY",
                "PREFIX_LEN", "TABLE", "RULE_PREF", "LOCAL_PREF", "RT_PROTO", "STATE_DIR",
                "ADDRESS_MARKER", "MECHANISM_FILE",
                *(k for k in FILE_VARS if k != "WATCH_UNIT_LINK"))


def bash_vars(spec: GuestRouteSpec, names: tuple[str, ...] = BODY_VARS) -> str:
    """The ``NAME=value`` lines a script starts with (the values of ``names``)."""
    values = {**_bash_values(spec), **FILE_VARS}
    return "".join(f"{k}={values[k]}\n" for k in names)


def _ipproto(p: Protocol) -> tuple[str, int]:
    return {Protocol.TCP: ("tcp", 6), Protocol.UDP: ("udp", 17)}[p]


def _ipproto_alt(p: Protocol) -> str:
    """How `ip rule show` may print the protocol: name (with /etc/protocols), number, or
    ``ipproto-N`` (iproute2 without the name)."""
    name, number = _ipproto(p)
    return f"{name}|{number}|ipproto-{number}"


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
    return (_header("hairpin routes: apply", spec) + bash_vars(spec) + template("prelude.sh")
            + template("find_devs.sh") + template("kernel.sh") + template("watch.sh")
            + fill("apply.sh", STEPS="\n".join(steps)))


def render_linux_unit() -> str:
    """The boot unit: the body once the network is up (the stacks do not delete the kernel's
    pref-0 local rule, so the move after the narrow rules is redone at every boot)."""
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


def render_linux_watch_unit() -> str:
    """Installed only when no network stack is recognised: re-applies after link and address
    events (`ip monitor`), so a stack the script does not know cannot keep the routes away."""
    return "\n".join([
        "[Unit]",
        "Description=Azure ILB hairpin routes: re-apply on link and address events",
        f"After={UNIT_NAME}",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart=/bin/bash {BODY_PATH} --watch",
        "Restart=always",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def render_linux_apply(spec: GuestRouteSpec) -> str:
    """The Run Command (RunShellScript) apply script: finds the guest's network stack, runs the
    body from a temp copy, and only when it succeeded persists it (the stack's configuration,
    the boot unit; only files whose content changed); a failure undoes the whole run."""
    body = render_linux_body(spec)
    unit = render_linux_unit()
    watch = render_linux_watch_unit()
    for text in (body, unit, watch):  # the heredoc terminator can never occur inside
        assert HEREDOC_END not in text
    payload = "\n".join(f"cat >\"$TMPD/{name}\" <<'{HEREDOC_END}'\n{text}{HEREDOC_END}"
                        for name, text in (("body", body), ("unit", unit), ("watch", watch)))
    return (_header("hairpin routes: install and apply", spec) + bash_vars(spec, INSTALL_VARS)
            + template("prelude.sh") + template("find_devs.sh") + template("stack.sh")
            + fill("install.sh", PAYLOAD=payload))


def render_linux_cleanup(spec: GuestRouteSpec) -> str:
    """Run Command cleanup script: removes exactly what apply added (the stack's configuration
    from the manifest, routes tagged with our proto, rules at our pref/table, the moved local
    rule after pref 0 is back, the address only if we added it, the unit files)."""
    return (_header("hairpin routes: cleanup", spec) + bash_vars(spec, CLEANUP_VARS)
            + template("prelude.sh") + template("find_devs.sh") + template("stack.sh")
            + template("cleanup.sh"))


def render_linux_verify(targets: GuestRouteSpec | Iterable[VerifyTarget], *, count: int = 20,
                        timeout_s: int = 2) -> str:
    """bash and coreutils (present in minimal images): N connects per VIP:port, and
    what the guest holds of the fix (per VIP its route; the rules, the local-table rule
    prefs and the persistence mechanism), so that drift shows from Azure."""
    items = verify_items(targets)
    check_count_timeout(count, timeout_s)
    return ("#!/bin/bash\n# azure-ilb-hairpin verification: N TCP connects per VIP:port.\n"
            + f"COUNT={count}\nTIMEOUT={timeout_s}\nRULE_PREF={RULE_PREF}\nTABLE={POLICY_TABLE}\n"
            + f"MECHANISM_FILE={MECHANISM_FILE}\n"
            + fill("verify.sh", PROBES="\n".join(f"probe {t.vip} {t.port}" for t in items)))
