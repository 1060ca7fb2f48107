"""Reference keywords that mlx_optim does not accept, each with the reason: the one list of them.

Every optimizer takes its reference's constructor keywords (``lr`` renamed ``learning_rate``) and the options the
reference reads from ``**kwargs`` or from its parameter groups; ``tests/test_reference_keywords.py`` reads each
reference's signature and source and fails for a keyword that is neither accepted nor listed here. A listed keyword
raises ``TypeError`` (Python's, for an unknown keyword); :func:`mlx_optim.create_optimizer` adds the reason.

Imports nothing from the package: any layer may read it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TORCH_ONLY", "NOT_PORTED", "reason"]

# Keywords of torch.optim / pytorch_optimizer that only choose how torch executes the step; no optimizer takes them.
TORCH_ONLY: dict[str, str] = {
    "foreach": "torch-only: selects torch's multi-tensor (foreach) kernels; MLX fuses the update itself "
    "(mx.compile, Optimizer.fuse_updates)",
    "fused": "torch-only: selects torch's fused CUDA/CPU kernel (pytorch_optimizer.FlashAdamW raises for it); MLX "
    "fuses the update itself (mx.compile, Optimizer.fuse_updates)",
    "capturable": "torch-only: keeps torch's step counter on the device for CUDA-graph capture; here all state is "
    "mx.array and every step compiles",
    "differentiable": "torch-only: lets torch autograd differentiate through step(); MLX transforms functions "
    "(mx.grad of a function that calls apply_gradients)",
}

_USE_MUON = (
    "parameter-group flag of pytorch_optimizer (Muon or its AdamW fallback, per group); here "
    "muon_filter(path, parameter) chooses per leaf (default: matrices whose path has no 'embed')"
)
_SAM_MODEL = (
    "the torch model, for switching BatchNorm running statistics off during the perturbed pass; here "
    "step_with(model, loss_and_grad_fn, *batch) receives it"
)
_LOMO_MODEL = (
    "the torch model, whose backward hooks run the fused update; here the optimizer is applied to a gradient tree "
    "like every other one"
)
_GRADFILTER = (
    "the functional reference gradfilter_*(model, grads, ...) reads the model's .grad and returns its filter state "
    "`grads`; here a wrapper around an optimizer keeps the filter in its state"
)

# Per registry name (variants inherit their base's entries): reference keywords that are not accepted, and why.
NOT_PORTED: dict[str, dict[str, str]] = {
    "adago": {"use_muon": _USE_MUON},
    "adamuon": {"use_muon": _USE_MUON},
    "distributedmuon": {"use_muon": _USE_MUON},
    "muon": {"use_muon": _USE_MUON},
    "muonclip": {
        "use_muon": _USE_MUON,
        "attention_name": "parameter-group key naming a QK-clip group's attention; here qk_clip maps each path to "
        "(role, attention_name)",
    },
    "normuon": {"use_muon": _USE_MUON},
    "adalomo": {"model": _LOMO_MODEL},
    "lomo": {"model": _LOMO_MODEL},
    "adammini": {"model": "the torch model, read for its parameter names; here the leaf paths of the parameter tree"},
    "gsam": {"model": _SAM_MODEL},
    "wsam": {"model": _SAM_MODEL},
    "gradfilterema": {"model": _GRADFILTER, "grads": _GRADFILTER},
    "gradfilterma": {"model": _GRADFILTER, "grads": _GRADFILTER},
    "demo": {
        "process_group": "torch.distributed process group for exchanging the compressed momentum; DeMo runs "
        "in one process here"
    },
    "fadam": {
        "momentum_dtype": "per-entry state dtype; here state_dtype sets both entries' dtype",
        "fim_dtype": "per-entry state dtype; here state_dtype sets both entries' dtype",
    },
    "flashadamw": {
        "compress_state_dict": "switches the format of torch's state_dict(); here opt.state is saved as it is and "
        "holds the 8-bit codes with quantize=True",
    },
    "nadamw": {
        "decoupled_weight_decay": "fixed to True: NAdamW is torch.optim.NAdam(decoupled_weight_decay=True); NAdam "
        "takes the keyword",
    },
    "rose": {
        "compute_dtype": "dtype of the update arithmetic (the reference's default is float64); here float32 for "
        "float32/bf16/fp16 parameters (MLX has float64 on the CPU only)",
        "initial_lr": "parameter-group key that torch's LR schedulers write, read by wd_schedule=True; here "
        "wd_schedule=True takes the schedule's value at step 0",
        "max_lr": "parameter-group key that torch's OneCycleLR writes, read by wd_schedule=True; here pass "
        "wd_schedule=<lr_ref> (a number)",
    },
    "schedulefreeadamw": {"use_palm": "stored by the reference but never read by its step: no effect to port"},
    "schedulefreeradam": {"use_palm": "stored by the reference but never read by its step: no effect to port"},
}


def reason(optimizer: Any, keyword: str) -> str | None:
    """Why ``optimizer`` (a registry name, class or instance) does not take the reference keyword ``keyword``.

    Returns None when the keyword is not listed (accepted, or not a reference keyword at all).
    """
    if keyword in TORCH_ONLY:
        return TORCH_ONLY[keyword]
    if isinstance(optimizer, str):
        names = [optimizer.lower()]
    else:
        cls = optimizer if isinstance(optimizer, type) else type(optimizer)
        names = [getattr(c, "name", "") for c in cls.__mro__]
    for name in names:
        if keyword in NOT_PORTED.get(name, {}):
            return NOT_PORTED[name][keyword]
    return None
