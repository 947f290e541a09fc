"""Continuous analyser streams: what the LI-7810/7820, LGR/ABB and Picarro readers yield.

A portable or manual chamber campaign logs the analyser's own file, one row per second or
so for hours, with no closures marked in it. A reader of such a file returns a
:class:`Stream`; the closures are cut from it by a field sheet
(:mod:`chamberd.network_sync.formats.sheet`).

Times: ``clock_s`` is the analyser's wall clock (the time printed in its rows and on its
display, which is what a field sheet records) as seconds since 1970-01-01 of that wall
clock, with no zone. Where the file also carries UTC (LI-78x0 ``SECONDS``, Picarro
``EPOCH_TIME``) the offset between the two is ``utc_offset_s`` and the stream's zone is the
fixed-offset IANA name ``Etc/GMT-N`` (whole hours) so that imports place the closures in
UTC without ``--time-zone``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .records import Annotation

__all__ = ["EPOCH", "Stream", "StreamGas", "clock_to_datetime", "datetime_to_clock", "fixed_zone"]

EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - the analyser's wall clock has no zone


@dataclass(frozen=True)
class StreamGas:
    """A gas column of a stream: chamberd column name, unit and whether it is dry."""

    gas: str  # "co2" | "ch4" | "n2o"
    column: str
    unit: str  # "umol/mol" | "nmol/mol"
    dry: bool


@dataclass(frozen=True)
class Stream:
    """One analyser file read whole: rows in file order, columns in chamberd units."""

    path: str
    instrument: str  # "LI-7810" | "LI-7820" | "LGR UGGA" | "Picarro G2508" ...
    serial: str | None
    clock_s: np.ndarray  # analyser wall clock [s since 1970-01-01, no zone]
    lines: np.ndarray  # 1-based line of each row in the file
    columns: Mapping[str, np.ndarray]
    gases: tuple[StreamGas, ...]
    utc_offset_s: float | None = None  # wall clock minus UTC, where the file says
    time_zone: str | None = None
    header: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    warnings: tuple[str, ...] = ()


def clock_to_datetime(clock_s: float) -> dt.datetime:
    """A wall-clock second count as a naive datetime."""
    return EPOCH + dt.timedelta(seconds=float(clock_s))


def datetime_to_clock(when: dt.datetime) -> float:
    """A naive wall-clock datetime as seconds since 1970-01-01 of that clock."""
    return (when - EPOCH).total_seconds()


def fixed_zone(offset_s: float | None) -> str | None:
    """The IANA fixed-offset zone for a whole-hour UTC offset (POSIX signs: ``Etc/GMT+5``
    is five hours *behind* UTC), None otherwise."""
    if offset_s is None or not math.isfinite(offset_s):
        return None
    hours = offset_s / 3600.0
    if hours != round(hours) or abs(hours) > 14:
        return None
    hours = round(hours)
    if hours == 0:
        return "UTC"
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def utc_offset(wall_s: np.ndarray, utc_s: np.ndarray) -> float | None:
    """Wall clock minus UTC [s], rounded to a quarter hour, from rows that carry both."""
    ok = np.isfinite(wall_s) & np.isfinite(utc_s)
    if not ok.any():
        return None
    median = float(np.median(wall_s[ok] - utc_s[ok]))
    return round(median / 900.0) * 900.0
