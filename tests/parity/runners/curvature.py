"""Parity rows for AdaHessian, SophiaH (pytorch_optimizer) and SophiaG (official Sophia, torch transcription).

Their curvature estimates are random (Hutchinson probes, sampled labels) and the
random streams of torch and MLX differ, so three kinds of rows, each with a runner:

The MLX sides are ``mlx_optim.check.programs.hessian_inject`` / ``hessian_e2e`` / ``hessian_stats``.

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

import numpy as np
import torch

from mlx_optim.check import compare as check_compare
from mlx_optim.check import programs
from mlx_optim.check.programs import (  # noqa: F401  (GNB_BATCH: re-exported for the rows)
    GNB_BATCH,
    GNB_INIT,
    GNB_X,
    QUAD_A,
    QUAD_INIT,
    STATS_N,
    hessian_estimate,
    sampled_gradient,
)
from tests.parity.harness import (
    Portable,
    Row,
    _problem,
    case_of,
    initial_params,
    loss_and_grads,
    reference_class,
    scale,
    torch_params,
)


def _update_period(row: Row) -> int:
    return programs.update_period(row.name, row.kwargs)


def _gnb(row: Row) -> bool:
    return row.name.startswith("sophiag")  # sophiag and its variant sophiag_e


def _inject_reference(row: Row):
    period = _update_period(row)
    sophiag = _gnb(row)
    tparams = torch_params(initial_params())
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
    return ref_traj


inject_runner = Portable("hessian_inject", _inject_reference, lambda row: {"gnb": _gnb(row)})


def torch_loss(params: dict[str, torch.Tensor], t: int) -> torch.Tensor:
    target, noise = _problem()
    s = scale(t)
    total = 0.0
    for k, p in params.items():
        tg = torch.tensor(target[k], dtype=torch.float32)
        nz = torch.tensor(noise[t][k], dtype=torch.float32)
        total = total + s * torch.sum(0.5 * (p - tg) ** 2 - 0.1 * torch.cos(3 * p) + nz * p)
    return total


def _e2e_reference(row: Row):
    period = _update_period(row)
    sophiag = _gnb(row)
    tparams = torch_params(initial_params())
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
    return ref_traj


e2e_runner = Portable("hessian_e2e", _e2e_reference, lambda row: {"gnb": _gnb(row)})


def _torch_estimates(row: Row) -> list[dict[str, np.ndarray]]:
    """pytorch_optimizer's ``compute_hutchinson_hessian``, or the official loop's GNB step (times ``bs``),
    ``STATS_N`` times (one entry: ``{leaf: samples}``, as the MLX side returns)."""
    torch.manual_seed(0)
    if _gnb(row):  # the official training loop's GNB step, times bs as we fold it
        params = torch_params(GNB_INIT)
        x = torch.from_numpy(GNB_X)
        out = []
        for _ in range(STATS_N):
            logits = x @ params["W"] + params["b"]
            y = torch.distributions.Categorical(logits=logits).sample()
            loss = torch.nn.functional.cross_entropy(logits.view(-1, 5), y.view(-1))
            grads = torch.autograd.grad(loss, list(params.values()))
            out.append({k: (y.numel() * g**2).numpy() for k, g in zip(params, grads)})
        return [{k: np.stack([o[k] for o in out]) for k in params}]
    cls = reference_class(row)
    params = torch_params(QUAD_INIT)
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
    return [{k: np.stack([o[k] for o in out]) for k in params}]


stats_runner = Portable(
    "hessian_stats",
    _torch_estimates,
    lambda row: {"gnb": _gnb(row), "estimate": row.name == "adahessian"},
    compare="hessian_stats",
)


def stats_compare(mine, ref, row: Row) -> None:
    """Ours (``mlx_optim.check.compare.hessian_stats``: against the exact diagonal, and for GNB the spread
    against the reference's) and the reference's samples (against the exact diagonal too)."""
    case = case_of(row)
    worst, msg = check_compare.hessian_stats(mine, check_compare.summarize("hessian_stats", ref), case)
    assert worst <= 1, f"{row.label} mlx: {msg} ({worst:.3g} of the bound)"
    worst, msg = check_compare.check_samples(ref[0], row.name, row.kwargs, case.options["gnb"])
    assert worst <= 1, f"{row.label} reference: {msg} ({worst:.3g} of the bound)"


# ---------------------------------------------------------------------------- shared bits


# ---------------------------------------------------------------------------- inject


# ---------------------------------------------------------------------------- e2e


# ---------------------------------------------------------------------------- stats


# ---------------------------------------------------------------------------- rows
STATS_NOTE = (
    "statistical: random probes / sampled labels differ between torch and MLX; "
    "means within 5 standard errors of the exact diagonal, variances as the distribution's"
)
