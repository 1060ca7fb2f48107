"""AdaGO (Zhang et al., 2025, "AdaGrad Meets Muon")."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.docargs import args_from
from mlx_optim.functional.matrix import NSDtype, Weights
from mlx_optim.optimizers.muon import Muon, _MuonFamily
from mlx_optim.registry import register


@register
@args_from(Muon)
class AdaGO(_MuonFamily):
    r"""AdaGO: Muon's orthogonalized momentum with an AdaGrad-norm step size per matrix.

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad v_t = v_{t-1} + \min(\|g_t\|^2, \gamma^2),\quad
        p_t = p_{t-1} - \max\!\Big(\frac{\eta\, s \min(\|g_t\|, \gamma)}{v_t}, \epsilon\Big)\, \operatorname{NS}(b_t)

    (:math:`v_0` = ``v``; with ``nesterov`` the orthogonalized direction and the norm in the step
    size use :math:`(1-\mu) g_t + \mu b_t`, as in the reference). :math:`\operatorname{NS}` is the Newton–Schulz
    orthogonalization of the matrix view ``(out, -1)`` and :math:`s` is :class:`Muon`'s shape factor. Parameters
    not selected by ``muon_filter`` get AdamW (``adamw_*``). ``cautious`` masks the orthogonalized update.
    ``ns_method="gram_newton_schulz"`` (restarts at ``ns_reset_steps``) as in :class:`Muon`; the reference
    reads both from the parameter group (``group.get("ns_method")``), its constructor does not forward them.

    Paper: "AdaGrad Meets Muon: Adaptive Stepsizes for Orthogonal Updates" (Zhang et al., 2025). Reference:
    ``pytorch_optimizer.AdaGO``, same keywords and defaults; its ``use_muon`` parameter groups are replaced by
    ``muon_filter``, and its ``cautious`` group option (``**kwargs``) is a keyword-only argument here.

    Args:
        gamma: Cap :math:`\gamma` (> 0) on the gradient norm in the accumulator and the step size. Default
            ``10.0``.
        eps: Lower bound :math:`\epsilon` (> 0) of the step size. Default ``5e-4``.
        v (float): Initial value (> 0) of the AdaGrad accumulator :math:`v`. Default ``1e-6``.
    """

    name = "adago"
    reference = "pytorch_optimizer.AdaGO"

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
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        self._setup(locals())
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0, None, "(]")
        self._check("v", v, 0.0, None, "(]")
        self.initial_v = float(v)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)
        state["v"] = mx.array(self.initial_v, dtype=self.state_dtype or self.compute_dtype(parameter))

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        g_norm = F.norm(g)
        v = state["v"] + mx.minimum(mx.square(g_norm), hp.gamma**2)
        state["v"] = v
        u = self.momentum_step(g, state)
        if self.nesterov:  # the step size uses the norm of the look-ahead, as the reference
            g_norm = F.norm(u)
        step = mx.maximum(mx.minimum(g_norm, hp.gamma) * (hp.lr * self.lr_ratio(p)) / v, hp.eps)
        return p - self.orthogonal_direction(u, g).astype(p.dtype) * step
