"""The data accessors' annotations are concrete (no ``Any`` returns), overloaded on the
``fmt=`` literals, and true: every format name returns what its overload says."""

from __future__ import annotations

import typing

import jax
import numpy as np
import pandas as pd
import pytest

from modjax import FeatureSet
from modjax.data.formats import DataFormat

torch = pytest.importorskip("torch")

# names the annotations use that the data layer imports for type checking only
NS = {"jax": jax, "pd": pd, "torch": torch, "DataFormat": DataFormat}
OVERLOADED = ["get_features", "get_targets", "get_tags", "get_domain", "get_data",
              "get_sample_uuids"]


def _hints(fn):
    return typing.get_type_hints(fn, localns=NS)


def _fmt_names(hint) -> list[str]:
    """The literal names an overload's ``fmt`` accepts ([] for a general one)."""
    return list(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else []


def _conforms(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is dict:
        _, vt = typing.get_args(tp)
        return isinstance(value, dict) and all(_conforms(v, vt) for v in value.values())
    if origin is list:
        return isinstance(value, list)
    return tp is typing.Any or isinstance(value, tp)


def _fs():
    return FeatureSet.from_dict("typed", {"a": np.ones((4, 2), np.float32),
                                          "b": np.zeros((4, 2), np.float32),
                                          "y": np.arange(4.0), "t": np.arange(4)},
                                ["a", "b"], "y", "t", register=False)


@pytest.mark.parametrize("name", OVERLOADED)
def test_accessors_are_overloaded_on_format_literals_with_concrete_returns(name):
    fn = getattr(FeatureSet, name)
    overloads = typing.get_overloads(fn)
    assert len(overloads) >= 3, f"{name} has no typing overloads"
    impl = _hints(fn)["return"]
    assert impl is not typing.Any and typing.Any not in typing.get_args(impl)
    literal_returns = {}
    for ov in overloads:
        hints = _hints(ov)
        assert hints["return"] is not typing.Any
        for fmt in _fmt_names(hints["fmt"]):
            literal_returns[fmt] = hints["return"]
    if name in ("get_features", "get_targets", "get_tags", "get_data"):
        assert literal_returns["numpy"] is np.ndarray
        assert literal_returns["pandas"] is pd.DataFrame
        assert literal_returns["dict"] == dict[str, np.ndarray]
        assert literal_returns["jax"] is jax.Array
    assert typing.get_type_hints(FeatureSet.to_pandas, localns=NS)["return"] is pd.DataFrame


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
@pytest.mark.parametrize("name", ["get_features", "get_targets", "get_tags", "get_domain",
                                  "get_data"])
def test_every_format_returns_what_its_overload_says(name):
    fs = _fs()
    args = ("features",) if name == "get_domain" else ()
    checked = 0
    for ov in typing.get_overloads(getattr(FeatureSet, name)):
        hints = _hints(ov)
        for fmt in _fmt_names(hints["fmt"]):
            kw = {"features": "a"} if name == "get_data" else {}
            value = getattr(fs, name)(*args, fmt=fmt, **kw)
            assert _conforms(value, hints["return"]), (name, fmt, type(value))
            checked += 1
    assert checked >= (3 if name == "get_domain" else 15)  # every accepted name
    uuids = typing.get_overloads(FeatureSet.get_sample_uuids)
    for ov in uuids:
        for fmt in _fmt_names(_hints(ov)["fmt"]):
            assert _conforms(fs.get_sample_uuids(fmt), _hints(ov)["return"])
