"""Open plot_html's page in headless Chromium and check the screenshot shows the curves.

Skips (with the reason) when no Chromium is installed; on Debian/Ubuntu install it with
``apt-get install chromium``, or point ``MODJAX_CHROMIUM`` at a chromium/chrome binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from modjax.observe import Observer

from ._png import read_png

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
          "chrome", "headless_shell")
_BLUE = (31, 119, 180)  # first series colour of plots._PALETTE
_RED = (214, 39, 40)  # second series colour


def _chromium() -> str | None:
    env = os.environ.get("MODJAX_CHROMIUM")
    if env:
        return env
    for n in _NAMES:
        found = shutil.which(n)
        if found:
            return found
    return None


def _mask(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.all(np.abs(img[..., :3].astype(np.int32) - np.array(rgb)) < tol, axis=-1)


def _screenshot(binary: str, html_path, tmp_path) -> np.ndarray:
    png = tmp_path / "shot.png"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           f"--screenshot={png}", "--window-size=1000,700", html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), f"chromium wrote no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return read_png(png)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set MODJAX_CHROMIUM)")
    return binary


def test_training_plot_draws_in_chromium(chromium, tmp_path):
    obs = Observer(tag_groups={"head": ["head_0", "head_1"]})
    rng = np.random.default_rng(0)
    for e in range(30):
        obs.record("loss", float(np.exp(-e / 8) + 0.02 * rng.random()))
        obs.record("head_0", 1.0 / (e + 1))
        obs.record("head_1", 0.2 + 0.02 * e)
        obs.flush()
    page = tmp_path / "training.html"
    obs.plot_html(page, "loss", "head")

    img = _screenshot(chromium, page, tmp_path)
    assert img.shape[:2] == (700, 1000)
    flat = img[..., :3].reshape(-1, 3)
    # not blank: many colours, and a real share of the page differs from the background
    assert len(np.unique(flat, axis=0)) > 50
    assert np.mean(np.any(flat != flat[0], axis=1)) > 0.05

    blue, red = _mask(img, _BLUE), _mask(img, _RED)
    assert blue.sum() > 300, "first series (blue) not drawn"
    assert red.sum() > 100, "second series of the tag-group chart (red) not drawn"
    # first row of charts (below the legends): the loss chart on the left shows a falling
    # curve, so blue pixels go down the screen (y grows) as x grows; head_1 (red, right
    # chart) rises, so its pixels go up the screen
    band = slice(140, 400)
    ys, xs = np.nonzero(blue[band, :490])
    assert len(xs) > 200
    assert np.polyfit(xs, ys, 1)[0] > 0.1
    ys, xs = np.nonzero(red[band, 490:])
    assert len(xs) > 100
    assert np.polyfit(xs, ys, 1)[0] < -0.1


def test_plot_script_runs_in_chromium(chromium, tmp_path):
    """The inline script parses and runs to the end (it tags <html> when done)."""
    obs = Observer()
    for e in range(5):
        obs.record("loss", 1.0 / (e + 1))
        obs.record("acc", 0.1 * e)
        obs.flush()
    page = tmp_path / "p.html"
    obs.plot_html(page, "loss", "acc")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    # two charts plus the epoch-duration chart
    assert 'data-curves-ready="3"' in dom, dom[:500]
