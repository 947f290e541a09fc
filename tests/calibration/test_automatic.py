"""The scheduled zero/span check: when it is due, and one check over the real wire (the
simulator's LI-850 XML on 127.0.0.1 and the manifold's Modbus coils) recorded like a manual
check; a calibration holding the analyser skips it; a missing cylinder ends it incomplete
with the manifold closed."""

from __future__ import annotations

import datetime as dt
import doctest
import json
import tomllib
from pathlib import Path

import pytest

from chamberd.calibration import automatic
from chamberd.calibration.automatic import PROCEDURE, check_due_at, run_check
from chamberd.calibration.corrections import check_events_from_record, correction_series
from chamberd.calibration.cylinders import Cylinders
from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import AutomaticCheck, parse_config
from chamberd.controller.hardware import make_actuators, make_analyser
from chamberd.controller.sim import start_hardware
from chamberd.controller.store import SiteStore

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 7, 1, 2, 0, tzinfo=dt.UTC)


def test_docstring_examples():
    assert doctest.testmod(automatic).failed == 0


def test_due_times_follow_the_local_clock_time_and_do_not_creep():
    auto = AutomaticCheck(every_days=3, analyser="irga", zero_slot="zero", at="03:00")
    zone = "Asia/Shanghai"  # UTC+8: 03:00 local is 19:00 UTC the day before
    started = dt.datetime(2026, 6, 30, 18, 0, tzinfo=dt.UTC)  # 02:00 local
    first = check_due_at(auto, last=None, started=started, time_zone=zone)
    assert first == dt.datetime(2026, 6, 30, 19, 0, tzinfo=dt.UTC)
    late = first + dt.timedelta(hours=5, minutes=7)  # ran after a long round
    assert check_due_at(auto, last=late, started=started, time_zone=zone) == first + dt.timedelta(
        days=3
    )
    early = first - dt.timedelta(hours=1)  # a check before 03:00 counts from the day before
    assert check_due_at(auto, last=early, started=started, time_zone=zone) == first + dt.timedelta(
        days=2
    )


@pytest.fixture
def wired(tmp_path):
    """The example site (span 3 % high, a zero offset of 2 umol/mol) served on 127.0.0.1,
    its cylinders registered, the automatic check configured; yields (cfg, hardware, clock)."""
    data = tomllib.loads((ROOT / "controller/examples/sim-site.toml").read_text())
    data["storage"] = {"path": str(tmp_path / "site.db")}
    data["sim"]["span_gain"] = 1.03
    data["sim"]["zero_offset_umol_mol"] = 2.0
    data["calibration"]["automatic"] = {
        "every_days": 7,
        "analyser": "irga",
        "zero_slot": "zero",
        "span_slots": ["span1", "span2"],
        "purge_s": 60,
        "average_s": 20,
    }
    cfg = parse_config(data)
    clock = ScaledClock(speed=20.0, start=START)
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    cylinders = Cylinders(store)
    for cid, value in (("ZERO-N2-01", 0.0), ("SPAN-1000-01", 1000.0)):
        cylinders.add(
            cylinder_id=cid,
            gas="co2",
            value=value,
            expires_on="2030-01-01",
            entered_by="t",
            at=START,
        )
    store.close()
    with start_hardware(cfg, clock) as hardware:
        yield hardware.daemon_config(), hardware, clock


def _drivers(cfg, clock):
    analyser = make_analyser(cfg.analyser("irga"), clock=clock)
    analyser.identify()
    analyser.configure(output_interval_s=cfg.analyser("irga").output_interval_s)
    return analyser, make_actuators(cfg, clock=clock)


def test_a_check_over_the_wire_is_recorded_like_a_manual_one(wired):
    cfg, hardware, clock = wired
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    analyser, actuators = _drivers(cfg, clock)
    try:
        # the second span slot's cylinder is not registered: the check ends incomplete
        rid = run_check(cfg, clock=clock, store=store, analyser=analyser, actuators=actuators)
        record = store.query("SELECT * FROM calibrations WHERE id = ?", (rid,))[0]
        assert record["status"] == "incomplete" and "SPAN-450-01" in record["reason"]
        assert hardware.site.manifold_open == set()
        Cylinders(store).add(
            cylinder_id="SPAN-450-01",
            gas="co2",
            value=450.0,
            expires_on="2030-01-01",
            entered_by="t",
            at=START,
        )
        rid = run_check(cfg, clock=clock, store=store, analyser=analyser, actuators=actuators)
        record = store.query("SELECT * FROM calibrations WHERE id = ?", (rid,))[0]
        readings = store.query(
            "SELECT * FROM calibration_readings WHERE calibration_id = ? ORDER BY seq", (rid,)
        )
        outbox = store.query("SELECT * FROM calibration_outbox WHERE calibration_id = ?", (rid,))
    finally:
        analyser.close()
        actuators.close()
        store.close()
    assert record["procedure"] == PROCEDURE and record["status"] == "fail"  # 3 % > 1 %
    assert record["operator"] == automatic.OPERATOR
    assert json.loads(record["cylinder_ids"]) == ["ZERO-N2-01", "SPAN-1000-01", "SPAN-450-01"]
    assert [r["cylinder_id"] for r in readings] == json.loads(record["cylinder_ids"])
    assert all(r["n"] >= 15 and r["stable"] for r in readings)
    assert len(outbox) == 1
    assert hardware.site.manifold_open == set()  # closed again
    # the record's checks make the correction: the simulator's gain and offset
    (event,) = check_events_from_record(record)
    state = correction_series([event]).segments[0].start
    assert state.gain == pytest.approx(hardware.site.span_gain("irga"), rel=0.002)
    assert state.offset_mf == pytest.approx(hardware.site.zero_offset_umol_mol("irga"), abs=0.5)


def test_a_calibration_holding_the_analyser_skips_the_check(wired):
    cfg, hardware, clock = wired
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    analyser, actuators = _drivers(cfg, clock)
    try:
        assert not store.take_calibration_locks(["analyser:irga"], "manual-1", 1, clock.now())
        got = run_check(cfg, clock=clock, store=store, analyser=analyser, actuators=actuators)
        assert got is None
        assert not store.query("SELECT * FROM calibrations")
        events = store.query("SELECT * FROM events WHERE kind = 'automatic_calibration'")
        assert "manual-1 holds the analyser" in events[-1]["message"]
        assert not hardware.site.manifold_open
    finally:
        analyser.close()
        actuators.close()
        store.close()
