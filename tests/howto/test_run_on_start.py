"""Evaluation(run_on_start=True): the initial variables are evaluated before training;
the value is logged at epoch -1 and equals an EvalPhase run on the untrained graph."""

from __future__ import annotations

import numpy as np

from modjax import (
    AppliedLoss,
    EvalLossMetric,
    EvalPhase,
    Evaluation,
    Experiment,
    FeatureSet,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.io.registry import deserialize, serialize


def test_run_on_start_logs_the_untrained_evaluation_first():
    exp = Experiment(label="ros", registration_policy="overwrite")
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict(label="RosData", data={
        "x": list(rng.standard_normal((40, 5))), "y": list(rng.standard_normal((40, 1)))},
        feature_keys="x", target_keys="y")
    fs.split_random(ratios={"train": 0.5, "val": 0.5}, seed=0)
    node = ModelNode("M", SequentialMLP(n_layers=1), upstream_ref=fs.reference())
    graph = ModelGraph(nodes=[node], optimizer=Optimizer("sgd", opt_kwargs={"lr": 0.1}))
    graph.build(key=0)
    mse = AppliedLoss("mse", on="M")
    untrained = EvalPhase.from_split("probe", split="val", losses=[mse]).execute(graph)
    want = untrained.aggregated_losses("M")[mse.label]

    ev = Evaluation.from_split(label="val", split="val", losses=[mse], run_on_start=True,
                               every_n_epochs=2, metrics=[EvalLossMetric(loss=mse)])
    phase = TrainPhase.from_split("train", split="train", losses=[mse], n_epochs=3,
                                  sampler=SimpleSampler(batch_size=8, seed=0), callbacks=[ev])
    res = exp.run_phase(phase, show_training_progress=False)
    entries = res.metrics.entries("val_loss")
    assert [e for e, _, _ in entries] == [-1, 1, 2]  # start, every 2nd epoch, the last one
    assert entries[0][2] == want
    assert entries[1][2] < want  # training moved it
    edges = [(c["epoch"], c["edge"]) for c in res.callbacks if c["callback"] == "val"]
    assert edges == [(-1, "phase_start"), (1, "epoch_end"), (2, "epoch_end")]
    assert [e for e, _ in ev.history] == [-1, 1, 2]
    # the option survives a config round trip; the default stays off
    assert deserialize(serialize(ev)).run_on_start is True
    assert Evaluation.from_split(label="v2", split="val").run_on_start is False
