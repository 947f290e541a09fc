"""A calibration and the daemon on one site, over the real wire: the group is skipped while
the calibration holds it (one ``calibration_in_progress`` event per round), the daemon's
running observation ends first, no lid is commanded by both, and measuring resumes."""

from __future__ import annotations

import datetime as dt
import threading
import time

from calsite import START

from chamberd.calibration.runner import AnswersConsole, CalibrationRunner
from chamberd.controller.app import build_site
from chamberd.controller.config import parse_config
from chamberd.controller.store import SiteStore, parse_iso


def _wait_for(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s  # noqa: TID251 - real time: the daemon runs in a thread
    while time.monotonic() < end:  # noqa: TID251
        if predicate():
            return True
        time.sleep(0.05)  # noqa: TID251
    return predicate()


def test_group_skipped_while_calibrated_then_resumed(make_sim_site):
    site = make_sim_site(speed=40.0)
    data = site.cfg.model_dump(mode="python")
    data["schedule"] = {**data["schedule"], "interval_min": 10, "misfire_grace_s": 60}
    cfg = parse_config(data, source="daemon and calibration")
    clock = site.clock
    daemon_site = build_site(cfg, clock=clock)
    until = START + dt.timedelta(minutes=31)
    thread = threading.Thread(target=daemon_site.daemon.run, kwargs={"until": until})
    thread.start()
    reader = SiteStore(site.db, site_id=cfg.site.id)
    try:
        assert _wait_for(
            lambda: reader.query(
                "SELECT 1 FROM observations WHERE chamber = 'C2' AND status = 'running'"
            ),
            60.0,
        ), "the daemon never measured C2"
        console = AnswersConsole({"operator": "Trainee Three"}, echo=lambda _: None)
        runner = CalibrationRunner(cfg, "blank", clock=clock, console=console, chamber="C1")
        record = runner.run()
        assert record["status"] in ("pass", "fail")
        thread.join(120.0)
        assert not thread.is_alive()
    finally:
        daemon_site.daemon.stop_event.set()
        thread.join(30.0)
        daemon_site.daemon.shutdown("end of test")
        daemon_site.close()
    try:
        began, ended = parse_iso(record["started_at"]), parse_iso(record["ended_at"])
        observations = reader.query("SELECT * FROM observations ORDER BY started_at")
        events = reader.query("SELECT * FROM events ORDER BY id")
        rounds = reader.query("SELECT * FROM rounds ORDER BY scheduled_at")
    finally:
        reader.close()
    # the observation running when the calibration asked was finished, not aborted
    c2 = [o for o in observations if o["chamber"] == "C2"]
    assert c2[0]["status"] == "done"
    # nothing measured by the daemon while the calibration held the group
    for o in observations:
        start, end = parse_iso(o["closing_at"]), parse_iso(o["ended_at"])
        assert not (start < ended and end > began and o["chamber"] != "C2"), o
    skipped = [e for e in events if e["kind"] == "calibration_in_progress"]
    assert len(skipped) == 1, [e["message"] for e in skipped]  # one per round per group
    assert "irga" in skipped[0]["message"]
    resumed = [e for e in events if e["kind"] == "calibration_resumed"]
    assert len(resumed) == 1
    after = [o for o in observations if parse_iso(o["started_at"]) > ended]
    assert {o["chamber"] for o in after} == {"C1", "C2", "C3", "C4"}
    assert {o["status"] for o in after} == {"done"}
    assert len(rounds) >= 3
    # the lid commands while the calibration held the group: its own C1 closures, and
    # opening (its safe state); the daemon commanded none
    mono_now, wall_now = clock.monotonic(), clock.now()

    def wall(mono: float) -> dt.datetime:
        return wall_now - dt.timedelta(seconds=mono_now - mono)

    during = [
        (chamber, closed)
        for mono, kind, chamber, closed in site.sim.commands
        if kind == "lid" and began <= wall(mono) <= ended
    ]
    closes = {chamber for chamber, closed in during if closed}
    assert closes == {"C1"}, during
    c2_end = parse_iso(c2[0]["ended_at"])
    first_close = min(
        wall(m)
        for m, k, c, v in site.sim.commands
        if k == "lid" and c == "C1" and v and began <= wall(m)
    )
    assert c2_end <= first_close
    assert site.sim.lids_commanded_open()
