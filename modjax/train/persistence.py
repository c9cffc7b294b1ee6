"""The persistence methods of Experiment.

The work is done in :mod:`modjax.train.io`, imported on first use so that building an
Experiment loads neither the checkpoint store nor Orbax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ExperimentPersistence"]


class ExperimentPersistence:
    """Experiment ``save``/``load`` and named checkpoints.

    The host must be a :class:`~modjax.protocols.ExperimentHost`.
    """

    #: set by :meth:`set_checkpoint_dir`
    _mj_checkpoint_dir: Path | None = None
    #: depth of nested :meth:`disable_checkpointing` blocks
    _mj_checkpointing_disabled: int = 0

    def save(self, path: str | Path, *, overwrite: bool = False, show_progress: bool = False,
             progress_file: Any = None) -> Path:
        """Save config, state, FeatureSets, history and checkpoints to ``path``.

        Args:
            path: artifact directory to create.
            overwrite: replace an existing artifact at ``path``.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).

        Returns:
            ``path`` as a Path.
        """
        from modjax.train.io import save_experiment

        return save_experiment(self, path, overwrite=overwrite, show_progress=show_progress,
                               progress_file=progress_file)

    @classmethod
    def load(cls, path: str | Path, *, checkpoint_dir: str | Path | None = None,
             allow_packaged_code: bool = False, overwrite: bool = False,
             show_progress: bool = False, progress_file: Any = None) -> Any:
        """Rebuild an Experiment saved with :meth:`save`.

        Args:
            path: the artifact directory.
            checkpoint_dir: where to copy the saved checkpoints (skipped with a warning
                when None and the artifact has some).
            allow_packaged_code: import unregistered user classes from their module.
            overwrite: replace colliding labels/ids in the active ExperimentContext.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).
        """
        from modjax.train.io import load_experiment

        return load_experiment(cls, path, checkpoint_dir=checkpoint_dir,
                               allow_packaged_code=allow_packaged_code, overwrite=overwrite,
                               show_progress=show_progress, progress_file=progress_file)

    def set_checkpoint_dir(self, path: str | Path, *, create: bool = True) -> None:
        """Directory for named experiment checkpoints (and phase checkpoints without one)."""
        from modjax.train.io import set_checkpoint_dir

        set_checkpoint_dir(self, path, create=create)

    @property
    def checkpoint_dir(self) -> Path | None:
        """The experiment checkpoint directory, or None."""
        return self._mj_checkpoint_dir

    @property
    def checkpointing_enabled(self) -> bool:
        """False inside :meth:`disable_checkpointing`; phases and the experiment check it."""
        return self._mj_checkpointing_disabled == 0

    def disable_checkpointing(self) -> Any:
        """Context manager suppressing experiment- and phase-level checkpointing."""
        from modjax.train.io import disable_checkpointing

        return disable_checkpointing(self)

    def save_checkpoint(self, name: str | Path, *, overwrite: bool = False,
                        meta: dict[str, Any] | None = None, blocking: bool = True,
                        show_progress: bool = False, progress_file: Any = None) -> Any:
        """Save the full experiment state as checkpoint ``name`` (in the checkpoint dir).

        Args:
            name: a name in the checkpoint directory, or a path.
            overwrite: replace an existing checkpoint.
            meta: JSON-serialisable metadata stored in the manifest.
            blocking: with False the state is frozen now (NumPy leaves copied) and written on a
                background thread; a Future of the path is returned.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default (needs blocking=True).
            progress_file: stream for the bar (default stderr).

        Returns:
            The checkpoint path (or a Future of it).
        """
        from modjax.train.io import save_experiment_checkpoint

        return save_experiment_checkpoint(self, name, overwrite=overwrite, meta=meta,
                                          blocking=blocking, show_progress=show_progress,
                                          progress_file=progress_file)

    def restore_checkpoint(self, name_or_path: str | Path, *, show_progress: bool = False,
                           progress_file: Any = None) -> None:
        """Restore an experiment checkpoint, or a graph checkpoint into the model graph.

        Args:
            name_or_path: a name from :attr:`available_checkpoints`, or a path.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).
        """
        from modjax.train.io import restore_experiment_checkpoint

        restore_experiment_checkpoint(self, name_or_path, show_progress=show_progress,
                                      progress_file=progress_file)

    @property
    def available_checkpoints(self) -> dict[str, Path]:
        """Disk checkpoints by name: the experiment's and its phases' Checkpointing ones."""
        from modjax.train.io import available_checkpoints

        return available_checkpoints(self)
