"""Parity rows for the matrix-preconditioned optimizers (Shampoo, SPlus, SOAP, Kron)."""

from __future__ import annotations

import torch

from mlx_optim.check import problems as check_problems
from tests.parity import harness
from tests.parity.harness import Portable, Reference, Row


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
    """A ``Row.runner`` on other parameter shapes than the harness's (same gradient recipe, one generator for the
    init, target and noise, ``sin(3p)`` of the float32 parameter: ``mlx_optim.check.problems.shaped``).

    SOAP's first basis is ``eigh`` of a rank-deficient statistic; when its null space has more
    than one dimension the basis inside it is whatever LAPACK returns (and differs between
    LAPACK builds), so rows for ``merge_dims`` / ``precondition_1d`` use shapes whose factors are
    full rank or have a one-dimensional null space.
    """
    spec = {
        "kind": "shaped",
        "shapes": [[f"p{i}", list(s)] for i, s in enumerate(shapes)],
        "seed": seed,
        "sin64": False,
    }

    def reference(row: Row):
        problem = check_problems.build(spec, row.steps)
        tparams = harness.torch_params(problem.init)
        ref = harness.reference_class(row)(list(tparams.values()), **row.torch_kwargs())
        theirs = []
        for t in range(row.steps):
            for k, g in problem.grads({k: p.detach().numpy() for k, p in tparams.items()}, t).items():
                tparams[k].grad = torch.from_numpy(g)
            ref.step()
            theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        return theirs

    return Portable("standard", reference, {"with_loss": False, "problem": spec})


def _envelope_reference(row: Row):
    """For :attr:`Row.fp64_envelope` rows of a plain reference: the reference's float32 run (compared at the row's
    atol/rtol) and its float64 run (the envelope); the MLX side is the standard one."""
    import dataclasses

    import pytorch_optimizer

    cls = pytorch_optimizer.load_optimizer(row.name)
    ref32 = harness.run_reference(dataclasses.replace(row, ref=cls))
    ref64 = harness.run_reference(dataclasses.replace(row, ref=float64_reference(row.name)))
    return Reference(ref32, trajectory64=ref64)


envelope_runner = Portable("standard", _envelope_reference)
