"""Cut a label-path subtree out of ``{"params", "state"}`` variables, and load one back in.

A subtree in its own namespace is ``{"params": params[at], "state": state[at]}``: the
same shape of tree a standalone graph of that part has, so a checkpoint of a standalone
encoder loads into ``"encoder"`` of a bigger graph and vice versa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from modjax.errors import CheckpointError, LabelPathError
from modjax.io.checkpoints import Artifact, open_artifact
from modjax.io.pytree_store import ZERO_HASH, describe_tree
from modjax.io.reports import LoadReport
from modjax.paths import get_at, join_path, set_at, split_path

__all__ = ["COLLECTIONS", "extract_subtree", "insert_subtree", "load_subtree"]

COLLECTIONS = ("params", "state")


def extract_subtree(variables: dict[str, Any], at: str | tuple[str, ...] | None) -> dict[str, Any]:
    """``{"params": params[at], "state": state[at]}`` (the whole tree when ``at`` is empty).

    Raises:
        LabelPathError: ``at`` does not resolve in the params.

    Example:
        >>> v = {"params": {"enc": {"w": 1}, "head": {"w": 2}}, "state": {"enc": {}, "head": {}}}
        >>> extract_subtree(v, "enc")
        {'params': {'w': 1}, 'state': {}}
    """
    parts = split_path(at or ())
    if not parts:
        return variables
    out = {}
    for c in COLLECTIONS:
        if c not in variables:
            continue
        coll = variables[c]
        if c == "params":
            out[c] = get_at(coll, parts, what="graph's params")
        else:
            # Stateless nodes may have no state entry at this depth.
            try:
                out[c] = get_at(coll, parts, what="graph's state")
            except LabelPathError:
                out[c] = {}
    return out


def insert_subtree(variables: dict[str, Any], at: str | tuple[str, ...] | None,
                   sub: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``variables`` with the subtree at ``at`` replaced by ``sub``."""
    parts = split_path(at or ())
    if not parts:
        return sub
    out = dict(variables)
    for c in COLLECTIONS:
        if c in sub and c in variables:
            try:
                out[c] = set_at(variables[c], parts, sub[c])
            except LabelPathError:
                if sub[c]:
                    raise
    return out


def _by_path(tree: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any], Any]:
    spec, leaves = describe_tree(tree)
    recs = {r["path"]: r for r in spec["leaves"]}
    vals = {r["path"]: x for r, x in zip(spec["leaves"], leaves)}
    return recs, vals, spec


def _fmt(r: dict[str, Any]) -> str:
    return f"{r['dtype']}{tuple(r['shape'])}"


def load_subtree(variables: dict[str, Any], at: str | tuple[str, ...] | None,
                 checkpoint: str | Path | Artifact, *, strict: bool = True,
                 item: str = "variables", where: str = "graph") -> tuple[dict[str, Any], LoadReport]:
    """Load a checkpoint's variables into the subtree ``at`` of ``variables``.

    The checkpoint's structural hash is compared with the target subtree's. Strict mode
    (default) loads everything or nothing: any missing, unexpected or mismatched leaf
    is a :class:`CheckpointError` carrying the report. With ``strict=False`` the leaves
    that match by name, shape and dtype are loaded and the rest reported.

    Args:
        variables: the full ``{"params", "state"}`` tree of the receiving graph.
        at: label path of the subtree (``"encoder"``), or None/``""`` for the whole tree.
        checkpoint: artifact path or an opened :class:`Artifact` with a ``variables`` item.
        strict: refuse partial loads.
        item: which pytree item of the checkpoint to read.
        where: names the receiving object in messages.

    Returns:
        ``(new_variables, report)``; ``variables`` itself is not modified.

    Raises:
        LabelPathError: ``at`` does not exist in the receiving graph.
        CheckpointError: missing/truncated checkpoint, or (strict) a structure mismatch.
    """
    art = checkpoint if isinstance(checkpoint, Artifact) else open_artifact(checkpoint)
    at_name = join_path(split_path(at or ())) or "<root>"
    target = extract_subtree(variables, at)
    spec = art.spec(item)
    t_recs, t_vals, t_spec = _by_path(target)
    c_recs = {r["path"]: r for r in spec["leaves"]}
    hash_matched = art.structural_hash not in (None, ZERO_HASH) and \
        art.structural_hash == t_spec["hash"]
    loaded, missing, mismatched, details = [], [], [], {}
    for name, tr in t_recs.items():
        cr = c_recs.get(name)
        if cr is None:
            missing.append(name)
        elif cr["shape"] != tr["shape"] or cr["dtype"] != tr["dtype"]:
            mismatched.append(name)
            details[name] = f"checkpoint {_fmt(cr)} vs target {_fmt(tr)}"
        else:
            loaded.append(name)
    unexpected = sorted(set(c_recs) - set(t_recs))
    report = LoadReport(tuple(loaded), tuple(missing), tuple(mismatched), tuple(unexpected),
                        details, hash_matched)
    if not report.is_complete and (strict or not loaded):
        hint = " (pass strict=False to load the matching part)" if strict and loaded else ""
        raise CheckpointError(
            f"checkpoint {str(art.path)!r} does not match {where} subtree {at_name!r}: "
            f"{report.summary()}{hint}")
    if report.is_complete:
        sub = art.restore(item, target)
    else:
        restored = art.restore(item)
        stored_vals = {r["path"]: x for r, x in
                       zip(spec["leaves"], _leaves_in_spec_order(restored, spec))}
        ok = set(loaded)
        new_leaves = []
        for name, old in t_vals.items():
            if name in ok:
                new = stored_vals[name]
                sh = old.sharding if isinstance(old, jax.Array) else None
                new = jax.device_put(new, sh) if sh is not None and isinstance(
                    new, np.ndarray) else new
                new_leaves.append(new)
            else:
                new_leaves.append(old)
        treedef = jax.tree_util.tree_structure(target)
        sub = jax.tree_util.tree_unflatten(treedef, new_leaves)
    return insert_subtree(variables, at, sub), report


def _leaves_in_spec_order(tree: Any, spec: dict[str, Any]) -> list[Any]:
    _, leaves = describe_tree(tree)
    if len(leaves) != len(spec["leaves"]):
        raise CheckpointError("restored tree does not match its manifest")
    return leaves
