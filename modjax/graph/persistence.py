"""The persistence methods of ModelGraph and flow Graphs.

The work is done in :mod:`modjax.graph.io`, imported on first use so that building a
graph loads neither the checkpoint store nor Orbax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modjax.io.reports import LoadReport

__all__ = ["GraphPersistence"]


class GraphPersistence:
    """Config + Orbax ``save``/``load`` and checkpoints for ModelGraph and flow Graphs.

    The host must be a :class:`~modjax.protocols.CheckpointHost` (optionally with the
    capabilities in :mod:`modjax.protocols`: an optimizer, ``build``, ...).
    """

    def save(self, path: str | Path, *, overwrite: bool = False, show_progress: bool = False,
             progress_file: Any = None) -> Path:
        """Save config, variables, optimizer state and frozen paths to ``path``.

        Args:
            path: artifact directory to create.
            overwrite: replace an existing artifact at ``path``.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).

        Returns:
            ``path`` as a Path.
        """
        from modjax.graph.io import save_graph

        return save_graph(self, path, overwrite=overwrite,  # type: ignore[arg-type]
                          show_progress=show_progress, progress_file=progress_file)

    @classmethod
    def load(cls, path: str | Path, *, overwrite: bool = False,
             allow_packaged_code: bool = False, show_progress: bool = False,
             progress_file: Any = None) -> Any:
        """Rebuild a graph saved with :meth:`save` as a new object.

        Args:
            path: the artifact directory.
            overwrite: replace colliding node labels/ids in the active ExperimentContext.
            allow_packaged_code: import unregistered model classes from their module.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).
        """
        from modjax.graph.io import load_graph

        return load_graph(cls, path, overwrite=overwrite,
                          allow_packaged_code=allow_packaged_code,
                          show_progress=show_progress, progress_file=progress_file)

    def save_checkpoint(self, path: str | Path, *, overwrite: bool = False,
                        meta: dict[str, Any] | None = None, at: str | None = None,
                        blocking: bool = True, show_progress: bool = False,
                        progress_file: Any = None) -> Any:
        """Atomically checkpoint variables, optimizer state and frozen set.

        Args:
            path: checkpoint directory.
            overwrite: replace an existing checkpoint.
            meta: JSON-serialisable metadata stored in the manifest.
            at: label path of a subtree to save standalone, in its own namespace.
            blocking: with False the values are frozen now (shared, immutable) and written on a
                background thread; a Future of the path is returned.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default (needs blocking=True).
            progress_file: stream for the bar (default stderr).

        Returns:
            ``path`` as a Path (or a Future of it).
        """
        from modjax.graph.io import save_checkpoint

        return save_checkpoint(self, path, overwrite=overwrite,  # type: ignore[arg-type]
                               meta=meta, at=at, blocking=blocking,
                               show_progress=show_progress, progress_file=progress_file)

    def restore_checkpoint(self, path: str | Path, *, show_progress: bool = False,
                           progress_file: Any = None) -> Any:
        """Restore a checkpoint into this graph (strict: same structure).

        Args:
            path: a graph checkpoint or saved graph directory.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).

        Returns:
            self. The restore is logged at INFO on the ``modjax.io`` logger.
        """
        from modjax.graph.io import restore_checkpoint

        return restore_checkpoint(self, path,  # type: ignore[arg-type]
                                  show_progress=show_progress, progress_file=progress_file)

    def load_subgraph_checkpoint(self, path_in_graph: str, checkpoint: str | Path, *,
                                 strict: bool = True, match: str = "definition",
                                 show_progress: bool = False,
                                 progress_file: Any = None) -> LoadReport:
        """Load a standalone (sub)graph checkpoint into the subtree at ``path_in_graph``.

        Args:
            path_in_graph: label path of the receiving subtree (``"encoder"``).
            checkpoint: a graph checkpoint or saved graph directory.
            strict: refuse any missing/extra/mismatched leaf (default); with False the
                matching leaves are loaded and the rest reported.
            match: ``"definition"`` (default) also compares the architecture (model
                classes and configs, e.g. an activation): a different one is an error
                under ``strict`` and ``hash_matched=False`` otherwise. ``"shapes"`` is
                the looser mode: parameter paths, shapes and dtypes only.
            show_progress: draw a tqdm bar over the parts written/read (pytree items,
                files, digests); off by default.
            progress_file: stream for the bar (default stderr).

        Returns:
            The :class:`LoadReport`, names in the subtree's own namespace.
        """
        from modjax.graph.io import load_subgraph

        return load_subgraph(self, path_in_graph, checkpoint,  # type: ignore[arg-type]
                             strict=strict, match=match, show_progress=show_progress,
                             progress_file=progress_file)
