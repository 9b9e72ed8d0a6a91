"""Least privilege, proven on the emulator.

Every flow the product runs in Azure (audit over ARM and over Resource Graph, the scheduled
audit, plan + approved apply, the drift sweep repairing a deleted managed NIC, an Event Grid
VM-start event, rollback) runs against the emulator as the function's identity. The RBAC
actions the emulator's request log recorded for that identity (the URL's action plus the linked
access checks ARM makes on a write) must equal `shared.core.permissions.REMEDIATION_ACTIONS`, the
custom role in infra/main.json: nothing missing, nothing extra. Then the same flows run with the
emulator enforcing exactly that role for the identity: all pass, and a request outside the role
gets ARM's 403 `AuthorizationFailed`. Dropping any single action makes a flow hit 403 on it.
Resource-group-scoped deployments (remediator on the groups, reader at subscription scope) are
proven the same way with the emulator's scoped grants.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential

from emulator.guests import RecordingGuest
from emulator.identity import Identity
from shared.core import arm_ids, permissions
from shared.core.journal import Trigger
from shared.core.schedule import MaintenanceWindow
from shared.core.vocab import Status
from shared.services import audit, remediation, sweep
from shared.settings import Settings
from shared.storage.journal import Journal
from shared.storage.locks import LockManager
from shared.storage.reports import ReportStore
from tests.support.fixtures_emulator import build_clients
from tests.support.paths import ROOT

pytestmark = pytest.mark.azurite


MAIN_TEMPLATE = ROOT / "infra" / "main.json"

# The function app's user-assigned identity, and an operator who changes things out of band.
PRODUCT = Identity("5e1f0000-0000-4000-8000-00000000f001", "5e1f0000-0000-4000-8000-00000000c001",
                   "hairpin-id")
OPERATOR = Identity("0be00000-0000-4000-8000-00000000f002", "0be00000-0000-4000-8000-00000000c002",
                    "operator")

SUB = "00000000-0000-0000-0000-000000000001"  # the default scenario's subscription
RG = "rg-healthshare"
P = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
VM1 = f"{P}/Microsoft.Compute/virtualMachines/hs-vm1"
VM2 = f"{P}/Microsoft.Compute/virtualMachines/hs-vm2"
LB = f"{P}/Microsoft.Network/loadBalancers/ilb-healthshare"


# --------------------------------------------------------------------------- guest model

_LINUX_PROBE = re.compile(r"^probe (\S+) (\d+)$", re.M)
_WIN_TARGET = re.compile(r"\$Targets \+= ,@\('([^']+)', (\d+)\)")


def simulated_guest(vm: dict, command_id: str, script: list, parameters: list):
    """Answers the product's scripts as a healthy guest would: route scripts apply, cleanup
    scripts clean, verification connects all succeed (the namespace model proves the real
    scripts elsewhere; here only the ARM side matters)."""
    text = "\n".join(script)
    targets = _LINUX_PROBE.findall(text) or _WIN_TARGET.findall(text)
    os_name = "windows" if command_id == "RunPowerShellScript" else "linux"
    if "preflight probe" in text:
        result = {"probe": {"primary_mac_found": True}, "problems": [], "ok": True}
    elif targets:
        verify = [{"vip": vip, "port": int(port), "ok": 20, "total": 20,
                   "backends": {vm["name"]: 20}} for vip, port in targets]
        result = {"result": "verified", "os": os_name, "ok": True, "verify": verify}
    elif "hairpin routes: cleanup" in text:
        result = {"result": "cleaned", "os": os_name, "format": 1, "changes": []}
    else:
        result = {"result": "applied", "os": os_name, "format": 1, "changes": ["+route"]}
    return 0, json.dumps(result), ""


# --------------------------------------------------------------------------- harness

def _settings(emu, ns, **over) -> Settings:
    values = dict(
        mode="apply", arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint,
        subscriptions=(SUB,),
        storage_prefix=ns.prefix, lock_lease_seconds=15,
        maintenance_window=MaintenanceWindow.parse("daily 00:00-24:00 UTC"),
        # the product's own identity, as the deployment sets it (own writes are recognised)
        identity_principal_id=PRODUCT.principal_id, identity_client_id=PRODUCT.client_id)
    values.update(over)
    return Settings(**values)


def _context(emu, ns, **over):
    from shared.services.context import ServiceContext

    settings = _settings(emu, ns, **over)
    blobs, tables = ns.blob_service(), ns.table_service()
    return ServiceContext(
        settings, polling_interval=0,
        journal=Journal(tables, table=settings.storage_names.journal_table,
                        state_table=ns.table("state")).ensure(),
        locks=LockManager(blobs, container=settings.storage_names.lock_container,
                          lease_seconds=settings.lock_lease_seconds).ensure(),
        reports=ReportStore(blobs, container=settings.storage_names.report_container).ensure())


@pytest.fixture
def harness(emulator, storage_ns, monkeypatch):
    """harness(roles=None) -> (emu, ctx, operator clients); the product authenticates as
    PRODUCT exactly as deployed (AZURE_CLIENT_ID = the user-assigned identity's client id)."""

    def make(roles=None):
        emu = emulator("default", guest=RecordingGuest(handler=simulated_guest),
                       identities=[PRODUCT, OPERATOR], roles=roles)
        monkeypatch.setenv("AZURE_CLIENT_ID", PRODUCT.client_id)
        monkeypatch.setenv("HAIRPIN_IDENTITY_PRINCIPAL_ID", PRODUCT.principal_id)
        monkeypatch.setenv("HAIRPIN_IDENTITY_CLIENT_ID", PRODUCT.client_id)
        operator = build_clients(emu, ManagedIdentityCredential(client_id=OPERATOR.client_id))
        return emu, _context(emu, storage_ns), operator

    return make


def _high_or_medium(result) -> list:
    return [f for f in result.evaluation.findings if f.severity in ("high", "medium")]


def flow_audit(ctx, emu) -> None:
    """Audits with backend health from Azure Monitor, and from the rule health API where the
    metric has no data (a load balancer too new to have any), both needed in the field."""
    arm = audit.run_audit(ctx, subscriptions=[SUB])
    emu.metrics.silent.add(LB.lower())
    graph = audit.run_audit(ctx, subscriptions=[SUB], resource_graph=True)
    emu.metrics.silent.clear()
    assert {f.id for f in arm.evaluation.findings} == {f.id for f in graph.evaluation.findings}
    assert _high_or_medium(arm), "the default scenario is at risk"
    audit.scheduled_audit(ctx)


def flow_apply(ctx) -> None:
    pr = remediation.plan_for_vm(ctx, VM1)
    assert not pr.plan.empty
    out = remediation.apply(ctx, VM1, Trigger("http", principal="operator@example.com"),
                            approval=pr.plan.hash)
    assert out.status == Status.APPLIED, out.as_dict()
    again = audit.run_audit(ctx, subscriptions=[SUB])
    assert _high_or_medium(again) == [], [f.reason for f in _high_or_medium(again)]


def _managed_nic(operator, vm_name: str) -> str:
    vm = operator.compute.virtual_machines.get(RG, vm_name)
    ids = [r.id for r in vm.network_profile.network_interfaces if not r.primary]
    assert len(ids) == 1
    return ids[0]


def sabotage(operator, vm_name: str = "hs-vm2") -> str:
    """Someone detaches and deletes a VM's managed NIC (drift the sweep must repair)."""
    nic_id = _managed_nic(operator, vm_name)
    c = operator.compute.virtual_machines
    c.begin_deallocate(RG, vm_name).result()
    vm = c.get(RG, vm_name)
    vm.network_profile.network_interfaces = [
        r for r in vm.network_profile.network_interfaces if r.id.lower() != nic_id.lower()]
    c.begin_create_or_update(RG, vm_name, vm).result()
    operator.network.network_interfaces.begin_delete(RG, arm_ids.name_of(nic_id)).result()
    c.begin_start(RG, vm_name).result()
    return nic_id


def opt_in(operator) -> None:
    for name in ("hs-vm1", "hs-vm2"):
        operator.compute.virtual_machines.begin_update(
            RG, name, {"tags": {"hairpin-remediation": "auto"}}).result()


def flow_drift(ctx, operator) -> None:
    opt_in(operator)
    nic_id = sabotage(operator)
    # One VM at a time: with parallel workers, the verify of hs-vm1 holds the pool lock the
    # repair of hs-vm2 needs, and the repair is left pending (reported to the sweep's owner).
    config = sweep.SweepConfig(run_command_workers=1, run_command_interval=0)
    summary = sweep.run_sweep(ctx, config=config)
    assert summary.drift_found >= 1 and summary.actions_taken >= 1, \
        json.dumps(summary.as_dict(), indent=1, default=str)
    assert operator.network.network_interfaces.get(RG, arm_ids.name_of(nic_id))
    assert _managed_nic(operator, "hs-vm2").lower() == nic_id.lower()
    assert _high_or_medium(audit.run_audit(ctx, subscriptions=[SUB])) == []


def flow_event(ctx) -> None:
    from shared.services import events

    raw = {
        "id": str(uuid.uuid4()), "topic": f"/subscriptions/{SUB}",
        "subject": VM1, "eventType": "Microsoft.Resources.ResourceActionSuccess",
        "eventTime": datetime.now(UTC).isoformat(), "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.Compute/virtualMachines/start/action",
                 "resourceUri": VM1, "status": "Succeeded", "subscriptionId": SUB,
                 "resourceProvider": "Microsoft.Compute",
                 "claims": {"oid": OPERATOR.principal_id, "appid": OPERATOR.client_id},
                 "authorization": {"action": "Microsoft.Compute/virtualMachines/start/action",
                                   "scope": VM1,
                                   "evidence": {"principalId": OPERATOR.principal_id}}},
    }
    result = events.handle_event(raw, events.EventProcessor(ctx))
    done = result.as_dict()
    assert done["status"] == "evaluated", done
    assert [r["status"] for r in done["remediations"]] == ["applied"], done  # routes re-pushed


def flow_rollback(ctx, emu) -> None:
    for vm in (VM1, VM2):
        pr, _ = remediation.rollback_plan(ctx, vm)
        out = remediation.rollback(ctx, vm, Trigger("cli", principal="operator@example.com"),
                                   approval=pr.plan.hash)
        assert out.status == Status.APPLIED, out.as_dict()
        name = arm_ids.name_of(vm)
        assert any("hairpin routes: cleanup" in "\n".join(s) for s in emu.guest.scripts_for(name))
    # nothing of ours is left: only the primary NICs remain
    nics = [d for d in emu.store.of_type("Microsoft.Network/networkInterfaces")]
    assert not any((d.get("tags") or {}).get("hairpin-managed") for d in nics)


def run_everything(emu, ctx, operator) -> None:
    flow_audit(ctx, emu)
    flow_apply(ctx)
    flow_drift(ctx, operator)
    flow_event(ctx)
    flow_rollback(ctx, emu)


def used(emu, principal: str = PRODUCT.principal_id) -> set[str]:
    return {a.lower() for a in emu.requests.actions_used(principal)}


def low(actions) -> set[str]:
    return {a.lower() for a in actions}


# --------------------------------------------------------------------------- the proof

def test_every_flow_uses_exactly_the_role(harness):
    emu, ctx, operator = harness()
    started = time.monotonic()
    flow_audit(ctx, emu)
    audit_used = used(emu)
    flow_apply(ctx)
    flow_drift(ctx, operator)
    flow_event(ctx)
    flow_rollback(ctx, emu)
    everything = used(emu)
    # audit alone: exactly the auditor role
    assert audit_used == low(permissions.AUDIT_ACTIONS), (
        f"missing from AUDIT_ACTIONS: {sorted(audit_used - low(permissions.AUDIT_ACTIONS))}; "
        f"never used: {sorted(low(permissions.AUDIT_ACTIONS) - audit_used)}")
    # all flows: exactly the remediator role (nothing missing, nothing extra)
    role = low(permissions.REMEDIATION_ACTIONS)
    assert everything == role, (f"missing from the role: {sorted(everything - role)}; "
                                f"in the role but never used: {sorted(role - everything)}")
    # ... which is what infra/main.json deploys
    variables = json.loads(MAIN_TEMPLATE.read_text())["variables"]
    assert low(variables["remediationActions"]) == everything
    assert low(variables["auditActions"]) == audit_used
    mine = [e for e in emu.requests if e.principal == PRODUCT.principal_id]
    assert all(e.status < 400 or e.status in (404, 409, 412) for e in mine), \
        [(e.method, e.path, e.status) for e in mine if e.status >= 400]
    print(f"\nleast privilege: {len(mine)} ARM requests, {len(everything)} actions, "
          f"{sum(1 for e in mine if e.is_write)} writes, {time.monotonic() - started:.1f} s")


def test_the_action_mapping_agrees_with_the_emulator(harness):
    emu, ctx, operator = harness()
    run_everything(emu, ctx, operator)
    assert len(emu.requests) > 50
    for e in emu.requests:
        mapped = permissions.rbac_action(e.method, e.path)
        assert mapped is not None and mapped.lower() == (e.action or "").lower(), \
            (e.method, e.path, e.action, mapped)
        if e.principal != PRODUCT.principal_id:
            continue  # the operator's own writes (a VM PUT re-checks its disks, say)
        for linked in e.linked_actions:
            assert linked in permissions.LINKED_ACTIONS.get(mapped, ()), (mapped, linked)


def test_every_flow_passes_with_the_role_enforced(harness):
    emu, ctx, operator = harness(roles={PRODUCT.principal_id: set(permissions.REMEDIATION_ACTIONS),
                                        OPERATOR.principal_id: {"*"}})
    run_everything(emu, ctx, operator)
    denied = [(e.method, e.path, e.action) for e in emu.requests if e.status == 403]
    assert denied == []
    assert emu.requests.count(status=403) == 0 and len(emu.requests.writes()) > 10


def test_a_request_outside_the_role_gets_403(harness):
    emu, ctx, operator = harness(roles={PRODUCT.principal_id: set(permissions.REMEDIATION_ACTIONS),
                                        OPERATOR.principal_id: {"*"}})
    product = build_clients(emu, ManagedIdentityCredential(client_id=PRODUCT.client_id))
    outside = [
        ("delete a VM", lambda: product.compute.virtual_machines.begin_delete(RG, "hs-vm1")
         .result(), "Microsoft.Compute/virtualMachines/delete"),
        ("restart a VM", lambda: product.compute.virtual_machines.begin_restart(RG, "hs-vm1")
         .result(), "Microsoft.Compute/virtualMachines/restart/action"),
        ("change an NSG", lambda: product.network.network_security_groups.begin_create_or_update(
            RG, "nsg-x", {"location": "westeurope"}).result(),
         "Microsoft.Network/networkSecurityGroups/write"),
        ("change a load balancer", lambda: product.network.load_balancers.begin_create_or_update(
            RG, "ilb-healthshare", product.network.load_balancers.get(RG, "ilb-healthshare"))
         .result(), "Microsoft.Network/loadBalancers/write"),
        ("delete a VNet", lambda: product.network.virtual_networks.begin_delete(
            RG, "vnet-healthshare").result(), "Microsoft.Network/virtualNetworks/delete"),
    ]
    for what, call, action in outside:
        with pytest.raises(HttpResponseError) as exc:
            call()
        assert exc.value.status_code == 403, what
        assert exc.value.error.code == "AuthorizationFailed", what
        assert action in exc.value.error.message, (what, exc.value.error.message)
        assert PRODUCT.client_id in exc.value.error.message
    # the same requests are fine for the operator: it is the role, not the emulator
    assert operator.compute.virtual_machines.get(RG, "hs-vm1").name == "hs-vm1"


def test_a_linked_permission_outside_the_role_gets_403(harness):
    """A NIC PUT is within the role, but joining a public IP is not (ARM checks linked access)."""
    emu, _, operator = harness(roles={PRODUCT.principal_id: set(permissions.REMEDIATION_ACTIONS),
                                      OPERATOR.principal_id: {"*"}})
    product = build_clients(emu, ManagedIdentityCredential(client_id=PRODUCT.client_id))
    subnet = operator.network.network_interfaces.get(RG, "hs-vm1-nic") \
        .ip_configurations[0].subnet.id
    pip_id = operator.network.public_ip_addresses.begin_create_or_update(
        RG, "pip-x", {"location": "westeurope", "sku": {"name": "Standard"},
                      "public_ip_allocation_method": "Static"}).result().id
    body = {"location": "westeurope", "properties": {"ipConfigurations": [{
        "name": "ipconfig1", "properties": {"subnet": {"id": subnet},
                                            "privateIPAllocationMethod": "Dynamic",
                                            "publicIPAddress": {"id": pip_id}}}]}}
    with pytest.raises(HttpResponseError) as exc:
        product.network.network_interfaces.begin_create_or_update(RG, "nic-x", body).result()
    assert exc.value.status_code == 403
    assert "Microsoft.Network/publicIPAddresses/join/action" in exc.value.error.message


def test_the_audit_only_role_audits_and_cannot_write(harness):
    emu, ctx, operator = harness(roles={PRODUCT.principal_id: set(permissions.AUDIT_ACTIONS),
                                        OPERATOR.principal_id: {"*"}})
    flow_audit(ctx, emu)
    assert emu.requests.count(status=403) == 0
    pr = remediation.plan_for_vm(ctx, VM1)
    out = remediation.apply(ctx, VM1, Trigger("http", principal="operator@example.com"),
                            approval=pr.plan.hash)
    assert out.status in (Status.FAILED, Status.PENDING, Status.REFUSED)
    mine = [e for e in emu.requests if e.principal == PRODUCT.principal_id]
    assert [e for e in mine if e.is_write and e.status < 400] == []
    denied = [e for e in mine if e.status == 403]
    assert denied and all(not permissions.is_read_only(e.action) for e in denied)
    # nothing was left half-done: both VMs still run, no NIC was created
    for name in ("hs-vm1", "hs-vm2"):
        view = operator.compute.virtual_machines.instance_view(RG, name)
        assert any(s.code == "PowerState/running" for s in view.statuses)


# --------------------------------------------------------------------------- scoped assignments
# infra/main.json with scopeResourceGroups: the remediator role on the listed groups, the
# reader role (SUBSCRIPTION_READ_ACTIONS) at subscription scope. The emulator's roles accept
# {scope: actions} and apply a grant at its scope and below, as role assignments do.

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"/subscriptions/{SUB}/resourceGroups/{RG}"


def test_resource_group_scoped_deployment_passes_every_flow(harness):
    roles = {PRODUCT.principal_id: {RG_SCOPE: permissions.REMEDIATION_ACTIONS,
                                    SUB_SCOPE: permissions.SUBSCRIPTION_READ_ACTIONS},
             OPERATOR.principal_id: {"*"}}
    emu, ctx, operator = harness(roles=roles)
    run_everything(emu, ctx, operator)
    assert emu.requests.count(status=403) == 0
    # the writes all happened inside the group the remediator role is assigned on
    writes = [e for e in emu.requests.writes() if e.principal == PRODUCT.principal_id]
    assert writes and all(e.path.lower().startswith(RG_SCOPE.lower() + "/") for e in writes)


def test_without_subscription_reads_a_group_scoped_identity_cannot_list(harness):
    """Why the reader role exists: list_all and operation status live at subscription scope."""
    emu, ctx, _ = harness(roles={PRODUCT.principal_id: {RG_SCOPE: permissions.REMEDIATION_ACTIONS},
                                 OPERATOR.principal_id: {"*"}})
    with pytest.raises(HttpResponseError) as exc:
        audit.run_audit(ctx, subscriptions=[SUB])
    assert exc.value.status_code == 403 and exc.value.error.code == "AuthorizationFailed"
    assert f"over scope '{SUB_SCOPE}/providers/" in exc.value.error.message
    # Resource Graph is a tenant-level query: a read grant at any scope lets it through
    from azure.mgmt.resourcegraph.models import QueryRequest

    product = build_clients(emu, ManagedIdentityCredential(client_id=PRODUCT.client_id))
    rows = product.graph.resources(QueryRequest(subscriptions=[SUB], query="Resources | limit 1"))
    assert rows.count == 1


def test_the_reader_role_needs_the_compute_operation_status_read(harness):
    """SUBSCRIPTION_READ_ACTIONS = the audit reads + Compute LRO status: with the audit reads
    only at subscription scope, the first Compute long-running operation cannot be polled."""
    extra = set(permissions.SUBSCRIPTION_READ_ACTIONS) - set(permissions.AUDIT_ACTIONS)
    assert extra == {"Microsoft.Compute/locations/operations/read"}
    roles = {PRODUCT.principal_id: {RG_SCOPE: permissions.REMEDIATION_ACTIONS,
                                    SUB_SCOPE: permissions.AUDIT_ACTIONS},
             OPERATOR.principal_id: {"*"}}
    emu, ctx, _ = harness(roles=roles)
    try:
        flow_apply(ctx)
    except AssertionError:
        pass
    denied = {e.action for e in emu.requests if e.status == 403}
    assert denied == extra


def test_a_group_outside_the_assignment_gets_403_on_writes(harness):
    roles = {PRODUCT.principal_id: {f"{SUB_SCOPE}/resourceGroups/rg-other":
                                    permissions.REMEDIATION_ACTIONS,
                                    SUB_SCOPE: permissions.SUBSCRIPTION_READ_ACTIONS},
             OPERATOR.principal_id: {"*"}}
    emu, ctx, operator = harness(roles=roles)
    flow_audit(ctx, emu)  # reads are granted at subscription scope
    assert emu.requests.count(status=403) == 0
    pr = remediation.plan_for_vm(ctx, VM1)
    out = remediation.apply(ctx, VM1, Trigger("http", principal="operator@example.com"),
                            approval=pr.plan.hash)
    assert out.status != Status.APPLIED
    denied = [e for e in emu.requests if e.status == 403]
    assert denied and all(not permissions.is_read_only(e.action) for e in denied)
    assert all(e.path.lower().startswith(RG_SCOPE.lower()) for e in denied)
    for name in ("hs-vm1", "hs-vm2"):  # nothing was left half-done
        view = operator.compute.virtual_machines.instance_view(RG, name)
        assert any(s.code == "PowerState/running" for s in view.statuses)


def test_scoped_grants_follow_arm_inheritance():
    from emulator.rbac import granted_at

    grant = {RG_SCOPE: {"Microsoft.Network/networkInterfaces/write"},
             SUB_SCOPE: {"*/read"}}
    nic = f"{RG_SCOPE}/providers/Microsoft.Network/networkInterfaces/n1"
    assert granted_at(grant, nic) == {"microsoft.network/networkinterfaces/write", "*/read"}
    assert granted_at(grant, f"{SUB_SCOPE}/providers/Microsoft.Network/networkInterfaces") \
        == {"*/read"}
    assert granted_at(grant, f"{SUB_SCOPE}/resourceGroups/{RG}x/providers/x") == {"*/read"}
    assert granted_at(grant, "/subscriptions/other/resourceGroups/rg") == set()
    assert granted_at(grant, None) == {"microsoft.network/networkinterfaces/write", "*/read"}
    assert granted_at({"/": {"a/b"}}, "/subscriptions/x") == {"a/b"}
    assert granted_at({"A/B"}, "/anything") == {"a/b"}  # a plain set: every scope


@pytest.mark.parametrize("missing", permissions.REMEDIATION_ACTIONS)
def test_each_permission_is_needed(harness, missing):
    """Drop one action from the role: the flows hit 403 on exactly it (audit actions during the
    audit, write actions during apply + rollback), or the preflight, reading the identity's
    permissions from ARM, refuses to take the VM down for the lack of it (and
    test_the_preflight_asks_only_for_what_arm_checks shows it asks for nothing ARM does not)."""
    role = set(permissions.REMEDIATION_ACTIONS) - {missing}
    emu, ctx, operator = harness(roles={PRODUCT.principal_id: role,
                                        OPERATOR.principal_id: {"*"}})
    try:
        if missing in permissions.AUDIT_ACTIONS:
            flow_audit(ctx, emu)
        else:
            flow_apply(ctx)
            flow_rollback(ctx, emu)
    except (AssertionError, HttpResponseError):
        pass  # expected: a flow fails without the permission
    denied = {a for e in emu.requests if e.status == 403 for a in e.actions}
    preflight = " ".join(e.error or "" for vm in (VM1, VM2)
                         for e in ctx.journal.history(vm, 100) if e.action == "preflight")
    assert missing in denied or f"lacks {missing}" in preflight, (
        f"{missing} was never needed: the role has an extra action")


def test_the_preflight_asks_only_for_what_arm_checks(harness):
    """Every action the preflight requires on the VM and on the NIC is one ARM checked at that
    scope during the apply that followed."""
    from shared.core.remediation.preflight import needed_actions

    emu, ctx, _ = harness()
    flow_apply(ctx)
    checked: dict[str, set[str]] = {}
    for e in emu.requests:
        if e.principal == PRODUCT.principal_id and e.status < 400:
            for action in e.actions:
                checked.setdefault(action.lower(), set()).add(e.path.lower())
    nic = VM2.replace("virtualMachines/hs-vm2", "networkInterfaces/hs-vm2-hairpin-nic")
    for scope, actions in needed_actions(VM2, nic, starts=True).items():
        for action in actions:
            # the VM's own actions at its URL; the NIC's join as a linked check on the VM PATCH
            paths = checked.get(action.lower(), set())
            assert any(p.startswith(scope.lower()) or p.startswith(VM2.lower())
                       for p in paths), (action, scope)


# --------------------------------------------------------------------------- the mapping, pure

S = "/subscriptions/00000000-0000-0000-0000-0000000000aa"
G = f"{S}/resourceGroups/rg/providers"


@pytest.mark.parametrize("method,path,action", [
    ("GET", f"{S}/providers/Microsoft.Network/networkInterfaces",
     "Microsoft.Network/networkInterfaces/read"),
    ("GET", f"{S}/providers/Microsoft.Compute/skus?$filter=location eq 'x'",
     "Microsoft.Compute/skus/read"),
    ("PUT", f"{G}/Microsoft.Network/networkInterfaces/n1",
     "Microsoft.Network/networkInterfaces/write"),
    ("PATCH", f"{G}/Microsoft.Compute/virtualMachines/vm1",
     "Microsoft.Compute/virtualMachines/write"),
    ("DELETE", f"{G}/Microsoft.Network/networkInterfaces/n1",
     "Microsoft.Network/networkInterfaces/delete"),
    ("POST", f"{G}/Microsoft.Compute/virtualMachines/vm1/deallocate",
     "Microsoft.Compute/virtualMachines/deallocate/action"),
    ("POST", f"{G}/Microsoft.Compute/virtualMachines/vm1/runCommand",
     "Microsoft.Compute/virtualMachines/runCommand/action"),
    ("POST", f"{G}/Microsoft.Network/loadBalancers/lb/loadBalancingRules/r1/health",
     "Microsoft.Network/loadBalancers/loadBalancingRules/health/action"),
    ("GET", f"{G}/Microsoft.Network/virtualNetworks/v/subnets/s",
     "Microsoft.Network/virtualNetworks/subnets/read"),
    ("GET", f"{G}/Microsoft.Compute/virtualMachines/vm1/instanceView",
     "Microsoft.Compute/virtualMachines/instanceView/read"),
    ("GET", f"{S}/providers/Microsoft.Network/locations/westeurope/operations/abc",
     "Microsoft.Network/locations/operations/read"),
    ("GET", f"{S}/providers/Microsoft.Network/locations/westeurope/operationResults/abc",
     "Microsoft.Network/locations/operationResults/read"),
    ("GET", f"{S}/providers/Microsoft.Compute/locations/westeurope/operations/abc",
     "Microsoft.Compute/locations/operations/read"),
    ("POST", "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01",
     "Microsoft.ResourceGraph/resources/read"),
    ("GET", f"{S}/resourceGroups/rg", "Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("POST", f"https://eastus.metrics.monitor.azure.com{S}/metrics:getBatch?metricnames=x",
     "Microsoft.Insights/metrics/read"),
    ("GET", f"{G}/Microsoft.Network/loadBalancers/lb/providers/Microsoft.Insights/metrics",
     "Microsoft.Insights/metrics/read"),
    ("GET", "https://management.azure.com" + f"{G}/Microsoft.Network/loadBalancers/lb",
     "Microsoft.Network/loadBalancers/read"),
])
def test_rbac_action_of_a_request(method, path, action):
    assert permissions.rbac_action(method, path) == action


def test_rbac_action_of_non_arm_paths():
    assert permissions.rbac_action("GET", "/msi/token") is None
    assert permissions.rbac_action("GET", "/subscriptions") is None
    assert permissions.rbac_action("GET", f"{S}/resourceGroups/rg/other/x") is None


def test_action_sets_are_consistent():
    assert set(permissions.AUDIT_ACTIONS) <= set(permissions.REMEDIATION_ACTIONS)
    assert set(permissions.AUDIT_ACTIONS) <= set(permissions.SUBSCRIPTION_READ_ACTIONS)
    assert permissions.actions_for_mode(True) == permissions.AUDIT_ACTIONS
    assert permissions.actions_for_mode(False) == permissions.REMEDIATION_ACTIONS
    for actions in (permissions.AUDIT_ACTIONS, permissions.REMEDIATION_ACTIONS):
        assert len(set(actions)) == len(actions) and list(actions) == sorted(actions,
                                                                             key=str.lower)
