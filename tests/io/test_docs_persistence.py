"""docs/persistence.md runs as written and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "persistence.md"
_PRINT = re.compile(r"^(\s*)print\((.*)\)\s+#\s+(.+?)\s*$")


def _instrument(code: str) -> tuple[str, int]:
    """``print(a)  # expected`` becomes a check; ``...`` in the expectation matches anything."""
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


def test_doc_examples_run_and_print_what_they_claim():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8
    checked = []

    def check(expected, *values):
        got = " ".join(str(v) for v in values)
        pattern = ".*".join(re.escape(part) for part in expected.split("..."))
        assert re.fullmatch(pattern, got), f"docs/persistence.md printed {got!r}, page says {expected!r}"
        checked.append(got)

    ns = {"__check": check, "__name__": "docs_persistence"}
    total = 0
    for block in blocks:
        code, n = _instrument(block)
        total += n
        exec(compile(code, str(DOC), "exec"), ns)
    assert len(checked) == total >= 10
