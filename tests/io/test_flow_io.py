"""Seed 002 on flow Graphs: a standalone encoder's checkpoint loads into a larger model's
"encoder" subgraph; migration renames tags; save/load of a flow Graph."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import pytest

from modjax import Linear
from modjax.errors import CheckpointError
from modjax.flow import FlowBuilder, Graph
from modjax.io import checkpoint_version, migrate_checkpoint

X = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3)


def _encoder(first="scan", width=8):
    return (FlowBuilder.from_(Linear(width)).tag(first).through(Linear(4)).tag("read")
            .label("encoder").build())


def _model(encoder):
    m = FlowBuilder.from_(encoder).through(Linear(2)).build()
    m.build((3,))
    return m


def test_standalone_encoder_loads_into_larger_model(tmp_path):
    enc = _encoder()
    enc.initialize((3,), key=jnp.asarray([0, 7], jnp.uint32))
    enc.save_checkpoint(tmp_path / "encoder_v1")
    model = _model(_encoder())
    assert not jnp.array_equal(model.variables["params"]["encoder"]["scan"]["kernel"],
                               enc.variables["params"]["scan"]["kernel"])
    head = model.variables["params"]["Linear_0"]
    report = model.load_subgraph_checkpoint("encoder", tmp_path / "encoder_v1")
    assert report.is_complete and report.hash_matched
    assert set(report.loaded) == {"params.scan.kernel", "params.scan.bias", "params.read.kernel",
                                  "params.read.bias"}
    chex.assert_trees_all_equal(model.parameters_at("encoder"), enc.variables["params"])
    chex.assert_trees_all_equal(model.variables["params"]["Linear_0"], head)
    model.freeze("encoder.read")
    assert model.frozen_paths == ("encoder.read",)


def test_encoder_of_other_width_is_refused(tmp_path):
    enc = _encoder(width=16)
    enc.build((3,))
    enc.save_checkpoint(tmp_path / "wide")
    model = _model(_encoder())
    before = model.variables
    with pytest.raises(CheckpointError, match=r"params\.scan\.kernel \(checkpoint float32\(3, 16\) "
                                              r"vs target float32\(3, 8\)\)"):
        model.load_subgraph_checkpoint("encoder", tmp_path / "wide")
    assert model.variables is before


def test_migrate_renamed_tag_then_load(tmp_path):
    old = _encoder(first="scan")
    old.build((3,))
    old.save_checkpoint(tmp_path / "v1")
    assert checkpoint_version(tmp_path / "v1") == 1
    report = migrate_checkpoint(tmp_path / "v1", tmp_path / "v2", rename={"scan": "reader"})
    assert report.is_complete
    model = _model(_encoder(first="reader"))
    with pytest.raises(CheckpointError, match=r"missing in checkpoint 2: params\.reader"):
        model.load_subgraph_checkpoint("encoder", tmp_path / "v1")
    rep = model.load_subgraph_checkpoint("encoder", tmp_path / "v2")
    assert rep.is_complete and not rep.hash_matched
    chex.assert_trees_all_equal(model.variables["params"]["encoder"]["reader"],
                                old.variables["params"]["scan"])


def test_flow_graph_save_load_and_checkpoint_restore(tmp_path):
    model = _model(_encoder())
    model.freeze("encoder.scan")
    model.save(tmp_path / "m")
    back = Graph.load(tmp_path / "m")
    chex.assert_trees_all_equal(back.variables, model.variables)
    chex.assert_trees_all_equal(back(X), model(X))
    assert back.frozen_paths == ("encoder.scan",)
    model.save_checkpoint(tmp_path / "ck")
    v = model.variables
    model.thaw("encoder.scan")
    model.set_variables({"params": {**v["params"], "Linear_0": {
        "kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}, "state": v["state"]})
    model.restore_checkpoint(tmp_path / "ck")
    chex.assert_trees_all_equal(model.variables, v)
    assert model.frozen_paths == ("encoder.scan",)
