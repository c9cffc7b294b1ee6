"""modjax.io is a store: it imports nothing from the layers whose objects it saves."""

from __future__ import annotations

import ast
from pathlib import Path

IO_DIR = Path(__file__).resolve().parents[2] / "modjax" / "io"
UPPER_LAYERS = ("modjax.graph", "modjax.train", "modjax.data", "modjax.observe",
                "modjax.bridge", "modjax.viz", "modjax.flow", "modjax.notebook")


def test_io_imports_nothing_above_it():
    upward = []
    for f in sorted(IO_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            upward += [f"{f.name}: {n}" for n in names
                       if any(n == u or n.startswith(u + ".") for u in UPPER_LAYERS)]
    assert upward == []
