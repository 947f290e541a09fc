"""Refit every stored raw trace centrally with one method (the batch fitting path).

Systems process their closures differently; refitting all of them with one method puts them
on the same processing. The results are stored as fluxes with their own
``processing_version`` (``central-<method>-db<dead band>``), beside the systems' own, and
marked ``selected`` within that version; running it again replaces them.

The sample rows of each observation become a :class:`~chamberd.fitting.Closure` and go
through :func:`~chamberd.fitting.fit_closures`, the path ``chamberd fit`` uses: the result
is what ``fit_closure`` gives for the trace. Per closure: the trace is made dry with its
water vapour where it has one (a sample without water is then left out); C'0, P0, T0 and W0
are intercepts at closure of lines over the first 10 s (P0 and T0 where the trace has no
pressure or temperature there: the observation's stored means, then 101.325 kPa and 20 degC,
flagged ``assumed_ptw``; W0 = 0 for a trace without water), except that an observation
with a stored chamber air temperature takes it as T0 (a chamberd site's samples carry its
analyser's heated cell temperature, not the chamber's; the site's own fit uses the air
temperature too); the window is
dead band <= t <= observation length. The stored flux, its standard error, R2, NRMSE and
sample count are those of the method's model; an exponential that did not converge is
stored flagged ``exp_not_converged``. An observation without geometry, without a sample in
its first 10 s or without a fit of the method is skipped.

With ``apply_calibrations`` (``chamberd refit --apply-calibrations``) the sample
concentrations are first corrected by the central calibration records
(:mod:`chamberd.calibration.corrections`: ``true = (measured - offset(t)) / gain(t)`` at each
sample's time, the gas and, where the analyser's water was checked, H2O), then made dry and
fitted as above; the results go to their own processing version, ``<version>-cal``, and the
stored samples are never changed. An observation is matched to its analyser's calibrations
by site and analyser serial (``observations.analyser_serial`` = ``calibrations.
instrument_serial``); an observation without a serial, or whose serial no calibration of its
site names, falls back to the analyser id (``observations.analyser`` =
``calibrations.analyser``, same site). Each refitted observation's calibrations in force are
rows of ``refit_calibrations`` (observation, gas, processing version, calibration id, and the
gain and offset in force at the start of the closure). An observation with no calibration
is refitted uncorrected and flagged ``no_calibration``; one before its analyser's first
check is corrected by that check and flagged ``before_first_check``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from chamberd.calibration.corrections import (
    CorrectionSeries,
    calibrations_in_force,
    check_events_from_record,
    correction_series_by_key,
    gain_offset_at,
    iso_to_unix_s,
    true_mf,
)
from chamberd.controller.errors import ConfigError
from chamberd.fitting import Closure, ClosureFit, fit_closures

from .central import Central
from .refit import ANALYSER_PRECISION_MF, BLAS_THREADS
from .sync import FLUX_UNITS

__all__ = [
    "CALIBRATED_SUFFIX",
    "Observer",
    "RefitReport",
    "Refitted",
    "load_corrections",
    "processing_version",
    "refit",
]

#: the suffix of a processing version whose concentrations were corrected by calibrations
CALIBRATED_SUFFIX = "-cal"

_COLUMN = {"co2": "co2_umol_mol", "ch4": "ch4_nmol_mol", "n2o": "n2o_nmol_mol"}
_INITIAL_S = 10.0


@dataclass(frozen=True, eq=False)
class Refitted:
    """One observation of a central refit: its row, its closure, the fit (or why there is
    none) and what was stored (``flux``, ``flags``, ``model``; None when skipped)."""

    observation: dict[str, Any]
    closure: Closure
    fit: ClosureFit | ValueError
    stored: dict[str, Any] | None


#: ``observe(refitted)``: called with each chunk's :class:`Refitted` once it is stored.
Observer = Callable[[list[Refitted]], None]


@dataclass
class RefitReport:
    processing_version: str
    observations: int = 0
    fitted: int = 0
    skipped: int = 0
    seconds: float = 0.0
    #: with apply_calibrations: observations corrected, and refitted without a calibration
    corrected: int = 0
    uncalibrated: int = 0


def processing_version(
    method: str, dead_band_s: float | None = None, *, calibrated: bool = False
) -> str:
    """The processing version of a central refit: ``central-<method>-db<stored|Ns>``, with
    ``-cal`` when the concentrations were corrected by calibrations.

    >>> processing_version("exponential", 20.0)
    'central-exponential-db20s'
    >>> processing_version("linear", calibrated=True)
    'central-linear-dbstored-cal'
    """
    band = "stored" if dead_band_s is None else f"{dead_band_s:g}s"
    return f"central-{method}-db{band}" + (CALIBRATED_SUFFIX if calibrated else "")


@dataclass(frozen=True)
class Corrections:
    """The central calibration records as corrections: per site, by analyser serial and by
    analyser id, per gas."""

    by_serial: dict[tuple[str, str, str], CorrectionSeries]
    by_analyser: dict[tuple[str, str, str], CorrectionSeries]

    def series(self, o: dict[str, Any], gas: str) -> CorrectionSeries | None:
        """The correction of an observation's analyser for ``gas`` (serial first, then the
        analyser id), or None."""
        serial, analyser = o.get("analyser_serial"), o.get("analyser")
        if serial and (o["site_id"], serial, gas) in self.by_serial:
            return self.by_serial[(o["site_id"], serial, gas)]
        if analyser:
            return self.by_analyser.get((o["site_id"], analyser, gas))
        return None


def load_corrections(central: Central, site: str | None = None) -> Corrections:
    """The corrections of the central calibration records (of ``site``, or all): every
    record with zero/span readings in its ``data``, of any status (see
    :func:`~chamberd.calibration.corrections.check_events_from_record`).

    :class:`ConfigError` for a database older than schema version 5 or a record whose
    readings are not numbers (naming the record)."""
    from .central import CALIBRATION_VERSION

    central.require_schema(CALIBRATION_VERSION)
    sql = (
        "SELECT id, site_id, analyser, performed_at, started_at, instrument_serial, adjusted, "
        "status, data FROM calibrations"
    )
    params: list[Any] = []
    if site:
        sql += " WHERE site_id = ?"
        params.append(site)
    by_serial: dict[tuple[str, str, str], list] = {}
    by_analyser: dict[tuple[str, str, str], list] = {}
    for record in central.query(sql + " ORDER BY performed_at, id", params):
        if isinstance(record.get("performed_at"), dt.datetime):
            record["performed_at"] = record["performed_at"].isoformat()
        if isinstance(record.get("started_at"), dt.datetime):
            record["started_at"] = record["started_at"].isoformat()
        try:
            events = check_events_from_record(record)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"calibration {record['id']} ({record['site_id']}): its readings cannot make "
                f"a correction: {exc}"
            ) from exc
        for e in events:
            if e.serial:
                by_serial.setdefault((record["site_id"], e.serial, e.gas), []).append(e)
            by_analyser.setdefault((record["site_id"], e.analyser, e.gas), []).append(e)

    def build(groups: dict[tuple[str, str, str], list]) -> dict:
        out = {}
        for key, events in groups.items():
            # one series per key: the events are renamed to the key's analyser
            series = correction_series_by_key(
                [type(e)(**{**vars(e), "analyser": key[1]}) for e in events]
            )
            out[key] = series[(key[1], key[2])]
        return out

    try:
        return Corrections(build(by_serial), build(by_analyser))
    except ValueError as exc:
        raise ConfigError(f"calibration records cannot make a correction: {exc}") from exc


def refit(
    central: Central,
    *,
    method: str,
    gas: str = "co2",
    site: str | None = None,
    system: str | None = None,
    dead_band_s: float | None = None,
    chunk: int = 2000,
    progress: Callable[[RefitReport], None] | None = None,
    observe: Observer | None = None,
    apply_calibrations: bool = False,
) -> RefitReport:
    """Refit the raw traces of ``gas`` of the selected observations with ``method``
    (``linear`` or ``exponential``, LI-COR's fixed-C'0 form); with ``apply_calibrations``
    corrected first by the calibration records (see the module docstring).

    ``observe``, when given, is called after each chunk is stored with one
    :class:`Refitted` per observation of the chunk (what ``chamberd refit --report``
    draws)."""
    if method not in ("linear", "exponential"):
        raise ValueError(f"method {method!r}: linear or exponential")
    version = processing_version(method, dead_band_s, calibrated=apply_calibrations)
    report = RefitReport(version)
    corrections = load_corrections(central, site) if apply_calibrations else None
    started = time.perf_counter()
    where, params = ["o.status = 'done'"], []
    if site:
        where.append("o.site_id = ?")
        params.append(site)
    if system:
        where.append("o.system_id = ?")
        params.append(system)
    column = _COLUMN[gas]
    observations = central.query(
        "SELECT o.uuid, o.site_id, o.system_id, o.chamber, o.begin_utc, o.dead_band_s, "
        "o.observation_s, o.area_cm2, o.volume_cm3, o.pressure_kpa, o.air_temperature_degc, "
        f"o.analyser_serial{', o.analyser' if apply_calibrations else ''} "
        "FROM observations o "
        f"WHERE {' AND '.join(where)} AND EXISTS (SELECT 1 FROM samples s "
        f"WHERE s.observation_uuid = o.uuid AND s.{column} IS NOT NULL) ORDER BY o.uuid",
        params,
    )
    report.observations = len(observations)
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        for start in range(0, len(observations), chunk):
            part = observations[start : start + chunk]
            refitted: list[Refitted] | None = [] if observe is not None else None
            links: list[tuple[Any, ...]] = []
            rows = _fit_chunk(
                central,
                part,
                gas,
                column,
                method,
                dead_band_s,
                version,
                report,
                refitted,
                corrections,
                links,
            )
            with central.transaction():
                for uuid in {o["uuid"] for o in part}:
                    central.execute(
                        "DELETE FROM fluxes WHERE observation_uuid = ? AND gas = ? "
                        "AND processing_version = ?",
                        (uuid, gas, version),
                    )
                    if corrections is not None:
                        central.execute(
                            "DELETE FROM refit_calibrations WHERE observation_uuid = ? "
                            "AND gas = ? AND processing_version = ?",
                            (uuid, gas, version),
                        )
                central.executemany(
                    "INSERT INTO fluxes (site_id, observation_uuid, gas, model, "
                    "processing_version, flux, flux_unit, flux_se, r2, nrmse, n_points, "
                    "selected, flags, revision) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 1)",
                    rows,
                )
                central.executemany(
                    "INSERT INTO refit_calibrations (site_id, observation_uuid, gas, "
                    "processing_version, calibration_id, gain, offset_mf) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    links,
                )
            if observe is not None and refitted is not None:
                observe(refitted)
            if progress is not None:
                progress(report)
    report.seconds = time.perf_counter() - started
    return report


def _fit_chunk(
    central: Central,
    part: list[dict[str, Any]],
    gas: str,
    column: str,
    method: str,
    dead_band_s: float | None,
    version: str,
    report: RefitReport,
    refitted: list[Refitted] | None = None,
    corrections: Corrections | None = None,
    links: list[tuple[Any, ...]] | None = None,
) -> list[tuple[Any, ...]]:
    uuids = [o["uuid"] for o in part]
    samples = central.query(
        f"SELECT observation_uuid, elapsed_s, {column} AS c, h2o_mmol_mol, "
        "cell_temperature_degc, cell_pressure_kpa FROM samples WHERE observation_uuid IN "
        f"({', '.join('?' for _ in uuids)}) AND elapsed_s IS NOT NULL "
        "ORDER BY observation_uuid, seq",
        uuids,
    )
    by_uuid: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    for s in samples:
        by_uuid[s["observation_uuid"]].append(s)
    closures, assumed, cal_flags, cal_used = [], [], [], []
    for o in part:
        trace = by_uuid[o["uuid"]]
        flags: list[str] = []
        used: list[tuple[Any, ...]] = []
        if corrections is not None:
            trace, flags, used = _corrected(o, trace, gas, corrections, version)
            if "no_calibration" in flags:
                report.uncalibrated += 1
            else:
                report.corrected += 1
        closure, guessed = _closure(o, trace, gas, dead_band_s)
        closures.append(closure)
        assumed.append(guessed)
        cal_flags.append(flags)
        cal_used.append(used)
    rows = []
    fits = fit_closures(closures)
    for o, closure, fit, guessed, extra, used in zip(
        part, closures, fits, assumed, cal_flags, cal_used, strict=True
    ):
        if isinstance(fit, ValueError):  # no geometry, no sample in the first seconds
            report.skipped += 1
            if refitted is not None:
                refitted.append(Refitted(o, closure, fit, None))
            continue
        model = fit.linear if method == "linear" else fit.exponential
        flux = fit.lin_flux if method == "linear" else fit.exp_flux
        flux_se = fit.lin_flux_se if method == "linear" else fit.exp_flux_se
        if not math.isfinite(flux):
            report.skipped += 1
            if refitted is not None:
                refitted.append(Refitted(o, closure, fit, None))
            continue
        flags = list(extra)
        if guessed:
            flags.append("assumed_ptw")
        if method == "exponential" and not fit.exponential.converged:
            flags.append("exp_not_converged")
        if refitted is not None:
            stored = {"flux": float(flux), "flags": ";".join(flags), "model": method}
            refitted.append(Refitted(o, closure, fit, stored))
        rows.append(
            (
                o["site_id"],
                o["uuid"],
                gas,
                method,
                version,
                float(flux),
                FLUX_UNITS[gas],
                _finite(flux_se),
                _finite(model.r_squared),
                _finite(model.nrmse),
                int(fit.n_points),
                ";".join(flags),
            )
        )
        if links is not None:
            links.extend(used)  # the calibrations in force, for the observations stored
        report.fitted += 1
    return rows


def _corrected(
    o: dict[str, Any],
    trace: list[dict[str, Any]],
    gas: str,
    corrections: Corrections,
    version: str,
) -> tuple[list[dict[str, Any]], list[str], list[tuple[Any, ...]]]:
    """The trace with its gas (and H2O, where the analyser's water was checked) corrected
    at each sample's time (closure start + elapsed seconds); its flags; its
    ``refit_calibrations`` rows (the gain and offset in force at the closure's start)."""
    begin = o["begin_utc"]
    begin_s = iso_to_unix_s(begin if isinstance(begin, str | dt.datetime) else str(begin))
    elapsed = np.array([_f(s["elapsed_s"]) for s in trace], dtype=float)
    when = begin_s + np.where(np.isfinite(elapsed), elapsed, 0.0)
    flags: list[str] = []
    used: list[tuple[Any, ...]] = []
    series = corrections.series(o, gas)
    if series is None:
        return trace, ["no_calibration"], used
    out = [dict(s) for s in trace]
    for key, s in ((gas, series), ("h2o", corrections.series(o, "h2o"))):
        if s is None:
            continue
        field = "c" if key == gas else "h2o_mmol_mol"
        gain, offset = gain_offset_at(s, when)
        corrected = true_mf([_f(x[field]) for x in trace], gain, offset)
        for x, value in zip(out, corrected, strict=True):
            x[field] = float(value) if math.isfinite(value) else None
        if key != gas:
            continue
        if begin_s < s.segments[0].end_unix_s:
            flags.append("before_first_check")
        g0, o0 = gain_offset_at(s, [begin_s])
        for cid in calibrations_in_force(s, begin_s):
            used.append((o["site_id"], o["uuid"], gas, version, cid, float(g0[0]), float(o0[0])))
    return out, flags, used


def _closure(
    o: dict[str, Any], trace: list[dict[str, Any]], gas: str, dead_band_s: float | None
) -> tuple[Closure, bool]:
    """The closure of one observation's sample rows, and whether P0 or T0 was assumed."""
    t = np.array([_f(s["elapsed_s"]) for s in trace], dtype=float)
    c = np.array([_f(s["c"]) for s in trace], dtype=float)
    initial = (t >= 0) & (t <= _INITIAL_S)
    assumed = False

    def value(key: str, stored: Any, default: float) -> float | np.ndarray:
        nonlocal assumed
        values = np.array([_f(s[key]) for s in trace], dtype=float)
        if np.isfinite(values[initial]).any():
            return values  # a trace: its intercept at closure
        if math.isfinite(_f(stored)):
            return _f(stored)
        assumed = True
        return default

    pressure = value("cell_pressure_kpa", o["pressure_kpa"], 101.325)
    # a chamberd site's samples carry the analyser's cell temperature (an LI-8x0 heats its
    # cell to ~50 degC), not the chamber's: the observation's chamber air temperature, where
    # it has one, is T0 (what the site's own fit uses); else the trace's
    if math.isfinite(_f(o["air_temperature_degc"])):
        temperature: float | np.ndarray = _f(o["air_temperature_degc"])
    else:
        temperature = value("cell_temperature_degc", o["air_temperature_degc"], 20.0)
    h2o = np.array([_f(s["h2o_mmol_mol"]) for s in trace], dtype=float)
    wet = bool(np.isfinite(h2o).any())
    end = _f(o["observation_s"])
    if not math.isfinite(end):
        end = float(np.nanmax(t)) if np.isfinite(t).any() else math.nan
    band = dead_band_s if dead_band_s is not None else _f(o["dead_band_s"])
    closure = Closure(
        t,
        c,
        h2o_mmol_mol=h2o if wet else 0.0,
        pressure_kpa=pressure,
        temperature_degc=temperature,
        volume_cm3=_f(o["volume_cm3"]),
        area_cm2=_f(o["area_cm2"]),
        dead_band_s=band if math.isfinite(band) else 0.0,
        end_s=end,
        precision_mf=ANALYSER_PRECISION_MF.get(gas, 1.0),
        dry=not wet,
    )
    return closure, assumed


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
