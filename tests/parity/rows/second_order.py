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


# ---------------------------------------------------------------------------- SophiaG reference
class SophiaGReference(torch.optim.Optimizer):
    """The official SophiaG (github.com/Liuhong99/Sophia, ``sophia.py``, non-capturable path).

    ``update_hessian()`` keeps ``h <- b2 h + (1 - b2) p.grad**2`` from the
    sampled-label gradient in ``p.grad``; ``step()`` does
    ``p <- p (1 - lr wd)``, ``m <- b1 m + (1 - b1) g``,
    ``p <- p - lr sign(m) min(|m| / (rho bs h + 1e-15), 1)``. Added, with
    pytorch_optimizer's ``apply_weight_decay`` semantics: ``weight_decouple=False``
    (L2 in the gradient) and ``fixed_decay`` (decay without ``lr``).
    ``update_period`` is the training loop's business (kept for the runners).
    """

    def __init__(
        self,
        params,
        lr=1e-4,
        betas=(0.965, 0.99),
        rho=0.04,
        weight_decay=1e-1,
        weight_decouple=True,
        fixed_decay=False,
        update_period=10,
        maximize=False,
        bs=GNB_BATCH,
    ):
        self.update_period = update_period
        self.bs = bs
        defaults = dict(
            lr=lr,
            betas=betas,
            rho=rho,
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _state(self, p):
        state = self.state[p]
        if len(state) == 0:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self):
        for group in self.param_groups:
            _, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is not None:
                    self._state(p)["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, _ = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad.clone()
                state = self._state(p)
                if wd != 0:
                    if group["weight_decouple"]:
                        p.mul_(1 - wd * (1.0 if group["fixed_decay"] else lr))
                    else:
                        grad.add_(p, alpha=wd)
                exp_avg, hess = state["exp_avg"], state["hessian"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                ratio = (exp_avg.abs() / (group["rho"] * self.bs * hess + 1e-15)).clamp(None, 1)
                p.addcmul_(exp_avg.sign(), ratio, value=-lr)


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
            keys = mx.random.split(opt.state["key"])
            opt.state["key"] = keys[0]
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
_SOPHIAG_REF = {"ref": SophiaGReference}

ROWS = [
    # adahessian: pytorch_optimizer.AdaHessian
    Row("adahessian", {"learning_rate": 1e-1}, runner=e2e_runner, id="e2e"),
    Row("adahessian", {"learning_rate": 1e-1}, runner=inject_runner, id="inject"),
    Row(
        "adahessian",
        {
            "learning_rate": 5e-2,
            "betas": (0.8, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "hessian_power": 0.5,
            "update_period": 3,
            "eps": 1e-8,
            "adam_debias": True,
        },
        runner=inject_runner,
        id="inject-l2-power-period-debias",
    ),
    Row(
        "adahessian",
        {
            "learning_rate": 5e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "hessian_power": 0.7,
            "update_period": 4,
            "num_samples": 2,
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-fixed-period-samples-max",
    ),
    Row(
        "adahessian",
        {"learning_rate": 0.0, "num_samples": 3, "hessian_distribution": "gaussian", "seed": 3},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gaussian",
    ),
    Row(
        "adahessian",
        {"learning_rate": 0.0},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-rademacher",
    ),
    # sophiah: pytorch_optimizer.SophiaH (default probes are Gaussian: exact rows inject the estimate)
    Row("sophiah", {"learning_rate": 6e-2}, runner=inject_runner, id="inject"),
    Row(
        "sophiah",
        {
            "learning_rate": 3e-2,
            "betas": (0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "p": 0.05,
            "update_period": 3,
            "eps": 1e-3,
        },
        runner=inject_runner,
        id="inject-l2-clip-period",
    ),
    Row(
        "sophiah",
        {
            "learning_rate": 3e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "p": 0.5,
            "update_period": 4,
            "num_samples": 2,
            "hessian_distribution": "rademacher",
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-rademacher-fixed-max",
    ),
    Row(
        "sophiah",
        {"learning_rate": 6e-2, "p": 1.0, "update_period": 5, "hessian_distribution": "rademacher"},
        runner=e2e_runner,
        id="e2e-rademacher",
    ),
    Row(
        "sophiah",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "update_period": 1, "num_samples": 2},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gaussian",
    ),
    Row(
        "sophiah",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "update_period": 1, "hessian_distribution": "rademacher"},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-rademacher",
    ),
    # sophiag: official SophiaG (torch transcription above)
    Row("sophiag", {"learning_rate": 1e-2}, runner=inject_runner, id="inject", **_SOPHIAG_REF),
    Row("sophiag", {"learning_rate": 1e-2}, runner=e2e_runner, id="e2e", **_SOPHIAG_REF),
    Row(
        "sophiag",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.95),
            "rho": 0.1,
            "weight_decay": 0.05,
            "weight_decouple": False,
            "update_period": 3,
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-l2-period-max",
        **_SOPHIAG_REF,
    ),
    Row(
        "sophiag",
        {"learning_rate": 1e-2, "weight_decay": 0.2, "fixed_decay": True, "rho": 0.01, "update_period": 2},
        runner=inject_runner,
        id="inject-fixed",
        **_SOPHIAG_REF,
    ),
    Row(
        "sophiag",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "weight_decay": 0.0, "update_period": 1, "seed": 5},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gnb",
        **_SOPHIAG_REF,
    ),
]
