"""Import time of ``import modjax`` against ``import jax, optax``.

Each measurement is a fresh ``python -c`` subprocess timing its own import with
``time.perf_counter`` (interpreter start-up excluded); the kinds alternate, and the
median of ``--repeats`` of each is compared with the median of ``import jax, optax``
measured in the same run. Three statements are timed:

- ``import modjax``: the top level loads its names on first use, so this is the
  package's fixed cost;
- ``import modjax`` and naming what a training script uses (FeatureSet, the samplers,
  ModelGraph, ModelNode, SequentialMLP, TrainPhase, EvalPhase, Experiment, AppliedLoss,
  Optimizer): the cost a script really pays before its first line of work;
- ``import jax, optax``: the reference (modjax needs both).

Also lists which heavy modules each loaded (Orbax, pyarrow.compute/parquet/dataset, tqdm,
flax, the plot and observer modules should not be among them: they load on first use).

Bytecode: every module is imported from compiled bytecode, as from an installed package
(pip compiles it at install time). The children write and read their ``.pyc`` files under
a temporary ``PYTHONPYCACHEPREFIX`` (the warm-up run compiles), so neither side pays for
compiling source and the working tree is not touched, even when the environment sets
``PYTHONDONTWRITEBYTECODE``; ``--source`` measures compiling modjax's sources instead.

Goal: ``import modjax`` <= 1.05x ``import jax, optax``.

Run:  .venv/bin/python benchmarks/bench_import.py [--repeats 9] [--source] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

GOAL = 1.05
HEAVY = ("orbax", "orbax.checkpoint", "pyarrow.compute", "pyarrow.parquet", "pyarrow.dataset",
         "tqdm", "modjax.observe.plots", "modjax.observe.observer", "modjax.io.pytree_store",
         "flax", "torch", "sklearn", "pandas")

REF = "import jax, optax"
BARE = "import modjax"
SCRIPT = ("import modjax; modjax.FeatureSet, modjax.SimpleSampler, modjax.ModelGraph, "
          "modjax.ModelNode, modjax.SequentialMLP, modjax.TrainPhase, modjax.EvalPhase, "
          "modjax.Experiment, modjax.AppliedLoss, modjax.Optimizer")

SNIPPET = """
import sys, time, json
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
print(json.dumps({{"s": dt, "mods": [m for m in {heavy!r} if m in sys.modules],
                  "file": sys.modules["modjax"].__file__ if "modjax" in sys.modules else None}}))
"""


def measure(stmt: str, env: dict[str, str], cwd: str) -> dict:
    code = SNIPPET.format(stmt=stmt, heavy=HEAVY)
    # run outside the checkout: ``python -c`` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_env(cache: str, source: bool) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if not source:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--source", action="store_true",
                    help="no bytecode cache for the children (modjax compiles its sources)")
    ap.add_argument("--tree", default=None,
                    help="import modjax from this checkout (e.g. an older commit, for before/after)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = child_env(cache, args.source)
        if args.tree:
            env["PYTHONPATH"] = os.path.abspath(args.tree)
        run(args, env, cache)


def run(args: argparse.Namespace, env: dict[str, str], cwd: str) -> None:
    print(f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores; {args.repeats} fresh processes each, alternating")
    print("bytecode: " + ("none (compiling sources)" if args.source else "compiled once, then read"))
    for stmt in (REF, BARE, SCRIPT):  # warm the OS file cache (and write the bytecode)
        measure(stmt, env, cwd)
    times: dict[str, list[float]] = {REF: [], BARE: [], SCRIPT: []}
    loaded: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for stmt in times:
            r = measure(stmt, env, cwd)
            times[stmt].append(r["s"])
            loaded[stmt] = r["mods"]
    a = statistics.median(times[REF])
    print(f"import jax, optax:        {a * 1e3:5.0f} ms (median)")
    for label, stmt in (("import modjax", BARE), ("+ a script's names", SCRIPT)):
        b = statistics.median(times[stmt])
        goal = f" (goal <= {GOAL}x)" if stmt == BARE else ""
        print(f"{label + ':':25s} {b * 1e3:5.0f} ms (median) -> {b / a:.3f}x{goal}; "
              f"heavy modules loaded: {loaded[stmt] or 'none'}")
    print(f"modjax from {measure(BARE, env, cwd)['file']}; load average after: "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
