"""The other procedures, each scripted on the simulated site over the real wire: warm-up
and health, linearity (and a curved response failing it), flow (with a low-flow fault),
sensors, dead band, the GMP343 multi-cylinder check; and Ctrl-C in the middle of a step."""

from __future__ import annotations

import pytest
from calsite import CYLINDERS, SimSite

from chamberd.calibration.runner import AnswersConsole, CalibrationRunner, Interrupted
from chamberd.controller.config import parse_config
from chamberd.controller.store import SiteStore

WHO = {"operator": "Trainee Five"}


def run(site, procedure, answers=None, console=None, **kwargs):
    lines: list[str] = []
    console = console or AnswersConsole({**WHO, **(answers or {})}, echo=lines.append)
    runner = CalibrationRunner(site.cfg, procedure, clock=site.clock, console=console, **kwargs)
    return runner.run(), "\n".join(lines)


def test_warmup_health(make_sim_site):
    site = make_sim_site()
    record, text = run(site, "warmup")
    assert record["status"] == "pass", text
    health = record["data"]["health"]
    assert health["cell_temperature_degc"] == pytest.approx(50.0, abs=2.0)
    assert abs(health["cell_pressure_kpa"] - health["site_pressure_kpa"]) < 3.0
    assert 0.5 <= health["flow_l_min"] <= 1.0
    assert "diagnostics" in health


def test_flow_check_flags_low_flow(make_sim_site):
    site = make_sim_site()
    record, text = run(site, "flow", {"flowmeter_l_min": 0.8})
    assert record["status"] == "pass", text
    site.sim.faults.low_flow.add("irga")
    record, text = run(site, "flow", {"flowmeter_l_min": 0.21})
    assert record["status"] == "fail", text
    assert "outside" in record["result"]


def test_sensors_against_references(make_sim_site):
    site = make_sim_site()
    truth_p = site.sim.aux_value("pressure_kpa", None)
    truth_t = site.sim.aux_value("air_temperature_degc", None)
    answers = {"reference_pressure_kpa": truth_p, "reference_temperature_degc": truth_t}
    record, text = run(site, "sensors", answers)
    assert record["status"] == "pass", text
    answers["reference_pressure_kpa"] = truth_p + 1.0
    record, text = run(site, "sensors", answers)
    assert record["status"] == "fail" and "air_pressure" in record["result"], text


def test_linearity(make_sim_site):
    site = make_sim_site(sim={"span_gain": 1.02, "zero_offset_umol_mol": 1.0})
    record, text = run(site, "linearity", {"cylinders": list(CYLINDERS)})
    assert record["status"] == "pass", text  # a gain error is linear
    assert record["data"]["gain"] == pytest.approx(1.02, abs=0.005)
    assert len(record["data"]["residuals"]) == 3
    assert len(record["data"]["checks"]) == 3


def test_linearity_fails_a_curved_response(make_sim_site):
    """A raw response with a quadratic term (5e-5 per umol/mol: 0, 450, 1000 read 0, 460.1,
    1050): the straight line through the three leaves residuals of +4.5, -8.2 and +3.7
    umol/mol; the zero's and the 450's exceed their allowance (2 umol/mol, 1 %), the
    1000's (10 umol/mol) does not, and the result names the two."""
    site = make_sim_site(sim={"co2_curvature_per_umol_mol": 5e-5}, speed=20.0)
    record, text = run(site, "linearity", {"cylinders": list(CYLINDERS)})
    assert record["status"] == "fail", text
    residuals = {r["cylinder_id"]: r for r in record["data"]["residuals"]}
    assert residuals["ZERO-N2-01"]["residual_umol_mol"] == pytest.approx(4.5, abs=1.0)
    assert residuals["SPAN-450-01"]["residual_umol_mol"] == pytest.approx(-8.2, abs=1.0)
    assert residuals["SPAN-1000-01"]["residual_umol_mol"] == pytest.approx(3.7, abs=1.0)
    assert residuals["SPAN-450-01"]["allowed_umol_mol"] == pytest.approx(4.5)
    assert "ZERO-N2-01 residual +" in record["result"]
    assert "SPAN-450-01 residual -" in record["result"]
    assert "SPAN-1000-01" not in record["result"]
    assert "multi-point calibration" in text  # what to do on a fail


def test_dead_band_scan(make_sim_site):
    """A quiet analyser (0.05 umol/mol) so that the scan's outcome is the procedure's, not
    the noise's: the flux rises for the few seconds the headspace mixes, then holds; the
    fitting engine chooses a dead band past the mixing whose flux is the simulator's truth,
    and the run passes. With a limit no scan can meet, the same run fails and says why."""
    site = make_sim_site(sim={"analyser_noise_umol_mol": 0.05}, speed=20.0)
    record, text = run(site, "dead-band", {"closures": 1}, chamber="C2")
    assert record["status"] == "pass", text
    scans = record["data"]["scans"]
    assert len(scans) == 1
    scan = scans[0]
    # the table: every dead band from 0 to a third of the observation, each with its flux
    observation_s = site.cfg.observation_s(site.cfg.chamber("C2"))
    assert scan["dead_band_s"] == [float(d) for d in range(int(observation_s / 3) + 1)]
    assert len(scan["flux_umol_m2_s"]) == len(scan["dead_band_s"])
    assert all(isinstance(f, float) and f > 0 for f in scan["flux_umol_m2_s"])
    # the choice: one of the scanned dead bands, past the mixing, its flux the truth
    chosen = scan["chosen_dead_band_s"]
    assert chosen in scan["dead_band_s"]
    assert chosen >= site.cfg.sim.mixing_s, scan["reason"]
    truth = [t.flux_umol_m2_s for t in site.sim.closures() if t.chamber == "C2"]
    assert len(truth) == 1
    flux = scan["flux_umol_m2_s"][scan["dead_band_s"].index(chosen)]
    assert flux == pytest.approx(truth[0], rel=0.02)
    assert scan["flux_umol_m2_s"][0] < flux  # at 0 s the headspace is not mixed yet
    assert scan["configured_dead_band_s"] == 15.0
    assert scan["model"] in ("linear", "exponential") and scan["end_s"] <= observation_s
    limit = record["data"]["limits"]["max_sensitivity_pct_per_10s"]
    assert limit == 2.0 and 0 <= scan["sensitivity_pct_per_10s"] <= limit
    assert record["result"].startswith(f"dead bands chosen by the fitting engine: {chosen:g} s")
    # the closure's reading keeps the scan and its trace; the table was shown, choice marked
    (reading,) = record["readings"]
    assert reading["step"] == "closure 1"
    assert reading["data"]["chosen_dead_band_s"] == chosen
    assert len(reading["data"]["trace"]["co2_umol_mol"]) > 50
    assert f"{chosen:5.0f}  {flux:8.4f}  <- chosen" in text
    assert site.sim.lids_commanded_open()

    data = site.cfg.model_dump(mode="python")
    data["calibration"]["limits"] = {"max_sensitivity_pct_per_10s": 1e-9}
    strict = parse_config(data, source="dead band test")
    lines: list[str] = []
    console = AnswersConsole({**WHO, "closures": 1}, echo=lines.append)
    runner = CalibrationRunner(strict, "dead-band", clock=site.clock, console=console, chamber="C2")
    failed = runner.run()
    assert failed["status"] == "fail", "\n".join(lines)
    assert failed["data"]["limits"]["max_sensitivity_pct_per_10s"] == 1e-9
    assert len(failed["data"]["scans"]) == 1
    assert "lengthen observation_s" in "\n".join(lines)  # what to do on a fail
    assert site.sim.lids_commanded_open()


def test_gmp343_check_records_gain_offset_and_compensation(tmp_path):
    site = SimSite(tmp_path, sim={"span_gain": 1.03}, protocol="gmp343", speed=10.0)
    try:
        answers = {"cylinders": ["SPAN-450-01", "SPAN-1000-01"], "set_pressure": True}
        record, text = run(site, "gmp343-check", answers)
        checks = record["data"]["checks"]
        assert [c["reference"] for c in checks] == [450.0, 1000.0, 450.0, 1000.0]  # alternating
        assert record["data"]["gain"] == pytest.approx(1.03, abs=0.01)
        assert record["as_found"]["compensation"]["pressure_on"] in (True, False)
        assert "pressure_hpa" in record["data"]["compensation"]
        assert record["status"] == "fail", text  # 3 % at 1000 is outside 3 + 1 %
    finally:
        site.stop()


class _StopAt(AnswersConsole):
    """A trainee who presses Ctrl-C when told to put the plate on."""

    def wait(self, key: str, instruction: str) -> None:
        if key == "done_plate":
            raise KeyboardInterrupt
        super().wait(key, instruction)


def test_ctrl_c_leaves_the_safe_state_and_an_incomplete_record(make_sim_site):
    site = make_sim_site()
    site.sim.command_lid("C1", True)  # as if left closed
    console = _StopAt(WHO, echo=lambda _: None)
    with pytest.raises(Interrupted, match="incomplete"):
        run(site, "blank", console=console, chamber="C1")
    assert site.sim.lids_commanded_open()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        (record,) = store.query("SELECT status, reason FROM calibrations")
        assert record["status"] == "incomplete" and "Ctrl-C" in record["reason"]
        assert store.calibration_locks() == []
    finally:
        store.close()


def test_a_later_run_recovers_a_killed_one(make_sim_site):
    import subprocess
    import sys

    from chamberd.calibration.records import CalibrationRecords

    site = make_sim_site(speed=10.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        rid = CalibrationRecords(store).begin(
            procedure="blank", started_at=site.clock.now(), operator="x", pid=dead.pid
        )
        store.take_calibration_locks(["analyser:irga"], rid, dead.pid, site.clock.now())
    finally:
        store.close()
    site.sim.command_lid("C1", True)  # the killed blank test's closure
    record, text = run(site, "lid-check", chamber="C2")
    assert record["status"] == "pass", text
    assert "left running by a process that ended" in text
    assert site.sim.lids_commanded_open()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        assert CalibrationRecords(store).get(rid)["status"] == "incomplete"
        assert store.calibration_locks() == []
    finally:
        store.close()


def test_site_limits_override_the_procedures(make_sim_site):
    from chamberd.calibration.procedures import get_procedure, limits_for

    # another procedure's limit does not apply to this one
    limits = limits_for(get_procedure("lid-check"), {"max_move_s": 2.0, "max_span_error_pct": 1.5})
    assert limits == {"max_move_s": 2.0}
    assert get_procedure("7").id == "lid-check"
