"""Flow constructs against hand-written JAX: values and gradients."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import Linear
from modjax.flow import (
    Add,
    ArgmaxSelector,
    Cat,
    FixedSelector,
    FlowBuilder,
    LearnedHalt,
    Mean,
    Reshape,
    SigmoidRouter,
    SoftmaxRouter,
    StateAdd,
    ThresholdHalt,
)
from modjax.graph.models import FunctionModel

X = jax.random.normal(jax.random.key(1), (5, 4))


def lin(p, x):
    return x @ p["kernel"] + p["bias"]


def init(g, shape=(4,)):
    return g.init(jax.random.key(0), shape)


def test_chain_tags_and_capture_match_hand_written():
    g = FlowBuilder.from_(Linear(8)).tag("hidden").through(Linear(3)).tag("out").build()
    params, state = init(g)
    y, _, cap = g.apply(params, state, X, capture=["hidden"])
    h = lin(params["hidden"], X)
    chex.assert_trees_all_close(cap["hidden"], h)
    chex.assert_trees_all_close(y, lin(params["out"], h))
    assert set(cap) == {"hidden"}  # only what was asked for
    assert g.output_shape == (3,) and g.input_shape == (4,)


def test_split_merge_and_residual():
    g = (FlowBuilder.from_(Linear(6)).tag("h")
         .split(Linear(6), Linear(6), Linear(6)).tag_group("head").merge(Mean())
         .also(Linear(6)).tag("res")
         .split(Linear(2), Linear(1)).merge(Cat(-1))
         .build())
    p, s = init(g)
    y, _ = g.apply(p, s, X)
    h = lin(p["h"], X)
    m = sum(lin(p[f"head_{i}"], h) for i in range(3)) / 3
    r = m + lin(p["res"], m)
    ids = [e.id for e in g.entries]
    want = jnp.concatenate([lin(p[ids[-3]], r), lin(p[ids[-2]], r)], axis=-1)
    chex.assert_trees_all_close(y, want, atol=1e-6)
    assert y.shape == (5, 3)
    assert g.tag_group("head") == ("head_0", "head_1", "head_2")


def test_gate_value_and_gradient_match_hand_written_mixture():
    g = (FlowBuilder.from_(Linear(4)).tag("ctx").through(Linear(4)).tag("x")
         .gate(SoftmaxRouter(4, 2), Linear(4), Linear(4)).using("ctx").tag("moe")
         .build())
    p, s = init(g)

    def hand(p):
        ctx = lin(p["ctx"], X)
        x = lin(p["x"], ctx)
        pm = p["moe"]
        w = jax.nn.softmax(lin(pm["router"], x + ctx), axis=-1)
        return w[:, :1] * lin(pm["expert_0"], x) + w[:, 1:] * lin(pm["expert_1"], x)

    def loss_flow(p):
        return jnp.sum(g.apply(p, s, X)[0] ** 2)

    chex.assert_trees_all_close(jax.jit(lambda p: g.apply(p, s, X)[0])(p), jax.jit(hand)(p),
                                atol=1e-6)
    chex.assert_trees_all_close(jax.jit(jax.grad(loss_flow))(p),
                                jax.jit(jax.grad(lambda p: jnp.sum(hand(p) ** 2)))(p), atol=1e-5)


def test_sigmoid_router_weights_are_independent():
    g = FlowBuilder.from_(Linear(4)).gate(SigmoidRouter(4, 2), Linear(4), Linear(4)).build()
    p, s = init(g)
    ids = [e.id for e in g.entries]
    x = lin(p[ids[0]], X)
    pm = p[ids[1]]
    w = jax.nn.sigmoid(lin(pm["router"], x))
    want = w[:, :1] * lin(pm["expert_0"], x) + w[:, 1:] * lin(pm["expert_1"], x)
    chex.assert_trees_all_close(g.apply(p, s, X)[0], want, atol=1e-6)


def _counting_switch(counter):
    def branch(tag, scale):
        def apply_fn(params, x):
            jax.debug.callback(lambda: counter.append(tag))
            return x * scale + params["b"]
        return FunctionModel(lambda k, shape: {"b": jnp.zeros(shape)}, apply_fn)
    return branch


def test_switch_runs_only_the_selected_branch_and_grads_only_it():
    calls: list[str] = []
    branch = _counting_switch(calls)
    g = (FlowBuilder.from_(Linear(4))
         .switch(FixedSelector(1), branch("a", 2.0), branch("b", 3.0), branch("c", -1.0))
         .tag("sw").build())
    p, s = init(g)
    fn = jax.jit(lambda p, x: g.apply(p, s, x)[0])
    jaxpr = str(jax.make_jaxpr(lambda p, x: g.apply(p, s, x)[0])(p, X))
    assert "cond[" in jaxpr  # a real XLA conditional, not a select over all branches
    y = fn(p, X)
    jax.effects_barrier()
    assert calls == ["b"]
    h = lin(p["Linear_0"], X)
    chex.assert_trees_all_close(y, h * 3.0 + p["sw"]["branch_1"]["b"])
    grads = jax.grad(lambda p: jnp.sum(g.apply(p, s, X)[0]))(p)
    chex.assert_trees_all_equal(grads["sw"]["branch_0"]["b"], jnp.zeros(4))
    chex.assert_trees_all_equal(grads["sw"]["branch_2"]["b"], jnp.zeros(4))
    chex.assert_trees_all_close(grads["sw"]["branch_1"]["b"], jnp.full((4,), 5.0))


def test_argmax_selector_picks_highest_mean_logit():
    g = FlowBuilder.from_(Linear(4)).switch(ArgmaxSelector(4, 2), Linear(4), Linear(4)).build()
    p, s = init(g)
    ids = [e.id for e in g.entries]
    h = lin(p[ids[0]], X)
    idx = int(jnp.argmax(lin(p[ids[1]]["router"], h).mean(0)))
    chex.assert_trees_all_close(g.apply(p, s, X)[0], lin(p[ids[1]][f"branch_{idx}"], h))


def test_loop_for_is_scan_with_bptt():
    g = FlowBuilder.from_(Linear(4)).tag("enc").loop(Linear(4)).for_(3).tag("loop").build()
    p, s = init(g)

    def hand(p):
        x = lin(p["enc"], X)
        for _ in range(3):
            x = lin(p["loop"]["body"], x)
        return x

    chex.assert_trees_all_close(g.apply(p, s, X)[0], hand(p), atol=1e-5)
    chex.assert_trees_all_close(
        jax.grad(lambda p: jnp.sum(jnp.tanh(g.apply(p, s, X)[0])))(p),
        jax.grad(lambda p: jnp.sum(jnp.tanh(hand(p))))(p), atol=1e-5)


def _doubler():
    return FunctionModel(lambda k, shape: {"a": jnp.ones(())},
                         lambda p, x: 2.0 * p["a"] * x)


def test_until_halts_per_sample_and_differentiates_through_iterations_run():
    # x doubles until max(x) > 10: a sample starting at 1 runs 4 times (16), one at 3 runs 2
    g = FlowBuilder.from_(_doubler()).loop(_doubler()).until(ThresholdHalt(10.0), 8).build()
    p, s = init(g, (1,))
    x = jnp.array([[0.5], [1.5]])  # after from_: [1], [3]
    y = g.apply(p, s, x)[0]
    chex.assert_trees_all_close(y, jnp.array([[16.0], [12.0]]))
    ids = [e.id for e in g.entries]
    grads = jax.grad(lambda p: jnp.sum(g.apply(p, s, x)[0]))(p)
    # d/da of (2a)^k * x0 at a=1 is k * 2^k * x0: k=4 -> 64, k=2 -> 24
    chex.assert_trees_all_close(grads[ids[1]]["body"]["a"], jnp.asarray(64.0 + 24.0))


def test_while_can_skip_the_body_entirely():
    g = FlowBuilder.from_(_doubler()).loop(_doubler()).while_(ThresholdHalt(10.0), 8).build()
    p, s = init(g, (1,))
    y = g.apply(p, s, jnp.array([[6.0], [1.0]]))[0]  # 12 halts at once; 2 -> 4 -> 8 -> 16
    chex.assert_trees_all_close(y, jnp.array([[12.0], [16.0]]))


def test_map_each_batched_and_slices_agree_with_hand_written():
    body = Linear(3)
    each = FlowBuilder.from_(Reshape(2, 2)).map(body).each().build()
    p, s = init(each)
    ids = [e.id for e in each.entries]
    xs = X.reshape(5, 2, 2)
    want = jnp.stack([lin(p[ids[1]]["body"], xs[:, i]) for i in range(2)], axis=1)
    chex.assert_trees_all_close(each.apply(p, s, X)[0], want, atol=1e-6)

    batched = FlowBuilder.from_(Reshape(2, 2)).map(Linear(3)).batched().each().build()
    pb, sb = init(batched)
    chex.assert_trees_all_close(batched.apply(p, sb, X)[0], want, atol=1e-6)

    sl = FlowBuilder.from_(Linear(8)).map(Linear(3)).slices(4).build()
    ps, ss = init(sl)
    ids = [e.id for e in sl.entries]
    h = lin(ps[ids[0]], X)
    want = jnp.concatenate([lin(ps[ids[1]]["body"], h[:, 2 * i:2 * i + 2]) for i in range(4)], -1)
    y = sl.apply(ps, ss, X)[0]
    assert y.shape == (5, 12)
    chex.assert_trees_all_close(y, want, atol=1e-6)


def test_map_over_a_tag_with_broadcast_using():
    g = (FlowBuilder.from_(Reshape(2, 2)).tag("pos")
         .through(Reshape(4)).through(Linear(2)).tag("img")
         .map(FunctionModel(lambda k, s: {}, lambda p, x: x[0] + x[1])).over("pos").using("img")
         .build())
    p, s = init(g)
    img = lin(p["img"], X)
    want = X.reshape(5, 2, 2) + img[:, None, :]
    chex.assert_trees_all_close(g.apply(p, s, X)[0], want, atol=1e-6)


def test_forward_reference_state_add_accumulates_across_calls():
    g = FlowBuilder.from_(Linear(4)).through(StateAdd()).using("memory").tag("memory").build()
    p, s = g.init(jax.random.key(0), (4,), batch_size=5)
    h = lin(p["Linear_0"], X)
    y1, s1 = g.apply(p, s, X)
    chex.assert_trees_all_close(y1, h)               # zeros on the first call: pass-through
    y2, s2 = g.apply(p, s1, X)
    chex.assert_trees_all_close(y2, 2 * h, atol=1e-6)  # previous memory added
    chex.assert_trees_all_close(s2["_refs"]["memory"], 2 * h, atol=1e-6)
    zeroed = g.reset_state(s2)
    chex.assert_trees_all_equal(zeroed["_refs"]["memory"], jnp.zeros((5, 4)))
    # detach_state stops gradients flowing into the previous call's state
    def two_calls(p, detach):
        _, st = g.apply(p, s, X)
        st = g.detach_state(st) if detach else st
        return jnp.sum(g.apply(p, st, X)[0])
    gd = jax.grad(two_calls)(p, True)["Linear_0"]["bias"]
    ga = jax.grad(two_calls)(p, False)["Linear_0"]["bias"]
    chex.assert_trees_all_close(gd, jnp.full((4,), 5.0))
    chex.assert_trees_all_close(ga, jnp.full((4,), 10.0))


def test_forward_reference_state_has_fixed_shape_inside_scan():
    g = FlowBuilder.from_(Linear(4)).through(StateAdd()).using("m").tag("m").build()
    p, s = g.init(jax.random.key(0), (4,), batch_size=5)

    def step(st, x):
        y, st = g.apply(p, st, x)
        return st, y.sum()
    st, _ = jax.lax.scan(step, s, jnp.stack([X, X, X]))
    chex.assert_trees_all_close(st["_refs"]["m"], 3 * lin(p["Linear_0"], X), atol=1e-5)


def test_auxiliary_inputs_by_name():
    g = (FlowBuilder.from_(Linear(3)).tag("image").input("ctx")
         .through(Add()).using("ctx").build(input_shape=((4,), (3,))))
    p, s = g.init(jax.random.key(0), ((4,), (3,)))
    ctx = jnp.ones((5, 3))
    chex.assert_trees_all_close(g.apply(p, s, (X, ctx))[0], lin(p["image"], X) + 1.0)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        g.apply(p, s, X)


def test_graph_as_module_step_in_another_flow():
    inner = FlowBuilder.from_(Linear(4)).tag("h").through(Linear(4)).build()
    outer = FlowBuilder.from_(Linear(4)).through(inner).through(Linear(2)).build()
    p, s = init(outer)
    ids = [e.id for e in outer.entries]
    assert ids[1] == "Graph_0"
    x = lin(p[ids[0]], X)
    x = lin(p[ids[1]]["Linear_0"], lin(p[ids[1]]["h"], x))
    chex.assert_trees_all_close(outer.apply(p, s, X)[0], lin(p[ids[2]], x), atol=1e-6)


def test_merge_modules_directly():
    a, b = jnp.ones((2, 3)), 3 * jnp.ones((2, 3))
    chex.assert_trees_all_equal(Add().apply({}, {}, (a, b))[0], 4 * a)
    chex.assert_trees_all_equal(Mean().apply({}, {}, (a, b))[0], 2 * a)
    assert Cat(1).apply({}, {}, (a, b))[0].shape == (2, 6)
    with pytest.raises(ValueError, match="batch axis"):
        Cat(0)
    with pytest.raises(ValueError, match=r"Add needs equal input shapes, got input 0 \(3,\), input 1 \(4,\)"):
        Add().apply({}, {}, (a, jnp.ones((2, 4))))


def test_config_round_trip_of_every_node_kind():
    import json

    from modjax.flow import Graph
    g = (FlowBuilder.from_(Linear(4)).tag("ctx").input("aux")
         .split(Linear(4), Linear(4)).tag_group("h").merge(Add())
         .also(Linear(4))
         .gate(SoftmaxRouter(None, 2), Linear(4), Linear(4)).using("aux")
         .switch(FixedSelector(0), Linear(4), Linear(4))
         .loop(Linear(4)).while_(ThresholdHalt(3.0), 2)
         .through(Reshape(2, 2)).map(Linear(2)).batched().each()
         .through(Reshape(4)).map(Linear(1)).slices(2)
         .through(StateAdd()).using("mem").tag("mem")
         .internal("ctx")
         .build(input_shape=((4,), (4,))))
    cfg = json.loads(json.dumps(g.get_config()))
    g2 = Graph.from_config(cfg)
    assert g2.structural_hash() == g.structural_hash()
    assert g2.internal_tags() == {"ctx"} and g2.tag_group("h") == ("h_0", "h_1")
    g2.set_variables(g.variables)
    xs = (X, jnp.ones((5, 4)))
    v = g.variables
    chex.assert_trees_all_close(g2.apply(v["params"], v["state"], xs)[0],
                                g.apply(v["params"], v["state"], xs)[0])


# ------------------------------------------------------------------ loops vs hand-written

def jj(fn):
    """jit: one compile per check instead of op-by-op dispatch of every primitive."""
    return jax.jit(fn)


def jjgrad(fn):
    return jax.jit(jax.grad(fn))

XP = jnp.abs(X) + 0.1  # positive, so ``x * a + b`` grows and samples halt at different steps


def _scale_in():
    return FunctionModel(lambda k, shape: {"s": jnp.ones(shape)}, lambda p, x: x * p["s"])


def _grow():
    return FunctionModel(lambda k, shape: {"a": jnp.full(shape, 1.5), "b": jnp.full(shape, 0.1)},
                         lambda p, x: x * p["a"] + p["b"])


def _hand_halting_loop(p_in, p_body, halt, n, mode):
    """The bounded loop written directly: per-sample done mask, halted samples keep x."""
    x = XP * p_in["s"]
    done = jnp.zeros((x.shape[0],), bool)
    runs = jnp.zeros((x.shape[0],), jnp.int32)
    for _ in range(n):
        if mode == "while":
            done = done | halt(x)
        runs = runs + (~done)
        x = jnp.where(done[:, None], x, x * p_body["a"] + p_body["b"])
        if mode == "until":
            done = done | halt(x)
    return x, runs


@pytest.mark.parametrize("mode", ["while", "until"])
def test_halting_loops_value_and_gradient_match_hand_written(mode):
    n = 6
    fb = FlowBuilder.from_(_scale_in()).tag("in").loop(_grow())
    g = (fb.while_ if mode == "while" else fb.until)(ThresholdHalt(3.0), n).tag("loop").build()
    p, s = init(g)

    def halt(x):
        return x.max(axis=1) - 3.0 > 0

    def hand(p):
        return _hand_halting_loop(p["in"], p["loop"]["body"], halt, n, mode)[0]

    runs = jj(lambda p: _hand_halting_loop(p["in"], p["loop"]["body"], halt, n, mode)[1])(p)
    assert len(set(np.asarray(runs).tolist())) > 1  # samples really stop at different steps
    chex.assert_trees_all_close(jj(lambda p: g.apply(p, s, XP)[0])(p), jj(hand)(p), rtol=1e-6)
    chex.assert_trees_all_close(
        jjgrad(lambda p: jnp.sum(g.apply(p, s, XP)[0] ** 2))(p),
        jjgrad(lambda p: jnp.sum(hand(p) ** 2))(p), rtol=1e-5)


def test_learned_halt_gradients_match_hand_written_until_loop():
    n = 4
    g = (FlowBuilder.from_(Linear(4)).tag("enc").loop(Linear(4)).until(LearnedHalt(4), n)
         .tag("loop").build())
    p, s = init(g)

    def hand(p):
        x = lin(p["enc"], X)
        done = jnp.zeros((X.shape[0],), bool)
        for _ in range(n):
            x = jnp.where(done[:, None], x, lin(p["loop"]["body"], x))
            done = done | (lin(p["loop"]["cond"], x)[:, 0] > 0)
        return x

    chex.assert_trees_all_close(jj(lambda p: g.apply(p, s, X)[0])(p), jj(hand)(p), atol=1e-6)
    grads = jjgrad(lambda p: jnp.sum(jnp.tanh(g.apply(p, s, X)[0])))(p)
    chex.assert_trees_all_close(grads, jjgrad(lambda p: jnp.sum(jnp.tanh(hand(p))))(p),
                                atol=1e-5)
    # the halting decision is a threshold: no gradient reaches the halt probe
    chex.assert_trees_all_equal(grads["loop"]["cond"],
                                jax.tree.map(jnp.zeros_like, p["loop"]["cond"]))


def test_loop_body_reads_a_using_reference_every_iteration():
    step = FunctionModel(lambda k, s: {"w": jnp.full(s[0], 0.5)},
                         lambda p, x: x[0] * p["w"] + x[1])
    g = (FlowBuilder.from_(Linear(4)).tag("ctx").through(Linear(4)).tag("h")
         .loop(step).for_(3).using("ctx").tag("loop").build())
    p, s = init(g)

    def hand(p):
        ctx = lin(p["ctx"], X)
        h = lin(p["h"], ctx)
        for _ in range(3):
            h = h * p["loop"]["body"]["w"] + ctx
        return h

    chex.assert_trees_all_close(jj(lambda p: g.apply(p, s, X)[0])(p), jj(hand)(p), atol=1e-6)
    chex.assert_trees_all_close(jjgrad(lambda p: jnp.sum(g.apply(p, s, X)[0] ** 2))(p),
                                jjgrad(lambda p: jnp.sum(hand(p) ** 2))(p), rtol=1e-5)


# ------------------------------------------------------------------ switch/split with using
def test_switch_router_reads_using_tag():
    g = (FlowBuilder.from_(Linear(4)).tag("features").through(Linear(4)).tag("h")
         .switch(ArgmaxSelector(4, 3), Linear(4), Linear(4), Linear(4)).using("features")
         .tag("sw").build())
    p, s = init(g)
    feats = lin(p["features"], X)
    h = lin(p["h"], feats)
    idx = int(jnp.argmax(lin(p["sw"]["router"], h + feats).mean(0)))  # router sees the sum
    chex.assert_trees_all_close(jj(lambda p: g.apply(p, s, X)[0])(p),
                                lin(p["sw"][f"branch_{idx}"], h), atol=1e-6)
    grads = jjgrad(lambda p: jnp.sum(g.apply(p, s, X)[0]))(p)
    for i in range(3):
        nonzero = bool(jnp.any(grads["sw"][f"branch_{i}"]["kernel"] != 0))
        assert nonzero == (i == idx), i  # only the chosen branch gets gradient


def test_using_after_split_feeds_every_branch():
    def mix(scale):
        return FunctionModel(lambda k, s: {}, lambda p, x: x[0] * scale + x[1])
    g = (FlowBuilder.from_(Linear(4)).tag("ctx").through(Linear(4)).tag("h")
         .split(mix(2.0), mix(-1.0)).using("ctx").merge(Cat(-1)).build())
    p, s = init(g)
    ctx = lin(p["ctx"], X)
    h = lin(p["h"], ctx)
    chex.assert_trees_all_close(g.apply(p, s, X)[0],
                                jnp.concatenate([2 * h + ctx, -h + ctx], -1), atol=1e-6)


# ------------------------------------------------------------------ maps: lax.map vs vmap
def test_map_each_is_a_sequential_scan_and_batched_is_vmap_with_equal_gradients():
    each = FlowBuilder.from_(Reshape(2, 2)).map(Linear(3)).each().tag("m").build()
    batched = FlowBuilder.from_(Reshape(2, 2)).map(Linear(3)).batched().each().tag("m").build()
    p, s = init(each)
    _, sb = init(batched)

    def primitives(g, st):
        jaxpr = jax.make_jaxpr(lambda p: g.apply(p, st, X)[0])(p)
        return {str(eqn.primitive) for eqn in jaxpr.jaxpr.eqns}

    assert "scan" in primitives(each, s)          # lax.map lowers to a scan
    assert "scan" not in primitives(batched, sb)  # vmap: one batched matmul

    def hand(p):
        xs = X.reshape(5, 2, 2)
        return jnp.stack([lin(p["m"]["body"], xs[:, i]) for i in range(2)], axis=1)

    want = jjgrad(lambda p: jnp.sum(jnp.sin(hand(p))))(p)
    for g, st in ((each, s), (batched, sb)):
        chex.assert_trees_all_close(
            jjgrad(lambda p, g=g, st=st: jnp.sum(jnp.sin(g.apply(p, st, X)[0])))(p), want, atol=1e-5)


def test_split_branches_compile_into_one_xla_program():
    g = (FlowBuilder.from_(Linear(4)).split(Linear(4), Linear(4), Linear(4)).merge(Add())
         .build(input_shape=(4,)))
    p, s = g.variables["params"], g.variables["state"]
    compiled = jax.jit(lambda p, x: g.apply(p, s, x)[0]).lower(p, X).compile()
    text = compiled.as_text()
    assert text.count("ENTRY") == 1
    assert len([e for e in g.entries if e.level == 1]) == 3  # the three branches share a level
