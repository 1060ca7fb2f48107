"""``mlx-optim``: list, compare and benchmark the optimizers; LoRA fine-tuning through mlx-lm.

    mlx-optim list [--family F] [--filter GLOB[,GLOB...]]
    mlx-optim compare [--task spirals|rosenbrock|rastrigin|tiny-lm] [--optimizers a,b,c] [--steps N]
                      [--lr VALUE|auto] [--out DIR] [--seed S]
    mlx-optim bench [--optimizers a,b,c] [--tree small|lora|large] [--mode compiled|eager] [--steps N] [--rounds R]
    mlx-optim lora --model PATH --train --data DIR --optimizer NAME ...   (mlx-lm's LoRA; needs mlx-optim[lm])
    mlx-optim doctor [--json] [--library]     (which BLAS/LAPACK MLX runs on, measured; see mlx_optim.blas)
    mlx-optim check [--device cpu|gpu] [--only PATTERNS] [--json REPORT]  (this device against stored references)

Also ``python -m mlx_optim``. Tables and progress bars need the ``cli`` extra (rich, matplotlib):
``pip install 'mlx-optim[cli]'``. A wrapper is written ``wrapper:inner`` (``lookahead:adamw``, ``sam:sgd``), and
wrappers nest (``sam:lookahead:sgd``); a bare wrapper name wraps ``adamw``. A bad name, task or option, or an output
location that cannot be written, exits with status 2 and a one-line message before any training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx_optim
from mlx_optim import tasks as T

DEFAULT_OPTIMIZERS = "sgd,adam,adamw,nadam,radam,rmsprop,adamax,lion,tiger"
PROG = "mlx-optim"


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``mlx-optim compare: error: ...``) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _need(module: str, extra: str = "cli") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CLIError(f"this command needs {module}: pip install 'mlx-optim[{extra}]'") from None


def _console(stderr: bool = False):
    rich_console = _need("rich.console")
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 120  # pipes and CI logs: do not squeeze the tables to 80 columns
    return rich_console.Console(stderr=stderr, highlight=False, width=width)


def _specs(text: str) -> list[str]:
    specs = [s.strip().lower() for s in text.split(",") if s.strip()]
    if not specs:
        raise CLIError("--optimizers is empty; give comma-separated registry names (mlx-optim list)")
    for s in specs:
        try:
            T.parse_optimizer_spec(s)
        except ValueError as e:
            raise CLIError(str(e)) from None
    if len(set(specs)) != len(specs):
        raise CLIError(f"--optimizers names an optimizer twice: {text}")
    return specs


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _probe_writable(directory: Path, flag: str, given: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise CLIError(f"{flag}={str(given)!r}: cannot write in {str(directory)!r} ({e.strerror})") from None


def check_output_dir(out: Path, flag: str = "--out", given: Path | None = None) -> None:
    """Raise :class:`CLIError` unless ``out`` is, or can be created as, a directory this process can write in.

    Called before any training, so a bad ``--out`` costs nothing. Nothing is created. ``given`` is the path the
    user gave, when ``out`` is its parent directory.
    """
    given = out if given is None else given
    base = _nearest_existing(out)
    if not base.is_dir():
        where = "exists and is not a directory" if base == given else f"is inside {str(base)!r}, which is a file"
        raise CLIError(f"{flag}={str(given)!r} {where}")
    _probe_writable(base, flag, given)


def check_output_file(path: Path, flag: str) -> None:
    """Raise :class:`CLIError` unless ``path`` can be written (its missing parent directories created)."""
    if os.path.lexists(path):
        if path.is_dir():
            raise CLIError(f"{flag}={str(path)!r} is a directory; give a file name")
        try:
            with open(path, "ab"):  # append mode: the file is not changed
                pass
        except OSError as e:
            raise CLIError(f"{flag}={str(path)!r}: cannot write it ({e.strerror})") from None
        return
    check_output_dir(path.parent, flag, given=path)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (a diverged run's ``inf``, a ``nan``) replaced by ``None``.

    ``json.dumps`` would write them as ``Infinity`` / ``NaN``, which strict JSON parsers reject.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dump_json(value: Any) -> str:
    """Strict JSON text (:func:`strict_json`, ``allow_nan=False``)."""
    return json.dumps(strict_json(value), indent=1, allow_nan=False)


# ----------------------------------------------------------------------------- list
def catalog() -> dict[str, dict]:
    """Parity status and state bytes per parameter (generated by scripts/gen_reference_docs.py)."""
    try:
        from mlx_optim._catalog import CATALOG
    except ImportError:  # pragma: no cover - not generated yet
        return {}
    return CATALOG


def cmd_list(args: argparse.Namespace) -> int:
    patterns = [p.strip() for p in (args.filter or "").split(",") if p.strip()]
    names = mlx_optim.get_supported_optimizers(patterns) if patterns else mlx_optim.get_supported_optimizers()
    families = sorted({c.family for c in mlx_optim.OPTIMIZERS.values()})
    if args.family is not None:
        if args.family.lower() not in families:
            raise CLIError(f"unknown family {args.family!r}; choose one of {', '.join(families)}")
        names = [n for n in names if mlx_optim.load_optimizer(n).family == args.family.lower()]
    if not names:
        given = " and ".join(
            f"{flag}={value!r}" for flag, value in (("--family", args.family), ("--filter", args.filter)) if value
        )
        raise CLIError(f"no registered optimizer matches {given} (--filter takes comma-separated globs: 'ada*,lion')")
    cat = catalog()
    rich_table = _need("rich.table")
    table = rich_table.Table(title=f"{len(names)} of {len(mlx_optim.OPTIMIZERS)} optimizers")
    for col, kw in [
        ("name", {"style": "bold"}),
        ("family", {}),
        ("reference", {"overflow": "fold"}),
        ("parity", {"overflow": "fold"}),
        ("state B/param\n(int8/int4)", {"justify": "right"}),
    ]:
        table.add_column(col, **kw)
    for n in names:
        cls = mlx_optim.load_optimizer(n)
        info = cat.get(n, {})
        b = info.get("state_bytes_per_param")
        q8, q4 = info.get("state_bytes_per_param_int8"), info.get("state_bytes_per_param_int4")
        table.add_row(
            n,
            cls.family,
            cls.reference,
            info.get("parity", "not in the generated catalog"),
            ("n/a" if b is None else f"{b:.2f}") + ("" if q8 is None or q4 is None else f" ({q8:.2f}/{q4:.2f})"),
        )
    _console().print(table)
    return 0


# ----------------------------------------------------------------------------- compare
def _parse_lr(text: str) -> float | None:
    if text.lower() == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise CLIError(f"--lr={text!r} must be a positive number or 'auto'") from None
    if not (v > 0 and math.isfinite(v)):
        raise CLIError(f"--lr={text!r} must be a positive number or 'auto'")
    return v


def _fmt(v: float, digits: int = 4) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.{digits}g}"


def cmd_compare(args: argparse.Namespace) -> int:
    task = T.TASKS[args.task]
    specs = _specs(args.optimizers)
    lr = _parse_lr(args.lr)
    steps = args.steps if args.steps is not None else task.default_steps
    if steps < 1:
        raise CLIError(f"--steps={steps} must be at least 1")
    out = Path(args.out if args.out is not None else f"mlx-optim-runs/{task.name}")
    check_output_dir(out)
    progress_mod = _need("rich.progress")
    _need("matplotlib")
    console = _console(stderr=True)
    sweep_steps = max(20, steps // 4)

    results = []
    columns = [
        progress_mod.TextColumn("{task.description:<28}"),
        progress_mod.BarColumn(),
        progress_mod.MofNCompleteColumn(),
        progress_mod.TextColumn("{task.fields[info]}"),
        progress_mod.TimeElapsedColumn(),
    ]
    console.print(f"[bold]{task.name}[/]: {task.description}; {steps} steps, lr {'auto' if lr is None else lr}")
    with progress_mod.Progress(*columns, console=console, transient=False) as progress:
        for spec in specs:
            chosen, trials = lr, None
            if lr is None:
                grid = T.lr_grid(T.default_learning_rate(spec))
                bar = progress.add_task(f"{spec} lr sweep", total=len(grid), info="")

                def on_trial(done, total, bar=bar):
                    progress.update(bar, completed=done, total=total)

                chosen, trials = T.sweep(task, spec, sweep_steps, args.seed, on_trial=on_trial)
                progress.update(bar, info=f"lr {chosen:g}")
            bar = progress.add_task(spec, total=steps, info="")

            def on_step(i, loss, bar=bar):
                progress.update(bar, completed=i + 1, info=f"loss {_fmt(loss)}")

            try:
                r = T.train(task, spec, chosen, steps, args.seed, on_step=on_step)
            except Exception as e:  # one optimizer failing is a table row, not the end of the comparison
                r = {"optimizer": spec, "learning_rate": chosen, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
                progress.update(bar, info="[red]failed[/]")
            if trials is not None:
                r["lr_sweep"] = {"steps": sweep_steps, "trials": trials, "edge": T.sweep_edge(trials)}
            results.append(r)

    ranked = sorted(results, key=lambda r: (r.get("error") is not None, r.get("final", math.inf)))
    _print_ranking(task, ranked)
    _write_outputs(out, task, ranked, steps, args, lr is None)
    return 0


def _print_ranking(task: T.Task, ranked: list[dict]) -> None:
    rich_table = _need("rich.table")
    table = rich_table.Table(title=f"{task.name}: ranked by final loss (mean of the last 10% of steps)")
    cols = ["rank", "optimizer", "lr", "first", "final", "best", "ms/step", "state", "B/param"]
    if task.name == "spirals":
        cols.insert(6, "accuracy")
    for c in cols:
        table.add_column(c, justify="left" if c == "optimizer" else "right")
    edges = {"high": "^", "low": "v"}
    flagged = set()
    for i, r in enumerate(ranked, 1):
        edge = (r.get("lr_sweep") or {}).get("edge")
        lr_text = f"{r['learning_rate']:g}"
        if edge in edges:
            lr_text += f" [yellow]{edges[edge]}[/]"
            flagged.add(edge)
        if "error" in r:
            table.add_row(str(i), r["optimizer"], lr_text, f"[red]{_escape(r['error'])}[/]")
            continue
        row = [
            str(i),
            r["optimizer"],
            lr_text,
            _fmt(r["first"]),
            _fmt(r["final"]),
            _fmt(r["best"]),
            f"{r['ms_per_step']:.2f}",
            _bytes(r["state_bytes"]),
            f"{r['state_bytes'] / r['params']:.1f}",
        ]
        if task.name == "spirals":
            row.insert(6, f"{r['accuracy']:.3f}")
        table.add_row(*row)
    notes = {
        "high": "^ best at the largest learning rate the sweep tried: a larger --lr may do better",
        "low": "v best at the smallest learning rate the sweep tried: a smaller --lr may do better",
    }
    if flagged:
        table.caption = "\n".join(notes[e] for e in ("high", "low") if e in flagged)
    _console().print(table)


def _escape(text: str) -> str:
    """Rich markup escaping (error messages contain brackets such as MLX's ``[scatter]``)."""
    return _need("rich.markup").escape(text)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"  # pragma: no cover


def _write_outputs(out: Path, task: T.Task, ranked: list[dict], steps: int, args, auto: bool) -> None:
    """Write results.json and curves.png atomically: both appear in ``out`` or neither does."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        payload = {
            "task": task.name,
            "description": task.description,
            "steps": steps,
            "learning_rate": "auto" if auto else float(args.lr),
            "seed": args.seed,
            "mlx_optim": mlx_optim.__version__,
            "results": ranked,
        }
        (tmp / "results.json").write_text(dump_json(payload))
        plot_compare(task, ranked, tmp / "curves.png")
        for name in ("results.json", "curves.png"):
            os.replace(tmp / name, out / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out / 'curves.png'} and {out / 'results.json'}")


def _contour(ax, task: T.Task, levels: int = 30) -> None:
    import mlx.core as mx
    import numpy as np

    (x0, x1), (y0, y1) = task.bounds
    xs, ys = np.linspace(x0, x1, 200), np.linspace(y0, y1, 200)
    gx, gy = np.meshgrid(xs, ys)
    pts = mx.array(np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32))
    z = np.array(mx.vmap(task.function)(pts)).reshape(gx.shape)
    ax.contourf(gx, gy, np.log1p(z), levels=levels, cmap="viridis", alpha=0.85)
    ax.plot(*task.minimum, marker="*", color="red", markersize=12, linestyle="none", label="minimum")


def plot_trajectory(ax, task: T.Task, r: dict, color=None, label: str | None = None) -> None:
    import numpy as np

    traj = np.array(r.get("trajectory", []), dtype=float)
    if traj.size:
        (x0, x1), (y0, y1) = task.bounds
        keep = np.isfinite(traj).all(axis=1)
        traj = np.clip(traj[keep], [x0, y0], [x1, y1])
        ax.plot(traj[:, 0], traj[:, 1], "-", color=color, linewidth=1.2, label=label)
        ax.plot(traj[-1:, 0], traj[-1:, 1], "o", color=color, markersize=3)


def loss_label(r: dict) -> str:
    """A curve's legend entry: ``name, lr 0.01: 1.234`` (the final loss; ``^`` / ``v`` flag a sweep edge)."""
    edge = {"high": " ^", "low": " v"}.get((r.get("lr_sweep") or {}).get("edge"), "")
    return f"{r['optimizer']}, lr {r['learning_rate']:g}{edge}: {_fmt(r['final'])}"


def _loss_axis(ax, curves: list) -> None:
    """A log axis when the losses span more than a decade, with ticks at 1, 2 and 5 times each power of ten (a
    plain log axis labels only the powers of ten: two ticks for a loss going from 3 to 1.5); else a linear one."""
    import numpy as np
    from matplotlib import ticker

    values = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in curves]) if curves else np.array([])
    if values.size == 0 or values.max() / values.min() <= 10:
        return  # linear
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plot_compare(task: T.Task, ranked: list[dict], path: Path) -> None:
    """Write ``curves.png`` (:func:`compare_figure`)."""
    import matplotlib.pyplot as plt

    fig = compare_figure(task, ranked)
    try:
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def compare_figure(task: T.Task, ranked: list[dict]):
    """Each optimizer's loss per step (legend: learning rate and final loss); for the 2-D functions also its path
    over the contours. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in ranked if "error" not in r]
    panels = 2 if task.is_function else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.8 * panels, 4.8), squeeze=False)
    colors = plt.get_cmap("tab10" if len(ok) <= 10 else "tab20")
    ax = axes[0][-1]
    curves = []
    k = 1
    for i, r in enumerate(ok):
        y = np.array(r["losses"], dtype=float)
        k = max(1, len(y) // 50) if not task.is_function else 1  # light smoothing of minibatch noise
        if k > 1:
            y = np.convolve(y, np.ones(k) / k, mode="valid")
        curves.append(y)
        ax.plot(np.arange(len(y)) + k, y, color=colors(i), linewidth=1.2, label=loss_label(r))
    _loss_axis(ax, curves)
    ax.set_xlabel("step")
    ax.set_ylabel("loss" + (f" (moving average of {k} steps)" if k > 1 else ""))
    ax.set_title(f"{task.name}: loss")
    ax.grid(True, which="major", alpha=0.3)
    if ok:
        title = "optimizer, learning rate: final loss (mean of the last 10%)"
        legend = ax.legend(fontsize=7, title=title, title_fontsize=7)
        legend.get_title().set_ha("left")
    if any((r.get("lr_sweep") or {}).get("edge") for r in ok):
        fig.text(0.01, 0.01, "^ / v: best learning rate at the top / bottom of the sweep", fontsize=7)
    if task.is_function:
        ax0 = axes[0][0]
        _contour(ax0, task)
        for i, r in enumerate(ok):
            plot_trajectory(ax0, task, r, colors(i), r["optimizer"])
        if ok and ok[0].get("trajectory"):
            x0, y0 = ok[0]["trajectory"][0]
            ax0.plot(x0, y0, marker="s", color="white", markeredgecolor="black", linestyle="none", label="start")
        ax0.set_xlabel("x")
        ax0.set_ylabel("y")
        ax0.set_title(f"{task.name}: trajectories (dot: last point)")
        ax0.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# ----------------------------------------------------------------------------- bench
def _mlx_equivalent(name: str, lr: float):
    """mlx.optimizers' built-in counterpart of a registry name, configured like the torch reference."""
    import mlx.optimizers as optim

    table = {
        "adam": lambda: optim.Adam(lr, bias_correction=True),
        "adamw": lambda: optim.AdamW(lr, bias_correction=True),
        "sgd": lambda: optim.SGD(lr),
        "rmsprop": lambda: optim.RMSprop(lr),
        "adagrad": lambda: optim.Adagrad(lr),
        "adadelta": lambda: optim.AdaDelta(lr),
        "adamax": lambda: optim.Adamax(lr),
        "lion": lambda: optim.Lion(lr),
        "adafactor": lambda: optim.Adafactor(lr),
        "muon": lambda: optim.Muon(lr),
    }
    return table[name]() if name in table else None


def bench_tree(kind: str) -> dict:
    import mlx.core as mx

    mx.random.seed(0)
    if kind == "large":
        return {f"w{i}": mx.random.normal((2048, 2048)) * 0.02 for i in range(6)}
    if kind == "lora":
        return {
            f"layer{i}": {"lora_a": mx.random.normal((8, 2048)) * 0.02, "lora_b": mx.random.normal((2048, 8)) * 0.02}
            for i in range(112)
        }
    return dict(T.TinyLM(40).parameters())


BENCH_TREES = {
    "small": "tiny-lm's transformer (2 blocks, d=64, ~110k parameters, 29 leaves)",
    "lora": "LoRA-like: 224 leaves alternating 8x2048 and 2048x8 (~3.7M parameters)",
    "large": "six 2048x2048 matrices (~25.2M parameters)",
}


class _Runner:
    def __init__(self, opt, tree: dict, grads: dict, compiled: bool):
        import mlx.core as mx
        from mlx.utils import tree_map

        self.opt, self.grads = opt, grads
        self.holder = {"params": tree_map(lambda x: x, tree)}
        opt.init(self.holder["params"])
        loss = mx.array(1.0)
        kw = {"loss": loss} if isinstance(opt, mlx_optim.Optimizer) else {}

        def step(g):
            self.holder["params"] = opt.apply_gradients(g, self.holder["params"], **kw)

        if compiled:
            state = [self.holder, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)
        self._step = step
        self.run(2)  # warm-up: tracing, JIT, allocator

    def run(self, n: int) -> float:
        import mlx.core as mx

        start = time.perf_counter()
        for _ in range(n):
            self._step(self.grads)
            mx.eval(self.holder, self.opt.state)
        return (time.perf_counter() - start) / n * 1000


def _bench_opt(spec: str, lr: float):
    """``spec`` built for timing ``apply_gradients``: multi-evaluation optimizers run one phase per call."""
    return T.make_optimizer(spec, lr, transparent=True)


def bench_skip_reason(opt) -> str | None:
    """Why ``bench`` cannot time ``opt`` (it times ``apply_gradients`` on fixed gradients), or None."""
    if not T.compilable(opt):
        return "its step re-evaluates the loss (opt.step_with only); bench times updates from fixed gradients"
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    specs = _specs(args.optimizers)
    if args.steps < 1 or args.rounds < 1:
        raise CLIError("--steps and --rounds must be at least 1")
    if args.json:
        check_output_file(Path(args.json), "--json")
    tree = bench_tree(args.tree)
    mx.random.seed(1)
    grads = {k: v for k, v in bench_tree(args.tree).items()}
    mx.eval(tree, grads)
    n = sum(v.size for _, v in tree_flatten(tree))
    compiled = args.mode == "compiled"
    progress_mod = _need("rich.progress")
    rich_table = _need("rich.table")
    console = _console(stderr=True)
    rows = []
    with progress_mod.Progress(console=console) as progress:
        bar = progress.add_task("benchmarking", total=len(specs))
        for spec in specs:
            row = {"optimizer": spec}
            try:
                opt = _bench_opt(spec, args.lr)
                reason = bench_skip_reason(opt)
                if reason is not None:
                    rows.append({**row, "skipped": reason})
                    progress.advance(bar)
                    continue
                runners = {"mlx_optim": _Runner(opt, tree, grads, compiled)}
                builtin = _mlx_equivalent(spec, args.lr)
                if builtin is not None:
                    runners["mlx"] = _Runner(builtin, tree, grads, compiled)
                times: dict[str, list[float]] = {k: [] for k in runners}
                for i in range(args.rounds):
                    order = list(runners.items())
                    for key, runner in order if i % 2 == 0 else order[::-1]:  # interleaved
                        times[key].append(runner.run(args.steps))
                for key, runner in runners.items():
                    row[f"ms_{key}"] = statistics.median(times[key])
                    state = [v for k, v in tree_flatten(runner.opt.state) if isinstance(v, mx.array)]
                    row[f"bytes_{key}"] = sum(v.nbytes for v in state) / n
            except Exception as e:  # noqa: BLE001 - a row, not the end of the benchmark
                row["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
            rows.append(row)
            progress.advance(bar)
    table = rich_table.Table(
        title=f"{args.tree} tree ({n:,} parameters), {args.mode}; median ms/step of {args.rounds} rounds x "
        f"{args.steps} steps; ratio < 1: mlx_optim is faster"
    )
    for c in ("optimizer", "mlx_optim ms", "mlx ms", "ratio", "mlx_optim B/param", "mlx B/param"):
        table.add_column(c, justify="left" if c == "optimizer" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["optimizer"], f"[red]{_escape(r['error'])}[/]")
            continue
        if "skipped" in r:
            table.add_row(r["optimizer"], f"[yellow]skipped: {_escape(r['skipped'])}[/]")
            continue
        has = "ms_mlx" in r
        table.add_row(
            r["optimizer"],
            f"{r['ms_mlx_optim']:.2f}",
            f"{r['ms_mlx']:.2f}" if has else "-",
            f"{r['ms_mlx_optim'] / r['ms_mlx']:.2f}" if has else "-",
            f"{r['bytes_mlx_optim']:.2f}",
            f"{r['bytes_mlx']:.2f}" if has else "-",
        )
    _console().print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_json({"tree": args.tree, "mode": args.mode, "rows": rows}))
    failed = [r["optimizer"] for r in rows if "error" in r]
    if failed:
        print(f"{PROG} bench: error: {', '.join(failed)} failed (see the table)", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- lora
def cmd_lora(argv: list[str]) -> int:
    _need("mlx_lm", "lm")
    from mlx_optim.integrations.mlx_lm import lora_main

    return lora_main(argv)


# ----------------------------------------------------------------------------- jit-pch
def cmd_jit_pch(args: argparse.Namespace) -> int:
    from mlx_optim import jit_pch

    try:
        path = jit_pch.build(force=args.force)
    except RuntimeError as e:
        raise CLIError(str(e)) from None
    print(f"{path} ({path.stat().st_size / 2**20:.0f} MiB): MLX's CPU JIT builds its kernels with it")
    return 0


# ----------------------------------------------------------------------------- doctor
def cmd_doctor(args: argparse.Namespace) -> int:
    """Which BLAS/LAPACK MLX's CPU backend runs on (see mlx_optim.blas), measured; or only the library's path."""
    from mlx_optim import blas

    if args.library:
        lib = blas.find_library() if os.environ.get(blas.ENV, "").strip().lower() not in blas.OFF else None
        if lib:
            print(lib)
        return 0
    from mlx_optim import native

    r = {**blas.report(), **native.bf16_report()}
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    setting = r["setting"]
    if not r["blas"]:
        state = "not inspected (not Linux: MLX uses the platform's BLAS)"
    elif r["fast_blas"]:
        state = "yes"
    elif setting.lower() in blas.OFF:
        state = f"no: {blas.ENV}={setting} keeps MLX's bundled reference BLAS"
    elif r["available"]:
        state = f"no: MLX's bundled reference BLAS, although {r['available']} is there ({r['reason']})"
    else:
        state = (
            "no: MLX's bundled reference BLAS; install OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread)"
        )
    rows = [
        ("mlx-optim", mlx_optim.__version__),
        ("mlx", r["mlx"]),
        ("device", r["device"]),
        ("platform", r["platform"]),
        ("BLAS", ", ".join(r["blas"]) or "-"),
        ("LAPACK", ", ".join(r["lapack"]) or "-"),
        ("fast BLAS", state),
        (blas.ENV, setting or "(unset)"),
        (f"matmul {r['matmul_n']}^3 f32 (cpu)", f"{r['matmul_ms']:.1f} ms, {r['matmul_gflops']:.1f} GFLOP/s"),
        (f"eigh {r['eigh_n']} f32 (cpu)", f"{r['eigh_ms']:.1f} ms"),
    ]
    if r["bf16_native"]:
        n = r["bf16_gemm_n"]
        gemm = f"{r['bf16_gemm_ms']:.1f} ms, {r['bf16_gemm_gflops']:.1f} GFLOP/s (MKL: {r['mkl']})"
        default = "bfloat16" if r["bf16_default"] else "float32 (no AVX-512: the float32 iteration is faster)"
        passes = f"passes on {r['bf16_openmp']}" if r["bf16_openmp"] else "passes serial (MKL is sequential)"
        engine = "AMX tiles" if r["bf16_amx"] else "MKL GEMM"
        rows += [
            ("bf16 Newton-Schulz", f"native, {engine} ({passes}); ns_dtype=None is {default} here"),
            (f"gemm {n}^3 bf16 (cpu)", gemm),
        ]
    else:
        rows.append(("bf16 Newton-Schulz", f"MLX matmul, ns_dtype=None is float32 here ({r['bf16_reason']})"))
    gram = "OpenBLAS SYRK" if native.gram_available() else f"MLX matmul ({native.gram_unavailable_reason()})"
    rows.append(("Gram statistics u u^T", gram))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k + ':':<{width + 1}} {v}")
    return 0


# ----------------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    import mlx.core as mx

    if args.device == "gpu":
        if not (mx.metal.is_available() or mx.cuda.is_available()):
            raise CLIError("--device gpu: this MLX build has no GPU backend (no Metal, no CUDA)")
        mx.set_default_device(mx.gpu)
    elif args.device == "cpu":
        mx.set_default_device(mx.cpu)
    from mlx_optim.check.runner import check, plan_size

    only = [p.strip() for p in args.only.split(",") if p.strip()] if args.only else None
    if only and plan_size(only) == 0:
        raise CLIError(f"--only {args.only}: no parity row, optimizer, kernel or native check matches")
    return check(only=only, json_path=args.json, progress=not args.no_progress)


# ----------------------------------------------------------------------------- main
def build_parser() -> Parser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mlx-optim {mlx_optim.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser("list", help="the registered optimizers: family, reference, parity, state memory")
    p.add_argument("--family", help="only this family (e.g. adam, sgd, sign, wrapper)")
    p.add_argument("--filter", help="glob patterns on the name, comma-separated, e.g. 'ada*,lion'")

    p = sub.add_parser("compare", help="train several optimizers on a built-in task; ranked table, PNG and JSON")
    p.add_argument("--task", default=T.DEFAULT_TASK, choices=sorted(T.TASKS), help=f"default {T.DEFAULT_TASK}")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS, help="comma-separated names; wrapper:inner")
    p.add_argument("--steps", type=int, help="training steps per optimizer (default: the task's)")
    p.add_argument(
        "--lr",
        default="auto",
        help="learning rate for every optimizer, or 'auto' (default): a sweep of short runs at 0.1x..100x each "
        "optimizer's default learning rate picks it, going further while the best is at the edge of the range "
        f"(at most {T.SWEEP_EXTRA_TRIALS} more runs; a learning rate still at the edge is marked ^ or v)",
    )
    p.add_argument("--out", help="output directory (default mlx-optim-runs/<task>)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("bench", help="step time and state memory against mlx.optimizers' built-ins")
    p.add_argument("--optimizers", default="adam,adamw,sgd,lion,rmsprop")
    p.add_argument(
        "--tree",
        default="lora",
        choices=sorted(BENCH_TREES),
        help="; ".join(f"{k}: {v}" for k, v in BENCH_TREES.items()),
    )
    p.add_argument("--mode", default="compiled", choices=["compiled", "eager"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="also write the rows to this JSON file")

    p = sub.add_parser(
        "jit-pch",
        help="precompile the header of MLX's CPU JIT kernels (writes into the mlx package; builds ~4x faster)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if it is up to date")

    p = sub.add_parser("doctor", help="which BLAS/LAPACK MLX's CPU backend uses, and its measured matmul speed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--library", action="store_true", help="only print the optimized library's path (LD_PRELOAD)")

    sub.add_parser(
        "lora",
        help="mlx-lm's LoRA fine-tuning with any registered optimizer (mlx-optim lora --help)",
        add_help=False,
    )

    p = sub.add_parser(
        "check",
        help="verify this device without PyTorch: the parity rows against their stored reference trajectories "
        "(eager and compiled), the optimizer contract and the fused GPU kernels; table, JSON report, exit 1 on "
        "any failure",
    )
    p.add_argument("--device", choices=["cpu", "gpu"], help="default: MLX's default device")
    p.add_argument("--only", help="comma-separated globs on row labels and optimizer names, e.g. 'adam*,sgd'")
    p.add_argument("--json", help="write the report (device, MLX version, platform, every result) to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / per-check lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lora":  # mlx-lm's own parser handles the rest
        commands = {}
    else:
        commands = {
            "list": cmd_list,
            "compare": cmd_compare,
            "bench": cmd_bench,
            "jit-pch": cmd_jit_pch,
            "doctor": cmd_doctor,
        }
        commands["check"] = cmd_check
    try:
        if not commands:
            return cmd_lora(argv[1:])
        args = build_parser().parse_args(argv)
        return commands[args.command](args)
    except CLIError as e:
        cmd = f" {argv[0]}" if argv else ""
        print(f"{PROG}{cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
