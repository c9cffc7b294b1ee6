"""The real host classes satisfy the contracts in modjax.protocols (and doubles do not)."""

from __future__ import annotations

import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    Experiment,
    FeatureSet,
    InputBinding,
    Linear,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.flow import FlowBuilder
from modjax.protocols import (
    AbstractlyBuildable,
    BridgedModel,
    Buildable,
    CheckpointDirHost,
    CheckpointHost,
    CheckpointOwner,
    CheckpointTarget,
    ExperimentHost,
    GradientBarrierModel,
    HasContext,
    HasDefinitionHash,
    HasOptimizer,
    HasOptState,
    HoldsModel,
    NodeGraph,
    Persistable,
    PhaseContainer,
    PhaseGraph,
    ReportsBuilt,
    Thawable,
    Unfreezable,
)


@pytest.fixture()
def experiment():
    exp = Experiment("protocols", registration_policy="overwrite")
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict("data", {"x": rng.normal(size=(8, 3)).astype(np.float32),
                                       "y": rng.normal(size=8).astype(np.float32)}, "x", "y")
    node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=1), upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    phase = TrainPhase("train", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(4, seed=0), split=None)],
        losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])], n_epochs=1)
    exp.execution_plan.add_phase(phase)
    return exp, fs, node, phase


def test_model_graph_is_every_graph_contract(experiment):
    exp, _, node, _ = experiment
    g = exp.model_graph
    for proto in (CheckpointHost, PhaseGraph, HasOptimizer, HasOptState, ReportsBuilt, Buildable,
                  AbstractlyBuildable, HasDefinitionHash, Unfreezable, NodeGraph, Persistable):
        assert isinstance(g, proto), proto.__name__
    assert not isinstance(g, Thawable)
    assert isinstance(node, HoldsModel)


def test_flow_graph_is_a_checkpoint_host_that_thaws():
    g = FlowBuilder.from_(Linear(2)).build()
    g.build((3,))
    for proto in (CheckpointHost, PhaseGraph, Buildable, HasDefinitionHash, Thawable):
        assert isinstance(g, proto), proto.__name__
    assert not isinstance(g, HasOptState) and not isinstance(g, ReportsBuilt)


def test_experiment_phase_and_featureset_contracts(experiment):
    exp, fs, _, phase = experiment
    for proto in (ExperimentHost, HasContext, CheckpointDirHost, CheckpointOwner, CheckpointTarget,
                  Persistable):
        assert isinstance(exp, proto), proto.__name__
    assert isinstance(exp.execution_plan, PhaseContainer)
    assert isinstance(phase, CheckpointTarget) and isinstance(phase, CheckpointOwner)
    assert isinstance(fs, Persistable) and not isinstance(fs, CheckpointHost)


def test_bridged_models_declare_themselves():
    from sklearn.linear_model import SGDRegressor

    from modjax.bridge.sklearn_model import ScikitModelWrapper

    wrapped = ScikitModelWrapper(SGDRegressor(), training_mode="partial_fit")
    assert isinstance(wrapped, GradientBarrierModel) and wrapped.training_mode == "partial_fit"
    assert isinstance(wrapped, BridgedModel)
    assert not isinstance(SequentialMLP(output_shape=(1,)), BridgedModel)
