"""Import time of ``import modjax`` against ``import jax, optax``.

Each measurement is a fresh ``python -c`` subprocess timing its own import with
``time.perf_counter`` (interpreter start-up excluded); the two kinds alternate, and the
median of ``--repeats`` of each is compared. Also lists which heavy modules a bare
``import modjax`` loaded (Orbax, pyarrow.compute/parquet/dataset, tqdm, the plot and
observer modules should not be among them: they load on first use).

Goal: modjax <= 1.05x ``import jax, optax``.

Run:  .venv/bin/python benchmarks/bench_import.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

GOAL = 1.05
HEAVY = ("orbax", "orbax.checkpoint", "pyarrow.compute", "pyarrow.parquet", "pyarrow.dataset",
         "tqdm", "modjax.observe.plots", "modjax.observe.observer", "modjax.io.pytree_store",
         "flax", "torch", "sklearn", "pandas")

SNIPPET = """
import sys, time, json
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
print(json.dumps({{"s": dt, "mods": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def measure(stmt: str) -> dict:
    code = SNIPPET.format(stmt=stmt, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores; {args.repeats} fresh processes each, alternating")
    measure("import jax, optax")  # warm the OS file cache
    measure("import modjax")
    ref, mod, loaded = [], [], []
    for _ in range(args.repeats):
        ref.append(measure("import jax, optax")["s"])
        r = measure("import modjax")
        mod.append(r["s"])
        loaded = r["mods"]
    a, b = statistics.median(ref), statistics.median(mod)
    print(f"import jax, optax: {a * 1e3:.0f} ms (median)")
    print(f"import modjax:     {b * 1e3:.0f} ms (median) -> {b / a:.3f}x (goal <= {GOAL}x)")
    print(f"heavy modules loaded by import modjax: {loaded or 'none'}")


if __name__ == "__main__":
    main()
