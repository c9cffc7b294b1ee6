"""The persistence methods of FeatureSet.

The work is done in :mod:`modjax.data.io`, imported on first use so that building a
FeatureSet loads neither Parquet nor the checkpoint store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FeatureSetPersistence"]


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
        from modjax.data.io import save_featureset

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
        from modjax.data.io import load_featureset

        return load_featureset(cls, path, overwrite=overwrite,
                               allow_packaged_code=allow_packaged_code,
                               show_progress=show_progress, progress_file=progress_file)
