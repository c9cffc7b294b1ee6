"""Small real pipelines (FeatureSet -> ModelGraph) shared by the training tests."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from modjax import (
    AppliedLoss,
    ConcatNode,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)


def make_featureset(n: int = 256, n_features: int = 4, seed: int = 0, label: str = "fs",
                    register: bool = True) -> FeatureSet:
    """``y = tanh(x @ w) + noise`` with a group tag, splits train (first 75%) / val."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features,)).astype(np.float32)
    y = np.tanh(x @ w) + 0.05 * rng.normal(size=n).astype(np.float32)
    data = {f"x{i}": x[:, i] for i in range(n_features)}
    data["y"] = y
    # the group is a function of the features, so metric learning on it is learnable
    data["group"] = ((x[:, 0] > 0) * 2 + (x[:, 1] > 0)).astype(np.float32)
    fs = FeatureSet.from_dict(label, data, [f"x{i}" for i in range(n_features)], "y",
                              tag_keys=["group"], register=register)
    cut = int(n * 0.75)
    fs.add_split(fs.take(np.arange(cut), label="train"), "train")
    fs.add_split(fs.take(np.arange(cut, n), label="val"), "val")
    return fs


def make_mlp_graph(fs: FeatureSet, *, optimizer=None, hidden: int = 8, register: bool = True,
                   seed: int = 0) -> ModelGraph:
    node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=hidden),
                     upstream_ref=fs.reference(), register=register)
    opt = optimizer if optimizer is not None else Optimizer("adam", opt_kwargs={"lr": 1e-2})
    return ModelGraph([node], optimizer=opt, register=register).build(key=seed)


def make_branching_graph(fs: FeatureSet, *, optimizer=None, node_optimizers=None,
                         register: bool = True, seed: int = 0) -> ModelGraph:
    """Two encoders on the same FeatureSet, concatenated, then a head."""
    node_optimizers = node_optimizers or {}
    a = ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x0", "x1"]),
                  optimizer=node_optimizers.get("enc_a"), register=register)
    b = ModelNode("enc_b", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x2", "x3"]),
                  optimizer=node_optimizers.get("enc_b"), register=register)
    cat = ConcatNode("cat", [a, b], concat_axis=-1, register=register)
    head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=cat,
                     optimizer=node_optimizers.get("head"), register=register)
    return ModelGraph([a, b, cat, head], optimizer=optimizer, register=register).build(key=seed)


def mse_on(node: str) -> AppliedLoss:
    return AppliedLoss("mse", on=node, inputs=["outputs", "targets"])


def train_phase(label: str = "train", *, node: str = "mlp", n_epochs: int = 3,
                batch_size: int = 32, seed: int = 0, **kw) -> TrainPhase:
    return TrainPhase(label, input_sources=[InputBinding.for_training(
        node=node, sampler=SimpleSampler(batch_size, seed=seed), split="train")],
        losses=kw.pop("losses", None) or [mse_on(node)], n_epochs=n_epochs, **kw)


class TinyGraph:
    """``enc`` (Dense in->hidden, tanh) -> ``head`` (Dense hidden->1), written by hand.

    Implements the graph contract of docs/architecture.md: ``apply(variables, inputs,
    *, key, train, active_nodes, capture) -> (outputs, state)`` and ``route_targets``.
    """

    def __init__(self, n_in: int = 3, hidden: int = 8, seed: int = 0, optimizer=None,
                 node_optimizers=None) -> None:
        k1, k2 = jax.random.split(jax.random.key(seed))
        self.variables = {
            "params": {
                "enc": {"w": jax.random.normal(k1, (n_in, hidden)) * 0.5, "b": jnp.zeros(hidden)},
                "head": {"w": jax.random.normal(k2, (hidden, 1)) * 0.5, "b": jnp.zeros(1)},
            },
            "state": {"enc": {}, "head": {}},
        }
        node_optimizers = node_optimizers or {}
        self.nodes = {lbl: SimpleNamespace(label=lbl, optimizer=node_optimizers.get(lbl))
                      for lbl in ("enc", "head")}
        self.optimizer = optimizer
        self.frozen_paths: set[str] = set()
        self.head_labels = ["enc"]

    def apply(self, variables, inputs, *, key=None, train=False, active_nodes=None, capture=()):
        p = variables["params"]
        x = inputs["enc"]
        h = jnp.tanh(x @ p["enc"]["w"] + p["enc"]["b"])
        out = {"enc": h}
        if active_nodes is None or "head" in active_nodes:
            out["head"] = h @ p["head"]["w"] + p["head"]["b"]
        return out, variables["state"]

    def route_targets(self, targets):
        t = targets["enc"]
        return {"enc": t, "head": t}

    def set_variables(self, v):
        self.variables = v


def hand_forward(params, x):
    h = jnp.tanh(x @ params["enc"]["w"] + params["enc"]["b"])
    return h @ params["head"]["w"] + params["head"]["b"]
