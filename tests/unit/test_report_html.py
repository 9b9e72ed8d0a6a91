"""The HTML report's structure (pure): SVG picture with hs-vm1's loops in red, findings table
with filters, self-contained, and escaping of hostile resource names."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from shared.core.report import build_report
from shared.core.report import html as report_html
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from tests.support.paths import ROOT
from tests.support.topology_builder import EstateBuilder

SEED = ROOT / "emulator" / "scenarios" / "default.json"
WHEN = "2026-11-26T05:00:00Z"
RED = "#d0021b"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <script> elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)

    def find(self, tag: str, **attrs) -> list[dict]:
        def match(a: dict) -> bool:
            return all(re.search(v, a.get(k.rstrip("_").replace("_", "-")) or "")
                       for k, v in attrs.items())
        return [a for t, a in self.tags if t == tag and match(a)]


def render(snapshot: dict, with_topology: bool = True) -> tuple[str, dict]:
    topology = topology_from_snapshot(snapshot)
    report = build_report(evaluate(topology), WHEN, scope={"source": "snapshot"})
    return report_html.render(report, topology if with_topology else None), report


@pytest.fixture(scope="module")
def seed() -> tuple[str, dict]:
    return render(json.loads(SEED.read_text()))


def test_picture_shows_vms_nics_frontends_pools(seed):
    page, _ = seed
    doc = Elements(page)
    assert len(doc.find("svg", id="^topology$")) == 1
    assert {a["data-vm"] for a in doc.find("g", class_=r"^vm\b")} == {"hs-vm1", "hs-vm2"}
    assert len(doc.find("rect", class_="^nic$")) == 2
    assert len(doc.find("g", class_="^pool$")) == 2
    assert len(doc.find("g", class_="^fe$")) == 2
    for text in ("hs-vm1-nic 10.0.1.10", "10.0.1.100", "10.0.1.101", "fe-patient-index",
                 "load balancer ilb-healthshare", "TCP 1972"):
        assert text in page


def test_hs_vm1_loops_are_red_with_their_likelihood(seed):
    page, report = seed
    doc = Elements(page)
    loops = [a for a in doc.find("g", class_=r"^loop (high|medium|info)$")]
    assert len(loops) == len(report["findings"]) == 4
    hs_vm1 = [a for a in loops if a["data-vm"] == "hs-vm1"]
    assert [a["class"] for a in hs_vm1] == ["loop high", "loop high"]
    ids = {f["id"] for f in report["findings"] if f["vm_name"] == "hs-vm1"}
    assert {a["data-finding"] for a in hs_vm1} == ids
    # Each loop goes out to the VIP and back, both ends with the red arrowhead.
    assert len(doc.find("path", class_="^(out|back)$", marker_end="arrow-red")) == 8
    assert re.search(r'<marker id="arrow-red".*?fill="' + RED, page)
    css = page[page.index("<style>"):page.index("</style>")]
    assert f"--red:{RED}" in css and re.search(r"\.loop path\{[^}]*stroke:var\(--red\)", css)
    assert "\u21ba hs-vm1 \u00b7 100% \u00b7 high" in page
    assert page.count("\u21ba hs-vm2 \u00b7 0% \u00b7 medium") == 2


def test_findings_table_has_filters(seed):
    page, report = seed
    doc = Elements(page)
    rows = doc.find("tr", class_="^finding ")
    assert [r["data-finding"] for r in rows] == [f["id"] for f in report["findings"]]
    assert {r["data-severity"] for r in rows} == {"high", "medium"}
    assert [a["value"] for a in doc.find("input", name="^sev$")] == ["high", "medium", "info"]
    assert [a["value"] for a in doc.find("option")] == ["", "hs-vm1", "hs-vm2"]
    assert doc.find("input", id="^f-text$", type="^search$")
    assert "it is the only healthy member" in page  # the reason, in full


def test_self_contained(seed):
    page, _ = seed
    doc = Elements(page)
    csp = doc.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]
    for tag, attrs in doc.tags:
        assert "src" not in attrs, tag
        assert not (attrs.get("href") or "").strip(), tag
    assert [t for t, _ in doc.tags if t in ("link", "img", "iframe", "object")] == []
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]  # xmlns


def test_renders_from_the_report_alone(seed):
    _, report = seed
    page = report_html.render(report)
    doc = Elements(page)
    assert len(doc.find("g", class_=r"^loop high$", data_vm="^hs-vm1$")) == 2
    assert "hs-vm1-nic 10.0.1.10" in page


HOSTILE = '<script>alert("x")</script>'
HOSTILE_ATTR = '"><img src=x onerror=alert(1)>'


def test_hostile_names_are_escaped():
    text = SEED.read_text()
    text = text.replace("hs-vm1", "vm1" + HOSTILE.replace('"', '\\"'))
    text = text.replace("ilb-healthshare", "lb" + HOSTILE_ATTR.replace('"', '\\"'))
    text = text.replace("fe-patient-index", "fe</svg><b>")
    snap = json.loads(text)
    vm = next(r for r in snap["resources"] if r["type"].endswith("virtualMachines"))
    vm["tags"] = {"hairpin-calls": "10.0.1.100:1972"}
    page, report = render(snap)
    assert any(HOSTILE in f["vm_name"] for f in report["findings"])
    doc = Elements(page)
    assert len(doc.find("script")) == 1  # ours only
    assert "alert" not in "".join(doc.scripts)
    assert doc.find("img") == []
    for _, attrs in doc.tags:
        assert not [k for k in attrs if k.startswith("on")]
    assert page.count("</svg>") == 1 and "fe&lt;/svg&gt;&lt;b&gt;" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    # The hostile VM is still a filter option, by its (escaped) name.
    assert any(HOSTILE in (o.get("value") or "") for o in doc.find("option"))


def test_empty_estate_and_big_estate():
    empty = EstateBuilder()
    page, _ = render(empty.snapshot())
    assert "No findings" in page and "No VM is a backend" in page

    big = EstateBuilder()
    big.vnet(prefix="10.0.0.0/16", subnets={"default": "10.0.0.0/16"})
    big.lb("ilb1", {"fe1": "10.0.1.100", "fe2": "10.0.1.101"})
    big.rule("ilb1", "r1", "fe1", "pool1", 1972)
    big.rule("ilb1", "r2", "fe2", "pool1", 1973)
    n = report_html.MAX_PICTURE_VMS + 15
    for i in range(n):
        big.vm(f"vm{i:03d}", f"10.0.{2 + i // 250}.{1 + i % 250}")
        big.member("ilb1", "pool1", f"vm{i:03d}")
    page, report = render(big.snapshot())
    doc = Elements(page)
    assert len(doc.find("tr", class_="^finding ")) == len(report["findings"]) == 2 * n
    assert len(doc.find("g", class_=r"^vm\b")) == report_html.MAX_PICTURE_VMS
    assert "15 more are only in the table" in page
