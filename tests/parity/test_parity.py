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


def test_fp64_envelope_accepts_only_within_the_reference_spread():
    import numpy as np

    from tests.parity.harness import Row, assert_close_trajectories

    row = Row("adam", steps=1, fp64_envelope=2.0, note="test")
    ref64 = [{"a": np.zeros(3)}]
    ref32 = [{"a": np.full(3, 1e-3)}]  # the float32 reference is 1e-3 from its float64 run
    assert_close_trajectories([{"a": np.full(3, -1.5e-3)}], ref32, row, "eager", ref64)  # 1.5e-3 <= 2 x 1e-3
    with pytest.raises(AssertionError, match="float64"):
        assert_close_trajectories([{"a": np.full(3, -2.5e-3)}], ref32, row, "eager", ref64)
    with pytest.raises(AssertionError, match="differs"):  # without the float64 run, atol/rtol alone
        assert_close_trajectories([{"a": np.full(3, -1.5e-3)}], ref32, row, "eager")


def test_loose_tolerances_are_explained():
    loose = [
        r.label
        for r in ROWS
        if (r.atol > DEFAULT_ATOL or r.rtol > DEFAULT_RTOL or r.compare or r.fp64_envelope) and not r.note
    ]
    assert not loose, f"rows with a looser tolerance or a statistical check need a note saying why: {loose}"
