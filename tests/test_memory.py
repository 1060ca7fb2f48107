"""Optimizer-state memory: bytes of state per parameter for every registered optimizer.

The parameter tree is transformer-like: an embedding (1000 x 64) and two blocks, each with
attention projections ``query_proj`` / ``key_proj`` / ``value_proj`` / ``out_proj`` (64 x 64 +
bias, the ``mlx.nn.MultiHeadAttention`` names), an MLP (64 x 256, 256 x 64, with biases) and two
layer norms (weight + bias). Each optimizer (with the keywords of its first parity row) takes
one step on it, then the state under the parameter paths is measured (global entries such as
``step`` and the hyperparameters are not counted). ``-s`` prints the table;
``scripts/memory_table.py`` prints it as markdown.

"Without first moment" excludes the state entries named like first-moment / momentum
buffers (``exp_avg``, ``momentum_buffer``, AdamMini's ``m``): the factored optimizers
(AdaFactor, AdafactorBigVision, CAME, SM3) and AdamMini (whose embedding is plain Adam by
design) keep less than one byte of second-moment state per matrix entry, but CAME and AdamMini
always keep a full first moment, and AdaFactor / AdafactorBigVision keep a (bfloat16 by
default) momentum unless it is switched off.
"""

from __future__ import annotations

import inspect

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from mlx_optim import quantized
from tests.parity.harness import all_rows

FIRST_MOMENT_KEYS = ("exp_avg", "momentum_buffer", "m")
# Keywords needed on this tree on top of the first parity row's (AdamMini: heads of the 64-wide attention).
OVERRIDES = {"adammini": {"num_embeds": 64, "num_heads": 4}}
FACTORED = ("adafactor", "adafactorbigvision", "came", "sm3")
NEEDS_LORA = ("lorarite",)  # updates LoRA factor pairs only


def transformer_tree(d: int = 64, vocab: int = 1000, hidden: int = 256, blocks: int = 2) -> dict:
    rng = np.random.default_rng(0)
    shapes = {"embedding.weight": (vocab, d)}
    for b in range(blocks):
        for proj in ("query_proj", "key_proj", "value_proj", "out_proj"):
            shapes[f"blocks.{b}.attention.{proj}.weight"] = (d, d)
            shapes[f"blocks.{b}.attention.{proj}.bias"] = (d,)
        shapes[f"blocks.{b}.mlp.fc1.weight"] = (hidden, d)
        shapes[f"blocks.{b}.mlp.fc1.bias"] = (hidden,)
        shapes[f"blocks.{b}.mlp.fc2.weight"] = (d, hidden)
        shapes[f"blocks.{b}.mlp.fc2.bias"] = (d,)
        for norm in ("norm1", "norm2"):
            shapes[f"blocks.{b}.{norm}.weight"] = (d,)
            shapes[f"blocks.{b}.{norm}.bias"] = (d,)
    flat = [(k, mx.array(rng.normal(scale=0.02, size=s).astype(np.float32))) for k, s in shapes.items()]
    return tree_unflatten(flat)


def first_row_kwargs() -> dict[str, dict]:
    kwargs: dict[str, dict] = {}
    for row in all_rows():
        kwargs.setdefault(row.name, dict(row.kwargs))
    return kwargs


def state_bytes(opt, params: dict) -> dict[str, dict[str, int]]:
    """Bytes of state per parameter path, split into ``first`` (first-moment buffers) and ``second`` (the rest).

    A state entry belongs to parameter ``p`` when ``p`` occurs in its flattened key, also under a
    wrapper's prefix (``base.<p>.exp_avg``); entries of no parameter (step, hyperparameters) are skipped.
    """
    paths = sorted((k for k, _ in tree_flatten(params)), key=len, reverse=True)
    out = {p: {"first": 0, "second": 0} for p in paths}
    for key, v in tree_flatten(opt.state):
        if not isinstance(v, mx.array):
            continue
        dotted = f".{key}."
        for p in paths:
            at = dotted.find(f".{p}.")
            if at >= 0:
                entry = dotted[at + len(p) + 2 :].split(".")[0]
                out[p]["first" if entry in FIRST_MOMENT_KEYS else "second"] += v.nbytes
                break
    return out


def measure(name: str, kwargs: dict, params: dict | None = None) -> dict[str, float]:
    """One step of optimizer ``name`` on the transformer tree; bytes of state per parameter entry."""
    params = transformer_tree() if params is None else params
    opt = mlx_optim.load_optimizer(name)(**kwargs)
    rng = np.random.default_rng(1)
    grads = tree_unflatten(
        [(k, mx.array(rng.normal(scale=0.01, size=v.shape).astype(np.float32))) for k, v in tree_flatten(params)]
    )
    # curvature-based optimizers (AdaHessian, Sophia) take a curvature estimate shaped like the gradients
    extra = {"hessian": grads} if "hessian" in inspect.signature(opt.apply_gradients).parameters else {}
    try:
        opt.apply_gradients(grads, params, loss=mx.array(1.0), **extra)  # lazy: sizes are known without evaluating
        stepped = True
    except (ValueError, TypeError):  # optimizers that do not step on gradients (SAM family, L-BFGS): init only
        opt = mlx_optim.load_optimizer(name)(**kwargs)
        opt.init(params)
        stepped = False
    sizes = {k: v.size for k, v in tree_flatten(params)}
    per = state_bytes(opt, params)
    matrices = [k for k, v in tree_flatten(params) if v.ndim >= 2]
    inner = [k for k in matrices if not k.startswith("embedding")]

    def ratio(keys, parts=("first", "second")):
        return sum(per[k][p] for k in keys for p in parts) / sum(sizes[k] for k in keys)

    return {
        "stepped": stepped,
        "total": ratio(list(sizes)),
        "matrices": ratio(matrices),
        "matrices_2nd": ratio(matrices, ("second",)),
        "inner_matrices_2nd": ratio(inner, ("second",)),
    }


QUANTIZED = ("int8", "int4")  # state_dtype values of mlx_optim.quantized, measured for optimizers with moments


def memory_table() -> list[tuple[str, dict[str, float] | str]]:
    """``(name, bytes-per-parameter dict)`` for every registered optimizer (an error string if it cannot step).

    Optimizers with per-element moments (``mlx_optim.quantized.moments_of``) also get ``int8`` / ``int4``: all
    params with that ``state_dtype`` (entries under 4096 elements, here the biases and norms, stay float32)."""
    kwargs = first_row_kwargs()
    params = transformer_tree()
    rows = []
    for name in mlx_optim.get_supported_optimizers():
        kw = {**kwargs.get(name, {}), **OVERRIDES.get(name, {})}
        try:
            row = measure(name, kw, params)
            if quantized.moments_of(mlx_optim.load_optimizer(name)):
                for fmt in QUANTIZED:
                    row[fmt] = measure(name, {**kw, "state_dtype": fmt}, params)["total"]
            rows.append((name, row))
        except Exception as exc:  # a table row, not a failure: the contract tests cover stepping
            rows.append((name, f"n/a ({type(exc).__name__}: {exc})"[:100]))
    return rows


COLUMNS = (
    ("total", "all params"),
    ("matrices", "matrices"),
    ("matrices_2nd", "matrices, without first moment"),
    ("inner_matrices_2nd", "non-embedding matrices, without first moment"),
    ("int8", 'all params, `state_dtype="int8"`'),
    ("int4", 'all params, `state_dtype="int4"`'),
)


def markdown(rows) -> str:
    lines = ["| optimizer | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows:
        if isinstance(m, dict):
            cells = [f"{m[key]:.3f}" if key in m else "-" for key, _ in COLUMNS]
        else:
            cells = [m] + [""] * (len(COLUMNS) - 1)
        if not isinstance(m, dict) or m["stepped"]:
            label = name
        elif name in NEEDS_LORA:
            label = f"{name} (this tree has no LoRA factor pair)"
        else:
            label = f"{name} (after init; steps via step_with)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tests
def test_memory_table_and_sublinear_second_moments():
    rows = memory_table()
    print("\noptimizer state, bytes per parameter entry (float32 parameters)\n" + markdown(rows))
    table = dict(rows)
    assert set(table) == set(mlx_optim.get_supported_optimizers())
    # the measure itself: Adam keeps two float32 buffers per entry
    assert table["adam"]["total"] == 8.0
    for name in FACTORED:
        assert table[name]["matrices_2nd"] < 1.0, (name, table[name])
    assert table["adammini"]["inner_matrices_2nd"] < 1.0, table["adammini"]
    # AdamMini's embedding is plain Adam by design: a full second moment there
    assert table["adammini"]["matrices_2nd"] > 1.0


def test_quantized_columns():
    """int8 / int4 state for the optimizers with per-element moments (biases and norms stay float32 here)."""
    table = dict(memory_table())
    # 1% of this tree's entries are in biases and norms (float32: 8 B for Adam), the rest 1 + 4/256 (int8) or
    # 0.5 + 4/128 (int4) bytes per moment: 2.031 * 0.99 + 8 * 0.01 = 2.09 and 1.062 * 0.99 + 0.08 = 1.13
    assert 2.03 < table["adamw"]["int8"] < 2.1 and 1.06 < table["adamw"]["int4"] < 1.14
    assert table["lion"]["int8"] < 1.1
    assert "int8" not in table["sm3"] and "int8" not in table["lookahead"]


def test_momentum_free_configurations_stay_below_one_byte():
    """Without their momentum buffers the factored optimizers keep < 1 byte per matrix entry in total."""
    free = {
        "adafactor": {"betas": (None, 0.999)},
        "adafactorbigvision": {"momentum": None},
        "sm3": {"momentum": 0.0},
    }
    for name, kw in free.items():
        m = measure(name, {"learning_rate": 1e-2, **kw})
        assert m["matrices"] < 1.0, (name, m)


def test_momentum_dtype_halves_the_momentum():
    bf16 = measure("adafactorbigvision", {"learning_rate": 1e-2})
    f32 = measure("adafactorbigvision", {"learning_rate": 1e-2, "momentum_dtype": mx.float32})
    assert np.isclose(f32["matrices"] - bf16["matrices"], 2.0)


def test_adammini_partition_from_paths():
    params = transformer_tree()
    opt = mlx_optim.AdamMini(learning_rate=1e-2, num_embeds=64, num_heads=4)
    opt.init(params)
    s = opt.state
    assert s["embedding"]["weight"]["v"].shape == (1000, 64)  # plain Adam
    assert s["blocks"][0]["attention"]["query_proj"]["weight"]["v_head"].shape == (4,)  # one per head
    assert s["blocks"][0]["attention"]["value_proj"]["weight"]["v_mean"].shape == ()  # one per tensor
    assert opt.block_kind("model.layers.0.self_attn.q_proj.weight") == "head"
    assert opt.block_kind("blocks.0.attn.qkv.weight") == "qkv"
    assert opt.block_kind("lm_head.weight") == "embed"
