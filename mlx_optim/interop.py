"""Interop with ``mlx.optimizers``: convert an optimizer, or its saved state, to mlx_optim and back.

mlx_optim keeps its references' state names (torch's ``exp_avg`` / ``exp_avg_sq``, ``momentum_buffer``,
``square_avg``, ...) where ``mlx.optimizers`` keeps its own (``m`` / ``v``, ...). For every optimizer both libraries
have, these functions translate, and the steps that follow are the same up to float rounding:

* :func:`from_mlx` (``mlx.optimizers`` instance -> configured mlx_optim optimizer, with its state) and
  :func:`to_mlx` (the reverse);
* :func:`from_mlx_state` (an ``mlx.optimizers`` state, nested or as saved by ``dict(tree_flatten(opt.state))``,
  loaded into an mlx_optim optimizer you configured) and :func:`to_mlx_state` (the reverse).

=================  ======================  ==============================================================
mlx.optimizers     mlx_optim               state (mlx -> ours)
=================  ======================  ==============================================================
SGD                SGD                     ``v`` -> ``momentum_buffer`` (none without momentum)
RMSprop            RMSprop                 ``v`` -> ``square_avg``
Adagrad            Adagrad                 ``v`` -> ``sum``
AdaDelta           AdaDelta                ``v`` -> ``square_avg``, ``u`` -> ``acc_delta``
Adam, AdamW        Adam, AdamW             ``m`` -> ``exp_avg``, ``v`` -> ``exp_avg_sq``
Adamax             AdaMax                  ``m`` -> ``exp_avg``, ``v`` -> ``exp_inf``
Lion               Lion                    ``m`` -> ``exp_avg``
Adafactor          AdaFactor               the same names
=================  ======================  ==============================================================

Only what means the same is converted; anything else raises ``ValueError`` saying why:

* MLX's ``Adam`` / ``AdamW`` default to ``bias_correction=False``; mlx_optim's (torch's) always bias-correct, so only
  ``bias_correction=True`` converts.
* MLX's ``Adamax`` adds ``eps`` after the running maximum and does not bias-correct; mlx_optim's ``AdaMax``
  (pytorch_optimizer's) takes the maximum with ``|g| + eps``: only ``eps=0`` (with ``adam_debias=True``) is the same.
* MLX's ``SGD`` dampens its first momentum step, torch's does not: with ``dampening > 0`` an optimizer that has not
  stepped yet does not convert (afterwards the buffers mean the same).
* MLX's ``Adafactor`` does not cap its decay ``1 - t^decay_rate``; mlx_optim's caps it at ``betas[1]``:
  :func:`from_mlx` sets the cap to 1 (``betas[1] = ADAFACTOR_NO_CAP``, which is 1.0 in float32), and an mlx_optim
  ``AdaFactor`` converts only with that cap (and a float32 momentum).
* MLX's ``Muon`` runs Newton–Schulz in float32 and updates vectors by plain momentum; mlx_optim's follows
  pytorch_optimizer (bfloat16 Newton–Schulz, an AdamW fallback for non-matrices): no conversion.
* mlx_optim options MLX has no counterpart of (``amsgrad``, RMSprop's ``momentum`` / ``centered``, ``maximize``,
  ``state_dtype``, ``decay_filter``, parameter groups, scheduled tunables other than the learning rate, ...) do
  not convert.

A learning-rate schedule carries over. ``mlx.optimizers`` keeps its state in the parameters' dtype; pass
``parameters`` to :func:`to_mlx` / :func:`to_mlx_state` to cast each entry to its parameter's dtype (mlx_optim keeps
float32 state for bf16/fp16 parameters, and :func:`from_mlx_state` casts low-precision entries to float32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as mlx_opt
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_optim.base import GLOBAL_KEY, Optimizer, OptimizerCore
from mlx_optim.registry import load_optimizer

__all__ = ["ADAFACTOR_NO_CAP", "from_mlx", "from_mlx_state", "to_mlx", "to_mlx_state", "supported"]

# AdaFactor's betas[1] caps its decay 1 - t^decay_rate; MLX's Adafactor has no cap. This value is below 1 (it passes
# the [0, 1) check) and is 1.0 once stored in float32: min(1, 1 - t^c) never binds.
ADAFACTOR_NO_CAP = 1.0 - 2.0**-30


def _f(x: Any) -> float:
    """A float32 tunable as the Python float it was most likely given as (``0.9``, not ``0.8999999761581421``)."""
    return float(str(np.float32(float(x))))


def _lr_of_mlx(opt: mlx_opt.Optimizer) -> Any:
    schedule = opt._schedulers.get("learning_rate")
    if schedule is not None:
        return schedule
    return float(opt.state["learning_rate"]) if "learning_rate" in opt.state else None


def _lr_of_ours(opt: Optimizer) -> Any:
    schedule = opt._schedulers.get("learning_rate")
    return schedule if schedule is not None else _f(opt.state["learning_rate"])


def _step(opt: Any) -> int:
    return int(opt.state["step"].item()) if "step" in opt.state else 0


@dataclasses.dataclass(frozen=True)
class _Pair:
    mlx_cls: type
    ours_name: str  # registry name
    names: dict[str, str]  # per-parameter state entry: mlx name -> ours
    ours_kwargs: Callable[[Any], dict]  # mlx optimizer -> keywords of ours (raises ValueError where not the same)
    # (ours, the step its state is at) -> keywords of the mlx class (raises ValueError where not the same)
    mlx_kwargs: Callable[[Any, int], dict]
    drop: Callable[[Any], set[str]] = lambda opt: set()  # mlx entries that carry nothing for this configuration

    @property
    def ours_cls(self) -> type:
        return load_optimizer(self.ours_name)


def _no(cond: bool, msg: str) -> None:
    if cond:
        raise ValueError(msg)


def _tunable(opt: Optimizer, name: str) -> float:
    return _f(opt.tunable(name))


def _zero(opt: Optimizer, *names: str) -> None:
    for name in names:
        _no(
            _tunable(opt, name) != 0.0,
            f"{type(opt).__name__}: {name}={_tunable(opt, name)} has no mlx.optimizers counterpart (it must be 0)",
        )


def _off(opt: Optimizer, *names: str) -> None:
    for name in names:
        _no(bool(getattr(opt, name)), f"{type(opt).__name__}: {name}=True has no mlx.optimizers counterpart")


# ----------------------------------------------------------------------------- per optimizer
def _sgd_ours(o: mlx_opt.SGD) -> dict:
    momentum = max(float(o.momentum), 0.0)
    _no(
        momentum > 0 and o.dampening > 0 and _step(o) == 0,
        "mlx.optimizers.SGD dampens its first momentum step and torch's SGD does not: with dampening > 0 convert "
        "after the first step (the momentum buffers mean the same from then on)",
    )
    return {
        "learning_rate": _lr_of_mlx(o),
        "momentum": momentum,
        "dampening": float(o.dampening),
        "weight_decay": float(o.weight_decay),
        "nesterov": bool(o.nesterov),
    }


def _sgd_mlx(o: Any, step: int) -> dict:
    momentum, dampening = _tunable(o, "momentum"), _tunable(o, "dampening")
    _no(
        momentum > 0 and dampening > 0 and step == 0,
        "SGD: torch's first momentum step is undampened and mlx.optimizers.SGD's is not: with dampening > 0 "
        "convert after the first step",
    )
    return {
        "learning_rate": _lr_of_ours(o),
        "momentum": momentum,
        "weight_decay": _tunable(o, "weight_decay"),
        "dampening": dampening,
        "nesterov": o.nesterov,
    }


def _rmsprop_mlx(o: Any, step: int) -> dict:
    _zero(o, "weight_decay", "momentum")
    _off(o, "centered")
    return {"learning_rate": _lr_of_ours(o), "alpha": _tunable(o, "alpha"), "eps": _tunable(o, "eps")}


def _adagrad_mlx(o: Any, step: int) -> dict:
    _zero(o, "lr_decay", "weight_decay")
    _no(
        o.initial_accumulator_value != 0 and step == 0,
        "Adagrad: initial_accumulator_value != 0 has no mlx.optimizers counterpart before the first step "
        "(afterwards the accumulator carries it)",
    )
    return {"learning_rate": _lr_of_ours(o), "eps": _tunable(o, "eps")}


def _adadelta_mlx(o: Any, step: int) -> dict:
    _zero(o, "weight_decay")
    return {"learning_rate": _lr_of_ours(o), "rho": _tunable(o, "rho"), "eps": _tunable(o, "eps")}


def _adam_ours(o: mlx_opt.Adam) -> dict:
    _no(
        not o.bias_correction,
        f"mlx.optimizers.{type(o).__name__}(bias_correction=False) (MLX's default) steps without bias correction; "
        "mlx_optim's Adam / AdamW always bias-correct, as torch's: only bias_correction=True converts",
    )
    kw = {"learning_rate": _lr_of_mlx(o), "betas": tuple(float(b) for b in o.betas), "eps": float(o.eps)}
    if isinstance(o, mlx_opt.AdamW):
        kw["weight_decay"] = float(o.weight_decay)
    return kw


def _adam_mlx(o: Any, step: int) -> dict:
    _off(o, "amsgrad")
    kw = {
        "learning_rate": _lr_of_ours(o),
        "betas": [_tunable(o, "beta1"), _tunable(o, "beta2")],
        "eps": _tunable(o, "eps"),
        "bias_correction": True,
    }
    if o.decoupled_weight_decay:
        kw["weight_decay"] = _tunable(o, "weight_decay")
    else:
        _zero(o, "weight_decay")  # L2 Adam: MLX's Adam has no weight decay
    return kw


def _adamax_ours(o: mlx_opt.Adamax) -> dict:
    _no(
        float(o.eps) != 0.0,
        "mlx.optimizers.Adamax divides by max(b2 v, |g|) + eps without bias correction; mlx_optim's AdaMax "
        "(pytorch_optimizer's) by max(b2 u, |g| + eps): only eps=0 is the same update",
    )
    return {"learning_rate": _lr_of_mlx(o), "betas": tuple(float(b) for b in o.betas), "eps": 0.0, "adam_debias": True}


def _adamax_mlx(o: Any, step: int) -> dict:
    _zero(o, "eps", "weight_decay")
    _off(o, "adanorm")
    _no(not o.adam_debias, "AdaMax: mlx.optimizers.Adamax does not bias-correct: only adam_debias=True converts")
    return {"learning_rate": _lr_of_ours(o), "betas": [_tunable(o, "beta1"), _tunable(o, "beta2")], "eps": 0.0}


def _lion_mlx(o: Any, step: int) -> dict:
    _off(o, "use_gc", "adanorm", "cautious", "fixed_decay")
    _no(not o.weight_decouple, "Lion: weight_decouple=False has no mlx.optimizers counterpart")
    return {
        "learning_rate": _lr_of_ours(o),
        "betas": [_tunable(o, "beta1"), _tunable(o, "beta2")],
        "weight_decay": _tunable(o, "weight_decay"),
    }


def _adafactor_ours(o: mlx_opt.Adafactor) -> dict:
    lr = _lr_of_mlx(o)
    return {
        **({} if lr is None else {"learning_rate": lr}),
        "betas": (None if o.beta_1 is None else float(o.beta_1), ADAFACTOR_NO_CAP),
        "decay_rate": float(o.decay_rate),
        "weight_decay": float(o.weight_decay),
        "clip_threshold": float(o.clip_threshold),
        "scale_parameter": bool(o.scale_parameter),
        "relative_step": bool(o.relative_step),
        "warmup_init": bool(o.warmup_init),
        "eps1": float(o.eps[0]),
        "eps2": float(o.eps[1]),
        "momentum_dtype": mx.float32,
    }


def _adafactor_mlx(o: Any, step: int) -> dict:
    _off(o, "ams_bound", "cautious", "fixed_decay")
    _no(not o.weight_decouple, "AdaFactor: weight_decouple=False has no mlx.optimizers counterpart")
    _no(
        float(o.tunable("beta2")) != 1.0,
        f"AdaFactor caps its decay 1 - t^decay_rate at betas[1]={_tunable(o, 'beta2')} (pytorch_optimizer); "
        "mlx.optimizers.Adafactor does not: only betas[1]=mlx_optim.interop.ADAFACTOR_NO_CAP converts",
    )
    _no(
        o.use_momentum and o.momentum_dtype != mx.float32,
        f"AdaFactor: momentum_dtype={o.momentum_dtype} (mlx.optimizers.Adafactor keeps its momentum in the "
        "parameters' dtype): only momentum_dtype=mx.float32 converts",
    )
    return {
        "learning_rate": None if o.relative_step else _lr_of_ours(o),  # relative steps: MLX keeps no rate
        "eps": (_tunable(o, "eps1"), _tunable(o, "eps2")),
        "clip_threshold": _tunable(o, "clip_threshold"),
        "decay_rate": _tunable(o, "decay_rate"),
        "beta_1": _tunable(o, "beta1") if o.use_momentum else None,
        "weight_decay": _tunable(o, "weight_decay"),
        "scale_parameter": o.scale_parameter,
        "relative_step": o.relative_step,
        "warmup_init": o.warmup_init,
    }


def _plain(*names: str) -> Callable[[Any], dict]:
    """mlx keywords that are ours unchanged (plus the learning rate)."""
    return lambda o: {"learning_rate": _lr_of_mlx(o), **{n: float(getattr(o, n)) for n in names}}


def _lion_ours(o: mlx_opt.Lion) -> dict:
    return {
        "learning_rate": _lr_of_mlx(o),
        "betas": tuple(float(b) for b in o.betas),
        "weight_decay": float(o.weight_decay),
    }


_ADAM_NAMES = {"m": "exp_avg", "v": "exp_avg_sq"}
_PAIRS = (
    _Pair(
        mlx_opt.SGD,
        "sgd",
        {"v": "momentum_buffer"},
        _sgd_ours,
        _sgd_mlx,
        drop=lambda o: set() if o.use_momentum else {"v"},
    ),
    _Pair(mlx_opt.RMSprop, "rmsprop", {"v": "square_avg"}, _plain("alpha", "eps"), _rmsprop_mlx),
    _Pair(mlx_opt.Adagrad, "adagrad", {"v": "sum"}, _plain("eps"), _adagrad_mlx),
    _Pair(mlx_opt.AdaDelta, "adadelta", {"v": "square_avg", "u": "acc_delta"}, _plain("rho", "eps"), _adadelta_mlx),
    _Pair(mlx_opt.AdamW, "adamw", _ADAM_NAMES, _adam_ours, _adam_mlx),
    _Pair(mlx_opt.Adam, "adam", _ADAM_NAMES, _adam_ours, _adam_mlx),
    _Pair(mlx_opt.Adamax, "adamax", {"m": "exp_avg", "v": "exp_inf"}, _adamax_ours, _adamax_mlx),
    _Pair(mlx_opt.Lion, "lion", {"m": "exp_avg"}, _lion_ours, _lion_mlx),
    _Pair(
        mlx_opt.Adafactor,
        "adafactor",
        {k: k for k in ("exp_avg", "exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col")},
        _adafactor_ours,
        _adafactor_mlx,
    ),
)

_NO_EQUIVALENT = {
    mlx_opt.Muon: "mlx.optimizers.Muon runs Newton-Schulz in float32 and updates non-matrices by plain momentum; "
    "mlx_optim's Muon follows pytorch_optimizer (bfloat16 Newton-Schulz, an AdamW fallback): the steps differ",
    mlx_opt.MultiOptimizer: "convert each of its optimizers (mlx_optim has no MultiOptimizer; see create_optimizer)",
}


def supported() -> list[tuple[str, str]]:
    """``(mlx.optimizers class name, mlx_optim class name)`` for every pair that converts."""
    return [(p.mlx_cls.__name__, p.ours_cls.__name__) for p in _PAIRS]


def _pair_of_mlx(opt: Any) -> _Pair:
    if not isinstance(opt, mlx_opt.Optimizer) or isinstance(opt, OptimizerCore):
        raise ValueError(f"expected an mlx.optimizers optimizer, got {type(opt).__name__}")
    for cls, why in _NO_EQUIVALENT.items():
        if type(opt) is cls:
            raise ValueError(f"no mlx_optim equivalent of mlx.optimizers.{cls.__name__}: {why}")
    for pair in _PAIRS:
        if type(opt) is pair.mlx_cls:
            return pair
    names = ", ".join(p.mlx_cls.__name__ for p in _PAIRS)
    raise ValueError(f"no mlx_optim equivalent of {type(opt).__name__}; converted: {names}")


def _pair_of_ours(opt: Any, step: int) -> tuple[_Pair, dict]:
    """The pair of an mlx_optim optimizer and the mlx keywords of its configuration (ValueError if none).

    ``step``: the step its state is (or will be) at; some configurations convert only after the first step.
    """
    if not isinstance(opt, OptimizerCore):
        raise ValueError(f"expected an mlx_optim optimizer, got {type(opt).__name__}")
    name = type(opt).__name__
    pair = None
    for p in _PAIRS:
        if type(opt) is p.ours_cls:
            pair = p
            break
    if pair is None:
        names = ", ".join(p.ours_cls.__name__ for p in _PAIRS)
        raise ValueError(f"no mlx.optimizers equivalent of mlx_optim.{name}; converted: {names}")
    _no(opt.maximize, f"{name}: maximize=True has no mlx.optimizers counterpart")
    _no(opt.state_dtype is not None, f"{name}: state_dtype has no mlx.optimizers counterpart")
    quantized = getattr(opt, "state_quantization", None)
    _no(quantized is not None, f"{name}: {getattr(quantized, 'name', '')} state has no mlx.optimizers counterpart")
    _no(opt.decay_filter is not None, f"{name}: decay_filter (per-parameter weight decay) has no mlx counterpart")
    _no(opt.packer is not None, f"{name}: a packed optimizer does not convert (its state is one flat buffer)")
    _no(bool(opt.groups), f"{name}: parameter groups have no mlx.optimizers counterpart")
    scheduled = sorted(set(opt._schedulers) - {"learning_rate"})
    _no(bool(scheduled), f"{name}: scheduled {', '.join(scheduled)} (mlx.optimizers schedules the learning rate only)")
    if pair.ours_name == "adam" and opt.decoupled_weight_decay:  # Adam(decoupled_weight_decay=True) is AdamW
        pair = next(p for p in _PAIRS if p.mlx_cls is mlx_opt.AdamW)
    return pair, pair.mlx_kwargs(opt, step)


# ----------------------------------------------------------------------------- state trees
def _is_leaf_state(node: Any) -> bool:
    return isinstance(node, dict) and all(isinstance(v, mx.array) for v in node.values())


def _map_leaves(tree: Any, fn: Callable[[dict, str], dict], path: str = "") -> Any:
    if _is_leaf_state(tree):
        return fn(tree, path)
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn, f"{path}{k}.") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_leaves(v, fn, f"{path}{i}.") for i, v in enumerate(tree))
    raise ValueError(f"unexpected {type(tree).__name__} in the optimizer state at '{path[:-1]}'")


def _split(state: dict) -> tuple[dict, dict]:
    """Root-level arrays (step, learning rate) and the per-parameter subtrees (not mlx_optim's ``_global``)."""
    scalars = {k: v for k, v in state.items() if isinstance(v, mx.array)}
    trees = {k: v for k, v in state.items() if not isinstance(v, mx.array) and k != GLOBAL_KEY}
    return scalars, trees


def _as_tree(state: dict) -> dict:
    """A nested state; a flat one (``dict(tree_flatten(state))``, e.g. from ``mx.load``) is unflattened."""
    if any("." in k for k in state):
        return tree_unflatten(list(state.items()))
    return state


def from_mlx_state(opt: Optimizer, state: dict) -> Optimizer:
    """Load an ``mlx.optimizers`` state into ``opt``, the equivalent mlx_optim optimizer (configured by you).

    Args:
        opt: an mlx_optim optimizer of a converted kind (see the module docstring), configured as the mlx
            optimizer the state comes from (the state holds no hyperparameters). ``ValueError`` if its
            configuration has no mlx counterpart.
        state: the mlx optimizer's ``state``, nested or flat as saved by ``dict(tree_flatten(opt.state))``.
            Its ``step``, ``learning_rate`` and per-parameter entries are taken (renamed); low-precision entries
            become float32, mlx_optim's state dtype for bf16/fp16 parameters.

    Returns:
        ``opt``, whose next update continues the mlx optimizer's run.
    """
    state = _as_tree(dict(state))
    scalars, trees = _split(state)
    _no("step" not in scalars, "the mlx state has no 'step' entry")
    pair, _ = _pair_of_ours(opt, int(scalars["step"].item()))
    drop = pair.drop(opt)

    def convert(leaf: dict, path: str) -> dict:
        out = {}
        for k, v in leaf.items():
            if k in drop:
                continue
            if k not in pair.names:
                raise ValueError(
                    f"state entry '{path}{k}' is not one of mlx.optimizers.{pair.mlx_cls.__name__}'s "
                    f"({', '.join(pair.names)}): is this the state of another optimizer?"
                )
            out[pair.names[k]] = v.astype(mx.float32) if v.dtype in (mx.bfloat16, mx.float16) else v
        return out

    new = {k: v for k, v in opt.state.items() if isinstance(v, mx.array) or k == GLOBAL_KEY}
    new["step"] = scalars["step"].astype(opt.state["step"].dtype)
    if "learning_rate" in scalars:
        new["learning_rate"] = scalars["learning_rate"].astype(mx.float32)
    new.update(_map_leaves(trees, convert))
    opt.state = new
    return opt


def to_mlx_state(opt: Optimizer, parameters: Any = None) -> dict:
    """The state of ``opt`` in the layout of the equivalent ``mlx.optimizers`` optimizer.

    Args:
        opt: an mlx_optim optimizer of a converted kind; ``ValueError`` if its configuration has no mlx counterpart.
        parameters: optional parameter tree (``model.trainable_parameters()``); when given, each entry takes its
            parameter's dtype, as ``mlx.optimizers`` keeps it.

    Returns:
        A nested dict (``step``, ``learning_rate``, the renamed per-parameter entries), ready for
        ``mlx_opt.state = ...`` or ``mx.save_safetensors(f, dict(tree_flatten(...)))``.
    """
    pair, kwargs = _pair_of_ours(opt, _step(opt))
    back = {v: k for k, v in pair.names.items()}
    dtypes = {k: v.dtype for k, v in tree_flatten(parameters)} if parameters is not None else {}

    def convert(leaf: dict, path: str) -> dict:
        out = {}
        for k, v in leaf.items():
            if k not in back:
                raise ValueError(f"state entry '{path}{k}' has no mlx.optimizers.{pair.mlx_cls.__name__} counterpart")
            dtype = dtypes.get(path[:-1], v.dtype)
            out[back[k]] = v if v.dtype == dtype else v.astype(dtype)
        return out

    scalars, trees = _split(opt.state)
    out = {"step": scalars["step"]}
    if kwargs.get("learning_rate") is not None:  # (MLX's Adafactor with relative steps keeps none)
        out["learning_rate"] = scalars["learning_rate"]
    out.update(_map_leaves(trees, convert))
    return out


def from_mlx(opt: mlx_opt.Optimizer) -> Optimizer:
    """The mlx_optim optimizer equivalent to the ``mlx.optimizers`` optimizer ``opt``, with its state.

    ``ValueError`` names what does not mean the same (e.g. ``Adam(bias_correction=False)``, MLX's default).
    A learning-rate schedule carries over.
    """
    pair = _pair_of_mlx(opt)
    new = pair.ours_cls(**pair.ours_kwargs(opt))
    if _step(opt) > 0 or any(not isinstance(v, mx.array) for v in opt.state.values()):
        from_mlx_state(new, opt.state)
    return new


def to_mlx(opt: Optimizer, parameters: Any = None) -> mlx_opt.Optimizer:
    """The ``mlx.optimizers`` optimizer equivalent to the mlx_optim optimizer ``opt``, with its state.

    ``ValueError`` names a configuration ``mlx.optimizers`` cannot express (``amsgrad``, ``maximize``, ...).
    ``parameters``: see :func:`to_mlx_state`.
    """
    pair, kwargs = _pair_of_ours(opt, _step(opt))
    new = pair.mlx_cls(**kwargs)
    new.state = to_mlx_state(opt, parameters)
    return new
