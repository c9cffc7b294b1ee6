"""Per-row host memory of the out-of-core path: plans, chunks, scaler fits."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from modjax import FeatureSet, SimpleSampler
from modjax.data.plan import IndexPlan


@pytest.mark.parametrize("n,batch,drop_last,shuffle", [
    (1, 4, False, True), (10, 4, False, True), (10, 4, True, True),
    (12, 4, True, False), (4097, 256, False, True), (4097, 256, True, True),
    (100_003, 1000, False, False)])
def test_simple_sampler_plan_equals_the_int64_permutation_plan(n, batch, drop_last, shuffle):
    fs = FeatureSet.from_dict("pm", {"x": np.arange(n, dtype=np.float32),
                                     "y": np.zeros(n, np.float32)}, "x", "y", register=False)
    s = SimpleSampler(batch, seed=5, shuffle=shuffle, drop_last=drop_last, source=fs)
    for epoch in (0, 3):
        got = s.plan(epoch)
        order = s._rng(epoch).permutation(n) if shuffle else np.arange(n)
        want = IndexPlan.from_flat(order, batch, drop_last=drop_last)
        for name in ("indices", "mask", "weights"):
            a, b = getattr(got, name)["default"], getattr(want, name)["default"]
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b)


def test_simple_sampler_plan_allocates_nine_bytes_per_row():
    n = 1_000_000
    fs = FeatureSet.from_dict("pm2", {"x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32)},
                              "x", "y", register=False)
    s = SimpleSampler(4096, seed=0, source=fs)
    tracemalloc.start()
    try:
        plan = s.plan()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    slots = plan.n_batches * plan.batch_size
    # int32 indices + bool mask + float32 weights, plus at most one 1 Mi-row fill block:
    # an int64 permutation alone would be 8 bytes per row
    assert peak <= 9 * slots + 4 * (1 << 20) + 65536, peak / n


def test_streamed_chunk_is_adopted_by_the_cpu_backend_not_copied(tmp_path):
    import jax

    from modjax.data.device import HOST_ALIGNMENT, DeviceStore
    from modjax.data.out_of_core import write_arrow_ipc

    n = 4096
    rng = np.random.default_rng(0)
    import pyarrow as pa
    batch = pa.record_batch({"a": rng.standard_normal(n), "b": rng.standard_normal(n),
                             "y": np.zeros(n, np.float32)})
    path = write_arrow_ipc([batch], tmp_path / "c.arrow", feature_keys=["a", "b"],
                           target_keys="y")
    fs = FeatureSet.from_arrow_ipc("chunk", path, register=False)
    plan = SimpleSampler(256, seed=0, source=fs).plan()
    store = DeviceStore(fs, byte_budget=DeviceStore(fs).nbytes // 4)
    captured = []
    real_put = jax.device_put

    def put(x, *a, **k):
        captured.append(x)
        return real_put(x, *a, **k)

    jax.device_put = put
    try:
        arrays, _ = next(store.epoch_chunks(plan))
    finally:
        jax.device_put = real_put
    host = captured[0]["features"]
    assert host.ctypes.data % HOST_ALIGNMENT == 0
    want = np.stack([fs.get_features(rep="raw")[:, 0], fs.get_features(rep="raw")[:, 1]], 1)
    np.testing.assert_array_equal(np.asarray(arrays["features"]),
                                  want[np.asarray(captured[0]["row_ids"])].astype(np.float32))
    if jax.default_backend() == "cpu":  # one buffer for the host and the device
        assert np.shares_memory(np.asarray(arrays["features"]), host)


def test_uuid_lookups_on_an_out_of_core_featureset(tmp_path, monkeypatch):
    import pyarrow as pa

    from modjax.data.device import DeviceStore
    from modjax.data.out_of_core import ChunkedColumn, write_arrow_ipc

    batches = [pa.record_batch({"x": np.arange(s, s + 50, dtype=np.float64),
                                "y": np.zeros(50)}) for s in range(0, 200, 50)]
    path = write_arrow_ipc(batches, tmp_path / "u.arrow", feature_keys="x", target_keys="y")
    fs = FeatureSet.from_arrow_ipc("uuids", path, register=False)
    uuids = fs.sample_uuids
    # looking rows up by uuid reads the uuid column (it needs every uuid) and works
    assert fs.rows_for_uuids(uuids[[170, 3]]).tolist() == [170, 3]
    assert fs.take_uuids(uuids[[9]]).get_features().ravel().tolist() == [9.0]
    # mapping row ids back to uuids reads only those rows
    reads = []
    real = ChunkedColumn._rows
    monkeypatch.setattr(ChunkedColumn, "_rows", lambda self, idx: reads.append(idx.size)
                        or real(self, idx))
    monkeypatch.setattr(ChunkedColumn, "__array__", lambda *a, **k: pytest.fail("whole column"))
    got = DeviceStore(fs).uuids_for([199, 0, 120])
    assert got.tolist() == uuids[[199, 0, 120]].tolist() and reads == [3]


def test_each_streamed_chunk_is_freed_before_the_next_is_gathered(tmp_path, monkeypatch):
    """An adopted host buffer is freed only by the cyclic collector: the store collects
    before each chunk, so at most one chunk's buffer exists even with automatic
    collection off."""
    import gc
    import weakref

    import pyarrow as pa

    from modjax.data import host_gather
    from modjax.data.device import DeviceStore
    from modjax.data.out_of_core import write_arrow_ipc

    n = 400_000  # chunks of 50000 rows: large enough for the backend to adopt them
    rng = np.random.default_rng(0)
    batch = pa.record_batch({"a": rng.standard_normal(n), "b": rng.standard_normal(n),
                             "y": np.zeros(n, np.float32)})
    path = write_arrow_ipc([batch], tmp_path / "f.arrow", feature_keys=["a", "b"],
                           target_keys="y")
    fs = FeatureSet.from_arrow_ipc("free", path, register=False)
    plan = SimpleSampler(5000, seed=0, source=fs).plan()
    store = DeviceStore(fs, byte_budget=DeviceStore(fs).nbytes // 8)
    buffers: list = []
    alive_at_alloc: list = []
    real = host_gather.aligned_empty

    def spy(shape, dtype):
        out = real(shape, dtype)
        if shape[1:] == (2,):  # the features array of a chunk
            alive_at_alloc.append(sum(r() is not None for r in buffers))
            buffers.append(weakref.ref(out.base))  # the buffer the backend keeps
        return out

    monkeypatch.setattr(host_gather, "aligned_empty", spy)
    was = gc.isenabled()
    gc.disable()
    try:
        total = 0.0
        for arrays, _ in store.epoch_chunks(plan):
            total += float(arrays["features"].sum())
            del arrays
    finally:
        if was:
            gc.enable()
    assert len(buffers) >= 8 and alive_at_alloc == [0] * len(buffers)
