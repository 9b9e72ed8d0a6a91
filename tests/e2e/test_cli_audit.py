"""`hairpin audit` / `hairpin snapshot` in-process (shared.cli.main) and as a subprocess, against
the ARM emulator's default scenario; exit codes 0/1/2; progress only on a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli.audit import Progress
from shared.cli.main import main as hairpin
from tests.support.fixtures_emulator import SCENARIOS, small_scenario

HAIRPIN = Path(sys.executable).with_name("hairpin")


def hairpin_command() -> list[str]:
    return [str(HAIRPIN)] if HAIRPIN.exists() else [sys.executable, "-m", "shared.cli"]


def assert_two_hs_vm1_findings(text: str) -> None:
    lines = text.splitlines()
    high = [ln for ln in lines if ln.startswith("high") and "hs-vm1" in ln]
    assert len(high) == 2
    assert any("10.0.1.100" in ln and "100%" in ln for ln in high)
    assert any("10.0.1.101" in ln and "100%" in ln for ln in high)
    assert "hs-vm1 (10.0.1.10) is a backend of internal load balancer ilb-healthshare " \
           "frontend 10.0.1.100" in " ".join(text.split())
    assert text.count("Likelihood: 100% of hs-vm1's connections") == 2


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """Settings that would change what the CLI does here (the developer's own) are unset."""
    for name in ("HAIRPIN_SUBSCRIPTIONS", "HAIRPIN_USE_RESOURCE_GRAPH",
                 "HAIRPIN_STORAGE_CONNECTION", "AzureWebJobsStorage", "HAIRPIN_DECLARED_CALLERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def live(emulator):
    return emulator("default", lro_polls=0)  # LROs done at the first poll: no SDK wait


def test_audit_prints_the_two_hairpin_findings_and_exits_1(live, capsys, tmp_path):
    html = tmp_path / "out" / "report.html"
    assert hairpin(["audit", "--html", str(html)]) == 1
    out, err = capsys.readouterr()
    assert_two_hs_vm1_findings(out)
    assert "2 high, 2 medium, 0 info" in out
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert err == f"HTML report: {html}\n"  # no progress: stderr is not a terminal


def test_audit_json_and_html_formats(live, capsys, tmp_path):
    assert hairpin(["audit", "--resource-graph", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["scope"]["source"] == "resource_graph"
    hs_vm1 = [f for f in report["findings"] if f["vm_name"] == "hs-vm1"]
    assert [(f["severity"], f["likelihood"]) for f in hs_vm1] == [("high", 1.0), ("high", 1.0)]
    target = tmp_path / "report.html"
    assert hairpin(["audit", "--subscription", live.subscription_id, "--format", "html",
                    "--output", str(target)]) == 1
    assert capsys.readouterr().out == ""
    assert 'id="hairpin-data"' in target.read_text()


def test_audit_csv_format(capsys):
    import csv

    assert hairpin(["audit", "--snapshot", str(SCENARIOS / "default.json"), "--format",
                    "csv"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["vm_name"], r["severity"], r["frontend_ip"]) for r in rows] == [
        ("hs-vm1", "high", "10.0.1.100"), ("hs-vm1", "high", "10.0.1.101"),
        ("hs-vm2", "medium", "10.0.1.100"), ("hs-vm2", "medium", "10.0.1.101")]


def test_audit_exits_0_without_high_or_medium(tmp_path, capsys):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_scenario()))  # one non-floating VIP: latent exposure only
    assert hairpin(["audit", "--snapshot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 high, 0 medium" in out and "info" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["audit", "--snapshot", "/nonexistent/estate.json"], "cannot read"),
    (["audit", "--snapshot", "{bad}"], "not valid JSON"),
    (["audit", "--snapshot", "{list}"], "must be a JSON object"),
    (["audit", "--snapshot", "{scenario}", "--subscription",
      "00000000-0000-0000-0000-000000000001"], "cannot be combined"),
    (["audit", "--subscription", "not-a-guid"], "not a subscription ID"),
    (["audit"], "no subscription to audit"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    (tmp_path / "bad.json").write_text('{"resources": [')
    (tmp_path / "list.json").write_text("[]")
    files = {"{bad}": str(tmp_path / "bad.json"), "{list}": str(tmp_path / "list.json"),
             "{scenario}": str(SCENARIOS / "default.json")}
    assert hairpin([files.get(a, a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert err.startswith("hairpin audit: ")


def test_azure_errors_are_one_line_and_exit_2(live, capsys):
    live.faults.add("GET", "/networkInterfaces$", 403, times=None)
    assert hairpin(["audit"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("hairpin audit: Azure request failed (403 AuthorizationFailed): ")


def test_snapshot_requires_output(capsys):
    with pytest.raises(SystemExit) as info:
        hairpin(["snapshot"])
    assert info.value.code == 2
    assert "--output" in capsys.readouterr().err


def test_subprocess_with_the_emulator_env(live, tmp_path):
    env = {**os.environ, **live.env()}
    env.pop("AZURE_CLIENT_ID", None)
    proc = subprocess.run([*hairpin_command(), "audit"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert_two_hs_vm1_findings(proc.stdout)
    assert proc.stderr == ""  # piped: quiet

    snap = tmp_path / "estate.json"
    proc = subprocess.run([*hairpin_command(), "snapshot", "--output", str(snap)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    offline = subprocess.run([*hairpin_command(), "audit", "--snapshot", str(snap)],
                             cwd=tmp_path, env={k: v for k, v in env.items()
                                                if k != "HAIRPIN_ARM_ENDPOINT"},
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 1, offline.stderr
    assert_two_hs_vm1_findings(offline.stdout)

    bad = subprocess.run([*hairpin_command(), "audit", "--snapshot", str(tmp_path / "none")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_only():
    tty = _Terminal()
    with Progress(tty, interval=0) as progress:
        progress("resources", 3, 250)
        progress("health", 9, 700)
        progress("health", 10, 700)
    text = tty.getvalue()
    assert "3 pages fetched, 250 resources seen (resources)" in text
    assert "9 pages fetched, 700 resources seen, 1 health calls (health)" in text
    assert "10 pages fetched, 700 resources seen, 2 health calls (health)" in text
    assert text.endswith("\r\x1b[K")  # the line is cleared for the report
    piped = io.StringIO()
    with Progress(piped, interval=0) as progress:
        progress("resources", 3, 250)
    assert piped.getvalue() == ""
    quiet = _Terminal()
    with Progress(quiet, interval=0, quiet=True) as progress:
        progress("resources", 3, 250)
    assert quiet.getvalue() == ""


def test_output_names_a_format_or_a_file_as_az_does(capsys, tmp_path):
    seed = str(SCENARIOS / "default.json")
    assert hairpin(["audit", "--snapshot", seed, "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["summary"]["by_severity"]["high"] == 2
    assert hairpin(["audit", "--snapshot", seed, "--output", "none"]) == 1
    assert capsys.readouterr().out == ""  # the exit status tells
    target = tmp_path / "report.csv"
    assert hairpin(["audit", "--snapshot", seed, "--format", "csv", "-o", str(target)]) == 1
    assert target.read_text().startswith("id,severity,")
    assert hairpin(["audit", "--snapshot", seed, "--format", "csv", "-o", "json"]) == 2
    assert "disagree" in capsys.readouterr().err


def test_quiet_prints_only_errors(capsys, tmp_path):
    seed = str(SCENARIOS / "default.json")
    html = tmp_path / "r.html"
    assert hairpin(["audit", "--snapshot", seed, "--html", str(html), "-q", "-o", "none"]) == 1
    assert capsys.readouterr() == ("", "")
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert hairpin(["audit", "--snapshot", "/nonexistent", "--quiet"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_subprocess_on_a_terminal_shows_progress(live, tmp_path):
    import pty

    env = {**os.environ, **live.env()}
    env.pop("AZURE_CLIENT_ID", None)
    master, terminal = pty.openpty()
    proc = subprocess.Popen([*hairpin_command(), "audit", "--output", str(tmp_path / "r.txt")],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(60) == 1
    assert b"pages fetched" in shown and b"7 resources seen" in shown
    assert shown.endswith(b"\r\x1b[K")  # cleared before the report
    assert_two_hs_vm1_findings((tmp_path / "r.txt").read_text())


def test_offline_audit_loads_no_azure_sdk(tmp_path):
    """A snapshot audit imports no `azure.*` module (about a second of imports it never uses),
    and still writes the report and the HTML page."""
    path = SCENARIOS / "default.json"
    probe = ("import sys\nfrom shared.cli.main import main\n"
             f"rc = main(['audit', '--snapshot', {str(path)!r}, '--format', 'json', "
             f"'--output', {str(tmp_path / 'r.json')!r}, '--html', {str(tmp_path / 'r.html')!r}])\n"
             "print(rc, sorted(m for m in sys.modules if m.startswith('azure')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HAIRPIN_ARM_ENDPOINT": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "[]"]
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["by_severity"]["high"] == 2
    assert 'id="hairpin-data"' in (tmp_path / "r.html").read_text()
