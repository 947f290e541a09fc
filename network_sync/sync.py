"""Site -> central upload: the outbox, in order, exactly once in effect.

The site writes an outbox row in the same transaction as the observation it announces
(:meth:`SiteStore.complete_observation`). :func:`upload` sends the outbox in batches, in
outbox order; each batch is one central transaction:

* duplicates inside a batch are collapsed (the last announcement of a uuid wins);
* the central upsert is keyed by the observation uuid and compares a content hash: the same
  content again is ``unchanged`` (a replay changes nothing), new content is ``revised``
  (the observation's ``revision`` goes up, its times, values and fluxes are replaced);
* a new uuid whose natural key (site, system, chamber, begin time) is already taken by
  another uuid goes to ``conflicts`` and is reported, never overwrites; so does a revision
  whose new begin time would take another uuid's key, and a uuid stored under another
  site or system;
* an ``ingest_log`` row records the batch, the site's clock reading and its skew from the
  server's clock (flagged beyond ``max_skew_s``); device time never orders or deduplicates.

Only after the central commit are the batch's outbox rows removed at the site: a crash
between the two means the batch is sent again, harmlessly (unchanged).

Finished calibration records travel the same way through their own outbox
(``calibration_outbox``, written with the record's final status):
:func:`upload_calibrations`, keyed by the record id with a content hash, after the
observations of each ``upload_site``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from chamberd.controller.clock import Clock, SystemClock
from chamberd.controller.errors import ConfigError, DataFileError, StorageError, SyncError

from .central import Central, redact, value_problem, values_fine

__all__ = [
    "CALIBRATION_FIELDS",
    "CALIBRATION_READING_FIELDS",
    "SAMPLE_FIELDS",
    "CalibrationSyncSummary",
    "SyncSummary",
    "calibration_hash",
    "check_calibrations",
    "check_payloads",
    "content_hash",
    "register_site",
    "site_registration",
    "upload",
    "upload_calibrations",
    "upload_site",
    "upsert_batch",
    "upsert_calibrations",
]

log = logging.getLogger(__name__)

#: the values an observation carries beside its identity, times and status
VALUE_FIELDS = (
    "dead_band_s",
    "observation_s",
    "area_cm2",
    "volume_cm3",
    "offset_cm",
    "soil_temperature_degc",
    "soil_moisture_pct",
    "air_temperature_degc",
    "pressure_kpa",
    "analyser_model",
    "analyser_serial",
    "calibration_id",
    "config_hash",
    "software_version",
)
_OBSERVATION_FIELDS = ("chamber", "status", "reason", "started_at", "ended_at", *VALUE_FIELDS)
_FLUX_FIELDS = (
    "gas",
    "model",
    "processing_version",
    "flux",
    "flux_unit",
    "flux_se",
    "r2",
    "nrmse",
    "n_points",
    "selected",
    "flags",
)
#: the unit chamberd stores each gas's flux in
FLUX_UNITS = {"co2": "umol m-2 s-1", "ch4": "nmol m-2 s-1", "n2o": "nmol m-2 s-1"}
#: a sample's values, in this order, as the site database names them
SAMPLE_FIELDS = (
    "seq",
    "time",
    "elapsed_s",
    "phase",
    "co2_umol_mol",
    "h2o_mmol_mol",
    "ch4_nmol_mol",
    "n2o_nmol_mol",
    "cell_temperature_degc",
    "cell_pressure_kpa",
)
# the central ``samples`` columns they go to (the time is UTC there)
_SAMPLE_TIME_FIELDS = tuple("time_utc" if f == "time" else f for f in SAMPLE_FIELDS)

_TEXT_ENDINGS = ("_model", "_serial", "_id", "_hash", "_version")
#: what each value of a payload must be to be stored on both backends
#: (:func:`~chamberd.network_sync.central.value_problem`); ``key`` values are required
_OBSERVATION_KINDS = {
    "uuid": "key",
    "chamber": "key",
    "status": "key",
    "reason": "text",
    "started_at": "time",
    "ended_at": "time",
    **{f: "text" if f.endswith(_TEXT_ENDINGS) else "float" for f in VALUE_FIELDS},
}
_FLUX_KINDS = {
    "gas": "key",
    "model": "key",
    "processing_version": "key",
    "flux": "float",
    "flux_unit": "key",
    "flux_se": "float",
    "r2": "float",
    "nrmse": "float",
    "n_points": "int",
    "selected": "int",
    "flags": "text",
}
_SAMPLE_KINDS = tuple(
    "int" if f == "seq" else "time" if f == "time" else "text" if f == "phase" else "float"
    for f in SAMPLE_FIELDS
)
_SITE_KINDS = {
    "site_id": "key",
    "system_id": "key",
    "name": "text",
    "time_zone": "key",
    "latitude": "float",
    "longitude": "float",
    "instrument": "text",
    "method": "text",
    "owner": "text",
    "at": "text",
}
_GEOMETRY_KINDS = {
    "chamber": "key",
    "since": "key",
    "area_cm2": "float",
    "volume_cm3": "float",
    "offset_cm": "float",
    "plot": "text",
}


@dataclass
class SyncSummary:
    """What one :func:`upload` did (``chamberd sync --json`` prints these keys)."""

    sent: int = 0
    unchanged: int = 0
    revised: int = 0
    conflicts: int = 0
    remaining: int = 0
    batches: int = 0
    skew_flagged: int = 0
    dry_run: bool = False
    conflict_details: list[dict[str, Any]] = field(default_factory=list)
    #: what the calibration records' upload did (:class:`CalibrationSyncSummary` as a dict)
    calibrations: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_hash(observation: dict[str, Any], fluxes: list[dict[str, Any]]) -> str:
    """SHA-256 of what the central side stores of an observation (samples by count only)."""
    body = {
        "observation": {k: observation.get(k) for k in _OBSERVATION_FIELDS},
        "fluxes": sorted(
            ({k: f.get(k) for k in _FLUX_FIELDS} for f in fluxes),
            key=lambda f: (f["gas"], f["model"], f["processing_version"]),
        ),
        "samples": observation.get("n_samples", 0),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_finite_json)
    return hashlib.sha256(text.encode()).hexdigest()


def _finite_json(value: Any) -> Any:
    return str(value)


def register_site(
    central: Central,
    *,
    site_id: str,
    system_id: str,
    name: str = "",
    time_zone: str = "UTC",
    latitude: float | None = None,
    longitude: float | None = None,
    instrument: str = "",
    method: str = "",
    owner: str = "",
    geometry: list[dict[str, Any]] | None = None,
    at: str,
) -> None:
    """Create or update the site, its system and its chambers' dated geometry.

    :class:`ConfigError` naming the field for a value the central database cannot hold;
    :class:`SyncError` when this connection's role may not write ``site_id``.
    """
    values = {
        "site_id": site_id,
        "system_id": system_id,
        "name": name,
        "time_zone": time_zone,
        "latitude": latitude,
        "longitude": longitude,
        "instrument": instrument,
        "method": method,
        "owner": owner,
        "at": at,
    }
    for key, kind in _SITE_KINDS.items():
        problem = value_problem(values[key], kind)
        if problem:
            raise ConfigError(f"site {site_id!r}: {key} {_shown(values[key])} {problem}")
    for g in geometry or []:
        for key, kind in _GEOMETRY_KINDS.items():
            problem = value_problem(g.get(key), kind)
            if problem:
                raise ConfigError(
                    f"site {site_id!r}: chamber geometry {key} {_shown(g.get(key))} {problem}"
                )
    central.require_writer(site_id)
    with central.transaction():
        if central.query("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)):
            central.execute(
                "UPDATE sites SET name = ?, time_zone = ?, latitude = ?, longitude = ? "
                "WHERE site_id = ?",
                (name, time_zone, latitude, longitude, site_id),
            )
        else:
            central.execute(
                "INSERT INTO sites (site_id, name, time_zone, latitude, longitude, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (site_id, name, time_zone, latitude, longitude, at),
            )
        if central.query(
            "SELECT 1 FROM systems WHERE site_id = ? AND system_id = ?", (site_id, system_id)
        ):
            central.execute(
                "UPDATE systems SET instrument = ?, method = ?, owner = ? "
                "WHERE site_id = ? AND system_id = ?",
                (instrument, method, owner, site_id, system_id),
            )
        else:
            central.execute(
                "INSERT INTO systems (site_id, system_id, instrument, method, owner) "
                "VALUES (?, ?, ?, ?, ?)",
                (site_id, system_id, instrument, method, owner),
            )
        for g in geometry or []:
            known = central.query(
                "SELECT 1 FROM chambers WHERE site_id = ? AND system_id = ? AND chamber = ? "
                "AND since = ?",
                (site_id, system_id, g["chamber"], g["since"]),
            )
            values = (g["area_cm2"], g["volume_cm3"], g["offset_cm"], g.get("plot", ""))
            if known:
                central.execute(
                    "UPDATE chambers SET area_cm2 = ?, volume_cm3 = ?, offset_cm = ?, plot = ? "
                    "WHERE site_id = ? AND system_id = ? AND chamber = ? AND since = ?",
                    (*values, site_id, system_id, g["chamber"], g["since"]),
                )
            else:
                central.execute(
                    "INSERT INTO chambers (site_id, system_id, chamber, since, area_cm2, "
                    "volume_cm3, offset_cm, plot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (site_id, system_id, g["chamber"], g["since"], *values),
                )


def site_registration(cfg: Any, now: dt.datetime) -> dict[str, Any]:
    """The site, system and dated chamber geometry as the central database records them."""
    return {
        "site_id": cfg.site.id,
        "system_id": cfg.sync.system,
        "name": cfg.site.name,
        "time_zone": cfg.site.time_zone,
        "latitude": cfg.site.latitude,
        "longitude": cfg.site.longitude,
        "instrument": cfg.sync.instrument,
        "method": cfg.sync.method,
        "owner": cfg.sync.owner,
        "geometry": [
            {
                "chamber": c.id,
                "since": g.since.isoformat(),
                "area_cm2": g.area_cm2,
                "volume_cm3": g.volume_cm3,
                "offset_cm": g.offset_cm,
                "plot": c.label,
            }
            for c in cfg.chambers
            for g in c.geometry
        ],
        "at": now.astimezone(dt.UTC).isoformat(),
    }


def upload_site(
    store: Any,
    central: Central,
    cfg: Any,
    *,
    clock: Clock,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Callable[[SyncSummary], None] | None = None,
    max_batches: int | None = None,
) -> SyncSummary:
    """Register a configured site (its system and dated geometry), then upload its outbox
    with the settings of ``cfg.sync``: what ``chamberd sync`` and the daemon both do."""
    register_site(central, **site_registration(cfg, clock.now()))
    summary = upload(
        store,
        central,
        site_id=cfg.site.id,
        system_id=cfg.sync.system,
        batch_size=batch_size or cfg.sync.batch_size,
        include_samples=cfg.sync.include_samples,
        dry_run=dry_run,
        max_skew_s=cfg.sync.max_skew_s,
        clock=clock,
        progress=progress,
        max_batches=max_batches,
    )
    # the finished calibration records follow the observations (their own outbox)
    summary.calibrations = upload_calibrations(
        store, central, site_id=cfg.site.id, dry_run=dry_run, clock=clock
    ).as_dict()
    return summary


def upload(
    site: Any,
    central: Central,
    *,
    site_id: str,
    system_id: str,
    batch_size: int = 500,
    include_samples: bool = True,
    dry_run: bool = False,
    max_skew_s: float = 120.0,
    clock: Clock | None = None,
    progress: Callable[[SyncSummary], None] | None = None,
    max_batches: int | None = None,
) -> SyncSummary:
    """Send the site's outbox to ``central``; see the module docstring.

    ``site`` is a :class:`~chamberd.controller.store.SiteStore`. Raises :class:`SyncError`
    when the central database is unreachable (the site's outbox is then untouched).
    """
    clock = clock or SystemClock()
    summary = SyncSummary(dry_run=dry_run)

    def load(after: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        entries = site.query(
            "SELECT id, observation_uuid FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, batch_size),
        )
        # collapse duplicates: the latest announcement of a uuid wins
        latest: dict[str, int] = {}
        for entry in entries:
            latest.pop(entry["observation_uuid"], None)
            latest[entry["observation_uuid"]] = entry["id"]
        return entries, _payloads(site, list(latest), include_samples)

    after = 0
    # the next batch is read from the site database while this one is written centrally
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox") as reader:
        pending = reader.submit(load, after)
        while max_batches is None or summary.batches < max_batches:
            entries, payloads = pending.result()
            if not entries:
                break
            after = entries[-1]["id"]
            pending = reader.submit(load, after)
            counts = _send(
                central,
                payloads,
                site_id=site_id,
                system_id=system_id,
                dry_run=dry_run,
                clock=clock,
                max_skew_s=max_skew_s,
                received=len(entries),
            )
            if not dry_run:
                # acknowledged only now that the central side has committed
                with site.transaction() as conn:
                    conn.execute("DELETE FROM outbox WHERE id <= ?", (after,))
            summary.batches += 1
            summary.sent += counts["sent"]
            summary.unchanged += counts["unchanged"]
            summary.revised += counts["revised"]
            summary.conflicts += counts["conflicts"]
            summary.skew_flagged += counts["skew_flagged"]
            summary.conflict_details += counts["details"]
            if progress is not None:
                progress(summary)
        pending.cancel()
    # a dry run acknowledges nothing: the whole outbox remains
    remaining = site.query(
        "SELECT count(*) AS n FROM outbox WHERE id > ?", (0 if dry_run else after,)
    )
    summary.remaining = int(remaining[0]["n"])
    return summary


def _payloads(site: Any, uuids: list[str], include_samples: bool) -> list[dict[str, Any]]:
    """The batch's observations with their fluxes and samples, in ``uuids`` order (one
    query per table; samples as tuples in :data:`SAMPLE_FIELDS` order)."""
    marks = ", ".join("?" for _ in uuids)
    observations = {
        r["uuid"]: r
        for r in site.query(f"SELECT * FROM observations WHERE uuid IN ({marks})", uuids)
    }
    fluxes: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    for row in site.query(
        f"SELECT * FROM fluxes WHERE observation_uuid IN ({marks}) "
        "ORDER BY observation_uuid, gas, model",
        uuids,
    ):
        fluxes[row["observation_uuid"]].append(row)
    samples: dict[str, list[tuple[Any, ...]]] = {u: [] for u in uuids}
    if include_samples:
        columns = ", ".join(SAMPLE_FIELDS)
        for row in site.rows(
            f"SELECT observation_uuid, {columns} FROM samples WHERE observation_uuid IN "
            f"({marks}) ORDER BY observation_uuid, seq",
            uuids,
        ):
            samples[row[0]].append(row[1:])
    out = []
    for uuid in uuids:
        observation = observations.get(uuid)
        if observation is None:
            log.warning("outbox names observation %s, which is not in the site database", uuid)
            continue
        observation["n_samples"] = len(samples[uuid])
        out.append(
            {
                "observation": observation,
                "fluxes": fluxes[uuid],
                "samples": samples[uuid],
                "hash": content_hash(observation, fluxes[uuid]),
            }
        )
    return out


def _send(
    central: Central,
    payloads: list[dict[str, Any]],
    *,
    site_id: str,
    system_id: str,
    dry_run: bool,
    clock: Clock,
    max_skew_s: float,
    received: int,
) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "sent": 0,
        "unchanged": 0,
        "revised": 0,
        "conflicts": 0,
        "skew_flagged": 0,
        "details": [],
    }
    site_clock = clock.now()
    try:
        with central.transaction():
            server = central.now_utc()
            skew = None if server is None else (site_clock - server).total_seconds()
            flagged = skew is not None and abs(skew) > max_skew_s
            counts["skew_flagged"] = int(flagged)
            now = (server or site_clock).astimezone(dt.UTC).isoformat()
            for p, outcome in zip(
                payloads,
                upsert_batch(central, payloads, site_id=site_id, system_id=system_id, now=now),
                strict=True,
            ):
                counts[outcome] += 1
                if outcome == "conflicts":
                    counts["details"].append(p["conflict"])
            _write_analysers(central, payloads, site_id)
            central.execute(
                "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, unchanged, "
                "revised, conflicts, site_clock_utc, skew_s, skew_flagged, detail) "
                "VALUES (?, ?, 'sync', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    site_id,
                    system_id,
                    received,
                    counts["sent"],
                    counts["unchanged"],
                    counts["revised"],
                    counts["conflicts"],
                    site_clock.astimezone(dt.UTC).isoformat(),
                    skew,
                    int(flagged),
                    f"site clock {skew:+.1f} s from the server" if flagged else "",
                ),
            )
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except (SyncError, ConfigError, StorageError):
        raise
    except Exception as exc:
        raise SyncError(f"{redact(central.url)}: batch refused: {exc}") from exc
    return counts


def _write_analysers(central: Central, payloads: list[dict[str, Any]], site_id: str) -> None:
    """The analyser id of each observation (schema version 5 on): the fallback key that
    matches an observation to its calibrations when it names no analyser serial."""
    from .central import CALIBRATION_VERSION

    rows = [
        (p["observation"]["analyser"], p["observation"]["uuid"], site_id)
        for p in payloads
        if p["observation"].get("analyser")
    ]
    if rows and central.schema_version() >= CALIBRATION_VERSION:
        central.executemany(
            "UPDATE observations SET analyser = ? WHERE uuid = ? AND site_id = ?", rows
        )


class _DryRun(Exception):
    """Rolls a dry run's transaction back."""


def _utc_key(value: Any) -> str:
    """A begin time as a comparable UTC string, from SQLite text or a PostgreSQL datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _in_list(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_payloads(payloads: list[dict[str, Any]]) -> None:
    """Refuse a batch holding a value either backend cannot store, before anything is written.

    One rule for sync and import (both write through :func:`upsert_batch`), the same on
    SQLite and PostgreSQL: text without NUL characters or lone surrogates, numbers where
    numbers go (integers within 32 bits), times from 1900 to 2199 UTC
    (:func:`~chamberd.network_sync.central.value_problem`). Raises
    :class:`~chamberd.controller.errors.DataFileError` naming the observation and the field.
    """
    for p in payloads:
        o = p["observation"]
        uuid = o.get("uuid")
        where = (
            f"observation {uuid}"
            if isinstance(uuid, str) and value_problem(uuid, "key") is None
            else f"observation {_shown(uuid)}"
        )
        for key, kind in _OBSERVATION_KINDS.items():
            problem = value_problem(o.get(key), kind)
            if problem is None and key == "started_at" and o.get(key) is None:
                problem = "is missing"
            if problem:
                raise DataFileError(f"{where}: {key} {_shown(o.get(key))} {problem}")
        for f in p["fluxes"]:
            for key, kind in _FLUX_KINDS.items():
                problem = value_problem(f.get(key), kind)
                if problem:
                    raise DataFileError(
                        f"{where}: flux {f.get('gas')}/{f.get('model')}: {key} "
                        f"{_shown(f.get(key))} {problem}"
                    )
        # samples column by column: a whole column at once in the common case
        for index, column in enumerate(zip(*p["samples"], strict=False)):
            key, kind = SAMPLE_FIELDS[index], _SAMPLE_KINDS[index]
            if values_fine(column, kind):
                continue
            for sample, value in zip(p["samples"], column, strict=True):
                problem = value_problem(value, kind)
                if problem:
                    raise DataFileError(
                        f"{where}: sample {_shown(sample[0])}: {key} {_shown(value)} {problem}"
                    )


def upsert_batch(
    central: Central,
    payloads: list[dict[str, Any]],
    *,
    site_id: str,
    system_id: str,
    now: str,
) -> list[str]:
    """Upsert a batch (inside the caller's transaction); the outcome of each payload:
    ``sent``, ``unchanged``, ``revised`` or ``conflicts`` (see the module docstring).

    New observations are written with one statement per table (PostgreSQL: ``COPY`` for the
    samples); existing ones are compared by content hash; the natural key of new and
    revised ones is checked against the stored rows of the batch's time span and against
    each other (see :func:`_decide`).
    """
    if not payloads:
        return []
    central.require_writer(site_id)
    check_payloads(payloads)
    for p in payloads:  # a flux in the wrong unit is refused, never stored
        for f in p["fluxes"]:
            expected = FLUX_UNITS.get(f["gas"])
            if expected is None or f["flux_unit"] != expected:
                raise SyncError(
                    f"observation {p['observation']['uuid']}: {f['gas']} flux in "
                    f"{f['flux_unit']!r}; chamberd stores {f['gas']} fluxes in "
                    f"{expected or 'umol m-2 s-1 (CO2) or nmol m-2 s-1 (CH4, N2O)'}"
                )
    uuids = [p["observation"]["uuid"] for p in payloads]
    existing: dict[str, dict[str, Any]] = {}
    for start in range(0, len(uuids), 900):
        part = uuids[start : start + 900]
        for row in central.query(
            "SELECT uuid, site_id, system_id, chamber, begin_utc, content_hash, revision "
            f"FROM observations WHERE uuid IN ({_in_list(len(part))})",
            part,
        ):
            if row["site_id"] != site_id:  # (under row-level security: invisible)
                raise DataFileError(
                    f"observation {row['uuid']} is already stored under site "
                    f"{row['site_id']!r}, not {site_id!r}: an observation belongs to one site "
                    "(a copied site database?)"
                )
            row["key"] = (row["chamber"], _utc_key(row["begin_utc"]))
            existing[row["uuid"]] = row
    # natural keys held in the time span of the new and the changed observations
    check = [
        p
        for p in payloads
        if p["observation"]["uuid"] not in existing
        or existing[p["observation"]["uuid"]]["content_hash"] != p["hash"]
    ]
    taken: dict[tuple[str, str], str] = {}
    if check:
        begins = [_utc_key(p["observation"]["started_at"]) for p in check]
        for row in central.query(
            "SELECT uuid, chamber, begin_utc FROM observations WHERE site_id = ? AND "
            "system_id = ? AND begin_utc >= ? AND begin_utc <= ?",
            (site_id, system_id, min(begins), max(begins)),
        ):
            taken[(row["chamber"], _utc_key(row["begin_utc"]))] = row["uuid"]
    outcomes, holders = _decide(payloads, existing, taken, site_id=site_id, system_id=system_id)
    revised = [p for p, outcome in zip(payloads, outcomes, strict=True) if outcome == "revised"]
    moving = [p for p in revised if existing[p["observation"]["uuid"]]["key"] != _key(p)]
    old_keys = {existing[p["observation"]["uuid"]]["key"] for p in moving}
    if any(_key(p) in old_keys for p in moving):
        # revisions that take each other's natural keys (a corrected time zone shifts a
        # whole file): park them first, as the unique key is checked per statement
        central.executemany(
            "UPDATE observations SET chamber = ? WHERE uuid = ?",
            [(f"~revising~{p['observation']['uuid']}", p["observation"]["uuid"]) for p in moving],
        )
    for p in revised:
        _revise(central, p, existing[p["observation"]["uuid"]], site_id=site_id, now=now)
    new = []
    for p, outcome, holder in zip(payloads, outcomes, holders, strict=True):
        if outcome == "conflicts":
            _conflict(central, p, holder, site_id=site_id, system_id=system_id, now=now)
        elif outcome == "sent":
            new.append(p)
    _insert_new(central, new, site_id=site_id, system_id=system_id, now=now)
    return outcomes


def _key(p: dict[str, Any]) -> tuple[str, str]:
    return (p["observation"]["chamber"], _utc_key(p["observation"]["started_at"]))


def _decide(
    payloads: list[dict[str, Any]],
    existing: dict[str, dict[str, Any]],
    taken: dict[tuple[str, str], str],
    *,
    site_id: str,
    system_id: str,
) -> tuple[list[str], list[str | None]]:
    """The outcome of each payload, and for a conflict the uuid holding its natural key.

    A revision may move its observation to another natural key (a corrected begin time);
    the keys that revisions leave are free for the others of the batch. A revision whose
    new key another observation keeps is a conflict, and its observation stays where it
    was: the keys are decided again until no revision is left without a place.
    """
    stay: dict[str, str] = {}  # revisions that keep their old key -> who holds the new one
    while True:
        occupied = dict(taken)
        for p in payloads:
            row = existing.get(p["observation"]["uuid"])
            if row is None or row["uuid"] in stay or row["content_hash"] == p["hash"]:
                continue
            if occupied.get(row["key"]) == row["uuid"]:
                del occupied[row["key"]]
        outcomes: list[str] = []
        holders: list[str | None] = []
        seen: set[str] = set()
        stuck = False
        for p in payloads:
            uuid = p["observation"]["uuid"]
            row = existing.get(uuid)
            key = _key(p)
            holder = None
            if uuid in seen:
                outcome = "unchanged"  # the same uuid twice in a batch: the first one counts
            elif row is not None and (row["site_id"], row["system_id"]) != (site_id, system_id):
                outcome, holder = "conflicts", uuid  # another system's uuid (same site)
            elif row is not None and row["content_hash"] == p["hash"]:
                outcome = "unchanged"
            elif uuid in stay:
                outcome, holder = "conflicts", stay[uuid]
            elif occupied.get(key, uuid) != uuid:
                outcome, holder = "conflicts", occupied[key]
                if row is not None:
                    stay[uuid] = occupied[key]
                    stuck = True
            else:
                occupied[key] = uuid
                outcome = "sent" if row is None else "revised"
            seen.add(uuid)
            outcomes.append(outcome)
            holders.append(holder)
        if not stuck:
            return outcomes, holders


def _revise(
    central: Central, p: dict[str, Any], old: dict[str, Any], *, site_id: str, now: str
) -> None:
    """Rewrite a stored observation with its new content: natural key, times, values."""
    o = p["observation"]
    uuid = o["uuid"]
    revision = int(old["revision"]) + 1
    central.execute(
        "UPDATE observations SET chamber = ?, begin_utc = ?, end_utc = ?, status = ?, "
        f"reason = ?, {', '.join(f'{k} = ?' for k in VALUE_FIELDS)}, content_hash = ?, "
        "revision = ?, received_at = ? WHERE uuid = ? AND site_id = ?",
        (
            o["chamber"],
            _utc_key(o["started_at"]),
            _utc_key(o["ended_at"]) if o.get("ended_at") else None,
            o["status"],
            o["reason"],
            *(o.get(k) for k in VALUE_FIELDS),
            p["hash"],
            revision,
            now,
            uuid,
            site_id,
        ),
    )
    central.execute(
        "DELETE FROM fluxes WHERE observation_uuid = ? AND site_id = ?", (uuid, site_id)
    )
    _write_fluxes(central, site_id, ((uuid, f) for f in p["fluxes"]), revision)
    if p["samples"] and not central.query(
        "SELECT 1 FROM samples WHERE observation_uuid = ? LIMIT 1", (uuid,)
    ):
        _write_samples(central, site_id, ((uuid, sample) for sample in p["samples"]))


def _conflict(
    central: Central,
    p: dict[str, Any],
    holder: str,
    *,
    site_id: str,
    system_id: str,
    now: str,
) -> None:
    o = p["observation"]
    p["conflict"] = {
        "chamber": o["chamber"],
        "begin_utc": o["started_at"],
        "existing_uuid": holder,
        "incoming_uuid": o["uuid"],
    }
    if central.query(
        "SELECT 1 FROM conflicts WHERE existing_uuid = ? AND incoming_uuid = ?",
        (holder, o["uuid"]),
    ):
        return
    central.execute(
        "INSERT INTO conflicts (detected_at, site_id, system_id, chamber, begin_utc, "
        "existing_uuid, incoming_uuid, source, incoming) VALUES (?, ?, ?, ?, ?, ?, ?, 'sync', ?)",
        (
            now,
            site_id,
            system_id,
            o["chamber"],
            _utc_key(o["started_at"]),
            holder,
            o["uuid"],
            json.dumps({k: o.get(k) for k in _OBSERVATION_FIELDS}, default=str),
        ),
    )


_NEW_OBSERVATION = (
    "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, end_utc, "
    "status, reason, dead_band_s, observation_s, area_cm2, volume_cm3, offset_cm, "
    "soil_temperature_degc, soil_moisture_pct, air_temperature_degc, pressure_kpa, "
    "analyser_model, analyser_serial, calibration_id, config_hash, software_version, "
    "content_hash, revision, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
)


def _insert_new(
    central: Central, new: list[dict[str, Any]], *, site_id: str, system_id: str, now: str
) -> None:
    if not new:
        return
    central.executemany(
        _NEW_OBSERVATION,
        [
            (
                p["observation"]["uuid"],
                site_id,
                system_id,
                p["observation"]["chamber"],
                _utc_key(p["observation"]["started_at"]),
                _utc_key(p["observation"]["ended_at"])
                if p["observation"].get("ended_at")
                else None,
                *(p["observation"].get(k) for k in ("status", "reason", *VALUE_FIELDS)),
                p["hash"],
                now,
            )
            for p in new
        ],
    )
    _write_fluxes(
        central, site_id, ((p["observation"]["uuid"], f) for p in new for f in p["fluxes"]), 1
    )
    _write_samples(
        central, site_id, ((p["observation"]["uuid"], x) for p in new for x in p["samples"])
    )


_INSERT_FLUX = (
    "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, flux, "
    "flux_unit, flux_se, r2, nrmse, n_points, selected, flags, revision) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _write_fluxes(
    central: Central,
    site_id: str,
    fluxes: Iterable[tuple[str, dict[str, Any]]],
    revision: int,
) -> None:
    """Insert ``(observation uuid, flux row)`` pairs with one statement."""
    central.executemany(
        _INSERT_FLUX,
        [
            (
                site_id,
                uuid,
                f["gas"],
                f["model"],
                f["processing_version"],
                f["flux"],
                f["flux_unit"],
                f["flux_se"],
                f["r2"],
                f["nrmse"],
                f["n_points"],
                int(f["selected"]),
                f["flags"] or "",
                revision,
            )
            for uuid, f in fluxes
        ],
    )


def _write_samples(
    central: Central, site_id: str, samples: Iterable[tuple[str, tuple[Any, ...]]]
) -> None:
    """Bulk-insert ``(observation uuid, sample tuple)`` pairs (``COPY`` where allowed)."""
    central.copy_rows(
        "samples",
        ("site_id", "observation_uuid", *_SAMPLE_TIME_FIELDS),
        [(site_id, uuid, *sample) for uuid, sample in samples],
    )


# --- calibration records ---------------------------------------------------------------------

#: the site record's columns that the central ``calibrations`` table holds, with their kinds
CALIBRATION_FIELDS: dict[str, str] = {
    "id": "key",
    "analyser": "key",
    "procedure": "key",
    "performed_at": "time",
    "operator": "text",
    "supervisor": "text",
    "chamber": "text",
    "started_at": "time",
    "ended_at": "time",
    "valid_from": "time",
    "status": "text",
    "result": "text",
    "reason": "text",
    "instrument_model": "text",
    "instrument_serial": "text",
    "instrument_firmware": "text",
    "cylinder_ids": "text",
    "as_found": "text",
    "as_left": "text",
    "adjusted": "int",
    "stability": "text",
    "software_version": "text",
    "data": "text",
}
#: a reading's columns, with their kinds
CALIBRATION_READING_FIELDS: dict[str, str] = {
    "seq": "int",
    "step": "text",
    "at": "time",
    "cylinder_id": "text",
    "gas": "text",
    "reference_value": "float",
    "unit": "text",
    "mean": "float",
    "sd": "float",
    "n": "int",
    "drift_per_min": "float",
    "stable_s": "float",
    "stable": "int",
    "data": "text",
}
#: the states a calibration record is finished in (only these travel)
FINISHED_CALIBRATION = ("pass", "fail", "incomplete")


@dataclass
class CalibrationSyncSummary:
    """What one :func:`upload_calibrations` did: records new centrally (``sent``), sent
    again with the same content (``unchanged``), with new content (``revised``), and the
    outbox rows left."""

    sent: int = 0
    unchanged: int = 0
    revised: int = 0
    remaining: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_hash(record: dict[str, Any], readings: list[dict[str, Any]]) -> str:
    """SHA-256 of what the central side stores of a calibration record and its readings."""
    body = {
        "record": {k: record.get(k) for k in CALIBRATION_FIELDS},
        "readings": sorted(
            ({k: r.get(k) for k in CALIBRATION_READING_FIELDS} for r in readings),
            key=lambda r: r["seq"],
        ),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_finite_json)
    return hashlib.sha256(text.encode()).hexdigest()


def check_calibrations(records: list[dict[str, Any]], *, where: str = "") -> None:
    """Refuse a calibration record (or reading) holding a value either backend cannot
    store, before anything is written: :class:`DataFileError` naming the record and field
    (``where`` names the source, e.g. a file)."""
    prefix = f"{where}: " if where else ""
    for record in records:
        cid = record.get("id")
        name = f"calibration {cid}" if isinstance(cid, str) else f"calibration {_shown(cid)}"
        for key, kind in CALIBRATION_FIELDS.items():
            problem = value_problem(record.get(key), kind)
            if problem is None and key == "performed_at" and record.get(key) is None:
                problem = "is missing"
            if problem:
                raise DataFileError(f"{prefix}{name}: {key} {_shown(record.get(key))} {problem}")
        for reading in record.get("readings", []):
            for key, kind in CALIBRATION_READING_FIELDS.items():
                problem = value_problem(reading.get(key), kind)
                if problem is None and key == "seq" and reading.get(key) is None:
                    problem = "is missing"
                if problem:
                    raise DataFileError(
                        f"{prefix}{name}: reading {_shown(reading.get('seq'))}: {key} "
                        f"{_shown(reading.get(key))} {problem}"
                    )


def upsert_calibrations(
    central: Central,
    records: list[dict[str, Any]],
    *,
    site_id: str,
    now: str,
    source: str = "sync",
) -> list[str]:
    """Write calibration records (each a dict of :data:`CALIBRATION_FIELDS` with a
    ``readings`` list) inside the caller's transaction, keyed by the record id; the
    outcome of each: ``sent`` (new), ``unchanged`` (the same content again: nothing is
    written) or ``revised`` (new content: the record and its readings are replaced, its
    ``revision`` goes up). A record id held by another site is a :class:`SyncError`."""
    check_calibrations(records)
    outcomes = []
    for record in records:
        readings = record.get("readings", [])
        digest = calibration_hash(record, readings)
        known = central.query(
            "SELECT site_id, content_hash, revision FROM calibrations WHERE id = ?",
            (record["id"],),
        )
        values = [record.get(k) for k in CALIBRATION_FIELDS]
        if known and known[0]["site_id"] != site_id:
            raise SyncError(
                f"calibration {record['id']}: the id is another site's record "
                f"({known[0]['site_id']!r}); not written"
            )
        if known and known[0]["content_hash"] == digest:
            outcomes.append("unchanged")
            continue
        if known:
            central.execute(
                "DELETE FROM calibration_readings WHERE site_id = ? AND calibration_id = ?",
                (site_id, record["id"]),
            )
            sets = ", ".join(f"{k} = ?" for k in list(CALIBRATION_FIELDS)[1:])
            central.execute(
                f"UPDATE calibrations SET {sets}, content_hash = ?, revision = ?, source = ?, "
                "received_at = ? WHERE id = ? AND site_id = ?",
                (
                    *values[1:],
                    digest,
                    int(known[0]["revision"] or 1) + 1,
                    source,
                    now,
                    record["id"],
                    site_id,
                ),
            )
            outcomes.append("revised")
        else:
            columns = ", ".join(CALIBRATION_FIELDS)
            central.execute(
                f"INSERT INTO calibrations (site_id, {columns}, content_hash, revision, "
                f"source, received_at) VALUES (?, {_in_list(len(CALIBRATION_FIELDS))}, ?, 1, "
                "?, ?)",
                (site_id, *values, digest, source, now),
            )
            outcomes.append("sent")
        if readings:
            columns = ", ".join(CALIBRATION_READING_FIELDS)
            central.executemany(
                f"INSERT INTO calibration_readings (site_id, calibration_id, {columns}) "
                f"VALUES (?, ?, {_in_list(len(CALIBRATION_READING_FIELDS))})",
                [
                    (site_id, record["id"], *(r.get(k) for k in CALIBRATION_READING_FIELDS))
                    for r in readings
                ],
            )
    return outcomes


def _calibration_payloads(site: Any, ids: list[str]) -> list[dict[str, Any]]:
    marks = _in_list(len(ids))
    have = {r["name"] for r in site.query("PRAGMA table_info(calibrations)")}
    records = {
        r["id"]: {k: r.get(k) for k in CALIBRATION_FIELDS if k in have}
        for r in site.query(f"SELECT * FROM calibrations WHERE id IN ({marks})", ids)
    }
    readings: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in site.query(
        f"SELECT * FROM calibration_readings WHERE calibration_id IN ({marks}) "
        "ORDER BY calibration_id, seq",
        ids,
    ):
        readings[r["calibration_id"]].append({k: r.get(k) for k in CALIBRATION_READING_FIELDS})
    out = []
    for cid in ids:
        record = records.get(cid)
        if record is None:
            log.warning("calibration outbox names record %s, which is not in the store", cid)
            continue
        if record.get("status") not in (None, *FINISHED_CALIBRATION):
            # the outbox row is written with the final status: a running record here is a
            # store written by something else; it stays until it is finished
            continue
        out.append({**record, "readings": readings[cid]})
    return out


def upload_calibrations(
    site: Any,
    central: Central,
    *,
    site_id: str,
    batch_size: int = 100,
    dry_run: bool = False,
    clock: Clock | None = None,
) -> CalibrationSyncSummary:
    """Send the site's finished calibration records (``calibration_outbox``, in order) to the
    central ``calibrations`` and ``calibration_readings``, exactly once in effect: each
    batch is one central transaction, and only after its commit are its outbox rows removed
    at the site (a crash between the two sends the batch again: ``unchanged``).

    A site store without a calibration outbox, or a central database older than schema
    version 5, sends nothing (the outbox waits; a warning says why)."""
    from .central import CALIBRATION_VERSION

    clock = clock or SystemClock()
    summary = CalibrationSyncSummary()
    if not site.query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calibration_outbox'"
    ):
        return summary
    if central.schema_version() < CALIBRATION_VERSION:
        summary.remaining = int(site.query("SELECT count(*) AS n FROM calibration_outbox")[0]["n"])
        if summary.remaining:
            log.warning(
                "%s: schema version %d holds no calibration records (needs %d): %d record(s) "
                "wait in the site's outbox; run chamberd central init to upgrade",
                redact(central.url),
                central.schema_version(),
                CALIBRATION_VERSION,
                summary.remaining,
            )
        return summary
    after = 0
    while True:
        entries = site.query(
            "SELECT id, calibration_id FROM calibration_outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, batch_size),
        )
        if not entries:
            break
        after = entries[-1]["id"]
        ids = list(dict.fromkeys(e["calibration_id"] for e in entries))
        payloads = _calibration_payloads(site, ids)
        sent_ids = {p["id"] for p in payloads}
        try:
            with central.transaction():
                now = (central.now_utc() or clock.now()).astimezone(dt.UTC).isoformat()
                outcomes = upsert_calibrations(central, payloads, site_id=site_id, now=now)
                central.execute(
                    "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, "
                    "unchanged, revised, conflicts, site_clock_utc) "
                    "VALUES (?, ?, 'calibrations', 'sync', ?, ?, ?, ?, 0, ?)",
                    (
                        now,
                        site_id,
                        len(entries),
                        outcomes.count("sent"),
                        outcomes.count("unchanged"),
                        outcomes.count("revised"),
                        clock.now().astimezone(dt.UTC).isoformat(),
                    ),
                )
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        except (SyncError, ConfigError, StorageError, DataFileError):
            raise
        except Exception as exc:
            raise SyncError(f"{redact(central.url)}: calibration batch refused: {exc}") from exc
        if not dry_run:
            with site.transaction() as conn:
                done = [e["id"] for e in entries if e["calibration_id"] in sent_ids]
                conn.executemany(
                    "DELETE FROM calibration_outbox WHERE id = ?", [(i,) for i in done]
                )
        summary.batches += 1
        summary.sent += outcomes.count("sent")
        summary.unchanged += outcomes.count("unchanged")
        summary.revised += outcomes.count("revised")
    summary.remaining = int(site.query("SELECT count(*) AS n FROM calibration_outbox")[0]["n"])
    return summary
