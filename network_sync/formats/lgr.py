"""Reader for LGR/ABB analyser text files (GGA, UGGA, micro-GGA, N2O/CO).

Layout (comma-separated, cells padded with spaces)::

    SN:3K4300... BD:May 20 2019 VC:1ab9a44 MD5:...          <- line 1: identification
    SysTime, Time, [CH4]_ppm, [CH4]_ppm_sd, [CO2]_ppm, ..., [CH4]d_ppm, ..., GasP_torr,
        GasT_C, AmbT_C, RD0_us, ..., Fit_Flag, MIU_VALVE, MIU_DESC    <- line 2: columns
    28/09/2022 12:05:00.068, 28/09/2022 12:04:59.861, 9.99831e-1, ...
    ...
    -----BEGIN PGP MESSAGE-----                                <- optional signed footer

``Time`` is the analyser's clock (``SysTime``, where present, the logging computer's).
Dates are day/month/year or month/year/day by the analyser's setting: the order is taken
from the file (a first field above 12 is a day); where every date in the file reads both
ways, month/day/year (the factory setting) is assumed and a warning says so. Gas columns
(``[CH4]_ppm`` wet, ``[CH4]d_ppm`` or ``[CH4d]_ppm`` dry; likewise CO2, N2O; ``[H2O]_ppm``)
are in ppm: chamberd reads the dry column of each gas where there is one, else the wet
column with H2O (water-corrected when fitted). ``Fit_Flag`` 3 marks a valid spectral fit;
rows with another flag are left out and counted in the warnings. Cell pressure and
temperature are the analyser's; the field sheet gives the chamber's.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import MAX_81X_BYTES, decode_text, read_bytes, shown, split_lines, strip_bom
from .streams import Stream, StreamGas, datetime_to_clock

__all__ = ["VALID_FIT_FLAG", "read_lgr_txt", "sniff_lgr"]

#: ``Fit_Flag`` of a valid record.
VALID_FIT_FLAG = 3

_GASES = {
    "co2": ("CO2", "umol/mol", 1.0),
    "ch4": ("CH4", "nmol/mol", 1e3),
    "n2o": ("N2O", "nmol/mol", 1e3),
}
_TIME = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)\s*")


def sniff_lgr(head: bytes) -> bool:
    """True when the first bytes look like an LGR/ABB text file."""
    lines = strip_bom(head).split(b"\n", 3)
    return len(lines) >= 2 and b"Time" in lines[1] and b"_ppm" in lines[1] and b"," in lines[1]


def _number(cell: str) -> float:
    try:
        value = float(cell)
    except (ValueError, OverflowError):
        return math.nan
    # beyond any time stamp or mole fraction: a damaged cell, missing (and no overflow later)
    return value if math.isfinite(value) and abs(value) < 1e12 else math.nan


def read_lgr_txt(path: str | os.PathLike[str]) -> Stream:
    """Read an LGR/ABB analyser text file.

    Raises
    ------
    DataFileError
        Naming the file and line: unreadable, over 256 MiB, no column line, no ``Time`` or
        no gas column, a row with the wrong number of cells or an unreadable time, dates
        that read neither day-first nor month-first, no row with a valid ``Fit_Flag``.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_81X_BYTES, what="an LGR text file")
    lines = split_lines(decode_text(raw))
    if len(lines) < 3:
        raise DataFileError("fewer than 3 lines: not an LGR text file", path=path_text)
    names = [c.strip() for c in lines[1].split(",")]
    if "Time" not in names:
        raise DataFileError("no Time column in the column line", path=path_text, line=2)
    index = {name: i for i, name in enumerate(names)}
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for number, line in enumerate(lines[2:], start=3):
        if line.startswith("-----BEGIN PGP"):
            break
        if not line.strip():
            continue
        cells = line.split(",")
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
    parts = []
    for cells, number in zip(rows, row_lines, strict=True):
        match = _TIME.fullmatch(cells[index["Time"]])
        if match is None:
            raise DataFileError(
                f"Time {shown(cells[index['Time']])} is not dd/mm/yyyy HH:MM:SS(.fff) or "
                "mm/dd/yyyy HH:MM:SS(.fff)",
                path=path_text,
                line=number,
            )
        parts.append(match.groups())
    first = [int(p[0]) for p in parts]
    second = [int(p[1]) for p in parts]
    day_first = max(first) > 12
    month_first = max(second) > 12
    if day_first and month_first:
        raise DataFileError(
            "dates read neither day/month/year nor month/day/year (both fields exceed 12)",
            path=path_text,
        )
    if not day_first and not month_first:
        warnings.append("every date reads day-first and month-first: month/day/year assumed")
    clock = np.empty(len(parts))
    for i, (a, b, year, hour, minute, second_text) in enumerate(parts):
        day, month = (int(a), int(b)) if day_first else (int(b), int(a))
        try:
            when = dt.datetime(int(year), month, day, int(hour), int(minute))  # noqa: DTZ001
        except ValueError as exc:
            raise DataFileError(
                f"Time {shown(rows[i][index['Time']])}: {exc}", path=path_text, line=row_lines[i]
            ) from None
        clock[i] = datetime_to_clock(when) + float(second_text)

    def numeric(name: str) -> np.ndarray:
        values = np.array([_number(cells[index[name]]) for cells in rows], dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            warnings.append(
                f"column {name}: {bad.size} value(s) not a number, first at line "
                f"{line_numbers[bad[0]]}: missing samples"
            )
        return values

    columns: dict[str, np.ndarray] = {}
    gases: list[StreamGas] = []
    if "[H2O]_ppm" in index:
        columns["h2o_mmol_mol"] = numeric("[H2O]_ppm") * 1e-3
    for gas, (symbol, unit, factor) in _GASES.items():
        dry = next((n for n in (f"[{symbol}]d_ppm", f"[{symbol}d]_ppm") if n in index), None)
        wet = f"[{symbol}]_ppm" if f"[{symbol}]_ppm" in index else None
        mf = "umol_mol" if unit == "umol/mol" else "nmol_mol"
        if dry is not None:
            column = f"{gas}_dry_{mf}"
            columns[column] = numeric(dry) * factor
            gases.append(StreamGas(gas, column, unit, dry=True))
        elif wet is not None and "h2o_mmol_mol" in columns:
            column = f"{gas}_{mf}"
            columns[column] = numeric(wet) * factor
            gases.append(StreamGas(gas, column, unit, dry=False))
    if not gases:
        raise DataFileError(
            "no gas column ([CO2]d_ppm, [CH4]d_ppm, [N2O]d_ppm, or a wet one with [H2O]_ppm)",
            path=path_text,
            line=2,
        )
    keep = np.ones(len(rows), dtype=bool)
    if "Fit_Flag" in index:
        flag = numeric("Fit_Flag")
        bad = np.flatnonzero(flag != VALID_FIT_FLAG)
        if bad.size:
            warnings.append(
                f"{bad.size} row(s) with Fit_Flag other than {VALID_FIT_FLAG} left out, first "
                f"at line {line_numbers[bad[0]]}"
            )
        keep &= flag == VALID_FIT_FLAG
    if not keep.any():
        raise DataFileError(f"no row with Fit_Flag {VALID_FIT_FLAG} (valid)", path=path_text)
    ident = lines[0]
    serial = re.search(r"SN:\s*(\S+)", ident)
    model = "LGR N2O/CO" if any(g.gas == "n2o" for g in gases) else "LGR GGA"
    return Stream(
        path=path_text,
        instrument=model,
        serial=serial.group(1) if serial else None,
        clock_s=clock[keep],
        lines=line_numbers[keep],
        columns={k: v[keep] for k, v in columns.items()},
        gases=tuple(gases),
        header={"identification": ident.strip()},
        warnings=tuple(warnings),
    )
