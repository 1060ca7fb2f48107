"""Every parity row, eager and compiled, against its PyTorch reference."""

import pytest

from tests.parity.harness import DEFAULT_ATOL, DEFAULT_RTOL, all_rows, check_row

ROWS = all_rows()


# Both modes of a row share one reference run: keep them on one xdist worker.
PARAMS = [
    pytest.param(row, mode, id=f"{row.label}-{mode}", marks=pytest.mark.xdist_group(row.label))
    for row in ROWS
    for mode in ("eager", "compiled")
]


@pytest.mark.parametrize("row,mode", PARAMS)
def test_parity(row, mode):
    check_row(row, mode)


def test_rows_have_unique_labels():
    labels = [r.label for r in ROWS]
    assert len(labels) == len(set(labels)), sorted(x for x in labels if labels.count(x) > 1)


def test_loose_tolerances_are_explained():
    loose = [r.label for r in ROWS if (r.atol > DEFAULT_ATOL or r.rtol > DEFAULT_RTOL or r.compare) and not r.note]
    assert not loose, f"rows with a looser tolerance or a statistical check need a note saying why: {loose}"
