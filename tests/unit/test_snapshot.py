import json

import pytest

from shared.core import snapshot
from shared.core.snapshot import SnapshotError
from shared.core.topology import topology_from_snapshot
from shared.storage import snapshot_files
from tests.support.paths import ROOT

SCENARIO = ROOT / "emulator" / "scenarios" / "default.json"


def test_scenario_loads_as_snapshot_without_emulator():
    snap = snapshot_files.load_file(SCENARIO)
    assert set(snap) == {"resources", "skus", "health"}
    assert "emulator" in json.loads(SCENARIO.read_text())
    assert topology_from_snapshot(snap).vm("hs-vm1") is not None


def test_linux_scenario_loads():
    assert snapshot_files.load_file(SCENARIO.with_name("default-linux.json"))["resources"]


def test_round_trip(tmp_path):
    snap = snapshot_files.load_file(SCENARIO)
    out = tmp_path / "snap.json"
    snapshot_files.dump_file(snap, out)
    assert snapshot_files.load_file(out) == snap
    assert snapshot.dumps(snap).endswith("\n")


def test_optional_parts_default_to_empty():
    assert snapshot.loads('{"resources": []}') == {"resources": [], "skus": [], "health": []}
    assert snapshot.loads('{"resources": [], "skus": null}')["skus"] == []


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "missing 'resources'"),
        ('{"resources": {}}', "'resources' must be a list"),
        ('{"resources": [], "skus": "x"}', "'skus' must be a list"),
        ('{"resources": [1]}', "resources[0] must be an object"),
        ('{"resources": [{"type": "x"}]}', "resources[0] has no 'id'"),
        ('{"resources": [{"id": "/x", "type": ""}]}', "has no 'type'"),
        ('{"resources": [], "health": [{"response": {}}]}', "health[0] has no 'ruleId'"),
        ('{"resources": [], "health": [{"ruleId": "/r"}]}', "health[0] has no 'response'"),
        ('{"resources": [], "skus": [3]}', "skus[0] must be an object"),
        ('{"resources": [], "emulator": []}', "'emulator' must be an object"),
    ],
)
def test_bad_documents_have_clear_errors(text, fragment):
    with pytest.raises(SnapshotError) as err:
        snapshot.loads(text, source="bad.json")
    assert fragment in str(err.value)
    assert str(err.value).startswith("bad.json: ")


def test_missing_file(tmp_path):
    with pytest.raises(SnapshotError) as err:
        snapshot_files.load_file(tmp_path / "nope.json")
    assert "cannot read" in str(err.value)


def test_make_snapshot_is_ordered():
    a = {"id": "/subscriptions/s/b", "type": "t"}
    b = {"id": "/subscriptions/s/A", "type": "t"}
    snap = snapshot.make_snapshot(
        [a, b], health=[{"ruleId": "/z", "response": {}}, {"ruleId": "/a", "response": {}}]
    )
    assert [r["id"] for r in snap["resources"]] == ["/subscriptions/s/A", "/subscriptions/s/b"]
    assert [h["ruleId"] for h in snap["health"]] == ["/a", "/z"]
