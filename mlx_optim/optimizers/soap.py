"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import eigenvectors, gram, identity, merge_small_dims
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register


@register
class SOAP(HostRefresh, Optimizer):
    r"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner, refreshed periodically.

    Each (optionally merged) dimension :math:`i` keeps :math:`GG_i = \mathrm{EMA}_{\beta_s}(G_{(i)}
    G_{(i)}^\top)` and an orthogonal basis :math:`Q_i`. With :math:`\hat x = x \times_i Q_i^\top` (rotate into
    the basis) and the inverse rotation :math:`\check x`:

    .. math::
        m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        v_t = \mathrm{lerp}(v_{t-1}, \hat g_t^2, 1-\beta_2),\quad
        p \leftarrow p - \eta \frac{\sqrt{1-\beta_2^{s}}}{1-\beta_1^{s}}
            \Big(\frac{\hat m_t}{\sqrt{v_t}+\epsilon}\Big)^{\vee} - \eta\lambda p

    with :math:`s = t-1`: as in the reference, the first step only initialises :math:`GG_i` and
    :math:`Q_i = \mathrm{eigh}(GG_i)` (eigenvectors by descending eigenvalue) and leaves the parameters
    alone. Every ``precondition_frequency`` steps the basis is refreshed by one power-iteration + QR step
    (:math:`Q_i \leftarrow \mathrm{qr}(GG_i Q_i)` with columns sorted by the estimated eigenvalue, which also
    permutes :math:`v`). Weight decay is always decoupled. ``eigh``/``qr`` run on the CPU stream (MLX has
    them only there). ``apply_gradients`` reads the step counter on the host and computes the first-step eigh
    and the QR refresh only on their steps; inside your own ``mx.compile`` (the counter is a tracer there) they
    are computed every step and selected with ``mx.where`` (the same numbers; cost: one eigh and one QR per
    factor per step).
    Where an eigenspace is degenerate (``precondition_1d`` on the first step: :math:`g g^\top` has rank 1)
    the basis inside it is whatever LAPACK returns, on either side; see the parity row.

    Paper: Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025, arXiv:2409.11321.

    Reference: ``pytorch_optimizer.SOAP`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``3e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.95, 0.95)``.
        shampoo_beta: Decay rate :math:`\beta_s` of the preconditioner statistics (>= 0); ``None`` uses
            ``beta2``. Default ``None``.
        weight_decay: Decoupled weight decay coefficient :math:`\lambda` (>= 0). Default ``1e-2``.
        precondition_frequency: Steps between basis refreshes (> 0). Default ``10``.
        max_precondition_dim: Largest preconditioned dimension (> 0); larger ones keep the identity.
            Default ``10000``.
        merge_dims: Merge small dimensions (up to ``max_precondition_dim``) before preconditioning.
            Default ``False``.
        precondition_1d: Precondition vectors too (otherwise they take plain Adam steps). Default ``False``.
        correct_bias: Apply Adam's bias corrections to the step size. Default ``True``.
        normalize_gradient: Divide the rotated-back direction by its RMS. Default ``False``.
        data_format: Layout of 4-D tensors for ``merge_dims``: ``'channels_first'`` (NCHW) or
            ``'channels_last'`` (NHWC). Default ``'channels_first'``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "soap"
    family = "preconditioned"
    reference = "pytorch_optimizer.SOAP"

    def __init__(
        self,
        learning_rate: Tunable = 3e-3,
        betas: Sequence[float] = (0.95, 0.95),
        shampoo_beta: Tunable | None = None,
        weight_decay: Tunable = 1e-2,
        precondition_frequency: int = 10,
        max_precondition_dim: int = 10000,
        merge_dims: bool = False,
        precondition_1d: bool = False,
        correct_bias: bool = True,
        normalize_gradient: bool = False,
        data_format: str = "channels_first",
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("shampoo_beta", betas[1] if shampoo_beta is None else shampoo_beta, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("precondition_frequency", precondition_frequency, 0, None, "()")
        self._check("max_precondition_dim", max_precondition_dim, 0, None, "()")
        self._choice("data_format", data_format, ("channels_first", "channels_last"))
        self._hyper("eps", eps, 0.0)
        self.precondition_frequency = int(precondition_frequency)
        self.max_precondition_dim = int(max_precondition_dim)
        self.merge_dims = merge_dims
        self.precondition_1d = precondition_1d
        self.correct_bias = correct_bias
        self.normalize_gradient = normalize_gradient
        self.data_format = data_format

    # structure (from the shape, at trace time)
    def _permute(self, shape) -> bool:
        return self.data_format == "channels_last" and len(shape) == 4

    def _merged(self, x: mx.array) -> mx.array:
        if self._permute(x.shape):
            x = mx.transpose(x, (0, 3, 1, 2))
        return x.reshape(merge_small_dims(x.shape, self.max_precondition_dim))

    def _unmerged(self, x: mx.array, shape) -> mx.array:
        if self._permute(shape):
            n, h, w, c = shape
            return mx.transpose(x.reshape(n, c, h, w), (0, 2, 3, 1))
        return x.reshape(shape)

    def _factor_dims(self, shape) -> list[int | None]:
        """Size of each factor's matrix (``None``: that dimension is not preconditioned)."""
        if len(shape) == 1:
            ok = self.precondition_1d and shape[0] <= self.max_precondition_dim
            return [shape[0] if ok else None]
        if self.merge_dims:
            shape = merge_small_dims(self._merged_shape(shape), self.max_precondition_dim)
        return [d if d <= self.max_precondition_dim else None for d in shape]

    def _merged_shape(self, shape):
        return (shape[0], shape[3], shape[1], shape[2]) if self._permute(shape) else tuple(shape)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        for i, d in enumerate(self._factor_dims(parameter.shape)):
            if d is not None:
                state[f"GG_{i}"] = mx.zeros((d, d), dtype=dtype)
                state[f"Q_{i}"] = identity(d, dtype)

    def step_scalars(self, hp) -> None:
        s = mx.maximum(hp.step - 1, 1)
        hp.step_size = hp.lr
        if self.correct_bias:
            hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2", s)) / hp.bias_correction("beta1", s)
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        return {"first": step == 1, "refresh": (step > 1) & every(step - 1, self.precondition_frequency)}

    def _project(self, x: mx.array, qs: list, forward: bool) -> mx.array:
        shape = x.shape
        if self.merge_dims:
            x = self._merged(x)
        for q in qs:
            if q is None:
                x = mx.moveaxis(x, 0, -1)
            else:
                x = mx.tensordot(x, q, axes=([0], [0 if forward else 1]))
        if self.merge_dims:
            x = self._unmerged(x, shape)
        return x

    @staticmethod
    def _initial_basis(gg: mx.array) -> mx.array:
        """The first step's basis: eigenvectors of ``gg`` by descending eigenvalue (float32, on the CPU stream)."""
        g32 = gg.astype(mx.float32)
        q = mx.flip(eigenvectors(g32 + 1e-30 * identity(g32.shape[0], mx.float32)), axis=1).astype(gg.dtype)
        # stored dense: a flipped view (negative strides) is copied by every matmul that reads it (six per step)
        return mx.contiguous(q)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        n = len(self._factor_dims(p.shape))
        qs = [state.get(f"Q_{i}") for i in range(n)]

        # Adam in the rotated basis (skipped on the first step, like the reference)
        first = self.host_flag("first")  # None: unknown on the host, selected with hp.first
        exp_avg_sq = state["exp_avg_sq"]
        if not first:
            g_hat = self._project(g, qs, True)
            exp_avg = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
            new_sq = F.lerp(exp_avg_sq, mx.square(g_hat), hp.one_minus_beta2)
            direction = self._project(self._project(exp_avg, qs, True) / (mx.sqrt(new_sq) + hp.eps), qs, False)
            if self.normalize_gradient:
                direction = direction / (mx.sqrt(mx.mean(mx.square(direction))) + hp.eps)
            p_new = p - hp.step_size * direction
            p_new, _ = self.apply_weight_decay(p_new, g, decouple=True)
            if first is None:
                p_new = mx.where(hp.first, p, p_new)
                exp_avg = mx.where(hp.first, state["exp_avg"], exp_avg)
                new_sq = mx.where(hp.first, exp_avg_sq, new_sq)
            p, state["exp_avg"], exp_avg_sq = p_new, exp_avg, new_sq

        # statistics and basis
        gm = self._merged(g) if (self.merge_dims and g.ndim > 1) else g
        ggs = []
        for i in range(n):
            if qs[i] is None:
                ggs.append(None)
                continue
            u = mx.moveaxis(gm, i, 0).reshape(gm.shape[i], -1)
            ggs.append(F.lerp(state[f"GG_{i}"], gram(u), 1 - hp.shampoo_beta))
        refresh = self.host_flag("refresh")
        new_qs, permuted_sq = qs, exp_avg_sq
        if refresh is not False:
            new_qs, permuted_sq = soap_refresh_basis(
                ggs, qs, exp_avg_sq, self._merged if self.merge_dims else None, self._unmerged
            )
        for i in range(n):
            if qs[i] is None:
                continue
            state[f"GG_{i}"] = ggs[i]
            if first is None:  # array logic: both bases every step, selected
                q_init = self._initial_basis(ggs[i])
                state[f"Q_{i}"] = mx.where(hp.first, q_init, mx.where(hp.refresh, new_qs[i], qs[i]))
            elif first:
                state[f"Q_{i}"] = self._initial_basis(ggs[i])
            else:
                state[f"Q_{i}"] = new_qs[i]
        if refresh is None:
            permuted_sq = mx.where(hp.refresh, permuted_sq, exp_avg_sq)
        state["exp_avg_sq"] = permuted_sq
        return p


def soap_refresh_basis(ggs: list, qs: list, exp_avg_sq: mx.array, merge: Callable | None, unmerge: Callable):
    """One power-iteration + QR step per factor; returns the new bases and ``exp_avg_sq`` permuted to match.

    pytorch_optimizer's ``get_orthogonal_matrix_qr``: columns are sorted by the estimated eigenvalue
    ``diag(Q^T GG Q)`` (descending) and ``exp_avg_sq`` is permuted along the same (merged) axis.
    """
    shape = exp_avg_sq.shape
    v = exp_avg_sq if merge is None else merge(exp_avg_sq)
    out = []
    for i, (m, o) in enumerate(zip(ggs, qs)):
        if m is None:
            out.append(None)
            continue
        mp = m @ o
        est = mx.sum(o * mp, axis=0)
        order = mx.argsort(-est)
        v = mx.take(v, order, axis=i)
        q, _ = mx.linalg.qr(mx.take(mp, order, axis=1).astype(mx.float32), stream=mx.cpu)
        out.append(q.astype(mp.dtype))
    return out, (v if merge is None else unmerge(v, shape))
