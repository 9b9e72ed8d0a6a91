"""End to end: Event Grid events and the drift sweep drive the real remediation service on the
ARM emulator (modelled guest route tables, real SDK) with Azurite for journal, locks, reports.

- an ILB write adding a frontend for VMs that already have the fix -> the route for the new VIP
  is pushed and verified (no deallocation);
- a managed NIC deleted by someone -> the sweep re-creates it within the guard (pending outside
  the maintenance window, applied inside it);
- a VM restart with a lost route -> re-pushed and verified;
- our own writes' events (every write the remediation made) do not start a loop.
"""

from __future__ import annotations

import copy
import json

import pytest

from shared.core.events import EventConfig, identity_from_jwt
from shared.core.journal import Trigger
from shared.core.vocab import TriggerKind
from shared.services import remediation
from shared.services.events import EventProcessor
from tests.support.events import ago, arm_event
from tests.support.paths import ROOT
from tests.support.remediation import CLI, IN_WINDOW, OUT_OF_WINDOW, RGP, VM1, VM2, WINDOW

pytestmark = pytest.mark.azurite

RG = "rg-healthshare"
LB = f"{RGP}/Microsoft.Network/loadBalancers/ilb-healthshare"
NIC2 = f"{RGP}/Microsoft.Network/networkInterfaces/hs-vm2-hairpin-nic"


class Counting:
    """Delegates to the real remediation module and counts the calls per VM."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name):
        target = getattr(remediation, name)
        if name not in ("apply", "ensure_guest_routes", "verify", "resume_interrupted"):
            return target

        def call(ctx, *args, **kwargs):
            self.calls.append((name, str(args[0]).lower() if args and name != "resume_interrupted"
                               and isinstance(args[0], str) else ""))
            return target(ctx, *args, **kwargs)

        return call


def default_scenario(linux: bool = False) -> dict:
    name = "default-linux.json" if linux else "default.json"
    return json.loads((ROOT / "emulator" / "scenarios" / name).read_text())


def opted_in_scenario(base: dict | None = None) -> dict:
    scenario = copy.deepcopy(base if base is not None else default_scenario())
    for doc in scenario["resources"]:
        if doc["type"] == "Microsoft.Compute/virtualMachines":
            doc.setdefault("tags", {})["hairpin-remediation"] = "auto"
    return scenario


@pytest.fixture
def fixed(estate, storage_ns):
    """Both mirror members fixed on demand (approved plan), as an operator would start."""
    from shared.storage.reports import ReportStore

    emu, guest, ctx = estate(opted_in_scenario(), clock=lambda: IN_WINDOW,
                             maintenance_window=WINDOW)
    ctx.reports = ReportStore(storage_ns.blob_service(),
                              container=storage_ns.container("reports")).ensure()
    pr = remediation.plan_for_vm(ctx, VM1)
    out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "applied", out.reasons
    emu.requests.reset()
    return emu, guest, ctx


def own_identity(ctx):
    return identity_from_jwt(ctx.credential.get_token(
        "https://management.azure.com/.default").token)


def processor(ctx, rem) -> EventProcessor:
    return EventProcessor(ctx, remediation=rem, identity=own_identity(ctx),
                          config=EventConfig(window_seconds=60, clock_skew_seconds=1))


def writes(emu):
    return [e for e in emu.requests.writes() if e.status and e.status < 400]


def test_ilb_write_adding_a_frontend_pushes_and_verifies_the_new_vip(fixed, arm_clients):
    emu, guest, ctx = fixed
    c = arm_clients(emu)
    lb = c.network.load_balancers.get(RG, "ilb-healthshare").as_dict()
    props = lb["properties"]
    subnet = props["frontendIPConfigurations"][0]["properties"]["subnet"]
    props["frontendIPConfigurations"].append({"name": "fe-new", "properties": {
        "privateIPAddress": "10.0.1.102", "privateIPAllocationMethod": "Static",
        "subnet": subnet}})
    rule = copy.deepcopy(props["loadBalancingRules"][0])
    rule.pop("id", None), rule.pop("etag", None)
    rule["name"] = "rule-new-1972"
    rule["properties"]["frontendIPConfiguration"] = {"id": f"{LB}/frontendIPConfigurations/fe-new"}
    props["loadBalancingRules"].append(rule)
    c.network.load_balancers.begin_create_or_update(RG, "ilb-healthshare", lb).result()
    emu.requests.reset()

    rem = Counting()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Network/loadBalancers/write", LB, at=ago(5)))
    assert result.status == "evaluated" and not result.own_write
    assert sorted(result.evaluated) == sorted([VM1, VM2])
    assert {(r["call"], r["status"]) for r in result.remediations} == {
        ("ensure_guest_routes", "applied")}
    for vm in ("hs-vm1", "hs-vm2"):
        assert "10.0.1.102" in guest.vms[vm].active  # the route for the new VIP is in the guest
    verified = ctx.journal.verified_routes()
    assert {(VM1.lower(), "10.0.1.102"), (VM2.lower(), "10.0.1.102")} <= set(verified)
    # Guest routes only: Run Commands, no NIC or power change.
    assert {e.action.split("/")[-2] for e in writes(emu)} == {"runCommand"}
    assert emu.power_state(VM1) == emu.power_state(VM2) == "running"


def test_managed_nic_deleted_by_someone_is_recreated_by_the_sweep_within_the_guard(
        fixed, arm_clients):
    from shared.services.sweep import SweepConfig, run_sweep

    emu, guest, ctx = fixed
    c = arm_clients(emu)
    # Someone detaches and deletes hs-vm2's managed NIC (the VM must be stopped for that).
    c.compute.virtual_machines.begin_deallocate(RG, "hs-vm2").result()
    vm = c.compute.virtual_machines.get(RG, "hs-vm2").as_dict()
    refs = vm["properties"]["networkProfile"]["networkInterfaces"]
    vm["properties"]["networkProfile"]["networkInterfaces"] = [
        r for r in refs if "hairpin" not in r["id"]]
    vm["properties"].pop("instanceView", None)
    c.compute.virtual_machines.begin_create_or_update(RG, "hs-vm2", vm).result()
    c.network.network_interfaces.begin_delete(RG, "hs-vm2-hairpin-nic").result()
    c.compute.virtual_machines.begin_start(RG, "hs-vm2").result()
    assert emu.store.get(NIC2) is None
    emu.requests.reset()

    rem = Counting()
    config = SweepConfig(run_command_workers=2, run_command_interval=0)
    trigger = Trigger(TriggerKind.SWEEP, principal="managed-identity")
    ctx.clock = lambda: OUT_OF_WINDOW
    first = run_sweep(ctx, remediation=rem, config=config, trigger=trigger)
    assert first.complete and first.drift.get("managed_nic_missing") == 1
    assert [p["vm_id"].lower() for p in first.pending] == [VM2.lower()]
    assert emu.store.get(NIC2) is None  # outside the window: nothing deallocates
    assert not [e for e in writes(emu) if e.method in ("PUT", "DELETE")]

    ctx.clock = lambda: IN_WINDOW
    second = run_sweep(ctx, remediation=rem, config=config, trigger=trigger)
    assert second.complete and second.actions.get("apply:repaired") == 1, second.as_dict()
    assert emu.store.get(NIC2) is not None
    refs = emu.store.get(VM2)["properties"]["networkProfile"]["networkInterfaces"]
    assert any(r["id"].lower() == NIC2.lower() for r in refs)
    assert emu.power_state(VM2) == emu.power_state(VM1) == "running"
    assert (VM2.lower(), "10.0.1.100") in ctx.journal.verified_routes()
    stored = ctx.reports.sweeps.read_json(second.sweep_id)
    assert stored["actions"]["apply:repaired"] == 1 and stored["complete"] is True
    (summary,) = ctx.journal.history(None, 10, action="sweep")[:1]
    assert summary.after["sweep_id"] == second.sweep_id


def test_frontend_removed_stale_routes_cleaned_by_the_sweep(estate, storage_ns, arm_clients):
    """Linux guests: a frontend is removed from the ILB; the sweep re-pushes the routes (the
    Linux script converges to the current frontends) and closes the stale verified records."""
    from shared.services.sweep import SweepConfig, run_sweep
    from shared.settings import Settings

    scenario = opted_in_scenario(default_scenario(linux=True))
    callers = Settings.from_env({"HAIRPIN_DECLARED_CALLERS": json.dumps(
        {"hs-vm1": ["10.0.1.100:1972"], "hs-vm2": ["10.0.1.100:1972"]})}).declared_callers
    emu, guest, ctx = estate(scenario, clock=lambda: IN_WINDOW, maintenance_window=WINDOW,
                             declared_callers=callers)
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash).status == "applied"
    assert "10.0.1.101" in guest.vms["hs-vm1"].active
    c = arm_clients(emu)
    lb = c.network.load_balancers.get(RG, "ilb-healthshare").as_dict()
    props = lb["properties"]
    props["loadBalancingRules"] = [r for r in props["loadBalancingRules"]
                                   if "ucr" not in r["name"]]
    props["frontendIPConfigurations"] = [f for f in props["frontendIPConfigurations"]
                                         if "ucr" not in f["name"]]
    c.network.load_balancers.begin_create_or_update(RG, "ilb-healthshare", lb).result()
    emu.requests.reset()

    summary = run_sweep(ctx, remediation=Counting(),
                        config=SweepConfig(run_command_workers=2, run_command_interval=0),
                        trigger=Trigger(TriggerKind.SWEEP, principal="managed-identity"))
    assert summary.complete and summary.drift.get("stale_routes") == 2, summary.as_dict()
    assert summary.actions.get("stale_routes:cleaned") == 2
    for vm in ("hs-vm1", "hs-vm2"):
        assert "10.0.1.101" not in guest.vms[vm].active  # the stale route left the guest
        assert "10.0.1.100" in guest.vms[vm].active  # the live one stays
    verified = ctx.journal.verified_routes()
    assert not {ip for _, ip in verified} & {"10.0.1.101"}
    assert {e.action.split("/")[-2] for e in writes(emu)} == {"runCommand"}


def test_vm_restart_with_a_lost_route_gets_it_pushed_again(fixed, arm_clients):
    emu, guest, ctx = fixed
    c = arm_clients(emu)
    with guest._lock:  # the route is lost in the guest (e.g. someone ran `route delete`)
        state = guest.vms["hs-vm1"]
        state.persistent.pop("10.0.1.100")
        state.active.pop("10.0.1.100")
    c.compute.virtual_machines.begin_restart(RG, "hs-vm1").result()
    assert "10.0.1.100" not in guest.vms["hs-vm1"].active
    emu.requests.reset()

    rem = Counting()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/restart/action", VM1, at=ago(5)))
    assert result.status == "evaluated"
    assert rem.calls == [("ensure_guest_routes", VM1.lower())]
    assert [(r["vm_id"], r["call"], r["status"]) for r in result.remediations] == [
        (VM1, "ensure_guest_routes", "applied")]
    assert guest.vms["hs-vm1"].active.get("10.0.1.100")
    verify = [cmd for cmd in guest.commands if cmd["vm"] == "hs-vm1"][-1]
    assert verify["kind"] == "verify" and verify["exit"] == 0
    assert {e.action.split("/")[-2] for e in writes(emu)} == {"runCommand"}


def test_events_of_our_own_writes_do_not_loop(estate, storage_ns):
    """Every write the remediation made becomes an event (caller: our identity); handling
    them evaluates state but writes nothing and calls no remediation."""
    emu, guest, ctx = estate(opted_in_scenario(), clock=lambda: IN_WINDOW,
                             maintenance_window=WINDOW)
    emu.requests.reset()
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash).status == "applied"
    ours = writes(emu)
    assert ours
    me = own_identity(ctx)
    own = type("Own", (), {"principal_id": me.principal_id, "client_id": me.client_id,
                           "resource_id": me.resource_id})
    events = []
    for e in ours:
        resource = e.path
        if e.method == "POST":  # .../virtualMachines/{vm}/{action}
            resource = e.path.rsplit("/", 1)[0]
        events.append(arm_event(e.action, resource, caller="own", own=own, at=ago(1)))
    emu.requests.reset()
    rem = Counting()
    results = processor(ctx, rem).handle_batch(events)
    handled = [r for r in results if r.status not in ("ignored",)]
    assert handled and all(r.own_write for r in handled)
    assert rem.calls == []
    assert writes(emu) == []  # no loop: nothing written in response to our own writes
    # An operator's VM write right after (a change after those passes read state): evaluated
    # again; the state is fixed, so there is nothing to do.
    other = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", VM2, at=ago(0)))
    assert other.status == "evaluated" and not other.own_write
    assert rem.calls == [] and writes(emu) == []


def test_event_trigger_hands_the_fix_to_the_queue_worker_and_answers_in_seconds(
        estate, storage_ns):
    """Event Grid waits 30 s for an answer, then delivers again; a fix takes minutes. With
    every LRO slowed to minutes, the event is answered at once with the work queued, a
    redelivery during the run starts nothing, and the queue worker makes the fix."""
    import threading
    import time

    from shared.services import fix_api
    from shared.services.remediation.work import queue_handoff
    from shared.storage import queues

    emu, guest, ctx = estate(opted_in_scenario(), clock=lambda: IN_WINDOW,
                             maintenance_window=WINDOW)
    name = storage_ns.container("work")
    handoff = queue_handoff(ctx, {"AzureWebJobsStorage": storage_ns.connection_string},
                            queue=name)
    events = EventProcessor(ctx, remediation=remediation, identity=own_identity(ctx),
                            config=EventConfig(window_seconds=60, clock_skew_seconds=1),
                            handoff=handoff)
    emu.lro_retry_after = emu.ops.retry_after = 180  # each LRO poll waits 3 minutes
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(5))
    answered: list = []
    started = time.monotonic()
    trigger = threading.Thread(target=lambda: answered.append(events.handle(raw)), daemon=True)
    trigger.start()
    trigger.join(5)
    assert not trigger.is_alive(), "the event trigger did not answer within 5 s"
    assert time.monotonic() - started < 5
    (result,) = answered
    (queued,) = result.remediations
    assert (queued["vm_id"], queued["call"], queued["status"]) == (VM1, "apply", "queued")
    assert writes(emu) == []  # deciding writes nothing: the worker does
    (message,) = queues.queue_client(storage_ns.connection_string, name).receive_messages()
    work = json.loads(message.content)
    assert (work["kind"], work["operation"], work["trigger"]["event_id"]) == (
        "remediation-work", queued["operation"], raw["id"])

    emu.lro_retry_after = emu.ops.retry_after = None
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(
        fix_api.run_fix_message(ctx, message.content)))
    worker.start()
    again = events.handle(raw)  # Event Grid delivers it again while the worker runs
    assert again.status == "duplicate" and not again.remediations
    worker.join(120)
    assert not worker.is_alive()
    assert outcome[0].status == "applied", outcome[0].reasons
    assert not queues.queue_client(storage_ns.connection_string, name).peek_messages()
    assert NIC2.replace("hs-vm2", "hs-vm1") in [
        r["id"] for r in emu.store.get(VM1)["properties"]["networkProfile"]["networkInterfaces"]]
    assert emu.power_state(VM1) == "running"
    status = fix_api.get_fix(ctx, queued["operation"])
    assert status.body["status"] == "applied"
    assert [h["status"] for h in status.body["history"]] == ["running", "applied"]
    applied = ctx.journal.history(VM1, 50)
    assert applied and all(e.trigger.event_id == raw["id"] for e in applied
                           if e.operation_id == queued["operation"])
