"""Crash safety: the daemon as a subprocess against the simulator, killed with SIGKILL at
random moments (24 times), restarted each time.

Afterwards the database passes ``PRAGMA integrity_check``; no observation is duplicated or
left running; every completed observation has its fluxes and its outbox row; and after each
restart the simulator saw every lid commanded open before any lid was closed again.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import to_toml
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

KILLS = 24
SPEED = 60.0
CYCLE = {
    "prepurge_s": 2,
    "closing_timeout_s": 8,
    "dead_band_s": 5,
    "observation_s": 30,
    "opening_timeout_s": 8,
    "postpurge_s": 2,
    "analyser_silent_s": 6,
}


def _real() -> float:
    return time.monotonic()  # noqa: TID251 - real time: the subprocess runs in real time


def _wait_for(predicate, timeout_s: float) -> bool:
    end = _real() + timeout_s
    while _real() < end:
        if predicate():
            return True
        time.sleep(0.02)  # noqa: TID251
    return predicate()


def test_kill_dash_nine_at_random_moments(tmp_path, make_site_cfg, fake_clock):
    cfg = make_site_cfg(
        4,
        1,
        db=tmp_path / "site.db",
        cycle=CYCLE,
        schedule={"interval_min": 5, "misfire_grace_s": 60},
    )
    clock = ScaledClock(speed=SPEED, start=fake_clock.now())
    sim = SimulatedSite(cfg, clock)
    rng = random.Random(20261130)
    with start_hardware(cfg, clock, site=sim) as hardware:
        config = tmp_path / "site.toml"
        config.write_text(to_toml(hardware.daemon_config()), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "chamberd.controller.cli",
            "run",
            str(config),
            "--speed",
            str(SPEED),
            "--timeline",
            clock.timeline,
            "--log-level",
            "WARNING",
        ]
        restarts = []
        log = (tmp_path / "daemon.log").open("w")
        try:
            for i in range(KILLS + 1):
                mark = len(sim.commands)
                restarts.append(mark)
                proc = subprocess.Popen(command, stdout=log, stderr=log)
                # every lid commanded open at start-up, before anything else happens
                assert _wait_for(
                    lambda m=mark: (
                        {c for _, k, c, v in sim.commands[m:] if k == "lid" and not v}
                        >= {"C1", "C2", "C3", "C4"}
                    ),
                    30.0,
                ), f"restart {i}: lids not opened at start-up"
                if i == KILLS:  # the last run stops cleanly
                    time.sleep(3.0)  # noqa: TID251
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(30) == 0
                    break
                # a random moment; now and then a longer run, so observations complete too
                pause = rng.uniform(3.0, 6.0) if i % 4 == 3 else rng.uniform(0.1, 2.0)
                time.sleep(pause)  # noqa: TID251
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                time.sleep(0.2)  # noqa: TID251 - a frame in flight at the kill lands first
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    # after each restart, no lid was closed before all had been commanded open
    for mark in restarts:
        opened: set[str] = set()
        for _, kind, chamber, closed in sim.commands[mark:]:
            if kind != "lid":
                continue
            if closed:
                assert opened >= {"C1", "C2", "C3", "C4"}
                break
            opened.add(chamber)
    assert sim.lids_commanded_open()  # the clean stop left the lids open

    con = sqlite3.connect(tmp_path / "site.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        statuses = dict(con.execute("SELECT status, count(*) FROM observations GROUP BY status"))
        assert "running" not in statuses
        assert statuses.get("done", 0) >= 5, statuses
        assert statuses.get("aborted", 0) >= 1, statuses
        # nothing duplicated: one observation per chamber and round, one row per sample
        dups = con.execute(
            "SELECT chamber, round_id, count(*) FROM observations "
            "GROUP BY chamber, round_id HAVING count(*) > 1"
        ).fetchall()
        assert dups == []
        # every completed observation has its fluxes and its outbox row
        incomplete = con.execute(
            "SELECT o.uuid FROM observations o WHERE o.status = 'done' AND ("
            " NOT EXISTS (SELECT 1 FROM fluxes f WHERE f.observation_uuid = o.uuid"
            "             AND f.selected = 1)"
            " OR NOT EXISTS (SELECT 1 FROM outbox b WHERE b.observation_uuid = o.uuid))"
        ).fetchall()
        assert incomplete == []
        stray = con.execute(
            "SELECT count(*) FROM fluxes f JOIN observations o ON o.uuid = f.observation_uuid "
            "WHERE o.status != 'done'"
        ).fetchone()[0]
        assert stray == 0
        restarted = con.execute(
            "SELECT count(*) FROM observations WHERE status = 'aborted' AND reason = 'restart'"
        ).fetchone()[0]
        assert restarted >= 1
        running = con.execute("SELECT count(*) FROM rounds WHERE status = 'running'")
        assert running.fetchone()[0] == 0
    finally:
        con.close()


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL semantics")
