"""ModelGraph save/load, checkpoints and subgraph checkpoints on real graphs."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import FeatureSet, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.context import ExperimentContext
from modjax.errors import CheckpointError, LabelPathError, RegistrationError

X = np.random.default_rng(0).normal(size=(8, 1, 10)).astype(np.float32)


def _graph(seed=0, hidden=32, head_hidden=32, label="Data"):
    r = np.random.default_rng(seed)
    fs = FeatureSet.from_dict(label, {"x": r.normal(size=(16, 10)).astype(np.float32),
                                      "y": r.normal(size=16)}, "x", "y")
    enc = ModelNode("Encoder", SequentialMLP(output_shape=(hidden,), n_layers=2, hidden_dim=hidden),
                    upstream_ref=fs.reference())
    head = ModelNode("Head", SequentialMLP(output_shape=(1,), n_layers=2, hidden_dim=head_hidden),
                     upstream_ref=enc)
    g = ModelGraph([enc, head], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}))
    return fs, g.build(key=jax.random.key(seed))


@jax.jit
def _update(params, opt_state, frozen):
    # The same transformation as the graphs' Optimizer("adam", lr=1e-2); jitted once per
    # structure so the tests do not pay eager per-op compilation.
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)
    updates, opt_state = optax.adam(1e-2).update(grads, opt_state, params)
    updates = jax.tree.map(lambda u, f: jnp.where(f, 0.0, u), updates, frozen)
    return optax.apply_updates(params, updates), opt_state


def _step(g):
    """One optimizer update with fixed gradients (moves params and Adam moments)."""
    new, opt = _update(g.variables["params"], g.opt_state, g.frozen_mask())
    g.set_variables({"params": new, "state": g.variables["state"]})
    g.set_opt_state(opt)


def _out(g):
    return g.forward({"Data": X})["Head"]


def test_save_load_round_trip_bit_exact_in_fresh_context(tmp_path):
    fs, g = _graph(seed=1)
    _step(g)
    g.freeze(["Encoder"])
    _step(g)
    fs.save(tmp_path / "fs")
    g.save(tmp_path / "g")
    with ExperimentContext().activate():
        FeatureSet.load(tmp_path / "fs")
        h = ModelGraph.load(tmp_path / "g")
        assert h is not g and h.node_labels == ["Encoder", "Head"]
        chex.assert_trees_all_equal(h.variables, g.variables)
        chex.assert_trees_all_equal(h.opt_state, g.opt_state)
        assert h.frozen_paths == {"Encoder"}
        chex.assert_trees_all_equal(_out(h), _out(g))
        # Training continues identically from the loaded copy.
        _step(h)
        _step(g)
        chex.assert_trees_all_equal(h.variables, g.variables)


def test_config_state_round_trip_reproduces_outputs(tmp_path):
    fs, g = _graph(seed=2)
    _step(g)
    cfg, state = g.get_config(), g.get_state()
    with ExperimentContext().activate():
        FeatureSet.from_config(fs.get_config(), state=fs.get_state())
        h = ModelGraph.from_config(cfg)
        h.set_state(state)
        chex.assert_trees_all_equal(_out(h), _out(g))


def test_checkpoint_restore_in_place(tmp_path):
    _, g = _graph(seed=3)
    _step(g)
    g.save_checkpoint(tmp_path / "ck", meta={"epoch": 1})
    v, o, out = g.variables, g.opt_state, _out(g)
    _step(g)
    g.freeze(["Head"])
    g.restore_checkpoint(tmp_path / "ck")
    chex.assert_trees_all_equal(g.variables, v)
    chex.assert_trees_all_equal(g.opt_state, o)
    chex.assert_trees_all_equal(_out(g), out)
    assert g.frozen_paths == set()


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, wide = _graph(seed=4, head_hidden=16)
    wide.save_checkpoint(tmp_path / "wide")
    _, g = _graph(seed=5)
    before = g.variables
    with pytest.raises(CheckpointError, match=r"params\.Head\.layer_0\.kernel \(checkpoint "
                                              r"float32\(32, 16\) vs target float32\(32, 32\)\)"):
        g.restore_checkpoint(tmp_path / "wide")
    assert g.variables is before


def test_subgraph_checkpoint_into_other_graph(tmp_path):
    _, donor = _graph(seed=6)
    _step(donor)
    donor.save_checkpoint(tmp_path / "enc", at="Encoder")
    _, g = _graph(seed=7, head_hidden=8)
    report = g.load_subgraph_checkpoint("Encoder", tmp_path / "enc")
    assert report.is_complete and report.hash_matched
    assert "params.layer_0.kernel" in report.loaded and len(report.loaded) == 4
    chex.assert_trees_all_equal(g.parameters_at("Encoder"), donor.parameters_at("Encoder"))
    # The encoder's output is now the donor's.
    chex.assert_trees_all_equal(g.forward({"Data": X})["Encoder"],
                                donor.forward({"Data": X})["Encoder"])
    with pytest.raises(LabelPathError, match=r"'Encodr'.*did you mean \['Encoder'\]"):
        g.load_subgraph_checkpoint("Encodr", tmp_path / "enc")
    with pytest.raises(CheckpointError, match=r"does not match graph 'model-graph' subtree 'Head'"):
        g.load_subgraph_checkpoint("Head", tmp_path / "enc")


def test_unbuilt_graph_saves_structure_only(tmp_path):
    r = np.random.default_rng(0)
    fs = FeatureSet.from_dict("Data", {"x": r.normal(size=(4, 10)), "y": r.normal(size=4)}, "x", "y")
    n = ModelNode("Encoder", SequentialMLP(output_shape=(4,)), upstream_ref=fs.reference())
    g = ModelGraph([n])
    g.save(tmp_path / "g")
    h = ModelGraph.load(tmp_path / "g", overwrite=True)
    assert not h.is_built and h.node_labels == ["Encoder"]
    with pytest.raises(CheckpointError, match=r"graph 'model-graph' is not built"):
        g.save_checkpoint(tmp_path / "c")


def test_load_without_overwrite_gives_colliding_nodes_new_ids(tmp_path):
    fs, g = _graph(seed=4)
    g.save(tmp_path / "g")
    old_ids = {n.label: n.node_id for n in g.nodes.values()}
    h = ModelGraph.load(tmp_path / "g")  # same context: every node id is taken
    new_ids = {n.label: n.node_id for n in h.nodes.values()}
    assert set(new_ids) == set(old_ids) and not set(new_ids.values()) & set(old_ids.values())
    # the Head's reference followed its Encoder's new id
    chex.assert_trees_all_equal(_out(h), _out(g))
    same = ModelGraph.load(tmp_path / "g", overwrite=True)
    assert {n.label: n.node_id for n in same.nodes.values()} == old_ids


def test_load_collision_under_error_policy_names_the_label(tmp_path):
    with ExperimentContext(registration_policy="error").activate():
        _, g = _graph(seed=5)
        g.save(tmp_path / "g")
        with pytest.raises(RegistrationError, match=r"node labelled 'Encoder' is already registered"):
            ModelGraph.load(tmp_path / "g")
        back = ModelGraph.load(tmp_path / "g", overwrite=True)
        chex.assert_trees_all_equal(back.variables, g.variables)
