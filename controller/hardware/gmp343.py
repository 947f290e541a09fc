"""Vaisala GMP343 CO2 probe: ASCII commands over RS-232/RS-485 (19200 8N1).

Commands end with CR; the probe answers, echoing the command unless ``echo off``, and shows
a ``>`` prompt when it is ready for the next one. The driver stops the output (``S``),
turns echo off, sets the interval (``INTV 1 s``) and a plain output form
(``FORM CO2 #r #n``: one number per line), and starts continuous output (``R``). Real probes
sometimes miss a command, so each is resent once when no prompt comes in time.

Data lines are parsed leniently: ``452.3``, ``CO2= 452 ppm`` and ``452.3 (ppm)`` all give
452.3 umol mol-1 (the GMP343 reports moist-air CO2 without H2O).

Compensation (the probe corrects its reading for the gas it assumes is in its cell): the
switches ``PC``, ``TC``, ``RHC``, ``OC`` (``ON``/``OFF``; alone, they show the state) and
the values ``P`` (hPa), ``RH`` (%RH), ``O2`` (%); ``T`` shows the temperature the probe
measures and compensates with. ``ERRS`` lists active errors (``OK: No errors
detected.``). Output is stopped (``S``) for these commands and restarted (``R``) after.
"""

from __future__ import annotations

import logging
import math
import re

from chamberd.controller.clock import Clock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError, operator_message

from .ports import AnalyserInfo, AnalyserReading
from .serial_link import SerialLink

__all__ = ["BAUDRATE", "COMPENSATION_COMMANDS", "GMP343Analyser", "parse_data_line"]

log = logging.getLogger(__name__)

BAUDRATE = 19200
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
SETUP = ("S", "ECHO OFF", "SMODE STOP", "INTV {interval} s", "FORM CO2 #r #n", "R")
#: compensation() key -> the probe's command (switches take ON/OFF, values a number)
COMPENSATION_COMMANDS = {
    "pressure_on": "PC",
    "pressure_hpa": "P",
    "temperature_on": "TC",
    "temperature_degc": "T",
    "humidity_on": "RHC",
    "humidity_pct": "RH",
    "oxygen_on": "OC",
    "oxygen_pct": "O2",
}


def parse_data_line(line: str) -> float:
    """CO2 [umol mol-1] from one output line of the probe.

    >>> parse_data_line("CO2= 452 ppm"), parse_data_line(" 431.7")
    (452.0, 431.7)
    """
    text = line.strip()
    if text.startswith(">"):
        text = text[1:].strip()
    if "=" in text:
        name, _, text = text.partition("=")
        if name.strip().upper() not in ("CO2", ""):
            raise ProtocolError(f"not a CO2 line: {line[:80]!r}")
    match = _NUMBER.search(text)
    rest = text[match.end() :].strip().lower() if match else ""
    if match is None or (rest and rest.strip("()") not in ("ppm", "")):
        raise ProtocolError(f"not a GMP343 data line: {line[:80]!r}")
    value = float(match.group())
    if not math.isfinite(value):
        raise ProtocolError(f"not a finite value: {line[:80]!r}")
    return value


class GMP343Analyser:
    """Driver of a Vaisala GMP343 on a serial link (continuous output)."""

    def __init__(self, link: SerialLink, *, clock: Clock, max_garbled: int = 10) -> None:
        self.link = link
        self.clock = clock
        self.max_garbled = max_garbled
        self.garbled = 0

    def _command(self, command: str, timeout_s: float = 1.5, attempts: int = 2) -> list[str]:
        """Send ``command`` and collect the lines up to the ``>`` prompt."""
        for attempt in range(attempts):
            self.link.write_line(command)
            lines: list[str] = []
            deadline = self.clock.monotonic() + timeout_s
            while True:
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    break
                try:
                    line = self.link.read_line(remaining)
                except HardwareTimeoutError:
                    break
                if line.startswith(">"):
                    return lines
                if line.strip().upper() == command.upper():
                    continue  # the echo
                lines.append(line)
            log.info("%s: no prompt after %r (attempt %d)", self.link.name, command, attempt + 1)
        raise HardwareTimeoutError(
            f"{self.link.where}: no '>' prompt after {command!r} "
            f"({attempts} attempts); last frames: {self.link.last_frames()}"
        )

    def identify(self) -> AnalyserInfo:
        self._command("S")
        lines = self._command("?")
        model, firmware, serial_number = "GMP343", "", ""
        for line in lines:
            if line.upper().startswith("GMP343"):
                _, _, firmware = line.partition("/")
                firmware = firmware.strip()
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "serial number":
                serial_number = value.strip()
        self.link.write_line("R")  # back to continuous output (no prompt follows)
        return AnalyserInfo(model=model, serial=serial_number, firmware=firmware)

    def configure(self, *, output_interval_s: float) -> None:
        interval = max(1, round(output_interval_s))
        for command in SETUP:
            if command == "R":
                self.link.write_line("R")  # continuous output follows instead of a prompt
                continue
            reply = self._command(command.format(interval=interval))
            for line in reply:
                if "error" in line.lower() or "unknown" in line.lower():
                    raise ProtocolError(f"{self.link.where}: refused {command!r}: {line!r}")

    # --- settings (the GMP343Settings port) -----------------------------------------------

    def _stopped(self, commands: list[str]) -> list[list[str]]:
        """Run ``commands`` with the output stopped; restart continuous output after."""
        self._command("S")
        try:
            return [self._command(command) for command in commands]
        finally:
            self.link.write_line("R")

    def _refused(self, command: str, reply: list[str]) -> None:
        for line in reply:
            if "error" in line.lower() or "unknown" in line.lower():
                raise ProtocolError(
                    f"{self.link.name} on {self.link.url}: refused {command!r}: {line!r}"
                )

    def compensation(self) -> dict[str, float | bool]:
        commands = list(COMPENSATION_COMMANDS.values())
        out: dict[str, float | bool] = {}
        for (key, command), reply in zip(
            COMPENSATION_COMMANDS.items(), self._stopped(commands), strict=True
        ):
            self._refused(command, reply)
            text = " ".join(line.partition(":")[2] or line for line in reply).strip()
            if key.endswith("_on"):
                word = text.split()[0].upper() if text else ""
                if word not in ("ON", "OFF"):
                    raise ProtocolError(
                        f"{self.link.name}: {command!r} answered {reply!r}, not ON or OFF"
                    )
                out[key] = word == "ON"
            else:
                match = _NUMBER.search(text)
                if match is None:
                    raise ProtocolError(
                        f"{self.link.name}: {command!r} answered {reply!r}, not a number"
                    )
                out[key] = float(match.group())
        return out

    def errors(self) -> list[str]:
        (reply,) = self._stopped(["ERRS"])
        lines = [line.strip() for line in reply if line.strip()]
        if any(line.upper().startswith("OK") for line in lines):
            return []
        return lines

    def set_compensation(self, **values: float | bool) -> None:
        commands = []
        for key, value in values.items():
            if key == "temperature_degc":
                raise ValueError(
                    "the GMP343 compensates with the temperature it measures: set "
                    "temperature_on, not temperature_degc"
                )
            if key not in COMPENSATION_COMMANDS:
                raise ValueError(f"unknown GMP343 compensation setting {key!r}")
            command = COMPENSATION_COMMANDS[key]
            if key.endswith("_on"):
                commands.append(f"{command} {'ON' if value else 'OFF'}")
            else:
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError(f"{key} must be finite, got {value!r}")
                commands.append(f"{command} {number:.2f}")
        for command, reply in zip(commands, self._stopped(commands), strict=True):
            self._refused(command, reply)

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
                line = self.link.read_line(remaining)
            except HardwareTimeoutError as exc:
                raise HardwareTimeoutError(
                    f"{self.link.where}: {self.link.state()}no data within {timeout_s:g} s; "
                    f"last frames: {self.link.last_frames()}"
                ) from exc
            if line.startswith(">") and not line[1:].strip():
                continue
            try:
                co2 = parse_data_line(line)
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
            self.garbled = 0
            return AnalyserReading(
                time=self.clock.now(), monotonic_s=self.clock.monotonic(), co2_umol_mol=co2
            )

    def discard_pending(self) -> None:
        self.link.drain()

    def close(self) -> None:
        self.link.close()
