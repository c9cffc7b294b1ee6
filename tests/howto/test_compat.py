"""ModularML spellings: behaviour and errors of the aliases."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

from modjax import FeatureSet, Loss, Optimizer
from modjax.backend_note import BackendIgnoredWarning
from modjax.data.scalers import SegmentedScaler


def test_segmented_scaler_uses_segment_edges_and_classes():
    from sklearn.preprocessing import StandardScaler
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 110))
    s = SegmentedScaler([0, 20, 60, 70, 110], StandardScaler)
    y = s.fit_transform(x)
    assert s.scaler_name == "StandardScaler" and len(s.get_state()["segments"]) == 4
    np.testing.assert_allclose(y[:, 60:70].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(y), x, atol=1e-12)
    with pytest.raises(ValueError, match=r"boundaries \[0, 20, 120\] exceed the 110 columns"):
        SegmentedScaler([0, 20, 120]).fit(x)


def test_backend_argument_is_noted_once_and_typos_raise():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Loss("mse", backend="torch")
        Loss("mae", backend="torch")
    notes = [w for w in caught if issubclass(w.category, BackendIgnoredWarning)]
    assert len(notes) <= 1  # one note per process (it may have been given already)
    with pytest.raises(ValueError, match="unknown backend 'trch'"):
        Optimizer("adam", backend="trch")


def test_plain_list_columns_and_their_errors():
    t = pa.table({"features.x.raw": [[1.0, 2.0], [3.0, 4.0]], "targets.y.raw": [0.0, 1.0]})
    assert FeatureSet.from_pyarrow_table("pl", t).get_features().shape == (2, 1, 2)
    ragged = pa.table({"features.x.raw": [[1.0], [3.0, 4.0]], "targets.y.raw": [0.0, 1.0]})
    with pytest.raises(ValueError, match="column 'features.x.raw' is ragged"):
        FeatureSet.from_pyarrow_table("rg", ragged)


def test_filter_set_operations_and_errors():
    fs = FeatureSet.from_dict("fo", {"v": np.arange(6.0), "y": np.zeros(6), "c": [1, 2, 3] * 2},
                              "v", "y", "c")
    a = fs.filter(conditions={"tags.c.raw": [1, 2]})
    b = fs.filter(v=lambda v: v > 2.5)
    assert a.take_intersection(b).indices.tolist() == [3, 4]
    assert a.take_difference(b).indices.tolist() == [0, 1]
    assert b.take_intersection(a, order="other").indices.tolist() == [3, 4]
    assert a.take_intersection(b).to_featureset("sub", register=False).n_samples == 2
    other = FeatureSet.from_dict("fo2", {"v": np.arange(2.0), "y": np.zeros(2)}, "v", "y")
    with pytest.raises(ValueError, match="must be views of the same FeatureSet"):
        a.take_difference(other.to_view())
    with pytest.raises(KeyError, match="no column 'volts'"):
        fs.filter(conditions={"volts": 1})
    with pytest.raises(KeyError, match="no split 'train'"):
        fs["train"]
    with pytest.raises(ValueError, match="register=True needs this view"):
        a.split_random({"p": 0.5, "q": 0.5})
    parts = a.split_random({"p": 0.5, "q": 0.5}, register=False)
    assert sorted(np.concatenate([v.indices for v in parts.values()]).tolist()) == [0, 1, 3, 4]
    assert fs.available_splits == []
