"""MkDocs hook and griffe extension: the docstrings' reST roles as Markdown.

The docstrings are Google style with a few reST roles: ``:math:`x``` (inline), ``.. math::`` followed by an
indented block, and ``:class:`` / ``:mod:`` / ``:func:`` references. They are rewritten to ``$x$``,
``$$ ... $$`` and code before Markdown sees them, in the pages (``on_page_markdown``: docs/optimizers.md holds
the class docstrings) and in the docstrings mkdocstrings renders (:class:`RstMath`, loaded by mkdocs.yml's
``extensions``). ``pymdownx.arithmatex`` (generic mode) turns the math into spans that MathJax typesets in the
browser; without JavaScript they stay readable TeX.
"""

from __future__ import annotations

import inspect
import re

import griffe

_INLINE = re.compile(r":math:`([^`]+)`")
_XREF = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|obj|exc):`(~?)([^`]+)`")
_BLOCK = re.compile(r"^([ \t]*)\.\. math::[ \t]*\n((?:\1[ \t]+\S.*\n|[ \t]*\n)+)", re.M)


def _block(m: re.Match) -> str:
    indent = m.group(1)
    lines = [line.strip() for line in m.group(2).splitlines() if line.strip()]
    body = "\n".join(f"{indent}{line}" for line in lines)
    return f"\n{indent}$$\n{body}\n{indent}$$\n\n"


def rst_math(text: str) -> str:
    """``text`` with ``:math:`x``` as ``$x$``, ``.. math::`` blocks as ``$$`` blocks and the cross-reference
    roles (``:class:`~mlx_optim.AdamW```) as code."""
    if ":" not in text:
        return text
    text = _XREF.sub(lambda m: f"``{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}``", text)
    if ":math:" not in text and ".. math::" not in text:
        return text
    if not text.endswith("\n"):
        return rst_math(text + "\n")[:-1]
    text = _BLOCK.sub(_block, text)
    return _INLINE.sub(lambda m: f"${m.group(1).strip()}$", text)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return rst_math(markdown)


class RstMath(griffe.Extension):
    """Rewrites every docstring's reST math before mkdocstrings parses it; gives the classes that declare a
    ``__signature__`` (the ``_e`` / ``_sn`` variants, whose ``__init__`` takes ``**kwargs``, and every optimizer,
    whose metaclass adds ``groups``) that signature."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_math(obj.docstring.value)

    def on_class_members(self, *, node, cls: griffe.Class, **kwargs) -> None:
        runtime = getattr(node, "obj", None)
        if not isinstance(runtime, type) or isinstance(vars(runtime).get("__signature__"), property):
            return  # a metaclass that computes its classes' signatures
        if "__signature__" not in vars(runtime) and "__signature__" not in vars(type(runtime)):
            return  # the optimizers' metaclass adds ``groups`` to every constructor's signature
        params = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for p in inspect.signature(runtime).parameters.values():
            default = None if p.default is inspect.Parameter.empty else repr(p.default)
            params.append(griffe.Parameter(p.name, kind=griffe.ParameterKind(p.kind.description), default=default))
        init = griffe.Function("__init__", parameters=griffe.Parameters(*params), lineno=cls.lineno)
        cls.set_member("__init__", init)
