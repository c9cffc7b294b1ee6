"""The eager shell of the flow ``Graph``: the variables it holds (or views in a composing
parent), eager forwards with observation, forward-reference state, training mode and
rendering. A mixin of :class:`~modjax.graph.flow.graph.Graph`, which supplies the
definition, ``init``/``apply`` and the node table these methods run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from modjax.errors import GraphStructureError, ShapeMismatchError
from modjax.observe.profiling import ProfileRecorder
from modjax.paths import flatten_paths, split_path

if TYPE_CHECKING:
    from modjax.graph.flow.graph import Graph

__all__ = ["GraphShell", "REFS_KEY", "check_like"]

#: Key of ``state`` holding forward-reference values (tag -> last value).
REFS_KEY = "_refs"


class GraphShell:
    """Variables, eager forward, reference state, training mode and rendering of a Graph."""

    def _viewed_parent(self) -> Any:
        """The composing graph whose variables hold this child's, when it has any.

        Raises:
            GraphStructureError: this graph is a child of several graphs holding
                variables (reading or writing through it would pick one silently).
        """
        refs = self.__dict__.get("_parent_refs") or [self.__dict__.get("_parent_ref")]
        holders = [p for p in (r() for r in refs if r is not None)
                   if p is not None and p._viewed_parent_variables() is not None]
        if len(holders) > 1:
            names = ", ".join(repr(p._name) for p in holders)
            raise GraphStructureError(
                f"graph {self._name!r} is a child of several graphs holding variables "
                f"({names}), each with its own copy of its weights; read or write them "
                f"through the parent you mean (parent.parameters_at({self._name!r}), "
                f"parent.save_checkpoint(path, at={self._name!r}))")
        return holders[0] if holders else None

    def _viewed_parent_variables(self) -> dict[str, Any] | None:
        parent = self._viewed_parent()
        if parent is not None:
            return parent._viewed_parent_variables()
        return self._variables

    @property
    def variables(self) -> dict[str, Any] | None:
        """``{"params", "state"}`` held by the eager graph (None until built).

        Initialised lazily (key from ``seed``) once the input shape is known. A labelled
        child of a graph that holds variables is a view: it reads (and
        :meth:`set_variables` writes) the parent's variables under its label, so a
        trained parent's ``child_graph("encoder")`` saves and runs the trained weights.
        """
        parent = self._viewed_parent()
        if parent is not None:
            pv = parent.variables
            at = self._path_in_parent
            return {"params": pv["params"][at], "state": pv["state"].get(at, {})}
        if self._variables is None and self._in_specs is not None:
            params, state = self._compiled_init(self._state_batch)(jax.random.key(self._seed))
            self._variables = {"params": params, "state": state}
        return self._variables

    def _store_variables(self, variables: dict[str, Any]) -> None:
        """Keep new variables: in the parent's tree when this graph is a view."""
        parent = self._viewed_parent()
        if parent is None:
            self._variables = variables
            return
        pv = parent.variables
        at = self._path_in_parent
        parent._store_variables({"params": {**pv["params"], at: variables["params"]},
                                 "state": {**pv["state"], at: variables["state"]}})

    def set_variables(self, variables: Mapping[str, Any]) -> None:
        """Replace the held variables after checking structure, shapes and dtypes.

        Args:
            variables: ``{"params": ..., "state": ...}`` shaped like :attr:`variables`.

        Example:
            >>> import jax
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(2)).build(input_shape=(3,))
            >>> g.set_variables(jax.tree.map(lambda a: a * 0, g.variables))
            >>> float(g.variables["params"]["Linear_0"]["kernel"].sum())
            0.0

        Raises:
            ShapeMismatchError: naming the first leaf path that differs; the graph is
                left unchanged.
        """
        current = self.variables
        if current is None:
            raise ValueError(f"graph {self._name!r} is not built: call build(input_shape) first")
        if not isinstance(variables, Mapping) or set(variables) != {"params", "state"}:
            raise ShapeMismatchError(
                f"graph {self._name!r}: variables must be a dict with 'params' and 'state'")
        new = {"params": variables["params"], "state": variables["state"]}
        check_like(current, new, f"graph {self._name!r}")
        self._store_variables(jax.tree.map(jnp.asarray, new))

    def initialize(self, input_shape: Any, *, key: Any = None, batch_size: int = 1) -> Graph:
        """Build for ``input_shape`` and (re)initialise the held variables.

        Args:
            input_shape: per-sample input shape.
            key: PRNG key (default: from the build ``seed``).
            batch_size: leading size of forward-reference state.

        Returns:
            self.

        Example:
            >>> import jax
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(2)).build().initialize((3,), key=jax.random.key(1))
            >>> g.variables["params"]["Linear_0"]["kernel"].shape
            (3, 2)
        """
        self.build(input_shape)
        self._state_batch = int(batch_size)
        key = jax.random.key(self._seed) if key is None else key
        params, state = self._compiled_init(self._state_batch)(key)
        if self._viewed_parent() is not None:
            self.set_variables({"params": params, "state": state})
        else:
            self._variables = {"params": params, "state": state}
        return self

    @property
    def training(self) -> bool:
        """Training flag used by eager forwards (default True)."""
        return self._training

    def set_training(self, training: bool) -> None:
        """Training/eval mode for eager forwards (``set_training_at`` overrides parts).

        Args:
            training: ``True`` (default after build): dropout active, batch statistics
                updated; ``False``: deterministic forwards.
        """
        self._training = bool(training)

    def _observe_paths(self, top: bool = True) -> tuple[str, ...]:
        """Tags captured by eager forwards for the observers of this graph and its tree.

        The top graph skips the visibility check for its direct children, so their
        internal tags reach their own observers; deeper levels see visible tags only.
        The tree is fixed once built, so the answer is computed once.
        """
        memo = self.__dict__.setdefault("_observe_paths_memo", {})
        if top not in memo:
            memo[top] = self._observe_paths_uncached(top)
        return memo[top]

    def _observe_paths_uncached(self, top: bool) -> tuple[str, ...]:
        out = list(self._tags)
        for label, child in self._children.items():
            out += [f"{label}.{p}" for p in child._observe_paths(False)
                    if top or split_path(p)[0] not in child._internal]
        return tuple(out)

    def forward(self, x: Any) -> Any:
        """Eager forward with the held variables; updates state and tagged values.

        Builds and initialises on the first call from ``x``'s per-sample shape. With
        profiling enabled it runs node by node (see :meth:`profile`); otherwise one
        jitted call.

        Args:
            x: a batched input (a tuple ``(main, *aux)`` with auxiliary inputs).

        Returns:
            The graph's output.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(4)).tag("h").through(Linear(1)).build()
            >>> g(jnp.ones((2, 3))).shape, g.input_shape, g.tagged("h").shape
            ((2, 1), (3,), (2, 4))
        """
        xs = tuple(jnp.asarray(v) for v in self._inputs(x))
        shapes = tuple(tuple(v.shape[1:]) for v in xs)
        if self._in_specs is None or shapes != tuple(tuple(s.shape) for s in self._in_specs):
            if self._variables is not None or self._viewed_parent() is not None:
                # never drop learned values silently
                raise ShapeMismatchError(
                    f"graph {self._name!r} holds variables for per-sample input shape "
                    f"{self.input_shape} but got {shapes[0] if self._n_inputs == 1 else shapes}"
                    "; call initialize(new_shape) to start over with fresh variables")
            self.initialize(shapes[0] if self._n_inputs == 1 else shapes,
                            batch_size=self._state_batch)
        x = xs[0] if self._n_inputs == 1 else xs
        variables = self.variables
        paths = self._observe_paths()
        if self._observer.profiling:
            key = None
            if self._training:  # keys only matter to stochastic nodes, which act in training
                self._rng, key = jax.random.split(self._rng)
            rec = ProfileRecorder()
            y, state, cap = self._apply_impl(variables["params"], variables["state"], x,
                                             key=key, train=self._training, capture=paths,
                                             check=False, recorder=rec)
            self._observer.set_profile(rec.finish())
        else:
            y, state, cap, self._rng = self._eager_fn(paths)(
                variables["params"], variables["state"], x, self._rng)
        self._store_variables({"params": variables["params"], "state": state})
        # this graph's own record of the pass: a child's later forward cannot change
        # what this forward tagged (tagged_at reads it first)
        self._tree_tagged = dict(cap)
        self._distribute_tagged(cap)
        return y

    __call__ = forward

    def _eager_fn(self, paths: tuple[str, ...]) -> Any:
        """``(params, state, x, rng) -> (y, state, captured, rng)``, jitted once per mode.

        The key split happens inside the program, so an eager forward is one dispatch.
        """
        ck = ("eager", self._training, paths, self._overrides_key())
        if ck not in self._jit_cache:
            train = self._training

            def run(p, s, x, rng):
                key = None
                if train:  # keys only matter to stochastic nodes, which act in training
                    rng, key = jax.random.split(rng)
                y, st, cap = self._apply_impl(p, s, x, key=key, train=train, capture=paths,
                                              check=False)
                return y, st, cap, rng
            self._jit_cache[ck] = jax.jit(run)
        return self._jit_cache[ck]

    def _overrides_key(self) -> tuple:
        out = []
        for e in self._entries:
            out.append(e.node.train_override)
            if e.child is not None:
                out.append(e.child._overrides_key())
        return tuple(out)

    def _distribute_tagged(self, captured: Mapping[str, Any]) -> None:
        own = {k: v for k, v in captured.items() if "." not in k}
        self._observer.set_tagged(own)
        for label, child in self._children.items():
            p = f"{label}."
            child._distribute_tagged({k[len(p):]: v for k, v in captured.items()
                                      if k.startswith(p)})

    def detach_state(self, state: Any = None) -> Any:
        """``stop_gradient`` on forward-reference state (this graph and its children).

        Args:
            state: a state pytree to detach (pure: returns a new one, usable in a scan);
                ``None`` detaches the held variables' state in place.

        Returns:
            The detached state, or ``None`` when working in place.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> from modjax.flow import StateAdd
            >>> g = FlowBuilder.from_(Linear(2)).through(StateAdd()).using("m").tag("m").build()
            >>> p, s = g.init(jax.random.key(0), (2,))
            >>> _, s = g.apply(p, s, jnp.ones((1, 2)))
            >>> s = g.detach_state(s)       # truncate backprop through time here
            >>> g.reset_state(s)["_refs"]["m"].tolist()
            [[0.0, 0.0]]
        """
        return self._map_refs(jax.lax.stop_gradient, state)

    def reset_state(self, state: Any = None) -> Any:
        """Zero forward-reference state (start of a new sequence); see :meth:`detach_state`.

        Args:
            state: a state pytree (pure: same shapes, usable in a scan); ``None`` resets
                the held variables in place, back to their initial leading size (1
                unless ``initialize(batch_size=...)``), so the next eager call may use
                another batch size.

        Returns:
            The zeroed state, or ``None`` when working in place.
        """
        if state is None:
            lead = self._state_batch
            return self._map_refs(lambda a: jnp.zeros((lead, *a.shape[1:]), a.dtype), None)
        return self._map_refs(jnp.zeros_like, state)

    def _map_refs(self, fn: Any, state: Any) -> Any:
        if state is None:
            v = self.variables
            if v is None:
                return None
            self._store_variables({"params": v["params"], "state": self._map_refs(fn, v["state"])})
            return None
        new = dict(state)
        if REFS_KEY in new:
            new[REFS_KEY] = jax.tree.map(fn, new[REFS_KEY])
        for e in self._entries:
            m = getattr(e.node, "model", None)
            if isinstance(m, GraphShell) and e.id in new:  # a Graph used as a step
                new[e.id] = m._map_refs(fn, new[e.id])
        return new

    # ---------------------------------------------------------------- rendering
    def dot(self) -> str:
        """Graphviz DOT source (see :func:`modjax.viz.dot.dot`)."""
        from modjax.viz.dot import dot

        return dot(self)

    def dot_with_profile(self) -> str:
        """DOT coloured by the last profiled forward (see :func:`modjax.viz.dot.dot_with_profile`)."""
        from modjax.viz.dot import dot_with_profile

        return dot_with_profile(self)

    def svg(self, path: Any = None) -> bytes:
        """SVG via the Graphviz ``dot`` binary, also written to ``path`` when given.

        Raises:
            FileNotFoundError: Graphviz is not installed.
        """
        from modjax.viz.dot import svg

        return svg(self, path)

    def svg_with_profile(self, path: Any = None) -> bytes:
        """Timing-coloured SVG of the last profiled forward (see :meth:`svg`)."""
        from modjax.viz.dot import svg_with_profile

        return svg_with_profile(self, path)


def check_like(old: Any, new: Any, where: str) -> None:
    a, b = flatten_paths(old), flatten_paths(new)
    if set(a) != set(b):
        missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ShapeMismatchError(
            f"{where}: variables do not match the graph's structure; missing {missing[:6]}, "
            f"unexpected {extra[:6]}")
    for p in a:
        sa, sb = jnp.shape(a[p]), jnp.shape(b[p])
        da, db = jnp.asarray(a[p]).dtype, jnp.asarray(b[p]).dtype
        if sa != sb or da != db:
            raise ShapeMismatchError(
                f"{where}: variable {p!r} has shape {sb} ({db}); expected {sa} ({da})")
