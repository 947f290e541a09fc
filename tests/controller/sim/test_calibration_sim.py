"""The simulated site's calibration side: analyser drift, instrument calibration, the gas
manifold, GMP343 compensation physics, a curved response, and the plate / slow lid / broken
switch / breath / low flow faults."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from chamberd.controller.clock import FakeClock
from chamberd.controller.config import SiteConfig, parse_config
from chamberd.controller.errors import ConfigError, ProtocolError
from chamberd.controller.hardware import LI8x0Calibration, make_actuators, make_analyser
from chamberd.controller.sim import SimulatedSite

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)


def _cfg(sim_cfg, protocol="li850", **sim) -> SiteConfig:
    data = sim_cfg.model_dump(mode="python")
    data["analysers"][0]["protocol"] = protocol
    data["sim"] = {**data["sim"], "analyser_noise_umol_mol": 0.0, **sim}
    return SiteConfig.model_validate(data)


def _site(cfg):
    clock = FakeClock(start=START)
    return clock, SimulatedSite(cfg, clock)


def test_output_is_offset_plus_gain_times_true_drifting_in_time(sim_cfg):
    drift = {
        "span_gain": 1.02,
        "span_drift_per_day": 0.05 / 7,
        "zero_offset_umol_mol": 2.0,
        "zero_drift_umol_mol_per_day": 0.5,
    }
    clock_true, true_site = _site(_cfg(sim_cfg))
    clock_off, off_site = _site(_cfg(sim_cfg, **drift))
    for days in (0.0, 3.5, 7.0):
        when = START + dt.timedelta(days=days)
        for clock in (clock_true, clock_off):
            clock.advance((when - clock.now()).total_seconds())
        true = true_site.analyser_values("irga")["co2_umol_mol"]
        seen = off_site.analyser_values("irga")["co2_umol_mol"]
        gain = 1.02 + 0.05 / 7 * days
        offset = 2.0 + 0.5 * days
        assert seen == pytest.approx(offset + gain * true, rel=1e-9)
        assert off_site.span_gain("irga", when) == pytest.approx(gain)
        assert off_site.zero_offset_umol_mol("irga", when) == pytest.approx(offset)
    assert off_site.span_gain("irga", START + dt.timedelta(days=7)) == pytest.approx(1.07)


def test_per_analyser_drift_overrides_the_site_default(sim_cfg):
    cfg = _cfg(sim_cfg, span_gain=1.01, drift={"irga": {"span_gain": 0.97}})
    _, site = _site(cfg)
    assert site.span_gain("irga") == pytest.approx(0.97)
    data = cfg.model_dump(mode="python")
    data["sim"]["drift"] = {"nope": {"span_gain": 1.0}}
    with pytest.raises(ConfigError, match="sim.drift.nope: no analyser"):
        parse_config(data)


def test_drift_leaves_the_flux_truth_alone(sim_cfg):
    clock, site = _site(_cfg(sim_cfg, span_gain=1.05))
    _, plain = _site(_cfg(sim_cfg))
    for s in (site, plain):
        s.command_lid("C1", True)
    clock.advance(60.0)
    plain.clock.advance(60.0)
    (a,) = site.closures()
    (b,) = plain.closures()
    assert a.flux_umol_m2_s == b.flux_umol_m2_s == site.true_flux("C1", a.sealed_at)


def test_memory_analyser_zero_and_span_in_virtual_time(sim_cfg):
    cfg = _cfg(sim_cfg, "memory", span_gain=0.96, zero_offset_umol_mol=-4.0)
    clock, site = _site(cfg)
    analyser = make_analyser(cfg.analysers[0], clock=clock, site=site)
    actuators = make_actuators(cfg, clock=clock, backend="memory", site=site)
    assert isinstance(analyser, LI8x0Calibration)
    actuators.set_manifold("zero")
    clock.advance(120.0)
    assert analyser.read(2.0).co2_umol_mol == pytest.approx(-4.0, abs=0.01)
    analyser.zero_co2(START.date())
    assert analyser.read(2.0).co2_umol_mol == pytest.approx(0.0, abs=0.01)
    actuators.set_manifold("span1")
    clock.advance(120.0)
    analyser.span_co2(1000.0, START.date())
    assert analyser.read(2.0).co2_umol_mol == pytest.approx(1000.0, abs=0.01)
    assert analyser.calibration_state()["cal/co2lastspan"] == "2026-07-01"
    assert site.span_gain("irga") == pytest.approx(1.0, abs=1e-6)
    actuators.set_manifold("zero")
    clock.advance(120.0)
    with pytest.raises(ProtocolError, match="refused"):
        analyser.span_co2(1000.0, START.date())  # a span on zero gas cannot be right
    actuators.open_all()
    assert site.manifold_open == set()


def test_manifold_gas_arrives_after_the_delay_and_purges_exponentially(sim_cfg):
    cfg = _cfg(sim_cfg, manifold_delay_s=4.0, manifold_purge_s=6.0)
    clock, site = _site(cfg)
    site.command_manifold("span1", True)
    clock.advance(3.9)
    assert site.manifold_gas_fraction("irga") == 0.0
    clock.advance(0.1 + 6.0)
    assert site.manifold_gas_fraction("irga") == pytest.approx(1 - math.exp(-1), rel=1e-6)
    clock.advance(120.0)
    assert site.analyser_values("irga")["co2_umol_mol"] == pytest.approx(1000.0, abs=1e-6)
    assert site.analyser_values("irga")["h2o_mmol_mol"] == pytest.approx(0.0, abs=0.05)  # dry
    site.command_manifold("span1", False)
    clock.advance(4.0 + 6.0)
    assert site.manifold_gas_fraction("irga") == pytest.approx(math.exp(-1), rel=1e-6)


def test_a_manifold_slot_feeds_only_its_analysers(sim_cfg):
    data = sim_cfg.model_dump(mode="python")
    data["analysers"].append({"id": "irga2", "protocol": "li850", "port": "sim://irga2"})
    data["calibration"]["manifold"][1]["analysers"] = ["irga2"]
    cfg = SiteConfig.model_validate(data)
    clock, site = _site(cfg)
    site.command_manifold("span1", True)
    clock.advance(100.0)
    assert site.manifold_gas_fraction("irga") == 0.0
    assert site.manifold_gas_fraction("irga2") == pytest.approx(1.0)


def test_gmp343_compensation_physics(sim_cfg):
    clock, site = _site(_cfg(sim_cfg, "gmp343"))
    compensated = site.analyser_values("irga")["co2_umol_mol"]
    probe = site.probe["irga"]
    probe.pressure_on = False  # assumes 1013.25 hPa at a 995 hPa site
    assert site.analyser_values("irga")["co2_umol_mol"] / compensated == pytest.approx(
        995.0 / 1013.25
    )
    probe.pressure_on = True
    probe.temperature_on = False  # assumes 25 degC
    t = site.air_temperature_degc(clock.now())
    assert site.analyser_values("irga")["co2_umol_mol"] / compensated == pytest.approx(
        (25.0 + 273.15) / (t + 273.15)
    )
    probe.temperature_on = True
    probe.humidity_on = False
    assert site.analyser_values("irga")["co2_umol_mol"] > compensated  # wet gas reads high
    probe.humidity_on = True
    probe.oxygen_pct = 0.0  # told there is no oxygen in the cell: reads low
    assert site.analyser_values("irga")["co2_umol_mol"] < compensated


def test_plate_means_no_soil_flux_but_a_leak_still_acts(sim_cfg):
    clock, site = _site(_cfg(sim_cfg))
    site.faults.plate.add("C1")
    site.command_lid("C1", True)
    clock.advance(sim_cfg.sim.lid_delay_s + 20.0)
    start = site.analyser_values("irga")["co2_umol_mol"]
    clock.advance(100.0)
    assert site.analyser_values("irga")["co2_umol_mol"] == pytest.approx(start, abs=0.5)
    (truth,) = site.closures()
    assert truth.plate and truth.flux_umol_m2_s == 0.0
    site.command_lid("C1", False)
    clock.advance(120.0)
    site.faults.leak["C1"] = "falling"
    site.command_lid("C1", True)
    clock.advance(sim_cfg.sim.lid_delay_s + 20.0)
    start = site.analyser_values("irga")["co2_umol_mol"]
    clock.advance(100.0)
    assert site.analyser_values("irga")["co2_umol_mol"] < start - 5.0


def test_slow_lid_takes_its_extra_seconds(sim_cfg):
    clock, site = _site(_cfg(sim_cfg))
    site.faults.slow_lid["C2"] = 7.0
    site.command_lid("C2", True)
    clock.advance(sim_cfg.sim.lid_delay_s + 0.5)
    assert not site.closed_switch("C2")
    clock.advance(7.0)
    assert site.closed_switch("C2")
    site.command_lid("C2", False)
    clock.advance(sim_cfg.sim.lid_delay_s + 6.5)
    assert not site.open_switch("C2")
    clock.advance(1.0)
    assert site.open_switch("C2")


@pytest.mark.parametrize(
    ("broken", "never"), [("closed", {"closed"}), ("open", {"open"}), ("both", {"closed", "open"})]
)
def test_a_broken_switch_never_makes_while_the_lid_moves(sim_cfg, broken, never):
    clock, site = _site(_cfg(sim_cfg))
    site.faults.switch_broken["C2"] = broken
    site.command_lid("C2", True)
    clock.advance(sim_cfg.sim.lid_delay_s + 1.0)
    assert site.lid_position("C2") == 1.0
    assert site.closed_switch("C2") is ("closed" not in never)
    assert not site.open_switch("C2")
    site.command_lid("C2", False)
    clock.advance(sim_cfg.sim.lid_delay_s + 1.0)
    assert site.lid_position("C2") == 0.0
    assert site.open_switch("C2") is ("open" not in never)
    site.faults.switch_broken.clear()
    assert site.open_switch("C2")


def test_breath_leaks_into_a_leaking_chamber_only(sim_cfg):
    """Breath around a chamber sealed on the plate: through a leak, a pulse of a few
    hundred umol/mol peaking 20 s after sealing (plus the loop's transport and mixing),
    flushed by the leak after; through a tight seal, nothing. It acts on closures that seal
    while someone breathes, not on one already recorded."""
    from chamberd.controller.sim.site import BREATH_AT_S, BREATH_PEAK_UMOL_MOL, BREATH_RISE_S

    def closure(site, clock):
        site.command_lid("C1", True)
        clock.advance(sim_cfg.sim.lid_delay_s)
        co2 = []
        for _ in range(90):
            clock.advance(1.0)
            co2.append(site.analyser_values("irga")["co2_umol_mol"])
        site.command_lid("C1", False)
        clock.advance(120.0)
        return [c - co2[0] for c in co2]

    clock, site = _site(_cfg(sim_cfg))
    site.faults.plate.add("C1")
    site.faults.breath.add("C1")
    assert max(abs(c) for c in closure(site, clock)) < 0.5  # tight: no breath gets in
    site.faults.leak["C1"] = "flat"
    pulse = closure(site, clock)
    peak = max(pulse)
    assert 0.7 * BREATH_PEAK_UMOL_MOL < peak <= BREATH_PEAK_UMOL_MOL
    assert BREATH_AT_S + BREATH_RISE_S <= pulse.index(peak) + 1 <= BREATH_AT_S + 30
    assert pulse[5] == pytest.approx(0.0, abs=0.5) and pulse[-1] < 0.2 * peak
    site.faults.breath.clear()
    assert max(abs(c) for c in closure(site, clock)) < 0.5  # leaking, nobody breathing


def test_curvature_bends_the_raw_response(sim_cfg):
    _, straight = _site(_cfg(sim_cfg))
    _, curved = _site(_cfg(sim_cfg, span_gain=1.01, co2_curvature_per_umol_mol=5e-5))
    true = straight.analyser_values("irga")["co2_umol_mol"]
    seen = curved.analyser_values("irga")["co2_umol_mol"]
    assert seen == pytest.approx(1.01 * (true + 5e-5 * true**2), rel=1e-9)
    data = sim_cfg.model_dump(mode="python")
    data["sim"]["co2_curvature_per_umol_mol"] = 0.1
    with pytest.raises(ConfigError, match="co2_curvature_per_umol_mol"):
        parse_config(data)


def test_low_flow_reads_low(sim_cfg):
    _, site = _site(_cfg(sim_cfg))
    assert site.analyser_values("irga")["flow_l_min"] == pytest.approx(0.8, abs=0.02)
    site.faults.low_flow.add("irga")
    assert site.analyser_values("irga")["flow_l_min"] == pytest.approx(0.2, abs=0.02)


def test_an_uncompensated_probe_at_altitude_reads_several_percent_low(sim_cfg):
    _, site = _site(_cfg(sim_cfg, "gmp343", pressure_kpa=85.0))  # about 1400 m
    assert site.probe["irga"].pressure_hpa == pytest.approx(850.0)
    set_up = site.analyser_values("irga")["co2_umol_mol"]
    site.probe["irga"].pressure_on = False
    ratio = site.analyser_values("irga")["co2_umol_mol"] / set_up
    assert ratio == pytest.approx(850.0 / 1013.25) and ratio < 0.85
    assert site.aux_value("pressure_kpa", None) == 85.0
