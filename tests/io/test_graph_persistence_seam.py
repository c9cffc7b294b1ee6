"""GraphPersistence against the contract surface, with a minimal host graph.

The real ModelGraph/flow Graph tests live in test_graph_io.py; this file pins the seam
itself (docs/architecture.md "Persistence seam") so it is tested independently.
"""

from __future__ import annotations

import sys
import textwrap

import chex
import jax.numpy as jnp
import pytest

from modjax.errors import CheckpointError, ConfigError, LabelPathError
from modjax.io.atomic import resolve_artifact
from modjax.io.checkpoints import write_artifact
from modjax.io.registry import CONFIG_FORMAT_VERSION, serialize
from tests.io.seam_hosts import SeamGraph


def test_save_load_round_trip_is_bit_exact(tmp_path):
    g = SeamGraph(seed=1).build()
    g.train_step()
    g.freeze(["enc"])
    g.save(tmp_path / "g")
    h = SeamGraph.load(tmp_path / "g")
    assert h is not g and h.widths == (3, 4)
    chex.assert_trees_all_equal(h.variables, g.variables)
    chex.assert_trees_all_equal(h.opt_state, g.opt_state)
    assert h.frozen_paths == {"enc"}
    with pytest.raises(FileExistsError, match=r"'.*g' already exists"):
        g.save(tmp_path / "g")


def test_checkpoint_restore_in_place_and_resume(tmp_path):
    g = SeamGraph(seed=2).build()
    g.train_step()
    g.save_checkpoint(tmp_path / "ck", meta={"epoch": 1})
    snapshot_v, snapshot_o = g.variables, g.opt_state
    g.train_step()
    g.freeze(["head"])
    assert g.restore_checkpoint(tmp_path / "ck") is g
    chex.assert_trees_all_equal(g.variables, snapshot_v)
    chex.assert_trees_all_equal(g.opt_state, snapshot_o)
    assert g.frozen_paths == set()
    # Resume == straight run, bit-exact.
    g.train_step()
    straight = SeamGraph(seed=2).build()
    straight.train_step()
    straight.train_step()
    chex.assert_trees_all_equal(g.variables, straight.variables)


def test_another_architecture_is_refused_and_graph_unchanged(tmp_path):
    SeamGraph(widths=(3, 8)).build().save_checkpoint(tmp_path / "wide")
    g = SeamGraph().build()
    before = g.variables
    with pytest.raises(CheckpointError, match=r"params\.enc\.dense\.w \(checkpoint float32\(3, 8\) vs "
                                              r"target float32\(3, 4\)\)"):
        g.restore_checkpoint(tmp_path / "wide")
    assert g.variables is before


def test_subgraph_checkpoint_at_label_path(tmp_path):
    donor = SeamGraph(seed=3).build()
    donor.freeze(["enc.dense"])
    donor.save_checkpoint(tmp_path / "enc", at="enc")
    g = SeamGraph(seed=4).build()
    report = g.load_subgraph_checkpoint("enc", tmp_path / "enc")
    assert report.is_complete and report.hash_matched
    assert set(report.loaded) == {"params.dense.w", "state.count"}
    chex.assert_trees_all_equal(g.variables["params"]["enc"], donor.variables["params"]["enc"])
    assert not jnp.array_equal(g.variables["params"]["head"]["w"], donor.variables["params"]["head"]["w"])
    with pytest.raises(LabelPathError, match=r"'encoder'.*did you mean"):
        g.load_subgraph_checkpoint("encoder", tmp_path / "enc")
    with pytest.raises(LabelPathError, match=r"'nope'"):
        donor.save_checkpoint(tmp_path / "x", at="nope")


def test_unbuilt_graph_cannot_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"graph 'g' is not built"):
        SeamGraph().save_checkpoint(tmp_path / "c")


def _crafted(path, obj, version=1):
    return write_artifact(path, "graph", extra={"built": False},
                          json_files={"config.json": {"format_version": version, "object": obj}})


def test_unknown_class_is_named(tmp_path):
    _crafted(tmp_path / "g", {"class": "SeamGraphV2", "module": "nowhere.mod", "config": {}})
    with pytest.raises(ConfigError, match=r"unknown class 'SeamGraphV2'.*allow_packaged_code=True"):
        SeamGraph.load(tmp_path / "g")


def test_future_config_version_is_an_error(tmp_path):
    _crafted(tmp_path / "g", serialize(SeamGraph()), version=CONFIG_FORMAT_VERSION + 1)
    with pytest.raises(ConfigError, match=r"config format version 2; .*upgrade modjax"):
        SeamGraph.load(tmp_path / "g")


def test_user_class_imported_only_with_allow_packaged_code(tmp_path, monkeypatch):
    (tmp_path / "user_graph_mod.py").write_text(textwrap.dedent("""
        from modjax.io.registry import register
        from tests.io.seam_hosts import SeamGraph

        @register("UserGraph")
        class UserGraph(SeamGraph):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    _crafted(tmp_path / "g", {"class": "UserGraph", "module": "user_graph_mod",
                              "config": {"label": "u", "widths": [2, 2], "seed": 0}})
    with pytest.raises(ConfigError, match=r"'UserGraph'.*module 'user_graph_mod'.*allow_packaged_code"):
        SeamGraph.load(tmp_path / "g")
    assert "user_graph_mod" not in sys.modules
    g = SeamGraph.load(tmp_path / "g", allow_packaged_code=True)
    assert type(g).__name__ == "UserGraph" and g.widths == (2, 2)


def test_edited_files_are_detected(tmp_path):
    SeamGraph().build().save(tmp_path / "g")
    cfg_file = resolve_artifact(tmp_path / "g") / "config.json"
    cfg_file.write_text(cfg_file.read_text() + " ")
    with pytest.raises(CheckpointError, match=r"file 'config.json' has \d+ bytes, the manifest recorded"):
        SeamGraph.load(tmp_path / "g")


def test_loaded_kind_checked(tmp_path):
    SeamGraph().build().save_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"holds a 'graph_checkpoint' artifact, expected 'graph'"):
        SeamGraph.load(tmp_path / "c")
    write_artifact(tmp_path / "p", "pytree", items={"tree": {"w": jnp.ones(1)}})
    with pytest.raises(CheckpointError, match=r"holds a 'pytree' artifact, expected 'graph' or "
                                              r"'graph_checkpoint'"):
        SeamGraph().build().restore_checkpoint(tmp_path / "p")
