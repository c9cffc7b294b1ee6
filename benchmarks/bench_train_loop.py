"""Training-loop speed of modjax against the strongest hand-written floor.

Reference workload: n samples x 10 features (80% train), target ``tanh(x @ w) + noise``,
``SequentialMLP(n_layers=2, hidden_dim=32)`` (10 -> 32 relu -> 1), Adam(1e-3), MSE,
reshuffled every epoch, 20 epochs per run, at n = 5k / 20k / 100k and batch 32 / 256 / 1024.

Loops measured in the same process, interleaved, median of ``--repeats`` runs:

  modjax      one ``TrainPhase.execute`` of 20 epochs, timed as a whole (phase setup,
              device placement, every epoch's plan and losses, results and the write-back
              to the graph included), divided by 20.
  floor/each  hand-written jax + optax: the train set already on the device, a numpy
              permutation per epoch on the host, one jitted ``lax.scan`` per epoch gathering
              the batches on the device, the epoch's mean loss read back every epoch.
  floor/end   the same, but the losses are read only once, after the last epoch (the host
              never waits for the device between epochs: the strongest floor).

Both use ``drop_last=True`` (the floor drops the partial batch; modjax's sampler does too), so
they do the same work. A second table shows what the padded last batch costs when
``drop_last=False``. Compilations are counted with ``jax.monitoring`` (backend compiles):
runs after the first must compile nothing.

A last table splits the cost of one ``execute`` into a fixed part and a per-epoch part
(1- and 41-epoch runs at 3 steps per epoch): the per-epoch difference to floor/end is
modjax's host work per epoch.

Run:  .venv/bin/python benchmarks/bench_train_loop.py [--repeats 5] [--sizes 5000 20000 100000]
      [--batches 32 256 1024] [--per-step]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

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

EPOCHS, HIDDEN, LR = 20, 32, 1e-3
GOAL = 1.15


class CompileCounter:
    """Counts XLA backend compilations while active."""

    def __init__(self) -> None:
        self.n = 0

    def _listener(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    w = rng.normal(size=(10,)).astype(np.float32) / np.sqrt(10)
    y = (np.tanh(x @ w) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- modjax
def build_modjax(x, y, n_train, batch, drop_last=True):
    ctx = ExperimentContext(registration_policy="overwrite")
    with ctx.activate():
        data = {f"x{i}": x[:, i] for i in range(10)}
        data["y"] = y
        fs = FeatureSet.from_dict("bench", data, [f"x{i}" for i in range(10)], "y")
        fs.add_split(fs.take(np.arange(n_train), label="train"), "train")
        node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=HIDDEN),
                         upstream_ref=fs.reference(features=[f"x{i}" for i in range(10)]))
        graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
        sampler = SimpleSampler(batch, shuffle=True, seed=0, drop_last=drop_last)
        phase = TrainPhase("train", input_sources=[InputBinding.for_training(
            node="mlp", sampler=sampler, split="train")],
            losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
            n_epochs=EPOCHS, result_recording="none")
    return ctx, graph, phase


def run_modjax(ctx, graph, phase):
    """(whole-execute seconds, per-epoch train loss)."""
    with ctx.activate():
        t = time.perf_counter()
        res = phase.execute(graph, show_training_progress=False)
        return time.perf_counter() - t, res.metrics.series("train_loss")


# ----------------------------------------------------------------------------- floor
def init_mlp(key, n_in=10, hidden=HIDDEN):
    k1, k2 = jax.random.split(key)
    return {"l0": {"w": jax.random.normal(k1, (n_in, hidden)) * jnp.sqrt(2.0 / n_in),
                   "b": jnp.zeros(hidden)},
            "l1": {"w": jax.random.normal(k2, (hidden, 1)) * jnp.sqrt(1.0 / hidden),
                   "b": jnp.zeros(1)}}


def mlp(p, x):
    return jax.nn.relu(x @ p["l0"]["w"] + p["l0"]["b"]) @ p["l1"]["w"] + p["l1"]["b"]


TX = optax.adam(LR)


def loss_fn(p, xb, yb):
    return jnp.mean(jnp.square(mlp(p, xb) - yb))


def sgd_step(p, s, xb, yb):
    loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
    u, s = TX.update(g, s, p)
    return optax.apply_updates(p, u), s, loss


@jax.jit
def floor_epoch(p, s, x, y, idx):
    def body(c, i):
        p, s = c
        p, s, loss = sgd_step(p, s, x[i], y[i])
        return (p, s), loss
    (p, s), losses = jax.lax.scan(body, (p, s), idx)
    return p, s, losses


def run_floor(xd, yd, n_train, batch, read_each: bool, epochs: int = EPOCHS):
    """(whole-loop seconds, per-epoch mean loss); parameters are made before timing."""
    p = init_mlp(jax.random.key(0))
    s = TX.init(p)
    jax.block_until_ready((p, s))
    rng = np.random.default_rng(0)
    nb = n_train // batch
    t = time.perf_counter()
    kept = []
    for _ in range(epochs):
        idx = rng.permutation(n_train)[: nb * batch].reshape(nb, batch).astype(np.int32)
        p, s, losses = floor_epoch(p, s, xd, yd, idx)
        kept.append(float(losses.mean()) if read_each else losses)
    means = kept if read_each else [float(v) for v in np.asarray(jnp.stack(kept)).mean(axis=1)]
    jax.block_until_ready(p)
    return time.perf_counter() - t, means


step_jit = jax.jit(sgd_step)


def run_per_step(x_train, y_train, batch):
    p = init_mlp(jax.random.key(0))
    s = TX.init(p)
    rng = np.random.default_rng(0)
    n = len(x_train)
    t = time.perf_counter()
    for _ in range(EPOCHS):
        order = rng.permutation(n)
        losses = []
        for b in range(n // batch):
            i = order[b * batch:(b + 1) * batch]
            p, s, loss = step_jit(p, s, x_train[i], y_train[i])
            losses.append(loss)
        float(jnp.mean(jnp.stack(losses)))
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- main
def bench(n: int, batch: int, repeats: int) -> dict:
    n_train = int(n * 0.8)
    x, y = make_data(n)
    xd, yd = jax.device_put(x[:n_train]), jax.device_put(y[:n_train, None])
    ctx, graph, phase = build_modjax(x, y, n_train, batch)
    init_vars = graph.variables
    with CompileCounter() as c1:
        first_t, first_losses = run_modjax(ctx, graph, phase)
    run_floor(xd, yd, n_train, batch, True)  # compile both floors
    run_floor(xd, yd, n_train, batch, False)
    times = {"modjax": [], "floor/each": [], "floor/end": []}
    with CompileCounter() as c2:
        for _ in range(repeats):
            graph.set_variables(init_vars)
            times["modjax"].append(run_modjax(ctx, graph, phase)[0] / EPOCHS)
            times["floor/each"].append(run_floor(xd, yd, n_train, batch, True)[0] / EPOCHS)
            times["floor/end"].append(run_floor(xd, yd, n_train, batch, False)[0] / EPOCHS)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"n": n, "batch": batch, "steps": n_train // batch, "ms": {k: v * 1e3 for k, v in med.items()},
            "over_each": med["modjax"] / med["floor/each"],
            "over_end": med["modjax"] / med["floor/end"],
            "compiles_first": c1.n, "compiles_reruns": c2.n, "first_s": first_t,
            "loss": (first_losses[0], first_losses[-1])}


def bench_padding(n: int, batch: int, repeats: int) -> dict:
    """Whole-execute ms/epoch with drop_last=False (padded last batch) vs drop_last=True."""
    n_train = int(n * 0.8)
    x, y = make_data(n)
    runs = {}
    for drop in (True, False):
        ctx, graph, phase = build_modjax(x, y, n_train, batch, drop_last=drop)
        run_modjax(ctx, graph, phase)
        runs[drop] = (ctx, graph, phase, graph.variables)
    times = {True: [], False: []}
    for _ in range(repeats):
        for drop, (ctx, graph, phase, v0) in runs.items():
            graph.set_variables(v0)
            times[drop].append(run_modjax(ctx, graph, phase)[0] / EPOCHS)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"n": n, "batch": batch, "full": n_train // batch, "rows_last": n_train % batch,
            "drop_ms": med[True], "pad_ms": med[False], "ratio": med[False] / med[True]}


def bench_fixed_costs(repeats: int, n: int = 5000, batch: int = 1024) -> dict:
    """Per-execute and per-epoch fixed costs on a workload whose epochs are tiny (3 steps).

    Whole-execute time at 1 and 41 epochs, interleaved with floor/end at 1 and 41 epochs:
    the slope is the cost of one more epoch, the intercept the cost of one more execute.
    The device work per epoch is the same for both, so the difference of the slopes is
    modjax's host work per epoch.
    """
    n_train = int(n * 0.8)
    x, y = make_data(n)
    xd, yd = jax.device_put(x[:n_train]), jax.device_put(y[:n_train, None])
    ctx, graph, phase = build_modjax(x, y, n_train, batch)
    v0 = graph.variables
    times = {k: [] for k in ("m1", "m41", "f1", "f41")}
    for _ in range(max(repeats, 5) + 1):
        for e in (1, 41):
            phase.n_epochs = e
            graph.set_variables(v0)
            times[f"m{e}"].append(run_modjax(ctx, graph, phase)[0])
            times[f"f{e}"].append(run_floor(xd, yd, n_train, batch, False, epochs=e)[0])
    med = {k: statistics.median(v[1:]) * 1e3 for k, v in times.items()}  # first: warm-up
    slope_m, slope_f = (med["m41"] - med["m1"]) / 40, (med["f41"] - med["f1"]) / 40
    return {"slope_m": slope_m, "slope_f": slope_f, "host": slope_m - slope_f,
            "setup_m": med["m1"] - slope_m, "setup_f": med["f1"] - slope_f}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20_000, 100_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--per-step", action="store_true",
                    help="also time a Python loop of jitted steps (5k rows, batch 32)")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {EPOCHS} epochs per run; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("ms/epoch = whole run / 20 (modjax: one execute, setup and write-back included); "
          f"median of {args.repeats}; goal <= {GOAL}x the floor")
    head = (f"{'rows':>7} {'batch':>5} {'steps':>5} | {'modjax':>8} {'floor/each':>10} "
            f"{'floor/end':>9} | {'vs each':>7} {'vs end':>7} | compiles 1st/re-runs")
    print(head)
    print("-" * len(head))
    worst = 0.0
    for n in args.sizes:
        for b in args.batches:
            r = bench(n, b, args.repeats)
            ms = r["ms"]
            worst = max(worst, r["over_end"], r["over_each"])
            flag = "" if max(r["over_end"], r["over_each"]) <= GOAL else "  <- over goal"
            print(f"{n:>7} {b:>5} {r['steps']:>5} | {ms['modjax']:>8.3f} {ms['floor/each']:>10.3f} "
                  f"{ms['floor/end']:>9.3f} | {r['over_each']:>6.3f}x {r['over_end']:>6.3f}x | "
                  f"{r['compiles_first']}/{r['compiles_reruns']}{flag}", flush=True)
    print(f"worst ratio: {worst:.3f}x (goal <= {GOAL}x)")
    print("\npadded last batch (drop_last=False) vs drop_last=True, modjax whole-execute ms/epoch:")
    for n, b in ((5000, 256), (5000, 1024)):
        if n not in args.sizes:
            continue
        p = bench_padding(n, b, args.repeats)
        print(f"  {n} rows, batch {b}: {p['full']} full batches + {p['rows_last']} rows; "
              f"drop_last {p['drop_ms']:.3f} ms, padded {p['pad_ms']:.3f} ms -> {p['ratio']:.3f}x")
    if 5000 in args.sizes:
        f = bench_fixed_costs(args.repeats)
        print("\nfixed costs (5000 rows, batch 1024: 3 steps per epoch), from 1- and 41-epoch runs:")
        print(f"  per epoch: modjax {f['slope_m']:.3f} ms, floor/end {f['slope_f']:.3f} ms -> "
              f"modjax host work {f['host']:.3f} ms/epoch (goal < 0.1 ms)")
        print(f"  per execute: modjax {f['setup_m']:.3f} ms, floor/end {f['setup_f']:.3f} ms")
    if args.per_step:
        n_train = 4000
        x, y = make_data(5000)
        xd, yd = jax.device_put(x[:n_train]), jax.device_put(y[:n_train, None])
        run_per_step(x[:n_train], y[:n_train, None], 32)
        ps = statistics.median(run_per_step(x[:n_train], y[:n_train, None], 32) for _ in range(3))
        fl = statistics.median(run_floor(xd, yd, n_train, 32, True)[0] for _ in range(3))
        print(f"\nper-step python loop (5k rows, batch 32): {ps / EPOCHS * 1e3:.2f} ms/epoch -> "
              f"{ps / fl:.1f}x the floor")


if __name__ == "__main__":
    main()
