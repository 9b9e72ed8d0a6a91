"""`hairpin apply` / `verify` / `rollback` and the sweep's drift detection against a real OS:
hs-vm1 of the default Linux scenario is a booted Debian 12 guest with systemd-networkd (netplan)
behind the emulator's Run Command (emulator/guests/realos); hs-vm2 is modelled (its Run Command
results) and served on the fabric (a namespace answering its backend port), so the mirrors
that fail over to it while hs-vm1 is deallocated keep answering, as on Azure. The DBA then
fails them back to hs-vm1, and only then does verification cross the hairpin. Several real
boots: ``HAIRPIN_REALOS=1`` only.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from emulator.guests.ilb_rules import TABLE
from emulator.guests.modelled import ModelledGuest
from emulator.guests.netns import emulator_health
from emulator.guests.realos.guest import RealOsGuest
from shared.cli.main import main
from shared.core.vocab import DriftKind
from shared.services.sweep import SweepConfig, run_sweep
from tests.realos.rig import image
from tests.support.paths import SCENARIOS
from tests.support.remediation import make_ctx

if os.environ.get("HAIRPIN_REALOS") != "1" or os.geteuid() != 0:
    pytest.skip("real-OS tests run as root with HAIRPIN_REALOS=1 (make test-os)",
                allow_module_level=True)

pytestmark = [pytest.mark.realos, pytest.mark.azurite]

DOC = json.loads((SCENARIOS / "default-linux.json").read_text())
VM1 = next(r["id"] for r in DOC["resources"] if r["name"] == "hs-vm1")
# hs-vm1 opted in to unattended remediation, so that the drift sweep may verify it from inside
# and push its routes again (docs/operations.md: unattended runs act only on opted-in VMs).
next(r for r in DOC["resources"] if r["id"] == VM1)["tags"]["hairpin-remediation"] = "auto"


@pytest.fixture
def real_estate(emulator, storage_ns, monkeypatch):
    modelled = ModelledGuest()
    with RealOsGuest(DOC, image(), {"hs-vm1": "networkd"}, fallback=modelled) as guest:
        emu = emulator(DOC, guest=guest, lro_retry_after=1, lro_polls=0)
        modelled.attach(emu)
        guest.health_source = lambda: emulator_health(emu)
        for key, value in {
            "HAIRPIN_MODE": "apply", "HAIRPIN_STORAGE_CONNECTION": storage_ns.connection_string,
            "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix,
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AzureWebJobsStorage", raising=False)
        yield emu, guest, make_ctx(emu, storage_ns)


def hairpin(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    with capsys.disabled():  # shown as it runs, and kept out of the next call's capture
        print(out.out[-1500:], out.err[-500:])
    return code, out.out


def connects(out: str) -> list[int]:
    """The connects per VIP that `hairpin verify` / `apply` printed (``verify <vip>:<port>: N/20
    connects``), in order."""
    return [int(n) for n in re.findall(r"verify [\d.]+:\d+: (\d+)/20 connects", out)]


def evidence(guest: RealOsGuest) -> str:
    """What hs-vm1 and the fabric's ILB hold now, for a failed assertion."""
    _, out, err = guest.machines["hs-vm1"].run(
        "ip rule; ip -4 route show table all | grep -v ' table local '", timeout=60)
    ilb = guest.fabric.sh("nft", "list", "table", "ip", TABLE, ns=guest.fabric.router,
                          check=False).stdout
    return f"{out}{err}\n{ilb}"


def approve(capsys, command: str, *argv: str) -> tuple[int, str]:
    code, out = hairpin(capsys, command, *argv, "--format", "json")
    plan_hash = json.loads(out)["plan"]["hash"]
    return hairpin(capsys, command, *argv, "--approve", plan_hash)


def test_apply_verify_drift_rollback_on_a_real_guest(real_estate, capsys):
    emu, guest, ctx = real_estate
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert code != 0 and connects(out) == [0, 0], out  # both mirrors' primary: it hairpins

    code, out = approve(capsys, "apply", "--vm", VM1)  # verifies through hs-vm2, the primary now
    assert code == 0 and "status: applied" in out, out
    assert connects(out) == [20] * 4, out  # hs-vm2's (modelled), then hs-vm1's, via hs-vm2
    emu.fail_over(VM1)  # the DBA fails the mirrors back: hs-vm1's calls come back to it
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert code == 0 and connects(out) == [20, 20], out + evidence(guest)

    # Drift the guest's own stack cannot explain: the fix's routes deleted by hand. The sweep
    # reads it from inside the guest (its verify script) and pushes the routes again.
    rc, _, err = guest.machines["hs-vm1"].run("ip route flush proto 211 table all")
    assert rc == 0, err
    summary = run_sweep(ctx, config=SweepConfig(run_command_workers=1, run_command_interval=0))
    assert summary.drift.get(DriftKind.GUEST_ROUTES) == 1, summary.as_dict()
    assert summary.actions.get("ensure_guest_routes:repaired") == 1, summary.as_dict()
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert code == 0 and connects(out) == [20, 20], out + evidence(guest)

    # What a systemd package upgrade does: the fix (and the VM) must survive it.
    rc, _, err = guest.machines["hs-vm1"].run("systemctl restart systemd-networkd; sleep 5")
    assert rc == 0, err
    after_restart = hairpin(capsys, "verify", "--vm", VM1)

    code, out = approve(capsys, "rollback", "--vm", VM1)
    assert code == 0, out
    emu.fail_over(VM1)  # the rollback's deallocation moved the primaries to hs-vm2 again
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert connects(out) == [0, 0], out
    assert after_restart[0] == 0 and connects(after_restart[1]) == [20, 20], \
        f"after a networkd restart: {after_restart[1]}"
