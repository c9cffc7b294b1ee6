"""torch and scikit-learn stay optional: modjax imports and trains without them."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_package_works_with_torch_and_sklearn_unimportable():
    code = textwrap.dedent("""
        import sys
        for name in ("torch", "sklearn", "skops"):
            sys.modules[name] = None  # import fails like an absent package
        import numpy as np
        import modjax
        from modjax.bridge import wrap_model
        from modjax import FeatureSet, SimpleSampler
        from modjax import ModelGraph, ModelNode, SequentialMLP
        from modjax.graph.models import as_model
        from modjax import AppliedLoss, InputBinding, Optimizer, TrainPhase
        x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        fs = FeatureSet.from_dict("fs", {"a": x[:, 0], "b": x[:, 1], "y": x[:, 2]}, ["a", "b"], "y")
        g = ModelGraph([ModelNode("m", SequentialMLP(n_layers=1, hidden_dim=4),
                                  upstream_ref=fs.reference())],
                       optimizer=Optimizer("adam")).build()
        TrainPhase("t", input_sources=[InputBinding.for_training(
            node="m", sampler=SimpleSampler(16), upstream=None)],
            losses=[AppliedLoss("mse", on="m", inputs=["outputs", "targets"])],
            n_epochs=1).execute(g, show_training_progress=False)
        try:
            as_model(object())
        except TypeError as e:
            assert "torch.nn.Module, a scikit-learn estimator" in str(e)
        try:
            wrap_model(object())
        except TypeError as e:
            print("ok", str(e)[:40])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok wrap_model: expected a torch.nn.Module,"
