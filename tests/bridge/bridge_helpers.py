"""Small FeatureSets and phases shared by the bridge tests."""

from __future__ import annotations

import numpy as np

from modjax import AppliedLoss, FeatureSet, InputBinding, SimpleSampler, TrainPhase


def make_featureset(n: int = 256, n_features: int = 4, seed: int = 0, label: str = "fs",
                    classes: bool = False) -> FeatureSet:
    """``y = tanh(x @ w)`` (+ noise), or its sign as a 0/1 class; splits train 75% / val."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features,)).astype(np.float32)
    y = np.tanh(x @ w) + 0.05 * rng.normal(size=n).astype(np.float32)
    if classes:
        y = (y > 0).astype(np.float32)
    data = {f"x{i}": x[:, i] for i in range(n_features)}
    data["y"] = y.astype(np.float32)
    fs = FeatureSet.from_dict(label, data, [f"x{i}" for i in range(n_features)], "y")
    cut = int(n * 0.75)
    fs.add_split(fs.take(np.arange(cut), label="train"), "train")
    fs.add_split(fs.take(np.arange(cut, n), label="val"), "val")
    return fs


def mse_on(node: str) -> AppliedLoss:
    return AppliedLoss("mse", on=node, inputs=["outputs", "targets"])


def train_phase(label: str = "train", *, node: str, head: str | None = None, n_epochs: int = 3,
                batch_size: int = 32, seed: int = 0, **kw) -> TrainPhase:
    """A TrainPhase fed at ``head`` (default ``node``) with an MSE loss on ``node``."""
    return TrainPhase(label, input_sources=[InputBinding.for_training(
        node=head or node, sampler=SimpleSampler(batch_size, seed=seed), split="train")],
        losses=kw.pop("losses", None) or [mse_on(node)], n_epochs=n_epochs, **kw)
