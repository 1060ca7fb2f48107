"""SPlus: sign descent in the eigenbasis of Shampoo's side statistics."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import eigenvectors, gram, identity
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register


@register
class SPlus(HostRefresh, Optimizer):
    r"""SPlus: sign descent in the eigenbasis of Shampoo's side statistics, with a shape-scaled step size.

    For a matrix parameter with left/right statistics :math:`L = \mathrm{EMA}_{\beta_2}(GG^\top)`,
    :math:`R = \mathrm{EMA}_{\beta_2}(G^\top G)` and their eigenbases :math:`Q_L, Q_R` (refreshed on step 1 and
    every ``inverse_steps`` steps, via ``eigh`` of :math:`L + \epsilon I`):

    .. math::
        m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\qquad
        p \leftarrow p - \eta_s\, Q_L\, \mathrm{sign}(Q_L^\top m_t Q_R)\, Q_R^\top

    with :math:`\eta_s = \eta \cdot 2/(m+n)` for an :math:`m\times n` matrix and :math:`\eta \cdot`
    ``nonstandard_constant`` for every other shape (plain sign descent). Weight decay is decoupled (after the
    step, scaled by :math:`\eta_s`) or L2. An EMA of the parameters is kept in ``state[...]["ema"]``;
    :meth:`ema_parameters` returns the bias-corrected average: pass its result to ``model.update`` for
    evaluation. A side whose size is ``>= max_dim`` gets no eigenbasis. ``eigh`` runs on the CPU stream (MLX
    has it only there); ``apply_gradients`` reads the step counter on the host and runs it only on refresh
    steps, while inside your own ``mx.compile`` it is computed every step and selected with ``mx.where`` (the same
    numbers).

    Paper: Frans et al., "A Stable Whitening Optimizer for Efficient Neural Network Training",
    arXiv:2506.07254, 2025.

    Reference: ``pytorch_optimizer.SPlus`` (parity-checked). Difference: the reference's ``eval()`` /
    ``train()`` mode switch is :meth:`ema_parameters` here.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-1``.
        betas: ``(beta1, beta2)``, decay rates of the momentum and of the side statistics, each in [0, 1).
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        ema_rate: Decay rate of the parameter EMA, in [0, 1). Default ``0.999``.
        inverse_steps: Steps between eigenbasis refreshes (> 0). Default ``100``.
        nonstandard_constant: Step-size factor for parameters that are not matrices (or too large).
            Default ``1e-3``.
        max_dim: Sides of this size or larger get no eigenbasis; larger matrices use the
            ``nonstandard_constant`` step size (> 0). Default ``10000``.
        eps: Ridge added to the side statistics before ``eigh`` (>= 0). Default ``1e-30``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "splus"
    family = "preconditioned"
    reference = "pytorch_optimizer.SPlus"
    shared_tunables = ("ema_rate",)  # ema_parameters() corrects the whole tree's EMA with one value

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ema_rate: Tunable = 0.999,
        inverse_steps: int = 100,
        nonstandard_constant: Tunable = 1e-3,
        max_dim: int = 10000,
        eps: Tunable = 1e-30,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("ema_rate", ema_rate, 0.0, 1.0, "[)")
        self._check("inverse_steps", inverse_steps, 0, None, "()")
        self._hyper("nonstandard_constant", nonstandard_constant)
        self._check("max_dim", max_dim, 0, None, "()")
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple
        self.fixed_decay = fixed_decay
        self.inverse_steps = int(inverse_steps)
        self.max_dim = int(max_dim)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["momentum"] = self.zeros(parameter)
        state["ema"] = self.zeros(parameter)
        if parameter.ndim == 2:
            for i, d in enumerate(parameter.shape):
                if d < self.max_dim:
                    state[f"side_{i}"] = mx.zeros((d, d), dtype=dtype)
                    state[f"q_side_{i}"] = identity(d, dtype)

    def _scaled_lr(self, shape) -> mx.array:
        if len(shape) != 2 or shape[0] > self.max_dim or shape[1] > self.max_dim:
            return self.hp.lr * self.hp.nonstandard_constant
        return self.hp.lr * (2.0 / (shape[0] + shape[1]))

    def step_scalars(self, hp) -> None:
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        return {"refresh": (step == 1) | every(step, self.inverse_steps)}

    def _eigenbasis(self, side: mx.array) -> mx.array:
        """Eigenvectors of ``side + eps I`` (float32, on the CPU stream), in ``side``'s dtype."""
        eye = identity(side.shape[0], mx.float32)
        return eigenvectors(side.astype(mx.float32) + eye * self.hp.eps).astype(side.dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        lr = self._scaled_lr(p.shape)
        if not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        m = F.lerp(state["momentum"], g, hp.one_minus_beta1)
        state["momentum"] = m
        if p.ndim == 2:
            q0, q1 = state.get("q_side_0"), state.get("q_side_1")
            m = m if q0 is None else q0.T @ m
            m = m if q1 is None else m @ q1
            update = F.sign(m)
            update = update if q0 is None else q0 @ update
            update = update if q1 is None else update @ q1.T
            for i, outer in ((0, gram(g)), (1, gram(g.T))):
                if f"side_{i}" in state:
                    side = F.lerp(state[f"side_{i}"], outer, hp.one_minus_beta2)
                    state[f"side_{i}"] = side
                    state[f"q_side_{i}"] = self.refreshed(
                        "refresh", partial(self._eigenbasis, side), state[f"q_side_{i}"]
                    )
        else:
            update = F.sign(m)
        p = p - lr * update
        state["ema"] = F.lerp(state["ema"], p, hp.one_minus_ema_rate)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, lr=lr)
        return p

    def ema_parameters(self, parameters: dict) -> dict:
        """The bias-corrected EMA of the parameters (what the reference's ``eval()`` swaps in).

        ``parameters`` gives the tree structure and dtypes (e.g. ``model.trainable_parameters()``);
        returns a tree to pass to ``model.update`` for evaluation.
        """
        step = self.state["step"].astype(mx.float32)
        corr = 1.0 / F.bias_correction(self.globals["ema_rate"], step)

        def walk(p, s):
            if isinstance(p, dict):
                return {k: walk(p[k], s[k]) for k in p if k in s}
            if isinstance(p, (list, tuple)):
                return type(p)(walk(a, b) for a, b in zip(p, s))
            return (s["ema"] * corr).astype(p.dtype)

        return walk(parameters, self.state)
