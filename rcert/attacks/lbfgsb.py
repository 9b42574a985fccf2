"""A batched box-constrained L-BFGS minimiser: many independent problems, one per row.

``minimize_box`` minimises ``B`` objectives ``f_b(x)`` over ``lower_b <= x <= upper_b`` at once
(e.g. the Willetts et al. attacks: input-target pairs times penalty weights). Each row has its
own L-BFGS memory, line search and stopping rule, and a stopped row is never evaluated again.
All arithmetic is row-wise, so a row's trajectory depends on the others only through float
rounding: of the caller's batched ``fun``, and of long dot products whose summation order
torch may change with the batch shape and threads (bitwise equal at n = 9 .. 4096 here).

Guarantees: every returned ``x`` lies in its row's box exactly (``x0`` is projected, every
trial is ``clamp(., lower, upper)``); every accepted step lowers f (Armijo), and the returned
point is the last iterate or, if lower, the lowest trial of a failed last line search; no
randomness.

Per row and iteration (a projected L-BFGS after Bertsekas' two-metric projection): variables
within ``eps = min(||P(x - g) - x||_inf, 1e-3 (upper - lower))`` of a bound their gradient
pushes against take a plain gradient step (clipped: fixed once at the bound); the two-loop
recursion (``H0 = (s.y / y.y) I``, newest pair) maps the gradient of the other, free variables
to their direction; components leaving the box at once are dropped, and a non-descent result
is replaced by the negative gradient. Backtracking along ``P(x + t p)`` (``t = 1``, or
``min(1, 1/||p||)`` without curvature pairs; then safeguarded quadratic interpolation) takes
the first ``t`` with ``f(x_t) <= f(x) + 1e-4 g.(x_t - x)``. "converged": ``max|P(x - g) - x|
<= pgtol`` or ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol`` (scipy's meanings), or a trial
whose predicted decrease ``-g.(x_t - x)`` is at most ``ftol max(|f_k|, 1)`` (left unevaluated:
it could only stop the row by the ftol rule, and a float32 objective's Armijo test is rounding
there); "stalled": no Armijo point in ``max_line_search`` trials, or f, g not finite at ``x0``.

Unlike scipy's L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995) there is no generalized Cauchy
point and no subspace minimisation of the compact model: the active set comes from the
gradient at ``x``, and the full-space memory acts on the free variables only. The line search
is Armijo backtracking, not Moré-Thuente under the strong Wolfe conditions, so it never
extrapolates beyond ``t = 1``. A pair with ``s.y <= eps |y|^2`` is skipped (scipy: ``s.y <=
eps (-g.s)``) and leaves its slot empty: the memory holds the last ``memory`` iterations'
pairs, not the last ``memory`` accepted ones. Iterates and counts differ from scipy's; optima
agree to the tolerances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: Armijo's sufficient-decrease constant (scipy's ``ftol`` of its line search, 1e-3, is for
#: the Wolfe search; 1e-4 is the usual backtracking choice).
C1 = 1e-4
EPS = float(np.finfo(np.float64).eps)
LABELS = np.array(["converged", "stalled", "max_iter"], dtype="<U9")


@dataclass(frozen=True)
class LbfgsbResult:
    """Per row: the final (best feasible) point, its value, the accepted steps, the
    objective-and-gradient evaluations, and why it stopped ("converged", "stalled",
    "max_iter")."""

    x: torch.Tensor
    value: torch.Tensor
    iterations: np.ndarray
    evaluations: np.ndarray
    status: np.ndarray


@dataclass
class _Rows:
    """The rows still carried: the running ones (``live``) and a few stopped ones, kept
    until enough have stopped that dropping them pays for copying the memory."""

    rows: torch.Tensor  # (C,) int64 indices into the caller's batch
    live: torch.Tensor  # (C,) bool
    x: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    pgn: torch.Tensor  # (C,) projected-gradient inf-norm at x
    # Slot k of every row is one contiguous (C, n) block, so the two-loop recursion reads
    # it without gathering; the ring's head is shared, as every live row writes (or marks
    # invalid) one slot per iteration.
    s_mem: torch.Tensor  # (m, C, n)
    y_mem: torch.Tensor
    rho: torch.Tensor  # (m, C) 1 / s.y
    scale: torch.Tensor  # (m, C) s.y / y.y
    valid: torch.Tensor  # (m, C) bool
    head: int = 0

    def keep(self, mask: torch.Tensor) -> None:
        for name in ("rows", "live", "x", "f", "g", "lower", "upper", "pgn"):
            setattr(self, name, getattr(self, name)[mask])
        for name in ("s_mem", "y_mem", "rho", "scale", "valid"):
            setattr(self, name, getattr(self, name)[:, mask])


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # vecdot reduces each row on its own and without an (A, n) temporary; a batched matmul's
    # blocking, and so its rounding, can depend on the batch size.
    return torch.linalg.vecdot(a, b)


def _evaluate(fun: Objective, x: torch.Tensor, rows: torch.Tensor,
              evaluations: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    values, grads = fun(x, rows)
    if tuple(values.shape) != (x.shape[0],) or tuple(grads.shape) != tuple(x.shape):
        raise ValueError(f"fun returned values {tuple(values.shape)} and gradients "
                         f"{tuple(grads.shape)} for x {tuple(x.shape)}; expected "
                         f"({x.shape[0]},) and {tuple(x.shape)}")
    np.add.at(evaluations, rows.cpu().numpy(), 1)
    return values.detach().to(x), grads.detach().to(x)


def _pg_norm(x: torch.Tensor, g: torch.Tensor, lower: torch.Tensor,
             upper: torch.Tensor) -> torch.Tensor:
    return (torch.clamp(x - g, lower, upper) - x).abs().amax(dim=-1)


def _two_loop(q: torch.Tensor, st: _Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """``H q`` for each row's own L-BFGS inverse-Hessian approximation, and whether the row
    has any pair (without one, ``H = I``)."""
    m = st.rho.shape[0]
    slots = [k for k in ((st.head - 1 - j) % m for j in range(m)) if bool(st.valid[k].any())]
    gamma = torch.ones_like(q[:, 0])
    found = torch.zeros_like(st.live)
    alphas = []
    for k in slots:  # newest to oldest
        gamma = torch.where(st.valid[k] & ~found, st.scale[k], gamma)
        found = found | st.valid[k]
        alpha = torch.where(st.valid[k], st.rho[k] * _dot(st.s_mem[k], q), 0.0)
        q = torch.addcmul(q, alpha[:, None], st.y_mem[k], value=-1)
        alphas.append(alpha)
    r = gamma[:, None] * q
    for k, alpha in zip(reversed(slots), reversed(alphas), strict=True):  # oldest to newest
        beta = torch.where(st.valid[k], st.rho[k] * _dot(st.y_mem[k], r), 0.0)
        r = torch.addcmul(r, (alpha - beta)[:, None], st.s_mem[k])
    return r, found


def _direction(st: _Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """The search direction and first trial step of each row."""
    x, g, lo, hi = st.x, st.g, st.lower, st.upper
    # Bertsekas' epsilon-active set: a variable so close to a bound that its gradient pushes
    # it there takes a plain gradient step. Left free, its quasi-Newton component could carry
    # all the descent and be clipped at a tiny t, leaving only ascent along the path.
    eps = torch.minimum(st.pgn[:, None], 1e-3 * (hi - lo))
    active = ((x <= lo + eps) & (g > 0)) | ((x >= hi - eps) & (g < 0))
    hq, paired = _two_loop(torch.where(active, 0.0, g), st)
    p = torch.where(active, -g, -hq)
    # At a bound an outward component is clipped for every t > 0; it would only spoil the
    # descent test.
    p = torch.where(((x <= lo) & (p < 0)) | ((x >= hi) & (p > 0)), 0.0, p)
    slope = _dot(g, p)
    fallback = ~(torch.isfinite(slope) & (slope < 0) & torch.isfinite(p).all(dim=-1))
    if bool((fallback & st.live).any()):
        steepest = torch.where(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)), 0.0, -g)
        p = torch.where(fallback[:, None], steepest, p)
    # Without curvature pairs the direction has the gradient's scale, not the step's.
    unscaled = fallback | ~paired
    t0 = torch.where(unscaled, (1.0 / p.norm(dim=-1)).clamp(max=1.0), torch.ones_like(st.f))
    return p, t0


def _write(dst: torch.Tensor, owned: bool, idx: torch.Tensor, full: bool, take: torch.Tensor,
           src: torch.Tensor) -> torch.Tensor:
    """``dst`` with the rows ``idx[take]`` set from ``src[take]``; ``dst`` is copied first
    unless ``owned``. When ``idx`` is every carried row, one ``where`` does it."""
    if full:
        return torch.where(take.view(-1, *([1] * (src.ndim - 1))), src, dst)
    dst = dst if owned else dst.clone()
    dst[idx[take]] = src[take]
    return dst


def _line_search(fun: Objective, st: _Rows, p: torch.Tensor, t: torch.Tensor,
                 max_trials: int, ftol: float, evaluations: np.ndarray
                 ) -> tuple[torch.Tensor, ...]:
    """Backtrack along ``P(x + t p)`` per row: the new points, values and gradients, whether
    each row met the Armijo condition, and whether it gave up because the predicted
    decrease of its trial was within ``ftol``. A row that did not meet the condition keeps
    its lowest trial if that is below ``f(x)``, and ``x`` otherwise."""
    new_x, new_f, new_g, owned = st.x, st.f, st.g, False
    accepted, negligible = torch.zeros_like(st.live), torch.zeros_like(st.live)
    searching, t = st.live.clone(), t.clone()
    for _ in range(max_trials):
        idx = searching.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        full = idx.numel() == searching.numel()
        x, f, g, lo, hi, pi = (v if full else v[idx] for v in (st.x, st.f, st.g, st.lower,
                                                                 st.upper, p))
        xt = torch.clamp(torch.addcmul(x, t[idx, None], pi), lo, hi)
        pred = _dot(g, xt - x)
        # A trial that cannot lower f by more than ftol (relative) even to first order is
        # not worth an evaluation: it could only end the row by scipy's ftol rule, and with
        # a float32 objective its Armijo test would be decided by rounding.
        tiny = (pred < 0) & (-pred <= ftol * torch.clamp(f.abs(), min=1.0))
        negligible[idx[tiny]] = True
        searching[idx[tiny]] = False
        # Clipping can turn a long step into ascent; that fails Armijo without evaluating.
        t[idx[pred >= 0]] *= 0.5
        trial = (pred < 0) & ~tiny
        if not bool(trial.all()):
            idx, f, xt, pred, full = idx[trial], f[trial], xt[trial], pred[trial], False
            if idx.numel() == 0:
                continue
        ft, gt = _evaluate(fun, xt, st.rows[idx], evaluations)
        # A sum is finite only if every term is (short of an overflow near 1e308).
        finite = torch.isfinite(ft) & torch.isfinite(gt.sum(dim=-1))
        ok = finite & (ft <= f + C1 * pred)
        take = ok | (finite & (ft < (new_f if full else new_f[idx])))
        new_x = _write(new_x, owned, idx, full, take, xt)
        new_g = _write(new_g, owned, idx, full, take, gt)
        new_f, owned = _write(new_f, owned, idx, full, take, ft), True
        accepted[idx[ok]] = True
        searching[idx[ok]] = False
        tt = t[idx]
        # Minimiser of the quadratic through f(0), its slope pred / t, and f(t).
        quad = -pred * tt / (2 * (ft - f - pred))
        t[idx] = torch.where(torch.isfinite(quad),
                             torch.minimum(torch.maximum(quad, 0.1 * tt), 0.5 * tt), 0.5 * tt)
    return new_x, new_f, new_g, accepted, negligible


def _remember(st: _Rows, s: torch.Tensor, y: torch.Tensor, accepted: torch.Tensor) -> None:
    """Write this iteration's pairs ``(s, y)`` to the shared slot; a pair whose curvature
    ``s.y`` is too small (or a row that took no step) marks the slot invalid for its row."""
    sy, yy = _dot(s, y), _dot(y, y)
    store = accepted & (sy > EPS * yy) & torch.isfinite(sy) & torch.isfinite(yy)
    k = st.head
    st.s_mem[k], st.y_mem[k] = s, y
    st.rho[k] = torch.where(store, 1.0 / sy, 0.0)
    st.scale[k] = torch.where(store, sy / yy, 1.0)
    st.valid[k] = store
    st.head = (k + 1) % st.rho.shape[0]


def _retire(st: _Rows, out: LbfgsbResult, done: torch.Tensor, code: torch.Tensor) -> None:
    """Write the rows that stop now (``done``, with ``code`` an index into ``LABELS``) to
    the result; drop the stopped rows once they are a quarter of those carried."""
    done = done & st.live
    if bool(done.any()):
        rows = st.rows[done]
        out.x[rows], out.value[rows] = st.x[done], st.f[done]
        out.status[rows.cpu().numpy()] = LABELS[code[done].cpu().numpy()]
        st.live = st.live & ~done
    stopped = int((~st.live).sum())
    if stopped and 4 * stopped >= st.live.numel():
        st.keep(st.live)


def _start(fun: Objective, x0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
           memory: int, evaluations: np.ndarray) -> _Rows:
    (b, n), dev = x0.shape, x0.device
    kw = {"dtype": torch.float64, "device": dev}
    lo, hi = lower.to(**kw), upper.to(**kw)
    if lo.shape != (b, n) or hi.shape != (b, n):
        raise ValueError(f"lower {tuple(lower.shape)} and upper {tuple(upper.shape)} must "
                         f"have x0's shape {(b, n)}")
    if bool((lo.isnan() | hi.isnan()).any()) or bool((lo > hi).any()):
        raise ValueError("the bounds must satisfy lower <= upper with no NaN")
    x = torch.clamp(x0.to(**kw), lo, hi)
    rows = torch.arange(b, device=dev)
    f, g = (_evaluate(fun, x, rows, evaluations) if b else
            (torch.zeros(0, **kw), torch.zeros(0, n, **kw)))
    m = max(memory, 1)
    return _Rows(rows, torch.ones(b, dtype=torch.bool, device=dev), x, f, g, lo, hi,
                 _pg_norm(x, g, lo, hi),
                 torch.zeros(m, b, n, **kw), torch.zeros(m, b, n, **kw), torch.zeros(m, b, **kw),
                 torch.ones(m, b, **kw), torch.zeros(m, b, dtype=torch.bool, device=dev))


def minimize_box(fun: Objective, x0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                 *, max_iter: int = 100, memory: int = 10, pgtol: float = 1e-5,
                 ftol: float = 2.2e-9, max_line_search: int = 20) -> LbfgsbResult:
    """Minimise ``B`` independent objectives over their boxes, one problem per row.

    ``fun(x, rows)`` gets float64 points ``(len(rows), n)`` of the problems ``rows`` (int64
    indices into the batch; only rows still running) and returns their values
    ``(len(rows),)`` and gradients ``(len(rows), n)``, in any float dtype. ``lower`` and
    ``upper`` are ``(B, n)`` and may hold infinities. ``x`` and ``value`` come back as
    float64 on ``x0``'s device. ``memory`` is the number of L-BFGS pairs (0 behaves as 1);
    ``pgtol`` and ``ftol`` are scipy's; ``max_line_search`` bounds the trials per step.
    """
    if x0.ndim != 2:
        raise ValueError(f"x0 must be (B, n), got {tuple(x0.shape)}")
    b = x0.shape[0]
    evaluations, iterations = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
    st = _start(fun, x0, lower, upper, memory, evaluations)
    # The result's tensors and arrays are filled in place as rows stop.
    out = LbfgsbResult(st.x.clone(), st.f.clone(), iterations, evaluations,
                       np.full(b, "max_iter", dtype="<U9"))
    finite = torch.isfinite(st.f) & torch.isfinite(st.g).all(dim=-1)
    flat = st.pgn <= pgtol
    code = torch.where(flat & finite, 0, torch.where(finite, 2, 1))
    _retire(st, out, ~finite | flat | (max_iter <= 0), code)
    for _ in range(max(max_iter, 0)):
        if not bool(st.live.any()):
            break
        p, t0 = _direction(st)
        x, f, g, accepted, negligible = _line_search(fun, st, p, t0, max_line_search, ftol,
                                                     evaluations)
        np.add.at(iterations, st.rows[accepted].cpu().numpy(), 1)
        _remember(st, x - st.x, g - st.g, accepted)
        drop = (st.f - f) / torch.clamp(torch.maximum(st.f.abs(), f.abs()), min=1.0)
        st.x, st.f, st.g = x, f, g
        st.pgn = _pg_norm(x, g, st.lower, st.upper)
        flat = st.pgn <= pgtol
        converged = (accepted & (flat | (drop <= ftol))) | (~accepted & negligible)
        limit = torch.as_tensor(iterations[st.rows.cpu().numpy()] >= max_iter, device=x.device)
        code = torch.where(converged, 0, torch.where(~accepted, 1, 2))
        _retire(st, out, converged | ~accepted | limit, code)
    _retire(st, out, st.live, torch.full_like(st.rows, 2))
    return out
