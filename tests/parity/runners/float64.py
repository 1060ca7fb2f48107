"""Parity rows for the matrix-preconditioned optimizers (Shampoo, SPlus, SOAP, Kron)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch

from tests.parity import harness
from tests.parity.harness import Row, mlx_stepper


class Float64Reference:
    """Run a reference class on float64 copies of the parameters and write the result back in float32.

    Used where the float32 reference is itself ill-conditioned (its float32 and float64 runs
    disagree by more than the tolerance); the row then checks us against the reference's
    float64 result.
    """

    def __init__(self, params, *, cls, **kwargs):
        self.params = list(params)
        self.copies = [torch.nn.Parameter(p.detach().double().clone()) for p in self.params]
        self.opt = cls(self.copies, **kwargs)

    def step(self, closure=None):
        for p, c in zip(self.params, self.copies):
            c.grad = p.grad.double()
        self.opt.step()
        for p, c in zip(self.params, self.copies):
            p.data.copy_(c.detach().float())


def float64_reference(name: str):
    import pytorch_optimizer

    cls = pytorch_optimizer.load_optimizer(name)
    return lambda params, **kw: Float64Reference(params, cls=cls, **kw)


def shapes_runner(shapes: list[tuple[int, ...]], seed: int = 0):
    """A ``Row.runner`` on other parameter shapes than the harness's (same gradient recipe).

    SOAP's first basis is ``eigh`` of a rank-deficient statistic; when its null space has more
    than one dimension the basis inside it is whatever LAPACK returns (and differs between
    LAPACK builds), so rows for ``merge_dims`` / ``precondition_1d`` use shapes whose factors are
    full rank or have a one-dimensional null space.
    """

    def runner(row: Row, compiled: bool):
        rng = np.random.default_rng(seed)
        init = {f"p{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}
        target = {k: rng.normal(size=v.shape) for k, v in init.items()}
        noise = [{k: rng.normal(scale=0.5, size=v.shape) for k, v in init.items()} for _ in range(row.steps)]

        def grads_at(params, t):
            return {
                k: (harness.scale(t) * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
                for k, p in params.items()
            }

        opt, holder, step = mlx_stepper(row, compiled, init)
        tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
        ref = harness.reference_class(row)(list(tparams.values()), **row.torch_kwargs())
        mine, theirs = [], []
        for t in range(row.steps):
            step(
                {k: mx.array(g) for k, g in grads_at({k: np.array(v) for k, v in holder["params"].items()}, t).items()}
            )
            mx.eval(holder, opt.state)
            mine.append({k: np.array(v) for k, v in holder["params"].items()})
            for k, g in grads_at({k: p.detach().numpy() for k, p in tparams.items()}, t).items():
                tparams[k].grad = torch.from_numpy(g)
            ref.step()
            theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        return mine, theirs

    return runner


_ENVELOPE_CACHE: dict[str, tuple[list, list]] = {}


def envelope_runner(row: Row, compiled: bool):
    """``Row.runner`` for :attr:`Row.fp64_envelope` rows of a plain reference: our run, the reference's float32 run
    (compared at the row's atol/rtol) and its float64 run (the envelope), both references computed once per row."""
    import dataclasses

    import pytorch_optimizer

    if row.label not in _ENVELOPE_CACHE:
        cls = pytorch_optimizer.load_optimizer(row.name)
        ref32 = harness.run_reference(dataclasses.replace(row, ref=cls))
        ref64 = harness.run_reference(dataclasses.replace(row, ref=float64_reference(row.name)))
        _ENVELOPE_CACHE[row.label] = (ref32, ref64)
    ref32, ref64 = _ENVELOPE_CACHE[row.label]
    return harness.run_mlx(row, compiled), ref32, ref64
