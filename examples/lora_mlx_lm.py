"""LoRA fine-tuning through mlx-lm's own trainer with any registered optimizer (needs ``mlx-optim[lm]``).

    python examples/lora_mlx_lm.py [--optimizer adamw] [--optimizer-config '{"betas": [0.9, 0.95]}'] [--iters 40]

For a real model and data set use the command line, which is mlx-lm's LoRA command with the optimizer choice
opened to the registry (YAML configs may say ``optimizer: sophiah`` with ``optimizer_config: {sophiah: {...}}``):

    mlx-optim lora --model <path or hub id> --train --data <dir> --optimizer sophiah --learning-rate 1e-4

This script shows the library path the command uses, on a tiny randomly initialised llama (no download):
``build_optimizer(name, config, learning_rate)`` gives an optimizer that ``mlx_lm.tuner.trainer.train`` drives
with its compiled ``optimizer.update(model, grads)`` step; optimizers that need the batch (SophiaH, AdaHessian,
loss-driven ones) come wrapped in a ``TrainerAdapter`` whose ``.loss`` is passed to ``train``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_lm.models import llama
from mlx_lm.tuner.datasets import CacheDataset
from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train
from mlx_lm.tuner.utils import linear_to_lora_layers

from mlx_optim.integrations.mlx_lm import TrainerAdapter, build_optimizer


class TokenRows:
    """mlx-lm's dataset interface without a tokenizer: items are token-id lists."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self):
        return len(self.rows)

    def process(self, row):
        return row


def pattern_rows(n: int, seed: int) -> TokenRows:
    rng = np.random.default_rng(seed)
    return TokenRows([[int((a + 3 * i) % 29) + 1 for i in range(24)] for a in rng.integers(0, 29, size=n)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--optimizer-config", type=json.loads, default={})
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--adapter-path", default=None, help="directory for adapters.safetensors (default: temp)")
    args = parser.parse_args(argv)

    mx.random.seed(0)
    model = llama.Model(
        llama.ModelArgs(
            model_type="llama",
            hidden_size=32,
            num_hidden_layers=2,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            vocab_size=32,
        )
    )
    model.freeze()
    linear_to_lora_layers(model, 2, {"rank": 4, "dropout": 0.0, "scale": 10.0})

    opt = build_optimizer(args.optimizer, args.optimizer_config, learning_rate=args.learning_rate)
    extra = {"loss": opt.loss} if isinstance(opt, TrainerAdapter) else {}
    train_set, valid_set = CacheDataset(pattern_rows(64, 0)), CacheDataset(pattern_rows(16, 1))
    out = Path(args.adapter_path or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    before = evaluate(model, valid_set, batch_size=4, num_batches=4, max_seq_length=64)
    train(
        model=model,
        optimizer=opt,
        train_dataset=train_set,
        val_dataset=valid_set,
        args=TrainingArgs(
            batch_size=4,
            iters=args.iters,
            val_batches=2,
            steps_per_report=10,
            steps_per_eval=max(args.iters, 1),
            steps_per_save=max(args.iters, 1),
            adapter_file=str(out / "adapters.safetensors"),
            max_seq_length=64,
        ),
        **extra,
    )
    after = evaluate(model, valid_set, batch_size=4, num_batches=4, max_seq_length=64)
    print(f"{args.optimizer}: validation loss {before:.3f} -> {after:.3f}; adapters in {out / 'adapters.safetensors'}")
    return 0 if after < before and (out / "adapters.safetensors").exists() else 1


if __name__ == "__main__":
    raise SystemExit(main())
