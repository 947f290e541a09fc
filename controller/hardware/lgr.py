"""LGR/ABB laser analysers (GGA, UGGA, N2O/CO): the comma-separated serial data stream.

The analyser streams one record per measurement on its RS-232 port at 115200 baud 8N1
(no handshake; a null-modem cable), comma-delimited, ending in CR LF: time, then each gas
as a wet mole fraction and its SD, the dry mole fractions (``[CH4]d_ppm``) and their SDs,
cell pressure (Torr) and temperature (degC), ambient temperature, the ringdown times, the
fit flag ``Fit_Flag`` and the MIU (multiport inlet unit) valve and its description. A
record whose Fit_Flag is not 3 comes from an invalid spectral fit (the analyser's own
judgement, e.g. during warm-up or at a pressure out of range): it is skipped, and
``max_invalid`` such records in a row, or only such records until the read's deadline,
raise :class:`ProtocolError` (the analyser streams, but nothing it says is usable). A
record whose ``Time`` did not advance (the measurement froze while the stream repeats its
last line) is not a new measurement: it is skipped, and a stream of such records ends in
:class:`HardwareTimeoutError` "stale data" at the read's deadline, as silence would (the
rule the three laser drivers share: :mod:`.stale`). The stream's dates read month-first
(``mm/dd/yyyy``) or day-first by the analyser's settings, so the time of day is compared
within one date, and a new date is always later; a ``Time`` of another form is only
compared for equality.

Checked and assumed (docs/hardware.md): 115200 8N1, the UGGA column order and the valid
Fit_Flag value 3 are those of a public UGGA acquisition program (verified as far as one
public driver goes); the GGA is taken to stream the same columns as the UGGA; the N2O/CO
column order below is assumed from the analysers' files [unverified]. A header line
(``Time, [CH4]_ppm, ...``), when the stream sends one, replaces the default layout, so a
firmware with other columns is read by name.

Units: mole fractions in ppm (CH4 and N2O to nmol/mol, H2O to mmol/mol), pressure in Torr
(to kPa). The driver reports the dry columns where the model has them (``dry=True``) and
H2O moist, as the analyser does.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from chamberd.controller.clock import Clock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError

from .ports import AnalyserInfo, AnalyserReading
from .serial_link import SerialLink
from .stale import StaleWatch

__all__ = [
    "BAUDRATE",
    "FIT_FLAG_VALID",
    "LAYOUTS",
    "LGRAnalyser",
    "LGRLayout",
    "parse_record",
    "record_time",
]

log = logging.getLogger(__name__)

BAUDRATE = 115200
FIT_FLAG_VALID = 3
TORR_TO_KPA = 0.133322368


def _with_sd(*names: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out += [name, f"{name}_sd"]
    return tuple(out)


@dataclass(frozen=True)
class LGRLayout:
    """The columns of one model's data record, in order."""

    model: str
    columns: tuple[str, ...]

    def index(self, name: str) -> int | None:
        try:
            return self.columns.index(name)
        except ValueError:
            return None


_TAIL = (
    *_with_sd("GasP_torr", "GasT_C", "AmbT_C", "RD0_us", "RD1_us"),
    "Fit_Flag",
    "MIU_VALVE",
    "MIU_DESC",
)
_UGGA = LGRLayout(
    "LGR UGGA",
    (
        "Time",
        *_with_sd("[CH4]_ppm", "[H2O]_ppm", "[CO2]_ppm", "[CH4]d_ppm", "[CO2]d_ppm"),
        *_TAIL,
    ),
)
LAYOUTS = {
    "lgr-ugga": _UGGA,
    "lgr-gga": LGRLayout("LGR GGA", _UGGA.columns),  # [assumed: the UGGA's columns]
    "lgr-n2oco": LGRLayout(  # [assumed from the analysers' files]
        "LGR N2O/CO",
        (
            "Time",
            *_with_sd("[N2O]_ppm", "[CO]_ppm", "[H2O]_ppm", "[N2O]d_ppm", "[CO]d_ppm"),
            *_TAIL,
        ),
    ),
}
# column -> (reading field, factor from the column's unit)
_VALUES = {
    "[CO2]_ppm": ("co2_umol_mol", 1.0),
    "[CO2]d_ppm": ("co2_umol_mol", 1.0),
    "[CH4]_ppm": ("ch4_nmol_mol", 1000.0),
    "[CH4]d_ppm": ("ch4_nmol_mol", 1000.0),
    "[N2O]_ppm": ("n2o_nmol_mol", 1000.0),
    "[N2O]d_ppm": ("n2o_nmol_mol", 1000.0),
    "[H2O]_ppm": ("h2o_mmol_mol", 0.001),
    "GasP_torr": ("cell_pressure_kpa", TORR_TO_KPA),
    "GasT_C": ("cell_temperature_degc", 1.0),
}


@dataclass(frozen=True)
class LGRRecord:
    time_text: str
    values: dict[str, float]  # reading field -> value in chamberd's units
    fit_flag: int | None
    dry: bool
    miu_valve: str = ""


def parse_record(line: str, layout: LGRLayout) -> LGRRecord:
    """Parse one data line in ``layout``.

    Raises
    ------
    ProtocolError
        Too few fields, or a gas/pressure/temperature/fit-flag field that is not a number.

    Examples
    --------
    >>> line = ("  12/02/2026 01:00:00.123,2.0123,0.0010,12000.1,5.1,455.2,0.2,2.0368,"
    ...         "0.0010,460.7,0.2,140.12,0.01,35.1,0.01,30.2,0.01,9.01,0.01,8.99,0.01,3,0,-")
    >>> r = parse_record(line, LAYOUTS["lgr-ugga"])
    >>> round(r.values["ch4_nmol_mol"], 1), r.values["co2_umol_mol"], r.fit_flag, r.dry
    (2036.8, 460.7, 3, True)
    """
    fields = [f.strip() for f in line.split(",")]
    needed = max(layout.index(c) or 0 for c in (*_VALUES, "Fit_Flag") if c in layout.columns)
    if len(fields) <= needed:
        raise ProtocolError(
            f"{len(fields)} fields, {layout.model} records have {len(layout.columns)}: "
            f"{line[:80]!r}"
        )
    values: dict[str, float] = {}
    dry = False
    for column, (name, factor) in _VALUES.items():
        i = layout.index(column)
        if i is None:
            continue
        try:
            value = float(fields[i])
        except ValueError:
            raise ProtocolError(f"{column} is not a number: {fields[i][:20]!r}") from None
        if not math.isfinite(value):
            raise ProtocolError(f"{column} is not finite: {fields[i][:20]!r}")
        is_dry = "]d_" in column
        if is_dry or name not in values:  # the dry column wins over the wet one
            values[name] = value * factor
            dry = dry or (is_dry and name != "h2o_mmol_mol")
    flag_at = layout.index("Fit_Flag")
    fit_flag = None
    if flag_at is not None:
        try:
            fit_flag = int(float(fields[flag_at]))
        except ValueError:
            raise ProtocolError(f"Fit_Flag is not a number: {fields[flag_at][:20]!r}") from None
    valve_at = layout.index("MIU_VALVE")
    valve = fields[valve_at] if valve_at is not None and valve_at < len(fields) else ""
    return LGRRecord(fields[0], values, fit_flag, dry, valve)


_TIME = re.compile(r"\s*(\S+)\s+(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)\s*")


def record_time(text: str) -> tuple[str, float]:
    """A record's ``Time`` as (date as written, seconds of the day): comparable within one
    date whichever order the date is written in; text of another form as (text, 0).

    >>> record_time("  12/02/2026 01:00:00.123")
    ('12/02/2026', 3600.123)
    >>> record_time("garbled")
    ('garbled', 0.0)
    """
    match = _TIME.fullmatch(text)
    if match is None:
        return (text.strip(), 0.0)
    date, hours, minutes, seconds = match.groups()
    return (date, int(hours) * 3600 + int(minutes) * 60 + float(seconds))


def _later(new: tuple[str, float], last: tuple[str, float]) -> bool:
    """A record's time is later than the last one's: a new date, or the same date and a
    later time of day (dates in the stream are ambiguous, so they are not ordered)."""
    return new[0] != last[0] or new[1] > last[1]


def layout_from_header(line: str, model: str) -> LGRLayout | None:
    """The layout a header line (``Time, [CH4]_ppm, ...``) names; None if not a header."""
    names = tuple(f.strip() for f in line.split(","))
    if not names or names[0].lower() != "time" or "Fit_Flag" not in names:
        return None
    return LGRLayout(model, names)


class LGRAnalyser:
    """Driver of an LGR/ABB GGA, UGGA or N2O/CO analyser on a (stamped) serial link.

    The analyser only streams: :meth:`configure` opens the port and waits for one record
    (the output rate is set on the analyser's own screen). Garbled lines are skipped, and
    ``max_garbled`` in a row raise :class:`ProtocolError`; so do ``max_invalid`` records
    in a row with an invalid Fit_Flag. A silent stream raises
    :class:`HardwareTimeoutError`; a dropped link is reopened by the link with back-off.
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        model: str = "lgr-ugga",
        clock: Clock,
        max_garbled: int = 10,
        max_invalid: int = 10,
    ) -> None:
        if model not in LAYOUTS:
            raise ValueError(f"unknown LGR model {model!r}")
        self.link = link
        self.model = model
        self.layout = LAYOUTS[model]
        self.clock = clock
        self.max_garbled = max_garbled
        self.max_invalid = max_invalid
        self.garbled = 0
        self.invalid = 0  # records with an invalid Fit_Flag in a row
        self.invalid_total = 0
        self.last_fit_flag: int | None = None
        self.stale_watch: StaleWatch[tuple[str, float]] = StaleWatch(_later)
        self._last_time_text = ""
        self._valid_mono: float | None = None  # when the last valid record arrived

    @property
    def stale(self) -> int:
        """Records skipped because their time did not advance."""
        return self.stale_watch.total

    def _where(self) -> str:
        return f"{self.link.name} on {self.link.url}"

    def identify(self) -> AnalyserInfo:
        return AnalyserInfo(model=self.layout.model)

    def configure(self, *, output_interval_s: float) -> None:
        self.link.open()
        self.read(max(5.0, 3 * output_interval_s))

    def read(self, timeout_s: float) -> AnalyserReading:
        deadline = self.clock.monotonic() + timeout_s
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise self._timeout(timeout_s)
            try:
                line, arrived, mono = self.link.read_stamped(remaining)
            except HardwareTimeoutError as exc:
                raise self._timeout(timeout_s) from exc
            header = layout_from_header(line, self.layout.model)
            if header is not None:
                if header.columns != self.layout.columns:
                    log.info("%s: header names other columns; reading by name", self._where())
                self.layout = header
                continue
            try:
                record = parse_record(line, self.layout)
            except ProtocolError as exc:
                self.garbled += 1
                log.warning("%s: skipped a garbled line (%s)", self._where(), exc)
                if self.garbled >= self.max_garbled:
                    self.garbled = 0
                    raise ProtocolError(
                        f"{self._where()}: {self.max_garbled} garbled lines in a row; last "
                        f"frames: {self.link.last_frames()}"
                    ) from exc
                continue
            self.garbled = 0
            if record.fit_flag is not None and record.fit_flag != FIT_FLAG_VALID:
                self.invalid += 1
                self.invalid_total += 1
                self.last_fit_flag = record.fit_flag
                log.debug(
                    "%s: record %s has Fit_Flag %d: invalid, skipped",
                    self._where(),
                    record.time_text,
                    record.fit_flag,
                )
                if self.invalid >= self.max_invalid:
                    self.invalid = 0
                    raise ProtocolError(
                        f"{self._where()}: {self.max_invalid} records in a row with Fit_Flag "
                        f"{record.fit_flag} (valid: {FIT_FLAG_VALID}): the analyser's fit "
                        f"is invalid; last frames: {self.link.last_frames()}"
                    )
                continue
            self.invalid = 0
            # a valid record repeating the last one's time is not a new measurement
            if not self.stale_watch.fresh(record_time(record.time_text)):
                log.debug(
                    "%s: record at instrument time %s repeats; skipped",
                    self._where(),
                    record.time_text.strip(),
                )
                continue
            self._last_time_text = record.time_text.strip()
            self._valid_mono = mono
            v = record.values
            return AnalyserReading(
                time=arrived,
                monotonic_s=mono,
                co2_umol_mol=v.get("co2_umol_mol"),
                h2o_mmol_mol=v.get("h2o_mmol_mol"),
                cell_temperature_degc=v.get("cell_temperature_degc"),
                cell_pressure_kpa=v.get("cell_pressure_kpa"),
                ch4_nmol_mol=v.get("ch4_nmol_mol"),
                n2o_nmol_mol=v.get("n2o_nmol_mol"),
                dry=record.dry,
            )

    def _timeout(self, timeout_s: float) -> HardwareTimeoutError | ProtocolError:
        if self.invalid:
            # the analyser streams, but its fit is invalid: unusable output, not silence
            count, self.invalid = self.invalid, 0
            return ProtocolError(
                f"{self._where()}: no valid record within {timeout_s:g} s: {count} records "
                f"with Fit_Flag {self.last_fit_flag} (valid: {FIT_FLAG_VALID}); last frames: "
                f"{self.link.last_frames()}"
            )
        if self.stale_watch.run:
            # the analyser streams its last record again and again: to the daemon, silence
            return HardwareTimeoutError(
                f"{self._where()}: {self.stale_watch.describe(self._last_time_text)} within "
                f"{timeout_s:g} s; last frames: {self.link.last_frames()}"
            )
        return HardwareTimeoutError(
            f"{self._where()}: {self.link.lost_since(self._valid_mono)}no valid record "
            f"within {timeout_s:g} s; last frames: {self.link.last_frames()}"
        )

    def discard_pending(self) -> None:
        self.link.drain()

    def close(self) -> None:
        self.link.close()
