"""Run several members through phase plans of one structure, side by side.

A member is an Experiment plus the state it runs from and a scope (overrides applied
while its host work runs: a fold's splits, loss weights, a seed). Plans are walked in
lockstep: each TrainPhase that can run vectorized trains every member at once
(:func:`~modjax.train.replicas.run_replicas`); every other phase (evaluation, fitting,
a phase with a Checkpointing or batch hooks) runs member by member with that member's
state swapped in. Each member gets the PhaseGroupResults a run of its own would give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modjax.train.experiment import PhaseGroup
from modjax.train.results import PhaseGroupResults
from modjax.train.train_phase import TrainPhase

__all__ = ["LockstepMember", "run_lockstep"]


@dataclass
class LockstepMember:
    """One member: its label, Experiment, plan, current state and scope.

    Attributes:
        label: the member's name.
        experiment: the Experiment it runs in (members may share one).
        plan: the PhaseGroup it runs (equal in structure across a lockstep group).
        state: ``experiment.get_state()`` the member continues from (updated as it runs).
        scope: a context-manager factory applied around the member's work.
        vectorized: labels of the phases that ran vectorized (filled by the run).
        phase_states: the state of each TrainPhase of ``plan`` for this member (epoch
            counters, sampler RNG; phases outside the experiment's plan are not in
            ``state``); None: taken from the phases when the run starts.
    """

    label: str
    experiment: Any
    plan: PhaseGroup
    state: Any
    scope: Callable[[], Any] = contextlib.nullcontext
    vectorized: list[str] = field(default_factory=list)
    phase_states: list[tuple[Any, Any]] | None = None

    def load(self) -> None:
        """Put this member's state into its experiment and phases."""
        self.experiment.set_state(self.state)
        for p, st in self.phase_states or ():
            p.set_state(st)

    def save(self) -> None:
        """Take this member's state back from its experiment and phases."""
        self.state = self.experiment.get_state()
        self.phase_states = [(p, p.get_state()) for p, _ in self.phase_states or ()]


def run_lockstep(members: Sequence[LockstepMember], *, mesh: Any = None,
                 **options: Any) -> list[PhaseGroupResults]:
    """Run every member's plan; TrainPhases of more than one member run vectorized.

    Args:
        members: members whose plans have the same structure.
        mesh: a ``Mesh`` with a ``"replica"`` axis to shard vectorized phases over.
        options: display options of ``Experiment.run``.

    Returns:
        One PhaseGroupResults per member, in order.
    """
    for m in members:
        if m.phase_states is None:
            m.phase_states = [(p, p.get_state()) for p in m.plan.flatten()
                              if isinstance(p, TrainPhase)]
    return _group(list(members), [m.plan for m in members], mesh, options)


def _group(members: list[LockstepMember], plans: list[PhaseGroup], mesh: Any,
           options: dict[str, Any]) -> list[PhaseGroupResults]:
    outs = [PhaseGroupResults(p.label) for p in plans]
    for idx in range(len(plans[0])):
        items = [p.all[idx] for p in plans]
        if isinstance(items[0], PhaseGroup):
            res = _group(members, items, mesh, options)
        elif isinstance(items[0], TrainPhase) and _vectorize(members, items):
            res = _vectorized(members, items, mesh, options)
        else:
            res = [_alone(m, it, options, members) for m, it in zip(members, items)]
        for o, r in zip(outs, res):
            o.add_result(r)
    return outs


def _vectorize(members: Sequence[LockstepMember], items: Sequence[TrainPhase]) -> bool:
    from modjax.train.replicas import vectorizable

    return len(members) > 1 and all(it.replicas == 1 and vectorizable(it) is None
                                    for it in items)


def _alone(m: LockstepMember, phase: Any, options: dict[str, Any],
           members: Sequence[LockstepMember]) -> Any:
    exp = m.experiment
    with m.scope(), _own_observer(m, members):
        m.load()
        res = exp._execute_phase(phase, **options)
        m.save()
    return res


@contextlib.contextmanager
def _own_observer(m: LockstepMember, members: Sequence[LockstepMember]) -> Iterator[None]:
    """Members sharing an Experiment feed its observer's child of their label (as their
    vectorized phases do), not the shared observer itself."""
    exp = m.experiment
    obs = getattr(exp, "observer", None)
    if obs is None or sum(x.experiment is exp for x in members) < 2:
        yield
        return
    from modjax.train.replica_loop import member_observer

    exp.observer = member_observer(obs, m.label)
    try:
        yield
    finally:
        exp.observer = obs


def _vectorized(members: Sequence[LockstepMember], items: Sequence[TrainPhase], mesh: Any,
                options: dict[str, Any]) -> list[Any]:
    from modjax.train.replica_loop import group_progress
    from modjax.train.replicas import make_spec, run_replicas

    specs = []
    for m, phase in zip(members, items):
        exp = m.experiment
        with m.scope():
            m.load()
            g = exp.model_graph
            if not g.is_built:
                g.build()
            specs.append(make_spec(phase, g, label=m.label, variables=g.variables,
                                   opt_state=g.opt_state, experiment=exp, scope=m.scope))
    outs = run_replicas(items[0], specs, mesh=mesh,
                        progress=group_progress(items[0], len(specs), options))
    for m, phase, out in zip(members, items, outs):
        exp = m.experiment
        with m.scope():
            m.load()
            g = exp.model_graph
            g.set_variables(out.variables)
            g.set_opt_state(out.opt_state)
            g.optimizer.state = out.opt_state
            phase.epochs_run = out.epochs_run
            samplers = [b.sampler for b in phase.input_sources if b.sampler is not None]
            if phase._sampler is not None:
                samplers.append(phase._sampler)
            for s in samplers:
                if id(s) in out.samplers:
                    s.set_state(out.samplers[id(s)].get_state())
            m.save()
        m.vectorized.append(phase.label)
    return [o.results for o in outs]
