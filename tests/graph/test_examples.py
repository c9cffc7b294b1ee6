"""The seed-000 tour runs and prints the connectivity the seed states for each mutation."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

TOUR = Path(__file__).resolve().parents[2] / "examples" / "modelgraph_tour.py"


@pytest.fixture(scope="module")
def tour_output() -> dict[str, list[str]]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_path(str(TOUR), run_name="__main__")
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in buf.getvalue().splitlines():
        m = re.match(r"^== (.+) ==$", line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif line.strip():
            sections[current].append(line.strip())
    return sections


def links(lines: list[str]) -> dict[str, list[str]]:
    out = {}
    for line in lines:
        m = re.match(r"^(\w+) <- \[(.*)\]$", line)
        if m:
            out[m.group(1)] = re.findall(r"'([^']+)'", m.group(2))
    return out


def test_mutations_match_seed_000(tour_output):
    # add_node: Base -> Added
    assert links(tour_output["add_node"]) == {"Base": ["SensorData"], "Added": ["Base"]}
    # remove_node: A -> B -> C minus B is A -> C
    assert links(tour_output["remove_node"]) == {"N1": ["SensorData"], "N3": ["N1"]}
    assert "After:  ['N1', 'N3']" in tour_output["remove_node"]
    # replace_node keeps upstream and downstream connections
    assert links(tour_output["replace_node"]) == {"NewEncoder": ["SensorData"],
                                                   "Reg": ["NewEncoder"]}
    # insert_node_between: A -> B becomes A -> C -> B
    assert links(tour_output["insert_node_between"]) == {"A": ["SensorData"], "C": ["A"],
                                                         "B": ["C"]}
    assert "After:  ['A', 'C', 'B']" in tour_output["insert_node_between"]
    assert 'n0 --> n1' in tour_output["insert_node_between"]  # unbuilt: edges without shapes
    # insert_node_before: PreQ takes over Q's inputs; Q only reads PreQ
    assert tour_output["insert_node_before"][0] == "After insert_node_before:"
    assert links(tour_output["insert_node_before"]) == {"P": ["SensorData"], "PreQ": ["P"],
                                                        "Q": ["PreQ"]}
    # insert_node_after: a new branch from P; tails are Q and PostP
    after = tour_output["insert_node_after"]
    assert links(after) == {"P": ["SensorData"], "PreQ": ["P"], "Q": ["PreQ"], "PostP": ["P"]}
    assert "Tail nodes: ['Q', 'PostP']" in after


def test_build_forward_freeze_and_serialisation(tour_output):
    build = tour_output["build"]
    assert build[:5] == ["Built: True", "EncoderA: (1, 10) -> (1, 8)",
                         "EncoderB: (1, 10) -> (1, 4)", "Merge: [(1, 8), (1, 4)] -> (1, 12)",
                         "Head: (1, 12) -> (1, 1)"]
    assert 'n2 -->|"(1, 12)"| n3' in build and "Rebuilt: True" in build
    props = tour_output["graph properties"]
    assert "Head nodes: ['EncoderA', 'EncoderB']" in props and "Tail nodes: ['Head']" in props
    assert "total params: 145  trainable: 145  frozen: 0  bytes: 580" in props
    assert tour_output["forward"] == [
        "Number of input entries: 2", "Outputs per node:", "EncoderA: features=(500, 1, 8)",
        "EncoderB: features=(500, 1, 4)", "Merge: features=(500, 1, 12)",
        "Head: features=(500, 1, 1)"]
    assert tour_output["active nodes"] == ["Executed nodes: ['EncoderA', 'EncoderB', 'Merge']"]
    freeze = tour_output["freeze"]
    assert freeze[0] == "Frozen nodes: ['EncoderA']" and "class n0 frozen" in freeze
    assert freeze[-3:] == ["Frozen nodes: []", "All frozen: ['EncoderA', 'EncoderB', 'Head']",
                           "All unfrozen: []"]
    assert tour_output["optimizer parameters"] == ["Backend: jax", "Contributing nodes: 3",
                                                   "Total parameters: 6"]
    cfg = tour_output["config and state"]
    assert "Number of node configs: 4" in cfg and "Number of node states: 3" in cfg
    assert "Round trip reproduces outputs: True" in cfg
    assert "Loaded graph reproduces outputs: True" in tour_output["save and load"]
    assert "Loaded graph labels: ['EncoderA', 'EncoderB', 'Merge', 'Head']" in \
        tour_output["save and load"]
    assert tour_output["checkpointing"] == [
        "Checkpoint saved to: checkpoint_epoch5", "Restored. Built: True",
        "Restored graph reproduces outputs: True"]


def test_construction_sections_match_seed_000(tour_output):
    assert tour_output[""] == ["FeatureSet SensorData: features (1, 10), targets (1, 1)"]
    assert tour_output["simple linear graph"] == [
        "Label:  simple-graph", "Nodes:  ['SimpleMLP']", "Built:  False"]
    chain = tour_output["multi-node chain"]
    assert chain[0] == "Node labels: ['Encoder', 'Regressor']" and "n0 --> n1" in chain
    branch = tour_output["branching graph"]
    assert branch[0] == "Node labels: ['EncoderA', 'EncoderB', 'Merge', 'Head']"
    assert {"fs0 --> n0", "fs0 --> n1", "n0 --> n2", "n1 --> n2", "n2 --> n3"} <= set(branch)
    assert tour_output["nodes by label"] == [
        "Node labels: ['EncoderA', 'EncoderB', 'Merge', 'Head']"]
    assert tour_output["without a global optimizer"] == ["Global optimizer: None"]
