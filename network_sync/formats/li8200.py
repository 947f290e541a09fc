"""Reader for LI-COR LI-8200 Smart Chamber ``.json`` files.

Layout: ``datasets[] -> {label: {reps: {REP_n: {header, labels, data, summary, footer}}}}``.
``data`` holds equal-length columns (``timestamp`` in s since closure, ``chamber_p`` kPa,
``chamber_t`` degC, ``h2o`` mmol mol-1, and dry mole fractions ``co2`` umol mol-1,
``ch4`` and ``n2o`` nmol mol-1); ``labels`` names the columns the firmware used for time,
pressure, temperature and water. ``footer`` carries P_o, T_o, W_o and one entry per gas in
``fluxes`` (F_o, slope, a, C_x, C_o, t_o, r2, iter, n).

Observations are numbered in file order: datasets, then labels, then reps. The firmware
keeps samples with timestamp > DeadBand; its exponential falls back to the OLS slope with
C_x pinned at 1e6 (rising) or 0 (falling), which this reader reports as model "linear".

The header states no observation length; a rep's ``summary`` does: per column it holds
[value at t = 0, mean, range], so a trace spanning less time than its summary's timestamp
range was cut short and is refused. Values that are not numbers become missing samples,
listed in the warnings by column and position; a dataset, label or ``reps`` that is not
an object is refused with its place in the file.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from chamberd.controller.errors import DataFileError

from ._common import (
    MAX_JSON_BYTES,
    check_complete,
    count_or_none,
    decode_text,
    load_json,
    read_bytes,
    shown,
    strip_bom,
    zone_name,
)
from .records import ChamberObservation, GasChannel, InstrumentFlux, ReadResult

__all__ = ["read_li8200_json", "sniff_li8200"]

_GASES = {
    "co2": ("co2_dry_umol_mol", "umol/mol"),
    "ch4": ("ch4_dry_nmol_mol", "nmol/mol"),
    "n2o": ("n2o_dry_nmol_mol", "nmol/mol"),
}
_FALLBACK_CX = (1e6, 0.0)


def sniff_li8200(head: bytes) -> bool:
    """True when the first bytes look like Smart Chamber JSON."""
    text = strip_bom(head).lstrip()
    return text.startswith(b"{") and b"datasets" in head


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _optional(value: Any) -> float | None:
    """A number from the footer, None where absent or not a finite number."""
    number = _number(value)
    return number if math.isfinite(number) else None


def _label(labels: Mapping[str, Any], key: str, default: str) -> str:
    """The data column the rep's ``labels`` names for ``key``; ``default`` where it names
    none (absent, empty or not a string)."""
    value = labels.get(key)
    return value if isinstance(value, str) and value.strip() else default


_PLAIN_NUMBERS = frozenset({int, float})


def _column(
    data: Mapping[str, Any],
    key: str,
    what: str,
    where: str,
    path: str,
    index: int,
    warnings: list[str],
) -> np.ndarray:
    values = data.get(key)
    if not isinstance(values, list):
        raise DataFileError(
            f"{where}: no {what} column {key!r} in data", path=path, observation=index
        )
    if set(map(type, values)) <= _PLAIN_NUMBERS:  # the usual case, at C speed
        column = np.array(values, dtype=float)
    else:  # strings, booleans, nulls, nested values: one by one
        column = np.array([_number(v) for v in values], dtype=float)
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        first = int(bad[0])
        warnings.append(
            f"{where}.data.{key}: {bad.size} value(s) not a number, first at [{first}] "
            f"({shown(values[first])}): missing samples"
        )
    return column


def _reference(entry: Mapping[str, Any]) -> InstrumentFlux | None:
    n = count_or_none(entry.get("n"))
    if not n:
        return None  # the firmware computed nothing (all-zero entry)
    cx = _number(entry.get("C_x"))
    t0 = _number(entry.get("t_o"))
    fallback = cx in _FALLBACK_CX and t0 == 0
    flux = _optional(entry.get("F_o"))
    iterations = count_or_none(entry.get("iter"))
    return InstrumentFlux(
        gas=str(entry.get("name", "")).lower(),
        flux=flux,
        model="linear" if fallback else "exponential",
        lin_flux=flux if fallback else None,
        lin_r2=None,  # in a fallback r2 belongs to the abandoned exponential, not the line
        exp_flux=None if fallback else flux,
        exp_r2=None if fallback else _optional(entry.get("r2")),
        exp_a_per_s=_optional(entry.get("a")),
        exp_cx=_optional(cx),
        exp_c0=_optional(entry.get("C_o")),
        exp_t0_s=_optional(t0),
        iterations=iterations,
        max_iterations=None,
        n_points=n,
        slope_per_s=_optional(entry.get("slope")),
        raw={k: str(v) for k, v in entry.items()},
    )


def _summary_span_s(summary: Any, time_key: str) -> float | None:
    """Time the rep's trace spans [s] by its summary ([at t = 0, mean, range]), if stated."""
    stats = summary.get(time_key) if isinstance(summary, Mapping) else None
    if not isinstance(stats, list) or len(stats) != 3:
        return None
    span = _number(stats[2])
    return span if math.isfinite(span) and span > 0 else None


def _build(rep: Any, where: str, path: str, index: int, label: str) -> ChamberObservation:
    if not isinstance(rep, Mapping):
        raise DataFileError(f"{where}: not an object", path=path, observation=index)
    header = rep.get("header")
    data = rep.get("data")
    if not isinstance(header, Mapping) or not isinstance(data, Mapping):
        raise DataFileError(f"{where}: missing 'header' or 'data'", path=path, observation=index)
    labels = rep.get("labels") if isinstance(rep.get("labels"), Mapping) else {}
    if not any(isinstance(data.get(gas), list) for gas in _GASES):
        raise DataFileError(
            f"{where}: no gas data (co2, ch4 or n2o): only the chamber's own sensors were "
            "logged, so there is no flux to fit",
            path=path,
            observation=index,
        )
    warnings: list[str] = []
    time_key = _label(labels, "etime", "timestamp")
    elapsed = _column(data, time_key, "time", where, path, index, warnings)
    cols: dict[str, np.ndarray] = {}
    for name, what, key in (
        ("pressure_kpa", "pressure", _label(labels, "pressure", "chamber_p")),
        ("temperature_degc", "temperature", _label(labels, "temperature", "chamber_t")),
        ("h2o_mmol_mol", "water vapour", _label(labels, "h2o", "h2o")),
    ):
        cols[name] = _column(data, key, what, where, path, index, warnings)
    for gas, (column, _unit) in _GASES.items():
        if isinstance(data.get(gas), list):
            cols[column] = _column(data, gas, gas, where, path, index, warnings)
    lengths = {k: v.size for k, v in cols.items()}
    if any(n != elapsed.size for n in lengths.values()):
        detail = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise DataFileError(
            f"{where}: data columns differ in length ({time_key} {elapsed.size}, {detail})",
            path=path,
            observation=index,
        )

    volume = _number(header.get(_label(labels, "volume", "TotalVolume")))
    area = _number(header.get(_label(labels, "area", "Area")))
    dead_band = _number(header.get(_label(labels, "deadband", "DeadBand")))
    if not math.isfinite(dead_band) or dead_band < 0:
        raise DataFileError(
            f"{where}.header: dead band missing or negative", path=path, observation=index
        )
    for name, value in (("volume", volume), ("area", area)):
        if not math.isfinite(value) or value <= 0:
            raise DataFileError(
                f"{where}.header: {name} missing or not positive", path=path, observation=index
            )
    finite = elapsed[np.isfinite(elapsed)]
    if finite.size == 0:
        raise DataFileError(f"{where}: no time stamps", path=path, observation=index)
    end = float(finite.max())
    span = _summary_span_s(rep.get("summary"), time_key)
    check_complete(
        elapsed,
        None if span is None else float(finite.min()) + span,
        path=path,
        index=index,
        notes="" if span is None else f"the rep's summary spans {span:g} s",
    )

    footer = rep.get("footer") if isinstance(rep.get("footer"), Mapping) else {}
    references: dict[str, InstrumentFlux] = {}
    entries = footer.get("fluxes", [])
    if not isinstance(entries, list):
        warnings.append(f"{where}.footer.fluxes: not a list, no instrument results read")
        entries = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            warnings.append(
                f"{where}.footer.fluxes: entry {shown(entry)} is not an object, skipped"
            )
            continue
        ref = _reference(entry)
        name = str(entry.get("name", "")).lower()
        if ref is None:
            warnings.append(f"{where}: the instrument reported no {name} flux (empty footer)")
        elif name in _GASES:
            references[name] = ref
    gases = tuple(
        GasChannel(
            gas=gas,
            column=column,
            unit=unit,
            dry=True,
            dead_band_s=dead_band,
            end_s=end,
            window_start_exclusive=True,
        )
        for gas, (column, unit) in _GASES.items()
        if column in cols
    )
    if not gases:
        raise DataFileError(f"{where}: no co2, ch4 or n2o column", path=path, observation=index)
    stamp = header.get("Date")
    try:
        start = dt.datetime.strptime(str(stamp), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    except ValueError:
        start = None
        warnings.append(f"{where}.header: unreadable Date {shown(stamp)}")
    declared_zone = header.get("TimeZone")
    zone = zone_name(declared_zone)
    if declared_zone and zone is None:
        warnings.append(
            f"{where}.header: TimeZone {shown(declared_zone)} is not a known IANA time zone, "
            "ignored"
        )
    offset = _number(header.get("Offset"))
    return ChamberObservation(
        source_file=path,
        index=index,
        instrument="LI-8200",
        port=None,
        label=label,
        start_time=start,
        closed_time=start,
        time_zone=zone,
        volume_cm3=volume,
        area_cm2=area,
        offset_cm=offset if math.isfinite(offset) else None,
        obs_length_s=end,
        elapsed_s=elapsed,
        columns=cols,
        gases=gases,
        reference=references,
        has_footer=bool(references),
        header={k: str(v) for k, v in header.items()},
        warnings=tuple(warnings),
    )


def read_li8200_json(path: str | os.PathLike[str]) -> ReadResult:
    """Read every rep of an LI-8200 Smart Chamber JSON file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ReadResult
        One observation per rep, numbered datasets, then labels, then reps. ``rejected``
        holds a :class:`~chamberd.controller.errors.DataFileError` per rep that cannot be
        used (no gas data, missing header value or column, cut short) and per dataset or
        label that is not an object with ``reps``.

    Raises
    ------
    DataFileError
        When the file cannot be read, is over 64 MiB, is empty, is not JSON (with the line
        of the error) or nests deeper than 32 levels, or has no ``datasets`` list or no reps
        at all.
    """
    path_text, raw = read_bytes(path, max_bytes=MAX_JSON_BYTES, what="a Smart Chamber JSON file")
    if not raw.strip():
        raise DataFileError("empty file: not a Smart Chamber JSON file", path=path_text)
    doc = load_json(decode_text(raw), path=path_text)
    datasets = doc.get("datasets") if isinstance(doc, Mapping) else None
    if not isinstance(datasets, list):
        raise DataFileError("no 'datasets' list: not a Smart Chamber file", path=path_text)
    observations: list[ChamberObservation] = []
    rejected: list[Exception] = []
    index = 0
    for d, dataset in enumerate(datasets):
        if not isinstance(dataset, Mapping):
            rejected.append(DataFileError(f"datasets[{d}]: not an object, skipped", path=path_text))
            continue
        for label, body in dataset.items():
            reps = body.get("reps") if isinstance(body, Mapping) else None
            if not isinstance(reps, Mapping):
                rejected.append(
                    DataFileError(
                        f"datasets[{d}].{label}: no 'reps' object, skipped", path=path_text
                    )
                )
                continue
            for rep_name, rep in reps.items():
                index += 1
                where = f"datasets[{d}].{label}.reps.{rep_name}"
                try:
                    observations.append(_build(rep, where, path_text, index, str(label)))
                except DataFileError as exc:
                    rejected.append(exc)
    if index == 0 and not rejected:
        raise DataFileError("no reps found in 'datasets'", path=path_text)
    return ReadResult(path=path_text, observations=tuple(observations), rejected=tuple(rejected))
