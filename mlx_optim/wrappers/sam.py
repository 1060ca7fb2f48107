"""The SAM family: SAM, ASAM, GSAM, WSAM, LookSAM, FriendlySAM (wrappers) and BSAM (standalone)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.docargs import fill_args
from mlx_optim.functional import global_norm
from mlx_optim.registry import register
from mlx_optim.wrappers._args import WRAPPER_ARGS
from mlx_optim.wrappers.base import Phased, Wrapper

__all__ = ["SAM", "ASAM", "GSAM", "WSAM", "LookSAM", "FriendlySAM", "BSAM", "sam_perturbation"]


_SAM_ARGS: dict[str, str] = {
    **WRAPPER_ARGS,
    "rho": r"Radius :math:`\rho` of the neighbourhood (>= 0).",
    "adaptive": r"ASAM's scale-invariant neighbourhood :math:`T_w = |w|`.",
    "use_gc": "Centralize the gradient (subtract the mean over all axes but the first, for tensors with "
    "``ndim > 1``) before perturbing, after the norm.",
    "perturb_eps": "Term added to the norms in the denominators (>= 0).",
    "transparent": "Run one phase per ordinary ``update`` call instead of requiring ``step_with`` (keyword-only).",
    "state_dtype": "dtype of the wrapper's per-parameter state (saved weights, perturbations) (keyword-only); "
    "``None``: float32 for bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's "
    "state follows its own ``state_dtype``.",
}
"""``Args:`` text of the keywords the SAM family shares (:func:`~mlx_optim.docargs.fill_args`)."""
_sam_args = fill_args(_SAM_ARGS)


def sam_perturbation(g: mx.array, p: mx.array, scale: mx.array, adaptive: bool) -> mx.array:
    """SAM's ``e(w) = (w^2 if adaptive else 1) * g * scale`` (ASAM's :math:`T_w^2 g / \\|T_w g\\|`)."""
    return (p * p * g if adaptive else g) * scale


def _l2(x: mx.array) -> mx.array:
    """L2 norm of a whole tensor in its own dtype (torch's ``tensor.norm(p=2)``)."""
    return mx.sqrt(mx.sum(mx.square(x)))


def _values(tree: Any) -> list[mx.array]:
    return [v for _, v in tree_flatten(tree)]


class _SAMBase(Phased, Wrapper):
    """Common constructor and helpers of the SAM wrappers."""

    family = "sam"

    def __init__(
        self,
        base_optimizer: Any,
        *,
        learning_rate: Any,
        optimizer_kwargs: dict | None,
        transparent: bool,
        state_dtype: mx.Dtype | None,
    ):
        Wrapper.__init__(
            self,
            base_optimizer,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            state_dtype=state_dtype,
        )
        self._setup_phases(transparent)

    def _cdt(self, p: mx.array) -> mx.Dtype:
        return self.state_dtype or self.compute_dtype(p)

    def _f(self, x: mx.array, p: mx.array) -> mx.array:
        return x.astype(self._cdt(p))

    def _weighted_norm(self, grads: Any, params: Any, adaptive: bool) -> mx.array:
        """Global ``||(|w| if adaptive else 1) * g||`` (pytorch_optimizer's ``get_global_gradient_norm``)."""
        if adaptive:
            return global_norm(_values(tree_map(lambda g, p: mx.abs(self._f(p, p)) * self._f(g, p), grads, params)))
        return global_norm(_values(grads))

    def _restore(self, params: Any, key: str = "old_p") -> Any:
        return tree_map(lambda p, s: s[key].astype(p.dtype), params, self._state["slots"])

    def _perturb_keeping(self, grads: Any, params: Any, eps: mx.array, grad_slot: str) -> Any:
        """Phase 0 of GSAM and WSAM: the weights ``w + e``, keeping ``e`` (slot ``e_w``) and ``g`` (``grad_slot``)."""
        scale = self.hp.rho / (self._weighted_norm(grads, params, self.adaptive) + eps)

        def perturb(g: mx.array, p: mx.array, slot: dict) -> mx.array:
            p32, g32 = self._f(p, p), self._f(g, p)
            e = sam_perturbation(g32, p32, scale, self.adaptive)
            slot["e_w"], slot[grad_slot] = e, g32
            return (p32 + e).astype(p.dtype)

        return tree_map(perturb, grads, params, self._state["slots"])

    def _unperturb(self, params: Any) -> Any:
        """The weights ``w - e`` (GSAM and WSAM restore by subtracting the saved perturbation, as the reference)."""
        return tree_map(lambda p, s: (self._f(p, p) - s["e_w"]).astype(p.dtype), params, self._state["slots"])


@register
@_sam_args
class SAM(_SAMBase):
    r"""SAM: sharpness-aware minimization, a wrapper that steps with the gradient taken at the worst nearby point.

    .. math::
        e = \rho\,\frac{T_w^2\, \mathrm{gc}(g)}{\|T_w g\| + \epsilon_p},\quad
        g_s = \nabla L(w + e),\quad w \leftarrow \mathrm{inner}(w, g_s)

    with :math:`T_w = |w|` when ``adaptive`` (ASAM) and 1 otherwise. Exactly pytorch_optimizer's ordering: the
    global norm is taken *before* gradient centralization (``use_gc``), the adaptive perturbation uses
    :math:`w^2` while the norm uses :math:`|w|`, and the weights are restored from a saved copy (slot
    ``old_p``) before the inner step.

    Two calling forms run the same two phases (phase 0 receives the gradient at the current weights and
    moves to the perturbed weights, phase 1 receives the gradient there, returns to the saved weights and lets
    the inner optimizer step):

    * ``loss = opt.step_with(model, loss_and_grad_fn, *batch)``: both evaluations on the same batch in one call
      (pytorch_optimizer's closure step); returns the loss at the unperturbed weights. It freezes
      ``nn.BatchNorm`` running statistics during the re-evaluation at the perturbed weights
      (pytorch_optimizer's ``disable_running_stats``);
    * ``transparent=True``: each ``opt.update(model, grads)`` runs one phase (``calls % 2``, chosen with
      ``mx.where``), so the optimizer drops into mlx-lm's compiled one-update-per-step trainer. Feeding the same
      batch to two consecutive calls reproduces ``step_with`` exactly.

    All per-parameter wrapper state lives in ``opt.state["slots"]`` and the inner optimizer's state in
    ``opt.state["inner"]``: both are captured by ``mx.compile(..., inputs=[model.state, opt.state])`` and saved
    with the optimizer.

    Paper: Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021,
    arXiv:2010.01412.

    Reference: ``pytorch_optimizer.SAM`` (parity-checked). Differences that come from MLX: no parameter groups (the
    hyperparameters are global), no distributed gradient all-reduce, and no ``model`` / ``params`` constructor
    arguments.
    """

    name = "sam"
    reference = "pytorch_optimizer.SAM"

    def __init__(
        self,
        base_optimizer: Any,
        rho: Tunable = 0.05,
        adaptive: bool = False,
        use_gc: bool = False,
        perturb_eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            base_optimizer,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )
        self._hyper("rho", rho, 0.0)
        self._hyper("perturb_eps", perturb_eps, 0.0)
        self.adaptive = adaptive
        self.use_gc = use_gc

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["old_p"] = parameter.astype(self._cdt(parameter))

    def perturb_gradient(self, grads: Any, params: Any) -> Any:
        """The gradient that defines the perturbation direction (FriendlySAM overrides it)."""
        return grads

    def phase(self, i: int, grads: Any, params: Any, loss: mx.array | None) -> Any:
        hp = self.hp
        if i == 1:
            return self.inner_apply(grads, self._restore(params), loss)
        grads = self.perturb_gradient(grads, params)
        scale = hp.rho / (self._weighted_norm(grads, params, self.adaptive) + hp.perturb_eps)

        def leaf(g: mx.array, p: mx.array, slot: dict) -> mx.array:
            p32, g32 = self._f(p, p), self._f(g, p)
            if self.use_gc:
                g32 = F.centralize(g32)
            slot["old_p"] = p32
            return (p32 + sam_perturbation(g32, p32, scale, self.adaptive)).astype(p.dtype)

        return tree_map(leaf, grads, params, self._state["slots"])


@register
@_sam_args
class ASAM(SAM):
    r"""ASAM: adaptive SAM, :class:`SAM` with the scale-invariant neighbourhood :math:`T_w = |w|` by default.

    .. math::
        e = \rho\,\frac{w^2 \odot g}{\| |w| \odot g \| + \epsilon_p}

    The paper suggests a larger ``rho`` (e.g. 0.5 or more) than SAM. Calling forms as :class:`SAM`.

    Paper: Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep
    Neural Networks", ICML 2021, arXiv:2102.11600.

    Reference: ``pytorch_optimizer.SAM(adaptive=True)`` (pytorch_optimizer has no separate class;
    parity-checked). Differences that come from MLX: no parameter groups (the hyperparameters are global), no
    distributed gradient all-reduce, and no ``model`` / ``params`` constructor arguments.

    Args:
        adaptive: The scale-invariant neighbourhood; ``False`` gives plain SAM. Default ``True``.
    """

    name = "asam"
    reference = "pytorch_optimizer.SAM (adaptive=True)"

    def __init__(
        self,
        base_optimizer: Any,
        rho: Tunable = 0.05,
        adaptive: bool = True,
        use_gc: bool = False,
        perturb_eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            base_optimizer,
            rho,
            adaptive,
            use_gc,
            perturb_eps,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )


@register
@_sam_args
class FriendlySAM(SAM):
    r"""FriendlySAM: SAM that perturbs along the gradient minus its running mean (the "full-gradient" component).

    .. math::
        \tilde g = g - \sigma m,\quad m \leftarrow \lambda m + (1-\lambda) g,\quad
        e = \rho\,\frac{T_w^2 \tilde g}{\|T_w \tilde g\| + \epsilon_p}

    and then as :class:`SAM` (restore, inner step with the gradient at :math:`w + e`). On the first step
    :math:`m = g` and :math:`\tilde g = g`, as pytorch_optimizer. Calling forms as :class:`SAM`.

    Paper: Li et al., "Friendly Sharpness-Aware Minimization", CVPR 2024, arXiv:2403.12350.

    Reference: ``pytorch_optimizer.FriendlySAM`` (parity-checked). Differences that come from MLX: no parameter groups
    (the hyperparameters are global), no distributed gradient all-reduce, and no ``model`` / ``params`` constructor
    arguments.

    Args:
        sigma: Weight :math:`\sigma` of the running mean subtracted from the gradient (>= 0). Default ``1.0``.
        lmbda: Decay rate :math:`\lambda` of the running mean (>= 0). Default ``0.9``.
    """

    name = "friendlysam"
    reference = "pytorch_optimizer.FriendlySAM"

    def __init__(
        self,
        base_optimizer: Any,
        rho: Tunable = 0.05,
        sigma: Tunable = 1.0,
        lmbda: Tunable = 0.9,
        adaptive: bool = False,
        perturb_eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            base_optimizer,
            rho,
            adaptive,
            False,
            perturb_eps,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )
        self._hyper("sigma", sigma, 0.0)
        self._hyper("lmbda", lmbda, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        state["momentum"] = self.zeros(parameter)

    def perturb_gradient(self, grads: Any, params: Any) -> Any:
        hp = self.hp
        first = hp.step == 1

        def leaf(g: mx.array, p: mx.array, slot: dict) -> mx.array:
            g32, m = self._f(g, p), slot["momentum"]
            slot["momentum"] = mx.where(first, g32, F.lerp(m, g32, 1.0 - hp.lmbda))
            return mx.where(first, g32, g32 - hp.sigma * m)

        return tree_map(leaf, grads, params, self._state["slots"])


@register
@_sam_args
class GSAM(_SAMBase):
    r"""GSAM: surrogate-gap guided SAM, removing part of the perturbed gradient's component orthogonal to the clean one.

    .. math::
        e = \rho_t\,\frac{T_w^2 g}{\|T_w g\| + \epsilon_p},\quad g_s = \nabla L(w + e),\quad
        \cos = \frac{\langle g, g_s\rangle}{\|g_s\|\|g\| + \epsilon_p},\quad
        d = g_s - \alpha\Big(g - \cos\,\|g\|\frac{g_s}{\|g_s\| + \epsilon_p}\Big),\quad
        w \leftarrow \mathrm{inner}(w, d)

    (norms global over all parameters). The weights are restored by subtracting the saved perturbation (slot
    ``e_w``), as the reference does. Calling forms as :class:`SAM`.

    Paper: Zhuang et al., "Surrogate Gap Minimization Improves Sharpness-Aware Training", ICLR 2022.

    Reference: ``pytorch_optimizer.GSAM`` (parity-checked). Difference: ``rho_scheduler`` replaces
    pytorch_optimizer's ``ProportionScheduler`` object. Differences that come from MLX: no parameter groups (the
    hyperparameters are global), no distributed gradient all-reduce, and no ``model`` / ``params`` constructor
    arguments.

    Args:
        rho_scheduler: The radius :math:`\rho_t` (>= 0): a float, or an MLX schedule ``rho(step)`` evaluated
            once per step at the 0-based step (the value the reference gets from its first, second, ...
            ``update_rho_t()``); to make it proportional to a learning-rate schedule, build it from that
            schedule. Required.
        alpha: Weight :math:`\alpha` of the removed component, in [0, 1). Default ``0.4``.
    """

    name = "gsam"
    reference = "pytorch_optimizer.GSAM"

    def __init__(
        self,
        base_optimizer: Any,
        rho_scheduler: Tunable,
        alpha: Tunable = 0.4,
        adaptive: bool = False,
        perturb_eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            base_optimizer,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )
        self._hyper("rho", rho_scheduler, 0.0)
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("perturb_eps", perturb_eps, 0.0)
        self.adaptive = adaptive

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["e_w"] = self.zeros(parameter)
        state["old_g"] = self.zeros(parameter)

    def phase(self, i: int, grads: Any, params: Any, loss: mx.array | None) -> Any:
        hp, slots = self.hp, self._state["slots"]
        if i == 0:
            return self._perturb_keeping(grads, params, hp.perturb_eps, "old_g")
        old = tree_map(lambda g, s: s["old_g"], grads, slots)
        inner = sum(mx.sum(a * b.astype(a.dtype)) for a, b in zip(_values(old), _values(grads)))
        new_norm, old_norm = global_norm(_values(grads)), global_norm(_values(old))
        cosine = inner / (new_norm * old_norm + hp.perturb_eps)
        coef = cosine * old_norm / (new_norm + hp.perturb_eps)

        def decompose(g: mx.array, p: mx.array, slot: dict) -> mx.array:
            g32 = self._f(g, p)
            vertical = slot["old_g"] - coef * g32
            return g32 - hp.alpha * vertical

        new_grads = tree_map(decompose, grads, params, slots)
        restored = self._unperturb(params)
        return self.inner_apply(new_grads, restored, loss)


@register
@_sam_args
class WSAM(_SAMBase):
    r"""WSAM: weighted SAM, SAM's sharpness term as a weighted regularizer, :math:`\alpha = \gamma / (1 - \gamma)`.

    .. math::
        e = \rho\,\frac{T_w^2 g}{\|T_w g\| + \epsilon},\quad g_s = \mathrm{clip}(\nabla L(w + e))

    decoupled: :math:`w \leftarrow \mathrm{inner}(w, g) - \eta\,\alpha\,(g_s - g)` (:math:`\eta` the inner
    learning rate); coupled: :math:`w \leftarrow \mathrm{inner}(w, g + \alpha(g_s - g))` (torch's
    ``lerp(g_s, g, 1 - alpha)``). ``max_norm`` clips :math:`g_s` by its global norm (``clip_grad_norm_``:
    factor ``min(1, max_norm / (norm + 1e-6))``). The weights are restored by subtracting the saved
    perturbation (slot ``e_w``). Calling forms as :class:`SAM`.

    Paper: Yue et al., "Sharpness-Aware Minimization Revisited: Weighted Sharpness as a Regularization Term",
    KDD 2023, arXiv:2305.15817.

    Reference: ``pytorch_optimizer.WSAM`` (parity-checked): its signature minus ``model`` and ``params``.
    ``gamma`` must be in [0, 1) (the reference divides by ``1 - gamma`` without checking). Differences that come from
    MLX: no parameter groups (the hyperparameters are global), no distributed gradient all-reduce, and no ``model`` /
    ``params`` constructor arguments.

    Args:
        gamma: Weight :math:`\gamma` of the sharpness term, in [0, 1). Default ``0.9``.
        decouple: Apply the sharpness term after the inner step (decoupled) instead of mixing it into the
            inner optimizer's gradient. Default ``True``.
        max_norm: Global norm above which the perturbed gradient is scaled down (>= 0); ``None`` disables.
            Default ``None``.
        eps: Term added to the norm in the perturbation (>= 0). Default ``1e-12``.
    """

    name = "wsam"
    reference = "pytorch_optimizer.WSAM"

    def __init__(
        self,
        base_optimizer: Any,
        rho: Tunable = 0.05,
        gamma: Tunable = 0.9,
        adaptive: bool = False,
        decouple: bool = True,
        max_norm: float | None = None,
        eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            base_optimizer,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )
        self._hyper("rho", rho, 0.0)
        self._hyper("gamma", gamma, 0.0, 1.0, "[)")
        self._hyper("eps", eps, 0.0)
        if max_norm is not None:
            self._check("max_norm", max_norm, 0.0)
        self.adaptive = adaptive
        self.decouple = decouple
        self.max_norm = max_norm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["e_w"] = self.zeros(parameter)
        state["grad"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.alpha = hp.gamma / hp.one_minus_gamma

    def phase(self, i: int, grads: Any, params: Any, loss: mx.array | None) -> Any:
        hp, slots = self.hp, self._state["slots"]
        if i == 0:
            return self._perturb_keeping(grads, params, hp.eps, "grad")
        restored = self._unperturb(params)
        g_s = tree_map(lambda g, p: self._f(g, p), grads, params)
        if self.max_norm is not None:
            clip = mx.minimum(self.max_norm / (global_norm(_values(g_s)) + 1e-6), 1.0)
            g_s = tree_map(lambda g: g * clip, g_s)
        if not self.decouple:
            mixed = tree_map(lambda g, s: F.lerp(g, s["grad"], 1.0 - hp.alpha), g_s, slots)
            return self.inner_apply(mixed, restored, loss)
        clean = tree_map(lambda g, s: s["grad"], g_s, slots)
        stepped = self.inner_apply(clean, restored, loss)
        step = self.inner.learning_rate * hp.alpha
        return tree_map(lambda q, g, s: (self._f(q, q) - step * (g - s["grad"])).astype(q.dtype), stepped, g_s, slots)


@register
@_sam_args
class LookSAM(SAM):
    r"""LookSAM: a full SAM step every ``k`` steps; in between, reuse the stored sharpness direction.

    Every ``k``-th step (the 1st, ``k+1``-th, ...) it perturbs as :class:`SAM` and, per parameter, stores
    :math:`g_v = g_s - \|g_s\|\cos(g, g_s)\,\hat g` (:math:`\hat g = g/\|g\|`); the inner step uses
    :math:`g_s`. On the other steps the weights are not perturbed and the inner step uses

    .. math::
        g + \alpha\,\frac{\|g\|}{\|g_v\| + 10^{-8}}\,g_v

    (per-parameter norms; norms in the unit vectors are clamped below by ``perturb_eps``), as
    pytorch_optimizer. Both calling forms still evaluate the gradient twice on the in-between steps (the
    second evaluation is at the unperturbed weights) since the choice is made with ``mx.where``. Calling forms
    as :class:`SAM`.

    Paper: Liu et al., "Towards Efficient and Scalable Sharpness-Aware Minimization", CVPR 2022,
    arXiv:2203.02714.

    Reference: ``pytorch_optimizer.LookSAM`` (parity-checked). Differences that come from MLX: no parameter groups (the
    hyperparameters are global), no distributed gradient all-reduce, and no ``model`` / ``params`` constructor
    arguments.

    Args:
        k: Steps between full SAM steps (a positive integer). Default ``10``.
        alpha: Weight :math:`\alpha` of the reused sharpness direction, in (0, 1). Default ``0.7``.
    """

    name = "looksam"
    reference = "pytorch_optimizer.LookSAM"

    def __init__(
        self,
        base_optimizer: Any,
        rho: Tunable = 0.1,
        k: int = 10,
        alpha: Tunable = 0.7,
        adaptive: bool = False,
        use_gc: bool = False,
        perturb_eps: Tunable = 1e-12,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        transparent: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"LookSAM: k={k!r} must be a positive integer")
        super().__init__(
            base_optimizer,
            rho,
            adaptive,
            use_gc,
            perturb_eps,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            transparent=transparent,
            state_dtype=state_dtype,
        )
        self._hyper("alpha", alpha, 0.0, 1.0, "()")
        self.k = k

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        state["old_grad_p"] = self.zeros(parameter)
        state["gv"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.full = F.every(hp.step - 1, self.k)

    def phase(self, i: int, grads: Any, params: Any, loss: mx.array | None) -> Any:
        hp, slots = self.hp, self._state["slots"]
        if i == 0:
            scale = hp.rho / (self._weighted_norm(grads, params, self.adaptive) + hp.perturb_eps)

            def perturb(g: mx.array, p: mx.array, slot: dict) -> mx.array:
                p32, g32 = self._f(p, p), self._f(g, p)
                if self.use_gc:
                    g32 = F.centralize(g32)
                slot["old_p"], slot["old_grad_p"] = p32, g32
                e = mx.where(hp.full, sam_perturbation(g32, p32, scale, self.adaptive), 0.0)
                return (p32 + e).astype(p.dtype)

            return tree_map(perturb, grads, params, slots)
        eps = hp.perturb_eps

        def mix(g: mx.array, p: mx.array, slot: dict) -> mx.array:
            g32, old, gv = self._f(g, p), slot["old_grad_p"], slot["gv"]
            g_norm = _l2(g32)
            unit_old = old / mx.maximum(_l2(old), eps)
            unit_new = g32 / mx.maximum(g_norm, eps)
            new_gv = g32 - g_norm * mx.sum(unit_old * unit_new) * unit_old
            slot["gv"] = mx.where(hp.full, new_gv, gv)
            reuse = g32 + hp.alpha * (g_norm / (_l2(gv) + 1e-8) * gv)
            return mx.where(hp.full, g32, reuse)

        mixed = tree_map(mix, grads, params, slots)
        return self.inner_apply(mixed, self._restore(params), loss)


@register
@_sam_args
class BSAM(Phased, Optimizer):
    r"""BSAM: Bayesian SAM, SAM as variational learning, with a noisy and a perturbed gradient per step.

    A standalone optimizer (not a wrapper). Three phases per step (``step_with`` evaluates the gradient twice;
    transparent mode uses three ``update`` calls and ignores the first call's gradient):

    .. math::
        w \leftarrow w + \xi,\ \xi \sim \mathcal N\big(0, (N s)^{-2}\big);\qquad
        w \leftarrow w + \rho\,\frac{T_w^2\, g_1}{s};\qquad
        m \leftarrow \beta_1 m + (1-\beta_1)\,\lambda g_2,\
        s \leftarrow \beta_2 s + (1-\beta_2)\big(\sqrt{s}\,|g_2| + \lambda + \delta\big)^2,\
        w \leftarrow w - \eta\, m / s

    (:math:`N` = ``num_data``, :math:`\lambda` = ``weight_decay``, :math:`\delta` = ``damping``,
    :math:`T_w^2 = w^2` when ``adaptive``; :math:`s` starts at 1). This is pytorch_optimizer's ``BSAM``
    exactly, including its quirks: the noise's *standard deviation* is :math:`1/(N s)`, the momentum averages
    :math:`\lambda g` (not :math:`g + \lambda w`), and neither the noise nor the perturbation is undone before
    the final update. Unlike the SAM wrappers, ``step_with`` does not freeze BatchNorm statistics (nor does
    the reference).

    Paper: Möllenhoff & Khan, "SAM as an Optimal Relaxation of Bayes", ICLR 2023, arXiv:2210.01620.

    Reference: ``pytorch_optimizer.BSAM`` (parity-checked with a negligible noise, ``num_data=1e9``: MLX and torch
    draw different noise). Differences:
    ``step_with`` returns the loss at the noisy weights (the first evaluation; the reference returns the
    second); the noise uses a key kept in ``state["key"]`` (``seed``), so runs are reproducible but only
    statistics can be compared with torch's generator; the reference's unused ``noisy_gradient`` buffer is not
    kept. Differences that come from MLX: no parameter groups (the hyperparameters are global), no
    distributed gradient all-reduce, and no ``model`` / ``params`` constructor arguments.

    Args:
        num_data: Number of training examples :math:`N` (sets the noise scale; >= 0). Required.
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``5e-1``.
        betas: ``(beta1, beta2)``, decay rates of the momentum and of :math:`s`, each in [0, 1).
            Default ``(0.9, 0.999)``.
        weight_decay: Coefficient :math:`\lambda` (>= 0). Default ``1e-4``.
        damping: Damping :math:`\delta` (>= 0). Default ``0.1``.
        seed: Seed of the noise's random key (keyword-only). Default ``0``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "bsam"
    family = "sam"
    reference = "pytorch_optimizer.BSAM"
    num_phases = 3
    first_phase_needs_grad = False
    pause_running_stats = False
    _begin = Wrapper._begin

    def __init__(
        self,
        num_data: int,
        learning_rate: Tunable = 5e-1,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-4,
        rho: Tunable = 0.05,
        adaptive: bool = False,
        damping: Tunable = 0.1,
        *,
        transparent: bool = False,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("rho", rho, 0.0)
        self._check("num_data", num_data, 0.0)
        self._hyper("damping", damping, 0.0)
        self.num_data = num_data
        self.adaptive = adaptive
        self.globals["key"] = mx.random.key(seed)
        self._setup_phases(transparent)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.full(parameter, 1.0)
        state["momentum"] = self.zeros(parameter)

    def phase(self, i: int, grads: Any, params: Any, loss: mx.array | None) -> Any:
        if i == 0:
            key, sub = mx.random.split(self.globals["key"])
            self.globals["key"] = key
            flat = tree_flatten(params)
            keys = mx.random.split(sub, len(flat))
            self._leaf_keys = {path: keys[j] for j, (path, _) in enumerate(flat)}
        return self._apply_phase(i, grads, params, self._state, "")

    def _apply_phase(self, i: int, g: Any, p: Any, s: Any, path: str) -> Any:
        if isinstance(g, dict):
            return {k: self._apply_phase(i, g[k], p[k], s[k], f"{path}{k}.") for k in g}
        if isinstance(g, (list, tuple)):
            return type(g)(self._apply_phase(i, a, b, c, f"{path}{j}.") for j, (a, b, c) in enumerate(zip(g, p, s)))
        self._leaf_path = path[:-1]
        dtype = self.compute_dtype(p)
        g32, p32 = g.astype(dtype), p.astype(dtype)
        hp = self.hp_for(self._leaf_path, p)
        if i == 0:
            noise = mx.random.normal(p.shape, dtype=mx.float32, key=self._leaf_keys[self._leaf_path])
            new = p32 + noise.astype(dtype) * (1.0 / (self.num_data * s["s"]))
        elif i == 1:
            new = p32 + (p32 * p32 if self.adaptive else 1.0) * hp.rho * g32 / s["s"]
        else:
            m = F.lerp(s["momentum"], g32 * hp.weight_decay, hp.one_minus_beta1)
            var = mx.square(mx.sqrt(s["s"]) * mx.abs(g32) + (hp.weight_decay + hp.damping))
            v = F.lerp(s["s"], var, hp.one_minus_beta2)
            s["momentum"], s["s"] = m, v
            new = p32 - hp.lr * (m / v)
        return new.astype(p.dtype)
