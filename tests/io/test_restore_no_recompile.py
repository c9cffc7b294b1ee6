"""Restoring a checkpoint keeps leaves as jax placed them: nothing compiles again."""

from __future__ import annotations

import jax
import numpy as np

from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase


class _Compiles:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1


def test_a_phase_after_restore_checkpoint_compiles_nothing(tmp_path, fresh_context):
    graph = make_mlp_graph(make_featureset(n=128))
    phase = train_phase(n_epochs=2)
    phase.execute(graph, show_training_progress=False)
    graph.save_checkpoint(tmp_path / "ck")
    saved = jax.tree.map(np.asarray, graph.variables)
    phase.execute(graph, show_training_progress=False)  # move away from the checkpoint
    graph.restore_checkpoint(tmp_path / "ck")
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, graph.variables), saved)
    assert not any(x.committed for x in jax.tree.leaves(graph.variables))
    counter = _Compiles()
    jax.monitoring.register_event_duration_secs_listener(counter)
    try:
        phase.execute(graph, show_training_progress=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(counter)
    assert counter.n == 0 and phase.n_traces == 1
