"""FeatureSet construction, accessors, views and references."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modjax import FeatureSet
from modjax.context import ExperimentContext
from modjax.data import FeatureSetReference, FeatureSetView
from modjax.errors import ShapeMismatchError


@pytest.fixture
def fs():
    rng = np.random.default_rng(0)
    return FeatureSet.from_dict(
        "cells",
        {"voltage": rng.normal(size=(10, 8)).astype(np.float32),
         "current": rng.normal(size=(10, 8)).astype(np.float32),
         "temp": np.arange(10, dtype=np.float64),
         "soh": np.linspace(0.8, 1.0, 10),
         "cell_id": [f"c{i % 3}" for i in range(10)],
         "cycle": np.arange(10)},
        feature_keys=["voltage", "current", "temp"], target_keys="soh",
        tag_keys=["cell_id", "cycle"])


def test_columns_and_naming(fs):
    assert fs.columns == ["features.voltage.raw", "features.current.raw", "features.temp.raw",
                          "targets.soh.raw", "tags.cell_id.raw", "tags.cycle.raw"]
    assert fs.table.column_names[-1] == "sample_uuids"
    assert fs.feature_keys == ["voltage", "current", "temp"]
    assert fs.target_keys == ["soh"] and fs.tag_keys == ["cell_id", "cycle"]
    assert fs.n_samples == 10 and len(fs) == 10
    assert fs.feature_shapes == {"voltage": (8,), "current": (8,), "temp": ()}
    assert len(set(fs.sample_uuids.tolist())) == 10


def test_array_columns_are_fixed_size_lists_and_zero_copy(fs):
    typ = fs.table.schema.field("features.voltage.raw").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 8
    a = fs.get_features(["voltage", "current"], fmt="dict")["voltage"]
    b = fs.get_features(["voltage"], fmt="dict")["voltage"]
    assert a.shape == (10, 8)
    # the cached numpy column is a view of the Arrow buffer, shared between calls
    assert np.shares_memory(a, b)
    nested = FeatureSet.from_dict("n", {"x": np.arange(48.0).reshape(3, 1, 16), "y": [1, 2, 3]},
                                  "x", "y")
    chex.assert_trees_all_equal(nested.get_features()[:, 0], np.arange(48.0).reshape(3, 1, 16))


def test_stacking_rule(fs):
    x = fs.get_features(["voltage", "current"])
    assert x.shape == (10, 2, 8)
    np.testing.assert_array_equal(x[:, 1], fs.get_features("current")[:, 0])
    assert fs.get_targets().shape == (10, 1)
    j = fs.get_targets(fmt="jax")
    assert isinstance(j, jnp.ndarray) and j.shape == (10, 1)
    with pytest.raises(ShapeMismatchError, match=r"voltage.*temp|temp.*voltage"):
        fs.get_features()
    tags = fs.get_tags("cell_id")
    assert tags.dtype == object and tags[:3, 0].tolist() == ["c0", "c1", "c2"]
    with pytest.raises(TypeError, match="cell_id"):
        fs.get_tags("cell_id", fmt="jax")


def test_unknown_key_and_rep(fs):
    with pytest.raises(KeyError, match="voltag'.*voltage|'voltag'"):
        fs.get_features("voltag")
    with pytest.raises(KeyError, match="features.voltage.transformed"):
        fs.get_features("voltage", rep="transformed")


def test_from_pandas_grouped():
    df = pd.DataFrame({
        "cell": ["a"] * 3 + ["b"] * 3, "cycle": [1, 1, 1, 2, 2, 2],
        "t": [2, 0, 1, 1, 2, 0], "v": [3.2, 3.0, 3.1, 4.1, 4.2, 4.0],
        "soh": [0.9] * 3 + [0.8] * 3})
    fs = FeatureSet.from_pandas("pulse", df, feature_cols="v", target_cols="soh",
                                group_by=["cell", "cycle"], tag_cols=["cell"], sort_by="t")
    np.testing.assert_allclose(fs.get_features()[:, 0], [[3.0, 3.1, 3.2], [4.0, 4.1, 4.2]])
    np.testing.assert_allclose(fs.get_targets()[:, 0], [0.9, 0.8])
    assert fs.get_tags()[:, 0].tolist() == ["a", "b"]
    flat = FeatureSet.from_df("flat", df, ["v", "t"], "soh")
    assert flat.n_samples == 6 and flat.get_features().shape == (6, 2)
    with pytest.raises(ValueError, match=r"group \['b'\] has 2 rows"):
        FeatureSet.from_pandas("ragged", df.iloc[:5], "v", "soh", group_by="cell")


def test_from_pyarrow_table_zero_copy(fs):
    again = FeatureSet.from_pyarrow_table("again", fs.table)
    def addr(t):
        return t.column("features.voltage.raw").chunk(0).flatten().buffers()[1].address
    assert addr(again.table) == addr(fs.table)
    np.testing.assert_array_equal(again.sample_uuids, fs.sample_uuids)
    plain = FeatureSet.from_pyarrow_table("plain", pa.table({"a": [1.0, 2.0], "b": [3, 4]}),
                                          feature_keys="a", target_keys="b")
    assert plain.columns == ["features.a.raw", "targets.b.raw"]
    with pytest.raises(ValueError, match="'x' does not follow"):
        FeatureSet.from_pyarrow_table("wrong", pa.table({"x": [1.0]}))


def test_views_compose_and_copy_nothing(fs):
    v = fs.take([1, 3, 5, 7], label="odd")
    assert isinstance(v, FeatureSetView) and v.n_samples == 4
    np.testing.assert_array_equal(v.get_targets()[:, 0], fs.get_targets()[[1, 3, 5, 7], 0])
    vv = v.take([3, 0])
    np.testing.assert_array_equal(vv.indices, [7, 1])
    assert vv.source is fs
    assert not vv.indices.flags.writeable
    w = fs.take([0, 1, 2])
    assert not v.is_disjoint_with(w)
    assert v.get_overlap_with(w) == [fs.sample_uuids[1]]
    assert v.is_disjoint_with(fs.take([0, 2]))
    sel = v.select(["features.voltage.raw", "targets.soh.raw"])
    assert sel.feature_keys == ["voltage"] and sel.tag_keys == []
    assert sel.expand_columns().tag_keys == ["cell_id", "cycle"]
    with pytest.raises(IndexError, match="row 10"):
        fs.take([10])
    cfg = v.get_config()
    back = FeatureSetView.from_config(cfg, state=v.get_state())
    np.testing.assert_array_equal(back.indices, v.indices)


def test_reference_contract(fs):
    ref = fs.reference(features=["voltage", "current"], tags=[])
    assert isinstance(ref, FeatureSetReference)
    assert ref.featureset_label == "cells" and ref.featureset_id == fs.node_id
    assert ref.features == ("voltage", "current") and ref.targets == ("soh",)
    assert ref.tags == () and ref.rep is None
    assert ref.feature_shape == (2, 8) and ref.target_shape == (1,)
    assert ref.resolve() is fs
    back = FeatureSetReference.from_config(ref.get_config())
    assert back == ref and back.resolve() is fs
    wild = fs.reference(features="features.*ent*.raw")
    assert wild.features == ("current",) and wild.rep == "raw"
    with pytest.raises(KeyError, match="no features key matching 'volts'"):
        fs.reference(features="volts")
    col = fs.column_reference("targets.soh.raw")
    assert (col.domain, col.key, col.rep, col.shape) == ("targets", "soh", "raw", ())
    with pytest.raises(ValueError, match="matches 3 features keys"):
        fs.column_reference(feature="*t*")


def test_reference_resolves_through_context_or_instance(fs):
    ref = fs.reference(features="voltage")
    with ExperimentContext().activate():
        assert ref.resolve() is fs  # not registered here: falls back to the instance
        other = FeatureSet.from_dict("cells", {"voltage": np.zeros((2, 8)), "soh": [1, 2]},
                                     "voltage", "soh")
        assert ref.resolve() is other  # same label registered in the active context


def test_repr(fs):
    r = repr(fs)
    assert "label='cells'" in r and "voltage(8,)" in r and "n_samples=10" in r


def test_accepts_jax_and_pandas_values():
    fs = FeatureSet.from_dict("jx", {"x": jnp.ones((3, 2)), "y": pd.Series([1.0, 2.0, 3.0]),
                                     "name": pd.Series(["a", "b", "c"])}, "x", "y", "name")
    assert fs.get_features().shape == (3, 1, 2)
    assert fs.get_tags()[:, 0].tolist() == ["a", "b", "c"]


def test_reference_errors_leave_featureset_unchanged(fs):
    table, cols = fs.table, list(fs.columns)
    with pytest.raises(KeyError, match="no targets key matching 'soc'"):
        fs.reference(features="voltage", targets="soc")
    with pytest.raises(KeyError, match="features.voltage.transformed"):
        fs.reference(features="voltage", rep="transformed")
    assert fs.table is table and fs.columns == cols


def test_config_without_state_rebuilds_schema(fs):
    empty = FeatureSet.from_config(fs.get_config(), register=False)
    assert empty.n_samples == 0 and empty.columns == fs.columns
    assert empty.feature_shapes == fs.feature_shapes


def test_from_dict_is_isolated_from_later_edits_but_shares_read_only_input():
    x = np.ones((3, 2))
    fs = FeatureSet.from_dict("iso", {"x": x, "y": [1.0, 2.0, 3.0]}, "x", "y")
    x[:] = 5.0
    np.testing.assert_array_equal(fs.get_features()[:, 0], np.ones((3, 2)))
    r = np.ones((3, 2))
    r.flags.writeable = False
    shared = FeatureSet.from_dict("shared", {"x": r, "y": [1.0, 2.0, 3.0]}, "x", "y")
    assert np.shares_memory(shared.get_features(), r)


def test_uuids_map_back_to_rows(fs):
    u = fs.sample_uuids
    np.testing.assert_array_equal(fs.rows_for_uuids(u[[5, 1, 9]]), [5, 1, 9])
    v = fs.take_uuids(u[[3, 4]], label="two")
    np.testing.assert_array_equal(v.indices, [3, 4])
    with pytest.raises(KeyError, match="no sample with uuid 'nope'"):
        fs.rows_for_uuids([u[0], "nope"])


def test_to_view_and_views_of_other_sources_compare_by_uuid(fs):
    whole = fs.to_view(label="all")
    np.testing.assert_array_equal(whole.indices, np.arange(10))
    assert whole.label == "all" and whole.source is fs and whole.columns == fs.columns
    twin = fs.copy(label="twin")  # other source, same uuids
    a, b = twin.take([0, 1, 2]), fs.take([2, 5])
    assert not a.is_disjoint_with(b)
    assert a.get_overlap_with(b) == [fs.sample_uuids[2]]
    assert twin.take([0, 1]).is_disjoint_with(fs.take([2, 5]))


def test_from_pyarrow_table_schema_and_list_columns():
    t = pa.table({"features.a.raw": pa.array([1, 2, 3], pa.int64()),
                  "targets.b.raw": pa.array([0.5, 1.5, 2.5])})
    schema = pa.schema([("features.a.raw", pa.float32()), ("targets.b.raw", pa.float64())])
    cast = FeatureSet.from_pyarrow_table("cast", t, schema)
    assert cast.get_features().dtype == np.float32
    chex.assert_trees_all_equal(cast.get_features()[:, 0], np.array([1, 2, 3], np.float32))
    # variable-length list columns (as Parquet returns them) become fixed-size lists
    curves = np.arange(24.0).reshape(4, 2, 3)
    lists = pa.table({"curve": pa.array(curves.tolist()), "y": [1.0, 2.0, 3.0, 4.0]})
    assert pa.types.is_list(lists.schema.field("curve").type)
    fs = FeatureSet.from_pyarrow_table("lists", lists.slice(1), feature_keys="curve",
                                       target_keys="y")
    typ = fs.table.schema.field("features.curve.raw").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 2
    assert fs.feature_shapes == {"curve": (2, 3)}
    chex.assert_trees_all_equal(fs.get_features()[:, 0], curves[1:])


def test_reference_by_full_column_names_and_single_wildcard(fs):
    ref = fs.reference(["features.voltage.raw", "targets.soh.raw"], tags="cell_*")
    assert ref.features == ("voltage",) and ref.targets == ("soh",)
    assert ref.tags == ("cell_id",) and ref.rep == "raw"
    assert ref.columns == ["features.voltage.raw", "targets.soh.raw", "tags.cell_id.raw"]
    col = fs.column_reference(feature="volt*")
    assert (col.key, col.column, col.shape) == ("voltage", "features.voltage.raw", (8,))


NO_PANDAS = """
import sys
import numpy as np
from modjax import FeatureSet, PairedSampler, SimilarityCondition, SimpleSampler
from modjax.data import DeviceStore

def workflow(data):
    fs = FeatureSet.from_dict("d", data, "x", "y", [k for k in ("g", "cell") if k in data])
    fs.split_random({"train": 4, "test": 2}, seed=0)
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train")
    PairedSampler({"g": SimilarityCondition()}, 2, source=fs).plan()
    DeviceStore(fs.get_split("train")).arrays
    SimpleSampler(2, source=fs).plan()
    twin = fs.copy(restore_splits=True, restore_scalers=True)
    assert np.array_equal(twin.get_features(), fs.get_features())
    return fs.get_tags("g")[:, 0].tolist()

data = {"x": np.arange(12.0).reshape(6, 2), "y": np.arange(6.0), "g": np.array([0, 0, 1, 1, 2, 2])}
print(workflow(data), "pandas" in sys.modules)  # numeric data never imports pandas

class _NoPandas:  # from here on import pandas fails, as if it were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoPandas())
print(workflow({**data, "cell": list("aabbcc")}), "pandas" in sys.modules)
"""


def test_pandas_is_optional():
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", NO_PANDAS], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[0, 0, 1, 1, 2, 2] False"] * 2


def test_views_and_splits_hold_only_index_arrays(fs):
    cache_before = dict(fs._np_cache)
    parts = fs.split_random({"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    def root(a):
        while isinstance(a.base, np.ndarray):
            a = a.base
        return a

    # ungrouped splits are sorted slices of one permutation buffer
    assert root(parts["train"].indices) is root(parts["test"].indices)
    assert root(parts["val"].indices).size == 10
    head = parts["train"].take(slice(0, 3))
    assert root(head.indices) is root(parts["train"].indices)
    picks = np.array([9, 4, 1], dtype=np.int64)
    adopted = fs.take(picks)
    assert np.shares_memory(adopted.indices, picks) and not picks.flags.writeable
    # no column was read or converted by making them
    assert fs._np_cache.keys() == cache_before.keys()
    assert all(fs._np_cache[k] is v for k, v in cache_before.items())
    # reading a contiguous view is a slice of the cached column, not a copy
    block = fs.take(np.arange(2, 6)).get_features("voltage")
    assert np.shares_memory(block, fs.get_features("voltage"))


def test_null_values_are_reported_with_their_column():
    t = pa.table({"x": pa.array([1.0, None, 3.0]), "y": [0.0, 1.0, 2.0]})
    fs = FeatureSet.from_pyarrow_table("holes", t, feature_keys="x", target_keys="y")
    np.testing.assert_array_equal(fs.get_targets()[:, 0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="FeatureSet 'holes' column 'features.x.raw': column "
                                         "has 1 null values"):
        fs.get_features()


def test_boolean_and_sliced_columns_read_exactly():
    from modjax.data.schema import column_to_numpy
    b = np.random.default_rng(0).random(37) > 0.5
    for off in (0, 1, 7, 9):
        np.testing.assert_array_equal(column_to_numpy(pa.array(b).slice(off)), b[off:])
    grid = pa.FixedSizeListArray.from_arrays(pa.array(b[1:]), 4)
    np.testing.assert_array_equal(column_to_numpy(grid), b[1:].reshape(9, 4))
    ints = pa.array(np.arange(20, dtype=np.int16)).slice(5, 6)
    out = column_to_numpy(ints)
    assert out.dtype == np.int16 and out.tolist() == list(range(5, 11))
    fs = FeatureSet.from_dict("flags", {"x": np.arange(4.0), "ok": b[:4]}, "x", None, "ok")
    np.testing.assert_array_equal(fs.get_tags()[:, 0], b[:4])
