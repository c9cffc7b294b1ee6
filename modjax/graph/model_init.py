"""Initialisation helpers of ``ModelGraph``: keys per node label and grouped inits.

Every node's initial values depend only on the root key and its label
(``fold_in(key, label_seed(label))``); built-in models of equal config and input shape
are initialised together in one cached, jitted program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from modjax.graph.shapes import label_seed

__all__: list[str] = []


def _as_key(key: Any) -> Any:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, int):
        return jax.random.key(key)
    return key


def _node_key(key: Any, label: str) -> Any:
    return None if key is None else jax.random.fold_in(key, label_seed(label))


_INIT_CACHE: dict[Any, Any] = {}
#: A node may be padded to this many times its own draw count to share a loop body.
_PAD_FACTOR = 4


def _prefix_draws(root: Any) -> bool:
    """Whether ``uniform(k, (n,))`` is the first ``n`` values of ``uniform(k, (m,))``.

    True for partitionable threefry (JAX's default): each value depends only on the key
    and its index, so nodes needing different numbers of draws can share one draw.
    """
    if not jax.config.jax_threefry_partitionable:
        return False
    try:
        impl = str(jax.random.key_impl(root))
    except (TypeError, ValueError):
        impl = str(jax.config.jax_default_prng_impl)
    return impl == "threefry2x32"


def _draw_buckets(draws: Sequence[int | None], prefix: bool) -> list[list[int]]:
    """Groups (by index) that draw their uniforms in one loop body.

    A bucket holds groups needing at most ``_PAD_FACTOR`` times fewer draws than its
    largest (equal counts only when draws are not prefix-consistent), so padding wastes
    little memory while a typical graph needs one body: random-bit generation is what
    dominates the compile time of an init, far more than the arithmetic around it.
    """
    order = sorted((i for i, n in enumerate(draws) if n), key=lambda i: -draws[i])
    buckets: list[list[int]] = []
    for i in order:
        top = draws[buckets[-1][0]] if buckets else None
        fits = top is not None and (top <= _PAD_FACTOR * draws[i] if prefix
                                    else top == draws[i])
        if fits:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _grouped_init(spec: tuple[tuple[Any, int, int | None], ...], models: list[Any],
                  prefix: bool) -> Any:
    """One jitted program ``(root, seeds per group) -> stacked (params, state) per group``.

    ``spec`` lists ``(model cache key, group size, draws)``. Groups whose model takes its
    randomness as uniform draws (``init_draws``) get them from one ``lax.map`` of
    ``uniform(fold_in(root, seed))`` per bucket, then build their params by ``vmap`` of
    ``init_from_draws``; key-free models are initialised once and broadcast; any other
    model gets a ``lax.map`` of its own ``init``. The values are those of calling each
    node's ``init`` on ``fold_in(root, seed)``, and one program serves however many
    nodes share a config, so a graph of hundreds of nodes compiles once, quickly.
    """
    ckey = (spec, prefix)
    fn = _INIT_CACHE.get(ckey)
    if fn is not None:
        return fn
    shapes = [gk[2] for gk, _, _ in spec]
    counts = [c for _, c, _ in spec]
    draws = [d for _, _, d in spec]
    buckets = _draw_buckets(draws, prefix)

    def init_all(root: Any, seeds: tuple[Any, ...]) -> list[Any]:
        out: list[Any] = [None] * len(spec)
        for bucket in buckets:
            width = draws[bucket[0]]
            u = jax.lax.map(lambda s, w=width: jax.random.uniform(
                jax.random.fold_in(root, s), (w,), jnp.float32, -1.0, 1.0),
                jnp.concatenate([seeds[g] for g in bucket]))
            row = 0
            for g in bucket:
                rows = u[row: row + counts[g], : draws[g]]
                row += counts[g]
                out[g] = jax.vmap(lambda v, m=models[g], shp=shapes[g]:
                                  m.init_from_draws(v, shp))(rows)
        for g, (m, shp, n) in enumerate(zip(models, shapes, draws)):
            if n == 0:
                one = m.init_from_draws(jnp.zeros((0,), jnp.float32), shp)
                out[g] = jax.tree.map(lambda a, c=counts[g]: jnp.broadcast_to(
                    a, (c, *jnp.shape(a))), one)
            elif n is None:
                out[g] = jax.lax.map(lambda s, m=m, shp=shp: m.init(
                    jax.random.fold_in(root, s), shp), seeds[g])
        return out

    if len(_INIT_CACHE) > 256:
        _INIT_CACHE.clear()
    fn = _INIT_CACHE[ckey] = jax.jit(init_all)
    return fn


def _model_draws(model: Any, in_shape: tuple[int, ...]) -> int | None:
    fn = getattr(model, "init_draws", None)
    n = fn(in_shape) if callable(fn) else None
    return None if n is None else int(n)
