"""Multi-process tests of ``mlx_optim.distributed``: real ``mlx.launch -n 2 --backend ring`` runs on 127.0.0.1.

One launch (module fixture, bounded by ``LAUNCH_TIMEOUT``; the whole process group is killed on
timeout) runs every scenario on 2 ranks; this file is also the worker script (``--worker``).
The 1-rank references run in the pytest process (``mx.distributed.init()`` is a one-process group
there) on the *same global batch*: each rank of the 2-rank run takes half of it and the gradients
are averaged, so the two runs differ only by float32 rounding of the gradient mean.

What is compared:

* every 2-rank run has bit-identical parameters on both ranks after every step;
* DataParallel(opt) on 2 ranks == opt on 1 rank, within ``ATOL``/``RTOL`` (``MUON_ATOL`` for the
  bfloat16 Newton–Schulz of Muon), after every step;
* ZeroRedundancyOptimizer(opt) == DataParallel(opt) on 2 ranks, bit for bit (same averaged gradients,
  same per-leaf operations), and its per-rank state is the expected share of the unsharded state;
* in-process, for every registered optimizer ZeRO accepts: updating two disjoint leaf shards with two
  optimizer instances equals the unsharded update bit for bit;
* DataParallel(DistributedMuon) == DataParallel(Muon) bit for bit and == 1-rank Muon within MUON_ATOL;
* save_sharded / load_sharded: resuming with 2 ranks continues the identical trajectory; a 2-rank
  checkpoint resumes on 1 rank and a 1-rank checkpoint on 2 ranks; a missing shard fails clearly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map_with_path

import mlx_optim as mo
from mlx_optim import distributed as md
from mlx_optim.distributed.data_parallel import apply_inner

pytestmark = pytest.mark.xdist_group("distributed")

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = Path(sys.executable).parent / "mlx.launch"
LAUNCH_TIMEOUT = 120.0  # seconds for the whole 2-rank run (it takes a few seconds)
STEPS = 6
RESUME_AT = 3
GLOBAL_BATCH = 16
# 2-rank vs 1-rank: the averaged half-batch gradients differ from the full-batch gradient by float32
# rounding; measured max |diff| over all steps: 6e-8 (AdamW, Muon), 1.9e-7 (Lamb), 0 (Lion, AdaFactor).
ATOL, RTOL = 1e-6, 1e-5
# Muon rounds its Newton–Schulz iterate to bfloat16: a gradient rounding difference can flip one bfloat16
# ulp (2^-8 relative) of an update element of size ~lr * |NS| (~1e-4 at lr 2e-2). Measured here: 3e-8 (no
# flip); the margin is for other matmul summation orders (Metal, Accelerate).
MUON_ATOL = 1e-4
# The Muon scenarios iterate in float32. In bfloat16 (the CPU default where MKL's bfloat16 GEMM runs) a one-ulp
# difference of the averaged gradient flips bfloat16 roundings of the iterate, and the iteration spreads them:
# measured 6.25e-4 after 5 steps (2-rank checkpoint resumed on 1 rank against the straight 2-rank run).
MUON_NS = "float32"


# ----------------------------------------------------------------------------- the shared problem
def make_model() -> nn.Module:
    mx.random.seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4)
    )
    mx.eval(model.parameters())
    return model


def global_batch(step: int) -> tuple[mx.array, mx.array]:
    kx, ky = mx.random.split(mx.random.key(1000 + step))
    return mx.random.normal((GLOBAL_BATCH, 8), key=kx), mx.random.normal((GLOBAL_BATCH, 4), key=ky)


def local_batch(step: int, rank: int, world: int) -> tuple[mx.array, mx.array]:
    x, y = global_batch(step)
    n = GLOBAL_BATCH // world
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def loss_fn(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    return nn.losses.mse_loss(model(x), y, reduction="mean")


OPTIMIZERS = {
    "adamw": lambda group=None: mo.AdamW(learning_rate=1e-2, weight_decay=1e-2),
    "lion": lambda group=None: mo.Lion(learning_rate=1e-3, weight_decay=1e-2),
    "adafactor": lambda group=None: mo.AdaFactor(learning_rate=1e-2),
    "lamb": lambda group=None: mo.Lamb(learning_rate=1e-2, weight_decay=1e-2),
    "lamb-prenorm": lambda group=None: mo.Lamb(learning_rate=1e-2, pre_norm=True, max_grad_norm=0.1),
    "dadaptadam": lambda group=None: mo.DAdaptAdam(learning_rate=1.0),
    "dadaptsgd": lambda group=None: mo.DAdaptSGD(learning_rate=1.0),
    "prodigy": lambda group=None: mo.Prodigy(learning_rate=1.0),
    # float32 Newton-Schulz (MUON_NS): what is compared here is the distribution, not the iteration's precision
    "muon": lambda group=None: mo.Muon(learning_rate=2e-2, adamw_lr=1e-2, ns_dtype=MUON_NS),
    "distributedmuon": lambda group=None: mo.DistributedMuon(
        learning_rate=2e-2, adamw_lr=1e-2, group=group, ns_dtype=MUON_NS
    ),
}
# scenario -> (optimizer, wrapper); "zero-compiled" runs the ZeRO step inside mx.compile
SCENARIOS = {
    "adamw-dp": ("adamw", "dp"),
    "adamw-zero": ("adamw", "zero"),
    "adamw-zero-compiled": ("adamw", "zero-compiled"),
    "lion-dp": ("lion", "dp"),
    "lion-zero": ("lion", "zero"),
    "adafactor-dp": ("adafactor", "dp"),
    "adafactor-zero": ("adafactor", "zero"),
    "lamb-dp": ("lamb", "dp"),
    "lamb-prenorm-dp": ("lamb-prenorm", "dp"),
    "lamb-prenorm-zero": ("lamb-prenorm", "zero"),  # global grad norm: partial sums all_summed (global_sum)
    "dadaptadam-dp": ("dadaptadam", "dp"),
    "dadaptadam-zero": ("dadaptadam", "zero"),  # D-Adaptation's sums over all leaves, through global_sum
    "dadaptsgd-zero": ("dadaptsgd", "zero"),
    "prodigy-zero": ("prodigy", "zero"),
    "muon-dp": ("muon", "dp"),
    "muon-zero": ("muon", "zero"),
    "distributedmuon-dp": ("distributedmuon", "dp"),
}
REFERENCE_OF = {"distributedmuon": "muon"}


def wrap(mode: str, opt, group):
    if mode == "plain":
        return opt
    if mode == "dp":
        return md.DataParallel(opt, group)
    return md.ZeroRedundancyOptimizer(opt, group)


def snapshot(model: nn.Module, step: int, out: dict) -> None:
    for k, v in tree_flatten(model.parameters()):
        out[f"{step}/{k}"] = v


def train(name: str, mode: str, group, *, model=None, opt=None, start: int = 0, steps: int = STEPS):
    """Run ``steps`` steps from ``start``; returns ``(model, opt, {"step/path": params after that step})``."""
    rank, world = group.rank(), group.size()
    model = model if model is not None else make_model()
    opt = opt if opt is not None else wrap(mode.replace("-compiled", ""), OPTIMIZERS[name](group), group)
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    if mode.endswith("-compiled"):
        opt.init(model.trainable_parameters())
        state = [model.state, opt.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step_fn(x, y):
            loss, grads = loss_and_grad(model, x, y)
            opt.update(model, grads, loss=loss)
            return loss
    else:

        def step_fn(x, y):
            return opt.step_with(model, loss_and_grad, x, y)

    traj: dict[str, mx.array] = {}
    for t in range(start, start + steps):
        loss = step_fn(*local_batch(t, rank, world))
        mx.eval(loss, model.parameters(), opt.state)
        snapshot(model, t, traj)
    return model, opt, traj


def state_bytes(opt) -> int:
    """Bytes of the per-leaf optimizer state (arrays with ndim > 0) on this rank."""
    return sum(v.nbytes for _, v in tree_flatten(opt.state) if isinstance(v, mx.array) and v.ndim > 0)


def zero_supported_names() -> list[str]:
    return [n for n in mo.get_supported_optimizers() if _sweep_instance(n) is not None]


# Keywords without which the default instance cannot update the test MLP (SpectralSphere takes 2-D leaves only).
NEEDED_KWARGS = {"spectralsphere": {"spectral_filter": lambda path, p: p.ndim == 2}}


def _sweep_instance(name: str):
    """A default instance of ``name`` when ZeroRedundancyOptimizer accepts it, else None."""
    try:
        opt = mo.load_optimizer(name)(**NEEDED_KWARGS.get(name, {}))
    except TypeError:  # needs a required argument (wrappers): not an element-wise optimizer anyway
        return None
    return opt if md.zero_unsupported_reason(opt) is None else None


def checkpoint(name: str, mode: str, group, directory: Path):
    """Train RESUME_AT steps, save (model on rank 0 + sharded optimizer); return the model."""
    model, opt, _ = train(name, mode, group, steps=RESUME_AT)
    md.save_sharded(opt, directory)
    if group.rank() == 0:
        model.save_weights(str(directory / "model.safetensors"))
    md.barrier(group)
    return model


def resume(name: str, mode: str, group, directory: Path):
    """Fresh model and optimizer loaded from ``directory``, then the remaining steps."""
    model = make_model()
    model.load_weights(str(directory / "model.safetensors"))
    opt = wrap(mode, OPTIMIZERS[name](group), group)
    md.load_sharded(opt, directory, model)
    return train(name, mode, group, model=model, opt=opt, start=RESUME_AT, steps=STEPS - RESUME_AT)


# ----------------------------------------------------------------------------- the worker (each rank)
def worker(out: Path) -> None:
    group = mx.distributed.init(backend="ring", strict=True)
    rank, world = group.rank(), group.size()
    assert world == 2, world
    summary: dict = {"rank": rank, "world": world, "bytes": {}}

    def save(key: str, arrays: dict) -> None:
        mx.save_safetensors(str(out / f"{key}.rank{rank}.safetensors"), arrays)

    for scenario, (name, mode) in SCENARIOS.items():
        _, opt, traj = train(name, mode, group)
        save(scenario, traj)
        summary["bytes"][scenario] = state_bytes(opt)

    # checkpoints: same world size (2 -> 2), written here; 1 -> 2 from the pytest process's checkpoint
    for key, (name, mode) in {"ckpt-zero": ("adamw", "zero"), "ckpt-dmuon": ("distributedmuon", "dp")}.items():
        directory = out / key
        checkpoint(name, mode, group, directory)
        _, _, traj = resume(name, mode, group, directory)
        save(f"{key}-resumed", traj)
    _, _, traj = resume("adamw", "zero", group, out / "ckpt-w1")
    save("ckpt-w1-resumed", traj)

    (out / f"done.rank{rank}.json").write_text(json.dumps(summary))


# ----------------------------------------------------------------------------- launching
def _free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (the ring backend listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 1 > 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports on 127.0.0.1")


def launch(out: Path, timeout: float = LAUNCH_TIMEOUT) -> tuple[float, str]:
    """``mlx.launch -n 2 --backend ring`` this file as the worker; the process group is killed on timeout."""
    cmd = [
        str(LAUNCH), "-n", "2", "--backend", "ring", "--hosts", "127.0.0.1",
        "-p", str(_free_port_pair()), "--python", sys.executable,
        str(Path(__file__).resolve()), "--worker", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # The ranks import mlx.core before mlx_optim (this file), so mlx_optim.blas cannot load OpenBLAS there: preload
    # the library this process's MLX calls, or the 2-rank runs round differently from the 1-rank references.
    lib = mo.blas.resolved().get("cblas_sgemm")
    if lib and "mlx_cpu.libs" not in lib and "libmlx" not in lib:
        env["LD_PRELOAD"] = lib
    start = time.monotonic()
    # stdin is a pipe kept open: mlx.launch forwards stdin and would spin on an always-readable /dev/null
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks share its new session
        output, _ = proc.communicate()
        pytest.fail(f"mlx.launch did not finish in {timeout} s; output:\n{output.decode(errors='replace')[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.monotonic() - start, output.decode(errors="replace")


def load_traj(out: Path, key: str, rank: int) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(out / f"{key}.rank{rank}.safetensors")).items()}


def as_numpy(traj: dict) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in traj.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    # the 1-rank checkpoint the 2-rank run resumes from (1 -> 2 re-sharding)
    single = mx.distributed.init()
    assert single.size() == 1
    checkpoint("adamw", "zero", single, out / "ckpt-w1")
    seconds, output = launch(out)
    # mlx.launch exits 0 even when a rank fails: the per-rank summaries are the proof of completion
    summaries = []
    for rank in range(2):
        done = out / f"done.rank{rank}.json"
        assert done.exists(), f"rank {rank} did not finish; launcher output:\n{output[-4000:]}"
        summaries.append(json.loads(done.read_text()))
    return {"out": out, "seconds": seconds, "summaries": summaries, "single": single}


def references() -> dict[str, dict[str, np.ndarray]]:
    if not hasattr(references, "cache"):
        single = mx.distributed.init()
        refs = {}
        for name in {n for n, _ in SCENARIOS.values()}:
            ref_name = REFERENCE_OF.get(name, name)
            if ref_name not in refs:
                refs[ref_name] = as_numpy(train(ref_name, "plain", single)[2])
        references.cache = refs
    return references.cache


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def assert_close(got: dict, want: dict, atol: float, rtol: float, what: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=rtol, err_msg=f"{what}: {k}")


# ----------------------------------------------------------------------------- the tests
def test_launch_is_fast_and_ranks_agree(run):
    assert run["seconds"] < LAUNCH_TIMEOUT
    out = run["out"]
    keys = [*SCENARIOS, "ckpt-zero-resumed", "ckpt-dmuon-resumed", "ckpt-w1-resumed"]
    for key in keys:
        a, b = load_traj(out, key, 0), load_traj(out, key, 1)
        assert max_diff(a, b) == 0.0, f"{key}: ranks disagree"


@pytest.mark.parametrize("scenario", [s for s, (_, m) in SCENARIOS.items()])
def test_two_ranks_match_one_rank(run, scenario):
    name, _ = SCENARIOS[scenario]
    want = references()[REFERENCE_OF.get(name, name)]
    got = load_traj(run["out"], scenario, 0)
    atol = MUON_ATOL if "muon" in name else ATOL
    assert_close(got, want, atol, RTOL, scenario)


@pytest.mark.parametrize(
    "zero,dp",
    [("adamw-zero", "adamw-dp"), ("lion-zero", "lion-dp"), ("adafactor-zero", "adafactor-dp"),
     ("muon-zero", "muon-dp"), ("distributedmuon-dp", "muon-dp")],
)  # fmt: skip
def test_sharded_equals_replicated_exactly(run, zero, dp):
    out = run["out"]
    assert max_diff(load_traj(out, zero, 0), load_traj(out, dp, 0)) == 0.0


def test_zero_state_is_sharded(run):
    bytes0, bytes1 = (s["bytes"] for s in run["summaries"])
    for scenario in ("adamw-zero", "lion-zero", "adafactor-zero", "muon-zero"):
        full = bytes0[scenario.replace("-zero", "-dp")]
        assert bytes1[scenario.replace("-zero", "-dp")] == full
        # every leaf's state lives on exactly one rank, split about evenly (largest leaf 1024 of 1940 elements)
        assert bytes0[scenario] + bytes1[scenario] == full, scenario
        assert max(bytes0[scenario], bytes1[scenario]) <= 0.55 * full, scenario
    # DistributedMuon keeps the momentum of its own matrices only (AdamW state is replicated)
    dmuon, muon = bytes0["distributedmuon-dp"] + bytes1["distributedmuon-dp"], bytes0["muon-dp"]
    matrices = sum(p.nbytes for k, p in tree_flatten(make_model().parameters()) if p.ndim == 2)
    assert dmuon == 2 * muon - matrices


# Optimizers whose cross-leaf sums go through global_sum need the all_sum to be exact: the 2-rank runs check them.
@pytest.mark.parametrize(
    "name", [n for n in zero_supported_names() if mo.load_optimizer(n).zero_compatible is not True]
)
def test_leaf_sharded_update_is_exact(name):
    """For every optimizer ZeroRedundancyOptimizer accepts: updating the leaves in two disjoint shards (flat
    dicts keyed by path, one optimizer instance per shard, as each rank does) gives bit for bit the
    unsharded update. The communication around it is checked by the 2-rank runs above."""
    cls, kw = mo.load_optimizer(name), NEEDED_KWARGS.get(name, {})
    whole, sharded = make_model(), make_model()
    full_opt, shard_opts = cls(**kw), [cls(**kw), cls(**kw)]
    owners = md.balanced_assignment([p.size for _, p in tree_flatten(whole.parameters())], 2)
    lg = nn.value_and_grad(whole, loss_fn)
    lg_sharded = nn.value_and_grad(sharded, loss_fn)
    for t in range(3):
        x, y = global_batch(t)
        full_opt.step_with(whole, lg, x, y)
        loss, grads = lg_sharded(sharded, x, y)
        flat_g, params = tree_flatten(grads), dict(tree_flatten(sharded.parameters()))
        new = {}
        for r, opt in enumerate(shard_opts):
            mine = {k: g for (k, g), o in zip(flat_g, owners) if o == r}
            new.update(apply_inner(opt, mine, {k: params[k] for k in mine}, loss))
        sharded.update(tree_map_with_path(lambda path, _, new=new: new[path], grads))
        mx.eval(whole.parameters(), sharded.parameters(), full_opt.state, [o.state for o in shard_opts])
        a, b = as_numpy(dict(tree_flatten(whole.parameters()))), as_numpy(dict(tree_flatten(sharded.parameters())))
        assert max_diff(a, b) == 0.0, f"step {t}"
    # each leaf's state lives in exactly one shard
    assert state_bytes(shard_opts[0]) + state_bytes(shard_opts[1]) == state_bytes(full_opt)


def test_zero_refuses_cross_leaf_optimizers():
    single = mx.distributed.init()
    for opt in (mo.AdaGC(), mo.AvaGrad(), mo.LBFGS(), mo.Kron(), mo.DistributedMuon(), mo.SAM(mo.AdamW())):
        with pytest.raises(ValueError, match="cannot shard this optimizer's state"):
            md.ZeroRedundancyOptimizer(opt, single)
    with pytest.raises(ValueError, match="rounding_key"):
        md.ZeroRedundancyOptimizer(mo.AdamW(state_dtype=mx.bfloat16), single)
    with pytest.raises(ValueError, match="already a distributed wrapper"):
        md.ZeroRedundancyOptimizer(md.DataParallel(mo.AdamW(), single), single)


def test_resume_same_world_size_is_exact(run):
    out = run["out"]
    for key, scenario in (("ckpt-zero", "adamw-zero"), ("ckpt-dmuon", "distributedmuon-dp")):
        resumed, straight = load_traj(out, f"{key}-resumed", 0), load_traj(out, scenario, 0)
        assert resumed.keys() <= straight.keys() and len(resumed) == len(straight) // STEPS * (STEPS - RESUME_AT)
        assert max_diff(resumed, {k: straight[k] for k in resumed}) == 0.0, key
        assert max_diff(resumed, load_traj(out, f"{key}-resumed", 1)) == 0.0, key
        files = sorted(p.name for p in (out / key).glob("optimizer.*"))
        assert files == [md.shard_filename(0, 2), md.shard_filename(1, 2)]


def test_resume_one_rank_checkpoint_on_two_ranks(run):
    got = load_traj(run["out"], "ckpt-w1-resumed", 0)
    want = {k: v for k, v in references()["adamw"].items() if k in got}
    assert len(got) == len(want) > 0
    assert_close(got, want, ATOL, RTOL, "1 -> 2 ranks")


def test_resume_two_rank_checkpoint_on_one_rank(run):
    out, single = run["out"], run["single"]
    for key, name, mode, scenario in (
        ("ckpt-zero", "adamw", "zero", "adamw-zero"),
        ("ckpt-dmuon", "distributedmuon", "dp", "distributedmuon-dp"),
    ):
        _, _, traj = resume(name, mode, single, out / key)
        got, straight = as_numpy(traj), load_traj(out, scenario, 0)
        assert_close(got, {k: straight[k] for k in got}, MUON_ATOL if "muon" in name else ATOL, RTOL, key)
    # the same 2-rank DistributedMuon shards also load into plain Muon (strict=False: another class)
    opt = mo.Muon(learning_rate=2e-2, adamw_lr=1e-2, ns_dtype=MUON_NS)
    with pytest.raises(ValueError, match="holds DistributedMuon state"):
        md.load_sharded(opt, out / "ckpt-dmuon", make_model())
    md.load_sharded(opt, out / "ckpt-dmuon", make_model(), strict=False)


def test_missing_shard_fails_clearly(run, tmp_path):
    shutil.copy(run["out"] / "ckpt-zero" / md.shard_filename(0, 2), tmp_path)
    opt = md.ZeroRedundancyOptimizer(mo.AdamW(learning_rate=1e-2, weight_decay=1e-2), run["single"])
    with pytest.raises(ValueError, match=r"written by 2 ranks and this run has 1.*missing.*rank-00001-of-00002"):
        md.load_sharded(opt, tmp_path, make_model())
    with pytest.raises(FileNotFoundError, match="no optimizer shards"):
        md.load_sharded(opt, tmp_path / "nothing", make_model())


def test_data_parallel_single_process_is_the_optimizer():
    single = mx.distributed.init()
    a = as_numpy(train("adamw", "dp", single)[2])
    b = as_numpy(train("adamw", "zero", single)[2])
    assert max_diff(a, references()["adamw"]) == 0.0 and max_diff(b, a) == 0.0


def test_balanced_assignment():
    assert md.balanced_assignment([10, 1, 7, 3, 3], 2) == [0, 1, 1, 1, 0]
    assert md.balanced_assignment([4, 4, 4, 4], 4) == [0, 1, 2, 3]
    assert md.balanced_assignment([5], 3) == [0]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(Path(sys.argv[2]))
