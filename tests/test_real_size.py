"""Every registered optimizer at real layer sizes: two steps on a 2048x2048 matrix, a 4096x512 matrix and a
2048-vector (a transformer layer's projection, an embedding-like tall matrix, a bias).

Small parity shapes do not reach the failures that real sizes do: MLX's einsum path search overflowing at
2048-wide factors (Kron crashed the process), LAPACK workspace sizes rounded in float32 (``eigh`` from
n = 2895: SOAP, SPlus; with the reference LAPACK the process just exits). So each optimizer runs in its own
process, forked from a server that has imported everything once: a crash, a silent exit or a hang is that
optimizer's failure, reported with its name, and the parameters must be finite after the two steps.

Each optimizer is built as in tests/test_contract.py (the keywords of its first parity row) and driven through
``step_with`` with :func:`mlx_optim.value_and_grad` (loss-driven, Hessian and closure optimizers alike);
wrappers wrap AdamW. The steps run unfused (``fuse_updates = False``, as the rest of the suite does): the fused
path is compiled, and its kernels would be built with g++ once per optimizer. Two processes run at a time.

The classes in ``HEAVY`` (O(n^3) matrix work every step: minutes per optimizer at full size on the reference
BLAS of MLX's Linux wheel) run on ``REDUCED_SHAPES`` unless ``MLX_OPTIM_REAL_SIZE=full`` or what makes them
affordable is here (``FULL_SIZE_IF``: the native bfloat16 Newton-Schulz loop, a fast BLAS); each says why. The
tests carry the ``real_size`` marker: ``-m "not real_size"`` leaves them out of a local run (CI runs them).

``python -m tests.test_real_size [names...]`` runs the sweep outside pytest and prints each optimizer's time.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.connection
import os
import resource
import sys
import time
import traceback

# The sweep's forkserver is a fresh interpreter that imports this module first: as conftest.py does for the test
# process, MLX gets the BLAS users get (OpenBLAS where there is one), which needs mlx_optim imported before mlx.core.
# (Before this, every child ran on the reference BLAS of MLX's wheel: SpectralSphere's two reduced steps took 183 s
# there against 8 s in the test process.)
os.environ.setdefault("MLX_OPTIM_BLAS", "auto")
import mlx_optim  # noqa: E402, I001  (isort: skip)

import mlx.core as mx  # noqa: E402
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from tests.test_contract import KWARGS, NAMES, train

SHAPES = {"square": (2048, 2048), "tall": (4096, 512), "vector": (2048,)}
BATCH = 4
PARALLEL = 2
TIMEOUT = 1800.0  # seconds of wall time per optimizer before it counts as hung

# Classes whose steps do O(n^3) matrix work at every step. On the reference BLAS/LAPACK that MLX's Linux wheel
# bundles (one core; 2 to 5 GFLOP/s measured for a 2048-wide float32 matmul) two full-size steps cost minutes each, so
# the default run (CI) gives them REDUCED_SHAPES; MLX_OPTIM_REAL_SIZE=full runs them at full size too. The failure
# modes these classes had at full size are also held by cheap targeted tests (tests/test_linalg.py: no
# multi-operand einsum, LAPACK workspaces in float64 past 2^24).
REDUCED_SHAPES = {"square": (512, 512), "tall": (1024, 128), "vector": (512,)}
_NEWTON_SCHULZ = "Newton-Schulz: 5 iterations of three 2048-wide matmuls per step (~280 GFLOP a step)"
HEAVY = {
    **dict.fromkeys(
        [
            "muon",
            "muon_e",
            "distributedmuon",
            "distributedmuon_e",
            "adamuon",
            "adamuon_e",
            "adago",
            "adago_e",
            "normuon",
            "muonclip",
            "scion",
            "scionlight",
            "spectralsphere",
        ],
        _NEWTON_SCHULZ,
    ),
    "shampoo": "an SVD per dimension per step: 2048 twice, 4096 (in float64) and 512",
    "soap": "eigh per factor on the first step (QR refreshes later): 4096 in float64 alone takes ~200 s of CPU on "
    "the reference LAPACK",
    "soap_e": "SOAP's cost (see soap)",
    "splus": "eigh per side on the first step (and every inverse_steps): 2048 twice, 4096 in float64, 512",
    "kron": "4096-wide triangular solves and 4096^3 factor products per step (~230 GFLOP a step)",
    "dash": "coupled Newton inverse roots of 1024-wide blocks per factor per step",
    "galore": "a full SVD of each matrix gradient per step (the refresh is selected with mx.where)",
    "fira": "GaLore's SVD per step (see galore)",
    "conda": "an SVD of each matrix's momentum per step",
    "conda_e": "Conda's SVD per step (see conda)",
    "lbfgs": "up to 20 loss evaluations and two-loop recursions over 6.3M parameters per step (76 s of CPU)",
    "alice": "G G^T of each matrix and the complete-QR basis switch every step (36 s of CPU at full size)",
}
# DASH's coupled-Newton roots of every block factor cost 11 s of CPU for two steps on one 512x512 matrix alone.
SMALL_SHAPES = {"square": (256, 256), "tall": (512, 64), "vector": (256,)}
HEAVY_SHAPES = {"dash": SMALL_SHAPES}

# Wrappers take an inner optimizer by name: AdamW at its usual learning rate.
INNER_KEYS = ("optimizer", "base_optimizer")


class RealSizeNet(nn.Module):
    """``x (B, 2048) -> silu(x W + b) (B, 2048) -> rows of 512 times T^T (B, 4 * 4096)``: every parameter gets a
    dense gradient.

    SiLU, not tanh: MLX differentiates tanh as ``1 / cosh(x)^2``, whose own derivative is NaN once ``cosh(x)^2``
    overflows (``|x| > ~44``), so a Hessian-vector product through a saturated tanh unit is NaN (AdaHessian's
    first step, like the reference's, moves the weights by thousands and saturates every unit).
    """

    def __init__(self, shapes: dict = SHAPES):
        super().__init__()
        sq, tall, vec = shapes["square"], shapes["tall"], shapes["vector"]
        self.square = mx.random.uniform(-1.0, 1.0, sq) / math.sqrt(sq[0])
        self.tall = mx.random.uniform(-1.0, 1.0, tall) / math.sqrt(tall[1])
        self.vector = mx.random.uniform(-0.1, 0.1, vec)
        self.width = tall[1]

    def __call__(self, x):
        h = nn.silu(x @ self.square + self.vector)
        return (h.reshape(-1, self.width) @ self.tall.T).reshape(x.shape[0], -1)


def real_size_kwargs(name: str) -> dict:
    kwargs = dict(KWARGS[name])
    if any(k in kwargs for k in INNER_KEYS):
        kwargs.update({k: "adamw" for k in INNER_KEYS if k in kwargs}, learning_rate=1e-3)
        kwargs.pop("optimizer_kwargs", None)  # they were the row's inner optimizer's (e.g. SGD's momentum)
    return kwargs


def batches(n: int, shapes: dict = SHAPES):
    rng = np.random.default_rng(0)
    width_out = shapes["square"][1] // shapes["tall"][1] * shapes["tall"][0]
    for _ in range(n):
        x = rng.normal(size=(BATCH, shapes["square"][0])).astype(np.float32)
        y = rng.normal(scale=0.1, size=(BATCH, width_out)).astype(np.float32)
        yield mx.array(x), mx.array(y)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(name: str, shapes: dict = SHAPES) -> dict:
    """Two steps of ``name`` on the real-size model; what happened, and how long the steps took."""
    mx.random.seed(0)
    model = RealSizeNet(shapes)
    mx.eval(model.parameters())
    opt = mlx_optim.load_optimizer(name)(**real_size_kwargs(name))
    opt.fuse_updates = False
    wall, cpu = time.perf_counter(), _cpu_seconds()
    losses = train(model, opt, batches(2, shapes))
    out = {"wall": time.perf_counter() - wall, "cpu": _cpu_seconds() - cpu}
    bad = [k for k, v in tree_flatten(model.parameters()) if not bool(mx.all(mx.isfinite(v)))]
    if bad or not all(math.isfinite(v) for v in losses):
        out["error"] = f"not finite after two steps: parameters {bad}, losses {losses}"
    return out


# HEAVY classes that run at full size in the default run too when what makes them affordable is here (times: two
# full-size steps, MLX_OPTIM_REAL_SIZE=full, one run each, session 7):
# - "native": the Newton-Schulz classes whose bfloat16 loop runs natively (native.bf16_fast: MKL): 1.0-1.5 s each,
#   which takes the loop's blocked symmetric products (4 blocks at 2048) and its tall transpose through real sizes.
#   SpectralSphere stays reduced: 111 msign evaluations a step took 46 s for the two full-size steps on the native
#   loop (AMX, session 8; 299 s before, when its CPU iterations were float32).
# - "blas": MLX runs on OpenBLAS (or another library mlx_optim.blas loaded): Kron 7.1 s, GaLore 6.1, Fira 6.1,
#   Conda 7.1, Conda_e 6.3, Alice 0.8. The others stay reduced there too: SOAP 19 s, SOAP_e 23, SPlus 20, DASH 16,
#   Shampoo 201, SpectralSphere and L-BFGS longer.
FULL_SIZE_IF = {
    **{name: "native" for name, why in HEAVY.items() if why == _NEWTON_SCHULZ and name != "spectralsphere"},
    **dict.fromkeys(["kron", "galore", "fira", "conda", "conda_e", "alice"], "blas"),
}


def _affordable(name: str) -> bool:
    """Whether FULL_SIZE_IF's condition for ``name`` holds in this (child) process."""
    from mlx_optim import blas, native  # noqa: PLC0415 (in the child: it may load MKL)

    need = FULL_SIZE_IF.get(name)
    if need == "native":
        return native.bf16_fast()
    return need == "blas" and blas.loaded_library() is not None


def shapes_for(name: str) -> dict:
    """The tree ``name`` is run on: full size, or REDUCED_SHAPES for a HEAVY class unless MLX_OPTIM_REAL_SIZE=full
    or what makes it affordable is here (FULL_SIZE_IF)."""
    if name not in HEAVY or os.environ.get("MLX_OPTIM_REAL_SIZE") == "full" or _affordable(name):
        return SHAPES
    return HEAVY_SHAPES.get(name, REDUCED_SHAPES)


def _child(name: str, conn) -> None:
    try:
        result = run_one(name, shapes_for(name))
    except BaseException:  # noqa: BLE001  (everything is reported to the parent, which fails the test)
        result = {"error": traceback.format_exc(limit=6)}
    conn.send(result)
    conn.close()


class Sweep:
    """Runs ``_child`` for each name in its own forked process, ``parallel`` at a time, in order."""

    def __init__(self, names: list[str], parallel: int = PARALLEL, timeout: float = TIMEOUT):
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload([__name__])
        self.pending = list(names)
        self.parallel, self.timeout = parallel, timeout
        self.running: dict[str, tuple] = {}
        self.results: dict[str, dict] = {}

    def _start(self) -> None:
        while self.pending and len(self.running) < self.parallel:
            name = self.pending.pop(0)
            recv, send = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(target=_child, args=(name, send), name=f"real-size-{name}")
            proc.start()
            send.close()
            self.running[name] = (proc, recv, time.perf_counter())

    def _collect(self) -> None:
        sentinels = {proc.sentinel: name for name, (proc, _, _) in self.running.items()}
        mp.connection.wait(list(sentinels), timeout=1.0)
        for name, (proc, recv, start) in list(self.running.items()):
            elapsed = time.perf_counter() - start
            if proc.is_alive() and elapsed < self.timeout:
                continue
            if proc.is_alive():
                proc.kill()
                proc.join()
                result = {"error": f"still running after {self.timeout:.0f} s (hung or far too slow)"}
            elif recv.poll():
                result = recv.recv()
            else:
                result = {"error": f"the process ended without a result (exit code {proc.exitcode}: a crash)"}
            result["process_wall"] = elapsed
            recv.close()
            proc.join()
            del self.running[name]
            self.results[name] = result

    def result(self, name: str) -> dict:
        if name in self.pending:  # asked for out of order: it goes next
            self.pending.remove(name)
            self.pending.insert(0, name)
        while name not in self.results:
            self._start()
            self._collect()
        return self.results[name]

    def run_all(self, report=None) -> dict:
        """Run every pending name; ``report(name, result)`` is called as each one finishes."""
        done = set(self.results)
        while self.pending or self.running:
            self._start()
            self._collect()
            for name in [n for n in self.results if n not in done]:
                done.add(name)
                if report is not None:
                    report(name, self.results[name])
        return self.results


@pytest.fixture(scope="module")
def sweep(request):
    # only the selected optimizers (-k), in collection order
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_two_steps_at_real_size"
    ]
    runner = Sweep(selected or SWEPT)
    yield runner
    for proc, _, _ in runner.running.values():  # an interrupted run leaves no optimizer running
        proc.kill()


# LoRARite updates LoRA factor pairs only and raises on a tree without one (as it should); this tree has none. Its
# real-size shapes are a LoRA adapter's (rank x 2048 factors), cheap by construction: its parity rows and the
# contract tests' LoRA model cover it.
SWEPT = [n for n in NAMES if n != "lorarite"]


@pytest.mark.real_size
@pytest.mark.xdist_group("real_size")
@pytest.mark.parametrize("name", SWEPT)
def test_two_steps_at_real_size(name, sweep):
    result = sweep.result(name)
    assert "error" not in result, f"{name} at real size: {result['error']}"


def _print_result(name: str, r: dict) -> None:
    status = "FAIL " + r["error"].strip().splitlines()[-1][:200] if "error" in r else "ok"
    steps = f"steps {r['wall']:7.1f}s wall {r['cpu']:7.1f}s cpu" if "wall" in r else ""
    print(f"{name:22s} {r['process_wall']:8.1f}s  {steps:36s} {status}", flush=True)


if __name__ == "__main__":
    from tests.test_real_size import Sweep as _Sweep  # the children unpickle _child from the module, not __main__

    start = time.perf_counter()
    results = _Sweep(sys.argv[1:] or NAMES).run_all(report=_print_result)
    print(f"total wall {time.perf_counter() - start:.1f}s for {len(results)} optimizers")
