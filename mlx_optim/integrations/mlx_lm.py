"""mlx-lm integration: any registered optimizer in mlx-lm's trainer and in its LoRA command.

Needs the ``lm`` extra (``pip install 'mlx-optim[lm]'``).

* :func:`build_optimizer` ``(name, config, learning_rate)`` builds an optimizer that
  ``mlx_lm.tuner.trainer.train(model, optimizer, ...)`` can drive with its compiled
  ``optimizer.update(model, grads)`` step. ``config`` is the dict an mlx-lm YAML config gives under
  ``optimizer_config: {name: {...}}`` (the constructor's keywords; ``lr`` may be written for
  ``learning_rate``; ``groups`` gives parameter groups, a list of ``{"params": glob, <tunable>: value}``,
  see :meth:`mlx_optim.base.Optimizer.set_groups`). Wrappers take their inner optimizer as ``optimizer`` /
  ``base_optimizer`` (a name, default ``adamw``) and ``optimizer_kwargs``. The SAM family is built
  ``transparent=True`` (one phase per update) unless the config says otherwise. The config key
  ``apply_if_finite: N`` (any optimizer) wraps it in :class:`mlx_optim.wrappers.ApplyIfFinite`
  (``max_consecutive_errors=N``): steps whose gradients hold a NaN or an infinity are skipped;
  ``applyiffinite`` is also a registered wrapper of its own.
* Optimizers that need more than the gradient (loss-driven ones such as EmoNavi, which need the loss;
  AdaHessian / SophiaH / SophiaG, which need Hessian information; a non-transparent SAM, which re-evaluates
  the gradient) are returned inside a :class:`TrainerAdapter`. mlx-lm's trainer does not hand the batch to
  the optimizer, so pass the adapter's loss to it: ``train(model, opt, ..., loss=opt.loss)``;
  ``opt.loss`` records the batch (inside the same compiled step) and the adapter's ``update`` runs
  ``step_with`` on it. ``mlx-optim lora`` does this for you.
* :func:`lora_main` is ``mlx-optim lora``: mlx-lm's own ``mlx_lm.lora`` (its argument parser, YAML config
  handling, dataset loading, LoRA layers and trainer) with ``--optimizer`` opened to the whole registry and
  ``--optimizer-config JSON``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

import mlx_optim

__all__ = ["build_optimizer", "TrainerAdapter", "lora_main", "needs_batch"]

DEFAULT_INNER = "adamw"


def _is_wrapper(cls: type) -> bool:
    from mlx_optim.wrappers import Wrapper

    return issubclass(cls, Wrapper)


def needs_batch(opt: optim.Optimizer) -> bool:
    """Whether ``opt.update(model, grads)`` alone cannot run it faithfully (it needs the loss or the batch)."""
    if getattr(opt, "needs_loss", False):
        return True
    if hasattr(opt, "estimate"):  # AdaHessian, SophiaH, SophiaG: curvature from the batch
        return True
    if getattr(opt, "num_phases", None) is not None and not getattr(opt, "transparent", False):
        return True
    inner = getattr(opt, "inner", None)
    return inner is not None and needs_batch(inner)


def build_optimizer(
    name: str,
    config: dict | None = None,
    learning_rate: Any = None,
    loss_fn: Callable | None = None,
) -> optim.Optimizer:
    """The registered optimizer ``name`` configured by ``config``, ready for ``mlx_lm``'s trainer.

    ``learning_rate`` (a float or a schedule, as mlx-lm's ``build_schedule`` makes) wins over a
    ``learning_rate``/``lr`` entry in ``config``. ``config["apply_if_finite"] = N`` wraps the optimizer in
    :class:`mlx_optim.wrappers.ApplyIfFinite` with ``max_consecutive_errors=N``. Unknown names raise
    ``ValueError`` with the closest names; unknown keywords raise ``TypeError`` naming them. See the module
    docstring for wrappers and for the optimizers returned inside a :class:`TrainerAdapter` (``loss_fn`` is
    then the trainer's loss, mlx-lm's ``default_loss`` by default).
    """
    cls = mlx_optim.load_optimizer(name)
    kwargs = dict(config or {})
    guard = kwargs.pop("apply_if_finite", None)
    kwargs = _config_keywords(name, kwargs)
    if learning_rate is not None:
        kwargs["learning_rate"] = learning_rate
    if "groups" in kwargs:  # parameter groups: a list of {"params": glob, <tunable>: value} (JSON / YAML)
        groups = kwargs["groups"]
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
            raise ValueError(f"{name}: optimizer config 'groups' must be a list of objects, got {groups!r}")
        kwargs["groups"] = [_config_keywords(f"{name} groups[{i}]", g) for i, g in enumerate(groups)]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(f"{cls.__name__} has no keyword {', '.join(map(repr, unknown))}; it takes {', '.join(params)}")
    if _is_wrapper(cls):
        first = next(iter(params))  # 'optimizer' (Lookahead) or 'base_optimizer' (SAM family)
        inner = kwargs.pop(first, DEFAULT_INNER)
        if "transparent" in params and "transparent" not in kwargs:
            kwargs["transparent"] = True
        opt = cls(inner, **kwargs)
    else:
        opt = cls(**kwargs)
    if guard is not None:
        from mlx_optim.wrappers import ApplyIfFinite

        opt = ApplyIfFinite(opt, max_consecutive_errors=guard)
    if needs_batch(opt):
        return TrainerAdapter(opt, loss_fn)
    return opt


def _config_keywords(owner: str, config: dict) -> dict:
    """Keywords from a JSON / YAML config: ``lr`` -> ``learning_rate``, lists of numbers -> tuples."""
    kwargs = dict(config)
    if "lr" in kwargs:
        if "learning_rate" in kwargs:
            raise ValueError(f"{owner}: optimizer config gives both 'lr' and 'learning_rate'")
        kwargs["learning_rate"] = kwargs.pop("lr")
    for k, v in kwargs.items():  # YAML writes tuples as lists
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            kwargs[k] = tuple(v)
    return kwargs


class TrainerAdapter(optim.Optimizer):
    """Runs an optimizer that needs the batch inside mlx-lm's trainer (see the module docstring).

    ``state`` and ``learning_rate`` are the wrapped optimizer's, so mlx-lm's compiled step captures and
    its checkpoints save the right arrays. Gradient accumulation (``grad_accumulation_steps > 1``) is not
    supported: the adapter steps on the last micro-batch only, so it raises.
    """

    def __init__(self, optimizer: optim.Optimizer, loss_fn: Callable | None = None):
        super().__init__()
        if loss_fn is None:
            from mlx_lm.tuner.trainer import default_loss

            loss_fn = default_loss
        self.optimizer = optimizer
        self._loss_fn = loss_fn
        self._batch: tuple | None = None

    # the trainer's loss, recording its batch
    def loss(self, model: nn.Module, *batch: Any, **kwargs: Any):
        if kwargs:
            raise ValueError("TrainerAdapter.loss takes the batch as positional arguments")
        self._batch = batch
        return self._loss_fn(model, *batch)

    def _scalar_loss(self, model: nn.Module, *batch: Any) -> mx.array:
        out = self._loss_fn(model, *batch)
        return out[0] if isinstance(out, tuple) else out

    def update(self, model: nn.Module, gradients: dict) -> None:
        if self._batch is None:
            raise RuntimeError(
                f"{type(self.optimizer).__name__} needs the batch: pass loss=opt.loss to mlx_lm's train() "
                "(and keep grad_accumulation_steps at 1)"
            )
        batch, self._batch = self._batch, None
        if needs_batch_beyond_loss(self.optimizer):
            lg = mlx_optim.value_and_grad(model, self._scalar_loss)
            self.optimizer.step_with(model, lg, *batch)
        else:  # only the loss value: the trainer's gradient is used
            self.optimizer.update(model, gradients, loss=self._scalar_loss(model, *batch))

    def apply_gradients(self, gradients: dict, parameters: dict) -> dict:
        raise RuntimeError("TrainerAdapter steps through update(model, grads) with the batch recorded by .loss")

    def init(self, parameters: dict) -> None:
        self.optimizer.init(parameters)

    @property
    def state(self) -> dict:
        return self.optimizer.state

    @state.setter
    def state(self, state: dict) -> None:
        self.optimizer.state = state

    @property
    def learning_rate(self) -> mx.array:
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.optimizer.learning_rate = value


def needs_batch_beyond_loss(opt: optim.Optimizer) -> bool:
    """True when the loss value is not enough (curvature, or a non-transparent SAM's second gradient)."""
    if hasattr(opt, "estimate"):
        return True
    if getattr(opt, "num_phases", None) is not None and not getattr(opt, "transparent", False):
        return True
    inner = getattr(opt, "inner", None)
    return inner is not None and needs_batch_beyond_loss(inner)


# ----------------------------------------------------------------------------- mlx-optim lora
def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of keyword arguments")
    return value


@contextlib.contextmanager
def _registry_optimizers() -> Iterator[None]:
    """Open ``mlx_lm.lora`` to the registry for the duration of one run.

    ``mlx_lm.lora`` picks its optimizer from a fixed list inside ``train_model``. Instead of copying
    ``train_model``, names in ``mlx_lm.lora``'s namespace are swapped for the run: ``build_parser``
    (``--optimizer`` takes any registered name, plus ``--optimizer-config``; ``--learning-rate``'s help no longer
    says Adam), ``run`` (builds the chosen optimizer once, so a bad name or keyword fails before the model and
    the data load), ``train_model`` (asks mlx-lm to build its plain ``adam``, keeping the real choice aside),
    ``print_lora_run_header`` (the banner names the real optimizer, not that ``adam``), ``save_config``
    (``adapter_config.json`` records the real optimizer and config) and ``train`` (mlx-lm's trainer, called with
    the registry optimizer, and with the adapter's batch-recording loss when needed). Everything else is
    mlx-lm's code.
    """
    import mlx_lm.lora as L

    names = ("build_parser", "run", "train_model", "print_lora_run_header", "save_config", "train")
    saved = {k: getattr(L, k) for k in names if hasattr(L, k)}
    chosen: dict[str, Any] = {}

    def build_parser():
        parser = saved["build_parser"]()
        for action in parser._actions:
            if action.dest == "optimizer":
                action.choices = None
                action.help = "Any registered optimizer (mlx-optim list); default adam."
            elif action.dest == "learning_rate":
                action.help = "Learning rate of the chosen optimizer."
        parser.add_argument(
            "--optimizer-config",
            dest="optimizer_kwargs",
            type=_json_dict,
            default=None,
            help="JSON keyword arguments for the optimizer, e.g. '{\"betas\": [0.9, 0.95]}' "
            "(merged over the YAML's optimizer_config[name]); parameter groups as "
            '\'{"groups": [{"params": "*norm*|*.bias", "weight_decay": 0}, '
            '{"params": "lm_head.*", "lr": 1e-5}]}\' (globs on parameter paths, first match wins)',
        )
        return parser

    def choose(args) -> None:
        name = args.optimizer.lower()
        config = dict((args.optimizer_config or {}).get(name) or {})
        config.update(getattr(args, "optimizer_kwargs", None) or {})
        lr = L.build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
        try:  # fail before any training, with the close names / the bad keyword
            probe = build_optimizer(name, config, lr)
        except (ValueError, TypeError) as e:
            raise OptimizerChoiceError(str(e)) from None
        if args.grad_accumulation_steps != 1 and isinstance(probe, TrainerAdapter):
            raise OptimizerChoiceError(f"{name} needs the batch in its update: use grad_accumulation_steps=1")
        chosen.update(name=name, config=config, lr=lr)

    def run(args, *rest, **kwargs):
        if args.train:  # before mlx-lm loads the model and the data (minutes for a large model)
            choose(args)
        return saved["run"](args, *rest, **kwargs)

    def print_lora_run_header(console, args):
        shown = argparse.Namespace(**vars(args))
        if chosen:
            shown.optimizer = chosen["name"]
        return saved["print_lora_run_header"](console, shown)

    def train_model(args, model, train_set, valid_set, training_callback=None):
        choose(args)
        real = (args.optimizer, args.optimizer_config)
        args.optimizer, args.optimizer_config = "adam", {}
        try:
            return saved["train_model"](args, model, train_set, valid_set, training_callback)
        finally:
            args.optimizer, args.optimizer_config = real

    def save_config(config, path):
        config = dict(config)
        if chosen:
            config["optimizer"] = chosen["name"]
            config["optimizer_config"] = {chosen["name"]: chosen["config"]}
        config.pop("optimizer_kwargs", None)
        return saved["save_config"](config, path)

    def train(*args, **kwargs):
        opt = build_optimizer(chosen["name"], chosen["config"], chosen["lr"])
        kwargs["optimizer"] = opt
        if isinstance(opt, TrainerAdapter):
            kwargs.setdefault("loss", opt.loss)
        return saved["train"](*args, **kwargs)

    replacements = {
        "build_parser": build_parser,
        "run": run,
        "train_model": train_model,
        "print_lora_run_header": print_lora_run_header,
        "save_config": save_config,
        "train": train,
    }
    for k in saved:
        setattr(L, k, replacements[k])
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(L, k, v)


class OptimizerChoiceError(ValueError):
    """A bad optimizer name or configuration given to ``mlx-optim lora`` (printed as one line)."""


def lora_main(argv: list[str] | None = None) -> int:
    """``mlx-optim lora ...``: ``mlx_lm.lora``'s main with the optimizer choice opened to the registry."""
    import mlx_lm.lora as L

    argv = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(argv):  # a bad --optimizer fails at once, before the model is loaded
        name = argv[i + 1] if a == "--optimizer" and i + 1 < len(argv) else None
        name = a.split("=", 1)[1] if a.startswith("--optimizer=") else name
        if name is not None:
            try:
                mlx_optim.load_optimizer(name)
            except ValueError as e:
                print(f"mlx-optim lora: error: {e}", file=sys.stderr)
                return 2
    old_argv = sys.argv
    sys.argv = ["mlx-optim lora", *argv]
    try:
        with _registry_optimizers():
            L.main()
    except OptimizerChoiceError as e:
        print(f"mlx-optim lora: error: {e}", file=sys.stderr)
        return 2
    finally:
        sys.argv = old_argv
    return 0
