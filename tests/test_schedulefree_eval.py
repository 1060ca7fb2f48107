"""Schedule-free optimizers' eval() / train() called as in PyTorch, without an argument (issue 18)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_optim as mo

SCHEDULE_FREE = ["ScheduleFreeAdamW", "ScheduleFreeSGD", "ScheduleFreeRAdam"]


def _setup(name: str):
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = getattr(mo, name)(learning_rate=0.05)
    lg = mo.value_and_grad(model, lambda m, x, y: nn.losses.mse_loss(m(x), y))
    x = mx.random.normal((16, 3))
    return model, opt, lg, x, x.sum(axis=1, keepdims=True)


def _weights(model) -> list[np.ndarray]:
    return [np.array(v) for _, v in tree_flatten(model.parameters())]


@pytest.mark.parametrize("name", SCHEDULE_FREE)
@pytest.mark.parametrize("how", ["step_with", "update", "compiled"])
def test_eval_and_train_without_argument_switch_the_stepped_model(name, how):
    model, opt, lg, x, y = _setup(name)
    state = [model.state, opt.state]

    def step():
        if how == "update":
            _, grads = lg(model, x, y)
            opt.update(model, grads)
        else:
            opt.step_with(model, lg, x, y)

    run = mx.compile(step, inputs=state, outputs=state) if how == "compiled" else step
    for _ in range(12):  # ScheduleFreeRAdam does not move z in its first (unrectified) steps
        run()
        mx.eval(state)
    at_y = model.parameters()  # the training point (model.update replaces the arrays: this tree is kept)
    expected_x = opt.eval(at_y)  # the explicit form on a parameter tree
    opt.globals["train_mode"] = mx.array(1.0)  # back to train mode: the model still holds y
    assert opt.eval() is model  # PyTorch's optimizer.eval()
    assert opt.globals["train_mode"].item() == 0.0
    for a, b in zip(_weights(model), [np.array(v) for _, v in tree_flatten(expected_x)]):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, np.array(b)) for a, (_, b) in zip(_weights(model), tree_flatten(at_y)))
    expected_y = opt.train(expected_x)
    opt.globals["train_mode"] = mx.array(0.0)
    opt.train()
    assert opt.globals["train_mode"].item() == 1.0
    for a, b in zip(_weights(model), [np.array(v) for _, v in tree_flatten(expected_y)]):
        np.testing.assert_array_equal(a, b)


def test_eval_without_argument_before_any_model_says_what_to_pass():
    opt = mo.ScheduleFreeAdamW()
    with pytest.raises(ValueError, match=r"opt\.eval\(model\)"):
        opt.eval()
    params = {"w": mx.ones((2,))}
    params = opt.apply_gradients({"w": mx.ones((2,))}, params)  # trees only: still no model to switch
    with pytest.raises(ValueError, match=r"params = opt\.train\(params\)"):
        opt.train()
    assert isinstance(opt.eval(params), dict)  # the explicit forms are unchanged
