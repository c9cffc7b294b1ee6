"""Classification end to end on scikit-learn's 8x8 digits (1797 images, 10 classes).

1. a FeatureSet with the 64 pixels as features and the integer digit as the target,
   split train/val/test (stratified by the label) and the pixels standardised,
2. a logits head: ``SequentialMLP(output_shape=(10,))`` trained with
   ``sparse_cross_entropy`` against the integer labels (no one-hot needed),
3. training accuracy computed inside the jitted training step (``TrainPhase(metrics=...)``,
   logged as ``train_accuracy``), validation accuracy inside the jitted evaluation each
   epoch (``Evaluation`` + ``EvalMetric``), early stopping on the validation loss,
4. test metrics from an ``EvalPhase`` with ``AppliedMetric`` s, class probabilities from
   the logits, and ``graph.predict`` on raw pixels.

Needs scikit-learn (only for the data). Run:  python examples/classification_digits.py
"""

from __future__ import annotations

import numpy as np

from modjax import (
    AppliedLoss,
    AppliedMetric,
    EarlyStopping,
    EvalLossMetric,
    EvalMetric,
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
from modjax.train import probabilities


def main(n_epochs: int = 40, seed: int = 0, verbose: bool = True) -> dict[str, float]:
    """Train and evaluate the digits classifier; returns the test numbers."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # the data comes with scikit-learn
        raise SystemExit(f"this example needs scikit-learn for its data: {e}") from e

    digits = load_digits()
    exp = Experiment("digits", registration_policy="overwrite")
    fs = FeatureSet.from_dict("digits", {"pixels": digits.data.astype(np.float32),
                                         "digit": digits.target.astype(np.int32)},
                              feature_keys="pixels", target_keys="digit")
    fs.split_random({"train": 0.7, "val": 0.15, "test": 0.15}, seed=seed)
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train")

    head = ModelNode("clf", SequentialMLP(output_shape=(10,), n_layers=2, hidden_dim=64),
                     upstream_ref=fs.reference())
    graph = ModelGraph([head], optimizer=Optimizer("adam", opt_kwargs={"lr": 3e-3}))
    graph.build(key=seed)

    ce = AppliedLoss("sparse_cross_entropy", on="clf")
    accuracy = AppliedMetric("accuracy", on="clf")
    macro_f1 = AppliedMetric("f1", on="clf", average="macro")
    val = EvalPhase.from_split("val", split="val")
    train = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(64, seed=seed), losses=[ce],
        n_epochs=n_epochs, seed=seed, metrics=[accuracy],
        callbacks=[Evaluation(eval_phase=val, metrics=[EvalLossMetric(loss=ce),
                                                       EvalMetric(metric=accuracy)]),
                   EarlyStopping(monitor="val_loss", patience=5, restore_best=True)])
    tr = exp.run_phase(train, show_training_progress=verbose)
    test = exp.run_phase(EvalPhase.from_split("test", split="test", losses=[ce],
                                              metrics=[accuracy, macro_f1]))

    logits = test.stacked_tensors("clf", "outputs")
    probs = np.asarray(probabilities(logits))           # (n_test, 10), rows sum to 1
    raw_pixels = fs.get_split("test").get_features(rep="raw")[:, 0]
    predicted = graph.predict(raw_pixels).argmax(-1)   # scaled like training, in chunks
    report = {
        "epochs_run": tr.n_epochs,
        "last_train_accuracy": tr.metrics.series("train_accuracy")[-1],
        "best_val_accuracy": max(tr.metrics.series("val_accuracy")),
        "test_accuracy": test.metrics.last("clf.accuracy"),
        "test_macro_f1": test.metrics.last("clf.f1"),
        "mean_top_probability": float(probs.max(-1).mean()),
        "predict_agrees": float(np.mean(predicted == logits.argmax(-1))),
    }
    if verbose:
        print(tr)
        print(f"trained {report['epochs_run']} epochs, train accuracy "
              f"{report['last_train_accuracy']:.3f}, best val accuracy "
              f"{report['best_val_accuracy']:.3f}")
        print(f"test accuracy {report['test_accuracy']:.3f}, macro F1 "
              f"{report['test_macro_f1']:.3f}, mean top-class probability "
              f"{report['mean_top_probability']:.3f}")
    return report


if __name__ == "__main__":
    main()
