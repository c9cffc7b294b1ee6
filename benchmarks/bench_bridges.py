"""A torch MLP trained inside modjax (host callbacks) against ModularML's torch loop.

Reference workload: 5,000 samples x 10 features, target ``tanh(x @ w) + noise``, an MLP
10 -> 32 (relu) -> 32 (relu) -> 1, Adam(1e-3), MSE, batch 32, reshuffled each epoch.

Loops, measured in this run (seconds per epoch, median over ``--epochs`` epochs after a
warm-up epoch that compiles):

  modjax-torch   TrainPhase on a graph whose node is the torch MLP (TorchModelWrapper):
                 forward and backward are torch on the host through pure_callback /
                 custom_vjp, Adam is optax, the epoch is one jitted lax.scan.
  modjax-jax     the same graph with modjax's SequentialMLP (pure JAX).
  torch          a hand-written torch loop (forward, backward, torch.optim.Adam per batch):
                 the floor for any loop that runs this model in torch.
  ModularML      ModularML 1.0's own TrainPhase with its torch SequentialMLP, when
                 ``modularml`` is importable here or ``--modularml-python`` names an
                 interpreter that has it (run in a subprocess; skipped otherwise).

The torch and ModularML loops run with as many torch threads as the callbacks use
(``modjax.bridge.torch_call.callback_threads()``, 1 by default), so all torch work is
compared at one thread count; ``--torch-threads N`` sets it for all of them.

The callback overhead per batch is (modjax-torch - torch) / batches per epoch: what the
two host round trips and the JAX side (optax, gather, scan) add to torch's own work.

Run:  .venv/bin/python benchmarks/bench_bridges.py [--epochs 3] [--modularml-python PATH]
      [--torch-threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

N, D, BATCH, HIDDEN, LR = 5000, 10, 32, 32, 1e-3


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D,)).astype(np.float32)
    y = (np.tanh(x @ w) + 0.05 * rng.normal(size=N)).astype(np.float32)
    return x, y


def torch_mlp():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(D, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 1))


def modjax_epochs(kind: str, epochs: int) -> list[float]:
    """Seconds per epoch of a TrainPhase with a torch or JAX MLP node."""
    import torch

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
    from modjax.bridge import TorchModelWrapper
    from modjax.context import ExperimentContext

    x, y = make_data()
    with ExperimentContext(registration_policy="overwrite").activate():
        data = {f"x{i}": x[:, i] for i in range(D)} | {"y": y}
        fs = FeatureSet.from_dict("bench", data, [f"x{i}" for i in range(D)], "y")
        torch.manual_seed(0)
        model = TorchModelWrapper(torch_mlp()) if kind == "torch" else SequentialMLP(
            n_layers=2, hidden_dim=HIDDEN)
        node = ModelNode("mlp", model, upstream_ref=fs.reference())
        g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": LR})).build(key=0)
        phase = TrainPhase("t", input_sources=[InputBinding.for_training(
            node="mlp", sampler=SimpleSampler(BATCH, seed=0), upstream=None)],
            losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])], n_epochs=1)
        phase.execute(g, show_training_progress=False)  # compile
        times = []
        for _ in range(epochs):
            t = time.perf_counter()
            res = phase.execute(g, show_training_progress=False)
            times.append(time.perf_counter() - t)
        assert np.isfinite(res.metrics.series("train_loss")[-1])
    return times


def torch_epochs(epochs: int) -> list[float]:
    """Seconds per epoch of a plain torch loop (the floor)."""
    import torch

    x, y = make_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)[:, None]
    torch.manual_seed(0)
    model = torch_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs + 1):
        t = time.perf_counter()
        perm = torch.randperm(N, generator=gen)
        for i in range(0, N, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]


MODULARML_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import torch
    torch.set_num_threads({threads})
    import modularml as mm
    from modularml.models.torch import SequentialMLP
    from modularml.samplers import SimpleSampler
    from modularml.utils.nn.backend import Backend
    N, D, BATCH, HIDDEN, LR, epochs = {N}, {D}, {BATCH}, {HIDDEN}, {LR}, {epochs}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D,)).astype(np.float32)
    y = (np.tanh(x @ w) + 0.05 * rng.normal(size=N)).astype(np.float32)
    exp = mm.Experiment("bench")
    fs = mm.FeatureSet.from_dict("fs", {{**{{f"x{{i}}": x[:, i] for i in range(D)}}, "y": y}},
                                 [f"x{{i}}" for i in range(D)], "y")
    node = mm.ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=2, hidden_dim=HIDDEN),
                        upstream_ref=fs.reference())
    g = mm.ModelGraph([node], optimizer=mm.Optimizer("adam", opt_kwargs={{"lr": LR}},
                                                     backend=Backend.TORCH))
    loss = mm.AppliedLoss(mm.Loss("mse", backend=Backend.TORCH), on="mlp",
                          inputs=["mlp.outputs", "mlp.targets"])
    times = []
    for e in range(epochs + 1):
        phase = mm.TrainPhase(f"t{{e}}", input_sources=[mm.InputBinding.for_training(
            node="mlp", sampler=SimpleSampler(batch_size=BATCH, shuffle=True, seed=e,
                                              show_progress=False, drop_last=True),
            upstream=fs)], losses=[loss], n_epochs=1)
        t = time.perf_counter()
        exp.run_phase(phase)
        times.append(time.perf_counter() - t)
    print("TIMES", json.dumps(times[1:]))
""")


def modularml_epochs(epochs: int, python: str | None, threads: int) -> list[float] | None:
    """ModularML's own torch loop, in this interpreter or ``python``; None if unavailable."""
    if python is None:
        try:
            import modularml  # noqa: F401
        except ImportError:
            return None
        python = sys.executable
    code = MODULARML_SCRIPT.format(N=N, D=D, BATCH=BATCH, HIDDEN=HIDDEN, LR=LR, epochs=epochs,
                                   threads=threads)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        print("ModularML run failed:", out.stderr[-1500:])
        return None
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("TIMES ")][-1]
    return json.loads(line[len("TIMES "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--modularml-python", default=None,
                    help="an interpreter with modularml installed (run in a subprocess)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch intra-op threads for every loop (default: the callbacks' own)")
    args = ap.parse_args()
    import torch

    from modjax.bridge.torch_call import callback_threads

    threads = args.torch_threads or callback_threads() or torch.get_num_threads()
    callback_threads(threads)
    torch.set_num_threads(threads)
    n_batches = -(-N // BATCH)
    rows = {"modjax-torch": modjax_epochs("torch", args.epochs),
            "modjax-jax": modjax_epochs("jax", args.epochs),
            "torch": torch_epochs(args.epochs)}
    mml = modularml_epochs(args.epochs, args.modularml_python, threads)
    if mml is not None:
        rows["ModularML"] = mml
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{N} x {D}, MLP {D}-{HIDDEN}-{HIDDEN}-1, Adam, batch {BATCH} ({n_batches} batches/epoch), "
          f"torch threads {threads}")
    print(f"{'loop':<14}{'s/epoch':>10}{'ms/batch':>10}")
    for k, v in med.items():
        print(f"{k:<14}{v:>10.3f}{1e3 * v / n_batches:>10.3f}")
    print(f"callback overhead per batch (modjax-torch - torch): "
          f"{1e3 * (med['modjax-torch'] - med['torch']) / n_batches:.3f} ms")
    print(f"modjax-torch / modjax-jax: {med['modjax-torch'] / med['modjax-jax']:.1f}x slower")
    if "ModularML" in med:
        print(f"ModularML / modjax-torch: {med['ModularML'] / med['modjax-torch']:.1f}x "
              "(>1: the bridged torch node is faster than ModularML's native torch loop)")
    else:
        print("ModularML: not importable here (pass --modularml-python); column skipped")


if __name__ == "__main__":
    main()
