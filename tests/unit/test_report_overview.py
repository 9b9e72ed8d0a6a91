"""The overview's answers (pure): counts by subscription / resource group / load balancer with
blocked, top blockers, the trend against a previous report, and the fix cost in rounds."""

from __future__ import annotations

from shared.core.report.overview import build_overview, trend_between

SUB_A, SUB_B = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"


def vm_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/" \
           f"virtualMachines/{name}"


def lb_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/" \
           f"loadBalancers/{name}"


def finding(fid, severity, vm, lb, pools=(), *, blockers=(), deallocate=True) -> dict:
    return {"id": fid, "severity": severity, "vm_id": vm, "vm_name": vm.rsplit("/", 1)[-1],
            "lb_id": lb, "lb_name": lb.rsplit("/", 1)[-1],
            "evidence": {"membership": [{"pool_id": f"{lb}/backendAddressPools/{p}"}
                                        for p in pools]},
            "remediation": {"blockers": [{"code": c, "detail": ""} for c in blockers],
                            "needs_deallocation": deallocate, "feasible": not blockers}}


LB1, LB2 = lb_id(SUB_A, "rg-1", "ilb1"), lb_id(SUB_B, "rg-2", "ilb2")
FINDINGS = [
    finding("f1", "high", vm_id(SUB_A, "rg-1", "a1"), LB1, ["p"]),
    finding("f2", "high", vm_id(SUB_A, "rg-1", "a2"), LB1, ["p"], blockers=["subnet_full"]),
    finding("f3", "medium", vm_id(SUB_A, "rg-1", "a3"), LB1, ["p", "q"],
            blockers=["subnet_full", "nic_limit_reached"]),
    finding("f4", "info", vm_id(SUB_B, "rg-2", "b1"), LB2, ["r"], deallocate=False),
    finding("f5", "high", vm_id(SUB_B, "rg-2", "b2"), LB2, ["r", "s"]),
]


def test_counts_by_subscription_group_and_load_balancer_worst_first():
    o = build_overview(FINDINGS)
    assert [(g.name, dict(g.by_severity), g.blocked, len(g.vms)) for g in o.subscriptions] == [
        (SUB_A, {"high": 2, "medium": 1}, 2, 3), (SUB_B, {"info": 1, "high": 1}, 0, 2)]
    assert [g.name for g in o.resource_groups] == ["rg-1", "rg-2"]
    assert [(g.name, g.subscription, g.resource_group) for g in o.load_balancers] == [
        ("ilb1", SUB_A, "rg-1"), ("ilb2", SUB_B, "rg-2")]
    assert o.blocked == 2
    assert o.top_blockers == (("subnet_full", 2), ("nic_limit_reached", 1))


def test_fix_cost_counts_a_pools_vms_as_rounds_in_a_row():
    cost = build_overview(FINDINGS).fix_cost
    # a1, a2, a3 share pool p: one at a time, three rounds; b2 alone in r and s; b1 needs no NIC
    assert (cost.vms_to_deallocate, cost.vms_fixable_now, cost.rounds) == (4, 2, 3)
    assert [(name, n) for _, name, n in cost.pools] == [("ilb1/p", 3), ("ilb1/q", 1),
                                                        ("ilb2/r", 1), ("ilb2/s", 1)]
    assert build_overview([]).fix_cost.rounds == 0


def test_trend_by_finding_id():
    previous = {"generated_at": "2026-11-25T00:00:00Z",
                "findings": [{"id": "f1", "severity": "high"}, {"id": "gone", "severity": "high"}]}
    t = trend_between(FINDINGS, previous)
    assert (t.new, t.resolved, t.unchanged, t.new_high) == (4, 1, 1, 2)
    assert t.previous_generated_at == "2026-11-25T00:00:00Z"
    assert trend_between(FINDINGS, None) is None
