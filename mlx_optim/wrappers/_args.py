"""The ``Args:`` text the wrappers share (:func:`mlx_optim.docargs.fill_args`)."""

from __future__ import annotations

from mlx_optim.docargs import fill_args

_INNER = (
    "an instance (any ``mlx_optim`` or ``mlx.optimizers`` optimizer, wrappers included), an optimizer class or a "
    "registered name (then built with ``optimizer_kwargs`` and ``learning_rate``)."
)

WRAPPER_ARGS: dict[str, str] = {
    "optimizer": f"The inner optimizer: {_INNER}",
    "base_optimizer": f"The inner (base) optimizer: {_INNER}",
    "learning_rate": "The inner optimizer's learning rate, a float or a schedule (keyword-only): used to build it, "
    "or set on a given instance; ``None`` keeps the inner optimizer's own.",
    "optimizer_kwargs": "Keywords for the inner optimizer when it is given by name or class (keyword-only).",
    "state_dtype": "dtype of the wrapper's own per-parameter state (keyword-only); ``None``: float32 for "
    "bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's state follows its own "
    "``state_dtype``.",
}
"""``Args:`` text of the keywords every wrapper shares (without the default, which comes from the signature)."""

wrapper_args = fill_args(WRAPPER_ARGS)
"""Class decorator: the wrapper's ``Args:`` section completed with :data:`WRAPPER_ARGS`."""
