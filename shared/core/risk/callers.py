"""Pure: which VIP:ports a VM's services are declared to call (settings or the VM's tag)."""

from __future__ import annotations

from shared.core.call_targets import CallTarget, parse_call_targets
from shared.core.topology import Vm
from shared.settings import Settings

__all__ = ["DeclaredCallers", "Declared"]

# ((source "tag" | "settings", target), ...), (errors reading the tag, ...)
Declared = tuple[tuple[tuple[str, CallTarget], ...], tuple[str, ...]]


class DeclaredCallers:
    """Declared targets per VM, cached (estates repeat the same few tag values)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._by_vm: dict[str, Declared] = {}
        self._parsed_tags: dict[str, tuple[tuple[CallTarget, ...], str | None]] = {}

    def of(self, vm: Vm) -> Declared:
        cached = self._by_vm.get(vm.key)
        if cached is not None:
            return cached
        targets: list[tuple[str, CallTarget]] = []
        errors: list[str] = []
        tag_value = vm.tag(self.s.declared_callers_tag)
        if tag_value is not None:
            parsed, error = self._tag_targets(tag_value)
            targets += [("tag", t) for t in parsed]
            if error is not None:
                errors.append(f"tag {self.s.declared_callers_tag} could not be read: {error}")
        if self.s.declared_callers:  # usually empty: skip normalising every VM's ID
            targets += [("settings", t) for t in self.s.callers_declared_for(vm.id, vm.name)]
        result = (tuple(targets), tuple(errors))
        self._by_vm[vm.key] = result
        return result

    def _tag_targets(self, tag_value: str) -> tuple[tuple[CallTarget, ...], str | None]:
        cached = self._parsed_tags.get(tag_value)
        if cached is None:
            try:
                cached = (parse_call_targets(tag_value), None)
            except ValueError as exc:
                cached = ((), str(exc))
            self._parsed_tags[tag_value] = cached
        return cached
