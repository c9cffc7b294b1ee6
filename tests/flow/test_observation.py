"""A flow Graph's observation: Observer delegation, tree flush, *_at paths, profiling, DOT."""

from __future__ import annotations

import os
import stat

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import Linear
from modjax.errors import LabelPathError
from modjax.flow import FlowBuilder, Mean, SoftmaxRouter
from modjax.graph.models import FunctionModel
from modjax.observe import Profile
from modjax.viz import dot, dot_with_profile, svg

X = jax.random.normal(jax.random.key(3), (4, 3))


def mean_of():
    return FunctionModel(lambda k, s: {}, lambda p, x: jnp.mean(x, axis=-1, keepdims=True))


def make():
    enc = (FlowBuilder.from_(Linear(4)).tag("hidden").through(mean_of()).tag("energy")
           .label("encoder").build())
    return (FlowBuilder.from_(enc).through(Linear(4))
            .split(Linear(1), Linear(1)).tag_group("head").merge(Mean()).tag("loss")
            .build(input_shape=(3,)))


def test_collect_record_flush_tree_and_dotted_metrics():
    g = make()
    flushed = []
    g.on_flush(flushed.append)
    losses = []
    for epoch in range(3):
        for b in range(2):
            g(X * (epoch + 1) + b)
            losses.append(float(g.tagged("loss").mean()))
            g.record("loss_mean", losses[-1])
            g.record_at("encoder.aux", float(epoch))
        out = g.flush()
        assert set(out) == {"loss_mean", "encoder.aux"}
    chex.assert_trees_all_close(g.trend("loss_mean").values(),
                                np.array(losses).reshape(3, 2).mean(1))
    chex.assert_trees_all_close(g.trend_at("encoder.aux").values(), np.array([0.0, 1.0, 2.0]))
    assert g.latest_metrics() == {"loss_mean": pytest.approx(np.mean(losses[-2:])),
                                  "encoder.aux": 2.0}
    assert g.child_graph("encoder").latest_metrics_local() == {"aux": 2.0}
    assert g.flush_count() == 3 and len(flushed) == 3
    assert g.trends("loss_mean").tags == ["loss_mean"]


def test_collect_scalar_tags_from_the_last_forward_and_tag_groups():
    enc = FlowBuilder.from_(mean_of()).tag("m").label("encoder").build()
    g = (FlowBuilder.from_(enc).split(mean_of(), mean_of()).tag_group("head").merge(Mean())
         .build(input_shape=(3,)))
    x = jnp.arange(3.0).reshape(1, 3)
    g(x)
    g.collect("head")  # group expands to head_0, head_1
    g.collect_at("encoder.m")
    out = g.flush()
    assert out == {"head_0": 1.0, "head_1": 1.0, "encoder.m": 1.0}
    assert g.trends("head").tags == ["head_0", "head_1"]


def test_at_paths_are_checked_against_the_tree():
    g = make()
    with pytest.raises(LabelPathError, match="decoder"):
        g.record_at("decoder.loss", 1.0)
    with pytest.raises(LabelPathError, match="needs 'child.metric'"):
        g.trend_at("loss")
    with pytest.raises(LabelPathError, match="hiden"):
        g.tagged_at("encoder.hiden")


def test_profiling_per_node_and_level_and_hook():
    g = make()
    assert g.profile() is None
    seen = []
    g.on_profile(seen.append)
    g.enable_profiling()
    y = g(X)
    p = g.profile()
    assert isinstance(p, Profile) and seen == [p]
    assert [n.node_id for n in p.nodes] == [e.id for e in sorted(g.entries, key=lambda e: e.level)]
    assert [lv.index for lv in p.levels] == [0, 1, 2, 3]
    assert p.levels[2].num_nodes == 2  # the two heads run in the same level
    assert all(n.duration >= 0 for n in p.nodes) and p.total >= sum(
        lv.wall_clock for lv in p.levels) * 0.999
    # the profiled forward computes the same values as the jitted one
    g.disable_profiling()
    chex.assert_trees_all_close(g(X), y, atol=1e-6)
    assert g.profile() is p  # disabled: no new profile
    g.enable_profiling()
    g(X)
    g.collect_timings("head")
    g.flush_timings()
    assert len(g.timing_trend("head_0")) == 1
    text = dot_with_profile(g)
    assert "parallelism" in text and "fillcolor=\"#" in text and "level 2" in text


def test_named_scopes_reach_the_compiled_program():
    g = make()
    v = g.variables
    hlo = jax.jit(lambda p, s, x: g.apply(p, s, x)[0]).lower(
        v["params"], v["state"], X).as_text(debug_info=True)
    assert "encoder/hidden" in hlo and "head_1" in hlo
    # every traced equation carries its node's scope: the names reach the jaxpr too
    jaxpr = jax.make_jaxpr(lambda p, s, x: g.apply(p, s, x)[0])(v["params"], v["state"], X)
    scopes = {str(e.source_info.name_stack) for e in jaxpr.jaxpr.eqns}
    assert scopes == {"encoder/hidden", "encoder/energy", "Linear_0", "head_0", "head_1", "loss"}


def test_dot_structure():
    g = (FlowBuilder.from_(Linear(4)).tag("ctx")
         .gate(SoftmaxRouter(4, 2), Linear(4), Linear(4)).using("ctx").tag("moe").build(
             input_shape=(3,)))
    text = dot(g)
    assert text.startswith('digraph "graph" {') and text.rstrip().endswith("}")
    assert 'subgraph "cluster_moe"' in text and '"moe/expert_1"' in text
    assert '"ctx" -> "moe" [style=dashed, label="ctx"]' in text
    assert '"input" -> "ctx"' in text and '"moe" -> "output"' in text
    assert g.dot() == text


def test_svg_needs_graphviz_and_uses_it(tmp_path, monkeypatch):
    g = make()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="Graphviz 'dot' binary"):
        g.svg()
    # a stand-in `dot` that echoes what it got inside an <svg>, to check the plumbing
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "dot"
    fake.write_text("#!/bin/sh\necho '<svg>'; /bin/cat; echo '</svg>'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    out = svg(g, tmp_path / "g.svg")
    assert out.startswith(b"<svg>") and b"digraph" in out
    assert (tmp_path / "g.svg").read_bytes() == out
    g.enable_profiling()
    g(X)
    prof = g.svg_with_profile(tmp_path / "p.svg")
    assert b"cluster_level_2" in prof and b"parallelism" in prof
    assert (tmp_path / "p.svg").read_bytes() == prof
    # a failing `dot` is an error carrying its exit code and stderr
    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2; exit 3\n")
    with pytest.raises(RuntimeError, match=r"exit 3.*syntax error in line 1"):
        g.svg(tmp_path / "bad.svg")
    assert not (tmp_path / "bad.svg").exists()


def test_get_state_set_state_round_trips_variables_and_tree_history():
    g = make()
    g(X)
    g.record("loss", 1.0)
    g.record_at("encoder.aux", 2.0)
    g.flush()
    st = g.get_state()
    g2 = make()
    g2.set_state(st)
    chex.assert_trees_all_equal(g2.variables, g.variables)
    assert g2.latest_metrics() == {"loss": 1.0, "encoder.aux": 2.0}


def test_dot_with_profile_colours_by_time_and_labels_levels():
    from modjax.observe import LevelTiming, NodeTiming, heat_color

    g = make()  # levels: encoder | Linear_0 | head_0, head_1 | loss
    nodes = (NodeTiming("encoder", "", 0.004, 0), NodeTiming("Linear_0", "", 0.001, 1),
             NodeTiming("head_0", "head_0", 0.002, 2), NodeTiming("head_1", "head_1", 0.003, 2),
             NodeTiming("loss", "loss", 0.0005, 3))
    levels = (LevelTiming(0, 0.004, 0.004, 1), LevelTiming(1, 0.001, 0.001, 1),
              LevelTiming(2, 0.0025, 0.005, 2), LevelTiming(3, 0.0005, 0.0005, 1))
    text = dot_with_profile(g, Profile(0.0091, levels, nodes))

    def fill(node_id):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{node_id}" ['))
        return line.split('fillcolor="')[1].split('"')[0]

    # colour = heat_color(duration / slowest); the slowest (the encoder subgraph) is red
    assert heat_color(1.0) == "#c80000"
    assert 'label="encoder [subgraph]\\n4ms"; style=rounded; color="#c80000"' in text
    assert fill("head_1") == heat_color(0.75) == "#c86400"
    assert fill("head_0") == heat_color(0.5) == "#c8c800"
    assert fill("Linear_0") == heat_color(0.25) == "#64c800"
    assert fill("loss") == heat_color(0.125)
    # node durations (sub-millisecond in microseconds), level wall clock and parallelism
    assert 'head_1\\nLinear\\n#head_1\\n(1)\\n3ms"' in text and '\\n500us"' in text
    assert 'label="level 2: 2ms, parallelism 2.00x"' in text
    assert 'label="level 3: 500us"' in text and 'label="output\\n9ms"' in text
    # without a profile the plain DOT has neutral fills and no level clusters
    plain = dot(g)
    assert "cluster_level" not in plain and "#c80000" not in plain
