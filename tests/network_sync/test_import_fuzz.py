"""Fuzz the importers: seeded mutants of real files of every format, through import_paths.

For each format a real file of ``shared/data`` (read in place; a COSORE data set and the
manual template are built in a temporary folder from shared files) is mutated with
``tests/fuzzing.py`` and imported into a central database (SQLite for every mutant, a
sample on PostgreSQL). Each import must end in a reported outcome, never an exception; a
rejected file's reasons name it, and a rejected file leaves every central table exactly as
it was (nothing half-imported). The command line is run over some mutants of each format:
no traceback on stderr, exit status 0 or 3.

Seeded and bounded: the same mutants every run, about 300 of them; nothing is tolerated
(the readers' own crashes, found here first, were fixed in ``network_sync/formats``).
Set ``CHAMBERD_FUZZ_REPORT=path.json`` to write the outcome counts per format.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import REFERENCE_DATA
from fuzzing import mutants

from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths

SEED = 9
#: case -> (import format, kind of mutation, number of mutants on SQLite, on PostgreSQL)
CASES = {
    "li8100a": ("li8100a", "text", 40, 5),
    "li8100a-salt": ("li8100a", "text", 15, 0),
    "li8200": ("li8200", "json", 35, 5),
    "li8250": ("li8250", "zip", 35, 5),
    "li8250-summary": ("li8250", "text", 15, 0),
    "cosore-data": ("cosore", "gzip", 35, 5),
    "cosore-data-ch4": ("cosore", "gzip", 15, 0),
    "cosore-description": ("cosore", "text", 20, 3),
    "cosore-ports": ("cosore", "text", 20, 3),
    "manual-samples": ("manual-csv", "text", 40, 5),
    "manual-fluxes": ("manual-csv", "text", 20, 3),
}
COSORE_ROWS = 200
#: a mutant still importing after this long is a hang (a guard, not a performance limit)
HANG_S = 300

OUTCOMES: dict[str, Counter] = defaultdict(Counter)


# --- the original files -------------------------------------------------------------------


def _cosore_source(name: str) -> dict[str, bytes]:
    """A COSORE data set cut to its first rows (CC-BY-4.0; built in memory, never stored)."""
    folder = REFERENCE_DATA / "cosore" / name
    lines = gzip.decompress((folder / "data.csv.gz").read_bytes()).splitlines()
    return {
        "DESCRIPTION.txt": (folder / "DESCRIPTION.txt").read_bytes(),
        "PORTS.txt": (folder / "PORTS.txt").read_bytes(),
        "data.csv.gz": gzip.compress(b"\n".join(lines[: COSORE_ROWS + 1]) + b"\n", mtime=0),
    }


def _manual_sources() -> tuple[bytes, bytes]:
    """The manual template built from the fluxible example (6 closures of CO2 at 1 Hz,
    read in place): one row per sample, and one row per closure with its flux."""
    one_hz = REFERENCE_DATA / "one_hz"
    with open(one_hz / "fluxible_co2_conc.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = io.StringIO()
    out.write(
        "chamber,start_time,elapsed_s,co2_umol_mol,air_temperature_degc,pressure_kpa,"
        "area_cm2,volume_cm3\n"
    )
    for row in rows[::5]:  # every fifth second keeps the file small
        start = dt.datetime.fromisoformat(row["start"])
        elapsed = (dt.datetime.fromisoformat(row["datetime"]) - start).total_seconds()
        out.write(
            f"{row['turfID']},{row['start']},{elapsed:g},{row['conc']},{row['temp_air']},"
            "101.3,625,24575\n"
        )
    samples = out.getvalue().encode()
    with open(one_hz / "fluxible_fluxes.csv", newline="") as handle:
        closures = list(csv.DictReader(handle))
    out = io.StringIO()
    out.write("chamber,start_time,co2_flux_umol_m2_s,area_cm2,volume_cm3\n")
    for row in closures:  # mmol m-2 h-1 -> umol m-2 s-1
        out.write(f"{row['turfID']},{row['start']},{float(row['flux']) / 3.6:.6g},625,24575\n")
    return samples, out.getvalue().encode()


@functools.cache
def _original(case: str) -> tuple[str, bytes]:
    """(the file name the mutant replaces, its original bytes)."""
    if case == "li8100a":
        path = REFERENCE_DATA / "li8100a" / "goflux_LI8100.81x"
    elif case == "li8100a-salt":
        path = REFERENCE_DATA / "li8100a" / "SALT_20181005_LT.81x"
    elif case == "li8200":
        path = REFERENCE_DATA / "smartchamber" / "fluxfinder_LI8200-01S.json"
    elif case == "li8250":
        path = REFERENCE_DATA / "li8250" / "82m-0147-20220125000045.82z"
    elif case == "li8250-summary":
        path = REFERENCE_DATA / "li8250" / "82m-0147-20220125000000_dense_summary.csv"
    elif case.startswith("cosore"):
        name = "d20200328_UEYAMA_YAMASHIRO" if case.endswith("ch4") else "d20200212_ATAKA"
        member = {"data": "data.csv.gz", "description": "DESCRIPTION.txt", "ports": "PORTS.txt"}
        part = member[case.split("-")[1]]
        return part, _cosore_source(name)[part]
    else:
        samples, fluxes = _manual_sources()
        return ("manual.csv", samples) if case == "manual-samples" else ("fluxes.csv", fluxes)
    return path.name, path.read_bytes()


@functools.cache
def _mutants(case: str) -> list[tuple[str, bytes]]:
    _fmt, kind, count, _pg = CASES[case]
    return mutants(_original(case)[1], kind, seed=SEED, count=count)


def _write(case: str, data: bytes, folder: Path) -> Path:
    """The mutant where the importer expects it; the path to import."""
    name, _ = _original(case)
    folder.mkdir(parents=True, exist_ok=True)
    if case.startswith("cosore"):
        dataset = folder / ("d20200328_UEYAMA" if case.endswith("ch4") else "d20200212_ATAKA")
        dataset.mkdir()
        source = _cosore_source(
            "d20200328_UEYAMA_YAMASHIRO" if case.endswith("ch4") else "d20200212_ATAKA"
        )
        for member, content in source.items():
            (dataset / member).write_bytes(data if member == name else content)
        return dataset
    if case == "li8250-summary":
        (folder / name).write_bytes(data)
        shutil.copy(REFERENCE_DATA / "li8250" / "82m-0147-20220125000045.82z", folder)
        return folder / "82m-0147-20220125000045.82z"
    if case == "li8250":
        shutil.copy(REFERENCE_DATA / "li8250" / "82m-0147-20220125000000_dense_summary.csv", folder)
    (folder / name).write_bytes(data)
    return folder / name


# --- the central databases ----------------------------------------------------------------

TABLES = ("sites", "systems", "observations", "fluxes", "samples", "conflicts", "ingest_log")


def _counts(central: Central) -> dict[str, int]:
    return {t: central.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in TABLES}


@pytest.fixture(scope="module")
def sqlite_central(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-central") / "central.db"
    with Central.connect(f"sqlite:///{path}") as central:
        central.migrate()
        yield central


@pytest.fixture(scope="module")
def postgres_central(postgres_admin_url):
    import uuid

    import psycopg

    name = f"chamberd_fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with Central.connect(f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}") as central:
            central.migrate()
            yield central
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=30) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", autouse=True)
def _outcome_table():
    yield
    if not OUTCOMES:
        return
    lines = ["", "importer fuzz outcomes (case: mutants, outcome counts):"]
    for case in sorted(OUTCOMES):
        counts = OUTCOMES[case]
        total = sum(counts.values())
        lines.append(f"  {case}: {total} {dict(sorted(counts.items()))}")
    print("\n".join(lines))
    target = os.environ.get("CHAMBERD_FUZZ_REPORT")
    if target:
        Path(target).write_text(json.dumps({k: dict(v) for k, v in OUTCOMES.items()}, indent=1))


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"no outcome after {HANG_S} s")


# --- the tests ----------------------------------------------------------------------------


def _params(backend: str) -> list:
    if REFERENCE_DATA is None:  # the test asks for the fixture: a skip, or a failure in CI
        return [pytest.param(None, None, id="no-reference-data")]
    out = []
    for case, (_fmt, _kind, count, pg_count) in CASES.items():
        n = count if backend == "sqlite" else pg_count
        # on PostgreSQL: every k-th mutant, so that the sample spans the operators
        step = 1 if backend == "sqlite" else max(count // max(pg_count, 1), 1)
        for index in list(range(0, count, step))[:n]:
            out.append(pytest.param(case, index, id=f"{case}-{index}"))
    return out


def _import_mutant(central: Central, backend: str, case: str, index: int, tmp_path: Path):
    fmt = CASES[case][0]
    name, data = _mutants(case)[index]
    path = _write(case, data, tmp_path)
    before = _counts(central)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        report = import_paths(
            central,
            [path],
            site_id=f"fuzz-{case}",
            system_id=fmt,
            fmt=fmt,
            time_zone="Asia/Tokyo",
        )
    except _Hang:
        OUTCOMES[f"{backend}:{case}"]["hang"] += 1
        raise
    except BaseException:
        OUTCOMES[f"{backend}:{case}"]["traceback"] += 1
        raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert len(report.files) == 1, name
    outcome = report.files[0]
    after = _counts(central)
    if outcome.status == "rejected":
        if after != before:
            OUTCOMES[f"{backend}:{case}"]["partial"] += 1
        assert after == before, f"{name}: a rejected file changed the central tables"
        assert outcome.reasons, name
        for reason in outcome.reasons:
            assert path.name in reason, f"{name}: the reason does not name the file: {reason}"
    else:
        assert after["ingest_log"] == before["ingest_log"] + 1, name
        assert outcome.status in ("imported", "unchanged"), name
    OUTCOMES[f"{backend}:{case}"][outcome.status] += 1


@pytest.mark.parametrize(("case", "index"), _params("sqlite"))
def test_mutant_sqlite(sqlite_central, case, index, tmp_path, reference_data):
    _import_mutant(sqlite_central, "sqlite", case, index, tmp_path)


@pytest.mark.parametrize(("case", "index"), _params("postgresql"))
def test_mutant_postgresql(postgres_central, case, index, tmp_path, reference_data):
    _import_mutant(postgres_central, "postgresql", case, index, tmp_path)


CLI_MUTANTS = 6  # per case


@pytest.mark.usefixtures("reference_data")
@pytest.mark.parametrize("case", list(CASES))
def test_cli_prints_no_traceback(case, tmp_path):
    fmt = CASES[case][0]
    paths = []
    for index, (_name, data) in enumerate(_mutants(case)[:CLI_MUTANTS]):
        paths.append(str(_write(case, data, tmp_path / str(index))))
    url = f"sqlite:///{tmp_path / 'central.db'}"
    run = [sys.executable, "-m", "chamberd.controller.cli"]
    init = subprocess.run([*run, "central", "init", url], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    done = subprocess.run(
        [
            *run,
            *("import", "--target", url, "--site", "S", "--system", fmt, "--format", fmt),
            *("--time-zone", "Asia/Tokyo", *paths),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (0, 3), done.stderr[-3000:]
    assert "file(s)" in done.stdout
