"""ApplyIfFinite against a NumPy transcription of optax's ``apply_if_finite``, and its state guarantees.

The transcription follows ``optax/transforms/_conditionality.py`` (``apply_if_finite``, ``ApplyIfFiniteState``):
``notfinite_count`` is reset to 0 by a finite step and otherwise incremented; the inner update runs when the
gradients are finite or ``notfinite_count > max_consecutive_errors``, else the updates are zeros and the inner
state is kept; ``last_finite`` is this step's finiteness and ``total_notfinite`` counts every non-finite step.
The inner optimizers are transcribed from optax too (``optax.sgd`` with ``trace``, ``optax.adam``) in float64.
The parity rows (``tests/parity/rows/finite.py``) compare the same wrapper around torch optimizers.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim as mo
from mlx_optim.wrappers import ApplyIfFinite

NAN, INF = float("nan"), float("inf")
SHAPES = {"w": (2, 3), "b": (4,)}


# ----------------------------------------------------------------------------- the NumPy transcription
def np_sgd(lr: float, momentum: float = 0.0):
    """optax.sgd(lr, momentum): ``trace`` (t = g + momentum t, no dampening) then ``scale(-lr)``."""

    def init(params):
        return {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}

    def update(grads, state, params):
        if not momentum:
            return {k: -lr * g for k, g in grads.items()}, state
        trace = {k: g + momentum * state[k] for k, g in grads.items()}
        return {k: -lr * t for k, t in trace.items()}, trace

    return init, update


def np_adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """optax.adam: ``scale_by_adam`` (bias-corrected moments, eps outside the root, eps_root 0) then ``-lr``."""

    def init(params):
        return {
            "count": 0,
            "mu": {k: np.zeros_like(p) for k, p in params.items()},
            "nu": {k: np.zeros_like(p) for k, p in params.items()},
        }

    def update(grads, state, params):
        mu = {k: b1 * state["mu"][k] + (1 - b1) * g for k, g in grads.items()}
        nu = {k: b2 * state["nu"][k] + (1 - b2) * g * g for k, g in grads.items()}
        count = state["count"] + 1
        upd = {k: -lr * (mu[k] / (1 - b1**count)) / (np.sqrt(nu[k] / (1 - b2**count)) + eps) for k in grads}
        return upd, {"count": count, "mu": mu, "nu": nu}

    return init, update


def np_apply_if_finite(inner, max_consecutive_errors: int):
    """optax's ``apply_if_finite(inner, max_consecutive_errors)``: ``(init, update)`` over dicts of arrays."""
    inner_init, inner_update = inner

    def init(params):
        return {"notfinite_count": 0, "last_finite": True, "total_notfinite": 0, "inner_state": inner_init(params)}

    def update(updates, state, params):
        isfinite = all(bool(np.all(np.isfinite(u))) for u in updates.values())
        notfinite_count = 0 if isfinite else state["notfinite_count"] + 1
        if isfinite or notfinite_count > max_consecutive_errors:
            updates, new_inner = inner_update(updates, state["inner_state"], params)
        else:
            updates, new_inner = {k: np.zeros_like(u) for k, u in updates.items()}, state["inner_state"]
        total = state["total_notfinite"] + (0 if isfinite else 1)
        return updates, {
            "notfinite_count": notfinite_count,
            "last_finite": isfinite,
            "total_notfinite": total,
            "inner_state": new_inner,
        }

    return init, update


# ----------------------------------------------------------------------------- the problem
def initial_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


# step -> [(leaf, flat index or None for the whole leaf, value)]; with max_consecutive_errors=2: a skip, two
# single skips, then a run of four (steps 6-9: two skipped, 8 and 9 applied anyway), then a skip again.
POISON = {
    1: [("w", 1, NAN)],
    3: [("b", 2, INF)],
    4: [("w", 3, -INF)],
    6: [("b", 0, NAN)],
    7: [("w", None, NAN)],
    8: [("b", 1, INF)],
    9: [("w", 0, NAN)],
    11: [("w", 4, NAN), ("b", 3, -INF)],
}
STEPS = 14


def gradients() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    seq = []
    for t in range(STEPS):
        g = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
        for leaf, index, value in POISON.get(t, ()):
            if index is None:
                g[leaf][...] = value
            else:
                g[leaf].reshape(-1)[index] = value
        seq.append(g)
    return seq


def run_numpy(inner, max_consecutive_errors: int):
    init, update = np_apply_if_finite(inner, max_consecutive_errors)
    params = {k: v.astype(np.float64) for k, v in initial_params().items()}
    state = init(params)
    traj = []
    with np.errstate(invalid="ignore", over="ignore"):
        for g in gradients():
            updates, state = update({k: v.astype(np.float64) for k, v in g.items()}, state, params)
            params = {k: params[k] + updates[k] for k in params}  # optax.apply_updates
            counters = (state["notfinite_count"], state["total_notfinite"], state["last_finite"])
            traj.append((params, counters))
    return traj


def stepper(opt, compiled: bool, params: dict | None = None):
    holder = {"params": {k: mx.array(v) for k, v in (params or initial_params()).items()}}

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        opt.init(holder["params"])
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    return holder, step


def counters(opt) -> tuple[int, int, bool]:
    s = opt.state
    return s["notfinite_count"].item(), s["total_notfinite"].item(), s["last_finite"].item()


def run_mlx(opt, compiled: bool, seq=None):
    holder, step = stepper(opt, compiled)
    traj = []
    for g in gradients() if seq is None else seq:
        step({k: mx.array(v) for k, v in g.items()})
        mx.eval(holder, opt.state)
        traj.append(({k: np.array(v) for k, v in holder["params"].items()}, counters(opt)))
    return traj


# ----------------------------------------------------------------------------- semantics
CASES = {
    "sgd": (lambda: np_sgd(0.1), lambda m: ApplyIfFinite("sgd", m, learning_rate=0.1)),
    "sgd-momentum": (
        lambda: np_sgd(0.05, 0.9),
        lambda m: ApplyIfFinite("sgd", m, learning_rate=0.05, optimizer_kwargs={"momentum": 0.9}),
    ),
    "adam": (lambda: np_adam(0.01), lambda m: ApplyIfFinite(mo.Adam(learning_rate=0.01), m)),
}


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("max_errors", [2, 0, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_numpy_transcription_of_optax(case, max_errors, compiled):
    np_inner, make = CASES[case]
    expected = run_numpy(np_inner(), max_errors)
    got = run_mlx(make(max_errors), compiled)
    for t, ((p_got, c_got), (p_exp, c_exp)) in enumerate(zip(got, expected)):
        assert c_got == c_exp, (t, c_got, c_exp)
        for k in p_exp:
            # inf and nan positions must agree exactly; finite entries within the parity tolerance
            np.testing.assert_allclose(p_got[k], p_exp[k], rtol=1e-4, atol=1e-5, err_msg=f"step {t} {k}")
    if max_errors == 2:  # the sequence reaches the forcing: steps 8 and 9 were applied with non-finite gradients
        assert not np.all(np.isfinite(got[-1][0]["b"])) and not np.all(np.isfinite(got[-1][0]["w"]))
        assert all(np.isfinite(p).all() for p in got[7][0].values()) and not np.isfinite(got[8][0]["b"][1])
    if max_errors == 4:  # the run of four stays within the limit: everything finite
        assert all(np.isfinite(p).all() for p in got[-1][0].values())


def test_the_optax_unit_test_sequence():
    """optax's own ``test_apply_if_finite``: sgd(1.0), limit 2, p * x with x = 1, nan, nan, 1, nan, nan, nan."""
    opt = ApplyIfFinite("sgd", 2, learning_rate=1.0)
    p = {"p": mx.array(0.0)}
    seen = []
    for x in (1.0, NAN, NAN, 1.0, NAN, NAN, NAN):
        p = opt.apply_gradients({"p": mx.array(x)}, p)  # d(p * x)/dp = x
        mx.eval(p, opt.state)
        seen.append((p["p"].item(), *counters(opt)))
    assert seen[:6] == [
        (-1.0, 0, 0, True),
        (-1.0, 1, 1, False),
        (-1.0, 2, 2, False),
        (-2.0, 0, 2, True),
        (-2.0, 1, 3, False),
        (-2.0, 2, 4, False),
    ]
    assert np.isnan(seen[6][0]) and seen[6][1:] == (3, 5, False)


def test_counters_saturate_at_the_int32_maximum():
    opt = ApplyIfFinite("sgd", 2, learning_rate=0.1)
    p = {"p": mx.array([1.0])}
    opt.init(p)
    top = 2**31 - 1
    opt.state["notfinite_count"] = mx.array(top, mx.int32)
    opt.state["total_notfinite"] = mx.array(top, mx.int32)
    p = opt.apply_gradients({"p": mx.array([NAN])}, p)
    mx.eval(p, opt.state)
    assert counters(opt) == (top, top, False)
    assert opt.state["notfinite_count"].dtype == mx.int32


# ----------------------------------------------------------------------------- a skipped step changes nothing
def _flat(tree) -> dict[str, np.ndarray]:
    return {k: np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v) for k, v in tree_flatten(tree)}


def _inner_keys(opt) -> dict[str, mx.Dtype]:
    return {k: v.dtype for k, v in tree_flatten(opt.inner.state)}


INNERS = {
    "adamw": lambda: mo.AdamW(learning_rate=1e-2, weight_decay=0.1),
    "sgd-nesterov": lambda: mo.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "adafactor": lambda: mo.AdaFactor(learning_rate=1e-2),
    "prodigy": lambda: mo.Prodigy(learning_rate=1.0),
    "schedulefreeadamw": lambda: mo.ScheduleFreeAdamW(learning_rate=1e-2),
    "adamw-bf16-state": lambda: mo.AdamW(learning_rate=1e-2, state_dtype=mx.bfloat16),  # rounding key in state
    "cosine-schedule": lambda: mo.Adam(learning_rate=optim.cosine_decay(1e-2, 10)),
    "mlx-adam": lambda: optim.Adam(learning_rate=1e-2),
    "lookahead": lambda: mo.Lookahead(mo.AdamW(learning_rate=1e-2), k=2),
    "sam-transparent": lambda: mo.SAM(mo.SGD(learning_rate=0.1), transparent=True),
}


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("inner", list(INNERS))
def test_skipped_step_leaves_parameters_and_inner_state_bit_identical(inner, compiled):
    seq = gradients()
    finite = [seq[0], seq[2], seq[5]]
    opt = ApplyIfFinite(INNERS[inner](), 3)
    holder, step = stepper(opt, compiled)
    plain = INNERS[inner]()  # the same optimizer fed only the finite gradients
    plain_holder, plain_step = stepper(plain, compiled)
    for g in finite[:2]:
        step({k: mx.array(v) for k, v in g.items()})
        plain_step({k: mx.array(v) for k, v in g.items()})
    mx.eval(holder, opt.state, plain_holder, plain.state)
    params, inner_state, dtypes = _flat(holder["params"]), _flat(opt.inner.state), _inner_keys(opt)
    for t in (1, 3, 7):  # one NaN element; one +inf element; a whole leaf of NaN
        step({k: mx.array(v) for k, v in seq[t].items()})
        mx.eval(holder, opt.state)
        for k, v in _flat(holder["params"]).items():
            np.testing.assert_array_equal(v, params[k], err_msg=f"step {t}: parameter {k}")
        after = _flat(opt.inner.state)
        assert after.keys() == inner_state.keys() and _inner_keys(opt) == dtypes
        for k, v in after.items():
            np.testing.assert_array_equal(v, inner_state[k], err_msg=f"step {t}: inner state {k}")
    assert counters(opt) == (3, 3, False)
    # the next finite step continues exactly where the skipped ones left off
    step({k: mx.array(v) for k, v in finite[2].items()})
    plain_step({k: mx.array(v) for k, v in finite[2].items()})
    mx.eval(holder, opt.state, plain_holder, plain.state)
    assert counters(opt) == (0, 3, True)
    for k, v in _flat(plain_holder["params"]).items():
        np.testing.assert_array_equal(_flat(holder["params"])[k], v, err_msg=f"after the skips: {k}")
    for k, v in _flat(plain.state).items():
        np.testing.assert_array_equal(_flat(opt.inner.state)[k], v, err_msg=f"after the skips: inner state {k}")


def test_compiled_equals_eager_on_the_poisoned_sequence():
    runs = [run_mlx(CASES["adam"][1](2), compiled) for compiled in (False, True)]
    for t, ((pe, ce), (pc, cc)) in enumerate(zip(*runs)):
        assert ce == cc, t
        for k in pe:
            np.testing.assert_allclose(pc[k], pe[k], rtol=1e-6, atol=0, err_msg=f"step {t} {k}")


# ----------------------------------------------------------------------------- save / resume, bf16
@pytest.mark.parametrize("cut", [2, 7, 8])  # after a finite step; inside a run of skips; after a forced step
def test_save_and_resume_mid_sequence_is_exact(cut, tmp_path):
    def make():
        return ApplyIfFinite("adamw", 2, learning_rate=1e-2, optimizer_kwargs={"weight_decay": 0.1})

    seq = gradients()
    full = run_mlx(make(), False, seq)

    opt = make()
    first = run_mlx(opt, False, seq[:cut])
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    params = first[-1][0]

    opt2 = make()
    loaded = mx.load(str(tmp_path / "opt.safetensors"))
    assert loaded["notfinite_count"].dtype == mx.int32 and loaded["last_finite"].dtype == mx.bool_
    opt2.state = tree_unflatten(list(loaded.items()))
    assert counters(opt2) == full[cut - 1][1]
    holder, step = stepper(opt2, False, params)
    for t in range(cut, STEPS):
        step({k: mx.array(v) for k, v in seq[t].items()})
        mx.eval(holder, opt2.state)
        assert counters(opt2) == full[t][1], t
        for k, v in holder["params"].items():
            np.testing.assert_array_equal(np.array(v), full[t][0][k], err_msg=f"step {t} {k}")


def test_bf16_parameters():
    seq = gradients()
    init = {k: mx.array(v).astype(mx.bfloat16) for k, v in initial_params().items()}
    opt = ApplyIfFinite(mo.AdamW(learning_rate=1e-2), 2)
    plain = mo.AdamW(learning_rate=1e-2)
    p, q = dict(init), dict(init)
    for t in (0, 1, 2, 3, 5):
        g = {k: mx.array(v).astype(mx.bfloat16) for k, v in seq[t].items()}
        before = _flat(p)
        p = opt.apply_gradients(g, p)
        if t not in POISON:
            q = plain.apply_gradients(g, q)
        mx.eval(p, q, opt.state, plain.state)
        assert all(v.dtype == mx.bfloat16 for v in p.values())
        if t in POISON:
            for k, v in _flat(p).items():
                np.testing.assert_array_equal(v, before[k])
        for k in p:  # the guarded run equals the plain optimizer fed the finite steps only, bit for bit
            np.testing.assert_array_equal(_flat(p)[k], _flat(q)[k], err_msg=f"step {t} {k}")
    assert all(v.dtype == mx.float32 for k, v in tree_flatten(opt.inner.state) if k.rsplit(".", 1)[-1] == "exp_avg")
    assert counters(opt) == (0, 2, True)


# ----------------------------------------------------------------------------- construction and integration
def test_arguments_are_checked():
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match="max_consecutive_errors"):
            ApplyIfFinite("adamw", bad)
    for inner in (mo.SAM("sgd"), "adahessian", "sophiag", "lbfgs"):
        with pytest.raises(ValueError, match="cannot guard"):
            ApplyIfFinite(inner)
    with pytest.raises(ValueError, match="cannot guard"):
        ApplyIfFinite(mo.Lookahead(mo.SAM("sgd")))
    assert ApplyIfFinite("sgd").max_consecutive_errors == 5


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3, 4)
        self.l2 = nn.Linear(4, 2)

    def __call__(self, x):
        return self.l2(mx.tanh(self.l1(x)))


def test_create_optimizer_apply_if_finite():
    model = Net()
    opt = mo.create_optimizer(model, "adamw", 1e-2, weight_decay=0.1, apply_if_finite=3)
    assert isinstance(opt, ApplyIfFinite) and isinstance(opt.inner, mo.AdamW)
    (ban,) = opt.inner.groups  # the weight-decay ban list is a group without decay
    assert opt.max_consecutive_errors == 3 and ban.params("l1.bias") and not ban.params("l1.weight")
    assert ban["weight_decay"].item() == 0.0
    wrapped = mo.create_optimizer(model, "adamw", 1e-2, use_lookahead=True, k=3, apply_if_finite=0)
    assert isinstance(wrapped.inner, mo.Lookahead) and wrapped.inner.k == 3
    assert not isinstance(mo.create_optimizer(model, "adamw", 1e-2), ApplyIfFinite)
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        mo.create_optimizer(model, "adamw", apply_if_finite=-1)

    mx.eval(model.parameters())
    before = _flat(model.parameters())
    grads = nn.value_and_grad(model, lambda m, x: mx.sum(m(x)))(model, mx.ones((2, 3)))[1]
    grads["l2"]["bias"] = mx.array([NAN, 0.0])
    opt.update(model, grads)
    mx.eval(model.parameters(), opt.state)
    for k, v in _flat(model.parameters()).items():
        np.testing.assert_array_equal(v, before[k])
    assert counters(opt) == (1, 1, False) and opt.inner.state["step"].item() == 0


def test_build_optimizer_for_mlx_lm():
    from mlx_optim.integrations.mlx_lm import build_optimizer

    opt = build_optimizer("adamw", {"apply_if_finite": 3, "betas": [0.9, 0.95]}, learning_rate=1e-3)
    assert isinstance(opt, ApplyIfFinite) and isinstance(opt.inner, mo.AdamW)
    assert opt.max_consecutive_errors == 3 and opt.learning_rate.item() == pytest.approx(1e-3)
    assert opt.inner.beta2.item() == pytest.approx(0.95)
    opt = build_optimizer("applyiffinite", {"optimizer": "lion", "max_consecutive_errors": 1}, learning_rate=1e-4)
    assert isinstance(opt.inner, mo.Lion) and opt.max_consecutive_errors == 1
    assert isinstance(build_optimizer("applyiffinite").inner, mo.AdamW)
    with pytest.raises(ValueError, match="cannot guard"):
        build_optimizer("sophiah", {"apply_if_finite": 2})
