"""Bridges tour: a PyTorch encoder and a scikit-learn head inside one modjax graph.

1. A ``torch.nn.Module`` encoder feeds a JAX head; both train *graph-wise* with one optax
   optimizer inside the jitted epoch (the torch backward is torch autograd).
2. The encoder is frozen and a scikit-learn ``Ridge`` head is fitted on its outputs by
   a ``FitPhase``.
3. The graph is saved (torch weights through Orbax, the fitted Ridge through skops) and
   reloaded: the reloaded graph predicts exactly the same.

Run: ``python examples/bridges_tour.py`` (needs the ``torch`` and ``sklearn`` extras).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge

from modjax import (
    AppliedLoss,
    EvalPhase,
    FeatureSet,
    FitPhase,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.bridge import TorchModelWrapper
from modjax.context import ExperimentContext


class Encoder(torch.nn.Module):
    """A small torch MLP: 6 features -> 8 tanh units."""

    def __init__(self, n_in: int = 6, width: int = 8) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, width), torch.nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_data(n: int = 600, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.05 * rng.normal(size=n)
    data = {f"x{i}": x[:, i] for i in range(6)} | {"y": y.astype(np.float32)}
    fs = FeatureSet.from_dict("tour", data, [f"x{i}" for i in range(6)], "y")
    fs.add_split(fs.take(np.arange(480), label="train"), "train")
    fs.add_split(fs.take(np.arange(480, n), label="val"), "val")
    return fs


def main(n_epochs: int = 30, verbose: bool = True) -> dict[str, Any]:
    """Run the tour; returns the figures it prints."""
    with ExperimentContext(registration_policy="overwrite").activate():
        fs = make_data()
        enc = ModelNode("encoder", TorchModelWrapper(model_class=Encoder),
                        upstream_ref=fs.reference())
        head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=16), upstream_ref=enc)
        ridge = ModelNode("ridge", Ridge(alpha=1e-2), upstream_ref=enc)
        graph = ModelGraph([enc, head, ridge],
                           optimizer=Optimizer("adam", opt_kwargs={"lr": 3e-3})).build(key=0)
        mse = {n: AppliedLoss("mse", on=n, inputs=["outputs", "targets"])
               for n in ("head", "ridge")}

        # 1. graph-wise training of the torch encoder and the JAX head (ridge left out)
        train = TrainPhase("train", input_sources=[InputBinding.for_training(
            node="encoder", sampler=SimpleSampler(32, seed=0), split="train")],
            losses=[mse["head"]], n_epochs=n_epochs, active_nodes=["head"])
        losses = train.execute(graph, show_training_progress=False).metrics.series("train_loss")

        # 2. freeze the encoder, fit the scikit-learn head on its outputs
        graph.freeze(["encoder"])
        FitPhase.from_split("fit", split="train", active_nodes=["ridge"]).execute(graph)
        val = EvalPhase.from_split("val", split="val", losses=[mse["head"], mse["ridge"]])
        res = val.execute(graph)
        head_mse = res.aggregated_losses("head")["head.mse"]
        ridge_mse = res.aggregated_losses("ridge")["ridge.mse"]

        # 3. save and reload (a fresh context, as in another process)
        x_val = fs.get_split("val").get_features()
        before = graph.forward({"encoder": x_val})
        with tempfile.TemporaryDirectory() as tmp:
            fs.save(Path(tmp) / "fs")
            graph.save(Path(tmp) / "graph")
            with ExperimentContext().activate():
                FeatureSet.load(Path(tmp) / "fs")
                # Encoder is this script's class: importing it needs the caller's permission
                back = ModelGraph.load(Path(tmp) / "graph", allow_packaged_code=True)
                after = back.forward({"encoder": x_val})
        same = all(np.array_equal(np.asarray(before[k]), np.asarray(after[k]))
                   for k in ("encoder", "head", "ridge"))
    report = {"first_train_loss": losses[0], "final_train_loss": losses[-1],
              "val_mse_head": head_mse, "val_mse_ridge": ridge_mse, "reload_identical": same,
              "target_var": float(np.var(fs.get_split("val").get_targets()))}
    if verbose:
        print(f"train loss {losses[0]:.3f} -> {losses[-1]:.3f} over {n_epochs} epochs")
        print(f"validation MSE: JAX head {head_mse:.4f}, scikit-learn Ridge head "
              f"{ridge_mse:.4f} (target variance {report['target_var']:.3f})")
        print(f"reloaded graph predicts identically: {same}")
    return report


if __name__ == "__main__":
    # run through the module's importable name, so a saved config can name Encoder by its
    # import path (a class of "__main__" cannot be imported back)
    import bridges_tour

    bridges_tour.main()
