"""The simulator's truth: fitting its closures with the engine recovers the true flux.

Tolerance, over 32 closures (4 chambers, every 3 h of a day): each exponential flux within
3.5 of its own standard errors of the true soil efflux, the median error under 1.5 % and
the largest under 8 % (the 8 % is the weakest chamber, 1 umol m-2 s-1 at night, where the
analyser noise of 0.3 umol mol-1 dominates); the linear flux biased low by the chamber's
saturation (median 0.8 of the truth). The other sources of error are deliberate: the
mixing volume and transport delay at the start of the closure, and C'0 taken from the
first 10 s as the firmware does.
"""

from __future__ import annotations

import datetime as dt
import statistics

import numpy as np
import pytest

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.hardware import make_actuators, make_analyser
from chamberd.controller.hardware.memory import MemoryActuators, MemoryAnalyser
from chamberd.controller.sim import SimulatedSite, start_hardware
from chamberd.fitting import fit_closure

START = dt.datetime(2026, 7, 1, 0, 0, tzinfo=dt.UTC)


def _measure(site, analyser, actuators, clock, chamber, seconds=120):
    """Close one lid, log 1 Hz readings from the seal on, open it; return the fit."""
    actuators.set_lid(chamber, True)
    clock.sleep(site.cfg.sim.lid_delay_s + 0.5)
    truth = site.closures()[-1]
    analyser.discard_pending()
    times, co2, h2o = [], [], []
    while True:
        reading = analyser.read(5.0)
        elapsed = (reading.time - truth.sealed_at).total_seconds()
        if elapsed > seconds:
            break
        times.append(elapsed)
        co2.append(reading.co2_umol_mol)
        h2o.append(reading.h2o_mmol_mol)
    actuators.set_lid(chamber, False)
    clock.sleep(site.cfg.sim.lid_delay_s + 60)  # flush before the next closure
    geometry = site.cfg.chamber(chamber).geometry_on(truth.sealed_at.date())
    fit = fit_closure(
        np.array(times),
        np.array(co2),
        h2o_mmol_mol=np.array(h2o),
        pressure_kpa=99.5,
        temperature_degc=site.air_temperature_degc(truth.sealed_at),
        volume_cm3=geometry.volume_cm3,
        area_cm2=geometry.area_cm2,
        dead_band_s=20.0,
        end_s=float(seconds),
        precision_mf=0.3,
    )
    return truth, fit


def test_exponential_recovers_the_true_flux_and_linear_is_biased_low(sim_cfg):
    clock = FakeClock(start=START)
    site = SimulatedSite(sim_cfg, clock)
    analyser = MemoryAnalyser(site, "irga", clock=clock)
    actuators = MemoryActuators(site)
    exp_errors, z_scores, lin_ratios = [], [], []
    for hour in range(0, 24, 3):
        clock.advance((START + dt.timedelta(hours=hour) - clock.now()).total_seconds())
        for chamber in ("C1", "C2", "C3", "C4"):
            truth, fit = _measure(site, analyser, actuators, clock, chamber)
            assert fit.model == "exponential", fit.model_reason
            exp_errors.append(fit.exp_flux / truth.flux_umol_m2_s - 1)
            z_scores.append((fit.exp_flux - truth.flux_umol_m2_s) / fit.exp_flux_se)
            lin_ratios.append(fit.lin_flux / truth.flux_umol_m2_s)
    assert len(exp_errors) == 32
    assert max(abs(z) for z in z_scores) < 3.5
    assert statistics.median(abs(e) for e in exp_errors) < 0.015
    assert max(abs(e) for e in exp_errors) < 0.08
    assert statistics.median(lin_ratios) < 0.95  # the straight line misses the curvature
    assert min(lin_ratios) < max(lin_ratios)


def test_the_same_holds_over_the_wire(sim_cfg, no_leaks):
    clock = ScaledClock(speed=30.0, start=START + dt.timedelta(hours=6))
    site = SimulatedSite(sim_cfg, clock)
    with start_hardware(sim_cfg, clock, site=site, transport="tcp") as hardware:
        cfg = hardware.daemon_config()
        analyser = make_analyser(cfg.analysers[0], clock=clock)
        actuators = make_actuators(cfg, clock=clock)
        try:
            analyser.configure(output_interval_s=1)
            truth, fit = _measure(site, analyser, actuators, clock, "C3")
        finally:
            analyser.close()
            actuators.close()
    assert fit.exp_flux == pytest.approx(truth.flux_umol_m2_s, rel=0.05)
    assert fit.lin_flux < fit.exp_flux
