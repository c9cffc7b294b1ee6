"""The graph store and the graph-layer writer take explicit pytrees."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import pytest

from modjax.graph.io import save_checkpoint
from modjax.io.graph_store import open_graph_checkpoint, save_graph_checkpoint
from tests.io.seam_hosts import SeamGraph


def test_explicit_pytrees_are_stored_and_the_graph_is_untouched(tmp_path):
    g = SeamGraph(seed=3).build()
    g.freeze(["enc"])
    own_v, own_o = g.variables, g.opt_state
    carry_v = jax.tree.map(lambda x: x + 1, own_v)
    carry_o = jax.tree.map(lambda x: x * 0 + 7 if x.dtype != jnp.int32 else x + 5, own_o)
    save_checkpoint(g, tmp_path / "ck", variables=carry_v, opt_state=carry_o, meta={"e": 2})
    # nothing was copied into the graph
    chex.assert_trees_all_equal(g.variables, own_v)
    chex.assert_trees_all_equal(g.opt_state, own_o)
    g.restore_checkpoint(tmp_path / "ck")
    chex.assert_trees_all_equal(g.variables, carry_v)
    chex.assert_trees_all_equal(g.opt_state, carry_o)
    assert g.frozen_paths == {"enc"}
    ck = open_graph_checkpoint(tmp_path / "ck")
    assert (ck.meta, ck.frozen, ck.kind) == ({"e": 2}, ["enc"], "graph_checkpoint")


def test_none_means_the_graphs_own_values(tmp_path):
    g = SeamGraph(seed=4).build()
    g.train_step()
    save_checkpoint(g, tmp_path / "ck")
    other = SeamGraph(seed=5).build()
    other.restore_checkpoint(tmp_path / "ck")
    chex.assert_trees_all_equal(other.variables, g.variables)
    chex.assert_trees_all_equal(other.opt_state, g.opt_state)


def test_explicit_variables_at_a_label_path_are_cut_to_their_namespace(tmp_path):
    g = SeamGraph(seed=6).build()
    carry_v = jax.tree.map(lambda x: x - 3, g.variables)
    save_checkpoint(g, tmp_path / "enc", variables=carry_v, at="enc")
    ck = open_graph_checkpoint(tmp_path / "enc")
    assert not ck.has_opt_state and ck.extra["at"] == "enc"
    got, report = ck.variables(g.variables, "enc")
    assert report.is_complete
    chex.assert_trees_all_equal(got["params"]["enc"], carry_v["params"]["enc"])
    chex.assert_trees_all_equal(got["params"]["head"], g.variables["params"]["head"])


def test_store_refuses_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match=r"kind must be one of \('graph', 'graph_checkpoint'\), "
                                         r"got 'model'"):
        save_graph_checkpoint(tmp_path / "x", variables={"params": {}, "state": {}}, kind="model")

