"""Packed updates: the small leaves of an element-wise optimizer as one flat buffer.

A LoRA adapter is hundreds of small tensors; updating each one separately costs
a dozen small operations per leaf (Python graph building, and on a GPU one kernel
launch each). For an element-wise optimizer the update of a flat concatenation
is the concatenation of the updates, so :func:`pack` keeps the state of all
leaves with at most ``max_size`` elements in **one flat buffer per group**
(parameter dtype, whether weight decay applies, and the parameter group) and updates each group with
one call of the optimizer's own ``update_single``::

    opt = mlx_optim.pack(mlx_optim.AdamW(learning_rate=1e-4))   # leaves of <= 65536 elements

The packed state is ``opt.state["packed"][<group>][<entry>]``, flat arrays the
optimizer's ``init_single`` created, so it is saved and loaded like any other
state (the layout is recomputed from the gradient tree: the same tree gives the
same layout; a different one raises). Each step concatenates the gradients and
parameters of a group (one extra read and write of them) and returns the new
parameters as views into the updated flat buffer. The result equals the
unpacked update element for element: the same operations on the same values
(tests/test_packed.py checks every optimizer listed in :data:`ELEMENTWISE`).

On the CPU the default path is faster than packing: :mod:`mlx_optim.execution` fuses the update of element-wise
optimizers and spreads the leaves over CPU streams (:mod:`mlx_optim.streams`), while a packed step
concatenates the gradients and parameters (one extra read and write of them) on one stream; measured with
AdamW on a LoRA tree, packing was slower both eagerly and compiled. Packing may still pay off on a GPU, where it
replaces hundreds of kernel launches by one (unmeasured).

Only element-wise optimizers can be packed: no reductions over a tensor (norms,
means, trust ratios), no shape- or path-dependent logic except the weight-decay
filter, and only parameter-shaped state. A class declares it with
``elementwise = True``; :data:`ELEMENTWISE` lists the registered ones verified
so far, with the options that make them non-element-wise (both declared in :mod:`mlx_optim.capabilities`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from mlx_optim.base import Optimizer, leaves
from mlx_optim.capabilities import ELEMENTWISE_UNLESS, is_elementwise
from mlx_optim.capabilities import no_reducing_flags as _no_reducing_flags

__all__ = ["ELEMENTWISE", "Packer", "is_elementwise", "pack"]

# The packing rule per optimizer class is a capability, declared in mlx_optim.capabilities (ELEMENTWISE_UNLESS:
# registered optimizers whose update is element-wise unless a reducing option is on). name -> predicate on the
# configured instance.
ELEMENTWISE: dict[str, Callable[[Optimizer], bool]] = dict.fromkeys(ELEMENTWISE_UNLESS, _no_reducing_flags)


class Packer:
    """The packing rule and layout for one optimizer (installed as ``opt.packer`` by :func:`pack`)."""

    def __init__(self, max_size: int = 65536):
        if max_size < 1:
            raise ValueError(f"pack: max_size={max_size!r} must be a positive number of elements")
        self.max_size = int(max_size)

    # ------------------------------------------------------------------ layout
    def groups(self, opt: Optimizer, gradients: Any, parameters: Any) -> dict[str, list[tuple[str, Any, Any]]]:
        """``{group: [(path, gradient, parameter), ...]}`` of the leaves to pack, in update order."""
        out: dict[str, list] = {}
        for path, g, p, _ in leaves(gradients, parameters, parameters):
            if p.size > self.max_size:
                continue
            key = str(p.dtype).rsplit(".", 1)[-1] + ("" if opt._leaf_call(path, p, opt.decays) else "_nodecay")
            group = opt._match_group(path, p) if opt._param_groups else None
            key += "" if group is None else f"_group{group}"  # a parameter group's leaves: its own buffer
            out.setdefault(key, []).append((path, g, p))
        return out

    @staticmethod
    def _flat(arrays: list[mx.array]) -> mx.array:
        return mx.concatenate([a.reshape(-1) for a in arrays]) if len(arrays) > 1 else arrays[0].reshape(-1)

    # ------------------------------------------------------------------ hooks called by Optimizer
    def init(self, opt: Optimizer, parameters: Any) -> set[str]:
        """Create the flat state of every group that has none; return the packed leaves' paths."""
        packed = opt.state.setdefault("packed", {})
        paths = set()
        for key, members in self.groups(opt, parameters, parameters).items():
            paths.update(path for path, _, _ in members)
            if key in packed:
                continue
            flat = self._flat([p for _, _, p in members])
            state: dict = {}
            opt._leaf_call(members[0][0], members[0][2], opt.init_single, flat, state)
            bad = [k for k, v in state.items() if not (isinstance(v, mx.array) and v.shape == flat.shape)]
            if bad:
                raise ValueError(f"{type(opt).__name__}: state {bad} is not parameter-shaped; it cannot be packed")
            packed[key] = state
        return paths

    def apply(self, opt: Optimizer, gradients: Any, parameters: Any) -> Any:
        """The update: one ``apply_single`` per packed group, the usual one for every other leaf."""
        new: dict[str, mx.array] = {}
        packed = opt.state["packed"]
        for key, members in self.groups(opt, gradients, parameters).items():
            state = packed.get(key)
            n = sum(p.size for _, _, p in members)
            size = None if state is None else next((v.size for v in state.values() if isinstance(v, mx.array)), n)
            if size != n:
                raise ValueError(
                    f"packed state group '{key}' holds {size} elements but the gradient tree has {n} "
                    "there: the parameter tree changed since the state was created"
                )
            g_flat, p_flat = self._flat([g for _, g, _ in members]), self._flat([p for _, _, p in members])
            flat = opt._leaf_call(members[0][0], members[0][2], opt.apply_single, g_flat, p_flat, state)
            offsets, total = [], 0
            for _, _, p in members[:-1]:
                total += p.size
                offsets.append(total)
            for (path, _, p), part in zip(members, mx.split(flat, offsets) if offsets else [flat]):
                new[path] = part.reshape(p.shape)
        for path, g, p, s in leaves(gradients, parameters, opt.state):
            if path not in new:
                new[path] = opt._leaf_call(path, p, opt.apply_single, g, p, s)
        return _rebuild(gradients, new, "")


def _rebuild(tree: Any, values: dict[str, mx.array], path: str) -> Any:
    if isinstance(tree, dict):
        return {k: _rebuild(v, values, f"{path}{k}.") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_rebuild(v, values, f"{path}{i}.") for i, v in enumerate(tree))
    return values[path[:-1]]


def pack(opt: Optimizer, max_size: int = 65536) -> Optimizer:
    """Update the leaves of at most ``max_size`` elements as flat buffers (see the module docstring).

    Call it before the first update (the state layout is created then). Raises ``ValueError`` for an
    optimizer that is not element-wise as configured. Returns ``opt``.
    """
    if not is_elementwise(opt):
        raise ValueError(
            f"{type(opt).__name__} is not known to be element-wise as configured, so its small leaves "
            "cannot be packed (see mlx_optim.packed.ELEMENTWISE)"
        )
    if opt._initialized and "packed" not in opt.state:
        raise ValueError("pack() must be called before the optimizer's first update (the state layout changes)")
    opt.packer = Packer(max_size)
    return opt
