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
    FORMAT_VERSION,
    HA_PORTS_SIDE_EFFECT,
    HEREDOC_END,
    LOCAL_RULE_PREF,
    POLICY_TABLE,
    ROUTE_PROTO,
    RULE_PREF,
    STATE_DIR,
    UNIT_LINK,
    UNIT_NAME,
    UNIT_PATH,
    GuestRouteSpec,
    Protocol,
    VerifyTarget,
    check_count_timeout,
    verify_items,
)
from shared.core.guest.templates import fill, template


# The values the apply script reads; cleanup reads the subset in CLEANUP_VARS.
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
        "WANT_VIPS": f"'{' '.join(str(v) for v in spec.vips)}'",
        "WANT_RULES": f"'{want_rules}'",
        "WANT_BROAD": "1" if spec.needs_broad_rule else "0",
    }


CLEANUP_VARS = ("FORMAT", "PRIMARY_IP", "SECONDARY_IP", "SECONDARY_MAC", "PREFIX_LEN", "TABLE",
                "RULE_PREF", "LOCAL_PREF", "RT_PROTO", "STATE_DIR", "ADDRESS_MARKER")


def _bash_vars(spec: GuestRouteSpec, names: tuple[str, ...] | None = None) -> str:
    values = _bash_values(spec)
    return "".join(f"{k}={values[k]}\n" for k in (names or tuple(values)))


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
    return (_header("hairpin routes: apply", spec) + _bash_vars(spec) + template("prelude.sh")
            + template("find_devs.sh") + fill("apply.sh", STEPS="\n".join(steps)))


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


def render_linux_apply(spec: GuestRouteSpec) -> str:
    """The Run Command (RunShellScript) apply script: runs the body from a temp copy, and only
    when it succeeded installs it with the boot unit (only files whose content changed)."""
    body = render_linux_body(spec)
    unit = render_linux_unit()
    for text in (body, unit):  # the heredoc terminator can never occur inside
        assert HEREDOC_END not in text
    payload = (f"BODY_PATH={BODY_PATH}\nUNIT_PATH={UNIT_PATH}\nUNIT_LINK={UNIT_LINK}\n"
               + f"UNIT_NAME={UNIT_NAME}\n"
               + f"cat >\"$TMPD/body\" <<'{HEREDOC_END}'\n" + body + HEREDOC_END + "\n"
               + f"cat >\"$TMPD/unit\" <<'{HEREDOC_END}'\n" + unit + HEREDOC_END)
    return _header("hairpin routes: install and apply", spec) + fill("install.sh", PAYLOAD=payload)


def render_linux_cleanup(spec: GuestRouteSpec) -> str:
    """Run Command cleanup script: removes exactly what apply added (routes tagged with our
    proto, rules at our pref/table, the moved local rule, the address only if we added it,
    the persisted files and unit)."""
    return (_header("hairpin routes: cleanup", spec) + _bash_vars(spec, CLEANUP_VARS)
            + f"BODY_PATH={BODY_PATH}\nUNIT_PATH={UNIT_PATH}\nUNIT_LINK={UNIT_LINK}\n"
            + f"UNIT_NAME={UNIT_NAME}\n"
            + template("prelude.sh") + template("find_devs.sh") + template("cleanup.sh"))


def render_linux_verify(targets: GuestRouteSpec | Iterable[VerifyTarget], *, count: int = 20,
                        timeout_s: int = 2) -> str:
    """bash + coreutils ``timeout`` (present in minimal images): N connects per VIP:port."""
    items = verify_items(targets)
    check_count_timeout(count, timeout_s)
    return ("#!/bin/bash\n# azure-ilb-hairpin verification: N TCP connects per VIP:port.\n"
            + f"COUNT={count}\nTIMEOUT={timeout_s}\n"
            + fill("verify.sh", PROBES="\n".join(f"probe {t.vip} {t.port}" for t in items)))
