"""TrainPhase / EvalPhase / FitPhase on real FeatureSets and ModelGraphs."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import make_branching_graph, make_featureset, make_mlp_graph, mse_on, train_phase

from modjax import (
    AppliedLoss,
    Callback,
    EarlyStopping,
    EvalLossMetric,
    EvalPhase,
    Evaluation,
    FitPhase,
    InputBinding,
    MetricCallback,
    ModelGraph,
    ModelNode,
    Optimizer,
    RidgeRegression,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import GraphStructureError, LabelPathError


@pytest.fixture(scope="module")
def trained():
    """One graph + phase reused by several tests (one compilation). Every source of
    randomness is seeded (data, initial variables, sampler), so the numbers are fixed."""
    fs = make_featureset(seed=0, register=False)
    g = make_mlp_graph(fs, register=False, seed=0)
    init = g.variables
    phase = train_phase(n_epochs=4, seed=0)
    res = phase.execute(g, show_training_progress=False)
    return fs, g, init, phase, res


def test_losses_decrease_and_results_line_up(trained):
    fs, g, init, phase, res = trained
    tl = res.metrics.series("train_loss")
    # against the untrained model's loss on the same rows (not the noisy first epoch,
    # which already trains): the seeded run gives 0.078 vs 0.464, so 0.5x has ~3x margin
    mse = EvalPhase.from_split("e", split="train", losses=[mse_on("mlp")])
    start = mse.execute(g, variables=init).aggregated_losses("mlp")["mlp.mse"]
    end = mse.execute(g).aggregated_losses("mlp")["mlp.mse"]
    assert len(tl) == 4 and end < 0.5 * start and tl[-1] < 0.5 * start
    assert all(later < tl[0] for later in tl[1:])
    assert res.n_epochs == 4 and res.epoch_indices == [0, 1, 2, 3]
    out = res.stacked_tensors("mlp", "outputs")
    tgt = res.stacked_tensors("mlp", "targets")
    uuids = res.stacked_tensors("mlp", "sample_uuids")
    assert out.shape == tgt.shape == (192, 1) and uuids.shape == (192,)
    # targets come back row for row with the sample uuids the sampler drew
    src = fs.get_split("train")
    lookup = dict(zip(src.sample_uuids, src.get_targets()[:, 0]))
    np.testing.assert_allclose(tgt[:, 0], [lookup[u] for u in uuids], rtol=1e-6)
    view = res.source_view("mlp")
    assert sorted(view.sample_uuids) == sorted(src.sample_uuids)
    agg = res.aggregated_losses("mlp")
    assert set(agg) == {"mlp.mse"} and agg["mlp.mse"] == pytest.approx(tl[-1], rel=1e-5)
    assert len(res.batch_losses(0)["mlp.mse"]) == 6  # 192 rows / 32
    with pytest.raises(KeyError, match="no loss on node 'nope'"):
        res.aggregated_losses("nope")


def test_compiles_once_and_rerun_compiles_nothing(trained):
    fs, g, init, phase, res = trained
    assert phase.n_traces == 1  # one trace for 4 epochs
    compiles = []

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        phase.execute(g, show_training_progress=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert phase.n_traces == 1 and compiles == []


def test_freeze_in_phase_bit_identical_and_no_retrace():
    fs = make_featureset(register=False)
    g = make_branching_graph(fs, optimizer=Optimizer("adamw", opt_kwargs={"lr": 1e-2,
                                                                          "weight_decay": 0.5}),
                             register=False)
    sampler = SimpleSampler(32, seed=3)
    phase = TrainPhase("t", input_sources=[
        InputBinding.for_training(node="enc_a", sampler=sampler, split="train"),
        InputBinding.for_training(node="enc_b", sampler=sampler, split="train")],
        losses=[mse_on("head")], n_epochs=2)
    before = g.variables
    g.freeze(["enc_a"])
    phase.execute(g, show_training_progress=False)
    after = g.variables
    chex.assert_trees_all_equal(after["params"]["enc_a"], before["params"]["enc_a"])
    assert _changed(after["params"]["enc_b"], before["params"]["enc_b"])
    # freezing another node only changes the traced mask: no retrace
    g.unfreeze(["enc_a"])
    g.freeze(["enc_b"])
    phase.execute(g, show_training_progress=False)
    assert phase.n_traces == 1
    g.unfreeze(["enc_b"])
    g.freeze(["enc_a"])
    phase.execute(g, show_training_progress=False)
    # unfreezing everything drops the mask: at most one more compilation
    mu_a = g.opt_state[0].mu["enc_a"]
    g.unfreeze(["enc_a"])
    phase.execute(g, show_training_progress=False)
    assert phase.n_traces == 2
    assert _changed(g.variables["params"]["enc_a"], before["params"]["enc_a"])
    assert jax.tree.structure(mu_a) == jax.tree.structure(g.opt_state[0].mu["enc_a"])


def _changed(a, b) -> bool:
    return not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_determinism_same_seeds_bit_identical():
    def run():
        fs = make_featureset(seed=5, register=False)
        g = make_mlp_graph(fs, register=False, seed=7)
        train_phase(n_epochs=2, seed=11).execute(g, show_training_progress=False)
        return g.variables

    chex.assert_trees_all_equal(run(), run())


def test_stage_wise_phase_trains_each_node_on_its_own_losses():
    fs = make_featureset(register=False)
    opts = {k: Optimizer("sgd", opt_kwargs={"lr": 0.05}) for k in ("enc_a", "enc_b", "head")}
    g = make_branching_graph(fs, node_optimizers=opts, register=False)
    before = g.variables
    sampler = SimpleSampler(32, seed=0)
    phase = TrainPhase("sw", input_sources=[
        InputBinding.for_training(node="enc_a", sampler=sampler, split="train"),
        InputBinding.for_training(node="enc_b", sampler=sampler, split="train")],
        losses=[mse_on("head")], n_epochs=2)
    res = phase.execute(g, show_training_progress=False)
    # only the head has a loss: stop_gradient at its input leaves the encoders untouched
    chex.assert_trees_all_equal(g.variables["params"]["enc_a"], before["params"]["enc_a"])
    chex.assert_trees_all_equal(g.variables["params"]["enc_b"], before["params"]["enc_b"])
    tl = res.metrics.series("train_loss")
    assert tl[-1] < tl[0]
    assert opts["head"].state is not None
    g2 = make_branching_graph(fs, node_optimizers={"head": opts["head"]}, register=False)
    with pytest.raises(ValueError, match="node 'enc_a' has none"):
        phase.execute(g2, show_training_progress=False)


def test_phase_input_errors():
    fs = make_featureset(register=False)
    g = make_branching_graph(fs, optimizer=Optimizer("adam"), register=False)
    with pytest.raises(ValueError, match="has no losses"):
        TrainPhase("t", input_sources=[InputBinding.for_training(
            node="enc_a", sampler=SimpleSampler(8), split="train")], losses=[])
    with pytest.raises(ValueError, match="binding of node 'enc_a' has no sampler"):
        TrainPhase("t", input_sources=[InputBinding.for_evaluation(node="enc_a", split="train")],
                   losses=[mse_on("head")])
    with pytest.raises(ValueError, match="needs a sampler"):
        InputBinding.for_training(node="enc_a", sampler=None)
    bad_head = TrainPhase("t", input_sources=[InputBinding.for_training(
        node="head", sampler=SimpleSampler(8), split="train")], losses=[mse_on("head")])
    with pytest.raises(GraphStructureError, match="'head', which is not a head node"):
        bad_head.execute(g, show_training_progress=False)
    unknown = TrainPhase("t", input_sources=[InputBinding.for_training(
        node="enc_a", sampler=SimpleSampler(8), split="train")], losses=[mse_on("tail")])
    with pytest.raises(LabelPathError, match="node 'tail', which is not in the graph"):
        unknown.execute(g, show_training_progress=False)
    bad_split = TrainPhase("t", input_sources=[InputBinding.for_training(
        node="enc_a", sampler=SimpleSampler(8), split="tets")], losses=[mse_on("head")])
    with pytest.raises(KeyError, match="no split 'tets'"):
        bad_split.execute(g, show_training_progress=False)
    with pytest.raises(ValueError, match="unknown batch_schedule"):
        train_phase(batch_schedule="zip")
    with pytest.raises(ValueError, match="nan_policy"):
        train_phase(nan_policy="skip")


def test_nan_policy_raise_leaves_variables_and_stop_ends_phase():
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False, optimizer=Optimizer("sgd", opt_kwargs={"lr": 1e3}))
    before = g.variables
    phase = train_phase(n_epochs=5)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch \d+, batch \d+"):
        phase.execute(g, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, before)
    stopper = train_phase(n_epochs=5, nan_policy="stop")
    res = stopper.execute(g, show_training_progress=False)
    epoch, batch = res.nan_stop
    assert res.stopped_early and res.n_epochs == epoch  # the non-finite epoch is dropped
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g.variables))
    if epoch == 0:  # nothing finite was trained: the variables are the starting ones
        chex.assert_trees_all_equal(g.variables, before)
    ignore = train_phase(n_epochs=1, nan_policy="ignore")
    res = ignore.execute(g, show_training_progress=False)
    assert not np.isfinite(res.epochs[0].loss).all()


def test_evaluation_early_stopping_restore_best():
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False, optimizer=Optimizer("sgd", opt_kwargs={"lr": 0.5}))
    loss = mse_on("mlp")
    ev = EvalPhase("val", input_sources=[InputBinding.for_evaluation(node="mlp", split="val")],
                   batch_size=24)
    es = EarlyStopping(monitor="val_loss", patience=1, restore_best=True)
    seen = []
    phase = train_phase(n_epochs=12, callbacks=[
        Evaluation(eval_phase=ev, metrics=[EvalLossMetric(loss=loss)]), es,
        MetricCallback("w_norm", lambda variables, **kw: float(
            sum(jnp.sum(x ** 2) for x in jax.tree.leaves(variables["params"])))),
    ])

    class Spy(Callback):
        def on_epoch_end(self, *, epoch, results, **kw):
            seen.append((epoch, results.metrics.epoch_value("val_loss", epoch)))

    phase.add_callback(Spy(execution_order=5))
    res = phase.execute(g, show_training_progress=False)
    val = res.metrics.series("val_loss")
    assert len(val) == res.n_epochs == len(res.metrics.series("w_norm")) == len(seen)
    assert es.best_epoch == int(np.argmin(val))
    # the restored variables reproduce the best validation loss
    check = ev.execute(g)
    assert check.aggregated_losses("mlp")["mlp.mse"] == pytest.approx(min(val), rel=1e-5)
    if es.stopped_epoch is not None:
        assert res.n_epochs == es.stopped_epoch + 1 < 12
    with pytest.raises(ValueError, match="already has a EarlyStopping"):
        phase.add_callback(EarlyStopping())


def test_result_recording_modes(trained):
    fs, g, init, _, _ = trained
    last = train_phase(n_epochs=2, result_recording="last").execute(g, show_training_progress=False)
    assert last.epochs[0].records is None and last.epochs[1].records is not None
    none = train_phase(n_epochs=2, result_recording="none").execute(g, show_training_progress=False)
    assert none.metrics.series("train_loss") and none.epochs[1].records is None
    with pytest.raises(ValueError, match="did not record tensors"):
        none.stacked_tensors("mlp", "outputs")
    assert len(none.stacked_tensors("mlp", "sample_uuids")) == 192


def test_batch_hooks_chunk_scan_same_numbers():
    fs = make_featureset(register=False)
    g1 = make_mlp_graph(fs, register=False)
    g2 = make_mlp_graph(fs, register=False)
    calls = []

    class BatchSpy(Callback):
        def on_batch_end(self, *, epoch, batch, **kw):
            calls.append((epoch, batch))

    train_phase(n_epochs=2).execute(g1, show_training_progress=False)
    p2 = train_phase(n_epochs=2, callbacks=[BatchSpy()])
    p2.execute(g2, show_training_progress=False)
    assert calls == [(e, b) for e in range(2) for b in range(6)]
    chex.assert_trees_all_close(g1.variables, g2.variables, rtol=1e-5, atol=1e-6)


def test_eval_phase_chunks_and_errors(trained):
    fs, g, *_ = trained
    ev = EvalPhase("test", input_sources=[InputBinding.for_evaluation(node="mlp", split="val")],
                   losses=[mse_on("mlp")], batch_size=20)
    res = ev.execute(g)
    out = res.stacked_tensors("mlp", "outputs")
    assert out.shape == (64, 1) and res.n_batches == 4
    full = g.forward({"mlp": fs.get_split("val").get_features()})["mlp"]
    np.testing.assert_allclose(out, np.asarray(full), rtol=1e-5, atol=1e-6)
    whole = EvalPhase.from_split("all", split="val", losses=[mse_on("mlp")]).execute(g)
    assert whole.aggregated_losses("mlp")["mlp.mse"] == pytest.approx(
        res.aggregated_losses("mlp")["mlp.mse"], rel=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        EvalPhase("x", input_sources=[], batch_size=0)


def test_fit_phase_ridge_then_frozen():
    fs = make_featureset(n=128, register=False)
    enc = ModelNode("enc", SequentialMLP(output_shape=(1, 6), n_layers=1, hidden_dim=6),
                    upstream_ref=fs.reference(), register=False)
    ridge = ModelNode("ridge", RidgeRegression(alpha=1e-3), upstream_ref=enc, register=False)
    g = ModelGraph([enc, ridge], optimizer=Optimizer("adam"), register=False).build()
    before = g.variables
    fit = FitPhase.from_split("fit", split="train", losses=[mse_on("ridge")])
    res = fit.execute(g)
    assert "ridge" in g.frozen_paths
    chex.assert_trees_all_equal(g.variables["params"]["enc"], before["params"]["enc"])
    # the closed-form fit beats the random initial head
    ev = EvalPhase.from_split("e", split="train", losses=[mse_on("ridge")])
    fitted = res.aggregated_losses("ridge")["ridge.mse"]
    assert fitted == pytest.approx(ev.execute(g).aggregated_losses("ridge")["ridge.mse"], rel=1e-4)
    assert fitted < ev.execute(g, variables=before).aggregated_losses("ridge")["ridge.mse"]
    with pytest.raises(ValueError, match="no active node has a Fittable model"):
        FitPhase.from_split("f2", split="train", active_nodes=["enc"]).execute(g)
    # freeze_after_fit=False: refitting gives the same closed-form solution, nothing frozen
    g.unfreeze()
    again = FitPhase("f3", input_sources=[InputBinding.for_evaluation(node="enc", split="train")],
                     losses=[mse_on("ridge")], freeze_after_fit=False).execute(g)
    assert not g.frozen_paths
    assert again.aggregated_losses("ridge")["ridge.mse"] == pytest.approx(fitted, rel=1e-4)


def test_triplet_roles_through_phase():
    from modjax import SimilarityCondition, TripletSampler
    fs = make_featureset(register=False)
    enc = ModelNode("enc", SequentialMLP(output_shape=(1, 3), n_layers=1, hidden_dim=8),
                    upstream_ref=fs.reference(), register=False)
    g = ModelGraph([enc], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}),
                   register=False).build()
    sampler = TripletSampler({"group": SimilarityCondition(mode="similar")},
                             {"group": SimilarityCondition(mode="dissimilar")}, batch_size=16)
    trip = AppliedLoss("triplet", on="enc", inputs=["anchor.outputs", "positive.outputs",
                                                    "negative.outputs"])
    phase = TrainPhase("trip", input_sources=[InputBinding.for_training(
        node="enc", sampler=sampler, split="train")], losses=[trip], n_epochs=4)
    res = phase.execute(g, show_training_progress=False)
    tl = res.metrics.series("train_loss")
    assert tl[-1] < tl[0]
    assert res.stacked_tensors("enc", "outputs", role="positive").shape[1:] == (1, 3)


def test_observer_first_epoch_counts_from_phase_start():
    from modjax.observe import Observer
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    obs = Observer()
    res = train_phase(n_epochs=2, observer=obs).execute(g, show_training_progress=False)
    durations = obs.epoch_durations()
    assert len(durations) == 2
    first = res.epochs[0]
    # stamped before the first scan: epoch 1 spans at least its own (compiling) wall time
    assert obs.start_time() <= first.started_at
    assert durations[0] >= first.ended_at - first.started_at > 0
    np.testing.assert_allclose(obs.trend("train_loss").values(), res.metrics.series("train_loss"),
                               rtol=1e-5)


def test_progress_bars_without_per_batch_host_sync(monkeypatch):
    import io
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    loss = mse_on("mlp")
    ev = EvalPhase("val", input_sources=[InputBinding.for_evaluation(node="mlp", split="val")])
    phase = train_phase(n_epochs=3, callbacks=[Evaluation(eval_phase=ev,
                                                          metrics=[EvalLossMetric(loss=loss)])])
    phase.execute(g, show_training_progress=False)  # compile outside the guard
    gets = []
    real_get = jax.device_get

    def counting_get(x):
        gets.append(1)
        return real_get(x)

    monkeypatch.setattr(jax, "device_get", counting_get)
    out = io.StringIO()
    # implicit device->host transfers (float(array), np.asarray(array)) would raise here
    with jax.transfer_guard_device_to_host("disallow"):
        res = phase.execute(g, show_training_progress=True, show_sampler_progress=True,
                            persist_progress=True, progress_file=out)
    text = out.getvalue()
    # one explicit transfer per epoch for the train losses + one per evaluation
    assert len(gets) <= 2 * 3
    assert "3/3" in text and "6/6" in text  # epochs and the last epoch's batches
    assert f"train_loss={res.metrics.last('train_loss'):.4g}" in text
    assert f"val_loss={res.metrics.last('val_loss'):.4g}" in text
    quiet = io.StringIO()
    phase.execute(g, show_training_progress=False, progress_file=quiet)
    assert quiet.getvalue() == ""


def test_results_accessors(trained):
    fs, g, init, phase, res = trained
    assert res.epoch_indices == [0, 1, 2, 3] and res.batch_indices == list(range(6))
    assert len(res.epoch_durations) == 4 and all(d > 0 for d in res.epoch_durations)
    # per epoch: a different shuffle of the same 192 rows
    u0 = res.stacked_tensors("mlp", "sample_uuids", epoch=0)
    u3 = res.stacked_tensors("mlp", "sample_uuids", epoch=3)
    assert sorted(u0) == sorted(u3) and list(u0) != list(u3)
    sb = res.stacked_batches("mlp", epoch=0)
    assert set(sb) == {"outputs", "targets", "sample_uuids", "mask"}
    np.testing.assert_array_equal(sb["sample_uuids"], u0)
    np.testing.assert_array_equal(sb["outputs"], res.stacked_tensors("mlp", "outputs", epoch=0))
    as_jax = res.stacked_tensors("mlp", "outputs", fmt="jax")
    assert isinstance(as_jax, jax.Array)
    views = res.source_views("mlp")
    assert list(views) == ["fs"] and views["fs"].n_samples == 192
    # the view holds exactly the sampled rows' data
    np.testing.assert_allclose(np.sort(views["fs"].get_targets()[:, 0]),
                               np.sort(fs.get_split("train").get_targets()[:, 0]))
    # the per-epoch loss aggregate is the sample-weighted mean of the batch losses
    bl = res.batch_losses(1)["mlp.mse"]
    counts = np.array([32] * 6)
    assert res.metrics.series("train_loss")[1] == pytest.approx(float((bl * counts).sum() / 192))
    assert res.aggregated_losses("mlp", reducer="sum", epoch=1)["mlp.mse"] == pytest.approx(bl.sum())
    with pytest.raises(KeyError, match="has no epoch 9"):
        res.stacked_tensors("mlp", "outputs", epoch=9)


def test_losses_decrease_on_the_reference_workload():
    """Issue 4's reference: 5,000 x 10 (4,000 train), tanh(x @ w) + noise,
    SequentialMLP(2, 32), Adam(1e-3), MSE, batch 32, shuffled (3 of the 20 epochs here)."""
    from modjax import FeatureSet
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 10)).astype(np.float32)
    w = rng.normal(size=(10,)).astype(np.float32) / np.sqrt(10)
    y = (np.tanh(x @ w) + 0.1 * rng.normal(size=5000)).astype(np.float32)
    data = {f"x{i}": x[:, i] for i in range(10)} | {"y": y}
    fs = FeatureSet.from_dict("ref", data, [f"x{i}" for i in range(10)], "y", register=False)
    fs.add_split(fs.take(np.arange(4000), label="train"), "train")
    fs.add_split(fs.take(np.arange(4000, 5000), label="test"), "test")
    node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=32), upstream_ref=fs.reference(),
                     register=False)
    g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3}),
                   register=False).build(key=0)
    test = EvalPhase.from_split("test", split="test", losses=[mse_on("mlp")])
    before = test.execute(g).aggregated_losses("mlp")["mlp.mse"]
    phase = TrainPhase.from_split("ref", split="train", sampler=SimpleSampler(32, seed=0),
                                  losses=[mse_on("mlp")], n_epochs=3)
    res = phase.execute(g, show_training_progress=False)
    tl = res.metrics.series("train_loss")
    after = test.execute(g).aggregated_losses("mlp")["mlp.mse"]
    assert res.n_batches == 125 and phase.n_traces == 1
    assert tl[0] > tl[1] > tl[2]
    # noise variance is 0.01: the held-out loss falls well towards it
    assert after < 0.3 * before and after < 0.1


def test_input_binding_upstream_forms_and_config():
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    train = fs.get_split("train")
    # FeatureSet + split, FeatureSet label + split, and a view fed as is: the same rows
    forms = [InputBinding.for_evaluation(node="mlp", upstream=fs, split="train"),
             InputBinding.for_evaluation(node="mlp", upstream="fs", split="train"),
             InputBinding.for_evaluation(node=next(iter(g.nodes.values())), upstream=train)]
    outs = []
    for b in forms:
        node, ref, view, key = b.resolve(g, owner="test")
        assert node.label == "mlp" and key == "mlp" and view.n_samples == 192
        outs.append(EvalPhase("e", input_sources=[b]).execute(g).stacked_tensors("mlp", "outputs"))
    chex.assert_trees_all_equal(outs[0], outs[1], outs[2])
    with pytest.raises(ValueError, match="node 'mlp' does not read FeatureSet 'other'"):
        InputBinding.for_evaluation(node="mlp", upstream="other").resolve(g, owner="test")
    with pytest.raises(GraphStructureError, match="node 'nope' is not in graph"):
        InputBinding.for_evaluation(node="nope").resolve(g, owner="test")
    b = InputBinding.for_training(node="mlp", sampler=SimpleSampler(16, seed=4), split="val")
    back = InputBinding.from_config(b.get_config())
    assert (back.node, back.split, back.stream) == ("mlp", "val", "default")
    assert back.sampler.batch_size == 16 and back.sampler.seed == 4
    with pytest.raises(TypeError, match="node must be a node or label"):
        InputBinding(3)


def test_early_stopping_logic_and_errors():
    from types import SimpleNamespace

    from modjax.train import MetricStore

    class FakePhase:
        label = "p"
        checkpointing = None

        def __init__(self):
            self.stopped, self.restored, self.epoch = False, None, 0

        def request_stop(self):
            self.stopped = True

        def snapshot(self):
            return {"variables": self.epoch}

        def restore_snapshot(self, snap):
            self.restored = snap

    def run(es, values):
        phase = FakePhase()
        res = SimpleNamespace(metrics=MetricStore(), stopped_early=False, callbacks=[],
                              best_epoch=None)
        es.on_phase_start()
        for e, v in enumerate(values):
            phase.epoch = e
            res.metrics.log("acc", v, epoch=e)
            es.on_epoch_end(phase=phase, epoch=e, results=res)
            if phase.stopped:
                break
        es.on_phase_end(phase=phase, results=res)
        return phase, res

    es = EarlyStopping(monitor="acc", mode="max", patience=1, min_delta=0.05, restore_best=True)
    phase, res = run(es, [0.5, 0.7, 0.72, 0.74, 0.9])
    # 0.72 and 0.74 are within min_delta of 0.7: two epochs without improvement stop it
    assert es.best_epoch == 1 and es.stopped_epoch == 3 and res.stopped_early
    assert phase.restored == {"variables": 1} and res.best_epoch == 1
    assert res.callbacks[-1]["best_value"] == 0.7
    with pytest.raises(KeyError, match="monitors 'val_loss', which phase 'p' did not log"):
        run(EarlyStopping(), [0.1])
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience must be >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="EvalLossMetric needs an AppliedLoss"):
        EvalLossMetric(loss="mse")
    assert EarlyStopping.from_config(es.get_config()).get_config() == es.get_config()


def test_phase_raising_mid_training_leaves_graph_as_before():
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    train_phase(n_epochs=1).execute(g, show_training_progress=False)  # an opt state exists
    before_vars, before_opt = g.variables, g.opt_state

    class Boom(Callback):
        def on_epoch_end(self, *, epoch, **kw):
            if epoch == 1:
                raise RuntimeError("callback failed at epoch 1")

    phase = train_phase(n_epochs=3, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="callback failed at epoch 1"):
        phase.execute(g, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, before_vars)
    chex.assert_trees_all_equal(g.opt_state, before_opt)
    assert phase.epochs_run == 0  # counters roll back with the graph
    chex.assert_trees_all_equal(phase.current_variables(), before_vars)
