"""The calibration-csv importer: the documented template, whole files or nothing, errors
naming the file, line and field, and a seeded fuzz of the template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fuzzing import mutants

from chamberd.calibration.corrections import check_events_from_record, correction_series
from chamberd.controller.cli import main
from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths

ROOT = Path(__file__).resolve().parents[2]

_HEAD = (
    "calibration_id,analyser,instrument_serial,procedure,performed_at,operator,gas,"
    "cylinder_id,reference,measured,sd,n,step,adjusted\n"
)
_ONE = "gc-1,SN-GC,gc-standards,2026-07-01T09:00:00+08:00,Li Wei"
_TWO = "gc-1,SN-GC,gc-standards,2026-07-08T09:00:00+08:00,Li Wei"
GOOD = _HEAD + "".join(
    f"{row}\n"
    for row in (
        f"GC-1,{_ONE},co2,STD-380,380.0,383.8,0.8,3,as_found,0",
        f"GC-1,{_ONE},co2,STD-1000,1000.0,1010.0,1.9,3,as_found,0",
        f"GC-1,{_ONE},ch4,STD-380,1985.0,1992.4,6.1,3,as_found,0",
        f"GC-2,{_TWO},co2,STD-380,380.0,387.6,0.8,3,as_found,1",
        f"GC-2,{_TWO},co2,STD-380,380.0,380.4,0.8,3,as_left,1",
    )
)


def _tables(central: Central) -> dict[str, int]:
    return {
        t: central.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("sites", "systems", "calibrations", "calibration_readings", "ingest_log")
    }


def _import(central, path, **kw):
    return import_paths(
        central, [path], site_id="XLG", system_id="manual-gc", fmt="calibration-csv", **kw
    )


@pytest.fixture
def central(tmp_path):
    with Central.connect(f"sqlite:///{tmp_path / 'c.db'}") as c:
        c.migrate()
        yield c


def test_the_template_of_the_docs_imports(tmp_path, central):
    text = (ROOT / "docs" / "import.md").read_text(encoding="utf-8")
    block = text.split("## The calibration template", 1)[1].split("```csv\n", 1)[1]
    path = tmp_path / "doc.csv"
    path.write_text(block.split("```", 1)[0], encoding="utf-8")
    report = _import(central, path)
    assert [f.status for f in report.files] == ["imported"], report.files[0].reasons
    assert _tables(central)["calibration_readings"] == 3


def test_records_readings_and_corrections_from_the_file(tmp_path, central):
    path = tmp_path / "gc.csv"
    path.write_text(GOOD, encoding="utf-8")
    report = _import(central, path)
    (outcome,) = report.files
    assert (outcome.status, outcome.observations, outcome.sent) == ("imported", 2, 2)
    assert _tables(central) == {
        "sites": 1,
        "systems": 1,
        "calibrations": 2,
        "calibration_readings": 5,
        "ingest_log": 1,
    }
    rows = central.query("SELECT * FROM calibrations ORDER BY performed_at")
    assert rows[0]["performed_at"] == "2026-07-01T01:00:00+00:00"
    assert rows[0]["instrument_serial"] == "SN-GC" and rows[0]["operator"] == "Li Wei"
    assert json.loads(rows[0]["cylinder_ids"]) == ["STD-380", "STD-1000"]
    assert rows[1]["adjusted"] == 1 and rows[0]["source"] == "import:gc.csv"
    events = [e for r in rows for e in check_events_from_record(r)]
    co2 = correction_series([e for e in events if e.gas == "co2"])
    # GC-1: two gases, 1 % span error; GC-2: span-only, found 2 % high (the offset carried),
    # adjusted, left 0.1 % high
    assert co2.segments[0].start.gain == pytest.approx(1.01)
    assert co2.segments[0].start.offset_mf == pytest.approx(0.0, abs=1e-9)
    assert co2.segments[1].end.gain == pytest.approx(387.6 / 380.0)
    assert co2.segments[-1].start.gain == pytest.approx(380.4 / 380.0)
    # again: unchanged; a corrected file: revised, never duplicated
    assert _import(central, path).files[0].status == "unchanged"
    path.write_text(GOOD.replace("1010.0", "1011.0"), encoding="utf-8")
    again = _import(central, path).files[0]
    assert (again.status, again.revised, again.unchanged) == ("imported", 1, 1)
    assert _tables(central)["calibrations"] == 2 and _tables(central)["calibration_readings"] == 5


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("1010.0", "abc", r"line 3: measured 'abc' is not a number"),
        ("1010.0", "inf", r"line 3: measured 'inf' is not a finite number"),
        ("ch4,STD-380,1985.0", "ch4,STD-380,-1", r"line 4: reference is negative"),
        (",co2,STD-1000", ",xe,STD-1000", r"line 3: gas 'xe'"),
        ("3,as_found,0\nGC-1", "3,as_found,1\nGC-1", r"line 3: adjusted .* differs from line 2"),
        ("0.8,3,as_left", "0.8,3,before", r"line 6: step 'before'"),
        ("1.9,3,", "1.9,2.5,", r"line 3: n '2.5' is not a whole number"),
        ("09:00:00+08:00,Li Wei,ch4", "09:00:00,Li Wei,ch4", r"line 4: performed_at .* no UTC"),
        ("co2,STD-380,380.0,383.8", "co2,STD-380,380.0,383.8,9", r"line 2: 15 cells"),
        (
            f"as_found,1\nGC-2,{_TWO},co2,STD-380,380.0,380.4,0.8,3,as_left,1",
            f"as_found,0\nGC-2,{_TWO},co2,STD-380,380.0,380.4,0.8,3,as_left,0",
            r"line 6: an as_left reading of calibration 'GC-2'",
        ),
    ],
)
def test_a_bad_row_rejects_the_file_naming_line_and_field(tmp_path, central, old, new, message):
    assert old in GOOD
    path = tmp_path / "bad.csv"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    (outcome,) = _import(central, path).files
    assert outcome.status == "rejected"
    assert str(path) in outcome.reasons[0] and re.search(message, outcome.reasons[0]), outcome
    assert _tables(central)["calibrations"] == 0 and _tables(central)["sites"] == 0


def test_bad_headers_and_units(tmp_path, central):
    cases = {
        "a.csv": (GOOD.replace("measured,", "meas,", 1), "missing column(s) measured"),
        "b.csv": (GOOD.replace(",adjusted\n", ",adjusted,colour\n", 1), "unknown column"),
        "c.csv": (
            "calibration_id,analyser,procedure,performed_at,gas,reference,measured,unit\n"
            "a,li,p,2026-07-01T00:00Z,ch4,2000,2001,ppm\n",
            "line 2: unit 'ppm': ch4 is recorded in nmol/mol",
        ),
        "d.csv": ("calibration_id,analyser,procedure,performed_at,gas,reference,measured\n", "no"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        (outcome,) = _import(central, path).files
        assert outcome.status == "rejected" and message in outcome.reasons[0], outcome.reasons
    assert _tables(central)["calibrations"] == 0


def test_cli_imports_and_reports_records(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    path = tmp_path / "gc.csv"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["central", "init", url]) == 0
    args = ["import", "--target", url, "--site", "XLG", "--system", "gc"]
    assert main([*args, "--format", "calibration-csv", str(path)]) == 0
    assert "2 calibration records: new 2" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD.replace("1010.0", "x"), encoding="utf-8")
    assert main([*args, "--format", "calibration-csv", str(bad)]) == 3
    assert "line 3: measured 'x'" in capsys.readouterr().err


SEED = 11


def test_fuzzed_templates_are_imported_whole_or_rejected_whole(tmp_path, central):
    """Seeded mutants of the template: each ends in an outcome (never an exception); a
    rejected one names its file and leaves every table as it was."""
    statuses = []
    for n, (name, data) in enumerate(mutants(GOOD.encode(), "text", seed=SEED, count=120)):
        path = tmp_path / f"m{n}.csv"
        path.write_bytes(data)
        before = _tables(central)
        (outcome,) = _import(central, path).files
        statuses.append(outcome.status)
        if outcome.status == "rejected":
            assert outcome.reasons and str(path) in outcome.reasons[0], name
            assert _tables(central) == before, name
        else:
            stored = central.query("SELECT count(*) AS n FROM calibrations")[0]["n"]
            assert stored >= 1, name
    assert statuses.count("rejected") > 10 and statuses.count("rejected") < len(statuses)


def test_fuzzed_templates_on_postgresql(tmp_path, postgres_url):
    """A sample of the mutants on PostgreSQL: the same outcome as on SQLite, nothing
    half-written (a value PostgreSQL cannot hold, e.g. a NUL, is refused before writing)."""
    with (
        Central.connect(postgres_url) as pg,
        Central.connect(f"sqlite:///{tmp_path / 's.db'}") as lite,
    ):
        pg.migrate()
        lite.migrate()
        for n, (name, data) in enumerate(mutants(GOOD.encode(), "text", seed=SEED + 1, count=15)):
            path = tmp_path / f"p{n}.csv"
            path.write_bytes(data)
            before = _tables(pg)
            (on_pg,) = _import(pg, path).files
            (on_lite,) = _import(lite, path).files
            assert on_pg.status == on_lite.status, (name, on_pg.reasons, on_lite.reasons)
            if on_pg.status == "rejected":
                assert _tables(pg) == before, name
