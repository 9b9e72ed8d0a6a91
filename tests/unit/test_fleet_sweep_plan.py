"""Pure: how a fleet sweep splits its scope into work items, and adds their results up."""

from shared.core.fleet_sweep import SweepItem, capped, merge_summaries, plan_items

A, B, C, D = (f"0000000{n}-0000-0000-0000-000000000000" for n in range(4))


def test_arm_one_item_per_subscription_in_order():
    assert plan_items([C, A.upper(), B]) == [(A,), (B,), (C,)]


def test_resource_graph_packs_small_subscriptions_and_skips_empty_ones():
    counts = {A: 300, B: 150, C: 0, D: 900}
    assert plan_items([A, B, C, D], counts, max_vms=500) == [(A, B), (D,)]
    assert plan_items([], counts, max_vms=400) == [(A,), (B,), (D,)]  # none given: all counted
    assert plan_items([A, B], counts, max_vms=1) == [(A,), (B,)]


def test_item_message_round_trip_and_continuation():
    item = SweepItem("s1", "00003", (A, B), resource_graph=True)
    back = SweepItem.from_message(item.as_message())
    assert back == item and back.continued().run == 2
    for bad in ({"kind": "remediation-work"}, {**item.as_message(), "subscriptions": A}):
        try:
            SweepItem.from_message(bad)
        except (ValueError, TypeError):
            continue
        raise AssertionError(f"accepted {bad}")


def test_merge_sums_counts_and_is_incomplete_when_one_part_is():
    parts = [{"vms": 2, "drift": {"new_finding": 2}, "actions": {"apply:applied": 2},
              "pending": [{"vm_id": "v1"}], "complete": True},
             {"vms": 3, "drift": {"new_finding": 1, "guest_routes": 1},
              "errors": [{"error": "x"}], "complete": False, "stopped_reason": "deadline"}]
    total = merge_summaries("s1", "t0", parts)
    assert (total.vms, total.drift, total.actions) == (
        5, {"new_finding": 3, "guest_routes": 1}, {"apply:applied": 2})
    assert len(total.pending) == 1 and len(total.errors) == 1
    assert total.complete is False and total.stopped_reason == "deadline"
    assert merge_summaries("s1", "t0", parts[:1]).complete is True


def test_capped_keeps_counts_and_says_how_much_was_cut():
    doc = capped({"vms": 500, "pending": list(range(250))}, cap=200)
    assert len(doc["pending"]) == 200 and doc["pending_cut"] == 50 and doc["vms"] == 500
