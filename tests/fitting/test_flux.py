"""Water correction and the flux term."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from chamberd.fitting import dry_air_mol_m2, slope_to_flux, wet_to_dry
from chamberd.network_sync.formats import read_81x


def test_wet_to_dry_reproduces_the_instrument_cdry_column(salt_81x):
    """LI-8100A logs Cdry = CO2 / (1 - H2O/1000) rounded to 0.01: ours within rounding."""
    for obs in read_81x(salt_81x).observations:
        ours = wet_to_dry(obs.columns["co2_umol_mol"], obs.columns["h2o_mmol_mol"])
        assert np.max(np.abs(ours - obs.columns["co2_dry_umol_mol"])) <= 0.0151


def test_flux_term_by_hand():
    # 10 V P0 (1 - W0/1000) / (R S (T0 + 273.15))
    expected = 10 * 5020.1 * 99.1 * (1 - 9.636 / 1000) / (8.314 * 317.8 * (11.78 + 273.15))
    got = dry_air_mol_m2(
        volume_cm3=5020.1,
        area_cm2=317.8,
        pressure_kpa=99.1,
        temperature_degc=11.78,
        h2o_mmol_mol=9.636,
    )
    assert got == pytest.approx(expected, rel=1e-15)
    assert slope_to_flux(0.104, got) == pytest.approx(0.68, abs=0.005)  # SALT obs 1 footer


def test_physical_inputs_have_no_defaults():
    for name, param in inspect.signature(dry_air_mol_m2).parameters.items():
        assert param.default is inspect.Parameter.empty, name


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("volume_cm3", 0.0, "volume_cm3 must be > 0"),
        ("area_cm2", -1.0, "area_cm2 must be > 0"),
        ("pressure_kpa", 0.0, "pressure_kpa must be > 0"),
        ("temperature_degc", -300.0, "temperature_degc"),
        ("h2o_mmol_mol", 1000.0, "h2o_mmol_mol"),
        ("h2o_mmol_mol", float("nan"), "h2o_mmol_mol"),
    ],
)
def test_non_physical_inputs_are_rejected_by_name(field, value, message):
    args = dict(
        volume_cm3=5000.0,
        area_cm2=317.8,
        pressure_kpa=99.0,
        temperature_degc=10.0,
        h2o_mmol_mol=10.0,
    )
    args[field] = value
    with pytest.raises(ValueError, match=message):
        dry_air_mol_m2(**args)
