"""DASH (local, layer-wise): Shampoo with batched blocks, Newton-DB inverse roots and Adam grafting."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import mlx.core as mx
import numpy as np

from mlx_optim import functional as F
from mlx_optim import linalg
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register

_TINY32 = float(np.finfo(np.float32).tiny)


_TINY_BF16 = 2.0**-126  # torch.finfo(torch.bfloat16).tiny


def dash_layout(shape: Sequence[int]) -> tuple[tuple[int, int], bool]:
    """The reference's matrix view of a parameter: ``((rows, cols), one_sided)``."""
    squeezed = [d for d in shape if d != 1]
    numel = int(np.prod(shape)) if len(shape) else 1
    if len(squeezed) > 1:
        return (squeezed[0], numel // squeezed[0]), False
    return (numel, 1), True


def dash_partition(rows: int, cols: int, block_size: int) -> list[tuple[int, int, int, int, int, int]]:
    """``DASH.partition``: up to four regions ``(row, col, rows, cols, height, width)`` of equal-sized blocks."""
    out = []
    row_start = 0
    for row_size in (rows // block_size * block_size, rows % block_size):
        col_start = 0
        for col_size in (cols // block_size * block_size, cols % block_size):
            if row_size and col_size:
                out.append(
                    (row_start, col_start, row_size, col_size, min(row_size, block_size), min(col_size, block_size))
                )
            col_start += col_size
        row_start += row_size
    return out


def to_blocks(region: mx.array, height: int, width: int) -> mx.array:
    """``(rows, cols)`` region -> ``(batch, height, width)`` blocks in row-major block order."""
    rows, cols = region.shape
    blocks = region.reshape(rows // height, height, cols // width, width).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, height, width)


def from_blocks(blocks: mx.array, rows: int, cols: int) -> mx.array:
    """Inverse of :func:`to_blocks`."""
    _, height, width = blocks.shape
    return blocks.reshape(rows // height, cols // width, height, width).transpose(0, 2, 1, 3).reshape(rows, cols)


def _eye_like(m: mx.array) -> mx.array:
    return mx.eye(m.shape[-1], dtype=m.dtype)


def power_iteration_start(batch: int, size: int, num_vectors: int) -> mx.array:
    """Fixed bfloat16 start vectors for :func:`batched_power_iteration` (the reference draws ``torch.randn``)."""
    return mx.random.normal((batch, size, num_vectors), key=mx.random.key(0)).astype(mx.bfloat16)


def _bf16_norm(x: mx.array, axis) -> mx.array:
    """torch's ``vector_norm`` of a bfloat16 tensor: float32 accumulation, bfloat16 result."""
    return mx.sqrt(mx.sum(mx.square(x.astype(mx.float32)), axis=axis, keepdims=True)).astype(mx.bfloat16)


def _bf16_matmul(a: mx.array, b: mx.array) -> mx.array:
    """torch's CPU bfloat16 ``bmm``: float32 accumulation, bfloat16 result."""
    return (a.astype(mx.float32) @ b.astype(mx.float32)).astype(mx.bfloat16)


def batched_power_iteration(matrix: mx.array, num_iters: int, num_vectors: int) -> mx.array:
    """Largest Rayleigh quotient of each bfloat16 PSD matrix, ``(batch, 1, 1)`` (pytorch_optimizer's
    ``batched_power_iteration`` from fixed start vectors)."""
    batch, size, _ = matrix.shape
    v = power_iteration_start(batch, size, num_vectors)
    v = v / mx.maximum(_bf16_norm(v, 1), _TINY_BF16)
    for _ in range(num_iters):
        product = _bf16_matmul(matrix, v)
        v = product / mx.maximum(_bf16_norm(product, 1), _TINY_BF16)
    product = _bf16_matmul(matrix, v)
    quotient = mx.sum((v * product).astype(mx.float32), axis=1).astype(mx.bfloat16)
    return mx.max(quotient, axis=1).reshape(-1, 1, 1)


def matrix_scale(matrix: mx.array, power: bool, num_iters: int, num_vectors: int) -> mx.array:
    """``DASH.scale_matrix``: an upper bound of each matrix's spectral radius, estimated in bfloat16."""
    m = matrix.astype(mx.bfloat16)
    if not power:
        return _bf16_norm(m.reshape(m.shape[0], -1), 1).reshape(-1, 1, 1).astype(matrix.dtype)
    m = (m.astype(mx.float32) + 1e-6 * mx.eye(m.shape[-1])).astype(mx.bfloat16)  # torch: bf16 + float scalar
    return batched_power_iteration(m, num_iters, num_vectors).astype(matrix.dtype) * 2.0


def newton_db_root(matrix: mx.array, scale: mx.array, num_iters: int, inverse: bool) -> mx.array:
    r"""Batched :math:`A^{\pm 1/2}` by coupled Newton(-Denman-Beavers / Schulz) iterations on :math:`A / s`
    (pytorch_optimizer's ``compute_power_newton_db``, same multiplication order)."""
    eye = _eye_like(matrix)

    def correction(x):
        return x * -0.5 + 1.5 * eye

    y = matrix / scale
    t = correction(y)
    z = t
    if num_iters > 1 or not inverse:
        y = y @ t
    for _ in range(1, num_iters - 1):
        t = correction(z @ y)
        y = y @ t
        z = t @ z
    if num_iters > 1:
        t = correction(z @ y)
        result = t @ z if inverse else y @ t
    else:
        result = z if inverse else y
    return result / mx.sqrt(scale) if inverse else result * mx.sqrt(scale)


def eigh_inverse_root(matrix: mx.array, root: int, matrix_eps: float) -> mx.array:
    """``matrix ** (-1/root)`` by ``eigh`` with Distributed Shampoo's spectral shift (on the CPU stream)."""
    values, vectors = linalg.eigh(matrix)
    values = values + (matrix_eps - mx.minimum(mx.min(values, axis=-1, keepdims=True), 0.0))
    values = mx.power(values, -1.0 / root)
    return (vectors * values[..., None, :]) @ mx.swapaxes(vectors, -1, -2)


@register
class DASH(HostRefresh, Optimizer):
    r"""DASH: block Shampoo with batched blocks, Newton-Denman-Beavers inverse roots and Adam grafting.

    Every block :math:`G` (of the matrix view of the parameter) updates its Shampoo statistics and an
    Adam graft; the preconditioned momentum is rescaled to the graft's norm, block by block:

    .. math::
        L \leftarrow \beta_2 L + (1-\beta_2) G G^\top,\quad R \leftarrow \beta_2 R + (1-\beta_2) G^\top G,\quad
        v \leftarrow \beta_g v + (1-\beta_g) G^2,\quad m \leftarrow \beta_1 m + (1-\beta_1) G,\\
        D = \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_g^t)} + \epsilon},\quad
        U = \tilde L^{-1/4} m \tilde R^{-1/4},\quad U \leftarrow U\,\frac{\lVert D\rVert}{\lVert U\rVert + 10^{-16}},\\
        b \leftarrow \mu b + U,\quad p \leftarrow p\,(1 - \eta\lambda) - \eta\,(U + \mu b)\ \text{(Nesterov)}

    with :math:`\tilde X = X + \epsilon_M I`, :math:`U = D` before ``start_preconditioning_step``, and
    one-sided :math:`\tilde L^{-1/2} m` for vectors and scalars. The matrix view is ``(first non-singleton
    dimension, rest)``, cut into blocks of at most ``block_size`` (edge blocks unpadded). The roots are
    refreshed on the first preconditioned step and every ``precondition_frequency`` steps, by Newton-DB
    iterations on :math:`\tilde X / s` (:math:`s` = twice a bfloat16 power-iteration estimate of the spectral
    radius, or the bfloat16 Frobenius norm), or by ``eigh``.

    Paper: https://arxiv.org/abs/2602.02016 (the local, layer-wise variant). Reference:
    ``pytorch_optimizer.DASH``, same keywords and defaults. Deviations: the power iteration starts from fixed
    pseudo-random vectors (:func:`power_iteration_start`) instead of a fresh ``torch.randn`` draw per refresh;
    inside your own ``mx.compile`` the roots are computed on every step and selected on refresh steps (MLX has no
    lazy conditional; ``apply_gradients`` reads the step on the host and computes them only on refresh steps). For
    bf16/fp16 parameters the update is computed in float32 and rounded once (the reference rounds the
    direction to the parameter dtype before ``p - lr * direction``).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the gradient EMA :math:`m` (0: no
            buffer) and of the Shampoo statistics. Default ``(0.9, 0.95)``.
        grafting_beta: Decay rate :math:`\beta_g` in [0, 1) of the Adam graft's second moment; ``None`` uses
            :math:`\beta_2`. Default ``None``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0). Default ``0.0``.
        block_size (int): Maximum block dimension (> 0). Default ``1024``.
        precondition_frequency (int): Refresh the inverse roots every this many steps (> 0). Default ``10``.
        start_preconditioning_step (int): First step (> 0) that uses Shampoo; earlier steps use the Adam graft.
            Default ``1``.
        inverse_root_method: Inverse-root solver: ``"newton_db"`` or ``"eigh"``. Default ``"newton_db"``.
        matrix_scaling: Newton-DB scaling :math:`s`: ``"power"`` (power iteration) or ``"frobenius"``. Default
            ``"power"``.
        newton_steps (int): Newton-DB iterations (> 0) per root. Default ``10``.
        power_iteration_steps (int): Power iterations (> 0) per spectral-radius estimate. Default ``10``.
        power_iteration_vectors (int): Parallel start vectors (> 0) of the power iteration. Default ``16``.
        momentum: Momentum :math:`\mu` in [0, 1) of the grafted update (0: no buffer). Default ``0.0``.
        nesterov: Nesterov momentum :math:`U + \mu b` instead of :math:`b`. Default ``True``.
        correct_bias: Bias-correct the Adam graft. Default ``True``.
        eps: :math:`\epsilon` (>= 0) added to the graft's denominator. Default ``1e-8``.
        matrix_eps (float): Diagonal regularization :math:`\epsilon_M` (> 0) of the inverse roots. Default
            ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "dash"
    family = "preconditioned"
    reference = "pytorch_optimizer.DASH"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.95),
        grafting_beta: Tunable | None = None,
        weight_decay: Tunable = 0.0,
        block_size: int = 1024,
        precondition_frequency: int = 10,
        start_preconditioning_step: int = 1,
        inverse_root_method: str = "newton_db",
        matrix_scaling: str = "power",
        newton_steps: int = 10,
        power_iteration_steps: int = 10,
        power_iteration_vectors: int = 16,
        momentum: Tunable = 0.0,
        nesterov: bool = True,
        correct_bias: bool = True,
        eps: Tunable = 1e-8,
        matrix_eps: float = 1e-10,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        if grafting_beta is not None:
            self._hyper("grafting_beta", grafting_beta, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("eps", eps, 0.0)
        self._check("matrix_eps", matrix_eps, 0.0, None, "()")
        self._choice("inverse_root_method", inverse_root_method, ("newton_db", "eigh"))
        self._choice("matrix_scaling", matrix_scaling, ("power", "frobenius"))
        for name, v in (
            ("block_size", block_size),
            ("precondition_frequency", precondition_frequency),
            ("start_preconditioning_step", start_preconditioning_step),
            ("newton_steps", newton_steps),
            ("power_iteration_steps", power_iteration_steps),
            ("power_iteration_vectors", power_iteration_vectors),
        ):
            self._check(name, v, 0, None, "()")
        # structural: the reference allocates exp_avg / momentum only for beta1 > 0 / momentum > 0
        self.use_exp_avg = float(tuple(betas)[0]) > 0.0
        self.use_momentum = float(momentum) > 0.0 if not callable(momentum) else True
        self.use_grafting_beta = grafting_beta is not None
        self.block_size = int(block_size)
        self.precondition_frequency = int(precondition_frequency)
        self.start_preconditioning_step = int(start_preconditioning_step)
        self.inverse_root_method = inverse_root_method
        self.matrix_scaling = matrix_scaling
        self.newton_steps = int(newton_steps)
        self.power_iteration_steps = int(power_iteration_steps)
        self.power_iteration_vectors = int(power_iteration_vectors)
        self.nesterov = nesterov
        self.correct_bias = correct_bias
        self.matrix_eps = float(matrix_eps)

    def _groups(self, shape):
        """Per block batch: ``(bounds, batch, factor sizes)``; factor sizes as the reference allocates them."""
        (rows, cols), one_sided = dash_layout(shape)
        out = []
        for b in dash_partition(rows, cols, self.block_size):
            _, _, nr, nc, h, w = b
            batch = (nr // h) * (nc // w)
            if one_sided:
                sizes = [(batch, h, h)]
            elif h == w:
                sizes = [(2 * batch, h, h)]
            else:
                sizes = [(batch, h, h), (batch, w, w)]
            out.append((b, batch, sizes))
        return out

    def init_single(self, parameter: mx.array, state: dict) -> None:
        for i, ((_, _, _, _, h, w), batch, sizes) in enumerate(self._groups(parameter.shape)):
            state[f"exp_avg_sq_{i}"] = self.zeros(parameter, (batch, h, w))
            if self.use_exp_avg:
                state[f"exp_avg_{i}"] = self.zeros(parameter, (batch, h, w))
            if self.use_momentum:
                state[f"momentum_{i}"] = self.zeros(parameter, (batch, h, w))
            for j, size in enumerate(sizes):
                state[f"statistics_{i}_{j}"] = self.zeros(parameter, size)
                state[f"inverse_roots_{i}_{j}"] = self.zeros(parameter, size)

    def step_scalars(self, hp) -> None:
        hp.graft_beta = hp.grafting_beta if self.use_grafting_beta else hp.beta2
        one = mx.array(1.0, mx.float32)
        hp.bias1 = hp.bias_correction("beta1") if self.correct_bias else one
        hp.bias2 = F.bias_correction(hp.graft_beta, hp.step) if self.correct_bias else one
        start = self.start_preconditioning_step
        hp.precondition = hp.step >= start
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        start = self.start_preconditioning_step
        return {"refresh": (step >= start) & ((step == start) | every(step, self.precondition_frequency))}

    def _inverse_root(self, matrix: mx.array, root: int) -> mx.array:
        regularized = matrix + self.matrix_eps * _eye_like(matrix)
        if self.inverse_root_method == "eigh":
            return eigh_inverse_root(regularized, root, self.matrix_eps)
        scale = matrix_scale(
            regularized, self.matrix_scaling == "power", self.power_iteration_steps, self.power_iteration_vectors
        )
        scale = mx.maximum(scale, _TINY32 if matrix.dtype != mx.float64 else float(np.finfo(np.float64).tiny))
        if root == 4:
            regularized = newton_db_root(regularized, scale, self.newton_steps, inverse=False)
            scale = mx.sqrt(scale)
        return newton_db_root(regularized, scale, self.newton_steps, inverse=True)

    def _update_block(self, g: mx.array, state: dict, i: int, n_stats: int, one_sided: bool) -> mx.array:
        """``DASH.update_block``: statistics, graft, Shampoo direction and momentum of one block batch."""
        hp = self.hp
        batch = g.shape[0]
        b2 = hp.beta2
        gt = mx.swapaxes(g, 1, 2)
        first, last = f"statistics_{i}_0", f"statistics_{i}_{n_stats - 1}"
        left = state[first][:batch] * b2 + (1.0 - b2) * (g @ gt)
        if n_stats == 1 and not one_sided:  # square blocks: [L; R] in one array
            right = state[first][batch:] * b2 + (1.0 - b2) * (gt @ g)
            state[first] = mx.concatenate([left, right], axis=0)
        else:
            state[first] = left
            if not one_sided:
                state[last] = state[last] * b2 + (1.0 - b2) * (gt @ g)

        gb = hp.graft_beta
        state[f"exp_avg_sq_{i}"] = state[f"exp_avg_sq_{i}"] * gb + (1.0 - gb) * (g * g)
        if self.use_exp_avg:
            g = state[f"exp_avg_{i}"] = F.torch_lerp(state[f"exp_avg_{i}"], g, hp.one_minus_beta1)
        denom = mx.maximum(mx.sqrt(state[f"exp_avg_sq_{i}"] / hp.bias2) + hp.eps, _TINY32)
        graft = (g / hp.bias1) / denom

        root = 2 if one_sided else 4
        roots = []
        for j in range(n_stats):
            key = f"inverse_roots_{i}_{j}"
            fresh = partial(self._inverse_root, state[f"statistics_{i}_{j}"], root)
            state[key] = self.refreshed("refresh", fresh, state[key])
            roots.append(state[key])
        update = roots[0][:batch] @ g
        if not one_sided:
            update = update @ roots[-1][-batch:]
        graft_norm = mx.sqrt(mx.sum(mx.square(graft), axis=(1, 2), keepdims=True))
        update_norm = mx.sqrt(mx.sum(mx.square(update), axis=(1, 2), keepdims=True))
        update = update * (graft_norm / (update_norm + 1e-16))
        update = mx.where(hp.precondition, update, graft)

        if self.use_momentum:
            mu = hp.momentum
            buf = state[f"momentum_{i}"] = state[f"momentum_{i}"] * mu + update
            update = update + mu * buf if self.nesterov else buf
        return update

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        (rows, cols), one_sided = dash_layout(p.shape)
        dtype = self.state_dtype or self.compute_dtype(p)
        matrix_g = g.reshape(rows, cols).astype(dtype)
        bands = []
        band, band_row = [], 0
        for i, ((r, c, nr, nc, h, w), _, sizes) in enumerate(self._groups(p.shape)):
            block = to_blocks(matrix_g[r : r + nr, c : c + nc], h, w)
            direction = self._update_block(block, state, i, len(sizes), one_sided)
            if r != band_row and band:
                bands.append(mx.concatenate(band, axis=1))
                band = []
            band_row = r
            band.append(from_blocks(direction, nr, nc).astype(p.dtype))
        bands.append(mx.concatenate(band, axis=1))
        direction = mx.concatenate(bands, axis=0).reshape(p.shape)
        p, _ = self.apply_weight_decay(p, g, decouple=True)
        return p - self.hp.lr * direction
