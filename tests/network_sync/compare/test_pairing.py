"""Pairing in time: tolerance, one to one, overlap, blocks and completeness, time zones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chamberd.controller.errors import ConfigError
from chamberd.network_sync.compare.pairing import (
    _greedy,
    assign_rounds,
    cycle_period,
    pair,
    parse_spec,
    reference_greedy,
    standard_offset_s,
)

T0 = pd.Timestamp("2026-07-01T00:00:00Z")


def series(minutes, flux=None, *, length_s=None, zone="UTC", se=None) -> pd.DataFrame:
    """A series at T0 + minutes (the observation times), with begin/end around them."""
    t = T0 + pd.to_timedelta(np.asarray(minutes, dtype=float), unit="min")
    n = len(t)
    flux = np.arange(1.0, n + 1.0) if flux is None else np.asarray(flux, dtype=float)
    frame = pd.DataFrame({"time_utc": t, "flux": flux})
    if length_s is not None:
        frame["begin_utc"] = t - pd.Timedelta(seconds=length_s / 2)
        frame["end_utc"] = t + pd.Timedelta(seconds=length_s / 2)
    offset = pd.Timedelta(seconds=standard_offset_s(zone))
    frame["time_local_standard"] = (t + offset).tz_localize(None)
    if se is not None:
        frame["flux_se"] = se
    return frame


# --- specs ----------------------------------------------------------------------------------


def test_specs():
    assert parse_spec("YMS/ataka").chambers == ()
    assert parse_spec("YMS/ataka/port1").single_chamber
    spec = parse_spec(" YMS/ueyama/port1, port2,port1 ")
    assert spec.chambers == ("port1", "port2") and not spec.single_chamber
    assert spec.text == "YMS/ueyama/port1,port2"
    assert parse_spec("XLG/auto/plot:grazed").plot == "grazed"
    assert str(parse_spec("XLG/auto/plot:grazed")) == "XLG/auto/plot:grazed"


@pytest.mark.parametrize(
    "text", ["", "YMS", "/ataka", "YMS/", "YMS/ataka/", "YMS/a/p1,,p2", "S/a/plot:"]
)
def test_bad_specs_name_the_option(text):
    with pytest.raises(ConfigError, match=r"^--b "):
        parse_spec(text, "--b")


# --- nearest --------------------------------------------------------------------------------


def test_tolerance_is_inclusive_and_bounds_the_pairs():
    a = series([0, 60, 120])
    b = series([15, 60 + 15.01, 120 + 14])
    p = pair(a, b, tolerance_s=900)
    assert p.diagnostics.pairs == 2
    assert list(p.pairs["index_a"]) == [0, 2] and list(p.pairs["index_b"]) == [0, 2]
    assert p.pairs["dt_s"].tolist() == [900.0, 840.0]
    assert p.diagnostics.unpaired_a.no_partner == 1
    assert p.diagnostics.unpaired_b.no_partner == 1
    assert p.diagnostics.median_abs_dt_s == 870.0 and p.diagnostics.max_abs_dt_s == 900.0


def test_one_to_one_the_closest_wins():
    # three a observations near one b: only the closest pairs; the others lost their partner
    a = series([0, 5, 9])
    b = series([6])
    p = pair(a, b, tolerance_s=600)
    assert p.diagnostics.pairs == 1
    assert p.pairs["index_a"].tolist() == [1]
    assert p.diagnostics.unpaired_a.partner_used == 2
    assert p.diagnostics.unpaired_a.total == 2 and p.diagnostics.unpaired_b.total == 0


def test_one_to_one_not_first_come():
    # a0 - b0 is 4 min, a1 - b0 is 1 min, a1 - b1 is 3 min: greedy closest-first gives
    # a1-b0 then a0 left alone (b1 is 7 min from a0 but within tolerance 8): a0-b1
    a = series([0, 3])
    b = series([4, 6.9])
    p = pair(a, b, tolerance_s=480)
    got = sorted(zip(p.pairs["index_a"], p.pairs["index_b"], strict=True))
    assert got == [(0, 1), (1, 0)]


def test_ties_are_broken_by_time():
    a = series([10])
    b = series([5, 15])  # both 5 min away: the earlier b
    p = pair(a, b, tolerance_s=600)
    assert p.pairs["index_b"].tolist() == [0]
    assert p.diagnostics.unpaired_b.partner_used == 1


@pytest.mark.parametrize("seed", range(12))
def test_each_observation_used_once_and_greedy_matches_the_plain_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    a = series(np.sort(rng.uniform(0, 600, n)))
    b = series(np.sort(rng.uniform(0, 600, int(rng.integers(5, 300)))))
    tol = float(rng.choice([60.0, 300.0, 900.0, 3600.0]))
    p = pair(a, b, tolerance_s=tol)
    assert p.pairs["index_a"].is_unique and p.pairs["index_b"].is_unique
    assert (p.pairs["dt_s"].abs() <= tol).all()
    # the same pairs as the plain greedy loop over every candidate, closest first
    ta = a["time_utc"].astype("int64").to_numpy() / 1e9
    tb = b["time_utc"].astype("int64").to_numpy() / 1e9
    cand = [
        (abs(tb[j] - ta[i]), ta[i], tb[j], i, j) for i in range(len(ta)) for j in range(len(tb))
    ]
    cand = sorted(c for c in cand if c[0] <= tol)
    expected = reference_greedy([c[3] for c in cand], [c[4] for c in cand])
    assert sorted(zip(p.pairs["index_a"], p.pairs["index_b"], strict=True)) == expected
    d = p.diagnostics
    assert d.pairs + d.unpaired_a.total == d.candidates_a
    assert d.pairs + d.unpaired_b.total == d.candidates_b


def test_long_chains_finish_by_the_plain_loop():
    # a chain of ever-closer candidates: every round frees only its best pair
    m = 200
    ci = np.repeat(np.arange(m), 2)[1:]
    cj = np.repeat(np.arange(m), 2)[:-1]
    order = np.arange(len(ci))[::-1]  # the last link is the best
    rows, cols = _greedy(ci[order], cj[order], m, m)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == reference_greedy(
        ci[order].tolist(), cj[order].tolist()
    )


def test_non_finite_and_outside_period():
    a = series([0, 30, 60, 90, 600], [1.0, np.nan, 2.0, np.inf, 5.0])
    b = series([0, 31, 60, 92])
    p = pair(a, b, tolerance_s=300)
    d = p.diagnostics
    assert d.pairs == 2
    assert d.unpaired_a.non_finite == 2
    assert d.unpaired_a.outside_period == 1  # 600 min: long after b ends
    assert d.unpaired_b.no_partner == 2  # their partners have no finite flux
    assert d.as_dict()["unpaired_a"]["total"] == 3


def test_empty_side():
    a = series([0, 30])
    b = series([])
    p = pair(a, b)
    assert len(p) == 0 and p.diagnostics.unpaired_a.outside_period == 2
    assert p.diagnostics.median_abs_dt_s is None


def test_pair_columns_carry_both_sides():
    a = series([0, 30], se=[0.1, 0.2])
    a["soil_temperature_degc"] = [10.0, 11.0]
    b = series([2, 33])
    p = pair(a, b)
    row = p.pairs.iloc[1]
    assert row["flux_se_a"] == 0.2 and np.isnan(row["flux_se_b"])
    assert row["soil_temperature_degc_a"] == 11.0
    assert row["time_utc"] == T0 + pd.Timedelta(minutes=31.5)


# --- overlap --------------------------------------------------------------------------------


def test_overlap_pairs_longest_overlap_first():
    # a: 6-min closures; b: 2-min closures. b0 overlaps a0 by 2 min and a1 by 1 min.
    a = series([3, 9], length_s=360)  # [0, 6], [6, 12]
    b = series([6.5 - 1.5, 12.5], length_s=120)  # [4, 6], [11.5, 13.5]
    p = pair(a, b, method="overlap")
    assert sorted(zip(p.pairs["index_a"], p.pairs["index_b"], strict=True)) == [(0, 0), (1, 1)]
    assert p.pairs["overlap_s"].tolist() == [120.0, 30.0]
    assert p.diagnostics.tolerance_s is None


def test_overlap_touching_intervals_count_and_gaps_do_not():
    a = series([3], length_s=360)  # [0, 6]
    b = series([7, 20], length_s=120)  # [6, 8] touches; [19, 21] far
    p = pair(a, b, method="overlap")
    assert p.pairs["index_b"].tolist() == [0] and p.pairs["overlap_s"].tolist() == [0.0]
    assert p.diagnostics.unpaired_b.outside_period == 1


def test_overlap_one_to_one():
    a = series([5], length_s=600)  # [0, 10]
    b = series([2, 5, 8], length_s=120)
    p = pair(a, b, method="overlap")
    assert p.diagnostics.pairs == 1 and p.pairs["index_b"].tolist() == [1]
    assert p.diagnostics.unpaired_b.partner_used == 2


# --- blocks ---------------------------------------------------------------------------------


def test_hourly_blocks_and_completeness():
    # a every 30 min for 4 h; b every 30 min but only one observation in hour 2
    a = series(np.arange(0, 240, 30), [1.0] * 8)
    b = series([1, 31, 61, 121, 151, 181, 211], [2.0] * 7)
    p = pair(a, b, block="hour", completeness=0.5)
    d = p.diagnostics
    assert d.expected_a == 2 and d.expected_b == 2
    assert d.pairs == 4 and p.pairs["n_b"].tolist() == [2, 1, 2, 2]
    strict = pair(a, b, block="hour", completeness=1.0)
    assert strict.diagnostics.pairs == 3 and strict.diagnostics.blocks_incomplete == 1
    assert strict.diagnostics.unpaired_a.block_incomplete == 2
    assert strict.diagnostics.unpaired_b.block_incomplete == 1
    assert (p.pairs["flux_b"] - p.pairs["flux_a"]).tolist() == [1.0] * 4
    assert p.pairs["time_local_standard"].tolist() == list(
        pd.date_range("2026-07-01 00:00", periods=4, freq="h")
    )


def test_daily_blocks_need_one_observation_of_a_sparse_side():
    days = np.arange(0, 14) * 1440.0
    a = series(np.concatenate([d + np.arange(0, 1440, 30) for d in days]))
    b = series(days[::7] + 600)  # weekly, mid-morning
    p = pair(a, b, block="day")
    assert p.diagnostics.expected_b == 1 and p.diagnostics.pairs == 2
    # days 1-6 lie between b's two days; days 8-13 after b's last
    assert p.diagnostics.unpaired_a.no_partner == 6 * 48
    assert p.diagnostics.unpaired_a.outside_period == 6 * 48


def test_block_se_is_that_of_the_mean():
    a = series([0, 30], [1.0, 3.0], se=[0.3, 0.4])
    b = series([5, 35], [1.0, 3.0], se=[0.3, np.nan])
    p = pair(a, b, block="hour")
    assert p.pairs["flux_se_a"].iloc[0] == pytest.approx(0.25)
    assert np.isnan(p.pairs["flux_se_b"].iloc[0])  # one collar without: no SE


def test_day_blocks_are_local_standard_days_cosore_inverted_sign():
    # Etc/GMT-9 is UTC+9: 14:30 UTC is 23:30 local, 15:30 UTC is 00:30 the next day
    assert standard_offset_s("Etc/GMT-9") == 9 * 3600
    a = series([14.5 * 60, 15.5 * 60], [1.0, 5.0], zone="Etc/GMT-9")
    b = series([14.5 * 60 + 1, 15.5 * 60 + 1], [2.0, 6.0], zone="Etc/GMT-9")
    p = pair(a, b, block="day", completeness=0.0)
    assert p.pairs["date_local_standard"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-07-01",
        "2026-07-02",
    ]
    assert p.pairs["flux_a"].tolist() == [1.0, 5.0]
    utc = pair(
        series([14.5 * 60, 15.5 * 60]),
        series([14.5 * 60 + 1, 15.5 * 60 + 1]),
        block="day",
        completeness=0.0,
    )
    assert utc.diagnostics.pairs == 1  # the same instants are one UTC day


def test_local_standard_time_ignores_daylight_saving():
    # New York in July is on EDT (UTC-4) but its standard time is EST (UTC-5)
    assert standard_offset_s("America/New_York") == -5 * 3600
    assert standard_offset_s("Australia/Sydney") == 10 * 3600  # DST in January
    assert standard_offset_s("Europe/Dublin") == 0
    a = series([4 * 60 + 30], zone="America/New_York")  # 04:30 UTC = 23:30 EST of June 30
    b = series([4 * 60 + 31], zone="America/New_York")
    p = pair(a, b)
    assert str(p.pairs["time_local_standard"].iloc[0]) == "2026-06-30 23:30:30"
    assert str(p.pairs["date_local_standard"].iloc[0]) == "2026-06-30 00:00:00"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "closest"}, "pairing method"),
        ({"block": "week"}, "block"),
        ({"tolerance_s": -1}, "tolerance"),
        ({"tolerance_s": float("nan")}, "tolerance"),
        ({"completeness": 1.5}, "completeness"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        pair(series([0]), series([0]), **kwargs)


def test_diagnostics_lines_are_readable():
    p = pair(series([0, 30, 60]), series([3, 200]))
    text = "\n".join(p.diagnostics.lines())
    assert "nearest within 15 min" in text and "1 pairs" in text
    assert "no partner 2" in text and "|dt|: median 3.0 min" in text


# --- rounds ---------------------------------------------------------------------------------


def test_rounds_are_blocks_of_the_cycle_between_its_pauses():
    chambers = ["C1", "C2", "C3", "C1", "C3", "C1", "C2", "C3"]
    begin = np.array([0, 100, 200, 1800, 2000, 3600, 3700, 3800], dtype=float)
    assert assign_rounds(chambers, begin).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    # one chamber only: every observation is a round
    assert assign_rounds(["C1"] * 3, np.array([0.0, 1800, 3600])).tolist() == [0, 1, 2]
    # the first collar missing in a round does not shift the rounds after it
    chambers = ["C1", "C2", "C2", "C1", "C2", "C1", "C2", "C1", "C2"]
    begin = np.array([0, 100, 1900, 3600, 3700, 5400, 5500, 7200, 7300], dtype=float)
    assert assign_rounds(chambers, begin).tolist() == [0, 0, 1, 2, 2, 3, 3, 4, 4]
    # no chamber measured twice: one round
    assert assign_rounds(["C1", "C2"], np.array([0.0, 50.0])).tolist() == [0, 0]


def test_rounds_survive_clock_jitter_over_years():
    rng = np.random.default_rng(5)
    n_rounds, n_chambers = 35_040, 16  # two years of half-hourly rounds
    truth = np.repeat(np.arange(n_rounds), n_chambers)
    begin = truth * 1800.0 + np.tile(np.arange(n_chambers) * 100.0, n_rounds)
    begin += rng.normal(0, 3.0, begin.size)
    chambers = np.tile([f"C{i}" for i in range(n_chambers)], n_rounds)
    keep = rng.random(begin.size) > 0.1  # a tenth missing, at random
    order = np.argsort(begin[keep], kind="stable")
    got = assign_rounds(chambers[keep][order], begin[keep][order])
    _, expected = np.unique(truth[keep][order], return_inverse=True)
    assert np.array_equal(got, expected)


def test_cycle_period_snaps_to_round_periods():
    t = np.arange(0, 48 * 1800, 1800.0) + 2.0
    assert cycle_period(["C1"] * len(t), t) == 1800.0
    irregular = np.arange(0, 100) * 377.0
    assert cycle_period(["C1"] * 100, irregular) == pytest.approx(377.0)


def test_specs_from_any_text_parse_or_are_refused_by_name():
    """Seeded fuzz: any text is a spec that round-trips, or a ConfigError naming the option."""
    import random

    rng = random.Random(10)
    alphabet = "ab/,: plot\x00é\n\t-_.0" + "\ud800"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        try:
            spec = parse_spec(text, "--a")
        except ConfigError as exc:
            assert str(exc).startswith("--a")
            continue
        assert parse_spec(spec.text) == spec
        assert spec.site and spec.system
