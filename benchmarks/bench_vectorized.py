"""Vectorized experiments: K runs of one structure as one vmapped program vs K runs in turn.

Reference workload: 5,000 samples x 10 features, target ``tanh(x @ w) + noise``,
``SequentialMLP(n_layers=2, hidden_dim=32)`` (10 -> 32 relu -> 1), Adam(1e-3), MSE,
batch 32, reshuffled every epoch, 20 epochs.

1. 5-fold cross-validation of the training split (4,000 rows): ``CrossValidation(
   parallel=True)`` vs the sequential folds, each fold ending with an EvalPhase on its
   validation rows. Per-fold metrics of the two runs are compared.
2. 8 seeds: ``TrainPhase(replicas=8)`` vs 8 TrainPhases run one after another (seed s:
   graph key s, sampler seed s).
3. Compile time of the vmapped epoch vs a single run's epoch (XLA backend compile
   seconds reported by ``jax.monitoring``).
4. The floor: the same 8-seed comparison written by hand (jax + optax, one jitted scan
   per epoch, vmapped or called 8 times), i.e. what this CPU allows at best.

"cold" = the first run in the process after the program cache is cleared (compilation
included); "warm" = a repeat with the compiled programs reused (repeated experiments,
a notebook re-run). Medians over ``--repeats``, the two variants interleaved.

Run:  .venv/bin/python benchmarks/bench_vectorized.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from modjax import (
    AppliedLoss,
    CrossValidation,
    CVBinding,
    EvalPhase,
    Experiment,
    FeatureSet,
    ModelGraph,
    ModelNode,
    Optimizer,
    PhaseGroup,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.train.programs import clear_program_cache

N, EPOCHS, BATCH, HIDDEN, LR, FOLDS, SEEDS = 5000, 20, 32, 32, 1e-3, 5, 8


class CompileClock:
    """Sums XLA backend compile seconds while active."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def _listener(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.seconds += duration

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


def build(label: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 10)).astype(np.float32)
    w = rng.normal(size=(10,)).astype(np.float32) / np.sqrt(10)
    y = (np.tanh(x @ w) + 0.1 * rng.normal(size=N)).astype(np.float32)
    exp = Experiment(label, registration_policy="overwrite")
    keys = [f"x{i}" for i in range(10)]
    fs = FeatureSet.from_dict("bench", {**{k: x[:, i] for i, k in enumerate(keys)}, "y": y},
                              keys, "y")
    fs.add_split(fs.take(np.arange(4000), label="train"), "train")
    node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=HIDDEN),
                     upstream_ref=fs.reference(features=keys))
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
    mse = AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])
    return exp, fs, graph, mse


def train(mse, seed: int = 0, replicas: int = 1) -> TrainPhase:
    return TrainPhase.from_split("train", split="train", sampler=SimpleSampler(BATCH, seed=seed),
                                 losses=[mse], n_epochs=EPOCHS, seed=seed, replicas=replicas,
                                 result_recording="none")


def cv_run(parallel: bool, cold: bool):
    exp, fs, graph, mse = build("cv")
    group = PhaseGroup("fold", [train(mse), EvalPhase.from_split("val", split="val",
                                                                 losses=[mse])])
    cv = CrossValidation(label="cv", bindings=CVBinding(fs, ["train"]), n_folds=FOLDS,
                         phase=group, experiment=exp, parallel=parallel)
    if cold:
        clear_program_cache()
    t = time.perf_counter()
    res = cv.run(show_fold_progress=False)
    return time.perf_counter() - t, res.fold_metrics()


def seeds_run(vmapped: bool, cold: bool) -> float:
    exp, fs, graph, mse = build("seeds")
    if cold:
        clear_program_cache()
    t = time.perf_counter()
    if vmapped:
        train(mse, replicas=SEEDS).execute(graph)
    else:
        for s in range(SEEDS):
            graph.set_variables(graph.init(s))
            graph.set_opt_state(None)
            train(mse, seed=s).execute(graph, show_training_progress=False)
    return time.perf_counter() - t


def compile_seconds(replicas: int) -> float:
    exp, fs, graph, mse = build("compile")
    clear_program_cache()
    with CompileClock() as clock:
        train(mse, replicas=replicas).execute(graph, show_training_progress=False)
    return clock.seconds


def floor_ratio(repeats: int) -> tuple[float, float]:
    """Hand-written 8 seeds x 20 epochs: (sequential seconds, vmapped seconds)."""
    import jax.numpy as jnp
    import optax

    tx = optax.adam(LR)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"l0": {"w": jax.random.normal(k1, (10, HIDDEN)) * 0.4, "b": jnp.zeros(HIDDEN)},
                "l1": {"w": jax.random.normal(k2, (HIDDEN, 1)) * 0.2, "b": jnp.zeros(1)}}

    def mlp(p, x):
        return jax.nn.relu(x @ p["l0"]["w"] + p["l0"]["b"]) @ p["l1"]["w"] + p["l1"]["b"]

    def epoch(p, s, x, y, idx):
        def body(c, i):
            p, s = c
            loss, g = jax.value_and_grad(lambda p: jnp.mean((mlp(p, x[i]) - y[i]) ** 2))(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        return jax.lax.scan(body, (p, s), idx)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4000, 10)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(4000, 1)).astype(np.float32))
    one, many = jax.jit(epoch), jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, 0)))
    p = init(jax.random.key(0))
    pk = jax.vmap(init)(jax.random.split(jax.random.key(0), SEEDS))
    plans = [rng.permutation(4000)[:3968].reshape(-1, BATCH).astype(np.int32)
             for _ in range(EPOCHS)]
    out = []
    for f, args, calls in ((one, (p, tx.init(p)), SEEDS), (many, (pk, jax.vmap(tx.init)(pk)), 1)):
        jax.block_until_ready(f(*args, x, y, np.stack([plans[0]] * (SEEDS // calls))
                                if calls == 1 else plans[0]))
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(calls):
                for e in range(EPOCHS):
                    idx = plans[e] if calls > 1 else np.stack([plans[e]] * SEEDS)
                    r = f(*args, x, y, idx)
            jax.block_until_ready(r)
            ts.append(time.perf_counter() - t)
        out.append(statistics.median(ts))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"devices: {jax.devices()}  workload: {N}x10, MLP 10-{HIDDEN}-1, adam, batch {BATCH}, "
          f"{EPOCHS} epochs")

    times: dict[str, list[float]] = {}
    metrics = {}
    for _ in range(args.repeats):
        for par in (True, False):
            for cold in (True, False):
                t, m = cv_run(par, cold)
                times.setdefault(f"cv {'parallel' if par else 'sequential'} "
                                 f"{'cold' if cold else 'warm'}", []).append(t)
                metrics[par] = m
    diff = max(abs(a[k] - b[k]) for a, b in zip(metrics[True], metrics[False]) for k in a)
    for _ in range(args.repeats):
        for vm in (True, False):
            for cold in (True, False):
                times.setdefault(f"seeds {'vmapped' if vm else 'sequential'} "
                                 f"{'cold' if cold else 'warm'}", []).append(seeds_run(vm, cold))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:28s} {v:7.3f} s")
    for what, a, b in (("cv", "parallel", "sequential"), ("seeds", "vmapped", "sequential")):
        for c in ("cold", "warm"):
            print(f"{what} {c}: {a} is {med[f'{what} {b} {c}'] / med[f'{what} {a} {c}']:.2f}x "
                  f"faster than {b}")
    print(f"cv per-fold metrics, parallel vs sequential: max |diff| = {diff:.2e} over "
          f"{len(metrics[True][0])} metrics x {FOLDS} folds")
    fs_, fv = floor_ratio(args.repeats)
    print(f"floor (hand-written jax+optax, 8 seeds x {EPOCHS} epochs): sequential {fs_:.3f} s, "
          f"vmapped {fv:.3f} s: {fs_ / fv:.2f}x")
    single = statistics.median(compile_seconds(1) for _ in range(args.repeats))
    vmapped = statistics.median(compile_seconds(SEEDS) for _ in range(args.repeats))
    print(f"compile (XLA backend seconds, whole phase): single run {single:.2f} s, "
          f"vmapped x{SEEDS} {vmapped:.2f} s ({vmapped / single:.2f}x)")


if __name__ == "__main__":
    main()
