"""docs/training.md: every ```python block runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_training_doc_blocks_run(capsys):
    assert len(BLOCKS) >= 10
    ns: dict = {}
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"docs/training.md block {i}", "exec"), ns)
    out = capsys.readouterr().out
    assert "non-finite loss at epoch 0" in out and "done: fine" in out
