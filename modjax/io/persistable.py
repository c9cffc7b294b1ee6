"""Persistence mixins inherited by the stateful shell classes.

``FeatureSet`` and ``Experiment`` inherit
these so that file formats live in ``modjax.io`` while the methods (``save``,
``load``, ``save_checkpoint``, ``restore_checkpoint``, ``load_subgraph_checkpoint``)
appear on the objects users hold. See docs/architecture.md "Persistence seam" for
what each host class must expose, and docs/persistence.md for the formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FeatureSetPersistence", "ExperimentPersistence"]


class FeatureSetPersistence:
    """Parquet/JSON ``save``/``load`` for FeatureSet."""

    def save(self, path: str | Path, *, overwrite: bool = False, show_progress: bool = False,
             progress_file: Any = None) -> Path:
        """Write the table (Parquet) and schema/records/splits (JSON) atomically.

        Args:
            path: artifact directory to create.
            overwrite: replace an existing FeatureSet artifact at ``path``.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).

        Returns:
            ``path`` as a Path.
        """
        from modjax.io.featureset_io import save_featureset

        return save_featureset(self, path, overwrite=overwrite, show_progress=show_progress,
                               progress_file=progress_file)

    @classmethod
    def load(cls, path: str | Path, *, overwrite: bool = False,
             allow_packaged_code: bool = False, show_progress: bool = False,
             progress_file: Any = None) -> Any:
        """Read a FeatureSet written by :meth:`save` (same uuids, splits and records).

        Args:
            path: the artifact directory.
            overwrite: replace colliding labels/ids in the active ExperimentContext.
            allow_packaged_code: import user classes (scalers) named in the config.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).
        """
        from modjax.io.featureset_io import load_featureset

        return load_featureset(cls, path, overwrite=overwrite,
                               allow_packaged_code=allow_packaged_code,
                               show_progress=show_progress, progress_file=progress_file)


class ExperimentPersistence:
    """Experiment ``save``/``load`` and named checkpoints."""

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
        from modjax.io.experiment_io import save_experiment

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
        from modjax.io.experiment_io import load_experiment

        return load_experiment(cls, path, checkpoint_dir=checkpoint_dir,
                               allow_packaged_code=allow_packaged_code, overwrite=overwrite,
                               show_progress=show_progress, progress_file=progress_file)

    def set_checkpoint_dir(self, path: str | Path, *, create: bool = True) -> None:
        """Directory for named experiment checkpoints (and phase checkpoints without one)."""
        from modjax.io.experiment_io import set_checkpoint_dir

        set_checkpoint_dir(self, path, create=create)

    @property
    def checkpoint_dir(self) -> Path | None:
        """The experiment checkpoint directory, or None."""
        return getattr(self, "_mj_checkpoint_dir", None)

    @property
    def checkpointing_enabled(self) -> bool:
        """False inside :meth:`disable_checkpointing`; phases and the experiment check it."""
        return getattr(self, "_mj_checkpointing_disabled", 0) == 0

    def disable_checkpointing(self) -> Any:
        """Context manager suppressing experiment- and phase-level checkpointing."""
        from modjax.io.experiment_io import disable_checkpointing

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
        from modjax.io.experiment_io import save_experiment_checkpoint

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
        from modjax.io.experiment_io import restore_experiment_checkpoint

        restore_experiment_checkpoint(self, name_or_path, show_progress=show_progress,
                                      progress_file=progress_file)

    @property
    def available_checkpoints(self) -> dict[str, Path]:
        """Disk checkpoints by name: the experiment's and its phases' Checkpointing ones."""
        from modjax.io.experiment_io import available_checkpoints

        return available_checkpoints(self)
