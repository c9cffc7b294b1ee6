"""Run a docs page's ```python blocks in order, turning ``print(x)  # expected`` into checks.

A page is documentation first: each ``print`` whose line ends in a comment states what it
prints, and :func:`run_doc_page` makes that statement a test. ``...`` in an expectation
matches anything when ``ellipsis=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
_PRINT = re.compile(r"^(\s*)print\((.*)\)\s+#\s+(.+?)\s*$")


def _instrument(code: str, remarks: bool) -> tuple[str, int]:
    lines, n = [], 0
    for line in code.splitlines():
        m = _PRINT.match(line)
        if m and not (remarks and m.group(3).startswith(("stderr", "("))):
            indent, args, expected = m.groups()
            if remarks:
                expected = re.split(r"\s{2,}\(", expected)[0]  # drop a trailing "(remark)"
            lines.append(f"{indent}__check({expected!r}, {args})")
            n += 1
        else:
            lines.append(line)
    return "\n".join(lines), n


def run_doc_page(name: str, *, ellipsis: bool = False,
                 remarks: bool = False) -> tuple[int, list[str]]:
    """Execute ``docs/<name>`` block by block in one namespace.

    With ``remarks``, a comment that starts with ``(`` or ``stderr`` is prose, not an
    expectation, and ``expected  (remark)`` checks only ``expected``.

    Returns:
        (number of python blocks, the printed texts that were checked).
    """
    page = DOCS / name
    checked: list[str] = []

    def check(expected: str, *values: object) -> None:
        got = " ".join(str(v) for v in values)
        if ellipsis:
            pattern = ".*".join(re.escape(part) for part in expected.split("..."))
            ok = re.fullmatch(pattern, got) is not None
        else:
            ok = got == expected
        assert ok, f"docs/{name} printed {got!r}, the page says {expected!r}"
        checked.append(got)

    ns = {"__check": check, "__name__": f"docs_{page.stem}"}
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    total = 0
    for i, block in enumerate(blocks):
        code, n = _instrument(block, remarks)
        total += n
        exec(compile(code, f"docs/{name} block {i}", "exec"), ns)
    assert len(checked) == total, f"docs/{name}: {total - len(checked)} print checks never ran"
    return len(blocks), checked
