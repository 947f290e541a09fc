"""Reader for Picarro ``.dat`` files (G2508, G2301, G2201-i and the like).

Layout: one line of column names, then rows, both separated by runs of spaces::

    DATE        TIME          FRAC_DAYS_SINCE_JAN1 ... EPOCH_TIME ... ALARM_STATUS ...
        N2O  N2O_dry ... CO2  CO2_dry  CH4  CH4_dry  H2O  NH3 ...
    2023-01-08  09:16:50.161  7.38669168 ... 1673165810.161 ... 0 ...

``DATE`` + ``TIME`` are the analyser's clock; ``EPOCH_TIME`` is UTC (POSIX seconds), so
the stream's zone follows from the two. The columns carry no units: as Picarro logs them,
CO2, CH4 and N2O are in ppm (CH4 and N2O are converted to nmol mol-1) and H2O in percent
(converted to mmol mol-1). chamberd reads ``<gas>_dry`` where present, else the wet column
with H2O. Rows with ``ALARM_STATUS`` other than 0 are kept but counted in the warnings.
"""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import MAX_81X_BYTES, decode_text, read_bytes, shown, split_lines, strip_bom
from .streams import Stream, StreamGas, datetime_to_clock, fixed_zone, utc_offset

__all__ = ["read_picarro_dat", "sniff_picarro"]

_GASES = {
    "co2": ("CO2", "umol/mol", 1.0),
    "ch4": ("CH4", "nmol/mol", 1e3),
    "n2o": ("N2O", "nmol/mol", 1e3),
}


def sniff_picarro(head: bytes) -> bool:
    """True when the first bytes look like a Picarro ``.dat`` file."""
    first = strip_bom(head).split(b"\n", 1)[0].split()
    return len(first) > 3 and first[:2] == [b"DATE", b"TIME"] and b"EPOCH_TIME" in first


def _number(cell: str) -> float:
    try:
        value = float(cell)
    except (ValueError, OverflowError):
        return math.nan
    # beyond any time stamp or mole fraction: a damaged cell, missing (and no overflow later)
    return value if math.isfinite(value) and abs(value) < 1e12 else math.nan


def read_picarro_dat(path: str | os.PathLike[str]) -> Stream:
    """Read a Picarro ``.dat`` file.

    Raises
    ------
    DataFileError
        Naming the file and line: unreadable, over 256 MiB, no ``DATE TIME`` column line,
        a row with the wrong number of cells or an unreadable date, no gas column.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_81X_BYTES, what="a Picarro .dat file")
    lines = split_lines(decode_text(raw))
    if not lines:
        raise DataFileError("empty file: not a Picarro .dat file", path=path_text)
    names = lines[0].split()
    if names[:2] != ["DATE", "TIME"]:
        raise DataFileError("the first line does not start DATE TIME", path=path_text, line=1)
    index = {name: i for i, name in enumerate(names)}
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split()
        if not cells:
            continue
        if len(cells) != len(names):
            raise DataFileError(
                f"row has {len(cells)} cells, the column line names {len(names)}",
                path=path_text,
                line=number,
            )
        rows.append(cells)
        row_lines.append(number)
    if not rows:
        raise DataFileError("no data rows", path=path_text)
    line_numbers = np.array(row_lines, dtype=int)
    warnings: list[str] = []
    clock = np.empty(len(rows))
    for i, cells in enumerate(rows):
        text = f"{cells[0]} {cells[1]}"
        try:
            when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")  # noqa: DTZ007
        except ValueError:
            try:
                when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
            except ValueError:
                raise DataFileError(
                    f"DATE TIME {shown(text)} is not YYYY-MM-DD HH:MM:SS(.fff)",
                    path=path_text,
                    line=row_lines[i],
                ) from None
        clock[i] = datetime_to_clock(when)

    def numeric(name: str) -> np.ndarray:
        values = np.array([_number(cells[index[name]]) for cells in rows], dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            warnings.append(
                f"column {name}: {bad.size} value(s) not a number, first at line "
                f"{line_numbers[bad[0]]}: missing samples"
            )
        return values

    offset = None
    if "EPOCH_TIME" in index:
        offset = utc_offset(clock, numeric("EPOCH_TIME"))
    columns: dict[str, np.ndarray] = {}
    gases: list[StreamGas] = []
    if "H2O" in index:
        columns["h2o_mmol_mol"] = numeric("H2O") * 10.0  # percent -> mmol mol-1
    for gas, (symbol, unit, factor) in _GASES.items():
        mf = "umol_mol" if unit == "umol/mol" else "nmol_mol"
        if f"{symbol}_dry" in index:
            column = f"{gas}_dry_{mf}"
            columns[column] = numeric(f"{symbol}_dry") * factor
            gases.append(StreamGas(gas, column, unit, dry=True))
        elif symbol in index and "h2o_mmol_mol" in columns:
            column = f"{gas}_{mf}"
            columns[column] = numeric(symbol) * factor
            gases.append(StreamGas(gas, column, unit, dry=False))
    if not gases:
        raise DataFileError(
            "no gas column (CO2_dry, CH4_dry, N2O_dry, or a wet one with H2O)",
            path=path_text,
            line=1,
        )
    if "ALARM_STATUS" in index:
        alarms = np.flatnonzero(numeric("ALARM_STATUS") != 0)
        if alarms.size:
            warnings.append(
                f"{alarms.size} row(s) with ALARM_STATUS other than 0, first at line "
                f"{line_numbers[alarms[0]]}"
            )
    species = "+".join(g.gas.upper() for g in gases)
    return Stream(
        path=path_text,
        instrument=f"Picarro ({species})",
        serial=None,
        clock_s=clock,
        lines=line_numbers,
        columns=columns,
        gases=tuple(gases),
        utc_offset_s=offset,
        time_zone=fixed_zone(offset),
        warnings=tuple(warnings),
    )
