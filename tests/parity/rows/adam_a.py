"""Parity rows for the group-A Adam variants (mlx_optim/optimizers/adam_a.py)."""

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads


def _warmup_decay(step):
    """A learning-rate schedule that starts at 0 (warm-up over 3 steps, then decay), as a factor of ``lr``."""
    return np.minimum(step / 3.0, 1.0) * 0.9**step


def _group_option(cls, *keys):
    """Factory: ``cls`` with ``keys`` in its one parameter group (the reference reads them only from the group)."""

    def factory(params, **kw):
        group = {"params": list(params), **{k: kw.pop(k) for k in keys if k in kw}}
        return cls([group], **kw)

    return factory


def _scheduled_runner(row: Row, compiled: bool):
    """Run ``row`` with ``learning_rate * _warmup_decay(step)``: an MLX schedule vs setting the torch group's lr.

    The torch optimizer is built with the schedule's first value (0), as a torch user
    warming up from zero would; AdaBound then takes the first positive rate as its
    base rate on both sides, and ``final_lr`` scales with the rate afterwards.
    """
    lr = row.kwargs["learning_rate"]
    kwargs = {**row.kwargs, "learning_rate": lambda step: lr * mx.minimum(step / 3.0, 1.0) * mx.power(0.9, step)}
    init = initial_params()
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = pytorch_optimizer.load_optimizer(row.name)(list(params.values()), **{**row.torch_kwargs(), "lr": 0.0})
    opt = mlx_optim.load_optimizer(row.name)(**kwargs)
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt.init(holder["params"])

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    mine, theirs = [], []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k])
        for group in ref.param_groups:
            group["lr"] = float(lr * _warmup_decay(t))
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in params.items()})
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, theirs


def _layer_projection_runner(row: Row, compiled: bool):
    """AdamP on a problem whose rows are each (anti-)aligned with their gradient but cancel as a whole layer.

    The harness's problem only ever triggers AdamP's per-channel projection; here the
    per-channel ``|cos(g, p)|`` is large while the layer-wide cosine is near zero, so the
    layer-wise projection (and its weight-decay ratio) is exercised. Both sides get
    the same float32 gradients computed from their own current parameters.
    """
    rng = np.random.default_rng(3)
    init = rng.normal(size=(2, 8)).astype(np.float32)
    init[1] *= np.linalg.norm(init[0]) / np.linalg.norm(init[1])  # equal row norms: layer cosine ~ 0
    signs = np.array([[1.0], [-1.0]])
    noise = [rng.normal(scale=0.2, size=(2, 8)) for _ in range(row.steps)]

    def grad(p, t):
        return (signs * p + noise[t]).astype(np.float32)

    ref_p = torch.nn.Parameter(torch.from_numpy(init.copy()))
    ref = pytorch_optimizer.AdamP([ref_p], **row.torch_kwargs())
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    holder = {"w": mx.array(init)}
    opt.init(holder)

    def step(g):
        holder.update(opt.apply_gradients({"w": g}, holder))

    if compiled:
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    mine, theirs = [], []
    for t in range(row.steps):
        ref_p.grad = torch.from_numpy(grad(ref_p.detach().numpy(), t))
        ref.step()
        step(mx.array(grad(np.array(holder["w"]), t)))
        mx.eval(holder, opt.state)
        theirs.append({"w": ref_p.detach().numpy().copy()})
        mine.append({"w": np.array(holder["w"])})
    return mine, theirs


ROWS = [
    # adabelief
    Row("adabelief", {"learning_rate": 1e-2}),
    Row(
        "adabelief",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adanorm": True,
            "adanorm_r": 0.9,
        },
        id="rectify-ams-l2-adanorm",
    ),
    Row(
        "adabelief",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 6,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "adam_debias": True,
            "eps": 1e-8,
            "betas": (0.8, 0.99),
            "maximize": True,
        },
        id="rectify-nosgd-fixed-debias-max",
    ),
    # adabound / adaboundw (reference: pytorch_optimizer.AdaBound)
    Row("adabound", {"learning_rate": 1e-2}),
    Row(
        "adabound",
        {
            "learning_rate": 1e-2,
            "final_lr": 0.05,
            "gamma": 1e-2,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "betas": (0.8, 0.99),
        },
        id="ams-l2",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "eps": 1e-6, "maximize": True},
        id="fixed-max",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "final_lr": 0.05, "gamma": 0.05, "weight_decay": 0.1},
        runner=_scheduled_runner,
        id="warmup-schedule",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "final_lr": 0.05, "adam_debias": True, "weight_decay": 0.1},
        ref=_group_option(pytorch_optimizer.AdaBound, "adam_debias"),
        id="adam-debias",
    ),
    Row("adaboundw", {"learning_rate": 1e-2}, ref=pytorch_optimizer.AdaBound),
    Row(
        "adaboundw",
        {
            "learning_rate": 1e-2,
            "final_lr": 0.2,
            "gamma": 0.1,
            "weight_decay": 0.1,
            "ams_bound": True,
            "maximize": True,
        },
        ref=pytorch_optimizer.AdaBound,
        id="ams-max",
    ),
    Row(
        "adaboundw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "fixed_decay": True},
        ref=pytorch_optimizer.AdaBound,
        id="l2",
    ),
    Row(
        "adaboundw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True},
        ref=pytorch_optimizer.AdaBound,
        id="fixed",
    ),
    # adamod
    Row("adamod", {"learning_rate": 1e-2}),
    Row(
        "adamod",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.999, 0.999),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="l2-debias",
    ),
    Row("adamod", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
    # adamp: delta=2 makes the per-channel projection fire on part of the steps
    Row("adamp", {"learning_rate": 1e-2}),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 2.0, "wd_ratio": 0.5, "weight_decay": 0.1, "nesterov": True},
        id="proj-nesterov",
    ),
    Row(
        "adamp",
        {
            "learning_rate": 1e-2,
            "delta": 1.5,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "use_gc": True,
            "cautious": True,
            "nesterov": True,
            "adanorm": True,
            "adam_debias": True,
            "maximize": True,
        },
        id="proj-gc-cautious-adanorm-max",
    ),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 2.5, "weight_decay": 0.1, "weight_decouple": False, "cautious": True},
        id="proj-l2-cautious",
    ),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 1.0, "wd_ratio": 0.3, "weight_decay": 0.1},
        runner=_layer_projection_runner,
        id="layer-projection",
    ),
    # adams (global second-moment statistic)
    Row("adams", {"learning_rate": 1e-2}),
    Row(
        "adams",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "ams_bound": True, "adanorm": True},
        id="l2-ams-adanorm",
    ),
    Row(
        "adams",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "adam_debias": True,
            "maximize": True,
            "betas": (0.8, 0.99),
        },
        id="fixed-debias-max",
    ),
    # adanorm
    Row("adanorm", {"learning_rate": 1e-2}),
    Row(
        "adanorm",
        {
            "learning_rate": 1e-2,
            "r": 0.8,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="ams-l2-debias",
    ),
    Row("adanorm", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
    # adapnm
    Row("adapnm", {"learning_rate": 1e-2}),
    Row(
        "adapnm",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.99, 0.5),
            "ams_bound": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adanorm": True,
        },
        id="noams-l2-adanorm",
    ),
    Row(
        "adapnm",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "adam_debias": True, "maximize": True},
        id="fixed-debias-max",
    ),
    # padam
    Row("padam", {"learning_rate": 1e-2}),
    Row("padam", {"learning_rate": 1e-2, "partial": 0.5, "weight_decay": 0.1, "betas": (0.8, 0.99)}, id="l2-adam"),
    Row(
        "padam",
        {
            "learning_rate": 1e-2,
            "partial": 0.125,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="fixed-max",
    ),
    # yogi
    Row("yogi", {"learning_rate": 1e-2}),
    Row(
        "yogi",
        {
            "learning_rate": 1e-2,
            "initial_accumulator": 1e-2,
            "eps": 1e-6,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="l2-debias",
    ),
    Row("yogi", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
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
