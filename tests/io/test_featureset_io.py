"""FeatureSet save/load: Parquet table + JSON config + Orbax splits, uuids and ids kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modjax import FeatureSet
from modjax.context import ExperimentContext
from modjax.errors import CheckpointError
from modjax.io.atomic import resolve_artifact


def _fs(label="cells", n=6):
    r = np.random.default_rng(0)
    return FeatureSet.from_dict(
        label,
        {"voltage": r.normal(size=(n, 5)).astype(np.float32), "soh": r.uniform(size=n),
         "cell": [f"c{i % 3}" for i in range(n)]},
        feature_keys="voltage", target_keys="soh", tag_keys="cell")


def test_round_trip_keeps_table_uuids_splits_and_id(tmp_path):
    fs = _fs()
    fs.add_split(fs.take([0, 2, 4]), "train")
    fs.add_split(fs.take([1]), "test")
    fs.add_split(fs.take([]), "empty")
    p = fs.save(tmp_path / "fs")
    assert (resolve_artifact(p) / "table.parquet").is_file()
    with ExperimentContext().activate():
        back = FeatureSet.load(p)
    assert back.label == "cells" and back.node_id == fs.node_id
    assert back.table.equals(fs.table)
    assert back.table.schema.field("features.voltage.raw").type == fs.table.schema.field(
        "features.voltage.raw").type
    np.testing.assert_array_equal(back.get_features(), fs.get_features())
    np.testing.assert_array_equal(back.table["sample_uuids"].to_numpy(zero_copy_only=False),
                                  fs.table["sample_uuids"].to_numpy(zero_copy_only=False))
    assert back.available_splits == fs.available_splits
    np.testing.assert_array_equal(back.get_split("train").indices, [0, 2, 4])
    assert back.get_split("empty").indices.shape == (0,)


def test_load_into_context_with_same_id_gets_new_id_unless_overwrite(tmp_path, fresh_context):
    fs = _fs()
    fs.save(tmp_path / "fs")
    again = FeatureSet.load(tmp_path / "fs")
    assert again.node_id != fs.node_id  # id taken: a fresh one, per seed 001
    assert fresh_context.get_node("cells") is again  # label policy of the context (overwrite)
    same = FeatureSet.load(tmp_path / "fs", overwrite=True)
    assert same.node_id == fs.node_id
    assert fresh_context.get_node(node_id=fs.node_id) is same


def test_error_policy_collision_is_reported(tmp_path):
    with ExperimentContext(registration_policy="error").activate():
        fs = _fs("dup")
        fs.save(tmp_path / "fs")
        with pytest.raises(Exception, match=r"'dup' is already registered"):
            FeatureSet.load(tmp_path / "fs")
        assert FeatureSet.load(tmp_path / "fs", overwrite=True).label == "dup"


def test_save_errors(tmp_path):
    fs = _fs()
    fs.save(tmp_path / "fs")
    with pytest.raises(FileExistsError, match=r"fs' already exists"):
        fs.save(tmp_path / "fs")
    (resolve_artifact(tmp_path / "fs") / "table.parquet").write_bytes(b"PAR1")
    with pytest.raises(CheckpointError, match=r"truncated or corrupt: file 'table.parquet'"):
        FeatureSet.load(tmp_path / "fs")


def test_fixed_size_list_of_lists_survives(tmp_path):
    t = pa.table({"features.curve.raw": pa.array(np.arange(24.0).reshape(4, 6).tolist(),
                                                  type=pa.list_(pa.float64(), 6)),
                  "targets.y.raw": pa.array([0.0, 1.0, 2.0, 3.0])})
    fs = FeatureSet.from_pyarrow_table("curves", t)
    back = FeatureSet.load(fs.save(tmp_path / "c"), overwrite=True)
    np.testing.assert_array_equal(back.get_features(), fs.get_features())
    assert back.get_features().shape == (4, 1, 6)
