"""AdaGO (Zhang et al., 2025, "AdaGrad Meets Muon"), pytorch_optimizer semantics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.functional.matrix import Weights, cautious_lowp
from mlx_optim.optimizers.muon import Muon, _MuonFamily
from mlx_optim.registry import register


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
