"""Importers on the reference files in shared/data (read in place) and the manual template."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from chamberd.controller.cli import main
from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths


@pytest.fixture
def central(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        yield c


def _count(central, sql, *args):
    return central.query(sql, args)[0]["n"]


def _small_cosore(reference_data, tmp_path, name, rows):
    """A COSORE data set cut to its first rows (CC-BY-4.0: copied into tmp_path only)."""
    source = reference_data / "cosore" / name
    target = tmp_path / name
    target.mkdir()
    for member in ("DESCRIPTION.txt", "PORTS.txt"):
        shutil.copy(source / member, target / member)
    lines = gzip.decompress((source / "data.csv.gz").read_bytes()).decode().splitlines()
    (target / "data.csv.gz").write_bytes(
        gzip.compress(("\n".join(lines[: rows + 1]) + "\n").encode())
    )
    return target


def test_licor_files_keep_traces_and_instrument_fluxes(central, reference_data):
    report = import_paths(
        central,
        [reference_data / "li8100a", reference_data / "smartchamber"],
        site_id="XLG",
        system_id="licor",
        fmt="li8100a",
        time_zone="Asia/Shanghai",
    )
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in report.files}
    # the Smart Chamber files are not .81x: rejected whole, with the reason
    assert by_name["goflux_LI8200.json"].status == "rejected"
    assert "goflux_LI8200.json" in by_name["goflux_LI8200.json"].reasons[0]
    salt = by_name["SALT_20181005_LT.81x"]
    assert (salt.status, salt.sent) == ("imported", 7)
    assert len(salt.skipped) == 1 and "observation 2, line 192: truncated" in salt.skipped[0]
    uuid = central.query(
        "SELECT uuid FROM observations WHERE chamber = 'port1' ORDER BY begin_utc LIMIT 1"
    )[0]["uuid"]
    assert (
        _count(central, "SELECT count(*) AS n FROM samples WHERE observation_uuid = ?", uuid) > 100
    )
    fluxes = central.query(
        "SELECT model, processing_version, selected FROM fluxes WHERE observation_uuid = ?", (uuid,)
    )
    assert {f["processing_version"] for f in fluxes} == {"instrument"}
    assert sum(f["selected"] for f in fluxes) == 1


@pytest.mark.parametrize(
    ("fmt", "folder", "observations"),
    [("li8200", "smartchamber", 5), ("li8250", "li8250", 1)],
)
def test_smart_chamber_and_8250(central, reference_data, fmt, folder, observations):
    report = import_paths(
        central,
        [reference_data / folder],
        site_id="XLG",
        system_id=fmt,
        fmt=fmt,
        time_zone="Asia/Shanghai",
    )
    assert not report.rejected
    assert report.totals()["sent"] == observations
    assert _count(central, "SELECT count(*) AS n FROM samples") > 0


def test_reimport_is_a_no_op_from_any_path(central, reference_data, tmp_path):
    source = reference_data / "li8100a" / "worksWell.81x"
    first = import_paths(
        central, [source], site_id="S", system_id="a", fmt="li8100a", time_zone="UTC"
    )
    copy = tmp_path / "renamed.81x"
    shutil.copy(source, copy)
    again = import_paths(
        central, [copy], site_id="S", system_id="a", fmt="li8100a", time_zone="UTC"
    )
    assert first.totals()["sent"] == 68
    assert (again.totals()["sent"], again.totals()["unchanged"]) == (0, 68)
    assert _count(central, "SELECT count(*) AS n FROM observations") == 68


def test_the_same_closures_in_another_export_are_conflicts(central, reference_data, tmp_path):
    source = reference_data / "li8100a" / "worksWell.81x"
    import_paths(central, [source], site_id="S", system_id="a", fmt="li8100a", time_zone="UTC")
    edited = tmp_path / "edited.81x"
    edited.write_bytes(source.read_bytes() + b"\n")  # another file, the same closures
    report = import_paths(
        central, [edited], site_id="S", system_id="a", fmt="li8100a", time_zone="UTC"
    )
    assert report.totals()["conflicts"] == 68 and report.totals()["sent"] == 0
    assert _count(central, "SELECT count(*) AS n FROM conflicts") == 68
    assert _count(central, "SELECT count(*) AS n FROM observations") == 68


def test_cosore_data_sets(central, reference_data, tmp_path, central_url):
    if central_url.startswith("sqlite"):
        folders = [
            reference_data / "cosore" / n for n in ("d20200212_ATAKA", "d20200328_UEYAMA_YAMASHIRO")
        ]
        expected = 45809 + 45273
    else:  # the full sets are timed in benchmarks/bench_sync.py
        folders = [_small_cosore(reference_data, tmp_path, "d20200328_UEYAMA_YAMASHIRO", 300)]
        expected = 300
    report = import_paths(central, folders, site_id="YMS", system_id="cosore", fmt="cosore")
    assert not report.rejected and report.totals()["sent"] == expected
    zone = central.query("SELECT time_zone FROM sites WHERE site_id = 'YMS'")[0]["time_zone"]
    assert zone in {"Asia/Tokyo", "Etc/GMT-9"}  # from the first data set's DESCRIPTION
    first = central.query(
        "SELECT o.begin_utc, o.soil_temperature_degc, o.soil_moisture_pct, o.area_cm2, "
        "f.gas, f.flux, f.flux_unit FROM observations o JOIN fluxes f ON f.observation_uuid = "
        "o.uuid WHERE o.chamber = 'port1' AND f.gas = 'ch4' ORDER BY o.begin_utc LIMIT 1"
    )[0]
    assert str(first["begin_utc"]).startswith("2016-10-31")  # 2016-11-01T00:00+09:00 in UTC
    assert first["flux"] == pytest.approx(-0.216691785)
    assert first["flux_unit"] == "nmol m-2 s-1"
    assert first["soil_moisture_pct"] == pytest.approx(29.26605)
    assert first["area_cm2"] == 361


def test_cosore_repeated_port_and_start_time_is_a_conflict(central, reference_data, tmp_path):
    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    data = gzip.decompress((folder / "data.csv.gz").read_bytes()).decode().splitlines()
    data.insert(5, data[3].replace(",4.", ",5."))  # the same port and start, another flux
    (folder / "data.csv.gz").write_bytes(gzip.compress(("\n".join(data) + "\n").encode()))
    report = import_paths(central, [folder], site_id="YMS", system_id="ataka", fmt="cosore")
    assert report.totals()["sent"] == 50 and report.totals()["conflicts"] == 1
    conflict = central.query("SELECT chamber, incoming FROM conflicts")[0]
    assert conflict["chamber"] == "port1"


def test_a_bad_row_rejects_the_whole_data_set(central, reference_data, tmp_path):
    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    data = gzip.decompress((folder / "data.csv.gz").read_bytes()).decode().splitlines()
    data[10] = data[10].replace(data[10].split(",")[3], "four point two")
    (folder / "data.csv.gz").write_bytes(gzip.compress(("\n".join(data) + "\n").encode()))
    report = import_paths(central, [folder], site_id="YMS", system_id="ataka", fmt="cosore")
    assert report.files[0].status == "rejected"
    assert (
        "line 11" in report.files[0].reasons[0] and "four point two" in report.files[0].reasons[0]
    )
    assert _count(central, "SELECT count(*) AS n FROM observations") == 0


MANUAL = (
    (
        "chamber,start_time,elapsed_s,co2_umol_mol,ch4_nmol_mol,air_temperature_degc,"
        "pressure_kpa,area_cm2,volume_cm3\n"
    )
    + """M1,2026-07-01T10:02:00+08:00,0,421.3,1998.2,24.1,88.9,490.9,9817
M1,2026-07-01T10:02:00+08:00,300,438.9,1997.5,24.3,88.9,490.9,9817
M1,2026-07-01T10:02:00+08:00,600,455.2,1996.1,24.6,88.9,490.9,9817
M2,2026-07-01T10:20:00+08:00,0,420.1,,24.8,88.9,490.9,9817
M2,2026-07-01T10:20:00+08:00,300,431.0,NA,24.9,88.9,490.9,9817
"""
)


def test_manual_template_samples_and_fluxes(central, tmp_path):
    samples = tmp_path / "manual.csv"
    samples.write_text(MANUAL)
    fluxes = tmp_path / "fluxes.csv"
    fluxes.write_text(
        "chamber,start_time,co2_flux_umol_m2_s,ch4_flux_nmol_m2_s,area_cm2,volume_cm3\n"
        "M3,2026-07-01T11:00:00Z,2.71,-0.84,490.9,9817\n"
    )
    report = import_paths(
        central, [samples, fluxes], site_id="M", system_id="manual", fmt="manual-csv"
    )
    assert report.totals()["sent"] == 3
    assert _count(central, "SELECT count(*) AS n FROM samples") == 5
    m1 = central.query(
        "SELECT begin_utc, air_temperature_degc FROM observations WHERE chamber = 'M1'"
    )[0]
    assert str(m1["begin_utc"]).startswith("2026-07-01")
    assert m1["air_temperature_degc"] == pytest.approx(24.333, abs=1e-3)
    m3 = central.query("SELECT gas, flux, flux_unit FROM fluxes ORDER BY gas")
    assert [(r["gas"], r["flux"], r["flux_unit"]) for r in m3] == [
        ("ch4", -0.84, "nmol m-2 s-1"),
        ("co2", 2.71, "umol m-2 s-1"),
    ]


def test_manual_flux_standard_errors_and_units(central, tmp_path):
    """Optional standard errors are stored with the fluxes; a flux column in another unit
    than chamberd stores that gas in is refused, naming the column to use."""
    good = tmp_path / "se.csv"
    good.write_text(
        "chamber,start_time,co2_flux_umol_m2_s,co2_flux_se_umol_m2_s\n"
        "M4,2026-07-01T11:00:00Z,2.71,0.12\n"
    )
    report = import_paths(central, [good], site_id="M", system_id="manual", fmt="manual-csv")
    assert not report.rejected
    row = central.query("SELECT flux, flux_se FROM fluxes WHERE gas = 'co2'")[0]
    assert (row["flux"], row["flux_se"]) == (2.71, 0.12)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("chamber,start_time,ch4_flux_umol_m2_s\nM5,2026-07-01T11:00:00Z,0.4\n")
    report = import_paths(central, [wrong], site_id="M", system_id="manual", fmt="manual-csv")
    (reason,) = report.rejected[0].reasons
    assert "ch4_flux_umol_m2_s" in reason and "ch4_flux_nmol_m2_s" in reason


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("0,421.3", "zero,421.3"), "line 2"),
        (
            lambda t: t.replace("2026-07-01T10:20:00+08:00,300", "2026-07-01T10:20:00,300"),
            "line 6: start_time",
        ),
        (lambda t: t.replace("M2,", ",", 1), "line 5: empty chamber"),
        (
            lambda t: t.replace(",490.9,9817\nM2", ",-1,9817\nM2", 1),
            "area_cm2 must be finite and > 0 cm2",
        ),
        (lambda t: t.replace("start_time", "begin"), "line 1: missing column(s) start_time"),
    ],
)
def test_manual_bad_rows_reject_the_file(central, tmp_path, edit, message):
    path = tmp_path / "bad.csv"
    path.write_text(edit(MANUAL))
    report = import_paths(central, [path], site_id="M", system_id="manual", fmt="manual-csv")
    assert report.files[0].status == "rejected"
    assert message in report.files[0].reasons[0]
    assert _count(central, "SELECT count(*) AS n FROM observations") == 0


def test_cli_import_json_and_exit_status(central_url, reference_data, tmp_path, capsys):
    assert main(["central", "init", central_url]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.81x"
    bad.write_text("not an instrument file\n")
    status = main(
        [
            "import",
            "--target",
            central_url,
            "--site",
            "XLG",
            "--system",
            "survey",
            "--format",
            "li8100a",
            "--time-zone",
            "Asia/Shanghai",
            "--json",
            str(reference_data / "li8100a" / "goflux_LI8100.81x"),
            str(bad),
        ]
    )
    assert status == 3
    report = json.loads(capsys.readouterr().out)
    assert (report["files"], report["rejected"], report["sent"]) == (2, 1, 1)
    assert [f["status"] for f in report["details"]] == ["imported", "rejected"]
    assert "line 1: not an LI-8100A .81x file" in report["details"][1]["reasons"][0]


# --- bad bytes: a message naming the file and line, never a traceback, nothing written -----


def _manual_import(central, path):
    return import_paths(central, [path], site_id="M", system_id="manual", fmt="manual-csv")


def test_manual_not_utf8_names_the_line(central, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(MANUAL.replace("M2,", "Mü2,").encode("latin-1"))
    outcome = _manual_import(central, path).files[0]
    assert outcome.status == "rejected"
    assert outcome.reasons == [
        f"{path}, line 5: byte 0xfc is not UTF-8 text; save the file as UTF-8"
    ]
    assert _count(central, "SELECT count(*) AS n FROM observations") == 0


@pytest.mark.parametrize("eol", ["\r", "\r\n"])
def test_manual_any_line_ends(central, tmp_path, eol):
    path = tmp_path / "eol.csv"
    path.write_bytes(MANUAL.replace("\n", eol).encode())
    outcome = _manual_import(central, path).files[0]
    assert (outcome.status, outcome.sent) == ("imported", 2)
    assert _count(central, "SELECT count(*) AS n FROM samples") == 5


def test_manual_field_over_the_csv_limit(central, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(MANUAL.replace("M2,", "M" + "2" * 200_000 + ",", 1))
    outcome = _manual_import(central, path).files[0]
    assert outcome.status == "rejected"
    assert f"{path}, line 5: not a CSV row: field larger than field limit" in outcome.reasons[0]
    assert len(outcome.reasons[0]) < 500


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("0001-01-01T00:00:00+09:00", "start_time '0001-01-01T00:00:00+09:00' is outside the"),
        ("9999-12-31T23:00:00-05:00", "start_time '9999-12-31T23:00:00-05:00' is outside the"),
        ("2026-02-30T10:00:00+08:00", "start_time '2026-02-30T10:00:00+08:00' is not an ISO"),
        ("1" * 5000, "start_time '1111111111111111111111111111111111"),
    ],
)
def test_manual_impossible_times(central, tmp_path, start, message):
    path = tmp_path / "times.csv"
    path.write_text(MANUAL.replace("2026-07-01T10:20:00+08:00", start))
    outcome = _manual_import(central, path).files[0]
    assert outcome.status == "rejected" and message in outcome.reasons[0]
    assert "line 5" in outcome.reasons[0] and len(outcome.reasons[0]) < 600


def test_manual_huge_numbers_and_ragged_rows(central, tmp_path):
    path = tmp_path / "numbers.csv"
    text = MANUAL.replace("421.3", "9" * 5000).replace(",24.9,88.9,490.9,9817", ",24.9,88.9")
    path.write_text(text)
    outcome = _manual_import(central, path).files[0]
    assert outcome.status == "rejected"
    reason = outcome.reasons[0]
    # 5000 digits parse as inf: the sample rule withholds nothing, the file has a ragged row
    assert "line 6: 7 cells, the header names 9" in reason and len(reason) < 600


def test_time_helper_refuses_dates_that_leave_the_calendar():
    import datetime as dt

    from chamberd.network_sync.importers import _instant

    with pytest.raises(ValueError, match="outside the calendar in UTC"):
        _instant(dt.datetime(1, 1, 1), "Asia/Tokyo", name="start time", no_zone="")
    with pytest.raises(ValueError, match="outside the calendar in UTC"):
        _instant(dt.datetime(9999, 12, 31, 23), "America/New_York", name="t", no_zone="")
    with pytest.raises(ValueError, match="has no UTC offset: give one"):
        _instant("2026-07-01T10:00:00", None, name="t", no_zone="give one")


def _gzip_members(folder, content: bytes) -> None:
    (folder / "data.csv.gz").write_bytes(content)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda gz: gz[:10] + bytes([gz[10] ^ 0xFF]) + gz[11:], "corrupt"),
        (lambda gz: gz[: len(gz) // 2], "truncated"),
        (lambda gz: gzip.decompress(gz), "not gzip"),
        (lambda gz: b"", "empty file"),
        (lambda gz: gz + b"garbage after the stream", "not gzip"),
    ],
)
def test_cosore_bad_gzip_is_a_message(central, reference_data, tmp_path, spoil, message):
    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    _gzip_members(folder, spoil((folder / "data.csv.gz").read_bytes()))
    outcome = import_paths(central, [folder], site_id="Y", system_id="a", fmt="cosore").files[0]
    assert outcome.status == "rejected"
    assert outcome.reasons[0].startswith(f"{folder}/data.csv.gz: ")
    assert message in outcome.reasons[0]
    assert _count(central, "SELECT count(*) AS n FROM observations") == 0


def test_cosore_gzip_bomb_is_refused_at_the_limit(central, reference_data, tmp_path, monkeypatch):
    from chamberd.network_sync import importers

    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    data = gzip.decompress((folder / "data.csv.gz").read_bytes())
    _gzip_members(folder, gzip.compress(data + b"1,2,3\n" * 2_000_000))  # 12 MB from 30 kB
    monkeypatch.setattr(importers, "COSORE_MAX_BYTES", 1_000_000)
    outcome = import_paths(central, [folder], site_id="Y", system_id="a", fmt="cosore").files[0]
    assert outcome.status == "rejected"
    assert "decompresses to more than 1,000,000 bytes" in outcome.reasons[0]


@pytest.mark.parametrize("member", ["DESCRIPTION.txt", "PORTS.txt"])
def test_cosore_metadata_not_utf8(central, reference_data, tmp_path, member):
    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    raw = (folder / member).read_bytes()
    (folder / member).write_bytes(raw.replace(b"# ", b"# \xe9", 1))
    outcome = import_paths(central, [folder], site_id="Y", system_id="a", fmt="cosore").files[0]
    assert outcome.status == "rejected"
    assert outcome.reasons[0] == (
        f"{folder / member}, line 1: byte 0xe9 is not UTF-8 text; save the file as UTF-8"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda line: "9" * 5000 + line[1:], "CSR_PORT '99999999"),
        (lambda line: line.replace("+09:00", "+99:00", 1), "is not an ISO 8601 time"),
        (
            lambda line: line.replace("2012-09-28T15:00:00+09:00", "0001-01-01T00:00:00+09:00"),
            "outside the calendar",
        ),
        (lambda line: line + ",extra", "7 cells, the header names 6"),
    ],
)
def test_cosore_bad_cells(central, reference_data, tmp_path, edit, message):
    folder = _small_cosore(reference_data, tmp_path, "d20200212_ATAKA", 50)
    lines = gzip.decompress((folder / "data.csv.gz").read_bytes()).decode().splitlines()
    lines[3] = edit(lines[3])
    _gzip_members(folder, gzip.compress(("\n".join(lines) + "\n").encode()))
    outcome = import_paths(central, [folder], site_id="Y", system_id="a", fmt="cosore").files[0]
    assert outcome.status == "rejected"
    assert "line 4: " in outcome.reasons[0] and message in outcome.reasons[0]
    assert len(outcome.reasons[0]) < 600
