"""The site store's calibration tables: records, readings, outbox, locks, cylinders."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys

import pytest

from chamberd.calibration.cylinders import Cylinders
from chamberd.calibration.records import CalibrationRecords
from chamberd.controller.clock import FakeClock
from chamberd.controller.errors import ConfigError
from chamberd.controller.store import SCHEMA_VERSION, SiteStore

T0 = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)

_V1_CALIBRATIONS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1'), ('site', 'S');
CREATE TABLE chamber_geometry (
    chamber TEXT NOT NULL, since TEXT NOT NULL,
    area_cm2 REAL NOT NULL, volume_cm3 REAL NOT NULL, offset_cm REAL NOT NULL,
    PRIMARY KEY (chamber, since)
);
INSERT INTO chamber_geometry VALUES ('C1', '2026-01-01', 317.8, 5000.0, 2.0);
CREATE TABLE calibrations (
    id TEXT PRIMARY KEY, analyser TEXT NOT NULL, procedure TEXT NOT NULL,
    performed_at TEXT NOT NULL, operator TEXT, data TEXT, valid_from TEXT NOT NULL
);
INSERT INTO calibrations VALUES ('old-1', 'irga', 'span', '2025-01-01T00:00:00.000000Z',
    'ann', '{}', '2025-01-01T00:00:00.000000Z');
"""


def test_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_V1_CALIBRATIONS)
    conn.close()
    store = SiteStore(path, site_id="S")
    try:
        meta = dict(store.rows("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION) == "2"
        columns = {r["name"] for r in store.query("PRAGMA table_info(calibrations)")}
        assert {"status", "as_found", "as_left", "pid", "cylinder_ids"} <= columns
        old = CalibrationRecords(store).get("old-1")
        assert old["operator"] == "ann" and old["status"] is None  # kept as it was
        assert store.geometry_in_force("C1", T0)["volume_cm3"] == 5000.0
    finally:
        store.close()
    # opened again: nothing more to do, nothing lost
    store = SiteStore(path, site_id="S")
    assert len(store.query("SELECT * FROM calibrations")) == 1
    store.close()


@pytest.fixture
def store(tmp_path):
    s = SiteStore(tmp_path / "site.db", site_id="S")
    yield s
    s.close()


def test_record_lifecycle_outbox_in_the_same_transaction(store):
    records = CalibrationRecords(store)
    rid = records.begin(
        procedure="zero-span-check",
        started_at=T0,
        operator="Li Wei",
        supervisor="",
        analyser="irga",
        instrument={"model": "LI-850", "serial": "AB-1", "firmware": "1.0"},
        cylinder_ids=["Z1", "S1"],
    )
    records.add_reading(rid, step="zero", at=T0, cylinder_id="Z1", gas="co2", mean=0.4, n=30)
    records.add_reading(rid, step="span", at=T0, cylinder_id="S1", gas="co2", mean=405.0, n=30)
    assert store.query("SELECT * FROM calibration_outbox") == []
    assert records.latest_in_force("irga", T0 + dt.timedelta(hours=1)) is None
    checks = [{"gas": "co2", "at": "x", "reference": 400.0, "measured": 405.0, "cylinder_id": "S1"}]
    end = T0 + dt.timedelta(minutes=20)
    records.finish(rid, "fail", at=end, result="span 1.25 % off", data={"checks": checks})
    record = records.get(rid[:8])
    assert record["status"] == "fail" and record["supervisor"] is None
    assert [r["cylinder_id"] for r in record["readings"]] == ["Z1", "S1"]
    assert record["data"]["checks"][0]["measured"] == 405.0
    assert [r["calibration_id"] for r in store.query("SELECT * FROM calibration_outbox")] == [rid]
    assert records.latest_in_force("irga", end + dt.timedelta(seconds=1)) == rid
    assert records.latest_in_force("irga", end - dt.timedelta(seconds=1)) is None
    with pytest.raises(ConfigError):  # a finished record is never changed
        records.finish(rid, "pass", at=end)
    assert not records.mark_incomplete(rid, "late", at=end)


def test_locks_and_stale_records(store):
    records = CalibrationRecords(store)
    clock = FakeClock(start=T0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rid = records.begin(procedure="blank", started_at=T0, operator="x", pid=dead.pid)
    assert store.take_calibration_locks(["chamber:C1"], rid, dead.pid, T0) == []
    other = records.begin(procedure="blank", started_at=T0, operator="y")
    held = store.take_calibration_locks(["chamber:C1", "chamber:C2"], other, 1, T0)
    assert [h["scope"] for h in held] == ["chamber:C1"]
    assert [lock["scope"] for lock in store.stale_calibration_locks()] == ["chamber:C1"]
    made_safe = []
    assert records.recover_stale(clock, safe=made_safe.append) == [rid]
    assert made_safe == [["chamber:C1"]]
    assert store.calibration_locks() == []
    assert records.get(rid)["status"] == "incomplete"
    assert records.get(other)["status"] == "running"  # this process is alive
    outbox = [r["calibration_id"] for r in store.query("SELECT * FROM calibration_outbox")]
    assert outbox == [rid]


def test_cylinders_registry(store):
    cylinders = Cylinders(store)
    cylinders.add(
        cylinder_id="CC1",
        gas="co2",
        value=401.3,
        uncertainty=0.2,
        scale="WMO X2019",
        certificate_date="2026-01-10",
        expires_on="2028-01-10",
        entered_by="Li Wei",
        at=T0,
    )
    with pytest.raises(ConfigError, match="already registered"):
        cylinders.add(
            cylinder_id="CC1", gas="co2", value=1, expires_on="2028-01-01", entered_by="x", at=T0
        )
    with pytest.raises(ConfigError) as bad:
        cylinders.add(
            cylinder_id="bad id", gas="xe", value=-1, expires_on="soon", entered_by="", at=T0
        )
    for part in ("id 'bad id'", "gas 'xe'", "expires_on", "entered_by"):
        assert part in str(bad.value)
    assert cylinders.usable("CC1", on=dt.date(2028, 1, 10)).value == 401.3
    with pytest.raises(ConfigError, match="expired on 2028-01-10"):
        cylinders.usable("CC1", on=dt.date(2028, 1, 11))
    cylinders.retire("CC1", by="Li Wei", at=T0)
    assert cylinders.list() == []
    assert [c.id for c in cylinders.list(include_retired=True)] == ["CC1"]
    with pytest.raises(ConfigError, match="retired"):
        cylinders.usable("CC1", on=dt.date(2027, 1, 1))


def test_status_shows_a_calibration_in_progress(tmp_path):
    from calsite import site_config

    from chamberd.controller.status import format_status, site_status

    cfg = site_config(tmp_path / "site.db")
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    try:
        records = CalibrationRecords(store)
        rid = records.begin(procedure="zero-span-check", started_at=T0, operator="Li Wei")
        store.take_calibration_locks(["analyser:irga"], rid, __import__("os").getpid(), T0)
    finally:
        store.close()
    store = SiteStore.open_readonly(cfg.storage.path)
    try:
        status = site_status(cfg, store, T0)
    finally:
        store.close()
    (cal,) = status["calibrations_in_progress"]
    assert cal["scope"] == "analyser:irga" and cal["operator"] == "Li Wei"
    assert cal["process_alive"] is True
    assert "calibration in progress: analyser:irga (zero-span-check by Li Wei" in format_status(
        status
    )
