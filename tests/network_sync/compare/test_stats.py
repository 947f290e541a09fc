"""agreement(), Agreement.as_dict(), breakdown() and the class helpers: behaviour and edges."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pandas as pd
import pytest

from chamberd.network_sync.compare import stats

ISSUE_KEYS = (
    "n_pairs",
    "bias",
    "relative_bias",
    "rmsd",
    "mae",
    "r",
    "ccc",
    "loa_lower",
    "loa_upper",
    "deming_slope",
    "sma_slope",
    "passing_bablok_slope",
)


def _pairs(seed=0, days=30, per_day=12, slope=0.87):
    rng = np.random.default_rng(seed)
    n = days * per_day
    t = rng.gamma(3.0, 1.0, n)
    a = t + rng.normal(0, 0.3, n)
    b = slope * t + rng.normal(0, 0.3, n)
    return a, b, np.repeat(np.arange(days), per_day)


def test_docstring_examples_run():
    result = doctest.testmod(stats, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0


def test_as_dict_has_the_issue_keys_each_with_a_ci_and_is_json():
    a, b, day = _pairs()
    d = stats.agreement(a, b, blocks=day, n_boot=200, rng=np.random.default_rng(1)).as_dict()
    for key in ISSUE_KEYS:
        assert key in d
        if key != "n_pairs":
            ci = d[f"{key}_ci"]
            assert isinstance(ci, list) and len(ci) == 2 and ci[0] <= d[key] <= ci[1], key
    for key in ("deming", "sma", "passing_bablok", "ols", "proportional_bias"):
        for part in ("slope", "intercept"):
            assert f"{key}_{part}" in d and f"{key}_{part}_ci" in d
    for key in ("ccc_precision", "ccc_accuracy", "log_ratio_mean", "ratio_mean"):
        assert d[key] is not None and d[f"{key}_ci"] is not None
    assert d["n_pairs"] == a.size and d["n_blocks"] == 30 and d["n_boot"] == 200
    assert d["ccc"] == pytest.approx(d["ccc_precision"] * d["ccc_accuracy"])
    assert d["ccc_precision"] == d["r"]
    json.dumps(d, allow_nan=False)  # no NaN or inf anywhere


def test_same_seed_same_result_other_seed_other_intervals():
    a, b, day = _pairs()
    one = stats.agreement(a, b, blocks=day, n_boot=100, rng=np.random.default_rng(7)).as_dict()
    two = stats.agreement(a, b, blocks=day, n_boot=100, rng=np.random.default_rng(7)).as_dict()
    other = stats.agreement(a, b, blocks=day, n_boot=100, rng=np.random.default_rng(8)).as_dict()
    assert one == two
    assert one["bias"] == other["bias"] and one["bias_ci"] != other["bias_ci"]
    default = stats.agreement(a, b, blocks=day, n_boot=100).as_dict()
    assert default == stats.agreement(a, b, blocks=day, n_boot=100, rng=None).as_dict()


def test_point_estimates_match_the_single_estimators():
    a, b, day = _pairs()
    res = stats.agreement(a, b, blocks=day, n_boot=50)
    assert res.bias.value == pytest.approx(stats.mean_bias(a, b).value)
    assert res.relative_bias.value == pytest.approx(stats.relative_bias(a, b).value)
    assert res.rmsd.value == pytest.approx(np.sqrt(np.mean((b - a) ** 2)))
    assert res.mae.value == pytest.approx(np.mean(np.abs(b - a)))
    assert res.r.value == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert res.concordance.ccc.value == pytest.approx(stats.ccc(a, b).ccc.value)
    ba = stats.bland_altman(a, b)
    assert res.bland_altman.loa_lower.value == pytest.approx(ba.loa_lower.value)
    assert res.bland_altman.loa_lower.ci_analytic == pytest.approx(ba.loa_lower.ci)
    assert res.deming.slope == pytest.approx(stats.deming(a, b).slope)
    assert res.deming.slope_ci_analytic == pytest.approx(stats.deming(a, b, blocks=day).slope_ci)
    assert res.sma.slope == pytest.approx(stats.sma(a, b).slope)
    assert res.sma.slope_ci_analytic == pytest.approx(stats.sma(a, b).slope_ci)
    assert res.passing_bablok.slope == pytest.approx(stats.passing_bablok(a, b).slope)
    assert res.ols.slope == pytest.approx(np.polyfit(a, b, 1)[0])
    lr = stats.log_ratio_bland_altman(a, b)
    assert res.log_ratio.mean_difference.value == pytest.approx(lr.mean_difference.value)
    prop = stats.proportional_bias(a, b)
    assert res.proportional_bias.slope == pytest.approx(prop.slope)


def test_relative_to_options():
    a = np.array([10.0, 20.0, 30.0, 40.0])
    b = np.array([9.0, 17.0, 28.0, 34.0])
    bias = np.mean(b - a)
    for ref, denom in (("a", a.mean()), ("b", b.mean()), ("mean", (a.mean() + b.mean()) / 2)):
        res = stats.agreement(a, b, n_boot=0, relative_to=ref)
        assert res.relative_bias.value == pytest.approx(bias / denom)
        assert res.as_dict()["relative_to"] == ref
    with pytest.raises(ValueError, match="relative_to"):
        stats.agreement(a, b, relative_to="c")


def test_non_finite_pairs_are_dropped_and_counted():
    a, b, day = _pairs()
    a = a.copy()
    b = b.copy()
    a[[0, 5]] = np.nan
    b[7] = np.inf
    labels = day.astype(object)
    labels[9] = None
    res = stats.agreement(a, b, blocks=labels, n_boot=50)
    assert res.n_dropped == 4
    assert res.n_pairs == a.size - 4
    clean = stats.agreement(
        np.delete(a, [0, 5, 7, 9]),
        np.delete(b, [0, 5, 7, 9]),
        blocks=np.delete(day, [0, 5, 7, 9]),
        n_boot=50,
    )
    assert res.as_dict() | {"n_dropped": 0} == clean.as_dict()


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_pairs_is_a_clear_error(n):
    a = [1.0, 2.0, np.nan][: n + 1]
    b = [1.5, np.nan, 3.0][: n + 1]
    with pytest.raises(ValueError, match=r"at least 3 finite pairs"):
        stats.agreement(a, b)
    for fn in (stats.deming, stats.sma, stats.passing_bablok, stats.ols, stats.bland_altman):
        with pytest.raises(ValueError, match=r"at least 3 finite pairs"):
            fn(a, b)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="differ in length"):
        stats.agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="blocks has 2 labels for 3 pairs"):
        stats.agreement([1, 2, 3], [1, 2, 3], blocks=[1, 2])
    with pytest.raises(ValueError, match="se_b has 1 values for 3 pairs"):
        stats.agreement([1, 2, 3], [1, 2, 3], se_b=[1.0])
    with pytest.raises(ValueError, match="n_boot"):
        stats.agreement([1, 2, 3], [1, 2, 3], n_boot=-1)
    with pytest.raises(ValueError, match="error_ratio"):
        stats.deming([1, 2, 3], [1, 2, 4], error_ratio=0)


def test_constant_and_degenerate_inputs_give_none_not_nan_in_json():
    a = np.ones(20)
    b = np.ones(20) * 2
    d = stats.agreement(a, b, n_boot=50).as_dict()
    assert d["bias"] == 1.0 and d["relative_bias"] == 1.0
    assert d["r"] is None and d["deming_slope"] is None
    json.dumps(d, allow_nan=False)


def test_error_ratio_from_standard_errors():
    a, b, day = _pairs()
    se_a = np.full(a.size, 0.2)
    se_b = np.full(a.size, 0.3)
    se_b[3] = np.nan
    res = stats.agreement(a, b, blocks=day, se_a=se_a, se_b=se_b, n_boot=0)
    assert res.error_ratio == pytest.approx(0.09 / 0.04)
    assert res.error_ratio_source == "flux standard errors"
    assert res.deming.slope == pytest.approx(stats.deming(a, b, error_ratio=2.25).slope)
    res = stats.agreement(a, b, se_a=se_a, n_boot=0)
    assert res.error_ratio == 1.0 and res.error_ratio_source.startswith("default 1")


def test_log_ratio_leaves_out_non_positive_pairs_and_says_how_many():
    a, b, day = _pairs()
    a = a.copy()
    a[:5] = -0.1
    b = b.copy()
    b[5] = 0.0
    d = stats.agreement(a, b, blocks=day, n_boot=50).as_dict()
    excluded = int(np.sum((a <= 0) | (b <= 0)))
    assert excluded >= 6
    assert d["log_ratio_n_excluded"] == excluded
    assert d["log_ratio_n"] == a.size - excluded
    assert d["ratio_mean"] == pytest.approx(math.exp(d["log_ratio_mean"]))


def test_all_non_positive_log_ratio_is_null():
    d = stats.agreement([-1.0, -2.0, -3.0, -4.0], [-1.1, -2.2, -2.9, -4.1], n_boot=20).as_dict()
    assert d["log_ratio_n"] == 0 and d["log_ratio_mean"] is None
    json.dumps(d, allow_nan=False)


def test_without_blocks_many_pairs_go_into_groups():
    rng = np.random.default_rng(3)
    n = stats.IID_BLOCKS_MAX + 5000
    a = rng.gamma(3.0, 1.0, n)
    b = a + rng.normal(0, 0.2, n)
    res = stats.agreement(a, b, n_boot=20)
    assert res.n_blocks == stats.IID_BLOCKS_MAX and "groups" in res.block_kind
    small = stats.agreement(a[:100], b[:100], n_boot=20)
    assert small.n_blocks == 100 and small.block_kind == "pairs"


def test_passing_bablok_random_pairs_agree_with_all_pairs(monkeypatch):
    """Above PB_EXACT_MAX the slopes of random pairs stand for all pairs: same answer within
    a small part of the rank interval."""
    a, b, _ = _pairs(seed=5, days=100, per_day=30)  # 3000 points
    monkeypatch.setattr(stats, "PB_EXACT_MAX", 5000)
    exact = stats.passing_bablok(a, b)
    monkeypatch.setattr(stats, "PB_EXACT_MAX", 1000)
    sampled = stats.passing_bablok(a, b, rng=np.random.default_rng(2))
    width = exact.slope_ci[1] - exact.slope_ci[0]
    assert "random pairs" in sampled.note and exact.note == ""
    assert abs(sampled.slope - exact.slope) < 0.1 * width
    for s, e in zip(sampled.slope_ci, exact.slope_ci, strict=True):
        assert abs(s - e) < 0.1 * width
    assert abs(sampled.intercept - exact.intercept) < 0.1 * (
        exact.intercept_ci[1] - exact.intercept_ci[0]
    )


def test_passing_bablok_bootstrap_refit_and_linearised_agree(monkeypatch):
    """The refit-every-replicate bootstrap (small n) and the rank form from influence sums
    (large n) give the same interval on the same data, within bootstrap noise."""
    a, b, day = _pairs(seed=9, days=40, per_day=6)  # 240 points
    direct = stats.agreement(a, b, blocks=day, n_boot=400, rng=np.random.default_rng(4))
    monkeypatch.setattr(stats, "PB_DIRECT_BOOT_MAX", 100)
    linear = stats.agreement(a, b, blocks=day, n_boot=400, rng=np.random.default_rng(4))
    d, lin = direct.passing_bablok.slope_ci, linear.passing_bablok.slope_ci
    width = d[1] - d[0]
    assert abs(d[0] - lin[0]) < 0.25 * width and abs(d[1] - lin[1]) < 0.25 * width


def test_linearised_passing_bablok_matches_the_rank_interval_for_independent_pairs():
    """For independent pairs the block-bootstrap rank offset has the spread the rank
    interval assumes (Var(phi) = 1/36 under independence of residual and x)."""
    rng = np.random.default_rng(11)
    n = 2000
    t = rng.normal(5, 1, n)
    a = t + rng.normal(0, 0.5, n)
    b = t + rng.normal(0, 0.5, n)
    res = stats.agreement(a, b, n_boot=1000, rng=np.random.default_rng(1))
    boot, rank = res.passing_bablok.slope_ci, res.passing_bablok.slope_ci_analytic
    assert boot == pytest.approx(rank, rel=0.01)


def test_deming_jackknife_by_block_differs_from_by_pair():
    a, b, day = _pairs()
    by_pair = stats.deming(a, b)
    by_day = stats.deming(a, b, blocks=day)
    assert by_pair.slope == pytest.approx(by_day.slope, rel=1e-12)
    assert "pair" in by_pair.ci_method and "block" in by_day.ci_method
    assert by_pair.slope_ci != by_day.slope_ci


def test_no_bootstrap_gives_analytic_intervals_only():
    a, b, day = _pairs()
    res = stats.agreement(a, b, blocks=day, n_boot=0)
    d = res.as_dict()
    assert d["n_boot"] == 0 and d["ci_method"] is None
    assert d["bias_ci"] is None and d["bias_ci_t"] is not None
    assert d["deming_slope_ci"] is None and d["deming_slope_ci_jackknife"] is not None


def test_one_block_cannot_be_bootstrapped():
    a, b, _ = _pairs()
    res = stats.agreement(a, b, blocks=np.zeros(a.size), n_boot=100)
    assert res.n_boot == 0 and res.bias.ci is None


# ---------------------------------------------------------------------------------------
# breakdown and classes
# ---------------------------------------------------------------------------------------


def _frame():
    a, b, _ = _pairs(days=60, per_day=24)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(a.size) * 3600, unit="s")
    return pd.DataFrame(
        {
            "flux_a": a,
            "flux_b": b,
            "date": times.date,
            "month": stats.month_class(times),
            "hour": stats.hour_class(times),
            "flux": stats.flux_class((a + b) / 2),
        }
    )


def test_breakdown_by_month_matches_agreement_on_each_subset():
    df = _frame()
    out = stats.breakdown(df, "month")
    assert list(out["month"]) == [1, 2]  # 60 days of hourly pairs from 1 January
    assert out["n_pairs"].sum() == len(df)
    for _, row in out.iterrows():
        sub = df[df["month"] == row["month"]]
        ref = stats.agreement(sub["flux_a"], sub["flux_b"], n_boot=0)
        assert row["bias"] == pytest.approx(ref.bias.value)
        assert row["relative_bias"] == pytest.approx(ref.relative_bias.value)
        assert row["rmsd"] == pytest.approx(ref.rmsd.value)
        assert row["r"] == pytest.approx(ref.r.value)
        assert row["ccc"] == pytest.approx(ref.concordance.ccc.value)


def test_breakdown_with_bootstrap_by_day_within_class():
    df = _frame()
    out = stats.breakdown(df, "flux", blocks="date", n_boot=100, rng=np.random.default_rng(0))
    assert len(out) == 4
    for name in ("bias", "relative_bias", "rmsd", "r", "ccc"):
        assert (out[f"{name}_ci_low"] <= out[name]).all()
        assert (out[name] <= out[f"{name}_ci_high"]).all()


def test_breakdown_small_class_and_missing_column():
    df = pd.DataFrame(
        {"flux_a": [1.0, 2.0, 3.0, 4.0], "flux_b": [1.0, 2.1, 2.9, 4.2], "k": ["x", "x", "x", "y"]}
    )
    out = stats.breakdown(df, "k")
    assert list(out["n_pairs"]) == [3, 1]
    assert math.isnan(out.loc[1, "bias"])
    with pytest.raises(ValueError, match="no column 'nope'"):
        stats.breakdown(df, "nope")


def test_class_helpers():
    v = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 8.0, np.nan])
    cls = stats.flux_class(v)
    assert len(cls.categories) == 4 and pd.isna(cls[-1])
    assert pd.Series(cls).value_counts().sum() == 6
    t = stats.value_class([5.0, 15.0, 25.0, 40.0], edges=[0, 10, 20, 30])
    assert list(t.astype(object)[:3]) == ["[0, 10)", "[10, 20)", "[20, 30]"] and pd.isna(t[3])
    with pytest.raises(ValueError, match="increasing"):
        stats.value_class([1.0], edges=[2, 1])
    hours = stats.hour_class(pd.to_datetime(["2024-03-31 01:30", "2024-03-31 02:30"]))
    assert hours.tolist() == [1, 2]


def test_missing_block_labels_are_dropped_everywhere():
    a, b, day = _pairs()
    labels = day.astype(object)
    labels[[1, 2]] = None
    fit = stats.deming(a, b, blocks=labels)
    assert fit.n == a.size - 2
    df = pd.DataFrame({"flux_a": a, "flux_b": b, "k": day % 2, "date": labels})
    out = stats.breakdown(df, "k", blocks="date", n_boot=20)
    assert out["n_pairs"].sum() == a.size - 2
    with pytest.raises(ValueError, match="blocks has 2 labels for"):
        stats.deming(a, b, blocks=[1, 2])
