"""More of pytorch_optimizer's orthogonalized optimizers: NorMuon, MuonClip and SpectralSphere.

NorMuon and MuonClip split one parameter tree with ``muon_filter(path, parameter)`` like
:mod:`mlx_optim.optimizers.muon` (see its docstring): the selected matrices take the
orthogonalized update, every other parameter the AdamW fallback (``adamw_*``).
Newton–Schulz runs in bfloat16 with that module's helpers, as in the reference.
SpectralSphere (2-D parameters only) uses its own Polar Express ``msign`` and power
iteration, also in bfloat16 (values kept as float32 arrays rounded after every op).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import mlx.core as mx
from mlx.utils import tree_map_with_path

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.optimizers.muon import Muon, Weights, _MuonFamily, as_matrix, cautious_lowp
from mlx_optim.registry import register

__all__ = ["QK_CLIP_ROLES", "row_normalize", "qk_clip_scales"]


def row_normalize(
    o: mx.array, v: mx.array, beta2: mx.array, eps: mx.array
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    r"""NorMuon's row-wise second-moment normalization of an orthogonalized matrix ``o`` (float32).

    :math:`v \leftarrow \beta_2 v + (1-\beta_2)\,\operatorname{mean}_{row}(o^2)`,
    :math:`\hat o = o / (\sqrt v + \epsilon)`. Returns ``(o_hat, v, ||o||_F, ||o_hat||_F + eps)``.
    """
    original_norm = F.norm(o)
    v = F.torch_lerp(v, mx.mean(mx.square(o), axis=-1, keepdims=True), 1 - beta2)
    o = o / (mx.sqrt(v) + eps)
    return o, v, original_norm, F.norm(o) + eps


@register
class NorMuon(_MuonFamily):
    r"""NorMuon (Li et al., 2025, "NorMuon: Making Muon more efficient and scalable"), pytorch_optimizer semantics.

    Muon's (Nesterov) momentum is orthogonalized, then each row is normalized by a
    running mean of its squared entries and the result rescaled:

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad u_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t),\quad
        O_t = \operatorname{NS}(u_t) \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \operatorname{mean}_{row}(O_t^2),\quad
        \hat O_t = \frac{O_t}{\sqrt{v_t} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, s\, c\, \frac{\hat O_t}{\|\hat O_t\|_F + \epsilon}

    on the matrix view ``(out, -1)``, with ``v`` one value per row. ``update_scale``:
    ``"preserve_norm"`` (:math:`c = \|O_t\|_F` and :math:`s` :class:`Muon`'s shape factor,
    Moonlight's with ``use_adjusted_lr``) or ``"match_rms"`` (:math:`c = 0.2\sqrt{\text{out}\cdot\text{in}}`,
    :math:`s = 1`). Parameters not selected by ``muon_filter`` get AdamW (``adamw_*``).
    ``ns_method``/``ns_reset_steps`` are the reference's ``**kwargs`` group options (honoured
    by its default batched path) and select :func:`~mlx_optim.optimizers.muon.gram_newton_schulz`.
    """

    name = "normuon"
    reference = "pytorch_optimizer.NorMuon"
    orthogonalize = Muon.orthogonalize

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        beta2: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        update_scale: str = "preserve_norm",
        use_adjusted_lr: bool = False,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._setup(
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            ns_steps=ns_steps,
            ns_coeffs=ns_coeffs,
            use_adjusted_lr=use_adjusted_lr,
            adamw_lr=adamw_lr,
            adamw_betas=adamw_betas,
            adamw_wd=adamw_wd,
            muon_filter=muon_filter,
        )
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("beta2", beta2, 0.0, 1.0, "[)")
        self._choice("update_scale", update_scale, ("preserve_norm", "match_rms"))
        self._hyper("adamw_eps", adamw_eps, 0.0)
        self._hyper("eps", eps, 0.0)
        self._choice("ns_method", ns_method, ("newton_schulz", "gram_newton_schulz"))
        self.nesterov, self.update_scale = bool(nesterov), update_scale
        self.ns_method = ns_method
        self.ns_reset_steps = tuple(int(s) for s in ns_reset_steps)

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)
        state["second_momentum_buffer"] = self.zeros(parameter, (parameter.shape[0], 1))

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        u = F.torch_lerp(g, buf, hp.momentum) if self.nesterov else buf
        o = as_matrix(self.orthogonalize(u)).astype(mx.float32)
        o, state["second_momentum_buffer"], norm0, norm = row_normalize(
            o, state["second_momentum_buffer"], hp.beta2, hp.eps
        )
        if self.update_scale == "preserve_norm":
            o, lr = o * (norm0 / norm), hp.lr * self.lr_ratio(p)
        else:
            # torch evaluates ``float / tensor`` as ``tensor.reciprocal() * float``
            o, lr = o * ((1.0 / norm) * (0.2 * math.sqrt(o.size))), hp.lr
        return p - lr * o.reshape(p.shape).astype(p.dtype)


QK_CLIP_ROLES = ("query", "key", "query_rotary", "key_rotary")
QKClip = Callable[[str, mx.array], "tuple[str, str] | None"] | Mapping[str, "tuple[str, str]"]


def qk_clip_scales(max_logits: mx.array, threshold: float, exponent: float) -> mx.array:
    r"""Per-head QK-Clip factors :math:`(\tau / \max(S_{max}, \tau))^{e}` (1 where :math:`S_{max} \le \tau`)."""
    max_logits = max_logits.astype(mx.float32)
    return mx.power(threshold / mx.maximum(max_logits, threshold), exponent)


@register
class MuonClip(Muon):
    r"""MuonClip (Kimi K2 report, Kimi Team 2025), pytorch_optimizer semantics: Muon plus per-head QK-Clip.

    The orthogonalized branch accumulates plain heavy-ball momentum (no Nesterov) and
    uses Moonlight's shape factor by default:

    .. math::
        b_t = \mu b_{t-1} + g_t,\quad p_t = p_{t-1} - \eta\, s\, \operatorname{NS}(b_t)

    after which every query/key projection whose attention reported a per-head maximum
    pre-softmax logit :math:`S_h > \tau` has that head's rows scaled by
    :math:`\gamma_h^{\alpha}` (query), :math:`\gamma_h^{1-\alpha}` (key) or :math:`\gamma_h`
    (``query_rotary``), :math:`\gamma_h = \tau / S_h`; ``key_rotary`` (a shared rotary
    key) is left unchanged. Parameters not selected by ``muon_filter`` get AdamW.

    **Calling convention.** The reference labels parameter groups with ``qk_clip`` (role)
    and ``attention_name`` and takes ``step(attention_max_logits={name: logits})``. Here
    ``qk_clip`` is a mapping ``{path: (role, attention_name)}`` or a callable
    ``(path, parameter) -> (role, attention_name) | None``, and the logits go to
    ``opt.update(model, grads, attention_max_logits={name: mx.array of shape (heads,)})``
    (or ``apply_gradients(..., attention_max_logits=...)``). The model computes them in its
    forward pass (e.g. ``mx.max(q @ k.T * scale, axis=(-2, -1))`` per head, reduced over
    the batch) and returns them beside the loss; they must not carry gradients
    (``mx.stop_gradient``). A projection's rows (first axis) are contiguous head blocks.
    Names missing from the mapping, or no mapping, skip clipping. ``weight_decouple`` and
    ``cautious`` reach the reference through its ``**kwargs``.
    """

    name = "muonclip"
    reference = "pytorch_optimizer.MuonClip"

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        qk_clip_threshold: float = 100.0,
        qk_clip_alpha: float = 0.5,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        maximize: bool = False,
        use_adjusted_lr: bool = True,
        *,
        weight_decouple: bool = True,
        cautious: bool = False,
        qk_clip: QKClip | None = None,
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            momentum,
            weight_decay,
            weight_decouple,
            False,
            ns_steps,
            ns_coeffs,
            use_adjusted_lr,
            adamw_lr,
            adamw_betas,
            adamw_wd,
            adamw_eps,
            maximize,
            ns_method,
            ns_reset_steps,
            cautious=cautious,
            muon_filter=muon_filter,
            state_dtype=state_dtype,
        )
        self._check("qk_clip_threshold", qk_clip_threshold, 0.0, None, "(]")
        self.qk_clip_threshold = float(qk_clip_threshold)
        self._check("qk_clip_alpha", qk_clip_alpha, 0.0, 1.0, "[]")
        self.qk_clip_alpha = float(qk_clip_alpha)
        if qk_clip is not None and not callable(qk_clip):
            if not isinstance(qk_clip, Mapping):
                raise ValueError(f"MuonClip: qk_clip={qk_clip!r} must be a mapping or a callable(path, parameter)")
            for spec in qk_clip.values():
                self._clip_spec(spec)
        self.qk_clip = qk_clip

    def _clip_spec(self, spec) -> tuple[str, str] | None:
        if spec is None:
            return None
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise ValueError(f"MuonClip: qk_clip entry {spec!r} must be (role, attention_name)")
        role, attention = spec
        self._choice("qk_clip", role, QK_CLIP_ROLES)
        return role, attention

    def clip_spec(self, path: str, parameter: mx.array) -> tuple[str, str] | None:
        """``(role, attention_name)`` of the leaf at ``path``, or None when it is not clipped."""
        if self.qk_clip is None:
            return None
        spec = self.qk_clip(path, parameter) if callable(self.qk_clip) else self.qk_clip.get(path)
        return self._clip_spec(spec)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay(p, g, "weight_decay", hp.lr)
        buf = state["momentum_buffer"] * hp.momentum + g
        state["momentum_buffer"] = buf
        o = self.orthogonalize(buf)
        if self.cautious:
            o = cautious_lowp(o, g)
        return p - (hp.lr * self.lr_ratio(p)) * o.astype(p.dtype)

    def apply_gradients(
        self,
        gradients: dict,
        parameters: dict,
        loss: mx.array | None = None,
        attention_max_logits: Mapping[str, mx.array] | None = None,
    ) -> dict:
        new = super().apply_gradients(gradients, parameters, loss=loss)
        if not attention_max_logits or self.qk_clip is None:
            return new
        return tree_map_with_path(lambda path, p: self._clip(path, p, attention_max_logits), new)

    def update(
        self,
        model,
        gradients: dict,
        loss: mx.array | None = None,
        attention_max_logits: Mapping[str, mx.array] | None = None,
    ) -> None:
        """Apply ``gradients`` to ``model``, then QK-Clip with this batch's per-head maximum logits."""
        model.update(self.apply_gradients(gradients, model, loss=loss, attention_max_logits=attention_max_logits))

    def _clip(self, path: str, p: mx.array, attention_max_logits: Mapping[str, mx.array]) -> mx.array:
        spec = self.clip_spec(path, p)
        if spec is None or spec[0] == "key_rotary" or spec[1] not in attention_max_logits:
            return p
        role, attention = spec
        logits = mx.stop_gradient(mx.array(attention_max_logits[attention]))
        if logits.ndim != 1 or logits.size == 0:
            raise ValueError("MuonClip: attention maximum logits must be a nonempty one-dimensional array")
        heads = logits.size
        if p.ndim == 0 or p.shape[0] % heads != 0:
            raise ValueError(
                f"MuonClip: the first dimension of '{path}' {p.shape} must be divisible by the head count {heads}"
            )
        exponent = {"query": self.qk_clip_alpha, "key": 1.0 - self.qk_clip_alpha, "query_rotary": 1.0}[role]
        scales = qk_clip_scales(logits, self.qk_clip_threshold, exponent).astype(p.dtype)
        rows = mx.repeat(scales, p.shape[0] // heads)
        return p * rows.reshape((-1,) + (1,) * (p.ndim - 1))


# ----------------------------------------------------------------------------- SpectralSphere

MSIGN_COEFFICIENTS = [  # sso.py's Polar Express schedule (rounded to 4 decimals there)
    (8.2051, -22.9019, 16.4607),
    (4.0664, -2.8612, 0.5184),
    (3.9096, -2.8234, 0.5250),
    (3.2856, -2.4153, 0.4853),
    (2.2779, -1.6198, 0.3985),
    (1.8726, -1.2307, 0.3585),
    (1.8564, -1.2132, 0.3568),
    (1.8750, -1.2500, 0.3750),
]
_BF16 = mx.bfloat16


def _bf16(x: mx.array) -> mx.array:
    """Round to bfloat16 and compute on in float32 (torch's bfloat16 CPU ops round once per op)."""
    return x.astype(_BF16).astype(mx.float32)


def _normalize_bf16(x: mx.array, axis: int) -> mx.array:
    """``torch.nn.functional.normalize(x, dim=axis)`` of ``x`` rounded to bfloat16 (norm and quotient rounded)."""
    x = _bf16(x)
    n = _bf16(mx.sqrt(mx.sum(mx.square(x), axis=axis, keepdims=True)))
    return _bf16(x / mx.maximum(n, 1e-12))


def power_iteration(w: mx.array, steps: int) -> tuple[mx.array, mx.array]:
    """sso.py's bilateral power iteration in bfloat16: leading left/right singular vectors ``(u, v)`` as columns."""
    w = _bf16(w)
    v = mx.ones((w.shape[1], 1), dtype=mx.float32)
    for _ in range(steps):
        v = _normalize_bf16(w.T @ _bf16(w @ v), axis=0)
    return _normalize_bf16(w @ v, axis=0), v


def msign(x: mx.array, steps: int) -> mx.array:
    """sso.py's ``msign``: Frobenius-normalize in float32, then Polar Express Newton–Schulz in bfloat16 (as float32)."""
    transpose = x.shape[0] > x.shape[1]
    x = x.T if transpose else x
    x = _bf16(x / mx.maximum(mx.sqrt(mx.sum(mx.square(x))), 1e-7))
    for i in range(steps):
        ca, cb, cc = MSIGN_COEFFICIENTS[min(i, len(MSIGN_COEFFICIENTS) - 1)]
        a = _bf16(x @ x.T)
        b = _bf16(cb * a + cc * (a @ a))
        x = _bf16(ca * x + b @ x)
    return x.T if transpose else x


def solve_lambda(x: mx.array, theta: mx.array, steps: int, tolerance: float, max_iterations: int) -> mx.array:
    r"""The multiplier :math:`\lambda` with :math:`\langle\Theta, \operatorname{msign}(X + \lambda\Theta)\rangle = 0`.

    sso.py's ``solve_lambda_foreach`` for one matrix, branch-free: from :math:`\lambda = 0`,
    steps of :math:`\pm 10^{-3}` doubling up to 10 times look for a sign change of ``f``
    (bfloat16), then ``max_iterations`` bisection steps keep the best :math:`\lambda` (0
    when no bracket is found). Every evaluation runs; finished searches are masked.
    """

    def f(lam: mx.array) -> mx.array:
        phi = msign(x + _bf16(lam * theta), steps)
        return _bf16(mx.sum(_bf16(theta * phi)))

    prev = mx.array(0.0)
    prev_f = f(prev)
    step = mx.where(prev_f < 0, 1e-3, -1e-3)
    found = mx.abs(prev_f) < tolerance
    left = right = prev
    left_f = right_f = prev_f
    for _ in range(10):
        cur = prev + step
        cur_f = f(cur)
        crossing = ~found & ((prev_f <= 0) != (cur_f <= 0))
        up = prev_f <= 0
        left = mx.where(crossing, mx.where(up, prev, cur), left)
        right = mx.where(crossing, mx.where(up, cur, prev), right)
        left_f = mx.where(crossing, mx.where(up, prev_f, cur_f), left_f)
        right_f = mx.where(crossing, mx.where(up, cur_f, prev_f), right_f)
        found = found | crossing
        prev, prev_f, step = cur, cur_f, step * 2.0
    use_left = mx.abs(left_f) < mx.abs(right_f)
    best = mx.where(use_left, left, right)
    best_f = mx.where(use_left, left_f, right_f)
    active = found & (mx.abs(best_f) > tolerance)
    for _ in range(max_iterations):
        mid = (left + right) * 0.5
        mid_f = f(mid)
        improved = active & (mx.abs(mid_f) < mx.abs(best_f))
        best = mx.where(improved, mid, best)
        best_f = mx.where(improved, mid_f, best_f)
        active = active & (mx.abs(mid_f) > tolerance)
        left = mx.where(active & (mid_f < 0), mid, left)
        right = mx.where(active & (mid_f >= 0), mid, right)
    return best


def spectral_ball_update(
    w: mx.array, m: mx.array, power_steps: int, msign_steps: int, tolerance: float, max_iterations: int
) -> mx.array:
    r"""sso.py's ``compute_spectral_ball_update``: :math:`\operatorname{msign}(\hat M + \lambda\, u v^\top)`.

    :math:`\hat M = M / \max(\|M\|_F, 10^{-8})`, :math:`u, v` the power-iteration singular
    vectors of ``w``, :math:`\lambda` from :func:`solve_lambda` so that the update has no
    component along :math:`u v^\top`.
    """
    m = m.astype(mx.float32)
    m = m / mx.maximum(mx.sqrt(mx.sum(mx.square(m))), 1e-8)
    u, v = power_iteration(w, power_steps)
    theta = _bf16(u @ v.T)
    lam = solve_lambda(m, theta, msign_steps, tolerance, max_iterations)
    return msign(m + _bf16(lam * theta), msign_steps)


@register
class SpectralSphere(Optimizer):
    r"""SpectralSphere (spectral-sphere optimizer, pytorch_optimizer's ``sso.py``): tangent spectral updates.

    (Nesterov) momentum is normalized and its matrix sign taken after adding the
    multiple of the weight's leading singular direction :math:`\Theta = u v^\top` that
    makes the update orthogonal to :math:`\Theta` (first order, the update keeps the
    spectral norm of the weight):

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad m_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t) \\
        \lambda_t:\ \langle \Theta_t, \operatorname{msign}(\hat m_t + \lambda_t \Theta_t)\rangle = 0,\quad
        p_t = p_{t-1} - \eta\, \operatorname{msign}(\hat m_t + \lambda_t \Theta_t)

    with :math:`\hat m = m / \|m\|_F`, :math:`u, v` from ``power_iteration_steps`` of
    bilateral power iteration and msign ``msign_steps`` Polar Express Newton–Schulz steps
    (all in bfloat16, as the reference). Weight decay (``weight_decay`` at the learning rate)
    is decoupled unless ``weight_decouple=False``. The paper references are Spectral MuP and
    Bernstein & Newhouse, "Modular Duality in Deep Learning" (2024).

    The multiplier is found by the reference's batched solver (``solve_lambda_foreach``,
    its path with ``foreach=True``) without early exits: 11 + ``solver_max_iterations``
    msign evaluations per matrix per step, so keep ``solver_max_iterations`` small for big
    matrices (the float32 bisection interval stops shrinking after about 30 halvings).
    Its default CPU path (scalar bisection in float64) gives the same ``lambda`` up to float32
    rounding. Like the reference, only 2-D parameters are supported: a tree with other
    parameters needs ``spectral_filter(path, parameter) -> bool``; the leaves it rejects are
    left unchanged (as parameters not given to the reference optimizer).
    """

    name = "spectralsphere"
    family = "orthogonalized"
    reference = "pytorch_optimizer.SpectralSphere"

    def __init__(
        self,
        learning_rate: Tunable = 3e-4,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        nesterov: bool = True,
        power_iteration_steps: int = 10,
        msign_steps: int = 5,
        solver_tolerance_f: float = 1e-8,
        solver_max_iterations: int = 100,
        maximize: bool = False,
        *,
        spectral_filter: Callable[[str, mx.array], bool] | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._check("power_iteration_steps", power_iteration_steps, 0, None, "(]")
        self._check("msign_steps", msign_steps, 0, None, "(]")
        self._check("solver_max_iterations", solver_max_iterations, 0, None, "[]")
        if spectral_filter is not None and not callable(spectral_filter):
            raise ValueError(f"SpectralSphere: spectral_filter={spectral_filter!r} must be a callable(path, parameter)")
        self.weight_decouple, self.nesterov = bool(weight_decouple), bool(nesterov)
        self.power_iteration_steps, self.msign_steps = int(power_iteration_steps), int(msign_steps)
        self.solver_tolerance_f, self.solver_max_iterations = float(solver_tolerance_f), int(solver_max_iterations)
        self.spectral_filter = spectral_filter

    def selected(self, parameter: mx.array) -> bool:
        if self.spectral_filter is not None and not self.spectral_filter(self._leaf_path, parameter):
            return False
        if parameter.ndim != 2:
            raise ValueError(
                f"SpectralSphere only supports 2D parameters; '{self._leaf_path}' has shape {parameter.shape} "
                "(exclude it with spectral_filter)"
            )
        return True

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.selected(parameter):
            state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if not self.selected(p):
            return p
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        m = F.torch_lerp(g, buf, hp.momentum) if self.nesterov else buf
        u = spectral_ball_update(
            p,
            m,
            self.power_iteration_steps,
            self.msign_steps,
            self.solver_tolerance_f,
            self.solver_max_iterations,
        )
        return p - hp.lr * u.astype(p.dtype)
