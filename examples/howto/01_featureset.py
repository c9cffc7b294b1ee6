"""How-to 01: build, inspect, slice, split, scale, save and reference a FeatureSet.

The ModularML how-to "Create and Use a FeatureSet", step by step on modjax. The calls
are ModularML's spellings (modjax accepts them); where modjax differs the comment says
so. Run: ``python examples/howto/01_featureset.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import modjax as mml
from modjax import FeatureSet, Scaler


def make_pulse_data(n: int = 1000, n_cells: int = 20, n_groups: int = 5) -> dict:
    """Synthetic battery pulses: a 101-point voltage curve, SOH target, four tags."""
    time = np.linspace(0, 100, 101)
    rng = np.random.default_rng(42)
    cell = rng.integers(1, n_cells + 1, size=n)
    group = rng.integers(1, n_groups + 1, size=n)
    ptype = rng.choice(["chg", "dchg"], size=n)
    soc = rng.choice([10, 20, 30, 40, 50, 60, 70, 80, 90], size=n)
    soh = 100.0 - (group - 1) * 8.0 + rng.normal(0, 2, size=n)
    volt = np.zeros((n, 101))
    for i in range(n):
        sign = 1.0 if ptype[i] == "chg" else -1.0
        shape = sign * 0.3 * (soh[i] / 100.0) * (1 - np.exp(-time / 15.0))
        volt[i] = 3.2 + soc[i] / 100.0 * 0.5 + shape + rng.normal(0, 0.002, size=101)
    return {"voltage": volt.tolist(), "soh": soh.tolist(), "cell_id": cell.tolist(),
            "group_id": group.tolist(), "pulse_type": ptype.tolist(), "pulse_soc": soc.tolist()}


def split_report(fs: FeatureSet) -> None:
    for name, view in fs.splits.items():
        groups = view.get_tags(fmt="numpy", tags="group_id")
        print(f"  {name}: {len(view)} samples, groups: {np.unique(groups)}")


def main() -> dict:
    data = make_pulse_data()
    soh = np.asarray(data["soh"])
    print(f"SOH range: [{soh.min():.1f}, {soh.max():.1f}]")

    # -- creating
    fs = FeatureSet.from_dict(label="PulseData", data=data, feature_keys="voltage",
                              target_keys="soh",
                              tag_keys=["cell_id", "group_id", "pulse_type", "pulse_soc"])
    print(f"Feature shapes: {fs.get_feature_shapes()}")
    print(f"Target shapes:  {fs.get_target_shapes()}")
    print("Feature shapes:",
          fs.get_feature_shapes(include_domain_prefix=False, include_rep_suffix=False))
    df = pd.DataFrame({
        "temperature": np.random.default_rng(0).normal(25, 5, size=100),
        "humidity": np.random.default_rng(1).normal(60, 10, size=100),
        "output_power": np.random.default_rng(2).normal(100, 15, size=100),
        "site_id": np.repeat(["A", "B", "C", "D"], 25),
        "timestamp": np.arange(25).tolist() * 4})
    weather = FeatureSet.from_pandas(label="WeatherData", df=df,
                                     feature_cols=["temperature", "humidity"],
                                     target_cols="output_power", tag_cols="site_id")
    print(f"WeatherData: {len(weather)} samples, {weather.get_feature_shapes()}")
    grouped = FeatureSet.from_pandas(label="WeatherGrouped", df=df,
                                     feature_cols=["temperature", "humidity"],
                                     target_cols="output_power", group_by="site_id",
                                     sort_by="timestamp", tag_cols=["site_id", "timestamp"])
    print(f"WeatherGrouped: {len(grouped)} samples, {grouped.get_feature_shapes()}")
    table = pa.table({"features.x.raw": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
                      "targets.y.raw": [0.5, 1.5], "tags.group.raw": ["a", "b"]})
    arrow_fs = FeatureSet.from_pyarrow_table(label="ArrowExample", table=table)
    print(f"ArrowExample: {len(arrow_fs)} samples, {arrow_fs.get_feature_shapes()}")

    # -- inspecting
    print("Feature keys:", fs.get_feature_keys())
    print("Target keys: ", fs.get_target_keys())
    print("Tag keys:    ", fs.get_tag_keys())
    print("Tag shapes:  ", fs.get_tag_shapes())
    print("Feature dtypes:", fs.get_feature_dtypes())
    print("Target dtypes: ", fs.get_target_dtypes())
    print(fs.summary())

    # -- accessing (modjax's default fmt is the stacked numpy array; ModularML's is a dict)
    features = fs.get_features(fmt="dict_numpy")
    print(f"Keys: {list(features.keys())}; voltage {features['voltage'].shape}")
    print(f"Stacked: {fs.get_features(fmt='numpy', features='voltage').shape}")
    print(f"Targets frame: {fs.get_targets(fmt='pandas').shape}")
    tags = fs.get_tags(fmt="dict_numpy", tags=["cell_id", "pulse_type"])
    print(f"Cell IDs (first 5): {tags['cell_id'][:5]}")
    print(f"Pulse types (first 5): {tags['pulse_type'][:5]}")
    print(f"get_data frame: {fs.get_data(features='voltage', targets='soh', tags='*', fmt='pandas').shape}")
    print(f"to_pandas: {fs.to_pandas().shape}, to_arrow columns: {fs.to_arrow().num_columns}")

    # -- row subsetting
    view_chg = fs.filter(conditions={"tags.pulse_type.raw": "chg"})
    print(f"Charge-only: {view_chg}")
    view_cells = fs.filter(conditions={"tags.cell_id.raw": [1, 2, 3]})
    print(f"Cells 1-3: {view_cells}")
    healthy = fs.filter(conditions={"tags.pulse_type.raw": "chg",
                                    "targets.soh.raw": lambda x: x >= 90.0})
    print(f"Healthy charge pulses: {healthy}")
    print(fs.take(list(range(10)), label="first_10"))
    print(fs.take_sample_uuids(fs.get_sample_uuids()[:5].tolist(), label="uuid_subset"))
    both = view_chg.take_intersection(view_cells, label="chg_cells_1to3")
    rest = view_chg.take_difference(view_cells, label="chg_not_cells_1to3")
    print(f"Intersection: {both}; cells {np.unique(both.get_tags(fmt='np', tags='cell_id'))}")
    print(f"Difference: {rest}")
    print("disjoint:", view_cells.is_disjoint_with(rest))
    charge = view_chg.to_featureset(label="ChargePulses")
    print(f"ChargePulses: {len(charge)} samples")

    # -- column subsetting
    print("Columns:", fs.select(features="voltage.*", targets="soh").get_all_keys())
    print("Columns:", fs.select(features="voltage", rep="raw").get_all_keys())

    # -- splitting
    charge.split_random(ratios={"train": 0.6, "val": 0.2, "test": 0.2}, seed=42)
    for name, view in charge.splits.items():
        print(f"  {name}: {len(view)} samples")
    for kw in ({"group_by": "group_id"}, {"stratify_by": "group_id"}):
        charge.clear_splits()
        charge.split_random(ratios={"train": 0.5, "val": 0.3, "test": 0.2}, seed=1, **kw)
        split_report(charge)
    charge.clear_splits()
    charge.split_by_condition({"train": {"tags.group_id.raw": [1, 2, 3]},
                               "val": {"tags.group_id.raw": [4]},
                               "test": {"tags.group_id.raw": [5]}})
    split_report(charge)
    charge.clear_splits()
    charge.split_by_condition({
        "source": {"targets.soh": lambda s: s >= 90, "tags.group_id.raw": [1, 2, 3]},
        "test": {"targets.soh": lambda s: s < 90, "tags.group_id.raw": [4, 5]}})
    charge.get_split("source").split_random(ratios={"train": 0.8, "val": 0.2},
                                            stratify_by="group_id")
    split_report(charge)
    charge.clear_splits()
    charge.add_split(charge.filter(conditions={"tags.group_id.raw": [1, 2, 3],
                                               "targets.soh.raw": lambda x: x >= 80.0},
                                   label="train"))
    charge.add_split(charge.filter(conditions={"tags.group_id.raw": [4, 5]}, label="test"))
    for name, view in charge.splits.items():
        print(f"  {name}: {len(view)} samples")
    charge.clear_splits()
    views = charge.split_random(ratios={"train": 0.6, "val": 0.2, "test": 0.2},
                                group_by="group_id", seed=42, return_views=True)
    for name, view in views.items():
        print(f"  {name}: {len(view)} samples")

    # -- scaling
    print("supported scalers include SegmentedScaler:", "SegmentedScaler" in mml.supported_scalers)
    charge.fit_transform(scaler=Scaler("MinMaxScaler"), domain="features", keys="voltage",
                         fit_to_split="train")
    tr = charge["train"].get_features(fmt="numpy", features="voltage", rep="transformed")
    print(f"train voltage scaled: [{tr.min():.3f}, {tr.max():.3f}]")
    charge.undo_all_transforms(domain="features")
    charge.fit_transform(scaler="PerSampleZeroStart", domain="features", keys="voltage",
                         fit_to_split="train")
    charge.fit_transform(scaler="MinMaxScaler", domain="features", keys="voltage",
                         fit_to_split="train")
    from sklearn.preprocessing import MinMaxScaler
    charge.fit_transform(scaler=MinMaxScaler(), domain="targets", keys="soh",
                         fit_to_split="train")
    soh_raw = charge["test"].get_targets(fmt="numpy", targets="soh", rep="raw")
    soh_scaled = charge["test"].get_targets(fmt="numpy", targets="soh", rep="transformed")
    print(f"SOH raw range:     [{soh_raw.min():.1f}, {soh_raw.max():.1f}]")
    print(f"SOH scaled range:  [{soh_scaled.min():.3f}, {soh_scaled.max():.3f}]")
    charge.undo_last_transform(domain="features", keys="voltage")
    tr = charge["train"].get_features(fmt="numpy", features="voltage", rep="transformed")
    print(f"After undo last: min={tr.min():.4f} max={tr.max():.4f}")
    charge.undo_all_transforms()
    print("Keys after undo:", charge.get_all_keys())
    charge.fit_transform(scaler=MinMaxScaler(), domain="targets", keys="soh",
                         fit_to_split="train")
    back = charge.unscale_data_for_cols(data=np.array([[0.5], [0.8], [0.2]]),
                                        domain="targets", columns="soh")
    print(f"Original-scale SOH:   {np.round(back.ravel(), 4)}")

    # -- save / load / copy
    charge.clear_splits()
    charge.undo_all_transforms()
    charge.split_random(ratios={"train": 0.6, "val": 0.2, "test": 0.2}, group_by="group_id",
                        seed=42)
    for scaler, domain in (("PerSampleZeroStart", "features"), ("MinMaxScaler", "features"),
                           ("MinMaxScaler", "targets")):
        charge.fit_transform(scaler=scaler, domain=domain, keys=None, fit_to_split="train")
    with tempfile.TemporaryDirectory() as tmp:
        path = charge.save(Path(tmp) / "fs_charge_demo", overwrite=True)
        loaded = FeatureSet.load(path)
        loaded.undo_last_transform(domain="features")
        print(f"reloaded splits: {sorted(loaded.available_splits)}, "
              f"scalers left: {len(loaded.scaler_records)}")
    raw_copy = charge.copy(label="CopyRawOnly", share_raw_data_buffer=True)
    print(f"Copy (raw only) keys: {raw_copy.get_all_keys()}; splits {raw_copy.available_splits}")
    full = charge.copy(label="CopyFull", share_raw_data_buffer=False, restore_splits=True,
                       restore_scalers=True, register=True)
    print(f"Full copy keys: {full.get_all_keys()}")
    print(f"Full copy splits: {sorted(full.available_splits)}")

    # -- references (tags have no transformed rep: they are read raw)
    ref = charge.reference(features="voltage", targets="soh", rep="transformed")
    print(f"Reference columns: {ref.columns}")
    col = charge.column_reference(feature="voltage", rep="transformed")
    print(f"Column reference: {col.column}")
    return {"charge": charge, "ref": ref}


if __name__ == "__main__":
    main()
