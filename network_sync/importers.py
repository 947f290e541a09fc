"""Other systems' files into the central database.

``li8100a`` (``.81x``), ``li8200`` (Smart Chamber ``.json``), ``li8250`` (``.82z`` with its
dense summary), ``cosore`` (a COSORE data-set folder: ``DESCRIPTION.txt``, ``PORTS.txt``,
``data.csv.gz``) and ``manual-csv`` (the template in ``docs/import.md``); and
``calibration-csv``: calibration records of any system (a manual-chamber GC's standards, an
analyser's zero/span check), one row per reading, into the central ``calibrations`` and
``calibration_readings`` (:func:`_import_calibrations`).

Rules, for every format:

* a file is imported whole or not at all: a file the reader refuses, or with a malformed
  observation or a bad row, is rejected with every reason and line, and nothing of it is
  written (each file is one central transaction). A closure the instrument cut short (a
  restart, a power cut: a truncated observation) is not a bad file: it is skipped and
  listed, and the file's complete observations are imported;
* every observation passes the plausibility rules of :mod:`.plausibility` before anything
  is written: a refused value rejects the file, a withheld one is stored as missing, and
  the report says which rule fired where;
* an observation's uuid is derived from the site, the system, the file's content (SHA-256)
  and the observation's place in the file, never from the time zone: the same file again,
  from any path, is ``unchanged``; with a corrected ``--time-zone`` it is ``revised`` (the
  same uuids, new begin times); the same file for another site or system is new there;
* raw traces are kept where the format has them (LI-COR files, manual concentrations), so
  the central side can refit them; the instrument's own fluxes are stored with
  ``processing_version`` ``instrument`` (COSORE: ``cosore``; manual: ``manual``);
* a second observation with the same site, system, chamber and begin time and another uuid
  (COSORE data sets repeat port and start time) goes to ``conflicts``, never overwrites.

Bad bytes are the importer's to report, never a traceback: every table goes through one
reader (:func:`_table`: strict UTF-8 with the line of a bad byte, any line ends, csv
errors with their line), every time through one parser (:func:`_instant`: offsets, zones,
dates that leave the calendar in UTC), every number through :func:`_number`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import uuid as uuidlib
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chamberd.controller.clock import Clock, SystemClock
from chamberd.controller.errors import (
    DataFileError,
    StorageError,
    SyncError,
    TruncatedObservationError,
)

from . import plausibility
from .central import CALIBRATION_VERSION, METADATA_VERSION, Central, value_problem
from .formats._common import read_bytes, read_gzip_bytes, split_lines
from .sync import (
    FLUX_UNITS,
    SAMPLE_FIELDS,
    VALUE_FIELDS,
    check_calibrations,
    content_hash,
    upsert_batch,
    upsert_calibrations,
)

__all__ = ["COSORE_MAX_BYTES", "FORMATS", "FileOutcome", "ImportReport", "import_paths"]

FORMATS = (
    "li8100a",
    "li8200",
    "li8250",
    "li78x0",
    "lgr",
    "picarro",
    "cosore",
    "manual-csv",
    "calibration-csv",
)
#: continuous analyser streams, imported with a field sheet
STREAM_FORMATS = ("li78x0", "lgr", "picarro")
_NAMESPACE = uuidlib.UUID("5b0c7f6e-2f7a-4d8e-9a51-6c1d3e2b9f40")

#: the most a COSORE ``data.csv.gz`` may decompress to (about 1.2 million rows); beyond it
#: the data set is refused (split it by year)
COSORE_MAX_BYTES = 100 * 2**20
#: the most a COSORE ``DESCRIPTION.txt`` or ``PORTS.txt`` may hold
_COSORE_META_MAX_BYTES = 2**20
#: reasons listed per rejected file (the count says how many more there were)
_MAX_REASONS = 20
#: warnings listed per file
_MAX_WARNINGS = 20


@dataclass
class FileOutcome:
    path: str
    status: str  # "imported" | "unchanged" | "rejected"
    observations: int = 0
    sent: int = 0
    revised: int = 0
    unchanged: int = 0
    conflicts: int = 0
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # plausibility rules that withheld values
    skipped: list[str] = field(default_factory=list)  # truncated observations, not imported


@dataclass
class ImportReport:
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "rejected"]

    def totals(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "rejected": len(self.rejected),
            "observations": sum(f.observations for f in self.files),
            "sent": sum(f.sent for f in self.files),
            "revised": sum(f.revised for f in self.files),
            "unchanged": sum(f.unchanged for f in self.files),
            "conflicts": sum(f.conflicts for f in self.files),
            "skipped": sum(len(f.skipped) for f in self.files),
            "warnings": sum(len(f.warnings) for f in self.files),
        }


@dataclass
class _Obs:
    """One observation ready for the central upsert (the sync payload shape)."""

    key: str  # its place in the file: with the file's digest, its identity
    where: str  # the file and the observation's line or number, for messages
    observation: dict[str, Any]
    fluxes: list[dict[str, Any]]
    samples: list[dict[str, Any]]


@dataclass
class _Read:
    """What a format's reader gives the import: observations and what it noticed."""

    observations: list[_Obs]
    zone: str | None = None  # the zone a new site is registered with
    instrument: str = ""
    notes: list[str] = field(default_factory=list)  # conversions and reader warnings
    # what the file says of the site (name, latitude, longitude): fills what is missing
    site: dict[str, Any] = field(default_factory=dict)
    # what a data set says of itself (systems.metadata, JSON): carried to exports
    metadata: dict[str, Any] | None = None


def import_paths(
    central: Central,
    paths: Sequence[str | Path],
    *,
    site_id: str,
    system_id: str,
    fmt: str,
    time_zone: str | None = None,
    instrument: str = "",
    progress: Callable[[FileOutcome], None] | None = None,
    clock: Clock | None = None,
    sheet: str | Path | None = None,
    search_s: float | None = None,
) -> ImportReport:
    """Import every file (folders: their files, or a COSORE data set) into ``central``.

    Analyser streams (``li78x0``, ``lgr``, ``picarro``) need the field ``sheet`` of their
    closures; the sheet is read (and refused whole, with its line) before any file.
    """
    if fmt not in FORMATS:
        raise DataFileError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt in STREAM_FORMATS and sheet is None:
        raise DataFileError(
            f"--format {fmt} is a continuous analyser stream: give its field sheet (--sheet)"
        )
    if sheet is not None and fmt not in STREAM_FORMATS:
        raise DataFileError(f"--sheet is for analyser streams ({', '.join(STREAM_FORMATS)})")
    if sheet is not None:
        from .formats import read_field_sheet

        read_field_sheet(sheet)  # a bad sheet is refused before anything is read
    central.require_writer(site_id)  # a role that may not write this site: refused first
    if fmt == "cosore":  # the data set's description goes to systems.metadata
        central.require_schema(METADATA_VERSION)
    if fmt == "calibration-csv":
        central.require_schema(CALIBRATION_VERSION)
    clock = clock or SystemClock()
    report = ImportReport()
    for path in _expand(paths, fmt):
        try:
            outcome = _import_one(
                central,
                path,
                site_id=site_id,
                system_id=system_id,
                fmt=fmt,
                time_zone=time_zone,
                instrument=instrument,
                now=clock.now(),
                sheet=sheet,
                search_s=search_s,
            )
        except DataFileError as exc:  # a value the central database cannot hold: not written
            outcome = FileOutcome(str(path), "rejected", reasons=[f"{path}: {exc}"])
        report.files.append(outcome)
        if progress is not None:
            progress(outcome)
    return report


def _expand(paths: Sequence[str | Path], fmt: str) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if fmt == "cosore" or not path.is_dir():
            out.append(path)
            continue
        out += sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.endswith("_dense_summary.csv")
        )
    return out


def _import_one(
    central: Central,
    path: Path,
    *,
    site_id: str,
    system_id: str,
    fmt: str,
    time_zone: str | None,
    instrument: str,
    now: dt.datetime,
    sheet: str | Path | None = None,
    search_s: float | None = None,
) -> FileOutcome:
    if fmt == "calibration-csv":
        return _import_calibrations(
            central, path, site_id=site_id, system_id=system_id, time_zone=time_zone, now=now
        )
    outcome = FileOutcome(str(path), "rejected")
    try:
        digest = _digest(path, fmt)
        site_zone = _site_zone(central, site_id)
        if fmt == "cosore":
            read = _read_cosore(path, time_zone or site_zone)
        elif fmt == "manual-csv":
            read = _read_manual(path)
            read.zone = time_zone or site_zone or "UTC"
        else:
            read = _read_licor(
                path, fmt, time_zone or site_zone, outcome.skipped, sheet=sheet, search_s=search_s
            )
        withheld = _screen(path, read.observations, plausibility.Limits.at(now))
    except DataFileError as exc:
        outcome.reasons = [_bounded(str(exc), 4000)]
        return outcome
    except OSError as exc:
        outcome.reasons = [f"{path}: cannot read: {exc.strerror or exc}"]
        return outcome
    warnings = read.notes + withheld
    if len(warnings) > _MAX_WARNINGS:
        warnings = [*warnings[:_MAX_WARNINGS], f"+{len(warnings) - _MAX_WARNINGS} more warnings"]
    for o in read.observations:
        o.observation["uuid"] = _uuid(site_id, system_id, digest, o.key)
    at = now.astimezone(dt.UTC).isoformat()  # provenance of the ingest
    counts = dict.fromkeys(("sent", "revised", "unchanged", "conflicts"), 0)
    try:
        with central.transaction():
            _ensure_site(central, site_id, system_id, read, instrument or read.instrument, at)
            _adopt_legacy_uuids(central, read.observations, site_id, system_id, digest)
            payloads = [
                {
                    "observation": o.observation,
                    "fluxes": o.fluxes,
                    "samples": [tuple(x.get(k) for k in SAMPLE_FIELDS) for x in o.samples],
                    "hash": content_hash(o.observation, o.fluxes),
                }
                for o in read.observations
            ]
            for result in upsert_batch(
                central, payloads, site_id=site_id, system_id=system_id, now=at
            ):
                counts[result] += 1
            detail = f"sha256 {digest}" + "".join(
                [f"; warning: {w}" for w in warnings] + [f"; skipped: {s}" for s in outcome.skipped]
            )
            central.execute(
                "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, unchanged, "
                "revised, conflicts, detail) VALUES (?, ?, 'import', ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    site_id,
                    f"{system_id}:{fmt}:{path.name}",
                    len(payloads),
                    counts["sent"],
                    counts["unchanged"],
                    counts["revised"],
                    counts["conflicts"],
                    detail,
                ),
            )
    except (SyncError, StorageError) as exc:
        outcome.reasons = [
            f"{path}: the central database refused the file, nothing of it is written: {exc}"
        ]
        return outcome
    outcome.observations = len(read.observations)
    outcome.sent, outcome.revised = counts["sent"], counts["revised"]
    outcome.unchanged, outcome.conflicts = counts["unchanged"], counts["conflicts"]
    outcome.warnings = warnings
    changed = outcome.sent + outcome.revised + outcome.conflicts
    outcome.status = "imported" if changed else "unchanged"
    return outcome


def _screen(path: Path, observations: list[_Obs], limits: plausibility.Limits) -> list[str]:
    """Apply the plausibility rules; DataFileError when any observation is refused, else
    the values withheld, one line per rule (the values are set to missing)."""
    refused: list[plausibility.Finding] = []
    withheld: list[plausibility.Finding] = []
    n_refused = 0
    for o in observations:
        findings = plausibility.check(
            o.observation, o.fluxes, o.samples, where=o.where, limits=limits
        )
        bad = [f for f in findings if f.rule.action == plausibility.REFUSE]
        n_refused += bool(bad)
        refused += bad
        withheld += [f for f in findings if f.rule.action == plausibility.WITHHOLD]
    if refused:
        raise DataFileError(
            f"{path}: {n_refused} observation(s) refused by the plausibility rules "
            "(docs/import.md), so nothing of it is imported: "
            + "; ".join(plausibility.summarise(refused))
        )
    plausibility.withhold(withheld)
    return plausibility.summarise(withheld)


# --- central side ---------------------------------------------------------------------------


def _site_zone(central: Central, site_id: str) -> str | None:
    rows = central.query("SELECT time_zone FROM sites WHERE site_id = ?", (site_id,))
    return rows[0]["time_zone"] if rows else None


def _ensure_site(
    central: Central, site_id: str, system_id: str, read: _Read, instrument: str, now: str
) -> None:
    """Register the site and the system when new. What the file says of the site (a COSORE
    name and coordinates) fills only what the site lacks (a site's own registration, or the
    first data set, wins); the system's metadata is the latest data set's description."""
    given = read.site
    sites = central.query(
        "SELECT name, latitude, longitude FROM sites WHERE site_id = ?", (site_id,)
    )
    if not sites:
        central.execute(
            "INSERT INTO sites (site_id, name, time_zone, latitude, longitude, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                site_id,
                given.get("name") or site_id,
                read.zone or "UTC",
                given.get("latitude"),
                given.get("longitude"),
                now,
            ),
        )
    elif given:
        row = sites[0]
        name = row["name"] if row["name"] not in ("", site_id) else given.get("name")
        central.execute(
            "UPDATE sites SET name = ?, latitude = ?, longitude = ? WHERE site_id = ?",
            (
                name or row["name"],
                given.get("latitude") if row["latitude"] is None else row["latitude"],
                given.get("longitude") if row["longitude"] is None else row["longitude"],
                site_id,
            ),
        )
    metadata = "" if read.metadata is None else json.dumps(read.metadata)
    systems = central.query(
        "SELECT instrument FROM systems WHERE site_id = ? AND system_id = ?", (site_id, system_id)
    )
    if not systems:
        if read.metadata is None:
            central.execute(
                "INSERT INTO systems (site_id, system_id, instrument, method) VALUES (?, ?, ?, ?)",
                (site_id, system_id, instrument, "imported"),
            )
        else:
            central.execute(
                "INSERT INTO systems (site_id, system_id, instrument, method, metadata) "
                "VALUES (?, ?, ?, ?, ?)",
                (site_id, system_id, instrument, "imported", metadata),
            )
    elif read.metadata is not None:
        central.execute(
            "UPDATE systems SET instrument = ?, metadata = ? WHERE site_id = ? AND system_id = ?",
            (systems[0]["instrument"] or instrument, metadata, site_id, system_id),
        )


def _uuid(site_id: str, system_id: str, digest: str, key: str) -> str:
    """An imported observation's identity: site, system, file content, place in the file."""
    return str(uuidlib.uuid5(_NAMESPACE, json.dumps([site_id, system_id, digest, key])))


def _legacy_uuid(digest: str, key: str) -> str:
    """The uuid chamberd 0.x gave an imported observation (file content and place only)."""
    return str(uuidlib.uuid5(_NAMESPACE, f"{digest}/{key}"))


def _adopt_legacy_uuids(
    central: Central, observations: list[_Obs], site_id: str, system_id: str, digest: str
) -> None:
    """Observations this site and system imported before identities included them keep
    their old uuids, so that a re-import is ``unchanged`` (or ``revised``), not a conflict."""
    legacy = {_legacy_uuid(digest, o.key): o for o in observations}
    names = list(legacy)
    for start in range(0, len(names), 900):
        part = names[start : start + 900]
        marks = ", ".join("?" for _ in part)
        for row in central.query(
            f"SELECT uuid FROM observations WHERE site_id = ? AND system_id = ? AND uuid IN "
            f"({marks})",
            (site_id, system_id, *part),
        ):
            legacy[row["uuid"]].observation["uuid"] = row["uuid"]


# --- reading helpers: bytes, tables, numbers, times -----------------------------------------


def _digest(path: Path, fmt: str) -> str:
    h = hashlib.sha256()
    if fmt == "cosore":
        if not path.is_dir():
            raise DataFileError(f"{path}: a COSORE data set is a folder")
        for name in ("DESCRIPTION.txt", "PORTS.txt", "data.csv.gz"):
            member = path / name
            if not member.is_file():
                raise DataFileError(f"{path}: not a COSORE data set (no {name})")
            h.update(name.encode())
            h.update(member.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


_BREAK = re.compile(rb"\r\n|\r|\n")


def _text(raw: bytes, where: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped); DataFileError naming the line of the
    first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(_BREAK.findall(raw, 0, exc.start)) + 1
        raise DataFileError(
            f"{where}, line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text; save the "
            "file as UTF-8"
        ) from None


def _table(
    raw: bytes, where: str
) -> tuple[list[str], Iterator[tuple[int, dict[str, str], str | None]]]:
    """The header and the rows of a CSV table: (line number, cells by column name, problem).

    Any line ends (LF, CR LF, CR only); blank lines skipped; cells stripped. ``problem``
    says what is wrong with the row's shape (more cells than the header names, other than
    empty ones, or fewer), for the caller to report with the line; a row the csv module
    cannot split (an open quote, a field over its size limit) is a DataFileError naming
    the line.
    """
    reader = csv.reader(io.StringIO(_text(raw, where), newline=None))

    def lines() -> Iterator[list[str]]:
        try:
            yield from reader
        except csv.Error as exc:
            raise DataFileError(f"{where}, line {reader.line_num}: not a CSV row: {exc}") from None

    source = lines()
    header = next((r for r in source if any(c.strip() for c in r)), None)
    if header is None:
        raise DataFileError(f"{where}: empty file (no header row)")
    names = [name.strip() for name in header]

    def records() -> Iterator[tuple[int, dict[str, str], str | None]]:
        for cells in source:
            values = [c.strip() for c in cells]
            if not any(values):
                continue
            problem = None
            if len(values) < len(names) or any(values[len(names) :]):
                problem = f"{len(values)} cells, the header names {len(names)}"
            yield reader.line_num, dict(zip(names, values, strict=False)), problem

    return names, records()


def _number(text: str | None, name: str) -> float | None:
    """A cell as a number: empty or ``NA`` is missing; anything else must parse. Values that
    are not finite are returned as they are, for the plausibility rules to judge."""
    text = (text or "").strip()
    if text in ("", "NA"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} {_show(text)} is not a number") from None


def _instant(value: dt.datetime | str | None, zone: str | None, *, name: str, no_zone: str) -> str:
    """A time as UTC ISO 8601 text; ValueError with a message naming ``name`` and the value.

    ``value`` is ISO text or a datetime; without an offset it is read in ``zone`` (an IANA
    name), and without one either it is refused with ``no_zone``. A date that leaves the
    calendar in UTC (year 1 with a positive offset, 9999 with a negative one) is refused.
    """
    if value is None or value == "":
        raise ValueError(f"no {name}")
    shown = _show(value) if isinstance(value, str) else value.isoformat()
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{name} {shown} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        if zone is None:
            raise ValueError(f"{name} {shown} has no UTC offset: {no_zone}")
        try:
            value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time zone {_show(zone)} is unknown") from None
    try:
        return value.astimezone(dt.UTC).isoformat()
    except (OverflowError, ValueError):
        raise ValueError(f"{name} {shown} is outside the calendar in UTC") from None


def _show(text: Any, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text):,} chars)"


class _BadRows:
    """Bad rows of one table: counted, the first few kept with their lines."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.count = 0
        self.shown: list[str] = []

    def add(self, line: int, exc: Exception) -> None:
        self.count += 1
        if len(self.shown) < _MAX_REASONS:
            self.shown.append(f"line {line}: {_bounded(str(exc), 200)}")

    def check(self, what: str) -> None:
        if not self.count:
            return
        more = f"; +{self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        raise DataFileError(
            f"{self.where}: {self.count} bad row(s), nothing of {what} is imported: "
            + "; ".join(self.shown)
            + more
        )


def _observation(**values: Any) -> dict[str, Any]:
    base = dict.fromkeys(("reason", "ended_at", *VALUE_FIELDS))
    base.update(status="done")
    base.update(values)
    return base


def _flux(gas: str, model: str, value: float | None, version: str, **extra: Any) -> dict:
    row = {
        "gas": gas,
        "model": model,
        "processing_version": version,
        "flux": value,
        "flux_unit": FLUX_UNITS[gas],
        "flux_se": None,
        "r2": None,
        "nrmse": None,
        "n_points": None,
        "selected": 0,
        "flags": "",
    }
    row.update(extra)
    return row


def _float(value: Any) -> float | None:
    """A reader's value as a float (None where there is none); not-finite values stay, for
    the plausibility rules."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


# --- LI-COR files ---------------------------------------------------------------------------


def _read_licor(
    path: Path,
    fmt: str,
    zone: str | None,
    skipped: list[str],
    *,
    sheet: str | Path | None = None,
    search_s: float | None = None,
) -> _Read:
    from .formats import read_file

    options: dict[str, Any] = {}
    if sheet is not None:
        options["sheet"] = sheet
    if search_s is not None:
        options["search_s"] = search_s
    result = read_file(path, fmt, **options)
    stream = fmt in STREAM_FORMATS
    broken = [e for e in result.rejected if not isinstance(e, TruncatedObservationError)]
    if broken:
        shown = "; ".join(_bounded(str(e), 300) for e in broken[:_MAX_REASONS])
        more = f"; +{len(broken) - _MAX_REASONS} more" if len(broken) > _MAX_REASONS else ""
        raise DataFileError(
            f"{path}: {len(broken)} observation(s) refused, so nothing of the file is "
            f"imported: {shown}{more}"
        )
    # a closure cut short (power cut, restart) is not a bad file: it is skipped and listed
    skipped.extend(str(e) for e in result.rejected)
    notes = [f"{path}: {w}" for w in result.warnings]
    out = []
    for o in result.observations:
        notes += [f"{o.name}: {w}" for w in o.warnings]
        where = o.name + (f", line {o.first_line}" if o.first_line else "")
        try:
            begin = _instant(
                o.closed_time or o.start_time,
                o.time_zone or zone,
                name="start time",
                no_zone="the file's times have no zone; give --time-zone or register the site "
                "with its time zone",
            )
        except ValueError as exc:
            raise DataFileError(f"{where}: {exc}") from None
        chamber = f"port{o.port}" if o.port is not None else (o.label or "chamber")
        fluxes = []
        for gas, ref in o.reference.items():
            if gas not in FLUX_UNITS:
                continue
            if ref.lin_flux is not None:
                fluxes.append(
                    _flux(
                        gas,
                        "linear",
                        _float(ref.lin_flux),
                        "instrument",
                        r2=_float(ref.lin_r2),
                        selected=int(ref.model == "linear"),
                    )
                )
            if ref.exp_flux is not None:
                fluxes.append(
                    _flux(
                        gas,
                        "exponential",
                        _float(ref.exp_flux),
                        "instrument",
                        r2=_float(ref.exp_r2),
                        selected=int(ref.model == "exponential"),
                    )
                )
        columns = _samples_as_stored(o, stream=stream)
        samples = []
        for i, elapsed in enumerate(o.elapsed_s):
            samples.append(
                {
                    "seq": i,
                    "time": None,
                    "elapsed_s": _float(elapsed),
                    "phase": "observing",
                    "co2_umol_mol": _col(columns, ("co2_umol_mol", "co2_dry_umol_mol"), i),
                    "h2o_mmol_mol": _col(columns, ("h2o_mmol_mol",), i),
                    "ch4_nmol_mol": _col(columns, ("ch4_nmol_mol", "ch4_dry_nmol_mol"), i),
                    "n2o_nmol_mol": _col(columns, ("n2o_nmol_mol", "n2o_dry_nmol_mol"), i),
                    "cell_temperature_degc": _col(columns, ("temperature_degc",), i),
                    "cell_pressure_kpa": _col(columns, ("pressure_kpa",), i),
                }
            )
        observation = _observation(
            chamber=chamber,
            started_at=begin,
            observation_s=_float(o.obs_length_s),
            area_cm2=_float(o.area_cm2),
            volume_cm3=_float(o.volume_cm3),
            offset_cm=_float(o.offset_cm),
            dead_band_s=_float(o.gases[0].dead_band_s) if o.gases else None,
            analyser_model=o.instrument,
            n_samples=len(samples),
        )
        key = str(o.index)
        if stream:  # the sheet's chamber values; the analyser's cavity P and T are not kept
            observation["pressure_kpa"] = _float(o.initial.pressure_kpa)
            observation["air_temperature_degc"] = _float(o.initial.temperature_degc)
            # identity: the plot and its stated start, not the row's place in the sheet
            key = f"sheet:{o.label}:{o.header.get('stated_start', o.index)}"
        out.append(_Obs(key, where, observation, fluxes, samples))
    return _Read(out, zone=zone, notes=notes)


def _samples_as_stored(o: Any, *, stream: bool) -> dict[str, Any]:
    """Sample columns of an observation as the central store keeps traces: mole fractions
    as in the cell (wet) beside their H2O, which the central refit makes dry again. A dry
    column (LI-8200 and LI-8250 gases, LI-78x0, LGR/Picarro dry columns) with H2O is stored
    as dry x (1 - H2O/1000), so dry -> stored -> refit gives back the instrument's dry value
    exactly (stored as it was, the refit diluted it a second time: on the LI-8200 example
    that turned the CH4 uptake of every rep into an emission). For a closure cut from an
    analyser stream, pressure and temperature stay out of the samples (they are the
    analyser's cavity's; the sheet's are the observation's)."""
    columns = dict(o.columns)
    h2o = columns.get("h2o_mmol_mol")
    for gas in o.gases:
        if gas.dry and gas.column.endswith(("_dry_umol_mol", "_dry_nmol_mol")):
            values = columns.pop(gas.column)
            if h2o is not None and gas.column != "h2o_mmol_mol":
                values = values * (1.0 - h2o / 1000.0)
            columns[gas.column.replace("_dry_", "_")] = values
    if not stream:
        return columns
    if h2o is None or not bool((h2o != 0).any()):
        columns.pop("h2o_mmol_mol", None)  # no water measured: the refit treats it as dry
    columns.pop("pressure_kpa", None)
    columns.pop("temperature_degc", None)
    return columns


def _col(columns: Any, names: Sequence[str], i: int) -> float | None:
    for name in names:
        if name in columns:
            return _float(columns[name][i])
    return None


# --- COSORE ---------------------------------------------------------------------------------


def _meta_text(path: Path) -> tuple[str, list[str]]:
    """(path as text, lines) of a small text member of a data set, strictly UTF-8."""
    where, raw = read_bytes(path, _COSORE_META_MAX_BYTES + 1)
    if len(raw) > _COSORE_META_MAX_BYTES:
        raise DataFileError(f"{where}: larger than {_COSORE_META_MAX_BYTES:,} bytes")
    return where, split_lines(_text(raw, where))


def _key_values(path: Path) -> dict[str, str]:
    _where, lines = _meta_text(path)
    out = {}
    for line in lines:
        if line.lstrip().startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


_CSR_KEY = re.compile(r"CSR_[A-Z0-9_]{1,60}")
#: DESCRIPTION.txt keys that are numbers, with the range each must lie in
_DESCRIPTION_NUMBERS = {
    "CSR_LATITUDE": (-90.0, 90.0),
    "CSR_LONGITUDE": (-180.0, 180.0),
    "CSR_ELEVATION": (-500.0, 9000.0),
}


def _description(path: Path, meta: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The data set's description (every ``CSR_*`` key, its text as written) and what it
    says of the site (name, latitude, longitude); DataFileError naming the key of a value
    the central database cannot hold or a coordinate that is not one."""
    description = {k: v for k, v in meta.items() if _CSR_KEY.fullmatch(k)}
    for key, value in description.items():
        problem = value_problem(value, "text")
        if problem:
            raise DataFileError(f"{path}: {key} {_show(value)} {problem}")
    site: dict[str, Any] = {}
    for key, (low, high) in _DESCRIPTION_NUMBERS.items():
        try:
            number = _number(description.get(key), key)
        except ValueError as exc:
            raise DataFileError(f"{path}: {exc}") from None
        if number is not None and not low <= number <= high:
            shown = _show(description[key])
            raise DataFileError(f"{path}: {key} {shown} is not in {low:g}..{high:g}")
        site[key] = number
    name = description.get("CSR_SITE_NAME", "")
    return description, {
        "name": name,
        "latitude": site["CSR_LATITUDE"],
        "longitude": site["CSR_LONGITUDE"],
    }


def _ports(path: Path) -> tuple[dict[int, dict[str, float | None]], list[dict[str, str]]]:
    """PORTS.txt: port -> area and volume (port 0 = all ports), and its rows as written
    (each column's text by name) for the system's metadata."""
    where, lines = _meta_text(path)
    header: list[str] | None = None
    out: dict[int, dict[str, float | None]] = {}
    rows: list[dict[str, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            # columns are aligned with tabs as well as spaces: a tab before a quoted cell
            # ("Quercus serrata, Ilex pedunculosa") must not hide its opening quote
            spaced = line.replace("\t", " ")
            cells = [c.strip() for c in next(csv.reader([spaced], skipinitialspace=True))]
        except csv.Error as exc:
            raise DataFileError(f"{where}, line {number}: not a CSV row: {exc}") from None
        if header is None:
            header = cells
            if "CSR_PORT" not in header:
                raise DataFileError(f"{where}, line {number}: no CSR_PORT column")
            continue
        entry = dict(zip(header, cells, strict=False))
        try:
            port = _port(entry.get("CSR_PORT", ""))
            geometry = {
                "area_cm2": _number(entry.get("CSR_AREA"), "CSR_AREA"),
                "volume_cm3": _number(entry.get("CSR_VOLUME"), "CSR_VOLUME"),
            }
        except ValueError as exc:
            raise DataFileError(f"{where}, line {number}: {exc}") from None
        # the geometry rules of the table, said where the geometry is written
        refused = [
            f
            for f in plausibility.check(
                geometry, [], [], where=f"{where}, line {number}", limits=_NO_YEAR_LIMIT
            )
            if f.rule.action == plausibility.REFUSE
        ]
        if refused:
            raise DataFileError("; ".join(plausibility.summarise(refused)))
        for name, text in entry.items():
            problem = value_problem(text, "text")
            if problem:
                raise DataFileError(f"{where}, line {number}: {name} {_show(text)} {problem}")
        out[port] = geometry
        rows.append({name: text for name, text in entry.items() if name})
    return out, rows


_NO_YEAR_LIMIT = plausibility.Limits(last_year=9999)


def _port(text: str) -> int:
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise ValueError(f"CSR_PORT {_show(text)} is not a port number")
    return int(text)


def _read_cosore(folder: Path, fallback_zone: str | None) -> _Read:
    description = folder / "DESCRIPTION.txt"
    meta = _key_values(description)
    zone = meta.get("CSR_TIMEZONE") or None
    if zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise DataFileError(f"{description}: CSR_TIMEZONE {_show(zone)} unknown") from None
    try:
        length = _number(meta.get("CSR_MSMT_LENGTH"), "CSR_MSMT_LENGTH")
    except ValueError as exc:
        raise DataFileError(f"{description}: {exc}") from None
    described, site = _description(description, meta)
    ports, port_rows = _ports(folder / "PORTS.txt")
    where, raw = read_gzip_bytes(folder / "data.csv.gz", COSORE_MAX_BYTES)
    names, rows = _table(raw, where)
    missing = {"CSR_PORT", "CSR_TIMESTAMP_BEGIN"} - set(names)
    if missing:
        raise DataFileError(f"{where}, line 1: missing column(s) {', '.join(sorted(missing))}")
    gases = [g for g in ("co2", "ch4", "n2o") if f"CSR_FLUX_{g.upper()}" in names]
    if not gases:
        raise DataFileError(f"{where}, line 1: no CSR_FLUX_* column")
    temp_col = next((c for c in names if c.startswith("CSR_T") and c[5:].isdigit()), None)
    sm_col = next((c for c in names if c.startswith("CSR_SM") and c[6:].isdigit()), None)
    row_zone = zone or fallback_zone
    bad = _BadRows(where)
    parsed = []
    for line, row, problem in rows:
        try:
            if problem:
                raise ValueError(problem)
            port = _port(row["CSR_PORT"])
            no_zone = "DESCRIPTION.txt has no CSR_TIMEZONE; give --time-zone"
            begin = _instant(
                row["CSR_TIMESTAMP_BEGIN"], row_zone, name="CSR_TIMESTAMP_BEGIN", no_zone=no_zone
            )
            end_text = row.get("CSR_TIMESTAMP_END") or ""
            end = None
            if end_text:
                end = _instant(end_text, row_zone, name="CSR_TIMESTAMP_END", no_zone=no_zone)
            values = {
                g: _number(row.get(f"CSR_FLUX_{g.upper()}"), f"CSR_FLUX_{g.upper()}") for g in gases
            }
            temperature = _number(row.get(temp_col), temp_col) if temp_col else None
            moisture = _number(row.get(sm_col), sm_col) if sm_col else None
        except ValueError as exc:
            bad.add(line, exc)
            continue
        parsed.append((line, port, begin, end, values, temperature, moisture))
    bad.check("the data set")
    notes = []
    scale = 100.0
    if sm_col:
        scale, note = plausibility.soil_moisture_scale(
            [m for *_, m in parsed if m is not None], sm_col
        )
        if note:
            notes.append(f"{where}: {note}")
    out: list[_Obs] = []
    for line, port, begin, end, values, temperature, moisture in parsed:
        info = ports.get(port) or ports.get(0) or {}
        observation = _observation(
            chamber=f"port{port}",
            started_at=begin,
            ended_at=end,
            observation_s=length,
            area_cm2=info.get("area_cm2"),
            volume_cm3=info.get("volume_cm3"),
            offset_cm=None,
            soil_temperature_degc=temperature,
            soil_moisture_pct=None if moisture is None else scale * moisture,
            analyser_model=meta.get("CSR_INSTRUMENT"),
            n_samples=0,
        )
        fluxes = [
            _flux(g, "reported", v, "cosore", selected=1)
            for g, v in values.items()
            if v is not None
        ]
        out.append(_Obs(f"row{line}", f"{where}, line {line}", observation, fluxes, []))
    return _Read(
        out,
        zone=zone or fallback_zone or "UTC",
        instrument=meta.get("CSR_INSTRUMENT", ""),
        notes=notes,
        site=site,
        metadata={
            "format": "cosore",
            "description": described,
            "ports": port_rows,
            # the data set's column names: the depth of its soil sensors
            "columns": {"temperature": temp_col, "moisture": sm_col},
        },
    )


# --- manual chambers ------------------------------------------------------------------------

_MANUAL_REQUIRED = ("chamber", "start_time")


def _read_manual(path: Path) -> _Read:
    """The manual-chamber template (docs/import.md): one row per sample time and chamber
    closure (``chamber, start_time, elapsed_s, co2_umol_mol[, ch4_nmol_mol, n2o_nmol_mol,
    air_temperature_degc, pressure_kpa]``) or one row per closure with precomputed fluxes
    (``chamber, start_time, co2_flux_umol_m2_s[, ch4_flux_nmol_m2_s, n2o_flux_nmol_m2_s]``,
    each optionally with its standard error ``co2_flux_se_umol_m2_s``, ...), plus
    ``area_cm2`` and ``volume_cm3``."""
    where, raw = read_bytes(path)
    fields, rows = _table(raw, where)
    missing = [f for f in _MANUAL_REQUIRED if f not in fields]
    if missing:
        raise DataFileError(f"{where}, line 1: missing column(s) {', '.join(missing)}")
    traces = "elapsed_s" in fields
    flux_cols = [c for c in fields if c.endswith(("_flux_umol_m2_s", "_flux_nmol_m2_s"))]
    if not traces and not flux_cols:
        raise DataFileError(
            f"{where}, line 1: neither samples (elapsed_s and a concentration) nor fluxes "
            "(co2_flux_umol_m2_s, ...)"
        )
    se_cols = [c for c in fields if c.endswith(("_flux_se_umol_m2_s", "_flux_se_nmol_m2_s"))]
    for col in (*flux_cols, *se_cols):
        gas = col.split("_", 1)[0]
        if gas not in FLUX_UNITS:
            raise DataFileError(f"{where}, line 1: unknown gas in column {col}")
        # the column's unit must be the one chamberd stores the gas's flux in: a CH4 flux
        # in umol would otherwise be stored as nmol, 1000 times too small
        unit = "umol" if FLUX_UNITS[gas].startswith("umol") else "nmol"
        if not col.endswith(f"_{unit}_m2_s"):
            expected = col.rsplit("_", 3)[0] + f"_{unit}_m2_s"
            raise DataFileError(
                f"{where}, line 1: column {col}: {gas} fluxes are in {FLUX_UNITS[gas]} "
                f"(name the column {expected})"
            )
    closures: dict[tuple[str, str], dict[str, Any]] = {}
    bad = _BadRows(where)
    for line, row, problem in rows:
        try:
            if problem:
                raise ValueError(problem)
            chamber = row["chamber"]
            if not chamber:
                raise ValueError("empty chamber")
            begin = _instant(
                row["start_time"], None, name="start_time", no_zone="give one (Z or +08:00)"
            )
            entry = closures.setdefault(
                (chamber, begin),
                {
                    "line": line,
                    "samples": [],
                    "fluxes": {},
                    "se": {},
                    "area": None,
                    "volume": None,
                },
            )
            for name, slot in (("area_cm2", "area"), ("volume_cm3", "volume")):
                value = _number(row.get(name), name)
                if value is not None:
                    entry[slot] = value
            if traces:
                elapsed = _number(row.get("elapsed_s"), "elapsed_s")
                if elapsed is None:
                    raise ValueError("elapsed_s is empty")
                entry["samples"].append(
                    {
                        "seq": len(entry["samples"]),
                        "time": None,
                        "elapsed_s": elapsed,
                        "phase": "observing",
                        **{
                            name: _number(row.get(column), column)
                            for name, column in _MANUAL_SAMPLE_COLUMNS
                        },
                    }
                )
            for col in flux_cols:
                value = _number(row.get(col), col)
                if value is not None:
                    entry["fluxes"][col.split("_", 1)[0]] = value
            for col in se_cols:
                value = _number(row.get(col), col)
                if value is not None:
                    if value < 0:
                        raise ValueError(f"{col} is negative")
                    entry["se"][col.split("_", 1)[0]] = value
        except ValueError as exc:
            bad.add(line, exc)
    bad.check("the file")
    out = []
    for (chamber, begin), entry in closures.items():
        fluxes = [
            _flux(g, "reported", v, "manual", selected=1, flux_se=entry["se"].get(g))
            for g, v in entry["fluxes"].items()
        ]
        observation = _observation(
            chamber=chamber,
            started_at=begin,
            area_cm2=entry["area"],
            volume_cm3=entry["volume"],
            air_temperature_degc=_mean(s["cell_temperature_degc"] for s in entry["samples"]),
            pressure_kpa=_mean(s["cell_pressure_kpa"] for s in entry["samples"]),
            n_samples=len(entry["samples"]),
        )
        out.append(
            _Obs(
                f"{chamber}/{begin}",
                f"{where}, line {entry['line']}",
                observation,
                fluxes,
                entry["samples"],
            )
        )
    return _Read(out)


#: sample columns of the manual template -> the sample fields they fill
_MANUAL_SAMPLE_COLUMNS = (
    ("co2_umol_mol", "co2_umol_mol"),
    ("h2o_mmol_mol", "h2o_mmol_mol"),
    ("ch4_nmol_mol", "ch4_nmol_mol"),
    ("n2o_nmol_mol", "n2o_nmol_mol"),
    ("cell_temperature_degc", "air_temperature_degc"),
    ("cell_pressure_kpa", "pressure_kpa"),
)


def _mean(values: Any) -> float | None:
    numbers = [v for v in values if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


# --- calibration records (calibration-csv) --------------------------------------------------

#: columns every calibration-csv file has
CALIBRATION_REQUIRED = (
    "calibration_id",
    "analyser",
    "procedure",
    "performed_at",
    "gas",
    "reference",
    "measured",
)
#: columns that describe the record: the same on every row of one calibration_id
CALIBRATION_RECORD_COLUMNS = (
    "analyser",
    "procedure",
    "performed_at",
    "operator",
    "supervisor",
    "chamber",
    "instrument_model",
    "instrument_serial",
    "instrument_firmware",
    "status",
    "result",
    "reason",
    "adjusted",
)
#: the optional columns of a reading
CALIBRATION_READING_COLUMNS = ("step", "at", "cylinder_id", "unit", "sd", "n")
#: each gas's unit (the only one accepted; the default when ``unit`` is empty)
CALIBRATION_UNITS = {"co2": "umol/mol", "h2o": "mmol/mol", "ch4": "nmol/mol", "n2o": "nmol/mol"}
_UNIT_SPELLINGS = {
    "umol/mol": "umol/mol",
    "µmol/mol": "umol/mol",
    "ppm": "umol/mol",
    "mmol/mol": "mmol/mol",
    "ppt": "mmol/mol",
    "nmol/mol": "nmol/mol",
    "ppb": "nmol/mol",
}
_STEPS = ("as_found", "as_left")
_STATUSES = ("pass", "fail", "incomplete")
_YES = {"1": True, "yes": True, "true": True, "0": False, "no": False, "false": False, "": False}


def _read_calibrations(path: Path, zone: str | None) -> list[dict[str, Any]]:
    """The calibration records of a calibration-csv file (docs/import.md): rows grouped by
    ``calibration_id``, in file order. DataFileError naming every bad row's line and field
    (nothing of the file is then imported)."""
    where, raw = read_bytes(path)
    fields, rows = _table(raw, where)
    missing = [f for f in CALIBRATION_REQUIRED if f not in fields]
    if missing:
        raise DataFileError(f"{where}, line 1: missing column(s) {', '.join(missing)}")
    known = set(CALIBRATION_REQUIRED) | set(CALIBRATION_RECORD_COLUMNS)
    unknown = [f for f in fields if f not in known | set(CALIBRATION_READING_COLUMNS)]
    if unknown:
        raise DataFileError(f"{where}, line 1: unknown column(s) {', '.join(map(_show, unknown))}")
    records: dict[str, dict[str, Any]] = {}
    bad = _BadRows(where)
    for line, row, problem in rows:
        try:
            if problem:
                raise ValueError(problem)
            cid = row["calibration_id"]
            if not cid:
                raise ValueError("calibration_id is empty")
            for name in ("analyser", "procedure"):
                if not row[name]:
                    raise ValueError(f"{name} is empty")
            no_zone = "give one (Z or +08:00) or --time-zone"
            performed = _instant(row["performed_at"], zone, name="performed_at", no_zone=no_zone)
            gas = row["gas"].lower()
            if gas not in CALIBRATION_UNITS:
                raise ValueError(f"gas {_show(row['gas'])}: one of {', '.join(CALIBRATION_UNITS)}")
            unit_text = row.get("unit", "")
            unit = _UNIT_SPELLINGS.get(unit_text.strip().lower()) if unit_text else None
            if unit_text and unit is None:
                raise ValueError(f"unit {_show(unit_text)} is not a unit chamberd knows")
            unit = unit or CALIBRATION_UNITS[gas]
            if unit != CALIBRATION_UNITS[gas]:
                raise ValueError(
                    f"unit {_show(unit_text)}: {gas} is recorded in {CALIBRATION_UNITS[gas]}"
                )
            reference = _number(row["reference"], "reference")
            measured = _number(row["measured"], "measured")
            for name, value in (("reference", reference), ("measured", measured)):
                if value is None or value != value or value in (float("inf"), float("-inf")):
                    raise ValueError(f"{name} {_show(row[name])} is not a finite number")
            if reference is not None and reference < 0:
                raise ValueError("reference is negative")
            sd = _number(row.get("sd"), "sd")
            if sd is not None and not (0 <= sd < float("inf")):
                raise ValueError(f"sd {_show(row.get('sd'))} is not a finite number >= 0")
            n_value = _number(row.get("n"), "n")
            if n_value is not None and not (n_value.is_integer() and 1 <= n_value < 2**31):
                raise ValueError(f"n {_show(row.get('n'))} is not a whole number >= 1")
            step = (row.get("step") or "as_found").lower()
            if step not in _STEPS:
                raise ValueError(f"step {_show(row.get('step'))}: as_found or as_left")
            at = (
                _instant(row["at"], zone, name="at", no_zone=no_zone)
                if row.get("at")
                else performed
            )
            adjusted = _YES.get((row.get("adjusted") or "").lower())
            if adjusted is None:
                raise ValueError(f"adjusted {_show(row.get('adjusted'))}: 1/0, yes/no")
            status = (row.get("status") or "pass").lower()
            if status not in _STATUSES:
                raise ValueError(
                    f"status {_show(row.get('status'))}: one of pass, fail, incomplete"
                )
            head = {
                "analyser": row["analyser"],
                "procedure": row["procedure"],
                "performed_at": performed,
                "adjusted": adjusted,
                "status": status,
                **{
                    k: (row.get(k) or None)
                    for k in CALIBRATION_RECORD_COLUMNS
                    if k not in ("analyser", "procedure", "performed_at", "adjusted", "status")
                },
            }
            record = records.setdefault(cid, {"line": line, "head": head, "readings": []})
            for key, value in head.items():
                if record["head"][key] != value:
                    raise ValueError(
                        f"{key} {_show(row.get(key, value))} differs from line "
                        f"{record['line']}'s for calibration {_show(cid)}"
                    )
            record["readings"].append(
                {
                    "step": step,
                    "at": at,
                    "cylinder_id": row.get("cylinder_id") or None,
                    "gas": gas,
                    "reference_value": reference,
                    "unit": unit,
                    "mean": measured,
                    "sd": sd,
                    "n": None if n_value is None else int(n_value),
                    "line": line,
                }
            )
        except ValueError as exc:
            bad.add(line, exc)
    bad.check("the file")
    if not records:
        raise DataFileError(f"{where}: no calibration rows")
    out = []
    for cid, record in records.items():
        head, readings = record["head"], record["readings"]
        found = [r for r in readings if r["step"] == "as_found"]
        left = [r for r in readings if r["step"] == "as_left"]
        if left and not head["adjusted"]:
            raise DataFileError(
                f"{where}, line {left[0]['line']}: an as_left reading of calibration "
                f"{_show(cid)}, which says it was not adjusted"
            )

        def checks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    "gas": r["gas"],
                    "at": r["at"],
                    "reference": r["reference_value"],
                    "measured": r["mean"],
                    "cylinder_id": r["cylinder_id"],
                }
                for r in items
            ]

        data = {"checks": checks(found), "adjusted": head["adjusted"], "source": "calibration-csv"}
        if left:
            data["checks_after"] = checks(left)
        times = sorted(r["at"] for r in readings)
        cylinders = list(dict.fromkeys(r["cylinder_id"] for r in readings if r["cylinder_id"]))
        out.append(
            {
                **head,
                "file_id": cid,
                "line": record["line"],
                "adjusted": int(head["adjusted"]),
                "started_at": times[0],
                "ended_at": times[-1],
                "valid_from": head["performed_at"],
                "cylinder_ids": json.dumps(cylinders),
                "data": json.dumps(data, sort_keys=True),
                "readings": [
                    {**{k: v for k, v in r.items() if k != "line"}, "seq": seq}
                    for seq, r in enumerate(readings)
                ],
            }
        )
    return out


def _import_calibrations(
    central: Central,
    path: Path,
    *,
    site_id: str,
    system_id: str,
    time_zone: str | None,
    now: dt.datetime,
) -> FileOutcome:
    """One calibration-csv file, whole or not at all (one central transaction). A record's
    central id is derived from the site and the file's ``calibration_id`` (not the file's
    content): the same file again is ``unchanged``, a corrected file ``revised``."""
    outcome = FileOutcome(str(path), "rejected")
    try:
        records = _read_calibrations(path, time_zone or _site_zone(central, site_id))
        for r in records:
            r["id"] = str(uuidlib.uuid5(_NAMESPACE, f"calibration\x1f{site_id}\x1f{r['file_id']}"))
        check_calibrations(records, where=str(path))
    except DataFileError as exc:
        outcome.reasons = [_bounded(str(exc), 4000)]
        return outcome
    except OSError as exc:
        outcome.reasons = [f"{path}: cannot read: {exc.strerror or exc}"]
        return outcome
    at = now.astimezone(dt.UTC).isoformat()
    try:
        with central.transaction():
            _ensure_site(central, site_id, system_id, _Read([], zone=time_zone or "UTC"), "", at)
            results = upsert_calibrations(
                central,
                [{k: v for k, v in r.items() if k not in ("file_id", "line")} for r in records],
                site_id=site_id,
                now=at,
                source=f"import:{path.name}",
            )
            central.execute(
                "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, unchanged, "
                "revised, conflicts, detail) VALUES (?, ?, 'import', ?, ?, ?, ?, ?, 0, ?)",
                (
                    at,
                    site_id,
                    f"{system_id}:calibration-csv:{path.name}",
                    len(records),
                    results.count("sent"),
                    results.count("unchanged"),
                    results.count("revised"),
                    f"sha256 {_digest(path, 'calibration-csv')}",
                ),
            )
    except (SyncError, StorageError) as exc:
        outcome.reasons = [
            f"{path}: the central database refused the file, nothing of it is written: {exc}"
        ]
        return outcome
    outcome.observations = len(records)
    outcome.sent = results.count("sent")
    outcome.revised = results.count("revised")
    outcome.unchanged = results.count("unchanged")
    outcome.status = "imported" if outcome.sent + outcome.revised else "unchanged"
    return outcome


def report_json(report: ImportReport) -> str:
    return json.dumps({**report.totals(), "details": [vars(f) for f in report.files]}, default=str)
