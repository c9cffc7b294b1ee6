"""FlowBuilder graph vs the same computation written by hand in JAX.

Prints, for a flow with a split/merge, a residual, a gate with ``using`` and a
``loop.for_`` (all measured in the same run):

* jitted forward: flow ``graph.apply`` / hand-written function (target <= 1.05x),
  timed in interleaved rounds (best of each and the median of per-round ratios),
* whether the optimized HLO of forward and gradient is identical to the hand-written
  one up to instruction names and metadata,
* jitted training step (value_and_grad + SGD): flow / hand-written,
* eager ``graph(x)`` with profiling disabled / its compiled function called directly,
  the cost of the disabled-profiling check, and whether the traced program is identical
  with profiling enabled or disabled (profiling never reaches the jitted path).

Run: ``python benchmarks/bench_flow_apply.py [--batch 512] [--width 256] [--reps 20]
[--rounds 31]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter

import jax
import jax.numpy as jnp

from modjax import Linear
from modjax.flow import FlowBuilder, Mean, SoftmaxRouter


def build(width: int):
    return (FlowBuilder.from_(Linear(width)).tag("ctx")
            .split(Linear(width), Linear(width)).merge(Mean())
            .also(Linear(width))
            .gate(SoftmaxRouter(width, 2), Linear(width), Linear(width)).using("ctx")
            .loop(Linear(width)).for_(3)
            .through(Linear(1))
            .build(input_shape=(width,)))


IDS: list[str] = []  # node ids in flow order (jit sorts dict keys, so take them from the graph)


def hand_forward(p, x):
    """The same computation, written directly against the params dict."""
    def lin(q, v):
        return v @ q["kernel"] + q["bias"]
    ids = IDS
    ctx = lin(p[ids[0]], x)
    m = (lin(p[ids[1]], ctx) + lin(p[ids[2]], ctx)) / 2
    r = m + lin(p[ids[4]], m)
    g = p[ids[5]]
    w = jax.nn.softmax(lin(g["router"], r + ctx), axis=-1)
    h = w[:, :1] * lin(g["expert_0"], r) + w[:, 1:] * lin(g["expert_1"], r)

    def body(c, _):
        return lin(p[ids[6]]["body"], c), None
    h, _ = jax.lax.scan(body, h, None, length=3)
    return lin(p[ids[7]], h)


def paired(a, args_a, b, args_b, *, reps: int, rounds: int) -> tuple[float, float, float]:
    """Interleaved timing of two functions under the same machine load.

    Each round times ``reps`` calls of both, alternating which goes first. Returns the
    best (min) per-call time of each and the median of the per-round ratios a/b, so a
    load spike that hits one round affects both sides of that round's ratio.
    """
    jax.block_until_ready(a(*args_a))
    jax.block_until_ready(b(*args_b))
    ta, tb, ratios = [], [], []

    def one(fn, args):
        t0 = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / reps

    for r in range(rounds):
        if r % 2:
            y, x = one(b, args_b), one(a, args_a)
        else:
            x, y = one(a, args_a), one(b, args_b)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return min(ta), min(tb), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=31)
    args = ap.parse_args()

    g = build(args.width)
    IDS[:] = [e.id for e in g.entries]
    params, state = g.variables["params"], g.variables["state"]
    x = jax.random.normal(jax.random.key(0), (args.batch, args.width))
    y = jnp.ones((args.batch, 1))
    flow_fwd = jax.jit(lambda p, s, x: g.apply(p, s, x)[0])
    hand_fwd = jax.jit(hand_forward)
    assert jnp.allclose(flow_fwd(params, state, x), hand_fwd(params, x), atol=1e-4)

    def sgd(loss):
        def step(p, *a):
            val, grads = jax.value_and_grad(loss)(p, *a)
            return jax.tree.map(lambda w, d: w - 1e-3 * d, p, grads), val
        return jax.jit(step)

    flow_step = sgd(lambda p, s, x, y: jnp.mean((g.apply(p, s, x)[0] - y) ** 2))
    hand_step = sgd(lambda p, x, y: jnp.mean((hand_forward(p, x) - y) ** 2))

    # interleave flow/hand rounds so machine load hits both alike
    tf, th, rf = paired(flow_fwd, (params, state, x), hand_fwd, (params, x),
                        reps=args.reps, rounds=args.rounds)
    sf, sh, rs = paired(flow_step, (params, state, x, y), hand_step, (params, x, y),
                        reps=max(1, args.reps // 4), rounds=args.rounds)

    def op_counts(fn, *a):
        text = jax.jit(fn).lower(*a).compile().as_text()
        return Counter(re.findall(r"= \S+ ([\w-]+)\(", text))

    def canonical_hlo(fn, *a):
        """Optimized HLO without metadata, source tables and instruction-name suffixes."""
        out = []
        for line in jax.jit(fn).lower(*a).compile().as_text().splitlines():
            if line.startswith(("HloModule", "FileNames", "FunctionNames", "FileLocations",
                                "StackFrames")) or re.match(r"^\d+ ", line):
                continue
            line = re.sub(r", metadata=\{[^}]*\}", "", line)
            out.append(re.sub(r"\.\d+", "", line))
        return out

    def flow_loss(p, s, x, y):
        return jnp.mean((g.apply(p, s, x)[0] - y) ** 2)

    def hand_loss(p, x, y):
        return jnp.mean((hand_forward(p, x) - y) ** 2)

    same_ops = op_counts(lambda p, s, x: g.apply(p, s, x)[0], params, state, x) == op_counts(
        hand_forward, params, x)
    same_grad_ops = op_counts(jax.grad(flow_loss), params, state, x, y) == op_counts(
        jax.grad(hand_loss), params, x, y)
    same_hlo = canonical_hlo(lambda p, s, x: g.apply(p, s, x)[0], params, state, x) == \
        canonical_hlo(hand_forward, params, x)
    same_grad_hlo = canonical_hlo(jax.grad(flow_loss), params, state, x, y) == canonical_hlo(
        jax.grad(hand_loss), params, x, y)

    # profiling disabled: the eager forward runs the same compiled function it would run
    # without any profiling support; the only extra host work is one bool check
    g.disable_profiling()
    paths = g._observe_paths()
    compiled = g._eager_fn(paths)
    key = jax.random.key(1)
    eager, direct, r_eager = paired(g, (x,), compiled, (params, state, x, key), reps=args.reps,
                               rounds=args.rounds)
    n_checks = 1_000_000
    t0 = time.perf_counter()
    for _ in range(n_checks):
        if g._observer.profiling:
            break
    check = (time.perf_counter() - t0) / n_checks
    jaxpr_off = str(jax.make_jaxpr(lambda p, s, x: g.apply(p, s, x)[0])(params, state, x))
    g.enable_profiling()
    jaxpr_on = str(jax.make_jaxpr(lambda p, s, x: g.apply(p, s, x)[0])(params, state, x))
    g.disable_profiling()

    print(f"flow graph: batch {args.batch}, width {args.width}, "
          f"{sum(v.size for v in jax.tree.leaves(params))} parameters, {jax.devices()[0].platform}")
    print(f"jitted forward    flow {tf * 1e3:8.3f} ms  hand {th * 1e3:8.3f} ms  "
          f"ratio of best {tf / th:.3f}x, median paired ratio {rf:.3f}x (target <= 1.05x)")
    print(f"compiled programs have the same XLA op counts: forward {same_ops}, "
          f"gradient {same_grad_ops}")
    print(f"optimized HLO identical up to names/metadata: forward {same_hlo}, "
          f"gradient {same_grad_hlo} (so any timing gap is measurement noise)")
    print(f"jitted train step flow {sf * 1e3:8.3f} ms  hand {sh * 1e3:8.3f} ms  "
          f"ratio of best {sf / sh:.3f}x, median paired ratio {rs:.3f}x")
    print(f"eager graph(x), profiling disabled {eager * 1e3:8.3f} ms vs its compiled "
          f"function called directly {direct * 1e3:8.3f} ms: ratio of best {eager / direct:.3f}x, "
          f"median paired {r_eager:.3f}x "
          f"(shell: input checks, tag hand-off to observers)")
    print(f"profiling check when disabled: {check * 1e9:.0f} ns per forward "
          f"({check / eager * 100:.5f}% of a forward)")
    print(f"traced program identical with profiling on/off: {jaxpr_on == jaxpr_off}")


if __name__ == "__main__":
    main()
