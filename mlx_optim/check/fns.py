"""Functions that parity rows pass as optimizer keywords (parameter filters, schedules, clip bounds).

They live in the package, not in the tests, so that a stored row (:mod:`mlx_optim.check.goldens`) can name them
(``{"$fn": "mlx_optim.check.fns:not_c"}``) and ``mlx-optim check`` can rebuild the row without the tests.
The parameter names are the harness's ``a`` (7,), ``b`` (5, 6) and ``c`` (2, 3, 4).
"""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.optimizers.scion import LMONorm

__all__ = [
    "clip_cube_root",
    "clip_rotary_key",
    "matrices",
    "matrices_t",
    "no_projection",
    "not_c",
    "only_c",
    "rho_schedule",
    "scion_mixed",
    "scion_row",
    "scion_rowcol",
]


def not_c(path, p):
    """Routes the 1-D ``a`` and the matrix ``b`` to the orthogonalized branch, the 3-D ``c`` to AdamW."""
    return path != "c"


def only_c(path, p):
    """Only ``c`` takes the orthogonalized branch."""
    return path == "c"


def scion_mixed(path, p):
    """One LMO per leaf: bias, sign, spectral."""
    return {
        "a": LMONorm.BIAS,
        "b": (LMONorm.SIGN, {"normalize": False}),
        "c": (LMONorm.SPECTRAL, {"max_scale": True, "normalize": False, "num_steps": 4}),
    }[path]


def scion_rowcol(path, p):
    """One LMO per leaf: none, column, spectral-conv."""
    return {
        "a": LMONorm.NONE,
        "b": (LMONorm.COL, {"normalized": True, "transpose": True}),
        "c": (LMONorm.SPECTRALCONV, {"num_steps": 3}),
    }[path]


def scion_row(path, p):
    """One LMO per leaf: bias, row, none."""
    return {"a": LMONorm.BIAS, "b": (LMONorm.ROW, {"normalized": False}), "c": LMONorm.NONE}[path]


def clip_cube_root(step):
    """ADOPT clip bound ``t**0.333`` (timm's schedule); works on ints and mx arrays alike."""
    return step**0.333


def no_projection(path, p):
    """A projection filter selecting no leaf."""
    return False


def matrices(path, p):
    """SpectralSphere supports 2-D parameters only: b (5, 6); a and c stay unchanged on both sides."""
    return p.ndim == 2


def matrices_t(path, p):
    """Only ``b``."""
    return path == "b"


def clip_rotary_key(path, p):
    """MuonClip's QK-Clip roles: ``c`` a rotary key of a 2-head attention, ``b`` a key of a 5-head one."""
    return {"c": ("key_rotary", "attn2"), "b": ("key", "attn5")}.get(path)


def rho_schedule(step):
    """GSAM's rho: 0.1 * 0.9**step."""
    return 0.1 * mx.power(0.9, step.astype(mx.float32))
