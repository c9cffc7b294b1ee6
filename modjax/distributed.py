"""Multi-process runs on JAX's own runtime (``jax.distributed``), and the few helpers
modjax needs to move pytrees between one process and a mesh that spans several.

Every process runs the same program. :func:`initialize` starts JAX's distributed
runtime (a thin wrapper over ``jax.distributed.initialize`` that also selects gloo
collectives on CPU, so a localhost job works without accelerators); :func:`make_mesh`
builds a ``Mesh`` over *all* processes' devices. A ``TrainPhase(mesh=...)`` given such a
mesh cuts each epoch's plan per process, and each process reads and places only the
rows its own devices feed.

Example:
    >>> mesh = make_mesh()
    >>> mesh.axis_names, spans_processes(mesh)
    (('data',), False)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["initialize", "make_mesh", "spans_processes", "is_multiprocess", "put_global",
           "to_host", "barrier", "broadcast_text", "replicated", "DATA_AXIS", "MODEL_AXIS"]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def initialize(coordinator_address: str, num_processes: int, process_id: int, *,
               local_device_count: int | None = None, cpu_collectives: str = "gloo",
               initialization_timeout: int = 300) -> None:
    """Join a multi-process JAX job (call once per process, before any JAX computation).

    Args:
        coordinator_address: ``"host:port"`` of process 0's coordinator service.
        num_processes: processes in the job.
        process_id: this process's index (``0 .. num_processes - 1``).
        local_device_count: on CPU, how many host devices this process exposes (sets
            ``--xla_force_host_platform_device_count``; must precede backend start-up).
        cpu_collectives: cross-process collectives of the CPU backend (``"gloo"``, or
            ``"mpi"``); accelerators use their own (NCCL on GPU, ICI on TPU).
        initialization_timeout: seconds to wait for every process to connect.

    Raises:
        ValueError: ``process_id`` is outside ``0 .. num_processes - 1``.

    Example (two shells, one per process)::

        modjax.distributed.initialize("127.0.0.1:12345", 2, 0)   # shell 1
        modjax.distributed.initialize("127.0.0.1:12345", 2, 1)   # shell 2
    """
    if not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"initialize: process_id {process_id} is outside "
                         f"0..{int(num_processes) - 1}")
    if local_device_count is not None:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={int(local_device_count)}").strip()
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=int(num_processes), process_id=int(process_id),
                               initialization_timeout=initialization_timeout)


def make_mesh(model: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh over every process's devices: ``("data",)``, or ``("data", "model")``
    with ``model`` devices on the model axis.

    Args:
        model: size of the model axis (1: a 1-D data mesh).
        devices: the devices to use (default ``jax.devices()``: all processes').

    Returns:
        The ``Mesh``.

    Raises:
        ValueError: the device count is not a multiple of ``model``.

    Example:
        >>> make_mesh().shape[DATA_AXIS] == jax.device_count()
        True
    """
    devs = list(jax.devices() if devices is None else devices)
    if model < 1 or len(devs) % model:
        raise ValueError(f"make_mesh: {len(devs)} devices cannot form a model axis of {model}")
    if model == 1:
        return Mesh(np.array(devs), (DATA_AXIS,))
    # devices of one process stay adjacent, so the model axis is process-local when it can be
    return Mesh(np.array(devs).reshape(len(devs) // model, model), (DATA_AXIS, MODEL_AXIS))


def spans_processes(mesh: Mesh | None) -> bool:
    """Whether ``mesh`` holds devices of other processes (then arrays on it are global).

    Example:
        >>> spans_processes(None)
        False
    """
    if mesh is None:
        return False
    me = jax.process_index()
    return any(d.process_index != me for d in mesh.devices.flat)


def is_multiprocess() -> bool:
    """Whether this program runs as one of several JAX processes.

    Example:
        >>> is_multiprocess()
        False
    """
    return jax.process_count() > 1


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host_leaf(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _place(x: Any, sharding: Any) -> Any:
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if _is_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=impl)
    if not isinstance(sharding, NamedSharding) or sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = _host_leaf(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def put_global(tree: Any, sharding: Any) -> Any:
    """Place a pytree on a mesh that may span processes.

    Every process must pass the same values. ``jax.device_put`` refuses arrays already
    committed to one local device when the target spans other processes' devices; this
    goes through the host for those leaves (typed PRNG keys through their key data).

    Args:
        tree: arrays, NumPy values or typed keys.
        sharding: one ``Sharding`` for every leaf, or a pytree of them matching ``tree``.

    Returns:
        The placed tree (leaves already on their sharding are kept as they are).

    Example:
        >>> mesh = make_mesh()
        >>> t = put_global({"w": np.ones(2)}, NamedSharding(mesh, PartitionSpec()))
        >>> t["w"].sharding.spec == PartitionSpec()
        True
    """
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: _place(x, sharding), tree)
    return jax.tree.map(_place, tree, sharding)


def to_host(tree: Any) -> Any:
    """Every array leaf as a NumPy array on every process (a gather across processes
    where a leaf is sharded over other processes' devices). Typed keys stay keys.

    Example:
        >>> to_host({"a": jnp.arange(3)})["a"].tolist()
        [0, 1, 2]
    """
    def leaf(x):
        if _is_key(x):
            return jax.random.wrap_key_data(_host_leaf(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        return _host_leaf(x) if isinstance(x, jax.Array) else x
    return jax.tree.map(leaf, tree)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op in one process).

    Example:
        >>> barrier("demo")
    """
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def broadcast_text(text: str | None, max_bytes: int = 4096) -> str:
    """Process 0's ``text`` on every process (others pass anything, e.g. None).

    Example:
        >>> broadcast_text("gen-1")
        'gen-1'
    """
    if jax.process_count() == 1:
        return str(text)
    buf = np.zeros(max_bytes + 4, dtype=np.uint8)
    if jax.process_index() == 0:
        raw = str(text).encode()
        if len(raw) > max_bytes:
            raise ValueError(f"broadcast_text: {len(raw)} bytes, over {max_bytes}")
        buf[:4] = np.frombuffer(np.uint32(len(raw)).tobytes(), np.uint8)
        buf[4:4 + len(raw)] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    n = int(np.frombuffer(out[:4].tobytes(), np.uint32)[0])
    return out[4:4 + n].tobytes().decode()


def replicated(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P())``: every device holds the whole value.

    Example:
        >>> replicated(make_mesh()).spec == PartitionSpec()
        True
    """
    return NamedSharding(mesh, PartitionSpec())
