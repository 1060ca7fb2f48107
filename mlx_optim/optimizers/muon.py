"""Muon and MuonClip: momentum orthogonalized by Newton-Schulz iterations."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_map_with_path

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.docargs import args_from
from mlx_optim.functional.matrix import (
    NSDtype,
    Weights,
    as_matrix,
    cautious_lowp,
    check_ns_dtype,
    gram_newton_schulz,
    newton_schulz,
    newton_schulz_weights,
    ns_iteration_dtype,
)
from mlx_optim.registry import register


def adjusted_lr_ratio(shape: Sequence[int], use_adjusted_lr: bool) -> float:
    """``get_adjusted_lr``'s factor: ``0.2 sqrt(max(out, in))`` (Moonlight) or ``sqrt(max(1, out / in))``."""
    out, inp = shape[0], math.prod(shape[1:])
    return 0.2 * math.sqrt(max(out, inp)) if use_adjusted_lr else math.sqrt(max(1.0, out / inp))


def default_muon_filter(path: str, parameter: mx.array) -> bool:
    """Default Muon/AdamW split: matrices (``ndim >= 2``) whose path does not contain ``"embed"``."""
    return parameter.ndim >= 2 and "embed" not in path.lower()


class _MuonFamily(Optimizer):
    """Shared machinery: the common constructor keywords, the path-based Muon/AdamW split, weight decay, Muon's
    momentum, the Newton–Schulz orthogonalization, the shape-scaled step and the AdamW fallback."""

    family = "orthogonalized"
    _ADAMW_EPS = "adamw_eps"

    def _setup(self, args: Mapping[str, Any]) -> None:
        """Build the optimizer from a member's constructor arguments (its ``locals()``): the keywords the family
        shares are validated and stored here, the member's own ones are left to it."""
        self._setup_keywords(**{k: v for k, v in args.items() if k not in ("self", "__class__")})

    def _setup_keywords(
        self,
        *,
        learning_rate,
        maximize: bool,
        state_dtype,
        weight_decay,
        weight_decouple: bool,
        ns_steps: int,
        ns_coeffs: Weights,
        use_adjusted_lr: bool,
        adamw_lr,
        adamw_betas,
        adamw_wd,
        muon_filter,
        ns_method: str,
        ns_reset_steps: Sequence[int],
        ns_dtype: NSDtype,
        **member,
    ) -> None:
        """Validate and store the shared keywords; of the member's own (``member``), ``momentum`` and
        ``adamw_eps`` are validated where the member has them, ``nesterov`` and ``cautious`` are False without."""
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("adamw_lr", adamw_lr, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("ns_steps", ns_steps, 0, None, "(]")
        adamw_betas = tuple(adamw_betas)
        if len(adamw_betas) != 2:
            raise ValueError(f"{type(self).__name__}: adamw_betas={adamw_betas!r} must have 2 values")
        for i, b in enumerate(adamw_betas):
            self._hyper(f"adamw_beta{i + 1}", b, 0.0, 1.0, "[)")
        self._hyper("adamw_wd", adamw_wd, 0.0)
        try:
            self.ns_weights = newton_schulz_weights(ns_coeffs)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None
        if muon_filter is not None and not callable(muon_filter):
            raise ValueError(f"{type(self).__name__}: muon_filter={muon_filter!r} must be a callable(path, parameter)")
        if "momentum" in member:  # Muon's momentum (AdaMuon has betas instead)
            self._hyper("momentum", member["momentum"], 0.0, 1.0, "[)")
        if "adamw_eps" in member:  # (AdaMuon's AdamW branch uses its eps)
            self._hyper("adamw_eps", member["adamw_eps"], 0.0)
        self._choice("ns_method", ns_method, ("newton_schulz", "gram_newton_schulz"))
        try:
            self.ns_dtype = check_ns_dtype(ns_dtype)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None
        self.weight_decouple = bool(weight_decouple)
        self.ns_steps = int(ns_steps)
        self.ns_method = ns_method
        self.ns_reset_steps = tuple(int(s) for s in ns_reset_steps)
        self.use_adjusted_lr = bool(use_adjusted_lr)
        self.muon_filter: Callable[[str, mx.array], bool] = muon_filter or default_muon_filter
        self.nesterov = bool(member.get("nesterov", False))
        self.cautious = bool(member.get("cautious", False))

    # -- the split ---------------------------------------------------------------------
    def uses_muon(self, parameter: mx.array) -> bool:
        """Whether the current leaf (``self._leaf_path``) takes the orthogonalized branch."""
        return bool(self.muon_filter(self._leaf_path, parameter))

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.uses_muon(parameter):
            if parameter.ndim == 0:
                raise ValueError(
                    f"{type(self).__name__}: muon_filter selected the scalar parameter '{self._leaf_path}'; "
                    "the orthogonalized update needs ndim >= 1"
                )
            self.init_muon(parameter, state)
        else:
            state["exp_avg"] = self.zeros(parameter)
            state["exp_avg_sq"] = self.zeros(parameter)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        raise NotImplementedError

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if self.uses_muon(p):
            return self.muon_update(g, p, state)
        return self.adamw_update(g, p, state)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        raise NotImplementedError

    # -- shared math ---------------------------------------------------------------------
    def decay(self, p: mx.array, g: mx.array, name: str, lr: mx.array) -> tuple[mx.array, mx.array]:
        """The reference's ``apply_weight_decay`` with coefficient ``hp.<name>`` (skipped when 0 or filtered)."""
        if name in self._zero or (self.decay_filter is not None and not self.decay_filter(self._leaf_path)):
            return p, g
        wd = getattr(self.hp, name)
        if self.weight_decouple:
            return F.decoupled_decay(p, lr, wd), g
        return p, F.coupled_decay(g, p, wd)

    def momentum_step(self, g: mx.array, state: dict) -> mx.array:
        r"""Muon's momentum :math:`b_t = \mu b_{t-1} + (1-\mu) g_t` (torch's ``lerp``), kept in ``state``.

        Returns the direction to orthogonalize: the Nesterov look-ahead :math:`(1-\mu) g_t + \mu b_t` with
        ``nesterov``, else :math:`b_t`.
        """
        hp = self.hp
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        return F.torch_lerp(g, buf, hp.momentum) if self.nesterov else buf

    def orthogonalize(self, u: mx.array) -> mx.array:
        """The Newton–Schulz polar factor of the matrix view of ``u`` (in the ``ns_dtype`` iteration dtype)."""
        m = as_matrix(u)
        if self.ns_method == "gram_newton_schulz":
            dtype = ns_iteration_dtype(self.ns_dtype, mx.float16)
            o = gram_newton_schulz(m, self.ns_steps, self.ns_weights, dtype=dtype, reset_steps=self.ns_reset_steps)
        else:
            o = newton_schulz(m, self.ns_steps, self.ns_weights, dtype=ns_iteration_dtype(self.ns_dtype, mx.bfloat16))
        return o.reshape(u.shape)

    def orthogonal_direction(self, u: mx.array, g: mx.array) -> mx.array:
        """``orthogonalize(u)``; with ``cautious``, zeroed where its sign disagrees with the direction's source
        (``u`` with ``nesterov``, else the gradient ``g``) and the rest rescaled."""
        o = self.orthogonalize(u)
        return cautious_lowp(o, u if self.nesterov else g) if self.cautious else o

    def descend(self, p: mx.array, o: mx.array) -> mx.array:
        r"""The step :math:`p - \eta\, s\, o` along ``o`` (``o`` cast to ``p``'s dtype), :math:`s` the shape factor."""
        return p - (self.hp.lr * self.lr_ratio(p)) * o.astype(p.dtype)

    def step_scalars(self, hp) -> None:
        hp.adamw_bc1 = hp.bias_correction("adamw_beta1")
        hp.adamw_bc2_sqrt = mx.sqrt(hp.bias_correction("adamw_beta2"))

    def adamw_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """The AdamW fallback (bias-corrected Adam, decoupled decay ``adamw_wd`` at ``adamw_lr``)."""
        hp = self.hp
        p, g = self.decay(p, g, "adamw_wd", hp.adamw_lr)
        m = F.torch_lerp(state["exp_avg"], g, hp.one_minus_adamw_beta1)
        v = F.torch_lerp(state["exp_avg_sq"], mx.square(g), hp.one_minus_adamw_beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v) / hp.adamw_bc2_sqrt + getattr(hp, self._ADAMW_EPS)
        return p - (hp.adamw_lr / hp.adamw_bc1) * (m / denom)

    def lr_ratio(self, p: mx.array) -> float:
        return adjusted_lr_ratio(p.shape, self.use_adjusted_lr)


@register
class Muon(_MuonFamily):
    r"""Muon: momentum orthogonalized by a Newton-Schulz iteration, with AdamW for the other parameters.

    For the parameters selected by ``muon_filter`` (default: tensors with ``ndim >= 2`` whose path has no
    ``"embed"``), momentum is orthogonalized by a Newton–Schulz iteration on the matrix view ``(out, -1)``:

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad
        u_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t),\quad
        p_t = p_{t-1} - \eta\, s\, \operatorname{NS}(u_t)

    with :math:`s = \sqrt{\max(1, \text{out}/\text{in})}` or, with ``use_adjusted_lr``, Moonlight's
    :math:`0.2\sqrt{\max(\text{out}, \text{in})}`. Every other parameter gets AdamW with ``adamw_lr``,
    ``adamw_betas``, ``adamw_wd`` and ``adamw_eps``. Weight decay (``weight_decay`` at ``learning_rate`` /
    ``adamw_wd`` at ``adamw_lr``) is decoupled unless ``weight_decouple=False``. Newton–Schulz runs in
    bfloat16 like the reference. ``cautious`` masks the orthogonalized update.

    Paper: Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (blog post, 2024); the
    adjusted learning rate is from Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982, 2025.

    Reference: ``pytorch_optimizer.Muon`` (parity-checked). Difference: the reference splits the parameters
    by ``use_muon`` parameter groups; here ``muon_filter`` decides per leaf path.

    Args:
        learning_rate: Step size :math:`\eta` of the orthogonalized parameters, a float or a schedule (a
            callable of the step). Default ``2e-2``.
        momentum: Momentum factor :math:`\mu`, in [0, 1). Default ``0.95``.
        weight_decay: Weight decay coefficient of the orthogonalized parameters, applied at ``learning_rate``
            (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay, ``p * (1 - lr * wd)``, for both branches (``weight_decay`` at
            ``learning_rate``, ``adamw_wd`` at ``adamw_lr``), instead of adding ``wd * p`` to the gradient.
            Default ``True``.
        nesterov: Orthogonalize the Nesterov combination :math:`(1-\mu) g_t + \mu b_t` instead of the
            buffer. Default ``True``.
        ns_steps: Number of Newton-Schulz iterations (> 0). Default ``5``.
        ns_coeffs: Newton-Schulz coefficients: a preset (``"original"``, ``"quintic"``, ``"polar_express"``,
            ``"polar_express_safer"``), one ``(a, b, c)`` tuple, or a list of tuples (one per iteration, the last
            one repeated). Default ``"original"``.
        use_adjusted_lr: Moonlight's shape factor :math:`0.2\sqrt{\max(\text{out}, \text{in})}` instead of
            :math:`\sqrt{\max(1, \text{out}/\text{in})}`. Default ``False``.
        adamw_lr: Step size of the AdamW parameters, a float or a schedule. Default ``3e-4``.
        adamw_betas: ``(beta1, beta2)`` of the AdamW moments, each in [0, 1). Default ``(0.9, 0.95)``.
        adamw_wd: Weight decay coefficient of the AdamW parameters, applied at ``adamw_lr`` (>= 0).
            Default ``0.0``.
        adamw_eps: Term added to the AdamW denominator (>= 0). Default ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        ns_method: ``"newton_schulz"`` or ``"gram_newton_schulz"`` (the restarted Gram iteration, in
            float16). Default ``"newton_schulz"``.
        ns_reset_steps: With ``"gram_newton_schulz"``, the iteration counts after which the Gram iteration
            restarts. Default ``(2,)``.
        cautious: Zero the orthogonalized update where its sign disagrees with the gradient and rescale the
            rest (keyword-only; the reference's ``cautious`` group option). Default ``False``.
        muon_filter: ``callable(path, parameter) -> bool`` choosing the orthogonalized parameters (keyword-only;
            the reference's ``use_muon`` groups); ``None``: matrices and higher (``ndim >= 2``) whose path does
            not contain ``"embed"``. Default ``None``.
        ns_dtype: dtype of the Newton–Schulz iteration (keyword-only): ``mx.bfloat16``, ``mx.float16``,
            ``mx.float32`` or their names; ``None`` (default): the reference's (bfloat16, float16 for
            ``"gram_newton_schulz"``) on a GPU; on the CPU backend bfloat16 where its products run through MKL's
            bfloat16 GEMM on a processor with AVX-512 (Linux x86-64 with the ``native`` extra,
            :mod:`mlx_optim.native`; not for ``"gram_newton_schulz"``), else float32 (MLX's own CPU matmul has no
            fast low-precision path; float32 is also the more accurate polar factor).
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "muon"
    reference = "pytorch_optimizer.Muon"

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        use_adjusted_lr: bool = False,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        maximize: bool = False,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        *,
        cautious: bool = False,
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        self._setup(locals())

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self.decay(p, g, "weight_decay", self.hp.lr)
        u = self.momentum_step(g, state)
        return self.descend(p, self.orthogonal_direction(u, g))


QK_CLIP_ROLES = ("query", "key", "query_rotary", "key_rotary")


QKClip = Callable[[str, mx.array], "tuple[str, str] | None"] | Mapping[str, "tuple[str, str]"]


def qk_clip_scales(max_logits: mx.array, threshold: float, exponent: float) -> mx.array:
    r"""Per-head QK-Clip factors :math:`(\tau / \max(S_{max}, \tau))^{e}` (1 where :math:`S_{max} \le \tau`)."""
    max_logits = max_logits.astype(mx.float32)
    return mx.power(threshold / mx.maximum(max_logits, threshold), exponent)


@register
@args_from(Muon)
class MuonClip(Muon):
    r"""MuonClip: Muon plus per-head QK-Clip of the attention query/key projections (Kimi K2).

    The orthogonalized branch accumulates plain heavy-ball momentum (no Nesterov) and uses Moonlight's
    shape factor by default:

    .. math::
        b_t = \mu b_{t-1} + g_t,\quad p_t = p_{t-1} - \eta\, s\, \operatorname{NS}(b_t)

    after which every query/key projection whose attention reported a per-head maximum pre-softmax logit
    :math:`S_h > \tau` has that head's rows scaled by :math:`\gamma_h^{\alpha}` (query),
    :math:`\gamma_h^{1-\alpha}` (key) or :math:`\gamma_h` (``query_rotary``), :math:`\gamma_h = \tau / S_h`;
    ``key_rotary`` (a shared rotary key) is left unchanged. Parameters not selected by ``muon_filter`` get
    AdamW.

    **Calling convention.** The reference labels parameter groups with ``qk_clip`` (role) and
    ``attention_name`` and takes ``step(attention_max_logits={name: logits})``. Here ``qk_clip`` is a mapping
    ``{path: (role, attention_name)}`` or a callable ``(path, parameter) -> (role, attention_name) | None``,
    and the logits go to ``opt.update(model, grads, attention_max_logits={name: mx.array of shape (heads,)})``
    (or ``apply_gradients(..., attention_max_logits=...)``). The model computes them in its forward pass
    (e.g. ``mx.max(q @ k.T * scale, axis=(-2, -1))`` per head, reduced over the batch) and returns them
    beside the loss; they must not carry gradients (``mx.stop_gradient``). A projection's rows (first axis)
    are contiguous head blocks. Names missing from the mapping, or no mapping, skip clipping.

    Paper: Kimi Team, "Kimi K2: Open Agentic Intelligence", arXiv:2507.20534, 2025.

    Reference: ``pytorch_optimizer.MuonClip`` (parity-checked). Differences: the calling convention above
    and ``muon_filter`` instead of ``use_muon`` groups; ``weight_decouple`` and ``cautious`` reach the
    reference through its ``**kwargs``.

    Args:
        qk_clip_threshold: Logit threshold :math:`\tau` (> 0). Default ``100.0``.
        qk_clip_alpha: Query exponent :math:`\alpha`, in [0, 1]; keys use :math:`1-\alpha`. Default ``0.5``.
        qk_clip: Which leaves are clipped: a mapping ``{path: (role, attention_name)}`` or a callable
            ``(path, parameter) -> (role, attention_name) | None``, with role ``"query"``, ``"key"``,
            ``"query_rotary"`` or ``"key_rotary"``; ``None`` disables clipping (keyword-only). Default ``None``.
    """

    name = "muonclip"
    reference = "pytorch_optimizer.MuonClip"

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        qk_clip_threshold: float = 100.0,
        qk_clip_alpha: float = 0.5,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        maximize: bool = False,
        use_adjusted_lr: bool = True,
        *,
        weight_decouple: bool = True,
        cautious: bool = False,
        qk_clip: QKClip | None = None,
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        self._setup({**locals(), "nesterov": False})
        self._check("qk_clip_threshold", qk_clip_threshold, 0.0, None, "(]")
        self.qk_clip_threshold = float(qk_clip_threshold)
        self._check("qk_clip_alpha", qk_clip_alpha, 0.0, 1.0, "[]")
        self.qk_clip_alpha = float(qk_clip_alpha)
        if qk_clip is not None and not callable(qk_clip):
            if not isinstance(qk_clip, Mapping):
                raise ValueError(f"MuonClip: qk_clip={qk_clip!r} must be a mapping or a callable(path, parameter)")
            for spec in qk_clip.values():
                self._clip_spec(spec)
        self.qk_clip = qk_clip

    def _clip_spec(self, spec) -> tuple[str, str] | None:
        if spec is None:
            return None
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise ValueError(f"MuonClip: qk_clip entry {spec!r} must be (role, attention_name)")
        role, attention = spec
        self._choice("qk_clip", role, QK_CLIP_ROLES)
        return role, attention

    def clip_spec(self, path: str, parameter: mx.array) -> tuple[str, str] | None:
        """``(role, attention_name)`` of the leaf at ``path``, or None when it is not clipped."""
        if self.qk_clip is None:
            return None
        spec = self.qk_clip(path, parameter) if callable(self.qk_clip) else self.qk_clip.get(path)
        return self._clip_spec(spec)

    def momentum_step(self, g: mx.array, state: dict) -> mx.array:
        r"""Heavy-ball momentum :math:`b_t = \mu b_{t-1} + g_t`, kept in ``state`` and orthogonalized."""
        buf = state["momentum_buffer"] * self.hp.momentum + g
        state["momentum_buffer"] = buf
        return buf

    def apply_gradients(
        self,
        gradients: dict,
        parameters: dict,
        loss: mx.array | None = None,
        attention_max_logits: Mapping[str, mx.array] | None = None,
    ) -> dict:
        new = super().apply_gradients(gradients, parameters, loss=loss)
        if not attention_max_logits or self.qk_clip is None:
            return new
        return tree_map_with_path(lambda path, p: self._clip(path, p, attention_max_logits), new)

    def update(
        self,
        model,
        gradients: dict,
        loss: mx.array | None = None,
        attention_max_logits: Mapping[str, mx.array] | None = None,
    ) -> None:
        """Apply ``gradients`` to ``model``, then QK-Clip with this batch's per-head maximum logits."""
        model.update(self.apply_gradients(gradients, model, loss=loss, attention_max_logits=attention_max_logits))

    def _clip(self, path: str, p: mx.array, attention_max_logits: Mapping[str, mx.array]) -> mx.array:
        spec = self.clip_spec(path, p)
        if spec is None or spec[0] == "key_rotary" or spec[1] not in attention_max_logits:
            return p
        role, attention = spec
        logits = mx.stop_gradient(mx.array(attention_max_logits[attention]))
        if logits.ndim != 1 or logits.size == 0:
            raise ValueError("MuonClip: attention maximum logits must be a nonempty one-dimensional array")
        heads = logits.size
        if p.ndim == 0 or p.shape[0] % heads != 0:
            raise ValueError(
                f"MuonClip: the first dimension of '{path}' {p.shape} must be divisible by the head count {heads}"
            )
        exponent = {"query": self.qk_clip_alpha, "key": 1.0 - self.qk_clip_alpha, "query_rotary": 1.0}[role]
        scales = qk_clip_scales(logits, self.qk_clip_threshold, exponent).astype(p.dtype)
        rows = mx.repeat(scales, p.shape[0] // heads)
        return p * rows.reshape((-1,) + (1,) * (p.ndim - 1))
