"""Cross-validation: replay a phase group per fold on views of a FeatureSet.

Folds are index views (no data is copied). For each fold the bound FeatureSet's
``train``/``val`` splits (names configurable) are swapped for the fold's views, the
experiment's state is reset to what it was before cross-validation (same initial
variables, optimizer state, sampler counters), and the template runs. Afterwards the
original splits and state are restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax.context import ExperimentContext
from modjax.data.splitters import random_split
from modjax.io.registry import deserialize, register, serialize
from modjax.train.experiment import Experiment, PhaseGroup
from modjax.train.phases import ExperimentPhase
from modjax.train.query import AxisSeries
from modjax.train.results import PhaseGroupResults, TrainResults

__all__ = ["CVBinding", "CrossValidation", "CVResults"]


def _keys(v: str | Sequence[str] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


@register("CVBinding")
class CVBinding:
    """How one FeatureSet takes part in cross-validation.

    Args:
        fs: the FeatureSet (or its label/id in the active context).
        source_splits: existing splits pooled before folding (e.g. ``["train", "val"]``).
        group_by: tag key(s): a group never straddles train and val.
        stratify_by: key(s): each fold keeps the strata proportions.
        train_split_name: split name each fold's training part is bound under.
        val_split_name: split name each fold's validation part is bound under.
        val_size: validation fraction per fold; None means ``1 / n_folds`` with disjoint
            validation folds covering the pool (k-fold). Otherwise each fold draws its own
            random split (Monte-Carlo cross-validation).
    """

    def __init__(self, fs: Any, source_splits: Sequence[str], *,
                 group_by: str | Sequence[str] | None = None,
                 stratify_by: str | Sequence[str] | None = None, train_split_name: str = "train",
                 val_split_name: str = "val", val_size: float | None = None) -> None:
        if isinstance(fs, str):
            fs = ExperimentContext.get_active().get_node(fs, enforce_type="FeatureSet")
        self.fs = fs
        if isinstance(source_splits, str):
            source_splits = [source_splits]
        missing = [s for s in source_splits if s not in fs.available_splits]
        if missing or not source_splits:
            raise ValueError(f"CVBinding: FeatureSet {fs.label!r} has no split(s) {missing}; "
                             f"splits: {fs.available_splits}")
        if group_by is not None and stratify_by is not None:
            raise ValueError("CVBinding: group_by and stratify_by are mutually exclusive")
        if val_size is not None and not 0.0 < val_size < 1.0:
            raise ValueError(f"CVBinding: val_size must be in (0, 1), got {val_size}")
        if train_split_name == val_split_name:
            raise ValueError("CVBinding: train_split_name and val_split_name must differ")
        self.source_splits = list(source_splits)
        self.group_by, self.stratify_by = _keys(group_by), _keys(stratify_by)
        self.train_split_name, self.val_split_name = train_split_name, val_split_name
        self.val_size = val_size

    def get_config(self) -> dict[str, Any]:
        """JSON config; the FeatureSet is named by label and id (resolved on load)."""
        return {"featureset_label": self.fs.label, "featureset_id": self.fs.node_id,
                "source_splits": list(self.source_splits), "group_by": self.group_by,
                "stratify_by": self.stratify_by, "train_split_name": self.train_split_name,
                "val_split_name": self.val_split_name, "val_size": self.val_size}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> CVBinding:
        """Rebuild against the FeatureSet of that id (else label) in the active context."""
        ctx = ExperimentContext.get_active()
        fid = config.get("featureset_id")
        fs = ctx.get_node(node_id=fid) if fid and ctx.has_node(node_id=fid) else \
            ctx.get_node(config["featureset_label"], enforce_type="FeatureSet")
        return cls(fs, config["source_splits"], group_by=config.get("group_by"),
                   stratify_by=config.get("stratify_by"),
                   train_split_name=config.get("train_split_name", "train"),
                   val_split_name=config.get("val_split_name", "val"),
                   val_size=config.get("val_size"))

    def pool(self) -> np.ndarray:
        """Sorted, unique source rows of the pooled splits."""
        return np.unique(np.concatenate([np.asarray(self.fs.get_split(s).indices)
                                         for s in self.source_splits]))

    def folds(self, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(train_rows, val_rows)]`` per fold."""
        pool = self.pool()
        kw = {"group_by": self.group_by, "stratify_by": self.stratify_by}
        if self.val_size is None:
            if n_folds < 2:
                raise ValueError("k-fold cross-validation needs n_folds >= 2 (or set val_size)")
            parts = random_split(self.fs, {f"fold{i}": 1.0 / n_folds for i in range(n_folds)},
                                 seed=seed, rows=pool, **kw)
            return [(np.setdiff1d(pool, parts[f"fold{i}"]), parts[f"fold{i}"])
                    for i in range(n_folds)]
        out = []
        for i in range(n_folds):
            parts = random_split(self.fs, {"train": 1.0 - self.val_size, "val": self.val_size},
                                 seed=seed + i, rows=pool, **kw)
            out.append((parts["train"], parts["val"]))
        return out


def template_phase_states(template: PhaseGroup) -> list[tuple[Any, Any]]:
    """``(phase, state)`` of every phase of ``template`` that keeps state (TrainPhases)."""
    return [(p, p.get_state()) for p in template.flatten() if hasattr(p, "epochs_run")]


def restore_phase_states(states: list[tuple[Any, Any]]) -> None:
    """Put back what :func:`template_phase_states` recorded."""
    for p, st in states:
        p.set_state(st)


class CVResults:
    """Per-fold results plus mean/std of each phase's final metrics."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.folds: list[PhaseGroupResults] = []
        self.fold_rows: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    @property
    def fold_labels(self) -> list[str]:
        """Fold group labels in run order (``"<cv label>_fold<i>"``)."""
        return [f.label for f in self.folds]

    def get_fold(self, fold: int | str) -> PhaseGroupResults:
        """One fold's results, by index or by label."""
        if isinstance(fold, int) and not isinstance(fold, bool):
            if not -self.n_folds <= fold < self.n_folds:
                raise IndexError(f"CV {self.label!r} has {self.n_folds} folds, no fold {fold}")
            return self.folds[fold]
        for f in self.folds:
            if f.label == fold:
                return f
        raise KeyError(f"no fold {fold!r} in CV {self.label!r}; folds: {self.fold_labels}")

    def collect(self, extractor: Any) -> AxisSeries:
        """Apply ``extractor(fold_results)`` to every fold; key the answers by fold.

        An extractor returning an AxisSeries gets ``fold`` prepended to its axes; any
        other value is keyed ``(fold,)``.
        """
        parts = [(f.label, extractor(f)) for f in self.folds]
        if parts and all(isinstance(v, AxisSeries) for _, v in parts):
            return AxisSeries.merge([v.prepend("fold", lab) for lab, v in parts])
        return AxisSeries(("fold",), {(lab,): v for lab, v in parts})

    def losses(self, node: Any = None, *, phase: str | None = None) -> AxisSeries:
        """Per-batch training losses of every fold, keyed ``(fold, epoch, batch, label)``.

        Args:
            node: only losses on this node (None: all).
            phase: the TrainPhase label (needed when a fold holds several).
        """
        return self.collect(lambda f: f.get_train_result(phase).losses(node))

    def epoch_losses(self, node: Any = None, *, phase: str | None = None,
                     reducer: str = "mean") -> AxisSeries:
        """Training losses reduced over batches, keyed ``(fold, epoch, label)``."""
        return self.losses(node, phase=phase).collapse("batch", reducer)

    def fold_metrics(self) -> list[dict[str, float]]:
        """Per fold: ``{"<phase>.<metric>": value}`` (last epoch; eval losses too)."""
        out = []
        for fr in self.folds:
            m: dict[str, float] = {}
            for lbl, res in fr.flatten().items():
                for name in res.metrics.names:
                    m[f"{lbl}.{name}"] = res.metrics.series(name)[-1]
            out.append(m)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean", "std", "min", "max"}}`` across folds."""
        per = self.fold_metrics()
        names = sorted(set().union(*per)) if per else []
        out = {}
        for n in names:
            vals = np.array([p[n] for p in per if n in p], dtype=np.float64)
            out[n] = {"mean": float(vals.mean()), "std": float(vals.std()),
                      "min": float(vals.min()), "max": float(vals.max())}
        return out

    def get_train_results(self, label: str | None = None) -> list[TrainResults]:
        return [f.get_train_result(label) for f in self.folds]

    def __repr__(self) -> str:
        return f"CVResults({self.label!r}, n_folds={self.n_folds})"


@register("CrossValidation")
class CrossValidation:
    """Run a TrainPhase or PhaseGroup once per fold (ModularML's ``CrossValidation``).

    Args:
        label: label of the generated fold groups (``"<label>_fold<i>"``).
        bindings: one CVBinding per FeatureSet taking part.
        n_folds: number of folds.
        seed: RNG seed for the fold assignment.
        phase: template to run per fold (default: the experiment's execution plan).
        experiment: the Experiment (default: the active context's).
        parallel: train the folds together: each TrainPhase of the group runs as one
            vmapped program over the folds (``modjax.train.cv_parallel``); per-fold
            results equal the sequential run's.
        mesh: with ``parallel``, a ``Mesh`` with a ``"replica"`` axis to shard the
            folds over.
    """

    def __init__(self, *, label: str = "CV", bindings: CVBinding | Sequence[CVBinding],
                 n_folds: int = 5, seed: int = 13, phase: Any = None,
                 experiment: Experiment | None = None, parallel: bool = False,
                 mesh: Any = None) -> None:
        if isinstance(bindings, CVBinding):
            bindings = [bindings]
        if not bindings or not all(isinstance(b, CVBinding) for b in bindings):
            raise TypeError("CrossValidation needs one or more CVBinding objects")
        if not isinstance(n_folds, int) or n_folds < 1:
            raise ValueError(f"CrossValidation: n_folds must be an int >= 1, got {n_folds!r}")
        if experiment is None:
            experiment = ExperimentContext.get_active().get_experiment()
        if not isinstance(experiment, Experiment):
            raise TypeError("CrossValidation needs an Experiment (pass experiment= or create one "
                            "in the active context)")
        if phase is not None and not isinstance(phase, (ExperimentPhase, PhaseGroup)):
            raise TypeError(f"CrossValidation phase must be a phase or PhaseGroup, got "
                            f"{type(phase).__name__}")
        self.label, self.bindings, self.n_folds, self.seed = label, list(bindings), n_folds, seed
        self.phase, self.experiment = phase, experiment
        self.parallel, self.mesh = bool(parallel), mesh

    def get_config(self) -> dict[str, Any]:
        """JSON config (the experiment is the active context's on load)."""
        return {"label": self.label, "bindings": [serialize(b) for b in self.bindings],
                "n_folds": self.n_folds, "seed": self.seed,
                "phase": None if self.phase is None else serialize(self.phase),
                "parallel": self.parallel}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, experiment: Experiment | None = None,
                    **kw: Any) -> CrossValidation:
        """Rebuild; ``experiment`` defaults to the active context's."""
        phase = config.get("phase")
        return cls(label=config["label"], bindings=[deserialize(b, **kw) for b in config["bindings"]],
                   n_folds=config["n_folds"], seed=config["seed"],
                   phase=None if phase is None else deserialize(phase, **kw), experiment=experiment,
                   parallel=config.get("parallel", False))

    @property
    def phase_template(self) -> PhaseGroup:
        """The group each fold runs (the experiment's plan when no phase was given)."""
        return self._template()

    def _template(self) -> PhaseGroup:
        if self.phase is None:
            return self.experiment.execution_plan
        if isinstance(self.phase, PhaseGroup):
            return self.phase
        return PhaseGroup(self.label, [self.phase])

    def run(self, *, show_fold_progress: bool = True, persist_progress: bool = False,
            **kwargs: Any) -> CVResults:
        """Run every fold; the experiment's state and the FeatureSets' splits are restored.

        Other keyword arguments are the display options of ``Experiment.run_phase``
        (an unknown name is a ``TypeError`` naming the closest ones).
        """
        from modjax.train.options import check_options
        check_options("CrossValidation.run", kwargs)
        if self.parallel:
            from modjax.train.cv_parallel import run_parallel
            return run_parallel(self, mesh=self.mesh, **kwargs)
        exp = self.experiment
        folds = [b.folds(self.n_folds, self.seed) for b in self.bindings]
        template = self._template()
        start = exp.get_state()
        # a template outside the experiment's plan is not in its state: its phase counters
        # and sampler RNG are reset per fold too, so every fold starts alike
        phases = template_phase_states(template)
        saved = []
        for b in self.bindings:
            names = (b.train_split_name, b.val_split_name)
            saved.append({n: b.fs.get_split(n) for n in names if n in b.fs.available_splits})
        out = CVResults(self.label)
        kwargs.setdefault("show_training_progress", False)
        from tqdm.auto import tqdm

        bar = tqdm(range(self.n_folds), desc=self.label, unit="fold", leave=persist_progress,
                   disable=not show_fold_progress)
        try:
            for i in bar:
                rows = {}
                for b, fb in zip(self.bindings, folds):
                    tr, va = fb[i]
                    self._bind(b, tr, va, i)
                    rows[b.fs.label] = (tr, va)
                exp.set_state(start)
                restore_phase_states(phases)
                group = PhaseGroup(f"{self.label}_fold{i}", list(template.all))
                out.folds.append(exp._execute_group(group, **kwargs))
                out.fold_rows.append(rows)
        finally:
            bar.close()
            for b, old in zip(self.bindings, saved):
                for n in (b.train_split_name, b.val_split_name):
                    if n in b.fs.available_splits:
                        b.fs.remove_split(n)
                for n, v in old.items():
                    b.fs.add_split(v, n)
            exp.set_state(start)
            restore_phase_states(phases)
        return out

    @staticmethod
    def _bind(b: CVBinding, train_rows: np.ndarray, val_rows: np.ndarray, fold: int) -> None:
        for n in (b.train_split_name, b.val_split_name):
            if n in b.fs.available_splits:
                b.fs.remove_split(n)
        b.fs.add_split(b.fs.take(train_rows, label=b.train_split_name), b.train_split_name)
        b.fs.add_split(b.fs.take(val_rows, label=b.val_split_name), b.val_split_name)
