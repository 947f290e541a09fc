"""In-memory fakes of the ports, for pure logic tests and virtual-time runs.

They act directly on a :class:`~chamberd.controller.sim.site.SimulatedSite` (the same
physics the wire-level simulator serves), without sockets or threads, so a simulated day of
cycles runs in seconds of wall time on a :class:`~chamberd.controller.clock.FakeClock`.
Analyser faults that make sense without a wire (silence) are honoured.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

import numpy as np

from chamberd.controller.clock import Clock
from chamberd.controller.errors import (
    ConfigError,
    HardwareError,
    HardwareTimeoutError,
    ProtocolError,
)

from .li8x0 import CAL_AVERAGE_S, cal_command
from .ports import AnalyserInfo, AnalyserReading, AuxReading, LidState

if TYPE_CHECKING:
    from chamberd.controller.sim.site import SimulatedSite

__all__ = ["MemoryActuators", "MemoryAnalyser", "MemoryAuxSensors", "MemoryTraceGasAnalyser"]

#: trace-gas protocol -> the reading fields it reports (Picarro: from its species)
TRACE_GAS_FIELDS = {
    "li7810": ("ch4_nmol_mol", "co2_umol_mol", "h2o_mmol_mol"),
    "li7820": ("n2o_nmol_mol", "h2o_mmol_mol"),
    "lgr-gga": ("ch4_nmol_mol", "co2_umol_mol", "h2o_mmol_mol"),
    "lgr-ugga": ("ch4_nmol_mol", "co2_umol_mol", "h2o_mmol_mol"),
    "lgr-n2oco": ("n2o_nmol_mol", "h2o_mmol_mol"),
}
_PICARRO_FIELDS = {"CO2": "co2_umol_mol", "CH4": "ch4_nmol_mol", "N2O": "n2o_nmol_mol"}


class MemoryAnalyser:
    """Readings computed from the site at each output tick of the clock."""

    def __init__(self, site: SimulatedSite, analyser: str, *, clock: Clock) -> None:
        self.site = site
        self.analyser = analyser
        self.clock = clock
        self.interval_s = 1.0
        self._next = math.nan
        self.closed = False

    def identify(self) -> AnalyserInfo:
        return AnalyserInfo(model="memory", serial=f"MEM-{self.analyser}")

    def configure(self, *, output_interval_s: float) -> None:
        self.interval_s = output_interval_s
        self._next = math.nan

    def read(self, timeout_s: float) -> AnalyserReading:
        if self.closed:
            raise HardwareError(f"memory analyser {self.analyser}: closed")
        now = self.clock.monotonic()
        if math.isnan(self._next) or self._next < now - self.interval_s:
            self._next = now  # (re)start the tick train
        if self.analyser in self.site.faults.analyser_silent:
            self.clock.sleep(timeout_s)
            raise HardwareTimeoutError(
                f"memory analyser {self.analyser}: no data within {timeout_s:g} s"
            )
        wait = self._next - now
        if wait > timeout_s:
            self.clock.sleep(timeout_s)
            raise HardwareTimeoutError(
                f"memory analyser {self.analyser}: no data within {timeout_s:g} s"
            )
        if wait > 0:
            self.clock.sleep(wait)
        self._next += self.interval_s
        species = self._species()
        if species:
            return self._trace_reading(species)
        values = self.site.analyser_values(self.analyser)
        return AnalyserReading(
            time=self.clock.now(),
            monotonic_s=self.clock.monotonic(),
            co2_umol_mol=values["co2_umol_mol"],
            h2o_mmol_mol=values["h2o_mmol_mol"],
            cell_temperature_degc=values["cell_temperature_degc"],
            cell_pressure_kpa=values["cell_pressure_kpa"],
            flow_l_min=values["flow_l_min"],
        )

    def discard_pending(self) -> None:
        self._next = math.nan  # the next reading is the next tick from now

    def _species(self) -> list[str]:
        try:
            return list(self.site.cfg.analyser(self.analyser).species)
        except KeyError:
            return []

    def _trace_reading(self, species: list[str]) -> AnalyserReading:
        """A laser analyser in memory: the species configured (``CH4_dry``, ``N2O_dry``,
        ``CO2_dry``, ``H2O``), dry mole fractions from the site's trace-gas truth, with
        the configured precisions as noise."""
        cfg = self.site.cfg.analyser(self.analyser)
        values = self.site.trace_gas_values(self.analyser)
        mono = self.clock.monotonic()
        rng = np.random.default_rng(
            [self.site.seed, self.site._hash_int("memory-trace", self.analyser), round(mono * 1e3)]
        )
        names = {s.removesuffix("_dry") for s in species}

        def pick(name: str, key: str, sigma: float) -> float | None:
            return float(values[key] + rng.normal(0.0, sigma)) if name in names else None

        return AnalyserReading(
            time=self.clock.now(),
            monotonic_s=mono,
            co2_umol_mol=pick("CO2", "co2_umol_mol", cfg.precision_co2_umol_mol),
            h2o_mmol_mol=pick("H2O", "h2o_mmol_mol", 0.01),
            cell_temperature_degc=55.0,
            cell_pressure_kpa=None,
            ch4_nmol_mol=pick("CH4", "ch4_nmol_mol", cfg.precision_ch4_nmol_mol),
            n2o_nmol_mol=pick("N2O", "n2o_nmol_mol", cfg.precision_n2o_nmol_mol),
            dry=True,
        )

    # --- the LI8x0Calibration port, acting on the site's instrument calibration ------------

    def calibration_state(self) -> dict[str, str]:
        cal = self.site.calibration[self.analyser]
        state = {f"cal/{k}": v for k, v in cal.dates.items()}
        state |= {
            "cal/co2kzero": f"{cal.co2_zero_umol_mol:.6g}",
            "cal/co2kspan": f"{cal.co2_span_factor:.6g}",
            "cal/co2kspan2": f"{cal.co2_span2_k:.6g}",
            "cal/h2okzero": f"{cal.h2o_zero_mmol_mol:.6g}",
        }
        return state

    def _calibrate(self, tag: str, on: dt.date, value: float | None = None) -> str:
        command = cal_command("li850", tag, on, value)
        started = self.clock.monotonic()
        self.clock.sleep(CAL_AVERAGE_S)
        if self.analyser in self.site.faults.analyser_nak or not self.site.calibrate(
            self.analyser, tag, value, started, on.isoformat()
        ):
            raise ProtocolError(f"memory analyser {self.analyser}: refused {command!r}")
        return command

    def zero_co2(self, on: dt.date) -> str:
        return self._calibrate("co2zero", on)

    def span_co2(self, value_umol_mol: float, on: dt.date) -> str:
        return self._calibrate("co2span", on, value_umol_mol)

    def span2_co2(self, value_umol_mol: float, on: dt.date) -> str:
        return self._calibrate("co2span2", on, value_umol_mol)

    def zero_h2o(self, on: dt.date) -> str:
        return self._calibrate("h2ozero", on)

    def diagnostics(self) -> dict[str, str]:
        values = self.site.analyser_values(self.analyser)
        return {
            "data/celltemp": f"{values['cell_temperature_degc']:.2f}",
            "data/cellpres": f"{values['cell_pressure_kpa']:.3f}",
            "data/flowrate": f"{values['flow_l_min']:.3f}",
        }

    def close(self) -> None:
        self.closed = True


class MemoryActuators:
    """Lid, valve and pump commands go straight to the site; switches read from it."""

    def __init__(self, site: SimulatedSite) -> None:
        self.site = site
        self.chambers = {c.id: c for c in site.cfg.chambers}
        # analyser power relays: the state and each switching (monotonic s, analyser, on)
        self.power: dict[str, bool] = {}
        self.power_log: list[tuple[float, str, bool]] = []

    def set_analyser_power(self, analyser: str, on: bool) -> None:
        if self.site.cfg.analyser(analyser).power is None:
            return
        self.power[analyser] = on
        self.power_log.append((self.site.clock.monotonic(), analyser, on))

    def set_lid(self, chamber: str, closed: bool) -> None:
        self.site.command_lid(chamber, closed)

    def lid_state(self, chamber: str) -> LidState:
        cfg = self.chambers[chamber]
        closed = self.site.closed_switch(chamber) if cfg.closed_switch else None
        opened = self.site.open_switch(chamber) if cfg.open_switch else None
        if closed is None and opened is None:
            return LidState.UNKNOWN
        if closed:
            return LidState.CLOSED
        if opened or (opened is None and self.site.lid_position(chamber) <= 0.0):
            return LidState.OPEN
        return LidState.MOVING

    def set_valve(self, chamber: str, open_: bool) -> None:
        if self.chambers[chamber].valve is not None:
            self.site.command_valve(chamber, open_)

    def set_pump(self, on: bool) -> None:
        self.site.command_pump(on)

    def set_manifold(self, slot: str | None) -> None:
        slots = [m.slot for m in self.site.cfg.calibration.manifold]
        if slot is not None and slot not in slots:
            raise ConfigError(f"calibration.manifold: no slot {slot!r}")
        for other in slots:
            if other != slot:
                self.site.command_manifold(other, False)
        if slot is not None:
            self.site.command_manifold(slot, True)

    def open_all(self) -> None:
        for chamber in self.chambers:
            self.site.command_lid(chamber, False)
            self.set_valve(chamber, False)
        self.set_manifold(None)

    def close(self) -> None:
        pass


class MemoryAuxSensors:
    """The site's true auxiliary values, as the configured sensors would read them."""

    def __init__(self, site: SimulatedSite, *, clock: Clock) -> None:
        self.site = site
        self.clock = clock

    def read(self) -> tuple[AuxReading, ...]:
        now = self.clock.now()
        return tuple(
            AuxReading(
                sensor=a.id,
                quantity=a.quantity,
                chamber=a.chamber,
                value=self.site.aux_value(a.quantity, a.chamber),
                time=now,
            )
            for a in self.site.cfg.aux
        )

    def close(self) -> None:
        pass


class MemoryTraceGasAnalyser:
    """A laser trace-gas analyser computed from the site (virtual time, no wire): the gases
    its ``protocol`` reports, dry mole fractions with the simulated instrument's noise and
    lag. ``analyser_silent`` and ``stale`` faults end in :class:`HardwareTimeoutError`."""

    def __init__(
        self,
        site: SimulatedSite,
        analyser: str,
        *,
        protocol: str,
        clock: Clock,
        species: tuple[str, ...] = (),
    ) -> None:
        if protocol == "picarro":
            fields = {
                _PICARRO_FIELDS[s.removesuffix("_dry")]
                for s in species
                if s.removesuffix("_dry") in _PICARRO_FIELDS
            }
            if "H2O" in species:
                fields.add("h2o_mmol_mol")
            self.fields = tuple(sorted(fields))
            self.dry = all(
                s.endswith("_dry") for s in species if s.removesuffix("_dry") in _PICARRO_FIELDS
            )
        elif protocol in TRACE_GAS_FIELDS:
            self.fields = TRACE_GAS_FIELDS[protocol]
            self.dry = True
        else:
            raise ConfigError(f"analysers.{analyser}: {protocol!r} is not a trace-gas protocol")
        self.protocol = protocol
        self.ticks = MemoryAnalyser(site, analyser, clock=clock)
        self.site = site
        self.analyser = analyser
        self.clock = clock

    def identify(self) -> AnalyserInfo:
        return AnalyserInfo(model=f"memory {self.protocol}", serial=f"MEM-{self.analyser}")

    def configure(self, *, output_interval_s: float) -> None:
        self.ticks.configure(output_interval_s=output_interval_s)

    def read(self, timeout_s: float) -> AnalyserReading:
        from chamberd.controller.sim.trace_gas import measured_values

        if self.analyser in self.site.faults.stale:
            self.clock.sleep(timeout_s)
            raise HardwareTimeoutError(
                f"memory analyser {self.analyser}: stale data within {timeout_s:g} s"
            )
        tick = self.ticks.read(timeout_s)  # honours silence, paces the output
        values = measured_values(self.site, self.analyser, self.protocol, tick.monotonic_s)
        return AnalyserReading(
            time=tick.time,
            monotonic_s=tick.monotonic_s,
            co2_umol_mol=values["co2_umol_mol"] if "co2_umol_mol" in self.fields else None,
            h2o_mmol_mol=values["h2o_mmol_mol"] if "h2o_mmol_mol" in self.fields else None,
            ch4_nmol_mol=values["ch4_nmol_mol"] if "ch4_nmol_mol" in self.fields else None,
            n2o_nmol_mol=values["n2o_nmol_mol"] if "n2o_nmol_mol" in self.fields else None,
            cell_pressure_kpa=values["pressure_kpa"],
            dry=self.dry,
        )

    def discard_pending(self) -> None:
        self.ticks.discard_pending()

    def close(self) -> None:
        self.ticks.close()
