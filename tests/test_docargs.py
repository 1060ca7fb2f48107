"""mlx_optim.docargs.fill_args: a family's shared Args: entries written once, laid out per class."""

from __future__ import annotations

import inspect

from mlx_optim.docargs import fill_args

SHARED = {
    "lr": "Step size.",
    "eps": "Term added to the denominator (>= 0).",
    "dtype": "dtype of the state. ``None`` (default): the parameter's.",
}


class _Base:
    def __init__(self, lr: float = 1e-3, beta: float = 0.9, eps: float = float("inf"), *, dtype=None):
        pass


@fill_args(SHARED)
class _Doc(_Base):
    """Summary.

    Args:
        beta (float): Its own entry, kept as written,
            over two lines. Default ``0.9``.
    """


def test_shared_entries_fill_the_section_in_signature_order():
    doc = inspect.getdoc(_Doc)
    args = doc[doc.index("Args:") :].splitlines()
    assert args == [
        "Args:",
        "    lr: Step size. Default ``1e-3``.",
        "    beta (float): Its own entry, kept as written,",
        "        over two lines. Default ``0.9``.",
        "    eps: Term added to the denominator (>= 0). Default ``inf``.",
        "    dtype: dtype of the state. ``None`` (default): the parameter's.",
    ]


def test_a_class_without_an_args_section_gets_one():
    @fill_args(SHARED)
    class Bare(_Base):
        """Summary only."""

        def __init__(self, lr: float = 2.5e-3, *, dtype=None):
            pass

    doc = inspect.getdoc(Bare)
    assert doc.splitlines() == [
        "Summary only.",
        "",
        "Args:",
        "    lr: Step size. Default ``2.5e-3``.",
        "    dtype: dtype of the state. ``None`` (default): the parameter's.",
    ]
