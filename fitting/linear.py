"""Linear and quadratic fits of a closed-chamber trace, and initial values.

Mole fractions are in the gas's own unit, written ``mf`` in names: umol mol-1 for CO2,
nmol mol-1 for CH4 and N2O (see ``docs/nomenclature.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "LinearFit",
    "QuadraticFit",
    "fit_linear",
    "fit_quadratic",
    "intercept_at_start",
]


def _clean(elapsed_s: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(elapsed_s, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"elapsed_s and values differ in length ({t.size} and {y.size} samples)")
    keep = np.isfinite(t) & np.isfinite(y)
    return t[keep], y[keep]


def _nrmse(rmse: float, y: np.ndarray) -> float:
    span = float(np.ptp(y)) if y.size else 0.0
    return rmse / span if span > 0 else math.inf


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least-squares line through a trace.

    Attributes
    ----------
    slope_mf_s : float
        dC/dt [mf s-1].
    intercept_mf : float
        The line at elapsed time 0 [mf].
    slope_se_mf_s, intercept_se_mf : float
        Standard errors [mf s-1], [mf].
    r_squared : float
        Coefficient of determination [-].
    rmse_mf : float
        Root mean square residual, sqrt(RSS / n) [mf].
    nrmse : float
        rmse_mf divided by the range of the fitted values [-].
    n_points : int
    converged : bool
        False when the line is undetermined (fewer than 2 distinct times).
    message : str
    """

    slope_mf_s: float
    intercept_mf: float
    slope_se_mf_s: float
    intercept_se_mf: float
    r_squared: float
    rmse_mf: float
    nrmse: float
    n_points: int
    converged: bool
    message: str

    def curve_mf(self, elapsed_s: ArrayLike) -> np.ndarray:
        """The fitted line at ``elapsed_s`` [mf]."""
        return self.intercept_mf + self.slope_mf_s * np.asarray(elapsed_s, dtype=float)


def fit_linear(elapsed_s: ArrayLike, mole_fraction: ArrayLike) -> LinearFit:
    """Fit C(t) = C0 + b t by ordinary least squares.

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s].
    mole_fraction : array_like
        Mole fraction of the gas [mf]. Non-finite samples are ignored.

    Returns
    -------
    LinearFit

    Notes
    -----
    Time is centred before fitting, so the result does not depend on the time origin
    beyond the intercept. Standard errors are the usual OLS ones with n - 2 degrees of
    freedom.

    Examples
    --------
    The linear example of the gasfluxes package (Fuss 2023), time in hours, V/A = 0.3 m:

    >>> fit = fit_linear([0, 1/3, 2/3, 1], [320, 341, 352, 359])
    >>> round(fit.slope_mf_s * 0.3, 2), round(fit.slope_se_mf_s * 0.3, 6)
    (11.52, 2.028497)
    """
    t, y = _clean(elapsed_s, mole_fraction)
    n = t.size
    if n < 2 or np.ptp(t) == 0:
        return LinearFit(
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            n,
            False,
            f"too few points for a line ({n})",
        )
    t_mean = float(t.mean())
    y_mean = float(y.mean())
    tc = t - t_mean
    yc = y - y_mean
    stt = float(tc @ tc)
    slope = float(tc @ yc) / stt
    residual = yc - slope * tc
    rss = float(residual @ residual)
    tss = float(yc @ yc)
    intercept = y_mean - slope * t_mean
    if n > 2:
        s2 = rss / (n - 2)
        slope_se = math.sqrt(s2 / stt)
        intercept_se = math.sqrt(s2 * (1.0 / n + t_mean * t_mean / stt))
    else:
        slope_se = intercept_se = math.inf
    rmse = math.sqrt(rss / n)
    r2 = 1.0 - rss / tss if tss > 0 else (1.0 if rss == 0 else 0.0)
    return LinearFit(
        slope_mf_s=slope,
        intercept_mf=intercept,
        slope_se_mf_s=slope_se,
        intercept_se_mf=intercept_se,
        r_squared=r2,
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y),
        n_points=n,
        converged=True,
        message="" if n > 2 else "two points: no standard error",
    )


@dataclass(frozen=True)
class QuadraticFit:
    """C(t) = b0 + b1 (t - t0) + b2 (t - t0)^2, a curvature check.

    Attributes
    ----------
    slope_mf_s : float
        dC/dt at ``t0_s`` [mf s-1].
    curvature_mf_s2 : float
        b2 [mf s-2]; negative for a saturating rise.
    t0_s : float
        Where the slope is evaluated [s].
    r_squared, rmse_mf, nrmse, n_points, converged, message
        As in :class:`LinearFit`.
    """

    slope_mf_s: float
    slope_se_mf_s: float
    curvature_mf_s2: float
    value_at_t0_mf: float
    t0_s: float
    r_squared: float
    rmse_mf: float
    nrmse: float
    n_points: int
    converged: bool
    message: str

    def curve_mf(self, elapsed_s: ArrayLike) -> np.ndarray:
        d = np.asarray(elapsed_s, dtype=float) - self.t0_s
        return self.value_at_t0_mf + self.slope_mf_s * d + self.curvature_mf_s2 * d * d


def fit_quadratic(
    elapsed_s: ArrayLike, mole_fraction: ArrayLike, *, t0_s: float = 0.0
) -> QuadraticFit:
    """Fit a parabola and report its slope at ``t0_s`` (default: the closure).

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s].
    mole_fraction : array_like
        Mole fraction of the gas [mf].
    t0_s : float
        Time at which the slope is reported [s].

    Returns
    -------
    QuadraticFit

    Examples
    --------
    >>> t = np.arange(0.0, 121.0)
    >>> fit = fit_quadratic(t, 400 + 0.5 * t - 0.001 * t**2)
    >>> round(fit.slope_mf_s, 9), round(fit.curvature_mf_s2, 9)
    (0.5, -0.001)
    """
    t, y = _clean(elapsed_s, mole_fraction)
    n = t.size
    if n < 3 or np.unique(t).size < 3:
        nan = math.nan
        return QuadraticFit(
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
            f"too few points for a parabola ({n})",
        )
    centre = float(t.mean())
    scale = float(np.ptp(t)) or 1.0
    x = (t - centre) / scale
    design = np.column_stack([np.ones_like(x), x, x * x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    rss = float(residual @ residual)
    yc = y - y.mean()
    tss = float(yc @ yc)
    b2 = coef[2] / scale**2
    x0 = (t0_s - centre) / scale
    slope = (coef[1] + 2.0 * coef[2] * x0) / scale
    value = coef[0] + coef[1] * x0 + coef[2] * x0 * x0
    if n > 3:
        s2 = rss / (n - 3)
        cov = s2 * np.linalg.inv(design.T @ design)
        grad = np.array([0.0, 1.0, 2.0 * x0]) / scale
        slope_se = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    else:
        slope_se = math.inf
    rmse = math.sqrt(rss / n)
    return QuadraticFit(
        slope_mf_s=float(slope),
        slope_se_mf_s=slope_se,
        curvature_mf_s2=float(b2),
        value_at_t0_mf=float(value),
        t0_s=t0_s,
        r_squared=1.0 - rss / tss if tss > 0 else 1.0,
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y),
        n_points=n,
        converged=True,
        message="",
    )


def intercept_at_start(
    elapsed_s: ArrayLike,
    values: ArrayLike,
    *,
    window_s: float = 10.0,
    end_exclusive: bool = False,
) -> float:
    """Value at elapsed 0 from a line over the first ``window_s`` seconds of the closure.

    This is how LI-COR firmware takes the initial pressure, temperature, water vapour and
    mole fraction (P0, T0, W0, C'0): the intercept of an ordinary least-squares line over
    samples with 0 <= elapsed <= window_s (LI-8200, LI-8250), or 0 <= elapsed < window_s
    with ``end_exclusive`` (LI-8100A: its first ten 1 Hz samples).

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s]; samples before 0 are ignored.
    values : array_like
        Any quantity, in its own unit.
    window_s : float
        Length of the start window [s].
    end_exclusive : bool
        Leave out a sample at exactly ``window_s``.

    Returns
    -------
    float
        The intercept; the single value when only one sample is in the window.

    Raises
    ------
    ValueError
        When no finite sample lies in the window.

    Examples
    --------
    >>> intercept_at_start([0, 1, 2, 3, 20], [10.0, 10.5, 11.0, 11.5, 99.0], window_s=10)
    10.0
    """
    t, y = _clean(elapsed_s, values)
    keep = (t >= 0.0) & ((t < window_s) if end_exclusive else (t <= window_s))
    t, y = t[keep], y[keep]
    if t.size == 0:
        raise ValueError(f"no finite sample between elapsed 0 and {window_s:g} s")
    if t.size == 1 or np.ptp(t) == 0:
        return float(y.mean())
    return float(fit_linear(t, y).intercept_mf)
