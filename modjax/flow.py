"""modjax.flow: the flow vocabulary (FlowBuilder, the built Graph, its modules and routers).

A flow is written as a chain of steps and built into a ``Graph`` (a model itself):

Example:
    >>> import numpy as np
    >>> from modjax import Linear
    >>> from modjax.flow import FlowBuilder
    >>> g = FlowBuilder.from_(Linear(4)).tag("hidden").through(Linear(2)).build(input_shape=(3,))
    >>> g(np.ones((5, 3))).shape
    (5, 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
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

_WHERE: dict[str, str] = {
    "FlowModule": "modjax.graph.flow.base",
    **dict.fromkeys(("FlowBuilder", "LoopBuilder", "MapBuilder"), "modjax.graph.flow.builder"),
    "Graph": "modjax.graph.flow.graph",
    **dict.fromkeys(("Add", "Cat", "Mean", "Reshape", "StateAdd"), "modjax.graph.flow.modules"),
    **dict.fromkeys((
        "ArgmaxSelector", "FixedSelector", "LearnedHalt", "SigmoidRouter", "SoftmaxRouter",
        "ThresholdHalt",
    ), "modjax.graph.flow.routers"),
}

__all__ = [
    "Add", "ArgmaxSelector", "Cat", "FixedSelector", "FlowBuilder", "FlowModule", "Graph",
    "LearnedHalt", "LoopBuilder", "MapBuilder", "Mean", "Reshape", "SigmoidRouter",
    "SoftmaxRouter", "StateAdd", "ThresholdHalt",
]

__getattr__, __dir__ = lazy_namespace("modjax.flow", _WHERE)
