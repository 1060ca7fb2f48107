"""Parameter groups (``groups=`` of every optimizer) and the state layout they live in.

The parity rows against torch / pytorch_optimizer ``param_groups`` are in ``tests/parity/rows/groups.py``;
here: the contract every optimizer meets (a group over every parameter behaves like the optimizer built with
the group's values), the errors, saving and resuming, changing a group's value after ``mx.compile``, the CPU
fast paths, packing, wrappers, ZeRO, ``create_optimizer``, and loading a state saved before ``"_global"``.
"""

from __future__ import annotations

import inspect
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim.base import GLOBAL_KEY
from tests.test_contract import KWARGS, NAMES, batches, make_model, params_np, train

GROUPABLE = [
    n for n in NAMES if not mlx_optim.load_optimizer(n).groups_unsupported and n in KWARGS
]  # every optimizer except the wrappers (their inner optimizer takes the groups) and L-BFGS


def _other_value(opt, name: str) -> float | None:
    """A valid value of the tunable ``name`` different from its current one (None when there is none)."""
    x = float(getattr(opt, name).item()) if name != "learning_rate" else float(opt.learning_rate.item())
    low, high, interval = opt._bounds.get(name, (None, None, "[]"))
    finite = x if math.isfinite(x) else 2.0
    for v in (finite * 0.5, finite * 2.0, 0.1, 1.0, 2.0, 0.5 * ((low or 0.0) + (high if high is not None else 1.0))):
        if v == x:
            continue
        try:
            mlx_optim.base.check_range("", name, v, low, high, interval)
        except ValueError:
            continue
        return v
    return None


def _constructor_kwargs(cls, kwargs: dict, opt, name: str, value: float) -> dict | None:
    """The constructor keywords that give the tunable ``name`` the value ``value`` (None: not a keyword)."""
    params = inspect.signature(cls).parameters
    if name in params:
        return {**kwargs, name: value}
    stem = name.rstrip("0123456789")
    if name != stem and stem + "s" in params:
        members = list(kwargs.get(stem + "s", params[stem + "s"].default))  # as given: their doubles matter
        members[int(name[len(stem) :]) - 1] = value
        return {**kwargs, stem + "s": tuple(members)}
    return None


def _groupable_tunables(opt) -> list[str]:
    return [t for t in opt._tunables if not opt._is_shared(t)]


def _run_plain(model_opt, steps: int = 3):
    model, opt = model_opt
    opt.fuse_updates = False
    train(model, opt, batches(steps))
    return params_np(model)


@pytest.mark.parametrize("name", GROUPABLE)
def test_a_group_over_every_parameter_acts_like_the_optimizer_built_with_its_values(name):
    """For every tunable of every optimizer: ``groups=[{"params": "*", t: v}]`` == the optimizer built with ``t=v``.

    This checks the whole plumbing per optimizer: the group's value reaches ``hp`` and the per-step scalars,
    ``self.tunable`` in ``init_single``, the 0.0 skips, and the global arrays made from constructor values.
    """
    cls = mlx_optim.load_optimizer(name)
    kwargs = KWARGS[name]
    probe = cls(**kwargs)
    checked = []
    for t in _groupable_tunables(probe):
        v = _other_value(probe, t)
        if v is None:
            continue
        key = t
        built = _constructor_kwargs(cls, kwargs, probe, t, v)
        if built is None:  # no constructor keyword of its own (a feature's tunable): set it as an attribute
            reference = cls(**kwargs)
            setattr(reference, t, v)
        else:
            reference = cls(**built)
        expected = _run_plain((make_model(), reference))
        got = _run_plain((make_model(), cls(**kwargs, groups=[{"params": "*", key: v}])))
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{name}: group {t}={v}: {k}")
        checked.append(t)
    assert checked or not _groupable_tunables(probe), name


# ---------------------------------------------------------------------------- groups with their own values
def _split(tree: dict, keys: set[str]) -> tuple[dict, dict]:
    flat = tree_flatten(tree)
    return (
        tree_unflatten([(k, v) for k, v in flat if k in keys]),
        tree_unflatten([(k, v) for k, v in flat if k not in keys]),
    )


IN_GROUP = {"inp.weight", "inp.bias", "blocks.1.bias"}


@pytest.mark.parametrize(
    "name, override",
    [
        ("adamw", {"learning_rate": 3e-3, "weight_decay": 0.0, "betas": (0.8, 0.95)}),
        ("sgd", {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.01}),  # default momentum 0: buffer per group
        ("lion", {"learning_rate": 3e-4, "betas": (0.95, 0.98), "weight_decay": 0.1}),
        ("nadam", {"betas": (0.8, 0.99)}),  # NAdam's momentum product runs per group
        ("adabound", {"learning_rate": 3e-3}),  # its base learning rate is the group's own
    ],
)
def test_groups_equal_separate_optimizers_for_per_leaf_updates(name, override):
    """For optimizers whose update of a leaf reads only that leaf: a group == an optimizer built with the group's
    values on the group's parameters, the rest == the optimizer on the rest (bit for bit, plain and fused)."""
    cls = mlx_optim.load_optimizer(name)
    kw = {"learning_rate": 1e-2, "weight_decay": 0.05} if name != "nadam" else {"learning_rate": 1e-2}
    if name == "adabound":
        kw = {"learning_rate": 1e-2}
    for fused in (False, None):
        model, sep = make_model(), make_model()
        opt = cls(**kw, groups=[{"params": sorted(IN_GROUP), **override}])
        opt.fuse_updates = fused
        in_opt, out_opt = cls(**{**kw, **override}), cls(**kw)
        in_opt.fuse_updates = out_opt.fuse_updates = fused
        lg, lg_sep = nn.value_and_grad(model, loss_fn), nn.value_and_grad(sep, loss_fn)
        for x, y in batches(4):
            _, g = lg(model, x, y)
            opt.update(model, g)
            _, g = lg_sep(sep, x, y)
            g_in, g_out = _split(g, IN_GROUP)
            p_in, p_out = _split(sep.trainable_parameters(), IN_GROUP)
            sep.update(in_opt.apply_gradients(g_in, p_in))
            sep.update(out_opt.apply_gradients(g_out, p_out))
            mx.eval(model.parameters(), sep.parameters(), opt.state, in_opt.state, out_opt.state)
        a, b = params_np(model), params_np(sep)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} fused={fused}: {k}")


def loss_fn(model, x, y):
    return mx.mean(mx.square(model(x) - y))


def test_group_values_live_in_the_state_and_resume_exactly(tmp_path):
    """Overrides, their complements and a group's own global arrays are saved and restored; a schedule in a
    group runs from the restored step."""

    def sched(step):
        return 1e-2 * mx.cos(step * 0.1)

    def make():
        return mlx_optim.NAdam(1e-2, groups=[{"params": "blocks.*", "betas": (0.8, 0.99), "learning_rate": sched}])

    data = list(batches(6))
    model, opt = make_model(), make()
    train(model, opt, data)
    expected = params_np(model)

    model, opt = make_model(), make()
    train(model, opt, data[:3])
    own = opt.state[GLOBAL_KEY]["groups"][0]
    assert {"beta1", "one_minus_beta1", "beta2", "learning_rate", "mu_product"} <= set(own)
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    model2, opt2 = make_model(), make()
    model2.load_weights(str(tmp_path / "model.safetensors"))
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    train(model2, opt2, data[3:])
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_a_group_value_changed_after_compiling_takes_effect():
    model = make_model()
    opt = mlx_optim.SGD(0.1, momentum=0.5, groups=[{"params": "blocks.*", "learning_rate": 0.1, "momentum": 0.5}])
    lg = nn.value_and_grad(model, loss_fn)
    state = [model.state, opt.state]

    @partial_compile(state)
    def step(x, y):
        _, g = lg(model, x, y)
        opt.update(model, g)

    data = list(batches(3))
    step(*data[0])
    mx.eval(model.parameters())
    before = params_np(model)
    opt.groups[0]["learning_rate"] = 0.0
    opt.groups[0].momentum = 0.0  # attribute style
    step(*data[1])
    mx.eval(model.parameters())
    after = params_np(model)
    assert all(np.array_equal(after[k], before[k]) for k in after if k.startswith("blocks."))
    assert not np.array_equal(after["inp.weight"], before["inp.weight"])
    assert float(opt.groups[0]["learning_rate"].item()) == 0.0 and opt.learning_rate.item() == pytest.approx(0.1)


def partial_compile(state):
    def wrap(fn):
        return mx.compile(fn, inputs=state, outputs=state)

    return wrap


def test_group_views_and_paths():
    model = make_model()
    opt = mlx_optim.AdamW(1e-3, groups=[{"name": "head", "params": "blocks.1.*", "betas": (0.8, 0.9)}])
    opt.init(model.trainable_parameters())
    (head,) = opt.groups
    assert head.name == "head" and head.params == "blocks.1.*"
    assert sorted(head.paths()) == ["blocks.1.bias", "blocks.1.weight"]
    assert opt.group_of("blocks.1.weight") == 0 and opt.group_of("inp.weight") is None
    assert tuple(float(b.item()) for b in head["betas"]) == pytest.approx((0.8, 0.9))
    assert float(head["eps"].item()) == pytest.approx(1e-8)  # not overridden: the optimizer's value
    assert "head" in repr(head)
    prodigy = mlx_optim.Prodigy(0.5, groups=[{"params": "*", "weight_decay": 0.1}])
    assert float(prodigy.groups[0]["learning_rate"].item()) == 0.5  # a shared tunable reads through the view
    assert "groups" in inspect.signature(mlx_optim.AdamW).parameters
    assert "groups" not in inspect.signature(mlx_optim.wrappers.Lookahead).parameters


def test_fused_streams_and_packed_paths_equal_the_plain_update_with_groups(monkeypatch):
    from mlx_optim import streams
    from mlx_optim.packed import pack

    monkeypatch.setattr(streams, "MIN_LEAF_SIZE", 1)
    groups = [{"params": "*.bias", "weight_decay": 0.0, "betas": (0.8, 0.99)}, {"params": "blocks.1.*", "eps": 1e-6}]
    runs = []
    for mode in ("plain", "fused", "streams", "packed"):
        model, opt = make_model(), mlx_optim.AdamW(1e-2, weight_decay=0.1, groups=groups)
        opt.fuse_updates = mode == "fused"
        opt.update_streams = 3 if mode == "streams" else 1
        if mode == "packed":
            pack(opt)
        train(model, opt, batches(4))
        runs.append(params_np(model))
    for run in runs[1:]:
        for k in runs[0]:
            np.testing.assert_array_equal(run[k], runs[0][k], err_msg=k)


def test_wrappers_see_every_group():
    """Lookahead around a grouped optimizer: the inner groups apply, the slow weights cover every parameter."""
    model = make_model()
    inner = mlx_optim.AdamW(1e-2, groups=[{"params": "blocks.*", "learning_rate": 0.0, "weight_decay": 0.0}])
    opt = mlx_optim.wrappers.Lookahead(inner, k=2)
    before = params_np(model)
    train(model, opt, batches(4))
    after = params_np(model)
    assert all(np.array_equal(after[k], before[k]) for k in after if k.startswith("blocks."))
    assert not np.array_equal(after["inp.weight"], before["inp.weight"])
    assert {k for k, _ in tree_flatten(opt.state["slots"]) if k.endswith("slow_params")} == {
        f"{k}.slow_params" for k in before
    }
    # SAM perturbs every parameter by one global gradient norm, then the grouped inner step
    model = make_model()
    inner = mlx_optim.SGD(1e-2, groups=[{"params": "blocks.*", "learning_rate": 0.0}])
    sam = mlx_optim.wrappers.SAM(inner, rho=0.5)
    train(model, sam, batches(2))
    after = params_np(model)
    assert all(np.array_equal(after[k], before[k]) for k in after if k.startswith("blocks."))
    assert not np.array_equal(after["inp.weight"], before["inp.weight"])


def test_zero_matches_groups_on_the_whole_tree():
    """ZeRO on one process (each rank's inner optimizer sees only its leaves) == the plain grouped optimizer;
    a group is checked against the whole tree, not the rank's share."""
    from mlx_optim import distributed as md

    groups = [{"params": "blocks.1.*", "learning_rate": 1e-3, "betas": (0.8, 0.9)}]
    single = mx.distributed.init()
    model, zmodel = make_model(), make_model()
    opt, zopt = (
        mlx_optim.AdamW(1e-2, groups=groups),
        md.ZeroRedundancyOptimizer(mlx_optim.AdamW(1e-2, groups=groups), single),
    )
    train(model, opt, batches(3))
    train(zmodel, zopt, batches(3))
    a, b = params_np(model), params_np(zmodel)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------------------- errors
def test_group_errors_name_the_problem():
    model = make_model()
    opt = mlx_optim.AdamW(groups=[{"params": "decoder.*", "learning_rate": 1e-4}])
    with pytest.raises(ValueError, match=r"group 0 \(params='decoder\.\*'\) matches no parameter.*'inp\.weight'"):
        train(model, opt, batches(1))
    shadowed = mlx_optim.AdamW(groups=[{"params": "*", "eps": 1e-6}, {"params": "*.bias", "weight_decay": 0.0}])
    with pytest.raises(ValueError, match="group 1 .* matches no parameter that an earlier group did not already take"):
        train(make_model(), shadowed, batches(1))
    with pytest.raises(TypeError, match="'amsgrad' is not a tunable hyperparameter"):
        mlx_optim.AdamW(groups=[{"params": "*", "amsgrad": True}])
    with pytest.raises(TypeError, match="unknown option 'bogus'.*learning_rate"):
        mlx_optim.AdamW(groups=[{"params": "*", "bogus": 1}])
    with pytest.raises(TypeError, match="'learning_rate' here"):
        mlx_optim.AdamW(groups=[{"params": "*", "lr": 1e-4}])
    with pytest.raises(TypeError, match="'learning_rate' cannot differ between parameter groups in Prodigy"):
        mlx_optim.Prodigy(groups=[{"params": "*", "learning_rate": 0.5}])
    with pytest.raises(TypeError, match="'eps' is not a tunable"):  # eps=None: no such tunable as configured
        mlx_optim.Prodigy(eps=None, groups=[{"params": "*", "eps": 1e-6}])
    with pytest.raises(TypeError, match="Lookahead takes no parameter groups.*inner optimizer"):
        mlx_optim.wrappers.Lookahead(mlx_optim.AdamW(), groups=[{"params": "*"}])
    with pytest.raises(TypeError, match="LBFGS takes no parameter groups"):
        mlx_optim.LBFGS(groups=[{"params": "*"}])
    with pytest.raises(ValueError, match=r"groups\[0\] must be a dict with a 'params' selector"):
        mlx_optim.AdamW(groups=[{"learning_rate": 1e-4}])
    with pytest.raises(ValueError, match="weight_decay=-1.*out of range"):
        mlx_optim.AdamW(groups=[{"params": "*", "weight_decay": -1.0}])
    with pytest.raises(ValueError, match="betas=.*must have 2 values"):
        mlx_optim.AdamW(groups=[{"params": "*", "betas": (0.9,)}])
    with pytest.raises(ValueError, match="groups must be a list"):
        mlx_optim.AdamW(groups={"params": "*"})
    assert "groups" not in mlx_optim.AdamW(groups=[]).state[GLOBAL_KEY]  # no groups: the plain layout
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):  # what the constructor would say
        mlx_optim.SGD(momentum=0.9, nesterov=True, groups=[{"params": "*", "momentum": 0.0}])


# ---------------------------------------------------------------------------- the state's namespaces (issue 15.8)
def test_a_parameter_may_be_named_like_a_hyperparameter():
    """``{"eps": p}`` used to clash with Adam's ``eps`` entry; now it is an ordinary parameter."""
    g, p = mx.array([0.1, -0.2, 0.3]), mx.array([1.0, 2.0, 3.0])
    for name in ("eps", "beta1", "one_minus_beta2", "weight_decay", "mu_product"):
        opt, ref = mlx_optim.NAdam(0.1), mlx_optim.NAdam(0.1)
        for _ in range(3):
            got = opt.apply_gradients({name: g}, {name: p})[name]
            want = ref.apply_gradients({"w": g}, {"w": p})["w"]
        np.testing.assert_array_equal(np.array(got), np.array(want), err_msg=name)


class _Quadratic(nn.Module):
    """``sum((w * x - q)^2)`` with the weight stored under ``name``."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        setattr(self, name, mx.array([0.5, -1.0, 2.0]))
        self.q = mx.array([1.0, 1.0, -0.5])

    def __call__(self, x):
        return mx.sum(mx.square(self[self.name] * x - self.q))


def test_sophiah_with_a_parameter_named_p():
    """SophiaH has a hyperparameter ``p``; a model with a top-level parameter ``p`` used to fail inside MLX
    ("Cannot index mlx array using the given type")."""
    results = []
    for name in ("p", "w"):
        model = _Quadratic(name)
        opt = mlx_optim.SophiaH(learning_rate=0.05, update_period=1)
        lg = mlx_optim.value_and_grad(model, lambda m, x: m(x))
        for _ in range(3):
            opt.step_with(model, lg, mx.array([1.0, 2.0, 3.0]))
        results.append(np.array(model[name]))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", ["step", "learning_rate", "_global"])
def test_the_few_reserved_names_raise_clearly(name):
    with pytest.raises(ValueError, match=f"'{name}' has a name the optimizer's state reserves"):
        mlx_optim.Adam(0.1).apply_gradients({name: mx.zeros((2,))}, {name: mx.zeros((2,))})


def _old_layout(state: dict) -> dict:
    """The state as saved before ``"_global"``: its entries one level up (wrappers: also in ``inner``)."""
    out = {k: v for k, v in state.items() if k != GLOBAL_KEY}
    out.update(state.get(GLOBAL_KEY, {}))
    if "inner" in out:
        out["inner"] = _old_layout(out["inner"])
    return out


OLD_LAYOUT_CASES = {
    "adamw": lambda: mlx_optim.AdamW(1e-2, weight_decay=0.1),
    "nadam": lambda: mlx_optim.NAdam(1e-2),  # a global array (mu_product)
    "prodigy": lambda: mlx_optim.Prodigy(0.5, weight_decay=0.1),  # D and its sums
    "adamw-bf16-state": lambda: mlx_optim.AdamW(1e-2, state_dtype=mx.bfloat16),  # the rounding key
    "lookahead": lambda: mlx_optim.wrappers.Lookahead(mlx_optim.AdamW(1e-2), k=2),  # wrapper + inner tunables
    "sam-transparent": lambda: mlx_optim.wrappers.SAM(mlx_optim.SGD(1e-2, momentum=0.9), transparent=True),
}


@pytest.mark.parametrize("case", OLD_LAYOUT_CASES)
def test_a_state_saved_in_the_old_layout_loads_and_continues_exactly(case, tmp_path):
    """Checkpoints written before ``"_global"`` (tunables and global arrays at the top level) are converted on
    load. The old layout is built from the new one here; the same conversion was checked once against states
    written by the previous code (git fe34fea) for these six cases: all continued bit for bit."""
    make = OLD_LAYOUT_CASES[case]
    data = list(batches(6))
    model, opt = make_model(), make()
    train(model, opt, data)
    expected = params_np(model)

    model, opt = make_model(), make()
    train(model, opt, data[:3])
    old = _old_layout(opt.state)
    assert GLOBAL_KEY not in old and "step" in old
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(old)))
    opt2 = make()
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    assert set(opt2.state[GLOBAL_KEY]) == set(opt.state[GLOBAL_KEY])
    train(model, opt2, data[3:])
    got = params_np(model)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{case}: {k}")


def test_a_sharded_checkpoint_in_the_old_layout_loads(tmp_path):
    from mlx_optim import distributed as md

    data = list(batches(6))
    model, opt = make_model(), mlx_optim.NAdam(1e-2)
    train(model, opt, data)
    expected = params_np(model)
    model, opt = make_model(), mlx_optim.NAdam(1e-2)
    train(model, opt, data[:3])
    path = md.save_sharded(opt, tmp_path)
    arrays, meta = mx.load(str(path), return_metadata=True)
    old = {k.replace(f"{GLOBAL_KEY}.", ""): v for k, v in arrays.items()}
    mx.save_safetensors(str(path), old, metadata=meta)
    opt2 = mlx_optim.NAdam(1e-2)
    md.load_sharded(opt2, tmp_path, model)
    train(model, opt2, data[3:])
    got = params_np(model)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_a_tunable_set_from_zero_after_the_fused_trace_takes_effect():
    """A tunable fixed at 0.0 has its math skipped; setting it later must trace the fused update again (it used
    to keep the trace that skipped it: AdamW's weight decay stayed off)."""
    runs = []
    for fused in (False, True):
        p, g = {"w": mx.ones((3,))}, {"w": mx.array([0.1, 0.2, 0.3])}
        opt = mlx_optim.AdamW(0.1, weight_decay=0.0)
        opt.fuse_updates = fused
        p = opt.apply_gradients(g, p)
        opt.weight_decay = 0.5
        p = opt.apply_gradients(g, p)
        runs.append(np.array(p["w"]))
    np.testing.assert_array_equal(runs[1], runs[0])
    assert not np.allclose(runs[0], [0.8, 0.8, 0.8])  # what it gives without the decay


# ---------------------------------------------------------------------------- create_optimizer and mlx-lm
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def __call__(self, x):
        return self.head(self.norm(self.proj(x)))


def _block() -> _Block:
    mx.random.seed(1)
    model = _Block()
    mx.eval(model.parameters())
    return model


def _train_block(model, opt, steps: int = 4) -> dict:
    lg = nn.value_and_grad(model, lambda m, x: mx.mean(mx.square(m(x) - 1.0)))
    for t in range(steps):
        _, g = lg(model, mx.random.normal((8, 4), key=mx.random.key(t)))
        opt.update(model, g)
        mx.eval(model.parameters(), opt.state)
    return params_np(model)


def test_create_optimizer_bans_weight_decay_with_a_group():
    model = _block()
    opt = mlx_optim.create_optimizer(model, "adamw", learning_rate=1e-2, weight_decay=0.1)
    (ban,) = opt.groups
    assert ban.name == "no_decay" and float(ban["weight_decay"].item()) == 0.0
    got = _train_block(model, opt)
    assert sorted(ban.paths()) == ["head.bias", "norm.bias", "norm.weight", "proj.bias"]
    # the same as the per-parameter filter create_optimizer used before groups existed
    model = _block()
    ref = mlx_optim.AdamW(1e-2, weight_decay=0.1)
    ref.decay_filter = lambda path: path not in {"head.bias", "norm.bias", "norm.weight", "proj.bias"}
    want = _train_block(model, ref)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_create_optimizer_keeps_user_groups_and_bans_their_biases():
    model = _block()
    opt = mlx_optim.create_optimizer(
        model, "adamw", learning_rate=1e-2, weight_decay=0.1, groups=[{"params": "head.*", "learning_rate": 1e-3}]
    )
    opt.init(model.trainable_parameters())
    views = {g.name: g for g in opt.groups}
    assert set(views) == {"head.*:no_decay", None, "no_decay"}
    assert views["head.*:no_decay"].paths() == ["head.bias"]
    assert float(views["head.*:no_decay"]["learning_rate"].item()) == pytest.approx(1e-3)
    assert float(views["head.*:no_decay"]["weight_decay"].item()) == 0.0
    assert views[None].paths() == ["head.weight"]


def test_create_optimizer_without_banned_trainable_parameters_has_no_group():
    model = _block()
    model.norm.freeze()
    model.proj.freeze(keys=["bias"])
    model.head.freeze(keys=["bias"])
    opt = mlx_optim.create_optimizer(model, "adamw", weight_decay=0.1)
    assert opt.groups == ()
    _train_block(model, opt, 1)  # no group that matches nothing
    assert mlx_optim.create_optimizer(_block(), "adamw").groups == ()  # weight_decay=0: nothing to ban
    adagc = mlx_optim.create_optimizer(_block(), "adagc", weight_decay=0.1)  # weight decay shared: a filter
    assert adagc.groups == () and adagc.decay_filter("norm.weight") is False


def test_mlx_lm_config_accepts_groups():
    from mlx_optim.integrations.mlx_lm import build_optimizer

    groups = [{"params": "*.bias|*norm*", "weight_decay": 0}, {"params": "head.*", "lr": 1e-4, "betas": [0.8, 0.9]}]
    opt = build_optimizer("adamw", {"groups": groups}, learning_rate=1e-3)
    norm, head = opt.groups
    assert float(norm["weight_decay"].item()) == 0.0
    assert float(head["learning_rate"].item()) == pytest.approx(1e-4)
    assert opt.learning_rate.item() == pytest.approx(1e-3)
    assert tuple(float(b.item()) for b in head["betas"]) == pytest.approx((0.8, 0.9))
    _train_block(_block(), opt, 1)
    with pytest.raises(ValueError, match="'groups' must be a list of objects"):
        build_optimizer("adamw", {"groups": {"params": "*"}})
    with pytest.raises(TypeError, match="'amsgrad' is not a tunable"):
        build_optimizer("adamw", {"groups": [{"params": "*", "amsgrad": True}]})
