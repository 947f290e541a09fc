"""LI-COR LI-820 / LI-830 / LI-840A / LI-850 gas analysers: XML over RS-232 (9600 8N1).

Every message is one XML document rooted at the model (``<li850>...</li850>``; tags are
case-insensitive). Data records look like::

    <li850><data><celltemp>27.6</celltemp><cellpres>101.3</cellpres><co2>648.2</co2>
    <h2o>6.79</h2o>...</data></li850>

and the fields present depend on the instrument's configuration. After every command the
analyser answers ``<li850><ack>TRUE</ack></li850>`` (FALSE when it could not parse it); ACK
lines may arrive between data lines at any time. Commands end with LF, replies with CR LF.

User calibration (LI-COR's "Calibration tags" of the XML grammar) goes under ``<CAL>``
with the date, e.g. ``<li850><cal><date>2026-07-01</date><co2zero>true</co2zero></cal>
</li850>`` or ``<co2span>2000</co2span>``; ``<li850><cal>?</cal></li850>`` and
``<li850><poly>?</poly></li850>`` return the calibration state (last zero and span dates,
the zero and span constants; the factory polynomial). The instrument averages its reading
for 5 s on a zero or span command and does no stability test itself.

The protocol functions (:func:`parse_message`, :func:`outrate_command`,
:func:`fields_command`, :func:`cal_command`) are pure; :class:`LI8x0Analyser` drives a
:class:`~chamberd.controller.hardware.serial_link.SerialLink`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from chamberd.controller.clock import Clock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError, operator_message

from .ports import AnalyserInfo, AnalyserReading
from .serial_link import SerialLink

__all__ = [
    "CAL_AVERAGE_S",
    "FLOW_MODELS",
    "MODELS",
    "LI8x0Analyser",
    "Message",
    "cal_command",
    "fields_command",
    "outrate_command",
    "parse_message",
]

log = logging.getLogger(__name__)

#: Configuration name -> XML root tag.
MODELS = {"li820": "li820", "li830": "li830", "li840a": "li840", "li850": "li850"}
BAUDRATE = 9600
# fields the driver turns on (the instrument's RS232 switches)
_FIELDS = ("CO2", "H2O", "CELLTEMP", "CELLPRES")
#: Models with a flow sensor (the ``FLOWRATE`` field, L/min).
FLOW_MODELS = ("li830", "li840a", "li850")
#: The instrument averages this long on a zero or span command [s].
CAL_AVERAGE_S = 5.0
_VALUES = {
    "co2": "co2_umol_mol",
    "h2o": "h2o_mmol_mol",
    "celltemp": "cell_temperature_degc",
    "cellpres": "cell_pressure_kpa",
    "flowrate": "flow_l_min",
}
# leaves of a full reply that report the instrument's health
_DIAGNOSTIC_PREFIXES = (
    "data/celltemp",
    "data/cellpres",
    "data/ivolt",
    "data/flowrate",
    "data/co2abs",
    "data/h2oabs",
    "data/raw/",
    "pump/",
    "source",
    "tech/",
    "cfg/heater",
    "cfg/pcomp",
    "error",
)


@dataclass(frozen=True)
class Message:
    """One parsed message: its root tag, and either data values or an ACK (or neither)."""

    root: str
    values: dict[str, float]
    ack: bool | None = None
    text: dict[str, str] | None = None  # every leaf element, lower-case path -> text


def _leaves(element: ET.Element, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for child in element:
        name = f"{prefix}{child.tag.lower()}"
        if len(child):
            out.update(_leaves(child, name + "/"))
        else:
            out[name] = (child.text or "").strip()
    return out


def parse_message(line: str) -> Message:
    """Parse one line from an LI-8x0.

    Raises
    ------
    ProtocolError
        For anything that is not a well-formed LI-8x0 XML message.

    Examples
    --------
    >>> m = parse_message("<li850><data><co2>648.2</co2><h2o>6.79</h2o></data></li850>")
    >>> m.root, m.values["co2_umol_mol"], m.values["h2o_mmol_mol"]
    ('li850', 648.2, 6.79)
    >>> parse_message("<LI850><ACK>TRUE</ACK></LI850>").ack
    True
    """
    text = line.strip()
    if not text.startswith("<") or "<!" in text or len(text) > 4000:
        raise ProtocolError(f"not an LI-8x0 XML message: {text[:80]!r}")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ProtocolError(f"malformed XML ({exc}): {text[:80]!r}") from None
    tag = root.tag.lower()
    if not tag.startswith("li8"):
        raise ProtocolError(f"unexpected root <{root.tag}>: {text[:80]!r}")
    leaves = _leaves(root)
    ack_text = leaves.get("ack")
    ack = None if ack_text is None else ack_text.upper() == "TRUE"
    values: dict[str, float] = {}
    for name, key in _VALUES.items():
        raw = leaves.get(f"data/{name}")
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ProtocolError(f"<{name}> is not a number: {raw!r}") from None
        if not math.isfinite(value):
            raise ProtocolError(f"<{name}> is not finite: {raw!r}")
        values[key] = value
    return Message(root=tag, values=values, ack=ack, text=leaves)


def outrate_command(root: str, seconds: float) -> str:
    """Set the output interval (0 = poll only).

    >>> outrate_command("li850", 1)
    '<li850><cfg><outrate>1</outrate></cfg></li850>'
    """
    return f"<{root}><cfg><outrate>{seconds:g}</outrate></cfg></{root}>"


def fields_command(root: str, fields: tuple[str, ...] = _FIELDS) -> str:
    """Turn on the RS-232 output of ``fields`` (and keep XML: STRIP off).

    >>> fields_command("li840", ("CO2", "H2O"))
    '<li840><rs232><co2>true</co2><h2o>true</h2o><strip>false</strip></rs232></li840>'
    """
    inner = "".join(f"<{f.lower()}>true</{f.lower()}>" for f in fields)
    return f"<{root}><rs232>{inner}<strip>false</strip></rs232></{root}>"


def _number_text(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return f"{value:.3f}".rstrip("0").rstrip(".")


def cal_command(root: str, tag: str, on: dt.date, value: float | None = None) -> str:
    """A user calibration command (``tag``: co2zero, co2span, co2span2, h2ozero), dated.

    >>> cal_command("li850", "co2zero", dt.date(2026, 7, 1))
    '<li850><cal><date>2026-07-01</date><co2zero>true</co2zero></cal></li850>'
    >>> cal_command("li840", "co2span", dt.date(2026, 7, 1), 2000.0)
    '<li840><cal><date>2026-07-01</date><co2span>2000</co2span></cal></li840>'
    """
    if tag not in ("co2zero", "co2span", "co2span2", "h2ozero"):
        raise ValueError(f"unknown calibration command {tag!r}")
    if tag.endswith("zero"):
        body = "true"
    else:
        if value is None or value <= 0:
            raise ValueError(f"{tag} needs the span gas value > 0, got {value!r}")
        body = _number_text(value)
    return f"<{root}><cal><date>{on.isoformat()}</date><{tag}>{body}</{tag}></cal></{root}>"


class LI8x0Analyser:
    """Driver of an LI-820/830/840A/850 on a serial link.

    Garbled lines are skipped (logged, counted); after ``max_garbled`` in a row
    :meth:`read` raises :class:`ProtocolError`. A silent analyser raises
    :class:`HardwareTimeoutError`. A dropped link is reopened by the link with backoff.
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        model: str = "li850",
        clock: Clock,
        max_garbled: int = 10,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown LI-COR analyser model {model!r}")
        self.link = link
        self.model = model
        self.root = MODELS[model]
        self.clock = clock
        self.max_garbled = max_garbled
        self.garbled = 0

    def _command(self, command: str, timeout_s: float = 2.0, attempts: int = 2) -> Message:
        """Send a command and wait for its ACK (data lines in between are skipped)."""
        last_error: Exception | None = None
        for _ in range(attempts):
            self.link.write_line(command)
            deadline = self.clock.monotonic() + timeout_s
            while True:
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    last_error = HardwareTimeoutError(
                        f"{self.link.where}: no ACK to {command!r} within "
                        f"{timeout_s:g} s; last frames: {self.link.last_frames()}"
                    )
                    break
                try:
                    line = self.link.read_line(remaining)
                except HardwareTimeoutError as exc:
                    last_error = exc
                    break
                try:
                    message = parse_message(line)
                except ProtocolError:
                    continue
                if message.ack is True:
                    return message
                if message.ack is False:
                    raise ProtocolError(
                        f"{self.link.where}: refused {command!r} (ACK FALSE); "
                        f"last frames: {self.link.last_frames()}"
                    )
        raise HardwareTimeoutError(
            f"{self.link.where}: no ACK to {command!r} after {attempts} "
            f"attempts of {timeout_s:g} s; last frames: {self.link.last_frames()}"
        ) from last_error

    def identify(self) -> AnalyserInfo:
        """Ask for the configuration (``<li850>?</li850>``): model, serial, firmware."""
        self.link.write_line(f"<{self.root}>?</{self.root}>")
        deadline = self.clock.monotonic() + 3.0
        info: dict[str, str] = {}
        root = self.root
        while self.clock.monotonic() < deadline:
            try:
                line = self.link.read_line(max(0.01, deadline - self.clock.monotonic()))
            except HardwareTimeoutError:
                break
            try:
                message = parse_message(line)
            except ProtocolError:
                continue
            root = message.root
            if message.text:
                for key in ("ver", "serialnum", "cfg/ver", "serial"):
                    if key in message.text:
                        info[key.split("/")[-1]] = message.text[key]
            if message.ack is not None:
                break
        model = {"li840": "LI-840A"}.get(root, root.upper().replace("LI", "LI-"))
        return AnalyserInfo(
            model=model,
            serial=info.get("serialnum", info.get("serial", "")),
            firmware=info.get("ver", ""),
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The RS-232 fields the driver turns on (FLOWRATE on models with a flow sensor)."""
        return (*_FIELDS, "FLOWRATE") if self.model in FLOW_MODELS else _FIELDS

    def configure(self, *, output_interval_s: float) -> None:
        self._command(fields_command(self.root, self.fields))
        self._command(outrate_command(self.root, output_interval_s))

    # --- calibration (the LI8x0Calibration port) ------------------------------------------

    def _query(self, command: str, timeout_s: float = 3.0) -> dict[str, str]:
        """Send a query; every leaf of the non-data replies up to its ACK."""
        self.link.write_line(command)
        deadline = self.clock.monotonic() + timeout_s
        leaves: dict[str, str] = {}
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise HardwareTimeoutError(
                    f"{self.link.name} on {self.link.url}: no ACK to {command!r} within "
                    f"{timeout_s:g} s; last frames: {self.link.last_frames()}"
                )
            try:
                line = self.link.read_line(remaining)
            except HardwareTimeoutError as exc:
                raise HardwareTimeoutError(
                    f"{self.link.name} on {self.link.url}: no ACK to {command!r} within "
                    f"{timeout_s:g} s; last frames: {self.link.last_frames()}"
                ) from exc
            try:
                message = parse_message(line)
            except ProtocolError:
                continue
            if message.ack is False:
                raise ProtocolError(
                    f"{self.link.name} on {self.link.url}: refused {command!r} (ACK FALSE); "
                    f"last frames: {self.link.last_frames()}"
                )
            for key, value in (message.text or {}).items():
                if key != "ack":
                    leaves[key] = value
            if message.ack is True:
                return leaves

    def calibration_state(self) -> dict[str, str]:
        """The ``<CAL>?`` and ``<POLY>?`` leaves (``cal/co2kzero``, ``poly/date``, ...)."""
        state: dict[str, str] = {}
        for part in ("cal", "poly"):
            leaves = self._query(f"<{self.root}><{part}>?</{part}></{self.root}>")
            found = {k: v for k, v in leaves.items() if k.startswith(f"{part}/")}
            if part == "cal" and not found:
                raise ProtocolError(
                    f"{self.link.name} on {self.link.url}: no <cal> values in the answer to "
                    f"<cal>?; last frames: {self.link.last_frames()}"
                )
            state.update(found)
        return state

    def _calibrate(self, tag: str, on: dt.date, value: float | None = None) -> str:
        command = cal_command(self.root, tag, on, value)
        sent = self.clock.monotonic()
        # never resent: a repeated zero or span would average twice; the instrument
        # averages 5 s before the ACK (or after it: the wait below covers both)
        self._command(command, timeout_s=CAL_AVERAGE_S + 5.0, attempts=1)
        left = sent + CAL_AVERAGE_S - self.clock.monotonic()
        if left > 0:
            self.clock.sleep(left)
        log.info("%s: %s acknowledged", self.link.name, command)
        return command

    def zero_co2(self, on: dt.date) -> str:
        return self._calibrate("co2zero", on)

    def span_co2(self, value_umol_mol: float, on: dt.date) -> str:
        return self._calibrate("co2span", on, value_umol_mol)

    def span2_co2(self, value_umol_mol: float, on: dt.date) -> str:
        return self._calibrate("co2span2", on, value_umol_mol)

    def zero_h2o(self, on: dt.date) -> str:
        if self.model == "li820":
            raise ValueError("the LI-820 measures no H2O: no H2O zero")
        return self._calibrate("h2ozero", on)

    def diagnostics(self) -> dict[str, str]:
        """Health leaves of the full reply to ``<li850>?</li850>``."""
        leaves = self._query(f"<{self.root}>?</{self.root}>")
        return {k: v for k, v in leaves.items() if k.startswith(_DIAGNOSTIC_PREFIXES)}

    def read(self, timeout_s: float) -> AnalyserReading:
        deadline = self.clock.monotonic() + timeout_s
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise HardwareTimeoutError(
                    f"{self.link.where}: {self.link.state()}no data within {timeout_s:g} s; "
                    f"last frames: {self.link.last_frames()}"
                )
            try:
                line, arrived, arrived_mono = self.link.read_stamped(remaining)
            except HardwareTimeoutError as exc:
                raise HardwareTimeoutError(
                    f"{self.link.where}: {self.link.state()}no data within {timeout_s:g} s; "
                    f"last frames: {self.link.last_frames()}"
                ) from exc
            try:
                message = parse_message(line)
            except ProtocolError as exc:
                self.garbled += 1
                log.warning(
                    "%s: skipped a garbled line (%s)", self.link.name, operator_message(exc, 120)
                )
                log.debug("%s: the garbled line: %s", self.link.name, exc)
                if self.garbled >= self.max_garbled:
                    self.garbled = 0
                    raise ProtocolError(
                        f"{self.link.where}: {self.max_garbled} garbled lines "
                        f"in a row; last frames: {self.link.last_frames()}"
                    ) from exc
                continue
            if not message.values:
                continue  # an ACK or a configuration echo
            self.garbled = 0
            return AnalyserReading(
                time=arrived,
                monotonic_s=arrived_mono,
                co2_umol_mol=message.values.get("co2_umol_mol"),
                h2o_mmol_mol=message.values.get("h2o_mmol_mol"),
                cell_temperature_degc=message.values.get("cell_temperature_degc"),
                cell_pressure_kpa=message.values.get("cell_pressure_kpa"),
                flow_l_min=message.values.get("flow_l_min"),
            )

    def discard_pending(self) -> None:
        self.link.drain()

    def close(self) -> None:
        self.link.close()
