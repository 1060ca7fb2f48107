"""Every element-wise optimizer's compiled update (and a few with norms) stays within its operations per leaf.

``mlx_optim.fusion.ops_per_leaf`` counts what one more leaf adds to the graph of a compiled step (fused kernels
and unfused operations). One means each leaf is read and written once, by one kernel. A class that needs more
says so with ``ops_per_leaf = n`` and a comment on why; lowering a count is progress, raising one fails here.
The graph is only built, never evaluated, so this is cheap.
"""

from __future__ import annotations

import pytest

import mlx_optim
from mlx_optim.fusion import graph_ops, ops_per_leaf
from mlx_optim.packed import ELEMENTWISE
from tests.parity.harness import all_rows

FIRST_ROW = {}
for _row in all_rows():
    FIRST_ROW.setdefault(_row.name, dict(_row.kwargs))


# Not element-wise (per-leaf norms), held to their declared counts too: a reduction never fuses, so each norm is
# a Square and a Sum; what else they take per leaf is said on the class.
REDUCING = ("lamb", "lars", "novograd", "stableadamw")


@pytest.mark.parametrize("name", sorted(ELEMENTWISE) + list(REDUCING))
def test_ops_per_leaf(name):
    cls = mlx_optim.load_optimizer(name)
    ops = ops_per_leaf(lambda: cls(**FIRST_ROW[name]))
    allowed = getattr(cls, "ops_per_leaf", 1)
    assert sum(ops.values()) <= allowed, f"{name}: {sum(ops.values())} operations per leaf (allowed {allowed}): {ops}"


def test_counter_sees_unfused_work():
    """The counter is not blind: an update split on purpose (a non-fusable copy between two halves) counts 3."""
    import mlx.core as mx

    class Split(mlx_optim.SGD):
        def update_single(self, g, p, state):
            half = mx.contiguous(p * 0.5)  # Contiguous is not fusable: two kernels around it
            return half - self.hp.lr * g + half

    assert sum(ops_per_leaf(lambda: Split(learning_rate=0.1)).values()) == 3
    assert sum(ops_per_leaf(lambda: mlx_optim.SGD(learning_rate=0.1)).values()) == 1
    assert sum(graph_ops([mx.array(1.0) + 1]).values()) == 1
