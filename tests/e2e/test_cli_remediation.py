"""`hairpin plan | apply | verify | rollback | history` in-process, against the emulator and
Azurite, configured only through the environment (as an operator runs it)."""

from __future__ import annotations

import json
import re

import pytest

from shared.cli.main import main
from tests.support.remediation import (
    NIC1,
    NIC2,
    VM1,
    VM2,
    arm_writes,
    nics_named,
    vm_nic_ids,
)

pytestmark = pytest.mark.azurite


@pytest.fixture
def cli_env(estate, storage_ns, monkeypatch):
    emu, guest, _ = estate(emu_kwargs={"lro_retry_after": 1, "lro_polls": 0})
    for key, value in {
        "HAIRPIN_MODE": "apply", "HAIRPIN_STORAGE_CONNECTION": storage_ns.connection_string,
        "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix + "cli",
        "HAIRPIN_LOCK_LEASE_SECONDS": "15",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    return emu


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_texts(capsys):
    for cmd in ("plan", "apply", "rollback", "history"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert f"usage: hairpin {cmd}" in text and "--format" in text
    with pytest.raises(SystemExit):
        main(["apply", "--help"])
    assert "--approve HASH" in capsys.readouterr().out


def test_plan_apply_history_rollback(cli_env, capsys):
    emu = cli_env
    code, out, _ = run(capsys, "plan", "--vm", VM1)
    assert code == 0 and "Order: hs-vm2 -> hs-vm1" in out and "[DEALLOCATES THE VM]" in out
    code, out, _ = run(capsys, "plan", "--vm", VM1, "--format", "json")
    doc = json.loads(out)
    plan_hash = doc["plan"]["hash"]
    finding = doc["findings"][0]["id"]
    code, out, _ = run(capsys, "plan", finding, "--format", "json")
    assert json.loads(out)["plan"]["hash"] == plan_hash

    emu.requests.reset()
    code, out, _ = run(capsys, "apply", finding)
    assert code == 1 and "status: pending" in out and plan_hash in out
    assert arm_writes(emu) == []
    code, out, _ = run(capsys, "apply", finding, "--approve", plan_hash)
    assert code == 0, out
    assert "status: applied" in out and "verify 10.0.1.100:1972: 20/20 connects" in out

    code, out, _ = run(capsys, "history", "--vm", VM1)
    assert code == 0 and "deallocate" in out and "succeeded" in out and "cli/" in out

    # Rollback of hs-vm2: shows its plan first, then needs its hash.
    code, out, _ = run(capsys, "rollback", "--vm", VM2)
    assert code == 1 and "status: pending" in out and "delete-nic" in out
    rb_hash = re.search(r"--approve ([0-9a-f]{64})", out).group(1)
    code, out, _ = run(capsys, "rollback", "--vm", VM2, "--approve", rb_hash)
    assert code == 0, out
    assert nics_named(emu, "hs-vm2-hairpin-nic") == []
    assert NIC2 not in vm_nic_ids(emu, VM2)
    assert emu.power_state(VM2) == "running"
    code, out, _ = run(capsys, "rollback", "--vm", VM2)
    assert code == 0 and "nothing to roll back" in out


def test_rollback_never_touches_a_nic_we_did_not_create(cli_env, capsys):
    emu = cli_env
    # An operator's own second NIC named like ours but without the managed tag.
    nic = emu.store.get(f"{VM1.split('/providers/')[0]}/providers/Microsoft.Network/"
                        "networkInterfaces/hs-vm1-nic")
    nic.update(id=NIC1, name="hs-vm1-hairpin-nic", tags={"owner": "ops"})
    nic["properties"]["ipConfigurations"][0]["properties"].update(
        privateIPAddress="10.0.1.50", loadBalancerBackendAddressPools=[])
    nic["properties"]["ipConfigurations"][0]["id"] = NIC1 + "/ipConfigurations/ipconfig1"
    nic["properties"].pop("virtualMachine", None)
    nic["properties"].pop("macAddress", None)
    emu.store.put(nic)
    emu.requests.reset()
    code, out, _ = run(capsys, "rollback", "--vm", VM1)
    assert code == 0 and "nothing to roll back" in out
    # And apply refuses to adopt it.
    _, plan_out, _ = run(capsys, "plan", "--vm", VM1, "--format", "json")
    plan_hash = json.loads(plan_out)["plan"]["hash"]
    code, out, _ = run(capsys, "apply", "--vm", VM1, "--approve", plan_hash)
    assert code == 1 and "not tagged" in out
    assert len(nics_named(emu, "hs-vm1-hairpin-nic")) == 1
    assert [e for e in arm_writes(emu) if "hs-vm1-hairpin-nic" in e.path] == []


def test_usage_errors(cli_env, capsys):
    code, _, err = run(capsys, "plan")
    assert code == 2 and "exactly one" in err
    code, _, err = run(capsys, "plan", "--vm", "not-an-id")
    assert code == 2 and "neither a VM resource ID" in err
    code, _, err = run(capsys, "plan", "--vm", VM1.replace("hs-vm1", "ghost"))
    assert code == 2 and "was not found" in err


def test_verify_measures_before_and_after_the_fix(cli_env, capsys):
    emu = cli_env
    code, out, _ = run(capsys, "verify", "--vm", VM1)
    assert code == 1 and "status: failed" in out
    assert "verify 10.0.1.100:1972: 0/20 connects" in out  # the hairpin itself, measured
    assert [w.action for w in arm_writes(emu)] == [
        "Microsoft.Compute/virtualMachines/runCommand/action"]  # nothing but Run Command
    code, out, _ = run(capsys, "plan", "--vm", VM1, "--format", "json")
    plan_hash = json.loads(out)["plan"]["hash"]
    assert run(capsys, "apply", "--vm", VM1, "--approve", plan_hash)[0] == 0
    code, out, _ = run(capsys, "verify", "--vm", VM1)
    assert code == 0 and "verify 10.0.1.100:1972: 20/20 connects (answered by hs-vm2 20)" in out
