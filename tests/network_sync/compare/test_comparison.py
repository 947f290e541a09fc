"""compare(): selection, pairing, statistics, baselines and the rest in one result, on both
backends, with a campaign of known truth (tests/comparedata.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from comparedata import two_systems

from chamberd.controller.errors import ConfigError
from chamberd.network_sync.central import Central
from chamberd.network_sync.compare import (
    Baseline,
    Comparison,
    baselines,
    compare,
)

#: the issue's top-level keys of the --json object, each with <name>_ci beside it
TOP_LEVEL = (
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


@pytest.fixture
def campaign(central_url):
    """Ten days: three automated collars half-hourly, two survey collars reading 13 % low
    three times a day, with raw traces and a common central refit."""
    with Central.connect(central_url) as c:
        c.migrate()
        truth = two_systems(c, days=10, seed=2, samples=True)
    with Central.connect(central_url, mode="read") as c:
        yield c, truth


@pytest.fixture
def plain_campaign(central_url):
    """The same campaign without raw traces (fluxes only, as COSORE data)."""
    with Central.connect(central_url) as c:
        c.migrate()
        two_systems(c, days=6, seed=2)
    with Central.connect(central_url, mode="read") as c:
        yield c


def test_compare_recovers_the_injected_bias(campaign):
    central, truth = campaign
    messages = []
    result = compare(
        central, "XLG/auto/C1", "XLG/survey/S1", n_boot=300, seed=3, progress=messages.append
    )
    assert isinstance(result, Comparison)
    d = result.as_dict()
    assert d["n_pairs"] == 30 and result.pairing.diagnostics.pairs == 30
    lo, hi = d["relative_bias_ci"]
    assert lo < truth["relative_bias"] < hi
    assert d["bias"] < 0 and d["loa_lower"] < d["bias"] < d["loa_upper"]
    for key in TOP_LEVEL:
        assert key in d and f"{key}_ci" in d, key
        assert d[f"{key}_ci"] is None or len(d[f"{key}_ci"]) == 2
    assert d["n_blocks"] == 10  # the bootstrap resamples local standard days
    json.dumps(d, allow_nan=False)
    assert any("pairing" in m for m in messages) and any("bootstrap" in m for m in messages)
    # provenance
    assert d["a"]["spec"] == "XLG/auto/C1" and d["a"]["processing_versions"] == {"site-1": 480}
    assert d["b"]["processing_versions"] == {"manual": 30}
    assert d["provenance"]["backend"] == central.dialect
    assert "FROM observations" in d["provenance"]["query_a"]
    assert d["provenance"]["software_version"]
    assert d["settings"]["seed"] == 3 and d["settings"]["n_boot"] == 300
    assert d["pairing"]["unpaired_b"]["total"] == 0


def test_the_result_is_a_frozen_tree(campaign):
    central, _ = campaign
    result = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.agreement = None  # type: ignore[misc]
    for name in ("a", "b", "settings", "provenance", "pairing", "processing", "temporal_a"):
        assert dataclasses.is_dataclass(getattr(result, name)), name
    assert result.as_dict()["bias_ci"] is None  # no bootstrap: no CI


def test_seeded_and_reproducible(campaign):
    central, _ = campaign
    one = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, seed=7).as_dict()
    two = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, seed=7).as_dict()
    other = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, seed=8).as_dict()
    assert one["bias_ci"] == two["bias_ci"] and one["sampling"] == two["sampling"]
    assert one["bias"] == other["bias"] and one["bias_ci"] != other["bias_ci"]
    # a breakdown draws from its own stream: the main intervals do not move
    more = compare(
        central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, seed=7, by=("hour",)
    ).as_dict()
    assert more["bias_ci"] == one["bias_ci"]


def test_baselines_of_both_systems(campaign):
    central, _ = campaign
    result = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=0)
    auto, survey = result.baselines
    assert isinstance(auto, Baseline) and auto.label == "XLG/auto"
    assert auto.collars == ("C1", "C2", "C3")
    assert auto.pairs[["collar_a", "collar_b"]].values.tolist() == [
        ["C1", "C2"],
        ["C1", "C3"],
        ["C2", "C3"],
    ]
    # C2 reads 10 % above C1, C3 10 % below: |relative bias| from 0.1 to 0.2 / 1.1 (C2 vs C3)
    rel = auto.pairs.set_index("collar_b").loc["C2", "relative_bias"]
    assert rel == pytest.approx(0.10, abs=0.02)
    floor = auto.floor
    assert set(floor) == {"abs_bias", "abs_relative_bias", "rmsd", "r", "ccc"}
    assert floor["abs_relative_bias"]["min"] == pytest.approx(0.10, abs=0.02)
    assert floor["abs_relative_bias"]["max"] == pytest.approx(0.2 / 1.1, abs=0.02)
    assert survey.collars == ("S1", "S2") and len(survey.pairs) == 1
    # over the span of the comparison's pairs only
    assert auto.start_utc >= "2026-07-01" and auto.end_utc <= "2026-07-11"
    assert "collar pair" in auto.line()
    same = compare(central, "XLG/auto/C1", "XLG/auto/C2", n_boot=0)
    assert [b.label for b in same.baselines] == ["XLG/auto"]


def test_baselines_of_every_system(campaign):
    central, _ = campaign
    found = baselines(central, site="XLG")
    assert [b.label for b in found] == ["XLG/auto", "XLG/survey"]
    assert all(len(b.pairs) for b in found)
    with pytest.raises(ConfigError, match="--site 'YMS': no such site; sites: XLG"):
        baselines(central, site="YMS")


def test_processing_part_on_a_common_central_refit(campaign):
    central, _ = campaign
    result = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=50)
    p = result.processing
    assert p.status == "compared" and p.common_version == "central-linear-db20s"
    assert p.own_versions == ("site-1", "manual")
    # the refit reads a 2 % high and b 3 % low: their relative bias is about -0.15
    own = p.own.as_dict()
    common = p.common.as_dict()
    assert own["bias"] == result.as_dict()["bias"]
    ratio = (1 + common["relative_bias"]) / (1 + own["relative_bias"])
    assert ratio == pytest.approx(0.97 / 1.02, abs=0.005)
    with pytest.raises(ConfigError, match="--common-processing 'central-exponential-db20s'"):
        compare(
            central,
            "XLG/auto/C1",
            "XLG/survey/S1",
            n_boot=0,
            common_processing="central-exponential-db20s",
        )


def test_processing_part_without_raw_traces(plain_campaign):
    result = compare(plain_campaign, "XLG/auto/C1", "XLG/survey/S1", n_boot=0)
    assert result.processing.status == "unavailable"
    assert "no raw traces" in result.processing.reason


def test_named_processing_versions(campaign):
    central, _ = campaign
    result = compare(
        central,
        "XLG/auto/C1",
        "XLG/survey/S1",
        a_processing="central-linear-db20s",
        b_processing="central-linear-db20s",
        n_boot=0,
    )
    assert result.a.processing_versions == {"central-linear-db20s": 480}
    assert result.processing.own is not result.agreement  # the own processing, computed
    with pytest.raises(ConfigError, match=r"--a-processing 'instrument'.*site-1"):
        compare(central, "XLG/auto/C1", "XLG/survey/S1", a_processing="instrument")


def test_temperature_responses_sums_and_sparse_sampling(campaign):
    central, _ = campaign
    result = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100)
    q10 = result.temporal_a.q10
    assert q10.r10 == pytest.approx(2.0, rel=0.03) and q10.q10 == pytest.approx(2.0, rel=0.05)
    assert result.temporal_a.lloyd_taylor is not None
    assert len(result.temporal_a.diel) == 24
    period = result.temporal_a.period
    assert len(period) == 1 and period["sum_g_c_m2"].iloc[0] > 0
    assert result.temporal_a.cumulative is not None
    assert result.temporal_b.q10.r10 == pytest.approx(2.0 * 0.87, rel=0.06)
    assert set(result.temperature_difference) == {"q10", "lloyd_taylor"}
    # the survey samples 3 times a day: its schedule is emulated on the automated series
    s = result.sampling
    assert s is not None and s.continuous == "a" and s.sparse == "b"
    d = result.as_dict()
    assert d["sparse_sampling_bias"] == pytest.approx(s.result.relative_bias)
    assert d["temperature"]["a"]["q10"]["r10"] == pytest.approx(q10.r10)
    text = "\n".join(result.lines())
    assert "sparse sampling" in text and "temperature response XLG/auto/C1" in text


def test_breakdowns(campaign):
    central, _ = campaign
    result = compare(
        central,
        "XLG/auto/C1",
        "XLG/survey/S1",
        n_boot=50,
        by=("hour", "month", "flux", "temperature", "moisture"),
    )
    hour = result.breakdowns["hour"]
    # the survey visits at 10:00, 12:00 and 14:00 local standard time (UTC+8)
    assert hour["hour"].tolist() == [10, 12, 14] and hour["n_pairs"].sum() == 30
    assert "bias_ci_low" in hour
    assert result.breakdowns["month"]["month"].tolist() == [7]
    assert result.breakdowns["flux"]["n_pairs"].sum() == 30
    assert result.breakdowns["temperature"]["n_pairs"].sum() == 30
    assert len(result.breakdowns["moisture"]) == 0  # one moisture value: no classes
    d = result.as_dict()
    assert [r["hour"] for r in d["breakdowns"]["hour"]] == [10, 12, 14]
    with pytest.raises(ConfigError, match="--by week"):
        compare(central, "XLG/auto/C1", "XLG/survey/S1", by=("week",))


def test_system_means_and_blocks(campaign):
    central, _ = campaign
    result = compare(central, "XLG/auto", "XLG/survey", n_boot=0, block="hour")
    assert result.a.aggregation == "round mean" and result.b.aggregation == "round mean"
    d = result.as_dict()
    assert d["pairing"]["block"] == "hour" and d["n_pairs"] == 30
    # means: auto (1.0 + 1.1 + 0.9) / 3 = 1.0, survey (1.0 + 1.1) / 2 x 0.87
    assert d["relative_bias"] == pytest.approx(1.05 * 0.87 - 1, abs=0.03)


def test_errors_are_messages(campaign):
    central, _ = campaign
    with pytest.raises(ConfigError) as info:
        compare(central, "XLG/auto/C1", "XLG/survey/S1", start="2027-01-01", n_boot=0)
    assert str(info.value) == (
        "--a XLG/auto/C1: no co2 fluxes from 2027-01-01T00:00:00.000000+00:00 to the end; "
        "its 480 observations begin from 2026-07-01 00:00 to 2026-07-10 23:30 UTC"
    )
    with pytest.raises(ConfigError, match=r"^--b XLG/survey/S1: no co2 fluxes"):
        compare(central, "XLG/auto/C1", "XLG/survey/S1", end="2026-07-01T01:00", n_boot=0)
    with pytest.raises(ConfigError, match="no pairs; pairing: nearest within 0.5 min"):
        compare(central, "XLG/auto/C1", "XLG/survey/S1", tolerance_s=30, n_boot=0)
    with pytest.raises(ConfigError, match="--boot -1"):
        compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=-1)
    with pytest.raises(ConfigError, match="--a 'XLG'"):
        compare(central, "XLG", "XLG/survey/S1")


def test_table_lines(campaign):
    central, _ = campaign
    lines = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=50, by=("hour",)).lines()
    text = "\n".join(lines)
    for expected in (
        "b - a; pairs from 2026-07-01",
        "pairing: nearest within 15 min, one to one: 30 pairs",
        "bias (b - a)",
        "Passing-Bablok slope",
        "by hour:",
        "within-system baseline",
        "processing part:",
    ):
        assert expected in text, expected
    row = next(line for line in lines if line.startswith("relative bias"))
    assert row.count("[") == 1  # the estimate and its CI
    assert not any(np.nan is x for x in lines)


def test_no_pairs_says_when_each_side_is(campaign):
    central, _ = campaign
    with pytest.raises(ConfigError) as info:
        compare(central, "XLG/auto/C1", "XLG/survey/S1", end="2026-07-01T03:00", tolerance_s=30)
    assert "a spans 2026-07-01 00:01 to 2026-07-01 02:31 UTC" in str(info.value)


def test_degenerate_series_are_a_result_or_a_message(central_url):
    """b exactly proportional to a, or constant: never a traceback."""
    import datetime as dt

    from comparedata import add_system, observation, store

    with Central.connect(central_url) as c:
        c.migrate()
        start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
        for system, scale in (("a", 1.0), ("b", 0.9), ("c", 0.0)):
            add_system(c, "S", system)
            store(
                c,
                "S",
                system,
                [
                    observation(
                        "C1",
                        start + dt.timedelta(minutes=30 * k),
                        (1.0 + 0.1 * (k % 7)) * scale if scale else 1.5,
                    )
                    for k in range(96)
                ],
            )
        for other in ("S/b/C1", "S/c/C1"):
            try:
                result = compare(c, "S/a/C1", other, n_boot=20)
            except ConfigError as exc:
                assert "statistics" in str(exc)
            else:
                json.dumps(result.as_dict(), allow_nan=False)


def test_a_survey_with_several_samples_per_visit_is_sparse(central_url):
    """Visits every other day with three samples 1.5 h apart: short intervals, low rate.
    The sampling emulation runs, and its interval is not a point (visits move by a day)."""
    with Central.connect(central_url) as c:
        c.migrate()
        two_systems(c, days=12, seed=4, survey_every_days=2, survey_hours=(2, 3.5, 5))
    with Central.connect(central_url, mode="read") as central:
        result = compare(central, "XLG/auto/C1", "XLG/survey/S1", n_boot=100)
    s = result.sampling
    assert s is not None and s.result is not None and (s.continuous, s.sparse) == ("a", "b")
    low, high = s.result.relative_bias_ci
    assert high > low
    assert result.as_dict()["sparse_sampling_bias"] is not None
