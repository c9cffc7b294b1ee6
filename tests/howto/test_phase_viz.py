"""TrainPhase/EvalPhase/FitPhase.visualize(): the graph with the phase's splits, samplers,
losses and metrics, inactive nodes dimmed (ModularML's phase diagrams, as mermaid text)."""

from __future__ import annotations

import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    AppliedMetric,
    ConcatNode,
    EvalPhase,
    Experiment,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)


def _setup(build=True):
    exp = Experiment(label="viz", registration_policy="overwrite")
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict(label="VizData", data={
        "x": list(rng.standard_normal((20, 6))), "y": list(rng.standard_normal((20, 1)))},
        feature_keys="x", target_keys="y")
    fs.split_random(ratios={"train": 0.5, "test": 0.5}, seed=0)
    ref = fs.reference(features="x", targets="y")
    a = ModelNode("EncA", SequentialMLP(output_shape=(1, 4), n_layers=1), upstream_ref=ref)
    b = ModelNode("EncB", SequentialMLP(output_shape=(1, 3), n_layers=1), upstream_ref=ref)
    m = ConcatNode("Merge", upstream_refs=[a, b], concat_axis=-1)
    h = ModelNode("Head", SequentialMLP(n_layers=1), upstream_ref=m)
    g = ModelGraph(nodes=[a, b, m, h])
    if build:
        g.build()
    return exp, g


def test_train_phase_diagram_shows_sampler_losses_and_inactive_nodes():
    exp, g = _setup()
    g.freeze("EncB")
    sampler = SimpleSampler(batch_size=4, shuffle=True, seed=7)
    phase = TrainPhase(label="warmup", n_epochs=2, active_nodes=["EncA"],
                       input_sources=[InputBinding.for_training(node="EncA", sampler=sampler,
                                                                split="train")],
                       losses=[AppliedLoss("mse", on="EncA", inputs=["outputs", "targets"])])
    lines = [ln.strip() for ln in phase.visualize().splitlines()]
    assert lines[:4] == ["---", "title: \"TrainPhase 'warmup' (epochs=2)\"", "---",
                         "flowchart LR"]
    assert 'fs0[("FeatureSet: VizData<br/>split: train")]' in lines
    sampler_line = next(ln for ln in lines if ln.startswith("s0_"))
    assert "SimpleSampler<br/>batch_size=4<br/>shuffle=True<br/>seed=7" in sampler_line
    sid = sampler_line.split("[")[0]
    assert f"fs0 --> {sid}" in lines and f'{sid} -->|"(1, 6)"| n0' in lines
    # the head node EncB is not bound: it reads the FeatureSet without a split
    assert 'n2 -->|"(1, 7)"| n3' in lines and 'n0 -->|"(1, 4)"| n2' in lines
    assert 'l0(["loss: EncA.mse<br/>mse(outputs, targets)"])' in lines and "n0 -.-> l0" in lines
    # only EncA runs: the rest is dimmed, and a frozen node that does not run is not "frozen"
    assert lines[-1] == "class n1,n2,n3 inactive"
    assert not any("(frozen)" in ln for ln in lines)
    g.freeze("EncA")
    frozen = [ln.strip() for ln in phase.visualize().splitlines()]
    assert 'n0["EncA<br/>SequentialMLP (frozen)"]' in frozen and "class n0 frozen" in frozen


def test_eval_phase_diagram_from_the_active_experiment_and_before_build():
    exp, g = _setup(build=False)
    phase = EvalPhase.from_split(label="check", split="test",
                                 losses=[AppliedLoss("mae", on="Head")],
                                 metrics=[AppliedMetric("rmse", on="Head")])
    text = phase.visualize()  # graph taken from the active experiment
    assert text == phase.visualize(g)
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[1] == "title: \"EvalPhase 'check' (split='test', no gradients)\""
    # unbuilt: no shapes on edges; both heads read the test split directly (no sampler)
    assert lines.count("fs0 --> n0") == 1 and lines.count("fs0 --> n1") == 1
    assert 'fs0[("FeatureSet: VizData<br/>split: test")]' in lines
    assert 'm0("metric: Head.rmse")' in lines and "n3 -.-> m0" in lines
    assert text._repr_markdown_().startswith("```mermaid\n---")
    assert not any("inactive" in ln for ln in lines)


def test_no_graph_is_an_error_naming_the_phase():
    Experiment(label="empty_viz", registration_policy="overwrite")
    phase = EvalPhase.from_split(label="lonely", split="test")
    with pytest.raises(ValueError, match="'lonely'.visualize\\(\\): there is no ModelGraph"):
        phase.visualize()
