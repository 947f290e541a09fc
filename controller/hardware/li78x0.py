"""LI-COR LI-7810 (CH4, CO2, H2O) and LI-7820 (N2O, H2O) trace gas analysers over MQTT.

The analyser runs its own MQTT broker (Eclipse Mosquitto, port 1883) and publishes
(LI-COR manual, "Communication with the MQTT protocol", table 7-1):

* ``licor/niobrara/output/concentration``: one JSON object per record, keyed by the
  instrument's column names (those of its ``.data`` files: ``SECONDS``, ``NANOSECONDS``,
  ``NDX``, ``DIAG``, ``H2O``, ``CO2``, ``CH4`` or ``N2O``, ``CAVITY_P``, ``CAVITY_T``, ...);
* ``licor/niobrara/output/concentration/units``: the same keys with their units (the
  ``DATAU`` line of the files: ``ppm``, ``ppb``, ``kPa``, ``°C``, ...).

What was checked and what is assumed (see docs/hardware.md):

* topics: LI-COR's manual (verified);
* units: ``H2O ppm, CO2 ppm, CH4 ppb`` in the real LI-7810 file of
  ``../shared/data/one_hz`` (verified for files; the units topic is assumed to carry the
  same names, and is used when it arrives, defaults otherwise);
* values: public clients show both a plain number (``"H2O": 346.0``) and a ``[value,
  flag]`` pair (``"N2O": [39.85, 1]``); both are accepted, the flag is kept for DEBUG
  tracing only (its meaning is not documented where we looked) [unverified];
* an envelope: one public client reads ``payload["Concentration"]``; a payload with a
  single object-valued key ``Concentration`` is unwrapped [unverified];
* dry mole fractions: the LI-78x0 report CO2, CH4 and N2O corrected for water dilution
  [from LI-COR's specifications; taken as given], so readings carry ``dry=True``.

The instrument streams at 1 Hz whatever ``output_interval_s`` says. A record whose
``SECONDS``/``NANOSECONDS`` did not advance is not a new measurement (the instrument's
measurement stopped while its broker keeps sending, or a duplicate): it is skipped, and a
stream of such records ends in :class:`HardwareTimeoutError` ("stale") like a silent one
(the rule the three laser drivers share: :mod:`.stale`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from chamberd.controller.clock import Clock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError

from .mqtt_link import MqttLink
from .ports import AnalyserInfo, AnalyserReading
from .stale import StaleWatch

__all__ = [
    "DEFAULT_TOPIC_ROOT",
    "MODELS",
    "LI78x0Analyser",
    "LI78x0Record",
    "parse_concentration",
    "parse_units",
]

log = logging.getLogger(__name__)

DEFAULT_TOPIC_ROOT = "licor/niobrara"
CONCENTRATION = "output/concentration"
UNITS = "output/concentration/units"
#: configuration name -> (model, gases it reports)
MODELS = {"li7810": ("LI-7810", ("CH4", "CO2", "H2O")), "li7820": ("LI-7820", ("N2O", "H2O"))}
#: default units (those of the instrument's files, DATAU line), used until /units arrives
DEFAULT_UNITS = {
    "H2O": "ppm",
    "CO2": "ppm",
    "CH4": "ppb",
    "N2O": "ppb",
    "CAVITY_P": "kPa",
    "CAVITY_T": "°C",
}
# column -> (reading field, target unit)
_FIELDS = {
    "CO2": ("co2_umol_mol", "umol/mol"),
    "CH4": ("ch4_nmol_mol", "nmol/mol"),
    "N2O": ("n2o_nmol_mol", "nmol/mol"),
    "H2O": ("h2o_mmol_mol", "mmol/mol"),
    "CAVITY_P": ("cell_pressure_kpa", "kPa"),
    "CAVITY_T": ("cell_temperature_degc", "degC"),
}
# mole fraction unit -> mol/mol
_FRACTION = {
    "ppm": 1e-6,
    "umol/mol": 1e-6,
    "µmol/mol": 1e-6,
    "ppb": 1e-9,
    "nmol/mol": 1e-9,
    "ppt": 1e-12,
    "mmol/mol": 1e-3,
    "%": 1e-2,
}
_PRESSURE_KPA = {"kpa": 1.0, "pa": 1e-3, "hpa": 0.1, "mbar": 0.1, "torr": 0.133322368}


def _convert(column: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` to chamberd's unit for ``column``; ProtocolError if unknown."""
    target = _FIELDS[column][1]
    key = unit.strip()
    if target.endswith("/mol"):
        if key not in _FRACTION:
            raise ProtocolError(f"{column}: unknown mole fraction unit {unit!r}")
        return value * _FRACTION[key] / _FRACTION[target]
    if target == "kPa":
        factor = _PRESSURE_KPA.get(key.lower())
        if factor is None:
            raise ProtocolError(f"{column}: unknown pressure unit {unit!r}")
        return value * factor
    if key.replace("°", "").upper() in ("C", "DEGC", "DEG C"):
        return value
    if key.upper() == "K":
        return value - 273.15
    raise ProtocolError(f"{column}: unknown temperature unit {unit!r}")


@dataclass(frozen=True)
class LI78x0Record:
    """One parsed concentration message (values in the instrument's units)."""

    seconds: int | None
    nanoseconds: int
    values: dict[str, float]  # upper-case column -> number
    flags: dict[str, Any]  # column -> the flag of a [value, flag] pair

    @property
    def instrument_time_s(self) -> float | None:
        if self.seconds is None:
            return None
        return self.seconds + self.nanoseconds * 1e-9


def _load(payload: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        text = payload[:80] if isinstance(payload, str) else payload[:80].decode("latin-1")
        raise ProtocolError(f"not JSON ({exc}): {text!r}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"not a JSON object: {str(data)[:80]!r}")
    if len(data) == 1:  # an envelope ({"Concentration": {...}}), as one client reads it
        ((key, inner),) = data.items()
        if isinstance(inner, dict) and key.lower() in ("concentration", "units", "data"):
            data = inner
    return data


def parse_concentration(payload: bytes | str) -> LI78x0Record:
    """Parse a message of the concentration topic.

    Raises
    ------
    ProtocolError
        For anything but a JSON object of numbers (or ``[number, flag]`` pairs).

    Examples
    --------
    >>> r = parse_concentration('{"SECONDS": 1666884942, "NANOSECONDS": 313442945, '
    ...                         '"CH4": [2068.0002, 1], "CO2": 458.86121, "H2O": 12500.346}')
    >>> r.values["CH4"], r.flags["CH4"], r.values["CO2"]
    (2068.0002, 1, 458.86121)
    """
    data = _load(payload)
    values: dict[str, float] = {}
    flags: dict[str, Any] = {}
    for key, raw in data.items():
        column = str(key).upper()
        if isinstance(raw, list):
            if not raw:
                continue
            if len(raw) > 1:
                flags[column] = raw[1]
            raw = raw[0]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            if column in _FIELDS:
                raise ProtocolError(f"{column} is not a number: {raw!r}")
            continue  # REMARK, DATE, TIME, ...: text columns
        value = float(raw)
        if column in _FIELDS and not math.isfinite(value):
            raise ProtocolError(f"{column} is not finite: {raw!r}")
        values[column] = value
    seconds = values.get("SECONDS")
    nanoseconds = values.get("NANOSECONDS", 0.0)
    if not any(c in values for c in ("CO2", "CH4", "N2O")):
        raise ProtocolError(f"no CO2, CH4 or N2O in {str(data)[:120]!r}")
    return LI78x0Record(
        seconds=None if seconds is None else int(seconds),
        nanoseconds=int(nanoseconds) if math.isfinite(nanoseconds) else 0,
        values=values,
        flags=flags,
    )


def parse_units(payload: bytes | str) -> dict[str, str]:
    """Column -> unit of a message of the units topic (pairs: their first item).

    >>> parse_units('{"CH4": "ppb", "CO2": ["ppm", ""], "CAVITY_T": "°C"}')
    {'CH4': 'ppb', 'CO2': 'ppm', 'CAVITY_T': '°C'}
    """
    data = _load(payload)
    units: dict[str, str] = {}
    for key, raw in data.items():
        if isinstance(raw, list) and raw:
            raw = raw[0]
        if isinstance(raw, str):
            units[str(key).upper()] = raw
    return units


class LI78x0Analyser:
    """Driver of an LI-7810 or LI-7820 through its MQTT broker (the GasAnalyser port).

    Garbled messages are skipped (logged, counted); after ``max_garbled`` in a row
    :meth:`read` raises :class:`ProtocolError`. No new record within the timeout (broker
    down, analyser silent, or timestamps stopped) raises :class:`HardwareTimeoutError`.
    """

    def __init__(
        self,
        link: MqttLink,
        *,
        model: str = "li7810",
        clock: Clock,
        topic_root: str = DEFAULT_TOPIC_ROOT,
        max_garbled: int = 10,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown LI-COR trace gas analyser model {model!r}")
        self.link = link
        self.model = model
        self.clock = clock
        self.topic_root = topic_root
        self.concentration_topic = f"{topic_root}/{CONCENTRATION}"
        self.units_topic = f"{topic_root}/{UNITS}"
        self.max_garbled = max_garbled
        self.connect_timeout_s = connect_timeout_s
        self.garbled = 0
        self.stale_watch: StaleWatch[float] = StaleWatch()  # SECONDS.NANOSECONDS
        self.units = dict(DEFAULT_UNITS)

    @property
    def stale(self) -> int:
        """Records skipped because the instrument's time did not advance."""
        return self.stale_watch.total

    @classmethod
    def topics_for(cls, topic_root: str) -> tuple[str, str]:
        return f"{topic_root}/{CONCENTRATION}", f"{topic_root}/{UNITS}"

    def _where(self) -> str:
        return f"{self.link.name} on {self.link.url}"

    def identify(self) -> AnalyserInfo:
        return AnalyserInfo(model=MODELS[self.model][0])

    def configure(self, *, output_interval_s: float) -> None:
        """Connect and subscribe (the LI-78x0 streams at 1 Hz: nothing to set)."""
        if output_interval_s < 1.0:
            log.info(
                "%s: streams at 1 Hz; output_interval_s %g ignored",
                self._where(),
                output_interval_s,
            )
        self.link.wait_connected(self.connect_timeout_s)

    def _reading(self, record: LI78x0Record, arrived: Any, mono: float) -> AnalyserReading:
        fields: dict[str, float] = {}
        for column, (name, _target) in _FIELDS.items():
            if column in record.values:
                unit = self.units.get(column, DEFAULT_UNITS.get(column, ""))
                fields[name] = _convert(column, record.values[column], unit)
        return AnalyserReading(
            time=arrived,
            monotonic_s=mono,
            co2_umol_mol=fields.get("co2_umol_mol"),
            h2o_mmol_mol=fields.get("h2o_mmol_mol"),
            cell_temperature_degc=fields.get("cell_temperature_degc"),
            cell_pressure_kpa=fields.get("cell_pressure_kpa"),
            ch4_nmol_mol=fields.get("ch4_nmol_mol"),
            n2o_nmol_mol=fields.get("n2o_nmol_mol"),
            dry=True,
        )

    def read(self, timeout_s: float) -> AnalyserReading:
        deadline = self.clock.monotonic() + timeout_s
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise self._timeout(timeout_s)
            try:
                message = self.link.read(remaining)
            except HardwareTimeoutError as exc:
                raise self._timeout(timeout_s) from exc
            if message.topic == self.units_topic:
                try:
                    self.units.update(parse_units(message.payload))
                except ProtocolError as exc:
                    log.warning("%s: ignored a units message (%s)", self._where(), exc)
                continue
            if message.topic != self.concentration_topic:
                continue
            try:
                record = parse_concentration(message.payload)
                reading = self._reading(record, message.time, message.monotonic_s)
            except ProtocolError as exc:
                self.garbled += 1
                log.warning("%s: skipped a garbled message (%s)", self._where(), exc)
                if self.garbled >= self.max_garbled:
                    self.garbled = 0
                    raise ProtocolError(
                        f"{self._where()}: {self.max_garbled} garbled messages in a row; "
                        f"last frames: {self.link.last_frames()}"
                    ) from exc
                continue
            self.garbled = 0
            when = record.instrument_time_s
            if not self.stale_watch.fresh(when):
                log.debug(
                    "%s: record at instrument time %.3f repeats; skipped", self._where(), when
                )
                continue
            if record.flags:
                log.debug("%s: value flags %s", self._where(), record.flags)
            return reading

    def _timeout(self, timeout_s: float) -> HardwareTimeoutError:
        watch = self.stale_watch
        if watch.run:
            what = watch.describe(f"SECONDS {watch.last:.0f}")
        else:
            what = "no data"
        if not self.link.is_connected:
            why = f": {self.link.last_error}" if self.link.last_error else ""
            what += f" (broker not connected{why})"
        return HardwareTimeoutError(
            f"{self._where()}: {what} within {timeout_s:g} s on {self.concentration_topic}; "
            f"last frames: {self.link.last_frames()}"
        )

    def discard_pending(self) -> None:
        self.link.drain()

    def close(self) -> None:
        self.link.close()
