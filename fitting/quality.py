"""Quality measures and the model-selection rule.

Flags describe a fit; they never change it. The selection rule is explicit and returns
which model it chose and why (:class:`ModelChoice`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .exponential import ExponentialFit
from .linear import LinearFit

__all__ = [
    "SELECTION_RULES",
    "ModelChoice",
    "curvature_f_test",
    "g_factor",
    "kappa_max_per_s",
    "minimal_detectable_flux",
    "select_model",
]

#: Selection rules understood by :func:`select_model`.
SELECTION_RULES = ("licor", "kappa_max", "linear", "exponential")


def minimal_detectable_flux(
    *, precision_mf: float, closure_s: float, dry_air_mol_m2: float
) -> float:
    """Smallest flux distinguishable from analyser noise [flux unit].

    MDF = (A / t_c) x dry air, with A the analyser precision and t_c the closure time
    (Christiansen et al. 2015, section 2.5).

    Parameters
    ----------
    precision_mf : float
        Analyser precision (1 sigma at the logging rate) [mf].
    closure_s : float
        Duration of the fit window [s].
    dry_air_mol_m2 : float
        Flux term [mol m-2].

    Returns
    -------
    float

    References
    ----------
    Christiansen, J. R., Outhwaite, J., Smukler, S. M. (2015) Comparison of CO2, CH4 and
    N2O soil-atmosphere exchange measured in static chambers with cavity ring-down
    spectroscopy and gas chromatography. Agric. For. Meteorol. 211-212, 48-57.
    doi:10.1016/j.agrformet.2015.06.004

    >>> round(minimal_detectable_flux(precision_mf=1.0, closure_s=100, dry_air_mol_m2=6.5), 3)
    0.065
    """
    if not closure_s > 0:
        raise ValueError(f"closure_s must be > 0, got {closure_s}")
    return abs(precision_mf) / closure_s * dry_air_mol_m2


def kappa_max_per_s(*, lin_flux: float, mdf: float, closure_s: float) -> float:
    """Largest plausible curvature for a non-linear fit [s-1].

    kappa_max = |f_lin| / (MDF x t_c) (Hüppi et al. 2018).

    References
    ----------
    Hüppi, R., Felber, R., Krauss, M., Six, J., Leifeld, J., Fuß, R. (2018) Restricting the
    nonlinearity parameter in soil greenhouse gas flux calculation for more reliable flux
    estimates. PLoS ONE 13, e0200876. doi:10.1371/journal.pone.0200876

    >>> round(kappa_max_per_s(lin_flux=1.0, mdf=0.05, closure_s=100), 3)
    0.2
    """
    if mdf <= 0 or closure_s <= 0:
        return math.inf
    return abs(lin_flux) / (mdf * closure_s)


def g_factor(exp_flux: float, lin_flux: float) -> float:
    """Ratio of the non-linear to the linear flux, |F_exp / F_lin| [-].

    >>> g_factor(1.5, 1.0)
    1.5
    """
    if lin_flux == 0 or not math.isfinite(lin_flux) or not math.isfinite(exp_flux):
        return math.inf if exp_flux != 0 else 1.0
    return abs(exp_flux / lin_flux)


@dataclass(frozen=True)
class ModelChoice:
    """The model whose flux is reported, and why."""

    model: str  # "exponential" | "linear"
    reason: str


def curvature_f_test(
    lin_r2: float, exp_r2: float, n_points: int, alpha: float
) -> tuple[float, float]:
    """(F, critical F) of the nested test of an exponential against a line on one window.

    F = (R2_exp - R2_lin) / (1 - R2_exp) x (n - 3): the reduction of the residual sum of
    squares by the exponential's extra parameter (the curvature), relative to its residual
    variance; the critical value is the (1 - ``alpha``) quantile of F(1, n - 3). NaN F
    where undefined (fewer than 4 points, a perfect fit, R2 not finite).

    >>> f, crit = curvature_f_test(0.7326, 0.7357, 54, 0.05)
    >>> round(f, 2), round(crit, 2)
    (0.6, 4.03)
    """
    from scipy.stats import f as f_dist

    dof = n_points - 3
    if dof < 1 or not (math.isfinite(lin_r2) and math.isfinite(exp_r2)) or exp_r2 >= 1.0:
        return math.nan, math.nan
    f_stat = (exp_r2 - lin_r2) / (1.0 - exp_r2) * dof
    return f_stat, float(f_dist.ppf(1.0 - alpha, 1, dof))


def select_model(
    linear: LinearFit,
    exponential: ExponentialFit,
    *,
    rule: str = "licor",
    kappa_max: float = math.inf,
    curvature_alpha: float | None = None,
) -> ModelChoice:
    """Choose the reported model by an explicit rule.

    Rules
    -----
    ``licor``
        The exponential where it converged to an interior optimum (curvature strictly
        inside its bounds and a defined t0) and its slope at t0 has the sign of the linear
        slope; otherwise the linear. This reproduces ``CrvFitStatus`` of LI-COR firmware,
        which reports the linear flux when its exponential degenerates.
        With ``curvature_alpha`` (what the Smart Chamber firmware does for its trace
        gases, CH4 and N2O: see docs/fitting.md), the exponential must also reduce the
        residual sum of squares significantly: the nested F-test of the exponential (three
        free parameters, C'0 fixed) against the line (two),
        F = (R2_exp - R2_lin) / (1 - R2_exp) x (n - 3), must exceed the
        (1 - curvature_alpha) quantile of F(1, n - 3).
    ``kappa_max``
        As ``licor``, and additionally the linear when the curvature exceeds kappa_max
        (Hüppi et al. 2018; the rule of the gasfluxes package for static chambers).
    ``linear``, ``exponential``
        Always that model (the exponential only where it converged).

    Parameters
    ----------
    linear, exponential : LinearFit, ExponentialFit
        Fits of the same window.
    rule : str
        One of :data:`SELECTION_RULES`.
    kappa_max : float
        Upper limit of the curvature for the ``kappa_max`` rule [s-1].
    curvature_alpha : float or None
        Level of the curvature-significance test of ``licor`` and ``kappa_max`` (None:
        no test).

    Returns
    -------
    ModelChoice
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; use one of {SELECTION_RULES}")
    if rule == "linear":
        return ModelChoice("linear", "rule 'linear'")
    if not exponential.converged or not math.isfinite(exponential.slope_mf_s):
        reason = exponential.message or "exponential fit failed"
        return ModelChoice("linear", f"exponential not used: {reason}")
    if linear.converged and exponential.slope_mf_s * linear.slope_mf_s < 0:
        return ModelChoice(
            "linear",
            "exponential not used: its slope at t0 opposes the linear trend "
            "(a step-like curve fitted to noise)",
        )
    if curvature_alpha is not None:
        f_stat, f_crit = curvature_f_test(
            linear.r_squared, exponential.r_squared, exponential.n_points, curvature_alpha
        )
        if not f_stat > f_crit:
            return ModelChoice(
                "linear",
                f"exponential not used: its curvature is not significant (F {f_stat:.3g} <= "
                f"{f_crit:.3g}, the {1 - curvature_alpha:.0%} quantile of F(1, n - 3))",
            )
    if rule == "kappa_max" and exponential.a_per_s > kappa_max:
        return ModelChoice(
            "linear",
            f"exponential not used: kappa {exponential.a_per_s:.3g} s-1 above kappa_max "
            f"{kappa_max:.3g} s-1",
        )
    return ModelChoice(
        "exponential",
        f"exponential converged (a = {exponential.a_per_s:.3g} s-1, R2 "
        f"{exponential.r_squared:.4f} vs linear {linear.r_squared:.4f})",
    )
