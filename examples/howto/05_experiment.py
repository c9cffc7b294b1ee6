"""How-to 05: an Experiment with train/eval phases, an execution plan, preview runs,
history, phase groups, checkpoints and save/load.

The ModularML how-to "Create and Use an Experiment" on modjax (JAX ``SequentialMLP``;
``backend="torch"`` is accepted and ignored). Run: ``python examples/howto/05_experiment.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from modjax import (
    AppliedLoss,
    EvalPhase,
    Experiment,
    FeatureSet,
    InputBinding,
    Loss,
    ModelGraph,
    ModelNode,
    Optimizer,
    PhaseGroup,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)


def main() -> dict:
    warnings.simplefilter("ignore")
    exp = Experiment(label="my_experiment", registration_policy="overwrite")
    rng = np.random.default_rng(42)
    fs = FeatureSet.from_dict(label="SensorData",
                              data={"voltage": list(rng.standard_normal((500, 10))),
                                    "soh": list(rng.standard_normal((500, 1)))},
                              feature_keys="voltage", target_keys="soh")
    fs.split_random(ratios={"train": 0.8, "test": 0.2}, seed=13)
    print(f"Splits: {fs.available_splits}, train {len(fs['train'])}, test {len(fs['test'])}")
    fs_ref = fs.reference(features="voltage", targets="soh")
    node = ModelNode(label="MLP", upstream_ref=fs_ref,
                     model=SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32))
    graph = ModelGraph(label="SimpleGraph", nodes=[node],
                       optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3}, backend="torch"))
    graph.build()
    print(f"Experiment model_graph: {exp.model_graph.label}")

    # -- phases
    train_binding = InputBinding.for_training(
        node=node, sampler=SimpleSampler(batch_size=32, shuffle=True, seed=42),
        upstream=None, split="train")
    eval_binding = InputBinding.for_evaluation(node=node, upstream=None, split="test")
    print(f"Train binding split: {train_binding.split}; eval: {eval_binding.split}")
    mse_loss = AppliedLoss(loss=Loss("mse", backend="torch"), on=node,
                           inputs=["outputs", "targets"])
    print(f"Loss: {mse_loss.label}")
    train_phase = TrainPhase(label="train", input_sources=[train_binding], losses=[mse_loss],
                             n_epochs=3)
    print(f"TrainPhase: {train_phase.label} n_epochs={train_phase.n_epochs} "
          f"losses={[ls.label for ls in train_phase.losses]}")
    TrainPhase.from_split(label="train_from_split", split="train", losses=[mse_loss],
                          sampler=SimpleSampler(batch_size=32, shuffle=True, seed=42),
                          n_epochs=3)
    eval_phase = EvalPhase.from_split(label="eval", split="test", losses=[mse_loss])
    # mermaid flowcharts (they render in notebooks): splits, samplers, losses
    train_diagram, eval_diagram = train_phase.visualize(), eval_phase.visualize()
    print(train_diagram)
    print(eval_diagram.splitlines()[1])

    # -- the execution plan
    plan = exp.execution_plan
    print(f"Currently empty: {len(plan.all) == 0}")
    plan.add_phase(train_phase)
    plan.add_phase(eval_phase)
    for i, entry in enumerate(plan.all):
        print(f"  [{i}] {entry.label} ({type(entry).__name__})")
    print(f"By index: {plan[0].label}; by label: {plan['train'].label}")
    plan.remove_phase("eval")
    print(f"After remove: {[e.label for e in plan.all]}")
    plan.add_phase(eval_phase)

    # -- running
    exp.run_phase(train_phase)
    exp.run_phase(eval_phase)
    print(f"History entries: {len(exp.history)}")
    results = exp.run()
    print(f"History entries: {len(exp.history)}")
    print(f"Result type: {type(results).__name__}")
    print(f"Contained results: {sorted(results.flatten())}")
    before = len(exp.history)
    exp.preview_phase(eval_phase)
    print(f"State was restored: {before == len(exp.history)}")
    for i, run in enumerate(exp.history):
        print(f"  Run {i}: label={run.label!r}, status={run.status}")
    preview = exp.preview_run()
    print(f"Preview of the plan: {sorted(preview.flatten())}, history still {len(exp.history)}")

    # -- querying results: per-batch losses keyed (epoch, batch, label)
    train_res = results.get_train_result("train")
    losses = train_res.losses(node)
    print(f"Loss axes: {losses.axes}, shape: {losses.shape}")
    per_epoch = losses.where(label="mse").collapse("batch", "mean").collapse("label", "first")
    print(f"Epochs with a mean loss: {sorted(per_epoch.to_dict())}")
    eval_mse = results.get_eval_result("eval").aggregated_losses(node)["mse"]
    print(f"Eval loss is finite: {bool(np.isfinite(eval_mse))}")

    # -- groups
    cycle = PhaseGroup(label="train_eval_cycle")
    cycle.add_phase(TrainPhase.from_split(
        label="cycle_train", split="train", losses=[mse_loss], n_epochs=2,
        sampler=SimpleSampler(batch_size=32, shuffle=True, seed=42)))
    cycle.add_phase(EvalPhase.from_split(label="cycle_eval", split="test", losses=[mse_loss]))
    print(f"Entries: {[e.label for e in cycle.all]}")
    print(f"Group results: {sorted(exp.run_group(cycle).flatten())}")
    outer, inner = PhaseGroup(label="outer"), PhaseGroup(label="inner")
    inner.add_phase(TrainPhase.from_split(
        label="inner_train", split="train", losses=[mse_loss], n_epochs=1,
        sampler=SimpleSampler(batch_size=64, shuffle=True, seed=0)))
    outer.add_group(inner)
    outer.add_phase(EvalPhase.from_split(label="outer_eval", split="test", losses=[mse_loss]))
    print(f"Flattened: {[p.label for p in outer.flatten()]}")

    # -- checkpoints and save/load
    with tempfile.TemporaryDirectory() as ckpt_dir, tempfile.TemporaryDirectory() as save_dir:
        exp.set_checkpoint_dir(Path(ckpt_dir))
        exp.save_checkpoint("after_training", overwrite=True)
        print(f"Available checkpoints: {list(exp.available_checkpoints.keys())}")
        exp.restore_checkpoint("after_training")
        path = exp.save(Path(save_dir) / "my_experiment", overwrite=True)
        loaded = Experiment.load(path, overwrite=True)
        print(f"Loaded experiment: {loaded.label}")
    return {"experiment": exp, "results": results}


if __name__ == "__main__":
    main()
