"""The base class's two CPU fast paths against the plain update, for every registered optimizer.

* fused updates (``Optimizer.fuse_updates``): element-wise optimizers run ``apply_gradients`` as one
  ``mx.compile``d function on the CPU;
* update streams (:mod:`mlx_optim.streams`): the leaves' updates spread over several CPU streams.

Both must leave every number unchanged: the plain path (one stream, not fused) is the one the parity
rows check against PyTorch, so each trajectory here must equal it bit for bit, eagerly and inside a
caller's ``mx.compile``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim import functional as F
from mlx_optim import streams
from mlx_optim.execution import Execution
from tests.test_contract import KWARGS, NAMES, NOT_COMPILABLE, batches, make_model, make_opt, params_np, train


def _run(name: str, *, fused: bool | None, n_streams: int, compiled: bool, steps: int = 6):
    model, opt = make_model(name=name), make_opt(name)
    opt.fuse_updates, opt.update_streams = fused, n_streams
    losses = train(model, opt, batches(steps), compiled=compiled)
    return losses, params_np(model), opt


CASES = [
    pytest.param(name, compiled, id=f"{name}-{'compiled' if compiled else 'eager'}")
    for name in NAMES
    for compiled in (False, True)
    if not (compiled and name in NOT_COMPILABLE)  # lbfgs cannot run inside mx.compile (tests/test_contract.py)
]


@pytest.mark.parametrize("name, compiled", CASES)
def test_fast_paths_equal_the_plain_update(name, compiled, monkeypatch):
    monkeypatch.setattr(streams, "MIN_LEAF_SIZE", 1)  # the test MLP's leaves are small: spread them all
    lp, pp, _ = _run(name, fused=False, n_streams=1, compiled=compiled)
    lf, pf, opt = _run(name, fused=None, n_streams=3, compiled=compiled)
    assert lf == lp, name
    for k in pp:
        np.testing.assert_array_equal(pf[k], pp[k], err_msg=f"{name}: {k}")
    if not compiled and isinstance(opt, Execution):  # the automatic choice: fused for every compilable optimizer
        assert opt._fuses_updates() == opt.compilable, name  # (on the CPU; wrappers run their inner optimizer's)


def test_fusion_is_automatic_for_the_common_optimizers():
    for name in ("adamw", "adam", "sgd", "lion", "rmsprop", "adagrad", "nadam", "radam", "adamax"):
        opt = mlx_optim.load_optimizer(name)(**KWARGS[name])
        assert opt._fuses_updates(), name
    for name in ("lamb", "adafactor", "came", "prodigy", "muon"):  # not element-wise: compilable, so fused too
        model, opt = make_model(), make_opt(name)
        train(model, opt, batches(1))
        assert "_fused_fn" in opt.__dict__, name
    assert not mlx_optim.load_optimizer("lbfgs")()._fuses_updates()  # host-side line search: not compilable
    assert not mlx_optim.packed.pack(mlx_optim.AdamW())._fuses_updates()  # packed: its own fused update
    off = mlx_optim.load_optimizer("lamb")()
    off.fuse_updates = False
    assert not off._fuses_updates()


def test_changed_option_traces_again():
    model, opt = make_model(), mlx_optim.Adam(learning_rate=1e-2)
    train(model, opt, batches(2))
    first = opt._fused_fn
    opt.learning_rate = 1e-3  # a tunable: an input of the trace, no new trace
    train(model, opt, batches(1))
    assert opt._fused_fn is first
    opt.amsgrad = True  # a Python option: the next step is traced again, with the AMSGrad state
    opt.init(model.trainable_parameters())
    assert "_fused_fn" not in opt.__dict__


def test_fused_update_keeps_the_state_dict_and_its_trace_scalars_inside():
    model, opt = make_model(), mlx_optim.AdamW(learning_rate=1e-2)
    state = opt.state
    train(model, opt, batches(3))
    assert opt.state is state and int(state["step"]) == 3
    assert not vars(opt.hp), "per-step scalars of the trace must not leak out of it"


def test_leaf_streams_balance_by_size(monkeypatch):
    monkeypatch.setattr(streams, "MIN_LEAF_SIZE", 100)
    ls = streams.LeafStreams(3)
    picks = [ls.pick(n) for n in (1000, 10, 400, 400, 300, 99)]
    assert picks == [0, 0, 1, 2, 1, 0]  # small leaves on the default stream; the rest least-loaded first
    assert ls.load == [1000, 700, 400]
    assert len({id(s) for s in ls.streams}) == 3 and ls.streams[0] == mx.default_stream(mx.cpu)


def test_stream_setting_and_validation(monkeypatch):
    monkeypatch.setattr(streams, "_setting", None)
    monkeypatch.setenv("MLX_OPTIM_STREAMS", "3")
    assert streams.default_update_streams() == 3
    monkeypatch.setenv("MLX_OPTIM_STREAMS", "zero")
    with pytest.raises(ValueError, match="MLX_OPTIM_STREAMS='zero'"):
        streams.default_update_streams()
    monkeypatch.delenv("MLX_OPTIM_STREAMS")
    assert streams.default_update_streams() >= 1
    streams.set_update_streams(1)
    assert streams.default_update_streams() == 1 and streams.LeafStreams.for_step(None) is None
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=f"n={bad!r}"):
            streams.set_update_streams(bad)


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16, mx.float16])
def test_branch_free_sign_equals_mx_sign(dtype):
    """functional.sign replaces mx.sign in every optimizer (a fused select mispredicts on random signs)."""
    special = [0.0, -0.0, 1e-45, -1e-45, 1e-30, -3.0, float("inf"), -float("inf"), float("nan")]
    x = mx.concatenate([mx.array(special), mx.random.normal((4096,)) * 1e-3]).astype(dtype)
    for fn in (F.sign, mx.compile(lambda a: F.sign(a * 1.0))):  # eager, and fused into a compiled loop
        got, want = np.array(fn(x).astype(mx.float32)), np.array(mx.sign(x).astype(mx.float32))
        np.testing.assert_array_equal(got, want)
        assert not np.signbit(got[:2]).any(), "sign(+-0) is +0, as mx.sign gives"


@pytest.mark.parametrize("name", ["adamw", "lion", "rmsprop"])
def test_fused_update_resumes_exactly_from_saved_state(name, tmp_path):
    model, opt = make_model(), make_opt(name)
    assert opt._fuses_updates()
    data = list(batches(6))
    train(model, opt, data[:3])
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    train(model, opt, data[3:])
    resumed_model, resumed = make_model(), make_opt(name)
    resumed_model.load_weights(str(tmp_path / "model.safetensors"))
    resumed.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    train(resumed_model, resumed, data[3:])
    assert "_fused_fn" in resumed.__dict__
    want, got = params_np(model), params_np(resumed_model)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")


def test_init_raises_the_cpu_buffer_cache_to_hold_one_step():
    """On the CPU an optimizer's init raises MLX's cache limit to twice its parameters' and state's bytes (each
    step's outputs are fresh buffers), never lowers it, and leaves it alone when switched off."""
    st = streams
    previous = mx.set_cache_limit(1 << 20)
    try:
        params = {"w": mx.zeros((1024, 512))}  # 2 MB; AdamW state 4 MB: 12 MB wanted
        mlx_optim.AdamW(learning_rate=1e-3).init(params)
        wanted = 2 * (2 << 20) * 3
        assert wanted <= mx.set_cache_limit(64 << 20) < wanted + 4096  # + the scalar state (step, tunables)
        mlx_optim.AdamW(learning_rate=1e-3).init(params)  # 64 MB is enough: kept
        assert mx.set_cache_limit(1 << 20) == 64 << 20
        st.set_buffer_cache(False)
        mlx_optim.AdamW(learning_rate=1e-3).init(params)
        assert mx.set_cache_limit(1 << 20) == 1 << 20
    finally:
        st.set_buffer_cache(True)
        mx.set_cache_limit(previous)
