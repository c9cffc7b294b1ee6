"""Scalers on out-of-core FeatureSets: fitted and applied chunk by chunk, equal to the
in-memory FeatureSet, without reading whole columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modjax import FeatureSet
from modjax.data import chunked_scaling as cs
from modjax.data.out_of_core import ChunkedColumn, write_arrow_ipc

KEYS = ["a", "b", "c"]


def _pair(tmp_path, n=1000, seed=0, curves=False):
    rng = np.random.default_rng(seed)
    data = {"a": rng.normal(5.0, 3.0, n), "b": rng.uniform(-2, 9, n).astype(np.float32),
            "c": (rng.normal(size=(n, 4)) if curves else rng.normal(1e6, 1e-2, n)),
            "y": rng.normal(size=n).astype(np.float32)}
    batches = [pa.record_batch({k: (pa.FixedSizeListArray.from_arrays(
        pa.array(v[s:s + 97].ravel()), 4) if v.ndim == 2 else v[s:s + 97])
        for k, v in data.items()}) for s in range(0, n, 97)]
    path = write_arrow_ipc(batches, tmp_path / "s.arrow", feature_keys=KEYS, target_keys="y")
    ooc = FeatureSet.from_arrow_ipc("ooc_scale", path, register=False)
    mem = FeatureSet.from_pyarrow_table("mem_scale", ooc.table.combine_chunks(), register=False)
    for fs in (ooc, mem):
        fs.add_split(fs.take(np.arange(0, n, 3), label="train"), "train")
    return ooc, mem


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(cs, "SCALE_CHUNK_ROWS", 64)


def _state(rec):
    return {k: np.asarray(v) for k, v in rec.scaler.get_state().items()}


@pytest.mark.parametrize("scaler", ["StandardScaler", "MinMaxScaler", "MaxAbsScaler",
                                    "Negate", "RobustScaler"])
@pytest.mark.parametrize("split", [None, "train"])
def test_out_of_core_fit_transform_equals_in_memory(tmp_path, small_chunks, scaler, split):
    ooc, mem = _pair(tmp_path)
    a = ooc.fit_transform(scaler, domain="features", fit_to_split=split)
    b = mem.fit_transform(scaler, domain="features", fit_to_split=split)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:  # float64 statistics: Chan's merge equals the one-pass fit to 1e-12
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-12, atol=0, err_msg=k)
    assert ooc.columns == mem.columns
    fa, fb = ooc.get_features(), mem.get_features()
    assert fa.dtype == fb.dtype
    # a mean that differs in its last bit moves (x - mean) / std by |mean| / std ulps:
    # column c (mean 1e6, std 1e-2) is conditioned 1e8 times worse than a and b
    cond = np.abs(sb.get("mean_", np.zeros(3))) / sb.get("scale_", np.ones(3)) + 1.0
    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-15 * 64 * cond.max())
    np.testing.assert_allclose(fa[:, :2], fb[:, :2], rtol=1e-12, atol=1e-13)
    if scaler in ("MinMaxScaler", "MaxAbsScaler", "Negate", "RobustScaler"):
        np.testing.assert_array_equal(fa, fb)  # same statistics bit for bit: same values
    # the transformed columns are mapped from a file, not held in memory
    col = ooc._numpy_column("features.a.transformed")
    assert isinstance(col, ChunkedColumn)


def test_standard_scaler_fit_is_numerically_sound_at_large_offsets(tmp_path, small_chunks):
    # column c: mean 1e6, std 1e-2: a running sum of squares would lose every digit
    ooc, mem = _pair(tmp_path)
    a = ooc.fit_transform("StandardScaler", domain="features", keys="c")
    b = mem.fit_transform("StandardScaler", domain="features", keys="c")
    np.testing.assert_allclose(a.scaler.scaler.scale_, b.scaler.scaler.scale_, rtol=1e-9)
    np.testing.assert_allclose(a.scaler.scaler.scale_, [1e-2], rtol=0.1)


def test_chained_transforms_merged_axes_and_undo_equal_in_memory(tmp_path, small_chunks):
    ooc, mem = _pair(tmp_path, curves=True)
    for fs in (ooc, mem):
        fs.fit_transform("MinMaxScaler", domain="features", keys="c", merged_axes=2)
        fs.fit_transform("Negate", domain="features", keys="c")
        fs.fit_transform("PerSampleMinMaxScaler", domain="features", keys="c")
        fs.fit_transform("MaxAbsScaler", domain="features", keys=["a", "b"],
                         fit_to_split="train")
    assert ooc.columns == mem.columns
    for k in KEYS:
        np.testing.assert_array_equal(ooc.get_domain("features", k),
                                      mem.get_domain("features", k))
    # per-sample statistics of every row are kept, as in memory, so they invert
    scaled = mem.get_domain("features", "c")
    np.testing.assert_array_equal(
        ooc.unscale_data_for_cols(data=scaled, domain="features", columns="c"),
        mem.unscale_data_for_cols(data=scaled, domain="features", columns="c"))
    for fs in (ooc, mem):
        fs.undo_last_transform("features", "c")
    assert ooc.columns == mem.columns
    for k in KEYS:
        np.testing.assert_array_equal(ooc.get_domain("features", k),
                                      mem.get_domain("features", k))
    assert isinstance(ooc._numpy_column("features.c.transformed"), ChunkedColumn)
    for fs in (ooc, mem):
        fs.undo_all_transforms()
    assert ooc.columns == mem.columns
    assert not [c for c in ooc.columns if c.endswith(".transformed")]
    for k in KEYS:
        np.testing.assert_array_equal(ooc.get_domain("features", k),
                                      mem.get_domain("features", k))


def test_non_finite_rows_are_refused_naming_the_column_and_count(tmp_path, small_chunks):
    n = 300
    x = np.arange(n, dtype=np.float64)
    x[[5, 150, 299]] = [np.nan, np.inf, np.nan]
    batch = pa.record_batch({"a": np.zeros(n), "x": x, "y": np.zeros(n)})
    path = write_arrow_ipc([batch], tmp_path / "nf.arrow", feature_keys=["a", "x"],
                           target_keys="y")
    ooc = FeatureSet.from_arrow_ipc("nf", path, register=False)
    mem = FeatureSet.from_dict("nfm", {"a": np.zeros(n), "x": x, "y": np.zeros(n)},
                               ["a", "x"], "y", register=False)
    msgs = []
    for fs in (ooc, mem):
        with pytest.raises(ValueError, match="features.x has 3 non-finite") as e:
            fs.fit_transform("StandardScaler", domain="features")
        msgs.append(str(e.value).split(": ", 1)[1])
    assert msgs[0] == msgs[1]
    assert not [c for c in ooc.columns if c.endswith(".transformed")]


def test_fit_transform_reads_chunks_and_never_whole_columns(tmp_path, small_chunks, monkeypatch):
    ooc, _ = _pair(tmp_path, n=1000)
    reads = []
    real = ChunkedColumn.__getitem__

    def spy(self, key):
        out = real(self, key)
        reads.append(len(out))
        return out

    monkeypatch.setattr(ChunkedColumn, "__getitem__", spy)
    monkeypatch.setattr(ChunkedColumn, "__array__", lambda *a, **k: pytest.fail("whole column"))
    ooc.fit_transform("StandardScaler", domain="features", fit_to_split="train")
    ooc.undo_all_transforms()
    assert reads and max(reads) <= 64
    # fit (334 train rows) and transform (1000 rows) of 3 keys, then a replay of nothing
    assert sum(reads) == 3 * (334 + 1000)


def test_fit_transform_memory_is_bounded_by_the_chunk(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(cs, "SCALE_CHUNK_ROWS", 8192)
    n = 400_000
    rng = np.random.default_rng(1)
    batches = [pa.record_batch({"a": rng.normal(size=50_000), "b": rng.normal(size=50_000),
                                "y": np.zeros(50_000)}) for _ in range(n // 50_000)]
    path = write_arrow_ipc(batches, tmp_path / "m.arrow", feature_keys=["a", "b"],
                           target_keys="y")
    ooc = FeatureSet.from_arrow_ipc("mem_bound", path, register=False)
    column_bytes = n * 8
    tracemalloc.start()
    try:
        ooc.fit_transform("StandardScaler", domain="features")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # numpy temporaries of a few 8192-row chunks, far below one whole float64 column
    assert peak < column_bytes / 4, peak / column_bytes


def test_moment_accumulator_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(7.0, 2.0, size=(1001, 3))
    acc = cs.MomentAccumulator()
    for part in np.array_split(x, 13):
        acc.add(part)
    acc.add(x[:0])
    np.testing.assert_allclose(acc.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(acc.var, x.var(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(acc.lo, x.min(axis=0))
    with pytest.raises(ValueError, match="no rows"):
        _ = cs.MomentAccumulator().var
