"""The daemon and the calibration locks, in virtual time on the in-memory hardware: with
two analyser groups, a held analyser skips only its own group (one event per round), the
other group measures; a held chamber skips only that chamber; both resume afterwards."""

from __future__ import annotations

import datetime as dt
import os

from calsite import START, site_config

from chamberd.calibration.records import CalibrationRecords
from chamberd.controller.app import build_site
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import parse_config
from chamberd.controller.sim.site import SimulatedSite


def _two_groups(db):
    data = site_config(db).model_dump(mode="python")
    data["analysers"] = [
        {**data["analysers"][0], "id": "irga1", "protocol": "memory"},
        {**data["analysers"][0], "id": "irga2", "protocol": "memory"},
    ]
    for chamber in data["chambers"]:
        chamber["analyser"] = "irga1" if chamber["id"] in ("C1", "C2") else "irga2"
    data["calibration"] = {"manifold": []}
    data["sim"]["cylinders"] = {}
    return parse_config(data, source="two groups")


def test_locks_skip_only_what_they_hold(tmp_path):
    cfg = _two_groups(tmp_path / "site.db")
    clock = FakeClock(start=START + dt.timedelta(minutes=1))
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    store = site.store
    records = CalibrationRecords(store)
    try:
        site.daemon.startup()
        cal = records.begin(procedure="zero-span-check", started_at=clock.now(), operator="x")
        lid = records.begin(procedure="lid-check", started_at=clock.now(), operator="y")
        store.take_calibration_locks(["analyser:irga2"], cal, os.getpid(), clock.now())
        store.take_calibration_locks(["chamber:C1"], lid, os.getpid(), clock.now())
        first = site.daemon.run_round(START + dt.timedelta(minutes=30))
        outcome = {o.chamber: o for o in first.outcomes}
        assert outcome["C2"].status == "done"
        for chamber in ("C1", "C3", "C4"):
            assert outcome[chamber].status == "skipped"
            assert "calibration in progress" in outcome[chamber].reason
        events = store.query("SELECT kind, chamber, message FROM events ORDER BY id")
        skipped = [e for e in events if e["kind"] == "calibration_in_progress"]
        assert len(skipped) == 2  # once per round per group
        assert any("analyser:irga2" in e["message"] for e in skipped)
        assert any(e["chamber"] == "C1" for e in skipped)
        assert [e["kind"] for e in events].count("analyser_lent") == 1
        # the calibrations end; the next round measures everything
        now = clock.now()
        records.finish(cal, "pass", at=now, data={"checks": []})
        records.finish(lid, "pass", at=now)
        assert store.calibration_locks() == []
        clock.advance(30 * 60 - (clock.now() - START).total_seconds() % (30 * 60) + 1)
        second = site.daemon.run_round(START + dt.timedelta(minutes=60))
        assert {o.chamber: o.status for o in second.outcomes} == {
            "C1": "done",
            "C2": "done",
            "C3": "done",
            "C4": "done",
        }
        kinds = [e["kind"] for e in store.query("SELECT kind FROM events ORDER BY id")]
        assert kinds.count("calibration_in_progress") == 2
        assert kinds.count("calibration_resumed") == 2
    finally:
        site.daemon.shutdown("end of test")
        site.close()
