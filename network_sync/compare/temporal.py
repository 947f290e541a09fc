"""Temperature response, diel cycle, gap-filling, sums and sampling-schedule emulation.

Pure functions over arrays and DataFrames (no I/O, no logging) for the "temperature response,
diel cycle, sums" part of an intercomparison. The methods, their formulas, assumptions and
references are in ``docs/temperature-and-sums.md``.

Units. Fluxes are in the gas's own flux unit, as chamberd stores them: umol m-2 s-1 for CO2,
nmol m-2 s-1 for CH4 and N2O ("flux unit" below). Temperatures are in degC (``_degc``), the
Lloyd-Taylor parameters in K (``_k``), durations in s (``_s``). Sums are in g C m-2 (CO2),
mg C m-2 (CH4, i.e. CH4-C) and mg N m-2 (N2O, i.e. N2O-N); the column names carry the unit
(``sum_g_c_m2``, ``sum_mg_c_m2``, ``sum_mg_n_m2``) and result objects a ``unit`` field.

==============================  ===========================================================
:func:`q10_fit`                 ln F = a + b T on positive fluxes: R10, Q10, bootstrap CIs
:func:`lloyd_taylor_fit`        Lloyd & Taylor (1994) by nonlinear least squares: R10, E0
:func:`compare_temperature_response`  difference (b - a) of R10, Q10 or E0 with a CI
:func:`to_local_standard`       UTC times to local standard time (no daylight saving)
:func:`diel`                    mean, SD, SE, median, IQR and n by hour of local standard time
:func:`gap_fill`                regular series, gaps filled by a moving-window temperature
                                response with R10 interpolated (Gomez-Casanovas et al. 2013)
:func:`sums`                    daily, monthly, yearly or period sums with uncertainty
:func:`cumulative_sums`         running sum with its uncertainty, per slot
:func:`sampling_schedule`       e.g. weekly sampling at 10:00 local standard time
:func:`emulate_sampling`        the sparse-sampling bias of a schedule on a continuous series
==============================  ===========================================================
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, signal, sparse, stats

from chamberd.controller.errors import ConfigError, FitError

from .stats import block_bootstrap_counts

__all__ = [
    "FLUX_MAX_ABS",
    "GASES",
    "T0_K",
    "TEMPERATURE_RANGE_DEGC",
    "T_REF_K",
    "LloydTaylorFit",
    "Q10Fit",
    "SamplingBias",
    "TemperatureResponseDifference",
    "compare_temperature_response",
    "cumulative_sums",
    "diel",
    "emulate_sampling",
    "gap_fill",
    "lloyd_taylor",
    "lloyd_taylor_fit",
    "q10_fit",
    "q10_model",
    "sampling_schedule",
    "sum_factor",
    "sums",
    "to_local_standard",
]

KELVIN = 273.15
T_REF_K = 283.15  # 10 degC, the reference temperature of R10
T0_K = 227.13  # Lloyd & Taylor (1994), eq. 11
MOLAR_MASS_C_G_MOL = 12.011  # IUPAC conventional atomic weight of carbon
MOLAR_MASS_N_G_MOL = 14.007  # IUPAC conventional atomic weight of nitrogen
SECONDS_PER_DAY = 86400.0
# Values outside these are left out as implausible (counted), never fitted: they are bad data
# (a logger's -9999, a unit mix-up), and they would overflow the exponential models.
TEMPERATURE_RANGE_DEGC = (-40.0, 80.0)
FLUX_MAX_ABS = 1e6  # [flux unit]
E0_BOUNDS_K = (-1000.0, 5000.0)  # search range of E0 (finite exp(E0 u) over the range above)

# gas -> (flux unit, sum unit, column suffix, sum unit per (flux unit x s))
GASES: dict[str, tuple[str, str, str, float]] = {
    # umol CO2 = umol C; x 12.011e-6 g C per umol C
    "co2": ("umol m-2 s-1", "g C m-2", "g_c_m2", MOLAR_MASS_C_G_MOL * 1e-6),
    # nmol CH4 = nmol C; x 12.011e-6 mg C per nmol C
    "ch4": ("nmol m-2 s-1", "mg C m-2", "mg_c_m2", MOLAR_MASS_C_G_MOL * 1e-6),
    # nmol N2O = 2 nmol N; x 2 x 14.007e-6 mg N per nmol N2O
    "n2o": ("nmol m-2 s-1", "mg N m-2", "mg_n_m2", 2.0 * MOLAR_MASS_N_G_MOL * 1e-6),
}

_CHUNK_CELLS = 4_000_000  # bootstrap work arrays are cut into pieces of about this many cells


# ----------------------------------------------------------------------------------------------
# small helpers


def _gas(gas: str) -> tuple[str, str, str, float]:
    key = str(gas).strip().lower()
    if key not in GASES:
        raise ConfigError(f"gas {gas!r}: expected one of {', '.join(GASES)}")
    return GASES[key]


def sum_factor(gas: str) -> float:
    """Sum unit per (flux unit x second) for ``gas``.

    Examples
    --------
    >>> round(sum_factor("co2") * 1e6, 3)  # g C m-2 per (umol m-2 s-1 x 1e6 s)
    12.011
    >>> round(sum_factor("n2o") * 1e6, 3)  # mg N m-2 per (nmol m-2 s-1 x 1e6 s)
    28.014
    """
    return _gas(gas)[3]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    return np.random.default_rng(int(rng))


def _ci(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _check_level(ci_level: float) -> float:
    level = float(ci_level)
    if not 0.0 < level < 1.0:
        raise ConfigError(f"ci_level {ci_level!r}: must lie between 0 and 1")
    return level


def _arrays(temperature_degc: ArrayLike, flux: ArrayLike, blocks: ArrayLike | None):
    t = np.asarray(temperature_degc, dtype=float).ravel()
    y = np.asarray(flux, dtype=float).ravel()
    if t.shape != y.shape:
        raise ConfigError(
            f"temperature_degc and flux differ in length ({t.size} and {y.size} values)"
        )
    if blocks is None:
        b = None
    else:
        labels = pd.Series(blocks).reset_index(drop=True) if not np.isscalar(blocks) else None
        if labels is None or len(labels) != t.size:
            size = 1 if labels is None else len(labels)
            raise ConfigError(f"blocks has {size} labels for {t.size} values")
        b, _ = pd.factorize(labels)  # integer codes; -1 where a label is missing
        missing = b < 0
        if missing.any():  # an observation without a label is a block of its own
            b = b.copy()
            b[missing] = b.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return t, y, b


def _plausible(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Finite values inside TEMPERATURE_RANGE_DEGC and |flux| <= FLUX_MAX_ABS."""
    lo, hi = TEMPERATURE_RANGE_DEGC
    with np.errstate(invalid="ignore"):
        return (t > lo) & (t < hi) & (np.abs(y) <= FLUX_MAX_ABS)


def _block_matrix(labels: np.ndarray | None, n: int) -> tuple[sparse.csr_matrix, int]:
    """Indicator matrix (blocks x observations); every observation its own block if None."""
    if labels is None:
        codes = np.arange(n)
        n_blocks = n
    else:
        codes, uniques = pd.factorize(labels)  # compact: some codes may have been filtered
        n_blocks = len(uniques)
    matrix = sparse.csr_matrix(
        (np.ones(n), (codes, np.arange(n))), shape=(n_blocks, n), dtype=float
    )
    return matrix, n_blocks


def _block_counts(rng: np.random.Generator, n_blocks: int, n_boot: int):
    """How often each block is drawn in each replicate, in chunks of replicates (the block
    bootstrap of :func:`.stats.block_bootstrap_counts`, in this module's chunk size)."""
    return block_bootstrap_counts(n_blocks, n_boot, rng, chunk_cells=_CHUNK_CELLS)


def _bootstrap_label(blocks: np.ndarray | None, n_blocks: int) -> str:
    if blocks is None:
        return f"percentile bootstrap over observations ({n_blocks})"
    return f"percentile block bootstrap over {n_blocks} blocks"


def _dict(obj: Any) -> dict[str, Any]:
    out = {}
    for key, value in asdict(obj).items():
        if key.endswith("_boot"):
            continue
        if isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# temperature response: Q10


def q10_model(temperature_degc: ArrayLike, r10: float, q10: float) -> np.ndarray:
    """F = R10 Q10^((T - 10)/10) [flux unit].

    Examples
    --------
    >>> q10_model([0.0, 10.0, 20.0], 2.0, 3.0).round(4).tolist()
    [0.6667, 2.0, 6.0]
    """
    t = np.asarray(temperature_degc, dtype=float)
    return r10 * np.power(q10, (t - 10.0) / 10.0)


@dataclass(frozen=True)
class Q10Fit:
    """ln F = a + b T fitted by ordinary least squares on the positive fluxes.

    Attributes
    ----------
    r10 : float
        exp(a + 10 b): the flux at 10 degC [flux unit]. A median, not a mean, on the flux
        scale (the fit is on ln F).
    q10 : float
        exp(10 b) [-].
    r10_ci, q10_ci : tuple of float or None
        Percentile bootstrap intervals at ``ci_level`` (None without a bootstrap).
    intercept_ln : float
        a [ln flux unit].
    slope_per_degc : float
        b [degC-1].
    r10_se, q10_se : float
        Delta-method standard errors from the OLS covariance (independent residuals).
    n : int
        Observations used.
    n_nonpositive_excluded, n_nonfinite_excluded, n_implausible_excluded : int
        Observations left out: flux <= 0 (no logarithm), a non-finite value, or a value
        outside ``TEMPERATURE_RANGE_DEGC`` (-40..80 degC) or above ``FLUX_MAX_ABS`` (1e6).
    temperature_min_degc, temperature_max_degc : float
        Range of the temperatures used [degC].
    r_squared_ln : float
        R2 on the ln scale [-].
    residual_sd_ln : float
        Residual SD on the ln scale (n - 2 degrees of freedom) [-].
    n_boot, n_boot_failed, n_blocks : int
        Replicates asked for, degenerate replicates dropped, resampling units.
    ci_level : float
    converged : bool
        False when the line is undetermined (fewer than 3 points or one temperature); the
        values are then NaN and ``message`` says why.
    message, method : str
    r10_boot, q10_boot : numpy.ndarray
        Bootstrap replicates (for :func:`compare_temperature_response`).
    """

    r10: float
    q10: float
    r10_ci: tuple[float, float] | None
    q10_ci: tuple[float, float] | None
    intercept_ln: float
    slope_per_degc: float
    r10_se: float
    q10_se: float
    n: int
    n_nonpositive_excluded: int
    n_nonfinite_excluded: int
    n_implausible_excluded: int
    temperature_min_degc: float
    temperature_max_degc: float
    r_squared_ln: float
    residual_sd_ln: float
    n_boot: int
    n_boot_failed: int
    n_blocks: int
    ci_level: float
    converged: bool
    message: str
    method: str
    r10_boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    q10_boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def predict(self, temperature_degc: ArrayLike) -> np.ndarray:
        """The fitted response at ``temperature_degc`` [flux unit]."""
        return q10_model(temperature_degc, self.r10, self.q10)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (bootstrap replicates left out)."""
        return _dict(self)


def _ols_from_sums(s: np.ndarray):
    """Slope and intercept of y on x from columns [n, Sx, Sy, Sxx, Sxy] (rows = replicates)."""
    n, sx, sy, sxx, sxy = (s[..., k] for k in range(5))
    with np.errstate(divide="ignore", invalid="ignore"):
        den = n * sxx - sx * sx
        slope = (n * sxy - sx * sy) / den
        intercept = (sy - slope * sx) / n
    bad = ~(den > 1e-12 * np.maximum(n * sxx, 1e-300)) | (n < 3)
    slope = np.where(bad, np.nan, slope)
    intercept = np.where(bad, np.nan, intercept)
    return slope, intercept


def q10_fit(
    temperature_degc: ArrayLike,
    flux: ArrayLike,
    *,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
    blocks: ArrayLike | None = None,
    ci_level: float = 0.95,
) -> Q10Fit:
    """Fit ln F = a + b T: R10 = exp(a + 10 b), Q10 = exp(10 b).

    Parameters
    ----------
    temperature_degc : array_like
        Soil temperature the system recorded with each flux [degC].
    flux : array_like
        Flux [flux unit]. Only positive values enter (their logarithm); the others are
        counted in ``n_nonpositive_excluded``.
    n_boot : int
        Bootstrap replicates (0: no CIs).
    rng : numpy.random.Generator or int, optional
        The seeded generator (an int is a seed; None means seed 0, so results repeat).
    blocks : array_like, optional
        A label per observation (the local standard date): the bootstrap then resamples
        whole blocks (days), which keeps the within-day autocorrelation. An observation
        without a label (None, NaT) is a block of its own.
    ci_level : float
        Level of the percentile intervals.

    Returns
    -------
    Q10Fit

    Notes
    -----
    The exponential model F = R10 Q10^((T - 10)/10) (van 't Hoff) is linear on the log
    scale: ln F = ln R10 + (ln Q10 / 10)(T - 10) = a + b T, fitted by OLS. The bootstrap
    works on per-block sums (n, Sx, Sy, Sxx, Sxy), so 1000 replicates of a year of
    half-hourly data take milliseconds. Reference: Lloyd & Taylor (1994),
    doi:10.2307/2389824, for the model's use on soil respiration; Efron & Tibshirani (1993)
    for the percentile bootstrap; Künsch (1989), doi:10.1214/aos/1176347265, for blocks.

    Examples
    --------
    >>> t = [0.0, 5.0, 10.0, 15.0, 20.0]
    >>> fit = q10_fit(t, q10_model(t, 2.0, 2.5), n_boot=0)
    >>> round(fit.r10, 6), round(fit.q10, 6), fit.n
    (2.0, 2.5, 5)
    """
    level = _check_level(ci_level)
    t, y, b = _arrays(temperature_degc, flux, blocks)
    finite = np.isfinite(t) & np.isfinite(y)
    plausible = finite & _plausible(t, y)
    positive = plausible & (y > 0)
    n_nonfinite = int((~finite).sum())
    n_implausible = int((finite & ~plausible).sum())
    n_nonpositive = int((plausible & ~positive).sum())
    t, y = t[positive], y[positive]
    b = b[positive] if b is not None else None
    n = int(t.size)
    method = "OLS of ln(flux) on temperature; " + (
        _bootstrap_label(b, len(np.unique(b)) if b is not None else n) if n_boot else "no bootstrap"
    )

    def failed(message: str) -> Q10Fit:
        return Q10Fit(
            math.nan, math.nan, None, None, math.nan, math.nan, math.nan, math.nan, n,
            n_nonpositive, n_nonfinite, n_implausible,
            float(t.min()) if n else math.nan, float(t.max()) if n else math.nan,
            math.nan, math.nan, int(n_boot), 0, 0, level, False, message, method,
        )  # fmt: skip

    if n < 3 or np.ptp(t) == 0:
        return failed(
            f"too few positive fluxes at distinct temperatures ({n}; "
            f"{n_nonpositive} non-positive, {n_nonfinite} non-finite and {n_implausible} "
            "implausible left out)"
        )
    x = t - 10.0  # centre at the reference temperature: ln R10 is the intercept
    ly = np.log(y)
    sums = np.array([n, x.sum(), ly.sum(), (x * x).sum(), (x * ly).sum()])
    slope, intercept10 = (float(v) for v in _ols_from_sums(sums))
    residual = ly - intercept10 - slope * x
    rss = float(residual @ residual)
    tss = float(((ly - ly.mean()) ** 2).sum())
    s2 = rss / (n - 2) if n > 2 else math.inf
    xm = float(x.mean())
    sxx = float(((x - xm) ** 2).sum())
    var_slope = s2 / sxx
    var_int = s2 * (1.0 / n + xm * xm / sxx)
    with np.errstate(over="ignore"):
        r10, q10 = (float(v) for v in np.exp([intercept10, 10.0 * slope]))
    if not (np.isfinite(r10) and np.isfinite(q10) and np.isfinite(var_slope)):
        return failed(f"the fit is degenerate (slope {slope:.3g} per degC)")
    r10_boot = q10_boot = np.empty(0)
    n_failed = n_blocks = 0
    if n_boot > 0:
        gen = _rng(rng)
        matrix, n_blocks = _block_matrix(b, n)
        per_block = np.asarray(
            matrix @ np.column_stack([np.ones(n), x, ly, x * x, x * ly])
        )  # blocks x 5
        slopes, intercepts = [], []
        for counts in _block_counts(gen, n_blocks, int(n_boot)):
            s, i = _ols_from_sums(counts @ per_block)
            slopes.append(s)
            intercepts.append(i)
        slope_b = np.concatenate(slopes)
        int_b = np.concatenate(intercepts)
        with np.errstate(over="ignore"):
            r10_boot = np.exp(int_b)
            q10_boot = np.exp(10.0 * slope_b)
        n_failed = int((~np.isfinite(r10_boot) | ~np.isfinite(q10_boot)).sum())
    return Q10Fit(
        r10=r10,
        q10=q10,
        r10_ci=_ci(r10_boot, level) if n_boot else None,
        q10_ci=_ci(q10_boot, level) if n_boot else None,
        intercept_ln=intercept10 - 10.0 * slope,
        slope_per_degc=slope,
        r10_se=r10 * math.sqrt(var_int),
        q10_se=q10 * 10.0 * math.sqrt(var_slope),
        n=n,
        n_nonpositive_excluded=n_nonpositive,
        n_nonfinite_excluded=n_nonfinite,
        n_implausible_excluded=n_implausible,
        temperature_min_degc=float(t.min()),
        temperature_max_degc=float(t.max()),
        r_squared_ln=1.0 - rss / tss if tss > 0 else 1.0,
        residual_sd_ln=math.sqrt(s2),
        n_boot=int(n_boot),
        n_boot_failed=n_failed,
        n_blocks=int(n_blocks),
        ci_level=level,
        converged=True,
        message="ok",
        method=method,
        r10_boot=r10_boot,
        q10_boot=q10_boot,
    )


# ----------------------------------------------------------------------------------------------
# temperature response: Lloyd & Taylor (1994)


def _lt_u(temperature_degc: np.ndarray) -> np.ndarray:
    """1/(T_ref - T0) - 1/(T - T0), T in K [K-1]."""
    with np.errstate(divide="ignore"):
        return 1.0 / (T_REF_K - T0_K) - 1.0 / (temperature_degc + KELVIN - T0_K)


def lloyd_taylor(temperature_degc: ArrayLike, r10: float, e0_k: float) -> np.ndarray:
    """F = R10 exp(E0 (1/(283.15 - 227.13) - 1/(T + 273.15 - 227.13))) [flux unit].

    Lloyd & Taylor (1994), eq. 11, with the reference temperature 10 degC.

    Examples
    --------
    With the paper's E0 = 308.56 K the ratio F(20 degC)/F(10 degC) is 2.30:

    >>> float(lloyd_taylor(20.0, 1.0, 308.56)).__round__(3)
    2.303
    """
    t = np.asarray(temperature_degc, dtype=float)
    return r10 * np.exp(e0_k * _lt_u(t))


@dataclass(frozen=True)
class LloydTaylorFit:
    """F = R10 exp(E0 (1/(Tref - T0) - 1/(T - T0))) by nonlinear least squares.

    Attributes
    ----------
    r10 : float
        Flux at Tref = 283.15 K (10 degC) [flux unit].
    e0_k : float
        E0 [K].
    r10_ci, e0_k_ci : tuple of float or None
        Percentile bootstrap intervals.
    r10_se, e0_k_se : float
        Asymptotic standard errors from the Jacobian (independent residuals).
    t0_k, t_ref_k : float
        227.13 K and 283.15 K (fixed).
    n : int
        Observations used (all finite fluxes, zero and negative ones included).
    n_nonpositive : int
        Of those, fluxes <= 0 (used: the fit is on the flux scale).
    n_nonfinite_excluded, n_implausible_excluded, n_out_of_range_excluded : int
        Left out: non-finite values; values outside ``TEMPERATURE_RANGE_DEGC`` or above
        ``FLUX_MAX_ABS``; temperatures at or below T0 (-46.02 degC, never inside the range).
    temperature_min_degc, temperature_max_degc : float
    rmse : float
        Root mean square residual [flux unit].
    r_squared : float
    n_boot, n_boot_failed, n_blocks : int
    ci_level : float
    converged : bool
    message, method : str
    r10_boot, e0_k_boot : numpy.ndarray
    """

    r10: float
    e0_k: float
    r10_ci: tuple[float, float] | None
    e0_k_ci: tuple[float, float] | None
    r10_se: float
    e0_k_se: float
    t0_k: float
    t_ref_k: float
    n: int
    n_nonpositive: int
    n_nonfinite_excluded: int
    n_implausible_excluded: int
    n_out_of_range_excluded: int
    temperature_min_degc: float
    temperature_max_degc: float
    rmse: float
    r_squared: float
    n_boot: int
    n_boot_failed: int
    n_blocks: int
    ci_level: float
    converged: bool
    message: str
    method: str
    r10_boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    e0_k_boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def predict(self, temperature_degc: ArrayLike) -> np.ndarray:
        """The fitted response at ``temperature_degc`` [flux unit]."""
        return lloyd_taylor(temperature_degc, self.r10, self.e0_k)

    def q10_between(self, low_degc: float, high_degc: float) -> float:
        """The apparent Q10 between two temperatures, (F(high)/F(low))^(10/(high - low))."""
        ratio = float(
            lloyd_taylor(high_degc, 1.0, self.e0_k) / lloyd_taylor(low_degc, 1.0, self.e0_k)
        )
        return ratio ** (10.0 / (high_degc - low_degc))

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (bootstrap replicates left out)."""
        return _dict(self)


def _lt_profile_rss(u: np.ndarray, y: np.ndarray, w: np.ndarray, e0: float) -> float:
    g = np.exp(e0 * u)
    a = float((w * y * g).sum())
    bb = float((w * g * g).sum())
    return float((w * y * y).sum()) - (a * a / bb if bb > 0 else 0.0)


def _lt_weighted(u: np.ndarray, y: np.ndarray, w: np.ndarray, bracket: tuple[float, float]):
    """Exact weighted fit by the profile over E0 (R10 is linear given E0)."""
    res = optimize.minimize_scalar(
        lambda e: _lt_profile_rss(u, y, w, e), bounds=bracket, method="bounded",
        options={"xatol": 1e-6 * max(1.0, abs(bracket[1]))},
    )  # fmt: skip
    e0 = float(res.x)
    g = np.exp(e0 * u)
    bb = float((w * g * g).sum())
    return (float((w * y * g).sum()) / bb if bb > 0 else math.nan), e0


def lloyd_taylor_fit(
    temperature_degc: ArrayLike,
    flux: ArrayLike,
    *,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
    blocks: ArrayLike | None = None,
    ci_level: float = 0.95,
) -> LloydTaylorFit:
    """Fit Lloyd & Taylor (1994): F = R10 exp(E0 (1/(283.15 - T0) - 1/(T_K - T0))).

    Parameters
    ----------
    temperature_degc : array_like
        Soil temperature [degC]; T_K = T + 273.15, T0 = 227.13 K, Tref = 283.15 K.
    flux : array_like
        Flux [flux unit]; every finite value enters (the fit is on the flux scale).
    n_boot, rng, blocks, ci_level
        As in :func:`q10_fit`.

    Returns
    -------
    LloydTaylorFit

    Notes
    -----
    Nonlinear least squares on the flux scale (``scipy.optimize.least_squares``, trust
    region reflective, analytic Jacobian), started from the log-linear fit
    ln F = ln R10 + E0 u, u = 1/(Tref - T0) - 1/(T_K - T0), on the positive fluxes. For a
    given E0 the model is linear in R10, so each bootstrap replicate minimises the profile
    RSS(E0) = S_yy - S_yg^2 / S_gg (g = exp(E0 u)) evaluated from per-block sums on a grid
    around the estimate, refined by a parabola; replicates whose minimum lies at the grid's
    edge are fitted exactly. Reference: Lloyd J. & Taylor J.A. (1994) On the temperature
    dependence of soil respiration. Functional Ecology 8, 315-323, doi:10.2307/2389824.

    Examples
    --------
    >>> t = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    >>> fit = lloyd_taylor_fit(t, lloyd_taylor(t, 3.0, 308.56), n_boot=0)
    >>> round(fit.r10, 6), round(fit.e0_k, 3)
    (3.0, 308.56)
    """
    level = _check_level(ci_level)
    t, y, b = _arrays(temperature_degc, flux, blocks)
    finite = np.isfinite(t) & np.isfinite(y)
    plausible = finite & _plausible(t, y)
    in_range = plausible & (t + KELVIN > T0_K)
    n_nonfinite = int((~finite).sum())
    n_implausible = int((finite & ~plausible).sum())
    n_out = int((plausible & ~in_range).sum())
    t, y = t[in_range], y[in_range]
    b = b[in_range] if b is not None else None
    n = int(t.size)
    n_nonpositive = int((y <= 0).sum())
    method = "nonlinear least squares (scipy least_squares, trf); " + (
        _bootstrap_label(b, len(np.unique(b)) if b is not None else n) if n_boot else "no bootstrap"
    )

    def failed(message: str) -> LloydTaylorFit:
        return LloydTaylorFit(
            math.nan, math.nan, None, None, math.nan, math.nan, T0_K, T_REF_K, n,
            n_nonpositive, n_nonfinite, n_implausible, n_out,
            float(t.min()) if n else math.nan, float(t.max()) if n else math.nan,
            math.nan, math.nan, int(n_boot), 0, 0, level, False, message, method,
        )  # fmt: skip

    if n < 3 or np.ptp(t) == 0:
        return failed(f"too few fluxes at distinct temperatures ({n})")
    u = _lt_u(t)
    pos = y > 0
    e0_start, r10_start = 300.0, max(float(np.mean(y)), 1e-6)
    if pos.sum() >= 3 and np.ptp(u[pos]) > 0:
        lu, ly = u[pos], np.log(y[pos])
        sums = np.array([lu.size, lu.sum(), ly.sum(), (lu * lu).sum(), (lu * ly).sum()])
        slope, intercept = (float(v) for v in _ols_from_sums(sums))
        lo_e0, hi_e0 = E0_BOUNDS_K
        if np.isfinite(slope) and lo_e0 < slope < hi_e0 and abs(intercept) < 50:
            e0_start, r10_start = slope, math.exp(intercept)

    def residuals(p):
        return p[0] * np.exp(p[1] * u) - y

    def jacobian(p):
        g = np.exp(p[1] * u)
        return np.column_stack([g, p[0] * u * g])

    y_scale = max(float(np.abs(y).mean()), 1e-12)
    bounds = ([-100.0 * FLUX_MAX_ABS, E0_BOUNDS_K[0]], [100.0 * FLUX_MAX_ABS, E0_BOUNDS_K[1]])
    start = [float(np.clip(r10_start, -FLUX_MAX_ABS, FLUX_MAX_ABS)), float(e0_start)]
    try:
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            res = optimize.least_squares(
                residuals, start, jac=jacobian, method="trf", bounds=bounds,
                x_scale=[y_scale, 100.0], xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=1000,
            )  # fmt: skip
    except ValueError as exc:  # residuals not finite: a degenerate data set
        return failed(f"nonlinear least squares failed: {exc}")
    r10, e0 = (float(v) for v in res.x)
    if not (res.success and np.isfinite(r10) and np.isfinite(e0)):
        return failed(f"nonlinear least squares did not converge: {res.message}")
    if not E0_BOUNDS_K[0] < e0 < E0_BOUNDS_K[1]:
        return failed(f"E0 ran to the edge of its search range ({e0:.0f} K)")
    resid = residuals(res.x)
    rss = float(resid @ resid)
    s2 = rss / (n - 2) if n > 2 else math.inf
    jac = jacobian(res.x)
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
        r10_se, e0_se = (float(math.sqrt(max(v, 0.0))) for v in np.diag(cov))
    except np.linalg.LinAlgError:
        r10_se = e0_se = math.nan
    tss = float(((y - y.mean()) ** 2).sum())
    r10_boot = e0_boot = np.empty(0)
    n_failed = n_blocks = 0
    if n_boot > 0:
        r10_boot, e0_boot, n_blocks = _lt_bootstrap(u, y, b, e0, e0_se, int(n_boot), _rng(rng))
        n_failed = int((~np.isfinite(r10_boot) | ~np.isfinite(e0_boot)).sum())
    return LloydTaylorFit(
        r10=r10,
        e0_k=e0,
        r10_ci=_ci(r10_boot, level) if n_boot else None,
        e0_k_ci=_ci(e0_boot, level) if n_boot else None,
        r10_se=r10_se,
        e0_k_se=e0_se,
        t0_k=T0_K,
        t_ref_k=T_REF_K,
        n=n,
        n_nonpositive=n_nonpositive,
        n_nonfinite_excluded=n_nonfinite,
        n_implausible_excluded=n_implausible,
        n_out_of_range_excluded=n_out,
        temperature_min_degc=float(t.min()),
        temperature_max_degc=float(t.max()),
        rmse=math.sqrt(rss / n),
        r_squared=1.0 - rss / tss if tss > 0 else 1.0,
        n_boot=int(n_boot),
        n_boot_failed=n_failed,
        n_blocks=int(n_blocks),
        ci_level=level,
        converged=True,
        message="ok",
        method=method,
        r10_boot=r10_boot,
        e0_k_boot=e0_boot,
    )


def _lt_bootstrap(u, y, b, e0, e0_se, n_boot, gen, n_grid: int = 81):
    """Bootstrap replicates of (R10, E0) by the profile RSS on a grid (see lloyd_taylor_fit)."""
    n = u.size
    matrix, n_blocks = _block_matrix(b, n)
    half = max(8.0 * (e0_se if np.isfinite(e0_se) else 0.0), 0.25 * abs(e0), 25.0)
    lo_e0, hi_e0 = E0_BOUNDS_K
    grid = np.linspace(max(e0 - half, lo_e0), min(e0 + half, hi_e0), n_grid)
    # per-block sums of y g and g g at each grid E0, and of y y
    syg = np.zeros((n_blocks, n_grid))
    sgg = np.zeros((n_blocks, n_grid))
    rows = max(1, _CHUNK_CELLS // n_grid)
    csc = matrix.tocsc()
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        with np.errstate(over="ignore"):
            g = np.exp(np.outer(u[start:stop], grid))
        part = csc[:, start:stop]
        syg += np.asarray(part @ (y[start:stop, None] * g))
        sgg += np.asarray(part @ (g * g))
    syy = np.asarray(matrix @ (y * y))
    r10_out, e0_out = [], []
    lo_bracket = (max(e0 - 20.0 * half, lo_e0), min(e0 + 20.0 * half, hi_e0))
    for counts in _block_counts(gen, n_blocks, n_boot):
        a = counts @ syg
        bb = counts @ sgg
        c = counts @ syy
        with np.errstate(divide="ignore", invalid="ignore"):
            rss = c[:, None] - a * a / bb
            ratio = a / bb
        j = np.nanargmin(np.where(np.isfinite(rss), rss, np.inf), axis=1)
        inner = (j > 0) & (j < n_grid - 1)
        jj = np.clip(j, 1, n_grid - 2)
        idx = np.arange(len(j))
        r0, r1, r2 = rss[idx, jj - 1], rss[idx, jj], rss[idx, jj + 1]
        den = r0 - 2.0 * r1 + r2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(den > 0, 0.5 * (r0 - r2) / den, 0.0)
        shift = np.clip(shift, -1.0, 1.0)
        step = grid[1] - grid[0]
        e0_rep = grid[jj] + shift * step
        # R10 at the refined E0: quadratic interpolation of ln(S_yg / S_gg) over the 3 points
        with np.errstate(divide="ignore", invalid="ignore"):
            l0, l1, l2 = (np.log(ratio[idx, k]) for k in (jj - 1, jj, jj + 1))
        lr = l1 + 0.5 * shift * (l2 - l0) + 0.5 * shift * shift * (l2 - 2.0 * l1 + l0)
        r10_rep = np.exp(lr)
        bad = ~inner | ~np.isfinite(r10_rep)
        for k in np.flatnonzero(bad):
            w = np.asarray(counts[k] @ matrix).ravel()
            r10_rep[k], e0_rep[k] = _lt_weighted(u, y, w, lo_bracket)
        r10_out.append(r10_rep)
        e0_out.append(e0_rep)
    return np.concatenate(r10_out), np.concatenate(e0_out), n_blocks


# ----------------------------------------------------------------------------------------------
# comparing two systems' temperature responses


@dataclass(frozen=True)
class TemperatureResponseDifference:
    """System b minus system a on each parameter of a temperature response.

    Attributes
    ----------
    parameter : str
        ``r10``, ``q10`` or ``e0_k``.
    a, b : float
        The two estimates.
    difference : float
        b - a [the parameter's unit].
    difference_ci : tuple of float or None
        Percentile interval of the difference of independent bootstrap replicates.
    ratio : float
        b / a [-].
    ratio_ci : tuple of float or None
    significant : bool or None
        Whether ``difference_ci`` excludes 0 (None without replicates).
    n_boot : int
        Replicate pairs used.
    ci_level : float
    method : str
    """

    parameter: str
    a: float
    b: float
    difference: float
    difference_ci: tuple[float, float] | None
    ratio: float
    ratio_ci: tuple[float, float] | None
    significant: bool | None
    n_boot: int
    ci_level: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return _dict(self)


def compare_temperature_response(
    a: Q10Fit | LloydTaylorFit, b: Q10Fit | LloydTaylorFit, *, ci_level: float | None = None
) -> dict[str, TemperatureResponseDifference]:
    """Compare two systems' fits of the same model, parameter by parameter (b - a).

    Parameters
    ----------
    a, b : Q10Fit or LloydTaylorFit
        Fits of the same model, each with its own bootstrap (the systems are independent
        samples, so replicate k of a is paired with replicate k of b).
    ci_level : float, optional
        Defaults to the fits' level.

    Returns
    -------
    dict
        ``{"r10": ..., "q10": ...}`` for Q10 fits, ``{"r10": ..., "e0_k": ...}`` for
        Lloyd-Taylor fits, each a :class:`TemperatureResponseDifference`.

    Examples
    --------
    >>> t = np.linspace(0, 25, 60)
    >>> fa = q10_fit(t, q10_model(t, 2.0, 2.0) * np.exp(0.1 * np.sin(t)), n_boot=200, rng=1)
    >>> fb = q10_fit(t, q10_model(t, 3.0, 2.0) * np.exp(0.1 * np.cos(t)), n_boot=200, rng=2)
    >>> d = compare_temperature_response(fa, fb)
    >>> round(d["r10"].ratio, 1), d["r10"].significant
    (1.5, True)
    """
    if type(a) is not type(b):
        raise ConfigError(
            f"cannot compare a {type(a).__name__} with a {type(b).__name__}: fit one model"
        )
    level = _check_level(a.ci_level if ci_level is None else ci_level)
    names = ("r10", "q10") if isinstance(a, Q10Fit) else ("r10", "e0_k")
    out = {}
    for name in names:
        va, vb = float(getattr(a, name)), float(getattr(b, name))
        ba = np.asarray(getattr(a, f"{name}_boot"), dtype=float)
        bb = np.asarray(getattr(b, f"{name}_boot"), dtype=float)
        k = min(ba.size, bb.size)
        diff_ci = ratio_ci = None
        significant = None
        if k >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                diff_ci = _ci(bb[:k] - ba[:k], level)
                ratio_ci = _ci(bb[:k] / ba[:k], level)
            if diff_ci is not None:
                significant = not (diff_ci[0] <= 0.0 <= diff_ci[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = vb / va if va != 0 else math.nan
        out[name] = TemperatureResponseDifference(
            parameter=name,
            a=va,
            b=vb,
            difference=vb - va,
            difference_ci=diff_ci,
            ratio=ratio,
            ratio_ci=ratio_ci,
            significant=significant,
            n_boot=int(k),
            ci_level=level,
            method="difference of independent bootstrap replicates (percentile interval)",
        )
    return out


# ----------------------------------------------------------------------------------------------
# time: local standard time and the diel cycle


def _utc_index(times: Any, what: str = "times") -> pd.DatetimeIndex:
    try:
        index = pd.DatetimeIndex(pd.to_datetime(pd.Series(times).reset_index(drop=True)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: not date-times ({exc})") from exc
    if index.tz is None:
        raise ConfigError(f"{what}: naive date-times; give UTC (timezone-aware) times")
    return index.tz_convert("UTC").as_unit("ns")  # asi8 is then in ns (pandas 3 defaults to us)


def _standard_offset_s(zone: str | float | dt.timedelta, index: pd.DatetimeIndex) -> np.ndarray:
    """Standard (non-DST) UTC offset of ``zone`` at each instant [s]."""
    if isinstance(zone, dt.timedelta):
        return np.full(len(index), zone.total_seconds())
    if isinstance(zone, int | float) and not isinstance(zone, bool):
        if not -14 <= zone <= 14:
            raise ConfigError(f"zone {zone!r}: a UTC offset in hours must lie in [-14, 14]")
        return np.full(len(index), float(zone) * 3600.0)
    try:
        tz = ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"zone {zone!r}: not a time zone name (e.g. Asia/Tokyo)") from exc
    if len(index) == 0:
        return np.empty(0)
    days = index.floor("D")
    codes, uniques = pd.factorize(days)
    offsets = np.empty(len(uniques))
    for k, day in enumerate(uniques):
        moment = (day + pd.Timedelta(hours=12)).to_pydatetime().astimezone(tz)
        offset = moment.utcoffset() or dt.timedelta(0)
        offsets[k] = (offset - (moment.dst() or dt.timedelta(0))).total_seconds()
    return offsets[codes]


def to_local_standard(times_utc: Any, zone: str | float | dt.timedelta) -> pd.DatetimeIndex:
    """UTC instants as naive local standard time (the zone's standard offset, no DST).

    Parameters
    ----------
    times_utc : array_like of datetime
        Timezone-aware instants.
    zone : str, float or datetime.timedelta
        An IANA zone (``Asia/Tokyo``; COSORE's ``Etc/GMT-9`` is UTC+9, the POSIX sign being
        inverted), or a fixed offset in hours east of UTC.

    Examples
    --------
    >>> t = pd.to_datetime(["2017-07-01T03:00Z", "2017-01-01T03:00Z"])
    >>> [str(x) for x in to_local_standard(t, "Etc/GMT-9")]
    ['2017-07-01 12:00:00', '2017-01-01 12:00:00']
    >>> [str(x) for x in to_local_standard(t, "Europe/Berlin")]  # CET all year, no CEST
    ['2017-07-01 04:00:00', '2017-01-01 04:00:00']
    """
    index = _utc_index(times_utc, "times_utc")
    offsets = _standard_offset_s(zone, index)
    return index.tz_localize(None) + pd.to_timedelta(offsets, unit="s")


def diel(
    times_local_standard: Any, flux: ArrayLike, *, zone: str | float | None = None,
    ci_level: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """Mean and spread of the flux by hour of local standard time.

    Parameters
    ----------
    times_local_standard : array_like of datetime
        Naive local standard times (see :func:`to_local_standard`); or, with ``zone``,
        timezone-aware UTC times, converted here.
    flux : array_like
        Flux [flux unit]; non-finite values are left out.
    zone : str or float, optional
        Time zone of the site, when the times are UTC.
    ci_level : float
        Level of the t interval of each hour's mean.

    Returns
    -------
    pandas.DataFrame
        24 rows, ``hour_local_standard`` 0..23 (the hour starting then), and ``n``,
        ``flux_mean``, ``flux_sd``, ``flux_se``, ``flux_mean_ci_lower``,
        ``flux_mean_ci_upper``, ``flux_median``, ``flux_q25``, ``flux_q75``, ``flux_iqr``,
        ``flux_min``, ``flux_max``. Hours without data have n = 0 and NaN.

    Examples
    --------
    >>> t = pd.date_range("2020-01-01", periods=96, freq="30min")
    >>> d = diel(t, t.hour.to_numpy(dtype=float))
    >>> int(d.loc[13, "n"]), float(d.loc[13, "flux_mean"]), float(d.loc[13, "flux_sd"])
    (4, 13.0, 0.0)
    """
    level = _check_level(ci_level)
    if zone is not None:
        local = to_local_standard(times_local_standard, zone)
    else:
        try:
            local = pd.DatetimeIndex(pd.to_datetime(pd.Series(times_local_standard)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"times_local_standard: not date-times ({exc})") from exc
        if local.tz is not None:
            raise ConfigError(
                "times_local_standard: timezone-aware times; convert with to_local_standard() "
                "or pass zone="
            )
    y = np.asarray(flux, dtype=float).ravel()
    if y.size != len(local):
        raise ConfigError(f"{len(local)} times for {y.size} fluxes")
    keep = np.isfinite(y) & ~pd.isna(local)
    frame = pd.DataFrame({"hour": np.asarray(local.hour)[keep], "flux": y[keep]})
    grouped = frame.groupby("hour")["flux"]
    out = pd.DataFrame({"hour_local_standard": np.arange(24)})
    stats_frame = pd.DataFrame(
        {
            "n": grouped.count(),
            "flux_mean": grouped.mean(),
            "flux_sd": grouped.std(ddof=1),
            "flux_median": grouped.median(),
            "flux_q25": grouped.quantile(0.25),
            "flux_q75": grouped.quantile(0.75),
            "flux_min": grouped.min(),
            "flux_max": grouped.max(),
        }
    )
    out = out.merge(stats_frame, left_on="hour_local_standard", right_index=True, how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["flux_se"] = out["flux_sd"] / np.sqrt(n)
        tq = stats.t.ppf(0.5 + level / 2.0, np.maximum(n - 1, 1))
    half = np.where(n >= 2, tq * out["flux_se"], np.nan)
    out["flux_mean_ci_lower"] = out["flux_mean"] - half
    out["flux_mean_ci_upper"] = out["flux_mean"] + half
    out["flux_iqr"] = out["flux_q75"] - out["flux_q25"]
    columns = [
        "hour_local_standard", "n", "flux_mean", "flux_sd", "flux_se", "flux_mean_ci_lower",
        "flux_mean_ci_upper", "flux_median", "flux_q25", "flux_q75", "flux_iqr", "flux_min",
        "flux_max",
    ]  # fmt: skip
    return out[columns]


# ----------------------------------------------------------------------------------------------
# gap-filling


def _infer_interval_s(times: pd.DatetimeIndex) -> float:
    seconds = np.unique(times.asi8 // 10**9)
    if seconds.size < 2:
        raise ConfigError("interval_s: cannot infer the interval from fewer than two times")
    step = float(np.median(np.diff(seconds)))
    # the usual logging intervals; else the median rounded to a whole minute
    for nice in (60, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if abs(step - nice) <= 0.1 * nice:
            return float(nice)
    return float(max(60.0, round(step / 60.0) * 60.0))


def _window_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    cum = np.concatenate([[0.0], np.cumsum(values)])
    return cum[hi] - cum[lo]


@dataclass(frozen=True)
class _WindowFit:
    r10_t: np.ndarray  # interpolated R10 at each slot
    r10_w: np.ndarray
    sd_w: np.ndarray
    se_r10_w: np.ndarray
    n_w: np.ndarray
    ok_w: np.ndarray
    centres_ns: np.ndarray  # of the windows
    slots_ns: np.ndarray  # centres of the slots

    def interp(self, per_window: np.ndarray) -> np.ndarray:
        return np.interp(self.slots_ns, self.centres_ns[self.ok_w], per_window[self.ok_w])


@dataclass(frozen=True)
class _Windows:
    """Moving windows [lo, hi) of slots centred on each day (step 2 of gap_fill)."""

    lo: np.ndarray
    hi: np.ndarray
    centres_ns: np.ndarray
    slots_ns: np.ndarray
    needed: int

    def fit(self, measured: np.ndarray, f: np.ndarray, g: np.ndarray) -> _WindowFit | None:
        fm = np.where(measured, f, 0.0)
        gm = np.where(measured, g, 0.0)
        n_w = _window_sums(measured.astype(float), self.lo, self.hi)
        s_fg = _window_sums(fm * gm, self.lo, self.hi)
        s_gg = _window_sums(gm * gm, self.lo, self.hi)
        s_ff = _window_sums(fm * fm, self.lo, self.hi)
        ok_w = (n_w >= self.needed) & (s_gg > 0)
        if not ok_w.any():
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            r10_w = s_fg / s_gg
            rss_w = np.maximum(s_ff - s_fg * s_fg / s_gg, 0.0)
            sd_w = np.sqrt(rss_w / np.maximum(n_w - 1.0, 1.0))
            se_r10_w = sd_w / np.sqrt(s_gg)
        r10_t = np.interp(self.slots_ns, self.centres_ns[ok_w], r10_w[ok_w])
        return _WindowFit(r10_t, r10_w, sd_w, se_r10_w, n_w, ok_w, self.centres_ns, self.slots_ns)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Id of the run of consecutive True values of each slot (-1 elsewhere), and the index
    of the run's first slot for each slot (-1 elsewhere)."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    run = np.where(mask, np.cumsum(starts) - 1, -1)
    first = np.flatnonzero(starts)
    run_start = np.where(mask, first[np.maximum(run, 0)] if first.size else -1, -1)
    return run, run_start


def _ar1_run_variances(
    a: np.ndarray, run: np.ndarray, run_start: np.ndarray, rho: float, n_runs: int
) -> np.ndarray:
    """Variance of the sum over each run of errors a_i with correlation rho^|i-j| (within the
    run only)."""
    if n_runs == 0:
        return np.empty(0)
    in_run = run >= 0
    a = np.where(in_run, a, 0.0)
    if rho <= 0:
        return np.bincount(run[in_run], weights=(a * a)[in_run], minlength=n_runs)
    shifted = np.concatenate([[0.0], a[:-1]])
    s = signal.lfilter([rho], [1.0, -rho], shifted)
    # remove what the recursion carried in from before each run's start
    idx = np.arange(a.size)
    with np.errstate(under="ignore"):
        carry = np.where(in_run, s[np.maximum(run_start, 0)] * rho ** (idx - run_start), 0.0)
    terms = a * a + 2.0 * a * (s - carry)
    return np.bincount(run[in_run], weights=terms[in_run], minlength=n_runs)


def _artificial_gap_errors(
    predict: Any,
    measured: np.ndarray,
    f: np.ndarray,
    run_len: np.ndarray,
    gen: np.random.Generator,
    *,
    relative: bool,
    without_temperature: np.ndarray | None = None,
    min_gaps: int = 5,
    target_gaps: int = 40,
    max_rounds: int = 25,
    min_measured: float = 0.3,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """RMS error of gap sums, by gap length, from artificial gaps.

    Gap lengths are grouped in classes [2^k, 2^(k+1)) slots. For each class present among
    the real gaps, gaps of the class's median length are cut out of the measured data
    (non-overlapping, at least ``min_measured`` of each measured) and filled by
    ``predict(mask, cut_temperature)`` (the same method, from the remaining data); the error
    of each gap is the mean of (fill - measured) over its measured slots, divided by the mean
    |fill| there when ``relative``. Where most real gaps of a class have no soil temperature
    either (``without_temperature``, per real run: a system that was off), the artificial
    gaps lose theirs too (``cut_temperature``): their fill then follows the temperature
    interpolated across them, as the real fill does, and the error includes that. Classes
    with fewer than ``min_gaps`` artificial gaps are interpolated on log-log axes between the
    classes that have them; beyond the longest such class the error grows as the square root
    of the length (a random walk), below the shortest it is held.

    Returns, per real run, the RMS error of its mean (relative, or in flux units), and a
    summary per class.
    """
    n = measured.size
    classes = np.floor(np.log2(np.maximum(run_len, 1))).astype(int)
    rows: list[dict[str, Any]] = []
    for k in np.unique(classes):
        length = int(np.median(run_len[classes == k]))
        if length >= n // 2:
            continue
        cut = without_temperature is not None and bool(
            np.mean(without_temperature[classes == k]) >= 0.5
        )
        errors: list[float] = []
        per_round = int(np.clip(0.1 * n / (2 * length), 1, target_gaps))
        rounds = 0
        while len(errors) < target_gaps and rounds < max_rounds:
            rounds += 1
            starts = np.sort(gen.integers(0, n - length, size=4 * per_round))
            chosen: list[int] = []
            end = -1
            for st in starts:
                if st > end and measured[st : st + length].mean() >= min_measured:
                    chosen.append(int(st))
                    end = st + 2 * length
                if len(chosen) >= per_round:
                    break
            if not chosen:
                continue
            mask = measured.copy()
            for st in chosen:
                mask[st : st + length] = False
            pred = predict(mask, cut)
            if pred is None:
                continue
            for st in chosen:
                sl = slice(st, st + length)
                m = measured[sl]
                error = float((pred[sl][m] - f[sl][m]).mean())
                if relative:
                    scale = float(np.abs(pred[sl][m]).mean())
                    if scale > 0:
                        errors.append(error / scale)
                else:
                    errors.append(error)
        if errors:
            err = np.asarray(errors)
            rows.append(
                {
                    "length_slots": length,
                    "n_real_gaps": int((classes == k).sum()),
                    "n_artificial_gaps": int(err.size),
                    "error": "relative" if relative else "flux unit",
                    "temperature_cut": cut,
                    "rms_error": float(np.sqrt(np.mean(err**2))),
                    "mean_error": float(err.mean()),
                }
            )
    good = [r for r in rows if r["n_artificial_gaps"] >= min_gaps]
    if not good:
        return np.zeros(run_len.size), rows
    x = np.log([r["length_slots"] for r in good])
    y = np.log([max(r["rms_error"], 1e-300) for r in good])
    lengths = np.log(np.maximum(run_len, 1).astype(float))
    rms = np.exp(np.interp(lengths, x, y))
    longer = lengths > x[-1]  # grows as a random walk beyond the longest class measured
    rms[longer] = np.exp(y[-1]) * np.sqrt(np.exp(lengths[longer] - x[-1]))
    return rms, rows


def _leave_one_out_linear(centres: np.ndarray, f: np.ndarray, measured: np.ndarray):
    """At each measured slot, the line between its measured neighbours (held at the ends)."""
    idx = np.flatnonzero(measured)
    out = np.full(f.size, np.nan)
    if idx.size < 3:
        return out
    x, v = centres[idx], f[idx]
    left, right = x[:-2], x[2:]
    w = (x[1:-1] - left) / (right - left)
    out[idx[1:-1]] = v[:-2] + w * (v[2:] - v[:-2])
    out[idx[0]], out[idx[-1]] = v[1], v[-2]
    return out


def _response(model: str, sensitivity: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """g(T) of gap_fill with the sensitivity :func:`_sensitivity` found (``q10``, ``e0_k``)."""
    if model == "q10":
        return np.power(sensitivity["q10"], (t - 10.0) / 10.0)
    return np.exp(sensitivity["e0_k"] * _lt_u(t))


def _sensitivity(
    model: str,
    t_fit: np.ndarray,
    f_fit: np.ndarray,
    t_all: np.ndarray,
    q10: float | None,
    e0_k: float | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The constant temperature sensitivity (step 1 of gap_fill) and g(T) at every slot."""
    if model == "q10":
        if q10 is None:
            long_term = q10_fit(t_fit, f_fit, n_boot=0)
            if not long_term.converged:
                raise FitError(f"gap_fill: long-term Q10 fit failed: {long_term.message}")
            value = long_term.q10
            if not 1e-3 < value < 1e3:
                raise FitError(f"gap_fill: the long-term Q10 of {value:.3g} is not plausible")
        else:
            value = float(q10)
            if not 1e-3 < value < 1e3:
                raise ConfigError(f"q10 {q10!r}: must lie between 0.001 and 1000")
        g = np.power(value, (t_all - 10.0) / 10.0)
        info: dict[str, Any] = {"q10": value}
    else:
        if e0_k is None:
            long_term = lloyd_taylor_fit(t_fit, f_fit, n_boot=0)
            if not long_term.converged:
                raise FitError(f"gap_fill: long-term Lloyd-Taylor fit failed: {long_term.message}")
            value = long_term.e0_k
        else:
            value = float(e0_k)
            if not E0_BOUNDS_K[0] < value < E0_BOUNDS_K[1]:
                raise ConfigError(
                    f"e0_k {e0_k!r}: must lie between {E0_BOUNDS_K[0]:g} and {E0_BOUNDS_K[1]:g} K"
                )
        g = np.exp(value * _lt_u(t_all))
        info = {"e0_k": value}
    if not np.all(np.isfinite(g)):
        raise FitError("gap_fill: temperature response not finite")
    given = q10 if model == "q10" else e0_k
    info["sensitivity_source"] = "given" if given is not None else "long-term fit"
    return g, info


def gap_fill(
    frame: pd.DataFrame,
    *,
    model: str = "auto",
    window_days: float = 5.0,
    interval_s: float | None = None,
    start: Any = None,
    end: Any = None,
    min_points: int | None = None,
    q10: float | None = None,
    e0_k: float | None = None,
    zone: str | float | None = None,
    time: str = "begin_utc",
    flux: str = "flux",
    temperature: str = "soil_temperature_degc",
    flux_se: str | None = "flux_se",
    fill_error: str = "artificial_gaps",
    rng: np.random.Generator | int | None = None,
) -> pd.DataFrame:
    """A regular series of one system's flux with its gaps filled.

    The moving-window temperature-response method with a constant temperature sensitivity
    and R10 interpolated across gaps, the best of the nine methods compared by
    Gomez-Casanovas et al. (2013), doi:10.1111/gcb.12127 (see Notes).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per observation of ONE series (a chamber, or a plot mean): columns ``time``
        (timezone-aware UTC), ``flux`` [flux unit], ``temperature`` [degC] and, optionally,
        ``flux_se`` [flux unit]. Rows with a temperature but no flux count as gaps with a
        measured temperature.
    model : {"auto", "q10", "lloyd_taylor", "linear"}
        Temperature response, or linear interpolation in time. ``auto`` (default): Q10
        where at least half of the measured slots have a soil temperature and at least 90 %
        of the fluxes are positive, else linear interpolation (CH4 uptake, no temperature;
        the second best method of Gomez-Casanovas et al. 2013). ``attrs["model"]`` and
        ``attrs["model_reason"]`` say which was used and why.
    window_days : float
        Length of the moving window centred on each day in which R10 is estimated [d].
    interval_s : float, optional
        Slot length of the regular series [s]; default: the series' own interval (the median
        spacing, rounded to a usual logging interval). Several observations in one slot are
        averaged.
    start, end : datetime-like, optional
        Period [start, end) of the regular series; default: the span of the observations.
    min_points : int, optional
        Measured slots a window needs; default max(5, 10 % of the window's slots). Windows
        with fewer get R10 by interpolation between their neighbours.
    q10, e0_k : float, optional
        A fixed temperature sensitivity; default: the long-term fit of this series
        (:func:`q10_fit` or :func:`lloyd_taylor_fit` on the measured slots).
    zone : str or float, optional
        The site's time zone: adds ``time_local_standard`` (used by :func:`sums`).
    time, flux, temperature, flux_se : str
        Column names in ``frame`` (``flux_se`` may be None or absent).
    fill_error : {"artificial_gaps", "model"}
        How the error shared by all values of one gap is found: from artificial gaps of the
        same length cut out of the measured data (default), or from the model alone (the SE
        of the interpolated R10).
    rng : numpy.random.Generator or int, optional
        Places the artificial gaps (None: seed 0, so results repeat).

    Returns
    -------
    pandas.DataFrame
        One row per slot: ``time_utc`` (slot start), [``time_local_standard``],
        ``duration_s``, ``flux`` (measured, or filled where ``filled``), ``filled`` (bool),
        ``flux_model`` (the window model at every slot), ``flux_se`` (the measurement's SE;
        NaN where filled), ``fill_se`` (uncertainty of a filled value; NaN where measured)
        and its two parts ``fill_sd_residual`` (scatter, AR(1) in time) and
        ``fill_se_level`` (shared by every value of the gap), ``temperature_degc``,
        ``temperature_filled`` (bool: interpolated in time),
        ``r10`` (the interpolated R10 of the slot), ``n_observations``.
        ``attrs`` holds the method, the sensitivity used and the settings.

    Notes
    -----
    1. The long-term temperature sensitivity (Q10, or E0 for Lloyd-Taylor) is fitted once on
       all measured slots and held constant ("constant temperature sensitivity").
    2. For each day, a window of ``window_days`` centred on its middle gives
       R10_w = sum(F g) / sum(g^2) over its measured slots, g = Q10^((T - 10)/10) or
       exp(E0 u(T)) (least squares on the flux scale with the sensitivity fixed), and the
       residual SD s_w = sqrt(RSS / (n - 1)).
    3. R10 and s_w are interpolated linearly in time between the centres of the windows with
       enough data (held constant before the first and after the last): across gaps, R10 is
       the linear interpolation of the reference respiration on both sides.
    4. A gap slot gets F = R10(t) g(T(t)), flagged ``filled``; measured slots keep their
       value.
    6. Uncertainty of a filled value, in two parts. Scatter: the window's residual SD s(t),
       times the persistent (AR(1)) share of the residual variance, correlated between slots
       as rho^|i - j| (rho from the residual autocovariances, see :func:`sums`). Level: an
       error shared by every slot of one gap, at least the SE of the interpolated R10
       (inflated by sqrt((1 + rho)/(1 - rho)) for autocorrelated residuals); with
       ``fill_error="artificial_gaps"``, raised to what artificial gaps of the same length
       show: the RMS relative error of their sums, times the gap's model sum, less the
       scatter part. Where a gap has no soil temperature either (the system was off), the
       artificial gaps of its length lose theirs too, so that the error of filling with the
       interpolated temperature is counted (``attrs["artificial_gap_classes"]``,
       ``temperature_cut``). ``fill_se`` = sqrt(scatter^2 + level^2) per value.
    5. Temperature missing in a slot is interpolated linearly in time (flagged
       ``temperature_filled``): over long gaps without temperature the fill then follows the
       interpolated temperature, not a diel cycle.
    """
    model_key = str(model).strip().lower().replace("-", "_")
    if model_key not in ("auto", "q10", "lloyd_taylor", "linear"):
        raise ConfigError(f"model {model!r}: expected auto, q10, lloyd_taylor or linear")
    if fill_error not in ("artificial_gaps", "model"):
        raise ConfigError(f"fill_error {fill_error!r}: expected 'artificial_gaps' or 'model'")
    if not (np.isfinite(window_days) and window_days > 0):
        raise ConfigError(f"window_days {window_days!r}: must be > 0")
    required = (time, flux) if model_key in ("auto", "linear") else (time, flux, temperature)
    for column in required:
        if column not in frame.columns:
            raise ConfigError(f"gap_fill: frame has no column {column!r}")
    times = _utc_index(frame[time], time)
    y = pd.to_numeric(frame[flux], errors="coerce").to_numpy(dtype=float)
    temp = (
        pd.to_numeric(frame[temperature], errors="coerce").to_numpy(dtype=float)
        if temperature in frame.columns
        else np.full(len(frame), np.nan)
    )
    has_se = flux_se is not None and flux_se in frame.columns
    se = (
        pd.to_numeric(frame[flux_se], errors="coerce").to_numpy(dtype=float)
        if has_se
        else np.full(len(frame), np.nan)
    )
    finite_y = np.isfinite(y)
    finite_t = np.isfinite(temp)
    lo_t, hi_t = TEMPERATURE_RANGE_DEGC
    with np.errstate(invalid="ignore"):
        bad_y = finite_y & (np.abs(y) > FLUX_MAX_ABS)
        bad_t = finite_t & ~((temp > lo_t) & (temp < hi_t))
    y = np.where(bad_y, np.nan, y)  # implausible values are missing values (counted)
    temp = np.where(bad_t, np.nan, temp)
    se = np.where(np.isfinite(se) & (np.abs(se) <= FLUX_MAX_ABS), np.abs(se), np.nan)
    valid_time = ~pd.isna(times)
    step = float(interval_s) if interval_s is not None else _infer_interval_s(times[valid_time])
    if not (np.isfinite(step) and step > 0):
        raise ConfigError(f"interval_s {interval_s!r}: must be > 0")
    step_ns = round(step * 1e9)
    t_ns = times.asi8
    if start is None:
        if not valid_time.any():
            raise FitError("gap_fill: no observation has a time")
        first = int(t_ns[valid_time].min())
        origin = first - first % step_ns
    else:
        origin = int(_utc_index([pd.Timestamp(start)], "start").asi8[0])
    if end is None:
        last = int(t_ns[valid_time].max())
        stop = last - last % step_ns + step_ns
    else:
        stop = int(_utc_index([pd.Timestamp(end)], "end").asi8[0])
    n_slots = math.ceil((stop - origin) / step_ns)
    if n_slots <= 0:
        raise ConfigError("gap_fill: end is not after start")
    slot = np.full(len(frame), -1, dtype=np.int64)
    slot[valid_time] = (t_ns[valid_time] - origin) // step_ns
    inside = (slot >= 0) & (slot < n_slots)

    def slot_mean(values: np.ndarray):
        ok = inside & np.isfinite(values)
        count = np.bincount(slot[ok], minlength=n_slots).astype(float)
        total = np.bincount(slot[ok], weights=values[ok], minlength=n_slots)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(count > 0, total / count, np.nan), count

    f_slot, n_flux = slot_mean(y)
    t_slot, _ = slot_mean(temp)
    ok_se = inside & np.isfinite(y) & np.isfinite(se)
    se2 = np.bincount(slot[ok_se], weights=se[ok_se] ** 2, minlength=n_slots)
    n_se = np.bincount(slot[ok_se], minlength=n_slots).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_slot = np.where((n_se > 0) & (n_se == n_flux), np.sqrt(se2) / n_se, np.nan)
    n_obs = np.bincount(slot[inside], minlength=n_slots)
    measured = np.isfinite(f_slot)
    if measured.sum() < 3:
        raise FitError(f"gap_fill: {int(measured.sum())} measured slots; at least 3 needed")
    centres_ns = origin + (np.arange(n_slots) + 0.5) * step_ns
    # temperature: measured, else interpolated in time
    t_ok = np.isfinite(t_slot)
    temperature_filled = ~t_ok
    if t_ok.any() and temperature_filled.any():
        t_slot = t_slot.copy()
        t_slot[temperature_filled] = np.interp(
            centres_ns[temperature_filled], centres_ns[t_ok], t_slot[t_ok]
        )
    reason = "asked for"
    if model_key == "auto":
        with_t = int((measured & t_ok).sum())
        positive = float(np.mean(f_slot[measured] > 0))
        if with_t >= max(10, 0.5 * measured.sum()) and positive >= 0.9:
            model_key, reason = "q10", "soil temperature and positive fluxes"
        else:
            model_key = "linear"
            reason = (
                f"{positive:.0%} of the fluxes positive"
                if with_t >= max(10, 0.5 * measured.sum())
                else f"soil temperature with {with_t} of {int(measured.sum())} fluxes"
            )
    sensitivity: dict[str, float] = {}
    if model_key != "linear":
        if not t_ok.any():
            raise FitError(f"gap_fill: no soil temperature in column {temperature!r}")
        g, sensitivity = _sensitivity(
            model_key, t_slot[measured & t_ok], f_slot[measured & t_ok], t_slot, q10, e0_k
        )
    filled = ~measured
    gen = _rng(rng)
    run, run_start = _runs(filled)
    n_runs = int(run.max()) + 1 if filled.any() else 0
    in_run = run >= 0
    run_len = np.bincount(run[in_run], minlength=n_runs)
    calibration: list[dict[str, Any]] = []
    needed = 0
    n_windows = n_windows_fitted = 0
    if model_key == "linear":
        # linear interpolation in time across each gap (held before the first and after
        # the last measurement); at measured slots the model is the line between the
        # neighbours, so that the residuals show the random error
        def predict(mask: np.ndarray, cut_temperature: bool = False) -> np.ndarray | None:
            if mask.sum() < 2:  # (no temperature in a linear fill: nothing to cut)
                return None
            return np.interp(centres_ns, centres_ns[mask], f_slot[mask])

        line = predict(measured)
        model_flux = np.where(measured, _leave_one_out_linear(centres_ns, f_slot, measured), line)
        r10_t = np.full(n_slots, np.nan)
        structure = _residual_structure(np.where(measured, f_slot - model_flux, np.nan))
        scatter = np.zeros(n_slots)
        sd_t = np.zeros(n_slots)
        loo_sd = structure["white_sd"] if np.isfinite(structure["white_sd"]) else 0.0
        level_var = (loo_sd * run_len.astype(float)) ** 2  # "model": LOO scatter, shared
        if fill_error == "artificial_gaps" and n_runs:
            per_slot, calibration = _artificial_gap_errors(
                predict, measured, f_slot, run_len, gen, relative=False
            )
            if calibration:
                level_var = (per_slot * run_len) ** 2
        out_flux = np.where(measured, f_slot, line)
        fill_model = line
    else:
        # 2. R10 per window centred on each day
        slots_per_day = SECONDS_PER_DAY * 1e9 / step_ns
        half_slots = window_days * slots_per_day / 2.0
        day0 = origin - origin % (86400 * 10**9)
        n_windows = math.ceil((stop - day0) / (86400 * 10**9))
        day_centres_ns = day0 + (np.arange(n_windows) + 0.5) * 86400 * 10**9
        centre_slot = (day_centres_ns - origin) / step_ns
        lo = np.clip(np.floor(centre_slot - half_slots + 0.5), 0, n_slots).astype(np.int64)
        hi = np.clip(np.floor(centre_slot + half_slots + 0.5), 0, n_slots).astype(np.int64)
        needed = (
            int(min_points)
            if min_points is not None
            else max(5, math.ceil(0.1 * window_days * slots_per_day))
        )
        windows = _Windows(lo, hi, day_centres_ns.astype(float), centres_ns, max(needed, 2))
        base = windows.fit(measured, f_slot, g)
        if base is None:
            raise FitError(
                f"gap_fill: no {window_days:g}-day window has {needed} measured slots "
                "(lower min_points or lengthen window_days)"
            )
        n_windows_fitted = int(base.ok_w.sum())
        # 3. R10 interpolated across windows without enough data and across gaps
        r10_t = base.r10_t
        model_flux = r10_t * g
        fill_model = model_flux
        out_flux = np.where(measured, f_slot, model_flux)
        # 4. uncertainty of a filled value: the persistent (AR(1)) part of the residual
        # scatter, and an error of the level (R10) shared by the whole gap
        structure = _residual_structure(np.where(measured, f_slot - model_flux, np.nan))
        rho = structure["rho"]
        inflation = np.sqrt(np.minimum((1.0 + rho) / (1.0 - rho), np.maximum(base.n_w, 1.0)))
        sd_t = base.interp(base.sd_w) * math.sqrt(structure["persistent_fraction"])
        se_r10_t = base.interp(base.se_r10_w * inflation)
        scatter = np.where(filled, sd_t, 0.0)
        # the level error of each gap: the SE of the interpolated R10 at least ...
        level_se = (g * se_r10_t)[in_run]
        level_var = np.bincount(run[in_run], weights=level_se, minlength=n_runs) ** 2
        # ... and what artificial gaps of the same length show beyond the AR(1) scatter
        if fill_error == "artificial_gaps" and n_runs:

            def predict(mask: np.ndarray, cut_temperature: bool = False) -> np.ndarray | None:
                g_mask = g
                if cut_temperature:  # the artificial gaps' temperature interpolated, too
                    known = t_ok & ~(measured & ~mask)
                    if known.sum() < 2:
                        return None
                    t_mask = np.where(
                        known, t_slot, np.interp(centres_ns, centres_ns[known], t_slot[known])
                    )
                    g_mask = _response(model_key, sensitivity, t_mask)
                fit = windows.fit(mask, f_slot, g_mask)
                return None if fit is None else fit.r10_t * g_mask

            without_t = np.bincount(
                run[in_run], weights=temperature_filled[in_run].astype(float), minlength=n_runs
            ) >= 0.5 * np.maximum(run_len, 1)
            rel, calibration = _artificial_gap_errors(
                predict, measured, f_slot, run_len, gen, relative=True,
                without_temperature=without_t,
            )  # fmt: skip
            run_abs = np.bincount(run[in_run], weights=np.abs(model_flux[in_run]), minlength=n_runs)
            scatter_var = _ar1_run_variances(scatter, run, run_start, rho, n_runs)
            level_var = np.maximum(level_var, (rel * run_abs) ** 2 - scatter_var)
    # the level error of a gap, shared among its slots in proportion to |fill|
    run_weight = np.bincount(run[in_run], weights=np.abs(fill_model[in_run]), minlength=n_runs)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_weight = np.where(run_weight > 0, np.sqrt(level_var) / run_weight, 0.0)
        per_slot_flat = np.where(run_weight > 0, 0.0, np.sqrt(level_var) / np.maximum(run_len, 1))
    if n_runs:
        idx = np.maximum(run, 0)
        share_slot = per_weight[idx] * np.abs(fill_model) + per_slot_flat[idx]
    else:
        share_slot = np.zeros(n_slots)
    fill_se_level = np.where(in_run, share_slot, np.nan)
    fill_sd_residual = np.where(filled, sd_t, np.nan)
    fill_se = np.sqrt(fill_sd_residual**2 + fill_se_level**2)
    result = pd.DataFrame(
        {
            "time_utc": pd.to_datetime(origin + np.arange(n_slots) * step_ns, utc=True),
            "duration_s": np.full(n_slots, step),
            "flux": out_flux,
            "filled": filled,
            "flux_model": model_flux,
            "flux_se": np.where(measured, se_slot, np.nan),
            "fill_se": fill_se,
            "fill_sd_residual": fill_sd_residual,
            "fill_se_level": fill_se_level,
            "temperature_degc": t_slot,
            "temperature_filled": temperature_filled,
            "r10": r10_t,
            "n_observations": n_obs.astype(int),
        }
    )
    if zone is not None:
        result.insert(1, "time_local_standard", to_local_standard(result["time_utc"], zone))
    result.attrs.update(
        {
            "method": (
                "linear interpolation in time across gaps"
                if model_key == "linear"
                else f"moving-window {model_key} gap-filling (Gomez-Casanovas et al. 2013): "
                f"constant sensitivity, R10 per {window_days:g}-day window, interpolated"
            ),
            "model": model_key,
            "model_reason": reason,
            **sensitivity,
            "window_days": float(window_days),
            "min_points": needed,
            "interval_s": step,
            "n_windows": int(n_windows),
            "n_windows_fitted": n_windows_fitted,
            "fill_error": fill_error,
            "artificial_gap_classes": calibration,
            "n_measured": int(measured.sum()),
            "n_implausible_flux": int(bad_y.sum()),
            "n_implausible_temperature": int(bad_t.sum()),
            "n_filled": int(filled.sum()),
            "zone": zone,
            **{f"residual_{k}": v for k, v in structure.items()},
        }
    )
    return result


# ----------------------------------------------------------------------------------------------
# sums with uncertainty


def _residual_structure(residuals: np.ndarray) -> dict[str, float]:
    """AR(1) + white-noise decomposition of a regular series of residuals (NaN = no value).

    e_i, demeaned; gamma_k the mean of e_i e_{i+k} over the pairs of values k slots apart.
    Under e = x + eps, x AR(1) (variance s2, lag-1 correlation rho) and eps white (variance
    v): gamma_0 = s2 + v, gamma_1 = s2 rho, gamma_2 = s2 rho^2, so rho = gamma_2 / gamma_1,
    s2 = gamma_1 / rho, v = gamma_0 - s2. Where that fails (gamma_2 >= gamma_1 or <= 0),
    rho = gamma_1 / gamma_0 and all of the variance is treated as persistent.
    """
    e = np.asarray(residuals, dtype=float)
    e = np.where(np.isfinite(e), e, np.nan)
    if np.isfinite(e).any():
        e = e - np.nanmean(e)
    gam = []
    for lag in (0, 1, 2):
        prod = e[lag:] * e[: e.size - lag] if lag else e * e
        ok = np.isfinite(prod)
        gam.append(float(prod[ok].mean()) if ok.sum() >= 10 else math.nan)
    g0, g1, g2 = gam
    out = {"gamma0": g0, "gamma1": g1, "gamma2": g2}
    if np.isfinite(g0) and g0 > 0 and np.isfinite(g1) and np.isfinite(g2) and 0 < g2 < g1:
        rho = min(g2 / g1, 0.999)
        s2 = min(g1 / rho, g0)
        out.update(rho=rho, persistent_fraction=s2 / g0, white_sd=math.sqrt(max(g0 - s2, 0.0)))
    elif np.isfinite(g0) and g0 > 0 and np.isfinite(g1) and g1 > 0:
        out.update(rho=min(g1 / g0, 0.999), persistent_fraction=1.0, white_sd=math.sqrt(g0))
    else:
        white = math.sqrt(g0) if np.isfinite(g0) and g0 > 0 else math.nan
        out.update(rho=0.0, persistent_fraction=1.0, white_sd=white)
    return out


def _ar1_quadratic(a: np.ndarray, rho: float) -> np.ndarray:
    """Running sum_{i,j<=k} a_i a_j rho^|i-j| (cumulative variance of a sum of AR(1) errors)."""
    if a.size == 0:
        return np.empty(0)
    if rho <= 0:
        return np.cumsum(a * a)
    # S_i = sum_{j<i} a_j rho^(i-j) = rho (S_{i-1} + a_{i-1})
    shifted = np.concatenate([[0.0], a[:-1]])
    s = signal.lfilter([rho], [1.0, -rho], shifted)
    return np.cumsum(a * a + 2.0 * a * s)


_FREQS = {
    "day": "day", "d": "day", "daily": "day",
    "month": "month", "m": "month", "ms": "month", "me": "month", "monthly": "month",
    "year": "year", "y": "year", "ys": "year", "ye": "year", "a": "year", "yearly": "year",
    "annual": "year",
    "period": "period", "all": "period", "total": "period",
}  # fmt: skip


@dataclass(frozen=True)
class _SumParts:
    frame: pd.DataFrame
    unit: str
    suffix: str
    amount: np.ndarray  # F dt k per slot [sum unit]
    random: np.ndarray  # random error per measured slot, 0 elsewhere [sum unit]
    scatter: np.ndarray  # AR(1) part of the fill error per filled slot, 0 elsewhere
    level: np.ndarray  # R10 part of the fill error per filled slot, 0 elsewhere
    run: np.ndarray  # id of the run of consecutive filled slots, -1 on measured slots
    structure: dict[str, float]


def _prepare_sums(filled_frame: pd.DataFrame, gas: str, random_error: str) -> _SumParts:
    for column in ("time_utc", "duration_s", "flux", "filled", "flux_model"):
        if column not in filled_frame.columns:
            raise ConfigError(f"sums: frame has no column {column!r} (use gap_fill's output)")
    if random_error not in ("auto", "flux_se", "residual"):
        raise ConfigError(f"random_error {random_error!r}: expected auto, flux_se or residual")
    _, unit, suffix, factor = _gas(gas)
    frame = filled_frame.sort_values("time_utc", kind="stable").reset_index(drop=True)
    filled = frame["filled"].to_numpy(dtype=bool)
    flux = frame["flux"].to_numpy(dtype=float)
    if not np.isfinite(flux).all():
        raise ConfigError("sums: the series has missing fluxes; gap-fill it first")
    if (np.abs(flux) > FLUX_MAX_ABS).any():
        raise ConfigError(f"sums: fluxes beyond +-{FLUX_MAX_ABS:g} are not plausible")
    residual = np.where(filled, np.nan, flux - frame["flux_model"].to_numpy(dtype=float))
    structure = _residual_structure(residual)
    scale = frame["duration_s"].to_numpy(dtype=float) * factor

    def column(name: str) -> np.ndarray:
        if name not in frame.columns:
            return np.full(len(frame), np.nan)
        values = np.abs(frame[name].to_numpy(dtype=float))
        with np.errstate(invalid="ignore"):
            return np.where(values <= FLUX_MAX_ABS, values, np.nan)

    se_col = column("flux_se")
    white = structure["white_sd"]
    if random_error == "residual":
        sigma = np.full(len(frame), white)
    elif random_error == "flux_se":
        sigma = se_col
    else:
        sigma = np.where(np.isfinite(se_col), se_col, white)
    if "fill_sd_residual" in frame.columns:
        scatter_sd, level_sd = column("fill_sd_residual"), column("fill_se_level")
    else:  # a frame from elsewhere: its fill_se is taken as persistent scatter
        scatter_sd, level_sd = column("fill_se"), np.zeros(len(frame))
    starts = filled & ~np.concatenate([[False], filled[:-1]])
    run = np.where(filled, np.cumsum(starts) - 1, -1)
    return _SumParts(
        frame=frame,
        unit=unit,
        suffix=suffix,
        amount=flux * scale,
        random=np.where(~filled, np.nan_to_num(sigma, nan=0.0) * scale, 0.0),
        scatter=np.where(filled, np.nan_to_num(scatter_sd, nan=0.0) * scale, 0.0),
        level=np.where(filled, np.nan_to_num(level_sd, nan=0.0) * scale, 0.0),
        run=run,
        structure=structure,
    )


def _segment_variances(parts: _SumParts, a0: int, a1: int) -> tuple[float, float]:
    """Random and gap-filling variances of the sum over slots [a0, a1)."""
    var_r = float((parts.random[a0:a1] ** 2).sum())
    if a1 <= a0:
        return var_r, 0.0
    var_s = float(_ar1_quadratic(parts.scatter[a0:a1], parts.structure["rho"])[-1])
    run = parts.run[a0:a1]
    inside = run >= 0
    if inside.any():
        per_run = np.bincount(run[inside] - run[inside].min(), weights=parts.level[a0:a1][inside])
        var_l = float((per_run**2).sum())
    else:
        var_l = 0.0
    return var_r, max(var_s, 0.0) + var_l


def sums(
    filled_frame: pd.DataFrame,
    gas: str = "co2",
    freq: str = "day",
    *,
    random_error: str = "auto",
    ci_level: float = 0.95,
    local_time: bool = True,
) -> pd.DataFrame:
    """Daily, monthly, yearly or period sums of a gap-filled series, with uncertainty.

    Parameters
    ----------
    filled_frame : pandas.DataFrame
        The output of :func:`gap_fill`.
    gas : {"co2", "ch4", "n2o"}
        CO2 fluxes in umol m-2 s-1 sum to g C m-2; CH4 in nmol m-2 s-1 to mg C m-2 (CH4-C);
        N2O in nmol m-2 s-1 to mg N m-2 (N2O-N, two N per N2O).
    freq : {"day", "month", "year", "period"}
        Calendar periods (of local standard time where the frame has
        ``time_local_standard`` and ``local_time`` is True, else UTC), or one sum.
    random_error : {"auto", "flux_se", "residual"}
        Random measurement error of a measured slot: the flux's SE (``flux_se``), the white
        part of the residual scatter (``residual``), or the SE where given and the residual
        estimate elsewhere (``auto``).
    ci_level : float
        Level of the normal interval sum +- z total_se.
    local_time : bool
        Group by local standard time when available.

    Returns
    -------
    pandas.DataFrame
        One row per period: ``period_start``, ``n_slots``, ``n_measured``, ``n_filled``,
        ``filled_fraction``, ``sum_<u>``, ``random_se_<u>``, ``gap_fill_se_<u>``,
        ``total_se_<u>``, ``ci_lower_<u>``, ``ci_upper_<u>`` with <u> ``g_c_m2``, ``mg_c_m2``
        or ``mg_n_m2``. ``attrs``: unit, the residual structure (rho, ...), method.

    Notes
    -----
    sum = sum_i F_i dt_i k, with k = 12.011e-6 g C per umol CO2, 12.011e-6 mg C per nmol
    CH4, 2 x 14.007e-6 mg N per nmol N2O. The random measurement error is independent
    between measurements: var_r = sum_i (sigma_i dt_i k)^2 over measured slots. The
    gap-filling error of a filled value persists in time: the residuals of the window model
    at measured slots are decomposed into an AR(1) part (lag-1 correlation rho, share p of the
    variance) and white noise (see ``_residual_structure``); with a_i = fill_se_i sqrt(p) dt_i k
    on filled slots (0 on measured ones), var_g = sum_i sum_j a_i a_j rho^|i - j| within the
    period, which for one gap of m slots is about m a^2 (1 + rho)/(1 - rho) (the effective
    sample size n (1 - rho)/(1 + rho); Bayley & Hammersley 1946, doi:10.2307/2983560).
    total_se = sqrt(var_r + var_g). Periods are treated as independent of each other.

    Examples
    --------
    A constant 1 umol m-2 s-1 for one day is 86400 x 12.011e-6 = 1.037750 g C m-2:

    >>> t = pd.date_range("2020-01-01", periods=48, freq="30min", tz="UTC")
    >>> f = pd.DataFrame({"time_utc": t, "duration_s": 1800.0, "flux": 1.0,
    ...                   "filled": False, "flux_model": 1.0, "flux_se": 0.0})
    >>> round(float(sums(f, "co2", "period")["sum_g_c_m2"].iloc[0]), 6)
    1.03775
    """
    level = _check_level(ci_level)
    freq_key = _FREQS.get(str(freq).strip().lower())
    if freq_key is None:
        raise ConfigError(f"freq {freq!r}: expected day, month, year or period")
    parts = _prepare_sums(filled_frame, gas, random_error)
    frame, suffix = parts.frame, parts.suffix
    use_local = local_time and "time_local_standard" in frame.columns
    when = pd.DatetimeIndex(frame["time_local_standard" if use_local else "time_utc"])
    aware = when.tz is not None
    naive = when.tz_convert("UTC").tz_localize(None) if aware else when
    if freq_key == "day":
        label = naive.floor("D")
    elif freq_key == "month":
        label = naive.to_period("M").to_timestamp()
    elif freq_key == "year":
        label = naive.to_period("Y").to_timestamp()
    else:
        label = pd.DatetimeIndex(np.repeat(naive[:1], len(naive)))
    if aware:
        label = label.tz_localize("UTC")
    codes, uniques = pd.factorize(label)
    filled = frame["filled"].to_numpy(dtype=bool)
    rows = []
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [len(codes)]])
    z = stats.norm.ppf(0.5 + level / 2.0)
    for a0, a1 in zip(starts, stops, strict=True):
        total = float(parts.amount[a0:a1].sum())
        var_r, var_g = _segment_variances(parts, int(a0), int(a1))
        se_total = math.sqrt(var_r + var_g)
        n_f = int(filled[a0:a1].sum())
        rows.append(
            {
                "period_start": uniques[codes[a0]],
                "n_slots": int(a1 - a0),
                "n_measured": int(a1 - a0 - n_f),
                "n_filled": n_f,
                "filled_fraction": n_f / (a1 - a0),
                f"sum_{suffix}": total,
                f"random_se_{suffix}": math.sqrt(var_r),
                f"gap_fill_se_{suffix}": math.sqrt(var_g),
                f"total_se_{suffix}": se_total,
                f"ci_lower_{suffix}": total - z * se_total,
                f"ci_upper_{suffix}": total + z * se_total,
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(
        {
            "unit": parts.unit,
            "gas": str(gas).lower(),
            "freq": freq_key,
            "time": "local standard" if use_local else "UTC",
            "ci_level": level,
            "random_error": random_error,
            **{f"residual_{k}": v for k, v in parts.structure.items()},
            "method": (
                "random: independent per measured slot; gap-filling: AR(1) scatter of the "
                "window model (rho from residual autocovariances) plus the R10 error, shared "
                "by each run of filled slots; combined in quadrature"
            ),
        }
    )
    return out


def cumulative_sums(
    filled_frame: pd.DataFrame, gas: str = "co2", *, random_error: str = "auto",
    ci_level: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """Running sum of a gap-filled series from its first slot, with its uncertainty.

    Returns one row per slot: ``time_utc``, ``cumulative_<u>``, ``random_se_<u>``,
    ``gap_fill_se_<u>``, ``total_se_<u>``, ``ci_lower_<u>``, ``ci_upper_<u>`` (units as in
    :func:`sums`; the same error model, with the AR(1) covariance over the whole run).
    """
    level = _check_level(ci_level)
    parts = _prepare_sums(filled_frame, gas, random_error)
    frame, unit, suffix = parts.frame, parts.unit, parts.suffix
    var_r = np.cumsum(parts.random**2)
    var_s = np.maximum(_ar1_quadratic(parts.scatter, parts.structure["rho"]), 0.0)
    # the R10 part: complete runs add (their sum)^2, the current run its partial sum squared
    filled = parts.run >= 0
    partial = pd.Series(parts.level).groupby(parts.run).cumsum().to_numpy()
    last = filled & ~np.concatenate([parts.run[1:] == parts.run[:-1], [False]])
    done = np.cumsum(np.where(last, partial**2, 0.0))
    var_l = done - np.where(last, partial**2, 0.0) + np.where(filled, partial**2, 0.0)
    var_g = var_s + var_l
    total = np.cumsum(parts.amount)
    se = np.sqrt(var_r + var_g)
    z = stats.norm.ppf(0.5 + level / 2.0)
    out = pd.DataFrame(
        {
            "time_utc": frame["time_utc"].to_numpy(),
            f"cumulative_{suffix}": total,
            f"random_se_{suffix}": np.sqrt(var_r),
            f"gap_fill_se_{suffix}": np.sqrt(var_g),
            f"total_se_{suffix}": se,
            f"ci_lower_{suffix}": total - z * se,
            f"ci_upper_{suffix}": total + z * se,
        }
    )
    out["time_utc"] = pd.to_datetime(out["time_utc"], utc=True)
    out.attrs.update({"unit": unit, "gas": str(gas).lower(), "ci_level": level})
    return out


# ----------------------------------------------------------------------------------------------
# sampling-schedule emulation


def sampling_schedule(
    start: Any,
    end: Any,
    *,
    zone: str | float = "UTC",
    every_days: int = 7,
    hour_local_standard: float = 10.0,
    first_day: int = 0,
) -> pd.DatetimeIndex:
    """Sampling times of a sparse campaign (e.g. weekly at 10:00 local standard time), UTC.

    Parameters
    ----------
    start, end : datetime-like
        Period [start, end) (timezone-aware; naive means UTC).
    zone : str or float
        The site's time zone (its standard offset is used) or offset in hours.
    every_days : int
        Days between visits.
    hour_local_standard : float
        Time of day of each visit [h, local standard time].
    first_day : int
        Days after the first possible visit at which the schedule starts (its phase).

    Examples
    --------
    >>> s = sampling_schedule("2020-01-01T00:00Z", "2020-01-22T00:00Z", zone="Etc/GMT-9")
    >>> [str(x) for x in s]
    ['2020-01-01 01:00:00+00:00', '2020-01-08 01:00:00+00:00', '2020-01-15 01:00:00+00:00']
    """
    if int(every_days) < 1:
        raise ConfigError(f"every_days {every_days!r}: must be >= 1")
    if not 0.0 <= float(hour_local_standard) < 24.0:
        raise ConfigError(f"hour_local_standard {hour_local_standard!r}: must be in [0, 24)")
    t0 = pd.Timestamp(start)
    t1 = pd.Timestamp(end)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t1 = t1.tz_localize("UTC") if t1.tzinfo is None else t1.tz_convert("UTC")
    if t1 <= t0:
        return pd.DatetimeIndex([], tz="UTC")
    local_start = to_local_standard([t0], zone)[0]
    n_days = int((t1 - t0) / pd.Timedelta(days=1)) + 3
    days = local_start.floor("D") + pd.to_timedelta(np.arange(-1, n_days), unit="D")
    local = days + pd.Timedelta(hours=float(hour_local_standard))
    # local standard -> UTC with the zone's standard offset on that day
    offset = pd.to_timedelta(_standard_offset_s(zone, local.tz_localize("UTC")), unit="s")
    utc = (local - offset).tz_localize("UTC")
    utc = utc[(utc >= t0) & (utc < t1)]
    return utc[int(first_day) :: int(every_days)]


@dataclass(frozen=True)
class SamplingBias:
    """How far a sparse-sampling estimate of a period sum is from the continuous sum.

    Sums are in ``unit`` (g C m-2 for CO2, mg C m-2 for CH4, mg N m-2 for N2O).

    Attributes
    ----------
    continuous_sum : float
        The sum of the continuous (gap-filled) series over [start, end).
    sparse_sum : float
        The same period's sum from the continuous series subsampled at the sample times and
        interpolated linearly between them (held constant before the first and after the
        last sample).
    bias : float
        sparse_sum - continuous_sum: the sparse-sampling bias.
    relative_bias : float
        bias / continuous_sum [-].
    bias_ci, relative_bias_ci : tuple of float or None
        Percentile intervals over ``n_boot`` resampled schedules: each visit moved by a
        random whole number of days within +-``jitter_days``, its time of day kept.
    replicate_mean_relative_bias : float
        Mean relative bias over the resampled schedules (the design's expected bias).
    n_samples, n_samples_outside : int
        Sample times used, and those outside the series (dropped).
    other_sparse_sum : float or None
        With ``sample_flux``: the other system's own sparse estimate (same interpolation).
    method_bias, method_relative_bias : float or None
        other_sparse_sum - sparse_sum (and relative to the continuous sum): the difference
        between the systems at the same sampling, i.e. the bias of the method.
    method_relative_bias_ci : tuple of float or None
        Bootstrap over visits.
    total_bias, total_relative_bias : float or None
        other_sparse_sum - continuous_sum = bias + method_bias.
    unit, gas, method : str
    start_utc, end_utc : str
    n_boot, jitter_days : int
    resample : str
    ci_level : float
    """

    continuous_sum: float
    sparse_sum: float
    bias: float
    relative_bias: float
    bias_ci: tuple[float, float] | None
    relative_bias_ci: tuple[float, float] | None
    replicate_mean_relative_bias: float
    n_samples: int
    n_samples_outside: int
    other_sparse_sum: float | None
    method_bias: float | None
    method_relative_bias: float | None
    method_relative_bias_ci: tuple[float, float] | None
    total_bias: float | None
    total_relative_bias: float | None
    unit: str
    gas: str
    method: str
    start_utc: str
    end_utc: str
    n_boot: int
    jitter_days: int
    resample: str
    ci_level: float

    def as_dict(self) -> dict[str, Any]:
        return _dict(self)


def _trapezoid_weights(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Weights w with sum_k w_k v_k = integral over [a, b] of the linear interpolant of
    (x_k, v_k), held constant outside [x_0, x_K] (x sorted, inside [a, b])."""
    k = x.size
    w = np.zeros(k)
    if k == 0:
        return w
    if k == 1:
        w[0] = b - a
        return w
    dx = np.diff(x)
    w[:-1] += dx / 2.0
    w[1:] += dx / 2.0
    w[0] += x[0] - a
    w[-1] += b - x[-1]
    return w


def emulate_sampling(
    continuous: pd.DataFrame,
    sample_times: Any,
    *,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
    sample_flux: ArrayLike | None = None,
    n_boot: int = 500,
    rng: np.random.Generator | int | None = None,
    jitter_days: int | None = None,
    resample: str = "visits",
    ci_level: float = 0.95,
) -> SamplingBias:
    """The sparse-sampling bias of a schedule, emulated on a continuous series.

    Parameters
    ----------
    continuous : pandas.DataFrame
        A regular series (the output of :func:`gap_fill`: ``time_utc``, ``duration_s``,
        ``flux``).
    sample_times : array_like of datetime
        The other system's measurement times (UTC), e.g. :func:`sampling_schedule`.
    gas : {"co2", "ch4", "n2o"}
    start, end : datetime-like, optional
        Period of both sums; default the span of ``continuous``.
    sample_flux : array_like, optional
        The other system's own fluxes at ``sample_times`` [flux unit]: adds its sparse sum
        and splits its total difference into sampling bias and method bias.
    n_boot : int
        Resampled schedules for the CI (0: none).
    rng : numpy.random.Generator or int, optional
    jitter_days : int, optional
        Days a visit may move in a resampled schedule; default half the median spacing of
        the visits (3 for weekly sampling).
    resample : {"visits", "phase"}
        In a resampled schedule each visit moves by its own random number of days
        (``visits``), or all visits by the same number (``phase``: the schedule's start day).
    ci_level : float

    Returns
    -------
    SamplingBias

    Notes
    -----
    Each sample takes the continuous series' value in the slot containing its time. The
    sparse estimate integrates the linear interpolation between samples over the period
    (trapezoidal rule on the sampling dates, values held at both ends), as manual-chamber
    campaigns usually do (e.g. Parkin & Venterea 2010, USDA-ARS GRACEnet protocol ch. 3).
    Sampling bias = sparse - continuous on the SAME series, so it contains no difference
    between methods; with ``sample_flux`` the method bias is the other system's sparse sum
    minus this emulated sparse sum, and the two add up to the total difference.

    Examples
    --------
    A flux of 1 + 0.5 cos(2 pi (h - 14.25)/24) (h: the middle of each half-hour) sampled
    weekly at 10:00 (the slot 10:00-10:30) is over-estimated by 0.5 cos(-pi/3) = 25 %:

    >>> t = pd.date_range("2020-01-01", "2021-01-01", freq="30min", tz="UTC", inclusive="left")
    >>> h = (t.hour + t.minute / 60 + 0.25).to_numpy()
    >>> c = pd.DataFrame({"time_utc": t, "duration_s": 1800.0,
    ...                   "flux": 1 + 0.5 * np.cos(2 * np.pi * (h - 14.25) / 24)})
    >>> s = sampling_schedule("2020-01-01", "2021-01-01", zone="UTC")
    >>> round(emulate_sampling(c, s, n_boot=0).relative_bias, 4)
    0.25
    """
    level = _check_level(ci_level)
    _, unit, _suffix, factor = _gas(gas)
    if resample not in ("visits", "phase"):
        raise ConfigError(f"resample {resample!r}: expected 'visits' or 'phase'")
    for column in ("time_utc", "duration_s", "flux"):
        if column not in continuous.columns:
            raise ConfigError(f"emulate_sampling: frame has no column {column!r}")
    frame = continuous.sort_values("time_utc", kind="stable").reset_index(drop=True)
    slot_start = _utc_index(frame["time_utc"], "time_utc").asi8
    dur_ns = (frame["duration_s"].to_numpy(dtype=float) * 1e9).astype(np.int64)
    values = frame["flux"].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ConfigError("emulate_sampling: the continuous series has gaps; gap-fill it first")
    if (np.abs(values) > FLUX_MAX_ABS).any():
        raise ConfigError(f"emulate_sampling: fluxes beyond +-{FLUX_MAX_ABS:g} are not plausible")
    a = slot_start[0] if start is None else int(_utc_index([pd.Timestamp(start)], "start").asi8[0])
    b = (
        slot_start[-1] + dur_ns[-1]
        if end is None
        else int(_utc_index([pd.Timestamp(end)], "end").asi8[0])
    )
    if b <= a:
        raise ConfigError("emulate_sampling: end is not after start")
    # continuous sum over [a, b): whole slots inside, partial slots pro rata
    lo = np.maximum(slot_start, a)
    hi = np.minimum(slot_start + dur_ns, b)
    overlap_s = np.maximum(hi - lo, 0) / 1e9
    continuous_sum = float((values * overlap_s).sum() * factor)
    samples = _utc_index(sample_times, "sample_times").asi8
    other = None
    if sample_flux is not None:
        other = np.asarray(sample_flux, dtype=float).ravel()
        if other.size != samples.size:
            raise ConfigError(f"sample_flux has {other.size} values for {samples.size} times")
        with np.errstate(invalid="ignore"):
            other = np.where(np.abs(other) <= FLUX_MAX_ABS, other, np.nan)  # missing
    order = np.argsort(samples, kind="stable")
    samples = samples[order]
    if other is not None:
        other = other[order]
    period_end = slot_start[-1] + dur_ns[-1]

    def lookup(times_ns: np.ndarray):
        idx = np.searchsorted(slot_start, times_ns, side="right") - 1
        ok = (idx >= 0) & (times_ns >= a) & (times_ns < b) & (times_ns < period_end)
        idx = np.clip(idx, 0, len(slot_start) - 1)
        ok &= times_ns < slot_start[idx] + dur_ns[idx]
        return idx, ok

    def sparse(times_ns: np.ndarray, vals: np.ndarray) -> float:
        w = _trapezoid_weights((times_ns - a) / 1e9, 0.0, (b - a) / 1e9)
        return float((w * vals).sum() * factor)

    idx, ok = lookup(samples)
    n_outside = int((~ok).sum())
    if ok.sum() == 0:
        raise ConfigError("emulate_sampling: no sample time falls inside the series")
    s_ok = samples[ok]
    v_ok = values[idx[ok]]
    sparse_sum = sparse(s_ok, v_ok)
    bias = sparse_sum - continuous_sum
    rel = bias / continuous_sum if continuous_sum != 0 else math.nan
    gen = _rng(rng)
    if jitter_days is None:
        # half the spacing of the sampling *days* (a visit may take several samples)
        days = np.unique(s_ok // (SECONDS_PER_DAY * 10**9))
        spacing = float(np.median(np.diff(days))) if days.size > 1 else 0.0
        jitter = int(max(0, math.floor(spacing / 2.0)))
    else:
        jitter = int(jitter_days)
    bias_ci = rel_ci = None
    rep_mean = math.nan
    if n_boot > 0 and s_ok.size:
        reps = np.empty(int(n_boot))
        day_ns = 86400 * 10**9
        for k in range(int(n_boot)):
            size = s_ok.size if resample == "visits" else 1
            shift = gen.integers(-jitter, jitter + 1, size=size) * day_ns
            moved = np.sort(s_ok + shift)
            i2, ok2 = lookup(moved)
            reps[k] = sparse(moved[ok2], values[i2[ok2]]) if ok2.any() else math.nan
        rep_bias = reps - continuous_sum
        bias_ci = _ci(rep_bias, level)
        if continuous_sum != 0:
            rel_ci = _ci(rep_bias / continuous_sum, level)
            rep_mean = float(np.nanmean(rep_bias / continuous_sum))
    other_sum = method_bias = method_rel = total_bias = total_rel = None
    method_rel_ci = None
    if other is not None:
        o_ok = other[ok]
        good = np.isfinite(o_ok)
        other_sum = sparse(s_ok[good], o_ok[good])
        emulated_same = sparse(s_ok[good], v_ok[good])
        method_bias = other_sum - emulated_same
        total_bias = other_sum - continuous_sum
        if continuous_sum != 0:
            method_rel = method_bias / continuous_sum
            total_rel = total_bias / continuous_sum
        if n_boot > 0 and good.sum() >= 2 and continuous_sum != 0:
            w = _trapezoid_weights((s_ok[good] - a) / 1e9, 0.0, (b - a) / 1e9)
            d = (o_ok[good] - v_ok[good]) * w
            e = v_ok[good] * w
            m = d.size
            picks = gen.integers(0, m, size=(int(n_boot), m))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = d[picks].sum(axis=1) / e[picks].sum(axis=1)
            # method_relative_bias = (sum w d / sum w v) x emulated sparse sum / continuous sum
            method_rel_ci = _ci(ratio * emulated_same / continuous_sum, level)
    return SamplingBias(
        continuous_sum=continuous_sum,
        sparse_sum=sparse_sum,
        bias=bias,
        relative_bias=rel,
        bias_ci=bias_ci,
        relative_bias_ci=rel_ci,
        replicate_mean_relative_bias=rep_mean,
        n_samples=int(ok.sum()),
        n_samples_outside=n_outside,
        other_sparse_sum=other_sum,
        method_bias=method_bias,
        method_relative_bias=method_rel,
        method_relative_bias_ci=method_rel_ci,
        total_bias=total_bias,
        total_relative_bias=total_rel,
        unit=unit,
        gas=str(gas).lower(),
        method=(
            "continuous series subsampled at the sample times, linear interpolation between "
            "samples (held at the ends); CI over schedules with "
            + ("visits" if resample == "visits" else "the whole schedule")
            + f" moved by up to {jitter} days"
        ),
        start_utc=pd.Timestamp(a, tz="UTC").isoformat(),
        end_utc=pd.Timestamp(b, tz="UTC").isoformat(),
        n_boot=int(n_boot),
        jitter_days=jitter,
        resample=resample,
        ci_level=level,
    )
