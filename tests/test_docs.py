"""The README's optimizer table is generated, never edited by hand."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_up_to_date():
    out = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_demo_runs_and_ranks():
    out = subprocess.run(
        [sys.executable, "-m", "mlx_optim.demo", "--steps", "30", "--optimizers", "adam,sgd"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and "adam" in out.stdout and "sgd" in out.stdout


def test_demo_rejects_unknown_optimizer():
    out = subprocess.run(
        [sys.executable, "-m", "mlx_optim.demo", "--optimizers", "adamm"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode != 0 and "did you mean" in out.stderr


def test_training_loop_example_runs_and_learns():
    out = subprocess.run(
        [sys.executable, "examples/train_compiled.py", "--steps", "60"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
