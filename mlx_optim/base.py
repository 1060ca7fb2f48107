"""The base class of the per-leaf optimizers: :class:`Optimizer`.

An :class:`Optimizer` is an :class:`mlx_optim.core.OptimizerCore` (state layout, tunable hyperparameters,
validation, parameter groups, the calling convention) whose step updates the parameter tree leaf by leaf, run
by :class:`mlx_optim.execution.Execution` (auto-fused updates, CPU streams, packing). This module adds, once for
all optimizers:

* the step: ``apply_gradients`` (tree checking with the offending path in the message, lazy ``init``),
  per-step scalars (bias corrections, ...) computed once per step in :meth:`Optimizer.step_scalars` (once per
  parameter group), the whole-tree hook :meth:`Optimizer.prepare`, and ``apply_single`` →
  :meth:`Optimizer.update_single` per leaf;
* the dtype policy of the update: float32 math for bf16/fp16 parameters, updated parameters keep their dtype; a
  bfloat16 ``state_dtype`` is written back with stochastic rounding (:mod:`mlx_optim.precision`); int8 / int4
  blockwise-quantized moments (:mod:`mlx_optim.quantized`);
* ``maximize``, ``decay_filter`` and the ZeRO hook :meth:`Optimizer.global_sum`;
* shared options: weight decay modes, AMSGrad, AdaNorm, cautious masking, gradient centralization.

The helpers of :mod:`mlx_optim.core` that optimizer modules use (``Tunable``, ``GLOBAL_KEY``, ``check_range``,
``leaves``, ...) are importable from here too.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_optim import functional as F
from mlx_optim import quantized, streams
from mlx_optim.core import (
    GLOBAL_KEY,
    RESERVED_KEYS,
    Hyper,
    OptimizerCore,
    ParamGroup,
    Schedule,
    Tunable,
    _Group,
    _match,
    check_choice,
    check_range,
    document_groups,
    group_selector,
    leaves,
)
from mlx_optim.execution import Execution

__all__ = [
    "Optimizer",
    "OptimizerCore",
    "ParamGroup",
    "GLOBAL_KEY",
    "Tunable",
    "Schedule",
    "check_range",
    "check_choice",
    "group_selector",
    "document_groups",
    "leaves",
    "betas3",
    "state_copy",
]


class Optimizer(Execution, OptimizerCore):
    """Base class of the per-leaf mlx_optim optimizers.

    Subclasses implement :meth:`init_single` (fill the per-parameter ``state``
    dict; it receives the *parameter*, also on the lazy first update) and
    :meth:`update_single` (return the new parameter, computed in the compute
    dtype, updating ``state`` in place). Per-step scalars go in
    :meth:`step_scalars`; hyperparameters are read from ``self.hp``.

    Class attributes describe the optimizer for the registry and the docs (``name``, ``family``, ``reference``)
    and declare its capabilities (``needs_loss``, ``compilable``, ``zero_compatible``, ``elementwise``,
    ``shared_tunables``, ``groups_unsupported``): see :class:`mlx_optim.core.OptimizerCore`.

    State layout: ``state["step"]``, ``state["learning_rate"]``, one entry per parameter (shaped like the
    parameter tree) and ``state["_global"]`` (see :class:`mlx_optim.core.OptimizerCore`).

    Parameter groups: every constructor takes ``groups=[{"params": selector, <tunable>: value, ...}, ...]``
    (see :meth:`set_groups`).
    """

    def __init__(self, learning_rate: Tunable, *, maximize: bool = False, state_dtype: mx.Dtype | None = None):
        super().__init__()
        self.maximize = bool(maximize)
        # "int8" / "int4" / a QuantizedState: blockwise-quantized moments (mlx_optim.quantized), float32 otherwise
        state_dtype, self.state_quantization = quantized.parse_state_dtype(type(self), state_dtype)
        self.state_dtype = state_dtype
        self._quantized_moments = quantized.moments_of(type(self))  # {entry: non-negative} of the quantizable moments
        self._quantized_leaves: dict[int, tuple[dict, list]] = {}  # during a step: leaves with dequantized moments
        self._quantized_after: list[mx.array] = []  # the arrays the next leaf's dequantization waits for
        cls = type(self)
        self._quantize_per_leaf = cls.prepare is Optimizer.prepare and cls.apply_single is Optimizer.apply_single
        # Stochastic rounding of bfloat16 state (mlx_optim.precision): on by default; its key lives in state.
        self.stochastic_rounding = (state_dtype is not None and state_dtype == mx.bfloat16) or (
            self.state_quantization is not None and self.state_quantization.stochastic
        )
        if self.stochastic_rounding:
            self.globals["rounding_key"] = mx.random.key(0)
        self._init_execution()
        self.decay_filter: Callable[[str], bool] | None = None
        self._hyper("learning_rate", learning_rate, low=0.0)

    # ------------------------------------------------------------------ the step
    def init(self, parameters: dict) -> None:
        """Create the missing state for ``parameters`` (resumed entries are kept).

        Like ``mlx.optimizers.Optimizer.init``, but ``init_single`` runs with
        ``self._leaf_path`` set, so per-path choices (Muon's split, GaLore's
        projection filter, ...) can be made when the state is created.
        """
        self._reserved_clash(parameters)
        object.__setattr__(self, "init_single", lambda parameter, state: None)  # build the empty tree only
        try:
            super().init(parameters)
        finally:
            del self.__dict__["init_single"]
        if self._param_groups:
            self._leaf_groups = {}
            self._assign_groups(parameters)
        packed = self._packed_paths(parameters)
        for path, _, p, s in leaves(parameters, parameters, self._state):
            if not s and path not in packed:
                self._leaf_call(path, p, self.init_single, p, s)
                if self.state_quantization is not None:
                    quantized.quantize_new_state(self.state_quantization, self._quantized_moments, p, s)
        nbytes = sum(v.nbytes for _, v in tree_flatten([parameters, self._state]) if isinstance(v, mx.array))
        streams.reserve_buffer_cache(2 * nbytes)  # each step's outputs are fresh buffers: keep the freed ones

    def _reserved_clash(self, gradients: Any) -> None:
        """A top-level parameter may not take a name the state itself uses (``step``, ``learning_rate``,
        ``_global``; ``packed`` when packing)."""
        if isinstance(gradients, dict):
            reserved = RESERVED_KEYS + self._reserved_names()
            for k in gradients:
                if k in reserved or (k in self._state and not isinstance(self._state[k], (dict, list, tuple))):
                    raise ValueError(
                        f"top-level parameter '{k}' has a name the optimizer's state reserves "
                        f"({', '.join(reserved)}); nest the parameters one level deeper"
                    )

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        """Return the updated parameters (with the structure of ``gradients``).

        ``parameters`` may be a superset of ``gradients`` (e.g. the whole model).
        A gradient whose path or shape has no matching parameter raises
        ``ValueError`` naming the path.
        """
        if self.needs_loss and loss is None:
            raise ValueError(
                f"{type(self).__name__} needs the loss value: call opt.update(model, grads, loss=loss) "
                "or opt.step_with(model, loss_and_grad_fn, *batch)"
            )
        self._reserved_clash(gradients)
        params = _match(gradients, parameters)
        if not self._initialized:
            self.init(params)
        if self._fuses_updates():  # mlx_optim.execution
            return self._fused_update(gradients, params, loss)
        return self._update(gradients, params, loss)

    def _update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        """One step: schedules, ``self.hp``, ``prepare``, the leaves' updates; returns the new parameters."""
        self._refresh_schedules()
        self.state["step"] = self.step + 1
        self.hp = self._hyperparameters(loss)
        self._load_quantized(gradients, params)
        self._prepare(gradients, params)
        new = self._run_leaves(gradients, params)  # mlx_optim.execution: packed, or leaf by leaf on the streams
        for state, _ in list(self._quantized_leaves.values()):  # leaves whose apply_single did not store them
            self._store_quantized(state)
        return new

    def _load_quantized(self, gradients: Any, params: Any) -> None:
        """Dequantize the int8 / int4 moments (mlx_optim.quantized): here, for every leaf before ``prepare``, when
        the optimizer overrides ``prepare`` or ``apply_single`` (they may read any leaf's state); otherwise in
        ``apply_single``, one leaf after the other (see :func:`mlx_optim.quantized.load_state`)."""
        self._quantized_leaves, self._quantized_after = {}, []
        if self.state_quantization is not None and not self._quantize_per_leaf:
            for path, _, p, s in leaves(gradients, params, self.state):
                self._load_quantized_leaf(p, s, path)

    def _load_quantized_leaf(self, parameter: mx.array, state: dict, path: str) -> None:
        loaded = quantized.load_state(
            self.state_quantization, self._quantized_moments, parameter, state, path, self._quantized_after
        )
        if loaded:
            self._quantized_leaves[id(state)] = (state, loaded)

    def _store_quantized(self, state: dict, new: mx.array | None = None) -> None:
        """Quantize a leaf's updated moments again (once its update is done). ``new``: the leaf's updated parameter.
        The next leaf dequantizes only after this leaf's new codes and new parameter exist, so this leaf's float32
        moments (which both read) are freed first: one leaf's float32 working set at a time, also across the
        update streams (mlx_optim.streams), which then run the quantized leaves one after the other (memory
        first; measured in benchmarks/peak_memory.py, see docs/memory.md)."""
        record = self._quantized_leaves.pop(id(state), None)
        if record is not None:
            stored = quantized.store_state(self.state_quantization, state, record[1], self._next_rounding_key)
            if self._quantize_per_leaf and stored:
                self._quantized_after = stored + ([new] if new is not None else [])
        elif new is not None and self._quantize_per_leaf:  # a float32 leaf in between: waited for too
            self._quantized_after = [*self._quantized_after, new]

    def _prepare(self, gradients: Any, params: Any) -> None:
        """:meth:`prepare`, then (with groups) the per-step values it put on ``self.hp`` copied to every group's."""
        if not self._group_hps:
            self.prepare(gradients, params)
            return
        before = dict(vars(self.hp))
        self.prepare(gradients, params)
        made = {k: v for k, v in vars(self.hp).items() if k not in before or before[k] is not v}
        for hp in self._group_hps:
            for k, v in made.items():
                setattr(hp, k, v)

    # ------------------------------------------------------------------ per-step values (per group)
    def _hyperparameters(self, loss: mx.array | None) -> Hyper:
        # each group's first: its step_scalars read the shared global arrays as the previous step left them
        self._group_hps = [self._group_hyperparameters(group, loss) for group in self._param_groups]
        hp = self._tunable_values()
        hp.lr = hp.learning_rate
        hp.step = self._state["step"].astype(mx.float32)
        hp.loss = loss
        if self.stochastic_rounding:
            self.globals["rounding_key"], self._rounding_key = mx.random.split(self.globals["rounding_key"])
        self.step_scalars(hp)
        return self._finish_hyperparameters(hp)

    def _group_hyperparameters(self, group: _Group, loss: mx.array | None) -> Hyper:
        """``group``'s per-step namespace: its tunables, and the per-step scalars computed from them."""
        hp = self._tunable_values(group)
        hp.lr = hp.learning_rate
        hp.step = self._state["step"].astype(mx.float32)
        hp.loss = loss
        shared = self._state[GLOBAL_KEY]
        with self._in_group(group, hp, ChainMap(shared["groups"][group.index], shared)):
            self.step_scalars(hp)
            return self._finish_hyperparameters(hp)

    def _finish_hyperparameters(self, hp: Hyper) -> Hyper:
        if "weight_decay" not in self._zero and "weight_decay" in self._tunables:
            hp.decay_factor = 1 - hp.weight_decay * hp.lr  # decoupled decay's p * (1 - wd lr), once per step
        # Materialise the per-step scalars. Under mx.compile a scalar expression feeding an element-wise update is
        # otherwise fused into it and recomputed for every element (Adam's two bias-correction powf per element made
        # a compiled step many times slower on the CPU backend, benchmarks/suite.py); mx.contiguous is not fusable.
        for k, v in vars(hp).items():
            if isinstance(v, mx.array) and v.ndim == 0:
                setattr(hp, k, mx.contiguous(v))
        return hp

    # ------------------------------------------------------------------ hooks and the per-leaf update
    def global_sum(self, x: mx.array) -> mx.array:
        """Sum a partial reduction over the processes that share this optimizer's leaves.

        The identity, unless :class:`mlx_optim.distributed.ZeroRedundancyOptimizer` shards the leaves
        over ranks and sets ``sum_group``: then each rank's partial sum (over its own leaves) is
        ``all_sum``-ed, so whole-tree quantities (global norms, D-Adaptation's sums) are exact. Optimizers
        whose cross-leaf sums all go through here declare ``zero_compatible = True``.
        """
        group = getattr(self, "sum_group", None)
        return x if group is None else mx.distributed.all_sum(x, group=group)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        """Hook for global reductions over the whole tree before the per-leaf updates."""

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        dtype = self.compute_dtype(parameter)
        g = gradient if gradient.dtype == dtype else gradient.astype(dtype)
        if self.maximize:
            g = -g
        p = parameter if parameter.dtype == dtype else parameter.astype(dtype)
        if self._quantize_per_leaf and self.state_quantization is not None:
            fused = self.quantized_update(gradient, parameter, g, state)
            if fused is not None:
                return fused
            self._load_quantized_leaf(parameter, state, self._leaf_path)
        new = self.update_single(g, p, state)
        if self.state_quantization is not None:
            self._store_quantized(state, new)
        if self.state_dtype is not None and self.state_dtype != dtype:
            for k in sorted(state):  # sorted: the rounding keys must not depend on the order a loaded state has
                v = state[k]
                if isinstance(v, mx.array) and v.dtype == dtype:
                    state[k] = self.round_state(v)
        return new if new.dtype == parameter.dtype else new.astype(parameter.dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """Return the updated parameter; ``g`` and ``p`` are in the compute dtype."""
        raise NotImplementedError

    def quantized_update(self, gradient: mx.array, parameter: mx.array, g: mx.array, state: dict) -> mx.array | None:
        """A fused step of one leaf whose moments are still quantized (e.g. :func:`mlx_optim.native.adam_leaf`):
        the new parameter (in its dtype), with ``state`` updated; ``None`` (the default) runs the dequantize /
        ``update_single`` / quantize path.

        Args:
            gradient: the leaf's gradient as given.
            parameter: the leaf's parameter.
            g: the gradient ``update_single`` would get (compute dtype, negated with ``maximize``).
            state: the leaf's state, its moments still quantized.
        """
        return None

    def round_state(self, v: mx.array) -> mx.array:
        """Cast an updated state array to ``state_dtype``: stochastic rounding when enabled, else nearest.

        Each call draws a fresh key from the one split off ``state["rounding_key"]`` for this step, so the
        rounding noise is independent per leaf and per state entry, reproducible, and the same under
        ``mx.compile``.
        """
        if not self.stochastic_rounding:
            return v.astype(self.state_dtype)
        from mlx_optim.precision import stochastic_round  # noqa: PLC0415 (precision imports nothing from here)

        return stochastic_round(v, self.state_dtype, self._next_rounding_key())

    def _next_rounding_key(self) -> mx.array:
        self._rounding_key, key = mx.random.split(self._rounding_key)
        return key

    # ------------------------------------------------------------------ shared math
    def _decay_options(self, weight_decay: Tunable, weight_decouple: bool = False, fixed_decay: bool = False) -> None:
        """The common weight-decay keywords (pytorch_optimizer's ``weight_decay``, ``weight_decouple``,
        ``fixed_decay``): validate and keep them for :meth:`decay_weights`."""
        self._hyper("weight_decay", weight_decay, 0.0)
        self.weight_decouple, self.fixed_decay = weight_decouple, fixed_decay

    def _adanorm_options(self, adanorm: bool, adanorm_r: Tunable, adam_debias: bool | None = None) -> None:
        """pytorch_optimizer's ``adanorm`` / ``adanorm_r`` keywords (and ``adam_debias`` where the reference has it):
        validate and keep them for :meth:`adanorm_grad`, :meth:`zero_state` and :meth:`adam_step_size`."""
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.adanorm = adanorm
        if adam_debias is not None:
            self.adam_debias = adam_debias

    def _rectify_options(self, n_sma_threshold: int, degenerated_to_sgd: bool, rectify: bool = True) -> None:
        """RAdam's rectification keywords (pytorch_optimizer's ``rectify``, ``n_sma_threshold``,
        ``degenerated_to_sgd``), kept for :meth:`adam_step_size`."""
        self.rectify, self.n_sma_threshold, self.degenerated_to_sgd = rectify, n_sma_threshold, degenerated_to_sgd

    def zero_state(self, parameter: mx.array, state: dict, *names: str, ams: str | None = None) -> None:
        """Zero buffers shaped like ``parameter`` for ``names``; ``state[ams]`` too when given (the AMSGrad maximum),
        and AdaNorm's running gradient norm when ``self.adanorm``."""
        for name in (*names, ams) if ams else names:
            state[name] = self.zeros(parameter)
        if getattr(self, "adanorm", False):
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def adanorm_grad(self, g: mx.array, state: dict) -> mx.array:
        """The gradient entering the first moment: AdaNorm's rescaled ``g`` when ``self.adanorm``, else ``g``."""
        return self.apply_adanorm(g, state, self.hp.adanorm_r) if self.adanorm else g

    def adam_step_size(self, hp: Hyper, step_size: Any, rectify: bool = True) -> mx.array:
        """``step_size`` times RAdam's factor :math:`r_t` (``rectify``; sets ``hp.rectified``), divided by
        :math:`1-\\beta_1^t` unless ``self.adam_debias``."""
        if rectify:
            scale, hp.rectified = F.rectified_scale(
                hp.beta2, hp.step, self.n_sma_threshold, self.degenerated_to_sgd, hp.one_minus_beta2
            )
            step_size = step_size * scale
        return step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

    def decay_weights(self, p: mx.array, g: mx.array, **kwargs: Any) -> tuple[mx.array, mx.array]:
        """:meth:`apply_weight_decay` in the mode chosen by the optimizer's ``weight_decouple`` / ``fixed_decay``."""
        return self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay, **kwargs)

    def decays(self) -> bool:
        """Whether weight decay applies to the current leaf."""
        if "weight_decay" in self._zero:
            return False
        return self.decay_filter is None or self.decay_filter(self._leaf_path)

    def apply_weight_decay(
        self,
        p: mx.array,
        g: mx.array,
        *,
        decouple: bool,
        fixed: bool = False,
        ratio: Any = 1.0,
        lr: Any = None,
    ) -> tuple[mx.array, mx.array]:
        """Apply weight decay; returns ``(p, g)``.

        ``decouple``: shrink the parameter, ``p * (1 - wd * lr * ratio)`` (``fixed``:
        without ``lr``); otherwise fold the L2 penalty into the gradient.
        """
        if not self.decays():
            return p, g
        wd = self.hp.weight_decay
        if decouple and lr is None and not fixed and isinstance(ratio, float) and ratio == 1.0:
            factor = getattr(self.hp, "decay_factor", None)
            if factor is not None:
                return p * factor, g
        if decouple:
            return F.decoupled_decay(p, self.hp.lr if lr is None else lr, wd, fixed=fixed, ratio=ratio), g
        return p, F.coupled_decay(g, p, wd)

    @staticmethod
    def apply_amsgrad(state: dict, v: mx.array, key: str = "max_exp_avg_sq") -> mx.array:
        """AMSGrad: keep and return the running element-wise maximum of ``v``."""
        v_max = mx.maximum(state[key], v)
        state[key] = v_max
        return v_max

    @staticmethod
    def apply_adanorm(g: mx.array, state: dict, r: Any, key: str = "exp_grad_adanorm") -> mx.array:
        """AdaNorm: rescale ``g`` up to the running average of its norm (kept in ``state[key]``)."""
        g_norm = F.norm(g)
        avg = r * state[key] + (1 - r) * g_norm
        state[key] = avg
        return mx.where((g_norm > 0) & (avg > g_norm), g * (avg / g_norm), g)

    @staticmethod
    def apply_cautious(update: mx.array, g: mx.array) -> mx.array:
        return F.cautious_mask(update, g)

    @staticmethod
    def apply_gc(g: mx.array, conv_only: bool = False) -> mx.array:
        return F.centralize(g, conv_only=conv_only)


def betas3(opt: Optimizer, betas: Sequence[float]) -> None:
    """Three betas as pytorch_optimizer validates them: beta1, beta2 in [0, 1), beta3 in [0, 1]."""
    betas = tuple(betas)
    if len(betas) != 3:
        raise ValueError(f"{type(opt).__name__}: betas={betas!r} must have 3 values")
    opt._betas(betas[:2], 2)
    opt._hyper("beta3", betas[2], 0.0, 1.0, "[]")


def state_copy(opt: Optimizer, parameter: mx.array) -> mx.array:
    """A copy of ``parameter`` in the state dtype."""
    return parameter.astype(opt.state_dtype or opt.compute_dtype(parameter))
