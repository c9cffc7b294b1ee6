"""ModelGraph: a DAG of nodes that is one pure function over one variables pytree.

The shell (this class) keeps the nodes, validates them, mutates the wiring, infers
shapes and holds the current ``variables``. The core is pure: :meth:`ModelGraph.init`
``(key) -> variables`` and :meth:`ModelGraph.apply` ``(variables, inputs, ...) ->
(outputs, new_state)``, which walks the topological order at trace time so that XLA
compiles the whole graph as one program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.context import ExperimentContext
from modjax.errors import (
    ConfigError,
    GraphStructureError,
    closest_names,
)
from modjax.graph.definition import GraphDef, definition_hash, freeze_value, ident
from modjax.graph.freezing import FreezeStore
from modjax.graph.model_apply import ModelGraphApply
from modjax.graph.model_editing import ModelGraphEditing
from modjax.graph.model_freezing import ModelGraphFreezing
from modjax.graph.model_init import (
    _as_key,
    _grouped_init,
    _model_draws,
    _node_key,
    _prefix_draws,
)
from modjax.graph.model_variables import ModelGraphVariables
from modjax.graph.nodes import GraphNode, ModelNode, NodeReference, ref_label
from modjax.graph.persistence import GraphPersistence
from modjax.graph.shapes import NodeShapes, infer_shapes, label_seed, model_cache_key
from modjax.graph.topology import Topology, analyse
from modjax.io.registry import CONFIG_FORMAT_VERSION, get_registered, register, serialize
from modjax.notebook import GraphNotebookRepr
from modjax.paths import split_path

__all__ = ["ModelGraph"]


@register("ModelGraph")
class ModelGraph(ModelGraphApply, ModelGraphVariables, ModelGraphEditing, ModelGraphFreezing,
                 GraphPersistence, GraphNotebookRepr):
    """A directed acyclic graph of :class:`~modjax.graph.nodes.GraphNode` s.

    Args:
        nodes: node instances, labels or ids; ``None`` takes every GraphNode registered
            in the active ExperimentContext.
        optimizer: a shared optimizer (``modjax.train.Optimizer``) for graph-wise training;
            all trainable nodes must then share a backend.
        label: the graph's name.
        ctx: the ExperimentContext to resolve labels in (default: the active one).
        register: associate the graph with the context (``ctx.model_graph``).

    Example:
        >>> import numpy as np
        >>> from modjax import FeatureSet
        >>> from modjax import ModelGraph
        >>> from modjax import Linear
        >>> from modjax import ModelNode
        >>> fs = FeatureSet.from_dict("Doc", {"x": np.zeros((4, 3)), "y": np.zeros(4)},
        ...                           "x", "y", register=False)
        >>> n = ModelNode("Lin", Linear(2), upstream_ref=fs.reference(), register=False)
        >>> g = ModelGraph([n], register=False).build()
        >>> g.node_labels, g.forward({"Doc": np.ones((4, 1, 3))})["Lin"].shape
        (['Lin'], (4, 1, 2))
    """

    def __init__(self, nodes: Sequence[str | GraphNode] | None = None, optimizer: Any = None,
                 label: str = "model-graph", *, ctx: ExperimentContext | None = None,
                 register: bool = True) -> None:
        self._ctx = ctx or ExperimentContext.get_active()
        self.label = label
        if nodes is None:
            resolved = list(self._ctx.available_computenodes.values())
        else:
            if isinstance(nodes, (str, GraphNode)):
                raise TypeError("ModelGraph(nodes=...) takes a list of nodes or labels")
            resolved = [self._lookup_registered(n) for n in nodes]
        refs = {n.node_id: n.get_upstream_refs() for n in resolved}
        self._resolve_label_refs(resolved, refs)
        topo = analyse(resolved, refs, graph_label=label)
        self._optimizer = optimizer
        self._commit(resolved, refs, topo)
        self._check_backends()
        self._built = False
        self._variables: dict[str, dict[str, Any]] | None = None
        self._var_meta: dict[str, tuple[Any, ...]] = {}
        self._key: Any = None
        self._opt_state: Any = None
        # nodes frozen before they joined the graph stay frozen
        self._freeze = FreezeStore({(n.label,): True for n in self._model_nodes()
                                    if n.is_frozen})
        self._forward_cache: dict[Any, Any] = {}
        self._definition_at: Any = None
        if register:
            self._ctx.register_model_graph(self)

    # ================================================================ lookup
    def _lookup_registered(self, n: str | GraphNode) -> GraphNode:
        if isinstance(n, GraphNode):
            return n
        if isinstance(n, str):
            return self._ctx.get_node(n, enforce_type="GraphNode")  # type: ignore[return-value]
        raise TypeError(f"graph {self.label!r}: expected a GraphNode or a label, got {n!r}")

    def _resolve_label_refs(self, nodes: list[GraphNode], refs: dict[str, list[Any]]) -> None:
        """Label-only references to graph nodes get the node's id (for rename safety)."""
        by_label = {n.label: n for n in nodes}
        for nid, rs in refs.items():
            refs[nid] = [NodeReference(r.node_label, by_label[r.node_label].node_id)
                         if isinstance(r, NodeReference) and r.node_id is None
                         and r.node_label in by_label else r for r in rs]

    def _get(self, node: str | GraphNode, *, what: str = "node") -> GraphNode:
        """A node of this graph by instance, id or label."""
        if isinstance(node, GraphNode):
            if node.node_id in self._nodes:
                return self._nodes[node.node_id]
            key = node.label
        elif isinstance(node, str):
            if node in self._nodes:
                return self._nodes[node]
            for n in self._nodes.values():
                if n.label == node:
                    return n
            key = node
        else:
            raise TypeError(f"graph {self.label!r}: {what} must be a node, label or id, "
                            f"got {type(node).__name__}")
        raise GraphStructureError(
            f"{what} {key!r} is not in graph {self.label!r}; its nodes like it: "
            f"{closest_names(key, self.node_labels)}")

    # ================================================================ structure
    def _commit(self, nodes: list[GraphNode], refs: Mapping[str, list[Any]],
                topo: Topology) -> None:
        by_id = {n.node_id: n for n in nodes}
        for n in nodes:
            if n.get_upstream_refs() != list(refs[n.node_id]):
                n._set_upstream_refs(refs[n.node_id])
        self._nodes = {nid: by_id[nid] for nid in topo.order}
        self._topo = topo
        self._labels_at_commit = {nid: n.label for nid, n in self._nodes.items()}
        self._forward_cache = {}
        self._definition = None
        self._shapes: dict[str, NodeShapes] = {}  # stale once the wiring changes

    def _try_wiring(self, nodes: list[GraphNode], refs: dict[str, list[Any]]) -> None:
        """Validate a new wiring; commit it and mark the graph unbuilt only if valid."""
        self._resolve_label_refs(nodes, refs)
        topo = analyse(nodes, refs, graph_label=self.label)
        ids_before = {n.label: nid for nid, n in self._nodes.items()}
        self._commit(nodes, refs, topo)
        alive = {n.label for n in nodes if isinstance(n, ModelNode)}
        self._freeze.rekey(lambda q: q if q[0] in alive else None)
        for n in nodes:  # a node that replaced another under its label is frozen as it came
            if isinstance(n, ModelNode) and ids_before.get(n.label, n.node_id) != n.node_id:
                self._freeze.mark((n.label,), n.is_frozen)
        self._mirror_frozen()
        self._built = False

    def _sync_labels(self) -> None:
        """Follow node renames: re-key variables and frozen paths."""
        renamed = {old: self._nodes[nid].label for nid, old in self._labels_at_commit.items()
                   if self._nodes[nid].label != old}
        if not renamed:
            return
        refs = {nid: n.get_upstream_refs() for nid, n in self._nodes.items()}
        for nid, rs in refs.items():
            refs[nid] = [NodeReference(self._nodes[r.node_id].label, r.node_id)
                         if isinstance(r, NodeReference) and r.node_id in self._nodes else r
                         for r in rs]
        topo = analyse(list(self._nodes.values()), refs, graph_label=self.label)
        if self._variables is not None:
            self._variables = {c: {renamed.get(k, k): v for k, v in coll.items()}
                               for c, coll in self._variables.items()}
        self._freeze.rekey(lambda q: (renamed.get(q[0], q[0]), *q[1:]))
        shapes = self._shapes  # keyed by node id: a rename does not change them
        self._commit(list(self._nodes.values()), refs, topo)
        self._shapes = shapes

    def _check_backends(self) -> None:
        if self._optimizer is None:
            return
        # bridged torch/sklearn nodes run inside the jitted step (host callbacks)
        backends = {n.backend for n in self._model_nodes() if not getattr(n.model, "bridged", False)}
        if len(backends) > 1:
            raise RuntimeError(
                f"graph {self.label!r} has a global optimizer but its nodes use several "
                f"backends {sorted(backends)}; use stage-wise training (optimizer=None and "
                "an optimizer per node) for mixed-backend graphs")

    def _model_nodes(self) -> list[ModelNode]:
        return [n for n in self._nodes.values() if isinstance(n, ModelNode)]

    # ================================================================ definition
    def _definition_token(self) -> tuple[Any, ...]:
        # what a caller can change without going through a graph mutation: a node's
        # label, the model object it holds, a flow model's own definition (its
        # set_training_at overrides) and a merge node's public fields
        out = []
        for nid, n in self._nodes.items():
            model = getattr(n, "_model", None)
            if model is None:
                what: Any = freeze_value(n.get_config())
            else:
                inner = getattr(model, "definition", None)
                what = (ident(model), inner if isinstance(inner, GraphDef) else None)
            out.append((nid, n.label, what))
        return tuple(out)

    @property
    def definition(self) -> GraphDef:
        """The graph's immutable, hashable definition (structure without variables).

        Equal for graphs of equal structure (labels, models and their configs, wiring,
        merges, shapes); a new value after every mutation. Compiled programs key on it:
        ``apply(graph.definition, variables, inputs)`` is the pure forward.

        Example:
            >>> import numpy as np
            >>> from modjax import FeatureSet
            >>> from modjax import ModelGraph
            >>> from modjax import Linear
            >>> from modjax import ModelNode
            >>> fs = FeatureSet.from_dict("D", {"x": np.zeros((4, 3)), "y": np.zeros(4)},
            ...                           "x", "y", register=False)
            >>> def make():
            ...     n = ModelNode("Lin", Linear(2), upstream_ref=fs.reference(), register=False)
            ...     return ModelGraph([n], register=False).build()
            >>> make().definition == make().definition
            True
        """
        self._sync_labels()
        token = self._definition_token()
        if self._definition is None or self._definition_at != token:
            from modjax.graph.graph_def import model_graph_definition

            self._definition = model_graph_definition(self)
            self._definition_at = token
        return self._definition

    def definition_hash(self, at: str | None = None) -> str | None:
        """Architecture hash of the graph or the part at label path ``at``
        (see :func:`modjax.graph.definition.definition_hash`)."""
        return definition_hash(self, at)

    # ================================================================ properties
    @property
    def nodes(self) -> dict[str, GraphNode]:
        """All nodes keyed by node_id, in topological order."""
        self._sync_labels()
        return dict(self._nodes)

    @property
    def node_labels(self) -> list[str]:
        """Node labels in topological order."""
        return [n.label for n in self._nodes.values()]

    @property
    def head_nodes(self) -> dict[str, GraphNode]:
        """Nodes fed only by FeatureSets (no upstream node), keyed by node_id."""
        return {nid: n for nid, n in self._nodes.items()
                if not any(isinstance(i, str) for i in self._topo.inputs[nid])}

    @property
    def input_nodes(self) -> dict[str, GraphNode]:
        """Nodes with at least one FeatureSet input (they need an ``inputs`` entry)."""
        return {nid: n for nid, n in self._nodes.items()
                if any(not isinstance(i, str) for i in self._topo.inputs[nid])}

    @property
    def tail_nodes(self) -> dict[str, GraphNode]:
        """Nodes whose output no other node consumes, keyed by node_id."""
        return {nid: n for nid, n in self._nodes.items() if not self._topo.downstream[nid]}

    @property
    def is_built(self) -> bool:
        return self._built

    @property
    def optimizer(self) -> Any:
        """The shared optimizer (None for stage-wise training)."""
        return self._optimizer

    @property
    def backend(self) -> str | None:
        """The shared backend of the trainable nodes when a global optimizer is set."""
        if self._optimizer is None:
            return None
        backends = {n.backend for n in self._model_nodes()}
        return backends.pop() if len(backends) == 1 else None

    def upstream_of(self, node: str | GraphNode) -> list[str]:
        """Labels of a node's inputs (node labels or FeatureSet labels), in order."""
        n = self._get(node)
        return [self._nodes[i].label if isinstance(i, str) else ref_label(i)
                for i in self._topo.inputs[n.node_id]]

    def downstream_of(self, node: str | GraphNode) -> list[str]:
        """Labels of the nodes that consume ``node``'s output."""
        n = self._get(node)
        return [self._nodes[i].label for i in self._topo.downstream[n.node_id]]

    def node_shapes(self, node: str | GraphNode) -> NodeShapes:
        """Inferred shapes of a node (after :meth:`build`)."""
        self._require_built("node_shapes")
        return self._ensure_shapes()[self._get(node).node_id]

    # ================================================================ build / init
    def _require_built(self, what: str) -> None:
        self._sync_labels()
        if not self._built:
            raise RuntimeError(f"graph {self.label!r} is not built; call build() before {what}")

    def _ensure_shapes(self) -> dict[str, NodeShapes]:
        self._sync_labels()
        if not self._shapes:
            self._shapes = infer_shapes(self._nodes, self._topo)
            self._push_shapes(self._shapes)
        return self._shapes

    def _push_shapes(self, shapes: Mapping[str, NodeShapes]) -> None:
        self._definition = None
        for nid, s in shapes.items():
            n = self._nodes[nid]
            if isinstance(n, ModelNode):
                n._input_shape, n._output_shape = s.input_shapes[0], s.output_shape
            else:
                n.input_shapes = {ref_label(r) if not isinstance(i, str) else
                                  self._nodes[i].label: sh for r, i, sh in zip(
                                      n.get_upstream_refs(), self._topo.inputs[nid],
                                      s.input_shapes)}
                n.output_shape = s.output_shape

    def build(self, *, force: bool = False, key: Any = None) -> ModelGraph:
        """Infer shapes and initialise variables.

        A no-op when already built, unless ``force``. After a mutation, nodes whose id,
        model and shapes are unchanged keep their variables; the others are initialised
        from ``fold_in(key, node label)``, so every node's initial values depend only on
        the root key and its label. Passing ``key`` re-initialises every node.

        Args:
            force: rebuild even if built.
            key: root PRNG key (or int seed); default: the key of the first build, else 0.

        Returns:
            self

        Raises:
            ShapeMismatchError: naming the node, its upstream and both shapes.
        """
        self._sync_labels()
        if self._built and not force:
            return self
        shapes = infer_shapes(self._nodes, self._topo)
        root = _as_key(key if key is not None else self._key)
        old = self._variables or {"params": {}, "state": {}}
        params, state, meta, fresh = {}, {}, {}, []
        for nid in self._topo.order:
            node = self._nodes[nid]
            if not isinstance(node, ModelNode):
                continue
            s = shapes[nid]
            m = (id(node.model), s.input_shapes[0], s.output_shape)
            prev = self._var_meta.get(nid)
            if key is None and prev is not None and prev[1:] == m and prev[0] in old["params"]:
                params[node.label] = old["params"][prev[0]]
                state[node.label] = old["state"][prev[0]]
            else:
                fresh.append(nid)
            meta[nid] = (node.label, *m)
        for nid, (p, st) in self._init_nodes(root, shapes, fresh).items():
            params[self._nodes[nid].label], state[self._nodes[nid].label] = p, st
        order = [self._nodes[nid].label for nid in meta]
        params = {lab: params[lab] for lab in order}
        state = {lab: state[lab] for lab in order}
        variables = {"params": params, "state": state}
        self._shapes, self._variables, self._var_meta, self._key = shapes, variables, meta, root
        self._push_shapes(shapes)
        self._built = True
        self._forward_cache = {}
        self._init_opt_state()
        for n in self._model_nodes():
            n._bind_graph(self)  # node-level calls (node(x), node.get_state()) read this graph
        return self

    def _init_opt_state(self) -> None:
        opt = self._optimizer
        if opt is None or not callable(getattr(opt, "init", None)):
            return
        params = self._variables["params"]  # type: ignore[index]
        if self._opt_state is not None and getattr(self, "_opt_params_def", None) == \
                jax.tree.structure(params):
            return
        self._opt_state = opt.init(params)
        self._opt_params_def = jax.tree.structure(params)

    def init(self, key: Any) -> dict[str, dict[str, Any]]:
        """Fresh variables from one key (pure, jittable; shapes are inferred if needed).

        Args:
            key: PRNG key (or int seed).

        Returns:
            ``{"params": {label: ...}, "state": {label: ...}}`` for every ModelNode.
        """
        shapes = self._ensure_shapes()
        nids = [nid for nid in self._topo.order if isinstance(self._nodes[nid], ModelNode)]
        done = self._init_nodes(_as_key(key), shapes, nids)
        return {"params": {self._nodes[n].label: done[n][0] for n in nids},
                "state": {self._nodes[n].label: done[n][1] for n in nids}}

    def _init_nodes(self, root: Any, shapes: Mapping[str, NodeShapes],
                    nids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Initialise nodes from ``fold_in(root, label)``.

        Built-in models with the same config and input shape are initialised together
        in one cached, jitted program (see :func:`_grouped_init`), which is what keeps
        building a graph of hundreds of similar nodes fast; the values are those of
        calling each node's ``init`` on its own key.
        """
        groups: dict[Any, list[str]] = {}
        out: dict[str, tuple[Any, Any]] = {}
        for nid in nids:
            node = self._nodes[nid]
            in_shape = shapes[nid].input_shapes[0]
            gkey = model_cache_key(node.model, in_shape)
            if gkey is None:
                out[nid] = node.model.init(_node_key(root, node.label), in_shape)
            else:
                groups.setdefault(gkey, []).append(nid)
        if not groups:
            return out
        models = [self._nodes[m[0]].model for m in groups.values()]
        spec = tuple((gk, len(members), _model_draws(model, gk[2]))
                     for (gk, members), model in zip(groups.items(), models))
        fn = _grouped_init(spec, models, _prefix_draws(root))
        seeds = tuple(np.array([label_seed(self._nodes[n].label) for n in members], np.uint32)
                      for members in groups.values())
        stacked = fn(root, seeds)
        traced = isinstance(root, jax.core.Tracer)
        for members, tree in zip(groups.values(), stacked):
            if not traced:
                # one device->host copy per group, then cheap per-node arrays (slicing on
                # the device would dispatch a program per slice)
                tree = jax.tree.map(np.asarray, tree)
            for i, nid in enumerate(members):
                out[nid] = jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), tree)
        return out

    # freezing: see ModelGraphFreezing (model_freezing.py)

    # ================================================================ config / state
    def get_config(self) -> dict[str, Any]:
        """Structure only (JSON): nodes, optimizer, frozen paths."""
        self._sync_labels()
        opt = self._optimizer
        opt_cfg = None
        if opt is not None:
            try:
                opt_cfg = serialize(opt)
            except ConfigError:
                opt_cfg = None
        return {"version": CONFIG_FORMAT_VERSION, "label": self.label,
                "nodes": [serialize(n) for n in self._nodes.values()],
                "optimizer": opt_cfg, "frozen_paths": sorted(self.frozen_paths)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, register: bool = True,
                    allow_packaged_code: bool = False,
                    ctx: ExperimentContext | None = None) -> ModelGraph:
        """Rebuild the structure from :meth:`get_config` (not built; no values).

        Args:
            config: the config.
            register: register the nodes (with their saved ids) and the graph.
            allow_packaged_code: import user classes named in the config.
            ctx: the context to register in (default: active).
        """
        version = int(config.get("version", CONFIG_FORMAT_VERSION))
        if version > CONFIG_FORMAT_VERSION:
            raise ConfigError(f"ModelGraph config version {version} is newer than this modjax "
                              f"({CONFIG_FORMAT_VERSION})")
        ctx = ctx or ExperimentContext.get_active()
        nodes = []
        with ctx.activate():
            for ncfg in config["nodes"]:
                ncls = get_registered(ncfg["class"], module=ncfg.get("module"),
                                      allow_packaged_code=allow_packaged_code)
                kwargs: dict[str, Any] = {"register": register}
                if issubclass(ncls, ModelNode):
                    kwargs["allow_packaged_code"] = allow_packaged_code
                nodes.append(ncls.from_config(ncfg["config"], **kwargs))
            opt = None
            if config.get("optimizer") is not None:
                ocfg = config["optimizer"]
                opt = get_registered(ocfg["class"], module=ocfg.get("module"),
                                     allow_packaged_code=allow_packaged_code).from_config(
                    ocfg["config"])
            graph = cls(nodes, optimizer=opt, label=config.get("label", "model-graph"),
                        ctx=ctx, register=register)
        graph._set_frozen({split_path(p) for p in config.get("frozen_paths", [])})
        return graph

    def get_state(self) -> dict[str, Any]:
        """Learned values: ``{"is_built", "nodes": {label: {"params", "state"}},
        "opt_state"}`` (arrays only; structure is in :meth:`get_config`)."""
        self._sync_labels()
        nodes = {}
        if self._variables is not None:
            nodes = {lab: {"params": self._variables["params"][lab],
                           "state": self._variables["state"][lab]}
                     for lab in self._variables["params"]}
        return {"is_built": self._built, "nodes": nodes, "opt_state": self._opt_state}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` output (validated like :meth:`set_variables`)."""
        nodes = state.get("nodes") or {}
        if nodes:
            self.set_variables({"params": {k: v["params"] for k, v in nodes.items()},
                                "state": {k: v["state"] for k, v in nodes.items()}})
        elif state.get("is_built"):
            raise ValueError(f"state for graph {self.label!r} says built but has no nodes")
        if state.get("opt_state") is not None:
            self.set_opt_state(state["opt_state"])

    def predict(self, data: Any, *, node: Any = None, batch_size: int = 1024,
                unscale: bool = True) -> Any:
        """Predictions for new raw data: the FeatureSet's recorded scalers applied, the
        graph run jitted in chunks, outputs in the targets' units
        (:func:`modjax.graph.predict.predict` documents the arguments)."""
        from modjax.graph.predict import predict

        return predict(self, data, node=node, batch_size=batch_size, unscale=unscale)

    # ================================================================ views
    def visualize(self, *, show_features: bool = False, show_targets: bool = False,
                  show_tags: bool = False, show_frozen: bool = True,
                  show_splits: bool = False) -> str:
        """Mermaid flowchart of the graph (edges carry shapes once built)."""
        from modjax.viz.mermaid import graph_to_mermaid

        self._sync_labels()
        return graph_to_mermaid(self, show_features=show_features, show_targets=show_targets,
                                show_tags=show_tags, show_frozen=show_frozen,
                                show_splits=show_splits)

    def summary(self) -> str:
        """Table of nodes, shapes and parameter counts."""
        from modjax.viz.summary import graph_summary

        self._sync_labels()
        return graph_summary(self)

    def __repr__(self) -> str:
        return (f"ModelGraph(label={self.label!r}, nodes={self.node_labels}, "
                f"built={self._built})")
