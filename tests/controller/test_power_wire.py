"""Power relays over the real wire: an LI-850 on a relay (a Modbus coil of the simulated
relay board, RTU frames over TCP) is switched on before its group's round, warmed up, set
up, measured, and switched off afterwards; the simulator records the coil's switchings."""

from __future__ import annotations

import datetime as dt
import sqlite3

from chamberd.controller.app import build_site
from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import parse_config
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

from .conftest import site_dict

START = dt.datetime(2026, 7, 1, 4, 0, 0, tzinfo=dt.UTC)
CYCLE = {
    "prepurge_s": 2,
    "closing_timeout_s": 8,
    "dead_band_s": 5,
    "observation_s": 30,
    "opening_timeout_s": 8,
    "postpurge_s": 2,
    "analyser_silent_s": 6,
}


def test_relay_on_warmed_up_measured_off(tmp_path):
    data = site_dict(2, 1, db=tmp_path / "site.db", cycle=CYCLE)
    data["analysers"][0].update(power={"device": "relays1", "coil": 7}, power_w=1.5, warmup_s=20.0)
    cfg = parse_config(data, source="power wire test")
    clock = ScaledClock(speed=40.0, start=START)
    sim = SimulatedSite(cfg, clock)
    with start_hardware(cfg, clock, site=sim) as hardware:
        site = build_site(hardware.daemon_config(), clock=clock)
        try:
            site.daemon.startup()
            began = clock.monotonic()
            result = site.daemon.run_round(clock.now())
        finally:
            site.daemon.shutdown("end of the test")
            site.close()
    assert [o.status for o in result.outcomes] == ["done", "done"]
    switched = sim.analyser_power["irga1"]
    assert [on for _, on in switched] == [True, False]
    on_at = switched[0][0]
    with sqlite3.connect(tmp_path / "site.db") as con:
        first = con.execute("SELECT min(prepurge_at) FROM observations").fetchone()[0]
    prepurge = (dt.datetime.fromisoformat(first) - START).total_seconds()
    assert on_at >= began - 1
    # the clock's monotonic and wall time both start at START: the warm-up came first
    assert 20.0 - 1 <= prepurge - on_at <= 60
