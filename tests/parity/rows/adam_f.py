"""Parity rows for mlx_optim/optimizers/adam_f.py: ano, dualadam (references: pytorch_optimizer 4.1.0)."""

from tests.parity.harness import Row

ROWS = [
    # ano: pytorch_optimizer.Ano (sign-like step: learning rate 1e-3)
    Row("ano", {"learning_rate": 1e-3}),
    Row(
        "ano",
        {
            "learning_rate": 1e-3,
            "betas": (0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "logarithmic_schedule": True,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-log-max",
    ),
    Row("ano", {"learning_rate": 1e-3, "weight_decay": 0.1}, id="decoupled"),
    Row("ano", {"learning_rate": 1e-3, "weight_decay": 1e-2, "fixed_decay": True}, id="fixed"),
    # dualadam: pytorch_optimizer.DualAdam; the default switch_rate keeps the inverse blend on for all 20 steps
    Row("dualadam", {"learning_rate": 1e-2}),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "switch_rate": 0.08, "weight_decay": 0.1, "eps": 1e-6},
        id="switch-l2",  # inverse blend for steps 1-11, then Adam
    ),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "switch_rate": 0.3, "weight_decay": 0.1, "weight_decouple": True, "maximize": True},
        id="decoupled-max",  # blend for steps 1-2, then Adam
    ),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "weight_decay": 1e-2, "weight_decouple": True, "fixed_decay": True, "switch_rate": 1.0},
        id="fixed-adam",  # switch_rate 1: plain Adam from the first step
    ),
    Row("dualadam", {"learning_rate": 1e-2, "switch_rate": 0.0}, id="inverse-only"),  # rate 1: step m_hat * d
]
