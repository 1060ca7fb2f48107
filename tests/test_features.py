"""mlx_optim.features and the Keras seed's _sn / _e variants (mlx_optim/variants.py).

* every variant with its features off runs its base optimizer's arithmetic bit for bit;
* every variant with the seed's defaults trains a small MLP (lower loss), compiled == eager, and
  resumes exactly from a saved state;
* each feature alone matches its pytorch_optimizer counterpart where one exists (AdamWSN's subset
  norm, ``apply_cautious``, ``agc``, ``OrthoGrad``, ``Lookahead``, ``PNM``) when composed with an
  unrelated optimizer, and features compose with each other;
* the subset-norm hooks of every base that declares them are wired everywhere (``subset_size=1``
  reproduces the element-wise run exactly).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim import functional as F
from mlx_optim.base import Optimizer
from mlx_optim.features import Features, compose, sn_expand, sn_reduce, subset_size_for
from mlx_optim.optimizers.adam import AdamW
from mlx_optim.optimizers.lion import Lion
from mlx_optim.optimizers.sgd import SGD
from tests.parity.harness import Row, assert_close_trajectories, initial_params, loss_and_grads, run_reference
from tests.parity.rows.variants import BASE_ROWS, VARIANTS, with_agc
from tests.parity.rows.variants import _off as rows_off
from tests.test_contract import batches, make_model, params_np, train

SEED_KWARGS = {"ranger21_e": {"num_iterations": 120}}  # Ranger21's required argument


def variant_names() -> list[str]:
    return sorted(VARIANTS)


def off(name: str) -> dict:
    """Every feature off and the base keywords whose default the variant changes back at the base's default."""
    return rows_off(name)


# ---------------------------------------------------------------------------- registry and docs
def test_all_variants_registered_with_their_base():
    for name, base in VARIANTS.items():
        cls = mlx_optim.load_optimizer(name)
        assert issubclass(cls, Features) and issubclass(cls, mlx_optim.load_optimizer(base)), name
        assert cls.name == name and "Composition:" in cls.__doc__, name
        assert mlx_optim.load_optimizer(base).__name__ in cls.__doc__, name
        for k, v in cls.features.items():  # the feature keywords are in the signature with the seed's default
            import inspect

            assert inspect.signature(cls).parameters[k].default == v or (
                isinstance(v, float) and math.isinf(v) and math.isinf(inspect.signature(cls).parameters[k].default)
            ), (name, k)


def test_feature_keyword_clash_is_rejected():
    with pytest.raises(TypeError, match="clash"):
        compose(Lion, cautious=True)
    with pytest.raises(TypeError, match="unknown"):
        compose(AdamW, no_such_feature=True)


def test_sn_needs_a_base_with_the_hook():
    with pytest.raises(ValueError, match="subset_norm_keys"):
        compose(AdamW, sn=True)()


# ---------------------------------------------------------------------------- features off == base
def _base_kwargs(name: str) -> dict:
    """The keywords of the base's first parity row (a meaningful learning rate for each base)."""
    return dict(BASE_ROWS[VARIANTS[name]][0].kwargs)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", variant_names())
def test_features_off_is_the_base_bit_for_bit(name, compiled):
    base = mlx_optim.load_optimizer(VARIANTS[name])
    variant = mlx_optim.load_optimizer(name)
    kw = _base_kwargs(name)
    runs = []
    for opt in (base(**kw), variant(**kw, **off(name))):
        model = make_model()
        losses = train(model, opt, batches(12), compiled=compiled)
        runs.append((losses, params_np(model), dict(tree_flatten(opt.state))))
    (lb, pb, sb), (lv, pv, sv) = runs
    assert lb == lv
    for k in pb:
        np.testing.assert_array_equal(pv[k], pb[k], err_msg=f"{name}: {k}")
    assert set(sv) == set(sb), set(sv) ^ set(sb)  # no state of its own with every feature off
    for k in sb:
        np.testing.assert_array_equal(np.array(sv[k]), np.array(sb[k]), err_msg=f"{name}: state {k}")


# ---------------------------------------------------------------------------- seed defaults
def _seed(name: str):
    return mlx_optim.load_optimizer(name)(**SEED_KWARGS.get(name, {}))


# DAdaptLion_e used to diverge here (d -> 0.9, loss 0.80 -> 16 in 120 steps) until its D-Adaptation
# counted the Lookahead merges (DAdaptLion_e.lookahead_moved); the test is what caught it.
@pytest.mark.parametrize("name", variant_names())
def test_seed_defaults_train_compiled_and_match_eager(name):
    runs = []
    for compiled in (True, False):
        model = make_model()
        opt = _seed(name)
        assert opt.enabled_features(), name
        data = list(batches(4)) * 30  # 120 steps over the same 4 batches
        losses = train(model, opt, data, compiled=compiled)
        runs.append((losses, params_np(model)))
    (lc, pc), (le, pe) = runs
    first, last = np.mean(lc[:4]), np.mean(lc[-4:])
    assert np.isfinite(lc).all() and last < first, f"{name}: loss {first:.4f} -> {last:.4f}"
    np.testing.assert_allclose(lc, le, rtol=1e-5, atol=1e-6)
    for k in pe:
        np.testing.assert_allclose(pc[k], pe[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("name", variant_names())
def test_seed_defaults_resume_exactly(name, tmp_path):
    data = list(batches(8))
    model, opt = make_model(), _seed(name)
    train(model, opt, data)
    expected = params_np(model)

    model, opt = make_model(), _seed(name)
    train(model, opt, data[:5])
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), dict(tree_flatten(opt.state)))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    assert not [k for k in dict(tree_flatten(opt.state)) if "_feature_" in k], "a transient entry was saved"

    model2, opt2 = make_model(), _seed(name)
    model2.load_weights(str(tmp_path / "model.safetensors"))
    opt2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    train(model2, opt2, data[5:])
    got = params_np(model2)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{name}: {k} after resume")


# ---------------------------------------------------------------------------- subset-norm hooks
SN_VARIANTS = [n for n in variant_names() if "sn" in mlx_optim.load_optimizer(n).features]


@pytest.mark.parametrize("name", SN_VARIANTS)
def test_subset_size_one_is_elementwise(name):
    """Subsets of one element are the element-wise moments: every hook of the base is wired."""
    kw = {**_base_kwargs(name), **off(name)}
    trajectories = []
    for sn in (False, True):
        model = make_model()
        opt = mlx_optim.load_optimizer(name)(**{**kw, "sn": sn})
        opt.feat.subset_size = 1  # before the state exists (emonavi_sn does not expose subset_size)
        trajectories.append((train(model, opt, batches(8)), params_np(model), opt))
    (l0, p0, _), (l1, p1, opt) = trajectories
    assert l0 == l1
    for k in p0:
        np.testing.assert_array_equal(p1[k], p0[k], err_msg=f"{name}: {k}")
    shapes = {k: v.shape for k, v in tree_flatten(opt.state)}
    assert any(k.endswith(opt.subset_norm_keys[0]) and s[-1:] == (1,) for k, s in shapes.items()), shapes


@pytest.mark.parametrize("name", SN_VARIANTS)
def test_subset_norm_keeps_one_moment_per_subset(name):
    opt = mlx_optim.load_optimizer(name)(**_base_kwargs(name))
    model = make_model()
    train(model, opt, batches(2))
    state = dict(tree_flatten(opt.state))
    params = dict(tree_flatten(model.parameters()))
    reduced = 0
    for path, p in params.items():
        for key in opt.subset_norm_keys:
            v = state.get(f"{path}.{key}")
            if v is not None:  # EmoFact / EmoZeal keep factored moments (no exp_avg_sq) for matrices
                rows = p.size // subset_size_for(p.size, -1)  # AdamWSN's choice: about sqrt(numel) per subset
                assert v.shape == (rows, 1), (name, path, key, v.shape)
                reduced += rows < p.size
    assert reduced, f"{name}: no subset-shaped second moment"


def test_sn_hooks_are_identities_when_shapes_match():
    x = mx.arange(12.0).reshape(3, 4)
    assert sn_reduce(x, mx.zeros((3, 4))) is x
    assert sn_expand(x, (3, 4)) is x
    v = sn_reduce(x, mx.zeros((4, 1)))  # 4 subsets of 3
    np.testing.assert_array_equal(np.array(v)[:, 0], np.array(x).reshape(4, 3).sum(1))
    np.testing.assert_array_equal(np.array(sn_expand(v, (3, 4))).reshape(4, 3), np.repeat(np.array(v), 3, axis=1))


# ---------------------------------------------------------------------------- each feature vs pytorch_optimizer
def run_mlx_opt(make, steps: int = 20, compiled: bool = False):
    """The parity harness's problem, with an optimizer instance instead of a registered name."""
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = make()
    opt.init(holder["params"])

    def step(grads, loss):
        holder["params"] = opt.apply_gradients(grads, holder["params"], loss=loss)

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(steps):
        loss, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, mx.array(loss))
        mx.eval(holder, opt.state)
        traj.append({k: np.array(v) for k, v in holder["params"].items()})
    return traj


class AdamWSNProbe(Optimizer):
    """AdamWSN's update written with the subset-norm hooks, as a base optimizer would (``sn`` off here)."""

    name = ""
    subset_norm_keys = ("exp_avg_sq",)

    def __init__(self, learning_rate=1e-3, betas=(0.9, 0.999), eps=1e-8, *, state_dtype=None):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter, state):
        state["exp_avg"], state["exp_avg_sq"] = self.zeros(parameter), self.zeros(parameter)

    def step_scalars(self, hp):
        hp.step_size = hp.lr * mx.sqrt(F.bias_correction(hp.beta2, hp.step)) / F.bias_correction(hp.beta1, hp.step)

    def update_single(self, g, p, state):
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, 1 - hp.beta1)
        v = F.lerp(state["exp_avg_sq"], sn_reduce(mx.square(g), state["exp_avg_sq"]), 1 - hp.beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / (mx.sqrt(sn_expand(v, p.shape)) + hp.eps)


class PlainLion(Lion):
    """Lion without its own ``cautious`` keyword, so the feature's can be composed with it."""

    def __init__(self, learning_rate=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, state_dtype=None):
        super().__init__(learning_rate, betas, weight_decay, state_dtype=state_dtype)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("subset_size", [-1, 4, -2])
def test_sn_matches_pytorch_optimizer_adamwsn(subset_size, compiled):
    row = Row("adamwsn", {"learning_rate": 1e-2, "sn": True, "subset_size": subset_size}, id="probe")
    cls = compose(AdamWSNProbe, sn=True, subset_size=-1)
    mine = run_mlx_opt(lambda: cls(learning_rate=1e-2, subset_size=subset_size), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "sn")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_cautious_matches_pytorch_optimizer_lion(compiled):
    row = Row("lion", {"learning_rate": 1e-3, "cautious": True}, id="cautious")
    cls = compose(PlainLion, cautious=True)
    mine = run_mlx_opt(lambda: cls(learning_rate=1e-3), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "cautious")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_cautious_and_agc_compose_like_pytorch_optimizer(compiled):
    """Two features at once: AGC'd gradients into Lion, cautious-masked update."""
    import pytorch_optimizer

    ref = with_agc(pytorch_optimizer.Lion, {"agc", "agc_clip_val"})
    row = Row("lion", {"learning_rate": 1e-3, "cautious": True, "agc": True, "agc_clip_val": 0.05}, ref=ref, id="c")
    cls = compose(PlainLion, cautious=True, agc=True, agc_clip_val=0.05)
    mine = run_mlx_opt(lambda: cls(learning_rate=1e-3), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "cautious+agc")


def _torch_adamw(params, **kw):
    import torch

    return torch.optim.AdamW(params, **kw)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_agc_matches_pytorch_optimizer_agc(compiled):
    ref = with_agc(_torch_adamw, {"agc", "agc_clip_val", "agc_eps"})
    kw = {"learning_rate": 1e-2, "agc": True, "agc_clip_val": 0.02, "agc_eps": 1e-2}
    row = Row("adamw", kw, ref=ref, id="agc")
    cls = compose(AdamW, agc=False, agc_clip_val=1e-2, agc_eps=1e-3)
    mine = run_mlx_opt(lambda: cls(**kw), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "agc")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_orthograd_matches_pytorch_optimizer_orthograd(compiled):
    import pytorch_optimizer

    row = Row("adamw", {"learning_rate": 1e-2}, ref=lambda p, **kw: pytorch_optimizer.OrthoGrad(_torch_adamw(p, **kw)))
    cls = compose(AdamW, orthograd=True)
    mine = run_mlx_opt(lambda: cls(learning_rate=1e-2), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "orthograd")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_lookahead_matches_pytorch_optimizer_lookahead(compiled):
    import pytorch_optimizer

    def ref(params, **kw):
        return pytorch_optimizer.Lookahead(_torch_adamw(params, **kw), k=3, alpha=0.6)

    row = Row("adamw", {"learning_rate": 1e-2}, ref=ref, id="lookahead")
    cls = compose(AdamW, lookahead=True, lookahead_merge_time=3, lookahead_blending_alpha=0.6)
    mine = run_mlx_opt(lambda: cls(learning_rate=1e-2), compiled=compiled)
    assert_close_trajectories(mine, run_reference(row), row, "lookahead")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("maximize", [False, True])
def test_pnm_on_sgd_is_pytorch_optimizer_pnm(maximize, compiled):
    row = Row("pnm", {"learning_rate": 1e-2, "betas": (0.8, 0.7), "maximize": maximize}, id="sgd-pnm")
    cls = compose(SGD, pnm=True, pnm_beta=0.9, pnm_beta0=1.0)
    mine = run_mlx_opt(
        lambda: cls(learning_rate=1e-2, pnm_beta=0.8, pnm_beta0=0.7, maximize=maximize), compiled=compiled
    )
    assert_close_trajectories(mine, run_reference(row), row, "pnm")


# ---------------------------------------------------------------------------- the other features
def _train_composed(cls, steps=40, compiled=False, **kw):
    model = make_model()
    opt = cls(**kw)
    losses = train(model, opt, list(batches(4)) * (steps // 4), compiled=compiled)
    return losses, params_np(model), opt


@pytest.mark.parametrize(
    "features",
    [
        {"trust_ratio": True},
        {"trust_ratio": True, "trust_clip": True},
        {"aem": True, "t_alpha_beta3": 20.0},
        {"DAdapt": True},
        {"cautious": True, "agc": True, "orthograd": True, "lookahead": True, "pnm": True, "DAdapt": True},
    ],
    ids=["trust", "trust-clip", "aem", "dadapt", "bundle"],
)
def test_generic_features_compose_with_adamw(features):
    cls = compose(AdamW, **features)
    base_losses, base_params, _ = _train_composed(AdamW, learning_rate=1e-2)
    (le, pe, opt), (lc, pc, _) = (_train_composed(cls, learning_rate=1e-2, compiled=c) for c in (False, True))
    assert set(opt.enabled_features()) == {k for k, v in features.items() if v is True and k != "trust_clip"}
    np.testing.assert_allclose(lc, le, rtol=1e-5, atol=1e-6)
    assert any(not np.array_equal(pe[k], base_params[k]) for k in pe), "the feature changed nothing"
    assert np.mean(le[-4:]) < np.mean(le[:4]), le


def test_dadapt_grows_d_and_scales_the_base_step():
    cls = compose(SGD, DAdapt=True, d0=1e-6)
    _, _, opt = _train_composed(cls, steps=40, learning_rate=1.0)
    d = opt.state["_global"]["dadapt_d"].item()
    assert 1e-6 < d < 10.0, d  # grew from d0, stayed finite


def test_trust_ratio_scale():
    from mlx_optim.features import trust_scale

    p, delta = mx.ones((4,)) * 2.0, mx.ones((4,)) * 0.01
    # |p| = 4, |delta / lr| = 0.02 / 0.1
    assert math.isclose(trust_scale(p, delta, mx.array(0.1), False).item(), 4.0 / 0.2, rel_tol=1e-6)
    assert trust_scale(p, delta, mx.array(0.1), True).item() == 1.0
    assert trust_scale(mx.zeros((4,)), delta, mx.array(0.1), False).item() == 1.0


def test_invalid_feature_values_raise():
    cls = compose(AdamW, lookahead=True, lookahead_merge_time=5, DAdapt=True, d0=1e-6, growth_rate=math.inf)
    with pytest.raises(ValueError, match="lookahead_merge_time"):
        cls(lookahead_merge_time=0)
    with pytest.raises(ValueError, match="d0"):
        cls(d0=0.0)
    with pytest.raises(ValueError, match="growth_rate"):
        cls(growth_rate=0.5)
    with pytest.raises(ValueError, match="subset_size"):
        mlx_optim.load_optimizer("rangerqh_sn")(subset_size=0)


# ---------------------------------------------------------------------------- the Sophia branch
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_sophia_branch_is_sophiah_on_the_adamw_fallback(compiled):
    """Every parameter on the AdamW fallback, every other feature off: Muon_e's Sophia branch is SophiaH
    (same Hutchinson probes: both split a key(0) the same way), whose own parity rows tie it to pytorch_optimizer."""
    kw = {"betas": (0.9, 0.99), "p": 0.05, "update_period": 3, "num_samples": 2}
    sophiah = mlx_optim.load_optimizer("sophiah")(learning_rate=0.05, eps=1e-10, **kw)
    feats = {**off("muon_e"), "sophia": True, "p": 0.05, "update_period": 3, "num_samples": 2}
    muon_e = mlx_optim.load_optimizer("muon_e")(
        adamw_lr=0.05, adamw_betas=(0.9, 0.99), adamw_eps=1e-10, muon_filter=lambda *_: False, **feats
    )
    runs = []
    for opt in (sophiah, muon_e):
        model = make_model()
        runs.append((train(model, opt, batches(10), compiled=compiled), params_np(model)))
    (ls, ps), (lm, pm) = runs
    np.testing.assert_allclose(lm, ls, rtol=1e-6, atol=1e-7)
    for k in ps:
        np.testing.assert_allclose(pm[k], ps[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert not np.allclose(ps["inp.weight"], params_np(make_model())["inp.weight"])


def test_sophia_needs_a_muon_family_base():
    with pytest.raises(ValueError, match="Muon-family"):
        compose(AdamW, sophia=True)()


# ---------------------------------------------------------------------------- D-Adaptation
class NumpyDAdaptSGD:
    """A NumPy transcription of the documented D-Adapt feature on plain SGD (``mlx_optim.features``)."""

    def __init__(self, params, lr, d0, growth_rate):
        self.params = list(params)
        self.lr, self.d, self.growth = lr, d0, growth_rate
        self.x0 = [p.detach().numpy().astype(np.float64).copy() for p in self.params]
        self.s = [np.zeros_like(x) for x in self.x0]
        self.r = self.s_sq = self.u_sq = self.u_max = 0.0
        self.g0 = None

    def step(self, closure=None):
        import torch

        if self.s_sq > 0:  # the previous step's D-Adaptation update
            self.d = max(self.d, min(self.r / math.sqrt(self.s_sq), self.d * self.growth))
        self.u_max = max(self.u_max, math.sqrt(self.u_sq))
        grads = [p.grad.numpy().astype(np.float64) for p in self.params]
        if self.g0 is None:
            self.g0 = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        lam = self.d / self.g0
        scale = self.d / (self.u_max if self.u_max > 0 else self.lr * self.g0)
        self.s_sq = self.u_sq = 0.0
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(self.params, grads)):
                x = p.numpy().astype(np.float64)
                delta = self.lr * g
                self.u_sq += float(np.sum(delta * delta))
                self.r += lam * float(np.sum(g * (self.x0[i] - x)))
                self.s[i] = self.s[i] + lam * g
                self.s_sq += float(np.sum(self.s[i] ** 2))
                p.copy_(torch.from_numpy((x - scale * delta).astype(np.float32)))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("growth_rate", [math.inf, 1.5])
def test_dadapt_matches_its_transcription_on_sgd(growth_rate, compiled):
    kw = {"learning_rate": 0.5, "d0": 0.02, "growth_rate": growth_rate}
    row = Row("sgd", kw, ref=lambda params, lr, d0, growth_rate: NumpyDAdaptSGD(params, lr, d0, growth_rate), id="d")
    cls = compose(SGD, DAdapt=True, d0=1e-6, growth_rate=math.inf)
    mine = run_mlx_opt(lambda: cls(**kw), compiled=compiled)
    ref = run_reference(row)
    assert_close_trajectories(mine, ref, row, "dadapt")
    assert np.abs(ref[-1]["b"] - ref[0]["b"]).max() > 0.02  # the steps are far from negligible


def test_dadaptlion_e_counts_lookahead_merges_in_its_distance_estimate():
    """Without the lookahead_moved hook (the seed's behaviour) D keeps growing under the seed's defaults."""
    from mlx_optim.variants import DAdaptLion_e

    class Unaware(DAdaptLion_e):
        def lookahead_moved(self, step, state):
            pass

    ds = []
    for cls in (DAdaptLion_e, Unaware):
        model, opt = make_model(), cls()
        train(model, opt, list(batches(4)) * 30)
        ds.append(opt.state["_global"]["d"].item())
    aware, unaware = ds
    assert aware < 0.1 < unaware, ds
