"""``import modjax`` loads no layer; a script's names leave Orbax, tqdm, Parquet and the
observation, plot, viz and bridge modules for first use."""

from __future__ import annotations

import json
import subprocess
import sys

#: modules that a bare import and a training script's names must not load
HEAVY = ("orbax", "orbax.checkpoint", "tqdm", "flax", "pyarrow", "pyarrow.parquet",
         "pyarrow.compute", "pyarrow.dataset", "pandas", "torch", "sklearn", "optax", "jax")

SCRIPT_NAMES = ("FeatureSet", "SimpleSampler", "ModelGraph", "ModelNode", "SequentialMLP",
                "TrainPhase", "EvalPhase", "Experiment", "AppliedLoss", "Optimizer")

CODE = """
import json, sys
def snapshot():
    mine = sorted(m for m in sys.modules if m == "modjax" or m.startswith("modjax."))
    return {{"heavy": [m for m in {heavy!r} if m in sys.modules],
             "observe": [m for m in mine if m.startswith(("modjax.observe.", "modjax.viz.",
                                                          "modjax.bridge."))],
             "modjax": mine}}
import modjax
bare = snapshot()
for name in {names!r}:
    getattr(modjax, name)
script = snapshot()
print(json.dumps({{"bare": bare, "script": script}}))
"""


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_modjax_loads_nothing_until_a_name_is_used():
    got = run(CODE.format(heavy=HEAVY, names=SCRIPT_NAMES))
    assert got["bare"] == {"heavy": [], "observe": [], "modjax": ["modjax", "modjax._lazy"]}
    # a training script's names need jax, optax and Arrow, and nothing heavier
    assert set(got["script"]["heavy"]) == {"jax", "optax", "pyarrow"}
    assert got["script"]["observe"] == []
    # of the store, only the config registry (and LoadReport, a small record type) load
    io = [m for m in got["script"]["modjax"] if m.startswith("modjax.io")]
    assert io == ["modjax.io", "modjax.io.registry", "modjax.io.reports"]


LATER = """
import sys
import modjax
from modjax import TrainPhase
from modjax.io import LoadReport, load_pytree, migrate_checkpoint, register, save_pytree
from modjax.observe import Observer, Trend, plot_html, write_log
assert "plot_html" in dir(modjax.observe) and "save_pytree" in dir(modjax.io)
print("ok", "modjax.observe.plots" in sys.modules, "orbax.checkpoint" in sys.modules)
"""


def test_every_lazy_name_still_imports():
    out = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "True", "False"]
