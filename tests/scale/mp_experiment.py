"""One process of a 2-process job (or a plain run when process_id is -1): an Experiment
with phase and experiment disk checkpoints trains on a mesh over every process's
devices, then an EvalPhase on the same mesh records the validation outputs.

argv: process_id port local_devices out_dir
Prints params, optimizer state, checkpoint names, eval outputs/loss/metric as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

pid, port, local = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
out_dir = Path(sys.argv[4])
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))

import modjax.distributed as md  # noqa: E402

if pid >= 0:
    md.initialize(f"127.0.0.1:{port}", 2, pid, local_device_count=local)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from train_helpers import make_featureset, make_mlp_graph, mse_on, train_phase  # noqa: E402

from modjax import AppliedMetric, Checkpointing, EvalPhase, Experiment  # noqa: E402


def flat(tree):
    return [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(md.to_host(tree))]


mesh = md.make_mesh() if jax.device_count() > 1 else None
exp = Experiment("exp", registration_policy="overwrite",
                 checkpointing=Checkpointing(mode="disk", save_on="phase_end"))
fs = make_featureset(n=320)
g = make_mlp_graph(fs)
phase_ck = Checkpointing(mode="disk", save_on="epoch_end")
exp.execution_plan.add_phase(train_phase(n_epochs=2, batch_size=40, mesh=mesh,
                                         checkpointing=phase_ck))
exp.set_checkpoint_dir(out_dir / "ck")
exp.run(show_training_progress=False)
ev = EvalPhase.from_split("ev", split="val", losses=[mse_on("mlp")], batch_size=16, mesh=mesh,
                          metrics=[AppliedMetric("rmse", on="mlp")])
res = ev.execute(g, show_progress=pid == 1)  # one process with a bar: same results
out = res.stacked_tensors("mlp", "outputs")
print(json.dumps({
    "process": jax.process_index(), "devices": jax.device_count(),
    "params": flat(g.variables["params"]), "opt_state": flat(g.opt_state),
    "phase_keys": phase_ck.saved_keys, "checkpoints": sorted(exp.available_checkpoints),
    "eval_outputs": np.asarray(out).ravel().tolist(),
    "eval_loss": float(res.metrics.series("mse_mlp")[-1]) if "mse_mlp" in
    res.metrics.names else None,
    "metrics": {k: float(res.metrics.series(k)[-1]) for k in res.metrics.names},
}))
