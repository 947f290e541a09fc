"""Temperature response, diel cycle, gap-filling, sums and sampling emulation: exact cases.

Hand-computed or analytically known results; the statistical properties (CI coverage over
seeds, gap-filling error on synthetic gaps) are in test_temporal_synthetic.py, the COSORE
Yamashiro data in test_temporal_cosore.py.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest

from chamberd.controller.errors import ConfigError, FitError
from chamberd.network_sync.compare import temporal as tp


def test_docstring_examples():
    result = doctest.testmod(tp, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0


# ---------------------------------------------------------------------------------------------
# unit conversions, by hand


def test_co2_factor_by_hand():
    # 1 umol CO2 m-2 s-1 carries 1 umol C; 12.011 g C per mol C -> 12.011e-6 g per umol
    assert tp.sum_factor("co2") == pytest.approx(12.011e-6, rel=1e-15)
    # a year (365 d) at 1 umol m-2 s-1: 31,536,000 s x 12.011e-6 = 378.778896 g C m-2
    assert 365 * 86400 * tp.sum_factor("co2") == pytest.approx(378.778896, rel=1e-12)


def test_ch4_and_n2o_factors_by_hand():
    # CH4: 1 nmol m-2 s-1 over a day = 86400 nmol C = 86400 x 12.011e-9 g = 1.0377504 mg C
    assert 86400 * tp.sum_factor("ch4") == pytest.approx(1.0377504, rel=1e-12)
    # N2O: two N per molecule, 14.007 g N per mol: a day at 1 nmol m-2 s-1 is
    # 86400 x 2 x 14.007e-9 g = 2.4204096 mg N
    assert 86400 * tp.sum_factor("n2o") == pytest.approx(2.4204096, rel=1e-12)
    assert tp.GASES["ch4"][1] == "mg C m-2"
    assert tp.GASES["n2o"][1] == "mg N m-2"


def test_unknown_gas_is_a_clear_error():
    with pytest.raises(ConfigError, match="gas 'h2o'"):
        tp.sum_factor("h2o")


def _constant_frame(days: int, flux: float, *, step_s: int = 1800, flux_se: float = 0.0):
    t = pd.date_range("2021-01-01", periods=days * 86400 // step_s, freq=f"{step_s}s", tz="UTC")
    return pd.DataFrame(
        {
            "time_utc": t,
            "duration_s": float(step_s),
            "flux": flux,
            "filled": False,
            "flux_model": flux,
            "flux_se": flux_se,
        }
    )


@pytest.mark.parametrize(
    ("gas", "column", "per_day"),
    [("co2", "sum_g_c_m2", 1.0377504), ("ch4", "sum_mg_c_m2", 1.0377504),
     ("n2o", "sum_mg_n_m2", 2.4204096)],
)  # fmt: skip
def test_sums_of_a_constant_flux_are_exact(gas, column, per_day):
    frame = _constant_frame(31, 2.5)
    daily = tp.sums(frame, gas, "day")
    assert len(daily) == 31
    np.testing.assert_allclose(daily[column], 2.5 * per_day, rtol=1e-12)
    monthly = tp.sums(frame, gas, "month")
    assert monthly[column].tolist() == pytest.approx([31 * 2.5 * per_day], rel=1e-12)
    period = tp.sums(frame, gas, "period")
    assert period[column].iloc[0] == pytest.approx(31 * 2.5 * per_day, rel=1e-12)
    assert daily.attrs["unit"] == tp.GASES[gas][1]


def test_random_error_of_independent_measurements():
    # 48 measured slots, SE 0.2 umol m-2 s-1 each: sd of the sum = sqrt(48) x 0.2 x 1800 x k
    frame = _constant_frame(1, 1.0, flux_se=0.2)
    row = tp.sums(frame, "co2", "period").iloc[0]
    expected = math.sqrt(48) * 0.2 * 1800 * 12.011e-6
    assert row["random_se_g_c_m2"] == pytest.approx(expected, rel=1e-12)
    assert row["gap_fill_se_g_c_m2"] == 0.0
    assert row["total_se_g_c_m2"] == pytest.approx(expected, rel=1e-12)
    z = 1.959963984540054
    assert row["ci_upper_g_c_m2"] - row["sum_g_c_m2"] == pytest.approx(z * expected)


def test_ar1_quadratic_form_matches_the_covariance_matrix():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 2, size=40) * (rng.uniform(size=40) > 0.3)
    for rho in (0.0, 0.5, 0.95):
        lags = np.abs(np.subtract.outer(np.arange(40), np.arange(40)))
        running = [a[: k + 1] @ (rho ** lags[: k + 1, : k + 1]) @ a[: k + 1] for k in range(40)]
        np.testing.assert_allclose(tp._ar1_quadratic(a, rho), running, rtol=1e-12)


def test_ar1_sum_of_one_long_gap_matches_the_effective_sample_size():
    # m equal errors with lag-1 correlation rho: var = m a^2 (1 + rho)/(1 - rho) for large m
    m, rho = 20000, 0.9
    var = tp._ar1_quadratic(np.ones(m), rho)[-1]
    assert var / m == pytest.approx((1 + rho) / (1 - rho), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# temperature response


def test_q10_exact_recovery_and_counts():
    t = np.linspace(-2, 25, 50)
    f = tp.q10_model(t, 1.8, 2.4)
    f[[3, 7]] = [-0.1, 0.0]  # left out: not positive
    f[11] = np.nan
    fit = tp.q10_fit(t, f, n_boot=0)
    assert fit.converged
    assert fit.r10 == pytest.approx(1.8, rel=1e-12)
    assert fit.q10 == pytest.approx(2.4, rel=1e-12)
    assert fit.slope_per_degc == pytest.approx(math.log(2.4) / 10, rel=1e-12)
    assert (fit.n, fit.n_nonpositive_excluded, fit.n_nonfinite_excluded) == (47, 2, 1)
    assert fit.r10_ci is None and fit.q10_ci is None
    np.testing.assert_allclose(fit.predict([10.0, 20.0]), [1.8, 4.32], rtol=1e-12)


def test_q10_too_few_points_says_why():
    fit = tp.q10_fit([5.0, 5.0, 5.0], [1.0, 2.0, 3.0], n_boot=10)
    assert not fit.converged
    assert math.isnan(fit.r10) and math.isnan(fit.q10)
    assert "distinct temperatures" in fit.message
    fit = tp.q10_fit([1.0, 2.0, 3.0], [-1.0, 0.0, 1.0], n_boot=0)
    assert not fit.converged and fit.n_nonpositive_excluded == 2


def test_q10_bootstrap_is_seeded_and_blocks_count():
    rng = np.random.default_rng(0)
    t = np.tile(np.linspace(5, 20, 48), 30)
    f = tp.q10_model(t, 2.0, 2.0) * np.exp(rng.normal(0, 0.2, t.size))
    days = np.repeat(np.arange(30), 48)
    a = tp.q10_fit(t, f, n_boot=300, rng=np.random.default_rng(7), blocks=days)
    b = tp.q10_fit(t, f, n_boot=300, rng=np.random.default_rng(7), blocks=days)
    assert a.q10_ci == b.q10_ci and a.r10_ci == b.r10_ci
    assert a.n_blocks == 30 and a.n_boot == 300 and a.n_boot_failed == 0
    assert a.q10_ci[0] < a.q10 < a.q10_ci[1]
    assert "block bootstrap over 30 blocks" in a.method
    assert a.as_dict()["q10_ci"] == list(a.q10_ci)
    assert "q10_boot" not in a.as_dict()


def test_fits_agree_with_scipy_reference_implementations():
    """Q10 against scipy.stats.linregress on ln F, Lloyd-Taylor against
    scipy.optimize.curve_fit (Levenberg-Marquardt, numerical Jacobian)."""
    from scipy import optimize, stats

    rng = np.random.default_rng(4)
    t = rng.uniform(0, 25, 300)
    f = tp.lloyd_taylor(t, 1.7, 320.0) * np.exp(rng.normal(0, 0.2, t.size))
    q = tp.q10_fit(t, f, n_boot=0)
    line = stats.linregress(t, np.log(f))
    assert q.slope_per_degc == pytest.approx(line.slope, rel=1e-10)
    assert q.r10 == pytest.approx(np.exp(line.intercept + 10 * line.slope), rel=1e-10)
    assert q.r_squared_ln == pytest.approx(line.rvalue**2, rel=1e-10)
    lt = tp.lloyd_taylor_fit(t, f, n_boot=0)
    popt, pcov = optimize.curve_fit(
        lambda x, r10, e0: r10 * np.exp(e0 * (1 / 56.02 - 1 / (x + 46.02))), t, f, p0=[1, 300]
    )
    assert lt.r10 == pytest.approx(popt[0], rel=1e-6)
    assert lt.e0_k == pytest.approx(popt[1], rel=1e-6)
    assert lt.e0_k_se == pytest.approx(np.sqrt(pcov[1, 1]), rel=1e-3)


def test_lloyd_taylor_formula_by_hand():
    # T0 = 227.13 K, Tref = 283.15 K: at 20 degC, exp(E0 (1/56.02 - 1/66.02))
    e0 = 308.56
    expected = 2.0 * math.exp(e0 * (1 / 56.02 - 1 / 66.02))
    assert tp.lloyd_taylor(20.0, 2.0, e0) == pytest.approx(expected, rel=1e-14)
    assert tp.lloyd_taylor(10.0, 2.0, e0) == pytest.approx(2.0, rel=1e-14)
    # the same in kelvin, as the brief writes it
    tk = 293.15
    assert expected == pytest.approx(
        2.0 * math.exp(e0 * (1 / (283.15 - 227.13) - 1 / (tk - 227.13))), rel=1e-14
    )


def test_lloyd_taylor_exact_recovery_with_negative_fluxes_kept():
    t = np.linspace(0, 25, 40)
    f = tp.lloyd_taylor(t, 2.5, 250.0)
    noise = np.where(np.arange(40) % 2, 0.05, -0.05)
    fit = tp.lloyd_taylor_fit(t, f + noise, n_boot=0)
    assert fit.converged
    assert fit.r10 == pytest.approx(2.5, rel=0.01)
    assert fit.e0_k == pytest.approx(250.0, rel=0.02)
    exact = tp.lloyd_taylor_fit(t, f, n_boot=0)
    assert exact.r10 == pytest.approx(2.5, rel=1e-8)
    assert exact.e0_k == pytest.approx(250.0, rel=1e-8)
    low = tp.lloyd_taylor(t, 0.05, 250.0) + noise  # some fluxes negative: used, counted
    fit = tp.lloyd_taylor_fit(t, low, n_boot=0)
    assert fit.n == 40 and fit.n_nonpositive > 0


def test_implausible_values_are_left_out_and_counted():
    # -50 degC is below T0 = -46.02 degC and outside the plausible -40..80 degC; 1e9 is no flux
    t, f = [-50.0, 0.0, 10.0, 20.0, 15.0, 5.0], [0.1, 1.0, 2.0, 4.0, 1e9, 1.4]
    fit = tp.lloyd_taylor_fit(t, f, n_boot=0)
    assert (fit.n, fit.n_implausible_excluded, fit.n_nonfinite_excluded) == (4, 2, 0)
    q = tp.q10_fit(t, f, n_boot=0)
    assert (q.n, q.n_implausible_excluded) == (4, 2)
    assert tp.TEMPERATURE_RANGE_DEGC == (-40.0, 80.0) and tp.FLUX_MAX_ABS == 1e6


def test_lloyd_taylor_bootstrap_grid_matches_exact_refits():
    """The grid-and-parabola bootstrap gives the same replicates as exact weighted fits."""
    rng = np.random.default_rng(11)
    t = np.tile(np.linspace(2, 22, 24), 20)
    f = tp.lloyd_taylor(t, 2.0, 300.0) * np.exp(rng.normal(0, 0.15, t.size))
    days = np.repeat(np.arange(20), 24)
    fit = tp.lloyd_taylor_fit(t, f, n_boot=40, rng=np.random.default_rng(5), blocks=days)
    # redo the same resampling by hand
    gen = np.random.default_rng(5)
    picks = gen.integers(0, 20, size=(40, 20))
    counts = np.array([np.bincount(row, minlength=20) for row in picks])
    u = tp._lt_u(t)
    for k in range(40):
        w = counts[k][days]
        r10, e0 = tp._lt_weighted(u, f, w, (0.0, 1000.0))
        assert fit.e0_k_boot[k] == pytest.approx(e0, rel=2e-4)
        assert fit.r10_boot[k] == pytest.approx(r10, rel=2e-4)


def test_compare_temperature_response():
    rng = np.random.default_rng(2)
    t = np.tile(np.linspace(3, 23, 48), 40)
    days = np.repeat(np.arange(40), 48)
    noise = np.exp(rng.normal(0, 0.1, t.size))  # the same residuals: equal R10 exactly
    fa = tp.q10_fit(t, tp.q10_model(t, 2.0, 2.0) * noise, n_boot=400, rng=1, blocks=days)
    fb = tp.q10_fit(t, tp.q10_model(t, 2.0, 3.0) * noise, n_boot=400, rng=2, blocks=days)
    assert fa.r10 == pytest.approx(fb.r10, rel=1e-12)
    d = tp.compare_temperature_response(fa, fb)
    assert set(d) == {"r10", "q10"}
    assert d["q10"].difference == pytest.approx(fb.q10 - fa.q10)
    assert d["q10"].significant is True
    assert d["q10"].difference_ci[0] < 1.0 < d["q10"].difference_ci[1]
    assert d["r10"].significant is False
    with pytest.raises(ConfigError, match="fit one model"):
        tp.compare_temperature_response(fa, tp.lloyd_taylor_fit(t, np.exp(t / 10), n_boot=0))


# ---------------------------------------------------------------------------------------------
# local standard time and the diel cycle


def test_local_standard_time_inverted_cosore_sign_and_no_dst():
    t = pd.to_datetime(["2017-07-01T03:00Z", "2017-01-01T03:00Z"])
    assert [str(x) for x in tp.to_local_standard(t, "Etc/GMT-9")] == [
        "2017-07-01 12:00:00",
        "2017-01-01 12:00:00",
    ]
    assert [str(x) for x in tp.to_local_standard(t, "America/New_York")] == [
        "2017-06-30 22:00:00",
        "2016-12-31 22:00:00",
    ]
    assert [str(x) for x in tp.to_local_standard(t, 9)] == [
        "2017-07-01 12:00:00",
        "2017-01-01 12:00:00",
    ]
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        tp.to_local_standard(t, "Mars/Olympus")
    with pytest.raises(ConfigError, match="naive"):
        tp.to_local_standard(pd.to_datetime(["2017-01-01 00:00"]), "UTC")


def test_diel_hours_of_local_standard_time():
    t = pd.date_range("2020-06-01", periods=48 * 10, freq="30min", tz="UTC")
    local = tp.to_local_standard(t, "Etc/GMT-9")
    flux = np.asarray(local.hour, dtype=float) + np.tile([0.0, 1.0], 240)
    d = tp.diel(t, flux, zone="Etc/GMT-9")
    assert d["hour_local_standard"].tolist() == list(range(24))
    assert (d["n"] == 20).all()
    np.testing.assert_allclose(d["flux_mean"], np.arange(24) + 0.5)
    np.testing.assert_allclose(d["flux_sd"], np.std([0.0, 1.0] * 10, ddof=1))
    np.testing.assert_allclose(d["flux_iqr"], 1.0)
    same = tp.diel(local, flux)
    pd.testing.assert_frame_equal(d, same)
    with pytest.raises(ConfigError, match="timezone-aware"):
        tp.diel(t, flux)


def test_diel_empty_hours_are_nan_not_missing():
    t = pd.date_range("2020-06-01 10:00", periods=4, freq="h")
    d = tp.diel(t, [1.0, 2.0, np.nan, 4.0])
    assert len(d) == 24
    assert d.loc[12, "n"] == 0 and math.isnan(d.loc[12, "flux_mean"])
    assert d.loc[10, "n"] == 1 and math.isnan(d.loc[10, "flux_sd"])


# ---------------------------------------------------------------------------------------------
# gap-filling


def _series(days=60, r10=2.0, q10=2.0, step="30min"):
    t = pd.date_range("2021-03-01", periods=days * 48, freq=step, tz="UTC")
    d = np.arange(t.size) / 48.0
    temp = 10 + 5 * np.sin(2 * np.pi * d / 60) + 4 * np.cos(2 * np.pi * (d % 1 - 0.6))
    return pd.DataFrame(
        {"begin_utc": t, "flux": tp.q10_model(temp, r10, q10), "soil_temperature_degc": temp}
    )


def test_gap_fill_is_exact_on_an_exact_response_and_flags_fills():
    frame = _series()
    truth = frame["flux"].to_numpy().copy()
    gaps = np.zeros(len(frame), bool)
    gaps[100:400] = True  # 6 days
    gaps[1000:1003] = True
    gaps[2000:2200] = True
    frame.loc[gaps, "flux"] = np.nan
    out = tp.gap_fill(frame)
    assert len(out) == len(frame)
    assert out["filled"].to_numpy().tolist() == gaps.tolist()
    np.testing.assert_allclose(out["flux"], truth, rtol=1e-10)
    # measured values are kept exactly, filled ones flagged and carry an uncertainty
    measured = ~out["filled"]
    assert (out.loc[measured, "flux"].to_numpy() == truth[~gaps]).all()
    assert out.loc[measured, "fill_se"].isna().all()
    assert out.loc[~measured, "fill_se"].notna().all()
    assert out.attrs["q10"] == pytest.approx(2.0, rel=1e-10)
    assert out.attrs["n_filled"] == int(gaps.sum())


def test_gap_fill_lloyd_taylor_and_fixed_sensitivity():
    frame = _series()
    temp = frame["soil_temperature_degc"].to_numpy()
    frame["flux"] = tp.lloyd_taylor(temp, 1.5, 280.0)
    truth = frame["flux"].to_numpy().copy()
    frame.loc[500:700, "flux"] = np.nan
    out = tp.gap_fill(frame, model="lloyd_taylor")
    np.testing.assert_allclose(out["flux"], truth, rtol=1e-8)
    fixed = tp.gap_fill(frame, model="lloyd-taylor", e0_k=280.0)
    assert fixed.attrs["sensitivity_source"] == "given"
    np.testing.assert_allclose(fixed["flux"], truth, rtol=1e-10)


def test_gap_fill_regular_grid_averages_and_temperature_gaps():
    frame = _series(days=10)
    # two observations in one slot are averaged; rows without flux but with T are gaps
    extra = frame.iloc[[5]].copy()
    extra["begin_utc"] += pd.Timedelta(minutes=10)
    extra["flux"] += 1.0
    frame = pd.concat([frame, extra]).sort_values("begin_utc")
    frame = frame.drop(index=frame.index[200:260])  # 30 h with neither flux nor temperature
    out = tp.gap_fill(frame, zone="Etc/GMT-9")
    assert out["time_utc"].diff().dropna().eq(pd.Timedelta(minutes=30)).all()
    assert out.loc[5, "n_observations"] == 2
    assert out.loc[5, "flux"] == pytest.approx(frame["flux"].iloc[5] + 0.5)
    assert out["temperature_filled"].sum() == 60
    assert out.loc[out["temperature_filled"], "filled"].all()
    assert "time_local_standard" in out.columns
    assert out["time_local_standard"].iloc[0] == pd.Timestamp("2021-03-01 09:00")


def test_gap_fill_period_and_interval():
    frame = _series(days=10)
    out = tp.gap_fill(frame, start="2021-02-28T00:00Z", end="2021-03-12T00:00Z", interval_s=3600)
    assert len(out) == 12 * 24
    assert out["duration_s"].eq(3600.0).all()
    assert out["filled"].iloc[:24].all() and out["filled"].iloc[-24:].all()
    assert not out["filled"].iloc[24 : 24 * 11].any()


def test_gap_fill_refuses_what_it_cannot_do():
    frame = _series(days=3)
    with pytest.raises(ConfigError, match="model 'spline'"):
        tp.gap_fill(frame, model="spline")
    with pytest.raises(ConfigError, match="no column 'soil_temperature_degc'"):
        tp.gap_fill(frame.drop(columns="soil_temperature_degc"), model="q10")
    no_t = frame.assign(soil_temperature_degc=np.nan)
    with pytest.raises(FitError, match="no soil temperature"):
        tp.gap_fill(no_t, model="lloyd_taylor")
    with pytest.raises(FitError, match="measured slots"):
        tp.gap_fill(frame.assign(flux=np.nan))
    with pytest.raises(ConfigError, match="naive"):
        tp.gap_fill(frame.assign(begin_utc=frame["begin_utc"].dt.tz_localize(None)))
    with pytest.raises(ConfigError, match="q10 50000"):
        tp.gap_fill(frame, model="q10", q10=5e4)


def test_gap_fill_auto_chooses_linear_without_temperature_or_for_uptake():
    frame = _series(days=20)
    frame.loc[200:260, "flux"] = np.nan
    auto = tp.gap_fill(frame)
    assert auto.attrs["model"] == "q10"
    no_t = tp.gap_fill(frame.drop(columns="soil_temperature_degc"))
    assert no_t.attrs["model"] == "linear" and "soil temperature" in no_t.attrs["model_reason"]
    # CH4 uptake: negative fluxes, a straight line across the gap
    uptake = frame.assign(flux=-1.0 - np.arange(len(frame)) * 1e-3)
    truth = uptake["flux"].to_numpy().copy()
    uptake.loc[200:260, "flux"] = np.nan
    out = tp.gap_fill(uptake)
    assert (
        out.attrs["model"] == "linear" and "0% of the fluxes positive" in out.attrs["model_reason"]
    )
    np.testing.assert_allclose(out["flux"], truth, rtol=1e-9)
    assert out.loc[out["filled"], "fill_se"].notna().all()
    daily = tp.sums(out, "ch4", "day")
    assert daily["sum_mg_c_m2"].lt(0).all() and np.isfinite(daily["total_se_mg_c_m2"]).all()


def test_linear_gap_fill_uncertainty_from_artificial_gaps():
    rng = np.random.default_rng(8)
    frame = _series(days=60)
    frame["flux"] = -2.0 + 0.3 * rng.normal(size=len(frame))  # white noise around -2
    gaps = np.zeros(len(frame), bool)
    for start in range(100, 2800, 300):
        gaps[start : start + 24] = True
    frame.loc[gaps, "flux"] = np.nan
    out = tp.gap_fill(frame, model="linear")
    classes = out.attrs["artificial_gap_classes"]
    assert classes and classes[0]["error"] == "flux unit"
    # the error of the mean of 24 filled values is about that of the line between two
    # noisy end points: 0.3 / sqrt(2) ... 0.3, never near the per-value noise 0.3 / sqrt(24)
    assert 0.15 < classes[0]["rms_error"] < 0.45
    level = out.loc[out["filled"], "fill_se_level"]
    assert level.notna().all() and (level > 0).all()


def test_sums_refuse_a_series_with_gaps():
    frame = _constant_frame(1, 1.0)
    frame.loc[3, "flux"] = np.nan
    with pytest.raises(ConfigError, match="gap-fill it first"):
        tp.sums(frame, "co2", "day")
    with pytest.raises(ConfigError, match="freq 'week'"):
        tp.sums(_constant_frame(1, 1.0), "co2", "week")


def test_sums_daily_by_local_standard_time():
    frame = _series(days=4)
    out = tp.gap_fill(frame, zone="Etc/GMT-9")
    daily = tp.sums(out, "co2", "day")
    # UTC midnight start = 09:00 local: the first local day has 15 h, then full days
    assert daily["n_slots"].tolist() == [30, 48, 48, 48, 18]
    assert daily["period_start"].iloc[0] == pd.Timestamp("2021-03-01")
    total = tp.sums(out, "co2", "period")["sum_g_c_m2"].iloc[0]
    assert daily["sum_g_c_m2"].sum() == pytest.approx(total, rel=1e-12)
    utc = tp.sums(out, "co2", "day", local_time=False)
    assert utc["n_slots"].tolist() == [48, 48, 48, 48]


def test_cumulative_sums_end_at_the_period_sum():
    frame = _series(days=20)
    rng = np.random.default_rng(1)
    frame["flux"] *= np.exp(rng.normal(0, 0.1, len(frame)))
    frame.loc[300:500, "flux"] = np.nan
    frame.loc[700:720, "flux"] = np.nan
    out = tp.gap_fill(frame)
    period = tp.sums(out, "co2", "period").iloc[0]
    cum = tp.cumulative_sums(out, "co2")
    last = cum.iloc[-1]
    assert last["cumulative_g_c_m2"] == pytest.approx(period["sum_g_c_m2"], rel=1e-12)
    assert last["total_se_g_c_m2"] == pytest.approx(period["total_se_g_c_m2"], rel=1e-9)
    assert last["gap_fill_se_g_c_m2"] == pytest.approx(period["gap_fill_se_g_c_m2"], rel=1e-9)
    assert cum["total_se_g_c_m2"].is_monotonic_increasing


# ---------------------------------------------------------------------------------------------
# sampling-schedule emulation


def test_sampling_schedule_weekly_at_ten_local_standard():
    s = tp.sampling_schedule("2021-01-01T00:00Z", "2021-03-01T00:00Z", zone="Etc/GMT-9")
    local = tp.to_local_standard(s, "Etc/GMT-9")
    assert (local.hour == 10).all() and (local.minute == 0).all()
    assert (np.diff(local.asi8) == 7 * 86400 * 10**9).all()
    assert len(s) == 9
    shifted = tp.sampling_schedule(
        "2021-01-01T00:00Z", "2021-03-01T00:00Z", zone="Etc/GMT-9", first_day=2, every_days=14
    )
    assert (shifted[0] - s[0]) == pd.Timedelta(days=2)
    # a DST zone: 10:00 standard time is 11:00 summer time, all year the same UTC hour
    berlin = tp.sampling_schedule("2021-01-01", "2021-12-31", zone="Europe/Berlin")
    assert set(berlin.hour) == {9}


def _diel_year(amplitude=0.5, peak_h=14.25, seasonal=0.0, days=364):
    t = pd.date_range("2021-01-01", periods=days * 48, freq="30min", tz="UTC")
    mid_h = (t.hour + t.minute / 60).to_numpy() + 0.25
    d = np.arange(t.size) / 48.0
    level = 2.0 + seasonal * np.cos(2 * np.pi * d / days)
    flux = level * (1 + amplitude * np.cos(2 * np.pi * (mid_h - peak_h) / 24))
    return pd.DataFrame({"time_utc": t, "duration_s": 1800.0, "flux": flux})


def test_sparse_sampling_bias_of_a_diel_cycle_is_analytic():
    c = _diel_year()
    s = tp.sampling_schedule(c["time_utc"].iloc[0], "2021-12-31", zone="UTC")
    r = tp.emulate_sampling(c, s, n_boot=50, rng=1)
    expected = 0.5 * math.cos(2 * math.pi * (10.25 - 14.25) / 24)  # +25 %
    assert r.relative_bias == pytest.approx(expected, abs=1e-9)
    assert r.bias == pytest.approx(expected * r.continuous_sum, rel=1e-9)
    # moving visits by whole days does not change a purely diel bias
    assert r.relative_bias_ci == pytest.approx((expected, expected), abs=1e-9)
    assert r.jitter_days == 3 and r.n_samples == 52
    assert r.unit == "g C m-2"
    assert r.as_dict()["relative_bias_ci"] == list(r.relative_bias_ci)


def test_sparse_sampling_bias_with_a_seasonal_cycle_is_close_to_analytic():
    """Weekly samples of a seasonal cosine: the linear interpolation adds a trapezoidal error
    bounded by h^2/12 max|f''| per unit time (h = 7 d), about 0.1 % here."""
    seasonal = 1.0
    c = _diel_year(seasonal=seasonal)
    s = tp.sampling_schedule(c["time_utc"].iloc[0], "2021-12-31", zone="UTC")
    r = tp.emulate_sampling(c, s, n_boot=200, rng=3)
    diel_bias = 0.5 * math.cos(2 * math.pi * (10.25 - 14.25) / 24)
    h, period = 7.0, 364.0
    bound = h**2 / 12 * seasonal * (2 * math.pi / period) ** 2 / 2.0 * 1.5  # + end effects
    assert abs(r.relative_bias - diel_bias) < bound + 0.01
    lo, hi = r.relative_bias_ci
    assert lo <= r.relative_bias <= hi
    assert hi - lo < 0.05
    phase = tp.emulate_sampling(c, s, n_boot=200, rng=3, resample="phase")
    assert phase.resample == "phase" and phase.relative_bias == r.relative_bias
    with pytest.raises(ConfigError, match="resample 'days'"):
        tp.emulate_sampling(c, s, n_boot=10, resample="days")


def test_method_bias_is_separated_from_sampling_bias():
    c = _diel_year()
    s = tp.sampling_schedule(c["time_utc"].iloc[0], "2021-12-31", zone="UTC")
    own = tp.emulate_sampling(c, s, n_boot=0)
    # the other system measures 13 % low at its sampling times
    values = c.set_index("time_utc")["flux"].asof(s).to_numpy() * 0.87
    r = tp.emulate_sampling(c, s, sample_flux=values, n_boot=200, rng=2)
    assert r.relative_bias == pytest.approx(own.relative_bias)
    assert r.method_bias == pytest.approx(-0.13 * r.sparse_sum, rel=1e-9)
    assert r.total_bias == pytest.approx(r.bias + r.method_bias, rel=1e-12)
    assert r.total_relative_bias == pytest.approx(1.25 * 0.87 - 1, rel=1e-9)
    # a constant ratio: every resample of the visits gives the same method bias
    assert r.method_relative_bias_ci == pytest.approx((-0.1625, -0.1625), abs=1e-12)


def test_emulate_sampling_refuses_gaps_and_counts_outside_samples():
    c = _diel_year(days=10)
    s = pd.to_datetime(["2020-12-25T10:00Z", "2021-01-03T10:00Z", "2021-01-05T10:00Z"])
    r = tp.emulate_sampling(c, s, n_boot=0)
    assert (r.n_samples, r.n_samples_outside) == (2, 1)
    c.loc[5, "flux"] = np.nan
    with pytest.raises(ConfigError, match="gap-fill it first"):
        tp.emulate_sampling(c, s, n_boot=0)
