"""The bridge wrappers' ModularML surface: ``model_class=``/``model_kwargs=`` with shape
injection into the constructor, and ``supports_partial_fit`` / ``resolved_training_mode``."""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from modjax.bridge import ScikitModelWrapper, TorchModelWrapper  # noqa: E402


class Encoder(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.fc(x)


class Reshaper(torch.nn.Module):
    """Takes its shapes under its own names (ModularML's inject_*_shape_as case)."""

    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.fc = torch.nn.Linear(int(np.prod(in_shape)), int(np.prod(out_shape)))

    def forward(self, x):
        return self.fc(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.out_shape)


class ShapeDefaults(torch.nn.Module):
    """Has the default parameter names, so shapes are injected without being asked."""

    def __init__(self, input_shape, output_shape, width=3):
        super().__init__()
        self.fc = torch.nn.Linear(input_shape[-1], output_shape[-1])

    def forward(self, x):
        return self.fc(x)


def test_model_kwargs_dict_is_the_keyword_form():
    a = TorchModelWrapper(model_class=Encoder, model_kwargs={"in_features": 10, "out_features": 4})
    b = TorchModelWrapper(model_class=Encoder, in_features=10, out_features=4)
    assert not a.is_built
    a.build(input_shape=(10,), output_shape=(4,))
    b.build((10,))
    assert a.is_built and a.output_shape == b.output_shape == (4,)
    assert a.get_config()["model_kwargs"] == b.get_config()["model_kwargs"]
    pa, _ = a.init(jax.random.key(3), (10,))
    pb, _ = b.init(jax.random.key(3), (10,))
    np.testing.assert_array_equal(np.asarray(pa["fc"]["weight"]), np.asarray(pb["fc"]["weight"]))
    with pytest.raises(TypeError, match=r"\['in_features'\] given both"):
        TorchModelWrapper(model_class=Encoder, model_kwargs={"in_features": 1}, in_features=2)
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        TorchModelWrapper(model_class=Encoder, model_kwargs=[10, 4])


def test_shapes_are_injected_under_the_given_names_and_survive_a_config():
    m = TorchModelWrapper(model_class=Reshaper, model_kwargs={},
                          inject_input_shape_as="in_shape", inject_output_shape_as="out_shape")
    m.build(input_shape=(2, 5), output_shape=(4,))
    assert m.output_shape == (4,)
    cfg = m.get_config()
    assert (cfg["inject_input_shape_as"], cfg["output_shape"]) == ("in_shape", [4])
    back = TorchModelWrapper.from_config(cfg, allow_packaged_code=True)
    assert back.output_shape == (4,)
    p0, _ = m.init(jax.random.key(0), (2, 5))
    p1, _ = back.init(jax.random.key(0), (2, 5))
    np.testing.assert_array_equal(np.asarray(p0["fc"]["weight"]), np.asarray(p1["fc"]["weight"]))
    # a different requested output rebuilds the module for it
    m.build(input_shape=(2, 5), output_shape=(3,))
    assert m.output_shape == (3,)
    # the default names are injected only when the constructor has them
    d = TorchModelWrapper(model_class=ShapeDefaults, model_kwargs={"width": 5})
    d.build((6,), (2,))
    assert d.output_shape == (2,) and "input_shape" not in d.get_config()["model_kwargs"]
    with pytest.raises(ValueError, match="no parameter 'shape_in'"):
        TorchModelWrapper(model_class=Encoder, model_kwargs={}, inject_input_shape_as="shape_in")


def test_scikit_wrapper_reports_partial_fit_support_and_its_mode():
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import SGDRegressor

    forest = ScikitModelWrapper(model=RandomForestRegressor(n_estimators=3))
    sgd = ScikitModelWrapper(model=SGDRegressor(random_state=0))
    assert (forest.supports_partial_fit, forest.resolved_training_mode) == (False, "batch_fit")
    # modjax's "auto" prefers fit when both exist (ModularML's prefers partial_fit)
    assert (sgd.supports_partial_fit, sgd.resolved_training_mode) == (True, "batch_fit")
    inc = ScikitModelWrapper(model=SGDRegressor(), training_mode="partial_fit")
    assert inc.resolved_training_mode == "partial_fit"
