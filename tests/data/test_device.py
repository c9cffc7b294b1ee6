"""DeviceStore + on-device gather: same values as host indexing, scan-ready, chunked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import FeatureSet, PairedSampler, SimilarityCondition, SimpleSampler
from modjax.data import DeviceStore, gather, gather_plan


@pytest.fixture
def fs():
    rng = np.random.default_rng(0)
    n = 37
    return FeatureSet.from_dict(
        "dev", {"a": rng.normal(size=(n, 4)).astype(np.float32),
                "b": rng.normal(size=(n, 4)).astype(np.float32),
                "y": rng.normal(size=n), "k": np.arange(n) % 3, "name": [f"s{i}" for i in range(n)]},
        ["a", "b"], "y", ["k", "name"])


def host_batch(fs, view_rows, idx):
    rows = view_rows[idx]
    return fs.get_features()[rows], fs.get_targets()[rows].astype(np.float32)


def test_store_contents(fs):
    view = fs.take(np.arange(5, 30))
    store = DeviceStore(view, tags=["k"])
    arr = store.arrays
    assert arr["features"].shape == (25, 2, 4) and arr["features"].dtype == jnp.float32
    assert arr["targets"].shape == (25, 1) and arr["tags"]["k"].dtype == jnp.int32
    np.testing.assert_array_equal(arr["row_ids"], np.arange(5, 30))
    assert store.arrays is arr  # placed once
    assert store.nbytes == 25 * (8 * 4 + 4 + 4 + 4)
    with pytest.raises(TypeError, match="tag 'name'.*strings"):
        DeviceStore(fs, tags=["name"])
    np.testing.assert_array_equal(store.uuids_for(np.asarray(arr["row_ids"][:2])),
                                  fs.sample_uuids[5:7])


def test_scan_over_plan_matches_numpy_indexing(fs):
    view = fs.take(np.arange(2, 37))
    store = DeviceStore(view)
    sampler = SimpleSampler(8, seed=5, source=view)
    arrays, dplan = next(store.epoch_chunks(sampler.plan()))
    assert dplan.indices["default"].dtype == jnp.int32

    @jax.jit
    def epoch(arrays, plan):
        def step(c, s):
            b = gather_plan(arrays, s)["default"]
            return c + jnp.sum(b["weights"]), (b["features"], b["targets"], b["row_ids"])
        return jax.lax.scan(step, 0.0, plan)

    total, (f, t, r) = epoch(arrays, dplan)
    plan = sampler.plan()
    hf, ht = host_batch(fs, view.indices, plan.indices["default"])
    chex.assert_trees_all_equal(np.asarray(f), hf)
    chex.assert_trees_all_equal(np.asarray(t), ht)
    np.testing.assert_array_equal(np.asarray(r), view.indices[plan.indices["default"]])
    assert float(total) == 35.0


def test_gather_masks_weights():
    arrays = {"features": jnp.ones((4, 1)), "targets": jnp.zeros((4, 1)), "tags": {},
              "row_ids": jnp.arange(4)}
    b = gather(arrays, jnp.array([1, 0]), jnp.array([True, False]), jnp.array([2.0, 3.0]))
    np.testing.assert_array_equal(b["weights"], [2.0, 0.0])
    assert set(b) == {"features", "targets", "tags", "weights", "mask", "row_ids"}


def test_multi_role_batches(fs):
    store = DeviceStore(fs, tags=["k"])
    s = PairedSampler({"k": SimilarityCondition()}, 6, source=fs)
    arrays, dplan = next(store.epoch_chunks(s.plan()))
    step = jax.tree_util.tree_map(lambda a: a[0], dplan)
    batch = jax.jit(gather_plan)(arrays, step)
    assert set(batch) == {"anchor", "pair"}
    np.testing.assert_array_equal(batch["anchor"]["tags"]["k"], batch["pair"]["tags"]["k"])


def test_byte_budget_streams_same_batches(fs):
    sampler = SimpleSampler(4, seed=1, source=fs)
    plan = sampler.plan()
    full = DeviceStore(fs)
    small = DeviceStore(fs, byte_budget=full._row_bytes() * 4 * 3)  # 3 batches per chunk
    assert not small.fits and small.chunk_batches(plan) == 3
    with pytest.raises(MemoryError, match="byte_budget"):
        _ = small.arrays
    chunks = list(small.epoch_chunks(plan))
    assert len(chunks) == 4  # 10 batches in chunks of 3
    shapes = {jax.tree_util.tree_structure(c[0]) for c in chunks}
    assert len(shapes) == 1
    assert {c[0]["features"].shape for c in chunks} == {(12, 2, 4)}
    got = []
    for arrays, cplan in chunks:
        for i in range(cplan.n_batches):
            b = gather_plan(arrays, jax.tree_util.tree_map(lambda a, i=i: a[i], cplan))["default"]
            got.append((np.asarray(b["row_ids"]), np.asarray(b["features"]), np.asarray(b["mask"])))
    got = got[:plan.n_batches]
    for (rid, f, m), idx, mask in zip(got, plan.indices["default"], plan.mask["default"]):
        np.testing.assert_array_equal(rid[m], idx[mask])
        np.testing.assert_array_equal(f[m], fs.get_features()[idx[mask]])


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from modjax import FeatureSet, SimpleSampler
    from modjax.data import DeviceStore, make_gather
    assert jax.device_count() == 8
    fs = FeatureSet.from_dict("m", {"x": np.arange(30.0).reshape(30, 1), "y": np.arange(30.0)},
                              "x", "y")
    mesh = Mesh(np.array(jax.devices()), ("data",))
    store = DeviceStore(fs, mesh=mesh)
    sampler = SimpleSampler(12, seed=0, source=fs)
    arrays, plan = next(store.epoch_chunks(sampler.plan()))
    assert plan.indices["default"].shape == (3, 16), plan.indices["default"].shape
    assert plan.mask["default"][:, 12:].sum() == 0
    g = make_gather(mesh)
    @jax.jit
    def epoch(arrays, plan):
        def step(c, s):
            b = g(arrays, s)["default"]
            return c + jnp.sum(b["targets"][:, 0] * b["weights"]), b["features"]
        return jax.lax.scan(step, 0.0, plan)
    total, feats = epoch(arrays, plan)
    assert float(total) == float(np.arange(30.0).sum()), total
    step0 = jax.tree_util.tree_map(lambda a: a[0], plan)
    b = jax.jit(g)(arrays, step0)["default"]
    assert len(b["features"].sharding.device_set) == 8
    assert b["features"].sharding.spec[0] == "data", b["features"].sharding
    # streaming under a mesh: fixed-shape chunks, same total
    small = DeviceStore(fs, mesh=mesh, byte_budget=store._row_bytes() * 12 * 2)
    chunks = list(small.epoch_chunks(sampler.plan()))
    assert len(chunks) == 2 and {c[0]["features"].shape for c in chunks} == {(24, 1, 1)}, [c[0]["features"].shape for c in chunks]
    streamed = sum(float(epoch(a, p)[0]) for a, p in chunks)
    assert streamed == float(np.arange(30.0).sum()), streamed
    print("OK")
""")


def test_mesh_sharding_subprocess():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("OK")


def _run_chunks(chunks):
    """Host copies of every (non-padding) batch the chunks produce, in order."""
    out = []
    for arrays, cplan in chunks:
        for i in range(cplan.n_batches):
            step = jax.tree_util.tree_map(lambda a, i=i: a[i], cplan)
            out.append(jax.tree_util.tree_map(np.asarray, gather_plan(arrays, step)))
    return out


def test_streaming_multi_role_matches_resident(fs):
    view = fs.take(np.arange(3, 37), label="most")
    s = PairedSampler({"k": SimilarityCondition()}, 5, seed=2, source=view)
    plan = s.plan(1)
    resident = _run_chunks(DeviceStore(view, tags=["k"]).epoch_chunks(plan))
    row = DeviceStore(view, tags=["k"])._row_bytes()
    small = DeviceStore(view, tags=["k"], byte_budget=row * 5 * 2 * 2)  # 2 roles, 2 batches
    assert small.chunk_batches(plan) == 2
    chunks = list(small.epoch_chunks(plan))
    assert len(chunks) == -(-plan.n_batches // 2)
    assert {c[0]["features"].shape for c in chunks} == {(20, 2, 4)}
    streamed = _run_chunks(chunks)[:plan.n_batches]
    assert len(streamed) == len(resident) == plan.n_batches
    for got, want in zip(streamed, resident):
        for role in ("anchor", "pair"):
            m = want[role]["mask"]
            np.testing.assert_array_equal(got[role]["mask"], m)
            np.testing.assert_array_equal(got[role]["row_ids"][m], want[role]["row_ids"][m])
            np.testing.assert_array_equal(got[role]["features"][m], want[role]["features"][m])
            np.testing.assert_array_equal(got[role]["tags"]["k"][m], want[role]["tags"]["k"][m])
            np.testing.assert_array_equal(got[role]["weights"], want[role]["weights"])
        np.testing.assert_array_equal(got["anchor"]["tags"]["k"][got["anchor"]["mask"]],
                                      got["pair"]["tags"]["k"][got["pair"]["mask"]])


def test_store_from_reference_and_bad_arguments(fs):
    fs.split_random({"train": 0.7, "test": 0.3}, seed=0)
    ref = fs.reference(features="b", targets="y", rep="raw")
    store = DeviceStore.from_reference(ref, split="test")
    assert store.feature_keys == ["b"] and store.target_keys == ["y"] and store.rep == "raw"
    np.testing.assert_array_equal(store.arrays["row_ids"], fs.get_split("test").indices)
    chex.assert_trees_all_equal(np.asarray(store.arrays["features"]),
                                fs.get_split("test").get_features("b"))
    from jax.sharding import Mesh
    with pytest.raises(ValueError, match=r"mesh axes \('batch',\) have no 'data' axis"):
        DeviceStore(fs, mesh=Mesh(np.array(jax.devices()[:1]), ("batch",)))
    with pytest.raises(ValueError, match="byte_budget must be > 0, got 0"):
        DeviceStore(fs, byte_budget=0)
    with pytest.raises(KeyError, match="no features key 'c'"):
        DeviceStore(fs, features=["a", "c"])
