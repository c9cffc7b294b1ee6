"""Pure training and evaluation steps (the functional core of the training layer).

``make_train_step(graph, losses, optimizer)`` returns ``step(carry, batch) -> (carry,
metrics)`` with ``carry = {"variables", "opt_state", "key", "step", "frozen"}``; a
user can put it inside their own ``jit``/``lax.scan``. ``batch`` is
``{head_label: {role: {"features", "targets", "tags", "weights", "mask", ...}}}``
(a single-role head may also be given as the role batch itself, role ``"default"``).

Graph-wise training (an optimizer is given, or the graph has one): one loss over all
``AppliedLoss``es, one gradient, one optimizer step. Stage-wise training (no global
optimizer): each trainable node has its own ``Optimizer``; node ``k`` is updated with
the gradient of *its own* losses with every other node's parameters behind
``stop_gradient`` -- exactly "stop_gradient at node inputs". The forward passes for
the different nodes are identical programs, so XLA computes the forward once; it is
still one jitted step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from modjax.errors import LabelPathError, closest_names
from modjax.graph.definition import GraphDef
from modjax.paths import split_path
from modjax.protocols import HasOptimizer, NodeGraph
from modjax.train.losses import AppliedLoss, LossRef
from modjax.train.metrics import AppliedMetric
from modjax.train.optim import Optimizer, frozen_mask

__all__ = ["make_train_step", "make_eval_step", "init_train_carry", "normalize_batch",
           "node_labels", "graph_optimizers"]

DEFAULT_ROLE = "default"
_ROLE_KEYS = ("features", "targets", "mask")


# --------------------------------------------------------------------------- graph views
def node_labels(graph: Any) -> list[str]:
    """Labels of the graph's nodes (ModelGraph ``nodes``, else the variables' keys)."""
    nodes = getattr(graph, "nodes", None)
    if isinstance(nodes, Mapping) and nodes:
        return [getattr(n, "label", k) for k, n in nodes.items()]
    if nodes is not None and not isinstance(nodes, Mapping):
        return [getattr(n, "label", str(n)) for n in nodes]
    variables = getattr(graph, "variables", None) or {}
    return list(variables.get("params", {}))


def _node(graph: Any, label: str) -> Any:
    nodes = getattr(graph, "nodes", None)
    if isinstance(nodes, Mapping):
        if label in nodes:
            return nodes[label]
        for n in nodes.values():
            if getattr(n, "label", None) == label:
                return n
    elif nodes is not None:
        for n in nodes:
            if getattr(n, "label", None) == label:
                return n
    return None


def traced_graph(graph: Any) -> Any:
    """What a step traces: the graph's immutable definition when it has one.

    A step must not read the live shell at trace time: a graph mutated after the step
    was built keeps the definition the step was made for.
    """
    definition = getattr(graph, "definition", None)
    return definition if isinstance(definition, GraphDef) else graph


def as_optimizer(opt: Any) -> Optimizer:
    """An :class:`Optimizer` for ``opt`` (an Optimizer, or any optax transformation)."""
    if isinstance(opt, optax.GradientTransformation):
        return Optimizer(opt)
    return opt


def graph_optimizers(graph: Any, optimizer: Any = None) -> Optimizer | dict[str, Optimizer]:
    """The global optimizer, or ``{node_label: Optimizer}`` for stage-wise training.

    A plain optax transformation (``optax.adam(1e-3)``, a chain, ...) is accepted
    wherever an :class:`Optimizer` is, and freezes the same way.
    """
    if optimizer is not None:
        opt = optimizer
    else:
        opt = graph.optimizer if isinstance(graph, HasOptimizer) else None
    if opt is not None:
        return as_optimizer(opt)
    out = {}
    for label in node_labels(graph):
        node_opt = getattr(_node(graph, label), "optimizer", None)
        if node_opt is not None:
            out[label] = as_optimizer(node_opt)
    return out


def _upstream_heads(graph: Any, label: str, heads: Sequence[str]) -> list[str]:
    """Heads whose data reaches ``label`` (all heads when the graph cannot tell: a graph
    that is not a :class:`~modjax.protocols.NodeGraph` has no wiring to walk)."""
    if isinstance(graph, NodeGraph):
        up = graph.upstream_of
        # walk the graph upwards: only the heads feeding this node weigh its loss (heads
        # of independent branches may even have other batch sizes)
        labels = set(node_labels(graph))
        found, stack = set(), [label]
        while stack:
            n = stack.pop()
            if n in found or n not in labels:
                continue
            found.add(n)
            stack.extend(up(n))
        got = [h for h in heads if h in found]
        if got:
            return got
    return list(heads)


def normalize_batch(batch: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{head: {role: role_batch}}`` from a batch that may omit the role level."""
    out = {}
    for head, b in batch.items():
        if isinstance(b, Mapping) and "features" in b:
            out[head] = {DEFAULT_ROLE: b}
        else:
            out[head] = dict(b)
    return out


# --------------------------------------------------------------------------- loss wiring
class _Wiring:
    """Loss references resolved against the graph's labels and the batch's roles."""

    def __init__(self, graph: Any, losses: Sequence[AppliedLoss], *, what: str) -> None:
        self.graph = graph
        self.losses = list(losses)
        self.labels = node_labels(graph)
        seen: dict[str, AppliedLoss] = {}
        for al in self.losses:
            if not isinstance(al, (AppliedLoss, AppliedMetric)):
                raise TypeError(f"{what}: losses must be AppliedLoss objects, got {type(al).__name__}")
            if al.node not in self.labels:
                raise LabelPathError(
                    f"{what}: AppliedLoss {al.label!r} is on node {al.node!r}, which is not in the "
                    f"graph; nodes like it: {closest_names(al.node, self.labels)}")
            if al.label in seen:
                raise ValueError(f"{what}: two losses share the label {al.label!r}; pass label=")
            seen[al.label] = al
        self.what = what

    def resolve(self, al: AppliedLoss, ref: LossRef, roles: Sequence[str]) -> tuple[str, str]:
        """(role, node) a reference points at."""
        role, node = None, None
        for part in ref.prefix:
            if part in roles and role is None and (part not in self.labels or node is not None):
                role = part
            elif part in self.labels and node is None:
                node = part
            elif part in roles and role is None:
                role = part
            else:
                raise KeyError(
                    f"{self.what}: AppliedLoss {al.label!r} input {ref.text!r}: {part!r} is neither "
                    f"a sampler role ({list(roles)}) nor a graph node (like "
                    f"{closest_names(part, self.labels)})")
        if role is None:
            role = DEFAULT_ROLE if DEFAULT_ROLE in roles else roles[0]
        return role, node or al.node

    def check(self, roles: Sequence[str], heads: Sequence[str]) -> None:
        """Validate every reference against the roles and heads of a batch."""
        for al in self.losses:
            for ref in al.refs:
                _, node = self.resolve(al, ref, roles)
                if ref.domain == "features" and node not in heads and al.node not in heads \
                        and len(heads) != 1:
                    raise KeyError(f"{self.what}: AppliedLoss {al.label!r} input {ref.text!r}: "
                                   f"'features' needs a head node, one of {list(heads)}")

    def value(self, al: AppliedLoss, ref: LossRef, roles: Sequence[str], outs: dict, tgts: dict,
              batch: dict) -> jax.Array:
        role, node = self.resolve(al, ref, roles)
        if ref.domain == "outputs":
            if node not in outs[role]:
                raise KeyError(f"{self.what}: AppliedLoss {al.label!r} needs the outputs of "
                               f"{node!r}, which is not active in this phase")
            return outs[role][node]
        if ref.domain == "targets":
            if node not in tgts[role]:
                raise KeyError(f"{self.what}: AppliedLoss {al.label!r}: node {node!r} has no "
                               f"targets (routed targets exist for {sorted(tgts[role])})")
            return tgts[role][node]
        heads = list(batch)
        head = node if node in batch else (al.node if al.node in batch else heads[0])
        if ref.domain == "features":
            return batch[head][role]["features"]
        tags = batch[head][role].get("tags") or {}
        if ref.key not in tags:
            raise KeyError(f"{self.what}: AppliedLoss {al.label!r}: tag {ref.key!r} is not in the "
                           f"batch of head {head!r}; tags available: {sorted(tags)}")
        return tags[ref.key]

    def mask_weights(self, al: AppliedLoss, roles: Sequence[str], batch: dict) -> tuple[Any, Any]:
        used = []
        for ref in al.refs:
            r, _ = self.resolve(al, ref, roles)
            if r not in used:
                used.append(r)
        heads = _upstream_heads(self.graph, al.node, list(batch))
        mask, weights = None, None
        for r in used:
            for h in heads:
                rb = batch[h][r]
                m = rb.get("mask")
                if m is not None:
                    mask = m if mask is None else mask & m
        r0 = used[0]
        for h in heads:
            w = batch[h][r0].get("weights")
            if w is not None:
                weights = w if weights is None else weights * w
        return mask, weights


def _forward(graph: Any, variables: dict, batch: dict, roles: Sequence[str], *, key: Any,
             train: bool, active_nodes: Any, capture: Sequence[str]) -> tuple[dict, dict, dict]:
    """Run the graph once per role; returns (outputs[role], targets[role], new_state)."""
    outs, tgts = {}, {}
    state = variables["state"]
    for i, role in enumerate(roles):
        inputs = {h: batch[h][role]["features"] for h in batch}
        k = None if key is None else jax.random.fold_in(key, i)
        kwargs: dict[str, Any] = {"key": k, "train": train}
        if active_nodes is not None:
            kwargs["active_nodes"] = active_nodes
        if capture:
            kwargs["capture"] = tuple(capture)
        out, state = graph.apply({"params": variables["params"], "state": state}, inputs, **kwargs)
        outs[role] = out
        targets = {h: batch[h][role]["targets"] for h in batch
                   if batch[h][role].get("targets") is not None}
        tgts[role] = graph.route_targets(targets) if targets else {}
    return outs, tgts, state


def _roles_of(batch: dict) -> list[str]:
    heads = list(batch)
    roles = list(batch[heads[0]])
    for h in heads[1:]:
        if sorted(batch[h]) != sorted(roles):
            raise ValueError(f"heads {heads[0]!r} and {h!r} are fed different sampler roles "
                             f"({sorted(roles)} vs {sorted(batch[h])}); bind samplers with the same roles")
    return roles


def _loss_terms(wiring: _Wiring, losses: Sequence[AppliedLoss], roles, outs, tgts, batch):
    terms = {}
    for al in losses:
        vals = [wiring.value(al, ref, roles, outs, tgts, batch) for ref in al.refs]
        per_sample = al.compute(vals)
        mask, weights = wiring.mask_weights(al, roles, batch)
        terms[al.label] = al.reduce(per_sample, weights=weights, mask=mask)
    return terms


def _metric_stats(wiring: _Wiring, metrics: Sequence[AppliedMetric], roles, outs, tgts,
                  batch) -> dict[str, Any]:
    """Each metric's sufficient statistics of the batch (weights and padding honoured)."""
    stats = {}
    for am in metrics:
        vals = [wiring.value(am, ref, roles, outs, tgts, batch) for ref in am.refs]
        mask, weights = wiring.mask_weights(am, roles, batch)
        stats[am.label] = am.batch_stats(vals, weights=weights, mask=mask)
    return stats


def _records(record: Iterable[str], capture: Sequence[str], outs: dict, tgts: dict) -> dict:
    rec: dict[str, Any] = {"outputs": {}, "targets": {}, "tags": {}}
    for node in record:
        rec["outputs"][node] = {r: outs[r][node] for r in outs if node in outs[r]}
        t = {r: tgts[r][node] for r in tgts if node in tgts[r]}
        if t:
            rec["targets"][node] = t
    for tag in capture:
        rec["tags"][tag] = {r: outs[r][tag] for r in outs if tag in outs[r]}
    return rec


# --------------------------------------------------------------------------- train step
def check_stage_wise(graph: Any, opt: Any, active_nodes: Sequence[str] | None = None) -> None:
    """Refuse stage-wise training while a trainable node has no optimizer.

    It depends on what is frozen now, which a compiled program does not: callers that
    reuse a program run it before every use.

    Args:
        graph: the graph to train.
        opt: what :func:`graph_optimizers` returned (a dict means stage-wise).
        active_nodes: the nodes that run (None: all).

    Raises:
        ValueError: naming the trainable node without an optimizer.
    """
    if not isinstance(opt, dict):
        return
    params = (getattr(graph, "variables", None) or {}).get("params", {})
    frozen_now = {split_path(p)[0] for p in (getattr(graph, "frozen_paths", None) or ())}
    for label in node_labels(graph):
        if active_nodes is not None and label not in active_nodes:
            continue
        has_params = bool(jax.tree.leaves(params.get(label, {})))
        if has_params and label not in opt and label not in frozen_now:
            raise ValueError(
                f"stage-wise training (no global optimizer on the graph) needs an Optimizer on "
                f"every trainable node, but node {label!r} has none; give it optimizer=... or "
                "set a global optimizer")


def _loss_fn(forward: Callable[[Any], tuple[dict, dict, dict]], wiring: _Wiring,
             losses: Sequence[AppliedLoss], by_node: Mapping[str, list[AppliedLoss]] | None,
             roles: Sequence[str], batch: dict) -> Callable[[Any], tuple[Any, tuple]]:
    """``params -> (total, (terms, state, outputs, targets))`` to differentiate.

    Graph-wise (``by_node`` None): one forward, every loss. Stage-wise: per node with
    losses, a forward in which only that node's parameters carry gradient (the others
    behind ``stop_gradient``), its own losses; XLA shares the identical forwards.
    """
    if by_node is None:
        def graph_wise(p):
            outs, tgts, state = forward(p)
            terms = _loss_terms(wiring, losses, roles, outs, tgts, batch)
            return sum(terms.values()), (terms, state, outs, tgts)

        return graph_wise

    def stage_wise(p):
        total, terms, first = 0.0, {}, None
        for node, node_losses in by_node.items():
            # only node's own params carry gradient: stop_gradient at its inputs
            p_k = {k: (v if k == node else jax.lax.stop_gradient(v)) for k, v in p.items()}
            outs, tgts, state = forward(p_k)
            first = first or (state, outs, tgts)
            t = _loss_terms(wiring, node_losses, roles, outs, tgts, batch)
            terms.update(t)
            total = total + sum(t.values())
        state, outs, tgts = first
        return total, ({al.label: terms[al.label] for al in losses}, state, outs, tgts)

    return stage_wise


def _update(opt: Optimizer | dict[str, Optimizer], grads: Any, carry: dict, params: Any
            ) -> tuple[Any, Any]:
    """``(new_params, new_opt_state)``: one optimizer step (per node when stage-wise),
    frozen paths held by the carry's mask."""
    frozen = carry.get("frozen")
    if not isinstance(opt, dict):
        return opt.update(grads, carry["opt_state"], params, frozen)
    new_params, new_opt = dict(params), dict(carry["opt_state"])
    for label, node_opt in opt.items():
        if label not in params:
            continue
        f = None if frozen is None else frozen[label]
        new_params[label], new_opt[label] = node_opt.update(
            grads[label], carry["opt_state"][label], params[label], f)
    return new_params, new_opt


def make_train_step(graph: Any, losses: Sequence[AppliedLoss], optimizer: Optimizer | None = None,
                    *, active_nodes: Sequence[str] | None = None, capture: Sequence[str] = (),
                    record: Sequence[str] = (), metrics: Sequence[AppliedMetric] = ()
                    ) -> Callable[[dict, dict], tuple[dict, dict]]:
    """Build the pure training step ``step(carry, batch) -> (carry, metrics)``.

    Args:
        graph: anything with ``apply(variables, inputs, *, key, train, active_nodes,
            capture)`` and ``route_targets(targets_by_head)`` (a ``ModelGraph``).
        losses: the ``AppliedLoss``es to minimise (at least one).
        optimizer: global optimizer; ``None`` uses ``graph.optimizer``, and if the graph
            has none, training is stage-wise with each node's own ``optimizer``.
        active_nodes: restrict the forward pass to these node labels.
        capture: tag paths to return per batch in ``metrics["records"]["tags"]``.
        record: node labels whose outputs/targets go to ``metrics["records"]``.
        metrics: :class:`~modjax.train.metrics.AppliedMetric` s computed on the batch's
            training forward pass (the outputs the gradient was taken at).

    Returns:
        A pure function. ``metrics`` holds ``loss`` (total), ``losses`` (per label),
        ``finite``, ``records`` and ``metric_stats`` (per AppliedMetric label, the
        batch's sufficient statistics; ``AppliedMetric.finalize`` combines a stack).

    Raises:
        ValueError: no losses; stage-wise training with a trainable node lacking an
            optimizer (the message names it).
        LabelPathError: a loss on a node that is not in the graph.

    Example:
        >>> import optax
        >>> g = _ToyGraph()
        >>> opt = Optimizer("sgd", opt_kwargs={"lr": 0.1})
        >>> step = make_train_step(g, [AppliedLoss("mse", on="lin")], opt)
        >>> carry = init_train_carry(g.variables, opt, jax.random.key(0))
        >>> batch = {"lin": {"features": jnp.ones((4, 1)), "targets": jnp.zeros((4, 1))}}
        >>> carry, m = jax.jit(step)(carry, batch)
        >>> round(float(m["loss"]), 3), int(carry["step"])
        (4.0, 1)
    """
    if not losses:
        raise ValueError("make_train_step: no losses given; a TrainPhase needs at least one AppliedLoss")
    core = traced_graph(graph)
    wiring = _Wiring(core, losses, what="make_train_step")
    metric_wiring = _Wiring(core, metrics, what="make_train_step")
    opt = graph_optimizers(graph, optimizer)
    stage_wise = isinstance(opt, dict)
    active = None if active_nodes is None else list(active_nodes)
    check_stage_wise(graph, opt, active)
    from modjax.bridge.hooks import partial_fit_hook  # imports no torch/sklearn

    host_fits = partial_fit_hook(graph, active)
    by_node: dict[str, list[AppliedLoss]] = {}
    for al in losses:
        by_node.setdefault(al.node, []).append(al)

    def step(carry: dict, batch: dict) -> tuple[dict, dict]:
        batch = normalize_batch(batch)
        roles = _roles_of(batch)
        variables = carry["variables"]
        # the step's key is derived from the (constant) base key and the step counter, so a
        # model that draws no random numbers costs no PRNG work: XLA drops the fold_in
        sub = jax.random.fold_in(carry["key"], carry["step"])
        params = variables["params"]

        def forward(p):
            v = {"params": p, "state": variables["state"]}
            return _forward(core, v, batch, roles, key=sub, train=True,
                            active_nodes=active, capture=capture)

        loss_fn = _loss_fn(forward, wiring, losses, by_node if stage_wise else None,
                           roles, batch)
        (total, (terms, new_state, outs, tgts)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(params)
        if host_fits is not None:  # scikit-learn partial_fit nodes: one host step per batch
            new_state = host_fits(new_state, outs, tgts, batch, roles)
        new_params, new_opt = _update(opt, grads, carry, params)
        new_carry = dict(carry)
        new_carry.update(variables={"params": new_params, "state": new_state},
                         opt_state=new_opt, step=carry["step"] + 1)
        return new_carry, {"loss": total, "losses": terms, "finite": jnp.isfinite(total),
                           "records": _records(record, capture, outs, tgts),
                           "metric_stats": _metric_stats(metric_wiring, metrics, roles, outs,
                                                         tgts, batch)}

    step.wiring = wiring  # type: ignore[attr-defined]
    step.stage_wise = stage_wise  # type: ignore[attr-defined]
    step.optimizer = opt  # type: ignore[attr-defined]
    return step


def init_train_carry(variables: dict, optimizer: Optimizer | dict[str, Optimizer], key: Any, *,
                     frozen_paths: Iterable[str] = (), opt_state: Any = None,
                     step: int = 0) -> dict:
    """The initial carry for a step built by :func:`make_train_step`.

    Args:
        variables: ``{"params", "state"}``.
        optimizer: the global Optimizer or ``{label: Optimizer}`` (stage-wise).
        key: a PRNG key (``jax.random.key``) used for dropout etc.
        frozen_paths: label paths whose parameters stay fixed (none: ``frozen`` is None
            and the step skips the mask entirely).
        opt_state: existing optimizer state to resume from (default: fresh).
        step: the step counter to start from (an int, or an int32 scalar array used as is).

    Returns:
        ``{"variables", "opt_state", "key", "step", "frozen"}``.
    """
    params = variables["params"]
    frozen_paths = list(frozen_paths)
    if opt_state is None:
        if isinstance(optimizer, dict):
            opt_state = {k: o.init(params[k]) for k, o in optimizer.items() if k in params}
        else:
            opt_state = optimizer.init(params)
    return {"variables": variables, "opt_state": opt_state, "key": key,
            "step": step if _is_step_array(step) else jnp.asarray(step, jnp.int32),
            # nothing frozen: no mask, so the step has no per-leaf selects. Freezing adds the
            # mask (one retrace); changing *which* paths are frozen then retraces nothing.
            "frozen": frozen_mask(params, frozen_paths) if frozen_paths else None}


def _is_step_array(step: Any) -> bool:
    return isinstance(step, jax.Array) and step.dtype == jnp.int32 and step.shape == ()


# --------------------------------------------------------------------------- eval step
def make_eval_step(graph: Any, losses: Sequence[AppliedLoss] = (), *,
                   active_nodes: Sequence[str] | None = None, capture: Sequence[str] = (),
                   record: Sequence[str] = (), metrics: Sequence[AppliedMetric] = ()
                   ) -> Callable[[dict, dict], dict]:
    """Build the pure forward step ``eval_step(variables, batch) -> metrics`` (no gradients).

    ``metrics`` has ``loss`` (sum of losses, 0 without losses), ``losses`` per label,
    ``finite``, ``records`` (outputs/targets of ``record`` nodes, captured tags) and
    ``metric_stats``: per :class:`~modjax.train.metrics.AppliedMetric` label, the
    batch's statistics (combine a stack of them with ``AppliedMetric.finalize``).

    Example:
        >>> g = _ToyGraph()
        >>> ev = make_eval_step(g, [AppliedLoss("mae", on="lin")], record=["lin"])
        >>> m = ev(g.variables, {"lin": {"features": jnp.ones((2, 1)), "targets": jnp.ones((2, 1))}})
        >>> float(m["losses"]["lin.mae"]), m["records"]["outputs"]["lin"]["default"].shape
        (1.0, (2, 1))
    """
    core = traced_graph(graph)
    wiring = _Wiring(core, losses, what="make_eval_step")
    metric_wiring = _Wiring(core, metrics, what="make_eval_step")
    active = None if active_nodes is None else list(active_nodes)

    def eval_step(variables: dict, batch: dict) -> dict:
        batch = normalize_batch(batch)
        roles = _roles_of(batch)
        outs, tgts, _ = _forward(core, variables, batch, roles, key=None, train=False,
                                 active_nodes=active, capture=capture)
        terms = _loss_terms(wiring, losses, roles, outs, tgts, batch)
        total = sum(terms.values()) if terms else jnp.zeros(())
        stats = _metric_stats(metric_wiring, metrics, roles, outs, tgts, batch)
        return {"loss": total, "losses": terms, "finite": jnp.isfinite(total),
                "records": _records(record, capture, outs, tgts), "metric_stats": stats}

    eval_step.wiring = wiring  # type: ignore[attr-defined]
    return eval_step


class _ToyGraph:
    """A one-node linear 'graph' (``y = x @ w``, ``w = 2``) for doctests."""

    def __init__(self) -> None:
        self.variables = {"params": {"lin": {"w": jnp.full((1, 1), 2.0)}}, "state": {"lin": {}}}
        self.nodes = {"lin": None}
        self.optimizer = None
        self.frozen_paths: set[str] = set()

    def apply(self, variables, inputs, *, key=None, train=False, active_nodes=None, capture=()):
        return {"lin": inputs["lin"] @ variables["params"]["lin"]["w"]}, variables["state"]

    def route_targets(self, targets):
        return dict(targets)
