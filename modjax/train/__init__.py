"""modjax.train."""

from modjax.train.checkpointing import EXPERIMENT_HOOKS, PHASE_HOOKS, Checkpointing

__all__: list[str] = ["Checkpointing", "EXPERIMENT_HOOKS", "PHASE_HOOKS"]
