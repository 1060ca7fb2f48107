"""How a trajectory is held to its reference: the error as a fraction of the tolerance (<= 1 passes).

The default comparison is NumPy's ``allclose`` rule, ``|mine - ref| <= atol + rtol * |ref|`` for every step and
every entry (:func:`ratio`). Rows whose reference draws its own random numbers compare statistics instead
(:data:`COMPARES`): each returns the worst ratio of an observed deviation to its bound, and a message.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

import mlx_optim

__all__ = ["COMPARES", "ratio", "ratio_envelope", "summarize"]


def _leaf(x, y, atol: float, rtol: float) -> tuple[float, str]:
    """The worst ``|x - y| / (atol + rtol |y|)`` of one array and where (equal values, infinities included, are 0;
    a NaN is inf: allclose's rule)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        return float("inf"), f"shape {x.shape}, the reference {y.shape}"
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.where(x == y, 0.0, np.abs(x - y) / (atol + rtol * np.abs(y)))
    r = np.where(np.isnan(r), np.inf, r)
    if not r.size:
        return 0.0, ""
    i = tuple(int(j) for j in np.unravel_index(int(np.argmax(r)), r.shape)) if r.ndim else ()
    return float(r[i]), f"{list(i) if i else ''}: {x[i]:.7g} vs {y[i]:.7g}"


def ratio(mine: list[dict], ref: list[dict], atol: float, rtol: float) -> tuple[float, str]:
    """``max |mine - ref| / (atol + rtol |ref|)`` over steps and entries (inf on a NaN or a missing entry), and
    where it is largest."""
    return ratio_envelope(mine, ref, None, atol, rtol, 0.0)


def ratio_envelope(
    mine: list[dict], ref: list[dict], ref64: list[dict] | None, atol: float, rtol: float, envelope: float
) -> tuple[float, str]:
    """:func:`ratio`, except that (with ``ref64`` and ``envelope``) a tensor missing ``atol``/``rtol`` at a step may
    instead be within ``envelope`` times the float32 reference's own largest distance from its float64 run
    ``ref64`` (per tensor, over the run), plus ``atol``, of that float64 run (the parity tests'
    ``Row.fp64_envelope``)."""
    if len(mine) != len(ref):
        return float("inf"), f"{len(mine)} steps against {len(ref)}"
    spread: dict[str, float] = {}
    if ref64 is not None:
        for b, c in zip(ref, ref64):
            for k in b:
                d = np.abs(np.asarray(b[k], np.float64) - np.asarray(c[k], np.float64))
                spread[k] = max(spread.get(k, 0.0), float(d.max()) if d.size else 0.0)
    worst, where = 0.0, ""
    for t, (a, b) in enumerate(zip(mine, ref)):
        for k, bv in b.items():
            if k not in a:
                return float("inf"), f"step {t + 1}: no {k!r}"
            r, w = _leaf(a[k], bv, atol, rtol)
            w = f"{k!r}{w}"
            if r > 1.0 and ref64 is not None and envelope:
                err64 = float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(ref64[t][k], np.float64))))
                r64 = err64 / (envelope * spread[k] + atol)
                if r64 < r:
                    r, w = r64, f"{k!r}: {err64:.3g} from the float64 reference ({envelope:g} x {spread[k]:.3g} + atol)"
            if r > worst:
                worst, where = r, f"step {t + 1}, {w}"
    return worst, where


# ---------------------------------------------------------------------------------------------- statistics
def _hutchinson_truth(a: np.ndarray, distribution: str, num_samples: int):
    a = a.astype(np.float64)
    off = np.sum(a**2, axis=1) - np.diag(a) ** 2
    var = off + (2 * np.diag(a) ** 2 if distribution == "gaussian" else 0.0)
    diag, var = np.diag(a), var / num_samples
    return {"u": diag[:4], "w": diag[4:].reshape(2, 3)}, {"u": var[:4], "w": var[4:].reshape(2, 3)}


def _gnb_truth():
    from mlx_optim.check.programs import GNB_INIT, GNB_X

    x = GNB_X.reshape(-1, 4).astype(np.float64)
    logits = x @ GNB_INIT["W"].astype(np.float64) + GNB_INIT["b"]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    q = prob * (1 - prob)
    return {"W": (x**2).T @ q / len(x), "b": q.mean(axis=0)}


def stats_truth(name: str, kwargs: dict, gnb: bool):
    """The exact mean of the estimator (and its variance, for Hutchinson's)."""
    if gnb:
        return _gnb_truth(), None
    from mlx_optim.check.programs import QUAD_A

    kw = dict(inspect.signature(mlx_optim.load_optimizer(name)).parameters)
    dist = kwargs.get("hessian_distribution", kw["hessian_distribution"].default)
    n = kwargs.get("num_samples", kw["num_samples"].default)
    return _hutchinson_truth(QUAD_A, dist, n)


def check_samples(samples: dict, name: str, kwargs: dict, gnb: bool) -> tuple[float, str]:
    """Samples of an estimator against the truth: each entry's mean within 5 standard errors; Hutchinson's
    variances within 25% of the distribution's."""
    from mlx_optim.check.programs import STATS_N

    truth, var = stats_truth(name, kwargs, gnb)
    worst, msg = 0.0, ""
    for k, t in truth.items():
        s = np.asarray(samples[k], np.float64)
        if s.shape != (STATS_N, *t.shape):
            return float("inf"), f"samples of {k!r} have shape {s.shape}"
        sd = np.sqrt(var[k]) if var is not None else s.std(axis=0)
        r = float(np.max(np.abs(s.mean(axis=0) - t) / (5 * sd / np.sqrt(STATS_N) + 1e-6)))
        if r > worst:
            worst, msg = r, f"mean of {k!r} off the truth ({r:.2f} of 5 standard errors)"
        if var is not None:
            sv = s.var(axis=0)
            big = var[k] > 1e-6
            rv = np.where(big, np.abs(sv / np.maximum(var[k], 1e-12) - 1) / 0.25, sv / 1e-6)
            r = float(rv.max())
            if r > worst:
                worst, msg = r, f"variance of {k!r} {sv} against {var[k]}"
    return worst, msg


def summarize(compare: str | None, ref: list[dict]) -> list[dict]:
    """What a stored reference keeps of its trajectory (statistics rows keep a summary of their samples)."""
    if compare == "hessian_stats":
        return [{k: np.array(np.asarray(v, np.float64).std(axis=0).sum()) for k, v in ref[0].items()}]
    return ref


def hessian_stats(mine: list[dict], ref: list[dict], case) -> tuple[float, str]:
    """Curvature estimator samples: against the exact diagonal (see :func:`check_samples`); for GNB, the summed
    per-entry spreads within 10% of the reference's (``ref``: :func:`summarize`'s summary)."""
    gnb = case.options.get("gnb", False)
    worst, msg = check_samples(mine[0], case.name, case.kwargs, gnb)
    if gnb:
        for k, spread in ref[0].items():
            r = abs(float(np.asarray(mine[0][k], np.float64).std(axis=0).sum()) / float(spread) - 1) / 0.1
            if r > worst:
                worst, msg = r, f"GNB spread of {k!r} differs from the reference's"
    return worst, msg


def rose_bf16(mine: list[dict], ref: list[dict], case) -> tuple[float, str]:
    """Column-group means of stochastically rounded bf16 parameters: within ``atol`` of the exact drift
    ``1.5 -+ (t + 1) lr / 2`` and of the reference's means."""
    if len(mine) != len(ref) or len(mine) != case.steps:
        return float("inf"), f"{len(mine)} steps, reference {len(ref)}"
    lr = case.kwargs["learning_rate"]
    worst, msg = 0.0, ""
    for t, (a, b) in enumerate(zip(mine, ref)):
        drift = (t + 1) * lr / 2
        for k, sign in (("down", -1.0), ("up", 1.0)):
            for what, r in (
                ("the exact drift", abs(float(a[k]) - (1.5 + sign * drift)) / case.atol),
                ("the reference", abs(float(a[k]) - float(b[k])) / case.atol),
            ):
                if r > worst:
                    worst, msg = r, f"step {t + 1}: mean {k!r} {float(a[k]):.6g} vs {what}"
    return worst, msg


COMPARES: dict[str, Callable] = {"hessian_stats": hessian_stats, "rose_bf16": rose_bf16}
