"""One closure from trace to flux: water correction, initial values, window, fits, QC.

:func:`fit_closure` does what LI-COR firmware does by default (initial values as intercepts
over the first 10 s, window from the dead band to the observation length, exponential with
C'0 fixed, linear fallback), with every choice a documented setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .exponential import DEFAULT_A_BOUNDS_PER_S, ExponentialFit, fit_exponential
from .flux import dry_air_mol_m2, slope_to_flux, wet_to_dry
from .linear import LinearFit, QuadraticFit, _clean, fit_linear, fit_quadratic, intercept_at_start
from .quality import (
    SELECTION_RULES,
    ModelChoice,
    g_factor,
    kappa_max_per_s,
    minimal_detectable_flux,
    select_model,
)
from .window import DeadBandChoice, choose_dead_band, window_mask

__all__ = ["FLAGS", "ClosureFit", "FitSettings", "fit_closure"]

#: Every flag :func:`fit_closure` may raise, with its meaning.
FLAGS = {
    "few_points": "fewer samples in the window than FitSettings.min_points",
    "exp_degenerate": "exponential curvature at its lower bound (straight or upward trace)",
    "exp_at_a_max": "exponential curvature at its upper bound",
    "exp_no_t0": "the exponential never passes through C'0",
    "exp_failed": "the exponential could not be fitted",
    "exp_iteration_cap": "the exponential's curvature search hit its iteration cap",
    "low_r2": "R2 of the reported model below FitSettings.r2_min",
    "high_nrmse": "NRMSE of the reported model above FitSettings.nrmse_max",
    "below_mdf": "|flux| below the minimal detectable flux",
    "g_factor_high": "|exp flux / linear flux| above FitSettings.g_factor_max",
    "kappa_above_max": "exponential curvature above kappa_max (Hüppi et al. 2018)",
    "bends_upward": "the quadratic bends away from saturation (leak, mixing, disturbance)",
    "dead_band_auto": "the dead band was chosen by the automatic scan",
}


@dataclass(frozen=True)
class FitSettings:
    """How a closure is processed. The defaults reproduce LI-COR firmware.

    Attributes
    ----------
    initial_window_s : float
        P0, T0, W0 and C'0 are intercepts of lines over 0 <= elapsed <= this [s].
    initial_window_end_exclusive : bool
        Use 0 <= elapsed < initial_window_s instead (LI-8100A firmware: the first ten
        samples at 1 Hz).
    exp_form : str
        ``"fixed_c0"`` (LI-COR: slope where the curve passes C'0) or ``"free_c0"`` (slope
        at ``exp_t0_s``).
    exp_t0_s : float
        Time of the slope for ``"free_c0"`` [s].
    a_bounds_per_s : (float, float)
        Curvature search range [s-1].
    selection : str
        Model-selection rule, see :func:`chamberd.fitting.quality.select_model`.
    curvature_alpha : float or None
        Level of the curvature-significance test of the selection rule (None: no test;
        ``chamberd fit`` sets 0.05 for CH4 and N2O under ``licor``, as the Smart Chamber
        firmware does).
    min_points, r2_min, nrmse_max, g_factor_max : float
        Flag thresholds (flags never change the flux).
    """

    initial_window_s: float = 10.0
    initial_window_end_exclusive: bool = False
    exp_form: str = "fixed_c0"
    exp_t0_s: float = 0.0
    a_bounds_per_s: tuple[float, float] = DEFAULT_A_BOUNDS_PER_S
    selection: str = "licor"
    curvature_alpha: float | None = None
    min_points: int = 10
    r2_min: float = 0.9
    nrmse_max: float = 0.2
    g_factor_max: float = 2.0

    def __post_init__(self) -> None:
        if self.exp_form not in ("fixed_c0", "free_c0"):
            raise ValueError(f"exp_form must be 'fixed_c0' or 'free_c0', got {self.exp_form!r}")
        if self.selection not in SELECTION_RULES:
            raise ValueError(f"selection must be one of {SELECTION_RULES}, got {self.selection!r}")
        if self.curvature_alpha is not None and not 0.0 < self.curvature_alpha < 1.0:
            raise ValueError(f"curvature_alpha must be in (0, 1), got {self.curvature_alpha!r}")


@dataclass(frozen=True)
class ClosureFit:
    """Everything derived from one closure of one gas.

    Fluxes are in umol m-2 s-1 when the mole fraction is in umol mol-1 (CO2) and in
    nmol m-2 s-1 when it is in nmol mol-1 (CH4, N2O).
    """

    dead_band_s: float
    end_s: float
    n_points: int
    pressure_kpa: float  # P0
    temperature_degc: float  # T0
    h2o_mmol_mol: float  # W0
    c0_mf: float  # C'0
    dry_air_mol_m2: float
    linear: LinearFit
    exponential: ExponentialFit
    quadratic: QuadraticFit
    lin_flux: float
    lin_flux_se: float
    exp_flux: float
    exp_flux_se: float
    flux: float
    flux_se: float
    model: str
    model_reason: str
    mdf: float
    g_factor: float
    kappa_max_per_s: float
    flags: tuple[str, ...]
    dead_band_choice: DeadBandChoice | None = None

    @property
    def r_squared(self) -> float:
        """R2 of the reported model."""
        fit = self.exponential if self.model == "exponential" else self.linear
        return fit.r_squared


def _initial(value: float | ArrayLike, t: np.ndarray, settings: FitSettings, name: str) -> float:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        result = float(arr)
    else:
        if arr.shape != t.shape:
            raise ValueError(f"{name} has {arr.size} samples, elapsed_s has {t.size}")
        result = intercept_at_start(
            t,
            arr,
            window_s=settings.initial_window_s,
            end_exclusive=settings.initial_window_end_exclusive,
        )
    if not math.isfinite(result):
        raise ValueError(f"{name}: initial value is not finite")
    return result


# absurd magnitudes (a logger's 1e308) end in a refusal or a flag, never in floating-point
# warnings on the user's terminal
@np.errstate(all="ignore")
def fit_closure(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    h2o_mmol_mol: float | ArrayLike,
    pressure_kpa: float | ArrayLike,
    temperature_degc: float | ArrayLike,
    volume_cm3: float,
    area_cm2: float,
    dead_band_s: float | str,
    end_s: float,
    precision_mf: float,
    dry: bool = False,
    start_exclusive: bool = False,
    settings: FitSettings = FitSettings(),
) -> ClosureFit:
    """Fit one closure of one gas and convert the slopes to fluxes.

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed [s]; samples before 0 (closing) are allowed and
        ignored by the fits.
    mole_fraction : array_like
        Mole fraction of the gas [mf]: moist unless ``dry``.
    h2o_mmol_mol : float or array_like
        Water vapour [mmol mol-1]: a trace (same length; W0 is its intercept) or W0.
    pressure_kpa : float or array_like
        Chamber pressure [kPa]: a trace (P0 is its intercept) or P0.
    temperature_degc : float or array_like
        Chamber air temperature [degC]: a trace (T0 is its intercept) or T0.
    volume_cm3 : float
        Total system volume [cm3].
    area_cm2 : float
        Soil area [cm2].
    dead_band_s : float or "auto"
        Start of the fit window [s], or ``"auto"`` to scan for it.
    end_s : float
        End of the fit window, normally the observation length [s].
    precision_mf : float
        Analyser precision, for the minimal detectable flux [mf].
    dry : bool
        True when ``mole_fraction`` is already a dry mole fraction.
    start_exclusive : bool
        Keep samples with elapsed > dead band (LI-8200) instead of >=.
    settings : FitSettings
        Processing choices; the defaults reproduce LI-COR firmware.

    Returns
    -------
    ClosureFit

    Raises
    ------
    ValueError
        For arrays of different lengths, non-physical inputs, or no sample in the first
        ``settings.initial_window_s`` seconds.
    """
    t = np.asarray(elapsed_s, dtype=float).ravel()
    c = np.asarray(mole_fraction, dtype=float).ravel()
    if t.shape != c.shape:
        raise ValueError(f"mole_fraction has {c.size} samples, elapsed_s has {t.size}")
    if dry:
        c_dry = c
    else:
        w = np.asarray(h2o_mmol_mol, dtype=float)
        c_dry = wet_to_dry(c, w if w.ndim == 0 else w.ravel())
    p0 = _initial(pressure_kpa, t, settings, "pressure_kpa")
    t0 = _initial(temperature_degc, t, settings, "temperature_degc")
    w0 = _initial(h2o_mmol_mol, t, settings, "h2o_mmol_mol")
    c0 = _initial(c_dry, t, settings, "mole_fraction")
    air = dry_air_mol_m2(
        volume_cm3=volume_cm3,
        area_cm2=area_cm2,
        pressure_kpa=p0,
        temperature_degc=t0,
        h2o_mmol_mol=w0,
    )

    flags: list[str] = []
    choice: DeadBandChoice | None = None
    if isinstance(dead_band_s, str):
        if dead_band_s != "auto":
            raise ValueError(f"dead_band_s must be seconds or 'auto', got {dead_band_s!r}")
        tt, cc = _clean(t, c_dry)
        choice = choose_dead_band(tt, cc, c0_mf=c0, end_s=end_s)
        dead_band, end = choice.dead_band_s, choice.end_s
        flags.append("dead_band_auto")
    else:
        dead_band, end = float(dead_band_s), float(end_s)

    mask = window_mask(t, dead_band_s=dead_band, end_s=end, start_exclusive=start_exclusive)
    tw, cw = _clean(t[mask], c_dry[mask])
    linear = fit_linear(tw, cw)
    if settings.exp_form == "fixed_c0":
        exponential = fit_exponential(tw, cw, c0_mf=c0, a_bounds_per_s=settings.a_bounds_per_s)
    else:
        exponential = fit_exponential(
            tw, cw, t0_s=settings.exp_t0_s, a_bounds_per_s=settings.a_bounds_per_s
        )
    quadratic = fit_quadratic(tw, cw, t0_s=0.0)

    return assemble(
        linear,
        exponential,
        quadratic,
        dead_band_s=dead_band,
        end_s=end,
        n_points=int(tw.size),
        closure_s=float(np.ptp(tw)) if tw.size > 1 else math.nan,
        initial=(p0, t0, w0, c0),
        dry_air=air,
        precision_mf=precision_mf,
        settings=settings,
        flags=flags,
        choice=choice,
    )


def assemble(
    linear: LinearFit,
    exponential: ExponentialFit,
    quadratic: QuadraticFit,
    *,
    dead_band_s: float,
    end_s: float,
    n_points: int,
    closure_s: float,
    initial: tuple[float, float, float, float],
    dry_air: float,
    precision_mf: float,
    settings: FitSettings,
    flags: list[str],
    choice: DeadBandChoice | None,
) -> ClosureFit:
    """Fluxes, detection limit, model choice and flags from the fits of one window.

    Shared by :func:`fit_closure` and the batch path (:func:`chamberd.fitting.fit_closures`),
    so that both derive everything after the fits with the same code. ``initial`` is
    (P0, T0, W0, C'0); ``closure_s`` the span of the window's times (NaN below two samples);
    ``flags`` those raised before the fits (``dead_band_auto``).
    """
    p0, t0, w0, c0 = initial
    air = dry_air
    flags = list(flags)
    lin_flux = slope_to_flux(linear.slope_mf_s, air)
    exp_flux = slope_to_flux(exponential.slope_mf_s, air)
    closure = closure_s
    mdf = (
        minimal_detectable_flux(precision_mf=precision_mf, closure_s=closure, dry_air_mol_m2=air)
        if closure > 0
        else math.nan
    )
    kmax = kappa_max_per_s(lin_flux=lin_flux, mdf=mdf, closure_s=closure) if mdf > 0 else math.inf
    choice_model: ModelChoice = select_model(
        linear,
        exponential,
        rule=settings.selection,
        kappa_max=kmax,
        curvature_alpha=settings.curvature_alpha,
    )
    if choice_model.model == "exponential":
        flux, flux_se, fit_r2, fit_nrmse = (
            exp_flux,
            exponential.slope_se_mf_s * air,
            exponential.r_squared,
            exponential.nrmse,
        )
    else:
        flux, flux_se, fit_r2, fit_nrmse = (
            lin_flux,
            linear.slope_se_mf_s * air,
            linear.r_squared,
            linear.nrmse,
        )

    if n_points < settings.min_points:
        flags.append("few_points")
    if exponential.at_bound == "a_min":
        flags.append("exp_degenerate")
    elif exponential.at_bound == "a_max":
        flags.append("exp_at_a_max")
    elif exponential.at_bound == "iteration_cap":
        flags.append("exp_iteration_cap")
    elif not math.isfinite(exponential.slope_mf_s) and exponential.n_points >= 4:
        flags.append("exp_failed" if math.isnan(exponential.a_per_s) else "exp_no_t0")
    elif exponential.n_points < 4:
        flags.append("exp_failed")
    if not (fit_r2 >= settings.r2_min):
        flags.append("low_r2")
    if not (fit_nrmse <= settings.nrmse_max):
        flags.append("high_nrmse")
    if math.isfinite(mdf) and abs(flux) < mdf:
        flags.append("below_mdf")
    g = g_factor(exp_flux, lin_flux) if math.isfinite(exp_flux) else math.nan
    if math.isfinite(g) and g > settings.g_factor_max:
        flags.append("g_factor_high")
    if exponential.converged and exponential.a_per_s > kmax:
        flags.append("kappa_above_max")
    if (
        quadratic.converged
        and linear.converged
        and quadratic.curvature_mf_s2 * linear.slope_mf_s > 0
        and exponential.at_bound == "a_min"
    ):
        flags.append("bends_upward")

    return ClosureFit(
        dead_band_s=dead_band_s,
        end_s=end_s,
        n_points=n_points,
        pressure_kpa=p0,
        temperature_degc=t0,
        h2o_mmol_mol=w0,
        c0_mf=c0,
        dry_air_mol_m2=air,
        linear=linear,
        exponential=exponential,
        quadratic=quadratic,
        lin_flux=lin_flux,
        lin_flux_se=linear.slope_se_mf_s * air,
        exp_flux=exp_flux,
        exp_flux_se=exponential.slope_se_mf_s * air,
        flux=flux,
        flux_se=flux_se,
        model=choice_model.model,
        model_reason=choice_model.reason,
        mdf=mdf,
        g_factor=g,
        kappa_max_per_s=kmax,
        flags=tuple(flags),
        dead_band_choice=choice,
    )
