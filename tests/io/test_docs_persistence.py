"""docs/persistence.md runs as written and prints what its comments say."""

from __future__ import annotations

from tests.doc_blocks import run_doc_page


def test_doc_examples_run_and_print_what_they_claim():
    # ``...`` in the page's expectations stands for paths, ids and times
    n_blocks, checked = run_doc_page("persistence.md", ellipsis=True)
    assert n_blocks >= 8 and len(checked) >= 10
