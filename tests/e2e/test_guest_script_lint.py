"""The rendered guest scripts pass shellcheck (Debian's package; `make test` installs it as
root): every bash script a VM runs, for TCP-only, UDP and HA-ports rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import shared.core.guest as g

pytestmark = pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (as root, make test installs it)")

ROUTES = {
    "tcp": (g.VipRoute("10.0.1.100", "Tcp", 1972, 1972),),
    "tcp+udp": (g.VipRoute("10.0.1.100", "Tcp", 1972, 1972),
                g.VipRoute("10.0.1.101", "Udp", 53, 5353)),
    "ha-ports": (g.VipRoute("10.0.1.100", "Tcp", 1972, 1972),
                 g.VipRoute("10.0.1.102", "All", 0, 0)),
}
RENDERERS = {
    "apply": g.render_linux_apply,
    "body": g.render_linux_body,
    "cleanup": g.render_linux_cleanup,
    "verify": g.render_linux_verify,
}


def spec(routes) -> g.GuestRouteSpec:
    return g.GuestRouteSpec("10.0.1.10", "10.0.1.11", "00-0D-3A-12-34-56", "10.0.1.1", 24,
                            routes, ha_ports_broad_rule_allowed=True)


@pytest.mark.parametrize("script", sorted(RENDERERS))
@pytest.mark.parametrize("rules", sorted(ROUTES))
def test_rendered_bash_is_shellcheck_clean(rules, script, tmp_path):
    path = tmp_path / f"{script}.sh"
    path.write_text(RENDERERS[script](spec(ROUTES[rules])))
    done = subprocess.run(["shellcheck", "--severity=style", "--shell=bash", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def test_the_installer_payload_is_checked_too(tmp_path):
    """The apply script carries the body in a heredoc, which shellcheck does not read: the
    body is checked on its own above, and here it is the heredoc's exact content."""
    s = spec(ROUTES["tcp"])
    assert g.render_linux_body(s) in g.render_linux_apply(s)


def test_the_preflight_probe_is_shellcheck_clean(tmp_path):
    from shared.core.guest.probe import render_probe

    for mac in ("00-0D-3A-12-34-56", None):
        path = tmp_path / "probe.sh"
        path.write_text(render_probe("linux", mac))
        done = subprocess.run(["shellcheck", "--severity=style", "--shell=bash", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout
