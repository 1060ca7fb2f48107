"""The ``mlx-optim`` command line: list, compare, bench; one-line errors; nothing half-written in --out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    finals = [float("inf") if r["final"] is None else r["final"] for r in data["results"]]
    assert finals == sorted(finals)
    for r in data["results"]:
        assert len(r["losses"]) == 40 and r["trajectory"][0] == [-2.0, 2.0]
        assert r["first"] == pytest.approx(409.0)  # f(-2, 2): every optimizer starts at the same point
        if r["final"] is not None:
            assert len(r["trajectory"]) == 41
        else:  # SGD at this learning rate diverges on Rosenbrock: the run stops there and ranks last (null: inf)
            assert r["losses"][-1] is None and len(r["trajectory"]) < 41
    assert data["results"][0]["final"] < 409.0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "results.json"]


def test_compare_lr_auto_sweeps_and_picks_the_best_trial(tmp_path):
    res = run("compare", "--task", "rastrigin", "--optimizers", "adam", "--steps", "40", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    (r,) = json.loads((tmp_path / "results.json").read_text())["results"]
    trials = r["lr_sweep"]["trials"]
    assert [t["learning_rate"] for t in trials][:7] == T.lr_grid(1e-3)
    assert len(trials) <= 7 + T.SWEEP_EXTRA_TRIALS
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


# ----------------------------------------------------------------------------- issue 18: command-line edges
def strict_loads(text: str):
    """json.loads that rejects Infinity / -Infinity / NaN, as strict JSON parsers do."""

    def reject(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=reject)


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores permission bits: then /sys on Linux)."""
    import os
    import tempfile

    candidates = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        candidates.append(locked)
    candidates.append(Path("/sys"))
    for d in candidates:
        try:
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError:
            return d
    pytest.skip("no unwritable directory on this machine")


@pytest.fixture
def no_training(monkeypatch):
    """Records T.train calls; the output checks must fail before any."""
    calls = []
    monkeypatch.setattr(T, "train", lambda *a, **k: calls.append(a) or pytest.fail("trained before the check"))
    return calls


@pytest.mark.parametrize("where", ["inside-a-file", "unwritable", "is-a-file"])
def test_compare_bad_out_fails_before_training(where, tmp_path, no_training, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {
        "inside-a-file": afile / "sub",
        "unwritable": unwritable_dir(tmp_path) / "mlx-optim-run",
        "is-a-file": afile,
    }[where]
    argv = ["compare", "--task", "rosenbrock", "--optimizers", "adam", "--steps", "3", "--lr", "0.1"]
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlx-optim compare: error: --out=") and str(out) in err[0], err
    assert not no_training and afile.read_text() == "x"


@pytest.mark.parametrize("where", ["inside-a-file", "unwritable", "is-a-directory"])
def test_bench_bad_json_fails_before_benchmarking(where, tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    path = {
        "inside-a-file": afile / "bench.json",
        "unwritable": unwritable_dir(tmp_path) / "bench.json",
        "is-a-directory": tmp_path,
    }[where]
    monkeypatch.setattr(cli, "_Runner", lambda *a, **k: pytest.fail("benchmarked before the check"))
    assert cli.main(["bench", "--tree", "small", "--optimizers", "adam", "--json", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlx-optim bench: error: --json=") and str(path) in err[0], err


def test_bench_json_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "new" / "dir" / "bench.json"
    assert cli.main(["bench", "--tree", "small", "--optimizers", "sgd", "--rounds", "1", "--steps", "1",
                     "--json", str(path)]) == 0  # fmt: skip
    assert strict_loads(path.read_text())["rows"][0]["optimizer"] == "sgd"


def test_one_step_run_reports_its_own_time():
    """ms/step of a 1-step run was measured from perf_counter()'s origin (453,031 ms for a 1.6 s run)."""
    import time

    t0 = time.perf_counter()
    r = T.train(T.get_task("rosenbrock"), "adam", 0.1, 1)
    wall_ms = 1000 * (time.perf_counter() - t0)
    assert 0 < r["ms_per_step"] <= wall_ms and r["timed_steps"] == 1
    r = T.train(T.get_task("rosenbrock"), "adam", 0.1, 4)
    assert r["timed_steps"] == 3  # the first step (tracing, compiling) is not timed


def test_lr_sweep_goes_past_the_edge_of_its_grid():
    """SGD on spirals: the grid's best was its top, 0.1, while the loss still fell; the sweep goes on upward."""
    lr, trials = T.sweep(T.get_task("spirals"), "sgd", 20)
    lrs = [t["learning_rate"] for t in trials]
    assert lrs[:7] == T.lr_grid(1e-3) and min(trials[:7], key=lambda t: t["final"])["learning_rate"] == 0.1
    assert 7 < len(trials) <= 7 + T.SWEEP_EXTRA_TRIALS and max(lrs) > 0.1
    assert lr == min(trials, key=lambda t: t["final"])["learning_rate"] and lr > 0.1
    assert T.sweep_edge(trials) is None or len(trials) == 7 + T.SWEEP_EXTRA_TRIALS


def test_lr_still_at_the_edge_is_flagged_in_table_json_and_plot(tmp_path, capsys):
    task = T.get_task("spirals")
    lr, trials = T.sweep(task, "sgd", 20, extra_trials=0)
    assert lr == 0.1 and T.sweep_edge(trials) == "high"
    r = T.train(task, "sgd", lr, 5)
    r["lr_sweep"] = {"steps": 20, "trials": trials, "edge": T.sweep_edge(trials)}
    cli._print_ranking(task, [r])
    out = " ".join(capsys.readouterr().out.split())
    assert "0.1 ^" in out and "best at the largest learning rate the sweep tried: a larger --lr" in out
    assert cli.loss_label(r).startswith("sgd, lr 0.1 ^: ")


def test_results_json_is_strict_json(tmp_path):
    """A diverged run's losses are inf: written as null, not as the bare Infinity strict parsers reject."""
    assert cli.main(["compare", "--task", "rosenbrock", "--optimizers", "sgd,adam", "--steps", "6", "--lr", "0.1",
                     "--out", str(tmp_path)]) == 0  # fmt: skip
    data = strict_loads((tmp_path / "results.json").read_text())
    sgd = next(r for r in data["results"] if r["optimizer"] == "sgd")
    assert sgd["final"] is None and sgd["losses"][-1] is None and data["results"][-1] is sgd
    assert cli.dump_json({"a": [float("nan"), -float("inf"), 1.5]}) == json.dumps({"a": [None, None, 1.5]}, indent=1)


def test_list_filter_accepts_comma_separated_globs(capsys):
    assert cli.main(["list", "--filter", "ada*, lion"]) == 0
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    names = {cells[1].strip() for cells in rows} - {""}
    assert names == set(mlx_optim.get_supported_optimizers("ada*")) | {"lion"}


def test_list_filter_matching_nothing_says_so(capsys):
    assert cli.main(["list", "--filter", "zzz*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no registered optimizer matches --filter='zzz*'" in err[0]


def test_wrappers_nest():
    from mlx_optim.wrappers import SAM, Lookahead

    opt = T.make_optimizer("sam:lookahead:sgd", 0.05)
    assert type(opt) is SAM and type(opt.inner) is Lookahead and type(opt.inner.inner).__name__ == "SGD"
    assert opt.learning_rate.item() == pytest.approx(0.05)
    assert T.parse_optimizer_spec("sam:lookahead:sgd") == ("sam", "lookahead:sgd")
    assert T.optimizer_chain("sam:lookahead") == ["sam", "lookahead", "adamw"]
    assert T.default_learning_rate("sam:lookahead:sgd") == T.default_learning_rate("sgd")
    r = T.train(T.get_task("rosenbrock"), "sam:lookahead:sgd", 1e-3, 20)
    assert r["final"] < r["first"]


@pytest.mark.parametrize(
    "spec,needles",
    [
        ("sam:lookahead:sgdd", ["unknown optimizer 'sgdd'", "did you mean"]),
        ("sam:sam:sgd", ["'sam:sam:sgd': sam evaluates the gradient several times", "outermost"]),
        ("lookahead:lookahead:sam", ["sam evaluates the gradient several times"]),
        ("sam::sgd", ["empty name"]),
    ],
)
def test_nested_wrappers_that_cannot_work_are_one_line_errors(spec, needles, tmp_path):
    one_line_error(run("compare", "--optimizers", spec, "--out", str(tmp_path / "out")), *needles)


def test_lookahead_around_sam_still_works():
    r = T.train(T.get_task("rosenbrock"), "lookahead:sam:sgd", 1e-3, 10)
    assert r["final"] < r["first"]


def test_bench_skips_lbfgs_with_its_reason_and_fails_on_an_error(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert cli.main(["bench", "--tree", "small", "--optimizers", "lbfgs,sgd", "--rounds", "1", "--steps", "1",
                     "--json", str(path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "TypeError" not in out and "skipped" in out
    rows = {r["optimizer"]: r for r in strict_loads(path.read_text())["rows"]}
    assert "step_with" in rows["lbfgs"]["skipped"] and rows["sgd"]["ms_mlx_optim"] > 0
    # BSAM has a required constructor argument (num_data): a failed row, and a non-zero exit status
    assert cli.main(["bench", "--tree", "small", "--optimizers", "bsam,sgd", "--rounds", "1", "--steps", "1"]) == 1
    captured = capsys.readouterr()
    assert "num_data" in captured.out and "bsam failed" in captured.err


def test_bench_runs_sam_inside_lookahead_transparently():
    opt = cli._bench_opt("lookahead:sam:sgd", 1e-3)
    assert opt.inner.transparent and cli.bench_skip_reason(opt) is None


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_compare_plot_has_labels_legends_and_readable_loss_ticks(tmp_path):
    import matplotlib.pyplot as plt

    task = T.get_task("rosenbrock")
    ranked = [T.train(task, n, 1e-2, 30) for n in ("adam", "lion")]
    fig = cli.compare_figure(task, ranked)
    try:
        traj, loss = fig.axes[0], fig.axes[1]
        assert traj.get_xlabel() and traj.get_ylabel()
        assert {"adam", "lion", "start", "minimum"} <= set(_legend_texts(traj))
        labels = _legend_texts(loss)
        assert labels[0].startswith("adam, lr 0.01: ") and "final loss" in loss.get_legend().get_title().get_text()
    finally:
        plt.close(fig)
    # tiny-lm's losses go from ~3.2 to ~1.6: the plain log axis labelled two ticks
    lm = dict(ranked[0], losses=list(np.linspace(3.2, 1.6, 40)), final=1.6)
    fig = cli.compare_figure(T.get_task("tiny-lm"), [lm])
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        lo, hi = ax.get_ylim()
        shown = [t for t in ax.get_yticks() if lo <= t <= hi]
        assert len(shown) >= 4, shown
    finally:
        plt.close(fig)
