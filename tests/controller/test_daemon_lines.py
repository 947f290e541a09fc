"""Shared parts over the real wire: a Modbus line outage is the line's fault, not each
chamber's; health comes from each device's own last good reading; a serial device server
that goes away and comes back costs no closure.

Site: C1, C2 on analyser irga1 and relay board relays1 (Modbus device 10, RTU over TCP);
C3, C4 on irga2 and relays2 (device 11); the pump on its own relay box (device 30). The
simulator's servers are switched off and on (connections refused, then served again on
the same port), on a clock 40 times faster than real time. A chamber is taken out of
service after 2 failures in a row, so charging a line's outage to its chambers would show
after two rounds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

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
    "analyser_silent_s": 12,  # 0.6 s of real time at 20x: holds under load
    "max_failures": 2,
    "retry_after_min": 120,
}
SPEED = 20.0  # fault timers land where they are meant to on a loaded machine


class Rig:
    def __init__(self, cfg, tmp_path, speed=SPEED):
        self.speed = speed
        self.clock = ScaledClock(speed=speed, start=pytest.START)
        self.sim = SimulatedSite(cfg, self.clock)
        self.hardware = start_hardware(cfg, self.clock, site=self.sim)
        self.cfg = self.hardware.daemon_config()
        self.config = tmp_path / "site.toml"
        self.config.write_text(to_toml(self.cfg), encoding="utf-8")
        self.site = build_site(self.cfg, clock=self.clock)
        self.daemon = self.site.daemon
        self.db = tmp_path / "site.db"
        self.daemon.startup()
        self.rounds = 0

    def round(self):
        self.rounds += 1
        return self.daemon.run_round(self.clock.now())

    def after(self, site_seconds, action):
        timer = threading.Timer(site_seconds / self.speed, action)
        timer.start()
        return timer

    def wait(self, site_seconds):
        time.sleep(site_seconds / self.speed)  # noqa: TID251 - the site runs in scaled time

    def rows(self, sql, *args):
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args).fetchall()]

    def observations(self):
        return self.rows(
            "SELECT o.uuid, o.chamber, o.status, o.reason, o.round_id, "
            "(SELECT count(*) FROM samples s WHERE s.observation_uuid = o.uuid) AS samples "
            "FROM observations o ORDER BY o.started_at"
        )

    def events(self, *kinds):
        marks = ",".join("?" * len(kinds))
        return self.rows(f"SELECT * FROM events WHERE kind IN ({marks}) ORDER BY id", *kinds)

    def health(self):
        return {r["component"]: r for r in self.rows("SELECT * FROM health")}

    def status(self, capsys):
        capsys.readouterr()
        assert main(["status", str(self.config), "--json"]) == 0
        return {h["component"]: h for h in json.loads(capsys.readouterr().out)["health"]}

    def close(self):
        self.daemon.shutdown("end of test")
        self.site.close()
        self.hardware.stop()


def _table(rig) -> str:
    from chamberd.controller.status import format_status, site_status
    from chamberd.controller.store import SiteStore

    store = SiteStore.open_readonly(rig.db)
    try:
        return format_status(site_status(rig.cfg, store, rig.clock.now()))
    finally:
        store.close()


@pytest.fixture
def rig(tmp_path, make_site_cfg, fake_clock):
    pytest.START = fake_clock.now()
    cfg = make_site_cfg(4, 2, db=tmp_path / "site.db", cycle=CYCLE, modbus_timeout_s=0.3)
    r = Rig(cfg, tmp_path)
    yield r
    r.close()


@pytest.mark.parametrize("outage", ["off", "silent"])
def test_line_outage_is_the_lines_fault_not_the_chambers(rig, outage):
    """relays1 stops answering during C1's observation and stays down for three rounds
    (switched off: connections refused; or silent: requests time out). One alarm, the line
    FAULT, its chambers skipped and not charged; after it returns, one restored event, and
    every round measures all four chambers; nothing out of service."""

    def down():
        if outage == "off":
            rig.hardware.line_down("relays1")
        else:
            rig.sim.faults.modbus_timeout.add(10)

    def up():
        if outage == "off":
            rig.hardware.line_up("relays1")
        else:
            rig.sim.faults.modbus_timeout.discard(10)

    timer = rig.after(20, down)  # C1 closed, observing
    rig.round()
    timer.join()
    health = rig.health()
    assert health["modbus:relays1"]["ok"] == 0 and health["modbus:relays1"]["last_error"]
    assert health["modbus:relays2"]["ok"] == 1
    for _ in range(2):  # two more rounds without the line
        rig.round()
    assert rig.health()["modbus:relays1"]["ok"] == 0
    during = _table(rig)
    up()
    for _ in range(2):
        rig.round()

    obs = rig.observations()
    by_round: dict[int, dict[str, str]] = {}
    for o in obs:
        by_round.setdefault(o["round_id"], {})[o["chamber"]] = o["status"]
    # round 1: C1 interrupted (its trace kept), C2 skipped; rounds 2, 3: C1, C2 not tried
    # beyond the first command; C3, C4 always measured
    assert by_round[1] == {"C1": "aborted", "C3": "done", "C4": "done"}
    assert by_round[2] == by_round[3] == {"C3": "done", "C4": "done"}
    assert by_round[4] == by_round[5] == {c: "done" for c in ("C1", "C2", "C3", "C4")}
    c1 = next(o for o in obs if o["chamber"] == "C1")
    assert c1["reason"].startswith("modbus line relays1 not answering")
    assert c1["samples"] >= 15  # closing and 15 s of observing, kept
    assert len(c1["reason"]) < 250 and "last frames" not in c1["reason"]

    # one alarm for the outage, one restored event, no chamber charged or out of service
    down_events = rig.events("modbus_line_down")
    assert len(down_events) == 1
    assert down_events[0]["level"] == "critical"  # C1's lid was closed when it went
    assert "C1" in down_events[0]["message"] and "may still be closed" in down_events[0]["message"]
    assert len(rig.events("modbus_line_restored")) == 1
    assert not rig.events("out_of_service", "hardware_error", "safe_state_failed")
    service = rig.rows("SELECT id, out_of_service_until FROM chambers")
    assert all(r["out_of_service_until"] is None for r in service)
    assert all(len(e["message"]) <= 300 for e in rig.rows("SELECT message FROM events"))
    health = rig.health()
    assert health["modbus:relays1"]["ok"] == 1
    assert health["modbus:relays1"]["last_ok_at"] > down_events[0]["at"]
    assert "relays1" in health["modbus:relays1"]["last_error"] or health["modbus:relays1"][
        "last_error"
    ].startswith("Modbus")
    assert rig.sim.lids_commanded_open()
    print(f"\n[{outage}] chamberd status after 3 rounds without relays1:\n{during}")
    print(f"chamberd status after 2 rounds with it back:\n{_table(rig)}")
    for e in rig.rows("SELECT at, level, kind, message FROM events ORDER BY id"):
        print(f"  {e['at']} {e['level']:<8} {e['kind']}: {e['message']}")
    for o in obs:
        print(
            f"  round {o['round_id']} {o['chamber']} {o['status']} ({o['reason']}) "
            f"samples={o['samples']}"
        )


def test_a_lid_left_closed_on_a_dead_line_is_opened_when_it_answers(rig):
    """The line goes while C1's lid is closed: between rounds the daemon keeps trying (with
    a back-off) and the lid is commanded open as soon as the line answers, not at the next
    round."""
    timer = rig.after(20, lambda: rig.hardware.line_down("relays1"))
    rig.round()
    timer.join()
    assert rig.daemon.actuators.closed_lids == {"C1"}
    assert rig.sim.lid_position("C1") == 1.0  # still shut: nothing could reach it
    rig.daemon.idle()  # the schedule runner's wait: the line is still down
    assert rig.daemon.actuators.closed_lids == {"C1"}
    rig.hardware.line_up("relays1")
    deadline = time.monotonic() + 60  # noqa: TID251 - real time, generous
    while rig.daemon.actuators.closed_lids and time.monotonic() < deadline:  # noqa: TID251
        rig.daemon.idle()
        rig.wait(1)
    assert not rig.daemon.actuators.closed_lids
    rig.wait(5)  # the lid moves
    assert rig.sim.lid_position("C1") == 0.0 and rig.sim.lids_commanded_open()
    assert len(rig.events("modbus_line_restored")) == 1


def test_a_chambers_own_fault_is_still_charged(rig):
    """The lid of C1 never reaches its closed switch while the line answers: C1's fault,
    out of service after two rounds; the line stays OK."""
    rig.sim.faults.lid_stuck["C1"] = "open"
    rig.round()
    rig.round()
    out = rig.events("out_of_service")
    assert [e["chamber"] for e in out] == ["C1"]
    assert rig.health()["modbus:relays1"]["ok"] == 1
    assert not rig.events("modbus_line_down")
    statuses = sorted((o["chamber"], o["status"]) for o in rig.observations() if o["round_id"] == 2)
    assert statuses == [("C1", "aborted"), ("C2", "done"), ("C3", "done"), ("C4", "done")]


def test_health_comes_from_each_devices_own_readings(rig, capsys):
    """The analyser goes away (its device server closes the link) during C1: FAULT. Its
    server comes back but it sends no data, and in the next rounds every cycle of its group
    ends before the analyser is read (a relay board that does not answer, then a lid
    command the board refuses): the analyser stays FAULT with its last good reading of
    round 1, the relay board is FAULT, then ok again once it answers (even with a refusal).
    When data flow again, the analyser is ok."""
    server = rig.hardware.analysers["irga1"]
    timer = rig.after(15, server.power_off)
    rig.round()
    timer.join()
    status = rig.status(capsys)
    analyser = status["analyser:irga1"]
    assert analyser["ok"] is False and analyser["last_error"]
    last_good = analyser["last_good_at"]
    assert last_good is not None

    rig.sim.faults.analyser_silent.add("irga1")  # back, answers commands, sends no data
    server.power_on()
    rig.wait(10)  # the device server boots
    rig.sim.faults.modbus_timeout.add(10)  # relays1 silent: C1 fails at its first command
    rig.round()
    assert "irga1" in rig.daemon.analyser_info  # identified again: it answers commands
    status = rig.status(capsys)
    assert status["analyser:irga1"]["ok"] is False
    assert status["analyser:irga1"]["last_good_at"] == last_good  # unchanged
    assert status["modbus:relays1"]["ok"] is False
    assert status["analyser:irga2"]["ok"] is True

    rig.sim.faults.modbus_timeout.clear()
    rig.sim.faults.modbus_exception[10] = 2  # the board answers, refusing the lid command
    rig.round()
    status = rig.status(capsys)
    assert status["analyser:irga1"]["ok"] is False
    assert status["analyser:irga1"]["last_good_at"] == last_good
    assert status["modbus:relays1"]["ok"] is False  # it answered, refusing: a FAULT
    assert "exception response" in status["modbus:relays1"]["last_error"]
    c1 = [o for o in rig.observations() if o["chamber"] == "C1"]
    assert c1[-1]["round_id"] == 1  # no observation since: nothing read from the analyser

    rig.sim.faults.clear()
    rig.round()
    status = rig.status(capsys)
    assert status["analyser:irga1"]["ok"] is True
    assert status["analyser:irga1"]["last_good_at"] > last_good
    assert rig.events("analyser_restored")
    capsys.readouterr()
    assert main(["status", str(rig.config)]) == 0
    table = capsys.readouterr().out
    assert "analyser:irga1" in table and "last good reading" in table


@pytest.mark.parametrize("half_open", [False, True], ids=["closed", "half-open"])
def test_analyser_server_back_between_rounds_first_closure_measures(
    tmp_path, make_site_cfg, fake_clock, half_open
):
    """The analyser's serial device server goes off between rounds and comes back. Closed:
    the link sees the end of the connection. Half-open (power lost): the client's
    connection stays open and silent, with no error at all; the link notices the silent
    stream and reconnects. Either way the first closure after it is back is ``done``."""
    pytest.START = fake_clock.now()
    cycle = {**CYCLE, "prepurge_s": 10}
    cfg = make_site_cfg(2, 1, db=tmp_path / "site.db", cycle=cycle, modbus_timeout_s=0.3)
    rig = Rig(cfg, tmp_path, speed=20.0)
    try:
        rig.round()
        server = rig.hardware.analysers["irga1"]
        link = rig.daemon.analysers["irga1"].link
        reopens = link.reopens
        server.power_off(half_open=half_open)
        rig.wait(40)
        server.power_on()
        rig.wait(10)
        rig.round()
        obs = rig.observations()
        assert [(o["round_id"], o["chamber"], o["status"]) for o in obs] == [
            (1, "C1", "done"),
            (1, "C2", "done"),
            (2, "C1", "done"),
            (2, "C2", "done"),
        ]
        assert not rig.events("analyser_silent")
        assert link.reopens > reopens
    finally:
        rig.close()
