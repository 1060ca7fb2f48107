"""Optimizers that wrap optimizers, and the SAM family.

Registered here: ``lookahead`` (pytorch_optimizer's Lookahead), ``scout`` (holocron), ``orthograd``,
``kerasoptions`` (Keras 3's clipping / EMA / loss-scale / accumulation options), ``sam``, ``asam``, ``gsam``,
``wsam``, ``looksam``, ``friendlysam`` and the standalone ``bsam``; gradient surgery for several losses
``pcgrad`` / ``ppcgrad`` (:mod:`mlx_optim.wrappers.gradient_surgery`), the Grokfast gradient filters
``gradfilterma`` / ``gradfilterema``, ``trac``, ``magma`` (:mod:`mlx_optim.wrappers.magma`) and
``applyiffinite`` (optax's ``apply_if_finite``: skip steps with non-finite gradients).

Design (details in :mod:`mlx_optim.wrappers.base`):

* A :class:`Wrapper` takes the inner optimizer as an instance (any ``mlx_optim`` or ``mlx.optimizers``
  optimizer, wrappers included), a class or a registered name plus ``optimizer_kwargs`` / ``learning_rate``.
  ``opt.state`` holds the inner optimizer's state dict object under ``"inner"`` and the wrapper's
  per-parameter state under ``"slots"``, so ``mx.compile(step, inputs=[model.state, opt.state], ...)``
  captures both and ``opt.state = tree_unflatten(...)`` resumes both exactly; ``opt.learning_rate`` is the
  inner optimizer's.
* Periodic logic ("every k steps", "perturb or descend") is ``mx.where`` on step counters in the state.
* The SAM family (:class:`Phased`) has two calling forms: ``opt.step_with(model, loss_and_grad_fn, *batch)``
  (both gradient evaluations in one call) and ``transparent=True`` (one phase per ordinary ``update`` call,
  for mlx-lm's compiled one-update-per-step trainer). Compose as ``SAM(Lookahead(base))``.
"""

from mlx_optim.wrappers.base import Phased, Wrapper, disable_running_stats, enable_running_stats
from mlx_optim.wrappers.finite import ApplyIfFinite
from mlx_optim.wrappers.gradient_surgery import PCGrad, PPCGrad, value_and_task_grads
from mlx_optim.wrappers.grokfast import GradFilterEMA, GradFilterMA
from mlx_optim.wrappers.keras import KerasOptions
from mlx_optim.wrappers.lookahead import Lookahead, Scout
from mlx_optim.wrappers.magma import Magma
from mlx_optim.wrappers.orthograd import OrthoGrad
from mlx_optim.wrappers.sam import ASAM, BSAM, GSAM, SAM, WSAM, FriendlySAM, LookSAM
from mlx_optim.wrappers.trac import TRAC

__all__ = [
    "ASAM",
    "ApplyIfFinite",
    "BSAM",
    "FriendlySAM",
    "GradFilterEMA",
    "GradFilterMA",
    "KerasOptions",
    "GSAM",
    "LookSAM",
    "Lookahead",
    "Magma",
    "OrthoGrad",
    "PCGrad",
    "PPCGrad",
    "Phased",
    "SAM",
    "Scout",
    "TRAC",
    "WSAM",
    "Wrapper",
    "disable_running_stats",
    "enable_running_stats",
    "value_and_task_grads",
]
