"""Host-side refresh schedules (mlx_optim.refresh): the host path equals the array logic, eager and compiled."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim
from mlx_optim import refresh

# name -> keywords with a short refresh period, so that 7 steps cross several refreshes
CASES = {
    "soap": {"learning_rate": 1e-2, "precondition_frequency": 3},
    "splus": {"learning_rate": 1e-2, "inverse_steps": 3},
    "galore": {"learning_rate": 1e-2, "rank": 4, "update_proj_gap": 3},
    "fira": {"learning_rate": 1e-2, "rank": 4, "update_proj_gap": 3},
    "apollo": {"learning_rate": 1e-2, "rank": 4, "update_proj_gap": 3},
    "conda": {"learning_rate": 1e-2, "update_proj_gap": 3},
    "dash": {"learning_rate": 1e-2, "precondition_frequency": 3, "start_preconditioning_step": 2, "block_size": 8},
    "alice": {"learning_rate": 1e-2, "rank": 6, "leading_basis": 2, "update_interval": 3},
    "scalableshampoo": {
        "learning_rate": 1e-2,
        "preconditioning_compute_steps": 3,
        "start_preconditioning_step": 2,
        "block_size": 8,
    },
    "shampoo": {"learning_rate": 1e-2, "preconditioning_compute_steps": 3},
}
STEPS = 7


def _problem():
    rng = np.random.default_rng(0)
    params = {"w": mx.array(rng.standard_normal((12, 10)).astype(np.float32) * 0.3)}
    grads = [{"w": mx.array(rng.standard_normal((12, 10)).astype(np.float32))} for _ in range(STEPS)]
    return params, grads


def _run(name: str, mode: str, monkeypatch) -> list[np.ndarray]:
    params, grads = _problem()
    opt = mlx_optim.load_optimizer(name)(**CASES[name])
    opt.fuse_updates = not mode.endswith("unfused")  # tests/conftest.py turns the CPU's auto-fusion off
    out = []
    if mode == "compiled":  # the caller's mx.compile: the step counter is a tracer, the schedule array logic
        opt.init(params)
        state = [opt.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(g, p):
            return opt.apply_gradients(g, p)

        for g in grads:
            params = step(g, params)
            mx.eval(params, opt.state)
            out.append(np.array(params["w"]))
        return out
    with monkeypatch.context() as m:
        if mode.startswith("array"):  # the host does not know the step: array logic
            m.setattr(refresh, "host_step", lambda opt: None)
        for g in grads:
            params = opt.apply_gradients(g, params)
            mx.eval(params, opt.state)
            out.append(np.array(params["w"]))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_schedule_equals_the_array_logic(name, monkeypatch):
    host = _run(name, "host", monkeypatch)
    for mode in ("unfused", "array", "array-unfused", "compiled"):
        other = _run(name, mode, monkeypatch)
        for i, (a, b) in enumerate(zip(host, other)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: host path vs {mode}, step {i + 1}")


def test_host_flags_follow_the_step_and_stay_unknown_under_compile():
    opt = mlx_optim.SOAP(precondition_frequency=3)
    seen = []
    original = opt.refresh_flags

    def spy(step):
        flags = original(step)
        if isinstance(step, int):
            seen.append((step, bool(flags["refresh"])))
        return flags

    opt.refresh_flags = spy
    params, grads = _problem()
    for g in grads[:5]:
        params = opt.apply_gradients(g, params)
    assert seen == [(1, False), (2, False), (3, False), (4, True), (5, False)]  # (step - 1) % 3 == 0, after step 1
    assert opt._host_flags is None


def test_one_trace_per_flag_combination_and_a_changed_option_drops_them():
    opt = mlx_optim.SOAP(precondition_frequency=3)
    opt.fuse_updates = True
    params, grads = _problem()
    for g in grads:
        params = opt.apply_gradients(g, params)
    mx.eval(params)
    fns = opt.__dict__["_refresh_fused_fns"]
    # step 1 (first), the refresh steps 4 and 7, the other steps
    assert len(fns) == 3
    opt.normalize_gradient = True  # a Python option: every trace is stale
    params = opt.apply_gradients(grads[0], params)
    assert len(opt.__dict__["_refresh_fused_fns"]) == 1


def test_every_on_ints_and_arrays():
    assert refresh.every(6, 3) is True and refresh.every(7, 3) is False
    assert refresh.every(mx.array(6.0), 3).item() and not refresh.every(mx.array(7.0), 3).item()
