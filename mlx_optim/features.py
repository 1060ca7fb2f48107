"""Composable optimizer features: each technique implemented once, switched on for any optimizer.

The ``_sn`` and ``_e`` optimizers of :mod:`mlx_optim.variants` are a base optimizer plus a bundle of the same
few techniques. Each technique is one implementation in the :class:`Features` mixin, and a variant is
``class Ranger_e(Features, Ranger)`` with a ``features`` dict of the keywords it exposes and their
defaults, and ``base_defaults`` for the base's own keywords whose default it changes
(:mod:`mlx_optim.variants`). :func:`compose` builds such a class for any optimizer, e.g.
``compose(AdamW, cautious=True, agc=True)``.

Where each feature acts (``g`` the gradient, ``p`` the parameter, ``new`` the base optimizer's result,
``delta = p - new`` the base step):

* **gradient transforms** (generic; applied to the whole gradient tree before the base optimizer sees
  it, so they also reach bases that do their moment math in ``prepare``), in this order:

  - ``orthograd``: OrthoGrad, the part of ``g`` orthogonal to ``p`` rescaled to ``|g|``
    (:func:`mlx_optim.functional.orthograd`, pytorch_optimizer's ``OrthoGrad`` exactly);
  - ``agc``: adaptive gradient clipping (:func:`mlx_optim.functional.agc`, ``agc_eps``,
    ``agc_clip_val``; pytorch_optimizer's ``agc``);
  - ``pnm``: positive-negative momentum: two EMAs of ``g`` with decay ``pnm_beta**2`` updated on
    alternate steps, the base sees ``((1+b0) m_this - b0 m_other) / sqrt((1+b0)^2 + b0^2)`` with
    ``b0 = pnm_beta0`` (pytorch_optimizer's ``PNM`` momentum; ``sgd`` + ``pnm`` *is* ``PNM``);
  - ``aem``: AdEMAMix's slow EMA ``s = beta3_t s + (1-beta3_t) g`` added to the gradient,
    ``g + alpha_t s`` (``alpha``, ``beta3``, ``t_alpha_beta3`` with AdEMAMix's warm-up schedules).
    As a transform the slow term also enters the base's second moment, unlike AdEMAMix, where it is
    added to the numerator only.

* **update transforms** (generic; on ``delta``; their ``g`` is the gradient after ``orthograd`` /
  ``agc`` but before ``pnm`` / ``aem``, which are momenta rather than gradients), in this order:

  - ``cautious``: zero ``delta`` where it disagrees with the sign of ``g`` and rescale by
    ``numel / (kept + 1)`` (pytorch_optimizer's ``apply_cautious``). The mask sees the whole step,
    including a decoupled weight decay the base folded into it (pytorch_optimizer masks the
    gradient-based update only; identical without weight decay);
  - ``trust_ratio``: LAMB's layer-wise ``delta * |p| / |delta / lr|`` (1 where a norm is 0),
    ``trust_clip`` caps the ratio at 1 (LAMBC);
  - ``DAdapt``: D-Adaptation (Defazio & Mishchenko, 2023) of the step size. With ``|.|`` the norm
    over the whole tree, ``g_1`` the first gradient and ``x_0`` the initial parameters (kept in
    ``state["dadapt_x0"]``): ``lam_t = d / |g_1|``, ``s <- s + lam_t g_t`` (per leaf),
    ``r <- r + lam_t <g_t, x_0 - x_t>`` (over all leaves) and
    ``d <- max(d, min(r / |s|, d * growth_rate))`` (from ``d0``), used from the next step on. For
    convex losses ``r / |s|`` is a lower bound on the distance ``|x_0 - x_*|`` whatever the iterates
    (Prodigy's argument), so it holds for any base. The step taken is the base's step rescaled to that
    size, ``d * delta_t / max_{i<t} |delta_i|`` (``lr_1 |g_1|`` on the first step; the running maximum
    keeps a base's own warm-up, e.g. Ranger21's, from inflating later steps): ``d`` is the step size
    and the base's ``learning_rate`` only shapes its schedule. For SGD this is DAdaptSGD
    (``momentum=0``) except that pytorch_optimizer's ``DAdaptSGD`` uses ``2 r / |s|``, which is not a
    lower bound for other bases (it made the Sophia variants diverge in our tests).

* **Lookahead** (generic, last): slow weights in ``state["lookahead_slow"]``; every
  ``lookahead_merge_time`` steps ``p <- lerp(p, slow, 1 - lookahead_blending_alpha)``, ``slow <- p``
  (pytorch_optimizer's ``Lookahead``). The merge is reported to the base through the
  ``lookahead_moved`` hook (DAdaptLion_e counts it in its distance estimate).

* **hooks in the base optimizer** (not generic):

  - ``sn``: subset-norm second moments (pytorch_optimizer's ``AdamWSN``): each tensor is viewed as
    ``(numel / k, k)`` (``k`` the largest divisor of ``numel`` not above ``subset_size``, or
    ``int(sqrt(numel) / |subset_size|)`` when it is negative) and one second moment is kept per row,
    the EMA of the row's *sum* of squared gradients. The base declares which state entries are
    element-wise second moments (class attribute ``subset_norm_keys``) and routes them through
    :func:`sn_reduce` (before its EMA) and :func:`sn_expand` (before the denominator), both the
    identity when the state entry has the parameter's shape (``sn`` off). ``sn=True`` on a base
    without ``subset_norm_keys`` raises ``ValueError``.
  - ``sophia`` (Muon family only: bases with the ``adamw_update`` fallback of
    :class:`mlx_optim.optimizers.muon._MuonFamily`): the AdamW fallback becomes SophiaH's update,
    ``m = lerp(m, g, 1 - b1)``, on refresh steps ``h = lerp(h, h_hat, 1 - b2)`` with Hutchinson's
    estimate ``h_hat = mean_i z_i * (H z_i)`` (``num_samples`` probes from ``hessian_distribution``,
    every ``update_period`` steps), ``p <- p - adamw_lr * clip(m / max(h, eps), -p, p)`` (``b1, b2``
    the ``adamw_betas``, ``eps`` the fallback's). The curvature needs the calling convention of
    :class:`mlx_optim.SophiaH`: ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn), *batch)``
    (HVPs by ``mx.jvp``); a plain ``update`` leaves ``h`` as it is.
  - bases with a built-in Lookahead (the Ranger line) call ``self.transform_step(g, p, new, state)``
    before their own Lookahead, so the update transforms see the optimizer step, not the merge.

With every feature off, a composed class runs exactly the base optimizer's arithmetic (bit for bit;
``tests/test_features.py``).
"""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace
from typing import Any, ClassVar

import mlx.core as mx
from mlx.utils import tree_map

from mlx_optim import functional as F
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce, subset_size_for
from mlx_optim.optimizers import adahessian as so
from mlx_optim.optimizers.adahessian import DISTRIBUTIONS, ESTIMATE

__all__ = ["Features", "compose", "sn_reduce", "sn_expand", "FEATURE_DEFAULTS", "FEATURE_DOCS"]

_FEATURE_GRAD = "_feature_grad"  # the transformed gradient, from prepare to update_single (never saved)
_FEATURE_SIGNAL = "_feature_signal"  # the gradient before pnm/aem, for the update transforms (never saved)

# Every feature keyword with its "off" value. A variant exposes a subset with its own defaults.
FEATURE_DEFAULTS: dict[str, Any] = {
    "orthograd": False,
    "agc": False,
    "agc_eps": 1e-3,
    "agc_clip_val": 1e-2,
    "pnm": False,
    "pnm_beta": 0.9,
    "pnm_beta0": 1.0,
    "aem": False,
    "alpha": 5.0,
    "beta3": 0.9999,
    "t_alpha_beta3": None,
    "sn": False,
    "subset_size": -1,
    "cautious": False,
    "trust_ratio": False,
    "trust_clip": False,
    "DAdapt": False,
    "d0": 1e-6,
    "growth_rate": float("inf"),
    "lookahead": False,
    "lookahead_merge_time": 5,
    "lookahead_blending_alpha": 0.5,
    "sophia": False,
    "p": 1e-2,
    "update_period": 10,
    "num_samples": 1,
    "hessian_distribution": "gaussian",
}

# What each feature keyword means, for the ``Args:`` sections of the composed classes (:mod:`mlx_optim.variants`
# appends the variant's default). One entry per keyword of :data:`FEATURE_DEFAULTS`.
FEATURE_DOCS: dict[str, str] = {
    "orthograd": "OrthoGrad: replace each gradient by its component orthogonal to the parameter, rescaled to the "
    "gradient's norm (pytorch_optimizer's ``OrthoGrad``).",
    "agc": "Adaptive gradient clipping: rescale each gradient so that its unit-wise norm is at most ``agc_clip_val`` "
    "times ``max(unit-wise norm of the parameter, agc_eps)`` (pytorch_optimizer's ``agc``).",
    "agc_eps": "Adaptive gradient clipping's lower bound of the parameter norm (> 0).",
    "agc_clip_val": "Adaptive gradient clipping's largest gradient-to-parameter norm ratio (> 0).",
    "pnm": "Positive-negative momentum: two EMAs of the gradient with decay ``pnm_beta**2``, updated on alternate "
    "steps; the base optimizer sees ``((1 + b0) m_this - b0 m_other) / sqrt((1 + b0)^2 + b0^2)`` with "
    "``b0 = pnm_beta0``.",
    "pnm_beta": "Positive-negative momentum's beta, in [0, 1) (each EMA decays by its square).",
    "pnm_beta0": "Weight ``b0`` of the negative momentum (>= 0).",
    "aem": "AdEMAMix's slow EMA ``s = beta3_t s + (1 - beta3_t) g`` added to the gradient, ``g + alpha_t s`` (as a "
    "gradient transform it also enters the base's second moment, unlike AdEMAMix).",
    "alpha": "Weight of the slow EMA (>= 0), warmed up linearly over ``t_alpha_beta3`` steps when that is set.",
    "beta3": "Decay rate of the slow EMA, in [0, 1), warmed up in half-life space over ``t_alpha_beta3`` steps when "
    "that is set.",
    "t_alpha_beta3": "Warm-up length in steps of the ``alpha`` and ``beta3`` schedules (> 0); ``None`` uses the "
    "constants.",
    "sn": "Subset-norm second moments (pytorch_optimizer's ``AdamWSN``): each tensor, viewed as ``(numel / k, k)``, "
    "keeps one second moment per row, the EMA of the row's sum of squared gradients.",
    "subset_size": "Subset size ``k``: the largest divisor of ``numel`` not above ``subset_size``, or "
    "``int(sqrt(numel) / |subset_size|)`` when it is negative; not 0.",
    "cautious": "Cautious masking: zero the step where it disagrees with the gradient's sign and rescale it by "
    "``numel / (kept + 1)``.",
    "trust_ratio": "LAMB's layer-wise trust ratio ``|p| / |step / lr|`` applied to the step (1 where a norm is 0).",
    "trust_clip": "Cap the trust ratio at 1 (LAMBC).",
    "DAdapt": "D-Adaptation of the step size: the base's step rescaled to ``d * step / max_i |step_i|``, ``d`` a "
    "lower bound on the distance to the solution grown from ``d0`` (see :mod:`mlx_optim.features`); the base's "
    "``learning_rate`` then only shapes the schedule.",
    "d0": "Initial D-Adaptation estimate ``d`` (> 0).",
    "growth_rate": "Largest factor by which ``d`` may grow per step (>= 1).",
    "lookahead": "Lookahead: every ``lookahead_merge_time`` steps ``p <- lerp(p, slow, 1 - "
    "lookahead_blending_alpha)``, ``slow <- p``.",
    "lookahead_merge_time": "Steps between Lookahead merges (>= 1).",
    "lookahead_blending_alpha": "Lookahead interpolation factor toward the fast weights, in [0, 1].",
    "sophia": "Muon family only: the AdamW fallback becomes SophiaH's clipped update with a Hutchinson curvature "
    "estimate; call ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn), *batch)``.",
    "p": "Clip bound of the Sophia fallback's step (> 0).",
    "update_period": "Steps between the Sophia fallback's curvature refreshes (>= 1).",
    "num_samples": "Hutchinson probes per curvature refresh (>= 1).",
    "hessian_distribution": "Distribution of the Hutchinson probes, ``'gaussian'`` or ``'rademacher'``.",
}


# ---------------------------------------------------------------------------- subset-norm hooks


def trust_scale(p: mx.array, delta: mx.array, lr: mx.array, clip: bool) -> mx.array:
    """LAMB's trust ratio ``|p| / |delta / lr|`` (1 where either norm is 0), capped at 1 with ``clip``."""
    w_norm = F.norm(p)
    u_norm = F.norm(delta) / mx.where(lr > 0, lr, 1.0)
    ratio = mx.where((w_norm > 0) & (u_norm > 0), w_norm / mx.where(u_norm > 0, u_norm, 1.0), 1.0)
    return mx.minimum(ratio, 1.0) if clip else ratio


# ---------------------------------------------------------------------------- the mixin
class Features:
    """Mixin adding the composable features to an :class:`mlx_optim.Optimizer` subclass.

    Use as the first base: ``class X(Features, Base)``, with class attribute ``features`` mapping the
    feature keywords ``X`` exposes to their defaults (see :data:`FEATURE_DEFAULTS`). The constructor
    takes the base's arguments plus those keywords (keyword-only). See the module docstring for the
    semantics of each feature.
    """

    zero_compatible = None  # feature transforms are not routed through global_sum

    features: ClassVar[dict[str, Any]] = {}
    elementwise: ClassVar[bool] = False  # sn, cautious, trust ratio and D-Adapt reduce over tensors / the tree
    # The base's own keywords whose default the variant changes (e.g. a base that has its own ``cautious``).
    base_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.features) - set(FEATURE_DEFAULTS)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown feature keywords {sorted(unknown)}")
        base = next(c for c in cls.__mro__[1:] if not issubclass(c, Features) and "__init__" in c.__dict__)
        sig = inspect.signature(base.__init__)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        clash = set(cls.features) & {p.name for p in params}
        if clash:
            raise TypeError(f"{cls.__name__}: feature keywords {sorted(clash)} clash with {base.__name__}'s")
        unknown_base = set(cls.base_defaults) - {p.name for p in params}
        if unknown_base:
            raise TypeError(f"{cls.__name__}: base_defaults {sorted(unknown_base)} are not {base.__name__} keywords")
        params = [p.replace(default=cls.base_defaults[p.name]) if p.name in cls.base_defaults else p for p in params]
        cls._positions = {p.name: i for i, p in enumerate(params)}
        tail = [p for p in params if p.name == "state_dtype"]
        head = [p for p in params if p.name != "state_dtype"]
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in cls.features.items()]
        cls.__signature__ = inspect.Signature(head + extra + tail)
        # Bases with a built-in Lookahead call transform_step themselves, before it.
        cls._base_transforms = any("transform_step" in c.__dict__ for c in cls.__mro__ if not issubclass(c, Features))

    def __init__(self, *args: Any, **kwargs: Any):
        chosen = {k: kwargs.pop(k, v) for k, v in type(self).features.items()}
        for k, v in type(self).base_defaults.items():
            if k not in kwargs and self._positions[k] >= len(args):
                kwargs[k] = v
        super().__init__(*args, **kwargs)
        self._setup_features(**{**FEATURE_DEFAULTS, **chosen})

    # ------------------------------------------------------------------ configuration
    def _feature_constant(self, name: str, value: Any, low=None, high=None, interval: str = "[]") -> float:
        if callable(value):
            raise ValueError(f"{type(self).__name__}: {name} must be a number (feature constants are not schedulable)")
        self._check(name, value, low, high, interval)
        return float(value)

    def _setup_features(self, **f: Any) -> None:
        """Validate the feature keywords and keep them in ``self.feat`` (apart from the base's attributes)."""
        fx = SimpleNamespace(**{k: f[k] for k in ("orthograd", "agc", "pnm", "aem", "sn", "cautious")})
        fx.trust_ratio, fx.trust_clip, fx.DAdapt, fx.lookahead = (
            bool(f["trust_ratio"]),
            bool(f["trust_clip"]),
            bool(f["DAdapt"]),
            bool(f["lookahead"]),
        )
        fx.agc_eps = self._feature_constant("agc_eps", f["agc_eps"], 0.0, None, "(]")
        fx.agc_clip_val = self._feature_constant("agc_clip_val", f["agc_clip_val"], 0.0, None, "(]")
        fx.pnm_beta = self._feature_constant("pnm_beta", f["pnm_beta"], 0.0, 1.0, "[)")
        fx.pnm_beta0 = self._feature_constant("pnm_beta0", f["pnm_beta0"], 0.0)
        fx.alpha = self._feature_constant("alpha", f["alpha"], 0.0)
        fx.beta3 = self._feature_constant("beta3", f["beta3"], 0.0, 1.0, "[)")
        t = f["t_alpha_beta3"]
        fx.t_alpha_beta3 = None if t is None else self._feature_constant("t_alpha_beta3", t, 0.0, None, "(]")
        fx.subset_size = int(f["subset_size"])
        if fx.sn:
            if fx.subset_size == 0:
                raise ValueError(f"{type(self).__name__}: subset_size=0 is not allowed; use a positive size or -1")
            if not getattr(self, "subset_norm_keys", ()):
                raise ValueError(f"{type(self).__name__}: sn=True needs a base optimizer with subset_norm_keys")
        self._check("d0", f["d0"], 0.0, None, "(]")
        self._check("growth_rate", f["growth_rate"], 1.0)
        self._check("lookahead_merge_time", f["lookahead_merge_time"], 1)
        self._check("lookahead_blending_alpha", f["lookahead_blending_alpha"], 0.0, 1.0)
        fx.lookahead_merge_time = int(f["lookahead_merge_time"])
        if fx.DAdapt:
            self._hyper("dadapt_growth_rate", f["growth_rate"], 1.0)
            self.globals["dadapt_d"] = mx.array(float(f["d0"]), mx.float32)
            self.globals["dadapt_numerator"] = mx.array(0.0, mx.float32)
            for k in ("dadapt_s_sq", "dadapt_u_sq", "dadapt_g_norm0", "dadapt_u_max"):
                self.globals[k] = mx.array(0.0, mx.float32)
        if fx.lookahead:
            self._hyper("lookahead_alpha", f["lookahead_blending_alpha"], 0.0, 1.0)
        fx.sophia = bool(f["sophia"])
        if fx.sophia:
            if not any("adamw_update" in c.__dict__ for c in type(self).__mro__ if not issubclass(c, Features)):
                raise ValueError(f"{type(self).__name__}: sophia=True needs a Muon-family base (its AdamW fallback)")
            self._hyper("p", f["p"], 0.0, None, "(]")
            self._check("update_period", f["update_period"], 1)
            self._check("num_samples", f["num_samples"], 1)
            self._choice("hessian_distribution", f["hessian_distribution"], DISTRIBUTIONS)
            fx.update_period, fx.num_samples = int(f["update_period"]), int(f["num_samples"])
            fx.hessian_distribution = f["hessian_distribution"]
            self.globals["sophia_key"] = mx.random.key(0)
        self._sophia_mode = "none"
        fx.grad = bool(fx.orthograd or fx.agc or fx.pnm or fx.aem)
        fx.update = bool(fx.cautious or fx.trust_ratio or fx.DAdapt)
        self.feat = fx

    def enabled_features(self) -> list[str]:
        """The names of the features switched on."""
        names = ("orthograd", "agc", "pnm", "aem", "sn", "cautious", "trust_ratio", "DAdapt", "lookahead", "sophia")
        return [n for n in names if getattr(self.feat, n)]

    # ------------------------------------------------------------------ state
    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        fx = self.feat
        if fx.sn:
            rows = parameter.size // subset_size_for(parameter.size, fx.subset_size)
            for key in self.subset_norm_keys:
                if key in state and state[key].shape == parameter.shape:
                    state[key] = self.zeros(parameter, (rows, 1))
        if fx.pnm:
            state["pnm_pos"], state["pnm_neg"] = self.zeros(parameter), self.zeros(parameter)
        if fx.aem:
            state["aem_slow"] = self.zeros(parameter)
        if fx.DAdapt:
            state["dadapt_s"] = self.zeros(parameter)
            state["dadapt_x0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        if fx.lookahead:
            state["lookahead_slow"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        if fx.sophia and "exp_avg_sq" in state and not self.uses_muon(parameter):
            del state["exp_avg_sq"]
            state["hessian_moment"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        super().step_scalars(hp)
        fx = self.feat
        if fx.sophia:
            if self._sophia_mode == "period":
                hp.sophia_refresh = F.every(hp.step - 1, fx.update_period)
            else:
                hp.sophia_refresh = mx.array(False)
        if fx.lookahead:
            hp.lookahead_sync = F.every(hp.step, fx.lookahead_merge_time)
        if fx.DAdapt:
            self._finish_dadapt(hp)

    def _finish_dadapt(self, hp) -> None:
        """The previous step's D-Adaptation update, ``d <- max(d, min(r / |s|, d * growth_rate))``.

        ``r`` (``dadapt_numerator``) and ``|s|^2`` (``dadapt_s_sq``) were accumulated over the leaves
        during the previous step (``d`` is kept while ``|s| = 0`` or ``learning_rate = 0``, as in
        DAdaptSGD). ``dadapt_u_max`` keeps the largest base-step norm ``max_i |delta_i|`` so far.
        Running this at the start of the next step keeps every hook inside ``apply_gradients`` (also
        for optimizers with their own calling convention) and gives the same sequence of ``d``.
        """
        st = self.globals
        d, s_norm = st["dadapt_d"], mx.sqrt(st["dadapt_s_sq"])
        d_hat = st["dadapt_numerator"] / mx.where(s_norm > 0, s_norm, 1.0)
        grown = mx.maximum(d, mx.minimum(d_hat, d * hp.dadapt_growth_rate))
        st["dadapt_d"] = mx.where((s_norm > 0) & (hp.lr > 0), grown, d)
        st["dadapt_u_max"] = mx.maximum(st["dadapt_u_max"], mx.sqrt(st["dadapt_u_sq"]))
        st["dadapt_s_sq"] = st["dadapt_u_sq"] = mx.zeros((), mx.float32)

    # ------------------------------------------------------------------ the step
    def prepare(self, gradients: dict, parameters: dict) -> None:
        """Gradient transforms, then D-Adaptation's per-step multipliers, then the base's ``prepare``.

        The base's ``prepare`` and ``update_single`` see the transformed gradients; the transformed
        leaf reaches ``update_single`` through the leaf's state (``_FEATURE_GRAD``, removed again
        there), so the caller's gradient tree is not modified.
        """
        signal = gradients
        if self.feat.grad:
            gradients, signal = self._transform_gradients(gradients, parameters)
        if self.feat.DAdapt:
            self._dadapt_scales(signal)
        super().prepare(gradients, parameters)

    def _dadapt_scales(self, signal: Any) -> None:
        """``hp.dadapt_lam = d / |g_1|`` (for ``s``) and ``hp.dadapt_scale = d / max_{i<t} |delta_i|`` (the step).

        ``|g_1|`` is the first step's gradient norm over the whole tree (DAdaptSGD's ``g0_norm``); on the
        first step, before any base step is known, ``lr_1 |g_1|`` stands in for ``|delta_1|`` (equal for SGD).
        """
        st, hp = self.globals, self.hp
        known = st["dadapt_g_norm0"]
        g_norm = mx.sqrt(F.sum_of_squares(signal))
        st["dadapt_g_norm0"] = g0 = mx.where(known > 0, known, g_norm)
        u0 = st["dadapt_u_max"]
        u0 = mx.where(u0 > 0, u0, hp.lr * g0)
        d = st["dadapt_d"]
        hp.dadapt_lam = d / mx.where(g0 > 0, g0, 1.0)
        hp.dadapt_scale = d / mx.where(u0 > 0, u0, 1.0)

    def _transform_gradients(self, gradients: Any, params: Any) -> Any:
        fx, hp = self.feat, self.hp
        odd = mx.remainder(hp.step, 2) == 1
        if fx.aem:
            beta1 = hp.beta1 if hasattr(hp, "beta1") else mx.array(0.9, mx.float32)
            alpha_t, beta3_t = F.ademamix_schedules(hp.step, fx.t_alpha_beta3, fx.alpha, beta1, fx.beta3)
        b0 = fx.pnm_beta0
        pn_norm = 1.0 / math.sqrt((1 + b0) ** 2 + b0**2)

        def one(g: mx.array, p: mx.array, state: dict) -> mx.array:
            dtype = self.compute_dtype(p)
            g, p = g.astype(dtype), p.astype(dtype)
            if self.maximize:  # the transforms see the maximize-applied gradient, as update_single does
                g = -g
            if fx.orthograd:
                g = F.orthograd(p, g)
            if fx.agc:
                g = F.agc(p, g, fx.agc_eps, fx.agc_clip_val)
            if fx.pnm or fx.aem:
                state[_FEATURE_SIGNAL] = g
            if fx.pnm:
                this = mx.where(odd, state["pnm_pos"], state["pnm_neg"])
                other = mx.where(odd, state["pnm_neg"], state["pnm_pos"])
                this = F.lerp(this, g, 1.0 - fx.pnm_beta**2)
                state["pnm_pos"] = mx.where(odd, this, state["pnm_pos"])
                state["pnm_neg"] = mx.where(odd, state["pnm_neg"], this)
                g = (this * (1.0 + b0) - other * b0) * pn_norm
            if fx.aem:
                state["aem_slow"] = slow = F.ema(state["aem_slow"], g, beta3_t)
                g = g + alpha_t * slow
            state[_FEATURE_GRAD] = g
            return -g if self.maximize else g  # prepare's convention: maximize not applied yet

        transformed = tree_map(one, gradients, params, self.state)
        if not (fx.pnm or fx.aem):
            return transformed, transformed
        return transformed, tree_map(lambda p, state: state[_FEATURE_SIGNAL], params, self.state)

    def transform_step(self, g: mx.array, p: mx.array, new: mx.array, state: dict) -> mx.array:
        """The update transforms on the base step ``delta = p - new``: cautious, trust ratio, D-Adapt."""
        fx = self.feat
        if not fx.update:
            return new
        g = state.get(_FEATURE_SIGNAL, g)  # the gradient before the momentum-like transforms (pnm, aem)
        delta = p - new
        if fx.cautious:
            delta = F.cautious_mask(delta, g)
        if fx.trust_ratio:
            delta = delta * trust_scale(p, delta, self.hp.lr, fx.trust_clip)
        if fx.DAdapt:
            st, hp, f32 = self.globals, self.hp, mx.float32
            st["dadapt_u_sq"] = st["dadapt_u_sq"] + mx.sum(mx.square(delta.astype(f32)))
            displacement = state["dadapt_x0"] - p
            st["dadapt_numerator"] = st["dadapt_numerator"] + hp.dadapt_lam * mx.sum((g * displacement).astype(f32))
            state["dadapt_s"] = s = state["dadapt_s"] + hp.dadapt_lam * g
            st["dadapt_s_sq"] = st["dadapt_s_sq"] + mx.sum(mx.square(s.astype(f32)))
            delta = hp.dadapt_scale * delta
        return p - delta

    # ------------------------------------------------------------------ the Sophia branch (Muon family)
    def step_with(self, model, loss_and_grad_fn, *args: Any, **kwargs: Any):
        """With ``sophia``: loss, gradient and a Hutchinson estimate (used on refresh steps), then the update."""
        if not self.feat.sophia:
            return super().step_with(model, loss_and_grad_fn, *args, **kwargs)

        fx = self.feat
        lg = so._require_loss_and_grad(
            type(self).__name__, loss_and_grad_fn, "mlx_optim.value_and_grad(model, loss_fn)"
        )
        self.globals["sophia_key"], key = mx.random.split(self.globals["sophia_key"])
        loss, grads, hessian = so.hutchinson_diagonal(
            lg, model, key, fx.num_samples, fx.hessian_distribution, *args, **kwargs
        )
        if not self._initialized:
            self.init(model.trainable_parameters())
        so._attach(self.state, hessian)
        self._sophia_mode = "period"
        try:
            model.update(self.apply_gradients(grads, model, loss=loss))
        finally:
            self._sophia_mode = "none"
            so._detach(self.state)
        return loss

    def adamw_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """The Muon family's AdamW fallback, or SophiaH's update with ``sophia``."""
        if not self.feat.sophia:
            return super().adamw_update(g, p, state)

        hp = self.hp
        p, g = self.decay(p, g, "adamw_wd", hp.adamw_lr)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_adamw_beta1)
        h, h_hat = state["hessian_moment"], state.pop(ESTIMATE, None)
        if h_hat is not None:
            h = mx.where(hp.sophia_refresh, F.lerp(h, h_hat.astype(g.dtype), hp.one_minus_adamw_beta2), h)
        state["exp_avg"], state["hessian_moment"] = m, h
        eps = getattr(hp, self._ADAMW_EPS)
        return p - hp.adamw_lr * mx.clip(m / mx.maximum(h, eps), -hp.p, hp.p)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if self.feat.grad:
            g = state.pop(_FEATURE_GRAD)
        new = super().update_single(g, p, state)
        if not self._base_transforms:
            new = self.transform_step(g, p, new, state)
        state.pop(_FEATURE_SIGNAL, None)
        if self.feat.lookahead:
            hp, slow = self.hp, state["lookahead_slow"]
            merged = F.torch_lerp(new, slow, 1.0 - hp.lookahead_alpha)
            self.lookahead_moved(mx.where(hp.lookahead_sync, new - merged, 0.0), state)
            new, state["lookahead_slow"] = F.lookahead_select(new, slow, merged, hp.lookahead_sync, chained=False)
        return new

    def lookahead_moved(self, step: mx.array, state: dict) -> None:
        """Hook: the Lookahead merge moved this leaf by ``-step`` (zero on steps without a merge).

        Bases whose step-size estimate is built from their own steps (DAdaptLion's distance estimate)
        override it to count the merge as one more step; by default it is ignored."""


def compose(base: type, name: str | None = None, **features: Any) -> type:
    """A :class:`Features` subclass of ``base`` exposing ``features`` (keyword -> default), unregistered.

    ``compose(AdamW, cautious=True, agc=True)(learning_rate=1e-3)`` is AdamW with cautious masking and
    adaptive gradient clipping.
    """
    missing = set(features) - set(FEATURE_DEFAULTS)
    if missing:
        raise TypeError(f"unknown feature keywords {sorted(missing)}")
    return type(name or f"{base.__name__}WithFeatures", (Features, base), {"features": dict(features)})
