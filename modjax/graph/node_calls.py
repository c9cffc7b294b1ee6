"""Node-level calls on a ModelNode: build it, call it, freeze it, read and write its values.

A node's learned values live in a graph's ``variables`` pytree under its label. The graph
that last built the node is its *home*: node-level calls read and write the node's entry
there, so ``node(x)`` after training shows the trained model and ``node.set_state(...)``
changes what the graph runs. A node built on its own (:meth:`build_model`, or the first
call on a node that reads a FeatureSet) holds its values itself until a graph builds it.
Initial values are those a graph built with the default key gives the node (both draw
from ``fold_in(key(0), label)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from modjax.errors import GraphStructureError, LabelPathError, ShapeMismatchError
from modjax.graph.sample_data import SampleData, as_jax_array, like_caller
from modjax.paths import flatten_paths, split_path

__all__ = ["ModelNodeCalls"]


def _node_key(key: Any, label: str) -> Any:
    from modjax.graph.model_init import _as_key
    from modjax.graph.model_init import _node_key as graph_node_key

    return graph_node_key(_as_key(key), label)


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, leaf in flat.items():
        node = tree
        parts = split_path(path)
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = leaf
    return tree


def _check_like(label: str, what: str, want: Any, got: Any) -> None:
    exp, new = flatten_paths(want), flatten_paths(got)
    if set(exp) != set(new):
        raise LabelPathError(
            f"node {label!r}: {what} paths differ: missing {sorted(set(exp) - set(new))[:6]}, "
            f"unexpected {sorted(set(new) - set(exp))[:6]}")
    for path, leaf in exp.items():
        a, b = np.shape(leaf), np.shape(new[path])
        if a != b or np.result_type(leaf) != np.result_type(new[path]):
            raise ShapeMismatchError(
                f"node {label!r}: {what} at {path!r} has shape {b} {np.result_type(new[path])}, "
                f"the node has {a} {np.result_type(leaf)}")


class ModelNodeCalls:
    """Mixin giving :class:`~modjax.graph.nodes.ModelNode` its node-level calls."""

    _home_graph: Any = None
    _own_variables: dict[str, Any] | None = None

    # ------------------------------------------------------------ home graph
    def _bind_graph(self, graph: Any) -> None:
        """Called by ``ModelGraph.build``: this graph now holds the node's values.

        The reference is strong on purpose: a node built by a graph nobody keeps still
        has its values, as a ModularML node holding its own weights does.
        """
        self._home_graph = graph
        self._own_variables = None

    def _home(self) -> Any:
        graph = self._home_graph
        if graph is None or not graph.is_built:
            return None
        if graph._nodes.get(self.node_id) is not self:  # removed or replaced since
            return None
        return graph

    @property
    def is_built(self) -> bool:
        """Whether the node has values (a built graph holds it, or :meth:`build_model`)."""
        return self._home() is not None or self._own_variables is not None

    @property
    def node_variables(self) -> dict[str, Any]:
        """``{"params": ..., "state": ...}`` of this node (from its home graph if any)."""
        graph = self._home()
        if graph is not None:
            v = graph.variables
            return {"params": v["params"][self.label], "state": v["state"][self.label]}
        if self._own_variables is None:
            raise RuntimeError(f"node {self.label!r} is not built; call build_model() or build "
                               "a ModelGraph holding it")
        return self._own_variables

    def _write_variables(self, params: Any, state: Any) -> None:
        graph = self._home()
        if graph is None:
            self._own_variables = {"params": params, "state": state}
            return
        v = graph.variables
        graph.set_variables({"params": {**v["params"], self.label: params},
                             "state": {**v["state"], self.label: state}})

    # ------------------------------------------------------------ build
    def _default_shapes(self, input_shape: Any, output_shape: Any) -> tuple[Any, Any]:
        ref = self.upstream_ref
        reads_data = hasattr(ref, "feature_shape")
        if input_shape is None:
            if not reads_data:
                raise GraphStructureError(
                    f"node {self.label!r} reads node {ref.node_label!r}: pass input_shape= to "
                    "build_model, or build the ModelGraph holding both")
            input_shape = ref.feature_shape
        if output_shape is None and reads_data and getattr(self.model, "output_shape",
                                                            None) is None:
            output_shape = ref.target_shape
        return tuple(input_shape), None if output_shape is None else tuple(output_shape)

    def build_model(self, input_shape: Any = None, output_shape: Any = None, *,
                    key: Any = None, force: bool = False) -> None:
        """Build the node on its own: resolve shapes and initialise its values.

        Args:
            input_shape: per-sample input shape; default: the upstream FeatureSet's
                feature shape.
            output_shape: requested output shape (a model that declared one keeps it);
                default: the upstream FeatureSet's target shape.
            key: root PRNG key or int seed (default 0, as for ``ModelGraph.build``).
            force: re-initialise a node that is already built.

        Raises:
            ShapeMismatchError: the shapes contradict the model's declared ones.
        """
        if self.is_built and not force:
            return
        in_shape, out_shape = self._default_shapes(input_shape, output_shape)
        model = self.model
        if callable(getattr(model, "build", None)):
            try:
                model.build(in_shape, out_shape)
            except ShapeMismatchError as e:
                raise ShapeMismatchError(f"node {self.label!r}: {e}") from e
        params, state = model.init(_node_key(key, self.label), in_shape)
        probe = jax.ShapeDtypeStruct((2, *in_shape), np.float32)
        y = jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, state, probe)
        self._input_shape, self._output_shape = in_shape, tuple(y.shape[1:])
        self._home_graph = None
        self._own_variables = {"params": params, "state": state}

    # ------------------------------------------------------------ calling
    def forward_single(self, x: Any) -> Any:
        """Run the node's model on one batch (eval mode).

        Args:
            x: a :class:`SampleData` (targets and tags pass through), a
                ``{"features", "targets", "tags"}`` dict, or a features array (numpy,
                JAX or torch; batch axis first).

        Returns:
            The same kind of value with the node's output as features (a torch tensor
            when the features came as one, a JAX array otherwise).

        Raises:
            ShapeMismatchError: the features' per-sample shape is not the node's input.
        """
        sample = SampleData.of(x)
        feats = as_jax_array(sample.features)
        if not self.is_built:
            self.build_model()
        want = tuple(self.input_shape)
        if tuple(feats.shape[1:]) != want:
            raise ShapeMismatchError(
                f"node {self.label!r} takes features of per-sample shape {want}, got an array "
                f"of shape {tuple(feats.shape)} (batch axis first)")
        v = self.node_variables
        y, _ = self.model.apply(v["params"], v["state"], feats, key=None, train=False)
        y = like_caller(y, sample.features)  # torch in, torch out
        if isinstance(x, SampleData):
            return x.replace(features=y)
        if isinstance(x, Mapping):
            return {**x, "features": y}
        return y

    def __call__(self, x: Any) -> Any:
        """Same as :meth:`forward_single`."""
        return self.forward_single(x)

    # ------------------------------------------------------------ freezing
    def freeze(self) -> Any:
        """Freeze this node (its home graph's optimizer leaves it unchanged). Returns self."""
        graph = self._home()
        if graph is not None:
            graph.freeze(nodes=[self])
        else:
            self._frozen = True
        return self

    def unfreeze(self) -> Any:
        """Unfreeze this node (and any path frozen inside it). Returns self."""
        graph = self._home()
        if graph is not None:
            graph.unfreeze(nodes=[self])
        else:
            self._frozen = False
        return self

    # ------------------------------------------------------------ values
    def get_state(self) -> dict[str, Any]:
        """Learned values as host arrays keyed by dotted path.

        Returns:
            ``{"label", "node_id", "frozen", "model": {"weights": {path: array},
            "state": {path: array}}}``.
        """
        v = self.node_variables
        host = jax.tree.map(np.asarray, v)
        return {"label": self.label, "node_id": self.node_id, "frozen": self.is_frozen,
                "model": {"weights": flatten_paths(host["params"]),
                          "state": flatten_paths(host["state"])}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Write values from :meth:`get_state` (same paths, shapes and dtypes), all or
        nothing; builds an unbuilt node first."""
        if not self.is_built:
            self.build_model()
        v = self.node_variables
        model = state.get("model") if isinstance(state, Mapping) else None
        if not isinstance(model, Mapping) or "weights" not in model:
            raise KeyError(f"node {self.label!r}: set_state takes get_state()'s "
                           "{'model': {'weights': ..., 'state': ...}}")
        params = _unflatten(model["weights"])
        new_state = _unflatten(model.get("state", {})) if model.get("state") else v["state"]
        _check_like(self.label, "weights", v["params"], params)
        _check_like(self.label, "state", v["state"], new_state)
        self._write_variables(jax.tree.map(as_jax_array, params),
                              jax.tree.map(as_jax_array, new_state))
        if "frozen" in state:
            (self.freeze if state["frozen"] else self.unfreeze)()

    # ------------------------------------------------------------ files
    def _staging_graph(self, what: str) -> Any:
        from modjax.graph.model_graph import ModelGraph

        if not hasattr(self.upstream_ref, "feature_shape"):
            raise GraphStructureError(
                f"cannot {what} node {self.label!r} on its own: it reads node "
                f"{self.upstream_ref.node_label!r}; build the ModelGraph holding both")
        graph = ModelGraph([self], label=f"{self.label}-standalone", register=False)
        v = self.node_variables
        graph.set_variables({"params": {self.label: v["params"]},
                             "state": {self.label: v["state"]}})
        return graph

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write this node's values as a subgraph checkpoint (loadable into any graph
        with ``load_subgraph_checkpoint(label, path)``, or with :meth:`load`).

        Returns:
            The checkpoint path.
        """
        if not self.is_built:
            raise RuntimeError(f"node {self.label!r} is not built; nothing to save")
        graph = self._home() or self._staging_graph("save")
        return graph.save_checkpoint(path, overwrite=overwrite, at=self.label)

    def load(self, path: str | Path, *, strict: bool = True) -> Any:
        """Load a subgraph checkpoint (from :meth:`save` or ``save_checkpoint(at=...)``)
        into this node; the architecture must match. Returns the load report."""
        if not self.is_built:
            self.build_model()
        graph = self._home()
        if graph is not None:
            return graph.load_subgraph_checkpoint(self.label, path, strict=strict)
        staging = self._staging_graph("load")
        report = staging.load_subgraph_checkpoint(self.label, path, strict=strict)
        v = staging.variables
        self._own_variables = {"params": v["params"][self.label],
                               "state": v["state"][self.label]}
        return report
