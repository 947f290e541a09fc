"""Reader for LI-COR LI-8250 multiplexer ``.82z`` files and their dense summaries.

An ``.82z`` is a zip with ``data.csv`` (three header rows: instrument group, column name,
unit; columns are keyed here as ``GROUP:NAME``, e.g. ``LI-7810:CO2_DRY``),
``metadata.json`` (area, total volume, observation length, and per gas its dead band and
stop time) and ``log.txt``. One ``.82z`` holds one observation. ``CHAMBER:STATE`` is 1
before closing, 5 while closed and 8 during post-purge.

The instrument's results live in a separate ``*_dense_summary.csv`` (same three header
rows), one row per observation: DATE and TIME of the first closed row, PORT, and per gas
``F<GAS>`` (flux), ``F<GAS>_dCdt``, ``_R2``, ``_A``, ``_Cx``, ``_C0``, ``_T0``, ``_ITER``,
``_N``. A summary row belongs to the ``.82z`` whose first closed row has that date and time
and whose metadata names that port.

Processing that reproduces the firmware: gas columns are dry already; P0 is
``LI-8250:PA`` and T0 ``CHAMBER:TA`` at the closing row; W0 and C'0 are intercepts over the
first 10 s by logger time; window dead band <= elapsed <= stop time. Consecutive rows that
repeat the previous row's time and gas values (logger bursts) are dropped.

Each line of a CSV is parsed on its own, so line numbers in messages are the file's lines
and a stray quote cannot swallow the lines after it. A row that is short, or has no number
where the observation needs one (state, gas, water, pressure, temperature), is skipped with
a warning naming its line.
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import check_complete, decode_text, read_bytes, split_lines
from .records import ChamberObservation, GasChannel, InitialValues, InstrumentFlux, ReadResult

__all__ = ["read_82z", "read_dense_summary", "sniff_82z"]

_UNITS = {"CO2_DRY": "umol/mol", "CH4_DRY": "nmol/mol", "N2O_DRY": "nmol/mol"}
_COLUMN = {
    "CO2_DRY": "co2_dry_umol_mol",
    "CH4_DRY": "ch4_dry_nmol_mol",
    "N2O_DRY": "n2o_dry_nmol_mol",
}
_CLOSED = 5
# an .82z or summary name: <serial>-<YYYYMMDDHHMMSS>[...]
_NAME = re.compile(r"^(?P<serial>.+)-(?P<stamp>\d{14})")

SummaryTable = Mapping[tuple[dt.datetime, int], dict[str, InstrumentFlux]]
_Rows = list[tuple[int, list[str]]]


def sniff_82z(head: bytes) -> bool:
    """True when the first bytes are a zip archive (an .82z)."""
    return head.startswith(b"PK\x03\x04")


def _value(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, Mapping) and "VALUE" in node:
        return node["VALUE"]
    return node


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _parse_time(date: str, time: str) -> dt.datetime | None:
    """DATE YYYYMMDD and TIME HHMMSS (leading zeros may be missing) -> datetime."""
    try:
        return dt.datetime.strptime(date.strip() + time.strip().zfill(6), "%Y%m%d%H%M%S")  # noqa: DTZ007
    except ValueError:
        return None


def _three_row_csv(text: str, path: str, what: str) -> tuple[list[str], _Rows]:
    """(``GROUP:NAME`` keys, [(line number, cells)] of the non-blank data rows)."""
    lines = split_lines(text)
    # one line at a time: an unbalanced quote then spoils its own line only
    rows = [next(csv.reader([line]), []) for line in lines]
    if len(rows) < 3:
        raise DataFileError(
            f"{what}: fewer than the three header rows", path=path, line=len(rows) + 1
        )
    groups, names = rows[0], rows[1]
    if len(groups) != len(names):
        raise DataFileError(f"{what}: header rows differ in length", path=path, line=2)
    keys = [f"{g.strip()}:{n.strip()}" for g, n in zip(groups, names, strict=True)]
    return keys, [(i + 4, r) for i, r in enumerate(rows[3:]) if any(c.strip() for c in r)]


def _optional(value: Any) -> float | None:
    number = _float(value)
    return number if math.isfinite(number) else None


def read_dense_summary(path: str | os.PathLike[str]) -> SummaryTable:
    """Instrument results of a dense summary, keyed by (first closed time, port).

    Rows without a readable DATE, TIME or PORT cannot be matched to an observation and are
    left out; a gas whose ``F<GAS>`` cell is not a number is left out of its row.

    Raises
    ------
    DataFileError
        When the file cannot be read or lacks DATE, TIME or PORT.
    """
    path_text, raw = read_bytes(path)
    keys, rows = _three_row_csv(decode_text(raw), path_text, "dense summary")
    names = [k.split(":", 1)[1] for k in keys]
    for need in ("DATE", "TIME", "PORT"):
        if need not in names:
            raise DataFileError(f"dense summary has no {need} column", path=path_text, line=2)
    known = {gas.split("_")[0] for gas in _COLUMN}  # CO2, CH4, N2O
    gases = sorted(n[1:] for n in names if n.startswith("F") and n[1:] in known)
    out: dict[tuple[dt.datetime, int], dict[str, InstrumentFlux]] = {}
    for line, row in rows:
        record = dict(zip(names, row, strict=False))
        when = _parse_time(record.get("DATE", ""), record.get("TIME", ""))
        port = _float(record.get("PORT"))
        if when is None or not math.isfinite(port):
            continue
        results = {}
        for gas in gases:
            prefix = f"F{gas}"
            flux = _float(record.get(prefix))
            if not math.isfinite(flux):
                continue
            cx = _optional(record.get(f"{prefix}_Cx"))
            # the LI-8250 pins C_x on fallback but, unlike the LI-8200, leaves t0 free
            fallback = cx in (1e6, 0.0)
            iterations = _optional(record.get(f"{prefix}_ITER"))
            n_points = _optional(record.get(f"{prefix}_N"))
            results[gas.lower()] = InstrumentFlux(
                gas=gas.lower(),
                flux=flux,
                model="linear" if fallback else "exponential",
                lin_flux=flux if fallback else None,
                lin_r2=None,  # in a fallback R2 belongs to the abandoned exponential
                exp_flux=None if fallback else flux,
                exp_r2=None if fallback else _optional(record.get(f"{prefix}_R2")),
                exp_a_per_s=_optional(record.get(f"{prefix}_A")),
                exp_cx=cx,
                exp_c0=_optional(record.get(f"{prefix}_C0")),
                exp_t0_s=_optional(record.get(f"{prefix}_T0")),
                iterations=None if iterations is None else int(iterations),
                n_points=None if n_points is None else int(n_points),
                slope_per_s=_optional(record.get(f"{prefix}_dCdt")),
                raw={**record, "line": str(line)},
            )
        out[(when, int(port))] = results
    return out


def _find_summary(path: Path) -> Path | None:
    """The dense summary beside an .82z that covers it.

    Summaries are named ``<serial>-<YYYYMMDDHHMMSS>_dense_summary.csv`` by the time they
    start; the one for an ``<serial>-<YYYYMMDDHHMMSS>.82z`` is the latest of the same serial
    that starts no later than the observation.
    """
    match = _NAME.match(path.name)
    if match is None:
        return None
    serial, stamp = match["serial"], match["stamp"]
    best: tuple[str, Path] | None = None
    for candidate in path.parent.glob(f"{glob.escape(serial)}-*_dense_summary.csv"):
        found = _NAME.match(candidate.name)
        if found is None or found["serial"] != serial or found["stamp"] > stamp:
            continue
        if best is None or found["stamp"] > best[0]:
            best = (found["stamp"], candidate)
    return best[1] if best else None


def read_82z(
    path: str | os.PathLike[str],
    *,
    summary: str | os.PathLike[str] | SummaryTable | None = None,
) -> ReadResult:
    """Read one LI-8250 ``.82z`` observation.

    Parameters
    ----------
    path : path-like
        The ``.82z`` file.
    summary : path-like or mapping, optional
        The dense summary (a path, or what :func:`read_dense_summary` returned). By default
        the ``<serial>-<start>_dense_summary.csv`` in the same folder that covers the
        observation (same serial, the latest start not after the ``.82z``'s) is used when
        there is one; if it cannot be read, the observation is read without the
        instrument's results and ``warnings`` says why.

    Returns
    -------
    ReadResult
        With one observation, or none and a rejection (no data rows, never closed, cut
        short, metadata without area, volume or a supported gas).

    Raises
    ------
    DataFileError
        When the file cannot be read, is not a zip, lacks ``data.csv`` or
        ``metadata.json``, is damaged, or its ``metadata.json`` is not JSON (with the line),
        and when a ``summary`` given by path cannot be read.
    """
    path_text = os.fspath(path)
    p = Path(path_text)
    if os.path.isfile(path_text) and os.path.getsize(path_text) == 0:
        raise DataFileError("empty file: not an .82z (zip) file", path=path_text)
    try:
        archive = zipfile.ZipFile(path_text)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"not a readable .82z (zip) file: {exc}", path=path_text) from exc
    with archive:
        names = set(archive.namelist())
        for need in ("data.csv", "metadata.json"):
            if need not in names:
                raise DataFileError(f".82z has no {need}", path=path_text)
        try:
            meta_raw = archive.read("metadata.json")
            data_raw = archive.read("data.csv")
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataFileError(f"damaged .82z (zip) file: {exc}", path=path_text) from exc
    try:
        meta = json.loads(decode_text(meta_raw))
    except json.JSONDecodeError as exc:
        raise DataFileError(
            f"metadata.json is not valid JSON: {exc.msg}", path=path_text, line=exc.lineno
        ) from None
    text = decode_text(data_raw)
    warnings: list[str] = []
    table: SummaryTable = {}
    if summary is None:
        found = _find_summary(p)
        if found is not None:
            try:
                table = read_dense_summary(found)
            except DataFileError as exc:
                # a damaged summary loses the instrument's results, not the trace
                warnings.append(f"dense summary not used: {exc}")
    elif isinstance(summary, Mapping):
        table = summary
    else:
        table = read_dense_summary(summary)
    try:
        obs = _build(meta, text, path_text, table)
    except DataFileError as exc:
        return ReadResult(
            path=path_text, observations=(), rejected=(exc,), warnings=tuple(warnings)
        )
    return ReadResult(path=path_text, observations=(obs,), warnings=tuple(warnings))


def _build(
    meta: Any,
    text: str,
    path: str,
    table: SummaryTable,
) -> ChamberObservation:
    keys, rows = _three_row_csv(text, path, "data.csv")
    if not rows:
        raise DataFileError("data.csv: no data rows", path=path, observation=1)
    position: dict[str, int] = {}
    for i, key in enumerate(keys):
        position.setdefault(key, i)
    for need in ("LI-8250:DATE", "LI-8250:TIME", "CHAMBER:STATE"):
        if need not in position:
            raise DataFileError(f"data.csv has no column {need}", path=path, line=2)
    fluxes = meta.get("FLUX") if isinstance(meta, Mapping) else None
    if not isinstance(fluxes, list) or not fluxes:
        raise DataFileError("metadata.json has no FLUX settings", path=path)
    area = _float(_value(meta, "CHAMBER", "AREA"))
    volume = _float(_value(meta, "METADATA", "VOLUME_TOTAL"))
    obs_length = _float(_value(meta, "METADATA", "OBSERVATION"))
    port_value = _float(_value(meta, "LI-8250", "PORT"))
    for name, value in (("CHAMBER.AREA", area), ("METADATA.VOLUME_TOTAL", volume)):
        if not math.isfinite(value) or value <= 0:
            raise DataFileError(f"metadata.json {name} missing or not positive", path=path)

    def require(key: str) -> int:
        if key not in position:
            raise DataFileError(f"data.csv has no column {key}", path=path, line=2)
        return position[key]

    # which columns this observation needs, from the metadata's FLUX settings
    warnings: list[str] = []
    settings: list[tuple[str, Mapping[str, Any], int]] = []
    source = None
    for n, setting in enumerate(fluxes):
        if not isinstance(setting, Mapping):
            warnings.append(f"metadata.json: FLUX[{n}] is not an object, skipped")
            continue
        gas_name = str(setting.get("GAS", "")).upper()
        if gas_name not in _COLUMN:
            warnings.append(f"metadata.json: gas {gas_name!r} not supported, skipped")
            continue
        source = str(setting.get("GAS_SOURCE", ""))
        settings.append((gas_name, setting, require(f"{source}:{gas_name}")))
    if not settings:
        detail = f" ({'; '.join(warnings)})" if warnings else ""
        raise DataFileError(f"metadata.json names no supported gas{detail}", path=path)
    t_setting = settings[0][1]
    t_column = f"{t_setting.get('T_SOURCE', 'CHAMBER')}:{t_setting.get('TEMPERATURE', 'TA')}"
    numeric = {
        "state": require("CHAMBER:STATE"),
        "h2o_mmol_mol": require(f"{source}:H2O"),
        "pressure_kpa": require("LI-8250:PA"),
        "temperature_degc": require(t_column),
    }
    numeric.update({_COLUMN[gas_name]: j for gas_name, _setting, j in settings})
    names = {j: key for key, j in position.items()}

    times: list[dt.datetime] = []
    values: dict[str, list[float]] = {name: [] for name in numeric}
    for line, row in rows:
        if len(row) < len(keys):
            warnings.append(
                f"data.csv line {line}: short row ({len(row)} of {len(keys)} cells) skipped"
            )
            continue
        when = _parse_time(row[position["LI-8250:DATE"]], row[position["LI-8250:TIME"]])
        if when is None:
            warnings.append(f"data.csv line {line}: unreadable DATE/TIME skipped")
            continue
        parsed = {name: _float(row[j]) for name, j in numeric.items()}
        bad = [j for name, j in numeric.items() if not math.isfinite(parsed[name])]
        if bad:
            warnings.append(
                f"data.csv line {line}: no number in {names[bad[0]]} ({row[bad[0]]!r}), row skipped"
            )
            continue
        times.append(when)
        for name, value in parsed.items():
            values[name].append(value)
    if not times:
        raise DataFileError("data.csv: no readable data rows", path=path, observation=1)
    state = np.asarray(values.pop("state"))
    closed_rows = np.flatnonzero(state == _CLOSED)
    if closed_rows.size == 0:
        raise DataFileError(
            "the chamber never reached the closed state (STATE 5)", path=path, observation=1
        )
    first_closed = int(closed_rows[0])
    # keep the closing rows before the first closed one and the closed period itself
    after = np.flatnonzero((np.arange(state.size) > first_closed) & (state != _CLOSED))
    stop = int(after[0]) if after.size else state.size
    closed_time = times[first_closed]
    elapsed = np.array([(when - closed_time).total_seconds() for when in times[:stop]])
    cols = {name: np.asarray(vals[:stop], dtype=float) for name, vals in values.items()}
    if not (math.isfinite(obs_length) and obs_length > 0):
        obs_length = float(elapsed.max())
        warnings.append(
            "metadata.json: no METADATA.OBSERVATION, observation length taken as the last "
            f"elapsed time ({obs_length:g} s); a trace cut short cannot be told"
        )

    gases: list[GasChannel] = []
    for gas_name, setting, _j in settings:
        dead_band = _float(_value(setting, "DEADBAND"))
        stop_time = _float(_value(setting, "STOP_TIME"))
        gases.append(
            GasChannel(
                gas=gas_name.split("_")[0].lower(),
                column=_COLUMN[gas_name],
                unit=_UNITS[gas_name],
                dry=True,
                dead_band_s=dead_band if math.isfinite(dead_band) else None,
                end_s=stop_time if math.isfinite(stop_time) else obs_length,
            )
        )

    # drop logger bursts: a row repeating the previous row's time and gas values
    gas_stack = np.vstack([cols[g.column] for g in gases])
    repeat = np.zeros(elapsed.size, dtype=bool)
    repeat[1:] = (elapsed[1:] == elapsed[:-1]) & np.all(gas_stack[:, 1:] == gas_stack[:, :-1], 0)
    if repeat.any():
        warnings.append(f"{int(repeat.sum())} repeated logger rows dropped")
        elapsed = elapsed[~repeat]
        cols = {k: v[~repeat] for k, v in cols.items()}
    check_complete(elapsed, obs_length, path=path, index=1)
    closing = int(np.argmax(elapsed >= 0))
    port = int(port_value) if math.isfinite(port_value) else None
    reference = dict(table.get((closed_time, port), {})) if port is not None else {}
    offset = _float(_value(meta, "CHAMBER", "COLLAR_HEIGHT"))
    return ChamberObservation(
        source_file=path,
        index=1,
        instrument="LI-8250",
        port=port,
        label=str(_value(meta, "LI-8250", "PORT_LABEL") or ""),
        start_time=times[0],
        closed_time=closed_time,
        time_zone=None,
        volume_cm3=volume,
        area_cm2=area,
        offset_cm=offset if math.isfinite(offset) else None,
        obs_length_s=obs_length,
        elapsed_s=elapsed,
        columns=cols,
        gases=tuple(gases),
        initial=InitialValues(
            pressure_kpa=float(cols["pressure_kpa"][closing]),
            temperature_degc=float(cols["temperature_degc"][closing]),
        ),
        reference=reference,
        has_footer=bool(reference),
        header={"file": os.path.basename(path)},
        warnings=tuple(warnings),
    )
