"""EvalPhase against a hand-written jitted forward over the same device-resident data.

Workload: n rows x 10 features, ``SequentialMLP(n_layers=2, hidden_dim=32)``, MSE loss.

  modjax  ``EvalPhase.execute`` over the whole FeatureSet (outputs recorded, the loss
          read back to the host, results built), timed as a whole.
  floor   ``jax.jit(lambda params, x, y: (mlp(params, x), mse))`` over the same rows already
          on the device, the loss read back to the host; the outputs stay on the device.

Interleaved, median of ``--repeats``. Goal: modjax <= 1.05x the floor.

Run:  .venv/bin/python benchmarks/bench_eval.py [--sizes 10000 100000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax import (
    AppliedLoss,
    EvalPhase,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    SequentialMLP,
)
from modjax.context import ExperimentContext

GOAL = 1.05


def build(n: int, batch_size: int | None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    y = np.tanh(x.sum(axis=1)).astype(np.float32)
    ctx = ExperimentContext(registration_policy="overwrite")
    with ctx.activate():
        fs = FeatureSet.from_dict("ev", {"x": x, "y": y}, "x", "y")
        node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=32),
                         upstream_ref=fs.reference(features="x"))
        graph = ModelGraph([node]).build(key=0)
        phase = EvalPhase("eval", input_sources=[InputBinding.for_evaluation(node="mlp")],
                          losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
                          batch_size=batch_size)
    return ctx, graph, phase, x, y


def run_modjax(ctx, graph, phase) -> float:
    with ctx.activate():
        t = time.perf_counter()
        res = phase.execute(graph)
        float(res.metrics.last("mlp.mse"))
        return time.perf_counter() - t


def make_floor(graph):
    node = graph.nodes["mlp"] if "mlp" in graph.nodes else next(iter(graph.nodes.values()))
    model = node.model

    @jax.jit
    def fwd(variables, x, y):
        out, _ = model.apply(variables["params"]["mlp"], variables["state"]["mlp"], x,
                             key=None, train=False)
        return out, jnp.mean(jnp.square(out - y))
    return fwd


def run_floor(fwd, variables, xd, yd) -> float:
    t = time.perf_counter()
    out, loss = fwd(variables, xd, yd)
    float(loss)
    return time.perf_counter() - t


def bench(n: int, batch_size: int | None, repeats: int) -> dict:
    ctx, graph, phase, x, y = build(n, batch_size)
    xd, yd = jax.device_put(x), jax.device_put(y[:, None])
    fwd = make_floor(graph)
    v = graph.variables
    run_modjax(ctx, graph, phase)
    run_floor(fwd, v, xd, yd)
    times = {"modjax": [], "floor": []}
    for _ in range(repeats):
        times["modjax"].append(run_modjax(ctx, graph, phase))
        times["floor"].append(run_floor(fwd, v, xd, yd))
    med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
    best = {k: min(t) * 1e3 for k, t in times.items()}
    return {"med": med, "best": best, "ratio": med["modjax"] / med["floor"],
            "best_ratio": best["modjax"] / best["floor"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; goal <= {GOAL}x")
    for n in args.sizes:
        for bs in (None, 8192):
            r = bench(n, bs, args.repeats)
            m = r["med"]
            print(f"n={n:>7} batch_size={bs!s:>5}: EvalPhase {m['modjax']:.3f} ms, jitted forward "
                  f"{m['floor']:.3f} ms -> {r['ratio']:.3f}x (fastest runs: {r['best_ratio']:.3f}x)",
                  flush=True)


if __name__ == "__main__":
    main()
