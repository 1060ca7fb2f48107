"""The structure of the base (issue 17): one core class under Optimizer and Wrapper, the execution strategies in
their own module, and every registered class's capabilities resolved in one place."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import mlx.optimizers as optim
import pytest

import mlx_optim
from mlx_optim import packed
from mlx_optim.base import Optimizer
from mlx_optim.capabilities import ELEMENTWISE_UNLESS, Capabilities, capabilities, is_elementwise
from mlx_optim.core import OptimizerCore
from mlx_optim.execution import Execution
from mlx_optim.wrappers import Wrapper
from tests.parity.harness import all_rows

NAMES = mlx_optim.get_supported_optimizers()
KWARGS: dict[str, dict] = {}
for _row in all_rows():
    KWARGS.setdefault(_row.name, dict(_row.kwargs))


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_class_resolves_its_capabilities(name):
    cls = mlx_optim.load_optimizer(name)
    caps = capabilities(cls)
    assert isinstance(caps, Capabilities)
    # the declared class attributes, unchanged
    assert (caps.needs_loss, caps.compilable, caps.zero_compatible) == (
        cls.needs_loss,
        cls.compilable,
        cls.zero_compatible,
    )
    assert caps.shared_tunables == tuple(cls.shared_tunables) and caps.groups == (not cls.groups_unsupported)
    assert caps.wrapper == issubclass(cls, Wrapper) and caps.wrapper != issubclass(cls, Optimizer)
    assert not (caps.elementwise and caps.elementwise_unless)
    assert all(isinstance(k, str) and isinstance(v, bool) for k, v in caps.quantized_moments.items())
    if issubclass(cls, Optimizer) and name in KWARGS:
        opt = cls(**KWARGS[name])
        assert caps.quantize_per_leaf == opt._quantize_per_leaf, name  # the rule Optimizer.__init__ applies
        assert capabilities(opt) == caps
        assert is_elementwise(opt) == packed.is_elementwise(opt)


def test_capabilities_refuse_what_is_not_ours_and_are_frozen():
    with pytest.raises(TypeError, match="not an mlx_optim optimizer"):
        capabilities(optim.Adam(1e-3))
    caps = capabilities(mlx_optim.AdamW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.needs_loss = True
    with pytest.raises(TypeError):
        caps.quantized_moments["exp_avg"] = False


def test_elementwise_declarations():
    """packed.ELEMENTWISE is built from the declaration; a listed optimizer stops being element-wise with a
    reducing option on, a declared one never does, a wrapper never is."""
    assert set(packed.ELEMENTWISE) == set(ELEMENTWISE_UNLESS) and set(ELEMENTWISE_UNLESS) <= set(NAMES)
    assert is_elementwise(mlx_optim.ADOPT()) and not is_elementwise(mlx_optim.ADOPT(cautious=True))
    assert not is_elementwise(mlx_optim.Lookahead(mlx_optim.AdamW()))
    assert capabilities(mlx_optim.AdamW).elementwise_unless == ("adanorm", "cautious", "use_gc", "use_softplus_norm")


def test_wrapper_builds_on_the_core_not_on_optimizer():
    """A wrapper has no learning rate or per-leaf update of its own to undo: its tunables, its state and its
    ``learning_rate`` are its own / its inner optimizer's."""
    assert issubclass(Wrapper, OptimizerCore) and not issubclass(Wrapper, Optimizer)
    assert "apply_single" not in vars(Wrapper) and not issubclass(Wrapper, Execution)
    opt = mlx_optim.Lookahead(mlx_optim.AdamW(learning_rate=1e-3))
    assert "learning_rate" not in opt._tunables and sorted(opt.state) == ["_global", "inner", "slots", "step"]
    opt.learning_rate = 2e-3
    assert opt.inner.learning_rate.item() == pytest.approx(2e-3) and opt.learning_rate.item() == pytest.approx(2e-3)
    p = {"w": mx.ones((3,))}
    new = opt.apply_gradients({"w": mx.ones((3,))}, p)
    assert new["w"].shape == (3,) and opt.step.item() == 1 and opt.inner.step.item() == 1


def test_optimizer_runs_through_the_execution_mixin():
    """Per-leaf optimizers get the execution strategies from one mixin; an option change drops the fused trace."""
    assert issubclass(Optimizer, Execution) and Optimizer.__mro__.index(Execution) < Optimizer.__mro__.index(
        OptimizerCore
    )
    opt = mlx_optim.AdamW(learning_rate=1e-3)
    opt.fuse_updates = True
    p = {"w": mx.ones((4,))}
    opt.apply_gradients({"w": mx.ones((4,))}, p)
    assert "_fused_fn" in opt.__dict__
    opt.weight_decay = 0.5  # a tunable: a state array, the trace stays
    assert "_fused_fn" in opt.__dict__
    opt.amsgrad = True  # an option: traced again
    assert "_fused_fn" not in opt.__dict__
