"""NorMuon: Muon with row-wise second-moment normalization."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.docargs import args_from
from mlx_optim.functional.matrix import NSDtype, Weights, as_matrix
from mlx_optim.optimizers.muon import Muon, _MuonFamily
from mlx_optim.registry import register


def row_normalize(
    o: mx.array, v: mx.array, beta2: mx.array, eps: mx.array
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    r"""NorMuon's row-wise second-moment normalization of an orthogonalized matrix ``o`` (float32).

    :math:`v \leftarrow \beta_2 v + (1-\beta_2)\,\operatorname{mean}_{row}(o^2)`,
    :math:`\hat o = o / (\sqrt v + \epsilon)`. Returns ``(o_hat, v, ||o||_F, ||o_hat||_F + eps)``.
    """
    original_norm = F.norm(o)
    v = F.torch_lerp(v, mx.mean(mx.square(o), axis=-1, keepdims=True), 1 - beta2)
    o = o / (mx.sqrt(v) + eps)
    return o, v, original_norm, F.norm(o) + eps


@register
@args_from(Muon)
class NorMuon(_MuonFamily):
    r"""NorMuon: Muon with row-wise second-moment normalization of the orthogonalized update.

    Muon's (Nesterov) momentum is orthogonalized, then each row is normalized by a running mean of its
    squared entries and the result rescaled:

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad u_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t),\quad
        O_t = \operatorname{NS}(u_t) \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \operatorname{mean}_{row}(O_t^2),\quad
        \hat O_t = \frac{O_t}{\sqrt{v_t} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, s\, c\, \frac{\hat O_t}{\|\hat O_t\|_F + \epsilon}

    on the matrix view ``(out, -1)``, with ``v`` one value per row. ``update_scale``: ``"preserve_norm"``
    (:math:`c = \|O_t\|_F` and :math:`s` :class:`Muon`'s shape factor, Moonlight's with ``use_adjusted_lr``)
    or ``"match_rms"`` (:math:`c = 0.2\sqrt{\text{out}\cdot\text{in}}`, :math:`s = 1`). Parameters not
    selected by ``muon_filter`` get AdamW (``adamw_*``).

    Paper: Li et al., "NorMuon: Making Muon more efficient and scalable", arXiv:2510.05491, 2025.

    Reference: ``pytorch_optimizer.NorMuon`` (parity-checked). Differences: ``muon_filter`` instead of
    ``use_muon`` groups; ``ns_method`` / ``ns_reset_steps`` are the reference's ``**kwargs`` group options
    (honoured by its default batched path), keyword-only here.

    Args:
        beta2: Decay rate of the row-wise second moment of the orthogonalized update, in [0, 1).
            Default ``0.95``.
        update_scale: ``"preserve_norm"`` (keep the Frobenius norm of the orthogonalized update, as the
            official code) or ``"match_rms"`` (RMS 0.2, as Algorithm 1 of the paper). Default ``"preserve_norm"``.
        use_adjusted_lr: With ``"preserve_norm"``, Moonlight's shape factor
            :math:`0.2\sqrt{\max(\text{out}, \text{in})}` instead of :math:`\sqrt{\max(1, \text{out}/\text{in})}`;
            unused with ``"match_rms"``. Default ``False``.
        eps: Term added to the denominators of the row-wise normalization (>= 0). Default ``1e-10``.
    """

    name = "normuon"
    reference = "pytorch_optimizer.NorMuon"

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        beta2: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        update_scale: str = "preserve_norm",
        use_adjusted_lr: bool = False,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
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
        self._hyper("beta2", beta2, 0.0, 1.0, "[)")
        self._choice("update_scale", update_scale, ("preserve_norm", "match_rms"))
        self._hyper("eps", eps, 0.0)
        self.update_scale = update_scale

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)
        state["second_momentum_buffer"] = self.zeros(parameter, (parameter.shape[0], 1))

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        o = as_matrix(self.orthogonalize(self.momentum_step(g, state))).astype(mx.float32)
        o, state["second_momentum_buffer"], norm0, norm = row_normalize(
            o, state["second_momentum_buffer"], hp.beta2, hp.eps
        )
        if self.update_scale == "preserve_norm":
            return self.descend(p, (o * (norm0 / norm)).reshape(p.shape))
        # torch evaluates ``float / tensor`` as ``tensor.reciprocal() * float``
        o = o * ((1.0 / norm) * (0.2 * math.sqrt(o.size)))
        return p - hp.lr * o.reshape(p.shape).astype(p.dtype)
