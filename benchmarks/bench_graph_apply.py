"""Jitted ``ModelGraph.apply`` against the same computation written by hand in JAX.

Two graphs: the reference MLP (one SequentialMLP node) and a 3-branch graph (three
encoders -> ConcatNode -> head). For each, forward and forward+backward (gradient of an
MSE loss) are timed for the graph and for a hand-written function on the same params,
interleaved over many rounds; the ratio judged is the median of adjacent-burst ratios
(best-burst ratios are printed too). Target (issue 3): ratio <= 1.05. The script also
checks that the outputs are bit-identical and that XLA compiled the very same program
for both (then the graph costs nothing at run time and a ratio away from 1 is noise
from other work on the machine).

Run: ``python benchmarks/bench_graph_apply.py``
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax import ConcatNode, FeatureSet, ModelGraph, ModelNode, SequentialMLP
from modjax.context import ExperimentContext

BATCH, D_IN = 2048, 64


def mlp_ref(params: dict, x: jax.Array, out_shape: tuple[int, ...]) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    n = len(params)
    for i in range(n):
        h = h @ params[f"layer_{i}"]["kernel"] + params[f"layer_{i}"]["bias"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h.reshape(x.shape[0], *out_shape)


def hand_single(params: dict, x: jax.Array) -> jax.Array:
    return mlp_ref(params["MLP"], x, (1, 1))


def hand_branch(params: dict, x: jax.Array) -> jax.Array:
    encoded = [mlp_ref(params[f"Enc{i}"], x, (1, 32)) for i in range(3)]
    return mlp_ref(params["Head"], jnp.concatenate(encoded, axis=-1), (1, 1))


def race(f, g, args, *, trials: int = 100, iters: int = 5) -> tuple[float, float, float]:
    """Time ``f`` and ``g`` in alternating short bursts.

    Alternating (ABAB / BABA) keeps a busy machine's load changes from landing on one
    side only. Returns the best per-call time of each (the least-disturbed burst) and
    the median over trials of the ratio of the two adjacent bursts ``f / g``, which
    compares them under the same momentary load.
    """
    jax.block_until_ready(f(*args))
    jax.block_until_ready(g(*args))
    times: dict[Any, list[float]] = {f: [], g: []}
    for t in range(trials):
        for fn in ((f, g) if t % 2 == 0 else (g, f)):
            t0 = time.perf_counter()
            for _ in range(iters):
                r = fn(*args)
            jax.block_until_ready(r)
            times[fn].append((time.perf_counter() - t0) / iters)
    paired = statistics.median(a / b for a, b in zip(times[f], times[g]))
    return min(times[f]), min(times[g]), paired


def program_text(fn, *args) -> str:
    """The optimised XLA program with names, source locations and metadata removed.

    Two functions with equal texts compile to the same machine program, so any run-time
    difference measured between them is noise from the (shared, loaded) machine.
    """
    text = fn.lower(*args).compile().as_text()
    if "StackFrames" in text:  # debug tables of source files and frames
        text = text[text.index("\n\n", text.index("StackFrames")):]
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r", stack_frame_id=\d+", "", text)
    text = re.sub(r"HloModule \S+", "HloModule m", text)
    text = re.sub(r"[\w.\-]+: (?=[a-z]+\d*\[)", "", text)  # entry parameter names
    return re.sub(r"%[\w.\-]+", "%v", text)


def compare(name: str, graph: ModelGraph, tail: str, hand, x: np.ndarray, y: np.ndarray) -> None:
    params, state = graph.variables["params"], graph.variables["state"]

    def graph_fwd(p, xb):
        return graph.apply({"params": p, "state": state}, {"data": xb})[0][tail]

    def loss(f):
        return lambda p, xb, yb: jnp.mean((f(p, xb) - yb) ** 2)

    pairs = {
        "forward": (jax.jit(graph_fwd), jax.jit(hand), jax.jit(hand)),
        "forward+grad": (jax.jit(jax.grad(loss(graph_fwd))), jax.jit(jax.grad(loss(hand))),
                         jax.jit(jax.grad(loss(hand)))),
    }
    for what, (g_fn, h_fn, h_copy) in pairs.items():
        args = (params, x) if what == "forward" else (params, x, y)
        same = jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                         g_fn(*args), h_fn(*args)))
        same_program = program_text(g_fn, *args) == program_text(h_fn, *args)
        g_best, h_best, paired = race(g_fn, h_fn, args)
        # control: the hand-written function against a second jit of itself shows how
        # far apart two identical programs measure on this machine right now
        a_best, b_best, control = race(h_copy, h_fn, args)
        print(f"{name:8s} {what:12s} graph {g_best * 1e3:7.3f} ms  hand {h_best * 1e3:7.3f} ms  "
              f"ratio: best {g_best / h_best:5.3f}, paired median {paired:5.3f} "
              f"{'OK' if paired <= 1.05 else 'SLOW'}  | hand vs itself: best "
              f"{a_best / b_best:5.3f}, paired median {control:5.3f}  | bit-identical: {same}"
              f"  same XLA program: {same_program}")


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, D_IN)).astype(np.float32)
    y = rng.standard_normal((BATCH, 1, 1)).astype(np.float32)
    with ExperimentContext(registration_policy="overwrite").activate():
        fs = FeatureSet.from_dict("data", {"x": x[:, 0], "y": y[:, 0]}, "x", "y")
        ref = fs.reference()

        single = ModelGraph([ModelNode("MLP", SequentialMLP(output_shape=(1, 1), n_layers=3,
                                                            hidden_dim=256), ref)])
        single.build(key=jax.random.key(0))
        compare("MLP", single, "MLP", hand_single, x, y)

        encs = [ModelNode(f"Enc{i}", SequentialMLP(output_shape=(1, 32), n_layers=2,
                                                   hidden_dim=128), ref) for i in range(3)]
        cat = ConcatNode("Cat", encs, concat_axis=-1)
        head = ModelNode("Head", SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=64),
                         cat)
        branch = ModelGraph([*encs, cat, head]).build(key=jax.random.key(1))
        compare("3-branch", branch, "Head", hand_branch, x, y)


if __name__ == "__main__":
    main()
