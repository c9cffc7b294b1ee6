"""Replica axis sharded over a ("replica", "data") mesh of 8 forced host devices.

Run as a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8; prints one
JSON line with what the test checks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from modjax import EvalPhase, SimpleSampler, TrainPhase  # noqa: E402
from modjax.context import ExperimentContext  # noqa: E402
from modjax.train.ensemble import ensemble_of  # noqa: E402
from tests.vectorized.helpers import task  # noqa: E402

assert jax.device_count() == 8
with ExperimentContext(registration_policy="overwrite").activate():
    _, fs, g, mse = task(experiment=False)
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("replica", "data"))
    sharded = TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16), losses=[mse],
                                    n_epochs=2, replicas=4, mesh=mesh)
    res = sharded.execute(g)
    spec = ensemble_of(g).variables["params"][g.node_labels[0]]["layer_0"]["kernel"].sharding.spec
    ev = EvalPhase.from_split("val", split="val", losses=[mse]).execute(g)
    mean_sharded = float(ev.metrics.last(mse.label))
    loss_sharded = [r.train_loss for r in res.replicas]
    g.set_variables(g.init(0))
    plain = TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16), losses=[mse],
                                  n_epochs=2, replicas=4).execute(g)
    mean_plain = float(EvalPhase.from_split("val", split="val", losses=[mse])
                       .execute(g).metrics.last(mse.label))
    # 3 replicas on a replica axis of 4: padded with an inactive copy, same numbers
    g.set_variables(g.init(0))
    odd = TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16), losses=[mse],
                                n_epochs=2, replicas=3, mesh=mesh).execute(g)
    g.set_variables(g.init(0))
    odd_plain = TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16),
                                      losses=[mse], n_epochs=2, replicas=3).execute(g)
    pad_diff = float(np.max(np.abs(np.array([r.train_loss for r in odd.replicas]) -
                                   np.array([r.train_loss for r in odd_plain.replicas]))))
    n_odd = len(odd.replicas)
print(json.dumps({"pad_diff": pad_diff, "n_odd": n_odd,
                  "spec": [str(a) for a in spec],
                  "loss_diff": float(np.max(np.abs(np.array(loss_sharded) -
                                                   np.array([r.train_loss for r in plain.replicas])))),
                  "mean_diff": abs(mean_sharded - mean_plain),
                  "devices": len(ensemble_of(g).variables["params"][g.node_labels[0]]["layer_0"]
                                 ["kernel"].devices())}))
