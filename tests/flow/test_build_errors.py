"""build() errors name the offending step or tag; shape errors name the node."""

from __future__ import annotations

import pytest

from modjax import Linear
from modjax.errors import GraphStructureError, LabelPathError, ShapeMismatchError
from modjax.flow import Add, ArgmaxSelector, FixedSelector, FlowBuilder, Reshape, SoftmaxRouter


def test_open_branches():
    with pytest.raises(GraphStructureError, match=r"2 open branches.*split\(Linear, Linear\)"):
        FlowBuilder.from_(Linear(2)).split(Linear(2), Linear(2)).build()


def test_through_on_a_split_stream():
    with pytest.raises(GraphStructureError, match=r"step 3: through\(Linear\).*split into 2"):
        FlowBuilder.from_(Linear(2)).split(Linear(2), Linear(2)).through(Linear(2)).build()


def test_duplicate_tag():
    with pytest.raises(GraphStructureError, match=r"duplicate tag 'h'.*step 2: tag\('h'\)"):
        FlowBuilder.from_(Linear(2)).tag("h").through(Linear(2)).tag("h").build()


def test_using_an_unknown_tag():
    with pytest.raises(GraphStructureError,
                       match=r"step 2: through\(Add\) \+ step 3: using\('nope'\): using an "
                             r"unknown tag 'nope'"):
        FlowBuilder.from_(Linear(2)).through(Add()).using("nope").build()


def test_tag_group_on_a_single_stream_and_tag_on_a_split():
    with pytest.raises(GraphStructureError, match=r"tag_group\('g'\).*needs a split stream"):
        FlowBuilder.from_(Linear(2)).tag_group("g").build()
    with pytest.raises(GraphStructureError, match=r"tag\('t'\).*use tag_group"):
        FlowBuilder.from_(Linear(2)).split(Linear(2), Linear(2)).tag("t").merge(Add()).build()


def test_router_output_must_match_branch_count():
    with pytest.raises(GraphStructureError, match=r"SoftmaxRouter produces 3 weights.*2 experts"):
        FlowBuilder.from_(Linear(4)).gate(SoftmaxRouter(4, 3), Linear(4), Linear(4)).build()
    with pytest.raises(GraphStructureError, match=r"ArgmaxSelector chooses among 3.*has 2"):
        FlowBuilder.from_(Linear(4)).switch(ArgmaxSelector(4, 3), Linear(4), Linear(4)).build()
    with pytest.raises(GraphStructureError, match=r"selects branch 5.*2 branches"):
        FlowBuilder.from_(Linear(4)).switch(FixedSelector(5), Linear(4), Linear(4)).build()


def test_router_of_unknown_width_checked_at_shape_inference():
    # a plain Linear(3) as router: the count is only known once shapes are resolved
    g = FlowBuilder.from_(Linear(4)).gate(Linear(3), Linear(4), Linear(4)).tag("moe").build()
    with pytest.raises(GraphStructureError, match=r"node 'moe'.*2 experts"):
        g.build((4,))


def test_merge_without_split_and_empty_using():
    with pytest.raises(GraphStructureError, match=r"merge needs a split stream"):
        FlowBuilder.from_(Linear(2)).merge(Add()).build()
    with pytest.raises(GraphStructureError, match=r"using\(\) needs at least one tag"):
        FlowBuilder.from_(Linear(2)).using().build()


def test_bad_module_and_bad_tag_name():
    with pytest.raises(GraphStructureError, match=r"through\(object\).*cannot use object"):
        FlowBuilder.from_(Linear(2)).through(object()).build()
    with pytest.raises(GraphStructureError, match=r"invalid tag 'a.b'"):
        FlowBuilder.from_(Linear(2)).tag("a.b").build()


def test_duplicate_child_labels():
    a = FlowBuilder.from_(Linear(2)).label("enc").build()
    b = FlowBuilder.from_(Linear(2)).label("enc").build()
    with pytest.raises(GraphStructureError, match=r"duplicate child label 'enc'"):
        FlowBuilder.from_(a).through(b).build()


def test_shape_errors_name_the_node():
    g = FlowBuilder.from_(Linear(4)).also(Linear(3)).tag("res").build()
    with pytest.raises(ShapeMismatchError, match=r"node 'res'.*residual"):
        g.build((2,))
    g = FlowBuilder.from_(Linear(4)).loop(Linear(3)).for_(2).tag("lp").build()
    with pytest.raises(ShapeMismatchError, match=r"node 'lp'.*loop body"):
        g.build((2,))
    g = FlowBuilder.from_(Linear(4)).switch(FixedSelector(0), Linear(4), Linear(2)).tag(
        "sw").build()
    with pytest.raises(ShapeMismatchError, match=r"node 'sw'.*same shape"):
        g.build((2,))
    g = FlowBuilder.from_(Reshape(3, -1)).tag("r").build()
    with pytest.raises(ShapeMismatchError, match=r"node 'r'.*Reshape"):
        g.build((4,))
    g = FlowBuilder.from_(Linear(5)).map(Linear(2)).slices(2).tag("m").build()
    with pytest.raises(ShapeMismatchError, match=r"node 'm'.*divisible by 2"):
        g.build((4,))


def test_loop_and_map_argument_errors():
    with pytest.raises(GraphStructureError, match=r"for_\(0\).*at least one iteration"):
        FlowBuilder.from_(Linear(2)).loop(Linear(2)).for_(0).build()
    with pytest.raises(GraphStructureError, match=r"over\('x'\): unknown tag"):
        FlowBuilder.from_(Linear(2)).map(Linear(2)).over("x").build()


def test_capture_of_unknown_tag_names_it():
    g = FlowBuilder.from_(Linear(2)).tag("hidden").build(input_shape=(3,))
    p, s = g.variables["params"], g.variables["state"]
    import jax.numpy as jnp
    with pytest.raises(LabelPathError, match=r"'hiden'.*did you mean \['hidden'\]"):
        g.apply(p, s, jnp.ones((1, 3)), capture=["hiden"])


def test_bad_label_and_unknown_internal_tag():
    with pytest.raises(GraphStructureError, match=r"label\('enc.v2'\)"):
        FlowBuilder.from_(Linear(2)).label("enc.v2").build()
    with pytest.raises(GraphStructureError, match=r"step 3: internal\('hiden'\): unknown tag 'hiden'"):
        FlowBuilder.from_(Linear(2)).tag("hidden").internal("hiden").build()


def test_child_label_clashing_with_a_tag():
    child = FlowBuilder.from_(Linear(2)).label("enc").build()
    with pytest.raises(GraphStructureError, match=r"child label 'enc' is also a tag"):
        FlowBuilder.from_(Linear(2)).tag("enc").through(child).build()
