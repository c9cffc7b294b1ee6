"""SimilarityCondition: vectorised pair scores for paired/triplet/N-role samplers."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modjax.errors import ConfigError
from modjax.io.registry import register

__all__ = ["SimilarityCondition"]

_MODES = ("similar", "dissimilar")
_WEIGHT_MODES = ("binary", "linear", "exp")


@register("SimilarityCondition")
@dataclass
class SimilarityCondition:
    """Rule scoring whether two samples are (dis)similar on one column.

    Args:
        mode: ``"similar"`` keeps pairs with ``diff <= tolerance``; ``"dissimilar"``
            keeps pairs with ``diff > tolerance``.
        tolerance: threshold on the distance.
        metric: distance function; it receives broadcastable arrays and must return an
            array. Default: ``|a - b|`` for numbers, ``0``/``inf`` (equal/different) for
            strings.
        weight_mode: ``"binary"`` (matches 1, fallbacks 0.1), ``"linear"``
            (``tolerance / diff`` for similar, ``diff / tolerance`` for dissimilar) or
            ``"exp"`` (``exp(1 - diff / tolerance)``, mirrored for dissimilar).
        max_weight: upper clip for match weights (>= 1).
        min_weight: lower clip for fallback weights.
        allow_fallback: non-matches get a weight < 1 instead of 0.

    Matches always weigh >= 1, non-matches < 1 with fallback and 0 without.

    Example:
        >>> c = SimilarityCondition(tolerance=0.1)
        >>> c.score(np.array([1.0, 1.0]), np.array([1.05, 1.5])).tolist()
        [1.0, 0.0]
    """

    mode: Literal["similar", "dissimilar"] = "similar"
    tolerance: float = 0.0
    metric: Callable[[Any, Any], Any] | None = None
    weight_mode: Literal["binary", "linear", "exp"] = "binary"
    max_weight: float = 1.0
    min_weight: float = 0.0
    allow_fallback: bool = False

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"SimilarityCondition mode {self.mode!r}; expected one of {_MODES}")
        if self.weight_mode not in _WEIGHT_MODES:
            raise ValueError(f"SimilarityCondition weight_mode {self.weight_mode!r}; expected "
                             f"one of {_WEIGHT_MODES}")
        if self.tolerance < 0:
            raise ValueError(f"SimilarityCondition tolerance must be >= 0, got {self.tolerance}")
        if self.max_weight < 1.0:
            raise ValueError(f"SimilarityCondition max_weight must be >= 1, got {self.max_weight}")
        if not 0.0 <= self.min_weight <= 1.0:
            raise ValueError(f"SimilarityCondition min_weight must be in [0, 1], got "
                             f"{self.min_weight}")

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Pairwise distance of broadcastable value arrays."""
        if self.metric is not None:
            return np.asarray(self.metric(a, b), dtype=np.float64)
        if np.asarray(a).dtype.kind in "OUS" or np.asarray(b).dtype.kind in "OUS":
            return np.where(np.asarray(a) == np.asarray(b), 0.0, np.inf)
        return np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))

    def score(self, a: Any, b: Any) -> np.ndarray:
        """Weights of pairs ``(a, b)`` (broadcast): >= 1 for matches, < 1 or 0 otherwise."""
        d = self.distance(np.asarray(a), np.asarray(b))
        tol = float(self.tolerance)
        match = d <= tol if self.mode == "similar" else d > tol
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.weight_mode == "binary":
                w = np.where(match, 1.0, 0.1)
            else:
                ratio = d / tol if tol > 0 else np.where(d > 0, np.inf, 0.0)
                if self.weight_mode == "linear":
                    w = 1.0 / ratio if self.mode == "similar" else ratio
                else:
                    w = np.exp(1.0 - ratio) if self.mode == "similar" else np.exp(ratio - 1.0)
                w = np.nan_to_num(w, nan=self.max_weight, posinf=self.max_weight)
        hit = np.clip(w, 1.0, self.max_weight)
        miss = np.clip(np.minimum(w, 0.999), self.min_weight, 0.999) if self.allow_fallback \
            else 0.0
        return np.where(match, hit, miss).astype(np.float64)

    def get_config(self) -> dict[str, Any]:
        """JSON config; a custom metric is recorded by its import path."""
        metric = None if self.metric is None else \
            f"{self.metric.__module__}:{self.metric.__qualname__}"
        return {"mode": self.mode, "tolerance": float(self.tolerance), "metric": metric,
                "weight_mode": self.weight_mode, "max_weight": float(self.max_weight),
                "min_weight": float(self.min_weight),
                "allow_fallback": bool(self.allow_fallback)}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> SimilarityCondition:
        """Rebuild; a custom metric is imported only with ``allow_packaged_code=True``."""
        cfg = dict(config)
        metric = cfg.pop("metric", None)
        if metric is not None:
            if not allow_packaged_code:
                raise ConfigError(f"SimilarityCondition uses custom metric {metric!r}; pass "
                                  "allow_packaged_code=True to import it")
            mod, _, qual = metric.partition(":")
            obj: Any = importlib.import_module(mod)
            for part in qual.split("."):
                obj = getattr(obj, part)
            cfg["metric"] = obj
        return cls(**cfg)
