"""The phase base class (label, bindings, losses, active nodes, callbacks, config) and
the options every phase shares.

The phases themselves live in their own modules: :mod:`modjax.train.train_phase`
(TrainPhase), :mod:`modjax.train.eval_phase` (EvalPhase), :mod:`modjax.train.fit_phase`
(FitPhase); all three run their epochs through :func:`modjax.train.loop.run_loop`.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Sequence
from typing import Any

from modjax.errors import ConfigError
from modjax.io.registry import registered_name, serialize
from modjax.train.callbacks import Callback
from modjax.train.feeds import InputBinding
from modjax.train.losses import AppliedLoss

__all__ = ["ExperimentPhase", "ResultRecording", "NanPolicy", "callback_configs"]


class ResultRecording(enum.StrEnum):
    """Which epochs keep their recorded tensors (per-epoch losses are always kept)."""

    ALL = "all"
    LAST = "last"
    NONE = "none"

    @classmethod
    def from_value(cls, value: str | ResultRecording) -> ResultRecording:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"result_recording must be one of {[m.value for m in cls]}, "
                             f"got {value!r}") from None


class NanPolicy(enum.StrEnum):
    """What a non-finite training loss does: raise (default), stop the phase, or ignore."""

    RAISE = "raise"
    STOP = "stop"
    IGNORE = "ignore"


class ExperimentPhase:
    """Common parts of the phases: label, bindings, losses, active nodes, callbacks."""

    kind = "phase"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss] | None = None,
                 active_nodes: Sequence[Any] | None = None,
                 callbacks: Sequence[Callback] | None = None) -> None:
        if not isinstance(label, str) or not label:
            raise ValueError(f"a phase label must be a non-empty string, got {label!r}")
        self.label = label
        if isinstance(input_sources, InputBinding):
            input_sources = [input_sources]
        self.input_sources = list(input_sources or [])
        for b in self.input_sources:
            if not isinstance(b, InputBinding):
                raise TypeError(f"{type(self).__name__} {label!r}: input_sources must be "
                                f"InputBindings, got {type(b).__name__}")
        self.losses = list(losses or [])
        self.active_nodes = None if active_nodes is None else [
            getattr(n, "label", n) for n in active_nodes]
        self.callbacks: list[Callback] = []
        for cb in callbacks or []:
            self.add_callback(cb)
        self._split: str | None = None

    def add_callback(self, callback: Callback) -> None:
        """Append a callback (error if one of the same type and label is there)."""
        if not isinstance(callback, Callback):
            raise TypeError(f"phase {self.label!r}: expected a Callback, got {type(callback).__name__}")
        for cb in self.callbacks:
            if type(cb) is type(callback) and cb.label == callback.label:
                raise ValueError(f"phase {self.label!r} already has a {type(cb).__name__} "
                                 f"labelled {cb.label!r}")
        self.callbacks.append(callback)

    def _sorted_callbacks(self) -> list[Callback]:
        return sorted(self.callbacks, key=lambda c: c.execution_order)

    def _check_bridges(self, graph: Any, bridged: bool | None = None) -> bool:
        """Refuse what bridged nodes cannot do in this phase; returns whether ``graph``
        has bridged nodes (pass a known answer as ``bridged`` to skip the walk)."""
        from modjax.bridge.hooks import check_phase  # imports no torch/sklearn

        if bridged is None:
            bridged = graph_has_bridges(graph)
        if bridged:
            check_phase(self, graph)
        return bridged

    def _bindings(self, graph: Any, *, check_bridges: bool = True) -> list[InputBinding]:
        if check_bridges:
            self._check_bridges(graph)
        if self.input_sources:
            return self.input_sources
        if self._split is None:
            raise ValueError(f"phase {self.label!r} has no input_sources")
        heads = [n for n in graph.input_nodes.values()
                 if self.active_nodes is None or n.label in self._active_closure(graph)]
        return [self._default_binding(n) for n in heads]

    def _default_binding(self, node: Any) -> InputBinding:  # pragma: no cover - overridden
        return InputBinding(node, split=self._split)

    def _active_closure(self, graph: Any) -> set[str]:
        if self.active_nodes is None:
            return set(graph.node_labels)
        need, stack = set(), list(self.active_nodes)
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            stack.extend(u for u in graph.upstream_of(n) if u in graph.node_labels)
        return need

    def _record_nodes(self, graph: Any) -> list[str]:
        active = self._active_closure(graph)
        nodes = [al.node for al in self.losses] + [n.label for n in graph.tail_nodes.values()]
        return [n for n in dict.fromkeys(nodes) if n in active]

    def _loss_tags(self) -> list[str]:
        return sorted({r.key for al in self.losses for r in al.refs if r.domain == "tags"})

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """The phase as JSON: the common parts plus the phase's own options."""
        cfg = {"label": self.label,
               "input_sources": [b.get_config() for b in self.input_sources],
               "losses": [serialize(al) for al in self.losses],
               "active_nodes": self.active_nodes, "split": self._split,
               "callbacks": callback_configs(self.callbacks, f"phase {self.label!r}")}
        cfg.update(self._own_config())
        return cfg

    def _own_config(self) -> dict[str, Any]:
        """The options of this kind of phase (what its constructor takes besides the
        common ones)."""
        return {}

    @classmethod
    def _config_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        """Constructor keywords of this kind of phase read back from its config."""
        return {}

    @classmethod
    def _split_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        """Extra ``from_split`` keywords (a TrainPhase's sampler)."""
        return {}

    @classmethod
    def from_split(cls, label: str, *, split: str, **kwargs: Any) -> ExperimentPhase:
        """A phase whose every active head node reads ``split``."""
        phase = cls(label, input_sources=[], **kwargs)
        phase._split = split
        return phase

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> ExperimentPhase:
        """Rebuild a phase from :meth:`get_config` (``kw`` reaches nested deserializers)."""
        from modjax.io.registry import deserialize
        kwargs = dict(losses=[deserialize(c, **kw) for c in config.get("losses", [])],
                      active_nodes=config.get("active_nodes"), **cls._config_kwargs(config, kw))
        if config.get("split") is not None and not config["input_sources"]:
            phase = cls.from_split(config["label"], split=config["split"],
                                   **cls._split_kwargs(config, kw), **kwargs)
        else:
            phase = cls(config["label"], input_sources=[InputBinding.from_config(b, **kw)
                                                        for b in config["input_sources"]],
                        **kwargs)
        for c in config.get("callbacks", []):
            phase.add_callback(deserialize(c, **kw))
        return phase

    def visualize(self, graph: Any = None) -> str:
        """Mermaid flowchart of what this phase runs (splits, samplers, losses, active
        nodes) on ``graph`` (default: the active experiment's); see
        :func:`modjax.viz.phase.phase_to_mermaid`."""
        from modjax.viz.phase import phase_to_mermaid

        return phase_to_mermaid(self, graph)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def callback_configs(callbacks: Sequence[Callback], where: str) -> list[dict[str, Any]]:
    """Serialized registered callbacks; others (closures, MetricCallback) are skipped
    with a warning naming them, since their code cannot be written as JSON."""
    out = []
    for cb in callbacks:
        try:
            registered_name(cb)
        except ConfigError:
            warnings.warn(f"{where}: callback {cb.label!r} ({type(cb).__name__}) is not registered "
                          "and is left out of the config; decorate it with @modjax.register",
                          stacklevel=3)
            continue
        out.append(serialize(cb))
    return out


#: graph_has_bridges per graph definition: the walk's Protocol checks cost more than the
#: rest of a warm execute's setup, and a mutated graph gets a new definition
_BRIDGED: dict[Any, bool] = {}


def graph_has_bridges(graph: Any) -> bool:
    """Whether a node of ``graph`` wraps torch or scikit-learn, cached per definition.

    Args:
        graph: a ModelGraph or flow Graph (anything without a definition is walked).

    Returns:
        True when a node's model is bridged.

    Example:
        >>> import numpy as np
        >>> from modjax import FeatureSet, Linear, ModelGraph, ModelNode
        >>> fs = FeatureSet.from_dict("hb", {"x": np.ones((4, 3)), "y": np.ones(4)}, "x", "y",
        ...                           register=False)
        >>> g = ModelGraph([ModelNode("hb_m", Linear(1), upstream_ref=fs.reference(),
        ...                           register=False)], register=False)
        >>> graph_has_bridges(g.build(key=0))
        False
    """
    from modjax.bridge.hooks import has_bridges
    from modjax.graph.definition import GraphDef, cached_on

    definition = getattr(graph, "definition", None)
    if not isinstance(definition, GraphDef):
        return has_bridges(graph)
    return cached_on(_BRIDGED, (type(graph), definition), lambda: has_bridges(graph))
