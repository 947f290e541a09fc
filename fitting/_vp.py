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

import numpy as np

# |a * tau| below which phi and its derivative use their Taylor series (no cancellation).
_SERIES_LIMIT = 1e-4


def phi_and_dphi(a: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi_a(tau) = (1 - exp(-a tau)) / a and its derivative with respect to a.

    ``a`` broadcasts against ``tau`` (give it shape (N, 1) for per-closure curvature).
    """
    a = np.asarray(a, dtype=float)
    tau = np.asarray(tau, dtype=float)
    x = a * tau
    small = np.abs(x) < _SERIES_LIMIT
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.exp(-x)
        phi = np.where(small, tau * (1.0 - x / 2.0 + x * x / 6.0), -np.expm1(-x) / a)
        dphi = np.where(
            small,
            tau * tau * (-0.5 + x / 3.0 - x * x / 8.0),
            (tau * e - phi) / a,
        )
    return phi, dphi


@dataclass(frozen=True)
class Sums:
    """Weighted moments of one basis evaluation (each an (N,) array)."""

    n: np.ndarray
    sy: np.ndarray
    syy: np.ndarray
    sf: np.ndarray
    sff: np.ndarray
    sfy: np.ndarray


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
class Evaluation:
    """The profiled problem at one curvature per closure."""

    a: np.ndarray
    p: np.ndarray
    q: np.ndarray
    rss: np.ndarray
    grad_u: np.ndarray  # dR/du, u = ln a
    hess_u: np.ndarray  # Gauss-Newton d2R/du2 (>= 0)


def evaluate(a: np.ndarray, tau: np.ndarray, y: np.ndarray, w: np.ndarray) -> Evaluation:
    """Profile (p, q), the RSS and its derivatives in u = ln a, for one a per closure.

    ``y`` should be centred per closure (subtract the window mean) for accuracy.
    """
    a = np.asarray(a, dtype=float)
    phi, dphi = phi_and_dphi(a[:, None], tau)
    wphi = w * phi
    wdphi = w * dphi
    n = w.sum(axis=1)
    sy = (w * y).sum(axis=1)
    syy = (w * y * y).sum(axis=1)
    sf = wphi.sum(axis=1)
    sff = (wphi * phi).sum(axis=1)
    sfy = (wphi * y).sum(axis=1)
    p, q, rss = solve_pq(n, sy, syy, sf, sff, sfy)
    sd = wdphi.sum(axis=1)
    sdd = (wdphi * dphi).sum(axis=1)
    sdf = (wdphi * phi).sum(axis=1)
    sdy = (wdphi * y).sum(axis=1)
    # sum(w r dphi) with r = y - p - q phi
    rd = sdy - p * sd - q * sdf
    grad_a = -2.0 * q * rd
    # || P_perp (q dphi) ||^2: project dphi on the orthogonal complement of span{1, phi}
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_f = sf / n
        cff = sff - sf * mean_f
        cdf = sdf - sd * mean_f
        cdd = sdd - sd * sd / n
        perp = np.maximum(cdd - cdf * cdf / cff, 0.0)
    hess_a = 2.0 * q * q * perp
    return Evaluation(a=a, p=p, q=q, rss=rss, grad_u=a * grad_a, hess_u=a * a * hess_a)


def grid_rss(a_grid: np.ndarray, tau: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """RSS of every closure at every grid curvature: (N, K).

    With a time axis shared by all closures (``tau`` of shape (M,)) this is three matrix
    products of the (N, M) data with the (M, K) basis; otherwise a loop over the grid.
    """
    n = w.sum(axis=1)[:, None]
    wy = w * y
    sy = wy.sum(axis=1)[:, None]
    syy = (wy * y).sum(axis=1)[:, None]
    if tau.ndim == 1:
        phi, _ = phi_and_dphi(a_grid[None, :], tau[:, None])  # (M, K)
        sf = w @ phi
        sff = w @ (phi * phi)
        sfy = wy @ phi
        return solve_pq(n, sy, syy, sf, sff, sfy)[2]
    out = np.empty((y.shape[0], a_grid.size))
    for k, a in enumerate(a_grid):
        phi, _ = phi_and_dphi(a, tau)
        wphi = w * phi
        out[:, k] = solve_pq(
            n[:, 0],
            sy[:, 0],
            syy[:, 0],
            wphi.sum(axis=1),
            (wphi * phi).sum(axis=1),
            (wphi * y).sum(axis=1),
        )[2]
    return out


def default_grid(a_min: float, a_max: float, points: int = 48) -> np.ndarray:
    """Log-spaced curvature grid from a_min to a_max [s-1]."""
    return np.geomspace(a_min, a_max, points)
