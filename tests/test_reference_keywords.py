"""Every keyword a reference accepts is accepted here, or listed with its reason in ``mlx_optim._unsupported``.

A reference's keywords are read from the reference itself (the class named by the registry's ``reference``
attribute, resolved in the installed torch / pytorch_optimizer / pytorch_ranger):

* its constructor's signature (without ``params``; ``lr`` is ``learning_rate`` here);
* the ``**kwargs`` options its constructors read (``kwargs.get("x")``, ``kwargs["x"]``, ``kwargs.pop("x")``);
* the parameter-group options its step reads (``group.get("x")``, ``group["x"]``) and that the class does not
  write itself (its ``defaults`` dict, ``group["x"] = ...``, ``group.setdefault("x")``, ``{**group, "x": ...}``,
  the groups it builds ``{"params": ..., "x": ...}``), in the methods reachable from its constructors and
  ``step`` through ``self.<method>``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
import textwrap

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim
from mlx_optim import _unsupported

NAMES = mlx_optim.get_supported_optimizers()
LIBRARIES = ("torch", "pytorch_optimizer", "pytorch_ranger")
# References that are no installed class (NumPy / torch transcriptions in tests/parity/rows, a repository that is
# not a package): their keywords are the transcription's, written from ours; nothing to read.
TRANSCRIBED = {
    "adafactorbigvision",
    "applyiffinite",
    "emoneco",
    "emozeal",
    "emozeal_sn",
    "kerasoptions",
    "ppcgrad",
    "ralars",
    "ranger25",
    "scout",
    "sophiag",
    "sophiag_e",
    "tadam",
}


def resolve(reference: str):
    """The installed class (or function) a registry ``reference`` string names, or None for a transcription."""
    m = re.match(r"mlx_optim\.\w+ \((.*)\) \+ mlx_optim\.features$", reference)
    if m:  # a Features variant: its base's reference
        return resolve(m.group(1))
    m = re.match(r"(torch\.optim|pytorch_optimizer|pytorch_ranger)\.(\w+)", reference)
    if not m:
        return None
    module = importlib.import_module(m.group(1))
    if hasattr(module, m.group(2)):
        return getattr(module, m.group(2))
    for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):  # e.g. grokfast.gradfilter_ema
        sub = importlib.import_module(info.name)
        if hasattr(sub, m.group(2)):
            return getattr(sub, m.group(2))
    raise LookupError(f"reference {reference!r} is not in the installed {m.group(1)}")


def _methods(ref: type) -> dict[str, ast.FunctionDef]:
    """The methods ``ref`` resolves by name (first definition in its MRO), plus every library class's ``__init__``
    (reached through ``super().__init__``); torch's ``Optimizer`` base is generic machinery, left out."""
    out: dict[str, ast.FunctionDef] = {}
    for cls in inspect.getmro(ref):
        if cls.__module__.split(".")[0] not in LIBRARIES or cls.__module__ == "torch.optim.optimizer":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):
            continue
        for node in tree.body[0].body:
            if isinstance(node, ast.FunctionDef):
                out.setdefault(node.name, node)
                if node.name == "__init__":
                    out[f"__init__@{cls.__qualname__}"] = node
    return out


def _reachable(ref: type) -> dict[str, ast.FunctionDef]:
    methods = _methods(ref)
    todo = [n for n in methods if n.startswith("__init__")] + ["step"]
    seen: dict[str, ast.FunctionDef] = {}
    while todo:
        name = todo.pop()
        if name in seen or name not in methods:
            continue
        seen[name] = methods[name]
        for node in ast.walk(methods[name]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                todo.append(node.attr)
    return seen


def _const_keys(d: ast.Dict) -> set[str]:
    return {k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


@functools.cache
def reference_keywords(ref) -> dict[str, str]:
    """``{keyword: where}`` (``signature`` / ``kwargs`` / ``group``) for a reference class or function."""
    sig = inspect.signature(ref).parameters
    found = {
        k: "signature"
        for k, p in sig.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and k not in ("self", "params")
    }
    if not isinstance(ref, type):
        return found
    kwargs_read, group_read, group_written = set(), set(), set()
    for name, fn in _reachable(ref).items():
        in_init = name.startswith("__init__")
        for node in ast.walk(fn):
            if isinstance(node, ast.Dict):
                spread = {v.id for k, v in zip(node.keys, node.values) if k is None and isinstance(v, ast.Name)}
                if "group" in spread or "params" in _const_keys(node):
                    group_written |= _const_keys(node)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                if isinstance(target, ast.Name) and target.id == "defaults":
                    group_written |= _const_keys(node.value)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                base, attr, key = node.func.value.id, node.func.attr, node.args[0].value
                if base == "kwargs" and attr in ("get", "pop") and in_init:
                    kwargs_read.add(key)
                elif base == "group" and attr == "get":
                    group_read.add(key)
                elif base == "group" and attr == "setdefault":
                    group_written.add(key)
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and isinstance(node.slice, ast.Constant)
            ):
                base, key = node.value.id, node.slice.value
                if base == "kwargs" and in_init and isinstance(node.ctx, ast.Load):
                    kwargs_read.add(key)
                elif base == "group":
                    (group_read if isinstance(node.ctx, ast.Load) else group_written).add(key)
    for key in sorted(kwargs_read):
        found.setdefault(key, "kwargs")
    for key in sorted(group_read - group_written - {"params", "step"}):
        found.setdefault(key, "group")
    return found


def accepts(cls, keyword: str) -> bool:
    return ("learning_rate" if keyword == "lr" else keyword) in inspect.signature(cls).parameters


@functools.cache
def _missing(name: str) -> dict[str, str]:
    cls = mlx_optim.load_optimizer(name)
    ref = resolve(cls.reference)
    return {k: where for k, where in reference_keywords(ref).items() if not accepts(cls, k)}


RESOLVED = [n for n in NAMES if n not in TRANSCRIBED]


def test_the_transcribed_references_are_exactly_those_without_an_installed_class():
    unresolved = {n for n in NAMES if resolve(mlx_optim.load_optimizer(n).reference) is None}
    assert unresolved == TRANSCRIBED


@pytest.mark.parametrize("name", RESOLVED)
def test_every_reference_keyword_is_accepted_or_listed(name):
    missing = _missing(name)
    cls = mlx_optim.load_optimizer(name)
    unlisted = {k: where for k, where in missing.items() if _unsupported.reason(cls, k) is None}
    assert not unlisted, (
        f"{name}: reference keywords neither accepted nor listed with a reason in mlx_optim/_unsupported.py: {unlisted}"
    )


def test_every_listed_keyword_is_a_rejected_reference_keyword():
    """No stale entry: each listed keyword is one the reference has and we do not accept."""
    for name, entries in _unsupported.NOT_PORTED.items():
        assert name in NAMES, name
        missing = _missing(name)
        for keyword, why in entries.items():
            assert keyword in missing, f"{name}: {keyword!r} is accepted or not a reference keyword"
            assert len(why) > 30, (name, keyword)
    every = {k for n in RESOLVED for k in _missing(n)}
    assert set(_unsupported.TORCH_ONLY) <= every


# ----------------------------------------------------------------------------- the reader itself
def test_reader_finds_the_options_the_reference_reads():
    import pytorch_optimizer as po

    adabound = reference_keywords(po.AdaBound)
    assert adabound["adam_debias"] == "group" and adabound["lr"] == "signature"
    flash = reference_keywords(po.FlashAdamW)
    assert {"check_numerics", "compress_state_dict", "fused"} <= set(flash)
    assert "master_byte_width" not in flash  # its own defaults entry, derived from master_weight_bits
    assert "beta1" not in reference_keywords(po.AdaFactor)  # init_group's keyword, not the constructor's
    assert "lr" not in reference_keywords(po.AliG)  # written by the class ({**group, "lr": step_size})
    assert "name" not in reference_keywords(po.AdamMini)  # the groups it builds itself
    assert reference_keywords(po.ScheduleFreeAdamW)["use_palm"] == "kwargs"
    assert reference_keywords(po.AdaMuon)["ns_method"] == "group"  # MuonBase._orthogonalize, via the foreach path
    assert "nesterov" not in reference_keywords(po.AdaMuon)  # MuonBase's momentum helper is not reached


def test_fixed_keywords_are_accepted():
    """The keywords this change made explicit (they raised TypeError before)."""
    mlx_optim.AdaBound(adam_debias=True)
    mlx_optim.FlashAdamW(check_numerics=True)
    mlx_optim.AdaMuon(ns_method="gram_newton_schulz", ns_reset_steps=(1, 3))
    mlx_optim.AdaGO(ns_method="gram_newton_schulz")
    with pytest.raises(ValueError, match="ns_method"):
        mlx_optim.AdaGO(ns_method="svd")


def test_create_optimizer_names_the_reason_of_a_listed_keyword():
    import mlx.nn as nn

    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="compress_state_dict.*state_dict"):
        mlx_optim.create_optimizer(model, "flashadamw", compress_state_dict=False)
    with pytest.raises(TypeError, match="foreach.*torch-only"):
        mlx_optim.create_optimizer(model, "adamw", foreach=True)
    with pytest.raises(TypeError, match="use_muon.*muon_filter"):
        mlx_optim.create_optimizer(model, "muon_e", use_muon=True)


# ----------------------------------------------------------------------------- FlashAdamW(check_numerics=True)
def _reference_raises(lr: float, scale: float, dtype: str, bits) -> bool:
    import pytorch_optimizer
    import torch

    p = torch.nn.Parameter(torch.linspace(-scale, scale, 8).to(getattr(torch, dtype)))
    opt = pytorch_optimizer.FlashAdamW([p], lr=lr, check_numerics=True, master_weight_bits=bits)
    p.grad = torch.ones_like(p)
    try:
        opt.step()
    except ArithmeticError:
        return True
    return False


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("bits", [None, 24])
def test_flashadamw_check_numerics_raises_where_the_reference_does(dtype, bits):
    cases = [(lr, scale) for lr in (1e-2, 1e-4, 1e-6, 0.0) for scale in (0.1, 1.0, 100.0)]
    for lr, scale in cases:
        p = {"w": mx.linspace(-scale, scale, 8).astype(getattr(mx, dtype))}
        g = {"w": mx.ones((8,), p["w"].dtype)}
        opt = mlx_optim.FlashAdamW(learning_rate=lr, check_numerics=True, master_weight_bits=bits)
        try:
            opt.apply_gradients(g, p)
            ours = False
        except ArithmeticError as e:
            assert "too small" in str(e) and "'w'" in str(e)
            ours = True
        assert ours == _reference_raises(lr, scale, dtype, bits), (lr, scale, dtype, bits)


def test_flashadamw_check_numerics_reads_magnitudes_once_and_on_request():
    p = {"w": mx.full((4,), 1.0, mx.bfloat16)}
    g = {"w": mx.zeros((4,), mx.bfloat16)}
    opt = mlx_optim.FlashAdamW(learning_rate=1e-3, check_numerics=True, weight_decay=0.0)
    opt.apply_gradients(g, p)  # |p| = 1: resolution 2^-15, 0.1 lr = 1e-4 is above it
    big = {"w": mx.full((4,), 100.0, mx.bfloat16)}
    opt.apply_gradients(g, big)  # the magnitude read at the first step is kept, as in the reference
    opt.recompute_param_stats()
    with pytest.raises(ArithmeticError):
        opt.apply_gradients(g, big)


def test_flashadamw_check_numerics_says_it_cannot_compile():
    p = {"w": mx.ones((4,), mx.bfloat16)}
    g = {"w": mx.ones((4,), mx.bfloat16)}
    opt = mlx_optim.FlashAdamW(learning_rate=1e-2, check_numerics=True)
    step = mx.compile(lambda g, p: opt.apply_gradients(g, p))
    with pytest.raises(ValueError, match="check_numerics.*mx.compile"):
        step(g, p)
    eager = mlx_optim.FlashAdamW(learning_rate=1e-2, check_numerics=True).apply_gradients(g, p)
    plain = mlx_optim.FlashAdamW(learning_rate=1e-2).apply_gradients(g, p)
    np.testing.assert_array_equal(np.array(eager["w"].astype(mx.float32)), np.array(plain["w"].astype(mx.float32)))
