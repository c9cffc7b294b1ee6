"""Every ```python block of docs/flow.md runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "flow.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_block_runs(i, capsys):
    exec(compile(BLOCKS[i], f"docs/flow.md block {i}", "exec"), {})
