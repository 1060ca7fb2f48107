"""Parity rows for :mod:`mlx_optim.optimizers.emo`."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytorch_optimizer
import pytorch_optimizer.optimizer.emonavi as po_emonavi
import torch

from tests.parity import harness
from tests.parity.harness import Row


def exact_compute_scalar(ema):
    """pytorch_optimizer 4.1.0 ``compute_scalar`` with its round-off tie-break resolved exactly.

    ``abs(diff_m) * scale_base_m < abs(diff_l) * scale_base_l`` is ``|diff| < |diff|`` in exact
    arithmetic, i.e. always False, so the result is ``tanh(diff_l)`` in both of its branches.
    """
    scale_base_l = max(ema["long"], 1e-5)
    return math.tanh((ema["long"] - ema["short"]) / scale_base_l)


@contextlib.contextmanager
def _exact_scalar():
    original = po_emonavi.compute_scalar
    po_emonavi.compute_scalar = exact_compute_scalar
    try:
        yield
    finally:
        po_emonavi.compute_scalar = original


def exact(cls):
    """Factory: the pytorch_optimizer class whose ``step`` uses :func:`exact_compute_scalar`."""

    class Exact(cls):
        def step(self, closure=None):
            with _exact_scalar():
                return super().step(closure)

    Exact.__name__ = f"Exact{cls.__name__}"
    return Exact


EmoNaviRef = exact(pytorch_optimizer.EmoNavi)


EmoLynxRef = exact(pytorch_optimizer.EmoLynx)


EmoFactRef = exact(pytorch_optimizer.EmoFact)


def seed_ratio(scalar: float) -> float:
    if scalar > 0.6:
        return 0.7 + 0.2 * scalar
    if scalar < -0.6:
        return 0.1
    if abs(scalar) > 0.3:
        return 0.3
    return 0.0


def softsign(x):
    return x / (1.0 + np.abs(x))


class _SeedEmoRef:
    """Shared part of the Keras-seed transcriptions: loss EMAs, decay, shadow."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.99),
        eps=1e-8,
        weight_decay=1e-2,
        weight_decouple=True,
        fixed_decay=False,
        use_shadow=True,
        shadow_weight=0.05,
        maximize=False,
    ):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.weight_decouple, self.fixed_decay = weight_decay, weight_decouple, fixed_decay
        self.use_shadow, self.shadow_weight, self.maximize = use_shadow, shadow_weight, maximize
        self.ema = {}
        self.state = [self.init_state(p.detach().numpy().astype(np.float32)) for p in self.params]
        self.scalars = []  # the loss scalar of every step, for checking which branches a row exercises

    def init_state(self, p):
        return {"shadow": p.copy(), "exp_avg": np.zeros_like(p)}

    def step(self, closure):
        loss = float(closure())
        self.ema["short"] = 0.3 * loss + 0.7 * self.ema.get("short", loss)
        self.ema["long"] = 0.01 * loss + 0.99 * self.ema.get("long", loss)
        scalar = math.tanh(5.0 * (self.ema["short"] - self.ema["long"]))
        ratio = seed_ratio(scalar)
        self.scalars.append(scalar)
        for param, st in zip(self.params, self.state):
            p = param.detach().numpy().astype(np.float32).copy()
            g = param.grad.numpy().astype(np.float32).copy()
            if self.maximize:
                g = -g
            if self.weight_decouple:
                p = p * np.float32(1.0 - self.weight_decay * (1.0 if self.fixed_decay else self.lr))
            elif self.weight_decay > 0.0:
                g = g + p * np.float32(self.weight_decay)
            if self.use_shadow and ratio > 0.0:
                shadow = st["shadow"]
                p = p + np.float32(ratio) * (shadow - p)
                st["shadow"] = shadow + np.float32(self.shadow_weight) * (p - shadow)
            p = self.update(p, g, st, scalar)
            param.data = torch.from_numpy(p.astype(np.float32))
        return loss

    def neco(self, p, g, st, scalar):
        beta1, beta2 = self.betas
        blended = g * np.float32(1.0 - beta1) + np.float32(beta1) * st["exp_avg"]
        grad_norm = np.float32(np.linalg.norm(g.astype(np.float64)) + self.eps)
        st["exp_avg"] = st["exp_avg"] * np.float32(beta2) + g * np.float32(1.0 - beta2)
        if 0.3 < scalar <= 0.5:
            update = softsign(blended) * grad_norm
        elif scalar < -0.3:
            update = softsign(blended)
        else:
            direction = np.sign(blended)
            update = np.where(direction != np.sign(g), 0.0, direction)
        return p - np.float32(self.lr) * update.astype(np.float32)


class EmoNecoRef(_SeedEmoRef):
    """Keras seed ``EmoNeco.update_step`` (shadow always on)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-2, weight_decouple=True,
                 fixed_decay=False, shadow_weight=0.05, maximize=False):  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, weight_decouple, fixed_decay, True, shadow_weight,
                         maximize)  # fmt: skip

    def update(self, p, g, st, scalar):
        return self.neco(p, g, st, scalar)


class EmoZealRef(_SeedEmoRef):
    """EmoZeal: EmoNeco step then factored step for ndim >= 2, Adam-style (no bias correction) for vectors."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, weight_decouple=True,
                 fixed_decay=False, use_shadow=True, shadow_weight=0.05, maximize=False):  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, weight_decouple, fixed_decay, use_shadow,
                         shadow_weight, maximize)  # fmt: skip

    def init_state(self, p):
        st = super().init_state(p)
        if p.ndim >= 2:
            st["exp_avg_r"] = np.zeros((p.shape[0],) + (1,) * (p.ndim - 1), np.float32)
            st["exp_avg_c"] = np.zeros((1, *p.shape[1:]), np.float32)
        else:
            st["exp_avg_sq"] = np.zeros_like(p)
        return st

    def update(self, p, g, st, scalar):
        beta1, beta2 = self.betas
        eps = np.float32(self.eps)
        if g.ndim >= 2:
            p = self.neco(p, g, st, scalar)
            g2 = g * g
            r_sq = np.sqrt(g2.mean(axis=tuple(range(1, g.ndim)), keepdims=True) + eps)
            c_sq = np.sqrt(g2.mean(axis=0, keepdims=True) + eps)
            st["exp_avg_r"] = st["exp_avg_r"] * np.float32(beta1) + r_sq * np.float32(1.0 - beta1)
            st["exp_avg_c"] = st["exp_avg_c"] * np.float32(beta1) + c_sq * np.float32(1.0 - beta1)
            update = g / (np.sqrt(st["exp_avg_r"] * st["exp_avg_c"]) + eps)
        else:
            st["exp_avg"] = st["exp_avg"] * np.float32(beta1) + g * np.float32(1.0 - beta1)
            st["exp_avg_sq"] = st["exp_avg_sq"] * np.float32(beta2) + g * g * np.float32(1.0 - beta2)
            update = st["exp_avg"] / (np.sqrt(st["exp_avg_sq"]) + eps)
        return p - np.float32(self.lr) * update


# ---------------------------------------------------------------------------- rows
_EMO_OPTIONS = [
    ({"use_shadow": True, "shadow_weight": 0.1, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6}, "shadow"),
    ({"use_shadow": True, "weight_decay": 0.05, "weight_decouple": False, "maximize": True}, "shadow-l2-max"),
    ({"weight_decay": 0.5, "fixed_decay": True}, "fixed"),
]


# ---------------------------------------------------------------------------- a loss of another scale
@contextlib.contextmanager
def _loss_scaled(scale: float):
    original = harness.loss_and_grads

    def scaled(params, t):
        loss, grads = original(params, t)
        return np.float32(loss * scale), grads

    harness.loss_and_grads = scaled
    try:
        yield
    finally:
        harness.loss_and_grads = original


def scaled_loss(scale: float):
    """Runner: both sides see the harness loss times ``scale`` (same gradients).

    On the harness problem the loss falls 100x after the loud steps, which saturates the seed's
    ``tanh(5 (short - long))``; at scale 0.01 (with ``maximize``) every branch of the update
    (softsign * norm, softsign, cautious sign) and of the shadow ratio (0, 0.1, 0.3, 0.7 + 0.2 s) runs.
    """

    def runner(row, compiled):
        with _loss_scaled(scale):
            return harness.run_mlx(row, compiled), harness.run_reference(row)

    return runner


ROWS = [
    *[
        row
        for name, ref in (("emonavi", EmoNaviRef), ("emolynx", EmoLynxRef), ("emofact", EmoFactRef))
        for row in [
            Row(name, {"learning_rate": 1e-2}, ref=ref),
            *[Row(name, {"learning_rate": 1e-2, **kw}, ref=ref, id=i) for kw, i in _EMO_OPTIONS],
        ]
    ],
    Row("emoneco", {"learning_rate": 1e-2}, ref=EmoNecoRef),
    Row("emoneco", {"learning_rate": 1e-2, "maximize": True, "shadow_weight": 0.2}, ref=EmoNecoRef, id="max"),
    Row(
        "emoneco",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "betas": (0.8, 0.9), "eps": 1e-3},
        ref=EmoNecoRef,
        id="l2",
    ),
    Row("emoneco", {"learning_rate": 1e-2, "weight_decay": 0.5, "fixed_decay": True}, ref=EmoNecoRef, id="fixed"),
    Row("emozeal", {"learning_rate": 1e-2}, ref=EmoZealRef),
    Row("emozeal", {"learning_rate": 1e-2, "use_shadow": False, "maximize": True}, ref=EmoZealRef, id="noshadow-max"),
    Row(
        "emozeal",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "shadow_weight": 0.2, "eps": 1e-6},
        ref=EmoZealRef,
        id="l2",
    ),
    Row(
        "emozeal",
        {"learning_rate": 1e-2, "weight_decay": 0.5, "fixed_decay": True, "maximize": True},
        ref=EmoZealRef,
        id="fixed-max",
    ),  # fmt: skip,
    Row(
        "emoneco",
        {"learning_rate": 1e-2, "maximize": True},
        ref=EmoNecoRef,
        runner=scaled_loss(0.01),
        id="scaled-loss-max",
    ),  # fmt: skip,
    Row(
        "emozeal",
        {"learning_rate": 1e-2, "maximize": True},
        ref=EmoZealRef,
        runner=scaled_loss(0.01),
        id="scaled-loss-max",
    ),  # fmt: skip,
]
