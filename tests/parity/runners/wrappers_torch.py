"""Parity rows for the wrappers (Lookahead, Scout, OrthoGrad, KerasOptions) and the SAM family.

Lookahead, Scout, OrthoGrad and KerasOptions update once per gradient, so they use the standard harness with a
reference factory (``pytorch_optimizer.Lookahead`` / ``OrthoGrad`` around a torch optimizer; torch
transcriptions of holocron's Scout and of Keras 3's ``BaseOptimizer`` options).

The SAM family evaluates the gradient twice per step, so its rows carry :func:`sam_runner`: the harness's
problem (``loss_and_grads``) is written as a small MLX module (``Problem``, parameters ``a``, ``b``, ``c``)
whose gradient comes from ``nn.value_and_grad`` computed in float64 and rounded to float32, as the harness's
NumPy gradient is, and driven with ``opt.step_with(model, loss_and_grad, t)``;
the torch side steps the pytorch_optimizer class with a closure that recomputes the harness's analytic loss
and gradient at the current (perturbed) parameters. Rows with ``transparent=True`` drive the MLX optimizer
through two ordinary ``update`` calls per step with the same batch and are compared with the same
two-evaluation torch reference. "compiled" compiles the whole MLX step
(``inputs=[model.state, opt.state]``).
"""

from __future__ import annotations

import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)  # noqa: F401  (registers the wrappers)


def _torch_class(name: str):
    import pytorch_optimizer

    return pytorch_optimizer.load_optimizer(name)


def _torch_inner_kwargs(lr, optimizer_kwargs) -> dict:
    kw = {
        ("lr" if k == "learning_rate" else k): (tuple(v) if isinstance(v, list) else v)
        for k, v in (optimizer_kwargs or {}).items()
    }
    if lr is not None:
        kw["lr"] = lr
    return kw


class TorchKerasOptions:
    """Keras 3 ``BaseOptimizer.apply`` / ``_backend_apply_gradients`` (unscale, accumulate, clip, update, EMA,
    overwrite) transcribed to torch around a torch optimizer (weight decay is the torch optimizer's)."""

    def __init__(
        self,
        params,
        optimizer,
        lr=None,
        optimizer_kwargs=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
    ):
        self.params = list(params)
        self.base = _torch_class(optimizer)(self.params, **_torch_inner_kwargs(lr, optimizer_kwargs))
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum, self.freq = use_ema, ema_momentum, ema_overwrite_frequency
        self.scale, self.steps = loss_scale_factor, gradient_accumulation_steps
        self._iterations = 0
        self.acc = [torch.zeros_like(p) for p in self.params]
        self.avg = [torch.zeros_like(p) for p in self.params]

    @property
    def iterations(self):
        return self._iterations // self.steps if self.steps else self._iterations

    def clip(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            out = []
            for g in grads:
                l2 = torch.sqrt(torch.sum(g * g))
                out.append(g * self.clipnorm / torch.maximum(l2, torch.tensor(self.clipnorm)))
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = torch.sqrt(sum(torch.sum(g * g) for g in grads))
            scale = self.global_clipnorm * torch.minimum(1.0 / norm, torch.tensor(1.0 / self.global_clipnorm))
            return [g * scale for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [torch.clamp(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _update(self, grads):
        for p, g in zip(self.params, self.clip(grads)):
            p.grad = g.clone()
        self.base.step()

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p.grad.clone() for p in self.params]
        if self.scale is not None:
            grads = [g / self.scale for g in grads]
        if self.steps:
            if (self._iterations + 1) % self.steps == 0:
                self._update([(g + a) / self.steps for g, a in zip(grads, self.acc)])
                self.acc = [torch.zeros_like(a) for a in self.acc]
            else:
                self.acc = [a + g for a, g in zip(self.acc, grads)]
        else:
            self._update(grads)
        if self.use_ema:
            m = self.ema_momentum if self.iterations != 0 else 0.0
            self.avg = [m * a + (1 - m) * p for a, p in zip(self.avg, self.params)]
            if self.freq and (self.iterations + 1) % self.freq == 0:
                for p, a in zip(self.params, self.avg):
                    p.copy_(a)
        self._iterations += 1
