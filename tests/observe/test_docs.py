"""docs/observe.md runs as written, and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "observe.md"
_PRINT = re.compile(r"^(\s*)print\((.*)\)\s+#\s+(.+?)\s*$")


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _instrument(code: str) -> tuple[str, int]:
    """Turn ``print(a, b)  # expected`` into a check that the printed line equals ``expected``."""
    lines, n = [], 0
    for line in code.splitlines():
        m = _PRINT.match(line)
        if m and not m.group(3).startswith(("stderr", "(")):
            indent, args, expected = m.groups()
            expected = re.split(r"\s{2,}\(", expected)[0]  # drop a trailing "(remark)"
            lines.append(f"{indent}__check({expected!r}, {args})")
            n += 1
        else:
            lines.append(line)
    return "\n".join(lines), n


def test_doc_examples_run_and_print_what_they_claim(capsys):
    checked = []

    def check(expected, *values):
        got = " ".join(str(v) for v in values)
        checked.append((expected, got))
        assert got == expected, f"docs/observe.md: printed {got!r}, the page says {expected!r}"

    ns = {"__check": check, "__name__": "docs_observe"}
    blocks = _blocks()
    assert len(blocks) >= 8
    total = 0
    for i, code in enumerate(blocks):
        src, n = _instrument(code)
        total += n
        exec(compile(src, f"docs/observe.md[block {i}]", "exec"), ns)  # noqa: S102
    assert len(checked) == total >= 10
    assert "loss: 0.2341 | acc: 0.8910" in capsys.readouterr().err
