"""Agreement between two measurement systems: the estimators and the block bootstrap by day.

Pure functions over arrays returning frozen dataclasses (no I/O, no logging). Side ``a`` is
the reference (x), side ``b`` the system compared with it (y); every difference is
``b - a``. Units are those of the fluxes given (e.g. umol m-2 s-1); ratios and correlations
are dimensionless. ``docs/agreement.md`` gives each estimator's formula, when to use it,
its reference and how its confidence interval is computed.

:func:`agreement` computes everything at once, each statistic with a percentile confidence
interval from a seeded block bootstrap (whole days resampled, ``blocks`` = the local
standard date of each pair) and, where one exists, the estimator's own analytic interval.
The bootstrap is vectorised: each block is reduced to its sufficient statistics (sums of
x, y, x², y², xy, \\|y - x\\|, and the same on logarithms) and a replicate is a row of a
matrix product of block counts with those sums, so 1,000 replicates of 1.1 million pairs
cost little more than one pass over the data. Passing-Bablok, the one rank-based
estimator, gets its block-bootstrap interval from the same counts through the rank form of
its own interval (see :func:`passing_bablok`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

__all__ = [
    "DEFAULT_SEED",
    "MIN_PAIRS",
    "Agreement",
    "BlandAltman",
    "Concordance",
    "Estimate",
    "Regression",
    "agreement",
    "bland_altman",
    "block_bootstrap_counts",
    "breakdown",
    "ccc",
    "deming",
    "error_ratio_from_se",
    "flux_class",
    "hour_class",
    "log_ratio_bland_altman",
    "mae",
    "mean_bias",
    "month_class",
    "ols",
    "passing_bablok",
    "pearson_r",
    "proportional_bias",
    "relative_bias",
    "rmsd",
    "sma",
    "value_class",
]

#: Fewest finite pairs any estimator accepts (a line and a residual variance need 3).
MIN_PAIRS = 3
#: Seed of the generator used when the caller passes ``rng=None`` (results reproducible).
DEFAULT_SEED = 0
#: Passing-Bablok uses all n (n - 1) / 2 pairwise slopes up to this many points ...
PB_EXACT_MAX = 2000
#: ... and above it this many random pairs of points (see :func:`passing_bablok`).
PB_RANDOM_PAIRS = 4_000_000
#: Partners per point for the Passing-Bablok influence values above ``PB_EXACT_MAX``.
PB_REFERENCE_POINTS = 512
#: Up to this many points the Passing-Bablok bootstrap refits every replicate.
PB_DIRECT_BOOT_MAX = 300
#: Without ``blocks`` each pair is its own block up to this many pairs; above, consecutive
#: pairs are dealt into this many equal groups.
IID_BLOCKS_MAX = 20_000

CI = tuple[float, float]

# Columns of the per-pair (and per-block) sufficient statistics.
_N, _X, _Y, _XX, _YY, _XY, _AD, _NL, _LA, _LB, _LAA, _LBB, _LAB, _PHI = range(14)
_NCOL = 14


# --------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One statistic with its confidence interval.

    Attributes
    ----------
    value : float
        The estimate, in the unit of the statistic (flux unit for bias, RMSD, MAE and the
        limits of agreement; dimensionless for ratios and correlations). NaN when it is
        undefined for these data (e.g. r of a constant series).
    ci : tuple of float or None
        ``(lower, upper)``: the interval :attr:`ci_method` names (the block bootstrap in
        :func:`agreement`, the analytic one from the single-estimator functions); None
        when there is none.
    method : str
        The estimator.
    n : int
        Pairs used.
    ci_method : str or None
        How :attr:`ci` was computed.
    ci_analytic : tuple of float or None
        The estimator's own (analytic) interval, where one exists.
    analytic_ci_method : str or None
        How :attr:`ci_analytic` was computed.
    """

    value: float
    ci: CI | None
    method: str
    n: int = 0
    ci_method: str | None = None
    ci_analytic: CI | None = None
    analytic_ci_method: str | None = None


@dataclass(frozen=True)
class Regression:
    """A straight line b = intercept + slope a, with confidence intervals.

    Attributes
    ----------
    slope : float
        [-] (unit of b per unit of a).
    intercept : float
        [unit of b].
    slope_ci, intercept_ci : tuple of float or None
        The intervals :attr:`ci_method` names.
    n : int
        Pairs used.
    method : str
        ``"deming"``, ``"sma"``, ``"passing-bablok"``, ``"ols"``, or a proportional-bias
        regression.
    ci_method : str or None
    slope_ci_analytic, intercept_ci_analytic : tuple of float or None
        The estimator's own interval (jackknife for Deming, Warton et al. for SMA, the rank
        interval for Passing-Bablok, t for OLS).
    analytic_ci_method : str or None
    error_ratio : float or None
        Deming only: lambda = var(error of b) / var(error of a) [-].
    note : str
        How the estimate was computed when that is not the textbook way (subsampling).
    """

    slope: float
    intercept: float
    slope_ci: CI | None
    intercept_ci: CI | None
    n: int
    method: str
    ci_method: str | None = None
    slope_ci_analytic: CI | None = None
    intercept_ci_analytic: CI | None = None
    analytic_ci_method: str | None = None
    error_ratio: float | None = None
    note: str = ""

    def predict(self, a: ArrayLike) -> np.ndarray:
        """The line at ``a`` [unit of b]."""
        return self.intercept + self.slope * np.asarray(a, dtype=float)


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman mean difference and limits of agreement.

    Attributes
    ----------
    mean_difference : Estimate
        Mean of the differences (b - a, or ln(b / a) on the log scale).
    sd_difference : float
        Their standard deviation (n - 1 denominator).
    loa_lower, loa_upper : Estimate
        mean_difference -/+ k sd_difference.
    k : float
        The multiplier (1.96 for 95 % limits; Bland & Altman 1986 used 2).
    n : int
        Pairs used.
    scale : str
        ``"difference"`` (b - a) or ``"log ratio"`` (ln(b / a)).
    n_excluded : int
        Pairs left out (on the log scale: those where a or b is not positive).
    """

    mean_difference: Estimate
    sd_difference: float
    loa_lower: Estimate
    loa_upper: Estimate
    k: float
    n: int
    scale: str
    n_excluded: int = 0


@dataclass(frozen=True)
class Concordance:
    """Lin's concordance correlation coefficient and its two parts.

    Attributes
    ----------
    ccc : Estimate
        rho_c = 2 s_ab / (s_a² + s_b² + (mean_a - mean_b)²) [-].
    precision : Estimate
        Pearson r, the precision part [-].
    accuracy : Estimate
        C_b = rho_c / r, the accuracy (bias correction) part, 0 < C_b <= 1 [-].
    scale_shift : float
        v = s_a / s_b [-].
    location_shift : float
        u = (mean_a - mean_b) / sqrt(s_a s_b) [-].
    n : int
    """

    ccc: Estimate
    precision: Estimate
    accuracy: Estimate
    scale_shift: float
    location_shift: float
    n: int


# --------------------------------------------------------------------------------------
# Input handling and sufficient statistics
# --------------------------------------------------------------------------------------


def _pair(a: ArrayLike, b: ArrayLike, name_a: str = "a", name_b: str = "b"):
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{name_a} and {name_b} differ in length ({x.size} and {y.size} values)")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], int(keep.size - keep.sum())


def _require(n: int, n_dropped: int, what: str, minimum: int = MIN_PAIRS) -> None:
    if n < minimum:
        dropped = f" ({n_dropped} non-finite pairs dropped)" if n_dropped else ""
        raise ValueError(f"{what} needs at least {minimum} finite pairs; got {n}{dropped}")


def _columns(x: np.ndarray, y: np.ndarray, shift: float, log_shift: float) -> np.ndarray:
    """Per-pair sufficient statistics (n, 14); x and y are shifted by the same constant."""
    n = x.size
    out = np.zeros((n, _NCOL))
    xs = x - shift
    ys = y - shift
    out[:, _N] = 1.0
    out[:, _X] = xs
    out[:, _Y] = ys
    out[:, _XX] = xs * xs
    out[:, _YY] = ys * ys
    out[:, _XY] = xs * ys
    out[:, _AD] = np.abs(y - x)
    pos = (x > 0) & (y > 0)
    la = np.log(x[pos]) - log_shift
    lb = np.log(y[pos]) - log_shift
    out[pos, _NL] = 1.0
    out[pos, _LA] = la
    out[pos, _LB] = lb
    out[pos, _LAA] = la * la
    out[pos, _LBB] = lb * lb
    out[pos, _LAB] = la * lb
    return out


def _shifts(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Common shifts that keep the moment sums well conditioned."""
    shift = float(np.mean(x))
    pos = (x > 0) & (y > 0)
    log_shift = float(np.mean(np.log(x[pos]))) if pos.any() else 0.0
    return shift, log_shift


def _moments(t: np.ndarray, shift: float, log_shift: float) -> dict[str, np.ndarray]:
    """Every moment-based statistic from sums ``t`` (..., 14); vectorised over rows."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = t[..., _N]
        mx = t[..., _X] / n
        my = t[..., _Y] / n
        # population (1/n) central moments
        sxx = np.maximum(t[..., _XX] / n - mx * mx, 0.0)
        syy = np.maximum(t[..., _YY] / n - my * my, 0.0)
        sxy = t[..., _XY] / n - mx * my
        sdd = np.maximum(sxx + syy - 2.0 * sxy, 0.0)
        out: dict[str, np.ndarray] = {"n": n}
        out["mean_a"] = mx + shift
        out["mean_b"] = my + shift
        out["bias"] = my - mx
        out["msd"] = (t[..., _XX] - 2.0 * t[..., _XY] + t[..., _YY]) / n
        out["rmsd"] = np.sqrt(np.maximum(out["msd"], 0.0))
        out["mae"] = t[..., _AD] / n
        out["sd_d"] = np.sqrt(sdd * n / (n - 1.0))
        out["var_a"] = sxx * n / (n - 1.0)
        out["var_b"] = syy * n / (n - 1.0)
        out["r"] = sxy / np.sqrt(sxx * syy)
        out["ccc"] = 2.0 * sxy / (sxx + syy + (mx - my) ** 2)
        out["ccc_accuracy"] = out["ccc"] / out["r"]
        out["sxx"], out["syy"], out["sxy"] = sxx, syy, sxy
        # OLS of b on a
        ols_slope = sxy / sxx
        out["ols_slope"] = ols_slope
        out["ols_intercept"] = out["mean_b"] - ols_slope * out["mean_a"]
        # SMA
        sma_slope = np.sign(sxy) * np.sqrt(syy / sxx)
        out["sma_slope"] = sma_slope
        out["sma_intercept"] = out["mean_b"] - sma_slope * out["mean_a"]
        # proportional bias: d = b - a on m = (a + b) / 2
        smm = (sxx + 2.0 * sxy + syy) / 4.0
        sdm = (syy - sxx) / 2.0
        pb_slope = sdm / smm
        out["prop_slope"] = pb_slope
        out["prop_intercept"] = out["bias"] - pb_slope * 0.5 * (out["mean_a"] + out["mean_b"])
        out["smm"], out["sdm"], out["sdd"] = smm, sdm, sdd
        # log scale: l = ln b - ln a on positive pairs
        nl = t[..., _NL]
        mla = t[..., _LA] / nl
        mlb = t[..., _LB] / nl
        vla = np.maximum(t[..., _LAA] / nl - mla * mla, 0.0)
        vlb = np.maximum(t[..., _LBB] / nl - mlb * mlb, 0.0)
        cl = t[..., _LAB] / nl - mla * mlb
        sll = np.maximum(vla + vlb - 2.0 * cl, 0.0)
        out["n_log"] = nl
        out["log_mean"] = mlb - mla
        out["log_sd"] = np.sqrt(sll * nl / (nl - 1.0))
        lmm = (vla + 2.0 * cl + vlb) / 4.0
        lslope = ((vlb - vla) / 2.0) / lmm
        out["log_prop_slope"] = lslope
        out["log_prop_intercept"] = out["log_mean"] - lslope * (0.5 * (mla + mlb) + log_shift)
        out["lmm"], out["sll"] = lmm, sll
    return out


def _deming_slope(sxx, syy, sxy, lam):
    """Deming slope for lambda = var(error of y) / var(error of x)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = syy - lam * sxx
        return (diff + np.sqrt(diff * diff + 4.0 * lam * sxy * sxy)) / (2.0 * sxy)


def _relative(m: dict[str, np.ndarray], relative_to: str) -> np.ndarray:
    ref = {
        "a": m["mean_a"],
        "b": m["mean_b"],
        "mean": 0.5 * (m["mean_a"] + m["mean_b"]),
    }[relative_to]
    with np.errstate(divide="ignore", invalid="ignore"):
        return m["bias"] / ref


def _check_relative_to(relative_to: str) -> None:
    if relative_to not in ("a", "b", "mean"):
        raise ValueError(f"relative_to must be 'a', 'b' or 'mean', not {relative_to!r}")


def _finite(value: Any) -> float:
    v = float(value)
    return v if math.isfinite(v) else math.nan


def _ci(lo: float, hi: float) -> CI | None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (float(min(lo, hi)), float(max(lo, hi)))


def _t(alpha: float, df: float) -> float:
    return float(sps.t.ppf(1.0 - alpha / 2.0, df)) if df > 0 else math.inf


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


# --------------------------------------------------------------------------------------
# Block bootstrap
# --------------------------------------------------------------------------------------


def block_bootstrap_counts(
    n_blocks: int, n_boot: int, rng: np.random.Generator, *, chunk_cells: int = 2_000_000
) -> Iterator[np.ndarray]:
    """Counts of each block in each bootstrap replicate, in chunks of replicates.

    Each replicate draws ``n_blocks`` blocks with replacement (equal probabilities), so a
    row of counts sums to ``n_blocks``.

    Parameters
    ----------
    n_blocks : int
        Blocks to resample (days).
    n_boot : int
        Replicates.
    rng : numpy.random.Generator
        The seeded generator; the counts depend only on it, ``n_blocks`` and ``n_boot``.
    chunk_cells : int
        Largest chunk, in replicates x blocks.

    Yields
    ------
    numpy.ndarray
        (replicates in this chunk, n_blocks) float counts.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> counts = np.vstack(list(block_bootstrap_counts(5, 3, rng)))
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    per = max(1, chunk_cells // max(n_blocks, 1))
    done = 0
    while done < n_boot:
        m = min(per, n_boot - done)
        draws = rng.integers(0, n_blocks, size=(m, n_blocks))
        draws += (np.arange(m) * n_blocks)[:, None]
        counts = np.bincount(draws.ravel(), minlength=m * n_blocks).reshape(m, n_blocks)
        yield counts.astype(float)
        done += m


def _percentile(values: np.ndarray, alpha: float) -> CI | None:
    """Percentile interval (Efron) of the finite replicates; None if too few are finite."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < max(10, 0.5 * np.asarray(values).size):
        return None
    lo, hi = np.quantile(v, [alpha / 2.0, 1.0 - alpha / 2.0])
    return _ci(float(lo), float(hi))


def _block_codes(blocks: ArrayLike | None, n: int) -> tuple[np.ndarray, int, str]:
    """Integer block codes (0..G-1) of kept pairs, G, and what the blocks are."""
    if blocks is not None:
        codes, uniques = pd.factorize(pd.Series(np.asarray(blocks, dtype=object)), sort=True)
        return np.asarray(codes, dtype=np.int64), len(uniques), "blocks"
    if n <= IID_BLOCKS_MAX:
        return np.arange(n, dtype=np.int64), n, "pairs"
    codes = (np.arange(n, dtype=np.int64) * IID_BLOCKS_MAX) // n
    return codes, IID_BLOCKS_MAX, f"{IID_BLOCKS_MAX} groups of consecutive pairs"


def _block_sums(cols: np.ndarray, codes: np.ndarray, n_blocks: int) -> np.ndarray:
    out = np.empty((n_blocks, cols.shape[1]))
    for j in range(cols.shape[1]):
        out[:, j] = np.bincount(codes, weights=cols[:, j], minlength=n_blocks)
    return out


# --------------------------------------------------------------------------------------
# Single estimators
# --------------------------------------------------------------------------------------


def _all_moments(a: ArrayLike, b: ArrayLike, what: str):
    x, y, dropped = _pair(a, b)
    _require(x.size, dropped, what)
    shift, log_shift = _shifts(x, y)
    m = _moments(_columns(x, y, shift, log_shift).sum(axis=0), shift, log_shift)
    return x, y, {k: float(v) for k, v in m.items()}


def mean_bias(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05) -> Estimate:
    """Mean bias, mean(b - a), with its t interval.

    Parameters
    ----------
    a, b : array_like
        Paired values of the reference and the compared system [flux unit]. Pairs where
        either is not finite are dropped.
    alpha : float
        1 - confidence level.

    Returns
    -------
    Estimate
        [flux unit]; ``ci`` = mean ± t(1 - alpha/2, n - 1) sd / sqrt(n).

    Notes
    -----
    The Bland-Altman "mean difference" (Bland & Altman 1986,
    doi:10.1016/S0140-6736(86)90837-8). The t interval assumes independent pairs; for
    autocorrelated series use the block bootstrap of :func:`agreement`.

    Examples
    --------
    >>> mean_bias([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.0, 5.0]).value
    0.5
    """
    x, _, m = _all_moments(a, b, "mean_bias")
    half = _t(alpha, m["n"] - 1) * m["sd_d"] / math.sqrt(m["n"])
    ci = _ci(m["bias"] - half, m["bias"] + half)
    return Estimate(m["bias"], ci, "mean(b - a)", x.size, "t", ci, "t")


def relative_bias(a: ArrayLike, b: ArrayLike, *, relative_to: str = "a") -> Estimate:
    """Relative bias, mean(b - a) / mean(ref), with ref = a (default), b or (a + b) / 2.

    Parameters
    ----------
    a, b : array_like
        Paired values [flux unit].
    relative_to : {"a", "b", "mean"}
        The denominator: mean(a), mean(b) or mean((a + b) / 2).

    Returns
    -------
    Estimate
        [-] (multiply by 100 for percent); no analytic interval (use :func:`agreement`).

    Notes
    -----
    A ratio of means, not a mean of ratios, so that small fluxes do not dominate it; it is
    the relative offset of the totals (e.g. -0.13 for a chamber that underestimates by
    13 %, Pumpanen et al. 2004, doi:10.1016/j.agrformet.2003.12.001).

    Examples
    --------
    >>> relative_bias([10.0, 20.0, 30.0], [9.0, 17.0, 26.0]).value
    -0.133...
    """
    _check_relative_to(relative_to)
    x, _, m = _all_moments(a, b, "relative_bias")
    value = float(_relative({k: np.float64(v) for k, v in m.items()}, relative_to))
    return Estimate(_finite(value), None, f"mean(b - a) / mean({relative_to})", x.size)


def rmsd(a: ArrayLike, b: ArrayLike) -> Estimate:
    """Root mean square difference, sqrt(mean((b - a)²)) [flux unit].

    Includes the bias: RMSD² = bias² + ((n - 1) / n) sd(b - a)².

    Examples
    --------
    >>> rmsd([0.0, 0.0, 0.0, 0.0], [3.0, -3.0, 3.0, -3.0]).value
    3.0
    """
    x, _, m = _all_moments(a, b, "rmsd")
    return Estimate(_finite(m["rmsd"]), None, "sqrt(mean((b - a)^2))", x.size)


def mae(a: ArrayLike, b: ArrayLike) -> Estimate:
    """Mean absolute difference, mean(|b - a|) [flux unit].

    Examples
    --------
    >>> mae([0.0, 0.0, 1.0], [3.0, -3.0, 1.0]).value
    2.0
    """
    x, _, m = _all_moments(a, b, "mae")
    return Estimate(_finite(m["mae"]), None, "mean(|b - a|)", x.size)


def pearson_r(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05) -> Estimate:
    """Pearson correlation with its Fisher z interval.

    Returns
    -------
    Estimate
        [-]; ``ci`` = tanh(atanh(r) ± z(1 - alpha/2) / sqrt(n - 3)) (Fisher 1921).

    Examples
    --------
    >>> round(pearson_r([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]).value, 4)
    0.7746
    """
    x, _, m = _all_moments(a, b, "pearson_r")
    ci = _fisher_ci(m["r"], x.size, alpha)
    return Estimate(_finite(m["r"]), ci, "pearson", x.size, "fisher z", ci, "fisher z")


def _fisher_ci(r: float, n: int, alpha: float) -> CI | None:
    if not math.isfinite(r) or n <= 3 or abs(r) >= 1.0:
        return None
    z = math.atanh(r)
    half = _z(alpha) / math.sqrt(n - 3)
    return _ci(math.tanh(z - half), math.tanh(z + half))


def _lin_ci(m: dict[str, float], n: int, alpha: float) -> CI | None:
    """Lin (1989, corrected 2000) asymptotic interval of rho_c on the Fisher z scale."""
    rc, r = m["ccc"], m["r"]
    if not (math.isfinite(rc) and math.isfinite(r)) or n <= 2 or abs(rc) >= 1.0 or r == 0:
        return None
    u2 = (m["mean_a"] - m["mean_b"]) ** 2 / math.sqrt(m["sxx"] * m["syy"])
    one = 1.0 - rc * rc
    var_z = (
        (1.0 - r * r) * rc * rc / (one * r * r)
        + 2.0 * rc**3 * (1.0 - rc) * u2 / (r * one * one)
        - rc**4 * u2 * u2 / (2.0 * r * r * one * one)
    ) / (n - 2)
    if not var_z > 0:
        return None
    z = math.atanh(rc)
    half = _z(alpha) * math.sqrt(var_z)
    return _ci(math.tanh(z - half), math.tanh(z + half))


def ccc(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05) -> Concordance:
    """Lin's concordance correlation coefficient, its precision (r) and accuracy (C_b).

    Parameters
    ----------
    a, b : array_like
        Paired values [flux unit].
    alpha : float
        1 - confidence level.

    Returns
    -------
    Concordance
        ``ccc.ci`` is Lin's asymptotic interval: Z = atanh(rho_c) ± z(1 - alpha/2) sd(Z),
        with the variance of Z of Lin (1989) eq. 7 as corrected in Lin (2000).

    Notes
    -----
    rho_c = 2 s_ab / (s_a² + s_b² + (mean_a - mean_b)²) with 1/n moments (Lin's
    estimator), = r C_b with C_b = 2 / (v + 1/v + u²), v = s_a / s_b,
    u = (mean_a - mean_b) / sqrt(s_a s_b). Lin LI (1989) A concordance correlation
    coefficient to evaluate reproducibility. Biometrics 45:255-268, doi:10.2307/2532051;
    Lin LI (2000) A note on the concordance correlation coefficient. Biometrics 56:324-325,
    doi:10.1111/j.0006-341X.2000.00324.x.

    Examples
    --------
    >>> c = ccc([1.0, 2.0, 3.0, 4.0], [1.1, 2.1, 2.9, 4.2])
    >>> round(c.ccc.value, 4), round(c.precision.value, 4), round(c.accuracy.value, 4)
    (0.9931, 0.9954, 0.9977)
    """
    x, _, m = _all_moments(a, b, "ccc")
    n = x.size
    ci = _lin_ci(m, n, alpha)
    r_ci = _fisher_ci(m["r"], n, alpha)
    sa, sb = math.sqrt(m["sxx"]), math.sqrt(m["syy"])
    v = sa / sb if sb > 0 else math.nan
    u = (m["mean_a"] - m["mean_b"]) / math.sqrt(sa * sb) if sa * sb > 0 else math.nan
    return Concordance(
        Estimate(_finite(m["ccc"]), ci, "lin ccc", n, "lin z", ci, "lin z"),
        Estimate(_finite(m["r"]), r_ci, "pearson", n, "fisher z", r_ci, "fisher z"),
        Estimate(_finite(m["ccc_accuracy"]), None, "lin C_b", n),
        _finite(v),
        _finite(u),
        n,
    )


def _loa_ci(bias: float, sd: float, n: int, k: float, alpha: float, method: str):
    """Approximate intervals of the limits (Bland & Altman 1986 or 1999)."""
    t = _t(alpha, n - 1)
    if method == "1986":
        se = math.sqrt(3.0 * sd * sd / n)
    elif method == "1999":
        se = sd * math.sqrt(1.0 / n + k * k / (2.0 * (n - 1)))
    else:
        raise ValueError(f"loa_ci must be '1986' or '1999', not {method!r}")
    lo, hi = bias - k * sd, bias + k * sd
    return _ci(lo - t * se, lo + t * se), _ci(hi - t * se, hi + t * se), se


def bland_altman(
    a: ArrayLike,
    b: ArrayLike,
    *,
    k: float = 1.96,
    loa_ci: str = "1999",
    alpha: float = 0.05,
) -> BlandAltman:
    """Bland-Altman mean difference and limits of agreement, with approximate intervals.

    Parameters
    ----------
    a, b : array_like
        Paired values [flux unit]; differences are b - a.
    k : float
        Limits at mean ± k sd (1.96: 95 % limits; the 1986 paper used 2).
    loa_ci : {"1999", "1986"}
        Standard error of a limit: ``"1999"`` sd sqrt(1/n + k² / (2 (n - 1))) (Bland &
        Altman 1999 section 2.2); ``"1986"`` sqrt(3 sd² / n) (Bland & Altman 1986).
        Either way the interval is limit ± t(1 - alpha/2, n - 1) se.
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    BlandAltman
        [flux unit]. The mean difference has its t interval.

    Notes
    -----
    Bland JM, Altman DG (1986) Statistical methods for assessing agreement between two
    methods of clinical measurement. Lancet 1:307-310, doi:10.1016/S0140-6736(86)90837-8;
    Bland JM, Altman DG (1999) Measuring agreement in method comparison studies. Stat
    Methods Med Res 8:135-160, doi:10.1177/096228029900800204.

    Examples
    --------
    The peak expiratory flow example of Bland & Altman (1986), first readings [l/min]:

    >>> wright = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267,
    ...           478, 178, 423, 427]
    >>> mini = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260,
    ...         477, 259, 350, 451]
    >>> ba = bland_altman(mini, wright, k=2, loa_ci="1986")
    >>> round(ba.mean_difference.value, 1), round(ba.sd_difference, 1)
    (-2.1, 38.8)
    >>> round(ba.loa_lower.value, 1), round(ba.loa_upper.value, 1)
    (-79.6, 75.4)
    """
    x, y, dropped = _pair(a, b)
    _require(x.size, dropped, "bland_altman")
    d = y - x
    return _bland_altman_of(d, k, loa_ci, alpha, "difference", 0)


def _bland_altman_of(d, k, loa_ci, alpha, scale, excluded) -> BlandAltman:
    n = d.size
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    half = _t(alpha, n - 1) * sd / math.sqrt(n)
    bias_ci = _ci(bias - half, bias + half)
    lo_ci, hi_ci, _ = _loa_ci(bias, sd, n, k, alpha, loa_ci)
    how = f"bland-altman {loa_ci}"
    return BlandAltman(
        Estimate(bias, bias_ci, f"mean {scale}", n, "t", bias_ci, "t"),
        sd,
        Estimate(bias - k * sd, lo_ci, "lower limit of agreement", n, how, lo_ci, how),
        Estimate(bias + k * sd, hi_ci, "upper limit of agreement", n, how, hi_ci, how),
        float(k),
        n,
        scale,
        excluded,
    )


def log_ratio_bland_altman(
    a: ArrayLike, b: ArrayLike, *, k: float = 1.96, loa_ci: str = "1999", alpha: float = 0.05
) -> BlandAltman:
    """Bland-Altman analysis of ln(b / a), for differences that grow with the flux.

    Only pairs where both values are positive are used; :attr:`BlandAltman.n_excluded`
    says how many were left out. exp() of the mean and limits are ratios b / a.

    Notes
    -----
    Bland & Altman (1999) section 3.2 (logarithmic transformation),
    doi:10.1177/096228029900800204.

    Examples
    --------
    >>> ba = log_ratio_bland_altman([1.0, 2.0, 4.0, -1.0], [0.9, 1.8, 3.6, 0.5])
    >>> round(math.exp(ba.mean_difference.value), 3), ba.n, ba.n_excluded
    (0.9, 3, 1)
    """
    x, y, dropped = _pair(a, b)
    pos = (x > 0) & (y > 0)
    _require(int(pos.sum()), dropped, "log_ratio_bland_altman (positive pairs)")
    d = np.log(y[pos]) - np.log(x[pos])
    return _bland_altman_of(d, k, loa_ci, alpha, "log ratio", int(x.size - pos.sum()))


def _ols_line(x: np.ndarray, y: np.ndarray, alpha: float, method: str) -> Regression:
    n = x.size
    mx, my = float(x.mean()), float(y.mean())
    xc = x - mx
    sxx = float(xc @ xc)
    if sxx == 0:
        return Regression(math.nan, math.nan, None, None, n, method, note="a is constant")
    slope = float(xc @ (y - my)) / sxx
    intercept = my - slope * mx
    resid = y - intercept - slope * x
    s2 = float(resid @ resid) / (n - 2) if n > 2 else math.inf
    t = _t(alpha, n - 2)
    se_b = math.sqrt(s2 / sxx)
    se_a = math.sqrt(s2 * (1.0 / n + mx * mx / sxx))
    sci = _ci(slope - t * se_b, slope + t * se_b)
    ici = _ci(intercept - t * se_a, intercept + t * se_a)
    return Regression(slope, intercept, sci, ici, n, method, "t", sci, ici, "t")


def ols(x: ArrayLike, y: ArrayLike, *, alpha: float = 0.05) -> Regression:
    """Ordinary least squares of y (side b) on x (side a), for reference.

    Biased towards 0 when x has measurement error (regression dilution), which is why
    Deming, SMA and Passing-Bablok are the comparison lines.

    Returns
    -------
    Regression
        slope [-], intercept [unit of y], usual t intervals with n - 2 degrees of freedom.

    Examples
    --------
    >>> fit = ols([1.0, 2.0, 3.0, 4.0], [2.1, 3.9, 6.1, 7.9])
    >>> round(fit.slope, 2), round(fit.intercept, 2)
    (1.96, 0.1)
    """
    x_, y_, dropped = _pair(x, y, "x", "y")
    _require(x_.size, dropped, "ols")
    return _ols_line(x_, y_, alpha, "ols")


def proportional_bias(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05) -> Regression:
    """Regression of the differences b - a on the means (a + b) / 2 (OLS, t intervals).

    A slope whose interval excludes 0 means the bias changes with the flux (proportional
    bias); Bland & Altman (1999) section 3.1, doi:10.1177/096228029900800204.

    Examples
    --------
    >>> fit = proportional_bias([1.0, 2.0, 3.0, 4.0], [1.1, 2.2, 3.3, 4.4])
    >>> round(fit.slope, 4)
    0.0952
    """
    x, y, dropped = _pair(a, b)
    _require(x.size, dropped, "proportional_bias")
    return _ols_line(0.5 * (x + y), y - x, alpha, "difference on mean")


def error_ratio_from_se(se_a: ArrayLike | None, se_b: ArrayLike | None) -> tuple[float, str]:
    """Deming error-variance ratio lambda = mean(se_b²) / mean(se_a²), or 1.

    Parameters
    ----------
    se_a, se_b : array_like or None
        Reported standard errors of each flux [flux unit]; non-finite and negative values
        are ignored.

    Returns
    -------
    (float, str)
        lambda [-] = var(error of b) / var(error of a), and where it came from
        (``"flux standard errors"`` or ``"default 1 (...)"``).

    Examples
    --------
    >>> error_ratio_from_se([0.1, 0.1], [0.2, 0.2])
    (4.0..., 'flux standard errors')
    >>> error_ratio_from_se(None, [0.2])
    (1.0, 'default 1 (no standard errors for a)')
    """
    for name, se in (("a", se_a), ("b", se_b)):
        if se is None:
            return 1.0, f"default 1 (no standard errors for {name})"
        v = np.asarray(se, dtype=float).ravel()
        if not (np.isfinite(v) & (v >= 0)).any():
            return 1.0, f"default 1 (no finite standard errors for {name})"
    va = np.asarray(se_a, dtype=float).ravel()
    vb = np.asarray(se_b, dtype=float).ravel()
    va = va[np.isfinite(va) & (va >= 0)]
    vb = vb[np.isfinite(vb) & (vb >= 0)]
    num, den = float(np.mean(vb * vb)), float(np.mean(va * va))
    lam = num / den if den > 0 else math.inf
    if not (math.isfinite(lam) and lam > 0):
        return 1.0, "default 1 (a standard error mean is zero)"
    return lam, "flux standard errors"


def _jackknife(theta_full: float, theta_minus: np.ndarray, alpha: float, df: float):
    g = theta_minus.size
    th = theta_minus[np.isfinite(theta_minus)]
    if th.size < 2 or not math.isfinite(theta_full):
        return None, math.nan
    se = math.sqrt((g - 1.0) / g * float(np.sum((th - th.mean()) ** 2)))
    t = _t(alpha, df)
    return _ci(theta_full - t * se, theta_full + t * se), se


def _deming_from_sums(total, minus, shift, lam, alpha, df):
    m = _moments(total, shift, 0.0)
    slope = float(_deming_slope(m["sxx"], m["syy"], m["sxy"], lam))
    intercept = float(m["mean_b"] - slope * m["mean_a"])
    mm = _moments(minus, shift, 0.0)
    slopes = _deming_slope(mm["sxx"], mm["syy"], mm["sxy"], lam)
    intercepts = mm["mean_b"] - slopes * mm["mean_a"]
    sci, _ = _jackknife(slope, slopes, alpha, df)
    ici, _ = _jackknife(intercept, intercepts, alpha, df)
    return slope, intercept, sci, ici


def deming(
    x: ArrayLike,
    y: ArrayLike,
    *,
    error_ratio: float = 1.0,
    blocks: ArrayLike | None = None,
    alpha: float = 0.05,
) -> Regression:
    """Deming regression of y (side b) on x (side a), with the jackknife interval.

    Parameters
    ----------
    x, y : array_like
        Paired values [flux unit].
    error_ratio : float
        lambda = var(error of y) / var(error of x) [-], e.g. from
        :func:`error_ratio_from_se`; 1 gives orthogonal regression. (R's ``mcr`` takes the
        reciprocal, var(error of x) / var(error of y), as ``error.ratio``.)
    blocks : array_like, optional
        A label per pair; the jackknife then leaves out one block (day) at a time instead
        of one pair, which keeps the interval honest for autocorrelated series.
    alpha : float
        1 - confidence level.

    Returns
    -------
    Regression
        slope [-], intercept [unit of y]; intervals estimate ± t(1 - alpha/2, g - 2) se_jack,
        se_jack² = (g - 1)/g sum (theta_(i) - mean theta_(.))² over the g leave-one-out fits
        (Linnet 1990; 1993).

    Notes
    -----
    slope = (s_yy - lambda s_xx + sqrt((s_yy - lambda s_xx)² + 4 lambda s_xy²)) / (2 s_xy),
    intercept = mean_y - slope mean_x (Deming 1943; Cornbleet & Gochman 1979,
    doi:10.1093/clinchem/25.3.432). Linnet K (1990) Estimation of the linear relationship
    between the measurements of two methods with proportional errors. Stat Med 9:1463-1473,
    doi:10.1002/sim.4780091210; Linnet K (1993) Evaluation of regression procedures for
    method comparison studies. Clin Chem 39:424-432, doi:10.1093/clinchem/39.3.424.

    Examples
    --------
    >>> fit = deming([1.0, 2.0, 3.0, 4.0, 5.0], [1.2, 1.9, 3.2, 3.9, 5.1])
    >>> round(fit.slope, 4), round(fit.intercept, 4)
    (0.9844, 0.1068)
    """
    x_, y_, dropped = _pair(x, y, "x", "y")
    if blocks is not None:
        bl = np.asarray(blocks, dtype=object).ravel()
        xa = np.asarray(x, dtype=float).ravel()
        ya = np.asarray(y, dtype=float).ravel()
        if bl.size != xa.size:
            raise ValueError(f"blocks has {bl.size} labels for {xa.size} pairs")
        keep = np.isfinite(xa) & np.isfinite(ya) & pd.notna(bl)
        bl, x_, y_ = bl[keep], xa[keep], ya[keep]
        dropped = int(keep.size - keep.sum())
    _require(x_.size, dropped, "deming")
    lam = float(error_ratio)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"error_ratio must be a positive number, not {error_ratio!r}")
    shift, _ = _shifts(x_, y_)
    cols = _columns(x_, y_, shift, 0.0)
    if blocks is None:
        codes, g, unit = np.arange(x_.size), x_.size, "pair"
    else:
        codes, g, unit = (*_block_codes(bl, x_.size)[:2], "block")
    sums = _block_sums(cols, codes, g) if blocks is not None else cols
    total = sums.sum(axis=0)
    slope, intercept, sci, ici = _deming_from_sums(total, total - sums, shift, lam, alpha, g - 2)
    how = f"jackknife over {unit}s (Linnet)"
    return Regression(slope, intercept, sci, ici, x_.size, "deming", how, sci, ici, how, lam)


def _sma_ci(m: dict[str, float], n: int, alpha: float):
    """Warton et al. (2006) intervals of the SMA slope and intercept."""
    b, r = m["sma_slope"], m["r"]
    if n <= 2 or not (math.isfinite(b) and math.isfinite(r)):
        return None, None
    f = float(sps.f.ppf(1.0 - alpha, 1, n - 2))
    big_b = (1.0 - r * r) * f / (n - 2)
    lo = b * (math.sqrt(big_b + 1.0) - math.sqrt(big_b))
    hi = b * (math.sqrt(big_b + 1.0) + math.sqrt(big_b))
    # intercept: var = s_res² / n + mean_x² var(b), var(b) = b² (1 - r²) / (n - 2)
    sxx, syy, sxy = m["sxx"] * n, m["syy"] * n, m["sxy"] * n
    s_res = (syy - 2.0 * b * sxy + b * b * sxx) / (n - 2)
    var_b = b * b * (1.0 - r * r) / (n - 2)
    se_a = math.sqrt(max(s_res / n + m["mean_a"] ** 2 * var_b, 0.0))
    t = _t(alpha, n - 2)
    a = m["sma_intercept"]
    return _ci(lo, hi), _ci(a - t * se_a, a + t * se_a)


def sma(x: ArrayLike, y: ArrayLike, *, alpha: float = 0.05) -> Regression:
    """Standardized major axis (reduced major axis) line of y (side b) on x (side a).

    Parameters
    ----------
    x, y : array_like
        Paired values [flux unit].
    alpha : float
        1 - confidence level.

    Returns
    -------
    Regression
        slope = sign(s_xy) s_y / s_x [-], intercept = mean_y - slope mean_x [unit of y].
        Slope interval b (sqrt(B + 1) ± sqrt(B)), B = (1 - r²) F(1 - alpha; 1, n - 2) /
        (n - 2); intercept interval a ± t(1 - alpha/2, n - 2) sqrt(s_res² / n + mean_x²
        var(b)), var(b) = b² (1 - r²) / (n - 2), s_res² = sum((y - b x - a)²) / (n - 2)
        (Warton et al. 2006, section "Confidence intervals", Table 4).

    Notes
    -----
    SMA treats both sides symmetrically (errors proportional to each side's spread);
    Warton DI, Wright IJ, Falster DS, Westoby M (2006) Bivariate line-fitting methods for
    allometry. Biol Rev 81:259-291, doi:10.1017/S1464793106007007.

    Examples
    --------
    >>> fit = sma([1.0, 2.0, 3.0, 4.0, 5.0], [1.2, 1.9, 3.2, 3.9, 5.1])
    >>> round(fit.slope, 4), round(fit.intercept, 4)
    (0.9845, 0.1066)
    """
    x_, _, m = _all_moments(x, y, "sma")
    n = x_.size
    sci, ici = _sma_ci(m, n, alpha)
    how = "warton et al. 2006"
    return Regression(
        _finite(m["sma_slope"]),
        _finite(m["sma_intercept"]),
        sci,
        ici,
        n,
        "sma",
        how,
        sci,
        ici,
        how,
    )


# --------------------------------------------------------------------------------------
# Passing-Bablok
# --------------------------------------------------------------------------------------


def _pair_slopes(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Slopes of the pairs (i, j), PB's conventions: dx = 0 gives ±inf, 0/0 and -1 go."""
    dx = x[j] - x[i]
    dy = y[j] - y[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = dy / dx
        ties = dx == 0
        s[ties] = np.sign(dy[ties]) * np.inf  # sign 0 -> nan, dropped below
    s = s[~np.isnan(s)]
    return s[s != -1.0]


def _at_rank(s: np.ndarray, rank: float, n_full: float) -> float:
    """Value at (1-based, possibly fractional) rank of the full slope set of n_full."""
    if s.size == 0 or not math.isfinite(rank):
        return math.nan
    pos = (rank - 1.0) * (s.size - 1) / (n_full - 1.0) if n_full > 1 else 0.0
    if pos < 0 or pos > s.size - 1:
        return math.nan
    lo = math.floor(pos)
    frac = pos - lo
    if frac == 0 or lo + 1 >= s.size:
        return float(s[lo])
    a, b = float(s[lo]), float(s[lo + 1])
    if a == b:
        return a
    return a + frac * (b - a)


@dataclass(frozen=True)
class _PBCore:
    slopes: np.ndarray  # sorted
    n_full: float  # slopes in the full set
    k: float  # slopes < -1 in the full set
    exact: bool
    slope: float
    n: int


def _pb_core(x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None) -> _PBCore:
    n = x.size
    if n <= PB_EXACT_MAX:
        i, j = np.triu_indices(n, 1)
        s = np.sort(_pair_slopes(x, y, i, j))
        n_full, k, exact = float(s.size), float(np.searchsorted(s, -1.0)), True
    else:
        gen = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
        i = gen.integers(0, n, PB_RANDOM_PAIRS)
        j = gen.integers(0, n, PB_RANDOM_PAIRS)
        keep = i != j
        s = np.sort(_pair_slopes(x, y, i[keep], j[keep]))
        share = s.size / max(int(keep.sum()), 1)
        n_full = share * n * (n - 1) / 2.0
        k = float(np.searchsorted(s, -1.0)) / max(s.size, 1) * n_full
        exact = False
    slope = _at_rank(s, (n_full + 1.0) / 2.0 + k, n_full)
    return _PBCore(s, n_full, k, exact, slope, n)


def _pb_rank_ci(core: _PBCore, alpha: float) -> tuple[float, float]:
    n = core.n
    c = _z(alpha) * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    if core.exact:
        # C to the nearest integer, then M1 to the nearest integer (halves to even): the
        # rule that reproduces both Calanas (mcr's TD15/TD41 references) and Sen (1968)
        m1 = float(round((core.n_full - round(c)) / 2.0))
    else:
        m1 = (core.n_full - c) / 2.0
    m2 = core.n_full - m1 + 1.0
    return _at_rank(core.slopes, m1 + core.k, core.n_full), _at_rank(
        core.slopes, m2 + core.k, core.n_full
    )


def _pb_intercepts(x, y, slope, lo, hi):
    a = float(np.median(y - slope * x)) if math.isfinite(slope) else math.nan
    ci = None
    if math.isfinite(lo) and math.isfinite(hi):
        ci = _ci(float(np.median(y - hi * x)), float(np.median(y - lo * x)))
    return a, ci


def _pb_influence(x: np.ndarray, y: np.ndarray, slope: float, rng) -> np.ndarray:
    """phi_k: share of partners j with -1 < S_kj <= slope (the U-statistic projection)."""
    n = x.size
    u = y - slope * x
    v = y + x
    if n <= PB_EXACT_MAX:
        ref = np.arange(n)
    else:
        gen = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
        ref = gen.choice(n, PB_REFERENCE_POINTS, replace=False)
    xr, ur, vr, yr = x[ref], u[ref], v[ref], y[ref]
    phi = np.empty(n)
    step = max(1, 2_000_000 // ref.size)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        xk, uk, vk = x[sl, None], u[sl, None], v[sl, None]
        # dx > 0: S <= b  <=>  du <= 0, and S > -1  <=>  dv > 0; dx < 0 flips both
        right = (xr > xk) & (ur <= uk) & (vr > vk)
        left = (xr < xk) & (ur >= uk) & (vr < vk)
        hits = np.count_nonzero(right, axis=1) + np.count_nonzero(left, axis=1)
        same = np.count_nonzero((xr == xk) & (yr == y[sl, None]), axis=1)  # 0/0: no slope
        phi[sl] = hits / np.maximum(ref.size - same, 1)
    return phi


def _pb_fit(x, y, alpha, rng):
    core = _pb_core(x, y, rng)
    lo, hi = _pb_rank_ci(core, alpha)
    intercept, ici = _pb_intercepts(x, y, core.slope, lo, hi)
    note = (
        ""
        if core.exact
        else (
            f"slopes of {PB_RANDOM_PAIRS:,} random pairs of points (n = {x.size:,} > "
            f"{PB_EXACT_MAX:,}): the median and rank interval are quantiles of that sample"
        )
    )
    return core, _ci(lo, hi), intercept, ici, note


def passing_bablok(
    x: ArrayLike,
    y: ArrayLike,
    *,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> Regression:
    """Passing-Bablok regression of y (side b) on x (side a), with its rank interval.

    Parameters
    ----------
    x, y : array_like
        Paired values [flux unit].
    alpha : float
        1 - confidence level.
    rng : numpy.random.Generator, optional
        Used only above ``PB_EXACT_MAX`` points (random pairs); default a generator seeded
        with ``DEFAULT_SEED``, so the result is reproducible.

    Returns
    -------
    Regression
        slope [-], intercept [unit of y] and their rank-based intervals.

    Notes
    -----
    The slopes S_ij = (y_j - y_i) / (x_j - x_i) of all pairs i < j, with x ties giving ±inf,
    0/0 and slopes of exactly -1 left out; K = number of slopes < -1. The slope is the
    median of the sorted slopes shifted by K (ranks (N + 1)/2 + K, averaged for even N),
    the intercept median(y - slope x). Slope interval: the slopes at ranks M1 + K and
    M2 + K, M1 = round((N - C) / 2), M2 = N - M1 + 1, C = z(1 - alpha/2) sqrt(n (n - 1)
    (2n + 5) / 18); intercept interval median(y - hi x), median(y - lo x) (Passing &
    Bablok 1983, sections 2-3). The rank interval assumes independent pairs.

    Above ``PB_EXACT_MAX`` points the n (n - 1)/2 slopes are too many: the slopes of
    ``PB_RANDOM_PAIRS`` random pairs of points stand for them, and the ranks become
    quantiles of that sample (the subsampling error of the median is about
    0.5 / sqrt(PB_RANDOM_PAIRS) in quantile, small beside the rank interval for n up to
    a few million). :attr:`Regression.note` says so.

    Passing H, Bablok W (1983) A new biometrical procedure for testing the equality of
    measurements from two different analytical methods. J Clin Chem Clin Biochem
    21:709-720, doi:10.1515/cclm.1983.21.11.709.

    Examples
    --------
    >>> fit = passing_bablok([1.0, 2.0, 3.0, 4.0, 5.0], [1.2, 1.9, 3.2, 3.9, 5.1])
    >>> round(fit.slope, 4), round(fit.intercept, 4)
    (0.9875, 0.1625)
    """
    x_, y_, dropped = _pair(x, y, "x", "y")
    _require(x_.size, dropped, "passing_bablok")
    core, sci, intercept, ici, note = _pb_fit(x_, y_, alpha, rng)
    how = "rank (passing & bablok 1983)"
    return Regression(
        _finite(core.slope),
        _finite(intercept),
        sci,
        ici,
        x_.size,
        "passing-bablok",
        how,
        sci,
        ici,
        how,
        note=note,
    )


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Every agreement statistic of one comparison, with confidence intervals.

    ``ci`` of each estimate is the block-bootstrap percentile interval (None without a
    bootstrap); ``ci_analytic`` the estimator's own. :meth:`as_dict` flattens it all.

    Attributes
    ----------
    n_pairs : int
        Finite pairs used.
    n_dropped : int
        Pairs dropped because a, b (or their block label) were missing or not finite.
    n_blocks : int
        Bootstrap units (days, or pairs without ``blocks``).
    block_kind : str
        ``"blocks"``, ``"pairs"`` or the groups used for many pairs without blocks.
    n_boot : int
        Bootstrap replicates (0: no bootstrap).
    alpha : float
        1 - confidence level.
    relative_to : str
        Denominator of the relative bias.
    error_ratio : float
        Deming lambda = var(error of b) / var(error of a) [-].
    error_ratio_source : str
    bias, relative_bias, rmsd, mae, r : Estimate
    concordance : Concordance
    bland_altman : BlandAltman
    log_ratio : BlandAltman
        On ln(b / a), positive pairs only (``n_excluded`` others).
    proportional_bias, log_proportional_bias : Regression
        Differences (log ratios) on means (means of logs).
    deming, sma, passing_bablok, ols : Regression
    """

    n_pairs: int
    n_dropped: int
    n_blocks: int
    block_kind: str
    n_boot: int
    alpha: float
    relative_to: str
    error_ratio: float
    error_ratio_source: str
    bias: Estimate
    relative_bias: Estimate
    rmsd: Estimate
    mae: Estimate
    r: Estimate
    concordance: Concordance
    bland_altman: BlandAltman
    log_ratio: BlandAltman | None
    proportional_bias: Regression
    log_proportional_bias: Regression | None
    deming: Regression
    sma: Regression
    passing_bablok: Regression
    ols: Regression

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: each statistic with ``<name>_ci`` ([lo, hi] or None).

        Non-finite numbers become None. ``<name>_ci`` is the block-bootstrap interval;
        ``<name>_ci_<method>`` the analytic one where it exists.
        """
        out: dict[str, Any] = {
            "n_pairs": self.n_pairs,
            "n_dropped": self.n_dropped,
            "n_blocks": self.n_blocks,
            "block_kind": self.block_kind,
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "ci_method": _BOOT_METHOD if self.n_boot else None,
            "relative_to": self.relative_to,
            "error_ratio": _json(self.error_ratio),
            "error_ratio_source": self.error_ratio_source,
        }

        def est(name: str, e: Estimate, analytic: str | None = None) -> None:
            out[name] = _json(e.value)
            out[f"{name}_ci"] = _json_ci(e.ci)
            if analytic:
                out[f"{name}_ci_{analytic}"] = _json_ci(e.ci_analytic)

        def reg(name: str, g: Regression, analytic: str | None) -> None:
            out[f"{name}_slope"] = _json(g.slope)
            out[f"{name}_slope_ci"] = _json_ci(g.slope_ci)
            out[f"{name}_intercept"] = _json(g.intercept)
            out[f"{name}_intercept_ci"] = _json_ci(g.intercept_ci)
            if analytic:
                out[f"{name}_slope_ci_{analytic}"] = _json_ci(g.slope_ci_analytic)
                out[f"{name}_intercept_ci_{analytic}"] = _json_ci(g.intercept_ci_analytic)

        est("bias", self.bias, "t")
        est("relative_bias", self.relative_bias)
        est("rmsd", self.rmsd)
        est("mae", self.mae)
        est("r", self.r, "fisher")
        c = self.concordance
        est("ccc", c.ccc, "lin")
        est("ccc_precision", c.precision)
        est("ccc_accuracy", c.accuracy)
        out["ccc_scale_shift"] = _json(c.scale_shift)
        out["ccc_location_shift"] = _json(c.location_shift)
        ba = self.bland_altman
        out["loa_k"] = ba.k
        out["sd_difference"] = _json(ba.sd_difference)
        est("loa_lower", ba.loa_lower, "ba1999")
        est("loa_upper", ba.loa_upper, "ba1999")
        reg("proportional_bias", self.proportional_bias, "t")
        lr = self.log_ratio
        out["log_ratio_n"] = lr.n if lr else 0
        out["log_ratio_n_excluded"] = lr.n_excluded if lr else self.n_pairs
        if lr is not None:
            est("log_ratio_mean", lr.mean_difference, "t")
            out["log_ratio_sd"] = _json(lr.sd_difference)
            est("log_ratio_loa_lower", lr.loa_lower, "ba1999")
            est("log_ratio_loa_upper", lr.loa_upper, "ba1999")
            for key in ("mean", "loa_lower", "loa_upper"):
                v = out[f"log_ratio_{key}"]
                ci = out[f"log_ratio_{key}_ci"]
                out[f"ratio_{key}"] = None if v is None else _json(math.exp(v))
                out[f"ratio_{key}_ci"] = None if ci is None else [math.exp(t) for t in ci]
        else:
            for key in ("mean", "loa_lower", "loa_upper"):
                for pre in ("log_ratio", "ratio"):
                    out[f"{pre}_{key}"] = None
                    out[f"{pre}_{key}_ci"] = None
            out["log_ratio_sd"] = None
        if self.log_proportional_bias is not None:
            reg("log_proportional_bias", self.log_proportional_bias, "t")
        else:
            for part in ("slope", "intercept"):
                out[f"log_proportional_bias_{part}"] = None
                out[f"log_proportional_bias_{part}_ci"] = None
        reg("deming", self.deming, "jackknife")
        reg("sma", self.sma, "warton")
        reg("passing_bablok", self.passing_bablok, "rank")
        out["passing_bablok_note"] = self.passing_bablok.note
        reg("ols", self.ols, "t")
        return out


_BOOT_METHOD = "block bootstrap, percentile"


def _json(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _json_ci(ci: CI | None) -> list[float] | None:
    if ci is None:
        return None
    lo, hi = _json(ci[0]), _json(ci[1])
    return None if lo is None or hi is None else [lo, hi]


def agreement(
    a: ArrayLike,
    b: ArrayLike,
    *,
    blocks: ArrayLike | None = None,
    se_a: ArrayLike | None = None,
    se_b: ArrayLike | None = None,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    relative_to: str = "a",
    alpha: float = 0.05,
    loa_k: float = 1.96,
) -> Agreement:
    """Every agreement statistic of paired fluxes, with block-bootstrap intervals.

    Parameters
    ----------
    a, b : array_like
        Paired fluxes of the reference side and the compared side [flux unit, e.g.
        umol m-2 s-1]; differences are b - a. Pairs with a non-finite value are dropped
        (``n_dropped``).
    blocks : array_like, optional
        One label per pair, the resampling unit of the bootstrap (the local standard date:
        whole days are resampled, which keeps the within-day autocorrelation). Pairs
        with a missing label are dropped. Without it, each pair is its own block (up to
        ``IID_BLOCKS_MAX`` pairs; above, consecutive pairs are dealt into that many
        groups, which for independent pairs changes nothing and for autocorrelated ones
        keeps some of it).
    se_a, se_b : array_like, optional
        Reported standard errors of each flux [flux unit]: the Deming error-variance ratio
        is mean(se_b²) / mean(se_a²) over the pairs used, else 1
        (:func:`error_ratio_from_se`).
    n_boot : int
        Bootstrap replicates (0: analytic intervals only; ``ci`` is then None).
    rng : numpy.random.Generator, optional
        The seeded generator of the bootstrap (and of Passing-Bablok's random pairs for
        large n); None uses ``numpy.random.default_rng(DEFAULT_SEED)``.
    relative_to : {"a", "b", "mean"}
        Denominator of the relative bias.
    alpha : float
        1 - confidence level of every interval.
    loa_k : float
        Limits of agreement at mean ± loa_k sd.

    Returns
    -------
    Agreement

    Raises
    ------
    ValueError
        Fewer than ``MIN_PAIRS`` (3) finite pairs, arrays of different lengths, or a bad
        option.

    Notes
    -----
    Bootstrap: each replicate draws as many blocks as there are, with replacement; every
    moment statistic is recomputed from the resampled block sums (one matrix product per
    chunk of replicates), and the interval is the percentile interval (Efron), the
    alpha/2 and 1 - alpha/2 quantiles of the finite replicates (numpy's linear rule).
    Passing-Bablok up to ``PB_DIRECT_BOOT_MAX`` pairs is refitted on every replicate;
    above, the replicate's rank offset comes from the resampled block sums of each point's
    influence value (the share of its pairwise slopes in (-1, slope]), and the interval is
    read off the sorted slopes as the rank interval is (see docs/agreement.md). The Deming
    lambda is held fixed across replicates.

    Examples
    --------
    >>> rng = np.random.default_rng(42)
    >>> truth = rng.gamma(4.0, 1.0, 400)
    >>> a = truth + rng.normal(0, 0.3, 400)
    >>> b = 0.87 * truth + rng.normal(0, 0.3, 400)
    >>> days = np.repeat(np.arange(40), 10)
    >>> res = agreement(a, b, blocks=days, n_boot=200, rng=np.random.default_rng(1))
    >>> d = res.as_dict()
    >>> d["n_pairs"], round(d["relative_bias"], 3), len(d["relative_bias_ci"])
    (400, -0.133, 2)
    """
    _check_relative_to(relative_to)
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a whole number >= 0, not {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha!r}")
    n_boot = int(n_boot)
    xa = np.asarray(a, dtype=float).ravel()
    yb = np.asarray(b, dtype=float).ravel()
    if xa.shape != yb.shape:
        raise ValueError(f"a and b differ in length ({xa.size} and {yb.size} values)")
    keep = np.isfinite(xa) & np.isfinite(yb)
    codes_all = None
    if blocks is not None:
        bl = pd.Series(np.asarray(blocks, dtype=object).ravel())
        if bl.size != xa.size:
            raise ValueError(f"blocks has {bl.size} labels for {xa.size} pairs")
        codes_all, _ = pd.factorize(bl, sort=True)
        keep &= codes_all >= 0
    se = {}
    for name, v in (("se_a", se_a), ("se_b", se_b)):
        if v is not None:
            arr = np.asarray(v, dtype=float).ravel()
            if arr.size != xa.size:
                raise ValueError(f"{name} has {arr.size} values for {xa.size} pairs")
            se[name] = arr[keep]
    x, y = xa[keep], yb[keep]
    n = x.size
    n_dropped = int(xa.size - n)
    _require(n, n_dropped, "agreement")
    if codes_all is not None:
        codes, g = pd.factorize(codes_all[keep], sort=True)[0], 0
        codes = np.asarray(codes, dtype=np.int64)
        g = int(codes.max()) + 1
        kind = "blocks"
    else:
        codes, g, kind = _block_codes(None, n)
    lam, lam_source = error_ratio_from_se(se.get("se_a"), se.get("se_b"))
    gen = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)

    shift, log_shift = _shifts(x, y)
    cols = _columns(x, y, shift, log_shift)

    # Passing-Bablok point estimate and the influence values for its bootstrap
    pb_core, pb_sci, pb_int, pb_ici, pb_note = _pb_fit(x, y, alpha, gen)
    linearised = n_boot > 0 and n > PB_DIRECT_BOOT_MAX and math.isfinite(pb_core.slope)
    if linearised:
        cols[:, _PHI] = _pb_influence(x, y, pb_core.slope, gen)
    sums = _block_sums(cols, codes, g)
    total = sums.sum(axis=0)
    m = {k: float(v) for k, v in _moments(total, shift, log_shift).items()}
    n_log = int(m["n_log"])

    # analytic intervals
    t1 = _t(alpha, n - 1)
    bias_half = t1 * m["sd_d"] / math.sqrt(n)
    bias_t = _ci(m["bias"] - bias_half, m["bias"] + bias_half)
    r_fisher = _fisher_ci(m["r"], n, alpha)
    ccc_lin = _lin_ci(m, n, alpha)
    lo_ba, hi_ba, _ = _loa_ci(m["bias"], m["sd_d"], n, loa_k, alpha, "1999")
    ols_fit = _ols_line(x, y, alpha, "ols")
    prop_fit = _ols_line(0.5 * (x + y), y - x, alpha, "difference on mean")
    pos = (x > 0) & (y > 0)
    log_fit = None
    if n_log >= MIN_PAIRS:
        la, lb = np.log(x[pos]), np.log(y[pos])
        log_fit = _ols_line(0.5 * (la + lb), lb - la, alpha, "log ratio on mean log")
        l_sd = m["log_sd"]
        l_half = _t(alpha, n_log - 1) * l_sd / math.sqrt(n_log)
        l_t = _ci(m["log_mean"] - l_half, m["log_mean"] + l_half)
        l_lo_ba, l_hi_ba, _ = _loa_ci(m["log_mean"], l_sd, n_log, loa_k, alpha, "1999")
    sma_sci, sma_ici = _sma_ci(m, n, alpha)
    dem_df = g - 2 if kind != "pairs" else n - 2
    d_slope, d_int, d_sci, d_ici = _deming_from_sums(total, total - sums, shift, lam, alpha, dem_df)

    # bootstrap
    boot: dict[str, CI | None] = {}
    if n_boot > 0 and g >= 2:
        chunks, kept = [], []
        for c in block_bootstrap_counts(g, n_boot, gen):
            chunks.append(c @ sums)
            if not linearised:
                kept.append(c)
        reps = np.vstack(chunks)
        counts = np.vstack(kept) if kept else None
        bm = _moments(reps, shift, log_shift)
        bm["relative_bias"] = _relative(bm, relative_to)
        bm["loa_lower"] = bm["bias"] - loa_k * bm["sd_d"]
        bm["loa_upper"] = bm["bias"] + loa_k * bm["sd_d"]
        bm["log_loa_lower"] = bm["log_mean"] - loa_k * bm["log_sd"]
        bm["log_loa_upper"] = bm["log_mean"] + loa_k * bm["log_sd"]
        bm["deming_slope"] = _deming_slope(bm["sxx"], bm["syy"], bm["sxy"], lam)
        bm["deming_intercept"] = bm["mean_b"] - bm["deming_slope"] * bm["mean_a"]
        for key, v in bm.items():
            boot[key] = _percentile(v, alpha)
        if n_log < MIN_PAIRS:
            for key in ("log_mean", "log_loa_lower", "log_loa_upper"):
                boot[key] = None
        phi_centre = float(total[_PHI] / total[_N])
        pb_boot = _pb_bootstrap(
            x, y, codes, n_boot, alpha, pb_core, reps, counts, linearised, phi_centre
        )
        boot["pb_slope"], boot["pb_intercept"] = pb_boot
    else:
        n_boot = 0

    bm_ = boot.get
    how = _BOOT_METHOD if n_boot else None

    def e(key, method, analytic=None, analytic_how=None):
        return Estimate(
            _finite(m[key]) if key in m else math.nan,
            bm_(key),
            method,
            n,
            how,
            analytic,
            analytic_how,
        )

    rel_value = float(_relative({k: np.float64(v) for k, v in m.items()}, relative_to))
    relative = Estimate(
        _finite(rel_value), bm_("relative_bias"), f"mean(b - a) / mean({relative_to})", n, how
    )
    bias = e("bias", "mean(b - a)", bias_t, "t")
    r_est = e("r", "pearson", r_fisher, "fisher z")
    conc = Concordance(
        e("ccc", "lin ccc", ccc_lin, "lin z"),
        r_est,
        e("ccc_accuracy", "lin C_b"),
        _finite(math.sqrt(m["sxx"] / m["syy"])) if m["syy"] > 0 else math.nan,
        _finite((m["mean_a"] - m["mean_b"]) / math.sqrt(math.sqrt(m["sxx"] * m["syy"])))
        if m["sxx"] * m["syy"] > 0
        else math.nan,
        n,
    )
    ba_how = "bland-altman 1999"
    ba = BlandAltman(
        bias,
        m["sd_d"],
        Estimate(
            m["bias"] - loa_k * m["sd_d"],
            bm_("loa_lower"),
            "lower limit of agreement",
            n,
            how,
            lo_ba,
            ba_how,
        ),
        Estimate(
            m["bias"] + loa_k * m["sd_d"],
            bm_("loa_upper"),
            "upper limit of agreement",
            n,
            how,
            hi_ba,
            ba_how,
        ),
        float(loa_k),
        n,
        "difference",
    )
    log_ba = None
    log_reg = None
    if n_log >= MIN_PAIRS and log_fit is not None:
        lm, ls = m["log_mean"], m["log_sd"]
        log_ba = BlandAltman(
            Estimate(lm, bm_("log_mean"), "mean log ratio", n_log, how, l_t, "t"),
            ls,
            Estimate(
                lm - loa_k * ls,
                bm_("log_loa_lower"),
                "lower limit (log ratio)",
                n_log,
                how,
                l_lo_ba,
                ba_how,
            ),
            Estimate(
                lm + loa_k * ls,
                bm_("log_loa_upper"),
                "upper limit (log ratio)",
                n_log,
                how,
                l_hi_ba,
                ba_how,
            ),
            float(loa_k),
            n_log,
            "log ratio",
            n - n_log,
        )
        log_reg = Regression(
            log_fit.slope,
            log_fit.intercept,
            bm_("log_prop_slope"),
            bm_("log_prop_intercept"),
            n_log,
            log_fit.method,
            how,
            log_fit.slope_ci,
            log_fit.intercept_ci,
            "t",
        )

    def line(method, slope_key, int_key, slope, intercept, sci, ici, analytic_how, **kw):
        return Regression(
            _finite(slope),
            _finite(intercept),
            bm_(slope_key),
            bm_(int_key),
            n,
            method,
            how,
            sci,
            ici,
            analytic_how,
            **kw,
        )

    unit = {"blocks": "block", "pairs": "pair"}.get(kind, "group")
    return Agreement(
        n_pairs=n,
        n_dropped=n_dropped,
        n_blocks=g,
        block_kind=kind,
        n_boot=n_boot,
        alpha=alpha,
        relative_to=relative_to,
        error_ratio=lam,
        error_ratio_source=lam_source,
        bias=bias,
        relative_bias=relative,
        rmsd=e("rmsd", "sqrt(mean((b - a)^2))"),
        mae=e("mae", "mean(|b - a|)"),
        r=r_est,
        concordance=conc,
        bland_altman=ba,
        log_ratio=log_ba,
        proportional_bias=line(
            "difference on mean",
            "prop_slope",
            "prop_intercept",
            prop_fit.slope,
            prop_fit.intercept,
            prop_fit.slope_ci,
            prop_fit.intercept_ci,
            "t",
        ),
        log_proportional_bias=log_reg,
        deming=line(
            "deming",
            "deming_slope",
            "deming_intercept",
            d_slope,
            d_int,
            d_sci,
            d_ici,
            f"jackknife over {unit}s (Linnet)",
            error_ratio=lam,
        ),
        sma=line(
            "sma",
            "sma_slope",
            "sma_intercept",
            m["sma_slope"],
            m["sma_intercept"],
            sma_sci,
            sma_ici,
            "warton et al. 2006",
        ),
        passing_bablok=line(
            "passing-bablok",
            "pb_slope",
            "pb_intercept",
            pb_core.slope,
            pb_int,
            pb_sci,
            pb_ici,
            "rank (passing & bablok 1983)",
            note=pb_note,
        ),
        ols=line(
            "ols",
            "ols_slope",
            "ols_intercept",
            ols_fit.slope,
            ols_fit.intercept,
            ols_fit.slope_ci,
            ols_fit.intercept_ci,
            "t",
        ),
    )


def _pb_bootstrap(x, y, codes, n_boot, alpha, core, reps, counts, linearised, phi_centre):
    """Block-bootstrap intervals of the Passing-Bablok slope and intercept."""
    if not math.isfinite(core.slope):
        return None, None
    if not linearised:
        slopes = np.empty(n_boot)
        intercepts = np.empty(n_boot)
        points = np.arange(x.size)
        for r, c in enumerate(counts):
            idx = np.repeat(points, c[codes].astype(np.int64))
            xs, ys = x[idx], y[idx]
            i, j = np.triu_indices(xs.size, 1)
            s = np.sort(_pair_slopes(xs, ys, i, j))
            k = float(np.searchsorted(s, -1.0))
            b = _at_rank(s, (s.size + 1.0) / 2.0 + k, float(s.size))
            slopes[r] = b
            intercepts[r] = np.median(ys - b * xs) if math.isfinite(b) else math.nan
        return _percentile(slopes, alpha), _percentile(intercepts, alpha)
    # linearised: the replicate's rank offset from its resampled influence sums
    with np.errstate(divide="ignore", invalid="ignore"):
        phi_rep = reps[:, _PHI] / reps[:, _N]
    deviation = 2.0 * (phi_rep - phi_centre)
    ranks = (core.n_full + 1.0) / 2.0 + core.k - core.n_full * deviation
    q = _percentile(ranks, alpha)
    if q is None:
        return None, None
    lo = _at_rank(core.slopes, q[0], core.n_full)
    hi = _at_rank(core.slopes, q[1], core.n_full)
    _, ici = _pb_intercepts(x, y, core.slope, lo, hi)
    return _ci(lo, hi), ici


# --------------------------------------------------------------------------------------
# Breakdowns
# --------------------------------------------------------------------------------------


def value_class(values: ArrayLike, edges: ArrayLike | None = None, n_classes: int = 4):
    """Class labels of values by edges (default: quantile edges, ``n_classes`` classes).

    Parameters
    ----------
    values : array_like
        E.g. soil temperature [degC] or moisture [m3 m-3] of each pair.
    edges : array_like, optional
        Increasing class edges; values outside them or non-finite get no class (NaN).
        Default: the 0, 1/n, ..., 1 quantiles of the finite values.
    n_classes : int
        Classes for the default edges.

    Returns
    -------
    pandas.Categorical
        Labels like ``"[2.1, 5.3)"`` (the last class closed on the right).

    Examples
    --------
    >>> list(value_class([1.0, 2.0, 3.0, 4.0], edges=[0, 2.5, 5]))
    ['[0, 2.5)', '[0, 2.5)', '[2.5, 5]', '[2.5, 5]']
    """
    v = np.asarray(values, dtype=float).ravel()
    if edges is None:
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            raise ValueError("value_class: no finite values to make classes from")
        e = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, int(n_classes) + 1)))
    else:
        e = np.asarray(edges, dtype=float).ravel()
        if e.size < 2 or np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
            raise ValueError("value_class: edges must be at least 2 increasing finite numbers")
    labels = [
        f"[{_g(e[i])}, {_g(e[i + 1])}{']' if i == e.size - 2 else ')'}" for i in range(e.size - 1)
    ]
    idx = np.searchsorted(e, v, side="right") - 1
    idx[v == e[-1]] = e.size - 2
    ok = np.isfinite(v) & (idx >= 0) & (idx <= e.size - 2)
    codes = np.where(ok, idx, -1)
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def _g(v: float) -> str:
    return f"{v:.3g}"


def flux_class(values: ArrayLike, edges: ArrayLike | None = None, n_classes: int = 4):
    """Flux magnitude classes (default: quartiles) for :func:`breakdown`.

    Pass the mean of the two sides, (a + b) / 2, not one side: classing on one side makes
    that side's own noise look like a bias between classes (regression to the mean).

    Examples
    --------
    >>> list(flux_class([0.5, 1.0, 2.0, 4.0], n_classes=2))
    ['[0.5, 1.5)', '[0.5, 1.5)', '[1.5, 4]', '[1.5, 4]']
    """
    return value_class(values, edges, n_classes)


def month_class(times: ArrayLike) -> np.ndarray:
    """Month (1-12) of each time (local standard time, or what the caller gives).

    Examples
    --------
    >>> month_class(pd.to_datetime(["2024-01-31 23:00", "2024-02-01 00:30"])).tolist()
    [1, 2]
    """
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(times))).month.to_numpy()


def hour_class(times_local_standard: ArrayLike) -> np.ndarray:
    """Hour of day (0-23) of each time, which should be local standard time (no DST).

    Examples
    --------
    >>> hour_class(pd.to_datetime(["2024-07-01 13:59", "2024-07-01 14:00"])).tolist()
    [13, 14]
    """
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(times_local_standard))).hour.to_numpy()


_MAIN = ("bias", "relative_bias", "rmsd", "r", "ccc")


def breakdown(
    frame: pd.DataFrame,
    by: str,
    a: str = "flux_a",
    b: str = "flux_b",
    *,
    blocks: str | None = None,
    n_boot: int = 0,
    rng: np.random.Generator | None = None,
    relative_to: str = "a",
    alpha: float = 0.05,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """The main statistics (n, bias, relative bias, RMSD, r, CCC) per class of ``by``.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per pair.
    by : str
        Column holding the class of each pair (month, hour of local standard time, a
        :func:`flux_class` or :func:`value_class` label, ...). Rows without a class are
        left out.
    a, b : str
        Columns of the two sides' fluxes [flux unit].
    blocks : str, optional
        Column of block labels (local standard date) for the bootstrap within class.
    n_boot : int
        Bootstrap replicates per class (0: no intervals, the fast default).
    rng : numpy.random.Generator, optional
        Seeded generator (default ``DEFAULT_SEED``); classes are bootstrapped in order.
    relative_to : {"a", "b", "mean"}
    alpha : float
    min_pairs : int
        Classes with fewer finite pairs get n and NaN statistics.

    Returns
    -------
    pandas.DataFrame
        One row per class (in class order): ``by``, ``n_pairs``, and for each statistic
        its value and, with a bootstrap, ``<name>_ci_low`` / ``<name>_ci_high``.

    Examples
    --------
    >>> df = pd.DataFrame({"flux_a": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
    ...                    "flux_b": [1.1, 2.1, 3.1, 0.9, 1.9, 2.9],
    ...                    "month": [1, 1, 1, 2, 2, 2]})
    >>> breakdown(df, "month")[["month", "n_pairs", "bias"]].round(3).to_dict("list")
    {'month': [1, 2], 'n_pairs': [3, 3], 'bias': [0.1, -0.1]}
    """
    _check_relative_to(relative_to)
    for col in (by, a, b) + ((blocks,) if blocks else ()):
        if col not in frame.columns:
            raise ValueError(f"breakdown: no column {col!r} in the frame")
    gen = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
    groups = frame.groupby(by, sort=True, observed=True, dropna=True)
    rows = []
    for label, sub in groups:
        x = sub[a].to_numpy(dtype=float)
        y = sub[b].to_numpy(dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        codes_src = sub[blocks].to_numpy(dtype=object) if blocks else None
        if codes_src is not None:
            keep &= pd.notna(codes_src)  # a pair without a date cannot be resampled by day
        x, y = x[keep], y[keep]
        row: dict[str, Any] = {by: label, "n_pairs": int(x.size)}
        if x.size < max(min_pairs, MIN_PAIRS):
            for name in _MAIN:
                row[name] = math.nan
                if n_boot:
                    row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = math.nan
            rows.append(row)
            continue
        shift, log_shift = _shifts(x, y)
        cols = _columns(x, y, shift, log_shift)
        mm = _moments(cols.sum(axis=0), shift, log_shift)
        mm["relative_bias"] = _relative(mm, relative_to)
        for name in _MAIN:
            row[name] = _finite(mm[name])
        if n_boot:
            if codes_src is not None:
                codes, g, _ = _block_codes(codes_src[keep], x.size)
            else:
                codes, g, _ = _block_codes(None, x.size)
            sums = _block_sums(cols, codes, g)
            cis: dict[str, CI | None] = dict.fromkeys(_MAIN)
            if g >= 2:
                reps = np.vstack([c @ sums for c in block_bootstrap_counts(g, n_boot, gen)])
                bm = _moments(reps, shift, log_shift)
                bm["relative_bias"] = _relative(bm, relative_to)
                cis = {name: _percentile(bm[name], alpha) for name in _MAIN}
            for name in _MAIN:
                ci = cis[name]
                row[f"{name}_ci_low"] = ci[0] if ci else math.nan
                row[f"{name}_ci_high"] = ci[1] if ci else math.nan
        rows.append(row)
    columns = [by, "n_pairs"]
    for name in _MAIN:
        columns.append(name)
        if n_boot:
            columns += [f"{name}_ci_low", f"{name}_ci_high"]
    return pd.DataFrame(rows, columns=columns)
