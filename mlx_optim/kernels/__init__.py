"""Fused element-wise update kernels (Metal / CUDA through ``mx.fast``) with the pure-``mx`` math as fallback.

Each hot update (Adam/AdamW, Lion, SGD with momentum) is written **once**, as a C-like body over ``float``
scalars (:class:`Update`). Small generators wrap that body into the source ``mx.fast.metal_kernel`` expects
(:func:`metal_source`, element index from ``thread_position_in_grid``) and the one ``mx.fast.cuda_kernel``
expects (:func:`cuda_source`, index from ``cooperative_groups``). The tests compile both generated sources with
``g++`` (behind a small shim reproducing MLX's generated signatures) and compare them with the optimizers'
pure-``mx`` math; the GPU kernels themselves cannot run on the Linux CPU machines this project is tested on.

Inside a generated kernel:

* the parameter ``p`` (dtype ``T``, bf16/fp16/fp32) and the gradient ``g`` are read as ``float``; the state
  arrays (dtype ``S``, float32 unless ``state_dtype`` says otherwise) likewise; the body updates ``p`` and the
  states in place and the wrapper stores them back (``T`` / ``S``);
* the per-step scalars (learning rate, betas, bias corrections, ...) are **0-d float32 array inputs**, so a new
  learning rate or step count never recompiles the kernel;
* structural options (weight-decay mode, AMSGrad, Nesterov) and the dtypes are template arguments: one
  instantiation per optimizer configuration, built once.

Dispatch: the optimizers' ``update_single`` call :func:`adam`, :func:`lion` or :func:`sgd_momentum` first; these
return ``None`` (and the pure-``mx`` math runs) unless :func:`backend` finds Metal or CUDA *and* the default device
is the GPU, the configuration is element-wise (no cautious mask / AdaNorm, momentum > 0 for SGD) and the dtypes
are floating point of at most 32 bits. On the CPU the pure-``mx`` path under ``mx.compile`` is the fast path: MLX
fuses a leaf's Adam/AdamW or SGD-momentum update into one loop compiled with ``g++`` (``tests/test_kernels.py``
checks this, and lists as strict xfails where it does not yet: AMSGrad, Lion, bf16 Adam with L2 decay).
The kernel call is an ordinary (opaque) MLX primitive, so the fused path also works inside ``mx.compile``.

Set ``MLX_OPTIM_KERNELS=0`` in the environment (or ``mlx_optim.kernels.enabled = False``) to always use the
pure-``mx`` math.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

__all__ = [
    "ADAM",
    "LION",
    "SGD_MOMENTUM",
    "UPDATES",
    "Update",
    "adam",
    "backend",
    "clear_cache",
    "cuda_source",
    "enabled",
    "lion",
    "metal_source",
    "run",
    "sgd_momentum",
]

enabled = os.environ.get("MLX_OPTIM_KERNELS", "1") != "0"

THREADS = 256  # threads per threadgroup / block
_FLOATS = (mx.float32, mx.float16, mx.bfloat16)
METAL_HEADER = "using namespace metal;\n"


@dataclass(frozen=True)
class Update:
    """One element-wise optimizer update, written once as a C body over ``float`` scalars.

    The body reads and assigns ``p`` and the ``states``, reads ``g`` (it may reassign it) and the ``scalars``
    (``const float``), and may test the compile-time ``flags`` (``int``/``bool``). ``optional`` pairs a state
    with the flag that enables it: when the flag is off the state is a plain local ``0.0f`` and no array is
    passed. Names ``i``, ``*_in`` and ``*_out`` are reserved for the generated wrapper.
    """

    name: str
    body: str
    states: tuple[str, ...]
    scalars: tuple[str, ...]
    flags: tuple[str, ...]
    optional: tuple[tuple[str, str], ...] = ()

    def active(self, flags: dict[str, Any]) -> tuple[str, ...]:
        """The state arrays passed to the kernel for these flag values."""
        off = {s for s, f in self.optional if not flags[f]}
        return tuple(s for s in self.states if s not in off)

    def input_names(self, states: tuple[str, ...]) -> list[str]:
        return ["p_in", "g_in", *(f"{s}_in" for s in states), *(f"{c}_in" for c in self.scalars)]

    def output_names(self, states: tuple[str, ...]) -> list[str]:
        return ["p_out", *(f"{s}_out" for s in states)]


_DECAY = """\
if (WD_MODE == 1) g = g + wd * p;       // L2 penalty folded into the gradient
if (WD_MODE == 2) p = p * (1.0f - wd);  // decoupled decay; the caller passes wd = lr * weight_decay (or fixed)
"""

ADAM = Update(
    name="adam",
    body=_DECAY
    + """\
m = (m * k1 + g) * c1;
v = (v * k2 + g * g) * c2;
float v_hat = v;
if (AMSGRAD) {
  vmax = vmax > v ? vmax : v;
  v_hat = vmax;
}
p = p - (m / (sqrt(v_hat) * inv_bc2_sqrt + eps)) * step_size;
""",
    states=("m", "v", "vmax"),
    scalars=("k1", "c1", "k2", "c2", "eps", "wd", "step_size", "inv_bc2_sqrt"),
    flags=("WD_MODE", "AMSGRAD"),
    optional=(("vmax", "AMSGRAD"),),
)
"""Adam / AdamW (``mlx_optim.optimizers.adam.adam_update``): ``c = 1 - b`` (the double-precision complement),
``k = b / c``, ``step_size = lr / (1 - b1^t)``, ``inv_bc2_sqrt = 1 / sqrt(1 - b2^t)``; ``vmax`` is AMSGrad's
running maximum."""

LION = Update(
    name="lion",
    body=_DECAY
    + """\
float c = beta1 * m + c1 * g;
float u = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : 0.0f);
m = beta2 * m + c2 * g;
p = p - lr * u;
""",
    states=("m",),
    scalars=("lr", "beta1", "c1", "beta2", "c2", "wd"),
    flags=("WD_MODE",),
)
"""Lion (``mlx_optim.optimizers.lion.Lion`` without AdaNorm / cautious): ``p -= lr sign(b1 m + c1 g)``, ``c = 1 - b``
(the double-precision complement)."""

SGD_MOMENTUM = Update(
    name="sgd_momentum",
    body=_DECAY
    + """\
buf = momentum * buf + (1.0f - damp) * g;
g = NESTEROV ? g + momentum * buf : buf;
p = p - lr * g;
""",
    states=("buf",),
    scalars=("lr", "momentum", "damp", "wd"),
    flags=("WD_MODE", "NESTEROV"),
)
"""torch.optim.SGD with momentum (``mlx_optim.optimizers.sgd``); ``damp`` is 0 on the first step."""

UPDATES = (ADAM, LION, SGD_MOMENTUM)


# ---------------------------------------------------------------------------------------------- generators
def _source(u: Update, states: tuple[str, ...], index: list[str], scalar: str) -> str:
    lines = list(index)
    lines += [f"const float {c} = static_cast<float>({scalar.format(c + '_in')});" for c in u.scalars]
    lines += ["float p = static_cast<float>(p_in[i]);", "float g = static_cast<float>(g_in[i]);"]
    lines += [f"float {s} = static_cast<float>({s}_in[i]);" for s in states]
    lines += [f"float {s} = 0.0f;" for s in u.states if s not in states]
    lines += ["{", *("  " + line for line in u.body.rstrip().splitlines()), "}"]
    lines += ["p_out[i] = static_cast<T>(p);", *(f"{s}_out[i] = static_cast<S>({s});" for s in states)]
    return "\n".join(lines) + "\n"


def metal_source(u: Update, states: tuple[str, ...]) -> str:
    """The body for ``mx.fast.metal_kernel``: one thread per element (``thread_position_in_grid.x``).

    0-d inputs arrive as ``const constant float&``, arrays as pointers; the grid is exact, the bound check
    is for safety.
    """
    index = ["const uint i = thread_position_in_grid.x;", "if (i >= uint(p_in_shape[0])) return;"]
    return _source(u, states, index, "{}")


def cuda_source(u: Update, states: tuple[str, ...]) -> str:
    """The body for ``mx.fast.cuda_kernel``: one thread per element (cooperative-groups grid rank).

    Every input, 0-d ones included, arrives as a pointer; the launch rounds the grid up to whole blocks,
    so the bound check matters.
    """
    index = [
        "const auto i = cg::this_grid().thread_rank();",
        "if (i >= static_cast<unsigned long long>(p_in_shape[0])) return;",
    ]
    return _source(u, states, index, "{}[0]")


# ---------------------------------------------------------------------------------------------- dispatch
def backend() -> str | None:
    """``"metal"`` or ``"cuda"`` when a GPU backend is available and the default device is the GPU, else None."""
    if not enabled or mx.default_device() != mx.gpu:
        return None
    if mx.metal.is_available():
        return "metal"
    if mx.cuda.is_available():
        return "cuda"
    return None


_KERNELS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def clear_cache() -> None:
    """Forget the built kernel objects (tests that swap ``mx.fast`` use this)."""
    _KERNELS.clear()


def _kernel(where: str, u: Update, states: tuple[str, ...]) -> Any:
    """The kernel object for ``u`` with these state arrays, built once per process."""
    key = (where, u.name, states)
    if key not in _KERNELS:
        name = "_".join(("mlx_optim", u.name, *states))
        ins, outs = u.input_names(states), u.output_names(states)
        if where == "metal":
            k = mx.fast.metal_kernel(
                name=name, input_names=ins, output_names=outs, source=metal_source(u, states), header=METAL_HEADER
            )
        else:
            k = mx.fast.cuda_kernel(name=name, input_names=ins, output_names=outs, source=cuda_source(u, states))
        _KERNELS[key] = k
    return _KERNELS[key]


def _scalar(x: Any) -> mx.array:
    if isinstance(x, mx.array) and x.ndim == 0:
        return x if x.dtype == mx.float32 else x.astype(mx.float32)
    return mx.array(x, mx.float32).reshape(())


def run(
    u: Update,
    p: mx.array,
    g: mx.array,
    states: dict[str, mx.array],
    scalars: dict[str, Any],
    flags: dict[str, int | bool],
) -> tuple[mx.array, dict[str, mx.array]] | None:
    """Apply ``u`` with the GPU kernel; ``None`` when there is no GPU backend or the inputs do not fit it.

    ``states`` maps the active state names (:meth:`Update.active`) to arrays of one dtype; ``scalars`` maps
    every name in ``u.scalars`` to a 0-d array (or number). Returns the new parameter (``p``'s shape and
    dtype) and the new states.
    """
    where = backend()
    if where is None:
        return None
    names = u.active(flags)
    arrays = [states[s] for s in names]
    n = p.size
    dtypes = {a.dtype for a in arrays}
    if not (0 < n < 2**31 and p.dtype in _FLOATS and g.dtype in _FLOATS and len(dtypes) == 1):
        return None
    (state_dtype,) = dtypes
    if state_dtype not in _FLOATS:
        return None
    kernel = _kernel(where, u, names)
    outs = kernel(
        inputs=[
            p.reshape(-1),
            g.reshape(-1),
            *(a.reshape(-1) for a in arrays),
            *(_scalar(scalars[c]) for c in u.scalars),
        ],
        output_shapes=[(n,)] * (1 + len(names)),
        output_dtypes=[p.dtype] + [state_dtype] * len(names),
        grid=(n, 1, 1),
        threadgroup=(THREADS, 1, 1),
        template=[("T", p.dtype), ("S", state_dtype), *((f, flags[f]) for f in u.flags)],
    )
    return outs[0].reshape(p.shape), {s: o.reshape(p.shape) for s, o in zip(names, outs[1:])}


def _decay(opt: Any, *, decouple: bool, fixed: bool = False) -> tuple[int, mx.array]:
    """``(WD_MODE, wd)`` doing what ``Optimizer.apply_weight_decay`` does for the current leaf."""
    hp = opt.hp
    if not opt.decays():
        return 0, hp.weight_decay
    if not decouple:
        return 1, hp.weight_decay
    return 2, hp.weight_decay if fixed else hp.weight_decay * hp.lr


# ---------------------------------------------------------------------------------------------- per optimizer
def adam(opt: Any, g: mx.array, p: mx.array, state: dict, step_size: mx.array, inv_bc2_sqrt: mx.array):
    """``Adam.update_single`` (AdamW included) as one kernel; the new parameter, or ``None``."""
    if backend() is None:
        return None
    hp = opt.hp
    mode, wd = _decay(opt, decouple=opt.decoupled_weight_decay)
    states = {"m": state["exp_avg"], "v": state["exp_avg_sq"]}
    if opt.amsgrad:
        states["vmax"] = state["max_exp_avg_sq"]
    scalars = dict(k1=hp.k1, c1=hp.one_minus_beta1, k2=hp.k2, c2=hp.one_minus_beta2, eps=hp.eps, wd=wd)
    scalars["step_size"] = step_size
    scalars["inv_bc2_sqrt"] = inv_bc2_sqrt
    out = run(ADAM, p, g, states, scalars, {"WD_MODE": mode, "AMSGRAD": bool(opt.amsgrad)})
    if out is None:
        return None
    p, new = out
    state["exp_avg"], state["exp_avg_sq"] = new["m"], new["v"]
    if opt.amsgrad:
        state["max_exp_avg_sq"] = new["vmax"]
    return p


def lion(opt: Any, g: mx.array, p: mx.array, state: dict):
    """``Lion.update_single`` as one kernel (not with ``adanorm`` / ``cautious``); the new parameter, or ``None``."""
    if backend() is None or opt.adanorm or opt.cautious:
        return None
    hp = opt.hp
    if opt.use_gc:
        g = opt.apply_gc(g)
    mode, wd = _decay(opt, decouple=opt.weight_decouple, fixed=opt.fixed_decay)
    scalars = dict(lr=hp.lr, beta1=hp.beta1, c1=hp.one_minus_beta1, beta2=hp.beta2, c2=hp.one_minus_beta2, wd=wd)
    out = run(LION, p, g, {"m": state["exp_avg"]}, scalars, {"WD_MODE": mode})
    if out is None:
        return None
    p, new = out
    state["exp_avg"] = new["m"]
    return p


def sgd_momentum(opt: Any, g: mx.array, p: mx.array, state: dict):
    """``SGD.update_single`` with momentum as one kernel; ``None`` without momentum (nothing to fuse) or GPU."""
    if backend() is None or not opt.use_momentum:
        return None
    hp = opt.hp
    mode, wd = _decay(opt, decouple=False)
    scalars = dict(lr=hp.lr, momentum=hp.momentum, damp=hp.damp, wd=wd)
    out = run(
        SGD_MOMENTUM, p, g, {"buf": state["momentum_buffer"]}, scalars, {"WD_MODE": mode, "NESTEROV": opt.nesterov}
    )
    if out is None:
        return None
    p, new = out
    state["momentum_buffer"] = new["buf"]
    return p
