"""docs/data.md runs as written and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
_PRINT = re.compile(r"^(\s*)print\((.*)\)\s+#\s+(.+?)\s*$")


def _instrument(code: str) -> tuple[str, int]:
    """``print(x)  # expected`` -> a check that the printed text equals ``expected``."""
    lines, n = [], 0
    for line in code.splitlines():
        m = _PRINT.match(line)
        if m:
            indent, args, expected = m.groups()
            lines.append(f"{indent}__check({expected!r}, {args})")
            n += 1
        else:
            lines.append(line)
    return "\n".join(lines), n


def test_data_doc_examples_run_and_print_what_they_claim():
    checked = []

    def check(expected, *values):
        got = " ".join(str(v) for v in values)
        checked.append(got)
        assert got == expected, f"docs/data.md printed {got!r}, the page says {expected!r}"

    ns = {"__check": check, "__name__": "docs_data"}
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    total = 0
    for i, block in enumerate(blocks):
        code, n = _instrument(block)
        total += n
        exec(compile(code, f"docs/data.md block {i}", "exec"), ns)
    assert len(blocks) >= 8 and total >= 30 and len(checked) == total
