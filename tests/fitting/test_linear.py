"""Linear and quadratic fits: published values, invariances, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chamberd.fitting import fit_linear, fit_quadratic, intercept_at_start

# gasfluxes 0.7 tests (Fuss, CRAN): time in h, V = 0.3 m3, A = 1 m2 -> h = 0.3 m
GASFLUXES_T_H = [0, 1 / 3, 2 / 3, 1]
GASFLUXES_C = [320, 341, 352, 359]


def test_gasfluxes_linear_example_to_printed_precision():
    fit = fit_linear(GASFLUXES_T_H, GASFLUXES_C)
    f0 = fit.slope_mf_s * 0.3
    se = fit.slope_se_mf_s * 0.3
    assert round(f0, 2) == 11.52
    assert round(se, 6) == 2.028497
    assert round(fit.intercept_mf, 1) == 323.8


def test_exact_line_has_r2_one_and_zero_error():
    t = np.arange(0.0, 60.0)
    fit = fit_linear(t, 400 + 0.25 * t)
    assert fit.slope_mf_s == pytest.approx(0.25, rel=1e-14)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.slope_se_mf_s == pytest.approx(0.0, abs=1e-12)
    assert fit.converged and fit.message == ""


def test_slope_is_invariant_to_a_time_shift():
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 90.0)
    y = 410 + 0.3 * t + rng.normal(0, 0.4, t.size)
    a, b = fit_linear(t, y), fit_linear(t + 12_345.0, y)
    assert b.slope_mf_s == pytest.approx(a.slope_mf_s, rel=1e-9)
    assert b.slope_se_mf_s == pytest.approx(a.slope_se_mf_s, rel=1e-9)
    assert b.r_squared == pytest.approx(a.r_squared, rel=1e-12)


def test_non_finite_samples_are_ignored():
    t = np.arange(10.0)
    y = 2.0 * t + 1
    y[3] = np.nan
    fit = fit_linear(t, y)
    assert fit.n_points == 9
    assert fit.slope_mf_s == pytest.approx(2.0)


def test_too_few_points_is_reported_not_nan_silently():
    fit = fit_linear([1.0], [2.0])
    assert not fit.converged
    assert math.isnan(fit.slope_mf_s)
    assert "too few points" in fit.message


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="differ in length"):
        fit_linear([0, 1, 2], [1, 2])


def test_quadratic_reports_curvature_and_slope_at_t0():
    t = np.arange(0.0, 121.0)
    fit = fit_quadratic(t, 400 + 0.5 * t - 0.001 * t**2, t0_s=10.0)
    assert fit.slope_mf_s == pytest.approx(0.5 - 0.02, rel=1e-9)
    assert fit.curvature_mf_s2 == pytest.approx(-0.001, rel=1e-9)


def test_intercept_over_first_ten_seconds():
    t = np.arange(-5.0, 60.0)
    y = np.where(t < 0, 999.0, 3.0 + 0.1 * t)
    y[t > 10] = 50.0  # beyond the start window: ignored
    assert intercept_at_start(t, y) == pytest.approx(3.0)


def test_intercept_without_samples_in_window_raises():
    with pytest.raises(ValueError, match="no finite sample"):
        intercept_at_start([20.0, 30.0], [1.0, 2.0])
