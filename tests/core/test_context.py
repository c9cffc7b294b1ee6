"""ExperimentContext: registry by id and label, activation scopes, policies, label updates."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

from modjax.context import ExperimentContext, ExperimentNode, RegistrationPolicy
from modjax.errors import RegistrationError


def test_default_context_exists_on_import_and_activate_restores():
    import modjax.context as mc

    # the conftest fixture activates a fresh context; the default one sits below it
    assert isinstance(mc._DEFAULT, ExperimentContext)
    outer = ExperimentContext.get_active()
    inner = ExperimentContext()
    with inner.activate() as got:
        assert got is inner and ExperimentContext.get_active() is inner
        with ExperimentContext().activate() as deeper:
            assert ExperimentContext.get_active() is deeper
        assert ExperimentContext.get_active() is inner
    assert ExperimentContext.get_active() is outer
    scope = inner.activate()
    with scope, pytest.raises(RuntimeError, match="already entered"):
        scope.__enter__()
    assert ExperimentContext.get_active() is outer


def test_scope_entered_and_never_left_does_not_switch_back_at_garbage_collection():
    # Regression: activate() used to be a generator; an object that entered it and died
    # in a reference cycle reset the active context whenever the collector ran, which
    # switched later, unrelated code (a test under xdist) to a stale context.
    outer = ExperimentContext.get_active()

    class Holder:
        def __init__(self) -> None:
            self.ctx = ExperimentContext()
            self.scope = self.ctx.activate()
            self.scope.__enter__()
            self.me = self  # a cycle: only the cyclic collector frees it

    with ExperimentContext().activate():
        Holder()
    assert ExperimentContext.get_active() is outer
    mine = ExperimentContext()
    with mine.activate():
        gc.collect()
        assert ExperimentContext.get_active() is mine
    assert ExperimentContext.get_active() is outer


def test_experiment_without_ctx_activates_its_context_until_the_scope_ends():
    from modjax import Experiment

    outer = ExperimentContext.get_active()
    with ExperimentContext().activate():
        exp = Experiment("exp_ctx_test")
        assert ExperimentContext.get_active() is exp.ctx
        assert exp.ctx.get_experiment() is exp
        del exp
        gc.collect()
    assert ExperimentContext.get_active() is outer
    mine = ExperimentContext()
    with mine.activate():
        gc.collect()
        assert ExperimentContext.get_active() is mine


def test_registry_by_id_and_label_and_type():
    from modjax import FeatureSet, Identity, ModelNode

    with ExperimentContext(registration_policy="error").activate() as ctx:
        fs = FeatureSet.from_dict("Data", {"x": np.zeros((2, 3)), "y": np.zeros(2)}, "x", "y")
        node = ModelNode("Enc", Identity(), fs.reference())
        assert ctx.get_node("Enc") is node and ctx.get_node(node.node_id) is node
        assert ctx.get_node(node_id=node.node_id) is node and ctx.get_node(label="Data") is fs
        assert ctx.has_node(label="Enc") and ctx.has_node(node_id=fs.node_id)
        assert list(ctx.available_featuresets) == [fs.node_id]
        assert list(ctx.available_computenodes) == [node.node_id]
        assert set(ctx.available_nodes) == {fs.node_id, node.node_id}
        assert ctx.get_node("Enc", enforce_type="GraphNode") is node
        with pytest.raises(RegistrationError, match="node 'Data' is a FeatureSet, expected a "
                           "GraphNode"):
            ctx.get_node("Data", enforce_type="GraphNode")
        with pytest.raises(RegistrationError, match="no node 'Enx'.*'Enc'"):
            ctx.get_node("Enx")
        with pytest.raises(ValueError, match="exactly one"):
            ctx.get_node("Enc", label="Enc")
        assert ctx.remove_node(label="Enc") is node
        assert not ctx.has_node(node_id=node.node_id) and not ctx.has_node(label="Enc")
        assert ctx.remove_node(label="Enc", error_if_missing=False) is None
        with pytest.raises(KeyError, match="'Enc'"):
            ctx.remove_node(label="Enc")
        with pytest.raises(TypeError, match="expected an ExperimentNode"):
            ctx.register_experiment_node("Enc")  # type: ignore[arg-type]


def test_policies_error_overwrite_warn_rename():
    with ExperimentContext(registration_policy="error").activate() as ctx:
        a = ExperimentNode("A")
        with pytest.raises(RegistrationError, match="labelled 'A' is already registered"):
            ExperimentNode("A")
        assert ctx.get_node("A") is a and len(ctx.available_nodes) == 1

        ctx.set_registration_policy("overwrite")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # overwrite is silent
            a2 = ExperimentNode("A")
        assert ctx.get_node("A") is a2 and not ctx.has_node(node_id=a.node_id)

        ctx.set_registration_policy(RegistrationPolicy.WARN)
        with pytest.warns(UserWarning, match="overwriting registered node 'A'"):
            a3 = ExperimentNode("A")
        assert ctx.get_node("A") is a3 and list(ctx.available_nodes) == [a3.node_id]

        ctx.set_registration_policy("RENAME")
        b, c = ExperimentNode("A"), ExperimentNode("A")
        assert (b.label, c.label) == ("A_1", "A_2")
        assert ctx.get_node("A") is a3 and ctx.get_node("A_2") is c
        with pytest.raises(RegistrationError, match="unknown registration policy 'keep'"):
            ctx.set_registration_policy("keep")
    assert ExperimentContext().registration_policy is RegistrationPolicy.WARN


def test_label_updates_follow_the_registry():
    with ExperimentContext(registration_policy="error").activate() as ctx:
        a, b = ExperimentNode("A"), ExperimentNode("B")
        a.label = "Alpha"
        assert a.label == "Alpha" and ctx.get_node("Alpha") is a and not ctx.has_node(label="A")
        with pytest.raises(RegistrationError, match="label 'B' is already used"):
            a.label = "B"
        assert a.label == "Alpha" and ctx.get_node("B") is b  # failed rename changes nothing
        ctx.update_node_label(b.node_id, "Alpha", check_label_collision=False)
        assert ctx.get_node(label="Alpha") is b
        with pytest.raises(KeyError, match="not registered"):
            ctx.update_node_label("nope", "X")
        with pytest.raises(RegistrationError, match="non-empty string"):
            ExperimentNode("")


def test_temporary_and_dont_register_restore_everything():
    with ExperimentContext(registration_policy="error").activate() as ctx:
        keep = ExperimentNode("keep")
        ctx.register_model_graph("graph-0")
        with ctx.temporary() as same:
            assert same is ctx
            ctx.set_registration_policy("overwrite")
            ctx.set_experiment("exp-1")
            ctx.register_model_graph("graph-1")
            ExperimentNode("keep")  # overwrites inside the scope
            ExperimentNode("fold")
            assert ctx.get_node("keep") is not keep
        assert ctx.get_node("keep") is keep and not ctx.has_node(label="fold")
        assert ctx.registration_policy is RegistrationPolicy.ERROR
        assert ctx.get_experiment() is None and ctx.model_graph == "graph-0"
        with pytest.raises(RuntimeError, match="boom"), ctx.temporary():
            ExperimentNode("during_error")
            raise RuntimeError("boom")
        assert not ctx.has_node(label="during_error")
        with ExperimentContext.dont_register():
            ghost = ExperimentNode("keep")  # no collision: nothing is registered
        assert ghost.label == "keep" and ctx.get_node("keep") is keep
        ExperimentNode("after")  # registration is back on
        assert ctx.has_node(label="after")
        ctx.set_experiment("exp-2", reset_registries=True)
        assert ctx.available_nodes == {} and ctx.get_experiment() == "exp-2"
        state = ctx.get_state()
        ExperimentNode("x")
        ctx.set_state(state)
        assert not ctx.has_node(label="x")
