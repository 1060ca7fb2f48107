"""AdaMuon (Si et al., 2025): Muon with an element-wise second moment of the orthogonalized update."""

from __future__ import annotations

import math
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
class AdaMuon(_MuonFamily):
    r"""AdaMuon: Muon whose orthogonalized momentum is normalized element-wise by its own second moment.

    The orthogonalized momentum is normalized element-wise by a second moment of
    itself and rescaled to a fixed RMS:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad O_t = \operatorname{NS}(m_t),\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) O_t^2 \\
        U_t = \frac{O_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, s\, \frac{\sqrt{\min(\text{out}, \text{in})}}{\|U_t\|_F + \epsilon}\, U_t

    with :math:`\operatorname{NS}` the Newton–Schulz orthogonalization of the matrix view ``(out, -1)`` and
    :math:`s` the shape factor of :class:`Muon` (Moonlight's ``0.2 sqrt(max(out, in))`` by default,
    ``use_adjusted_lr=True``). Parameters not selected by ``muon_filter`` get AdamW (``adamw_lr``,
    ``adamw_betas``, ``adamw_wd`` and the shared ``eps``).
    ``ns_method="gram_newton_schulz"`` (restarts at ``ns_reset_steps``) as in :class:`Muon`; the reference
    reads both from the parameter group (``group.get("ns_method")``), its constructor does not forward them.

    Paper: "AdaMuon: Adaptive Muon Optimizer" (Si et al., 2025), arXiv:2507.11005. Reference:
    ``pytorch_optimizer.AdaMuon``, same keywords and defaults; its ``use_muon`` parameter groups are replaced
    by ``muon_filter``. Reference quirk kept: :math:`O_t`, :math:`U_t` and the rescaled update are bfloat16
    tensors (rounded at each in-place step, as in torch); :math:`v` stays float32.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the second moment
            of :math:`O_t`. Default ``(0.9, 0.95)``.
        eps: :math:`\epsilon` (>= 0) of both the orthogonalized branch and the AdamW branch. Default ``1e-10``.
    """

    name = "adamuon"
    reference = "pytorch_optimizer.AdaMuon"
    _ADAMW_EPS = "eps"

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
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        self._setup(locals())
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)

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
        return self.descend(p, u)
