"""A graph trained by an Experiment gets the observer history of a hand-written loop.

TrainPhase runs each epoch as one ``lax.scan`` and pushes the per-batch losses into the
observer once per epoch (``record_batches`` + ``flush``). The reference here is the
goDl-style manual loop: a jitted step per batch on the very batches the phase drew (the
index plans kept in the results), an optax update, and one ``record`` per batch into a
second observer, flushed per epoch. Both histories (and the trained weights) must agree.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import (
    AppliedLoss,
    Callback,
    Experiment,
    FeatureSet,
    InputBinding,
    Linear,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.flow import FlowBuilder
from modjax.graph.models import FunctionModel
from modjax.observe import Observer

N, EPOCHS, BATCH, LR = 112, 3, 20, 1e-2  # 84 training rows: the last batch is padded


def _featureset() -> FeatureSet:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=4).astype(np.float32))
    data = {f"x{i}": x[:, i] for i in range(4)} | {"y": y}
    fs = FeatureSet.from_dict("fs", data, [f"x{i}" for i in range(4)], "y")
    cut = int(N * 0.75)
    fs.add_split(fs.take(np.arange(cut), label="train"), "train")
    return fs


def _flow_model():
    tanh = FunctionModel(lambda k, s: {}, lambda p, x: jnp.tanh(x))
    return (FlowBuilder.from_(Linear(8)).through(tanh).tag("hidden").through(Linear(1))
            .tag("pred").build())


def _phase(**kw) -> TrainPhase:
    return TrainPhase("train", input_sources=[InputBinding.for_training(
        node="net", sampler=SimpleSampler(BATCH, seed=3), split="train")],
        losses=[AppliedLoss("mse", on="net", inputs=["outputs", "targets"])], n_epochs=EPOCHS, **kw)


def _manual_loop(graph: ModelGraph, init: dict, results,
                 tag: str | None = None) -> tuple[Observer, dict]:
    """Replay the phase's batches with a per-batch jitted step and per-batch records.

    With ``tag``, each batch's captured tensor is also recorded as its mean over the
    batch's real samples.
    """
    opt = optax.adam(LR)
    capture = () if tag is None else (tag,)

    def loss_fn(params, state, xb, yb, mb):
        out, _ = graph.apply({"params": params, "state": state}, {"net": xb}, train=True,
                             capture=capture)
        per_sample = jnp.mean(jnp.square(out["net"] - yb).reshape(xb.shape[0], -1), axis=1)
        return jnp.sum(per_sample * mb) / jnp.sum(mb), out.get(tag)

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    params, state = init["params"], init["state"]
    opt_state = opt.init(params)
    obs = Observer()
    for e in range(EPOCHS):
        binding = results.epochs[e].bindings["net"]
        x = np.asarray(binding.view.get_features())
        y = np.asarray(binding.view.get_targets())
        idx, mask = binding.indices["default"], binding.mask["default"]
        for b in range(idx.shape[0]):
            m = mask[b].astype(np.float32)
            (loss, tagged), grads = value_and_grad(params, state, x[idx[b]], y[idx[b]], m)
            upd, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, upd)
            # one host sync per batch, weighted by its real samples like the phase's feed
            obs.record_batch_values("train_loss", [loss], weights=[m.sum()])
            obs.record_batch_values("net.mse", [loss], weights=[m.sum()])
            if tag is not None:
                real = np.asarray(tagged)[mask[b]]
                obs.record_batch_values(tag, [real.mean()], weights=[m.sum()])
        obs.flush()
    return obs, {"params": params, "state": state}


@pytest.mark.parametrize("kind", ["model_graph", "flow_graph"])
def test_experiment_history_equals_manual_loop(kind, fresh_context):
    fs = _featureset()
    model = SequentialMLP(n_layers=2, hidden_dim=8) if kind == "model_graph" else _flow_model()
    node = ModelNode("net", model, upstream_ref=fs.reference())
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
    init = graph.variables
    # a flow graph's own observer takes the history (what graph.trend/plot_html read)
    obs = model.observer if kind == "flow_graph" else Observer(name="net")
    exp = Experiment.from_active_context("feed", observer=obs)
    exp.execution_plan.add_phase(_phase())
    results = exp.run(show_training_progress=False).get_train_result()

    manual, trained = _manual_loop(graph, init, results)
    assert obs.flush_count() == manual.flush_count() == EPOCHS
    assert sorted(obs.history_tags()) == ["net.mse", "train_loss"]
    for tag in ("train_loss", "net.mse"):
        np.testing.assert_allclose(obs.trend(tag).values(), manual.trend(tag).values(),
                                   rtol=1e-6)
        np.testing.assert_array_equal(obs.trend(tag).epochs(), [1, 2, 3])
    # the epoch value is the sample-weighted batch mean the results report too
    np.testing.assert_allclose(obs.trend("train_loss").values(),
                               results.metrics.series("train_loss"), rtol=1e-12)
    assert obs.trend("train_loss").improving(0)
    chex.assert_trees_all_close(graph.variables, trained, atol=1e-6)
    if kind == "flow_graph":
        assert model.latest_metrics() == pytest.approx(
            {"train_loss": manual.trend("train_loss").latest(),
             "net.mse": manual.trend("net.mse").latest()}, rel=1e-6)


def test_phase_observer_argument_wins_over_the_experiments(fresh_context):
    fs = _featureset()
    node = ModelNode("net", SequentialMLP(n_layers=1, hidden_dim=4), upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("sgd", opt_kwargs={"lr": LR})).build(key=0)
    on_exp, on_phase = Observer(), Observer()
    exp = Experiment.from_active_context("feed2", observer=on_exp)
    exp.execution_plan.add_phase(_phase(observer=on_phase))
    results = exp.run(show_training_progress=False).get_train_result()
    assert on_exp.flush_count() == 0
    assert on_phase.flush_count() == EPOCHS
    np.testing.assert_allclose(on_phase.trend("train_loss").values(),
                               results.metrics.series("train_loss"), rtol=1e-12)


def test_captured_tags_pushed_per_epoch_match_manual_loop(fresh_context):
    """A phase's captured per-sample tags reach the observer as per-batch means."""
    fs = _featureset()
    model = _flow_model()
    node = ModelNode("net", model, upstream_ref=fs.reference())
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
    init = graph.variables
    tags = Observer(name="captured")
    exp = Experiment.from_active_context("feed3", observer=tags)
    exp.execution_plan.add_phase(_phase(capture=["net.hidden"]))
    results = exp.run(show_training_progress=False).get_train_result()
    manual, _ = _manual_loop(graph, init, results, tag="net.hidden")
    assert tags.flush_count() == EPOCHS
    assert sorted(tags.history_tags()) == ["net.hidden", "net.mse", "train_loss"]
    np.testing.assert_allclose(tags.trend("net.hidden").values(),
                               manual.trend("net.hidden").values(), rtol=1e-5, atol=1e-7)
    # the epoch value is the mean of the tag over every real sample of the epoch
    hidden = results.stacked_tensors("net.hidden", "tags", epoch=EPOCHS - 1)
    assert hidden.shape == (84, 8)
    assert tags.trend("net.hidden").latest() == pytest.approx(float(hidden.mean()), rel=1e-6)


def test_record_batch_tags_errors_leave_buffers_empty():
    obs = Observer(name="g")
    with pytest.raises(ValueError, match=r"'h' has shape \(3,\)"):
        obs.record_batch_tags({"h": np.ones(3)})
    with pytest.raises(ValueError, match=r"disagree.*'a': \(2, 4\).*'b': \(3, 4\)"):
        obs.record_batch_tags({"a": np.ones((2, 4)), "b": np.ones((3, 4, 2))})
    with pytest.raises(ValueError, match=r"mask has shape \(2, 3\).*\(2, 4\)"):
        obs.record_batch_tags({"a": np.ones((2, 4))}, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"'a' has roles \['anchor', 'default'\]"):
        obs.record_batch_tags({"a": {"default": np.ones((2, 4)), "anchor": np.ones((2, 4))}})
    assert obs.collected("a") is None and obs.collected("h") is None
    # an all-padding batch drops out; scalars per sample need no feature axis
    obs.record_batch_tags({"a": {"default": np.array([[1.0, 3.0], [7.0, 7.0]])}},
                          mask=np.array([[True, True], [False, False]]))
    assert obs.collected("a") == [2.0] and obs.flush() == {"a": 2.0}


def test_phase_stamps_the_start_so_epoch_one_counts_in_full(fresh_context):
    """Durations, ETA and elapsed of an Experiment-fed observer, on a controlled clock."""

    class Clock:
        t = 1000.0

        def __call__(self):
            return self.t

    clock = Clock()
    fs = _featureset()
    node = ModelNode("net", SequentialMLP(n_layers=1, hidden_dim=4), upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("sgd", opt_kwargs={"lr": LR})).build(key=0)
    obs = Observer(clock=clock)

    class Tick(Callback):  # epoch e "takes" 2 + e seconds, before its scan runs
        def on_epoch_start(self, *, epoch, **kw):
            clock.t += 2.0 + epoch

    exp = Experiment.from_active_context("clocked", observer=obs)
    exp.execution_plan.add_phase(_phase(callbacks=[Tick()]))
    exp.run(show_training_progress=False)
    assert obs.start_time() == 1000.0  # stamped at phase start, not at the first record
    assert obs.flush_times() == [1002.0, 1005.0, 1009.0]
    assert obs.epoch_durations() == [2.0, 3.0, 4.0]
    assert obs.last_flush_duration() == 4.0 and obs.elapsed() == 9.0
    assert obs.eta(10) == pytest.approx(3.0 * 7) and obs.eta(10, window=1) == pytest.approx(28.0)
