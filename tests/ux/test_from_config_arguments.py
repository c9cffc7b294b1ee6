"""from_config takes no catch-all keywords: an unknown name is an error, not ignored."""

from __future__ import annotations

import pytest

from modjax import EarlyStopping, Linear, Optimizer
from modjax.graph.flow.modules import Cat, Reshape


@pytest.mark.parametrize("obj", [Optimizer("adam", opt_kwargs={"lr": 1e-2}), Linear(3), Cat(1),
                                 Reshape((2, 2)), EarlyStopping(patience=2)])
def test_unknown_keyword_is_refused_and_permission_is_accepted(obj):
    cls, cfg = type(obj), obj.get_config()
    with pytest.raises(TypeError, match="unexpected keyword argument 'alow_packaged_code'"):
        cls.from_config(cfg, alow_packaged_code=True)
    again = cls.from_config(cfg, allow_packaged_code=True)
    assert again.get_config() == cfg
