"""modjax quickstart: data -> branching graph -> training with validation -> report.

Generates a small battery-like regression problem (no download), then:

1. a FeatureSet with train/val/test splits and a StandardScaler on the target,
2. a branching ModelGraph: two encoders on different feature groups, concatenated,
   followed by a regression head,
3. a TrainPhase (one jitted lax.scan per epoch) with an Evaluation callback logging
   ``val_loss`` and EarlyStopping restoring the best epoch,
4. an EvalPhase on the test split and predictions mapped back to the target's units,
5. a short printed report.

Run:  python examples/quickstart.py   (a few seconds on a laptop CPU)
"""

from __future__ import annotations

import time

import numpy as np

from modjax import (
    AppliedLoss,
    ConcatNode,
    EarlyStopping,
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


def make_data(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Cells with a 10-point voltage curve, a temperature and a state of health (SOH)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 10, dtype=np.float32)
    fade = rng.uniform(0.0, 0.3, size=(n, 1)).astype(np.float32)
    voltage = (3.0 + 1.2 * np.exp(-3.0 * t)[None, :] * (1.0 - fade)
               + 0.01 * rng.normal(size=(n, 10))).astype(np.float32)
    temperature = rng.uniform(15.0, 45.0, size=n).astype(np.float32)
    soh = (100.0 * (1.0 - fade[:, 0]) - 0.05 * (temperature - 25.0)
           + 0.3 * rng.normal(size=n)).astype(np.float32)
    return {"voltage": voltage, "temperature": temperature, "soh": soh}


def main(n_epochs: int = 30, seed: int = 0, verbose: bool = True) -> dict[str, float]:
    """Build, train and evaluate; returns the report's numbers."""
    start = time.perf_counter()
    exp = Experiment("quickstart", registration_policy="overwrite")

    # 1. data: one Arrow-backed FeatureSet, splits are index views, target scaled
    fs = FeatureSet.from_dict("cells", make_data(seed=seed),
                              feature_keys=["voltage", "temperature"], target_keys="soh")
    fs.split_random({"train": 0.7, "val": 0.15, "test": 0.15}, seed=seed)
    fs.fit_transform("StandardScaler", domain="features", keys="temperature", fit_to_split="train")
    fs.fit_transform("StandardScaler", domain="targets", fit_to_split="train")

    # 2. a branching graph: curve encoder + temperature encoder -> concat -> head
    curve = ModelNode("curve_enc", SequentialMLP(output_shape=(1, 8), n_layers=2, hidden_dim=32,
                                                 activation="tanh"),
                      upstream_ref=fs.reference(features=["voltage"]))
    temp = ModelNode("temp_enc", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                     upstream_ref=fs.reference(features=["temperature"]))
    merged = ConcatNode("merge", [curve, temp], concat_axis=-1, concat_axis_targets="first")
    head = ModelNode("soh_head", SequentialMLP(n_layers=2, hidden_dim=16), upstream_ref=merged)
    graph = ModelGraph([curve, temp, merged, head],
                       optimizer=Optimizer("adam", opt_kwargs={"lr": 3e-3})).build(key=seed)

    # 3. training with validation and early stopping
    mse = AppliedLoss("mse", on="soh_head", inputs=["outputs", "targets"])
    val = EvalPhase.from_split("val", split="val", losses=[mse])
    train = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(64, seed=seed), losses=[mse],
        n_epochs=n_epochs, seed=seed,
        callbacks=[Evaluation(eval_phase=val, metrics=[EvalLossMetric(loss=mse)]),
                   EarlyStopping(monitor="val_loss", patience=5, restore_best=True)])
    exp.execution_plan.add_phase(train)
    exp.execution_plan.add_phase(EvalPhase.from_split("test", split="test", losses=[mse]))
    results = exp.run(show_training_progress=verbose)

    # 4. predictions in the target's own units (the scaler is inverted)
    test = results.get_eval_result("test")
    pred = test.stacked_tensors("soh_head", "outputs", unscale=True)[:, 0]
    true = test.stacked_tensors("soh_head", "targets", unscale=True)[:, 0]
    uuids = test.stacked_tensors("soh_head", "sample_uuids")
    tr = results.get_train_result("train")
    report = {
        "epochs_run": tr.n_epochs,
        "best_epoch": int(np.argmin(tr.metrics.series("val_loss"))),
        "first_train_loss": tr.metrics.series("train_loss")[0],
        "final_train_loss": tr.metrics.series("train_loss")[-1],
        "best_val_loss": min(tr.metrics.series("val_loss")),
        "test_mse_scaled": test.aggregated_losses("soh_head")["soh_head.mse"],
        "test_mae_soh": float(np.mean(np.abs(pred - true))),
        "test_rmse_soh": float(np.sqrt(np.mean((pred - true) ** 2))),
        "soh_std": float(np.std(true)),
        "n_test": len(uuids),
        "compilations": train.n_traces,
        "seconds": time.perf_counter() - start,
    }

    # 5. report
    if verbose:
        print(graph.summary())
        print(f"\ntrained {report['epochs_run']} epochs (best epoch {report['best_epoch']}, "
              f"step compiled {report['compilations']}x)")
        print(f"train loss {report['first_train_loss']:.3f} -> {report['final_train_loss']:.3f}, "
              f"best val loss {report['best_val_loss']:.3f} (standardised units)")
        print(f"test: MAE {report['test_mae_soh']:.2f} SOH points, RMSE "
              f"{report['test_rmse_soh']:.2f} (target std {report['soh_std']:.2f}), "
              f"n={report['n_test']}")
        for u, p, t in list(zip(uuids, pred, true))[:3]:
            print(f"  sample {u[:8]}: predicted {p:6.2f}  true {t:6.2f}")
        print(f"done in {report['seconds']:.1f}s")
    return report


if __name__ == "__main__":
    main()
