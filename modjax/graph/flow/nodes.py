"""Executable node kinds of a flow ``Graph``: step, residual, gate, switch, loop, map.

A node receives a tuple of per-sample specs at init (its stream input(s) first, then
its ``using`` references) and the matching tuple of batched arrays at apply. Every
node is a pure function of ``(params, state, inputs, key, train)``; the graph walks
them in construction order at trace time, so XLA sees one program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import GraphStructureError, ShapeMismatchError
from modjax.graph.flow.base import FlowModule
from modjax.io.registry import deserialize, serialize

__all__ = ["FlowNode", "StepNode", "AlsoNode", "GateNode", "SwitchNode", "LoopNode",
           "MapNode", "init_model", "node_from_config", "model_name"]

Spec = jax.ShapeDtypeStruct


def model_name(model: Any) -> str:
    """Display/class name of a model (``Linear``, a graph's label, ...)."""
    return getattr(model, "label", None) or type(model).__name__


def _arg(specs: tuple[Any, ...]) -> Any:
    """One input -> itself, several -> the tuple (the flow multi-input convention)."""
    return specs[0] if len(specs) == 1 else tuple(specs)


def _batched(specs: tuple[Spec, ...], batch: int = 2) -> tuple[Spec, ...]:
    return tuple(Spec((batch, *s.shape), s.dtype) for s in specs)


def init_model(model: Any, key: Any, in_specs: tuple[Spec, ...], *,
               where: str) -> tuple[Any, Any, Spec]:
    """Build (when the model supports it), init and shape-infer one model.

    Args:
        model: a model (protocol of docs/architecture.md).
        key: PRNG key.
        in_specs: per-sample input specs (several when the model takes ``using`` refs).
        where: the node/role, for error messages.

    Returns:
        ``(params, state, out_spec)`` with ``out_spec`` per sample.
    """
    shape = _arg(tuple(tuple(s.shape) for s in in_specs))
    try:
        if callable(getattr(model, "build", None)) and (
                len(in_specs) == 1 or isinstance(model, FlowModule) or _is_graph(model)):
            model.build(shape)
        params, state = model.init(key, shape)
        y = jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, state,
                           _arg(_batched(in_specs)))
    except (ShapeMismatchError, GraphStructureError) as e:
        raise type(e)(f"{where}: {e}") from e
    except (TypeError, ValueError) as e:
        raise ShapeMismatchError(
            f"{where}: {model_name(model)} cannot take per-sample input shape(s) {shape}: {e}"
        ) from e
    if not isinstance(y, Spec):
        raise ShapeMismatchError(
            f"{where}: {model_name(model)} must return one array, got {jax.tree.structure(y)}")
    return params, state, Spec(tuple(y.shape[1:]), y.dtype)


def _is_graph(model: Any) -> bool:
    return hasattr(model, "apply_capture") and hasattr(model, "tree_children")


def _same_spec(a: Spec, b: Spec) -> bool:
    return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


def _split(key: Any, n: int) -> list[Any]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _call(model: Any, params: Any, state: Any, x: Any, key: Any, train: bool,
          capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
    if capture:
        return model.apply_capture(params, state, x, key=key, train=train, capture=capture)
    y, new_state = model.apply(params, state, x, key=key, train=train)
    return y, new_state, {}


class FlowNode:
    """Base of the node kinds.

    Attributes:
        kind: node kind name (``"step"``, ``"gate"``...).
        train_override: ``None`` (follow the graph) or a fixed training flag set by
            ``set_training_at``.
    """

    kind = "node"

    def __init__(self) -> None:
        self.train_override: bool | None = None

    def models(self) -> dict[str, Any]:
        """Named sub-models (the keys of this node's params dict for composites)."""
        raise TypeError(f"{type(self).__name__} must define models()")  # pragma: no cover

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        """Init params/state for per-sample ``in_specs``; returns the output spec too."""
        raise TypeError(f"{type(self).__name__} must define init()")  # pragma: no cover

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        """Run the node: ``(y, new_state, captured)``."""
        raise TypeError(f"{type(self).__name__} must define apply()")  # pragma: no cover

    def describe(self) -> str:
        """Short text for summaries and DOT labels."""
        return " | ".join(f"{k}: {model_name(m)}" if k else model_name(m)
                          for k, m in self.models().items())

    def get_config(self) -> dict[str, Any]:
        cfg = {"kind": self.kind,
               "models": {k: serialize(m) for k, m in self.models().items()}}
        if self.train_override is not None:
            cfg["train_override"] = self.train_override
        return cfg


class StepNode(FlowNode):
    """One model on the stream (``from_``/``through``/split branch/merge/``input``).

    Its params are the model's own (so a labelled subgraph's paths nest directly).
    """

    kind = "step"

    def __init__(self, model: Any, *, passthrough: bool = False) -> None:
        super().__init__()
        self.model = model
        self.passthrough = passthrough

    def models(self) -> dict[str, Any]:
        return {} if self.passthrough else {"": self.model}

    def describe(self) -> str:
        return "input" if self.passthrough else model_name(self.model)

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        if self.passthrough:
            return {}, {}, in_specs[0]
        return init_model(self.model, key, in_specs, where=where)

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        if self.passthrough:
            return inputs[0], state, {}
        return _call(self.model, params, state, _arg(inputs), key, train, capture)

    def get_config(self) -> dict[str, Any]:
        if self.passthrough:
            return {"kind": "input"}
        return super().get_config()


class AlsoNode(FlowNode):
    """Residual: ``x + model(x [, refs])``."""

    kind = "also"

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def models(self) -> dict[str, Any]:
        return {"": self.model}

    def describe(self) -> str:
        return f"x + {model_name(self.model)}(x)"

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        params, state, out = init_model(self.model, key, in_specs, where=where)
        if not _same_spec(out, in_specs[0]):
            raise ShapeMismatchError(
                f"{where}: also({model_name(self.model)}) must keep the stream shape "
                f"{tuple(in_specs[0].shape)} for the residual add, but returns {tuple(out.shape)}")
        return params, state, out

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        y, state, cap = _call(self.model, params, state, _arg(inputs), key, train, capture)
        return inputs[0] + y, state, cap


class GateNode(FlowNode):
    """Soft mixture: ``sum_i router(x)[..., i] * expert_i(x)``; every expert runs."""

    kind = "gate"

    def __init__(self, router: Any, experts: list[Any]) -> None:
        super().__init__()
        self.router, self.experts = router, list(experts)

    def models(self) -> dict[str, Any]:
        out = {"router": self.router}
        out.update({f"expert_{i}": e for i, e in enumerate(self.experts)})
        return out

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        keys = jax.random.split(key, len(self.experts) + 1)
        params, state = {}, {}
        params["router"], state["router"], w = init_model(
            self.router, keys[0], in_specs, where=f"{where} router")
        n = len(self.experts)
        if not w.shape or w.shape[-1] != n:
            raise GraphStructureError(
                f"{where}: router {model_name(self.router)} outputs per-sample shape "
                f"{tuple(w.shape)} but the gate has {n} experts (expected last axis {n})")
        outs = []
        for i, e in enumerate(self.experts):
            params[f"expert_{i}"], state[f"expert_{i}"], o = init_model(
                e, keys[i + 1], in_specs[:1], where=f"{where} expert_{i}")
            outs.append(o)
        if any(not _same_spec(o, outs[0]) for o in outs):
            raise ShapeMismatchError(f"{where}: gate experts must agree on their output; got "
                                     f"{[tuple(o.shape) for o in outs]}")
        if len(w.shape) - 1 > len(outs[0].shape):
            raise ShapeMismatchError(
                f"{where}: router weights {tuple(w.shape)} have more axes than the experts' "
                f"output {tuple(outs[0].shape)}")
        return params, state, outs[0]

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        keys = _split(key, len(self.experts) + 1)
        new_state = dict(state)
        w, new_state["router"] = self.router.apply(
            params["router"], state["router"], _arg(inputs), key=keys[0], train=train)
        x = inputs[0]
        y = None
        for i, e in enumerate(self.experts):
            name = f"expert_{i}"
            out, new_state[name] = e.apply(params[name], state[name], x, key=keys[i + 1],
                                           train=train)
            wi = w[..., i]
            wi = wi.reshape(wi.shape + (1,) * (out.ndim - wi.ndim))
            y = wi * out if y is None else y + wi * out
        return y, new_state, {}


class SwitchNode(FlowNode):
    """Hard routing with ``lax.switch``: only the selected branch runs (and gets gradient)."""

    kind = "switch"

    def __init__(self, router: Any, branches: list[Any]) -> None:
        super().__init__()
        self.router, self.branches = router, list(branches)

    def models(self) -> dict[str, Any]:
        out = {"router": self.router}
        out.update({f"branch_{i}": b for i, b in enumerate(self.branches)})
        return out

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        keys = jax.random.split(key, len(self.branches) + 1)
        params, state = {}, {}
        params["router"], state["router"], idx = init_model(
            self.router, keys[0], in_specs, where=f"{where} router")
        if not jnp.issubdtype(idx.dtype, jnp.integer):
            raise GraphStructureError(
                f"{where}: switch router {model_name(self.router)} must return an integer "
                f"branch index, got dtype {idx.dtype}")
        outs = []
        for i, b in enumerate(self.branches):
            params[f"branch_{i}"], state[f"branch_{i}"], o = init_model(
                b, keys[i + 1], in_specs[:1], where=f"{where} branch_{i}")
            outs.append(o)
        if any(not _same_spec(o, outs[0]) for o in outs):
            raise ShapeMismatchError(
                f"{where}: switch branches must return the same shape and dtype (lax.switch "
                f"needs it); got {[(tuple(o.shape), str(o.dtype)) for o in outs]}")
        return params, state, outs[0]

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        n = len(self.branches)
        keys = _split(key, n + 1)
        new_state = dict(state)
        idx, new_state["router"] = self.router.apply(
            params["router"], state["router"], _arg(inputs), key=keys[0], train=train)
        idx = jnp.asarray(idx)
        if idx.size != 1:
            raise ShapeMismatchError(
                f"switch router {model_name(self.router)} must return one branch index for the "
                f"batch, got an array of shape {idx.shape}")
        idx = jax.lax.stop_gradient(jnp.clip(idx.reshape(()).astype(jnp.int32), 0, n - 1))
        names = [f"branch_{i}" for i in range(n)]
        x = inputs[0]

        def make(i: int):
            def run(bstates: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
                y, s = self.branches[i].apply(params[names[i]], bstates[i], x,
                                              key=keys[i + 1], train=train)
                return y, bstates[:i] + (s,) + bstates[i + 1:]
            return run

        y, bstates = jax.lax.switch(idx, [make(i) for i in range(n)],
                                    tuple(state[nm] for nm in names))
        new_state.update(zip(names, bstates))
        return y, new_state, {}


def _halted(signal: jax.Array, batch: int) -> jax.Array:
    """Per-sample halt flags from a halt condition's output (positive = halt)."""
    signal = jnp.asarray(signal)
    if signal.ndim == 0:
        return jnp.broadcast_to(signal > 0, (batch,))
    return (signal.reshape(signal.shape[0], -1) > 0).all(axis=1)


class LoopNode(FlowNode):
    """Repeat ``body`` on the stream: ``for_`` (lax.scan) or ``while_``/``until``.

    ``while_``/``until`` run a ``lax.scan`` over ``max_iter`` steps with a per-sample
    done mask: halted samples keep their value (so gradients flow only through the
    iterations each sample ran) and a step where every sample has halted skips the
    body through ``lax.cond``.
    """

    kind = "loop"

    def __init__(self, body: Any, mode: str, n: int, cond: Any = None) -> None:
        super().__init__()
        if mode not in ("for", "while", "until"):
            raise ValueError(f"loop mode must be 'for', 'while' or 'until', got {mode!r}")
        if int(n) < 1:
            raise ValueError(f"loop needs at least one iteration, got {n}")
        self.body, self.mode, self.n, self.cond = body, mode, int(n), cond

    def models(self) -> dict[str, Any]:
        out = {"body": self.body}
        if self.cond is not None:
            out["cond"] = self.cond
        return out

    def describe(self) -> str:
        what = f"for {self.n}" if self.mode == "for" else (
            f"{self.mode} {model_name(self.cond)} (max {self.n})")
        return f"loop {model_name(self.body)} {what}"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "n": self.n}

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        kb, kc = jax.random.split(key)
        params, state = {}, {}
        params["body"], state["body"], out = init_model(self.body, kb, in_specs,
                                                        where=f"{where} body")
        if not _same_spec(out, in_specs[0]):
            raise ShapeMismatchError(
                f"{where}: a loop body must map the stream to its own shape "
                f"{tuple(in_specs[0].shape)} ({in_specs[0].dtype}); got {tuple(out.shape)} "
                f"({out.dtype})")
        if self.cond is not None:
            params["cond"], state["cond"], _ = init_model(self.cond, kc, in_specs[:1],
                                                          where=f"{where} halt condition")
        return params, state, out

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        x0, refs = inputs[0], inputs[1:]
        keys = None if key is None else jax.random.split(key, self.n)

        def body(x: Any, bs: Any, k: Any) -> tuple[Any, Any]:
            return self.body.apply(params["body"], bs, _arg((x, *refs)), key=k, train=train)

        if self.mode == "for":
            def step(carry, k):
                y, bs = body(*carry, k)
                return (y, bs), None
            (y, bs), _ = jax.lax.scan(step, (x0, state["body"]), keys, length=self.n)
            return y, {**state, "body": bs}, {}

        batch = x0.shape[0]

        def halt(x: Any, cs: Any) -> tuple[jax.Array, Any]:
            sig, cs = self.cond.apply(params["cond"], cs, x, train=train)
            return _halted(sig, batch), cs

        def step(carry, k):
            x, bs, cs, done = carry
            if self.mode == "while":
                h, cs = halt(x, cs)
                done = done | h
            y, bs = jax.lax.cond(jnp.all(done), lambda: (x, bs), lambda: body(x, bs, k))
            keep = done.reshape((batch,) + (1,) * (x.ndim - 1))
            x = jnp.where(keep, x, y)
            if self.mode == "until":
                h, cs = halt(x, cs)
                done = done | h
            return (x, bs, cs, done), None

        carry0 = (x0, state["body"], state["cond"], jnp.zeros((batch,), bool))
        (y, bs, cs, _), _ = jax.lax.scan(step, carry0, keys, length=self.n)
        return y, {**state, "body": bs, "cond": cs}, {}


class MapNode(FlowNode):
    """Apply ``body`` independently along the first per-sample axis of the source.

    Modes: ``each`` (``lax.map`` semantics: a scan over the elements, threading the
    body's state), ``batched`` (``vmap`` over the elements: one fused call) and
    ``slices`` (split the last axis into ``n`` equal slices, run the body on all of
    them as one batch, and join the results).
    """

    kind = "map"

    def __init__(self, body: Any, mode: str, n: int = 0, batched: bool = False) -> None:
        super().__init__()
        if mode not in ("each", "over", "slices"):
            raise ValueError(f"map mode must be 'each', 'over' or 'slices', got {mode!r}")
        self.body, self.mode, self.n, self.batched = body, mode, int(n), bool(batched)

    def models(self) -> dict[str, Any]:
        return {"body": self.body}

    def describe(self) -> str:
        how = f"slices({self.n})" if self.mode == "slices" else self.mode
        return f"map {model_name(self.body)} {how}{' batched' if self.batched else ''}"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "n": self.n, "batched": self.batched}

    def _elem_specs(self, in_specs: tuple[Spec, ...], where: str) -> tuple[Spec, ...]:
        src, refs = in_specs[0], in_specs[1:]
        if self.mode == "slices":
            if not src.shape or src.shape[-1] % self.n:
                raise ShapeMismatchError(
                    f"{where}: map(...).slices({self.n}) needs a last axis divisible by "
                    f"{self.n}, got per-sample shape {tuple(src.shape)}")
            return (Spec((src.shape[-1] // self.n,), src.dtype),) + refs
        if not src.shape:
            raise ShapeMismatchError(
                f"{where}: map over a per-sample scalar: there is no axis to map over")
        return (Spec(tuple(src.shape[1:]), src.dtype),) + refs

    def init(self, key: Any, in_specs: tuple[Spec, ...], where: str) -> tuple[Any, Any, Spec]:
        elem = self._elem_specs(in_specs, where)
        p, s, out = init_model(self.body, key, elem, where=f"{where} body")
        src = in_specs[0]
        if self.mode == "slices":
            if len(out.shape) != 1:
                raise ShapeMismatchError(
                    f"{where}: a slices body must return a vector per slice, got {out.shape}")
            full = Spec((*src.shape[:-1], self.n * out.shape[0]), out.dtype)
        else:
            full = Spec((src.shape[0], *out.shape), out.dtype)
        return {"body": p}, {"body": s}, full

    def apply(self, params: Any, state: Any, inputs: tuple[Any, ...], *, key: Any,
              train: bool, capture: tuple[str, ...] = ()) -> tuple[Any, Any, dict]:
        src, refs = inputs[0], inputs[1:]
        p, bs = params["body"], state["body"]
        if self.mode == "slices":
            lead = src.shape[:-1]
            flat = src.reshape(-1, src.shape[-1] // self.n)
            reps = flat.shape[0] // src.shape[0]
            rrefs = tuple(jnp.repeat(r, reps, axis=0) for r in refs)
            y, bs = self.body.apply(p, bs, _arg((flat, *rrefs)), key=key, train=train)
            return y.reshape(*lead, -1), {"body": bs}, {}
        n = src.shape[1]
        keys = None if key is None else jax.random.split(key, n)
        if self.batched:
            def one(xi, k):
                return self.body.apply(p, bs, _arg((xi, *refs)), key=k, train=train)[0]
            y = jax.vmap(one, in_axes=(1, None if keys is None else 0), out_axes=1)(src, keys)
            return y, state, {}

        def step(s, xs):
            xi, k = xs
            yi, s = self.body.apply(p, s, _arg((xi, *refs)), key=k, train=train)
            return s, yi
        bs, ys = jax.lax.scan(step, bs, (jnp.moveaxis(src, 1, 0), keys))
        return jnp.moveaxis(ys, 0, 1), {"body": bs}, {}


_KINDS = {"step": StepNode, "also": AlsoNode, "gate": GateNode, "switch": SwitchNode,
          "loop": LoopNode, "map": MapNode}


def node_from_config(cfg: dict[str, Any], **kw: Any) -> FlowNode:
    """Rebuild a node from :meth:`FlowNode.get_config` output."""
    kind = cfg["kind"]
    if kind == "input":
        return StepNode(None, passthrough=True)
    models = {k: deserialize(v, **kw) for k, v in cfg["models"].items()}
    if kind == "step":
        node: FlowNode = StepNode(models[""])
    elif kind == "also":
        node = AlsoNode(models[""])
    elif kind == "gate":
        node = GateNode(models["router"], [models[f"expert_{i}"] for i in range(len(models) - 1)])
    elif kind == "switch":
        node = SwitchNode(models["router"],
                          [models[f"branch_{i}"] for i in range(len(models) - 1)])
    elif kind == "loop":
        node = LoopNode(models["body"], cfg["mode"], cfg["n"], models.get("cond"))
    elif kind == "map":
        node = MapNode(models["body"], cfg["mode"], cfg.get("n", 0), cfg.get("batched", False))
    else:
        from modjax.errors import ConfigError
        raise ConfigError(f"unknown flow node kind {kind!r}; known: {sorted(_KINDS)}")
    node.train_override = cfg.get("train_override")
    return node
