"""Nothing in modjax unpickles: no pickle-based loaders anywhere in the package, and a
saved artifact holds only JSON, Parquet and Orbax files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import modjax
from modjax.io.checkpoints import save_pytree

PACKAGE = Path(modjax.__file__).resolve().parent
_LOADERS = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib)\b|"
                      r"pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\(|np\.load\(",
                      re.M)


def test_no_pickle_based_loader_in_the_package():
    hits = [f"{p.relative_to(PACKAGE)}:{m.group(0).strip()}"
            for p in sorted(PACKAGE.rglob("*.py")) for m in _LOADERS.finditer(p.read_text())]
    assert hits == []


def test_artifact_files_are_json_parquet_or_orbax(tmp_path):
    p = save_pytree(tmp_path / "t", {"w": np.arange(6.0).reshape(2, 3), "n": 3})
    names = [f.name for f in p.rglob("*") if f.is_file()]
    assert "MODJAX.json" in names and "manifest.json" in names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".npy", ".npz"))]
