"""Docstrings are for users: every optimizer documents each constructor keyword under ``Args:``, and nothing in
the package points outside the repository or tells the project's history (that is docs/provenance.md)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_optim.registry import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"keras seed|keras-seed|the seed\b|seed's|catalog row|catalog app|shared/|\.\./shared", re.I)


def documented_args(doc: str) -> set[str]:
    """Names listed in the Google-style ``Args:`` section of ``doc``."""
    match = re.search(r"^(\s*)Args:\s*$(.*?)(?=^\1\S|\Z)", doc, re.M | re.S)
    if not match:
        return set()
    indent = len(match.group(1))
    names = set()
    for line in match.group(2).splitlines():
        m = re.match(r"^(\s*)\**([A-Za-z_]\w*)(\s*\(.*?\))?\s*:", line)
        if m and len(m.group(1)) > indent and len(m.group(1)) <= indent + 4:
            names.add(m.group(2))
    return names


def keywords(cls) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_keyword_is_documented(name):
    cls = OPTIMIZERS[name]
    doc = inspect.getdoc(cls) or ""
    missing = [k for k in keywords(cls) if k not in documented_args(doc)]
    assert not missing, f"{cls.__name__}: keywords missing from its docstring's Args: section: {missing}"


def test_args_parser_reads_a_google_style_section():
    doc = "Summary.\n\nArgs:\n    learning_rate: the step size.\n    betas (tuple): moments.\n"
    doc += "        More: x.\n\nNotes: y\n"
    assert documented_args(doc) == {"learning_rate", "betas"}


def test_no_history_or_outside_paths_in_the_package():
    hits = []
    for path in sorted((ROOT / "mlx_optim").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "move provenance to docs/provenance/<name>.md:\n" + "\n".join(hits[:40])


def test_provenance_doc_is_up_to_date():
    result = subprocess.run([sys.executable, "scripts/gen_provenance.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_args_from_completes_a_members_args_in_signature_order():
    from mlx_optim.docargs import args_from

    class Root:
        """Root.

        Args:
            lr: Step size. Default ``0.1``.
            beta: Decay, in [0, 1). Default ``0.9``.
            mode: A choice. Default ``"a"``.
        """

        def __init__(self, lr=0.1, beta=0.9, mode="a"):
            pass

    @args_from(Root)
    class Member:
        """Member.

        Args:
            gamma: Its own keyword. Default ``2``.
        """

        def __init__(self, lr=0.1, gamma=2, beta=0.5, mode="b"):
            pass

    assert documented_args(Member.__doc__) == {"lr", "gamma", "beta", "mode"}
    doc = inspect.cleandoc(Member.__doc__)
    assert doc.index("lr:") < doc.index("gamma:") < doc.index("beta:") < doc.index("mode:")
    assert "lr: Step size. Default ``0.1``." in doc
    assert "beta: Decay, in [0, 1). Default ``0.5``." in doc  # the member's default, not the root's
    assert 'mode: A choice. Default ``"b"``.' in doc

    class Bare(Root):
        """Bare.

        Args:
            lr: Step size.
        """

    with pytest.raises(ValueError, match="states no default"):

        @args_from(Bare)
        class Other:
            """Other.

            Args:
                beta: Decay. Default ``0.9``.
            """

            def __init__(self, lr=0.5, beta=0.9):
                pass
