"""Trend / TrendGroup statistics against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modjax.observe import Trend, TrendGroup

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=40), st.integers(min_value=-2, max_value=50))
def test_slope_matches_polyfit(values, window):
    t = Trend(values)
    y = np.asarray(values) if window <= 0 else np.asarray(values)[-window:]
    expected = np.polyfit(np.arange(len(y)), y, 1)[0] if len(y) >= 2 else 0.0
    assert t.slope(window) == pytest.approx(expected, rel=1e-7, abs=1e-7)


def test_summary_statistics_match_numpy():
    rng = np.random.default_rng(1)
    v = rng.normal(size=17)
    t = Trend(v, tag="loss")
    assert len(t) == 17
    np.testing.assert_array_equal(t.values(), v)
    np.testing.assert_array_equal(t.last(4), v[-4:])
    np.testing.assert_array_equal(t.last(100), v)
    assert t.last(0).size == 0
    assert t.latest() == v[-1]
    assert t.min() == v.min() and t.max() == v.max()
    assert t.mean() == pytest.approx(v.mean(), rel=1e-15)
    assert t.argmin() == int(np.argmin(v)) + 1 and t.argmax() == int(np.argmax(v)) + 1
    assert list(t) == v.tolist() and t[3] == v[3]
    assert "loss" in repr(t)


def test_values_are_a_read_only_copy():
    src = np.array([1.0, 2.0])
    t = Trend(src)
    src[0] = 99.0
    assert t.values()[0] == 1.0
    with pytest.raises(ValueError):
        t.values()[0] = 5.0


def test_improving_stalled_converged():
    falling = Trend([5.0, 4.0, 3.0, 2.0, 1.0])
    assert falling.improving(3) and falling.improving(0)
    assert not Trend([1.0, 2.0, 3.0]).improving(0)
    flat = Trend([3.0, 1.0, 0.5, 0.5001, 0.4999, 0.5])
    assert flat.stalled(4, 1e-3)
    assert not flat.stalled(6, 1e-3)  # whole series still falls
    var4 = float(np.var([0.5, 0.5001, 0.4999, 0.5]))
    assert flat.converged(4, var4 * 1.01) and not flat.converged(4, var4 * 0.99)
    # a window needs that many values before stalled/converged can be claimed
    short = Trend([1.0, 1.0])
    assert not short.stalled(5, 1.0) and not short.converged(5, 1.0)
    assert short.stalled(2, 1.0) and short.converged(0, 1.0)


def test_empty_and_single_are_safe_zero_values():
    for t in (Trend(), Trend([7.0])):
        assert t.slope(0) == 0.0
        assert not t.improving(3) and not t.stalled(0, 1.0) and not t.converged(0, 1.0)
    e = Trend()
    assert e.latest() == 0.0 and e.min() == 0.0 and e.max() == 0.0 and e.mean() == 0.0
    assert len(e) == 0 and e.argmin() == 0
    nan = Trend([1.0, float("nan"), 0.5])
    assert not nan.improving(0)  # a diverged series is not "improving"


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"1-D.*\(2, 2\)"):
        Trend(np.ones((2, 2)))
    with pytest.raises(ValueError, match="'loss': 1 epoch numbers for 2 values"):
        Trend([1.0, 2.0], tag="loss", epochs=[1])
    with pytest.raises(TypeError, match="Trend"):
        TrendGroup([[1.0, 2.0]])


def test_trend_group_queries():
    a = Trend([4.0, 3.0, 2.0, 1.0], tag="head_0")
    b = Trend([1.0, 1.0, 1.0, 1.0], tag="head_1")
    c = Trend([1.0, 2.0, 4.0, 8.0], tag="head_2")
    g = TrendGroup([a, b, c])
    np.testing.assert_allclose(g.slopes(0), [np.polyfit(range(4), t.values(), 1)[0]
                                             for t in (a, b, c)], atol=1e-12)
    assert g.mean_slope(0) == pytest.approx(np.mean(g.slopes(0)))
    assert g.mean_slope(2) == pytest.approx(np.mean([-1.0, 0.0, 4.0]))
    assert g.any_improving(0) and not g.all_improving(0)
    assert TrendGroup([a, a]).all_improving(0)
    assert g.any_stalled(4, 1e-6) and not g.all_stalled(4, 1e-6)
    assert g.any_converged(4, 1e-6) and not g.all_converged(4, 1e-6)
    assert g["head_2"] is c and g[0] is a and len(g) == 3 and g[1:].tags == ["head_1", "head_2"]
    assert g.latest() == {"head_0": 1.0, "head_1": 1.0, "head_2": 8.0}
    with pytest.raises(KeyError, match="'head_9'"):
        g["head_9"]
    empty = TrendGroup()
    assert not empty.all_improving(0) and not empty.all_stalled(0, 1) and not empty.any_improving(0)
    assert empty.mean_slope(3) == 0.0 and empty.slopes(3).shape == (0,)


def _np_slope(y: np.ndarray) -> float:
    return float(np.polyfit(np.arange(len(y)), y, 1)[0]) if len(y) >= 2 else 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite, min_size=0, max_size=12), min_size=1, max_size=4),
       st.integers(min_value=0, max_value=14), st.floats(min_value=1e-3, max_value=50.0))
def test_queries_and_group_variants_match_numpy(series, window, tol):
    trends = [Trend(s, tag=f"t{i}") for i, s in enumerate(series)]
    expected = []
    for s in series:
        y = np.asarray(s, dtype=np.float64)
        y = y if window <= 0 else y[-window:]
        slope = _np_slope(y)
        # polyfit and the closed form can round differently when the true slope is ~0
        if len(y) >= 2 and abs(slope) < 1e-9 * max(1.0, float(np.abs(y).max())):
            return
        full = len(y) >= max(window, 2)
        expected.append({
            "slope": slope,
            "improving": len(y) >= 2 and slope < 0,
            "stalled": full and abs(slope) < tol,
            "converged": full and float(np.var(y)) < tol,
            "var": float(np.var(y)) if len(y) else 0.0,
        })
    for t, ex in zip(trends, expected):
        assert t.slope(window) == pytest.approx(ex["slope"], rel=1e-7, abs=1e-9)
        if abs(abs(ex["slope"]) - tol) > 1e-9 * max(1.0, tol):  # away from the boundary
            assert t.stalled(window, tol) == ex["stalled"]
        assert t.improving(window) == ex["improving"]
        if abs(ex["var"] - tol) > 1e-9 * tol:
            assert t.converged(window, tol) == ex["converged"]
    g = TrendGroup(trends)
    np.testing.assert_allclose(g.slopes(window), [ex["slope"] for ex in expected],
                               rtol=1e-7, atol=1e-9)
    assert g.mean_slope(window) == pytest.approx(np.mean([ex["slope"] for ex in expected]),
                                                 rel=1e-7, abs=1e-9)
    assert g.all_improving(window) == all(ex["improving"] for ex in expected)
    assert g.any_improving(window) == any(ex["improving"] for ex in expected)
    assert g.all_converged(window, tol) == all(
        t.converged(window, tol) for t in trends)
    assert g.any_stalled(window, tol) == any(t.stalled(window, tol) for t in trends)
    assert g.all_stalled(window, tol) == all(t.stalled(window, tol) for t in trends)
    assert g.any_converged(window, tol) == any(t.converged(window, tol) for t in trends)
