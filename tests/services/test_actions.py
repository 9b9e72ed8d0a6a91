"""The write adapter (shared.azure.actions) against the emulator through the real SDK, and the
modelled guest answering our own scripts honestly."""
# ruff: noqa: F811 - the `estate` fixture is imported from tests.support.remediation

from __future__ import annotations

import ipaddress

import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure.actions import ArmActions, EtagConflict, NotManaged, RunCommandPending
from shared.azure.clients import counting_writes
from shared.core import guest as guest_scripts
from shared.core.remediation.model import NicSpec
from tests.support.remediation import NIC1, RGP, VM1, VM2, estate  # noqa: F401 - fixtures

pytestmark = pytest.mark.azurite
SUBNET = f"{RGP}/Microsoft.Network/virtualNetworks/hs-vnet/subnets/default"
NSG = f"{RGP}/Microsoft.Network/networkSecurityGroups/hs-nsg"


def spec(**kw):
    values = dict(id=NIC1, name="hs-vm1-hairpin-nic", location="eastus", subnet_id=SUBNET,
                  vnet_id=None, private_ip="10.0.1.11", gateway="10.0.1.1", prefix_len=24,
                  nsg_id=NSG, accelerated_networking=False, tags={"hairpin-managed": "true"},
                  exists=False)
    values.update(kw)
    return NicSpec(**values)


@pytest.fixture
def acts(estate):
    emu, guest, ctx = estate()
    return emu, guest, ArmActions(ctx.clients(emu.subscription_id), conflict_backoff=0.05)


def _put_nic(request) -> bool:
    method, url = request
    return method == "PUT" and "/networkInterfaces/" in url


def test_create_nic_never_overwrites(acts):
    emu, _, a = acts
    with counting_writes() as writes:
        doc = a.create_nic(NIC1, spec().arm_body())
        props = doc["properties"]
        assert props["ipConfigurations"][0]["properties"]["privateIPAddress"] == "10.0.1.11"
        assert props["networkSecurityGroup"]["id"].endswith("hs-nsg")
        assert props["enableIPForwarding"] is False and doc["tags"] == {"hairpin-managed": "true"}
        with pytest.raises(EtagConflict):
            a.create_nic(NIC1, spec().arm_body())
    # The second is refused on the re-read, before any PUT (If-None-Match is no guarantee).
    assert writes.count == 1 and [_put_nic(r) for r in writes.requests] == [True]


def test_attach_needs_a_deallocated_vm_and_is_idempotent(acts):
    emu, _, a = acts
    a.create_nic(NIC1, spec().arm_body())
    with pytest.raises(HttpResponseError) as err:
        a.attach_nic(VM1, NIC1)
    assert "AddingOrDeletingNetworkInterfacesOnARunningVirtualMachineNotSupported" in str(err.value)
    a.deallocate(VM1)
    vm = a.attach_nic(VM1, NIC1)
    refs = vm["properties"]["networkProfile"]["networkInterfaces"]
    assert [r["properties"]["primary"] for r in refs] == [True, False]
    with counting_writes() as writes:
        a.attach_nic(VM1, NIC1)  # already attached: no write
    assert writes.count == 0
    a.start(VM1)
    assert a.power_state(a.get_vm(VM1)) == "running"
    assert a.get_nic(NIC1)["properties"]["macAddress"]  # assigned at start


def test_delete_only_managed_unattached_nics(acts):
    emu, _, a = acts
    primary = f"{RGP}/Microsoft.Network/networkInterfaces/hs-vm1-nic"
    with pytest.raises(NotManaged):
        a.delete_nic(primary)
    a.create_nic(NIC1, spec().arm_body())
    assert a.delete_nic(NIC1) is True
    assert a.get_nic(NIC1) is None
    assert a.delete_nic(NIC1) is False
    untagged = spec(tags={"owner": "ops"})
    a.create_nic(NIC1, untagged.arm_body())
    with pytest.raises(NotManaged):
        a.delete_nic(NIC1)
    assert a.get_nic(NIC1) is not None


def _verify_lines(vm_ip_second="10.0.1.11"):
    s = guest_scripts.GuestRouteSpec(
        primary_ip=ipaddress.IPv4Address("10.0.1.10"),
        secondary_ip=ipaddress.IPv4Address(vm_ip_second),
        secondary_mac=guest_scripts.MacAddress.parse("00-0D-3A-00-00-01"),
        gateway=ipaddress.IPv4Address("10.0.1.1"), prefix_len=24,
        routes=(guest_scripts.VipRoute(ipaddress.IPv4Address("10.0.1.100"),
                                       guest_scripts.Protocol.TCP, 1972, 1972),))
    return s, guest_scripts.script_lines(guest_scripts.render_windows_verify(s, count=20))


def test_verification_is_honest_before_the_fix(acts):
    emu, guest, a = acts
    _, lines = _verify_lines()
    with counting_writes() as writes:
        # hs-vm1 is the only healthy member of 10.0.1.100: every connect is mapped to itself.
        r1 = a.run_command(VM1, "RunPowerShellScript", lines)
        assert r1.ok is False and r1.result["verify"][0]["ok"] == 0
        # hs-vm2 is probe-down: all of its connects go to hs-vm1 and succeed.
        r2 = a.run_command(VM2, "RunPowerShellScript", lines)
        assert r2.ok is True and r2.result["verify"][0] == {
            "vip": "10.0.1.100", "port": 1972, "ok": 20, "total": 20, "backends": {"hs-vm1": 20}}
    assert writes.count == 2


def test_apply_script_without_the_nic_fails_clearly(acts):
    emu, guest, a = acts
    s, _ = _verify_lines()
    lines = guest_scripts.script_lines(guest_scripts.render(s, "windows", "apply"))
    r = a.run_command(VM1, "RunPowerShellScript", lines)
    assert r.ok is False and r.result["error"] == "nic_not_found"


def test_run_command_pending_states(acts):
    emu, _, a = acts
    _, lines = _verify_lines()
    with counting_writes() as writes:
        emu.set_power(VM1, "deallocated")
        with pytest.raises(RunCommandPending, match="deallocated"):
            a.run_command(VM1, "RunPowerShellScript", lines)
        emu.set_power(VM1, "running")
        emu.instance_extra[VM1.lower()]["vmAgent"]["statuses"][0]["displayStatus"] = "Not Ready"
        with pytest.raises(RunCommandPending, match="agent"):
            a.run_command(VM1, "RunPowerShellScript", lines)
    assert writes.count == 0


def test_run_command_conflict_retries_with_backoff(acts):
    emu, _, a = acts
    _, lines = _verify_lines()
    fault = emu.faults.add("POST", r"hs-vm2/runCommand$", 409, error_code="Conflict",
                           message="Run command extension execution is in progress.", times=2)
    with counting_writes() as writes:
        r = a.run_command(VM2, "RunPowerShellScript", lines)
    assert r.ok and fault.hits == 2 and writes.count == 3


def test_attach_is_a_patch_of_the_nic_list_that_the_least_privilege_role_may_make(estate):
    """A VM PUT carries the whole VM, and ARM checks every resource it links (a user-assigned
    identity here, docs/azure-facts.md "NIC changes"): the product's role cannot make one. The
    attach is a PATCH of only the NIC list, with If-Match, and the managed NIC is deleted with
    the VM (deleteOption Delete)."""
    from azure.mgmt.compute.models import VirtualMachine

    from shared.core import permissions
    from tests.support.remediation import default_scenario

    scenario = default_scenario()
    identity = (f"{RGP.rsplit('/providers', 1)[0]}/providers/Microsoft.ManagedIdentity/"
                "userAssignedIdentities/app-identity")
    vm_doc = next(d for d in scenario["resources"] if d["id"].lower() == VM1.lower())
    vm_doc["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
    emu, _, ctx = estate(scenario, emu_kwargs={
        "roles": {"*": set(permissions.REMEDIATION_ACTIONS)}})
    a = ArmActions(ctx.clients(emu.subscription_id), conflict_backoff=0.05)
    a.create_nic(NIC1, spec().arm_body())
    a.deallocate(VM1)
    rg, name = VM1.split("/")[4], VM1.rsplit("/", 1)[1]
    compute = ctx.clients(emu.subscription_id).compute
    whole = compute.virtual_machines.get(rg, name)
    whole.network_profile.network_interfaces.append(
        type(whole.network_profile.network_interfaces[0])(id=NIC1, primary=False))
    for missing in ("Microsoft.Compute/disks/write",  # its OS disk (action name unconfirmed)
                    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"):
        with pytest.raises(HttpResponseError) as err:
            compute.virtual_machines.begin_create_or_update(rg, name, VirtualMachine(
                whole.as_dict())).result()
        assert err.value.status_code == 403
        assert err.value.error.code == "LinkedAuthorizationFailed"
        assert f"'{missing}' on the linked scope" in str(err.value)
        emu.roles["*"].add(missing)  # granted: the next linked check is the one that fails
    for granted in ("Microsoft.Compute/disks/write",
                    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"):
        emu.roles["*"].discard(granted)  # back to the product's own role

    emu.requests.reset()
    vm = a.attach_nic(VM1, NIC1)
    refs = vm["properties"]["networkProfile"]["networkInterfaces"]
    assert [r["id"].lower() for r in refs][-1] == NIC1.lower()
    assert [(e.method, e.status) for e in emu.requests.writes()] == [("PATCH", 200)]
    stored = {r["id"].lower(): r["properties"] for r in
              emu.store.get(VM1)["properties"]["networkProfile"]["networkInterfaces"]}
    assert stored[NIC1.lower()].get("deleteOption") == "Delete"
    assert emu.store.get(VM1)["identity"]["userAssignedIdentities"]  # left as it was
    emu.roles = None  # an operator deletes the VM
    compute.virtual_machines.begin_delete(rg, name).result()
    assert a.get_nic(NIC1) is None  # deleted with the VM
