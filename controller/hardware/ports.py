"""Ports: what the daemon needs of hardware, in domain terms and units.

Coil numbers, register maps and wire frames never cross a port. Each port has three
implementations, chosen by a string in the configuration (see
:mod:`chamberd.controller.hardware`): the real driver, an in-memory fake for pure logic
tests, and the real driver talking to the simulated site on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "AnalyserInfo",
    "AnalyserReading",
    "AuxReading",
    "AuxSensors",
    "ChamberActuators",
    "GMP343Settings",
    "GasAnalyser",
    "LI8x0Calibration",
    "LidState",
]


@dataclass(frozen=True)
class AnalyserReading:
    """One record of a gas analyser, stamped by the injected clock when it arrived.

    Fields the instrument does not report are None. CO2, CH4 and N2O are mole fractions in
    moist air, as the NDIR analysers report them, unless ``dry`` is True: then they are dry
    mole fractions (the laser analysers correct for water dilution themselves: LI-7810/7820,
    the LGR/ABB ``[..]d_ppm`` columns, Picarro ``_dry`` species). H2O is always the moist
    mole fraction. Units: CO2 umol/mol, CH4 and N2O nmol/mol, H2O mmol/mol.
    """

    time: dt.datetime  # UTC
    monotonic_s: float
    co2_umol_mol: float | None
    h2o_mmol_mol: float | None = None
    cell_temperature_degc: float | None = None
    cell_pressure_kpa: float | None = None
    ch4_nmol_mol: float | None = None
    n2o_nmol_mol: float | None = None
    flow_l_min: float | None = None  # sample flow, when the instrument measures it
    dry: bool = False  # CO2/CH4/N2O are dry mole fractions (corrected by the instrument)


@dataclass(frozen=True)
class AnalyserInfo:
    model: str
    serial: str = ""
    firmware: str = ""


@runtime_checkable
class GasAnalyser(Protocol):
    """A stream of readings at the configured output interval."""

    def identify(self) -> AnalyserInfo: ...

    def configure(self, *, output_interval_s: float) -> None:
        """Set the output interval and the fields the driver needs; raises on a refusal."""
        ...

    def read(self, timeout_s: float) -> AnalyserReading:
        """The next reading; :class:`HardwareTimeoutError` when none comes in time."""
        ...

    def discard_pending(self) -> None:
        """Forget readings that arrived while nobody was reading (they would carry the
        time they are read, not the time they were measured)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LI8x0Calibration(Protocol):
    """The user calibration of an LI-COR LI-820/830/840A/850 (the XML ``<CAL>`` commands).

    Each command sends the instrument's documented XML (with the date), and returns the
    exact text sent once the instrument answered ``<ACK>TRUE``; ACK FALSE or no ACK raise
    :class:`~chamberd.controller.errors.ProtocolError` /
    :class:`~chamberd.controller.errors.HardwareTimeoutError`. The instrument averages
    the next 5 s after the command and does no stability test itself: the caller decides
    the reading is stable BEFORE calling.
    """

    def calibration_state(self) -> dict[str, str]:
        """Leaves of the ``<CAL>?`` and ``<POLY>?`` replies, keys ``cal/...`` and
        ``poly/...`` (lower case), texts as the instrument sent them."""
        ...

    def zero_co2(self, on: dt.date) -> str: ...

    def span_co2(self, value_umol_mol: float, on: dt.date) -> str: ...

    def span2_co2(self, value_umol_mol: float, on: dt.date) -> str: ...

    def zero_h2o(self, on: dt.date) -> str: ...

    def diagnostics(self) -> dict[str, str]:
        """Health fields the instrument reports (cell temperature and pressure, input
        voltage, flow rate, pump and source state, ...), leaf path -> text."""
        ...


@runtime_checkable
class GMP343Settings(Protocol):
    """The compensation settings and self-diagnostics of a Vaisala GMP343."""

    def compensation(self) -> dict[str, float | bool]:
        """``pressure_hpa``, ``pressure_on``, ``temperature_degc``, ``temperature_on``,
        ``humidity_pct``, ``humidity_on``, ``oxygen_pct``, ``oxygen_on``."""
        ...

    def errors(self) -> list[str]:
        """The ``ERRS`` answer; empty when the probe reports no errors."""
        ...

    def set_compensation(self, **values: float | bool) -> None:
        """Set some of the keys of :meth:`compensation` (e.g. ``pressure_hpa=880.0``)."""
        ...


class LidState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    MOVING = "moving"  # neither end-switch made
    UNKNOWN = "unknown"  # no end-switch configured, or both made


@runtime_checkable
class ChamberActuators(Protocol):
    """Lids, valves and the pump of a site, addressed by chamber id."""

    def set_lid(self, chamber: str, closed: bool) -> None: ...

    def lid_state(self, chamber: str) -> LidState: ...

    def set_valve(self, chamber: str, open_: bool) -> None:
        """Route the analyser's flow through the chamber (no-op without a valve)."""
        ...

    def set_pump(self, on: bool) -> None: ...

    def set_manifold(self, slot: str | None) -> None:
        """Open the calibration manifold valve of ``slot`` (a ``[calibration]`` manifold
        slot id), closing the others first; None closes them all."""
        ...

    def open_all(self) -> None:
        """The safe state: every lid commanded open, every valve and manifold valve
        closed. Never raises for one device's failure before trying the others; raises
        afterwards."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AuxReading:
    """One auxiliary quantity: soil temperature, soil moisture, air temperature, pressure."""

    sensor: str
    quantity: str  # soil_temperature_degc | soil_moisture_pct | air_temperature_degc | pressure_kpa
    chamber: str | None
    value: float
    time: dt.datetime


@runtime_checkable
class AuxSensors(Protocol):
    def read(self) -> tuple[AuxReading, ...]:
        """Every configured sensor once."""
        ...

    def close(self) -> None: ...
