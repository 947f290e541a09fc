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
first 10 s by logger time; window dead band <= elapsed <= stop time.

Logger clock stalls. Some LI-8250 loggers stop advancing ``TIME`` for tens of seconds and
then write a burst of rows with one shared timestamp, in consecutive duplicate pairs. The
rows are not missing samples (the instrument fits them), so their timing is reconstructed
(:func:`retime_stalls`), by this rule:

1. A row that repeats the previous row's logger time and every gas value is the same sample
   written twice: it is dropped.
2. A *stall* is a stretch of consecutive rows whose time steps are not the logging interval
   (the commonest step, 1 s) and include at least one zero step: the clock stood still
   (frozen rows) and/or caught up at once (a burst). Its first row is the last one logged on
   time, at A, and its last row the first one on time again, at B.
3. When the stall holds exactly as many samples as there are logging intervals from A to B
   plus one, they are the samples of that time: they are spaced evenly at the interval from
   A to B, in file order.
4. When it holds fewer, samples really are missing: the rows frozen at A keep the interval
   forward from A, the rows of the burst at B back from B, and the hole between them is
   left for the completeness check (more than three intervals: the observation is refused
   as truncated). When it holds more than the time allows, the logged times are kept.

A gap without repeated timestamps around it is a real gap, never filled. Each stall
retimed is listed in the observation's warnings.

Each line of a CSV is parsed on its own, so line numbers in messages are the file's lines
and a stray quote cannot swallow the lines after it. A row that is short, cannot be split,
or has no number where the observation needs one (state, gas, water, pressure,
temperature), is skipped with a warning naming its line.

Size limits (see :mod:`._common`): an ``.82z`` of at most 64 MiB whose ``data.csv`` and
``metadata.json`` each declare at most 16 MiB decompressed (checked before decompressing);
a dense summary of at most 64 MiB.
"""

from __future__ import annotations

import datetime as dt
import glob
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import (
    MAX_82Z_BYTES,
    MAX_82Z_MEMBER_BYTES,
    MAX_SUMMARY_BYTES,
    check_complete,
    count_or_none,
    decode_text,
    load_json,
    open_zip,
    read_bytes,
    read_zip_member,
    shown,
    split_csv_line,
    split_lines,
)
from .records import ChamberObservation, GasChannel, InitialValues, InstrumentFlux, ReadResult

__all__ = ["Stall", "read_82z", "read_dense_summary", "retime_stalls", "sniff_82z"]

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
# (line number, cells), cells None where the line could not be split (with the reason)
_Rows = list[tuple[int, list[str] | None, str]]


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
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _parse_time(date: str, time: str) -> dt.datetime | None:
    """DATE YYYYMMDD and TIME HHMMSS (leading zeros may be missing) -> datetime."""
    try:
        return dt.datetime.strptime(date.strip() + time.strip().zfill(6), "%Y%m%d%H%M%S")  # noqa: DTZ007
    except ValueError:
        return None


def _three_row_csv(text: str, path: str, what: str) -> tuple[list[str], _Rows]:
    """(``GROUP:NAME`` keys, [(line number, cells, why not)] of the non-blank data rows)."""
    lines = split_lines(text)
    if len(lines) < 3:
        raise DataFileError(
            f"{what}: fewer than the three header rows", path=path, line=len(lines) + 1
        )
    header = []
    for n, line in enumerate(lines[:2], start=1):
        try:
            header.append(split_csv_line(line))
        except ValueError as exc:
            raise DataFileError(
                f"{what}: unreadable header row: {exc}", path=path, line=n
            ) from None
    groups, names = header
    if len(groups) != len(names):
        raise DataFileError(f"{what}: header rows differ in length", path=path, line=2)
    keys = [f"{g.strip()}:{n.strip()}" for g, n in zip(groups, names, strict=True)]
    # one line at a time: an unbalanced quote then spoils its own line only
    rows: _Rows = []
    for n, line in enumerate(lines[3:], start=4):
        if not line.strip(" ,\t"):
            continue
        try:
            rows.append((n, split_csv_line(line), ""))
        except ValueError as exc:
            rows.append((n, None, str(exc)))
    return keys, rows


def _optional(value: Any) -> float | None:
    number = _float(value)
    return number if math.isfinite(number) else None


def read_dense_summary(path: str | os.PathLike[str]) -> SummaryTable:
    """Instrument results of a dense summary, keyed by (first closed time, port).

    Rows without a readable DATE, TIME or PORT (or that cannot be split, such as a field
    over the csv module's limit) cannot be matched to an observation and are left out; a
    gas whose ``F<GAS>`` cell is not a finite number is left out of its row.

    Raises
    ------
    DataFileError
        When the file cannot be read, is over 64 MiB, has an unreadable header row, or
        lacks DATE, TIME or PORT.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_SUMMARY_BYTES, what="a dense summary")
    keys, rows = _three_row_csv(decode_text(raw), path_text, "dense summary")
    names = [k.split(":", 1)[1] for k in keys]
    for need in ("DATE", "TIME", "PORT"):
        if need not in names:
            raise DataFileError(f"dense summary has no {need} column", path=path_text, line=2)
    known = {gas.split("_")[0] for gas in _COLUMN}  # CO2, CH4, N2O
    gases = sorted(n[1:] for n in names if n.startswith("F") and n[1:] in known)
    out: dict[tuple[dt.datetime, int], dict[str, InstrumentFlux]] = {}
    for line, row, _why in rows:
        if row is None:
            continue
        record = dict(zip(names, row, strict=False))
        when = _parse_time(record.get("DATE", ""), record.get("TIME", ""))
        port = count_or_none(record.get("PORT"))
        if when is None or port is None:
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
            iterations = count_or_none(record.get(f"{prefix}_ITER"))
            n_points = count_or_none(record.get(f"{prefix}_N"))
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
                iterations=iterations,
                n_points=n_points,
                slope_per_s=_optional(record.get(f"{prefix}_dCdt")),
                raw={**record, "line": str(line)},
            )
        out[(when, port)] = results
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
        With one observation, or none and a rejection (no gas data, no data rows, never
        closed, cut short, metadata without area, volume or a supported gas).

    Raises
    ------
    DataFileError
        When the file cannot be read or is over 64 MiB, is not a zip, lacks ``data.csv`` or
        ``metadata.json``, is damaged, encrypted or compressed with another method than
        stored or deflate, has a member declaring more than 16 MiB decompressed, or its
        ``metadata.json`` is not JSON (with the line), and when a ``summary`` given by path
        cannot be read.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_82Z_BYTES, what="an .82z file")
    p = Path(path_text)
    if not raw:
        raise DataFileError("empty file: not an .82z (zip) file", path=path_text)
    with open_zip(raw, path=path_text, what=".82z") as archive:
        names = set(archive.namelist())
        for need in ("data.csv", "metadata.json"):
            if need not in names:
                raise DataFileError(f".82z has no {need}", path=path_text)
        meta_raw, data_raw = (
            read_zip_member(
                archive, name, path=path_text, max_bytes=MAX_82Z_MEMBER_BYTES, what=".82z"
            )
            for name in ("metadata.json", "data.csv")
        )
    meta = load_json(decode_text(meta_raw), path=path_text, what="metadata.json")
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


@dataclass(frozen=True)
class Stall:
    """A stretch of rows across a logger clock stall (see the module docstring).

    Rows ``first``..``last`` (indices into the rows kept) span logger times ``start_s`` to
    ``end_s``; ``samples`` rows for ``slots`` logging intervals (inclusive). ``action`` is
    ``"retimed"`` (evenly spaced), ``"partly retimed"`` (fewer samples than slots: a hole
    remains) or ``"kept"`` (more samples than the time allows: logged times kept).
    """

    first: int
    last: int
    start_s: float
    end_s: float
    samples: int
    slots: int
    action: str


def retime_stalls(
    seconds: np.ndarray, gas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Stall]]:
    """Reconstruct sample times across logger clock stalls (rule in the module docstring).

    Parameters
    ----------
    seconds : (n,) array
        Logger time of each row, in file order [s] (any origin).
    gas : (k, n) array
        The gas values of each row.

    Returns
    -------
    times : (m,) array
        Time of each row kept [s], same origin as ``seconds``.
    kept : (n,) bool array
        False for the second row of each duplicate pair.
    stalls : list of Stall
        Every stretch with repeated logger times, and what was done with it.

    Examples
    --------
    Clock frozen at 10 s for three rows, then a burst of two samples (each written twice)
    stamped 14 s:

    >>> t = np.array([9, 10, 10, 10, 14, 14, 14, 14, 15.0])
    >>> c = np.array([[1, 2, 3, 4, 5, 5, 6, 6, 7.0]])
    >>> times, kept, stalls = retime_stalls(t, c)
    >>> times.tolist(), int((~kept).sum()), stalls[0].action
    ([9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0], 2, 'retimed')
    """
    seconds = np.asarray(seconds, dtype=float)
    gas = np.asarray(gas, dtype=float).reshape(-1, seconds.size)
    kept = np.ones(seconds.size, dtype=bool)
    if seconds.size > 1:
        same_time = seconds[1:] == seconds[:-1]
        kept[1:] = ~(same_time & np.all(gas[:, 1:] == gas[:, :-1], axis=0))
    logged = seconds[kept]
    times = logged.copy()
    steps = np.diff(logged)
    positive = steps[steps > 0]
    if not positive.size:
        return times, kept, []
    # the logging interval: the commonest positive step (the smaller one of a tie)
    steps_seen, counts = np.unique(positive, return_counts=True)
    interval = float(steps_seen[np.argmax(counts)])
    regular = np.abs(steps - interval) <= 0.5 * interval
    stalls: list[Stall] = []
    i = 0
    while i < steps.size:
        if regular[i]:
            i += 1
            continue
        j = i
        while j < steps.size and not regular[j]:
            j += 1
        # irregular steps i .. j-1 join rows i .. j: row i is the last on time, row j the
        # first on time again
        stretch = steps[i:j]
        if (stretch >= 0).all() and (stretch <= 0.5 * interval).any():
            a, b = logged[i], logged[j]
            samples = j - i + 1
            slots = round((b - a) / interval) + 1
            if samples == slots:
                times[i : j + 1] = a + interval * np.arange(samples)
                action = "retimed"
            elif samples < slots:
                new = logged[i : j + 1].copy()
                frozen = int(np.argmax(new != a)) if (new != a).any() else samples
                burst = int(np.argmax(new[::-1] != b)) if (new != b).any() else samples
                new[:frozen] = a + interval * np.arange(frozen)
                new[samples - burst :] = b - interval * np.arange(burst)[::-1]
                if (np.diff(new) > 0).all():
                    times[i : j + 1] = new
                    action = "partly retimed"
                else:
                    action = "kept"
            else:
                action = "kept"
            stalls.append(Stall(i, j, float(a), float(b), samples, slots, action))
        i = j
    return times, kept, stalls


def _stall_note(stall: Stall, origin_s: float) -> str:
    a, b = stall.start_s - origin_s, stall.end_s - origin_s
    where = f"logger clock stall at elapsed {a:g} to {b:g} s"
    if stall.action == "retimed":
        return f"{where}: {stall.samples} samples retimed at even intervals"
    if stall.action == "partly retimed":
        return (
            f"{where}: {stall.samples} samples for {stall.slots} intervals "
            f"({stall.slots - stall.samples} missing); the rows frozen at {a:g} s retimed "
            f"forward, the burst at {b:g} s back from its end"
        )
    return (
        f"{where}: {stall.samples} samples for {stall.slots} intervals, more than the "
        "time allows: logged times kept"
    )


def _text(setting: Mapping[str, Any], key: str, default: str) -> str:
    """A name from a FLUX setting; ``default`` where it is absent, empty or not text."""
    value = setting.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else default


def _gas_source(
    setting: Mapping[str, Any], gas_name: str, position: Mapping[str, int], path: str, n: int
) -> str:
    """The analyser group of a FLUX setting's gas column (its GAS_SOURCE, or where that is
    empty, the only group in data.csv that has the gas)."""
    source = setting.get("GAS_SOURCE")
    if isinstance(source, str) and source.strip():
        return source.strip()
    groups = sorted({key.split(":", 1)[0] for key in position if key.endswith(f":{gas_name}")})
    if len(groups) == 1:
        return groups[0]
    found = f"data.csv has it from {', '.join(groups)}" if groups else "data.csv has none"
    raise DataFileError(
        f"metadata.json FLUX[{n}] names no GAS_SOURCE for {gas_name} and {found}", path=path
    )


def _build(
    meta: Any,
    text: str,
    path: str,
    table: SummaryTable,
) -> ChamberObservation:
    keys, rows = _three_row_csv(text, path, "data.csv")
    position: dict[str, int] = {}
    for i, key in enumerate(keys):
        position.setdefault(key, i)
    if not any(key.split(":", 1)[-1] in _COLUMN for key in position):
        raise DataFileError(
            "no gas data (CO2_DRY, CH4_DRY or N2O_DRY) in data.csv: only the chamber's own "
            "sensors were logged, so there is no flux to fit",
            path=path,
            observation=1,
        )
    if not rows:
        raise DataFileError("data.csv: no data rows", path=path, observation=1)
    for need in ("LI-8250:DATE", "LI-8250:TIME", "CHAMBER:STATE"):
        if need not in position:
            raise DataFileError(f"data.csv has no column {need}", path=path, line=2)
    fluxes = meta.get("FLUX") if isinstance(meta, Mapping) else None
    if not isinstance(fluxes, list) or not fluxes:
        raise DataFileError("metadata.json has no FLUX settings", path=path)
    area = _float(_value(meta, "CHAMBER", "AREA"))
    volume = _float(_value(meta, "METADATA", "VOLUME_TOTAL"))
    obs_length = _float(_value(meta, "METADATA", "OBSERVATION"))
    port = count_or_none(_value(meta, "LI-8250", "PORT"))
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
            warnings.append(f"metadata.json: gas {shown(gas_name)} not supported, skipped")
            continue
        source = _gas_source(setting, gas_name, position, path, n)
        settings.append((gas_name, setting, require(f"{source}:{gas_name}")))
    if not settings:
        detail = f" ({'; '.join(warnings)})" if warnings else ""
        raise DataFileError(f"metadata.json names no supported gas{detail}", path=path)
    t_setting = settings[0][1]
    t_column = f"{_text(t_setting, 'T_SOURCE', 'CHAMBER')}:{_text(t_setting, 'TEMPERATURE', 'TA')}"
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
    for line, row, why in rows:
        if row is None:
            warnings.append(f"data.csv line {line}: unreadable row ({why}) skipped")
            continue
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
                f"data.csv line {line}: no number in {names[bad[0]]} ({shown(row[bad[0]])}), "
                "row skipped"
            )
            continue
        times.append(when)
        for name, value in parsed.items():
            values[name].append(value)
    if not times:
        raise DataFileError("data.csv: no readable data rows", path=path, observation=1)

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

    # duplicate rows and clock stalls, over the whole record (a stall may straddle the
    # closure or the end of the closed period)
    logged_s = np.array([(when - times[0]).total_seconds() for when in times])
    all_cols = {name: np.asarray(vals, dtype=float) for name, vals in values.items()}
    seconds, kept, stalls = retime_stalls(logged_s, np.vstack([all_cols[g.column] for g in gases]))
    duplicates = int((~kept).sum())
    kept_rows = np.flatnonzero(kept)
    state = all_cols.pop("state")[kept]
    closed_rows = np.flatnonzero(state == _CLOSED)
    if closed_rows.size == 0:
        raise DataFileError(
            "the chamber never reached the closed state (STATE 5)", path=path, observation=1
        )
    first_closed = int(closed_rows[0])
    # keep the closing rows before the first closed one and the closed period itself
    after = np.flatnonzero((np.arange(state.size) > first_closed) & (state != _CLOSED))
    stop = int(after[0]) if after.size else state.size
    origin = float(seconds[first_closed])
    logged_closed = times[int(kept_rows[first_closed])]
    try:  # the closure on the instrument's clock, retimed where a stall covers it
        closed_time = times[0] + dt.timedelta(seconds=origin)
    except OverflowError:  # a clock near year 9999
        closed_time = logged_closed
    elapsed = seconds[:stop] - origin
    cols = {name: vals[kept][:stop] for name, vals in all_cols.items()}
    if duplicates:
        warnings.append(
            f"{duplicates} duplicate logger rows dropped (same time and gas values as the row "
            "before)"
        )
    warnings.extend(_stall_note(stall, origin) for stall in stalls if stall.first < stop)
    if not (math.isfinite(obs_length) and obs_length > 0):
        obs_length = float(elapsed.max())
        warnings.append(
            "metadata.json: no METADATA.OBSERVATION, observation length taken as the last "
            f"elapsed time ({obs_length:g} s); a trace cut short cannot be told"
        )
        gases = [g if math.isfinite(g.end_s) else replace(g, end_s=obs_length) for g in gases]
    check_complete(elapsed, obs_length, path=path, index=1)
    closing = int(np.argmax(elapsed >= 0))
    reference: dict[str, InstrumentFlux] = {}
    if port is not None:
        # keyed by the first closed row's time as logged; where a stall retimed that row,
        # the summary may carry its reconstructed time instead
        found = table.get((logged_closed, port)) or table.get((closed_time, port))
        reference = dict(found or {})
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
