"""SaRA: AdamW updates restricted to the weights that start small."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim import linalg
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


def _rank_eligible(p: mx.array) -> bool:
    """SaRA's nuclear-norm penalty candidates: matrices with both dimensions greater than 64."""
    return p.ndim == 2 and min(p.shape) > 64


def masked_nuclear_subgradient(p: mx.array, mask: mx.array) -> mx.array:
    """``U V^T`` of the reduced SVD of ``where(mask, p, 0)``: a subgradient of its nuclear norm."""
    u, _, vt = linalg.svd(mx.where(mask, p, 0.0))
    k = min(p.shape)
    return u[:, :k] @ vt[:k]


@register
class SaRA(Optimizer):
    r"""SaRA: AdamW updates restricted to the weights whose initial magnitude is below a threshold.

    Only entries with initial :math:`|p| <` ``threshold`` are trained (the boolean ``mask``, fixed when the
    state is created from the parameter); everything else, including weight decay, leaves them untouched:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        p_t = M \odot \Big(p_{t-1}(1 - \eta\lambda) - \frac{\eta}{1-\beta_1^t}
              \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}\Big) + (1 - M) \odot p_{t-1}

    with :math:`\hat v_t = \max(\hat v_{t-1}, v_t)` under ``ams_bound``. With ``progressive_iter >= 0`` the
    mask is refined once, before update ``progressive_iter + 1``: :math:`M \leftarrow M \wedge (|p| <`
    ``threshold``:math:`)`; the kept entries keep their moments. ``lambda_rank > 0`` adds
    :math:`\lambda_{rank} U V^T` (the SVD of the masked matrix) to the masked gradient of ONE matrix per step,
    drawn uniformly among the 2-D parameters with both dimensions > 64, when more than 100 of its entries are
    masked.

    Paper: Hu et al., "SaRA: High-Efficient Diffusion Model Fine-tuning with Progressive Sparse Low-Rank
    Adaptation", ICLR 2025, arXiv:2409.06633.

    Reference: ``pytorch_optimizer.SaRA`` (parity-checked). Differences: the reference's moments hold only
    the masked entries; here they are parameter-shaped and the unmasked entries are never read (same
    arithmetic, fixed shapes for ``mx.compile``). The reference draws the penalised matrix with Python's
    ``random``; here the draw uses the key in ``state["key"]``, seeded by ``seed`` (not in the reference), so
    with several candidate matrices only statistics compare. For bf16/fp16 parameters the moments are float32
    (this package's dtype policy; the reference keeps them in the parameter's dtype); the mask compares in the
    parameter's dtype as torch does.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step); ``None``
            means :math:`10^{-3} e^{-350\,\text{threshold}}`. Default ``None``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        threshold: Strict upper bound of the initial absolute values of the trained weights (>= 0).
            Default ``1e-3``.
        progressive_iter: Refine the mask before update ``progressive_iter + 1`` (>= -1; -1 disables the
            refinement). Default ``-1``.
        lambda_rank: Coefficient of the nuclear-norm penalty (>= 0; 0 disables it). Default ``0.0``.
        weight_decay: Decoupled weight decay coefficient :math:`\lambda` of the trained weights (>= 0).
            Default ``1e-2``.
        ams_bound: Divide by the running maximum of the second moment (AMSGrad). Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed: Seed of the key that draws the penalised matrix (keyword-only). Default ``0``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sara"
    family = "adam"
    reference = "pytorch_optimizer.SaRA"

    def __init__(
        self,
        learning_rate: Tunable | None = None,
        betas: Sequence[float] = (0.9, 0.999),
        threshold: Tunable = 1e-3,
        progressive_iter: int = -1,
        lambda_rank: Tunable = 0.0,
        weight_decay: Tunable = 1e-2,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        self._check("threshold", threshold if not callable(threshold) else 0.0, 0.0)
        if learning_rate is None:
            learning_rate = 1e-3 * math.exp(-350.0 * float(threshold))
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("threshold", threshold, 0.0)
        self._check("progressive_iter", progressive_iter, -1)
        self.progressive_iter = int(progressive_iter)
        self._hyper("lambda_rank", lambda_rank, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self.ams_bound = ams_bound
        self._hyper("eps", eps, 0.0)
        self.globals["key"] = mx.random.key(seed)
        self._rank_index: dict[str, int] = {}
        self._rank_choice = None
        self._param_dtype = mx.float32

    def init_single(self, parameter: mx.array, state: dict) -> None:
        # compared in the parameter's dtype, as torch compares a bf16 tensor with a Python float
        state["mask"] = mx.abs(parameter) < self.tunable("threshold").astype(parameter.dtype)
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.ams_bound else None)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def prepare(self, gradients, parameters) -> None:
        self._rank_index, self._rank_choice = {}, None
        if "lambda_rank" in self._zero:
            return
        eligible = [path for path, _, p, _ in leaves(gradients, parameters, self.state) if _rank_eligible(p)]
        if eligible:
            self.globals["key"], key = mx.random.split(self.globals["key"])
            self._rank_index = {path: i for i, path in enumerate(eligible)}
            self._rank_choice = mx.random.randint(0, len(eligible), (), key=key)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        self._param_dtype = parameter.dtype  # the mask refinement compares in the parameter's dtype
        return super().apply_single(gradient, parameter, state)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        mask = state["mask"]
        if self.progressive_iter >= 0:
            refine = hp.step == self.progressive_iter + 1
            threshold = hp.threshold.astype(self._param_dtype).astype(p.dtype)
            mask = mx.where(refine, mask & (mx.abs(p) < threshold), mask)
            state["mask"] = mask
        index = self._rank_index.get(self._leaf_path)
        if index is not None:
            # the reference adds the penalty before negating the gradient for ``maximize``
            penalty = hp.lambda_rank * masked_nuclear_subgradient(p, mask)
            chosen = (self._rank_choice == index) & (mx.sum(mask) > 100)
            g = mx.where(chosen, g - penalty if self.maximize else g + penalty, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        v_hat = v
        if self.ams_bound:
            v_hat = mx.where(mask, mx.maximum(state["max_exp_avg_sq"], v), state["max_exp_avg_sq"])
            state["max_exp_avg_sq"] = v_hat
        state["exp_avg"] = mx.where(mask, m, state["exp_avg"])
        state["exp_avg_sq"] = mx.where(mask, v, state["exp_avg_sq"])
        denom = mx.sqrt(v_hat) / hp.bc2_sqrt + hp.eps
        p_new, _ = self.apply_weight_decay(p, g, decouple=True)
        p_new = p_new - hp.step_size * (m / denom)
        return mx.where(mask, p_new, p)
