"""The audit service on the ARM emulator (and Azurite for storage): both discovery paths, the
snapshot round trip, scenario files, verified routes, stored reports."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from azure.identity import ManagedIdentityCredential

from shared.cli.main import main as hairpin
from shared.core import snapshot as snapshots
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import RecordKind
from shared.services import audit
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.storage import snapshot_files
from tests.support.fixtures_emulator import SCENARIOS

WHEN = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
LIST_TYPES = ("Microsoft.Network/virtualNetworks", "Microsoft.Network/networkSecurityGroups",
              "Microsoft.Network/networkInterfaces", "Microsoft.Network/loadBalancers",
              "Microsoft.Compute/virtualMachines")


def make_ctx(emu, **settings) -> ServiceContext:
    return ServiceContext(Settings(arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint,
                                    **settings),
                          credential=ManagedIdentityCredential(), polling_interval=0,
                          clock=lambda: WHEN)


def hs_vm1_high(result) -> list[dict]:
    return [f for f in result.report["findings"]
            if f["vm_name"] == "hs-vm1" and f["severity"] == "high"]


def test_arm_and_resource_graph_paths_give_identical_topologies_and_findings(emulator):
    emu = emulator("default")
    ctx = make_ctx(emu)
    via_arm = audit.run_audit(ctx)
    arm_requests = list(emu.requests)
    emu.requests.reset()
    via_graph = audit.run_audit(ctx, resource_graph=True)

    assert via_arm.topology == via_graph.topology
    assert via_arm.report["findings"] == via_graph.report["findings"]
    assert via_arm.report["not_affected"] == via_graph.report["not_affected"]
    assert {f["frontend_ip"] for f in hs_vm1_high(via_arm)} == {"10.0.1.100", "10.0.1.101"}
    assert all(f["likelihood"] == 1 for f in hs_vm1_high(via_arm))
    assert via_arm.report["scope"]["source"] == "arm"
    assert via_graph.report["scope"]["source"] == "resource_graph"

    # ARM path: one listing per type (one page each here), never a GET per resource.
    lists = [e for e in arm_requests if e.method == "GET" and e.path.count("/") == 5]
    assert sorted(e.resource_type for e in lists if e.resource_type != "Microsoft.Compute/skus") \
        == sorted(LIST_TYPES)
    assert not [e for e in arm_requests if e.method == "GET" and "/resourceGroups/" in e.path]
    # Resource Graph path: one query instead of the five listings; SKUs and health as ARM.
    assert emu.requests.count("POST", action="Microsoft.ResourceGraph/resources/read") == 1
    assert not [e for e in emu.requests
                if e.method == "GET" and e.resource_type in LIST_TYPES]
    assert emu.requests.count("GET", resource_type="Microsoft.Compute/skus") == 1
    assert not emu.requests.writes()


def test_many_subscriptions_in_one_audit(emulator):
    """Two subscriptions (the seed estate twice): listed in parallel through ARM, in one query
    through Resource Graph; SKUs read once per location, not per subscription."""
    text = (SCENARIOS / "default.json").read_text()
    first = json.loads(text)
    other_sub = "00000000-0000-0000-0000-000000000002"
    second = json.loads(text.replace("00000000-0000-0000-0000-000000000001", other_sub))
    emu = emulator({"resources": first["resources"] + second["resources"],
                    "skus": first["skus"], "health": first["health"] + second["health"]})
    ctx = make_ctx(emu)
    subs = [emu.subscription_id, other_sub]
    via_arm = audit.run_audit(ctx, subscriptions=subs)
    assert emu.requests.count("GET", resource_type="Microsoft.Compute/skus") == 1
    via_graph = audit.run_audit(ctx, subscriptions=subs, resource_graph=True)
    assert via_arm.topology == via_graph.topology
    assert via_arm.report["findings"] == via_graph.report["findings"]
    assert via_arm.report["summary"]["by_severity"] == {"high": 4, "medium": 4, "info": 0}
    assert via_arm.report["scope"]["subscriptions"] == sorted(subs)


def test_power_changes_show_in_both_paths(emulator):
    emu = emulator("default")
    emu.set_power(
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-healthshare/"
        "providers/Microsoft.Compute/virtualMachines/hs-vm1", "deallocated")
    ctx = make_ctx(emu)
    via_arm, via_graph = audit.run_audit(ctx), audit.run_audit(ctx, resource_graph=True)
    assert via_arm.topology == via_graph.topology
    assert via_arm.topology.vm("hs-vm1").power_state == "deallocated"
    assert via_arm.report["findings"] == via_graph.report["findings"]


def test_progress_reports_pages_and_resources(emulator):
    emu = emulator("default")
    seen = []
    audit.gather(make_ctx(emu), on_progress=lambda *event: seen.append(event))
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "resources" and "skus" in stages and "health" in stages
    pages = [p for _, p, _ in seen]
    # 5 listings + 1 SKU page + 1 Azure Monitor batch (both rules' health)
    assert pages == sorted(pages) and pages[-1] == 7
    assert max(n for _, _, n in seen) == 7  # resources in the default scenario


def test_snapshot_round_trip_through_the_cli(emulator, tmp_path, capsys):
    emu = emulator("default", lro_polls=0)  # LROs done at the first poll: no SDK wait
    live = audit.run_audit(make_ctx(emu))
    path = tmp_path / "estate.json"
    assert hairpin(["snapshot", "--output", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert set(doc) == {"resources", "skus", "health"}
    assert len(doc["health"]) == 2 and doc["skus"]
    capsys.readouterr()

    assert hairpin(["audit", "--snapshot", str(path), "--format", "json"]) == 1
    offline = json.loads(capsys.readouterr().out)
    assert offline["findings"] == live.report["findings"]
    assert offline["scope"]["source"] == "snapshot"
    assert topology_from_snapshot(snapshot_files.load_file(path)) == live.topology


def test_audit_accepts_a_scenario_file_and_a_document():
    ctx = ServiceContext(Settings(), clock=lambda: WHEN)
    from_file = audit.run_audit(ctx, snapshot=SCENARIOS / "default.json")
    assert {f["frontend_ip"] for f in hs_vm1_high(from_file)} == {"10.0.1.100", "10.0.1.101"}
    assert from_file.report["scope"]["snapshot"].endswith("default.json")
    assert from_file.exit_status == 1
    scenario = json.loads((SCENARIOS / "default.json").read_text())
    from_doc = audit.run_audit(ctx, snapshot=scenario)
    assert from_doc.report["findings"] == from_file.report["findings"]
    assert "emulator" not in from_doc.snapshot
    assert from_doc.html.startswith("<!DOCTYPE html>")


def test_bad_snapshot_and_missing_subscription_are_clear_errors(tmp_path, monkeypatch):
    ctx = ServiceContext(Settings(), clock=lambda: WHEN)
    bad = tmp_path / "bad.json"
    bad.write_text('{"resources": 3}')
    with pytest.raises(snapshots.SnapshotError, match="'resources' must be a list"):
        audit.gather(ctx, snapshot=bad)
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(audit.NoSubscription, match="HAIRPIN_SUBSCRIPTIONS"):
        audit.gather(ctx)
    with pytest.raises(audit.NoSubscription, match="not a subscription ID"):
        audit.gather(ctx, subscriptions=["nope"])


def test_resource_graph_without_subscriptions_reads_the_whole_tenant(emulator, monkeypatch):
    emu = emulator("default")
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    result = audit.run_audit(make_ctx(emu), resource_graph=True)
    assert result.report["scope"]["subscriptions"] == [emu.subscription_id]
    assert len(hs_vm1_high(result)) == 2


def test_subscriptions_default_from_settings_then_environment():
    sub_a, sub_b = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
    ctx = ServiceContext(Settings(subscriptions=(sub_a,)))
    assert audit.subscriptions_to_audit(ctx, None, {"AZURE_SUBSCRIPTION_ID": sub_b}) == (sub_a,)
    assert audit.subscriptions_to_audit(ctx, [sub_a.upper()], {}) == (sub_a,)
    with pytest.raises(audit.NoSubscription, match="outside the subscriptions"):
        audit.subscriptions_to_audit(ctx, [sub_b], {})  # an explicit choice never widens scope
    bare = ServiceContext(Settings())
    assert audit.subscriptions_to_audit(bare, None, {"AZURE_SUBSCRIPTION_ID": sub_b}) == (sub_b,)
    assert audit.subscriptions_to_audit(bare, None, {}) == ()
    assert audit.subscriptions_to_audit(bare, [sub_a.upper()], {}) == (sub_a,)


def _with_managed_nic(scenario: dict) -> dict:
    """hs-vm1 with a managed secondary NIC attached (what a completed fix leaves)."""
    doc = copy.deepcopy(scenario)
    vm = next(r for r in doc["resources"] if r["name"] == "hs-vm1")
    primary = next(r for r in doc["resources"] if r["name"] == "hs-vm1-nic")
    nic = copy.deepcopy(primary)
    nic["id"] = nic["id"].replace("hs-vm1-nic", "hs-vm1-hairpin-nic")
    nic["name"] = "hs-vm1-hairpin-nic"
    nic["tags"] = {"hairpin-managed": "true"}
    cfg = nic["properties"]["ipConfigurations"][0]
    cfg["id"] = cfg["id"].replace("hs-vm1-nic", "hs-vm1-hairpin-nic")
    cfg["properties"]["privateIPAddress"] = "10.0.1.11"
    cfg["properties"]["loadBalancerBackendAddressPools"] = []
    nic["properties"]["primary"] = False
    doc["resources"].append(nic)
    vm["properties"]["networkProfile"]["networkInterfaces"].append(
        {"id": nic["id"], "properties": {"primary": False}})
    return doc


@pytest.mark.azurite
def test_verified_routes_from_the_journal_mark_pairs_not_affected(storage_ns):
    from shared.storage.journal import Journal

    journal = Journal(storage_ns.table_service(), table=storage_ns.table("journal"),
                      state_table=storage_ns.table("state")).ensure()
    scenario = _with_managed_nic(json.loads((SCENARIOS / "default.json").read_text()))
    vm_id = next(r["id"] for r in scenario["resources"] if r["name"] == "hs-vm1")
    journal.open_record(RecordKind.VERIFIED_ROUTE, vm_id, "10.0.1.100", operation_id="op-1")
    ctx = ServiceContext(Settings(), journal=journal, clock=lambda: WHEN)

    result = audit.run_audit(ctx, snapshot=scenario)
    assert {f["frontend_ip"] for f in hs_vm1_high(result)} == {"10.0.1.101"}
    assert result.report["summary"]["not_affected"]["fixed_and_verified"] == 1
    without = audit.run_audit(ServiceContext(Settings(), clock=lambda: WHEN), snapshot=scenario)
    assert len(hs_vm1_high(without)) == 2


@pytest.mark.azurite
def test_scheduled_audit_stores_json_html_and_index(emulator, storage_ns):
    from shared.storage.reports import ReportStore

    emu = emulator("default")
    store = ReportStore(storage_ns.blob_service(), container=storage_ns.container("reports"))
    ctx = make_ctx(emu, subscriptions=(emu.subscription_id,))
    ctx.reports = store.ensure()

    record = audit.scheduled_audit(ctx)
    assert record.paths == {"json": f"reports/2026/11/26/{record.run_id}.json",
                            "html": f"reports/2026/11/26/{record.run_id}.html"}
    assert record.summary["by_severity"] == {"high": 2, "medium": 2, "info": 0}
    assert store.reports.latest().run_id == record.run_id
    stored = store.reports.read_json(record)
    assert [f["vm_name"] for f in stored["findings"]][:2] == ["hs-vm1", "hs-vm1"]
    assert store.reports.read(record, "html").startswith(b"<!DOCTYPE html>")

    latest = audit.latest_or_fresh(ctx, fresh=False, html=True)
    assert (latest.run_id, latest.fresh) == (record.run_id, False)
    assert latest.report == stored and latest.html.startswith("<!DOCTYPE html>")
    emu.requests.reset()
    fresh = audit.latest_or_fresh(ctx, fresh=True)
    assert fresh.fresh and fresh.run_id is None and fresh.html is None
    assert fresh.report["findings"] == stored["findings"]
    assert emu.requests  # it did discover
    assert len(store.reports.runs()) == 1  # a GET stores nothing
    assert "trend" not in record.summary  # nothing to compare the first audit with

    second = audit.scheduled_audit(ctx)  # the trend against the previous one in the index
    assert second.summary["trend"] == {"new": 0, "resolved": 0, "unchanged": 4, "new_high": 0}
    assert b"Since the previous audit (2026-11-26T05:00:00Z): <b class=\"new\">0 new" in (
        store.reports.read(second, "html"))


def test_scheduled_audit_needs_storage(emulator):
    emu = emulator("default")
    with pytest.raises(RuntimeError, match="storage is not configured"):
        audit.scheduled_audit(make_ctx(emu))


def test_latest_or_fresh_without_storage_runs_an_audit(emulator):
    emu = emulator("default")
    found = audit.latest_or_fresh(make_ctx(emu), fresh=False, html=True)
    assert found.fresh and found.run_id is None
    assert found.report["summary"]["by_severity"]["high"] == 2
    assert 'id="hairpin-data"' in found.html and 'id="lb-table"' in found.html


@pytest.mark.parametrize(("accept", "html"), [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
    ("application/json", False),
    ("*/*", False),
    (None, False),
    ("text/html", True),
    ("application/json, text/html;q=0.5", False),
    ("text/html;q=0", False),
    ("text/*", True),
])
def test_accept_header_decides_html(accept, html):
    assert audit.prefers_html(accept) is html


def test_narrow_discovery_reads_each_touched_resource_once(emulator):
    from shared.azure.discovery import discover_scope

    emu = emulator("default")
    ctx = make_ctx(emu)
    vm1 = next(d["id"] for d in emu.scenario["resources"] if d["name"] == "hs-vm1")
    doc = discover_scope(ctx.clients, vm_ids=[vm1])
    names = sorted(d["name"] for d in doc["resources"])
    # hs-vm1, its NIC, the ILB it is in, the peer (hs-vm2 and NIC), the VNet; no NSG.
    assert names == ["hs-vm1", "hs-vm1-nic", "hs-vm2", "hs-vm2-nic", "hs-vnet", "ilb-healthshare"]
    gets = [e for e in emu.requests if e.method == "GET" and "/resourceGroups/" in e.path
            and "/operations" not in e.path and "/operationResults" not in e.path]
    assert len(gets) == len({e.path.lower() for e in gets}) == 6
    assert not [e for e in emu.requests if e.method == "GET" and e.path.count("/") == 5
                and e.resource_type in LIST_TYPES]
    full = audit.run_audit(ctx)
    narrow = audit.run_audit(ctx, snapshot=doc)
    assert [f for f in narrow.report["findings"] if f["vm_name"] == "hs-vm1"] == \
        [f for f in full.report["findings"] if f["vm_name"] == "hs-vm1"]


def test_audit_counts_findings_for_telemetry():
    """Every audit adds its findings to the `findings` counter by severity (exported to Azure
    Monitor when OpenTelemetry is configured)."""
    from shared.observability import counters

    ctx = ServiceContext(Settings(), clock=lambda: datetime(2026, 11, 26, tzinfo=UTC))
    high, medium = (counters.get("findings", severity=s, source="audit")
                    for s in ("high", "medium"))
    audit.run_audit(ctx, snapshot=SCENARIOS / "default.json", html=False)
    assert counters.get("findings", severity="high", source="audit") == high + 2
    assert counters.get("findings", severity="medium", source="audit") == medium + 2
