"""Learning-rate schedules as MLX schedules.

Each factory returns a callable ``schedule(step: mx.array) -> mx.array`` built
from array arithmetic only (no Python branching on the step), so it can be
passed as ``learning_rate`` (or any other tunable) to every optimizer, runs
inside ``mx.compile``, and composes with ``mlx.optimizers.join_schedules``.

MLX evaluates a schedule with the number of updates done so far, so the first
update uses ``schedule(0)``. The value at ``k`` is, for each reference:

* ``torch.optim.lr_scheduler`` classes (step, multi_step, multiplicative,
  constant, cosine_annealing, cosine_annealing_with_warm_restart, cyclic,
  one_cycle) and pytorch_optimizer's ``LambdaLR``-based ones (chebyshev,
  warmup_stable_decay, cosine_annealing_with_warmup) and rex: the learning rate after
  ``k`` calls of ``scheduler.step()``;
* pytorch_optimizer's linear / cosine / poly schedulers, whose ``step()``
  returns the rate to use: the value returned by the ``(k+1)``-th ``step()``.

Names follow ``pytorch_optimizer.get_supported_lr_schedulers()``; see
:func:`load_lr_scheduler`. Two more: :func:`linear_warmup` (with
the "untuned" 2 / (1 - beta2) length) and Ranger21's :func:`explore_exploit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import mlx.core as mx
import numpy as np

from mlx_optim.base import check_choice
from mlx_optim.registry import filter_names, lookup

Schedule = Callable[[mx.array], mx.array]

__all__ = [
    "chebyshev",
    "constant",
    "cosine",
    "cosine_annealing",
    "cosine_annealing_with_warm_restart",
    "cosine_annealing_with_warmup",
    "cyclic",
    "explore_exploit",
    "get_supported_lr_schedulers",
    "linear",
    "linear_warmup",
    "load_lr_scheduler",
    "multi_step",
    "multiplicative",
    "one_cycle",
    "poly",
    "proportion",
    "rex",
    "step",
    "warmup_stable_decay",
]


def _k(step: mx.array) -> mx.array:
    return mx.array(step).astype(mx.float32)


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is out of range; allowed {allowed}")


def _cos_interp(start, end, pct):
    """From ``start`` (pct 0) to ``end`` (pct 1) along half a cosine."""
    return end + (start - end) * 0.5 * (1.0 + mx.cos(math.pi * pct))


# ----------------------------------------------------------------------------- torch.optim.lr_scheduler
def step(learning_rate: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``StepLR``: multiply by ``gamma`` every ``step_size`` steps."""
    _check("step_size", step_size, step_size >= 1, "[1, inf)")
    return lambda s: learning_rate * mx.power(gamma, mx.floor(_k(s) / step_size))


def multi_step(learning_rate: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``MultiStepLR``: multiply by ``gamma`` at each milestone."""
    marks = mx.array(sorted(milestones), mx.float32)
    return lambda s: learning_rate * mx.power(gamma, mx.sum(marks <= _k(s)).astype(mx.float32))


def multiplicative(learning_rate: float, lr_lambda: float | Callable, max_steps: int | None = None) -> Schedule:
    """``MultiplicativeLR``: ``lr_k = lr_{k-1} * lr_lambda(k)``.

    ``lr_lambda`` is a constant factor, or a callable of the (array) step; a callable
    needs ``max_steps`` (the product is taken over a table of that length, and stays
    constant past it).
    """
    if not callable(lr_lambda):
        return lambda s: learning_rate * mx.power(float(lr_lambda), _k(s))
    if max_steps is None:
        raise ValueError("multiplicative: a callable lr_lambda needs max_steps")
    table = mx.concatenate([mx.ones((1,)), mx.cumprod(lr_lambda(mx.arange(1, max_steps + 1).astype(mx.float32)))])
    return lambda s: learning_rate * table[mx.minimum(mx.array(s).astype(mx.int32), max_steps)]


def constant(learning_rate: float, factor: float = 1.0 / 3.0, total_iters: int = 5) -> Schedule:
    """``ConstantLR``: ``learning_rate * factor`` for the first ``total_iters`` steps, then ``learning_rate``."""
    _check("factor", factor, 0 <= factor <= 1, "[0, 1]")
    return lambda s: mx.where(_k(s) < total_iters, learning_rate * factor, learning_rate)


def cosine_annealing(learning_rate: float, T_max: int, eta_min: float = 0.0) -> Schedule:  # noqa: N803
    """``CosineAnnealingLR`` (closed form): ``eta_min + (lr - eta_min) (1 + cos(pi k / T_max)) / 2``."""
    return lambda s: _cos_interp(learning_rate, eta_min, _k(s) / T_max)


def cosine_annealing_with_warm_restart(
    learning_rate: float,
    T_0: int,  # noqa: N803
    T_mult: int = 1,  # noqa: N803
    eta_min: float = 0.0,
) -> Schedule:
    """``CosineAnnealingWarmRestarts``: cosine cycles of length ``T_0``, each ``T_mult`` times longer."""
    _check("T_0", T_0, T_0 >= 1, "[1, inf)")
    _check("T_mult", T_mult, T_mult >= 1, "[1, inf)")

    def schedule(s):
        k = _k(s)
        if T_mult == 1:
            t_cur, t_i = mx.remainder(k, T_0), T_0
        else:
            n = mx.floor(mx.log(k / T_0 * (T_mult - 1) + 1) / math.log(T_mult) + 1e-6)
            start = T_0 * (mx.power(T_mult, n) - 1) / (T_mult - 1)
            n = mx.where(k < start, n - 1, n)  # guard the float log at cycle boundaries
            start = T_0 * (mx.power(T_mult, n) - 1) / (T_mult - 1)
            t_cur, t_i = k - start, T_0 * mx.power(T_mult, n)
        return _cos_interp(learning_rate, eta_min, t_cur / t_i)

    return schedule


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable | None = None,
    scale_mode: str = "cycle",
) -> Schedule:
    """``CyclicLR`` (the learning rate only; momentum cycling is not a learning-rate schedule).

    ``scale_fn``, if given, must take an ``mx.array`` (the cycle number or the step).
    """
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise ValueError(
            f"cyclic: mode={mode!r} is not allowed; choose one of ('triangular', 'triangular2', 'exp_range')"
        )
    up = float(step_size_up)
    down = float(step_size_down) if step_size_down is not None else up
    total = up + down
    ratio = up / total
    if scale_fn is None:
        scale_fn, scale_mode = {
            "triangular": (lambda x: mx.ones_like(x), "cycle"),
            "triangular2": (lambda x: 1.0 / mx.power(2.0, x - 1), "cycle"),
            "exp_range": (lambda x: mx.power(gamma, x), "iterations"),
        }[mode]

    def schedule(s):
        k = _k(s)
        cycle = mx.floor(1 + k / total)
        x = 1.0 + k / total - cycle
        factor = mx.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        scale = scale_fn(cycle if scale_mode == "cycle" else k)
        return base_lr + (max_lr - base_lr) * factor * scale

    return schedule


def one_cycle(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """``OneCycleLR``: warm up from ``max_lr / div_factor`` to ``max_lr``, then anneal to a tiny rate."""
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise ValueError("one_cycle: give total_steps, or epochs and steps_per_epoch")
        total_steps = epochs * steps_per_epoch
    _check("pct_start", pct_start, 0 <= pct_start <= 1, "[0, 1]")
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            f"one_cycle: anneal_strategy={anneal_strategy!r} is not allowed; choose one of ('cos', 'linear')"
        )
    initial = max_lr / div_factor
    final = initial / final_div_factor
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, initial, max_lr),
            (float(2 * pct_start * total_steps) - 2, max_lr, initial),
            (total_steps - 1.0, initial, final),
        ]
    else:
        phases = [(float(pct_start * total_steps) - 1, initial, max_lr), (total_steps - 1.0, max_lr, final)]

    def anneal(start, end, pct):
        return _cos_interp(start, end, pct) if anneal_strategy == "cos" else start + (end - start) * pct

    def schedule(s):
        k = _k(s)
        lr = None
        start_step = 0.0
        for i, (end_step, lo, hi) in enumerate(phases):
            value = anneal(lo, hi, (k - start_step) / (end_step - start_step))
            if lr is None:
                lr = value
            else:
                lr = mx.where(k <= start_step, lr, value)
            if i < len(phases) - 1:
                start_step = end_step
        return lr

    return schedule


# ----------------------------------------------------------------------------- pytorch_optimizer
def _warmup_then(t_max, max_lr, min_lr, init_lr, warmup_steps, after):
    for name, v in (("max_lr", max_lr), ("min_lr", min_lr), ("init_lr", init_lr)):
        _check(name, v, v >= 0, "[0, inf)")
    _check("t_max", t_max, t_max >= 0, "[0, inf)")
    _check("warmup_steps", warmup_steps, warmup_steps >= 0, "[0, inf)")

    def schedule(s):
        k = _k(s)
        warm = init_lr + (max_lr - init_lr) * k / max(warmup_steps, 1)
        return mx.where(k < warmup_steps, warm, mx.where(k == warmup_steps, max_lr, after(k)))

    return schedule


def linear(t_max: int, max_lr: float, min_lr: float = 0.0, init_lr: float = 0.0, warmup_steps: int = 0) -> Schedule:
    """pytorch_optimizer ``LinearScheduler``: linear warmup, then linear from ``max_lr`` to ``min_lr`` at ``t_max``."""

    def after(k):
        return max_lr + (min_lr - max_lr) * (k - warmup_steps) / (t_max - warmup_steps)

    return _warmup_then(t_max, max_lr, min_lr, init_lr, warmup_steps, after)


def cosine(t_max: int, max_lr: float, min_lr: float = 0.0, init_lr: float = 0.0, warmup_steps: int = 0) -> Schedule:
    """pytorch_optimizer ``CosineScheduler``: linear warmup, then half a cosine down to ``min_lr`` at ``t_max``."""

    def after(k):
        return _cos_interp(max_lr, min_lr, (k - warmup_steps) / (t_max - warmup_steps))

    return _warmup_then(t_max, max_lr, min_lr, init_lr, warmup_steps, after)


def poly(
    t_max: int,
    max_lr: float,
    min_lr: float = 0.0,
    init_lr: float = 0.0,
    warmup_steps: int = 0,
    poly_order: float = 0.5,
) -> Schedule:
    """pytorch_optimizer ``PolyScheduler``: after warmup ``min_lr + (max_lr - min_lr) (k - warmup) ** poly_order``.

    Reference behaviour kept: the value grows after warmup (the reference's formula).
    """
    _check("poly_order", poly_order, poly_order > 0, "(0, inf)")

    def after(k):
        return min_lr + (max_lr - min_lr) * mx.power(mx.maximum(k - warmup_steps, 0.0), poly_order)

    return _warmup_then(t_max, max_lr, min_lr, init_lr, warmup_steps, after)


def rex(total_steps: int, max_lr: float = 1.0, min_lr: float = 0.0) -> Schedule:
    """pytorch_optimizer ``REXScheduler``: ``min + (max - min) (1 - p) / (1 - p / 2)``, ``p = k / total_steps``.

    As the reference's optimizer sees it: the rate is ``min_lr`` before the first
    ``scheduler.step()`` (torch's scheduler constructor already consumed ``k = 0``).
    """

    def schedule(s):
        k = _k(s)
        p = k / total_steps
        value = mx.where(p >= 1, min_lr, min_lr + (max_lr - min_lr) * (1 - p) / (1 - p / 2))
        return mx.where(k == 0, min_lr, value)

    return schedule


def cosine_annealing_with_warmup(
    first_cycle_steps: int,
    cycle_mult: float = 1.0,
    max_lr: float = 1e-4,
    min_lr: float = 1e-6,
    warmup_steps: int = 0,
    gamma: float = 0.9,
) -> Schedule:
    """pytorch_optimizer ``CosineAnnealingWarmupRestarts``: cycles of linear warmup + cosine decay.

    Cycle ``c`` peaks at ``max_lr * gamma**c``; cycle lengths grow by ``cycle_mult`` as in
    the reference (``max(1, int((len - warmup) * cycle_mult)) + warmup``), tabulated for
    the first 4096 cycles. The value at step 0 is ``min_lr``, as the reference sets it.
    """
    if warmup_steps >= first_cycle_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be smaller than first_cycle_steps={first_cycle_steps}")
    starts, lengths = [0], [first_cycle_steps]
    while len(starts) < 4096 and starts[-1] < 2**24:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(max(1, int((lengths[-1] - warmup_steps) * cycle_mult)) + warmup_steps)
    starts_a, lengths_a = mx.array(starts, mx.float32), mx.array(lengths, mx.float32)

    def schedule(s):
        k = _k(s)
        cycle = mx.sum(starts_a[1:] <= k)
        sic = k - starts_a[cycle]
        cur = lengths_a[cycle]
        peak = max_lr * mx.power(gamma, cycle.astype(mx.float32))
        warm = (peak - min_lr) * sic / max(warmup_steps, 1) + min_lr
        decay = min_lr + (peak - min_lr) * (1 + mx.cos(math.pi * (sic - warmup_steps) / (cur - warmup_steps))) / 2
        return mx.where(k == 0, min_lr, mx.where(sic < warmup_steps, warm, decay))

    return schedule


def _chebyshev_table(num_epochs: int) -> np.ndarray:
    def steps(n, small_m=0.05, big_m=1.0):
        c, r = (big_m + small_m) / 2.0, (big_m - small_m) / 2.0
        thetas = (np.arange(n) + 0.5) * np.pi / n
        return 1.0 / (c - r * np.cos(thetas))

    def permutation(n):
        perm = np.array([0])
        while len(perm) < n:
            perm = np.vstack([perm, 2 * len(perm) - 1 - perm]).T.flatten()
        return perm

    power = int(np.power(2, int(np.log2(num_epochs - 1)) + 1)) if num_epochs > 1 else 1
    table = steps(power)
    perm = permutation(power - 2)
    return table[perm[perm < power]]


def chebyshev(learning_rate: float, num_epochs: int, is_warmup: bool = False) -> Schedule:
    """pytorch_optimizer's fractal Chebyshev schedule (``get_chebyshev_schedule``), per step."""
    _check("num_epochs", num_epochs, num_epochs >= 1, "[1, inf)")
    if is_warmup:
        return lambda s: mx.full((), learning_rate, mx.float32) + 0 * _k(s)
    table = mx.array(_chebyshev_table(num_epochs).astype(np.float32))
    n = table.shape[0]
    return lambda s: learning_rate * table[mx.clip(mx.array(s).astype(mx.int32) - 2, 0, n - 1)]


def warmup_stable_decay(
    learning_rate: float,
    num_warmup_steps: int,
    num_stable_steps: int,
    num_decay_steps: int,
    min_lr_ratio: float = 0.0,
    num_cycles: float = 0.5,
    cooldown_type: str = "1-sqrt",
) -> Schedule:
    """pytorch_optimizer ``get_wsd_schedule``: linear warmup, a stable phase, then a cooldown to ``min_lr_ratio``."""
    check_choice("warmup_stable_decay", "cooldown_type", cooldown_type, ("cosine", "1-sqrt", "linear", "1-square"))
    w, st, d = num_warmup_steps, num_stable_steps, num_decay_steps

    def cooldown(progress):
        if cooldown_type == "cosine":
            value = mx.maximum(0.0, 0.5 * (1.0 + mx.cos(math.pi * num_cycles * 2.0 * progress)))
            return (1.0 - min_lr_ratio) * value + min_lr_ratio
        if cooldown_type == "1-sqrt":
            return 1.0 - mx.sqrt(progress)
        if cooldown_type == "1-square":
            return 1.0 - mx.square(progress)
        return 1.0 - progress

    def schedule(s):
        k = _k(s)
        progress = mx.maximum(k - w - st, 0.0) / (max(1, d) if cooldown_type == "cosine" else max(d, 1e-12))
        ratio = mx.where(
            k < w,
            k / max(1, w),
            mx.where(k < w + st, 1.0, mx.where(k < w + st + d, cooldown(progress), min_lr_ratio)),
        )
        return learning_rate * ratio

    return schedule


def proportion(
    lr_schedule: Schedule,
    max_lr: float,
    min_lr: float = 0.0,
    max_value: float = 2.0,
    min_value: float = 2.0,
) -> Schedule:
    """pytorch_optimizer ``ProportionScheduler``: a value that follows a learning-rate schedule linearly
    (``max_lr`` maps to ``max_value``, ``min_lr`` to ``min_value``); GSAM's rho schedule."""
    if max_lr <= min_lr:
        return lambda s: mx.full((), max_value, mx.float32) + 0 * _k(s)
    return lambda s: min_value + (max_value - min_value) * (lr_schedule(s) - min_lr) / (max_lr - min_lr)


# ----------------------------------------------------------------------------- warm-up and explore-exploit
def linear_warmup(
    learning_rate: float | Schedule,
    warmup_steps: int | None = None,
    beta2: float | None = None,
) -> Schedule:
    """Linear warmup: ``lr(k) * min(1, (k + 1) / warmup_steps)``.

    With ``beta2`` instead of ``warmup_steps`` it is the "untuned" warmup of Ma & Yarats
    (2019): ``warmup_steps = 2 / (1 - beta2)``. ``learning_rate`` may itself be a schedule.
    """
    if (warmup_steps is None) == (beta2 is None):
        raise ValueError("linear_warmup: give exactly one of warmup_steps and beta2")
    length = float(warmup_steps) if warmup_steps is not None else 2.0 / (1.0 - beta2)
    _check("warmup_steps", length, length > 0, "(0, inf)")
    base = learning_rate if callable(learning_rate) else (lambda s: learning_rate)
    return lambda s: base(s) * mx.minimum(1.0, (_k(s) + 1) / length)


def explore_exploit(
    learning_rate: float,
    num_iterations: int,
    beta2: float = 0.999,
    num_warm_up_iterations: int | None = None,
    num_warm_down_iterations: int | None = None,
    warm_down_min_lr: float = 3e-5,
) -> Schedule:
    """Ranger21's explore-exploit schedule: linear warmup, a flat phase, then a linear warm-down.

    Lengths default as in pytorch_optimizer's Ranger21: warmup ``ceil(2 / (1 - beta2))`` (or
    22% of the run if that is over 45% of it), warm-down the last 28% of the run.
    """
    if num_warm_up_iterations is None:
        w = math.ceil(2.0 / (1.0 - beta2))
        num_warm_up_iterations = int(0.22 * num_iterations) if w / num_iterations > 0.45 else w
    if num_warm_down_iterations is None:
        num_warm_down_iterations = num_iterations - int(0.72 * num_iterations)
    start = num_iterations - num_warm_down_iterations
    delta = learning_rate - warm_down_min_lr

    def schedule(s):
        t = _k(s) + 1  # Ranger21 counts updates from 1
        lr = mx.where(
            t > num_warm_up_iterations, learning_rate, learning_rate * mx.minimum(1.0, t / num_warm_up_iterations)
        )
        pct = mx.minimum(mx.maximum(t + 1 - start, 1.0) / (num_warm_down_iterations + 1), 1.0)
        return mx.where(t < start, lr, mx.maximum(learning_rate - delta * pct, warm_down_min_lr))

    return schedule


# ----------------------------------------------------------------------------- registry
LR_SCHEDULERS: dict[str, Callable[..., Schedule]] = {
    "chebyshev": chebyshev,
    "constant": constant,
    "cosine": cosine,
    "cosine_annealing": cosine_annealing,
    "cosine_annealing_with_warm_restart": cosine_annealing_with_warm_restart,
    "cosine_annealing_with_warmup": cosine_annealing_with_warmup,
    "cyclic": cyclic,
    "explore_exploit": explore_exploit,
    "linear": linear,
    "linear_warmup": linear_warmup,
    "multi_step": multi_step,
    "multiplicative": multiplicative,
    "one_cycle": one_cycle,
    "poly": poly,
    "proportion": proportion,
    "rex": rex,
    "step": step,
    "warmup_stable_decay": warmup_stable_decay,
}


def load_lr_scheduler(name: str) -> Callable[..., Schedule]:
    """The schedule factory registered as ``name`` (case-insensitive); unknown names list close matches."""
    return lookup(LR_SCHEDULERS, name, "lr scheduler")


def get_supported_lr_schedulers(filters: str | Iterable[str] | None = None) -> list[str]:
    """Registered schedule names, sorted; ``filters`` are glob patterns."""
    return filter_names(LR_SCHEDULERS, filters)
