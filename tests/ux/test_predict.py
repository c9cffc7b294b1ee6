"""graph.predict / Experiment.predict on new raw data: scalers applied like training,
chunked jitted forward compiled once, outputs in the target's units."""

from __future__ import annotations

import numpy as np
import pytest
from ux_helpers import regression

from modjax import AppliedLoss, EvalPhase, Experiment, FeatureSet, SimpleSampler, TrainPhase
from modjax.errors import ShapeMismatchError
from modjax.graph import predict as predict_mod


def _trained():
    fs, graph = regression()
    mse = AppliedLoss("mse", on="head")
    TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                          losses=[mse], n_epochs=10).execute(graph, show_training_progress=False)
    return fs, graph


def test_predict_matches_eval_phase_in_target_units():
    fs, graph = _trained()
    test = fs.get_split("test")
    x_raw = test.get_features(rep="raw")[:, 0]          # (n, 3): raw units, per key
    y_raw = test.get_targets(rep="raw")                 # (n, 1)
    ev = EvalPhase.from_split("t", split="test").execute(graph)
    want = ev.stacked_tensors("head", "outputs", unscale=True)
    before = predict_mod._run._cache_size()
    got = graph.predict(x_raw, batch_size=16)            # 40 rows: 3 chunks, last padded
    assert got.shape == y_raw.shape == (40, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # a different row count reuses the program (padded chunks of the same size)
    graph.predict(x_raw[:7], batch_size=16)
    assert predict_mod._run._cache_size() == before + 2  # one for size 16, one for 7 rows
    graph.predict(x_raw[:33], batch_size=16)
    assert predict_mod._run._cache_size() == before + 2
    # the same result from a dict of keys, a FeatureSet without targets, a view
    np.testing.assert_allclose(graph.predict({"x": x_raw}, batch_size=16), got, rtol=1e-6)
    new = FeatureSet.from_dict("new", {"x": x_raw}, "x", None, register=False)
    np.testing.assert_allclose(graph.predict(new), got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph.predict(test), got, rtol=1e-5, atol=1e-5)
    # in target units: the error is that of the model, not of forgotten scaling
    rmse = float(np.sqrt(np.mean((got - y_raw) ** 2)))
    assert rmse < 0.5 * float(np.std(y_raw))
    # without unscaling: standardised outputs
    z = graph.predict(x_raw, unscale=False)
    assert abs(float(z.mean())) < 2.0 and abs(float(got.mean()) - 50.0) < 5.0


def test_experiment_predict_and_errors():
    exp = Experiment("pred", registration_policy="overwrite")
    fs, graph = _trained()
    x_raw = fs.get_split("test").get_features(rep="raw")[:, 0]
    np.testing.assert_allclose(exp.predict(x_raw), graph.predict(x_raw), rtol=1e-6)
    with pytest.raises(KeyError, match="'x'"):
        graph.predict({"z": x_raw})
    with pytest.raises(ShapeMismatchError, match=r"feature 'x'.*\(3,\).*\(40, 4\)"):
        graph.predict(np.zeros((40, 4), np.float32))
    with pytest.raises(KeyError, match="no node 'hed'.*head"):
        graph.predict(x_raw, node="hed")
    with pytest.raises(ValueError, match="batch_size"):
        graph.predict(x_raw, batch_size=0)
