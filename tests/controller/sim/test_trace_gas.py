"""The simulated site's CH4 and N2O: truth, headspace, ebullition, lag; and the simulated
LI-7810/7820 publishing through a real MQTT broker to the real driver, with faults
(stale timestamps, silence, garbage, a broker that goes down and comes back).

Tolerances: the headspace slope of a noise-free closure recovers the true flux within
0.5 % (k = 0: linear headspace); ebullition steps are reproducible for a seed.
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from tracegas import needs_broker, needs_mosquitto, private_broker, trace_site

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.config import parse_config
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware import make_analyser
from chamberd.controller.sim import SimulatedSite, start_hardware
from chamberd.fitting import dry_air_mol_m2

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)  # noon at the site (UTC+8)
PADDY = {"ch4_nmol_m2_s": 40.0, "ch4_q10": 3.0, "n2o_nmol_m2_s": 0.5, "saturation_per_s": 0}
UPLAND = {"ch4_nmol_m2_s": -1.5, "ch4_q10": 1.4, "n2o_nmol_m2_s": 0.1, "saturation_per_s": 0}


def _site(make_site_dict, protocols=("li7810",), chamber_sim=None, clock=None, **kw):
    data = trace_site(make_site_dict, protocols, chamber_sim=chamber_sim, **kw)
    cfg = parse_config(data)
    clock = clock or FakeClock(start=START)
    return SimulatedSite(cfg, clock), clock


def test_ch4_uptake_and_emission_scale_with_temperature(make_site_dict):
    paddy, _ = _site(make_site_dict, chamber_sim=PADDY)
    upland, _ = _site(make_site_dict, chamber_sim=UPLAND)
    warm, cold = START, START + dt.timedelta(hours=12)  # 12:00 and 00:00 local
    assert paddy.soil_temperature_degc(warm) > paddy.soil_temperature_degc(cold)
    assert paddy.true_ch4_flux("C1", warm) > paddy.true_ch4_flux("C1", cold) > 0
    assert upland.true_ch4_flux("C1", warm) < upland.true_ch4_flux("C1", cold) < 0
    t = paddy.soil_temperature_degc(warm, "C1")
    assert paddy.true_ch4_flux("C1", warm) == pytest.approx(40.0 * 3.0 ** ((t - 10) / 10))
    assert paddy.true_n2o_flux("C1", warm) > paddy.true_n2o_flux("C1", cold) > 0


def _closure(site, clock, chamber="C1", seconds=120, analyser="irga1"):
    site.command_lid(chamber, True)
    clock.advance(site.cfg.sim.lid_delay_s + 0.5)
    truth = site.closures()[-1]
    times, ch4, n2o = [], [], []
    for _ in range(seconds):
        clock.advance(1.0)
        values = site.trace_gas_values(analyser)
        times.append((clock.now() - truth.sealed_at).total_seconds())
        ch4.append(values["ch4_nmol_mol"])
        n2o.append(values["n2o_nmol_mol"])
    site.command_lid(chamber, False)
    clock.advance(60)
    site.closures()
    return truth, np.array(times), np.array(ch4), np.array(n2o)


def _air(site, truth):
    geometry = site.cfg.chamber(truth.chamber).geometry_on(truth.sealed_at.date())
    return dry_air_mol_m2(
        volume_cm3=geometry.volume_cm3,
        area_cm2=geometry.area_cm2,
        pressure_kpa=site.cfg.sim.pressure_kpa,
        temperature_degc=site.air_temperature_degc(truth.sealed_at),
        h2o_mmol_mol=site.ambient_h2o_mmol_mol(truth.sealed_at),
    )


@pytest.mark.parametrize("sim", [PADDY, UPLAND], ids=["paddy", "upland"])
def test_headspace_slope_recovers_the_true_fluxes(make_site_dict, sim):
    site, clock = _site(make_site_dict, chamber_sim=sim)
    truth, t, ch4, n2o = _closure(site, clock)
    keep = t > 20  # after the transport delay and the mixing volume
    air = _air(site, truth)
    ch4_flux = np.polyfit(t[keep], ch4[keep], 1)[0] * air
    n2o_flux = np.polyfit(t[keep], n2o[keep], 1)[0] * air
    assert ch4_flux == pytest.approx(truth.ch4_flux_nmol_m2_s, rel=0.005)
    assert n2o_flux == pytest.approx(truth.n2o_flux_nmol_m2_s, rel=0.005)
    assert truth.ch4_c0_nmol_mol == pytest.approx(site.cfg.sim.ambient_ch4_nmol_mol)


def test_ebullition_steps_are_seeded_and_seen_in_the_headspace(make_site_dict):
    sim = {**PADDY, "ebullition_per_h": 60.0, "ebullition_nmol_mol": 200.0}
    runs, sites = [], []
    for _ in range(2):
        site, clock = _site(make_site_dict, chamber_sim=sim)
        sites.append(site)
        runs.append(_closure(site, clock, seconds=300))
    (truth, t, ch4, _), (again, *_rest) = runs
    bubbles = truth.bubbles()
    assert bubbles and bubbles == again.bubbles()  # one seed, one set of bubbles
    jumps = np.diff(ch4)
    assert np.sum(jumps > 50) >= 1  # steps the analyser sees (smoothed by the mixing)
    # the rise is the diffusive flux plus the bubbles that reached the cell by the end
    keep = t > 20
    start, end = t[keep][0], t[keep][-1]
    offsets = [((at - truth.sealed_at).total_seconds(), step) for at, step in bubbles]
    seen = sum(step for at, step in offsets if start + 2 < at < end - 15)
    # bubbles near either end of the window reached the cell only in part
    partial = sum(step for at, step in offsets if start - 15 <= at <= start + 2 or at >= end - 15)
    diffusive = truth.ch4_flux_nmol_m2_s / _air(sites[0], truth) * (end - start)
    rise = ch4[keep][-1] - ch4[keep][0]
    assert abs(rise - (diffusive + seen)) <= 10 + partial


def test_an_analysers_lag_delays_what_it_sees(make_site_dict):
    rises = {}
    for lag in (0.0, 12.0):
        data = trace_site(make_site_dict, ("li7810",), chamber_sim=PADDY)
        data["sim"]["lag_s"] = {"irga1": lag}
        site = SimulatedSite(parse_config(data), FakeClock(start=START))
        _, t, ch4, _ = _closure(site, site.clock, seconds=60)
        rises[lag] = t[np.argmax(ch4 > ch4[0] + 5)]
    assert rises[12.0] - rises[0.0] == pytest.approx(12.0, abs=1.5)


# --- the LI-7810/7820 simulator through a real broker --------------------------------------


@pytest.fixture
def mqtt_rig(make_site_dict, no_leaks):
    made = []

    def make(protocols=("li7810",), broker="mqtt://127.0.0.1:1883", style="mixed"):
        data = trace_site(make_site_dict, protocols, broker=broker, chamber_sim=PADDY)
        cfg = parse_config(data)
        clock = ScaledClock(speed=10.0, start=START)
        site = SimulatedSite(cfg, clock)
        hardware = start_hardware(cfg, clock, site=site)
        for publisher in hardware.publishers.values():
            publisher.style = style
        drivers = {a.id: make_analyser(a, clock=clock) for a in hardware.daemon_config().analysers}
        made.append((hardware, drivers))
        return site, hardware, drivers

    yield make
    for hardware, drivers in made:
        for driver in drivers.values():
            driver.close()
        hardware.stop()


@needs_broker
@pytest.mark.parametrize("style", ["pairs", "scalars", "mixed"])
def test_simulated_li7810_and_li7820_through_the_broker(mqtt_rig, style):
    _site, hardware, drivers = mqtt_rig(("li7810", "li7820"), style=style)
    roots = {p.topic_root for p in hardware.publishers.values()}
    assert len(roots) == 2 and all(r.startswith("chamberd-sim/") for r in roots)
    assert {e["topic_root"] for e in hardware.endpoints()["analysers"]} == roots
    for driver in drivers.values():
        driver.configure(output_interval_s=1.0)
    ch4 = [drivers["irga1"].read(10.0) for _ in range(3)]
    n2o = [drivers["irga2"].read(10.0) for _ in range(3)]
    assert all(abs(r.ch4_nmol_mol - 1950) < 5 and abs(r.co2_umol_mol - 420) < 40 for r in ch4)
    assert all(r.dry and r.n2o_nmol_mol is None for r in ch4)
    assert all(abs(r.n2o_nmol_mol - 335) < 3 and r.ch4_nmol_mol is None for r in n2o)
    assert all(8 < r.h2o_mmol_mol < 16 for r in ch4 + n2o)  # ppm on the wire, mmol/mol here
    times = [r.monotonic_s for r in ch4]
    assert times == sorted(times) and len(set(times)) == 3


@needs_broker
def test_simulated_stale_silent_and_garbage_faults(mqtt_rig):
    site, _, drivers = mqtt_rig()
    driver = drivers["irga1"]
    driver.configure(output_interval_s=1.0)
    driver.read(10.0)
    site.faults.stale.add("irga1")
    with pytest.raises(HardwareTimeoutError, match=r"stale data \(timestamps stopped"):
        driver.read(5.0)
    site.faults.stale.clear()
    driver.read(10.0)
    site.faults.analyser_silent.add("irga1")
    driver.discard_pending()
    with pytest.raises(HardwareTimeoutError, match="no data within 3 s"):
        driver.read(3.0)
    site.faults.analyser_silent.clear()
    site.faults.analyser_garbage.add("irga1")
    with pytest.raises(ProtocolError, match="garbled messages in a row"):
        driver.read(60.0)
    site.faults.analyser_garbage.clear()
    assert driver.read(10.0).ch4_nmol_mol > 1900


@needs_mosquitto
def test_broker_down_then_back(mqtt_rig):
    with private_broker() as broker:
        _site, hardware, drivers = mqtt_rig(broker=broker.url)
        driver = drivers["irga1"]
        driver.configure(output_interval_s=1.0)
        assert driver.read(10.0).ch4_nmol_mol > 1900
        broker.stop()
        with pytest.raises(HardwareTimeoutError, match=r"broker not connected"):
            for _ in range(30):  # what was queued before the broker died comes first
                driver.read(5.0)
        broker.start()  # the same port: paho reconnects both ends with back-off
        assert driver.read(60.0).ch4_nmol_mol > 1900
        assert driver.link.connects >= 2
        for driver_ in drivers.values():
            driver_.close()
        hardware.stop()


@needs_mosquitto
def test_ensure_broker_starts_a_private_mosquitto_where_none_answers(no_leaks):
    from tracegas import free_port

    from chamberd.controller.clock import SystemClock
    from chamberd.controller.sim.broker import broker_reachable, ensure_broker

    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    with ensure_broker(nowhere, SystemClock()) as url:
        assert url != nowhere and broker_reachable(url)
    assert not broker_reachable(url)
    machine = "mqtt://127.0.0.1:1883"
    if broker_reachable(machine):  # one answers: it is used, nothing started
        with ensure_broker(machine, SystemClock()) as same:
            assert same == machine


@pytest.mark.parametrize(
    ("protocol", "has", "lacks"),
    [
        ("li7810", ("ch4_nmol_mol", "co2_umol_mol"), ("n2o_nmol_mol",)),
        ("li7820", ("n2o_nmol_mol", "h2o_mmol_mol"), ("co2_umol_mol", "ch4_nmol_mol")),
        ("lgr-n2oco", ("n2o_nmol_mol",), ("ch4_nmol_mol",)),
        ("picarro", ("n2o_nmol_mol", "ch4_nmol_mol", "co2_umol_mol"), ()),
    ],
)
def test_memory_trace_gas_analyser_in_virtual_time(make_site_dict, protocol, has, lacks):
    from chamberd.controller.hardware.memory import MemoryTraceGasAnalyser

    site, clock = _site(make_site_dict, (protocol,), chamber_sim=PADDY)
    analyser = make_analyser(site.cfg.analyser("irga1"), clock=clock, site=site, memory=True)
    assert isinstance(analyser, MemoryTraceGasAnalyser)
    analyser.configure(output_interval_s=1.0)
    site.command_lid("C1", True)
    readings = [analyser.read(5.0) for _ in range(90)]
    steps = [b.monotonic_s - a.monotonic_s for a, b in itertools.pairwise(readings)]
    assert steps == [1.0] * 89
    for name in has:
        assert all(getattr(r, name) is not None for r in readings), name
    for name in lacks:
        assert all(getattr(r, name) is None for r in readings), name
    assert all(r.dry for r in readings)
    if "ch4_nmol_mol" in has:  # a paddy: CH4 rises in the shut chamber
        assert readings[-1].ch4_nmol_mol > readings[0].ch4_nmol_mol + 20
    site.faults.stale.add("irga1")
    with pytest.raises(HardwareTimeoutError, match="stale"):
        analyser.read(5.0)
