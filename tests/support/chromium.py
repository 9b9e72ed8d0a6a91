"""Headless Debian Chromium driven over the DevTools protocol (--remote-debugging-pipe): the
report page tests and bench/bench_report_page.py open pages with it."""

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

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,1600"]
# The page's own timings: navigation (load event), paint entries, the page's ready mark.
TIMINGS_JS = """(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const paint = {};
    performance.getEntriesByType('paint').forEach(p => { paint[p.name] = p.startTime; });
    const ready = performance.getEntriesByName('hairpin-ready')[0];
    return {load: nav.loadEventEnd, paint: paint['first-paint'],
            contentful: paint['first-contentful-paint'], ready: ready ? ready.startTime : null};
})()"""


def page_timings(tab) -> dict:
    """TIMINGS_JS once the first paint is recorded (its entry can come after the load)."""
    tab.wait("performance.getEntriesByType('paint').length > 0")
    return tab.js(TIMINGS_JS)


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


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
