"""Refit every stored raw trace centrally with one method (the batch fitting path).

Systems process their closures differently; refitting all of them with one method puts them
on the same processing. The results are stored as fluxes with their own
``processing_version`` (``central-<method>-db<dead band>``), beside the systems' own, and
marked ``selected`` within that version; running it again replaces them.

Per closure: the trace is made dry with its water vapour where there is one; C'0, P0, T0 and
W0 are taken from the first 10 s after closure (a line's intercept for C'0, means for the
others; the observation's stored means, then 101.325 kPa, 20 degC, 0 where absent, flagged
``assumed_ptw``); the window is dead band <= t <= observation length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chamberd.fitting.batch import fit_exponential_batch, fit_linear_batch
from chamberd.fitting.flux import dry_air_mol_m2, wet_to_dry

from .central import Central
from .sync import FLUX_UNITS

__all__ = ["RefitReport", "refit"]

_COLUMN = {"co2": "co2_umol_mol", "ch4": "ch4_nmol_mol", "n2o": "n2o_nmol_mol"}
_INITIAL_S = 10.0


@dataclass
class RefitReport:
    processing_version: str
    observations: int = 0
    fitted: int = 0
    skipped: int = 0
    seconds: float = 0.0


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
) -> RefitReport:
    """Refit the raw traces of ``gas`` of the selected observations with ``method``
    (``linear`` or ``exponential``, LI-COR's fixed-C'0 form)."""
    if method not in ("linear", "exponential"):
        raise ValueError(f"method {method!r}: linear or exponential")
    band = "stored" if dead_band_s is None else f"{dead_band_s:g}s"
    version = f"central-{method}-db{band}"
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
        "SELECT o.uuid, o.site_id, o.dead_band_s, o.observation_s, o.area_cm2, o.volume_cm3, "
        "o.pressure_kpa, o.air_temperature_degc FROM observations o "
        f"WHERE {' AND '.join(where)} AND EXISTS (SELECT 1 FROM samples s "
        f"WHERE s.observation_uuid = o.uuid AND s.{column} IS NOT NULL) ORDER BY o.uuid",
        params,
    )
    report.observations = len(observations)
    for start in range(0, len(observations), chunk):
        part = observations[start : start + chunk]
        rows = _fit_chunk(central, part, gas, column, method, dead_band_s, version, report)
        with central.transaction():
            for uuid in {o["uuid"] for o in part}:
                central.execute(
                    "DELETE FROM fluxes WHERE observation_uuid = ? AND gas = ? "
                    "AND processing_version = ?",
                    (uuid, gas, version),
                )
            central.executemany(
                "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
                "flux, flux_unit, flux_se, r2, nrmse, n_points, selected, flags, revision) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 1, ?, 1)",
                rows,
            )
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
    width = max((len(v) for v in by_uuid.values()), default=0)
    n = len(part)
    t = np.full((n, width), np.nan)
    y = np.full((n, width), np.nan)
    w = np.full((n, width), np.nan)
    temp = np.full((n, width), np.nan)
    pres = np.full((n, width), np.nan)
    for i, uuid in enumerate(uuids):
        trace = by_uuid[uuid]
        k = len(trace)
        t[i, :k] = [_f(s["elapsed_s"]) for s in trace]
        y[i, :k] = [_f(s["c"]) for s in trace]
        w[i, :k] = [_f(s["h2o_mmol_mol"]) for s in trace]
        temp[i, :k] = [_f(s["cell_temperature_degc"]) for s in trace]
        pres[i, :k] = [_f(s["cell_pressure_kpa"]) for s in trace]
    dry = np.where(np.isfinite(w), wet_to_dry(y, np.nan_to_num(w)), y)
    ends = np.array([_f(o["observation_s"]) for o in part])
    ends = np.where(
        np.isfinite(ends), ends, np.nanmax(np.where(np.isfinite(t), t, -np.inf), axis=1)
    )
    bands = np.array(
        [dead_band_s if dead_band_s is not None else (_f(o["dead_band_s"]) or 0.0) for o in part]
    )
    bands = np.where(np.isfinite(bands), bands, 0.0)
    valid = np.isfinite(t) & np.isfinite(dry)
    window = valid & (t >= bands[:, None]) & (t <= ends[:, None])
    initial = valid & (t >= 0) & (t <= _INITIAL_S)
    first = fit_linear_batch(np.nan_to_num(t), np.where(initial, dry, np.nan), initial)
    c0 = first.intercept_mf

    def initial_mean(
        values: np.ndarray, fallback: list[float | None], default: float
    ) -> np.ndarray:
        chosen = np.where(initial & np.isfinite(values), values, np.nan)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(chosen), chosen, np.nan), axis=1)
        stored = np.array([_f(v) for v in fallback])
        out = np.where(np.isfinite(mean), mean, stored)
        assumed = ~np.isfinite(out)
        return np.where(assumed, default, out), assumed

    p0, p_assumed = initial_mean(pres, [o["pressure_kpa"] for o in part], 101.325)
    t0, t_assumed = initial_mean(temp, [o["air_temperature_degc"] for o in part], 20.0)
    w0, _ = initial_mean(w, [None] * n, 0.0)
    if method == "linear":
        fit = fit_linear_batch(np.nan_to_num(t), np.where(window, dry, np.nan), window)
        slope, se, r2 = fit.slope_mf_s, fit.slope_se_mf_s, fit.r_squared
        npts = window.sum(axis=1)
        model = "linear"
    else:
        ok = np.isfinite(c0)
        fit = fit_exponential_batch(
            np.nan_to_num(t), np.where(window, dry, np.nan), window, c0_mf=np.where(ok, c0, 0.0)
        )
        slope, se, r2, npts = fit.slope_mf_s, fit.slope_se_mf_s, fit.r_squared, fit.n_points
        model = "exponential"
    rows = []
    for i, o in enumerate(part):
        area, volume = _f(o["area_cm2"]), _f(o["volume_cm3"])
        if not (np.isfinite(slope[i]) and np.isfinite(area) and np.isfinite(volume)):
            report.skipped += 1
            continue
        air = dry_air_mol_m2(
            volume_cm3=volume,
            area_cm2=area,
            pressure_kpa=float(p0[i]),
            temperature_degc=float(t0[i]),
            h2o_mmol_mol=float(w0[i]),
        )
        flags = []
        if p_assumed[i] or t_assumed[i]:
            flags.append("assumed_ptw")
        if method == "exponential" and not bool(fit.converged[i]):
            flags.append("exp_not_converged")
        rows.append(
            (
                o["site_id"],
                o["uuid"],
                gas,
                model,
                version,
                float(slope[i] * air),
                FLUX_UNITS[gas],
                float(se[i] * air) if np.isfinite(se[i]) else None,
                float(r2[i]) if np.isfinite(r2[i]) else None,
                int(npts[i]),
                ";".join(flags),
            )
        )
        report.fitted += 1
    return rows


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
