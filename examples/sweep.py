"""A learning-rate x seed sweep as one ExperimentCollection, on generated data.

Every member is the same model with its own seed and learning rate (held in the
optimizer state by ``HyperOptimizer``), so the whole sweep trains as one vmapped program;
each member keeps its own validation curve and early stopping. Prints the comparison
table and writes one HTML page with every member's curves.

Run:  python examples/sweep.py [out_dir]   (a few seconds on a laptop CPU)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modjax import (
    AppliedLoss,
    EarlyStopping,
    EvalLossMetric,
    EvalPhase,
    Evaluation,
    Experiment,
    ExperimentCollection,
    FeatureSet,
    HyperOptimizer,
    ModelGraph,
    ModelNode,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)

LEARNING_RATES = (3e-4, 3e-3, 3e-2)
SEEDS = (0, 1)


def make_template(n: int = 1200, seed: int = 0) -> Experiment:
    """An experiment: 8 features -> a nonlinear target, train/val/test splits."""
    exp = Experiment("sweep", registration_policy="overwrite")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)).astype(np.float32)
    fs = FeatureSet.from_dict("data", {"x": x, "y": y}, "x", "y")
    fs.split_random({"train": 0.7, "val": 0.15, "test": 0.15}, seed=seed)
    node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=32), upstream_ref=fs.reference())
    ModelGraph([node], optimizer=HyperOptimizer("adam", opt_kwargs={"lr": 1e-3})).build(key=0)
    mse = AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])
    val = Evaluation(eval_phase=EvalPhase.from_split("v", split="val", losses=[mse]),
                     metrics=[EvalLossMetric(loss=mse)])
    stop = EarlyStopping(monitor="val_loss", patience=3, restore_best=True)
    exp.execution_plan.add_phase(TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(32, seed=0), losses=[mse], n_epochs=12,
        callbacks=[val, stop]))
    exp.execution_plan.add_phase(EvalPhase.from_split("test", split="test", losses=[mse]))
    return exp


def main(out_dir: str | Path | None = None, verbose: bool = True) -> ExperimentCollection:
    """Run the sweep; print the table and write ``sweep.html`` and ``sweep.csv``."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="modjax-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    exp = make_template()
    sweep = ExperimentCollection(template=exp, label="lr x seed", members={
        f"lr{lr:g}_seed{s}": {"seed": s, "hyperparams": {"learning_rate": lr}}
        for lr in LEARNING_RATES for s in SEEDS})
    t = time.perf_counter()
    sweep.run()
    seconds = time.perf_counter() - t
    sweep.plot_html(out / "sweep.html", ["train.train_loss", "train.val_loss"], log_y=True)
    sweep.to_csv(out / "sweep.csv")
    if verbose:
        print(f"{len(sweep)} members in {len(sweep.groups())} program(s), {seconds:.1f}s")
        print(sweep.table(["train.val_loss", "test.mlp.mse"]))
        best = min(sweep.labels, key=lambda k: sweep.histories()[k]["test.mlp.mse"][-1])
        print(f"best member: {best}")
        print(f"plot: {out / 'sweep.html'}")
    return sweep


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
