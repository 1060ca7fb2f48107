"""Parity rows for the core optimizers (foundation issue)."""

import torch

from tests.parity.harness import Row

ROWS = [
    # sgd: torch.optim.SGD
    Row("sgd", {"learning_rate": 1e-2}),
    Row("sgd", {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2}, id="momentum"),
    Row("sgd", {"learning_rate": 1e-2, "momentum": 0.9, "nesterov": True, "maximize": True}, id="nesterov-max"),
    # adam / adamw: torch.optim
    Row("adam", {"learning_rate": 1e-2}),
    Row(
        "adam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True},
        id="l2-ams",
    ),
    Row(
        "adam",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
        id="decoupled-max",
    ),
    Row("adamw", {"learning_rate": 1e-2}),
    Row("adamw", {"learning_rate": 1e-2, "weight_decay": 0.2, "amsgrad": True, "betas": (0.85, 0.95)}, id="ams"),
    # nadam: torch.optim.NAdam
    Row("nadam", {"learning_rate": 1e-2}),
    Row("nadam", {"learning_rate": 1e-2, "weight_decay": 0.1, "momentum_decay": 1e-2}, id="l2"),
    Row(
        "nadam",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
        id="decoupled-max",
    ),
    # rmsprop: torch.optim.RMSprop
    Row("rmsprop", {"learning_rate": 1e-2}),
    Row(
        "rmsprop",
        {"learning_rate": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 0.1, "alpha": 0.9},
        id="centered-momentum",
    ),
    # adagrad: torch.optim.Adagrad (pytorch_optimizer has no Adagrad)
    Row("adagrad", {"learning_rate": 1e-1}, ref=torch.optim.Adagrad),
    Row(
        "adagrad",
        {
            "learning_rate": 1e-1,
            "lr_decay": 0.05,
            "initial_accumulator_value": 0.1,
            "weight_decay": 0.1,
            "eps": 1e-8,
            "maximize": True,
        },
        ref=torch.optim.Adagrad,
        id="options",
    ),
    # rprop: torch.optim.Rprop
    Row("rprop", {"learning_rate": 1e-2}, ref=torch.optim.Rprop),
    Row(
        "rprop",
        {"learning_rate": 5e-2, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
        ref=torch.optim.Rprop,
        id="options",
    ),
    # radam, adamax, adadelta, lion, tiger: pytorch_optimizer
    Row("radam", {"learning_rate": 1e-2}),
    Row(
        "radam",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "degenerated_to_sgd": True,
            "adam_debias": True,
            "adanorm": True,
            "betas": (0.9, 0.9),
        },
        id="sgd-debias-adanorm",
    ),
    Row(
        "radam",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.8),
            "maximize": True,
        },
        id="fixed-threshold",
    ),
    Row("adamax", {"learning_rate": 1e-2}),
    Row("adamax", {"learning_rate": 1e-2, "weight_decay": 0.1, "adam_debias": True, "adanorm": True}, id="l2-adanorm"),
    Row(
        "adamax",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "maximize": True},
        id="decoupled-fixed",
    ),
    Row("adadelta", {"learning_rate": 1.0}),
    Row("adadelta", {"learning_rate": 0.5, "rho": 0.8, "weight_decay": 0.1, "eps": 1e-4}, id="l2"),
    Row(
        "adadelta",
        {"learning_rate": 0.5, "weight_decay": 0.1, "weight_decouple": True, "maximize": True},
        id="decoupled-max",
    ),
    Row("lion", {"learning_rate": 1e-3}),
    Row(
        "lion",
        {"learning_rate": 1e-3, "weight_decay": 0.1, "use_gc": True, "cautious": True, "adanorm": True},
        id="gc-cautious-adanorm",
    ),
    Row("lion", {"learning_rate": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2-max"),
    Row("tiger", {"learning_rate": 1e-3}),
    Row("tiger", {"learning_rate": 1e-3, "beta": 0.9, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
    Row("tiger", {"learning_rate": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2"),
]
