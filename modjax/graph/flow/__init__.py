"""FlowBuilder and the built flow Graph (Graph-as-Module), with its flow primitives."""

from modjax.graph.flow.base import FlowModule
from modjax.graph.flow.builder import FlowBuilder, LoopBuilder, MapBuilder
from modjax.graph.flow.graph import Graph
from modjax.graph.flow.modules import Add, Cat, Mean, Reshape, StateAdd
from modjax.graph.flow.routers import (
    ArgmaxSelector,
    FixedSelector,
    LearnedHalt,
    SigmoidRouter,
    SoftmaxRouter,
    ThresholdHalt,
)

__all__ = [
    "Add",
    "ArgmaxSelector",
    "Cat",
    "FixedSelector",
    "FlowBuilder",
    "FlowModule",
    "Graph",
    "LearnedHalt",
    "LoopBuilder",
    "MapBuilder",
    "Mean",
    "Reshape",
    "SigmoidRouter",
    "SoftmaxRouter",
    "StateAdd",
    "ThresholdHalt",
]
