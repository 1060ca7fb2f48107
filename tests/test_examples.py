"""Every example script runs, with a short step count, and reports success (exit status 0 means it learned)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# script, short arguments (examples/train_compiled.py: tests/test_docs.py; sam.py etc.: their authors' tests)
EXAMPLES = [
    ("lbfgs_curve_fit.py", ["--steps", "4"]),
    # one calling convention (step_with) for every optimizer: L-BFGS (not compilable) and SAM (two evaluations)
    ("train_compiled.py", ["--steps", "5", "--optimizer", "lbfgs", "--learning-rate", "1"]),
    ("train_compiled.py", ["--steps", "5", "--optimizer", "sam"]),
    ("train_compiled.py", ["--steps", "5", "--optimizer", "sophiah"]),
    ("schedule_free.py", ["--steps", "120"]),
    ("muon_transformer.py", ["--steps", "30"]),
    ("lora_mlx_lm.py", ["--iters", "20"]),
    ("lora_mlx_lm.py", ["--iters", "20", "--optimizer", "sophiah", "--optimizer-config", '{"p": 1.0}']),
    ("lora_mlx_lm.py", ["--iters", "20", "--optimizer", "lookahead", "--optimizer-config", '{"optimizer": "lion"}',
                        "--learning-rate", "1e-3"]),
]  # fmt: skip


@pytest.mark.parametrize("script,args", EXAMPLES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(EXAMPLES)])
def test_example_runs(script, args, tmp_path):
    extra = ["--adapter-path", str(tmp_path)] if script == "lora_mlx_lm.py" else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, f"examples/{script}", *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,  # this checkout's mlx_optim, not an installed one (the script's folder comes first on sys.path)
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    if script == "lora_mlx_lm.py":
        assert (tmp_path / "adapters.safetensors").exists()
