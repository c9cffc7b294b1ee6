"""ExperimentCollection: several runs of one task, compared, with structure-equal runs
trained as one vmapped program.

Members are Experiments, or one template Experiment plus per-member overrides (a seed,
optimizer hyperparameters held in the optimizer state, loss weights, data splits).
``run()`` groups the members whose plan, graph definition, loss specs, optimizer
structure, frozen set and batch shapes are equal; each group runs in lockstep
(:mod:`modjax.train.lockstep`): its TrainPhases as one vmapped scan per epoch, other
phases member by member. A member that matches no other runs on its own. Every member
gets the PhaseGroupResults a run of its own gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modjax.errors import closest_names
from modjax.train.compare import CollectionViews
from modjax.train.experiment import Experiment, PhaseGroup
from modjax.train.lockstep import LockstepMember, run_lockstep
from modjax.train.programs import spec_of
from modjax.train.results import PhaseGroupResults
from modjax.train.train_phase import TrainPhase

__all__ = ["ExperimentCollection", "Member", "OVERRIDES"]

#: what a template member may override
OVERRIDES = ("seed", "hyperparams", "loss_weights", "splits")


@dataclass
class Member:
    """One member: label, Experiment, overrides (template members) and, after a run,
    its results and final state.

    Attributes:
        label: the member's name.
        experiment: its Experiment (template members share the template).
        overrides: ``{"seed", "hyperparams", "loss_weights", "splits"}`` (any subset).
        results: its PhaseGroupResults after :meth:`ExperimentCollection.run`.
        state: its final experiment state (variables, optimizer state, counters).
        vectorized: labels of its phases that ran vectorized.
        shared: True when it shares the Experiment with other members (a template).
    """

    label: str
    experiment: Experiment
    overrides: dict[str, Any] = field(default_factory=dict)
    results: PhaseGroupResults | None = None
    state: Any = None
    vectorized: list[str] = field(default_factory=list)
    shared: bool = False
    phase_states: list[Any] | None = None
    history: dict[str, dict[str, list[float]]] | None = None


def _check_overrides(label: str, ov: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(ov, Mapping):
        raise TypeError(f"member {label!r}: overrides must be a dict with keys from "
                        f"{list(OVERRIDES)}, got {type(ov).__name__}")
    for k in ov:
        if k not in OVERRIDES:
            raise TypeError(f"member {label!r}: unknown override {k!r}; did you mean "
                            f"{closest_names(k, OVERRIDES)}? (overrides: {list(OVERRIDES)})")
    return dict(ov)


class ExperimentCollection(CollectionViews):
    """Several runs of one task: Experiments, or a template and per-member overrides.

    Args:
        experiments: Experiments as members (a list, labelled by their labels, or a
            ``{label: Experiment}`` dict).
        template: one Experiment all ``members`` run from.
        members: with ``template``: ``{label: overrides}`` (or a list of overrides,
            labelled ``member0``...). Overrides: ``seed`` (the graph is initialised from
            that key; phase and sampler seeds take it too), ``hyperparams``
            (``{"learning_rate": 1e-2}``: set in the optimizer state, which needs a
            :class:`~modjax.train.hyperparams.HyperOptimizer`), ``loss_weights``
            (``{loss label: weight}``), ``splits`` (``{"train": "train_b"}``: the split
            ``train`` of every FeatureSet that has ``train_b`` reads ``train_b``; a
            FeatureSetView value binds that view).
        label: the collection's name.
        mesh: a ``Mesh`` with a ``"replica"`` axis to shard vectorized phases over.

    Example:
        >>> ExperimentCollection().labels
        []
    """

    def __init__(self, experiments: Sequence[Experiment] | Mapping[str, Experiment] | None = None,
                 *, template: Experiment | None = None,
                 members: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]] | None = None,
                 label: str = "collection", mesh: Any = None) -> None:
        self.label, self.mesh = label, mesh
        self.members: dict[str, Member] = {}
        self.template = template
        if experiments is not None:
            items = experiments.items() if isinstance(experiments, Mapping) else [
                (getattr(e, "label", None), e) for e in experiments]
            for lab, exp in items:
                self.add(exp, label=lab)
        if members is not None:
            if template is None:
                raise ValueError("ExperimentCollection: members= (overrides) need a template=")
            items = members.items() if isinstance(members, Mapping) else [
                (f"member{i}", ov) for i, ov in enumerate(members)]
            for lab, ov in items:
                self.add_member(lab, **_check_overrides(lab, ov))

    # ----------------------------------------------------------------- members
    @property
    def labels(self) -> list[str]:
        return list(self.members)

    def _new_label(self, label: str) -> None:
        if not isinstance(label, str) or not label:
            raise ValueError(f"a member label must be a non-empty string, got {label!r}")
        if label in self.members:
            raise ValueError(f"collection {self.label!r} already has a member {label!r}")

    def add(self, experiment: Experiment, *, label: str | None = None) -> Member:
        """Add an Experiment as a member (labelled by its label unless given)."""
        if not isinstance(experiment, Experiment):
            raise TypeError(f"ExperimentCollection.add expects an Experiment, got "
                            f"{type(experiment).__name__}")
        lab = label or experiment.label
        self._new_label(lab)
        self.members[lab] = Member(lab, experiment)
        return self.members[lab]

    def add_member(self, label: str, *, seed: int | None = None,
                   hyperparams: Mapping[str, float] | None = None,
                   loss_weights: Mapping[str, float] | None = None,
                   splits: Mapping[str, Any] | None = None) -> Member:
        """Add a member of the template with overrides (see the class docstring)."""
        if self.template is None:
            raise ValueError(f"collection {self.label!r} has no template; pass template= or "
                             "add Experiments with add()")
        self._new_label(label)
        ov = {k: v for k, v in (("seed", seed), ("hyperparams", hyperparams),
                                ("loss_weights", loss_weights), ("splits", splits))
              if v is not None}
        self.members[label] = Member(label, self.template, _check_overrides(label, ov),
                                     shared=True)
        return self.members[label]

    def __getitem__(self, label: str) -> Member:
        if label not in self.members:
            raise KeyError(f"collection {self.label!r} has no member {label!r}; members like "
                           f"it: {closest_names(str(label), self.labels)}")
        return self.members[label]

    def __len__(self) -> int:
        return len(self.members)

    @property
    def results(self) -> dict[str, PhaseGroupResults]:
        """``{label: PhaseGroupResults}`` of the members that have run."""
        return {k: m.results for k, m in self.members.items() if m.results is not None}

    # ----------------------------------------------------------------- overrides
    def _scope(self, m: Member) -> Any:
        @contextlib.contextmanager
        def scope() -> Iterator[None]:
            with contextlib.ExitStack() as stack:
                stack.enter_context(m.experiment.ctx.activate())
                stack.enter_context(_overridden(m))
                yield
        return scope

    def _start(self, m: Member) -> LockstepMember:
        """The member's starting state (overrides applied to the experiment's state now)."""
        exp, g = m.experiment, m.experiment.model_graph
        ov = m.overrides
        scope = self._scope(m)
        phases = [p for p in exp.execution_plan.flatten() if isinstance(p, TrainPhase)]
        with scope():
            if not g.is_built:
                g.build()
            if "seed" in ov:
                g.set_variables(g.init(int(ov["seed"])))
                if g.optimizer is not None:
                    g.set_opt_state(g.optimizer.init(g.variables["params"]))
                for p in phases:
                    for s in _phase_samplers(p):
                        s.seed = int(ov["seed"])
            if ov.get("hyperparams"):
                from modjax.train.hyperparams import set_hyperparams
                opt_state = g.opt_state if g.opt_state is not None else g.optimizer.init(
                    g.variables["params"])
                try:
                    g.set_opt_state(set_hyperparams(opt_state, ov["hyperparams"]))
                except (ValueError, KeyError) as e:
                    raise type(e)(f"member {m.label!r}: {e}") from None
            lm = LockstepMember(m.label, exp, exp.execution_plan, exp.get_state(), scope,
                                phase_states=[(p, p.get_state()) for p in phases])
        return lm

    # ----------------------------------------------------------------- grouping
    def _key(self, m: Member) -> Any:
        g = m.experiment.model_graph
        if not g.is_built:
            g.build()
        import jax
        opt = g.optimizer
        opt_struct = None if opt is None else jax.tree.structure(
            jax.eval_shape(opt.init, g.variables["params"]))
        return (_plan_signature(m.experiment.execution_plan), g.definition,
                None if opt is None else spec_of(opt), str(opt_struct),
                tuple(sorted(g.frozen_paths)))

    def groups(self) -> list[list[str]]:
        """Member labels grouped as :meth:`run` trains them (one vmapped program per
        group of more than one member)."""
        out: dict[Any, list[str]] = {}
        for lab, m in self.members.items():
            out.setdefault(self._key(m), []).append(lab)
        return list(out.values())

    # ----------------------------------------------------------------- run
    def run(self, **options: Any) -> dict[str, PhaseGroupResults]:
        """Run every member; returns ``{label: PhaseGroupResults}``.

        A template is left as it was before the run (each member's final state is kept
        in the collection: :meth:`load_member` puts one into the template); an
        Experiment member ends with its own final state, as after ``Experiment.run()``.
        Options are the display options of ``Experiment.run``.
        """
        from modjax.train.options import check_options

        check_options("ExperimentCollection.run", options)
        if not self.members:
            raise ValueError(f"collection {self.label!r} has no members")
        options.setdefault("show_training_progress", False)
        bases = {id(m.experiment): _snapshot(m.experiment) for m in self.members.values()}
        try:
            for labels in self.groups():
                ms = [self.members[lab] for lab in labels]
                lms = []
                for m in ms:  # every member starts from the experiment as it was
                    _restore(m.experiment, bases[id(m.experiment)])
                    lms.append(self._start(m))
                    _restore(m.experiment, bases[id(m.experiment)])
                for m, lm, res in zip(ms, lms, run_lockstep(lms, mesh=self.mesh, **options)):
                    m.results, m.state, m.phase_states = res, lm.state, lm.phase_states
                    m.vectorized, m.history = list(lm.vectorized), None
                    _restore(m.experiment, bases[id(m.experiment)])
        finally:
            for m in self.members.values():
                _restore(m.experiment, bases[id(m.experiment)])
        for m in self.members.values():
            if not m.shared and m.state is not None:
                self.load_member(m.label)
        return self.results

    def load_member(self, label: str) -> Experiment:
        """Put member ``label``'s final state into its Experiment (and graph); returns it."""
        m = self[label]
        if m.state is None:
            raise ValueError(f"member {label!r} has not run (or been loaded) yet")
        m.experiment.set_state(m.state)
        for p, st in m.phase_states or ():
            p.set_state(st)
        return m.experiment

    # persistence lives in collection_io (save/load)
    def save(self, path: Any, *, overwrite: bool = False) -> Any:
        """Save the collection (see :func:`modjax.train.collection_io.save_collection`)."""
        from modjax.train.collection_io import save_collection
        return save_collection(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: Any, *, template: Experiment | None = None,
             experiments: Mapping[str, Experiment] | None = None) -> ExperimentCollection:
        """Load a saved collection (see :func:`modjax.train.collection_io.load_collection`)."""
        from modjax.train.collection_io import load_collection
        return load_collection(cls, path, template=template, experiments=experiments)

    def __repr__(self) -> str:
        return f"ExperimentCollection({self.label!r}, members={self.labels})"


def _phase_samplers(p: TrainPhase) -> list[Any]:
    found = [b.sampler for b in p.input_sources if b.sampler is not None]
    if p._sampler is not None:
        found.append(p._sampler)
    return found


def _snapshot(exp: Experiment) -> tuple[Any, list[Any]]:
    phases = [p for p in exp.execution_plan.flatten() if isinstance(p, TrainPhase)]
    return exp.get_state(), [(p, p.get_state(), p.seed) for p in phases]


def _restore(exp: Experiment, snap: tuple[Any, list[Any]]) -> None:
    state, phases = snap
    exp.set_state(state)
    for p, st, seed in phases:
        p.set_state(st)
        p.seed = seed


def _plan_signature(plan: Any) -> Any:
    from modjax.train.replicas import vectorizable
    from modjax.train.vectorized import weightless_spec

    if isinstance(plan, PhaseGroup):
        return ("group", tuple(_plan_signature(it) for it in plan))
    if isinstance(plan, TrainPhase):
        shapes = tuple((type(s).__name__, s.batch_size, tuple(s.roles)) for s in
                       _phase_samplers(plan))
        return ("train", plan.label, weightless_spec(plan.losses), plan.n_epochs, shapes,
                vectorizable(plan), plan.replicas, spec_of(plan.active_nodes))
    return (plan.kind, plan.label)


@contextlib.contextmanager
def _overridden(m: Member) -> Iterator[None]:
    """Apply a member's phase seed, loss weights and splits; undo them on exit."""
    ov, exp = m.overrides, m.experiment
    undo: list[Any] = []
    try:
        if "seed" in ov:
            for p in exp.execution_plan.flatten():
                if isinstance(p, TrainPhase):
                    undo.append((setattr, p, "seed", p.seed))
                    p.seed = int(ov["seed"])
        if ov.get("loss_weights"):
            _set_weights(m, exp, ov["loss_weights"], undo)
        if ov.get("splits"):
            _bind_splits(m, exp, ov["splits"], undo)
        yield
    finally:
        for fn, *args in reversed(undo):
            fn(*args)


def _plan_losses(exp: Experiment) -> list[Any]:
    out = []
    for p in exp.execution_plan.flatten():
        out.extend(p.losses)
        for cb in p.callbacks:
            ev = getattr(cb, "eval_phase", None)
            if ev is not None:
                out.extend(ev.losses)
    return out


def _set_weights(m: Member, exp: Experiment, weights: Mapping[str, float], undo: list) -> None:
    losses = _plan_losses(exp)
    for name, w in weights.items():
        hits = [al for al in losses if al.label == name]
        if not hits:
            raise KeyError(f"member {m.label!r}: no loss {name!r} in the plan; losses like it: "
                           f"{closest_names(name, sorted({al.label for al in losses}))}")
        for al in hits:
            undo.append((setattr, al, "weight", al.weight))
            al.weight = float(w)


def _bind_splits(m: Member, exp: Experiment, splits: Mapping[str, Any], undo: list) -> None:
    fss = list(exp.ctx.available_featuresets().values())
    for name, value in splits.items():
        if hasattr(value, "source") and hasattr(value, "indices"):
            targets = [(value.source, value)]
        else:
            targets = [(fs, fs.get_split(value)) for fs in fss if value in fs.available_splits]
            if not targets:
                raise KeyError(f"member {m.label!r}: no FeatureSet has a split {value!r} to bind "
                               f"as {name!r}")
        for fs, view in targets:
            old = fs.get_split(name) if name in fs.available_splits else None
            if old is not None:
                fs.remove_split(name)
            fs.add_split(fs.take(view.indices, label=name), name)
            undo.append((_rebind, fs, name, old))


def _rebind(fs: Any, name: str, old: Any) -> None:
    if name in fs.available_splits:
        fs.remove_split(name)
    if old is not None:
        fs.add_split(old, name)
