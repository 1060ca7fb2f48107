"""The base class's shared Adam options: ``zero_state``, AdaNorm, ``adam_debias`` and RAdam's rectified step."""

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim as mo


@pytest.mark.parametrize(
    "opt, keys",
    [
        (mo.DiffGrad(), ["exp_avg", "exp_avg_sq", "previous_grad"]),
        (
            mo.DiffGrad(ams_bound=True, adanorm=True),
            ["exp_avg", "exp_avg_sq", "previous_grad", "max_exp_avg_sq", "exp_grad_adanorm"],
        ),
        (mo.AdaBelief(ams_bound=True), ["exp_avg", "exp_avg_var", "max_exp_avg_var"]),
        (mo.Lion(adanorm=True), ["exp_avg", "exp_grad_adanorm"]),
    ],
)
def test_zero_state_allocates_the_moments_the_ams_maximum_and_the_adanorm_norm(opt, keys):
    p = mx.ones((3, 2), dtype=mx.bfloat16)
    state = {}
    opt.init_single(p, state)
    assert list(state) == keys
    for k in keys:
        want_shape = () if k == "exp_grad_adanorm" else p.shape
        want_dtype = mx.float32  # bfloat16 parameters keep a float32 state; AdaNorm's norm is a float32 scalar
        assert state[k].shape == want_shape and state[k].dtype == want_dtype and not mx.any(state[k]).item()


def _one_step(opt, p, g):
    opt.init({"w": p})
    return opt.apply_gradients({"w": g}, {"w": p})["w"]


def test_radam_skips_the_unrectified_steps_and_degenerates_to_sgd():
    p, g = mx.array([1.0, -2.0, 3.0]), mx.array([0.5, 0.25, -1.0])
    # step 1: rho_1 = 1 < 5, so the reference skips it, or (degenerated_to_sgd) steps by lr * m_1 / (1 - beta1)
    np.testing.assert_array_equal(_one_step(mo.RAdam(learning_rate=0.1), p, g), p)
    sgd = _one_step(mo.RAdam(learning_rate=0.1, degenerated_to_sgd=True), p, g)
    np.testing.assert_allclose(sgd, p - 0.1 * g, rtol=1e-6)
    # adam_debias: no division by 1 - beta1^t, so the first step is lr * (1 - beta1) * g
    debiased = _one_step(mo.RAdam(learning_rate=0.1, degenerated_to_sgd=True, adam_debias=True), p, g)
    np.testing.assert_allclose(debiased, p - 0.1 * 0.1 * g, rtol=1e-6)


def test_adamax_step_size_with_and_without_adam_debias():
    p, g = mx.array([1.0, -2.0]), mx.array([0.5, -4.0])
    # u_1 = |g| + eps, m_1 = (1 - beta1) g: the first step is lr * sign(g) (debiased) or lr * (1 - beta1) sign(g)
    step = _one_step(mo.AdaMax(learning_rate=0.1, eps=0.0), p, g)
    np.testing.assert_allclose(step, p - 0.1 * np.sign(g), rtol=1e-6)
    step = _one_step(mo.AdaMax(learning_rate=0.1, eps=0.0, adam_debias=True), p, g)
    np.testing.assert_allclose(step, p - 0.1 * 0.1 * np.sign(g), rtol=1e-6)
