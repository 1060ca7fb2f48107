"""An optimizer that cannot step from a gradient alone raises ``ValueError`` naming the call to make instead.

Every registered optimizer (keywords of its first parity row) gets ``opt.update(model, grads)`` on the test MLP
of ``tests/test_contract.py``: those that need more than a gradient must raise and say what to call; every other
one must take finite steps. The checks are Python-level (what was passed: no loss, no curvature, no LoRA pair),
so they hold inside ``mx.compile`` too.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map, tree_unflatten

import mlx_optim
from tests.test_contract import NAMES, batches, loss_fn, make_model, make_opt, params_np

CURVATURE = {"adahessian", "sophiah", "sophiah_e", "sophiag", "sophiag_e"}
SEVERAL_EVALUATIONS = {"lbfgs", "sam", "asam", "bsam", "friendlysam", "gsam", "looksam", "wsam"}
LOSS_DRIVEN = {n for n in NAMES if mlx_optim.load_optimizer(n).needs_loss}
LORA_PAIRS = {"lorarite"}
# What the error must name, per kind.
NEEDLES = {
    **{n: ("step_with(model, mlx_optim.value_and_grad(model, loss_fn", "hessian=h") for n in CURVATURE},
    **{n: ("step_with(model, loss_and_grad_fn, *batch)",) for n in SEVERAL_EVALUATIONS},
    **{n: ("step_with(model, loss_and_grad_fn, *batch)", "loss=loss") for n in LOSS_DRIVEN},
    **{n: ("lora_names=(left, right)", "not by position") for n in LORA_PAIRS},
}


STEPS = 12  # AdaShift holds its first keep_num=10 gradients before it steps


def _grads(model):
    x, y = next(batches(1))
    return nn.value_and_grad(model, loss_fn)(model, x, y)


def test_the_loss_driven_family_is_the_registry_s():
    assert {"alig", "emonavi", "emolynx", "emofact", "emoneco", "emozeal"} <= LOSS_DRIVEN


@pytest.mark.parametrize("name", NAMES)
def test_gradient_only_update_steps_or_says_what_to_call(name):
    model, opt = make_model(), make_opt(name)
    before = params_np(model)
    if name in NEEDLES:
        _, grads = _grads(model)
        with pytest.raises(ValueError) as err:
            opt.update(model, grads)
        for needle in NEEDLES[name]:
            assert needle in str(err.value), f"{name}: {err.value}"
        return
    for _ in range(STEPS):
        _, grads = _grads(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
    after = params_np(model)
    for k, v in after.items():
        assert np.isfinite(v).all(), f"{name}: {k} is not finite after gradient-only updates"
    assert any(not np.array_equal(after[k], before[k]) for k in after), f"{name} did not move any parameter"


@pytest.mark.parametrize("name", sorted(CURVATURE | LOSS_DRIVEN | LORA_PAIRS))
def test_the_check_is_python_level_and_holds_under_compile(name):
    model, opt = make_model(), make_opt(name)
    _, grads = _grads(model)
    state = [model.state, opt.state]
    step = mx.compile(lambda g: opt.update(model, g), inputs=state, outputs=state)
    with pytest.raises(ValueError):
        step(grads)


@pytest.mark.parametrize("name", sorted(CURVATURE))
def test_curvature_optimizers_step_once_curvature_was_given(name, tmp_path):
    model, opt = make_model(), make_opt(name)
    loss, grads = _grads(model)
    h = tree_map(lambda g: mx.abs(g) + 0.1, grads)  # a positive curvature estimate
    opt.update(model, grads, hessian=h)
    for _ in range(3):  # steps between refreshes: gradients only
        _, grads = _grads(model)
        opt.update(model, grads)
    mx.eval(model.parameters(), opt.state)
    assert all(np.isfinite(v).all() for v in params_np(model).values()), name
    # a resumed optimizer carries the curvature it was saved with
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    resumed = make_opt(name)
    resumed.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    resumed.update(model, _grads(model)[1])
    mx.eval(model.parameters())
    assert all(np.isfinite(v).all() for v in params_np(model).values()), name


def test_adahessian_on_gradients_alone_no_longer_returns_nan():
    """Issue 15 item 4: with no curvature its second moment stays 0 and m / (0 + 1e-16) blew up to NaN."""
    params = {"w": mx.array([1.0, -2.0, 3.0])}
    grads = {"w": mx.array([0.5, 0.5, 0.5])}
    with pytest.raises(ValueError, match=re.escape("opt.update(model, grads, hessian=h)")):
        mlx_optim.AdaHessian().apply_gradients(grads, params)
    new = mlx_optim.AdaHessian().apply_gradients(grads, params, hessian={"w": mx.ones((3,))})
    assert all(math.isfinite(v) for v in new["w"].tolist())


def test_step_with_gives_the_curvature_and_then_updates_may_follow():
    model, opt = make_model(), mlx_optim.SophiaH(learning_rate=1e-2, update_period=3)
    lg = mlx_optim.value_and_grad(model, loss_fn)
    x, y = next(batches(1))
    opt.step_with(model, lg, x, y)
    opt.update(model, _grads(model)[1])
    mx.eval(model.parameters())
    assert all(np.isfinite(v).all() for v in params_np(model).values())


# ----------------------------------------------------------------------------- LoRARite's pairing (issue 15 item 9)
def test_lorarite_says_how_to_name_the_pairs_when_a_pair_is_misread():
    """A model whose factors are not named lora_a / lora_b: the names decide the pairing, the error says so."""
    layer = nn.Linear(4, 2)
    grads = {"weight": mx.ones((2, 4)), "bias": mx.ones((2,))}
    opt = mlx_optim.LoRARite(lora_names=("weight", "bias"))
    with pytest.raises(ValueError) as err:
        opt.apply_gradients(grads, layer.parameters())
    msg = str(err.value)
    assert "factor 'bias' has 1 rows but rank 2" in msg
    assert "pairs factors by leaf name, not by position" in msg and "lora_names=(left, right)" in msg
    assert "lora_r_dim" in msg  # the other way out: it is a factor, its rank axis is elsewhere


def test_lorarite_names_the_pairs_it_looks_for_when_there_is_none():
    params = {"layers": [{"A": mx.ones((2, 6)), "B": mx.ones((5, 2))}]}
    grads = tree_map(lambda p: 0.1 * p, params)
    with pytest.raises(ValueError, match=r"no LoRA factor pair.*'lora_a'.*'lora_b'"):
        mlx_optim.LoRARite().apply_gradients(grads, params)
    new = mlx_optim.LoRARite(lora_names=("A", "B")).apply_gradients(grads, params)  # named: it steps
    assert not np.array_equal(np.array(new["layers"][0]["A"]), np.array(params["layers"][0]["A"]))
