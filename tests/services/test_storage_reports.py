"""Reports, sweep summaries and checkpoints, against the real Azurite Blob service."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage.reports import Archive, CheckpointConflict, ReportStore

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)
REPORT = {"schema": "hairpin-audit/1", "findings": [{"id": "f-1", "severity": "high"}]}


@pytest.fixture
def store(storage_ns) -> ReportStore:
    blobs = storage_ns.blob_service()
    return ReportStore(blobs, container=storage_ns.container("hairpin")).ensure()


def test_report_files_under_a_dated_path(store, storage_ns):
    rec = store.save_audit(REPORT, "<html>ok</html>", run_id="run-1", at=T0,
                           summary={"high": 1, "medium": 0})
    assert rec.paths == {"json": "reports/2026/11/26/run-1.json",
                         "html": "reports/2026/11/26/run-1.html"}
    container = storage_ns.blob_service().get_container_client(storage_ns.container("hairpin"))
    props = container.get_blob_client(rec.paths["html"]).get_blob_properties()
    assert props.content_settings.content_type.startswith("text/html")
    assert store.reports.read_json(rec) == REPORT
    assert store.reports.read("run-1", "html") == b"<html>ok</html>"
    assert store.reports.latest() == rec


def test_index_lists_past_runs_newest_first(store):
    assert store.reports.latest() is None and store.reports.runs() == []
    for hours, run in [(0, "a"), (2, "c"), (1, "b")]:  # written out of order
        store.save_audit({"run": run}, run_id=run, at=T0 + timedelta(hours=hours))
    assert [r.run_id for r in store.reports.runs()] == ["c", "b", "a"]
    latest = store.reports.latest()
    assert latest.run_id == "c" and latest.at == T0 + timedelta(hours=2)
    assert store.reports.read_json(latest) == {"run": "c"}
    assert [r.run_id for r in store.reports.runs(limit=2)] == ["c", "b"]


def test_generated_run_ids_are_unique_and_dated(store):
    first = store.save_audit(REPORT, at=T0)
    second = store.save_audit(REPORT, at=T0)
    assert first.run_id != second.run_id
    assert first.run_id.startswith("20261126T043000Z-")
    assert {r.run_id for r in store.reports.runs()} == {first.run_id, second.run_id}


def test_rewriting_a_run_replaces_its_index_entry(store):
    store.save_audit({"v": 1}, run_id="same", at=T0)
    store.save_audit({"v": 2}, run_id="same", at=T0)
    assert [r.run_id for r in store.reports.runs()] == ["same"]
    assert store.reports.read_json("same") == {"v": 2}


def test_concurrent_runs_all_reach_the_index(store):
    def run(n):
        store.save_audit({"n": n}, run_id=f"run-{n}", at=T0 + timedelta(minutes=n))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.run_id for r in store.reports.runs()] == [f"run-{n}" for n in range(7, -1, -1)]


def test_index_is_capped(storage_ns):
    container = storage_ns.blob_service().create_container(storage_ns.container("cap"))
    archive = Archive(container, "reports", keep=3)
    for n in range(5):
        archive.put({"json": {"n": n}}, run_id=f"r{n}", at=T0 + timedelta(minutes=n))
    assert [r.run_id for r in archive.runs()] == ["r4", "r3", "r2"]
    # older runs are still in storage under their dated path
    assert container.get_blob_client("reports/2026/11/26/r0.json").exists()


def test_bad_ids_are_rejected(store):
    for bad in ["../escape", "a/b", "", "x" * 101, "-lead"]:
        with pytest.raises(ValueError):
            store.save_audit(REPORT, run_id=bad)
    with pytest.raises(KeyError):
        store.reports.read("never-ran")


def test_sweep_summaries(store):
    summary = {"vms": 40, "drift": 2, "actions": 1, "pending": ["vm-7"], "complete": True}
    rec = store.save_sweep(summary, sweep_id="sweep-1", at=T0)
    assert rec.paths == {"json": "sweeps/2026/11/26/sweep-1.json"}
    assert store.sweeps.read_json(store.sweeps.latest()) == summary
    # the index keeps the counts, the file keeps everything
    assert store.sweeps.latest().summary == {"vms": 40, "drift": 2, "actions": 1,
                                             "complete": True}
    assert store.reports.latest() is None  # separate archives


def test_checkpoint_create_update_and_stale_writer(store):
    cps = store.checkpoints
    assert cps.get("sweep") is None

    first = cps.put("sweep", {"cursor": "sub-1/page-3"}, etag=None)  # create
    with pytest.raises(CheckpointConflict):
        cps.put("sweep", {"cursor": "other"}, etag=None)  # create again: exists

    # Two sweep instances read the same version; the first write wins, the second is stale.
    read_a, read_b = cps.get("sweep"), cps.get("sweep")
    assert read_a.value == {"cursor": "sub-1/page-3"} and read_a.etag == first.etag
    written = cps.put("sweep", {"cursor": "sub-1/page-4"}, etag=read_a.etag)
    with pytest.raises(CheckpointConflict):
        cps.put("sweep", {"cursor": "sub-2/page-1"}, etag=read_b.etag)
    assert cps.get("sweep").value == {"cursor": "sub-1/page-4"}
    assert cps.get("sweep").etag == written.etag != first.etag


def test_checkpoint_delete_is_conditional(store):
    cps = store.checkpoints
    old = cps.put("cursor-x", {"page": 1}, etag=None)
    new = cps.put("cursor-x", {"page": 2}, etag=old.etag)
    with pytest.raises(CheckpointConflict):
        cps.delete("cursor-x", etag=old.etag)
    cps.delete("cursor-x", etag=new.etag)  # sweep finished: start from scratch next time
    assert cps.get("cursor-x") is None
    cps.delete("cursor-x")  # deleting nothing is fine
    with pytest.raises(CheckpointConflict):  # updating a deleted checkpoint is stale too
        cps.put("cursor-x", {"page": 3}, etag=new.etag)
    with pytest.raises(ValueError):
        cps.get("../index")


def test_from_connection_string(storage_ns):
    name = storage_ns.container("cs")
    ReportStore.from_connection_string(storage_ns.connection_string, container=name).ensure() \
        .save_audit(REPORT, run_id="r", at=T0)
    again = ReportStore.from_connection_string(storage_ns.connection_string, container=name)
    assert again.ensure().reports.latest().run_id == "r"
