"""FlowBuilder: a fluent API that reads as data flow and builds a :class:`Graph`.

Mistakes are recorded where they happen and raised by :meth:`FlowBuilder.build` as a
:class:`~modjax.errors.GraphStructureError` naming the step (``step 3: through(Linear)``)
or tag, as goDl's ``Build() (*Graph, error)`` does.
"""

from __future__ import annotations

from typing import Any

from modjax.errors import GraphStructureError
from modjax.graph.flow.branches import FlowBranches
from modjax.graph.flow.graph import Entry, Graph
from modjax.graph.flow.nodes import (
    FlowNode,
    LoopNode,
    MapNode,
    StepNode,
    model_name,
)
from modjax.graph.models.protocol import as_model
from modjax.paths import validate_label

__all__ = ["FlowBuilder", "LoopBuilder", "MapBuilder"]


class _Pending:
    """A node under construction (indices instead of ids until build)."""

    def __init__(self, node: FlowNode, inputs: list[Any], step: str) -> None:
        self.node = node
        self.inputs = inputs          # node indices, or "$in<k>"
        self.using: list[str] = []
        self.tags: list[str] = []
        self.step = step


class FlowBuilder(FlowBranches):
    """Build a flow graph step by step; start with :meth:`from_`.

    Example:
        >>> import jax.numpy as jnp
        >>> from modjax import Linear
        >>> from modjax.flow import FlowBuilder
        >>> from modjax.flow import Add
        >>> g = (FlowBuilder.from_(Linear(8)).tag("hidden")
        ...      .split(Linear(8), Linear(8)).tag_group("head").merge(Add())
        ...      .also(Linear(8))
        ...      .through(Linear(2)).tag("out")
        ...      .build(input_shape=(4,)))
        >>> g(jnp.ones((3, 4))).shape, g.tag_group("head")
        ((3, 2), ('head_0', 'head_1'))
    """

    def __init__(self) -> None:
        self._nodes: list[_Pending] = []
        self._streams: list[int] = []
        self._last: list[int] = []
        self._tags: dict[str, int] = {}
        self._tag_steps: dict[str, str] = {}
        self._tag_groups: dict[str, list[str]] = {}
        self._inputs: list[str] = []
        self._internal: list[tuple[str, str]] = []
        self._label: str | None = None
        self._verbose = False
        self._error: str | None = None
        self._n_steps = 0

    # ---------------------------------------------------------------- helpers
    def _step(self, what: str) -> str:
        self._n_steps += 1
        return f"step {self._n_steps}: {what}"

    def _fail(self, msg: str) -> FlowBuilder:
        if self._error is None:
            self._error = msg
        return self

    def _model(self, m: Any, step: str) -> Any:
        try:
            return as_model(m)
        except TypeError as e:
            self._fail(f"{step}: {e}")
            return None

    def _single(self, step: str) -> int | None:
        if len(self._streams) != 1:
            self._fail(f"{step}: the flow is split into {len(self._streams)} streams; call "
                       "merge(...) first (through/also/gate/switch/loop/map need one stream)")
            return None
        return self._streams[0]

    def _add(self, node: FlowNode, inputs: list[Any], step: str) -> int:
        self._nodes.append(_Pending(node, inputs, step))
        idx = len(self._nodes) - 1
        self._last = [idx]
        return idx

    def _define_tag(self, name: str, idx: int, step: str) -> None:
        try:
            validate_label(name, what="tag")
        except ValueError as e:
            self._fail(f"{step}: {e}")
            return
        if name in self._tags:
            self._fail(f"{step}: duplicate tag {name!r} (already defined at "
                       f"{self._tag_steps[name]})")
            return
        self._tags[name] = idx
        self._tag_steps[name] = step
        self._nodes[idx].tags.append(name)

    # ---------------------------------------------------------------- flow steps
    @classmethod
    def from_(cls, module: Any) -> FlowBuilder:
        """Start a flow at ``module`` (it reads the graph's main input).

        Args:
            module: any model ``as_model`` accepts (modjax models, Flax modules,
                ``(init_fn, apply_fn)`` pairs, another :class:`Graph`).

        Returns:
            A new builder whose single stream is ``module``'s output.

        Example:
            >>> from modjax import Linear
            >>> FlowBuilder.from_(Linear(3)).build(input_shape=(2,)).output_shape
            (3,)
        """
        fb = cls()
        step = fb._step(f"from_({model_name(module)})")
        m = fb._model(module, step)
        if m is not None:
            fb._streams = [fb._add(StepNode(m), ["$in0"], step)]
        return fb

    def through(self, module: Any) -> FlowBuilder:
        """Pass the stream through ``module`` (needs a single stream).

        Args:
            module: the next model on the stream.

        Returns:
            self, for chaining (a split stream is reported by :meth:`build`).

        Example:
            >>> from modjax import Linear
            >>> g = FlowBuilder.from_(Linear(3)).through(Linear(1)).build(input_shape=(2,))
            >>> [e.id for e in g.entries]
            ['Linear_0', 'Linear_1']
        """
        step = self._step(f"through({model_name(module)})")
        src, m = self._single(step), self._model(module, step)
        if src is not None and m is not None:
            self._streams = [self._add(StepNode(m), [src], step)]
        return self

    def tag(self, name: str) -> FlowBuilder:
        """Name the current position so it can be referenced (``using``) or observed.

        Args:
            name: an identifier without dots, unique in the graph; a leading ``_``
                makes it internal (hidden from parent graphs).

        Returns:
            self, for chaining.

        Example:
            >>> from modjax import Linear
            >>> g = FlowBuilder.from_(Linear(3)).tag("hidden").build()
            >>> g.tags
            {'hidden': 'hidden'}
        """
        step = self._step(f"tag({name!r})")
        if len(self._streams) != 1:
            return self._fail(f"{step}: tag on a split stream of {len(self._streams)} branches; "
                              "use tag_group(name) to tag each branch")
        self._define_tag(name, self._streams[0], step)
        return self

    def tag_group(self, name: str) -> FlowBuilder:
        """Tag each branch of a split as ``name_0``, ``name_1``... and register the group.

        Args:
            name: the group name (``trends(name)`` expands it to the member tags).

        Returns:
            self, for chaining.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import Add
            >>> g = (FlowBuilder.from_(Linear(2)).split(Linear(2), Linear(2))
            ...      .tag_group("head").merge(Add()).build())
            >>> g.tag_group("head")
            ('head_0', 'head_1')
        """
        step = self._step(f"tag_group({name!r})")
        if len(self._streams) < 2:
            return self._fail(f"{step}: tag_group needs a split stream (after split(...)); "
                              "use tag(name) on a single stream")
        if name in self._tag_groups:
            return self._fail(f"{step}: duplicate tag group {name!r}")
        members = [f"{name}_{i}" for i in range(len(self._streams))]
        for member, idx in zip(members, self._streams):
            self._define_tag(member, idx, step)
        self._tag_groups[name] = members
        return self

    def using(self, *refs: str) -> FlowBuilder:
        """Wire tagged values as extra inputs of the preceding node(s).

        After ``through``/``merge``/``also`` it targets that node, after ``split`` every
        branch, after ``gate``/``switch`` the router, after ``loop``/``map`` the body.
        A tag defined later is a *forward reference*: the value from the previous call,
        kept in ``state`` (zeros on the first call).

        Args:
            *refs: tag names; the target receives ``(stream, *refs)`` as a tuple.

        Returns:
            self, for chaining (unknown tags are reported by :meth:`build`).

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.flow import Add
            >>> g = (FlowBuilder.from_(Linear(2)).tag("skip").through(Linear(2))
            ...      .through(Add()).using("skip").build(input_shape=(3,)))
            >>> g(jnp.ones((1, 3))).shape
            (1, 2)
        """
        step = self._step(f"using({', '.join(map(repr, refs))})")
        if not refs:
            return self._fail(f"{step}: using() needs at least one tag")
        if not self._last:
            return self._fail(f"{step}: nothing to attach the references to")
        for idx in self._last:
            self._nodes[idx].using.extend(refs)
            self._nodes[idx].step += f" + {step}"
        return self

    def loop(self, body: Any) -> LoopBuilder:
        """Start a loop over ``body``; finish with ``.for_(n)``, ``.while_``, ``.until``.

        Args:
            body: maps the stream to its own shape; a ``using`` after the terminal
                method feeds it the same references every iteration.

        Returns:
            A :class:`LoopBuilder`.

        Example:
            >>> from modjax import Linear
            >>> g = FlowBuilder.from_(Linear(4)).loop(Linear(4)).for_(3).build(input_shape=(2,))
            >>> g.entries[1].node.describe()
            'loop Linear for 3'
        """
        return LoopBuilder(self, body)

    def map(self, body: Any) -> MapBuilder:
        """Start a map of ``body``; finish with ``.each()``, ``.over(tag)``, ``.slices(n)``.

        Args:
            body: the model applied to each element (``using`` refs are broadcast).

        Returns:
            A :class:`MapBuilder`.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import Reshape
            >>> g = (FlowBuilder.from_(Reshape(3, 2)).map(Linear(5)).each()
            ...      .build(input_shape=(6,)))
            >>> g.output_shape
            (3, 5)
        """
        return MapBuilder(self, body)

    def input(self, *names: str) -> FlowBuilder:
        """Declare auxiliary graph inputs, each tagged with its name (read them via ``using``).

        ``apply``/``forward`` then take ``(main, *aux)`` in declaration order.

        Args:
            *names: input names (they become tags).

        Returns:
            self, for chaining.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.flow import Add
            >>> g = (FlowBuilder.from_(Linear(2)).tag("main").input("bias")
            ...      .through(Add()).using("bias").build(input_shape=((3,), (2,))))
            >>> x, bias = jnp.ones((1, 3)), jnp.ones((1, 2))
            >>> y = g((x, bias))
            >>> bool(jnp.allclose(y, g.tagged("main") + 1.0))
            True
        """
        step = self._step(f"input({', '.join(map(repr, names))})")
        if not names:
            return self._fail(f"{step}: input() needs at least one name")
        for name in names:
            self._inputs.append(name)
            idx = len(self._nodes)
            self._nodes.append(_Pending(StepNode(None, passthrough=True),
                                        [f"$in{len(self._inputs)}"], step))
            self._define_tag(name, idx, step)
        return self

    def label(self, name: str) -> FlowBuilder:
        """Label the graph; a labelled graph nested in another becomes a tree child.

        Args:
            name: an identifier without dots (dots separate label paths).

        Returns:
            self, for chaining.

        Example:
            >>> from modjax import Linear
            >>> enc = FlowBuilder.from_(Linear(2)).label("encoder").build()
            >>> FlowBuilder.from_(enc).build().tree_children() == {"encoder": enc}
            True
        """
        try:
            self._label = validate_label(name, what="graph label")
        except ValueError as e:
            self._fail(f"label({name!r}): {e}")
        return self

    def internal(self, *tags: str) -> FlowBuilder:
        """Hide tags from parent graphs (tags starting with ``_`` are internal already).

        Args:
            *tags: tags of this flow (unknown ones are reported by :meth:`build`).

        Returns:
            self, for chaining.

        Example:
            >>> from modjax import Linear
            >>> g = FlowBuilder.from_(Linear(2)).tag("mid").internal("mid").build()
            >>> g.internal_tags()
            {'mid'}
        """
        step = self._step(f"internal({', '.join(map(repr, tags))})")
        self._internal.extend((t, step) for t in tags)
        return self

    def verbose(self, flag: bool = True) -> FlowBuilder:
        """Print the tree and parameter summaries on build (to stderr).

        Args:
            flag: whether to print.

        Returns:
            self, for chaining.

        Example:
            >>> from modjax import Linear
            >>> g = FlowBuilder.from_(Linear(2)).verbose(True).build(input_shape=(3,))
            >>> g.param_summary().splitlines()[0]
            'Total: 8 parameters'
        """
        self._verbose = bool(flag)
        return self

    # ---------------------------------------------------------------- build
    def build(self, input_shape: Any = None, *, seed: int = 0) -> Graph:
        """Finalize the flow into a :class:`Graph`.

        Args:
            input_shape: per-sample input shape; when given (or declared by the first
                module) shapes are resolved now, else on first ``init``/forward.
            seed: seed of the graph's own variables (eager use).

        Raises:
            GraphStructureError: naming the step or tag (open branches, ``through`` on a
                split stream, duplicate tag, unknown ``using`` tag, ``tag_group`` on one
                stream, router/branch count mismatch, duplicate child label...).
        """
        if self._error is not None:
            raise GraphStructureError(self._error)
        if not self._nodes:
            raise GraphStructureError("empty flow: start with FlowBuilder.from_(module)")
        if len(self._streams) != 1:
            raise GraphStructureError(
                f"build: the flow ends with {len(self._streams)} open branches "
                f"({', '.join(self._nodes[i].step for i in self._streams)}); merge them first")
        for tag, step in self._internal:
            if tag not in self._tags:
                raise GraphStructureError(f"{step}: unknown tag {tag!r}; tags: {sorted(self._tags)}")
        ids = self._assign_ids()
        entries = []
        for i, p in enumerate(self._nodes):
            refs = []
            for tag in p.using:
                if tag not in self._tags:
                    raise GraphStructureError(
                        f"{p.step}: using an unknown tag {tag!r}; tags: {sorted(self._tags)}")
                producer = self._tags[tag]
                refs.append((tag, ids[producer], producer >= i))
            inputs = tuple(s if isinstance(s, str) else ids[s] for s in p.inputs)
            entries.append(Entry(ids[i], p.node, inputs, tuple(refs), tuple(p.tags), p.step))
        internal = {t for t in self._tags if t.startswith("_")} | {t for t, _ in self._internal}
        if input_shape is None and not self._inputs:
            input_shape = getattr(self._nodes[0].node.model, "input_shape", None)
        return Graph(entries, output=ids[self._streams[0]], label=self._label,
                     tags={t: ids[i] for t, i in self._tags.items()},
                     tag_groups=self._tag_groups, internal=internal,
                     input_names=self._inputs, input_shape=input_shape, seed=seed,
                     verbose=self._verbose)

    def _assign_ids(self) -> dict[int, str]:
        ids: dict[int, str] = {}
        labels: dict[str, str] = {}
        for i, p in enumerate(self._nodes):
            child = getattr(p.node, "model", None)
            if isinstance(child, Graph) and child.label:
                if child.label in labels:
                    raise GraphStructureError(
                        f"{p.step}: duplicate child label {child.label!r} (also used at "
                        f"{labels[child.label]})")
                if child.label in self._tags and self._tags[child.label] != i:
                    raise GraphStructureError(
                        f"{p.step}: child label {child.label!r} is also a tag of another node")
                labels[child.label] = p.step
                ids[i] = child.label
            elif p.tags:
                ids[i] = p.tags[0]
        taken = set(ids.values()) | set(self._tags)
        counters: dict[str, int] = {}
        for i, p in enumerate(self._nodes):
            if i in ids:
                continue
            n = p.node
            base = model_name(n.model) if isinstance(n, StepNode) else {
                "also": "Also", "gate": "Gate", "switch": "Switch", "loop": "Loop",
                "map": "Map"}[n.kind]
            base = base if base.isidentifier() else "Node"
            while True:
                k = counters.get(base, 0)
                counters[base] = k + 1
                cand = f"{base}_{k}"
                if cand not in taken:
                    break
            ids[i] = cand
            taken.add(cand)
        return ids


class LoopBuilder:
    """Configures ``loop(body)``; each terminal method returns the FlowBuilder."""

    def __init__(self, fb: FlowBuilder, body: Any) -> None:
        self._fb, self._body = fb, body

    def _finish(self, what: str, mode: str, n: int, cond: Any = None) -> FlowBuilder:
        fb = self._fb
        step = fb._step(f"loop({model_name(self._body)}).{what}")
        if int(n) < 1:
            return fb._fail(f"{step}: needs at least one iteration, got {n}")
        src, body = fb._single(step), fb._model(self._body, step)
        c = fb._model(cond, step) if cond is not None else None
        if src is not None and body is not None and (cond is None or c is not None):
            fb._streams = [fb._add(LoopNode(body, mode, int(n), c), [src], step)]
        return fb

    def for_(self, n: int) -> FlowBuilder:
        """Exactly ``n`` iterations (``lax.scan``; backprop through time).

        Args:
            n: iteration count (>= 1).

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax.graph.models import FunctionModel
            >>> inc = FunctionModel(lambda k, s: {}, lambda p, x: x + 1.0)
            >>> FlowBuilder.from_(inc).loop(inc).for_(3).build(input_shape=(1,))(
            ...     jnp.zeros((1, 1))).tolist()
            [[4.0]]
        """
        return self._finish(f"for_({n})", "for", n)

    def while_(self, cond: Any, max_iter: int) -> FlowBuilder:
        """Check ``cond`` before each iteration (0..max_iter runs); positive = halt.

        Args:
            cond: a halt condition returning one signal per sample (``ThresholdHalt``,
                ``LearnedHalt``); halted samples keep their value.
            max_iter: upper bound on iterations (>= 1).

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax.graph.models import FunctionModel
            >>> from modjax.flow import ThresholdHalt
            >>> inc = FunctionModel(lambda k, s: {}, lambda p, x: x + 1.0)
            >>> g = FlowBuilder.from_(inc).loop(inc).while_(ThresholdHalt(2.5), 9)
            >>> g.build(input_shape=(1,))(jnp.array([[0.0], [5.0]])).tolist()
            [[3.0], [6.0]]
        """
        return self._finish(f"while_({model_name(cond)}, {max_iter})", "while", max_iter, cond)

    def until(self, cond: Any, max_iter: int) -> FlowBuilder:
        """Check ``cond`` after each iteration (1..max_iter runs); positive = halt.

        Args:
            cond: a halt condition returning one signal per sample.
            max_iter: upper bound on iterations (>= 1).

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax.graph.models import FunctionModel
            >>> from modjax.flow import ThresholdHalt
            >>> inc = FunctionModel(lambda k, s: {}, lambda p, x: x + 1.0)
            >>> g = FlowBuilder.from_(inc).loop(inc).until(ThresholdHalt(2.5), 9)
            >>> g.build(input_shape=(1,))(jnp.array([[0.0], [5.0]])).tolist()
            [[3.0], [7.0]]
        """
        return self._finish(f"until({model_name(cond)}, {max_iter})", "until", max_iter, cond)


class MapBuilder:
    """Configures ``map(body)``; ``batched()`` chains, the others return the FlowBuilder."""

    def __init__(self, fb: FlowBuilder, body: Any) -> None:
        self._fb, self._body, self._batched = fb, body, False

    def batched(self) -> MapBuilder:
        """Map with ``vmap`` (one fused call) instead of a sequential ``lax.map``.

        Returns:
            self; finish with :meth:`each` or :meth:`over`.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import Reshape
            >>> g = (FlowBuilder.from_(Reshape(2, 2)).map(Linear(3)).batched().each()
            ...      .build(input_shape=(4,)))
            >>> g.output_shape
            (2, 3)
        """
        self._batched = True
        return self

    def _finish(self, what: str, mode: str, src: Any, n: int = 0) -> FlowBuilder:
        fb = self._fb
        step = fb._step(f"map({model_name(self._body)}).{what}")
        body = fb._model(self._body, step)
        if src is not None and body is not None:
            fb._streams = [fb._add(MapNode(body, mode, n, self._batched), [src], step)]
        return fb

    def each(self) -> FlowBuilder:
        """Map over the first per-sample axis of the stream: ``(B, N, ...) -> (B, N, ...')``.

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import Reshape
            >>> FlowBuilder.from_(Reshape(4, 2)).map(Linear(1)).each().build(
            ...     input_shape=(8,)).output_shape
            (4, 1)
        """
        fb = self._fb
        return self._finish("each()", "each", fb._single(f"step {fb._n_steps + 1}: map.each()"))

    def over(self, tag: str) -> FlowBuilder:
        """Map over the first per-sample axis of an earlier tagged value.

        Args:
            tag: a tag defined before this step (the map's source; the stream moves on
                from the map's output).

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import Reshape
            >>> g = (FlowBuilder.from_(Reshape(3, 2)).tag("slots").through(Reshape(6))
            ...      .map(Linear(4)).over("slots").build(input_shape=(6,)))
            >>> g.output_shape
            (3, 4)
        """
        fb = self._fb
        fb._single(f"step {fb._n_steps + 1}: map.over({tag!r})")
        if tag not in fb._tags:
            return fb._fail(f"step {fb._n_steps + 1}: map(...).over({tag!r}): unknown tag (it "
                            f"must be defined before); tags: {sorted(fb._tags)}")
        return self._finish(f"over({tag!r})", "over", fb._tags[tag])

    def slices(self, n: int) -> FlowBuilder:
        """Split the last axis into ``n`` slices, apply the body to each, join them.

        Args:
            n: number of equal slices (the last axis must be divisible by it).

        Returns:
            The FlowBuilder, for chaining.

        Example:
            >>> from modjax import Linear
            >>> FlowBuilder.from_(Linear(8)).map(Linear(3)).slices(4).build(
            ...     input_shape=(2,)).output_shape
            (12,)
        """
        fb = self._fb
        if int(n) < 1:
            return fb._fail(f"step {fb._n_steps + 1}: map(...).slices({n}) needs n >= 1")
        return self._finish(f"slices({n})", "slices",
                            fb._single(f"step {fb._n_steps + 1}: map.slices({n})"), int(n))
