"""PCGrad / PPCGrad calling forms and resume, Grokfast ring buffer, TRAC's erfi, KerasOptions' AGC and
non-finite skip, and the end-to-end SAM + EMA + accumulation run inside a compiled step."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map, tree_unflatten

import mlx_optim as mo
from mlx_optim import functional as F
from mlx_optim.wrappers import (
    SAM,
    TRAC,
    GradFilterEMA,
    GradFilterMA,
    KerasOptions,
    PCGrad,
    PPCGrad,
    value_and_task_grads,
)
from mlx_optim.wrappers.trac import erf1994_coefficients, erf_imag
from tests.test_contract import batches, make_model, params_np
from tests.test_wrappers import run_step_with, run_updates


def task_losses(model, x, y):
    """Three tasks on the MLP's three outputs, the third pulling against the first."""
    out = model(x)
    return [
        mx.mean(mx.square(out[:, 0] - y[:, 0])),
        mx.mean(mx.square(out[:, 1] - y[:, 1])),
        mx.mean(mx.square(out[:, 0] + y[:, 0])) + mx.mean(mx.square(out[:, 2] - y[:, 2])),
    ]


def task_fns(model):
    return [nn.value_and_grad(model, lambda m, x, y, i=i: task_losses(m, x, y)[i]) for i in range(3)]


def run_tasks(model, opt, data, form: str, compiled: bool) -> list[np.ndarray]:
    fns = task_fns(model)
    joint = value_and_task_grads(model, task_losses)

    def step(x, y):
        if form == "update":
            pairs = [fn(model, x, y) for fn in fns]
            opt.update(model, [g for _, g in pairs])
            return mx.stack([loss for loss, _ in pairs])
        if form == "fns":
            return opt.step_with(model, fns, x, y)
        return opt.step_with(model, joint, x, y)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for x, y in data:
        loss = step(x, y)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(np.array(loss))
    return losses


def _has_conflicts(model, data) -> bool:
    fns = task_fns(model)
    x, y = next(iter(data))
    flat = [mx.concatenate([v.reshape(-1) for _, v in tree_flatten(fn(model, x, y)[1])]) for fn in fns]
    return any(float(mx.sum(flat[i] * flat[j])) < 0 for i in range(3) for j in range(i + 1, 3))


@pytest.mark.parametrize("cls", [PCGrad, PPCGrad])
def test_pcgrad_calling_forms_agree_eager_and_compiled(cls):
    assert _has_conflicts(make_model(), batches(1)), "the test tasks should conflict"
    results = {}
    for form in ("update", "fns", "joint"):
        for compiled in (False, True):
            model, opt = make_model(), cls("adamw", learning_rate=1e-2)
            losses = run_tasks(model, opt, batches(8), form, compiled)
            results[form, compiled] = (losses, params_np(model))
    ref_losses, ref_params = results["update", False]
    assert ref_losses[0].shape == (3,)
    for key, (losses, params) in results.items():
        np.testing.assert_allclose(np.stack(losses), np.stack(ref_losses), rtol=1e-5, atol=1e-6, err_msg=str(key))
        for k in ref_params:
            np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-5, atol=1e-6, err_msg=f"{key}: {k}")


def test_pcgrad_differs_from_plain_averaging_and_depends_on_the_seed():
    def final(make):
        model, opt = make_model(), make()
        run_tasks(model, opt, batches(6), "update", False)
        return params_np(model)

    a, b = final(lambda: PCGrad("sgd", learning_rate=0.1, seed=1)), final(lambda: PCGrad("sgd", learning_rate=0.1))
    a2 = final(lambda: PCGrad("sgd", learning_rate=0.1, seed=1))
    model = make_model()  # plain SGD on the mean task gradient
    fns = task_fns(model)
    for x, y in batches(6):
        grads = [fn(model, x, y)[1] for fn in fns]
        mean = tree_map(lambda *g: sum(g) / 3, *grads)
        model.update(tree_map(lambda p, g: p - 0.1 * g, model.trainable_parameters(), mean))
        mx.eval(model.parameters())
    plain = params_np(model)
    assert all(np.array_equal(a[k], a2[k]) for k in a)
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # order matters for sequential projection
    assert any(np.abs(a[k] - plain[k]).max() > 1e-3 for k in a)


def test_single_gradient_tree_is_the_inner_optimizer():
    model_a, model_b = make_model(), make_model()
    opt_a, opt_b = PCGrad("adamw", learning_rate=1e-2), PPCGrad("adamw", learning_rate=1e-2)
    from mlx_optim import AdamW

    model_c, opt_c = make_model(), AdamW(learning_rate=1e-2)
    for model, opt in ((model_a, opt_a), (model_b, opt_b), (model_c, opt_c)):
        run_step_with(model, opt, batches(4))
    pa, pb, pc = params_np(model_a), params_np(model_b), params_np(model_c)
    for k in pc:
        np.testing.assert_array_equal(pa[k], pc[k])
        np.testing.assert_array_equal(pb[k], pc[k])


@pytest.mark.parametrize("cls", [PCGrad, PPCGrad])
def test_pcgrad_multi_task_resume_is_exact(cls, tmp_path):
    data = list(batches(8))
    model, opt = make_model(), cls("adamw", learning_rate=1e-2, seed=4) if cls is PCGrad else cls("adamw")
    run_tasks(model, opt, data, "fns", compiled=True)
    expected = params_np(model)

    def fresh():
        return make_model(), cls("adamw", learning_rate=1e-2, seed=4) if cls is PCGrad else cls("adamw")

    model, opt = fresh()
    run_tasks(model, opt, data[:3], "fns", compiled=True)
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    model2, opt2 = fresh()
    model2.load_weights(str(tmp_path / "model.safetensors"))
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    run_tasks(model2, opt2, data[3:], "fns", compiled=True)
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_pcgrad_trains_both_tasks_of_a_cooperative_problem():
    """Tasks 0 and 1 of ``task_losses`` do not conflict with each other: PCGrad lowers both."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.cos(x[:, 3])], axis=1).astype(np.float32)
    data = [(mx.array(x), mx.array(y))] * 100
    model = make_model()
    fns = task_fns(model)[:2]
    opt = PCGrad("adamw", learning_rate=1e-2)
    state = [model.state, opt.state]
    step = mx.compile(lambda x, y: opt.step_with(model, fns, x, y), inputs=state, outputs=state)
    losses = [np.array(step(*b)) for b in data]
    assert np.all(losses[-1] < 0.3 * losses[0]), (losses[0], losses[-1])


def test_value_and_task_grads_matches_separate_gradients():
    model = make_model()
    x, y = next(batches(1))
    losses, grads = value_and_task_grads(model, task_losses)(model, x, y)
    for i, fn in enumerate(task_fns(model)):
        loss, g = fn(model, x, y)
        assert math.isclose(losses[i].item(), loss.item(), rel_tol=1e-6)
        for (k, a), (_, b) in zip(tree_flatten(grads[i]), tree_flatten(g)):
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)


def test_pcgrad_rejects_mismatched_task_gradients():
    model = make_model()
    opt = PCGrad("sgd", learning_rate=0.1)
    g = tree_map(mx.zeros_like, model.trainable_parameters())
    bad = tree_map(lambda a: a, g)
    bad["inp"]["weight"] = mx.zeros((3, 3))
    with pytest.raises(ValueError, match="inp.weight"):
        opt.update(model, [g, bad])


@pytest.mark.parametrize("compiled", [False, True])
def test_grokfast_ma_ring_buffer_equals_a_deque(compiled):
    """Window 3 with wrap-around: the filtered gradient equals g + lamb * mean(last 3 gradients)."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4, 2)).astype(np.float32) for _ in range(7)]
    holder = {"p": {"w": mx.zeros((4, 2))}}
    opt = GradFilterMA("sgd", window_size=3, lamb=2.0, learning_rate=1.0)
    opt.init(holder["p"])

    def step(g):
        holder["p"] = opt.apply_gradients({"w": g}, holder["p"])

    if compiled:
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    expected = np.zeros((4, 2), np.float32)
    for t, g in enumerate(grads):
        window = grads[max(0, t - 2) : t + 1]
        filtered = g + 2.0 * np.mean(window, axis=0) if len(window) == 3 else g
        expected = expected - filtered
        step(mx.array(g))
        mx.eval(holder, opt.state)
        np.testing.assert_allclose(np.array(holder["p"]["w"]), expected, rtol=1e-5, atol=1e-5, err_msg=f"step {t}")


@pytest.mark.parametrize(
    "make",
    [
        lambda: GradFilterMA("adamw", window_size=3, learning_rate=1e-2),
        lambda: GradFilterEMA("adamw", alpha=0.9, learning_rate=1e-2),
        lambda: TRAC("adamw", s_prev=1e-2, learning_rate=1e-2),
        lambda: KerasOptions("adamw", agc_clipping_value=0.05, loss_scale_factor=8.0, learning_rate=1e-2),
    ],
    ids=["gradfilterma-wraps", "gradfilterema", "trac", "keras-agc-skip"],
)
def test_resume_mid_run_is_exact(make, tmp_path):
    data = list(batches(9))
    model, opt = make_model(), make()
    run_updates(model, opt, data, 1, compiled=True)
    expected = params_np(model)
    model, opt = make_model(), make()
    run_updates(model, opt, data[:5], 1, compiled=True)
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    model2, opt2 = make_model(), make()
    model2.load_weights(str(tmp_path / "model.safetensors"))
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    run_updates(model2, opt2, data[5:], 1, compiled=True)
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_trac_erfi_matches_the_reference_approximation():
    import torch
    from pytorch_optimizer.optimizer.trac import ERF1994

    x = np.linspace(-6.0, 6.0, 97).astype(np.float32)
    t = torch.from_numpy(x)
    ref = ERF1994(128)(torch.complex(torch.zeros_like(t), t)).imag.numpy()
    coefs, ell = erf1994_coefficients(128)
    got = np.array(erf_imag(mx.array(x), mx.array(coefs), ell))
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-30)
    # erfi is odd, erfi(1) = 1.6504257587975428
    assert math.isclose(float(erf_imag(mx.array(1.0), mx.array(coefs), ell)), 1.6504257587975428, rel_tol=1e-6)


@pytest.mark.parametrize("compiled", [False, True])
def test_keras_skips_a_step_with_non_finite_gradients(compiled):
    """An inf gradient at call 3 leaves weights and all state alone (loss_scale_factor turns the check on);
    the run then equals one that never saw that batch. Without the check the weights become NaN."""
    data = list(batches(6))

    def run(make, poison: bool):
        model, opt = make_model(), make()
        lg = nn.value_and_grad(model, lambda m, x, y: opt.scale_loss(mx.mean(mx.square(m(x) - y))))

        def step(x, y, bad):
            loss, grads = lg(model, x, y)
            grads = tree_map(lambda g: g * bad, grads)
            opt.update(model, grads)
            return loss

        if compiled:
            step = mx.compile(step, inputs=[model.state, opt.state], outputs=[model.state, opt.state])
        snapshots = []
        for i, (x, y) in enumerate(data):
            if not poison and i == 2:
                continue
            bad = mx.array(math.inf if (poison and i == 2) else 1.0)
            before = dict(tree_flatten(opt.state))
            step(x, y, bad)
            mx.eval(model.parameters(), opt.state)
            if poison and i == 2:
                snapshots.append((before, dict(tree_flatten(opt.state))))
        return model, opt, snapshots

    def make():
        return KerasOptions(
            "adamw", loss_scale_factor=16.0, use_ema=True, gradient_accumulation_steps=2, learning_rate=1e-2
        )

    model_p, opt_p, ((before, after),) = run(make, poison=True)
    for k, v in before.items():
        np.testing.assert_array_equal(np.array(after[k]), np.array(v), err_msg=k)
    model_c, _, _ = run(make, poison=False)
    pc, pp = params_np(model_c), params_np(model_p)
    for k in pc:
        np.testing.assert_array_equal(pp[k], pc[k], err_msg=k)
    unchecked, _, _ = run(
        lambda: KerasOptions("adamw", loss_scale_factor=16.0, skip_nonfinite=False, learning_rate=1e-2), True
    )
    assert not all(np.isfinite(v).all() for v in params_np(unchecked).values())


def test_keras_agc_is_pytorch_optimizer_agc_before_the_update():
    params = {"w": mx.array(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))}
    g = {"w": mx.array(np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32))}
    opt = KerasOptions("sgd", agc_clipping_value=0.02, agc_eps=1e-3, learning_rate=1.0)
    new = opt.apply_gradients(g, params)
    clipped = F.agc(params["w"], g["w"], 1e-3, 0.02)
    assert float(mx.abs(clipped - g["w"]).max()) > 0.1  # it clipped
    np.testing.assert_allclose(np.array(new["w"]), np.array(params["w"] - clipped), rtol=1e-6, atol=1e-7)


def test_invalid_extra_wrapper_arguments():
    with pytest.raises(ValueError, match="reduction"):
        PCGrad("sgd", reduction="max")
    with pytest.raises(ValueError, match="reduction"):
        PPCGrad("sgd", reduction="median")
    with pytest.raises(ValueError, match="window_size"):
        GradFilterMA("sgd", window_size=0)
    with pytest.raises(ValueError, match="filter_type"):
        GradFilterMA("sgd", filter_type="median")
    with pytest.raises(ValueError, match="alpha"):
        GradFilterEMA("sgd", alpha=1.5)
    with pytest.raises(ValueError, match="num_coefs"):
        TRAC("sgd", num_coefs=0)
    with pytest.raises(ValueError, match="s_prev"):
        TRAC("sgd", s_prev=-1.0)
    with pytest.raises(ValueError, match="agc_clipping_value"):
        KerasOptions("sgd", agc_clipping_value=0.0)


def test_sam_ema_accumulation_trains_an_mlp_inside_a_compiled_step():
    """The issue's end-to-end check: SAM + EMA + gradient accumulation, compiled, lowers the loss.

    SAM outside (one SAM step = two gradient evaluations), Keras' EMA and accumulation inside, in both calling
    forms: mlx-lm's one-update-per-step trainer (``transparent=True``) and ``step_with``.
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.cos(x[:, 3])], axis=1).astype(np.float32)
    xb, yb = mx.array(x), mx.array(y)
    data = [(xb, yb)] * 240

    def full_loss(model):
        return mx.mean(mx.square(model(xb) - yb)).item()

    def keras():
        return KerasOptions("adamw", use_ema=True, ema_momentum=0.9, gradient_accumulation_steps=2, learning_rate=1e-2)

    for form in ("transparent", "step_with"):
        model = make_model()
        start = full_loss(model)
        if form == "transparent":
            opt = SAM(keras(), rho=0.05, transparent=True)
            losses = run_updates(model, opt, data, 1, compiled=True)
            sam_steps = len(data) // 2
        else:
            opt = SAM(keras(), rho=0.05)
            losses = run_step_with(model, opt, data[:120], compiled=True)
            sam_steps = 120
        assert all(math.isfinite(v) for v in losses)
        assert opt.inner.step.item() == sam_steps and opt.inner.inner.step.item() == sam_steps // 2
        end = full_loss(model)
        assert end < 0.5 * start, (form, start, end)
        opt.inner.finalize_variable_values(model)  # the EMA weights
        assert full_loss(model) < 0.5 * start, (form, start, full_loss(model))


def test_ema_weights_swap_in_for_evaluation_and_back():
    mx.random.seed(0)
    model = nn.Linear(3, 2)
    opt = mo.KerasOptions(mo.SGD(learning_rate=0.1), use_ema=True, ema_momentum=0.5)
    x = mx.random.normal((8, 3))
    lg = nn.value_and_grad(model, lambda m, x: mx.mean(m(x) ** 2))
    for _ in range(5):
        opt.step_with(model, lg, x)
        mx.eval(model.parameters(), opt.state)
    trained = {k: np.array(v) for k, v in model.parameters().items()}
    averages = {k: np.array(opt.state["slots"][k]["average"]) for k in trained}
    assert not np.allclose(trained["weight"], averages["weight"])
    with opt.ema_weights(model):
        for k in trained:
            np.testing.assert_array_equal(np.array(getattr(model, k)), averages[k])
    for k in trained:
        np.testing.assert_array_equal(np.array(getattr(model, k)), trained[k])
    with pytest.raises(ValueError, match="use_ema"):
        with mo.KerasOptions(mo.SGD(learning_rate=0.1)).ema_weights(model):
            pass
