"""The ``mlx-optim`` command line: list, compare, bench; one-line errors; nothing half-written in --out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlx_optim
from mlx_optim import cli
from mlx_optim import tasks as T

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlx_optim", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ----------------------------------------------------------------------------- list
def test_list_shows_every_optimizer_with_parity_and_memory(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in mlx_optim.get_supported_optimizers():
        assert name in out
    assert "torch.optim.AdamW" in out and "default tolerance" in out
    assert "8.00" in out  # adam keeps two float32 buffers per parameter
    assert "8.00 (2.09/1.13)" in out  # and with state_dtype="int8" / "int4" (mlx_optim.quantized)


def test_list_filters_by_family_and_glob(capsys):
    assert cli.main(["list", "--family", "sign", "--filter", "l*"]) == 0
    out = capsys.readouterr().out
    assert "lion" in out and "adamw" not in out and "tiger" not in out


def test_list_bad_family_lists_the_choices():
    one_line_error(run("list", "--family", "adamm"), "unknown family", "adam", "sgd")


def test_catalog_is_up_to_date():
    out = subprocess.run(
        [sys.executable, "scripts/gen_reference_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ----------------------------------------------------------------------------- compare
def test_compare_on_rosenbrock_writes_ranked_json_and_png(tmp_path):
    out = tmp_path / "run"
    res = run(
        "compare", "--task", "rosenbrock", "--optimizers", "adam,lookahead:sgd,sam:sgd,sophiah", "--steps", "40",
        "--lr", "1e-2", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "rank" in res.stdout and "lookahead:sgd" in res.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["task"] == "rosenbrock" and data["steps"] == 40 and data["learning_rate"] == 0.01
    finals = [r["final"] for r in data["results"]]
    assert finals == sorted(finals)
    for r in data["results"]:
        assert len(r["losses"]) == 40 and r["trajectory"][0] == [-2.0, 2.0]
        assert r["first"] == pytest.approx(409.0)  # f(-2, 2): every optimizer starts at the same point
        if r["final"] < float("inf"):
            assert len(r["trajectory"]) == 41
        else:  # SGD at this learning rate diverges on Rosenbrock: the run stops there and ranks last
            assert r["losses"][-1] == float("inf") and len(r["trajectory"]) < 41
    assert data["results"][0]["final"] < 409.0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "results.json"]


def test_compare_lr_auto_sweeps_and_picks_the_best_trial(tmp_path):
    res = run("compare", "--task", "rastrigin", "--optimizers", "adam", "--steps", "40", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    (r,) = json.loads((tmp_path / "results.json").read_text())["results"]
    trials = r["lr_sweep"]["trials"]
    assert [t["learning_rate"] for t in trials] == T.lr_grid(1e-3)
    assert r["learning_rate"] == min(trials, key=lambda t: t["final"])["learning_rate"]


def test_spirals_is_the_default_task_and_learns(tmp_path):
    res = run("compare", "--optimizers", "adam,sgd", "--steps", "60", "--lr", "0.03", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["task"] == T.DEFAULT_TASK == "spirals"
    adam = next(r for r in data["results"] if r["optimizer"] == "adam")
    assert adam["final"] < 0.8 * adam["first"] and 0.5 < adam["accuracy"] <= 1.0


def test_tiny_lm_learns():
    r = T.train(T.get_task("tiny-lm"), "adamw", 3e-3, 40)
    assert r["final"] < r["first"] - 0.5, (r["first"], r["final"])
    assert r["state_bytes"] >= 8 * r["params"]


def test_lbfgs_runs_uncompiled_and_wrappers_default_to_adamw():
    r = T.train(T.get_task("rosenbrock"), "lbfgs", 1.0, 5)
    assert r["final"] < r["first"]
    assert type(T.make_optimizer("lookahead", 1e-3).inner).__name__ == "AdamW"


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--optimizers", "adam,adamm"], ["unknown optimizer 'adamm'", "did you mean"]),
        (["--optimizers", "adam:sgd"], ["not a wrapper"]),
        (["--task", "mnist"], ["invalid choice: 'mnist'", "rosenbrock", "tiny-lm"]),
        (["--lr", "fast"], ["--lr='fast'", "auto"]),
        (["--lr", "-1"], ["positive"]),
        (["--steps", "0"], ["--steps=0"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_compare_bad_input_is_one_line_and_writes_nothing(args, needles, tmp_path):
    out = tmp_path / "out"
    one_line_error(run("compare", *args, "--out", str(out)), *needles)
    assert not out.exists()


def test_a_failure_while_writing_leaves_nothing_half_written(tmp_path, monkeypatch):
    def broken_plot(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cli, "plot_compare", broken_plot)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(["compare", "--task", "rosenbrock", "--optimizers", "adam", "--steps", "3", "--lr", "0.1",
                  "--out", str(fresh)])  # fmt: skip
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "results.json").write_text("old")
    with pytest.raises(RuntimeError):
        cli.main(["compare", "--task", "rosenbrock", "--optimizers", "adam", "--steps", "3", "--lr", "0.1",
                  "--out", str(kept)])  # fmt: skip
    assert [p.name for p in kept.iterdir()] == ["results.json"] and (kept / "results.json").read_text() == "old"


def test_an_optimizer_that_fails_is_a_row_not_a_crash(tmp_path):
    # SophiaH needs Hessian-vector products; MLX has no JVP of the embedding's scatter, so tiny-lm fails for it
    res = run("compare", "--task", "tiny-lm", "--optimizers", "sophiah,adam", "--steps", "3", "--lr", "1e-3",
              "--out", str(tmp_path))  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert rows[0]["optimizer"] == "adam" and "error" in rows[1] and "JVP" in rows[1]["error"]


# ----------------------------------------------------------------------------- bench, entry points
def test_bench_compares_against_mlx_builtins(tmp_path):
    out = tmp_path / "bench.json"
    res = run("bench", "--tree", "small", "--optimizers", "adamw,sam:sgd,lion", "--rounds", "1", "--steps", "1",
              "--json", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ratio" in res.stdout
    rows = {r["optimizer"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["adamw"]["ms_mlx"] > 0 and rows["adamw"]["ms_mlx_optim"] > 0
    assert rows["adamw"]["bytes_mlx"] == pytest.approx(rows["adamw"]["bytes_mlx_optim"], abs=0.05)
    assert "ms_mlx" not in rows["sam:sgd"] and rows["sam:sgd"]["ms_mlx_optim"] > 0


def test_bench_bad_tree_is_one_line():
    one_line_error(run("bench", "--tree", "huge"), "invalid choice", "lora", "small")


def test_python_dash_m_and_version():
    res = run("--version")
    assert res.returncode == 0 and mlx_optim.__version__ in res.stdout
    one_line_error(run("frobnicate"), "invalid choice", "compare")


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'mlx-optim = "mlx_optim.cli:main"' in text
