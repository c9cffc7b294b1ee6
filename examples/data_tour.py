"""A tour of modjax.data: Arrow FeatureSet -> splits -> scaling -> samplers -> device batches.

Generates a small synthetic battery data set (no download), groups the per-timestep rows
of each (cell, cycle) into one sample holding a 16-point voltage curve, splits by cell,
scales, and fits a linear model whose whole epoch is one jitted ``lax.scan`` over batches
gathered on the device from an index plan.

Run: python examples/data_tour.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from modjax import FeatureSet, PairedSampler, SimilarityCondition, SimpleSampler
from modjax.data import DeviceStore, gather_plan


def make_frame(n_cells: int = 12, n_cycles: int = 40, n_points: int = 16,
               seed: int = 0) -> pd.DataFrame:
    """One row per (cell, cycle, timestep); the curve's sag encodes state of health."""
    rng = np.random.default_rng(seed)
    rows = []
    for cell in range(n_cells):
        fade = rng.uniform(0.002, 0.006)
        for cycle in range(n_cycles):
            soh = 1.0 - fade * cycle
            t = np.arange(n_points)
            v = 4.2 - 0.05 * t * (2.0 - soh) + rng.normal(0, 0.005, n_points)
            for ti in rng.permutation(n_points):  # rows arrive unordered
                rows.append((f"cell{cell:02d}", cycle, ti, v[ti], soh, 25 + 5 * (cell % 3)))
    return pd.DataFrame(rows, columns=["cell", "cycle", "t", "voltage", "soh", "temperature"])


def main() -> dict[str, float]:
    df = make_frame()
    fs = FeatureSet.from_pandas("Pulses", df, feature_cols="voltage", target_cols="soh",
                                group_by=["cell", "cycle"], tag_cols=["cell", "temperature"],
                                sort_by="t")
    print(fs)

    # splits are views: index arrays only; a cell never straddles train/val/test
    fs.split_random({"train": 0.66, "val": 0.17, "test": 0.17}, group_by="cell", seed=1)
    train, test = fs.get_split("train"), fs.get_split("test")
    print("splits:", {k: v.n_samples for k, v in fs.splits.items()},
          "| train/test disjoint:", train.is_disjoint_with(test))

    # scale the curves with statistics of the training split only (one mean/std per key)
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train", merged_axes=2)
    fs.fit_transform("MinMaxScaler", domain="targets", fit_to_split="train")

    ref = fs.reference(features="volt*", targets="soh", tags=[])
    print("reference:", ref.features, ref.targets, "feature_shape", ref.feature_shape,
          "target_shape", ref.target_shape)

    # device-resident training data, batches gathered on device inside one scan per epoch
    sampler = SimpleSampler(32, seed=0, source=train)
    store = DeviceStore.from_reference(ref, split="train")
    d = int(np.prod(ref.feature_shape))
    params = {"w": jnp.zeros((d, 1)), "b": jnp.zeros((1,))}
    opt = optax.adam(0.05)
    opt_state = opt.init(params)

    def loss_fn(p, batch):
        x = batch["features"].reshape(batch["features"].shape[0], -1)
        err = (x @ p["w"] + p["b"] - batch["targets"]) ** 2
        return jnp.sum(err[:, 0] * batch["weights"]) / jnp.maximum(batch["weights"].sum(), 1.0)

    @jax.jit
    def run_epoch(params, opt_state, arrays, plan):
        def step(carry, s):
            p, o = carry
            batch = gather_plan(arrays, s)["default"]
            loss, g = jax.value_and_grad(loss_fn)(p, batch)
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), plan)
        return params, opt_state, losses

    for _ in range(30):
        for arrays, plan in store.epoch_chunks(sampler.next_plan()):
            params, opt_state, losses = run_epoch(params, opt_state, arrays, plan)
    print(f"epochs run: {sampler.epoch}, last epoch mean loss: {float(losses.mean()):.5f}, "
          f"compilations: {run_epoch._cache_size()}")

    # evaluate on the test split and map predictions back to raw units
    x_test = test.get_features(rep="transformed").reshape(test.n_samples, -1)
    pred = np.asarray(x_test @ params["w"] + params["b"])
    pred_raw = fs.unscale_data_for_cols(data=pred, domain="targets", columns="soh")
    mae = float(np.abs(pred_raw - test.get_targets(rep="raw")).mean())
    print(f"test MAE in SOH units: {mae:.4f}")

    # contrastive pairs: same temperature, SOH within 0.02; weights come with the plan
    pairs = PairedSampler({"temperature": SimilarityCondition(),
                           "soh": SimilarityCondition(tolerance=0.02)}, 16, source=train)
    plan = pairs.plan(0)
    print("paired roles:", pairs.roles, "batches:", plan.n_batches)
    print(fs.visualize(show_tags=False).splitlines()[0], "...")
    return {"mae": mae, "loss": float(losses.mean())}


if __name__ == "__main__":
    main()
