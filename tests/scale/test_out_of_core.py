"""Out-of-core FeatureSets (Parquet, memory-mapped Arrow IPC) read only the rows used and
train exactly like the in-memory FeatureSet."""

from __future__ import annotations

import jax
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from modjax import FeatureSet, SimpleSampler
from modjax.data import DeviceStore
from modjax.data.out_of_core import ChunkedColumn, OutOfCoreFeatureSet, fit_scaler_chunked
from modjax.data.scalers import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from tests.train.train_helpers import make_mlp_graph, train_phase


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=4)).astype(np.float32)
    return {**{f"x{i}": x[:, i] for i in range(4)}, "y": y}


KEYS = [f"x{i}" for i in range(4)]


@pytest.fixture
def parquet_fs(tmp_path):
    data = _data()
    pq.write_table(pa.table(data), tmp_path / "d.parquet", row_group_size=50)
    fs = FeatureSet.from_parquet("ooc", tmp_path / "d.parquet", feature_keys=KEYS,
                                 target_keys="y", batch_rows=32)
    return fs, data


def test_parquet_featureset_is_memory_mapped_and_chunked(parquet_fs):
    fs, data = parquet_fs
    assert isinstance(fs, OutOfCoreFeatureSet) and fs.n_samples == 240
    col = fs._numpy_column("features.x0.raw")
    # batches of at most 32 rows (Parquet readers cut them at row groups): several chunks
    assert isinstance(col, ChunkedColumn) and col.num_chunks >= 240 // 32
    # columns are never combined: reading rows copies only those rows
    rows = np.array([239, 0, 33, 64, 5])
    np.testing.assert_array_equal(fs.take(rows).get_features()[:, :, ],
                                  np.stack([data[k][rows] for k in KEYS], axis=1))
    np.testing.assert_array_equal(col[10:70], data["x0"][10:70])
    np.testing.assert_array_equal(col[np.arange(240) % 7 == 0], data["x0"][::7])
    assert col[-1] == data["x0"][-1]


def test_arrow_ipc_in_modjax_layout_maps_without_copy(tmp_path):
    fs = FeatureSet.from_dict("mem", _data(), KEYS, "y", register=False)
    with ipc.new_file(str(tmp_path / "m.arrow"), fs.table.schema) as w:
        for b in fs.table.to_batches(max_chunksize=60):
            w.write_batch(b)
    ooc = FeatureSet.from_arrow_ipc("m", tmp_path / "m.arrow", register=False)
    buf = ooc.table.column("features.x1.raw").chunk(0).buffers()[1]
    assert not buf.is_mutable  # a read-only buffer of the mapped file, not a heap copy
    assert list(ooc.sample_uuids[:3]) == list(fs.sample_uuids[:3])
    np.testing.assert_array_equal(ooc.get_features(), fs.get_features())


def test_plain_arrow_ipc_needs_keys(tmp_path):
    t = pa.table({"a": np.arange(3.0)})
    with ipc.new_file(str(tmp_path / "p.arrow"), t.schema) as w:
        w.write_table(t)
    with pytest.raises(ValueError, match="plain columns \\['a'\\]; name feature_keys"):
        FeatureSet.from_arrow_ipc("p", tmp_path / "p.arrow")
    with pytest.raises(KeyError, match=r"columns \['b'\] are not in the data"):
        FeatureSet.from_arrow_ipc("p", tmp_path / "p.arrow", feature_keys="b")


def test_splits_scalers_and_streaming_training_equal_in_memory(parquet_fs):
    fs, data = parquet_fs
    mem = FeatureSet.from_dict("mem", data, KEYS, "y")
    for s in (fs, mem):
        s.add_split(s.take(np.arange(180), label="train"), "train")
    # scaler statistics chunk by chunk equal the whole-column fit
    for cls in (StandardScaler, MinMaxScaler, MaxAbsScaler):
        whole = cls().fit(data["x2"][:180, None].astype(np.float64))
        part = fit_scaler_chunked(cls(), fs.get_split("train") if hasattr(fs, "get_split")
                                  else fs._splits["train"], "features", "x2", chunk_rows=37)
        for k in whole._state_keys:
            np.testing.assert_allclose(getattr(part, k), getattr(whole, k), rtol=1e-12)
    with pytest.raises(TypeError, match="RobustScaler needs all rows"):
        fit_scaler_chunked(RobustScaler(), fs, "features", "x2")
    # a streamed epoch (budget of 2 batches) over the mapped data trains like in memory
    out = []
    for s in (fs, mem):
        g = make_mlp_graph(s)
        res = train_phase(n_epochs=2, batch_size=30, byte_budget=DeviceStore(s)._row_bytes() * 60
                          ).execute(g, show_training_progress=False)
        out.append((jax.tree.leaves(g.variables["params"]),
                    np.concatenate([res.epochs[e].loss for e in res.epoch_indices])))
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_device_store_chunks_read_only_their_rows(parquet_fs, monkeypatch):
    fs, _ = parquet_fs
    read = []
    orig = ChunkedColumn._rows

    def spy(self, idx):
        read.append(len(idx))
        return orig(self, idx)
    monkeypatch.setattr(ChunkedColumn, "_rows", spy)
    store = DeviceStore(fs, byte_budget=DeviceStore(fs)._row_bytes() * 48)
    plan = SimpleSampler(24, seed=0, source=fs).plan()
    chunks = list(store.epoch_chunks(plan))
    assert len(chunks) == 5 and max(read) <= 48  # never a whole column (240 rows)


def test_parquet_directory_local_and_through_a_filesystem_object_read_the_same(tmp_path):
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    data = _data(n=90)
    (tmp_path / "dir").mkdir()
    for i, sl in enumerate((slice(0, 40), slice(40, 90))):
        pq.write_table(pa.table({k: v[sl] for k, v in data.items()}),
                       tmp_path / "dir" / f"part{i}.parquet", row_group_size=16)
    local = FeatureSet.from_parquet("dl", tmp_path / "dir", feature_keys=KEYS, target_keys="y",
                                    batch_rows=8, register=False)
    # a filesystem other than the local one is read through open_input_file, not mapped
    sub = pafs.SubTreeFileSystem(str(tmp_path / "dir"), pafs.LocalFileSystem())
    dataset = ds.dataset(["part0.parquet", "part1.parquet"], filesystem=sub, format="parquet")
    remote = FeatureSet.from_parquet("dr", dataset, feature_keys=KEYS, target_keys="y",
                                     cache_path=tmp_path / "r.arrow", register=False)
    want = np.stack([data[k] for k in KEYS], axis=1)
    for fs in (local, remote):
        assert fs.n_samples == 90
        np.testing.assert_array_equal(fs.get_features(), want)  # files in order


@pytest.mark.parametrize("out_of_core", [False, True])
def test_chunk_builder_allocates_the_chunk_once(tmp_path, out_of_core):
    """A streamed chunk is gathered straight into one array per domain: the traced peak
    of building it is the chunk plus small bounded blocks, not per-column arrays plus a
    stacked copy (which would be >= 2x the chunk)."""
    import tracemalloc

    from modjax.data import device

    n, keys = 60_000, [f"c{i}" for i in range(16)]
    rng = np.random.default_rng(3)
    data = {k: rng.standard_normal(n).astype(np.float64 if k == "c5" else np.float32)
            for k in keys}
    data["y"] = rng.standard_normal(n).astype(np.float32)
    mem = FeatureSet.from_dict("cb", data, keys, "y", register=False)
    fs = mem
    if out_of_core:
        with ipc.new_file(str(tmp_path / "cb.arrow"), mem.table.schema) as w:
            for b in mem.table.to_batches(max_chunksize=7000):
                w.write_batch(b)
        fs = FeatureSet.from_arrow_ipc("cb", tmp_path / "cb.arrow", register=False)
    store = DeviceStore(fs)
    rows = np.sort(rng.choice(n, size=40_000, replace=False))  # a chunk's rows: not contiguous
    view = store.view.take(rows)
    want = np.stack([data[k][rows] for k in keys], axis=1).astype(np.float32)
    tracemalloc.start()
    try:
        host = store._host_arrays(view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert host["features"].dtype == np.float32 and host["features"].shape == (40_000, 16)
    np.testing.assert_array_equal(host["features"], want)  # c5 cast float64 -> float32 as before
    np.testing.assert_array_equal(host["targets"][:, 0], data["y"][rows])
    chunk = sum(a.nbytes for a in (host["features"], host["targets"], host["row_ids"]))
    # the temporaries are bounded by one block of rows (its indices, one column's values,
    # the chunked column's per-block bookkeeping), whatever the column count: per-column
    # arrays plus a stack would add more than the whole features array (2.56 MB) here
    assert peak <= chunk + 64 * device.GATHER_BLOCK_ROWS, (peak, chunk)


def test_result_uuids_of_an_out_of_core_featureset_read_only_the_asked_rows(parquet_fs,
                                                                            monkeypatch):
    # results used to read the whole uuid column (get_column) to look up one epoch's rows
    fs, data = parquet_fs
    fs.add_split(fs.take(np.arange(180), label="train"), "train")
    g = make_mlp_graph(fs)
    res = train_phase(n_epochs=1, batch_size=30, byte_budget=DeviceStore(fs)._row_bytes() * 60
                      ).execute(g, show_training_progress=False)
    rows, mask = res._rows(res._epoch(None), "mlp", "default")
    expected = np.asarray(fs.sample_uuids)[rows[mask]]
    monkeypatch.setattr(OutOfCoreFeatureSet, "get_column", lambda *a, **k: pytest.fail(
        "the whole uuid column was read"))
    got = res.stacked_tensors("mlp", "sample_uuids")
    assert got.shape == (180,) and list(got) == list(expected)
