"""Splitters, scalers, the transform log, copy, visualize, and bad input leaving state intact."""

from __future__ import annotations

import chex
import numpy as np
import pytest
import sklearn.preprocessing as skp

from modjax import FeatureSet
from modjax.data.scalers import BUILTIN_SCALERS
from modjax.data.scaling import Scaler, ScalerRecord
from modjax.data.splitters import SplitterRecord
from modjax.io.registry import deserialize, serialize


@pytest.fixture
def fs():
    rng = np.random.default_rng(1)
    n = 60
    return FeatureSet.from_dict(
        "cells", {"v": rng.normal(3.0, 0.5, size=(n, 1, 10)).astype(np.float32),
                  "i": rng.normal(0.0, 2.0, size=(n, 1, 10)).astype(np.float32),
                  "soh": rng.uniform(0.7, 1.0, size=n),
                  "cell": [f"c{k % 6}" for k in range(n)], "temp": np.repeat([10, 25, 40], 20)},
        ["v", "i"], "soh", ["cell", "temp"])


def snapshot(fs):
    return (fs.table, {k: v.indices.copy() for k, v in fs.splits.items()},
            [r.get_config() for r in fs.splitter_records],
            [r.get_config() for r in fs.scaler_records])


def assert_unchanged(fs, snap):
    table, splits, srecs, crecs = snap
    assert fs.table.equals(table) and fs.table.column_names == table.column_names
    assert fs.splits.keys() == splits.keys()
    for k in splits:
        np.testing.assert_array_equal(fs.get_split(k).indices, splits[k])
    assert [r.get_config() for r in fs.splitter_records] == srecs
    assert [r.get_config() for r in fs.scaler_records] == crecs


# ---------------------------------------------------------------------------- splitting
def test_split_random_fractions_and_counts(fs):
    parts = fs.split_random({"train": 0.5, "val": 0.25, "test": 0.25}, seed=3)
    sizes = {k: v.n_samples for k, v in parts.items()}
    assert sizes == {"train": 30, "val": 15, "test": 15}
    allrows = np.concatenate([v.indices for v in parts.values()])
    np.testing.assert_array_equal(np.sort(allrows), np.arange(60))
    assert parts["train"].is_disjoint_with(parts["test"])
    again = FeatureSet.from_pyarrow_table("again", fs.table)
    p2 = again.split_random({"train": 0.5, "val": 0.25, "test": 0.25}, seed=3)
    np.testing.assert_array_equal(p2["val"].indices, parts["val"].indices)
    sub = fs.split_random({"a": 10, "b": 20}, source_split="train")
    assert np.isin(sub["a"].indices, parts["train"].indices).all()
    assert isinstance(fs.splitter_records[0], SplitterRecord)


def test_split_by_group_never_straddles(fs):
    parts = fs.split_random({"train": 0.5, "test": 0.5}, group_by="cell", seed=0)
    cells = fs.get_tags("cell")[:, 0]
    assert not set(cells[parts["train"].indices]) & set(cells[parts["test"].indices])
    assert len(set(cells[parts["train"].indices])) == 3


def test_split_stratified(fs):
    parts = fs.split_random({"train": 0.75, "test": 0.25}, stratify_by="tags.temp", seed=1)
    temp = fs.get_tags("temp")[:, 0]
    for t in (10, 25, 40):
        assert (temp[parts["test"].indices] == t).sum() == 5


def test_split_by_condition(fs):
    parts = fs.split_by_condition({"cold": {"temp": 10}, "warm": {"temp": [25, 40],
                                                                  "soh": lambda s: s > 0.8}})
    temp, soh = fs.get_tags("temp")[:, 0], fs.get_targets()[:, 0]
    np.testing.assert_array_equal(parts["cold"].indices, np.flatnonzero(temp == 10))
    np.testing.assert_array_equal(parts["warm"].indices,
                                  np.flatnonzero((temp > 10) & (soh > 0.8)))


def test_split_errors_leave_featureset_unchanged(fs):
    fs.split_random({"train": 0.8, "test": 0.2})
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"sum to 0\.9.*expected 1"):
        fs.split_random({"a": 0.5, "b": 0.4})
    with pytest.raises(ValueError, match="split 'train' already exists"):
        fs.split_random({"train": 0.5, "x": 0.5})
    with pytest.raises(ValueError, match=r"counts .* sum to 50, expected the 60 samples"):
        fs.split_random({"a": 25, "b": 25})
    with pytest.raises(KeyError, match="no column 'batch'"):
        fs.split_random({"a": 0.5, "b": 0.5}, group_by="batch")
    with pytest.raises(ValueError, match="split 'test' already exists"):
        fs.split_by_condition({"test": {"temp": 10}})
    with pytest.raises(KeyError, match="no split 'nope'"):
        fs.get_split("nope")
    assert_unchanged(fs, snap)


def test_add_split(fs):
    fs.add_split(fs.take([0, 1, 2], label="few"))
    assert fs.get_split("few").n_samples == 3
    with pytest.raises(ValueError, match="already has a split 'few'"):
        fs.add_split(fs.take([3], label="few"))
    other = FeatureSet.from_dict("other", {"x": [1.0], "y": [1.0]}, "x", "y")
    with pytest.raises(ValueError, match="must be a FeatureSetView of this FeatureSet"):
        fs.add_split(other.take([0], label="foreign"))


# ---------------------------------------------------------------------------- scalers
def test_builtin_scalers_round_trip_and_state():
    x = np.random.default_rng(0).normal(size=(20, 4)) * 3 + 1
    for name in BUILTIN_SCALERS:
        kwargs = {"boundaries": [0, 2]} if name == "SegmentedScaler" else {}
        s = Scaler(name, kwargs)
        y = s.fit_transform(x)
        assert y.shape == x.shape
        fresh = Scaler.from_config(s.get_config())
        fresh.set_state(s.get_state())
        chex.assert_trees_all_close(fresh.transform(x), y)
        if name not in ("Normalizer", "Absolute"):
            chex.assert_trees_all_close(s.inverse_transform(y), x, atol=1e-10)
        else:
            with pytest.raises(TypeError, match="not invertible"):
                s.inverse_transform(y)
    std = Scaler("StandardScaler").fit_transform(x)
    chex.assert_trees_all_close(std, skp.StandardScaler().fit_transform(x), atol=1e-12)
    mm = Scaler("MinMaxScaler", {"feature_range": (-1, 1)}).fit_transform(x)
    chex.assert_trees_all_close(mm, skp.MinMaxScaler((-1, 1)).fit_transform(x), atol=1e-12)
    rb = Scaler("RobustScaler").fit_transform(x)
    chex.assert_trees_all_close(rb, skp.RobustScaler().fit_transform(x), atol=1e-12)
    with pytest.raises(ValueError, match="unknown scaler 'Standard'"):
        Scaler("Standard")
    with pytest.raises(TypeError, match="has no fit"):
        Scaler(object())


def test_sklearn_scalers_by_name_and_instance():
    x = np.random.default_rng(0).exponential(size=(50, 2))
    p = Scaler("PowerTransformer")
    y = p.fit_transform(x)
    chex.assert_trees_all_close(y, skp.PowerTransformer().fit_transform(x), atol=1e-10)
    back = Scaler.from_config(p.get_config())
    back.set_state(p.get_state())
    chex.assert_trees_all_close(back.transform(x), y, atol=1e-12)
    chex.assert_trees_all_close(back.inverse_transform(y), x, atol=1e-8)
    q = Scaler(skp.QuantileTransformer(n_quantiles=20))
    assert q.get_config()["scaler_kwargs"]["n_quantiles"] == 20


def test_fit_transform_on_split_and_chain(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    rec = fs.fit_transform("StandardScaler", domain="features", keys=["v", "i"],
                           fit_to_split="train", merged_axes=(2, 3))
    assert isinstance(rec, ScalerRecord) and rec.merged_axes == (2, 3)
    raw = fs.get_features(rep="raw")
    tr = fs.get_features()
    assert tr.shape == raw.shape == (60, 2, 1, 10) and tr.dtype == np.float32
    rows = fs.get_split("train").indices
    train = raw[rows].astype(np.float64)
    # one mean/std per key over every train sample and curve point
    for k in range(2):
        expect = (raw[:, k] - train[:, k].mean()) / train[:, k].std()
        np.testing.assert_allclose(tr[:, k], expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tr[rows][:, k].std(), 1.0, rtol=1e-5)
    fs.fit_transform("Negate", domain="features", keys="v")
    np.testing.assert_allclose(fs.get_features("v"), -tr[:, :1], rtol=1e-6)
    # unscale predictions: newest first through Negate then the joint StandardScaler
    back = fs.unscale_data_for_cols(data=fs.get_features(), domain="features", columns=["v", "i"])
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-5)
    assert [s.name for s in fs.iter_scalers_on_cols(domain="features", columns=["v", "i"])] == \
        ["Negate", "StandardScaler"]
    with pytest.raises(ValueError, match=r"fitted jointly on features \['v', 'i'\]"):
        fs.unscale_data_for_cols(data=fs.get_features("v"), domain="features", columns="v")


def test_undo_dependency_error_leaves_featureset_unchanged(fs):
    fs.fit_transform("MinMaxScaler", domain="features", keys="v")
    fs.fit_transform("StandardScaler", domain="features", keys=["v", "i"])
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"cannot undo MinMaxScaler on features \['v'\] because "
                                         r"the later StandardScaler on features \['v', 'i'\]"):
        fs.undo_last_transform("features", "v")
    assert_unchanged(fs, snap)
    fs.undo_last_transform("features", ["v", "i"])
    fs.undo_last_transform("features", "v")
    assert not fs.scaler_records


def test_undo_last_and_all(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    fs.fit_transform("MinMaxScaler", domain="features", keys="v", fit_to_split="train")
    after_first = fs.get_features("v").copy()
    fs.fit_transform("StandardScaler", domain="features", keys="v")
    fs.fit_transform("MaxAbsScaler", domain="targets")
    fs.undo_last_transform("features", "v")
    chex.assert_trees_all_equal(fs.get_features("v"), after_first)  # exact: replayed from raw
    fs.undo_last_transform("features", "v")
    assert "features.v.transformed" not in fs.columns
    assert "targets.soh.transformed" in fs.columns
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"no transform was applied to features \['v'\]"):
        fs.undo_last_transform("features", "v")
    with pytest.raises(KeyError, match="no features key 'w'"):
        fs.undo_last_transform("features", "w")
    assert_unchanged(fs, snap)
    fs.undo_all_transforms()
    assert not fs.scaler_records and all(c.endswith(".raw") for c in fs.columns)


def test_fit_transform_bad_input_leaves_featureset_unchanged(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    fs.fit_transform("MinMaxScaler", domain="features", keys="v")
    snap = snapshot(fs)
    with pytest.raises(KeyError, match="no features key 'volt'"):
        fs.fit_transform("StandardScaler", domain="features", keys="volt")
    with pytest.raises(KeyError, match="fit_to_split 'training' is not a split"):
        fs.fit_transform("StandardScaler", domain="features", fit_to_split="training")
    with pytest.raises(ValueError, match="merged_axes 5"):
        fs.fit_transform("StandardScaler", domain="features", merged_axes=5)
    with pytest.raises(TypeError, match="'cell' holds strings"):
        fs.fit_transform("StandardScaler", domain="tags", keys="cell")
    with pytest.raises(ValueError, match="unknown domain 'feature'"):
        fs.fit_transform("StandardScaler", domain="feature")
    with pytest.raises(ValueError, match="can only invert the 60 rows"):
        fs.fit_transform("PerSampleMinMaxScaler", domain="features", keys="i")
        fs.unscale_data_for_cols(data=fs.get_features("i")[:5], domain="features", columns="i")
    fs.undo_last_transform("features", "i")
    assert_unchanged(fs, snap)


def test_records_and_state_round_trip(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    fs.fit_transform("StandardScaler", domain="targets", fit_to_split="train")
    cfg, state = fs.get_config(), fs.get_state()
    import json
    json.dumps(cfg)
    back = FeatureSet.from_config(cfg, state=state, register=False)
    chex.assert_trees_all_equal(back.get_targets(), fs.get_targets())
    np.testing.assert_array_equal(back.get_split("test").indices, fs.get_split("test").indices)
    chex.assert_trees_all_close(back.scaler_records[0].scaler.get_state(),
                                fs.scaler_records[0].scaler.get_state())
    np.testing.assert_array_equal(back.sample_uuids, fs.sample_uuids)
    rec = deserialize(serialize(fs.splitter_records[0]))
    assert rec.params["ratios"] == {"train": 0.8, "test": 0.2}


def test_copy_restores_splits_and_scalers(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=4)
    fs.split_by_condition({"hot": {"temp": 40}})
    fs.add_split(fs.take([1, 2], label="manual"))
    fs.fit_transform("MinMaxScaler", domain="features", keys="v", fit_to_split="train",
                     merged_axes=2)
    plain = fs.copy()
    assert plain.label == "cells_copy" and not plain.available_splits
    assert all(c.endswith(".raw") for c in plain.columns)
    np.testing.assert_array_equal(plain.sample_uuids, fs.sample_uuids)
    full = fs.copy(label="clone", restore_splits=True, restore_scalers=True)
    assert full.available_splits == ["train", "test", "hot", "manual"]
    for k in fs.available_splits:
        np.testing.assert_array_equal(full.get_split(k).indices, fs.get_split(k).indices)
    chex.assert_trees_all_equal(full.get_features("v"), fs.get_features("v"))
    deep = fs.copy(share_raw_data_buffer=False)
    chex.assert_trees_all_equal(deep.get_features(rep="raw"), fs.get_features(rep="raw"))
    with pytest.raises(ValueError, match="restore_scalers=True needs restore_splits=True"):
        fs.copy(restore_scalers=True)


def test_visualize_and_repr(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    fs.add_split(fs.take([0, 1], label="peek"))
    text = fs.visualize()
    assert text.startswith("flowchart TD")
    assert "split_train" in text and "n_samples=48" in text
    assert "tags: cell ()" in text.splitlines()[1]
    assert "-. \"overlap" in text
    assert "tags:" not in fs.visualize(show_tags=False)
    r = repr(fs)
    assert "splits=[train=48, test=12, peek=2]" in r


def test_copy_keeps_removed_splits_removed(fs):
    fs.split_random({"train": 0.5, "val": 0.25, "test": 0.25}, seed=2)
    fs.remove_split("val")
    twin = fs.copy(restore_splits=True)
    assert twin.available_splits == ["train", "test"]
    np.testing.assert_array_equal(twin.get_split("test").indices, fs.get_split("test").indices)


def test_visualize_options(fs):
    fs.split_random({"train": 0.5, "test": 0.5}, seed=0)
    fs.add_split(fs.take([0, 1, 2], label="peek"))  # overlaps one of the random splits
    n_in_train = int(np.isin([0, 1, 2], fs.get_split("train").indices).sum())
    full = fs.visualize().splitlines()
    assert full[0] == "flowchart TD"
    root = full[1]
    assert root.startswith('    fs_cells["<b>cells</b><br/>n_samples=60')
    assert "features: v (1, 10), i (1, 10)" in root and "targets: soh ()" in root
    assert "tags: cell (), temp ()" in root
    split_lines = [ln for ln in full if ln.startswith("    split_") and '["' in ln]
    assert len(split_lines) == 3 and not any("tags:" in ln for ln in split_lines)
    assert "    fs_cells --> split_train" in full
    assert f'    split_train -. "overlap {n_in_train}" .- split_peek' in full
    assert not any("split_train -. " in ln and "split_test" in ln for ln in full)  # disjoint
    every = fs.visualize(show_tags=True)
    assert sum("tags: cell (), temp ()" in ln for ln in every.splitlines()) == 4
    bare = fs.visualize(show_features=False, show_targets=False, show_tags=False,
                        show_overlaps=False)
    assert "features:" not in bare and "targets:" not in bare and "tags:" not in bare
    assert "overlap" not in bare and bare.count("-->") == 3
    with pytest.raises(ValueError, match="show_tags must be True, False or 'root'"):
        fs.visualize(show_tags="splits")


def test_quantile_transformer_by_name_on_a_featureset(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    rec = fs.fit_transform(Scaler("QuantileTransformer", {"n_quantiles": 10}), domain="targets",
                           fit_to_split="train")
    assert rec.scaler.name == "QuantileTransformer"
    soh = fs.get_targets(rep="raw")
    ref = skp.QuantileTransformer(n_quantiles=10).fit(soh[fs.get_split("train").indices])
    chex.assert_trees_all_close(fs.get_targets(), ref.transform(soh), atol=1e-12)
    back = Scaler.from_config(rec.scaler.get_config())
    back.set_state(rec.scaler.get_state())
    chex.assert_trees_all_close(back.transform(soh), ref.transform(soh), atol=1e-12)
    # values outside the training range are clipped by the transformer: invert the rest
    train = soh[fs.get_split("train").indices]
    inside = (soh[:, 0] >= train.min()) & (soh[:, 0] <= train.max())
    assert inside.sum() >= 55
    back_raw = fs.unscale_data_for_cols(data=fs.get_targets(), domain="targets", columns="soh")
    np.testing.assert_allclose(back_raw[inside], soh[inside], atol=1e-9)
    assert set(Scaler.get_supported_scalers()) == set(BUILTIN_SCALERS) | {
        "PowerTransformer", "QuantileTransformer"}


def test_every_builtin_scaler_through_fit_transform_and_undo(fs):
    fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
    raw = fs.get_features("i", rep="raw")
    for name in BUILTIN_SCALERS:
        kwargs = {"boundaries": [0, 5]} if name == "SegmentedScaler" else {}
        rec = fs.fit_transform(Scaler(name, kwargs), domain="features", keys="i",
                               fit_to_split="train")
        expect = Scaler(name, kwargs).fit(raw[fs.get_split("train").indices].reshape(-1, 10))
        want = expect.transform(raw.reshape(-1, 10)).reshape(raw.shape)
        np.testing.assert_allclose(fs.get_features("i"), want, rtol=1e-5, atol=1e-5,
                                   err_msg=name)
        assert rec.scaler.name == name
        fs.undo_last_transform("features", "i")
        assert "features.i.transformed" not in fs.columns
    assert not fs.scaler_records


def test_condition_split_records_survive_json(fs):
    fs.split_by_condition({"cold": {"temp": [10]}, "healthy": {"soh": lambda s: s > 0.9}})
    rec = deserialize(serialize(fs.splitter_records[0]))
    assert rec.params["conditions"]["cold"] == {"temp": [10]}
    assert "<callable" in rec.params["conditions"]["healthy"]["soh"]
    assert not rec.replayable  # a callable cannot come back from JSON
    only_values = FeatureSet.from_pyarrow_table("vals", fs.table.select(
        [c for c in fs.table.column_names if not c.endswith(".transformed")]))
    only_values.split_by_condition({"cold": {"temp": [10]}})
    again = deserialize(serialize(only_values.splitter_records[0]))
    assert again.replayable and again.conditions == {"cold": {"temp": [10]}}


def test_numpy_integer_counts_replay_as_counts(fs):
    parts = fs.split_random({"a": np.int64(15), "b": np.int64(45)}, seed=6)
    assert fs.splitter_records[0].params["ratios"] == {"a": 15, "b": 45}
    assert {k: v.n_samples for k, v in parts.items()} == {"a": 15, "b": 45}
    twin = fs.copy(restore_splits=True)
    np.testing.assert_array_equal(twin.get_split("a").indices, parts["a"].indices)
    rec = deserialize(serialize(fs.splitter_records[0]))
    assert rec.params["ratios"] == {"a": 15, "b": 45}


def test_fractions_within_tolerance_never_allocate_more_than_n():
    from modjax.data.splitters import _allocate
    counts = _allocate(10_000_000, {"a": 0.5000004, "b": 0.5000004}, where="")
    assert counts == {"a": 5_000_000, "b": 5_000_000}
    assert _allocate(10, {"a": 0.7, "b": 0.2, "c": 0.1}, where="") == {"a": 7, "b": 2, "c": 1}


def test_copy_keeps_a_split_name_reused_after_removal(fs):
    fs.split_random({"train": 0.5, "test": 0.5}, seed=2)
    fs.remove_split("test")
    fs.add_split(fs.take([0, 1, 2], label="test"))  # same name, other rows
    twin = fs.copy(restore_splits=True)
    assert twin.available_splits == ["train", "test"]
    np.testing.assert_array_equal(twin.get_split("test").indices, [0, 1, 2])
    np.testing.assert_array_equal(twin.get_split("train").indices, fs.get_split("train").indices)


def test_sklearn_tuple_params_survive_config_and_refit():
    import json
    x = np.random.default_rng(3).uniform(size=(12, 2))
    s = Scaler(skp.MinMaxScaler(feature_range=(-1, 1)))
    y = s.fit_transform(x)
    back = Scaler.from_config(json.loads(json.dumps(s.get_config())))
    assert back.scaler.feature_range == (-1, 1)
    back.set_state(s.get_state())
    chex.assert_trees_all_close(back.transform(x), y, atol=1e-12)
    fresh = back.clone_unfitted()  # what copy(restore_scalers=True) after a load refits
    chex.assert_trees_all_close(fresh.fit_transform(x), y, atol=1e-12)
