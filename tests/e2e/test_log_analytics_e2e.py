"""Findings, outcomes and drift reach Log Analytics: the services upload through the real
LogsIngestionClient to the emulator's data collection endpoint, whose rule is the one
infra/main.json deploys; the rows are checked against the template's table definition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.identity import ManagedIdentityCredential

from shared.core.journal import Trigger
from shared.core.log_rows import LOG_COLUMNS, STREAM
from shared.core.remediation.outcome import Outcome
from shared.core.vocab import Status, TriggerKind
from shared.services import audit, remediation
from shared.services.context import ServiceContext, build_context
from shared.services.log_analytics import LogSink
from shared.services.sweep.reconcile import SweepReporter
from shared.settings import Settings
from tests.support.log_analytics import add_template_rule, template_table_columns
from tests.support.remediation import CLI, VM1, VM2

pytestmark = pytest.mark.azurite

WHEN = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
TABLE_TYPES = {"string": str, "real": float, "boolean": bool, "dateTime": str}


def sink(emu) -> tuple[LogSink, str]:
    rule = add_template_rule(emu)
    settings = Settings(logs_endpoint=emu.logs_endpoint, logs_rule_id=rule)
    return LogSink.from_settings(settings, ManagedIdentityCredential()), rule


def uploaded(emu, rule) -> list[dict]:
    assert all(r.status == 204 and not r.dropped and not r.nulled for r in emu.logs.requests)
    return emu.logs.rows.get((rule, STREAM), [])


def assert_table_schema(rows: list[dict]) -> None:
    """Every row has exactly the table's columns, each value of the column's type."""
    columns = template_table_columns()
    assert [c["name"] for c in columns] == [name for name, _ in LOG_COLUMNS]
    for row in rows:
        assert list(row) == [c["name"] for c in columns]
        for c in columns:
            value = row[c["name"]]
            assert value is None or isinstance(value, TABLE_TYPES[c["type"]]), (c, value)


def test_the_context_has_a_sink_when_the_endpoint_and_rule_are_set():
    on = Settings(logs_endpoint="https://dce.example.ingest.monitor.azure.com",
                  logs_rule_id="dcr-1")
    assert build_context(on).logs is not None
    assert build_context(on, offline=True).logs is None
    assert build_context(Settings()).logs is None


def test_scheduled_audit_uploads_one_row_per_finding(emulator, storage_ns):
    from shared.storage.reports import ReportStore

    emu = emulator("default")
    ctx = ServiceContext(Settings(arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint,
                                  subscriptions=(emu.subscription_id,)),
                         credential=ManagedIdentityCredential(), polling_interval=0,
                         clock=lambda: WHEN)
    ctx.reports = ReportStore(storage_ns.blob_service(),
                              container=storage_ns.container("reports")).ensure()
    ctx.logs, rule = sink(emu)
    record = audit.scheduled_audit(ctx)
    rows = uploaded(emu, rule)
    report = ctx.reports.reports.read_json(record)
    assert [r["FindingId"] for r in rows] == [f["id"] for f in report["findings"]]
    assert {(r["Kind"], r["RunId"], r["Trigger"]) for r in rows} == {
        ("finding", record.run_id, "timer")}
    hs_vm1 = [r for r in rows if r["VmName"] == "hs-vm1"]
    assert [(r["Severity"], r["Likelihood"], r["FrontendIp"], r["LoadBalancer"]) for r in hs_vm1
            ] == [("high", 1.0, "10.0.1.100", "ilb-healthshare"),
                  ("high", 1.0, "10.0.1.101", "ilb-healthshare")]
    assert {(r["Subscription"], r["ResourceGroup"], r["Fixable"], r["Blocked"]) for r in rows
            } == {(emu.subscription_id, "rg-healthshare", True, False)}
    assert_table_schema(rows)
    assert (ctx.logs.sent, ctx.logs.failed) == (4, 0)


def test_remediation_outcomes_are_rows(estate):
    emu, guest, ctx = estate()
    ctx.logs, rule = sink(emu)
    before = remediation.verify(ctx, VM1, CLI)  # the hairpin measured: 0/20 per VIP
    assert before.verified is False
    pr = remediation.plan_for_vm(ctx, VM2)
    fixed = remediation.apply(ctx, VM2, CLI, approval=pr.plan.hash)
    assert fixed.status == "applied"
    rows = uploaded(emu, rule)
    assert [(r["Kind"], r["VmName"], r["Status"], r["Verified"], r["RunId"]) for r in rows] == [
        ("outcome", "hs-vm1", "failed", False, before.operation_id),
        # the plan fixes the idle peer first, then hs-vm1 (README, "What make demo shows")
        ("outcome", "hs-vm2", "applied", True, fixed.operation_id),
        ("outcome", "hs-vm1", "applied", True, fixed.operation_id)]
    assert {r["Trigger"] for r in rows} == {"cli"}
    assert_table_schema(rows)


def test_sweep_drift_is_rows(emulator):
    emu = emulator()
    ctx = ServiceContext(Settings(arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint))
    ctx.logs, rule = sink(emu)
    reporter = SweepReporter(ctx, Trigger(TriggerKind.SWEEP), "sweep-1")
    vm = f"/subscriptions/{emu.subscription_id}/resourceGroups/rg/providers/" \
         "Microsoft.Compute/virtualMachines/vm01"
    reporter.notify(Outcome(Status.APPLIED), vm, ["guest_routes_missing", "nic_detached"])
    rows = uploaded(emu, rule)
    assert [(r["Kind"], r["VmName"], r["Status"], r["Detail"], r["RunId"], r["Trigger"])
            for r in rows] == [
        ("drift", "vm01", "guest_routes_missing", "repair: applied", "sweep-1", "sweep"),
        ("drift", "vm01", "nic_detached", "repair: applied", "sweep-1", "sweep")]
    assert_table_schema(rows)


def test_a_failed_upload_never_fails_the_run(emulator):
    emu = emulator()
    ctx = ServiceContext(Settings(arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint))
    ctx.logs = LogSink.from_settings(Settings(logs_endpoint=emu.logs_endpoint,
                                              logs_rule_id="dcr-unknown"),
                                     ManagedIdentityCredential())
    reporter = SweepReporter(ctx, Trigger(TriggerKind.SWEEP), "sweep-1")
    reporter.notify(Outcome(Status.APPLIED), None, ["guest_routes_missing"])  # no raise
    assert (ctx.logs.sent, ctx.logs.failed) == (0, 1)
    assert [r.status for r in emu.logs.requests] == [404]
