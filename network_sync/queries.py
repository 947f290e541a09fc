"""Analysts' queries and exports of the central database, as pandas DataFrames.

:func:`fluxes` is the one query: observations joined with their fluxes, filtered by site,
system, chamber, gas, time and processing version. The exports reshape it:
:func:`export_cosore` writes a COSORE-compatible data set (data, ports and description
tables with COSORE's column names and units), :func:`export_fluxnet` a FLUXNET-style CSV
(``TIMESTAMP_START``/``TIMESTAMP_END`` in local standard time, ``-9999`` for missing).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from chamberd.controller.errors import ConfigError

from .central import Central

__all__ = [
    "COLUMNS",
    "SIGNIFICANT_DIGITS",
    "campaign_overview",
    "export_cosore",
    "export_fluxnet",
    "fluxes",
    "format_float",
    "parse_time",
]

#: significant digits a written number keeps: more than any instrument or data set
#: resolves, fewer than the 15-17 of a double, so that arithmetic noise
#: (``0.1 * 3 = 0.30000000000000004``, a register times 0.01) is not written
SIGNIFICANT_DIGITS = 12

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


def format_float(value: float) -> str:
    """A number as CSV text without floating-point noise: rounded to
    :data:`SIGNIFICANT_DIGITS` significant digits, then the shortest text that reads back
    as that value (``15.347199999999999`` -> ``15.3472``, ``1.001103444`` stays as it is);
    empty for NaN.

    >>> format_float(15.347199999999999), format_float(0.1 * 3), format_float(1.001103444)
    ('15.3472', '0.3', '1.001103444')
    >>> format_float(2081 * 0.01), format_float(-0.000012345), format_float(320.0)
    ('20.81', '-1.2345e-05', '320')
    """
    if value != value:  # NaN
        return ""
    text = repr(float(f"{value:.{SIGNIFICANT_DIGITS}g}"))
    return text[:-2] if text.endswith(".0") else text


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
    < end. Rows come in time order (begin time, then site, system, chamber, gas, model).
    Times come back as timezone-aware UTC timestamps; fluxes in their ``flux_unit``.
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
        "ORDER BY o.begin_utc, o.site_id, o.system_id, o.chamber, f.gas, f.model"
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


def _to_csv(frame: pd.DataFrame, path: str | Path, **options: Any) -> None:
    """``frame`` as CSV with every number written by :func:`format_float`."""
    frame.to_csv(path, index=False, float_format=format_float, **options)


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per observation in time order (then system, chamber), a flux column per gas
    (missing where the gas was not measured or its value withheld), and the observation's
    own columns."""
    observations = frame.drop_duplicates("uuid").set_index("uuid")
    by_gas = frame.set_index(["uuid", "gas"])["flux"]
    by_gas = by_gas[~by_gas.index.duplicated()].unstack("gas")
    wide = observations.join(by_gas.add_prefix("flux_"))
    wide = wide.sort_values(["begin_utc", "system_id", "chamber"], kind="stable")
    return wide.reset_index()


def export_fluxnet(
    central: Central, path: str | Path, *, site: str, system: str | None = None, **filters: Any
) -> pd.DataFrame:
    """A FLUXNET-style CSV of one site: one row per observation and chamber, in time order.

    Columns: ``TIMESTAMP_START``, ``TIMESTAMP_END`` (YYYYMMDDHHMM, local standard time),
    ``SYSTEM``, ``CHAMBER``, ``FCO2`` (umol m-2 s-1), ``FCH4`` and ``FN2O``
    (nmol m-2 s-1), ``TS`` (soil temperature, degC), ``SWC`` (soil water content, %),
    ``TA`` (chamber air temperature, degC), ``PA`` (kPa); missing values are -9999; numbers
    as :func:`format_float` writes them.
    """
    info = _site(central, site)
    frame = fluxes(central, site=site, system=system, **filters)
    if frame.empty:
        out = pd.DataFrame(columns=["TIMESTAMP_START", "TIMESTAMP_END", "SYSTEM", "CHAMBER"])
    else:
        wide = _wide(frame)
        # the end: as stored, else begin + the observation length
        length = pd.to_timedelta(wide["observation_s"].fillna(0), "s")
        end_utc = wide["end_utc"].fillna(wide["begin_utc"] + length)
        zone = info["time_zone"]
        out = pd.DataFrame(
            {
                "TIMESTAMP_START": _standard_time(wide["begin_utc"], zone).dt.strftime(
                    "%Y%m%d%H%M"
                ),
                "TIMESTAMP_END": _standard_time(end_utc, zone).dt.strftime("%Y%m%d%H%M"),
                "SYSTEM": wide["system_id"],
                "CHAMBER": wide["chamber"],
                "FCO2": wide.get("flux_co2"),
                "FCH4": wide.get("flux_ch4"),
                "FN2O": wide.get("flux_n2o"),
                "TS": wide["soil_temperature_degc"],
                "SWC": wide["soil_moisture_pct"],
                "TA": wide["air_temperature_degc"],
                "PA": wide["pressure_kpa"],
            }
        )
        out = out.dropna(axis="columns", how="all")
    _to_csv(out, path, na_rep="-9999")
    return out


#: COSORE description keys written first, in this order (the rest follow as recorded)
_DESCRIPTION_KEYS = (
    "CSR_SITE_NAME",
    "CSR_LONGITUDE",
    "CSR_LATITUDE",
    "CSR_ELEVATION",
    "CSR_TIMEZONE",
    "CSR_IGBP",
    "CSR_NETWORK",
    "CSR_SITE_ID",
    "CSR_INSTRUMENT",
    "CSR_MSMT_LENGTH",
    "CSR_FILE_FORMAT",
    "CSR_TIMESTAMP_FORMAT",
    "CSR_TIMESTAMP_TZ",
    "CSR_PRIMARY_PUB",
    "CSR_OTHER_PUBS",
    "CSR_DATA_URL",
    "CSR_ACKNOWLEDGMENT",
)
#: the export's own file: how its timestamps are written
_EXPORT_FILE_FORMAT = "Processed_csv"
_EXPORT_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def _metadata(system: dict[str, Any] | None) -> dict[str, Any]:
    """A system's recorded data-set description (``systems.metadata``), or an empty one."""
    text = (system or {}).get("metadata") or ""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _ports_of(chambers: list[str]) -> dict[str, int]:
    """COSORE port numbers: a chamber named ``port<n>`` (an imported data set's) keeps
    ``n``; otherwise the chambers are numbered 1, 2, ... in name order."""
    matches = {c: re.fullmatch(r"port([0-9]{1,6})", c) for c in chambers}
    if chambers and all(matches.values()):
        ports = {c: int(m.group(1)) for c, m in matches.items() if m}
        if len(set(ports.values())) == len(ports):
            return ports
    return {c: i + 1 for i, c in enumerate(sorted(chambers))}


def export_cosore(
    central: Central, folder: str | Path, *, site: str, system: str, **filters: Any
) -> dict[str, pd.DataFrame]:
    """A COSORE-compatible data set of one site and system in ``folder``, rows in time order.

    ``data.csv``: ``CSR_PORT``, ``CSR_TIMESTAMP_BEGIN``, ``CSR_TIMESTAMP_END`` (ISO 8601 with
    the standard-time offset of the data set's zone), ``CSR_FLUX_CO2`` (umol m-2 s-1),
    ``CSR_FLUX_CH4`` (nmol m-2 s-1), the soil temperature (degC) and moisture (m3 m-3) under
    the imported data set's column names (``CSR_T3``, ``CSR_SM5``, ...; else ``CSR_T5``,
    ``CSR_SM5``); ``PORTS.csv``: ``CSR_PORT``, ``CSR_CHAMBER`` (our chamber id),
    ``CSR_MSMT_VAR`` (Rs), ``CSR_TREATMENT``, ``CSR_AREA`` (cm2), ``CSR_VOLUME`` (cm3) and
    the other columns an imported ``PORTS.txt`` had (depth, species, ...);
    ``DESCRIPTION.csv``: ``CSR_SITE_NAME``, ``CSR_LONGITUDE``, ``CSR_LATITUDE``,
    ``CSR_TIMEZONE``, ``CSR_INSTRUMENT``, ``CSR_MSMT_LENGTH``, ``CSR_FILE_FORMAT`` and every
    other key an imported ``DESCRIPTION.txt`` had (elevation, land cover, network,
    publications, acknowledgment, ...). The same three tables also as COSORE's own members
    (``DESCRIPTION.txt``, ``PORTS.txt``, ``data.csv.gz``), so that ``chamberd import
    --format cosore`` reads the export back.

    The description of an imported data set is its own (as recorded in
    ``systems.metadata``); the site's row and the observations fill what it lacks. Numbers
    are written by :func:`format_float`.
    """
    info = _site(central, site)
    systems = central.query(
        "SELECT * FROM systems WHERE site_id = ? AND system_id = ?", (site, system)
    )
    recorded = _metadata(systems[0] if systems else None)
    described = {
        str(k): str(v) for k, v in (recorded.get("description") or {}).items() if v is not None
    }
    columns = recorded.get("columns") or {}
    temperature_column = columns.get("temperature") or "CSR_T5"
    moisture_column = columns.get("moisture") or "CSR_SM5"
    zone = described.get("CSR_TIMEZONE") or info["time_zone"]
    try:
        fixed = dt.timezone(_standard_offset(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = info["time_zone"]
        fixed = dt.timezone(_standard_offset(zone))
    frame = fluxes(central, site=site, system=system, **filters)
    chambers = sorted(frame["chamber"].unique()) if not frame.empty else []
    port_of = _ports_of(chambers)

    def stamp(series: pd.Series) -> pd.Series:
        return series.map(lambda t: t.astimezone(fixed).isoformat() if pd.notna(t) else None)

    if frame.empty:
        data = pd.DataFrame(columns=["CSR_PORT", "CSR_TIMESTAMP_BEGIN", "CSR_TIMESTAMP_END"])
        ports = pd.DataFrame(columns=["CSR_PORT", "CSR_CHAMBER"])
    else:
        wide = _wide(frame)
        wide["port"] = wide["chamber"].map(port_of)
        wide = wide.sort_values(["begin_utc", "port"], kind="stable").reset_index(drop=True)
        data = pd.DataFrame(
            {
                "CSR_PORT": wide["port"],
                "CSR_TIMESTAMP_BEGIN": stamp(wide["begin_utc"]),
                "CSR_TIMESTAMP_END": stamp(wide["end_utc"]),
                "CSR_FLUX_CO2": wide.get("flux_co2"),
                "CSR_FLUX_CH4": wide.get("flux_ch4"),
                temperature_column: wide["soil_temperature_degc"],
                moisture_column: wide["soil_moisture_pct"] / 100.0,
            }
        ).dropna(axis="columns", how="all")
        recorded_ports = {}
        for row in recorded.get("ports") or []:
            try:
                recorded_ports[int(str(row.get("CSR_PORT", "")).strip())] = row
            except ValueError:
                continue
        geometry = frame.drop_duplicates("chamber").set_index("chamber")
        rows = []
        for chamber in chambers:
            number = port_of[chamber]
            own = recorded_ports.get(number) or recorded_ports.get(0) or {}
            row: dict[str, Any] = {
                "CSR_PORT": number,
                "CSR_CHAMBER": chamber,
                "CSR_MSMT_VAR": own.get("CSR_MSMT_VAR") or "Rs",
                "CSR_TREATMENT": own.get("CSR_TREATMENT") or "None",
                "CSR_AREA": geometry.loc[chamber, "area_cm2"],
                "CSR_VOLUME": geometry.loc[chamber, "volume_cm3"],
            }
            for key, value in own.items():
                row.setdefault(key, value)
            rows.append(row)
        ports = pd.DataFrame(rows)
        for column in ("CSR_AREA", "CSR_VOLUME"):
            ports[column] = pd.to_numeric(ports[column]).astype(float)
    length = frame["observation_s"].dropna().median() if not frame.empty else None
    own_values = {
        "CSR_SITE_NAME": info.get("name") or site,
        "CSR_LONGITUDE": _number_text(info.get("longitude")),
        "CSR_LATITUDE": _number_text(info.get("latitude")),
        "CSR_TIMEZONE": zone,
        "CSR_INSTRUMENT": systems[0]["instrument"] if systems else "",
        "CSR_MSMT_LENGTH": _number_text(length),
    }
    entries = {**own_values, **{k: v for k, v in described.items() if v != ""}}
    # the export is its own file: its format and timestamps are this export's
    entries["CSR_FILE_FORMAT"] = _EXPORT_FILE_FORMAT
    entries["CSR_TIMESTAMP_FORMAT"] = _EXPORT_TIMESTAMP_FORMAT
    entries["CSR_TIMESTAMP_TZ"] = zone
    for key, value in described.items():  # empty keys of the data set stay, empty
        entries.setdefault(key, value)
    ordered = [k for k in _DESCRIPTION_KEYS if k in entries]
    ordered += [k for k in entries if k not in ordered]
    description = pd.DataFrame({k: [entries[k]] for k in ordered})
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _to_csv(data, out / "data.csv")
    _to_csv(ports, out / "PORTS.csv")
    description.to_csv(out / "DESCRIPTION.csv", index=False)
    # COSORE's own members, for chamberd import --format cosore and the COSORE tools
    _to_csv(data, out / "data.csv.gz", compression={"method": "gzip", "mtime": 0})
    _to_csv(ports, out / "PORTS.txt")
    (out / "DESCRIPTION.txt").write_text(
        "# DESCRIPTION.txt written by chamberd export (COSORE key: value lines)\n"
        + "".join(f"{k}: {_one_line(entries[k])}\n" for k in ordered),
        encoding="utf-8",
    )
    return {"data": data, "ports": ports, "description": description}


def _number_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return format_float(float(value))


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def campaign_overview(url: str) -> dict[str, Any]:
    """What a central database holds, for ``chamberd serve --central``: its sites, their
    systems (with the number of observations and the latest one), and per site the last
    upload (``ingest_log``: when, how many sent, the site clock's skew and whether it was
    flagged). Opened read-only; the URL is shown without its password."""
    from .central import redact

    with Central.connect(url, mode="read") as central:
        sites = central.query("SELECT site_id, name, time_zone FROM sites ORDER BY site_id")
        systems = central.query(
            "SELECT s.site_id, s.system_id, s.instrument, s.method, s.owner, "
            "(SELECT count(*) FROM observations o WHERE o.site_id = s.site_id "
            "AND o.system_id = s.system_id) AS observations, "
            "(SELECT max(o.begin_utc) FROM observations o WHERE o.site_id = s.site_id "
            "AND o.system_id = s.system_id) AS last_observation "
            "FROM systems s ORDER BY s.site_id, s.system_id"
        )
        uploads = central.query(
            "SELECT l.site_id, l.at, l.kind, l.sent, l.received, l.conflicts, l.skew_s, "
            "l.skew_flagged FROM ingest_log l WHERE l.id = (SELECT max(m.id) FROM ingest_log m "
            "WHERE m.site_id = l.site_id) ORDER BY l.site_id"
        )
    for row in [*systems, *uploads]:
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                row[key] = value.astimezone(dt.UTC).isoformat()
    return {"url": redact(url), "sites": sites, "systems": systems, "last_uploads": uploads}
