"""``mlx-optim check`` and the stored goldens (``mlx_optim/data/goldens.npz``), on a handful of rows.

The full check (every row, eager and compiled) is what users run on their devices; here: the command runs
without PyTorch importable and passes on this CPU for a few rows of different programs, a corrupted golden makes
it fail (exit 1, FAIL in the table and the report), ``--device gpu`` without a GPU exits 2 with one line, the
kernel section runs (mocked backend) and catches a wrong kernel, the native section passes here and catches a
wrong native path, and the drift check of ``tests/parity`` notices a changed reference or row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_optim import kernels
from mlx_optim.check import encode, goldens, runner
from mlx_optim.check import native as native_checks
from tests.fake_kernels import FakeKernels, mock_gpu

ROOT = Path(__file__).resolve().parents[1]
# one row per kind of program: standard (a reference factory), SAM, L-BFGS (float64), statistics, masks, tasks
FEW = "adamw-ams,sam-gc,lbfgs-rosenbrock-wolfe-f64,sophiag-stats-gnb,spam-masks,pcgrad-partial-mean"
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['pytorch_optimizer'] = None; "


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    code = NO_TORCH + f"from mlx_optim.cli import main; raise SystemExit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_check_passes_without_torch(tmp_path):
    report = tmp_path / "report.json"
    done = _cli(["check", "--only", FEW, "--json", str(report)], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["device"] == "cpu" and data["mlx"] == mx.__version__ and data["platform"] and data["device_info"]
    parity = [r for r in data["results"] if r["section"] == "parity"]
    assert sorted({r["name"] for r in parity}) == sorted(FEW.split(","))
    assert {r["mode"] for r in parity} == {"eager", "compiled"} and all(r["verdict"] == "pass" for r in parity)
    contract = {(r["name"], r["mode"]): r["verdict"] for r in data["results"] if r["section"] == "contract"}
    assert contract[("adamw", "resume")] == "pass" and contract[("lbfgs", "compiled")] == "skip"
    assert [r["verdict"] for r in data["results"] if r["section"] == "kernels"] == ["skip"], "no GPU backend here"
    assert "adamw-ams" in done.stdout and "verdict" in done.stdout, "the table"
    assert "[" in done.stderr and "parity adamw-ams eager: pass" in done.stderr, "plain progress lines on stderr"


def test_device_gpu_without_gpu_exits_2(tmp_path):
    if mx.metal.is_available() or mx.cuda.is_available():
        pytest.skip("this machine has a GPU backend")
    done = _cli(["check", "--device", "gpu"], tmp_path)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.count("\n") == 1 and "no GPU backend" in done.stderr, done.stderr


def test_only_matching_nothing_exits_2(tmp_path):
    done = _cli(["check", "--only", "no-such-*"], tmp_path)
    assert done.returncode == 2 and "no parity row, optimizer, kernel or native check matches" in done.stderr


def _corrupt(tmp_path, label: str) -> Path:
    gold = goldens.load()
    row = gold.rows[label]
    row.trajectory = [{k: v.copy() for k, v in step.items()} for step in row.trajectory]
    row.trajectory[7]["b"][2, 3] += 1e-3  # ~15 x the tolerance (atol 1e-5 + rtol 1e-4 * 0.59), one entry
    path = tmp_path / "goldens.npz"
    goldens.save(gold, path)
    return path


def test_a_wrong_golden_fails_the_check(tmp_path, capsys):
    path = _corrupt(tmp_path, "adam")
    report = tmp_path / "r.json"
    code = runner.check(only=["adam"], json_path=str(report), goldens_path=str(path), progress=False)
    out = capsys.readouterr().out
    assert code == 1
    data = json.loads(report.read_text())
    bad = [r for r in data["results"] if r["verdict"] != "pass" and r["section"] == "parity"]
    assert {(r["name"], r["mode"], r["verdict"]) for r in bad} == {
        ("adam", "eager", "FAIL"),
        ("adam", "compiled", "FAIL"),
    }
    assert all(13 < r["ratio"] < 16 and "step 8, 'b'[2, 3]" in r["detail"] for r in bad), bad
    assert "FAIL" in out


def test_goldens_roundtrip(tmp_path):
    gold = goldens.load()
    path = tmp_path / "g.npz"
    goldens.save(gold, path)
    again = goldens.load(path)
    assert list(again.rows) == list(gold.rows) and again.meta == gold.meta
    for label in ("spam-masks", "lbfgs-softmax-dict", "lorarite-default-peft", "rose-bf16-sr-stats"):
        a, b = gold.rows[label], again.rows[label]
        assert a.entry == b.entry and a.extras.keys() == b.extras.keys()
        for x, y in zip(a.trajectory, b.trajectory):
            assert all(np.array_equal(x[k], y[k]) and np.asarray(x[k]).dtype == np.asarray(y[k]).dtype for k in x)
    assert path.read_bytes() == (goldens.save(gold, tmp_path / "h.npz") or (tmp_path / "h.npz").read_bytes()), (
        "the same trajectories give the same bytes"
    )


def test_encode_roundtrip_and_refusals():
    import functools

    from mlx_optim.check import fns
    from mlx_optim.optimizers.alig import l2_projection

    value = {
        "betas": (0.9, 0.99),
        "dtype": mx.bfloat16,
        "f": fns.not_c,
        "mean": mx.mean,
        "p": functools.partial(l2_projection, max_norm=9.0),
        "inf": float("inf"),
        "nested": [1, {"a": None}],
    }
    data = json.loads(json.dumps(encode.encode(value)))
    back = encode.decode(data)
    assert back["betas"] == (0.9, 0.99) and back["dtype"] == mx.bfloat16 and back["f"] is fns.not_c
    assert back["mean"] is mx.mean and back["p"].func is l2_projection and back["p"].keywords == {"max_norm": 9.0}
    assert back["inf"] == float("inf") and back["nested"] == [1, {"a": None}]
    with pytest.raises(encode.NotPortable):
        encode.encode({"f": lambda x: x})
    with pytest.raises(encode.NotPortable):
        encode.encode({"f": test_encode_roundtrip_and_refusals})  # not importable from mlx_optim
    with pytest.raises(encode.NotPortable):
        encode.decode({"$fn": "os:system"})


@pytest.mark.parametrize("mode", ["good", "wrong"])
def test_kernel_section_with_a_mocked_backend(monkeypatch, tmp_path, mode):
    """The kernel checks launch every flag combination of the Lion kernel with fp32 / fp16 / bf16 parameters on the
    five input cases against the pure math; a kernel wrong for bf16 fails exactly those configurations."""
    fake = FakeKernels(mode, bad_dtypes=(mx.bfloat16,))
    mock_gpu(monkeypatch, fake)
    try:
        report = tmp_path / "r.json"
        runner.check(only=["lion"], json_path=str(report), progress=False)
        results = json.loads(report.read_text())["results"]
    finally:
        kernels.clear_cache()
    ks = [r for r in results if r["section"] == "kernels"]
    assert len(ks) == 3 * 3 * 5 and {r["mode"] for r in ks} == set(runner.KERNEL_CASES)
    failed = {r["name"] for r in ks if r["verdict"] != "pass"}
    if mode == "good":
        assert not failed
    else:
        assert failed == {r["name"] for r in ks if "bfloat16" in r["name"]} and len(failed) == 3
    parity = [r for r in results if r["section"] == "parity"]
    assert parity and all(r["verdict"] == "pass" for r in parity), "bad kernels fall back: parity still holds"


def test_drift_check_notices_a_changed_reference_or_row(monkeypatch):
    import dataclasses

    from tests.parity import harness

    row = next(r for r in harness.all_rows() if r.label == "adam")
    assert harness.golden_drift(row) == []
    gold = goldens.load()
    stored = gold.rows["adam"]
    stored.trajectory = [{k: v.copy() for k, v in s.items()} for s in stored.trajectory]
    c = stored.trajectory[3]["c"]
    c[0, 1, 2] = np.nextafter(c[0, 1, 2], np.float32(9), dtype=np.float32)
    monkeypatch.setattr(harness, "stored_goldens", lambda: gold)
    assert harness.golden_drift(row) == [], "one ulp is float rounding"
    c[0, 1, 2] += 0.25 * (row.atol + row.rtol * abs(float(c[0, 1, 2])))
    assert harness.golden_drift(row) == [], "a quarter of the row's tolerance is another CPU's MKL kernels"
    c[0, 1, 2] += row.atol + row.rtol * abs(float(c[0, 1, 2]))
    (problem,) = harness.golden_drift(row)
    assert "adam step 4 'c'[0, 1, 2]" in problem
    changed = dataclasses.replace(row, atol=2e-5, note="x")
    (problem,) = harness.golden_drift(changed)
    assert "the row changed (atol)" in problem


def _native_results(tmp_path, only=("native",)) -> tuple[int, list[dict]]:
    report = tmp_path / "native.json"
    code = runner.check(only=list(only), json_path=str(report), progress=False)
    return code, [r for r in json.loads(report.read_text())["results"] if r["section"] == "native"]


def test_native_section_passes_here(tmp_path):
    """The native CPU paths built for this processor against the pure-MLX computations they replace: each engine
    of the bfloat16 Newton-Schulz loop (AMX where the processor has it), int8 AdamW and the SYRK Gram matrix."""
    from mlx_optim import native

    code, results = _native_results(tmp_path)
    assert code == 0, results
    verdicts = {r["name"]: r["verdict"] for r in results}
    assert list(verdicts) == native_checks.CHECKS and all(r["mode"] == "check" for r in results)
    for name, verdict in verdicts.items():
        expected = "pass"
        if name.startswith("newton_schulz amx") and not native.amx_available():
            expected = "skip"
        if name.startswith("gram") and not native.gram_available():
            expected = "skip"
        assert verdict == expected, (name, results)


def test_a_wrong_native_path_fails(tmp_path, monkeypatch):
    """Each native check can fail: a Newton-Schulz result with two 32-column blocks swapped (a misplaced block), a
    Gram matrix off by 1e-3 in one entry (not symmetric), an int8 step that flips one code."""
    from mlx_optim import native

    real_ns, real_gram, real_adam8 = native.bf16_newton_schulz, native.gram, native.adam8

    def swapped(*args, **kwargs):
        out = real_ns(*args, **kwargs)
        return mx.concatenate([out[:, 32:64], out[:, :32], out[:, 64:]], axis=1)

    def off_gram(u):
        out = real_gram(u)
        return out + mx.zeros_like(out).at[0, 1].add(1e-3)

    def flipped(*args, **kwargs):
        p, codes_m, *rest = real_adam8(*args, **kwargs)
        return (p, codes_m ^ mx.zeros_like(codes_m).at[0].add(1), *rest)

    monkeypatch.setattr(native, "bf16_newton_schulz", swapped)
    monkeypatch.setattr(native, "gram", off_gram)
    monkeypatch.setattr(native, "adam8", flipped)
    code, results = _native_results(tmp_path)
    assert code == 1
    verdicts = {r["name"]: (r["verdict"], r["ratio"]) for r in results}
    for name, (verdict, ratio) in verdicts.items():
        if verdict == "skip":
            continue
        assert verdict == "FAIL", (name, verdict, ratio)
        assert ratio == "inf" or ratio > 10, (name, ratio)
    assert verdicts["newton_schulz mkl 300x700"][0] == "FAIL" and verdicts["adam8 int8 AdamW"][0] == "FAIL"
