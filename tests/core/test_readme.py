"""The README's example runs and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("examples/quickstart.py")
    ci = (README.parent / ".ci" / "run").read_text()
    assert first[1] in ci


def test_readme_example_trains(capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    m = re.fullmatch(r"train loss (\S+) -> (\S+), step compiled 1x", out[0])
    assert m and float(m.group(2)) < 0.2 * float(m.group(1))
    assert out[1] == "['encoder', 'head'] ['encoder']"
