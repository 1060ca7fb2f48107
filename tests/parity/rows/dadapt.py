"""Parity rows for the learning-rate-free optimizers (D-Adaptation family and Prodigy).

``learning_rate`` is D-Adaptation's multiplier of the estimated step. On the harness
problem (loud for 6 steps, then quiet) D grows slowly from ``d0=1e-6`` for AdaGrad,
SGD and Adan, so with ``learning_rate=1`` the parameters move by less than ``atol``
in 20 steps; their rows use ``learning_rate=30`` (or a larger ``d0``) so that every
row moves the parameters by 1e-2 or more. Prodigy's defaults row uses 0.5: at 1.0
the estimate grows ~2.5x per step and the run becomes so sensitive to float32
rounding that the float32 and float64 references differ by 4e-2 after 20 steps.
"""

import mlx.core as mx
import numpy as np
import torch

from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper, reference_class

ZERO_STEPS = 2


def _grads(params: dict, t: int) -> dict:
    _, grads = loss_and_grads(params, t)
    return {k: np.zeros_like(g) for k, g in grads.items()} if t < ZERO_STEPS else grads


def zero_start(row: Row, compiled: bool) -> tuple[list, list]:
    """The harness problem, but the first ``ZERO_STEPS`` gradients are all zero.

    Exercises the reference's early returns (zero denominator sum / zero first
    gradient norm): nothing may move and D must stay put until gradients arrive.
    """
    init = initial_params()
    tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    topt = reference_class(row)(list(tp.values()), **row.torch_kwargs())
    opt, holder, step = mlx_stepper(row, compiled, init)
    mine, ref = [], []
    for t in range(row.steps):
        grads = _grads({k: p.detach().numpy() for k, p in tp.items()}, t)
        for k, p in tp.items():
            p.grad = torch.from_numpy(grads[k].copy())
        topt.step()
        ref.append({k: p.detach().numpy().copy() for k, p in tp.items()})
        step({k: mx.array(g) for k, g in _grads({k: np.array(v) for k, v in holder["params"].items()}, t).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, ref


ROWS = [
    # dadaptadagrad
    Row("dadaptadagrad", {"learning_rate": 30.0}),
    Row(
        "dadaptadagrad",
        {"learning_rate": 1.0, "momentum": 0.9, "weight_decay": 0.1, "weight_decouple": True, "eps": 1e-8, "d0": 1e-2},
        id="momentum-decoupled",
    ),
    Row(
        "dadaptadagrad",
        {
            "learning_rate": 0.5,
            "momentum": 0.5,
            "weight_decay": 0.05,
            "weight_decouple": True,
            "fixed_decay": True,
            "growth_rate": 1.5,
            "d0": 1e-3,
        },
        id="fixed-growth",
    ),
    Row(
        "dadaptadagrad",
        {"learning_rate": 30.0, "weight_decay": 0.1, "maximize": True, "eps": 1e-6},
        id="l2-max",
    ),
    # dadaptadam
    Row("dadaptadam", {"learning_rate": 1.0}),
    Row(
        "dadaptadam",
        {
            "learning_rate": 1.0,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "bias_correction": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-bc-growth",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 10.0, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "maximize": True},
        id="l2-max",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 1.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptsgd
    Row("dadaptsgd", {"learning_rate": 30.0}),
    Row(
        "dadaptsgd",
        {
            "learning_rate": 30.0,
            "momentum": 0.5,
            "weight_decay": 0.01,
            "weight_decouple": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-growth",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 3.0, "momentum": 0.0, "weight_decay": 0.1, "maximize": True, "d0": 1e-3},
        id="l2-max",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 30.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptlion
    Row("dadaptlion", {"learning_rate": 10.0}),
    Row(
        "dadaptlion",
        {"learning_rate": 1.0, "betas": (0.8, 0.99), "weight_decay": 0.1, "weight_decouple": True, "d0": 1e-4},
        id="decoupled",
    ),
    Row("dadaptlion", {"learning_rate": 10.0, "weight_decay": 0.1, "maximize": True}, id="l2-max"),
    Row(
        "dadaptlion",
        {"learning_rate": 1.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptadan (the maximize row also pins the reference's first-step previous_grad quirk)
    Row("dadaptadan", {"learning_rate": 30.0}),
    Row(
        "dadaptadan",
        {
            "learning_rate": 30.0,
            "betas": (0.9, 0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-growth",
    ),
    Row(
        "dadaptadan",
        {"learning_rate": 30.0, "weight_decay": 0.1, "eps": 1e-6, "maximize": True},
        id="divide-max",
    ),
    # prodigy
    Row("prodigy", {"learning_rate": 0.5}),
    Row(
        "prodigy",
        {
            "learning_rate": 30.0,
            "beta3": 0.9,
            "d_coef": 0.5,
            "growth_rate": 1.1,
            "weight_decay": 0.1,
            "bias_correction": True,
            "safeguard_warmup": True,
        },
        id="bc-safeguard-growth",
    ),
    Row(
        "prodigy",
        {
            "learning_rate": 1.0,
            "betas": (0.8, 0.99),
            "eps": None,
            "weight_decay": 0.05,
            "fixed_decay": True,
            "d0": 1e-4,
        },
        id="atan2-fixed",
    ),
    # weight_decouple=False: the reference's L2 term is added after the moments, i.e. it has no effect
    Row(
        "prodigy",
        {"learning_rate": 0.5, "weight_decay": 0.1, "weight_decouple": False, "eps": 1e-2, "maximize": True},
        id="coupled-eps-max",
    ),
    # early-return paths: all-zero gradients on the first steps
    Row(
        "dadaptadagrad",
        {"learning_rate": 30.0, "momentum": 0.5, "weight_decay": 0.01, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 1.0, "weight_decay": 0.1, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 30.0, "weight_decay": 0.1, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row("dadaptlion", {"learning_rate": 10.0}, runner=zero_start, id="zero-start"),
    Row("dadaptadan", {"learning_rate": 30.0, "weight_decay": 0.1}, runner=zero_start, id="zero-start"),
    Row("prodigy", {"learning_rate": 0.5, "weight_decay": 0.1}, runner=zero_start, id="zero-start"),
]
