"""Training-loop speed of modjax against a hand-written floor and the per-step habit.

Reference workload (issue 4): n samples x 10 features (80% train), target
``tanh(x @ w) + noise``, ``SequentialMLP(n_layers=2, hidden_dim=32)`` (10 -> 32 relu -> 1),
Adam(1e-3), MSE, batch 32, reshuffled every epoch, 20 epochs.

Three loops, measured in the same process, interleaved, median of ``--repeats``:

  modjax   ``TrainPhase.execute`` (FeatureSet -> DeviceStore -> sampler index plan ->
           one jitted ``lax.scan`` per epoch, results and metrics recorded).
  floor    hand-written jax + optax: the train set on the device, a numpy permutation
           per epoch, one jitted ``lax.scan`` per epoch gathering batches on the device.
  per-step a Python loop calling a jitted step per batch with numpy batches (the usual
           Flax NNX / PyTorch-style loop).

Steady-state epoch time = median wall time of an epoch (plan on the host, scan, losses
back on the host), first epoch of every run excluded; the whole-run time / 20 (which
includes modjax's per-phase setup: device placement, carry, write-back with validation)
is printed too. Each loop blocks on its losses once per epoch. Compilations are counted with
``jax.monitoring`` (backend compiles) and the phase's trace counter.

Run:  .venv/bin/python benchmarks/bench_train_loop.py [--repeats 5] [--sizes 5000 100000]
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
    ExperimentContext,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)

EPOCHS, BATCH, HIDDEN, LR = 20, 32, 32, 1e-3


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
def build_modjax(x, y, n_train):
    ctx = ExperimentContext(registration_policy="overwrite")
    with ctx.activate():
        data = {f"x{i}": x[:, i] for i in range(10)}
        data["y"] = y
        fs = FeatureSet.from_dict("bench", data, [f"x{i}" for i in range(10)], "y")
        fs.add_split(fs.take(np.arange(n_train), label="train"), "train")
        node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=HIDDEN),
                         upstream_ref=fs.reference(features=[f"x{i}" for i in range(10)]))
        graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
        phase = TrainPhase("train", input_sources=[InputBinding.for_training(
            node="mlp", sampler=SimpleSampler(BATCH, shuffle=True, seed=0), split="train")],
            losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
            n_epochs=EPOCHS, result_recording="none")
    return ctx, graph, phase


def run_modjax(ctx, graph, phase):
    """(whole-run seconds, per-epoch seconds, per-epoch train loss)."""
    with ctx.activate():
        t = time.perf_counter()
        res = phase.execute(graph, show_training_progress=False)
        return time.perf_counter() - t, res.epoch_durations, res.metrics.series("train_loss")


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


def run_floor(xd, yd, n_train):
    p = init_mlp(jax.random.key(0))
    s = TX.init(p)
    rng = np.random.default_rng(0)
    nb = n_train // BATCH
    t = time.perf_counter()
    means, durations = [], []
    for _ in range(EPOCHS):
        t0 = time.time()
        idx = rng.permutation(n_train)[: nb * BATCH].reshape(nb, BATCH).astype(np.int32)
        p, s, losses = floor_epoch(p, s, xd, yd, idx)
        means.append(float(losses.mean()))
        durations.append(time.time() - t0)
    return time.perf_counter() - t, durations, means


step_jit = jax.jit(sgd_step)


def run_per_step(x_train, y_train):
    p = init_mlp(jax.random.key(0))
    s = TX.init(p)
    rng = np.random.default_rng(0)
    n = len(x_train)
    t = time.perf_counter()
    means, durations = [], []
    for _ in range(EPOCHS):
        t0 = time.time()
        order = rng.permutation(n)
        losses = []
        for b in range(n // BATCH):
            i = order[b * BATCH:(b + 1) * BATCH]
            p, s, loss = step_jit(p, s, x_train[i], y_train[i])
            losses.append(loss)
        means.append(float(jnp.mean(jnp.stack(losses))))
        durations.append(time.time() - t0)
    return time.perf_counter() - t, durations, means


# ----------------------------------------------------------------------------- main
def bench(n: int, repeats: int, per_step: bool) -> dict:
    n_train = int(n * 0.8)
    x, y = make_data(n)
    xd, yd = jax.device_put(x[:n_train]), jax.device_put(y[:n_train, None])
    ctx, graph, phase = build_modjax(x, y, n_train)
    init_vars = graph.variables

    with CompileCounter() as c1:
        first_t, _, first_losses = run_modjax(ctx, graph, phase)
    traces_after_first = phase.n_traces
    run_floor(xd, yd, n_train)  # compile the floor
    if per_step:
        run_per_step(x[:n_train], y[:n_train, None])
    runs = {"modjax": [], "floor": [], "per_step": []}
    epochs = {"modjax": [], "floor": [], "per_step": []}
    with CompileCounter() as c2:
        for _ in range(repeats):
            graph.set_variables(init_vars)
            for name, fn in (("modjax", lambda: run_modjax(ctx, graph, phase)),
                             ("floor", lambda: run_floor(xd, yd, n_train))):
                total, per_epoch, _ = fn()
                runs[name].append(total / EPOCHS)
                epochs[name].extend(per_epoch[1:])  # steady state: skip each run's first epoch
    if per_step:
        for _ in range(max(1, repeats // 2)):
            total, per_epoch, _ = run_per_step(x[:n_train], y[:n_train, None])
            runs["per_step"].append(total / EPOCHS)
            epochs["per_step"].extend(per_epoch[1:])
    med = {k: statistics.median(v) for k, v in epochs.items() if v}
    best = {k: min(v) for k, v in epochs.items() if v}
    whole = {k: statistics.median(v) for k, v in runs.items() if v}
    out = {"n": n, "epoch_s": med, "run_epoch_s": whole, "best_epoch_s": best,
           "modjax_over_floor": med["modjax"] / med["floor"],
           "best_modjax_over_floor": best["modjax"] / best["floor"],
           "run_modjax_over_floor": whole["modjax"] / whole["floor"],
           "compiles_first_run": c1.n, "epoch_traces": traces_after_first,
           "compiles_reruns": c2.n, "first_run_s": first_t,
           "loss_first_last": (first_losses[0], first_losses[-1])}
    if "per_step" in med:
        out["per_step_over_modjax"] = med["per_step"] / med["modjax"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000])
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {EPOCHS} epochs, batch {BATCH}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for n in args.sizes:
        r = bench(n, args.repeats, per_step=n <= 20_000)
        e = r["epoch_s"]
        print(f"\nn={n} ({int(n * 0.8)} train, {int(n * 0.8) // BATCH} steps/epoch)")
        w = r["run_epoch_s"]
        print(f"  steady-state epoch (median, first epoch of each run excluded): modjax "
              f"{e['modjax'] * 1e3:.2f} ms, floor {e['floor'] * 1e3:.2f} ms -> modjax/floor = "
              f"{r['modjax_over_floor']:.3f}x (target <= 1.15x)")
        bst = r["best_epoch_s"]
        print(f"  fastest epoch (least disturbed by other load): modjax {bst['modjax'] * 1e3:.2f} ms, "
              f"floor {bst['floor'] * 1e3:.2f} ms -> {r['best_modjax_over_floor']:.3f}x")
        print(f"  whole 20-epoch run / 20 (incl. phase setup and write-back): modjax "
              f"{w['modjax'] * 1e3:.2f} ms, floor {w['floor'] * 1e3:.2f} ms -> "
              f"{r['run_modjax_over_floor']:.3f}x")
        if "per_step" in e:
            print(f"  per-step python loop: {e['per_step'] * 1e3:.2f} ms/epoch -> "
                  f"{r['per_step_over_modjax']:.1f}x slower than modjax (target >= 10x)")
        print(f"  compilations: first 20-epoch run {r['compiles_first_run']} backend compiles, "
              f"epoch function traced {r['epoch_traces']}x; re-runs: {r['compiles_reruns']} compiles")
        print(f"  first run (incl. compile) {r['first_run_s']:.2f}s; train_loss "
              f"{r['loss_first_last'][0]:.4f} -> {r['loss_first_last'][1]:.4f}")


if __name__ == "__main__":
    main()
