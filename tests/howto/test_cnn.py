"""SequentialCNN: shapes, ModularML's constructor arguments, numbers against torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import FeatureSet, ModelGraph, ModelNode, SequentialCNN
from modjax.errors import ShapeMismatchError

torch = pytest.importorskip("torch")


def torch_twin(cnn: SequentialCNN, params: dict, in_ch: int) -> "torch.nn.Module":
    layers, ch = [], in_ch
    for i in range(cnn.n_layers):
        conv = torch.nn.Conv1d(ch, cnn.hidden_dim, cnn.kernel_size, stride=cnn.stride,
                               padding=cnn.padding)
        conv.weight.data = torch.tensor(np.asarray(params[f"conv_{i}"]["kernel"]))
        conv.bias.data = torch.tensor(np.asarray(params[f"conv_{i}"]["bias"]))
        layers += [conv, torch.nn.GELU(approximate="tanh") if cnn.activation == "gelu"
                   else torch.nn.ReLU()]
        if cnn.pooling > 1:
            layers.append(torch.nn.MaxPool1d(cnn.pooling))
        ch = cnn.hidden_dim
    fc = torch.nn.Linear(*np.asarray(params["fc"]["kernel"]).shape)
    fc.weight.data = torch.tensor(np.asarray(params["fc"]["kernel"]).T.copy())
    fc.bias.data = torch.tensor(np.asarray(params["fc"]["bias"]))
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), fc)


@pytest.mark.parametrize("kw", [dict(pooling=2), dict(n_layers=3, stride=2, padding=0,
                                                         kernel_size=2, hidden_dim=5)])
def test_matches_torch_layers(kw):
    cnn = SequentialCNN(input_shape=(2, 12), output_shape=(3,), **kw)
    params, state = cnn.init(jax.random.key(1), (2, 12))
    x = np.random.default_rng(0).standard_normal((7, 2, 12)).astype(np.float32)
    y, _ = cnn.apply(params, state, jnp.asarray(x))
    with torch.no_grad():
        ref = torch_twin(cnn, params, 2)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)


def test_init_bounds_and_draws_agree():
    cnn = SequentialCNN(input_shape=(1, 10), output_shape=(1, 1), pooling=2)
    p, _ = cnn.init(jax.random.key(0), (1, 10))
    assert float(jnp.max(jnp.abs(p["conv_1"]["kernel"]))) <= 1 / np.sqrt(16 * 3)
    assert cnn.init_draws((1, 10)) == 16 * 3 + 16 + 16 * 16 * 3 + 16 + 32 + 1
    u = jax.random.uniform(jax.random.key(0), (cnn.init_draws((1, 10)),), jnp.float32, -1, 1)
    q, _ = cnn.init_from_draws(u, (1, 10))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)))


def test_lazy_flatten_off_and_errors():
    assert not SequentialCNN(output_shape=(1, 1)).is_built
    raw = SequentialCNN(input_shape=(10,), flatten_output=False, pooling=2)
    assert raw.input_shape == (1, 10) and raw.output_shape == (16, 2)
    with pytest.raises(ShapeMismatchError, match="outputs \\(16, 2\\)"):
        SequentialCNN(input_shape=(1, 10), output_shape=(3,), flatten_output=False, pooling=2)
    with pytest.raises(ShapeMismatchError, match="channels, length"):
        SequentialCNN(input_shape=(1, 2, 3))
    with pytest.raises(ShapeMismatchError, match="shorter than kernel_size=5"):
        SequentialCNN(input_shape=(1, 2), output_shape=(1,), kernel_size=5, padding=0)
    lazy = SequentialCNN(input_shape=(1, 4))
    assert not lazy.is_built
    with pytest.warns(UserWarning, match=r"using \(1, 16\)"):
        lazy.build((1, 4))
    assert lazy.output_shape == (1, 16)
    with pytest.raises(ValueError, match="pooling >= 1"):
        SequentialCNN(pooling=0)


def test_in_a_graph_takes_target_shape_and_round_trips_config():
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict("CnnData", {"v": rng.standard_normal((8, 10)),
                                          "y": rng.standard_normal((8, 2))}, "v", "y",
                              register=False)
    node = ModelNode("Cnn", SequentialCNN(pooling=2), fs.reference(), register=False)
    g = ModelGraph([node], register=False).build()
    assert node.output_shape == (1, 2)
    assert g.forward({"CnnData": np.ones((8, 1, 10))})["Cnn"].shape == (8, 1, 2)
    again = SequentialCNN.from_config(node.model.get_config())
    assert again.get_config() == node.model.get_config()
