"""Helpers of the fault tests: tamper with artifacts the way an outside editor would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modjax.io.atomic import MANIFEST_FILE, POINTER_FILE
from modjax.io.checkpoints import file_digest


def generation(path: Path) -> Path:
    """The current generation directory of an artifact."""
    return path / json.loads((path / POINTER_FILE).read_text())["current"]


def manifest(path: Path) -> dict[str, Any]:
    return json.loads((generation(path) / MANIFEST_FILE).read_text())


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    (generation(path) / MANIFEST_FILE).write_text(json.dumps(data))


def resign(path: Path) -> None:
    """Recompute every file's size and digest in the manifest, as a forger would after
    editing a file (so that only the content checks stand between it and the loader)."""
    m = manifest(path)
    gen = generation(path)
    for rel in m["files"]:
        m["files"][rel] = (gen / rel).stat().st_size
        if "digests" in m:
            m["digests"][rel] = file_digest(gen / rel)
    write_manifest(path, m)


def flip_byte(f: Path, offset: int) -> None:
    data = bytearray(f.read_bytes())
    data[offset] ^= 0xFF
    f.write_bytes(bytes(data))


def largest_file(directory: Path) -> Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
