"""The base class, the registry and the users' contract."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

import mlx_optim as mo
from mlx_optim import functional as F


def test_invalid_hyperparameter_names_argument_value_and_range():
    with pytest.raises(ValueError, match=r"Adam: beta2=1\.5 is out of range; allowed \[0, 1\)"):
        mo.Adam(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match=r"eps=-1"):
        mo.Adam(eps=-1.0)
    with pytest.raises(ValueError, match=r"SGD: nesterov=True requires momentum > 0 and dampening=0"):
        mo.SGD(nesterov=True)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        mo.AdamW(lr=1e-3)  # the torch spelling is renamed, never silently ignored


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean.*adamw"):
        mo.load_optimizer("adamww")
    assert mo.load_optimizer("AdamW") is mo.AdamW


def test_get_supported_optimizers_filters():
    names = mo.get_supported_optimizers()
    assert names == sorted(names) and "adam" in names
    assert set(mo.get_supported_optimizers("ada*")) == {n for n in names if n.startswith("ada")}
    assert mo.get_supported_optimizers(["sgd", "lion"]) == ["lion", "sgd"]


def test_gradient_tree_mismatch_names_the_path():
    opt = mo.Adam()
    params = {"layer": {"w": mx.zeros((2, 3)), "b": mx.zeros((3,))}}
    with pytest.raises(ValueError, match=r"'layer\.w' has shape \(3, 2\)"):
        opt.apply_gradients({"layer": {"w": mx.zeros((3, 2))}}, params)
    with pytest.raises(ValueError, match=r"'layer\.x' has no matching parameter"):
        opt.apply_gradients({"layer": {"x": mx.zeros((3,))}}, params)


def test_empty_gradient_subtrees_are_skipped():
    """mlx-lm models keep lists of strings on modules; nn.value_and_grad gives [{}, {}] there."""
    out = mo.SGD(learning_rate=0.5).apply_gradients(
        {"a": mx.ones((2,)), "tags": [{}, {}]}, {"a": mx.ones((2,)), "tags": ["x", "y"]}
    )
    assert out["a"].tolist() == [0.5, 0.5] and out["tags"] == [{}, {}]


def test_top_level_name_clash_is_reported():
    with pytest.raises(ValueError, match="'step' has a name the optimizer's state reserves"):
        mo.SGD().apply_gradients({"step": mx.zeros((2,))}, {"step": mx.zeros((2,))})


def test_loss_driven_optimizer_without_loss_is_an_error():
    class NeedsLoss(mo.SGD):
        needs_loss = True

    with pytest.raises(ValueError, match="needs the loss"):
        NeedsLoss().apply_gradients({"w": mx.zeros((2,))}, {"w": mx.zeros((2,))})


def test_state_is_arrays_only_and_tunables_are_attributes():
    opt = mo.AdamW(learning_rate=1e-2, weight_decay=0.1)
    model = nn.Linear(3, 2)
    opt.update(model, {k: mx.ones_like(v) for k, v in model.parameters().items()})
    from mlx.utils import tree_flatten

    assert all(isinstance(v, mx.array) for _, v in tree_flatten(opt.state))
    assert opt.weight_decay.item() == pytest.approx(0.1)
    opt.weight_decay = 0.2
    assert opt.state["_global"]["weight_decay"].item() == pytest.approx(0.2)


def test_changing_a_tunable_after_compiling_takes_effect():
    model = nn.Linear(3, 2)
    opt = mo.SGD(learning_rate=0.1, momentum=0.5)
    grads = {k: mx.ones_like(v) for k, v in model.parameters().items()}
    state = [model.state, opt.state]

    step = mx.compile(lambda g: opt.update(model, g), inputs=state, outputs=state)
    step(grads)
    before = np.array(model.bias)
    opt.learning_rate = 0.0
    opt.momentum = 0.0
    step(grads)
    np.testing.assert_array_equal(np.array(model.bias), before)


def test_schedules_are_accepted_for_tunables():
    sched = optim.linear_schedule(0.1, 0.0, 10)
    opt = mo.SGD(learning_rate=sched, momentum=optim.linear_schedule(0.0, 0.9, 10))
    w = {"w": mx.ones((2,))}
    for _ in range(3):
        w = opt.apply_gradients({"w": mx.ones((2,))}, w)
    assert opt.learning_rate.item() == pytest.approx(sched(mx.array(2)).item())
    assert opt.momentum.item() == pytest.approx(0.18)


def test_low_precision_parameters_keep_dtype_with_float32_state():
    opt = mo.Adam(learning_rate=1e-2)
    w = {"w": mx.ones((4,), dtype=mx.bfloat16)}
    w = opt.apply_gradients({"w": mx.ones((4,), dtype=mx.bfloat16)}, w)
    assert w["w"].dtype == mx.bfloat16
    assert opt.state["w"]["exp_avg"].dtype == mx.float32


def test_state_dtype_override():
    opt = mo.Adam(learning_rate=1e-2, state_dtype=mx.bfloat16)
    w = {"w": mx.ones((4,))}
    w = opt.apply_gradients({"w": mx.ones((4,))}, w)
    assert opt.state["w"]["exp_avg"].dtype == mx.bfloat16
    assert w["w"].dtype == mx.float32


def test_bf16_second_moment_decays_with_float32_state():
    """The built-in keeps bf16 state where beta2=0.999 rounds to 1.0 and v never decays."""
    w = {"w": mx.zeros((1,), dtype=mx.bfloat16)}
    opt = mo.Adam(learning_rate=0.0)
    for t in range(400):
        g = mx.ones((1,), dtype=mx.bfloat16) * (1.0 if t < 200 else 0.0)
        w = opt.apply_gradients({"w": g}, w)
    expected = (1 - 0.999**200) * 0.999**200
    assert opt.state["w"]["exp_avg_sq"].item() == pytest.approx(expected, rel=1e-3)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)


def test_create_optimizer_keeps_banned_parameters_out_of_weight_decay():
    model = _Net()
    opt = mo.create_optimizer(model, "adamw", learning_rate=0.0, weight_decay=0.5)
    assert isinstance(opt, mo.AdamW)
    before = {k: np.array(v) for k, v in model.parameters()["lin"].items()}
    norm_before = np.array(model.norm.weight)
    zeros = {
        "lin": {"weight": mx.zeros((3, 3)), "bias": mx.zeros((3,))},
        "norm": {"weight": mx.zeros((3,)), "bias": mx.zeros((3,))},
    }
    opt.learning_rate = 0.1
    opt.update(model, zeros)
    np.testing.assert_allclose(np.array(model.lin.weight), before["weight"] * (1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(np.array(model.lin.bias), before["bias"])
    np.testing.assert_array_equal(np.array(model.norm.weight), norm_before)


def test_step_with_matches_value_and_grad_plus_update():
    def loss_fn(model, x):
        return mx.sum(model(x) ** 2)

    x = mx.ones((2, 3))
    results = []
    for use_step_with in (True, False):
        mx.random.seed(3)
        model = nn.Linear(3, 2)
        opt = mo.Adam(learning_rate=0.1)
        lg = nn.value_and_grad(model, loss_fn)
        for _ in range(3):
            if use_step_with:
                opt.step_with(model, lg, x)
            else:
                _, g = lg(model, x)
                opt.update(model, g)
        results.append(np.array(model.weight))
    np.testing.assert_array_equal(*results)


def test_documented_modules_are_reachable_from_the_package():
    """The guides' ``mlx_optim.packed.pack``, ``mlx_optim.streams.set_update_streams``, ... work after a bare
    ``import mlx_optim`` (a fresh interpreter: other tests may already have imported the modules)."""
    import subprocess
    import sys

    code = (
        "import mlx_optim as m; "
        "m.packed.pack; m.precision.stochastic_round; m.streams.set_update_streams; m.jit_pch.build; m.kernels"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shape", [(512, 256), (64, 32, 48), (70144,), (300, 1), (70001,)])
def test_sum_sq_is_accurate(shape):
    """F.sum_sq reduces large tensors over the leading axes first (faster on the CPU, shorter float32 chains):
    within 1e-6 of the exact sum where it does, and where it does not (small tensors, or 70001 elements that
    cannot be viewed as rows) the serial sum stays within 3e-5."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 3.0
    exact = float(np.sum(x.astype(np.float64) ** 2))
    split = x.size >= F.SUM_SQ_SPLIT and shape != (70001,)
    got = float(F.sum_sq(mx.array(x)))
    assert abs(got - exact) <= (1e-6 if split or x.size < 1000 else 3e-5) * exact, (got, exact)
    assert float(F.norm(mx.array(x))) == pytest.approx(float(np.sqrt(np.float32(got))), rel=1e-7)
    kd = F.norm_kd(mx.array(x))
    assert kd.shape == (1,) * len(shape) and float(kd.reshape(())) == float(F.norm(mx.array(x)))
