"""Callbacks run on the host between jitted scans (phase, epoch and batch boundaries).

Epoch hooks run after each epoch's scan; overriding a batch hook makes the phase cut
its scan into one-batch chunks (still a single compilation), so prefer epoch hooks.
Callbacks run in ascending ``execution_order`` (a metric producer before the
``EarlyStopping`` that reads it).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal

from modjax.io.registry import deserialize, register, serialize
from modjax.logger import get_logger
from modjax.protocols import CheckpointOwner
from modjax.train.losses import AppliedLoss

_log = get_logger("train")

__all__ = ["Callback", "ExperimentCallback", "EarlyStopping", "Evaluation", "EvaluationMetric",
           "EvalLossMetric", "EvalMetric", "MetricCallback", "ExecutionContext"]

_HOOKS = ("on_phase_start", "on_epoch_start", "on_epoch_end", "on_batch_start", "on_batch_end",
          "on_phase_end")


@dataclasses.dataclass(frozen=True)
class ExecutionContext:
    """Where a hook fires, for callbacks written against ModularML's ``exec_ctx``.

    Attributes:
        phase_label: label of the running phase.
        epoch_idx: current epoch (None at phase edges).
        batch_idx: current batch (None outside batch hooks).
    """

    phase_label: str | None = None
    epoch_idx: int | None = None
    batch_idx: int | None = None


def _adapt_hook(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``fn`` with the keywords it declares, building ``exec_ctx`` if it asks for it.

    Hooks written for modjax take ``**kw`` and get everything; hooks written for
    ModularML (``on_epoch_end(self, *, experiment, phase, exec_ctx, results=None)``) get
    an :class:`ExecutionContext` and none of the keywords they do not declare.
    """
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_all and "exec_ctx" not in params:
        return fn
    names = set(params)

    @functools.wraps(fn)
    def hook(self: Any, **kw: Any) -> Any:
        if "exec_ctx" in names:
            phase = kw.get("phase")
            kw["exec_ctx"] = ExecutionContext(getattr(phase, "label", None), kw.get("epoch"),
                                              kw.get("batch"))
        if not takes_all:
            kw = {k: v for k, v in kw.items() if k in names}
        return fn(self, **kw)

    hook._modjax_adapted = True  # type: ignore[attr-defined]
    return hook


class Callback:
    """Base class: override any of the hooks; all receive keyword arguments.

    Hooks: ``on_phase_start(experiment, phase, results)``,
    ``on_epoch_start(experiment, phase, epoch, results)``,
    ``on_epoch_end(experiment, phase, epoch, results)``,
    ``on_batch_start/on_batch_end(experiment, phase, epoch, batch, results)``,
    ``on_phase_end(experiment, phase, results)``. A hook that declares ``exec_ctx``
    (ModularML's spelling) gets an :class:`ExecutionContext` with ``epoch_idx`` /
    ``batch_idx``; a hook without ``**kw`` gets only the keywords it names.

    Example:
        >>> class Log(Callback):
        ...     def on_epoch_end(self, *, experiment, phase, exec_ctx, results=None):
        ...         print("epoch", exec_ctx.epoch_idx)
        >>> Log().on_epoch_end(experiment=None, phase=None, epoch=2, results=None)
        epoch 2
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _HOOKS:
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_modjax_adapted", False):
                setattr(cls, name, _adapt_hook(fn))

    def __init__(self, *, label: str | None = None, execution_order: int = 0) -> None:
        self.label = label or type(self).__name__
        self.execution_order = int(execution_order)

    def on_phase_start(self, **kw: Any) -> None: ...
    def on_epoch_start(self, **kw: Any) -> None: ...
    def on_epoch_end(self, **kw: Any) -> None: ...
    def on_batch_start(self, **kw: Any) -> None: ...
    def on_batch_end(self, **kw: Any) -> None: ...
    def on_phase_end(self, **kw: Any) -> None: ...

    @property
    def needs_training_state(self) -> bool:
        """Whether the callback may read or change the running training state (variables,
        optimizer state, samplers) between epochs. True unless a callback knows better:
        a phase whose callbacks all read only logged metrics may run several epochs per
        dispatch and hand them to the callbacks one by one afterwards."""
        return True

    @property
    def uses_batch_hooks(self) -> bool:
        """True when a subclass overrides a batch hook (the phase then chunks its scan)."""
        cls = type(self)
        return (cls.on_batch_start is not Callback.on_batch_start
                or cls.on_batch_end is not Callback.on_batch_end)

    def get_config(self) -> dict[str, Any]:
        return {"label": self.label, "execution_order": self.execution_order}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> Callback:
        """Rebuild a (registered) callback whose config is its constructor's kwargs."""
        return cls(**config)


class ExperimentCallback:
    """Experiment-level hooks at phase and group boundaries."""

    def __init__(self, *, label: str | None = None, execution_order: int = 0) -> None:
        self.label = label or type(self).__name__
        self.execution_order = int(execution_order)

    def get_config(self) -> dict[str, Any]:
        return {"label": self.label, "execution_order": self.execution_order}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> ExperimentCallback:
        """Rebuild a (registered) callback whose config is its constructor's kwargs."""
        return cls(**config)

    def on_phase_start(self, *, experiment: Any, phase: Any) -> None: ...
    def on_phase_end(self, *, experiment: Any, phase: Any, results: Any) -> None: ...
    def on_group_start(self, *, experiment: Any, group: Any) -> None: ...
    def on_group_end(self, *, experiment: Any, group: Any, results: Any) -> None: ...


@register("EarlyStopping")
class EarlyStopping(Callback):
    """Stop training when a monitored metric stops improving.

    Args:
        monitor: metric name in the phase's MetricStore (``"val_loss"``, ``"train_loss"``).
        mode: ``"min"`` or ``"max"``.
        patience: epochs without improvement before stopping.
        min_delta: minimum change that counts as an improvement.
        restore_best: at phase end, restore the variables (and optimizer state) of the best
            epoch: from the phase's memory Checkpointing when it has that epoch, else from
            snapshots this callback keeps (device arrays are immutable: no copy).
        reducer: how several values of the metric in one epoch are combined.
        label, execution_order: see :class:`Callback` (runs after metric producers).

    Example:
        >>> es = EarlyStopping(monitor="train_loss", patience=2)
        >>> es.get_config()["patience"]
        2
    """

    def __init__(self, *, monitor: str = "val_loss", mode: Literal["min", "max"] = "min",
                 patience: int = 5, min_delta: float = 0.0, restore_best: bool = False,
                 reducer: str = "last", label: str | None = None, execution_order: int = 1) -> None:
        super().__init__(label=label or "EarlyStopping", execution_order=execution_order)
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping patience must be >= 0, got {patience}")
        self.monitor, self.mode, self.patience = monitor, mode, int(patience)
        self.min_delta, self.restore_best, self.reducer = float(min_delta), bool(restore_best), reducer
        self._reset()

    def _reset(self) -> None:
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._snapshot: Any = None

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    @property
    def needs_training_state(self) -> bool:
        """Only to keep the best epoch's snapshot (``restore_best``); a subclass may do
        more, so it keeps the default."""
        return self.restore_best or type(self) is not EarlyStopping

    def on_phase_start(self, **kw: Any) -> None:
        self._reset()

    def on_epoch_end(self, *, phase: Any, epoch: int, results: Any, **kw: Any) -> None:
        value = results.metrics.epoch_value(self.monitor, epoch, reducer=self.reducer)
        if value is None:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which phase {phase.label!r} "
                           f"did not log in epoch {epoch}; logged metrics: {results.metrics.names} "
                           "(add an Evaluation callback with EvalLossMetric for 'val_loss')")
        if self._better(value):
            self.best_value, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:
                self._snapshot = phase.snapshot()
        else:
            self._wait += 1
            if self._wait > self.patience:
                self.stopped_epoch = epoch
                results.stopped_early = True
                phase.request_stop()
                _log.info("%s: stopped phase %r after epoch %d: %s did not improve by more than "
                          "%g for %d epoch(s) (best %.6g at epoch %d)", self.label, phase.label,
                          epoch, self.monitor, self.min_delta, self._wait, self.best_value,
                          self.best_epoch)

    def on_phase_end(self, *, phase: Any, results: Any, **kw: Any) -> None:
        if self.restore_best and self.best_epoch is not None:
            ck = phase.checkpointing if isinstance(phase, CheckpointOwner) else None
            snap = None
            if ck is not None:
                # the phase's memory snapshots or disk checkpoints of the best epoch
                for key in (self.best_epoch, f"epoch{self.best_epoch}"):
                    snap = ck.snapshot_for(key, phase.snapshot()) if ck.has_key(key) else None
                    if snap is not None:
                        break
            phase.restore_snapshot(snap if snap is not None else self._snapshot)
            _log.info("%s: restored the variables of epoch %d (%s %.6g) in phase %r from %s",
                      self.label, self.best_epoch, self.monitor, self.best_value, phase.label,
                      "its Checkpointing" if snap is not None else "a snapshot in memory")
            if hasattr(results, "best_epoch"):
                results.best_epoch = self.best_epoch
        results.callbacks.append({"callback": self.label, "best_epoch": self.best_epoch,
                                  "best_value": self.best_value, "stopped_epoch": self.stopped_epoch})

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "patience": self.patience,
                "min_delta": self.min_delta, "restore_best": self.restore_best,
                "reducer": self.reducer, "label": self.label, "execution_order": self.execution_order}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> EarlyStopping:
        return cls(**config)


class EvaluationMetric:
    """Turns an Evaluation's EvalResults into a named scalar (override ``extract``)."""

    name = "metric"

    def extract(self, eval_results: Any) -> float | None:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} must implement extract(eval_results)")


@register("EvalLossMetric")
class EvalLossMetric(EvaluationMetric):
    """Log an AppliedLoss of the evaluation as a metric (default name ``val_loss``).

    Args:
        loss: the AppliedLoss to read (added to the EvalPhase if it lacks it).
        reducer: ``"mean"`` or ``"sum"`` over the evaluation batches.
        name: metric name.
    """

    def __init__(self, *, loss: AppliedLoss, reducer: str = "mean", name: str = "val_loss") -> None:
        if not isinstance(loss, AppliedLoss):
            raise TypeError(f"EvalLossMetric needs an AppliedLoss, got {type(loss).__name__}")
        self.loss, self.reducer, self.name = loss, reducer, name

    def extract(self, eval_results: Any) -> float:
        return eval_results.aggregated_losses(self.loss.node, reducer=self.reducer)[self.loss.label]

    def get_config(self) -> dict[str, Any]:
        return {"loss": serialize(self.loss), "reducer": self.reducer, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> EvalLossMetric:
        return cls(loss=deserialize(config["loss"], **kw), reducer=config.get("reducer", "mean"),
                   name=config.get("name", "val_loss"))


@register("EvalMetric")
class EvalMetric(EvaluationMetric):
    """Log a built-in metric of the evaluation (default name ``val_<metric>``).

    Args:
        metric: an :class:`~modjax.train.metrics.AppliedMetric` (added to the
            EvalPhase if it lacks it), e.g. ``AppliedMetric("accuracy", on="clf")``.
        name: metric name in the training phase's MetricStore and the observer.

    Example:
        >>> from modjax.train.metrics import AppliedMetric
        >>> EvalMetric(metric=AppliedMetric("f1", on="clf", average="macro")).name
        'val_f1'
    """

    def __init__(self, *, metric: Any, name: str | None = None) -> None:
        from modjax.train.metrics import AppliedMetric
        if not isinstance(metric, AppliedMetric):
            raise TypeError(f"EvalMetric needs an AppliedMetric, got {type(metric).__name__}")
        self.metric = metric
        self.name = name or f"val_{metric.name}"

    def extract(self, eval_results: Any) -> float | None:
        m = eval_results.metrics
        return m.last(self.metric.label) if self.metric.label in m else None

    def get_config(self) -> dict[str, Any]:
        return {"metric": serialize(self.metric), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> EvalMetric:
        return cls(metric=deserialize(config["metric"]), name=config.get("name"))


@register("Evaluation")
class Evaluation(Callback):
    """Run an EvalPhase every ``every_n`` epochs with the training variables; log metrics.

    Each evaluation's EvalResults is kept in ``history`` and as an artifact of the
    training results (``results.artifacts().where(name=<label>)``), and its aggregated
    losses are reported in ``results.callbacks()``.

    Args:
        eval_phase: the EvalPhase to run (its losses gain the metrics' losses).
        metrics: EvaluationMetric objects (e.g. ``EvalLossMetric``) logged into the
            training phase's MetricStore.
        every_n: evaluate every n-th epoch (and always after the last one).
        every_n_epochs: ModularML's name for ``every_n`` (give one of the two).
        run_on_start: also evaluate the initial variables when the phase starts, before
            any training; its metrics are logged at ``epoch=-1`` (they come first in
            ``results.metrics.series(...)``).
        label, execution_order: see :class:`Callback` (default 0: before EarlyStopping).
    """

    def __init__(self, *, eval_phase: Any, metrics: list[EvaluationMetric] | None = None,
                 every_n: int = 1, every_n_epochs: int | None = None, run_on_start: bool = False,
                 label: str | None = None, execution_order: int = 0) -> None:
        if every_n_epochs is not None:
            if every_n != 1 and every_n != every_n_epochs:
                raise ValueError(f"Evaluation: every_n={every_n} and every_n_epochs="
                                 f"{every_n_epochs} disagree; give one of them")
            every_n = every_n_epochs
        if int(every_n) < 1:
            raise ValueError(f"Evaluation: every_n_epochs must be >= 1, got {every_n}")
        super().__init__(label=label or f"Evaluation[{eval_phase.label}]",
                         execution_order=execution_order)
        self.eval_phase = eval_phase
        self.metrics = list(metrics or [])
        self.every_n = int(every_n)
        self.run_on_start = bool(run_on_start)
        for m in self.metrics:
            loss = getattr(m, "loss", None)
            if loss is not None and all(al.label != loss.label for al in eval_phase.losses):
                eval_phase.losses.append(loss)
            am = getattr(m, "metric", None)
            if am is not None and all(x.label != am.label for x in eval_phase.metrics):
                eval_phase.metrics.append(am)
        self.history: list[Any] = []

    @classmethod
    def from_split(cls, *, label: str, split: str, losses: list[AppliedLoss] | None = None,
                   active_nodes: Any = None, batch_size: int | None = None,
                   every_n_epochs: int = 1, metrics: list[EvaluationMetric] | None = None,
                   run_on_start: bool = False, execution_order: int = 0) -> Evaluation:
        """An Evaluation of ``split`` (an ``EvalPhase.from_split`` named ``label``).

        Example:
            >>> ev = Evaluation.from_split(label="val", split="val", every_n_epochs=2)
            >>> ev.label, ev.every_n, ev.eval_phase.label
            ('val', 2, 'val')
        """
        from modjax.train.eval_phase import EvalPhase

        kw: dict[str, Any] = {"losses": list(losses or [])}
        if active_nodes is not None:
            kw["active_nodes"] = active_nodes
        if batch_size is not None:
            kw["batch_size"] = batch_size
        return cls(eval_phase=EvalPhase.from_split(label, split=split, **kw), metrics=metrics,
                   every_n_epochs=every_n_epochs, run_on_start=run_on_start, label=label,
                   execution_order=execution_order)

    def on_phase_start(self, *, experiment: Any = None, phase: Any = None, results: Any = None,
                       **kw: Any) -> None:
        self.history = []
        if self.run_on_start and results is not None and hasattr(phase, "current_variables"):
            self._evaluate(experiment, phase, results, epoch=-1, edge="phase_start")

    def on_epoch_end(self, *, experiment: Any, phase: Any, epoch: int, results: Any, **kw: Any) -> None:
        last = epoch + 1 >= phase.n_epochs
        if (epoch + 1) % self.every_n and not last:
            return
        self._evaluate(experiment, phase, results, epoch=epoch, edge="epoch_end")

    def _evaluate(self, experiment: Any, phase: Any, results: Any, *, epoch: int,
                  edge: str) -> None:
        ev = self.eval_phase.execute(phase.graph, variables=phase.current_variables(),
                                     experiment=experiment, show_progress=False)
        self.history.append((epoch, ev))
        for m in self.metrics:
            value = m.extract(ev)
            if value is not None:
                results.metrics.log(m.name, value, epoch=epoch)
        losses = {}
        for node in sorted(set(ev.loss_nodes.values())):
            losses.update(ev.aggregated_losses(node))
        results.callbacks.append({"callback": self.label, "kind": "Evaluation", "epoch": epoch,
                                  "edge": edge, "losses": losses})
        results.log_artifact(self.label, ev, epoch=epoch, source=self.label)

    def get_config(self) -> dict[str, Any]:
        return {"eval_phase": serialize(self.eval_phase), "every_n": self.every_n,
                "run_on_start": self.run_on_start,
                "metrics": [serialize(m) for m in self.metrics], "label": self.label,
                "execution_order": self.execution_order}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> Evaluation:
        return cls(eval_phase=deserialize(config["eval_phase"], **kw),
                   metrics=[deserialize(m, **kw) for m in config.get("metrics", [])],
                   every_n=config.get("every_n", 1),
                   run_on_start=config.get("run_on_start", False), label=config.get("label"),
                   execution_order=config.get("execution_order", 0))


class MetricCallback(Callback):
    """Log a user metric ``fn(phase=..., epoch=..., results=..., variables=...) -> float``.

    Example:
        >>> cb = MetricCallback("double_loss", lambda results, epoch, **kw: 2.0)
        >>> cb.name
        'double_loss'
    """

    def __init__(self, name: str, fn: Callable[..., float], *, every_n: int = 1,
                 label: str | None = None, execution_order: int = 0) -> None:
        super().__init__(label=label or f"MetricCallback[{name}]", execution_order=execution_order)
        self.name, self.fn, self.every_n = name, fn, int(every_n)

    def on_epoch_end(self, *, experiment: Any, phase: Any, epoch: int, results: Any, **kw: Any) -> None:
        if (epoch + 1) % self.every_n:
            return
        value = self.fn(phase=phase, epoch=epoch, results=results,
                        variables=phase.current_variables(), experiment=experiment)
        if value is not None:
            results.metrics.log(self.name, float(value), epoch=epoch)
