"""SelectionMixin: views and symbolic references of a FeatureSet.

Row views (``to_view``, ``take``, ``take_uuids``), column views (``select``), uuid
lookup and the :class:`FeatureSetReference` / :class:`FeatureSetColumnReference`
factories. They only read the table through the host's accessors and build views or
references, so they live apart from the storage and constructors of
:class:`~modjax.data.FeatureSet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax.data.references import (
    FeatureSetColumnReference,
    FeatureSetReference,
    make_column_reference,
    make_reference,
)
from modjax.data.schema import SAMPLE_UUIDS
from modjax.data.view import FeatureSetView

__all__ = ["SelectionMixin"]


class SelectionMixin:
    """Views and references for :class:`~modjax.data.FeatureSet` (host defines ``label``
    and ``_numpy_column``)."""

    label: str

    # ------------------------------------------------------------------ views / references
    def to_view(self, label: str | None = None) -> FeatureSetView:
        """A view of every row (no data copied).

        Args:
            label: optional view name.

        Returns:
            The view.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tv", {"x": [1.0, 2.0], "y": [0.0, 1.0]}, "x", "y")
            >>> fs.to_view().indices.tolist()
            [0, 1]
        """
        return FeatureSetView.from_featureset(self, label=label)

    def take(self, rows: Any, *, label: str | None = None) -> FeatureSetView:
        """A view of ``rows`` (positions, a boolean mask or a slice; no data copied).

        Args:
            rows: row positions; an int64 array is adopted (made read-only), not copied.
            label: optional view name.

        Returns:
            The view.

        Raises:
            IndexError: a row is out of range.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tk", {"x": [1.0, 2.0, 3.0], "y": [0.0, 1, 2]},
            ...                           "x", "y")
            >>> fs.take([2, 0]).get_targets()[:, 0].tolist()
            [2.0, 0.0]
        """
        return FeatureSetView(self, rows, label=label)

    def select(self, columns: str | Sequence[str] | None = None, *,
               features: str | Sequence[str] | None = None,
               targets: str | Sequence[str] | None = None,
               tags: str | Sequence[str] | None = None, rep: str | None = None,
               label: str | None = None) -> FeatureSetView:
        """A view of all rows restricted to some columns.

        Args:
            columns: full column names (``domain.key.rep``; globs allowed).
            features, targets, tags: key selectors per domain (``"voltage"``,
                ``"voltage.*"``, ``"*.raw"``).
            rep: rep for selectors that omit it (None: every rep).
            label: optional view name (default ``"<label>_view"``).

        Returns:
            The view.

        Raises:
            KeyError: a column or selector matches nothing in this FeatureSet.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("se", {"a": [1.0], "b": [2.0], "y": [0.0]},
            ...                           ["a", "b"], "y")
            >>> fs.select(["features.b.raw", "targets.y.raw"]).feature_keys
            ['b']
            >>> fs.select(features="a", rep="raw").get_all_keys()
            ['features.a.raw', 'sample_uuids']
        """
        from modjax.data.view import select_columns
        cols = select_columns(self, columns, features, targets, tags, rep)
        return FeatureSetView.from_featureset(self, columns=cols,
                                              label=label or f"{self.label}_view")

    def rows_for_uuids(self, uuids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row indices (int64) of sample uuids, e.g. to map results back to samples.

        Raises:
            KeyError: a uuid is not in this FeatureSet (the message names it).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("uu", {"x": [1.0, 2.0, 3.0], "y": [0., 0., 1.]},
            ...                           "x", "y")
            >>> fs.rows_for_uuids(fs.sample_uuids[[2, 0]]).tolist()
            [2, 0]
        """
        want = np.asarray(uuids).astype(str)
        have = self._numpy_column(SAMPLE_UUIDS).astype(str)
        order = np.argsort(have, kind="stable")
        pos = np.searchsorted(have, want, sorter=order)
        pos = np.minimum(pos, len(have) - 1) if len(have) else pos
        rows = order[pos] if len(have) else np.zeros(len(want), dtype=np.int64)
        bad = ~(have[rows] == want) if len(have) else np.ones(len(want), dtype=bool)
        if bad.any():
            raise KeyError(f"FeatureSet {self.label!r} has no sample with uuid "
                           f"{str(want[bad][0])!r} ({int(bad.sum())} unknown uuids)")
        return rows.astype(np.int64)

    def take_uuids(self, uuids: Sequence[str] | np.ndarray, *,
                   label: str | None = None) -> FeatureSetView:
        """A view of the samples with these uuids (in the given order).

        Args:
            uuids: sample uuids.
            label: optional view name.

        Returns:
            The view.

        Raises:
            KeyError: an unknown uuid.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tu", {"x": [1.0, 2.0], "y": [0.0, 1.0]}, "x", "y")
            >>> fs.take_uuids(fs.sample_uuids[::-1]).indices.tolist()
            [1, 0]
        """
        return FeatureSetView(self, self.rows_for_uuids(uuids), label=label)

    def reference(self, columns: Sequence[str] | None = None, *,
                  features: str | Sequence[str] | None = None,
                  targets: str | Sequence[str] | None = None,
                  tags: str | Sequence[str] | None = None,
                  rep: str | None = None) -> FeatureSetReference:
        """A symbolic :class:`FeatureSetReference` to some keys.

        Selectors are keys or wildcards (``"volt*"``), optionally with the domain prefix
        and a rep suffix (``"features.voltage.raw"``). A domain that is not selected
        (neither here nor in ``columns``) contributes all its keys.

        Raises:
            KeyError: a selector matches no key.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ref", {"v1": [1.], "v2": [2.], "y": [0.]},
            ...                           ["v1", "v2"], "y")
            >>> fs.reference(features="v*", rep="raw").features
            ('v1', 'v2')
        """
        return make_reference(self, columns, features, targets, tags, rep)

    def column_reference(self, column: str | None = None, *, feature: str | None = None,
                         target: str | None = None, tag: str | None = None,
                         rep: str | None = None) -> FeatureSetColumnReference:
        """A symbolic reference to exactly one column (selector may be a wildcard).

        Args:
            column: full name ``domain.key[.rep]`` (or give one of the next three).
            feature, target, tag: a key selector of that domain.
            rep: representation (None: transformed when present, resolved on use).

        Returns:
            A :class:`FeatureSetColumnReference`.

        Raises:
            KeyError: nothing matches. ValueError: several keys match, or not exactly one
            selector was given.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("cr", {"voltage": [1.0], "y": [0.0]}, "voltage", "y")
            >>> fs.column_reference(feature="volt*").column
            'features.voltage.raw'
        """
        return make_column_reference(self, column, feature, target, tag, rep)
