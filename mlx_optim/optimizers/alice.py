"""Alice (Gong et al., 2025): Adam in a low-rank eigenbasis with full-rank compensation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim import linalg
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import as_matrix, gram
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register


def canonical_columns(x: mx.array) -> mx.array:
    """Flip each column of ``x`` so that its largest-magnitude entry is positive."""
    idx = mx.argmax(mx.abs(x), axis=0)
    sign = F.sign(mx.take_along_axis(x, idx[None, :], axis=0))[0]
    return x * mx.where(sign == 0, 1.0, sign)


def complement_columns(a: mx.array, cols: mx.array) -> mx.array:
    r"""Columns ``cols`` (indices in ``[r, m)``) of LAPACK's *complete* QR factor of the ``(m, r)`` matrix ``a``.

    This is ``torch.linalg.qr(a, mode="complete")[0][:, cols]`` without a sequential Householder
    loop. LAPACK's :math:`Q = H_1 \cdots H_r = I - V T V^\top` (``V`` unit lower trapezoidal,
    ``T`` upper triangular); its first ``r`` columns are the reduced factor :math:`Q_1`
    (``mx.linalg.qr``, the same LAPACK routine), so :math:`E_1 - Q_1 = V W` with
    :math:`W = T V_1^\top` upper triangular: an LU factorization without pivoting of the top block
    gives :math:`V_1, W`, a triangular solve :math:`V_2`, and then
    :math:`Q e_j = e_j + (Q_1 - E_1) V_1^{-\top} V_2^\top e_{j-r}` for :math:`j \ge r`.
    The LU is stable because ``dlarfg``'s sign choice gives pivots :math:`\tau_j \in [1, 2]` and
    :math:`|V_{ij}| \le 1`; the rows are scaled by :math:`0.99^i` so that ``mx.linalg.lu``'s
    partial pivoting keeps the diagonal (and undone after). When the rows below ``r`` of ``a``
    are all zero (the first step, which starts from a zero basis) the reflectors do not touch
    them and the columns are exactly :math:`e_j`.
    """
    m, r = a.shape
    q1, _ = mx.linalg.qr(a, stream=mx.cpu)
    top, bottom = q1[:r], q1[r:]
    s = mx.power(0.99, mx.arange(r, dtype=mx.float32))
    _, lower, upper = mx.linalg.lu(s[:, None] * (mx.eye(r) - top), stream=mx.cpu)
    v1 = lower * (s[None, :] / s[:, None])
    w = upper / s[:, None]
    w = w + mx.diag((mx.diag(w) == 0).astype(w.dtype))  # a zero pivot (tau = 0) only when the bottom is zero: see below
    v2 = -mx.linalg.solve_triangular(w.T, bottom.T, upper=False, stream=mx.cpu).T
    z = mx.linalg.solve_triangular(v1.T, mx.take(v2, cols - r, axis=0).T, upper=True, stream=mx.cpu)
    onehot = (mx.arange(m)[:, None] == cols[None, :]).astype(a.dtype)
    out = onehot + (q1 - mx.eye(m, r)) @ z
    return mx.where(mx.all(bottom == 0), onehot, out)


def subspace_iteration(a: mx.array, u: mx.array) -> tuple[mx.array, mx.array]:
    """One step of subspace iteration on the symmetric ``a`` from the basis ``u``.

    Returns the Ritz values (ascending) and the Ritz vectors ``u' W`` (``u'`` the reduced QR
    factor of ``a u``, ``W`` the eigenvectors of ``u'^T a u'``) with canonical column signs
    (:func:`canonical_columns`). For ``u = 0`` (the first step), ``u'`` is the first columns of
    the identity, as in LAPACK.
    """
    u, _ = mx.linalg.qr(a @ u, stream=mx.cpu)
    vals, w = linalg.eigh(u.T @ a @ u)
    return vals, canonical_columns(u @ w)


def alice_switch(q: mx.array, u_prev: mx.array, rank: int, leading: int, key: mx.array | None) -> mx.array:
    """Alice's new basis: the ``leading`` leading Ritz vectors and ``rank - leading`` random complement columns.

    The candidates for the random columns are the complete-QR complement of the Ritz vectors
    (``m - rank`` columns) followed, when those are fewer than ``rank - leading``, by the
    non-leading Ritz vectors in descending order; ``key`` draws a permutation of the candidates
    (the reference's ``torch.randperm``) whose first ``rank - leading`` entries are taken.
    """
    vals, vecs = subspace_iteration(q.astype(mx.float32), u_prev.astype(mx.float32))
    order = mx.argsort(-vals)
    lead = mx.take(vecs, order[:leading], axis=1)
    if rank == leading:
        return lead
    m, k = q.shape[0], rank - leading
    n_comp = m - rank
    n_cand = n_comp + (rank - leading if n_comp < k else 0)
    pick = mx.random.permutation(n_cand, key=key)[:k].astype(mx.int32)
    cols = complement_columns(vecs, rank + mx.minimum(pick, max(n_comp - 1, 0))) if n_comp else None
    if n_comp < k:
        rest = mx.take(vecs, order[leading:], axis=1)
        extra = mx.take(rest, mx.maximum(pick - n_comp, 0), axis=1)
        cols = extra if cols is None else mx.where((pick < n_comp)[None, :], cols, extra)
    return mx.concatenate([lead, cols], axis=1)


def alice_compensation(g, u, sigma, p, phi, gamma, decay, rank):
    r"""Alice's full-rank compensation ``(c, p, phi)`` for the matrix gradient ``g`` and basis ``u``.

    .. math::
        p_t = \max\big(\mathrm{lerp}(p_{t-1}, \textstyle\sum_i G_{ij}^2 - \sum_i \Sigma_{ij}^2, 1-\beta),
        10^{-8}\big),\quad
        C_t = \sqrt{m - r}\,(G - U\Sigma) / \sqrt{p_t} \\
        C_t \leftarrow C_t \cdot \gamma / \max(\lVert C_t\rVert / \phi_{t-1}, \gamma)\ (\text{if } \phi_{t-1} > 0),\quad
        \phi_t = \lVert C_t \rVert
    """
    m = g.shape[0]
    p = mx.maximum(F.torch_lerp(p, mx.sum(mx.square(g), axis=0) - mx.sum(mx.square(sigma), axis=0), 1 - decay), 1e-8)
    c = math.sqrt(m - rank) * (g - u @ sigma) / mx.sqrt(p)
    grown = phi > 0
    limit = gamma / mx.maximum(F.norm(c) / mx.where(grown, phi, 1.0), gamma)
    c = c * mx.where(grown, limit, 1.0)
    return c, p, F.norm(c)


@register
class Alice(HostRefresh, Optimizer):
    r"""Alice: Adam in a tracked low-rank eigenbasis of each gradient matrix, with a full-rank compensation term.

    Adam on the projected gradient :math:`\Sigma_t = U^\top G_t` of each (matrix-viewed)
    parameter, plus a compensation for the part of the gradient outside the subspace:

    .. math::
        \text{refresh: } U \leftarrow \mathrm{switch}\big(\beta_3 U Q U^\top + (1-\beta_3) G_t G_t^\top,\ U\big) \\
        Q_t = \mathrm{lerp}(Q_{t-1}, \Sigma_t\Sigma_t^\top, 1-\beta_3),\quad
        m_t = \mathrm{lerp}(m_{t-1}, \Sigma_t, 1-\beta_1),\quad v_t = \mathrm{lerp}(v_{t-1}, \Sigma_t^2, 1-\beta_2) \\
        W_t = W_{t-1} - \eta\,\alpha\,\big(U \tfrac{m_t}{\sqrt{v_t}+\epsilon} + \alpha_c C_t\big)

    with the compensation :math:`C_t` of :func:`alice_compensation` and ``switch`` of
    :func:`alice_switch` (one subspace-iteration step, ``leading_basis`` leading eigenvectors and
    random complement columns). ``betas[2] = 0`` gives Alice-0. Weight decay is applied first
    (decoupled, ``fixed_decay``, or L2 into the gradient), as in the reference. The matrix view is
    ``(shape[0], -1)``; 0-D and 1-D parameters are ``(n, 1)`` columns. The rank is ``min(rank, shape[0])``.

    Paper: "Towards Efficient Optimizer Design for LLM via Structured Fisher Approximation with a Low-Rank
    Extension" (Gong et al., 2025). Reference: ``pytorch_optimizer.Alice``, same keywords and defaults; ``seed``
    is added (the random complement columns, the reference's ``torch.randperm``, are drawn from a key kept in
    the state). Reference quirks kept: no bias correction; the compensation's residual-energy EMA (per column)
    uses :math:`\beta_1`; :math:`Q`, :math:`m`, :math:`v` are not rotated into the new basis on a refresh;
    on the first step the subspace iteration starts from :math:`U = 0`, so its QR factor is the
    identity's first columns and the first basis comes from the leading ``r x r`` block of
    :math:`G G^\top`. Every parameter is projected, 1-D ones as ``(n, 1)`` columns: their
    first-step block :math:`g g^\top` has rank 1, so with ``min(rank, n) >= 3`` (the default) its
    zero eigenvalue is repeated and the eigenvectors that enter :math:`U` are implementation-defined
    in the reference too (any two LAPACK builds give different trajectories for such leaves).
    Difference: the refresh is "first step or ``step % update_interval == 0``" on the global step (the
    reference uses the parameter's first step); ``apply_gradients`` reads the step on the host and computes the
    switch only on refresh steps (inside your own ``mx.compile``: every step, selected with ``mx.where``). The
    complete QR factor (:func:`complement_columns`), the
    column sign convention (:func:`canonical_columns`) and the random draw (:func:`alice_switch`) reproduce
    LAPACK's and torch's.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``0.02``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: decay rates of the momentum and the second moment (each in
            [0, 1)) and of the subspace statistic :math:`Q` (in [0, 1]; 0 gives Alice-0). Default
            ``(0.9, 0.9, 0.999)``.
        alpha: Update scale :math:`\alpha` in [0, 1). Default ``0.3``.
        alpha_c: Scale :math:`\alpha_c` in [0, 1) of the compensation term. Default ``0.4``.
        update_interval (int): Refresh the basis every this many steps (> 0). Default ``200``.
        rank (int): Dimension :math:`r` (> 0) of the subspace. Default ``256``.
        gamma: Maximum growth factor :math:`\gamma` (> 0) of the compensation's norm from one step to the next.
            Default ``1.01``.
        leading_basis (int): Number (> 0, <= ``rank``) of leading eigenvectors kept on a refresh; the rest are
            random complement columns. Default ``40``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed (int): Seed of the key for the random complement columns. Default ``0``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "alice"
    family = "memory-efficient"
    reference = "pytorch_optimizer.Alice"

    def __init__(
        self,
        learning_rate: Tunable = 0.02,
        betas: Sequence[float] = (0.9, 0.9, 0.999),
        alpha: Tunable = 0.3,
        alpha_c: Tunable = 0.4,
        update_interval: int = 200,
        rank: int = 256,
        gamma: Tunable = 1.01,
        leading_basis: int = 40,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"Alice: betas={betas!r} must have 3 values")
        self._hyper("beta1", betas[0], 0.0, 1.0, "[)")
        self._hyper("beta2", betas[1], 0.0, 1.0, "[)")
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("alpha_c", alpha_c, 0.0, 1.0, "[)")
        self._check("update_interval", update_interval, 0, None, "()")
        self._check("rank", rank, 0, None, "()")
        self._hyper("gamma", gamma, 0.0, None, "()")
        self._check("leading_basis", leading_basis, 0, None, "()")
        self._check("rank - leading_basis", rank - leading_basis, 0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.update_interval, self.rank, self.leading_basis = int(update_interval), int(rank), int(leading_basis)
        self.globals["key"] = mx.random.key(seed)

    def ranks(self, shape: Sequence[int]) -> tuple[int, int]:
        """``(rank, leading_basis)`` for a matrix of ``shape``."""
        rank = min(self.rank, shape[0])
        return rank, min(self.leading_basis, rank)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        m, n = as_matrix(parameter).shape
        rank, leading = self.ranks((m, n))
        state["U"] = self.zeros(parameter, (m, rank))
        state["Q"] = self.zeros(parameter, (rank, rank))
        state["m"] = self.zeros(parameter, (rank, n))
        state["v"] = self.zeros(parameter, (rank, n))
        state["p"] = self.zeros(parameter, (n,))
        state["phi"] = mx.zeros((), mx.float32)
        if rank > leading:
            self.globals["key"], state["key"] = mx.random.split(self.globals["key"])

    def step_scalars(self, hp) -> None:
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        return {"refresh": (step == 1) | every(step, self.update_interval)}

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        grad = as_matrix(g)
        u, q = state["U"], state["Q"]
        rank, leading = self.ranks(grad.shape)
        key = None
        if "key" in state:
            state["key"], key = mx.random.split(state["key"])
        q_t = hp.beta3 * (u @ q @ u.T) + hp.one_minus_beta3 * gram(grad)
        # stored dense (the switch may return a transposed layout, which each matmul reading U would copy)
        u = self.refreshed(
            "refresh", lambda: mx.contiguous(alice_switch(q_t, u, rank, leading, key).astype(u.dtype)), u
        )
        state["U"] = u
        sigma = u.T @ grad
        state["Q"] = F.torch_lerp(q, sigma @ sigma.T, hp.one_minus_beta3)
        m = state["m"] = F.torch_lerp(state["m"], sigma, hp.one_minus_beta1)
        v = state["v"] = F.torch_lerp(state["v"], mx.square(sigma), hp.one_minus_beta2)
        c, state["p"], state["phi"] = alice_compensation(
            grad, u, sigma, state["p"], state["phi"], hp.gamma, hp.beta1, rank
        )
        update = u @ (m / (mx.sqrt(v) + hp.eps)) + hp.alpha_c * c
        return p - hp.lr * hp.alpha * update.reshape(p.shape)
