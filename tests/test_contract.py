"""Generic tests run for every registered optimizer, discovered from the registry.

Each optimizer is driven through the documented calling convention
``opt.step_with(model, loss_and_grad_fn, *batch)`` on a small MLP with a nested
parameter tree (dicts and a list), with the keywords of its first parity row.
"""

from __future__ import annotations

import inspect
import math

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim.check.contract import batches, loss_fn, make_model, params_np, train  # noqa: F401 (shared)
from tests.parity.harness import all_rows

NAMES = mlx_optim.get_supported_optimizers()
ROWS = all_rows()
KWARGS = {}
for _row in ROWS:
    KWARGS.setdefault(_row.name, dict(_row.kwargs))
# Optimizers whose step cannot run inside mx.compile, with the reason in their docstring.
NOT_COMPILABLE = {"lbfgs"}


# Optimizers that need a model with LoRA factor pairs (they raise ValueError on a tree without any).


# The model, data and training loop are mlx_optim.check.contract's: `mlx-optim check` runs the same contract on
# the user's device.


def make_opt(name: str):
    return mlx_optim.load_optimizer(name)(**KWARGS[name])


def test_every_optimizer_has_parity_rows():
    counts = {n: sum(r.name == n for r in ROWS) for n in NAMES}
    missing = [n for n, c in counts.items() if c < 2]
    assert not missing, f"optimizers need a defaults row and a non-default row in tests/parity/rows: {missing}"
    unknown = {r.name for r in ROWS} - set(NAMES)
    assert not unknown, f"parity rows name unregistered optimizers: {unknown}"


def test_every_reference_registry_name_is_ported():
    """Every name in pytorch_optimizer's registry and every torch.optim optimizer is registered here."""
    import pytorch_optimizer
    import torch

    theirs = set(pytorch_optimizer.get_supported_optimizers())
    classes = [c for c in vars(torch.optim).values() if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]
    theirs |= {c.__name__.lower() for c in classes if c is not torch.optim.Optimizer}
    assert theirs - set(NAMES) == set()


def test_registry_metadata():
    for name in NAMES:
        cls = mlx_optim.load_optimizer(name)
        assert cls.name == name and cls.family and cls.reference, name
        assert cls.__doc__ and len(cls.__doc__) > 40, f"{name} needs a docstring"
        assert getattr(mlx_optim, cls.__name__) is cls


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_COMPILABLE])
def test_compiled_matches_eager(name):
    runs = []
    for compiled in (False, True):
        model, opt = make_model(name=name), make_opt(name)
        losses = train(model, opt, batches(10), compiled=compiled)
        runs.append((losses, params_np(model)))
    (le, pe), (lc, pc) = runs
    np.testing.assert_allclose(lc, le, rtol=1e-5, atol=1e-6)
    for k in pe:
        np.testing.assert_allclose(pc[k], pe[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("name", NAMES)
def test_save_and_resume_is_exact(name, tmp_path):
    model, opt = make_model(name=name), make_opt(name)
    train(model, opt, batches(6))
    expected = params_np(model)

    model, opt = make_model(name=name), make_opt(name)
    data = list(batches(6))
    train(model, opt, data[:3])
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))

    model2, opt2 = make_model(name=name), make_opt(name)
    model2.load_weights(str(tmp_path / "model.safetensors"))
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    train(model2, opt2, data[3:])
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{name}: {k} after resume")


@pytest.mark.parametrize("name", NAMES)
def test_bf16_parameters_get_float32_state(name):
    model, opt = make_model(mx.bfloat16, name), make_opt(name)
    losses = train(model, opt, batches(10))
    assert all(math.isfinite(v) for v in losses), losses
    for k, v in tree_flatten(model.parameters()):
        assert v.dtype == mx.bfloat16, k
        assert bool(mx.all(mx.isfinite(v.astype(mx.float32)))), f"{name}: {k} not finite"
    # Only a momentum the user can choose the dtype of (momentum_dtype, bf16 by default in AdaFactor as in its
    # reference) may be low precision; everything else is float32 for bf16 parameters.
    allowed = {"exp_avg"} if getattr(opt, "momentum_dtype", mx.float32) in (mx.bfloat16, mx.float16) else set()
    low = [k for k, v in tree_flatten(opt.state) if v.dtype in (mx.bfloat16, mx.float16)]
    low = [k for k in low if k.rsplit(".", 1)[-1] not in allowed]
    assert not low, f"{name}: low-precision state {low}"


@pytest.mark.parametrize("name", NAMES)
def test_invalid_arguments_raise(name):
    cls = mlx_optim.load_optimizer(name)
    params = inspect.signature(cls).parameters
    # The reference's learning-rate keyword, renamed learning_rate; AliG's reference has max_lr instead.
    lr_kw = "learning_rate" if "learning_rate" in params else "max_lr"
    assert lr_kw in params, f"{name} has no learning-rate keyword"
    with pytest.raises(ValueError, match=lr_kw):
        cls(**{**KWARGS[name], lr_kw: -1.0})
    with pytest.raises(TypeError):
        cls(**KWARGS[name], no_such_option=1)
