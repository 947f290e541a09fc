"""Variable-projection core shared by every exponential form, single and batch.

The saturating chamber curve

    C(t) = Cx + (C0 - Cx) exp(-a (t - t0))

is written, for numerical work, in a basis that stays well conditioned down to a = 0:

    C(tau) = p + q * phi_a(tau),   phi_a(tau) = (1 - exp(-a tau)) / a,   tau = t - t_ref

so that ``p`` is the curve at ``t_ref``, ``q`` its slope there, ``Cx = p + q / a``, and at
``a = 0`` the model is the straight line ``p + q tau``. For a fixed curvature ``a`` the model
is linear in ``(p, q)``; the residual sum of squares profiled over ``(p, q)``, ``R(a)``, is
minimised over ``u = ln a`` on a shared grid and then by safeguarded Newton steps on
``dR/du = 0``, whose derivative follows from the envelope theorem,
``dR/da = -2 q sum(w r dphi/da)``, with the Gauss-Newton curvature of the projected
Jacobian (Golub and Pereyra 1973, Kaufman 1975).

All functions take a leading batch axis: ``tau`` is (N, M) or (M,), ``y`` and ``w`` are
(N, M); ``w`` is a 0/1 mask of the samples in each closure's window. Nothing here knows
about chambers or units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# |a * tau| below which phi and its derivative use their Taylor series (no cancellation).
# Series truncation error is below x**4 / 120 (1e-14 relative); above it the closed forms
# lose at most eps / x**2 (4e-10 relative) to cancellation.
_SERIES_LIMIT = 1e-3


class Workspace:
    """Preallocated scratch arrays for :func:`evaluate` (fresh large arrays cost page faults).

    Views of the first ``rows`` rows are handed out, so one workspace serves every subset
    of a chunk.
    """

    def __init__(self, rows: int, cols: int, series_terms: int = 0) -> None:
        self.x = np.empty((rows, cols))
        self.phi = np.empty((rows, cols))
        self.dphi = np.empty((rows, cols))
        self.d2phi = np.empty((rows, cols))
        self.tau = np.empty((rows, cols))  # compacted subsets of a problem
        self.yc = np.empty((rows, cols))
        self.problem_tau = np.empty((rows, cols))  # the chunk's problem itself
        self.problem_yc = np.empty((rows, cols))
        self.series = np.empty((3, series_terms, rows)) if series_terms else None

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 2 and shape[0] <= self.x.shape[0] and shape[1] == self.x.shape[1]


def phi_and_dphi(
    a: np.ndarray,
    tau: np.ndarray,
    work: Workspace | None = None,
    check_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """phi_a(tau) = (1 - exp(-a tau)) / a and its derivative with respect to a.

    ``a`` broadcasts against ``tau`` (give it shape (N, 1) for per-closure curvature).
    With ``work`` (for an (N, M) ``tau``) the results are views into its buffers.
    ``check_rows`` (indices) limits the search for tiny non-zero a tau to those rows.
    """
    a = np.asarray(a, dtype=float)
    tau = np.asarray(tau, dtype=float)
    if a.ndim == 0 and tau.ndim == 0:
        phi1, dphi1 = phi_and_dphi(a[None], tau[None])
        return phi1[0], dphi1[0]
    shape = np.broadcast_shapes(a.shape, tau.shape)
    if work is not None and work.fits(shape):
        rows = shape[0]
        x, phi, dphi = work.x[:rows], work.phi[:rows], work.dphi[:rows]
    else:
        x, phi, dphi = np.empty(shape), np.empty(shape), np.empty(shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        inv_a = 1.0 / a
        np.multiply(a, tau, out=x)
        np.negative(x, out=dphi)
        np.exp(dphi, out=dphi)  # dphi holds e = exp(-x) for now
        np.subtract(1.0, dphi, out=phi)
        phi *= inv_a  # phi = (1 - e) / a
        dphi *= tau
        dphi -= phi
        dphi *= inv_a  # dphi = (tau e - phi) / a
    # x == 0 is exact in the closed forms (phi = dphi = 0); only tiny non-zero x need the
    # series (x is kept signed for it).
    if check_rows is not None:
        if check_rows.size:
            tau_rows = np.broadcast_to(tau, shape)[check_rows]
            sub_phi, sub_dphi = phi[check_rows], dphi[check_rows]
            _series_fix(x[check_rows], tau_rows, sub_phi, sub_dphi)
            phi[check_rows], dphi[check_rows] = sub_phi, sub_dphi
        return phi, dphi
    _series_fix(x, np.broadcast_to(tau, shape), phi, dphi)
    return phi, dphi


def _series_fix(x: np.ndarray, tau: np.ndarray, phi: np.ndarray, dphi: np.ndarray) -> None:
    """Overwrite phi and dphi with their Taylor series where 0 < |a tau| < the limit."""
    small = x < _SERIES_LIMIT
    small &= x > -_SERIES_LIMIT
    small &= x != 0
    if small.any():
        xs = x[small]
        ts = tau[small]
        phi[small] = ts * (1.0 + xs * (-0.5 + xs * (1.0 / 6.0 - xs / 24.0)))
        dphi[small] = ts * ts * (-0.5 + xs * (1.0 / 3.0 + xs * (-0.125 + xs / 30.0)))


def phi_derivatives(
    a: np.ndarray, tau: np.ndarray, work: Workspace, check_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, d phi / da and d2 phi / da2 for an (N, M) ``tau`` and (N, 1) ``a``, in ``work``.

    d2phi = -(tau**2 exp(-a tau) + 2 dphi) / a; Taylor series for 0 < |a tau| < the limit
    on the rows ``check_rows``.
    """
    rows = tau.shape[0]
    x, phi, dphi, d2phi = work.x[:rows], work.phi[:rows], work.dphi[:rows], work.d2phi[:rows]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        inv_a = 1.0 / a
        np.multiply(a, tau, out=x)
        np.negative(x, out=d2phi)
        np.exp(d2phi, out=d2phi)  # e
        np.subtract(1.0, d2phi, out=phi)
        phi *= inv_a  # (1 - e) / a
        d2phi *= tau  # tau e
        np.subtract(d2phi, phi, out=dphi)
        dphi *= inv_a  # (tau e - phi) / a
        d2phi *= tau  # tau^2 e
        d2phi += dphi
        d2phi += dphi
        d2phi *= -inv_a  # -(tau^2 e + 2 dphi) / a
    if check_rows.size:
        xr = x[check_rows]
        small = (xr < _SERIES_LIMIT) & (xr > -_SERIES_LIMIT) & (xr != 0)
        if small.any():
            rr, cc = np.nonzero(small)
            r_idx = check_rows[rr]
            xs = x[r_idx, cc]
            ts = tau[r_idx, cc]
            phi[r_idx, cc] = ts * (1.0 + xs * (-0.5 + xs * (1.0 / 6.0 - xs / 24.0)))
            dphi[r_idx, cc] = ts * ts * (-0.5 + xs * (1.0 / 3.0 + xs * (-0.125 + xs / 30.0)))
            d2phi[r_idx, cc] = ts**3 * (1.0 / 3.0 + xs * (-0.25 + xs * (0.1 - xs / 36.0)))
    return phi, dphi, d2phi


def solve_pq(
    n: np.ndarray,
    sy: np.ndarray,
    syy: np.ndarray,
    sf: np.ndarray,
    sff: np.ndarray,
    sfy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (p, q) of y = p + q f from weighted moments; returns (p, q, rss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_f = sf / n
        mean_y = sy / n
        cff = sff - sf * mean_f  # centred moments
        cfy = sfy - sf * mean_y
        cyy = syy - sy * mean_y
        q = cfy / cff
        p = mean_y - q * mean_f
        rss = cyy - q * cfy
    return p, q, np.maximum(rss, 0.0)


@dataclass(frozen=True)
class Problem:
    """Closures prepared for the engine.

    ``tau`` is time since each closure's reference time and ``yc`` the mole fraction minus
    its window mean, both (N, M) and exactly 0 outside the window (phi(0) = dphi(0) = 0, so
    masked samples drop out of every sum without a weight); ``n`` counts window samples and
    ``syy`` is sum(yc**2).
    """

    tau: np.ndarray
    yc: np.ndarray
    n: np.ndarray
    syy: np.ndarray
    # smallest non-zero |tau| of each closure: rows with a * tau_step >= the series limit
    # need no Taylor-series look (None: look everywhere)
    tau_step: np.ndarray | None = None

    @classmethod
    def from_window(
        cls, t: np.ndarray, ref: np.ndarray, y: np.ndarray, inside: np.ndarray, work: Workspace
    ) -> tuple[Problem, np.ndarray]:
        """Like :meth:`from_arrays` for times ``t`` ((M,) or (N, M)) minus per-closure
        ``ref``, written into ``work``'s buffers; returns (problem, window means)."""
        rows = y.shape[0]
        tau = work.problem_tau[:rows]
        yc = work.problem_yc[:rows]
        np.subtract(t, ref[:, None], out=tau)
        tau *= inside
        n = inside.sum(axis=1).astype(float)
        if inside.all():
            np.copyto(yc, y)
        else:
            yc.fill(0.0)
            np.copyto(yc, y, where=inside)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(n > 0, yc.sum(axis=1) / n, 0.0)
        yc -= mean[:, None]
        yc *= inside
        if t.ndim == 1 and np.all(np.diff(t) > 0):  # samples at least the smallest step apart
            step = np.full(rows, float(np.min(np.diff(t))))
        else:
            step = np.where(tau != 0, np.abs(tau), np.inf).min(axis=1)
        syy = np.einsum("ij,ij->i", yc, yc)
        return cls(tau=tau, yc=yc, n=n, syy=syy, tau_step=step), mean

    @classmethod
    def from_arrays(
        cls, tau: np.ndarray, y: np.ndarray, w: np.ndarray, *, with_mean: bool = False
    ) -> Any:
        """From times, values and a 0/1 window mask (each (N, M)); centres y per closure.

        With ``with_mean`` returns ``(problem, window means)``.
        """
        inside = w > 0
        n = inside.sum(axis=1).astype(float)
        yc = np.where(inside, y, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(n > 0, yc.sum(axis=1) / n, 0.0)
        yc -= mean[:, None]
        yc *= inside
        tc = np.where(inside, tau, 0.0)
        prob = cls(tau=tc, yc=yc, n=n, syy=np.einsum("ij,ij->i", yc, yc))
        return (prob, mean) if with_mean else prob

    def rows(self, idx: np.ndarray, into: Workspace | None = None) -> Problem:
        """The closures ``idx``; copied into ``into``'s buffers when given."""
        step = None if self.tau_step is None else self.tau_step[idx]
        if into is None or not into.fits((idx.size, self.tau.shape[1])):
            return Problem(self.tau[idx], self.yc[idx], self.n[idx], self.syy[idx], step)
        tau = np.take(self.tau, idx, axis=0, out=into.tau[: idx.size])
        yc = np.take(self.yc, idx, axis=0, out=into.yc[: idx.size])
        return Problem(tau, yc, self.n[idx], self.syy[idx], step)


@dataclass(frozen=True)
class Evaluation:
    """The profiled problem at one curvature per closure, with the moments behind it."""

    a: np.ndarray
    p: np.ndarray  # curve at the reference time, relative to the window mean
    q: np.ndarray  # slope at the reference time
    rss: np.ndarray
    grad_u: np.ndarray  # dR/du, u = ln a
    hess_u: np.ndarray  # Gauss-Newton d2R/du2 (>= 0)
    n: np.ndarray  # samples in the window
    sf: np.ndarray  # sum(phi)
    sff: np.ndarray  # sum(phi**2)
    sd: np.ndarray  # sum(dphi)
    sdf: np.ndarray  # sum(dphi * phi)
    sdd: np.ndarray  # sum(dphi**2)
    # with second=True: the exact second derivative and what a first-order move needs
    curv_u: np.ndarray | None = None  # exact d2R/du2
    dp_da: np.ndarray | None = None  # d p / d a
    dq_da: np.ndarray | None = None  # d q / d a
    s2: np.ndarray | None = None  # sum(d2phi)
    s2f: np.ndarray | None = None  # sum(d2phi * phi)
    s2d: np.ndarray | None = None  # sum(d2phi * dphi)


def take_rows(ev: Evaluation, idx: np.ndarray) -> Evaluation:
    """The evaluation of the closures ``idx`` only."""
    fields = {}
    for name in Evaluation.__dataclass_fields__:
        value = getattr(ev, name)
        fields[name] = None if value is None else value[idx]
    return Evaluation(**fields)


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def evaluate(
    a: np.ndarray, prob: Problem, work: Workspace | None = None, *, second: bool = False
) -> Evaluation:
    """Profile (p, q), the RSS and its derivatives in u = ln a, for one a per closure.

    With ``second`` (needs ``work``) also the exact second derivative of the profiled RSS
    and d(p, q)/da, from the sums of d2phi/da2.
    """
    a = np.asarray(a, dtype=float)
    check = np.arange(a.size)
    if prob.tau_step is not None:
        check = np.flatnonzero(np.abs(a) * prob.tau_step < _SERIES_LIMIT)
    if second:
        assert work is not None
        phi, dphi, d2phi = phi_derivatives(a[:, None], prob.tau, work, check)
    else:
        phi, dphi = phi_and_dphi(a[:, None], prob.tau, work, check)
    n, yc = prob.n, prob.yc
    sf = phi.sum(axis=1)
    sff = _dot(phi, phi)
    sfy = _dot(phi, yc)
    sd = dphi.sum(axis=1)
    sdd = _dot(dphi, dphi)
    sdf = _dot(dphi, phi)
    sdy = _dot(dphi, yc)
    zero = np.zeros_like(n)
    p, q, rss = solve_pq(n, zero, prob.syy, sf, sff, sfy)
    second_sums = None
    if second:
        second_sums = (d2phi.sum(axis=1), _dot(d2phi, phi), _dot(d2phi, yc), _dot(d2phi, dphi))
    return finish_evaluation(a, n, p, q, rss, sf, sff, sfy, sd, sdd, sdf, sdy, second_sums)


def finish_evaluation(
    a: np.ndarray,
    n: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    rss: np.ndarray,
    sf: np.ndarray,
    sff: np.ndarray,
    sfy: np.ndarray,
    sd: np.ndarray,
    sdd: np.ndarray,
    sdf: np.ndarray,
    sdy: np.ndarray,
    second_sums: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Evaluation:
    """Derivatives of the profiled RSS from the sums (shared by every way of summing).

    ``second_sums`` = (sum d2phi, sum d2phi phi, sum d2phi y, sum d2phi dphi) adds the exact
    second derivative and d(p, q)/da.
    """
    # sum(r dphi) with r = yc - p - q phi; dR/da = -2 q sum(r dphi)
    rd = sdy - p * sd - q * sdf
    grad_a = -2.0 * q * rd
    # || P_perp (q dphi) ||^2: dphi projected on the complement of span{1, phi}
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_f = sf / n
        cff = sff - sf * mean_f
        cdf = sdf - sd * mean_f
        cdd = sdd - sd * sd / n
        perp = np.maximum(cdd - cdf * cdf / cff, 0.0)
    hess_a = 2.0 * q * q * perp
    extra: dict[str, np.ndarray] = {}
    if second_sums is not None:
        s2, s2f, s2y, s2d = second_sums
        with np.errstate(divide="ignore", invalid="ignore"):
            # (Phi^T Phi) theta_a = Phi'^T r - Phi^T Phi' theta
            rhs0 = -q * sd
            rhs1 = rd - q * sdf
            det = n * sff - sf * sf
            dp = (sff * rhs0 - sf * rhs1) / det
            dq = (n * rhs1 - sf * rhs0) / det
            rd_a = s2y - dp * sd - p * s2 - dq * sdf - q * (s2f + sdd)
            r_aa = -2.0 * (dq * rd + q * rd_a)
        extra = {
            "curv_u": a * a * r_aa + a * grad_a,
            "dp_da": dp,
            "dq_da": dq,
            "s2": s2,
            "s2f": s2f,
            "s2d": s2d,
        }
    return Evaluation(
        a=a,
        p=p,
        q=q,
        rss=rss,
        grad_u=a * grad_a,
        hess_u=a * a * hess_a,
        n=n,
        sf=sf,
        sff=sff,
        sd=sd,
        sdf=sdf,
        sdd=sdd,
        **extra,
    )


def grid_rss(a_grid: np.ndarray, prob: Problem) -> np.ndarray:
    """RSS of every closure at every grid curvature, (N, K), one grid point at a time."""
    out = np.empty((prob.n.size, a_grid.size))
    zero = np.zeros_like(prob.n)
    for k, a in enumerate(a_grid):
        phi, _ = phi_and_dphi(a, prob.tau)
        out[:, k] = solve_pq(
            prob.n, zero, prob.syy, phi.sum(axis=1), _dot(phi, phi), _dot(phi, prob.yc)
        )[2]
    return out


def grid_basis(a_grid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The (M, K) basis of :func:`grid_rss_shared` for a shared time axis ``t``.

    Per grid curvature the basis is phi_a(t - t_min) where a x span < 1 and
    exp(-a (t - t_min)) elsewhere: both span the model space with the constant, and each is
    well conditioned in its range.
    """
    tau = t - float(np.nanmin(t))
    span = float(np.nanmax(tau)) if tau.size else 0.0
    phi, _ = phi_and_dphi(a_grid[None, :], tau[:, None])
    with np.errstate(under="ignore"):
        expo = np.exp(-a_grid[None, :] * tau[:, None])
    return np.where(a_grid[None, :] * span < 1.0, phi, expo)


def grid_rss_shared(
    a_grid: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    prob: Problem,
    basis: np.ndarray | None = None,
) -> np.ndarray:
    """RSS on the grid, (N, K), for closures sharing one time axis ``t`` (M,).

    Matrix products of the (N, M) data with the (M, K) basis of :func:`grid_basis` (pass it
    in to reuse it across chunks); when every closure has the same window, the sums of the
    basis alone are those of one row.
    """
    if basis is None:
        basis = grid_basis(a_grid, t)
    n = prob.n[:, None]
    if w.shape[0] > 1 and bool((w == w[0]).all()):  # one window for all: sums of one row
        w0 = w[0].astype(float)
        sf = (w0 @ basis)[None, :]
        sff = (w0 @ (basis * basis))[None, :]
    else:
        wf = w.astype(float)
        sf = wf @ basis
        sff = wf @ (basis * basis)
    sfy = prob.yc @ basis
    syy = prob.syy[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cff = sff - sf * sf / n
        rss = syy - sfy * sfy / cff
    rss = np.where(np.isfinite(rss) & (cff > 0), rss, syy)
    return np.maximum(rss, 0.0)


def default_grid(a_min: float, a_max: float, points: int = 48) -> np.ndarray:
    """Log-spaced curvature grid from a_min to a_max [s-1]."""
    return np.geomspace(a_min, a_max, points)
