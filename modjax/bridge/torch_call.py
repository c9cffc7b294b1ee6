"""Running a torch module inside traced JAX code: host callbacks and their VJP.

The forward is a ``jax.pure_callback`` that calls ``torch.func.functional_call`` with the
JAX values of the parameters and buffers (shared with torch through DLPack, no copy on
CPU). Under differentiation the forward runs with torch autograd on copies of its
operands and keeps the graph under a ticket; the backward callback takes that ticket and
returns the gradients of the input *and* of every parameter, which is what lets an optax
optimizer train the torch weights and the JAX nodes upstream in one jitted step. A
ticket whose graph is gone (a rematerialised or deduplicated forward) is served by
replaying the forward with the same RNG seed, so the result is the same either way.

Inside a callback torch runs with :func:`callback_threads` intra-op threads (1 by
default): XLA's own thread pool already occupies the cores, and a second OpenMP pool on
top of it spins against it. Torch's global RNG state and thread count are restored
after every call.

Every call is a round trip to the host: on a GPU host the operands are copied to host
memory and the results back, once per forward and once per backward.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TorchLayout", "TorchHost", "make_torch_call", "callback_threads"]

_THREADS: list[int | None] = [1]
#: forward graphs kept for their backward, per host (older ones are replayed if needed)
_MAX_PENDING = 64


def callback_threads(n: int | None | str = "get") -> int | None:
    """Get or set how many intra-op threads torch uses inside the callbacks.

    Args:
        n: a thread count, None to leave torch's own setting alone, or omitted to read
            the current value.

    Returns:
        The value in force (after setting it).

    Example:
        >>> callback_threads()
        1
        >>> callback_threads(2), callback_threads(1)
        (2, 1)
    """
    if n != "get":
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"callback_threads: expected a positive int or None, got {n!r}")
        _THREADS[0] = n  # type: ignore[assignment]
    return _THREADS[0]


@dataclasses.dataclass(frozen=True)
class TorchLayout:
    """Names, shapes and dtypes of a module's parameters and buffers, in a fixed order.

    ``*_dtypes`` are the torch dtypes (restored on the host); the JAX side holds the
    canonical JAX dtype of each (float64 becomes float32 unless x64 is enabled).
    """

    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    param_dtypes: tuple[Any, ...]
    buffer_names: tuple[str, ...]
    buffer_shapes: tuple[tuple[int, ...], ...]
    buffer_dtypes: tuple[Any, ...]

    @classmethod
    def of(cls, module: Any) -> TorchLayout:
        """Layout of ``module`` (registered parameters and persistent buffers)."""
        params = list(module.named_parameters())
        buffers = list(module.named_buffers())
        return cls(tuple(n for n, _ in params), tuple(tuple(p.shape) for _, p in params),
                   tuple(p.dtype for _, p in params), tuple(n for n, _ in buffers),
                   tuple(tuple(b.shape) for _, b in buffers), tuple(b.dtype for _, b in buffers))

    def jax_structs(self, which: str) -> list[jax.ShapeDtypeStruct]:
        shapes = getattr(self, f"{which}_shapes")
        dtypes = getattr(self, f"{which}_dtypes")
        return [jax.ShapeDtypeStruct(s, jax_dtype(d)) for s, d in zip(shapes, dtypes)]


def jax_dtype(torch_dtype: Any) -> Any:
    """The JAX dtype holding values of ``torch_dtype`` (canonicalised for x64 mode)."""
    import torch

    np_dtype = torch.empty((), dtype=torch_dtype).numpy().dtype
    return jax.dtypes.canonicalize_dtype(np_dtype)


def to_numpy(t: Any, dtype: Any) -> np.ndarray:
    """A torch tensor as a contiguous numpy array of ``dtype`` (no copy when possible)."""
    out = t.detach()
    if out.device.type != "cpu":
        out = out.cpu()
    arr = out.contiguous().numpy()
    return arr if arr.dtype == dtype else arr.astype(dtype)


class TorchHost:
    """Host side of a torch node: the template module and the callbacks.

    Args:
        module: the torch module whose code runs (its own values are never used by the
            callbacks: every call passes the JAX values).
        layout: :class:`TorchLayout` of ``module``.
        out_dtype: numpy dtype of the output.
    """

    def __init__(self, module: Any, layout: TorchLayout, out_dtype: Any) -> None:
        import torch

        self.module, self.layout, self.out_dtype = module, layout, np.dtype(out_dtype)
        self._torch = torch
        self._param_np = [np.dtype(jax_dtype(d)) for d in layout.param_dtypes]
        self._buffer_np = [np.dtype(jax_dtype(d)) for d in layout.buffer_dtypes]
        # the callbacks run a private copy (sharing the template's tensors, which every
        # call swaps out anyway) so train/eval can stay set between calls
        shared = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
        self._work = copy.deepcopy(module, shared)
        self._mode: bool | None = None
        self._pending: OrderedDict[int, tuple] = OrderedDict()
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()
        #: how many backward calls had to replay their forward (tests and benchmarks)
        self.replays = 0

    @contextlib.contextmanager
    def _torch_env(self, seed: Any) -> Iterator[None]:
        """Seed torch's CPU generator and bound its threads for one call; restore both."""
        torch = self._torch
        gen = torch.default_generator
        saved = gen.get_state()
        want, prev = _THREADS[0], torch.get_num_threads()
        if want is not None and want != prev:
            torch.set_num_threads(want)
        gen.manual_seed(int(np.asarray(seed)))
        try:
            yield
        finally:
            gen.set_state(saved)
            if want is not None and want != prev:
                torch.set_num_threads(prev)

    def _tensor(self, a: Any, dtype: Any = None, *, copy: bool = False) -> Any:
        # JAX arrays hand their buffer to torch through DLPack: no copy on CPU
        t = self._torch.from_dlpack(a) if hasattr(a, "__dlpack__") else self._torch.as_tensor(
            np.asarray(a))
        if dtype is not None and t.dtype != dtype:
            return t.to(dtype)
        return t.clone() if copy else t

    def _run(self, train: bool, params: list, buffers: list, x: Any, seed: Any, *,
             grad: bool, keep: bool = False) -> tuple[Any, list, list, Any]:
        """One forward. ``keep``: operands are copied, since the autograd graph outlives
        the call and XLA reuses the operands' memory once the callback returns."""
        torch = self._torch
        lay = self.layout
        p = [self._tensor(a, d, copy=keep) for a, d in zip(params, lay.param_dtypes)]
        if grad:
            p = [t.detach().requires_grad_(t.is_floating_point()) for t in p]
        # buffers are updated in place by train-mode layers (BatchNorm): own copies
        b = [self._tensor(a, d, copy=True) for a, d in zip(buffers, lay.buffer_dtypes)]
        xt = self._tensor(x, copy=keep)
        if grad:
            xt = xt.detach().requires_grad_(xt.is_floating_point())
        tensors = dict(zip(lay.param_names, p))
        tensors.update(zip(lay.buffer_names, b))
        module = self._work
        with self._torch_env(seed):
            if self._mode is not train:
                module.train(train)  # a walk over every submodule: only on a mode change
                self._mode = train
            with torch.set_grad_enabled(grad):
                y = torch.func.functional_call(module, tensors, (xt,))
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{type(module).__name__}.forward must return one tensor, got "
                            f"{type(y).__name__}")
        return y, p, b, xt

    def forward(self, train: bool, params: list, buffers: list, x: Any,
                seed: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(y, new_buffers)`` as numpy arrays."""
        y, _, b, _ = self._run(train, params, buffers, x, seed, grad=False)
        return to_numpy(y, self.out_dtype), [to_numpy(t, d) for t, d in zip(b, self._buffer_np)]

    def forward_keep(self, train: bool, params: list, buffers: list, x: Any,
                     seed: Any) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """:meth:`forward` under autograd, keeping the graph: ``(y, new_buffers, ticket)``."""
        y, p, b, xt = self._run(train, params, buffers, x, seed, grad=True, keep=True)
        with self._lock:
            ticket = next(self._tickets) % (2 ** 31 - 1) + 1
            self._pending[ticket] = (y, p, xt)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)
        return (to_numpy(y, self.out_dtype), [to_numpy(t, d) for t, d in zip(b, self._buffer_np)],
                np.asarray(ticket, np.int32))

    def backward(self, train: bool, params: list, buffers: list, x: Any, seed: Any,
                 gy: Any, ticket: Any = 0) -> tuple[list[np.ndarray], np.ndarray]:
        """Gradients of ``sum(y * gy)`` for every parameter and for ``x``: through the
        graph kept under ``ticket``, or a replayed forward when it is not kept."""
        torch = self._torch
        with self._lock:
            kept = self._pending.pop(int(np.asarray(ticket)), None)
        if kept is None:
            self.replays += 1
            y, p, _, xt = self._run(train, params, buffers, x, seed, grad=True)
        else:
            y, p, xt = kept
        wrt = [t for t in (*p, xt) if t.requires_grad]
        g = self._tensor(gy, y.dtype)
        with self._torch_env(seed):
            grads = torch.autograd.grad(y, wrt, grad_outputs=g, allow_unused=True) \
                if wrt else ()
        it = iter(grads)
        out = []
        for t in (*p, xt):
            gt = next(it) if t.requires_grad else None
            out.append(torch.zeros_like(t) if gt is None else gt)
        gp = [to_numpy(t, d) for t, d in zip(out[:-1], self._param_np)]
        return gp, to_numpy(out[-1], np.asarray(x).dtype)


def make_torch_call(host: TorchHost, train: bool, out_shape: tuple[int, ...]) -> Any:
    """``call(params, buffers, x, seed) -> (y, new_buffers)``, differentiable in
    ``params`` and ``x`` through torch autograd (a ``jax.custom_vjp``).

    ``params``/``buffers`` are lists in ``host.layout`` order; ``seed`` is a uint32 scalar
    that seeds torch's RNG for the call (dropout).
    """
    p_structs = host.layout.jax_structs("param")
    b_structs = host.layout.jax_structs("buffer")

    def forward(params: list, buffers: list, x: jax.Array, seed: jax.Array) -> Any:
        y_struct = jax.ShapeDtypeStruct((x.shape[0], *out_shape), host.out_dtype)
        if not train:
            # eval mode never changes buffers: only the output crosses back
            y = jax.pure_callback(lambda p, b, xx, s: host.forward(False, p, b, xx, s)[0],
                                  y_struct, params, buffers, x, seed, vmap_method="sequential")
            return y, list(buffers)
        y, nb = jax.pure_callback(lambda p, b, xx, s: host.forward(True, p, b, xx, s),
                                  (y_struct, b_structs), params, buffers, x, seed,
                                  vmap_method="sequential")
        return y, list(nb)

    @jax.custom_vjp
    def call(params: list, buffers: list, x: jax.Array, seed: jax.Array) -> Any:
        return forward(params, buffers, x, seed)

    def fwd(params: list, buffers: list, x: jax.Array, seed: jax.Array) -> Any:
        # the forward keeps its autograd graph for bwd, which then does not replay it
        y_struct = jax.ShapeDtypeStruct((x.shape[0], *out_shape), host.out_dtype)
        y, nb, ticket = jax.pure_callback(
            lambda p, b, xx, s: host.forward_keep(train, p, b, xx, s),
            (y_struct, b_structs, jax.ShapeDtypeStruct((), jnp.int32)), params, buffers, x,
            seed, vmap_method="sequential")
        out = (y, list(nb) if train else list(buffers))
        return out, (params, buffers, x, seed, ticket)

    def bwd(res: Any, g: Any) -> Any:
        params, buffers, x, seed, ticket = res
        gy = g[0]
        x_struct = jax.ShapeDtypeStruct(x.shape, x.dtype)
        gp, gx = jax.pure_callback(
            lambda p, b, xx, s, gg, t: host.backward(train, p, b, xx, s, gg, t),
            (p_structs, x_struct), params, buffers, x, seed, gy, ticket,
            vmap_method="sequential")
        zeros_b = [None] * len(buffers)
        return list(gp), zeros_b, gx, None

    call.defvjp(fwd, bwd)
    return call


def seed_of(key: Any) -> jax.Array:
    """A uint32 seed for torch's RNG drawn from a JAX key (0 without a key)."""
    if key is None:
        return jnp.zeros((), jnp.uint32)
    return jax.random.bits(key, (), jnp.uint32)
