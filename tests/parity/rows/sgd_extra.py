"""Parity rows for the SGD-like optimizers in ``mlx_optim/optimizers/sgd_extra.py``."""

import dataclasses

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads, run_mlx, run_reference


def _mlx_trajectory(row, compiled, extract):
    """Like ``harness.run_mlx`` but records ``extract(params, opt)`` after every step."""
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        traj.append(extract(holder["params"], opt))
    return traj


# ---------------------------------------------------------------------------- AveragedSGD: the average too
def _averaged_sgd_ax_runner(row, compiled):
    """Compare the running average ``ax`` (not the parameters) with torch.optim.ASGD's ``state[p]['ax']``."""
    mine = _mlx_trajectory(row, compiled, lambda params, opt: {k: np.array(opt.state[k]["ax"]) for k in params})
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
    opt = torch.optim.ASGD(list(params.values()), **row.torch_kwargs())
    ref = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        ref.append({k: opt.state[p]["ax"].numpy().copy() for k, p in params.items()})
    return mine, ref


# ---------------------------------------------------------------------------- Gravity: inject the initial velocity
class _GravityWithVelocity(pytorch_optimizer.Gravity):
    """pytorch_optimizer.Gravity whose random initial velocity is replaced by given arrays."""

    def __init__(self, params, v0, **kwargs):
        super().__init__(params, **kwargs)
        self._v0 = v0

    def init_group(self, group, **kwargs):
        fresh = [p for p in group["params"] if len(self.state[p]) == 0]
        super().init_group(group, **kwargs)
        for p in fresh:
            self.state[p]["v"].copy_(torch.from_numpy(self._v0[id(p)]))


def _gravity_runner(row, compiled):
    """Exact parity given the same initial velocity: ours (seeded key) is copied into the reference."""
    probe = mlx_optim.load_optimizer(row.name)(**row.kwargs)  # same seed -> the same draw as run_mlx's
    init = {k: mx.array(v) for k, v in initial_params().items()}
    probe.init(init)
    v0 = [np.array(probe.state[k]["v"]) for k in init]

    def factory(params, **kw):
        return _GravityWithVelocity(params, {id(p): v for p, v in zip(params, v0)}, **kw)

    plain = dataclasses.replace(row, runner=None, ref=factory)
    return run_mlx(plain, compiled), run_reference(plain)


def _velocity_stats(v, sigma):
    v = np.asarray(v, np.float64).ravel() / sigma
    return np.array([v.mean(), v.std(), np.mean(np.abs(v) < 1), np.mean(np.abs(v) < 2)])


def _gravity_noise_runner(row, compiled):
    """Statistics of the initial velocity N(0, (alpha/lr)^2) on a 100k-element parameter, ours vs torch's."""
    lr, alpha = row.kwargs["learning_rate"], row.kwargs["alpha"]
    shape = (400, 250)
    opt = mlx_optim.Gravity(**row.kwargs)
    opt.init({"w": mx.zeros(shape)})
    mine = _velocity_stats(np.array(opt.state["w"]["v"]), alpha / lr)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(shape))
    p.grad = torch.zeros(shape)
    ref_opt = pytorch_optimizer.Gravity([p], lr=lr, alpha=alpha)
    ref_opt.init_group(ref_opt.param_groups[0])
    ref = _velocity_stats(ref_opt.state[p]["v"].numpy(), alpha / lr)
    return [{"stats": mine}] * row.steps, [{"stats": ref}] * row.steps


ROWS = [
    # Adai
    Row("adai", {"learning_rate": 1e-2}),
    Row(
        "adai",
        {
            "learning_rate": 1e-2,
            "betas": (0.2, 0.95),
            "weight_decay": 0.1,
            "eps": 1e-4,
            "use_gc": True,
            "maximize": True,
        },
        id="l2-gc-max",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True},
        id="decoupled-fixed",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "stable_weight_decay": True, "dampening": 0.8},
        id="stable-l2-damp",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "stable_weight_decay": True, "weight_decouple": True},
        id="stable-decoupled",
    ),
    # AdaiV2: pytorch_optimizer.Adai (its dampening option)
    Row("adaiv2", {"learning_rate": 1e-2}, ref=pytorch_optimizer.Adai),
    Row(
        "adaiv2",
        {"learning_rate": 1e-2, "dampening": 0.6, "weight_decay": 1e-2, "weight_decouple": True},
        ref=pytorch_optimizer.Adai,
        id="damp-decoupled",
    ),
    # A2Grad: no learning rate
    Row("a2grad", {}),
    Row("a2grad", {"beta": 5.0, "lips": 3.0, "variant": "inc", "maximize": True}, id="inc-max"),
    Row("a2grad", {"beta": 2.0, "lips": 5.0, "rho": 0.7, "variant": "exp"}, id="exp"),
    # ASGD: pytorch_optimizer's adaptive SGD
    Row("asgd", {"learning_rate": 1e-2}),
    Row(
        "asgd",
        {
            "learning_rate": 1e-2,
            "amplifier": 0.1,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "theta": 2.0,
            "dampening": 0.5,
            "eps": 1e-4,
            "maximize": True,
        },
        id="l2-theta-max",
    ),
    Row("asgd", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed-decay"),
    # AveragedSGD: torch.optim.ASGD
    Row("averagedsgd", {"learning_rate": 1e-2}, ref=torch.optim.ASGD),
    Row(
        "averagedsgd",
        {"learning_rate": 5e-2, "lambd": 0.1, "alpha": 0.5, "t0": 5.0, "weight_decay": 0.1, "maximize": True},
        ref=torch.optim.ASGD,
        id="options",
    ),
    Row(
        "averagedsgd",
        {"learning_rate": 5e-2, "lambd": 0.1, "t0": 5.0},
        ref=torch.optim.ASGD,
        runner=_averaged_sgd_ax_runner,
        id="average",
    ),
    # SGDSaI
    Row("sgdsai", {"learning_rate": 1e-2}),
    Row(
        "sgdsai",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": False, "eps": 1e-6},
        id="no-momentum-l2",
    ),
    Row(
        "sgdsai",
        {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="l2-quirk-max",
    ),
    Row("sgdsai", {"learning_rate": 1e-2, "momentum": 0.0}, id="no-momentum"),
    # VSGD
    Row("vsgd", {"learning_rate": 1e-1}),
    Row(
        "vsgd",
        {
            "learning_rate": 1e-1,
            "ghattg": 10.0,
            "ps": 1e-4,
            "tau1": 0.5,
            "tau2": 0.7,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="prior-l2-max",
    ),
    Row("vsgd", {"learning_rate": 1e-1, "weight_decay": 0.1}, id="decoupled"),
    # RACS
    Row("racs", {"learning_rate": 1e-1}),
    Row(
        "racs",
        {
            "learning_rate": 1e-1,
            "beta": 0.8,
            "alpha": 0.1,
            "gamma": 1.5,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-max",
    ),
    Row("racs", {"learning_rate": 1e-1, "weight_decay": 0.1, "fixed_decay": True}, id="fixed-decay"),
    # Gravity: the same initial velocity on both sides (exact), plus the statistics of the random draw
    Row("gravity", {"learning_rate": 1e-2}, runner=_gravity_runner),
    Row(
        "gravity",
        {"learning_rate": 1e-2, "alpha": 0.1, "beta": 0.5, "maximize": True, "seed": 3},
        runner=_gravity_runner,
        id="options",
    ),
    Row(
        "gravity",
        {"learning_rate": 1e-2, "alpha": 0.01},
        runner=_gravity_noise_runner,
        steps=1,
        atol=0.02,
        rtol=0.0,
        note="random initial velocity: compares mean/std and the 1- and 2-sigma fractions of 100k N(0, (alpha/lr)^2) "
        "draws (ours vs torch's, in units of alpha/lr); the standard errors are <= 3e-3",
        id="noise-stats",
    ),
]
