"""CI smoke tests of the benchmarks: ``suite.py --quick`` on a few optimizers writes a complete JSON table; step_time.py
and elementwise_cost.py run.

Run with ``pytest benchmarks/test_suite_smoke.py`` (it is outside ``tests/`` so the default run stays fast).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite  # noqa: E402


def test_quick_suite_writes_every_column(tmp_path):
    out = tmp_path / "bench.json"
    assert suite.main(["--quick", "--only", "adamw,sgd,lamb", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["bandwidth_gbps"] > 0
    recs = {(r["optimizer"], r["tree"], r["mode"]): r for r in data["results"]}
    assert len(recs) == 3 * 2 * 2
    adamw = recs[("adamw", "lora", "eager")]
    for key in ("ms_mlx_optim", "ms_mlx", "ms_torch", "ms_packed", "x_mlx", "x_torch", "gbps", "frac_bandwidth"):
        assert adamw[key] > 0, key
    assert adamw["state_bytes_per_param"] == 8.0  # fp32 exp_avg + exp_avg_sq
    assert "ms_packed" not in recs[("lamb", "lora", "eager")]  # trust ratios: not element-wise, never packed
    assert "x_torch" not in recs[("adamw", "large", "compiled")]  # torch is timed eagerly only


def test_step_time_and_elementwise_cost_run(tmp_path):
    import elementwise_cost
    import step_time

    out = tmp_path / "cost.json"
    assert (
        elementwise_cost.main(
            ["--size", "4096", "--rounds", "1", "--steps", "1", "--only", "sgd,lion", "--ops", "--json", str(out)]
        )
        == 0
    )
    rows = {r["optimizer"]: r for r in json.loads(out.read_text())}
    assert {"adamw", "sgd", "lion", "op:exp", "op:sqrt"} <= set(rows) and rows["adamw"]["x_adamw"] == 1.0
    assert all(r["ns_per_element"] > 0 for r in rows.values())
    out = tmp_path / "step.json"
    assert step_time.main(["--rounds", "1", "--steps", "1", "--trees", "lora", "--json", str(out)]) == 0
    (eager, compiled) = json.loads(out.read_text())
    assert eager["mode"] == "eager" and compiled["mode"] == "compiled" and eager["ratio"] > 0


def test_buffer_cache_runs(tmp_path):
    import buffer_cache

    out = tmp_path / "cache.json"
    assert buffer_cache.main(["--quick", "--steps", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data) == 2 and all(len(rows) == 6 and all(r["ms"] > 0 for r in rows) for rows in data.values())


def test_matrix_benchmark_runs(tmp_path):
    import matrix

    out = tmp_path / "matrix.json"
    assert matrix.main(["--sizes", "16", "--steps", "1", "--only", "muon,soap,galore", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["optimizer"] for r in rows] == ["muon", "soap", "galore"]
    assert all(r["ms_ref"] > 0 and r["ms_mlx_optim"] > 0 and r["ratio"] > 0 for r in rows)
