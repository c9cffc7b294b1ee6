"""Row-sharded data and label-path parameter sharding on 8 forced host devices.

argv: -1 0 devices out_dir. Prints one JSON line with what the tests check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
out_dir = Path(sys.argv[4])

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from train_helpers import make_featureset, make_mlp_graph, train_phase  # noqa: E402

import modjax.distributed as md  # noqa: E402
from modjax import SimpleSampler  # noqa: E402
from modjax.context import ExperimentContext  # noqa: E402
from modjax.data import DeviceStore  # noqa: E402

assert jax.device_count() == 8
RULES = {"mlp.layer_0.kernel": P(None, "model"), "mlp.layer_0.bias": P("model"),
         "mlp.layer_1.kernel": P("model", None)}


def flat(tree):
    return [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(md.to_host(tree))]


def train(mesh, **kw):
    with ExperimentContext(registration_policy="overwrite").activate():
        fs = make_featureset(n=320)
        g = make_mlp_graph(fs)
        res = train_phase(n_epochs=3, batch_size=40, mesh=mesh, **kw).execute(
            g, show_training_progress=False)
        losses = np.concatenate([res.epochs[e].loss for e in res.epoch_indices]).tolist()
        return g, fs, res, losses


out = {}
# -- row-sharded store: shard shapes of one epoch's placement
with ExperimentContext(registration_policy="overwrite").activate():
    fs = make_featureset(n=320)
    mesh = md.make_mesh()
    store = DeviceStore(fs.to_view("train") if hasattr(fs, "to_view") else fs, mesh=mesh,
                        shard_rows=True)
    plan = SimpleSampler(40, seed=0, source=store.view).plan()
    arrays, dplan = store.epoch_arrays(plan)
    out["store_shape"] = list(arrays["features"].shape)
    out["shard_shapes"] = sorted({tuple(s.data.shape) for s in arrays["features"].addressable_shards})
    out["shard_devices"] = len(arrays["features"].sharding.device_set)
    out["plan_spec"] = list(dplan.indices["default"].sharding.spec)
    out["replicated_nbytes"] = int(store.nbytes)

results = {}
for name, mesh, kw in (("single", None, {}),
                       ("replicated", md.make_mesh(), {}),
                       ("rows", md.make_mesh(), {"shard_data": True}),
                       ("rows_streamed", md.make_mesh(), {"shard_data": True, "byte_budget": 300}),
                       ("params", md.make_mesh(model=2), {"shard_params": RULES,
                                                          "shard_data": True})):
    g, fs, res, losses = train(mesh, **kw)
    results[name] = {"losses": losses, "params": flat(g.variables["params"]),
                     "record": str(res.epochs[0].records["outputs"]["mlp"]["default"].shape)}
    if name == "params":
        mu = g.opt_state[0].mu["mlp"]["layer_0"]["kernel"]
        results[name]["opt_mu_spec"] = list(mu.sharding.spec)
        results[name]["opt_mu_shard"] = list(mu.addressable_shards[0].data.shape)
        # checkpoint from the (4 x 2) layout, restored onto a (2 x 4) mesh and one device
        from modjax.train.sharding import param_shardings
        mesh_a = md.make_mesh(model=2)
        sh_a = param_shardings(g.variables["params"], RULES, mesh_a)
        host = md.to_host(g.variables)
        g.set_variables({"params": md.put_global(host["params"], sh_a), "state": host["state"]})
        g.save_checkpoint(out_dir / "sharded_ckpt", overwrite=True)
        mesh_b = md.make_mesh(model=4)
        rules_b = {"mlp.layer_0.kernel": P("data", "model")}
        sh_b = param_shardings(host["params"], rules_b, mesh_b)
        g.set_variables({"params": md.put_global(jax.tree.map(np.zeros_like, host["params"]),
                                                 sh_b), "state": host["state"]})
        g.restore_checkpoint(out_dir / "sharded_ckpt")
        k = g.variables["params"]["mlp"]["layer_0"]["kernel"]
        results[name]["restored_spec"] = list(k.sharding.spec)
        results[name]["restored_mesh"] = dict(k.sharding.mesh.shape)
        results[name]["restored_equal"] = flat(g.variables["params"]) == flat(host["params"])
out["runs"] = results
print(json.dumps(out))
