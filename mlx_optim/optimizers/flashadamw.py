"""FlashAdamW: AdamW with grouped 8-bit moments and optional master-weight error correction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, _match, leaves
from mlx_optim.registry import register

GROUP_SIZE = 32


_MASTER_WEIGHT_BITS = (None, 24, 32)


_BYTES = {mx.bfloat16: 2, mx.float16: 2, mx.float32: 4}


def quantize_state(x: mx.array, signed: bool, sqrt: bool, softsign: bool, group_size: int = GROUP_SIZE):
    """Grouped 8-bit quantization (pytorch_optimizer's ``quantize_state``): returns ``(codes, scales)``.

    The flattened tensor is zero-padded to groups of ``group_size``; each group is divided by its absolute
    maximum (the scale, at least 1e-12), optionally mapped through ``2x / (1 + |x|)`` (``softsign``) and
    rounded to int8 (``signed``, [-127, 127]) or uint8 ([0, 255]). ``sqrt`` quantizes ``sqrt(max(x, 0))``.
    The scales are rounded to float16 as in the reference and kept as float32 arrays.
    """
    n = x.size
    values = x.astype(mx.float32).reshape(-1)
    if sqrt:
        values = mx.sqrt(mx.maximum(values, 0.0))
    pad = (-n) % group_size
    if pad:
        values = mx.concatenate([values, mx.zeros((pad,), mx.float32)])
    groups = values.reshape(-1, group_size)
    scales = mx.maximum(mx.max(mx.abs(groups), axis=1), 1e-12)
    normalized = groups / scales[:, None]
    if softsign:
        normalized = (2.0 * normalized) / (1.0 + mx.abs(normalized))
    qmax, qmin = (127.0, -127.0) if signed else (255.0, 0.0)
    codes = mx.clip(mx.round(normalized * qmax), qmin, qmax).reshape(-1)[:n].reshape(x.shape)
    return codes.astype(mx.int8 if signed else mx.uint8), scales.astype(mx.float16).astype(mx.float32)


def dequantize_state(
    codes: mx.array, scales: mx.array, signed: bool, sqrt: bool, softsign: bool, group_size=GROUP_SIZE
):
    """Inverse of :func:`quantize_state` (pytorch_optimizer's ``dequantize_state``), in float32."""
    n = codes.size
    values = codes.astype(mx.float32).reshape(-1)
    pad = (-n) % group_size
    if pad:
        values = mx.concatenate([values, mx.zeros((pad,), mx.float32)])
    groups = values.reshape(-1, group_size) / (127.0 if signed else 255.0)
    if softsign:
        groups = groups / mx.maximum(2.0 - mx.abs(groups), 1e-12)
    restored = (groups * scales[:, None]).reshape(-1)[:n].reshape(codes.shape)
    return mx.square(restored) if sqrt else restored


# (signed, sqrt, softsign) per moment, as the reference's ``_state_spec``
_STATE_SPEC = {"exp_avg": (True, False, True), "exp_avg_sq": (False, True, False)}


def ulp_scale(narrow: mx.array) -> mx.array:
    """Half the spacing above ``|narrow|`` for bf16/fp16 values (``nextafter(|x|, inf) - |x|``), in float32."""
    a = mx.abs(narrow)
    nxt = mx.view((mx.view(a, mx.uint16) + 1).astype(mx.uint16), narrow.dtype)
    return mx.maximum((nxt - a).astype(mx.float32) * 0.5, float(np.finfo(np.float32).tiny))


def compute_ecc_bits(master: mx.array, narrow: mx.array, error_dtype: mx.Dtype) -> mx.array:
    """The float32 master weight's residual over its bf16/fp16 rounding, in units of half an ulp, as int8/int16."""
    signed_max = 127.0 if error_dtype == mx.int8 else 32767.0
    normalized = (master - narrow.astype(mx.float32)) / ulp_scale(narrow)
    return mx.round(mx.clip(normalized, -1.0, 1.0) * signed_max).astype(error_dtype)


def reconstruct_fp32_param(narrow: mx.array, error_bits: mx.array) -> mx.array:
    """The float32 master weight from the bf16/fp16 parameter and its error-correction bits."""
    signed_max = 127.0 if error_bits.dtype == mx.int8 else 32767.0
    return narrow.astype(mx.float32) + (error_bits.astype(mx.float32) / signed_max) * ulp_scale(narrow)


@register
class FlashAdamW(Optimizer):
    r"""FlashAdamW: AdamW with grouped 8-bit moments and optional master-weight error correction.

    The AdamW step (decoupled decay first, then the bias-corrected Adam update)

    .. math::
        p \leftarrow p(1 - \eta\lambda),\quad m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        p \leftarrow p - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    runs in float32 on moments that are stored between steps (``quantize=True``) as 8-bit codes with one
    scale per group of 32 consecutive entries (:func:`quantize_state`): :math:`m` as int8 through a softsign
    companding, :math:`\sqrt{v}` as uint8; the scales are rounded to float16 as in the reference (kept here in
    float32 arrays). With ``quantize=False`` the moments are stored in the parameter's dtype, as in the
    reference. ``master_weight_bits`` (24 or 32) keeps, for bf16/fp16 parameters, int8/int16 error-correction
    bits (the float32 update's residual in half-ulp units) so the update acts on an effective 24/32-bit master
    weight (:func:`compute_ecc_bits`).

    Paper/code: FlashOptim (Databricks). Reference: ``pytorch_optimizer.FlashAdamW`` (its portable PyTorch
    path), same keywords and defaults. ``check_numerics`` raises ``ArithmeticError`` before a step whose learning
    rate is below a tenth of the resolution of a bf16/fp16 parameter (its largest magnitude, read once per
    parameter, times :math:`2^{1-\text{bits}}`, with the master-weight bits when larger), as the reference; it
    reads values on the host, so it runs in eager steps only (inside ``mx.compile`` it raises ``ValueError``);
    :meth:`recompute_param_stats` reads the magnitudes again. Not ported (listed in ``mlx_optim._unsupported``):
    ``fused`` (the reference raises for it), ``compress_state_dict`` (a torch checkpoint format switch: this state
    always holds the codes); float64 parameters are updated in float32. The reference's "initial_lr must be positive"
    error is raised at construction here. ``1 - beta`` is the double-precision complement the base class keeps
    (``hp.one_minus_beta1``), like the reference's Python floats: the float32 one flips the rounding of moments
    stored in bf16 (``quantize=False``).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0). Default ``1e-2``.
        decouple_lr: Decay by :math:`\eta\lambda/\eta_0` (:math:`\eta_0` the initial learning rate, which must then
            be positive) instead of :math:`\eta\lambda`. Default ``False``.
        quantize: Store the moments as grouped 8-bit codes with float16-rounded scales. Default ``True``.
        master_weight_bits (int | None): Effective master-weight precision (``24`` or ``32``) for bf16/fp16
            parameters, kept as error-correction bits; ``None``: none. Raises if every parameter is float32.
            Default ``None``.
        check_numerics: Raise ``ArithmeticError`` before a step too small to change a bf16/fp16 parameter
            (eager steps only). Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        state_dtype: dtype of the moments with ``quantize=False`` (not allowed with ``quantize=True``). Default
            ``None``: the parameter's dtype; ``mx.bfloat16`` stores them with stochastic rounding.
    """

    name = "flashadamw"
    family = "adam"
    reference = "pytorch_optimizer.FlashAdamW"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-2,
        decouple_lr: bool = False,
        quantize: bool = True,
        master_weight_bits: int | None = None,
        check_numerics: bool = False,
        maximize: bool = False,
        eps: Tunable = 1e-8,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._choice("master_weight_bits", master_weight_bits, _MASTER_WEIGHT_BITS)
        if quantize and state_dtype is not None:
            raise ValueError("FlashAdamW: state_dtype applies only with quantize=False")
        self.decouple_lr = decouple_lr
        self.quantize = quantize
        self.master_weight_bits = master_weight_bits
        self.check_numerics = bool(check_numerics)
        self._param_absmax: dict[str, float] = {}
        initial_lr = float(learning_rate(mx.array(0))) if callable(learning_rate) else float(learning_rate)
        if decouple_lr and "weight_decay" not in self._zero and initial_lr <= 0.0:
            raise ValueError(f"FlashAdamW: decouple_lr needs a positive initial learning_rate, got {initial_lr}")
        self.globals["initial_lr"] = mx.array(initial_lr, mx.float32)

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        if self.check_numerics:
            self._check_numerics(_match(gradients, parameters))
        return super().apply_gradients(gradients, parameters, loss=loss)

    def recompute_param_stats(self) -> None:
        """Forget the parameter magnitudes ``check_numerics`` read; the next step reads them again."""
        self._param_absmax.clear()

    def _check_numerics(self, params: Any) -> None:
        """The reference's ``maybe_check_numerics`` for every low-precision parameter (host-side)."""
        scheduled = self._schedulers.get("learning_rate")
        try:
            lr = float(scheduled(self.step) if scheduled is not None else self.state["learning_rate"])
            if lr == 0.0:
                return
            for path, p in tree_flatten(params):
                if p.dtype not in (mx.bfloat16, mx.float16):
                    continue
                if path not in self._param_absmax:
                    self._param_absmax[path] = float(mx.max(mx.abs(p))) if p.size else 0.0
                max_abs = self._param_absmax[path]
                if max_abs <= 0.0 or not math.isfinite(max_abs):
                    continue
                width = 0 if self.master_weight_bits is None else self.master_weight_bits // 8
                bits = max(_BYTES[p.dtype], width) * 8
                resolution = max_abs * 2.0 ** (-(bits - 1))
                if lr * 0.1 < resolution:
                    hint = "; use master_weight_bits=24 or 32" if self.master_weight_bits is None else ""
                    raise ArithmeticError(
                        f"FlashAdamW: learning rate {lr:g} is too small to update the {p.dtype} parameter '{path}' "
                        f"(max |p| = {max_abs:g}, resolution {resolution:g}){hint}"
                    )
        except ValueError as e:
            if "compile" not in str(e):
                raise
            raise ValueError(
                "FlashAdamW: check_numerics reads parameter values on the host and cannot run inside mx.compile; "
                "construct it with check_numerics=False for compiled steps"
            ) from None

    def init(self, parameters: dict) -> None:
        if self.master_weight_bits is not None and all(
            p.dtype == mx.float32 for _, _, p, _ in leaves(parameters, parameters, parameters)
        ):
            raise ValueError("FlashAdamW: master_weight_bits has no effect when all parameters are fp32")
        super().init(parameters)

    def _error_dtype(self, parameter: mx.array) -> mx.Dtype | None:
        width = 0 if self.master_weight_bits is None else self.master_weight_bits // 8
        error_bytes = width - _BYTES.get(parameter.dtype, 8)
        return None if error_bytes <= 0 else (mx.int8 if error_bytes == 1 else mx.int16)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        for name in ("exp_avg", "exp_avg_sq"):
            self._store(state, name, mx.zeros(parameter.shape, mx.float32), parameter.dtype)
        error_dtype = self._error_dtype(parameter)
        if error_dtype is not None:
            state["error_bits"] = mx.zeros(parameter.shape, error_dtype)

    def _store(self, state: dict, name: str, x: mx.array, dtype: mx.Dtype) -> None:
        if self.quantize:
            state[name + "_codes"], state[name + "_scales"] = quantize_state(x, *_STATE_SPEC[name])
        else:
            state[name] = x.astype(self.state_dtype or dtype)

    def _load(self, state: dict, name: str) -> mx.array:
        if self.quantize:
            return dequantize_state(state[name + "_codes"], state[name + "_scales"], *_STATE_SPEC[name])
        return state[name].astype(mx.float32)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        if self.decouple_lr:
            hp.wd_eff = mx.where(hp.lr > 0, hp.weight_decay / self.globals["initial_lr"], hp.weight_decay)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        # the parameter's own dtype is needed (moment storage, error-correction bits): the update is done here
        g = gradient.astype(mx.float32)
        if self.maximize:
            g = -g
        if "error_bits" in state:
            p = reconstruct_fp32_param(parameter, state["error_bits"])
        else:
            p = parameter.astype(mx.float32)
        new = self.adamw(g, p, state, parameter.dtype)
        narrow = new.astype(parameter.dtype)
        if "error_bits" in state:
            state["error_bits"] = compute_ecc_bits(new, narrow, state["error_bits"].dtype)
        return narrow

    def adamw(self, g: mx.array, p: mx.array, state: dict, dtype: mx.Dtype) -> mx.array:
        hp = self.hp
        m, v = self._load(state, "exp_avg"), self._load(state, "exp_avg_sq")
        if self.decays():
            p = p * (1 - (hp.wd_eff if self.decouple_lr else hp.weight_decay) * hp.lr)
        m = F.lerp(m, g, hp.one_minus_beta1)
        v = hp.beta2 * v + hp.one_minus_beta2 * mx.square(g)
        p = p - hp.lr * ((m / hp.bc1) / (mx.sqrt(v / hp.bc2) + hp.eps))
        self._store(state, "exp_avg", m, dtype)
        self._store(state, "exp_avg_sq", v, dtype)
        return p
