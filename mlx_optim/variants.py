"""The Keras seed's ``_sn`` and ``_e`` variants: a base optimizer plus :mod:`mlx_optim.features`.

Each class is ``Features`` + its base optimizer, with the seed's defaults for the feature keywords it
exposes (catalog rows 105-136); everything else (keywords, their order and defaults, the math) is the
base's. With every feature switched off a variant is its base optimizer, bit for bit
(``tests/test_features.py``); the base's parity rows check it against its PyTorch reference.
Registry names are the seed class names in lowercase.

Seed keywords not exposed, and why (also in each class's docstring):

* ``sn`` on SophiaH_e / SophiaG_e / DAdaptLion_e: those optimizers keep no element-wise EMA of squared
  gradients (Sophia's curvature EMA is not a second moment; Lion has none), so subset-norm has
  nothing to act on; on SOAP_e: SOAP's second moment is permuted with its eigenbasis at every refresh;
* ``pnm`` / ``lookahead`` on the Ranger ``_e`` variants: the seed lists neither (Ranger21 has its own
  positive-negative momentum, the Ranger line its own Lookahead);
* ``sn`` on the Muon family: with the seed's ``sophia=True`` the AdamW fallback keeps no squared-gradient
  moment (and the Muon branch none element-wise);
* DAdaptLion_e's GaLore projector (``update_proj_gap``, ``scale``, ``projection_type``) and
  ``muon_ortho`` / ``muon_steps``: not ported (the seed's defaults, ``None`` / ``False``, switch them off).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim.features import Features
from mlx_optim.optimizers.adago import AdaGO
from mlx_optim.optimizers.adamuon import AdaMuon
from mlx_optim.optimizers.conda import Conda
from mlx_optim.optimizers.dadapt import DAdaptAdam, DAdaptAdan, DAdaptLion
from mlx_optim.optimizers.distributedmuon import DistributedMuon
from mlx_optim.optimizers.emo import EmoFact, EmoNavi, EmoZeal
from mlx_optim.optimizers.muon import Muon
from mlx_optim.optimizers.ranger import Ranger, Ranger2020, RangerQH, RangerVA
from mlx_optim.optimizers.ranger21 import Ranger21
from mlx_optim.optimizers.soap import SOAP
from mlx_optim.optimizers.sophia import SophiaG, SophiaH
from mlx_optim.registry import register

INF = float("inf")
SN = {"sn": True, "subset_size": -1}
DADAPT = {"d0": 1e-6, "growth_rate": INF, "DAdapt": True}
LOOKAHEAD = {"lookahead_merge_time": 5, "lookahead_blending_alpha": 0.5, "lookahead": True}
TRUST = {"trust_ratio": False, "trust_clip": False}
AEM = {"aem": True, "alpha": 5.0, "beta3": 0.9999, "t_alpha_beta3": None}
AEM_OFF = {**AEM, "aem": False}
SOPHIA = {"sophia": True, "p": 1e-2, "update_period": 10, "num_samples": 1, "hessian_distribution": "gaussian"}


def variant(cls: type) -> type:
    """Register ``cls`` and append its composition (base + features with defaults) to its docstring."""
    base = next(c for c in cls.__mro__[1:] if c is not Features and not issubclass(c, Features) and c.name)
    cls.family = base.family
    cls.reference = f"mlx_optim.{base.__name__} ({base.reference}) + mlx_optim.features"
    cls.needs_loss = base.needs_loss
    on = ", ".join(f"``{k}={v!r}``" for k, v in cls.features.items())
    changed = "".join(f", ``{k}={v!r}``" for k, v in cls.base_defaults.items())
    others = f" Base keywords with the seed's default{changed}; every other" if changed else " Every other"
    cls.__doc__ = (
        f"{(cls.__doc__ or '').rstrip()}\n\n    Composition: :class:`~mlx_optim.{base.__name__}` (``{base.name}``) + "
        f":mod:`mlx_optim.features` with {on}.{others} keyword and its default is the base's.\n"
    )
    return register(cls)


def _features(*parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    out.update(extra)
    return out


# ---------------------------------------------------------------------------- _sn: subset-norm second moments
@variant
class RangerQH_sn(Features, RangerQH):  # noqa: N801 (the seed's class name)
    """RangerQH_sn (Keras seed): RangerQH with subset-norm second moments (QHAdam's instantaneous
    :math:`g^2` term is summed over the same subsets)."""

    name = "rangerqh_sn"
    features = _features(SN)


@variant
class RangerVA_sn(Features, RangerVA):  # noqa: N801
    """RangerVA_sn (Keras seed): RangerVA with subset-norm second moments (``exp_avg_sq`` and its AMSGrad
    maximum kept per subset; ``grad_transformer='abs'`` sums :math:`|g|` over the subset)."""

    name = "rangerva_sn"
    features = _features(SN)


@variant
class EmoNavi_sn(Features, EmoNavi):  # noqa: N801
    """EmoNavi_sn (Keras seed): EmoNavi with subset-norm second moments. The seed lists only ``sn``;
    ``subset_size`` is -1 (about :math:`\\sqrt{n}` per subset)."""

    name = "emonavi_sn"
    features = _features({"sn": True})


@variant
class EmoFact_sn(Features, EmoFact):  # noqa: N801
    """EmoFact_sn (Keras seed): EmoFact with subset-norm second moments for its vectors (matrices already
    keep factored row/column statistics). The seed's text also calls ``sn`` a "sign-based" mode; we use
    the subset-norm meaning every other ``_sn`` section gives it."""

    name = "emofact_sn"
    features = _features(SN)


@variant
class EmoZeal_sn(Features, EmoZeal):  # noqa: N801
    """EmoZeal_sn (Keras seed): EmoZeal with subset-norm second moments for its vectors (matrices keep
    factored row/column statistics)."""

    name = "emozeal_sn"
    features = _features(SN)


@variant
class DAdaptAdam_sn(Features, DAdaptAdam):  # noqa: N801
    """DAdaptAdam_sn (Keras seed): DAdaptAdam with subset-norm second moments (also in D-Adaptation's
    numerator :math:`\\langle g, s/(\\sqrt{v}+\\epsilon)\\rangle`)."""

    name = "dadaptadam_sn"
    features = _features(SN)


@variant
class DAdaptAdan_sn(Features, DAdaptAdan):  # noqa: N801
    """DAdaptAdan_sn (Keras seed): DAdaptAdan with subset-norm second moments (also in D-Adaptation's
    weighted sums)."""

    name = "dadaptadan_sn"
    features = _features(SN)


# ---------------------------------------------------------------------------- _e: the extended bundles
@variant
class Ranger_e(Features, Ranger):  # noqa: N801
    """Ranger_e (Keras seed): Ranger with subset-norm second moments and D-Adaptation of the RAdam step
    (taken before Ranger's own Lookahead). With D-Adaptation ``learning_rate`` multiplies the adapted
    ``d`` (from ``d0=1e-6``): the seed keeps ``learning_rate=1e-3``, D-Adaptation's convention is 1."""

    name = "ranger_e"
    features = _features(SN, DADAPT)


@variant
class Ranger2020_e(Features, Ranger2020):  # noqa: N801
    """Ranger2020_e (Keras seed): Ranger2020 with subset-norm second moments and D-Adaptation of the
    step before the built-in Lookahead (see :class:`Ranger_e`)."""

    name = "ranger2020_e"
    features = _features(SN, DADAPT)


@variant
class Ranger21_e(Features, Ranger21):  # noqa: N801
    """Ranger21_e (Keras seed): Ranger21 with subset-norm second moments (``variance_ma`` and its AMSGrad
    maximum per subset; the global variance normalizer averages the per-element view) and D-Adaptation of
    the step before the built-in Lookahead (see :class:`Ranger_e`)."""

    name = "ranger21_e"
    features = _features(SN, DADAPT)


@variant
class SophiaH_e(Features, SophiaH):  # noqa: N801
    """SophiaH_e (Keras seed): SophiaH (Hutchinson curvature, ``opt.step_with``) with OrthoGrad, AGC,
    positive-negative momentum, cautious masking, D-Adaptation, optional trust ratio and Lookahead.
    The seed's ``sn``/``subset_size`` are not exposed: Sophia keeps no EMA of squared gradients."""

    name = "sophiah_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, DADAPT, TRUST)


@variant
class SophiaG_e(Features, SophiaG):  # noqa: N801
    """SophiaG_e (Keras seed): SophiaG (Gauss-Newton-Bartlett curvature, ``opt.step_with``) with the same
    bundle as :class:`SophiaH_e` (``sn`` not exposed for the same reason)."""

    name = "sophiag_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, DADAPT, TRUST)


@variant
class SOAP_e(Features, SOAP):  # noqa: N801
    """SOAP_e (Keras seed): SOAP with Lookahead, positive-negative momentum, AGC, cautious masking, the AEM
    slow EMA, D-Adaptation and an optional trust ratio. The seed's ``sn``/``subset_size`` are not
    exposed: SOAP's second moment lives in the rotating eigenbasis and is permuted with it at every
    basis refresh, which a per-subset moment cannot follow."""

    name = "soap_e"
    features = _features(LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, AEM, DADAPT, TRUST)


@variant
class Conda_e(Features, Conda):  # noqa: N801
    """Conda_e (Keras seed): Conda with Lookahead, positive-negative momentum, subset-norm second moments
    (for tensors whose projected second moment keeps the parameter's shape), AGC, cautious masking, the
    AEM slow EMA, D-Adaptation and an optional trust ratio. The seed's ``update_proj_gap=None``,
    ``scale=None``, ``projection_type=None`` are Conda's own projection keywords; we keep the base's
    defaults (2000, 1.0, ``'std'``), as the seed does not say what ``None`` selects."""

    name = "conda_e"
    features = _features(LOOKAHEAD, {"pnm": True}, SN, {"agc": True, "cautious": True}, AEM, DADAPT, TRUST)


@variant
class DAdaptLion_e(Features, DAdaptLion):  # noqa: N801
    """DAdaptLion_e (Keras seed): DAdaptLion (its own D-Adaptation) with OrthoGrad, Lookahead,
    positive-negative momentum, AGC, cautious masking and an optional trust ratio, and the seed's
    ``weight_decouple=True``. Its D-Adaptation counts each Lookahead merge as a step (see
    ``lookahead_moved``; the seed does not, and without it the seed defaults diverge on our test MLP).
    Not exposed: ``sn`` (Lion keeps no second moment) and the seed's GaLore projector / ``muon_ortho``
    options (off by default in the seed; not ported)."""

    name = "dadaptlion_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, TRUST)
    base_defaults = {"weight_decouple": True}

    # DAdaptLion estimates its distance travelled from its own steps (``s``, the EMA of ``d_lr * u``,
    # and the numerator's alignments with it). A Lookahead merge moves the weights back without
    # telling it, so the estimate keeps growing while the weights do not get further: with the
    # seed's defaults ``d`` reached 0.9 and the test MLP's loss went 0.80 -> 16 in 120 steps.
    # Here the merge counts as one more step, in ``s`` and (summed over leaves and ranks, in the next
    # ``prepare``) in the numerator: ``d`` levels off near 0.04 and the loss falls to 0.35.
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.feat.lookahead:
            self._global("lookahead_numerator", 0.0)

    def lookahead_moved(self, step: mx.array, state: dict) -> None:
        one_minus_rho = 1 - self.hp.beta2_sq
        st = self.state
        st["lookahead_numerator"] = st["lookahead_numerator"] + mx.sum((step * state["s"]).astype(mx.float32))
        state["s"] = state["s"] + one_minus_rho * step

    def prepare(self, gradients: Any, parameters: Any) -> None:
        st = self.state
        if self.feat.lookahead:  # the last merge's alignment, as if it had been a step of the last update
            pending = self.global_sum(st["lookahead_numerator"])
            st["numerator_weighted"] = st["numerator_weighted"] + (1 - self.hp.beta2_sq) * pending
            st["lookahead_numerator"] = mx.zeros_like(pending)
        super().prepare(gradients, parameters)


# ---------------------------------------------------------------------------- _e: the Muon family
MUON_E = _features(LOOKAHEAD, {"pnm": True, "agc": True}, AEM_OFF, SOPHIA, DADAPT, TRUST)
_MUON_NOTE = """
    With the seed's ``sophia=True`` the AdamW fallback (non-Muon parameters) is SophiaH's update with
    Hutchinson curvature: call ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn), *batch)``.
    The seed's ``sn``/``subset_size`` are not exposed: with ``sophia`` the fallback keeps no squared-gradient
    moment and the Muon branch has none element-wise."""


@variant
class Muon_e(Features, Muon):  # noqa: N801
    __doc__ = (
        """Muon_e (Keras seed): Muon with Lookahead, positive-negative momentum, AGC, cautious masking (Muon's
    own ``cautious``, on), the AEM slow EMA (off), the Sophia branch, D-Adaptation and an optional trust ratio."""
        + _MUON_NOTE
    )

    name = "muon_e"
    features = MUON_E
    base_defaults = {"cautious": True}


@variant
class DistributedMuon_e(Features, DistributedMuon):  # noqa: N801
    __doc__ = (
        """DistributedMuon_e (Keras seed): DistributedMuon with the Muon_e bundle without cautious masking (the
    seed lists none). The seed's 3-tuple ``adamw_betas`` is not taken: its third value is the AEM
    ``beta3`` keyword here."""
        + _MUON_NOTE
    )

    name = "distributedmuon_e"
    features = MUON_E


@variant
class AdaMuon_e(Features, AdaMuon):  # noqa: N801
    __doc__ = (
        """AdaMuon_e (Keras seed): AdaMuon with the Muon_e bundle (cautious masking as the generic feature, AdaMuon
    has none of its own) and the seed's ``weight_decay=1e-2``."""
        + _MUON_NOTE
    )

    name = "adamuon_e"
    features = _features(MUON_E, {"cautious": True})
    base_defaults = {"weight_decay": 1e-2}


@variant
class AdaGO_e(Features, AdaGO):  # noqa: N801
    __doc__ = (
        """AdaGO_e (Keras seed): AdaGO with the Muon_e bundle (cautious masking is AdaGO's own ``cautious``, on).
    The seed's 3-tuple ``adamw_betas`` is not taken: its third value is the AEM ``beta3`` keyword here."""
        + _MUON_NOTE
    )

    name = "adago_e"
    features = MUON_E
    base_defaults = {"cautious": True}
