"""FlowBuilder graph vs the same computation written by hand in JAX.

Prints, for a flow with a split/merge, a residual, a gate with ``using`` and a
``loop.for_`` (all measured in the same run):

* jitted forward: flow ``graph.apply`` / hand-written function (target <= 1.05x),
* jitted training step (value_and_grad + SGD): flow / hand-written,
* eager ``graph(x)`` with profiling disabled / its compiled function called directly,
  the cost of the disabled-profiling check, and whether the traced program is identical
  with profiling enabled or disabled (profiling never reaches the jitted path).

Run: ``python benchmarks/bench_flow_apply.py [--batch 512] [--width 256] [--reps 200]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter

import jax
import jax.numpy as jnp

from modjax.graph.flow import FlowBuilder, Mean, SoftmaxRouter
from modjax.graph.models import Linear


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


def bench(fn, *args, reps: int, rounds: int = 7) -> float:
    """Median over rounds of the mean seconds per call (outputs waited on)."""
    jax.block_until_ready(fn(*args))
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        jax.block_until_ready(out)
        per_call.append((time.perf_counter() - t0) / reps)
    return statistics.median(per_call)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--reps", type=int, default=100)
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
    t_flow, t_hand, s_flow, s_hand = [], [], [], []
    for _ in range(3):
        t_flow.append(bench(flow_fwd, params, state, x, reps=args.reps))
        t_hand.append(bench(hand_fwd, params, x, reps=args.reps))
        s_flow.append(bench(flow_step, params, state, x, y, reps=args.reps))
        s_hand.append(bench(hand_step, params, x, y, reps=args.reps))
    tf, th = min(t_flow), min(t_hand)
    sf, sh = min(s_flow), min(s_hand)

    def op_counts(fn, *a):
        text = jax.jit(fn).lower(*a).compile().as_text()
        return Counter(re.findall(r"= \S+ ([\w-]+)\(", text))
    same_ops = op_counts(lambda p, s, x: g.apply(p, s, x)[0], params, state, x) == op_counts(
        hand_forward, params, x)
    same_grad_ops = op_counts(
        jax.grad(lambda p, s, x, y: jnp.mean((g.apply(p, s, x)[0] - y) ** 2)),
        params, state, x, y) == op_counts(
        jax.grad(lambda p, x, y: jnp.mean((hand_forward(p, x) - y) ** 2)), params, x, y)

    # profiling disabled: the eager forward runs the same compiled function it would run
    # without any profiling support; the only extra host work is one bool check
    g.disable_profiling()
    paths = g._observe_paths()
    compiled = g._eager_fn(paths)
    key = jax.random.key(1)
    eager = bench(g, x, reps=args.reps)
    direct = bench(compiled, params, state, x, key, reps=args.reps)
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
          f"ratio {tf / th:.3f}x (target <= 1.05x)")
    print(f"compiled programs have the same XLA op counts: forward {same_ops}, "
          f"gradient {same_grad_ops}")
    print(f"jitted train step flow {sf * 1e3:8.3f} ms  hand {sh * 1e3:8.3f} ms  "
          f"ratio {sf / sh:.3f}x")
    print(f"eager graph(x), profiling disabled {eager * 1e3:8.3f} ms vs its compiled "
          f"function called directly {direct * 1e3:8.3f} ms: ratio {eager / direct:.3f}x "
          f"(shell: rng split, tag hand-off to observers)")
    print(f"profiling check when disabled: {check * 1e9:.0f} ns per forward "
          f"({check / eager * 100:.5f}% of a forward)")
    print(f"traced program identical with profiling on/off: {jaxpr_on == jaxpr_off}")


if __name__ == "__main__":
    main()
