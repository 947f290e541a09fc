"""Fit many closures at once: linear in closed form, exponential by variable projection.

Closures are rows of an (N, M) array of mole fractions (NaN where a closure has no sample);
time is either one (M,) axis shared by all closures (1 Hz loggers) or an (N, M) array. An
optional (N, M) boolean ``mask`` selects each closure's fit window. Work is done in chunks
of ``chunk_size`` closures so memory stays bounded.

The exponential follows the single-closure path of :mod:`chamberd.fitting.exponential`
step for step: the same curvature grid, the same decision on which grid cell brackets the
optimum, and a root of dR/du in that cell, found here by safeguarded Newton/secant steps on
all closures of a chunk at once instead of Brent's method one closure at a time. Both paths
converge to the same optimum; results agree to better than 1e-6 relative.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _series, _vp
from .exponential import DEFAULT_A_BOUNDS_PER_S, GRID_POINTS

__all__ = [
    "AT_BOUND_CODES",
    "BatchExponential",
    "BatchLinear",
    "BatchQuadratic",
    "fit_exponential_batch",
    "fit_linear_batch",
    "fit_quadratic_batch",
]

#: Codes of ``BatchExponential.at_bound``.
AT_BOUND_CODES = {0: None, 1: "a_min", 2: "a_max", 3: "iteration_cap"}
DEFAULT_CHUNK = 4096  # exponential: large enough to amortise numpy's per-call overhead
LINEAR_CHUNK = 4096
_TOL_U = 1e-12
_MAX_ITER = 60


def _prepare(
    elapsed_s: ArrayLike, mole_fraction: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(mole_fraction, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"mole_fraction must be 2-D (closures, samples), got shape {y.shape}")
    t = np.asarray(elapsed_s, dtype=float)
    if t.ndim == 1:
        if t.size != y.shape[1]:
            raise ValueError(
                f"elapsed_s has {t.size} samples, mole_fraction rows have {y.shape[1]}"
            )
    elif t.shape != y.shape:
        raise ValueError(f"elapsed_s shape {t.shape} differs from mole_fraction {y.shape}")
    if mask is None:
        m = np.ones(y.shape, dtype=bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != y.shape:
            raise ValueError(f"mask shape {m.shape} differs from mole_fraction {y.shape}")
    return t, y, m


def _chunks(n: int, size: int) -> list[slice]:
    size = max(1, int(size))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _run_chunks(fn: Callable[[slice], None], chunks: list[slice], workers: int | None) -> None:
    """Run ``fn`` on every chunk, in a thread pool when there are several chunks."""
    count = workers if workers is not None else 1
    if count <= 1 or len(chunks) <= 1:
        for sl in chunks:
            fn(sl)
        return
    with ThreadPoolExecutor(max_workers=min(count, len(chunks))) as pool:
        for future in [pool.submit(fn, sl) for sl in chunks]:
            future.result()


@dataclass(frozen=True)
class BatchLinear:
    """Per-closure OLS results, each an (N,) array; see :class:`~chamberd.fitting.LinearFit`."""

    slope_mf_s: np.ndarray
    intercept_mf: np.ndarray
    slope_se_mf_s: np.ndarray
    r_squared: np.ndarray
    rmse_mf: np.ndarray
    n_points: np.ndarray
    converged: np.ndarray
    intercept_se_mf: np.ndarray


def fit_linear_batch(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    chunk_size: int = LINEAR_CHUNK,
) -> BatchLinear:
    """OLS line of every closure in closed form.

    Parameters
    ----------
    elapsed_s : array_like, (M,) or (N, M)
        Time since closure [s].
    mole_fraction : array_like, (N, M)
        Mole fractions [mf]; NaN samples are ignored.
    mask : array_like of bool, (N, M), optional
        Samples in each closure's window.
    chunk_size : int
        Closures per chunk.

    Returns
    -------
    BatchLinear

    Examples
    --------
    >>> t = np.arange(0.0, 5.0)
    >>> fit = fit_linear_batch(t, [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    >>> fit.slope_mf_s.tolist()
    [1.0, -1.0]
    """
    t, y, m = _prepare(elapsed_s, mole_fraction, mask)
    n_closures = y.shape[0]
    names = ("slope", "intercept", "se", "intercept_se", "r2", "rmse")
    out = {k: np.full(n_closures, np.nan) for k in names}
    count = np.zeros(n_closures, dtype=int)
    shared_t = t.ndim == 1 and bool(np.isfinite(t).all())
    all_in = mask is None or bool(m.all())
    for sl in _chunks(n_closures, chunk_size):
        yc = y[sl]
        if shared_t and all_in and bool(np.isfinite(yc).all()):
            # every sample of every closure: the time moments are shared, one matrix-vector
            # product gives the slopes
            n = np.full(yc.shape[0], float(t.size))
            t_mean = float(t.mean())
            dt_shared = t - t_mean
            stt = np.full(yc.shape[0], float(dt_shared @ dt_shared))
            y_mean = yc.mean(axis=1)
            dy = yc - y_mean[:, None]
            sty = dy @ dt_shared
            syy = np.einsum("ij,ij->i", dy, dy)
            t_mean_rows = np.full(yc.shape[0], t_mean)
            dt = np.broadcast_to(dt_shared, yc.shape)
        else:
            tc = t if t.ndim == 1 else t[sl]
            tt = np.broadcast_to(tc, yc.shape)
            w = (m[sl] & np.isfinite(yc) & np.isfinite(tt)).astype(float)
            yv = np.where(w > 0, yc, 0.0)
            tv = np.where(w > 0, tt, 0.0)
            n = w.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_mean_rows = (w * tv).sum(axis=1) / n
                y_mean = (w * yv).sum(axis=1) / n
                dt = (tv - t_mean_rows[:, None]) * w
                dy = (yv - y_mean[:, None]) * w
            stt = np.einsum("ij,ij->i", dt, dt)
            sty = np.einsum("ij,ij->i", dt, dy)
            syy = np.einsum("ij,ij->i", dy, dy)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = sty / stt
            # the residuals themselves (dt and dy are 0 outside the window): syy - slope sty
            # loses digits to cancellation on clean traces
            resid = dy - slope[:, None] * dt
            rss = np.einsum("ij,ij->i", resid, resid)
            out["slope"][sl] = slope
            out["intercept"][sl] = y_mean - slope * t_mean_rows
            s2 = rss / (n - 2)
            out["se"][sl] = np.where(n > 2, np.sqrt(s2 / stt), np.inf)
            out["intercept_se"][sl] = np.where(
                n > 2, np.sqrt(s2 * (1.0 / n + t_mean_rows * t_mean_rows / stt)), np.inf
            )
            out["r2"][sl] = np.where(syy > 0, 1.0 - rss / syy, 1.0)
            out["rmse"][sl] = np.sqrt(rss / n)
        count[sl] = n.astype(int)
    converged = (count >= 2) & np.isfinite(out["slope"])
    return BatchLinear(
        slope_mf_s=out["slope"],
        intercept_mf=out["intercept"],
        slope_se_mf_s=out["se"],
        r_squared=out["r2"],
        rmse_mf=out["rmse"],
        n_points=count,
        converged=converged,
        intercept_se_mf=out["intercept_se"],
    )


@dataclass(frozen=True)
class BatchQuadratic:
    """Per-closure parabolas, each an (N,) array; see :class:`~chamberd.fitting.QuadraticFit`."""

    slope_mf_s: np.ndarray
    slope_se_mf_s: np.ndarray
    curvature_mf_s2: np.ndarray
    value_at_t0_mf: np.ndarray
    r_squared: np.ndarray
    rmse_mf: np.ndarray
    n_points: np.ndarray
    converged: np.ndarray


def fit_quadratic_batch(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    t0_s: float = 0.0,
    chunk_size: int = LINEAR_CHUNK,
) -> BatchQuadratic:
    """Parabola of every closure (the batch form of ``fit_quadratic``).

    As the single path, time is centred on each closure's mean and scaled by its span; the
    3 x 3 normal equations of the centred data are solved in closed form per closure.

    Parameters
    ----------
    elapsed_s : array_like, (M,) or (N, M)
        Time since closure [s].
    mole_fraction : array_like, (N, M)
        Mole fractions [mf]; NaN samples are ignored.
    mask : array_like of bool, (N, M), optional
        Samples in each closure's window.
    t0_s : float
        Time at which the slope is reported [s].
    chunk_size : int
        Closures per chunk.

    Returns
    -------
    BatchQuadratic

    Examples
    --------
    >>> t = np.arange(0.0, 121.0)
    >>> fit = fit_quadratic_batch(t, [400 + 0.5 * t - 0.001 * t**2])
    >>> np.round(fit.slope_mf_s, 9).tolist(), np.round(fit.curvature_mf_s2, 9).tolist()
    ([0.5], [-0.001])
    """
    t, y, m = _prepare(elapsed_s, mole_fraction, mask)
    n_closures = y.shape[0]
    names = ("slope", "se", "b2", "value", "r2", "rmse")
    out = {k: np.full(n_closures, np.nan) for k in names}
    count = np.zeros(n_closures, dtype=int)
    ok_all = np.zeros(n_closures, dtype=bool)
    for sl in _chunks(n_closures, chunk_size):
        yc = y[sl]
        tt = np.broadcast_to(t if t.ndim == 1 else t[sl], yc.shape)
        inside = m[sl] & np.isfinite(yc) & np.isfinite(tt)
        w = inside.astype(float)
        n = w.sum(axis=1)
        ok = _distinct_times(t if t.ndim == 1 else t[sl], tt, inside) >= 3
        with np.errstate(divide="ignore", invalid="ignore"):
            tv = np.where(inside, tt, 0.0)
            centre = tv.sum(axis=1) / n
            lo = np.where(inside, tt, np.inf).min(axis=1)
            hi = np.where(inside, tt, -np.inf).max(axis=1)
            scale = np.where(hi - lo > 0, hi - lo, 1.0)
            x = (tv - centre[:, None]) / scale[:, None] * w
            y_mean = np.where(inside, yc, 0.0).sum(axis=1) / n
            dy = np.where(inside, yc - y_mean[:, None], 0.0)
            x2 = x * x
            s1, s2 = x.sum(axis=1), x2.sum(axis=1)
            s3 = np.einsum("ij,ij->i", x2, x)
            s4 = np.einsum("ij,ij->i", x2, x2)
            xtx = np.empty((yc.shape[0], 3, 3))
            xtx[:, 0, 0] = n
            xtx[:, 0, 1] = xtx[:, 1, 0] = s1
            xtx[:, 0, 2] = xtx[:, 2, 0] = xtx[:, 1, 1] = s2
            xtx[:, 1, 2] = xtx[:, 2, 1] = s3
            xtx[:, 2, 2] = s4
            xty = np.stack(
                [dy.sum(axis=1), np.einsum("ij,ij->i", x, dy), np.einsum("ij,ij->i", x2, dy)],
                axis=1,
            )
            inv = _inv3(xtx)
            coef = np.einsum("nij,nj->ni", inv, xty)
            resid = (dy - coef[:, :1] - coef[:, 1:2] * x - coef[:, 2:3] * x2) * w
            rss = np.einsum("ij,ij->i", resid, resid)
            syy = np.einsum("ij,ij->i", dy, dy)
            x0 = (t0_s - centre) / scale
            grad = np.stack([np.zeros_like(x0), np.ones_like(x0), 2.0 * x0], axis=1)
            grad /= scale[:, None]
            var = np.einsum("ni,nij,nj->n", grad, inv, grad) * rss / (n - 3)
            se = np.where(n > 3, np.sqrt(np.maximum(var, 0.0)), np.inf)
        good = ok & np.all(np.isfinite(coef), axis=1)
        nan = np.full(yc.shape[0], np.nan)
        out["b2"][sl] = np.where(good, coef[:, 2] / scale**2, nan)
        out["slope"][sl] = np.where(good, (coef[:, 1] + 2.0 * coef[:, 2] * x0) / scale, nan)
        value = y_mean + coef[:, 0] + coef[:, 1] * x0 + coef[:, 2] * x0 * x0
        out["value"][sl] = np.where(good, value, nan)
        out["se"][sl] = np.where(good, se, nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["r2"][sl] = np.where(good, np.where(syy > 0, 1.0 - rss / syy, 1.0), nan)
            out["rmse"][sl] = np.where(good, np.sqrt(rss / n), nan)
        count[sl] = n.astype(int)
        ok_all[sl] = good
    return BatchQuadratic(
        slope_mf_s=out["slope"],
        slope_se_mf_s=out["se"],
        curvature_mf_s2=out["b2"],
        value_at_t0_mf=out["value"],
        r_squared=out["r2"],
        rmse_mf=out["rmse"],
        n_points=count,
        converged=ok_all,
    )


@dataclass(frozen=True)
class BatchExponential:
    """Per-closure exponential results, each an (N,) array.

    See :class:`~chamberd.fitting.ExponentialFit`; ``at_bound`` holds codes of
    :data:`AT_BOUND_CODES` (0 interior, 1 lower bound, 2 upper bound, 3 iteration cap).
    """

    slope_mf_s: np.ndarray
    slope_se_mf_s: np.ndarray
    a_per_s: np.ndarray
    cx_mf: np.ndarray
    c0_mf: np.ndarray
    t0_s: np.ndarray
    r_squared: np.ndarray
    rmse_mf: np.ndarray
    n_points: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    iterations: np.ndarray
    a_se_per_s: np.ndarray
    # the curve in the engine's basis (see ExponentialFit.curve_mf)
    ref_time_s: np.ndarray
    value_at_ref_mf: np.ndarray
    slope_at_ref_mf_s: np.ndarray


def fit_exponential_batch(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    c0_mf: ArrayLike | None = None,
    t0_s: float = 0.0,
    a_bounds_per_s: tuple[float, float] = DEFAULT_A_BOUNDS_PER_S,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> BatchExponential:
    """Exponential fit of every closure (the batch form of ``fit_exponential``).

    Parameters
    ----------
    elapsed_s : array_like, (M,) or (N, M)
        Time since closure [s].
    mole_fraction : array_like, (N, M)
        Dry mole fractions [mf]; NaN samples are ignored.
    mask : array_like of bool, (N, M), optional
        Samples in each closure's window.
    c0_mf : array_like, (N,), optional
        Fixed initial mole fractions (LI-COR form); when omitted the slope is taken at
        ``t0_s``.
    t0_s : float
        Time of the slope when ``c0_mf`` is omitted [s].
    a_bounds_per_s : (float, float)
        Curvature search range [s-1].
    chunk_size : int
        Closures per chunk; working memory is about 12 x chunk_size x M x 8 bytes per
        worker (chunks small enough to stay in cache are fastest).
    workers : int, optional
        Threads working on chunks in parallel (numpy releases the GIL in its loops).
        Default 1: on the 2-vCPU machines measured so far a second thread made it slower.

    Returns
    -------
    BatchExponential

    Examples
    --------
    >>> t = np.arange(10.0, 121.0)
    >>> y = np.vstack([500 - 100 * np.exp(-a * t) for a in (0.01, 0.02)])
    >>> fit = fit_exponential_batch(t, y, c0_mf=[400.0, 400.0])
    >>> np.round(fit.slope_mf_s, 6).tolist(), np.round(fit.a_per_s, 6).tolist()
    ([1.0, 2.0], [0.01, 0.02])
    """
    lo_a, hi_a = a_bounds_per_s
    if not (0 < lo_a < hi_a):
        raise ValueError(f"a_bounds_per_s must satisfy 0 < a_min < a_max, got {a_bounds_per_s}")
    t, y, m = _prepare(elapsed_s, mole_fraction, mask)
    n_closures = y.shape[0]
    c0_all = None if c0_mf is None else np.broadcast_to(np.asarray(c0_mf, float), (n_closures,))
    a_grid = _vp.default_grid(lo_a, hi_a, GRID_POINTS)
    basis = _vp.grid_basis(a_grid, t) if t.ndim == 1 else None
    chunk = max(1, min(int(chunk_size), n_closures))
    local = threading.local()
    names = ("slope", "slope_se", "a", "cx", "c0", "t0", "r2", "rmse", "a_se", "ref", "p", "q")
    out = {k: np.full(n_closures, np.nan) for k in names}
    count = np.zeros(n_closures, dtype=int)
    converged = np.zeros(n_closures, dtype=bool)
    at_bound = np.zeros(n_closures, dtype=np.int8)
    iterations = np.zeros(n_closures, dtype=int)

    def run(sl: slice) -> None:
        if not hasattr(local, "work"):  # one set of scratch arrays per thread
            local.work = _vp.Workspace(chunk, y.shape[1], _series.TERMS)
        res = _fit_chunk(
            t if t.ndim == 1 else t[sl],
            y[sl],
            m[sl],
            a_grid,
            None if c0_all is None else c0_all[sl],
            t0_s,
            local.work,
            basis,
        )
        for k in names:
            out[k][sl] = res[k]
        count[sl] = res["n"]
        converged[sl] = res["converged"]
        at_bound[sl] = res["at_bound"]
        iterations[sl] = res["iterations"]

    _run_chunks(run, _chunks(n_closures, chunk), workers)
    return BatchExponential(
        slope_mf_s=out["slope"],
        slope_se_mf_s=out["slope_se"],
        a_per_s=out["a"],
        cx_mf=out["cx"],
        c0_mf=out["c0"],
        t0_s=out["t0"],
        r_squared=out["r2"],
        rmse_mf=out["rmse"],
        n_points=count,
        converged=converged,
        at_bound=at_bound,
        iterations=iterations,
        a_se_per_s=out["a_se"],
        ref_time_s=out["ref"],
        value_at_ref_mf=out["p"],
        slope_at_ref_mf_s=out["q"],
    )


# Inverse Vandermonde matrix of x = -1, 0, 1, 2: cubic coefficients from 4 grid values.
_CUBIC = np.linalg.inv(np.vander(np.array([-1.0, 0.0, 1.0, 2.0]), 4, increasing=True))
# An exact Newton step below this (in u = ln a) is applied without a further evaluation:
# the error it leaves in u is of the order of its square, and (p, q) and the moments
# follow to first order (error of the order of the step squared, 1e-8).
_ACCEPT_U = 1e-5


def _cubic_start(rss: np.ndarray, k: np.ndarray, u_grid: np.ndarray) -> np.ndarray:
    """Minimum of the cubic through four grid values around each row's best grid point."""
    rows = np.arange(rss.shape[0])
    last = u_grid.size - 1
    h = u_grid[1] - u_grid[0]
    left = rss[rows, np.maximum(k - 1, 0)] < rss[rows, np.minimum(k + 1, last)]
    first = np.clip(k - 1 - left.astype(int), 0, last - 3)  # x = -1 at column `first`
    vals = np.stack([rss[rows, first + j] for j in range(4)], axis=1)
    c = vals @ _CUBIC.T  # c0 + c1 x + c2 x^2 + c3 x^3
    c1, c2, c3 = c[:, 1], c[:, 2], c[:, 3]
    # stationary points: c1 + 2 c2 x + 3 c3 x^2 = 0; the minimum has 2 c2 + 6 c3 x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(np.maximum(c2 * c2 - 3.0 * c1 * c3, 0.0))
        x_cubic = (-c2 + disc) / (3.0 * c3)
        x_quad = -c1 / (2.0 * c2)
    x = np.where(np.abs(c3) > 1e-12 * np.abs(c2), x_cubic, x_quad)
    centre = (k - (first + 1)).astype(float)
    bad = ~np.isfinite(x) | (np.abs(x - centre) >= 1.0)
    x = np.where(bad, centre, x)
    return u_grid[first + 1] + h * x


def _fit_chunk(
    t: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    a_grid: np.ndarray,
    c0: np.ndarray | None,
    t0_s: float,
    work: _vp.Workspace,
    basis: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    n_rows = y.shape[0]
    tt = np.broadcast_to(t, y.shape)
    inside = m & np.isfinite(y)
    if t.ndim == 2 or not np.isfinite(t).all():
        inside &= np.isfinite(tt)
    if t.ndim == 1 and np.all(np.diff(t) > 0):  # increasing shared axis: first sample in window
        first = np.argmax(inside, axis=1)
        tmin = np.where(inside[np.arange(n_rows), first], t[first], np.inf)
    else:
        with np.errstate(invalid="ignore"):
            tmin = np.where(inside, tt, np.inf).min(axis=1)
    ok = _distinct_times(t, tt, inside) >= 4  # the single path needs four distinct times
    ref = np.where(ok, tmin, 0.0)
    prob, y_mean = _vp.Problem.from_window(t, ref, y, inside, work)

    # 1. grid: matrix products for a shared time axis (power series where they hold)
    series = _series_problem(t, inside, prob, work)
    if series is not None:
        small = a_grid * series.span <= _series.X_MAX
        rss = np.empty((n_rows, a_grid.size))
        rss[:, small] = _series.grid_rss(a_grid[small], series)
        if (~small).any():
            assert basis is not None
            rss[:, ~small] = _vp.grid_rss_shared(a_grid, t, inside, prob, basis[:, ~small])
    elif t.ndim == 1:
        rss = _vp.grid_rss_shared(a_grid, t, inside, prob, basis)
    else:
        rss = _vp.grid_rss(a_grid, prob)
    k = np.argmin(rss, axis=1)
    u_grid = np.log(a_grid)
    last = a_grid.size - 1
    state = _State(n_rows)
    iters = np.zeros(n_rows, dtype=int)
    bound = np.zeros(n_rows, dtype=np.int8)
    lo = u_grid[np.maximum(k - 1, 0)]
    hi = u_grid[np.minimum(k + 1, last)]
    u_start = _cubic_start(rss, k, u_grid)

    # 2. edges of the grid: is the optimum at the bound, as in the single path?
    edge = ok & ((k == 0) | (k == last))
    if edge.any():
        idx = np.flatnonzero(edge)
        ev = _vp.evaluate(a_grid[k[idx]], prob.rows(idx), work)
        iters[idx] += 1
        state.store(idx, ev)
        at_min = (k[idx] == 0) & (ev.grad_u >= 0)
        at_max = (k[idx] == last) & (ev.grad_u <= 0)
        bound[idx[at_min]] = 1
        bound[idx[at_max]] = 2
        inner = ~(at_min | at_max)
        j = idx[inner]
        lo[j] = np.where(k[j] == 0, u_grid[0], u_grid[last - 1])
        hi[j] = np.where(k[j] == 0, u_grid[1], u_grid[last])
        u_start[j] = np.clip(u_start[j], lo[j], hi[j])
        u_start[j] = np.where(
            (u_start[j] > lo[j]) & (u_start[j] < hi[j]), u_start[j], 0.5 * (lo[j] + hi[j])
        )

    # 3. safeguarded Newton steps on g(u) = dR/du inside [lo, hi], with the exact second
    #    derivative of the profiled RSS (Gauss-Newton or bisection where it is not positive).
    #    Closures sharing one contiguous window are summed as power series in a (no pass
    #    over the samples) while a * span stays in the series' range; the others are summed
    #    sample by sample.
    u = np.where(bound == 1, u_grid[0], np.where(bound == 2, u_grid[last], u_start))
    active = ok & (bound == 0)
    if series is not None:
        in_range = np.exp(hi) * series.span <= _series.X_MAX
        rows_s = np.flatnonzero(active & in_range)
        rows_e = np.flatnonzero(active & ~in_range)
    else:
        rows_s, rows_e = np.empty(0, dtype=int), np.flatnonzero(active)
    stuck = []
    if rows_s.size:
        assert series is not None
        sp = series

        a_all = np.full(n_rows, a_grid[0])

        def by_series(rows: np.ndarray, a: np.ndarray) -> _vp.Evaluation:
            # evaluating every row is cheaper than copying the coefficients of a subset
            a_all[rows] = a
            ev = _series.evaluate(a_all, sp)
            return ev if rows.size == n_rows else _vp.take_rows(ev, rows)

        stuck.append(_newton(rows_s, u, lo, hi, by_series, state, iters))
    if rows_e.size:

        def by_samples(rows: np.ndarray, a: np.ndarray) -> _vp.Evaluation:
            sub = prob if rows.size == n_rows else prob.rows(rows, into=work)
            return _vp.evaluate(a, sub, work, second=True)

        stuck.append(_newton(rows_e, u, lo, hi, by_samples, state, iters))
    unconverged = np.zeros(n_rows, dtype=bool)
    for rows in stuck:
        unconverged[rows] = True
        bound[rows] = 3  # the refinement hit its iteration cap
    return _derive(prob, ok, ref, y_mean, np.exp(u), state, bound, unconverged, iters, c0, t0_s)


def _series_problem(
    t: np.ndarray, inside: np.ndarray, prob: _vp.Problem, work: _vp.Workspace
) -> _series.SeriesProblem | None:
    """The chunk as a series problem when all closures share one contiguous window."""
    if t.ndim != 1 or inside.shape[0] == 0 or not bool((inside == inside[0]).all()):
        return None
    cols = np.flatnonzero(inside[0])
    if cols.size < 4 or cols[-1] - cols[0] + 1 != cols.size or not np.all(np.diff(t) > 0):
        return None
    window = slice(int(cols[0]), int(cols[-1]) + 1)
    # one window on one axis: every closure's reference time is the window's first sample,
    # so the first row's times are everyone's
    return _series.prepare(prob.tau[0, window], prob.yc[:, window], prob.syy, work.series)


def _newton(
    rows: np.ndarray,
    u: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray], _vp.Evaluation],
    state: _State,
    iters: np.ndarray,
) -> np.ndarray:
    """Refine ``u`` (ln a) of ``rows`` in place; returns the rows that hit the cap."""
    active = rows
    u_cur = u[active]
    lo_a, hi_a = lo[active], hi[active]
    ev = evaluate(active, np.exp(u_cur))
    iters[active] += 1
    state.store(active, ev)
    for _ in range(_MAX_ITER):
        g_cur = ev.grad_u
        lo_a = np.where(g_cur < 0, u_cur, lo_a)
        hi_a = np.where(g_cur > 0, u_cur, hi_a)
        exact = np.isfinite(ev.curv_u) & (ev.curv_u > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = -g_cur / np.where(exact, ev.curv_u, ev.hess_u)
        u_new = u_cur + step
        outside = ~np.isfinite(u_new) | (u_new <= lo_a) | (u_new >= hi_a)
        u_new = np.where(outside, 0.5 * (lo_a + hi_a), u_new)
        scale = np.maximum(1.0, np.abs(u_cur))
        accept = exact & ~outside & (np.abs(step) <= _ACCEPT_U * scale) & (g_cur != 0)
        stop = (g_cur == 0) | (hi_a - lo_a <= _TOL_U * scale)
        if accept.any():  # the last Newton step is applied to first order, no new evaluation
            done_rows = active[accept]
            state.first_order(done_rows, u_cur[accept], u_new[accept])
            u[done_rows] = u_new[accept]
        plain = stop & ~accept
        u[active[plain]] = u_cur[plain]
        keep = ~(accept | stop)
        active = active[keep]
        if active.size == 0:
            return active
        u_cur, lo_a, hi_a = u_new[keep], lo_a[keep], hi_a[keep]
        ev = evaluate(active, np.exp(u_cur))
        iters[active] += 1
        state.store(active, ev)
        u[active] = u_cur
    return active


class _State:
    """The last evaluation of every closure (scattered from row subsets)."""

    names = ("a", "p", "q", "rss", "grad_u", "curv_u", "n", "sf", "sff", "sd", "sdf", "sdd")
    second = ("dp_da", "dq_da", "s2", "s2f", "s2d")

    def __init__(self, n: int) -> None:
        for name in self.names + self.second:
            setattr(self, name, np.full(n, np.nan))

    def store(self, idx: np.ndarray, ev: _vp.Evaluation) -> None:
        for name in self.names + self.second:
            value = getattr(ev, name)
            getattr(self, name)[idx] = np.nan if value is None else value

    def first_order(self, idx: np.ndarray, u_old: np.ndarray, u_new: np.ndarray) -> None:
        """Move rows ``idx`` from curvature exp(u_old) to exp(u_new) by a Newton step.

        (p, q) and the moments behind the standard errors follow to first order in the
        change of a, the RSS to second order; what is left is of the order of the step
        squared (below 1e-8 relative for the accepted steps).
        """
        delta = np.exp(u_new) - np.exp(u_old)
        a = self.a[idx]
        g_a = self.grad_u[idx] / a
        c_a = (self.curv_u[idx] - self.grad_u[idx]) / (a * a)  # d2R/da2
        self.p[idx] += self.dp_da[idx] * delta
        self.q[idx] += self.dq_da[idx] * delta
        self.rss[idx] += g_a * delta + 0.5 * c_a * delta * delta
        sd, sdf, sdd = self.sd[idx], self.sdf[idx], self.sdd[idx]
        self.sf[idx] += sd * delta
        self.sff[idx] += 2.0 * sdf * delta
        self.sd[idx] += self.s2[idx] * delta
        self.sdf[idx] += (self.s2f[idx] + sdd) * delta
        self.sdd[idx] += 2.0 * self.s2d[idx] * delta
        self.a[idx] = np.exp(u_new)


def _distinct_times(t: np.ndarray, tt: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Number of distinct window times per closure."""
    if t.ndim == 1 and np.all(np.diff(t) > 0):
        return inside.sum(axis=1)  # a strictly increasing shared axis: all distinct
    vals = np.where(inside, tt, np.nan)
    srt = np.sort(vals, axis=1)
    diff = np.diff(srt, axis=1)
    return 1 + np.sum(np.isfinite(diff) & (diff > 0), axis=1) - (np.isnan(srt[:, 0]))


def _inv3(m: np.ndarray) -> np.ndarray:
    """Inverses of a stack of symmetric 3 x 3 matrices by cofactors (NaN where singular)."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 1], m[:, 1, 2], m[:, 2, 2]
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    det = a * c00 + b * c01 + c * c02
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = np.where(det != 0, 1.0 / det, np.nan)
    out = np.empty_like(m)
    out[:, 0, 0] = c00 * inv_det
    out[:, 0, 1] = out[:, 1, 0] = c01 * inv_det
    out[:, 0, 2] = out[:, 2, 0] = c02 * inv_det
    out[:, 1, 1] = c11 * inv_det
    out[:, 1, 2] = out[:, 2, 1] = c12 * inv_det
    out[:, 2, 2] = c22 * inv_det
    return out


def _derive(
    prob: _vp.Problem,
    ok: np.ndarray,
    ref: np.ndarray,
    y_mean: np.ndarray,
    a: np.ndarray,
    st: _State,
    bound: np.ndarray,
    unconverged: np.ndarray,
    iters: np.ndarray,
    c0: np.ndarray | None,
    t0_s: float,
) -> dict[str, np.ndarray]:
    """Slope, t0, Cx, R2 and standard errors from the optimum, as ``exponential.finish``."""
    n = prob.n
    p_abs = st.p + y_mean
    q = st.q
    rss = st.rss
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cx = np.where(a != 0, p_abs + q / a, np.copysign(np.inf, q))
        r2 = np.where(prob.syy > 0, 1.0 - rss / prob.syy, 1.0)
        rmse = np.sqrt(rss / n)
        # J = [1, phi, q dphi]: J^T J from the moments of the last evaluation
        jtj = np.empty((a.size, 3, 3))
        jtj[:, 0, 0] = n
        jtj[:, 0, 1] = jtj[:, 1, 0] = st.sf
        jtj[:, 0, 2] = jtj[:, 2, 0] = q * st.sd
        jtj[:, 1, 1] = st.sff
        jtj[:, 1, 2] = jtj[:, 2, 1] = q * st.sdf
        jtj[:, 2, 2] = q * q * st.sdd
        good = ok & (n > 3) & np.all(np.isfinite(jtj.reshape(a.size, 9)), axis=1)
        cov = np.where(good[:, None, None], _inv3(jtj), np.nan)
        cov *= (rss / (n - 3))[:, None, None]
        if c0 is not None:
            slope = q - a * (c0 - p_abs)
            ratio = np.where(q != 0, slope / q, np.nan)
            positive = ratio > 0
            t0 = np.where(
                positive,
                np.where(
                    a != 0,
                    ref - np.log(np.where(positive, ratio, 1.0)) / a,
                    ref + (c0 - p_abs) / q,
                ),
                np.nan,
            )
            grad = np.stack([a, np.ones_like(a), -(c0 - p_abs)], axis=1)
            c0_out = np.asarray(c0, dtype=float).copy()
            no_t0 = ~positive
        else:
            tau0 = t0_s - ref
            e0 = np.exp(-a * tau0)
            phi0, _ = _vp.phi_and_dphi(a, tau0)
            slope = q * e0
            t0 = np.full(a.size, float(t0_s))
            c0_out = p_abs + q * phi0
            grad = np.stack([np.zeros_like(a), e0, -q * tau0 * e0], axis=1)
            no_t0 = np.zeros(a.size, dtype=bool)
        var = np.einsum("ni,nij,nj->n", grad, cov, grad)
        slope_se = np.where(np.isfinite(var), np.sqrt(np.maximum(var, 0.0)), np.inf)
        cov_aa = cov[:, 2, 2]
        a_se = np.where(cov_aa >= 0, np.sqrt(np.maximum(cov_aa, 0.0)), np.inf)
    converged = ok & (bound == 0) & ~no_t0 & ~unconverged
    nan = np.full(a.size, np.nan)
    return {
        "slope": np.where(ok, slope, nan),
        "slope_se": np.where(ok, slope_se, nan),
        "a": np.where(ok, a, nan),
        "cx": np.where(ok, cx, nan),
        "c0": np.where(ok, c0_out, nan),
        "t0": np.where(ok, t0, nan),
        "r2": np.where(ok, r2, nan),
        "rmse": np.where(ok, rmse, nan),
        "a_se": np.where(ok, a_se, nan),
        "ref": np.where(ok, ref, nan),
        "p": np.where(ok, p_abs, nan),
        "q": np.where(ok, q, nan),
        "n": n.astype(int),
        "converged": converged,
        "at_bound": bound,
        "iterations": iters,
    }
