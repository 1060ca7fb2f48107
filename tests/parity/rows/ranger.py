"""Parity rows for the Ranger line (mlx_optim/optimizers/ranger.py).

ranger, ranger21: pytorch_optimizer. rangerqh, rangerva: pytorch_ranger 0.1.1.
ranger2020: pytorch_optimizer.Ranger where ``gc_loc=True``; for ``gc_loc=False``
the torch transcription :class:`RangerGcLoc` below (pytorch_optimizer's Ranger
per-parameter step with the ``gc_loc`` option of lessw2020's ``ranger2020.py``:
centralize the update direction instead of the gradient).
"""

import math

import numpy as np
import pytorch_optimizer
import pytorch_ranger
import torch

from tests.parity.harness import Row


def _centralize(x: torch.Tensor, conv_only: bool) -> torch.Tensor:
    if x.dim() > (3 if conv_only else 1):
        return x - x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return x


class RangerGcLoc(torch.optim.Optimizer):
    """Transcription of pytorch_optimizer 4.1.0 ``Ranger._step_per_param`` plus ``gc_loc``."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.95, 0.999),
        alpha=0.5,
        k=6,
        n_sma_threshold=5,
        degenerated_to_sgd=False,
        weight_decay=0.0,
        weight_decouple=True,
        fixed_decay=False,
        use_gc=True,
        gc_conv_only=False,
        eps=1e-5,
        maximize=False,
        gc_loc=True,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha, k=k, weight_decay=weight_decay, eps=eps))
        self.n_sma_threshold, self.degenerated_to_sgd = n_sma_threshold, degenerated_to_sgd
        self.weight_decouple, self.fixed_decay, self.maximize = weight_decouple, fixed_decay, maximize
        self.use_gc, self.gc_conv_only, self.gc_loc = use_gc, gc_conv_only, gc_loc
        self.t = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        t = self.t
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            beta2_t = beta2**t
            n_sma = n_sma_max - 2 * t * beta2_t / (1.0 - beta2_t)
            rectified = n_sma >= self.n_sma_threshold
            if rectified:
                rt = math.sqrt(
                    (1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
                )
            else:
                rt = 1.0 if self.degenerated_to_sgd else -1.0
            step_size = lr * rt / (1 - beta1**t)
            for p in group["params"]:
                grad = -p.grad if self.maximize else p.grad.clone()
                state = self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                    state["slow_buffer"] = p.clone()
                if self.use_gc and self.gc_loc:
                    grad = _centralize(grad, self.gc_conv_only)
                if wd != 0:
                    if self.weight_decouple:
                        p.mul_(1.0 - wd * (1.0 if self.fixed_decay else lr))
                    else:
                        grad = grad + wd * p
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                direction = m / (v.sqrt() + group["eps"]) if rectified else m.clone()
                if self.use_gc and not self.gc_loc:
                    direction = _centralize(direction, self.gc_conv_only)
                p.add_(direction, alpha=-step_size)
                if t % group["k"] == 0:
                    state["slow_buffer"].lerp_(p, group["alpha"])
                    p.copy_(state["slow_buffer"])


def _np_unit_norm(x: np.ndarray) -> np.ndarray:
    if x.ndim <= 1:
        return np.sqrt(np.sum(x * x))
    axes = 1 if x.ndim in (2, 3) else tuple(range(1, x.ndim))
    return np.sqrt(np.sum(x * x, axis=axes, keepdims=True))


class NumpyRanger25:
    """NumPy reference for ranger25, written from the Keras seed's Ranger25 description.

    There is no maintained PyTorch Ranger25 (pytorch_optimizer 4.1.0 has none); the
    components (OrthoGrad -> weight decay -> AGC -> ADOPT-normalized gradient ->
    AdEMAMix fast/slow EMAs -> cautious mask -> StableAdamW RMS or Adam-atan2 ->
    Lookahead) are computed in float64 the way the earlier pytorch_optimizer Ranger25
    computed them, except that every parameter uses its own StableAdamW RMS.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.98, 0.9999),
        weight_decay=1e-3,
        weight_decouple=True,
        fixed_decay=False,
        alpha=5.0,
        t_alpha_beta3=None,
        lookahead_merge_time=5,
        lookahead_blending_alpha=0.5,
        cautious=True,
        stable_adamw=True,
        orthograd=True,
        eps=1e-8,
    ):
        self.params = list(params)
        self.lr, self.betas, self.wd, self.alpha, self.t_ab3 = lr, betas, weight_decay, alpha, t_alpha_beta3
        self.decouple, self.fixed, self.k, self.la_alpha = (
            weight_decouple,
            fixed_decay,
            lookahead_merge_time,
            lookahead_blending_alpha,
        )
        self.cautious, self.orthograd = cautious, orthograd
        self.atan2 = eps is None and not stable_adamw
        self.stable = stable_adamw and eps is not None
        self.eps = 1e-8 if eps is None else eps
        self.t = 0
        self.state = [None] * len(self.params)

    def step(self, closure=None):
        self.t += 1
        t, (b1, b2, b3), lr = self.t, self.betas, self.lr
        alpha_t, b3_t = self.alpha, b3
        if self.t_ab3 is not None:
            frac = t / self.t_ab3
            alpha_t = min(frac * self.alpha, self.alpha)
            b3_t = min(math.exp(math.log(b1) * math.log(b3) / ((1 - frac) * math.log(b3) + frac * math.log(b1))), b3)
        step_size0 = lr / (1 - b1**t)
        bc2_sq = math.sqrt(1 - b2**t)
        clip = t**0.25
        for i, prm in enumerate(self.params):
            p = prm.detach().numpy().astype(np.float64)
            g = prm.grad.numpy().astype(np.float64)
            if self.state[i] is None:
                z = np.zeros_like(p)
                self.state[i] = {"m": z.copy(), "v": z.copy(), "s": z.copy(), "slow": p.copy()}
            st = self.state[i]
            if self.orthograd:
                w, gf = p.ravel(), g.ravel()
                proj = w @ gf / (w @ w + 1e-16)
                go = gf - proj * w
                g = (go * (np.linalg.norm(gf) / (np.linalg.norm(go) + 1e-16))).reshape(g.shape)
            if self.wd != 0:
                if self.decouple:
                    p = p * (1 - self.wd * (1.0 if self.fixed else lr))
                else:
                    g = g + self.wd * p
            max_norm = np.maximum(_np_unit_norm(p), 1e-3) * 1e-2
            g_norm = np.maximum(_np_unit_norm(g), 1e-6)
            g = np.where(g_norm > max_norm, g * (max_norm / g_norm), g)
            normed = np.clip(g / np.maximum(np.sqrt(st["v"]), self.eps), -clip, clip)
            st["m"] = b1 * st["m"] + (1 - b1) * normed
            st["v"] = b2 * st["v"] + (1 - b2) * g * g
            st["s"] = b3_t * st["s"] + (1 - b3_t) * normed
            update = st["m"].copy()
            if self.cautious:
                mask = (update * g > 0).astype(np.float64)
                update = update * mask * (mask.size / (mask.sum() + 1))
            step_size = step_size0
            if self.stable:
                step_size /= max(np.sqrt(np.mean(g * g / np.maximum(st["v"], 1e-16))), 1.0)
            update = update + alpha_t * st["s"]
            denom = np.sqrt(st["v"]) / bc2_sq
            if self.atan2:
                p = p - step_size * np.arctan2(update, denom)
            else:
                p = p - step_size * update / (denom + self.eps)
            if t % self.k == 0:
                st["slow"] = st["slow"] + self.la_alpha * (p - st["slow"])
                p = st["slow"].copy()
            with torch.no_grad():
                prm.copy_(torch.from_numpy(p.astype(np.float32)))


R = pytorch_optimizer.Ranger

ROWS = [
    # ranger: pytorch_optimizer.Ranger
    Row("ranger", {"learning_rate": 1e-2}),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "degenerated_to_sgd": True,
            "adam_debias": True,
            "adanorm": True,
            "k": 3,
            "alpha": 0.7,
            "betas": (0.9, 0.99),
        },
        id="sgd-debias-adanorm",
    ),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "gc_conv_only": True,
            "n_sma_threshold": 4,
            "maximize": True,
        },
        id="l2-gcconv-max",
    ),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "use_gc": False,
            "eps": 1e-8,
            "adanorm": True,
            "adanorm_r": 0.8,
        },
        id="fixed-nogc",
    ),
    # ranger2020: Ranger + gc_loc
    Row("ranger2020", {"learning_rate": 1e-2}, ref=R),
    Row("ranger2020", {"learning_rate": 1e-2, "gc_loc": False}, ref=RangerGcLoc, id="gc-update"),
    Row(
        "ranger2020",
        {
            "learning_rate": 1e-2,
            "gc_loc": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "degenerated_to_sgd": True,
            "k": 4,
            "maximize": True,
        },
        ref=RangerGcLoc,
        id="gc-update-l2-sgd",
    ),
    Row(
        "ranger2020",
        {"learning_rate": 1e-2, "gc_loc": True, "weight_decay": 0.1, "fixed_decay": True, "betas": (0.9, 0.99)},
        ref=RangerGcLoc,
        id="transcription-check",
    ),
    # ranger21: pytorch_optimizer.Ranger21 (num_iterations=20 = the harness's step count, so warm-up and
    # warm-down both happen)
    Row("ranger21", {"num_iterations": 20, "learning_rate": 1e-2}),
    Row(
        "ranger21",
        {
            "num_iterations": 20,
            "learning_rate": 1e-2,
            "disable_lr_scheduler": True,
            "use_softplus": False,
            "adam_debias": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "maximize": True,
        },
        id="nosched-nosoftplus-fixed-max",
    ),
    Row(
        "ranger21",
        {
            "num_iterations": 30,
            "learning_rate": 1e-2,
            "centralize_gradients": False,
            "normalize_gradients": False,
            "weight_decouple": False,
            "weight_decay": 0.1,
            "num_warm_up_iterations": 3,
            "num_warm_down_iterations": 8,
            "lookahead_merge_time": 3,
            "lookahead_blending_alpha": 0.8,
            "beta0": 0.5,
            "norm_loss_factor": 1e-2,
            "agc_clipping_value": 0.5,
            "warm_down_min_lr": 1e-3,
            "beta_softplus": 10.0,
            "betas": (0.8, 0.99),
            "agc_eps": 1e-2,
            "eps": 1e-6,
        },
        id="options",
    ),
    # rangerqh: pytorch_ranger.RangerQH
    Row("rangerqh", {"learning_rate": 1e-2}, ref=pytorch_ranger.RangerQH),
    Row(
        "rangerqh",
        {"learning_rate": 1e-2, "nus": (0.8, 0.9), "weight_decay": 0.1, "k": 3, "alpha": 0.6},
        ref=pytorch_ranger.RangerQH,
        id="l2-nus",
    ),
    Row(
        "rangerqh",
        {"learning_rate": 1e-2, "decouple_weight_decay": True, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6},
        ref=pytorch_ranger.RangerQH,
        id="decoupled",
    ),
    # rangerva: pytorch_ranger.RangerVA
    Row("rangerva", {"learning_rate": 1e-2}, ref=pytorch_ranger.RangerVA),
    Row(
        "rangerva",
        {
            "learning_rate": 1e-2,
            "amsgrad": False,
            "grad_transformer": "abs",
            "weight_decay": 0.1,
            "smooth": 10.0,
            "k": 3,
            "n_sma_threshhold": 4,
        },
        ref=pytorch_ranger.RangerVA,
        id="abs-wd",
    ),
    Row(
        "rangerva",
        {"learning_rate": 1e-1, "transformer": "none", "eps": 1e-6, "alpha": 0.3, "betas": (0.9, 0.99)},
        ref=pytorch_ranger.RangerVA,
        id="no-softplus",
    ),
    # ranger25: NumPy reference from the Keras seed's description (no maintained PyTorch class)
    Row("ranger25", {"learning_rate": 1e-2}, ref=NumpyRanger25),
    Row(
        "ranger25",
        {
            "learning_rate": 1e-2,
            "t_alpha_beta3": 10.0,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "cautious": False,
            "orthograd": False,
            "lookahead_merge_time": 3,
            "lookahead_blending_alpha": 0.7,
            "alpha": 2.0,
            "betas": (0.8, 0.95, 0.999),
        },
        ref=NumpyRanger25,
        id="sched-l2-plain",
    ),
    Row(
        "ranger25",
        {"learning_rate": 1e-2, "eps": None, "stable_adamw": False, "fixed_decay": True, "weight_decay": 0.1},
        ref=NumpyRanger25,
        id="atan2-fixed",
    ),
    # eps=None with stable_adamw=True: eps 1e-8 and no StableAdamW RMS; the first ADOPT steps then divide by the
    # AGC-clipped |g| (parameters jump to ~1e2 with lr 1e-2 and float32 vs float64 rounding is amplified),
    # so this row uses lr 1e-3 to keep the trajectory bounded.
    Row(
        "ranger25", {"learning_rate": 1e-3, "eps": None, "stable_adamw": True}, ref=NumpyRanger25, id="eps-none-stable"
    ),
]
