"""The Functions wiring of the event path: the Event Grid trigger and the drift-sweep timer in
function_app.py, found through `app.get_functions()` and invoked with `azure.functions`
objects (Core Tools cannot be installed here: docs/azure-facts.md, "Azure Functions")."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from datetime import UTC, datetime

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.services import events as event_service
from tests.support.events import (
    OWN_IDENTITY,
    VM1,
    RecordingRemediation,
    ago,
    arm_event,
    make_ctx,
    processor,
)
from tests.support.paths import ROOT


def load_app():
    """A fresh import of function_app.py: get_functions() may run once per FunctionApp."""
    name = f"function_app_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


@pytest.fixture(scope="module")
def functions():
    return load_app()


def as_functions_event(raw: dict) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"][:26]).replace(tzinfo=UTC),
        data_version=raw["dataVersion"])


def test_event_grid_trigger_binding(functions):
    f = functions["on_resource_event"]
    assert json.loads(f.get_function_json())["bindings"] == [
        {"direction": "IN", "type": "eventGridTrigger", "name": "event"}]
    assert f.get_trigger().type == "eventGridTrigger"


def test_sweep_timer_binding(functions):
    f = functions["drift_sweep"]
    (binding,) = json.loads(f.get_function_json())["bindings"]
    assert binding["type"] == "timerTrigger" and binding["direction"] == "IN"
    assert binding["schedule"] == "%HAIRPIN_SWEEP_SCHEDULE%"  # app setting, see infra/main.json
    assert binding["runOnStartup"] is False and binding["useMonitor"] is True


@pytest.fixture
def installed_processor(emulator, storage_ns, monkeypatch):
    """The trigger's processor, on the emulator + Azurite with a recording remediation."""
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    event_service.install_host(p)
    yield emu, ctx, rem
    event_service.install_host(None)


@pytest.mark.azurite
def test_trigger_handles_functions_event_objects(functions, installed_processor):
    emu, ctx, rem = installed_processor
    call = functions["on_resource_event"].get_user_function()
    raw = arm_event("Microsoft.Compute/virtualMachines/start/action", VM1, at=ago(30))
    assert call(as_functions_event(raw)) is None
    assert rem.of("apply") == [VM1.lower()]
    call(as_functions_event(raw))  # Event Grid delivered it twice: one remediation
    assert rem.of("apply") == [VM1.lower()]
    # Irrelevant and malformed events are acknowledged (no exception, no work).
    other = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    other["data"]["operationName"] = "Microsoft.Storage/storageAccounts/write"
    call(as_functions_event(other))
    broken = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    broken["subject"] = broken["data"]["resourceUri"] = "garbage"
    call(as_functions_event(broken))
    assert rem.of("apply") == [VM1.lower()]
    (rejected,) = ctx.journal.history(None, 5, action="event-rejected")
    assert rejected.trigger.event_id == broken["id"]


@pytest.mark.azurite
def test_trigger_raises_on_transient_failure_so_event_grid_retries(functions,
                                                                  installed_processor):
    from azure.core.exceptions import HttpResponseError

    emu, ctx, rem = installed_processor
    call = functions["on_resource_event"].get_user_function()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    emu.faults.add("GET", r"/virtualMachines/vm1$", 429, retry_after=120, times=None)
    with pytest.raises(Exception) as caught:
        call(as_functions_event(raw))
    assert event_service.is_transient(caught.value)
    assert not isinstance(caught.value, HttpResponseError) or caught.value.status_code == 429
    emu.faults.clear()
    call(as_functions_event(raw))  # the retry
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_sweep_timer_fans_out_and_the_queue_trigger_runs_the_items(functions, emulator,
                                                                    storage_ns, monkeypatch):
    from emulator.functions_host import QueueHost
    from shared.core.storage_names import poison_queue_of
    from shared.core.vocab import SweepState
    from shared.storage.queues import queue_client
    from shared.storage.reports import ReportStore
    from shared.storage.sweeps import SweepTable

    emu = emulator(lro_retry_after=1)  # LROs answer Retry-After, as ARM does
    env = {"HAIRPIN_MODE": "plan", "HAIRPIN_SUBSCRIPTIONS": emu.subscription_id,
           "HAIRPIN_DECLARED_CALLERS": json.dumps({"vm1": ["10.0.1.100:1972"]}),
           "HAIRPIN_STORAGE_CONNECTION": storage_ns.connection_string,
           "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix,
           "HAIRPIN_LOCK_LEASE_SECONDS": "15", "HAIRPIN_SWEEP_BUDGET_SECONDS": "300"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert functions["drift_sweep"].get_user_function()(TimerRequest(past_due=False)) is None
    table = SweepTable(storage_ns.table_service(), table=f"{storage_ns.prefix}sweeps")
    (record,) = table.unfinished()
    assert record.state == SweepState.QUEUED and record.items == 1
    worker = functions["sweep_worker"].get_user_function()
    queue = queue_client(storage_ns.connection_string, f"{storage_ns.prefix}-sweep")
    poison = queue_client(storage_ns.connection_string, poison_queue_of(queue.queue_name))
    try:
        QueueHost(queue, lambda body, n: worker(func.QueueMessage(body=body)),
                  poison=poison).run(lambda: table.get(record.sweep_id).state == "done", 120)
    finally:
        queue.delete_queue()
        poison.delete_queue()
    store = ReportStore(storage_ns.blob_service(), container=storage_ns.container("reports"))
    run = store.sweeps.latest()
    assert run is not None and run.run_id == record.sweep_id and run.summary["complete"] is True
    summary = store.sweeps.read_json(run)
    assert summary["vms"] == 2 and summary["at_risk"] == 2
    assert summary["actions"] == {"apply:pending": 2}  # mode plan: the plan is recorded
    assert sorted(p["vm_id"] for p in summary["pending"]) == [VM1, VM1[:-1] + "2"]
    assert table.get(record.sweep_id).summary["pending_plans"] == 2
    assert emu.requests.writes() == []


def test_identity_env_var_names_are_stable():
    from shared.core import events

    assert (events.ENV_PRINCIPAL_ID, events.ENV_CLIENT_ID, events.ENV_IDENTITY_RESOURCE_ID) == (
        "HAIRPIN_IDENTITY_PRINCIPAL_ID", "HAIRPIN_IDENTITY_CLIENT_ID",
        "HAIRPIN_IDENTITY_RESOURCE_ID")
    assert OWN_IDENTITY  # the tests' own identity is a complete one


@pytest.mark.azurite
def test_host_processor_hands_remediations_to_the_work_queue(emulator, storage_ns):
    """The Functions host's processor never runs a fix inside the trigger: it has the work
    queue's handoff, and without storage it refuses to start rather than run fixes inline."""
    from azure.identity import ManagedIdentityCredential

    from tests.support.events import make_settings

    emu = emulator()
    settings = make_settings(emu, storage_ns,
                             HAIRPIN_STORAGE_CONNECTION=storage_ns.connection_string)
    host = event_service.EventHost(settings, OWN_IDENTITY, ManagedIdentityCredential())
    assert host.processor().evaluator.handoff is not None
    bare = event_service.EventHost(make_settings(emu), OWN_IDENTITY, ManagedIdentityCredential())
    with pytest.raises(RuntimeError, match="work queue"):
        bare.processor()


def _decoded(body: dict):
    """What the Functions host hands the trigger for this body (azure.functions' converter)."""
    from azure.functions.eventgrid import EventGridEventInConverter
    from azure.functions.meta import Datum
    return EventGridEventInConverter.decode(Datum(json.dumps(body), "json"), trigger_metadata={})


@pytest.mark.azurite
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_trigger_handles_a_pool_write_as_the_emulator_raises_it(functions, installed_processor,
                                                                 arm_clients, schema):
    # An operator rewrites the backend pool: ARM raises the event with the pool as subject and
    # the pool's own operation; the trigger re-reads the load balancer and evaluates its VMs.
    from tests.support.events import as_cloud_event
    from tests.support.fixtures_emulator import RG
    emu, ctx, rem = installed_processor
    c = arm_clients(emu)
    pool = c.network.load_balancer_backend_address_pools.get(RG, "ilb", "be")
    c.network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, "ilb", "be", pool).result()
    (raised,) = [e for e in emu.events if e["subject"].endswith("/backendAddressPools/be")]
    assert raised["data"]["operationName"] == \
        "Microsoft.Network/loadBalancers/backendAddressPools/write"
    body = as_cloud_event(raised) if schema == "cloudevents" else raised
    event = _decoded(body)
    assert isinstance(event, func.CloudEvent if schema == "cloudevents" else func.EventGridEvent)
    functions["on_resource_event"].get_user_function()(event)
    # The tests' clients write as the function's own identity (OWN): both VMs in the pool are
    # evaluated and journalled, and, being our own write, nothing is remediated (no loop).
    for vm in (VM1, VM1[:-1] + "2"):
        (entry, *_) = ctx.journal.history(vm, 5, action="event")
        assert entry.trigger.event_id == raised["id"]
        assert entry.step == "Microsoft.Network/loadBalancers/backendAddressPools/write"
        assert entry.after["own_write"] is True
    assert rem.calls == []


def test_indexing_the_app_imports_no_storage_or_management_sdk():
    """The host imports function_app.py to index the functions, on every cold start (issue 15:
    `import function_app` <= 1.0 s): the SDKs are imported by the adapters that use them."""
    import subprocess

    probe = ("import sys, function_app\n"
             "print(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules"
             " if m.startswith('azure.')}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['azure.core', 'azure.functions']"
