"""Pure: the guest script templates (``templates/*.sh``, ``templates/*.ps1``), read as package
data like the code itself, and filled from validated values only.

A template is a script fragment; an ``@@NAME@@`` line marks where rendered text goes (the
per-VM steps, the installer's payload, the probes). Every marker is filled exactly once and no
marker survives, so a template edit that loses or adds one fails at render time.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["template", "fill"]


@cache
def template(name: str) -> str:
    """The text of ``templates/<name>`` (e.g. ``apply.sh``)."""
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def fill(name: str, **parts: str) -> str:
    """Template ``name`` with each ``@@KEY@@`` replaced by ``parts[KEY]``."""
    text = template(name)
    for key, value in parts.items():
        marker = f"@@{key}@@"
        if text.count(marker) != 1 or "@@" in value:
            raise ValueError(f"template {name}: marker {marker} must occur exactly once")
        text = text.replace(marker, value)
    if "@@" in text:
        raise ValueError(f"template {name}: unfilled marker")
    return text
