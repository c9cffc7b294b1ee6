"""Two JAX processes x 2 CPU devices: an EvalPhase on their mesh gathers its recorded
outputs and metrics; experiment checkpoints and phase Checkpointing written by the pair
restore bit-exactly in one process."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from modjax import AppliedMetric, EvalPhase, Experiment
from tests.scale.harness import run_processes, run_single
from tests.train.train_helpers import make_featureset, make_mlp_graph, mse_on, train_phase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpx")
    pair = run_processes("mp_experiment.py", str(base / "pair"), n=2, local_devices=2,
                         timeout=300)
    single = run_single("mp_experiment.py", str(base / "single"), devices=1)
    return base, pair, single


def _flat(tree):
    return [np.asarray(x).ravel() for x in jax.tree.leaves(tree)]


def _assert_bit_equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, np.asarray(b, dtype=a.dtype))


def _experiment():
    """The workers' experiment structure, in this single process (fresh values)."""
    exp = Experiment("exp", registration_policy="overwrite")
    g = make_mlp_graph(make_featureset(n=320), seed=5)
    exp.execution_plan.add_phase(train_phase(n_epochs=2, batch_size=40))
    return exp, g


def test_eval_phase_on_a_mesh_spanning_processes_gathers_outputs_and_metrics(runs):
    _, pair, single = runs
    assert [p["devices"] for p in pair] == [4, 4] and single["devices"] == 1
    # both processes hold the whole gathered result, with or without a progress bar
    assert pair[0]["eval_outputs"] == pair[1]["eval_outputs"]
    assert pair[0]["metrics"] == pair[1]["metrics"]
    assert len(pair[0]["eval_outputs"]) == len(single["eval_outputs"]) == 80  # the val rows
    # the pair trained like one device (params within 1e-5), so outputs agree closely
    np.testing.assert_allclose(pair[0]["eval_outputs"], single["eval_outputs"], atol=2e-5)
    assert set(pair[0]["metrics"]) == {"mlp.mse", "mlp.rmse"}
    for k, v in single["metrics"].items():
        np.testing.assert_allclose(pair[0]["metrics"][k], v, rtol=1e-4)


def test_eval_outputs_of_the_pair_equal_one_process_on_the_same_params(runs, fresh_context):
    base, pair, _ = runs
    exp, g = _experiment()
    exp.restore_checkpoint(base / "pair" / "ck" / "train_phase_end")
    res = EvalPhase.from_split("ev", split="val", losses=[mse_on("mlp")], batch_size=16,
                               metrics=[AppliedMetric("rmse", on="mlp")]).execute(g)
    out = np.asarray(res.stacked_tensors("mlp", "outputs")).ravel()
    np.testing.assert_allclose(out, pair[0]["eval_outputs"], rtol=1e-6, atol=1e-7)


def test_pair_experiment_checkpoint_restores_in_one_process_bit_exactly(runs, fresh_context):
    base, pair, _ = runs
    assert pair[0]["checkpoints"] == ["train/train_epoch0", "train/train_epoch1",
                                      "train_phase_end"]
    exp, g = _experiment()
    before = _flat(g.variables["params"])
    exp.restore_checkpoint(base / "pair" / "ck" / "train_phase_end")
    got = _flat(g.variables["params"])
    assert not np.array_equal(got[0], before[0])
    _assert_bit_equal(got, pair[0]["params"])
    _assert_bit_equal(_flat(g.opt_state), pair[0]["opt_state"])


def test_pair_phase_checkpoints_restore_in_one_process_bit_exactly(runs, fresh_context):
    base, pair, _ = runs
    assert pair[0]["phase_keys"] == [0, 1]
    _, g = _experiment()
    g.restore_checkpoint(base / "pair" / "ck" / "train" / "train_epoch1")  # the last epoch
    _assert_bit_equal(_flat(g.variables["params"]), pair[0]["params"])
    g.restore_checkpoint(base / "pair" / "ck" / "train" / "train_epoch0")
    assert not np.array_equal(_flat(g.variables["params"])[0],
                              np.asarray(pair[0]["params"][0], np.float32))
