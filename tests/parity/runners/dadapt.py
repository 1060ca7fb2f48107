"""Parity rows for the learning-rate-free optimizers (D-Adaptation family and Prodigy).

``learning_rate`` is D-Adaptation's multiplier of the estimated step. On the harness
problem (loud for 6 steps, then quiet) D grows slowly from ``d0=1e-6`` for AdaGrad,
SGD and Adan, so with ``learning_rate=1`` the parameters move by less than ``atol``
in 20 steps; their rows use ``learning_rate=30`` (or a larger ``d0``) so that every
row moves the parameters by 1e-2 or more. Prodigy's defaults row uses 0.5: at 1.0
the estimate grows ~2.5x per step and the run becomes so sensitive to float32
rounding that the float32 and float64 references differ by 4e-2 after 20 steps.
"""

from __future__ import annotations

from mlx_optim.check import problems as check_problems
from tests.parity.harness import (
    Portable,
    Row,
    run_reference,
)

ZERO_STEPS = 2


def _zero_start_reference(row: Row):
    """The harness problem, but the first ``ZERO_STEPS`` gradients are all zero.

    Exercises the reference's early returns (zero denominator sum / zero first
    gradient norm): nothing may move and D must stay put until gradients arrive.
    """
    return run_reference(row, check_problems.build({"zero_first": ZERO_STEPS}, row.steps))


zero_start = Portable("standard", _zero_start_reference, {"with_loss": False, "problem": {"zero_first": ZERO_STEPS}})
