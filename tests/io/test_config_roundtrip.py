"""One round trip per component kind of the persistence issue.

For each kind: ``serialize`` -> JSON text -> ``deserialize`` gives the same config, and for
stateful kinds ``set_state`` of the ``get_state`` tree (written and read back with the
Orbax pytree store, as checkpoints do) reproduces the outputs bit-exactly.
"""

from __future__ import annotations

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import (
    AddNode,
    AppliedLoss,
    BatchNorm,
    Callback,
    ConcatNode,
    Conv1D,
    CrossValidation,
    CVBinding,
    Dropout,
    EarlyStopping,
    EvalLossMetric,
    EvalPhase,
    Evaluation,
    Experiment,
    ExperimentCallback,
    FeatureSet,
    FitPhase,
    Identity,
    InputBinding,
    LayerNorm,
    Linear,
    Loss,
    MeanNode,
    ModelGraph,
    ModelNode,
    Optimizer,
    PairedSampler,
    PhaseGroup,
    RidgeRegression,
    SequentialMLP,
    SimilarityCondition,
    SimpleSampler,
    StackNode,
    TrainPhase,
    TripletSampler,
)
from modjax.context import ExperimentContext
from modjax.data.scalers import StandardScaler
from modjax.data.scaling import Scaler
from modjax.io import deserialize, register, serialize
from modjax.io.checkpoints import load_pytree, save_pytree
from modjax.train.checkpointing import Checkpointing


def _json(obj, **kw):
    """serialize -> JSON text -> deserialize; the config must survive unchanged."""
    cfg = serialize(obj)
    text = json.dumps(cfg, sort_keys=True)
    back = deserialize(json.loads(text), **kw)
    assert type(back) is type(obj)
    assert json.dumps(serialize(back), sort_keys=True) == text
    return back


def _through_orbax(tree, tmp_path, name="state", template=None):
    save_pytree(tmp_path / name, tree)
    return load_pytree(tmp_path / name, target=template)


def _featureset(label="data", n=24):
    r = np.random.default_rng(0)
    x = r.normal(size=(n, 3)).astype(np.float32)
    fs = FeatureSet.from_dict(label, {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                                      "y": np.tanh(x.sum(1)), "grp": (x[:, 0] > 0).astype(np.float32)},
                              ["a", "b", "c"], "y", tag_keys=["grp"])
    fs.split_random({"train": 0.75, "val": 0.25}, seed=3)
    return fs


def test_featureset_schema_records_and_state(tmp_path):
    fs = _featureset()
    fs.fit_transform(StandardScaler(), domain="features", fit_to_split="train")
    cfg = json.loads(json.dumps(serialize(fs)))
    state = fs.get_state()
    with ExperimentContext().activate():
        back = deserialize(cfg, state=state)
        assert back.get_config() == fs.get_config()
        assert back.node_id == fs.node_id and back.available_splits == ["train", "val"]
        np.testing.assert_array_equal(back.get_features(), fs.get_features())
        np.testing.assert_array_equal(back.get_split("val").indices, fs.get_split("val").indices)
        scaled = fs.get_features(rep="transformed")[:, :, ...]
        np.testing.assert_array_equal(
            back.unscale_data_for_cols(data=scaled, domain="features", columns=["a", "b", "c"]),
            fs.unscale_data_for_cols(data=scaled, domain="features", columns=["a", "b", "c"]))
        # splitter records replay: the same random split on a copy
        rec = deserialize(serialize(fs.splitter_records[0]))
        assert rec.get_config() == fs.splitter_records[0].get_config() and rec.replayable


def test_scaler_config_and_fitted_state(tmp_path):
    data = np.random.default_rng(1).normal(size=(10, 4))
    s = Scaler("StandardScaler").fit(data)
    back = _json(s)
    assert not back.is_fit
    back.set_state(_through_orbax(s.get_state(), tmp_path))
    np.testing.assert_array_equal(back.transform(data), s.transform(data))
    np.testing.assert_array_equal(back.inverse_transform(data), s.inverse_transform(data))


MODELS = [
    lambda: SequentialMLP(output_shape=(2,), n_layers=2, hidden_dim=8, activation="tanh"),
    lambda: Linear(5),
    lambda: Conv1D(4, kernel_size=3),
    lambda: Dropout(0.25),
    lambda: Identity(),
    lambda: BatchNorm(),
    lambda: LayerNorm(),
    lambda: RidgeRegression(alpha=0.5, output_shape=(1,)),
]


@pytest.mark.parametrize("make", MODELS, ids=lambda m: type(m()).__name__)
def test_model_config_and_variables(make, tmp_path):
    m = make()
    shape = (6, 3) if isinstance(m, Conv1D) else (6,)
    if hasattr(m, "build"):
        m.build(shape)
    back = _json(m)
    if hasattr(back, "build"):
        back.build(shape)
    key = jax.random.key(3)
    params, state = m.init(key, shape)
    p2, s2 = back.init(key, shape)
    chex.assert_trees_all_equal((p2, s2), (params, state))  # config determines the init
    params, state = _through_orbax({"p": params, "s": state}, tmp_path,
                                   template={"p": params, "s": state}).values()
    x = jax.random.normal(jax.random.key(4), (5, *shape))
    y1, _ = m.apply(params, state, x, key=jax.random.key(5), train=True)
    y2, _ = back.apply(params, state, x, key=jax.random.key(5), train=True)
    chex.assert_trees_all_equal(y2, y1)


def _merge_graph(fs):
    a = ModelNode("enc_a", SequentialMLP(output_shape=(4,), n_layers=1),
                  upstream_ref=fs.reference(features=["a", "b"]))
    b = ModelNode("enc_b", Linear(4), upstream_ref=fs.reference(features=["c"]))
    merges = [ConcatNode("cat", [a, b], concat_axis=-1), AddNode("add", [a, b]),
              MeanNode("mean", [a, b]), StackNode("stack", [a, b], axis=1)]
    heads = [ModelNode(f"head_{m.label}", SequentialMLP(output_shape=(1,), n_layers=2, hidden_dim=4),
                       upstream_ref=m) for m in merges]
    return ModelGraph([a, b, *merges, *heads], optimizer=Optimizer("adam", opt_kwargs={"lr": 0.1}))


def test_nodes_merges_graph_and_optimizer(tmp_path):
    fs = _featureset()
    g = _merge_graph(fs).build(key=1)
    grads = jax.tree.map(jnp.ones_like, g.variables["params"])
    _, opt = jax.jit(g.optimizer.update)(grads, g.opt_state, g.variables["params"])
    g.set_opt_state(opt)  # non-trivial Adam moments to restore
    for n in g.nodes.values():
        assert type(_json(n, register=False)) is type(n)
    feats = fs.get_features()
    x = {"enc_a": feats[:, :2], "enc_b": feats[:, 2:]}
    cfg = json.loads(json.dumps(serialize(g)))
    state = g.get_state()
    with ExperimentContext().activate():
        FeatureSet.from_config(fs.get_config(), state=fs.get_state())
        h = deserialize(cfg)
        assert json.dumps(serialize(h), sort_keys=True) == json.dumps(cfg, sort_keys=True)
        h.set_state(_through_orbax(state, tmp_path, template=state))
        chex.assert_trees_all_equal(h.variables, g.variables)
        chex.assert_trees_all_equal(h.opt_state, g.opt_state)
        out_g, out_h = g.forward(x), h.forward(x)
        assert sorted(out_h) == sorted(out_g)
        assert {f"head_{m}" for m in ("add", "cat", "mean", "stack")} <= set(out_g)
        chex.assert_trees_all_equal(out_h, out_g)


def test_optimizer_config_and_state(tmp_path):
    opt = Optimizer("adamw", opt_kwargs={"lr": 1e-2, "weight_decay": 0.1}, clip_norm=1.0)
    params = {"w": jnp.arange(4.0)}
    opt.build(params)
    grads = {"w": jnp.ones(4)}
    _, opt.state = opt.update(grads, opt.state, params)
    back = _json(opt)
    back.build(params)
    back.set_state(_through_orbax(opt.get_state(), tmp_path, template=back.get_state()))
    chex.assert_trees_all_equal(back.state, opt.state)
    chex.assert_trees_all_equal(back.update(grads, back.state, params),
                                opt.update(grads, opt.state, params))


def test_losses():
    y, t = jnp.array([[0.5], [2.0], [-1.0]]), jnp.array([[0.0], [1.0], [1.0]])
    for loss in (Loss("mse"), Loss("huber", loss_kwargs={"delta": 0.5}, reduction="sum")):
        back = _json(loss)
        chex.assert_trees_all_equal(back(y, t), loss(y, t))
    al = AppliedLoss(Loss("mae"), on="mlp", inputs=["outputs", "targets"], weight=0.5)
    back = _json(al)
    assert (back.node, back.label, back.weight) == (al.node, al.label, 0.5)
    chex.assert_trees_all_equal(back.compute([y, t]), al.compute([y, t]))


def test_samplers_config_and_rng_state(tmp_path):
    fs = _featureset()
    for s in (SimpleSampler(5, seed=4, drop_last=True),
              PairedSampler({"grp": SimilarityCondition()}, 4, seed=2),
              TripletSampler({"grp": SimilarityCondition()},
                             {"grp": SimilarityCondition("dissimilar")}, 4, seed=1)):
        s.bind(fs)
        s.next_plan()
        s.next_plan()  # the epoch counter is state
        back = _json(s).bind(fs)
        back.set_state(_through_orbax(s.get_state(), tmp_path, name=type(s).__name__))
        chex.assert_trees_all_equal(back.next_plan(), s.next_plan())


@register("RecordingCallback")
class RecordingCallback(Callback):
    def __init__(self, *, tag: str = "x", label=None, execution_order: int = 0):
        super().__init__(label=label, execution_order=execution_order)
        self.tag = tag

    def get_config(self):
        return {**super().get_config(), "tag": self.tag}


@register("CountingExperimentCallback")
class CountingExperimentCallback(ExperimentCallback):
    pass


def _experiment(n_epochs=1):
    exp = Experiment("roundtrip", registration_policy="overwrite")
    fs = _featureset()  # registered in the experiment's (new, active) context
    node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=2, hidden_dim=8),
                     upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    loss = AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])
    val = EvalPhase.from_split("val", split="val", losses=[loss], batch_size=4)
    train = TrainPhase(
        "train", input_sources=[InputBinding.for_training(
            node="mlp", sampler=SimpleSampler(6, shuffle=True, seed=1), split="train")],
        losses=[loss], n_epochs=n_epochs,
        callbacks=[Evaluation(eval_phase=EvalPhase.from_split("val_cb", split="val", losses=[loss]),
                              metrics=[EvalLossMetric(loss=loss)]),
                   EarlyStopping(monitor="val_loss", patience=3, restore_best=True),
                   RecordingCallback(tag="t1", execution_order=7)],
        checkpointing=Checkpointing(mode="memory", save_on="epoch_end", max_to_keep=2))
    fit = FitPhase.from_split("fit", split="train", freeze_after_fit=False)
    exp.execution_plan.add_phase(train)
    exp.execution_plan.add_group(PhaseGroup("post", [val, PhaseGroup("inner", [fit])]))
    exp.add_callback(CountingExperimentCallback(execution_order=2))
    return exp, fs


def test_phases_groups_callbacks_checkpointing_experiment(tmp_path):
    exp, fs = _experiment()
    train = exp.execution_plan.all[0]
    train.execute(exp.model_graph, experiment=exp, show_training_progress=False)
    cfg = json.loads(json.dumps(serialize(exp)))
    state = exp.get_state()
    for obj in (train, train.callbacks[0], train.callbacks[1], train.callbacks[2],
                train.callbacks[0].metrics[0], train.checkpointing, train.input_sources[0]):
        _json(obj)
    group = exp.execution_plan.all[1]
    assert [p.label for p in _json(group).all] == ["val", "inner"]
    with ExperimentContext().activate():
        FeatureSet.from_config(fs.get_config(), state=fs.get_state())
        back = deserialize(cfg)
        assert json.dumps(serialize(back), sort_keys=True) == json.dumps(cfg, sort_keys=True)
        t2 = back.execution_plan.all[0]
        assert [type(c).__name__ for c in t2.callbacks] == \
            ["Evaluation", "EarlyStopping", "RecordingCallback"]
        assert t2.callbacks[2].tag == "t1" and t2.checkpointing.max_to_keep == 2
        assert [type(c).__name__ for c in back.exp_callbacks] == ["CountingExperimentCallback"]
        back.set_state(_through_orbax(state, tmp_path, template=state))
        chex.assert_trees_all_equal(back.model_graph.variables, exp.model_graph.variables)
        # one more epoch on each: identical (sampler epoch and optimizer state restored)
        r2 = t2.execute(back.model_graph, experiment=back, show_training_progress=False)
    r1 = train.execute(exp.model_graph, experiment=exp, show_training_progress=False)
    assert r2.train_loss == r1.train_loss and r2.val_loss == r1.val_loss
    chex.assert_trees_all_equal(back.model_graph.variables, exp.model_graph.variables)


def test_cross_validation_config():
    exp, fs = _experiment()
    cv = CrossValidation(label="cv", bindings=[CVBinding(fs, ["train", "val"], group_by="grp")],
                         n_folds=3, seed=5, phase=exp.execution_plan.all[0], experiment=exp)
    back = _json(cv)
    assert back.experiment is exp and back.bindings[0].fs is fs
    for (tr1, va1), (tr2, va2) in zip(cv.bindings[0].folds(3, 5), back.bindings[0].folds(3, 5)):
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(va1, va2)


def test_unregistered_callback_is_left_out_with_a_warning():
    exp, fs = _experiment()

    class Local(Callback):
        pass

    exp.execution_plan.all[0].add_callback(Local(label="mine"))
    with pytest.warns(UserWarning, match=r"phase 'train': callback 'mine' \(Local\) is not registered"):
        cfg = serialize(exp)
    names = [c["class"] for c in cfg["config"]["execution_plan"]["phases"][0]["config"]["callbacks"]]
    assert names == ["Evaluation", "EarlyStopping", "RecordingCallback"]
