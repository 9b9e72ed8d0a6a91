"""The HTML report in headless Debian Chromium, driven over the DevTools protocol (pipe):
it renders, the seed's picture is the one it always was with hs-vm1's loops in red, the filters
work, there are no console errors, exceptions or network requests; and the 10,000-VM report is
at most 5 MB and opens (load event, first paint) in under 2 s. Screenshots go to the test's
temporary directory (printed), never into the repository."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bench.estate import generate
from shared.core import snapshot as snapshots
from shared.core.report import build_report
from shared.core.report import html as report_html
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from tests.support.paths import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,1600"]
MAX_BYTES = 5 * 1024 * 1024
MAX_OPEN_MS = 2000
RED = "rgb(208, 2, 27)"

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="chromium not installed (apt-get install -y chromium)"),
]


class DevTools:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3 and 4,
    NUL-separated JSON messages)."""

    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plumb() -> None:  # in the child: its fd 3 reads commands, fd 4 writes replies
            # Move both out of the way first: either may already sit on fd 3 or 4.
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # dup2 makes them inheritable across exec
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=plumb, close_fds=False)  # os.pipe() fds are not inherited (PEP 446)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: queue.Queue = queue.Queue()
        self.all_events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                    else:
                        self.all_events.append(message)
                        self.events.put(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        message = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                assert left > 0, f"no reply to {method}"
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        assert "error" not in reply, reply
        return reply.get("result", {})

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {method} event"
            event = self.events.get(timeout=left)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing is best effort; kill below
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_chrome)


class Tab:
    """One page in the browser: navigate, evaluate JS, wait for the report's ready flag."""

    def __init__(self, browser: DevTools) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=self.session)

    def open(self, html_file: Path) -> None:
        self.browser.call("Page.navigate", {"url": html_file.as_uri()}, session=self.session)
        self.browser.wait_for("Page.loadEventFired", timeout=60)
        self.wait("document.documentElement.dataset.ready === 'true'")

    def js(self, expression: str, timeout: float = 30):
        result = self.browser.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session, timeout=timeout)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(condition):
            assert time.monotonic() < deadline, f"never true: {condition}"
            time.sleep(0.05)

    def screenshot(self, path: Path, selector: str | None = None) -> Path:
        params: dict = {"format": "png"}
        if selector:
            box = self.js(f"(() => {{ const b = document.querySelector({json.dumps(selector)})"
                          ".getBoundingClientRect(); return [b.x + scrollX, b.y + scrollY, "
                          "b.width, b.height]; })()")
            params["clip"] = {"x": box[0], "y": box[1], "width": box[2], "height": box[3],
                              "scale": 1}
            params["captureBeyondViewport"] = True
        shot = self.browser.call("Page.captureScreenshot", params, session=self.session)
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")
        return path

    def problems(self) -> list[dict]:
        self.js("document.title")  # let queued events arrive
        return [e for e in self.browser.all_events if e.get("sessionId") == self.session and (
            e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled"
                and e["params"].get("type") in ("error", "assert", "warning"))
            or (e.get("method") == "Log.entryAdded"
                and e["params"]["entry"].get("level") in ("error", "warning")))]

    def requests(self) -> set[str]:
        return {e["params"]["request"]["url"] for e in self.browser.all_events
                if e.get("sessionId") == self.session
                and e.get("method") == "Network.requestWillBeSent"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = DevTools(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chrome
    finally:
        chrome.close()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    snap = json.loads((ROOT / "emulator" / "scenarios" / "default.json").read_text())
    topology = topology_from_snapshot(snap)
    report = build_report(evaluate(topology), "2026-11-26T05:00:00Z", scope={"source": "seed"})
    html_file = tmp / "report.html"
    html_file.write_text(report_html.render(report, topology), encoding="utf-8")
    tab = Tab(browser)
    tab.open(html_file)
    tab.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    tab.screenshot(tmp / "report.png")
    tab.screenshot(tmp / "picture.png", "#topology")
    return tab, html_file, report


def test_renders_after_scripts_ran(page):
    tab, _, report = page
    box = tab.js("(() => { const b = document.querySelector('#topology').getBoundingClientRect();"
                 " return [b.width, b.height]; })()")
    assert box[0] > 800 and box[1] > 150
    assert tab.js("document.querySelectorAll('tr.finding').length") == len(report["findings"])
    assert tab.js("document.getElementById('f-count').textContent") == "4 of 4"


def test_drawn_picture_is_the_seed_picture(page):
    """What the browser drew for the opened load balancer is the stored seed picture."""
    tab, *_ = page
    golden = (ROOT / "tests" / "fixtures" / "report" / "default-picture.svg").read_text().strip()
    same = tab.js(f"""(() => {{ const d = document.createElement('div');
        d.innerHTML = {json.dumps(golden)};
        return d.innerHTML === document.querySelector('#lb-table .picture').innerHTML; }})()""")
    assert same is True


def test_picture_shows_hs_vm1_loops_in_red(page):
    tab, *_ = page
    loops = tab.js("""Array.from(document.querySelectorAll('g.loop.high[data-vm="hs-vm1"]'))
        .filter(g => !g.classList.contains('label'))
        .map(g => ({paths: Array.from(g.querySelectorAll('path'))
                      .map(p => [getComputedStyle(p).stroke, p.getBBox().width]),
                    visible: getComputedStyle(g).opacity}))""")
    assert len(loops) == 2
    for loop in loops:
        assert [stroke for stroke, _ in loop["paths"]] == [RED, RED]
        assert all(width > 300 for _, width in loop["paths"])  # drawn from NIC to VIP and back
        assert loop["visible"] == "1"
    labels = tab.js("""Array.from(document.querySelectorAll('g.loop.label[data-vm="hs-vm1"] text'))
        .map(t => [t.textContent, getComputedStyle(t).fill, t.getBBox().width])""")
    assert [text for text, _, _ in labels] == ["\u21ba hs-vm1 \u00b7 100% \u00b7 high"] * 2
    assert all(fill == RED and width > 50 for _, fill, width in labels)


def test_filters_hide_rows_and_dim_loops(page):
    tab, *_ = page
    state = tab.js("""(() => {
        const rows = () => Array.from(document.querySelectorAll('tr.finding'))
            .map(r => r.dataset.vm);
        const medium = document.querySelector('input[name=sev][value=medium]');
        medium.checked = false; medium.dispatchEvent(new Event('change'));
        const shown = rows();
        const dim = Array.from(document.querySelectorAll('g.loop.dim'))
            .map(g => g.dataset.vm);
        const count = document.getElementById('f-count').textContent;
        medium.checked = true; medium.dispatchEvent(new Event('change'));
        const text = document.getElementById('f-text');
        text.value = 'hs-vm2'; text.dispatchEvent(new Event('input'));
        const byVm = rows();
        text.value = ' FE-UCR'; text.dispatchEvent(new Event('input'));
        const byText = document.getElementById('f-count').textContent;
        text.value = ''; text.dispatchEvent(new Event('input'));
        return {shown, dim, count, byVm, byText};
    })()""")
    assert state["shown"] == ["hs-vm1", "hs-vm1"]
    assert sorted(set(state["dim"])) == ["hs-vm2"]
    assert state["count"] == "2 of 4"
    assert state["byVm"] == ["hs-vm2", "hs-vm2"]
    assert state["byText"] == "2 of 4"


def test_details_on_demand_and_sort(page):
    tab, _, report = page
    state = tab.js("""(() => {
        document.querySelector('tr.finding button.more').click();
        const detail = document.querySelector('tr.detail').textContent;
        document.querySelector('tr.finding button.more').click();
        const closed = document.querySelectorAll('tr.detail').length;
        const th = document.querySelector('#findings th[data-sort=vm]');
        th.click(); th.click();
        const desc = Array.from(document.querySelectorAll('tr.finding')).map(r => r.dataset.vm);
        th.click();
        return {detail, closed, desc};
    })()""")
    first = report["findings"][0]
    assert first["likelihood_text"] in state["detail"] and first["id"] in state["detail"]
    assert state["closed"] == 0
    assert state["desc"] == ["hs-vm2", "hs-vm2", "hs-vm1", "hs-vm1"]


def test_no_console_errors_and_no_network(page):
    tab, html_file, _ = page
    assert tab.problems() == []
    assert tab.requests() == {html_file.as_uri()}


@pytest.fixture(scope="module")
def fleet_page(tmp_path_factory):
    """The 10,000-VM / 1,000-ILB benchmark estate's report, written once."""
    tmp = tmp_path_factory.mktemp("fleet")
    resources, skus, health = generate()
    topology = topology_from_snapshot(snapshots.make_snapshot(resources, skus, health))
    report = build_report(evaluate(topology), "2026-11-26T05:00:00Z", scope={"source": "bench"})
    html_file = tmp / "fleet.html"
    html_file.write_text(report_html.render(report, topology), encoding="utf-8")
    return html_file, report


def test_fleet_report_is_small_and_opens_fast(browser, fleet_page):
    html_file, report = fleet_page
    size = html_file.stat().st_size
    print(f"10k report: {size / 1e6:.2f} MB, {len(report['findings'])} findings")
    assert size <= MAX_BYTES
    # Two cores shared by many: the best of three opens is the page's own time, the rest is
    # the neighbours' (typically 0.3 s load, 0.2 s first paint here).
    timings = []
    for _ in range(3):
        tab = Tab(browser)
        tab.open(html_file)
        timings.append(tab.js("""(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const paint = {};
            performance.getEntriesByType('paint').forEach(p => { paint[p.name] = p.startTime; });
            return {load: nav.loadEventEnd, paint: paint['first-paint'],
                    contentful: paint['first-contentful-paint'],
                    ready: performance.getEntriesByName('hairpin-ready')[0].startTime};
        })()"""))
        assert tab.problems() == []
    for t in timings:
        print(f"10k report in Chromium: load event {t['load']:.0f} ms, first paint "
              f"{t['paint']:.0f} ms, first contentful paint {t['contentful']:.0f} ms, table "
              f"and first picture drawn {t['ready']:.0f} ms")
    assert 0 < min(t["load"] for t in timings) < MAX_OPEN_MS
    assert 0 < min(t["paint"] for t in timings) < MAX_OPEN_MS
    assert 0 < min(t["ready"] for t in timings) < MAX_OPEN_MS
    tab.screenshot(html_file.with_suffix(".png"))
    tab.screenshot(html_file.with_name("fleet-picture.png"), "#topology")
    assert tab.problems() == []
    assert tab.requests() == {html_file.as_uri()}
    n = len(report["findings"])
    assert tab.js("document.getElementById('f-count').textContent") == f"{n} of {n}"
    assert tab.js("document.querySelectorAll('tr.finding').length") == 50  # one page
    assert tab.js("document.querySelectorAll('#lb-table tr.lb-row').length") == 20


def test_fleet_filters_search_and_pages_cover_every_finding(browser, fleet_page):
    html_file, report = fleet_page
    tab = Tab(browser)
    tab.open(html_file)
    last = report["findings"][-1]
    blocked = sum(1 for f in report["findings"] if f["remediation"]["blockers"])
    fixable = sum(1 for f in report["findings"] if f["remediation"]["feasible"] is True)
    info = sum(1 for f in report["findings"] if f["severity"] == "info")
    state = tab.js(f"""(() => {{
        const count = () => document.getElementById('f-count').textContent.split(' ')[0];
        const text = document.getElementById('f-text');
        text.value = {json.dumps(last["id"])}; text.dispatchEvent(new Event('input'));
        const found = Array.from(document.querySelectorAll('tr.finding')).map(r => r.id);
        text.value = ''; text.dispatchEvent(new Event('input'));
        const fix = document.getElementById('f-fix');
        fix.value = 'blocked'; fix.dispatchEvent(new Event('change'));
        const blocked = count();
        fix.value = 'yes'; fix.dispatchEvent(new Event('change'));
        const fixable = count();
        fix.value = ''; fix.dispatchEvent(new Event('change'));
        ['high', 'medium'].forEach(s => {{
            const b = document.querySelector(`input[name=sev][value=${{s}}]`);
            b.checked = false; b.dispatchEvent(new Event('change'));
        }});
        const info = count();
        document.querySelector('#findings-pager button.next').click();
        const page = document.querySelector('#findings-pager .page').textContent;
        return {{found, blocked, fixable, info, page}};
    }})()""")
    assert state["found"] == [f"row-{last['id']}"]
    assert state["blocked"] == str(blocked)
    assert state["fixable"] == str(fixable)
    assert state["info"] == str(info)
    assert state["page"] == f"page 2 of {-(-info // 50)}"
    # Opening another load balancer draws its picture (its chunk decompressed on demand).
    tab.js("document.querySelectorAll('#lb-table tr.lb-row')[19].click()")
    key = tab.js("document.querySelectorAll('#lb-table tr.lb-row')[19].dataset.lb")
    tab.wait(f"document.documentElement.dataset.picture === {json.dumps(key)}")
    assert tab.js("document.querySelectorAll('#topology g.loop').length") > 0
    assert tab.problems() == []
