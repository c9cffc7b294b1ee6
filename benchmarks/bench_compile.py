"""Compile latency and fresh-phase compilations against the hand-written jit+scan+optax floor.

Reference workload: 5,000 x 10 (4,000 train), ``SequentialMLP(n_layers=2, hidden_dim=32)``,
Adam(1e-3), MSE, batch 32.

Measured in one process, alternating, median of ``--repeats`` rounds; every round starts
cold (modjax's program cache cleared, a new jitted function for the floor):

  first epoch   modjax: ``TrainPhase.execute`` of a 1-epoch phase, call to return
                (device placement, tracing, compilation, the epoch, write-back);
                floor: a new ``jax.jit`` of the epoch scan, the first call including its
                compilation, plus the numpy permutation and the loss read.
  fresh phase   a second ``TrainPhase`` object of the same structure (new loss and
                optimizer objects configured alike, another graph of equal structure):
                backend compilations counted with ``jax.monitoring`` (must be 0) and its
                wall time against the floor's steady epoch.

Run:  .venv/bin/python benchmarks/bench_compile.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_train_loop import CompileCounter, init_mlp, make_data

from modjax import (
    AppliedLoss,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.context import ExperimentContext

try:
    from modjax.train.programs import clear_program_cache
except ImportError:  # a version without the process-wide program cache (before/after runs)
    def clear_program_cache() -> None:
        return None

N, N_TRAIN, BATCH, LR = 5000, 4000, 32, 1e-3
TX = optax.adam(LR)


def sgd_step(p, s, xb, yb):
    def loss_fn(p):
        h = jax.nn.relu(xb @ p["l0"]["w"] + p["l0"]["b"])
        return jnp.mean(jnp.square(h @ p["l1"]["w"] + p["l1"]["b"] - yb))

    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = TX.update(g, s, p)
    return optax.apply_updates(p, u), s, loss


def build(x, y, seed: int = 0):
    ctx = ExperimentContext(registration_policy="overwrite")
    with ctx.activate():
        data = {f"x{i}": x[:, i] for i in range(10)}
        data["y"] = y
        fs = FeatureSet.from_dict("bench", data, [f"x{i}" for i in range(10)], "y")
        fs.add_split(fs.take(np.arange(N_TRAIN), label="train"), "train")
        node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=32),
                         upstream_ref=fs.reference(features=[f"x{i}" for i in range(10)]))
        graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(
            key=seed)
    return ctx, graph


def phase() -> TrainPhase:
    return TrainPhase("train", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(BATCH, shuffle=True, seed=0), split="train")],
        losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
        n_epochs=1, result_recording="none")


def modjax_round(x, y) -> tuple[float, float, int]:
    clear_program_cache()
    ctx, graph = build(x, y)
    with ctx.activate():
        t = time.perf_counter()
        phase().execute(graph, show_training_progress=False)
        first = time.perf_counter() - t
    ctx2, other = build(x, y, seed=1)
    with ctx2.activate(), CompileCounter() as c:
        t = time.perf_counter()
        phase().execute(other, show_training_progress=False)
        fresh = time.perf_counter() - t
    return first, fresh, c.n


def floor_round(xd, yd) -> tuple[float, float]:
    def epoch(p, s, x, y, idx):
        def body(c, i):
            p, s = c
            p, s, loss = sgd_step(p, s, x[i], y[i])
            return (p, s), loss
        (p, s), losses = jax.lax.scan(body, (p, s), idx)
        return p, s, losses

    fn = jax.jit(epoch)  # a new function: the first call compiles
    p = init_mlp(jax.random.key(0))
    s = TX.init(p)
    rng = np.random.default_rng(0)
    nb = N_TRAIN // BATCH
    times = []
    for _ in range(2):
        t = time.perf_counter()
        idx = rng.permutation(N_TRAIN)[: nb * BATCH].reshape(nb, BATCH).astype(np.int32)
        p, s, losses = fn(p, s, xd, yd, idx)
        float(losses.mean())
        times.append(time.perf_counter() - t)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x, y = make_data(N)
    xd, yd = jnp.asarray(x[:N_TRAIN]), jnp.asarray(y[:N_TRAIN, None])
    floor_round(xd, yd)  # JAX's own one-time start-up is nobody's compile latency
    firsts, freshes, compiles, f_firsts, f_steady = [], [], [], [], []
    for _ in range(args.repeats):
        a, b, n = modjax_round(x, y)
        c, d = floor_round(xd, yd)
        firsts.append(a)
        freshes.append(b)
        compiles.append(n)
        f_firsts.append(c)
        f_steady.append(d)
    m_first, m_fresh = statistics.median(firsts), statistics.median(freshes)
    fl_first, fl_steady = statistics.median(f_firsts), statistics.median(f_steady)
    print(f"first epoch, compile included: modjax {m_first * 1e3:.0f} ms, floor "
          f"{fl_first * 1e3:.0f} ms, ratio {m_first / fl_first:.2f}x (goal <= 1.5x)")
    print(f"fresh phase of the same structure: {max(compiles)} backend compiles (goal 0), "
          f"{m_fresh * 1e3:.1f} ms vs the floor's steady epoch {fl_steady * 1e3:.1f} ms "
          f"({m_fresh / fl_steady:.2f}x, setup included)")


if __name__ == "__main__":
    main()
