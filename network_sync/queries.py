"""Analysts' queries and exports of the central database, as pandas DataFrames.

:func:`fluxes` is the one query: observations joined with their fluxes, filtered by site,
system, chamber, gas, time and processing version. The exports reshape it:
:func:`export_cosore` writes a COSORE-compatible data set (data, ports and description
tables with COSORE's column names and units), :func:`export_fluxnet` a FLUXNET-style CSV
(``TIMESTAMP_START``/``TIMESTAMP_END`` in local standard time, ``-9999`` for missing).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from chamberd.controller.errors import ConfigError

from .central import Central

__all__ = ["COLUMNS", "export_cosore", "export_fluxnet", "fluxes", "parse_time"]

COLUMNS = [
    "uuid",
    "site_id",
    "system_id",
    "chamber",
    "begin_utc",
    "end_utc",
    "status",
    "gas",
    "model",
    "processing_version",
    "selected",
    "flux",
    "flux_unit",
    "flux_se",
    "r2",
    "nrmse",
    "flags",
    "revision",
    "soil_temperature_degc",
    "soil_moisture_pct",
    "air_temperature_degc",
    "pressure_kpa",
    "area_cm2",
    "volume_cm3",
    "observation_s",
]


def parse_time(text: str | None, option: str) -> str | None:
    """An ISO 8601 date or time (a bare date or time is UTC) as a UTC ISO string."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: not an ISO 8601 date or time") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")  # as stored


def fluxes(
    central: Central,
    *,
    site: str | Sequence[str] | None = None,
    system: str | Sequence[str] | None = None,
    chamber: str | Sequence[str] | None = None,
    gas: str | Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    processing_version: str | Sequence[str] | None = None,
    selected_only: bool = True,
    status: str | None = "done",
) -> pd.DataFrame:
    """One row per observation, gas and model (only the reported model by default).

    ``start``/``end`` are UTC ISO strings (:func:`parse_time`): begin time >= start and
    < end. Times come back as timezone-aware UTC timestamps; fluxes in their ``flux_unit``.
    """
    where, params = ["1 = 1"], []
    for column, value in (
        ("o.site_id", site),
        ("o.system_id", system),
        ("o.chamber", chamber),
        ("f.gas", gas),
        ("f.processing_version", processing_version),
    ):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        where.append(f"{column} IN ({', '.join('?' for _ in values)})")
        params += values
    if start is not None:
        where.append("o.begin_utc >= ?")
        params.append(start)
    if end is not None:
        where.append("o.begin_utc < ?")
        params.append(end)
    if selected_only:
        where.append("f.selected = 1")
    if status is not None:
        where.append("o.status = ?")
        params.append(status)
    sql = (
        "SELECT o.uuid, o.site_id, o.system_id, o.chamber, o.begin_utc, o.end_utc, o.status, "
        "f.gas, f.model, f.processing_version, f.selected, f.flux, f.flux_unit, f.flux_se, "
        "f.r2, f.nrmse, f.flags, o.revision, o.soil_temperature_degc, o.soil_moisture_pct, "
        "o.air_temperature_degc, o.pressure_kpa, o.area_cm2, o.volume_cm3, o.observation_s "
        "FROM observations o JOIN fluxes f ON f.observation_uuid = o.uuid "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY o.site_id, o.system_id, o.chamber, o.begin_utc, f.gas, f.model"
    )
    frame = pd.DataFrame(central.query(sql, params), columns=COLUMNS)
    for column in ("begin_utc", "end_utc"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in (
        "flux",
        "flux_se",
        "r2",
        "nrmse",
        "soil_temperature_degc",
        "soil_moisture_pct",
        "air_temperature_degc",
        "pressure_kpa",
        "area_cm2",
        "volume_cm3",
        "observation_s",
    ):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    frame["selected"] = frame["selected"].astype(bool)
    return frame


def _site(central: Central, site: str) -> dict[str, Any]:
    rows = central.query("SELECT * FROM sites WHERE site_id = ?", (site,))
    if not rows:
        raise ConfigError(f"no site {site!r} in the central database")
    return rows[0]


def _standard_offset(zone: str) -> dt.timedelta:
    """The zone's standard (winter) UTC offset: the smaller of January's and July's."""
    tz = zoneinfo.ZoneInfo(zone)
    return min(
        dt.datetime(2026, 1, 15, tzinfo=tz).utcoffset() or dt.timedelta(0),
        dt.datetime(2026, 7, 15, tzinfo=tz).utcoffset() or dt.timedelta(0),
    )


def _standard_time(times: pd.Series, zone: str) -> pd.Series:
    """Local standard time (no daylight saving), as FLUXNET and COSORE want it."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None) + _standard_offset(zone)


def export_fluxnet(
    central: Central, path: str | Path, *, site: str, system: str | None = None, **filters: Any
) -> pd.DataFrame:
    """A FLUXNET-style CSV of one site: one row per observation and chamber.

    Columns: ``TIMESTAMP_START``, ``TIMESTAMP_END`` (YYYYMMDDHHMM, local standard time),
    ``SYSTEM``, ``CHAMBER``, ``FCO2`` (umol m-2 s-1), ``FCH4`` and ``FN2O``
    (nmol m-2 s-1), ``TS`` (soil temperature, degC), ``SWC`` (soil water content, %),
    ``TA`` (chamber air temperature, degC), ``PA`` (kPa); missing values are -9999.
    """
    info = _site(central, site)
    frame = fluxes(central, site=site, system=system, **filters)
    if frame.empty:
        out = pd.DataFrame(columns=["TIMESTAMP_START", "TIMESTAMP_END", "SYSTEM", "CHAMBER"])
    else:
        wide = frame.pivot_table(  # rows in time order per system and chamber
            index=["system_id", "chamber", "begin_utc", "uuid"],
            columns="gas",
            values="flux",
            aggfunc="first",
        ).reset_index()
        ancillary = frame.drop_duplicates("uuid").set_index("uuid")
        begin = _standard_time(wide["begin_utc"], info["time_zone"])
        # the end: as stored, else begin + the observation length
        stored_end = pd.Series(
            pd.to_datetime(ancillary.loc[wide["uuid"], "end_utc"].to_numpy(), utc=True),
            index=wide.index,
        )
        length = pd.to_timedelta(
            ancillary.loc[wide["uuid"], "observation_s"].fillna(0).to_numpy(), "s"
        )
        end_utc = stored_end.fillna(wide["begin_utc"] + length)
        end = _standard_time(end_utc, info["time_zone"])
        out = pd.DataFrame(
            {
                "TIMESTAMP_START": begin.dt.strftime("%Y%m%d%H%M"),
                "TIMESTAMP_END": end.dt.strftime("%Y%m%d%H%M"),
                "SYSTEM": wide["system_id"],
                "CHAMBER": wide["chamber"],
                "FCO2": wide.get("co2"),
                "FCH4": wide.get("ch4"),
                "FN2O": wide.get("n2o"),
                "TS": ancillary.loc[wide["uuid"], "soil_temperature_degc"].values,
                "SWC": ancillary.loc[wide["uuid"], "soil_moisture_pct"].values,
                "TA": ancillary.loc[wide["uuid"], "air_temperature_degc"].values,
                "PA": ancillary.loc[wide["uuid"], "pressure_kpa"].values,
            }
        )
        out = out.dropna(axis="columns", how="all")
    out.to_csv(path, index=False, na_rep="-9999")
    return out


def export_cosore(
    central: Central, folder: str | Path, *, site: str, system: str, **filters: Any
) -> dict[str, pd.DataFrame]:
    """A COSORE-compatible data set of one site and system in ``folder``.

    ``data.csv``: ``CSR_PORT``, ``CSR_TIMESTAMP_BEGIN``, ``CSR_TIMESTAMP_END`` (ISO 8601 with
    the site's standard-time offset), ``CSR_FLUX_CO2`` (umol m-2 s-1), ``CSR_FLUX_CH4``
    (nmol m-2 s-1), ``CSR_T5`` (degC), ``CSR_SM5`` (m3 m-3); ``PORTS.csv``: ``CSR_PORT``,
    ``CSR_CHAMBER`` (our chamber id), ``CSR_MSMT_VAR`` (Rs), ``CSR_TREATMENT``,
    ``CSR_AREA`` (cm2), ``CSR_VOLUME`` (cm3); ``DESCRIPTION.csv``: ``CSR_SITE_NAME``,
    ``CSR_LONGITUDE``, ``CSR_LATITUDE``, ``CSR_TIMEZONE``, ``CSR_INSTRUMENT``,
    ``CSR_MSMT_LENGTH``, ``CSR_FILE_FORMAT``.
    """
    info = _site(central, site)
    systems = central.query(
        "SELECT * FROM systems WHERE site_id = ? AND system_id = ?", (site, system)
    )
    frame = fluxes(central, site=site, system=system, **filters)
    chambers = sorted(frame["chamber"].unique()) if not frame.empty else []
    port_of = {c: i + 1 for i, c in enumerate(chambers)}
    zone = info["time_zone"]
    fixed = dt.timezone(_standard_offset(zone))

    def stamp(series: pd.Series) -> pd.Series:
        return series.map(lambda t: t.astimezone(fixed).isoformat() if pd.notna(t) else None)

    if frame.empty:
        data = pd.DataFrame(columns=["CSR_PORT", "CSR_TIMESTAMP_BEGIN", "CSR_TIMESTAMP_END"])
        ports = pd.DataFrame(columns=["CSR_PORT", "CSR_CHAMBER"])
    else:
        wide = frame.pivot_table(
            index=["chamber", "begin_utc", "uuid"], columns="gas", values="flux", aggfunc="first"
        ).reset_index()
        first = frame.drop_duplicates("uuid").set_index("uuid").loc[wide["uuid"]]
        data = pd.DataFrame(
            {
                "CSR_PORT": wide["chamber"].map(port_of),
                "CSR_TIMESTAMP_BEGIN": stamp(wide["begin_utc"]),
                "CSR_TIMESTAMP_END": stamp(first["end_utc"].reset_index(drop=True)),
                "CSR_FLUX_CO2": wide.get("co2"),
                "CSR_FLUX_CH4": wide.get("ch4"),
                "CSR_T5": first["soil_temperature_degc"].to_numpy(),
                "CSR_SM5": first["soil_moisture_pct"].to_numpy() / 100.0,
            }
        ).dropna(axis="columns", how="all")
        geometry = frame.drop_duplicates("chamber").set_index("chamber")
        ports = pd.DataFrame(
            {
                "CSR_PORT": [port_of[c] for c in chambers],
                "CSR_CHAMBER": chambers,
                "CSR_MSMT_VAR": "Rs",
                "CSR_TREATMENT": "None",
                "CSR_AREA": [geometry.loc[c, "area_cm2"] for c in chambers],
                "CSR_VOLUME": [geometry.loc[c, "volume_cm3"] for c in chambers],
            }
        )
    length = frame["observation_s"].dropna().median() if not frame.empty else None
    description = pd.DataFrame(
        {
            "CSR_SITE_NAME": [info.get("name") or site],
            "CSR_LONGITUDE": [info.get("longitude")],
            "CSR_LATITUDE": [info.get("latitude")],
            "CSR_TIMEZONE": [zone],
            "CSR_INSTRUMENT": [systems[0]["instrument"] if systems else ""],
            "CSR_MSMT_LENGTH": [length],
            "CSR_FILE_FORMAT": ["Processed_csv"],
        }
    )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data.to_csv(out / "data.csv", index=False)
    ports.to_csv(out / "PORTS.csv", index=False)
    description.to_csv(out / "DESCRIPTION.csv", index=False)
    return {"data": data, "ports": ports, "description": description}
