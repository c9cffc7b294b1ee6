"""Phase results: per-epoch losses, recorded outputs/targets, metrics, source views.

Recorded arrays stay on the device until an accessor asks for them (no host transfer
per batch or per epoch beyond the scalar losses). Rows that were padding in the index
plan are dropped by the ``stacked_*`` accessors, so ``stacked_tensors`` lines up with
``stacked_tensors(..., "sample_uuids")`` sample for sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jax
import numpy as np

from modjax.notebook import ResultsNotebookRepr
from modjax.train.query import ArtifactResult, AxisSeries

__all__ = ["MetricStore", "PhaseResults", "TrainResults", "EvalResults", "FitResults",
           "PhaseGroupResults", "EpochRecord", "BindingRecord", "CallbackLog"]

_REDUCERS = {"mean": np.mean, "sum": np.sum, "last": lambda a: a[-1], "first": lambda a: a[0],
             "min": np.min, "max": np.max}


def _reduce(values: Any, reducer: str) -> float:
    if reducer not in _REDUCERS:
        raise ValueError(f"unknown reducer {reducer!r}; expected one of {sorted(_REDUCERS)}")
    return float(_REDUCERS[reducer](np.asarray(values)))


class MetricStore:
    """Scalar metrics by name, each a list of ``(epoch, batch, value)`` entries.

    Example:
        >>> m = MetricStore()
        >>> m.log("val_loss", 0.5, epoch=0); m.log("val_loss", 0.25, epoch=1)
        >>> m.series("val_loss"), m.last("val_loss")
        ([0.5, 0.25], 0.25)
    """

    def __init__(self) -> None:
        self._data: dict[str, list[tuple[int, int | None, float]]] = {}

    def log(self, name: str, value: float, *, epoch: int, batch: int | None = None) -> None:
        """Record one value."""
        self._data.setdefault(name, []).append((int(epoch), batch, float(value)))

    @property
    def names(self) -> list[str]:
        return sorted(self._data)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def entries(self, name: str) -> list[tuple[int, int | None, float]]:
        """All ``(epoch, batch, value)`` entries of a metric."""
        if name not in self._data:
            raise KeyError(f"metric {name!r} was not logged; logged metrics: {self.names}")
        return list(self._data[name])

    def series(self, name: str, *, reducer: str = "last") -> list[float]:
        """One value per epoch (several per epoch are reduced with ``reducer``)."""
        by_epoch: dict[int, list[float]] = {}
        for e, _, v in self.entries(name):
            by_epoch.setdefault(e, []).append(v)
        return [_reduce(by_epoch[e], reducer) for e in sorted(by_epoch)]

    def epoch_value(self, name: str, epoch: int, *, reducer: str = "last") -> float | None:
        vals = [v for e, _, v in self._data.get(name, []) if e == epoch]
        return _reduce(vals, reducer) if vals else None

    def last(self, name: str) -> float:
        return self.entries(name)[-1][2]

    def to_dict(self) -> dict[str, list[float]]:
        return {n: self.series(n) for n in self.names}

    def __call__(self) -> AxisSeries:
        """Every entry as a query series keyed ``(name, epoch, batch)`` (epoch-level
        entries have ``batch=None``; a coordinate logged twice keeps its last value).

        Example:
            >>> m = MetricStore(); m.log("val_loss", 0.5, epoch=0); m.log("val_loss", 0.2, epoch=1)
            >>> m().where(name="val_loss", epoch=1).one()
            0.2
        """
        return AxisSeries(("name", "epoch", "batch"),
                          {(n, e, b): v for n in self.names for e, b, v in self._data[n]})


def short_loss_label(label: str, node: str | None) -> str:
    """ModularML's name for a loss: ``"mse"`` for modjax's default ``"<node>.mse"``.

    Example:
        >>> short_loss_label("Head.mse", "Head"), short_loss_label("custom", "Head")
        ('mse', 'custom')
    """
    if node and label.startswith(f"{node}."):
        return label[len(node) + 1:]
    return label


class LossAliases:
    """Resolve ModularML's short loss names (``"mse"``) to modjax labels (``"Head.mse"``)
    when exactly one loss has that short name."""

    def __init__(self, loss_nodes: Mapping[str, str]) -> None:
        self._full = set(loss_nodes)
        self._short: dict[str, list[str]] = {}
        for lbl, node in loss_nodes.items():
            self._short.setdefault(short_loss_label(lbl, node), []).append(lbl)

    def resolve(self, name: Any) -> Any:
        if not isinstance(name, str) or name in self._full or name not in self._short:
            return name
        full = self._short[name]
        if len(full) > 1:
            raise KeyError(f"loss name {name!r} is ambiguous: it is {sorted(full)}; use the full "
                           "label")
        return full[0]


class LossDict(dict):
    """``{loss label: value}`` that also answers to the short name (``d["mse"]``).

    Example:
        >>> d = LossDict({"Head.mse": 0.5}, LossAliases({"Head.mse": "Head"}))
        >>> d["mse"], d["Head.mse"]
        (0.5, 0.5)
    """

    def __init__(self, values: Mapping[str, Any], aliases: LossAliases) -> None:
        super().__init__(values)
        self._aliases = aliases

    def __missing__(self, key: Any) -> Any:
        full = self._aliases.resolve(key)
        if full == key or full not in self:
            raise KeyError(f"no loss {key!r}; losses: {sorted(self)}")
        return self[full]


class LossSeries(AxisSeries):
    """Loss query series whose ``where(label=...)`` also takes short names (``"mse"``)."""

    def __init__(self, axes: Any, data: Mapping[tuple, Any], aliases: LossAliases) -> None:
        super().__init__(axes, data)
        self._aliases = aliases

    def where(self, **coords: Any) -> AxisSeries:
        if "label" in coords:
            want = coords["label"]
            if isinstance(want, (list, tuple, set, frozenset)):
                coords["label"] = [self._aliases.resolve(w) for w in want]
            else:
                coords["label"] = self._aliases.resolve(want)
        out = super().where(**coords)
        return LossSeries(out.axes, dict(out.items()), self._aliases)


class CallbackLog(list):
    """What callbacks reported (JSON-friendly dicts); calling it gives the query series.

    Each entry is a dict with at least ``"callback"`` (its label) and optionally
    ``"kind"``, ``"epoch"``, ``"batch"`` and ``"edge"`` (the hook that wrote it).

    Example:
        >>> log = CallbackLog([{"callback": "EarlyStopping", "best_epoch": 3}])
        >>> log().where(label="EarlyStopping").one()["best_epoch"]
        3
    """

    def __call__(self) -> AxisSeries:
        """Entries keyed ``(kind, label, epoch, batch, edge)``."""
        data = {}
        for i, d in enumerate(self):
            d = d if isinstance(d, Mapping) else {"callback": str(d)}
            label = d.get("callback", f"callback_{i}")
            key = (d.get("kind", label), label, d.get("epoch"), d.get("batch"),
                   d.get("edge", "phase_end"))
            data[key] = d
        return AxisSeries(("kind", "label", "epoch", "batch", "edge"), data)


@dataclass
class BindingRecord:
    """What a phase fed one head: its view and the host index plan of an epoch."""

    key: str                 # batch key (head node label)
    node: str                # head node label
    view: Any                # FeatureSetView the plan indexes
    reference: Any           # FeatureSetReference of the head
    indices: dict[str, np.ndarray]   # role -> [n_batches, batch]
    mask: dict[str, np.ndarray]


@dataclass
class EpochRecord:
    """One epoch: per-batch losses (host) and recorded tensors (device, lazy)."""

    epoch: int
    loss: np.ndarray
    losses: dict[str, np.ndarray]
    records: Any = None
    bindings: dict[str, BindingRecord] = field(default_factory=dict)
    started_at: float = 0.0   # wall clock (time.time()) when the epoch's plan was made
    ended_at: float = 0.0     # wall clock when its losses were on the host

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at


class PhaseResults(ResultsNotebookRepr):
    """Shared accessors of train/eval/fit results."""

    kind = "phase"

    def __init__(self, label: str, *, graph: Any = None, loss_nodes: Mapping[str, str] | None = None
                 ) -> None:
        self.label = label
        self.graph = graph
        self.loss_nodes = dict(loss_nodes or {})   # loss label -> node label
        self.epochs: dict[int, EpochRecord] = {}
        self.metrics = MetricStore()
        self.callbacks = CallbackLog()
        self.stopped_early = False
        self._artifacts: list[ArtifactResult] = []

    @property
    def callbacks(self) -> CallbackLog:
        """Callback reports (a list; ``results.callbacks()`` queries it)."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, entries: Any) -> None:
        self._callbacks = CallbackLog(entries)

    # ----------------------------------------------------------------- queries
    def losses(self, node: Any = None) -> AxisSeries:
        """Per-batch loss values keyed ``(epoch, batch, label)``.

        Args:
            node: only losses applied to this node (label or node); None: all.

        Returns:
            An :class:`~modjax.train.query.AxisSeries`; batches that held no real
            samples (padding, inactive samplers) are left out. E.g.
            ``results.losses("Head").collapse("batch", "mean")`` gives epoch means;
            ``where(label="mse")`` takes ModularML's short loss name when unambiguous.
        """
        label = None if node is None else self._node_label(node)
        if label is not None and label not in set(self.loss_nodes.values()):
            raise KeyError(f"phase {self.label!r} has no loss on node {label!r}; losses are on "
                           f"{sorted(set(self.loss_nodes.values()))}")
        data = {}
        for e in self.epoch_indices:
            rec = self.epochs[e]
            counts = self._batch_counts(rec)
            real = counts > 0 if rec.bindings and (counts > 0).any() else np.ones_like(counts, bool)
            for lbl, vals in rec.losses.items():
                if label is not None and self.loss_nodes.get(lbl) != label:
                    continue
                for b, v in enumerate(np.asarray(vals, dtype=np.float64).reshape(-1)):
                    if b < len(real) and real[b]:
                        data[(e, b, lbl)] = float(v)
        return LossSeries(("epoch", "batch", "label"), data, LossAliases(self.loss_nodes))

    def log_artifact(self, name: str, value: Any, *, epoch: int | None = None,
                     batch: int | None = None, source: str | None = None) -> ArtifactResult:
        """Keep a named value (see :meth:`artifacts`); returns the record."""
        art = ArtifactResult(name, value, epoch, batch, source)
        self._artifacts.append(art)
        return art

    def artifacts(self) -> AxisSeries:
        """Artifacts keyed ``(name, epoch, batch)`` (values are
        :class:`~modjax.train.query.ArtifactResult`; an Evaluation callback stores its
        EvalResults per epoch under its label)."""
        return AxisSeries(("name", "epoch", "batch"),
                          {(a.name, a.epoch, a.batch): a for a in self._artifacts})

    # ----------------------------------------------------------------- recording
    def add_epoch(self, rec: EpochRecord, *, keep_records: bool = True) -> None:
        if not keep_records:
            rec.records = None
        self.epochs[rec.epoch] = rec

    def drop_records_except(self, epoch: int) -> None:
        for e, rec in self.epochs.items():
            if e != epoch:
                rec.records = None

    # ----------------------------------------------------------------- basic queries
    @property
    def epoch_indices(self) -> list[int]:
        return sorted(self.epochs)

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    @property
    def batch_indices(self) -> list[int]:
        rec = self._epoch(None)
        return list(range(len(rec.loss)))

    @property
    def n_batches(self) -> int:
        return len(self.batch_indices)

    @property
    def epoch_durations(self) -> list[float]:
        """Wall-clock seconds of each recorded epoch (plan, scan, losses on the host)."""
        return [self.epochs[e].duration for e in self.epoch_indices]

    def _epoch(self, epoch: int | None) -> EpochRecord:
        if not self.epochs:
            raise ValueError(f"results of phase {self.label!r} hold no epochs")
        e = self.epoch_indices[-1] if epoch is None else epoch
        if e not in self.epochs:
            raise KeyError(f"phase {self.label!r} has no epoch {e}; epochs: {self.epoch_indices}")
        return self.epochs[e]

    def _node_label(self, node: Any) -> str:
        return getattr(node, "label", node)

    # ----------------------------------------------------------------- losses
    def batch_losses(self, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Per-batch values of every loss in an epoch (default: last)."""
        return dict(self._epoch(epoch).losses)

    def aggregated_losses(self, node: Any, *, reducer: Literal["mean", "sum"] = "mean",
                          epoch: int | None = None) -> dict[str, float]:
        """Losses on ``node`` reduced over the batches of an epoch (default: last).

        ``"mean"`` weights each batch by its real (unmasked) samples, so it is the
        per-sample mean for batch-mean losses; fully padded/inactive batches drop out.
        """
        label = self._node_label(node)
        rec = self._epoch(epoch)
        mine = [lbl for lbl, n in self.loss_nodes.items() if n == label]
        if not mine:
            raise KeyError(f"phase {self.label!r} has no loss on node {label!r}; losses are on "
                           f"{sorted(set(self.loss_nodes.values()))}")
        counts = self._batch_counts(rec)
        out = {}
        for lbl in mine:
            vals = np.asarray(rec.losses[lbl], dtype=np.float64)
            if reducer == "mean" and counts.sum() > 0:
                # weighted by real samples: a short last batch counts for what it holds
                out[lbl] = float(np.sum(vals * counts) / counts.sum())
            else:
                out[lbl] = _reduce(vals[counts > 0] if (counts > 0).any() else vals, reducer)
        return LossDict(out, LossAliases(self.loss_nodes))

    def _batch_counts(self, rec: EpochRecord) -> np.ndarray:
        """Real (unmasked) samples per batch (max over bindings and roles)."""
        n = len(rec.loss)
        c = np.zeros(n)
        for b in rec.bindings.values():
            for m in b.mask.values():
                c = np.maximum(c, np.asarray(m).reshape(n, -1).sum(axis=1))
        return c

    # ----------------------------------------------------------------- tensors
    def _binding_for(self, rec: EpochRecord, node: str) -> BindingRecord:
        return rec.bindings[self._heads_of(rec, node)[0]]

    def _rows(self, rec: EpochRecord, node: str, role: str) -> tuple[np.ndarray, np.ndarray]:
        """(absolute source rows, valid mask) flattened over batches."""
        b = self._binding_for(rec, node)
        r = role if role in b.indices else next(iter(b.indices))
        pos = np.asarray(b.indices[r]).reshape(-1)
        mask = np.asarray(b.mask[r]).reshape(-1)
        rows = np.asarray(b.view.indices)[pos]
        return rows, mask

    def stacked_tensors(self, node: Any, domain: str = "outputs", *, role: str = "default",
                        fmt: str | None = None, unscale: bool = False,
                        epoch: int | None = None) -> Any:
        """A domain of ``node`` concatenated over the batches of an epoch (padding dropped).

        Args:
            node: node label (or node).
            domain: ``"outputs"``, ``"targets"``, ``"tags"`` (captured tags) or
                ``"sample_uuids"``.
            role: sampler role.
            fmt: ``"np"``/``"numpy"`` (default) or ``"jax"``.
            unscale: invert the FeatureSet's target scalers (outputs/targets only).
            epoch: which epoch (default: the last recorded one).

        Returns:
            The stacked array ``(n_valid_samples, ...)``.
        """
        label = self._node_label(node)
        rec = self._epoch(epoch)
        rows, mask = self._rows(rec, label, role)
        if domain == "sample_uuids":
            b = self._binding_for(rec, label)
            # only the asked rows: an out-of-core uuid column is never read whole
            return np.asarray(b.view.source._numpy_column("sample_uuids")[rows[mask]])
        if domain not in ("outputs", "targets", "tags"):
            raise ValueError(f"domain must be outputs, targets, tags or sample_uuids, got {domain!r}")
        if rec.records is None:
            raise ValueError(f"phase {self.label!r} did not record tensors for epoch {rec.epoch} "
                             "(result_recording='none' or 'last')")
        store = rec.records[domain]
        if label not in store:
            raise KeyError(f"phase {self.label!r} recorded no {domain} for node {label!r}; "
                           f"recorded: {sorted(store)}")
        per_role = store[label]
        r = role if role in per_role else None
        if r is None:
            raise KeyError(f"node {label!r} has no {domain} for role {role!r}; roles: {sorted(per_role)}")
        arr = np.asarray(jax.device_get(per_role[r]))
        arr = arr.reshape((-1,) + arr.shape[2:])[mask]
        if unscale:
            if domain not in ("outputs", "targets"):
                raise ValueError("unscale applies to outputs and targets only")
            arr = self._unscale(rec, label, arr)
        if fmt in ("jax", "jnp"):
            import jax.numpy as jnp
            return jnp.asarray(arr)
        if fmt not in (None, "np", "numpy"):
            raise ValueError(f"fmt must be 'np' or 'jax', got {fmt!r}")
        return arr

    def _unscale(self, rec: EpochRecord, node: str, arr: np.ndarray) -> np.ndarray:
        b = self._binding_for(rec, node)
        fs = b.view.source
        keys = list(getattr(b.reference, "targets", ()) or fs.target_keys)
        if not callable(getattr(fs, "unscale_data_for_cols", None)):
            raise TypeError(f"FeatureSet {fs.label!r} cannot invert its scalers")
        return np.asarray(fs.unscale_data_for_cols(data=arr, domain="targets", columns=keys))

    def stacked_batches(self, node: Any, *, role: str = "default", epoch: int | None = None
                        ) -> dict[str, Any]:
        """``{"outputs", "targets", "sample_uuids", "mask"}`` of ``node``, stacked (padding kept
        out; ``mask`` is all True and given for symmetry with raw batches)."""
        label = self._node_label(node)
        rec = self._epoch(epoch)
        out = {"outputs": self.stacked_tensors(label, "outputs", role=role, epoch=epoch),
               "sample_uuids": self.stacked_tensors(label, "sample_uuids", role=role, epoch=epoch)}
        if rec.records is not None and label in rec.records["targets"]:
            out["targets"] = self.stacked_tensors(label, "targets", role=role, epoch=epoch)
        out["mask"] = np.ones(len(out["sample_uuids"]), dtype=bool)
        return out

    def source_views(self, node: Any, *, role: str = "default", epoch: int | None = None
                     ) -> dict[str, Any]:
        """``{featureset_label: view}`` of the unique samples that fed ``node``."""
        label = self._node_label(node)
        recs = [self._epoch(epoch)] if epoch is not None else [self.epochs[e] for e in self.epoch_indices]
        views: dict[str, Any] = {}
        heads = self._heads_of(recs[-1], label)
        for h in heads:
            rows = []
            for rec in recs:
                b = rec.bindings[h]
                r = role if role in b.indices else next(iter(b.indices))
                pos = np.asarray(b.indices[r]).reshape(-1)[np.asarray(b.mask[r]).reshape(-1)]
                rows.append(np.asarray(b.view.indices)[pos])
            b = recs[-1].bindings[h]
            fs = b.view.source
            uniq = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
            views[fs.label] = fs.take(uniq, label=f"{self.label}.{label}")
        return views

    def _heads_of(self, rec: EpochRecord, node: str) -> list[str]:
        if node in rec.bindings:
            return [node]
        found, stack, seen = [], [node], set()
        while stack and self.graph is not None and hasattr(self.graph, "upstream_of"):
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in rec.bindings:
                found.append(n)
                continue
            try:
                stack.extend(self.graph.upstream_of(n))
            except Exception:
                pass
        return found or list(rec.bindings)

    def source_view(self, node: Any, *, role: str = "default", epoch: int | None = None) -> Any:
        """The single source view of ``node`` (error if several FeatureSets feed it)."""
        views = self.source_views(node, role=role, epoch=epoch)
        if len(views) != 1:
            raise ValueError(f"node {self._node_label(node)!r} is fed by {len(views)} FeatureSets "
                             f"({sorted(views)}); use source_views")
        return next(iter(views.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, epochs={self.n_epochs})"


class TrainResults(PhaseResults):
    """Results of a TrainPhase: per-epoch ``train_loss`` and callback metrics."""

    kind = "train"

    @property
    def train_loss(self) -> list[float]:
        return self.metrics.series("train_loss")

    @property
    def val_loss(self) -> list[float]:
        return self.metrics.series("val_loss")


class EvalResults(PhaseResults):
    """Results of an EvalPhase (one epoch, many batches)."""

    kind = "eval"


class FitResults(PhaseResults):
    """Results of a FitPhase (one epoch, one batch)."""

    kind = "fit"


class PhaseGroupResults(ResultsNotebookRepr):
    """Results in the same hierarchy as the PhaseGroup that produced them."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._results: dict[str, PhaseResults | PhaseGroupResults] = {}

    def add_result(self, result: PhaseResults | PhaseGroupResults) -> None:
        if not isinstance(result, (PhaseResults, PhaseGroupResults)):
            raise TypeError(f"expected PhaseResults or PhaseGroupResults, got {type(result).__name__}")
        if result.label in self._results:
            raise ValueError(f"group results {self.label!r} already hold {result.label!r}")
        self._results[result.label] = result

    def items(self) -> Iterator[tuple[str, PhaseResults | PhaseGroupResults]]:
        return iter(list(self._results.items()))

    @property
    def labels(self) -> list[str]:
        return list(self._results)

    @property
    def phase_results(self) -> dict[str, PhaseResults]:
        return {k: v for k, v in self._results.items() if isinstance(v, PhaseResults)}

    @property
    def group_results(self) -> dict[str, PhaseGroupResults]:
        return {k: v for k, v in self._results.items() if isinstance(v, PhaseGroupResults)}

    def flatten(self) -> dict[str, PhaseResults]:
        out: dict[str, PhaseResults] = {}
        for k, v in self._results.items():
            sub = v.flatten() if isinstance(v, PhaseGroupResults) else {k: v}
            for lbl, r in sub.items():
                if lbl in out:
                    raise ValueError(f"phase label {lbl!r} appears twice in group {self.label!r}")
                out[lbl] = r
        return out

    def _get(self, label: str | None, cls: type) -> Any:
        flat = self.flatten() if cls is not PhaseGroupResults else self.group_results
        if label is None:
            found = [r for r in flat.values() if isinstance(r, cls)]
            if len(found) != 1:
                raise KeyError(f"group {self.label!r} holds {len(found)} {cls.__name__}; pass a label")
            return found[0]
        if label not in flat:
            raise KeyError(f"no result {label!r} in group {self.label!r}; labels: {sorted(flat)}")
        if not isinstance(flat[label], cls):
            raise TypeError(f"result {label!r} is a {type(flat[label]).__name__}, not {cls.__name__}")
        return flat[label]

    def get_phase_result(self, label: str) -> PhaseResults:
        return self._get(label, PhaseResults)

    def get_train_result(self, label: str | None = None) -> TrainResults:
        return self._get(label, TrainResults)

    def get_eval_result(self, label: str | None = None) -> EvalResults:
        return self._get(label, EvalResults)

    def get_fit_result(self, label: str | None = None) -> FitResults:
        return self._get(label, FitResults)

    def get_group_result(self, label: str | None = None) -> PhaseGroupResults:
        return self._get(label, PhaseGroupResults)

    def __getitem__(self, label: str) -> Any:
        return self._results[label]

    def __repr__(self) -> str:
        return f"PhaseGroupResults({self.label!r}, {self.labels})"
