"""Symbolic references to FeatureSet columns (what graph head nodes are wired to).

A reference names a FeatureSet (label and id) and the keys of each domain; it holds no
data. ``resolve()`` finds the FeatureSet in the active ExperimentContext (falling back
to the instance it was made from), so a reference survives a config round trip.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    DOMAINS,
    REPS,
    check_rep,
    column_name,
)
from modjax.errors import closest_names
from modjax.io.registry import register

if TYPE_CHECKING:
    from modjax.data.featureset import FeatureSet
    from modjax.data.view import FeatureSetView

__all__ = ["FeatureSetReference", "FeatureSetColumnReference", "select_keys"]


def _parse_selector(sel: str, domain: str) -> tuple[str, str | None]:
    """``"features.volt*.raw"`` / ``"volt*"`` / ``"voltage.raw"`` -> (key pattern, rep)."""
    parts = sel.split(".")
    if len(parts) > 1 and parts[0] in DOMAINS:
        if parts[0] != domain:
            raise ValueError(f"selector {sel!r} names domain {parts[0]!r} but was given for "
                             f"{domain!r}")
        parts = parts[1:]
    rep = None
    if len(parts) == 2 and parts[1] in REPS:
        rep = parts[1]
        parts = parts[:1]
    if len(parts) != 1 or not parts[0]:
        raise ValueError(f"cannot parse {domain} selector {sel!r}; expected 'key', "
                         f"'key.rep' or '{domain}.key[.rep]' (wildcards * ? allowed in key)")
    return parts[0], rep


def select_keys(fs: FeatureSet | FeatureSetView, domain: str,
                selectors: str | Sequence[str] | None,
                rep: str | None = None) -> tuple[list[str], str | None]:
    """Expand selectors (exact keys or wildcards) of one domain into keys.

    Args:
        fs: FeatureSet or view whose keys are searched.
        domain: the domain the selectors belong to.
        selectors: key names / patterns; None selects every key of the domain.
        rep: default representation.

    Returns:
        ``(keys in selector order, rep)``; a rep given inside a selector overrides ``rep``.

    Raises:
        KeyError: a selector matches no key (the message names it and the nearest keys).
    """
    avail = fs.keys_of(domain)
    if selectors is None:
        return list(avail), rep
    sels = [selectors] if isinstance(selectors, str) else list(selectors)
    out: list[str] = []
    reps = set()
    for sel in sels:
        pat, r = _parse_selector(sel, domain)
        if r is not None:
            reps.add(r)
        hits = [k for k in avail if fnmatch.fnmatchcase(k, pat)]
        if not hits:
            raise KeyError(
                f"FeatureSet {fs.source.label if hasattr(fs, 'source') else fs.label!r} has no "
                f"{domain} key matching {sel!r}; available {domain} keys: {avail} "
                f"(did you mean {closest_names(pat, avail)}?)")
        out.extend(k for k in hits if k not in out)
    if len(reps) > 1:
        raise ValueError(f"{domain} selectors {sels} ask for different reps {sorted(reps)}")
    return out, (reps.pop() if reps else rep)


@register("FeatureSetReference")
@dataclass(frozen=True)
class FeatureSetReference:
    """Symbolic pointer to some keys of a FeatureSet.

    Attributes:
        featureset_label: label of the FeatureSet.
        featureset_id: node id of the FeatureSet.
        features, targets, tags: tuples of key names per domain.
        rep: ``"raw"``, ``"transformed"`` or None (transformed when present).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("r", {"a": [[1., 2.]], "b": [[3., 4.]], "y": [0.]},
        ...                           ["a", "b"], "y")
        >>> ref = fs.reference(features="*")
        >>> ref.features, ref.feature_shape, ref.target_shape
        (('a', 'b'), (2, 2), (1,))
    """

    featureset_label: str
    featureset_id: str
    features: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rep: str | None = None
    _instance: Any = field(default=None, compare=False, repr=False, hash=False)

    def resolve(self) -> FeatureSet:
        """The referenced FeatureSet: by id, then label, in the active context; else the
        instance this reference was made from."""
        from modjax.context import ExperimentContext
        from modjax.errors import RegistrationError
        ctx = ExperimentContext.get_active()
        if ctx.has_node(node_id=self.featureset_id):
            return ctx.get_node(node_id=self.featureset_id)  # type: ignore[return-value]
        if ctx.has_node(label=self.featureset_label):
            return ctx.get_node(label=self.featureset_label,  # type: ignore[return-value]
                                enforce_type="FeatureSet")
        if self._instance is not None:
            return self._instance
        raise RegistrationError(
            f"FeatureSet {self.featureset_label!r} (id {self.featureset_id}) is not registered "
            "in the active ExperimentContext")

    @property
    def node_label(self) -> str:
        """ModularML's name for :attr:`featureset_label` (the upstream node's label)."""
        return self.featureset_label

    @property
    def node_id(self) -> str:
        """ModularML's name for :attr:`featureset_id`."""
        return self.featureset_id

    def _shape(self, domain: str, keys: tuple[str, ...]) -> tuple[int, ...] | None:
        if not keys:
            return None
        return self.resolve().stacked_shape(domain, list(keys))

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """Per-sample stacked feature shape ``(n_keys, *s)`` (None if no features)."""
        return self._shape(DOMAIN_FEATURES, self.features)

    @property
    def target_shape(self) -> tuple[int, ...] | None:
        """Per-sample stacked target shape ``(n_keys, *s)`` (None if no targets)."""
        return self._shape(DOMAIN_TARGETS, self.targets)

    @property
    def tag_shape(self) -> tuple[int, ...] | None:
        """Per-sample stacked tag shape (None if no tags)."""
        return self._shape(DOMAIN_TAGS, self.tags)

    @property
    def columns(self) -> list[str]:
        """Full column names this reference reads (rep None -> resolved now)."""
        fs = self.resolve()
        out = []
        for dom, keys in ((DOMAIN_FEATURES, self.features), (DOMAIN_TARGETS, self.targets),
                          (DOMAIN_TAGS, self.tags)):
            out.extend(column_name(dom, k, fs.resolve_rep(dom, k, self.rep)) for k in keys)
        return out

    def to_view(self, split: str | None = None) -> FeatureSetView:
        """A view of the referenced FeatureSet (or one of its splits)."""
        fs = self.resolve()
        return fs.get_split(split) if split is not None else fs.to_view()

    def get_config(self) -> dict[str, Any]:
        """JSON config (label, id, key tuples as lists, rep)."""
        return {"featureset_label": self.featureset_label, "featureset_id": self.featureset_id,
                "features": list(self.features), "targets": list(self.targets),
                "tags": list(self.tags), "rep": self.rep}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureSetReference:
        """Inverse of :meth:`get_config`."""
        return cls(featureset_label=config["featureset_label"],
                   featureset_id=config["featureset_id"],
                   features=tuple(config.get("features", ())),
                   targets=tuple(config.get("targets", ())),
                   tags=tuple(config.get("tags", ())), rep=config.get("rep"))


@register("FeatureSetColumnReference")
@dataclass(frozen=True)
class FeatureSetColumnReference:
    """Symbolic pointer to one column ``domain.key.rep`` of a FeatureSet.

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("c", {"v": [1., 2.], "y": [0., 1.]}, "v", "y")
        >>> fs.column_reference(feature="v").column
        'features.v.raw'
    """

    featureset_label: str
    featureset_id: str
    domain: str
    key: str
    rep: str | None = None
    _instance: Any = field(default=None, compare=False, repr=False, hash=False)

    @property
    def column(self) -> str:
        """Full column name (rep None -> resolved now)."""
        rep = self.rep or self.resolve().resolve_rep(self.domain, self.key, None)
        return column_name(self.domain, self.key, rep)

    def resolve(self) -> FeatureSet:
        """The referenced FeatureSet (see :meth:`FeatureSetReference.resolve`)."""
        return FeatureSetReference(self.featureset_label, self.featureset_id,
                                   _instance=self._instance).resolve()

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape of the column."""
        return self.resolve().get_shape(self.domain, self.key)

    def get_config(self) -> dict[str, Any]:
        return {"featureset_label": self.featureset_label, "featureset_id": self.featureset_id,
                "domain": self.domain, "key": self.key, "rep": self.rep}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureSetColumnReference:
        return cls(**{k: config[k] for k in ("featureset_label", "featureset_id", "domain",
                                             "key")}, rep=config.get("rep"))


def _domain_selectors(fs: FeatureSet, columns: Sequence[str] | str | None, features: Any,
                      targets: Any, tags: Any) -> dict[str, list[str] | None]:
    """``{domain: selectors or None}`` from ``columns=`` (``domain.key...``) and per-domain args."""
    sel: dict[str, list[str] | None] = {DOMAIN_FEATURES: None, DOMAIN_TARGETS: None,
                                        DOMAIN_TAGS: None}
    if columns is not None:
        for col in [columns] if isinstance(columns, str) else columns:
            dom = col.split(".")[0]
            if dom not in DOMAINS:
                raise KeyError(f"column {col!r} of FeatureSet {fs.label!r} does not start with a "
                               f"domain {list(DOMAINS)}")
            sel[dom] = (sel[dom] or []) + [col]
    for dom, given in ((DOMAIN_FEATURES, features), (DOMAIN_TARGETS, targets),
                       (DOMAIN_TAGS, tags)):
        if given is not None:
            sel[dom] = (sel[dom] or []) + ([given] if isinstance(given, str) else list(given))
    return sel


def make_reference(fs: FeatureSet, columns: Sequence[str] | None, features: Any, targets: Any,
                   tags: Any, rep: str | None) -> FeatureSetReference:
    """Build a FeatureSetReference for :meth:`FeatureSet.reference`."""
    if rep is not None:
        check_rep(rep)
    sel = _domain_selectors(fs, columns, features, targets, tags)
    out: dict[str, tuple[str, ...]] = {}
    reps: set[str] = set()
    for dom, s in sel.items():
        keys, r = select_keys(fs, dom, s, rep)
        out[dom] = tuple(keys)
        if r is not None and s is not None:
            reps.add(r)
    if rep is None and len(reps) > 1:
        raise ValueError(f"reference on FeatureSet {fs.label!r} mixes reps {sorted(reps)}")
    final_rep = rep if rep is not None else (reps.pop() if reps else None)
    if final_rep is not None:
        for dom, keys in out.items():
            for k in keys:
                fs.resolve_rep(dom, k, final_rep)
    return FeatureSetReference(fs.label, fs.node_id, out[DOMAIN_FEATURES], out[DOMAIN_TARGETS],
                               out[DOMAIN_TAGS], final_rep, _instance=fs)


def make_column_reference(fs: FeatureSet, column: str | None, feature: str | None,
                          target: str | None, tag: str | None,
                          rep: str | None) -> FeatureSetColumnReference:
    """Build a FeatureSetColumnReference for :meth:`FeatureSet.column_reference`."""
    given = [(d, s) for d, s in ((None, column), (DOMAIN_FEATURES, feature),
                                 (DOMAIN_TARGETS, target), (DOMAIN_TAGS, tag)) if s is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of column, feature, target, tag")
    dom, sel = given[0]
    if dom is None:
        dom = sel.split(".")[0]
        if dom not in DOMAINS:
            raise KeyError(f"column {sel!r} of FeatureSet {fs.label!r} does not start with a "
                           f"domain {list(DOMAINS)}")
    keys, r = select_keys(fs, dom, sel, rep)
    if len(keys) != 1:
        raise ValueError(f"selector {sel!r} matches {len(keys)} {dom} keys {keys} of FeatureSet "
                         f"{fs.label!r}; a column reference needs exactly one")
    if r is not None:
        fs.resolve_rep(dom, keys[0], r)
    return FeatureSetColumnReference(fs.label, fs.node_id, dom, keys[0], r, _instance=fs)
