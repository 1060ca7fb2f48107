"""Scalable Shampoo: blocked Shampoo with layer-wise grafting."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial

import mlx.core as mx
import numpy as np

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import gram, identity, inverse_root_svd, largest_eigenvalue, merge_small_dims
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register

GRAFT_NONE, GRAFT_SGD, GRAFT_ADAGRAD, GRAFT_RMSPROP, GRAFT_SQRTN = range(5)  # LayerWiseGrafting


PRECOND_ALL, PRECOND_INPUT, PRECOND_OUTPUT = range(3)  # PreConditionerType


def matrix_power(a: mx.array, n: int) -> mx.array:
    """``a ** n`` for an integer ``n >= 1`` with torch's multiplication order (``torch.linalg.matrix_power``)."""
    if n == 1:
        return a
    if n == 2:
        return a @ a
    if n == 3:
        return (a @ a) @ a
    z = result = None
    while n > 0:
        bit, n = n % 2, n // 2
        z = a if z is None else z @ z
        if bit:
            result = z if result is None else result @ z
    return result


def inverse_root_schur_newton(
    mat: mx.array,
    p: int,
    ridge_epsilon: float = 1e-6,
    max_iters: int = 100,
    error_tolerance: float = 1e-3,
    max_error_ratio: float = 1.2,
    early_stop: bool = False,
) -> mx.array:
    """``(mat + ridge)^(-1/p)`` by the coupled Schur-Newton iteration (Guo & Higham, 2006).

    pytorch_optimizer's ``compute_power_schur_newton`` stops early (error below
    ``error_tolerance``, or divergence: the error grows by more than ``max_error_ratio``, then it
    returns the previous iterate). Here all ``max_iters`` iterations run with matmuls only and a
    ``done`` flag freezes the result once the reference would have stopped, so the iteration count
    is data-dependent without Python branching (compilable, same result). With ``early_stop`` (only
    outside ``mx.compile``) the flag is evaluated after each iteration and the loop ends once it is
    set: the same result, without the frozen iterations (typically most of the 100).
    """
    n = mat.shape[0]
    if n == 1:
        return mx.power(mat + ridge_epsilon * mx.maximum(mat, 1e-16), -1.0 / p)
    eye = identity(n, mat.dtype)
    mat = mat + largest_eigenvalue(mat) * ridge_epsilon * eye
    z = (1 + p) / (2 * F.norm(mat))
    root = eye * mx.power(z, 1.0 / p)
    m = mat * z
    alpha = -1.0 / p
    prev_error = mx.max(mx.abs(m - eye))
    done = mx.array(False)
    for _ in range(max_iters):
        m_i = (1.0 - alpha) * eye + alpha * m
        new_root = root @ m_i
        new_m = matrix_power(m_i, p) @ m
        error = mx.max(mx.abs(new_m - eye))
        diverged = error > prev_error * max_error_ratio
        stop = diverged | (error <= error_tolerance)
        root = mx.where(done | (stop & diverged), root, new_root)
        keep = done | stop
        m = mx.where(keep, m, new_m)
        prev_error = mx.where(keep, prev_error, error)
        done = keep
        if early_stop and done.item():
            break
    return root


def _split_sizes(shape, block_size: int) -> list[list[int]]:
    sizes = []
    for d in shape:
        if block_size <= 0 or block_size >= d:
            sizes.append([d])
        else:
            num_split = (d - 1) // block_size
            sizes.append([block_size] * num_split + [d - num_split * block_size])
    return sizes


def _partition(x: mx.array, sizes: list[list[int]]) -> list[mx.array]:
    """Blocks of ``x`` in row-major block order (``BlockPartitioner.partition``)."""
    blocks = [x]
    for axis, s in enumerate(sizes):
        if len(s) > 1:
            cuts = list(np.cumsum(s)[:-1])
            blocks = [piece for b in blocks for piece in mx.split(b, cuts, axis=axis)]
    return blocks


def _merge(blocks: list[mx.array], sizes: list[list[int]]) -> mx.array:
    """Inverse of :func:`_partition` (``BlockPartitioner.merge_partitions``)."""
    for axis in reversed([a for a, s in enumerate(sizes) if len(s) > 1]):
        n = len(sizes[axis])
        blocks = [mx.concatenate(blocks[i : i + n], axis=axis) for i in range(0, len(blocks), n)]
    return blocks[0]


@register
class ScalableShampoo(HostRefresh, Optimizer):
    r"""Scalable Shampoo: blocked Shampoo preconditioning with layer-wise grafting of the update norm.

    The parameter is reshaped (``shape_interpretation``: small dims merged up to ``block_size``) and cut into
    blocks of at most ``block_size``; every block has, per preconditioned dimension, a statistic
    :math:`L \leftarrow \beta_2 L + (1-\beta_2) G_{(i)} G_{(i)}^\top` (every ``statistics_compute_steps``
    steps) and, every ``preconditioning_compute_steps`` steps, the inverse root :math:`L^{-1/e}`
    (``e = 2 * rank`` unless ``inverse_exponent_override``), by coupled Schur-Newton (matmuls only) or an SVD
    (``use_svd``, on the CPU stream). The Shampoo direction :math:`S` is rescaled to the norm of the graft
    direction :math:`D` (SGD, AdaGrad, RMSProp, sign, or none):

    .. math::
        S \leftarrow S\,\frac{\lVert D\rVert}{\lVert S\rVert + 10^{-16}},\quad
        m \leftarrow \beta_1 m + S,\quad m_D \leftarrow \beta_1 m_D + D,\quad
        p \leftarrow p - \eta\,\big(\beta_1 m + S\big)\ \text{(Nesterov)}

    using :math:`m_D` and :math:`D` instead before ``start_preconditioning_step``
    (``moving_average_for_momentum`` turns the sums into EMAs; ``decoupled_learning_rate=False`` moves
    :math:`\eta` into :math:`S, D`). Weight decay is decoupled or added (L2) to both :math:`S` and :math:`D`
    after grafting, like the reference.

    The inverse roots are the expensive part (per block factor, 100 coupled Schur-Newton iterations of four
    ``block_size``-wide matmuls at most, or one SVD with ``use_svd=True``), so, like the reference,
    ``apply_gradients`` computes them only on refresh steps (every ``preconditioning_compute_steps``) and stops
    the iteration where the reference stops: it reads the step counter on the host, runs a refresh step unfused,
    and fuses the others without any root in them. Inside your own ``mx.compile`` the step counter cannot be
    read, so there the schedule is array logic (MLX has no lazy conditional): the roots are computed every step,
    all ``max_iters=100`` iterations with a freeze flag that reproduces the early stop, and selected with
    ``mx.where`` -- the same numbers, but every step then costs a refresh; keep ``mx.compile`` off the step or use
    ``use_svd=True`` with this optimizer.

    Paper: Anil et al., "Scalable Second Order Optimization for Deep Learning", arXiv:2002.09018, 2020.

    Reference: ``pytorch_optimizer.ScalableShampoo`` (parity-checked). Differences: the reference's power
    iteration starts from a random vector, ours from a fixed one (it only scales the ``matrix_eps`` ridge);
    inside ``mx.compile`` the schedules are computed every step and selected (above).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``: momentum factor and decay rate of the preconditioner statistics, each in
            [0, 1). Default ``(0.9, 0.999)``.
        moving_average_for_momentum: Keep EMAs (``beta1 m + (1 - beta1) S``) instead of momentum sums.
            Default ``False``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        decoupled_weight_decay: Decoupled weight decay, instead of adding ``weight_decay * p`` to the
            grafted directions. Default ``False``.
        decoupled_learning_rate: Apply the learning rate to the final step (``False``: to the preconditioned
            and graft directions before the momentum). Default ``True``.
        inverse_exponent_override: The root exponent :math:`e` when > 0 (otherwise twice the number of
            preconditioned dimensions). Default ``0``.
        start_preconditioning_step: First step that uses the Shampoo direction (>= 1; before it, the graft
            direction). Default ``25``.
        preconditioning_compute_steps: Steps between inverse-root computations (>= 1). Default ``1000``.
        statistics_compute_steps: Steps between statistics updates (>= 1). Default ``1``.
        block_size: Largest block side; larger dimensions are split (1 means AdaGrad, inefficiently).
            Default ``512``.
        skip_preconditioning_rank_lt: Parameters with fewer dimensions take the graft direction only.
            Default ``1``.
        no_preconditioning_for_layers_with_dim_gt: Parameters with a dimension above this take the graft
            direction only. Default ``8192``.
        shape_interpretation: Merge small dimensions (up to ``block_size``) before blocking. Default ``True``.
        graft_type: The graft direction, the reference's ``LayerWiseGrafting`` integer: 0 none, 1 SGD,
            2 AdaGrad, 3 RMSProp, 4 sign (SQRT_N). Default ``1`` (SGD).
        pre_conditioner_type: The reference's ``PreConditionerType`` integer: 0 all dimensions, 1 all but
            the last (input), 2 only the last (output). Default ``0``.
        nesterov: Nesterov momentum. Default ``True``.
        diagonal_eps: Term added to the AdaGrad / RMSProp graft denominators (>= 0). Default ``1e-10``.
        matrix_eps: Initial value of the statistics (times the identity) and relative ridge of the
            Schur-Newton inverse root (>= 0). Default ``1e-6``.
        use_svd: Compute the inverse roots by an SVD instead of the coupled Schur-Newton iteration.
            Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "scalableshampoo"
    family = "preconditioned"
    reference = "pytorch_optimizer.ScalableShampoo"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        moving_average_for_momentum: bool = False,
        weight_decay: Tunable = 0.0,
        decoupled_weight_decay: bool = False,
        decoupled_learning_rate: bool = True,
        inverse_exponent_override: int = 0,
        start_preconditioning_step: int = 25,
        preconditioning_compute_steps: int = 1000,
        statistics_compute_steps: int = 1,
        block_size: int = 512,
        skip_preconditioning_rank_lt: int = 1,
        no_preconditioning_for_layers_with_dim_gt: int = 8192,
        shape_interpretation: bool = True,
        graft_type: int = GRAFT_SGD,
        pre_conditioner_type: int = PRECOND_ALL,
        nesterov: bool = True,
        diagonal_eps: float = 1e-10,
        matrix_eps: float = 1e-6,
        use_svd: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        for name, v in (
            ("start_preconditioning_step", start_preconditioning_step),
            ("preconditioning_compute_steps", preconditioning_compute_steps),
            ("statistics_compute_steps", statistics_compute_steps),
        ):
            self._check(name, v, 1)
        self._check("diagonal_eps", diagonal_eps, 0.0)
        self._check("matrix_eps", matrix_eps, 0.0)
        self._choice("graft_type", int(graft_type), tuple(range(5)))
        self._choice("pre_conditioner_type", int(pre_conditioner_type), tuple(range(3)))
        self.moving_average_for_momentum = moving_average_for_momentum
        self.decoupled_weight_decay = decoupled_weight_decay
        self.decoupled_learning_rate = decoupled_learning_rate
        self.inverse_exponent_override = int(inverse_exponent_override)
        self.start_preconditioning_step = int(start_preconditioning_step)
        self.preconditioning_compute_steps = int(preconditioning_compute_steps)
        self.statistics_compute_steps = int(statistics_compute_steps)
        self.block_size = int(block_size)
        self.skip_preconditioning_rank_lt = int(skip_preconditioning_rank_lt)
        self.no_preconditioning_for_layers_with_dim_gt = int(no_preconditioning_for_layers_with_dim_gt)
        self.shape_interpretation = shape_interpretation
        self.graft_type = int(graft_type)
        self.pre_conditioner_type = int(pre_conditioner_type)
        self.nesterov = nesterov
        self.diagonal_eps = float(diagonal_eps)
        self.matrix_eps = float(matrix_eps)
        self.use_svd = use_svd

    fuse_refresh = False  # a refresh step runs unfused: its Schur-Newton iterations stop on host-side error checks

    def refresh_flags(self, step):
        return {"refresh": every(step, self.preconditioning_compute_steps)}

    # structure (the reference's PreConditioner / BlockPartitioner, from the shape at trace time)
    def _layout(self, shape):
        """``(transformed_shape, precondition_dims, exponent, split_sizes, factor sizes per block)``.

        ``split_sizes`` is ``None`` when the parameter is not preconditioned.
        """
        ts = merge_small_dims(shape, self.block_size) if self.shape_interpretation else list(shape)
        if self.pre_conditioner_type == PRECOND_ALL or len(ts) <= 1:
            dims = [True] * len(ts)
        elif self.pre_conditioner_type == PRECOND_INPUT:
            dims = [True] * (len(ts) - 1) + [False]
        else:
            dims = [False] * (len(ts) - 1) + [True]
        rank = sum(dims)
        exponent = self.inverse_exponent_override if self.inverse_exponent_override > 0 else 2 * rank
        skip = len(shape) < self.skip_preconditioning_rank_lt or any(
            d > self.no_preconditioning_for_layers_with_dim_gt for d in shape
        )
        if len(ts) <= 1 or skip:
            return ts, dims, exponent, None, []
        sizes = _split_sizes(ts, self.block_size)
        factors = []
        for t in itertools.product(*sizes):
            t_shape = list(t)
            if self.pre_conditioner_type == PRECOND_INPUT:
                t_shape[-1] = None
            elif self.pre_conditioner_type == PRECOND_OUTPUT:
                t_shape = [None] * (rank - 1) + t_shape[-1:]
            factors.extend(d for d in t_shape if d is not None)
        return ts, dims, exponent, sizes, factors

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["momentum"] = self.zeros(parameter)
        state["graft_momentum"] = self.zeros(parameter)
        if self.graft_type in (GRAFT_ADAGRAD, GRAFT_RMSPROP):
            state["graft_statistics"] = self.zeros(parameter)
        for k, d in enumerate(self._layout(parameter.shape)[4]):
            state[f"statistics_{k}"] = self.matrix_eps * identity(d, dtype)
            state[f"pre_conditioner_{k}"] = identity(d, dtype)

    def step_scalars(self, hp) -> None:
        hp.update_statistics = F.every(hp.step, self.statistics_compute_steps)
        self.refresh_scalars(hp)
        hp.precondition = hp.step >= self.start_preconditioning_step

    def _inverse_root(self, mat: mx.array, exponent: int, early_stop: bool = False) -> mx.array:
        if self.use_svd:
            return inverse_root_svd(mat, exponent)
        return inverse_root_schur_newton(mat, exponent, ridge_epsilon=self.matrix_eps, early_stop=early_stop)

    def _graft(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.graft_type == GRAFT_ADAGRAD:
            state["graft_statistics"] = state["graft_statistics"] + g * g
        elif self.graft_type == GRAFT_RMSPROP:
            state["graft_statistics"] = state["graft_statistics"] * hp.beta2 + hp.one_minus_beta2 * (g * g)
        if self.graft_type in (GRAFT_ADAGRAD, GRAFT_RMSPROP):
            return g / (mx.sqrt(state["graft_statistics"]) + self.diagonal_eps)
        if self.graft_type == GRAFT_SQRTN:
            return F.sign(g)
        return g

    def _shampoo(self, g: mx.array, state: dict) -> mx.array | None:
        """Update the block statistics/roots in ``state``; return the preconditioned ``g`` (``None``: no blocks)."""
        hp = self.hp
        ts, dims, exponent, sizes, factors = self._layout(g.shape)
        if sizes is None:
            return None
        rank = sum(dims)
        blocks = _partition(g.astype(mx.float32).reshape(ts), sizes)
        w2 = 1.0 - hp.beta2  # the reference uses 1.0 when beta2 == 1 (excluded by validation here)
        k = 0
        for block in blocks:
            for axis in (a for a, sel in enumerate(dims) if sel):
                u = mx.moveaxis(block, axis, 0).reshape(block.shape[axis], -1)
                stat = state[f"statistics_{k}"]
                stat = mx.where(hp.update_statistics, stat * hp.beta2 + w2 * gram(u), stat)
                state[f"statistics_{k}"] = stat
                root = partial(self._inverse_root, stat, exponent, early_stop=self.host_flag("refresh") is not None)
                state[f"pre_conditioner_{k}"] = self.refreshed("refresh", root, state[f"pre_conditioner_{k}"])
                k += 1
        out = []
        roll = None
        for j, block in enumerate(blocks):
            roll = (*range(1, block.ndim), 0)
            i = 0
            for sel in dims:
                if not sel:
                    block = mx.transpose(block, roll)
                    continue
                block = mx.tensordot(block, state[f"pre_conditioner_{j * rank + i}"], axes=([0], [0]))
                i += 1
            out.append(block)
        return _merge(out, sizes).reshape(g.shape).astype(g.dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        pre_mult = 1.0 if self.decoupled_learning_rate else hp.lr
        mom_mult = hp.lr if self.decoupled_learning_rate else 1.0
        ma = self.moving_average_for_momentum
        w = hp.one_minus_beta1 if ma else 1.0

        graft = self._graft(g, state) * pre_mult
        shampoo = self._shampoo(g, state)
        shampoo = graft if shampoo is None else shampoo * pre_mult
        if self.graft_type != GRAFT_NONE:
            shampoo = shampoo * (F.norm(graft) / (F.norm(shampoo) + 1e-16))

        if self.decoupled_weight_decay:
            p, _ = self.apply_weight_decay(p, g, decouple=True)
        else:
            _, graft = self.apply_weight_decay(p, graft, decouple=False)
            _, shampoo = self.apply_weight_decay(p, shampoo, decouple=False)

        if ma:
            state["momentum"] = F.lerp(state["momentum"], shampoo, w)
        else:
            state["momentum"] = state["momentum"] * hp.beta1 + shampoo
        state["graft_momentum"] = state["graft_momentum"] * hp.beta1 + graft * w

        update = mx.where(hp.precondition, state["momentum"], state["graft_momentum"])
        if self.nesterov:
            direction = mx.where(hp.precondition, shampoo, graft)
            update = F.lerp(update, direction, w) if ma else update * hp.beta1 + direction
        return p - mom_mult * update
