"""Row-sharded device data, label-path parameter sharding and mixed precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from modjax import FeatureSet
from modjax.data import DeviceStore
from modjax.data.plan import IndexPlan
from modjax.data.sharded import row_blocks
from modjax.errors import ShapeMismatchError
from modjax.train.sharding import carry_shardings, param_shardings
from tests.scale.harness import run_single
from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase


def _flat(params):
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])


# ----------------------------------------------------------------- host-side cuts
def test_row_blocks_give_each_device_only_its_slots_rows():
    plan = IndexPlan.from_roles({"a": np.array([9, 2, 4, 7, 2, 5]), "b": np.array([1, 1, 3, 0, 8, 6])},
                                batch_size=3)  # 2 batches; padded to 4 slots for 2 devices
    b = row_blocks(plan, 2)
    assert b.plan.batch_size == 4 and b.capacity == 2 * 2 * 2
    for d in range(2):
        cols = slice(2 * d, 2 * d + 2)
        for r in ("a", "b"):
            real = np.asarray(b.plan.mask[r])[:, cols]
            got = b.rows[d][np.asarray(b.plan.indices[r])[:, cols]]
            want = np.asarray(plan.pad_batch_to_multiple(2).indices[r])[:, cols]
            np.testing.assert_array_equal(got[real], want[real])
    # device 0's slots read rows 9, 2 / 7, 2 and 1, 1 / 0, 8: nothing else is placed there
    assert b.rows[0].tolist() == [0, 1, 2, 7, 8, 9, 0, 0]


def test_shard_rows_needs_a_mesh():
    fs = FeatureSet.from_dict("sr", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
    with pytest.raises(ValueError, match="shard_rows=True needs a mesh"):
        DeviceStore(fs, shard_rows=True)


def test_sharded_store_refuses_whole_store_access():
    fs = FeatureSet.from_dict("sw", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
    store = DeviceStore(fs, mesh=Mesh(np.array(jax.devices()[:1]), ("data",)), shard_rows=True)
    with pytest.raises(ValueError, match="shards its rows per plan"):
        _ = store.arrays
    arrays, plan = store.epoch_arrays(IndexPlan.from_flat(np.array([3, 1]), 2))
    assert arrays["features"].shape == (2, 1)
    np.testing.assert_array_equal(np.asarray(arrays["row_ids"])[np.asarray(
        plan.indices["default"])[0]], [3, 1])


# ----------------------------------------------------------------- parameter rules
def _mesh22():
    return Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))


def test_param_rules_errors_name_rule_path_and_shapes():
    params = {"enc": {"kernel": np.zeros((4, 6)), "bias": np.zeros(6)}}
    with pytest.raises(ValueError, match=r"rule 'dec\.\*' matches no parameter.*enc\."):
        param_shardings(params, {"dec.*": P(None, "model")}, _mesh22())
    with pytest.raises(ShapeMismatchError, match=r"'enc\.bias' of shape \(6,\) has fewer dimensions"):
        param_shardings(params, {"enc.*": P(None, "model")}, _mesh22())
    with pytest.raises(ValueError, match="mesh has no axis 'tensor'"):
        param_shardings(params, {"enc.kernel": P(None, "tensor")}, _mesh22())


def test_optimizer_state_mirrors_parameter_sharding():
    import optax
    params = {"enc": {"kernel": jnp.zeros((4, 6)), "bias": jnp.zeros(6)}}
    carry = {"variables": {"params": params, "state": {}},
             "opt_state": optax.adam(1e-3).init(params), "step": jnp.int32(0)}
    sh = carry_shardings(carry, {"enc.kernel": P(None, "model")}, _mesh22())
    assert sh["opt_state"][0].mu["enc"]["kernel"].spec == P(None, "model")
    assert sh["opt_state"][0].nu["enc"]["bias"].spec == P()
    assert sh["opt_state"][0].count.spec == P()


# ----------------------------------------------------------------- 8 forced devices
@pytest.fixture(scope="module")
def mesh8(tmp_path_factory):
    return run_single("mesh8.py", str(tmp_path_factory.mktemp("m8")), devices=8, timeout=300)


@pytest.mark.slow
def test_row_sharded_store_holds_an_eighth_per_device(mesh8):
    # 320 rows, batch 40 over 8 devices: each device holds the 8 x 5 rows its slots read
    assert mesh8["store_shape"] == [320, 4]
    assert mesh8["shard_shapes"] == [[40, 4]] and mesh8["shard_devices"] == 8
    assert mesh8["plan_spec"] == [None, "data"]


@pytest.mark.slow
def test_row_sharded_training_equals_replicated_and_one_device(mesh8):
    runs = mesh8["runs"]
    single = runs["single"]
    # same program, same batch sharding, other gather: bit-exact with the replicated path
    assert runs["rows"]["params"] == runs["replicated"]["params"]
    assert runs["rows"]["losses"] == runs["replicated"]["losses"]
    for name in ("rows", "rows_streamed", "params"):
        np.testing.assert_allclose(runs[name]["losses"], single["losses"], rtol=1e-5, atol=1e-6)
        assert np.max(np.abs(_flat(runs[name]["params"]) - _flat(single["params"]))) < 1e-5
        assert runs[name]["record"] == "(6, 40, 1)"


@pytest.mark.slow
def test_parameter_sharding_on_4x2_and_restore_onto_2x4(mesh8):
    p = mesh8["runs"]["params"]
    # Adam's first moment of the sharded kernel (4, 8) lives as (4, 4) per device
    assert p["opt_mu_spec"] == [None, "model"] and p["opt_mu_shard"] == [4, 4]
    assert p["restored_mesh"] == {"data": 2, "model": 4}
    assert p["restored_spec"] == ["data", "model"] and p["restored_equal"] is True


# ----------------------------------------------------------------- mixed precision
def test_bfloat16_compute_keeps_float32_master_state():
    runs = {}
    for dtype in (None, "bfloat16"):
        fs = make_featureset(n=320)
        g = make_mlp_graph(fs)
        res = train_phase(n_epochs=3, batch_size=40, compute_dtype=dtype).execute(
            g, show_training_progress=False)
        runs[dtype] = (g, res, np.concatenate([res.epochs[e].loss for e in res.epoch_indices]))
    g16, res16, loss16 = runs["bfloat16"]
    _, _, loss32 = runs[None]
    assert {str(x.dtype) for x in jax.tree.leaves(g16.variables["params"])} == {"float32"}
    assert {str(x.dtype) for x in jax.tree.leaves(g16.opt_state)
            if jnp.issubdtype(x.dtype, jnp.floating)} == {"float32"}
    rec = res16.epochs[0].records["outputs"]["mlp"]["default"]
    assert str(rec.dtype) == "float32"
    assert not np.array_equal(loss16, loss32)  # the forward really ran in bfloat16
    np.testing.assert_allclose(loss16, loss32, rtol=3e-2, atol=3e-3)


def test_compute_dtype_must_be_floating():
    from modjax.train.precision import compute_graph
    with pytest.raises(ValueError, match="floating dtype"):
        compute_graph(object(), "int32")
