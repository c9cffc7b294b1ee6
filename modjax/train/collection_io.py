"""Saving and loading an ExperimentCollection.

A saved collection is a directory: ``collection.json`` (label, members, their overrides
and metric histories) and ``members/<label>/``, each an ordinary graph checkpoint of
that member's final variables and optimizer state, which ``graph.restore_checkpoint``
loads on its own. The directory is written under a temporary name and renamed when
complete, so a failed save leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modjax.errors import CheckpointError

__all__ = ["save_collection", "load_collection", "member_checkpoint"]

FORMAT = "modjax.ExperimentCollection/1"


def member_checkpoint(path: str | Path, label: str) -> Path:
    """Where member ``label``'s graph checkpoint is in a saved collection.

    Example:
        >>> member_checkpoint("runs", "lr0.01").as_posix()
        'runs/members/lr0.01'
    """
    return Path(path) / "members" / label


def _json_overrides(label: str, ov: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(ov)
    for k, v in out.get("splits", {}).items():
        if not isinstance(v, str):
            raise TypeError(f"member {label!r}: split override {k!r} is a view; only split names "
                            "can be saved (bind the view as a named split first)")
    if "hyperparams" in out:
        out["hyperparams"] = {k: float(v) for k, v in out["hyperparams"].items()}
    return out


def save_collection(coll: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``coll`` to the directory ``path`` (see the module docstring).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: a member has not run.
    """
    from modjax.train.compare import member_history

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    todo = [m for m in coll.members.values()]
    missing = [m.label for m in todo if m.state is None]
    if missing:
        raise ValueError(f"collection {coll.label!r}: members {missing} have not run; nothing saved")
    meta = {"format": FORMAT, "label": coll.label, "members": [
        {"label": m.label, "shared": m.shared, "overrides": _json_overrides(m.label, m.overrides),
         "vectorized": list(m.vectorized),
         "history": member_history(m.results) if m.results is not None else m.history}
        for m in todo]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for m in todo:
            exp = m.experiment
            before = exp.get_state()
            try:
                exp.set_state(m.state)
                exp.model_graph.save_checkpoint(member_checkpoint(tmp, m.label),
                                                meta={"collection": coll.label, "member": m.label})
            finally:
                exp.set_state(before)
        (tmp / "collection.json").write_text(json.dumps(meta, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_collection(cls: Any, path: str | Path, *, template: Any = None,
                    experiments: Mapping[str, Any] | None = None) -> Any:
    """Rebuild a saved collection over ``template`` / ``experiments``.

    Each member's checkpoint is restored into its Experiment's graph to take its state,
    then the Experiment is put back as it was (an Experiment member keeps its final
    state, as after a run). Histories come back for :meth:`table` and :meth:`plot_html`.

    Raises:
        CheckpointError: not a saved collection, or a member checkpoint is missing.
        ValueError: a template member without ``template``, or an Experiment member
            without its entry in ``experiments`` (named).
    """
    path = Path(path)
    meta_file = path / "collection.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{path} is not a saved ExperimentCollection (no collection.json)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
    experiments = dict(experiments or {})
    for m in meta["members"]:
        if not member_checkpoint(path, m["label"]).exists():
            raise CheckpointError(f"{path}: member {m['label']!r} has no checkpoint")
        if m["shared"] and template is None:
            raise ValueError(f"member {m['label']!r} ran from a template; pass template=")
        if not m["shared"] and m["label"] not in experiments:
            raise ValueError(f"member {m['label']!r} is an Experiment; pass experiments="
                             f"{{{m['label']!r}: ...}}")
    coll = cls(label=meta["label"], template=template)
    for m in meta["members"]:
        member = (coll.add_member(m["label"], **m["overrides"]) if m["shared"]
                  else coll.add(experiments[m["label"]], label=m["label"]))
        exp = member.experiment
        before = exp.get_state()
        try:
            exp.model_graph.restore_checkpoint(member_checkpoint(path, m["label"]))
            member.state = exp.get_state()
        finally:
            exp.set_state(before)
        member.history, member.vectorized = m.get("history"), list(m.get("vectorized", []))
        if not member.shared:
            exp.set_state(member.state)
    return coll
