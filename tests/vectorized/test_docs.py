"""docs/experiments.md: its python blocks run in order and print what the page says."""

from __future__ import annotations

from tests.doc_blocks import run_doc_page


def test_experiments_page_runs_as_written():
    n_blocks, checked = run_doc_page("experiments.md")
    assert n_blocks == 8 and len(checked) >= 15
