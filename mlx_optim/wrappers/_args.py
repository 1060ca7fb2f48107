"""The ``Args:`` text the wrappers share, written once: :func:`fill_args` completes each class's docstring."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Mapping

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


def _wrap_entry(text: str) -> list[str]:
    """``text`` wrapped at 116 columns for an ``Args:`` entry (8 spaces, continuation 12); ````...```` kept whole."""
    protected = re.sub(r"``[^`]*``", lambda m: m.group(0).replace(" ", "\x00"), text)
    lines = textwrap.wrap(protected, 116, initial_indent=" " * 8, subsequent_indent=" " * 12, break_on_hyphens=False)
    return [line.replace("\x00", " ") for line in lines]


def fill_args(shared: Mapping[str, str] = WRAPPER_ARGS) -> Callable[[type], type]:
    """Class decorator: complete the ``Args:`` section of the class's docstring in signature order, with the
    entries the class writes itself and ``shared[name]`` (plus the signature's default) for each other keyword."""

    def decorate(cls: type) -> type:
        head, _, own_text = cls.__dict__["__doc__"].partition("\n    Args:\n")
        own: dict[str, list[str]] = {}
        for line in own_text.rstrip().splitlines():
            match = re.match(r" {8}(\w+):", line)
            if match:
                own[match.group(1)] = []
            own[next(reversed(own))].append(line)
        out = []
        for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            if name in own:
                out += own[name]
                continue
            default = "Required." if param.default is param.empty else f"Default ``{param.default!r}``."
            out += _wrap_entry(f"{name}: {shared[name]} {default}")
        cls.__doc__ = head.rstrip() + "\n\n    Args:\n" + "\n".join(out) + "\n    "
        return cls

    return decorate
