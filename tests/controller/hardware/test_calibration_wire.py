"""Guided calibration's hardware, end to end: the real drivers against the simulated site
over real ports (TCP, pty) and a real pymodbus server."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest

from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import SiteConfig
from chamberd.controller.errors import ConfigError, ProtocolError
from chamberd.controller.hardware import LidState, make_actuators, make_analyser
from chamberd.controller.sim import SimulatedSite, start_hardware

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)
DAY = START.date()
PURGE_S = 60.0  # manifold delay 4 s + over 9 e-folding times of 6 s


def _cfg(sim_cfg, protocol="li850", **sim) -> SiteConfig:
    data = sim_cfg.model_dump(mode="python")
    data["analysers"][0]["protocol"] = protocol
    data["sim"] = {**data["sim"], "analyser_noise_umol_mol": 0.05, **sim}
    return SiteConfig.model_validate(data)


@pytest.fixture
def rig(request, sim_cfg, no_leaks):
    protocol, transport, sim = request.param
    cfg = _cfg(sim_cfg, protocol, **sim)
    clock = ScaledClock(speed=20.0, start=START)
    site = SimulatedSite(cfg, clock)
    hardware = start_hardware(cfg, clock, site=site, transport=transport)
    daemon_cfg = hardware.daemon_config()
    analyser = make_analyser(daemon_cfg.analysers[0], clock=clock)
    actuators = make_actuators(daemon_cfg, clock=clock)
    analyser.configure(output_interval_s=1)
    yield clock, site, analyser, actuators
    analyser.close()
    actuators.close()
    hardware.stop()


def _mean(analyser, n=5) -> float:
    analyser.discard_pending()
    return statistics.fmean(analyser.read(5.0).co2_umol_mol for _ in range(n))


def _gas(clock, analyser, actuators, slot) -> float:
    actuators.set_manifold(slot)
    clock.sleep(PURGE_S)
    return _mean(analyser)


DRIFTED = {"span_gain": 1.05, "zero_offset_umol_mol": 3.0}


@pytest.mark.parametrize(
    "rig", [("li850", "tcp", DRIFTED), ("li840a", "pty", DRIFTED)], indirect=True
)
def test_zero_and_span_commands_bring_a_drifted_analyser_back(rig):
    clock, site, analyser, actuators = rig
    assert site.span_gain("irga") == pytest.approx(1.05)
    as_found = analyser.calibration_state()
    span_before = _gas(clock, analyser, actuators, "span1")
    assert span_before == pytest.approx(3.0 + 1.05 * 1000.0, abs=1.0)

    zero = _gas(clock, analyser, actuators, "zero")
    assert zero == pytest.approx(3.0, abs=0.5)
    sent = analyser.zero_co2(DAY)
    assert "<co2zero>true</co2zero>" in sent
    assert _mean(analyser) == pytest.approx(0.0, abs=0.3)  # zero gas now reads 0

    _gas(clock, analyser, actuators, "span1")
    analyser.span_co2(1000.0, DAY)
    assert _mean(analyser) == pytest.approx(1000.0, abs=0.5)  # span gas reads its value
    # LI-COR's criterion: a second gas reads within 1 % after spanning
    assert _gas(clock, analyser, actuators, "span2") == pytest.approx(450.0, rel=0.01)
    assert site.span_gain("irga") == pytest.approx(1.0, abs=0.002)
    assert site.zero_offset_umol_mol("irga") == pytest.approx(0.0, abs=0.3)

    as_left = analyser.calibration_state()
    assert as_found["cal/co2lastspan"] != as_left["cal/co2lastspan"] == "2026-07-01"
    assert as_left["cal/co2lastzero"] == "2026-07-01"
    assert float(as_left["cal/co2kspan"]) == pytest.approx(1 / 1.05, rel=0.002)
    assert as_left["poly/date"]  # the factory polynomial is in the snapshot too

    actuators.open_all()  # the safe state closes the manifold
    assert site.manifold_open == set()


@pytest.mark.parametrize("rig", [("li850", "tcp", {})], indirect=True)
def test_span2_corrects_the_second_point_and_bad_commands_are_refused(rig):
    clock, site, analyser, actuators = rig
    _gas(clock, analyser, actuators, "span1")
    with pytest.raises(ProtocolError, match="ACK FALSE"):
        analyser.span2_co2(1000.0, DAY)  # no first span on record yet
    analyser.span_co2(1000.0, DAY)
    _gas(clock, analyser, actuators, "span2")
    analyser.span2_co2(455.0, DAY)  # pretend the cylinder is 455: the gas now reads 455
    assert _mean(analyser) == pytest.approx(455.0, abs=0.5)
    assert _gas(clock, analyser, actuators, "span1") == pytest.approx(1000.0, abs=0.5)
    site.faults.analyser_nak.add("irga")
    with pytest.raises(ProtocolError, match="ACK FALSE"):
        analyser.zero_co2(DAY)


@pytest.mark.parametrize("rig", [("li850", "tcp", {})], indirect=True)
def test_diagnostics_report_health_fields_and_low_flow(rig):
    _, site, analyser, _ = rig
    diagnostics = analyser.diagnostics()
    assert float(diagnostics["data/flowrate"]) == pytest.approx(0.8, abs=0.02)
    assert float(diagnostics["data/celltemp"]) == pytest.approx(51.5, abs=0.2)
    assert {"data/cellpres", "data/ivolt", "cfg/heater"} <= set(diagnostics)
    assert analyser.read(5.0).flow_l_min == pytest.approx(0.8, abs=0.02)
    site.faults.low_flow.add("irga")
    analyser.discard_pending()
    assert analyser.read(5.0).flow_l_min == pytest.approx(0.2, abs=0.02)
    assert float(analyser.diagnostics()["data/flowrate"]) == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("rig", [("li850", "tcp", {})], indirect=True)
def test_manifold_valves_on_modbus_coils_deliver_the_cylinder_gas(rig):
    clock, site, analyser, actuators = rig
    ambient = _mean(analyser)
    actuators.set_manifold("span1")
    assert site.manifold_open == {"span1"}
    clock.sleep(2.0)  # still in the tubing: the analyser sees the loop
    assert _mean(analyser, 2) == pytest.approx(ambient, abs=3.0)
    clock.sleep(PURGE_S)
    assert _mean(analyser) == pytest.approx(1000.0, abs=1.0)
    actuators.set_manifold("span2")  # switching closes the other valve
    assert site.manifold_open == {"span2"}
    switched = [(c[2], c[3]) for c in site.commands if c[1] == "manifold"][-3:]
    assert switched == [("zero", False), ("span1", False), ("span2", True)]  # close first
    clock.sleep(PURGE_S)
    assert _mean(analyser) == pytest.approx(450.0, abs=1.0)
    actuators.set_manifold(None)
    clock.sleep(PURGE_S)
    assert site.manifold_open == set()
    assert abs(_mean(analyser) - ambient) < 20.0  # back to the chamber loop
    with pytest.raises(ConfigError, match="no slot 'nitrogen'"):
        actuators.set_manifold("nitrogen")


@pytest.mark.parametrize("rig", [("gmp343", "tcp", {})], indirect=True)
def test_gmp343_compensation_changes_its_output_as_the_physics_says(rig):
    clock, site, probe, _ = rig
    settings = probe.compensation()
    assert settings["pressure_on"] and settings["pressure_hpa"] == pytest.approx(995.0)
    assert probe.errors() == []
    compensated = _mean(probe)
    probe.set_compensation(pressure_on=False)  # now it assumes 1013.25 hPa
    assert probe.compensation()["pressure_on"] is False
    clock.sleep(2.0)
    uncompensated = _mean(probe)
    # the output format rounds to 0.1 umol/mol; the drift of ambient CO2 is slow
    assert uncompensated / compensated == pytest.approx(995.0 / 1013.25, abs=0.002)
    probe.set_compensation(pressure_on=True, pressure_hpa=880.0)  # wrong for this site
    clock.sleep(2.0)
    assert _mean(probe) / compensated == pytest.approx(995.0 / 880.0, abs=0.003)
    assert site.span_gain("irga") == pytest.approx(995.0 / 880.0, rel=1e-3)
    site.faults.probe_errors["irga"] = ["E: Sensor heater failure"]
    assert probe.errors() == ["E: Sensor heater failure"]
    with pytest.raises(ProtocolError, match="refused"):
        probe.set_compensation(pressure_hpa=5000.0)


@pytest.mark.parametrize("rig", [("li850", "tcp", {})], indirect=True)
def test_slow_lid_and_plate_seen_through_the_real_drivers(rig):
    clock, site, analyser, actuators = rig
    delay = site.cfg.sim.lid_delay_s
    site.faults.slow_lid["C1"] = 6.0
    site.faults.plate.add("C1")
    actuators.set_lid("C1", True)
    clock.sleep(delay + 1.0)
    assert actuators.lid_state("C1") is LidState.MOVING  # a normal lid would be shut
    clock.sleep(6.0)
    assert actuators.lid_state("C1") is LidState.CLOSED
    clock.sleep(15.0)  # transport and mixing
    first = _mean(analyser)
    clock.sleep(60.0)
    assert _mean(analyser) == pytest.approx(first, abs=0.5)  # no soil flux under a plate
    (truth,) = site.closures()
    assert truth.plate and truth.flux_umol_m2_s == 0.0
    actuators.open_all()
