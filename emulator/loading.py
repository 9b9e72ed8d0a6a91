"""Scenario documents into the emulator's model: resource groups, resources (child IDs derived
from names, as ARM does; a VM's scenario instance view becomes its power state and instance
view extras), rule health responses and mirrors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from emulator.resources import types
from emulator.state import EmulatorHost, lower, new_etag

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def load_scenario(scenario) -> dict:
    if scenario is None:
        return {"resources": []}
    if isinstance(scenario, (str, Path)):
        return json.loads(Path(scenario).read_text())
    return copy.deepcopy(scenario)


def subscription_of(scenario: dict) -> str:
    """The subscription of the scenario's first resource ID (or a fixed default)."""
    for doc in scenario.get("resources") or []:
        parts = doc.get("id", "").strip("/").split("/")
        if len(parts) > 1 and parts[0].lower() == "subscriptions":
            return parts[1]
    return DEFAULT_SUBSCRIPTION


def populate(emu: EmulatorHost, scenario: dict, subscription_id: str) -> None:
    settings = scenario.get("emulator") or {}
    for rg in settings.get("resourceGroups", []):
        emu.store.add_resource_group(f"/subscriptions/{subscription_id}/resourceGroups/{rg}")
    for raw in scenario.get("resources") or []:
        doc = copy.deepcopy(raw)
        doc.setdefault("etag", new_etag())
        for coll in types.CHILDREN.get(doc.get("type", "").lower(), []):
            for child in doc.get("properties", {}).get(coll) or []:
                child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
        if doc.get("type", "").lower() == types.VM.lower():
            iv = doc.get("properties", {}).pop("instanceView", None) or {}
            state = "running"
            for st in iv.get("statuses", []):
                if st.get("code", "").lower().startswith("powerstate/"):
                    state = st["code"].split("/", 1)[1].lower()
            emu.power[lower(doc["id"])] = state
            emu.instance_extra[lower(doc["id"])] = {k: v for k, v in iv.items() if k != "statuses"}
        emu.store.put(doc)
    for h in scenario.get("health") or []:
        emu.health[lower(h["ruleId"])] = copy.deepcopy(h.get("response") or {})
    emu.mirrors.load(settings.get("mirrors") or [])
