"""The built flow ``Graph``: a model (Graph-as-Module) with a stateful shell.

Pure core (what runs under ``jit``): :meth:`Graph.init` and :meth:`Graph.apply` in
the model protocol of docs/architecture.md, walking the nodes in construction order
at trace time so XLA compiles the whole flow as one program. Shell: the graph holds
its own ``variables`` for eager ``graph(x)`` / ``graph.forward(x)``, the last tagged
values, its :class:`~modjax.observe.Observer` (log/collect/record/flush/trends/...),
profiling, the graph tree (:class:`~modjax.graph.flow.tree.GraphTree`) and persistence.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import (
    ConfigError,
    LabelPathError,
    ShapeMismatchError,
    closest_names,
)
from modjax.graph.definition import GraphDef, definition_hash
from modjax.graph.flow.nodes import FlowNode, StepNode, node_from_config
from modjax.graph.flow.observing import GraphObservation
from modjax.graph.flow.shell import REFS_KEY, GraphShell
from modjax.graph.flow.tree import GraphTree
from modjax.graph.persistence import GraphPersistence
from modjax.io.registry import register
from modjax.observe.observer import Observer
from modjax.observe.profiling import ProfileRecorder
from modjax.paths import split_path

__all__ = ["Graph", "REFS_KEY"]

Spec = jax.ShapeDtypeStruct


@dataclass
class Entry:
    """One node of a built graph (internal; exposed for viz and the tree helpers).

    Attributes:
        id: node id, unique in the graph (a child graph's label, the first tag, or
            ``ClassName_k``); it is the node's key in ``params``/``state``.
        node: the executable node.
        inputs: stream sources (node ids, or ``"$in0"``... for graph inputs).
        refs: ``(tag, producer id, forward)`` per ``using`` reference.
        tags: tags naming this node's output.
        step: the builder step that made it, for error messages.
        level: topological level (0 = reads graph inputs only).
    """

    id: str
    node: FlowNode
    inputs: tuple[str, ...]
    refs: tuple[tuple[str, str, bool], ...] = ()
    tags: tuple[str, ...] = ()
    step: str = ""
    level: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def child(self) -> Graph | None:
        """The labelled Graph this node runs directly, if any (a tree child)."""
        m = getattr(self.node, "model", None)
        return m if isinstance(m, Graph) and m.label else None


def _in_id(i: int) -> str:
    return f"$in{i}"


def _as_shapes(input_shape: Any, n_inputs: int, who: str) -> tuple[tuple[int, ...], ...]:
    def one(s: Any) -> tuple[int, ...]:
        if isinstance(s, int):
            return (s,)
        return tuple(int(d) for d in s)

    if n_inputs == 1:
        return (one(input_shape),)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != n_inputs or not all(
            isinstance(s, (tuple, list)) for s in input_shape):
        raise ShapeMismatchError(
            f"{who} takes {n_inputs} inputs; give input_shape as a tuple of {n_inputs} "
            f"per-sample shapes, got {input_shape!r}")
    return tuple(one(s) for s in input_shape)


@register("Graph")
class Graph(GraphShell, GraphTree, GraphObservation, GraphPersistence):
    """A built flow: a model (``init``/``apply``) and an eager, observable module.

    Build graphs with :class:`~modjax.graph.flow.FlowBuilder`; the constructor is
    internal. Key facts:

    * ``params``/``state`` are nested dicts keyed by node id; a labelled child graph's
      variables nest under its label, so ``"encoder.scan"`` is a label path.
    * ``state["_refs"]`` holds forward-reference values between calls.
    * ``apply(..., capture=[...])`` also returns the requested tagged values.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from modjax import Linear
        >>> from modjax.flow import FlowBuilder
        >>> g = FlowBuilder.from_(Linear(8)).tag("hidden").through(Linear(2)).build()
        >>> params, state = g.init(jax.random.key(0), (4,))
        >>> y, state, cap = g.apply(params, state, jnp.ones((3, 4)), capture=["hidden"])
        >>> y.shape, cap["hidden"].shape
        ((3, 2), (3, 8))
    """

    def __init__(self, entries: list[Entry], *, output: str, label: str | None = None,
                 tags: Mapping[str, str] | None = None,
                 tag_groups: Mapping[str, Iterable[str]] | None = None,
                 internal: Iterable[str] = (), input_names: Iterable[str] = (),
                 input_shape: Any = None, seed: int = 0, verbose: bool = False) -> None:
        self._entries = list(entries)
        self._by_id = {e.id: e for e in self._entries}
        self._output = output
        self.label = label
        self._tags = dict(tags or {})
        self._tag_groups = {k: tuple(v) for k, v in (tag_groups or {}).items()}
        self._internal = set(internal)
        self._input_names = tuple(input_names)
        self._n_inputs = 1 + len(self._input_names)
        self._forward_tags = sorted({t for e in self._entries for (t, _, fwd) in e.refs if fwd})
        self._seed = int(seed)
        self._verbose = bool(verbose)
        self._composed = False
        self._in_specs: tuple[Spec, ...] | None = None
        self._out_spec: Spec | None = None
        self._node_specs: dict[str, Spec] = {}
        self._variables: dict[str, Any] | None = None
        self._state_batch = 1
        self._training = True
        self._rng = jax.random.key(self._seed)
        self._jit_cache: dict[Any, Any] = {}
        self._observer = Observer(self._tag_groups, name=label or "(root)")
        self._init_tree()
        for e in self._entries:
            if e.child is not None:
                self._observer.attach_child(e.id, e.child._observer)
        self._compute_levels()
        self._tied = _ties(self._entries)
        self._definition: Any = None
        if input_shape is not None:
            self.build(input_shape)
        if self._verbose:
            print(self.verbose_text(), file=sys.stderr)

    # ---------------------------------------------------------------- structure
    def _compute_levels(self) -> None:
        level: dict[str, int] = {_in_id(i): -1 for i in range(self._n_inputs)}
        for e in self._entries:
            deps = list(e.inputs) + [pid for (_, pid, fwd) in e.refs if not fwd]
            e.level = 1 + max(level[d] for d in deps)
            level[e.id] = e.level

    @property
    def definition(self) -> GraphDef:
        """The flow's immutable, hashable definition (see ``modjax.graph.definition``).

        Equal for flows of equal structure and input shape; compiled programs key on it.
        Through it a flow graph is a one-node graph for training steps: its output is
        named by the graph's label (``"output"`` without one).

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.graph import apply
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(3)).tag("h").label("net").build(input_shape=(2,))
            >>> out, _ = apply(g.definition, g.variables, {"x": jnp.ones((5, 2))}, capture=["h"])
            >>> sorted(out), out["net"].shape
            (['h', 'net'], (5, 3))
        """
        token = (self._in_specs, self._overrides_key(), self.label)
        if self._definition is None or self._definition[0] != token:
            from modjax.graph.flow.definition import flow_definition

            self._definition = (token, flow_definition(self))
        return self._definition[1]

    def definition_hash(self, at: str | None = None) -> str | None:
        """Architecture hash of the graph or the part at label path ``at``
        (see :func:`modjax.graph.definition.definition_hash`)."""
        return definition_hash(self, at)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The nodes in execution (construction) order."""
        return tuple(self._entries)

    @property
    def output_node(self) -> str:
        """Id of the node whose output is the graph's output."""
        return self._output

    @property
    def tags(self) -> dict[str, str]:
        """``{tag: node id}`` of this graph's own tags (internal ones included)."""
        return dict(self._tags)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the auxiliary inputs declared with ``input(...)``."""
        return self._input_names

    def tag_group(self, name: str) -> tuple[str, ...] | None:
        """Member tags of a tag group, or ``None`` when no group has that name."""
        return self._tag_groups.get(name)

    @property
    def input_shape(self) -> Any:
        """Per-sample input shape (a tuple of shapes with auxiliary inputs); None until built."""
        if self._in_specs is None:
            return None
        shapes = tuple(tuple(s.shape) for s in self._in_specs)
        return shapes[0] if self._n_inputs == 1 else shapes

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-sample output shape; None until built."""
        return None if self._out_spec is None else tuple(self._out_spec.shape)

    def node_spec(self, node_id: str) -> Spec:
        """Per-sample output shape/dtype of a node (after build)."""
        if node_id not in self._node_specs:
            raise LabelPathError(self._no_node(node_id))
        return self._node_specs[node_id]

    def _no_node(self, node_id: str) -> str:
        return (f"graph {self._name!r} has no node {node_id!r}" + (
            "" if self._node_specs else " (not built yet)") +
            f"; nodes: {[e.id for e in self._entries]}; did you mean "
            f"{closest_names(node_id, self._by_id)}?")

    @property
    def _name(self) -> str:
        return self.label or "(root)"

    # ---------------------------------------------------------------- model core
    def build(self, input_shape: Any = None, output_shape: Any = None) -> None:
        """Resolve every node's shapes for ``input_shape`` (no arrays are allocated).

        Args:
            input_shape: per-sample input shape (a tuple of shapes when the graph has
                auxiliary ``input(...)`` names); ``None`` reuses the known one.
            output_shape: ignored (a flow's output shape follows from its nodes); accepted
                for the model protocol.

        Raises:
            ShapeMismatchError / GraphStructureError: naming the node and builder step.
        """
        if input_shape is None:
            if self._in_specs is None:
                raise ValueError(f"graph {self._name!r} needs an input_shape to build")
            return
        shapes = _as_shapes(input_shape, self._n_inputs, f"graph {self._name!r}")
        specs = tuple(Spec(s, jnp.float32) for s in shapes)
        if self._in_specs is not None and specs == self._in_specs and self._node_specs:
            return
        previous = self._in_specs
        try:
            jax.eval_shape(lambda k: self._init_impl(k, specs, 1), jax.random.key(0))
        except Exception:
            self._in_specs = previous  # a failed build leaves the graph as it was
            raise
        if self._variables is not None and previous != specs:
            self._variables = None  # held variables were made for the old shape
        self._in_specs = specs
        self._jit_cache.clear()

    def init(self, key: Any, input_shape: Any, *, batch_size: int = 1) -> tuple[dict, dict]:
        """Fresh ``(params, state)`` for per-sample ``input_shape``.

        Args:
            key: PRNG key.
            input_shape: per-sample input shape (tuple of shapes with auxiliary inputs).
            batch_size: leading size of forward-reference state (1 broadcasts to any
                batch on the first call; give the training batch size to keep the
                state's shape fixed inside ``lax.scan``).

        Returns:
            ``(params, state)``, nested dicts keyed by node id.
        """
        self.build(input_shape)
        return self._compiled_init(batch_size)(key)

    def _compiled_init(self, batch_size: int) -> Any:
        # eager on purpose: op-by-op initialisers are cached per shape across graphs, while
        # a jitted init would recompile the RNG code for every new graph
        specs = self._in_specs
        return lambda k: self._init_impl(k, specs, int(batch_size))

    def _init_impl(self, key: Any, in_specs: tuple[Spec, ...],
                   batch_size: int) -> tuple[dict, dict]:
        specs: dict[str, Spec] = {_in_id(i): s for i, s in enumerate(in_specs)}
        tied_specs: dict[str, tuple[Spec, ...]] = {}
        guessed: dict[str, Spec] = {}
        params: dict[str, Any] = {}
        state: dict[str, Any] = {}
        for i, e in enumerate(self._entries):
            ins = tuple(specs[s] for s in e.inputs)
            refs = []
            for tag, pid, fwd in e.refs:
                if fwd:  # the producer comes later: assume the stream's spec, checked below
                    guessed.setdefault(tag, ins[0])
                    refs.append(guessed[tag])
                else:
                    refs.append(specs[pid])
            where = f"graph {self._name!r} node {e.id!r} ({e.step})"
            params[e.id], state[e.id], specs[e.id] = e.node.init(
                jax.random.fold_in(key, i), ins + tuple(refs), where)
            owner = self._tied.get(e.id)
            if owner is not None:  # a module used again: its parameters are the owner's
                _check_tied_inputs(self._name, e, owner, ins + tuple(refs), tied_specs)
                params[e.id] = {}
            tied_specs[e.id] = ins + tuple(refs)
        refs_state = {}
        for tag in self._forward_tags:
            got, want = specs[self._tags[tag]], guessed[tag]
            if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
                raise ShapeMismatchError(
                    f"graph {self._name!r}: forward reference {tag!r} is read with the shape of "
                    f"its reader's stream {tuple(want.shape)} ({want.dtype}) but node "
                    f"{self._tags[tag]!r} produces {tuple(got.shape)} ({got.dtype})")
            refs_state[tag] = jnp.zeros((batch_size, *got.shape), got.dtype)
        if refs_state:
            state[REFS_KEY] = refs_state
        self._node_specs = {k: v for k, v in specs.items() if not k.startswith("$")}
        self._out_spec = specs[self._output]
        self._in_specs = in_specs
        return params, state

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None, train: bool = False,
              capture: Iterable[str] = ()) -> tuple[Any, ...]:
        """Run the graph (pure, jittable).

        Args:
            params: from :meth:`init`.
            state: from :meth:`init` or a previous apply.
            x: batched input ``(batch, *input_shape)``; a tuple ``(main, *aux)`` when the
                graph declares auxiliary inputs.
            key: PRNG key for stochastic nodes (dropout); folded per node.
            train: training flag (nodes with ``set_training_at`` overrides keep theirs).
            capture: tag paths to return as well (``"hidden"``, ``"encoder.output"``).

        Returns:
            ``(y, new_state)``, or ``(y, new_state, captured)`` when ``capture`` is given.
        """
        capture = tuple(capture)
        y, new_state, cap = self._apply_impl(params, state, x, key=key, train=train,
                                             capture=capture, check=True)
        return (y, new_state, cap) if capture else (y, new_state)

    def apply_capture(self, params: Any, state: Any, x: Any, *, key: Any = None,
                      train: bool = False, capture: Iterable[str] = ()) -> tuple[Any, Any, dict]:
        """Like :meth:`apply` but always returns ``(y, new_state, captured)``."""
        return self._apply_impl(params, state, x, key=key, train=train,
                                capture=tuple(capture), check=True)

    def _inputs(self, x: Any) -> tuple[Any, ...]:
        if self._n_inputs == 1:
            return (x,)
        if not isinstance(x, (tuple, list)) or len(x) != self._n_inputs:
            raise ValueError(
                f"graph {self._name!r} takes {self._n_inputs} inputs (main, "
                f"{', '.join(self._input_names)}); pass them as a tuple in that order")
        return tuple(x)

    def _split_capture(self, capture: tuple[str, ...], check: bool) -> tuple[
            list[str], dict[str, list[str]]]:
        own, routed = [], {}
        for path in capture:
            parts = split_path(path)
            if len(parts) == 1 and parts[0] in self._tags:
                own.append(path)
                continue
            if len(parts) > 1 and parts[0] in self._children:
                child = self._children[parts[0]]
                if check:
                    child._check_visible(parts[1:], path)
                routed.setdefault(parts[0], []).append(".".join(parts[1:]))
                continue
            raise LabelPathError(
                f"capture path {path!r} does not resolve in graph {self._name!r}: tags "
                f"{sorted(self._tags)}, child graphs {sorted(self._children)}; did you mean "
                f"{closest_names(parts[0] if parts else '', [*self._tags, *self._children])}?")
        return own, routed

    def _apply_impl(self, params: Any, state: Any, x: Any, *, key: Any, train: bool,
                    capture: tuple[str, ...], check: bool,
                    recorder: ProfileRecorder | None = None) -> tuple[Any, Any, dict]:
        if self._in_specs is None:
            raise ValueError(f"graph {self._name!r} is not built: call init(key, input_shape) "
                             "or build(input_shape) first")
        own, routed = self._split_capture(capture, check)
        values: dict[str, Any] = {_in_id(i): v for i, v in enumerate(self._inputs(x))}
        batch = jnp.shape(values[_in_id(0)])[0]
        old_refs = state.get(REFS_KEY, {}) if isinstance(state, Mapping) else {}
        new_state = dict(state)
        captured: dict[str, Any] = {}
        order = self._entries
        if recorder is not None:  # level by level, so level wall-clocks are meaningful
            order = sorted(self._entries, key=lambda e: e.level)
        current_level = None
        level_ctx = None
        for e in order:
            ins = tuple(values[s] for s in e.inputs)
            refs = self._entry_refs(e, values, old_refs, batch)
            idx = self._index[e.id]
            p = params[self._tied.get(e.id, e.id)]
            k = None if key is None else jax.random.fold_in(key, idx)
            t = train if e.node.train_override is None else e.node.train_override
            sub = tuple(routed.get(e.id, ()))
            if recorder is None:
                with jax.named_scope(e.id):
                    y, s, cap = e.node.apply(p, state[e.id], ins + tuple(refs),
                                             key=k, train=t, capture=sub)
            else:
                if e.level != current_level:
                    if level_ctx is not None:
                        level_ctx.__exit__(None, None, None)
                    level_ctx = recorder.level(e.level)
                    level_ctx.__enter__()
                    current_level = e.level
                fn, fresh = self._node_fn(e, t, sub)
                if fresh:  # compile outside the timed region: profiles measure execution
                    jax.block_until_ready(fn(p, state[e.id], ins + tuple(refs), k))
                y, s, cap = recorder.node(e.id, e.tags[0] if e.tags else None, fn,
                                          p, state[e.id], ins + tuple(refs), k)
            values[e.id] = y
            new_state[e.id] = s
            for c, v in cap.items():
                captured[f"{e.id}.{c}"] = v
        if level_ctx is not None:
            level_ctx.__exit__(None, None, None)
        if self._forward_tags:
            new_state[REFS_KEY] = {t: values[self._tags[t]] for t in self._forward_tags}
        for t in own:
            captured[t] = values[self._tags[t]]
        return values[self._output], new_state, captured

    def _entry_refs(self, e: Entry, values: Mapping[str, Any], old_refs: Mapping[str, Any],
                    batch: int) -> list[Any]:
        """The values of an entry's references: this call's tags, or the previous call's
        (forward references, broadcast from a batch of 1)."""
        refs = []
        for tag, pid, fwd in e.refs:
            if not fwd:
                refs.append(values[pid])
                continue
            r = old_refs[tag]
            if r.shape[0] not in (batch, 1):
                raise ShapeMismatchError(
                    f"graph {self._name!r} node {e.id!r}: forward reference {tag!r} "
                    f"holds a batch of {r.shape[0]} from the previous call but this "
                    f"call has {batch}; call reset_state() (a new sequence) or keep "
                    "the batch size fixed")
            refs.append(r if r.shape[0] == batch else jnp.broadcast_to(r, (batch, *r.shape[1:])))
        return refs

    def _node_fn(self, e: Entry, train: bool, sub: tuple[str, ...]) -> Any:
        """Per-node jitted function for profiled forwards (compiled once per node)."""
        ck = ("node", e.id, train, sub)
        fresh = ck not in self._jit_cache
        if fresh:
            node = e.node

            def run(p, s, ins, k):
                with jax.named_scope(e.id):
                    return node.apply(p, s, ins, key=k, train=train, capture=sub)
            self._jit_cache[ck] = jax.jit(run)
        return self._jit_cache[ck], fresh

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {e.id: i for i, e in enumerate(self._entries)}

    # ---------------------------------------------------------------- config / state
    def get_config(self) -> dict[str, Any]:
        """Structure as JSON: nodes (with serialized models), tags, groups, label."""
        return {
            "label": self.label,
            "nodes": [{"id": e.id, "node": e.node.get_config(), "inputs": list(e.inputs),
                       "refs": [[t, p, f] for t, p, f in e.refs], "tags": list(e.tags),
                       "step": e.step} for e in self._entries],
            "output": self._output,
            "tags": dict(self._tags),
            "tag_groups": {k: list(v) for k, v in self._tag_groups.items()},
            "internal": sorted(self._internal),
            "input_names": list(self._input_names),
            "tied": dict(self._tied),
            "input_shape": None if self.input_shape is None else json.loads(
                json.dumps(self.input_shape)),
            "seed": self._seed,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kw: Any) -> Graph:
        """Rebuild a graph from :meth:`get_config` output (fresh variables)."""
        try:
            entries = [Entry(n["id"], node_from_config(n["node"], **kw), tuple(n["inputs"]),
                             tuple((t, p, bool(f)) for t, p, f in n["refs"]), tuple(n["tags"]),
                             n.get("step", "")) for n in config["nodes"]]
            by_id = {e.id: e for e in entries}
            for nid, owner in (config.get("tied") or {}).items():
                by_id[nid].node.model = by_id[owner].node.model  # one module object again
            return cls(entries, output=config["output"], label=config.get("label"),
                       tags=config["tags"], tag_groups=config.get("tag_groups"),
                       internal=config.get("internal", ()),
                       input_names=config.get("input_names", ()),
                       input_shape=config.get("input_shape"), seed=config.get("seed", 0))
        except KeyError as e:
            raise ConfigError(f"flow Graph config is missing {e}") from e

    def get_state(self) -> dict[str, Any]:
        """Learned values and observation history of the whole tree.

        Returns:
            ``{"variables": {"params", "state"} or None, "observer": {"self": ...,
            "children": {label: ...}}}``: pytrees of arrays.
        """
        return {"variables": self.variables, "observer": self._observer_state()}

    def _observer_state(self) -> dict[str, Any]:
        return {"self": self._observer.get_state(),
                "children": {label: c._observer_state() for label, c in self._children.items()}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` output (variables checked like :meth:`set_variables`)."""
        if state.get("variables") is not None:
            self.set_variables(state["variables"])
        if state.get("observer") is not None:
            self._set_observer_state(state["observer"])

    def _set_observer_state(self, obs: Mapping[str, Any]) -> None:
        self._observer.set_state(obs["self"])
        for label, sub in obs.get("children", {}).items():
            if label not in self._children:
                raise LabelPathError(
                    f"graph {self._name!r}: observer state for unknown child {label!r}; "
                    f"children: {sorted(self._children)}")
            self._children[label]._set_observer_state(sub)

    def structural_hash(self) -> str:
        """8-hex-digit hash of the structure (config without label/seed/shapes).

        Returns:
            The hash shown by :meth:`tree_summary` and checked by subgraph checkpoints.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> a = FlowBuilder.from_(Linear(2)).label("a").build()
            >>> b = FlowBuilder.from_(Linear(2)).label("b").build(seed=5)
            >>> a.structural_hash() == b.structural_hash(), len(a.structural_hash())
            (True, 8)
        """
        cfg = self.get_config()
        for k in ("label", "seed", "input_shape"):
            cfg.pop(k, None)
        return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        return (f"Graph(label={self.label!r}, nodes={[e.id for e in self._entries]}, "
                f"input_shape={self.input_shape}, output_shape={self.output_shape})")


def _ties(entries: list[Entry]) -> dict[str, str]:
    """``{node id: owner id}`` for steps that run a module object an earlier step runs."""
    owners: dict[int, tuple[Any, str]] = {}
    tied = {}
    for e in entries:
        if not isinstance(e.node, StepNode) or e.node.passthrough:
            continue
        model = e.node.model
        seen = owners.get(id(model))
        if seen is not None and seen[0] is model:
            tied[e.id] = seen[1]
        else:
            owners[id(model)] = (model, e.id)
    return tied


def _check_tied_inputs(name: str, e: Entry, owner: str, ins: tuple[Spec, ...],
                       seen: Mapping[str, tuple[Spec, ...]]) -> None:
    want = seen[owner]
    if tuple((tuple(s.shape), s.dtype) for s in ins) != tuple(
            (tuple(s.shape), s.dtype) for s in want):
        raise ShapeMismatchError(
            f"graph {name!r} node {e.id!r} ({e.step}) reuses the module of node {owner!r}, "
            f"so its weights are tied, but it gets input shape(s) "
            f"{[tuple(s.shape) for s in ins]} where {owner!r} gets "
            f"{[tuple(s.shape) for s in want]}; tied uses need equal input shapes")
