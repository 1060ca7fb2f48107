"""Packed updates (mlx_optim.packed): equal to the unpacked path, array-only state, exact resume."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim.packed import ELEMENTWISE, _no_reducing_flags, pack
from tests.parity.harness import all_rows

# Three leaves packed together (<= 30 elements), one 1-d leaf of another dtype, one leaf left unpacked.
SHAPES = {"a": (7,), "b": {"w": (5, 6), "c": [(2, 3, 4)]}, "big": (8, 8)}
MAX_SIZE = 30


def make_params(rng) -> dict:
    def build(s):
        if isinstance(s, dict):
            return {k: build(v) for k, v in s.items()}
        if isinstance(s, list):
            return [build(v) for v in s]
        return mx.array(rng.normal(size=s).astype(np.float32))

    return build(SHAPES)


def like(tree, rng, scale):
    """Gradients of a different scale per leaf (1x, 5x, 25x, ...): a per-leaf reduction that packing would turn
    into one over the whole buffer (a norm, a mean) then changes the result."""
    flat = tree_flatten(tree)
    return tree_unflatten(
        [(k, mx.array((rng.normal(size=v.shape) * scale * 5.0**i).astype(np.float32))) for i, (k, v) in enumerate(flat)]
    )


# Up, a little up, then down: the loss-driven optimizers (EmoNavi family) visit each of their loss moods.
LOSSES = (1.0, 1.29, 1.5, 1.55, 0.9, 0.5, 0.45, 0.6)


def run(opt, steps=8, compiled=False, seed=0, params=None):
    rng = np.random.default_rng(seed)
    holder = {"p": params if params is not None else make_params(rng)}
    holder["p"] = tree_unflatten(tree_flatten(holder["p"]))  # own containers: compile swaps tracers into inputs

    def step(g, loss):
        holder["p"] = opt.apply_gradients(g, holder["p"], loss=loss)

    if compiled:
        opt.init(holder["p"])
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    for t in range(steps):
        step(like(holder["p"], rng, 3.0 if t < 2 else 0.1), mx.array(LOSSES[t % len(LOSSES)]))
        mx.eval(holder, opt.state)
    return dict(tree_flatten(holder["p"]))


ROWS = [
    r
    for r in all_rows()
    if r.name in ELEMENTWISE or getattr(mlx_optim.load_optimizer(r.name), "elementwise", False)  # listed or declared
]


def packable_rows():
    out = []
    for row in ROWS:
        opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
        if _no_reducing_flags(opt):
            out.append(pytest.param(row, id=row.label))
    return out


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("row", packable_rows())
def test_packed_equals_unpacked(row, compiled):
    make = lambda: mlx_optim.load_optimizer(row.name)(**row.kwargs)  # noqa: E731
    ref = run(make(), compiled=compiled)
    opt = pack(make(), MAX_SIZE)
    got = run(opt, compiled=compiled)
    assert set(opt.state["packed"]) <= {"float32", "float32_nodecay"}
    assert not any(k.startswith(("a.", "b.")) for k, _ in tree_flatten(opt.state)), "packed leaves kept own state"
    for k in ref:  # the same operations on the same values: bit for bit
        np.testing.assert_array_equal(np.array(got[k]), np.array(ref[k]), err_msg=f"{row.label}: {k}")


def test_every_listed_optimizer_has_a_checked_row():
    checked = {p.values[0].name for p in packable_rows()}
    assert set(ELEMENTWISE) <= checked, set(ELEMENTWISE) - checked
    assert set(ELEMENTWISE) <= set(mlx_optim.get_supported_optimizers())


def test_reducing_options_and_other_optimizers_are_refused():
    with pytest.raises(ValueError, match="element-wise"):
        pack(mlx_optim.Lion(learning_rate=1e-3, adanorm=True))
    with pytest.raises(ValueError, match="element-wise"):
        pack(mlx_optim.Lamb(learning_rate=1e-3))
    with pytest.raises(ValueError, match="max_size"):
        pack(mlx_optim.AdamW(learning_rate=1e-3), max_size=0)


def test_weight_decay_filter_splits_groups():
    make = lambda: mlx_optim.AdamW(learning_rate=1e-2, weight_decay=0.1)  # noqa: E731
    ref_opt, opt = make(), pack(make(), MAX_SIZE)
    for o in (ref_opt, opt):
        o.decay_filter = lambda path: not path.startswith("a")
    ref, got = run(ref_opt), run(opt)
    assert set(opt.state["packed"]) == {"float32", "float32_nodecay"}
    for k in ref:
        np.testing.assert_array_equal(np.array(got[k]), np.array(ref[k]), err_msg=k)


@pytest.mark.parametrize("name", ["adamw", "lion", "sgd"])
def test_packed_state_saves_and_resumes_exactly(name, tmp_path):
    kw = {"learning_rate": 1e-2} | ({"momentum": 0.9} if name == "sgd" else {})
    make = lambda: pack(mlx_optim.load_optimizer(name)(**kw), MAX_SIZE)  # noqa: E731
    rng = np.random.default_rng(1)
    params = make_params(rng)
    straight = make()
    mid = run(straight, 3, params=params)
    mx.save_safetensors(str(tmp_path / "s.safetensors"), dict(tree_flatten(straight.state)))
    assert all(isinstance(v, mx.array) for _, v in tree_flatten(straight.state))
    resumed = make()
    resumed.state = tree_unflatten(list(mx.load(str(tmp_path / "s.safetensors")).items()))
    a = run(straight, 3, seed=7, params=tree_unflatten(list(mid.items())))
    b = run(resumed, 3, seed=7, params=tree_unflatten(list(mid.items())))
    for k in a:
        np.testing.assert_array_equal(np.array(a[k]), np.array(b[k]), err_msg=f"{name}: {k} after resume")


def test_changed_tree_raises():
    opt = pack(mlx_optim.AdamW(learning_rate=1e-2), MAX_SIZE)
    params = make_params(np.random.default_rng(0))
    run(opt, 1, params=params)
    smaller = {"a": params["a"], "big": params["big"]}
    with pytest.raises(ValueError, match="parameter tree changed"):
        opt.apply_gradients(smaller, smaller)


def test_packed_bf16_state_with_stochastic_rounding_runs_and_is_half_size():
    opt = pack(mlx_optim.AdamW(learning_rate=1e-2, state_dtype=mx.bfloat16), MAX_SIZE)
    out = run(opt, 4)
    assert all(np.isfinite(np.array(v)).all() for v in out.values())
    flat = opt.state["packed"]["float32"]
    assert flat["exp_avg"].dtype == mx.bfloat16 and flat["exp_avg"].shape == (7 + 30 + 24,)
