"""Property tests: splits partition the rows; plans cover each row exactly once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modjax import FeatureSet, SimpleSampler
from modjax.context import ExperimentContext


def _fs(n: int, n_groups: int) -> FeatureSet:
    return FeatureSet.from_dict("prop", {"x": np.arange(n, dtype=np.float32),
                                         "g": np.arange(n) % n_groups}, "x", None, "g",
                                register=False)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 200), weights=st.lists(st.integers(1, 10), min_size=1, max_size=4),
       n_groups=st.integers(1, 4), seed=st.integers(0, 2**16), grouped=st.booleans())
def test_split_random_partitions_rows(n, weights, n_groups, seed, grouped):
    with ExperimentContext().activate():
        fs = _fs(n, min(n_groups, n))
        total = sum(weights)
        ratios = {f"s{i}": w / total for i, w in enumerate(weights)}
        parts = fs.split_random(ratios, seed=seed, group_by="g" if grouped else None)
        rows = np.concatenate([v.indices for v in parts.values()])
        np.testing.assert_array_equal(np.sort(rows), np.arange(n))
        if grouped:
            g = fs.get_tags("g")[:, 0]
            owners = [set(g[v.indices]) for v in parts.values()]
            assert sum(len(o) for o in owners) == len(set(g))
        else:
            for name, v in parts.items():
                assert abs(v.n_samples - ratios[name] * n) < 1.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 120), bs=st.integers(1, 40), seed=st.integers(0, 1000),
       epoch=st.integers(0, 50), shuffle=st.booleans())
def test_simple_plan_covers_rows_once(n, bs, seed, epoch, shuffle):
    with ExperimentContext().activate():
        p = SimpleSampler(bs, seed=seed, shuffle=shuffle, source=_fs(n, 1)).plan(epoch)
        idx, m = p.indices["default"], p.mask["default"]
        assert idx.shape == (-(-n // bs), bs)
        np.testing.assert_array_equal(np.sort(idx[m]), np.arange(n))
        assert (idx[~m] == 0).all() and (p.weights["default"][~m] == 0).all()
