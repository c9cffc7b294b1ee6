"""examples/observe_tour.py runs, steers training with trends, and writes its three files."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from .test_plot_chromium import _chromium, _mask, _screenshot

TOUR = Path(__file__).resolve().parents[2] / "examples" / "observe_tour.py"


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("observe_tour", TOUR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("tour")
    return mod.main([str(out)]), out


def test_tour_outputs(tour, capsys):
    obs, out = tour
    n = obs.flush_count()
    assert 10 <= n <= 60
    val = obs.trend("val_loss")
    assert val.latest() < 0.3 * val.values()[0]
    lr = obs.trend("lr").values()
    assert lr[0] == pytest.approx(0.03) and lr[-1] < lr[0]  # the plateau rule fired
    assert np.all(np.diff(lr) <= 0)
    rows = list(csv.reader((out / "metrics.csv").open()))
    assert rows[0] == ["epoch", "grad_norm", "loss", "val_loss", "lr"]
    assert len(rows) == n + 1
    np.testing.assert_array_equal([float(r[3]) for r in rows[1:]], val.values())
    log = (out / "training.log").read_text().splitlines()
    assert len(log) == n + 2 and log[2].startswith("epoch  1  loss=")
    html = (out / "training.html").read_text()
    assert html.count("<svg") == 4  # losses (overlay), grad_norm, lr, epoch duration


def test_tour_html_draws_in_chromium(tour, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set MODJAX_CHROMIUM)")
    img = _screenshot(binary, tour[1] / "training.html", tmp_path)
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 50
    blue, red = _mask(img, (31, 119, 180)), _mask(img, (214, 39, 40))
    assert blue.sum() > 300 and red.sum() > 100  # loss and val_loss curves on the first chart
