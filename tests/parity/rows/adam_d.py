"""Parity rows for group D: lamb, mars, novograd, qhadam, stableadamw, spam, stablespam, swats,
grokfastadamw, adamwsn, adan (all against pytorch_optimizer 4.1.0)."""

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper


def swats_group_ref(params, adam_debias=False, **kwargs):
    """SWATS reads ``adam_debias`` only from a parameter group (its constructor drops ``**kwargs``)."""
    return pytorch_optimizer.SWATS([{"params": params, "adam_debias": adam_debias}], **kwargs)


# ----------------------------------------------------------------------------- SPAM masks (random)
def spam_mask_runner(row: Row, compiled: bool):
    """Exact parity of SPAM's masked update given the same masks, plus statistics of our own masks.

    The masks are random on both sides (torch.randperm / torch.rand vs an MLX key), so the
    reference's masks are copied into the MLX state before every step; what is compared
    exactly is all the math given the masks. Our own draws are checked statistically: the
    first mask has exactly ``int(density * numel)`` entries and a redrawn one an entry
    fraction within 4 standard deviations of ``density``.
    """
    _check_spam_mask_statistics(row.kwargs["density"])
    torch.manual_seed(0)
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = pytorch_optimizer.SPAM(list(tparams.values()), **row.torch_kwargs())
    opt, holder, step = mlx_stepper(row, compiled, init, with_loss=True)
    mine, theirs = [], []
    for t in range(row.steps):
        for k, p in tparams.items():  # the reference's current masks
            if p.ndim == 2:
                opt.state[k]["mask"] = mx.array(ref.state[p]["mask"].numpy())
        _, tgrads = loss_and_grads({k: p.detach().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tgrads[k].copy())
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        loss, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, mx.array(loss))
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, theirs


def _check_spam_mask_statistics(density: float) -> None:
    shape = (100, 100)
    n = shape[0] * shape[1]
    opt = mlx_optim.SPAM(learning_rate=1e-3, density=density, update_proj_gap=2, seed=3)
    params = {"w": mx.zeros(shape)}
    opt.init(params)
    first = np.array(opt.state["w"]["mask"])
    assert first.sum() == int(density * n), (first.sum(), int(density * n))
    params = opt.apply_gradients({"w": mx.ones(shape)}, params)  # step 1 redraws the mask for step 2
    second = np.array(opt.state["w"]["mask"])
    tol = 4 * np.sqrt(density * (1 - density) / n)
    assert abs(second.mean() - density) < tol, (second.mean(), density)
    assert (first != second).any()


ROWS = [
    # lamb: foreach path (defaults, l2) and per-parameter path (rectify / adanorm)
    Row("lamb", {"learning_rate": 1e-2}),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "grad_averaging": False,
            "pre_norm": True,
            "max_grad_norm": 1.0,
            "maximize": True,
        },
        id="l2-prenorm-max",
    ),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "weight_decay": 0.02,
            "fixed_decay": True,
            "adanorm": True,
            "adam_debias": True,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
        },
        id="rectify-fixed-adanorm",
    ),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": True,
            "adam": True,
            "betas": (0.9, 0.99),
            "pre_norm": True,
            "max_grad_norm": 0.0,
        },
        id="rectify-sgd-adam",
    ),
    # mars
    Row("mars", {"learning_rate": 1e-2}),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "mars_type": "lion",
            "cautious": True,
            "weight_decay": 0.1,
            "weight_decay_1d": 0.2,
            "lr_1d": 1e-2,
            "maximize": True,
        },
        id="lion-cautious",
    ),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "optimize_1d": True,
            "ams_bound": True,
            "weight_decouple": False,
            "weight_decay": 0.1,
            "gamma": 0.1,
        },
        id="1d-ams-l2",
    ),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "ams_bound": True,
            "cautious": True,
            "weight_decay_1d": 0.1,
            "betas_1d": (0.8, 0.9),
            "fixed_decay": True,
            "weight_decay": 0.02,
        },
        id="ams-cautious-fixed",
    ),
    Row(
        "mars", {"learning_rate": 1e-2, "mars_type": "shampoo", "weight_decay": 0.1, "optimize_1d": True}, id="shampoo"
    ),
    # novograd (foreach path)
    Row("novograd", {"learning_rate": 1e-2}),
    Row(
        "novograd",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "grad_averaging": True, "adam_debias": True, "maximize": True},
        id="l2-avg-debias",
    ),
    Row(
        "novograd",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.02,
            "weight_decouple": True,
            "fixed_decay": True,
            "betas": (0.9, 0.9),
        },
        id="decoupled-fixed",
    ),
    # qhadam (foreach path)
    Row("qhadam", {"learning_rate": 1e-2}),
    Row("qhadam", {"learning_rate": 1e-2, "nus": (0.7, 0.9), "weight_decay": 0.1, "maximize": True}, id="nus-l2"),
    Row(
        "qhadam",
        {
            "learning_rate": 1e-2,
            "nus": (0.5, 1.0),
            "weight_decay": 0.02,
            "weight_decouple": True,
            "fixed_decay": True,
            "betas": (0.8, 0.99),
        },
        id="decoupled-fixed",
    ),
    # stableadamw (foreach path; Kahan summation only acts on bf16/fp16 parameters)
    Row("stableadamw", {"learning_rate": 1e-2}),
    Row(
        "stableadamw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "maximize": True, "betas": (0.8, 0.9)},
        id="l2-max",
    ),
    Row("stableadamw", {"learning_rate": 1e-2, "kahan_sum": False, "weight_decay": 0.2, "eps": 1e-3}, id="nokahan-eps"),
    # spam (per-parameter path on CPU)
    Row("spam", {"learning_rate": 1e-2}),
    Row(
        "spam",
        {
            "learning_rate": 1e-2,
            "warmup_epoch": 4,
            "update_proj_gap": 6,
            "grad_accu_steps": 2,
            "threshold": 2,
            "weight_decay": 0.1,
            "maximize": True,
        },
        id="resets-clip-max",
    ),
    Row(
        "spam",
        {
            "learning_rate": 1e-2,
            "density": 0.5,
            "update_proj_gap": 7,
            "warmup_epoch": 3,
            "grad_accu_steps": 3,
            "threshold": 5,
            "weight_decay": 0.1,
            "betas": (0.8, 0.99),
        },
        id="masks",
        runner=spam_mask_runner,
        note="random masks: the reference masks are copied into the MLX state each step (exact math parity); our own mask draws are checked statistically",
    ),
    # stablespam (per-parameter path)
    Row("stablespam", {"learning_rate": 1e-2}),
    Row(
        "stablespam",
        {
            "learning_rate": 1e-2,
            "t_max": 10,
            "eta_min": 0.3,
            "update_proj_gap": 7,
            "weight_decay": 0.1,
            "gamma1": -1.0,
            "theta": 0.9,
            "maximize": True,
        },
        id="cosine-reset",
    ),
    Row("stablespam", {"learning_rate": 1e-2, "gamma2": 0.5, "update_proj_gap": 1, "t_max": 0}, id="reset-every-step"),
    # swats (per-parameter path on CPU)
    Row("swats", {"learning_rate": 1e-2}),
    Row(
        "swats",
        {"learning_rate": 1e-2, "eps": 0.01, "nesterov": True, "weight_decay": 0.01, "weight_decouple": True},
        id="switch-nesterov-decoupled",
        steps=30,
    ),
    Row(
        "swats",
        {
            "learning_rate": 1e-2,
            "eps": 0.01,
            "ams_bound": True,
            "weight_decay": 0.02,
            "fixed_decay": True,
            "weight_decouple": True,
            "adam_debias": True,
            "maximize": True,
        },
        ref=swats_group_ref,
        id="switch-ams-fixed-debias-max",
        steps=30,
    ),
    Row(
        "swats",
        {"learning_rate": 1e-2, "eps": 0.01, "nesterov": True, "weight_decay": 0.1},
        id="switch-nesterov-l2",
        steps=30,
    ),
    # grokfastadamw (foreach path)
    Row("grokfastadamw", {"learning_rate": 1e-2}),
    Row(
        "grokfastadamw",
        {
            "learning_rate": 1e-2,
            "grokfast_after_step": 5,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "normalize_lr": False,
            "grokfast_alpha": 0.9,
            "maximize": True,
        },
        id="after-l2-max",
    ),
    Row(
        "grokfastadamw",
        {"learning_rate": 1e-2, "grokfast": False, "weight_decay": 0.02, "fixed_decay": True},
        id="plain-fixed",
    ),
    # adamwsn (foreach path)
    Row("adamwsn", {"learning_rate": 1e-2}),
    Row("adamwsn", {"learning_rate": 1e-2, "sn": True, "weight_decay": 0.1}, id="sn"),
    Row(
        "adamwsn",
        {
            "learning_rate": 1e-2,
            "sn": True,
            "subset_size": 3,
            "fixed_decay": True,
            "weight_decay": 0.02,
            "maximize": True,
        },
        id="sn-fixed-max",
    ),
    Row("adamwsn", {"learning_rate": 1e-2, "weight_decouple": False, "weight_decay": 0.1}, id="l2-noop"),
    # adan (foreach path; per-parameter path with use_gc / adanorm)
    Row("adan", {"learning_rate": 1e-2}),
    Row(
        "adan", {"learning_rate": 1e-2, "weight_decay": 0.1, "max_grad_norm": 1.0, "maximize": True}, id="prox-clip-max"
    ),
    Row(
        "adan",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "use_gc": True, "adanorm": True},
        id="decoupled-gc-adanorm",
    ),
]
