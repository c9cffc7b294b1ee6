"""An Experiment's execution history as JSON + one pytree (written with Orbax).

Each :class:`~modjax.train.experiment.ExperimentRun` becomes a JSON record (label,
status, ISO times, error, and its results' hierarchy: phase kind, loss nodes, metric
entries, callback logs, per-epoch times and binding descriptions) plus array leaves in
one pytree keyed like the JSON (per-batch losses, recorded tensors, index plans and the
view rows). Reading it back rebuilds the same results classes, so ``train_loss``,
``metrics``, ``aggregated_losses``, ``stacked_tensors`` and ``source_view`` answer as
before the save. Views and references are rebuilt from their configs in the active
context, so the FeatureSets must be loaded first (an Experiment artifact does that).
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from modjax.errors import CheckpointError, ConfigError
from modjax.io.registry import deserialize, serialize

__all__ = ["history_payload", "history_from_payload"]

# Attributes every PhaseResults has; anything else JSON-able (best_epoch, nan_stop...) is kept.
_KNOWN = {"label", "graph", "loss_nodes", "epochs", "metrics", "callbacks", "stopped_early"}


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays made plain; raises TypeError if impossible."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | jax.Array):
        return np.asarray(value).tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    json.dumps(value)
    return value


def _results_classes() -> dict[str, type]:
    from modjax.train import results as r

    return {c.__name__: c for c in (r.PhaseResults, r.TrainResults, r.EvalResults,
                                    r.FitResults, r.PhaseGroupResults)}


def _phase_payload(res: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics = {n: [[int(e), b, float(v)] for e, b, v in res.metrics.entries(n)]
               for n in res.metrics.names}
    attrs = {}
    for k, v in vars(res).items():
        if k in _KNOWN or k.startswith("_"):
            continue
        try:
            attrs[k] = _jsonable(v)
        except TypeError:
            continue  # runtime-only objects are not part of the record
    try:
        callbacks = _jsonable(list(res.callbacks))
    except TypeError:
        callbacks = [repr(c) for c in res.callbacks]
    epochs_json, arrays = [], {}
    for e in res.epoch_indices:
        rec = res.epochs[e]
        bindings = {}
        b_arrays = {}
        for key, b in rec.bindings.items():
            try:
                cfg = {"node": b.node, "view": serialize(b.view),
                       "reference": None if b.reference is None else serialize(b.reference)}
            except ConfigError as err:
                # Losses and metrics are still worth keeping; only the sample lookups go.
                warnings.warn(f"{where}: epoch {rec.epoch} binding {key!r} is not saved "
                              f"(stacked_tensors/source_view will not answer for it): {err}",
                              stacklevel=2)
                continue
            bindings[key] = cfg
            b_arrays[key] = {"rows": np.asarray(b.view.indices),
                             "indices": {r: np.asarray(x) for r, x in b.indices.items()},
                             "mask": {r: np.asarray(x) for r, x in b.mask.items()}}
        epochs_json.append({"epoch": int(rec.epoch), "started_at": float(rec.started_at),
                            "ended_at": float(rec.ended_at), "losses": list(rec.losses),
                            "bindings": list(bindings), "binding_configs": bindings,
                            "records": rec.records is not None})
        arrays[str(int(rec.epoch))] = {
            "loss": np.asarray(rec.loss),
            "losses": {k: np.asarray(v) for k, v in rec.losses.items()},
            "records": rec.records,
            "bindings": b_arrays,
        }
    return ({"type": type(res).__name__, "label": res.label, "loss_nodes": dict(res.loss_nodes),
             "stopped_early": bool(res.stopped_early), "metrics": metrics,
             "callbacks": callbacks, "attrs": attrs, "epochs": epochs_json}, arrays)


def _results_payload(res: Any, where: str) -> tuple[dict[str, Any] | None, Any]:
    if res is None:
        return None, None
    if type(res).__name__ == "PhaseGroupResults":
        kids, arrays = [], {}
        for i, (_, child) in enumerate(res.items()):
            j, a = _results_payload(child, f"{where}.{child.label}")
            kids.append(j)
            arrays[str(i)] = a
        return {"type": "PhaseGroupResults", "label": res.label, "children": kids}, arrays
    if type(res).__name__ not in _results_classes():
        raise CheckpointError(f"{where}: cannot save results of type {type(res).__name__}")
    return _phase_payload(res, where)


def history_payload(history: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(runs JSON, arrays pytree)`` describing an Experiment's ``history``.

    Args:
        history: the ExperimentRun list (``experiment.history``).

    Returns:
        The JSON list (one record per run) and a pytree of arrays keyed by run index.

    Example:
        >>> from modjax.train.experiment import ExperimentRun
        >>> runs, arrays = history_payload([ExperimentRun("warmup", status="completed")])
        >>> runs[0]["label"], runs[0]["status"], runs[0]["results"]
        ('warmup', 'completed', None)
    """
    runs, arrays = [], {}
    for i, run in enumerate(history):
        res_json, res_arrays = _results_payload(run.results, f"history[{i}] {run.label!r}")
        runs.append({"label": run.label, "status": run.status,
                     "started_at": run.started_at.isoformat() if run.started_at else None,
                     "ended_at": run.ended_at.isoformat() if run.ended_at else None,
                     "error": run.error, "results": res_json})
        arrays[str(i)] = res_arrays
    return runs, arrays


def _phase_from(j: dict[str, Any], arrays: Any, graph: Any, where: str) -> Any:
    from modjax.train.results import BindingRecord, EpochRecord

    cls = _results_classes().get(j.get("type", ""))
    if cls is None:
        raise CheckpointError(f"{where}: unknown results type {j.get('type')!r}")
    res = cls(j["label"], graph=graph, loss_nodes=j.get("loss_nodes", {}))
    res.stopped_early = bool(j.get("stopped_early", False))
    res.callbacks = list(j.get("callbacks", []))
    for k, v in j.get("attrs", {}).items():
        setattr(res, k, v)
    for name, entries in j.get("metrics", {}).items():
        for e, b, v in entries:
            res.metrics.log(name, v, epoch=e, batch=b)
    for ej in j.get("epochs", []):
        a = arrays[str(ej["epoch"])]
        bindings = {}
        for key in ej["bindings"]:
            bc, ba = ej["binding_configs"][key], a["bindings"][key]
            view = deserialize(bc["view"], state={"indices": np.asarray(ba["rows"])})
            ref = None if bc["reference"] is None else deserialize(bc["reference"])
            bindings[key] = BindingRecord(key=key, node=bc["node"], view=view, reference=ref,
                                          indices=dict(ba["indices"]), mask=dict(ba["mask"]))
        losses = {k: a["losses"][k] for k in ej["losses"]}
        res.add_epoch(EpochRecord(epoch=int(ej["epoch"]), loss=a["loss"], losses=losses,
                                  records=a["records"] if ej["records"] else None,
                                  bindings=bindings, started_at=ej["started_at"],
                                  ended_at=ej["ended_at"]))
    return res


def _results_from(j: dict[str, Any] | None, arrays: Any, graph: Any, where: str) -> Any:
    if j is None:
        return None
    if j.get("type") == "PhaseGroupResults":
        from modjax.train.results import PhaseGroupResults

        out = PhaseGroupResults(j["label"])
        for i, child in enumerate(j.get("children", [])):
            out.add_result(_results_from(child, arrays[str(i)], graph,
                                         f"{where}.{child.get('label')}"))
        return out
    return _phase_from(j, arrays, graph, where)


def _time(s: str | None) -> _dt.datetime | None:
    return None if s is None else _dt.datetime.fromisoformat(s)


def history_from_payload(runs: list[dict[str, Any]], arrays: Any, *, graph: Any = None,
                         where: str = "history") -> list[Any]:
    """Rebuild the ExperimentRun list written by :func:`history_payload`.

    Args:
        runs: the JSON list.
        arrays: the restored arrays pytree.
        graph: the model graph results refer to (for node lookups in accessors).
        where: names the artifact in error messages.

    Returns:
        A list of ExperimentRun with their results.

    Raises:
        CheckpointError: a record or its arrays are incomplete (names the run).

    Example:
        >>> from modjax.train.experiment import ExperimentRun
        >>> runs, arrays = history_payload([ExperimentRun("fit", status="failed", error="boom")])
        >>> back = history_from_payload(runs, arrays)[0]
        >>> back.label, back.status, back.error
        ('fit', 'failed', 'boom')
    """
    from modjax.train.experiment import ExperimentRun

    out = []
    arrays = arrays or {}
    for i, r in enumerate(runs):
        try:
            results = _results_from(r.get("results"), arrays.get(str(i)), graph,
                                    f"{where}[{i}] {r.get('label')!r}")
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{where}[{i}] {r.get('label')!r}: history record is "
                                  f"incomplete: {type(e).__name__}: {e}") from e
        out.append(ExperimentRun(r["label"], status=r.get("status", "completed"),
                                 started_at=_time(r.get("started_at")),
                                 ended_at=_time(r.get("ended_at")), results=results,
                                 error=r.get("error")))
    return out
