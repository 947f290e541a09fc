"""Trace-gas analyser faults in the daemon, over the real protocols: an LI-7810 on MQTT
(the machine's Mosquitto) whose timestamps stop, and an LGR UGGA whose fit turns invalid or
whose timestamps stop, each end with that group's lids open and an event, while the other
group measures."""

from __future__ import annotations

import re
import sqlite3
import threading

import pytest
from tracegas import BROKER, needs_broker, needs_mosquitto, private_broker, trace_site

from chamberd.controller.app import build_site
from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import parse_config
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

CYCLE = {
    "prepurge_s": 2,
    "closing_timeout_s": 8,
    "dead_band_s": 5,
    "observation_s": 30,
    "opening_timeout_s": 8,
    "postpurge_s": 2,
    "analyser_silent_s": 12,
    "max_failures": 2,
    "retry_after_min": 60,
}
SPEED = 20.0  # 12 s of silence is 0.6 s real: a loaded machine's stall is not a fault


@pytest.fixture
def make_rig(tmp_path, make_site_dict, fake_clock):
    """A running daemon on a simulated site over the real wire: C1, C2 on irga1 and C3, C4
    on irga2, the given laser analysers (``broker``: where the LI-78x0 publish)."""
    made = []

    def make(protocols=("li7810", "lgr-ugga"), broker=BROKER):
        data = trace_site(
            make_site_dict,
            protocols,
            n_chambers=4,
            db=tmp_path / "site.db",
            cycle=CYCLE,
            modbus_timeout_s=0.3,
            broker=broker,
            chamber_sim={"ch4_nmol_m2_s": 20.0},
        )
        cfg = parse_config(data)
        clock = ScaledClock(speed=SPEED, start=fake_clock.now())
        sim = SimulatedSite(cfg, clock)
        hardware = start_hardware(cfg, clock, site=sim)
        made.append(hardware)
        for publisher in hardware.publishers.values():
            publisher.wait_connected()
        site = build_site(hardware.daemon_config(), clock=clock)
        made.append(site)
        site.daemon.startup()

        def rows(sql, *args):
            with sqlite3.connect(tmp_path / "site.db") as con:
                con.row_factory = sqlite3.Row
                return con.execute(sql, args).fetchall()

        return sim, site.daemon, clock, rows

    yield make
    for thing in reversed(made):
        if hasattr(thing, "daemon"):
            thing.daemon.shutdown("end of test")
            thing.close()
        else:
            thing.stop()


@pytest.fixture
def rig(make_rig):
    return make_rig()


def _status(rows):
    return {
        r["chamber"]: (r["status"], r["reason"])
        for r in rows("SELECT chamber, status, reason FROM observations ORDER BY started_at")
    }


def _after(site_seconds, action):
    timer = threading.Timer(site_seconds / SPEED, action)
    timer.start()
    return timer


@needs_broker
@pytest.mark.parametrize(
    ("analyser", "fault", "kind", "says"),
    [
        ("irga1", lambda f: f.stale.add("irga1"), "analyser_silent", "stale data"),
        ("irga2", lambda f: f.fit_invalid.add("irga2"), "analyser_garbled", "Fit_Flag 0"),
        ("irga2", lambda f: f.stale.add("irga2"), "analyser_silent", "stale data"),
    ],
    ids=["li7810-stale", "ugga-fit-flag", "ugga-stale"],
)
def test_trace_gas_fault_opens_the_lids_with_an_event(rig, analyser, fault, kind, says):
    sim, daemon, clock, rows = rig
    timer = _after(10, lambda: fault(sim.faults))
    try:
        daemon.run_round(clock.now())
    finally:
        timer.cancel()
    _assert_group_safe(sim, rows, analyser, kind, says)


def _assert_group_safe(sim, rows, analyser, kind, says):
    """The faulted analyser's first chamber aborted, the other group's measured, an event
    of ``kind`` saying ``says`` (a regular expression), and every lid open."""
    status = _status(rows)
    faulted, other = ("C1", "C3") if analyser == "irga1" else ("C3", "C1")
    assert status[faulted][0] == "aborted", status
    assert status[other][0] == "done", status
    events = rows("SELECT kind, message FROM events WHERE kind = ?", kind)
    assert events, [tuple(r) for r in rows("SELECT kind, message FROM events")]
    assert re.search(says, events[0]["message"]), events[0]["message"]
    assert sim.lids_commanded_open()
    for chamber in ("C1", "C2", "C3", "C4"):
        assert sim.lid_position(chamber) == 0.0


@pytest.mark.parametrize(
    ("protocols", "analyser", "fault", "kind", "says"),
    [
        (
            ("picarro", "lgr-ugga"),
            "irga1",
            lambda f: f.analyser_err.__setitem__("irga1", "3001"),
            "analyser_garbled",
            "ERR:3001",
        ),
        pytest.param(
            ("li7810", "lgr-ugga"),
            "irga2",
            lambda f: f.link_down.add("irga2"),
            "analyser_silent",
            "link (lost|down)",
            marks=needs_broker,
        ),
        (
            ("picarro", "lgr-ugga"),
            "irga1",
            lambda f: f.link_down.add("irga1"),
            "analyser_silent",
            "link (lost|down)",
        ),
    ],
    ids=["picarro-err", "ugga-serial-drop", "picarro-serial-drop"],
)
def test_picarro_err_and_a_serial_drop_open_the_lids_with_an_event(
    make_rig, protocols, analyser, fault, kind, says
):
    sim, daemon, clock, rows = make_rig(protocols)
    timer = _after(10, lambda: fault(sim.faults))
    try:
        daemon.run_round(clock.now())
    finally:
        timer.cancel()
    _assert_group_safe(sim, rows, analyser, kind, says)


@needs_mosquitto
def test_the_li7810_broker_down_mid_observation_opens_the_lids_with_an_event(make_rig):
    """The LI-7810's broker (a private Mosquitto of this test's own, never the machine's)
    dies while C1 is measuring."""
    with private_broker() as broker:
        sim, daemon, clock, rows = make_rig(("li7810", "lgr-ugga"), broker=broker.url)
        timer = _after(10, broker.stop)
        try:
            daemon.run_round(clock.now())
        finally:
            timer.cancel()
            timer.join()
        _assert_group_safe(sim, rows, "irga1", "analyser_silent", "broker not connected")
