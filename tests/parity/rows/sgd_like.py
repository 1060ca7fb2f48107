"""Parity rows for the SGD-like and sign-based optimizers (mlx_optim/optimizers/sgd_like.py)."""

from tests.parity.harness import Row

ROWS = [
    # sgdw
    Row("sgdw", {"learning_rate": 1e-2}),
    Row("sgdw", {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1}, id="decoupled-damp"),
    Row(
        "sgdw",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "maximize": True,
        },
        id="l2-nesterov-max",
    ),
    # sgdp: delta >= 1 makes the channel/layer projection fire on the test tensors
    Row("sgdp", {"learning_rate": 1e-2}),
    Row(
        "sgdp",
        {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1, "delta": 1.0, "wd_ratio": 0.5},
        id="project-damp",
    ),
    Row(
        "sgdp",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "delta": 3.0,
            "eps": 1e-6,
            "maximize": True,
        },
        id="nesterov-fixed-max",
    ),
    Row("sgdp", {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": False}, id="l2"),
    # accsgd
    Row("accsgd", {"learning_rate": 1e-2}),
    Row(
        "accsgd",
        {"learning_rate": 1e-2, "kappa": 500.0, "xi": 5.0, "constant": 0.5, "weight_decay": 0.1, "maximize": True},
        id="options",
    ),
    # aggmo
    Row("aggmo", {"learning_rate": 1e-2}),
    Row("aggmo", {"learning_rate": 1e-2, "betas": (0.5, 0.9, 0.99, 0.3), "weight_decay": 0.1}, id="4betas-l2"),
    Row(
        "aggmo",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "maximize": True},
        id="decoupled-fixed-max",
    ),
    # pid
    Row("pid", {"learning_rate": 1e-2}),
    Row(
        "pid",
        {
            "learning_rate": 1e-3,
            "momentum": 0.9,
            "dampening": 0.1,
            "derivative": 5.0,
            "integral": 2.0,
            "weight_decay": 0.1,
        },
        id="momentum-l2",
    ),
    Row(
        "pid",
        {
            "learning_rate": 1e-3,
            "momentum": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="decoupled-fixed-max",
    ),
    # qhm
    Row("qhm", {"learning_rate": 1e-2}),
    Row("qhm", {"learning_rate": 1e-2, "momentum": 0.9, "nu": 0.7, "weight_decay": 0.1}, id="nu-l2"),
    Row(
        "qhm",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "nu": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="decoupled-fixed-max",
    ),
    # lars
    Row("lars", {"learning_rate": 1e-1}),
    Row(
        "lars",
        {"learning_rate": 1.0, "weight_decay": 0.1, "momentum": 0.9, "dampening": 0.1, "trust_coefficient": 0.01},
        id="wd-damp",
    ),
    Row(
        "lars",
        {"learning_rate": 1.0, "weight_decay": 0.1, "nesterov": True, "trust_coefficient": 0.02, "maximize": True},
        id="nesterov-max",
    ),
    Row("lars", {"learning_rate": 1e-1, "momentum": 0.0, "weight_decay": 0.1}, id="no-momentum"),
    # pnm
    Row("pnm", {"learning_rate": 1e-2}),
    Row(
        "pnm", {"learning_rate": 1e-2, "betas": (0.8, 0.5), "weight_decay": 0.1, "fixed_decay": True}, id="betas-fixed"
    ),
    Row("pnm", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2-max"),
    # fromage: p_bound=1.0 makes the norm bound fire as soon as a tensor grows
    Row("fromage", {"learning_rate": 1e-2}),
    Row("fromage", {"learning_rate": 5e-2, "p_bound": 1.0, "maximize": True}, id="bound-max"),
    # nero
    Row("nero", {"learning_rate": 1e-2}),
    Row(
        "nero", {"learning_rate": 1e-2, "beta": 0.9, "constraints": False, "eps": 1e-6, "maximize": True}, id="free-max"
    ),
    # srmm
    Row("srmm", {"learning_rate": 1e-2}),
    Row("srmm", {"learning_rate": 1e-2, "beta": 0.8, "memory_length": 5, "maximize": True}, id="mem5-max"),
    Row("srmm", {"learning_rate": 1e-2, "memory_length": None}, id="no-memory"),
    # tam
    Row("tam", {"learning_rate": 1e-2}),
    Row(
        "tam",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "decay_rate": 0.5,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "eps": 1e-4,
            "maximize": True,
        },
        id="fixed-max",
    ),
    Row("tam", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2"),
    # signsgd
    Row("signsgd", {"learning_rate": 1e-3}),
    Row(
        "signsgd",
        {"learning_rate": 1e-3, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="sign-l2-max",
    ),
    Row("signsgd", {"learning_rate": 1e-3, "momentum": 0.5, "weight_decay": 0.1}, id="decoupled"),
    # focus
    Row("focus", {"learning_rate": 1e-3}),
    Row(
        "focus",
        {"learning_rate": 1e-3, "betas": (0.8, 0.9), "gamma": 0.3, "weight_decay": 0.1, "maximize": True},
        id="options",
    ),
]
