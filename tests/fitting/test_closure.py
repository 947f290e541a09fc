"""fit_closure: initial values as the firmware takes them, windows, flags, dead band scan."""

from __future__ import annotations

import numpy as np
import pytest

from chamberd.fitting import FLAGS, FitSettings, choose_dead_band, fit_closure
from chamberd.network_sync.formats import read_81x


def _fit(obs, **kw):
    return fit_closure(
        obs.elapsed_s,
        obs.columns["co2_umol_mol"],
        h2o_mmol_mol=obs.columns["h2o_mmol_mol"],
        pressure_kpa=obs.columns["pressure_kpa"],
        temperature_degc=obs.columns["temperature_degc"],
        volume_cm3=obs.volume_cm3,
        area_cm2=obs.area_cm2,
        dead_band_s=kw.pop("dead_band_s", obs.gases[0].dead_band_s),
        end_s=obs.gases[0].end_s,
        precision_mf=1.0,
        settings=FitSettings(initial_window_end_exclusive=obs.gases[0].initial_end_exclusive),
        **kw,
    )


def test_initial_values_match_the_instrument_type2_rows(salt_81x):
    """P0, T0, W0, C'0 are intercepts over the first ten samples (0 <= Etime < 10 s); the
    instrument prints them, rounded, in its Type 2 rows."""
    observations = read_81x(salt_81x).observations
    assert observations
    for obs in observations:
        fit = _fit(obs)
        initial = obs.instrument_rows["initial"]
        assert fit.pressure_kpa == pytest.approx(initial["pressure_kpa"], abs=0.006)
        assert fit.temperature_degc == pytest.approx(initial["temperature_degc"], abs=0.006)
        assert fit.h2o_mmol_mol == pytest.approx(initial["h2o_mmol_mol"], abs=0.0006)
        assert fit.c0_mf == pytest.approx(initial["co2_dry_umol_mol"], abs=0.006)


def test_window_is_dead_band_to_observation_length(salt_81x):
    """Crv_#Smp of the footer is the number of samples the firmware fitted."""
    for obs in read_81x(salt_81x).observations:
        assert _fit(obs).n_points == obs.reference["co2"].n_points


def _synthetic(seed=0, a=0.006, slope=0.4, mixing_s=15.0):
    rng = np.random.default_rng(seed)
    t = np.arange(-5.0, 121.0)
    c = 410 + slope / a * -np.expm1(-a * np.clip(t, 0, None))
    # a mixing disturbance right after closing: the first seconds lag behind
    c = np.where(t < mixing_s, c - 3.0 * np.exp(-np.clip(t, 0, None) / 4.0), c)
    c = c + rng.normal(0, 0.2, t.size)
    return t, c


def test_fit_closure_dry_input_and_scalar_initial_values():
    t, c = _synthetic()
    fit = fit_closure(
        t,
        c,
        h2o_mmol_mol=10.0,
        pressure_kpa=100.0,
        temperature_degc=20.0,
        volume_cm3=5000.0,
        area_cm2=317.8,
        dead_band_s=20.0,
        end_s=120.0,
        precision_mf=1.0,
        dry=True,
    )
    assert fit.h2o_mmol_mol == 10.0 and fit.pressure_kpa == 100.0
    assert fit.model == "exponential"
    assert fit.flux == fit.exp_flux
    assert fit.exp_flux == pytest.approx(fit.dry_air_mol_m2 * 0.4, rel=0.05)
    assert set(fit.flags) <= set(FLAGS)


def test_auto_dead_band_reports_its_choice_and_reason():
    t, c = _synthetic(mixing_s=15.0)
    fit = fit_closure(
        t,
        c,
        h2o_mmol_mol=10.0,
        pressure_kpa=100.0,
        temperature_degc=20.0,
        volume_cm3=5000.0,
        area_cm2=317.8,
        dead_band_s="auto",
        end_s=120.0,
        precision_mf=1.0,
        dry=True,
    )
    choice = fit.dead_band_choice
    assert choice is not None
    assert "dead_band_auto" in fit.flags
    assert 5.0 <= choice.dead_band_s <= 40.0  # after the disturbance, not deep in the trace
    assert "steadiest" in choice.reason and f"{choice.dead_band_s:g}" in choice.reason
    assert len(choice.candidates_s) == len(choice.slopes_mf_s)


def test_choose_dead_band_needs_enough_points():
    with pytest.raises(ValueError, match="no window"):
        choose_dead_band(np.arange(5.0), np.arange(5.0), c0_mf=0.0, end_s=4.0)


def test_flags_describe_but_never_change_the_flux():
    t, c = _synthetic()
    base = dict(
        h2o_mmol_mol=10.0,
        pressure_kpa=100.0,
        temperature_degc=20.0,
        volume_cm3=5000.0,
        area_cm2=317.8,
        dead_band_s=20.0,
        end_s=120.0,
        dry=True,
    )
    quiet = fit_closure(t, c, precision_mf=0.01, **base)
    noisy = fit_closure(t, c, precision_mf=1e4, **base)  # huge precision: below MDF
    assert "below_mdf" in noisy.flags and "below_mdf" not in quiet.flags
    assert noisy.flux == quiet.flux


def test_selection_linear_rule_and_settings_validation():
    t, c = _synthetic()
    fit = fit_closure(
        t,
        c,
        h2o_mmol_mol=10.0,
        pressure_kpa=100.0,
        temperature_degc=20.0,
        volume_cm3=5000.0,
        area_cm2=317.8,
        dead_band_s=20.0,
        end_s=120.0,
        precision_mf=1.0,
        dry=True,
        settings=FitSettings(selection="linear"),
    )
    assert fit.model == "linear" and fit.flux == fit.lin_flux
    with pytest.raises(ValueError, match="selection"):
        FitSettings(selection="best")
    with pytest.raises(ValueError, match="exp_form"):
        FitSettings(exp_form="hmr")


def test_mismatched_arrays_raise():
    with pytest.raises(ValueError, match="samples"):
        fit_closure(
            np.arange(10.0),
            np.arange(9.0),
            h2o_mmol_mol=0.0,
            pressure_kpa=100.0,
            temperature_degc=20.0,
            volume_cm3=1.0,
            area_cm2=1.0,
            dead_band_s=0.0,
            end_s=9.0,
            precision_mf=1.0,
        )


@pytest.mark.parametrize("seed", range(8))
def test_choose_dead_band_is_not_fooled_by_a_gap_in_the_trace(seed):
    """Where no sample lies between two candidate dead bands, their windows hold the same
    samples and the same slope: that is no evidence of a steady flux. Here the first reading
    after the closure comes late (1.3 s) and three are lost at 15-17 s; before they were
    skipped, the scan chose 0 s (in the mixing) or 16 s with a sensitivity of exactly 0."""
    t, c = _synthetic(seed=seed, mixing_s=15.0)
    t = t + 0.3
    keep = ~np.isin(np.round(t, 1), [0.3, 15.3, 16.3])
    t, c = t[keep], c[keep]
    choice = choose_dead_band(t, c * 1e-6, c0_mf=410e-6, end_s=120.0)
    assert choice.sensitivity_per_s > 0, choice.reason
    assert choice.dead_band_s >= 5.0, choice.reason  # after the mixing disturbance
    # the slopes are reported for every candidate, the gap's equal ones included
    assert len(choice.slopes_mf_s) == len(choice.candidates_s) == 41
