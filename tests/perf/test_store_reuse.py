"""A phase's data goes to the device once per FeatureSet version, not once per execute."""

from __future__ import annotations

import numpy as np

from modjax import AppliedLoss, EvalPhase, InputBinding
from modjax.data import DeviceStore
from modjax.data.device import shared_store
from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase


def test_a_second_execute_uploads_no_data(fresh_context):
    fs = make_featureset(n=128)
    graph = make_mlp_graph(fs)
    phase = train_phase(n_epochs=2)
    phase.execute(graph, show_training_progress=False)
    before = DeviceStore.uploads
    phase.execute(graph, show_training_progress=False)
    # a new phase of the same structure over the same split reuses the store too
    train_phase("again", n_epochs=1).execute(graph, show_training_progress=False)
    assert DeviceStore.uploads == before


def test_evaluation_of_the_trained_split_reuses_the_training_store(fresh_context):
    fs = make_featureset(n=128)
    graph = make_mlp_graph(fs)
    train_phase(n_epochs=1).execute(graph, show_training_progress=False)
    before = DeviceStore.uploads
    ev = EvalPhase("ev", input_sources=[InputBinding.for_evaluation(node="mlp", split="train")],
                   losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])])
    ev.execute(graph)
    assert DeviceStore.uploads == before


def test_a_transform_of_the_featureset_retires_the_store_and_training_sees_new_data(
        fresh_context):
    fs = make_featureset(n=128)
    view = fs.get_split("train")
    old = shared_store(view)
    assert shared_store(fs.get_split("train")) is old
    old_x = np.asarray(old.arrays["features"])
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train")
    new = shared_store(fs.get_split("train"))
    assert new is not old
    np.testing.assert_allclose(np.asarray(new.arrays["features"]),
                               fs.get_split("train").get_features(), rtol=1e-6)
    assert not np.allclose(np.asarray(new.arrays["features"]), old_x)


def test_different_columns_rows_or_dtype_get_different_stores(fresh_context):
    fs = make_featureset(n=64)
    base = shared_store(fs, features=["x0", "x1"])
    assert shared_store(fs, features=["x0"]) is not base
    assert shared_store(fs.take(np.arange(10)), features=["x0", "x1"]) is not base
    assert shared_store(fs, features=["x0", "x1"], dtype=np.float64) is not base
    assert shared_store(fs, features=("x0", "x1")) is base


def test_streamed_stores_are_not_shared(fresh_context):
    fs = make_featureset(n=64)
    budget = DeviceStore(fs).nbytes // 4
    a = shared_store(fs, byte_budget=budget)
    assert not a.fits and shared_store(fs, byte_budget=budget) is not a
