"""Parity rows for :mod:`mlx_optim.optimizers.msvag`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # msvag
    Row(
        "msvag",
        {"learning_rate": 1e-2},
        atol=1e-4,
        note="step 1 is ill-conditioned: rho_1 is clipped to 0.9999, so the float32 rounding noise of "
        "v/(1-b^t) - m^2 (~1e-7 g^2, from 1-0.9 rounding differently in float32 and float64) is divided by "
        "1-rho = 1e-4 and the damping factor is 1 +- 1e-3 on both sides; measured max abs diff 6.3e-5 "
        "(the beta=0.5 row, where 1-beta is exact, matches to 5e-7)",
    ),
    Row("msvag", {"learning_rate": 5e-2, "beta": 0.5, "maximize": True}, id="beta-max"),
]
