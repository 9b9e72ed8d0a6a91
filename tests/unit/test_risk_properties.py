"""Property tests: random estates never crash the evaluator, results do not depend on input
order, and an unrelated VM never changes existing findings."""

import copy
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.report import build_report
from shared.core.risk import evaluate
from shared.core.topology import build_topology, topology_from_snapshot
from shared.settings import Settings
from tests.support.topology_builder import EstateBuilder

PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def estates(draw):
    """An EstateBuilder with random VMs, ILBs, rules, memberships, health and tags."""
    b = EstateBuilder()
    b.vnet("vnet1", subnets={"default": "10.0.1.0/24", "second": "10.0.2.0/28"})
    b.sku(
        "Standard_B1s",
        max_nics=draw(st.sampled_from([1, 2, None])),
        accelerated=draw(st.sampled_from([True, False, None])),
    )
    n_vms = draw(st.integers(0, 7))
    hosts = draw(st.lists(st.integers(4, 60), min_size=n_vms, max_size=n_vms, unique=True))
    vms = []
    for i, host in enumerate(hosts):
        name = f"vm{i}"
        subnet = draw(st.sampled_from(["default", "default", "second"]))
        ip = f"10.0.1.{host}" if subnet == "default" else f"10.0.2.{4 + host % 10}"
        tags = {}
        if draw(st.booleans()):
            tags["hairpin-calls"] = draw(
                st.sampled_from(
                    [
                        "10.0.1.100:1972",
                        "10.0.1.101",
                        "10.0.1.100:80,10.0.1.102:443",
                        "garbage::",
                        "",
                    ]
                )
            )
        try:
            b.vm(
                name,
                ip,
                subnet=subnet,
                size=draw(
                    st.sampled_from(["Standard_D4s_v3", "Standard_B1s", "Unknown_Size", None])
                ),
                os_type=draw(st.sampled_from(["Windows", "Linux", None])),
                power=draw(st.sampled_from(["running", "running", "deallocated", "stopped", None])),
                tags=tags,
            )
        except KeyError:
            continue
        vms.append(name)
    for lb_i in range(draw(st.integers(0, 3))):
        lb = f"ilb{lb_i}"
        n_fe = draw(st.integers(1, 3))
        fes = {f"fe{j}": f"10.0.1.{100 + lb_i * 3 + j}" for j in range(n_fe)}
        public = {"pub": "pip"} if draw(st.booleans()) else {}
        b.lb(lb, fes, public=public, sku=draw(st.sampled_from(["Standard", "Basic"])))
        for r_i in range(draw(st.integers(0, 4))):
            fe = draw(st.sampled_from(sorted(fes) + sorted(public)))
            pool = f"pool{draw(st.integers(0, 1))}"
            ha = draw(st.integers(0, 5)) == 0
            rule = f"r{r_i}"
            b.rule(
                lb,
                rule,
                fe,
                pool,
                0 if ha else draw(st.sampled_from([1972, 443, 80])),
                0 if ha else draw(st.sampled_from([None, 1973])),
                protocol="All" if ha else draw(st.sampled_from(["Tcp", "Udp"])),
                floating=draw(st.booleans()),
            )
            members = draw(st.lists(st.sampled_from(vms), unique=True)) if vms else []
            for vm in members:
                mode = draw(st.sampled_from(["both", "nic", "pool", "ip"]))
                if mode == "ip":
                    ip = b.nics[f"{vm}-nic"]["properties"]["ipConfigurations"][0]["properties"][
                        "privateIPAddress"
                    ]
                    b.ip_member(lb, pool, ip)
                else:
                    b.member(lb, pool, vm, nic_side=mode != "pool", pool_side=mode != "nic")
            if members and draw(st.booleans()):
                b.health(
                    lb,
                    rule,
                    {vm: draw(st.sampled_from(["Up", "Down", "Unknown"])) for vm in members},
                )
    return b


def _delete_random_keys(doc, rnd, rate):
    if isinstance(doc, dict):
        for key in list(doc):
            if rnd.random() < rate:
                del doc[key]
            else:
                _delete_random_keys(doc[key], rnd, rate)
    elif isinstance(doc, list):
        for item in doc:
            _delete_random_keys(item, rnd, rate)


def render(evaluation):
    return json.dumps(build_report(evaluation, "t")["findings"], sort_keys=True), json.dumps(
        [n.as_dict() for n in evaluation.not_affected], sort_keys=True
    )


@PROFILE
@given(estates(), st.randoms(use_true_random=False), st.floats(0.0, 0.3))
def test_random_and_damaged_estates_never_crash(builder, rnd, rate):
    snap = builder.snapshot()
    _delete_random_keys(snap, rnd, rate)
    evaluation = evaluate(
        build_topology(
            snap.get("resources", []), snap.get("skus", []), snap.get("health", [])
        ),
        Settings(allow_broad_ha_ports_rule=rnd.random() < 0.5),
    )
    for f in evaluation.findings:
        assert f.severity in ("high", "medium", "info")
        assert 0.0 <= f.likelihood <= 1.0
        assert f.reason and f.likelihood_text
        assert f.remediation.feasible in (True, False, "unknown")
    build_report(evaluation, "t")


@PROFILE
@given(estates(), st.randoms(use_true_random=False))
def test_findings_are_deterministic_and_independent_of_order(builder, rnd):
    snap = builder.snapshot()
    first = render(evaluate(topology_from_snapshot(snap)))
    shuffled = copy.deepcopy(snap)
    for key in ("resources", "skus", "health"):
        rnd.shuffle(shuffled[key])
    assert render(evaluate(topology_from_snapshot(shuffled))) == first
    assert render(evaluate(topology_from_snapshot(snap))) == first


@PROFILE
@given(estates(), st.booleans())
def test_an_unrelated_vm_changes_no_existing_finding(builder, in_same_vnet):
    before = render(evaluate(builder.topology()))
    if in_same_vnet:
        # same VNet, other subnet, in no pool
        builder.vnet(
            "vnet1",
            subnets={"default": "10.0.1.0/24", "second": "10.0.2.0/28", "third": "10.0.3.0/24"},
        )
        builder.vm("bystander", "10.0.3.10", subnet="third")
    else:
        builder.vnet("vnet-other", subnets={"default": "10.0.1.0/24"})
        builder.vm("bystander", "10.0.1.10", vnet="vnet-other")  # even the same address
    after = render(evaluate(builder.topology()))
    assert after == before


def test_shuffle_helper_really_reorders():
    rnd = random.Random(1)
    items = list(range(20))
    rnd.shuffle(items)
    assert items != sorted(items)
