"""One process of a data-parallel training job (or a plain run when process_id is -1).

argv: process_id port local_devices out_dir [restore_from]
Trains the reference graph 3 epochs on a mesh over every process's devices, saves a
graph checkpoint to out_dir/ckpt, prints params, losses and record shapes as JSON.
With ``restore_from`` it only restores that graph checkpoint (placed on the mesh) and
prints its params.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

pid, port, local = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
out_dir = Path(sys.argv[4])
restore_from = sys.argv[5] if len(sys.argv) > 5 else None
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))

import modjax.distributed as md  # noqa: E402

if pid >= 0:
    md.initialize(f"127.0.0.1:{port}", 2, pid, local_device_count=local)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from train_helpers import make_featureset, make_mlp_graph, train_phase  # noqa: E402

from modjax.context import ExperimentContext  # noqa: E402

with ExperimentContext(registration_policy="overwrite").activate():
    fs = make_featureset(n=320)
    g = make_mlp_graph(fs)
    mesh = md.make_mesh() if jax.device_count() > 1 else None
    if restore_from is not None:
        g.restore_checkpoint(restore_from)
        placed = g.variables if mesh is None else md.put_global(g.variables, md.replicated(mesh))
        params = md.to_host(placed["params"])
        print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                          "params": [np.asarray(x).ravel().tolist()
                                     for x in jax.tree.leaves(params)]}))
        sys.exit(0)
    res = train_phase(n_epochs=3, batch_size=40, mesh=mesh).execute(
        g, show_training_progress=False)
    rec = res.epochs[res.epoch_indices[-1]].records["outputs"]["mlp"]["default"]
    g.save_checkpoint(out_dir / "ckpt", overwrite=True)
    params = md.to_host(g.variables["params"])
    print(json.dumps({
        "process": jax.process_index(), "devices": jax.device_count(),
        "losses": np.concatenate([res.epochs[e].loss for e in res.epoch_indices]).tolist(),
        "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(params)],
        "record_shape": list(np.shape(rec)),
    }))
