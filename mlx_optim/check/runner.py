"""``mlx-optim check``: the parity rows against their stored reference trajectories, the optimizer contract, the
fused kernels and the native CPU paths, on this machine's default device (or the one asked for), without PyTorch.

Four sections, each a list of results (``pass`` / ``FAIL`` / ``error`` / ``skip``, and the worst error as a
fraction of its tolerance, ``<= 1`` passes):

1. **parity**: every stored row (:mod:`mlx_optim.check.goldens`), eager and with the step under ``mx.compile``,
   compared with the reference's trajectory exactly as the parity tests compare it with the live reference
   (``|mine - ref| <= atol + rtol |ref|`` at every step, or the row's statistical comparison). Rows that need
   float64 are skipped on a GPU (MLX runs float64 on the CPU only).
2. **contract** (:mod:`mlx_optim.check.contract`): compiled == eager, exact resume from safetensors, bf16
   parameters finite, for every registered optimizer.
3. **kernels**: each fused Metal / CUDA kernel (:mod:`mlx_optim.kernels`), every flag combination, with float32,
   float16 and bfloat16 parameters, against the same update in pure ``mx`` math on random values, zeros,
   ``-0.0``, ``+-1e-30`` and ``+-1e30`` (:func:`mlx_optim.kernels.tolerance`). Skipped without a GPU backend.
4. **native** (:mod:`mlx_optim.check.native`): the C++ CPU paths built for this processor (the bfloat16
   Newton-Schulz loop on each engine, int8 Adam, the SYRK Gram matrix) against the pure-MLX computations they
   replace. On the CPU device only.

``--only`` (comma-separated globs on row labels and optimizer names) restricts the first three: the rows it
matches, the optimizers it matches or whose rows it matches, and the kernels those optimizers use; the native
checks run without ``--only`` or when a pattern matches ``native`` or a check's name (``newton_schulz*``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

import mlx_optim
from mlx_optim import kernels
from mlx_optim.check import compare, contract, goldens, problems, programs
from mlx_optim.check import native as native_checks

__all__ = ["KERNEL_USERS", "Result", "check", "device_report", "plan", "plan_size"]

KERNEL_USERS = {"adam": ("adam", "adamw"), "lion": ("lion",), "sgd_momentum": ("sgd",)}
"""The optimizers that use each fused kernel (``--only`` selects a kernel through them)."""
KERNEL_CASES = ("random", "zeros", "negzero", "tiny", "huge")
KERNEL_DTYPES = (mx.float32, mx.float16, mx.bfloat16)


@dataclasses.dataclass
class Result:
    """One check: ``section`` (parity / contract / kernels / native), ``name`` (row, optimizer, kernel
    configuration, native path),
    ``mode`` (eager / compiled; compiled / resume / bf16; the input case), ``verdict``, ``ratio`` (worst error
    over its tolerance), ``detail`` and ``seconds``."""

    section: str
    name: str
    mode: str
    verdict: str
    ratio: float | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.verdict in ("FAIL", "error")


def _matches(patterns: list[str] | None, *names: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def device_report() -> dict:
    """The device, MLX, NumPy, Python and platform, for the report."""
    dev = mx.default_device()
    try:
        info = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in mx.device_info().items()}
    except Exception as e:  # noqa: BLE001  (older MLX or no device information)
        info = {"error": str(e)}
    return {
        "device": "gpu" if dev == mx.gpu else "cpu",
        "device_info": info,
        "metal": bool(mx.metal.is_available()),
        "cuda": bool(mx.cuda.is_available()),
        "kernel_backend": kernels.backend(),
        "mlx": mx.__version__,
        "mlx_optim": mlx_optim.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


# ---------------------------------------------------------------------------------------------- sections
def _timed(f: Callable[[], tuple[str, float | None, str]]) -> tuple[str, float | None, str, float]:
    t0 = time.perf_counter()
    try:
        verdict, ratio, detail = f()
    except Exception as e:  # noqa: BLE001  (reported, not raised: the other checks still run)
        verdict, ratio, detail = "error", None, f"{type(e).__name__}: {e}"[:500]
    return verdict, ratio, detail, time.perf_counter() - t0


def _parity(row: goldens.GoldenRow, compiled: bool, on_gpu: bool) -> tuple[str, float | None, str]:
    if on_gpu and row.entry["float64"]:
        return "skip", None, "needs float64, which MLX runs on the CPU only (checked by --device cpu)"
    case = row.case()
    mine = programs.run(case, compiled, extras=row.extras)
    envelope = row.entry.get("fp64_envelope", 0.0)
    if case.compare is not None:
        ratio, detail = compare.COMPARES[case.compare](mine, row.trajectory, case)
    elif envelope and row.trajectory64 is not None:
        ratio, detail = compare.ratio_envelope(mine, row.trajectory, row.trajectory64, case.atol, case.rtol, envelope)
    else:
        ratio, detail = compare.ratio(mine, row.trajectory, case.atol, case.rtol)
    return ("pass" if ratio <= 1.0 else "FAIL"), ratio, detail


def _kernel_variants(u: kernels.Update) -> list[dict]:
    values = [(0, 1, 2) if f == "WD_MODE" else (False, True) for f in u.flags]
    return [dict(zip(u.flags, combo)) for combo in itertools.product(*values)]


def _kernel_case(where: str, u: kernels.Update, flags: dict, dtype, case: str) -> tuple[str, float | None, str]:
    p, g, states, scalars = kernels.probe_inputs(u, flags, dtype, dtype, mx.float32, cases=(case,), n=257)
    got = kernels.launch(where, u, p, g, states, scalars, flags)
    want = kernels.reference(u, p, g, states, scalars, flags)
    mx.eval(got, want)
    ratio, detail = kernels.compare(u, got, want)
    return ("pass" if ratio <= 1.0 else "FAIL"), ratio, detail


def plan(
    gold: goldens.Goldens, only: list[str] | None, on_gpu: bool
) -> list[tuple[str, str, str, Callable[[], tuple[str, float | None, str]]]]:
    """Every check to run, in order: ``(section, name, mode, thunk)``."""
    items: list = []
    selected: set[str] = set()  # the optimizers of the selected rows, and the names --only matches
    for row in gold.rows.values():
        if _matches(only, row.label, row.name):
            selected.add(row.name)
            for mode in ("eager", "compiled"):
                items.append(("parity", row.label, mode, lambda r=row, c=mode == "compiled": _parity(r, c, on_gpu)))
    first: dict[str, dict] = {}  # the contract's keywords: each optimizer's first stored row (as tests/test_contract)
    for row in gold.rows.values():
        if not row.entry["float64"]:
            first.setdefault(row.name, row.entry)
    for name in mlx_optim.get_supported_optimizers():
        if name not in selected and not _matches(only, name):
            continue
        selected.add(name)
        entry = first.get(name)
        for check in contract.CHECKS:
            if entry is None:
                items.append(("contract", name, check, lambda: ("skip", None, "no stored row with keywords")))
                continue
            items.append(
                (
                    "contract",
                    name,
                    check,
                    lambda n=name, e=entry, c=check: contract.run_contract(n, goldens.encode.decode(e["kwargs"]), c),
                )
            )
    users = [u for u in kernels.UPDATES if _matches(only, u.name) or selected & set(KERNEL_USERS[u.name])]
    where = kernels.backend()
    if users and where is None:
        reason = "no Metal / CUDA backend on this device (the kernels run on a GPU only)"
        items.append(("kernels", ",".join(u.name for u in users), "all", lambda r=reason: ("skip", None, r)))
    elif users:
        for u in users:
            for flags in _kernel_variants(u):
                for dtype in KERNEL_DTYPES:
                    name = kernels.configuration(u, flags, dtype, dtype, mx.float32)
                    for case in KERNEL_CASES:
                        items.append(
                            (
                                "kernels",
                                name,
                                case,
                                lambda u=u, f=flags, d=dtype, c=case: _kernel_case(where, u, f, d, c),
                            )
                        )
    natives = [(n, f) for n, f in native_checks.run() if not only or _matches(only, "native", n)]
    if natives and on_gpu:
        reason = "CPU paths: run mlx-optim check --device cpu"
        items.append(("native", ",".join(n for n, _ in natives), "check", lambda r=reason: ("skip", None, r)))
    elif natives:
        items += [("native", n, "check", f) for n, f in natives]
    return items


def plan_size(only: list[str] | None) -> int:
    """How many checks ``--only`` selects (0: nothing matches)."""
    return len(plan(goldens.load(), only, mx.default_device() == mx.gpu))


# ---------------------------------------------------------------------------------------------- output
class _Progress:
    """A rich progress bar on stderr when rich is installed (and stderr a terminal), else one line per check."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                self.bar = Progress(
                    TextColumn("{task.description:<48}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    transient=True,
                )
                self.task = self.bar.add_task("check", total=total)
                self.bar.start()
            except ImportError:
                self.bar = None

    def advance(self, r: Result) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{r.section} {r.name} {r.mode}"[:48])
            if r.failed:
                self.bar.console.print(f"{r.verdict}: {r.section} {r.name} {r.mode}: {r.detail}")
        else:
            ratio = "" if r.ratio is None else f" {r.ratio:.3g}"
            print(
                f"[{self.done:>{len(str(self.total))}}/{self.total}] {r.section} {r.name} {r.mode}: {r.verdict}{ratio}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fmt(r: Result | None) -> str:
    if r is None:
        return ""
    if r.ratio is None:
        return r.verdict
    return f"{r.ratio:.3g}" + ("" if r.verdict == "pass" else f" {r.verdict}")


def tables(results: list[Result]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` per section: one line per row / optimizer / kernel configuration."""
    out = []
    by: dict[tuple[str, str], dict[str, Result]] = {}
    for r in results:
        by.setdefault((r.section, r.name), {})[r.mode] = r
    for section, modes, header in (
        ("parity", ("eager", "compiled"), ["row", "eager err/tol", "compiled err/tol", "verdict"]),
        ("contract", contract.CHECKS, ["optimizer", "compiled == eager", "resume exact", "bf16 finite", "verdict"]),
        ("kernels", KERNEL_CASES, ["kernel configuration", *KERNEL_CASES, "verdict"]),
        ("native", ("check",), ["native path", "err/tol", "verdict"]),
    ):
        rows = []
        for (sec, name), rs in by.items():
            if sec != section:
                continue
            verdict = _verdict(rs.values())
            if section == "kernels" and set(rs) == {"all"}:
                rows.append([name, *[""] * len(modes), f"skip: {rs['all'].detail}"])
                continue
            if section == "native" and verdict == "skip":
                rows.append([name, "", f"skip: {rs['check'].detail}"])
                continue
            rows.append([name, *(_fmt(rs.get(m)) for m in modes), verdict])
        if rows:
            out.append((section, header, rows))
    return out


def _verdict(rs: Iterable[Result]) -> str:
    rs = list(rs)
    if any(r.verdict == "error" for r in rs):
        return "ERROR"
    if any(r.verdict == "FAIL" for r in rs):
        return "FAIL"
    if all(r.verdict == "skip" for r in rs):
        return "skip"
    return "pass"


def print_tables(results: list[Result], stream) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    for title, header, rows in tables(results):
        if Console is not None:
            table = Table(title=title, title_justify="left")
            for i, h in enumerate(header):
                table.add_column(h, justify="right" if 0 < i < len(header) - 1 else "left")
            for row in rows:
                style = "red" if row[-1] in ("FAIL", "ERROR") else None
                table.add_row(*row, style=style)
            Console(file=stream, width=None if stream.isatty() else 140, highlight=False).print(table)
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
            print(f"\n{title}", file=stream)
            for row in [header, *rows]:
                print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip(), file=stream)


# ---------------------------------------------------------------------------------------------- entry point
def check(
    only: list[str] | None = None,
    json_path: str | None = None,
    goldens_path: str | None = None,
    progress: bool = True,
    stream=None,
) -> int:
    """Run the checks on the current default device, print the tables and a summary to ``stream`` (stdout),
    write the JSON report to ``json_path``; returns 0 when nothing failed, 1 otherwise."""
    stream = sys.stdout if stream is None else stream
    t0 = time.perf_counter()
    gold = goldens.load(goldens_path)
    on_gpu = mx.default_device() == mx.gpu
    results: list[Result] = []
    digest = problems.digest()
    if digest != gold.meta.get("problem_digest"):
        results.append(
            Result(
                "parity",
                "problem digest",
                "all",
                "error",
                None,
                f"this NumPy draws other random numbers ({digest} vs {gold.meta.get('problem_digest')}): "
                "the stored trajectories do not apply",
            )
        )
        gold = dataclasses.replace(gold, rows={})
    items = plan(gold, only, on_gpu)
    bar = _Progress(len(items), progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for section, name, mode, thunk in items:
                verdict, ratio, detail, seconds = _timed(thunk)
                r = Result(section, name, mode, verdict, ratio, detail, round(seconds, 3))
                results.append(r)
                bar.advance(r)
        finally:
            bar.close()
    print_tables(results, stream)
    sections = ("parity", "contract", "kernels", "native")
    counts = {s: {v: 0 for v in ("pass", "FAIL", "error", "skip")} for s in sections}
    for r in results:
        counts[r.section][r.verdict] += 1
    seconds = time.perf_counter() - t0
    failed = [r for r in results if r.failed]
    dev = device_report()
    summary = "; ".join(
        f"{s} " + ", ".join(f"{n} {v}" for v, n in c.items() if n) for s, c in counts.items() if any(c.values())
    )
    where = f"{dev['device']} ({dev['device_info'].get('device_name', '?')}, mlx {dev['mlx']})"
    print(f"\nmlx-optim check on {where}: {summary} in {seconds:.0f} s", file=stream)
    for r in failed:
        print(f"  {r.verdict}: {r.section} {r.name} ({r.mode}): {r.detail}", file=stream)
    disabled = [{"configuration": str(k), "reason": v} for k, v in kernels.disabled().items()]
    if disabled:
        print(f"  kernels disabled by their self-check in this run: {len(disabled)}", file=stream)
    if json_path:
        report = {
            "report": "mlx-optim check",
            **dev,
            "goldens": {"rows": len(gold.rows), "not_portable": gold.not_portable, **gold.meta},
            "only": only,
            "seconds": round(seconds, 1),
            "summary": counts,
            "failed": len(failed),
            "kernels_disabled": disabled,
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
            "results": [{**dataclasses.asdict(r), "ratio": _finite(r.ratio)} for r in results],
        }
        Path(json_path).write_text(json.dumps(report, indent=1, default=_json_default))
        print(f"report: {json_path} (attach it to an issue)", file=stream)
    return 1 if failed else 0


def _finite(x: float | None) -> float | str | None:
    """JSON has no inf / NaN: those ratios become strings."""
    return x if x is None or np.isfinite(x) else str(x)


def _json_default(x: Any):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
