"""Parity rows for the low-rank / projected optimizers (mlx_optim/optimizers/lowrank.py).

* galore, fira, conda: the reference runs with ``torch.linalg.svd`` wrapped to return the
  same sign convention as :func:`mlx_optim.optimizers.lowrank.canonical_svd` (each left
  singular vector's largest-magnitude entry positive). Singular vectors are only defined up
  to sign, torch's and MLX's LAPACK calls return different signs, and the moments are kept in
  the projected coordinates across refreshes, so without a common convention the runs differ
  after the first refresh for reasons that are not bugs. Both sides still compute their own
  SVD of their own gradient (or momentum), so the SVD itself is under test.
  The projection settings are group keys in the reference (``rank`` etc. in its ``**kwargs``);
  rows that rely on our defaults pass them through ``ref_kwargs``. ``projection_filter`` has no
  torch counterpart and is dropped from the torch keywords (a row with a filter that rejects
  every leaf is compared with the reference *without* the group keys, i.e. unprojected).
* "full" projection rows use ``eps=1e-3``: on a refresh step ``A^T G B^T`` of the SVD basis of
  ``G`` (GaLore, Fira; Conda's momentum on step 1) is diagonal, and its off-diagonal entries are
  float32 rounding noise (~1e-8) that Adam's elementwise ``m / (sqrt(v) + eps)`` blows up to
  O(1e-2) relative changes with eps=1e-6: a difference between any two SVD implementations
  (measured 2e-4 absolute on step 1 with the default eps), not a porting error.
* apollo: the projection is random (``torch.randn`` from the global generator in the
  reference, a per-leaf key in our state). :func:`apollo_runner` makes the reference
  deterministic by feeding it *our* draws: before every step it replays our key schedule
  (the same ``mx.random.split`` / ``mx.random.normal`` calls the optimizer makes), and the
  reference's ``torch.randn`` returns those raw Gaussian matrices on its refresh steps. The
  comparison is then exact up to float32 rounding, at the default tolerance.
* Properties of our own projection (orthonormality, captured energy, random-basis
  statistics) are tested in tests/test_lowrank.py.
"""

from __future__ import annotations

import contextlib

import torch

_TORCH_ONLY_DROP = ("projection_filter", "seed")


@contextlib.contextmanager
def canonical_torch_svd():
    """``torch.linalg.svd`` with each left singular vector's largest-magnitude entry made positive."""
    original = torch.linalg.svd

    def svd(a, full_matrices=True, **kw):
        u, s, vh = original(a, full_matrices=full_matrices, **kw)
        idx = u.abs().argmax(dim=0)
        sign = torch.sign(u[idx, torch.arange(u.shape[1])])
        sign[sign == 0] = 1
        return u * sign, s, vh * sign[:, None]  # GaLore calls it with full_matrices=False

    torch.linalg.svd = svd
    try:
        yield
    finally:
        torch.linalg.svd = original


def _svd_ref(cls, group_keys: bool = True):
    """A factory building ``cls`` whose ``step`` runs under :func:`canonical_torch_svd`.

    ``group_keys``: fill in our default projection settings the row does not set (the reference
    needs all four group keys to project).
    """

    def make(params, **kwargs):
        for k in _TORCH_ONLY_DROP:
            kwargs.pop(k, None)
        if group_keys:
            kwargs = {**GALORE_DEFAULTS, **kwargs}
        opt = cls(params, **kwargs)
        step = opt.step

        def patched(closure=None):
            with canonical_torch_svd():
                return step(closure)

        opt.step = patched
        return opt

    return make


def _plain_ref(cls):
    def make(params, **kwargs):
        for k in (*_TORCH_ONLY_DROP, "rank", "update_proj_gap", "scale", "projection_type"):
            kwargs.pop(k, None)
        return cls(params, **kwargs)

    return make


GALORE_DEFAULTS = {"rank": 128, "update_proj_gap": 50, "scale": 1.0, "projection_type": "std"}


def _no_projection(path, p):
    return False
