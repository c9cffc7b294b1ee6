"""A torch encoder + JAX head + scikit-learn head through an Experiment: run, preview,
save/load, CrossValidation, summary and mermaid."""

from __future__ import annotations

import chex
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("skops")

from bridge_helpers import make_featureset, mse_on  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

from modjax import (  # noqa: E402
    CrossValidation,
    CVBinding,
    EvalPhase,
    Experiment,
    FitPhase,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.bridge import TorchModelWrapper  # noqa: E402


class Encoder(torch.nn.Module):
    def __init__(self, n_in: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, width), torch.nn.Tanh())

    def forward(self, x):
        return self.net(x)


def _experiment(label: str = "bridged"):
    fs = make_featureset(n=160)
    enc = ModelNode("enc", TorchModelWrapper(model_class=Encoder, n_in=4, width=6),
                    upstream_ref=fs.reference())
    head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=enc)
    sk = ModelNode("sk", Ridge(alpha=0.1), upstream_ref=enc)
    g = ModelGraph([enc, head, sk], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(
        key=0)
    exp = Experiment.from_active_context(label)
    train = TrainPhase("train", input_sources=[InputBinding.for_training(
        node="enc", sampler=SimpleSampler(32, seed=0), split="train")],
        losses=[mse_on("head")], n_epochs=3, active_nodes=["head"])
    exp.execution_plan.add_phase(train)
    exp.execution_plan.add_phase(FitPhase.from_split("fit", split="train", active_nodes=["sk"]))
    exp.execution_plan.add_phase(EvalPhase.from_split("eval", split="val",
                                                      losses=[mse_on("head"), mse_on("sk")]))
    return fs, g, exp


def test_run_preview_save_load_summary(tmp_path, fresh_context):
    from modjax.context import ExperimentContext

    fs, g, exp = _experiment()
    text = g.summary()
    assert "TorchModelWrapper" in text and "ScikitModelWrapper" in text
    assert "enc" in g.visualize() and "ScikitModelWrapper" in g.visualize()
    before = g.variables
    # a preview changes nothing (fit ids included)
    exp.preview_group(exp.execution_plan, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, before)
    res = exp.run(show_training_progress=False)
    ev = res.flatten()["eval"].aggregated_losses("sk")["sk.mse"]
    assert ev < 0.2 and "sk" in g.frozen_paths
    x = fs.get_split("val").get_features()
    want = g.forward({"enc": x})
    path = exp.save(tmp_path / "exp")
    with ExperimentContext(registration_policy="overwrite").activate():
        back = Experiment.load(path, allow_packaged_code=True)
        got = back.model_graph.forward({"enc": x})
        for k in ("enc", "head", "sk"):
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))


def test_cross_validation_refits_per_fold_and_restores(fresh_context):
    fs, g, exp = _experiment("cv")
    before = g.variables
    cv = CrossValidation(label="cv", bindings=CVBinding(fs, ["train", "val"]), n_folds=2,
                         seed=0, experiment=exp)
    out = cv.run(show_fold_progress=False)
    per = out.fold_metrics()
    assert len(per) == 2 and all(m["eval.sk.mse"] < 0.3 for m in per)
    assert per[0]["eval.sk.mse"] != per[1]["eval.sk.mse"]
    chex.assert_trees_all_equal(g.variables, before)
