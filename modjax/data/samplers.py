"""Samplers: per-epoch index plans over a FeatureSetView (never copy feature data).

A sampler is bound to a view (``sampler.bind(view)`` or the ``source=`` argument) and
produces an :class:`IndexPlan` per epoch: ``indices[role]`` int32 ``[n_batches,
batch_size]`` positions within the view, ``mask`` and ``weights``. Plans are
deterministic in ``(seed, epoch)``; ``next_plan()`` advances an epoch counter that
``get_state``/``set_state`` save and restore, so a resumed run draws the same batches.
The number of batches does not change between epochs, so a phase compiles once.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modjax.data.checks import check_seed
from modjax.data.pairing import (
    Candidates,
    RangeProposal,
    build_candidates,
    build_proposal,
    score_pairs,
    weight_bound,
)
from modjax.data.plan import IndexPlan
from modjax.data.schema import DOMAINS
from modjax.data.similarity import SimilarityCondition
from modjax.io.registry import deserialize, register, serialize

__all__ = ["BaseSampler", "SimpleSampler", "NSampler", "PairedSampler", "TripletSampler"]

DEFAULT_ROLE = "default"

#: Largest padded batch allowed beyond a view's size (small views, one padded batch).
_MAX_PADDED_BATCH = 4096


class BaseSampler(abc.ABC):
    """Common machinery: batch size checks, binding, epoch counter, RNG, state.

    Args:
        batch_size: samples per batch (> 0).
        shuffle: shuffle the order every epoch.
        seed: RNG seed; the plan of epoch ``e`` uses ``SeedSequence([seed, e])``.
        drop_last: drop the final partial batch instead of padding it.
        source: FeatureSet or view to bind now (or call :meth:`bind` later).
    """

    roles: tuple[str, ...] = (DEFAULT_ROLE,)
    #: whether a plan reads column values (condition samplers): such plans are made
    #: only when needed, never ahead of time
    plan_reads_values = True

    def __init__(self, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, source: Any = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
                or batch_size <= 0:
            raise ValueError(f"{type(self).__name__}: batch_size must be a positive integer, "
                             f"got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed, type(self).__name__)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._source: Any = None
        if source is not None:
            self.bind(source)

    # ------------------------------------------------------------------ binding
    @property
    def source(self) -> Any:
        """The bound view (None until bound)."""
        return self._source

    @property
    def streams(self) -> tuple[str, ...]:
        """Output streams (one per role; InputBinding's ``stream`` picks one)."""
        return self.roles

    def bind(self, view: Any) -> BaseSampler:
        """Bind to a FeatureSet or FeatureSetView; validates sizes and columns.

        Returns:
            ``self`` (for chaining).

        Raises:
            ValueError: ``batch_size`` exceeds the view with ``drop_last=True``.
            KeyError: a condition column is missing (condition samplers).
        """
        view = view.to_view() if hasattr(view, "to_view") else view
        n = self._n_candidates(view)
        if view.n_samples == 0:
            raise ValueError(f"{type(self).__name__}: {_name(view)} has no samples; there is "
                             "nothing to sample batches from")
        if self.batch_size > max(n, _MAX_PADDED_BATCH) and not self.drop_last:
            # one padded batch of a small view is fine; a huge one is only padding (and
            # memory): batch_size=10**9 is a typo, not a request
            raise ValueError(
                f"{type(self).__name__}: batch_size={self.batch_size} is larger than the "
                f"{n} samples of {_name(view)}; use batch_size <= {n}")
        if self.drop_last and self.batch_size > n:
            raise ValueError(
                f"{type(self).__name__}: batch_size={self.batch_size} is larger than the "
                f"{n} samples of {_name(view)} with drop_last=True, so no batch would be made")
        self._source = view
        return self

    def _n_candidates(self, view: Any) -> int:
        return view.n_samples

    def _require_source(self) -> Any:
        if self._source is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to data; call "
                               "sampler.bind(featureset_or_view) first")
        return self._source

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))

    # ------------------------------------------------------------------ plans
    def plan(self, epoch: int | None = None) -> IndexPlan:
        """The plan of ``epoch`` (default: the current epoch counter); pure.

        Args:
            epoch: the epoch whose plan to make (the counter is not advanced).

        Returns:
            The :class:`IndexPlan` (same seed and epoch -> same plan).

        Raises:
            RuntimeError: the sampler is not bound.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("pl", {"x": np.arange(6.0), "y": np.zeros(6)}, "x", "y")
            >>> s = SimpleSampler(3, seed=0, source=fs)
            >>> bool((s.plan(4).indices["default"] == s.plan(4).indices["default"]).all())
            True
        """
        return self._make_plan(self._require_source(), self.epoch if epoch is None else epoch)

    def next_plan(self) -> IndexPlan:
        """The plan of the current epoch, then advance the epoch counter.

        Returns:
            The plan of epoch ``self.epoch`` before the call.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("np", {"x": np.arange(6.0), "y": np.zeros(6)}, "x", "y")
            >>> s = SimpleSampler(3, seed=0, source=fs)
            >>> first = s.next_plan()
            >>> s.epoch, bool((first.indices["default"] == s.plan(0).indices["default"]).all())
            (1, True)
        """
        p = self.plan(self.epoch)
        self.epoch += 1
        return p

    @property
    def n_batches(self) -> int:
        """Batches per epoch (constant across epochs)."""
        n = self._n_rows_per_epoch(self._require_source())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _n_rows_per_epoch(self, view: Any) -> int:
        return view.n_samples

    @abc.abstractmethod
    def _make_plan(self, view: Any, epoch: int) -> IndexPlan:
        """The plan of ``epoch`` over ``view`` (subclasses define the batching)."""

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """``{"epoch": int, "seed": int}``: everything the next plan depends on.

        Example:
            >>> s = SimpleSampler(4, seed=3)
            >>> s.epoch = 5
            >>> {k: int(v) for k, v in s.get_state().items()}
            {'epoch': 5, 'seed': 3}
        """
        return {"epoch": np.int64(self.epoch), "seed": np.int64(self.seed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore the epoch counter and seed from :meth:`get_state`."""
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))

    def _base_config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed,
                "drop_last": self.drop_last}

    def __repr__(self) -> str:
        src = "unbound" if self._source is None else _name(self._source)
        return (f"{type(self).__name__}(batch_size={self.batch_size}, roles={self.roles}, "
                f"source={src}, epoch={self.epoch})")


def _name(view: Any) -> str:
    label = getattr(view, "label", None)
    src = getattr(getattr(view, "source", None), "label", None)
    return f"split {label!r} of FeatureSet {src!r}" if label and src != label else \
        f"FeatureSet {src!r}"


@register("SimpleSampler")
class SimpleSampler(BaseSampler):
    """Plain batches of one role (``"default"``).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("s", {"x": np.arange(5.0), "y": np.zeros(5)}, "x", "y")
        >>> p = SimpleSampler(2, shuffle=False, source=fs).plan()
        >>> p.indices["default"].tolist(), p.mask["default"][-1].tolist()
        ([[0, 1], [2, 3], [4, 0]], [True, False])
    """

    # A plan depends on the seed, the epoch, the batching options and the view's size
    # only, never on column values: a phase may make epoch e+1's while epoch e runs.
    plan_reads_values = False

    def _make_plan(self, view: Any, epoch: int) -> IndexPlan:
        n = view.n_samples
        if n < 2 ** 31:  # int32 positions shuffled in place: no int64 permutation
            return IndexPlan.ordered(n, self.batch_size, drop_last=self.drop_last,
                                     rng=self._rng(epoch) if self.shuffle else None)
        order = self._rng(epoch).permutation(n) if self.shuffle else np.arange(n)
        return IndexPlan.from_flat(order, self.batch_size, drop_last=self.drop_last)

    def get_config(self) -> dict[str, Any]:
        return self._base_config()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SimpleSampler:
        return cls(**config)


# ---------------------------------------------------------------------------- condition samplers
@dataclass(frozen=True)
class _Prepared:
    values: dict[str, dict[str, np.ndarray]]
    candidates: dict[str, Candidates | RangeProposal | None]
    valid: np.ndarray


def _condition_values(view: Any, column: str, sampler: str) -> np.ndarray:
    """Per-sample scalar values of a condition column (``[domain.]key[.rep]``)."""
    parts = column.split(".")
    domains = [parts[0]] if parts[0] in DOMAINS and len(parts) > 1 else \
        ["tags", "targets", "features"]
    key = parts[1] if parts[0] in DOMAINS and len(parts) > 1 else parts[0]
    rep = parts[-1] if len(parts) == 3 else None
    for dom in domains:
        if key in view.keys_of(dom):
            shape = view.get_shape(dom, key)
            if shape not in ((), (1,)):
                raise ValueError(f"{sampler}: condition column {column!r} has per-sample shape "
                                 f"{shape}; conditions need one value per sample")
            vals = view.get_domain(dom, key, rep=rep, fmt="dict")[key]
            return vals.reshape(len(vals))
    avail = [f"{d}.{k}" for d in DOMAINS for k in view.keys_of(d)]
    raise KeyError(f"{sampler}: condition column {column!r} is not in {_name(view)}; "
                   f"available: {avail}")


class NSampler(BaseSampler):
    """Anchor plus N roles, each chosen per anchor by :class:`SimilarityCondition`s.

    For every anchor and role, a partner (never the anchor itself) is drawn among the
    samples whose product of condition scores is > 0, with probability proportional to
    that score (uniform for binary conditions); ``choose_best_only`` takes the top
    score instead. Anchors without a partner for some role are left out (a fixed set,
    so ``n_batches`` is the same every epoch). Weights: each role gets its pair score,
    the anchor the product over roles.

    Partners are found once per bound view, without scoring all ``n^2`` pairs when a
    role has a built-in (no custom ``metric``, no ``allow_fallback``) condition: its
    sorted-order ranges give the candidates, which all conditions then score exactly
    (see ``modjax.data.pairing``); each epoch then draws with one ``searchsorted`` per
    anchor. When a role would have more than ``max_pairs`` candidates (e.g. a loose
    ``dissimilar`` condition), partners are drawn by exact rejection sampling from those
    ranges; only ``choose_best_only`` on such roles scores densely.

    Args:
        conditions: ``{role: {column: SimilarityCondition}}``; columns are
            ``[domain.]key[.rep]`` (tags, then targets, then features are searched).
        batch_size, shuffle, seed, drop_last, source: as in :class:`BaseSampler`.
        samples_per_anchor: pairs drawn per anchor per epoch.
        choose_best_only: take the highest-scoring partner (ties broken at random).
        anchor_role: name of the anchor role.

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("n", {"x": np.arange(6.0), "g": [0, 0, 1, 1, 2, 2]},
        ...                           "x", None, "g")
        >>> s = NSampler({"same": {"g": SimilarityCondition()}}, batch_size=3, source=fs)
        >>> p = s.plan()
        >>> a, b = p.indices["anchor"].ravel(), p.indices["same"].ravel()
        >>> bool((a // 2 == b // 2).all() and (a != b).all()), s.roles
        (True, ('anchor', 'same'))
    """

    _block_elems = 4_000_000  # dense fallback: anchors x candidates scored at once
    #: candidate pairs above which a role falls back to dense per-epoch scoring
    max_pairs = 20_000_000

    def __init__(self, conditions: Mapping[str, Mapping[str, SimilarityCondition]],
                 batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, source: Any = None, samples_per_anchor: int = 1,
                 choose_best_only: bool = False, anchor_role: str = "anchor") -> None:
        if not conditions:
            raise ValueError(f"{type(self).__name__}: give at least one role with conditions")
        for role, conds in conditions.items():
            if role == anchor_role:
                raise ValueError(f"{type(self).__name__}: role {role!r} clashes with the "
                                 "anchor role")
            if not conds:
                raise ValueError(f"{type(self).__name__}: role {role!r} has no conditions")
            for col, c in conds.items():
                if not isinstance(c, SimilarityCondition):
                    raise TypeError(f"{type(self).__name__}: condition on {col!r} for role "
                                    f"{role!r} must be a SimilarityCondition, got "
                                    f"{type(c).__name__}")
        if samples_per_anchor < 1:
            raise ValueError(f"{type(self).__name__}: samples_per_anchor must be >= 1")
        self.conditions = {r: dict(c) for r, c in conditions.items()}
        self.anchor_role = anchor_role
        self.samples_per_anchor = int(samples_per_anchor)
        self.choose_best_only = bool(choose_best_only)
        self.roles = (anchor_role, *self.conditions)
        self._prepared: tuple[tuple[Any, Any], _Prepared] | None = None
        super().__init__(batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                         source=source)

    # ------------------------------------------------------------------ scoring
    def _values(self, view: Any) -> dict[str, dict[str, np.ndarray]]:
        return {role: {col: _condition_values(view, col, type(self).__name__)
                       for col in conds} for role, conds in self.conditions.items()}

    def _scores(self, values: dict[str, np.ndarray], role: str, rows: np.ndarray) -> np.ndarray:
        """Dense scores ``(len(rows), n)`` of anchors ``rows`` against every sample."""
        out = None
        for col, cond in self.conditions[role].items():
            v = values[col]
            s = cond.score(v[rows, None], v[None, :])
            out = s if out is None else out * s
        out[np.arange(len(rows)), rows] = 0.0  # never pair a sample with itself
        return out

    def _chunks(self, rows: np.ndarray, n: int):
        step = max(1, self._block_elems // max(n, 1))
        for start in range(0, len(rows), step):
            yield slice(start, start + step)

    def _dense_valid(self, values: dict[str, np.ndarray], role: str, rows: np.ndarray,
                     n: int) -> np.ndarray:
        ok = np.zeros(len(rows), dtype=bool)
        for sl in self._chunks(rows, n):
            ok[sl] = (self._scores(values, role, rows[sl]) > 0).any(axis=1)
        return ok

    def _proposal_valid(self, prop: RangeProposal, values: dict[str, np.ndarray], role: str,
                        n: int) -> np.ndarray:
        """Exact validity: a few rounds of random proposals find a partner for most
        anchors; the rest are scored densely."""
        conds = self.conditions[role]
        ok = np.zeros(n, dtype=bool)
        todo = np.flatnonzero(prop.counts > 0)
        rng = np.random.default_rng(0)  # any stream: the result is exact either way
        for _ in range(16):
            if not todo.size:
                break
            hit = score_pairs(values, conds, todo, prop.propose(todo, rng)) > 0
            ok[todo[hit]] = True
            todo = todo[~hit]
        if todo.size:
            ok[todo] = self._dense_valid(values, role, todo, n)
        return ok

    def _prepare(self, view: Any) -> _Prepared:
        """Condition values, per-role candidate lists and the valid anchors (once per view)."""
        key = (view, view.source.table)  # a transform swaps the table: values may change
        if self._prepared is not None and self._prepared[0][0] is key[0] and \
                self._prepared[0][1] is key[1]:
            return self._prepared[1]
        values = self._values(view)  # raises KeyError naming a missing column
        n = view.n_samples
        cands: dict[str, Candidates | RangeProposal | None] = {}
        ok = np.ones(n, dtype=bool)
        every = np.arange(n)
        for role in self.conditions:
            c = build_candidates(values[role], self.conditions[role], max_pairs=self.max_pairs)
            if c is not None:
                cands[role] = c.best() if self.choose_best_only else c
                ok &= cands[role].counts > 0
            elif not self.choose_best_only:
                prop = build_proposal(values[role], self.conditions[role])
                cands[role] = prop
                ok &= self._proposal_valid(prop, values[role], role, n)
            else:
                cands[role] = None
                ok &= self._dense_valid(values[role], role, every, n)
        prep = _Prepared(values, cands, ok)
        self._prepared = (key, prep)
        return prep

    def bind(self, view: Any) -> NSampler:
        view = view.to_view() if hasattr(view, "to_view") else view
        previous = self._prepared
        try:
            self._prepared = None
            self._prepare(view)
            super().bind(view)
        except Exception:
            self._prepared = previous
            raise
        return self

    def _n_candidates(self, view: Any) -> int:
        return int(self._prepare(view).valid.sum()) * self.samples_per_anchor

    def _n_rows_per_epoch(self, view: Any) -> int:
        return self._n_candidates(view)

    # ------------------------------------------------------------------ plan
    def _dense_draw(self, values: dict[str, np.ndarray], role: str, anchors: np.ndarray,
                    n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Exact draw by scoring anchors against every sample (Gumbel-max trick)."""
        chosen = np.empty(len(anchors), dtype=np.int64)
        weight = np.empty(len(anchors), dtype=np.float64)
        for sl in self._chunks(anchors, n):
            s = self._scores(values, role, anchors[sl])
            with np.errstate(divide="ignore"):
                logits = np.log(s)
            if self.choose_best_only:
                logits = np.where(s == s.max(axis=1, keepdims=True), 0.0, -np.inf)
            pick = np.argmax(logits + rng.gumbel(size=s.shape), axis=1)
            chosen[sl] = pick
            weight[sl] = s[np.arange(len(pick)), pick]
        return chosen, weight

    def _rejection_draw(self, prop: RangeProposal, values: dict[str, np.ndarray], role: str,
                        anchors: np.ndarray, n: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Exact weight-proportional draw for huge candidate sets: uniform proposals
        accepted with probability ``w / bound``; anchors still open after 64 rounds are
        drawn densely (which keeps the distribution exact)."""
        conds = self.conditions[role]
        bound = weight_bound(conds)
        chosen = np.empty(len(anchors), dtype=np.int64)
        weight = np.empty(len(anchors), dtype=np.float64)
        todo = np.arange(len(anchors))
        for _ in range(64):
            if not todo.size:
                break
            a = anchors[todo]
            cand = prop.propose(a, rng)
            w = score_pairs(values, conds, a, cand)
            acc = rng.random(len(todo)) * bound < w
            chosen[todo[acc]], weight[todo[acc]] = cand[acc], w[acc]
            todo = todo[~acc]
        if todo.size:
            chosen[todo], weight[todo] = self._dense_draw(values, role, anchors[todo], n, rng)
        return chosen, weight

    def _make_plan(self, view: Any, epoch: int) -> IndexPlan:
        rng = self._rng(epoch)
        prep = self._prepare(view)
        anchors = np.repeat(np.flatnonzero(prep.valid), self.samples_per_anchor)
        if self.shuffle:
            anchors = anchors[rng.permutation(len(anchors))]
        pos: dict[str, np.ndarray] = {self.anchor_role: anchors}
        wts: dict[str, np.ndarray] = {}
        for role in self.conditions:
            c = prep.candidates[role]
            if isinstance(c, Candidates):
                pos[role], wts[role] = c.draw(anchors, rng, uniform=self.choose_best_only)
            elif isinstance(c, RangeProposal):
                pos[role], wts[role] = self._rejection_draw(c, prep.values[role], role, anchors,
                                                            view.n_samples, rng)
            else:
                pos[role], wts[role] = self._dense_draw(prep.values[role], role, anchors,
                                                        view.n_samples, rng)
        wts[self.anchor_role] = np.prod([wts[r] for r in self.conditions], axis=0) \
            if len(anchors) else np.zeros(0)
        return IndexPlan.from_roles(pos, self.batch_size, drop_last=self.drop_last,
                                    weights={r: wts[r].astype(np.float32) for r in pos})

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        return {**self._base_config(),
                "conditions": {r: {c: serialize(cond) for c, cond in conds.items()}
                               for r, conds in self.conditions.items()},
                "samples_per_anchor": self.samples_per_anchor,
                "choose_best_only": self.choose_best_only, "anchor_role": self.anchor_role}

    @classmethod
    def _decode_conditions(cls, conds: Mapping[str, Any]) -> dict[str, SimilarityCondition]:
        return {c: deserialize(v) for c, v in conds.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NSampler:
        cfg = dict(config)
        cfg["conditions"] = {r: cls._decode_conditions(c) for r, c in cfg["conditions"].items()}
        return cls(**cfg)


register("NSampler")(NSampler)


@register("PairedSampler")
class PairedSampler(NSampler):
    """Anchor/pair batches: roles ``("anchor", "pair")``.

    Args:
        conditions: ``{column: SimilarityCondition}`` the pair must satisfy (all of them).
        other arguments: as in :class:`NSampler`.

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("pairs", {"x": np.arange(4.0), "soh": [.90, .91, .50, .52]},
        ...                           "x", "soh")
        >>> s = PairedSampler({"soh": SimilarityCondition(tolerance=0.05)}, 2, source=fs)
        >>> p = s.plan()
        >>> sorted(zip(p.indices["anchor"].ravel().tolist(), p.indices["pair"].ravel().tolist()))
        [(0, 1), (1, 0), (2, 3), (3, 2)]
    """

    def __init__(self, conditions: Mapping[str, SimilarityCondition], batch_size: int,
                 **kwargs: Any) -> None:
        super().__init__({"pair": conditions}, batch_size, **kwargs)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["conditions"] = cfg["conditions"]["pair"]
        return cfg

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PairedSampler:
        cfg = dict(config)
        cfg["conditions"] = cls._decode_conditions(cfg["conditions"])
        cfg.pop("anchor_role", None)
        return cls(**cfg)


@register("TripletSampler")
class TripletSampler(NSampler):
    """Anchor/positive/negative batches: roles ``("anchor", "positive", "negative")``.

    Args:
        positive_conditions: ``{column: SimilarityCondition}`` for the positive.
        negative_conditions: ``{column: SimilarityCondition}`` for the negative (use
            ``mode="dissimilar"``).
        other arguments: as in :class:`NSampler`.

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("tri", {"x": np.arange(6.0), "g": [0, 0, 0, 1, 1, 1]},
        ...                           "x", None, "g")
        >>> t = TripletSampler({"g": SimilarityCondition()},
        ...                    {"g": SimilarityCondition("dissimilar")}, 6, source=fs)
        >>> p = t.plan()
        >>> a, pos, neg = (p.indices[r][0] // 3 for r in t.roles)
        >>> t.roles, bool((a == pos).all() and (a != neg).all())
        (('anchor', 'positive', 'negative'), True)
    """

    def __init__(self, positive_conditions: Mapping[str, SimilarityCondition],
                 negative_conditions: Mapping[str, SimilarityCondition], batch_size: int,
                 **kwargs: Any) -> None:
        super().__init__({"positive": positive_conditions, "negative": negative_conditions},
                         batch_size, **kwargs)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        conds = cfg.pop("conditions")
        cfg.pop("anchor_role", None)
        return {**cfg, "positive_conditions": conds["positive"],
                "negative_conditions": conds["negative"]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TripletSampler:
        cfg = dict(config)
        for k in ("positive_conditions", "negative_conditions"):
            cfg[k] = cls._decode_conditions(cfg[k])
        return cls(**cfg)
