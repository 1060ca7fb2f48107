"""Wrapper-specific tests: the mlx-lm style compiled trainer, transparent == two-evaluation SAM, exact resume
in the middle of a cycle, the state layout, create_optimizer(use_lookahead=True), BSAM's noise."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim.wrappers import ASAM, BSAM, GSAM, SAM, WSAM, FriendlySAM, KerasOptions, Lookahead, LookSAM, Scout
from tests.test_contract import batches, loss_fn, make_model, params_np

SAM_FAMILY = {
    "sam": lambda **kw: SAM("sgd", rho=0.1, use_gc=True, learning_rate=0.1, optimizer_kwargs={"momentum": 0.9}, **kw),
    "asam": lambda **kw: ASAM("adamw", rho=0.5, learning_rate=1e-2, **kw),
    "gsam": lambda **kw: GSAM("sgd", rho_scheduler=lambda s: 0.1 / (1.0 + s), learning_rate=0.1, **kw),
    "wsam": lambda **kw: WSAM("sgd", rho=0.1, max_norm=2.0, learning_rate=0.1, **kw),
    "wsam-coupled": lambda **kw: WSAM("adamw", decouple=False, adaptive=True, learning_rate=1e-2, **kw),
    "looksam": lambda **kw: LookSAM("sgd", k=3, learning_rate=0.1, **kw),
    "friendlysam": lambda **kw: FriendlySAM("sgd", learning_rate=0.1, **kw),
    "bsam": lambda **kw: BSAM(num_data=1000, learning_rate=0.1, seed=3, **kw),
}


def run_updates(model, opt, data, calls_per_batch: int, compiled: bool) -> list[float]:
    """mlx-lm's trainer: one gradient and one ``opt.update`` per compiled step."""
    lg = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        loss, grads = lg(model, x, y)
        opt.update(model, grads)
        return loss

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for x, y in data:
        for _ in range(calls_per_batch):
            loss = step(x, y)
            mx.eval(model.parameters(), opt.state, loss)
            losses.append(loss.item())
    return losses


def run_step_with(model, opt, data, compiled: bool = False) -> list[float]:
    lg = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        return opt.step_with(model, lg, x, y)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for x, y in data:
        loss = step(x, y)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(SAM_FAMILY))
def test_transparent_equals_two_evaluation_step(name):
    """Feeding each batch to ``num_phases`` consecutive update calls reproduces ``step_with``.

    SAM and FriendlySAM agree bit for bit; elsewhere the selected arrays have a different memory layout, so
    reductions round differently (GSAM 3e-8; LookSAM 3e-7, its reuse term amplifies 1-ulp differences).
    """
    model_a, opt_a = make_model(), SAM_FAMILY[name]()
    run_step_with(model_a, opt_a, batches(8))
    model_b, opt_b = make_model(), SAM_FAMILY[name](transparent=True)
    run_updates(model_b, opt_b, batches(8), opt_b.num_phases, compiled=False)
    pa, pb = params_np(model_a), params_np(model_b)
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("name", sorted(SAM_FAMILY))
def test_transparent_compiled_matches_eager(name):
    runs = []
    for compiled in (False, True):
        model, opt = make_model(), SAM_FAMILY[name](transparent=True)
        losses = run_updates(model, opt, batches(9), 1, compiled)
        runs.append((losses, params_np(model)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5, atol=1e-6)
    for k in runs[0][1]:
        np.testing.assert_allclose(runs[1][1][k], runs[0][1][k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize(
    "make",
    [
        lambda: SAM("sgd", learning_rate=0.1, transparent=True, optimizer_kwargs={"momentum": 0.9}),
        lambda: BSAM(num_data=1000, learning_rate=0.1, transparent=True),
        lambda: Lookahead(
            "sgd", k=4, pullback_momentum="pullback", learning_rate=0.1, optimizer_kwargs={"momentum": 0.9}
        ),
        lambda: Scout("adamw", sync_period=4, learning_rate=1e-2),
        lambda: SAM(Lookahead("adamw", k=3, learning_rate=1e-2), transparent=True),
        lambda: KerasOptions(
            "adamw",
            global_clipnorm=1.0,
            use_ema=True,
            ema_overwrite_frequency=2,
            gradient_accumulation_steps=3,
            learning_rate=1e-2,
        ),
    ],
    ids=["sam-transparent", "bsam-transparent", "lookahead-pullback", "scout", "sam-of-lookahead", "keras-accumulate"],
)
def test_resume_in_the_middle_of_a_cycle_is_exact(make, tmp_path):
    """Save after 5 update calls (mid perturb/descend cycle, mid Lookahead period), reload, continue."""
    data = list(batches(11))
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
    assert opt2.state["inner"] is opt2.inner.state if hasattr(opt2, "inner") else True
    run_updates(model2, opt2, data[5:], 1, compiled=True)
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_state_layout_and_learning_rate():
    model = make_model()
    opt = SAM("adamw", learning_rate=1e-2, transparent=True)
    assert opt.state["inner"] is opt.inner.state
    run_updates(model, opt, batches(2), 1, compiled=False)
    keys = {k for k, _ in tree_flatten(opt.state)}
    assert "slots.inp.weight.old_p" in keys and "inner.inp.weight.m" in keys or "inner.inp.weight.exp_avg" in keys
    assert math.isclose(opt.learning_rate.item(), 1e-2, rel_tol=1e-6)
    opt.learning_rate = 3e-3
    assert math.isclose(opt.inner.learning_rate.item(), 3e-3, rel_tol=1e-6)


def test_two_evaluation_form_refuses_plain_update():
    model = make_model()
    opt = SAM("sgd", learning_rate=0.1)
    lg = nn.value_and_grad(model, loss_fn)
    x, y = next(batches(1))
    _, grads = lg(model, x, y)
    with pytest.raises(ValueError, match="step_with"):
        opt.update(model, grads)


def test_wraps_mlx_optimizers_and_pulls_back_their_momentum():
    """An ``mlx.optimizers.SGD`` inner: Lookahead's pullback acts on its ``v`` buffer."""
    model = make_model()
    inner = optim.SGD(learning_rate=0.05, momentum=0.9)
    opt = Lookahead(inner, k=2, pullback_momentum="reset")
    run_updates(model, opt, batches(2), 1, compiled=False)

    def buffers():
        return [v for k, v in tree_flatten(inner.state) if k.endswith(".v")]

    assert len(buffers()) == 6
    assert all(float(mx.abs(v).max()) == 0.0 for v in buffers())  # just synced at step 2: momentum reset
    run_updates(model, opt, batches(1), 1, compiled=False)
    assert all(float(mx.abs(v).max()) > 0.0 for v in buffers())


def test_sam_with_lookahead_trains_an_mlp_inside_a_compiled_step():
    """SAM(Lookahead(AdamW)) in mlx-lm's one-update-per-step compiled trainer lowers the loss."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.cos(x[:, 3])], axis=1).astype(np.float32)
    data = [(mx.array(x), mx.array(y))] * 150
    model = make_model()
    opt = SAM(Lookahead("adamw", k=5, learning_rate=1e-2), rho=0.05, transparent=True)
    losses = run_updates(model, opt, data, 1, compiled=True)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:4]), (losses[:4], losses[-10:])
    # the two-evaluation form, with Lookahead outside (one sync per SAM step)
    model = make_model()
    opt = Lookahead(SAM("adamw", learning_rate=1e-2), k=5)
    losses = run_step_with(model, opt, data[:75], compiled=True)
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:4])
    assert opt.step.item() == 75 and opt.inner.step.item() == 75


def test_create_optimizer_use_lookahead():
    model = make_model()
    opt = mlx_optim.create_optimizer(model, "adamw", 1e-3, weight_decay=0.1, use_lookahead=True, k=3, alpha=0.6)
    assert isinstance(opt, Lookahead) and opt.k == 3 and math.isclose(opt.alpha.item(), 0.6, rel_tol=1e-6)
    (ban,) = opt.inner.groups  # the weight-decay ban list is a group without decay
    assert ban.params("inp.bias") and not ban.params("inp.weight") and ban["weight_decay"].item() == 0.0
    plain = mlx_optim.create_optimizer(model, "sgd", 1e-2, use_lookahead=True, momentum=0.9, pullback_momentum="reset")
    assert plain.pullback_momentum == "reset" and plain.inner.momentum.item() == pytest.approx(0.9)
    with pytest.warns(UserWarning, match="Lookahead"):
        ranger = mlx_optim.create_optimizer(model, "ranger", 1e-3, use_lookahead=True)
    assert not isinstance(ranger, Lookahead)


def test_scout_survives_identical_updates():
    """Constant gradients give identical buffered updates (max_dev = 0): no NaN, plain sync at sync_rate."""
    params = {"w": mx.ones((3, 2))}
    opt = Scout("sgd", sync_rate=0.5, sync_period=3, learning_rate=0.1)
    for _ in range(3):
        params = opt.apply_gradients({"w": mx.ones((3, 2))}, params)
    # fast = 1 - 0.3, coherence 0 -> rate 1 (max(1 - 0, 0.5)): the slow weights jump to the fast ones
    np.testing.assert_allclose(np.array(params["w"]), 0.7, rtol=1e-6)
    assert bool(mx.all(mx.isfinite(opt.state["slots"]["w"]["buffer"])))


def test_bsam_noise_statistics_and_seed():
    """Phase 0 adds N(0, (num_data * s)^-2) noise (s = 1 at the start); the key in state makes it reproducible."""

    def noise(seed):
        opt = BSAM(num_data=50, learning_rate=0.1, transparent=True, seed=seed)
        p = {"w": mx.zeros((200, 100))}
        return np.array(opt.apply_gradients({"w": mx.zeros((200, 100))}, p)["w"])

    a, b, c = noise(0), noise(0), noise(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean()) < 5 * 0.02 / math.sqrt(a.size)
    assert abs(a.std() / 0.02 - 1) < 0.03


def test_invalid_wrapper_arguments():
    with pytest.raises(ValueError, match="k"):
        Lookahead("sgd", k=0)
    with pytest.raises(ValueError, match="alpha"):
        Lookahead("sgd", alpha=1.0)
    with pytest.raises(ValueError, match="pullback_momentum"):
        Lookahead("sgd", pullback_momentum="sometimes")
    with pytest.raises(ValueError, match="sync_period"):
        Scout("sgd", sync_period=6.0)
    with pytest.raises(ValueError, match="rho"):
        SAM("sgd", rho=-0.1)
    with pytest.raises(ValueError, match="optimizer_kwargs"):
        SAM(optim.SGD(learning_rate=0.1), optimizer_kwargs={"momentum": 0.9})
    with pytest.raises(ValueError, match="gamma"):
        WSAM("sgd", gamma=1.0)
    with pytest.raises(ValueError, match="alpha"):
        LookSAM("sgd", alpha=1.0)
    with pytest.raises(ValueError, match="only one of"):
        KerasOptions("sgd", clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        KerasOptions("sgd", gradient_accumulation_steps=1)


def test_lookahead_backup_and_load_cache():
    model = make_model()
    opt = Lookahead("sgd", k=4, learning_rate=0.1)
    run_updates(model, opt, batches(2), 1, compiled=False)
    fast = params_np(model)
    opt.backup_and_load_cache(model)
    slow = params_np(model)
    for k, v in tree_flatten(opt.state["slots"]):
        np.testing.assert_array_equal(slow[k.removesuffix(".slow_params")], np.array(v))
    assert any(not np.array_equal(fast[k], slow[k]) for k in fast)
    opt.clear_and_load_backup(model)
    for k, v in params_np(model).items():
        np.testing.assert_array_equal(v, fast[k])


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.bn = nn.BatchNorm(8)
        self.out = nn.Linear(8, 3)

    def __call__(self, x):
        return self.out(mx.tanh(self.bn(self.inp(x))))


@pytest.mark.parametrize("compiled", [False, True])
def test_step_with_freezes_batchnorm_statistics_during_the_reevaluation(compiled):
    """Running statistics move once per SAM step (first evaluation), as with one plain forward pass."""
    mx.random.seed(0)
    model = BNNet()
    mx.eval(model.parameters())
    x, y = next(batches(1))
    ref = BNNet()
    ref.update(model.parameters())
    ref(x)
    opt = SAM("sgd", rho=0.5, learning_rate=0.1)
    lg = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        return opt.step_with(model, lg, x, y)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    step(x, y)
    mx.eval(model.state)
    np.testing.assert_allclose(np.array(model.bn.running_mean), np.array(ref.bn.running_mean), rtol=1e-6)
    np.testing.assert_allclose(np.array(model.bn.running_var), np.array(ref.bn.running_var), rtol=1e-6)
    assert model.bn.momentum == 0.1


def test_keras_accumulation_leaves_weights_and_inner_state_alone_between_updates():
    model = make_model()
    opt = KerasOptions("adamw", gradient_accumulation_steps=3, learning_rate=1e-2)
    before = params_np(model)
    run_updates(model, opt, batches(2), 1, compiled=True)
    for k, v in params_np(model).items():
        np.testing.assert_array_equal(v, before[k])
    assert opt.inner.step.item() == 0
    run_updates(model, opt, batches(1), 1, compiled=True)
    assert opt.inner.step.item() == 1 and any(not np.array_equal(v, before[k]) for k, v in params_np(model).items())
