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
flagged ``assumed_ptw``; W0 = 0 for a trace without water); the window is
dead band <= t <= observation length. The stored flux, its standard error, R2, NRMSE and
sample count are those of the method's model; an exponential that did not converge is
stored flagged ``exp_not_converged``. An observation without geometry, without a sample in
its first 10 s or without a fit of the method is skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from chamberd.fitting import Closure, ClosureFit, fit_closures

from .central import Central
from .refit import ANALYSER_PRECISION_MF, BLAS_THREADS
from .sync import FLUX_UNITS

__all__ = ["Observer", "RefitReport", "Refitted", "processing_version", "refit"]

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


def processing_version(method: str, dead_band_s: float | None = None) -> str:
    """The processing version of a central refit: ``central-<method>-db<stored|Ns>``.

    >>> processing_version("exponential", 20.0)
    'central-exponential-db20s'
    """
    band = "stored" if dead_band_s is None else f"{dead_band_s:g}s"
    return f"central-{method}-db{band}"


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
) -> RefitReport:
    """Refit the raw traces of ``gas`` of the selected observations with ``method``
    (``linear`` or ``exponential``, LI-COR's fixed-C'0 form).

    ``observe``, when given, is called after each chunk is stored with one
    :class:`Refitted` per observation of the chunk (what ``chamberd refit --report``
    draws)."""
    if method not in ("linear", "exponential"):
        raise ValueError(f"method {method!r}: linear or exponential")
    version = processing_version(method, dead_band_s)
    report = RefitReport(version)
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
        "o.observation_s, o.area_cm2, o.volume_cm3, o.pressure_kpa, o.air_temperature_degc "
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
            rows = _fit_chunk(
                central, part, gas, column, method, dead_band_s, version, report, refitted
            )
            with central.transaction():
                for uuid in {o["uuid"] for o in part}:
                    central.execute(
                        "DELETE FROM fluxes WHERE observation_uuid = ? AND gas = ? "
                        "AND processing_version = ?",
                        (uuid, gas, version),
                    )
                central.executemany(
                    "INSERT INTO fluxes (site_id, observation_uuid, gas, model, "
                    "processing_version, flux, flux_unit, flux_se, r2, nrmse, n_points, "
                    "selected, flags, revision) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 1)",
                    rows,
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
    closures, assumed = [], []
    for o in part:
        closure, guessed = _closure(o, by_uuid[o["uuid"]], gas, dead_band_s)
        closures.append(closure)
        assumed.append(guessed)
    rows = []
    fits = fit_closures(closures)
    for o, closure, fit, guessed in zip(part, closures, fits, assumed, strict=True):
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
        flags = []
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
        report.fitted += 1
    return rows


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
