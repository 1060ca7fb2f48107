"""Every learning-rate schedule against its torch / pytorch_optimizer scheduler's learning-rate sequence."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from torch.optim import lr_scheduler as tls

import mlx_optim as mo
from mlx_optim import schedulers as S

BASE = 0.1


def _torch_opt(lr=BASE):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def after_k_steps(make, n, lr=BASE):
    """The learning rate in use for update k: after k calls of scheduler.step()."""
    opt = _torch_opt(lr)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def returned(make, n):
    """pytorch_optimizer's warmup schedulers: the value returned by the (k+1)-th step()."""
    sched = make(_torch_opt())
    return [sched.step() for _ in range(n)]


def ours(schedule, n):
    return [schedule(mx.array(k)).item() for k in range(n)]


CASES = [
    ("step", S.step(BASE, 3, 0.5), lambda o: tls.StepLR(o, 3, 0.5), after_k_steps, 20),
    (
        "multi_step",
        S.multi_step(BASE, [2, 5, 11], 0.3),
        lambda o: tls.MultiStepLR(o, [2, 5, 11], 0.3),
        after_k_steps,
        20,
    ),
    (
        "multiplicative",
        S.multiplicative(BASE, 0.9),
        lambda o: tls.MultiplicativeLR(o, lambda e: 0.9),
        after_k_steps,
        20,
    ),
    (
        "multiplicative-callable",
        S.multiplicative(BASE, lambda k: 0.9 + 0.01 * k, max_steps=40),
        lambda o: tls.MultiplicativeLR(o, lambda e: 0.9 + 0.01 * e),
        after_k_steps,
        20,
    ),
    ("constant", S.constant(BASE, 0.25, 4), lambda o: tls.ConstantLR(o, 0.25, 4), after_k_steps, 10),
    (
        "cosine_annealing",
        S.cosine_annealing(BASE, 7, 0.01),
        lambda o: tls.CosineAnnealingLR(o, 7, 0.01),
        after_k_steps,
        14,
    ),
    (
        "warm_restart",
        S.cosine_annealing_with_warm_restart(BASE, 5, 1, 0.001),
        lambda o: tls.CosineAnnealingWarmRestarts(o, 5, 1, 0.001),
        after_k_steps,
        30,
    ),
    (
        "warm_restart-mult",
        S.cosine_annealing_with_warm_restart(BASE, 3, 2, 0.001),
        lambda o: tls.CosineAnnealingWarmRestarts(o, 3, 2, 0.001),
        after_k_steps,
        50,
    ),
    *[
        (
            f"cyclic-{mode}",
            S.cyclic(0.01, BASE, 4, 6, mode, 0.97),
            lambda o, mode=mode: tls.CyclicLR(o, 0.01, BASE, 4, 6, mode, 0.97),
            after_k_steps,
            40,
        )
        for mode in ("triangular", "triangular2", "exp_range")
    ],
    *[
        (
            f"one_cycle-{strategy}-{three}",
            S.one_cycle(BASE, 30, anneal_strategy=strategy, three_phase=three),
            lambda o, strategy=strategy, three=three: tls.OneCycleLR(
                o, BASE, 30, anneal_strategy=strategy, three_phase=three
            ),
            after_k_steps,
            30,
        )
        for strategy in ("cos", "linear")
        for three in (False, True)
    ],
    ("chebyshev", S.chebyshev(BASE, 10), lambda o: po.load_lr_scheduler("chebyshev")(o, 10), after_k_steps, 16),
    *[
        (
            f"wsd-{kind}",
            S.warmup_stable_decay(BASE, 3, 4, 5, 0.1, 0.5, kind),
            lambda o, kind=kind: po.load_lr_scheduler("warmup_stable_decay")(o, 3, 4, 5, 0.1, 0.5, kind),
            after_k_steps,
            16,
        )
        for kind in ("cosine", "1-sqrt", "linear", "1-square")
    ],
    (
        "cosine_annealing_with_warmup",
        S.cosine_annealing_with_warmup(10, 1.0, BASE, 0.001, 3, 0.8),
        lambda o: po.load_lr_scheduler("cosine_annealing_with_warmup")(o, 10, 1.0, BASE, 0.001, 3, 0.8),
        after_k_steps,
        45,
    ),
    (
        "cosine_annealing_with_warmup-mult",
        S.cosine_annealing_with_warmup(8, 1.5, BASE, 0.001, 2, 0.8),
        lambda o: po.load_lr_scheduler("cosine_annealing_with_warmup")(o, 8, 1.5, BASE, 0.001, 2, 0.8),
        after_k_steps,
        60,
    ),
    *[
        (
            name,
            S.load_lr_scheduler(name)(20, BASE, 0.01, 0.001, 5),
            lambda o, name=name: po.load_lr_scheduler(name)(
                o, t_max=20, max_lr=BASE, min_lr=0.01, init_lr=0.001, warmup_steps=5
            ),
            returned,
            20,
        )
        for name in ("linear", "cosine", "poly")
    ],
    ("rex", S.rex(20, BASE, 0.01), lambda o: po.load_lr_scheduler("rex")(o, 20, BASE, 0.01), after_k_steps, 25),
]


@pytest.mark.parametrize("label,schedule,make,convention,n", CASES, ids=[c[0] for c in CASES])
def test_schedule_matches_reference(label, schedule, make, convention, n):
    np.testing.assert_allclose(ours(schedule, n), convention(make, n), rtol=2e-5, atol=1e-8, err_msg=label)


def test_proportion_follows_its_lr_schedule():
    opt = _torch_opt()
    lr_sched = tls.CosineAnnealingLR(opt, 10)
    prop = po.load_lr_scheduler("proportion")(lr_sched, max_lr=BASE, min_lr=0.0, max_value=2.0, min_value=0.5)
    expected = []
    for _ in range(15):
        expected.append(prop.get_lr())
        opt.step()
        lr_sched.step()
        prop.step()
    mine = ours(S.proportion(S.cosine_annealing(BASE, 10), BASE, 0.0, 2.0, 0.5), 15)
    np.testing.assert_allclose(mine, expected, rtol=2e-5, atol=1e-7)


def test_explore_exploit_matches_ranger21():
    n = 100
    ref = po.load_optimizer("ranger21")(
        [torch.nn.Parameter(torch.zeros(1))], num_iterations=n, lr=BASE, betas=(0.9, 0.98)
    )
    expected = [ref.warm_down(ref.warm_up_dampening(BASE, t), t) for t in range(1, n + 1)]
    np.testing.assert_allclose(ours(S.explore_exploit(BASE, n, beta2=0.98), n), expected, rtol=2e-5, atol=1e-8)


def test_untuned_linear_warmup():
    sched = S.linear_warmup(BASE, beta2=0.999)
    assert sched(mx.array(0)).item() == pytest.approx(BASE / 2000)
    assert sched(mx.array(999)).item() == pytest.approx(BASE / 2)
    assert sched(mx.array(5000)).item() == pytest.approx(BASE)
    inner = S.linear_warmup(S.step(BASE, 10, 0.5), warmup_steps=4)
    assert ours(inner, 12)[::4] == pytest.approx([BASE / 4, BASE, BASE])
    assert inner(mx.array(11)).item() == pytest.approx(BASE / 2)


def test_registry_and_errors():
    assert mo.get_supported_lr_schedulers() == sorted(S.LR_SCHEDULERS)
    assert set(po.get_supported_lr_schedulers()) <= set(mo.get_supported_lr_schedulers())
    with pytest.raises(ValueError, match="did you mean cosine"):
        mo.load_lr_scheduler("cosin")
    with pytest.raises(ValueError, match="cooldown_type"):
        S.warmup_stable_decay(BASE, 1, 1, 1, cooldown_type="exp")


def test_schedules_drive_a_compiled_optimizer():
    sched = S.cosine_annealing_with_warm_restart(BASE, 4, 2, 0.0)
    opt = mo.SGD(learning_rate=sched)
    holder = {"p": {"w": mx.zeros((3,))}}
    state = [holder, opt.state]
    step = mx.compile(
        lambda g: holder.__setitem__("p", opt.apply_gradients(g, holder["p"])), inputs=state, outputs=state
    )
    seen = []
    for _ in range(10):
        seen.append(opt.learning_rate.item() if "learning_rate" in opt.state else None)
        step({"w": mx.ones((3,))})
        mx.eval(state)
    w = holder["p"]["w"][0].item()
    assert w == pytest.approx(-sum(sched(mx.array(k)).item() for k in range(10)), rel=1e-5)
    assert math.isfinite(w)
