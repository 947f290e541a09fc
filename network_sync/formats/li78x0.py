"""Reader for LI-COR LI-7810 (CH4, CO2, H2O) and LI-7820 (N2O, H2O) ``.data`` files.

Layout (tab-separated text)::

    Model:<TAB>LI-7810
    SN:<TAB>TG10-01087
    Software Version:<TAB>2.1.41
    Timestamp:<TAB>2022-10-27 07:25:29
    Timezone:<TAB>EST
    DATAH  SECONDS     NANOSECONDS  NDX   DIAG  REMARK  DATE        TIME      H2O  CO2  CH4 ...
    DATAU  secs        nsecs        index diag          date        time      ppm  ppm  ppb ...
    DATA   1666884942  313442945    4509  0     ""      2022-10-27  10:35:42  12500.3 ...

(cells separated by tabs).

``SECONDS`` + ``NANOSECONDS`` are UTC (POSIX time); ``DATE`` + ``TIME`` the instrument's
wall clock, whose offset from UTC gives the stream's zone. ``REMARK`` holds the operator's
remarks (kept as annotations). Columns are keyed by their ``DATAH`` name and converted by
their ``DATAU`` unit: CO2 ppm -> umol mol-1, CH4 and N2O ppb (or ppm) -> nmol mol-1, H2O
ppm -> mmol mol-1. CO2, CH4 and N2O are dry mole fractions (the analysers correct for
dilution and band broadening by their own H2O). Rows with ``DIAG`` other than 0 are left
out and counted in the warnings. The cavity pressure and temperature are the analyser's,
not the chamber's: the field sheet gives those.
"""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import MAX_81X_BYTES, decode_text, read_bytes, shown, split_lines, strip_bom
from .records import Annotation
from .streams import Stream, StreamGas, datetime_to_clock, fixed_zone, utc_offset

__all__ = ["read_li78x0_data", "sniff_li78x0"]

#: DATAH name -> (chamberd column, gas or None, {DATAU unit: factor to chamberd unit})
_COLUMNS = {
    "CO2": ("co2_dry_umol_mol", "co2", {"ppm": 1.0, "ppb": 1e-3}),
    "CH4": ("ch4_dry_nmol_mol", "ch4", {"ppb": 1.0, "ppm": 1e3}),
    "N2O": ("n2o_dry_nmol_mol", "n2o", {"ppb": 1.0, "ppm": 1e3}),
    "H2O": ("h2o_mmol_mol", None, {"ppm": 1e-3, "ppt": 1.0, "mmol/mol": 1.0}),
}
_UNITS = {"co2": "umol/mol", "ch4": "nmol/mol", "n2o": "nmol/mol"}
_REQUIRED = ("SECONDS", "NANOSECONDS")


def sniff_li78x0(head: bytes) -> bool:
    """True when the first bytes look like an LI-7810/7820 ``.data`` file."""
    text = strip_bom(head)
    return (
        b"\nDATAH\t" in text
        or text.startswith(b"DATAH\t")
        or (text.startswith(b"Model:\tLI-78") and b"DATAH" in text)
    )


def _number(cell: str) -> float:
    try:
        value = float(cell)
    except (ValueError, OverflowError):
        return math.nan
    # beyond any time stamp or mole fraction: a damaged cell, missing (and no overflow later)
    return value if math.isfinite(value) and abs(value) < 1e12 else math.nan


def read_li78x0_data(path: str | os.PathLike[str]) -> Stream:
    """Read an LI-7810 or LI-7820 ``.data`` file.

    Raises
    ------
    DataFileError
        Naming the file and line: unreadable, over 256 MiB, no ``DATAH``/``DATAU`` lines,
        a second ``DATAH`` with other columns, a row with the wrong number of cells, no
        ``SECONDS``/``NANOSECONDS`` or no gas column, a unit it does not know, no valid row.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_81X_BYTES, what="an LI-78x0 .data file")
    lines = split_lines(decode_text(raw))
    header: dict[str, str] = {}
    names: list[str] | None = None
    units: list[str] | None = None
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        tag = cells[0].strip()
        if tag == "DATAH":
            if names is not None and [c.strip() for c in cells[1:]] != names:
                raise DataFileError(
                    "a second DATAH line with other columns (files of two configurations joined?)",
                    path=path_text,
                    line=number,
                )
            names = [c.strip() for c in cells[1:]]
        elif tag == "DATAU":
            units = [c.strip() for c in cells[1:]]
        elif tag == "DATA":
            if names is None:
                raise DataFileError("DATA row before the DATAH line", path=path_text, line=number)
            if len(cells) - 1 != len(names):
                raise DataFileError(
                    f"row has {len(cells) - 1} cells, DATAH names {len(names)}",
                    path=path_text,
                    line=number,
                )
            rows.append(cells[1:])
            row_lines.append(number)
        elif names is None and ":" in line:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        else:
            raise DataFileError(
                f"not an LI-78x0 .data line: {shown(line)}", path=path_text, line=number
            )
    if names is None:
        raise DataFileError("no DATAH line: not an LI-78x0 .data file", path=path_text)
    if units is None or len(units) != len(names):
        raise DataFileError(
            "no DATAU line, or its units do not match the DATAH columns", path=path_text
        )
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise DataFileError(f"DATAH has no {', '.join(missing)} column", path=path_text)
    if not rows:
        raise DataFileError("no DATA rows", path=path_text)
    index = {name: i for i, name in enumerate(names)}
    table = list(zip(*rows, strict=True))
    line_numbers = np.array(row_lines, dtype=int)
    warnings: list[str] = []

    def numeric(name: str) -> np.ndarray:
        values = np.array([_number(c) for c in table[index[name]]], dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            warnings.append(
                f"column {name}: {bad.size} value(s) not a number, first at line "
                f"{line_numbers[bad[0]]} ({shown(table[index[name]][bad[0]])}): missing samples"
            )
        return values

    utc = numeric("SECONDS") + numeric("NANOSECONDS") * 1e-9
    columns: dict[str, np.ndarray] = {}
    gases: list[StreamGas] = []
    for name, (column, gas, factors) in _COLUMNS.items():
        if name not in index:
            continue
        unit = units[index[name]]
        if unit not in factors:
            raise DataFileError(
                f"column {name}: unit {shown(unit)} is not one of {', '.join(factors)}",
                path=path_text,
                line=row_lines[0] - 1,
            )
        columns[column] = numeric(name) * factors[unit]
        if gas is not None:
            gases.append(StreamGas(gas, column, _UNITS[gas], dry=True))
    if not gases:
        raise DataFileError("no CO2, CH4 or N2O column in DATAH", path=path_text)

    wall = np.full(utc.size, math.nan)
    if "DATE" in index and "TIME" in index:
        for i, (day, clock) in enumerate(
            zip(table[index["DATE"]], table[index["TIME"]], strict=True)
        ):
            try:
                when = dt.datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
            except ValueError:
                continue
            wall[i] = datetime_to_clock(when)
    offset = utc_offset(wall, np.floor(utc))
    if offset is None:
        warnings.append("no readable DATE/TIME: times are UTC (SECONDS)")
    clock = utc + (offset or 0.0)

    keep = np.isfinite(clock)
    if "DIAG" in index:
        diag = numeric("DIAG")
        flagged = np.flatnonzero(diag != 0)
        if flagged.size:
            warnings.append(
                f"{flagged.size} row(s) with DIAG other than 0 left out, first at line "
                f"{line_numbers[flagged[0]]}"
            )
        keep &= diag == 0
    if not keep.any():
        raise DataFileError("no valid rows (time stamps, DIAG 0)", path=path_text)
    annotations = []
    if "REMARK" in index:
        for i, text in enumerate(table[index["REMARK"]]):
            text = text.strip().strip('"').strip()
            if text:
                annotations.append(Annotation(int(line_numbers[i]), f"{clock[i]:.3f}", text))
    zone = "UTC" if offset is None else fixed_zone(offset)
    model = header.get("Model", "LI-78x0")
    return Stream(
        path=path_text,
        instrument=model if model.startswith("LI-78") else "LI-78x0",
        serial=header.get("SN"),
        clock_s=clock[keep],
        lines=line_numbers[keep],
        columns={k: v[keep] for k, v in columns.items()},
        gases=tuple(gases),
        utc_offset_s=offset,
        time_zone=zone,
        header=header,
        annotations=tuple(annotations),
        warnings=tuple(warnings),
    )
