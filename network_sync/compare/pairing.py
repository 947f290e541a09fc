"""Series selection from the central database, and pairing in time.

A *series* is named ``SITE/SYSTEM[/CHAMBER[,CHAMBER...]]`` or ``SITE/SYSTEM/plot:NAME``
(:func:`parse_spec`): one chamber (collar), a list of them, every chamber of the system, or
the chambers of a plot. :func:`selection` reads it from the central database (SQLite or
PostgreSQL, read-only is enough) as one row per observation; several chambers become one
series by averaging the collars of each measurement round. :func:`pair` pairs two series in
time, one to one, and says what it could not pair and why.

Rules (docs/analyst.md repeats them for analysts):

Processing version
    ``processing=None`` takes each observation's *selected* flux of the system's own
    processing: every version but the central refits (``central-*``), i.e. ``site-1`` of a
    chamberd site, ``instrument`` of an LI-COR file, ``cosore``, ``manual``. Where an
    observation has a selected flux in more than one of them, the version the series uses
    most wins. A named version (``instrument``, ``cosore``, ``site-1``,
    ``central-exponential-db20s``, ...) takes that version's selected flux; a version the
    series does not have is an error that lists the versions it has.
Observation time
    The middle of the closure, ``(begin + end) / 2``; without a stored end,
    ``begin + observation_s / 2``; without either, the begin time. Intervals (``overlap``
    pairing) run from begin to end (else ``begin + observation_s``, else the begin instant).
Local standard time
    UTC plus the standard offset of the site's zone (``sites.time_zone``): no daylight
    saving, as FLUXNET and COSORE use it. ``Etc/GMT-9`` is UTC+9 (POSIX zones invert the
    sign). Days for the block bootstrap, hours of the diel cycle and blocks are in local
    standard time.
Several chambers: the mean of the collars per round
    Observations are grouped into measurement rounds: consecutive blocks of the system's
    cycle period P (per chamber, the time from its first to its last observation over the
    number of cycles between them; the median over chambers; snapped to a round period such
    as 30 min, 1 h or 1 day when within 0.5 %), placed so that the boundaries fall in the
    middle of the schedule's longest pause (the widest gap between begin times modulo P). A
    collar measured twice in a round counts once (its mean). The round's flux is the mean of
    its collars' finite fluxes, its standard error ``sqrt(sum se^2) / n`` (where every collar
    has one), its time the mean of the collars' times, its interval from the first begin to
    the last end, and ``collar_sd`` the collars' standard deviation. A round with fewer than
    ``min_collars`` finite collars (default: half of the series' chambers, rounded up) is
    left out and counted (``rounds_incomplete``): a mean of other collars is another series.
    A schedule that changes its phase part-way can split rounds: watch that count.
Nearest pairing (the default)
    Candidates are the pairs of finite observations within ``tolerance_s`` of each other.
    They are matched one to one, closest first (greedy by ``|dt|``, ties broken by the
    earlier a-time then the earlier b-time): each observation is used at most once, and a
    pair is kept exactly when it is the closest remaining candidate of both its
    observations. (This greedy matching is computed as rounds of locally closest pairs, which
    gives the same pairs.)
Overlap pairing
    Candidates are pairs whose closure intervals overlap (closed intervals: a closure that
    begins when the other ends counts, with 0 s of overlap). Matched one to one, longest
    overlap first, then the smallest ``|dt|``. ``tolerance_s`` is not used.
Blocks (``block="hour"`` or ``"day"``)
    Each side's finite observations are averaged per block of local standard time (side a's
    zone for both sides, so that a block is the same instant on both). A block pairs when
    both sides reach ``completeness``: the share of the side's expected observations per
    block, ``max(1, round(block length / the side's median observation interval))``, that
    it has (so a sparse side, say weekly, needs one observation in a day). The block's
    ``dt_s`` is the difference of the two sides' mean observation times.
Diagnostics (every :class:`Pairing`)
    Candidates on each side (rows of the series), pairs, and every unpaired row by reason:
    ``non_finite`` (no finite flux), ``outside_period`` (more than the tolerance before the
    other series begins or after it ends), ``no_partner`` (no candidate within the
    tolerance, no overlapping interval, or no observation of the other side in its block),
    ``partner_used`` (its candidates were all taken by closer pairs), ``block_incomplete``
    (its block missed the completeness threshold on one side); median and maximum ``|dt|``.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from chamberd.controller.errors import ConfigError
from chamberd.network_sync.central import Central, redact
from chamberd.network_sync.queries import _standard_offset, parse_time

__all__ = [
    "FRAME_COLUMNS",
    "PAIR_COLUMNS",
    "Matched",
    "Pairing",
    "PairingDiagnostics",
    "Selection",
    "SeriesSpec",
    "Unpaired",
    "pair",
    "pair_all",
    "parse_spec",
    "processing_versions",
    "select",
    "selection",
    "standard_offset_s",
]

_GASES = ("co2", "ch4", "n2o")
_CENTRAL_PREFIX = "central-"
_BLOCK_S = {"hour": 3600.0, "day": 86400.0}
_BLOCK_WORD = {"hour": "hourly", "day": "daily"}
#: candidates held at once by the nearest and overlap pairing (memory bound, ~40 B each)
MAX_CANDIDATES = 50_000_000
_SPEC_FORM = "SITE/SYSTEM, SITE/SYSTEM/CHAMBER[,CHAMBER...] or SITE/SYSTEM/plot:NAME"

#: columns of a selection's frame (one row per observation, or per round of collars)
FRAME_COLUMNS = [
    "time_utc",
    "begin_utc",
    "end_utc",
    "time_local_standard",
    "flux",
    "flux_se",
    "soil_temperature_degc",
    "soil_moisture_pct",
    "chamber",
    "n_collars",
    "collar_sd",
    "processing_version",
    "uuid",
]

#: columns of :attr:`Pairing.pairs`
PAIR_COLUMNS = [
    "time_a",
    "time_b",
    "dt_s",
    "time_utc",
    "time_local_standard",
    "date_local_standard",
    "flux_a",
    "flux_b",
    "flux_se_a",
    "flux_se_b",
    "soil_temperature_degc_a",
    "soil_temperature_degc_b",
    "soil_moisture_pct_a",
    "soil_moisture_pct_b",
    "index_a",
    "index_b",
    "n_a",
    "n_b",
    "overlap_s",
]


# --- series specs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesSpec:
    """One side of a comparison: a site's system, and which of its chambers.

    ``chambers`` empty and ``plot`` None: every chamber of the system.
    """

    site: str
    system: str
    chambers: tuple[str, ...] = ()
    plot: str | None = None

    @property
    def text(self) -> str:
        """The spec as written: ``SITE/SYSTEM[/CHAMBER,...|/plot:NAME]``."""
        base = f"{self.site}/{self.system}"
        if self.plot is not None:
            return f"{base}/plot:{self.plot}"
        if self.chambers:
            return f"{base}/{','.join(self.chambers)}"
        return base

    @property
    def single_chamber(self) -> bool:
        return len(self.chambers) == 1 and self.plot is None

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str | SeriesSpec, option: str = "series") -> SeriesSpec:
    """``SITE/SYSTEM[/CHAMBER[,CHAMBER...]]`` or ``SITE/SYSTEM/plot:NAME`` as a SeriesSpec.

    :class:`ConfigError` naming ``option`` (``--a``) for anything else.

    >>> parse_spec("YMS/ataka/port1,port2").chambers
    ('port1', 'port2')
    >>> parse_spec("XLG/auto/plot:grazed").plot
    'grazed'
    """
    if isinstance(text, SeriesSpec):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"{option}: expected {_SPEC_FORM}, got {text!r}")
    parts = text.strip().split("/", 2)
    if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
        raise ConfigError(f"{option} {text!r}: expected {_SPEC_FORM}")
    site, system = parts[0].strip(), parts[1].strip()
    if len(parts) == 2:
        return SeriesSpec(site, system)
    rest = parts[2].strip()
    if rest.startswith("plot:"):
        plot = rest[5:].strip()
        if not plot:
            raise ConfigError(f"{option} {text!r}: plot: needs a plot name ({_SPEC_FORM})")
        return SeriesSpec(site, system, plot=plot)
    chambers = [c.strip() for c in rest.split(",")]
    if not rest or any(not c for c in chambers):
        raise ConfigError(f"{option} {text!r}: an empty chamber name ({_SPEC_FORM})")
    return SeriesSpec(site, system, tuple(dict.fromkeys(chambers)))


# --- selection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """A series read from the central database, with where it came from.

    ``frame`` has the :data:`FRAME_COLUMNS`, one row per observation (one chamber) or per
    round (several chambers: their mean), in time order: ``time_utc`` (the middle of the
    closure), ``begin_utc``/``end_utc`` (the interval), ``time_local_standard`` (naive,
    local standard time of the site), ``flux`` and ``flux_se`` in ``flux_unit``, the soil
    temperature [degC] and moisture [%], ``chamber`` (the chamber, or ``"mean"``),
    ``n_collars`` and ``collar_sd`` (rounds), ``processing_version`` and ``uuid`` (one
    chamber; empty for rounds).
    """

    spec: SeriesSpec
    frame: pd.DataFrame = field(repr=False)
    gas: str
    flux_unit: str
    #: the version asked for; None: the system's own (selected, not a central refit)
    processing: str | None
    #: the versions the series uses, with their observation counts
    processing_versions: dict[str, int]
    chambers: tuple[str, ...]
    #: "chamber" (one chamber), "round mean" (the mean of the collars per round) or
    #: "chambers" (every observation of several chambers, not averaged)
    aggregation: str
    min_collars: int
    rounds_incomplete: int
    #: observations (flux rows) read, before any averaging
    n_observations: int
    time_zone: str
    standard_offset_s: float
    start_utc: str | None
    end_utc: str | None
    instrument: str
    method: str
    #: the SQL with its parameters, for the provenance block
    query: str
    #: every observation of the series, one row each (FRAME_COLUMNS, ``chamber`` the
    #: collar): ``frame`` itself for one chamber; the collars behind the round means
    observations: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.spec.text

    def describe(self) -> str:
        """One line: the series, its processing and its size."""
        versions = ", ".join(f"{v} ({n})" for v, n in self.processing_versions.items())
        what = (
            f"{len(self)} observations"
            if self.aggregation == "chamber"
            else f"{len(self)} rounds, mean of {len(self.chambers)} collars"
        )
        return f"{self.label}: {what}; processing {versions or 'none'}"

    def __len__(self) -> int:
        return len(self.frame)

    def as_dict(self) -> dict[str, Any]:
        """The provenance as plain values (no frame)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        del out["frame"], out["observations"]
        out["processing_versions"] = dict(self.processing_versions)
        out["spec"] = self.spec.text
        out["site"] = self.spec.site
        out["system"] = self.spec.system
        out["rows"] = len(self.frame)
        out["chambers"] = list(self.chambers)
        return out


def standard_offset_s(zone: str) -> float:
    """The standard (no daylight saving) UTC offset of an IANA zone [s].

    >>> standard_offset_s("Etc/GMT-9") / 3600   # POSIX sign: UTC+9
    9.0
    >>> standard_offset_s("America/New_York") / 3600
    -5.0
    """
    try:
        return _standard_offset(zone).total_seconds()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"time zone {zone!r} is not an IANA zone") from exc


def select(
    central: Central,
    spec: str | SeriesSpec,
    *,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
    processing: str | None = None,
    min_collars: int | None = None,
) -> pd.DataFrame:
    """The series ``spec`` as a DataFrame (:data:`FRAME_COLUMNS`); see :func:`selection`.

    The frame's ``attrs`` hold the provenance (:meth:`Selection.as_dict`).
    """
    chosen = selection(
        central,
        spec,
        gas=gas,
        start=start,
        end=end,
        processing=processing,
        min_collars=min_collars,
    )
    frame = chosen.frame.copy()
    frame.attrs = chosen.as_dict()
    return frame


def selection(
    central: Central,
    spec: str | SeriesSpec,
    *,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
    processing: str | None = None,
    min_collars: int | None = None,
    aggregate: bool = True,
    option: str = "series",
) -> Selection:
    """Read one series from the central database (either backend; read-only is enough).

    Parameters
    ----------
    spec : ``SITE/SYSTEM[/CHAMBER[,CHAMBER...]]``, ``SITE/SYSTEM/plot:NAME`` or a SeriesSpec.
    gas : ``co2``, ``ch4`` or ``n2o``.
    start, end : begin time >= start and < end: ISO 8601 text (a bare date or time is UTC),
        an aware datetime or Timestamp, or None.
    processing : a processing version, or None for each observation's selected flux of the
        system's own processing (module docstring).
    min_collars : rounds with fewer finite collars are left out (several chambers only;
        default half of the chambers, rounded up).
    aggregate : False keeps every observation of several chambers (no round means; the
        ``chamber`` column says which), as the within-system baselines need.
    option : the option named in error messages (``--a``).

    Raises :class:`ConfigError` naming ``option`` for an unknown site, system, chamber, plot
    or processing version, listing those that exist.
    """
    spec = parse_spec(spec, option)
    if gas not in _GASES:
        raise ConfigError(f"gas {gas!r}: expected one of {', '.join(_GASES)}")
    start_utc = _utc_text(start, f"{option} start")
    end_utc = _utc_text(end, f"{option} end")
    site = _site(central, spec, option)
    system = _system(central, spec, option)
    zone = site["time_zone"] or "UTC"
    offset_s = standard_offset_s(zone)
    chambers = _chambers(central, spec, option)
    where = ["o.site_id = ?", "o.system_id = ?", "f.gas = ?", "o.status = 'done'", "f.selected = 1"]
    params: list[Any] = [spec.site, spec.system, gas]
    if chambers:
        where.append(f"o.chamber IN ({', '.join('?' for _ in chambers)})")
        params += list(chambers)
    if processing is None:
        where.append("f.processing_version NOT LIKE ?")
        params.append(_CENTRAL_PREFIX + "%")
    else:
        where.append("f.processing_version = ?")
        params.append(processing)
    if start_utc is not None:
        where.append("o.begin_utc >= ?")
        params.append(start_utc)
    if end_utc is not None:
        where.append("o.begin_utc < ?")
        params.append(end_utc)
    if central.dialect == "postgresql":
        times = (
            "EXTRACT(EPOCH FROM o.begin_utc)::float8 AS begin_s, "
            "EXTRACT(EPOCH FROM o.end_utc)::float8 AS end_s"
        )
    else:
        times = "o.begin_utc AS begin_s, o.end_utc AS end_s"
    uuid = "o.uuid, " if spec.single_chamber else ""  # rounds and baselines do without
    sql = (
        f"SELECT {uuid}o.chamber, {times}, o.observation_s, f.flux, f.flux_se, "
        "o.soil_temperature_degc, o.soil_moisture_pct, f.processing_version, f.flux_unit "
        "FROM observations o JOIN fluxes f ON f.observation_uuid = o.uuid "
        f"WHERE {' AND '.join(where)}"
    )
    raw = _fetch(central, sql, params, central.dialect)
    if processing is not None and raw["n"] == 0:
        versions = processing_versions(central, spec, gas=gas)
        if processing not in versions:
            listed = ", ".join(f"{v} ({n})" for v, n in versions.items()) or "none"
            raise ConfigError(
                f"{option}-processing {processing!r}: {spec.text} has no selected {gas} "
                f"fluxes in that processing version; its versions: {listed}"
            )
    units = set(raw["flux_unit"])
    if len(units) > 1:
        raise ConfigError(f"{option} {spec.text}: {gas} fluxes in several units: {sorted(units)}")
    raw = _one_version_per_observation(raw)
    versions = dict(
        sorted(
            pd.Series(raw["processing_version"], dtype=object).value_counts().items(),
            key=lambda kv: (-kv[1], kv[0]),
        )
    )
    present = chambers or tuple(sorted(set(raw["chamber"])))
    several = aggregate and not spec.single_chamber and len(present) > 1
    observations = _observation_frame(raw, offset_s)
    if several:
        need = math.ceil(len(present) / 2) if min_collars is None else int(min_collars)
        if need < 1:
            raise ConfigError(f"{option}: min_collars must be >= 1, got {min_collars!r}")
        frame, incomplete = _round_means(raw, need, offset_s)
    else:
        need, incomplete = 1, 0
        frame = observations
    shown = sql
    for value in params:
        shown = shown.replace("?", repr(value), 1)
    return Selection(
        spec=spec,
        frame=frame,
        gas=gas,
        flux_unit=next(iter(units)) if units else _UNITS[gas],
        processing=processing,
        processing_versions={str(k): int(v) for k, v in versions.items()},
        chambers=tuple(present),
        aggregation="round mean" if several else "chamber" if len(present) < 2 else "chambers",
        min_collars=need,
        rounds_incomplete=incomplete,
        n_observations=len(raw["flux"]),
        time_zone=zone,
        standard_offset_s=offset_s,
        start_utc=start_utc,
        end_utc=end_utc,
        instrument=str(system.get("instrument") or ""),
        method=str(system.get("method") or ""),
        query=f"{shown}  -- on {redact(central.url)}",
        observations=observations,
    )


_UNITS = {"co2": "umol m-2 s-1", "ch4": "nmol m-2 s-1", "n2o": "nmol m-2 s-1"}


def processing_versions(
    central: Central,
    spec: str | SeriesSpec,
    *,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
) -> dict[str, int]:
    """The processing versions with selected ``gas`` fluxes of a series, and how many
    observations each has (most first)."""
    spec = parse_spec(spec)
    where = ["o.site_id = ?", "o.system_id = ?", "f.gas = ?", "f.selected = 1", "o.status = 'done'"]
    params: list[Any] = [spec.site, spec.system, gas]
    chambers = _chambers(central, spec, "series")
    if chambers:
        where.append(f"o.chamber IN ({', '.join('?' for _ in chambers)})")
        params += list(chambers)
    for column, op, value in (("o.begin_utc", ">=", start), ("o.begin_utc", "<", end)):
        text = _utc_text(value, "time")
        if text is not None:
            where.append(f"{column} {op} ?")
            params.append(text)
    rows = central.query(
        "SELECT f.processing_version AS version, count(*) AS n FROM fluxes f "
        "JOIN observations o ON o.uuid = f.observation_uuid "
        f"WHERE {' AND '.join(where)} GROUP BY f.processing_version",
        params,
    )
    return {
        r["version"]: int(r["n"]) for r in sorted(rows, key=lambda r: (-int(r["n"]), r["version"]))
    }


def has_raw_traces(central: Central, chosen: Selection) -> bool:
    """Whether any observation of the selection's chambers and period has raw samples."""
    where = ["o.site_id = ?", "o.system_id = ?"]
    params: list[Any] = [chosen.spec.site, chosen.spec.system]
    if chosen.chambers:
        where.append(f"o.chamber IN ({', '.join('?' for _ in chosen.chambers)})")
        params += list(chosen.chambers)
    if chosen.start_utc is not None:
        where.append("o.begin_utc >= ?")
        params.append(chosen.start_utc)
    if chosen.end_utc is not None:
        where.append("o.begin_utc < ?")
        params.append(chosen.end_utc)
    rows = central.query(
        "SELECT 1 AS x FROM samples s JOIN observations o ON o.uuid = s.observation_uuid "
        f"WHERE {' AND '.join(where)} LIMIT 1",
        params,
    )
    return bool(rows)


def _utc_text(value: Any, name: str) -> str | None:
    """A time bound as the stored UTC text (queries.parse_time's form)."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value, name)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return parse_time(value.isoformat(), name)
    raise ConfigError(f"{name} {value!r}: expected an ISO 8601 time or a datetime")


def _listing(values: Sequence[str], limit: int = 40) -> str:
    values = list(values)
    if not values:
        return "none"
    shown = ", ".join(values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"


def _site(central: Central, spec: SeriesSpec, option: str) -> dict[str, Any]:
    rows = central.query("SELECT site_id, time_zone FROM sites WHERE site_id = ?", (spec.site,))
    if rows:
        return rows[0]
    sites = [r["site_id"] for r in central.query("SELECT site_id FROM sites ORDER BY site_id")]
    raise ConfigError(f"{option} {spec.text}: no site {spec.site!r}; sites: {_listing(sites)}")


def _system(central: Central, spec: SeriesSpec, option: str) -> dict[str, Any]:
    rows = central.query(
        "SELECT system_id, instrument, method FROM systems WHERE site_id = ? AND system_id = ?",
        (spec.site, spec.system),
    )
    if rows:
        return rows[0]
    systems = [
        r["system_id"]
        for r in central.query(
            "SELECT system_id FROM systems WHERE site_id = ? ORDER BY system_id", (spec.site,)
        )
    ]
    raise ConfigError(
        f"{option} {spec.text}: site {spec.site!r} has no system {spec.system!r}; "
        f"its systems: {_listing(systems)}"
    )


def _all_chambers(central: Central, spec: SeriesSpec) -> list[str]:
    rows = central.query(
        "SELECT DISTINCT chamber FROM observations WHERE site_id = ? AND system_id = ?",
        (spec.site, spec.system),
    )
    known = {r["chamber"] for r in rows}
    known |= {
        r["chamber"]
        for r in central.query(
            "SELECT DISTINCT chamber FROM chambers WHERE site_id = ? AND system_id = ?",
            (spec.site, spec.system),
        )
    }
    return sorted(known)


def _chambers(central: Central, spec: SeriesSpec, option: str) -> tuple[str, ...]:
    """The chambers a spec names (empty: every chamber of the system)."""
    if spec.plot is not None:
        rows = central.query(
            "SELECT DISTINCT chamber FROM chambers WHERE site_id = ? AND system_id = ? "
            "AND plot = ?",
            (spec.site, spec.system, spec.plot),
        )
        if rows:
            return tuple(sorted(r["chamber"] for r in rows))
        plots = [
            r["plot"]
            for r in central.query(
                "SELECT DISTINCT plot FROM chambers WHERE site_id = ? AND system_id = ? "
                "AND plot <> '' ORDER BY plot",
                (spec.site, spec.system),
            )
        ]
        where = (
            f"its plots: {_listing(plots)}"
            if plots
            else "it records no plots (plots come from a chamberd site's chamber labels)"
        )
        raise ConfigError(
            f"{option} {spec.text}: {spec.site}/{spec.system} has no plot {spec.plot!r}; {where}"
        )
    if not spec.chambers:
        return ()
    marks = ", ".join("?" for _ in spec.chambers)
    found = {
        r["chamber"]
        for r in central.query(
            "SELECT DISTINCT chamber FROM observations WHERE site_id = ? AND system_id = ? "
            f"AND chamber IN ({marks})",
            (spec.site, spec.system, *spec.chambers),
        )
    }
    missing = [c for c in spec.chambers if c not in found]
    if missing:
        raise ConfigError(
            f"{option} {spec.text}: {spec.site}/{spec.system} has no chamber "
            f"{', '.join(map(repr, missing))}; its chambers: "
            f"{_listing(_all_chambers(central, spec))}"
        )
    return spec.chambers


_TEXT_COLUMNS = ("uuid", "chamber", "processing_version", "flux_unit")
_FLOAT_COLUMNS = ("observation_s", "flux", "flux_se", "soil_temperature_degc", "soil_moisture_pct")


def _fetch(central: Central, sql: str, params: Sequence[Any], dialect: str) -> dict[str, Any]:
    """The rows as numpy columns, read as CSV (:meth:`Central.query_csv`: PostgreSQL's
    ``COPY``), so a million rows stay fast and small."""
    data = central.query_csv(sql, params)
    frame = pd.read_csv(
        io.BytesIO(data),
        dtype={**dict.fromkeys(_TEXT_COLUMNS, str), **dict.fromkeys(_FLOAT_COLUMNS, float)},
        keep_default_na=False,
        na_values=[""],
    )
    out: dict[str, Any] = {}
    for name in _TEXT_COLUMNS:
        if name in frame.columns:
            out[name] = frame[name].to_numpy(dtype=object)
        else:
            out[name] = np.full(len(frame), "", dtype=object)
    for name in _FLOAT_COLUMNS:
        out[name] = frame[name].to_numpy(dtype=float)
    for name in ("begin_s", "end_s"):
        out[name] = _as_seconds(frame[name], dialect)
    out["n"] = len(frame)
    return out


def _as_seconds(values: pd.Series, dialect: str) -> np.ndarray:
    """Times (PostgreSQL: epoch seconds already; SQLite: ISO text) as UTC epoch seconds."""
    if dialect == "postgresql":
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    text = values.astype(object).where(values.notna(), None)
    stamps = pd.to_datetime(pd.Series(text, dtype=object), utc=True, format="ISO8601")
    return _seconds(stamps)


_EPOCH = pd.Timestamp(0, tz="UTC")


def _seconds(stamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Aware timestamps as float epoch seconds (NaT -> NaN), whatever their resolution."""
    delta = pd.Series(stamps) - _EPOCH
    return delta.dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)


def _stamps(seconds: np.ndarray) -> pd.Series:
    """Float epoch seconds as aware UTC timestamps to the microsecond (NaN -> NaT)."""
    seconds = np.asarray(seconds, dtype=float)
    out = np.full(seconds.shape, np.datetime64("NaT"), dtype="datetime64[us]")
    ok = np.isfinite(seconds)
    out[ok] = np.round(seconds[ok] * 1e6).astype("int64").astype("datetime64[us]")
    return pd.Series(out).dt.tz_localize("UTC")


def _local(seconds: np.ndarray, offset_s: float) -> pd.Series:
    """Float epoch seconds as naive local standard time."""
    return _stamps(np.asarray(seconds, dtype=float) + offset_s).dt.tz_localize(None)


def _one_version_per_observation(raw: dict[str, Any]) -> dict[str, Any]:
    """Where an observation has selected fluxes in several versions, keep the version the
    series uses most (then the first by name)."""
    n = raw["n"]
    if n < 2:
        return raw
    key = pd.DataFrame({"chamber": raw["chamber"], "begin": raw["begin_s"]})
    dupes = key.duplicated(keep=False).to_numpy()
    if not dupes.any():
        return raw
    counts = pd.Series(raw["processing_version"]).value_counts()
    rank = {v: i for i, v in enumerate(sorted(counts.index, key=lambda v: (-counts[v], v)))}
    order = pd.DataFrame(
        {
            "chamber": raw["chamber"],
            "begin": raw["begin_s"],
            "rank": [rank[v] for v in raw["processing_version"]],
            "row": np.arange(n),
        }
    ).sort_values(["begin", "chamber", "rank"], kind="stable")
    keep = np.sort(order.drop_duplicates(["chamber", "begin"])["row"].to_numpy())
    out = {k: v[keep] for k, v in raw.items() if isinstance(v, np.ndarray)}
    out["n"] = len(keep)
    return out


def _intervals(raw: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(begin, end, middle) epoch seconds of each observation (module docstring)."""
    begin = raw["begin_s"]
    length = raw["observation_s"]
    end = raw["end_s"].copy()
    no_end = ~np.isfinite(end)
    with_length = no_end & np.isfinite(length) & (length >= 0)
    end[with_length] = begin[with_length] + length[with_length]
    end[no_end & ~with_length] = begin[no_end & ~with_length]
    end = np.maximum(end, begin)  # an end before the begin: the begin instant
    return begin, end, begin + (end - begin) / 2.0


def _observation_frame(raw: dict[str, Any], offset_s: float) -> pd.DataFrame:
    begin, end, middle = _intervals(raw)
    order = np.argsort(middle, kind="stable")
    frame = pd.DataFrame(
        {
            "time_utc": _stamps(middle[order]),
            "begin_utc": _stamps(begin[order]),
            "end_utc": _stamps(end[order]),
            "time_local_standard": _local(middle[order], offset_s),
            "flux": raw["flux"][order],
            "flux_se": raw["flux_se"][order],
            "soil_temperature_degc": raw["soil_temperature_degc"][order],
            "soil_moisture_pct": raw["soil_moisture_pct"][order],
            "chamber": pd.Series(raw["chamber"][order], dtype=object),
            "n_collars": np.ones(len(order), dtype=int),
            "collar_sd": np.full(len(order), np.nan),
            "processing_version": pd.Series(raw["processing_version"][order], dtype=object),
            "uuid": pd.Series(raw["uuid"][order], dtype=object),
        },
        columns=FRAME_COLUMNS,
    )
    return frame


def assign_rounds(chamber: Sequence[Any], begin_s: np.ndarray) -> np.ndarray:
    """The measurement round of each observation (module docstring): 0, 1, ... in time.

    Rounds are blocks of the cycle period (:func:`cycle_period`) whose boundaries fall in
    the middle of the longest pause of the schedule: the largest gap between the begin
    times taken modulo the period. Vectorised; a gap in the data or a missing collar does
    not shift the rounds that follow.
    """
    begin_s = np.asarray(begin_s, dtype=float)
    if len(begin_s) == 0:
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(pd.Series(chamber, dtype=object))
    period = cycle_period(codes, begin_s)
    if not math.isfinite(period):  # no chamber measured twice: one round
        return np.zeros(len(begin_s), dtype=np.int64)
    phase = np.unique(np.mod(begin_s, period))
    gaps = np.diff(np.append(phase, phase[0] + period))
    widest = int(np.argmax(gaps))
    boundary = phase[widest] + gaps[widest] / 2.0
    blocks = np.floor((begin_s - boundary) / period)
    _, ids = np.unique(blocks, return_inverse=True)
    return ids.astype(np.int64)


#: cycle periods a schedule is snapped to when within 0.5 % (clock-aligned rounds)
_NICE_PERIODS_S = (
    60.0,
    120.0,
    180.0,
    240.0,
    300.0,
    360.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    10800.0,
    14400.0,
    21600.0,
    28800.0,
    43200.0,
    *(86400.0 * d for d in range(1, 32)),
)


def cycle_period(codes: Sequence[Any], begin_s: np.ndarray) -> float:
    """A system's cycle period [s]: per chamber, the time between its first and last
    observation over the number of periods between them (counted with the median interval),
    the median over chambers; snapped to a round period (30 min, 1 h, 1 day, ...) within
    0.5 %. ``inf`` when no chamber was measured twice."""
    frame = pd.DataFrame({"c": np.asarray(codes), "t": np.asarray(begin_s, dtype=float)})
    frame = frame.sort_values(["c", "t"], kind="stable")
    gaps = frame.groupby("c")["t"].diff()
    typical = gaps[gaps > 0].groupby(frame["c"]).median()
    if not len(typical):
        return math.inf
    span = frame.groupby("c")["t"].agg(lambda t: t.max() - t.min()).loc[typical.index]
    cycles = np.maximum(np.round(span / typical), 1.0)
    period = float(np.median(span / cycles))
    for nice in _NICE_PERIODS_S:
        if abs(period - nice) <= 0.005 * nice:
            return nice
    return period


def _round_means(
    raw: dict[str, Any], min_collars: int, offset_s: float
) -> tuple[pd.DataFrame, int]:
    """The mean of the collars per round; rounds with fewer than ``min_collars`` finite
    collars are left out (their number is returned). A collar measured twice in a round
    counts once (its mean)."""
    begin, end, middle = _intervals(raw)
    rounds = assign_rounds(raw["chamber"], begin)
    frame = pd.DataFrame(
        {
            "round": rounds,
            "chamber": pd.Series(raw["chamber"], dtype=object),
            "begin": begin,
            "end": end,
            "t": middle,
            "flux": raw["flux"],
            "se2": raw["flux_se"] ** 2,
            "temperature": raw["soil_temperature_degc"],
            "moisture": raw["soil_moisture_pct"],
            "version": pd.Series(raw["processing_version"], dtype=object),
        }
    )
    all_rounds = int(rounds.max()) + 1 if len(rounds) else 0
    finite = frame[np.isfinite(frame["flux"].to_numpy())]
    # stage 1: one value per collar and round
    collars = finite.groupby(["round", "chamber"], sort=False).agg(
        begin=("begin", "min"),
        end=("end", "max"),
        t=("t", "mean"),
        flux=("flux", "mean"),
        se2=("se2", "mean"),
        n_se=("se2", "count"),
        n=("flux", "size"),
        temperature=("temperature", "mean"),
        moisture=("moisture", "mean"),
        version=("version", "first"),
    )
    collars["se2"] = collars["se2"].where(collars["n_se"] == collars["n"]) / collars["n"]
    # stage 2: the mean over the collars of each round
    grouped = collars.groupby(level="round", sort=True)
    means = grouped.agg(
        begin=("begin", "min"),
        end=("end", "max"),
        t=("t", "mean"),
        flux=("flux", "mean"),
        collar_sd=("flux", "std"),
        n_collars=("flux", "size"),
        se2_sum=("se2", "sum"),
        n_se=("se2", "count"),
        temperature=("temperature", "mean"),
        moisture=("moisture", "mean"),
        version=("version", "first"),
    )
    means["flux_se"] = np.sqrt(means["se2_sum"]) / means["n_collars"]
    means.loc[means["n_se"] != means["n_collars"], "flux_se"] = np.nan
    keep = means[means["n_collars"] >= min_collars].sort_values("t", kind="stable")
    incomplete = all_rounds - len(keep)
    t = keep["t"].to_numpy(dtype=float)
    out = pd.DataFrame(
        {
            "time_utc": _stamps(t),
            "begin_utc": _stamps(keep["begin"].to_numpy(dtype=float)),
            "end_utc": _stamps(keep["end"].to_numpy(dtype=float)),
            "time_local_standard": _local(t, offset_s),
            "flux": keep["flux"].to_numpy(dtype=float),
            "flux_se": keep["flux_se"].to_numpy(dtype=float),
            "soil_temperature_degc": keep["temperature"].to_numpy(dtype=float),
            "soil_moisture_pct": keep["moisture"].to_numpy(dtype=float),
            "chamber": pd.Series(["mean"] * len(keep), dtype=object),
            "n_collars": keep["n_collars"].to_numpy(dtype=np.int64),
            "collar_sd": keep["collar_sd"].to_numpy(dtype=float),
            "processing_version": pd.Series(keep["version"].to_numpy(), dtype=object),
            "uuid": pd.Series([""] * len(keep), dtype=object),
        },
        columns=FRAME_COLUMNS,
    )
    return out, incomplete


# --- pairing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpaired:
    """Rows of one side left unpaired, by reason (module docstring)."""

    non_finite: int = 0
    outside_period: int = 0
    no_partner: int = 0
    partner_used: int = 0
    block_incomplete: int = 0

    @property
    def total(self) -> int:
        return (
            self.non_finite
            + self.outside_period
            + self.no_partner
            + self.partner_used
            + self.block_incomplete
        )

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    def text(self) -> str:
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items() if v]
        return ", ".join(parts) if parts else "none"


@dataclass(frozen=True)
class PairingDiagnostics:
    """What the pairing did: candidates, pairs, unpaired rows by reason, |dt|.

    ``candidates_a``/``_b`` are the rows of each series (observations or rounds). In block
    mode ``pairs`` counts paired blocks, ``blocks_a``/``_b`` the blocks holding a finite
    observation, ``blocks_incomplete`` the blocks with observations on both sides that
    missed the completeness threshold, ``expected_a``/``_b`` the expected observations per
    block. ``median_abs_dt_s``/``max_abs_dt_s`` are None without pairs.
    """

    method: str
    tolerance_s: float | None
    block: str | None
    completeness: float | None
    candidates_a: int
    candidates_b: int
    pairs: int
    unpaired_a: Unpaired
    unpaired_b: Unpaired
    median_abs_dt_s: float | None
    max_abs_dt_s: float | None
    blocks_a: int | None = None
    blocks_b: int | None = None
    blocks_incomplete: int | None = None
    expected_a: int | None = None
    expected_b: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unpaired_a"] = self.unpaired_a.as_dict()
        out["unpaired_b"] = self.unpaired_b.as_dict()
        return out

    def lines(self) -> list[str]:
        """A few readable lines for the terminal and the report."""
        if self.block:
            how = (
                f"{_BLOCK_WORD[self.block]} means, completeness >= {self.completeness:g} on "
                f"both sides (expected per block: a {self.expected_a}, b {self.expected_b})"
            )
        elif self.method == "nearest":
            how = f"nearest within {(self.tolerance_s or 0.0) / 60:g} min, one to one"
        else:
            how = "overlapping closures, one to one"
        unit = "blocks" if self.block else "pairs"
        lines = [f"pairing: {how}: {self.pairs} {unit}"]
        lines.append(
            f"  a: {self.candidates_a} candidates, unpaired {self.unpaired_a.total} "
            f"({self.unpaired_a.text()})"
        )
        lines.append(
            f"  b: {self.candidates_b} candidates, unpaired {self.unpaired_b.total} "
            f"({self.unpaired_b.text()})"
        )
        if self.block:
            lines.append(
                f"  blocks: a {self.blocks_a}, b {self.blocks_b}, incomplete "
                f"{self.blocks_incomplete}"
            )
        if self.median_abs_dt_s is not None:
            lines.append(
                f"  |dt|: median {_duration(self.median_abs_dt_s)}, "
                f"max {_duration(self.max_abs_dt_s or 0.0)}"
            )
        return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Pairing:
    """Pairs of two series (:data:`PAIR_COLUMNS`) and the pairing's diagnostics.

    ``pairs``: ``time_a``/``time_b`` (UTC), ``dt_s`` = b - a [s], ``time_utc`` (their
    middle), ``time_local_standard`` and ``date_local_standard`` (side a's zone; blocks:
    the block's start), the two sides' flux, standard error, soil temperature and moisture
    (``_a``/``_b``), ``index_a``/``index_b`` (row of each series; -1 for blocks), ``n_a``/
    ``n_b`` (observations per side: 1, or per block) and ``overlap_s`` (overlap pairing).
    """

    pairs: pd.DataFrame = field(repr=False)
    diagnostics: PairingDiagnostics

    def __len__(self) -> int:
        return len(self.pairs)


def pair(
    a: pd.DataFrame | Selection,
    b: pd.DataFrame | Selection,
    *,
    tolerance_s: float = 900.0,
    method: str = "nearest",
    block: str | None = None,
    completeness: float = 0.5,
) -> Pairing:
    """Pair two series in time, one to one (module docstring for the rules).

    Parameters
    ----------
    a, b : selections or their frames (:data:`FRAME_COLUMNS`; at least ``time_utc``,
        ``flux`` and, for local times, ``time_local_standard``).
    tolerance_s : the largest ``|dt|`` of a nearest pair [s].
    method : ``nearest`` or ``overlap``.
    block : None, ``hour`` or ``day``: pair hourly or daily means (local standard time).
    completeness : share of the expected observations per block each side needs, 0..1.

    Examples
    --------
    >>> t = pd.to_datetime(["2026-07-01T00:00Z", "2026-07-01T00:30Z"])
    >>> a = pd.DataFrame({"time_utc": t, "flux": [1.0, 2.0]})
    >>> b = pd.DataFrame({"time_utc": t + pd.Timedelta("4min"), "flux": [1.1, 2.2]})
    >>> p = pair(a, b, tolerance_s=300)
    >>> p.diagnostics.pairs, p.diagnostics.max_abs_dt_s
    (2, 240.0)
    """
    completeness = _check(method, block, tolerance_s, completeness)
    fa = a.frame if isinstance(a, Selection) else a
    fb = b.frame if isinstance(b, Selection) else b
    sa, sb = _Side.of(fa), _Side.of(fb)
    if block is not None:
        return _pair_blocks(sa, sb, method, float(tolerance_s), block, completeness)
    ia, ib, overlap, diagnostics = _match(sa, sb, method, float(tolerance_s))
    return Pairing(_pairs_frame(sa, sb, ia, ib, overlap), diagnostics)


def _check(method: str, block: str | None, tolerance_s: Any, completeness: Any) -> float:
    """Validate pair()'s settings; the completeness as a float."""
    if method not in ("nearest", "overlap"):
        raise ConfigError(f"pairing method {method!r}: expected nearest or overlap")
    if block not in (None, "hour", "day"):
        raise ConfigError(f"block {block!r}: expected hour, day or none")
    try:
        tolerance = float(tolerance_s)
    except (TypeError, ValueError):
        raise ConfigError(f"tolerance {tolerance_s!r}: expected seconds") from None
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance {tolerance_s!r}: must be >= 0 and finite")
    try:
        share = float(completeness)
    except (TypeError, ValueError):
        raise ConfigError(f"completeness {completeness!r}: a share from 0 to 1") from None
    if not (0.0 <= share <= 1.0):
        raise ConfigError(f"completeness {completeness!r}: a share from 0 to 1")
    return share


def _match(
    sa: _Side, sb: _Side, method: str, tolerance_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, PairingDiagnostics]:
    """Matched rows of a and b, their overlap [s] and the diagnostics (no blocks)."""
    if method == "nearest":
        ia, ib, cand_a, cand_b = _nearest(sa, sb, tolerance_s)
        overlap = np.full(len(ia), np.nan)
    else:
        ia, ib, cand_a, cand_b, overlap = _overlap(sa, sb)
    outside_tol = tolerance_s if method == "nearest" else 0.0
    diagnostics = PairingDiagnostics(
        method=method,
        tolerance_s=tolerance_s if method == "nearest" else None,
        block=None,
        completeness=None,
        candidates_a=sa.n,
        candidates_b=sb.n,
        pairs=len(ia),
        unpaired_a=_unpaired(sa, sb, ia, cand_a, outside_tol),
        unpaired_b=_unpaired(sb, sa, ib, cand_b, outside_tol),
        **_dt_summary(sb.t[ib] - sa.t[ia]),
    )
    return ia, ib, overlap, diagnostics


@dataclass(frozen=True)
class Matched:
    """The pairs of two of several series, as arrays (:func:`pair_all`)."""

    a: str
    b: str
    flux_a: np.ndarray
    flux_b: np.ndarray
    #: local standard day of each pair (side a's zone), as a day number since 1970-01-01
    day: np.ndarray
    diagnostics: PairingDiagnostics


def pair_all(
    frames: Mapping[str, pd.DataFrame],
    *,
    tolerance_s: float = 900.0,
    method: str = "nearest",
    block: str | None = None,
    completeness: float = 0.5,
) -> list[Matched]:
    """Every pair of several series (``a`` before ``b`` in the mapping's order), paired as
    :func:`pair` pairs two, each series prepared once: the within-system baselines pair all
    the collars of a system this way."""
    share = _check(method, block, tolerance_s, completeness)
    keys = list(frames)
    sides = {k: _Side.of(frames[k]) for k in keys}
    out = []
    for i, ka in enumerate(keys):
        for kb in keys[i + 1 :]:
            sa, sb = sides[ka], sides[kb]
            if block is not None:
                paired = _pair_blocks(sa, sb, method, float(tolerance_s), block, share)
                fa = paired.pairs["flux_a"].to_numpy(dtype=float)
                fb = paired.pairs["flux_b"].to_numpy(dtype=float)
                local = paired.pairs["date_local_standard"]
                day = ((local - pd.Timestamp(0)) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)
                out.append(Matched(ka, kb, fa, fb, day, paired.diagnostics))
                continue
            ia, ib, _, diagnostics = _match(sa, sb, method, float(tolerance_s))
            middle = (sa.t[ia] + sb.t[ib]) / 2.0 + sa.offset_s
            day = np.floor(middle / 86400.0).astype(np.int64)
            out.append(Matched(ka, kb, sa.flux[ia], sb.flux[ib], day, diagnostics))
    return out


@dataclass
class _Side:
    """One series as arrays: times in epoch seconds, finite-flux mask."""

    frame: pd.DataFrame
    t: np.ndarray
    begin: np.ndarray
    end: np.ndarray
    flux: np.ndarray
    finite: np.ndarray
    offset_s: float

    @property
    def n(self) -> int:
        return len(self.t)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Side:
        for column in ("time_utc", "flux"):
            if column not in frame.columns:
                raise ConfigError(f"a series to pair needs a {column!r} column")
        t = _seconds(_aware(frame["time_utc"]))
        begin = _seconds(_aware(frame["begin_utc"])) if "begin_utc" in frame else t.copy()
        end = _seconds(_aware(frame["end_utc"])) if "end_utc" in frame else t.copy()
        begin = np.where(np.isfinite(begin), begin, t)
        end = np.where(np.isfinite(end), end, begin)
        flux = pd.to_numeric(frame["flux"], errors="coerce").to_numpy(dtype=float)
        offset = 0.0
        if "time_local_standard" in frame and len(frame):
            local = pd.to_datetime(frame["time_local_standard"])
            if local.dt.tz is not None:
                local = local.dt.tz_localize(None)
            naive = _aware(frame["time_utc"]).dt.tz_localize(None)
            diffs = (local - naive).dt.total_seconds().dropna()
            offset = float(diffs.median()) if len(diffs) else 0.0
        finite = np.isfinite(flux) & np.isfinite(t)
        return cls(frame.reset_index(drop=True), t, begin, end, flux, finite, offset)


def _aware(series: pd.Series) -> pd.Series:
    values = pd.to_datetime(series)
    if values.dt.tz is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def _candidates(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (row, column) with column in [lo[row], hi[row])."""
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total > MAX_CANDIDATES:
        raise ConfigError(
            f"{total} candidate pairs: the tolerance is too wide for series this dense "
            "(use a smaller --tolerance, or --block)"
        )
    rows = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    columns = lo[rows] + (np.arange(total) - starts[rows])
    return rows, columns


def _nearest(
    sa: _Side, sb: _Side, tolerance_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy closest-first one-to-one matching of finite rows within the tolerance.

    Returns the matched row indices of a and b (in a-time order) and the number of
    candidates each row had.
    """
    ra = np.flatnonzero(sa.finite)
    rb = np.flatnonzero(sb.finite)
    ta = sa.t[ra]
    order_b = np.argsort(sb.t[rb], kind="stable")
    rb = rb[order_b]
    tb = sb.t[rb]
    lo = np.searchsorted(tb, ta - tolerance_s, side="left")
    hi = np.searchsorted(tb, ta + tolerance_s, side="right")
    ci, cj = _candidates(lo, hi)
    cost = np.abs(tb[cj] - ta[ci])
    # a strict total order: |dt|, then the earlier a-time, then the earlier b-time
    rank_order = np.lexsort((tb[cj], ta[ci], cost))
    ma, mb = _greedy(ci[rank_order], cj[rank_order], len(ra), len(rb))
    cand_a = np.zeros(sa.n, dtype=np.int64)
    cand_a[ra] = np.bincount(ci, minlength=len(ra))
    cand_b = np.zeros(sb.n, dtype=np.int64)
    cand_b[rb] = np.bincount(cj, minlength=len(rb))
    ia, ib = ra[ma], rb[mb]
    by_time = np.lexsort((sb.t[ib], sa.t[ia]))
    return ia[by_time], ib[by_time], cand_a, cand_b


def _overlap(
    sa: _Side, sb: _Side
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of overlapping closures, longest overlap first."""
    ra = np.flatnonzero(sa.finite)
    rb = np.flatnonzero(sb.finite)
    order_b = np.argsort(sb.begin[rb], kind="stable")
    rb = rb[order_b]
    bb, eb = sb.begin[rb], sb.end[rb]
    ba, ea = sa.begin[ra], sa.end[ra]
    longest = float(np.max(eb - bb)) if len(rb) else 0.0
    lo = np.searchsorted(bb, ba - longest, side="left")
    hi = np.searchsorted(bb, ea, side="right")
    ci, cj = _candidates(lo, hi)
    overlap = np.minimum(ea[ci], eb[cj]) - np.maximum(ba[ci], bb[cj])
    real = overlap >= 0
    ci, cj, overlap = ci[real], cj[real], overlap[real]
    cost = np.abs(sb.t[rb][cj] - sa.t[ra][ci])
    rank_order = np.lexsort((sb.t[rb][cj], sa.t[ra][ci], cost, -overlap))
    ma, mb = _greedy(ci[rank_order], cj[rank_order], len(ra), len(rb))
    cand_a = np.zeros(sa.n, dtype=np.int64)
    cand_a[ra] = np.bincount(ci, minlength=len(ra))
    cand_b = np.zeros(sb.n, dtype=np.int64)
    cand_b[rb] = np.bincount(cj, minlength=len(rb))
    ia, ib = ra[ma], rb[mb]
    ov = np.minimum(sa.end[ia], sb.end[ib]) - np.maximum(sa.begin[ia], sb.begin[ib])
    by_time = np.lexsort((sb.t[ib], sa.t[ia]))
    return ia[by_time], ib[by_time], cand_a, cand_b, ov[by_time]


def _greedy(ci: np.ndarray, cj: np.ndarray, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of candidates given in priority order (best first).

    A candidate is taken when neither of its rows is taken yet, in that order. Computed as
    rounds of *locally dominant* candidates (the best remaining of both its rows), which
    gives the same matching (Preis 1999, doi:10.1007/3-540-49116-3_24) in a few vectorised
    rounds; a remainder after 30 rounds (long chains of ever-closer candidates) is finished
    by the plain loop.
    """
    m = len(ci)
    match_a = np.full(na, -1, dtype=np.int64)
    match_b = np.full(nb, -1, dtype=np.int64)
    active = np.arange(m)
    for _ in range(30):
        if active.size == 0:
            break
        ai, bj = ci[active], cj[active]
        best_a = np.full(na, m, dtype=np.int64)
        np.minimum.at(best_a, ai, active)
        best_b = np.full(nb, m, dtype=np.int64)
        np.minimum.at(best_b, bj, active)
        take = (best_a[ai] == active) & (best_b[bj] == active)
        match_a[ai[take]] = bj[take]
        match_b[bj[take]] = ai[take]
        free = (match_a[ai] < 0) & (match_b[bj] < 0)
        active = active[free]
    if active.size:
        used_a = match_a >= 0
        used_b = match_b >= 0
        for k in active.tolist():
            i, j = int(ci[k]), int(cj[k])
            if not used_a[i] and not used_b[j]:
                used_a[i] = used_b[j] = True
                match_a[i] = j
                match_b[j] = i
    rows = np.flatnonzero(match_a >= 0)
    return rows, match_a[rows]


def reference_greedy(ci: Sequence[int], cj: Sequence[int]) -> list[tuple[int, int]]:
    """The plain greedy matching of candidates in priority order (for tests)."""
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for i, j in zip(ci, cj, strict=True):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((int(i), int(j)))
    return sorted(out)


def _column(frame: pd.DataFrame, name: str, rows: np.ndarray) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)[rows]


def _pairs_frame(
    sa: _Side, sb: _Side, ia: np.ndarray, ib: np.ndarray, overlap: np.ndarray
) -> pd.DataFrame:
    ta, tb = sa.t[ia], sb.t[ib]
    middle = (ta + tb) / 2.0
    local = _local(middle, sa.offset_s)
    return pd.DataFrame(
        {
            "time_a": _stamps(ta),
            "time_b": _stamps(tb),
            "dt_s": tb - ta,
            "time_utc": _stamps(middle),
            "time_local_standard": local,
            "date_local_standard": local.dt.normalize(),
            "flux_a": sa.flux[ia],
            "flux_b": sb.flux[ib],
            "flux_se_a": _column(sa.frame, "flux_se", ia),
            "flux_se_b": _column(sb.frame, "flux_se", ib),
            "soil_temperature_degc_a": _column(sa.frame, "soil_temperature_degc", ia),
            "soil_temperature_degc_b": _column(sb.frame, "soil_temperature_degc", ib),
            "soil_moisture_pct_a": _column(sa.frame, "soil_moisture_pct", ia),
            "soil_moisture_pct_b": _column(sb.frame, "soil_moisture_pct", ib),
            "index_a": ia.astype(np.int64),
            "index_b": ib.astype(np.int64),
            "n_a": np.ones(len(ia), dtype=np.int64),
            "n_b": np.ones(len(ia), dtype=np.int64),
            "overlap_s": overlap,
        },
        columns=PAIR_COLUMNS,
    )


def _unpaired(
    side: _Side, other: _Side, matched: np.ndarray, candidates: np.ndarray, tolerance_s: float
) -> Unpaired:
    paired = np.zeros(side.n, dtype=bool)
    paired[matched] = True
    finite = side.finite
    if other.finite.any():
        first = float(np.min(other.begin[other.finite])) - tolerance_s
        last = float(np.max(other.end[other.finite])) + tolerance_s
        outside = (side.end < first) | (side.begin > last)
    else:
        outside = np.ones(side.n, dtype=bool)
    left = finite & ~paired
    return Unpaired(
        non_finite=int(np.count_nonzero(~finite)),
        outside_period=int(np.count_nonzero(left & outside)),
        no_partner=int(np.count_nonzero(left & ~outside & (candidates == 0))),
        partner_used=int(np.count_nonzero(left & ~outside & (candidates > 0))),
    )


def _dt_summary(dt_s: np.ndarray) -> dict[str, float | None]:
    if len(dt_s) == 0:
        return {"median_abs_dt_s": None, "max_abs_dt_s": None}
    absolute = np.abs(dt_s)
    return {
        "median_abs_dt_s": float(np.median(absolute)),
        "max_abs_dt_s": float(np.max(absolute)),
    }


def _expected(side: _Side, block_s: float) -> int:
    """Observations a side is expected to have per block: block / median interval."""
    times = np.unique(side.t[np.isfinite(side.t)])
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return 1
    return max(1, round(block_s / float(np.median(gaps))))


def _pair_blocks(
    sa: _Side, sb: _Side, method: str, tolerance_s: float, block: str, completeness: float
) -> Pairing:
    """Hourly or daily means of each side, paired where both are complete enough."""
    block_s = _BLOCK_S[block]
    offset = sa.offset_s  # blocks in side a's local standard time, for both sides
    expected_a, expected_b = _expected(sa, block_s), _expected(sb, block_s)

    def blocks(side: _Side) -> tuple[np.ndarray, pd.DataFrame]:
        key = np.floor((side.t + offset) / block_s)
        rows = np.flatnonzero(side.finite)
        frame = pd.DataFrame(
            {
                "key": key[rows],
                "t": side.t[rows],
                "flux": side.flux[rows],
                "flux_se": _column(side.frame, "flux_se", rows),
                "soil_temperature_degc": _column(side.frame, "soil_temperature_degc", rows),
                "soil_moisture_pct": _column(side.frame, "soil_moisture_pct", rows),
            }
        )
        grouped = frame.groupby("key", sort=True)
        table = grouped.agg(
            n=("flux", "size"),
            t=("t", "mean"),
            flux=("flux", "mean"),
            soil_temperature_degc=("soil_temperature_degc", "mean"),
            soil_moisture_pct=("soil_moisture_pct", "mean"),
        )
        se2 = frame.assign(se2=frame["flux_se"] ** 2).groupby("key")
        n_se = se2["se2"].count()
        table["flux_se"] = np.sqrt(se2["se2"].sum()) / table["n"]
        table.loc[n_se != table["n"], "flux_se"] = np.nan
        return key, table

    key_a, ta = blocks(sa)
    key_b, tb = blocks(sb)
    ta["complete"] = ta["n"] / expected_a >= completeness
    tb["complete"] = tb["n"] / expected_b >= completeness
    both = ta.index.intersection(tb.index)
    good = both[ta.loc[both, "complete"].to_numpy() & tb.loc[both, "complete"].to_numpy()]
    incomplete = both.difference(good)
    pa, pb = ta.loc[good], tb.loc[good]
    start_local = _local(good.to_numpy(dtype=float) * block_s, 0.0)
    t_a, t_b = pa["t"].to_numpy(), pb["t"].to_numpy()
    pairs = pd.DataFrame(
        {
            "time_a": _stamps(t_a),
            "time_b": _stamps(t_b),
            "dt_s": t_b - t_a,
            "time_utc": _stamps(good.to_numpy(dtype=float) * block_s - offset + block_s / 2),
            "time_local_standard": start_local,
            "date_local_standard": start_local.dt.normalize(),
            "flux_a": pa["flux"].to_numpy(),
            "flux_b": pb["flux"].to_numpy(),
            "flux_se_a": pa["flux_se"].to_numpy(),
            "flux_se_b": pb["flux_se"].to_numpy(),
            "soil_temperature_degc_a": pa["soil_temperature_degc"].to_numpy(),
            "soil_temperature_degc_b": pb["soil_temperature_degc"].to_numpy(),
            "soil_moisture_pct_a": pa["soil_moisture_pct"].to_numpy(),
            "soil_moisture_pct_b": pb["soil_moisture_pct"].to_numpy(),
            "index_a": np.full(len(good), -1, dtype=np.int64),
            "index_b": np.full(len(good), -1, dtype=np.int64),
            "n_a": pa["n"].to_numpy(dtype=np.int64),
            "n_b": pb["n"].to_numpy(dtype=np.int64),
            "overlap_s": np.full(len(good), np.nan),
        },
        columns=PAIR_COLUMNS,
    )

    def reasons(side: _Side, key: np.ndarray, own: pd.DataFrame, other: pd.DataFrame) -> Unpaired:
        finite = side.finite
        in_good = np.isin(key, good.to_numpy())
        in_incomplete = np.isin(key, incomplete.to_numpy())
        has_other = np.isin(key, other.index.to_numpy())
        if len(other):
            first, last = other.index.min(), other.index.max()
            outside = (key < first) | (key > last)
        else:
            outside = np.ones(side.n, dtype=bool)
        left = finite & ~in_good
        return Unpaired(
            non_finite=int(np.count_nonzero(~finite)),
            outside_period=int(np.count_nonzero(left & outside)),
            no_partner=int(np.count_nonzero(left & ~outside & ~has_other)),
            block_incomplete=int(np.count_nonzero(left & ~outside & has_other & in_incomplete)),
        )

    diagnostics = PairingDiagnostics(
        method=method,
        tolerance_s=None,
        block=block,
        completeness=completeness,
        candidates_a=sa.n,
        candidates_b=sb.n,
        pairs=len(good),
        unpaired_a=reasons(sa, key_a, ta, tb),
        unpaired_b=reasons(sb, key_b, tb, ta),
        blocks_a=len(ta),
        blocks_b=len(tb),
        blocks_incomplete=len(incomplete),
        expected_a=expected_a,
        expected_b=expected_b,
        **_dt_summary(pairs["dt_s"].to_numpy()),
    )
    return Pairing(pairs, diagnostics)
