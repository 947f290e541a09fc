"""Pure numerics of chamber fluxes: arrays in, frozen dataclasses out, no I/O.

Mole fractions are in the gas's own unit, written ``mf`` in names (umol mol-1 for CO2,
nmol mol-1 for CH4 and N2O); time in seconds since the chamber closed. See
``docs/nomenclature.md`` and ``docs/fitting.md``. This package imports nothing else of
chamberd.
"""

from .closure import FLAGS, ClosureFit, FitSettings, fit_closure
from .closures import Closure, fit_closures
from .exponential import DEFAULT_A_BOUNDS_PER_S, ExponentialFit, fit_exponential, fit_hmr
from .flux import R_J_MOL_K, celsius_to_kelvin, dry_air_mol_m2, slope_to_flux, wet_to_dry
from .linear import (
    LinearFit,
    QuadraticFit,
    fit_linear,
    fit_quadratic,
    intercept_at_start,
)
from .quality import (
    SELECTION_RULES,
    ModelChoice,
    g_factor,
    kappa_max_per_s,
    minimal_detectable_flux,
    select_model,
)
from .tracegas import (
    EbullitionStep,
    Onset,
    Segment,
    closing_onset_s,
    detect_ebullition,
    diffusive_segment,
    without_steps,
)
from .window import DeadBandChoice, choose_dead_band, window_mask

__all__ = [
    "DEFAULT_A_BOUNDS_PER_S",
    "FLAGS",
    "R_J_MOL_K",
    "SELECTION_RULES",
    "Closure",
    "ClosureFit",
    "DeadBandChoice",
    "EbullitionStep",
    "ExponentialFit",
    "FitSettings",
    "LinearFit",
    "ModelChoice",
    "Onset",
    "QuadraticFit",
    "Segment",
    "celsius_to_kelvin",
    "choose_dead_band",
    "closing_onset_s",
    "detect_ebullition",
    "diffusive_segment",
    "dry_air_mol_m2",
    "fit_closure",
    "fit_closures",
    "fit_exponential",
    "fit_hmr",
    "fit_linear",
    "fit_quadratic",
    "g_factor",
    "intercept_at_start",
    "kappa_max_per_s",
    "minimal_detectable_flux",
    "select_model",
    "slope_to_flux",
    "wet_to_dry",
    "window_mask",
    "without_steps",
]
