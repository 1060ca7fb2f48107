"""Every parity row, eager and compiled, against its PyTorch reference; and the stored references
(``mlx_optim/data/goldens.npz``, replayed by ``mlx-optim check``) against the same reference runs (drift check)."""

import pytest

from tests.parity.harness import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    all_rows,
    check_row,
    golden_drift,
    golden_entry,
    stored_goldens,
)

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
    if mode == "eager":  # the reference run is cached: the drift check costs no extra reference run
        problems = golden_drift(row)
        assert not problems, "stored goldens drifted (scripts/gen_goldens.py regenerates them):\n" + "\n".join(problems)


def test_goldens_cover_exactly_the_rows():
    """Every portable row is stored, nothing else is, and the non-portable rows are listed with their reason."""
    gold = stored_goldens()
    portable, not_portable = [], []
    for row in ROWS:
        try:
            golden_entry(row)
            portable.append(row.label)
        except (TypeError, ValueError):
            not_portable.append(row.label)
    assert list(gold.rows) == portable, "run scripts/gen_goldens.py"
    assert [e["label"] for e in gold.not_portable] == not_portable, "run scripts/gen_goldens.py"


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
