"""Branching steps of :class:`~modjax.graph.flow.builder.FlowBuilder`: split/merge,
``also`` (residual), ``gate`` (mixture of experts) and ``switch`` (routed branches).

A mixin: FlowBuilder supplies the recorded nodes, open streams and step bookkeeping
(``_step``, ``_fail``, ``_model``, ``_single``, ``_add``) these methods use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modjax.graph.flow.nodes import AlsoNode, GateNode, StepNode, SwitchNode, model_name

if TYPE_CHECKING:
    from modjax.graph.flow.builder import FlowBuilder

__all__ = ["FlowBranches"]


class FlowBranches:
    """split, merge, also, gate and switch (each returns the builder)."""

    def split(self, *modules: Any) -> FlowBuilder:
        """Fork the stream into parallel branches, one per module (merge them later).

        Args:
            *modules: at least two models, each reading the current stream.

        Returns:
            self, now with one open stream per branch.

        Example:
            >>> from modjax.flow import FlowBuilder
            >>> import jax.numpy as jnp
            >>> from modjax import Linear
            >>> from modjax.flow import Cat
            >>> g = (FlowBuilder.from_(Linear(4)).split(Linear(2), Linear(3))
            ...      .merge(Cat(-1)).build(input_shape=(3,)))
            >>> g.output_shape
            (5,)
        """
        step = self._step(f"split({', '.join(model_name(m) for m in modules)})")
        if len(modules) < 2:
            return self._fail(f"{step}: split needs at least two branches")
        src = self._single(step)
        models = [self._model(m, step) for m in modules]
        if src is None or any(m is None for m in models):
            return self
        branches = [self._add(StepNode(m), [src], f"{step} branch {i}")
                    for i, m in enumerate(models)]
        self._streams = branches
        self._last = list(branches)
        return self

    def merge(self, module: Any) -> FlowBuilder:
        """Combine the split streams with a merge module (``Add``, ``Mean``, ``Cat``...).

        Args:
            module: receives the branches' outputs as a tuple, in branch order.

        Returns:
            self, with a single stream again.

        Example:
            >>> from modjax.flow import FlowBuilder
            >>> from modjax import Linear
            >>> from modjax.flow import Mean
            >>> g = (FlowBuilder.from_(Linear(2)).split(Linear(2), Linear(2))
            ...      .merge(Mean()).build(input_shape=(3,)))
            >>> g.output_shape
            (2,)
        """
        step = self._step(f"merge({model_name(module)})")
        if len(self._streams) < 2:
            return self._fail(f"{step}: merge needs a split stream (after split(...))")
        m = self._model(module, step)
        if m is not None:
            self._streams = [self._add(StepNode(m), list(self._streams), step)]
        return self

    def also(self, module: Any) -> FlowBuilder:
        """Residual connection: ``x + module(x)``.

        Args:
            module: must keep the stream's shape (checked when shapes are resolved).

        Returns:
            self, for chaining.

        Example:
            >>> from modjax.flow import FlowBuilder
            >>> import jax, jax.numpy as jnp
            >>> from modjax.graph.models import FunctionModel
            >>> zero = FunctionModel(lambda k, s: {}, lambda p, x: 0.0 * x)
            >>> g = FlowBuilder.from_(zero).also(FunctionModel(lambda k, s: {}, lambda p, x: x + 1))
            >>> g.build(input_shape=(2,))(jnp.zeros((1, 2))).tolist()
            [[1.0, 1.0]]
        """
        step = self._step(f"also({model_name(module)})")
        src, m = self._single(step), self._model(module, step)
        if src is not None and m is not None:
            self._streams = [self._add(AlsoNode(m), [src], step)]
        return self

    def gate(self, router: Any, *experts: Any) -> FlowBuilder:
        """Soft mixture of experts: every expert runs; outputs weighted by the router.

        Args:
            router: returns weights ``(..., len(experts))`` (``SoftmaxRouter``,
                ``SigmoidRouter``); a following ``using`` feeds it extra tags.
            *experts: models reading the stream, all with the same output.

        Returns:
            self, for chaining.

        Example:
            >>> from modjax.flow import FlowBuilder
            >>> from modjax import Linear
            >>> from modjax.flow import SoftmaxRouter
            >>> g = (FlowBuilder.from_(Linear(4)).tag("ctx")
            ...      .gate(SoftmaxRouter(4, 2), Linear(3), Linear(3)).using("ctx")
            ...      .build(input_shape=(2,)))
            >>> g.output_shape
            (3,)
        """
        step = self._step(f"gate({model_name(router)}, "
                          f"{', '.join(model_name(e) for e in experts)})")
        if not experts:
            return self._fail(f"{step}: gate needs at least one expert")
        n = getattr(router, "num_experts", None)
        if n is not None and n != len(experts):
            return self._fail(f"{step}: router {model_name(router)} produces {n} weights but "
                              f"the gate has {len(experts)} experts")
        src = self._single(step)
        r, es = self._model(router, step), [self._model(e, step) for e in experts]
        if src is not None and r is not None and all(e is not None for e in es):
            self._streams = [self._add(GateNode(r, es), [src], step)]
        return self

    def switch(self, router: Any, *branches: Any) -> FlowBuilder:
        """Hard routing: the router picks one branch index; only that branch runs.

        Compiles to ``lax.switch``: only the selected branch executes and gets gradient.

        Args:
            router: returns one integer index for the batch (``ArgmaxSelector``,
                ``FixedSelector``); a following ``using`` feeds it extra tags.
            *branches: models with the same output shape and dtype.

        Returns:
            self, for chaining.

        Example:
            >>> from modjax.flow import FlowBuilder
            >>> import jax.numpy as jnp
            >>> from modjax.graph.models import FunctionModel
            >>> from modjax.flow import FixedSelector
            >>> def times(k):
            ...     return FunctionModel(lambda key, s: {}, lambda p, x: k * x)
            >>> g = FlowBuilder.from_(times(1.0)).switch(FixedSelector(1), times(2.0), times(3.0))
            >>> g.build(input_shape=(1,))(jnp.ones((1, 1))).tolist()
            [[3.0]]
        """
        step = self._step(f"switch({model_name(router)}, "
                          f"{', '.join(model_name(b) for b in branches)})")
        if not branches:
            return self._fail(f"{step}: switch needs at least one branch")
        n = getattr(router, "num_branches", None)
        if n is not None and n != len(branches):
            return self._fail(f"{step}: router {model_name(router)} chooses among {n} branches "
                              f"but the switch has {len(branches)}")
        idx = getattr(router, "index", None)
        if isinstance(idx, int) and not 0 <= idx < len(branches):
            return self._fail(f"{step}: router {model_name(router)} selects branch {idx} but "
                              f"the switch has {len(branches)} branches")
        src = self._single(step)
        r, bs = self._model(router, step), [self._model(b, step) for b in branches]
        if src is not None and r is not None and all(b is not None for b in bs):
            self._streams = [self._add(SwitchNode(r, bs), [src], step)]
        return self
