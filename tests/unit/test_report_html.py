"""The HTML report's structure (pure): overview, one picture per load balancer (the seed's
unchanged, hs-vm1's loops in red), the findings as embedded data for the paged table with its
filters, self-contained, and escaping of hostile resource names."""

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
from tests.support.report_page import embedded
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


GOLDEN = ROOT / "tests" / "fixtures" / "report"


def render(snapshot: dict, with_topology: bool = True, previous=None) -> tuple[str, dict]:
    topology = topology_from_snapshot(snapshot)
    report = build_report(evaluate(topology), WHEN, scope={"source": "snapshot"})
    return (report_html.render(report, topology if with_topology else None, previous=previous),
            report)


@pytest.fixture(scope="module")
def seed() -> tuple[str, dict]:
    return render(json.loads(SEED.read_text()))


@pytest.fixture(scope="module")
def picture(seed) -> tuple[str, Elements]:
    pictures = embedded(seed[0])["pictures"]
    assert len(pictures) == 1  # the seed has one load balancer
    svg = next(iter(pictures.values()))
    return svg, Elements(svg)


@pytest.mark.parametrize("scenario", ["default", "default-linux"])
def test_seed_picture_is_unchanged(scenario):
    """The picture of the seed's load balancer is byte for byte the one the report drew before
    pictures were per load balancer (tests/fixtures/report/*-picture.svg)."""
    page, _ = render(json.loads((ROOT / "emulator" / "scenarios" / f"{scenario}.json")
                                .read_text()))
    (svg,) = embedded(page)["pictures"].values()
    assert svg + "\n" == (GOLDEN / f"{scenario}-picture.svg").read_text()


def test_picture_shows_vms_nics_frontends_pools(picture):
    svg, doc = picture
    assert len(doc.find("svg", id="^topology$")) == 1
    assert {a["data-vm"] for a in doc.find("g", class_=r"^vm\b")} == {"hs-vm1", "hs-vm2"}
    assert len(doc.find("rect", class_="^nic$")) == 2
    assert len(doc.find("g", class_="^pool$")) == 2
    assert len(doc.find("g", class_="^fe$")) == 2
    for text in ("hs-vm1-nic 10.0.1.10", "10.0.1.100", "10.0.1.101", "fe-patient-index",
                 "load balancer ilb-healthshare", "TCP 1972"):
        assert text in svg


def test_hs_vm1_loops_are_red_with_their_likelihood(seed, picture):
    page, report = seed
    svg, doc = picture
    loops = [a for a in doc.find("g", class_=r"^loop (high|medium|info)$")]
    assert len(loops) == len(report["findings"]) == 4
    hs_vm1 = [a for a in loops if a["data-vm"] == "hs-vm1"]
    assert [a["class"] for a in hs_vm1] == ["loop high", "loop high"]
    ids = {f["id"] for f in report["findings"] if f["vm_name"] == "hs-vm1"}
    assert {a["data-finding"] for a in hs_vm1} == ids
    # Each loop goes out to the VIP and back, both ends with the red arrowhead.
    assert len(doc.find("path", class_="^(out|back)$", marker_end="arrow-red")) == 8
    assert re.search(r'<marker id="arrow-red".*?fill="' + RED, svg)
    css = page[page.index("<style>"):page.index("</style>")]
    assert f"--red:{RED}" in css and re.search(r"\.loop path\{[^}]*stroke:var\(--red\)", css)
    assert "\u21ba hs-vm1 \u00b7 100% \u00b7 high" in svg
    assert svg.count("\u21ba hs-vm2 \u00b7 0% \u00b7 medium") == 2


def test_findings_are_all_in_the_data_with_details(seed):
    page, report = seed
    data = embedded(page)
    rows = data["findings"]
    assert [r["id"] for r in rows] == [f["id"] for f in report["findings"]]
    assert {r["severity"] for r in rows} == {"high", "medium"}
    first = report["findings"][0]
    assert rows[0]["reason"] == first["reason"]
    assert "it is the only healthy member" in first["reason"]
    assert rows[0]["likelihood_text"] == first["likelihood_text"]
    assert dict(rows[0]["facts"]) == {  # evidence and the fix, for the details on demand
        "Caller": "inferred; co-hosted VIPs 10.0.1.100, 10.0.1.101",
        "Membership": "10.0.1.10 in pool-patient-index (rule rule-patient-index-1972)",
        "Health": "rule-patient-index-1972: 1 of 2 up, this VM Up", "Power": "running",
        "Fix": "new NIC hs-vm1-hairpin-nic in subnet default; deallocation needed; peers "
               "taking over: hs-vm2"}
    assert data["lbs"][rows[0]["lb"]]["name"] == "ilb-healthshare"
    assert data["subs"][rows[0]["sub"]] == "00000000-0000-0000-0000-000000000001"
    assert data["rgs"][rows[0]["rg"]][0] == "rg-healthshare"
    doc = Elements(page)
    assert [a["value"] for a in doc.find("input", name="^sev$")] == ["high", "medium", "info"]
    assert doc.find("input", id="^f-text$", type="^search$")
    assert [a["value"] for a in doc.find("option")] == ["", "yes", "blocked"]
    assert doc.find("table", id="^findings$") and doc.find("nav", id="^findings-pager$")


def test_overview_counts_trend_and_fix_cost(seed):
    _, report = seed
    previous = {"generated_at": "2026-11-25T05:00:00Z",
                "findings": [report["findings"][0], {"id": "hp-resolved", "severity": "high"}]}
    page, _ = render(json.loads(SEED.read_text()), previous=previous)
    doc = Elements(page)
    assert len(doc.find("tr", class_="^scope$", data_kind="^sub$")) == 1
    assert len(doc.find("tr", class_="^scope$", data_kind="^rg$")) == 1
    assert "rg-healthshare</td><td class=\"n high\">2</td><td class=\"n medium\">2</td>" in page
    assert ("Since the previous audit (2026-11-25T05:00:00Z): <b class=\"new\">3 new</b> (1 high), "
            "<b class=\"resolved\">1 resolved</b>, 1 unchanged.") in page
    assert "No previous audit to compare with." in seed[0]
    # Both VMs share both pools: the guard takes them down one after the other.
    assert "Fixing needs <b>2</b> VMs deallocated (2 with no blocker now)" in page
    assert "at least <b>2</b> rounds" in page
    assert "<td>ilb-healthshare/pool-patient-index</td><td>2</td>" in page


def test_self_contained(seed):
    page, _ = seed
    doc = Elements(page)
    csp = doc.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]
    for tag, attrs in doc.tags:
        assert "src" not in attrs, tag
        assert not (attrs.get("href") or "").strip(), tag
    assert [t for t, _ in doc.tags if t in ("link", "img", "iframe", "object")] == []
    assert re.findall(r"https?://[^\s\"'<>]+", page) == []
    svg = next(iter(embedded(page)["pictures"].values()))
    assert re.findall(r"https?://[^\s\"'<>]+", svg) == ["http://www.w3.org/2000/svg"]  # xmlns


def test_renders_from_the_report_alone(seed):
    _, report = seed
    svg = next(iter(embedded(report_html.render(report))["pictures"].values()))
    doc = Elements(svg)
    assert len(doc.find("g", class_=r"^loop high$", data_vm="^hs-vm1$")) == 2
    assert "hs-vm1-nic 10.0.1.10" in svg


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
    scripts = doc.find("script")
    assert [s.get("type") for s in scripts] == ["application/json", None]  # data, then ours
    data_text = page[page.index('id="hairpin-data">'):]
    data_text = data_text[:data_text.index("</script>")]
    assert "<" not in data_text  # nothing in the data can close its element
    assert "alert" not in doc.scripts[-1]
    assert doc.find("img") == []
    for _, attrs in doc.tags:
        assert not [k for k in attrs if k.startswith("on")]
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # overview, escaped
    data = embedded(page)
    assert any(HOSTILE in f["vm"] for f in data["findings"])  # set as text by the script
    svg = next(iter(data["pictures"].values()))
    svg_doc = Elements(svg)
    assert svg_doc.find("img") == [] and svg_doc.find("script") == []
    assert svg.count("</svg>") == 1 and "fe&lt;/svg&gt;&lt;b&gt;" in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg


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
    data = embedded(page)
    assert len(data["findings"]) == len(report["findings"]) == 2 * n
    (lb,) = data["lbs"]
    assert (lb["name"], lb["vms"], lb["omitted"]) == ("ilb1", n, 15)
    svg = data["pictures"][lb["key"]]
    assert len(Elements(svg).find("g", class_=r"^vm\b")) == report_html.MAX_PICTURE_VMS


def test_one_picture_per_load_balancer_worst_first():
    b = EstateBuilder()
    b.vnet(prefix="10.0.0.0/16", subnets={"default": "10.0.0.0/16"})
    for k, n in (("ilb-small", 2), ("ilb-big", 4)):
        b.lb(k, {"fe": f"10.0.{9 if k == 'ilb-big' else 8}.100"})
        b.rule(k, "r", "fe", "pool", 1972)
        for i in range(n):
            b.vm(f"{k}-vm{i}", f"10.0.{1 if k == 'ilb-big' else 2}.{10 + i}")
            b.member(k, "pool", f"{k}-vm{i}")
    page, report = render(b.snapshot())
    data = embedded(page)
    assert [lb["name"] for lb in data["lbs"]] == ["ilb-big", "ilb-small"]
    for lb in data["lbs"]:
        vms = {a["data-vm"] for a in Elements(data["pictures"][lb["key"]]).find("g", class_="^vm")}
        assert vms == {f"{lb['name']}-vm{i}" for i in range(lb["vms"])}
