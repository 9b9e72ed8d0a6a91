import json
from datetime import UTC, datetime

import jsonschema
import pytest

from shared.core.report import SCHEMA_VERSION, build_report, exit_status, to_json, to_text
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from tests.support.paths import ROOT
from tests.support.topology_builder import EstateBuilder, mirror_pair

SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())
WHEN = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)


def seed_report(**kw):
    snap = json.loads((ROOT / "emulator" / "scenarios" / "default.json").read_text())
    return build_report(evaluate(topology_from_snapshot(snap)), WHEN, **kw)


def assert_valid(report):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(to_json(report)))


def test_seed_report_validates_and_summarises():
    report = seed_report(scope={"snapshot": "default.json"})
    assert_valid(report)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["generated_at"] == "2026-11-26T04:00:00Z"
    assert report["summary"]["by_severity"] == {"high": 2, "medium": 2, "info": 0}
    assert report["summary"]["vms_at_risk"] == 2
    assert report["summary"]["exit_status"] == 1 == exit_status(report)
    first = report["findings"][0]
    for key in (
        "id",
        "vm_id",
        "frontend_ip",
        "frontend_id",
        "ports",
        "severity",
        "likelihood",
        "evidence",
        "reason",
        "remediation",
    ):
        assert key in first
    assert first["remediation"]["feasible"] is True


def test_reports_are_deterministic():
    assert to_json(seed_report()) == to_json(seed_report())


@pytest.mark.parametrize(
    "builder",
    [
        lambda: mirror_pair(),  # info only
        lambda: mirror_pair(tags1={"hairpin-calls": "10.0.1.100"}),
        lambda: EstateBuilder(),  # empty estate
    ],
)
def test_other_estates_validate(builder):
    report = build_report(evaluate(builder().topology()), "2026-11-26T04:00:00Z")
    assert_valid(report)


def test_unknowns_and_not_affected_validate():
    b = mirror_pair()
    b.vm("vm1", "10.0.1.10", size=None, power=None)
    b.member("ilb1", "pool1", "vm1", pool_side=False)
    b.rule("ilb1", "float", "fe1", "pool1", 80, floating=True)
    b.lb("ilb2", {"fe9": "10.0.1.200"})
    b.rule("ilb2", "r9", "fe9", "pool9", floating=True)
    b.member("ilb2", "pool9", "vm2")
    report = build_report(evaluate(b.topology()), WHEN)
    assert_valid(report)
    assert report["summary"]["not_affected"]["floating_ip"] == 1
    assert report["unknowns"]
    by_vm = {f["vm_name"]: f for f in report["findings"]}
    assert by_vm["vm1"]["remediation"]["feasible"] == "unknown"
    assert by_vm["vm2"]["remediation"]["blockers"][0]["code"] == "last_running_member"


def test_exit_status():
    info_only = evaluate(mirror_pair().topology())
    assert exit_status(info_only) == 0
    assert exit_status(build_report(info_only, WHEN)) == 0
    assert exit_status(evaluate(mirror_pair(tags1={"hairpin-calls": "10.0.1.100"}).topology())) == 1


def test_naive_timestamp_refused():
    with pytest.raises(ValueError):
        build_report(evaluate(EstateBuilder().topology()), datetime(2026, 1, 1))


def test_text_table():
    text = to_text(seed_report())
    lines = text.splitlines()
    assert lines[0].startswith("ILB hairpin audit (2026-11-26T04:00:00Z): 2 high, 2 medium, 0 info")
    header = next(line for line in lines if line.startswith("SEVERITY"))
    assert "LIKELIHOOD" in header and "FIXABLE" in header
    assert any(
        line.startswith("high") and "hs-vm1" in line and "10.0.1.100" in line and "100%" in line
        for line in lines
    )
    assert any("tcp/1972->1973" in line for line in lines)
    assert "only healthy member" in text


def test_text_when_nothing_found():
    text = to_text(build_report(evaluate(EstateBuilder().topology()), WHEN))
    assert "nothing to fix" in text


def test_csv_has_one_row_per_finding_and_defuses_formulas():
    import csv
    import io

    from shared.core.report.spreadsheet import CSV_COLUMNS, to_csv

    report = seed_report()
    text = to_csv(report)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    assert [r["id"] for r in rows] == [f["id"] for f in report["findings"]]
    first = rows[0]
    assert (first["severity"], first["vm_name"], first["likelihood"], first["fixable"],
            first["blocked"], first["needs_deallocation"]) == ("high", "hs-vm1", "1.00", "yes",
                                                                "no", "yes")
    assert (first["subscription"], first["resource_group"], first["load_balancer"]) == (
        "00000000-0000-0000-0000-000000000001", "rg-healthshare", "ilb-healthshare")
    assert first["ports"] == "TCP 1972" and first["reason"] == report["findings"][0]["reason"]

    hostile = json.loads(json.dumps(report))
    hostile["findings"][0]["vm_name"] = '=HYPERLINK("http://x","y")'
    hostile["findings"][0]["reason"] = "-2+3"
    hostile["findings"][0]["remediation"]["blockers"] = [{"code": "subnet_full", "detail": ""}]
    (row, *_) = csv.DictReader(io.StringIO(to_csv(hostile)))
    assert row["vm_name"] == '\'=HYPERLINK("http://x","y")' and row["reason"] == "'-2+3"
    assert (row["blocked"], row["blockers"]) == ("yes", "subnet_full")


def test_json_text_is_what_the_standard_encoder_writes():
    """orjson writes the report (speed), byte for byte what `json.dumps(indent=2)` wrote for
    an ASCII estate, so readers of earlier reports see no change; non-ASCII names stay UTF-8."""
    report = seed_report(scope={"snapshot": "default.json"})
    assert to_json(report) == json.dumps(report, indent=2) + "\n"
    named = {**report, "scope": {"snapshot": "estate-é.json"}}
    assert json.loads(to_json(named)) == json.loads(json.dumps(named))
    assert "estate-é.json" in to_json(named)
