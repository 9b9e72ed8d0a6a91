"""Pure: the facts a topology build could not establish (resource, field, what was wrong); the
findings that need one report it as unknown instead of guessing."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.arm_ids import normalize


@dataclass(frozen=True, slots=True)
class Unknown:
    """A fact the documents did not give us (so conclusions that need it are 'unknown')."""

    resource_id: str
    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"resource_id": self.resource_id, "field": self.field, "detail": self.detail}


class Unknowns:
    """The facts one build could not establish, in the order they were found."""

    def __init__(self) -> None:
        self.items: list[Unknown] = []

    def add(self, resource_id: str, field_name: str, detail: str) -> None:
        self.items.append(Unknown(resource_id, field_name, detail))

    def ordered(self) -> tuple[Unknown, ...]:
        return tuple(sorted(set(self.items),
                            key=lambda u: (u.resource_id.lower(), u.field, u.detail)))

    def by_resource(self) -> dict[str, tuple[Unknown, ...]]:
        grouped: dict[str, list[Unknown]] = {}
        for u in self.items:
            grouped.setdefault(normalize(u.resource_id), []).append(u)
        return {k: tuple(sorted(set(v), key=lambda u: (u.field, u.detail)))
                for k, v in grouped.items()}
