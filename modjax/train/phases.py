"""Experiment phases: TrainPhase (epochs as jitted scans), EvalPhase, FitPhase.

A TrainPhase puts the data of each binding on the device once (``DeviceStore``), asks
the samplers for an index plan per epoch on the host, and runs the epoch as one
jitted ``lax.scan`` whose body gathers the batch on the device and calls the pure
step from :func:`~modjax.train.step.make_train_step`. The jitted epoch function is
kept on the phase, so a second run with the same shapes compiles nothing; the frozen
set is a traced mask in the carry, so freezing/unfreezing does not recompile either.
"""

from __future__ import annotations

import enum
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.device import shared_store
from modjax.data.plan import IndexPlan
from modjax.distributed import put_global, spans_processes, to_host
from modjax.errors import ConfigError, GraphStructureError, closest_names
from modjax.io.registry import register, registered_name, serialize
from modjax.train.callbacks import Callback
from modjax.train.losses import AppliedLoss
from modjax.train.metrics import AppliedMetric, check_class_targets, log_epoch_metrics
from modjax.train.programs import counting_traces, note_trace, program, spec_of
from modjax.train.results import BindingRecord, EpochRecord, EvalResults, FitResults, TrainResults
from modjax.train.schedule import BatchSchedulingPolicy, schedule_plans
from modjax.train.step import (
    DEFAULT_ROLE,
    check_stage_wise,
    graph_optimizers,
    init_train_carry,
    make_eval_step,
    make_train_step,
)
from modjax.train.streaming import run_streamed_epoch, stream_segments

__all__ = ["InputBinding", "ExperimentPhase", "TrainPhase", "EvalPhase", "FitPhase",
           "ResultRecording", "NanPolicy"]


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


def _graph_node(graph: Any, node: Any) -> Any:
    label = getattr(node, "label", node)
    for n in graph.nodes.values():
        if n.label == label or getattr(n, "node_id", None) == label:
            return n
    raise GraphStructureError(f"node {label!r} is not in graph {graph.label!r}; nodes like it: "
                              f"{closest_names(str(label), graph.node_labels)}")


def _fs_refs(node: Any) -> list[Any]:
    return [r for r in node.get_upstream_refs()
            if hasattr(r, "featureset_label") and hasattr(r, "feature_shape")]


@register("InputBinding")
class InputBinding:
    """Which data (FeatureSet/split, sampler, stream) feeds a head node in one phase.

    Use :meth:`for_training` (with a sampler) or :meth:`for_evaluation` (all rows).
    ``upstream`` may be a FeatureSet, a FeatureSetView (fed as-is), a FeatureSet label,
    or None when the node reads a single FeatureSet.
    """

    def __init__(self, node: Any, *, upstream: Any = None, split: str | None = None,
                 sampler: Any = None, stream: str = DEFAULT_ROLE) -> None:
        self.node = getattr(node, "label", node)
        if not isinstance(self.node, str):
            raise TypeError(f"InputBinding: node must be a node or label, got {node!r}")
        self.upstream = upstream
        self.split = split
        self.sampler = sampler
        self.stream = stream

    @property
    def node_id(self) -> str:
        """Id of the node (ModularML's spelling), looked up by label in the active context."""
        from modjax.context import ExperimentContext

        return ExperimentContext.get_active().get_node(label=self.node).node_id

    @classmethod
    def for_training(cls, *, node: Any, sampler: Any, upstream: Any = None,
                     split: str | None = None, stream: str = DEFAULT_ROLE) -> InputBinding:
        """A binding that batches the data with ``sampler`` (required)."""
        if sampler is None:
            raise ValueError(f"InputBinding.for_training(node={getattr(node, 'label', node)!r}) "
                             "needs a sampler")
        return cls(node, upstream=upstream, split=split, sampler=sampler, stream=stream)

    @classmethod
    def for_evaluation(cls, *, node: Any, upstream: Any = None, split: str | None = None
                       ) -> InputBinding:
        """A binding that feeds every row of the FeatureSet/split, in order."""
        return cls(node, upstream=upstream, split=split)

    # ----------------------------------------------------------------- resolution
    def resolve(self, graph: Any, *, owner: str) -> tuple[Any, Any, Any, str]:
        """``(node, reference, view, batch_key)`` against ``graph``."""
        node = _graph_node(graph, self.node)
        refs = _fs_refs(node)
        if not refs:
            raise GraphStructureError(
                f"{owner}: InputBinding targets node {node.label!r}, which is not a head node (it "
                f"reads no FeatureSet; it is fed by {graph.upstream_of(node.label)}); bind one of "
                f"the head nodes {[n.label for n in graph.input_nodes.values()]}")
        up = self.upstream
        view = None
        if up is None:
            if len(refs) != 1:
                raise ValueError(f"{owner}: node {node.label!r} reads several FeatureSets "
                                 f"{[r.featureset_label for r in refs]}; pass upstream=")
            ref = refs[0]
        else:
            if hasattr(up, "indices") and hasattr(up, "source") and not hasattr(up, "splits"):
                view, fs_label = up, up.source.label
            else:
                fs_label = getattr(up, "label", up)
            match = [r for r in refs if r.featureset_label == fs_label]
            if not match:
                raise ValueError(f"{owner}: node {node.label!r} does not read FeatureSet "
                                 f"{fs_label!r}; it reads {[r.featureset_label for r in refs]}")
            ref = match[0]
        if view is None:
            fs = ref.resolve()
            if self.split is not None and self.split not in fs.available_splits:
                raise KeyError(f"{owner}: FeatureSet {fs.label!r} has no split {self.split!r}; "
                               f"splits: {fs.available_splits}")
            view = ref.to_view(self.split)
        key = node.label if len(refs) == 1 else ref.featureset_label
        return node, ref, view, key

    def get_config(self) -> dict[str, Any]:
        up = self.upstream
        up_cfg = None if up is None else getattr(getattr(up, "source", up), "label", up)
        return {"node": self.node, "upstream": up_cfg, "split": self.split,
                "sampler": None if self.sampler is None else serialize(self.sampler),
                "stream": self.stream}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> InputBinding:
        from modjax.io.registry import deserialize
        s = config.get("sampler")
        return cls(config["node"], upstream=config.get("upstream"), split=config.get("split"),
                   sampler=None if s is None else deserialize(s, **kw),
                   stream=config.get("stream", DEFAULT_ROLE))

    def __repr__(self) -> str:
        return (f"InputBinding(node={self.node!r}, split={self.split!r}, "
                f"sampler={type(self.sampler).__name__ if self.sampler else None})")


class _Feed:
    """A resolved binding: device store + how to turn plans into its batch entry."""

    def __init__(self, binding: InputBinding, graph: Any, *, owner: str, mesh: Any,
                 tags: Sequence[str], byte_budget: int | None = None,
                 shard_rows: bool | None = None) -> None:
        self.binding = binding
        self.node, self.ref, self.view, self.key = binding.resolve(graph, owner=owner)
        tag_keys = [t for t in tags if t in self.view.tag_keys]
        # shared with every phase/evaluation reading the same rows and columns: the data
        # goes to the device once per FeatureSet version, not once per execute
        self.store = shared_store(self.view, features=list(self.ref.features),
                                  targets=list(self.ref.targets), tags=tag_keys,
                                  rep=self.ref.rep, mesh=mesh, byte_budget=byte_budget,
                                  shard_rows=shard_rows)
        self.sampler = binding.sampler
        if self.sampler is not None:
            src = getattr(self.sampler, "source", None)
            same = src is not None and src.source is self.view.source and np.array_equal(
                np.asarray(src.indices), np.asarray(self.view.indices))
            if not same:
                self.sampler.bind(self.view)
            streams = tuple(getattr(self.sampler, "roles", (DEFAULT_ROLE,)))
            if binding.stream != DEFAULT_ROLE and binding.stream not in streams:
                raise KeyError(f"{owner}: InputBinding of node {self.node.label!r} asks for stream "
                               f"{binding.stream!r}, but the sampler's streams are {list(streams)}")

    def select_stream(self, plan: IndexPlan) -> IndexPlan:
        s = self.binding.stream
        if s == DEFAULT_ROLE or s not in plan.indices or len(plan.indices) == 1:
            return plan
        return IndexPlan({DEFAULT_ROLE: plan.indices[s]}, {DEFAULT_ROLE: plan.mask[s]},
                         {DEFAULT_ROLE: plan.weights[s]})


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

    def _bindings(self, graph: Any) -> list[InputBinding]:
        from modjax.bridge.hooks import check_phase, has_bridges  # imports no torch/sklearn

        if has_bridges(graph):
            check_phase(self, graph)
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

    def _base_config(self) -> dict[str, Any]:
        return {"label": self.label,
                "input_sources": [b.get_config() for b in self.input_sources],
                "losses": [serialize(al) for al in self.losses],
                "active_nodes": self.active_nodes, "split": self._split,
                "callbacks": _callback_configs(self.callbacks, f"phase {self.label!r}")}

    @staticmethod
    def _with_callbacks(phase: Any, config: dict[str, Any], kw: dict[str, Any]) -> Any:
        """``phase`` with the callbacks of its config added (used by every from_config)."""
        from modjax.io.registry import deserialize
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


def _callback_configs(callbacks: Sequence[Callback], where: str) -> list[dict[str, Any]]:
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


def _stack_feeds(feeds: Sequence[_Feed], plans: Sequence[IndexPlan]) -> tuple[dict, dict]:
    # without a mesh the numpy plan goes straight into the jitted call (its own transfer
    # is cheaper than an explicit device_put); with one it is padded and sharded
    pairs = {f.key: f.store.epoch_arrays(p) for f, p in zip(feeds, plans)}
    return {k: a for k, (a, _) in pairs.items()}, {k: p for k, (_, p) in pairs.items()}


def _tag_mask(rec: EpochRecord, tags: Mapping[str, Any]) -> np.ndarray | None:
    """The real-sample mask of captured tags: the mask of the binding whose
    ``(n_batches, batch)`` matches theirs (None: every slot counts)."""
    first = next(iter(tags.values()))
    first = first.get("default", next(iter(first.values()))) if isinstance(first, Mapping) else first
    lead = tuple(np.shape(first)[:2])
    for b in rec.bindings.values():
        m = b.mask.get("default")
        if m is not None and tuple(np.shape(m)) == lead:
            return np.asarray(m)
    return None


def _binding_records(feeds: Sequence[_Feed], plans: Sequence[IndexPlan]
                     ) -> dict[str, BindingRecord]:
    """What each binding fed this epoch (host index/mask arrays, for the results)."""
    return {f.key: BindingRecord(f.key, f.node.label, f.view, f.ref, *_host_plan(p))
            for f, p in zip(feeds, plans)}


def _single_pass_record(metrics: Mapping[str, Any], feeds: Sequence[_Feed],
                        plans: Sequence[IndexPlan]) -> EpochRecord:
    """The one "epoch" of an EvalPhase/FitPhase pass."""
    return EpochRecord(0, np.asarray(metrics["loss"]),
                       {k: np.asarray(v) for k, v in metrics["losses"].items()},
                       metrics["records"], _binding_records(feeds, plans))


def _host_plan(plan: IndexPlan) -> tuple[dict, dict]:
    return ({r: np.asarray(v) for r, v in plan.indices.items()},
            {r: np.asarray(v) for r, v in plan.mask.items()})


def _train_metrics(label: str, metrics: Sequence[AppliedMetric] | None, replicas: int
                   ) -> list[AppliedMetric]:
    """A TrainPhase's metrics, checked: AppliedMetrics with distinct logged names."""
    from modjax.train.metrics import logged_names

    out = list(metrics or [])
    for m in out:
        if not isinstance(m, AppliedMetric):
            raise TypeError(f"TrainPhase {label!r}: metrics must be AppliedMetric objects "
                            f"(e.g. AppliedMetric('accuracy', on='head')), got {m!r}")
    if out and replicas != 1:
        raise ValueError(f"TrainPhase {label!r}: training metrics are not computed for "
                         f"ensembles (replicas={replicas}); evaluate the ensemble with an "
                         "EvalPhase(metrics=...) instead")
    logged_names(out, "train_", owner=f"TrainPhase {label!r}")
    return out


def _specs_from_config(rules: Mapping[str, Any] | None) -> dict[str, Any] | None:
    from jax.sharding import PartitionSpec
    if not rules:
        return None
    return {k: PartitionSpec(*[tuple(a) if isinstance(a, list) else a for a in v])
            for k, v in rules.items()}


@register("TrainPhase")
class TrainPhase(ExperimentPhase):
    """Train the graph for ``n_epochs``; each epoch is one jitted ``lax.scan``.

    Args:
        label: phase name.
        input_sources: ``InputBinding.for_training(...)`` per head node.
        losses: AppliedLosses (at least one).
        n_epochs: epochs to run.
        active_nodes: run (and train) only these nodes and their upstream.
        batch_schedule: ``zip_strict``, ``zip_cycle``, ``alternate_strict``,
            ``alternate_cycle`` (several samplers).
        callbacks: phase callbacks.
        checkpointing: a ``Checkpointing`` saving at phase/epoch/batch hooks.
        result_recording: ``"all"`` (recorded outputs/targets of every epoch), ``"last"``
            (of the last epoch run only) or ``"none"``; losses and metrics are always kept.
        nan_policy: ``"raise"`` (FloatingPointError naming epoch and batch; variables
            left as before the phase), ``"stop"`` (end the phase with the state of the
            last epoch whose losses were all finite; ``results.nan_stop`` holds the
            (epoch, batch)) or ``"ignore"``. It is checked on the host from the epoch's
            per-batch losses (transferred anyway), so it costs nothing per step.
        mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis for data parallelism; it may
            span several processes (see ``modjax.distributed``).
        shard_data: with a mesh, give each device only the rows its batch slots read
            instead of a replicated copy (None: True when the mesh spans processes).
        shard_params: ``{glob over parameter paths: PartitionSpec}`` placing parameters
            and their optimizer state on the mesh (``modjax.train.sharding``).
        compute_dtype: e.g. ``"bfloat16"``: run the graph in that dtype while parameters
            and optimizer state stay float32 (``modjax.train.precision``).
        byte_budget: device bytes allowed per binding's data (default: no limit, or the
            Experiment's ``byte_budget``). Larger data is streamed: each epoch runs as a
            few scans over fixed-shape chunks (``DeviceStore.epoch_chunks``), all with one
            compiled function, and trains exactly like the resident run.
        seed: PRNG seed for dropout keys (deterministic runs).
        capture: tag paths to record per batch.
        observer: a ``modjax.observe.Observer`` fed each epoch's per-batch losses
            (default: the Experiment's ``observer`` if it has one).
        replicas: train an ensemble of this many seeds as one vmapped program
            (``modjax.train.ensemble``): replica ``r`` is the run with graph key, phase
            seed and sampler seeds shifted by ``r``; the graph keeps replica 0 and an
            EvalPhase on it reports every replica and the ensemble mean.
        metrics: :class:`~modjax.train.metrics.AppliedMetric` s computed inside the
            jitted step on each batch's training forward pass; each epoch's per-batch
            statistics are combined on the device and logged as ``train_<metric>``
            (``train_accuracy``; ``train_<label>`` for a metric given ``label=``).
    """

    kind = "train"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss], n_epochs: int = 1,
                 active_nodes: Sequence[Any] | None = None,
                 batch_schedule: str | BatchSchedulingPolicy = "zip_strict",
                 callbacks: Sequence[Callback] | None = None, checkpointing: Any = None,
                 result_recording: str | ResultRecording = "all", nan_policy: str = "raise",
                 mesh: Any = None, seed: int = 0, capture: Sequence[str] = (),
                 observer: Any = None, byte_budget: int | None = None,
                 shard_data: bool | None = None, shard_params: Mapping[str, Any] | None = None,
                 compute_dtype: Any = None, replicas: int = 1,
                 metrics: Sequence[AppliedMetric] | None = None) -> None:
        super().__init__(label, input_sources=input_sources, losses=losses,
                         active_nodes=active_nodes, callbacks=callbacks)
        self.metrics = _train_metrics(label, metrics, replicas)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"TrainPhase {label!r}: replicas must be a positive int, got "
                             f"{replicas!r}")
        self.replicas = replicas
        self.shard_data = shard_data
        self.shard_params = None if not shard_params else dict(shard_params)
        self.compute_dtype = None if compute_dtype is None else str(jnp.dtype(compute_dtype))
        if byte_budget is not None and (not isinstance(byte_budget, int) or byte_budget <= 0):
            raise ValueError(f"TrainPhase {label!r}: byte_budget must be a positive int (bytes) "
                             f"or None, got {byte_budget!r}")
        self.byte_budget = byte_budget
        if not self.losses:
            raise ValueError(f"TrainPhase {label!r} has no losses; pass losses=[AppliedLoss(...)]")
        for b in self.input_sources:
            if b.sampler is None:
                raise ValueError(f"TrainPhase {label!r}: the binding of node {b.node!r} has no "
                                 "sampler; use InputBinding.for_training(node=..., sampler=...)")
        if not isinstance(n_epochs, int) or n_epochs < 1:
            raise ValueError(f"TrainPhase {label!r}: n_epochs must be a positive int, got {n_epochs!r}")
        self.n_epochs = n_epochs
        self.batch_schedule = BatchSchedulingPolicy.from_value(batch_schedule)
        self.result_recording = ResultRecording.from_value(result_recording)
        try:
            self.nan_policy = NanPolicy(nan_policy)
        except ValueError:
            raise ValueError(f"nan_policy must be 'raise', 'stop' or 'ignore', got {nan_policy!r}") from None
        self.mesh = mesh
        self.seed = int(seed)
        self.capture = tuple(capture)
        self.observer = observer
        self._sampler: Any = None
        self.checkpointing = None
        self.set_checkpointing(checkpointing)
        self._stop = False
        self._compiled: dict[Any, Any] = {}
        self.n_traces = 0
        self.epochs_run = 0
        #: dispatch epoch e+1 before reading epoch e's losses (False: wait every epoch)
        self._pipeline = True
        self._discarded = 0  # speculative epochs dropped (stop, restored carry, reseeded sampler)
        self._carry: Any = None
        self._graph: Any = None

    @classmethod
    def from_split(cls, label: str, *, split: str, sampler: Any, losses: Sequence[AppliedLoss],
                   **kwargs: Any) -> TrainPhase:
        """A phase whose every active head node reads ``split`` through ``sampler``."""
        if sampler is None:
            raise ValueError(f"TrainPhase.from_split({label!r}) needs a sampler")
        phase = cls(label, input_sources=[], losses=losses, **kwargs)
        phase._split, phase._sampler = split, sampler
        return phase

    def _default_binding(self, node: Any) -> InputBinding:
        return InputBinding.for_training(node=node, sampler=self._sampler, split=self._split)

    def set_checkpointing(self, checkpointing: Any) -> None:
        """Attach (validated for a TrainPhase) or remove a Checkpointing."""
        if checkpointing is not None:
            checkpointing.configure_for("phase")
        self.checkpointing = checkpointing

    def request_stop(self) -> None:
        """Stop after the current epoch (used by EarlyStopping)."""
        self._stop = True

    # ----------------------------------------------------------------- carry access
    @property
    def graph(self) -> Any:
        return self._graph

    def current_variables(self) -> Any:
        """The variables of the running phase (the graph's are written at phase end)."""
        return self._carry["variables"] if self._carry is not None else self._graph.variables

    def snapshot(self) -> dict[str, Any]:
        """In-memory snapshot: variables, optimizer state, step (device arrays, no copy)."""
        c = self._carry
        return {"variables": c["variables"], "opt_state": c["opt_state"], "step": c["step"],
                "key": c["key"]}

    def restore_snapshot(self, snap: Mapping[str, Any]) -> None:
        """Put a :meth:`snapshot` (or a Checkpointing memory state) back into the carry."""
        if "variables" in snap:
            self._carry = dict(self._carry, **{k: snap[k] for k in
                                               ("variables", "opt_state", "step", "key") if k in snap})
        elif "graph" in snap:
            self._carry = dict(self._carry, variables=snap["graph"]["variables"],
                               opt_state=snap.get("opt_state", self._carry["opt_state"]))

    # checkpointing target protocol (memory: get_state/set_state; disk: save_checkpoint)
    def get_state(self) -> dict[str, Any]:
        """Phase counters and sampler RNG state (plus a carry snapshot while running)."""
        st: dict[str, Any] = {"epochs_run": np.int64(self.epochs_run),
                              "samplers": {str(i): b.sampler.get_state()
                                           for i, b in enumerate(self.input_sources) if b.sampler}}
        if self._sampler is not None:
            st["samplers"]["split"] = self._sampler.get_state()
        if self._carry is not None:
            st.update(self.snapshot())
        return st

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.epochs_run = int(state.get("epochs_run", self.epochs_run))
        samplers = state.get("samplers", {})
        for i, b in enumerate(self.input_sources):
            if b.sampler is not None and str(i) in samplers:
                b.sampler.set_state(samplers[str(i)])
        if self._sampler is not None and "split" in samplers:
            self._sampler.set_state(samplers["split"])
        if self._carry is not None and "variables" in state:
            self.restore_snapshot(state)

    def save_checkpoint(self, path: Any, *, overwrite: bool = True, **kwargs: Any) -> Any:
        """Disk checkpoint of the running variables and optimizer state through the graph's
        Orbax writer (extra keyword arguments such as ``blocking`` are forwarded)."""
        g = self._graph
        old_vars, old_opt = g.variables, g.opt_state
        g.set_variables(self.current_variables())
        if self._carry is not None and not isinstance(self._carry["opt_state"], dict):
            g.set_opt_state(self._carry["opt_state"])
        try:
            return g.save_checkpoint(path, overwrite=overwrite, **kwargs)
        finally:
            g.set_variables(old_vars)
            g.set_opt_state(old_opt)

    # ----------------------------------------------------------------- compiled epoch
    def _epoch_fn(self, graph: Any, feeds: Sequence[_Feed], optimizer: Any, chunked: bool,
                  skip_empty: bool = False) -> Any:
        """The jitted epoch scan (``chunked``: the one-batch variant batch hooks use).

        ``skip_empty`` (streaming only) leaves the carry untouched on the fully masked
        batches that pad the last chunk, so the padded run trains exactly like the
        resident one; the resident scan has no such select.
        """
        record = self._record_nodes(graph) if self.result_recording is not ResultRecording.NONE else []
        # before the lookup: a cached program was checked against what was frozen then
        check_stage_wise(graph, optimizer, self.active_nodes)
        sig = ("train_epoch", graph.definition, tuple(spec_of(al) for al in self.losses),
               spec_of(optimizer), tuple(f.key for f in feeds), chunked, skip_empty, self.mesh,
               tuple(f.store.shard_rows for f in feeds), spec_of(self.compute_dtype),
               tuple(record), self.capture, spec_of(self.active_nodes),
               tuple(spec_of(m) for m in self.metrics))
        return program(sig, lambda: self._make_epoch(graph, feeds, optimizer, record, skip_empty))

    def _make_epoch(self, graph: Any, feeds: Sequence[_Feed], optimizer: Any,
                    record: list[str], skip_empty: bool) -> Any:
        from modjax.train.precision import compute_graph
        step = make_train_step(compute_graph(graph, self.compute_dtype), self.losses, optimizer,
                               active_nodes=self.active_nodes, capture=self.capture,
                               record=record, metrics=self.metrics)
        gathers = {f.key: f.store.gather_fn() for f in feeds}
        keys = [f.key for f in feeds]
        labels = [al.label for al in self.losses]

        def epoch(carry, stores, plans):
            note_trace()  # Python runs only while tracing: counts compilations

            def body(carry, xs):
                batch = {k: gathers[k](stores[k], xs[k]) for k in keys}
                new, m = step(carry, batch)
                if skip_empty:
                    real = jnp.any(jnp.stack([jnp.any(xs[k].mask[r]) for k in keys
                                              for r in xs[k].roles]))
                    new = jax.tree.map(lambda a, b: jnp.where(real, a, b), new, carry)
                # total and per-label losses in one row: the epoch's only host transfer;
                # what a non-finite loss does is decided on the host from these rows
                row = jnp.stack([m["loss"]] + [m["losses"][lbl] for lbl in labels])
                # metric statistics stay on the device; combined once per epoch
                return new, {"loss_table": row, "records": m["records"],
                             "metric_stats": m["metric_stats"]}

            return jax.lax.scan(body, carry, plans)

        fn = jax.jit(epoch)
        fn.step = step  # type: ignore[attr-defined]
        return fn

    # ----------------------------------------------------------------- run
    def execute(self, graph: Any, *, experiment: Any = None, show_training_progress: bool = True,
                show_sampler_progress: bool = False, persist_progress: bool = False,
                val_loss_metric: str = "val_loss", progress_file: Any = None) -> TrainResults:
        """Run the phase on ``graph`` (what ``Experiment.run_phase`` calls).

        Args:
            graph: the built (or buildable) ModelGraph to train.
            experiment: the running Experiment (observer, byte budget, checkpoint dir).
            show_training_progress: a tqdm bar over epochs with ``train_loss`` and
                ``val_loss_metric`` when logged.
            show_sampler_progress: a tqdm bar over each epoch's batches (advanced per
                dispatched scan chunk: no host sync per batch).
            persist_progress: leave the bars on screen afterwards, each with its final
                line (losses and metrics of the last epoch); default False removes them.
            val_loss_metric: the validation metric shown first in the epoch bar (every
                other metric logged in an epoch is shown after it).
            progress_file: stream for the bars (default stderr).

        Returns:
            The phase's TrainResults.

        The graph's variables (and optimizer state) are written back only when the
        phase completes; if it raises, they are exactly as before.
        """
        from modjax.train.progress import EpochProgress

        if self.replicas > 1:
            from modjax.train.ensemble import execute_ensemble
            return execute_ensemble(self, graph, experiment=experiment)
        if not graph.is_built:
            graph.build()
        owner = f"TrainPhase {self.label!r}"
        budget = self.byte_budget
        if budget is None and experiment is not None:
            budget = getattr(experiment, "byte_budget", None)
        feeds = [_Feed(b, graph, owner=owner, mesh=self.mesh, tags=self._loss_tags(),
                       byte_budget=budget, shard_rows=self.shard_data)
                 for b in self._bindings(graph)]
        if not feeds:
            raise ValueError(f"{owner}: no input bindings")
        check_class_targets(graph, [*self.losses, *self.metrics], feeds, owner=owner)
        optimizer = graph_optimizers(graph)
        streaming = not all(f.store.fits for f in feeds)
        fn = self._epoch_fn(graph, feeds, optimizer, chunked=False, skip_empty=streaming)
        chunked = any(cb.uses_batch_hooks for cb in self.callbacks) or (
            self.checkpointing is not None and any(h.startswith("batch") for h in self.checkpointing.save_on))
        step_fn = self._epoch_fn(graph, feeds, optimizer, chunked=True) if chunked else None
        results = TrainResults(self.label, graph=graph,
                               loss_nodes={al.label: al.node for al in self.losses})
        # start state: the graph's variables and (matching) optimizer state
        variables = graph.variables
        if isinstance(optimizer, dict):
            opt_state = {k: o.state for k, o in optimizer.items()}
            if any(s is None for s in opt_state.values()):
                opt_state = None
        else:
            opt_state = graph.opt_state
            if opt_state is not None and jax.tree.structure(opt_state) != \
                    self._opt_structure(optimizer, variables["params"]):
                opt_state = None
        frozen = sorted(graph.frozen_paths)
        key = _start_key(self.seed, self.epochs_run)
        carry = init_train_carry(variables, optimizer, key, frozen_paths=frozen,
                                 opt_state=opt_state)
        if self.mesh is not None:
            from modjax.train.sharding import carry_shardings
            carry = put_global(carry, carry_shardings(carry, self.shard_params, self.mesh))
        # counters and sampler state as they were: a phase that raises leaves them so
        counters = self.get_state() if self._carry is None else None
        self._graph, self._carry, self._stop = graph, carry, False
        if self.checkpointing is not None:
            self.checkpointing.reset()
        cbs = self._sorted_callbacks()
        progress = EpochProgress(self.label, self.n_epochs, enabled=show_training_progress,
                                 persist=persist_progress, val_metric=val_loss_metric,
                                 show_batches=show_sampler_progress, file=progress_file)
        ctx = {"experiment": experiment, "phase": self}
        obs = self.observer if self.observer is not None else getattr(experiment, "observer", None)
        if obs is not None:
            # stamp the start before the first scan, so epoch 1's duration (compilation
            # included) and the observer's ETA count the first epoch in full
            obs.mark_start()
        self._checkpoint("phase_start", experiment)
        try:
            for cb in cbs:
                cb.on_phase_start(results=results, **ctx)
            ahead: dict[int, tuple[tuple, IndexPlan]] = {}
            # the next epoch is dispatched before this one's losses are read (see
            # modjax.train.pipeline); batch hooks and streamed data run epoch by epoch
            pipelined = self._pipeline and step_fn is None and not streaming
            spec: Any = None
            for epoch in range(self.n_epochs):
                for cb in cbs:
                    cb.on_epoch_start(epoch=epoch, results=results, **ctx)
                self._checkpoint("epoch_start", experiment, epoch=epoch)
                t0 = time.time()
                plans, dispatched = self._confirm(spec, feeds)
                if dispatched is None:
                    plans = self._epoch_plans(feeds, ahead)
                ahead, spec = {}, None
                progress.start_epoch(epoch, plans[0].n_batches)

                def plan_ahead(carry: Any, epoch: int = epoch, ahead: dict = ahead) -> None:
                    nonlocal spec
                    if epoch + 1 < self.n_epochs:
                        ahead.update(self._plans_ahead(feeds))
                        if pipelined:
                            spec = self._speculate(fn, feeds, ahead, carry)

                rec = self._run_epoch(fn, step_fn, feeds, plans, epoch, cbs, results, experiment,
                                      streaming=streaming, progress=progress,
                                      while_running=plan_ahead, dispatched=dispatched)
                rec.started_at, rec.ended_at = t0, time.time()
                if getattr(rec, "nan_stop", None) is not None:
                    results.nan_stop = rec.nan_stop
                    results.stopped_early = True
                    break
                results.add_epoch(rec, keep_records=self.result_recording is not ResultRecording.NONE)
                if self.result_recording is ResultRecording.LAST:
                    results.drop_records_except(epoch)
                counts = results._batch_counts(rec)
                train_loss = float(np.sum(rec.loss * counts) / max(counts.sum(), 1.0))
                results.metrics.log("train_loss", train_loss, epoch=epoch)
                log_epoch_metrics(self.metrics, rec.__dict__.pop("metric_stats", None), results,
                                  epoch, owner=owner)
                self.epochs_run += 1
                for cb in cbs:
                    cb.on_epoch_end(epoch=epoch, results=results, **ctx)
                # after the callbacks: validation metrics of this epoch join its history
                self._feed_observer(experiment, rec, self.observer, results=results, epoch=epoch)
                self._checkpoint("epoch_end", experiment, epoch=epoch)
                progress.update(epoch, results.metrics)
                if self._stop:
                    break
            self._discarded += spec is not None  # dispatched past a stop: never used
            for cb in cbs:
                cb.on_phase_end(results=results, **ctx)
            self._checkpoint("phase_end", experiment)
        except BaseException:
            self._carry = None  # drop the half-trained state; the graph was never written
            if counters is not None:
                self.set_state(counters)
            raise
        finally:
            progress.close()
        final = self._carry
        self._carry = None
        self._write_back(graph, optimizer, final)
        return results

    def _opt_structure(self, optimizer: Any, params: Any) -> Any:
        # keyed on what the optimizer computes, never on its id (which a new object can reuse)
        key = (spec_of(optimizer), jax.tree.structure(params))
        cache = self.__dict__.setdefault("_opt_structs", {})
        if key not in cache:
            cache[key] = jax.tree.structure(jax.eval_shape(optimizer.init, params))
        return cache[key]

    @staticmethod
    def _samplers(feeds: Sequence[_Feed]) -> list[Any]:
        samplers: list[Any] = []
        for f in feeds:
            if not any(f.sampler is s for s in samplers):
                samplers.append(f.sampler)
        return samplers

    @staticmethod
    def _plan_key(sampler: Any) -> tuple:
        """Everything a value-blind sampler's next plan depends on."""
        src = sampler.source
        return (sampler.epoch, sampler.seed, sampler.batch_size, sampler.shuffle,
                sampler.drop_last, id(src), src.n_samples)

    def _plans_ahead(self, feeds: Sequence[_Feed]) -> dict[int, tuple[tuple, IndexPlan]]:
        """Next epoch's plans of value-blind samplers, made while the device runs this
        epoch (the host work then costs no wall time). Counters are not advanced: a
        phase that stops after this epoch leaves its samplers exactly where they were."""
        return {id(s): (self._plan_key(s), s.plan()) for s in self._samplers(feeds)
                if not s.plan_reads_values}

    def _epoch_plans(self, feeds: Sequence[_Feed],
                     ahead: Mapping[int, tuple[tuple, IndexPlan]] | None = None
                     ) -> list[IndexPlan]:
        """One plan per distinct sampler (bindings sharing a sampler see the same rows),
        scheduled across samplers, then the stream each binding asked for. A plan made
        ahead is used when the sampler has not changed since (callbacks may restore or
        rebind it)."""
        samplers = self._samplers(feeds)

        def next_plan(s: Any) -> IndexPlan:
            key, plan = (ahead or {}).get(id(s), (None, None))
            if plan is not None and key == self._plan_key(s):
                s.epoch += 1
                return plan
            return s.next_plan()

        return self._schedule(feeds, samplers, [next_plan(s) for s in samplers])

    def _schedule(self, feeds: Sequence[_Feed], samplers: Sequence[Any],
                  raw: Sequence[IndexPlan]) -> list[IndexPlan]:
        """The samplers' plans scheduled together, then each binding's stream."""
        scheduled = schedule_plans(list(raw), self.batch_schedule)
        return [f.select_stream(scheduled[next(i for i, s in enumerate(samplers) if s is f.sampler)])
                for f in feeds]

    def _speculate(self, fn: Any, feeds: Sequence[_Feed],
                   ahead: Mapping[int, tuple[tuple, IndexPlan]], carry: Any) -> Any:
        """Dispatch the next epoch from ``carry`` when every sampler's plan was made ahead."""
        from modjax.train.pipeline import speculate

        samplers = self._samplers(feeds)
        if not all(id(s) in ahead for s in samplers):
            return None  # a value-reading sampler makes its plan only when it is due
        raw = [ahead[id(s)][1] for s in samplers]
        plans = self._schedule(feeds, samplers, raw)

        def dispatch(c: Any, p: Sequence[IndexPlan]) -> tuple[Any, Any]:
            stores, dplans = _stack_feeds(feeds, p)
            with counting_traces(self):
                return fn(c, stores, dplans)

        return speculate(dispatch, carry, plans, tuple(ahead[id(s)][0] for s in samplers))

    def _confirm(self, spec: Any, feeds: Sequence[_Feed]) -> tuple[Any, Any]:
        """``(plans, (carry, out))`` of a speculative epoch still valid now (its samplers
        then advance as if they had made the plans now), else ``(None, None)``."""
        if spec is None:
            return None, None
        samplers = self._samplers(feeds)
        if self._stop or not spec.valid(self._carry, tuple(self._plan_key(s) for s in samplers)):
            self._discarded += 1
            return None, None
        for s in samplers:
            s.epoch += 1
        return spec.plans, (spec.carry_out, spec.out)

    def _run_epoch(self, fn, step_fn, feeds, plans, epoch, cbs, results, experiment,
                   streaming: bool = False, progress: Any = None,
                   while_running: Callable[[Any], None] | None = None,
                   dispatched: tuple[Any, Any] | None = None) -> EpochRecord:
        bindings = _binding_records(feeds, plans)
        pre_epoch = self._carry
        carry = self._carry
        if dispatched is not None:  # a speculative epoch confirmed by the phase
            carry, out = dispatched
            if progress is not None:
                progress.advance_batches(plans[0].n_batches)
        elif step_fn is not None:
            carry, out = self._run_batches(step_fn, feeds, plans, epoch, cbs, results,
                                           experiment, streaming, progress)
        elif streaming:
            def scan(c: Any, stores: dict, dplans: dict) -> tuple[Any, Any]:
                with counting_traces(self):
                    return fn(c, stores, dplans)

            carry, out = run_streamed_epoch(
                scan, carry, feeds, plans,
                on_chunk=None if progress is None else progress.advance_batches)
        else:
            stores, dplans = _stack_feeds(feeds, plans)
            with counting_traces(self):
                carry, out = fn(carry, stores, dplans)
            if progress is not None:
                progress.advance_batches(plans[0].n_batches)
        if while_running is not None:
            while_running(carry)  # host work that overlaps the dispatched scan
        # one device->host transfer per epoch: the per-batch losses
        if spans_processes(self.mesh):  # sharded over other processes' devices: gather
            out = dict(out, records=to_host(out["records"]))
        table = np.asarray(to_host(out["loss_table"]) if spans_processes(self.mesh)
                           else out["loss_table"])
        loss = table[:, 0]
        losses = {al.label: table[:, i + 1] for i, al in enumerate(self.losses)}
        nonfinite = np.flatnonzero(~np.isfinite(loss))
        bad = int(nonfinite[0]) if nonfinite.size else -1
        rec = EpochRecord(epoch, loss, losses, out["records"], bindings)
        rec.metric_stats = out["metric_stats"]  # type: ignore[attr-defined]
        if bad >= 0 and self.nan_policy is not NanPolicy.IGNORE:
            if self.nan_policy is NanPolicy.RAISE:
                raise FloatingPointError(
                    f"TrainPhase {self.label!r}: non-finite loss at epoch {epoch}, batch {bad} "
                    f"(losses: { {k: float(v[bad]) for k, v in losses.items()} }); the graph's "
                    "variables are left as they were before the phase (nan_policy='stop' ends the "
                    "phase instead)")
            if self.nan_policy is NanPolicy.STOP:
                # keep the state from the end of the last finite epoch; this epoch is dropped
                rec.nan_stop = (epoch, bad)  # type: ignore[attr-defined]
                self._carry = pre_epoch
                return rec
        self._carry = carry
        return rec

    def _run_batches(self, step_fn, feeds, plans, epoch, cbs, results, experiment,
                     streaming, progress) -> tuple[Any, Any]:
        """One epoch batch by batch (batch hooks: callbacks or checkpoints per batch)."""
        if streaming:
            segments: Any = stream_segments(feeds, plans)
        else:
            stores, dplans = _stack_feeds(feeds, plans)
            segments = [(stores, dplans, 0, plans[0].n_batches)]
        ctx = {"experiment": experiment, "phase": self, "epoch": epoch, "results": results}
        outs, carry = [], self._carry
        for stores, dplans, start, n_real in segments:
            for j in range(n_real):
                b = start + j
                for cb in cbs:
                    cb.on_batch_start(batch=b, **ctx)
                self._checkpoint("batch_start", experiment, epoch=epoch, batch=b)
                chunk = jax.tree.map(lambda a, j=j: a[j:j + 1], dplans)
                with counting_traces(self):
                    carry, o = step_fn(carry, stores, chunk)
                self._carry = carry
                outs.append(o)
                if progress is not None:
                    progress.advance_batches(1)
                for cb in cbs:
                    cb.on_batch_end(batch=b, **ctx)
                self._checkpoint("batch_end", experiment, epoch=epoch, batch=b)
        return carry, jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

    def _checkpoint(self, hook: str, experiment: Any, **placeholders: Any) -> None:
        ck = self.checkpointing
        if ck is None or (experiment is not None and not getattr(
                experiment, "checkpointing_enabled", True)):
            return
        directory = None
        if experiment is not None and getattr(experiment, "checkpoint_dir", None) is not None:
            directory = experiment.checkpoint_dir / self.label
        key = placeholders.get("epoch") if hook == "epoch_end" else None
        ck.maybe_save(hook, self, key=key, directory=directory, phase=self.label, **placeholders)

    def _feed_observer(self, experiment: Any, rec: EpochRecord, observer: Any = None, *,
                       results: Any = None, epoch: int | None = None) -> None:
        """Push the epoch's per-batch losses into an Observer, weighted by real samples,
        and every other metric logged for this epoch (``val_loss``, ``val_accuracy``,
        a MetricCallback's values) as one value, then flush them together."""
        obs = observer if observer is not None else getattr(experiment, "observer", None)
        if obs is None:
            return
        n = len(rec.loss)
        w = np.zeros(n)
        for b in rec.bindings.values():
            for m in b.mask.values():
                w = np.maximum(w, np.asarray(m).reshape(n, -1).sum(axis=1))
        obs.record_batches({"train_loss": rec.loss, **rec.losses}, weights=w)
        if results is not None and epoch is not None:
            for name in results.metrics.names:
                value = None if name == "train_loss" else results.metrics.epoch_value(name, epoch)
                if value is not None:
                    obs.record(name, value)
        tags = rec.records.get("tags") if isinstance(rec.records, Mapping) else None
        if tags:
            obs.record_batch_tags(tags, _tag_mask(rec, tags))
        obs.flush()

    def _write_back(self, graph: Any, optimizer: Any, carry: Any) -> None:
        variables = carry["variables"]
        if self.mesh is not None:
            variables = to_host(variables)
        if spans_processes(self.mesh):
            carry = dict(carry, opt_state=to_host(carry["opt_state"]))
        graph.set_variables(variables)
        if isinstance(optimizer, dict):
            for k, o in optimizer.items():
                o.state = carry["opt_state"].get(k)
        else:
            graph.set_opt_state(carry["opt_state"])
            optimizer.state = carry["opt_state"]

    def get_config(self) -> dict[str, Any]:
        cfg = self._base_config()
        if self.replicas > 1:
            cfg["replicas"] = self.replicas
        cfg.update(n_epochs=self.n_epochs, batch_schedule=self.batch_schedule.value,
                   result_recording=self.result_recording.value, nan_policy=self.nan_policy.value,
                   seed=self.seed, capture=list(self.capture), byte_budget=self.byte_budget,
                   shard_data=self.shard_data, compute_dtype=self.compute_dtype,
                   shard_params=None if self.shard_params is None else {
                       k: [list(a) if isinstance(a, tuple) else a for a in v]
                       for k, v in self.shard_params.items()},
                   sampler=None if self._sampler is None else serialize(self._sampler),
                   checkpointing=None if self.checkpointing is None else serialize(self.checkpointing))
        if self.metrics:
            cfg["metrics"] = [serialize(m) for m in self.metrics]
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> TrainPhase:
        from modjax.io.registry import deserialize
        common = dict(losses=[deserialize(c, **kw) for c in config["losses"]],
                      n_epochs=config["n_epochs"], active_nodes=config.get("active_nodes"),
                      batch_schedule=config["batch_schedule"],
                      result_recording=config["result_recording"],
                      nan_policy=config.get("nan_policy", "raise"), seed=config.get("seed", 0),
                      capture=config.get("capture", ()), byte_budget=config.get("byte_budget"),
                      shard_data=config.get("shard_data"), compute_dtype=config.get("compute_dtype"),
                      shard_params=_specs_from_config(config.get("shard_params")),
                      replicas=config.get("replicas", 1),
                      metrics=[deserialize(c) for c in config.get("metrics", [])],
                      checkpointing=None if config.get("checkpointing") is None else
                      deserialize(config["checkpointing"]))
        if config.get("split") is not None and not config["input_sources"]:
            phase = cls.from_split(config["label"], split=config["split"],
                                   sampler=deserialize(config["sampler"], **kw), **common)
            return cls._with_callbacks(phase, config, kw)
        phase = cls(config["label"], input_sources=[InputBinding.from_config(b, **kw)
                                                    for b in config["input_sources"]], **common)
        return cls._with_callbacks(phase, config, kw)


@jax.jit
def _start_key_fn(seed: Any, epochs_run: Any) -> Any:
    return jax.random.fold_in(jax.random.key(seed), epochs_run)


def _start_key(seed: int, epochs_run: int) -> Any:
    """``fold_in(key(seed), epochs_run)`` as one compiled call: done eagerly it is a few
    separate dispatches, a fixed cost of every execute. Seeds outside 32 bits, which
    ``jax.random.key`` splits into two words, take the eager path."""
    if -2**31 <= seed < 2**31 and 0 <= epochs_run < 2**31:
        return _start_key_fn(np.int32(seed), np.uint32(epochs_run))
    return jax.random.fold_in(jax.random.key(seed), epochs_run)


def _contiguous(feeds: Sequence[_Feed]) -> bool:
    """Whether an evaluation can slice its batches out of resident single-device stores."""
    return all(f.store.mesh is None and f.store.fits for f in feeds)


def _eval_segments(fn: Any, phase: Any, feeds: Sequence[_Feed], plans: Sequence[IndexPlan],
                   variables: Any, *, show_progress: bool, persist: bool, file: Any,
                   stacked: tuple[dict, dict] | None = None) -> tuple[dict, dict]:
    """Run an evaluation pass: one scan, or (with a progress bar) a few equal scans of
    ``seg`` chunks each, the last padded with masked chunks so one program serves all.
    ``stacked`` is ``_stack_feeds(feeds, plans)`` made earlier, if the caller kept it."""
    n = plans[0].n_batches
    if not show_progress or n == 1:
        stores, dplans = stacked or _stack_feeds(feeds, plans)
        with counting_traces(phase):
            return fn(variables, stores, dplans)
    from tqdm.auto import tqdm

    seg = -(-n // min(n, 20))
    outs, stats = [], []
    with tqdm(total=n, desc=phase.label, unit="batch", leave=persist, file=file) as bar:
        for start in range(0, n, seg):
            part = [p.batches(start, min(start + seg, n)).pad_batches_to(seg) for p in plans]
            stores, dplans = _stack_feeds(feeds, part)
            with counting_traces(phase):
                o, st = fn(variables, stores, dplans)
            jax.block_until_ready(o["loss"])  # the bar reports finished chunks
            outs.append(o)
            stats.append(st)
            bar.update(min(seg, n - start))
    cat = lambda *xs: jnp.concatenate(xs)[:n]  # noqa: E731 - drop the padding chunks
    return jax.tree.map(cat, *outs), jax.tree.map(cat, *stats)


def _data_token(feed: _Feed) -> tuple[Any, ...]:
    """What a feed's rows come from, compared by identity: the FeatureSet its reference
    resolves to now, that FeatureSet's Arrow table (replaced on every data or transform
    change) and the split's view (replaced when the split is redefined)."""
    b = feed.binding
    if feed.view is b.upstream:  # a view passed as-is
        return (b.upstream, feed.view.source.table)
    fs = feed.ref.resolve()
    return (fs, fs.table, fs.splits.get(b.split) if b.split is not None else None)


class _EvalMemo:
    """An EvalPhase's resolved inputs, reused by the next execute when they would come out
    the same: same graph object with an equal definition, bindings naming the same nodes,
    splits and upstreams, the same losses, metrics, active nodes, batch size and mesh, and
    every binding's FeatureSet, table and split view the same objects. The program itself
    is still looked up structurally; this only skips re-deriving the lookup's key."""

    def __init__(self, phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding],
                 feeds: list[_Feed], plans: list[IndexPlan], fn: Any,
                 stacked: tuple[dict, dict] | None) -> None:
        self.feeds, self.plans, self.fn, self.stacked = feeds, plans, fn, stacked
        self.equal = self._equal_part(phase, graph, bindings)
        self.same = self._same_part(phase, graph, bindings)
        self.data = [_data_token(f) for f in feeds]

    @staticmethod
    def _equal_part(phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> tuple:
        return (graph.definition, phase.batch_size, phase.active_nodes,
                tuple((b.node, b.split, b.stream) for b in bindings))

    @staticmethod
    def _same_part(phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> list:
        return [graph, phase.mesh, *phase.losses, *phase.metrics,
                *(b.upstream for b in bindings), *(b.sampler for b in bindings)]

    def matches(self, phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> bool:
        if not _all_same(self.same, self._same_part(phase, graph, bindings)):
            return False
        if self.equal != self._equal_part(phase, graph, bindings):
            return False
        return all(_all_same(t, _data_token(f)) for t, f in zip(self.data, self.feeds))


def _all_same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


@register("EvalPhase")
class EvalPhase(ExperimentPhase):
    """A jitted forward pass over a split in fixed-size chunks (no gradients).

    Args:
        label: phase name.
        input_sources: ``InputBinding.for_evaluation(...)`` per head node.
        losses: optional AppliedLosses to compute.
        active_nodes: nodes to run (plus their upstream).
        batch_size: rows per chunk (default: all rows at once).
        callbacks: phase callbacks (phase and epoch hooks run once).
        metrics: :class:`~modjax.train.metrics.AppliedMetric` s (``accuracy``, ``f1``,
            ``rmse``, ``r2``, ...) computed inside the jitted pass over the whole split;
            their values are in ``results.metrics`` under their labels.
    """

    kind = "eval"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss] | None = None,
                 active_nodes: Sequence[Any] | None = None, batch_size: int | None = None,
                 callbacks: Sequence[Callback] | None = None, mesh: Any = None,
                 metrics: Sequence[AppliedMetric] | None = None) -> None:
        super().__init__(label, input_sources=input_sources, losses=losses,
                         active_nodes=active_nodes, callbacks=callbacks)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"EvalPhase {label!r}: batch_size must be a positive int or None")
        self.metrics = list(metrics or [])
        for m in self.metrics:
            if not isinstance(m, AppliedMetric):
                raise TypeError(f"EvalPhase {label!r}: metrics must be AppliedMetric objects "
                                f"(e.g. AppliedMetric('accuracy', on='head')), got {m!r}")
        self.batch_size = batch_size
        self.mesh = mesh
        self._compiled: dict[Any, Any] = {}
        self.n_traces = 0
        self._graph: Any = None
        self._memo: _EvalMemo | None = None

    @classmethod
    def from_split(cls, label: str, *, split: str, **kwargs: Any) -> EvalPhase:
        """Evaluate every active head node on ``split``."""
        phase = cls(label, input_sources=[], **kwargs)
        phase._split = split
        return phase

    @property
    def graph(self) -> Any:
        return self._graph

    def _fn(self, graph: Any, feeds: Sequence[_Feed]) -> Any:
        record = self._record_nodes(graph)
        sig = ("eval_pass", graph.definition, tuple(spec_of(al) for al in self.losses),
               tuple(f.key for f in feeds), self.mesh, tuple(record),
               spec_of(self.active_nodes), tuple(spec_of(m) for m in self.metrics),
               tuple(f.store.shard_rows for f in feeds), _contiguous(feeds))
        return program(sig, lambda: self._make_pass(graph, feeds, record))

    def _make_pass(self, graph: Any, feeds: Sequence[_Feed], record: list[str]) -> Any:
        from modjax.data.device import slice_plan

        ev = make_eval_step(graph, self.losses, active_nodes=self.active_nodes, record=record,
                            metrics=self.metrics)
        # resident single-device data is read in order: batches are slices, not gathers
        gathers = {f.key: slice_plan if _contiguous(feeds) else f.store.gather_fn()
                   for f in feeds}  # row-sharded stores gather locally
        keys = [f.key for f in feeds]

        def run(variables, stores, plans):
            note_trace()

            def body(_, xs):
                m = ev(variables, {k: gathers[k](stores[k], xs[k]) for k in keys})
                return None, {"loss": m["loss"], "losses": m["losses"], "records": m["records"],
                              "metric_stats": m["metric_stats"]}

            if jax.tree.leaves(plans)[0].shape[0] == 1:  # one batch: no loop around it
                out = jax.tree.map(lambda a: a[None], body(None, jax.tree.map(
                    lambda a: a[0], plans))[1])
            else:
                out = jax.lax.scan(body, None, plans)[1]
            stats = out.pop("metric_stats")
            return out, stats

        return jax.jit(run)

    def execute(self, graph: Any, *, variables: Any = None, experiment: Any = None,
                show_progress: bool = False, persist_progress: bool = False,
                progress_file: Any = None) -> EvalResults:
        """Evaluate (with ``variables`` if given, else the graph's); nothing is mutated.

        Args:
            graph: the ModelGraph to evaluate.
            variables: variables to use instead of the graph's (an Evaluation callback
                passes the running training variables).
            experiment: the running Experiment, if any.
            show_progress: a tqdm bar over the chunks; the pass then runs as a few
                equal scans (one compiled program) so the bar moves as they finish.
            persist_progress: leave the bar on screen afterwards.
            progress_file: stream for the bar (default stderr).

        Returns:
            The EvalResults; losses and metric values are in ``results.metrics``.
        """
        if not graph.is_built:
            graph.build()
        if variables is None:
            from modjax.train.ensemble import ensemble_of, evaluate_ensemble
            ens = ensemble_of(graph)
            if ens is not None:  # the graph was trained as an ensemble: every replica + mean
                return evaluate_ensemble(self, graph, ens, experiment=experiment)
        self._graph = graph
        memo = self._resolved(graph)
        feeds, plans, fn = memo.feeds, memo.plans, memo.fn
        results = EvalResults(self.label, graph=graph,
                              loss_nodes={al.label: al.node for al in self.losses})
        cbs = self._sorted_callbacks()
        ctx = {"experiment": experiment, "phase": self}
        for cb in cbs:
            cb.on_phase_start(results=results, **ctx)
            cb.on_epoch_start(epoch=0, results=results, **ctx)
        v = graph.variables if variables is None else variables
        out, stats = _eval_segments(fn, self, feeds, plans, v, show_progress=show_progress,
                                    persist=persist_progress, file=progress_file,
                                    stacked=memo.stacked)
        if spans_processes(self.mesh):  # sharded over other processes' devices: gather
            out, stats = to_host(out), to_host(stats)
        results.add_epoch(_single_pass_record(out, feeds, plans))
        for al in self.losses:
            results.metrics.log(al.label, results.aggregated_losses(al.node)[al.label], epoch=0)
        if self.metrics:
            from modjax.train.metrics import finalize_all
            for label, value in finalize_all(self.metrics, stats).items():
                results.metrics.log(label, value, epoch=0)
        for cb in cbs:
            cb.on_epoch_end(epoch=0, results=results, **ctx)
            cb.on_phase_end(results=results, **ctx)
        return results

    def _resolved(self, graph: Any) -> _EvalMemo:
        """The feeds, plans, program and stacked device inputs of an execute on ``graph``,
        reused while nothing they were made from has changed (see :class:`_EvalMemo`)."""
        bindings = self._bindings(graph)
        memo = self._memo
        if memo is not None and memo.matches(self, graph, bindings):
            return memo
        owner = f"EvalPhase {self.label!r}"
        feeds = [_Feed(b, graph, owner=owner, mesh=self.mesh, tags=self._loss_tags())
                 for b in bindings]
        sizes = {f.view.n_samples for f in feeds}
        if len(sizes) != 1:
            raise ValueError(f"{owner}: bindings cover different numbers of rows {sorted(sizes)}; "
                             "evaluate them in separate EvalPhases")
        n = sizes.pop()
        if n == 0:
            raise ValueError(f"{owner}: the bound split has no rows")
        check_class_targets(graph, [*self.losses, *self.metrics], feeds, owner=owner)
        bs = self.batch_size or n
        plans = [IndexPlan.contiguous(n, bs) if _contiguous(feeds) else
                 IndexPlan.from_flat(np.arange(n), bs) for _ in feeds]
        stacked = None
        if all(f.store.fits and not f.store.shard_rows for f in feeds):
            _stack_feeds(feeds, plans)  # the second call hands back device copies of the plan
            stacked = _stack_feeds(feeds, plans)
        self._memo = _EvalMemo(self, graph, bindings, feeds, plans, self._fn(graph, feeds),
                               stacked)
        return self._memo

    def get_config(self) -> dict[str, Any]:
        cfg = self._base_config()
        cfg["batch_size"] = self.batch_size
        if self.metrics:
            cfg["metrics"] = [serialize(m) for m in self.metrics]
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> EvalPhase:
        from modjax.io.registry import deserialize
        losses = [deserialize(c, **kw) for c in config.get("losses", [])]
        metrics = [deserialize(c) for c in config.get("metrics", [])]
        if config.get("split") is not None and not config["input_sources"]:
            phase = cls.from_split(config["label"], split=config["split"], losses=losses,
                                   active_nodes=config.get("active_nodes"),
                                   batch_size=config.get("batch_size"), metrics=metrics)
            return cls._with_callbacks(phase, config, kw)
        phase = cls(config["label"], input_sources=[InputBinding.from_config(b, **kw)
                                                    for b in config["input_sources"]],
                    losses=losses, active_nodes=config.get("active_nodes"),
                    batch_size=config.get("batch_size"), metrics=metrics)
        return cls._with_callbacks(phase, config, kw)


@register("FitPhase")
class FitPhase(ExperimentPhase):
    """Closed-form fitting of ``Fittable`` nodes (``model.fit(params, state, x, y)``).

    Upstream nodes run forward (jitted) to produce a fitted node's inputs; targets are
    routed through the graph. Fitted nodes are frozen afterwards unless
    ``freeze_after_fit=False``. Losses, when given, are computed after fitting.
    """

    kind = "fit"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss] | None = None,
                 active_nodes: Sequence[Any] | None = None, freeze_after_fit: bool = True,
                 callbacks: Sequence[Callback] | None = None) -> None:
        super().__init__(label, input_sources=input_sources, losses=losses,
                         active_nodes=active_nodes, callbacks=callbacks)
        self.freeze_after_fit = bool(freeze_after_fit)
        self._graph: Any = None

    @classmethod
    def from_split(cls, label: str, *, split: str, **kwargs: Any) -> FitPhase:
        phase = cls(label, input_sources=[], **kwargs)
        phase._split = split
        return phase

    @property
    def graph(self) -> Any:
        return self._graph

    def _fittable(self, graph: Any) -> list[Any]:
        active = self._active_closure(graph)
        nodes = [n for n in graph.nodes.values()
                 if n.label in active and callable(getattr(getattr(n, "model", None), "fit", None))]
        if self.active_nodes is not None:
            nodes = [n for n in nodes if n.label in self.active_nodes]
        if not nodes:
            raise ValueError(f"FitPhase {self.label!r}: no active node has a Fittable model "
                             "(a model with fit(params, state, x, y))")
        return nodes

    def execute(self, graph: Any, *, experiment: Any = None) -> FitResults:
        """Fit the Fittable nodes on the bound data (host or jitted), then compute losses.

        Args:
            graph: the ModelGraph.
            experiment: the running Experiment, if any.

        Returns:
            The FitResults.
        """
        if not graph.is_built:
            graph.build()
        owner = f"FitPhase {self.label!r}"
        self._graph = graph
        feeds = [_Feed(b, graph, owner=owner, mesh=None, tags=()) for b in self._bindings(graph)]
        sizes = {f.view.n_samples for f in feeds}
        if len(sizes) != 1:
            raise ValueError(f"{owner}: all bindings must cover the same rows, got sizes {sorted(sizes)}")
        results = FitResults(self.label, graph=graph,
                             loss_nodes={al.label: al.node for al in self.losses})
        cbs = self._sorted_callbacks()
        ctx = {"experiment": experiment, "phase": self}
        for cb in cbs:
            cb.on_phase_start(results=results, **ctx)
        arrays = {f.key: f.store.arrays for f in feeds}
        inputs = {k: a["features"] for k, a in arrays.items()}
        targets = {k: a["targets"] for k, a in arrays.items()}
        variables = graph.variables
        params, state = dict(variables["params"]), dict(variables["state"])
        for node in self._fittable(graph):
            ups = graph.upstream_of(node.label)
            v = {"params": params, "state": state}
            if ups and ups[0] in graph.node_labels:
                x = jax.jit(lambda v, xs, u=ups[0]: graph.apply(v, xs, active_nodes=(u,))[0][u])(
                    v, inputs)
            else:
                x = inputs[node.label]
            y = graph.route_targets(targets)[node.label]
            if y is None:
                raise ValueError(f"{owner}: no targets reach node {node.label!r} to fit it on")
            # bridged estimators fit on the host (concrete arrays), built-ins jitted
            fit = node.model.fit if getattr(node.model, "fits_on_host", False) else jax.jit(
                node.model.fit)
            params[node.label], state[node.label] = fit(params[node.label], state[node.label], x, y)
        new_vars = {"params": params, "state": state}
        n = sizes.pop()
        plan = IndexPlan.from_flat(np.arange(n), n)
        ev = make_eval_step(graph, self.losses, active_nodes=self.active_nodes,
                            record=self._record_nodes(graph))
        batch = {k: {"features": inputs[k][None], "targets": targets[k][None],
                     "mask": jnp.ones((1, n), bool), "weights": jnp.ones((1, n))}
                 for k in inputs}
        m = jax.jit(lambda v, b: jax.lax.scan(lambda c, x: (c, ev(v, x)), None, b)[1])(
            new_vars, batch)
        results.add_epoch(_single_pass_record(m, feeds, [plan] * len(feeds)))
        graph.set_variables(new_vars)
        if self.freeze_after_fit:
            graph.freeze([n.label for n in self._fittable(graph)])
        for cb in cbs:
            cb.on_epoch_end(epoch=0, results=results, **ctx)
            cb.on_phase_end(results=results, **ctx)
        return results

    def get_config(self) -> dict[str, Any]:
        cfg = self._base_config()
        cfg["freeze_after_fit"] = self.freeze_after_fit
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> FitPhase:
        from modjax.io.registry import deserialize
        losses = [deserialize(c, **kw) for c in config.get("losses", [])]
        if config.get("split") is not None and not config["input_sources"]:
            phase = cls.from_split(config["label"], split=config["split"], losses=losses,
                                   active_nodes=config.get("active_nodes"),
                                   freeze_after_fit=config.get("freeze_after_fit", True))
            return cls._with_callbacks(phase, config, kw)
        phase = cls(config["label"], input_sources=[InputBinding.from_config(b, **kw)
                                                    for b in config["input_sources"]],
                    losses=losses, active_nodes=config.get("active_nodes"),
                    freeze_after_fit=config.get("freeze_after_fit", True))
        return cls._with_callbacks(phase, config, kw)
