"""Subtree checkpoint loading (strict / non-strict), LoadReport and migration."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from modjax.errors import CheckpointError, LabelPathError
from modjax.io.checkpoints import open_artifact, write_artifact
from modjax.io.migrate import migrate_checkpoint
from modjax.io.pytree_store import ZERO_HASH
from modjax.io.subtree import extract_subtree, load_subtree


def _encoder(seed=0, hidden=4):
    r = np.random.default_rng(seed)
    return {"params": {"scan": {"w": jnp.asarray(r.normal(size=(3, hidden)), jnp.float32),
                                "b": jnp.zeros((hidden,), jnp.float32)},
                       "read": {"w": jnp.asarray(r.normal(size=(hidden, 2)), jnp.float32)}},
            "state": {"scan": {"n": jnp.asarray(5, jnp.int32)}, "read": {}}}


def _big(enc):
    return {"params": {"encoder": enc["params"], "head": {"w": jnp.ones((2, 1))}},
            "state": {"encoder": enc["state"], "head": {}}}


def _save(path, variables, **kw):
    return write_artifact(path, "graph_checkpoint", items={"variables": variables},
                          hash_item="variables", **kw)


def test_subgraph_checkpoint_loads_into_larger_graph(tmp_path):
    trained = _encoder(seed=1)
    _save(tmp_path / "enc", trained)
    big = _big(_encoder(seed=2))
    new, report = load_subtree(big, "encoder", tmp_path / "enc")
    chex.assert_trees_all_equal(extract_subtree(new, "encoder"), trained)
    chex.assert_trees_all_equal(new["params"]["head"], big["params"]["head"])
    assert report.is_complete and report.hash_matched
    assert set(report.loaded) == {"params.scan.w", "params.scan.b", "params.read.w", "state.scan.n"}
    # The input tree is untouched (a failed or successful load never mutates it).
    assert not np.array_equal(big["params"]["encoder"]["scan"]["w"], trained["params"]["scan"]["w"])


def test_subtree_saved_from_big_graph_loads_into_standalone(tmp_path):
    big = _big(_encoder(seed=3))
    _save(tmp_path / "part", extract_subtree(big, "encoder"))
    new, report = load_subtree(_encoder(seed=4), None, tmp_path / "part")
    chex.assert_trees_all_equal(new, extract_subtree(big, "encoder"))
    assert report.is_complete


def test_strict_mismatch_is_an_error_naming_leaves(tmp_path):
    _save(tmp_path / "enc", _encoder(hidden=8))
    big = _big(_encoder(hidden=4))
    with pytest.raises(CheckpointError, match=r"does not match graph subtree 'encoder'.*"
                       r"params\.read\.w \(checkpoint float32\(8, 2\) vs target float32\(4, 2\)\)"):
        load_subtree(big, "encoder", tmp_path / "enc")


def test_non_strict_loads_matching_part_and_reports(tmp_path):
    other = _encoder(seed=7, hidden=8)
    other["params"]["extra"] = {"w": jnp.ones(3)}
    _save(tmp_path / "enc", other)
    target = _encoder(seed=8, hidden=4)
    big = _big(target)
    new, report = load_subtree(big, "encoder", tmp_path / "enc", strict=False)
    assert report.loaded == ("state.scan.n",)
    assert set(report.mismatched) == {"params.scan.w", "params.scan.b", "params.read.w"}
    assert report.unexpected == ("params.extra.w",)
    assert not report.hash_matched and not report.is_complete
    assert "float32(8,) vs target float32(4,)" in report.details["params.scan.b"]
    chex.assert_trees_all_equal(new["params"]["encoder"], target["params"])
    assert int(new["state"]["encoder"]["scan"]["n"]) == 5


def test_non_strict_with_nothing_matching_is_still_an_error(tmp_path):
    _save(tmp_path / "x", {"params": {"a": {"w": jnp.ones(2)}}, "state": {}})
    with pytest.raises(CheckpointError, match=r"loaded 0; missing in checkpoint"):
        load_subtree(_big(_encoder()), "encoder", tmp_path / "x", strict=False)


def test_subgraph_path_that_does_not_exist(tmp_path):
    _save(tmp_path / "enc", _encoder())
    with pytest.raises(LabelPathError, match=r"'encodr'.*did you mean \['encoder'\]"):
        load_subtree(_big(_encoder()), "encodr", tmp_path / "enc")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"no modjax artifact at .*gone"):
        load_subtree(_big(_encoder()), "encoder", tmp_path / "gone")


def test_migrate_renames_and_loads_without_hash_check(tmp_path):
    old = _encoder(seed=5)
    _save(tmp_path / "v1", old, meta={"note": "v1"}, extra={"frozen_paths": ["scan"]})
    report = migrate_checkpoint(tmp_path / "v1", tmp_path / "v2", {"scan": "reader"})
    assert report.is_complete
    assert set(report.loaded) == {"params.reader.w", "params.reader.b", "params.read.w",
                                  "state.reader.n"}
    art = open_artifact(tmp_path / "v2")
    assert art.structural_hash == ZERO_HASH
    assert art.extra["frozen_paths"] == ["reader"]
    assert art.extra["migrated_from"]["rename"] == {"scan": "reader"}
    assert art.meta == {"note": "v1"}
    renamed = {"params": {"reader": _encoder(9)["params"]["scan"], "read": old["params"]["read"]},
               "state": {"reader": {"n": jnp.asarray(0, jnp.int32)}, "read": {}}}
    new, rep = load_subtree({"params": {"enc": renamed["params"]}, "state": {"enc": renamed["state"]}},
                            "enc", tmp_path / "v2")
    assert rep.is_complete and not rep.hash_matched
    np.testing.assert_array_equal(new["params"]["enc"]["reader"]["w"], old["params"]["scan"]["w"])
    assert int(new["state"]["enc"]["reader"]["n"]) == 5


def test_migrated_checkpoint_still_checks_shapes(tmp_path):
    _save(tmp_path / "v1", _encoder(hidden=8))
    migrate_checkpoint(tmp_path / "v1", tmp_path / "v2", {"read": "out"})
    target = _encoder(hidden=8)
    target["params"]["out"] = target["params"].pop("read")
    target["state"]["out"] = target["state"].pop("read")
    target["params"]["out"]["w"] = jnp.ones((8, 3))
    with pytest.raises(CheckpointError, match=r"params\.out\.w \(checkpoint float32\(8, 2\)"):
        load_subtree(target, None, tmp_path / "v2")


def test_migrate_bad_rename_names_the_path(tmp_path):
    _save(tmp_path / "v1", _encoder())
    with pytest.raises(CheckpointError, match=r"label path 'scna' does not exist.*\['read', 'scan'\]"):
        migrate_checkpoint(tmp_path / "v1", tmp_path / "v2", {"scna": "x"})
    with pytest.raises(CheckpointError, match=r"rename target 'read' already exists"):
        migrate_checkpoint(tmp_path / "v1", tmp_path / "v3", {"scan": "read"})
    assert not (tmp_path / "v2").exists() and not (tmp_path / "v3").exists()
