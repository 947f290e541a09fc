"""Queries and exports of the central database, on both backends."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from chamberd.controller.cli import main
from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths
from chamberd.network_sync.queries import export_cosore, export_fluxnet, fluxes, parse_time

MANUAL = (
    "chamber,start_time,co2_flux_umol_m2_s,ch4_flux_nmol_m2_s,area_cm2,volume_cm3\n"
    "M1,2026-07-01T10:00:00+08:00,2.5,-0.8,490.9,9817\n"
    "M1,2026-07-02T10:00:00+08:00,2.7,,490.9,9817\n"
    "M2,2026-07-01T10:30:00+08:00,1.9,-1.1,490.9,9817\n"
)


@pytest.fixture
def central(central_url, tmp_path):
    path = tmp_path / "manual.csv"
    path.write_text(MANUAL)
    with Central.connect(central_url) as c:
        c.migrate()
        import_paths(
            c,
            [path],
            site_id="XLG",
            system_id="manual",
            fmt="manual-csv",
            time_zone="Asia/Shanghai",
        )
        other = tmp_path / "other.csv"
        other.write_text(MANUAL.replace("M1", "S1").replace("M2", "S2"))
        import_paths(c, [other], site_id="XLG", system_id="survey", fmt="manual-csv")
        yield c


def test_filter_by_system_chamber_gas_and_time(central):
    everything = fluxes(central)
    assert len(everything) == 10  # 6 observations, CO2 for all, CH4 for 4
    co2 = fluxes(central, system="manual", gas="co2")
    assert list(co2["chamber"]) == ["M1", "M2", "M1"]  # in time order
    assert co2["begin_utc"].dt.tz is not None
    assert str(co2["begin_utc"].iloc[0]) == "2026-07-01 02:00:00+00:00"
    one_day = fluxes(central, chamber=["M1", "S1"], start=parse_time("2026-07-02", "--from"))
    assert set(one_day["chamber"]) == {"M1", "S1"} and len(one_day) == 2
    assert fluxes(central, site="nowhere").empty


def test_fluxnet_export(central, tmp_path):
    out = export_fluxnet(central, tmp_path / "f.csv", site="XLG", system="manual")
    text = (tmp_path / "f.csv").read_text().splitlines()
    assert text[0] == "TIMESTAMP_START,TIMESTAMP_END,SYSTEM,CHAMBER,FCO2,FCH4"
    # local standard time (UTC+8), YYYYMMDDHHMM, -9999 for the missing CH4
    assert text[1].startswith("202607011000,202607011000,manual,M1,2.5,-0.8")
    # in time order: M2 at 10:30 on the first day before M1 on the second
    assert text[2].startswith("202607011030,202607011030,manual,M2,1.9,-1.1")
    assert text[3].startswith("202607021000,202607021000,manual,M1,2.7,-9999")
    assert len(out) == 3


def test_cosore_export_round_trips_through_the_importer(central, tmp_path, central_url):
    tables = export_cosore(central, tmp_path / "cos", site="XLG", system="manual")
    assert list(tables["ports"]["CSR_CHAMBER"]) == ["M1", "M2"]
    data = pd.read_csv(tmp_path / "cos" / "data.csv")
    assert list(data.columns[:3]) == ["CSR_PORT", "CSR_TIMESTAMP_BEGIN", "CSR_FLUX_CO2"]
    assert data["CSR_TIMESTAMP_BEGIN"].iloc[0] == "2026-07-01T10:00:00+08:00"
    description = pd.read_csv(tmp_path / "cos" / "DESCRIPTION.csv")
    assert description["CSR_TIMEZONE"].iloc[0] == "Asia/Shanghai"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_cli_query_formats(central, central_url, tmp_path, capsys, fmt):
    out = tmp_path / f"q.{fmt}"
    status = main(
        [
            "query",
            "--target",
            central_url,
            "--system",
            "manual",
            "--gas",
            "co2",
            "--format",
            fmt,
            "-o",
            str(out),
        ]
    )
    assert status == 0
    if fmt == "csv":
        frame = pd.read_csv(out)
        assert frame["begin_utc"].iloc[0] == "2026-07-01T02:00:00Z"
    elif fmt == "json":
        frame = pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    else:
        frame = pd.read_parquet(out)
    assert len(frame) == 3 and set(frame["chamber"]) == {"M1", "M2"}


def test_cli_query_bad_time_is_a_message(central_url, capsys):
    assert main(["query", "--target", central_url, "--from", "yesterday"]) == 2
    assert "--from 'yesterday'" in capsys.readouterr().err


def test_cli_export(central, central_url, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                "--target",
                central_url,
                "--site",
                "XLG",
                "--layout",
                "fluxnet",
                "-o",
                str(tmp_path / "f.csv"),
            ]
        )
        == 0
    )
    assert "6 rows exported" in capsys.readouterr().out
    assert (
        main(
            [
                "export",
                "--target",
                central_url,
                "--site",
                "XLG",
                "--layout",
                "cosore",
                "-o",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
