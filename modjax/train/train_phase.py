"""TrainPhase: train the graph for ``n_epochs``, each epoch one jitted ``lax.scan``.

A TrainPhase puts the data of each binding on the device once (a shared
``DeviceStore``), asks the samplers for an index plan per epoch on the host, and runs
the epoch as one compiled scan (:mod:`modjax.train.epoch_program`) whose body gathers
the batch on the device and calls the pure step. The epochs run through the one loop
(:mod:`modjax.train.loop`) with the phase's hooks; :class:`~modjax.train.train_epochs.TrainEpochs`
is its body. The graph's variables are written back only when the phase completes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.distributed import put_global, spans_processes, to_host
from modjax.io.registry import register, serialize
from modjax.train.callbacks import Callback
from modjax.train.epoch_blocks import BLOCK, BlockRunner, blockable
from modjax.train.epoch_program import block_program, epoch_program, start_key
from modjax.train.feeds import Feed, InputBinding
from modjax.train.hooks import (
    CallbackHook,
    CheckpointHook,
    Hook,
    NanGuard,
    ObserverHook,
    ProgressHook,
    needs_batches,
)
from modjax.train.loop import LoopRun, run_loop
from modjax.train.losses import AppliedLoss
from modjax.train.metrics import AppliedMetric, check_class_targets
from modjax.train.phases import ExperimentPhase, NanPolicy, ResultRecording
from modjax.train.programs import spec_of
from modjax.train.progress import EpochProgress
from modjax.train.results import TrainResults
from modjax.train.schedule import BatchSchedulingPolicy
from modjax.train.step import graph_optimizers, init_train_carry
from modjax.train.train_epochs import TrainEpochs, distinct_samplers, epoch_plans, schedule

__all__ = ["TrainPhase"]


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


@functools.cache
def _zero_step() -> jax.Array:
    # an immutable device scalar made once (on the host: execute is never traced);
    # making it per execute is a fixed cost larger than the rest of the carry's
    return jnp.asarray(0, jnp.int32)


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

    def save_checkpoint(self, path: Any, *, overwrite: bool = True, blocking: bool = True,
                        meta: dict[str, Any] | None = None, show_progress: bool = False,
                        progress_file: Any = None) -> Any:
        """Disk checkpoint of the running variables and optimizer state (the graph's own
        when the phase is not running), written by the graph layer's writer from the
        carry's pytrees: nothing is copied into the graph.

        Args:
            path: the checkpoint directory.
            overwrite: replace an existing checkpoint.
            blocking: with False the write happens on the background checkpoint thread
                and a Future of the path is returned.
            meta: JSON metadata stored in the manifest.
            show_progress: draw a tqdm bar (needs ``blocking=True``).
            progress_file: stream for the bar.

        Returns:
            The path, or a Future of it.
        """
        from modjax.graph.io import save_checkpoint

        c = self._carry
        # stage-wise training keeps one state per node optimizer: the graph's own is stored
        opt_state = None if c is None or isinstance(c["opt_state"], dict) else c["opt_state"]
        return save_checkpoint(self._graph, path, variables=self.current_variables(),
                               opt_state=opt_state, overwrite=overwrite, meta=meta,
                               blocking=blocking, show_progress=show_progress,
                               progress_file=progress_file)

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
        if self.replicas > 1:
            from modjax.train.ensemble import execute_ensemble
            return execute_ensemble(self, graph, experiment=experiment,
                                    show_training_progress=show_training_progress,
                                    show_sampler_progress=show_sampler_progress,
                                    persist_progress=persist_progress,
                                    val_loss_metric=val_loss_metric, progress_file=progress_file)
        if not graph.is_built:
            graph.build()
        feeds, streaming = self._feeds(graph, experiment)
        optimizer = graph_optimizers(graph)
        progress = EpochProgress(self.label, self.n_epochs, enabled=show_training_progress,
                                 persist=persist_progress, val_metric=val_loss_metric,
                                 show_batches=show_sampler_progress, file=progress_file)
        try:
            hooks = self._hooks(experiment, progress)
            blocks = self._blocks(graph, feeds, optimizer, hooks, streaming)
            # a phase running in blocks never calls the one-epoch programs
            fn = None if blocks is not None else epoch_program(
                self, graph, feeds, optimizer, chunked=False, skip_empty=streaming)
            step_fn = (epoch_program(self, graph, feeds, optimizer, chunked=True)
                       if needs_batches(hooks) else None)
        except BaseException:
            progress.close()
            raise
        results = TrainResults(self.label, graph=graph,
                               loss_nodes={al.label: al.node for al in self.losses})
        carry = self._start_carry(graph, optimizer)
        # counters and sampler state as they were: a phase that raises leaves them so
        counters = self.get_state() if self._carry is None else None
        self._graph, self._carry, self._stop = graph, carry, False
        body = TrainEpochs(self, graph, optimizer, feeds, (fn, step_fn), streaming=streaming,
                           progress=progress, counters=counters, blocks=blocks)
        return run_loop(body, LoopRun(self, experiment, results, hooks),
                        guard=NanGuard(self.nan_policy, f"TrainPhase {self.label!r}"))

    def _blocks(self, graph: Any, feeds: Sequence[Feed], optimizer: Any, hooks: Sequence[Hook],
                streaming: bool) -> BlockRunner | None:
        """A BlockRunner when the epochs may run several per dispatch, else None."""
        samplers = distinct_samplers(feeds)
        # "last" keeps one epoch's recorded tensors: a block would hold up to two blocks' worth
        if self.result_recording is ResultRecording.LAST:
            return None
        if not self._pipeline or not blockable(feeds, samplers, hooks, mesh=self.mesh,
                                               streaming=streaming,
                                               batch_hooks=needs_batches(hooks)):
            return None
        fn = block_program(self, graph, feeds, optimizer, BLOCK)
        return BlockRunner(self, fn, feeds, samplers,
                           lambda raw: schedule(feeds, samplers, raw, self.batch_schedule),
                           self.n_epochs)

    def _feeds(self, graph: Any, experiment: Any) -> tuple[list[Feed], bool]:
        """The resolved bindings (checked) and whether their data must be streamed."""
        owner = f"TrainPhase {self.label!r}"
        budget = self.byte_budget
        if budget is None and experiment is not None:
            budget = getattr(experiment, "byte_budget", None)
        feeds = [Feed(b, graph, owner=owner, mesh=self.mesh, tags=self._loss_tags(),
                      byte_budget=budget, shard_rows=self.shard_data)
                 for b in self._bindings(graph)]
        if not feeds:
            raise ValueError(f"{owner}: no input bindings")
        check_class_targets(graph, [*self.losses, *self.metrics], feeds, owner=owner)
        return feeds, not all(f.store.fits for f in feeds)

    def _hooks(self, experiment: Any, progress: Any) -> list[Hook]:
        """Callbacks, observer, checkpointing and progress, in the order they run at
        an epoch's end (the observer reads what the callbacks logged)."""
        hooks: list[Hook] = [CallbackHook(self._sorted_callbacks())]
        obs = self.observer if self.observer is not None else getattr(experiment, "observer", None)
        if obs is not None:
            hooks.append(ObserverHook(obs))
        if self.checkpointing is not None:
            hooks.append(CheckpointHook(self.checkpointing, self, experiment))
        hooks.append(ProgressHook(progress))
        return hooks

    def _start_carry(self, graph: Any, optimizer: Any) -> dict[str, Any]:
        """The graph's variables and (matching) optimizer state, the frozen mask and the
        starting key, placed on the mesh if there is one."""
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
        key = start_key(self.seed, self.epochs_run)
        carry = init_train_carry(variables, optimizer, key, frozen_paths=sorted(graph.frozen_paths),
                                 opt_state=opt_state, step=_zero_step())
        if self.mesh is not None:
            from modjax.train.sharding import carry_shardings
            carry = put_global(carry, carry_shardings(carry, self.shard_params, self.mesh))
        return carry

    def _epoch_plans(self, feeds: Sequence[Feed]) -> list[IndexPlan]:
        """The next epoch's plan per feed (samplers advance one epoch)."""
        return epoch_plans(feeds, self.batch_schedule)

    def _opt_structure(self, optimizer: Any, params: Any) -> Any:
        # keyed on what the optimizer computes, never on its id (which a new object can reuse)
        key = (spec_of(optimizer), jax.tree.structure(params))
        cache = self.__dict__.setdefault("_opt_structs", {})
        if key not in cache:
            cache[key] = jax.tree.structure(jax.eval_shape(optimizer.init, params))
        return cache[key]

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

    def _own_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"replicas": self.replicas} if self.replicas > 1 else {}
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
    def _config_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        from modjax.io.registry import deserialize
        return dict(n_epochs=config["n_epochs"], batch_schedule=config["batch_schedule"],
                    result_recording=config["result_recording"],
                    nan_policy=config.get("nan_policy", "raise"), seed=config.get("seed", 0),
                    capture=config.get("capture", ()), byte_budget=config.get("byte_budget"),
                    shard_data=config.get("shard_data"), compute_dtype=config.get("compute_dtype"),
                    shard_params=_specs_from_config(config.get("shard_params")),
                    replicas=config.get("replicas", 1),
                    metrics=[deserialize(c) for c in config.get("metrics", [])],
                    checkpointing=None if config.get("checkpointing") is None else
                    deserialize(config["checkpointing"]))

    @classmethod
    def _split_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        from modjax.io.registry import deserialize
        return {"sampler": deserialize(config["sampler"], **kw)}
