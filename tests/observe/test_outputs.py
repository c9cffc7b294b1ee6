"""plot_html / export_trends / write_log / format_duration outputs."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re

import numpy as np
import pytest

from modjax.errors import LabelPathError
from modjax.observe import Observer, Trend, export_trends, format_duration, write_log
from modjax.observe.plots import nice_ticks, plot_html, plot_timings_html


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def trained() -> Observer:
    clock = FakeClock()
    obs = Observer(tag_groups={"head": ["head_0", "head_1"]}, name="model", clock=clock)
    obs.mark_start()
    for e in range(6):
        clock.t += 2.0 if e == 0 else 1.0
        obs.record("loss", 1.0 / (e + 1))
        obs.record("acc", 0.5 + 0.05 * e)
        obs.collect("head", values={"head_0": float(e), "head_1": -float(e)})
        obs.flush()
    obs.record("late", 3.0)  # a tag first flushed at epoch 7 only
    clock.t += 1.0
    obs.flush()
    return obs


@pytest.mark.parametrize(
    "seconds,text",
    [(0.0, "0ms"), (0.042, "42ms"), (0.9996, "999ms"), (1.0, "1.0s"), (1.23, "1.2s"),
     (59.99, "59.9s"), (60.0, "1m00s"), (125.0, "2m05s"), (3599.6, "1h00m00s"),
     (3725.0, "1h02m05s"), (-3.0, "0ms"), (float("nan"), "?")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_export_trends_csv_aligns_epochs(trained, tmp_path):
    p = tmp_path / "metrics.csv"
    trained.export_trends(p, "loss", "head", "late")
    rows = list(csv.reader(p.open()))
    assert rows[0] == ["epoch", "loss", "head_0", "head_1", "late"]
    assert [r[0] for r in rows[1:]] == [str(e) for e in range(1, 8)]
    # full precision: values round-trip exactly
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:7]],
                                  trained.trend("loss").values())
    assert rows[3][2:4] == ["2.0", "-2.0"]
    assert rows[7] == ["7", "", "", "", "3.0"]
    assert rows[1][4] == ""
    # no tags: every tag with history, in first-flush order
    trained.export_trends(p)
    assert next(csv.reader(p.open())) == ["epoch", "loss", "acc", "head_0", "head_1", "late"]


def test_export_errors_name_the_tag_and_leave_no_file(trained, tmp_path):
    p = tmp_path / "m.csv"
    with pytest.raises(LabelPathError, match=r"\['los'\].*did you mean \['loss'"):
        trained.export_trends(p, "los")
    assert not p.exists()
    with pytest.raises(FileNotFoundError, match="nope"):
        trained.export_trends(tmp_path / "nope" / "m.csv", "loss")
    with pytest.raises(ValueError, match="no epoch history"):
        Observer().export_trends(p)
    with pytest.raises(ValueError, match=r"duplicate tags \['x'\]"):
        export_trends(p, [Trend([1.0], tag="x"), Trend([2.0], tag="x")])
    assert list(tmp_path.iterdir()) == []  # no temp files left behind


def test_write_log_lines_durations_eta(trained, tmp_path):
    p = tmp_path / "training.log"
    trained.write_log(p, 10, "loss", "acc")
    lines = p.read_text().splitlines()
    assert lines[0].startswith("# modjax training log (model) - ")
    assert lines[1] == "# columns: loss, acc; 10 epochs planned"
    assert lines[2] == "epoch  1  loss=1.0000  acc=0.5000  [2.0s  ETA 18.0s]"
    # epoch 3: mean of (2, 1, 1) s = 4/3 s, 7 epochs left
    assert lines[4] == "epoch  3  loss=0.3333  acc=0.6000  [1.0s  ETA 9.3s]"
    assert lines[8] == "epoch  7  [1.0s  ETA 3.4s]"
    assert len(lines) == 9
    trained.write_log(p)  # no ETA, all tags
    assert p.read_text().splitlines()[2] == (
        "epoch 1  loss=1.0000  acc=0.5000  head_0=0.0000  head_1=0.0000  [2.0s]")


def test_write_log_function_formats(tmp_path):
    p = tmp_path / "x.log"
    write_log(p, [Trend([1e-6, 12345678.0, float("nan")], tag="m")],
              now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert p.read_text().splitlines() == [
        "# modjax training log - 2026-01-02T03:04:05Z", "# columns: m",
        "epoch 1  m=1.0000e-06", "epoch 2  m=1.2346e+07", "epoch 3  m=nan"]
    with pytest.raises(ValueError, match="total_epochs must be >= 0"):
        write_log(p, [Trend([1.0], tag="m")], -1)


def _payload(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="curve-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def test_plot_html_self_contained_with_data(trained, tmp_path):
    p = tmp_path / "training.html"
    trained.plot_html(p, "loss", "head")
    text = p.read_text()
    # offline: no external scripts, styles, images or fonts
    without_ns = text.replace("http://www.w3.org/2000/svg", "")
    assert "http://" not in without_ns and "https://" not in without_ns
    assert "<link" not in text and " src=" not in text and "@import" not in text
    assert text.count("<svg") == 3  # loss, head (overlay), epoch duration
    data = _payload(text)
    names = [pn["name"] for pn in data["panels"]]
    assert names == ["loss", "head", "epoch duration"]
    head = data["panels"][1]["series"]
    assert [s["name"] for s in head] == ["head_0", "head_1"]
    assert head[1]["y"] == [-float(e) for e in range(6)]
    assert data["panels"][2]["series"][0]["y"] == [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert "<title>model: training curves</title>" in text
    # every tagged series is one polyline with one point per epoch
    loss_svg = text[text.index('id="chart-0"'):text.index("</svg>")]
    pts = re.search(r'<polyline[^>]*points="([^"]+)"', loss_svg).group(1).split()
    assert len(pts) == 6
    ys = [float(pt.split(",")[1]) for pt in pts]
    assert ys == sorted(ys)  # falling loss: screen y grows


def test_plot_html_escapes_and_handles_nan(tmp_path):
    p = tmp_path / "x.html"
    plot_html(p, {"<b>&x": [1.0, float("nan"), 3.0, 2.0], "</script>": Trend([1.0], tag="")})
    text = p.read_text()
    assert "<b>&x" not in text and "&lt;b&gt;&amp;x" in text
    data = _payload(text)
    assert data["panels"][0]["series"][0]["y"] == [1.0, None, 3.0, 2.0]
    assert data["panels"][1]["series"][0]["name"] == "</script>"
    # the NaN splits the line: points 1 and (3, 4) -> only one polyline of two points
    chart0 = text[text.index('id="chart-0"'):]
    chart0 = chart0[:chart0.index("</svg>")]
    assert len(re.findall("<polyline", chart0)) == 1


def test_plot_errors(trained, tmp_path):
    with pytest.raises(LabelPathError, match="'nope'"):
        trained.plot_html(tmp_path / "a.html", "nope")
    with pytest.raises(ValueError, match="panel 'e' has no data"):
        plot_html(tmp_path / "a.html", {"e": []})
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_html(tmp_path / "a.html", [])
    with pytest.raises(TypeError, match="item 0"):
        plot_html(tmp_path / "a.html", [3.0])
    assert not (tmp_path / "a.html").exists()


def test_timing_outputs(tmp_path):
    obs = Observer()
    for e in range(3):
        obs.record_timing("enc", 0.001 * (e + 1), 0.003 * (e + 1))
        obs.flush_timings()
    obs.export_timing_trends(tmp_path / "t.csv")
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0] == ["epoch", "enc"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], [0.002, 0.004, 0.006])
    obs.plot_timings_html(tmp_path / "t.html", "enc")
    text = (tmp_path / "t.html").read_text()
    assert "node timings" in text and _payload(text)["panels"][0]["name"] == "enc"
    plot_timings_html(tmp_path / "u.html", [obs.timing_trend("enc")])
    assert ">s</text>" in (tmp_path / "u.html").read_text()  # y-axis unit
    with pytest.raises(ValueError, match="no timing history"):
        Observer().plot_timings_html(tmp_path / "v.html")


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(-3.2, 7.9, 5) == [-2.0, 0.0, 2.0, 4.0, 6.0]
    assert nice_ticks(1, 30, 6) == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(float("nan"), 1.0)


def test_plot_html_log_axis(trained, tmp_path):
    p = tmp_path / "log.html"
    trained.plot_html(p, "loss", "acc", log_y=["loss"])
    text = p.read_text()
    assert text.count("(log scale)") == 1
    chart0 = text[text.index('id="chart-0"'):]
    chart0 = chart0[:chart0.index("</svg>")]
    pts = re.search(r'<polyline[^>]*points="([^"]+)"', chart0).group(1).split()
    ys = np.array([float(pt.split(",")[1]) for pt in pts])
    logv = np.log10(trained.trend("loss").values())
    # screen y is an affine function of log10(value): residuals of a line fit vanish
    fit = np.polyfit(logv, ys, 1)
    assert fit[0] < 0
    np.testing.assert_allclose(np.polyval(fit, logv), ys, atol=0.02)
    # decade tick labels
    assert ">1</text>" in chart0 and ">0.2</text>" in chart0
    with pytest.raises(ValueError, match=r"log_y names \['lss'\]"):
        trained.plot_html(p, "loss", log_y=["lss"])
    with pytest.raises(ValueError, match="'z'.*no positive value"):
        plot_html(p, {"z": [0.0, -1.0]}, log_y=True)
