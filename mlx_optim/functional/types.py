"""Type aliases shared by the functional modules."""

from __future__ import annotations

import mlx.core as mx

Scalar = float | mx.array
