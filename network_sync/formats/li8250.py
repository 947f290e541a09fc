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
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import check_complete, read_bytes
from .records import ChamberObservation, GasChannel, InitialValues, InstrumentFlux, ReadResult

__all__ = ["read_82z", "read_dense_summary", "sniff_82z"]

_UNITS = {"CO2_DRY": "umol/mol", "CH4_DRY": "nmol/mol", "N2O_DRY": "nmol/mol"}
_COLUMN = {
    "CO2_DRY": "co2_dry_umol_mol",
    "CH4_DRY": "ch4_dry_nmol_mol",
    "N2O_DRY": "n2o_dry_nmol_mol",
}
_CLOSED = 5

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
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    if len(rows) < 3:
        raise DataFileError(f"{what}: fewer than the three header rows", path=path, line=len(rows))
    groups, names = rows[0], rows[1]
    if len(groups) != len(names):
        raise DataFileError(f"{what}: header rows differ in length", path=path, line=2)
    keys = [f"{g.strip()}:{n.strip()}" for g, n in zip(groups, names, strict=True)]
    return keys, [(i + 4, r) for i, r in enumerate(rows[3:]) if any(c.strip() for c in r)]


def read_dense_summary(path: str | os.PathLike[str]) -> SummaryTable:
    """Instrument results of a dense summary, keyed by (first closed time, port).

    Raises
    ------
    DataFileError
        When the file cannot be read or lacks DATE, TIME or PORT.
    """
    path_text, raw = read_bytes(path)
    text = raw.decode("utf-8", errors="replace")
    keys, rows = _three_row_csv(text, path_text, "dense summary")
    names = [k.split(":", 1)[1] for k in keys]
    for need in ("DATE", "TIME", "PORT"):
        if need not in names:
            raise DataFileError(f"dense summary has no {need} column", path=path_text, line=2)
    gases = sorted({n[1:].split("_")[0] for n in names if n.startswith("F") and "_" not in n[1:]})
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
            cx = _float(record.get(f"{prefix}_Cx"))
            t0 = _float(record.get(f"{prefix}_T0"))
            fallback = cx in (1e6, 0.0)
            results[gas.lower()] = InstrumentFlux(
                gas=gas.lower(),
                flux=flux,
                model="linear" if fallback else "exponential",
                lin_flux=flux if fallback else None,
                lin_r2=None,  # in a fallback R2 belongs to the abandoned exponential
                exp_flux=None if fallback else flux,
                exp_r2=None if fallback else _float(record.get(f"{prefix}_R2")),
                exp_a_per_s=_float(record.get(f"{prefix}_A")),
                exp_cx=cx,
                exp_c0=_float(record.get(f"{prefix}_C0")),
                exp_t0_s=t0,
                iterations=int(_float(record.get(f"{prefix}_ITER")))
                if math.isfinite(_float(record.get(f"{prefix}_ITER")))
                else None,
                n_points=int(_float(record.get(f"{prefix}_N")))
                if math.isfinite(_float(record.get(f"{prefix}_N")))
                else None,
                slope_per_s=_float(record.get(f"{prefix}_dCdt")),
                raw={**record, "line": str(line)},
            )
        out[(when, int(port))] = results
    return out


def _find_summary(path: Path) -> Path | None:
    """The dense summary beside an .82z: same serial prefix, '_dense_summary.csv'."""
    serial = path.name.split("-20")[0]
    candidates = sorted(path.parent.glob(f"{serial}*_dense_summary.csv"))
    return candidates[-1] if candidates else None


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
        a ``<serial>*_dense_summary.csv`` in the same folder is used when there is one.

    Returns
    -------
    ReadResult
        With one observation, or none and a rejection (no data rows, never closed).
    """
    path_text = os.fspath(path)
    p = Path(path_text)
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
            meta = json.loads(archive.read("metadata.json").decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"metadata.json is not valid JSON: {exc.msg}", path=path_text, line=exc.lineno
            ) from None
        text = archive.read("data.csv").decode("utf-8", errors="replace")
    if summary is None:
        found = _find_summary(p)
        table = read_dense_summary(found) if found else {}
    elif isinstance(summary, Mapping):
        table = summary
    else:
        table = read_dense_summary(summary)
    try:
        obs = _build(meta, text, path_text, table)
    except DataFileError as exc:
        return ReadResult(path=path_text, observations=(), rejected=(exc,))
    return ReadResult(path=path_text, observations=(obs,))


def _build(
    meta: Any,
    text: str,
    path: str,
    table: SummaryTable,
) -> ChamberObservation:
    keys, rows = _three_row_csv(text, path, "data.csv")
    if not rows:
        raise DataFileError("no data rows", path=path, observation=1)
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

    warnings: list[str] = []
    times: list[dt.datetime] = []
    states: list[float] = []
    table_rows: list[list[str]] = []
    for line, row in rows:
        if len(row) < len(keys):
            warnings.append(f"data.csv line {line}: short row skipped")
            continue
        when = _parse_time(row[position["LI-8250:DATE"]], row[position["LI-8250:TIME"]])
        if when is None:
            warnings.append(f"data.csv line {line}: unreadable DATE/TIME skipped")
            continue
        times.append(when)
        states.append(_float(row[position["CHAMBER:STATE"]]))
        table_rows.append(row)
    state = np.asarray(states)
    closed_rows = np.flatnonzero(state == _CLOSED)
    if closed_rows.size == 0:
        raise DataFileError(
            "the chamber never reached the closed state (STATE 5)", path=path, observation=1
        )
    first_closed = int(closed_rows[0])
    # keep the closing rows before the first closed one and the closed period itself
    after = np.flatnonzero((np.arange(state.size) > first_closed) & (state != _CLOSED))
    stop = int(after[0]) if after.size else state.size
    keep = np.arange(stop)
    closed_time = times[first_closed]
    elapsed = np.array([(times[i] - closed_time).total_seconds() for i in keep])

    def column(key: str) -> np.ndarray:
        if key not in position:
            raise DataFileError(f"data.csv has no column {key}", path=path, line=2)
        j = position[key]
        return np.array([_float(table_rows[i][j]) for i in keep])

    gases: list[GasChannel] = []
    cols: dict[str, np.ndarray] = {}
    source = None
    for setting in fluxes:
        gas_name = str(setting.get("GAS", "")).upper()
        if gas_name not in _COLUMN:
            warnings.append(f"metadata.json: gas {gas_name!r} not supported, skipped")
            continue
        source = str(setting.get("GAS_SOURCE", ""))
        cols[_COLUMN[gas_name]] = column(f"{source}:{gas_name}")
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
    if not gases:
        raise DataFileError("metadata.json names no supported gas", path=path)
    t_setting = fluxes[0]
    t_column = f"{t_setting.get('T_SOURCE', 'CHAMBER')}:{t_setting.get('TEMPERATURE', 'TA')}"
    cols["h2o_mmol_mol"] = column(f"{source}:H2O")
    cols["pressure_kpa"] = column("LI-8250:PA")
    cols["temperature_degc"] = column(t_column)

    # drop logger bursts: a row repeating the previous row's time and gas values
    gas_stack = np.vstack([cols[g.column] for g in gases])
    repeat = np.zeros(elapsed.size, dtype=bool)
    repeat[1:] = (elapsed[1:] == elapsed[:-1]) & np.all(gas_stack[:, 1:] == gas_stack[:, :-1], 0)
    if repeat.any():
        warnings.append(f"{int(repeat.sum())} repeated logger rows dropped")
        elapsed = elapsed[~repeat]
        cols = {k: v[~repeat] for k, v in cols.items()}
    check_complete(elapsed, obs_length if math.isfinite(obs_length) else None, path=path, index=1)
    closing = int(np.argmax(elapsed >= 0))
    port = int(port_value) if math.isfinite(port_value) else None
    reference = dict(table.get((closed_time, port), {})) if port is not None else {}
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
        offset_cm=_float(_value(meta, "CHAMBER", "COLLAR_HEIGHT")),
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
