"""ScikitModelWrapper: a scikit-learn estimator as a graph model.

The estimator runs on the host: ``FitPhase`` fits it on the outputs of its upstream
nodes over the whole split (``training_mode="batch_fit"``), or a TrainPhase feeds it
one batch at a time through an ordered ``io_callback`` (``"partial_fit"``). Its forward
inside the jitted graph is a ``jax.pure_callback``; gradients stop at it. The variables
hold only a fit id (see :mod:`modjax.bridge.sklearn_state`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.bridge.sklearn_state import UNFITTED, FitTable, dumps_estimator, loads_estimator
from modjax.data.references import FeatureSetReference
from modjax.errors import ShapeMismatchError
from modjax.graph.models.base import BaseModel, Shape
from modjax.io.registry import register

__all__ = ["ScikitModelWrapper"]

TRAINING_MODES = ("auto", "batch_fit", "partial_fit")
OUTPUT_METHODS = ("auto", "predict", "predict_proba", "transform", "decision_function")


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError as e:  # pragma: no cover - exercised without sklearn installed
        raise ImportError("scikit-learn nodes need scikit-learn and skops: "
                          "pip install 'modjax[sklearn]'") from e
    return sklearn


def _is_fitted(est: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(est)
    except (NotFittedError, TypeError):
        return False
    return True


def _choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"ScikitModelWrapper: {what} must be one of {list(allowed)}, got "
                         f"{value!r}")
    return value


@register("ScikitModelWrapper")
class ScikitModelWrapper(BaseModel):
    """A scikit-learn estimator as a graph node's model.

    Args:
        model: an estimator instance (fitted or not; a fitted one is used as is until
            refitted).
        training_mode: ``"batch_fit"`` (``FitPhase`` calls ``fit`` on the whole split),
            ``"partial_fit"`` (a TrainPhase calls ``partial_fit`` per batch) or ``"auto"``
            (``batch_fit`` when the estimator has ``fit``, else ``partial_fit``).
        output_method: ``"predict"``, ``"predict_proba"``, ``"transform"``,
            ``"decision_function"`` or ``"auto"`` (``predict_proba`` for classifiers,
            ``transform`` for transformers without ``predict``, else ``predict``).
        partial_fit_kwargs: keyword arguments of every ``partial_fit`` call (e.g.
            ``{"classes": [0, 1]}``).
        output_shape: per-sample output shape; needed when it cannot be found otherwise.
            An unfitted classifier's ``predict_proba``/``decision_function`` width is
            the number of distinct values of the target column that reaches the node
            (counted at ``build()``); without targets, pass ``(n_classes,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from sklearn.linear_model import LinearRegression
        >>> m = ScikitModelWrapper(LinearRegression(), output_shape=(1,))
        >>> m.build((2,))
        >>> p, s = m.init(jax.random.key(0), (2,))
        >>> x = jnp.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
        >>> p, s = m.fit(p, s, x, x.sum(1, keepdims=True))
        >>> m.apply(p, s, jnp.array([[3.0, 4.0]]))[0].round(4).tolist()
        [[7.0]]
    """

    backend = "scikit"
    #: part of a graph-wise trained graph, but gradients stop at it
    bridged = True
    gradient_barrier = True
    #: FitPhase calls ``fit`` on the host with concrete arrays (it cannot be jitted)
    fits_on_host = True
    _config_determines_model = False
    #: the unfitted estimator's text, made on first use
    _template_cache: str | None = None

    def __init__(self, model: Any, *, training_mode: str = "auto", output_method: str = "auto",
                 partial_fit_kwargs: dict[str, Any] | None = None,
                 output_shape: Any = None) -> None:
        _sklearn()
        name = type(model).__name__
        if isinstance(model, type):
            raise TypeError(f"ScikitModelWrapper: got the class {name}; pass an instance "
                            f"({name}())")
        mode = _choose(training_mode, TRAINING_MODES, "training_mode")
        has_fit, has_pfit = callable(getattr(model, "fit", None)), callable(
            getattr(model, "partial_fit", None))
        if not (has_fit or has_pfit):
            raise TypeError(f"ScikitModelWrapper: {name} has no fit method (nor partial_fit): "
                            "expected a scikit-learn estimator")
        if mode == "auto":
            mode = "batch_fit" if has_fit else "partial_fit"
        if mode == "batch_fit" and not has_fit or mode == "partial_fit" and not has_pfit:
            need = "fit" if mode == "batch_fit" else "partial_fit"
            raise TypeError(f"ScikitModelWrapper: {name} has no {need} method, so it cannot be "
                            f"trained with training_mode={mode!r}")
        if not callable(getattr(model, "get_params", None)):
            raise TypeError(f"ScikitModelWrapper: {name} is not a scikit-learn estimator (no "
                            "get_params)")
        method = _choose(output_method, OUTPUT_METHODS, "output_method")
        if method == "auto":
            method = self._auto_method(model)
        if not callable(getattr(model, method, None)):
            raise TypeError(f"ScikitModelWrapper: {name} has no {method} method "
                            f"(output_method={output_method!r})")
        if partial_fit_kwargs is not None and not isinstance(partial_fit_kwargs, dict):
            raise TypeError("ScikitModelWrapper: partial_fit_kwargs must be a dict")
        super().__init__(output_shape=output_shape)
        self.estimator = model
        self.training_mode, self.output_method = mode, method
        self.partial_fit_kwargs = dict(partial_fit_kwargs or {})
        self._table = FitTable()
        self._initial = self._table.add(model, pinned=True) if _is_fitted(model) else UNFITTED
        #: sorted class values counted in the target column (classifier outputs only)
        self.classes: np.ndarray | None = None
        self._target_kind: str | None = None
        self._what = f"scikit-learn node ({name})"

    @property
    def supports_partial_fit(self) -> bool:
        """Whether the estimator has ``partial_fit`` (ModularML's name)."""
        return callable(getattr(self.estimator, "partial_fit", None))

    @property
    def resolved_training_mode(self) -> str:
        """The training mode in use (``"auto"`` resolved; ModularML's name)."""
        return self.training_mode

    @staticmethod
    def _auto_method(model: Any) -> str:
        from sklearn.base import is_classifier

        if is_classifier(model) and callable(getattr(model, "predict_proba", None)):
            return "predict_proba"
        if callable(getattr(model, "transform", None)) and not callable(
                getattr(model, "predict", None)):
            return "transform"
        return "predict"

    # ------------------------------------------------------------------ shapes
    def _per_class(self) -> bool:
        from sklearn.base import is_classifier

        return is_classifier(self.estimator) and self.output_method in (
            "predict_proba", "decision_function")

    def bind_target_source(self, ref: Any) -> None:
        """Count the classes in the target column that reaches this node (called by the
        graph before :meth:`build`; only classifier outputs per class use it).

        Args:
            ref: the FeatureSet reference whose targets reach the node.
        """
        if not self._per_class() or not isinstance(ref, FeatureSetReference) or not ref.targets:
            return
        try:
            y = ref.resolve().get_domain("targets", list(ref.targets), rep=ref.rep)
        except Exception:  # no data registered (e.g. a graph loaded alone): keep the saved
            return
        from sklearn.utils.multiclass import type_of_target

        y = np.asarray(y).reshape(len(y), -1)
        kind = "multi-column" if y.shape[1] != 1 else "text" if y.dtype == object else \
            type_of_target(y[:, 0])
        if kind not in ("binary", "multiclass"):
            self.classes, self._target_kind = None, kind  # not class labels: width unknown
            return
        self.classes, self._target_kind = np.unique(y[:, 0].astype(np.float32)), None

    def _class_width(self) -> int:
        k = len(self.classes)  # type: ignore[arg-type]
        return 1 if self.output_method == "decision_function" and k == 2 else k

    def _resolve(self, input_shape: Shape) -> None:
        if self._declared_output is not None:
            return
        est, method = self.estimator, self.output_method
        if self.classes is not None and self._per_class():
            self._output_shape = (self._class_width(),)
            if _is_fitted(est):
                self._class_columns(est)  # a prefitted estimator's classes must be known
            return
        if _is_fitted(est):
            y = getattr(est, method)(np.zeros((1, int(np.prod(input_shape)))))
            self._output_shape = tuple(np.asarray(y).shape[1:]) or (1,)
            return
        if method == "transform" and isinstance(est.get_params().get("n_components"), int):
            self._output_shape = (int(est.get_params()["n_components"]),)
            return
        if method == "predict" and self._output_shape is not None:
            return  # the targets' shape (a tail node)
        self._output_shape = None
        raise ValueError(
            f"ScikitModelWrapper({type(est).__name__}) cannot tell its {method} output shape "
            "before it is fitted: pass output_shape=(n_classes,) / (n_components,) "
            + ("or use it as a tail node with targets" if method == "predict" else
               "or feed it from a FeatureSet with one class-label target column"
               + (f" (its target column holds {self._target_kind} values)"
                  if self._target_kind else "")
               if self._per_class() else ""))

    # ------------------------------------------------------------------ protocol
    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        """No params; the state is the fit id (zeros until fitted)."""
        return {}, {"fit_id": jnp.asarray(self._initial)}

    def _predict_host(self, fit_id: Any, x: Any) -> np.ndarray:
        out_shape = self._require_output_shape()
        xs = np.asarray(x)
        n = xs.shape[0]
        if n == 0 or self.training_mode == "partial_fit" and not np.any(np.asarray(fit_id)):
            # a partial_fit node predicts zeros until its first step (the first batch's loss)
            return np.zeros((n, *out_shape), np.float32)
        est = self._table.get(fit_id, what=self._what)
        y = np.asarray(getattr(est, self.output_method)(xs.reshape(n, -1)))
        y = self._spread_classes(est, y)
        if y.size != n * int(np.prod(out_shape)):
            raise ShapeMismatchError(
                f"{self._what}: {self.output_method} returned shape {y.shape} for {n} samples, "
                f"but the node's output shape is {out_shape}")
        return y.astype(np.float32).reshape((n, *out_shape))

    def apply(self, params: Any, state: Any, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        """``output_method`` of the fitted estimator on the host; no gradient flows back."""
        out = jax.ShapeDtypeStruct((x.shape[0], *self._require_output_shape()), jnp.float32)
        y = jax.pure_callback(self._predict_host, out, state["fit_id"],
                              jax.lax.stop_gradient(x), vmap_method="sequential")
        return y, state

    def _class_columns(self, est: Any) -> np.ndarray | None:
        """Where each of the estimator's classes sits among :attr:`classes` (None: the
        estimator's columns are used as they are)."""
        if self.classes is None or self.output_method != "predict_proba":
            return None
        seen = np.asarray(est.classes_).astype(np.float32)
        pos = np.searchsorted(self.classes, seen).clip(0, len(self.classes) - 1)
        unknown = seen[self.classes[pos] != seen]
        if unknown.size:
            raise ShapeMismatchError(
                f"{self._what}: the estimator knows classes {unknown.tolist()} that the "
                f"target column does not hold ({self.classes.tolist()})")
        return pos

    def _spread_classes(self, est: Any, y: np.ndarray) -> np.ndarray:
        # a split may lack some classes: their probability is 0, the width stays n_classes
        pos = self._class_columns(est)
        if pos is None or (len(pos) == len(self.classes) and y.shape[1:] == (len(pos),)):
            return y
        full = np.zeros((y.shape[0], len(self.classes)), y.dtype)  # type: ignore[arg-type]
        full[:, pos] = y.reshape(y.shape[0], -1)
        return full

    def _xy(self, x: Any, y: Any, mask: Any = None) -> tuple[np.ndarray, Any]:
        xs = np.asarray(x)
        X = xs.reshape(xs.shape[0], -1)
        Y = None
        if y is not None:
            ys = np.asarray(y)
            Y = ys.reshape(ys.shape[0], -1)
            Y = Y[:, 0] if Y.shape[1] == 1 else Y
        if mask is not None:
            keep = np.asarray(mask).astype(bool).reshape(-1)
            X, Y = X[keep], None if Y is None else Y[keep]
        return X, Y

    def fit(self, params: Any, state: Any, x: Any, y: Any, *,
            weights: Any = None) -> tuple[dict, dict]:
        """Fit a fresh copy of the estimator on ``x``/``y`` (host arrays; not jittable).

        A ``partial_fit`` node makes one ``partial_fit`` pass over all rows from its
        current fit instead.

        Returns:
            ``(params, state)`` with the new fit id.
        """
        from sklearn.base import clone

        X, Y = self._xy(x, y)
        kw = {} if weights is None else {"sample_weight": np.asarray(weights).reshape(-1)}
        if self.training_mode == "partial_fit":
            fid = state["fit_id"]
            est = self._table.copy_of(fid, what=self._what) if np.any(np.asarray(fid)) \
                else clone(self.estimator)
            est.partial_fit(X, Y, **self._partial_kwargs(), **kw)
        else:
            est = clone(self.estimator)
            est.fit(X, Y, **kw)
        new_id = self._table.add(est, pinned=True)
        self._check_output(est, X)
        return params, {"fit_id": jnp.asarray(new_id)}

    def _check_output(self, est: Any, X: np.ndarray) -> None:
        want = self._require_output_shape()
        got = self._spread_classes(est, np.asarray(getattr(est, self.output_method)(
            X[:1]))).shape[1:] or (1,)
        if int(np.prod(got)) != int(np.prod(want)):
            raise ShapeMismatchError(
                f"{self._what}: after fitting, {self.output_method} gives per-sample shape "
                f"{tuple(got)} but the node was built with output shape {want}")

    def partial_fit_host(self, fit_id: Any, x: Any, y: Any, mask: Any) -> np.ndarray:
        """One ``partial_fit`` step on the unmasked rows; returns the new fit id."""
        from sklearn.base import clone

        X, Y = self._xy(x, y, mask)
        if X.shape[0] == 0:
            return np.asarray(fit_id, np.uint32)
        est = self._table.copy_of(fit_id, what=self._what) if np.any(np.asarray(fit_id)) \
            else clone(self.estimator)
        est.partial_fit(X, Y, **self._partial_kwargs())
        return self._table.add(est, pinned=False)

    def _partial_kwargs(self) -> dict[str, Any]:
        # a classifier's first partial_fit must name every class: take the target column's
        kw = dict(self.partial_fit_kwargs)
        if self.classes is not None and "classes" not in kw and self._per_class():
            kw["classes"] = self.classes
        return kw

    def partial_fit_step(self, state: Any, x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
        """Traced ``partial_fit`` of one batch (an ordered ``io_callback``): new state."""
        from jax.experimental import io_callback

        new_id = io_callback(self.partial_fit_host, jax.ShapeDtypeStruct((4,), jnp.uint32),
                             state["fit_id"], jax.lax.stop_gradient(x), y, mask, ordered=True)
        return {**state, "fit_id": new_id}

    def is_fitted(self, state: Any) -> bool:
        """Whether the (concrete) state names a fitted estimator."""
        return bool(np.any(np.asarray(state["fit_id"])))

    def fitted_estimator(self, state: Any) -> Any:
        """The fitted estimator the state names (the object itself: do not modify it)."""
        return self._table.get(state["fit_id"], what=self._what)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(estimator_class=f"{type(self.estimator).__module__}."
                   f"{type(self.estimator).__qualname__}",
                   estimator=self._template_text(), training_mode=self.training_mode,
                   output_method=self.output_method,
                   partial_fit_kwargs=self.partial_fit_kwargs,
                   fitted=self._table.to_config(), initial=_hex(self._initial))
        if self.classes is not None:
            cfg["classes"] = self.classes.tolist()
        return cfg

    def _template_text(self) -> str:
        from sklearn.base import clone

        if self._template_cache is None:
            self._template_cache = dumps_estimator(clone(self.estimator))
        return self._template_cache

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> ScikitModelWrapper:
        """Rebuild from :meth:`get_config`, fitted estimators included.

        Raises:
            ConfigError: a saved estimator uses a type outside numpy/scipy/scikit-learn
                and ``allow_packaged_code`` is False (the message names it).
        """
        what = f"ScikitModelWrapper({config.get('estimator_class')})"
        est = loads_estimator(config["estimator"], allow_packaged_code=allow_packaged_code,
                              what=what)
        model = cls(est, training_mode=config.get("training_mode", "auto"),
                    output_method=config.get("output_method", "auto"),
                    partial_fit_kwargs=config.get("partial_fit_kwargs"),
                    output_shape=config.get("output_shape"))
        model._table = FitTable.from_config(config.get("fitted", {}),
                                            allow_packaged_code=allow_packaged_code, what=what)
        if config.get("classes") is not None:
            model.classes = np.asarray(config["classes"], np.float32)
        initial = config.get("initial")
        model._initial = UNFITTED if not initial else np.frombuffer(
            bytes.fromhex(initial), np.uint32).copy()
        return model

    def __repr__(self) -> str:
        return (f"ScikitModelWrapper({type(self.estimator).__name__}, "
                f"training_mode={self.training_mode!r}, output_method={self.output_method!r})")


def _hex(fit_id: Any) -> str | None:
    arr = np.asarray(fit_id, np.uint32)
    return arr.tobytes().hex() if arr.any() else None
