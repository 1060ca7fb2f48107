"""Parity rows for AdaHessian, SophiaH (pytorch_optimizer) and SophiaG (official Sophia, torch transcription).

Their curvature estimates are random (Hutchinson probes, sampled labels) and the
random streams of torch and MLX differ, so three kinds of rows, each with a runner:

* ``inject`` (:func:`inject_runner`): the update math exactly. On refresh steps
  (``t = 1, 1 + k, ...``) both sides get the same given estimate
  (``ref.step(hessian=h)`` / ``opt.update(..., hessian=h)``; for SophiaG the
  reference's ``update_hessian()`` with the sampled-label gradient ``g_s`` in
  ``p.grad`` and ``bs=B``, ours ``hessian=B * g_s**2``), on the other steps
  neither does. Gradients and estimates are the harness's (deterministic, from
  each side's current parameters).
* ``e2e`` (:func:`e2e_runner`): the whole ``step_with`` path, HVPs by ``mx.jvp``
  and the ``update_period`` gating by ``mx.where`` included, against the
  reference's own Hutchinson estimate (``loss.backward(create_graph=True)``). The
  harness loss is separable (diagonal Hessian), so with Rademacher probes
  ``z * (H z) = diag(H)`` exactly on both sides whatever the probes. For SophiaG
  the reference's loop calls ``update_hessian()`` on refresh steps and ours
  computes the estimate through an overridden ``LossAndGrad.gnb`` returning the
  same deterministic ``g_s`` (the real GNB sampling is covered by the stats row).
* ``stats`` (:func:`stats_runner`): the estimators. Many estimates at fixed
  parameters, drawn through ``step_with`` (SophiaH / SophiaG with
  ``learning_rate=0``, ``beta2=0``, ``update_period=1``, so the curvature state is
  the last estimate) or the optimizer's ``estimate`` (AdaHessian, whose state
  holds squares), on both sides; ``compare`` checks that each side's mean is
  within 5 standard errors of the truth and that the variances agree with the
  distribution's. Hutchinson: a dense quadratic ``0.5 v^T A v`` coupling two
  parameter leaves (truth ``diag(A)``; variance ``sum_{j!=i} A_ij^2`` for
  Rademacher, plus ``2 A_ii^2`` for Gaussian, divided by ``num_samples``). GNB: a
  softmax regression whose GNB mean is the Gauss-Newton diagonal
  ``(1/B) sum_b x_bi^2 p_bj (1 - p_bj)``.
"""

from __future__ import annotations

import inspect

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import torch
from mlx.utils import tree_flatten

import mlx_optim
from mlx_optim.autodiff import LossAndGrad
from tests.parity.harness import SHAPES, Row, _problem, initial_params, loss_and_grads, reference_class, scale

GNB_BATCH = 8  # B of the injected sampled-label gradients


# ---------------------------------------------------------------------------- shared bits
def _update_period(row: Row) -> int:
    if "update_period" in row.kwargs:
        return row.kwargs["update_period"]
    return inspect.signature(mlx_optim.load_optimizer(row.name)).parameters["update_period"].default


def hessian_estimate(params: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """A given diagonal estimate for step ``t``: the true diagonal ``s_t (1 + 0.9 cos 3p)`` times a random
    factor in [0.5, 1.5), negated for about a fifth of the entries (SophiaH's clamp), never near 0."""
    rng = np.random.default_rng(100 + t)
    s = scale(t)
    out = {}
    for k, p in params.items():
        factor = rng.uniform(0.5, 1.5, size=p.shape) * np.where(rng.uniform(size=p.shape) < 0.2, -1.0, 1.0)
        out[k] = (s * (1 + 0.9 * np.cos(3 * p.astype(np.float64))) * factor).astype(np.float32)
    return out


def sampled_gradient(t: int) -> dict[str, np.ndarray]:
    """A stand-in for SophiaG's sampled-label gradient ``g_s`` at step ``t``."""
    rng = np.random.default_rng(200 + t)
    return {k: (scale(t) * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}


def _to_np(params) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in params.items()}


# ---------------------------------------------------------------------------- inject
def inject_runner(row: Row, compiled: bool):
    period = _update_period(row)
    sophiag = row.name == "sophiag"

    # reference
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = reference_class(row)(list(tparams.values()), **row.torch_kwargs())
    ref_traj = []
    for t in range(row.steps):
        cur = {k: p.detach().numpy() for k, p in tparams.items()}
        _, grads = loss_and_grads(cur, t)
        refresh = t % period == 0
        if sophiag and refresh:
            for k, p in tparams.items():
                p.grad = torch.from_numpy(sampled_gradient(t)[k].copy())
            ref.update_hessian()
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k].copy())
        if sophiag or not refresh:
            ref.step()
        else:
            ref.step(hessian=[torch.from_numpy(v) for v in hessian_estimate(cur, t).values()])
        ref_traj.append({k: p.detach().numpy().copy() for k, p in tparams.items()})

    # ours
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def plain(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    def refreshing(grads, hessian):
        holder["params"] = opt.apply_gradients(grads, holder["params"], hessian=hessian)

    if compiled:
        state = [holder, opt.state]
        plain = mx.compile(plain, inputs=state, outputs=state)
        refreshing = mx.compile(refreshing, inputs=state, outputs=state)
    mine = []
    for t in range(row.steps):
        cur = _to_np(holder["params"])
        _, grads = loss_and_grads(cur, t)
        grads = {k: mx.array(g) for k, g in grads.items()}
        if t % period == 0:
            if sophiag:
                h = {k: GNB_BATCH * np.square(g) for k, g in sampled_gradient(t).items()}
            else:
                h = hessian_estimate(cur, t)
            refreshing(grads, {k: mx.array(v) for k, v in h.items()})
        else:
            plain(grads)
        mx.eval(holder, opt.state)
        mine.append(_to_np(holder["params"]))
    return mine, ref_traj


# ---------------------------------------------------------------------------- e2e
def torch_loss(params: dict[str, torch.Tensor], t: int) -> torch.Tensor:
    target, noise = _problem()
    s = scale(t)
    total = 0.0
    for k, p in params.items():
        tg = torch.tensor(target[k], dtype=torch.float32)
        nz = torch.tensor(noise[t][k], dtype=torch.float32)
        total = total + s * torch.sum(0.5 * (p - tg) ** 2 - 0.1 * torch.cos(3 * p) + nz * p)
    return total


class Params(nn.Module):
    def __init__(self, init: dict[str, np.ndarray]):
        super().__init__()
        for k, v in init.items():
            setattr(self, k, mx.array(v))


def mlx_loss(model: Params, s, target, noise):
    total = mx.array(0.0)
    for k in SHAPES:
        p = getattr(model, k)
        total = total + s * mx.sum(0.5 * mx.square(p - target[k]) - 0.1 * mx.cos(3 * p) + noise[k] * p)
    return total


class StubGNB(LossAndGrad):
    """``gnb`` returns ``B * g_s**2`` for the given deterministic ``g_s`` (passed as a keyword)."""

    def gnb(self, model, key, *args, g_s, **kwargs):
        loss, grads = self(model, *args, **kwargs)
        return loss, grads, {k: GNB_BATCH * mx.square(v) for k, v in g_s.items()}


def e2e_runner(row: Row, compiled: bool):
    period = _update_period(row)
    sophiag = row.name == "sophiag"
    target, noise = _problem()

    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = reference_class(row)(list(tparams.values()), **row.torch_kwargs())
    ref_traj = []
    for t in range(row.steps):
        if sophiag and t % period == 0:
            for k, p in tparams.items():
                p.grad = torch.from_numpy(sampled_gradient(t)[k].copy())
            ref.update_hessian()
        for p in tparams.values():
            p.grad = None
        torch_loss(tparams, t).backward(create_graph=not sophiag)
        ref.step()
        ref_traj.append({k: p.detach().numpy().copy() for k, p in tparams.items()})

    model = Params(init)
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    lg = (StubGNB if sophiag else LossAndGrad)(model, mlx_loss)
    mx_target = {k: mx.array(v.astype(np.float32)) for k, v in target.items()}

    def step(s, nz, g_s):
        kw = {"g_s": g_s} if sophiag else {}
        return opt.step_with(model, lg, s, mx_target, nz, **kw)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    mine = []
    for t in range(row.steps):
        nz = {k: mx.array(v.astype(np.float32)) for k, v in noise[t].items()}
        g_s = {k: mx.array(v) for k, v in sampled_gradient(t).items()}
        step(mx.array(scale(t), mx.float32), nz, g_s)
        mx.eval(model.parameters(), opt.state)
        mine.append({k: np.array(v) for k, v in tree_flatten(model.parameters())})
    return mine, ref_traj


# ---------------------------------------------------------------------------- stats
STATS_N = 1500


_A_RNG = np.random.default_rng(7)


_M = _A_RNG.normal(size=(10, 10))


QUAD_A = ((_M + _M.T) / 2).astype(np.float32)  # indefinite, dense: couples the two leaves


QUAD_INIT = {"u": _A_RNG.normal(size=(4,)).astype(np.float32), "w": _A_RNG.normal(size=(2, 3)).astype(np.float32)}


GNB_X = _A_RNG.normal(size=(2, 8, 4)).astype(np.float32)  # B = 16 positions, 4 features


GNB_INIT = {"W": _A_RNG.normal(size=(4, 5)).astype(np.float32), "b": _A_RNG.normal(size=(5,)).astype(np.float32)}


def _quad_truth(kwargs: dict, distribution: str, num_samples: int):
    a = QUAD_A.astype(np.float64)
    off = np.sum(a**2, axis=1) - np.diag(a) ** 2
    var = off + (2 * np.diag(a) ** 2 if distribution == "gaussian" else 0.0)
    diag, var = np.diag(a), var / num_samples
    return {"u": diag[:4], "w": diag[4:].reshape(2, 3)}, {"u": var[:4], "w": var[4:].reshape(2, 3)}


def _gnb_truth():
    x = GNB_X.reshape(-1, 4).astype(np.float64)
    logits = x @ GNB_INIT["W"].astype(np.float64) + GNB_INIT["b"]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    q = prob * (1 - prob)
    return {"W": (x**2).T @ q / len(x), "b": q.mean(axis=0)}


def _mlx_quad(model, *_):
    v = mx.concatenate([model.u, model.w.reshape(-1)])
    return 0.5 * v @ mx.array(QUAD_A) @ v


def _mlx_logits(model, x):
    return x @ model.W + model.b


def _mlx_ce(model, x):
    return mx.mean(mx.logsumexp(_mlx_logits(model, x), axis=-1))  # any loss: only the GNB estimate is used


def stats_runner(row: Row, compiled: bool):
    name = row.name
    opt = mlx_optim.load_optimizer(name)(**row.kwargs)
    gnb = name == "sophiag"
    model = Params(GNB_INIT if gnb else QUAD_INIT)
    batch = (mx.array(GNB_X),) if gnb else ()
    lg = mlx_optim.value_and_grad(model, _mlx_ce if gnb else _mlx_quad, logits_fn=_mlx_logits if gnb else None)

    if name == "adahessian":  # state holds squares: draw through the optimizer's estimator and key

        def draw():
            keys = mx.random.split(opt.globals["key"])
            opt.globals["key"] = keys[0]
            return opt.estimate(lg, model, keys[1], *batch)[2]

        state = [opt.state]
    else:  # learning_rate=0, beta2=0, update_period=1: the curvature state is this step's estimate
        slot = "hessian" if gnb else "hessian_moment"

        def draw():
            opt.step_with(model, lg, *batch)
            return {k: opt.state[k][slot] for k in model.trainable_parameters()}

        state = [model.state, opt.state]
    if compiled:
        draw = mx.compile(draw, inputs=state, outputs=state)
    samples = []
    for _ in range(STATS_N):
        est = draw()
        mx.eval(est, opt.state)
        samples.append(_to_np(est))
    mine = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return [mine], [torch_estimates(row)]


_TORCH_CACHE: dict[str, dict] = {}


def torch_estimates(row: Row) -> dict[str, np.ndarray]:
    """The reference's estimator, ``STATS_N`` times (computed once per row for both modes)."""
    if row.label not in _TORCH_CACHE:
        _TORCH_CACHE[row.label] = _torch_estimates(row)
    return _TORCH_CACHE[row.label]


def _torch_estimates(row: Row) -> dict[str, np.ndarray]:
    """pytorch_optimizer's ``compute_hutchinson_hessian``, or the official loop's GNB step (times ``bs``)."""
    torch.manual_seed(0)
    if row.name == "sophiag":  # the official training loop's GNB step, times bs as we fold it
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in GNB_INIT.items()}
        x = torch.from_numpy(GNB_X)
        out = []
        for _ in range(STATS_N):
            logits = x @ params["W"] + params["b"]
            y = torch.distributions.Categorical(logits=logits).sample()
            loss = torch.nn.functional.cross_entropy(logits.view(-1, 5), y.view(-1))
            grads = torch.autograd.grad(loss, list(params.values()))
            out.append({k: (y.numel() * g**2).numpy() for k, g in zip(params, grads)})
        return {k: np.stack([o[k] for o in out]) for k in params}
    cls = reference_class(row)
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in QUAD_INIT.items()}
    ref = cls(list(params.values()), **row.torch_kwargs())
    a = torch.from_numpy(QUAD_A)
    out = []
    for _ in range(STATS_N):
        for p in params.values():
            p.grad = None
        v = torch.cat([params["u"], params["w"].reshape(-1)])
        (0.5 * v @ a @ v).backward(create_graph=True)
        ref.zero_hessian(ref.param_groups, ref.state)
        ref.compute_hutchinson_hessian(
            ref.param_groups, ref.state, num_samples=ref.num_samples, distribution=ref.distribution
        )
        out.append({k: ref.state[p]["hessian"].detach().numpy().copy() for k, p in params.items()})
    return {k: np.stack([o[k] for o in out]) for k in params}


def stats_compare(mine, ref, row: Row) -> None:
    mine, ref = mine[0], ref[0]
    if row.name == "sophiag":
        truth, var = _gnb_truth(), None
    else:
        kw = dict(inspect.signature(mlx_optim.load_optimizer(row.name)).parameters)
        dist = row.kwargs.get("hessian_distribution", kw["hessian_distribution"].default)
        n = row.kwargs.get("num_samples", kw["num_samples"].default)
        truth, var = _quad_truth(row.kwargs, dist, n)
    for side, samples in (("mlx", mine), ("reference", ref)):
        for k, t in truth.items():
            s = samples[k].astype(np.float64)
            assert s.shape == (STATS_N, *t.shape), (side, k, s.shape)
            sd = np.sqrt(var[k]) if var is not None else s.std(axis=0)
            err = np.abs(s.mean(axis=0) - t)
            bound = 5 * sd / np.sqrt(STATS_N) + 1e-6
            assert np.all(err <= bound), f"{row.label} {side}: mean of '{k}' off the truth by {err.max():.3g}"
            if var is not None:  # the spread is the distribution's: rules out wrong probes or scale
                ratio = s.var(axis=0) / np.maximum(var[k], 1e-12)
                ok = np.where(var[k] > 1e-6, np.abs(ratio - 1) < 0.25, s.var(axis=0) < 1e-6)
                assert np.all(ok), f"{row.label} {side}: variance of '{k}' {s.var(axis=0)} vs {var[k]}"
    if var is None:  # GNB: both sides' spreads agree (summed over entries: single ones are too noisy)
        for k in truth:
            r = mine[k].std(axis=0).sum() / ref[k].std(axis=0).sum()
            assert abs(r - 1) < 0.1, f"{row.label}: GNB spread of '{k}' differs from the reference's: ratio {r:.3f}"


# ---------------------------------------------------------------------------- rows
STATS_NOTE = (
    "statistical: random probes / sampled labels differ between torch and MLX; "
    "means within 5 standard errors of the exact diagonal, variances as the distribution's"
)
