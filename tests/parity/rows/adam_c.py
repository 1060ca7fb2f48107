"""Parity rows for group C: AdEMAMix, SimplifiedAdEMAMix, ADOPT, DiffGrad, EXAdam, FAdam, Grams, Kate, LaProp,
MADGRAD (all against pytorch_optimizer 4.1.0)."""

from tests.parity.harness import Row


def clip_cube_root(step):
    """ADOPT clip bound t**0.333 (the timm/Keras-seed schedule); works on ints and mx arrays alike."""
    return step**0.333


ROWS = [
    # ademamix
    Row("ademamix", {"learning_rate": 1e-2}),
    Row(
        "ademamix",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99, 0.999),
            "alpha": 3.0,
            "t_alpha_beta3": 10,
            "weight_decay": 0.1,
            "cautious": True,
            "maximize": True,
        },
        id="warmup-l2-cautious-max",
    ),
    Row(
        "ademamix",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "stable_adamw": True,
            "t_alpha_beta3": 30,
            "eps": 1e-6,
        },
        id="fixed-stable",
    ),
    Row("ademamix", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True}, id="decoupled"),
    # simplifiedademamix
    Row("simplifiedademamix", {"learning_rate": 1e-3}),
    Row(
        "simplifiedademamix",
        {"learning_rate": 1e-3, "alpha": 2.0, "beta1_warmup": 10, "min_beta1": 0.8, "weight_decay": 0.1, "eps": 1e-6},
        id="warmup-alpha-decoupled",
    ),
    Row(
        "simplifiedademamix",
        {"learning_rate": 1e-3, "betas": (0.9, 0.9), "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="l2-max",
    ),
    Row("simplifiedademamix", {"learning_rate": 1e-3, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
    # adopt
    Row("adopt", {"learning_rate": 1e-2}),
    Row(
        "adopt",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "clip_lambda": clip_cube_root,
            "weight_decay": 0.1,
            "cautious": True,
            "stable_adamw": True,
        },
        id="clip-l2-cautious-stable",
    ),
    Row(
        "adopt",
        {
            "learning_rate": 1e-2,
            "clip_lambda": None,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "eps": 1e-3,
            "maximize": True,
        },
        id="noclip-decoupled-max",
    ),
    Row(
        "adopt", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True}, id="fixed"
    ),
    # diffgrad
    Row("diffgrad", {"learning_rate": 1e-2}),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "adanorm": True,
        },
        id="rectify-sgd-l2-ams-adanorm",
    ),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
            "adam_debias": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "maximize": True,
        },
        id="rectify-skip-debias-fixed-max",
    ),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.9),
            "weight_decay": 0.1,
            "ams_bound": True,
            "adanorm": True,
            "adanorm_r": 0.9,
            "eps": 1e-6,
        },
        id="ams-adanorm-r",
    ),
    # exadam
    Row("exadam", {"learning_rate": 1e-2}),
    Row(
        "exadam",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-max",
    ),
    Row("exadam", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
    # fadam
    Row("fadam", {"learning_rate": 1e-2}),
    Row(
        "fadam",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.0,
            "clip": 0.5,
            "p": 0.25,
            "eps": 1e-3,
            "eps_2": 1e-4,
            "maximize": True,
        },
        id="options-max",
    ),
    Row("fadam", {"learning_rate": 1e-2, "weight_decay": 0.5, "eps": 1e-1, "eps_2": 0.5}, id="scaled-eps"),
    # grams
    Row("grams", {"learning_rate": 1e-2}),
    Row(
        "grams",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1, "eps": 1e-8, "maximize": True},
        id="decoupled-max",
    ),
    Row("grams", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2-noop"),
    # kate
    Row("kate", {"learning_rate": 1e-2}),
    Row(
        "kate",
        {
            "learning_rate": 1e-2,
            "delta": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="delta-l2-max",
    ),
    Row("kate", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
    # laprop
    Row("laprop", {"learning_rate": 1e-2}),
    Row(
        "laprop",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.9),
            "centered": True,
            "steps_before_using_centered": 5,
            "ams_bound": True,
            "weight_decay": 0.1,
            "cautious": True,
        },
        id="centered-ams-decoupled-cautious",
    ),
    Row(
        "laprop",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "fixed_decay": True,
            "eps": 1e-8,
            "maximize": True,
        },
        id="fixed-max",
    ),
    Row("laprop", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2-noop"),
    # madgrad
    Row("madgrad", {"learning_rate": 1e-2}),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "maximize": True},
        id="nomomentum-l2-max",
    ),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": True, "eps": 1e-4},
        id="decoupled",
    ),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": True, "eps": 0.0},
        id="nomomentum-decoupled-eps0",
    ),
]
