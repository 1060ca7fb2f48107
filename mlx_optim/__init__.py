"""mlx-optim: the optimizer library for Apple's MLX.

Every optimizer is an ``mlx.optimizers.Optimizer`` subclass, registered under
pytorch_optimizer's (lowercase) name and parity-checked against its PyTorch
reference::

    import mlx_optim as mo
    opt = mo.load_optimizer("adamw")(learning_rate=1e-3)
    opt = mo.AdamW(learning_rate=1e-3)
"""

# Importing the optimizers and wrappers packages registers every class.
from mlx_optim import (  # noqa: F401
    functional,
    fusion,
    interop,
    jit_pch,
    packed,
    precision,
    schedulers,
    streams,
    wrappers,
)
from mlx_optim import optimizers as _optimizers  # noqa: F401
from mlx_optim.autodiff import LossAndGrad, value_and_grad
from mlx_optim.base import Optimizer, check_choice, check_range
from mlx_optim.registry import (
    OPTIMIZERS,
    create_optimizer,
    get_supported_optimizers,
    load_optimizer,
    register,
)
from mlx_optim.schedulers import get_supported_lr_schedulers, load_lr_scheduler

__version__ = "0.1.0"

# Export every registered class under its class name (mlx_optim.AdamW, ...).
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = [
    "LossAndGrad",
    "Optimizer",
    "OPTIMIZERS",
    "check_choice",
    "check_range",
    "create_optimizer",
    "functional",
    "get_supported_lr_schedulers",
    "interop",
    "load_lr_scheduler",
    "schedulers",
    "get_supported_optimizers",
    "load_optimizer",
    "register",
    "value_and_grad",
    "wrappers",
    *sorted(cls.__name__ for cls in OPTIMIZERS.values()),
]
