"""Scripted trainee sessions on the simulated site over the real wire: a zero/span
adjustment brings a drifted LI-850 back within the limit; a check-only session records a
correction; an expired cylinder is refused."""

from __future__ import annotations

import pytest

from chamberd.calibration.runner import AnswersConsole, CalibrationRunner
from chamberd.controller.errors import ConfigError
from chamberd.controller.store import SiteStore

ANSWERS = {
    "operator": "Trainee One",
    "supervisor": "Dr. Expert",
    "zero_cylinder": "ZERO-N2-01",
    "span_cylinder": "SPAN-1000-01",
    "span_cylinders": ["SPAN-1000-01", "SPAN-450-01"],
    "check_cylinder": "SPAN-450-01",
}


def run(site, procedure, answers, lines=None, **kwargs):
    console = AnswersConsole(answers, echo=(lines.append if lines is not None else lambda _: None))
    runner = CalibrationRunner(site.cfg, procedure, clock=site.clock, console=console, **kwargs)
    return runner.run()


def test_adjustment_brings_a_drifted_analyser_back(make_sim_site):
    site = make_sim_site(sim={"span_gain": 1.04, "zero_offset_umol_mol": 3.0})
    lines: list[str] = []
    record = run(site, "zero-span-adjust", ANSWERS, lines)
    text = "\n".join(lines)
    assert record["status"] == "pass", text
    assert record["adjusted"] is True
    assert record["operator"] == "Trainee One" and record["supervisor"] == "Dr. Expert"
    assert record["instrument_model"] == "LI-850"
    assert set(record["cylinder_ids"]) == {"ZERO-N2-01", "SPAN-1000-01", "SPAN-450-01"}
    # as found and as left: the analyser's own calibration state, changed by the commands
    assert record["as_found"] and record["as_left"] and record["as_found"] != record["as_left"]
    commands = record["data"]["commands"]
    assert [c["step"] for c in commands] == ["co2zero", "h2ozero", "co2span"]
    assert all(c["ack"] for c in commands)
    assert (
        "<CO2SPAN>" in commands[2]["command"].upper() or "co2span" in commands[2]["command"].lower()
    )
    # as found the span read ~4 % high; as left the second gas is within 1 %
    found = {c["cylinder_id"]: c for c in record["data"]["checks"]}
    assert found["SPAN-1000-01"]["measured"] == pytest.approx(1043.0, abs=6.0)
    after = {c["cylinder_id"]: c for c in record["data"]["checks_after"]}
    assert abs(after["SPAN-450-01"]["measured"] - 450.0) / 450.0 < 0.01
    assert abs(after["ZERO-N2-01"]["measured"]) < 2.0
    assert abs(site.sim.span_gain("irga") - 1.0) < 0.01  # the sim's truth agrees
    # every reading names its cylinder; the record is in the outbox exactly once
    assert all(r["cylinder_id"] for r in record["readings"])
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        outbox = store.query("SELECT calibration_id FROM calibration_outbox")
        assert outbox == [{"calibration_id": record["id"]}]
        assert store.calibration_locks() == []
    finally:
        store.close()
    assert "drift" in text and "stable" in text  # the live indicator was shown
    assert site.sim.lids_commanded_open()


def test_check_only_records_a_correction(make_sim_site):
    site = make_sim_site(sim={"span_gain": 1.03})
    record = run(site, "zero-span-check", ANSWERS)
    assert record["status"] == "fail"  # 3 % off: outside the 1 % criterion
    assert record["adjusted"] is False and record["data"]["adjusted"] is False
    checks = {c["cylinder_id"]: c for c in record["data"]["checks"]}
    assert set(checks) == {"ZERO-N2-01", "SPAN-1000-01", "SPAN-450-01"}
    assert checks["SPAN-1000-01"]["measured"] == pytest.approx(1030.0, abs=5.0)
    assert checks["SPAN-450-01"]["reference"] == 450.0
    assert "correction" in record["result"]
    assert abs(site.sim.span_gain("irga") - 1.03) < 1e-3  # nothing adjusted


def test_expired_cylinder_is_refused_before_anything_happens(make_sim_site, tmp_path):
    site = make_sim_site()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    from chamberd.calibration.cylinders import Cylinders

    Cylinders(store).add(
        cylinder_id="OLD-1",
        gas="co2",
        value=400.0,
        expires_on="2026-06-30",
        entered_by="test",
        at=site.clock.now(),
    )
    store.close()
    commands = len(site.sim.commands)
    with pytest.raises(ConfigError, match="OLD-1 expired on 2026-06-30"):
        run(site, "zero-span-check", {**ANSWERS, "span_cylinders": ["OLD-1"]})
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    assert store.query("SELECT * FROM calibrations") == []
    store.close()
    assert len(site.sim.commands) == commands  # no hardware touched
