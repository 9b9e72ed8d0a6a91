"""The fleet sweep on real queues (Azurite) over a three-subscription estate on the emulator:
every work item processed exactly once under redelivery (a message delivered twice, a worker
dying mid-item, a visibility timeout expiring while an item runs, an item that always fails),
the summary right, one notification.

The Functions host's queue listener is `emulator.functions_host.QueueHost` (the host itself
cannot be installed here); it calls `fleet.run_item` as the trigger does."""

from __future__ import annotations

import json
import threading
import time

import pytest
from azure.core.credentials import AzureKeyCredential

from emulator.functions_host import QueueHost, QueueSettings
from shared.core.fleet_sweep import SweepItem
from shared.core.storage_names import poison_queue_of
from shared.core.vocab import ItemOutcome, SweepState
from shared.services.notify import SWEEP_COMPLETED, Notifier
from shared.services.sweep import SweepConfig, fleet
from shared.storage.queues import queue_client, queue_sender
from shared.storage.sweeps import SweepTable
from tests.services.test_notify import KEY, Topic
from tests.services.test_sweep import estate_doc
from tests.support.events import RecordingRemediation, make_ctx
from tests.support.fixtures_emulator import SUB

pytestmark = pytest.mark.azurite

SUBS = [SUB] + [f"00000000-0000-0000-0000-0000000000{n:02x}" for n in (0xb1, 0xb2)]
VMS_PER_SUB = 4  # two pools of two (apply for each: new findings, opted in)


def fleet_estate() -> tuple[dict, dict]:
    one, callers = estate_doc(2, 2)
    text = json.dumps(one)
    resources = [doc for sub in SUBS for doc in json.loads(text.replace(SUB, sub))["resources"]]
    return {"resources": resources, "skus": one["skus"]}, callers


class Killed(BaseException):
    """The worker process dies (not an error the code could handle)."""


class KillingRemediation(RecordingRemediation):
    """Dies on the `kill_at`th apply (before doing it), once."""

    def __init__(self, kill_at: int):
        super().__init__()
        self.kill_at, self.applies = kill_at, 0

    def apply(self, ctx, vm_id, trigger, *, approval=None, operation_id=None):
        with self._lock:
            self.applies += 1
            die = self.applies == self.kill_at
        if die:
            raise Killed(vm_id)
        return super().apply(ctx, vm_id, trigger)


class SlowRemediation(RecordingRemediation):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def apply(self, ctx, vm_id, trigger, *, approval=None, operation_id=None):
        time.sleep(self.seconds)
        return super().apply(ctx, vm_id, trigger)


@pytest.fixture
def topic(tmp_path):
    t = Topic(tmp_path)
    yield t
    t.close()


@pytest.fixture
def world(emulator, storage_ns, topic, tmp_path, monkeypatch):
    scenario, callers = fleet_estate()
    emu = emulator(scenario)
    both = tmp_path / "cas.pem"  # trust the emulator's CA and the local topic's
    both.write_text(open(emu.ca_path).read() + open(topic.ca_path).read())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(both))
    ctx = make_ctx(emu, storage_ns, HAIRPIN_DECLARED_CALLERS=json.dumps(callers),
                   HAIRPIN_SUBSCRIPTIONS=",".join(SUBS))
    ctx.sweeps = SweepTable(storage_ns.table_service(),
                            table=ctx.settings.storage_names.sweep_table).ensure()
    ctx.notifier = Notifier(topic.endpoint, AzureKeyCredential(KEY),
                            send_kwargs={"retry_total": 0})
    name = ctx.settings.storage_names.sweep_queue
    conn = storage_ns.connection_string
    queue, poison = queue_client(conn, name), queue_client(conn, poison_queue_of(name))
    yield ctx, queue_sender(conn, name), queue, poison, topic
    queue.delete_queue()
    poison.delete_queue()


def handler(ctx, send, remediation, outcomes: list):
    def handle(body: str, dequeue_count: int) -> None:
        item = SweepItem.from_message(json.loads(body))
        outcomes.append(fleet.run_item(ctx, item, send, remediation=remediation))
    return handle


def sweep_done(ctx, sweep_id):
    return lambda: ctx.sweeps.get(sweep_id).state == SweepState.DONE


def sweep_notifications(topic) -> list[dict]:
    return [e for e in topic.received if e["type"] == SWEEP_COMPLETED]


def assert_summary(ctx, record, rem, *, actions=None):
    done = ctx.sweeps.get(record.sweep_id)
    assert done.state == SweepState.DONE
    summary = done.summary
    n = len(SUBS) * VMS_PER_SUB
    assert (summary["vms"], summary["at_risk"], summary["items"]) == (n, n, len(SUBS))
    assert summary["actions"] == (actions or {"apply:applied": n})
    assert summary["complete"] is True and summary["errors"] == []
    # each VM applied exactly once, across every delivery
    assert sorted(rem.of("apply")) == sorted(
        f"/subscriptions/{s}/resourcegroups/rg-test/providers/microsoft.compute/"
        f"virtualmachines/vm{i:02d}" for s in SUBS for i in range(1, VMS_PER_SUB + 1))
    stored = ctx.reports.sweeps.read_json(ctx.reports.sweeps.find(record.sweep_id))
    assert stored["vms"] == n and stored["items"] == len(SUBS)
    return summary


def test_timer_plans_one_item_per_subscription_and_workers_run_them_in_parallel(world):
    ctx, send, queue, poison, topic = world
    rem = RecordingRemediation()
    record = fleet.start(ctx, send, remediation=rem)
    assert record.state == SweepState.QUEUED and record.items == len(SUBS)
    assert sorted(s for subs in record.plan.values() for s in subs) == sorted(SUBS)
    assert queue.get_queue_properties().approximate_message_count == len(SUBS)
    assert fleet.start(ctx, send, remediation=rem) is None  # still running: no second sweep
    outcomes: list = []
    QueueHost(queue, handler(ctx, send, rem, outcomes), QueueSettings(batch_size=2,
              new_batch_threshold=1), poison=poison).run(sweep_done(ctx, record.sweep_id), 120)
    assert outcomes == [ItemOutcome.RECORDED] * len(SUBS)
    assert_summary(ctx, record, rem)
    (event,) = sweep_notifications(topic)
    assert event["id"] == f"sweep-{record.sweep_id}" and event["data"]["status"] == "complete"
    assert event["data"]["operationId"] == record.sweep_id
    assert rem.of("resume_interrupted") == [""]  # once, by the timer
    next_one = fleet.start(ctx, send, remediation=rem)  # the previous is done: a new one starts
    assert next_one is not None and next_one.sweep_id != record.sweep_id


def test_a_message_delivered_twice_is_processed_once(world):
    ctx, send, queue, poison, topic = world
    rem = RecordingRemediation()
    record = fleet.start(ctx, send, remediation=rem)
    bodies = [m.content.decode() for m in queue.receive_messages(max_messages=32)]
    assert len(bodies) == len(SUBS)
    outcomes = []
    handle = handler(ctx, send, rem, outcomes)
    for body in bodies + bodies:  # every message delivered a second time
        handle(body, 1)
    assert outcomes == [ItemOutcome.RECORDED] * 3 + [ItemOutcome.DUPLICATE] * 3
    assert_summary(ctx, record, rem)
    handle(bodies[0], 2)  # and once more after the sweep is done
    assert len(sweep_notifications(topic)) == 1


def test_a_worker_dying_mid_item_is_resumed_from_its_checkpoint(world):
    ctx, send, queue, poison, topic = world
    rem = KillingRemediation(kill_at=3)  # dies on the 3rd apply: two VMs of an item are done
    record = fleet.start(ctx, send, remediation=rem)
    outcomes: list = []
    host = QueueHost(queue, handler(ctx, send, rem, outcomes), QueueSettings(
        batch_size=1, new_batch_threshold=0), poison=poison, lease_s=2)
    with pytest.raises(Killed):  # the invocation's thread dies with the worker
        host.deliver(next(iter(queue.receive_messages(max_messages=1, visibility_timeout=2))))
    host.run(sweep_done(ctx, record.sweep_id), 120)  # the message comes back after 2 s
    # the two VMs done before the death were not applied again, the one in flight was
    assert_summary(ctx, record, rem)
    assert outcomes.count(ItemOutcome.RECORDED) == len(SUBS)
    assert len(sweep_notifications(topic)) == 1


def test_visibility_timeout_expiring_while_an_item_runs(world):
    ctx, send, queue, poison, topic = world
    rem = SlowRemediation(1.5)  # an item takes 6 s; its message is visible again after 1 s
    record = fleet.start(ctx, send, remediation=rem)
    outcomes: list = []
    host = QueueHost(queue, handler(ctx, send, rem, outcomes), QueueSettings(
        batch_size=3, new_batch_threshold=3), poison=poison, lease_s=1, renew=False)
    host.run(sweep_done(ctx, record.sweep_id), 180)
    assert ItemOutcome.BUSY in outcomes  # a second delivery found the item held
    assert outcomes.count(ItemOutcome.RECORDED) == len(SUBS)
    assert_summary(ctx, record, rem)
    assert len(sweep_notifications(topic)) == 1


def test_an_item_failing_on_every_delivery_goes_to_poison_and_the_sweep_completes(world):
    ctx, send, queue, poison, topic = world
    rem = RecordingRemediation()
    record = fleet.start(ctx, send, remediation=rem)
    broken = sorted(record.plan)[1]
    outcomes: list = []
    handle = handler(ctx, send, rem, outcomes)

    def failing(body: str, dequeue_count: int) -> None:
        if json.loads(body)["item_id"] == broken:
            raise RuntimeError("ARM keeps failing for this subscription")
        handle(body, dequeue_count)

    settings = QueueSettings(batch_size=2, new_batch_threshold=1, max_dequeue_count=2)
    QueueHost(queue, failing, settings, poison=poison).run(
        lambda: (poison.get_queue_properties().approximate_message_count == 1
                 and len(ctx.sweeps.results(record.sweep_id)) == len(SUBS) - 1), 120)
    (poisoned,) = list(poison.receive_messages(max_messages=5))
    item = SweepItem.from_message(json.loads(poisoned.content))
    assert fleet.record_failed(ctx, item, "failed on each of 2 deliveries") == ItemOutcome.POISONED
    summary = ctx.sweeps.get(record.sweep_id).summary
    assert summary["complete"] is False and summary["errors_count"] == 1
    assert summary["errors"][0]["item_id"] == broken
    assert summary["vms"] == (len(SUBS) - 1) * VMS_PER_SUB
    (event,) = sweep_notifications(topic)
    assert event["data"]["status"] == "incomplete"
    # a late success of that item cannot count it twice: the first result stays
    assert fleet.record_failed(ctx, item, "again") == ItemOutcome.DUPLICATE


def test_an_item_out_of_budget_continues_in_a_new_invocation(world):
    ctx, send, queue, poison, topic = world
    rem = RecordingRemediation()
    record = fleet.start(ctx, send, remediation=rem)
    outcomes: list = []
    handle = handler(ctx, send, rem, outcomes)
    ctx.deadline = time.monotonic() + 600  # the invocation's budget
    config = SweepConfig(item_budget_seconds=3600)  # never enough: stops before a VM
    msg = next(iter(queue.receive_messages(max_messages=1)))
    item = SweepItem.from_message(json.loads(msg.content))
    assert fleet.run_item(ctx, item, send, remediation=rem, config=config) == (
        ItemOutcome.CONTINUED)
    queue.delete_message(msg)
    assert rem.of("apply") == []
    QueueHost(queue, handle, poison=poison).run(sweep_done(ctx, record.sweep_id), 120)
    assert ItemOutcome.CONTINUED not in outcomes
    summary = assert_summary(ctx, record, rem)
    assert summary["runs"] == 2  # the continued item resumed its checkpoint


def test_planning_interrupted_is_queued_again_by_the_next_timer(world):
    ctx, send, queue, poison, topic = world
    rem = RecordingRemediation()
    sent: list[dict] = []
    lock = threading.Lock()

    def dies_after_one(message, delay=None):
        with lock:
            if sent:
                raise Killed("timer died while queueing")
            sent.append(message)
        send(message, delay)

    with pytest.raises(Killed):
        fleet.start(ctx, dies_after_one, remediation=rem)
    (planning,) = ctx.sweeps.unfinished()
    assert planning.state == SweepState.PLANNING
    assert fleet.start(ctx, send, remediation=rem) is None  # re-queued, not a new sweep
    outcomes: list = []
    QueueHost(queue, handler(ctx, send, rem, outcomes), poison=poison).run(
        sweep_done(ctx, planning.sweep_id), 120)
    assert outcomes.count(ItemOutcome.RECORDED) == len(SUBS)  # the first item came twice
    assert_summary(ctx, planning, rem)
    assert len(sweep_notifications(topic)) == 1


def test_hairpin_sweep_runs_the_same_items_in_one_process(world, storage_ns, monkeypatch,
                                                          capsys):
    from shared.cli.main import main

    ctx, send, queue, poison, topic = world
    _, callers = fleet_estate()
    for key, value in {"HAIRPIN_MODE": "plan", "HAIRPIN_SUBSCRIPTIONS": ",".join(SUBS),
                       "HAIRPIN_DECLARED_CALLERS": json.dumps(callers),
                       "HAIRPIN_STORAGE_CONNECTION": storage_ns.connection_string,
                       "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix,
                       "HAIRPIN_LOCK_LEASE_SECONDS": "15"}.items():
        monkeypatch.setenv(key, value)
    assert main(["sweep", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n = len(SUBS) * VMS_PER_SUB
    assert (out["state"], out["items"], out["vms"]) == ("done", len(SUBS), n)
    assert out["actions"] == {"apply:pending": n}  # mode plan: plans recorded, nothing written
    record = ctx.sweeps.get(out["sweep_id"])
    assert sorted(ctx.sweeps.results(record.sweep_id)) == sorted(record.plan)
    assert queue.get_queue_properties().approximate_message_count == 0  # nothing queued


def test_concurrent_finishers_make_one_summary_and_one_notification(world):
    ctx, send, queue, poison, topic = world
    record = fleet.start(ctx, lambda message, delay=None: None, remediation=RecordingRemediation())
    for iid in record.plan:  # every result in, as the last invocations would leave them
        assert ctx.sweeps.record_result(record.sweep_id, iid, {"vms": 4, "complete": True})
    barrier = threading.Barrier(6)
    finished: list = []

    def finisher() -> None:
        barrier.wait()
        finished.append(fleet.finish(ctx, record.sweep_id))

    threads = [threading.Thread(target=finisher) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (summary,) = [s for s in finished if s is not None]
    assert summary.vms == 4 * len(SUBS)
    assert len(sweep_notifications(topic)) == 1
    assert len(ctx.reports.sweeps.runs()) == 1


def test_resource_graph_packs_subscriptions_into_items_by_vm_count(world):
    from dataclasses import replace

    ctx, send, queue, poison, topic = world
    ctx.settings = replace(ctx.settings, use_resource_graph=True, sweep_item_vms=2 * VMS_PER_SUB)
    rem = RecordingRemediation()
    record = fleet.start(ctx, send, remediation=rem)  # one KQL count, then 4 + 4 | 4 VMs
    assert record.resource_graph is True
    assert sorted(record.plan.values()) == [sorted(SUBS[:2]), [SUBS[2]]]
    outcomes: list = []
    QueueHost(queue, handler(ctx, send, rem, outcomes), poison=poison).run(
        sweep_done(ctx, record.sweep_id), 120)
    assert outcomes == [ItemOutcome.RECORDED] * 2
    summary = ctx.sweeps.get(record.sweep_id).summary
    assert (summary["items"], summary["vms"]) == (2, len(SUBS) * VMS_PER_SUB)
    assert sorted(rem.of("apply")) == sorted(
        f"/subscriptions/{s}/resourcegroups/rg-test/providers/microsoft.compute/"
        f"virtualmachines/vm{i:02d}" for s in SUBS for i in range(1, VMS_PER_SUB + 1))
