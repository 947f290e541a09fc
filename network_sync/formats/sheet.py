"""Field sheets: which closure was when, and on what chamber; closures cut from a stream.

A field sheet is a CSV file with a header line; columns by name (case and spaces
ignored, order free). See docs/import.md for the template.

===================  ========  =============================================================
column               needed    meaning
===================  ========  =============================================================
plot (or collar)     yes       the plot or collar the chamber was on
date + start_time    yes (*)   stated closure start, analyser clock (YYYY-MM-DD, HH:MM:SS)
start                (*)       or both in one cell: YYYY-MM-DD HH:MM:SS
end_time / end       (**)      stated closure end (same clock)
length_s             (**)      or the closure length [s]
volume_cm3           yes (***) total system volume: chamber + tubing + analyser [cm3]
height_cm            (***)     or the effective chamber height [cm]: volume = height x area
area_cm2             yes       soil area [cm2]
offset_cm            no        collar height above soil [cm], added as area x offset
air_temperature_degc yes       air temperature in the chamber [degC] (the analysers'
                               cavity temperature is not the chamber's)
air_pressure_kpa     yes       air pressure [kPa]
dead_band_s          no        dead band [s]; empty: chosen automatically
search_s             no        half-width of the search for the closure step [s]
===================  ========  =============================================================

(*) one of the two forms; (**) one of end or length_s; (***) one of volume or height.

Closure step search (:func:`find_closure_step`): placing a chamber changes the trace (a
jump where the headspace is disturbed, a new slope as gas accumulates). Around each stated
start, every sample time ``tb`` within ``search_s`` (default 30 s) is tried as the closure
instant: over the 15 s before and 30 s after ``tb``, one line is compared with a line that
may jump and change slope at ``tb`` (two more parameters), by the F statistic of the
reduction in the residual sum of squares (:func:`step_f_statistics`; per instant the gas
with the largest F counts). A step counts where F exceeds :data:`STEP_F_MIN` and its jump,
or its slope change over 30 s, is at least :data:`STEP_MIN_SIZE_MF` (five times the
analyser's precision). Candidate steps are the local maxima of F (no higher F within 15 s:
nearer, a smaller peak is the shoulder of the larger one); the one **nearest the stated
start** is taken, so that the flush of the previous closure (lifting the chamber off the
last collar, a larger step a few tens of seconds earlier) does not win over the closure
itself. The window moves to it (keeping its length) when it lies at least half a sample
from the stated start; the observation's warnings say so, or that no step was found.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
from dataclasses import dataclass

import numpy as np

from chamberd.controller.errors import DataFileError, TruncatedObservationError

from ._common import GAP_INTERVALS, check_complete, decode_text, read_bytes, shown
from .records import ChamberObservation, GasChannel, InitialValues, ReadResult
from .streams import Stream, clock_to_datetime, datetime_to_clock

__all__ = [
    "DEFAULT_SEARCH_S",
    "STEP_F_MIN",
    "STEP_MIN_SIZE_MF",
    "SheetRow",
    "StepSearch",
    "cut_closures",
    "find_closure_step",
    "read_field_sheet",
    "step_f_statistics",
]

#: Default half-width of the closure step search [s].
DEFAULT_SEARCH_S = 30.0
#: F statistic (two extra parameters) a step must exceed to move the window. Higher than
#: the 0.1 % point of F(2, 60) (about 7.8) because the step time itself is searched for.
STEP_F_MIN = 20.0
#: Seconds of trace before and after a candidate instant used to judge a step there.
STEP_BEFORE_S = 15.0
STEP_AFTER_S = 30.0
#: Smallest step that counts, per gas [umol mol-1 CO2, nmol mol-1 CH4 and N2O]: five times
#: the 1 Hz precision of the laser analysers (LI-7810 CO2 about 1 umol/mol at the rates
#: used here, CH4 0.6 nmol/mol, LI-7820 N2O 0.4 nmol/mol), so that the slow curvature of a
#: smooth trace, significant against a low noise, is not taken for a closure.
STEP_MIN_SIZE_MF = {"co2": 5.0, "ch4": 3.0, "n2o": 2.0}
#: A step is taken at a local maximum of F: no higher F within this many seconds (a step
#: closer than that to a larger one is its shoulder: both are in the same windows).
LOCAL_S = STEP_BEFORE_S
MAX_SHEET_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SheetRow:
    """One closure of a field sheet."""

    line: int
    plot: str
    start: dt.datetime  # stated, analyser clock
    length_s: float
    volume_cm3: float
    area_cm2: float
    offset_cm: float | None
    air_temperature_degc: float
    air_pressure_kpa: float
    dead_band_s: float | None
    search_s: float | None


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def _time(text: str, what: str, path: str, line: int) -> dt.datetime:
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text.strip(), pattern)  # noqa: DTZ007
        except ValueError:
            continue
    raise DataFileError(f"{what}: {shown(text)} is not YYYY-MM-DD HH:MM:SS", path=path, line=line)


def read_field_sheet(path: str | os.PathLike[str]) -> tuple[SheetRow, ...]:
    """Read a field sheet; DataFileError naming the line and column of any bad cell.

    The sheet is read whole: one bad row refuses the sheet (nothing is fitted or imported
    from a sheet that is partly wrong).
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_SHEET_BYTES, what="a field sheet")
    text = decode_text(raw)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DataFileError(f"not a readable CSV file: {exc}", path=path_text) from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise DataFileError("empty field sheet: no header line", path=path_text, line=1)
    names = [_key(c) for c in rows[0]]
    aliases = {"collar": "plot", "end_time": "end", "start_time": "start_time"}
    names = [aliases.get(n, n) for n in names]
    out: list[SheetRow] = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            raise DataFileError(
                f"row has {len(cells)} cells, the header {len(names)}", path=path_text, line=number
            )
        cell = {n: c.strip() for n, c in zip(names, cells, strict=True)}

        def number_of(
            name: str, *, required: bool = True, positive: bool = False, cell=cell, number=number
        ) -> float | None:
            value = cell.get(name, "")
            if not value:
                if required:
                    raise DataFileError(f"{name}: missing", path=path_text, line=number)
                return None
            try:
                x = float(value)
            except ValueError:
                x = math.nan
            if not math.isfinite(x) or (positive and x <= 0) or x < 0:
                need = "a positive number" if positive else "a number >= 0"
                raise DataFileError(
                    f"{name}: {shown(value)} is not {need}", path=path_text, line=number
                )
            return x

        plot = cell.get("plot", "")
        if not plot:
            raise DataFileError("plot: missing", path=path_text, line=number)
        if cell.get("start"):
            start = _time(cell["start"], "start", path_text, number)
        elif cell.get("date") and cell.get("start_time"):
            start = _time(
                f"{cell['date']} {cell['start_time']}", "date/start_time", path_text, number
            )
        else:
            raise DataFileError(
                "start: missing (give start, or date and start_time)", path=path_text, line=number
            )
        if cell.get("end"):
            end_text = cell["end"]
            if len(end_text) <= 8 and ":" in end_text:  # a time of day on the start's date
                end_text = f"{start.date().isoformat()} {end_text}"
            length = (_time(end_text, "end", path_text, number) - start).total_seconds()
            if length <= 0:
                raise DataFileError("end: not after the start", path=path_text, line=number)
        elif cell.get("length_s"):
            length = number_of("length_s", positive=True)
        else:
            raise DataFileError("end or length_s: missing (give one)", path=path_text, line=number)
        area = number_of("area_cm2", positive=True)
        offset = number_of("offset_cm", required=False)
        if cell.get("volume_cm3"):
            volume = number_of("volume_cm3", positive=True)
        elif cell.get("height_cm"):
            volume = number_of("height_cm", positive=True) * area
        else:
            raise DataFileError(
                "volume_cm3 or height_cm: missing (give one)", path=path_text, line=number
            )
        if offset:
            volume += area * offset
        temperature = cell.get("air_temperature_degc", "")
        try:
            t_degc = float(temperature)
        except ValueError:
            t_degc = math.nan
        if not (math.isfinite(t_degc) and -60.0 <= t_degc <= 70.0):
            raise DataFileError(
                f"air_temperature_degc: {shown(temperature)} is not a temperature in "
                "-60..70 degC (the analysers' stream has no chamber temperature)",
                path=path_text,
                line=number,
            )
        pressure = number_of("air_pressure_kpa", positive=True)
        if not 50.0 <= pressure <= 110.0:
            raise DataFileError(
                f"air_pressure_kpa: {pressure:g} is not a pressure in 50..110 kPa (hPa given?)",
                path=path_text,
                line=number,
            )
        out.append(
            SheetRow(
                line=number,
                plot=plot,
                start=start,
                length_s=float(length),
                volume_cm3=float(volume),
                area_cm2=float(area),
                offset_cm=offset,
                air_temperature_degc=t_degc,
                air_pressure_kpa=float(pressure),
                dead_band_s=number_of("dead_band_s", required=False),
                search_s=number_of("search_s", required=False),
            )
        )
    if not out:
        raise DataFileError("no closures in the field sheet", path=path_text)
    return tuple(out)


@dataclass(frozen=True)
class StepSearch:
    """Where the closure step was found around a stated start."""

    stated_s: float  # analyser clock
    found_s: float  # analyser clock: stated_s where no step was found
    f_statistic: float  # NaN when not searched
    gas: str | None
    moved: bool


def _step_fit(t: np.ndarray, c: np.ndarray, tb: float) -> tuple[float, float]:
    """(residual sum of squares, size of the step) of a line that jumps and changes slope
    at ``tb``; the size is the larger of |jump| and |slope change| x STEP_AFTER_S [mf]."""
    after = t >= tb
    design = np.column_stack(
        [np.ones_like(t), t, after.astype(float), np.where(after, t - tb, 0.0)]
    )
    coef, _residual, rank, _sv = np.linalg.lstsq(design, c, rcond=None)
    if rank < 4:
        return math.inf, 0.0
    size = max(abs(float(coef[2])), abs(float(coef[3])) * STEP_AFTER_S)
    return float(np.sum((design @ coef - c) ** 2)), size


def _sse_line(t: np.ndarray, c: np.ndarray) -> float:
    design = np.column_stack([np.ones_like(t), t])
    coef, _res, rank, _sv = np.linalg.lstsq(design, c, rcond=None)
    return float(np.sum((design @ coef - c) ** 2)) if rank == 2 else math.nan


def step_f_statistics(
    clock_s: np.ndarray, values: np.ndarray, candidates_s: np.ndarray, min_size: float = 0.0
) -> np.ndarray:
    """F statistic of a closure step at each candidate instant (module notes): over the
    :data:`STEP_BEFORE_S` before and :data:`STEP_AFTER_S` after the instant, a line that may
    jump and change slope there against one line (two extra parameters). NaN where either
    side has fewer than 5 samples, or where the step is smaller than ``min_size`` [mf]
    (its jump, or its slope change over STEP_AFTER_S)."""
    ok = np.isfinite(values) & np.isfinite(clock_s)
    t_all, c_all = clock_s[ok], values[ok]
    out = np.full(candidates_s.size, math.nan)
    for i, tb in enumerate(candidates_s):
        near = (t_all >= tb - STEP_BEFORE_S) & (t_all <= tb + STEP_AFTER_S)
        t, c = t_all[near] - tb, c_all[near]
        before = int(np.sum(t < 0))
        if before < 5 or t.size - before < 5:
            continue
        sse_line = _sse_line(t, c)
        sse_step, size = _step_fit(t, c, 0.0)
        dof = t.size - 4
        if not (math.isfinite(sse_line) and math.isfinite(sse_step) and sse_step > 0):
            continue
        if size < min_size:
            continue
        out[i] = (sse_line - sse_step) / 2.0 / (sse_step / dof)
    return out


def find_closure_step(
    clock_s: np.ndarray, traces: dict[str, np.ndarray], stated_s: float, search_s: float
) -> StepSearch:
    """Search for the closure step within ``search_s`` of ``stated_s`` (module notes)."""
    if search_s <= 0 or clock_s.size < 2:
        return StepSearch(stated_s, stated_s, math.nan, None, False)
    candidates = clock_s[np.abs(clock_s - stated_s) <= search_s]
    if candidates.size == 0:
        return StepSearch(stated_s, stated_s, math.nan, None, False)
    per_gas = {
        gas: step_f_statistics(clock_s, v, candidates, STEP_MIN_SIZE_MF.get(gas, 0.0))
        for gas, v in traces.items()
    }
    stacked = np.vstack(list(per_gas.values()))
    filled = np.where(np.isfinite(stacked), stacked, -np.inf)
    best_gas = np.argmax(filled, axis=0)
    f_best = filled[best_gas, np.arange(candidates.size)]
    names = list(per_gas)
    # significant local maxima of F (no higher F within LOCAL_S), the nearest to the start
    peaks = [
        i
        for i in range(candidates.size)
        if f_best[i] > STEP_F_MIN
        and f_best[i] >= f_best[np.abs(candidates - candidates[i]) <= LOCAL_S].max()
    ]
    step = float(np.median(np.diff(clock_s)))
    if not peaks:
        top = float(f_best.max()) if np.isfinite(f_best).any() else math.nan
        return StepSearch(stated_s, stated_s, top if math.isfinite(top) else math.nan, None, False)
    k = min(peaks, key=lambda i: (abs(candidates[i] - stated_s), -f_best[i]))
    tb = float(candidates[k])
    moved = abs(tb - stated_s) >= 0.5 * step
    return StepSearch(
        stated_s, tb if moved else stated_s, float(f_best[k]), names[best_gas[k]], moved
    )


def cut_closures(
    stream: Stream,
    sheet: tuple[SheetRow, ...],
    *,
    sheet_path: str,
    search_s: float = DEFAULT_SEARCH_S,
) -> ReadResult:
    """One :class:`ChamberObservation` per sheet row, cut from ``stream``.

    A row whose window has no samples, or whose samples stop short of its length or start
    late (the stream begins after the stated start), is refused
    (:class:`TruncatedObservationError`) with the sheet line; the others are returned.
    """
    observations: list[ChamberObservation] = []
    rejected: list[Exception] = []
    clock = stream.clock_s
    order = np.argsort(clock, kind="stable")
    if np.any(np.diff(clock) < 0):
        clock = clock[order]
    columns = {k: v[order] for k, v in stream.columns.items()}
    lines = stream.lines[order]
    step = float(np.median(np.diff(clock))) if clock.size > 1 else 1.0
    for index, row in enumerate(sheet, start=1):
        where = f"{sheet_path}, line {row.line} (plot {row.plot})"
        stated = datetime_to_clock(row.start)
        width = row.search_s if row.search_s is not None else search_s
        traces = {g.gas: columns[g.column] for g in stream.gases}
        found = find_closure_step(clock, traces, stated, width)
        start = found.found_s
        end = start + row.length_s
        inside = (clock >= start - 1e-6) & (clock <= end + 1e-6)
        notes: list[str] = []
        if found.moved:
            notes.append(
                f"{where}: closure step found in {found.gas} at "
                f"{clock_to_datetime(start).isoformat(timespec='seconds')}, "
                f"{start - stated:+.0f} s from the stated start: window moved "
                f"(F = {found.f_statistic:.3g})"
            )
        elif width > 0:
            notes.append(
                f"{where}: no closure step found within {width:g} s of the stated start "
                "(or it is there): the stated start is used"
            )
        if not inside.any():
            rejected.append(
                TruncatedObservationError(
                    f"{where}: no samples in the stream between "
                    f"{clock_to_datetime(start).isoformat(timespec='seconds')} and "
                    f"{clock_to_datetime(end).isoformat(timespec='seconds')} (the stream runs "
                    f"{clock_to_datetime(clock[0]).isoformat(timespec='seconds')} to "
                    f"{clock_to_datetime(clock[-1]).isoformat(timespec='seconds')})",
                    path=stream.path,
                    observation=index,
                )
            )
            continue
        elapsed = clock[inside] - start
        first_line = int(lines[inside][0])
        try:
            if elapsed[0] > GAP_INTERVALS * step:
                raise TruncatedObservationError(
                    f"{where}: truncated: the stream's first sample is {elapsed[0]:g} s after "
                    "the closure start",
                    path=stream.path,
                    observation=index,
                    line=first_line,
                )
            check_complete(
                elapsed,
                row.length_s,
                path=stream.path,
                index=index,
                line=first_line,
                notes=where,
            )
        except TruncatedObservationError as exc:
            rejected.append(exc)
            continue
        n = int(inside.sum())
        cols = {k: v[inside] for k, v in columns.items()}
        cols["pressure_kpa"] = np.full(n, row.air_pressure_kpa)
        cols["temperature_degc"] = np.full(n, row.air_temperature_degc)
        h2o = "h2o_mmol_mol" in cols
        if not h2o:
            cols["h2o_mmol_mol"] = np.zeros(n)
            notes.append(f"{where}: the stream has no H2O: W0 = 0 in the flux")
        gases = tuple(
            GasChannel(
                gas=g.gas,
                column=g.column,
                unit=g.unit,
                dry=g.dry,
                dead_band_s=row.dead_band_s,
                end_s=row.length_s,
            )
            for g in stream.gases
        )
        begin = clock_to_datetime(start)
        observations.append(
            ChamberObservation(
                source_file=stream.path,
                index=index,
                instrument=stream.instrument,
                port=None,
                label=row.plot,
                start_time=begin,
                closed_time=begin,
                time_zone=stream.time_zone,
                volume_cm3=row.volume_cm3,
                area_cm2=row.area_cm2,
                offset_cm=row.offset_cm,
                obs_length_s=row.length_s,
                elapsed_s=elapsed,
                columns=cols,
                gases=gases,
                initial=InitialValues(
                    pressure_kpa=row.air_pressure_kpa,
                    temperature_degc=row.air_temperature_degc,
                    h2o_mmol_mol=None if h2o else 0.0,
                ),
                has_footer=False,
                header={
                    "sheet": sheet_path,
                    "sheet_line": str(row.line),
                    "stated_start": row.start.isoformat(),
                    "step_moved_s": f"{start - stated:g}",
                },
                annotations=tuple(
                    a for a in stream.annotations if lines[inside][0] <= a.line <= lines[inside][-1]
                ),
                warnings=tuple(notes),
                first_line=first_line,
            )
        )
    return ReadResult(
        path=stream.path,
        observations=tuple(observations),
        rejected=tuple(rejected),
        warnings=stream.warnings,
    )
