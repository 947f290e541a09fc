"""Every injected fault: the real driver raises the right error or recovers, in bounded
time, and leaves no thread, port or server open (the ``no_leaks`` fixture)."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from realtime import real_time_bound

from chamberd.controller.clock import ScaledClock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware import LidState, make_actuators, make_analyser, make_aux_sensors
from chamberd.controller.sim import SimulatedSite, start_hardware

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)


def _real() -> float:
    return time.monotonic()  # noqa: TID251 - measuring the wall-clock bound itself


@pytest.fixture
def wire(sim_cfg, no_leaks):
    clock = ScaledClock(speed=20.0, start=START)
    site = SimulatedSite(sim_cfg, clock)
    hardware = start_hardware(sim_cfg, clock, site=site, transport="tcp")
    cfg = hardware.daemon_config()
    analyser = make_analyser(cfg.analysers[0], clock=clock)
    actuators = make_actuators(cfg, clock=clock)
    aux = make_aux_sensors(cfg, clock=clock)
    analyser.configure(output_interval_s=1)
    yield clock, site, analyser, actuators, aux
    for part in (analyser, actuators, aux):
        part.close()
    hardware.stop()


@pytest.mark.parametrize(
    ("stuck", "command", "state"),
    [("open", True, LidState.OPEN), ("closed", False, LidState.CLOSED)],
)
def test_stuck_lid_does_not_follow_its_command(wire, stuck, command, state):
    clock, site, _, actuators, _ = wire
    site.faults.lid_stuck["C2"] = stuck
    actuators.set_lid("C2", command)
    clock.sleep(site.cfg.sim.lid_delay_s * 2)
    assert actuators.lid_state("C2") is state


@pytest.mark.parametrize("leak", ["flat", "falling"])
def test_leaking_chamber_gives_a_flat_or_falling_trace(wire, leak):
    clock, site, analyser, actuators, _ = wire
    site.faults.leak["C1"] = leak
    actuators.set_lid("C1", True)
    clock.sleep(site.cfg.sim.lid_delay_s + 30)  # past the mixing of the headspace
    analyser.discard_pending()
    co2 = [analyser.read(3).co2_umol_mol for _ in range(40)]
    slope = np.polyfit(np.arange(40.0), co2, 1)[0]
    if leak == "flat":
        assert abs(slope) < 0.05
    else:
        assert slope < -0.1


def test_silent_analyser_times_out_then_recovers(wire):
    clock, site, analyser, _, _ = wire
    site.faults.analyser_silent.add("irga")
    analyser.discard_pending()  # lines the reader thread already queued
    start = _real()
    with pytest.raises(HardwareTimeoutError, match="no data within 2 s"):
        for _ in range(5):  # a line already on its way may still arrive
            analyser.read(2.0)
    assert _real() - start < real_time_bound(5 * 2.0 / clock.speed)
    site.faults.analyser_silent.clear()
    assert analyser.read(3.0).co2_umol_mol > 300


@pytest.mark.parametrize("fault", ["analyser_garbage", "analyser_truncated"])
def test_garbage_and_truncated_lines_are_refused_then_recovered(wire, fault):
    _, site, analyser, _, _ = wire
    getattr(site.faults, fault).add("irga")
    with pytest.raises(ProtocolError, match="garbled lines in a row"):
        analyser.read(30.0)
    getattr(site.faults, fault).clear()
    assert analyser.read(3.0).co2_umol_mol > 300


def test_refused_command_is_a_protocol_error(wire):
    _, site, analyser, _, _ = wire
    site.faults.analyser_nak.add("irga")
    with pytest.raises(ProtocolError, match="ACK FALSE"):
        analyser.configure(output_interval_s=1)


def test_serial_link_drops_and_returns(wire):
    clock, site, analyser, _, _ = wire
    assert analyser.read(3.0).co2_umol_mol > 300
    site.faults.link_down.add("irga")
    analyser.discard_pending()  # lines the reader thread already queued
    with pytest.raises(HardwareTimeoutError):
        for _ in range(10):  # lines already in flight may still arrive
            analyser.read(2.0)
    site.faults.link_down.clear()
    start = _real()
    reading = analyser.read(20.0)  # the link reconnects with backoff
    assert reading.co2_umol_mol > 300
    assert _real() - start < real_time_bound(20.0 / clock.speed + 1.0)


def test_modbus_exception_code_is_a_protocol_error(wire):
    _, site, _, actuators, aux = wire
    site.faults.modbus_exception[1] = 4  # SLAVE_FAILURE on the relay board
    with pytest.raises(
        ProtocolError, match=r"device 1: write coil 0 = True: exception response \(code 4\)"
    ):
        actuators.set_lid("C1", True)
    assert len(aux.read()) == 7  # the other device goes on
    site.faults.modbus_exception.clear()
    actuators.set_lid("C1", True)


def test_modbus_timeout_is_bounded(wire):
    _, site, _, _, aux = wire
    site.faults.modbus_timeout.add(2)
    start = _real()
    with pytest.raises(HardwareTimeoutError, match="device 2"):
        aux.read()
    cfg = site.cfg.modbus_device("probes")
    assert _real() - start < real_time_bound(cfg.timeout_s * (cfg.retries + 1))
    site.faults.modbus_timeout.clear()


def test_bad_crc_is_no_valid_reply(wire):
    _, site, _, actuators, _ = wire
    site.faults.modbus_bad_crc.add(1)
    with pytest.raises(HardwareTimeoutError, match="device 1"):
        actuators.lid_state("C1")
    site.faults.modbus_bad_crc.clear()
    assert actuators.lid_state("C1") is LidState.OPEN


def test_clock_jump_moves_wall_time_not_the_sample_rhythm(wire):
    clock, _, analyser, _, _ = wire
    analyser.discard_pending()  # lines the reader thread already queued
    before = analyser.read(3.0)
    clock.jump(3600.0)
    analyser.discard_pending()
    after = analyser.read(3.0)
    assert (after.time - before.time).total_seconds() > 3000
    assert 0 < after.monotonic_s - before.monotonic_s < 5
