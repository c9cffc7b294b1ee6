"""Built-in metrics by name, computed inside the jitted step.

An :class:`AppliedMetric` is the metric counterpart of an ``AppliedLoss``: a named
metric attached to a node, with references for what it compares (``"outputs"``,
``"targets"``, ``"Encoder.outputs"``, ...). Inside the step each batch reduces to a few
sufficient statistics (counts of correct predictions, true/false positives per class,
sums of errors, per-batch means and squared deviations), weighted by the sampler's
sample weights and padding mask; the statistics of all batches are combined on the
device at the end of the pass, so a metric costs no host work per batch and the value
is exact over the whole split, not an average of batch values.

========================  ============================================================
name                      meaning
========================  ============================================================
``accuracy``              share of correct classes (argmax of a ``(C,)`` head, or a
                          width-1 head thresholded; integer or one-hot targets)
``top_k_accuracy``        target class among the ``k`` largest logits (``k=5``)
``precision``             ``average="binary"`` (class ``pos_label``) or ``"macro"``
``recall``                as ``precision``
``f1``                    as ``precision``
``mae``, ``mse``          mean absolute / squared error over every output element
``rmse``                  square root of ``mse``
``r2``                    coefficient of determination per output element, averaged
========================  ============================================================

Classification metrics take logits (``from_logits=True``, the default: a width-1 head
is thresholded at 0) or probabilities (``from_logits=False``: threshold 0.5). Macro
averages run over the classes present in the targets or the predictions, and a
precision or recall with nothing to count is 0, both as scikit-learn does.

Example:
    >>> m = AppliedMetric("accuracy", on="head")
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    >>> labels = jnp.array([[0], [1], [1]])
    >>> stats = m.batch_stats([logits, labels], weights=jnp.ones(3))
    >>> round(float(m.finalize(jax.tree.map(lambda s: s[None], stats))), 4)
    0.6667
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.errors import ShapeMismatchError, closest_names
from modjax.io.registry import register
from modjax.train.losses import LossRef, _fit_to

__all__ = ["AppliedMetric", "METRIC_NAMES", "probabilities", "predicted_classes", "finalize_all",
           "check_class_targets", "logged_names", "log_epoch_metrics"]

_CLASSIFICATION = ("accuracy", "top_k_accuracy", "precision", "recall", "f1")
_REGRESSION = ("mae", "mse", "rmse", "r2")
METRIC_NAMES = _CLASSIFICATION + _REGRESSION
_AVERAGES = ("binary", "macro")


def probabilities(logits: Any) -> Any:
    """Class probabilities of a logits head: softmax over the last axis, or the sigmoid
    of a width-1 head (the probability of class 1).

    Example:
        >>> probabilities(jnp.array([[0.0, 0.0]])).tolist(), probabilities(jnp.zeros((1, 1))).tolist()
        ([[0.5, 0.5]], [[0.5]])
    """
    x = jnp.asarray(logits)
    return jax.nn.sigmoid(x) if x.shape[-1] == 1 else jax.nn.softmax(x, axis=-1)


def predicted_classes(outputs: Any, *, from_logits: bool = True,
                      threshold: float | None = None) -> Any:
    """Class indices of a classifier's outputs: argmax over the last axis, or a width-1
    head thresholded (0 for logits, 0.5 for probabilities), the last axis dropped.

    Example:
        >>> predicted_classes(jnp.array([[0.1, 2.0], [3.0, 0.0]])).tolist()
        [1, 0]
        >>> predicted_classes(jnp.array([[-1.0], [0.5]])).tolist()
        [0, 1]
    """
    x = jnp.asarray(outputs)
    if x.shape[-1] == 1:
        thr = (0.0 if from_logits else 0.5) if threshold is None else threshold
        return (x[..., 0] >= thr).astype(jnp.int32)
    return jnp.argmax(x, axis=-1).astype(jnp.int32)


@register("AppliedMetric")
class AppliedMetric:
    """A built-in metric attached to a node (the metric twin of ``AppliedLoss``).

    Args:
        metric: one of :data:`METRIC_NAMES`.
        on: the node (label or object with ``.label``) whose outputs/targets are meant.
        inputs: two references, ``(prediction, target)``; default
            ``("outputs", "targets")``.
        label: name in results (default ``"<node>.<metric>"``).
        k: ``top_k_accuracy``'s k.
        average: ``"binary"`` or ``"macro"`` (precision, recall, f1).
        pos_label: the positive class of ``average="binary"``.
        from_logits: the predictions are logits (width-1 threshold 0) rather than
            probabilities (threshold 0.5).
        threshold: an explicit width-1 threshold.

    Raises:
        ValueError: an unknown metric name (with the closest names) or option.

    Example:
        >>> AppliedMetric("f1", on="clf", average="macro").label
        'clf.f1'
    """

    def __init__(self, metric: str, on: Any, inputs: Sequence[str] = ("outputs", "targets"), *,
                 label: str | None = None, k: int = 5, average: str = "binary",
                 pos_label: int = 1, from_logits: bool = True,
                 threshold: float | None = None) -> None:
        if not isinstance(metric, str) or metric.lower() not in METRIC_NAMES:
            raise ValueError(f"unknown metric {metric!r}; did you mean "
                             f"{closest_names(str(metric).lower(), METRIC_NAMES)}? "
                             f"(built-ins: {list(METRIC_NAMES)})")
        if average not in _AVERAGES:
            raise ValueError(f"AppliedMetric {metric!r}: average must be one of {_AVERAGES}, "
                             f"got {average!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"AppliedMetric {metric!r}: k must be a positive int, got {k!r}")
        self.name = metric.lower()
        node = getattr(on, "label", on)
        if not isinstance(node, str) or not node:
            raise TypeError(f"AppliedMetric: `on` must be a node or node label, got {on!r}")
        self.node = node
        self.label = label or f"{node}.{self.name}"
        owner = f"AppliedMetric {self.label!r}"
        if isinstance(inputs, str) or len(inputs) != 2:
            raise ValueError(f"{owner}: inputs must be two references (prediction, target), "
                             f"got {inputs!r}")
        self.refs = tuple(LossRef.parse(r, owner=owner) for r in inputs)
        self.k, self.average, self.pos_label = int(k), average, int(pos_label)
        self.from_logits = bool(from_logits)
        self.threshold = None if threshold is None else float(threshold)

    @property
    def inputs(self) -> list[str]:
        """The two references as given."""
        return [r.text for r in self.refs]

    @property
    def is_classification(self) -> bool:
        """True for accuracy, top-k accuracy, precision, recall and f1."""
        return self.name in _CLASSIFICATION

    def _what(self) -> str:
        return f"AppliedMetric {self.label!r} ({self.name}) on node {self.node!r}"

    # ----------------------------------------------------------------- inside the step
    def _labels(self, pred: jax.Array, target: jax.Array) -> jax.Array:
        """Integer labels shaped like ``pred`` without its class axis."""
        if pred.shape[-1] > 1 and tuple(target.shape) == tuple(pred.shape):
            return jnp.argmax(target, axis=-1).astype(jnp.int32)  # one-hot targets
        lab = _fit_to(target, tuple(pred.shape[:-1]), what=self._what(),
                      ref=f"{self.refs[0].text!r} without its class axis",
                      other=repr(self.refs[1].text))
        return jnp.round(lab).astype(jnp.int32)

    def batch_stats(self, values: Sequence[jax.Array], *, weights: jax.Array | None = None,
                    mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """Sufficient statistics of one batch (jittable).

        Args:
            values: ``[prediction, target]`` with the batch axis first.
            weights: per-sample weights ``(B,)``.
            mask: per-sample real-row mask ``(B,)`` (padding counts zero).

        Returns:
            A dict of arrays; :meth:`finalize` turns a stack of them into the value.

        Raises:
            ShapeMismatchError: prediction and target shapes do not fit (names the
                metric, the node and both shapes).
        """
        pred, target = (jnp.asarray(v) for v in values)
        b = pred.shape[0]
        w = jnp.ones((b,), jnp.float32) if weights is None else weights.astype(jnp.float32)
        if mask is not None:
            w = jnp.where(mask, w, 0.0)
        if self.is_classification:
            return self._class_stats(pred, target, w)
        target = _fit_to(target, tuple(pred.shape), what=self._what(),
                         ref=repr(self.refs[0].text), other=repr(self.refs[1].text))
        p = pred.reshape(b, -1).astype(jnp.float32)
        t = target.reshape(b, -1).astype(jnp.float32)
        d = p - t
        wc = w[:, None]
        n = jnp.sum(w)
        stats = {"n": n, "abs": jnp.sum(wc * jnp.abs(d), axis=0),
                 "sq": jnp.sum(wc * jnp.square(d), axis=0)}
        if self.name == "r2":
            mean = jnp.sum(wc * t, axis=0) / jnp.maximum(n, 1e-12)
            stats["mean"] = mean
            stats["m2"] = jnp.sum(wc * jnp.square(t - mean), axis=0)
        return stats

    def _class_stats(self, pred: jax.Array, target: jax.Array, w: jax.Array
                     ) -> dict[str, jax.Array]:
        labels = self._labels(pred, target)
        inner = labels.reshape(labels.shape[0], -1)
        wf = jnp.broadcast_to(w[:, None], inner.shape).reshape(-1)
        lab = inner.reshape(-1)
        if self.name == "top_k_accuracy":
            logits = pred.reshape(-1, pred.shape[-1])
            if self.k > pred.shape[-1]:
                raise ShapeMismatchError(f"{self._what()}: k={self.k} exceeds the head's "
                                         f"{pred.shape[-1]} classes (outputs {tuple(pred.shape)})")
            _, top = jax.lax.top_k(logits, self.k)
            hit = jnp.any(top == lab[:, None], axis=-1)
            return {"n": jnp.sum(wf), "correct": jnp.sum(wf * hit)}
        cls = predicted_classes(pred, from_logits=self.from_logits,
                                threshold=self.threshold).reshape(-1)
        if self.name == "accuracy":
            return {"n": jnp.sum(wf), "correct": jnp.sum(wf * (cls == lab))}
        n_cls = max(int(pred.shape[-1]), 2)
        p1 = jax.nn.one_hot(cls, n_cls) * wf[:, None]
        t1 = jax.nn.one_hot(lab, n_cls) * wf[:, None]
        return {"tp": jnp.sum(p1 * (t1 > 0), axis=0), "pp": jnp.sum(p1, axis=0),
                "ap": jnp.sum(t1, axis=0)}

    def finalize(self, stats: Mapping[str, jax.Array]) -> jax.Array:
        """The metric from the statistics of every batch, stacked on a leading axis.

        Example:
            >>> m = AppliedMetric("rmse", on="h")
            >>> s = m.batch_stats([jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [0.0]])])
            >>> round(float(m.finalize(jax.tree.map(lambda a: a[None], s))), 4)
            2.2361
        """
        if self.name == "r2":
            return self._r2(stats)
        tot = {k: jnp.sum(v, axis=0) for k, v in stats.items()}
        if "correct" in tot:
            return tot["correct"] / jnp.maximum(tot["n"], 1e-12)
        if self.name in _REGRESSION:
            count = jnp.maximum(tot["n"] * tot["sq"].size, 1e-12)
            if self.name == "mae":
                return jnp.sum(tot["abs"]) / count
            mse = jnp.sum(tot["sq"]) / count
            return jnp.sqrt(mse) if self.name == "rmse" else mse
        tp, pp, ap = tot["tp"], tot["pp"], tot["ap"]
        prec = jnp.where(pp > 0, tp / jnp.maximum(pp, 1e-12), 0.0)
        rec = jnp.where(ap > 0, tp / jnp.maximum(ap, 1e-12), 0.0)
        f1 = jnp.where(pp + ap > 0, 2 * tp / jnp.maximum(pp + ap, 1e-12), 0.0)
        per = {"precision": prec, "recall": rec, "f1": f1}[self.name]
        if self.average == "binary":
            return per[self.pos_label]
        present = (pp + ap) > 0
        return jnp.sum(jnp.where(present, per, 0.0)) / jnp.maximum(jnp.sum(present), 1)

    def _r2(self, stats: Mapping[str, jax.Array]) -> jax.Array:
        # per-batch means and squared deviations combined exactly (parallel variance),
        # not sum-of-squares minus squared sum, which loses digits in float32
        n_b = stats["n"][:, None]
        n = jnp.maximum(jnp.sum(n_b, axis=0), 1e-12)
        mean = jnp.sum(n_b * stats["mean"], axis=0) / n
        ss_tot = jnp.sum(stats["m2"], axis=0) + jnp.sum(n_b * jnp.square(stats["mean"] - mean),
                                                       axis=0)
        ss_res = jnp.sum(stats["sq"], axis=0)
        per = jnp.where(ss_tot > 0, 1.0 - ss_res / jnp.maximum(ss_tot, 1e-30),
                        jnp.where(ss_res > 0, 0.0, 1.0))
        return jnp.mean(per)

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """JSON config."""
        return {"metric": self.name, "on": self.node, "inputs": self.inputs,
                "label": self.label, "k": self.k, "average": self.average,
                "pos_label": self.pos_label, "from_logits": self.from_logits,
                "threshold": self.threshold}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, allow_packaged_code: bool = False
                    ) -> AppliedMetric:
        """Rebuild from :meth:`get_config` output (metrics are built-ins: no user code)."""
        cfg = dict(config)
        return cls(cfg.pop("metric"), cfg.pop("on"), cfg.pop("inputs"), **cfg)

    def __repr__(self) -> str:
        return f"AppliedMetric({self.label!r}, on={self.node!r}, inputs={self.inputs!r})"


def finalize_all(metrics: Sequence[AppliedMetric], stats: Mapping[str, Any]) -> dict[str, float]:
    """``{label: value}`` of every metric from its stacked per-batch statistics.

    One jitted program per set of metric specs (cached on their configuration) does
    the combination on the device; only the scalars come back.

    Example:
        >>> m = AppliedMetric("mae", on="h")
        >>> s = m.batch_stats([jnp.ones((2, 1)), jnp.zeros((2, 1))])
        >>> finalize_all([m], {"h.mae": jax.tree.map(lambda a: a[None], s)})
        {'h.mae': 1.0}
    """
    from modjax.train.programs import program, spec_of

    ms = list(metrics)
    fn = program(("metric_finalize", tuple(spec_of(m) for m in ms)),
                 lambda: jax.jit(lambda st: {m.label: m.finalize(st[m.label]) for m in ms}))
    out = jax.device_get(fn({m.label: stats[m.label] for m in ms}))
    return {m.label: float(out[m.label]) for m in ms}


_CLASS_LOSSES = ("sparse_cross_entropy",)


def check_class_targets(graph: Any, specs: Sequence[Any], feeds: Sequence[Any], *,
                        owner: str) -> None:
    """Before any step runs: integer class targets must index into the head's logits.

    A shape check cannot see that a 3-wide head is trained on labels 0..9 (the
    targets are ``(B, 1)`` either way) and ``softmax_cross_entropy_with_integer_labels``
    silently gives such rows no gradient toward their class. The targets are on the
    host already, so their range is checked once per phase.

    Args:
        graph: the built graph.
        specs: AppliedLosses and AppliedMetrics of the phase (others are skipped).
        feeds: the phase's resolved bindings (``node``, ``ref``, ``view`` attributes).
        owner: the phase, for the message.

    Raises:
        ShapeMismatchError: naming the phase, loss, node, output shape and label range.
    """
    for spec in specs:
        name = getattr(getattr(spec, "loss", None), "name", None) or getattr(spec, "name", None)
        if name not in _CLASS_LOSSES and not (
                isinstance(spec, AppliedMetric) and spec.is_classification):
            continue
        refs = [r.domain for r in spec.refs]
        if refs[:2] != ["outputs", "targets"] or any(r.prefix for r in spec.refs[:2]):
            continue
        shape = tuple(graph.node_shapes(spec.node).output_shape or ())
        if not shape:
            continue
        n_cls = max(int(shape[-1]), 2)
        up = _upstream(graph, spec.node)
        for f in feeds:
            if f.node.label not in up or not getattr(f.ref, "targets", ()):
                continue
            y = np.asarray(f.view.get_targets(list(f.ref.targets), rep=f.ref.rep))
            if y.size == 0 or y.dtype.kind not in "iuf" or (
                    y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0))):
                continue
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= n_cls:
                kind = "AppliedLoss" if hasattr(spec, "loss") else "AppliedMetric"
                raise ShapeMismatchError(
                    f"{owner}: {kind} {spec.label!r} ({name}) on node {spec.node!r}: the node "
                    f"outputs shape {shape}, {shape[-1]} class logits per sample, but targets "
                    f"{list(f.ref.targets)} of FeatureSet {f.ref.featureset_label!r} hold class "
                    f"labels {lo}..{hi} ({hi + 1} classes); give the node "
                    f"output_shape=({hi + 1},)")


def _upstream(graph: Any, label: str) -> set[str]:
    seen, stack = set(), [label]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(u for u in graph.upstream_of(n) if u in graph.node_labels)
    return seen


def logged_names(metrics: Sequence[AppliedMetric], prefix: str, *, owner: str
                 ) -> dict[str, str]:
    """``{metric label: name in the results}``: ``prefix + metric`` (``train_accuracy``),
    or ``prefix + label`` for a metric given its own ``label=``.

    Raises:
        ValueError: two metrics would log under one name (names them; pass ``label=``).

    Example:
        >>> logged_names([AppliedMetric("accuracy", on="a"),
        ...               AppliedMetric("accuracy", on="b", label="b_acc")], "train_", owner="p")
        {'a.accuracy': 'train_accuracy', 'b_acc': 'train_b_acc'}
    """
    out: dict[str, str] = {}
    for m in metrics:
        name = prefix + (m.name if m.label == f"{m.node}.{m.name}" else m.label)
        clash = [lbl for lbl, n in out.items() if n == name]
        if clash or m.label in out:
            raise ValueError(f"{owner}: metrics {clash or [m.label]} and {m.label!r} would both "
                             f"be logged as {name!r}; give one of them label=...")
        out[m.label] = name
    return out


def log_epoch_metrics(metrics: Sequence[AppliedMetric], stats: Mapping[str, Any] | None,
                      results: Any, epoch: int, *, prefix: str = "train_",
                      owner: str = "TrainPhase") -> dict[str, float]:
    """Finalize an epoch's stacked per-batch statistics on the device and log each value
    in ``results.metrics`` (``train_accuracy``, ...). Returns ``{name: value}``.

    Example:
        >>> from modjax.train.results import MetricStore
        >>> class R: metrics = MetricStore()
        >>> m = AppliedMetric("mae", on="h")
        >>> s = jax.tree.map(lambda a: a[None], m.batch_stats([jnp.ones((2, 1)), jnp.zeros((2, 1))]))
        >>> log_epoch_metrics([m], {"h.mae": s}, R, 0)
        {'train_mae': 1.0}
    """
    if not metrics or stats is None:
        return {}
    names = logged_names(metrics, prefix, owner=owner)
    out = {names[label]: value for label, value in finalize_all(metrics, stats).items()}
    for name, value in out.items():
        results.metrics.log(name, value, epoch=epoch)
    return out
