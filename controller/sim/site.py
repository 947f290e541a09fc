"""A simulated site: soil, chambers, lids and analysers, with a known truth and faults.

The physics, per chamber:

* soil CO2 efflux F(t) = R10 Q10^((Ts(t) - 10) / 10) with a diel soil temperature
  Ts(t) = mean + amplitude sin(2 pi (local hour - 9) / 24), peaking at 15:00 local;
* when the lid seals at t_c, the dry headspace mole fraction rises from the ambient value
  C0 along C'(t) = C'x - (C'x - C0) exp(-k (t - t_c)) with slope F(t_c) / dry air at t_c:
  the exponential model is right and a straight line biased low; H2O rises the same way;
* after the lid opens the headspace flushes back to ambient within a minute;
* the analyser sees the chamber routed to it (its valve open, or else the chamber of its
  group whose lid is shut) through a transport delay and a first-order mixing volume,
  plus white noise, and reports CO2 in moist air, as the instruments do.

Lids move ``lid_delay_s`` after a command; their end-switches follow. Everything is a pure
function of the injected clock's time and the commands received, so the site is
deterministic for a seed and runs at any speed, virtual time included.

The analysers have errors of their own: each reads ``offset(t) + gain(t) * true`` (the
``[sim]`` drift fields, linear in days since the site started), then applies its user
calibration, which the LI-8x0 zero and span commands really change (:meth:`calibrate`).
A GMP343 reads the gas scaled by how far its compensation settings (pressure, temperature,
humidity, oxygen) are from the conditions in its cell (:class:`ProbeSettings`). A
calibration manifold (``[calibration] manifold``) sends a cylinder's gas (``[sim]
cylinders``) to the analysers after a transport delay, purging the cell exponentially.

Faults are switched at run time through :attr:`SimulatedSite.faults` (see :class:`Faults`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import zoneinfo
from dataclasses import dataclass, field

import numpy as np

from chamberd.controller.clock import Clock
from chamberd.controller.config import ChamberConfig, SiteConfig
from chamberd.fitting import dry_air_mol_m2

__all__ = ["ClosureTruth", "Faults", "InstrumentCalibration", "ProbeSettings", "SimulatedSite"]

_NODES, _WEIGHTS = np.polynomial.laguerre.laggauss(8)  # mixing-volume kernel quadrature
_TRANSPORT_S = 2.0
_FLUSH_S = 20.0
_CELL_TEMPERATURE_DEGC = 51.5
_FLOW_L_MIN, _LOW_FLOW_L_MIN = 0.80, 0.20
_CAL_AVERAGE_S = 5.0  # the LI-8x0 averages 5 s on a zero or span command (LI-COR manual)
# the GMP343 cell: reference conditions of its factory calibration, and the simulated
# gas's humidity and oxygen (the simulator's assumptions, not Vaisala figures)
_PROBE_REFERENCE = {"pressure_hpa": 1013.25, "temperature_degc": 25.0, "humidity_pct": 0.0}
_PROBE_HUMIDITY_PCT, _PROBE_OXYGEN_PCT = 50.0, 20.95
_HUMIDITY_EFFECT_PER_PCT = 0.0002  # relative reading change per % RH not compensated
_OXYGEN_EFFECT_PER_PCT = -0.0004  # relative reading change per % O2 not compensated
# the breath test (fault ``breath``): the helper reaches the leaking spot BREATH_AT_S after
# the lid sealed; breath (~40 000 umol/mol) seeping in through the leak raises the headspace
# by a pulse peaking at BREATH_PEAK_UMOL_MOL BREATH_RISE_S later, which the leak then flushes
# (gamma-variate shape; the simulator's assumption of the right order: "a leak lets in
# hundreds", calibration.procedures)
BREATH_AT_S, BREATH_RISE_S, BREATH_PEAK_UMOL_MOL = 10.0, 10.0, 300.0


@dataclass
class Faults:
    """Faults of the simulated hardware, switched at run time (each a set or mapping).

    ``lid_stuck``: chamber -> "open" | "closed"; ``leak``: chamber -> "flat" | "falling";
    ``analyser_silent``, ``analyser_garbage``, ``analyser_truncated``, ``analyser_nak``:
    analyser ids; ``link_down``: analyser ids whose TCP link is dropped (connections closed
    and refused until removed); ``modbus_exception``: Modbus device id -> exception code;
    ``modbus_timeout``: device ids that never answer; ``modbus_bad_crc``: device ids whose
    RTU replies carry a wrong CRC. ``plate``: chambers closed on an impermeable plate (no
    soil flux; a ``leak`` still acts); ``slow_lid``: chamber -> extra seconds of lid travel;
    ``low_flow``: analyser ids whose sample flow reads low; ``probe_errors``: analyser id ->
    error lines a GMP343 reports to ``ERRS``. ``stale``: trace-gas analyser ids whose
    records keep their last timestamp; ``fit_invalid``: LGR ids whose records carry an
    invalid Fit_Flag; ``analyser_err``: Picarro id -> the code of its ``ERR:`` replies.
    ``switch_broken``: chamber -> "closed" | "open" | "both": that end-switch never makes
    (a broken switch or a cut cable). ``breath``: chambers someone breathes around (the
    blank procedure's breath test): a lid that seals while it is set and leaks (``leak``)
    lets in a pulse of breath CO2 (:data:`BREATH_PEAK_UMOL_MOL`); a tight seal, nothing.
    A broker that is down: stop the publisher's broker, or point the driver at a closed
    port (tests start a private Mosquitto for that).
    """

    lid_stuck: dict[str, str] = field(default_factory=dict)
    leak: dict[str, str] = field(default_factory=dict)
    analyser_silent: set[str] = field(default_factory=set)
    analyser_garbage: set[str] = field(default_factory=set)
    analyser_truncated: set[str] = field(default_factory=set)
    analyser_nak: set[str] = field(default_factory=set)
    link_down: set[str] = field(default_factory=set)
    modbus_exception: dict[int, int] = field(default_factory=dict)
    modbus_timeout: set[int] = field(default_factory=set)
    modbus_bad_crc: set[int] = field(default_factory=set)
    plate: set[str] = field(default_factory=set)
    slow_lid: dict[str, float] = field(default_factory=dict)
    low_flow: set[str] = field(default_factory=set)
    probe_errors: dict[str, list[str]] = field(default_factory=dict)
    # trace-gas analysers: timestamps that stop advancing (the instrument's measurement
    # froze, its broker or interface keeps answering), an LGR fit flagged invalid, a
    # Picarro answering ERR:<code> to every measurement command
    stale: set[str] = field(default_factory=set)
    fit_invalid: set[str] = field(default_factory=set)
    analyser_err: dict[str, str] = field(default_factory=dict)
    switch_broken: dict[str, str] = field(default_factory=dict)
    breath: set[str] = field(default_factory=set)

    def clear(self) -> None:
        for value in vars(self).values():
            value.clear()


@dataclass
class ClosureTruth:
    """What really happened in one closure of a chamber."""

    chamber: str
    sealed_at: dt.datetime
    flux_umol_m2_s: float
    c0_umol_mol: float
    opened_at: dt.datetime | None = None
    plate: bool = False  # closed on an impermeable plate: no soil flux
    ch4_flux_nmol_m2_s: float = 0.0
    n2o_flux_nmol_m2_s: float = 0.0
    ch4_c0_nmol_mol: float = 0.0
    n2o_c0_nmol_mol: float = 0.0
    # ebullition steps drawn for this closure: (time, CH4 step [nmol/mol, dry]); only those
    # before ``opened_at`` reached the headspace
    ebullition: list[tuple[dt.datetime, float]] = field(default_factory=list)

    def bubbles(self) -> list[tuple[dt.datetime, float]]:
        """The ebullition steps that happened while the lid was shut."""
        end = self.opened_at
        return [(t, v) for t, v in self.ebullition if end is None or t < end]


@dataclass
class InstrumentCalibration:
    """An LI-8x0's user calibration: ``out = s (raw - z)``, then the span-2 curvature
    ``out + k2 out (out - span1)``; dates as the instrument stores them."""

    co2_zero_umol_mol: float = 0.0  # z
    co2_span_factor: float = 1.0  # s
    co2_span2_k: float = 0.0  # k2
    co2_span1_umol_mol: float | None = None
    h2o_zero_mmol_mol: float = 0.0
    dates: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(
            ("co2lastzero", "co2lastspan", "co2lastspan2", "h2olastzero", "h2olastspan"),
            "2026-01-15",
        )
    )

    def apply(self, raw_co2: float) -> float:
        out = self.co2_span_factor * (raw_co2 - self.co2_zero_umol_mol)
        if self.co2_span2_k and self.co2_span1_umol_mol is not None:
            out += self.co2_span2_k * out * (out - self.co2_span1_umol_mol)
        return out


@dataclass
class ProbeSettings:
    """A GMP343's compensation settings (what it assumes about the gas in its cell).

    Off, a compensation assumes the probe's factory reference (1013.25 hPa, 25 degC, 0 %
    RH); temperature compensation on uses the probe's own temperature sensor. The
    defaults are a probe set up for the simulated site.
    """

    pressure_hpa: float = 995.0  # set to the site's pressure when the site is built
    pressure_on: bool = True
    temperature_on: bool = True
    humidity_pct: float = _PROBE_HUMIDITY_PCT
    humidity_on: bool = True
    oxygen_pct: float = _PROBE_OXYGEN_PCT
    oxygen_on: bool = True


@dataclass
class _Lid:
    command_closed: bool = False
    command_at: float = -math.inf
    position_at_command: float = 0.0  # 0 open, 1 closed


@dataclass
class _Seal:
    sealed_at: float  # monotonic
    c0: float
    w0: float
    slope: float  # dry mole fraction per s at sealing
    h2o_slope: float
    unsealed_at: float = math.inf
    leak: str | None = None
    breath: bool = False  # someone breathed around the chamber while it was sealed
    ch4_c0: float = 0.0  # dry nmol/mol
    n2o_c0: float = 0.0
    ch4_slope: float = 0.0  # dry nmol/mol per s at sealing
    n2o_slope: float = 0.0
    bubbles: tuple[tuple[float, float], ...] = ()  # (s after sealing, CH4 step nmol/mol)


class SimulatedSite:
    """The simulated hardware of one site, driven by the injected clock."""

    def __init__(self, cfg: SiteConfig, clock: Clock, *, seed: int | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.seed = cfg.sim.seed if seed is None else seed
        self.faults = Faults()
        self._lock = threading.RLock()
        self._zone = zoneinfo.ZoneInfo(cfg.site.time_zone)
        self._lids = {c.id: _Lid() for c in cfg.chambers}
        self._valves = {c.id: False for c in cfg.chambers}
        self._seals: dict[str, list[_Seal]] = {c.id: [] for c in cfg.chambers}
        self._truth: list[ClosureTruth] = []
        self.pump_on = False
        self.calibration = {a.id: InstrumentCalibration() for a in cfg.analysers}
        self.probe = {
            a.id: ProbeSettings(pressure_hpa=cfg.sim.pressure_kpa * 10.0) for a in cfg.analysers
        }
        self._manifold: list[tuple[float, str, bool]] = []  # (mono, slot, open)
        self.manifold_open: set[str] = set()
        self._origin_mono = clock.monotonic()
        self._origin_time = clock.now()
        # every command written to the relays, repeats included: (mono, kind, chamber, value)
        self.commands: list[tuple[float, str, str, bool]] = []

    # --- time -----------------------------------------------------------------------------

    def _mono(self) -> float:
        return self.clock.monotonic()

    def _wall(self, mono: float) -> dt.datetime:
        return self._origin_time + dt.timedelta(seconds=mono - self._origin_mono)

    # --- soil and air ---------------------------------------------------------------------

    def soil_temperature_degc(self, when: dt.datetime, chamber: str | None = None) -> float:
        local = when.astimezone(self._zone)
        hour = local.hour + local.minute / 60 + local.second / 3600
        sim = self.cfg.sim
        base = sim.soil_temperature_mean_degc + sim.soil_temperature_amplitude_degc * math.sin(
            2 * math.pi * (hour - 9.0) / 24.0
        )
        if chamber is not None:  # a fixed small offset per collar
            base += (self._hash01("soil", chamber) - 0.5) * 1.0
        return base

    def air_temperature_degc(self, when: dt.datetime) -> float:
        return self.soil_temperature_degc(when) + 3.0

    def ambient_co2_umol_mol(self, when: dt.datetime) -> float:
        local = when.astimezone(self._zone)
        hour = local.hour + local.minute / 60
        return self.cfg.sim.ambient_co2_umol_mol + 15.0 * math.cos(2 * math.pi * (hour - 5) / 24)

    def ambient_h2o_mmol_mol(self, when: dt.datetime) -> float:
        return 12.0 + 2.0 * math.sin(2 * math.pi * when.hour / 24.0)

    def true_flux(self, chamber: str, when: dt.datetime) -> float:
        """Soil CO2 efflux of ``chamber`` at ``when`` [umol m-2 s-1]."""
        sim = self.cfg.chamber(chamber).sim
        temperature = self.soil_temperature_degc(when, chamber)
        return sim.r10_umol_m2_s * sim.q10 ** ((temperature - 10.0) / 10.0)

    def _dry_air(self, chamber: ChamberConfig, when: dt.datetime) -> float:
        geometry = chamber.geometry_on(when.date())
        return dry_air_mol_m2(
            volume_cm3=geometry.volume_cm3,
            area_cm2=geometry.area_cm2,
            pressure_kpa=self.cfg.sim.pressure_kpa,
            temperature_degc=self.air_temperature_degc(when),
            h2o_mmol_mol=self.ambient_h2o_mmol_mol(when),
        )

    # --- lids, valves, pump ---------------------------------------------------------------

    def _position(self, chamber: str, mono: float) -> float:
        lid = self._lids[chamber]
        stuck = self.faults.lid_stuck.get(chamber)
        if stuck == "open":
            return 0.0
        if stuck == "closed":
            return 1.0
        target = 1.0 if lid.command_closed else 0.0
        delay = self._lid_delay(chamber)
        if delay <= 0:
            return target
        moved = (mono - lid.command_at) / delay
        start = lid.position_at_command
        if target > start:
            return min(target, start + moved)
        return max(target, start - moved)

    def _lid_delay(self, chamber: str) -> float:
        return self.cfg.sim.lid_delay_s + max(0.0, self.faults.slow_lid.get(chamber, 0.0))

    def lid_position(self, chamber: str) -> float:
        """0 = open, 1 = closed."""
        with self._lock:
            return self._position(chamber, self._mono())

    def closed_switch(self, chamber: str) -> bool:
        if self.faults.switch_broken.get(chamber) in ("closed", "both"):
            return False
        return self.lid_position(chamber) >= 1.0

    def open_switch(self, chamber: str) -> bool:
        if self.faults.switch_broken.get(chamber) in ("open", "both"):
            return False
        return self.lid_position(chamber) <= 0.0

    def command_lid(self, chamber: str, closed: bool) -> None:
        with self._lock:
            mono = self._mono()
            self._update_seal(chamber, mono)
            lid = self._lids[chamber]
            if lid.command_closed == closed and lid.command_at > -math.inf:
                self.commands.append((mono, "lid", chamber, closed))  # repeated, no motion
                return
            lid.position_at_command = self._position(chamber, mono)
            lid.command_closed = closed
            lid.command_at = mono
            self.commands.append((mono, "lid", chamber, closed))

    def command_valve(self, chamber: str, open_: bool) -> None:
        with self._lock:
            self._valves[chamber] = open_
            self.commands.append((self._mono(), "valve", chamber, open_))

    def command_pump(self, on: bool) -> None:
        with self._lock:
            self.pump_on = on
            self.commands.append((self._mono(), "pump", "", on))

    def command_analyser_power(self, analyser: str, on: bool) -> None:
        """An analyser's power relay switched (recorded: ``analyser_power``, per analyser
        the list of (monotonic s, on)); the simulated instrument itself keeps running."""
        with self._lock:
            log = self.__dict__.setdefault("analyser_power", {})
            log.setdefault(analyser, []).append((self._mono(), on))

    def command_manifold(self, slot: str, open_: bool) -> None:
        """The coil of manifold slot ``slot`` switched (open: its cylinder's gas flows)."""
        with self._lock:
            mono = self._mono()
            if open_:
                self.manifold_open.add(slot)
            else:
                self.manifold_open.discard(slot)
            self._manifold.append((mono, slot, open_))
            del self._manifold[:-200]
            self.commands.append((mono, "manifold", slot, open_))

    def lids_commanded_open(self) -> bool:
        with self._lock:
            return all(not lid.command_closed for lid in self._lids.values())

    # --- the headspace --------------------------------------------------------------------

    def _seal_time(self, chamber: str) -> float | None:
        """Monotonic time the lid (as commanded now) reached or will reach closed."""
        lid = self._lids[chamber]
        if not lid.command_closed or chamber in self.faults.lid_stuck:
            return None
        delay = self._lid_delay(chamber)
        return lid.command_at + (1.0 - lid.position_at_command) * delay

    def _update_seal(self, chamber: str, mono: float) -> None:
        """Record seals that happened by ``mono`` (called before any command changes)."""
        seals = self._seals[chamber]
        stuck = self.faults.lid_stuck.get(chamber)
        sealed_by = self._seal_time(chamber)
        if stuck == "closed" and (not seals or seals[-1].unsealed_at < math.inf):
            sealed_by = mono
        open_seal = seals[-1] if seals and seals[-1].unsealed_at == math.inf else None
        if open_seal is None and sealed_by is not None and sealed_by <= mono:
            when = self._wall(sealed_by)
            cfg = self.cfg.chamber(chamber)
            air = self._dry_air(cfg, when)
            plate = chamber in self.faults.plate
            flux = 0.0 if plate else self.true_flux(chamber, when)
            c0 = self._concentration(chamber, sealed_by)[0]
            w0 = self.ambient_h2o_mmol_mol(when)
            ch4_c0, n2o_c0 = self._trace_concentration(chamber, sealed_by)
            ch4_flux = 0.0 if plate else self.true_ch4_flux(chamber, when)
            n2o_flux = 0.0 if plate else self.true_n2o_flux(chamber, when)
            bubbles = () if plate else self._draw_bubbles(chamber, sealed_by)
            seal = _Seal(
                sealed_at=sealed_by,
                c0=c0,
                w0=w0,
                slope=flux / air,
                h2o_slope=0.0 if plate else cfg.sim.h2o_flux_mmol_m2_s / air,
                leak=self.faults.leak.get(chamber),
                breath=chamber in self.faults.breath,
                ch4_c0=ch4_c0,
                n2o_c0=n2o_c0,
                ch4_slope=ch4_flux / air,
                n2o_slope=n2o_flux / air,
                bubbles=bubbles,
            )
            seals.append(seal)
            del seals[:-4]  # only the latest seals shape the headspace now
            self._truth.append(
                ClosureTruth(
                    chamber,
                    when,
                    flux,
                    c0,
                    plate=plate,
                    ch4_flux_nmol_m2_s=ch4_flux,
                    n2o_flux_nmol_m2_s=n2o_flux,
                    ch4_c0_nmol_mol=ch4_c0,
                    n2o_c0_nmol_mol=n2o_c0,
                    ebullition=[(when + dt.timedelta(seconds=at), step) for at, step in bubbles],
                )
            )
        elif open_seal is not None and self._position(chamber, mono) < 1.0:
            # the lid started to open since: find when it left the closed position
            lid = self._lids[chamber]
            left = lid.command_at if not lid.command_closed else mono
            open_seal.unsealed_at = min(max(left, open_seal.sealed_at), mono)
            for truth in reversed(self._truth):
                if truth.chamber == chamber and truth.opened_at is None:
                    truth.opened_at = self._wall(open_seal.unsealed_at)
                    break
            if len(seals) > 64:
                del seals[:-64]

    def _concentration(self, chamber: str, mono: float) -> tuple[float, float]:
        """Dry CO2 [umol/mol] and H2O [mmol/mol] in the headspace at ``mono``."""
        when = self._wall(mono)
        ambient_c = self.ambient_co2_umol_mol(when)
        ambient_w = self.ambient_h2o_mmol_mol(when)
        seal = None
        for candidate in reversed(self._seals[chamber]):
            if candidate.sealed_at <= mono:
                seal = candidate
                break
        if seal is None:
            return ambient_c, ambient_w
        k = self.cfg.chamber(chamber).sim.saturation_per_s
        closed_for = min(mono, seal.unsealed_at) - seal.sealed_at

        def rise(slope: float, duration: float) -> float:
            if k <= 0:
                return slope * duration
            return slope / k * -math.expm1(-k * duration)

        if seal.leak == "flat":
            c, w = seal.c0 + rise(seal.slope, min(closed_for, 5.0)), seal.w0
        elif seal.leak == "falling":
            c = seal.c0 - 30.0 * -math.expm1(-closed_for / 60.0)
            w = seal.w0
        else:
            c = seal.c0 + rise(seal.slope, closed_for)
            w = seal.w0 + rise(seal.h2o_slope, closed_for)
        if seal.breath and seal.leak is not None and closed_for > BREATH_AT_S:
            x = (closed_for - BREATH_AT_S) / BREATH_RISE_S
            c += BREATH_PEAK_UMOL_MOL * x * math.exp(1.0 - x)
        if mono > seal.unsealed_at:  # flushed back to ambient
            decay = math.exp(-(mono - seal.unsealed_at) / _FLUSH_S * 3.0)
            c = ambient_c + (c - ambient_c) * decay
            w = ambient_w + (w - ambient_w) * decay
        return c, w

    # --- CH4 and N2O ----------------------------------------------------------------------

    def true_ch4_flux(self, chamber: str, when: dt.datetime) -> float:
        """Soil CH4 flux of ``chamber`` at ``when`` [nmol m-2 s-1] (negative: uptake)."""
        sim = self.cfg.chamber(chamber).sim
        temperature = self.soil_temperature_degc(when, chamber)
        return sim.ch4_nmol_m2_s * sim.ch4_q10 ** ((temperature - 10.0) / 10.0)

    def true_n2o_flux(self, chamber: str, when: dt.datetime) -> float:
        """Soil N2O flux of ``chamber`` at ``when`` [nmol m-2 s-1]."""
        sim = self.cfg.chamber(chamber).sim
        temperature = self.soil_temperature_degc(when, chamber)
        return sim.n2o_nmol_m2_s * sim.n2o_q10 ** ((temperature - 10.0) / 10.0)

    def _draw_bubbles(self, chamber: str, sealed_at: float) -> tuple[tuple[float, float], ...]:
        """Ebullition steps of one closure (seeded by the chamber and the sealing time):
        Poisson arrivals at ``ebullition_per_h`` over the next hour, exponential sizes."""
        sim = self.cfg.chamber(chamber).sim
        if sim.ebullition_per_h <= 0:
            return ()
        rng = np.random.default_rng(
            [self.seed, self._hash_int("bubbles", chamber), round(sealed_at * 1000)]
        )
        n = int(rng.poisson(sim.ebullition_per_h))
        times = np.sort(rng.uniform(0.0, 3600.0, n))
        sizes = rng.exponential(sim.ebullition_nmol_mol, n)
        return tuple((float(t), float(v)) for t, v in zip(times, sizes, strict=True))

    def _trace_concentration(self, chamber: str, mono: float) -> tuple[float, float]:
        """Dry CH4 and N2O [nmol/mol] in the headspace of ``chamber`` at ``mono``."""
        ambient = (self.cfg.sim.ambient_ch4_nmol_mol, self.cfg.sim.ambient_n2o_nmol_mol)
        seal = None
        for candidate in reversed(self._seals[chamber]):
            if candidate.sealed_at <= mono:
                seal = candidate
                break
        if seal is None:
            return ambient
        k = self.cfg.chamber(chamber).sim.saturation_per_s
        closed_for = min(mono, seal.unsealed_at) - seal.sealed_at

        def rise(slope: float) -> float:
            if k <= 0:
                return slope * closed_for
            return slope / k * -math.expm1(-k * closed_for)

        if seal.leak is not None:  # a leaking chamber: the headspace stays near ambient
            ch4, n2o = seal.ch4_c0 + rise(seal.ch4_slope) * 0.1, seal.n2o_c0
        else:
            ch4 = seal.ch4_c0 + rise(seal.ch4_slope)
            n2o = seal.n2o_c0 + rise(seal.n2o_slope)
            ch4 += sum(step for at, step in seal.bubbles if at <= closed_for)
        if mono > seal.unsealed_at:
            decay = math.exp(-(mono - seal.unsealed_at) / _FLUSH_S * 3.0)
            ch4 = ambient[0] + (ch4 - ambient[0]) * decay
            n2o = ambient[1] + (n2o - ambient[1]) * decay
        return max(ch4, 0.0), max(n2o, 0.0)

    def analyser_lag_s(self, analyser: str) -> float:
        """The true transit lag of ``analyser`` beyond the loop's own transport [s]."""
        lag = self.cfg.sim.lag_s.get(analyser)
        return self.cfg.analyser(analyser).lag_s if lag is None else lag

    def trace_gas_values(self, analyser: str) -> dict[str, float]:
        """Noise-free gas in the cell of a trace-gas analyser now: dry CO2 [umol/mol], dry
        CH4 and N2O [nmol/mol], H2O [mmol/mol] (transport, mixing and the analyser's own
        lag), and the cell's pressure [kPa]. Noise is the analyser simulator's business."""
        with self._lock:
            mono = self._mono()
            for chamber in self._lids:
                self._update_seal(chamber, mono)
            chamber = self._routed_chamber(analyser, mono)
            tau = max(self.cfg.sim.mixing_s, 1e-3)
            lag = self.analyser_lag_s(analyser)
            co2 = w = ch4 = n2o = 0.0
            for node, weight in zip(_NODES, _WEIGHTS, strict=True):
                at = mono - _TRANSPORT_S - lag - node * tau
                if chamber is None:
                    when = self._wall(at)
                    ci, wi = self.ambient_co2_umol_mol(when), self.ambient_h2o_mmol_mol(when)
                    mi, ni = self.cfg.sim.ambient_ch4_nmol_mol, self.cfg.sim.ambient_n2o_nmol_mol
                else:
                    ci, wi = self._concentration(chamber, at)
                    mi, ni = self._trace_concentration(chamber, at)
                co2 += weight * ci
                w += weight * wi
                ch4 += weight * mi
                n2o += weight * ni
            return {
                "co2_umol_mol": co2,
                "h2o_mmol_mol": w,
                "ch4_nmol_mol": ch4,
                "n2o_nmol_mol": n2o,
                "pressure_kpa": self.cfg.sim.pressure_kpa,
            }

    def _routed_chamber(self, analyser: str, mono: float) -> str | None:
        # a loop may hold several analysers in series (``analysers``, when configured)
        group = [
            c
            for c in self.cfg.chambers
            if analyser in (getattr(c, "analysers", None) or [c.analyser])
        ]
        valved = [c.id for c in group if c.valve is not None and self._valves[c.id]]
        if valved:
            return valved[0]
        if any(c.valve is not None for c in group):
            return None
        shut = [c.id for c in group if self._position(c.id, mono) >= 1.0]
        if shut:
            return shut[0]
        moving = [c.id for c in group if self._lids[c.id].command_closed]
        return moving[0] if moving else None

    def _loop_gas(self, analyser: str, mono: float) -> tuple[float, float]:
        """Moist CO2 [umol/mol] and H2O [mmol/mol] the chamber loop brings to the analyser's
        cell at ``mono`` (transport delay and mixing volume; routing as commanded now)."""
        chamber = self._routed_chamber(analyser, mono)
        tau = max(self.cfg.sim.mixing_s, 1e-3)
        c_dry = w = 0.0
        for node, weight in zip(_NODES, _WEIGHTS, strict=True):
            at = mono - _TRANSPORT_S - node * tau
            if chamber is None:
                when = self._wall(at)
                ci, wi = self.ambient_co2_umol_mol(when), self.ambient_h2o_mmol_mol(when)
            else:
                ci, wi = self._concentration(chamber, at)
            c_dry += weight * ci
            w += weight * wi
        return c_dry * (1.0 - w / 1000.0), w

    def _manifold_fractions(self, analyser: str, mono: float) -> dict[str, float]:
        """Fraction of each manifold slot's gas in the analyser's cell at ``mono``: a
        valve's state reaches the cell ``manifold_delay_s`` later, then the cell purges
        with the e-folding time ``manifold_purge_s``."""
        slots = {
            m.slot
            for m in self.cfg.calibration.manifold
            if not m.analysers or analyser in m.analysers
        }
        delay, tau = self.cfg.sim.manifold_delay_s, self.cfg.sim.manifold_purge_s
        fractions: dict[str, float] = {}
        targets: dict[str, float] = {}
        opened: set[str] = set()
        last = -math.inf
        for at, slot, open_ in self._manifold:
            applied = at + delay
            if slot not in slots or applied > mono:
                continue
            decay = math.exp(-(applied - last) / tau) if last > -math.inf else 0.0
            for s, f in fractions.items():
                fractions[s] = targets[s] + (f - targets[s]) * decay
            last = applied
            if open_:
                opened.add(slot)
            else:
                opened.discard(slot)
            for s in set(fractions) | opened:
                fractions.setdefault(s, 0.0)
                targets[s] = 1.0 / len(opened) if s in opened else 0.0
        if last == -math.inf:
            return {}
        decay = math.exp(-(mono - last) / tau)
        return {s: targets[s] + (f - targets[s]) * decay for s, f in fractions.items()}

    def _cell_gas(self, analyser: str, mono: float) -> tuple[float, float]:
        """True moist CO2 and H2O in the analyser's cell: the loop, or the manifold's
        cylinder gas (dry) where a manifold valve is open."""
        co2, w = self._loop_gas(analyser, mono)
        fractions = self._manifold_fractions(analyser, mono)
        total = min(1.0, sum(fractions.values()))
        if total <= 0.0:
            return co2, w
        cylinders = self.cfg.sim.cylinders
        cylinder = sum(f * cylinders.get(s, 0.0) for s, f in fractions.items())
        return cylinder + (1.0 - total) * co2, (1.0 - total) * w

    def manifold_gas_fraction(self, analyser: str) -> float:
        """How much of the gas in ``analyser``'s cell comes from the manifold now (0..1)."""
        with self._lock:
            return min(1.0, sum(self._manifold_fractions(analyser, self._mono()).values()))

    # --- the instruments' own errors ------------------------------------------------------

    def _drift(self, analyser: str) -> tuple[float, float, float, float]:
        sim = self.cfg.sim
        own = sim.drift.get(analyser)

        def pick(name: str) -> float:
            value = None if own is None else getattr(own, name)
            return getattr(sim, name) if value is None else value

        return (
            pick("span_gain"),
            pick("span_drift_per_day"),
            pick("zero_offset_umol_mol"),
            pick("zero_drift_umol_mol_per_day"),
        )

    def _raw_error(self, analyser: str, mono: float) -> tuple[float, float]:
        """(offset [umol/mol], gain) of the analyser's raw reading at ``mono``."""
        gain0, gain_per_day, offset0, offset_per_day = self._drift(analyser)
        days = (mono - self._origin_mono) / 86400.0
        return offset0 + offset_per_day * days, gain0 + gain_per_day * days

    def _probe_factor(self, analyser: str, mono: float) -> float:
        """Reading / true of a GMP343 whose compensation differs from its cell's state."""
        settings = self.probe[analyser]
        pressure = settings.pressure_hpa if settings.pressure_on else None
        pressure = _PROBE_REFERENCE["pressure_hpa"] if pressure is None else pressure
        actual_t = self.air_temperature_degc(self._wall(mono))
        assumed_t = actual_t if settings.temperature_on else _PROBE_REFERENCE["temperature_degc"]
        humidity = settings.humidity_pct if settings.humidity_on else 0.0
        oxygen = settings.oxygen_pct if settings.oxygen_on else _PROBE_OXYGEN_PCT
        factor = (self.cfg.sim.pressure_kpa * 10.0 / pressure) * (
            (assumed_t + 273.15) / (actual_t + 273.15)
        )
        factor *= 1.0 + _HUMIDITY_EFFECT_PER_PCT * (_PROBE_HUMIDITY_PCT - humidity)
        factor *= 1.0 + _OXYGEN_EFFECT_PER_PCT * (_PROBE_OXYGEN_PCT - oxygen)
        return factor

    def _is_probe(self, analyser: str) -> bool:
        try:
            return self.cfg.analyser(analyser).protocol == "gmp343"
        except KeyError:
            return False

    def _raw_co2(self, analyser: str, true_co2: float, mono: float) -> float:
        offset, gain = self._raw_error(analyser, mono)
        if self._is_probe(analyser):
            true_co2 *= self._probe_factor(analyser, mono)
        curvature = self.cfg.sim.co2_curvature_per_umol_mol
        return offset + gain * (true_co2 + curvature * true_co2 * true_co2)

    def _mono_of(self, when: dt.datetime | None) -> float:
        if when is None:
            return self._mono()
        return self._origin_mono + (when - self._origin_time).total_seconds()

    def span_gain(self, analyser: str, when: dt.datetime | None = None) -> float:
        """The analyser's effective gain at ``when`` (output / true, its user calibration
        and, for a GMP343, its compensation included; the span-2 curvature left out)."""
        with self._lock:
            mono = self._mono_of(when)
            _, gain = self._raw_error(analyser, mono)
            if self._is_probe(analyser):
                gain *= self._probe_factor(analyser, mono)
            return gain * self.calibration[analyser].co2_span_factor

    def zero_offset_umol_mol(self, analyser: str, when: dt.datetime | None = None) -> float:
        """The analyser's effective output for CO2-free gas at ``when`` [umol mol-1]."""
        with self._lock:
            offset, _ = self._raw_error(analyser, self._mono_of(when))
            cal = self.calibration[analyser]
            return cal.co2_span_factor * (offset - cal.co2_zero_umol_mol)

    def _mean_raw(self, analyser: str, start: float, end: float) -> tuple[float, float]:
        """Noise-free raw CO2 and H2O averaged over [start, end] (the instrument's average)."""
        n = max(2, int((end - start) / 0.25) + 1)
        co2 = w = 0.0
        for i in range(n):
            at = start + (end - start) * i / (n - 1)
            true_co2, true_w = self._cell_gas(analyser, at)
            co2 += self._raw_co2(analyser, true_co2, at)
            w += true_w
        return co2 / n, w / n

    def calibrate(
        self, analyser: str, kind: str, value: float | None, started_mono: float, on: str
    ) -> bool:
        """Apply an LI-8x0 user calibration command received at ``started_mono`` (monotonic),
        from the raw reading averaged over the 5 s after it; False when refused.

        ``kind``: ``co2zero`` (the gas present then reads 0), ``co2span`` (it reads
        ``value``), ``co2span2`` (it reads ``value``, the zero and first span point kept),
        ``h2ozero``. ``on``: the date text the command carried.
        """
        with self._lock:
            cal = self.calibration[analyser]
            co2, w = self._mean_raw(analyser, started_mono, started_mono + _CAL_AVERAGE_S)
            if kind == "co2zero":
                cal.co2_zero_umol_mol = co2
                cal.dates["co2lastzero"] = on
            elif kind == "co2span":
                if value is None or value <= 0 or co2 - cal.co2_zero_umol_mol < 1.0:
                    return False
                cal.co2_span_factor = value / (co2 - cal.co2_zero_umol_mol)
                cal.co2_span1_umol_mol = value
                cal.co2_span2_k = 0.0
                cal.dates["co2lastspan"] = on
            elif kind == "co2span2":
                span1 = cal.co2_span1_umol_mol
                linear = cal.co2_span_factor * (co2 - cal.co2_zero_umol_mol)
                if value is None or value <= 0 or span1 is None:
                    return False
                if abs(linear - span1) < 1.0 or linear < 1.0:
                    return False  # the second span gas must differ from the first
                cal.co2_span2_k = (value - linear) / (linear * (linear - span1))
                cal.dates["co2lastspan2"] = on
            elif kind == "h2ozero":
                cal.h2o_zero_mmol_mol = w
                cal.dates["h2olastzero"] = on
            else:
                return False
            return True

    def analyser_values(self, analyser: str) -> dict[str, float]:
        """What analyser ``analyser`` reads now: CO2 (moist) and H2O with lag and noise,
        through its drifting error and its calibration; cell state and flow."""
        with self._lock:
            mono = self._mono()
            for chamber in self._lids:
                self._update_seal(chamber, mono)
            true_co2, w = self._cell_gas(analyser, mono)
            raw = self._raw_co2(analyser, true_co2, mono)
            cal = self.calibration[analyser]
            co2 = raw if self._is_probe(analyser) else cal.apply(raw)
            w -= cal.h2o_zero_mmol_mol
            low = analyser in self.faults.low_flow
        rng = np.random.default_rng([self.seed, self._hash_int(analyser), round(mono * 1000)])
        noise = self.cfg.sim.analyser_noise_umol_mol
        return {
            "co2_umol_mol": float(co2 + rng.normal(0.0, noise)),
            "h2o_mmol_mol": float(w + rng.normal(0.0, 0.01)),
            "cell_temperature_degc": _CELL_TEMPERATURE_DEGC + float(rng.normal(0.0, 0.02)),
            "cell_pressure_kpa": self.cfg.sim.pressure_kpa + float(rng.normal(0.0, 0.01)),
            "flow_l_min": (_LOW_FLOW_L_MIN if low else _FLOW_L_MIN) + float(rng.normal(0.0, 0.003)),
            "probe_temperature_degc": self.air_temperature_degc(self._wall(mono)),
        }

    def aux_value(self, quantity: str, chamber: str | None) -> float:
        """The true value of an auxiliary quantity now."""
        when = self.clock.now()
        if quantity == "soil_temperature_degc":
            return self.soil_temperature_degc(when, chamber)
        if quantity == "soil_moisture_pct":
            return 25.0 + (0.0 if chamber is None else 10 * (self._hash01("vwc", chamber) - 0.5))
        if quantity == "air_temperature_degc":
            return self.air_temperature_degc(when)
        if quantity == "pressure_kpa":
            return self.cfg.sim.pressure_kpa
        raise KeyError(quantity)

    # --- truth ----------------------------------------------------------------------------

    def closures(self) -> list[ClosureTruth]:
        """Every closure so far, with the true flux when it sealed."""
        with self._lock:
            mono = self._mono()
            for chamber in self._lids:
                self._update_seal(chamber, mono)
            return list(self._truth)

    # --- helpers --------------------------------------------------------------------------

    def _hash_int(self, *parts: object) -> int:
        digest = hashlib.sha256(repr((self.seed, *parts)).encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def _hash01(self, *parts: object) -> float:
        return self._hash_int(*parts) / 2**64
