"""The daemon writes the calibration in force into each observation it measures
(``observations.calibration_id``): none before the analyser's first finished check, then
the newest finished record with reference-gas checks of that analyser (virtual time,
in-memory hardware of the simulated site)."""

from __future__ import annotations

import pytest
from calsite import START, register_cylinders, site_config

from chamberd.calibration.records import CalibrationRecords
from chamberd.calibration.runner import AnswersConsole, CalibrationRunner
from chamberd.controller.app import build_site
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import parse_config
from chamberd.controller.sim.site import SimulatedSite

ANSWERS = {
    "operator": "Trainee Three",
    "zero_cylinder": "ZERO-N2-01",
    "span_cylinders": ["SPAN-1000-01", "SPAN-450-01"],
}


def _round(site, clock) -> list[dict]:
    """One daemon round a minute from now; the observations it wrote."""
    clock.advance(60.0)
    at = clock.now().replace(second=0, microsecond=0)
    site.daemon.run_round(at)
    return site.store.query(
        "SELECT uuid, chamber, analyser, calibration_id FROM observations WHERE started_at >= ? "
        "ORDER BY started_at",
        (at.strftime("%Y-%m-%dT%H:%M:%S"),),
    )


def _check(cfg, clock, sim) -> dict:
    console = AnswersConsole(ANSWERS, echo=lambda _: None)
    runner = CalibrationRunner(
        cfg, "zero-span-check", clock=clock, console=console, site=sim, memory=True
    )
    return runner.run()


@pytest.fixture
def memory_site(tmp_path):
    db = tmp_path / "site.db"
    data = site_config(db, sim={"span_gain": 1.02}).model_dump(mode="python")
    data["analysers"][0]["protocol"] = "memory"
    cfg = parse_config(data, source="calibration_id test")
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    register_cylinders(db, cfg.site.id)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    site.daemon.startup()
    try:
        yield cfg, clock, sim, site
    finally:
        site.daemon.shutdown("end of test")
        site.close()


def test_each_observation_records_the_calibration_in_force(memory_site):
    cfg, clock, sim, site = memory_site
    chambers = {c.id for c in cfg.chambers if c.enabled}

    before = _round(site, clock)
    assert {r["chamber"] for r in before} == chambers
    assert [r["calibration_id"] for r in before] == [None] * len(before)

    # records that are not a check in force: another analyser's, a geometry, an incomplete
    records = CalibrationRecords(site.store)
    checks = [{"gas": "co2", "reference": 1000.0, "measured": 1001.0, "cylinder_id": "x"}]
    other = records.begin(
        procedure="zero-span-check", started_at=clock.now(), operator="x", analyser="irga9"
    )
    records.finish(other, "pass", at=clock.now(), data={"checks": checks})
    broken = records.begin(
        procedure="zero-span-check", started_at=clock.now(), operator="x", analyser="irga"
    )
    records.mark_incomplete(broken, "test: interrupted", at=clock.now())
    geometry = records.begin(
        procedure="geometry", started_at=clock.now(), operator="x", analyser="irga", chamber="C1"
    )
    records.finish(geometry, "pass", at=clock.now(), data={"geometry": {"offset_cm": 3.0}})
    assert {r["calibration_id"] for r in _round(site, clock)} == {None}

    first = _check(cfg, clock, sim)
    assert first["status"] == "fail" and first["analyser"] == "irga"  # 2 % high: a correction
    assert first["data"]["checks"]
    after = _round(site, clock)
    assert {r["chamber"] for r in after} == chambers
    assert [r["calibration_id"] for r in after] == [first["id"]] * len(after)

    # a later check takes over; an interrupted one after it does not
    second = _check(cfg, clock, sim)
    assert second["status"] == "fail" and second["id"] != first["id"]
    broken = records.begin(
        procedure="zero-span-check", started_at=clock.now(), operator="x", analyser="irga"
    )
    records.mark_incomplete(broken, "test: interrupted", at=clock.now())
    later = _round(site, clock)
    assert [r["calibration_id"] for r in later] == [second["id"]] * len(later)

    # the earlier observations keep the calibration that was in force when they were measured
    by_uuid = {
        r["uuid"]: r["calibration_id"]
        for r in site.store.query("SELECT uuid, calibration_id FROM observations")
    }
    assert all(by_uuid[r["uuid"]] is None for r in before)
    assert all(by_uuid[r["uuid"]] == first["id"] for r in after)
