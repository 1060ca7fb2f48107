"""Orthogonalized and linear-minimization-oracle (LMO) optimizers from pytorch_optimizer.

Muon, DistributedMuon, AdaMuon and AdaGO orthogonalize a momentum of the matrix
parameters with a Newton–Schulz iteration and update every other parameter with an
AdamW fallback. SCION and SCIONLight take the step given by a linear minimization
oracle over a per-parameter norm ball (spectral, sign, row/column RMS, ...).

**The Muon/AdamW split.** pytorch_optimizer takes parameter groups flagged
``use_muon``; here one parameter tree is split by ``muon_filter(path, parameter)``
(``path`` like ``"layers.0.attn.wq.weight"``). The default,
:func:`default_muon_filter`, sends a parameter to the orthogonalized branch when
``parameter.ndim >= 2`` and ``"embed"`` does not occur in its lower-cased path;
biases, norm gains and embeddings get the AdamW fallback. Output heads are matrices,
so exclude them yourself if you want them on AdamW (as Keller Jordan recommends),
e.g. ``muon_filter=lambda path, p: default_muon_filter(path, p) and "head" not in path``.
The fallback's hyperparameters are the reference's ``adamw_*`` keywords; its state
lives in this optimizer's state (per instance, saved with it) and its bias
correction uses the optimizer's step.

**Precision.** The references run Newton–Schulz in bfloat16 (the Gram variant in
float16). :func:`newton_schulz` and :func:`gram_newton_schulz` do the same: the
iterate is rounded to that dtype after every fused matrix product, exactly where
torch rounds, so results agree with torch's CPU kernels up to the float32
summation order inside a product (rarely one low-precision ulp).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register

__all__ = [
    "NS_COEFFICIENTS",
    "LMONorm",
    "default_muon_filter",
    "newton_schulz",
    "gram_newton_schulz",
    "newton_schulz_weights",
    "adjusted_lr_ratio",
    "lmo_direction",
]

# ----------------------------------------------------------------------------- Newton–Schulz

NS_COEFFICIENTS: dict[str, list[tuple[float, float, float]]] = {
    "original": [(3.4445, -4.7750, 2.0315)],  # Keller Jordan's Muon
    "quintic": [  # modded-nanogpt's optimized quintic schedule
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ],
    "polar_express": [  # Polar Express, safety 1e-2
        (8.237312490495555, -23.157747414558198, 16.680568411445915),
        (4.082441999064835, -2.893047735332586, 0.5252849256975648),
        (3.9263479922546582, -2.8547468034765298, 0.5318022422894988),
        (3.2982187133085143, -2.424541981026706, 0.48632008358844075),
        (2.2970369434552573, -1.63662558125903, 0.4002628455953627),
        (1.8763805351440397, -1.2347896577722228, 0.35891887501668385),
        (1.8564423485617974, -1.2132449880935525, 0.3568003487825883),
        (1.8749994008682747, -1.2499988017229169, 0.3749994008546422),
    ],
    "polar_express_safer": [  # Polar Express, safety 2e-2
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.0429299351667245, -2.808917465908704, 0.5000178451051299),
        (3.8916678022926563, -2.7724841532176825, 0.5060648178503389),
        (3.285753657755658, -2.3681294933425394, 0.46449024233003117),
        (2.3005307116270983, -1.6111665557258408, 0.3833374427545273),
        (1.8631210546382593, -1.2042160621002727, 0.3421879560523383),
        (1.8382572152247512, -1.1779263289537742, 0.3396513038637379),
        (1.8749999923301852, -1.2499999836060613, 0.374999991275876),
    ],
}

Weights = str | tuple[float, float, float] | Sequence[tuple[float, float, float]]


def newton_schulz_weights(weights: Weights) -> list[tuple[float, float, float]]:
    """Resolve a preset name, one ``(a, b, c)`` tuple or a schedule of tuples (``get_newton_schulz_weights``)."""
    if isinstance(weights, str):
        key = weights.lower()
        if key not in NS_COEFFICIENTS:
            raise ValueError(f"ns_coeffs={weights!r} is not a preset; choose one of {tuple(NS_COEFFICIENTS)}")
        return list(NS_COEFFICIENTS[key])
    if isinstance(weights, tuple) and len(weights) == 3 and all(isinstance(w, (int, float)) for w in weights):
        return [tuple(float(w) for w in weights)]
    weights = list(weights)
    if not weights:
        raise ValueError("ns_coeffs: the coefficient schedule must not be empty")
    out = []
    for c in weights:
        if not isinstance(c, (tuple, list)) or len(c) != 3:
            raise ValueError("ns_coeffs must be a preset name, a coefficient tuple, or a list of coefficient tuples")
        out.append(tuple(float(w) for w in c))
    return out


def _coeff(weights: Sequence[tuple[float, float, float]], i: int) -> tuple[float, float, float]:
    return weights[min(i, len(weights) - 1)]


def newton_schulz(
    g: mx.array,
    steps: int = 5,
    weights: Sequence[tuple[float, float, float]] = NS_COEFFICIENTS["original"],
    eps: float = 1e-7,
    dtype: mx.Dtype = mx.bfloat16,
) -> mx.array:
    r"""pytorch_optimizer's ``zero_power_via_newton_schulz_5`` for a 2-D ``g`` with a coefficient schedule.

    :math:`X_0 = G / \max(\|G\|_F, \epsilon)` (on the wide orientation), then
    :math:`A = X X^\top,\ B = b A + c A^2,\ X \leftarrow a X + B X` with the ``i``-th
    ``(a, b, c)`` (the last one repeats). The iterate is stored in ``dtype`` and every
    fused product is computed in float32 and rounded once, as torch's CPU kernels do.
    Generalizes :func:`mlx_optim.optimizers.adam_d.newton_schulz5` (one fixed tuple).
    Returns ``dtype``.
    """
    f32 = mx.float32
    transpose = g.shape[-2] > g.shape[-1]
    x = (g.T if transpose else g).astype(dtype)
    norm = mx.sqrt(mx.sum(mx.square(x.astype(f32)))).astype(dtype)
    x = (x.astype(f32) / mx.maximum(norm, mx.array(eps).astype(dtype)).astype(f32)).astype(dtype)
    for i in range(steps):
        w0, w1, w2 = _coeff(weights, i)
        xf = x.astype(f32)
        a = (xf @ xf.T).astype(dtype).astype(f32)
        b = (w1 * a + w2 * (a @ a)).astype(dtype).astype(f32)
        x = (w0 * xf + b @ xf).astype(dtype)
    return x.T if transpose else x


def gram_newton_schulz(
    g: mx.array,
    steps: int = 5,
    weights: Sequence[tuple[float, float, float]] = NS_COEFFICIENTS["original"],
    eps: float = 1e-7,
    dtype: mx.Dtype = mx.float16,
    reset_steps: Sequence[int] = (2,),
) -> mx.array:
    r"""pytorch_optimizer's ``zero_power_via_gram_newton_schulz`` (restarted Gram Newton–Schulz) for a 2-D ``g``.

    Iterates on the small Gram matrix :math:`R = X X^\top` and accumulates the
    polynomial factor :math:`Q` so that the result is :math:`Q X_0`; at the iteration
    counts in ``reset_steps`` it forms :math:`X \leftarrow Q X` and restarts. Normalizes
    in float32, iterates in ``dtype`` (float16 like the reference; a scalar added to a
    float16 diagonal is rounded to float16 first, as in torch).
    """
    f32 = mx.float32

    def rnd(t: mx.array) -> mx.array:
        return t.astype(dtype).astype(f32)

    transpose = g.shape[-2] > g.shape[-1]
    m = (g.T if transpose else g).astype(f32)
    x = rnd(m / mx.maximum(mx.sqrt(mx.sum(mx.square(m))), eps))
    if steps <= 0:
        x = x.astype(dtype)
        return x.T if transpose else x
    gram = rnd(x @ x.T)
    eye = mx.eye(gram.shape[0], dtype=f32)
    factor = None
    for i in range(steps):
        if i in reset_steps and factor is not None:
            x = rnd(factor @ x)
            gram = rnd(x @ x.T)
            factor = None
        w0, w1, w2 = _coeff(weights, i)
        poly = rnd(w1 * gram + w2 * (gram @ gram))
        if factor is not None:
            factor = rnd(w0 * factor + factor @ poly)
        if i + 1 < steps and i + 1 not in reset_steps:
            s = rnd(w0 * gram + gram @ poly)
            gram = rnd(w0 * s + poly @ s)
        if factor is None:
            factor = rnd(poly + round_scalar(w0, dtype) * eye)
    x = (factor @ x).astype(dtype)
    return x.T if transpose else x


def round_scalar(x: float, dtype: mx.Dtype) -> float:
    """``x`` rounded to nearest-even in ``dtype`` (torch rounds a Python scalar so when adding it to such a tensor)."""
    if dtype == mx.float16:
        return float(np.float16(x))
    if dtype == mx.bfloat16:
        bits = int(np.array(x, np.float32).view(np.uint32))
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return float(np.array(bits, np.uint32).view(np.float32))
    return float(np.float32(x)) if dtype == mx.float32 else float(x)


def as_matrix(x: mx.array) -> mx.array:
    """The reference's matrix view ``x.reshape(x.size(0), -1)`` (output features first)."""
    return x.reshape(x.shape[0], -1)


def adjusted_lr_ratio(shape: Sequence[int], use_adjusted_lr: bool) -> float:
    """``get_adjusted_lr``'s factor: ``0.2 sqrt(max(out, in))`` (Moonlight) or ``sqrt(max(1, out / in))``."""
    out, inp = shape[0], math.prod(shape[1:])
    return 0.2 * math.sqrt(max(out, inp)) if use_adjusted_lr else math.sqrt(max(1.0, out / inp))


def default_muon_filter(path: str, parameter: mx.array) -> bool:
    """Default Muon/AdamW split: matrices (``ndim >= 2``) whose path does not contain ``"embed"``."""
    return parameter.ndim >= 2 and "embed" not in path.lower()


def cautious_lowp(update: mx.array, g: mx.array) -> mx.array:
    """The reference's in-place cautious mask on a low-precision update (masked in float32, rounded back)."""
    return F.cautious_mask(update.astype(mx.float32), g).astype(update.dtype)


# ----------------------------------------------------------------------------- the Muon family


class _MuonFamily(Optimizer):
    """Shared machinery: the path-based Muon/AdamW split, weight decay, the AdamW fallback."""

    family = "orthogonalized"
    _ADAMW_EPS = "adamw_eps"

    def _setup(
        self,
        *,
        weight_decay,
        weight_decouple: bool,
        ns_steps: int,
        ns_coeffs: Weights,
        use_adjusted_lr: bool,
        adamw_lr,
        adamw_betas,
        adamw_wd,
        muon_filter,
    ) -> None:
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
        self.weight_decouple = bool(weight_decouple)
        self.ns_steps = int(ns_steps)
        self.use_adjusted_lr = bool(use_adjusted_lr)
        self.muon_filter: Callable[[str, mx.array], bool] = muon_filter or default_muon_filter

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
    r"""Muon (Jordan et al., 2024, "Muon: An optimizer for hidden layers"), pytorch_optimizer semantics.

    For the parameters selected by ``muon_filter`` (default: matrices whose path has
    no ``"embed"``; see the module docstring), momentum is orthogonalized by a
    Newton–Schulz iteration on the matrix view ``(out, -1)``:

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad
        u_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t),\quad
        p_t = p_{t-1} - \eta\, s\, \operatorname{NS}(u_t)

    with :math:`s = \sqrt{\max(1, \text{out}/\text{in})}` or, with ``use_adjusted_lr``,
    Moonlight's :math:`0.2\sqrt{\max(\text{out}, \text{in})}`. Every other parameter gets
    AdamW with ``adamw_lr``, ``adamw_betas``, ``adamw_wd`` and ``adamw_eps``. Weight decay
    (``weight_decay`` at ``learning_rate`` / ``adamw_wd`` at ``adamw_lr``) is decoupled
    unless ``weight_decouple=False``. ``ns_coeffs`` is a preset (``"original"``,
    ``"quintic"``, ``"polar_express"``, ``"polar_express_safer"``) or coefficient tuples;
    ``ns_method="gram_newton_schulz"`` uses the restarted Gram iteration (float16, restarts
    at ``ns_reset_steps``). Newton–Schulz runs in bfloat16 like the reference. ``cautious``
    masks the orthogonalized update (pytorch_optimizer's ``cautious`` group option).

    The Keras seed's defaults differ: ``weight_decay=0.01`` and ``adamw_eps=1e-8``
    (reference: 0.0 and 1e-10; we follow the reference).
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
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._setup(
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            ns_steps=ns_steps,
            ns_coeffs=ns_coeffs,
            use_adjusted_lr=use_adjusted_lr,
            adamw_lr=adamw_lr,
            adamw_betas=adamw_betas,
            adamw_wd=adamw_wd,
            muon_filter=muon_filter,
        )
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("adamw_eps", adamw_eps, 0.0)
        self._choice("ns_method", ns_method, ("newton_schulz", "gram_newton_schulz"))
        self.nesterov, self.cautious = bool(nesterov), bool(cautious)
        self.ns_method = ns_method
        self.ns_reset_steps = tuple(int(s) for s in ns_reset_steps)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)

    def orthogonalize(self, u: mx.array) -> mx.array:
        """The Newton–Schulz polar factor of the matrix view of ``u`` (low precision, shape of ``u``)."""
        m = as_matrix(u)
        if self.ns_method == "gram_newton_schulz":
            o = gram_newton_schulz(m, self.ns_steps, self.ns_weights, reset_steps=self.ns_reset_steps)
        else:
            o = newton_schulz(m, self.ns_steps, self.ns_weights)
        return o.reshape(u.shape)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        if self.nesterov:
            g = F.torch_lerp(g, buf, hp.momentum)
        o = self.orthogonalize(g if self.nesterov else buf)
        if self.cautious:
            o = cautious_lowp(o, g)
        return p - (hp.lr * self.lr_ratio(p)) * o.astype(p.dtype)


@register
class DistributedMuon(Muon):
    r"""DistributedMuon, pytorch_optimizer semantics: :class:`Muon` with the Newton–Schulz work spread over ranks.

    The parameters selected by ``muon_filter`` are numbered in update order (the tree's leaf
    order); the ``i``-th one belongs to rank ``i % world_size`` (the reference's round-robin
    ``params[rank::world_size]``). Each rank keeps the momentum buffer of, and computes the
    orthogonalized update for, its own matrices only; the updated matrices are then exchanged
    with ``mx.distributed.all_gather`` (one padded buffer per dtype, values copied exactly), so
    every rank ends the step with the same parameters as :class:`Muon` would compute. The AdamW
    fallback parameters are updated on every rank, with replicated state, as in the reference.

    As in the reference (which relies on DDP), the gradients must already be averaged over the
    ranks: use ``mlx_optim.distributed.DataParallel(DistributedMuon(...))`` or average them
    yourself (``mlx.nn.average_gradients``). ``group`` is the ``mx.distributed`` group (default:
    ``mx.distributed.init()``, a one-process group when not launched, where each step is exactly
    :class:`Muon`'s). The rank assignment is fixed when the state is created; checkpoints of
    the sharded momentum go through :func:`mlx_optim.distributed.save_sharded` /
    ``load_sharded`` (re-sharded for a different world size).

    Same keywords as :class:`Muon`; ``ns_method``, ``ns_reset_steps`` and ``cautious`` reach the
    reference through its ``**kwargs``; ``group`` replaces its implicit ``torch.distributed`` group.
    """

    name = "distributedmuon"
    reference = "pytorch_optimizer.DistributedMuon"

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
        *,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        cautious: bool = False,
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        group: mx.distributed.Group | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            momentum,
            weight_decay,
            weight_decouple,
            nesterov,
            ns_steps,
            ns_coeffs,
            use_adjusted_lr,
            adamw_lr,
            adamw_betas,
            adamw_wd,
            adamw_eps,
            maximize,
            ns_method,
            ns_reset_steps,
            cautious=cautious,
            muon_filter=muon_filter,
            state_dtype=state_dtype,
        )
        if group is not None and not isinstance(group, mx.distributed.Group):
            raise ValueError(f"DistributedMuon: group={group!r} must be an mx.distributed.Group or None")
        self.group = group if group is not None else mx.distributed.init()
        self.muon_owner: dict[str, int] = {}  # path of each orthogonalized leaf -> the rank that updates it

    def init(self, parameters: dict) -> None:
        from mlx_optim.base import leaves

        order = []
        for path, _, p, _ in leaves(parameters, parameters, parameters):
            self._leaf_path = path
            if self.uses_muon(p):
                order.append(path)
        world = self.group.size()
        self.muon_owner = {path: i % world for i, path in enumerate(order)}
        super().init(parameters)

    def owns(self) -> bool:
        """Whether this rank updates the current leaf (always for AdamW leaves and on one rank)."""
        return self.muon_owner.get(self._leaf_path, self.group.rank()) == self.group.rank()

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        if self.owns():
            super().init_muon(parameter, state)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if not self.owns():
            return p  # updated by its owner and all-gathered in apply_gradients
        return super().muon_update(g, p, state)

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        new = super().apply_gradients(gradients, parameters, loss=loss)
        if self.group.size() == 1:
            return new
        from mlx.utils import tree_flatten, tree_map_with_path

        from mlx_optim.distributed.core import all_gather_owned

        flat = dict(tree_flatten(new))
        owners = {path: r for path, r in self.muon_owner.items() if path in flat}
        rank = self.group.rank()
        # the gather waits for all gradients (so for the collectives that averaged them: same order on every rank)
        after = [g for _, g in tree_flatten(gradients)]
        full = all_gather_owned({p: flat[p] for p, r in owners.items() if r == rank}, owners, flat, self.group, after)
        return tree_map_with_path(lambda path, x: full.get(path, x), new)


@register
class AdaMuon(_MuonFamily):
    r"""AdaMuon (Si et al., 2025, "AdaMuon: Adaptive Muon Optimizer"), pytorch_optimizer semantics.

    The orthogonalized momentum is normalized element-wise by a second moment of
    itself and rescaled to a fixed RMS:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad O_t = \operatorname{NS}(m_t),\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) O_t^2 \\
        U_t = \frac{O_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, s\, \frac{\sqrt{\min(\text{out}, \text{in})}}{\|U_t\|_F + \epsilon}\, U_t

    with :math:`s` the shape factor of :class:`Muon` (Moonlight's ``0.2 sqrt(max)`` by
    default, ``use_adjusted_lr=True``). Parameters not selected by ``muon_filter`` get
    AdamW (``adamw_lr``, ``adamw_betas``, ``adamw_wd`` and the shared ``eps``). Reference
    quirk kept: :math:`O_t`, :math:`U_t` and the rescaled update are bfloat16 tensors
    (rounded at each in-place step, as in torch); ``v`` stays float32.
    ``ns_method="gram_newton_schulz"`` (restarts at ``ns_reset_steps``) as in :class:`Muon`; the reference
    reads both from the parameter group (``group.get("ns_method")``), its constructor does not forward them.

    The Keras seed's defaults differ: ``learning_rate=1e-3``, ``betas=(0.9, 0.999)``,
    ``eps=1e-8``, ``weight_decay=0.01``, ``use_adjusted_lr=False`` (we follow the reference).
    """

    name = "adamuon"
    reference = "pytorch_optimizer.AdaMuon"
    _ADAMW_EPS = "eps"
    orthogonalize = Muon.orthogonalize  # ns_method / ns_reset_steps as in Muon

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        betas: Sequence[float] = (0.9, 0.95),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        use_adjusted_lr: bool = True,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.999),
        adamw_wd: Tunable = 0.0,
        eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._setup(
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            ns_steps=ns_steps,
            ns_coeffs=ns_coeffs,
            use_adjusted_lr=use_adjusted_lr,
            adamw_lr=adamw_lr,
            adamw_betas=adamw_betas,
            adamw_wd=adamw_wd,
            muon_filter=muon_filter,
        )
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._choice("ns_method", ns_method, ("newton_schulz", "gram_newton_schulz"))
        self.ns_method = ns_method
        self.ns_reset_steps = tuple(int(s) for s in ns_reset_steps)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["m"] = self.zeros(parameter)
        state["v"] = self.zeros(parameter, (parameter.size,))

    def step_scalars(self, hp) -> None:
        super().step_scalars(hp)
        hp.bc2 = hp.bias_correction("beta2")

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp, f32 = self.hp, mx.float32
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        m = F.torch_lerp(state["m"], g, hp.one_minus_beta1)
        state["m"] = m
        o = self.orthogonalize(m)
        lowp = o.dtype
        o = o.reshape(-1).astype(f32)
        v = state["v"] * hp.beta2 + hp.one_minus_beta2 * o * o
        state["v"] = v
        u = (o / (mx.sqrt(v / hp.bc2) + hp.eps)).astype(lowp).reshape(p.shape)
        # torch: u.mul_(sqrt(min(rows, cols)) / (norm(u) + eps)) on bfloat16 tensors, where
        # ``float / tensor`` is ``tensor.reciprocal() * float`` and ``tensor + float`` rounds the float first.
        norm = F.norm(u).astype(lowp).astype(f32) + mx.array(hp.eps).astype(lowp).astype(f32)
        inv = (1.0 / norm.astype(lowp).astype(f32)).astype(lowp).astype(f32)
        rows = p.shape[0]
        scale = (inv * math.sqrt(min(rows, p.size // rows))).astype(lowp).astype(f32)
        u = (u.astype(f32) * scale).astype(lowp)
        return p - (hp.lr * self.lr_ratio(p)) * u.astype(p.dtype)


@register
class AdaGO(_MuonFamily):
    r"""AdaGO (Zhang et al., 2025, "AdaGrad Meets Muon"), pytorch_optimizer semantics.

    Muon's orthogonalized momentum with an AdaGrad-norm step size per matrix:

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad v_t = v_{t-1} + \min(\|g_t\|^2, \gamma^2),\quad
        p_t = p_{t-1} - \max\!\Big(\frac{\eta\, s \min(\|g_t\|, \gamma)}{v_t}, \epsilon\Big)\, \operatorname{NS}(b_t)

    (``v_0 = v``; with ``nesterov`` the orthogonalized direction and the norm in the step
    size use :math:`(1-\mu) g_t + \mu b_t`, as in the reference). ``s`` is :class:`Muon`'s
    shape factor. Parameters not selected by ``muon_filter`` get AdamW (``adamw_*``).
    ``cautious`` masks the orthogonalized update.
    ``ns_method="gram_newton_schulz"`` (restarts at ``ns_reset_steps``) as in :class:`Muon`; the reference
    reads both from the parameter group (``group.get("ns_method")``), its constructor does not forward them.

    The Keras seed's default ``nesterov=True`` differs from the reference's ``False`` (we
    follow the reference).
    """

    name = "adago"
    reference = "pytorch_optimizer.AdaGO"
    orthogonalize = Muon.orthogonalize  # ns_method / ns_reset_steps as in Muon

    def __init__(
        self,
        learning_rate: Tunable = 5e-2,
        momentum: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        gamma: Tunable = 10.0,
        eps: Tunable = 5e-4,
        v: float = 1e-6,
        nesterov: bool = False,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        use_adjusted_lr: bool = False,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        cautious: bool = False,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._setup(
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            ns_steps=ns_steps,
            ns_coeffs=ns_coeffs,
            use_adjusted_lr=use_adjusted_lr,
            adamw_lr=adamw_lr,
            adamw_betas=adamw_betas,
            adamw_wd=adamw_wd,
            muon_filter=muon_filter,
        )
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0, None, "(]")
        self._check("v", v, 0.0, None, "(]")
        self._hyper("adamw_eps", adamw_eps, 0.0)
        self.initial_v = float(v)
        self.nesterov, self.cautious = bool(nesterov), bool(cautious)
        self._choice("ns_method", ns_method, ("newton_schulz", "gram_newton_schulz"))
        self.ns_method = ns_method
        self.ns_reset_steps = tuple(int(s) for s in ns_reset_steps)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)
        state["v"] = mx.array(self.initial_v, dtype=self.state_dtype or self.compute_dtype(parameter))

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        g_norm = F.norm(g)
        v = state["v"] + mx.minimum(mx.square(g_norm), hp.gamma**2)
        state["momentum_buffer"], state["v"] = buf, v
        if self.nesterov:
            g = F.torch_lerp(g, buf, hp.momentum)
            g_norm = F.norm(g)
        o = self.orthogonalize(g if self.nesterov else buf)
        if self.cautious:
            o = cautious_lowp(o, g)
        step = mx.maximum(mx.minimum(g_norm, hp.gamma) * (hp.lr * self.lr_ratio(p)) / v, hp.eps)
        return p - o.astype(p.dtype) * step


# ----------------------------------------------------------------------------- SCION


class LMONorm(IntEnum):
    """Linear minimization oracle norms (pytorch_optimizer's ``LMONorm``)."""

    NONE = 0
    AUTO = 1
    SPECTRAL = 2
    SPECTRALCONV = 3
    SIGN = 4
    BIAS = 5
    COL = 6
    ROW = 7


# Options each norm accepts (``norm_kwargs``) with their defaults; NONE, AUTO and BIAS take none.
_LMO_OPTIONS: dict[int, dict[str, Any]] = {
    LMONorm.SPECTRAL: {"max_scale": False, "normalize": True, "num_steps": 5},
    LMONorm.SPECTRALCONV: {"num_steps": 5},
    LMONorm.SIGN: {"zero_init": False, "normalize": True},
    LMONorm.COL: {"normalized": False, "transpose": False},
    LMONorm.ROW: {"normalized": True, "transpose": False},
}


def _lmo_options(owner: str, norm_type: int, norm_kwargs: dict | None) -> dict[str, Any]:
    if norm_type not in LMONorm._value2member_map_:
        raise ValueError(f"{owner}: norm_type={norm_type!r} is not an LMONorm value")
    defaults = _LMO_OPTIONS.get(norm_type, {})
    unknown = set(norm_kwargs or {}) - set(defaults)
    if unknown and norm_type not in (LMONorm.NONE, LMONorm.AUTO, LMONorm.BIAS):
        raise ValueError(f"{owner}: norm_kwargs {sorted(unknown)} are not options of {LMONorm(norm_type).name}")
    return {**defaults, **{k: v for k, v in (norm_kwargs or {}).items() if k in defaults}}


def lmo_direction(g: mx.array, norm_type: int, options: dict[str, Any] | None = None, eps: float = 1e-8) -> mx.array:
    """The LMO direction of ``g`` for ``norm_type`` (before the radius ``scale``), as pytorch_optimizer's ``Norm.lmo``.

    Spectral directions are Newton–Schulz polar factors in bfloat16 (returned in
    bfloat16, like the reference, and scaled by a bfloat16-rounded factor as in its
    default batched ``lmo_foreach`` path); the other norms return ``g``'s dtype.
    """
    opts = {**_LMO_OPTIONS.get(norm_type, {}), **(options or {})}
    if norm_type == LMONorm.AUTO:
        if g.ndim <= 1:
            norm_type = LMONorm.BIAS
        elif g.ndim == 2:
            norm_type = LMONorm.SPECTRAL
        elif g.ndim in (3, 4):
            norm_type = LMONorm.SPECTRALCONV
        else:
            raise ValueError(f"SCION: LMONorm.AUTO has no norm for {g.ndim}-D parameters")
        opts = dict(_LMO_OPTIONS.get(norm_type, {}))
    if norm_type == LMONorm.NONE:
        return g
    if norm_type == LMONorm.BIAS:
        rms = mx.sqrt(mx.mean(mx.square(g), axis=0, keepdims=True)) if g.ndim else mx.abs(g)
        return g / (rms + eps)
    if norm_type in (LMONorm.SPECTRAL, LMONorm.SPECTRALCONV):
        if g.ndim < 2:
            raise ValueError(f"SCION: {LMONorm(norm_type).name} needs a parameter with ndim >= 2")
        o = newton_schulz(as_matrix(g), opts["num_steps"]).reshape(g.shape)
        d_out, d_in = g.shape[0], g.shape[1]
        if norm_type == LMONorm.SPECTRALCONV:
            scale = math.sqrt(d_out / d_in) / math.prod(g.shape[2:])
        else:
            scale = math.sqrt(d_out / d_in) if opts["normalize"] else math.sqrt(d_out)
            scale = max(1.0, scale) if opts["max_scale"] else scale
        # the reference's default (batched) path multiplies the bfloat16 directions with
        # ``torch._foreach_mul_``, which rounds the scalar to bfloat16 first
        return (o.astype(mx.float32) * round_scalar(scale, o.dtype)).astype(o.dtype)
    if norm_type == LMONorm.SIGN:
        if g.ndim < 2:
            raise ValueError("SCION: LMONorm.SIGN needs a parameter with ndim >= 2")
        return F.sign(g) / g.shape[1] if opts["normalize"] else F.sign(g)
    if g.ndim != 2:
        raise ValueError(f"SCION: {LMONorm(norm_type).name} needs a 2-D parameter")
    x = g.T if opts["transpose"] else g
    if norm_type == LMONorm.COL:
        d_in, d_out = x.shape
        rms = mx.sqrt(mx.sum(mx.square(x), axis=0, keepdims=True)) / math.sqrt(d_in)
        if opts["normalized"]:
            rms = rms * d_out
    else:  # ROW
        rms = mx.sqrt(mx.sum(mx.square(x), axis=-1, keepdims=True))
        if opts["normalized"]:
            rms = rms * math.sqrt(x.shape[-1])
    x = x / (rms + eps)
    return x.T if opts["transpose"] else x


NormChoice = int | Callable[[str, mx.array], "int | tuple[int, dict]"]


@register
class SCION(Optimizer):
    r"""SCION (Pethick et al., 2025, "Training Deep Learning Models with Norm-Constrained LMOs").

    Momentum averaged with weight ``momentum`` on the new gradient, then a step along
    the linear minimization oracle of a norm ball of radius ``scale``:

    .. math::
        d_t = (1-\alpha) d_{t-1} + \alpha g_t,\quad
        p_t = (1 - \eta [\text{constraint}])\, p_{t-1} + \eta\, \text{scale}\cdot \operatorname{lmo}(d_t)

    where :math:`\operatorname{lmo}(d) = -\arg\max_{\|x\| \le 1}\langle d, x\rangle` is
    implemented as the reference's ``Norm.lmo`` (:func:`lmo_direction`; ``+`` sign as
    the step subtracts it): ``AUTO`` picks RMS-normalization for vectors, the
    Newton–Schulz polar factor (bfloat16) scaled by :math:`\sqrt{d_{out}/d_{in}}` for
    matrices and convolution kernels; ``SIGN``, ``COL``, ``ROW``, ``BIAS``, ``NONE`` as in the
    reference, with ``norm_kwargs``. Weight decay applies only without ``constraint``.

    Parameter groups become per-leaf choices: ``norm_type`` may be a callable
    ``(path, parameter) -> LMONorm`` or ``(LMONorm, norm_kwargs)``. The reference's
    ``init()`` (re-initializing parameters on the norm ball with torch's RNG) is not ported.
    """

    name = "scion"
    family = "orthogonalized"
    reference = "pytorch_optimizer.SCION"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.1,
        constraint: bool = False,
        norm_type: NormChoice = LMONorm.AUTO,
        norm_kwargs: dict | None = None,
        scale: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "(]")
        self._hyper("scale", scale, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay, 0.0)
        if not callable(norm_type):
            _lmo_options(type(self).__name__, norm_type, norm_kwargs)
        self.norm_type, self.norm_kwargs = norm_type, dict(norm_kwargs or {})
        self.constraint, self.weight_decouple = bool(constraint), bool(weight_decouple)

    def leaf_norm(self, p: mx.array) -> tuple[int, dict[str, Any]]:
        """``(norm_type, options)`` of the current leaf."""
        choice, kwargs = self.norm_type, self.norm_kwargs
        if callable(choice):
            choice = choice(self._leaf_path, p)
            if isinstance(choice, tuple):
                choice, kwargs = choice
        return int(choice), _lmo_options(type(self).__name__, choice, kwargs)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["d"] = self.zeros(parameter)

    def descend(self, p: mx.array, d: mx.array) -> mx.array:
        hp = self.hp
        norm_type, opts = self.leaf_norm(p)
        u = lmo_direction(d, norm_type, opts)
        scale = hp.scale if u.dtype == mx.float32 else hp.scale.astype(u.dtype).astype(mx.float32)  # foreach rounding
        u = (u.astype(mx.float32) * scale).astype(u.dtype)
        if self.constraint:
            p = p * (1 - hp.lr)
        return p - hp.lr * u.astype(p.dtype)

    def _decay(self, p: mx.array, g: mx.array) -> tuple[mx.array, mx.array]:
        if self.constraint:
            return p, g
        return self.apply_weight_decay(p, g, decouple=self.weight_decouple)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self._decay(p, g)
        d = F.torch_lerp(state["d"], g, self.hp.momentum)
        state["d"] = d
        return self.descend(p, d)


@register
class SCIONLight(SCION):
    r"""SCIONLight, pytorch_optimizer semantics: :class:`SCION` with the momentum kept in the gradient buffer.

    The reference never zeroes ``p.grad``: backward adds the new gradient to the
    buffer, the step uses the LMO of the buffer and then scales it by
    :math:`1-\alpha`. Here the buffer is optimizer state:

    .. math::
        d_t = (1-\alpha) d_{t-1} + g_t,\quad
        p_t = (1 - \eta [\text{constraint}])\, p_{t-1} - \eta\, \text{scale}\cdot \operatorname{lmo}(d_t)

    (coupled weight decay is added to :math:`g_t` and so, as in the reference, kept in
    the buffer). Differences from the reference, which mutates ``p.grad`` in place:
    ``maximize`` negates only the new gradient (the reference negates the whole
    accumulated buffer every step, flipping the sign of the history), and
    ``momentum=1`` empties the buffer (the reference skips the scaling then, so the
    buffer keeps everything).
    """

    name = "scionlight"
    reference = "pytorch_optimizer.SCIONLight"

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self._decay(p, g)
        d = state["grad_buffer"] + g
        state["grad_buffer"] = d * (1 - self.hp.momentum)
        return self.descend(p, d)
