"""The HTML report in headless Debian Chromium, driven over the DevTools protocol (pipe):
it renders, the seed's picture is the one it always was with hs-vm1's loops in red, the filters
work, there are no console errors, exceptions or network requests; and the 10,000-VM report is
at most 5 MB and opens (load event, first paint) in under 2 s. Screenshots go to the test's
temporary directory (printed), never into the repository."""

from __future__ import annotations

import json
import os

import pytest

from bench.estate import generate
from shared.core import snapshot as snapshots
from shared.core.report import build_report
from shared.core.report import html as report_html
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from tests.support.chromium import CHROMIUM, DevTools, Tab, page_timings
from tests.support.paths import ROOT

MAX_BYTES = 5 * 1024 * 1024
MAX_OPEN_MS = 2000
RED = "rgb(208, 2, 27)"

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="chromium not installed (apt-get install -y chromium)"),
]


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
    assert "Membership: 10.0.1.10 in pool-patient-index" in state["detail"]
    assert "Fix: new NIC hs-vm1-hairpin-nic" in state["detail"]
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
        timings.append(page_timings(tab))
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
