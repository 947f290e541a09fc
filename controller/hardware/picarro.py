"""Picarro cavity ring-down analysers (G2508 and kin): the remote command interface.

The interface (Picarro's "CommandInterface", over RS-232 or a TCP port, set up in the
instrument's Setup Tool) takes one ASCII command per line, ending in CR, and answers one
line per command (CR, optionally LF), or ``ERR:<code>`` and a time stamp, tab-separated:

* ``_Instr_GetStatus`` -> an integer bit mask (1 ready, 2 measuring, 4 error in buffer,
  64 gas flowing, 128 pressure locked, 256 cavity temperature locked, 512 warm box
  locked, 8192 warming up, 16384 system error);
* ``_Meas_GetConcEx`` -> ``yy/mm/dd HH:MM:SS.fff;c1;c2;...``: the latest measurement's
  time and the concentrations of the species the interface is set up to report, in that
  order (``%.3f``): the order is the instrument's configuration, so chamberd takes it from
  the site configuration (``species``);
* ``_Meas_GetBuffer`` -> ``N;`` and then N lines ``time;c1;time;c2;...``: the measurements
  queued since the last call (the queue is emptied);
* errors seen: ``ERR:3001`` measurement system disabled, ``ERR:3002`` no measurement data.

Verified: the commands, reply formats and error codes against the source of Picarro's
command interface (CommandInterface.py, 2010, as published in a public repository), the
CR terminator and 19200 baud against public serial drivers; the TCP port (51020) from a
public configuration. Assumed [unverified]: species units as in the analysers' ``.dat``
files (CO2, CH4, N2O in ppm; NH3 in ppb; H2O in %); the ``_dry`` species are dry mole
fractions (``dry=True`` when every gas read is a ``_dry`` species).

The driver polls: :meth:`read` sends ``_Meas_GetConcEx`` once per output interval and
returns the first measurement newer than the last one, stamped by the clock when the
reply arrived. Replies that repeat the last measurement's time (the analyser stopped
measuring but answers) end in :class:`HardwareTimeoutError` ("stale") at the deadline (the
rule the three laser drivers share: :mod:`.stale`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from chamberd.controller.clock import Clock
from chamberd.controller.errors import HardwareError, HardwareTimeoutError, ProtocolError

from .ports import AnalyserInfo, AnalyserReading
from .serial_link import SerialLink
from .stale import StaleWatch

__all__ = [
    "BAUDRATE",
    "STATUS_BITS",
    "TCP_PORT",
    "PicarroAnalyser",
    "PicarroError",
    "PicarroMeasurement",
    "parse_conc_ex",
]

log = logging.getLogger(__name__)

BAUDRATE = 19200
TCP_PORT = 51020
STATUS_BITS = {
    1: "ready",
    2: "measuring",
    4: "error in buffer",
    64: "gas flowing",
    128: "pressure locked",
    256: "cavity temperature locked",
    512: "warm box locked",
    8192: "warming up",
    16384: "system error",
}
ERROR_CODES = {"3001": "measurement system disabled", "3002": "no measurement data"}
# species -> (reading field, factor from the instrument's unit)
_SPECIES = {
    "CO2": ("co2_umol_mol", 1.0),
    "CO2_dry": ("co2_umol_mol", 1.0),
    "CH4": ("ch4_nmol_mol", 1000.0),
    "CH4_dry": ("ch4_nmol_mol", 1000.0),
    "N2O": ("n2o_nmol_mol", 1000.0),
    "N2O_dry": ("n2o_nmol_mol", 1000.0),
    "H2O": ("h2o_mmol_mol", 10.0),  # % -> mmol/mol
}


class PicarroError(ProtocolError):
    """An ``ERR:`` reply; ``code`` as the instrument sent it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PicarroMeasurement:
    time: dt.datetime  # the analyser's clock (naive: its own time zone)
    values: dict[str, float]  # species -> value as reported


def _instrument_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text.strip(), "%y/%m/%d %H:%M:%S.%f")  # noqa: DTZ007
    except ValueError:
        raise ProtocolError(f"not a Picarro time stamp: {text[:30]!r}") from None


def _number(text: str, species: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError(f"{species} is not a number: {text[:20]!r}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{species} is not finite: {text[:20]!r}")
    return value


def parse_conc_ex(line: str, species: tuple[str, ...]) -> PicarroMeasurement:
    """Parse a ``_Meas_GetConcEx`` reply.

    >>> m = parse_conc_ex("26/12/02 01:00:00.250;0.334;415.201;2.012;1.203",
    ...                   ("N2O_dry", "CO2_dry", "CH4_dry", "H2O"))
    >>> m.time.isoformat(), m.values["CH4_dry"]
    ('2026-12-02T01:00:00.250000', 2.012)
    """
    parts = [p for p in line.strip().split(";")]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if len(parts) != len(species) + 1:
        raise ProtocolError(
            f"{len(parts) - 1} values for {len(species)} configured species "
            f"({', '.join(species)}): {line[:80]!r}; is the analyser's command interface set "
            "up to report these species in this order?"
        )
    when = _instrument_time(parts[0])
    return PicarroMeasurement(
        when, {s: _number(v, s) for s, v in zip(species, parts[1:], strict=True)}
    )


def parse_buffer_line(line: str, species: tuple[str, ...]) -> PicarroMeasurement:
    """One line of a ``_Meas_GetBuffer`` reply: ``time;value;`` per species."""
    parts = [p for p in line.strip().split(";")]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if len(parts) != 2 * len(species):
        raise ProtocolError(
            f"buffer line with {len(parts)} fields for {len(species)} species: {line[:80]!r}"
        )
    when = _instrument_time(parts[0])
    values = {s: _number(parts[2 * i + 1], s) for i, s in enumerate(species)}
    return PicarroMeasurement(when, values)


def status_text(status: int) -> str:
    return ", ".join(name for bit, name in STATUS_BITS.items() if status & bit) or "none"


class PicarroAnalyser:
    """Driver of a Picarro analyser's remote command interface (the GasAnalyser port)."""

    def __init__(
        self,
        link: SerialLink,
        *,
        species: tuple[str, ...],
        clock: Clock,
        reply_timeout_s: float = 3.0,
    ) -> None:
        if not species:
            raise ValueError("a Picarro needs its species list (as its interface reports)")
        self.link = link
        self.species = tuple(species)
        self.clock = clock
        self.reply_timeout_s = reply_timeout_s
        self.interval_s = 1.0
        self._next_poll = -math.inf
        self.stale_watch: StaleWatch[dt.datetime] = StaleWatch()
        self._reply_mono: float | None = None  # when the last reply arrived
        gases = [s for s in self.species if s in _SPECIES and s != "H2O"]
        # a species read as its _dry form when the analyser reports both
        self._use: dict[str, str] = {}
        for s in self.species:
            if s not in _SPECIES:
                continue
            field = _SPECIES[s][0]
            if field not in self._use or s.endswith("_dry"):
                self._use[field] = s
        self.dry = bool(gases) and all(
            self._use[_SPECIES[s][0]].endswith("_dry") for s in gases if s != "H2O"
        )

    @property
    def stale(self) -> int:
        """Replies skipped because they repeated the last measurement's time."""
        return self.stale_watch.total

    def _where(self) -> str:
        return f"{self.link.name} on {self.link.url}"

    def command(self, command: str, timeout_s: float | None = None) -> str:
        """Send ``command``; its one-line reply. :class:`PicarroError` for ``ERR:``."""
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        self.link.write_line(command)
        try:
            reply = self.link.read_line(timeout_s)
        except HardwareTimeoutError as exc:
            raise HardwareTimeoutError(
                f"{self._where()}: {self.link.lost_since(self._reply_mono)}no reply to "
                f"{command} within {timeout_s:g} s; last frames: {self.link.last_frames()}"
            ) from exc
        self._reply_mono = self.clock.monotonic()
        if reply.startswith("ERR:"):
            code = reply[4:].split("\t", 1)[0].strip()
            meaning = ERROR_CODES.get(code, "error")
            raise PicarroError(
                f"{self._where()}: {command} answered ERR:{code} ({meaning}); last frames: "
                f"{self.link.last_frames()}",
                code,
            )
        return reply

    def status(self) -> int:
        reply = self.command("_Instr_GetStatus")
        try:
            return int(reply.strip().rstrip(";"))
        except ValueError:
            raise ProtocolError(
                f"{self._where()}: _Instr_GetStatus answered {reply[:40]!r}, not a number"
            ) from None

    def identify(self) -> AnalyserInfo:
        self.status()  # proves the interface answers
        return AnalyserInfo(model="Picarro")

    def configure(self, *, output_interval_s: float) -> None:
        """Poll every ``output_interval_s``; refuse an analyser reporting a system error."""
        self.interval_s = output_interval_s
        self.link.open()
        self.link.drain()
        status = self.status()
        if status & 16384:
            raise HardwareError(
                f"{self._where()}: the analyser reports a system error (status {status}: "
                f"{status_text(status)})"
            )
        if status & 8192 or not status & 2:
            log.warning("%s: status %d (%s)", self._where(), status, status_text(status))

    def read_buffer(self) -> list[PicarroMeasurement]:
        """Every measurement queued in the analyser (``_Meas_GetBuffer``), oldest first."""
        head = self.command("_Meas_GetBuffer")
        try:
            count = int(head.strip().rstrip(";"))
        except ValueError:
            raise ProtocolError(
                f"{self._where()}: _Meas_GetBuffer answered {head[:40]!r}, not a count"
            ) from None
        out = []
        for _ in range(count):
            line = self.link.read_line(self.reply_timeout_s)
            out.append(parse_buffer_line(line, self.species))
        return out

    def _reading(self, m: PicarroMeasurement, arrived: dt.datetime, mono: float) -> AnalyserReading:
        fields = {
            field: m.values[s] * _SPECIES[s][1] for field, s in self._use.items() if s in m.values
        }
        return AnalyserReading(
            time=arrived,
            monotonic_s=mono,
            co2_umol_mol=fields.get("co2_umol_mol"),
            h2o_mmol_mol=fields.get("h2o_mmol_mol"),
            ch4_nmol_mol=fields.get("ch4_nmol_mol"),
            n2o_nmol_mol=fields.get("n2o_nmol_mol"),
            dry=self.dry,
        )

    def read(self, timeout_s: float) -> AnalyserReading:
        deadline = self.clock.monotonic() + timeout_s
        no_data = None
        while True:
            now = self.clock.monotonic()
            if now >= deadline:
                raise self._timeout(timeout_s, no_data)
            if now < self._next_poll:
                self.clock.sleep(min(self._next_poll, deadline) - now)
                continue
            self._next_poll = now + self.interval_s
            try:
                reply = self.command(
                    "_Meas_GetConcEx", timeout_s=min(self.reply_timeout_s, deadline - now)
                )
            except PicarroError as exc:
                if exc.code != "3002":
                    raise
                no_data = exc  # not measuring yet: ask again until the deadline
                continue
            except HardwareTimeoutError:
                raise
            except HardwareError as exc:  # the link is down: to the daemon, a silent analyser
                raise HardwareTimeoutError(
                    f"{self._where()}: no measurement (link down: {exc})"
                ) from exc
            arrived, mono = self.clock.now(), self.clock.monotonic()
            measurement = parse_conc_ex(reply, self.species)
            if not self.stale_watch.fresh(measurement.time):
                self._next_poll = self.clock.monotonic() + self.interval_s / 4
                continue
            return self._reading(measurement, arrived, mono)

    def _timeout(self, timeout_s: float, no_data: Exception | None) -> HardwareTimeoutError:
        if self.stale_watch.run:
            what = self.stale_watch.describe()
        elif no_data is not None:
            what = "no measurement data (ERR:3002)"
        else:
            what = "no new measurement"
        return HardwareTimeoutError(
            f"{self._where()}: {what} within {timeout_s:g} s; last frames: "
            f"{self.link.last_frames()}"
        )

    def discard_pending(self) -> None:
        self.link.drain()

    def close(self) -> None:
        self.link.close()
