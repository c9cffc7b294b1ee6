"""Registry, context and label paths: the pieces every layer shares."""

from __future__ import annotations

import pytest

from modjax.context import ExperimentContext, ExperimentNode
from modjax.errors import ConfigError, LabelPathError, RegistrationError
from modjax.io.registry import deserialize, register, serialize
from modjax.paths import flatten_paths, get_at, path_mask, set_at


def test_label_path_error_names_path_and_neighbours():
    tree = {"encoder": {"scan": {"w": 1}, "proj": {"w": 2}}}
    assert get_at(tree, "encoder.scan.w") == 1
    with pytest.raises(LabelPathError) as e:
        get_at(tree, "encoder.scna")
    msg = str(e.value)
    assert "encoder.scna" in msg and "scan" in msg and "proj" in msg
    assert isinstance(e.value, KeyError)


def test_set_at_copies_only_the_spine():
    leaf = object()
    tree = {"a": {"x": leaf}, "b": {"y": 2}}
    new = set_at(tree, "b.y", 3)
    assert new["b"]["y"] == 3 and tree["b"]["y"] == 2
    assert new["a"] is tree["a"]


def test_path_mask_and_flatten():
    tree = {"a": {"w": 1.0, "b": 2.0}, "c": {"w": 3.0}}
    assert path_mask(tree, ["a"]) == {"a": {"w": True, "b": True}, "c": {"w": False}}
    assert flatten_paths(tree) == {"a.b": 2.0, "a.w": 1.0, "c.w": 3.0}
    with pytest.raises(LabelPathError, match="'d'"):
        path_mask(tree, ["d"])


def test_registry_round_trip_and_unknown_class():
    @register("test_widget")
    class Widget:
        def __init__(self, n=1):
            self.n = n

        def get_config(self):
            return {"n": self.n}

    cfg = serialize(Widget(5))
    assert cfg["class"] == "test_widget"
    assert deserialize(cfg).n == 5
    with pytest.raises(ConfigError, match="no_such_class"):
        deserialize({"class": "no_such_class", "config": {}})


def test_context_policies():
    with ExperimentContext(registration_policy="error").activate() as ctx:
        a = ExperimentNode("A")
        with pytest.raises(RegistrationError, match="'A'"):
            ExperimentNode("A")
        assert ctx.get_node("A") is a
        ctx.set_registration_policy("rename")
        b = ExperimentNode("A")
        assert b.label == "A_1" and ctx.get_node("A_1") is b
        with ctx.temporary():
            ExperimentNode("tmp")
            assert ctx.has_node(label="tmp")
        assert not ctx.has_node(label="tmp")
        with ExperimentContext.dont_register():
            ExperimentNode("ghost")
        assert not ctx.has_node(label="ghost")
        with pytest.raises(RegistrationError, match="did|like"):
            ctx.get_node("B")
