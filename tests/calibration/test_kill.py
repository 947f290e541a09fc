"""kill -9 of ``chamberd calibrate run`` in the middle of a blank test (the lid closed):
the record is left running with a dead pid; the daemon notices, opens the lids, marks the
record incomplete and releases the lock; nothing of the run is applied."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time

from calsite import START

from chamberd.calibration.records import CalibrationRecords
from chamberd.controller.app import build_site
from chamberd.controller.config import to_toml
from chamberd.controller.store import SiteStore


def _wait_for(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s  # noqa: TID251 - real time: a subprocess runs
    while time.monotonic() < end:  # noqa: TID251
        if predicate():
            return True
        time.sleep(0.05)  # noqa: TID251
    return predicate()


def test_kill_dash_nine_during_a_procedure(make_sim_site, tmp_path):
    # 04:02: the daemon's next round is at 04:30, so it is idle, checking every 10 s
    site = make_sim_site(speed=20.0, start=START + dt.timedelta(minutes=2))
    daemon_site = build_site(site.cfg, clock=site.clock)
    daemon = daemon_site.daemon
    daemon.startup()
    thread = threading.Thread(
        target=daemon.run, kwargs={"until": site.clock.now() + dt.timedelta(minutes=40)}
    )
    thread.start()
    try:
        _kill_and_recover(site, tmp_path)
    finally:
        daemon.stop_event.set()
        thread.join(30.0)
        daemon.shutdown("end of test")
        daemon_site.close()


def _kill_and_recover(site, tmp_path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site.cfg), encoding="utf-8")
    answers = tmp_path / "answers.toml"
    answers.write_text('operator = "Trainee Four"\nbreath_test = true\n', encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "chamberd.controller.cli",
        "calibrate",
        "run",
        "blank",
        "--config",
        str(config),
        "--chamber",
        "C1",
        "--answers",
        str(answers),
        "--speed",
        str(site.clock.speed),
        "--timeline",
        site.clock.timeline,
    ]
    mark = len(site.sim.commands)
    log = (tmp_path / "calibrate.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        closed = _wait_for(
            lambda: any(k == "lid" and c == "C1" and v for _, k, c, v in site.sim.commands[mark:]),
            60.0,
        )
        assert closed, (tmp_path / "calibrate.log").read_text()
        time.sleep(0.5)  # noqa: TID251 - well inside the closure
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    killed_at = site.clock.now()
    # the daemon, running, notices within its idle check (10 s): lids open, record incomplete
    assert _wait_for(site.sim.lids_commanded_open, 30.0), "the lid was left closed"
    reopened = site.clock.now()
    assert (reopened - killed_at).total_seconds() < 30.0
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    assert _wait_for(lambda: store.calibration_locks() == [], 10.0)
    store.close()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        (record,) = CalibrationRecords(store).list()
        record = CalibrationRecords(store).get(record["id"])
        assert record["status"] == "incomplete"
        assert f"pid {proc.pid}" in record["reason"]
        assert store.calibration_locks() == []
        outbox = store.query("SELECT calibration_id FROM calibration_outbox")
        assert outbox == [{"calibration_id": record["id"]}]
        events = store.query(
            "SELECT kind, message FROM events WHERE kind = 'calibration_abandoned'"
        )
        assert len(events) == 1 and "C1" in events[0]["message"]
        assert store.query("SELECT * FROM chamber_geometry WHERE source = 'calibration'") == []
    finally:
        store.close()
    assert record["pid"] == proc.pid
