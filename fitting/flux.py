"""From a mole-fraction slope to a soil efflux: water correction and the flux term."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "R_J_MOL_K",
    "celsius_to_kelvin",
    "dry_air_mol_m2",
    "slope_to_flux",
    "wet_to_dry",
]

#: Molar gas constant as used by LI-COR firmware [J mol-1 K-1].
R_J_MOL_K = 8.314


def celsius_to_kelvin(temperature_degc: ArrayLike) -> np.ndarray | float:
    """Temperature in kelvin [K] from degrees Celsius [degC].

    >>> celsius_to_kelvin(25.0)
    298.15
    """
    value = np.asarray(temperature_degc, dtype=float) + 273.15
    return float(value) if value.ndim == 0 else value


def wet_to_dry(mole_fraction: ArrayLike, h2o_mmol_mol: ArrayLike) -> np.ndarray:
    """Dry mole fraction C' = C / (1 - W / 1000), point by point.

    Parameters
    ----------
    mole_fraction : array_like
        Mole fraction in moist air [mf].
    h2o_mmol_mol : array_like
        Water vapour mole fraction [mmol mol-1].

    Returns
    -------
    numpy.ndarray
        Dry mole fraction [mf].

    Examples
    --------
    The first row of an LI-8100A file: CO2 400.39, H2O 9.611, Cdry printed as 404.28:

    >>> round(float(wet_to_dry(400.39, 9.611)), 2)
    404.28
    """
    c = np.asarray(mole_fraction, dtype=float)
    w = np.asarray(h2o_mmol_mol, dtype=float)
    return c / (1.0 - w / 1000.0)


def dry_air_mol_m2(
    *,
    volume_cm3: float,
    area_cm2: float,
    pressure_kpa: float,
    temperature_degc: float,
    h2o_mmol_mol: float,
) -> float:
    """Moles of dry air in the chamber per square metre of soil [mol m-2].

    This is the flux term of LI-COR's equation: 10 V P0 (1 - W0/1000) / (R S (T0 + 273.15)).

    Parameters
    ----------
    volume_cm3 : float
        Total system volume (chamber, collar offset, tubing, analyser) [cm3].
    area_cm2 : float
        Soil area inside the collar [cm2].
    pressure_kpa : float
        Initial pressure P0 [kPa].
    temperature_degc : float
        Initial chamber air temperature T0 [degC].
    h2o_mmol_mol : float
        Initial water vapour mole fraction W0 [mmol mol-1].

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For a non-positive volume, area, pressure or absolute temperature, or W0 >= 1000.

    Notes
    -----
    With V in cm3, S in cm2, P in kPa and R in J mol-1 K-1, the factor 10 converts
    cm3 kPa / (cm2 J) to mol m-2.

    References
    ----------
    LI-COR (2015) LI-8100A Automated Soil Gas Flux System instruction manual, eq. 6-4.

    Examples
    --------
    >>> round(dry_air_mol_m2(volume_cm3=5020.1, area_cm2=317.8, pressure_kpa=99.1,
    ...                      temperature_degc=11.78, h2o_mmol_mol=9.636), 4)
    6.5445
    """
    if not volume_cm3 > 0:
        raise ValueError(f"volume_cm3 must be > 0, got {volume_cm3}")
    if not area_cm2 > 0:
        raise ValueError(f"area_cm2 must be > 0, got {area_cm2}")
    if not pressure_kpa > 0:
        raise ValueError(f"pressure_kpa must be > 0, got {pressure_kpa}")
    kelvin = temperature_degc + 273.15
    if not kelvin > 0:
        raise ValueError(f"temperature_degc must be above -273.15, got {temperature_degc}")
    if not (0 <= h2o_mmol_mol < 1000) or not math.isfinite(h2o_mmol_mol):
        raise ValueError(f"h2o_mmol_mol must be in [0, 1000), got {h2o_mmol_mol}")
    return (
        10.0
        * volume_cm3
        * pressure_kpa
        * (1.0 - h2o_mmol_mol / 1000.0)
        / (R_J_MOL_K * area_cm2 * kelvin)
    )


def slope_to_flux(slope_mf_s: float, dry_air_mol_m2: float) -> float:
    """Flux from the dry mole-fraction slope: F = dry air x dC'/dt.

    Parameters
    ----------
    slope_mf_s : float
        dC'/dt [mf s-1]; umol mol-1 s-1 for CO2, nmol mol-1 s-1 for CH4 and N2O.
    dry_air_mol_m2 : float
        From :func:`dry_air_mol_m2` [mol m-2].

    Returns
    -------
    float
        Flux [umol m-2 s-1 for CO2; nmol m-2 s-1 for CH4 and N2O].

    >>> round(slope_to_flux(0.1, 6.56), 3)
    0.656
    """
    return slope_mf_s * dry_air_mol_m2
