"""Exponential (saturating) fits of a closed-chamber trace: LI-COR form, free form, HMR.

One variable-projection engine (:mod:`chamberd.fitting._vp`) serves every form. The curve is

    C(t) = Cx + (C0 - Cx) exp(-a (t - t0))                                          (1)

and its slope at t0 is ``a (Cx - C0)``. The forms differ only in where the slope is taken:

``fixed_c0`` (LI-COR)
    C0 is given (the intercept over the first 10 s of the closure); t0 is where the
    fitted curve passes through C0.
``free_c0``
    t0 is given (default: the closure, elapsed 0); C0 is the fitted curve at t0.
``hmr``
    The Hutchinson-Mosier form used for static chambers (Pedersen et al. 2010):
    C(t) = phi + f0 exp(-kappa t) / (-kappa h); identical to ``free_c0`` at t0 = 0 with
    phi = Cx, kappa = a and f0 = h x slope.

The curvature ``a`` is searched in ``a_bounds_per_s``. An optimum at the lower bound means
the trace is straight or bends upwards: the exponential is then *degenerate* and reported
with ``converged=False`` and ``at_bound="a_min"`` (LI-COR firmware pins Cx at 1e6 in this
case and reports the linear flux).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq, minimize_scalar

from . import _vp
from .linear import _clean, _nrmse

__all__ = ["DEFAULT_A_BOUNDS_PER_S", "ExponentialFit", "fit_exponential", "fit_hmr"]

#: Curvature search range [s-1] (the bounds LI-COR Smart Chamber files show).
DEFAULT_A_BOUNDS_PER_S = (1e-5, 1.0)
GRID_POINTS = 48


@dataclass(frozen=True)
class ExponentialFit:
    """Result of an exponential fit, equation (1) of the module notes.

    Attributes
    ----------
    form : str
        ``"fixed_c0"``, ``"free_c0"`` or ``"hmr"``.
    slope_mf_s : float
        dC/dt at ``t0_s`` = a (Cx - C0) [mf s-1].
    slope_se_mf_s : float
        Its standard error from the linearised covariance of (p, q, a) [mf s-1].
    a_per_s, a_se_per_s : float
        Curvature and its standard error [s-1].
    cx_mf : float
        Asymptote Cx [mf] (infinite when a is 0).
    c0_mf : float
        The curve at t0 [mf].
    t0_s : float
        Where the slope is taken [s since closure].
    r_squared, rmse_mf, nrmse, n_points
        Goodness of fit; nrmse is rmse over the range of the data.
    converged : bool
        An interior optimum was found and the slope is defined.
    at_bound : str or None
        ``"a_min"`` (degenerate: straight or upward-bending trace), ``"a_max"``, or
        ``"iteration_cap"`` (the refinement did not converge).
    iterations : int
        Function evaluations of the refinement after the grid.
    message : str
        Why it did not converge, or "".
    ref_time_s, value_at_ref_mf, slope_at_ref_mf_s : float
        The curve in the engine's basis, for :meth:`curve_mf`.
    """

    form: str
    slope_mf_s: float
    slope_se_mf_s: float
    a_per_s: float
    a_se_per_s: float
    cx_mf: float
    c0_mf: float
    t0_s: float
    r_squared: float
    rmse_mf: float
    nrmse: float
    n_points: int
    converged: bool
    at_bound: str | None
    iterations: int
    message: str
    ref_time_s: float
    value_at_ref_mf: float
    slope_at_ref_mf_s: float

    def curve_mf(self, elapsed_s: ArrayLike) -> np.ndarray:
        """The fitted curve at ``elapsed_s`` [mf]."""
        tau = np.asarray(elapsed_s, dtype=float) - self.ref_time_s
        phi, _ = _vp.phi_and_dphi(np.asarray(self.a_per_s), tau)
        return self.value_at_ref_mf + self.slope_at_ref_mf_s * phi


def _failed(form: str, n: int, t0_s: float, message: str) -> ExponentialFit:
    nan = math.nan
    return ExponentialFit(
        form,
        nan,
        nan,
        nan,
        nan,
        nan,
        nan,
        t0_s,
        nan,
        nan,
        nan,
        n,
        False,
        None,
        0,
        message,
        nan,
        nan,
        nan,
    )


def minimise_single(
    prob: _vp.Problem, a_bounds: tuple[float, float], grid_points: int
) -> tuple[float, str | None, int]:
    """Curvature minimising the profiled RSS of one closure: (a, at_bound, evaluations).

    Grid search over u = ln a; then, in the grid cells around the best grid point, Brent's
    root finder on dR/du (or a bounded scalar minimisation of R when dR/du does not change
    sign across the cells). An optimum on the first or last grid point whose derivative
    points outwards is reported at that bound.
    """
    a_grid = _vp.default_grid(a_bounds[0], a_bounds[1], grid_points)
    u_grid = np.log(a_grid)
    rss = _vp.grid_rss(a_grid, prob)[0]
    k = int(np.argmin(rss))
    last = a_grid.size - 1
    calls = 0

    def ev(u: float) -> _vp.Evaluation:
        nonlocal calls
        calls += 1
        return _vp.evaluate(np.array([math.exp(u)]), prob)

    def grad(u: float) -> float:
        return float(ev(u).grad_u[0])

    if k == 0:
        g_lo = grad(u_grid[0])
        if g_lo >= 0:
            return float(a_grid[0]), "a_min", calls
        lo, hi = u_grid[0], u_grid[1]
        g_hi = grad(hi)
    elif k == last:
        g_hi = grad(u_grid[last])
        if g_hi <= 0:
            return float(a_grid[last]), "a_max", calls
        lo, hi = u_grid[last - 1], u_grid[last]
        g_lo = grad(lo)
    else:
        lo, hi = u_grid[k - 1], u_grid[k + 1]
        g_lo, g_hi = grad(lo), grad(hi)
    if g_lo < 0 < g_hi:
        try:
            u = brentq(grad, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200)
        except RuntimeError:  # iteration cap: keep the better end of the bracket
            u = lo if ev(lo).rss[0] <= ev(hi).rss[0] else hi
            return math.exp(u), "iteration_cap", calls
    else:  # several extrema in the cells: minimise R itself
        found = minimize_scalar(
            lambda x: float(ev(x).rss[0]),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        u = float(found.x)
    return math.exp(u), None, calls


def _covariance(tau: np.ndarray, p: float, q: float, a: float, rss: float) -> np.ndarray | None:
    """Linearised covariance of (p, q, a); None when singular or no degrees of freedom."""
    n = tau.size
    if n <= 3:
        return None
    phi, dphi = _vp.phi_and_dphi(np.asarray(a), tau)
    jac = np.column_stack([np.ones_like(tau), phi, q * dphi])
    try:
        inv = np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return None
    return inv * (rss / (n - 3))


def _se(grad: np.ndarray, cov: np.ndarray | None) -> float:
    if cov is None:
        return math.inf
    return math.sqrt(max(float(grad @ cov @ grad), 0.0))


def status(at_bound: str | None, has_t0: bool) -> tuple[bool, str]:
    """Whether a fit converged, and the message saying why not (shared with the batch path).

    ``has_t0`` is False when a fixed-C0 curve never passes through C0.
    """
    message = {
        "a_min": "curvature at its lower bound: the trace is straight or bends upwards",
        "a_max": "curvature at its upper bound: the trace saturates within seconds",
        "iteration_cap": "the curvature search hit its iteration cap",
    }.get(at_bound or "", "")
    if not has_t0:
        return False, message or "the fitted curve never passes through C0"
    return at_bound is None, message


def failed(form: str, n: int, t0_s: float) -> ExponentialFit:
    """The result for a window with fewer than four samples or distinct times."""
    return _failed(form, n, t0_s, f"too few points for an exponential ({n})")


def finish(
    form: str,
    t: np.ndarray,
    y: np.ndarray,
    ref_time: float,
    a: float,
    p: float,
    q: float,
    rss: float,
    at_bound: str | None,
    iterations: int,
    *,
    c0_mf: float | None,
    t0_s: float,
) -> ExponentialFit:
    """Derive slope, t0, C0, Cx and diagnostics from the optimum (p, q, a)."""
    tau = t - ref_time
    n = t.size
    yc = y - y.mean()
    tss = float(yc @ yc)
    r2 = 1.0 - rss / tss if tss > 0 else 1.0
    rmse = math.sqrt(rss / n)
    cov = _covariance(tau, p, q, a, rss)
    cx = p + q / a if a != 0 else math.copysign(math.inf, q)
    a_se = math.sqrt(cov[2, 2]) if cov is not None and cov[2, 2] >= 0 else math.inf
    has_t0 = True
    if c0_mf is not None:
        slope = q - a * (c0_mf - p)
        ratio = slope / q if q != 0 else math.nan
        if ratio > 0:
            t0 = ref_time - math.log(ratio) / a if a != 0 else ref_time + (c0_mf - p) / q
        else:
            t0 = math.nan
            has_t0 = False
        grad = np.array([a, 1.0, -(c0_mf - p)])
        c0 = c0_mf
    else:
        tau0 = t0_s - ref_time
        phi0, _dphi0 = _vp.phi_and_dphi(np.asarray(a), np.asarray(tau0))
        e0 = math.exp(-a * tau0)
        slope = q * e0
        t0 = t0_s
        c0 = p + q * float(phi0)
        grad = np.array([0.0, e0, -q * tau0 * e0])
    converged, message = status(at_bound, has_t0)
    return ExponentialFit(
        form=form,
        slope_mf_s=float(slope),
        slope_se_mf_s=_se(grad, cov),
        a_per_s=float(a),
        a_se_per_s=a_se,
        cx_mf=float(cx),
        c0_mf=float(c0),
        t0_s=float(t0),
        r_squared=r2,
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y),
        n_points=n,
        converged=converged,
        at_bound=at_bound,
        iterations=iterations,
        message=message,
        ref_time_s=float(ref_time),
        value_at_ref_mf=float(p),
        slope_at_ref_mf_s=float(q),
    )


def fit_exponential(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    c0_mf: float | None = None,
    t0_s: float = 0.0,
    a_bounds_per_s: tuple[float, float] = DEFAULT_A_BOUNDS_PER_S,
    form: str | None = None,
) -> ExponentialFit:
    """Fit the saturating exponential (1) to a trace and return the slope at t0.

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s] (the fit window only).
    mole_fraction : array_like
        Mole fraction [mf], dry for a flux.
    c0_mf : float, optional
        Fixed initial mole fraction C'0 [mf] (LI-COR form): the slope is taken where the
        curve passes through it. When omitted the slope is taken at ``t0_s``.
    t0_s : float
        Time of the slope when ``c0_mf`` is omitted [s]; default the closure.
    a_bounds_per_s : (float, float)
        Search range of the curvature a [s-1].
    form : str, optional
        Label of the result; defaults to ``"fixed_c0"`` or ``"free_c0"``.

    Returns
    -------
    ExponentialFit

    Raises
    ------
    ValueError
        When the arrays differ in length or the bounds are not 0 < a_min < a_max.

    Notes
    -----
    Model (1) of the module notes; the slope at t0 is a (Cx - C0). The fit minimises the
    residual sum of squares over (Cx, C0 or t0, a) by variable projection. Standard errors
    come from the linearised covariance s^2 (J^T J)^-1 with n - 3 degrees of freedom.

    References
    ----------
    LI-COR (2015) LI-8100A Automated Soil Gas Flux System instruction manual, ch. 6.
    Pedersen, A. R., Petersen, S. O., Schelde, K. (2010) A comprehensive approach to
    soil-atmosphere trace-gas flux estimation with static chambers. Eur. J. Soil Sci. 61,
    888-902. doi:10.1111/j.1365-2389.2010.01291.x

    Examples
    --------
    A noiseless curve with a = 0.01 s-1 rising from 400 towards 500 umol mol-1:

    >>> t = np.arange(10.0, 121.0)
    >>> fit = fit_exponential(t, 500 - 100 * np.exp(-0.01 * t), c0_mf=400.0)
    >>> round(fit.slope_mf_s, 9), round(fit.a_per_s, 9), round(fit.t0_s, 6)
    (1.0, 0.01, 0.0)
    """
    lo, hi = a_bounds_per_s
    if not (0 < lo < hi):
        raise ValueError(f"a_bounds_per_s must satisfy 0 < a_min < a_max, got {a_bounds_per_s}")
    label = form or ("fixed_c0" if c0_mf is not None else "free_c0")
    t, y = _clean(elapsed_s, mole_fraction)
    if t.size < 4 or np.unique(t).size < 4:
        return failed(label, t.size, t0_s)
    ref_time = float(t.min())
    tau = t - ref_time
    y_mean = float(y.mean())
    prob = _vp.Problem.from_arrays(tau[None, :], y[None, :], np.ones((1, t.size)))
    a, at_bound, calls = minimise_single(prob, (lo, hi), GRID_POINTS)
    ev = _vp.evaluate(np.array([a]), prob)
    return finish(
        label,
        t,
        y,
        ref_time,
        a,
        float(ev.p[0]) + y_mean,
        float(ev.q[0]),
        float(ev.rss[0]),
        at_bound,
        calls,
        c0_mf=c0_mf,
        t0_s=t0_s,
    )


def fit_hmr(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    a_bounds_per_s: tuple[float, float] = DEFAULT_A_BOUNDS_PER_S,
) -> ExponentialFit:
    """Hutchinson-Mosier (HMR) fit for static chambers: the slope at the closure.

    C(t) = phi + f0 exp(-kappa t) / (-kappa h); this returns ``slope_mf_s`` = f0 / h,
    ``a_per_s`` = kappa and ``cx_mf`` = phi. Multiply the slope (and its standard error)
    by the chamber height h to get f0 in the unit of mf x length per second.

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s].
    mole_fraction : array_like
        Mole fraction or concentration [mf].
    a_bounds_per_s : (float, float)
        Search range of kappa [s-1].

    Returns
    -------
    ExponentialFit
        With ``form="hmr"`` and ``t0_s=0``.

    References
    ----------
    Hutchinson, G. L., Mosier, A. R. (1981) Improved soil cover method for field
    measurement of nitrous oxide fluxes. Soil Sci. Soc. Am. J. 45, 311-316.
    doi:10.2136/sssaj1981.03615995004500020017x

    Examples
    --------
    The HMR example of the gasfluxes package (time in h, h = V/A = 0.3 m), published as
    f0 = 26.12293, kappa = 1.970155, phi = 364.1220 (R's ``nls`` stops 1.4e-5 short of
    the least-squares optimum in f0):

    >>> hours = np.array([0, 1/3, 2/3, 1, 1.2, 1.3])
    >>> fit = fit_hmr(hours * 3600, [320, 341, 352, 359, 360, 360])
    >>> f0 = fit.slope_mf_s * 3600 * 0.3
    >>> round(f0, 4), round(fit.a_per_s * 3600, 6), round(fit.cx_mf, 4)
    (26.1229, 1.970155, 364.122)
    """
    return fit_exponential(
        elapsed_s, mole_fraction, t0_s=0.0, a_bounds_per_s=a_bounds_per_s, form="hmr"
    )
