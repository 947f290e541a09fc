"""Corrections from zero/span checks: the choices at the edges, and what a span or offset
error does to a flux, shown through the fitting engine with seeded random traces."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

from chamberd.calibration import corrections
from chamberd.calibration.corrections import (
    CheckEvent,
    GainOffset,
    Reading,
    calibrations_in_force,
    check_events_from_record,
    correct_mf,
    correction_series,
    correction_series_by_key,
    gain_offset_at,
    gain_offset_from_readings,
    true_mf,
)
from chamberd.fitting import fit_closure

DAY_S = 86400.0


def test_docstring_examples():
    result = doctest.testmod(corrections, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def _event(cid, at, found, adjusted=False, left=(), gas="co2"):
    return CheckEvent(
        cid,
        "li850",
        gas,
        at,
        tuple(Reading(r, m) for r, m in found),
        adjusted,
        tuple(Reading(r, m) for r, m in left),
    )


def test_two_gases_give_the_line_through_them():
    got = gain_offset_from_readings([0.0, 400.0, 800.0], [3.0, 423.0, 843.0])
    assert got.gain == pytest.approx(1.05) and got.offset_mf == pytest.approx(3.0)


def test_repeated_readings_of_one_cylinder_are_one_gas():
    got = gain_offset_from_readings([400.0, 400.0], [419.0, 421.0])
    assert got == GainOffset(1.05, 0.0)


def test_span_only_keeps_the_offset_in_force_and_zero_only_keeps_the_gain():
    prior = GainOffset(1.02, 1.5)
    span = gain_offset_from_readings([400.0], [421.5], prior=prior)
    assert span.offset_mf == 1.5 and span.gain == pytest.approx(1.05)
    zero = gain_offset_from_readings([0.0], [2.5], prior=prior)
    assert zero == GainOffset(1.02, 2.5)


@pytest.mark.parametrize(
    ("ref", "meas"), [([], []), ([400.0], [math.nan]), ([400.0], [-10.0]), ([1.0], [1.0, 2.0])]
)
def test_bad_readings_are_refused(ref, meas):
    with pytest.raises(ValueError):
        gain_offset_from_readings(ref, meas)


def test_linear_between_checks_constant_before_the_first_and_after_the_last():
    s = correction_series(
        [
            _event("b", 10 * DAY_S, [(0.0, 0.0), (400.0, 420.0)]),
            _event("a", 0.0, [(0.0, 2.0), (400.0, 402.0)]),
        ]
    )
    assert [seg.kind for seg in s.segments] == [
        "before_first_check",
        "between_checks",
        "after_last_check",
    ]
    gain, offset = gain_offset_at(s, [-DAY_S, 0.0, 5 * DAY_S, 10 * DAY_S, 20 * DAY_S])
    np.testing.assert_allclose(gain, [1.0, 1.0, 1.025, 1.05, 1.05])
    np.testing.assert_allclose(offset, [2.0, 2.0, 1.0, 0.0, 0.0], atol=1e-9)
    assert calibrations_in_force(s, -DAY_S) == ("a",)
    assert calibrations_in_force(s, 5 * DAY_S) == ("a", "b")
    assert calibrations_in_force(s, 30 * DAY_S) == ("b",)


def test_an_adjustment_restarts_the_correction():
    # found 5 % high and adjusted; re-check as left reads 0.2 % high; found 1 % high a week on
    s = correction_series(
        [
            _event("a", 0.0, [(400.0, 420.0)], adjusted=True, left=[(400.0, 400.8)]),
            _event("b", 7 * DAY_S, [(400.0, 404.0)]),
        ]
    )
    gain, _ = gain_offset_at(s, [-1.0, 1.0, 3.5 * DAY_S, 8 * DAY_S])
    np.testing.assert_allclose(gain, [1.05, 1.002, 1.006, 1.01], rtol=1e-6)


def test_an_adjustment_without_a_recheck_restarts_from_identity():
    s = correction_series([_event("a", 0.0, [(400.0, 420.0)], adjusted=True)])
    gain, offset = gain_offset_at(s, [-1.0, 1.0])
    assert gain.tolist() == [1.05, 1.0] and offset.tolist() == [0.0, 0.0]


def test_checks_of_several_analysers_are_refused_or_grouped():
    events = [_event("a", 0.0, [(400.0, 420.0)]), _event("b", 0.0, [(0.0, 1.0)], gas="h2o")]
    with pytest.raises(ValueError, match="several"):
        correction_series(events)
    assert set(correction_series_by_key(events)) == {("li850", "co2"), ("li850", "h2o")}


def test_events_from_a_record_as_the_plan_stores_it():
    record = {
        "id": "c1",
        "analyser": "li850",
        "performed_at": "2026-07-01T10:00:00Z",
        "instrument_serial": "SN1",
        "adjusted": 1,
        "data": json.dumps(
            {
                "checks": [
                    {"gas": "co2", "at": "2026-07-01T10:05:00Z", "reference": 0, "measured": 1},
                    {"gas": "co2", "at": "2026-07-01T10:10:00Z", "reference": 400, "measured": 421},
                ],
                "adjusted": True,
                "checks_after": [{"gas": "co2", "reference": 400, "measured": 400.4}],
            }
        ),
    }
    (event,) = check_events_from_record(record)
    assert event.serial == "SN1" and event.adjusted and len(event.as_left) == 1
    assert event.at_unix_s == corrections.iso_to_unix_s("2026-07-01T10:10:00Z")
    assert check_events_from_record({"id": "x", "data": None}) == []


# --- through the fitting engine: a span error scales the flux 1:1, an offset cancels ------


def _trace(rng):
    """A seeded random closure: (elapsed_s, true CO2 umol/mol, H2O mmol/mol, inputs)."""
    t = np.arange(0.0, 121.0)
    c0 = rng.uniform(380.0, 480.0)
    slope = rng.uniform(0.05, 1.5)  # umol/mol per s at closure
    a = rng.uniform(0.0005, 0.004)
    c = c0 + slope / a * (1.0 - np.exp(-a * t)) + rng.normal(0.0, 0.3, t.size)
    h2o = rng.uniform(5.0, 25.0) + 0.01 * t
    inputs = {
        "pressure_kpa": rng.uniform(85.0, 102.0),
        "temperature_degc": rng.uniform(5.0, 30.0),
        "volume_cm3": rng.uniform(4000.0, 6000.0),
        "area_cm2": 317.8,
        "dead_band_s": 10.0,
        "end_s": 120.0,
        "precision_mf": 0.3,
    }
    return t, c, h2o, inputs


def _fluxes(t, c, h2o, inputs):
    fit = fit_closure(t, c, h2o_mmol_mol=h2o, **inputs)
    return fit.lin_flux, fit.exp_flux


@pytest.mark.parametrize("seed", range(12))
def test_span_error_scales_the_flux_one_to_one_and_an_offset_largely_cancels(seed):
    rng = np.random.default_rng(seed)
    t, c, h2o, inputs = _trace(rng)
    gain = rng.uniform(0.9, 1.1)
    offset = rng.uniform(-20.0, 20.0)
    lin, exp = _fluxes(t, c, h2o, inputs)
    # span error alone: both fluxes scale by the gain
    lin_g, exp_g = _fluxes(t, gain * c, h2o, inputs)
    assert lin_g / lin == pytest.approx(gain, rel=1e-6)
    assert exp_g / exp == pytest.approx(gain, rel=1e-3)
    # offset alone: the flux hardly moves (it enters only through the water dilution of a
    # rising H2O and the exponential's curvature); with a dry trace the linear flux is exact
    lin_o, exp_o = _fluxes(t, c + offset, h2o, inputs)
    assert abs(lin_o / lin - 1.0) < 1e-3
    assert abs(exp_o / exp - 1.0) < 0.01
    dry_lin, _ = _fluxes(t, c, 0.0, inputs)
    dry_lin_o, _ = _fluxes(t, c + offset, 0.0, inputs)
    assert dry_lin_o / dry_lin == pytest.approx(1.0, abs=1e-9)
    # both, corrected by a correction made from a zero/span check of the same analyser
    s = correction_series([_event("chk", 0.0, [(0.0, offset), (400.0, offset + gain * 400.0)])])
    measured = offset + gain * c
    corrected = correct_mf(measured, np.full(t.size, 3600.0), s)
    lin_c, exp_c = _fluxes(t, corrected, h2o, inputs)
    assert lin_c == pytest.approx(lin, rel=1e-9)
    assert exp_c == pytest.approx(exp, rel=1e-6)


def test_a_drifting_span_is_recovered_by_interpolating_between_checks():
    """Gain 1.00 -> 1.05 over a week, checks at both ends: a closure mid-week is corrected
    to within the fit's own noise, uncorrected it is ~2.5 % high."""
    rng = np.random.default_rng(42)
    week = 7 * DAY_S
    s = correction_series([_event("a", 0.0, [(400.0, 400.0)]), _event("b", week, [(400.0, 420.0)])])
    t, c, h2o, inputs = _trace(rng)
    when = 0.5 * week + t
    gain_true = 1.0 + 0.05 * when / week
    measured = gain_true * c
    lin, _ = _fluxes(t, c, h2o, inputs)
    lin_raw, _ = _fluxes(t, measured, h2o, inputs)
    lin_c, _ = _fluxes(t, correct_mf(measured, when, s), h2o, inputs)
    assert lin_raw / lin - 1.0 == pytest.approx(0.025, abs=0.002)
    assert lin_c == pytest.approx(lin, rel=1e-4)
    np.testing.assert_allclose(true_mf(measured, gain_true, 0.0), c)
