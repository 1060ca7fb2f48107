"""Parity rows for the Keras seed's ``_sn`` / ``_e`` variants (mlx_optim/variants.py).

A variant is its base optimizer plus :mod:`mlx_optim.features`. Rows:

* ``off`` / ``off-<id>``: every feature switched off, the base's first two parity rows (same keywords,
  same reference with the feature keywords dropped, same runner). Together with
  ``tests/test_features.py`` (the trajectories equal the base's bit for bit) this ties each variant
  to its base's PyTorch reference. The first row's keywords are the ones ``tests/test_contract.py``
  uses; the seed-default configurations are exercised there by ``tests/test_features.py``.
* ``<feature>``: one feature on, the others off, against the pytorch_optimizer counterpart wrapped
  around the base's reference: ``Lookahead`` (lookahead), ``OrthoGrad`` (orthograd) and the ``agc``
  function applied to the gradients before the base's step (agc). The other features have no
  pytorch_optimizer counterpart on these bases; ``tests/test_features.py`` checks cautious, AGC,
  OrthoGrad, Lookahead, positive-negative momentum and subset norm on bases that have one.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import sys

import mlx_optim
from mlx_optim.features import FEATURE_DEFAULTS
from tests.parity import rows as rows_package
from tests.parity.harness import Row, reference_class

BASE_ROWS: dict[str, list[Row]] = {}
for _info in pkgutil.iter_modules(rows_package.__path__):
    if _info.name == "variants":
        continue
    for _row in importlib.import_module(f"{rows_package.__name__}.{_info.name}").ROWS:
        BASE_ROWS.setdefault(_row.name, []).append(_row)

VARIANTS = {
    "rangerqh_sn": "rangerqh",
    "rangerva_sn": "rangerva",
    "emonavi_sn": "emonavi",
    "emofact_sn": "emofact",
    "emozeal_sn": "emozeal",
    "dadaptadam_sn": "dadaptadam",
    "dadaptadan_sn": "dadaptadan",
    "ranger_e": "ranger",
    "ranger2020_e": "ranger2020",
    "ranger21_e": "ranger21",
    "sophiah_e": "sophiah",
    "sophiag_e": "sophiag",
    "soap_e": "soap",
    "conda_e": "conda",
    "muon_e": "muon",
    "distributedmuon_e": "distributedmuon",
    "adamuon_e": "adamuon",
    "adago_e": "adago",
    "dadaptlion_e": "dadaptlion",
}


def _off(name: str) -> dict:
    """Every feature keyword ``name`` exposes at its "off" value, and the base's own defaults restored."""
    cls = mlx_optim.load_optimizer(name)
    base = inspect.signature(mlx_optim.load_optimizer(VARIANTS[name])).parameters
    return {**{k: FEATURE_DEFAULTS[k] for k in cls.features}, **{k: base[k].default for k in cls.base_defaults}}


def _feature_keys(name: str) -> set:
    return set(mlx_optim.load_optimizer(name).features)


def _split(kw: dict, features) -> tuple[dict, dict]:
    """(the base's keywords, the feature keywords) of ``kw``; ``features`` are the variant's feature keywords."""
    return {k: v for k, v in kw.items() if k not in features}, {k: v for k, v in kw.items() if k in features}


def without_features(ref, features):
    """The base reference, called without the feature keywords."""

    def factory(params, **kw):
        return ref(params, **_split(kw, features)[0])

    return factory


def with_lookahead(ref, features):
    """pytorch_optimizer.Lookahead around the base reference."""
    import pytorch_optimizer

    def factory(params, **kw):
        base, feats = _split(kw, features)
        return pytorch_optimizer.Lookahead(
            ref(params, **base), k=feats["lookahead_merge_time"], alpha=feats["lookahead_blending_alpha"]
        )

    return factory


def with_counted_lookahead(ref, features):
    """pytorch_optimizer.Lookahead around DAdaptLion, each merge counted as one more DAdaptLion step
    (in ``s`` and the weighted numerator), as ``DAdaptLion_e.lookahead_moved`` does."""
    import math

    import pytorch_optimizer
    import torch

    class CountedLookahead(pytorch_optimizer.Lookahead):
        def update(self, group):
            fast = [p.detach().clone() for p in group["params"]]
            super().update(group)
            inner = self.optimizer.param_groups[0]
            one_minus_rho = 1.0 - math.sqrt(inner["betas"][1])
            aligned = torch.zeros(1, dtype=torch.float64)
            for p, f in zip(group["params"], fast):
                step, s = f - p, self.optimizer.state[p]["s"]
                aligned += torch.dot(step.flatten(), s.flatten()).double()
                s.add_(step, alpha=one_minus_rho)
            inner["numerator_weighted"] += one_minus_rho * aligned.to(inner["numerator_weighted"].dtype)

    def factory(params, **kw):
        base, feats = _split(kw, features)
        return CountedLookahead(
            ref(params, **base), k=feats["lookahead_merge_time"], alpha=feats["lookahead_blending_alpha"]
        )

    return factory


def with_orthograd(ref, features):
    """pytorch_optimizer.OrthoGrad around the base reference."""
    import pytorch_optimizer

    def factory(params, **kw):
        return pytorch_optimizer.OrthoGrad(ref(params, **_split(kw, features)[0]))

    return factory


class _AGCThen:
    """pytorch_optimizer's ``agc`` applied to every gradient, then the base reference's step."""

    def __init__(self, params, inner, agc_eps, agc_clip_val):
        self.params, self.inner, self.agc_eps, self.agc_clip_val = list(params), inner, agc_eps, agc_clip_val

    def step(self, closure=None):
        import torch
        from pytorch_optimizer.optimizer.agc import agc

        with torch.no_grad():
            for p in self.params:
                p.grad = agc(p, p.grad, self.agc_eps, self.agc_clip_val)
        return self.inner.step(closure)


def with_agc(ref, features):
    def factory(params, **kw):
        params = list(params)
        base, feats = _split(kw, features)
        return _AGCThen(params, ref(params, **base), feats.get("agc_eps", 1e-3), feats.get("agc_clip_val", 1e-2))

    return factory


def _feature_row(name: str, base_row: Row, feature: str, wrap, **extra) -> Row:
    kwargs = {**base_row.kwargs, **_off(name), feature: True, **extra}
    return dataclasses.replace(
        base_row, name=name, kwargs=kwargs, ref=wrap(reference_class(base_row), _feature_keys(name)), id=feature
    )


class _VariantAsBase:
    """``mlx_optim`` with ``load_optimizer(base)`` returning the variant (the rest unchanged)."""

    def __init__(self, base: str, variant: str):
        self.base, self.variant = base, variant

    def load_optimizer(self, name: str):
        return mlx_optim.load_optimizer(self.variant if name == self.base else name)

    def __getattr__(self, name: str):
        return getattr(mlx_optim, name)


def as_base_runner(runner, module, base: str, variant: str):
    """Run a base row's runner, which branches on ``row.name == base``, with the variant in the base's place."""

    def run(row: Row, compiled: bool):
        saved = module.mlx_optim
        module.mlx_optim = _VariantAsBase(base, variant)
        try:
            return runner(dataclasses.replace(row, name=base), compiled)
        finally:
            module.mlx_optim = saved

    return run


ROWS = []
for _name, _base in VARIANTS.items():
    for _row in BASE_ROWS[_base][:2]:
        _runner = _row.runner
        if _runner is not None and _base == "sophiag":  # its runners branch on the row's name
            _runner = as_base_runner(_runner, sys.modules[_runner.__module__], _base, _name)
        ROWS.append(
            dataclasses.replace(
                _row,
                name=_name,
                kwargs={**_off(_name), **_row.kwargs},  # the row's own base keywords win
                ref=without_features(reference_class(_row), _feature_keys(_name)),
                runner=_runner,
                id=f"off-{_row.id}" if _row.id else "off",
            )
        )

# One feature on, against its pytorch_optimizer counterpart around the base's reference.
_CONDA, _LION = BASE_ROWS["conda"][0], BASE_ROWS["dadaptlion"][0]
ROWS += [
    _feature_row("conda_e", _CONDA, "lookahead", with_lookahead, lookahead_merge_time=3, lookahead_blending_alpha=0.6),
    _feature_row("conda_e", _CONDA, "agc", with_agc),
    _feature_row("dadaptlion_e", _LION, "lookahead", with_counted_lookahead),
    _feature_row("dadaptlion_e", _LION, "orthograd", with_orthograd),
    _feature_row("dadaptlion_e", _LION, "agc", with_agc),
]
