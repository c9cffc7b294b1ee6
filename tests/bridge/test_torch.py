"""torch modules as graph nodes: forward, gradients, graph-wise training, freezing, saves."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bridge_helpers import make_featureset, train_phase  # noqa: E402

from modjax import ModelGraph, ModelNode, Optimizer, SequentialMLP  # noqa: E402
from modjax.bridge import TorchModelWrapper, wrap_model  # noqa: E402
from modjax.errors import ConfigError, ShapeMismatchError  # noqa: E402
from modjax.graph.models import FunctionModel  # noqa: E402


class LastStep(torch.nn.Module):
    """An LSTM whose forward returns the last hidden output (one tensor)."""

    def __init__(self, n_in: int = 3, hidden: int = 5) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(n_in, hidden, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0][:, -1]


def _modules():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    return {
        "linear": (torch.nn.Linear(6, 3), (6,)),
        "mlp": (mlp, (6,)),
        "conv1d": (torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.Flatten()), (2, 8)),
        "lstm": (LastStep(), (7, 3)),
    }


@pytest.mark.parametrize("name", ["linear", "mlp", "conv1d", "lstm"])
def test_forward_and_gradients_equal_torch(name):
    module, in_shape = _modules()[name]
    m = TorchModelWrapper(module)
    m.build(in_shape)
    params, state = m.init(jax.random.key(0), in_shape)
    # params nested by the module's own names, values identical to the module's
    for pname, p in module.named_parameters():
        leaf = params
        for part in pname.split("."):
            leaf = leaf[part]
        np.testing.assert_array_equal(np.asarray(leaf), p.detach().numpy())
    x = np.random.default_rng(1).normal(size=(5, *in_shape)).astype(np.float32)
    y = jax.jit(lambda p, xx: m.apply(p, state, xx)[0])(params, x)
    ref = module(torch.from_numpy(x))
    np.testing.assert_allclose(np.asarray(y), ref.detach().numpy(), atol=1e-6)

    w = np.random.default_rng(2).normal(size=ref.shape).astype(np.float32)

    def loss(p, xx):
        return jnp.sum(m.apply(p, state, xx)[0] * w)

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
    xt = torch.from_numpy(x).requires_grad_(True)
    module.zero_grad()
    (module(xt) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), atol=1e-5)
    for pname, p in module.named_parameters():
        leaf = gp
        for part in pname.split("."):
            leaf = leaf[part]
        np.testing.assert_allclose(np.asarray(leaf), p.grad.numpy(), atol=1e-5, err_msg=pname)


def test_vmap_over_inputs_and_params():
    module, in_shape = _modules()["mlp"]
    m = TorchModelWrapper(module)
    m.build(in_shape)
    p, s = m.init(jax.random.key(0), in_shape)
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 6)), jnp.float32)
    ys = jax.jit(jax.vmap(lambda x: m.apply(p, s, x)[0]))(xs)
    ref = np.stack([module(torch.from_numpy(np.array(x))).detach().numpy() for x in xs])
    np.testing.assert_allclose(np.asarray(ys), ref, atol=1e-6)
    # replicas with different weights (an ensemble axis)
    ps = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), p)
    both = jax.vmap(lambda pp: m.apply(pp, s, xs[0])[0])(ps)
    np.testing.assert_allclose(np.asarray(both[0]), ref[0], atol=1e-6)
    assert not np.allclose(np.asarray(both[1]), ref[0])


def test_train_eval_modes_dropout_and_batchnorm():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                 torch.nn.Dropout(0.5))
    m = TorchModelWrapper(module)
    m.build((4,))
    p, s = m.init(jax.random.key(0), (4,))
    assert sorted(s["1"]) == ["num_batches_tracked", "running_mean", "running_var"]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)) + 3.0, jnp.float32)
    y_eval, s_eval = m.apply(p, s, x, train=False)
    module.eval()
    np.testing.assert_allclose(np.asarray(y_eval), module(torch.from_numpy(np.array(x)))
                               .detach().numpy(), atol=1e-6)
    assert s_eval is s
    k = jax.random.key(3)
    y1, s1 = m.apply(p, s, x, key=k, train=True)
    y2, _ = m.apply(p, s, x, key=k, train=True)
    y3, _ = m.apply(p, s, x, key=jax.random.key(4), train=True)
    # dropout: same key -> same mask (reproducible), another key -> another mask
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert float(jnp.mean(y1 == 0)) > 0.2 and not np.array_equal(np.asarray(y1), np.asarray(y3))
    # BatchNorm running statistics move toward the batch mean (momentum 0.1)
    batch_mean = np.asarray(module[0](torch.from_numpy(np.array(x))).detach().numpy()).mean(0)
    np.testing.assert_allclose(np.asarray(s1["1"]["running_mean"]), 0.1 * batch_mean, rtol=1e-4,
                               atol=1e-6)
    assert int(s1["1"]["num_batches_tracked"]) == 1
    # the module's own values and mode are untouched
    assert float(module[1].running_mean.abs().sum()) == 0.0 and not module.training


def _twin_graphs(fs):
    """JAX encoder -> torch Linear head, and the same with a JAX head of equal weights."""
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 1)
    enc = ModelNode("enc", SequentialMLP(output_shape=(6,), n_layers=1, hidden_dim=8),
                    upstream_ref=fs.reference())
    mixed = ModelGraph([enc, ModelNode("head", head, upstream_ref=enc)],
                       optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)

    def init(key, shape):
        return {"weight": jnp.zeros((1, 6)), "bias": jnp.zeros((1,))}

    def apply(p, x):
        return x @ p["weight"].T + p["bias"]

    enc2 = ModelNode("enc2", SequentialMLP(output_shape=(6,), n_layers=1, hidden_dim=8),
                     upstream_ref=fs.reference())
    twin = ModelGraph([enc2, ModelNode("head2", FunctionModel(init, apply), upstream_ref=enc2)],
                      optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    mv = mixed.variables
    twin.set_variables({"params": {"enc2": mv["params"]["enc"], "head2": mv["params"]["head"]},
                        "state": {"enc2": {}, "head2": {}}})
    return mixed, twin


def test_mixed_graph_trains_graph_wise_like_pure_jax_twin():
    fs = make_featureset(n=192)
    mixed, twin = _twin_graphs(fs)
    r1 = train_phase(node="head", head="enc", n_epochs=20).execute(mixed, show_training_progress=False)
    r2 = train_phase(node="head2", head="enc2", n_epochs=20, label="t2").execute(
        twin, show_training_progress=False)
    l1, l2 = r1.metrics.series("train_loss"), r2.metrics.series("train_loss")
    assert l1[-1] < 0.5 * l1[0]  # it trains
    np.testing.assert_allclose(l1[-1], l2[-1], rtol=1e-4)
    a, b = mixed.variables["params"], twin.variables["params"]
    chex.assert_trees_all_close(a["enc"], b["enc2"], rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(a["head"], b["head2"], rtol=1e-4, atol=1e-6)


def test_frozen_torch_params_bit_identical_and_checkpoint_round_trip(tmp_path):
    fs = make_featureset(n=128)
    mixed, _ = _twin_graphs(fs)
    before = mixed.variables
    mixed.freeze(["head"])
    train_phase(node="head", head="enc", n_epochs=2).execute(mixed, show_training_progress=False)
    after = mixed.variables
    chex.assert_trees_all_equal(after["params"]["head"], before["params"]["head"])
    # the JAX encoder upstream still trains through the frozen torch head's backward
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree.leaves(after["params"]["enc"]), jax.tree.leaves(before["params"]["enc"])))
    mixed.unfreeze(["head"])
    train_phase(node="head", head="enc", n_epochs=1).execute(mixed, show_training_progress=False)
    trained = mixed.variables
    assert not np.array_equal(np.asarray(trained["params"]["head"]["weight"]),
                              np.asarray(before["params"]["head"]["weight"]))
    mixed.save_checkpoint(tmp_path / "ck")
    mixed.set_variables(before)
    mixed.restore_checkpoint(tmp_path / "ck")
    chex.assert_trees_all_equal(mixed.variables, trained)
    model = mixed.nodes[[k for k, n in mixed.nodes.items() if n.label == "head"][0]].model
    sd = model.state_dict(mixed.variables["params"]["head"], mixed.variables["state"]["head"])
    np.testing.assert_array_equal(sd["weight"].numpy(),
                                  np.asarray(trained["params"]["head"]["weight"]))
    module = model.to_module(mixed.variables["params"]["head"], {})
    np.testing.assert_array_equal(module.state_dict()["bias"].numpy(),
                                  np.asarray(trained["params"]["head"]["bias"]))


class Small(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, n_out))

    def forward(self, x):
        return self.net(x)


def test_lazy_class_form_seeded_by_key_and_config_round_trip():
    m = TorchModelWrapper(model_class=Small, n_in=4, n_out=2)
    m.build((4,))
    assert m.output_shape == (2,)
    p0, _ = m.init(jax.random.key(0), (4,))
    p0b, _ = jax.jit(lambda k: m.init(k, (4,)))(jax.random.key(0))
    p1, _ = m.init(jax.random.key(1), (4,))
    chex.assert_trees_all_equal(p0, p0b)
    assert not np.array_equal(np.asarray(p0["net"]["0"]["weight"]),
                              np.asarray(p1["net"]["0"]["weight"]))
    cfg = m.get_config()
    assert cfg["model_kwargs"] == {"n_in": 4, "n_out": 2}
    with pytest.raises(ConfigError, match="allow_packaged_code"):
        TorchModelWrapper.from_config(cfg)
    back = TorchModelWrapper.from_config(cfg, allow_packaged_code=True)
    chex.assert_trees_all_equal(back.init(jax.random.key(0), (4,))[0], p0)
    # torch's own layers need no permission
    lin = TorchModelWrapper(model_class=torch.nn.Linear, in_features=3, out_features=1)
    assert TorchModelWrapper.from_config(lin.get_config()).model_class is torch.nn.Linear
    # an instance cannot be rebuilt from a config: a clear error
    with pytest.raises(ConfigError, match="module instance"):
        TorchModelWrapper.from_config(TorchModelWrapper(torch.nn.Linear(2, 1)).get_config())
    # LazyLinear materialises in the dry forward
    lazy = TorchModelWrapper(model_class=torch.nn.LazyLinear, out_features=3)
    lazy.build((5,))
    assert jax.tree.map(jnp.shape, lazy.init(jax.random.key(0), (5,))[0]) == {
        "weight": (3, 5), "bias": (3,)}


def test_bad_input_errors_name_the_node():
    fs = make_featureset(n=64)
    with pytest.raises(TypeError, match="model_class"):
        TorchModelWrapper(torch.nn.Linear)
    with pytest.raises(TypeError, match="exactly one"):
        TorchModelWrapper()
    with pytest.raises(TypeError, match="need model_class"):
        TorchModelWrapper(torch.nn.Linear(2, 1), in_features=2)
    # forward fails at build (wrong in_features): error names the node, graph not built
    bad = ModelNode("bad", torch.nn.Linear(7, 1), upstream_ref=fs.reference())
    g = ModelGraph([bad], optimizer=Optimizer("adam"))
    with pytest.raises(ShapeMismatchError, match="node 'bad'.*forward failed"):
        g.build()
    assert not g.is_built
    # a module the callback cannot reach (not on the CPU)
    meta = ModelNode("meta", torch.nn.Linear(4, 1, device="meta"), upstream_ref=fs.reference())
    with pytest.raises(ShapeMismatchError, match="node 'meta'.*device meta.*cpu"):
        ModelGraph([meta], optimizer=Optimizer("adam")).build()
    # wrong input at apply time
    m = wrap_model(torch.nn.Linear(3, 1))
    m.build((3,))
    p, s = m.init(jax.random.key(0), (3,))
    with pytest.raises(ShapeMismatchError, match=r"built for input \(3,\) but receives \(4,\)"):
        m.apply(p, s, jnp.ones((2, 4)))
    with pytest.raises(TypeError, match="wrap_model: expected"):
        wrap_model(object())


def test_backward_uses_the_kept_forward_and_restores_torch_globals():
    from modjax.bridge.torch_call import callback_threads

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                                 torch.nn.Linear(8, 1))
    m = TorchModelWrapper(module)
    m.build((4,))
    p, s = m.init(jax.random.key(0), (4,))
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(5, 16, 4)), jnp.float32)
    keys = jax.random.split(jax.random.key(7), 5)

    def loss(pp, x, k):
        return jnp.sum(m.apply(pp, s, x, key=k, train=True)[0] ** 2)

    @jax.jit
    def scanned(pp):  # operands of each step's callbacks are scan temporaries
        return jax.lax.scan(lambda c, xk: (c, jax.grad(loss)(pp, *xk)), 0, (xs, keys))[1]

    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    host = m._require_host()
    before = host.replays
    grads = scanned(p)
    assert host.replays == before  # no forward was replayed
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    # each step equals a replayed backward (no kept graph) and torch's own autograd
    for i in range(5):
        seed = int(jax.random.bits(keys[i], (), jnp.uint32))
        flat = [p["0"]["weight"], p["0"]["bias"], p["3"]["weight"], p["3"]["bias"]]
        gy = 2 * np.asarray(m.apply(p, s, xs[i], key=keys[i], train=True)[0])
        g_replay = host.backward(True, flat, [], xs[i], seed, gy)
        assert host.replays == before + i + 1
        np.testing.assert_allclose(np.asarray(grads["0"]["weight"][i]), g_replay[0][0],
                                   atol=1e-6)
        torch.manual_seed(seed)
        module.train()
        module.zero_grad()
        (module(torch.from_numpy(np.array(xs[i]))) ** 2).sum().backward()
        np.testing.assert_allclose(np.asarray(grads["3"]["weight"][i]),
                                   module[3].weight.grad.numpy(), atol=1e-5)
    module.eval()
    with pytest.raises(ValueError, match="positive int or None"):
        callback_threads(0)
    assert callback_threads() == 1
