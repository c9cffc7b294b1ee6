"""PhaseGroup (ordered, nestable phases) and Experiment (plan, history, preview)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from modjax.context import ExperimentContext, RegistrationPolicy
from modjax.io.registry import deserialize, register, serialize
from modjax.train.callbacks import ExperimentCallback
from modjax.train.eval_phase import EvalPhase
from modjax.train.fit_phase import FitPhase
from modjax.train.options import check_options, phase_options
from modjax.train.persistence import ExperimentPersistence
from modjax.train.phases import ExperimentPhase, callback_configs
from modjax.train.results import PhaseGroupResults, PhaseResults
from modjax.train.train_phase import TrainPhase

__all__ = ["PhaseGroup", "Experiment", "ExperimentRun"]


@register("PhaseGroup")
class PhaseGroup:
    """A named, ordered collection of phases and nested groups.

    Example:
        >>> g = PhaseGroup("workflow")
        >>> g.add_group(PhaseGroup("inner")).labels
        ['inner']
    """

    def __init__(self, label: str, phases: Sequence[ExperimentPhase | PhaseGroup] | None = None
                 ) -> None:
        if not isinstance(label, str) or not label:
            raise ValueError(f"a PhaseGroup label must be a non-empty string, got {label!r}")
        self.label = label
        self._items: list[ExperimentPhase | PhaseGroup] = []
        self.add_items(phases or [])

    # ----------------------------------------------------------------- adding
    def add_item(self, item: ExperimentPhase | PhaseGroup) -> PhaseGroup:
        """Append a phase or group (labels unique within this group)."""
        if not isinstance(item, (ExperimentPhase, PhaseGroup)):
            raise TypeError(f"PhaseGroup {self.label!r}: expected a phase or PhaseGroup, got "
                            f"{type(item).__name__}")
        if item.label in self.labels:
            raise ValueError(f"PhaseGroup {self.label!r} already has an item labelled {item.label!r}")
        self._items.append(item)
        return self

    def add_items(self, items: Iterable[ExperimentPhase | PhaseGroup]) -> PhaseGroup:
        for it in items:
            self.add_item(it)
        return self

    def add_phase(self, phase: ExperimentPhase) -> PhaseGroup:
        if not isinstance(phase, ExperimentPhase):
            raise TypeError(f"add_phase expects a phase, got {type(phase).__name__}")
        return self.add_item(phase)

    def add_group(self, group: PhaseGroup) -> PhaseGroup:
        if not isinstance(group, PhaseGroup):
            raise TypeError(f"add_group expects a PhaseGroup, got {type(group).__name__}")
        return self.add_item(group)

    def add_train_phase(self, label: str, **kwargs: Any) -> PhaseGroup:
        """Build a TrainPhase from keyword arguments and append it."""
        return self.add_item(TrainPhase(label, **kwargs))

    def add_eval_phase(self, label: str, **kwargs: Any) -> PhaseGroup:
        """Build an EvalPhase from keyword arguments and append it."""
        return self.add_item(EvalPhase(label, **kwargs))

    def add_fit_phase(self, label: str, **kwargs: Any) -> PhaseGroup:
        """Build a FitPhase from keyword arguments and append it."""
        return self.add_item(FitPhase(label, **kwargs))

    add_train = add_training = add_train_phase
    add_eval = add_evaluation = add_eval_phase
    add_fit = add_fit_phase

    # ----------------------------------------------------------------- removing
    def _index(self, key: int | str | Any, kind: type | None = None) -> int:
        items = self._items
        if isinstance(key, int):
            pool = [i for i, it in enumerate(items) if kind is None or isinstance(it, kind)]
            if not -len(pool) <= key < len(pool):
                raise IndexError(f"PhaseGroup {self.label!r} has {len(pool)} "
                                 f"{'items' if kind is None else kind.__name__ + 's'}; index {key}")
            return pool[key]
        for i, it in enumerate(items):
            if it is key or (isinstance(key, str) and it.label == key):
                if kind is not None and not isinstance(it, kind):
                    raise TypeError(f"{it.label!r} in group {self.label!r} is a "
                                    f"{type(it).__name__}, not a {kind.__name__}")
                return i
        raise KeyError(f"PhaseGroup {self.label!r} has no item {getattr(key, 'label', key)!r}; "
                       f"items: {self.labels}")

    def remove_item(self, item: int | str | Any) -> PhaseGroup:
        del self._items[self._index(item)]
        return self

    def remove_items(self, items: Iterable[int | str | Any]) -> PhaseGroup:
        idx = sorted({self._index(i) for i in items}, reverse=True)
        for i in idx:
            del self._items[i]
        return self

    def remove_phase(self, phase: int | str | ExperimentPhase) -> PhaseGroup:
        del self._items[self._index(phase, ExperimentPhase)]
        return self

    def remove_group(self, group: int | str | PhaseGroup) -> PhaseGroup:
        del self._items[self._index(group, PhaseGroup)]
        return self

    def clear(self) -> PhaseGroup:
        self._items.clear()
        return self

    # ----------------------------------------------------------------- access
    @property
    def labels(self) -> list[str]:
        return [it.label for it in self._items]

    @property
    def all(self) -> list[ExperimentPhase | PhaseGroup]:
        """Top-level phases and groups in execution order."""
        return list(self._items)

    @property
    def phases(self) -> dict[str, ExperimentPhase]:
        return {it.label: it for it in self._items if isinstance(it, ExperimentPhase)}

    @property
    def phase_groups(self) -> dict[str, PhaseGroup]:
        return {it.label: it for it in self._items if isinstance(it, PhaseGroup)}

    def items(self) -> Iterator[tuple[str, ExperimentPhase | PhaseGroup]]:
        return iter([(it.label, it) for it in self._items])

    def flatten(self) -> list[ExperimentPhase]:
        """Every phase of the tree, in execution order."""
        out: list[ExperimentPhase] = []
        for it in self._items:
            out.extend(it.flatten() if isinstance(it, PhaseGroup) else [it])
        return out

    def get_phase(self, key: int | str) -> ExperimentPhase:
        return self._items[self._index(key, ExperimentPhase)]  # type: ignore[return-value]

    def get_train_phase(self, key: int | str) -> TrainPhase:
        return self._items[self._index(key, TrainPhase)]  # type: ignore[return-value]

    def get_eval_phase(self, key: int | str) -> EvalPhase:
        return self._items[self._index(key, EvalPhase)]  # type: ignore[return-value]

    def get_fit_phase(self, key: int | str) -> FitPhase:
        return self._items[self._index(key, FitPhase)]  # type: ignore[return-value]

    def get_group(self, key: int | str) -> PhaseGroup:
        return self._items[self._index(key, PhaseGroup)]  # type: ignore[return-value]

    def __getitem__(self, key: int | str) -> ExperimentPhase | PhaseGroup:
        return self._items[self._index(key)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ExperimentPhase | PhaseGroup]:
        return iter(list(self._items))

    def get_config(self) -> dict[str, Any]:
        return {"label": self.label, "phases": [serialize(it) for it in self._items]}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> PhaseGroup:
        return cls(config["label"], [deserialize(c, **kw) for c in config.get("phases", [])])

    def __repr__(self) -> str:
        return f"PhaseGroup({self.label!r}, {self.labels})"


@dataclass
class ExperimentRun:
    """One executed phase or group: label, status, times and results."""

    label: str
    status: str = "running"
    started_at: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    ended_at: _dt.datetime | None = None
    results: Any = None
    error: str | None = None


@register("Experiment")
class Experiment(ExperimentPersistence):
    """Owns the execution plan, history and experiment-level callbacks/checkpointing.

    Args:
        label: experiment name.
        registration_policy: policy for nodes created afterwards.
        ctx: ExperimentContext to use (default: a new one, activated).
        checkpointing: a disk ``Checkpointing`` at phase/group hooks.
        callbacks: ``ExperimentCallback`` s.
        mesh: a ``jax.sharding.Mesh`` applied to phases that have none (data parallel).
        observer: a ``modjax.observe.Observer`` fed with per-epoch training losses.
        byte_budget: device bytes allowed per binding's data for TrainPhases that set
            none; larger training data is streamed in fixed-shape chunks.
    """

    def __init__(self, label: str, registration_policy: RegistrationPolicy | str | None = None,
                 ctx: ExperimentContext | None = None, checkpointing: Any = None,
                 callbacks: Sequence[ExperimentCallback] | None = None, *, mesh: Any = None,
                 observer: Any = None, byte_budget: int | None = None) -> None:
        self.label = label
        self.byte_budget = byte_budget
        if ctx is None:
            ctx = ExperimentContext(experiment=self, registration_policy=registration_policy)
            ctx.make_active()
        else:
            ctx.set_experiment(self)
            if registration_policy is not None:
                ctx.set_registration_policy(registration_policy)
        self._ctx = ctx
        self._plan = PhaseGroup(label)
        self._history: list[ExperimentRun] = []
        self._callbacks: list[ExperimentCallback] = list(callbacks or [])
        self.checkpointing = None
        self.set_checkpointing(checkpointing)
        self.mesh = mesh
        self.observer = observer

    @classmethod
    def from_active_context(cls, label: str, registration_policy: Any = None,
                            checkpointing: Any = None, callbacks: Any = None, **kw: Any
                            ) -> Experiment:
        """An Experiment over the active context (its registered nodes are kept)."""
        return cls(label, registration_policy, ctx=ExperimentContext.get_active(),
                   checkpointing=checkpointing, callbacks=callbacks, **kw)

    # ----------------------------------------------------------------- properties
    @property
    def ctx(self) -> ExperimentContext:
        return self._ctx

    @property
    def model_graph(self) -> Any:
        return self._ctx.model_graph

    @property
    def execution_plan(self) -> PhaseGroup:
        return self._plan

    @property
    def history(self) -> list[ExperimentRun]:
        return list(self._history)

    @property
    def last_run(self) -> ExperimentRun | None:
        return self._history[-1] if self._history else None

    @property
    def exp_callbacks(self) -> list[ExperimentCallback]:
        return sorted(self._callbacks, key=lambda c: c.execution_order)

    def add_callback(self, callback: ExperimentCallback) -> None:
        if not isinstance(callback, ExperimentCallback):
            raise TypeError(f"Experiment {self.label!r}: expected an ExperimentCallback, got "
                            f"{type(callback).__name__}")
        self._callbacks.append(callback)

    def set_checkpointing(self, checkpointing: Any) -> None:
        """Attach (validated: disk mode, experiment hooks) or remove a Checkpointing."""
        if checkpointing is not None:
            checkpointing.configure_for("experiment")
        self.checkpointing = checkpointing

    def predict(self, data: Any, *, node: Any = None, batch_size: int = 1024,
                unscale: bool = True) -> Any:
        """Predictions of the experiment's graph for new raw data (scaled like training,
        run jitted in chunks, returned in the targets' units); see ``ModelGraph.predict``."""
        return self._graph().predict(data, node=node, batch_size=batch_size, unscale=unscale)

    def _graph(self) -> Any:
        g = self.model_graph
        if g is None:
            raise ValueError(f"Experiment {self.label!r} has no ModelGraph in its context; build "
                             "a ModelGraph(...) before running phases")
        return g

    def _checkpoint(self, hook: str, label: str) -> None:
        ck = self.checkpointing
        if ck is None or not self.checkpointing_enabled:
            return
        ck.maybe_save(hook, self, directory=self.checkpoint_dir, label=label)

    # ----------------------------------------------------------------- running
    def _execute_phase(self, phase: ExperimentPhase, **kwargs: Any) -> PhaseResults:
        graph = self._graph()
        if isinstance(phase, TrainPhase) and phase.mesh is None and self.mesh is not None:
            phase.mesh = self.mesh
        for cb in self.exp_callbacks:
            cb.on_phase_start(experiment=self, phase=phase)
        self._checkpoint("phase_start", phase.label)
        if isinstance(phase, TrainPhase):
            res = phase.execute(graph, experiment=self, **phase_options("train", kwargs))
        elif isinstance(phase, EvalPhase):
            res = phase.execute(graph, experiment=self, **phase_options("eval", kwargs))
        elif isinstance(phase, FitPhase):
            res = phase.execute(graph, experiment=self)
        else:
            raise TypeError(f"cannot run {type(phase).__name__}")
        self._checkpoint("phase_end", phase.label)
        for cb in self.exp_callbacks:
            cb.on_phase_end(experiment=self, phase=phase, results=res)
        return res

    def _execute_group(self, group: PhaseGroup, **kwargs: Any) -> PhaseGroupResults:
        out = PhaseGroupResults(group.label)
        for cb in self.exp_callbacks:
            cb.on_group_start(experiment=self, group=group)
        self._checkpoint("group_start", group.label)
        for item in group:
            if isinstance(item, PhaseGroup):
                out.add_result(self._execute_group(item, **kwargs))
            else:
                out.add_result(self._execute_phase(item, **kwargs))
        self._checkpoint("group_end", group.label)
        for cb in self.exp_callbacks:
            cb.on_group_end(experiment=self, group=group, results=out)
        return out

    def _recorded(self, label: str, fn: Any) -> Any:
        run = ExperimentRun(label)
        self._history.append(run)
        try:
            run.results = fn()
            run.status = "completed"
            return run.results
        except BaseException as e:
            run.status = "failed"
            run.error = f"{type(e).__name__}: {e}"
            raise
        finally:
            run.ended_at = _dt.datetime.now(_dt.UTC)

    def run_phase(self, phase: ExperimentPhase, **kwargs: Any) -> PhaseResults:
        """Run one phase (registered or not), record it in :attr:`history`.

        Display options (an unknown name is a ``TypeError`` naming the closest ones):
        ``show_training_progress`` (default True), ``show_sampler_progress``,
        ``show_eval_progress``, ``persist_progress`` (default False: bars are removed
        when done; True keeps each bar's final line), ``val_loss_metric``,
        ``progress_file``.
        """
        check_options("Experiment.run_phase", kwargs)
        return self._recorded(phase.label, lambda: self._execute_phase(phase, **kwargs))

    def run_group(self, group: PhaseGroup, **kwargs: Any) -> PhaseGroupResults:
        """Run a group's phases in order, record it in :attr:`history` (options as
        :meth:`run_phase`)."""
        check_options("Experiment.run_group", kwargs)
        return self._recorded(group.label, lambda: self._execute_group(group, **kwargs))

    def run(self, **kwargs: Any) -> PhaseGroupResults:
        """Run the whole :attr:`execution_plan` (display options as :meth:`run_phase`)."""
        check_options("Experiment.run", kwargs)
        return self.run_group(self._plan, **kwargs)

    # ----------------------------------------------------------------- preview
    def _preview(self, fn: Any, item: ExperimentPhase | PhaseGroup) -> Any:
        snap = self.get_state()
        frozen = set(self._graph().frozen_paths)
        # phases outside the plan too: their counters and sampler RNG must not advance
        phases = item.flatten() if isinstance(item, PhaseGroup) else [item]
        phase_states = [(p, p.get_state(), p.mesh) for p in phases if isinstance(p, TrainPhase)]
        obs = self.observer
        obs_state = obs.get_state() if obs is not None else None
        try:
            return fn()
        finally:
            self.set_state(snap)
            for p, st, mesh in phase_states:
                p.set_state(st)
                p.mesh = mesh
            if obs is not None:
                obs.set_state(obs_state)
            g = self._graph()
            g.unfreeze()
            if frozen:
                g.freeze(sorted(frozen))

    def preview_phase(self, phase: ExperimentPhase, **kwargs: Any) -> PhaseResults:
        """Run a phase and return its results, then restore everything it changed.

        Variables, optimizer states, frozen paths, phase counters, sampler RNG states and
        the observer are put back and nothing is added to :attr:`history`, so a later
        :meth:`run_phase` computes exactly what the preview showed.

        Example:
            >>> from modjax.context import ExperimentContext
            >>> with ExperimentContext().activate() as ctx:
            ...     exp = Experiment("preview-doc", ctx=ctx)
            ...     exp.history   # previews never add runs
            []
        """
        check_options("Experiment.preview_phase", kwargs)
        return self._preview(lambda: self._execute_phase(phase, **kwargs), phase)

    def preview_group(self, group: PhaseGroup, **kwargs: Any) -> PhaseGroupResults:
        """Run a group, then restore everything as :meth:`preview_phase` does."""
        check_options("Experiment.preview_group", kwargs)
        return self._preview(lambda: self._execute_group(group, **kwargs), group)

    def preview_run(self, **kwargs: Any) -> PhaseGroupResults:
        """:meth:`run` the whole execution plan, then restore everything as
        :meth:`preview_phase` does (nothing is added to :attr:`history`)."""
        check_options("Experiment.preview_run", kwargs)
        return self._preview(lambda: self._execute_group(self._plan, **kwargs), self._plan)

    # ----------------------------------------------------------------- state
    def _all_optimizers(self) -> dict[str, Any]:
        g = self._graph()
        out = {}
        if g.optimizer is not None:
            out["__graph__"] = g.optimizer
        for n in g.nodes.values():
            o = getattr(n, "optimizer", None)
            if o is not None:
                out[n.label] = o
        return out

    def get_state(self) -> dict[str, Any]:
        """Graph variables and optimizer state, node optimizers, phase counters, sampler RNG."""
        g = self._graph()
        state: dict[str, Any] = {"graph": g.get_state() if g.is_built else {},
                                 "optimizers": {k: {"opt_state": o.state}
                                                for k, o in self._all_optimizers().items()
                                                if o.state is not None},
                                 "phases": {}}
        for p in self._plan.flatten():
            if isinstance(p, TrainPhase):
                state["phases"][p.label] = p.get_state()
        state["n_runs"] = np.int64(len(self._history))
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output (history is trimmed to its length)."""
        g = self._graph()
        if state.get("graph"):
            g.set_state(state["graph"])
            if state["graph"].get("opt_state") is None:
                g.set_opt_state(None)
        opts = self._all_optimizers()
        for k, st in state.get("optimizers", {}).items():
            if k in opts:
                opts[k].state = st["opt_state"]
        for p in self._plan.flatten():
            if isinstance(p, TrainPhase) and p.label in state.get("phases", {}):
                p.set_state(state["phases"][p.label])
        if "n_runs" in state:
            del self._history[int(state["n_runs"]):]

    def get_config(self) -> dict[str, Any]:
        g = self.model_graph
        return {"label": self.label,
                "graph": None if g is None else serialize(g),
                "execution_plan": self._plan.get_config(),
                "checkpointing": None if self.checkpointing is None else serialize(self.checkpointing),
                "callbacks": callback_configs(self.exp_callbacks, f"Experiment {self.label!r}")}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> Experiment:
        exp = cls.from_active_context(config["label"])
        if config.get("graph") is not None and exp.model_graph is None:
            deserialize(config["graph"], **kw)
        plan = PhaseGroup.from_config(config["execution_plan"], **kw)
        exp._plan = plan
        if config.get("checkpointing"):
            exp.set_checkpointing(deserialize(config["checkpointing"]))
        for c in config.get("callbacks", []):
            exp.add_callback(deserialize(c, **kw))
        return exp

    def __repr__(self) -> str:
        return f"Experiment({self.label!r}, plan={self._plan.labels}, runs={len(self._history)})"


def _tree_equal(a: Any, b: Any) -> bool:  # used by tests/diagnostics
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                      for x, y in zip(la, lb))
