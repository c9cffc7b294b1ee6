"""Data-parallel TrainPhase on 8 forced host devices equals the single-device run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {helpers!r})
    from jax.sharding import Mesh
    from modjax.context import ExperimentContext
    from train_helpers import make_featureset, make_mlp_graph, train_phase

    assert jax.device_count() == 8, jax.devices()
    out = {{}}
    for name, mesh in (("single", None), ("mesh", Mesh(np.array(jax.devices()), ("data",)))):
        with ExperimentContext(registration_policy="overwrite").activate():
            fs = make_featureset(n=320)
            g = make_mlp_graph(fs)
            res = train_phase(n_epochs=3, batch_size=40, mesh=mesh).execute(
                g, show_training_progress=False)
            out[name] = {{
                "losses": np.concatenate([res.epochs[e].loss for e in res.epoch_indices]).tolist(),
                "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(g.variables)],
                "sharded": str(getattr(res.epochs[0].records["outputs"]["mlp"]["default"],
                                       "sharding", "")),
            }}
    print(json.dumps(out))
""")


def test_mesh_loss_trajectory_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    script = SCRIPT.format(helpers=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    single, mesh = out["single"], out["mesh"]
    assert len(single["losses"]) == len(mesh["losses"]) == 3 * 6
    for a, b in zip(single["losses"], mesh["losses"]):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (a, b)
    for pa, pb in zip(single["params"], mesh["params"]):
        assert max(abs(x - y) for x, y in zip(pa, pb)) < 1e-5
    assert "data" in mesh["sharded"]  # the recorded batch outputs really were sharded
