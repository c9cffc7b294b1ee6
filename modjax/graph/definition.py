"""``GraphDef``: the immutable, hashable definition of a graph (the static half of a model).

A graph is two things: a definition (nodes in order, their model configurations and
inferred shapes, wiring, merges, tags, tied modules, training overrides) and the
``variables`` pytree. Both graph kinds (``ModelGraph`` and the flow ``Graph``) hand out a
``GraphDef``; :func:`apply` runs one with variables, purely. Definitions compare by value:
two graphs of the same structure have equal definitions, so every compiled program keyed
on a definition (jitted forwards, a phase's epoch, evaluation programs) is shared between
them, and a mutated graph, whose definition is a new value, never reuses an old program.

Values that have no structural description (a plain function, an optax instance, a user
object without a JSON config) enter the definition by identity through :func:`ident`: the
same object is the same structure, another object is another one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["GraphDef", "apply", "freeze_value", "ident", "model_fingerprint", "definition_hash"]

#: config keys that name an object instance or a training choice, not the architecture
_NOT_ARCHITECTURE = frozenset({"node_id", "featureset_id", "optimizer", "frozen",
                               "frozen_paths", "seed", "input_shape", "train_override"})


class _Ident:
    """Hashable by the identity of the object it holds (and keeps alive)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return hash((_Ident, id(self.obj)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj

    def __repr__(self) -> str:
        return f"<{type(self.obj).__name__} object>"


def ident(obj: Any) -> _Ident:
    """A hashable token equal only to tokens of the very same object.

    The token holds a reference, so the object's ``id`` cannot be reused while a key
    that contains it is alive.

    Args:
        obj: any object.

    Returns:
        The token.

    Example:
        >>> f = lambda x: x
        >>> ident(f) == ident(f), ident(f) == ident(lambda x: x)
        (True, False)
    """
    return _Ident(obj)


def freeze_value(value: Any) -> Any:
    """A hashable, value-comparable form of a JSON-like value.

    Dicts become sorted item tuples, lists and tuples tuples, numpy scalars Python
    scalars; a graph definition stays itself; anything else that is not a plain scalar
    (callables, arrays, objects) is compared by identity (:func:`ident`).

    Args:
        value: the value to freeze.

    Returns:
        A hashable value; equal inputs give equal outputs.

    Example:
        >>> freeze_value({"b": [1, 2], "a": 0.5}) == freeze_value({"a": 0.5, "b": (1, 2)})
        True
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, np.generic):
        return freeze_value(value.item())
    if isinstance(value, GraphDef):
        return value
    if isinstance(value, Mapping):
        return ("dict", tuple(sorted(((str(k), freeze_value(v)) for k, v in value.items()),
                                     key=lambda kv: kv[0])))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(freeze_value(v) for v in value))
    definition = getattr(value, "definition", None)
    if isinstance(definition, GraphDef):
        return definition
    return ident(value)


def model_fingerprint(model: Any) -> Any:
    """What a model contributes to a graph definition.

    A flow ``Graph`` contributes its own definition; a model whose class declares that its
    configuration fully determines it (``_config_determines_model``, the built-ins)
    contributes its class and JSON config, so two equal built-ins are the same structure;
    anything else (adapters holding live modules, plain functions, user models) is
    compared by identity.

    Args:
        model: a node's model.

    Returns:
        A hashable fingerprint.
    """
    definition = getattr(model, "definition", None)
    if isinstance(definition, GraphDef):
        return definition
    cls = type(model)
    if getattr(cls, "_config_determines_model", False) and cls.__module__.startswith("modjax."):
        try:
            cfg = json.dumps(model.get_config(), sort_keys=True)
        except (TypeError, ValueError):
            cfg = None
        if cfg is not None:
            return (cls.__module__, cls.__qualname__, cfg,
                    freeze_value(getattr(model, "output_shape", None)))
    return ident(model)


class GraphDef:
    """An immutable, hashable graph definition (compare by value, run with :func:`apply`).

    Args:
        kind: which builder made it (``"model_graph"`` or ``"flow"``).
        key: the hashable structure that decides equality.
        runner: a frozen snapshot that executes the definition; it is not compared.

    Attributes:
        kind: see above.
        key: see above.

    Example:
        >>> from modjax import Linear
        >>> from modjax.flow import FlowBuilder
        >>> a = FlowBuilder.from_(Linear(3)).build(input_shape=(2,))
        >>> b = FlowBuilder.from_(Linear(3)).build(input_shape=(2,))
        >>> a.definition == b.definition, hash(a.definition) == hash(b.definition)
        (True, True)
    """

    __slots__ = ("kind", "key", "_runner", "_hash")

    def __init__(self, kind: str, key: Any, runner: Any) -> None:
        self.kind = kind
        self.key = key
        self._runner = runner
        self._hash = hash((kind, key))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (isinstance(other, GraphDef) and other._hash == self._hash
                and other.kind == self.kind and other.key == self.key)

    def __repr__(self) -> str:
        return f"GraphDef({self.kind!r}, {self.node_labels})"

    # ----------------------------------------------------------------- the pure core
    def apply(self, variables: Mapping[str, Any], inputs: Any, *, key: Any = None,
              train: bool = False, active_nodes: Iterable[Any] | None = None,
              capture: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Same as :func:`apply` with this definition."""
        return self._runner.apply(variables, inputs, key=key, train=train,
                                  active_nodes=active_nodes, capture=capture)

    def route_targets(self, targets_by_head: Mapping[str, Any], *,
                      active_nodes: Iterable[Any] | None = None) -> dict[str, Any]:
        """Targets each node is compared against (see ``ModelGraph.route_targets``)."""
        return self._runner.route_targets(targets_by_head, active_nodes=active_nodes)

    # ----------------------------------------------------------------- structure queries
    @property
    def nodes(self) -> Mapping[str, Any]:
        """The snapshot's nodes (read only; by node id or label)."""
        return self._runner.nodes

    @property
    def node_labels(self) -> list[str]:
        """Labels of the nodes, in execution order."""
        return list(self._runner.node_labels)

    def upstream_of(self, label: str) -> list[str]:
        """Labels of the nodes feeding ``label``."""
        return list(self._runner.upstream_of(label))

    @property
    def optimizer(self) -> Any:
        """The graph's global optimizer when the definition was taken (not compared)."""
        return getattr(self._runner, "optimizer", None)


def apply(definition: GraphDef, variables: Mapping[str, Any], inputs: Any, *, key: Any = None,
          train: bool = False, active_nodes: Iterable[Any] | None = None,
          capture: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a graph definition with variables (pure and jittable).

    Args:
        definition: ``graph.definition`` of a ModelGraph or a flow Graph.
        variables: ``{"params": ..., "state": ...}``.
        inputs: features per head label (a flow graph also takes its input array, or a
            tuple with auxiliary inputs).
        key: PRNG key for stochastic layers.
        train: training mode.
        active_nodes: run only these nodes and what they need.
        capture: tag paths to return as well.

    Returns:
        ``(outputs by node label, new state)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from modjax import Linear
        >>> from modjax.flow import FlowBuilder
        >>> g = FlowBuilder.from_(Linear(3)).label("lin").build(input_shape=(2,))
        >>> out, _ = jax.jit(apply, static_argnums=0)(g.definition, g.variables, jnp.ones((4, 2)))
        >>> out["lin"].shape
        (4, 3)
    """
    return definition.apply(variables, inputs, key=key, train=train,
                            active_nodes=active_nodes, capture=capture)


def _strip(cfg: Any) -> Any:
    if isinstance(cfg, Mapping):
        return {k: _strip(v) for k, v in cfg.items() if k not in _NOT_ARCHITECTURE}
    if isinstance(cfg, list):
        return [_strip(v) for v in cfg]
    return cfg


def _part_config(obj: Any) -> Any:
    """The architecture config of a graph, a flow node or a model."""
    from modjax.io.registry import serialize

    if hasattr(obj, "tree_children") and hasattr(obj, "get_config"):  # a flow Graph
        cfg = dict(obj.get_config())
        cfg.pop("label", None)
        return cfg
    if hasattr(obj, "node_labels") and hasattr(obj, "get_config"):  # a ModelGraph
        cfg = dict(obj.get_config())
        cfg.pop("label", None)
        # the order nodes were listed in is not architecture (labels are unique)
        cfg["nodes"] = sorted(cfg["nodes"], key=lambda n: json.dumps(_strip(n), sort_keys=True))
        return cfg
    if hasattr(obj, "models") and hasattr(obj, "get_config") and hasattr(obj, "train_override"):
        return obj.get_config()  # a flow node
    return serialize(obj)


def _descend(obj: Any, part: str) -> Any:
    nodes = getattr(obj, "nodes", None)
    if hasattr(obj, "node_labels") and isinstance(nodes, Mapping):  # ModelGraph: by label
        for n in nodes.values():
            if n.label == part:
                return getattr(n, "model", n)
    children = getattr(obj, "_children", None)
    if isinstance(children, Mapping) and part in children:
        return children[part]
    for e in getattr(obj, "entries", ()):
        if e.id == part:
            model = getattr(e.node, "model", None)
            return model if model is not None else e.node
    return None


def definition_hash(graph: Any, at: str | tuple[str, ...] | None = None) -> str | None:
    """Hash of the architecture (model classes and configs, wiring) at a label path.

    Unlike the hash of parameter paths, shapes and dtypes, it tells an encoder with
    ``relu`` from one with ``gelu``. Subgraph checkpoints record it and compare it on
    load. Instance ids, labels of the whole graph, seeds, optimizers, freezing and
    training-mode overrides (``set_training_at``) are not part of the architecture.

    Args:
        graph: a ModelGraph or a flow Graph.
        at: label path of a part (a node label, a child graph, ``"encoder.scan"``);
            ``None`` for the whole graph.

    Returns:
        A hex digest, or ``None`` when the part has no JSON description (a model
        holding code), in which case only shapes can be compared.

    Example:
        >>> from modjax import SequentialMLP
        >>> from modjax.flow import FlowBuilder
        >>> def enc(act):
        ...     return FlowBuilder.from_(SequentialMLP(output_shape=(2,), activation=act)).build()
        >>> definition_hash(enc("relu")) == definition_hash(enc("gelu"))
        False
        >>> definition_hash(enc("relu")) == definition_hash(enc("relu"))
        True
    """
    import hashlib

    from modjax.paths import split_path

    obj = graph
    for part in split_path(at or ()):
        obj = _descend(obj, part)
        if obj is None:
            return None
    try:
        text = json.dumps(_strip(_part_config(obj)), sort_keys=True)
    except Exception:  # no JSON description: only shapes can be compared
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_on(cache: dict[Any, Any], key: Any, make: Callable[[], Any], *,
              limit: int = 64) -> Any:
    """``cache[key]``, made with ``make()`` when absent; the oldest entry goes past ``limit``."""
    try:
        return cache[key]
    except KeyError:
        pass
    value = make()
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value
