"""What the fixed-cost shortcuts of an execute keep exactly as before."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    FeatureSet,
    InputBinding,
    Linear,
    ModelGraph,
    ModelNode,
    Optimizer,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError
from modjax.train.optim import Optimizer as _Opt
from modjax.train.step import init_train_carry


def _graph(optimizer="adam"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    fs = FeatureSet.from_dict("fc", {"x": x, "y": x.sum(axis=1)}, "x", "y", register=False)
    fs.add_split(fs.take(np.arange(48), label="train"), "train")
    node = ModelNode("lin", Linear(1), upstream_ref=fs.reference(features="x"), register=False)
    return ModelGraph([node], optimizer=Optimizer(optimizer, opt_kwargs={"lr": 1e-2}),
                      register=False).build(key=0)


def test_step_counter_int_and_int32_array_give_the_same_carry():
    params = {"lin": {"w": jnp.ones((2, 1))}}
    v = {"params": params, "state": {"lin": {}}}
    a = init_train_carry(v, _Opt("sgd"), jax.random.key(0), step=3)
    z = jnp.asarray(3, jnp.int32)
    b = init_train_carry(v, _Opt("sgd"), jax.random.key(0), step=z)
    assert b["step"] is z and a["step"].dtype == b["step"].dtype == jnp.int32
    assert int(a["step"]) == int(b["step"]) == 3
    c = init_train_carry(v, _Opt("sgd"), jax.random.key(0), step=jnp.asarray(3.0))
    assert c["step"].dtype == jnp.int32 and int(c["step"]) == 3  # a float array is cast


def test_two_executes_count_steps_from_the_written_back_state():
    graph = _graph()
    phase = TrainPhase("t", input_sources=[InputBinding.for_training(
        node="lin", sampler=SimpleSampler(16, seed=0), split="train")],
        losses=[AppliedLoss("mse", on="lin", inputs=["outputs", "targets"])], n_epochs=2,
        result_recording="none")
    phase.execute(graph, show_training_progress=False)
    count = int(jax.tree.leaves(graph.opt_state)[0])  # adam's step count
    phase.execute(graph, show_training_progress=False)
    assert int(jax.tree.leaves(graph.opt_state)[0]) == 2 * count == 12

def test_set_variables_keeps_device_arrays_converts_numpy_and_still_checks():
    graph = _graph()
    v = graph.variables
    graph.set_variables(v)
    assert all(a is b for a, b in zip(jax.tree.leaves(graph.variables), jax.tree.leaves(v)))
    host = jax.tree.map(np.asarray, v)
    graph.set_variables(host)
    got = jax.tree.leaves(graph.variables)
    assert all(isinstance(a, jax.Array) for a in got)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.leaves(host), got)
    leaves, treedef = jax.tree.flatten(v)
    bad = jax.tree.unflatten(treedef, [jnp.ones((7, 7)), *leaves[1:]])
    with pytest.raises(ShapeMismatchError, match=r"lin.*\(7, 7\)"):
        graph.set_variables(bad)


def test_a_loss_changed_in_place_after_an_eval_is_not_served_by_the_old_program():
    from modjax import EvalPhase
    from modjax.train.losses import Loss

    graph = _graph()
    phase = EvalPhase("e", input_sources=[InputBinding.for_evaluation(node="lin", split="train")],
                      losses=[AppliedLoss("mse", on="lin", inputs=["outputs", "targets"])])
    mse = float(phase.execute(graph).metrics.last("lin.mse"))
    assert float(phase.execute(graph).metrics.last("lin.mse")) == mse  # the memo's answer
    phase.losses[0].loss = Loss("mae")
    mae = float(phase.execute(graph).metrics.last("lin.mse"))
    fresh = EvalPhase("f", input_sources=[InputBinding.for_evaluation(node="lin", split="train")],
                      losses=[AppliedLoss("mae", on="lin", inputs=["outputs", "targets"],
                                          label="lin.mse")])
    assert mae == float(fresh.execute(graph).metrics.last("lin.mse")) != mse
