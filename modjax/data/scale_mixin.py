"""ScaleMixin: the FeatureSet methods of the transform log (see ``modjax.data.scaling``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ScaleMixin"]


class ScaleMixin:
    """``fit_transform``, undo and unscale for :class:`~modjax.data.FeatureSet`."""

    # ------------------------------------------------------------------ scaling
    def fit_transform(self, scaler: Any, *, domain: str, keys: str | Sequence[str] | None = None,
                      fit_to_split: str | None = None,
                      merged_axes: int | Sequence[int] | None = None) -> Any:
        """Fit a scaler and write ``domain.key.transformed`` for every sample.

        The selected keys' current data (``transformed`` if present, so transforms
        chain) is stacked to ``(n, n_keys, *s)`` and flattened to 2-D: rows are the
        sample axis plus ``merged_axes``, columns the remaining axes. The scaler (a
        private copy of ``scaler``) is fitted on ``fit_to_split`` rows and applied to all.

        Args:
            scaler: a :class:`Scaler`, a built-in name, a class, or an sklearn-style object.
            domain: ``"features"``, ``"targets"`` or ``"tags"``.
            keys: keys to transform jointly (default: all of the domain).
            fit_to_split: split to fit on (default: all rows).
            merged_axes: axes (>= 1) folded into the rows, e.g. ``2`` for ``(n, 1, 10)``
                curves scales all 10 points with one statistic.

        Returns:
            The new ScalerRecord.

        Raises:
            KeyError: unknown key or split. ValueError: bad merged_axes. TypeError: not a
            scaler.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ft", {"x": [1.0, 2.0, 3.0, 4.0], "y": [0., 0, 1, 1]},
            ...                           "x", "y")
            >>> _ = fs.split_random({"train": 2, "test": 2}, seed=0)
            >>> _ = fs.fit_transform("MinMaxScaler", domain="features", fit_to_split="train")
            >>> fs.columns[-1], fs.get_features(rep="raw")[:, 0].tolist()
            ('features.x.transformed', [1.0, 2.0, 3.0, 4.0])
        """
        from modjax.data.scaling import fit_transform
        return fit_transform(self, scaler, domain=domain, keys=keys, fit_to_split=fit_to_split,
                             merged_axes=merged_axes)

    def undo_last_transform(self, domain: str, keys: str | Sequence[str] | None = None) -> None:
        """Undo the newest transform applied to exactly ``keys`` of ``domain``.

        The remaining records are replayed from the raw columns, so the result is exact.

        Args:
            domain: ``"features"``, ``"targets"`` or ``"tags"``.
            keys: the keys the transform was fitted on (default: all of the domain).

        Raises:
            ValueError: nothing to undo, or a later transform depends on it.
            KeyError: an unknown key.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ul", {"x": [1.0, 3.0], "y": [0.0, 1.0]}, "x", "y")
            >>> _ = fs.fit_transform("StandardScaler", domain="features")
            >>> _ = fs.fit_transform("Negate", domain="features")
            >>> fs.undo_last_transform("features", "x")
            >>> fs.get_features()[:, 0].tolist(), len(fs.scaler_records)
            ([-1.0, 1.0], 1)
        """
        from modjax.data.scaling import undo_last_transform
        undo_last_transform(self, domain, keys)

    def undo_all_transforms(self, domain: str | None = None,
                            keys: str | Sequence[str] | None = None) -> None:
        """Undo every transform touching ``keys`` of ``domain`` (everything when None).

        Args:
            domain: the domain, or None for every domain (then ``keys`` must be None).
            keys: keys whose transforms are undone (default: all of the domain).

        Raises:
            ValueError: a later transform that is not undone depends on one that is.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ua", {"x": [1.0, 3.0], "y": [0.0, 1.0]}, "x", "y")
            >>> _ = fs.fit_transform("MinMaxScaler", domain="features")
            >>> _ = fs.fit_transform("MinMaxScaler", domain="targets")
            >>> fs.undo_all_transforms()
            >>> fs.columns
            ['features.x.raw', 'targets.y.raw']
        """
        from modjax.data.scaling import undo_all_transforms
        undo_all_transforms(self, domain, keys)

    def unscale_data_for_cols(self, *, data: Any, domain: str,
                              columns: str | Sequence[str]) -> np.ndarray:
        """Invert this FeatureSet's transforms on user data (e.g. predictions).

        Args:
            data: ``(n, n_columns, *s)``, or ``(n, *s)`` for a single column.
            domain: the domain of ``columns``.
            columns: keys the data represents, in order.

        Returns:
            Data in raw units, same shape as ``data``.

        Raises:
            ValueError: the data's shape does not match, or a scaler was fitted jointly on
                keys not in ``columns``.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("us", {"x": [1.0, 2.0], "y": [10.0, 30.0]}, "x", "y")
            >>> _ = fs.fit_transform("MinMaxScaler", domain="targets")
            >>> pred = np.array([[0.5], [1.0]])  # model outputs in scaled units
            >>> fs.unscale_data_for_cols(data=pred, domain="targets", columns="y").tolist()
            [[20.0], [30.0]]
        """
        from modjax.data.scaling import unscale_data_for_cols
        return unscale_data_for_cols(self, data=data, domain=domain, columns=columns)

    def iter_scalers_on_cols(self, *, domain: str, columns: str | Sequence[str]) -> list[Any]:
        """Scalers applied to ``columns``, newest first (the order to invert them).

        Args:
            domain: the domain of ``columns``.
            columns: keys (no domain prefix, no rep suffix).

        Returns:
            The fitted :class:`Scaler` objects, newest first.

        Raises:
            ValueError: a scaler was fitted jointly on keys not in ``columns``.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("it", {"x": [1.0, 2.0], "y": [0.0, 1.0]}, "x", "y")
            >>> _ = fs.fit_transform("StandardScaler", domain="features")
            >>> _ = fs.fit_transform("Negate", domain="features")
            >>> [s.name for s in fs.iter_scalers_on_cols(domain="features", columns="x")]
            ['Negate', 'StandardScaler']
        """
        from modjax.data.scaling import iter_scalers_on_cols
        return iter_scalers_on_cols(self, domain=domain, columns=columns)
