"""Small shared builders for the everyday-use tests (classification and regression)."""

from __future__ import annotations

import numpy as np

from modjax import FeatureSet, ModelGraph, ModelNode, Optimizer, SequentialMLP


def blobs(n: int = 240, n_classes: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussian blobs in 4-D with integer labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    centers = rng.normal(scale=3.0, size=(n_classes, 4))
    x = (centers[y] + rng.normal(size=(n, 4))).astype(np.float32)
    return {"x": x, "y": y.astype(np.int32)}


def classifier(n_classes: int = 3, *, width: int | None = None, seed: int = 0,
               lr: float = 1e-2) -> tuple[FeatureSet, ModelGraph]:
    fs = FeatureSet.from_dict("blobs", blobs(n_classes=n_classes, seed=seed), "x", "y")
    fs.split_random({"train": 0.75, "test": 0.25}, seed=seed)
    node = ModelNode("clf", SequentialMLP(output_shape=(width or n_classes,), n_layers=2,
                                          hidden_dim=16), upstream_ref=fs.reference())
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": lr})).build(key=0)
    return fs, graph


def regression(n: int = 200, seed: int = 0, scale_targets: bool = True, lr: float = 1e-2
               ) -> tuple[FeatureSet, ModelGraph]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32) * 5 + 10
    y = (50.0 + 8.0 * np.tanh((x - 10).sum(1) / 5)).astype(np.float32)
    fs = FeatureSet.from_dict("reg", {"x": x, "y": y}, "x", "y")
    fs.split_random({"train": 0.8, "test": 0.2}, seed=seed)
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train")
    if scale_targets:
        fs.fit_transform("StandardScaler", domain="targets", fit_to_split="train")
    node = ModelNode("head", SequentialMLP(n_layers=2, hidden_dim=16), upstream_ref=fs.reference())
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": lr})).build(key=0)
    return fs, graph
