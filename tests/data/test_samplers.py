"""Samplers produce deterministic index plans; conditions pick valid partners."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from modjax import (
    FeatureSet,
    NSampler,
    PairedSampler,
    SimilarityCondition,
    SimpleSampler,
    TripletSampler,
)
from modjax.data import IndexPlan
from modjax.io.registry import deserialize, serialize


@pytest.fixture
def fs():
    n = 23
    return FeatureSet.from_dict(
        "samp", {"x": np.arange(n, dtype=np.float32), "soh": np.linspace(0.5, 1.0, n),
                 "cell": [f"c{i % 4}" for i in range(n)], "grp": np.arange(n) // 5},
        "x", "soh", ["cell", "grp"])


def test_simple_plan_shapes_mask_weights(fs):
    s = SimpleSampler(5, seed=3, source=fs)
    p = s.plan()
    assert s.roles == ("default",) and s.n_batches == 5
    assert p.indices["default"].shape == (5, 5) and p.indices["default"].dtype == np.int32
    m = p.mask["default"]
    assert m.sum() == 23 and m[-1].tolist() == [True, True, True, False, False]
    assert sorted(p.indices["default"][m].tolist()) == list(range(23))
    np.testing.assert_array_equal(p.weights["default"], m.astype(np.float32))
    dl = SimpleSampler(5, drop_last=True, source=fs).plan()
    assert dl.indices["default"].shape == (4, 5) and dl.mask["default"].all()


def test_simple_deterministic_in_seed_and_epoch(fs):
    a, b = SimpleSampler(4, seed=1, source=fs), SimpleSampler(4, seed=1, source=fs)
    chex.assert_trees_all_equal(a.plan(2), b.plan(2))
    assert not np.array_equal(a.plan(0).indices["default"], a.plan(1).indices["default"])
    assert not np.array_equal(a.plan(0).indices["default"],
                              SimpleSampler(4, seed=2, source=fs).plan(0).indices["default"])
    unshuffled = SimpleSampler(4, shuffle=False, source=fs).plan()
    assert unshuffled.indices["default"].ravel()[:23].tolist() == list(range(23))


def test_state_resume_is_bit_exact(fs):
    s = SimpleSampler(4, seed=7, source=fs)
    s.next_plan()
    state = s.get_state()
    expected = [s.next_plan(), s.next_plan()]
    r = SimpleSampler(4, seed=0, source=fs)
    r.set_state(state)
    assert r.epoch == 1
    chex.assert_trees_all_equal([r.next_plan(), r.next_plan()], expected)


def test_sampler_on_split_view_indexes_within_view(fs):
    view = fs.take(np.arange(10, 20), label="part")
    p = SimpleSampler(3, shuffle=False).bind(view).plan()
    assert p.indices["default"].max() == 9  # positions within the view


def test_sampler_bad_batch_size(fs):
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            SimpleSampler(bad)
    with pytest.raises(ValueError, match=r"batch_size=50 is larger than the 23 samples of "
                                         r"FeatureSet 'samp' with drop_last=True"):
        SimpleSampler(50, drop_last=True, source=fs)
    with pytest.raises(RuntimeError, match="not bound"):
        SimpleSampler(4).plan()


def test_plan_is_a_pytree_and_pads(fs):
    p = SimpleSampler(5, source=fs).plan()
    leaves = jax.tree_util.tree_leaves(p)
    assert len(leaves) == 3
    padded = p.pad_batch_to_multiple(8)
    assert padded.indices["default"].shape == (5, 8)
    assert padded.mask["default"][:, 5:].sum() == 0
    more = p.pad_batches_to(7)
    assert more.n_batches == 7 and more.mask["default"][5:].sum() == 0
    step = jax.tree_util.tree_map(lambda a: a[0], p)
    assert isinstance(step, IndexPlan) and step.indices["default"].shape == (5,)


def test_paired_sampler_respects_conditions(fs):
    s = PairedSampler({"cell": SimilarityCondition()}, 4, seed=0, source=fs)
    assert s.roles == ("anchor", "pair")
    p = s.plan()
    a, b, m = p.indices["anchor"], p.indices["pair"], p.mask["anchor"]
    cells = fs.get_tags("cell")[:, 0]
    assert m.sum() == 23
    assert (cells[a[m]] == cells[b[m]]).all() and (a[m] != b[m]).all()
    np.testing.assert_array_equal(p.weights["pair"][m], 1.0)
    chex.assert_trees_all_equal(s.plan(3), PairedSampler(
        {"cell": SimilarityCondition()}, 4, seed=0, source=fs).plan(3))


def test_paired_weights_linear_and_dissimilar(fs):
    soh = fs.get_targets()[:, 0]
    sim = PairedSampler({"soh": SimilarityCondition(tolerance=0.05, weight_mode="linear",
                                                    max_weight=10.0)}, 8, source=fs)
    p = sim.plan()
    m = p.mask["pair"]
    d = np.abs(soh[p.indices["anchor"][m]] - soh[p.indices["pair"][m]])
    assert (d <= 0.05 + 1e-12).all()
    np.testing.assert_allclose(p.weights["pair"][m], np.clip(0.05 / d, 1, 10), rtol=1e-6)
    dis = PairedSampler({"soh": SimilarityCondition("dissimilar", tolerance=0.3)}, 8, source=fs)
    q = dis.plan()
    mq = q.mask["pair"]
    assert (np.abs(soh[q.indices["anchor"][mq]] - soh[q.indices["pair"][mq]]) > 0.3).all()
    # middle samples have no partner > 0.3 away and are left out
    assert mq.sum() < 23


def test_triplet_and_nsampler(fs):
    t = TripletSampler({"cell": SimilarityCondition()},
                       {"grp": SimilarityCondition("dissimilar")}, 6, seed=1, source=fs)
    assert t.roles == ("anchor", "positive", "negative")
    p = t.plan()
    m = p.mask["anchor"]
    cells, grp = fs.get_tags("cell")[:, 0], fs.get_tags("grp")[:, 0]
    a, pos, neg = (p.indices[r][m] for r in t.roles)
    assert (cells[a] == cells[pos]).all() and (grp[a] != grp[neg]).all()
    n = NSampler({"p1": {"cell": SimilarityCondition()}, "p2": {"grp": SimilarityCondition()}},
                 5, choose_best_only=True, samples_per_anchor=2, source=fs)
    assert n.n_batches == int(np.ceil(46 / 5))


def test_similarity_condition_scores():
    c = SimilarityCondition(tolerance=0.1, weight_mode="exp", max_weight=5.0,
                            allow_fallback=True, min_weight=0.05)
    s = c.score(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.1, 0.5]))
    np.testing.assert_allclose(s, [np.e, 1.0, max(np.exp(1 - 5), 0.05)])
    b = SimilarityCondition(allow_fallback=True).score(np.array(["a", "a"]), np.array(["a", "b"]))
    np.testing.assert_allclose(b, [1.0, 0.1])
    with pytest.raises(ValueError, match="mode 'close'"):
        SimilarityCondition(mode="close")


def test_sampler_configs_round_trip(fs):
    for s in (SimpleSampler(3, seed=4, drop_last=True),
              PairedSampler({"cell": SimilarityCondition(tolerance=0.0)}, 4, seed=2),
              TripletSampler({"cell": SimilarityCondition()},
                             {"grp": SimilarityCondition("dissimilar")}, 6)):
        back = deserialize(serialize(s))
        assert type(back) is type(s) and back.get_config() == s.get_config()
        chex.assert_trees_all_equal(back.bind(fs).plan(1), s.bind(fs).plan(1))


@pytest.mark.parametrize("cond", [
    SimilarityCondition(tolerance=0.05),
    SimilarityCondition("dissimilar", tolerance=0.3, weight_mode="exp", max_weight=3.0),
    SimilarityCondition(tolerance=0.1, weight_mode="linear", max_weight=10.0),
    SimilarityCondition("dissimilar"),
])
def test_sparse_candidates_equal_dense_scores(cond):
    from modjax.data.pairing import build_candidates
    rng = np.random.default_rng(0)
    v = np.round(rng.uniform(0, 1, 300), 2)   # ties and exact tolerance boundaries
    g = rng.integers(0, 4, 300).astype(str)
    conds = {"v": cond, "g": SimilarityCondition()}
    c = build_candidates({"v": v, "g": g}, conds, max_pairs=10**9)
    dense = cond.score(v[:, None], v[None, :]) * conds["g"].score(g[:, None], g[None, :])
    np.fill_diagonal(dense, 0.0)
    for i in range(300):
        cols = c.cols[c.starts[i]:c.starts[i + 1]]
        order = np.argsort(cols)
        np.testing.assert_array_equal(cols[order], np.flatnonzero(dense[i] > 0))
        np.testing.assert_allclose(c.weights[c.starts[i]:c.starts[i + 1]][order],
                                   dense[i][dense[i] > 0])


def test_sparse_and_dense_paths_agree(fs):
    conds = {"soh": SimilarityCondition(tolerance=0.03), "cell": SimilarityCondition()}
    sparse = PairedSampler(conds, 4, seed=0, source=fs)
    dense = PairedSampler(conds, 4, seed=0)
    dense.max_pairs = 0  # force the dense per-epoch path
    dense.bind(fs)
    assert sparse.n_batches == dense.n_batches
    for s in (sparse, dense):
        p = s.plan(0)
        m = p.mask["anchor"]
        soh, cell = fs.get_targets()[:, 0], fs.get_tags("cell")[:, 0]
        a, b = p.indices["anchor"][m], p.indices["pair"][m]
        assert (np.abs(soh[a] - soh[b]) <= 0.03 + 1e-12).all() and (cell[a] == cell[b]).all()
    np.testing.assert_array_equal(np.sort(sparse.plan(0).indices["anchor"][m]),
                                  np.sort(dense.plan(0).indices["anchor"][m]))


def test_draws_follow_weights():
    fs = FeatureSet.from_dict("w", {"x": np.zeros(3), "v": [0.0, 0.1, 0.3]}, "x", None, "v")
    s = PairedSampler({"v": SimilarityCondition(tolerance=1.0, weight_mode="linear",
                                                max_weight=100.0)}, 3, seed=0, source=fs)
    # anchor 0: partner 1 (weight 10) vs partner 2 (weight 3.33): chosen ~ 3:1
    picks = [int(s.plan(e).indices["pair"][s.plan(e).indices["anchor"] == 0][0])
             for e in range(400)]
    frac = picks.count(1) / len(picks)
    assert 0.68 < frac < 0.82


def test_rejection_path_matches_conditions_and_weights(fs):
    conds = {"soh": SimilarityCondition("dissimilar", tolerance=0.1, weight_mode="linear",
                                        max_weight=4.0)}
    lists = PairedSampler(conds, 4, seed=0, source=fs)
    rej = PairedSampler(conds, 4, seed=0)
    rej.max_pairs = 0  # force rejection sampling from the ranges
    rej.bind(fs)
    from modjax.data.pairing import RangeProposal
    assert isinstance(rej._prepared[1].candidates["pair"], RangeProposal)
    assert rej.n_batches == lists.n_batches
    soh = fs.get_targets()[:, 0]
    p = rej.plan(0)
    m = p.mask["pair"]
    d = np.abs(soh[p.indices["anchor"][m]] - soh[p.indices["pair"][m]])
    assert (d > 0.1).all()
    np.testing.assert_allclose(p.weights["pair"][m], np.clip(d / 0.1, 1, 4), rtol=1e-6)


def test_process_slices_partition_each_batch(fs):
    p = SimpleSampler(5, seed=0, source=fs).plan()
    parts = [p.process_slice(i, 3) for i in range(3)]
    assert {q.batch_size for q in parts} == {2}
    joined = np.concatenate([q.indices["default"] for q in parts], axis=1)[:, :5]
    np.testing.assert_array_equal(joined, p.indices["default"])
    assert sum(int(q.mask["default"].sum()) for q in parts) == 23
    with pytest.raises(ValueError, match="process_index 3 is outside 0..2"):
        p.process_slice(3, 3)


def _pairs(p, role="pair"):
    m = p.mask[role]
    return p.indices["anchor"][m], p.indices[role][m], p.weights[role][m]


def test_paired_weight_mode_exp(fs):
    soh = fs.get_targets()[:, 0]
    cond = SimilarityCondition(tolerance=0.05, weight_mode="exp", max_weight=2.0)
    p = PairedSampler({"soh": cond}, 8, seed=1, source=fs).plan()
    a, b, w = _pairs(p)
    d = np.abs(soh[a] - soh[b])
    assert len(a) == 23 and (d <= 0.05 + 1e-12).all()
    np.testing.assert_allclose(w, np.clip(np.exp(1 - d / 0.05), 1.0, 2.0), rtol=1e-6)
    np.testing.assert_allclose(p.weights["anchor"][p.mask["anchor"]], w, rtol=1e-6)


def test_paired_binary_fallback_weights_and_frequencies(fs):
    cells = fs.get_tags("cell")[:, 0]
    s = PairedSampler({"cell": SimilarityCondition(allow_fallback=True)}, 23, seed=0, source=fs)
    assert s.n_batches == 1  # with fallback every anchor has partners
    hits = []
    for e in range(30):
        a, b, w = _pairs(s.plan(e))
        same = cells[a] == cells[b]
        np.testing.assert_array_equal(w, np.where(same, 1.0, 0.1).astype(np.float32))
        assert (a != b).all()
        hits.append(same.mean())
    # a match weighs 1, a fallback 0.1: ~5 matches vs ~17 fallbacks -> P(match) ~ 0.73
    assert 0.62 < np.mean(hits) < 0.84


def test_paired_linear_fallback_clips_to_min_weight(fs):
    soh = fs.get_targets()[:, 0]
    cond = SimilarityCondition(tolerance=0.05, weight_mode="linear", allow_fallback=True,
                               min_weight=0.2, max_weight=3.0)
    for e in range(5):
        a, b, w = _pairs(PairedSampler({"soh": cond}, 23, seed=2, source=fs).plan(e))
        d = np.abs(soh[a] - soh[b])
        with np.errstate(divide="ignore"):
            ratio = 0.05 / d
        want = np.where(d <= 0.05, np.clip(ratio, 1.0, 3.0), np.clip(ratio, 0.2, 0.999))
        np.testing.assert_allclose(w, want, rtol=1e-6)
        assert ((w < 1.0) == (d > 0.05)).all()


def test_choose_best_only_takes_the_nearest(fs):
    soh = fs.get_targets()[:, 0]
    cond = SimilarityCondition(tolerance=1.0, weight_mode="linear", max_weight=1e9)
    s = PairedSampler({"soh": cond}, 6, seed=0, choose_best_only=True, source=fs)
    for e in range(3):
        a, b, _ = _pairs(s.plan(e))
        dist = np.abs(soh[:, None] - soh[None, :])
        np.fill_diagonal(dist, np.inf)
        np.testing.assert_allclose(np.abs(soh[a] - soh[b]), dist[a].min(axis=1), rtol=1e-9)


def test_nsampler_roles_samples_per_anchor_and_weights(fs):
    cells, grp = fs.get_tags("cell")[:, 0], fs.get_tags("grp")[:, 0]
    n = NSampler({"same_cell": {"cell": SimilarityCondition()},
                  "other_grp": {"grp": SimilarityCondition("dissimilar")}},
                 batch_size=10, seed=4, samples_per_anchor=3, source=fs)
    assert n.roles == ("anchor", "same_cell", "other_grp") and n.streams == n.roles
    p = n.plan()
    m = p.mask["anchor"]
    a = p.indices["anchor"][m]
    assert len(a) == 69 and np.bincount(a, minlength=23).tolist() == [3] * 23
    assert (cells[a] == cells[p.indices["same_cell"][m]]).all()
    assert (grp[a] != grp[p.indices["other_grp"][m]]).all()
    np.testing.assert_array_equal(p.weights["anchor"][m], 1.0)
    chex.assert_trees_all_equal(n.plan(5), NSampler(
        {"same_cell": {"cell": SimilarityCondition()},
         "other_grp": {"grp": SimilarityCondition("dissimilar")}},
        batch_size=10, seed=4, samples_per_anchor=3, source=fs).plan(5))


def log_ratio(a, b):
    """Custom metric: relative distance (module level so its import path round-trips)."""
    return np.abs(np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float)))


def test_custom_metric_condition(fs):
    from modjax.errors import ConfigError
    soh = fs.get_targets()[:, 0]
    cond = SimilarityCondition(tolerance=0.05, metric=log_ratio)
    p = PairedSampler({"soh": cond}, 8, seed=0, source=fs).plan()
    a, b, w = _pairs(p)
    assert len(a) == 23
    assert (log_ratio(soh[a], soh[b]) <= 0.05).all() and (w == 1.0).all()
    cfg = cond.get_config()
    assert cfg["metric"] == f"{__name__}:log_ratio"
    with pytest.raises(ConfigError, match="custom metric"):
        SimilarityCondition.from_config(cfg)
    back = SimilarityCondition.from_config(cfg, allow_packaged_code=True)
    assert back.metric is log_ratio


def test_samplers_never_read_feature_data(fs, monkeypatch):
    read = []
    original = FeatureSet._numpy_column

    def spy(self, name):
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(FeatureSet, "_numpy_column", spy)
    SimpleSampler(4, seed=0, source=fs.to_view()).plan(3)
    assert read == []
    PairedSampler({"cell": SimilarityCondition()}, 4, source=fs).plan(0)
    TripletSampler({"cell": SimilarityCondition()}, {"soh": SimilarityCondition("dissimilar")},
                   4, source=fs).plan(1)
    assert set(read) == {"tags.cell.raw", "targets.soh.raw"}  # condition columns only
