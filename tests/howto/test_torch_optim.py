"""ModularML's torch optimizer spellings run as the optax optimizer with the same update:
several steps of the mapped optax optimizer equal torch's own steps on the same gradients."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from modjax import Optimizer
from modjax.train.torch_optim import TorchOptimizerMapped

torch = pytest.importorskip("torch")

CASES = [
    (torch.optim.Adam, {}),
    (torch.optim.Adam, {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    (torch.optim.AdamW, {}),  # torch's default weight_decay 0.01, not optax's 1e-4
    (torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.2}),
    (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.05, "decoupled_weight_decay": True}),
    (torch.optim.SGD, {"lr": 0.05}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (torch.optim.RMSprop, {}),
    (torch.optim.RMSprop, {"lr": 1e-3, "alpha": 0.9, "momentum": 0.5, "centered": True,
                           "weight_decay": 0.01}),
]


def _run_torch(cls, kwargs, w0, grads):
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = cls([p], **kwargs)
    for g in grads:
        opt.zero_grad()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def _run_modjax(opt, w0, grads):
    params = {"w": jnp.asarray(w0, jnp.float32)}
    state = opt.init(params)
    for g in grads:
        params, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    return np.asarray(params["w"])


@pytest.mark.parametrize("cls,kwargs", CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in
                                                   enumerate(CASES)])
def test_torch_class_and_factory_match_torch_steps(cls, kwargs):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(7,))
    grads = [rng.normal(size=(7,)) for _ in range(6)]
    want = _run_torch(cls, kwargs, w0, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TorchOptimizerMapped)
        by_class = Optimizer(cls, opt_kwargs=dict(kwargs))
        by_factory = Optimizer(factory=lambda params: cls(params, **kwargs), backend="torch")
    assert by_class.cls is cls and by_factory.cls is cls
    # float32 optax vs float64 torch: equal up to float32 rounding, far from other rules
    np.testing.assert_allclose(_run_modjax(by_class, w0, grads), want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(_run_modjax(by_factory, w0, grads), want, rtol=2e-5, atol=2e-6)
    assert not np.allclose(want, w0)  # the steps moved the weights


def test_mapping_is_said_once_and_keeps_a_config():
    import modjax.train.torch_optim as tmod

    tmod._NOTED.discard("AdamW")
    with pytest.warns(TorchOptimizerMapped, match=r"optax\.adamw\(.*weight_decay=0\.01"):
        a = Optimizer(torch.optim.AdamW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TorchOptimizerMapped)
        Optimizer(torch.optim.AdamW, opt_kwargs={"lr": 0.1})  # second time: silent
    assert a.get_config()["opt"] == "adamw"
    assert Optimizer.from_config(a.get_config()).spec == a.spec


@pytest.mark.parametrize("cls,kwargs,match", [
    (torch.optim.Adam, {"amsgrad": True}, "AMSGrad"),
    (torch.optim.SGD, {"momentum": 0.9, "dampening": 0.1}, "dampening"),
    (torch.optim.AdamW, {"maximize": True}, "maximize"),
    (torch.optim.Adagrad, {}, r"maps only torch\.optim\.\{Adam, AdamW, SGD, RMSprop\}"),
    (torch.optim.Adam, {"betas": 0.9}, "bad opt_kwargs"),
])
def test_inexact_torch_spellings_are_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Optimizer(cls, opt_kwargs=kwargs)


def test_factory_taking_params_must_return_a_torch_optimizer():
    with pytest.raises(TypeError, match="must return a torch.optim optimizer"):
        Optimizer(factory=lambda params: "adam")
    # modjax's own zero-argument factory is unchanged
    import optax
    assert Optimizer(factory=lambda: optax.sgd(0.1)).cls is None
