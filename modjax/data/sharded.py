"""Row-sharded device data: each device holds only the rows its own batch slots use.

A plan's batch axis is cut into one contiguous block of slots per device along the
mesh's ``"data"`` axis (the same cut ``P(None, "data")`` makes). For every device the
rows its block reads (over all batches and roles) are collected on the host, padded to
a fixed capacity, and placed on that device only; the plan's indices are remapped to
positions within the device's rows. The gather inside the jitted step is then a local
``take`` per device (``shard_map``): no collective, no replicated copy, and every
device holds ~1/N of the epoch's rows. Across processes each process reads and places
only the rows of its own devices, and the global plan is assembled from the processes'
slices with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from modjax.data.plan import IndexPlan

__all__ = ["RowBlocks", "row_blocks", "place_row_blocks", "put_local_plan",
           "make_sharded_gather"]

DATA_AXIS = "data"


@dataclass(frozen=True)
class RowBlocks:
    """Per-device rows of one plan and the plan remapped to them.

    Attributes:
        rows: ``(n_devices, capacity)`` positions in the store's view (padding: 0).
        plan: the plan with each device's indices local to its own rows.
    """

    rows: np.ndarray
    plan: IndexPlan

    @property
    def capacity(self) -> int:
        return int(self.rows.shape[1])


def row_blocks(plan: IndexPlan, n_devices: int) -> RowBlocks:
    """Cut ``plan`` into ``n_devices`` slot blocks and remap each to its own rows.

    Args:
        plan: a host plan (positions in the store's view).
        n_devices: devices along the data axis (the batch is padded to a multiple).

    Returns:
        The per-device rows and the remapped plan (same masks and weights).

    Example:
        >>> p = IndexPlan.from_flat(np.array([5, 1, 7, 3]), batch_size=4)
        >>> b = row_blocks(p, 2)
        >>> b.rows.tolist(), b.plan.indices["default"].tolist()
        ([[1, 5], [3, 7]], [[1, 0, 1, 0]])
    """
    plan = plan.pad_batch_to_multiple(n_devices)
    part = plan.batch_size // n_devices
    nb, roles = plan.n_batches, plan.roles
    capacity = max(1, nb * part * len(roles))
    rows = np.zeros((n_devices, capacity), dtype=np.int64)
    local = {r: np.zeros((nb, plan.batch_size), dtype=np.int32) for r in roles}
    for d in range(n_devices):
        cols = slice(d * part, (d + 1) * part)
        flat = np.concatenate([np.asarray(plan.indices[r])[:, cols].ravel() for r in roles])
        uniq, inv = np.unique(flat, return_inverse=True)
        rows[d, :len(uniq)] = uniq
        size = nb * part
        for i, r in enumerate(roles):
            local[r][:, cols] = inv[i * size:(i + 1) * size].reshape(nb, part)
    return RowBlocks(rows, IndexPlan(local, dict(plan.mask), dict(plan.weights)))


def place_row_blocks(blocks: RowBlocks, read: Callable[[np.ndarray], Mapping[str, Any]],
                     mesh: Mesh) -> dict[str, Any]:
    """Global store arrays ``[n_devices * capacity, ...]`` sharded ``P("data")``; only the
    blocks of this process's devices are read (``read(rows) -> host arrays``).

    Args:
        blocks: from :func:`row_blocks`.
        read: host reader of a block's rows (``DeviceStore._host_arrays`` of a view).
        mesh: the mesh (its ``"data"`` axis has ``n_devices`` entries).

    Returns:
        The store tree (``features``, ``targets``, ``tags``, ``row_ids``) as global arrays.
    """
    cap = blocks.capacity
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    cache: dict[int, Any] = {}

    def block(d: int) -> Any:
        if d not in cache:
            cache[d] = read(blocks.rows[d])
        return cache[d]

    probe = read(blocks.rows[0][:1])
    paths = jax.tree_util.tree_leaves_with_path(probe)
    treedef = jax.tree.structure(probe)
    leaves = []
    for path, leaf in paths:
        shape = (blocks.rows.shape[0] * cap,) + tuple(np.shape(leaf)[1:])

        def cb(idx: Any, path: Any = path) -> np.ndarray:
            d = (idx[0].start or 0) // cap
            host = block(d)
            for k in path:
                host = host[k.key]
            return np.asarray(host)[(slice(None),) + tuple(idx[1:])]

        leaves.append(jax.make_array_from_callback(shape, sharding, cb))
    return jax.tree.unflatten(treedef, leaves)


def put_local_plan(plan: IndexPlan, mesh: Mesh) -> IndexPlan:
    """The remapped plan on the mesh, sharded ``P(None, "data")``; across processes each
    process contributes only its slice (:meth:`IndexPlan.process_slice`).

    Args:
        plan: ``RowBlocks.plan`` (batch already a multiple of the data axis size).
        mesh: the mesh.

    Returns:
        The device plan.
    """
    sharding = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
    if sharding.is_fully_addressable:
        return jax.device_put(plan, sharding)
    procs = sorted({d.process_index for d in mesh.devices.flat})
    mine = plan.process_slice(procs.index(jax.process_index()), len(procs))
    return jax.tree.map(
        lambda local, full: jax.make_array_from_process_local_data(
            sharding, np.asarray(local), np.shape(full)), mine, plan)


def make_sharded_gather(mesh: Mesh, gather_plan: Callable[..., Any]) -> Callable[..., Any]:
    """``gather_plan`` run per device on its own rows (``shard_map`` over ``"data"``).

    Args:
        mesh: the mesh.
        gather_plan: ``(store_arrays, plan_step) -> {role: batch}``.

    Returns:
        The same signature; every output leaf is sharded ``P("data")`` on its batch axis.
    """
    spec = PartitionSpec(DATA_AXIS)

    def fn(store_arrays: Any, step: Any) -> Any:
        return jax.shard_map(gather_plan, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                             check_vma=False)(store_arrays, step)
    return fn
