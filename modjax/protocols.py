"""The host contracts between layers, written down as ``typing.Protocol`` classes.

Each layer talks to the objects of the layer above through one of these structural
types, never through a concrete class, so a test double or a user class satisfying the
protocol is a valid host. All are ``runtime_checkable``: ``isinstance(obj, P)`` checks
that the members exist (not their signatures). Optional capabilities are protocols of
their own (one or two members each) so callers test for them with ``isinstance``
instead of ``getattr(obj, "name", None)`` probes:

=========================  ==============================================================
protocol                   who relies on it
=========================  ==============================================================
:class:`Configurable`      the registry (``serialize``), config files
:class:`Stateful`          memory checkpoints, experiment state
:class:`Persistable`       object save/load (FeatureSet, graphs, Experiment)
:class:`CheckpointHost`    graph save/load/checkpoints (:mod:`modjax.graph.io`)
:class:`PhaseGraph`        what a phase trains, evaluates or fits
:class:`HasOptimizer`,     graphs with one optimizer, and the optimizer state they
:class:`HasOptState`       keep
:class:`ReportsBuilt`      graphs that say whether they are built
:class:`NodeGraph`,        graphs of labelled nodes and the nodes running a model
:class:`HoldsModel`        (what the bridge checks walk)
:class:`BridgedModel`,     models wrapping torch / scikit-learn; the ones gradients
:class:`GradientBarrierModel`  cannot pass
:class:`Buildable`,        an unbuilt graph being restored (``build()``, or the abstract
:class:`AbstractlyBuildable`  shapes without an init)
:class:`HasDefinitionHash` architecture checks of subgraph checkpoints
:class:`Unfreezable`,      thawing label paths (ModelGraph says ``unfreeze``, the flow
:class:`Thawable`          Graph tree says ``thaw``)
:class:`CheckpointTarget`  what ``Checkpointing`` saves (a phase, a graph, an experiment)
:class:`CheckpointOwner`   an object carrying a ``Checkpointing`` (phases, experiments)
:class:`PhaseContainer`    execution-plan nodes holding phases (groups)
:class:`ExperimentHost`    experiment save/load/checkpoints (:mod:`modjax.train.io`)
:class:`HasContext`        an experiment with its own ExperimentContext
:class:`CheckpointDirHost` the experiment seen by a phase's checkpoint hook
=========================  ==============================================================

Example:
    >>> class Tiny:
    ...     label = "t"
    ...     def get_config(self): return {}
    ...     def get_state(self): return {}
    ...     def set_state(self, state): pass
    >>> isinstance(Tiny(), Persistable), isinstance(Tiny(), CheckpointHost)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Configurable",
    "Stateful",
    "Persistable",
    "CheckpointHost",
    "PhaseGraph",
    "HasOptimizer",
    "HasOptState",
    "ReportsBuilt",
    "NodeGraph",
    "HoldsModel",
    "BridgedModel",
    "GradientBarrierModel",
    "Buildable",
    "AbstractlyBuildable",
    "HasDefinitionHash",
    "Unfreezable",
    "Thawable",
    "CheckpointTarget",
    "CheckpointOwner",
    "PhaseContainer",
    "ExperimentHost",
    "HasContext",
    "CheckpointDirHost",
]


@runtime_checkable
class Configurable(Protocol):
    """Has a JSON config (rebuilt by ``cls.from_config(config)`` through the registry)."""

    def get_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Stateful(Protocol):
    """Has learned values as a pytree (``set_state(get_state())`` is the identity)."""

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> Any: ...


@runtime_checkable
class Persistable(Configurable, Stateful, Protocol):
    """An object saved as config + state under a label (FeatureSet, graphs, Experiment)."""

    label: str


@runtime_checkable
class CheckpointHost(Protocol):
    """What graph persistence needs from a graph (ModelGraph, flow Graph, test hosts).

    ``variables`` is the ``{"params", "state"}`` pytree once built (it may be None or
    raise ``AttributeError`` before); ``set_variables`` validates structure and shapes
    and assigns atomically; ``frozen_paths`` are label paths into ``params``.
    """

    label: str
    variables: Any
    frozen_paths: Iterable[Any]

    def set_variables(self, variables: Any) -> Any: ...

    def freeze(self, paths: Any) -> Any: ...

    def get_config(self) -> dict[str, Any]: ...


@runtime_checkable
class PhaseGraph(Protocol):
    """What a phase needs from the graph it runs: a label, the immutable definition it
    traces, the variables it starts from and writes back, and the frozen label paths.
    A graph with one optimizer is also a :class:`HasOptimizer` and :class:`HasOptState`."""

    label: str
    definition: Any
    variables: Any
    frozen_paths: Iterable[Any]

    def set_variables(self, variables: Any) -> Any: ...


@runtime_checkable
class HasOptimizer(Protocol):
    """A graph with one optimizer attribute (an ``Optimizer``/optax transformation with
    ``init(params)``, or None for stage-wise training)."""

    optimizer: Any


@runtime_checkable
class HasOptState(Protocol):
    """A graph keeping the optimizer state it was trained with."""

    opt_state: Any

    def set_opt_state(self, opt_state: Any) -> Any: ...


@runtime_checkable
class ReportsBuilt(Protocol):
    """Says whether it is built (ModelGraph); hosts without it are built when their
    ``variables`` are not None."""

    is_built: bool


@runtime_checkable
class Buildable(Protocol):
    """Can initialise its own variables."""

    def build(self) -> Any: ...


@runtime_checkable
class AbstractlyBuildable(Protocol):
    """Gives its variables' shapes and dtypes without initialising them."""

    def abstract_variables(self) -> Any: ...


@runtime_checkable
class HasDefinitionHash(Protocol):
    """Hashes its architecture (model classes and configs) at a label path."""

    def definition_hash(self, at: str | None = None) -> str: ...


@runtime_checkable
class Unfreezable(Protocol):
    """Thaws label paths with ``unfreeze`` (ModelGraph)."""

    def unfreeze(self, paths: Any) -> Any: ...


@runtime_checkable
class Thawable(Protocol):
    """Thaws label paths with ``thaw`` (the flow Graph tree)."""

    def thaw(self, paths: Any) -> Any: ...


@runtime_checkable
class NodeGraph(Protocol):
    """A graph of labelled nodes (ModelGraph): ``nodes`` by label, wiring queries."""

    nodes: Any
    node_labels: Any

    def upstream_of(self, node: Any) -> Any: ...


@runtime_checkable
class HoldsModel(Protocol):
    """A graph node running a model (ModelNode; merge nodes have none)."""

    model: Any


@runtime_checkable
class BridgedModel(Protocol):
    """A model wrapping a foreign library (torch, scikit-learn)."""

    bridged: bool


@runtime_checkable
class GradientBarrierModel(BridgedModel, Protocol):
    """A bridged model gradients cannot pass (scikit-learn): fitted, not differentiated.
    ``training_mode`` is ``"batch_fit"`` (a FitPhase) or ``"partial_fit"`` (per batch)."""

    gradient_barrier: bool
    training_mode: str


@runtime_checkable
class CheckpointTarget(Stateful, Protocol):
    """What ``Checkpointing`` saves: ``get_state``/``set_state`` in memory mode,
    ``save_checkpoint(path, overwrite=...)`` on disk (a ``blocking=False`` keyword, when
    accepted, makes the write asynchronous and returns a Future)."""

    def save_checkpoint(self, path: str | Path, *, overwrite: bool = ...) -> Any: ...


@runtime_checkable
class CheckpointOwner(Protocol):
    """Carries a ``Checkpointing`` (or None): phases and experiments."""

    checkpointing: Any


@runtime_checkable
class PhaseContainer(Protocol):
    """An execution-plan node holding phases (a group)."""

    phases: Any


@runtime_checkable
class ExperimentHost(Persistable, Protocol):
    """What experiment persistence needs from an Experiment: its graph, plan, history
    and Checkpointing, and a ``get_state()``
    covering the graph, phase counters and sampler RNG (so a resume is bit-exact)."""

    model_graph: Any
    execution_plan: Any
    history: Any
    checkpointing: Any


@runtime_checkable
class HasContext(Protocol):
    """Lives in its own ExperimentContext (an Experiment: its FeatureSets are there)."""

    ctx: Any


@runtime_checkable
class CheckpointDirHost(Protocol):
    """The experiment as a phase's checkpoint hook sees it."""

    checkpoint_dir: Path | None
    checkpointing_enabled: bool
