"""A tiny regression task shared by the vectorized-training tests."""

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
from modjax.train.hyperparams import HyperOptimizer


def task(label: str = "t", n: int = 203, seed: int = 0, hyper: bool = False, hidden: int = 8,
         experiment: bool = True, names: str | None = None):
    """(experiment, FeatureSet, graph, mse loss) of a small tanh regression (the
    FeatureSet and node are named after ``names``, default ``label``)."""
    exp = Experiment(label, registration_policy="overwrite") if experiment else None
    label = names or label
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    fs = FeatureSet.from_dict(f"{label}_fs", {"x": x, "y": np.tanh(x.sum(1))}, "x", "y")
    fs.split_random({"train": 0.7, "val": 0.3}, seed=0)
    node = ModelNode(f"{label}_mlp", SequentialMLP(n_layers=2, hidden_dim=hidden),
                     upstream_ref=fs.reference())
    opt = (HyperOptimizer if hyper else Optimizer)("adam", opt_kwargs={"lr": 1e-2})
    graph = ModelGraph([node], optimizer=opt).build(key=0)
    mse = AppliedLoss("mse", on=f"{label}_mlp", inputs=["outputs", "targets"])
    return exp, fs, graph, mse


def train_phase(mse, *, epochs: int = 3, seed: int = 0, batch: int = 16, callbacks=(),
                label: str = "train", **kw) -> TrainPhase:
    return TrainPhase.from_split(label, split="train", sampler=SimpleSampler(batch, seed=seed),
                                 losses=[mse], n_epochs=epochs, seed=seed,
                                 callbacks=list(callbacks), **kw)


def validation(mse, label: str = "v") -> Evaluation:
    return Evaluation(eval_phase=EvalPhase.from_split(label, split="val", losses=[mse]),
                      metrics=[EvalLossMetric(loss=mse)])


def max_diff(a, b) -> float:
    import jax
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
