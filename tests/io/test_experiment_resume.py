"""Resume exactness on a real Experiment: 2 epochs, checkpoint/save, a fresh process
restores and trains 2 more == 4 epochs straight, bit-exact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import chex
import numpy as np

from modjax.io.checkpoints import load_pytree, open_artifact

PIPELINE = textwrap.dedent("""
    import numpy as np
    from modjax import FeatureSet, SimpleSampler
    from modjax import ModelGraph, ModelNode, SequentialMLP
    from modjax import AppliedLoss, Experiment, InputBinding, Optimizer, TrainPhase

    def pipeline(label, n_epochs):
        exp = Experiment(label, registration_policy="overwrite")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 10)).astype(np.float32)
        y = np.tanh(x.sum(1)).astype(np.float32)
        fs = FeatureSet.from_dict("data", {**{f"x{i}": x[:, i] for i in range(10)}, "y": y},
                                  [f"x{i}" for i in range(10)], "y")
        fs.add_split(fs.take(np.arange(48)), "train")
        node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=3, hidden_dim=32),
                         upstream_ref=fs.reference())
        ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
        sampler = SimpleSampler(16, shuffle=True, seed=1)
        phase = TrainPhase("train", input_sources=[InputBinding.for_training(
            node="mlp", sampler=sampler, split="train")],
            losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
            n_epochs=n_epochs)
        exp.execution_plan.add_phase(phase)
        return exp
""")

SCRIPT = PIPELINE + textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    from modjax.context import ExperimentContext
    from modjax.io.checkpoints import save_pytree
    d, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "resume":
        with ExperimentContext().activate():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # checkpoints not extracted: expected here
                exp = Experiment.load(d / "exp")
            exp.run(show_training_progress=False)
            save_pytree(d / "resumed_from_save", exp.model_graph.variables)
            # The same (already compiled) experiment rewound by the checkpoint: the
            # checkpoint alone must bring back variables, optimizer, counters and RNG.
            exp.set_checkpoint_dir(d / "ck")
            exp.restore_checkpoint("after2")
            exp.run(show_training_progress=False)
            save_pytree(d / "resumed_from_checkpoint", exp.model_graph.variables)
            save_pytree(d / "opt_state", exp.model_graph.opt_state)
    print("ok", mode)
""")


def _run(tmp_path, mode):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True,
                       text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2:] == ["ok", mode]


def _first_two_epochs_then_straight4(d):
    """In this process: 2 epochs saved (checkpoint + artifact), then 4 epochs straight."""
    ns: dict = {}
    exec(compile(PIPELINE, "<pipeline>", "exec"), ns)
    exp = ns["pipeline"]("e", 2)
    exp.run(show_training_progress=False)
    exp.set_checkpoint_dir(d / "ck")
    exp.save_checkpoint("after2", meta={"epochs": 2})
    exp.save(d / "exp")
    exp = ns["pipeline"]("straight", 4)
    exp.run(show_training_progress=False)
    return exp.model_graph.variables, exp.model_graph.opt_state


def test_resume_in_fresh_process_equals_straight_run(tmp_path):
    straight4 = _first_two_epochs_then_straight4(tmp_path)
    art = open_artifact(tmp_path / "ck" / "after2", kind="experiment_checkpoint")
    assert art.meta == {"epochs": 2}
    state = art.restore("experiment")
    assert int(state["phases"]["train"]["epochs_run"]) == 2
    assert int(state["phases"]["train"]["samplers"]["0"]["epoch"]) == 2
    _run(tmp_path, "resume")
    variables, opt_state = straight4
    chex.assert_trees_all_equal(load_pytree(tmp_path / "resumed_from_checkpoint"), variables)
    chex.assert_trees_all_equal(load_pytree(tmp_path / "resumed_from_save"), variables)
    resumed_opt = load_pytree(tmp_path / "opt_state", target=opt_state)
    chex.assert_trees_all_equal(resumed_opt, opt_state)
    assert not np.array_equal(np.asarray(variables["params"]["mlp"]["layer_0"]["kernel"]),
                              np.asarray(state["graph"]["nodes"]["mlp"]["params"]["layer_0"]["kernel"]))
