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
