"""The simulated site's physics: deterministic, clock-driven, truthful."""

from __future__ import annotations

import datetime as dt

import pytest

from chamberd.controller.clock import FakeClock
from chamberd.controller.sim import SimulatedSite

START = dt.datetime(2026, 7, 1, 0, 0, tzinfo=dt.UTC)


def _trace(cfg, seed):
    clock = FakeClock(start=START)
    site = SimulatedSite(cfg, clock, seed=seed)
    site.command_lid("C2", True)
    values = []
    for _ in range(30):
        clock.advance(1.0)
        values.append(site.analyser_values("irga")["co2_umol_mol"])
    return values


def test_the_same_seed_gives_the_same_site(sim_cfg):
    assert _trace(sim_cfg, 3) == _trace(sim_cfg, 3)
    assert _trace(sim_cfg, 3) != _trace(sim_cfg, 4)


def test_flux_follows_soil_temperature_through_the_day(sim_cfg):
    site = SimulatedSite(sim_cfg, FakeClock(start=START))
    local_15h = dt.datetime(2026, 7, 1, 7, 0, tzinfo=dt.UTC)  # 15:00 in Asia/Shanghai
    local_03h = dt.datetime(2026, 6, 30, 19, 0, tzinfo=dt.UTC)
    assert site.soil_temperature_degc(local_15h) > site.soil_temperature_degc(local_03h) + 8
    assert site.true_flux("C1", local_15h) > 1.5 * site.true_flux("C1", local_03h)
    chamber = sim_cfg.chamber("C1").sim
    t = site.soil_temperature_degc(local_15h, "C1")
    assert site.true_flux("C1", local_15h) == pytest.approx(
        chamber.r10_umol_m2_s * chamber.q10 ** ((t - 10) / 10)
    )


def test_lid_moves_after_its_delay_and_the_closure_is_recorded(sim_cfg):
    clock = FakeClock(start=START)
    site = SimulatedSite(sim_cfg, clock)
    site.command_lid("C1", True)
    clock.advance(1.0)
    assert not site.closed_switch("C1") and not site.open_switch("C1")
    clock.advance(sim_cfg.sim.lid_delay_s)
    assert site.closed_switch("C1")
    clock.advance(100.0)
    site.command_lid("C1", False)
    clock.advance(sim_cfg.sim.lid_delay_s + 1)
    (truth,) = site.closures()
    assert truth.chamber == "C1" and truth.opened_at is not None
    assert (truth.opened_at - truth.sealed_at).total_seconds() == pytest.approx(101.0, abs=0.01)
    assert truth.flux_umol_m2_s == pytest.approx(site.true_flux("C1", truth.sealed_at))


def test_the_analyser_sees_ambient_air_when_no_chamber_is_routed(sim_cfg):
    clock = FakeClock(start=START)
    site = SimulatedSite(sim_cfg, clock)
    clock.advance(60.0)
    values = site.analyser_values("irga")
    dry = values["co2_umol_mol"] / (1 - values["h2o_mmol_mol"] / 1000)
    assert dry == pytest.approx(site.ambient_co2_umol_mol(clock.now()), abs=1.5)
