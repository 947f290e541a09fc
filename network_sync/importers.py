"""Other systems' files into the central database.

``li8100a`` (``.81x``), ``li8200`` (Smart Chamber ``.json``), ``li8250`` (``.82z`` with its
dense summary), ``cosore`` (a COSORE data-set folder: ``DESCRIPTION.txt``, ``PORTS.txt``,
``data.csv.gz``) and ``manual-csv`` (the template in ``docs/import.md``).

Rules, for every format:

* a file is imported whole or not at all: a file the reader refuses, or with a malformed
  observation or a bad row, is rejected with every reason and line, and nothing of it is
  written (each file is one central transaction). A closure the instrument cut short (a
  restart, a power cut: a truncated observation) is not a bad file: it is skipped and
  listed, and the file's complete observations are imported;
* observation uuids are derived from the file's content (SHA-256) and the observation's place
  in it, so importing the same file again is a no-op (``unchanged``), from any path;
* raw traces are kept where the format has them (LI-COR files, manual concentrations), so
  the central side can refit them; the instrument's own fluxes are stored with
  ``processing_version`` ``instrument`` (COSORE: ``cosore``; manual: ``manual``);
* a second observation with the same site, system, chamber and begin time and another uuid
  (COSORE data sets repeat port and start time) goes to ``conflicts``, never overwrites.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import math
import uuid as uuidlib
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chamberd.controller.clock import SystemClock
from chamberd.controller.errors import DataFileError, TruncatedObservationError

from .central import Central
from .sync import FLUX_UNITS, SAMPLE_FIELDS, VALUE_FIELDS, content_hash, upsert_batch

__all__ = ["FORMATS", "ImportReport", "import_paths"]

FORMATS = ("li8100a", "li8200", "li8250", "cosore", "manual-csv")
_NAMESPACE = uuidlib.UUID("5b0c7f6e-2f7a-4d8e-9a51-6c1d3e2b9f40")


@dataclass
class FileOutcome:
    path: str
    status: str  # "imported" | "unchanged" | "rejected"
    observations: int = 0
    sent: int = 0
    unchanged: int = 0
    conflicts: int = 0
    reasons: list[str] = field(default_factory=list)
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
            "unchanged": sum(f.unchanged for f in self.files),
            "conflicts": sum(f.conflicts for f in self.files),
            "skipped": sum(len(f.skipped) for f in self.files),
        }


@dataclass
class _Obs:
    """One observation ready for the central upsert (the sync payload shape)."""

    observation: dict[str, Any]
    fluxes: list[dict[str, Any]]
    samples: list[dict[str, Any]]


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
) -> ImportReport:
    """Import every file (folders: their files, or a COSORE data set) into ``central``."""
    if fmt not in FORMATS:
        raise DataFileError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
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
) -> FileOutcome:
    outcome = FileOutcome(str(path), "rejected")
    try:
        digest = _digest(path, fmt)
        site_zone = _site_zone(central, site_id)
        if fmt == "cosore":
            meta, observations = _read_cosore(path, digest)
            zone = meta.get("CSR_TIMEZONE") or time_zone or site_zone or "UTC"
            instrument = instrument or meta.get("CSR_INSTRUMENT", "")
        elif fmt == "manual-csv":
            observations = _read_manual(path, digest)
            zone = time_zone or site_zone or "UTC"
        else:
            zone = time_zone or site_zone
            observations = _read_licor(path, fmt, digest, zone, outcome.skipped)
    except DataFileError as exc:
        outcome.reasons = [str(exc)]
        return outcome
    except OSError as exc:
        outcome.reasons = [f"{path}: cannot read: {exc.strerror or exc}"]
        return outcome
    outcome.observations = len(observations)
    now = SystemClock().now().isoformat()  # provenance of the ingest
    with central.transaction():
        _ensure_site(central, site_id, system_id, zone, instrument, now)
        payloads = [
            {
                "observation": o.observation,
                "fluxes": o.fluxes,
                "samples": [tuple(x.get(k) for k in SAMPLE_FIELDS) for x in o.samples],
                "hash": content_hash(o.observation, o.fluxes),
            }
            for o in observations
        ]
        for result in upsert_batch(
            central, payloads, site_id=site_id, system_id=system_id, now=now
        ):
            if result == "sent":
                outcome.sent += 1
            elif result == "conflicts":
                outcome.conflicts += 1
            else:
                outcome.unchanged += 1
        central.execute(
            "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, unchanged, "
            "revised, conflicts, detail) VALUES (?, ?, 'import', ?, ?, ?, ?, 0, ?, ?)",
            (
                now,
                site_id,
                f"{system_id}:{fmt}:{path.name}",
                len(observations),
                outcome.sent,
                outcome.unchanged,
                outcome.conflicts,
                f"sha256 {digest}" + "".join(f"; skipped: {reason}" for reason in outcome.skipped),
            ),
        )
    outcome.status = "unchanged" if outcome.sent == 0 and outcome.conflicts == 0 else "imported"
    return outcome


# --- central side ---------------------------------------------------------------------------


def _site_zone(central: Central, site_id: str) -> str | None:
    rows = central.query("SELECT time_zone FROM sites WHERE site_id = ?", (site_id,))
    return rows[0]["time_zone"] if rows else None


def _ensure_site(
    central: Central, site_id: str, system_id: str, zone: str | None, instrument: str, now: str
) -> None:
    if not central.query("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)):
        central.execute(
            "INSERT INTO sites (site_id, name, time_zone, created_at) VALUES (?, ?, ?, ?)",
            (site_id, site_id, zone or "UTC", now),
        )
    if not central.query(
        "SELECT 1 FROM systems WHERE site_id = ? AND system_id = ?", (site_id, system_id)
    ):
        central.execute(
            "INSERT INTO systems (site_id, system_id, instrument, method) VALUES (?, ?, ?, ?)",
            (site_id, system_id, instrument, "imported"),
        )


# --- reading --------------------------------------------------------------------------------


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


def _uuid(digest: str, key: str) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, f"{digest}/{key}"))


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


def _utc(local: dt.datetime | None, zone: str | None, where: str) -> str:
    if local is None:
        raise DataFileError(f"{where}: no start time")
    if local.tzinfo is None:
        if zone is None:
            raise DataFileError(
                f"{where}: the file's times have no zone; give --time-zone or register the "
                "site with its time zone"
            )
        local = local.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return local.astimezone(dt.UTC).isoformat()


def _read_licor(
    path: Path, fmt: str, digest: str, zone: str | None, skipped: list[str]
) -> list[_Obs]:
    from .formats import read_file

    result = read_file(path, fmt)
    broken = [e for e in result.rejected if not isinstance(e, TruncatedObservationError)]
    if broken:
        reasons = "; ".join(str(e) for e in broken)
        raise DataFileError(
            f"{path}: {len(broken)} observation(s) refused, so nothing of the file is "
            f"imported: {reasons}"
        )
    # a closure cut short (power cut, restart) is not a bad file: it is skipped and listed
    skipped.extend(str(e) for e in result.rejected)
    out = []
    for o in result.observations:
        where = o.name
        begin = _utc(o.closed_time or o.start_time, o.time_zone or zone, where)
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
                        ref.lin_flux,
                        "instrument",
                        r2=ref.lin_r2,
                        selected=int(ref.model == "linear"),
                    )
                )
            if ref.exp_flux is not None:
                fluxes.append(
                    _flux(
                        gas,
                        "exponential",
                        ref.exp_flux,
                        "instrument",
                        r2=ref.exp_r2,
                        selected=int(ref.model == "exponential"),
                    )
                )
        columns = o.columns
        samples = []
        for i, elapsed in enumerate(o.elapsed_s):
            samples.append(
                {
                    "seq": i,
                    "time": None,
                    "elapsed_s": _num(elapsed),
                    "phase": "observing",
                    "co2_umol_mol": _col(columns, ("co2_umol_mol", "co2_dry_umol_mol"), i),
                    "h2o_mmol_mol": _col(columns, ("h2o_mmol_mol",), i),
                    "ch4_nmol_mol": _col(columns, ("ch4_dry_nmol_mol",), i),
                    "n2o_nmol_mol": _col(columns, ("n2o_dry_nmol_mol",), i),
                    "cell_temperature_degc": _col(columns, ("temperature_degc",), i),
                    "cell_pressure_kpa": _col(columns, ("pressure_kpa",), i),
                }
            )
        observation = _observation(
            uuid=_uuid(digest, str(o.index)),
            chamber=chamber,
            started_at=begin,
            observation_s=o.obs_length_s,
            area_cm2=o.area_cm2,
            volume_cm3=o.volume_cm3,
            offset_cm=o.offset_cm,
            dead_band_s=o.gases[0].dead_band_s if o.gases else None,
            analyser_model=o.instrument,
            n_samples=len(samples),
        )
        out.append(_Obs(observation, fluxes, samples))
    return out


def _col(columns: Any, names: Iterable[str], i: int) -> float | None:
    for name in names:
        if name in columns:
            return _num(columns[name][i])
    return None


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- COSORE ---------------------------------------------------------------------------------


def _key_values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lstrip().startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _ports(path: Path) -> dict[int, dict[str, str]]:
    lines = [
        line
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    rows = [[cell.strip() for cell in row] for row in reader]
    if not rows:
        return {}
    header, out = rows[0], {}
    for row in rows[1:]:
        entry = dict(zip(header, row, strict=False))
        try:
            out[int(entry.get("CSR_PORT", "0"))] = entry
        except ValueError as exc:
            raise DataFileError(
                f"{path}: CSR_PORT {entry.get('CSR_PORT')!r} is not a number"
            ) from exc
    return out


def _read_cosore(folder: Path, digest: str) -> tuple[dict[str, str], list[_Obs]]:
    meta = _key_values(folder / "DESCRIPTION.txt")
    zone = meta.get("CSR_TIMEZONE")
    if zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise DataFileError(f"{folder}/DESCRIPTION.txt: CSR_TIMEZONE {zone!r} unknown") from exc
    ports = _ports(folder / "PORTS.txt")
    data = folder / "data.csv.gz"
    try:
        text = gzip.decompress(data.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{data}: cannot decompress: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    need = {"CSR_PORT", "CSR_TIMESTAMP_BEGIN"}
    missing = need - set(reader.fieldnames or ())
    if missing:
        raise DataFileError(f"{data}, line 1: missing column(s) {', '.join(sorted(missing))}")
    gases = [g for g in ("co2", "ch4", "n2o") if f"CSR_FLUX_{g.upper()}" in reader.fieldnames]
    if not gases:
        raise DataFileError(f"{data}, line 1: no CSR_FLUX_* column")
    temp_col = next(
        (c for c in reader.fieldnames if c.startswith("CSR_T") and c[5:].isdigit()), None
    )
    sm_col = next(
        (c for c in reader.fieldnames if c.startswith("CSR_SM") and c[6:].isdigit()), None
    )
    length = _num(meta.get("CSR_MSMT_LENGTH"))
    out: list[_Obs] = []
    bad: list[str] = []
    for line, row in enumerate(reader, start=2):
        try:
            port = int(row["CSR_PORT"])
            begin = dt.datetime.fromisoformat(row["CSR_TIMESTAMP_BEGIN"])
            if begin.tzinfo is None:
                if not zone:
                    raise ValueError("timestamp without offset and no CSR_TIMEZONE")
                begin = begin.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            end_text = row.get("CSR_TIMESTAMP_END") or ""
            end = dt.datetime.fromisoformat(end_text) if end_text else None
            values = {}
            for gas in gases:
                cell = row.get(f"CSR_FLUX_{gas.upper()}", "")
                values[gas] = None if cell in ("", "NA") else float(cell)
                if values[gas] is not None and not math.isfinite(values[gas]):
                    raise ValueError(f"CSR_FLUX_{gas.upper()} is not finite")
        except (ValueError, TypeError, KeyError) as exc:
            bad.append(f"line {line}: {exc}")
            if len(bad) >= 20:
                break
            continue
        info = ports.get(port) or ports.get(0) or {}
        sm = _num(row.get(sm_col)) if sm_col else None
        observation = _observation(
            uuid=_uuid(digest, f"row{line}"),
            chamber=f"port{port}",
            started_at=begin.astimezone(dt.UTC).isoformat(),
            ended_at=end.astimezone(dt.UTC).isoformat() if end and end.tzinfo else None,
            observation_s=length,
            area_cm2=_num(info.get("CSR_AREA")),
            volume_cm3=_num(info.get("CSR_VOLUME")),
            offset_cm=None,
            soil_temperature_degc=_num(row.get(temp_col)) if temp_col else None,
            soil_moisture_pct=None if sm is None else 100.0 * sm,
            analyser_model=meta.get("CSR_INSTRUMENT"),
            n_samples=0,
        )
        fluxes = [
            _flux(g, "reported", v, "cosore", selected=1)
            for g, v in values.items()
            if v is not None
        ]
        out.append(_Obs(observation, fluxes, []))
    if bad:
        raise DataFileError(
            f"{data}: {len(bad)}{'+' if len(bad) >= 20 else ''} bad row(s), nothing of the data "
            "set is imported: " + "; ".join(bad)
        )
    return meta, out


# --- manual chambers ------------------------------------------------------------------------

_MANUAL_REQUIRED = ("chamber", "start_time")


def _read_manual(path: Path, digest: str) -> list[_Obs]:
    """The manual-chamber template (docs/import.md): one row per sample time and chamber
    closure (``chamber, start_time, elapsed_s, co2_umol_mol[, ch4_nmol_mol, n2o_nmol_mol,
    air_temperature_degc, pressure_kpa]``) or one row per closure with precomputed fluxes
    (``chamber, start_time, co2_flux_umol_m2_s[, ch4_flux_nmol_m2_s, n2o_flux_nmol_m2_s]``),
    plus ``area_cm2`` and ``volume_cm3``."""
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or ()]
    missing = [f for f in _MANUAL_REQUIRED if f not in fields]
    if missing:
        raise DataFileError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
    traces = "elapsed_s" in fields
    flux_cols = [c for c in fields if c.endswith(("_flux_umol_m2_s", "_flux_nmol_m2_s"))]
    if not traces and not flux_cols:
        raise DataFileError(
            f"{path}, line 1: neither samples (elapsed_s and a concentration) nor fluxes "
            "(co2_flux_umol_m2_s, ...)"
        )
    closures: dict[tuple[str, str], dict[str, Any]] = {}
    bad = []
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        try:
            chamber = row["chamber"]
            if not chamber:
                raise ValueError("empty chamber")
            start = dt.datetime.fromisoformat(row["start_time"].replace("Z", "+00:00"))
            if start.tzinfo is None:
                raise ValueError(f"start_time {row['start_time']!r} needs a UTC offset")
            key = (chamber, start.astimezone(dt.UTC).isoformat())
            entry = closures.setdefault(
                key, {"line": line, "samples": [], "fluxes": {}, "area": None, "volume": None}
            )
            for name, slot in (("area_cm2", "area"), ("volume_cm3", "volume")):
                if row.get(name):
                    value = float(row[name])
                    if value <= 0:
                        raise ValueError(f"{name} must be > 0")
                    entry[slot] = value
            if traces:
                entry["samples"].append(
                    {
                        "seq": len(entry["samples"]),
                        "time": None,
                        "elapsed_s": float(row["elapsed_s"]),
                        "phase": "observing",
                        "co2_umol_mol": _cell(row, "co2_umol_mol"),
                        "h2o_mmol_mol": _cell(row, "h2o_mmol_mol"),
                        "ch4_nmol_mol": _cell(row, "ch4_nmol_mol"),
                        "n2o_nmol_mol": _cell(row, "n2o_nmol_mol"),
                        "cell_temperature_degc": _cell(row, "air_temperature_degc"),
                        "cell_pressure_kpa": _cell(row, "pressure_kpa"),
                    }
                )
            for col in flux_cols:
                if row.get(col):
                    gas = col.split("_", 1)[0]
                    if gas not in FLUX_UNITS:
                        raise ValueError(f"unknown gas in column {col}")
                    entry["fluxes"][gas] = float(row[col])
        except (ValueError, KeyError) as exc:
            bad.append(f"line {line}: {exc}")
    if bad:
        raise DataFileError(
            f"{path}: {len(bad)} bad row(s), nothing of the file is imported: "
            + "; ".join(bad[:20])
        )
    out = []
    for (chamber, begin), entry in closures.items():
        fluxes = [_flux(g, "reported", v, "manual", selected=1) for g, v in entry["fluxes"].items()]
        observation = _observation(
            uuid=_uuid(digest, f"{chamber}/{begin}"),
            chamber=chamber,
            started_at=begin,
            area_cm2=entry["area"],
            volume_cm3=entry["volume"],
            air_temperature_degc=_mean(s["cell_temperature_degc"] for s in entry["samples"]),
            pressure_kpa=_mean(s["cell_pressure_kpa"] for s in entry["samples"]),
            n_samples=len(entry["samples"]),
        )
        out.append(_Obs(observation, fluxes, entry["samples"]))
    return out


def _cell(row: dict[str, str], name: str) -> float | None:
    text = row.get(name, "")
    if text in ("", "NA"):
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite")
    return value


def _mean(values: Iterable[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


def report_json(report: ImportReport) -> str:
    return json.dumps({**report.totals(), "details": [vars(f) for f in report.files]}, default=str)
