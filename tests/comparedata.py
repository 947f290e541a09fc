"""Series of known fluxes written into a central database, for the comparison tests.

Written through the sync path (:func:`register_site` and :func:`upsert_batch`), so the
rows are exactly what sites and importers store, on either backend.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from typing import Any

from chamberd.network_sync.central import Central
from chamberd.network_sync.sync import FLUX_UNITS, content_hash, register_site, upsert_batch

AT = "2026-01-01T00:00:00+00:00"


def add_system(
    central: Central,
    site: str,
    system: str,
    *,
    time_zone: str = "UTC",
    chambers: Sequence[str] = (),
    plots: dict[str, str] | None = None,
    instrument: str = "",
) -> None:
    """Register a site's system and its chambers (with plot labels)."""
    register_site(
        central,
        site_id=site,
        system_id=system,
        time_zone=time_zone,
        instrument=instrument,
        geometry=[
            {
                "chamber": c,
                "since": "2020-01-01T00:00:00+00:00",
                "area_cm2": 317.8,
                "volume_cm3": 4076.0,
                "offset_cm": 2.0,
                "plot": (plots or {}).get(c, ""),
            }
            for c in chambers
        ],
        at=AT,
    )


def observation(
    chamber: str,
    begin: dt.datetime | str,
    flux: float | None,
    *,
    length_s: float | None = 120.0,
    fluxes: Iterable[dict[str, Any]] = (),
    version: str = "site-1",
    gas: str = "co2",
    flux_se: float | None = None,
    temperature: float | None = None,
    moisture: float | None = None,
    samples: Sequence[tuple[Any, ...]] = (),
) -> dict[str, Any]:
    """One payload: an observation with a selected flux (and any extra flux rows)."""
    if isinstance(begin, str):
        begin = dt.datetime.fromisoformat(begin.replace("Z", "+00:00"))
    end = begin + dt.timedelta(seconds=length_s) if length_s is not None else None
    obs = {
        "uuid": str(uuidlib.uuid4()),
        "chamber": chamber,
        "status": "done",
        "reason": None,
        "started_at": begin.isoformat(),
        "ended_at": end.isoformat() if end else None,
        "observation_s": length_s,
        "soil_temperature_degc": temperature,
        "soil_moisture_pct": moisture,
    }
    rows = [flux_row(gas, flux, version, flux_se=flux_se)] if flux is not None or version else []
    rows += list(fluxes)
    return {"observation": obs, "fluxes": rows, "samples": list(samples)}


def flux_row(
    gas: str,
    flux: float | None,
    version: str,
    *,
    model: str = "exponential",
    selected: int = 1,
    flux_se: float | None = None,
) -> dict[str, Any]:
    return {
        "gas": gas,
        "model": model,
        "processing_version": version,
        "flux": flux,
        "flux_unit": FLUX_UNITS[gas],
        "flux_se": flux_se,
        "r2": None,
        "nrmse": None,
        "n_points": None,
        "selected": selected,
        "flags": "",
    }


def store(central: Central, site: str, system: str, payloads: list[dict[str, Any]]) -> None:
    """Write payloads of one site's system (registered before) in one transaction."""
    for p in payloads:
        p["hash"] = content_hash(p["observation"], p["fluxes"])
    with central.transaction():
        upsert_batch(central, payloads, site_id=site, system_id=system, now=AT)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def soil_temperature(t: dt.datetime) -> float:
    """A diel and seasonal soil temperature [degC]."""
    import math

    hours = (t - dt.datetime(2026, 7, 1, tzinfo=dt.UTC)).total_seconds() / 3600.0
    return 15.0 + 5.0 * math.sin(2 * math.pi * (hours - 8.0) / 24.0) + 0.05 * hours / 24.0


def two_systems(
    central: Central,
    *,
    days: int = 10,
    site: str = "XLG",
    zone: str = "Asia/Shanghai",
    bias: float = -0.13,
    seed: int = 1,
    samples: bool = False,
    survey_every_days: int = 1,
    survey_hours: tuple[float, ...] = (2, 4, 6),
) -> dict[str, Any]:
    """An automated system (three collars, half-hourly) and a survey system (two collars,
    every 3 h in daytime, reading ``bias`` low) on one site; flux = 2 Q10^((T-10)/10) with
    Q10 = 2, a collar factor and 5 % noise. Returns the truth."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    factors = {"C1": 1.0, "C2": 1.1, "C3": 0.9, "S1": 1.0, "S2": 1.1}
    add_system(central, site, "auto", time_zone=zone, chambers=["C1", "C2", "C3"])
    add_system(central, site, "survey", time_zone=zone, chambers=["S1", "S2"])
    auto, survey = [], []
    for k in range(days * 48):
        for i, chamber in enumerate(["C1", "C2", "C3"]):
            begin = start + dt.timedelta(minutes=30 * k, seconds=300 * i)
            temperature = soil_temperature(begin)
            flux = 2.0 * 2.0 ** ((temperature - 10) / 10) * factors[chamber]
            flux *= 1 + rng.normal(0, 0.05)
            trace = _trace(begin, flux) if samples else []
            extra = [flux_row("co2", flux * 1.02, "central-linear-db20s")] if samples else []
            auto.append(
                observation(
                    chamber,
                    begin,
                    flux,
                    flux_se=0.05,
                    temperature=temperature,
                    moisture=25.0,
                    samples=trace,
                    fluxes=extra,
                )
            )
    for day in range(0, days, survey_every_days):
        for hour in survey_hours:  # by default 10:00, 12:00, 14:00 local (UTC+8)
            for j, chamber in enumerate(["S1", "S2"]):
                begin = start + dt.timedelta(days=day, hours=hour, minutes=3 + 4 * j)
                temperature = soil_temperature(begin)
                flux = 2.0 * 2.0 ** ((temperature - 10) / 10) * factors[chamber]
                flux *= (1 + bias) * (1 + rng.normal(0, 0.05))
                trace = _trace(begin, flux) if samples else []
                extra = [flux_row("co2", flux * 0.97, "central-linear-db20s")] if samples else []
                survey.append(
                    observation(
                        chamber,
                        begin,
                        flux,
                        version="manual",
                        temperature=temperature,
                        samples=trace,
                        fluxes=extra,
                    )
                )
    store(central, site, "auto", auto)
    store(central, site, "survey", survey)
    return {"relative_bias": bias, "start": start, "days": days}


def _trace(begin: dt.datetime, flux: float) -> list[tuple[Any, ...]]:
    """A few raw samples (a trace to refit), in the central samples' field order."""
    return [
        (
            k,
            (begin + dt.timedelta(seconds=10 * k)).isoformat(),
            10.0 * k,
            "observing",
            420.0 + flux * k,
            10.0,
            None,
            None,
            20.0,
            100.0,
        )
        for k in range(6)
    ]


#: ``trace_gas_systems``: each gas's flux at 10 degC [its flux unit] and Q10. CH4 is taken
#: up (a dry steppe, as in the Inner Mongolia grassland comparison); N2O is emitted.
TRACE_GASES = {
    "co2": {"r10": 2.0, "q10": 2.0, "bias": -0.05},
    "ch4": {"r10": -1.5, "q10": 1.3, "bias": -0.13},
    "n2o": {"r10": 1.5, "q10": 2.5, "bias": 0.09},
}


def trace_gas_systems(
    central: Central,
    *,
    days: int = 10,
    site: str = "XLG",
    zone: str = "Asia/Shanghai",
    seed: int = 1,
    gap: tuple[int, int] = (150, 166),
) -> dict[str, Any]:
    """An automated system (three collars, half-hourly) and a survey system (two collars,
    three daytime visits a day) measuring CO2, CH4 and N2O on each closure, as a laser
    analyser's site syncs them: one observation with a selected flux row per gas, each in
    its own unit (umol m-2 s-1; nmol m-2 s-1). flux = r10 Q10^((T-10)/10) x collar factor x
    (1 + 5 % noise), :data:`TRACE_GASES`; the survey reads each gas ``bias`` off (a
    different bias per gas, so a gas mixed up with another shows). The collar factors
    average 1 on both systems. The automated system is off for the half-hourly rounds
    ``gap`` (a power cut: no observations at all). Returns the truth: per gas its
    relative bias and the noise-free period sum of the automated system's collar mean [flux
    unit x s] over every round, the gap's included."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    factors = {"C1": 1.0, "C2": 1.1, "C3": 0.9, "S1": 0.95, "S2": 1.05}
    add_system(central, site, "auto", time_zone=zone, chambers=["C1", "C2", "C3"])
    add_system(central, site, "survey", time_zone=zone, chambers=["S1", "S2"])

    def fluxes(begin: dt.datetime, chamber: str, survey: bool) -> list[dict[str, Any]]:
        temperature = soil_temperature(begin)
        rows = []
        for gas, p in TRACE_GASES.items():
            flux = p["r10"] * p["q10"] ** ((temperature - 10) / 10) * factors[chamber]
            se = None if survey else 0.05 * abs(flux)  # the SE of the 5 % noise
            flux *= (1 + (p["bias"] if survey else 0.0)) * (1 + rng.normal(0, 0.05))
            rows.append(flux_row(gas, flux, "manual" if survey else "site-1", flux_se=se))
        return rows

    auto, survey = [], []
    truth_sum = dict.fromkeys(TRACE_GASES, 0.0)
    for k in range(days * 48):
        begins = [start + dt.timedelta(minutes=30 * k, seconds=300 * i) for i in range(3)]
        for gas, p in TRACE_GASES.items():  # the collar mean at the closures' midpoints
            mean = np.mean(
                [
                    p["r10"] * p["q10"] ** ((soil_temperature(b) - 10) / 10) * factors[c]
                    for b, c in zip(begins, ["C1", "C2", "C3"], strict=True)
                ]
            )
            truth_sum[gas] += float(mean) * 1800.0
        if gap[0] <= k < gap[1]:
            continue
        for begin, chamber in zip(begins, ["C1", "C2", "C3"], strict=True):
            auto.append(
                observation(
                    chamber,
                    begin,
                    None,
                    version="",
                    temperature=soil_temperature(begin),
                    moisture=25.0,
                    fluxes=fluxes(begin, chamber, survey=False),
                )
            )
    for day in range(days):
        for hour in (2, 4, 6):  # 10:00, 12:00, 14:00 local (UTC+8)
            for j, chamber in enumerate(["S1", "S2"]):
                begin = start + dt.timedelta(days=day, hours=hour, minutes=3 + 4 * j)
                survey.append(
                    observation(
                        chamber,
                        begin,
                        None,
                        version="",
                        temperature=soil_temperature(begin),
                        fluxes=fluxes(begin, chamber, survey=True),
                    )
                )
    store(central, site, "auto", auto)
    store(central, site, "survey", survey)
    return {
        gas: {"relative_bias": p["bias"], "sum_a": truth_sum[gas]} for gas, p in TRACE_GASES.items()
    }
