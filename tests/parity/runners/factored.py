"""Parity rows for mlx_optim/optimizers/factored.py.

adafactor, came, sm3: pytorch_optimizer, through the standard harness.
adafactorbigvision: :class:`BigVisionAdafactorRef`, a NumPy transcription of big_vision's
``scale_by_adafactor`` (optax ``scale_by_factored_rms`` with the capped decay schedule,
``clip_by_block_rms``, ``ema(debias=False, accumulator_dtype)``) followed by the learning rate
and weight decay of the seed's / timm's ``AdafactorBigVision`` (timm's caution mask included).
adammini, adalomo: :func:`named_runner`, a harness on parameters with *names* (AdamMini
partitions by name; AdaLOMO's reference supports only 1-D/2-D tensors), with the reference
built from a torch module holding those named parameters.
lomo, adalomo: the reference's calling convention (``grad_norm(loss)`` then
``fused_backward(loss, lr)``) is driven with :class:`GradLoss`, a stand-in loss whose
``backward()`` writes the harness gradient (times the loss scale) into ``p.grad``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from tests.parity import harness
from tests.parity.harness import Row


# ----------------------------------------------------------------------------- LOMO / AdaLOMO calling convention
class GradLoss:
    """A loss stand-in: ``backward()`` writes the given gradients (times the accumulated scale) into ``p.grad``."""

    def __init__(self, params, grads, scale=1.0):
        self.params, self.grads, self.scale = params, grads, scale

    def __mul__(self, factor):
        return GradLoss(self.params, self.grads, self.scale * factor)

    def backward(self, retain_graph=False):
        for p, g in zip(self.params, self.grads):
            p.grad = g * self.scale


def _torch_module(named_params: dict) -> torch.nn.Module:
    """A module whose ``named_parameters()`` are exactly ``named_params`` (dotted names)."""
    root = torch.nn.Module()
    for name, p in named_params.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if part not in m._modules:
                m.add_module(part, torch.nn.Module())
            m = m._modules[part]
        m.register_parameter(leaf, p)
    return root


class FusedBackwardRef:
    """pytorch_optimizer's LOMO / AdaLOMO stepped as their trainers do: ``grad_norm`` (if clipping by norm), then ``fused_backward``."""

    def __init__(self, cls, named_params: dict, **kw):
        self.params = list(named_params.values())
        self.opt = cls(_torch_module(named_params), **kw)
        self.lr = kw.get("lr", 1e-3)

    def step(self, closure=None):
        grads = [p.grad.clone() for p in self.params]
        for p in self.params:
            p.grad = None
        loss = GradLoss(self.params, grads)
        if self.opt.clip_grad_norm is not None and self.opt.clip_grad_norm > 0.0:
            self.opt.grad_norm(loss)
        self.opt.fused_backward(loss, self.lr)


# ----------------------------------------------------------------------------- harness on named parameters
def named_runner(shapes: dict[str, tuple], build_ref):
    """A runner on parameters with dotted names (nested dicts on the MLX side, a module on the torch side).

    The problem is the harness's (same loss shape, same loud-then-quiet gradient scale) on the
    given shapes; ``build_ref(named_torch_params, torch_kwargs)`` returns an object with ``step()``.
    """

    def runner(row: Row, compiled: bool):
        rng = np.random.default_rng(0)
        init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        prng = np.random.default_rng(1)
        target = {k: prng.normal(size=s) for k, s in shapes.items()}
        noise = [{k: prng.normal(scale=0.5, size=s) for k, s in shapes.items()} for _ in range(row.steps)]

        def grads_at(params, t):
            s = harness.scale(t)
            return {
                k: (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
                for k, p in ((k, v.astype(np.float64)) for k, v in params.items())
            }

        tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
        ref_opt = build_ref(tparams, row.torch_kwargs())
        theirs = []
        for t in range(row.steps):
            grads = grads_at({k: p.detach().numpy() for k, p in tparams.items()}, t)
            for k, p in tparams.items():
                p.grad = torch.from_numpy(grads[k].copy())
            ref_opt.step()
            theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})

        holder = {"params": tree_unflatten([(k, mx.array(v)) for k, v in init.items()])}
        opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
        opt.init(holder["params"])

        def step(grads):
            holder["params"] = opt.apply_gradients(grads, holder["params"])

        if compiled:
            state = [holder, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)
        mine = []
        for t in range(row.steps):
            flat = {k: np.array(v) for k, v in tree_flatten(holder["params"])}
            grads = grads_at(flat, t)
            step(tree_unflatten([(k, mx.array(g)) for k, g in grads.items()]))
            mx.eval(holder, opt.state)
            mine.append({k: np.array(v) for k, v in tree_flatten(holder["params"])})
        return mine, theirs

    return runner
