"""dtype/param_dtype of the built-in layers: float64 end to end under x64 (in a
subprocess), bfloat16 compute with float32 parameters, set_variables dtype messages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from ux_helpers import regression

from modjax import (
    AppliedLoss,
    BatchNorm,
    LayerNorm,
    Linear,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError


def _train(graph, epochs=15):
    return TrainPhase.from_split("t", split="train", sampler=SimpleSampler(32, seed=0),
                                 losses=[AppliedLoss("mse", on="head")], n_epochs=epochs
                                 ).execute(graph, show_training_progress=False)


def test_bfloat16_compute_float32_params_close_to_float32():
    fs, g32 = regression()
    head = ModelNode("head", SequentialMLP(n_layers=2, hidden_dim=16, dtype="bfloat16"),
                     upstream_ref=fs.reference())
    g16 = ModelGraph([head], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    assert {str(a.dtype) for a in jax.tree.leaves(g16.variables["params"])} == {"float32"}
    out = g16.forward({"head": fs.get_features()[:4]})["head"]
    assert out.dtype == jnp.bfloat16
    l32 = _train(g32).metrics.series("train_loss")
    l16 = _train(g16).metrics.series("train_loss")
    assert {str(a.dtype) for a in jax.tree.leaves(g16.variables["params"])} == {"float32"}
    assert l16[-1] < 0.5 * l16[0]
    assert abs(l16[-1] - l32[-1]) < 0.05 + 0.2 * l32[-1]


def test_layer_param_dtype_and_config():
    for layer in (Linear(3, param_dtype="bfloat16"), LayerNorm(param_dtype="bfloat16"),
                  BatchNorm(param_dtype="bfloat16")):
        layer.build((4,))
        p, s = layer.init(jax.random.key(0), (4,))
        assert {str(a.dtype) for a in jax.tree.leaves((p, s))} == {"bfloat16"}
        assert layer.get_config()["param_dtype"] == "bfloat16"
        assert type(layer).from_config(layer.get_config()).param_dtype == jnp.bfloat16
    assert "dtype" not in SequentialMLP().get_config()  # old configs stay equal
    with pytest.raises(TypeError, match="floating"):
        Linear(3, dtype="int32")
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="jax_enable_x64"):
            SequentialMLP(param_dtype="float64")


def test_set_variables_with_another_dtype_says_dtype_change():
    fs, graph = regression()
    v = jax.tree.map(lambda a: a.astype(jnp.bfloat16), graph.variables)
    with pytest.raises(ShapeMismatchError, match=r"dtype change: .*bfloat16.*float32.*matches"):
        graph.set_variables(v)


def test_float64_end_to_end_under_x64():
    code = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        from modjax import (AppliedLoss, FeatureSet, ModelGraph, ModelNode, Optimizer,
                            SequentialMLP, SimpleSampler, TrainPhase, EvalPhase, AppliedMetric)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(128, 3))
        fs = FeatureSet.from_dict("f64", {"x": x, "y": np.sin(x.sum(1))}, "x", "y")
        fs.split_random({"train": 0.75, "test": 0.25}, seed=0)
        fs.fit_transform("StandardScaler", domain="targets", fit_to_split="train")
        node = ModelNode("head", SequentialMLP(n_layers=2, hidden_dim=8, param_dtype="float64"),
                         upstream_ref=fs.reference())
        g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
        res = TrainPhase.from_split("t", split="train", sampler=SimpleSampler(32, seed=0),
                                    losses=[AppliedLoss("mse", on="head")], n_epochs=5
                                    ).execute(g, show_training_progress=False)
        dts = {str(a.dtype) for a in jax.tree.leaves(g.variables)}
        ev = EvalPhase.from_split("e", split="test",
                                  metrics=[AppliedMetric("rmse", on="head")]).execute(g)
        pred = g.predict(fs.get_split("test").get_features(rep="raw")[:, 0])
        out = ev.stacked_tensors("head", "outputs")
        print(sorted(dts), out.dtype, pred.dtype, res.metrics.series("train_loss")[-1] < 1.0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "['float64'] float64 float64 True"
