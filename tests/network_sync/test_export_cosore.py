"""COSORE data sets round trip: import -> export -> the originals, on both backends.

The two Yamashiro data sets of shared/data/cosore (CC-BY-4.0, read in place) are imported as
two systems of one site and exported again: the rows come out in time order, with every
value and timestamp of the original (numbers without floating-point noise), the data set's
description (site name, coordinates, elevation, instrument, publications, ...) and its
ports table (area, volume, depth, species, ...), and the export reads back in through the
importer unchanged.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths
from chamberd.network_sync.queries import export_cosore, export_fluxnet, format_float

SETS = {"ataka": "d20200212_ATAKA", "ueyama": "d20200328_UEYAMA_YAMASHIRO"}
#: keys that describe the exported file itself, not the data set
OWN_KEYS = {"CSR_FILE_FORMAT", "CSR_TIMESTAMP_FORMAT"}
NUMBER = re.compile(r"^-?(\d+)(?:\.(\d+))?(?:e[-+]\d+)?$")


def _noisy(cells: pd.Series) -> list[str]:
    """Numbers written with more than 12 significant digits (floating-point noise)."""
    out = []
    for text in cells:
        match = NUMBER.match(text)
        if match:
            digits = (match.group(1) + (match.group(2) or "")).lstrip("0")
            if len(digits) > 12:
                out.append(text)
    return out


def _key_values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        if key.strip().startswith("CSR_"):
            out[key.strip()] = value.strip()
    return out


def _ports(text: str) -> list[dict[str, str]]:
    lines = [ln.replace("\t", " ") for ln in text.splitlines() if ln.strip() and ln[0] != "#"]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines)), skipinitialspace=True))
    return [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in rows]


def _data(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)


def _subset(source: Path, target: Path, every: int) -> Path:
    """Every ``every``-th row of a data set, all its ports (a copy in tmp_path)."""
    target.mkdir(parents=True)
    for member in ("DESCRIPTION.txt", "PORTS.txt"):
        (target / member).write_bytes((source / member).read_bytes())
    lines = gzip.decompress((source / "data.csv.gz").read_bytes()).decode().splitlines()
    kept = [lines[0], *lines[1::every]]
    (target / "data.csv.gz").write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))
    return target


@pytest.fixture
def imported(central_url, reference_data, tmp_path):
    """Both data sets imported as systems ``ataka`` and ``ueyama`` of site ``YMS`` (in full
    on SQLite; every 20th row on PostgreSQL, whose full import is timed in the benchmarks)."""
    folders = {}
    for system, name in SETS.items():
        source = reference_data / "cosore" / name
        if central_url.startswith("postgresql"):
            source = _subset(source, tmp_path / "in" / name, 20)
        folders[system] = source
    with Central.connect(central_url) as central:
        central.migrate()
        for system, folder in folders.items():
            report = import_paths(central, [folder], site_id="YMS", system_id=system, fmt="cosore")
            assert not report.rejected, report.files[0].reasons
            assert report.totals()["conflicts"] == 0 and report.totals()["warnings"] == 0
        yield central, folders


@pytest.mark.parametrize("system", sorted(SETS))
def test_cosore_round_trip_keeps_rows_values_and_metadata(imported, tmp_path, system):
    central, folders = imported
    source = folders[system]
    out = tmp_path / f"export-{system}"
    tables = export_cosore(central, out, site="YMS", system=system)

    # rows: every original row, in time order (then port)
    original = _data(gzip.decompress((source / "data.csv.gz").read_bytes()))
    exported = _data((out / "data.csv").read_bytes())
    assert len(exported) == len(original) == len(tables["data"])
    begins = pd.to_datetime(exported["CSR_TIMESTAMP_BEGIN"], format="ISO8601", utc=True)
    assert begins.is_monotonic_increasing
    ports = exported["CSR_PORT"].astype(int)
    same_time = begins.diff().dt.total_seconds().fillna(1) == 0
    assert (ports.diff()[same_time] > 0).all()
    assert sorted(exported.columns) == sorted(original.columns)  # CSR_T3 stays CSR_T3

    # values: each cell as the original wrote it, numbers equal and without noise
    key = ["CSR_PORT", "CSR_TIMESTAMP_BEGIN"]
    merged = original.merge(exported, on=key, suffixes=("_in", "_out"), validate="1:1")
    assert len(merged) == len(original)
    compared = 0
    for column in original.columns:
        if column in key:
            continue
        a, b = merged[f"{column}_in"], merged[f"{column}_out"]
        assert ((a == "") == (b == "")).all(), column  # missing stays missing
        if column == "CSR_TIMESTAMP_END":
            assert (a == b).all()
            continue
        present = a != ""
        # the original's number, without the noise some of its cells carry
        # (0.26940453600000003 in UEYAMA's CO2 fluxes is written 0.269404536)
        clean = a[present].astype(float).map(format_float)
        assert (clean.astype(float) == b[present].astype(float)).all(), column
        assert ((clean.astype(float) / a[present].astype(float) - 1).abs() < 1e-12).all()
        compared += int(present.sum())
    assert compared > len(original)
    for column in exported.columns:
        assert not _noisy(exported[column]), column
    if system == "ueyama" and len(original) > 40000:  # the full set: 22 noisy cells
        assert sum(len(_noisy(original[c])) for c in original.columns) == 22

    # the data set's description, as written
    described = _key_values((source / "DESCRIPTION.txt").read_text())
    written = _key_values((out / "DESCRIPTION.txt").read_text())
    for name, value in described.items():
        if name not in OWN_KEYS:
            assert written[name] == value, name
    assert written["CSR_FILE_FORMAT"] == "Processed_csv"
    table = pd.read_csv(out / "DESCRIPTION.csv", dtype=str, keep_default_na=False).iloc[0]
    for name in ("CSR_SITE_NAME", "CSR_LATITUDE", "CSR_LONGITUDE", "CSR_INSTRUMENT"):
        assert table[name] == described[name]

    # the ports table: each port's row carries the original's (port 0 = all ports)
    recorded = {int(r["CSR_PORT"]): r for r in _ports((source / "PORTS.txt").read_text())}
    rows = pd.read_csv(out / "PORTS.csv", dtype=str, keep_default_na=False)
    assert set(rows["CSR_PORT"].astype(int)) == set(ports)
    for _, row in rows.iterrows():
        own = recorded.get(int(row["CSR_PORT"])) or recorded[0]
        for name, value in own.items():
            if name == "CSR_PORT" or value == "":
                continue
            try:
                assert float(row[name]) == float(value), name
            except ValueError:
                assert row[name] == value, name
        assert row["CSR_CHAMBER"] == f"port{row['CSR_PORT']}"


def test_the_site_takes_the_first_data_set_s_name_and_coordinates(imported):
    central, _ = imported
    site = central.query("SELECT name, latitude, longitude, time_zone FROM sites")[0]
    assert site["name"] == "Yamashiro Experimental Forest"  # ATAKA's, imported first
    assert (site["latitude"], site["longitude"]) == (34.79, 135.841)
    systems = {
        r["system_id"]: r["instrument"]
        for r in central.query("SELECT system_id, instrument FROM systems")
    }
    assert systems == {"ataka": "GMP343", "ueyama": "Los Gatos FGGA-24r-EP"}


def test_a_site_s_own_registration_is_not_overwritten(central_url, reference_data, tmp_path):
    from chamberd.network_sync.sync import register_site

    with Central.connect(central_url) as central:
        central.migrate()
        register_site(
            central,
            site_id="YMS",
            system_id="own",
            name="Yamashiro (our name)",
            time_zone="Asia/Tokyo",
            latitude=34.8,
            longitude=None,
            at="2026-01-01T00:00:00+00:00",
        )
        folder = _subset(reference_data / "cosore" / SETS["ataka"], tmp_path / "a", 500)
        import_paths(central, [folder], site_id="YMS", system_id="ataka", fmt="cosore")
        site = central.query("SELECT name, latitude, longitude FROM sites")[0]
        # what the site said stays; what it lacked the data set fills
        assert (site["name"], site["latitude"], site["longitude"]) == (
            "Yamashiro (our name)",
            34.8,
            135.841,
        )


def test_the_export_reads_back_through_the_importer(imported, tmp_path):
    central, _ = imported
    out = tmp_path / "export"
    export_cosore(central, out, site="YMS", system="ueyama")
    report = import_paths(central, [out], site_id="YMS2", system_id="again", fmt="cosore")
    assert not report.rejected, report.files[0].reasons
    query = (
        "SELECT o.chamber, o.begin_utc, o.end_utc, o.soil_temperature_degc, "
        "o.soil_moisture_pct, o.area_cm2, o.volume_cm3, o.observation_s, f.gas, f.flux "
        "FROM observations o JOIN fluxes f ON f.observation_uuid = o.uuid "
        "WHERE o.site_id = ? ORDER BY o.begin_utc, o.chamber, f.gas"
    )
    ueyama = central.query(query.replace("o.site_id = ?", "o.system_id = ?"), ("ueyama",))
    again = central.query(query, ("YMS2",))
    assert len(again) == len(ueyama) > 0
    for a, b in zip(ueyama, again, strict=True):
        for name, value in a.items():
            if isinstance(value, float):
                assert b[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
            else:
                assert str(b[name]) == str(value), name
    meta = central.query("SELECT metadata FROM systems WHERE system_id = 'again'")[0]
    assert "Los Gatos FGGA-24r-EP" in meta["metadata"]


def test_fluxnet_export_is_in_time_order_without_noise(imported, tmp_path):
    central, _ = imported
    out = export_fluxnet(central, tmp_path / "f.csv", site="YMS")
    assert list(out.columns[:4]) == ["TIMESTAMP_START", "TIMESTAMP_END", "SYSTEM", "CHAMBER"]
    assert out["TIMESTAMP_START"].is_monotonic_increasing
    written = pd.read_csv(tmp_path / "f.csv", dtype=str, keep_default_na=False)
    for column in written.columns[4:]:
        assert not _noisy(written[column]), column


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (15.347199999999999, "15.3472"),
        (0.1 * 3, "0.3"),
        (1.001103444, "1.001103444"),
        (2081 * 0.01, "20.81"),
        (0.115553 * 100 / 100, "0.115553"),
        (-0.216691785, "-0.216691785"),
        (320.0, "320"),
        (-1.2345e-05, "-1.2345e-05"),
        (float("nan"), ""),
    ],
)
def test_format_float(value, text):
    assert format_float(value) == text
    if text:
        assert float(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("CSR_LATITUDE: 34.79", "CSR_LATITUDE: north"), "CSR_LATITUDE 'north' is not a number"),
        (("CSR_LONGITUDE: 135.841", "CSR_LONGITUDE: 235.841"), "CSR_LONGITUDE '235.841' is not in"),
        (("CSR_IGBP: Deciduous", "CSR_IGBP: Dec\x00iduous"), "CSR_IGBP 'Dec\\x00iduous"),
    ],
)
def test_a_bad_description_value_is_refused_naming_its_key(
    central_url, reference_data, tmp_path, edit, message
):
    folder = _subset(reference_data / "cosore" / SETS["ataka"], tmp_path / "a", 500)
    text = (folder / "DESCRIPTION.txt").read_text()
    assert edit[0] in text
    (folder / "DESCRIPTION.txt").write_text(text.replace(*edit))
    with Central.connect(central_url) as central:
        central.migrate()
        outcome = import_paths(
            central, [folder], site_id="YMS", system_id="ataka", fmt="cosore"
        ).files[0]
        assert outcome.status == "rejected"
        assert "DESCRIPTION.txt" in outcome.reasons[0] and message in outcome.reasons[0]
        assert not central.query("SELECT 1 FROM sites")


def test_an_older_schema_is_told_to_upgrade(tmp_path, reference_data):
    from chamberd.controller.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    folder = _subset(reference_data / "cosore" / SETS["ataka"], tmp_path / "a", 500)
    with Central.connect(url) as central:
        central.migrate(upto=3)
        with pytest.raises(ConfigError, match="schema version 3 is older.*central init"):
            import_paths(central, [folder], site_id="YMS", system_id="ataka", fmt="cosore")
