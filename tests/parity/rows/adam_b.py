"""Parity rows for group B Adam-like optimizers: AdaGC, Adalite, AdamC, AdamG, AdaShift, AdaSmooth, AdaTAM, Aida,
Amos, AvaGrad (all against pytorch_optimizer 4.1.0)."""

import mlx.core as mx
import torch

from tests.parity.harness import Row

WD = {"weight_decay": 0.1}

ROWS = [
    # adagc: the default warmup (100) covers all 20 steps; short warmups reach the relative-clipping phase
    Row("adagc", {"learning_rate": 1e-2}),
    Row(
        "adagc",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 5,
            "beta": 0.9,
            "lambda_abs": 2.0,
            "lambda_rel": 1.2,
            "fixed_decay": True,
            "weight_decay": 0.02,
        },
        id="short-warmup-fixed",
    ),
    Row(
        "adagc",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 8,
            "weight_decouple": False,
            "betas": (0.8, 0.99),
            "maximize": True,
            **WD,
        },
        id="l2-max",
    ),
    Row("adagc", {"learning_rate": 1e-2, "warmup_steps": 0, "weight_decay": 0.0, "eps": 1e-6}, id="no-warmup"),
    # adalite
    Row("adalite", {"learning_rate": 1e-2}),
    Row(
        "adalite",
        {"learning_rate": 1e-2, "weight_decouple": False, "tau": 0.5, "maximize": True, **WD},
        id="l2-tau-max",
    ),
    Row(
        "adalite",
        {
            "learning_rate": 1e-2,
            "fixed_decay": True,
            "ratio_min": 0.5,
            "g_norm_min": 1.0,
            "eps1": 1e-4,
            "eps2": 1e-6,
            "betas": (0.8, 0.99),
            "weight_decay": 0.02,
        },
        id="fixed-bounds",
    ),
    # adamc
    Row("adamc", {"learning_rate": 1e-2}),
    Row("adamc", {"learning_rate": 1e-2, "ams_bound": True, "normalized": True, **WD}, id="ams-normalized"),
    Row("adamc", {"learning_rate": 1e-2, "weight_decouple": False, "maximize": True, "eps": 1e-6, **WD}, id="l2-max"),
    Row("adamc", {"learning_rate": 1e-2, "fixed_decay": True, "betas": (0.8, 0.99), "weight_decay": 0.02}, id="fixed"),
    # adamg
    Row("adamg", {"learning_rate": 0.1}),  # lr=1.0 would be clamped by 1/sqrt(t) on every step
    Row(
        "adamg",
        {"learning_rate": 0.1, "betas": (0.9, 0.99, 0.9), "p": 0.5, "q": 0.3, "maximize": True, **WD},
        id="l2-pq-max",
    ),
    Row(
        "adamg",
        {"learning_rate": 0.1, "weight_decouple": True, "fixed_decay": True, "eps": 1e-6, "weight_decay": 0.02},
        id="decoupled-fixed",
    ),
    Row("adamg", {"learning_rate": 0.1, "weight_decouple": True, **WD}, id="decoupled"),
    # adashift: the default keep_num=10 leaves 10 update steps in a 25-step run
    Row("adashift", {"learning_rate": 5e-2}, steps=25),
    Row(
        "adashift",
        {"learning_rate": 1e-2, "keep_num": 3, "reduce_func": None, "cautious": True, "maximize": True},
        id="identity-cautious-max",
    ),
    Row(
        "adashift",
        {"learning_rate": 1e-2, "keep_num": 4, "reduce_func": mx.mean, "betas": (0.8, 0.99), "eps": 1e-6},
        ref_kwargs={"reduce_func": torch.mean},
        id="mean",
    ),
    Row("adashift", {"learning_rate": 1e-2, "keep_num": 1, "betas": (0.0, 0.9)}, id="keep1-beta0"),
    # adasmooth
    Row("adasmooth", {"learning_rate": 1e-2}),
    Row("adasmooth", {"learning_rate": 1e-2, "betas": (0.3, 0.9), "maximize": True, **WD}, id="l2-max"),
    Row(
        "adasmooth",
        {"learning_rate": 1e-2, "weight_decouple": True, "fixed_decay": True, "eps": 1e-4, "weight_decay": 0.02},
        id="decoupled-fixed",
    ),
    Row("adasmooth", {"learning_rate": 1e-2, "weight_decouple": True, **WD}, id="decoupled"),
    # adatam
    Row("adatam", {"learning_rate": 1e-2}),
    Row("adatam", {"learning_rate": 1e-2, "decay_rate": 0.5, "maximize": True, **WD}, id="decoupled-max"),
    Row("adatam", {"learning_rate": 1e-2, "weight_decouple": False, "betas": (0.8, 0.99), **WD}, id="l2"),
    Row("adatam", {"learning_rate": 1e-2, "fixed_decay": True, "eps": 1e-6, "weight_decay": 0.02}, id="fixed"),
    # aida
    Row("aida", {"learning_rate": 1e-2}),
    Row("aida", {"learning_rate": 1e-2, "rectify": True, "ams_bound": True, "k": 3, **WD}, id="rectify-ams-l2"),
    Row(
        "aida",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
            "adam_debias": True,
            "weight_decouple": True,
            **WD,
        },
        id="rectify-skip-debias",
    ),
    Row(
        "aida",
        {
            "learning_rate": 1e-2,
            "adanorm": True,
            "adanorm_r": 0.9,
            "maximize": True,
            "weight_decouple": True,
            "fixed_decay": True,
            "xi": 1e-10,
            "eps": 1e-6,
            "weight_decay": 0.02,
        },
        id="adanorm-fixed-max",
    ),
    # amos
    Row("amos", {"learning_rate": 1e-2}),
    Row(
        "amos",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "extra_l2": 0.01,
            "c_coef": 0.5,
            "d_coef": 0.1,
            "beta": 0.99,
            "eps": 1e-12,
            "maximize": True,
        },
        id="momentum-l2-max",
    ),
    # avagrad
    Row("avagrad", {"learning_rate": 1e-1}),
    Row(
        "avagrad",
        {"learning_rate": 1e-1, "adam_debias": True, "betas": (0.8, 0.99), "eps": 1e-2, "maximize": True, **WD},
        id="debias-max",
    ),
    Row("avagrad", {"learning_rate": 1e-1, "weight_decouple": False, **WD}, id="l2"),
    Row("avagrad", {"learning_rate": 1e-1, "fixed_decay": True, "weight_decay": 0.02}, id="fixed"),
]
