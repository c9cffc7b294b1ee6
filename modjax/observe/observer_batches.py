"""Scan-driven batch input of the Observer: whole epochs of per-batch values, metrics
and tagged tensors pushed in one host transfer.

A mixin of :class:`~modjax.observe.observer.Observer`, which supplies the tag routing
(``_route``), the start stamp and the value series these methods push into. It is kept
apart because the scan path (arrays of batches, weights, masks) is separate from the
per-forward ``collect``/``record`` cycle and from the history queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modjax.observe.series import to_host

__all__ = ["ObserverBatchesMixin"]


class ObserverBatchesMixin:
    """Per-batch arrays of a scanned epoch pushed into an Observer's batch buffers."""

    def _batch_weights(self, what: str, weights: Any, n: int) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (n,):
            raise ValueError(f"{self._owner}: {what}: {n} values but {w.shape[0]} weights")
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"{self._owner}: {what}: weights must be finite and non-negative")
        return w

    @staticmethod
    def _batch_array(values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        return v.reshape(1) if v.ndim == 0 else v

    def record_batch_values(self, tag: str, values: Any, weights: Any | None = None) -> None:
        """Push a whole epoch of per-batch values (e.g. the stacked output of a ``lax.scan``).

        Args:
            tag: tag to record under (dotted child paths are routed).
            values: 1-D array-like, one value per batch (a scalar counts as one batch).
            weights: optional non-negative per-batch weights of the same length, e.g.
                the number of real (unmasked) samples in each batch; the epoch value is
                then the weighted mean and weight-0 (fully padded) batches drop out.

        Raises:
            ValueError: values not 1-D, weights of another length, or negative weights.
        """
        node, local = self._route(tag)
        v = self._batch_array(values)
        what = f"record_batch_values({tag!r})"
        if v.ndim != 1:
            raise ValueError(f"{node._owner}: {what} takes one value per batch (1-D); got "
                             f"shape {v.shape}")
        w = None if weights is None else node._batch_weights(what, weights, v.shape[0])
        self.mark_start()
        node.mark_start()
        node._push_batches(local, v, w)

    def _push_batches(self, local: str, v: np.ndarray, w: np.ndarray | None) -> None:
        if w is not None and not w.all():
            keep = w > 0
            v, w = v[keep], w[keep]
        self._values.push(local, v, w)

    def record_batches(self, metrics: Mapping[str, Any], weights: Any | None = None) -> None:
        """Push per-batch arrays of several metrics at once (one host transfer).

        This is the scan-driven entry point: after ``carry, metrics = epoch(carry)`` (one
        ``lax.scan``), call ``record_batches(metrics, weights)`` then ``flush()``.

        Args:
            metrics: ``{tag: (n_batches,) array}``, e.g. the metrics a scanned epoch returned.
            weights: optional ``(n_batches,)`` weights shared by every metric (e.g.
                unmasked samples per batch).

        Raises:
            ValueError: a metric is not 1-D or disagrees with the weights (nothing is
                recorded then).

        Example:
            >>> from modjax.observe import Observer
            >>> obs = Observer()
            >>> obs.record_batches({"loss": np.array([4.0, 2.0, 9.0])}, weights=[1, 3, 0])
            >>> obs.flush()
            {'loss': 2.5}
        """
        metrics, weights = to_host(dict(metrics), weights)
        arrays = {tag: self._batch_array(v) for tag, v in metrics.items()}
        for tag, a in arrays.items():  # validate everything before pushing anything
            if a.ndim != 1:
                raise ValueError(f"{self._owner}: record_batches: metric {tag!r} has shape "
                                 f"{a.shape}; expected one value per batch")
        w = None
        if weights is not None and arrays:
            n = {a.shape[0] for a in arrays.values()}
            if len(n) > 1:
                raise ValueError(f"{self._owner}: record_batches: metrics disagree on the "
                                 f"number of batches: { {t: a.shape[0] for t, a in arrays.items()} }")
            w = self._batch_weights("record_batches", weights, n.pop())
        self.mark_start()
        for tag, a in arrays.items():
            node, local = self._route(tag)
            node.mark_start()
            node._push_batches(local, a, w)

    def record_batch_tags(self, tensors: Mapping[str, Any], mask: Any | None = None) -> None:
        """Push per-batch, per-sample tagged tensors of a scanned epoch as per-batch means.

        What a phase captures for a tag is a ``(n_batches, batch, ...)`` stack; the
        observer keeps scalars. Each batch becomes the mean over its real samples (and
        all feature elements), weighted by how many real samples it had, so the epoch
        value is the mean over every real sample: what a loop doing
        ``record(tag, tagged[mask].mean())`` per batch, weighted by batch size, gets.

        Args:
            tensors: ``{tag: (n_batches, batch, ...) array}`` (e.g. a phase's captured
                tags); a ``{"default": array}`` role dict is accepted for a tag.
            mask: ``(n_batches, batch)`` real-sample mask; all samples count when None.

        Raises:
            ValueError: a tensor has fewer than two dimensions or disagrees with the mask
                or the other tensors on ``(n_batches, batch)`` (nothing is recorded then).

        Example:
            >>> from modjax.observe import Observer
            >>> obs = Observer()
            >>> hidden = np.array([[[1.0, 3.0], [5.0, 7.0]], [[2.0, 2.0], [9.0, 9.0]]])
            >>> obs.record_batch_tags({"hidden": hidden}, mask=[[1, 1], [1, 0]])
            >>> obs.collected("hidden"), obs.flush()
            ([4.0, 2.0], {'hidden': 3.3333333333333335})
        """
        tensors, mask = to_host(dict(tensors), mask)
        arrays = {}
        for tag, v in tensors.items():
            if isinstance(v, Mapping):
                if set(v) != {"default"}:
                    raise ValueError(f"{self._owner}: record_batch_tags: tag {tag!r} has roles "
                                     f"{sorted(v)}; pass one array per tag")
                v = v["default"]
            a = np.asarray(v, dtype=np.float64)
            if a.ndim < 2:
                raise ValueError(f"{self._owner}: record_batch_tags: tag {tag!r} has shape "
                                 f"{a.shape}; expected (n_batches, batch, ...)")
            arrays[tag] = a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2)
        shapes = {t: a.shape for t, a in arrays.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"{self._owner}: record_batch_tags: tags disagree on "
                             f"(n_batches, batch): {shapes}")
        if not arrays:
            return
        (nb, bs), = set(shapes.values())
        m = np.ones((nb, bs)) if mask is None else np.asarray(mask, dtype=np.float64)
        if m.shape != (nb, bs):
            raise ValueError(f"{self._owner}: record_batch_tags: mask has shape {m.shape}, "
                             f"tags have (n_batches, batch) = {(nb, bs)}")
        counts = m.sum(axis=1)
        safe = np.where(counts > 0, counts, 1.0)
        self.mark_start()
        for tag, a in arrays.items():
            node, local = self._route(tag)
            node.mark_start()
            node._push_batches(local, (a * m).sum(axis=1) / safe, counts)
