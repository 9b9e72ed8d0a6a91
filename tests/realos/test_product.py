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

import pytest

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


def approve(capsys, command: str, *argv: str) -> tuple[int, str]:
    code, out = hairpin(capsys, command, *argv, "--format", "json")
    plan_hash = json.loads(out)["plan"]["hash"]
    return hairpin(capsys, command, *argv, "--approve", plan_hash)


def test_apply_verify_drift_rollback_on_a_real_guest(real_estate, capsys):
    emu, guest, ctx = real_estate
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert code != 0 and "0/20" in out  # hs-vm1 is both mirrors' primary: it hairpins

    code, out = approve(capsys, "apply", "--vm", VM1)  # verifies through hs-vm2, the primary now
    assert code == 0 and "status: applied" in out, out
    emu.fail_over(VM1)  # the DBA fails the mirrors back: hs-vm1's calls come back to it
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert code == 0 and "20/20" in out, out

    # Drift the guest's own stack cannot explain: the fix's routes deleted by hand. The sweep
    # reads it from inside the guest (its verify script) and reports it.
    rc, _, err = guest.machines["hs-vm1"].run("ip route flush proto 211 table all")
    assert rc == 0, err
    summary = run_sweep(ctx, config=SweepConfig(run_command_workers=1, run_command_interval=0))
    assert summary.drift.get(DriftKind.GUEST_ROUTES) == 1, summary.as_dict()
    code, out = approve(capsys, "apply", "--vm", VM1)  # re-applies the guest routes only
    assert code == 0 and "20/20" in out, out

    # What a systemd package upgrade does: the fix (and the VM) must survive it.
    rc, _, err = guest.machines["hs-vm1"].run("systemctl restart systemd-networkd; sleep 5")
    assert rc == 0, err
    after_restart = hairpin(capsys, "verify", "--vm", VM1)

    code, out = approve(capsys, "rollback", "--vm", VM1)
    assert code == 0, out
    emu.fail_over(VM1)  # the rollback's deallocation moved the primaries to hs-vm2 again
    code, out = hairpin(capsys, "verify", "--vm", VM1)
    assert "0/20" in out, out
    assert after_restart[0] == 0 and "20/20" in after_restart[1], \
        f"after a networkd restart: {after_restart[1]}"
