"""docs/observe.md runs as written, and prints what its comments say."""

from __future__ import annotations

from tests.doc_blocks import run_doc_page


def test_doc_examples_run_and_print_what_they_claim(capsys):
    n_blocks, checked = run_doc_page("observe.md", remarks=True)
    assert n_blocks >= 8 and len(checked) >= 10
    assert "loss: 0.2341 | acc: 0.8910" in capsys.readouterr().err
