"""LoRA-RITE: transformation-invariant matrix preconditioning of LoRA factor pairs."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim import linalg
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


def _inf_to_nan(x: mx.array, enabled: bool) -> mx.array:
    return mx.where(mx.isinf(x), mx.array(float("nan"), x.dtype), x) if enabled else x


def _sym(x: mx.array) -> mx.array:
    return (x + x.T) * 0.5


def lora_to_2d(x: mx.array, dim: int) -> mx.array:
    """Move a LoRA factor's rank axis ``dim`` last and flatten the rest: ``(n, r)``."""
    if x.ndim == 0:
        x, dim = x.reshape(1), 0
    moved = mx.moveaxis(x, dim, -1)
    return moved.reshape(-1, moved.shape[-1])


def lora_from_2d(x: mx.array, like: mx.array, dim: int) -> mx.array:
    """Inverse of :func:`lora_to_2d` for a factor shaped like ``like``."""
    if like.ndim == 0:
        return x.reshape(())
    shape = mx.moveaxis(like, dim, -1).shape
    return mx.moveaxis(x.reshape(shape), -1, dim)


def lora_inverse_root(v: mx.array, escape: mx.array, eps: mx.array, eps_root: mx.array, relative: bool) -> mx.array:
    """``(V + escape + eps_root)^{-1/2}`` with ``eps`` added to the root, from ``eigh`` of the symmetrized ``V``."""
    eigenvalues, eigenvectors = linalg.eigh(_sym(v))
    root_eps = mx.maximum(mx.max(eigenvalues), 0.0) * eps_root if relative else eps_root
    inverse = 1.0 / (mx.sqrt(mx.maximum(eigenvalues, 0.0) + escape + root_eps) + eps)
    return _sym((eigenvectors * inverse[None, :]) @ eigenvectors.T)


def lora_escape(new_v: mx.array, old_v: mx.array) -> mx.array:
    """RITE's escape term: the second-moment mass lost by the basis change (eigenvalue and trace bound)."""
    old_eig = mx.linalg.eigvalsh(old_v, stream=mx.cpu)
    new_eig = mx.linalg.eigvalsh(new_v, stream=mx.cpu)
    eigen_diff = mx.maximum(mx.max(old_eig - new_eig), 0.0)
    trace_diff = mx.maximum(mx.trace(old_v) - mx.trace(new_v), 0.0)
    return mx.minimum(eigen_diff, trace_diff)


@register
class LoRARite(Optimizer):
    r"""LoRA-RITE: transformation-invariant matrix preconditioning of LoRA factor pairs.

    For a pair :math:`W = B A^\top` with factors in 2-D form :math:`A \in \mathbb{R}^{n_A\times r}`,
    :math:`B \in \mathbb{R}^{n_B\times r}` (rank axis last), each step takes QR decompositions
    :math:`A = Q_A R_A`, :math:`B = Q_B R_B` and works on the *unmagnified* gradients
    :math:`\tilde G_A = G_A R_B^{+}`, :math:`\tilde G_B = G_B R_A^{+}` (globally clipped over all pairs,
    optionally skipped when their RMS is too large). The second moment of each side is the
    :math:`r\times r` matrix

    .. math::
        V_t = \bar\beta_2 P V_{t-1} P^\top + (1-\bar\beta_2)\,\tilde G^\top \tilde G / n,\quad
        M_t = \bar\beta_1 M_{t-1} P^\top + (1-\bar\beta_1)\,\tilde G (V_t + \rho + \epsilon^2)^{-1/2}

    where :math:`P = Q_{\text{new}}^\top Q_{\text{old}}` maps the previous basis to the new one,
    :math:`\bar\beta = \beta(1-\beta^{t-1})/(1-\beta^t)` (bias-corrected decay), the inverse root adds
    ``eps`` after the square root and :math:`\rho` is the optional *escape* correction (``apply_escape``).
    The update is :math:`A \leftarrow A - \eta (M_A R_B^{+\top} + \lambda A)` (likewise for :math:`B`),
    with optional RMS capping of :math:`M` and norm balancing of the pair (``balance_param``).

    **Pairing convention (MLX).** The reference pairs parameters by position (``a1, b1, a2, b2, ...``). Here
    a leaf whose last path component is ``lora_names[0]`` (default ``"lora_a"``, the *left* factor) is paired
    with the sibling leaf ``lora_names[1]`` (default ``"lora_b"``, the *right* factor), as in mlx-lm's
    ``LoRALinear``. As in the reference, unpaired leaves (and pairs one of whose gradients is missing from the
    gradient tree) are left unchanged; a gradient tree without any pair raises ``ValueError`` (nothing would be
    updated). ``lora_l_dim`` / ``lora_r_dim`` are the rank axes of the left / right
    factors; the defaults ``0`` / ``-1`` are the reference's (PEFT layout ``A: (r, in)``, ``B: (out, r)``).
    **For mlx-lm's layout** (``lora_a: (in, r)``, ``lora_b: (r, out)``) pass ``lora_l_dim=-1, lora_r_dim=0``.
    The pair's step count is the optimizer's global step (every pair is updated every step). A factor whose
    2-D form has fewer rows than its rank is rejected (its QR basis would change the state's shape).

    Paper: Yen et al., "LoRA Done RITE: Robust Invariant Transformation Equilibration for LoRA
    Optimization", ICLR 2025, arXiv:2410.20625.

    Reference: ``pytorch_optimizer.LoRARite`` (parity-checked). Differences: pairing by leaf name instead
    of by position (above), and ``lora_names`` is new.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first moment and of the matrix second moment, each in
            [0, 1) (bias-corrected as :math:`\bar\beta` above). Default ``(0.9, 0.999)``.
        eps: Added after the inverse square root; its square :math:`\epsilon^2` is added to the eigenvalues
            before it (>= 0). Default ``1e-6``.
        relative_epsilon: Scale the :math:`\epsilon^2` added to the eigenvalues by the largest eigenvalue of
            :math:`V_t`. Default ``False``.
        clip_unmagnified_grad: Global norm (over all pairs) above which the unmagnified gradients are scaled
            down (>= 0; 0 disables). Default ``1.0``.
        update_capping: RMS above which a preconditioned first moment :math:`M` is scaled down to it (>= 0;
            0 disables). Default ``0.0``.
        update_skipping: RMS above which an unmagnified gradient is replaced by zeros (>= 0; 0 disables).
            Default ``1.0``.
        weight_decay: Weight decay :math:`\lambda` added to the update (>= 0). Default ``0.0``.
        apply_escape: Add the escape term :math:`\rho` (second-moment mass lost by the basis change).
            Default ``False``.
        lora_l_dim: Rank axis of the left factors (``lora_names[0]``). Default ``0``.
        lora_r_dim: Rank axis of the right factors (``lora_names[1]``). Default ``-1``.
        maybe_inf_to_nan: Turn infinite gradients and statistics into NaN before the threshold tests (so an
            infinite RMS does not pass as large but finite). Default ``True``.
        balance_param: After the update, rescale the two factors of a pair to the same norm (their product is
            unchanged). Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        lora_names: ``(left, right)``: the last path components of the two factors of a pair (keyword-only).
            Default ``("lora_a", "lora_b")``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "lorarite"
    family = "quasi-newton"
    reference = "pytorch_optimizer.LoRARite"
    groups_unsupported = "its whole update is computed per pair of LoRA factors in the whole-tree pass"
    zero_compatible = False  # the gradient clipping norm is global over pairs, and a pair must live on one rank

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: Tunable = 1e-6,
        relative_epsilon: bool = False,
        clip_unmagnified_grad: Tunable = 1.0,
        update_capping: Tunable = 0.0,
        update_skipping: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        apply_escape: bool = False,
        lora_l_dim: int = 0,
        lora_r_dim: int = -1,
        maybe_inf_to_nan: bool = True,
        balance_param: bool = False,
        maximize: bool = False,
        *,
        lora_names: tuple[str, str] = ("lora_a", "lora_b"),
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._hyper("clip_unmagnified_grad", clip_unmagnified_grad, 0.0)
        self._hyper("update_capping", update_capping, 0.0)
        self._hyper("update_skipping", update_skipping, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        if len(lora_names) != 2 or lora_names[0] == lora_names[1]:
            raise ValueError(f"LoRARite: lora_names={lora_names!r} must be two different leaf names")
        self.relative_epsilon, self.apply_escape, self.balance_param = relative_epsilon, apply_escape, balance_param
        self.lora_l_dim, self.lora_r_dim = int(lora_l_dim), int(lora_r_dim)
        self.maybe_inf_to_nan = maybe_inf_to_nan
        self.lora_names = tuple(lora_names)
        self._pending: dict[str, mx.array] = {}

    def _side(self, path: str) -> int | None:
        """0 for a left factor, 1 for a right factor, None for other leaves."""
        last = path.rsplit(".", 1)[-1]
        return self.lora_names.index(last) if last in self.lora_names else None

    def init_single(self, parameter: mx.array, state: dict) -> None:
        side = self._side(self._leaf_path)
        if side is None:
            return
        x = lora_to_2d(parameter, self.lora_l_dim if side == 0 else self.lora_r_dim)
        n, r = x.shape
        if n < r:
            which, dim_name = ("left", "lora_l_dim") if side == 0 else ("right", "lora_r_dim")
            raise ValueError(
                f"LoRARite: factor '{self._leaf_path}' has {n} rows but rank {r} in its 2-D form. "
                f"{self._pairing_hint()} '{self._leaf_path}' was taken as the {which} factor; if it is one, set "
                f"{dim_name} to its rank axis (now {getattr(self, dim_name)})"
            )
        state["v"] = self.zeros(parameter, (r, r))
        state["m"] = self.zeros(parameter, (n, r))
        state["basis"] = self.zeros(parameter, (n, r))
        state["escape"] = self.zeros(parameter, ())

    def _pairing_hint(self) -> str:
        left, right = self.lora_names
        return (
            f"LoRARite pairs factors by leaf name, not by position as the reference does: a leaf named '{left}' with "
            f"its sibling '{right}' (lora_names={self.lora_names!r}). Pass lora_names=(left, right) with your "
            "model's factor names (e.g. ('A', 'B') for '...A' / '...B' leaves) or rename the factors."
        )

    def step_scalars(self, hp) -> None:
        def decay(beta):  # the reference's bias_corrected_decay at its pair step t - 1
            return beta * F.bias_correction(beta, hp.step - 1) / F.bias_correction(beta, hp.step)

        hp.beta1_decay, hp.beta2_decay = decay(hp.beta1), decay(hp.beta2)
        hp.eps_root = hp.eps * hp.eps

    def _pairs(self, gradients, parameters) -> list[tuple[tuple, tuple]]:
        found = {path: (path, g, p, s) for path, g, p, s in leaves(gradients, parameters, self.state)}
        left, right = self.lora_names
        pairs = []
        for path, item in found.items():
            if self._side(path) == 0:
                partner = path[: len(path) - len(left)] + right
                if partner in found:
                    pairs.append((item, found[partner]))
        return pairs

    def prepare(self, gradients, parameters) -> None:
        hp = self.hp
        self._pending = {}
        infos, norm_sq = [], mx.zeros((), mx.float32)
        pairs = self._pairs(gradients, parameters)
        if not pairs:  # a Python-level check of the tree's paths (compile-safe)
            raise ValueError(f"LoRARite found no LoRA factor pair among the gradients. {self._pairing_hint()}")
        for (lpath, gl, pl, sl), (rpath, gr, pr, sr) in pairs:
            dtype = self.compute_dtype(pl)
            pl2 = lora_to_2d(pl.astype(dtype), self.lora_l_dim)
            pr2 = lora_to_2d(pr.astype(dtype), self.lora_r_dim)
            basis_l, rot_l = mx.linalg.qr(pl2, stream=mx.cpu)
            basis_r, rot_r = mx.linalg.qr(pr2, stream=mx.cpu)
            rinv_l = mx.linalg.pinv(rot_l, stream=mx.cpu)
            rinv_r = mx.linalg.pinv(rot_r, stream=mx.cpu)
            proj_l = basis_r.T @ sr["basis"].astype(dtype)
            proj_r = basis_l.T @ sl["basis"].astype(dtype)
            gl = _inf_to_nan(gl.astype(dtype), self.maybe_inf_to_nan)
            gr = _inf_to_nan(gr.astype(dtype), self.maybe_inf_to_nan)
            if self.maximize:
                gl, gr = -gl, -gr
            ul = lora_to_2d(gl, self.lora_l_dim) @ rinv_r
            ur = lora_to_2d(gr, self.lora_r_dim) @ rinv_l
            if "update_skipping" not in self._zero:
                ul, ur = (
                    mx.where(_inf_to_nan(F.rms(u), self.maybe_inf_to_nan) > hp.update_skipping, 0.0, u)
                    for u in (ul, ur)
                )
            sl["basis"], sr["basis"] = basis_l, basis_r  # state_dtype rounding: apply_single, per leaf
            norm_sq = norm_sq + mx.sum(mx.square(ul)) + mx.sum(mx.square(ur))
            infos.append(((lpath, pl, pl2, sl, ul, rinv_r, proj_l), (rpath, pr, pr2, sr, ur, rinv_l, proj_r)))
        grad_norm = mx.sqrt(norm_sq)
        scale = None
        if "clip_unmagnified_grad" not in self._zero:
            scale = mx.minimum(hp.clip_unmagnified_grad / grad_norm, 1.0)
        for left, right in infos:
            self._pair_update(left, right, scale)

    def _side_update(self, side: tuple, scale: mx.array | None) -> tuple[mx.array, mx.array]:
        """Precondition one factor's unmagnified gradient; returns ``(2-D update before -lr, its parameter)``."""
        hp = self.hp
        path, p, p2, s, u, rinv, proj = side
        if scale is not None:
            u = u * scale
        dtype = u.dtype
        v_old = s["v"].astype(dtype)
        second = _sym(u.T @ u) / u.shape[0]
        v_moved = mx.nan_to_num(_sym(proj @ v_old @ proj.T))
        if self.apply_escape:
            escape = hp.beta2_decay * (lora_escape(v_moved, v_old) + s["escape"].astype(dtype))
        else:
            escape = mx.zeros((), dtype)
        v = second * (1 - hp.beta2_decay) + v_moved * hp.beta2_decay
        u = mx.nan_to_num(u @ lora_inverse_root(v, escape, hp.eps, hp.eps_root, self.relative_epsilon))
        m = u * (1 - hp.beta1_decay) + (s["m"].astype(dtype) @ proj.T) * hp.beta1_decay
        if "update_capping" not in self._zero:
            m = m / mx.maximum(1.0, _inf_to_nan(F.rms(m), self.maybe_inf_to_nan) / hp.update_capping)
        update = m @ rinv.T
        self._leaf_path = path
        if self.decays():
            update = update + hp.weight_decay * p2
        s["v"], s["m"], s["escape"] = v, m, escape
        return -hp.lr * update

    def _pair_update(self, left: tuple, right: tuple, scale: mx.array | None) -> None:
        upd_l, upd_r = self._side_update(left, scale), self._side_update(right, scale)
        (lpath, _, pl2, *_), (rpath, _, pr2, *_) = left, right
        if self.balance_param:
            norm_l = mx.linalg.norm(pl2 + upd_l) + 1e-6
            norm_r = mx.linalg.norm(pr2 + upd_r) + 1e-6
            balanced = mx.sqrt(norm_l * norm_r)
            upd_l = upd_l * (balanced / norm_l) + pl2 * (balanced / norm_l - 1.0)
            upd_r = upd_r * (balanced / norm_r) + pr2 * (balanced / norm_r - 1.0)
        self._pending[lpath] = (pl2 + upd_l, self.lora_l_dim)
        self._pending[rpath] = (pr2 + upd_r, self.lora_r_dim)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        pending = self._pending.pop(self._leaf_path, None)
        if pending is None:  # not a LoRA pair member: left unchanged, as in the reference
            return p
        new, dim = pending
        return lora_from_2d(new, p, dim)
