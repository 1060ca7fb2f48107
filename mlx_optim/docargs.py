"""``Args:`` entries a family of classes shares, written once.

Two decorators complete a class's ``Args:`` section in signature order: :func:`fill_args` from a family's dict
``{keyword: text}`` (each class writes only the keywords it documents differently or alone; the default is taken
from the signature unless the text states it), and :func:`args_from` from another class's docstring (a member of a
family whose root documents the shared keywords; a different default replaces the root's). ``register`` appends
the ``groups`` entry with :func:`args_span`.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable, Mapping

__all__ = ["args_from", "fill_args"]


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


def args_span(lines: list[str]) -> tuple[int, int, int] | None:
    """``(start, end, indent)`` of a docstring's ``Args:`` section: the header's line, the line after its last
    entry, the header's indentation; ``None`` without one."""
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end, indent


def args_entries(doc: str) -> dict[str, list[str]]:
    """The entries of a docstring's ``Args:`` section by keyword, each as its lines without the section's
    indentation (the first line starts with the keyword)."""
    lines = doc.split("\n")
    span = args_span(lines)
    if span is None:
        return {}
    start, end, indent = span
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[start + 1 : end]:
        text = line[indent + 4 :]
        head = re.match(r"\**([A-Za-z_]\w*)(\s*\(.*?\))?\s*:", text)
        if head and not text[:1].isspace():
            current = entries.setdefault(head.group(1), [])
        current.append(text)
    return entries


def args_from(source: type) -> Callable[[type], type]:
    """Class decorator: complete the ``Args:`` section of the class's own docstring with ``source``'s entries for
    the constructor keywords it does not document, in signature order (for a family whose members share most
    keywords). Where the class's default differs from ``source``'s, the entry's last "Default" value is replaced
    by the class's (``ValueError`` when the entry states none).

    Args:
        source: The class whose docstring documents the shared keywords.
    """

    def complete(cls: type) -> type:
        doc = cls.__dict__.get("__doc__") or ""
        lines = doc.split("\n")
        span = args_span(lines)
        if span is None:
            raise ValueError(f"args_from: {cls.__name__}'s docstring has no Args: section")
        start, end, indent = span
        own, inherited = args_entries(doc), args_entries(source.__doc__ or "")
        theirs = inspect.signature(source.__init__).parameters
        out, params = [], inspect.signature(cls.__init__).parameters
        for name, param in params.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            entry = own.get(name) or list(inherited.get(name, ()))
            if name not in own and entry and param.default != theirs[name].default:
                text = "\n".join(entry)
                default = f'"{param.default}"' if isinstance(param.default, str) else repr(param.default)
                matches = list(re.finditer(r"Default ``[^`]*``", text))
                if not matches:
                    raise ValueError(f"args_from: {source.__name__}'s entry {name!r} states no default to change")
                last = matches[-1]
                entry = (text[: last.start()] + f"Default ``{default}``" + text[last.end() :]).split("\n")
            out += entry
        out += [line for name, entry in own.items() if name not in params for line in entry]
        pad = " " * (indent + 4)
        cls.__doc__ = "\n".join(lines[: start + 1] + [pad + line if line else "" for line in out] + lines[end:])
        return cls

    return complete
