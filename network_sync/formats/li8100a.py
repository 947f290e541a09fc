"""Reader for LI-COR LI-8100A / LI-8150 ``.81x`` files.

An ``.81x`` file is a sequence of observation blocks. Each block has

* a header of ``Key:<TAB>value`` lines starting with ``LI-8100:`` (port, label, volumes,
  area, observation length, ...);
* a table whose first line starts with ``Type<TAB>Etime`` and names the columns (the column
  set varies between files and between observations of one file);
* data rows: Type 1 raw 1 Hz samples (Etime -1 while the lid closes, 0 when closed), Type 2
  initial values, Type 3 means, Type 4 ranges, and Type -1 annotations written by the
  instrument ("The measurement was restarted.");
* a footer of ``Key:<TAB>value`` lines with the instrument's results (``CrvFitStatus``,
  ``Exp_Flux``, ``Lin_Flux``, ``Dead Band``, ...), absent when the instrument was told
  not to compute fluxes.

Rows are keyed by header name. Garbled rows (not a number where one is needed, a stray
fragment) are skipped and listed as warnings with their line numbers; a row shorter than
the header is padded when the missing cells are optional (the ``Annotation`` column). An
observation whose closed-chamber trace stops short of its observation length, or has a gap,
is refused with :class:`~chamberd.controller.errors.TruncatedObservationError` naming the
file and observation; the other observations of the file are still read. So is one whose
``Observation Length``, ``Vtotal`` or ``Area`` is missing or not a positive number (the
message names the line); an unreadable footer ``Dead Band`` is only a warning. Line numbers
count CR/LF breaks only, as an editor does, whatever control characters line noise holds.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import (
    MAX_81X_BYTES,
    check_complete,
    count_or_none,
    decode_text,
    finite_or_none,
    read_bytes,
    split_lines,
    strip_bom,
)
from .records import Annotation, ChamberObservation, GasChannel, InstrumentFlux, ReadResult

__all__ = ["read_81x", "sniff_81x"]

# .81x column -> chamberd column
_COLUMNS = {
    "Etime": "elapsed_s",
    "CO2": "co2_umol_mol",
    "Cdry": "co2_dry_umol_mol",
    "H2O": "h2o_mmol_mol",
    "Pressure": "pressure_kpa",
    "Tcham": "temperature_degc",
}
_REQUIRED = ("Etime", "CO2", "H2O", "Pressure")
_ROW_KINDS = {2: "initial", 3: "mean", 4: "range"}
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_#@/ .()-]*$")


def sniff_81x(head: bytes) -> bool:
    """True when the first bytes of a file look like an .81x file."""
    return strip_bom(head).lstrip().startswith(b"LI-8100:")


def _duration_s(text: str) -> float:
    """``mm:ss`` (or ``hh:mm:ss``, or plain seconds) -> seconds."""
    parts = text.strip().split(":")
    total = 0.0
    for part in parts:
        total = total * 60.0 + float(part)
    return total


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@dataclass
class _Block:
    first_line: int
    header: dict[str, str] = field(default_factory=dict)
    header_lines: dict[str, int] = field(default_factory=dict)
    columns: list[str] | None = None
    column_line: int | None = None
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    summary: list[tuple[int, int, list[str]]] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    footer: dict[str, str] = field(default_factory=dict)
    footer_lines: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _split_blocks(lines: list[str], path: str) -> Iterator[_Block]:
    block: _Block | None = None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("LI-8100:"):
            if block is not None:
                yield block
            block = _Block(first_line=lineno)
            continue
        if block is None:
            raise DataFileError(
                "not an LI-8100A .81x file: expected a line starting with 'LI-8100:'",
                path=path,
                line=lineno,
            )
        if line.startswith("Type\t"):
            if block.columns is not None:
                block.warnings.append(f"line {lineno}: second column header ignored")
                continue
            block.columns = [c.strip() for c in line.split("\t")]
            block.column_line = lineno
            continue
        cells = line.split("\t")
        key, sep, value = line.partition(":")
        is_key_value = bool(sep) and bool(_KEY.match(key)) and (value == "" or value[0] == "\t")
        if block.columns is None:
            if is_key_value:
                block.header[key.strip()] = value.strip()
                block.header_lines[key.strip()] = lineno
            else:
                block.warnings.append(f"line {lineno}: unreadable header line skipped")
            continue
        kind = cells[0].strip()
        if kind in ("1", "2", "3", "4"):
            if block.footer:
                block.warnings.append(f"line {lineno}: data row after the footer skipped")
            elif kind == "1":
                block.rows.append((lineno, cells))
            else:
                block.summary.append((lineno, int(kind), cells))
            continue
        if kind == "-1":
            text = "\t".join(cells[3:]).strip().strip('"').strip()
            stamp = cells[2].strip() if len(cells) > 2 else ""
            block.annotations.append(Annotation(line=lineno, timestamp=stamp, text=text))
            continue
        if is_key_value:
            block.footer[key.strip()] = value.strip()
            block.footer_lines[key.strip()] = lineno
            continue
        block.warnings.append(f"line {lineno}: garbled line skipped")
    if block is not None:
        yield block


def _opt_float(footer: dict[str, str], key: str) -> float | None:
    """A footer or header value as a finite number; None where absent, garbled or not finite
    (``Exp_Flux: nan``, ``Exp_Iter: inf``)."""
    return finite_or_none(footer.get(key))


def _opt_int(footer: dict[str, str], key: str) -> int | None:
    return count_or_none(footer.get(key))


def _reference(footer: dict[str, str]) -> InstrumentFlux:
    status = footer.get("CrvFitStatus", "").strip().lower()
    model = {"exp": "exponential", "lin": "linear"}.get(status)
    lin_flux = _opt_float(footer, "Lin_Flux")
    exp_flux = _opt_float(footer, "Exp_Flux")
    flux = exp_flux if model == "exponential" else lin_flux if model == "linear" else None
    slope = _opt_float(footer, "Exp_dCdry/dt" if model == "exponential" else "Lin_dCdry/dt")
    return InstrumentFlux(
        gas="co2",
        flux=flux,
        model=model,
        lin_flux=lin_flux,
        lin_r2=_opt_float(footer, "Lin_R2"),
        exp_flux=exp_flux,
        exp_r2=_opt_float(footer, "Exp_R2"),
        exp_a_per_s=_opt_float(footer, "Exp_a"),
        exp_cx=_opt_float(footer, "Exp_Cx"),
        exp_c0=_opt_float(footer, "Exp_Co"),
        exp_t0_s=_opt_float(footer, "Exp_t0"),
        iterations=_opt_int(footer, "Exp_Iter"),
        max_iterations=_opt_int(footer, "Exp_MaxIter"),
        n_points=_opt_int(footer, "Crv_#Smp"),
        slope_per_s=slope,
        raw=dict(footer),
    )


def _header_float(block: _Block, key: str, path: str, index: int) -> float:
    """A header value that must be a positive number [its unit]; DataFileError otherwise."""
    text = block.header.get(key)
    if text is None:
        raise DataFileError(
            f"header has no '{key}:' line", path=path, observation=index, line=block.first_line
        )
    line = block.header_lines.get(key)
    try:
        value = _float(text)
    except ValueError:
        raise DataFileError(
            f"header '{key}:' is not a number: {text!r}", path=path, observation=index, line=line
        ) from None
    if value <= 0:
        raise DataFileError(
            f"header '{key}:' must be > 0, got {text!r}", path=path, observation=index, line=line
        )
    return value


def _obs_length_s(block: _Block, path: str, index: int) -> float:
    """The header's ``Observation Length`` [s]; DataFileError when missing or unreadable."""
    text = block.header.get("Observation Length", "")
    line = block.header_lines.get("Observation Length", block.first_line)
    try:
        value = _duration_s(text) if text else 0.0
    except ValueError:
        raise DataFileError(
            f"header 'Observation Length:' is not a duration (mm:ss): {text!r}",
            path=path,
            observation=index,
            line=line,
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise DataFileError(
            "header 'Observation Length:' is missing or zero",
            path=path,
            observation=index,
            line=line,
        )
    return value


def _dead_band_s(block: _Block, warnings: list[str]) -> float | None:
    """The footer's ``Dead Band`` [s], None (with a warning if present) when unreadable."""
    text = block.footer.get("Dead Band")
    if text is None:
        return None
    try:
        value = _duration_s(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        line = block.footer_lines.get("Dead Band")
        warnings.append(f"line {line}: footer 'Dead Band:' unreadable ({text!r}), ignored")
        return None
    return value


def _build(block: _Block, path: str, index: int) -> ChamberObservation:
    name = os.path.basename(path)
    if block.columns is None:
        raise DataFileError(
            "observation has no data table (no 'Type<TAB>Etime...' line)",
            path=path,
            observation=index,
            line=block.first_line,
        )
    columns = block.columns
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise DataFileError(
            f"data table has no column {', '.join(missing)}",
            path=path,
            observation=index,
            line=block.column_line,
        )
    temperature_column = block.header.get("TSource", "Tcham").strip() or "Tcham"
    if temperature_column not in columns:
        temperature_column = "Tcham"
    if temperature_column not in columns:
        raise DataFileError(
            "data table has no chamber temperature column (TSource/Tcham)",
            path=path,
            observation=index,
            line=block.column_line,
        )
    wanted = dict(_COLUMNS)
    wanted.pop("Tcham")
    wanted[temperature_column] = "temperature_degc"
    position = {c: i for i, c in enumerate(columns)}
    required_positions = [position[c] for c in wanted if c in position]
    need = max(required_positions) + 1

    warnings = list(block.warnings)
    values: dict[str, list[float]] = {v: [] for k, v in wanted.items() if k in position}
    stamps: list[str] = []
    for lineno, cells in block.rows:
        if len(cells) < need:
            warnings.append(
                f"line {lineno}: short row ({len(cells)} of {len(columns)} cells) skipped"
            )
            continue
        try:
            parsed = {v: _float(cells[position[k]]) for k, v in wanted.items() if k in position}
        except ValueError:
            warnings.append(f"line {lineno}: garbled row skipped")
            continue
        for key, value in parsed.items():
            values[key].append(value)
        date_at = position.get("Date", len(cells))
        stamps.append(cells[date_at].strip() if date_at < len(cells) else "")

    arrays = {key: np.asarray(vals, dtype=float) for key, vals in values.items()}
    elapsed = arrays.pop("elapsed_s")
    obs_length = _obs_length_s(block, path, index)
    volume = _header_float(block, "Vtotal", path, index)
    area = _header_float(block, "Area", path, index)

    notes = "; ".join(f"instrument note at line {a.line}: {a.text}" for a in block.annotations)
    check_complete(elapsed, obs_length, path=path, index=index, line=block.first_line, notes=notes)

    def _stamp(i: int) -> dt.datetime | None:
        try:
            return dt.datetime.strptime(stamps[i], _DATE_FORMAT)  # noqa: DTZ007 (instrument clock)
        except (ValueError, IndexError):
            return None

    closed_index = int(np.argmax(elapsed >= 0))
    instrument_rows: dict[str, dict[str, float]] = {}
    for _lineno, kind, cells in block.summary:
        row: dict[str, float] = {}
        for k, v in wanted.items():
            if k in position and position[k] < len(cells):
                value = finite_or_none(cells[position[k]])
                if value is not None:
                    row[v] = value
        instrument_rows[_ROW_KINDS[kind]] = row

    footer = block.footer
    dead_band = _dead_band_s(block, warnings)
    port_text = block.header.get("Port#", "").strip()
    label = block.header.get("Label", "").strip()
    gas = GasChannel(
        gas="co2",
        column="co2_umol_mol",
        unit="umol/mol",
        dry=False,
        dead_band_s=dead_band,
        end_s=obs_length,
        initial_end_exclusive=True,  # the firmware's first ten samples, 0 <= Etime < 10
    )
    has_results = any(key in footer for key in ("CrvFitStatus", "Lin_Flux", "Exp_Flux"))
    reference = {"co2": _reference(footer)} if has_results else {}
    for note in block.annotations:
        warnings.append(f"line {note.line}: instrument note: {note.text}")
    return ChamberObservation(
        source_file=path,
        index=index,
        instrument="LI-8100A",
        port=count_or_none(port_text) if port_text.isdigit() else None,
        label=label,
        start_time=_stamp(0),
        closed_time=_stamp(closed_index),
        time_zone=None,
        volume_cm3=volume,
        area_cm2=area,
        offset_cm=_opt_float(block.header, "Offset"),
        obs_length_s=obs_length,
        elapsed_s=elapsed,
        columns=arrays,
        gases=(gas,),
        reference=reference,
        has_footer=has_results,
        header={**block.header, "file": name},
        annotations=tuple(block.annotations),
        instrument_rows=instrument_rows,
        warnings=tuple(warnings),
        first_line=block.first_line,
    )


def read_81x(path: str | os.PathLike[str]) -> ReadResult:
    """Read every observation of an LI-8100A ``.81x`` file.

    Parameters
    ----------
    path : path-like
        The ``.81x`` file.

    Returns
    -------
    ReadResult
        ``observations`` in file order (``index`` 1-based, counting refused ones too) and
        ``rejected``: a :class:`~chamberd.controller.errors.DataFileError` per observation
        that could not be used (truncated, no data table, a required header value missing
        or not a positive number).

    Raises
    ------
    DataFileError
        When the file cannot be opened, is over 256 MiB, is empty, or is not an ``.81x``
        file at all (the message names the first line that is not).
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_81X_BYTES, what="an .81x file")
    lines = split_lines(decode_text(raw))
    observations: list[ChamberObservation] = []
    rejected: list[Exception] = []
    for index, block in enumerate(_split_blocks(lines, path_text), start=1):
        try:
            observations.append(_build(block, path_text, index))
        except DataFileError as exc:
            rejected.append(exc)
    if not observations and not rejected:
        raise DataFileError("empty file: no observation found", path=path_text)
    return ReadResult(path=path_text, observations=tuple(observations), rejected=tuple(rejected))
