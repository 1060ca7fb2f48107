"""mlx_optim.interop: mlx.optimizers runs continue in mlx_optim (and back) with the same steps, up to float rounding.

Each case runs ``K`` steps on one side, converts (optimizer and state), then continues ``N`` steps on both sides:
the converted optimizer must follow the original one. The gradient depends on each side's current parameters.
The tolerance is float32 rounding of the two implementations' different operation orders (measured: see
``RTOL`` / ``ATOL``), not a loosened parity.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as mlx_opt
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map, tree_unflatten

import mlx_optim
from mlx_optim import interop

K, N = 4, 8
# Measured over every case below: at most 9.5e-7 (Adam/AdamW with a schedule; SGD, RMSprop, Adagrad, AdaDelta,
# Adamax and Lion are bit-identical) on parameters of order 1. Continuing without the converted state moves them by
# 1e-2 to 3; a step that differs (a missing bias correction, another eps placement) by 1e-4 or more.
RTOL, ATOL = 2e-6, 1e-6


def initial_params() -> dict:
    rng = np.random.default_rng(0)
    shapes = {"layers.0.w": (4, 3), "layers.0.b": (3,), "layers.1.w": (2, 3, 5), "scale": (6,)}
    return tree_unflatten([(k, mx.array(rng.normal(size=s).astype(np.float32))) for k, s in shapes.items()])


def gradients(params: dict, t: int) -> dict:
    rng = np.random.default_rng(100 + t)
    loud = 3.0 if t < 3 else 0.1

    def g(p):
        noise = mx.array(rng.normal(scale=0.5, size=p.shape).astype(np.float32))
        return (loud * (p - 0.5 + 0.3 * mx.sin(3 * p) + noise)).astype(p.dtype)

    return tree_map(g, params)


def run(opt, params: dict, steps: range) -> list[dict]:
    traj = []
    for t in steps:
        params = opt.apply_gradients(gradients(params, t), params)
        mx.eval(params, opt.state)
        traj.append(params)
    return traj


def assert_same_trajectory(mine: list[dict], theirs: list[dict], label: str) -> float:
    worst = 0.0
    for t, (a, b) in enumerate(zip(mine, theirs)):
        for (k, x), (_, y) in zip(tree_flatten(a), tree_flatten(b)):
            x, y = np.array(x), np.array(y)
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, err_msg=f"{label}: {k} at step {K + t + 1}")
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


MLX_CASES = {
    "sgd": lambda: mlx_opt.SGD(learning_rate=0.05),
    "sgd-momentum": lambda: mlx_opt.SGD(learning_rate=0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
    "sgd-dampening": lambda: mlx_opt.SGD(learning_rate=0.05, momentum=0.9, dampening=0.2),
    "rmsprop": lambda: mlx_opt.RMSprop(learning_rate=0.01, alpha=0.9, eps=1e-6),
    "adagrad": lambda: mlx_opt.Adagrad(learning_rate=0.1),
    "adadelta": lambda: mlx_opt.AdaDelta(learning_rate=1.0, rho=0.95),
    "adam": lambda: mlx_opt.Adam(learning_rate=0.01, betas=[0.9, 0.99], bias_correction=True),
    "adam-schedule": lambda: mlx_opt.Adam(learning_rate=mlx_opt.cosine_decay(0.02, 20), bias_correction=True),
    "adamw": lambda: mlx_opt.AdamW(learning_rate=0.01, weight_decay=0.1, bias_correction=True),
    "adamax": lambda: mlx_opt.Adamax(learning_rate=0.01, eps=0.0),
    "lion": lambda: mlx_opt.Lion(learning_rate=1e-3, betas=[0.9, 0.99], weight_decay=0.1),
    "adafactor": lambda: mlx_opt.Adafactor(),
    "adafactor-options": lambda: mlx_opt.Adafactor(
        learning_rate=0.01, relative_step=False, beta_1=0.9, weight_decay=0.01, scale_parameter=False
    ),
}

OURS_CASES = {
    "sgd": lambda: mlx_optim.SGD(learning_rate=0.05),
    "sgd-momentum": lambda: mlx_optim.SGD(learning_rate=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01),
    "rmsprop": lambda: mlx_optim.RMSprop(learning_rate=0.01, alpha=0.9, eps=1e-6),
    "adagrad": lambda: mlx_optim.Adagrad(learning_rate=0.1, eps=1e-8),
    "adadelta": lambda: mlx_optim.AdaDelta(learning_rate=1.0, rho=0.95),
    "adam": lambda: mlx_optim.Adam(learning_rate=0.01, betas=(0.9, 0.99)),
    "adam-decoupled": lambda: mlx_optim.Adam(learning_rate=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "adamw-schedule": lambda: mlx_optim.AdamW(learning_rate=mlx_opt.linear_schedule(0.0, 0.02, 6)),
    "adamax": lambda: mlx_optim.AdaMax(learning_rate=0.01, eps=0.0, adam_debias=True),
    "lion": lambda: mlx_optim.Lion(learning_rate=1e-3, weight_decay=0.1),
    "adafactor": lambda: mlx_optim.AdaFactor(
        betas=(0.9, interop.ADAFACTOR_NO_CAP), momentum_dtype=mx.float32, weight_decay=0.01
    ),
}


@pytest.mark.parametrize("case", list(MLX_CASES))
def test_an_mlx_run_continues_in_mlx_optim(case):
    original = MLX_CASES[case]()
    params = run(original, initial_params(), range(K))[-1]
    converted = interop.from_mlx(original)
    assert type(converted).__name__.lower() in (type(original).__name__.lower(), "adamax", "adafactor")
    theirs = run(original, params, range(K, K + N))
    mine = run(converted, params, range(K, K + N))
    assert_same_trajectory(mine, theirs, case)


@pytest.mark.parametrize("case", list(MLX_CASES))
def test_a_saved_mlx_state_loads_into_the_configured_optimizer_and_back(case, tmp_path):
    original = MLX_CASES[case]()
    params = run(original, initial_params(), range(K))[-1]
    mx.save_safetensors(str(tmp_path / "mlx.safetensors"), dict(tree_flatten(original.state)))
    ours = interop.from_mlx(original)  # configured like it
    ours.state = {k: v for k, v in ours.state.items() if isinstance(v, mx.array)}  # (its per-parameter state dropped)
    interop.from_mlx_state(ours, mx.load(str(tmp_path / "mlx.safetensors")))  # flat, as saved
    # and back: the same arrays under the same names
    back = dict(tree_flatten(interop.to_mlx_state(ours)))
    saved = dict(tree_flatten(original.state))
    assert set(back) == set(saved) - ({k for k in saved if k.endswith(".v")} if case == "sgd" else set())
    for k, v in back.items():
        np.testing.assert_array_equal(np.array(v), np.array(saved[k]), err_msg=k)
    assert_same_trajectory(run(ours, params, range(K, K + N)), run(original, params, range(K, K + N)), case)


@pytest.mark.parametrize("case", list(OURS_CASES))
def test_an_mlx_optim_run_continues_in_mlx(case):
    original = OURS_CASES[case]()
    params = run(original, initial_params(), range(K))[-1]
    converted = interop.to_mlx(original)
    assert isinstance(converted, mlx_opt.Optimizer) and not isinstance(converted, mlx_optim.Optimizer)
    theirs = run(original, params, range(K, K + N))
    mine = run(converted, params, range(K, K + N))
    assert_same_trajectory(mine, theirs, case)


def test_the_supported_pairs_cover_mlx_s_optimizers():
    """Every mlx.optimizers optimizer either converts or says why not."""
    classes = {
        n
        for n, c in vars(mlx_opt).items()
        if isinstance(c, type) and issubclass(c, mlx_opt.Optimizer) and c is not mlx_opt.Optimizer
    }
    converted = {m for m, _ in interop.supported()}
    assert classes - converted == {"Muon", "MultiOptimizer"}
    with pytest.raises(ValueError, match="float32"):
        interop.from_mlx(mlx_opt.Muon(learning_rate=0.02))
    with pytest.raises(ValueError, match="each of its optimizers"):
        interop.from_mlx(mlx_opt.MultiOptimizer([mlx_opt.SGD(0.1)]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: mlx_opt.Adam(learning_rate=0.01), "bias_correction=False"),
        (lambda: mlx_opt.AdamW(learning_rate=0.01), "bias_correction=False"),
        (lambda: mlx_opt.Adamax(learning_rate=0.01), "only eps=0"),
        (lambda: mlx_opt.SGD(learning_rate=0.1, momentum=0.9, dampening=0.5), "first momentum step"),
    ],
)
def test_what_does_not_mean_the_same_is_not_converted_from_mlx(make, match):
    with pytest.raises(ValueError, match=match):
        interop.from_mlx(make())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: mlx_optim.Adam(amsgrad=True), "amsgrad"),
        (lambda: mlx_optim.Adam(weight_decay=0.1), "weight_decay"),
        (lambda: mlx_optim.RMSprop(centered=True), "centered"),
        (lambda: mlx_optim.RMSprop(momentum=0.9), "momentum"),
        (lambda: mlx_optim.Adagrad(lr_decay=0.1), "lr_decay"),
        (lambda: mlx_optim.AdaMax(), "eps"),
        (lambda: mlx_optim.Lion(cautious=True), "cautious"),
        (lambda: mlx_optim.AdaFactor(), "caps its decay"),
        (lambda: mlx_optim.AdaFactor(betas=(0.9, interop.ADAFACTOR_NO_CAP)), "momentum_dtype"),
        (lambda: mlx_optim.SGD(maximize=True), "maximize"),
        (lambda: mlx_optim.SGD(momentum=0.9, dampening=0.1), "first momentum step"),
        (lambda: mlx_optim.AdamW(state_dtype=mx.bfloat16), "state_dtype"),
        (lambda: mlx_optim.Adam(betas=(lambda t: 0.9 + 0 * t, 0.999)), "scheduled beta1"),
        (lambda: mlx_optim.NAdam(), "no mlx.optimizers equivalent"),
    ],
)
def test_what_mlx_cannot_express_is_not_converted_to_mlx(make, match):
    with pytest.raises(ValueError, match=match):
        interop.to_mlx(make())


def test_the_state_of_another_optimizer_is_refused():
    adam = mlx_opt.Adam(learning_rate=0.01, bias_correction=True)
    run(adam, initial_params(), range(1))
    with pytest.raises(ValueError, match=r"'layers\.0\.w\.m' is not one of mlx\.optimizers\.SGD's"):
        interop.from_mlx_state(mlx_optim.SGD(momentum=0.9), adam.state)


def test_low_precision_state_follows_each_library_s_dtype_policy():
    params = tree_map(lambda p: p.astype(mx.bfloat16), initial_params())
    theirs = mlx_opt.Adam(learning_rate=0.01, bias_correction=True)
    run(theirs, params, range(2))
    assert theirs.state["scale"]["m"].dtype == mx.bfloat16  # mlx keeps the parameters' dtype
    ours = interop.from_mlx(theirs)
    assert ours.state["scale"]["exp_avg"].dtype == mx.float32  # ours: float32 state for bf16 parameters
    back = interop.to_mlx(ours, parameters=params)
    assert back.state["scale"]["m"].dtype == mx.bfloat16
    new = back.apply_gradients(gradients(params, 3), params)
    assert new["scale"].dtype == mx.bfloat16
