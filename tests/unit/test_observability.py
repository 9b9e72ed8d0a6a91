"""Correlation IDs on log records, optional Azure Monitor OpenTelemetry, counters."""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import sys

import pytest

from shared import observability as obs
from tests.support.remediation import estate  # noqa: F401 - fixture


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def captured():
    logger = logging.getLogger("test.hairpin.obs")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = ListHandler()
    flt = obs.install_filter(handler)
    logger.addHandler(handler)
    yield logger, handler, flt
    logger.removeHandler(handler)


@pytest.fixture
def fresh_state(monkeypatch):
    obs.reset()
    monkeypatch.delitem(sys.modules, "azure.monitor.opentelemetry", raising=False)


def test_records_carry_the_ids_of_the_context(captured):
    logger, handler, _ = captured
    with obs.correlate(event_id="ev-1", operation_id="op-9"):
        logger.info("event received")
        with obs.correlate(finding_id="hp-abc", plan_hash="sha256:1234"):
            logger.info("planning")
        logger.info("after plan")
    logger.info("outside")
    r = handler.records
    assert (r[0].event_id, r[0].operation_id) == ("ev-1", "op-9")
    assert not hasattr(r[0], "finding_id")
    assert (r[1].event_id, r[1].finding_id, r[1].plan_hash) == ("ev-1", "hp-abc", "sha256:1234")
    assert r[1].correlation == ("event_id=ev-1 finding_id=hp-abc plan_hash=sha256:1234 "
                                "operation_id=op-9")
    assert not hasattr(r[2], "finding_id")  # the inner block's IDs ended with it
    assert r[3].correlation == "" and not hasattr(r[3], "event_id")
    assert obs.current() == {}


def test_explicit_extra_and_adapter_win_over_the_context(captured):
    logger, handler, _ = captured
    with obs.correlate(finding_id="from-context"):
        logger.info("x", extra={"finding_id": "explicit"})
        obs.CorrelationAdapter(logger, {"vm_id": "/subscriptions/s/vm1"}).warning("y")
    assert handler.records[0].finding_id == "explicit"
    assert handler.records[1].vm_id == "/subscriptions/s/vm1"
    assert handler.records[1].finding_id == "from-context"


def test_annotate_appends_ids_to_the_message_once(captured):
    logger, handler, flt = captured
    flt.annotate = True
    second = ListHandler()
    second.addFilter(flt)
    logger.addHandler(second)
    try:
        with obs.correlate(event_id="e1", finding_id="f1"):
            logger.info("applied %s", "step-2")
    finally:
        logger.removeHandler(second)
    assert handler.records[0].getMessage() == "applied step-2 [event_id=e1 finding_id=f1]"
    assert second.records[0].getMessage().count("[event_id=e1") == 1


def test_unknown_keys_are_rejected_and_values_are_one_bounded_line():
    with pytest.raises(ValueError, match="unknown correlation keys"):
        with obs.correlate(findingid="typo"):
            pass
    with obs.correlate(event_id="a\nb" + "x" * 2000) as ids:
        assert "\n" not in ids["event_id"] and len(ids["event_id"]) == 512
    with pytest.raises(ValueError):
        obs.get_logger("x", bogus=1)


def test_context_is_isolated_between_threads_and_copied_explicitly(captured):
    logger, handler, _ = captured

    def work(n):
        with obs.correlate(operation_id=f"op-{n}"):
            logger.info("working")
            return obs.current()["operation_id"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, range(8))) == [f"op-{n}" for n in range(8)]
    assert sorted(r.operation_id for r in handler.records) == sorted(f"op-{n}" for n in range(8))
    with obs.correlate(event_id="parent"):
        ctx = contextvars.copy_context()
    assert ctx.run(obs.current) == {"event_id": "parent"}
    assert obs.current() == {}


def test_setup_without_connection_string_configures_nothing(fresh_state):
    calls = []
    root = logging.getLogger("test.hairpin.setup")
    handler = ListHandler()
    root.addHandler(handler)
    try:
        state = obs.setup({}, logger=root, configure=lambda **kw: calls.append(kw))
        assert state == {"otel": False, "reason": "APPLICATIONINSIGHTS_CONNECTION_STRING not set"}
        assert calls == []
        assert "azure.monitor.opentelemetry" not in sys.modules  # not even imported
        flt = obs.current_filter()
        assert flt in handler.filters and flt.annotate is True
        # idempotent: one filter per handler
        obs.setup({}, logger=root)
        assert handler.filters.count(flt) == 1
    finally:
        root.removeHandler(handler)


def test_setup_with_connection_string_configures_azure_monitor_once(fresh_state):
    calls = []
    root = logging.getLogger("test.hairpin.setup2")
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING":
           "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
           "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"}
    state = obs.setup(env, logger=root, configure=lambda **kw: calls.append(kw))
    assert state == {"otel": True, "reason": "configured"}
    assert calls == [{"connection_string": env["APPLICATIONINSIGHTS_CONNECTION_STRING"],
                      "logger_name": "test.hairpin.setup2"}]
    obs.setup(env, logger=root, configure=lambda **kw: calls.append(kw))
    assert len(calls) == 1
    assert obs.current_filter().annotate is False  # OTel exports IDs as customDimensions


def test_setup_uses_the_user_assigned_identity_for_entra_ingestion(fresh_state):
    from azure.identity import ManagedIdentityCredential

    calls = []
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
           "APPLICATIONINSIGHTS_AUTHENTICATION_STRING":
               "ClientId=22222222-2222-4222-8222-222222222222;Authorization=AAD"}
    obs.setup(env, logger=logging.getLogger("t3"), configure=lambda **kw: calls.append(kw))
    assert isinstance(calls[0]["credential"], ManagedIdentityCredential)


def test_setup_reports_a_missing_package_without_failing(fresh_state, monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)  # import fails
    state = obs.setup({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"},
                      logger=logging.getLogger("t4"))
    assert state["otel"] is False and "not installed" in state["reason"]


def test_counters():
    c = obs.Counters()
    c.add("findings", 2, severity="high")
    c.add("findings", 1, severity="medium")
    c.add("remediations")
    c.add("failures", step="attach")
    c.add("drift", 3, kind="route_missing")
    assert c.get("findings") == 3 and c.get("findings", severity="high") == 2
    assert c.snapshot() == {"findings": 3, "remediations": 1, "failures": 1, "drift": 3}
    with pytest.raises(ValueError):
        c.add("findings", -1)
    with pytest.raises(ValueError):
        c.add("bad name")
    c.reset()
    assert c.snapshot() == {}
    assert set(obs.COUNTER_NAMES) == {"findings", "remediations", "failures", "drift"}


def test_counters_are_thread_safe():
    c = obs.Counters()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: [c.add("findings") for _ in range(500)], range(8)))
    assert c.get("findings") == 4000


def test_one_line_wiring_helpers(monkeypatch):
    c = obs.Counters()
    monkeypatch.setattr(obs, "counters", c)
    findings = [{"severity": "high"}, {"severity": "high"}, type("F", (), {"severity": "info"})()]
    assert obs.record_findings(findings) == 3
    assert c.get("findings", severity="high") == 2 and c.get("findings", source="audit") == 3
    assert obs.record_outcome({"status": "applied"}, trigger="event") == "applied"
    assert obs.record_outcome(type("O", (), {"status": "failed"})()) == "failed"
    assert obs.record_outcome({"status": "pending"}) == "pending"
    assert c.snapshot() == {"findings": 3, "remediations": 1, "failures": 1}
    assert obs.record_drift({"drift": {"managed_nic_missing": 2, "stale_routes": 0}}) == 2
    assert c.get("drift", kind="managed_nic_missing") == 2


def test_product_log_lines_carry_the_correlation_ids():
    """A real service's log record (the health check warning) carries the IDs of the block."""
    from shared.services import health
    from shared.settings import Settings

    handler = ListHandler()
    obs.install_filter(handler)
    logger = logging.getLogger("shared")
    logger.addHandler(handler)
    try:
        def down():
            raise ConnectionError("no route")

        with obs.correlate(operation_id="op-7", event_id="ev-7"):
            report = health.health_report(Settings(), arm_probe=down)
    finally:
        logger.removeHandler(handler)
    assert report["checks"]["arm"] == {"reachable": False, "error": "ConnectionError"}
    [record] = [r for r in handler.records if r.name == "shared.services.health"]
    assert (record.operation_id, record.event_id) == ("op-7", "ev-7")


@pytest.mark.azurite
def test_remediation_logs_carry_its_ids_and_its_outcome_is_counted(estate, caplog):  # noqa: F811
    """An apply's log lines carry operation_id / plan_hash / trigger; the outcome is counted."""
    import logging

    from shared.observability import counters
    from shared.services import remediation
    from tests.support.remediation import CLI, VM1

    emu, _, ctx = estate()
    before = counters.get("remediations", status="applied", trigger="cli")
    pr = remediation.plan_for_vm(ctx, VM1)
    with caplog.at_level(logging.INFO):
        caplog.handler.addFilter(obs.CorrelationFilter())
        out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "applied"
    assert counters.get("remediations", status="applied", trigger="cli") == before + 1
    tagged = [r for r in caplog.records if getattr(r, "operation_id", None) == out.operation_id]
    assert tagged and all(r.plan_hash == pr.plan.hash and r.trigger == "cli" for r in tagged)
