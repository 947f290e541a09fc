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

__all__ = ["ClosureTruth", "Faults", "SimulatedSite"]

_NODES, _WEIGHTS = np.polynomial.laguerre.laggauss(8)  # mixing-volume kernel quadrature
_TRANSPORT_S = 2.0
_FLUSH_S = 20.0
_PRESSURE_KPA = 99.5
_CELL_TEMPERATURE_DEGC = 51.5


@dataclass
class Faults:
    """Faults of the simulated hardware, switched at run time (each a set or mapping).

    ``lid_stuck``: chamber -> "open" | "closed"; ``leak``: chamber -> "flat" | "falling";
    ``analyser_silent``, ``analyser_garbage``, ``analyser_truncated``, ``analyser_nak``:
    analyser ids; ``link_down``: analyser ids whose TCP link is dropped (connections closed
    and refused until removed); ``modbus_exception``: Modbus device id -> exception code;
    ``modbus_timeout``: device ids that never answer; ``modbus_bad_crc``: device ids whose
    RTU replies carry a wrong CRC.
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
            pressure_kpa=_PRESSURE_KPA,
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
        delay = self.cfg.sim.lid_delay_s
        if delay <= 0:
            return target
        moved = (mono - lid.command_at) / delay
        start = lid.position_at_command
        if target > start:
            return min(target, start + moved)
        return max(target, start - moved)

    def lid_position(self, chamber: str) -> float:
        """0 = open, 1 = closed."""
        with self._lock:
            return self._position(chamber, self._mono())

    def closed_switch(self, chamber: str) -> bool:
        return self.lid_position(chamber) >= 1.0

    def open_switch(self, chamber: str) -> bool:
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

    def lids_commanded_open(self) -> bool:
        with self._lock:
            return all(not lid.command_closed for lid in self._lids.values())

    # --- the headspace --------------------------------------------------------------------

    def _seal_time(self, chamber: str) -> float | None:
        """Monotonic time the lid (as commanded now) reached or will reach closed."""
        lid = self._lids[chamber]
        if not lid.command_closed or chamber in self.faults.lid_stuck:
            return None
        delay = self.cfg.sim.lid_delay_s
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
            flux = self.true_flux(chamber, when)
            c0 = self._concentration(chamber, sealed_by)[0]
            w0 = self.ambient_h2o_mmol_mol(when)
            seal = _Seal(
                sealed_at=sealed_by,
                c0=c0,
                w0=w0,
                slope=flux / air,
                h2o_slope=cfg.sim.h2o_flux_mmol_m2_s / air,
                leak=self.faults.leak.get(chamber),
            )
            seals.append(seal)
            del seals[:-4]  # only the latest seals shape the headspace now
            self._truth.append(ClosureTruth(chamber, when, flux, c0))
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
        if mono > seal.unsealed_at:  # flushed back to ambient
            decay = math.exp(-(mono - seal.unsealed_at) / _FLUSH_S * 3.0)
            c = ambient_c + (c - ambient_c) * decay
            w = ambient_w + (w - ambient_w) * decay
        return c, w

    def _routed_chamber(self, analyser: str, mono: float) -> str | None:
        group = [c for c in self.cfg.chambers if c.analyser == analyser]
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

    def analyser_values(self, analyser: str) -> dict[str, float]:
        """What analyser ``analyser`` reads now: CO2 (moist) and H2O with lag and noise."""
        with self._lock:
            mono = self._mono()
            for chamber in self._lids:
                self._update_seal(chamber, mono)
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
        rng = np.random.default_rng([self.seed, self._hash_int(analyser), round(mono * 1000)])
        noise = self.cfg.sim.analyser_noise_umol_mol
        co2 = c_dry * (1.0 - w / 1000.0) + rng.normal(0.0, noise)
        return {
            "co2_umol_mol": float(co2),
            "h2o_mmol_mol": float(w + rng.normal(0.0, 0.01)),
            "cell_temperature_degc": _CELL_TEMPERATURE_DEGC + float(rng.normal(0.0, 0.02)),
            "cell_pressure_kpa": _PRESSURE_KPA + float(rng.normal(0.0, 0.01)),
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
            return _PRESSURE_KPA
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
