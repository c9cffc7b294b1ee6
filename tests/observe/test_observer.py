"""Observer: buffers -> history, tree flush, clock/ETA, timings, state."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modjax.errors import LabelPathError
from modjax.io.registry import deserialize, serialize
from modjax.observe import Observer, Profile, ProfileRecorder
from modjax.observe.profiling import LevelTiming, NodeTiming


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


def test_collect_record_flush_means_and_epochs():
    obs = Observer()
    tagged = [{"loss": jnp.float32(1.0), "acc": 0.5}, {"loss": jnp.float32(3.0), "acc": 0.75}]
    for t in tagged:
        obs.set_tagged(t)
        obs.collect("loss", "acc")
        obs.record("ext", 10.0, 20.0)
    assert obs.collected("loss") == [1.0, 3.0]
    assert obs.collected("ext") == [10.0, 20.0, 10.0, 20.0]
    out = obs.flush()
    assert out == {"loss": 2.0, "acc": 0.625, "ext": 15.0}
    assert obs.collected("loss") is None
    assert obs.flush_count() == 1
    # second epoch: only loss
    obs.record("loss", 4.0)
    assert obs.flush() == {"loss": 4.0}
    np.testing.assert_array_equal(obs.trend("loss").values(), [2.0, 4.0])
    np.testing.assert_array_equal(obs.trend("loss").epochs(), [1, 2])
    np.testing.assert_array_equal(obs.trend("acc").epochs(), [1])
    # an empty flush adds neither an epoch nor a stamp
    assert obs.flush() == {}
    assert obs.flush_count() == 2


def test_flush_selected_tags_keeps_others_buffered():
    obs = Observer()
    obs.record("a", 1.0)
    obs.record("b", 2.0)
    assert obs.flush("a") == {"a": 1.0}
    assert obs.collected("b") == [2.0]
    assert obs.flush() == {"b": 2.0}
    np.testing.assert_array_equal(obs.trend("b").epochs(), [2])


def test_collect_all_tags_when_none_given_and_values_override():
    obs = Observer()
    obs.collect(values={"x": 1.0, "y": np.float64(2.0)})
    assert obs.flush() == {"x": 1.0, "y": 2.0}


def test_collect_errors_name_tag_and_leave_buffers_untouched():
    obs = Observer(name="enc")
    obs.set_tagged({"loss": 1.0, "hidden": jnp.ones((2, 3))})
    with pytest.raises(LabelPathError, match=r"'losss'.*did you mean \['loss'\]"):
        obs.collect("loss", "losss")
    assert obs.collected("loss") is None
    with pytest.raises(ValueError, match=r"'enc'.*'hidden'.*shape \(2, 3\)"):
        obs.collect("loss", "hidden")
    assert obs.collected("loss") is None
    with pytest.raises(LabelPathError, match="no tagged values"):
        Observer().collect("loss")
    with pytest.raises(ValueError, match="at least one value"):
        obs.record("loss")


def test_record_batch_values_weighted_and_masked():
    obs = Observer()
    vals = jnp.array([1.0, 2.0, 3.0, 100.0])
    w = np.array([2, 2, 1, 0])  # last batch fully padded
    obs.record_batch_values("loss", vals, weights=w)
    assert obs.collected("loss") == [1.0, 2.0, 3.0]
    out = obs.flush()
    np.testing.assert_allclose(out["loss"], (2 * 1 + 2 * 2 + 3) / 5)
    with pytest.raises(ValueError, match=r"'loss'.*3 values but 2 weights"):
        obs.record_batch_values("loss", [1.0, 2.0, 3.0], weights=[1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        obs.record_batch_values("loss", [1.0], weights=[-1])
    with pytest.raises(ValueError, match=r"1-D.*\(2, 2\)"):
        obs.record_batch_values("loss", np.ones((2, 2)))
    assert obs.collected("loss") is None


def test_record_batches_matches_manual_loop_and_is_atomic():
    rng = np.random.default_rng(0)
    per_epoch = [rng.normal(size=(5,)).astype(np.float32) for _ in range(3)]
    scan_obs, loop_obs = Observer(), Observer()
    for arr in per_epoch:
        scan_obs.record_batches({"loss": jnp.asarray(arr), "aux": arr * 2})
        scan_obs.flush()
        for v in arr:
            loop_obs.record("loss", float(v))
            loop_obs.record("aux", float(v) * 2)
        loop_obs.flush()
    for tag in ("loss", "aux"):
        # same buffered values -> bit-identical epoch means
        np.testing.assert_array_equal(scan_obs.trend(tag).values(), loop_obs.trend(tag).values())
        np.testing.assert_allclose(scan_obs.trend(tag).values(),
                                   [a.astype(np.float64).mean() * (2 if tag == "aux" else 1)
                                    for a in per_epoch], rtol=1e-12)
    with pytest.raises(ValueError, match=r"'bad'.*shape \(2, 2\)"):
        scan_obs.record_batches({"loss": np.ones(3), "bad": np.ones((2, 2))})
    assert scan_obs.collected("loss") is None


def test_on_flush_and_on_log_hooks(capsys):
    obs = Observer()
    seen = []
    obs.on_flush(seen.append)
    obs.record("loss", 1.0, 2.0)
    obs.flush()
    obs.flush()  # empty: no hook call
    assert seen == [{"loss": 1.5}]
    obs.on_flush(None)
    obs.record("loss", 1.0)
    obs.flush()
    assert len(seen) == 1

    obs.set_tagged({"loss": jnp.float32(0.25), "acc": 0.5, "h": jnp.ones((2,))})
    obs.log("loss", "acc")
    assert capsys.readouterr().err.strip() == "loss: 0.2500 | acc: 0.5000"
    obs.log("h")
    assert "h: float32[2] mean=1.0000" in capsys.readouterr().err
    obs.log(values={"phase": "warmup"})
    assert capsys.readouterr().err.strip() == "phase: 'warmup'"
    logged = []
    obs.on_log(logged.append)
    obs.log()
    assert set(logged[0]) == {"loss", "acc", "h"}
    assert capsys.readouterr().err == ""


def test_tag_groups_expand_everywhere():
    obs = Observer(tag_groups={"head": ["head_0", "head_1"]})
    for e in range(4):
        obs.collect("head", values={"head_0": 4.0 - e, "head_1": 1.0 + e})
        obs.flush("head")
    g = obs.trends("head")
    assert g.tags == ["head_0", "head_1"]
    np.testing.assert_allclose(g.slopes(0), [-1.0, 1.0])
    assert g.any_improving(0) and not g.all_improving(0)
    obs.reset_trend("head")
    assert len(obs.trend("head_0")) == 0
    with pytest.raises(ValueError, match="lists itself"):
        obs.add_tag_group("x", ["x"])
    with pytest.raises(ValueError, match="no members"):
        obs.add_tag_group("x", [])
    with pytest.raises(TypeError, match="'x' members must be a list"):
        obs.add_tag_group("x", "x_0")


def test_clock_elapsed_eta_durations():
    clock = FakeClock()
    obs = Observer(clock=clock)
    assert obs.elapsed() == 0.0 and obs.eta(10) == 0.0 and obs.last_flush_duration() == 0.0
    obs.mark_start()
    clock.tick(2.0)
    obs.record("loss", 1.0)
    obs.flush()
    assert obs.eta(10) == pytest.approx(18.0)
    assert obs.last_flush_duration() == 0.0
    clock.tick(4.0)
    obs.record("loss", 1.0)
    obs.flush()
    assert obs.last_flush_duration() == pytest.approx(4.0)
    assert obs.epoch_durations() == pytest.approx([2.0, 4.0])
    assert obs.eta(10) == pytest.approx(3.0 * 8)
    assert obs.eta(2) == 0.0
    assert obs.eta(10, window=1) == pytest.approx(4.0 * 8)
    clock.tick(1.0)
    assert obs.elapsed() == pytest.approx(7.0)
    assert obs.format_duration(obs.eta(10)) == "24.0s"


def test_tree_flush_dotted_metrics_and_local_cadence():
    root, enc, scan = Observer(name="root"), Observer(name="encoder"), Observer(name="scan")
    root.attach_child("encoder", enc)
    enc.attach_child("scan", scan)
    hook_root, hook_enc = [], []
    root.on_flush(hook_root.append)
    enc.on_flush(hook_enc.append)
    root.record("loss", 1.0)
    root.record("encoder.loss", 0.5)
    root.record_at("encoder.scan.ce", 0.25)
    out = root.flush()
    assert out == {"loss": 1.0, "encoder.loss": 0.5, "encoder.scan.ce": 0.25}
    assert hook_root == [out]
    assert hook_enc == [{"loss": 0.5}]
    assert root.latest_metrics() == out
    assert root.latest_metrics_local() == {"loss": 1.0}
    assert enc.latest_metrics_local(prefix="encoder") == {"encoder.loss": 0.5}
    assert root.trend_at("encoder.scan.ce").values().tolist() == [0.25]
    # the child flushed on its own cadence: the tree flush skips it, no double epoch
    enc.record("loss", 0.1)
    enc.flush_local()
    root.record("loss", 2.0)
    assert root.flush() == {"loss": 2.0}
    assert enc.trend("loss").values().tolist() == [0.5, 0.1]
    assert root.latest_metrics()["encoder.loss"] == 0.1
    # dotted tags flush only that child
    root.record("loss", 3.0)
    root.record("encoder.loss", 0.2)
    assert root.flush("encoder.loss") == {"encoder.loss": 0.2}
    assert root.collected("loss") == [3.0]
    # flush_local does not recurse
    root.record("encoder.loss", 0.3)
    assert root.flush_local() == {"loss": 3.0}
    assert root.collected("encoder.loss") == [0.3]


def test_tree_errors():
    root, enc = Observer(name="root"), Observer()
    root.attach_child("encoder", enc)
    with pytest.raises(LabelPathError, match=r"no child labelled 'encodr'.*\['encoder'\]"):
        root.record_at("encodr.loss", 1.0)
    with pytest.raises(LabelPathError, match="'encodr'"):
        root.trend_at("encodr.loss")
    with pytest.raises(LabelPathError, match="child.tag"):
        root.record_at("loss", 1.0)
    with pytest.raises(ValueError, match="cycle"):
        enc.attach_child("root", root)
    with pytest.raises(ValueError, match="already attached"):
        root.attach_child("encoder", Observer())
    with pytest.raises(ValueError, match="no dots"):
        root.attach_child("a.b", Observer())
    assert root.detach_child("encoder") is enc
    # with no child of that name a dotted tag is an ordinary local tag
    root.record("val.loss", 1.0)
    assert root.flush() == {"val.loss": 1.0}


def test_profile_timings_and_hook():
    obs = Observer()
    assert not obs.profiling
    obs.enable_profiling()
    assert obs.profiling
    with pytest.raises(RuntimeError, match="profiled forward"):
        obs.collect_timings()
    seen = []
    obs.on_profile(seen.append)
    for dt in (0.01, 0.03):
        prof = Profile(2 * dt, (LevelTiming(0, dt, dt, 1),),
                       (NodeTiming("Dense_0", "enc", dt, 0), NodeTiming("Dense_1", "", dt, 1)))
        obs.set_profile(prof)
        obs.collect_timings()
    assert len(seen) == 2 and obs.profile() is seen[-1]
    assert obs.timing("enc") == 0.03
    assert obs.collected_timings("enc") == [0.01, 0.03]
    assert obs.flush_timings() == {"enc": pytest.approx(0.02)}
    assert obs.timing_trend("enc").values().tolist() == [pytest.approx(0.02)]
    assert obs.timing_trends().tags == ["enc"]
    with pytest.raises(LabelPathError, match="'dec'"):
        obs.collect_timings("dec")
    # timings never count as value epochs
    assert obs.flush_count() == 0
    obs.reset_timing_trend()
    assert len(obs.timing_trend("enc")) == 0


def test_profile_recorder_real_arrays():
    rec = ProfileRecorder()
    x = jnp.ones((64, 64))
    with rec.level(0):
        a = rec.node("mm_a", "a", lambda v: v @ v, x)
        rec.node("mm_b", None, lambda v: v + 1, x)
    with rec.level(1):
        rec.node("out", "out", lambda v: v.sum(), a)
    p = rec.finish()
    assert [n.node_id for n in p.nodes] == ["mm_a", "mm_b", "out"]
    assert [n.level for n in p.nodes] == [0, 0, 1]
    assert [lv.num_nodes for lv in p.levels] == [2, 1]
    assert all(n.duration > 0 for n in p.nodes)
    assert p.levels[0].sum_nodes == pytest.approx(p.nodes[0].duration + p.nodes[1].duration)
    assert p.total >= sum(lv.wall_clock for lv in p.levels)
    assert p.tag_timings().keys() == {"a", "out"}
    assert Profile.from_dict(p.to_dict()) == p
    assert "level 0" in p.summary() and "mm_a [a]" in p.summary()
    with pytest.raises(KeyError, match="'zz'"):
        p.node("zz")


def test_state_round_trip_and_atomic_failure():
    clock = FakeClock()
    a = Observer(tag_groups={"h": ["h_0"]}, name="g", clock=clock)
    a.mark_start()
    for e in range(3):
        clock.tick(1.5)
        a.record("loss", 1.0 / (e + 1))
        a.record_timing("enc", 0.01 * (e + 1))
        a.flush()
        a.flush_timings()
    a.record("loss", 9.0)  # mid-epoch buffer
    state = a.get_state()
    b = deserialize(serialize(a))
    assert b.tag_groups == {"h": ("h_0",)} and b.name == "g"
    b.set_state(state)
    np.testing.assert_array_equal(b.trend("loss").values(), a.trend("loss").values())
    np.testing.assert_array_equal(b.timing_trend("enc").values(), a.timing_trend("enc").values())
    assert b.flush_times() == a.flush_times() and b.start_time() == a.start_time()
    assert b.collected("loss") == [9.0]
    assert b.epoch_durations() == pytest.approx([1.5, 1.5, 1.5])
    before = b.get_state()
    bad = dict(state)
    bad["flush_times"] = np.zeros(1)
    with pytest.raises(ValueError, match="epoch 3 but only 1 flush"):
        b.set_state(bad)
    with pytest.raises(ValueError, match="malformed"):
        b.set_state({"values": {}})
    np.testing.assert_array_equal(b.get_state()["flush_times"], before["flush_times"])
    b.reset()
    assert b.flush_count() == 0 and len(b.trend("loss")) == 0


def test_collect_and_log_route_dotted_tags_to_children():
    root, enc = Observer(name="root"), Observer(name="encoder")
    root.attach_child("encoder", enc)
    root.set_tagged({"loss": 1.0})
    enc.set_tagged({"hidden_norm": jnp.float32(2.5), "h": jnp.ones(3)})
    root.collect("loss", "encoder.hidden_norm")
    assert enc.collected("hidden_norm") == [2.5]
    assert root.collected("encoder.hidden_norm") == [2.5]
    logged = []
    root.on_log(logged.append)
    root.log("loss", "encoder.hidden_norm")
    assert list(logged[0]) == ["loss", "encoder.hidden_norm"]
    with pytest.raises(LabelPathError, match=r"'encoder'.*'hidden_nrm'.*\['hidden_norm'"):
        root.collect("loss", "encoder.hidden_nrm")
    with pytest.raises(ValueError, match=r"'encoder'.*'h'.*shape \(3,\)"):
        root.collect("loss", "encoder.h")
    assert root.collected("loss") == [1.0]  # failed collects appended nothing
    assert root.flush() == {"loss": 1.0, "encoder.hidden_norm": 2.5}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(-1e3, 1e3), st.integers(0, 5)), min_size=1,
                         max_size=8), min_size=1, max_size=4))
def test_weighted_epoch_mean_matches_numpy(chunks):
    obs = Observer()
    for chunk in chunks:  # several scan outputs within one epoch
        v, w = zip(*chunk)
        obs.record_batch_values("m", np.array(v), weights=np.array(w))
    v = np.array([x for c in chunks for x, _ in c])
    w = np.array([x for c in chunks for _, x in c], dtype=np.float64)
    out = obs.flush()
    if w.sum() == 0:
        assert out == {}  # every batch was padding: no epoch
    else:
        assert out["m"] == pytest.approx(np.average(v, weights=w), rel=1e-9, abs=1e-9)
        assert obs.flush_count() == 1


def test_state_survives_an_orbax_checkpoint(tmp_path):
    from modjax.io import load_pytree, save_pytree

    a = Observer(name="m")
    for e in range(3):
        a.record("loss", 1.0 / (e + 1))
        a.record_timing("enc", 0.01 * (e + 1))
        a.flush()
    a.flush_timings()
    a.record("loss", 5.0)  # mid-epoch buffer
    save_pytree(tmp_path / "obs", a.get_state())
    b = Observer(name="m")
    b.set_state(load_pytree(tmp_path / "obs"))
    np.testing.assert_array_equal(b.trend("loss").values(), a.trend("loss").values())
    np.testing.assert_array_equal(b.trend("loss").epochs(), [1, 2, 3])
    assert b.timing_trend("enc").values().tolist() == pytest.approx([0.02])
    assert b.collected("loss") == [5.0]
    assert b.flush_times() == a.flush_times() and b.start_time() == a.start_time()
    b.record("loss", 7.0)
    assert b.flush() == {"loss": 6.0}
    np.testing.assert_array_equal(b.trend("loss").epochs(), [1, 2, 3, 4])
