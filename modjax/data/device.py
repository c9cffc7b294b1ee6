"""Device-resident data and pure on-device batch gathering.

A :class:`DeviceStore` puts the columns a phase needs on the device once; batches are
then gathered on the device from an :class:`IndexPlan` inside the jitted step, so no
batch ever touches the host. With a ``jax.sharding.Mesh`` the store is replicated and
each batch is sharded along its batch axis (``P("data")``). When the data exceeds a
byte budget, :meth:`DeviceStore.epoch_chunks` streams it: each chunk holds the rows of
a fixed number of batches, padded to a fixed capacity so every chunk has the same
shapes (the step still compiles once).

With ``shard_rows=True`` (the default when the mesh spans several processes) nothing is
replicated: each device holds only the rows its own batch slots read, and each process
reads only its devices' rows (see :mod:`modjax.data.sharded`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from modjax.data.host_gather import (  # noqa: F401 - re-exported: the store's host side
    GATHER_BLOCK_ROWS,
    HOST_ALIGNMENT,
    ChunkRelease,
    aligned_empty,
    gather_domain,
)
from modjax.data.plan import IndexPlan
from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    leaf_dtype,
)
from modjax.data.sharded import make_sharded_gather, place_row_blocks, put_local_plan, row_blocks

__all__ = ["DeviceStore", "gather", "gather_plan", "make_gather", "slice_plan", "DATA_AXIS",
           "shared_store", "clear_shared_stores"]

DATA_AXIS = "data"

#: per FeatureSet: ``[(table, indices, key, store)]``; the table object is the data version
#: (a FeatureSet replaces its immutable Arrow table whenever data or transforms change)
_SHARED: weakref.WeakKeyDictionary[Any, list[tuple[Any, np.ndarray, tuple, DeviceStore]]] = \
    weakref.WeakKeyDictionary()


def gather(store_arrays: Mapping[str, Any], idx: jax.Array, mask: jax.Array,
           weights: jax.Array) -> dict[str, Any]:
    """Gather one role's batch from device arrays (pure; use inside jit/scan).

    Args:
        store_arrays: ``{"features", "targets", "tags": {key: ...}, "row_ids"}`` with rows
            on axis 0 (``DeviceStore.arrays``).
        idx: int32 positions ``[batch]`` (or any leading shape).
        mask: bool, same shape as ``idx``.
        weights: float32, same shape as ``idx``.

    Returns:
        ``{"features", "targets", "tags", "weights", "mask", "row_ids"}``; masked slots
        have weight 0.

    Example:
        >>> arrays = {"features": jnp.arange(6.0).reshape(3, 1, 2), "targets": jnp.zeros((3, 1)),
        ...           "tags": {}, "row_ids": jnp.arange(3)}
        >>> b = gather(arrays, jnp.array([2, 0]), jnp.array([True, False]), jnp.ones(2))
        >>> b["features"][:, 0].tolist(), b["weights"].tolist()
        ([[4.0, 5.0], [0.0, 1.0]], [1.0, 0.0])
    """
    def take(a):
        return jnp.take(a, idx, axis=0, mode="clip")
    return {
        "features": take(store_arrays["features"]),
        "targets": take(store_arrays["targets"]),
        "tags": {k: take(v) for k, v in store_arrays.get("tags", {}).items()},
        "weights": jnp.where(mask, weights, 0.0).astype(jnp.float32),
        "mask": mask,
        "row_ids": take(store_arrays["row_ids"]),
    }


def gather_plan(store_arrays: Mapping[str, Any], step: IndexPlan) -> dict[str, dict[str, Any]]:
    """``{role: batch}`` for one step of a plan (a plan slice with ``[batch]`` leaves).

    Args:
        store_arrays: ``DeviceStore.arrays`` (or a streamed chunk's arrays).
        step: one step of a device plan (what ``lax.scan`` hands the step function).

    Returns:
        ``{role: batch}`` with the batches of :func:`gather`.

    Example:
        >>> arrays = {"features": jnp.arange(4.0).reshape(4, 1), "targets": jnp.zeros((4, 1)),
        ...           "tags": {}, "row_ids": jnp.arange(4)}
        >>> step = IndexPlan.from_flat(np.array([3, 1]), batch_size=2).batch(0)
        >>> step = jax.tree_util.tree_map(lambda a: a[0], step)
        >>> gather_plan(arrays, step)["default"]["features"][:, 0].tolist()
        [3.0, 1.0]
    """
    return {r: gather(store_arrays, step.indices[r], step.mask[r], step.weights[r])
            for r in step.roles}


def slice_plan(store_arrays: Mapping[str, Any], step: IndexPlan) -> dict[str, dict[str, Any]]:
    """Like :func:`gather_plan` for a step of an :meth:`IndexPlan.contiguous` plan: each
    role's batch is one run of consecutive rows, sliced out of the store (no gather).

    Args:
        store_arrays: ``DeviceStore.arrays``.
        step: one step of a contiguous plan (consecutive indices per role).

    Returns:
        ``{role: batch}`` equal to what :func:`gather_plan` gives for the same step.

    Example:
        >>> arrays = {"features": jnp.arange(5.0).reshape(5, 1), "targets": jnp.zeros((5, 1)),
        ...           "tags": {}, "row_ids": jnp.arange(5)}
        >>> step = jax.tree_util.tree_map(lambda a: a[2], IndexPlan.contiguous(5, 2))
        >>> slice_plan(arrays, step)["default"]["features"][:, 0].tolist()
        [3.0, 4.0]
    """
    out = {}
    for r in step.roles:
        idx, mask = step.indices[r], step.mask[r]
        size, start = idx.shape[0], idx[0]

        def cut(a, size=size, start=start):
            if a.shape[0] == size:  # the whole store is this batch
                return a
            return jax.lax.dynamic_slice_in_dim(a, start, size, axis=0)
        out[r] = {"features": cut(store_arrays["features"]),
                  "targets": cut(store_arrays["targets"]),
                  "tags": {k: cut(v) for k, v in store_arrays.get("tags", {}).items()},
                  "weights": jnp.where(mask, step.weights[r], 0.0).astype(jnp.float32),
                  "mask": mask, "row_ids": cut(store_arrays["row_ids"])}
    return out


def make_gather(mesh: Mesh | None = None) -> Callable[[Mapping[str, Any], IndexPlan],
                                                      dict[str, dict[str, Any]]]:
    """A pure ``(store_arrays, plan_step) -> {role: batch}``; with ``mesh`` the batch axis of
    every leaf is constrained to ``P("data")``.

    Args:
        mesh: a ``Mesh`` with a ``"data"`` axis, or None (then this is :func:`gather_plan`).

    Returns:
        The gather function (use it inside the jitted step).

    Example:
        >>> make_gather() is gather_plan
        True
    """
    if mesh is None:
        return gather_plan
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def fn(store_arrays, step):
        out = gather_plan(store_arrays, step)
        return jax.tree_util.tree_map(
            lambda a: jax.lax.with_sharding_constraint(a, sharding), out)
    return fn


class DeviceStore:
    """The columns a phase needs, on the device (or streamed in chunks).

    Args:
        source: FeatureSet or FeatureSetView (plans index this view's rows).
        features: feature keys (default: all), stacked on axis 1.
        targets: target keys (default: all; ``[]`` for none -> ``(n, 0)``).
        tags: numeric tag keys to carry (default: none; strings stay on the host).
        rep: representation (None: transformed when present).
        dtype: floating dtype on the device.
        mesh: a ``Mesh`` with a ``"data"`` axis: replicate the store, shard batches.
        byte_budget: bytes allowed on the device; larger data is streamed in chunks.
        shard_rows: with a mesh, give each device only the rows its batch slots read
            (placed per epoch or chunk) instead of replicating the store. None: True when
            the mesh spans several processes (each process then reads only its rows).

    Example:
        >>> from modjax import FeatureSet
        >>> from modjax import SimpleSampler
        >>> fs = FeatureSet.from_dict("dev", {"x": np.arange(10.0), "y": np.arange(10.0)}, "x", "y")
        >>> store = DeviceStore(fs)
        >>> plan = SimpleSampler(4, shuffle=False, source=fs).plan()
        >>> arrays, dplan = next(store.epoch_chunks(plan))
        >>> step = jax.tree_util.tree_map(lambda a: a[2], dplan)
        >>> gather_plan(arrays, step)["default"]["targets"][:, 0].tolist()
        [8.0, 9.0, 0.0, 0.0]
    """

    #: whole-store placements made in this process (each is one host->device upload)
    uploads = 0

    def __init__(self, source: Any, *, features: Sequence[str] | str | None = None,
                 targets: Sequence[str] | str | None = None,
                 tags: Sequence[str] | str | None = (), rep: str | None = None,
                 dtype: Any = jnp.float32, mesh: Mesh | None = None,
                 byte_budget: int | None = None, shard_rows: bool | None = None) -> None:
        view = source.to_view() if hasattr(source, "to_view") else source
        self.view = view
        self.feature_keys = view.resolve_keys(DOMAIN_FEATURES, features)
        self.target_keys = view.resolve_keys(DOMAIN_TARGETS, targets)
        self.tag_keys = view.resolve_keys(DOMAIN_TAGS, tags)
        for k in self.tag_keys:
            if leaf_dtype(view.source.table.schema.field(f"tags.{k}.raw").type) is None:
                raise TypeError(f"DeviceStore: tag {k!r} of FeatureSet {view.source.label!r} "
                                "holds strings, which stay on the host; map row_ids back instead")
        view.stacked_shape(DOMAIN_FEATURES, self.feature_keys)
        if self.target_keys:
            view.stacked_shape(DOMAIN_TARGETS, self.target_keys)
        self.rep = rep
        self.dtype = np.dtype(dtype)
        self.mesh = mesh
        if mesh is not None and DATA_AXIS not in mesh.axis_names:
            raise ValueError(f"DeviceStore: mesh axes {mesh.axis_names} have no {DATA_AXIS!r} "
                             "axis to shard batches over")
        if byte_budget is not None and byte_budget <= 0:
            raise ValueError(f"DeviceStore: byte_budget must be > 0, got {byte_budget}")
        self.byte_budget = byte_budget
        if shard_rows is None:
            from modjax.distributed import spans_processes
            shard_rows = spans_processes(mesh)
        if shard_rows and mesh is None:
            raise ValueError("DeviceStore: shard_rows=True needs a mesh with a 'data' axis")
        self.shard_rows = bool(shard_rows)
        self._arrays: dict[str, Any] | None = None
        self._plan_leaves: dict[tuple[Any, int], tuple[np.ndarray, Any]] = {}

    # ------------------------------------------------------------------ sizes
    @property
    def n_samples(self) -> int:
        return self.view.n_samples

    def _row_bytes(self) -> int:
        v = self.view
        fs = v.stacked_shape(DOMAIN_FEATURES, self.feature_keys)
        b = int(np.prod(fs)) * self.dtype.itemsize
        if self.target_keys:
            b += int(np.prod(v.stacked_shape(DOMAIN_TARGETS, self.target_keys))) * 4
        b += sum(int(np.prod(v.get_shape(DOMAIN_TAGS, k))) * 4 for k in self.tag_keys)
        return b + 4  # row id

    @property
    def nbytes(self) -> int:
        """Bytes the whole store takes on one device."""
        return self._row_bytes() * self.n_samples

    @property
    def fits(self) -> bool:
        """Whether the whole store fits the byte budget (per device when rows are sharded)."""
        if self.byte_budget is None:
            return True
        if self.shard_rows:
            return self._row_bytes() * -(-self.n_samples // self.n_devices) <= self.byte_budget
        return self.nbytes <= self.byte_budget

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.shape[DATA_AXIS])

    # ------------------------------------------------------------------ host -> device
    def _host_arrays(self, view: Any) -> dict[str, Any]:
        # each domain is gathered straight into its device-dtype array (no per-column
        # arrays, no stacked copy); see gather_domain
        def dom(domain: str, keys: Sequence[str], stacked: bool = True) -> np.ndarray:
            return gather_domain(view, domain, keys, self.rep, self.dtype, stacked=stacked)

        return {"features": dom(DOMAIN_FEATURES, self.feature_keys),
                "targets": dom(DOMAIN_TARGETS, self.target_keys),
                "tags": {k: dom(DOMAIN_TAGS, [k], stacked=False) for k in self.tag_keys},
                "row_ids": view.indices.astype(np.int32)}

    def _store_sharding(self) -> Any:
        return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec())

    @property
    def arrays(self) -> dict[str, Any]:
        """The whole store on the device (placed once, then reused).

        Raises:
            MemoryError: the store exceeds ``byte_budget`` (use :meth:`epoch_chunks`).
        """
        if self.shard_rows:
            raise ValueError(
                f"DeviceStore of FeatureSet {self.view.source.label!r} shards its rows per plan; "
                "use epoch_arrays(plan) or epoch_chunks(plan)")
        if self._arrays is None:
            if not self.fits:
                raise MemoryError(
                    f"DeviceStore of FeatureSet {self.view.source.label!r} needs {self.nbytes} "
                    f"bytes, over byte_budget={self.byte_budget}; iterate epoch_chunks(plan)")
            self._arrays = jax.device_put(self._host_arrays(self.view), self._store_sharding())
            DeviceStore.uploads += 1
        return self._arrays

    def epoch_arrays(self, plan: IndexPlan) -> tuple[dict[str, Any], IndexPlan]:
        """``(store_arrays, device_plan)`` for a plan whose rows fit the budget.

        Without a mesh the host plan is returned as-is (the jitted call transfers it);
        replicated stores are placed once and reused; row-sharded stores place, per
        device, the rows of that device's batch slots (so results equal the replicated
        path exactly).

        Args:
            plan: a host plan indexing this store's view.

        Returns:
            The arrays and the plan to scan over (gather with :meth:`gather_fn`).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ea", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> arrays, p = DeviceStore(fs).epoch_arrays(IndexPlan.from_flat(np.arange(4), 2))
            >>> arrays["features"].shape, p.n_batches
            ((4, 1), 2)
        """
        if not self.shard_rows:
            return self.arrays, (self.reuse_plan_leaves(plan) if self.mesh is None
                                 else self.put_plan(plan))
        blocks = row_blocks(plan, self.n_devices)
        arrays = place_row_blocks(blocks, lambda rows: self._host_arrays(self.view.take(rows)),
                                  self.mesh)
        return arrays, put_local_plan(blocks.plan, self.mesh)

    def reuse_plan_leaves(self, plan: IndexPlan) -> IndexPlan:
        """``plan`` with every leaf equal to the one seen last time at its place swapped
        for a device copy made once (masks and weights rarely change between epochs).

        The other leaves (each epoch's shuffled indices) stay numpy: the jitted call
        copies them as it starts, which costs less than a separate ``device_put`` while
        the device is busy with the previous epoch.

        Args:
            plan: a host plan (numpy leaves); device leaves pass through.

        Returns:
            An equal plan, partly on the device.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("rp", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> store, p = DeviceStore(fs), IndexPlan.from_flat(np.arange(4), 2)
            >>> _ = store.reuse_plan_leaves(p)
            >>> type(store.reuse_plan_leaves(p).mask["default"]).__name__
            'ArrayImpl'
        """
        leaves, treedef = jax.tree_util.tree_flatten(plan)
        seen = self._plan_leaves
        out = []
        for i, a in enumerate(leaves):
            if not isinstance(a, np.ndarray):
                out.append(a)
                continue
            prev = seen.get((treedef, i))
            if prev is not None and prev[0].shape == a.shape and prev[0].dtype == a.dtype \
                    and np.array_equal(prev[0], a):
                if prev[1] is None:  # the second time: worth a device copy
                    prev = seen[(treedef, i)] = (prev[0], jax.device_put(a))
                out.append(prev[1])
            else:
                seen[(treedef, i)] = (a, None)
                out.append(a)
        return jax.tree_util.tree_unflatten(treedef, out)

    def gather_fn(self) -> Callable[[Mapping[str, Any], IndexPlan], dict[str, dict[str, Any]]]:
        """The pure gather matching this store's layout (use inside the jitted step).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gf", {"x": np.arange(2.0), "y": np.zeros(2)}, "x", "y")
            >>> DeviceStore(fs).gather_fn() is gather_plan
            True
        """
        if self.shard_rows:
            return make_sharded_gather(self.mesh, gather_plan)
        return make_gather(self.mesh)

    def put_plan(self, plan: IndexPlan) -> IndexPlan:
        """Pad the batch axis to the device count and put the plan on the device
        (sharded ``P(None, "data")`` with a mesh).

        Args:
            plan: a host plan indexing this store's view.

        Returns:
            The device plan (padding slots masked, weight 0).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("pp", {"x": np.arange(3.0), "y": np.zeros(3)}, "x", "y")
            >>> DeviceStore(fs).put_plan(IndexPlan.from_flat(np.arange(3), 2)).mask["default"].shape
            (2, 2)
        """
        plan = plan.pad_batch_to_multiple(self.n_devices)
        sharding = None if self.mesh is None else NamedSharding(
            self.mesh, PartitionSpec(None, DATA_AXIS))
        return plan.device_put(sharding)

    def chunk_batches(self, plan: IndexPlan) -> int:
        """Batches per chunk when streaming (all of them when the store fits).

        Args:
            plan: the epoch's plan.

        Returns:
            How many batches' rows fit the byte budget (at least 1).
        """
        if self.fits:
            return plan.n_batches
        slots = -(-plan.batch_size // self.n_devices) if self.shard_rows else plan.batch_size
        per_batch = self._row_bytes() * slots * len(plan.roles)
        return max(1, min(plan.n_batches, int(self.byte_budget // per_batch)))

    def epoch_chunks(self, plan: IndexPlan) -> Iterator[tuple[dict[str, Any], IndexPlan]]:
        """Yield ``(store_arrays, device_plan)`` pairs covering ``plan``.

        When the store fits it yields once: the resident arrays and the whole plan. Else
        each chunk carries only the rows its batches use (remapped indices), padded to a
        fixed row capacity and batch count so all chunks share shapes; the last chunk's
        extra batches are fully masked (weight 0).

        Args:
            plan: the epoch's host plan (positions within this store's view).

        Yields:
            ``(store_arrays, device_plan)``: run the epoch's scan over each in turn.

        Example:
            >>> from modjax import FeatureSet
            >>> from modjax import SimpleSampler
            >>> fs = FeatureSet.from_dict("ec", {"x": np.arange(8.0), "y": np.zeros(8)}, "x", "y")
            >>> plan = SimpleSampler(2, shuffle=False, source=fs).plan()
            >>> small = DeviceStore(fs, byte_budget=DeviceStore(fs).nbytes // 2)
            >>> [(a["features"].shape[0], p.n_batches) for a, p in small.epoch_chunks(plan)]
            [(4, 2), (4, 2)]
        """
        if self.fits:
            yield self.epoch_arrays(plan) if self.shard_rows else (self.arrays, self.put_plan(plan))
            return
        k = self.chunk_batches(plan)
        if self.shard_rows:
            for start in range(0, plan.n_batches, k):
                yield self.epoch_arrays(plan.batches(start, start + k).pad_batches_to(k))
            return
        capacity = k * plan.batch_size * len(plan.roles)
        release = ChunkRelease()
        for start in range(0, plan.n_batches, k):
            release.wait()  # the previous chunk's buffer is gone before this one is read
            chunk = plan.batches(start, start + k).pad_batches_to(k)
            flat = np.concatenate([np.asarray(chunk.indices[r]).ravel() for r in chunk.roles])
            uniq, inv = np.unique(flat, return_inverse=True)
            rows = np.zeros(capacity, dtype=np.int64)
            rows[:len(uniq)] = uniq
            size = k * plan.batch_size
            local = {r: inv[i * size:(i + 1) * size].reshape(k, plan.batch_size).astype(np.int32)
                     for i, r in enumerate(chunk.roles)}
            del flat, inv
            remapped = IndexPlan(local, dict(chunk.mask), dict(chunk.weights))
            host = self._host_arrays(self.view.take(rows))
            placed = jax.device_put(host, self._store_sharding())
            release.track(host["features"])
            # the generator is suspended while the chunk trains: hold no host copy meanwhile
            del host, rows, uniq
            _release_arrow_pool()
            yield placed, self.put_plan(remapped)
            del placed

    # ------------------------------------------------------------------ host mapping
    def uuids_for(self, row_ids: Any) -> np.ndarray:
        """Sample uuids of absolute row ids (host side).

        Args:
            row_ids: ``row_ids`` from batches (rows of the source FeatureSet).

        Returns:
            An object array of uuid strings.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("uf", {"x": np.arange(3.0), "y": np.zeros(3)}, "x", "y")
            >>> DeviceStore(fs).uuids_for([2])[0] == fs.sample_uuids[2]
            True
        """
        # index the column itself: an out-of-core column then reads only these rows
        return self.view.source._numpy_column("sample_uuids")[np.asarray(row_ids)]

    @classmethod
    def from_reference(cls, ref: Any, *, split: str | None = None, **kwargs: Any) -> DeviceStore:
        """A store for a FeatureSetReference's keys over the whole set or a split.

        Args:
            ref: the reference (its features, targets and rep).
            split: a split name, or None for every row.
            kwargs: other :class:`DeviceStore` arguments (``tags``, ``mesh``, ...).

        Returns:
            The store.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("fr", {"a": np.ones((4, 2)), "b": np.zeros(4),
            ...                                  "y": np.zeros(4)}, ["a", "b"], "y")
            >>> DeviceStore.from_reference(fs.reference(features="a")).arrays["features"].shape
            (4, 1, 2)
        """
        view = ref.to_view(split)
        return cls(view, features=list(ref.features), targets=list(ref.targets),
                   tags=kwargs.pop("tags", ()), rep=kwargs.pop("rep", ref.rep), **kwargs)

    def __repr__(self) -> str:
        return (f"DeviceStore(source={self.view.source.label!r}, n_samples={self.n_samples}, "
                f"features={self.feature_keys}, targets={self.target_keys}, tags={self.tag_keys}, "
                f"nbytes={self.nbytes}, devices={self.n_devices}, fits={self.fits})")


def _release_arrow_pool() -> None:
    # Arrow decodes (e.g. of compressed or list columns) allocate from its pool, which keeps
    # freed memory unless asked to return it
    import sys
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))


def shared_store(source: Any, **kwargs: Any) -> DeviceStore:
    """The :class:`DeviceStore` of ``source`` shared by every phase and evaluation.

    One store is kept per (FeatureSet rows, columns, rep, dtype, mesh, sharding, budget)
    while the FeatureSet keeps its data: its device arrays are placed once and reused,
    so a second phase over the same data uploads nothing. A FeatureSet whose data or
    transforms change installs a new Arrow table, which retires the stores made from
    the old one. Streamed stores (over their byte budget) are not shared.

    Args:
        source: a FeatureSet or FeatureSetView.
        kwargs: the other :class:`DeviceStore` arguments.

    Returns:
        The shared store (new on the first call for this data).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("sh", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
        >>> a = shared_store(fs.take(np.arange(3)))
        >>> a is shared_store(fs.take(np.arange(3))), a is shared_store(fs.take(np.arange(2)))
        (True, False)
    """
    view = source.to_view() if hasattr(source, "to_view") else source
    fs = view.source
    table = getattr(fs, "table", None)
    try:
        entries = _SHARED.setdefault(fs, []) if table is not None else None
    except TypeError:  # not weak-referenceable: nothing to share it with
        entries = None
    if entries is None:
        return DeviceStore(view, **kwargs)
    entries[:] = [e for e in entries if e[0] is table]  # stores of older data are dropped
    key = tuple(sorted((k, _frozen(k, v)) for k, v in kwargs.items()))
    rows = np.asarray(view.indices)
    for _, cached_rows, cached_key, cached in entries:
        if cached_key == key and _same_rows(cached_rows, rows):
            return cached
    store = DeviceStore(view, **kwargs)
    if store.fits:
        entries.append((table, rows, key, store))
    return store


def _frozen(name: str, value: Any) -> Any:
    if name == "dtype":
        return np.dtype(value).str
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def clear_shared_stores() -> None:
    """Forget every shared store (their device arrays are freed once unused).

    Example:
        >>> clear_shared_stores()
    """
    _SHARED.clear()
