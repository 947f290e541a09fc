"""One contract per port, run against every implementation.

``memory``: the in-memory fakes acting on the simulated site (virtual time);
``wire``: the real drivers talking to the simulated site's servers on 127.0.0.1 over real
pyserial ports (TCP and pty) and a real pymodbus server (RTU frames and Modbus TCP).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import pytest
from tracegas import needs_broker

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.config import SiteConfig
from chamberd.controller.hardware import (
    AnalyserInfo,
    LidState,
    make_actuators,
    make_analyser,
    make_aux_sensors,
)
from chamberd.controller.sim import SimulatedSite, start_hardware

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)  # noon at the site (UTC+8)


def _build(kind: str, cfg: SiteConfig):
    if kind == "memory":
        clock = FakeClock(start=START)
        site = SimulatedSite(cfg, clock)
        data = cfg.model_dump(mode="python")
        data["analysers"][0]["protocol"] = "memory"
        mem_cfg = SiteConfig.model_validate(data)
        parts = {
            "analyser": make_analyser(mem_cfg.analysers[0], clock=clock, site=site),
            "actuators": make_actuators(mem_cfg, clock=clock, backend="memory", site=site),
            "aux": make_aux_sensors(mem_cfg, clock=clock, backend="memory", site=site),
        }
        return clock, site, parts, lambda: None
    transport, protocol = kind.split("-", 1)
    clock = ScaledClock(speed=20.0, start=START)
    data = cfg.model_dump(mode="python")
    data["analysers"][0]["protocol"] = protocol
    if transport == "mqtt":  # the simulated LI-78x0 publishes to the machine's broker
        data["analysers"][0]["port"] = "mqtt://192.168.10.1:1883"
        transport = "tcp"
    if protocol == "picarro":
        data["analysers"][0]["species"] = ["CO2_dry", "CH4_dry", "H2O"]
    cfg = SiteConfig.model_validate(data)
    site = SimulatedSite(cfg, clock)
    hardware = start_hardware(cfg, clock, site=site, transport=transport)
    daemon_cfg = hardware.daemon_config()
    parts = {
        "analyser": make_analyser(daemon_cfg.analysers[0], clock=clock),
        "actuators": make_actuators(daemon_cfg, clock=clock),
        "aux": make_aux_sensors(daemon_cfg, clock=clock),
    }

    def stop() -> None:
        for part in parts.values():
            part.close()
        hardware.stop()

    return clock, site, parts, stop


@pytest.fixture(
    params=[
        "memory",
        "tcp-li850",
        "pty-li850",
        "tcp-gmp343",
        "tcp-lgr-ugga",
        "pty-picarro",
        pytest.param("mqtt-li7810", marks=needs_broker),
    ]
)
def rig(request, sim_cfg, no_leaks):
    clock, site, parts, stop = _build(request.param, sim_cfg)
    yield request.param, clock, site, parts
    stop()


class TestGasAnalyserContract:
    def test_identifies_itself(self, rig):
        _, _, _, parts = rig
        info = parts["analyser"].identify()
        assert isinstance(info, AnalyserInfo) and info.model

    def test_readings_arrive_at_the_configured_interval(self, rig):
        kind, _clock, _, parts = rig
        analyser = parts["analyser"]
        interval = 2.0 if "gmp343" in kind else 1.0
        analyser.configure(output_interval_s=interval)
        readings = [analyser.read(5 * interval) for _ in range(6)]
        steps = [b.monotonic_s - a.monotonic_s for a, b in itertools.pairwise(readings)]
        assert all(s > 0 for s in steps)
        assert sum(steps) / len(steps) == pytest.approx(interval, rel=0.35)
        for r in readings:
            assert 300 < r.co2_umol_mol < 2000 and math.isfinite(r.co2_umol_mol)
            assert r.time.tzinfo is not None
        if "gmp343" not in kind:
            assert all(r.h2o_mmol_mol is not None and 0 < r.h2o_mmol_mol < 60 for r in readings)


class TestChamberActuatorsContract:
    def test_lid_closes_and_opens_and_the_switches_follow(self, rig):
        _, clock, site, parts = rig
        act = parts["actuators"]
        assert act.lid_state("C1") is LidState.OPEN
        act.set_lid("C1", True)
        clock.sleep(site.cfg.sim.lid_delay_s / 2)
        assert act.lid_state("C1") is LidState.MOVING
        clock.sleep(site.cfg.sim.lid_delay_s / 2 + 1.0)
        assert act.lid_state("C1") is LidState.CLOSED
        assert act.lid_state("C2") is LidState.OPEN
        act.set_lid("C1", False)
        clock.sleep(site.cfg.sim.lid_delay_s + 1.0)
        assert act.lid_state("C1") is LidState.OPEN

    def test_open_all_is_the_safe_state(self, rig):
        _, clock, site, parts = rig
        act = parts["actuators"]
        for chamber in ("C1", "C2", "C3"):
            act.set_lid(chamber, True)
        act.set_pump(True)
        assert site.pump_on
        act.open_all()
        assert site.lids_commanded_open()
        clock.sleep(site.cfg.sim.lid_delay_s + 1.0)
        assert all(act.lid_state(c) is LidState.OPEN for c in ("C1", "C2", "C3", "C4"))

    def test_one_manifold_valve_at_a_time_and_the_safe_state_closes_it(self, rig):
        _, _, site, parts = rig
        act = parts["actuators"]
        act.set_manifold("zero")
        assert site.manifold_open == {"zero"}
        act.set_manifold("span2")
        assert site.manifold_open == {"span2"}
        act.set_manifold(None)
        assert site.manifold_open == set()
        act.set_manifold("span1")
        act.open_all()
        assert site.manifold_open == set() and site.lids_commanded_open()


class TestAuxSensorsContract:
    def test_every_sensor_reads_its_true_value_within_resolution(self, rig):
        _, _, site, parts = rig
        readings = parts["aux"].read()
        assert [r.sensor for r in readings] == [a.id for a in site.cfg.aux]
        for reading, cfg in zip(readings, site.cfg.aux, strict=True):
            truth = site.aux_value(cfg.quantity, cfg.chamber)
            assert reading.value == pytest.approx(truth, abs=abs(cfg.scale) / 2 + 0.05)
            assert reading.quantity == cfg.quantity and reading.chamber == cfg.chamber
