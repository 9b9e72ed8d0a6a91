"""Database mirrors in a scenario (``emulator.mirrors``): for the load-balancing rules of a
mirror, only the primary member's probe is Up. A primary whose VM stops hands over to the first
running member (no fail-back); a planned failover (`fail_over_to`) makes a VM's members the
primaries, as a DBA does it."""

from __future__ import annotations

from collections.abc import Callable

from emulator.state import Store, lower, parent_id


class Mirrors:
    def __init__(self, store: Store, power_state: Callable[[str], str]) -> None:
        self.store = store
        self.power_state = power_state
        self.items: list[dict] = []  # {"rules": {lower rule id}, "members": [...], "primary"}

    def load(self, scenario_mirrors: list[dict]) -> None:
        for m in scenario_mirrors:
            self.items.append(
                {
                    "rules": {lower(r) for r in m.get("rules", [])},
                    "members": list(m.get("members", [])),
                    "primary": m.get("primary") or (m.get("members") or [None])[0],
                }
            )

    def _vm_of(self, ipconfig_id: str) -> str | None:
        nic = self.store.raw(parent_id(ipconfig_id))
        return ((nic or {}).get("properties", {}).get("virtualMachine") or {}).get("id")

    def _running(self, ipconfig_id: str) -> bool:
        vm = self._vm_of(ipconfig_id)
        return bool(vm) and self.power_state(vm) == "running"

    def power_changed(self) -> None:
        """A primary whose VM stopped hands over to the first running member."""
        for m in self.items:
            if m["primary"] and not self._running(m["primary"]):
                for member in m["members"]:
                    if self._running(member):
                        m["primary"] = member
                        break

    def fail_over_to(self, vm_id: str) -> None:
        for m in self.items:
            for member in m["members"]:
                vm = self._vm_of(member)
                if vm and lower(vm) == lower(vm_id) and self._running(member):
                    m["primary"] = member

    def primary_for(self, rule_id: str) -> str | None:
        """The primary member (IP configuration ID) of the mirror serving this rule, if any."""
        self.power_changed()
        for m in self.items:
            if lower(rule_id) in m["rules"]:
                return m["primary"]
        return None
