"""How many operations one leaf's update costs under ``mx.compile``: a diagnostic for fused updates.

``mx.compile`` fuses chains of element-wise operations into one kernel, within limits: a chain is cut where it
is more than 11 operations deep (broadcasts of scalars count) and where an intermediate result has consumers
in two kernels; a cut writes the intermediate to memory and reads it back (8 bytes per element in float32),
and every kernel is dispatched separately (a fixed cost per kernel on the CPU backend, times the number of leaves).
An element-wise optimizer whose update is one kernel per leaf reads and writes each array once.

:func:`ops_per_leaf` counts the operations (fused kernels and single operations) that one more leaf adds to
the compiled graph of an optimizer's step. It builds the graph only (nothing is evaluated or compiled to
machine code), so it is cheap; ``tests/test_fusion.py`` holds every element-wise optimizer to its count.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

__all__ = ["graph_ops", "ops_per_leaf"]

_LABEL = re.compile(r'label ="([^"]+)"')


def graph_ops(outputs: Any) -> Counter:
    """The primitives (``Compiled...`` for a fused kernel) in the unevaluated graph behind ``outputs``."""
    f = io.StringIO()
    mx.export_to_dot(f, *[v for _, v in tree_flatten(outputs) if isinstance(v, mx.array)])
    return Counter(_LABEL.findall(f.getvalue()))


def _step_ops(make: Callable[[], Any], leaves: int, shape: tuple[int, ...]) -> Counter:
    opt = make()
    opt.update_streams = 1  # several streams add per-stream copies of the scalars
    keys = mx.random.split(mx.random.key(0), 2 * leaves)
    holder = {"p": {f"w{i}": mx.random.normal(shape, key=keys[i]) for i in range(leaves)}}
    grads = {f"w{i}": mx.random.normal(shape, key=keys[leaves + i]) * 0.1 for i in range(leaves)}
    opt.init(holder["p"])
    mx.eval(holder, grads, opt.state)
    loss = mx.array(1.0)

    def step(g):
        kw = {"loss": loss} if getattr(opt, "needs_loss", False) else {}
        holder["p"] = opt.apply_gradients(g, holder["p"], **kw)

    state = [holder, opt.state]
    mx.compile(step, inputs=state, outputs=state)(grads)
    return graph_ops(state)


def ops_per_leaf(make: Callable[[], Any], shape: tuple[int, ...] = (16, 64)) -> Counter:
    """The operations one more leaf adds to the compiled graph of ``make()``'s step (3 leaves minus 2 leaves).

    ``make`` builds a fresh optimizer. ``sum(result.values()) == 1`` means each leaf is updated by a single
    fused kernel. Two and three leaves (not one and two) so that the per-step scalars, shared by several
    leaves, are their own operations in both graphs and cancel out.
    """
    return _step_ops(make, 3, shape) - _step_ops(make, 2, shape)
