"""``Args:`` entries a family of classes shares, written once: :func:`fill_args` completes each class's docstring.

A family keeps a dict ``{keyword: text}`` of the entries its classes share; each class writes in its own
``Args:`` section only the keywords it documents differently (or alone) and is decorated with
``fill_args(family_dict)``, which lays out the whole section in signature order. The default is taken from the
signature unless the text states it.
"""

from __future__ import annotations

import ast
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
        shared: ``{keyword: text}`` for the keywords the class does not document itself. The default as the
            signature writes it (or ``Required.``) is appended, unless the text states it (it contains
            ``Default`` followed by a literal, or ``(default)``).
    """

    def decorate(cls: type) -> type:
        head, _, own_text = cls.__dict__["__doc__"].partition("\n    Args:\n")
        own: dict[str, list[str]] = {}
        for line in own_text.rstrip().splitlines():
            match = re.match(r" {8}(\w+)", line)
            if match:
                own[match.group(1)] = []
            own[next(reversed(own))].append(line)
        out, written = [], _written_defaults(cls.__init__)
        for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            if name in own:
                out += own[name]
                continue
            text = shared[name]
            if "Default ``" not in text and "(default)" not in text:
                default = "Required." if param.default is param.empty else f"Default ``{written[name]}``."
                text = f"{text} {default}"
            out += _wrap_entry(f"{name}: {text}")
        cls.__doc__ = head.rstrip() + "\n\n    Args:\n" + "\n".join(out) + "\n    "
        return cls

    return decorate


def _written_defaults(init: Callable) -> dict[str, str]:
    """Each keyword's default as the signature writes it (``6e-2``, not ``0.06``); ``float("inf")`` as ``inf``."""
    try:
        source = textwrap.dedent(inspect.getsource(init))
    except (OSError, TypeError):  # no source (a frozen or compiled-only install): the values' repr
        params = list(inspect.signature(init).parameters.values())
        return {p.name: "inf" if p.default == float("inf") else repr(p.default) for p in params}
    args = ast.parse(source).body[0].args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    written = {a.arg: ast.get_source_segment(source, d) for a, d in pairs}
    return {k: "inf" if v in ('float("inf")', "float('inf')") else v for k, v in written.items()}
