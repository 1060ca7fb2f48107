"""The ``_sn`` and ``_e`` variants: a base optimizer plus :mod:`mlx_optim.features`."""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any

import mlx.core as mx

from mlx_optim.features import FEATURE_DOCS, Features
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

_ENTRY = re.compile(r"^\**([A-Za-z_]\w*)(\s*\(.*?\))?\s*:")
_DEFAULT = re.compile(r"Default ``[^`]*``(?: \([^)]*\))?\.$")


def _base_args(base: type) -> dict[str, list[str]]:
    """The entries of the base class's ``Args:`` section, by keyword (each a list of dedented lines)."""
    lines = (inspect.getdoc(base) or "").splitlines()
    if "Args:" not in lines:
        return {}
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[lines.index("Args:") + 1 :]:
        if line and not line.startswith(" "):
            break
        m = _ENTRY.match(line[4:]) if line.startswith("    ") and not line.startswith("     ") else None
        if m:
            current = entries.setdefault(m.group(1), [])
            current.append(line[4:])
        elif current is not None and line.strip():
            current.append(line[4:])
    return entries


def _wrap(text: str, width: int = 108, indent: str = "    ") -> str:
    """``textwrap`` that does not break inside a ````literal````; continuation lines get ``indent``."""
    protected = re.sub(r"``[^`]*``", lambda m: m.group(0).replace(" ", "\x00"), text)
    lines = textwrap.wrap(protected, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines).replace("\x00", " ")


def _show(value: Any) -> str:
    return "inf" if value == INF else repr(value)


def _args_section(cls: type, base: type) -> str:
    """``Args:`` for every keyword of ``cls``: the base's entries (with a changed default where ``base_defaults``
    sets one) and :data:`mlx_optim.features.FEATURE_DOCS` for the feature keywords, in signature order."""
    base_entries = _base_args(base)
    out = []
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in cls.features:
            text = f"{name}: {FEATURE_DOCS[name]} Default ``{_show(cls.features[name])}``."
            out.append(_wrap(text))
            continue
        entry = base_entries.get(name)
        if entry is None:
            default = "Required" if param.default is param.empty else f"Default ``{_show(param.default)}``"
            out.append(f"{name}: As in :class:`~mlx_optim.{base.__name__}`. {default}.")
            continue
        entry = list(entry)
        if name in cls.base_defaults:
            base_default = inspect.signature(base.__init__).parameters[name].default
            new = f"Default here ``{_show(cls.base_defaults[name])}`` (the base's: ``{_show(base_default)}``)."
            text = " ".join(line.strip() for line in entry)
            entry = _wrap(_DEFAULT.sub(new, text) if _DEFAULT.search(text) else f"{text} {new}").splitlines()
        out.append("\n".join(entry))
    body = "\n".join("        " + line for e in out for line in e.splitlines())
    return "    Args:\n" + body


def variant(cls: type) -> type:
    """Register ``cls``; append its composition (base + features with defaults) and its ``Args:`` to its docstring."""
    base = next(c for c in cls.__mro__[1:] if c is not Features and not issubclass(c, Features) and c.name)
    cls.family = base.family
    cls.reference = f"mlx_optim.{base.__name__} ({base.reference}) + mlx_optim.features"
    cls.needs_loss = base.needs_loss
    on = ", ".join(f"``{k}={_show(v)}``" for k, v in cls.features.items())
    changed = "".join(f", ``{k}={_show(v)}``" for k, v in cls.base_defaults.items())
    others = f" Base keywords with another default{changed}; every other" if changed else " Every other"
    composition = _wrap(
        f"Composition: :class:`~mlx_optim.{base.__name__}` (``{base.name}``) + :mod:`mlx_optim.features` with {on}."
        f"{others} keyword and its default is the base's. With every feature switched off the variant is its base "
        "optimizer, bit for bit.",
        112,
        "",
    )
    papers = _wrap(
        f"Paper and reference: those of :class:`~mlx_optim.{base.__name__}` (parity-checked against "
        f"``{base.reference}``) and of each feature (:mod:`mlx_optim.features`).",
        112,
        "",
    )
    notes = "\n\n".join("\n".join("    " + line for line in part.splitlines()) for part in (composition, papers))
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n{notes}\n\n{_args_section(cls, base)}\n"
    return register(cls)


def _features(*parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    out.update(extra)
    return out


# ---------------------------------------------------------------------------- _sn: subset-norm second moments
@variant
class RangerQH_sn(Features, RangerQH):  # noqa: N801 (the registry name's spelling)
    """RangerQH_sn: RangerQH with subset-norm second moments.

    QHAdam's instantaneous :math:`g^2` term is summed over the same subsets."""

    name = "rangerqh_sn"
    features = _features(SN)


@variant
class RangerVA_sn(Features, RangerVA):  # noqa: N801
    """RangerVA_sn: RangerVA with subset-norm second moments.

    ``exp_avg_sq`` and its AMSGrad maximum are kept per subset; ``grad_transformer='abs'`` sums :math:`|g|` over
    the subset."""

    name = "rangerva_sn"
    features = _features(SN)


@variant
class EmoNavi_sn(Features, EmoNavi):  # noqa: N801
    """EmoNavi_sn: EmoNavi with subset-norm second moments.

    Only ``sn`` is exposed: the subset size is fixed at -1 (about :math:`\\sqrt{n}` per subset)."""

    name = "emonavi_sn"
    features = _features({"sn": True})


@variant
class EmoFact_sn(Features, EmoFact):  # noqa: N801
    """EmoFact_sn: EmoFact with subset-norm second moments for its vectors.

    Matrices already keep factored row/column statistics."""

    name = "emofact_sn"
    features = _features(SN)


@variant
class EmoZeal_sn(Features, EmoZeal):  # noqa: N801
    """EmoZeal_sn: EmoZeal with subset-norm second moments for its vectors.

    Matrices keep factored row/column statistics."""

    name = "emozeal_sn"
    features = _features(SN)


@variant
class DAdaptAdam_sn(Features, DAdaptAdam):  # noqa: N801
    """DAdaptAdam_sn: DAdaptAdam with subset-norm second moments.

    The subset moments also enter D-Adaptation's numerator :math:`\\langle g, s/(\\sqrt{v}+\\epsilon)\\rangle`."""

    name = "dadaptadam_sn"
    features = _features(SN)


@variant
class DAdaptAdan_sn(Features, DAdaptAdan):  # noqa: N801
    """DAdaptAdan_sn: DAdaptAdan with subset-norm second moments.

    The subset moments also enter D-Adaptation's weighted sums."""

    name = "dadaptadan_sn"
    features = _features(SN)


# ---------------------------------------------------------------------------- _e: the extended bundles
@variant
class Ranger_e(Features, Ranger):  # noqa: N801
    """Ranger_e: Ranger with subset-norm second moments and D-Adaptation of the RAdam step.

    D-Adaptation acts on the step before Ranger's own Lookahead. With D-Adaptation ``learning_rate``
    multiplies the adapted ``d`` (from ``d0=1e-6``): the default stays Ranger's ``learning_rate=1e-3``, while
    D-Adaptation's convention is 1. Positive-negative momentum and the generic Lookahead are not exposed
    (Ranger has its own Lookahead)."""

    name = "ranger_e"
    features = _features(SN, DADAPT)


@variant
class Ranger2020_e(Features, Ranger2020):  # noqa: N801
    """Ranger2020_e: Ranger2020 with subset-norm second moments and D-Adaptation of the step.

    D-Adaptation acts on the step before the built-in Lookahead (see :class:`Ranger_e`)."""

    name = "ranger2020_e"
    features = _features(SN, DADAPT)


@variant
class Ranger21_e(Features, Ranger21):  # noqa: N801
    """Ranger21_e: Ranger21 with subset-norm second moments and D-Adaptation of the step.

    ``variance_ma`` and its AMSGrad maximum are kept per subset (the global variance normalizer averages the
    per-element view); D-Adaptation acts on the step before the built-in Lookahead (see :class:`Ranger_e`).
    Positive-negative momentum and the generic Lookahead are not exposed (Ranger21 has its own)."""

    name = "ranger21_e"
    features = _features(SN, DADAPT)


@variant
class SophiaH_e(Features, SophiaH):  # noqa: N801
    """SophiaH_e: SophiaH with OrthoGrad, AGC, positive-negative momentum, cautious masking, D-Adaptation and Lookahead.

    SophiaH's Hutchinson curvature needs ``opt.step_with``; a trust ratio is optional (off).
    ``sn`` / ``subset_size`` are not exposed: Sophia keeps no EMA of squared gradients (its curvature EMA
    is not a second moment)."""

    name = "sophiah_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, DADAPT, TRUST)


@variant
class SophiaG_e(Features, SophiaG):  # noqa: N801
    """SophiaG_e: SophiaG with the bundle of :class:`SophiaH_e`.

    SophiaG's Gauss-Newton-Bartlett curvature needs ``opt.step_with``; ``sn`` is not exposed for the same
    reason as in :class:`SophiaH_e`."""

    name = "sophiag_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, DADAPT, TRUST)


@variant
class SOAP_e(Features, SOAP):  # noqa: N801
    """SOAP_e: SOAP with Lookahead, positive-negative momentum, AGC, cautious masking, the AEM EMA and D-Adaptation.

    A trust ratio is optional (off). ``sn`` / ``subset_size`` are not exposed: SOAP's second moment lives in
    the rotating eigenbasis and is permuted with it at every basis refresh, which a per-subset moment cannot
    follow."""

    name = "soap_e"
    features = _features(LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, AEM, DADAPT, TRUST)


@variant
class Conda_e(Features, Conda):  # noqa: N801
    """Conda_e: Conda with Lookahead, PN momentum, subset norms, AGC, cautious masking, AEM and D-Adaptation.

    Subset-norm second moments apply to tensors whose projected second moment keeps the parameter's shape; a
    trust ratio is optional (off). Conda's own projection keywords (``update_proj_gap``, ``scale``,
    ``projection_type``) keep the base's defaults."""

    name = "conda_e"
    features = _features(LOOKAHEAD, {"pnm": True}, SN, {"agc": True, "cautious": True}, AEM, DADAPT, TRUST)


@variant
class DAdaptLion_e(Features, DAdaptLion):  # noqa: N801
    """DAdaptLion_e: DAdaptLion with OrthoGrad, Lookahead, positive-negative momentum, AGC and cautious masking.

    DAdaptLion keeps its own D-Adaptation; a trust ratio is optional (off) and ``weight_decouple`` defaults to
    ``True``. Its D-Adaptation counts each Lookahead merge as a step (see ``lookahead_moved``; without it the
    default settings diverge on a small MLP). ``sn`` is not exposed (Lion keeps no second moment); a GaLore
    projector and Muon-style orthogonalization are not ported."""

    name = "dadaptlion_e"
    features = _features({"orthograd": True}, LOOKAHEAD, {"pnm": True, "agc": True, "cautious": True}, TRUST)
    base_defaults = {"weight_decouple": True}

    # DAdaptLion estimates its distance travelled from its own steps (``s``, the EMA of ``d_lr * u``,
    # and the numerator's alignments with it). A Lookahead merge moves the weights back without
    # telling it, so the estimate keeps growing while the weights do not get further: with the
    # default settings ``d`` reached 0.9 and the test MLP's loss went 0.80 -> 16 in 120 steps.
    # Here the merge counts as one more step, in ``s`` and (summed over leaves and ranks, in the next
    # ``prepare``) in the numerator: ``d`` levels off near 0.04 and the loss falls to 0.35.
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.feat.lookahead:
            self._global("lookahead_numerator", 0.0)

    def lookahead_moved(self, step: mx.array, state: dict) -> None:
        one_minus_rho = 1 - self.hp.beta2_sq
        st = self.globals
        st["lookahead_numerator"] = st["lookahead_numerator"] + mx.sum((step * state["s"]).astype(mx.float32))
        state["s"] = state["s"] + one_minus_rho * step

    def prepare(self, gradients: Any, parameters: Any) -> None:
        st = self.globals
        if self.feat.lookahead:  # the last merge's alignment, as if it had been a step of the last update
            pending = self.global_sum(st["lookahead_numerator"])
            st["numerator_weighted"] = st["numerator_weighted"] + (1 - self.hp.beta2_sq) * pending
            st["lookahead_numerator"] = mx.zeros_like(pending)
        super().prepare(gradients, parameters)


# ---------------------------------------------------------------------------- _e: the Muon family
MUON_E = _features(LOOKAHEAD, {"pnm": True, "agc": True}, AEM_OFF, SOPHIA, DADAPT, TRUST)
_MUON_NOTE = """

    With ``sophia=True`` (the default here) the AdamW fallback (non-Muon parameters) is SophiaH's update with
    Hutchinson curvature: call ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn), *batch)``.
    ``sn`` / ``subset_size`` are not exposed: with ``sophia`` the fallback keeps no squared-gradient moment and
    the Muon branch has none element-wise."""


@variant
class Muon_e(Features, Muon):  # noqa: N801
    __doc__ = (
        """Muon_e: Muon with Lookahead, positive-negative momentum, AGC, cautious masking, AEM, Sophia and D-Adaptation.

    Cautious masking is Muon's own ``cautious`` (on); the AEM slow EMA is off and a trust ratio optional (off)."""
        + _MUON_NOTE
    )

    name = "muon_e"
    features = MUON_E
    base_defaults = {"cautious": True}


@variant
class DistributedMuon_e(Features, DistributedMuon):  # noqa: N801
    __doc__ = (
        """DistributedMuon_e: DistributedMuon with the bundle of :class:`Muon_e` without cautious masking.

    ``adamw_betas`` is the base's pair; the AEM slow EMA's decay is the ``beta3`` keyword."""
        + _MUON_NOTE
    )

    name = "distributedmuon_e"
    features = MUON_E


@variant
class AdaMuon_e(Features, AdaMuon):  # noqa: N801
    __doc__ = (
        """AdaMuon_e: AdaMuon with the bundle of :class:`Muon_e` and ``weight_decay=1e-2``.

    Cautious masking is the generic feature (AdaMuon has none of its own)."""
        + _MUON_NOTE
    )

    name = "adamuon_e"
    features = _features(MUON_E, {"cautious": True})
    base_defaults = {"weight_decay": 1e-2}


@variant
class AdaGO_e(Features, AdaGO):  # noqa: N801
    __doc__ = (
        """AdaGO_e: AdaGO with the bundle of :class:`Muon_e`.

    Cautious masking is AdaGO's own ``cautious`` (on). ``adamw_betas`` is the base's pair; the AEM slow EMA's
    decay is the ``beta3`` keyword."""
        + _MUON_NOTE
    )

    name = "adago_e"
    features = MUON_E
    base_defaults = {"cautious": True}
