"""A built flow Graph is a model: a ModelNode's model (trained by a TrainPhase), a step
of another flow, and directly usable (init/apply, eager ``graph(x)`` / ``forward``)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    Dropout,
    FeatureSet,
    Linear,
    ModelGraph,
    ModelNode,
    Optimizer,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError
from modjax.flow import FlowBuilder, StateAdd

RNG = np.random.default_rng(0)
N, D = 48, 6
X = RNG.standard_normal((N, D)).astype(np.float32)
Y = (X[:, :1] * 0.5 - X[:, 1:2]).astype(np.float32)


def lin(p, x):
    return x @ p["kernel"] + p["bias"]


def make_flow():
    enc = (FlowBuilder.from_(Linear(8)).tag("scan").through(Linear(8)).tag("read")
           .label("encoder").build())
    return FlowBuilder.from_(enc).through(Linear(4)).tag("hidden").build()


def make_model_graph(flow):
    fs = FeatureSet.from_dict("Cells", {"x": X, "y": Y}, feature_keys="x", target_keys="y",
                              register=False)
    fs.split_random({"train": 1.0}, seed=0)
    enc = ModelNode("Enc", flow, fs.reference(features="x", targets="y"))
    head = ModelNode("Head", Linear(1), enc)
    return ModelGraph([enc, head], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(
        key=0)


def test_flow_graph_as_model_node_matches_its_own_apply_and_captures_tags():
    flow = make_flow()
    mg = make_model_graph(flow)
    v = mg.variables
    xb = jnp.asarray(X[:5])[:, None, :]
    out, _ = mg.apply(v, {"Cells": xb}, capture=["Enc.hidden", "Enc.encoder.read"])
    p = v["params"]["Enc"]
    read = lin(p["encoder"]["read"], lin(p["encoder"]["scan"], xb))
    hidden = lin(p["hidden"], read)
    chex.assert_trees_all_close(out["Enc.encoder.read"], read, atol=1e-6)
    chex.assert_trees_all_close(out["Enc.hidden"], hidden, atol=1e-6)
    chex.assert_trees_all_close(out["Head"], lin(v["params"]["Head"], hidden), atol=1e-6)


def test_flow_graph_in_a_model_node_trains_with_a_frozen_subtree_bit_identical():
    mg = make_model_graph(make_flow())
    mg.freeze("Enc.encoder")
    mg.unfreeze("Enc.encoder.scan")
    before = jax.tree.map(np.asarray, mg.variables["params"])
    mse = AppliedLoss("mse", on="Head", inputs=["outputs", "targets"])
    phase = TrainPhase.from_split("fit", split="train", sampler=SimpleSampler(16, seed=0),
                                  losses=[mse], n_epochs=3)
    losses = phase.execute(mg, show_training_progress=False).metrics.series("train_loss")
    after = mg.variables["params"]
    assert losses[-1] < losses[0]
    chex.assert_trees_all_equal(after["Enc"]["encoder"]["read"],
                                before["Enc"]["encoder"]["read"])
    assert not np.array_equal(after["Enc"]["encoder"]["scan"]["kernel"],
                              before["Enc"]["encoder"]["scan"]["kernel"])
    assert not np.array_equal(after["Enc"]["hidden"]["kernel"], before["Enc"]["hidden"]["kernel"])


def test_a_flows_own_freeze_marks_hold_inside_a_model_graph():
    flow = make_flow()
    flow.freeze("encoder")
    flow.thaw("encoder.scan")            # the model's own marks: encoder.read frozen
    mg = make_model_graph(flow)
    assert mg.frozen_paths == {"Enc.encoder.read"} and mg.frozen_nodes == {}
    before = jax.tree.map(np.asarray, mg.variables["params"])
    mse = AppliedLoss("mse", on="Head", inputs=["outputs", "targets"])
    phase = TrainPhase.from_split("fit", split="train", sampler=SimpleSampler(16, seed=0),
                                  losses=[mse], n_epochs=2)
    phase.execute(mg, show_training_progress=False)
    after = mg.variables["params"]
    chex.assert_trees_all_equal(after["Enc"]["encoder"]["read"], before["Enc"]["encoder"]["read"])
    assert not np.array_equal(after["Enc"]["encoder"]["scan"]["kernel"],
                              before["Enc"]["encoder"]["scan"]["kernel"])
    # thawing through the ModelGraph thaws the model's marks too
    mg.unfreeze("Enc.encoder")
    assert mg.frozen_paths == set() and flow.frozen_paths == ()
    flow.freeze("encoder")
    mg.unfreeze()
    assert mg.frozen_paths == set() and not flow.is_frozen("encoder")


def test_init_apply_eager_call_and_forward_agree():
    g = FlowBuilder.from_(Linear(4)).tag("h").through(Linear(2)).build(seed=3)
    x = jnp.asarray(X[:5])
    assert g.variables is None and g.input_shape is None  # nothing until a shape is known
    y = g(x)                                               # builds + initialises from x
    assert g.input_shape == (D,) and g.output_shape == (2,)
    v = g.variables
    p, s = g.init(jax.random.key(3), (D,))                 # same seed -> same params
    chex.assert_trees_all_equal(p, v["params"])
    chex.assert_trees_all_close(y, g.apply(p, s, x)[0])
    chex.assert_trees_all_close(g.forward(x), y)
    chex.assert_trees_all_close(g.tagged("h"), lin(p["h"], x))
    with pytest.raises(ValueError, match="not built"):
        FlowBuilder.from_(Linear(2)).build().apply({}, {}, x)


def test_eager_forward_reference_state_detach_and_reset_in_place():
    g = FlowBuilder.from_(Linear(3)).tag("h").through(StateAdd()).using("mem").tag("mem").build()
    g.set_training(False)
    x = jnp.asarray(X[:4])
    y1 = g(x)
    h = lin(g.variables["params"]["h"], x)
    chex.assert_trees_all_close(y1, h)
    chex.assert_trees_all_close(g(x), 2 * h, atol=1e-6)  # the held state carried over
    g.detach_state()
    chex.assert_trees_all_close(g.variables["state"]["_refs"]["mem"], 2 * h, atol=1e-6)
    with pytest.raises(ShapeMismatchError, match=r"node 'mem'.*'mem' holds a batch of 4.*has 2"):
        g(x[:2])                                           # a last, smaller batch
    g.reset_state()                                        # a new sequence: any batch size
    chex.assert_trees_all_equal(g.variables["state"]["_refs"]["mem"], jnp.zeros((1, 3)))
    chex.assert_trees_all_close(g(x), h)
    g.reset_state()
    chex.assert_trees_all_close(g(x[:2]), h[:2])


def test_eager_training_mode_controls_dropout():
    g = FlowBuilder.from_(Linear(8)).through(Dropout(0.5)).build(input_shape=(D,))
    x = jnp.asarray(X[:4])
    a, b = g(x), g(x)
    assert not np.array_equal(a, b)  # training (default): a fresh key per forward
    g.set_training(False)
    chex.assert_trees_all_equal(g(x), g(x))
    v = g.variables["params"]
    chex.assert_trees_all_close(g(x), lin(v["Linear_0"], x), atol=1e-6)


def test_labelled_graph_as_a_step_in_another_flow_nests_by_label():
    inner = (FlowBuilder.from_(Linear(4)).tag("a").through(Linear(4)).tag("b")
             .label("block").build())
    outer = FlowBuilder.from_(Linear(4)).tag("in").through(inner).also(Linear(4)).build()
    p, s = outer.init(jax.random.key(0), (D,))
    x = jnp.asarray(X[:5])
    h = lin(p["in"], x)
    b = lin(p["block"]["b"], lin(p["block"]["a"], h))
    ids = [e.id for e in outer.entries]
    chex.assert_trees_all_close(outer.apply(p, s, x)[0], b + lin(p[ids[-1]], b), atol=1e-6)
    _, _, cap = outer.apply(p, s, x, capture=["block.a"])
    chex.assert_trees_all_close(cap["block.a"], lin(p["block"]["a"], h), atol=1e-6)


def test_eager_forward_never_drops_learned_values_on_a_shape_change():
    g = FlowBuilder.from_(Linear(2)).build()
    x = jnp.asarray(X[:3])
    y = g(x)
    held = g.variables
    with pytest.raises(ShapeMismatchError, match=r"'\(root\)' holds variables for .*\(6,\) but got \(3,\)"):
        g(x[:, :3])
    assert g.variables is held
    chex.assert_trees_all_close(g(x), y)
    g.initialize((3,))                 # explicit: fresh variables for the new shape
    assert g(x[:, :3]).shape == (3, 2)


def test_failed_rebuild_leaves_the_graph_as_it_was():
    from modjax.flow import Reshape
    g = FlowBuilder.from_(Reshape(2, 3)).tag("r").build(input_shape=(6,))
    held = g.variables
    with pytest.raises(ShapeMismatchError, match=r"node 'r'.*Reshape"):
        g.build((5,))
    assert g.input_shape == (6,) and g.variables is held
