"""Snapshot and scenario files on disk: the I/O around the pure `shared.core.snapshot`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.core.snapshot import SnapshotError, dumps, loads

__all__ = ["load_file", "dump_file"]


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return loads(data, str(path))


def dump_file(doc: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(dumps(doc), encoding="utf-8")
