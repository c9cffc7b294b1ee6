"""Running a ``ModelGraph``: the pure ``apply``, target/tag routing and the cached ``forward``.

A mixin of :class:`~modjax.graph.model_graph.ModelGraph`, which supplies the node table
(``_nodes``), the topology (``_topo``), shape inference (``_ensure_shapes``), lookup
(``_get``) and the current variables. These methods only read that structure and walk
the topological order at trace time, so they live apart from the shell that builds,
edits and stores the graph.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import LabelPathError, ModjaxError, ShapeMismatchError, closest_names
from modjax.graph.definition import GraphDef
from modjax.graph.model_init import _node_key
from modjax.graph.nodes import GraphNode, MergeNode, ModelNode
from modjax.graph.sample_forward import is_sample_form, sample_forward
from modjax.paths import join_path, split_path

__all__ = ["ModelGraphApply"]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jit_forward(definition: GraphDef, labels: tuple[str, ...], variables: Any, xs: Any) -> Any:
    # one program per (definition, active labels, input shapes), shared by every graph of
    # that structure; a mutated graph has another definition, hence another program
    return definition.apply(variables, xs, active_nodes=labels)[0]


class ModelGraphApply:
    """Execution mixin of ModelGraph: ``apply``, ``route_targets``/``route_tags``, ``forward``."""

    # ================================================================ apply
    def _plan(self, active_nodes: Iterable[Any] | None) -> tuple[str, ...]:
        if active_nodes is None:
            return self._topo.order
        if isinstance(active_nodes, (str, GraphNode)):
            active_nodes = [active_nodes]
        needed: set[str] = set()
        stack = [self._get(a, what="active node").node_id for a in active_nodes]
        while stack:
            nid = stack.pop()
            if nid in needed:
                continue
            needed.add(nid)
            stack.extend(i for i in self._topo.inputs[nid] if isinstance(i, str))
        return tuple(nid for nid in self._topo.order if nid in needed)

    def _input_value(self, node: GraphNode, ref: Any, inputs: Mapping[str, Any],
                     domain: str) -> Any:
        n_fs = sum(1 for i in self._topo.inputs[node.node_id] if not isinstance(i, str))
        if node.label in inputs and n_fs == 1:
            value = inputs[node.label]
        elif ref.featureset_label in inputs:
            value = inputs[ref.featureset_label]
        elif domain == "targets":
            return None
        else:
            raise KeyError(
                f"node {node.label!r} reads FeatureSet {ref.featureset_label!r} but inputs has "
                f"neither {node.label!r} nor {ref.featureset_label!r}; got keys {sorted(inputs)}")
        if isinstance(value, Mapping):
            value = value.get(domain)
        return value

    def _check_input(self, node: GraphNode, ref: Any, x: Any) -> None:
        want = tuple(int(s) for s in ref.feature_shape)
        got = tuple(getattr(x, "shape", ())[1:])
        if got != want:
            raise ShapeMismatchError(
                f"node {node.label!r} expects features of per-sample shape {want} from "
                f"FeatureSet {ref.featureset_label!r}, got an array of shape "
                f"{getattr(x, 'shape', None)} (batch axis first)")

    def _split_capture(self, capture: Iterable[str]) -> dict[str, list[str]]:
        subs: dict[str, list[str]] = {}
        for path in capture:
            parts = split_path(path)
            if not parts:
                raise LabelPathError("capture paths must be non-empty")
            node = next((n for n in self._nodes.values() if n.label == parts[0]), None)
            if node is None:
                raise LabelPathError(
                    f"capture path {path!r} does not resolve: no node {parts[0]!r} in graph "
                    f"{self.label!r}; did you mean {closest_names(parts[0], self.node_labels)}?")
            if len(parts) > 1:
                if not (isinstance(node, ModelNode) and callable(
                        getattr(node.model, "apply_capture", None))):
                    raise LabelPathError(
                        f"capture path {path!r}: node {parts[0]!r} has no tagged values inside "
                        "(its model does not implement apply_capture)")
                subs.setdefault(node.node_id, []).append(join_path(parts[1:]))
            else:
                subs.setdefault(node.node_id, [])
        return subs

    def apply(self, variables: Mapping[str, Any], inputs: Mapping[str, Any], *, key: Any = None,
              train: bool = False, active_nodes: Iterable[Any] | None = None,
              capture: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run the graph (pure, jittable; Python walks the nodes once per trace).

        Args:
            variables: ``{"params": {label: ...}, "state": {label: ...}}``.
            inputs: features per head node label (or per FeatureSet label); a value may
                also be a batch dict with a ``"features"`` entry.
            key: PRNG key for stochastic layers (each node gets ``fold_in(key, label)``).
            train: training mode (dropout on, batch statistics updated).
            active_nodes: run only these nodes and what they need (labels, ids, nodes);
                pass a tuple when jitting with ``static_argnames``.
            capture: dotted tag paths inside nested graph models to return as well
                (``"Encoder.hidden"``); node labels are always in the outputs.

        Returns:
            ``(outputs, new_state)``: outputs by node label for every executed node (plus
            captured values under their paths); the full state with executed nodes'
            entries updated.
        """
        self._ensure_shapes()
        plan = self._plan(active_nodes)
        captures = self._split_capture(capture)
        params, old_state = variables["params"], variables["state"]
        new_state = dict(old_state)
        values: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for nid in plan:
            node = self._nodes[nid]
            xs = []
            for item, ref in zip(self._topo.inputs[nid], node.get_upstream_refs()):
                if isinstance(item, str):
                    xs.append(values[item])
                else:
                    x = self._input_value(node, ref, inputs, "features")
                    x = jnp.asarray(x)
                    self._check_input(node, ref, x)
                    xs.append(x)
            if isinstance(node, ModelNode):
                label = node.label
                try:
                    p, s = params[label], old_state[label]
                except KeyError:
                    raise LabelPathError(
                        f"variables have no entry for node {label!r}; labels there: "
                        f"{sorted(params)}") from None
                k = _node_key(key, label)
                try:
                    if captures.get(nid):
                        y, s2, caught = node.model.apply_capture(
                            p, s, xs[0], key=k, train=train, capture=tuple(captures[nid]))
                        for sub, v in caught.items():
                            outputs[f"{label}.{sub}"] = v
                    else:
                        y, s2 = node.model.apply(p, s, xs[0], key=k, train=train)
                except (ModjaxError, ValueError, TypeError) as e:
                    if str(e).startswith(f"node {label!r}"):
                        raise
                    try:  # same exception type, message prefixed with the node label
                        named = type(e)(f"node {label!r}: {e}")
                    except Exception:
                        raise e from None
                    raise named from e
                new_state[label] = s2
            else:
                y = node.merge(xs)
            values[nid] = y
            outputs[node.label] = y
        return outputs, new_state

    def route_targets(self, targets_by_head: Mapping[str, Any], *,
                      active_nodes: Iterable[Any] | None = None) -> dict[str, Any]:
        """Targets each node is compared against (pure, jittable).

        ModelNodes pass their upstream's targets through; merge nodes combine them with
        their target strategy.

        Args:
            targets_by_head: targets per head node label or FeatureSet label (a value
                may be a batch dict with a ``"targets"`` entry).
            active_nodes: restrict to these nodes and their upstream closure.

        Returns:
            ``{node_label: targets}`` (``None`` where no targets reach a node).
        """
        return self._route(targets_by_head, "targets", active_nodes)

    def route_tags(self, tags_by_head: Mapping[str, Any], *,
                   active_nodes: Iterable[Any] | None = None) -> dict[str, Any]:
        """Like :meth:`route_targets` for the tags domain (merge ``tags_strategy``)."""
        return self._route(tags_by_head, "tags", active_nodes)

    def _route(self, by_head: Mapping[str, Any], domain: str,
               active_nodes: Iterable[Any] | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for nid in self._plan(active_nodes):
            node = self._nodes[nid]
            xs = [values[item] if isinstance(item, str) else
                  self._input_value(node, ref, by_head, domain)
                  for item, ref in zip(self._topo.inputs[nid], node.get_upstream_refs())]
            if isinstance(node, MergeNode):
                values[nid] = node.merge_targets(xs) if domain == "targets" else \
                    node.merge_tags(xs)
            else:
                values[nid] = xs[0]
        return {self._nodes[nid].label: v for nid, v in values.items()}

    def forward(self, inputs: Mapping[str, Any], *,
                active_nodes: Iterable[Any] | None = None) -> dict[str, Any]:
        """Evaluate with the current variables (eval mode), jit-compiled and cached.

        Args:
            inputs: as for :meth:`apply`; or ModularML's ``{(head node id,
                FeatureSetReference): SampleData}``, which returns ``{node_id: SampleData}``
                (see :mod:`modjax.graph.sample_forward`).
            active_nodes: labels / ids / nodes to run (plus their upstream closure).

        Returns:
            Outputs by node label for every executed node.
        """
        self._require_built("forward")
        if is_sample_form(inputs):  # ModularML's {(node_id, ref): SampleData} form
            return sample_forward(self, inputs, active_nodes)
        plan = self._plan(active_nodes)
        labels = tuple(self._nodes[nid].label for nid in plan)
        out = _jit_forward(self.definition, labels, self._variables, dict(inputs))
        # jit returns dicts with sorted keys; give them back in topological order
        return {self._nodes[nid].label: out[self._nodes[nid].label] for nid in plan}
