"""Per-coordinate adaptive methods from torch.optim / pytorch_optimizer: RMSprop, Adagrad, AdaDelta, Rprop."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012) as ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
        d_t = \sqrt{v_t - \bar g_t^2 \text{ (centered)}} + \epsilon,\quad
        b_t = \mu b_{t-1} + g_t / d_t,\quad p_t = p_{t-1} - \eta\, b_t
    """

    name = "rmsprop"
    family = "adaptive"
    reference = "torch.optim.RMSprop"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        alpha: Tunable = 0.99,
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        momentum: Tunable = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("alpha", alpha, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0)
        self.centered = centered
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["square_avg"] = self.zeros(parameter)
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)
        if self.centered:
            state["grad_avg"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        v = hp.alpha * state["square_avg"] + hp.one_minus_alpha * mx.square(g)
        state["square_avg"] = v
        if self.centered:
            g_avg = hp.alpha * state["grad_avg"] + hp.one_minus_alpha * g
            state["grad_avg"] = g_avg
            v = v - mx.square(g_avg)
        step = g / (mx.sqrt(v) + hp.eps)
        if self.use_momentum:
            step = hp.momentum * state["momentum_buffer"] + step
            state["momentum_buffer"] = step
        return p - hp.lr * step


@register
class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011) as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}} \frac{g_t}{\sqrt{s_t} + \epsilon}

    ``s_0 = initial_accumulator_value``; ``eps`` defaults to 1e-10 as in PyTorch
    (``mlx.optimizers.Adagrad`` uses 1e-8 and has no ``lr_decay``).
    """

    name = "adagrad"
    family = "adaptive"
    reference = "torch.optim.Adagrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        lr_decay: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: Tunable = 1e-10,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_decay", lr_decay, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("initial_accumulator_value", initial_accumulator_value, 0.0)
        self._hyper("eps", eps, 0.0)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["sum"] = self.full(parameter, self.initial_accumulator_value)

    def step_scalars(self, hp) -> None:
        hp.clr = hp.lr / (1 + (hp.step - 1) * hp.lr_decay)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        s = state["sum"] + mx.square(g)
        state["sum"] = s
        return p - hp.clr * g / (mx.sqrt(s) + hp.eps)


@register
class AdaDelta(Optimizer):
    r"""AdaDelta (Zeiler, 2012), pytorch_optimizer semantics (adds decoupled / fixed weight decay).

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
        \Delta_t = \frac{\sqrt{u_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}} g_t,\quad
        u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2,\quad p_t = p_{t-1} - \eta \Delta_t
    """

    name = "adadelta"
    family = "adaptive"
    reference = "pytorch_optimizer.AdaDelta"
    # the step delta feeds two outputs that do not feed each other (p' and acc_delta): mx.compile writes delta
    # to memory and gives each consumer its own kernel
    ops_per_leaf = 3

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        rho: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("rho", rho, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["square_avg"] = self.zeros(parameter)
        state["acc_delta"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.one_minus_rho = hp.one_minus_rho

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        v = hp.rho * state["square_avg"] + hp.one_minus_rho * mx.square(g)
        delta = mx.sqrt(state["acc_delta"] + hp.eps) / mx.sqrt(v + hp.eps) * g
        state["square_avg"] = v
        state["acc_delta"] = hp.rho * state["acc_delta"] + hp.one_minus_rho * mx.square(delta)
        return p - hp.lr * delta


@register
class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun, 1993) as ``torch.optim.Rprop``.

    Each coordinate keeps its own step size, multiplied by ``etas[1]`` while the
    gradient keeps its sign and by ``etas[0]`` when it flips (then the update of
    that coordinate is skipped and its stored gradient zeroed), clipped to
    ``step_sizes``. The parameter moves by ``-sign(g) * step_size``.
    """

    name = "rprop"
    family = "adaptive"
    reference = "torch.optim.Rprop"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        etas: Sequence[float] = (0.5, 1.2),
        step_sizes: Sequence[float] = (1e-6, 50.0),
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        etaminus, etaplus = etas
        self._check("etas[0]", etaminus, 0.0, 1.0, "()")
        self._check("etas[1]", etaplus, 1.0, None, "()")
        self._hyper("etaminus", etaminus)
        self._hyper("etaplus", etaplus)
        self._hyper("step_size_min", step_sizes[0], 0.0)
        self._hyper("step_size_max", step_sizes[1], 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["prev"] = self.zeros(parameter)
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["step_size"] = mx.full(parameter.shape, self.state["learning_rate"], dtype=dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        same = g * state["prev"]
        factor = mx.where(same > 0, hp.etaplus, mx.where(same < 0, hp.etaminus, 1.0))
        step_size = mx.clip(state["step_size"] * factor, hp.step_size_min, hp.step_size_max)
        g = mx.where(same < 0, 0.0, g)
        state["step_size"], state["prev"] = step_size, g
        return p - F.sign(g) * step_size
