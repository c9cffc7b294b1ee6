"""Mermaid diagram of a FeatureSet and its splits."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from modjax.data.schema import DOMAIN_FEATURES, DOMAIN_TAGS, DOMAIN_TARGETS

if TYPE_CHECKING:
    from modjax.data.featureset import FeatureSet

__all__ = ["featureset_mermaid"]


def _node_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _esc(text: str) -> str:
    return text.replace('"', "#quot;")


def _columns(view, domain: str) -> str:
    keys = view.keys_of(domain)
    if not keys:
        return ""
    items = ", ".join(f"{k} {view.get_shape(domain, k)}" for k in keys)
    return f"<br/>{domain}: {items}"


def featureset_mermaid(fs: FeatureSet, *, show_features: bool = True, show_targets: bool = True,
                       show_tags: bool | str = "root", show_overlaps: bool = True) -> str:
    """Mermaid ``flowchart TD`` text for ``fs`` (see :meth:`FeatureSet.visualize`).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("mm", {"x": [1.0, 2.0], "y": [0.0, 1.0]}, "x", "y")
        >>> "<b>mm</b><br/>n_samples=2" in featureset_mermaid(fs)
        True
    """
    if show_tags not in (True, False, "root"):
        raise ValueError(f"show_tags must be True, False or 'root', got {show_tags!r}")

    def label(view, title: str, root: bool) -> str:
        text = f"<b>{title}</b>" if root else title
        text += f"<br/>n_samples={view.n_samples}"
        if show_features:
            text += _columns(view, DOMAIN_FEATURES)
        if show_targets:
            text += _columns(view, DOMAIN_TARGETS)
        if show_tags is True or (show_tags == "root" and root):
            text += _columns(view, DOMAIN_TAGS)
        return _esc(text)

    root = _node_id(f"fs_{fs.label}")
    lines = ["flowchart TD", f'    {root}["{label(fs, fs.label, True)}"]']
    ids = {}
    for name, view in fs.splits.items():
        nid = _node_id(f"split_{name}")
        ids[name] = nid
        lines.append(f'    {nid}["{label(view, name, False)}"]')
        lines.append(f"    {root} --> {nid}")
    if show_overlaps:
        names = list(fs.splits)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                n = np.intersect1d(fs.splits[a].indices, fs.splits[b].indices).size
                if n:
                    lines.append(f'    {ids[a]} -. "overlap {n}" .- {ids[b]}')
    return "\n".join(lines)
