"""Kron: PSGD with Kronecker-factored preconditioners."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from string import ascii_lowercase, ascii_uppercase

import mlx.core as mx
import numpy as np

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import gram, identity
from mlx_optim.registry import register

KRON_EPS = 2.0**-126  # torch.finfo(torch.bfloat16).tiny, the reference's eps


KRON_PRECONDITION_LR = 0.1  # the reference's fixed group default 'precondition_lr'


KRON_INIT_SCALE = 1.0  # the reference's fixed group default 'precondition_init_scale'


def precondition_update_prob_schedule(
    max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: int = 500
) -> Callable[[mx.array], mx.array]:
    """Kron's default update-probability schedule: flat at ``max_prob``, then exponential decay to ``min_prob``.

    A function of the step count (an ``mx.array``), usable as an ``mlx_optim`` schedule.
    """

    def schedule(n: mx.array) -> mx.array:
        prob = max_prob * mx.exp(-decay * (mx.array(n).astype(mx.float32) - flat_start))
        return mx.clip(prob, min_prob, max_prob)

    return schedule


def kron_structure(shape: Sequence[int], max_size: int, min_ndim_triangular: int, memory_save_mode):
    """Which factors are diagonal, and the einsum specs (pytorch_optimizer's ``initialize_q_expressions``)."""
    letters = ascii_lowercase + ascii_uppercase
    if len(shape) == 0:
        return [True], (",->", [",->"], ",,->")
    if len(shape) > 13:
        raise ValueError(f"Kron: got a tensor with {len(shape)} dimensions; at most 13 are supported")
    if memory_save_mode is None:
        dim_diag = [False] * len(shape)
    elif memory_save_mode == "one_diag":
        dim_diag = [False] * len(shape)
        dim_diag[int(np.argsort(shape)[::-1][0])] = True
    elif memory_save_mode == "smart_one_diag":
        dim_diag = [False] * len(shape)
        sorted_shape = sorted(shape)
        if len(shape) >= 2 and sorted_shape[-1] > sorted_shape[-2]:
            dim_diag[int(np.argsort(shape)[::-1][0])] = True
    else:  # all_diag
        dim_diag = [True] * len(shape)

    diag, expr_gr = [], []
    p1a, p2a, p3a = [], "", ""
    p1p, p2p, p3p, p4p = [], [], "", ""
    for i, (size, dim_d) in enumerate(zip(shape, dim_diag)):
        piece1 = "".join(letters[i + 13] if j == i else letters[j] for j in range(len(shape)))
        if size == 1 or size > max_size or len(shape) < min_ndim_triangular or dim_d:
            diag.append(True)
            p1a.append(letters[i])
            p2a += letters[i]
            p3a += letters[i]
            expr_gr.append(f"{piece1},{piece1}->{letters[i + 13]}")
            p1p.append(letters[i + 13])
            p2p.append(letters[i + 13])
            p3p += letters[i + 13]
            p4p += letters[i + 13]
        else:
            diag.append(False)
            p1a.append(letters[i] + letters[i + 13])
            p2a += letters[i + 13]
            p3a += letters[i]
            piece2 = "".join(letters[i + 26] if j == i else letters[j] for j in range(len(shape)))
            expr_gr.append(f"{piece1},{piece2}->{letters[i + 13]}{letters[i + 26]}")
            a, b, c = letters[i], letters[i + 13], letters[i + 26]
            p1p.append(a + b)
            p2p.append(a + c)
            p3p += c
            p4p += b
    expr_a = ",".join(p1a) + f",{p2a}->{p3a}"
    expr_r = ",".join(p1p) + "," + ",".join(p2p) + f",{p3p}->{p4p}"
    return diag, (expr_a, expr_gr, expr_r)


def norm_lower_bound(a: mx.array) -> mx.array:
    """A cheap lower bound of the spectral norm (pytorch_optimizer's ``norm_lower_bound``)."""
    if a.ndim < 2:
        return mx.sqrt(mx.sum(mx.square(a)))
    tiny = float(np.finfo(np.float32).tiny)
    max_abs = mx.max(mx.abs(a))
    a = a / mx.where(max_abs > 0, max_abs, 1.0)
    aa = a * a
    s0, s1 = mx.sum(aa, axis=0), mx.sum(aa, axis=1)
    x0 = mx.take(a, mx.argmax(s0), axis=1) @ a
    bound0 = F.norm((x0 / mx.maximum(F.norm(x0), tiny)) @ a.T)
    x1 = a @ mx.take(a, mx.argmax(s1), axis=0)
    bound1 = F.norm(a.T @ (x1 / mx.maximum(F.norm(x1), tiny)))
    return max_abs * mx.where(mx.max(s0) > mx.max(s1), bound0, bound1)


def _solve_triangular_right(x: mx.array, a: mx.array) -> mx.array:
    """``x @ inv(a)`` for upper-triangular ``a`` (a triangular solve on the CPU stream)."""
    x2 = x.reshape(-1, x.shape[-1]).astype(mx.float32)
    out = mx.linalg.solve_triangular(a.astype(mx.float32).T, x2.T, upper=False, stream=mx.cpu).T
    return out.reshape(x.shape).astype(x.dtype)


def kron_balance(qs: list[mx.array]) -> list[mx.array]:
    """Rescale the factors to a common max-abs norm (their geometric mean); the product is unchanged."""
    norms = mx.stack([mx.max(mx.abs(q)) for q in qs])
    gmean = mx.power(mx.prod(norms), 1.0 / len(qs))
    return [q * (gmean / norms[i]) for i, q in enumerate(qs)]


def mode_product(x: mx.array, q: mx.array, axis: int, transpose: bool = False) -> mx.array:
    """``x`` times the factor ``q`` along ``axis``: ``y[.., a, ..] = sum_n q[a, n] x[.., n, ..]`` (``q[n, a]``
    when ``transpose``); a 1-d ``q`` is a diagonal factor (element-wise scaling along ``axis``).

    Kron's contractions are chains of these, one factor at a time, instead of one multi-operand ``mx.einsum``:
    MLX's einsum path search overflows its FLOP count for 2048-wide factors and then runs the naive
    contraction over every index at once (Kron crashed the process on a 2048x2048 parameter).
    """
    if q.ndim < 2:
        return x * q.reshape([-1 if i == axis else 1 for i in range(x.ndim)])
    if x.ndim == 2:
        if axis == 0:
            return (q.T if transpose else q) @ x
        return x @ (q if transpose else q.T)
    return mx.moveaxis(mx.tensordot(x, q, axes=([axis], [0 if transpose else 1])), -1, axis)


def kron_apply(qs: list[mx.array], x: mx.array, transpose: bool = False) -> mx.array:
    """``Q x`` for ``Q = Q_1 (x) ... (x) Q_k`` (``Q^T x`` when ``transpose``): the reference's ``expr_a``."""
    for i, q in enumerate(qs):
        x = mode_product(x, q, i, transpose)
    return x


def kron_gram(a: mx.array, axis: int, diagonal: bool) -> mx.array:
    """``A_(i) A_(i)^T`` of the mode-``axis`` unfolding (its diagonal for a diagonal factor): ``expr_gr``."""
    if diagonal:
        return a * a if a.ndim == 1 else mx.sum(a * a, axis=[j for j in range(a.ndim) if j != axis])
    u = mx.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    return gram(u)


def kron_update_factors(qs: list[mx.array], v: mx.array, g: mx.array, step: float, eps: float) -> list:
    """One PSGD step on the Kronecker factors from the pair (noise ``v``, gradient ``g``)."""
    a = kron_apply(qs, g) if g.ndim else qs[0] * g
    order = g.ndim
    conj_b = mx.transpose(v, list(range(1, order)) + [0]) if order else v
    for i, q in enumerate(qs):
        conj_b = conj_b / q if q.ndim < 2 else _solve_triangular_right(conj_b, q)
        if i < order - 1:
            conj_b = mx.swapaxes(conj_b, i, order - 1)
    out = []
    for i, q in enumerate(qs):
        term1 = kron_gram(a, i, q.ndim < 2) if order else a * a
        term2 = kron_gram(conj_b, i, q.ndim < 2) if order else conj_b * conj_b
        tmp = (term1 - term2) * step
        if q.ndim < 2:
            tmp = tmp * q / (mx.max(mx.abs(term1 + term2)) + eps)
        else:
            tmp = (mx.triu(tmp) / (norm_lower_bound(term1 + term2) + eps)) @ q
        out.append(q - tmp)
    return out


@register
class Kron(Optimizer):
    r"""Kron: preconditioned SGD (PSGD) with Kronecker-factored preconditioners.

    The preconditioner is :math:`P = Q^\top Q` with :math:`Q = Q_1 \otimes \cdots \otimes Q_k`,
    each factor upper-triangular (or diagonal for 1-d tensors, dimensions of size 1 or above
    ``max_size_triangular``, tensors with fewer than ``min_ndim_triangular`` dimensions, or per
    ``memory_save_mode``). With bias-corrected momentum :math:`\hat m_t` and, on update steps, a Gaussian
    probe :math:`v`:

    .. math::
        A = Q\,\hat m_t,\quad B = Q^{-\top} v,\quad
        Q_i \leftarrow Q_i - \frac{0.1}{\lVert A_{(i)}A_{(i)}^\top + B_{(i)}B_{(i)}^\top\rVert}
            \mathrm{triu}\big(A_{(i)}A_{(i)}^\top - B_{(i)}B_{(i)}^\top\big) Q_i \\
        u = Q^\top Q\,\hat m_t,\quad u \leftarrow u\,\min\!\big(1, 1.1/(\mathrm{rms}(u)+10^{-6})\big),\quad
        p \leftarrow p - \eta\,(u + \lambda p)

    Weight decay applies to tensors with ``ndim >= 2`` only: added to the preconditioned update (as above)
    with ``weight_decouple``, to the gradient otherwise. The factors are updated when a counter reaches
    ``1/pre_conditioner_update_probability`` (default: the reference's schedule, 1 for the first 500 steps
    then decaying to 0.03), and rebalanced with probability ``balance_prob`` on update steps. The
    preconditioner step size (0.1) and initial scale (1.0) are fixed, as in the reference.

    Randomness (the probe and the balance draw) comes from ``state["key"]``, seeded by ``seed``; the counter
    is ``state["update_counter"]``; both decisions are ``mx.where`` selects, so compiled == eager and a saved
    state resumes exactly. The triangular solve runs on the CPU stream (MLX has it only there), also inside
    ``mx.compile``.

    Paper: Xi-Lin Li, "Preconditioned Stochastic Gradient Descent", IEEE TNNLS 2018, arXiv:1512.04202; the
    Kron variant follows Evan Walters' PSGD Kron.

    Reference: ``pytorch_optimizer.Kron`` (parity-checked with the reference's random draws replaced by
    ours). Difference: the reference draws from torch's and NumPy's global generators; here the draws come
    from ``seed``.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Decay rate of the momentum EMA, in [0, 1). Default ``0.9``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0), for tensors with ``ndim >= 2``.
            Default ``0.0``.
        weight_decouple: Add ``weight_decay * p`` to the preconditioned update instead of to the gradient.
            Default ``True``.
        pre_conditioner_update_probability: Probability (a float in [0, 1] or a schedule of the step) of
            updating the preconditioner; ``None`` uses :func:`precondition_update_prob_schedule`. Default
            ``None``.
        max_size_triangular: Largest dimension that gets a triangular factor; larger ones are diagonal.
            Default ``8192``.
        min_ndim_triangular: Tensors with fewer dimensions get diagonal factors only. Default ``2``.
        memory_save_mode: Which factors are diagonal: ``None`` (none beyond the rules above), ``'one_diag'``
            (the largest dimension), ``'smart_one_diag'`` (the largest dimension when it is strictly the
            largest) or ``'all_diag'``. Default ``None``.
        momentum_into_precondition_update: Update the preconditioner from the bias-corrected momentum
            instead of the raw gradient. Default ``True``.
        mu_dtype: ``mx.Dtype`` of the momentum buffer; ``None`` follows ``state_dtype``. Default ``None``.
        precondition_dtype: ``mx.Dtype`` of the factors and the preconditioning math; ``None`` follows
            ``state_dtype``. Default ``mx.float32``.
        balance_prob: Probability of rebalancing the factors' norms on an update step (tensors with
            ``ndim >= 2``). Default ``0.01``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed: Seed of the random key for the probes and the balance draws (keyword-only). Default ``0``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "kron"
    family = "preconditioned"
    reference = "pytorch_optimizer.Kron"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        pre_conditioner_update_probability: Tunable | None = None,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        memory_save_mode: str | None = None,
        momentum_into_precondition_update: bool = True,
        mu_dtype: mx.Dtype | None = None,
        precondition_dtype: mx.Dtype | None = mx.float32,
        balance_prob: Tunable = 0.01,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        prob = pre_conditioner_update_probability
        self._hyper("pre_conditioner_update_probability", precondition_update_prob_schedule() if prob is None else prob)
        self._hyper("balance_prob", balance_prob)
        self._choice("memory_save_mode", memory_save_mode, (None, "one_diag", "smart_one_diag", "all_diag"))
        for name, dt in (("mu_dtype", mu_dtype), ("precondition_dtype", precondition_dtype)):
            if dt is not None and not isinstance(dt, mx.Dtype):
                raise ValueError(f"Kron: {name}={dt!r} must be an mx.Dtype or None")
        self.weight_decouple = weight_decouple
        self.max_size_triangular = int(max_size_triangular)
        self.min_ndim_triangular = int(min_ndim_triangular)
        self.memory_save_mode = memory_save_mode
        self.momentum_into_precondition_update = momentum_into_precondition_update
        self.mu_dtype = mu_dtype
        self.precondition_dtype = precondition_dtype
        self.globals["key"] = mx.random.key(seed)
        self.globals["update_counter"] = mx.array(0.0, mx.float32)

    def _structure(self, shape):
        return kron_structure(shape, self.max_size_triangular, self.min_ndim_triangular, self.memory_save_mode)

    def _pdtype(self, parameter: mx.array) -> mx.Dtype:
        return self.precondition_dtype or self.state_dtype or self.compute_dtype(parameter)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self._pdtype(parameter)
        state["momentum_buffer"] = (
            self.zeros(parameter) if self.mu_dtype is None else mx.zeros(parameter.shape, self.mu_dtype)
        )
        shape = parameter.shape
        diag, _ = self._structure(shape)
        scale = math.pow(KRON_INIT_SCALE, 1.0 / len(shape)) if shape else KRON_INIT_SCALE
        if not shape:
            state["Q_0"] = mx.full((), scale, dtype)
        for i, (size, is_diag) in enumerate(zip(shape, diag)):
            state[f"Q_{i}"] = scale * (mx.ones((size,), dtype) if is_diag else identity(size, dtype))

    def step_scalars(self, hp) -> None:
        prob = hp.pre_conditioner_update_probability
        counter = self.globals["update_counter"] + 1
        hp.do_update = (prob > 0) & (counter >= 1.0 / prob)
        self.globals["update_counter"] = mx.where(hp.do_update, 0.0, counter)
        keys = mx.random.split(self.globals["key"], 3)
        self.globals["key"] = keys[0]
        hp.balance = (mx.random.uniform(key=keys[1]) < hp.balance_prob) & hp.do_update
        hp.noise_key = keys[2]
        hp.bias_correction1 = hp.bias_correction("momentum")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if p.ndim >= 2 and not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        buf = state["momentum_buffer"] * hp.momentum + g * hp.one_minus_momentum
        state["momentum_buffer"] = buf.astype(state["momentum_buffer"].dtype)
        pdtype = state["Q_0"].dtype
        m_hat = (state["momentum_buffer"] / hp.bias_correction1).astype(pdtype)

        n = max(len(p.shape), 1)
        qs = [state[f"Q_{i}"] for i in range(n)]
        if g.ndim > 1:
            qs = [mx.where(hp.balance, b, q) for b, q in zip(kron_balance(qs), qs)]
        key, hp.noise_key = mx.random.split(hp.noise_key)
        v = mx.random.normal(m_hat.shape, dtype=pdtype, key=key)
        probe_g = m_hat if self.momentum_into_precondition_update else g.astype(pdtype)
        updated = kron_update_factors(qs, v, probe_g, KRON_PRECONDITION_LR, KRON_EPS)
        qs = [mx.where(hp.do_update, u, q) for u, q in zip(updated, qs)]
        for i, q in enumerate(qs):
            state[f"Q_{i}"] = q

        u = kron_apply(qs, kron_apply(qs, m_hat), transpose=True) if p.ndim else qs[0] * qs[0] * m_hat
        u = u.astype(p.dtype)
        u = u * mx.minimum(1.1 / (mx.sqrt(mx.mean(mx.square(u))) + 1e-6), 1.0)
        if p.ndim >= 2 and self.weight_decouple and self.decays():
            u = u + hp.weight_decay * p
        return p - hp.lr * u
