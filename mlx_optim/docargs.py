"""``Args:`` entries a family of classes shares, written once: :func:`fill_args` completes each class's docstring.

A family keeps a dict ``{keyword: text}`` of the entries its classes share; each class writes in its own
``Args:`` section only the keywords it documents differently (or alone) and is decorated with
``fill_args(family_dict)``, which lays out the whole section in signature order. The default is taken from the
signature unless the text states it.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Mapping

__all__ = ["fill_args"]


def _wrap_entry(text: str) -> list[str]:
    """``text`` wrapped at 116 columns for an ``Args:`` entry (8 spaces, continuation 12); ````...```` kept whole."""
    protected = re.sub(r"``[^`]*``", lambda m: m.group(0).replace(" ", "\x00"), text)
    lines = textwrap.wrap(protected, 116, initial_indent=" " * 8, subsequent_indent=" " * 12, break_on_hyphens=False)
    return [line.replace("\x00", " ") for line in lines]


def fill_args(shared: Mapping[str, str]) -> Callable[[type], type]:
    """Class decorator: complete the ``Args:`` section of the class's own docstring in signature order.

    Args:
        shared: ``{keyword: text}`` for the keywords the class does not document itself. ``Default ``...````
            (from the signature) or ``Required.`` is appended unless the text states the default itself
            (``Default ````...```` or ``(default)``).
    """

    def decorate(cls: type) -> type:
        head, _, own_text = cls.__dict__["__doc__"].partition("\n    Args:\n")
        own: dict[str, list[str]] = {}
        for line in own_text.rstrip().splitlines():
            match = re.match(r" {8}(\w+)", line)
            if match:
                own[match.group(1)] = []
            own[next(reversed(own))].append(line)
        out = []
        for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            if name in own:
                out += own[name]
                continue
            text = shared[name]
            if "Default ``" not in text and "(default)" not in text:
                default = "Required." if param.default is param.empty else f"Default ``{_show(param.default)}``."
                text = f"{text} {default}"
            out += _wrap_entry(f"{name}: {text}")
        cls.__doc__ = head.rstrip() + "\n\n    Args:\n" + "\n".join(out) + "\n    "
        return cls

    return decorate


def _show(value: object) -> str:
    return "inf" if value == float("inf") else repr(value)
