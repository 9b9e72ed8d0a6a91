"""The HTML report in headless Debian Chromium, driven over the DevTools protocol (pipe):
it renders, the picture shows the seed scenario's loops in red, the filters work, and there
are no console errors, exceptions or network requests."""

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

from shared.core.report import build_report
from shared.core.report import html as report_html
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from tests.support.paths import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,1600"]
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


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    snap = json.loads((ROOT / "emulator" / "scenarios" / "default.json").read_text())
    topology = topology_from_snapshot(snap)
    report = build_report(evaluate(topology), "2026-11-26T05:00:00Z", scope={"source": "seed"})
    html_file = tmp / "report.html"
    html_file.write_text(report_html.render(report, topology), encoding="utf-8")

    browser = DevTools(tmp / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Page.navigate", {"url": html_file.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")

        def js(expression: str):
            result = browser.call("Runtime.evaluate", {"expression": expression,
                                                       "returnByValue": True}, session=session)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        (tmp / "report.png").write_bytes(base64.b64decode(shot["data"]))
        yield js, browser, html_file, report
    finally:
        browser.close()


def test_renders_after_scripts_ran(page):
    js, _, _, report = page
    assert js("document.documentElement.dataset.ready") == "true"
    box = js("(() => { const b = document.querySelector('#topology').getBoundingClientRect();"
             " return [b.width, b.height]; })()")
    assert box[0] > 800 and box[1] > 150
    assert js("document.querySelectorAll('tr.finding').length") == len(report["findings"])
    assert js("document.getElementById('f-count').textContent") == "4 of 4"


def test_picture_shows_hs_vm1_loops_in_red(page):
    js, *_ = page
    loops = js("""Array.from(document.querySelectorAll('g.loop.high[data-vm="hs-vm1"]'))
        .filter(g => !g.classList.contains('label'))
        .map(g => ({paths: Array.from(g.querySelectorAll('path'))
                      .map(p => [getComputedStyle(p).stroke, p.getBBox().width]),
                    visible: getComputedStyle(g).opacity}))""")
    assert len(loops) == 2
    for loop in loops:
        assert [stroke for stroke, _ in loop["paths"]] == [RED, RED]
        assert all(width > 300 for _, width in loop["paths"])  # drawn from NIC to VIP and back
        assert loop["visible"] == "1"
    labels = js("""Array.from(document.querySelectorAll('g.loop.label[data-vm="hs-vm1"] text'))
        .map(t => [t.textContent, getComputedStyle(t).fill, t.getBBox().width])""")
    assert [text for text, _, _ in labels] == ["\u21ba hs-vm1 \u00b7 100% \u00b7 high"] * 2
    assert all(fill == RED and width > 50 for _, fill, width in labels)


def test_filters_hide_rows_and_dim_loops(page):
    js, *_ = page
    state = js("""(() => {
        const medium = document.querySelector('input[name=sev][value=medium]');
        medium.checked = false; medium.dispatchEvent(new Event('change'));
        const shown = Array.from(document.querySelectorAll('tr.finding'))
            .filter(r => !r.hidden).map(r => r.dataset.vm);
        const dim = Array.from(document.querySelectorAll('g.loop.dim'))
            .map(g => g.dataset.vm);
        const count = document.getElementById('f-count').textContent;
        medium.checked = true; medium.dispatchEvent(new Event('change'));
        const select = document.getElementById('f-vm');
        select.value = 'hs-vm2'; select.dispatchEvent(new Event('change'));
        const byVm = Array.from(document.querySelectorAll('tr.finding'))
            .filter(r => !r.hidden).map(r => r.dataset.vm);
        select.value = ''; select.dispatchEvent(new Event('change'));
        const text = document.getElementById('f-text');
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


def test_no_console_errors_and_no_network(page):
    js, browser, html_file, _ = page
    js("document.title")  # let queued events arrive
    events = list(browser.all_events)
    problems = [e for e in events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled"
                    and e["params"].get("type") in ("error", "assert", "warning"))
                or (e.get("method") == "Log.entryAdded"
                    and e["params"]["entry"].get("level") in ("error", "warning"))]
    assert problems == []
    requests = {e["params"]["request"]["url"] for e in events
                if e.get("method") == "Network.requestWillBeSent"}
    assert requests == {html_file.as_uri()}
