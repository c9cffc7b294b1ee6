"""Vectorized experiments: K runs of one structure as one vmapped program vs K runs in turn.

Reference workload: 5,000 samples x 10 features, target ``tanh(x @ w) + noise``,
``SequentialMLP(n_layers=2, hidden_dim=32)`` (10 -> 32 relu -> 1), Adam(1e-3), MSE,
batch 32, reshuffled every epoch, 20 epochs.

1. 5-fold cross-validation of the training split (4,000 rows): ``CrossValidation(
   parallel=True)`` vs the sequential folds, each fold ending with an EvalPhase on its
   validation rows. Per-fold metrics of the two runs are compared.
2. 8 seeds: ``TrainPhase(replicas=8)`` vs 8 TrainPhases run one after another (seed s:
   graph key s, sampler seed s).
3. The floor: the 8-seed comparison written by hand (jax + optax, one jitted scan per
   epoch, vmapped or called 8 times), i.e. what this CPU allows at best, with the
   arithmetic rate it reaches and the share of a core the process got (CPU/wall).
4. The vmapped epoch program of modjax vs the hand-written vmapped epoch (same data,
   same plans shape): the overhead of masks, loss weights and the carry.
5. Compile time of the vmapped epoch vs a single run's epoch (XLA backend compile
   seconds reported by ``jax.monitoring``).

With two or more devices (on a CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
set before the process starts) the vectorized runs are repeated on a ``("replica",)``
mesh of two devices, so each core trains half the replicas; those rows are compared with
the sequential runs on one device, as a user would run them. Both ratios are printed,
labelled.

"cold" = the first run in the process after the program cache is cleared (compilation
included); "warm" = a repeat with the compiled programs reused (repeated experiments,
a notebook re-run). Medians over ``--repeats``, the variants interleaved; the load
average is printed with each section (the machine may be shared).

Run:  .venv/bin/python benchmarks/bench_vectorized.py [--repeats 3]
      XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
          .venv/bin/python benchmarks/bench_vectorized.py
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


def _mesh():
    """A ``("replica",)`` mesh of two devices, or None with fewer."""
    if len(jax.devices()) < 2:
        return None
    from jax.sharding import Mesh
    return Mesh(np.array(jax.devices()[:2]), ("replica",))


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def timed(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def cv_run(parallel: bool, cold: bool, mesh=None):
    exp, fs, graph, mse = build("cv")
    group = PhaseGroup("fold", [train(mse), EvalPhase.from_split("val", split="val",
                                                                 losses=[mse])])
    cv = CrossValidation(label="cv", bindings=CVBinding(fs, ["train"]), n_folds=FOLDS,
                         phase=group, experiment=exp, parallel=parallel, mesh=mesh)
    if cold:
        clear_program_cache()
    wall, cpu, res = timed(lambda: cv.run(show_fold_progress=False))
    return wall, cpu, res.fold_metrics()


def seeds_run(vmapped: bool, cold: bool, mesh=None):
    exp, fs, graph, mse = build("seeds")
    if cold:
        clear_program_cache()

    def go():
        if vmapped:
            ph = train(mse, replicas=SEEDS)
            ph.mesh = mesh
            ph.execute(graph, show_training_progress=False)
            return
        for s in range(SEEDS):
            graph.set_variables(graph.init(s))
            graph.set_opt_state(None)
            train(mse, seed=s).execute(graph, show_training_progress=False)

    wall, cpu, _ = timed(go)
    return wall, cpu, None


def compile_seconds(replicas: int) -> float:
    exp, fs, graph, mse = build("compile")
    clear_program_cache()
    with CompileClock() as clock:
        train(mse, replicas=replicas).execute(graph, show_training_progress=False)
    return clock.seconds


# --------------------------------------------------------------------------- the floor
def _floor_parts():
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

    return tx, init, epoch


ROWS = 4000  # the training rows of the 8-seed comparison


def floor_variants():
    """The hand-written 8 seeds x 20 epochs: {name: zero-argument run}."""
    tx, init, epoch = _floor_parts()
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.normal(size=(ROWS, 10)).astype(np.float32))
    y = jax.numpy.asarray(rng.normal(size=(ROWS, 1)).astype(np.float32))
    one = jax.jit(epoch)
    many = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, 0)))
    p = init(jax.random.key(0))
    pk = jax.vmap(init)(jax.random.split(jax.random.key(0), SEEDS))
    plans = [rng.permutation(ROWS).reshape(-1, BATCH).astype(np.int32) for _ in range(EPOCHS)]
    stacked = [np.stack([pl] * SEEDS) for pl in plans]

    def sequential():
        for _ in range(SEEDS):
            c = (p, tx.init(p))
            for e in range(EPOCHS):
                c, _ = one(*c, x, y, plans[e])
        jax.block_until_ready(c)

    start = (pk, jax.vmap(tx.init)(pk), x, y)

    def vmapped(args=start, plans=stacked):
        c = args[:2]
        for e in range(EPOCHS):
            c, _ = many(*c, *args[2:], plans[e])
        jax.block_until_ready(c)

    out = {"sequential": sequential, "vmapped": vmapped}
    mesh = _mesh()
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec
        split = NamedSharding(mesh, PartitionSpec("replica"))
        rep = NamedSharding(mesh, PartitionSpec())
        args = (*jax.device_put((pk, jax.vmap(tx.init)(pk)), split), *jax.device_put((x, y), rep))
        placed = [jax.device_put(a, split) for a in stacked]
        out["vmapped, 2 devices"] = lambda: vmapped(args, placed)
    out["_epoch"] = (many, (*start, stacked[0]))
    return out


def step_flops() -> float:
    """Multiply-adds x 2 of one training step of one run (forward, backward, Adam)."""
    fwd = 2 * BATCH * (10 * HIDDEN + HIDDEN)
    n_params = 10 * HIDDEN + HIDDEN + HIDDEN + 1
    # backward: weight gradients of both layers and the hidden layer's input gradient
    return fwd + 2 * BATCH * (10 * HIDDEN + 2 * HIDDEN) + 12 * n_params


def modjax_epoch_program(mesh=None):
    """(the vmapped epoch of ``TrainPhase(replicas=8)``, its arguments), caught from a run
    (on ``mesh`` if given)."""
    from modjax.train import replica_loop

    caught = {}
    dispatch = replica_loop.ReplicaEpochs._dispatch

    def spy(self, a):
        frozen, stores, weights = self.args
        caught.setdefault("call", (self.fn, (self.carry, frozen, stores, a.plans,
                                             np.asarray(self.active), weights)))
        return dispatch(self, a)

    replica_loop.ReplicaEpochs._dispatch = spy
    try:
        seeds_run(True, False, mesh)
    finally:
        replica_loop.ReplicaEpochs._dispatch = dispatch
    return caught["call"]


def epochs_of(fn, args, carry_first: bool):
    """A run of 20 epochs of ``fn`` (each from the previous carry)."""
    def run():
        if carry_first:
            c = args[0]
            for _ in range(EPOCHS):
                c, _ = fn(c, *args[1:])
        else:
            c = args[:2]
            for _ in range(EPOCHS):
                c, _ = fn(*c, *args[2:])
        jax.block_until_ready(c)
    return run


# --------------------------------------------------------------------------- main
def interleaved(variants: dict, repeats: int) -> dict:
    """{name: (median wall, median CPU, last result)} over interleaved repeats."""
    walls: dict = {k: [] for k in variants}
    cpus: dict = {k: [] for k in variants}
    last = {}
    for _ in range(repeats):
        for k, fn in variants.items():
            w, c, last[k] = fn()
            walls[k].append(w)
            cpus[k].append(c)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k]), last[k]) for k in walls}


def report(title: str, med: dict, base: str) -> None:
    """Wall seconds and the ratio to ``base``; also CPU seconds of the process and their
    ratio (the work done: on a loaded machine the scheduler, not the program, sets how
    much of a core a process gets, and it favours short bursts over long computations)."""
    print(f"\n{title}   (load {load()})")
    bw, bc = med[base][0], med[base][1]
    for k, (w, c, _) in med.items():
        print(f"  {k:34s} {w:7.3f} s {bw / w:5.2f}x | cpu {c:6.3f} s {bc / c:5.2f}x "
              f"| cpu/wall {c / w:4.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    mesh = _mesh()
    print(f"devices: {jax.devices()}  workload: {N}x10, MLP 10-{HIDDEN}-1, adam, batch {BATCH}, "
          f"{EPOCHS} epochs; load {load()}")
    ratios = []
    for what, fn, a, b in (("cv", cv_run, "parallel", "sequential"),
                           ("seeds", seeds_run, "vmapped", "sequential")):
        # each warm run right after its cold one (a cold run clears every program)
        variants = {}
        for name, flag, m in ((b, False, None), (a, True, None), (f"{a}, 2 devices", True, mesh)):
            if name.endswith("devices") and mesh is None:
                continue
            for c in ("cold", "warm"):
                variants[f"{what} {name} {c}"] = \
                    lambda fn=fn, c=c, flag=flag, m=m: fn(flag, c == "cold", m)
        for v in variants.values():  # compile everything once before timing
            v()
        med = interleaved(variants, args.repeats)
        report(f"{what}: {a} vs {b} (sequential on one device)", med, f"{what} {b} warm")
        for c in ("cold", "warm"):
            ref = med[f"{what} {b} {c}"][0]
            mine = med[f"{what} {a} {c}"]
            ratios.append(f"{what} {c}: {a} on 1 device is {ref / mine[0]:.2f}x faster than {b} "
                          f"on 1 device (CPU seconds: {med[f'{what} {b} {c}'][1] / mine[1]:.2f}x "
                          "less)")
            if mesh is not None:
                ratios.append(f"{what} {c}: {a} on 2 devices is "
                              f"{ref / med[f'{what} {a}, 2 devices {c}'][0]:.2f}x faster than "
                              f"{b} on 1 device")
        if what == "cv":
            par, seq = med[f"cv {a} warm"][2], med[f"cv {b} warm"][2]
            diff = max(abs(x[k] - y[k]) for x, y in zip(par, seq) for k in x)
            ratios.append(f"cv per-fold metrics, parallel vs sequential: max |diff| = {diff:.2e} "
                          f"over {len(par[0])} metrics x {FOLDS} folds")
    print()
    for r in ratios:
        print(r)

    floors = floor_variants()
    many, margs = floors.pop("_epoch")
    fn, fargs = modjax_epoch_program()
    floors["modjax vmapped epoch program"] = epochs_of(fn, fargs, True)
    floors["hand-written vmapped epoch program"] = epochs_of(many, margs, False)
    if mesh is not None:
        floors["modjax vmapped epoch program, 2 devices"] = epochs_of(*modjax_epoch_program(mesh),
                                                                     True)
    for f in floors.values():
        f()
    med = interleaved({k: (lambda f=f: timed(f)) for k, f in floors.items()}, max(args.repeats, 5))
    report(f"floor: hand-written jax+optax, {SEEDS} seeds x {EPOCHS} epochs", med, "sequential")
    steps = SEEDS * EPOCHS * (ROWS // BATCH)
    # per CPU-second of this process: the arithmetic rate a core gives each program,
    # whatever share of the cores the scheduler granted
    gf = {k: steps * step_flops() / med[k][1] / 1e9 for k in ("sequential", "vmapped")}
    print(f"  arithmetic: {step_flops() / 1e3:.0f} kflop per run-step; per CPU-second the "
          f"sequential floor does {gf['sequential']:.1f} GFLOP, the vmapped one "
          f"{gf['vmapped']:.1f} GFLOP; 4x the sequential on one core needs "
          f"{4 * gf['sequential']:.1f} GFLOP per CPU-second ({4 * gf['sequential'] / 2:.1f} "
          "on each of 2 fully free cores)")
    mod, hand = med["modjax vmapped epoch program"], med["hand-written vmapped epoch program"]
    print(f"  modjax vmapped epoch program / hand-written vmapped epoch program: wall "
          f"{mod[0] / hand[0]:.2f}x, CPU seconds {mod[1] / hand[1]:.2f}x")

    single = statistics.median(compile_seconds(1) for _ in range(args.repeats))
    vmapped = statistics.median(compile_seconds(SEEDS) for _ in range(args.repeats))
    print(f"\ncompile (XLA backend seconds, whole phase): single run {single:.2f} s, "
          f"vmapped x{SEEDS} {vmapped:.2f} s ({vmapped / single:.2f}x)   (load {load()})")


if __name__ == "__main__":
    main()
