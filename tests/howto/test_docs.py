"""docs/porting.md runs as written and prints what its comments say."""

from __future__ import annotations

import pytest

from tests.doc_blocks import run_doc_page


@pytest.mark.filterwarnings("ignore:overwriting registered node")
def test_porting_doc_examples_run_and_print_what_they_claim():
    n_blocks, checked = run_doc_page("porting.md")
    assert n_blocks >= 3 and len(checked) >= 23
