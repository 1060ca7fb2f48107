"""Every parity row, eager and compiled, against its PyTorch reference."""

import pytest

from tests.parity.harness import DEFAULT_ATOL, DEFAULT_RTOL, all_rows, check_row

ROWS = all_rows()


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("row", ROWS, ids=[r.label for r in ROWS])
def test_parity(row, mode):
    check_row(row, mode)


def test_rows_have_unique_labels():
    labels = [r.label for r in ROWS]
    assert len(labels) == len(set(labels)), sorted(x for x in labels if labels.count(x) > 1)


def test_loose_tolerances_are_explained():
    loose = [r.label for r in ROWS if (r.atol > DEFAULT_ATOL or r.rtol > DEFAULT_RTOL or r.compare) and not r.note]
    assert not loose, f"rows with a looser tolerance or a statistical check need a note saying why: {loose}"
