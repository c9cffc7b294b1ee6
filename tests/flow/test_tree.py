"""Graph tree: children, label paths, freeze/thaw, parameters_at, training mode, summaries."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import BatchNorm, Linear
from modjax.errors import LabelPathError, ShapeMismatchError
from modjax.flow import FlowBuilder, Graph
from modjax.paths import path_mask

X = jax.random.normal(jax.random.key(2), (6, 4))


def make_model(verbose=False):
    encoder = (FlowBuilder.from_(Linear(8)).tag("scan")
               .through(Linear(8)).tag("_plumbing")
               .through(Linear(4)).tag("read")
               .label("encoder").build())
    fb = FlowBuilder.from_(encoder).through(Linear(2)).tag("output")
    return encoder, fb.verbose(verbose).build(input_shape=(4,))


@pytest.fixture(scope="module")
def tree():
    return make_model()


def test_children_paths_and_composed(tree):
    encoder, model = tree
    assert model.tree_children() == {"encoder": encoder}
    assert model.child_graph("encoder") is encoder and model.child_graph("nope") is None
    assert encoder.is_composed() and not model.is_composed()
    assert model.subgraph("encoder") is encoder
    assert model.validate_path("encoder") == "subgraph"
    assert model.validate_path("encoder.scan") == "tag"
    assert model.validate_path("output") == "tag"
    with pytest.raises(LabelPathError, match=r"'encoder.scna'.*did you mean \['scan'\]"):
        model.validate_path("encoder.scna")
    with pytest.raises(LabelPathError, match=r"'_plumbing'.*internal"):
        model.validate_path("encoder._plumbing")
    with pytest.raises(LabelPathError, match=r"no child 'decoder'"):
        model.subgraph("decoder")
    with pytest.raises(LabelPathError, match=r"'output' is a tag.*nothing lies below"):
        model.validate_path("output.x")


def test_variables_nest_under_the_label_and_parameters_at(tree):
    encoder, model = tree
    params = model.variables["params"]
    assert set(params) == {"encoder", "output"}
    assert set(params["encoder"]) == {"scan", "_plumbing", "read"}
    chex.assert_trees_all_equal(model.parameters_at("encoder.scan"), params["encoder"]["scan"])
    named = model.named_parameters_at("encoder")
    assert sorted(named) == sorted(f"{n}.{w}" for n in ("scan", "_plumbing", "read")
                                   for w in ("kernel", "bias"))
    chex.assert_trees_all_equal(named["read.kernel"], params["encoder"]["read"]["kernel"])
    assert model.named_buffers_at("encoder") == {}


def test_freeze_thaw_record_paths_for_the_optimizer():
    _, model = make_model()
    model.freeze("encoder")
    assert model.is_frozen("encoder") and model.is_frozen("encoder.read")
    assert model.frozen_paths == ("encoder",)
    model.thaw("encoder.scan")
    assert not model.is_frozen("encoder.scan") and model.is_frozen("encoder.read")
    assert not model.is_frozen("encoder")
    assert model.frozen_paths == ("encoder._plumbing", "encoder.read")
    mask = path_mask(model.variables["params"], model.frozen_paths)
    chex.assert_trees_all_equal(mask, model.frozen_mask())
    assert mask["encoder"]["read"]["kernel"] and not mask["encoder"]["scan"]["kernel"]
    assert not mask["output"]["kernel"]
    model.unfreeze(["encoder"])
    assert model.frozen_paths == ()
    with pytest.raises(LabelPathError, match="encodr"):
        model.freeze(["output", "encodr"])
    assert model.frozen_paths == ()  # nothing changed by the failed call


def test_training_a_composed_graph_keeps_the_frozen_subtree_bit_identical():
    from modjax import Optimizer
    from modjax.train import init_train_carry
    _, model = make_model()
    model.freeze("encoder")
    model.thaw("encoder.scan")
    opt = Optimizer("adam", opt_kwargs={"lr": 1e-2})
    carry = init_train_carry(model.variables, opt, jax.random.key(0),
                             frozen_paths=model.frozen_paths)
    chex.assert_trees_all_equal(carry["frozen"], model.frozen_mask())
    y = jnp.sin(X[:, :2])

    @jax.jit
    def epoch(carry, xs, ys):
        def step(c, batch):
            p, s = c["variables"]["params"], c["variables"]["state"]
            def loss(p):
                return jnp.mean((model.apply(p, s, batch[0])[0] - batch[1]) ** 2)
            val, grads = jax.value_and_grad(loss)(p)
            p, o = opt.update(grads, c["opt_state"], p, frozen=c["frozen"])
            return {**c, "variables": {"params": p, "state": s}, "opt_state": o}, val
        return jax.lax.scan(step, carry, (xs, ys))

    before = model.variables["params"]
    carry, losses = epoch(carry, jnp.stack([X] * 20), jnp.stack([y] * 20))
    after = carry["variables"]["params"]
    assert float(losses[-1]) < float(losses[0])
    chex.assert_trees_all_equal(after["encoder"]["read"], before["encoder"]["read"])
    chex.assert_trees_all_equal(after["encoder"]["_plumbing"], before["encoder"]["_plumbing"])
    assert not np.allclose(after["encoder"]["scan"]["kernel"], before["encoder"]["scan"]["kernel"])
    assert not np.allclose(after["output"]["kernel"], before["output"]["kernel"])


def test_child_frozen_before_nesting_stays_frozen():
    enc = FlowBuilder.from_(Linear(3)).tag("a").through(Linear(3)).tag("b").label("enc").build()
    enc.freeze("a")
    model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
    assert model.frozen_paths == ("enc.a",)


def test_eager_forward_tagged_at_and_internal_tags():
    _, model = make_model()
    assert model.tagged_at("encoder.scan") is None  # no forward yet
    y = model(X)
    assert y.shape == (6, 2)
    p = model.variables["params"]
    h = X @ p["encoder"]["scan"]["kernel"] + p["encoder"]["scan"]["bias"]
    chex.assert_trees_all_close(model.tagged_at("encoder.scan"), h, atol=1e-6)
    chex.assert_trees_all_close(model.tagged("output"), y)
    assert model.child_graph("encoder").tagged("_plumbing") is not None  # own view sees it
    with pytest.raises(LabelPathError, match="internal"):
        model.tagged_at("encoder._plumbing")
    with pytest.raises(LabelPathError, match="subgraph, not a tag"):
        model.tagged_at("encoder")
    with pytest.raises(LabelPathError, match="internal"):
        model.apply(p, model.variables["state"], X, capture=["encoder._plumbing"])
    _, _, cap = model.apply(p, model.variables["state"], X, capture=["encoder.read", "output"])
    assert sorted(cap) == ["encoder.read", "output"]


def test_set_training_at_keeps_batchnorm_in_eval_mode():
    enc = (FlowBuilder.from_(Linear(4)).tag("lin").through(BatchNorm(momentum=0.5)).tag("bn")
           .label("encoder").build())
    model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(4,))
    p, s = model.init(jax.random.key(0), (4,))
    _, s_train = model.apply(p, s, X, train=True)
    assert not np.allclose(s_train["encoder"]["bn"]["mean"], s["encoder"]["bn"]["mean"])
    model.set_training_at("encoder", False)
    assert model.training_at("encoder") is False
    _, s_eval = model.apply(p, s, X, train=True)
    chex.assert_trees_all_equal(s_eval["encoder"]["bn"], s["encoder"]["bn"])
    model.set_training_at("encoder", None)
    model.set_training_at("encoder.bn", False)
    _, s_eval = model.apply(p, s, X, train=True)
    chex.assert_trees_all_equal(s_eval["encoder"]["bn"], s["encoder"]["bn"])
    assert model.named_buffers_at("encoder.bn").keys() == {"mean", "var"}


def test_summaries_and_verbose_print(capsys):
    _, model = make_model(verbose=True)
    err = capsys.readouterr().err
    assert "=== Graph Tree ===" in err and "=== Parameter Summary ===" in err
    tree = model.tree_summary().splitlines()
    assert tree[0].startswith("(root) [hash: ")
    assert tree[1:3] == ["+-- tags: output", "+-- params: 158"]
    assert tree[3].startswith("+-- encoder [hash: ")
    assert tree[4:] == ["    +-- tags: scan, _plumbing (internal), read", "    +-- params: 148"]
    model.freeze("encoder.read")
    assert model.param_summary().splitlines() == [
        "Total: 158 parameters",
        "  encoder: 148 (93.7%)  partly frozen (36 frozen)",
        "  (own): 10 (6.3%)  trainable",
    ]


def test_set_variables_is_checked_and_atomic():
    _, model = make_model()
    before = model.variables
    bad = jax.tree.map(lambda a: a, before)
    bad["params"]["output"]["kernel"] = jnp.zeros((3, 2))
    with pytest.raises(ShapeMismatchError, match=r"'params.output.kernel' has shape \(3, 2\)"):
        model.set_variables(bad)
    assert model.variables is before
    new = jax.tree.map(lambda a: a + 1, before)
    model.set_variables(new)
    chex.assert_trees_all_equal(model.variables, new)


def test_config_round_trip_rebuilds_the_same_structure():
    _, model = make_model()
    model2 = Graph.from_config(model.get_config())
    assert model2.structural_hash() == model.structural_hash()
    assert model2.validate_path("encoder.read") == "tag"
    assert model2.internal_tags() == set()
    assert model2.child_graph("encoder").internal_tags() == {"_plumbing"}
    model2.set_variables(model.variables)
    chex.assert_trees_all_close(model2(X), model.apply(
        model.variables["params"], model.variables["state"], X)[0], atol=1e-6)
    import json
    json.dumps(model.get_config())


def test_standalone_encoder_loaded_into_bigger_model(tmp_path):
    encoder, _ = make_model()
    encoder.initialize((4,), key=jax.random.key(7))
    encoder.save_checkpoint(tmp_path / "enc")
    fresh, model = make_model()
    report = model.load_subgraph_checkpoint("encoder", tmp_path / "enc")
    assert len(report.loaded) == 6 and not report.missing
    chex.assert_trees_all_equal(model.parameters_at("encoder"), encoder.variables["params"])


def test_save_load_round_trip_keeps_variables_and_frozen_paths(tmp_path):
    enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4))
           .through(Linear(4)).tag("_plumbing").label("encoder").build())
    model = FlowBuilder.from_(enc).through(Linear(2)).build(input_shape=(3,))
    model.freeze("encoder")
    model.thaw("encoder.scan")
    assert model.frozen_paths == ("encoder.Linear_0", "encoder._plumbing")
    model.save(tmp_path / "m")
    loaded = Graph.load(tmp_path / "m", overwrite=True)
    assert loaded.frozen_paths == model.frozen_paths
    chex.assert_trees_all_equal(loaded.variables, model.variables)
    assert loaded.is_frozen("encoder.Linear_0") and not loaded.is_frozen("encoder.scan")


def test_two_level_tree_paths_freeze_tags_and_metrics():
    block = (FlowBuilder.from_(Linear(4)).tag("h").through(Linear(4)).tag("mid")
             .internal("mid").label("block").build())
    encoder = FlowBuilder.from_(block).through(Linear(4)).tag("out").label("encoder").build()
    model = FlowBuilder.from_(encoder).through(Linear(1)).tag("pred").build(input_shape=(4,))
    assert model.subgraph("encoder.block") is block and block.is_composed()
    assert model.tree_children() == {"encoder": encoder}
    assert encoder.child_graph("block") is block
    assert model.validate_path("encoder.block") == "subgraph"
    assert model.validate_path("encoder.block.h") == "tag"
    assert block.internal_tags() == {"mid"}
    with pytest.raises(LabelPathError, match=r"'mid'.*internal"):
        model.validate_path("encoder.block.mid")
    with pytest.raises(LabelPathError, match=r"no child 'blok'.*at encoder.*did you mean \['block'\]"):
        model.subgraph("encoder.blok")
    with pytest.raises(LabelPathError, match=r"'encoder.block.nope' does not resolve"):
        model.tagged_at("encoder.block.nope")

    assert model.tagged_at("encoder.block.h") is None
    model(X)
    p = model.variables["params"]
    h = X @ p["encoder"]["block"]["h"]["kernel"] + p["encoder"]["block"]["h"]["bias"]
    chex.assert_trees_all_close(model.tagged_at("encoder.block.h"), h, atol=1e-6)
    chex.assert_trees_all_equal(model.parameters_at("encoder.block.h"), p["encoder"]["block"]["h"])
    assert sorted(model.named_parameters_at("encoder.block")) == [
        "h.bias", "h.kernel", "mid.bias", "mid.kernel"]

    model.freeze("encoder.block")
    assert model.is_frozen("encoder.block.h") and not model.is_frozen("encoder")
    assert model.frozen_paths == ("encoder.block",)
    assert model.param_summary().splitlines()[1] == "  encoder: 60 (92.3%)  partly frozen (40 frozen)"
    tree = model.tree_summary().splitlines()
    assert tree[6].startswith("    +-- block [hash: ")
    assert tree[7:] == ["        +-- tags: h, mid (internal)", "        +-- params: 40"]

    for epoch in range(3):
        model.record_at("encoder.block.loss", float(epoch), float(epoch) + 1.0)
        model.record("loss", 2.0 * epoch)
        model.flush()
    chex.assert_trees_all_close(model.trend_at("encoder.block.loss").values(),
                                np.array([0.5, 1.5, 2.5]))
    assert model.latest_metrics() == {"loss": 4.0, "encoder.block.loss": 2.5}
    with pytest.raises(LabelPathError, match="no child 'decoder'"):
        model.record_at("decoder.loss", 1.0)
