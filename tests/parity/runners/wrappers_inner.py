"""Parity rows for PCGrad / PPCGrad, the Grokfast filters, TRAC and KerasOptions' AGC / non-finite options.

Single-gradient wrappers (``gradfilterma``, ``gradfilterema``, ``trac``, ``kerasoptions``) use the standard
harness with a reference factory around the same torch optimizer: ``pytorch_optimizer.gradfilter_ma`` /
``gradfilter_ema`` called before the torch optimizer's ``step`` (as their docstrings show),
``pytorch_optimizer.TRAC``, and the Keras 3 transcription of ``tests/parity/rows/wrappers.py`` extended with
pytorch_optimizer's ``agc``.

PCGrad and PPCGrad take one gradient per task, so their rows carry :func:`task_runner`: ``NUM_TASKS`` task
losses on the harness's parameters, ``s_t * sum(0.5 (p - target_i)^2 - 0.1 cos(3p) + noise_t * p)`` with a
different (far apart, so the task gradients conflict) target per task, whose gradients are computed in float64
and rounded to float32 for both sides. The MLX side calls ``opt.apply_gradients([g_1, ..., g_T], params)``
(eager, or the whole step compiled). The torch side runs ``pytorch_optimizer.PCGrad.pc_backward`` on losses
``sum(p * g_i)`` (whose gradients are exactly ``g_i``) and ``step``, with its ``random.shuffle`` replaced by the
task orders MLX draws from the same key (``pcgrad_orders``), so the comparison is exact rather than
statistical. ``PPCGrad`` is compared with a torch transcription of the Keras seed's ``PPCGrad`` (order
independent). Rows with ``partial=True`` leave parameter ``c`` out of task 1 (``p.grad is None`` in torch),
which exercises the reference's non-shared merge (summed, not averaged).
"""

from __future__ import annotations

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)

SGD = {"optimizer": "sgd", "learning_rate": 0.1}


SGDM = {"optimizer": "sgd", "learning_rate": 0.05, "optimizer_kwargs": {"momentum": 0.9}}


ADAMW = {"optimizer": "adamw", "learning_rate": 1e-2, "optimizer_kwargs": {"weight_decay": 0.1}}
