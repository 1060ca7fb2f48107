"""The optimizer tables (README summary, docs/optimizer-table.md) are generated, never edited by hand; the
guides' examples run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_optimizer_tables_are_up_to_date():
    out = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_demo_runs_and_ranks(tmp_path):
    # the main job is `mlx-optim compare` on its default task; `python -m mlx_optim.demo` is its alias
    out = subprocess.run(
        [sys.executable, "-m", "mlx_optim.demo", "--steps", "30", "--optimizers", "adam,sgd", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and "adam" in out.stdout and "sgd" in out.stdout
    assert (tmp_path / "results.json").exists() and (tmp_path / "curves.png").exists()


def test_demo_rejects_unknown_optimizer(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mlx_optim.demo", "--optimizers", "adamm", "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "did you mean" in out.stderr


def test_training_loop_example_runs_and_learns():
    out = subprocess.run(
        [sys.executable, "examples/train_compiled.py", "--steps", "60"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_guide_documents_the_lr_schedulers():
    """The guide on load_lr_scheduler / get_supported_lr_schedulers exists, is linked from the README, and its
    example runs."""
    import re

    assert "(docs/guides/schedules.md)" in (ROOT / "README.md").read_text()
    text = (ROOT / "docs" / "guides" / "schedules.md").read_text()
    assert text.startswith("# Learning-rate schedules\n")
    section = text.split("# Learning-rate schedules", 1)[1].split("\n## ", 1)[0]
    assert "load_lr_scheduler" in section and "get_supported_lr_schedulers" in section
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'cosine'" in out.stdout and "0.0 0.001" in out.stdout
