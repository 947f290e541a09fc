"""Estimators on simulated data with known truth: coverage of the intervals over seeds.

Two designs, 200 seeds each, nominal 95 %, accepted when the observed coverage lies in
90-99 % (a binomial 95 % band for 200 draws is about ±3 %):

- day-clustered: 60 days x 8 pairs; side b underestimates by 13 % (slope 0.87) and has a
  day-level error shared by the pairs of a day, so pairs are not independent; the block
  bootstrap by day must cover every statistic's true value;
- independent pairs (n = 50) with a normal true flux, the assumption of the analytic
  intervals: the estimators' own intervals (t, Fisher z, Lin, Bland-Altman 1999, Deming
  jackknife, Warton SMA, Passing-Bablok rank) must cover. (With the skewed gamma flux the
  Fisher z interval of r covers about 91 %: it assumes bivariate normality.)

True values are computed from the model: a = T + e_a, b = 0.87 T + e_b (+ u_day), with
T ~ Gamma(4, 1) (mean 4, variance 4; N(4, 2²) in the independent design), sd(e_a) = 0.4
and the total error sd of b 0.87 x 0.4, so the error ratio is 0.87² and Deming, SMA and
Passing-Bablok all estimate the slope 0.87.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from chamberd.network_sync.compare import stats

SLOPE = 0.87
SD_A = 0.4
SD_B = SLOPE * SD_A  # total error sd of b
SD_DAY = 0.2  # part of it shared within a day
MEAN_T = VAR_T = 4.0
SEEDS = 200


def _truth() -> dict[str, float]:
    var_d = (SLOPE - 1) ** 2 * VAR_T + SD_A**2 + SD_B**2
    var_a = VAR_T + SD_A**2
    var_b = SLOPE**2 * VAR_T + SD_B**2
    cov = SLOPE * VAR_T
    bias = (SLOPE - 1) * MEAN_T
    return {
        "bias": bias,
        "relative_bias": SLOPE - 1,
        "rmsd": math.sqrt(bias**2 + var_d),
        "r": cov / math.sqrt(var_a * var_b),
        "ccc": 2 * cov / (var_a + var_b + bias**2),
        "loa_lower": bias - 1.96 * math.sqrt(var_d),
        "loa_upper": bias + 1.96 * math.sqrt(var_d),
        "deming_slope": SLOPE,
        "sma_slope": SLOPE,
        "passing_bablok_slope": SLOPE,
    }


TRUTH = _truth()


def _simulate(seed: int, days: int, per_day: int, sd_day: float, normal: bool = False):
    rng = np.random.default_rng(seed)
    n = days * per_day
    t = rng.normal(MEAN_T, math.sqrt(VAR_T), n) if normal else rng.gamma(4.0, 1.0, n)
    day = np.repeat(np.arange(days), per_day)
    shared = rng.normal(0.0, sd_day, days)[day] if sd_day else 0.0
    a = t + rng.normal(0.0, SD_A, n)
    b = SLOPE * t + rng.normal(0.0, math.sqrt(SD_B**2 - sd_day**2), n) + shared
    return a, b, day


def _inside(ci, value) -> bool:
    return ci is not None and ci[0] <= value <= ci[1]


def test_block_bootstrap_coverage_on_day_clustered_pairs():
    hits = dict.fromkeys(TRUTH, 0)
    t_hits = 0
    for seed in range(SEEDS):
        a, b, day = _simulate(seed, days=60, per_day=8, sd_day=SD_DAY)
        res = stats.agreement(
            a,
            b,
            blocks=day,
            se_a=np.full(a.size, SD_A),
            se_b=np.full(a.size, SD_B),
            n_boot=400,
            rng=np.random.default_rng(10_000 + seed),
        ).as_dict()
        for key, value in TRUTH.items():
            hits[key] += _inside(res[f"{key}_ci"], value)
        t_hits += _inside(res["bias_ci_t"], TRUTH["bias"])
    coverage = {key: n / SEEDS for key, n in hits.items()}
    for key, c in coverage.items():
        assert 0.90 <= c <= 0.99, (key, coverage)
    # the t interval assumes independent pairs and must be the worse one here
    assert t_hits / SEEDS < coverage["bias"]


def test_analytic_interval_coverage_on_independent_pairs():
    keys = {
        "bias": lambda a, b: stats.mean_bias(a, b).ci,
        "r": lambda a, b: stats.pearson_r(a, b).ci,
        "ccc": lambda a, b: stats.ccc(a, b).ccc.ci,
        "loa_lower": lambda a, b: stats.bland_altman(a, b).loa_lower.ci,
        "loa_upper": lambda a, b: stats.bland_altman(a, b).loa_upper.ci,
        "deming_slope": lambda a, b: stats.deming(a, b, error_ratio=SLOPE**2).slope_ci,
        "sma_slope": lambda a, b: stats.sma(a, b).slope_ci,
        "passing_bablok_slope": lambda a, b: stats.passing_bablok(a, b).slope_ci,
    }
    hits = dict.fromkeys(keys, 0)
    for seed in range(SEEDS):
        a, b, _ = _simulate(50_000 + seed, days=50, per_day=1, sd_day=0.0, normal=True)
        for key, ci in keys.items():
            hits[key] += _inside(ci(a, b), TRUTH[key])
    coverage = {key: n / SEEDS for key, n in hits.items()}
    for key, c in coverage.items():
        assert 0.90 <= c <= 0.99, (key, coverage)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimates_recover_the_truth_on_a_large_sample(seed):
    """20,000 pairs over 400 days: every estimate within a few of its own CIs of the truth."""
    a, b, day = _simulate(seed, days=400, per_day=50, sd_day=SD_DAY)
    res = stats.agreement(
        a,
        b,
        blocks=day,
        se_a=np.full(a.size, SD_A),
        se_b=np.full(a.size, SD_B),
        n_boot=200,
        rng=np.random.default_rng(seed),
    )
    d = res.as_dict()
    assert d["error_ratio"] == pytest.approx(SLOPE**2)
    for key, value in TRUTH.items():
        lo, hi = d[f"{key}_ci"]
        half = (hi - lo) / 2
        assert abs(d[key] - value) < 3 * half, (key, d[key], value, (lo, hi))
