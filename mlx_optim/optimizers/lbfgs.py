"""L-BFGS with torch.optim semantics, optionally with a strong-Wolfe line search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register

CURVATURE_EPS = 1e-10  # torch's hard-coded threshold on y.s for accepting a curvature pair


def _scalar(x: mx.array) -> np.floating:
    """A 0-d array as a NumPy scalar of its precision (the analogue of a 0-d torch tensor)."""
    return np.float64(x.item()) if x.dtype == mx.float64 else np.float32(x.item())


def _dot(a: mx.array, b: mx.array) -> np.floating:
    return _scalar(mx.inner(a, b))


def _abs_max(a: mx.array) -> np.floating:
    return _scalar(mx.max(mx.abs(a)))


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through ``(x1, f1, g1)`` and ``(x2, f2, g2)``, clamped to ``bounds``.

    Falls back to the middle of the bounds when the cubic has no real minimizer
    (torch's ``_cubic_interpolate``, itself from ``polyinterp.lua``).
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(
    obj: Callable[[Any], tuple[float, mx.array]],
    t,
    d: mx.array,
    f: float,
    g: mx.array,
    gtd,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
):
    """Strong-Wolfe line search along ``d`` from the point where the loss is ``f`` and the gradient ``g``.

    ``obj(t)`` returns ``(loss, flat_grad)`` at ``x + t d``; ``gtd = g . d``.
    Bracketing with cubic extrapolation, then zoom with safeguarded cubic
    interpolation, until :math:`f(x+td) \\le f + c_1 t\\, g^\\top d` and
    :math:`|g(x+td)^\\top d| \\le -c_2\\, g^\\top d`, or ``max_ls`` evaluations.
    Returns ``(f_low, g_low, t_low, evaluations)``; a line-for-line port of
    torch's ``_strong_wolfe`` (``lswolfe.lua``).
    """
    d_norm = _abs_max(d)
    f_new, g_new = obj(t)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj(t)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:  # reached the evaluation budget while bracketing
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: refine the bracket until a point satisfies the strong Wolfe conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # safeguard: keep t at least 10% of the bracket away from its ends
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj(t)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition fails or not lower than the lowest point: new high
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high becomes the new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            # the new point becomes the new low
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def two_loop_direction(
    g: mx.array, old_dirs: list[mx.array], old_stps: list[mx.array], ro: list[mx.array], h_diag
) -> mx.array:
    """The L-BFGS direction :math:`d = -H g` by the two-loop recursion.

    ``old_dirs`` holds the gradient differences :math:`y_i`, ``old_stps`` the steps
    :math:`s_i` (oldest first, torch's naming), ``ro`` :math:`1 / y_i^\\top s_i`, and
    ``h_diag`` the initial inverse-Hessian scale :math:`y^\\top s / y^\\top y`.
    """
    q = -g
    al = [None] * len(old_dirs)
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = mx.inner(old_stps[i], q) * ro[i]
        q = q - al[i] * old_dirs[i]
    r = q * h_diag
    for i in range(len(old_dirs)):
        be_i = mx.inner(old_dirs[i], r) * ro[i]
        r = r + (al[i] - be_i) * old_stps[i]
    return r


class _FlatView:
    """The trainable parameters of a module (or the leaves of a parameter dict) as one vector.

    The vector is float32, or float64 when a parameter is float64 (as torch, which works in the parameters' dtype).
    """

    def __init__(self, target: Any):
        if isinstance(target, nn.Module):
            self.module = True
            tree = target.trainable_parameters()
        elif isinstance(target, dict):
            self.module = False
            tree = target
        else:
            raise TypeError(
                f"LBFGS.step_with: expected an nn.Module or a dict of parameters, got {type(target).__name__}"
            )
        self.target = target
        leaves = tree_flatten(tree)
        if not leaves:
            raise ValueError("LBFGS.step_with: there are no trainable parameters to optimize")
        for path, v in leaves:
            if not isinstance(v, mx.array):
                raise TypeError(f"LBFGS.step_with: parameter '{path}' is a {type(v).__name__}, expected an mx.array")
        self.paths = [k for k, _ in leaves]
        self.shapes = [v.shape for _, v in leaves]
        self.dtypes = [v.dtype for _, v in leaves]
        self.sizes = [v.size for _, v in leaves]
        self.size = sum(self.sizes)
        self.dtype = mx.float64 if mx.float64 in self.dtypes else mx.float32
        self.exact = all(dt == self.dtype for dt in self.dtypes)  # writing x back loses nothing
        self.x = self._flatten([v for _, v in leaves])

    def _flatten(self, arrays: list[mx.array]) -> mx.array:
        return mx.concatenate([a.reshape(-1).astype(self.dtype) for a in arrays])

    def flat_grad(self, grads: Any) -> mx.array:
        """The gradient tree as a vector in parameter order (missing leaves are zero, as in torch)."""
        by_path = dict(tree_flatten(grads))
        unknown = set(by_path) - set(self.paths)
        if unknown:
            raise ValueError(f"LBFGS.step_with: gradient at '{sorted(unknown)[0]}' has no matching parameter")
        parts = []
        for path, shape, size in zip(self.paths, self.shapes, self.sizes, strict=True):
            g = by_path.get(path)
            if g is None:
                parts.append(mx.zeros((size,), self.dtype))
                continue
            if g.shape != shape:
                raise ValueError(
                    f"LBFGS.step_with: gradient at '{path}' has shape {tuple(g.shape)} "
                    f"but the parameter has shape {tuple(shape)}"
                )
            parts.append(g.reshape(-1).astype(self.dtype))
        return mx.concatenate(parts)

    def write(self, x: mx.array) -> mx.array:
        """Set the parameters to ``x`` (cast to each leaf's dtype); returns the vector actually stored."""
        leaves, offset = [], 0
        for shape, dtype, size in zip(self.shapes, self.dtypes, self.sizes, strict=True):
            leaves.append(x[offset : offset + size].reshape(shape).astype(dtype))
            offset += size
        tree = tree_unflatten(list(zip(self.paths, leaves, strict=True)))
        if self.module:
            self.target.update(tree)
        else:
            _assign(self.target, tree)
        self.x = x if self.exact else self._flatten(leaves)
        return self.x


def _assign(dst: Any, src: Any) -> None:
    """Write the leaves of ``src`` into the (mutable) containers of ``dst`` in place."""
    items = src.items() if isinstance(src, dict) else enumerate(src)
    for k, v in items:
        if isinstance(v, (dict, list)):
            _assign(dst[k], v)
        else:
            dst[k] = v


def _check_int(owner: str, name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{owner}: {name}={value!r} must be an integer >= {low}")


@register
class LBFGS(Optimizer):
    r"""L-BFGS: limited-memory quasi-Newton steps as torch.optim.LBFGS, optionally with a strong-Wolfe line search.

    Each :meth:`step_with` runs up to ``max_iter`` quasi-Newton iterations on the
    full parameter vector :math:`x` (all trainable leaves flattened in
    ``tree_flatten`` order, in float32; float64 if a parameter is float64). The direction comes from the last
    ``history_size`` curvature pairs by the two-loop recursion, and the step is
    either fixed (:math:`t = \eta`) or found by torch's strong-Wolfe line search:

    .. math::
        s_k = t_k d_k,\quad y_k = g_{k+1} - g_k,\quad \rho_k = 1 / y_k^\top s_k
        \ \text{(pair kept only if } y_k^\top s_k > 10^{-10}\text{)} \\
        d_{k+1} = -H_{k+1} g_{k+1},\quad H^0_{k+1} = \frac{y_k^\top s_k}{y_k^\top y_k} I,\quad
        x_{k+2} = x_{k+1} + t_{k+1} d_{k+1}

    Call it as ``loss = opt.step_with(model, loss_and_grad_fn, *args, **kwargs)``
    where ``loss_and_grad_fn(model, *args, **kwargs)`` returns ``(loss, grads)``
    for the model's trainable parameters (what ``nn.value_and_grad(model, loss_fn)``
    gives); the parameters are written with ``model.update``. A plain (nested)
    dict of arrays may be passed instead of a module: then
    ``loss_and_grad_fn(params, *args, **kwargs)`` is called (e.g.
    ``mx.value_and_grad(loss_fn)``) and the dict is updated in place. The return
    value is the loss at the start of the step, as in torch. ``update`` and
    ``apply_gradients`` raise ``ValueError``: one gradient is not enough.

    The control flow depends on loss and gradient values (``.item()``), so the
    optimizer is not compilable (``compilable = False``); for speed, compile the
    function instead: ``mx.compile(mx.value_and_grad(loss_fn))`` for a dict of
    parameters, ``mlx_optim.value_and_grad(model, loss_fn, compile=True)`` for a module.

    Follows torch's quirks (Nocedal 1980 / minFunc-style, see ``torch/optim/lbfgs.py``):
    the iteration counter ``n_iter`` is cumulative over steps, so only the very
    first iteration takes :math:`d = -g` with :math:`t = \min(1, 1/\|g\|_1)\,\eta`;
    later steps continue from the stored history. Without a line search the step
    is fixed and the loss is not re-evaluated after the last inner iteration. The
    line search uses :math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, its own
    ``tolerance_change = 1e-9`` and at most ``max_eval`` minus the evaluations
    already made in the step. ``max_eval`` defaults to ``max_iter * 5 // 4``.

    State (all arrays, saved and resumed with the rest): ``old_dirs`` (the
    :math:`y_i`) and ``old_stps`` (the :math:`s_i`) as ``(history_size, n)``
    arrays, oldest first, with ``history_count`` rows in use, ``ro``, ``d``, ``t``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``n_iter`` and ``func_evals``.
    The history is allocated in full on the first step: ``2 * history_size * n``
    values (800 MB for a million float32 parameters at the default 100).
    ``state_dtype`` sets the storage dtype of the vectors (e.g. ``mx.bfloat16`` to
    halve it); the math is float32 either way, also for bf16/fp16 parameters
    (torch would run it in the parameters' dtype), and float64 for float64
    parameters (CPU). ``learning_rate`` and the tolerances are float32 tunables
    like in every mlx_optim optimizer, so e.g. ``learning_rate=0.8`` is
    ``0.800000012`` (torch keeps a Python float); this shows only in float64 runs.

    Differences from torch: ``line_search_fn`` other than ``None`` /
    ``'strong_wolfe'`` raises ``ValueError`` at construction (torch raises
    ``RuntimeError`` in ``step``); ``max_iter``, ``max_eval`` and ``history_size``
    must be integers >= 1 and the tolerances >= 0 (torch does not check; a zero
    history crashes its step, and ``max_eval=0`` crashes its line search).

    Paper: Liu & Nocedal, "On the limited memory BFGS method for large scale optimization", Mathematical
    Programming 45, 1989 (Nocedal, 1980, for the two-loop recursion).

    Reference: ``torch.optim.LBFGS`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta` (the fixed step, or the line search's first trial step), a
            float or a schedule (a callable of the step). Default ``1``.
        max_iter: Maximal number of quasi-Newton iterations per :meth:`step_with` (integer >= 1). Default ``20``.
        max_eval: Maximal number of loss evaluations per :meth:`step_with` (integer >= 1); ``None`` means
            ``max_iter * 5 // 4``. Default ``None``.
        tolerance_grad: Stop the step when the largest absolute gradient entry is at most this (>= 0).
            Default ``1e-7``.
        tolerance_change: Stop the step when the change of the loss or the largest absolute parameter change
            is below this (>= 0). Default ``1e-9``.
        history_size: Number of curvature pairs kept (integer >= 1). Default ``100``.
        line_search_fn: ``None`` (fixed step) or ``'strong_wolfe'``. Default ``None``.
        state_dtype: Storage dtype of the history and direction vectors (keyword-only); ``None`` keeps them in
            the math dtype (float32, or float64 for float64 parameters). Default ``None``.
    """

    name = "lbfgs"
    family = "quasi-newton"
    reference = "torch.optim.LBFGS"
    needs_loss = False
    compilable = False
    groups_unsupported = "it works on one flat vector of all parameters (torch.optim.LBFGS has no groups either)"

    def __init__(
        self,
        learning_rate: Tunable = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: Tunable = 1e-7,
        tolerance_change: Tunable = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        owner = type(self).__name__
        _check_int(owner, "max_iter", max_iter, 1)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        _check_int(owner, "max_eval", max_eval, 1)
        _check_int(owner, "history_size", history_size, 1)
        self._choice("line_search_fn", line_search_fn, (None, "strong_wolfe"))
        self._hyper("tolerance_grad", tolerance_grad, 0.0)
        self._hyper("tolerance_change", tolerance_change, 0.0)
        self.max_iter = int(max_iter)
        self.max_eval = int(max_eval)
        self.history_size = int(history_size)
        self.line_search_fn = line_search_fn
        self.state["n_iter"] = mx.array(0, mx.int64)
        self.state["func_evals"] = mx.array(0, mx.int64)

    def init(self, parameters: Any) -> None:
        """Allocate the history for ``parameters`` (a module or a dict of arrays); optional, as in MLX."""
        view = _FlatView(parameters)
        self._ensure_state(view.size, view.dtype)

    def _ensure_state(self, n: int, dtype: mx.Dtype) -> None:
        s = self.state
        s.setdefault("n_iter", mx.array(0, mx.int64))
        s.setdefault("func_evals", mx.array(0, mx.int64))
        if "old_dirs" in s:
            if s["old_dirs"].shape != (self.history_size, n):
                raise ValueError(
                    f"LBFGS: the state holds a history of shape {tuple(s['old_dirs'].shape)} but the parameters "
                    f"need ({self.history_size}, {n}); was it created for another model or history_size?"
                )
            self._initialized = True
            return
        vec = self.state_dtype or dtype
        m = self.history_size
        s["old_dirs"] = mx.zeros((m, n), vec)
        s["old_stps"] = mx.zeros((m, n), vec)
        s["ro"] = mx.zeros((m,), dtype)
        s["history_count"] = mx.array(0, mx.int64)
        s["d"] = mx.zeros((n,), vec)
        s["t"] = mx.array(0.0, dtype)
        s["H_diag"] = mx.array(1.0, dtype)
        s["prev_flat_grad"] = mx.zeros((n,), vec)
        s["prev_loss"] = mx.array(0.0, dtype)
        self._initialized = True

    def _store(self, v: mx.array) -> mx.array:
        return v.astype(self.state_dtype) if self.state_dtype is not None else v

    def update(self, model: Any, gradients: Any = None, loss: Any = None) -> None:
        raise ValueError(
            "LBFGS re-evaluates the loss several times per step and cannot be driven by one gradient: "
            "call opt.step_with(model, loss_and_grad_fn, *batch) instead of opt.update(...)"
        )

    def apply_gradients(self, gradients: Any, parameters: Any, loss: Any = None) -> Any:
        raise ValueError(
            "LBFGS re-evaluates the loss several times per step and cannot be driven by one gradient: "
            "call opt.step_with(model, loss_and_grad_fn, *batch) instead of opt.apply_gradients(...)"
        )

    def step_with(self, model: Any, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        """Run one L-BFGS step (up to ``max_iter`` iterations); returns the loss before the step.

        ``model`` is an ``nn.Module`` or a dict of parameters (updated in place);
        ``loss_and_grad_fn(model, *args, **kwargs)`` returns ``(loss, grads)``.
        """
        view = _FlatView(model)
        self._ensure_state(view.size, view.dtype)
        self._refresh_schedules()
        self.state["step"] = self.step + 1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._step(view, loss_and_grad_fn, args, kwargs)

    def _step(self, view: _FlatView, loss_and_grad_fn: Callable, args: tuple, kwargs: dict) -> mx.array:
        st = self.state
        lr = float(st["learning_rate"])
        tolerance_grad = float(self.globals["tolerance_grad"])
        tolerance_change = float(self.globals["tolerance_change"])
        max_iter, max_eval, history_size = self.max_iter, self.max_eval, self.history_size

        def evaluate() -> tuple[mx.array, float, mx.array]:
            loss, grads = loss_and_grad_fn(view.target, *args, **kwargs)
            flat_grad = view.flat_grad(grads)
            mx.eval(loss, flat_grad)
            return loss, float(loss.item()) if isinstance(loss, mx.array) else float(loss), flat_grad

        func_evals = int(st["func_evals"].item())
        state_n_iter = int(st["n_iter"].item())

        orig_loss, loss, flat_grad = evaluate()
        current_evals = 1
        func_evals += 1
        st["func_evals"] = mx.array(func_evals, mx.int64)
        if _abs_max(flat_grad) <= tolerance_grad:
            return orig_loss

        # the state of the previous step
        ct = view.dtype
        d = st["d"].astype(ct)
        t = _scalar(st["t"].astype(ct))
        count = int(st["history_count"].item())
        old_dirs = [st["old_dirs"][i].astype(ct) for i in range(count)]
        old_stps = [st["old_stps"][i].astype(ct) for i in range(count)]
        ro = [st["ro"][i].astype(ct) for i in range(count)]
        h_diag = st["H_diag"].astype(ct)
        prev_flat_grad = st["prev_flat_grad"].astype(ct)
        prev_loss = float(st["prev_loss"].item())
        x = view.x

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state_n_iter += 1

            # direction
            if state_n_iter == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = mx.array(1.0, ct)
            else:
                y = flat_grad - prev_flat_grad
                s = d * float(t)
                ys = mx.inner(y, s)
                if _scalar(ys) > CURVATURE_EPS:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / mx.inner(y, y)
                d = two_loop_direction(flat_grad, old_dirs, old_stps, ro, h_diag)
                mx.eval(d, h_diag, *ro)

            prev_flat_grad = flat_grad
            prev_loss = loss

            # step length
            if state_n_iter == 1:
                t = min(1.0, 1.0 / _scalar(mx.sum(mx.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction
                break

            ls_func_evals = 0
            if self.line_search_fn == "strong_wolfe":

                def obj(t_, x_init=x, d_ls=d):
                    view.write(x_init + float(t_) * d_ls)
                    _, f_new, g_new = evaluate()
                    return f_new, g_new

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                x = view.write(x + float(t) * d)
                opt_cond = _abs_max(flat_grad) <= tolerance_grad
            else:
                x = view.write(x + float(t) * d)
                if n_iter != max_iter:
                    _, loss, flat_grad = evaluate()
                    opt_cond = _abs_max(flat_grad) <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            func_evals += ls_func_evals

            # termination
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if _abs_max(d * float(t)) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        self._save(ct, d, t, old_dirs, old_stps, ro, h_diag, prev_flat_grad, prev_loss, state_n_iter, func_evals)
        return orig_loss

    def _save(self, ct, d, t, old_dirs, old_stps, ro, h_diag, prev_flat_grad, prev_loss, n_iter, func_evals) -> None:
        st = self.state
        m, n = st["old_dirs"].shape
        count = len(old_dirs)
        if count:
            st["old_dirs"] = self._store(mx.concatenate([mx.stack(old_dirs), mx.zeros((m - count, n), ct)]))
            st["old_stps"] = self._store(mx.concatenate([mx.stack(old_stps), mx.zeros((m - count, n), ct)]))
            st["ro"] = mx.concatenate([mx.stack(ro).astype(ct), mx.zeros((m - count,), ct)])
        st["history_count"] = mx.array(count, mx.int64)
        st["d"] = self._store(d)
        st["t"] = mx.array(float(t), ct)
        st["H_diag"] = mx.array(h_diag).astype(ct)
        st["prev_flat_grad"] = self._store(prev_flat_grad)
        st["prev_loss"] = mx.array(prev_loss, ct)
        st["n_iter"] = mx.array(n_iter, mx.int64)
        st["func_evals"] = mx.array(func_evals, mx.int64)
        mx.eval(st)
