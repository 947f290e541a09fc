"""Finished calibration records reach the central database exactly once (SQLite and
PostgreSQL): through the site's calibration outbox, idempotent on replay, after a crash
between the central commit and the outbox acknowledgement, and confined to their site."""

from __future__ import annotations

import json
import sqlite3
import uuid as uuidlib

import pytest

from chamberd.controller.clock import FakeClock
from chamberd.controller.config import load_config
from chamberd.controller.errors import DataFileError, SyncError
from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import Central, add_site_role
from chamberd.network_sync.sync import (
    upload_calibrations,
    upload_site,
    upsert_calibrations,
)

#: the site store's calibration tables as the issue-11 plan gives them (created here only
#: where the store does not have them yet)
PLANNED_SITE_TABLES = [
    ("calibrations", "chamber", "TEXT"),
    ("calibrations", "supervisor", "TEXT"),
    ("calibrations", "started_at", "TEXT"),
    ("calibrations", "ended_at", "TEXT"),
    ("calibrations", "status", "TEXT"),
    ("calibrations", "result", "TEXT"),
    ("calibrations", "reason", "TEXT"),
    ("calibrations", "instrument_model", "TEXT"),
    ("calibrations", "instrument_serial", "TEXT"),
    ("calibrations", "instrument_firmware", "TEXT"),
    ("calibrations", "cylinder_ids", "TEXT"),
    ("calibrations", "as_found", "TEXT"),
    ("calibrations", "as_left", "TEXT"),
    ("calibrations", "adjusted", "INTEGER"),
    ("calibrations", "stability", "TEXT"),
    ("calibrations", "software_version", "TEXT"),
    ("calibrations", "pid", "INTEGER"),
]


def ensure_calibration_tables(db) -> None:
    with sqlite3.connect(db) as con:
        have = {r[1] for r in con.execute("PRAGMA table_info(calibrations)")}
        for table, column, kind in PLANNED_SITE_TABLES:
            if column not in have:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        con.execute(
            "CREATE TABLE IF NOT EXISTS calibration_readings (calibration_id TEXT NOT NULL, "
            "seq INTEGER NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL, cylinder_id TEXT, "
            "gas TEXT, reference_value REAL, unit TEXT, mean REAL, sd REAL, n INTEGER, "
            "drift_per_min REAL, stable_s REAL, stable INTEGER, data TEXT, "
            "PRIMARY KEY (calibration_id, seq))"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS calibration_outbox (id INTEGER PRIMARY KEY "
            "AUTOINCREMENT, calibration_id TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)"
        )


def add_record(db, *, status="pass", gain=1.05, at="2026-07-01T10:00:00.000000Z", outbox=True):
    """A finished zero/span check record with two readings (and its outbox row)."""
    cid = str(uuidlib.uuid4())
    data = {
        "checks": [
            {"gas": "co2", "at": at, "reference": 0.0, "measured": 0.0, "cylinder_id": "Z1"},
            {"gas": "co2", "at": at, "reference": 400.0, "measured": 400 * gain,
             "cylinder_id": "S1"},
        ],
        "adjusted": False,
    }  # fmt: skip
    with sqlite3.connect(db) as con:
        con.execute(
            "INSERT INTO calibrations (id, analyser, procedure, performed_at, operator, data, "
            "valid_from, started_at, ended_at, status, result, instrument_model, "
            "instrument_serial, instrument_firmware, cylinder_ids, adjusted, software_version) "
            "VALUES (?, 'li850', 'zero-span-check', ?, 'trainee', ?, ?, ?, ?, ?, "
            "'result text', 'LI-850', 'SN-1', '1.0.0', '[\"Z1\", \"S1\"]', 0, 'test')",
            (cid, at, json.dumps(data), at, at, at, status),
        )
        for seq, (cyl, ref) in enumerate((("Z1", 0.0), ("S1", 400.0))):
            con.execute(
                "INSERT INTO calibration_readings (calibration_id, seq, step, at, cylinder_id, "
                "gas, reference_value, unit, mean, sd, n, drift_per_min, stable_s, stable) "
                "VALUES (?, ?, 'span', ?, ?, 'co2', ?, 'umol/mol', ?, 0.2, 30, 0.01, 30, 1)",
                (cid, seq, at, cyl, ref, ref * gain),
            )
        if outbox:
            con.execute(
                "INSERT INTO calibration_outbox (calibration_id, created_at) VALUES (?, ?)",
                (cid, at),
            )
    return cid


@pytest.fixture
def site(measured_site, site_copy, tmp_path):
    config, db = site_copy(measured_site, tmp_path)
    ensure_calibration_tables(db)
    return config, db


def _counts(central: Central) -> tuple[int, int]:
    return (
        central.query("SELECT count(*) AS n FROM calibrations")[0]["n"],
        central.query("SELECT count(*) AS n FROM calibration_readings")[0]["n"],
    )


def test_records_reach_central_exactly_once(site, central_url):
    config, db = site
    cfg = load_config(config)
    ids = [add_record(db) for _ in range(3)]
    clock = FakeClock()
    with Central.connect(central_url) as central:
        central.migrate()
        store = SiteStore(db, site_id=cfg.site.id)
        try:
            summary = upload_site(store, central, cfg, clock=clock)
            assert summary.calibrations["sent"] == 3 and summary.calibrations["remaining"] == 0
            assert _counts(central) == (3, 6)
            row = central.query("SELECT * FROM calibrations WHERE id = ?", (ids[0],))[0]
            assert row["site_id"] == cfg.site.id and row["instrument_serial"] == "SN-1"
            assert row["status"] == "pass" and row["revision"] == 1
            assert json.loads(row["data"])["checks"][1]["measured"] == pytest.approx(420.0)
            # a replay (the outbox rows written again, as after a crash before the site's
            # acknowledgement): nothing new centrally
            with sqlite3.connect(db) as con:
                con.executemany(
                    "INSERT INTO calibration_outbox (calibration_id, created_at) VALUES (?, 't')",
                    [(i,) for i in ids],
                )
            again = upload_calibrations(store, central, site_id=cfg.site.id, clock=clock)
            assert (again.sent, again.unchanged, again.revised) == (0, 3, 0)
            assert _counts(central) == (3, 6)
            # a record sent again with new content is revised, not duplicated
            with sqlite3.connect(db) as con:
                con.execute("UPDATE calibrations SET reason = 'note' WHERE id = ?", (ids[1],))
                con.execute(
                    "INSERT INTO calibration_outbox (calibration_id, created_at) VALUES (?, 't')",
                    (ids[1],),
                )
            revised = upload_calibrations(store, central, site_id=cfg.site.id, clock=clock)
            assert revised.revised == 1 and _counts(central) == (3, 6)
            row = central.query("SELECT * FROM calibrations WHERE id = ?", (ids[1],))[0]
            assert row["reason"] == "note" and row["revision"] == 2
            logs = central.query("SELECT * FROM ingest_log WHERE kind = 'calibrations'")
            assert [r["sent"] for r in logs] == [3, 0, 0]
        finally:
            store.close()


def test_a_running_record_waits_and_a_dry_run_sends_nothing(site, central_url):
    config, db = site
    cfg = load_config(config)
    running = add_record(db, status="running")
    done = add_record(db)
    with Central.connect(central_url) as central:
        central.migrate()
        store = SiteStore(db, site_id=cfg.site.id)
        try:
            upload_site(store, central, cfg, clock=FakeClock(), dry_run=True)
            assert _counts(central) == (0, 0)
            summary = upload_calibrations(store, central, site_id=cfg.site.id)
            assert summary.sent == 1 and summary.remaining == 1
            stored = {r["id"] for r in central.query("SELECT id FROM calibrations")}
            assert stored == {done} and running not in stored
        finally:
            store.close()


def test_a_central_database_before_version_5_leaves_the_outbox_waiting(site, tmp_path):
    config, db = site
    cfg = load_config(config)
    add_record(db)
    with Central.connect(f"sqlite:///{tmp_path / 'old.db'}") as central:
        central.migrate(upto=4)
        store = SiteStore(db, site_id=cfg.site.id)
        try:
            summary = upload_calibrations(store, central, site_id=cfg.site.id)
            assert summary.sent == 0 and summary.remaining == 1
            central.migrate()
            assert upload_site(store, central, cfg, clock=FakeClock()).calibrations["sent"] == 1
        finally:
            store.close()


def test_a_bad_value_is_refused_whole(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    good = {"id": "a", "analyser": "li", "procedure": "p", "performed_at": "2026-07-01T00:00Z"}
    bad = {**good, "id": "b", "readings": [{"seq": 0, "mean": "x"}]}
    with Central.connect(url) as central:
        central.migrate()
        central.execute(
            "INSERT INTO sites (site_id, time_zone, created_at) VALUES ('S', 'UTC', 't')"
        )
        with (
            pytest.raises(DataFileError, match=r"calibration b: reading 0: mean 'x'"),
            central.transaction(),
        ):
            upsert_calibrations(central, [good, bad], site_id="S", now="t")
        assert _counts(central) == (0, 0)
        with central.transaction():
            upsert_calibrations(central, [good], site_id="S", now="t")
        central.execute(
            "INSERT INTO sites (site_id, time_zone, created_at) VALUES ('T', 'UTC', 't')"
        )
        with pytest.raises(SyncError, match="another site's record"), central.transaction():
            upsert_calibrations(central, [{**good, "data": "x"}], site_id="T", now="t")


def test_a_site_role_writes_only_its_own_calibration_readings(postgres_url):
    """Row-level security of the new child table: site B's role cannot hang readings onto
    site A's record, nor read A's."""
    import psycopg

    with Central.connect(postgres_url) as central:
        central.migrate()
        for key in ("A", "B"):
            central.execute(
                "INSERT INTO sites (site_id, time_zone, created_at) VALUES (?, 'UTC', now())",
                (key,),
            )
        with central.transaction():
            upsert_calibrations(
                central,
                [
                    {
                        "id": "cal-A",
                        "analyser": "li",
                        "procedure": "p",
                        "performed_at": "2026-07-01T00:00Z",
                        "readings": [{"seq": 0, "mean": 1.0}],
                    }
                ],
                site_id="A",
                now="2026-07-01T00:00Z",
            )
        role, password = add_site_role(central, "B")
    base, db = postgres_url.rsplit("/", 1)
    url = f"postgresql://{role}:{password}@{base.split('@', 1)[1]}/{db}"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM calibration_readings").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM calibrations").fetchone()[0] == 0
        for sql in (
            "INSERT INTO calibration_readings (site_id, calibration_id, seq) "
            "VALUES ('B', 'cal-A', 5)",
            "INSERT INTO calibration_readings (site_id, calibration_id, seq) "
            "VALUES ('A', 'cal-A', 5)",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(sql)
        assert conn.execute("DELETE FROM calibration_readings").rowcount == 0
    with Central.connect(postgres_url) as central:
        assert _counts(central) == (1, 1)
