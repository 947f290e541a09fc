"""Device health in ``chamberd status`` over the real wire (LI-850 XML over TCP, Modbus RTU
frames over TCP, against the simulator): a relay board that refuses (a Modbus exception
response) is a FAULT, never "ok" beside the critical event; an analyser that is gone is a
FAULT with a short message naming it; both are ok again after they recover. Health comes
from each device's own last good reading and last error.

Site: C1, C2 on irga1 and relays1 (device 10); C3, C4 on irga2 and relays2 (device 11), on
a clock 40 times faster than real time.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import to_toml
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

CYCLE = {
    "prepurge_s": 2,
    "closing_timeout_s": 8,
    "dead_band_s": 5,
    "observation_s": 30,
    "opening_timeout_s": 8,
    "postpurge_s": 2,
    # 12 s of site time is 0.3 s of real time at 40x: a loaded machine's reopening of an idle
    # port (the first round) fits in it, 6 s (0.15 s) did not
    "analyser_silent_s": 12,
    "max_failures": 3,
    "retry_after_min": 120,
}
SPEED = 40.0


class Rig:
    def __init__(self, cfg, tmp_path, start):
        self.clock = ScaledClock(speed=SPEED, start=start)
        self.sim = SimulatedSite(cfg, self.clock)
        self.hardware = start_hardware(cfg, self.clock, site=self.sim)
        self.cfg = self.hardware.daemon_config()
        self.config = tmp_path / "site.toml"
        self.config.write_text(to_toml(self.cfg), encoding="utf-8")
        self.site = build_site(self.cfg, clock=self.clock)
        self.daemon = self.site.daemon
        self.db = tmp_path / "site.db"
        self.daemon.startup()

    def clock_args(self):
        return ["--speed", str(SPEED), "--timeline", self.clock.timeline]

    def round(self):
        return self.daemon.run_round(self.clock.now())

    def events(self, kind):
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM events WHERE kind = ?", (kind,))]

    def status(self, capsys):
        capsys.readouterr()
        argv = ["status", str(self.config), "--json", *self.clock_args()]
        assert main(argv) == 0
        status = json.loads(capsys.readouterr().out)
        return status, {h["component"]: h for h in status["health"]}

    def table(self, capsys):
        capsys.readouterr()
        assert main(["status", str(self.config), *self.clock_args()]) == 0
        return capsys.readouterr().out

    def close(self):
        self.daemon.shutdown("end of test")
        self.site.close()
        self.hardware.stop()


@pytest.fixture
def rig(tmp_path, make_site_cfg, fake_clock):
    cfg = make_site_cfg(4, 2, db=tmp_path / "site.db", cycle=CYCLE, modbus_timeout_s=0.3)
    r = Rig(cfg, tmp_path, fake_clock.now())
    yield r
    r.close()


def test_a_refusing_relay_board_is_a_fault_then_ok_again(rig, capsys):
    rig.sim.faults.modbus_exception[10] = 4  # SLAVE_FAILURE on relays1
    rig.round()
    errors = rig.events("hardware_error")
    assert errors and "exception response (code 4)" in errors[0]["message"]
    status, health = rig.status(capsys)
    relays = health["modbus:relays1"]
    assert relays["ok"] is False and relays["refused"] is True
    assert "exception response (code 4)" in relays["last_error"]
    assert "last frames" not in relays["last_error"] and len(relays["last_error"]) <= 200
    assert health["modbus:relays2"]["ok"] is True
    assert status["daemon"]["running"] and status["daemon"]["state"] == "idle"
    assert not rig.events("modbus_line_down")  # it answers: not a line outage
    table = rig.table(capsys)
    assert any(line.split()[:2] == ["modbus:relays1", "REFUSED"] for line in table.splitlines()), (
        table
    )

    rig.sim.faults.modbus_exception.clear()
    rig.round()
    _, health = rig.status(capsys)
    assert health["modbus:relays1"]["ok"] is True and health["modbus:relays1"]["refused"] is False
    assert health["modbus:relays1"]["last_good_at"] > errors[0]["at"]
    assert len(rig.events("modbus_device_restored")) == 1


def test_an_analyser_that_is_gone_is_a_fault_with_a_short_message(rig, capsys, caplog):
    caplog.set_level(logging.INFO, logger="chamberd")
    rig.round()  # all well: every device has a good reading
    _, health = rig.status(capsys)
    good = health["analyser:irga1"]["last_good_at"]
    assert health["analyser:irga1"]["ok"] is True

    server = rig.hardware.analysers["irga1"]
    server.power_off()  # the serial device server is gone: connections refused
    rig.round()
    status, health = rig.status(capsys)
    gone = health["analyser:irga1"]
    assert gone["ok"] is False and gone["last_good_at"] == good  # its own last reading
    assert gone["last_error"].startswith("analyser irga1 (socket://127.0.0.1:")
    assert "last frames" not in gone["last_error"] and len(gone["last_error"]) <= 200
    assert "not available for writing" not in json.dumps(status)
    assert health["analyser:irga2"]["ok"] is True  # the other group measured
    assert health["modbus:relays1"]["ok"] is True  # not touched by the analyser's fault
    faults = [r.getMessage() for r in caplog.records if "irga1" in r.getMessage()]
    assert faults and all(len(m) < 400 and "last frames" not in m for m in faults), faults

    server.power_on()
    rig.clock.sleep(10)  # the device server boots
    rig.round()
    _, health = rig.status(capsys)
    assert health["analyser:irga1"]["ok"] is True
    assert health["analyser:irga1"]["last_good_at"] > good
    assert rig.events("analyser_restored")
    print("\n".join(faults))
