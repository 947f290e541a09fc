"""Selecting series from the central database, on both backends."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from comparedata import add_system, flux_row, observation, store, utc

from chamberd.controller.errors import ConfigError
from chamberd.network_sync.central import Central
from chamberd.network_sync.compare.pairing import (
    pair,
    processing_versions,
    select,
    selection,
)

T0 = utc("2026-07-01T00:00:00Z")
CHAMBERS = ["C1", "C2", "C3", "C4"]


@pytest.fixture
def central(central_url):
    """Site YMS (Etc/GMT-9, as COSORE writes it) with an automated system of four collars
    in two plots (half-hourly rounds, one day, with a central refit beside the own fluxes)
    and a survey system; site NYC (America/New_York) with one chamber."""
    with Central.connect(central_url) as c:
        c.migrate()
        add_system(
            c,
            "YMS",
            "auto",
            time_zone="Etc/GMT-9",
            chambers=CHAMBERS,
            plots={"C1": "north", "C2": "north", "C3": "south", "C4": "south"},
        )
        payloads = []
        for k in range(48):
            for i, chamber in enumerate(CHAMBERS):
                if chamber == "C4" and k % 2:  # C4 every other round only
                    continue
                begin = T0 + dt.timedelta(minutes=30 * k, seconds=200 * i)
                flux = 2.0 + i + 0.01 * k
                payloads.append(
                    observation(
                        chamber,
                        begin,
                        flux,
                        length_s=120,
                        flux_se=0.1,
                        temperature=15.0 + i,
                        moisture=20.0,
                        fluxes=[flux_row("co2", flux * 1.05, "central-exponential-db20s")],
                    )
                )
        payloads[5]["fluxes"][0]["flux"] = None  # one missing flux (C2 of round 1)
        store(c, "YMS", "auto", payloads)
        add_system(c, "YMS", "survey", time_zone="Etc/GMT-9")
        store(
            c,
            "YMS",
            "survey",
            [
                observation("S1", T0 + dt.timedelta(hours=2 * k, minutes=5), 2.4, version="manual")
                for k in range(12)
            ],
        )
        add_system(c, "NYC", "li8100", time_zone="America/New_York")
        store(
            c,
            "NYC",
            "li8100",
            [
                observation(
                    "port1", "2026-07-01T04:00:00Z", 3.0, length_s=None, version="instrument"
                )
            ],
        )
        yield c


def test_one_chamber(central):
    s = selection(central, "YMS/auto/C2")
    frame = s.frame
    assert len(frame) == 48 and s.aggregation == "chamber"
    # the middle of the closure: begin + 200 s + 60 s
    assert frame["time_utc"].iloc[0] == pd.Timestamp("2026-07-01T00:04:20Z")
    # Etc/GMT-9 is UTC+9 (the sign is inverted in POSIX zone names)
    assert str(frame["time_local_standard"].iloc[0]) == "2026-07-01 09:04:20"
    assert s.time_zone == "Etc/GMT-9" and s.standard_offset_s == 9 * 3600
    assert np.isnan(frame["flux"].iloc[1])  # the missing flux is kept (pairing counts it)
    assert frame["flux"].iloc[0] == 3.0 and frame["flux_se"].iloc[0] == 0.1
    assert frame["soil_temperature_degc"].iloc[0] == 16.0
    assert s.processing_versions == {"site-1": 48}
    assert s.flux_unit == "umol m-2 s-1"
    assert s.instrument == "" and "FROM observations o JOIN fluxes f" in s.query
    frame_only = select(central, "YMS/auto/C2")
    assert frame_only.attrs["spec"] == "YMS/auto/C2" and len(frame_only) == 48


def test_no_end_time_gives_the_begin_instant(central):
    s = selection(central, "NYC/li8100/port1")
    assert s.frame["time_utc"].iloc[0] == pd.Timestamp("2026-07-01T04:00:00Z")
    # New York is on daylight saving in July; local standard time is EST (UTC-5)
    assert str(s.frame["time_local_standard"].iloc[0]) == "2026-06-30 23:00:00"


def test_processing_versions(central):
    own = selection(central, "YMS/auto/C1")
    refit = selection(central, "YMS/auto/C1", processing="central-exponential-db20s")
    assert refit.processing_versions == {"central-exponential-db20s": 48}
    assert np.allclose(refit.frame["flux"], own.frame["flux"] * 1.05)
    versions = processing_versions(central, "YMS/auto")
    assert versions == {"central-exponential-db20s": 168, "site-1": 168}
    with pytest.raises(ConfigError) as info:
        selection(central, "YMS/auto/C1", processing="instrument", option="--b")
    message = str(info.value)
    assert message.startswith("--b-processing 'instrument'")
    assert "central-exponential-db20s (48), site-1 (48)" in message


def test_a_version_without_rows_in_the_period_is_empty_not_an_error(central):
    s = selection(central, "YMS/auto/C1", processing="site-1", start="2027-01-01")
    assert len(s) == 0


def test_the_version_a_series_uses_most_wins(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        add_system(c, "S", "x")
        payloads = [
            observation("C1", T0 + dt.timedelta(hours=k), 1.0, version="site-1") for k in range(4)
        ]
        for p in payloads[:2]:  # two observations also carry an instrument flux
            p["fluxes"].append(flux_row("co2", 9.0, "instrument"))
        store(c, "S", "x", payloads)
        s = selection(c, "S/x/C1")
    assert s.frame["flux"].tolist() == [1.0] * 4
    assert s.processing_versions == {"site-1": 4}


def test_period_bounds(central):
    s = selection(central, "YMS/auto/C1", start="2026-07-01T01:00:00Z", end="2026-07-01T02:00")
    assert len(s) == 2
    s = selection(
        central,
        "YMS/auto/C1",
        start=dt.datetime(2026, 7, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        end=pd.Timestamp("2026-07-01T02:30Z"),
    )
    assert len(s) == 3 and s.start_utc == "2026-07-01T01:00:00.000000+00:00"
    with pytest.raises(ConfigError, match="not an ISO 8601"):
        selection(central, "YMS/auto/C1", start="yesterday", option="--a")


def test_all_chambers_average_per_round(central):
    s = selection(central, "YMS/auto")
    frame = s.frame
    assert s.aggregation == "round mean" and s.chambers == tuple(CHAMBERS)
    assert len(frame) == 48 and s.min_collars == 2
    first = frame.iloc[0]
    assert first["n_collars"] == 4 and first["flux"] == pytest.approx(3.5)
    assert first["collar_sd"] == pytest.approx(np.std([2, 3, 4, 5], ddof=1))
    assert first["flux_se"] == pytest.approx(np.sqrt(4 * 0.01) / 4)
    assert first["soil_temperature_degc"] == pytest.approx(16.5)
    # round 1: C2's flux missing, C4 not measured: the mean of C1 and C3
    second = frame.iloc[1]
    assert second["n_collars"] == 2 and second["flux"] == pytest.approx((2.01 + 4.01) / 2)
    assert first["begin_utc"] == pd.Timestamp("2026-07-01T00:00:00Z")
    assert first["end_utc"] == pd.Timestamp("2026-07-01T00:12:00Z")
    # every collar at least: round 1 is left out
    strict = selection(central, "YMS/auto", min_collars=4)
    assert len(strict) == 24 and strict.rounds_incomplete == 24
    assert s.n_observations == 168


def test_a_list_and_a_plot(central):
    listed = selection(central, "YMS/auto/C1,C3")
    assert listed.chambers == ("C1", "C3") and len(listed) == 48
    assert listed.frame["flux"].iloc[0] == pytest.approx(3.0)
    north = selection(central, "YMS/auto/plot:north")
    assert north.chambers == ("C1", "C2") and north.min_collars == 1
    assert north.frame["flux"].iloc[1] == pytest.approx(2.01)  # C2 missing: C1 alone
    rows = selection(central, "YMS/auto/C1,C3", aggregate=False)
    assert rows.aggregation == "chambers" and len(rows) == 96
    assert set(rows.frame["chamber"]) == {"C1", "C3"}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("XLG/auto", "--a XLG/auto: no site 'XLG'; sites: NYC, YMS"),
        ("YMS/lgr", "--a YMS/lgr: site 'YMS' has no system 'lgr'; its systems: auto, survey"),
        ("YMS/auto/C1,C9", "--a YMS/auto/C1,C9: YMS/auto has no chamber 'C9'; its chambers: C1"),
        ("YMS/auto/plot:east", "--a YMS/auto/plot:east: YMS/auto has no plot 'east'; its plots:"),
        ("YMS/survey/plot:x", "it records no plots"),
    ],
)
def test_unknown_names_list_what_exists(central, spec, expected):
    with pytest.raises(ConfigError) as info:
        selection(central, spec, option="--a")
    assert expected in str(info.value)


def test_bad_gas(central):
    with pytest.raises(ConfigError, match="gas 'co'"):
        selection(central, "YMS/auto/C1", gas="co")


def test_read_only_connection_pairs_two_systems(central, central_url):
    with Central.connect(central_url, mode="read") as c:
        a = selection(c, "YMS/auto/C1")
        b = selection(c, "YMS/survey")
        p = pair(a, b, tolerance_s=900)
    # survey at HH:05 (middle HH:06) every 2 h; C1's middles at HH:01 and HH:31
    assert p.diagnostics.pairs == 12 and p.diagnostics.median_abs_dt_s == 300.0
    # the 22:31, 23:01 and 23:31 observations come after the survey's last (22:06 + 15 min)
    assert p.diagnostics.unpaired_a.outside_period == 3
    assert p.diagnostics.unpaired_a.no_partner == 33
    # 00:00-23:59 UTC is 09:00 to 08:59 the next day in local standard time (UTC+9)
    days = p.pairs["date_local_standard"].dt.strftime("%Y-%m-%d")
    assert days.value_counts().to_dict() == {"2026-07-01": 8, "2026-07-02": 4}
    daily = pair(a, b, block="day")
    # day 1: 30 of 48 half-hours and 8 of 12 surveys; day 2: 18 of 48, 4 of 12
    assert daily.diagnostics.pairs == 1 and daily.diagnostics.blocks_incomplete == 1
    assert daily.pairs["n_a"].tolist() == [30] and daily.pairs["n_b"].tolist() == [8]
