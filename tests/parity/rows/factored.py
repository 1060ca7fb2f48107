"""Parity rows for mlx_optim/optimizers/factored.py.

adafactor, came, sm3: pytorch_optimizer, through the standard harness.
adafactorbigvision: :class:`BigVisionAdafactorRef`, a NumPy transcription of big_vision's
``scale_by_adafactor`` (optax ``scale_by_factored_rms`` with the capped decay schedule,
``clip_by_block_rms``, ``ema(debias=False, accumulator_dtype)``) followed by the learning rate
and weight decay of the seed's / timm's ``AdafactorBigVision`` (timm's caution mask included).
adammini, adalomo: :func:`named_runner`, a harness on parameters with *names* (AdamMini
partitions by name; AdaLOMO's reference supports only 1-D/2-D tensors), with the reference
built from a torch module holding those named parameters.
lomo, adalomo: the reference's calling convention (``grad_norm(loss)`` then
``fused_backward(loss, lr)``) is driven with :class:`GradLoss`, a stand-in loss whose
``backward()`` writes the harness gradient (times the loss scale) into ``p.grad``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from tests.parity import harness
from tests.parity.harness import Row


# ----------------------------------------------------------------------------- big_vision transcription
def _bf16(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).float().numpy()


def _np_factored_dims(shape, min_dim_size_to_factor):
    """optax ``_factored_dims`` (``np.argsort``; no ties in the shapes used here)."""
    if len(shape) < 2:
        return None
    sorted_dims = np.argsort(shape)
    if shape[sorted_dims[-2]] < min_dim_size_to_factor:
        return None
    return int(sorted_dims[-2]), int(sorted_dims[-1])


class BigVisionAdafactorRef:
    """big_vision ``scale_by_adafactor`` + timm's lr / weight decay / caution, in NumPy float32.

    Per step, for each parameter (count = 0, 1, ... before the increment, as in optax):
    ``beta_t = min(beta2_cap, 1 - (count - decay_offset + 1) ** -decay_rate)``; factored RMS scaling
    (optax ``scale_by_factored_rms``); ``u / max(1, rms(u) / clipping_threshold)`` if a threshold is
    given (optax ``clip_by_block_rms``); ``optax.ema(momentum, debias=False, accumulator_dtype)``,
    whose ``decay * ema`` is evaluated in the accumulator dtype (JAX's weakly typed Python float)
    and whose update is the unrounded float32 average; timm's caution; ``p * (1 - lr * wd)`` (or
    ``p * (1 - wd)`` with ``unscaled_wd``) minus ``lr * u``.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        epsilon=None,
        weight_decay=0.0,
        min_dim_size_to_factor=16,
        decay_rate=0.8,
        decay_offset=0,
        beta2_cap=0.999,
        momentum=0.9,
        momentum_dtype=mx.bfloat16,
        clipping_threshold=None,
        unscaled_wd=False,
        caution=False,
    ):
        self.params = list(params)
        self.lr, self.eps = np.float32(lr), np.float32(1e-30 if epsilon is None else epsilon)
        self.wd, self.min_dim, self.decay_rate, self.offset = (
            weight_decay,
            min_dim_size_to_factor,
            decay_rate,
            decay_offset,
        )
        self.cap, self.momentum, self.clip, self.unscaled_wd, self.caution = (
            beta2_cap,
            momentum,
            clipping_threshold,
            unscaled_wd,
            caution,
        )
        self.round = _bf16 if momentum_dtype == mx.bfloat16 else (lambda x: x.astype(np.float32))
        self.count = 0
        self.state = []
        for p in self.params:
            shape = tuple(p.shape)
            dims = _np_factored_dims(shape, self.min_dim)
            if dims is None:
                s = {"v": np.zeros(shape, np.float32)}
            else:
                d1, d0 = dims
                s = {
                    "v_row": np.zeros(np.delete(shape, d0), np.float32),
                    "v_col": np.zeros(np.delete(shape, d1), np.float32),
                }
            if momentum:
                s["ema"] = np.zeros(shape, np.float32)  # values representable in momentum_dtype
            self.state.append(s)

    def step(self, closure=None):
        f32 = np.float32
        t = f32(self.count - self.offset) + f32(1.0)
        beta = f32(min(f32(self.cap), f32(1.0) - t ** f32(-self.decay_rate)))
        for p, s in zip(self.params, self.state):
            g = p.grad.numpy().astype(f32)
            grad_sqr = g * g + self.eps
            dims = _np_factored_dims(g.shape, self.min_dim)
            if dims is None:
                s["v"] = beta * s["v"] + (f32(1.0) - beta) * grad_sqr
                u = g * s["v"] ** f32(-0.5)
            else:
                d1, d0 = dims
                s["v_row"] = beta * s["v_row"] + (f32(1.0) - beta) * grad_sqr.mean(axis=d0, dtype=f32)
                s["v_col"] = beta * s["v_col"] + (f32(1.0) - beta) * grad_sqr.mean(axis=d1, dtype=f32)
                reduced_d1 = d1 - 1 if d1 > d0 else d1
                row_col_mean = s["v_row"].mean(axis=reduced_d1, keepdims=True, dtype=f32)
                row_factor = (s["v_row"] / row_col_mean) ** f32(-0.5)
                col_factor = s["v_col"] ** f32(-0.5)
                u = g * np.expand_dims(row_factor, d0) * np.expand_dims(col_factor, d1)
            if self.clip:
                u = u / max(f32(1.0), np.sqrt(np.mean(u * u, dtype=f32)) / f32(self.clip))
            if self.momentum:
                m = f32(self.momentum)
                decayed = self.round(self.round(np.array(m)) * s["ema"])
                u = f32(1.0 - self.momentum) * u + decayed  # JAX: (1 - decay) is a Python float
                s["ema"] = self.round(u)
                if self.caution:
                    mask = (u * g > 0).astype(f32)
                    u = u * (mask / max(mask.mean(dtype=f32), f32(1e-3)))
            w = p.detach().numpy()
            if self.wd:
                w = w * (f32(1.0) - (f32(self.wd) if self.unscaled_wd else self.lr * f32(self.wd)))
            with torch.no_grad():
                p.copy_(torch.from_numpy((w - self.lr * u).astype(f32)))
        self.count += 1


# ----------------------------------------------------------------------------- LOMO / AdaLOMO calling convention
class GradLoss:
    """A loss stand-in: ``backward()`` writes the given gradients (times the accumulated scale) into ``p.grad``."""

    def __init__(self, params, grads, scale=1.0):
        self.params, self.grads, self.scale = params, grads, scale

    def __mul__(self, factor):
        return GradLoss(self.params, self.grads, self.scale * factor)

    def backward(self, retain_graph=False):
        for p, g in zip(self.params, self.grads):
            p.grad = g * self.scale


def _torch_module(named_params: dict) -> torch.nn.Module:
    """A module whose ``named_parameters()`` are exactly ``named_params`` (dotted names)."""
    root = torch.nn.Module()
    for name, p in named_params.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if part not in m._modules:
                m.add_module(part, torch.nn.Module())
            m = m._modules[part]
        m.register_parameter(leaf, p)
    return root


class FusedBackwardRef:
    """pytorch_optimizer's LOMO / AdaLOMO stepped as their trainers do: ``grad_norm`` (if clipping by norm), then ``fused_backward``."""

    def __init__(self, cls, named_params: dict, **kw):
        self.params = list(named_params.values())
        self.opt = cls(_torch_module(named_params), **kw)
        self.lr = kw.get("lr", 1e-3)

    def step(self, closure=None):
        grads = [p.grad.clone() for p in self.params]
        for p in self.params:
            p.grad = None
        loss = GradLoss(self.params, grads)
        if self.opt.clip_grad_norm is not None and self.opt.clip_grad_norm > 0.0:
            self.opt.grad_norm(loss)
        self.opt.fused_backward(loss, self.lr)


def lomo_ref(params, **kw):
    return FusedBackwardRef(pytorch_optimizer.LOMO, {f"p{i}": p for i, p in enumerate(params)}, **kw)


def adalomo_as_adafactor(params, lr, weight_decay=0.0, clip_threshold=1.0, decay_rate=-0.8, eps1=1e-30, eps2=1e-3):
    """AdaLOMO without gradient clipping is pytorch_optimizer's AdaFactor without momentum, with
    ``relative_step=False``, ``scale_parameter=True`` and a beta2 cap that never binds: the reference
    for AdaLOMO on rank-3 tensors (which pytorch_optimizer's AdaLOMO does not support)."""
    return pytorch_optimizer.AdaFactor(
        params,
        lr=lr,
        betas=(None, 0.999999),
        decay_rate=decay_rate,
        weight_decay=weight_decay,
        weight_decouple=True,
        clip_threshold=clip_threshold,
        relative_step=False,
        scale_parameter=True,
        eps1=eps1,
        eps2=eps2,
    )


# ----------------------------------------------------------------------------- harness on named parameters
def named_runner(shapes: dict[str, tuple], build_ref):
    """A runner on parameters with dotted names (nested dicts on the MLX side, a module on the torch side).

    The problem is the harness's (same loss shape, same loud-then-quiet gradient scale) on the
    given shapes; ``build_ref(named_torch_params, torch_kwargs)`` returns an object with ``step()``.
    """

    def runner(row: Row, compiled: bool):
        rng = np.random.default_rng(0)
        init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        prng = np.random.default_rng(1)
        target = {k: prng.normal(size=s) for k, s in shapes.items()}
        noise = [{k: prng.normal(scale=0.5, size=s) for k, s in shapes.items()} for _ in range(row.steps)]

        def grads_at(params, t):
            s = harness.scale(t)
            return {
                k: (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
                for k, p in ((k, v.astype(np.float64)) for k, v in params.items())
            }

        tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
        ref_opt = build_ref(tparams, row.torch_kwargs())
        theirs = []
        for t in range(row.steps):
            grads = grads_at({k: p.detach().numpy() for k, p in tparams.items()}, t)
            for k, p in tparams.items():
                p.grad = torch.from_numpy(grads[k].copy())
            ref_opt.step()
            theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})

        holder = {"params": tree_unflatten([(k, mx.array(v)) for k, v in init.items()])}
        opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
        opt.init(holder["params"])

        def step(grads):
            holder["params"] = opt.apply_gradients(grads, holder["params"])

        if compiled:
            state = [holder, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)
        mine = []
        for t in range(row.steps):
            flat = {k: np.array(v) for k, v in tree_flatten(holder["params"])}
            grads = grads_at(flat, t)
            step(tree_unflatten([(k, mx.array(g)) for k, g in grads.items()]))
            mx.eval(holder, opt.state)
            mine.append({k: np.array(v) for k, v in tree_flatten(holder["params"])})
        return mine, theirs

    return runner


# AdamMini: an embedding (plain Adam), per-head q/k projections, a fused QKV weight, a norm (no decay), an MLP.
MINI_SHAPES = {
    "wte.weight": (7, 4),
    "layers.0.attn.q_proj.weight": (4, 4),
    "layers.0.attn.k_proj.weight": (4, 4),
    "layers.0.attn.qkv.weight": (12, 4),
    "layers.0.norm.weight": (4,),
    "layers.0.mlp.weight": (5, 6),
    "layers.0.mlp.bias": (5,),
    "head.w": (2, 3, 4),
}
MINI_DEFAULT_SHAPES = {k: v for k, v in MINI_SHAPES.items() if "attn" not in k}  # no q/k/qkv: default num_heads


def _adammini_ref(named, kw):
    return pytorch_optimizer.AdamMini(_torch_module(named), **kw)


def _adalomo_ref(named, kw):
    return FusedBackwardRef(pytorch_optimizer.AdaLOMO, named, **kw)


ADALOMO_SHAPES = {"a": (7,), "b": (5, 6), "d": (4, 3)}  # the reference handles only 1-D and 2-D tensors

F32 = {"momentum_dtype": mx.float32}
# Betas whose float32 value is the decimal one: 1 - beta is then the same on both sides.
EXACT_CAME_BETAS = (0.9, 1 - 2**-10, 1 - 2**-13)
TF32 = {"momentum_dtype": torch.float32}

ROWS = [
    # adafactor: pytorch_optimizer.AdaFactor (foreach path on CPU; the cautious rows take its per-parameter path)
    # bf16 momentum: bit-exact since 1 - beta1 is the double-precision complement (was atol 6e-4: the float32
    # 1 - beta1 = 0.10000002 flipped ~1% of the bf16 roundings of exp_avg)
    Row("adafactor", {"learning_rate": 1e-2}),
    Row(
        "adafactor",
        {
            "learning_rate": 1e-2,
            "relative_step": False,
            "scale_parameter": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "maximize": True,
            **F32,
        },
        ref_kwargs=TF32,
        id="lr-l2-ams-max-f32",
    ),
    Row(
        "adafactor",
        {
            "learning_rate": 1e-2,
            "betas": (None, 0.99),
            "warmup_init": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "clip_threshold": 0.5,
            "decay_rate": -0.5,
            "eps1": 1e-20,
            "eps2": 1e-2,
        },
        id="nomomentum-warmup-fixed",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "cautious": True, "weight_decay": 0.05, "betas": (0.75, 0.999), "relative_step": False},
        id="cautious-bf16",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "cautious": True, "betas": (0.3, 0.999), **F32},
        ref_kwargs=TF32,
        id="cautious-f32",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "momentum_dtype": mx.float16, "betas": (0.875, 0.999)},
        ref_kwargs={"momentum_dtype": torch.float16},
        id="f16-momentum",
    ),
    # adafactorbigvision: NumPy transcription of big_vision (harness shapes (7,), (5, 6), (2, 3, 4))
    Row("adafactorbigvision", {"learning_rate": 1e-2}, ref=BigVisionAdafactorRef),
    Row(
        "adafactorbigvision",
        {
            "learning_rate": 1e-2,
            "min_dim_size_to_factor": 3,
            "clipping_threshold": 1.0,
            "weight_decay": 0.1,
            "caution": True,
            "epsilon": 1e-20,
        },
        ref=BigVisionAdafactorRef,
        id="factored-clip-wd-caution",
    ),
    Row(
        "adafactorbigvision",
        {
            "learning_rate": 1e-2,
            "min_dim_size_to_factor": 5,
            "momentum": None,
            "decay_rate": 0.5,
            "decay_offset": -3,
            "beta2_cap": 0.9,
            "weight_decay": 0.1,
            "unscaled_wd": True,
            "clipping_threshold": 0.5,
        },
        ref=BigVisionAdafactorRef,
        id="nomomentum-offset-cap-unscaled",
    ),
    Row(
        "adafactorbigvision",
        {"learning_rate": 1e-2, "min_dim_size_to_factor": 2, "momentum": 0.8, "caution": True, **F32},
        ref=BigVisionAdafactorRef,
        id="f32-momentum",
    ),
    # came: pytorch_optimizer.CAME (foreach path on CPU)
    # default tolerance since 1 - beta3 is the double-precision complement (was atol 4e-4: the float32
    # 1 - 0.9999 is 1.7e-4 too large, and the instability EMA has no bias correction to cancel it)
    Row("came", {"learning_rate": 1e-2}),
    Row(
        "came",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99, 0.999),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "clip_threshold": 0.5,
            "eps2": 1e-10,
            "maximize": True,
        },
        id="l2-ams-max",
    ),
    Row(
        "came",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "eps1": 1e-20, "betas": EXACT_CAME_BETAS},
        id="fixed-decay-exact-betas",
    ),
    # sm3: pytorch_optimizer.SM3 (per-parameter path on CPU)
    Row("sm3", {"learning_rate": 1e-2}),
    Row(
        "sm3",
        {"learning_rate": 1e-2, "momentum": 0.9, "beta": 0.9, "eps": 1e-8, "maximize": True},
        id="momentum-beta-max",
    ),
    Row("sm3", {"learning_rate": 1e-2, "momentum": 0.3, "beta": 0.5}, id="small-momentum"),
    # adammini: pytorch_optimizer.AdamMini(model) on named parameters
    Row(
        "adammini",
        {"learning_rate": 1e-2},
        runner=named_runner(MINI_DEFAULT_SHAPES, _adammini_ref),
    ),
    Row(
        "adammini",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.2,
            "num_embeds": 4,
            "num_heads": 2,
            "num_query_groups": 1,
            "eps": 1e-6,
            "maximize": True,
        },
        runner=named_runner(MINI_SHAPES, _adammini_ref),
        id="heads-qkv-max",
    ),
    Row(
        "adammini",
        {"learning_rate": 1e-2, "num_embeds": 4, "num_heads": 2, "model_sharding": True},
        runner=named_runner(MINI_SHAPES, _adammini_ref),
        id="heads-sharding-flag",
    ),
    # lomo: pytorch_optimizer.LOMO(model) via grad_norm + fused_backward
    Row("lomo", {"learning_rate": 1e-2}, ref=lomo_ref),
    Row(
        "lomo",
        {"learning_rate": 1e-2, "clip_grad_norm": 1.0, "clip_grad_value": 2.0, "maximize": True},
        ref=lomo_ref,
        id="clip-max",
    ),
    # adalomo: pytorch_optimizer.AdaLOMO(model) via grad_norm + fused_backward, on 1-D/2-D tensors
    Row("adalomo", {"learning_rate": 1e-2}, runner=named_runner(ADALOMO_SHAPES, _adalomo_ref)),
    Row(
        "adalomo",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "loss_scale": 512.0,
            "clip_threshold": 0.5,
            "decay_rate": -0.5,
            "clip_grad_norm": 1.0,
            "clip_grad_value": 2.0,
            "eps1": 1e-20,
            "eps2": 1e-2,
        },
        runner=named_runner(ADALOMO_SHAPES, _adalomo_ref),
        id="clip-wd",
    ),
    Row(
        "adalomo",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "clip_threshold": 0.5, "decay_rate": -0.6},
        ref=adalomo_as_adafactor,
        id="rank3-vs-adafactor",
    ),
]
