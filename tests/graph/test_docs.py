"""docs/graph.md: its python blocks run in order, and its printed views are real."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "graph.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
MERMAID = re.search(r"```\n(flowchart LR\n.*?)```", DOC, flags=re.S).group(1)
SUMMARY = re.search(r"```\n(node .*?)```", DOC, flags=re.S).group(1)


def test_doc_blocks_run_in_order_and_views_match(capsys):
    ns: dict = {}
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"docs/graph.md python block {i}", "exec"), ns)
    printed = capsys.readouterr().out
    assert "a node labelled 'A' is already registered" in printed and "A_1" in printed
    assert "EncoderA (1, 10) -> (1, 8)" in printed
    assert "Merge {'EncoderA': (1, 8), 'EncoderB': (1, 4)} -> (1, 12)" in printed
    graph = ns["graph"]
    assert ns["outputs"]["Head"].shape == (500, 1, 1)
    assert graph.frozen_paths == {"EncoderA", "Head.layer_0.kernel"}  # as the doc says
    graph.unfreeze()
    graph.freeze(["EncoderA"])
    assert graph.visualize().strip() == MERMAID.strip()
    assert graph.summary().strip().splitlines()[1:] == SUMMARY.strip().splitlines()
