"""The vmapped epoch: K runs of one structure as one compiled ``lax.scan`` per epoch.

Runs whose graph definitions, loss specs, optimizer structure and batch shapes are equal
differ only in values: parameters, optimizer state (learning rates injected with
``optax.inject_hyperparams`` live there), PRNG keys, loss weights and index plans. So
they are one program with a leading replica axis on all of these. Per replica the scan
body is the ordinary training step; a batch is applied only when it holds real samples
and the replica is still active, so plans padded to a common batch count and replicas
stopped early keep exactly the state a run of their own would have.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.train.losses import AppliedLoss
from modjax.train.programs import note_trace, program, spec_of
from modjax.train.step import make_train_step

__all__ = ["replica_epoch", "weightless_spec", "stack_trees", "take_replica", "put_replica",
           "pad_rows", "stack_plans", "REPLICA_AXIS"]

#: mesh axis name the replica axis is sharded over
REPLICA_AXIS = "replica"


def weightless_spec(losses: Sequence[AppliedLoss]) -> tuple:
    """Specs of ``losses`` with their weights left out (weights are traced per replica).

    Example:
        >>> a, b = AppliedLoss("mse", on="h", weight=1.0), AppliedLoss("mse", on="h", weight=3.0)
        >>> weightless_spec([a]) == weightless_spec([b])
        True
    """
    out = []
    for al in losses:
        c = copy.copy(al)
        c.weight = 1.0
        out.append(spec_of(c))
    return tuple(out)


def _weighted(losses: Sequence[AppliedLoss], weights: Any) -> list[AppliedLoss]:
    """Copies of ``losses`` whose weight is the traced ``weights[i]``."""
    out = []
    for i, al in enumerate(losses):
        c = copy.copy(al)
        c.weight = weights[i]
        out.append(c)
    return out


def replica_epoch(graph: Any, losses: Sequence[AppliedLoss], optimizer: Any, *,
                  keys: Sequence[str], gathers: Mapping[str, Any], shared: Mapping[str, bool],
                  record: Sequence[str] = (), capture: Sequence[str] = (),
                  active_nodes: Sequence[str] | None = None, compute_dtype: Any = None,
                  sharding: Any = None) -> Any:
    """The jitted vmapped epoch ``fn(carry, frozen, stores, plans, active, loss_weights)``.

    Args:
        graph: the (shared) graph; its definition is what is traced.
        losses: the phase's AppliedLosses (their weights come per replica).
        optimizer: the Optimizer every replica uses (state per replica).
        keys: batch keys (head labels) of the bindings.
        gathers: per key, the pure gather function.
        shared: per key, True when every replica reads the same store arrays (no
            replica axis), False when the stores are stacked.
        record: node labels whose outputs/targets are recorded.
        capture: tag paths recorded per batch.
        active_nodes: restrict the forward pass.
        compute_dtype: mixed-precision compute dtype or None.
        sharding: a ``Mesh`` with a ``"replica"`` axis, or None.

    Returns:
        A jitted function; ``carry`` leaves have a leading replica axis (``frozen`` has
        none), ``plans`` is ``{key: IndexPlan}`` with ``[K, n_batches, batch]`` leaves,
        ``active`` is bool ``[K]`` and ``loss_weights`` float32 ``[K, n_losses]``. It
        returns ``(carry, {"loss_table": [K, n_batches, 1 + n_losses], "records"})``.
    """
    sig = ("replica_epoch", graph.definition, weightless_spec(losses), spec_of(optimizer),
           tuple(keys), tuple(sorted(shared.items())), tuple(record), tuple(capture),
           spec_of(active_nodes), spec_of(compute_dtype), sharding)
    return program(sig, lambda: _make(graph, losses, optimizer, keys, gathers, shared, record,
                                      capture, active_nodes, compute_dtype, sharding))


def _make(graph, losses, optimizer, keys, gathers, shared, record, capture, active_nodes,
          compute_dtype, sharding):
    from modjax.train.precision import compute_graph

    core = compute_graph(graph, compute_dtype)
    labels = [al.label for al in losses]
    keys = list(keys)

    def one(carry, frozen, stores, plans, active, weights):
        step = make_train_step(core, _weighted(losses, weights), optimizer,
                               active_nodes=active_nodes, capture=capture, record=record)

        def body(c, xs):
            batch = {k: gathers[k](stores[k], xs[k]) for k in keys}
            new, m = step(dict(c, frozen=frozen), batch)
            new.pop("frozen")
            real = active & jnp.any(jnp.stack([jnp.any(xs[k].mask[r]) for k in keys
                                               for r in xs[k].roles]))
            # padding batches and stopped replicas leave the carry exactly as it was
            new = jax.tree.map(lambda a, b: jnp.where(real, a, b), new, c)
            row = jnp.stack([m["loss"]] + [m["losses"][lbl] for lbl in labels])
            return new, {"loss_table": row, "records": m["records"]}

        return jax.lax.scan(body, carry, plans)

    store_axes = {k: (None if shared[k] else 0) for k in keys}

    def epoch(carry, frozen, stores, plans, active, weights):
        note_trace()
        if sharding is not None:
            from jax.sharding import NamedSharding, PartitionSpec

            spec = NamedSharding(sharding, PartitionSpec(REPLICA_AXIS))
            carry = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), carry)
        return jax.vmap(one, in_axes=(0, None, store_axes, 0, 0, 0))(
            carry, frozen, stores, plans, active, weights)

    return jax.jit(epoch, donate_argnums=())


# --------------------------------------------------------------------------- stacking
@jax.jit
def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@jax.jit
def _take(tree: Any, k: Any) -> Any:
    return jax.tree.map(lambda a: a[k], tree)


@jax.jit
def _put(tree: Any, k: Any, value: Any) -> Any:
    return jax.tree.map(lambda a, v: a.at[k].set(v), tree, value)


# one compiled program per tree structure, whatever the replica index (a Python int
# index would compile one program per leaf shape and index)
def stack_trees(trees: Sequence[Any]) -> Any:
    """One pytree whose leaves stack the given trees' leaves on a new leading axis.

    Example:
        >>> stack_trees([{"w": jnp.ones(2)}, {"w": jnp.zeros(2)}])["w"].shape
        (2, 2)
    """
    return _stack(list(trees))


def take_replica(tree: Any, k: int) -> Any:
    """Replica ``k`` of a stacked pytree.

    Example:
        >>> take_replica({"w": jnp.arange(4.0).reshape(2, 2)}, 1)["w"].tolist()
        [2.0, 3.0]
    """
    return _take(tree, np.int32(k))


def put_replica(tree: Any, k: int, value: Any) -> Any:
    """``tree`` with replica ``k`` replaced by ``value`` (a new pytree).

    Example:
        >>> put_replica({"w": jnp.zeros((2, 2))}, 0, {"w": jnp.ones(2)})["w"].tolist()
        [[1.0, 1.0], [0.0, 0.0]]
    """
    return _put(tree, np.int32(k), value)


def pad_rows(trees: Sequence[Any]) -> Any:
    """Stack per-replica store arrays, padding axis 0 to the longest (plans never index
    the padding rows).

    Example:
        >>> pad_rows([{"x": np.ones((2, 1))}, {"x": np.ones((3, 1))}])["x"].shape
        (2, 3, 1)
    """
    n = max(int(np.shape(jax.tree.leaves(t)[0])[0]) for t in trees)

    def pad(*xs: Any) -> Any:
        # filled on the host and uploaded once (a device pad and stack per replica is a
        # few eager dispatches each)
        first = np.asarray(xs[0])
        out = np.zeros((len(xs), n, *first.shape[1:]), first.dtype)
        for i, x in enumerate(xs):
            out[i, :np.shape(x)[0]] = np.asarray(x)
        return jnp.asarray(out)

    return jax.tree.map(pad, *trees)


def stack_plans(plans: Sequence[IndexPlan]) -> tuple[IndexPlan, list[int]]:
    """Per-replica plans padded to one batch count (masked batches) and stacked.

    Returns:
        The stacked plan (``[K, n_batches, batch]`` leaves) and each replica's own
        batch count.

    Raises:
        ValueError: the replicas' batch sizes or roles differ (named).

    Example:
        >>> a = IndexPlan.from_flat(np.arange(4), 2); b = IndexPlan.from_flat(np.arange(6), 2)
        >>> p, n = stack_plans([a, b])
        >>> p.mask["default"].shape, n
        ((2, 3, 2), [2, 3])
    """
    sizes = {(p.batch_size, p.roles) for p in plans}
    if len(sizes) != 1:
        raise ValueError(f"replicas have different batch shapes (batch size, roles): "
                         f"{sorted(sizes, key=str)}; they cannot share one program")
    counts = [p.n_batches for p in plans]
    n = max(counts)
    padded = [p.pad_batches_to(n) for p in plans]
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *padded), counts
