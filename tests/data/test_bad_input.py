"""Every bad-input case of the data layer: the exception type, a message that names the
offending key/column/split, and a FeatureSet (and context, and sampler) left unchanged."""

from __future__ import annotations

import chex
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modjax import (
    FeatureSet,
    NSampler,
    PairedSampler,
    SimilarityCondition,
    SimpleSampler,
    TripletSampler,
)
from modjax.context import ExperimentContext


@pytest.fixture
def fs():
    """Splits, one split-fitted transform and a dependent one: every kind of state."""
    rng = np.random.default_rng(5)
    n = 24
    fs = FeatureSet.from_dict(
        "cells", {"v": rng.normal(3.0, 0.2, size=(n, 4)).astype(np.float32),
                  "i": rng.normal(0.0, 1.0, size=(n, 4)).astype(np.float32),
                  "soh": rng.uniform(0.7, 1.0, size=n),
                  "cell": [f"c{k % 4}" for k in range(n)], "temp": np.repeat([10, 25, 40], 8)},
        ["v", "i"], "soh", ["cell", "temp"])
    fs.split_random({"train": 0.75, "test": 0.25}, seed=0)
    fs.fit_transform("MinMaxScaler", domain="features", keys="v", fit_to_split="train")
    fs.fit_transform("StandardScaler", domain="features", keys=["v", "i"], fit_to_split="train")
    return fs


def snapshot(fs: FeatureSet) -> dict:
    """Everything a failed operation must not change."""
    return {
        "table": fs.table,
        "columns": list(fs.table.column_names),
        "data": {c: np.array(fs.get_column(c)) for c in fs.table.column_names},
        "splits": {k: v.indices.copy() for k, v in fs.splits.items()},
        "splitter_records": [r.get_config() for r in fs.splitter_records],
        "scaler_records": [r.get_config() for r in fs.scaler_records],
        "scaler_states": [r.scaler.get_state() for r in fs.scaler_records],
        "nodes": dict(ExperimentContext.get_active().available_nodes),
    }


def assert_unchanged(fs: FeatureSet, snap: dict) -> None:
    assert fs.table is snap["table"]  # immutable table: same object means same data
    assert fs.table.column_names == snap["columns"]
    for c, values in snap["data"].items():
        np.testing.assert_array_equal(fs.get_column(c), values)
    assert list(fs.splits) == list(snap["splits"])
    for k, rows in snap["splits"].items():
        np.testing.assert_array_equal(fs.get_split(k).indices, rows)
    assert [r.get_config() for r in fs.splitter_records] == snap["splitter_records"]
    assert [r.get_config() for r in fs.scaler_records] == snap["scaler_records"]
    chex.assert_trees_all_equal([r.scaler.get_state() for r in fs.scaler_records],
                                snap["scaler_states"])
    assert ExperimentContext.get_active().available_nodes == snap["nodes"]


# ---------------------------------------------------------------------------- construction
def test_columns_of_unequal_length(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"FeatureSet 'bad': columns have unequal lengths "
                                         r"\{'x': 3, 'y': 2\}"):
        FeatureSet.from_dict("bad", {"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0]}, "x", "y")
    with pytest.raises(ValueError, match=r"unequal lengths \{'x': 2, 'y': 2, "
                                         r"'sample_uuids': 1\}"):
        FeatureSet.from_dict("bad", {"x": [1.0, 2.0], "y": [1.0, 2.0], "sample_uuids": ["u"]},
                             "x", "y")
    # same label as an existing FeatureSet: the registered one stays the one found
    with pytest.raises(ValueError, match=r"'cells'.*unequal lengths"):
        FeatureSet.from_dict("cells", {"x": [1.0], "y": [1.0, 2.0]}, "x", "y")
    assert ExperimentContext.get_active().get_node(label="cells") is fs
    assert_unchanged(fs, snap)


def test_key_listed_as_both_feature_and_target(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match="FeatureSet 'bad': key 'soh' is listed as both "
                                         "features and targets"):
        FeatureSet.from_dict("bad", {"x": [1.0, 2.0], "soh": [0.9, 0.8]}, ["x", "soh"], "soh")
    with pytest.raises(ValueError, match="key 'cell' is listed as both targets and tags"):
        FeatureSet.from_pandas("bad", pd.DataFrame({"x": [1.0], "cell": ["a"]}), "x", "cell",
                               tag_cols="cell")
    table = pa.table({"features.x.raw": [1.0], "targets.x.raw": [2.0]})
    with pytest.raises(ValueError, match="key 'x' appears in both 'features' and 'targets'"):
        FeatureSet.from_pyarrow_table("bad", table)
    assert_unchanged(fs, snap)


def test_unknown_key_in_reference(fs):
    snap = snapshot(fs)
    with pytest.raises(KeyError, match=r"FeatureSet 'cells' has no features key matching "
                                       r"'volts'.*available features keys: \['v', 'i'\]"):
        fs.reference(features="volts")
    with pytest.raises(KeyError, match="no targets key matching 'soc'"):
        fs.reference(features="v", targets="soc")
    with pytest.raises(KeyError, match="no tags key matching 'cel'"):
        fs.column_reference(tag="cel")
    # tags are never scaled: rep="transformed" reads them raw (ModularML does too)
    ref = fs.reference(features="i", targets=[], tags="cell", rep="transformed")
    assert ref.columns == ["features.i.transformed", "tags.cell.raw"]
    assert_unchanged(fs, snap)


def test_unknown_key_in_fit_transform(fs):
    snap = snapshot(fs)
    with pytest.raises(KeyError, match=r"FeatureSet 'cells' has no features key 'volt'; "
                                       r"available features keys: \['v', 'i'\]"):
        fs.fit_transform("StandardScaler", domain="features", keys=["i", "volt"])
    with pytest.raises(KeyError, match="no targets key 'v'"):
        fs.fit_transform("StandardScaler", domain="targets", keys="v")
    assert_unchanged(fs, snap)


def test_ragged_arrays_in_one_column(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"column 'features.x.raw' is ragged: sample 0 has "
                                         r"shape \(2,\) but sample 2 has shape \(3,\)"):
        FeatureSet.from_dict("bad", {"x": [[1, 2], [3, 4], [5, 6, 7]], "y": [1, 2, 3]}, "x", "y")
    with pytest.raises(ValueError, match=r"column 'targets.y.raw' is ragged"):
        FeatureSet.from_dict("bad", {"x": [1.0, 2.0], "y": [np.zeros(2), np.zeros((2, 1))]},
                             "x", "y")
    listed = pa.table({"x": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0]]), "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"column 'features.x.raw' is ragged: sample 0 has a "
                                         r"list of length 2 but sample 1 has one of length 1"):
        FeatureSet.from_pyarrow_table("bad", listed, feature_keys="x", target_keys="y")
    df = pd.DataFrame({"cell": ["a", "a", "b"], "v": [1.0, 2.0, 3.0], "soh": [0.9, 0.9, 0.8]})
    with pytest.raises(ValueError, match=r"FeatureSet 'bad': group \['b'\] has 1 rows but group "
                                         r"\['a'\] has 2"):
        FeatureSet.from_pandas("bad", df, "v", "soh", group_by="cell")
    assert_unchanged(fs, snap)


# ---------------------------------------------------------------------------- splits
def test_split_ratios_that_do_not_sum_to_one(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"split_random on FeatureSet 'cells': split ratios "
                                         r"\{'a': 0.5, 'b': 0.4\} sum to 0.9, expected 1"):
        fs.split_random({"a": 0.5, "b": 0.4})
    with pytest.raises(ValueError, match=r"split counts \{'a': 10, 'b': 10\} sum to 20, "
                                         r"expected the 24 samples"):
        fs.split_random({"a": 10, "b": 10})
    with pytest.raises(ValueError, match=r"split counts \{'a': 1, 'b': 1\} sum to 2, expected "
                                         r"the 4 groups"):
        fs.split_random({"a": 1, "b": 1}, group_by="cell")
    with pytest.raises(ValueError, match=r"ratios \{'a': 0.7, 'b': 0.4\} sum to 1.1"):
        fs.split_random({"a": 0.7, "b": 0.4}, source_split="train")
    assert_unchanged(fs, snap)


def test_split_name_that_exists_already(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"split 'train' already exists; available splits: "
                                         r"\['train', 'test'\]"):
        fs.split_random({"val": 0.5, "train": 0.5})
    with pytest.raises(ValueError, match="split 'test' already exists"):
        fs.split_random({"test": 0.5, "other": 0.5}, stratify_by="temp")
    with pytest.raises(ValueError, match="split_by_condition on FeatureSet 'cells': split "
                                         "'test' already exists"):
        fs.split_by_condition({"cold": {"temp": 10}, "test": {"temp": 40}})
    with pytest.raises(ValueError, match="FeatureSet 'cells' already has a split 'train'"):
        fs.add_split(fs.take([0, 1], label="train"))
    assert_unchanged(fs, snap)


# ---------------------------------------------------------------------------- scalers
def test_fit_to_split_that_does_not_exist(fs):
    snap = snapshot(fs)
    with pytest.raises(KeyError, match=r"fit_transform on FeatureSet 'cells': fit_to_split "
                                       r"'training' is not a split; available splits: "
                                       r"\['train', 'test'\]"):
        fs.fit_transform("StandardScaler", domain="targets", fit_to_split="training")
    assert_unchanged(fs, snap)


def test_undoing_a_transform_another_depends_on(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"undo_last_transform on FeatureSet 'cells': cannot "
                                         r"undo MinMaxScaler on features \['v'\] because the "
                                         r"later StandardScaler on features \['v', 'i'\] "
                                         r"depends on it"):
        fs.undo_last_transform("features", "v")
    fs.fit_transform("Negate", domain="features", keys="i")
    snap = snapshot(fs)
    # undoing everything on 'v' would need the joint scaler gone, which Negate on 'i' needs
    with pytest.raises(ValueError, match=r"undo_all_transforms on FeatureSet 'cells': cannot "
                                         r"undo StandardScaler on features \['v', 'i'\] "
                                         r"because the later Negate on features \['i'\]"):
        fs.undo_all_transforms("features", "v")
    assert_unchanged(fs, snap)


def test_scaler_that_changes_the_shape(fs):
    from sklearn.decomposition import PCA
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"PCA on features \['i'\] returned shape \(24, 2\) "
                                         r"for input \(24, 4\)"):
        fs.fit_transform(PCA(n_components=2), domain="features", keys="i")
    assert_unchanged(fs, snap)


# ---------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_sampler_batch_size_not_positive(fs, bad):
    snap = snapshot(fs)
    for make in (lambda: SimpleSampler(bad, source=fs),
                 lambda: PairedSampler({"cell": SimilarityCondition()}, bad, source=fs)):
        with pytest.raises(ValueError, match=rf"Sampler: batch_size must be a positive "
                                             rf"integer, got {bad!r}"):
            make()
    assert_unchanged(fs, snap)


def test_sampler_batch_size_larger_than_view_with_drop_last(fs):
    snap = snapshot(fs)
    test = fs.get_split("test")
    with pytest.raises(ValueError, match=r"SimpleSampler: batch_size=7 is larger than the 6 "
                                         r"samples of split 'test' of FeatureSet 'cells' with "
                                         r"drop_last=True"):
        SimpleSampler(7, drop_last=True, source=test)
    # rebinding a bound sampler to a too-small view keeps its old binding
    s = SimpleSampler(7, drop_last=True, seed=1, source=fs.get_split("train"))
    before = s.plan(2)
    with pytest.raises(ValueError, match="split 'test'"):
        s.bind(test)
    assert s.source is fs.get_split("train")
    chex.assert_trees_all_equal(s.plan(2), before)
    # paired: the count is of anchors with a partner (6 in 'test'), not of rows
    with pytest.raises(ValueError, match=r"PairedSampler: batch_size=7 is larger than the 6 "
                                         r"samples of split 'test'"):
        PairedSampler({"temp": SimilarityCondition(tolerance=100)}, 7, drop_last=True,
                      source=test)
    # SimpleSampler works with drop_last=False on the same view: padded, one batch
    assert SimpleSampler(7, source=test).plan().mask["default"].sum() == 6
    assert_unchanged(fs, snap)


def test_paired_sampler_condition_on_missing_column(fs):
    snap = snapshot(fs)
    with pytest.raises(KeyError, match=r"PairedSampler: condition column 'temperature' is not "
                                       r"in FeatureSet 'cells'; available: .*'tags.temp'"):
        PairedSampler({"temperature": SimilarityCondition()}, 4, source=fs)
    with pytest.raises(KeyError, match="condition column 'tags.soh' is not in split 'train'"):
        PairedSampler({"tags.soh": SimilarityCondition()}, 4, source=fs.get_split("train"))
    with pytest.raises(KeyError, match="TripletSampler: condition column 'grp'"):
        TripletSampler({"cell": SimilarityCondition()}, {"grp": SimilarityCondition()}, 4,
                       source=fs)
    with pytest.raises(KeyError, match="NSampler: condition column 'nope'"):
        NSampler({"a": {"nope": SimilarityCondition()}}, 4, source=fs)
    # a bound sampler rebound to a view without the column keeps its binding and plans
    s = PairedSampler({"cell": SimilarityCondition()}, 4, seed=3, source=fs)
    before = s.plan(1)
    narrow = fs.select(["features.v.raw", "targets.soh.raw"])
    with pytest.raises(KeyError, match="condition column 'cell' is not in"):
        s.bind(narrow)
    assert s.source.n_samples == 24 and s.source.tag_keys == ["cell", "temp"]
    chex.assert_trees_all_equal(s.plan(1), before)
    assert_unchanged(fs, snap)


# ---------------------------------------------------------------------------- scaler classes
def test_scaler_config_constructs_only_allowed_transformers(tmp_path):
    """A config naming any other class is refused before anything is imported or called."""
    from modjax.data.scaling import Scaler, ScalerRecord
    from modjax.errors import ConfigError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil = {"scaler": "GzipFile", "module": "sklearn.datasets._covtype",
            "scaler_kwargs": {"filename": str(victim), "mode": "wb"}}
    for cfg in (evil, {**evil, "module": "sklearn.preprocessing._data"},
                {"scaler": "system", "module": "os", "scaler_kwargs": {}}):
        with pytest.raises(ConfigError, match=r"is not an allowed scaler"):
            Scaler.from_config(cfg)
        with pytest.raises(ConfigError, match=r"is not an allowed scaler"):
            ScalerRecord.from_config({"domain": "features", "keys": ["v"], "scaler": cfg})
    assert victim.read_text() == "precious"
    ok = Scaler.from_config({"scaler": "RobustScaler", "module": "sklearn.preprocessing._data",
                             "scaler_kwargs": {}})
    assert type(ok.scaler).__module__.startswith("sklearn.preprocessing")
    # a nested estimator in a state follows the same rule
    s = Scaler.from_config({"scaler": "PowerTransformer", "module":
                            "sklearn.preprocessing._data", "scaler_kwargs": {}})
    with pytest.raises(ConfigError, match=r"'GzipFile' from module 'sklearn.datasets._covtype'"):
        s.set_state({"_scaler": {"__estimator__": "sklearn.datasets._covtype:GzipFile",
                                 "params": {"filename": str(victim), "mode": "wb"}, "state": {}}})
    assert victim.read_text() == "precious"


def test_edited_featureset_artifact_cannot_write_files(tmp_path):
    import json

    from modjax.errors import ConfigError
    from tests.io.fault_tools import generation, resign

    fs = FeatureSet.from_dict("art", {"v": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.5]}, "v", "y",
                              register=False)
    fs.fit_transform("StandardScaler", domain="features")
    p = fs.save(tmp_path / "art")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cfg_file = generation(p) / "config.json"
    cfg = json.loads(cfg_file.read_text())
    rec = cfg["object"]["config"]["scaler_records"][0]["config"]["scaler"]
    rec.update(scaler="GzipFile", module="sklearn.datasets._covtype",
               scaler_kwargs={"filename": str(victim), "mode": "wb"})
    cfg_file.write_text(json.dumps(cfg))
    resign(p)  # a forger also fixes the manifest
    with ExperimentContext().activate() as ctx:
        with pytest.raises(ConfigError, match="is not an allowed scaler"):
            FeatureSet.load(p)
        with pytest.raises(ConfigError, match="is not an allowed scaler"):
            FeatureSet.load(p, allow_packaged_code=False)
        assert ctx.available_nodes == {}
    assert victim.read_text() == "precious"


def test_users_own_scaler_class_loads_with_allow_packaged_code(tmp_path, monkeypatch):
    from modjax.errors import ConfigError

    (tmp_path / "my_scalers.py").write_text(
        "import numpy as np\n"
        "class Doubler:\n"
        "    def __init__(self, factor=2.0):\n"
        "        self.factor = factor\n"
        "    def get_params(self, deep=True):\n"
        "        return {'factor': self.factor}\n"
        "    def fit(self, x):\n"
        "        self.offset_ = np.asarray(x).mean(0)\n"
        "        return self\n"
        "    def transform(self, x):\n"
        "        return (np.asarray(x) - self.offset_) * self.factor\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_scalers

    fs = FeatureSet.from_dict("own", {"v": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.5]}, "v", "y",
                              register=False)
    fs.fit_transform(my_scalers.Doubler(3.0), domain="features")
    p = fs.save(tmp_path / "own")
    with ExperimentContext().activate():
        with pytest.raises(ConfigError, match=r"'Doubler' from module 'my_scalers' is not an "
                                              r"allowed scaler.*allow_packaged_code=True"):
            FeatureSet.load(p)
        back = FeatureSet.load(p, allow_packaged_code=True)
    np.testing.assert_array_equal(back.get_features()[:, 0], [-3.0, 0.0, 3.0])
    assert type(back.scaler_records[0].scaler.scaler) is my_scalers.Doubler


# ---------------------------------------------------------------------------- culprits named
@pytest.mark.parametrize("seed", ["abc", "7", 1.5, True, None])
def test_seeds_are_integers_never_coerced(fs, seed):
    snap = snapshot(fs)
    with pytest.raises(TypeError, match=rf"split_random on FeatureSet 'cells': seed must be an "
                                        rf"integer, got {seed!r}"):
        fs.split_random({"a": 0.5, "b": 0.5}, seed=seed)
    with pytest.raises(TypeError, match=rf"SimpleSampler: seed must be an integer, got {seed!r}"):
        SimpleSampler(4, seed=seed)
    assert_unchanged(fs, snap)


def test_nan_split_ratio_and_complex_features_name_the_culprit(fs):
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"ratios \{'a': nan, 'b': 0.5\} must be finite"):
        fs.split_random({"a": float("nan"), "b": 0.5}, seed=0)
    with pytest.raises(TypeError, match=r"column 'features\.z\.raw': complex values \(complex128\) cannot be "
                                        r"stored"):
        FeatureSet.from_dict("cplx", {"z": np.ones(3, complex), "y": np.ones(3)}, "z", "y")
    assert_unchanged(fs, snap)


def test_empty_split_and_oversized_batch_are_errors_at_bind(fs):
    empty = fs.take(np.arange(0))
    with pytest.raises(ValueError, match=r"SimpleSampler: .* has no samples"):
        SimpleSampler(4, source=empty)
    with pytest.raises(ValueError, match=r"batch_size=1000000000 is larger than the 24 samples "
                                         r"of .*; use batch_size <= 24"):
        SimpleSampler(10**9, source=fs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("scaler", ["StandardScaler", "MinMaxScaler"])
def test_non_finite_values_are_refused_by_scalers(bad, scaler):
    x = np.array([1.0, 2.0, 3.0, 4.0])
    x[2] = bad
    fs = FeatureSet.from_dict("nf", {"a": np.arange(4.0), "b": x, "y": np.zeros(4)},
                              ["a", "b"], "y", register=False)
    snap = snapshot(fs)
    with pytest.raises(ValueError, match=r"column features\.b has 1 non-finite \(NaN or inf\) "
                                         r"value\(s\) in the rows the scaler is fitted on"):
        fs.fit_transform(scaler, domain="features")
    assert_unchanged(fs, snap)


@pytest.mark.parametrize("lr", ["fast", None, float("nan"), True])
def test_optimizer_learning_rate_checked_when_made(lr):
    from modjax import Optimizer
    from modjax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Optimizer\('adam'\): learning rate .* must be a "
                                          r"finite number"):
        Optimizer("adam", opt_kwargs={"lr": lr})
