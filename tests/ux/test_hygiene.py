"""Package hygiene: py.typed shipped, chex only in tests, docs speak of the project,
deterministic sample uuids."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np

from modjax import FeatureSet

ROOT = Path(__file__).resolve().parents[2]


def test_py_typed_is_shipped_and_chex_is_a_test_dependency():
    assert (ROOT / "modjax" / "py.typed").exists()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in cfg["tool"]["setuptools"]["package-data"]["modjax"]
    deps = cfg["project"]["dependencies"]
    assert not any(d.startswith("chex") for d in deps)
    assert any(d.startswith("chex") for d in cfg["project"]["optional-dependencies"]["test"])
    used = [p for p in (ROOT / "modjax").rglob("*.py") if re.search(r"^\s*(import|from) chex",
                                                                     p.read_text(), re.M)]
    assert used == []


def test_docs_and_code_speak_of_the_project_alone():
    bad = re.compile(r"seed 0\d|\.\./shared|\bissue \d|the issue's")
    hits = [f"{p.relative_to(ROOT)}:{i + 1}: {line.strip()}"
            for p in [*(ROOT / "docs").rglob("*.md"), *(ROOT / "modjax").rglob("*.py")]
            for i, line in enumerate(p.read_text().splitlines()) if bad.search(line)]
    assert hits == []


def test_deterministic_sample_uuids():
    data = {"x": np.arange(5.0), "y": np.zeros(5)}
    a = FeatureSet.from_dict("ua", data, "x", "y", uuid_seed=3, register=False)
    b = FeatureSet.from_dict("ub", data, "x", "y", uuid_seed=3, register=False)
    c = FeatureSet.from_dict("uc", data, "x", "y", uuid_seed=4, register=False)
    assert list(a.sample_uuids) == list(b.sample_uuids)
    assert list(a.sample_uuids) != list(c.sample_uuids)
    assert len(set(a.sample_uuids)) == 5 and all(u[12] == "4" for u in a.sample_uuids)
    d = FeatureSet.from_dict("ud", data, "x", "y", register=False)
    assert list(d.sample_uuids) != list(a.sample_uuids)
