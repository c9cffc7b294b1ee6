"""``import modjax`` leaves Orbax, tqdm and the plot module for first use."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import modjax
heavy = [m for m in ("orbax.checkpoint", "tqdm", "modjax.observe.plots") if m in sys.modules]
print("loaded:", heavy)
from modjax import TrainPhase
from modjax.io import load_pytree, LoadReport, save_pytree
from modjax.observe import Observer, plot_html
from modjax.io import register, migrate_checkpoint
from modjax.observe import Trend, write_log
assert "plot_html" in dir(modjax) and "save_pytree" in dir(modjax.io)
print("ok", "modjax.observe.plots" in sys.modules)
"""


def test_import_modjax_is_lazy_and_every_name_still_imports():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout
    assert "ok True" in out.stdout
