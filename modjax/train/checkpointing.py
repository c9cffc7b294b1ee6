"""Checkpointing: when and where a TrainPhase or Experiment saves its state (as in ModularML).

The parent calls :meth:`Checkpointing.maybe_save` at each lifecycle hook. In ``memory``
mode the parent's ``get_state()`` pytree is kept (device arrays are immutable, so this
costs no copy); in ``disk`` mode the parent's ``save_checkpoint(path)`` writes an atomic
Orbax checkpoint that has finished by the time ``maybe_save`` returns. ``max_to_keep``
drops the oldest checkpoints (each is made invisible before it is deleted).

A disk write that fails (disk full, permissions, I/O error) never throws training away:
it is reported with a :class:`CheckpointWriteWarning`, recorded in
:attr:`Checkpointing.failures`, left out of ``saved_keys``, and training goes on.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np

from modjax.errors import CheckpointError, ConfigError
from modjax.io import async_writer
from modjax.io.atomic import confined_path, remove_artifact
from modjax.io.graph_store import open_graph_checkpoint
from modjax.io.objects import accepts_kwarg
from modjax.io.registry import register

__all__ = ["Checkpointing", "CheckpointWriteWarning", "PHASE_HOOKS", "EXPERIMENT_HOOKS"]

PHASE_HOOKS = ("phase_start", "phase_end", "epoch_start", "epoch_end", "batch_start", "batch_end")
EXPERIMENT_HOOKS = ("phase_start", "phase_end", "group_start", "group_end")

# Which placeholders carry a value at each hook; {hook} and {key} always do.
_PHASE_PLACEHOLDERS = {
    "phase_start": {"phase"}, "phase_end": {"phase"},
    "epoch_start": {"phase", "epoch"}, "epoch_end": {"phase", "epoch"},
    "batch_start": {"phase", "epoch", "batch"}, "batch_end": {"phase", "epoch", "batch"},
}
_EXPERIMENT_PLACEHOLDERS = {h: {"label"} for h in EXPERIMENT_HOOKS}
_ALWAYS = {"hook", "key"}
_CONTEXTS = {"phase": (PHASE_HOOKS, _PHASE_PLACEHOLDERS, "TrainPhase"),
             "experiment": (EXPERIMENT_HOOKS, _EXPERIMENT_PLACEHOLDERS, "Experiment")}


def _placeholders(template: str) -> set[str]:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"name_template {template!r} is not a valid format string: {e}") from e
    names = set()
    for f in fields:
        if not f or not f.isidentifier():
            raise ConfigError(
                f"name_template {template!r} has placeholder {{{f}}}: placeholders are plain "
                "names like {epoch} (a format spec such as {epoch:04d} is allowed)")
        names.add(f)
    return names


class CheckpointWriteWarning(UserWarning):
    """A Checkpointing disk write failed; training continued with its state intact."""


def _remove_artifact(path: Path) -> None:
    remove_artifact(path)


def _check_template_confined(template: str) -> None:
    # every placeholder stands for a plain word; the literal text must stay confined
    probe = "".join(lit + ("x" if f is not None else "")
                    for lit, f, _, _ in string.Formatter().parse(template))
    try:
        confined_path("/", probe, what="Checkpointing name_template")
    except CheckpointError as e:
        raise ConfigError(
            f"Checkpointing name_template {template!r} must give a relative name inside the "
            "checkpoint directory (no absolute path, no '..')") from e


@register("Checkpointing")
class Checkpointing:
    """Automatic checkpointing configuration and tracker for a TrainPhase or Experiment.

    Args:
        mode: ``"memory"`` keeps ``get_state()`` snapshots; ``"disk"`` writes Orbax
            checkpoints with the parent's ``save_checkpoint``.
        save_on: hook name(s). TrainPhase: phase_start, phase_end, epoch_start,
            epoch_end, batch_start, batch_end. Experiment: phase_start, phase_end,
            group_start, group_end.
        every_n: save every n-th occurrence of a hook (counted per hook).
        directory: where disk checkpoints go (a TrainPhase without one inherits its
            Experiment's checkpoint directory, under a ``{phase}/`` subdirectory).
        name_template: checkpoint name with placeholders: TrainPhase {phase} {epoch}
            {batch}, Experiment {label}; {hook} and {key} everywhere. Which ones a hook
            may use is checked when attached (``{epoch}`` is not defined at phase_start).
        max_to_keep: keep at most this many checkpoints (oldest removed); None keeps all.
        overwrite: whether disk checkpoints may replace existing ones.
        async_save: in disk mode, freeze the state at the hook and write it on the
            background checkpoint thread when the parent's ``save_checkpoint`` supports
            ``blocking=False``; every write has finished when a ``phase_end`` or
            ``group_end`` hook returns (whether or not it saves), and before
            ``saved_keys``/``get_path``/``has_key``/``restore`` answer.

    Example:
        >>> ck = Checkpointing(save_on="epoch_end", every_n=2)
        >>> ck.configure_for("phase")
        >>> [ck.should_save("epoch_end") for _ in range(4)]
        [False, True, False, True]
        >>> ck.format_name(phase="train", epoch=3, hook="epoch_end")
        'train_epoch3'
    """

    def __init__(self, *, mode: Literal["memory", "disk"] = "memory",
                 save_on: str | Iterable[str] = "epoch_end", every_n: int = 1,
                 directory: Path | str | None = None, name_template: str | None = None,
                 max_to_keep: int | None = None, overwrite: bool = True,
                 async_save: bool = True) -> None:
        if mode not in ("memory", "disk"):
            raise ConfigError(f"Checkpointing mode must be 'memory' or 'disk', got {mode!r}")
        hooks = [save_on] if isinstance(save_on, str) else list(save_on)
        known = set(PHASE_HOOKS) | set(EXPERIMENT_HOOKS)
        for h in hooks:
            if h not in known:
                raise ConfigError(
                    f"Checkpointing save_on hook {h!r} is unknown; expected some of {sorted(known)}")
        if not hooks:
            raise ConfigError("Checkpointing save_on needs at least one hook")
        if not isinstance(every_n, int) or isinstance(every_n, bool) or every_n < 1:
            raise ConfigError(f"Checkpointing every_n must be a positive int, got {every_n!r}")
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ConfigError(f"Checkpointing max_to_keep must be None or >= 1, got {max_to_keep!r}")
        if name_template is not None:
            _placeholders(name_template)
            _check_template_confined(name_template)
        self._mode = mode
        self._save_on = list(dict.fromkeys(hooks))
        self._every_n = every_n
        self._directory = Path(directory) if directory is not None else None
        self._name_template = name_template
        self._max_to_keep = max_to_keep
        self._overwrite = bool(overwrite)
        self._async = bool(async_save)
        self._futures: list[tuple[Any, Future]] = []
        self._failures: list[tuple[Any, str]] = []
        self._spared: list[tuple[Any, Path]] = []
        self._context: str | None = None
        self._counts: dict[str, int] = {}
        self._memory: dict[int | str, Any] = {}
        self._disk: dict[int | str, Path] = {}

    # ------------------------------------------------------------------ properties
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def save_on(self) -> list[str]:
        return list(self._save_on)

    @property
    def every_n(self) -> int:
        return self._every_n

    @property
    def directory(self) -> Path | None:
        return self._directory

    @directory.setter
    def directory(self, value: Path | str | None) -> None:
        self._directory = Path(value) if value is not None else None

    @property
    def name_template(self) -> str | None:
        return self._name_template

    @property
    def max_to_keep(self) -> int | None:
        return self._max_to_keep

    @property
    def overwrite(self) -> bool:
        return self._overwrite

    @property
    def async_save(self) -> bool:
        return self._async

    @property
    def context(self) -> str | None:
        """``"phase"`` or ``"experiment"`` once attached with :meth:`configure_for`."""
        return self._context

    # ------------------------------------------------------------------ validation
    @staticmethod
    def validate_placeholders(template: str, allowed: frozenset[str] | set[str],
                              context_name: str) -> None:
        """Raise ConfigError if ``template`` uses a placeholder outside ``allowed``.

        Example:
            >>> Checkpointing.validate_placeholders("{label}", frozenset({"label"}), "Experiment")
        """
        bad = sorted(_placeholders(template) - set(allowed))
        if bad:
            raise ConfigError(
                f"name_template {template!r} uses placeholder(s) {['{' + b + '}' for b in bad]} "
                f"not available for {context_name}; allowed: "
                f"{sorted('{' + a + '}' for a in allowed)}")

    def configure_for(self, context: Literal["phase", "experiment"]) -> None:
        """Check hooks and template for a parent, and set the default template.

        Called by ``TrainPhase.set_checkpointing`` (``"phase"``) and
        ``Experiment.set_checkpointing`` (``"experiment"``, which also requires disk mode).

        Raises:
            ConfigError: a hook or placeholder is not valid there (the message names it).
        """
        if context not in _CONTEXTS:
            raise ConfigError(f"context must be 'phase' or 'experiment', got {context!r}")
        hooks, per_hook, name = _CONTEXTS[context]
        for h in self._save_on:
            if h not in hooks:
                raise ConfigError(
                    f"Checkpointing save_on hook {h!r} is not available on {name}; "
                    f"allowed: {list(hooks)}")
        if context == "experiment" and self._mode != "disk":
            raise ConfigError("experiment-level Checkpointing must use mode='disk'")
        if self._name_template is not None:
            for h in self._save_on:
                self.validate_placeholders(self._name_template,
                                           frozenset(per_hook[h] | _ALWAYS), f"{name} hook {h!r}")
        else:
            self._name_template = self._default_template(context)
        self._context = context

    def _default_template(self, context: str) -> str:
        multi = len(self._save_on) > 1
        if context == "experiment":
            # Not bare "{label}": a phase's own checkpoints live in a "{phase label}/" dir.
            return "{label}_{hook}"
        common = set.intersection(*(_PHASE_PLACEHOLDERS[h] for h in self._save_on))
        t = "{phase}" + ("_epoch{epoch}" if "epoch" in common else "") + (
            "_batch{batch}" if "batch" in common else "")
        return t + ("_{hook}" if multi or common == {"phase"} else "")

    # ------------------------------------------------------------------ decisions
    def should_save(self, hook: str) -> bool:
        """Count one occurrence of ``hook``; True if it is in save_on and the every_n-th."""
        if hook not in self._save_on:
            return False
        self._counts[hook] = self._counts.get(hook, 0) + 1
        return self._counts[hook] % self._every_n == 0

    def format_name(self, **kwargs: Any) -> str:
        """Fill the name template (``{phase}``, ``{epoch}``, ``{batch}``, ``{label}``, ...).

        Raises:
            ConfigError: no template yet, or a placeholder has no value.
        """
        if self._name_template is None:
            raise ConfigError("Checkpointing has no name_template; attach it to a TrainPhase or "
                              "Experiment first (configure_for) or pass name_template")
        try:
            return self._name_template.format(**kwargs)
        except (KeyError, IndexError) as e:
            raise ConfigError(f"name_template {self._name_template!r} needs a value for {e} "
                              f"(given: {sorted(kwargs)})") from None

    # ------------------------------------------------------------------ records
    def _evict(self) -> None:
        if self._max_to_keep is None:
            return
        store = self._memory if self._mode == "memory" else self._disk
        while len(store) > self._max_to_keep:
            oldest = next(iter(store))
            value = store.pop(oldest)
            if self._mode == "disk":
                writes = [f for k, f in self._futures if k is not None]
                if writes:
                    # Ordered after the newer (background) write, and only if it succeeded:
                    # a failed write must not cost an older good checkpoint.
                    self._futures.append((None, async_writer.submit(
                        self._evict_if_written, writes[-1], oldest, value)))
                else:
                    _remove_artifact(value)

    def _evict_if_written(self, newer: Future, key: Any, path: Path) -> None:
        if newer.exception() is None:
            _remove_artifact(path)
        else:
            self._spared.append((key, path))

    def record_memory(self, key: int | str, state: dict[str, Any]) -> None:
        """Keep an in-memory state snapshot under ``key`` (NumPy leaves are copied)."""
        snap = jax.tree.map(lambda x: x.copy() if isinstance(x, np.ndarray) else x, state)
        self._memory.pop(key, None)
        self._memory[key] = snap
        self._evict()

    def record_disk(self, key: int | str, path: Path | str) -> None:
        """Record that the checkpoint for ``key`` was written to ``path``."""
        self._disk.pop(key, None)
        self._disk[key] = Path(path)
        self._evict()

    @property
    def failures(self) -> list[tuple[Any, str]]:
        """``(key, error)`` of every disk write that failed since the last :meth:`reset`."""
        self.wait()
        return list(self._failures)

    def _failed(self, key: Any, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if key is not None:
            path = self._disk.pop(key, None)
            msg = f"checkpoint {str(path) if path else key!r} was not written ({msg})"
        else:
            msg = f"removing an old checkpoint failed ({msg})"
        self._failures.append((key, msg))
        warnings.warn(f"Checkpointing: {msg}; training continues with its state intact",
                      CheckpointWriteWarning, stacklevel=4)

    def wait(self) -> None:
        """Block until this object's background writes finished.

        A failed write is not raised: it warns (:class:`CheckpointWriteWarning`), is
        dropped from ``saved_keys`` and recorded in :attr:`failures`.
        """
        futures, self._futures = self._futures, []
        for key, fut in futures:
            exc = fut.exception()
            if exc is not None:
                self._failed(key, exc)
        async_writer.wait_pending([f for _, f in futures], raise_errors=False)
        if self._spared:
            # kept because the newer write failed: they are still the latest good ones
            spared, self._spared = self._spared, []
            self._disk = {**dict(spared), **self._disk}

    def get_state(self, key: int | str) -> dict[str, Any] | None:
        """The in-memory snapshot for ``key`` (None in disk mode or if absent)."""
        return self._memory.get(key) if self._mode == "memory" else None

    def get_path(self, key: int | str) -> Path | None:
        """The disk checkpoint path for ``key`` if it exists (None in memory mode)."""
        if self._mode != "disk":
            return None
        self.wait()
        p = self._disk.get(key)
        return p if p is not None and p.exists() else None

    def has_key(self, key: int | str) -> bool:
        """Whether a checkpoint for ``key`` is available."""
        return (self.get_state(key) is not None) if self._mode == "memory" else (
            self.get_path(key) is not None)

    @property
    def saved_keys(self) -> list[int | str]:
        """Keys with a checkpoint, sorted (ints before strings)."""
        if self._mode == "disk":
            self.wait()
        keys = self._memory if self._mode == "memory" else {
            k: p for k, p in self._disk.items() if p.exists()}
        return sorted(keys, key=lambda k: (isinstance(k, str), k))

    def reset(self) -> None:
        """Clear hook counters and tracked checkpoints (files on disk are kept)."""
        self.wait()
        self._counts.clear()
        self._memory.clear()
        self._disk.clear()
        self._failures.clear()

    # ------------------------------------------------------------------ driving
    def maybe_save(self, hook: str, target: Any, *, key: int | str | None = None,
                   directory: Path | str | None = None, **placeholders: Any) -> bool:
        """Save ``target`` if :meth:`should_save` says so.

        Args:
            hook: the lifecycle hook being run.
            target: the object saved: its ``get_state()`` (memory) or
                ``save_checkpoint(path, overwrite=...)`` (disk) is called.
            key: the record key (default: the formatted name).
            directory: fallback directory when none was configured (the parent's).
            **placeholders: values for the name template (phase, epoch, batch, label).

        Returns:
            Whether a checkpoint was taken.
        """
        try:
            return self._maybe_save(hook, target, key=key, directory=directory,
                                    **placeholders)
        finally:
            if hook in ("phase_end", "group_end"):
                self.wait()  # every write has finished before the phase/group returns

    def _maybe_save(self, hook: str, target: Any, *, key: int | str | None,
                    directory: Path | str | None, **placeholders: Any) -> bool:
        if not self.should_save(hook):
            return False
        name = self.format_name(hook=hook, key=key, **placeholders)
        key = name if key is None else key
        if self._mode == "memory":
            self.record_memory(key, target.get_state())
            return True
        base = self._directory if self._directory is not None else directory
        if base is None:
            raise CheckpointError(
                f"disk Checkpointing at hook {hook!r} has no directory: pass directory= or set "
                "the Experiment's checkpoint dir (set_checkpoint_dir)")
        path = confined_path(base, name, what="Checkpointing checkpoint")
        try:
            # a target without save_checkpoint fails here like any other failed write
            if self._async and accepts_kwarg(target.save_checkpoint, "blocking"):
                fut = target.save_checkpoint(path, overwrite=self._overwrite, blocking=False)
                self._futures.append((key, fut))
            else:
                target.save_checkpoint(path, overwrite=self._overwrite)
        except (ConfigError, FileExistsError):
            raise  # the setup refuses this save (overwrite=False): not a failed write
        except Exception as e:  # disk full, permissions, I/O: keep training
            self._disk[key] = path
            self._failed(key, e)
            return False
        self.record_disk(key, path)
        return True

    def snapshot_for(self, key: int | str, like: Mapping[str, Any]) -> dict[str, Any] | None:
        """Checkpoint ``key`` as a TrainPhase snapshot (``EarlyStopping(restore_best=True)``).

        Memory mode returns the stored state. Disk mode reads the checkpoint's variables
        (and optimizer state when ``like`` has one of the same structure) onto the
        structure and shardings of ``like`` (a current ``phase.snapshot()``).

        Args:
            key: the checkpoint key (the epoch for ``epoch_end``).
            like: a snapshot ``{"variables", "opt_state", ...}`` giving the target tree.

        Returns:
            The snapshot, or None when no checkpoint exists under ``key``.

        Raises:
            CheckpointError: the checkpoint on disk is truncated or does not match ``like``.

        Example:
            >>> ck = Checkpointing(mode="memory")
            >>> ck.record_memory(2, {"variables": {"w": 1.0}})
            >>> ck.snapshot_for(2, like={}), ck.snapshot_for(5, like={})
            ({'variables': {'w': 1.0}}, None)
        """
        if self._mode == "memory":
            return self.get_state(key)
        path = self.get_path(key)
        if path is None:
            return None
        ck = open_graph_checkpoint(path)
        variables, _ = ck.variables(like["variables"], where=f"the snapshot of checkpoint {key!r}")
        snap = {"variables": variables}
        opt = like.get("opt_state")
        # Stage-wise phases carry one state per node optimizer (a dict): the checkpoint
        # holds the graph optimizer's only, so those states are left as they are.
        if ck.has_opt_state and opt is not None and not isinstance(opt, dict):
            snap["opt_state"] = ck.opt_state(opt)
        return snap

    def restore(self, key: int | str, target: Any) -> None:
        """Restore checkpoint ``key`` into ``target`` (``set_state`` or ``restore_checkpoint``).

        Raises:
            CheckpointError: no checkpoint recorded under ``key``.
        """
        if not self.has_key(key):
            raise CheckpointError(
                f"no {self._mode} checkpoint under key {key!r}; saved keys: {self.saved_keys}")
        if self._mode == "memory":
            target.set_state(self._memory[key])
        else:
            target.restore_checkpoint(self.get_path(key))

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """JSON config (tracked checkpoints are runtime state, not config)."""
        return {
            "mode": self._mode,
            "save_on": list(self._save_on),
            "every_n": self._every_n,
            "directory": str(self._directory) if self._directory is not None else None,
            "name_template": self._name_template,
            "max_to_keep": self._max_to_keep,
            "overwrite": self._overwrite,
            "async_save": self._async,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Checkpointing:
        """Rebuild from :meth:`get_config` output."""
        try:
            return cls(**config)
        except TypeError as e:
            raise ConfigError(f"bad Checkpointing config {config!r}: {e}") from e

    def __repr__(self) -> str:
        return (f"Checkpointing(mode={self._mode!r}, save_on={self._save_on!r}, "
                f"every_n={self._every_n}, max_to_keep={self._max_to_keep})")
