"""docs/training.md "Predicting on new data, metrics and validation curves": its blocks
run (after the page's first block, which makes the imports) and print what they say."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
SECTION = DOC[DOC.index("## Predicting on new data"):DOC.index("## Performance")]
_PRINT = re.compile(r"^\s*print\((.*)\)\s+#\s+(.+?)\s*$")


def test_predict_metrics_curves_section_prints_what_it_says(capsys):
    first = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)[0]
    blocks = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)
    assert len(blocks) == 3
    ns: dict = {}
    exec(compile(first, "docs/training.md block 0", "exec"), ns)
    capsys.readouterr()
    expected = []
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/training.md section block {i}", "exec"), ns)
        expected += [m.group(2) for line in block.splitlines() if (m := _PRINT.match(line))]
    printed = capsys.readouterr().out.splitlines()
    assert printed == expected
