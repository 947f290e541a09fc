"""Corrections from zero/span checks: a gain and offset per analyser and gas, in time.

Pure functions over floats and arrays (no I/O, no config): the central refit
(``chamberd refit --apply-calibrations``) and the calibration demo build their
corrections here from calibration records.

Model
-----
An analyser reads ``measured = offset(t) + gain(t) * true`` (mole fractions in the gas's own
unit: umol mol-1 for CO2, mmol mol-1 for H2O, nmol mol-1 for CH4 and N2O, written ``mf``).
The correction is its inverse, ``true = (measured - offset(t)) / gain(t)``
(:func:`true_mf`), applied to the concentrations before the water correction and the fit.

What a check gives (:func:`gain_offset_from_readings`)
------------------------------------------------------
* two or more gases of different reference value: the least-squares line
  ``measured = offset + gain * reference`` through the readings;
* a zero-only check (one gas, reference 0): the offset is the reading; the gain is carried
  over from the correction in force just before the check (1 when there is none);
* a span-only check (one gas, reference > 0): the offset is carried over from the
  correction in force just before the check (0 when there is none); the gain is
  ``(measured - offset) / reference``.
  Repeated readings of one cylinder count as one gas (their mean).

In time (:func:`correction_series`)
-----------------------------------
Checks of one analyser and gas, in time order, cut time into segments:

* between two checks: gain and offset linear in time, from the state the analyser was
  left in at the first check to the state found at the second. The state left in is the
  as-found state when nothing was adjusted; after an adjustment the correction *restarts*:
  it starts from the as-left re-check readings when there are any, else from gain 1 and
  offset 0 (the adjustment set the analyser to the cylinders, by definition);
* before the first check: the first check's as-found state, held constant (the earliest
  knowledge of the analyser; an analyser whose span has drifted before anyone checked it
  is corrected by the first check that finds it). Segments of this kind are marked
  ``before_first_check``;
* after the last check: the state it was left in, held constant (``after_last_check``):
  a drift not yet observed is not extrapolated.

Each segment names the calibration(s) in force: the check that starts it and the one that
ends it (one id for the open-ended segments); :func:`calibrations_in_force` gives them for
an instant.

Why it matters for fluxes: a span (gain) error scales every concentration and so the slope
dC/dt, and the flux, 1:1; a constant offset shifts the trace and leaves the slope (nearly)
unchanged: it only enters through the water correction's dilution term and the
exponential's curvature, both of second order (``tests/calibration/test_corrections.py``
shows both through the fitting engine).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "CheckEvent",
    "CorrectionSeries",
    "GainOffset",
    "Reading",
    "Segment",
    "calibrations_in_force",
    "check_events_from_record",
    "correct_mf",
    "correction_series",
    "correction_series_by_key",
    "gain_offset_at",
    "gain_offset_from_readings",
    "iso_to_unix_s",
    "true_mf",
]

#: a reference at or below this (in the gas's unit) is a zero gas
ZERO_REFERENCE_MF = 1e-9
IDENTITY_GAIN = 1.0
IDENTITY_OFFSET_MF = 0.0


@dataclass(frozen=True)
class Reading:
    """One gas of a check: the cylinder's certified value and what the analyser read."""

    reference_mf: float
    measured_mf: float
    cylinder_id: str | None = None


@dataclass(frozen=True)
class GainOffset:
    """``measured = offset_mf + gain * true``."""

    gain: float
    offset_mf: float


@dataclass(frozen=True)
class CheckEvent:
    """One zero/span check of one analyser and gas (a calibration record's readings).

    ``as_found``: the readings before any adjustment; ``adjusted``: whether the analyser was
    then adjusted; ``as_left``: the re-check readings after the adjustment (may be empty).
    """

    calibration_id: str
    analyser: str
    gas: str
    at_unix_s: float
    as_found: tuple[Reading, ...]
    adjusted: bool = False
    as_left: tuple[Reading, ...] = ()
    serial: str | None = None


@dataclass(frozen=True)
class Segment:
    """Gain and offset linear in time from ``start_unix_s`` to ``end_unix_s`` (either may
    be infinite: then the state is held constant)."""

    start_unix_s: float
    end_unix_s: float
    start: GainOffset
    end: GainOffset
    calibration_ids: tuple[str, ...]
    kind: str  # "before_first_check", "between_checks", "after_last_check"


@dataclass(frozen=True)
class CorrectionSeries:
    """The correction of one analyser and gas in time: contiguous segments covering all
    time, in order."""

    analyser: str
    gas: str
    segments: tuple[Segment, ...]


def iso_to_unix_s(value: str | dt.datetime) -> float:
    """Seconds since 1970 UTC of an ISO 8601 instant (naive = UTC).

    >>> iso_to_unix_s("1970-01-01T00:01:00Z")
    60.0
    """
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def gain_offset_from_readings(
    reference_mf: ArrayLike, measured_mf: ArrayLike, *, prior: GainOffset | None = None
) -> GainOffset:
    """Gain and offset from the readings of one check (see the module docstring).

    Parameters
    ----------
    reference_mf : array_like
        Certified values of the gases [gas unit].
    measured_mf : array_like
        What the analyser read of each [gas unit].
    prior : GainOffset, optional
        The correction in force just before the check: supplies the gain of a zero-only
        check and the offset of a span-only check (default gain 1, offset 0).

    Returns
    -------
    GainOffset
        ``ValueError`` for no readings, a non-finite value or a gain that is not > 0.

    Examples
    --------
    >>> gain_offset_from_readings([0.0, 400.0], [2.0, 422.0])
    GainOffset(gain=1.05, offset_mf=2.0)
    >>> gain_offset_from_readings([400.0], [420.0])
    GainOffset(gain=1.05, offset_mf=0.0)
    >>> gain_offset_from_readings([0.0], [3.0], prior=GainOffset(1.02, 1.0))
    GainOffset(gain=1.02, offset_mf=3.0)
    """
    prior = prior or GainOffset(IDENTITY_GAIN, IDENTITY_OFFSET_MF)
    ref = np.asarray(reference_mf, dtype=float).ravel()
    meas = np.asarray(measured_mf, dtype=float).ravel()
    if ref.size == 0 or ref.size != meas.size:
        raise ValueError("a check needs one measured value per reference value")
    if not (np.isfinite(ref).all() and np.isfinite(meas).all()):
        raise ValueError("a check's values must be finite numbers")
    # repeated readings of one cylinder count as one gas
    levels = np.unique(ref)
    means = np.array([meas[ref == r].mean() for r in levels])
    if levels.size >= 2:
        gain, offset = np.polyfit(levels, means, 1)
    elif abs(levels[0]) <= ZERO_REFERENCE_MF:
        gain, offset = prior.gain, means[0]
    else:
        offset = prior.offset_mf
        gain = (means[0] - offset) / levels[0]
    gain, offset = float(gain), float(offset)
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"the readings give a gain of {gain:g}: it must be > 0")
    return GainOffset(round(gain, 12), round(offset, 12))


def _state(segments: Sequence[Segment], at_unix_s: float) -> GainOffset:
    if not segments:
        return GainOffset(IDENTITY_GAIN, IDENTITY_OFFSET_MF)
    gain, offset = gain_offset_at(
        CorrectionSeries("", "", tuple(segments)), np.array([at_unix_s], dtype=float)
    )
    return GainOffset(float(gain[0]), float(offset[0]))


def correction_series(events: Iterable[CheckEvent]) -> CorrectionSeries:
    """The correction in time of one analyser and gas from its checks (any order).

    ``ValueError`` when the events are of several analysers or gases, or there are none.
    """
    ordered = sorted(events, key=lambda e: (e.at_unix_s, e.calibration_id))
    if not ordered:
        raise ValueError("no checks")
    keys = {(e.analyser, e.gas) for e in ordered}
    if len(keys) > 1:
        raise ValueError(f"checks of several analysers or gases: {sorted(keys)}")
    analyser, gas = ordered[0].analyser, ordered[0].gas
    segments: list[Segment] = []
    left: GainOffset | None = None  # the state the previous check left the analyser in
    previous: CheckEvent | None = None
    for event in ordered:
        prior = left if left is not None else GainOffset(IDENTITY_GAIN, IDENTITY_OFFSET_MF)
        found = gain_offset_from_readings(
            [r.reference_mf for r in event.as_found],
            [r.measured_mf for r in event.as_found],
            prior=prior,
        )
        if previous is None:
            segments.append(
                Segment(
                    -math.inf,
                    event.at_unix_s,
                    found,
                    found,
                    (event.calibration_id,),
                    "before_first_check",
                )
            )
        else:
            assert left is not None
            ids = tuple(dict.fromkeys((previous.calibration_id, event.calibration_id)))
            segments.append(
                Segment(previous.at_unix_s, event.at_unix_s, left, found, ids, "between_checks")
            )
        if event.adjusted:
            identity = GainOffset(IDENTITY_GAIN, IDENTITY_OFFSET_MF)
            left = (
                gain_offset_from_readings(
                    [r.reference_mf for r in event.as_left],
                    [r.measured_mf for r in event.as_left],
                    prior=identity,
                )
                if event.as_left
                else identity
            )
        else:
            left = found
        previous = event
    assert previous is not None and left is not None
    segments.append(
        Segment(
            previous.at_unix_s,
            math.inf,
            left,
            left,
            (previous.calibration_id,),
            "after_last_check",
        )
    )
    return CorrectionSeries(analyser, gas, tuple(segments))


def correction_series_by_key(
    events: Iterable[CheckEvent],
) -> dict[tuple[str, str], CorrectionSeries]:
    """:func:`correction_series` for each (analyser, gas) of ``events``."""
    groups: dict[tuple[str, str], list[CheckEvent]] = {}
    for e in events:
        groups.setdefault((e.analyser, e.gas), []).append(e)
    return {key: correction_series(group) for key, group in groups.items()}


def _segment_index(series: CorrectionSeries, time_unix_s: np.ndarray) -> np.ndarray:
    # segment k covers [start_k, end_k); the last check's instant belongs to the segment it
    # starts (the analyser as left), an instant before the first check to the first segment
    starts = np.array([s.start_unix_s for s in series.segments[1:]], dtype=float)
    return np.searchsorted(starts, time_unix_s, side="right")


def gain_offset_at(
    series: CorrectionSeries, time_unix_s: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset [gas unit] in force at each instant (seconds since 1970 UTC).

    Examples
    --------
    >>> s = correction_series([
    ...     CheckEvent("a", "li", "co2", 0.0, (Reading(400.0, 400.0),)),
    ...     CheckEvent("b", "li", "co2", 100.0, (Reading(400.0, 420.0),)),
    ... ])
    >>> gain, offset = gain_offset_at(s, [-5.0, 50.0, 500.0])
    >>> gain.round(6).tolist(), offset.tolist()
    ([1.0, 1.025, 1.05], [0.0, 0.0, 0.0])
    """
    t = np.asarray(time_unix_s, dtype=float)
    index = _segment_index(series, t.ravel())
    gain = np.empty(index.size)
    offset = np.empty(index.size)
    flat = t.ravel()
    for k, seg in enumerate(series.segments):
        mask = index == k
        if not mask.any():
            continue
        span = seg.end_unix_s - seg.start_unix_s
        if math.isfinite(span) and span > 0:
            w = np.clip((flat[mask] - seg.start_unix_s) / span, 0.0, 1.0)
        else:
            w = np.zeros(int(mask.sum()))
        gain[mask] = seg.start.gain + w * (seg.end.gain - seg.start.gain)
        offset[mask] = seg.start.offset_mf + w * (seg.end.offset_mf - seg.start.offset_mf)
    return gain.reshape(t.shape), offset.reshape(t.shape)


def true_mf(measured_mf: ArrayLike, gain: ArrayLike, offset_mf: ArrayLike) -> np.ndarray:
    """``(measured - offset) / gain``: the corrected mole fraction [gas unit].

    >>> float(true_mf(422.0, 1.05, 2.0))
    400.0
    """
    return (np.asarray(measured_mf, dtype=float) - np.asarray(offset_mf, dtype=float)) / (
        np.asarray(gain, dtype=float)
    )


def correct_mf(
    measured_mf: ArrayLike, time_unix_s: ArrayLike, series: CorrectionSeries
) -> np.ndarray:
    """Corrected mole fractions of readings taken at ``time_unix_s`` [gas unit]."""
    gain, offset = gain_offset_at(series, time_unix_s)
    return true_mf(measured_mf, gain, offset)


def calibrations_in_force(series: CorrectionSeries, time_unix_s: float) -> tuple[str, ...]:
    """The id(s) of the calibration(s) whose checks make the correction at an instant."""
    index = int(_segment_index(series, np.array([time_unix_s], dtype=float))[0])
    return series.segments[index].calibration_ids


def _readings(items: Any, gas: str) -> list[Reading]:
    out = []
    for item in items or []:
        if not isinstance(item, Mapping) or str(item.get("gas", "")).lower() != gas:
            continue
        if item.get("measured") is None or item.get("stable") is False:
            continue  # a gas that never read stable measured nothing
        out.append(
            Reading(
                float(item["reference"]),
                float(item["measured"]),
                item.get("cylinder_id"),
            )
        )
    return out


def check_events_from_record(record: Mapping[str, Any]) -> list[CheckEvent]:
    """The check events (one per gas) of a calibration record as stored at the site and
    centrally: ``id``, ``analyser``, ``performed_at`` (or ``started_at``), optional
    ``instrument_serial``, ``adjusted`` and ``data`` (JSON text or a mapping) holding
    ``{"checks": [{"gas", "at", "reference", "measured", "cylinder_id"}, ...],
    "adjusted": bool, "checks_after": [...]}``. A record without checks gives none, and
    so does an ``incomplete`` one (nothing it measured is in force); a ``fail`` record
    counts (an analyser found off is a fact even when the procedure did not pass). A
    reading marked ``"stable": false`` or without a ``measured`` value is left out; an
    adjustment is taken as done when the record (or its data) says ``adjusted``.

    ``ValueError`` for readings that are not numbers.
    """
    if record.get("status") == "incomplete":
        return []
    data = record.get("data")
    if isinstance(data, str | bytes):
        data = json.loads(data) if data else {}
    if not isinstance(data, Mapping):
        return []
    checks = data.get("checks") or []
    gases = sorted({str(c.get("gas", "")).lower() for c in checks if isinstance(c, Mapping)})
    adjusted = bool(record.get("adjusted") or data.get("adjusted"))
    at = record.get("performed_at") or record.get("started_at")
    out = []
    for gas in gases:
        if not gas:
            continue
        found = _readings(checks, gas)
        left = _readings(data.get("checks_after"), gas)
        if not found:
            continue
        times = [c.get("at") for c in checks if str(c.get("gas", "")).lower() == gas]
        when = next((t for t in reversed(times) if t), at)
        if when is None:
            raise ValueError(f"calibration {record.get('id')}: no time")
        out.append(
            CheckEvent(
                calibration_id=str(record.get("id")),
                analyser=str(record.get("analyser")),
                gas=gas,
                at_unix_s=iso_to_unix_s(when),
                as_found=tuple(found),
                adjusted=adjusted,
                as_left=tuple(left),
                serial=record.get("instrument_serial") or None,
            )
        )
    return out
