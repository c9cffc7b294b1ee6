"""docs/data.md runs as written and prints what its comments say."""

from __future__ import annotations

from tests.doc_blocks import run_doc_page


def test_data_doc_examples_run_and_print_what_they_claim():
    n_blocks, checked = run_doc_page("data.md")
    assert n_blocks >= 8 and len(checked) >= 30
