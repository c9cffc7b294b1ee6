"""ExperimentContext: the registry that labels and ids resolve against.

FeatureSets and graph nodes are :class:`ExperimentNode`s. Creating one registers it in
the active context (unless registration is disabled), so that references by label
(``ModelGraph(nodes=["Encoder", "Head"])``) and by id resolve. A default context exists
on import; ``with ExperimentContext().activate():`` scopes a fresh one, and
``ctx.temporary()`` reverts every registration made inside it.
"""

from __future__ import annotations

import contextvars
import enum
import uuid
import warnings
from typing import Any

from modjax.errors import RegistrationError, closest_names

__all__ = ["ExperimentContext", "ExperimentNode", "RegistrationPolicy"]


class RegistrationPolicy(enum.StrEnum):
    """What happens when a new node's label is already registered.

    ``error`` raises; ``overwrite`` replaces silently; ``warn`` replaces with a
    warning (the default); ``rename`` keeps both and gives the newcomer a suffix
    (``Encoder`` -> ``Encoder_1``).
    """

    ERROR = "error"
    OVERWRITE = "overwrite"
    WARN = "warn"
    RENAME = "rename"

    @classmethod
    def from_value(cls, value: str | RegistrationPolicy | None) -> RegistrationPolicy:
        if value is None:
            return cls.WARN
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise RegistrationError(
                f"unknown registration policy {value!r}; expected one of "
                f"{[p.value for p in cls]}") from None


class ExperimentNode:
    """Base of everything registered by label and id (FeatureSets, graph nodes).

    Args:
        label: human-readable name; unique within a context.
        node_id: fixed id (used when loading); a new uuid4 hex when None.
        register: register in the active context on creation.
    """

    def __init__(self, label: str, *, node_id: str | None = None, register: bool = True) -> None:
        if not isinstance(label, str) or not label:
            raise RegistrationError(f"a label must be a non-empty string, got {label!r}")
        self._label = label
        self._node_id = node_id or uuid.uuid4().hex
        if register:
            ExperimentContext.get_active().register_experiment_node(self)

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, new_label: str) -> None:
        ctx = ExperimentContext.get_active()
        if ctx.has_node(node_id=self._node_id):
            ctx.update_node_label(self._node_id, new_label)
        self._label = new_label

    @property
    def node_id(self) -> str:
        return self._node_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self._label!r})"


class ExperimentContext:
    """Registry of :class:`ExperimentNode`s by id and label.

    Args:
        experiment: the Experiment this context belongs to, if any.
        registration_policy: ``"error"``, ``"overwrite"``, ``"warn"`` or ``"rename"``.

    Example:
        >>> from modjax.context import ExperimentContext, ExperimentNode
        >>> with ExperimentContext(registration_policy="error").activate() as ctx:
        ...     n = ExperimentNode("a")
        ...     ctx.get_node("a") is n
        True
    """

    def __init__(self, *, experiment: Any = None,
                 registration_policy: RegistrationPolicy | str | None = None) -> None:
        self._experiment = experiment
        self._policy = RegistrationPolicy.from_value(registration_policy)
        self._nodes: dict[str, ExperimentNode] = {}
        self._label_to_id: dict[str, str] = {}
        self._model_graph: Any = None
        self._registration_enabled = True

    # ------------------------------------------------------------------ activation
    @classmethod
    def get_active(cls) -> ExperimentContext:
        """The context that new nodes register in."""
        return _ACTIVE.get()

    def make_active(self) -> ExperimentContext:
        """Make this context the active one from now on (no block to leave).

        An Experiment created without a context does this, as ModularML's does; use
        :meth:`activate` to scope activation to a ``with`` block instead.
        """
        _ACTIVE.set(self)
        return self

    def activate(self) -> _Scope:
        """Make this context the active one inside a ``with`` block.

        Returns:
            a context manager yielding this context; leaving the block restores the
            previously active one.

        Example:
            >>> outer = ExperimentContext.get_active()
            >>> with ExperimentContext().activate() as ctx:
            ...     ExperimentContext.get_active() is ctx
            True
            >>> ExperimentContext.get_active() is outer
            True
        """
        token: list[contextvars.Token] = []

        def enter() -> ExperimentContext:
            token.append(_ACTIVE.set(self))
            return self

        return _Scope(enter, lambda: _ACTIVE.reset(token.pop()))

    @classmethod
    def dont_register(cls) -> _Scope:
        """Disable registration in the active context inside a ``with`` block.

        Example:
            >>> with ExperimentContext().activate() as ctx:
            ...     with ExperimentContext.dont_register():
            ...         n = ExperimentNode("hidden")
            ...     ctx.has_node(label="hidden")
            False
        """
        saved: list[tuple[ExperimentContext, bool]] = []

        def enter() -> None:
            ctx = cls.get_active()
            saved.append((ctx, ctx._registration_enabled))
            ctx._registration_enabled = False

        def leave() -> None:
            ctx, prev = saved.pop()
            ctx._registration_enabled = prev

        return _Scope(enter, leave)

    def temporary(self) -> _Scope:
        """Revert all registrations, graph, policy and experiment changes on exit.

        Example:
            >>> with ExperimentContext().activate() as ctx:
            ...     with ctx.temporary():
            ...         ctx.set_registration_policy("error")
            ...         n = ExperimentNode("fold_node")
            ...     ctx.has_node(label="fold_node"), ctx.registration_policy.value
            (False, 'warn')
        """
        saved: list[dict[str, Any]] = []

        def enter() -> ExperimentContext:
            saved.append(self.get_state())
            return self

        return _Scope(enter, lambda: self.set_state(saved.pop()))

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """Snapshot of the registries (objects by reference) for :meth:`set_state`."""
        return {
            "nodes": dict(self._nodes),
            "labels": dict(self._label_to_id),
            "model_graph": self._model_graph,
            "policy": self._policy,
            "experiment": self._experiment,
        }

    def all_or_nothing(self) -> _Scope:
        """Scope whose registrations are undone if it raises (loads use it).

        Every node registered (and every registration replaced) inside the block is
        rolled back when an exception leaves it, so a failed load leaves the context as
        it was and loading a good artifact afterwards meets no stale labels.

        Example:
            >>> ctx = ExperimentContext()
            >>> try:
            ...     with ctx.all_or_nothing():
            ...         ctx.register_experiment_node(ExperimentNode("a", register=False))
            ...         raise ValueError("load failed")
            ... except ValueError:
            ...     pass
            >>> ctx.has_node(label="a")
            False
        """
        saved: list[dict[str, Any]] = []

        def enter() -> ExperimentContext:
            saved.append(self.get_state())
            return self

        def leave(failed: bool) -> None:
            state = saved.pop()
            if failed:
                self.set_state(state)

        return _Scope(enter, leave, pass_failure=True)

    def set_state(self, state: dict[str, Any]) -> None:
        self._nodes = dict(state["nodes"])
        self._label_to_id = dict(state["labels"])
        self._model_graph = state["model_graph"]
        self._policy = state["policy"]
        self._experiment = state["experiment"]

    # ------------------------------------------------------------------ policy / experiment
    @property
    def registration_policy(self) -> RegistrationPolicy:
        return self._policy

    def set_registration_policy(self, policy: str | RegistrationPolicy) -> None:
        self._policy = RegistrationPolicy.from_value(policy)

    def get_experiment(self) -> Any:
        return self._experiment

    def set_experiment(self, experiment: Any, *, reset_registries: bool = False) -> None:
        if reset_registries:
            self._nodes.clear()
            self._label_to_id.clear()
            self._model_graph = None
        self._experiment = experiment

    @property
    def model_graph(self) -> Any:
        return self._model_graph

    def register_model_graph(self, graph: Any) -> None:
        """Associate a ModelGraph with this context (the last one registered wins)."""
        self._model_graph = graph

    # ------------------------------------------------------------------ nodes
    def register_experiment_node(self, node: ExperimentNode, *,
                                 check_label_collision: bool = True) -> None:
        """Register ``node``, resolving a label collision with the context's policy."""
        if not isinstance(node, ExperimentNode):
            raise TypeError(f"expected an ExperimentNode, got {type(node).__name__}")
        if not self._registration_enabled:
            return
        if node.node_id in self._nodes and self._nodes[node.node_id] is not node:
            if self._policy is RegistrationPolicy.ERROR:
                raise RegistrationError(
                    f"node id {node.node_id} ({node.label!r}) is already registered")
            self.remove_node(node_id=node.node_id)
        old_id = self._label_to_id.get(node.label)
        if check_label_collision and old_id is not None and old_id != node.node_id:
            policy = self._policy
            if policy is RegistrationPolicy.ERROR:
                raise RegistrationError(
                    f"a node labelled {node.label!r} is already registered in this "
                    "ExperimentContext (registration_policy='error'); choose another label "
                    "or use registration_policy='overwrite'/'rename'")
            if policy is RegistrationPolicy.RENAME:
                node._label = self._free_label(node.label)
            else:
                if policy is RegistrationPolicy.WARN:
                    warnings.warn(
                        f"overwriting registered node {node.label!r} in the active "
                        "ExperimentContext", stacklevel=3)
                self._nodes.pop(old_id, None)
        self._nodes[node.node_id] = node
        self._label_to_id[node.label] = node.node_id

    def _free_label(self, label: str) -> str:
        i = 1
        while f"{label}_{i}" in self._label_to_id:
            i += 1
        return f"{label}_{i}"

    def has_node(self, *, node_id: str | None = None, label: str | None = None) -> bool:
        if node_id is not None:
            return node_id in self._nodes
        return label in self._label_to_id

    def get_node(self, val: str | None = None, *, node_id: str | None = None,
                 label: str | None = None, enforce_type: type | str | None = None) -> ExperimentNode:
        """Look a node up by id or label (``val`` tries the id first).

        Raises:
            RegistrationError: no such node, or it is not of ``enforce_type``.
        """
        given = [v is not None for v in (val, node_id, label)]
        if sum(given) != 1:
            raise ValueError("give exactly one of val, node_id, label")
        node = None
        if val is not None:
            node = self._nodes.get(val) or self._nodes.get(self._label_to_id.get(val, ""))
        elif node_id is not None:
            node = self._nodes.get(node_id)
        else:
            node = self._nodes.get(self._label_to_id.get(label, ""))
        if node is None:
            key = val or node_id or label
            raise RegistrationError(
                f"no node {key!r} in the active ExperimentContext; registered labels like it: "
                f"{closest_names(str(key), self._label_to_id)}")
        if enforce_type is not None:
            ok = (type(node).__name__ == enforce_type or any(
                c.__name__ == enforce_type for c in type(node).__mro__)) if isinstance(
                enforce_type, str) else isinstance(node, enforce_type)
            if not ok:
                name = enforce_type if isinstance(enforce_type, str) else enforce_type.__name__
                raise RegistrationError(
                    f"node {node.label!r} is a {type(node).__name__}, expected a {name}")
        return node

    def remove_node(self, *, node_id: str | None = None, label: str | None = None,
                    error_if_missing: bool = True) -> ExperimentNode | None:
        if (node_id is None) == (label is None):
            raise ValueError("give exactly one of node_id, label")
        nid = node_id if node_id is not None else self._label_to_id.get(label)  # type: ignore[arg-type]
        node = self._nodes.pop(nid, None) if nid is not None else None
        if node is None:
            if error_if_missing:
                raise KeyError(f"no node {node_id or label!r} in the ExperimentContext")
            return None
        if self._label_to_id.get(node.label) == nid:
            del self._label_to_id[node.label]
        return node

    def update_node_label(self, node_id: str, new_label: str, *,
                          check_label_collision: bool = True) -> None:
        if node_id not in self._nodes:
            raise KeyError(f"node id {node_id} is not registered")
        node = self._nodes[node_id]
        other = self._label_to_id.get(new_label)
        if check_label_collision and other is not None and other != node_id:
            raise RegistrationError(f"label {new_label!r} is already used by another node")
        if self._label_to_id.get(node.label) == node_id:
            del self._label_to_id[node.label]
        self._label_to_id[new_label] = node_id

    @property
    def available_nodes(self) -> dict[str, ExperimentNode]:
        return dict(self._nodes)

    def _of_type(self, typename: str) -> dict[str, ExperimentNode]:
        return {k: n for k, n in self._nodes.items()
                if any(c.__name__ == typename for c in type(n).__mro__)}

    @property
    def available_featuresets(self) -> dict[str, ExperimentNode]:
        return self._of_type("FeatureSet")

    @property
    def available_computenodes(self) -> dict[str, ExperimentNode]:
        return self._of_type("GraphNode")


class _Scope:
    """A ``with`` scope that undoes its change only in ``__exit__``.

    Generator-based context managers undo their change when the generator is garbage
    collected, too: a scope entered and never left (``cm.__enter__()`` on an object
    that later dies in a reference cycle) would then switch the active context back at
    whatever moment the collector runs, in the middle of unrelated code. This class has
    no finaliser, so a scope that is never left simply stays in effect.
    """

    __slots__ = ("_enter", "_exit", "_entered", "_pass_failure")

    def __init__(self, enter: Any, leave: Any, *, pass_failure: bool = False) -> None:
        self._enter, self._exit, self._entered = enter, leave, False
        self._pass_failure = pass_failure  # leave(failed) learns whether the block raised

    def __enter__(self) -> Any:
        if self._entered:
            raise RuntimeError("this context scope is already entered; create a new one")
        self._entered = True
        return self._enter()

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        if self._pass_failure:
            self._exit(exc[0] is not None)
        else:
            self._exit()


_DEFAULT = ExperimentContext()
_ACTIVE: contextvars.ContextVar[ExperimentContext] = contextvars.ContextVar(
    "modjax_experiment_context", default=_DEFAULT)
