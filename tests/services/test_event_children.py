"""Events whose subject is a child resource, on the ARM emulator: ARM raises a write or delete of
a load balancer's pool, rule, frontend or NAT rule, and of a VNet's subnet, with the child as
subject and the child's own operation (docs/azure-contract.md). The scope is the parent, read
as it is now."""

from __future__ import annotations

import pytest

from shared.core.vocab import RecordKind
from tests.support.events import VM1, VM2, RecordingRemediation, ago, arm_event, make_ctx, processor
from tests.support.fixtures_emulator import LB_ID, OTHER_SUBNET_ID, POOL_ID, SUBNET_ID


@pytest.mark.parametrize("operation, subject", [
    ("Microsoft.Network/loadBalancers/backendAddressPools/write", POOL_ID),
    ("Microsoft.Network/loadBalancers/loadBalancingRules/write", f"{LB_ID}/loadBalancingRules/x"),
    ("Microsoft.Network/loadBalancers/frontendIPConfigurations/write",
     f"{LB_ID}/frontendIPConfigurations/fe-a"),
    ("Microsoft.Network/loadBalancers/inboundNatRules/write", f"{LB_ID}/inboundNatRules/rdp"),
])
def test_lb_child_write_evaluates_the_vms_in_the_lbs_pools(emulator, operation, subject):
    emu = emulator()
    rem = RecordingRemediation()
    result = processor(make_ctx(emu), rem).handle(arm_event(operation, subject, at=ago(30)))
    assert result.status == "evaluated", result
    assert result.vm_ids == sorted([VM1, VM2]) and result.resource_id == subject
    # The same as the load balancer's own write (a fresh processor: no memo, no passes).
    parent_rem = RecordingRemediation()
    parent = processor(make_ctx(emu), parent_rem).handle(arm_event(
        "Microsoft.Network/loadBalancers/write", LB_ID, at=ago(30)))
    assert result.vm_ids == parent.vm_ids and result.findings == parent.findings
    assert sorted(rem.of("apply")) == sorted(parent_rem.of("apply")) == sorted(
        [VM1.lower(), VM2.lower()])
    assert emu.requests.writes() == []


def test_lb_child_delete_reads_the_lb_that_is_still_there(emulator):
    # Deleting a pool or a frontend leaves the LB: it is read, not taken as gone.
    emu = emulator()
    result = processor(make_ctx(emu)).handle(arm_event(
        "Microsoft.Network/loadBalancers/frontendIPConfigurations/delete",
        f"{LB_ID}/frontendIPConfigurations/fe-old", at=ago(30)))
    assert result.status == "evaluated" and result.vm_ids == sorted([VM1, VM2])


@pytest.mark.azurite
def test_frontend_delete_finds_routes_to_a_vip_no_frontend_serves(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.journal.open_record(RecordKind.VERIFIED_ROUTE, VM2, "10.0.1.200", operation_id="op-1")
    result = processor(ctx).handle(arm_event(
        "Microsoft.Network/loadBalancers/frontendIPConfigurations/delete",
        f"{LB_ID}/frontendIPConfigurations/fe-old", at=ago(30)))
    assert any(d.startswith("stale_routes:10.0.1.200") for d in result.drift[VM2])


def test_subnet_write_evaluates_the_vms_with_a_nic_in_that_subnet(emulator):
    emu = emulator()
    p = processor(make_ctx(emu))
    result = p.handle(arm_event("Microsoft.Network/virtualNetworks/subnets/write", SUBNET_ID,
                                at=ago(30)))
    assert result.status == "evaluated" and result.vm_ids == sorted([VM1, VM2])
    # vnet2's subnet holds only a NIC attached to no VM.
    other = p.handle(arm_event("Microsoft.Network/virtualNetworks/subnets/write",
                               OTHER_SUBNET_ID, at=ago(30)))
    assert other.status == "evaluated" and other.vm_ids == [] and other.reason == "no VM in scope"
