"""The site store: SQLite through sqlite-utils, WAL with synchronous=FULL.

A field logger loses power: every commit is durable (``synchronous=FULL``), an
observation's completion (its status, fluxes and outbox row) is one transaction, and on
restart an observation left running is marked aborted. Table names are part of the
operator interface (their own SQL keeps working):

``chambers``          one row per chamber (label, analyser), from the configuration
``chamber_geometry``  dated geometry versions of each chamber
``observations``      one per closure: ``uuid`` (minted when the lid starts to close),
                      ``chamber``, ``status`` (running | done | aborted), ``started_at``
                      (UTC), phase times, the geometry and ancillary means it used,
                      calibration id, config hash, software version
``samples``           the raw trace: elapsed time and readings
``fluxes``            per observation, gas and model: flux, standard error, R2, flags;
                      ``selected`` marks the model reported
``events``            faults, restarts, missed rounds, operator notes, alarms
``rounds``            every scheduled round: when it ran and how it ended
``health``            per device (analyser, Modbus line, aux sensors, storage, sync): OK or
                      not, its last good reading (``last_ok_at``), its last error
``heartbeat``         one row: the daemon's pid, when it last wrote it, the round it is in,
                      what each analyser group is doing (chamber, phase), the next round
``outbox``            observations waiting to be sent to the central database
``calibrations``      calibration records (filled by the calibration procedures): who,
                      when, which instrument and cylinders, as-found/as-left state,
                      stability, result; ``status`` running | pass | fail | incomplete
``calibration_readings``  every stable reading a procedure took (cylinder id with each)
``calibration_outbox``    finished calibration records waiting to be sent (same
                      transaction as their final status)
``calibration_locks`` hardware a running calibration holds (``analyser:ID``,
                      ``chamber:ID``); the daemon skips it while held
``cylinders``         the site's registry of reference gas cylinders
``meta``              schema version, site id

Schema version 2 (issue 11) added the calibration tables and columns; a version-1 store is
upgraded in place when opened for writing (new tables, ``ALTER TABLE ADD COLUMN`` for the
new columns of ``calibrations`` and ``chamber_geometry``, all nullable), so nothing of an
existing store is rewritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from .config import SiteConfig
from .errors import StorageError

__all__ = ["SCHEMA_VERSION", "SiteStore", "iso", "process_alive"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chambers (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, analyser TEXT NOT NULL,
    enabled INTEGER NOT NULL, updated_at TEXT NOT NULL,
    out_of_service_until TEXT, out_of_service_reason TEXT
);
CREATE TABLE IF NOT EXISTS chamber_geometry (
    chamber TEXT NOT NULL REFERENCES chambers(id), since TEXT NOT NULL,
    area_cm2 REAL NOT NULL, volume_cm3 REAL NOT NULL, offset_cm REAL NOT NULL,
    PRIMARY KEY (chamber, since)
);
CREATE TABLE IF NOT EXISTS observations (
    uuid TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    chamber TEXT NOT NULL,
    round_id INTEGER,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'aborted')),
    reason TEXT,
    started_at TEXT NOT NULL,
    prepurge_at TEXT, closing_at TEXT, closed_at TEXT, deadband_at TEXT,
    observing_at TEXT, opening_at TEXT, opened_at TEXT, postpurge_at TEXT, ended_at TEXT,
    dead_band_s REAL, observation_s REAL,
    area_cm2 REAL, volume_cm3 REAL, offset_cm REAL, geometry_since TEXT,
    soil_temperature_degc REAL, soil_moisture_pct REAL, air_temperature_degc REAL,
    pressure_kpa REAL,
    analyser TEXT, analyser_model TEXT, analyser_serial TEXT,
    calibration_id TEXT, config_hash TEXT NOT NULL, software_version TEXT NOT NULL,
    time_zone TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_chamber_started ON observations (chamber, started_at);
CREATE INDEX IF NOT EXISTS observations_status ON observations (status);
CREATE TABLE IF NOT EXISTS samples (
    observation_uuid TEXT NOT NULL REFERENCES observations(uuid),
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    elapsed_s REAL,
    phase TEXT NOT NULL,
    co2_umol_mol REAL, h2o_mmol_mol REAL, cell_temperature_degc REAL,
    cell_pressure_kpa REAL, ch4_nmol_mol REAL, n2o_nmol_mol REAL,
    PRIMARY KEY (observation_uuid, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fluxes (
    observation_uuid TEXT NOT NULL REFERENCES observations(uuid),
    gas TEXT NOT NULL,
    model TEXT NOT NULL,
    flux REAL,
    flux_se REAL,
    flux_unit TEXT NOT NULL,
    r2 REAL, nrmse REAL, n_points INTEGER,
    dead_band_s REAL, end_s REAL,
    a_per_s REAL, t0_s REAL, c0 REAL,
    selected INTEGER NOT NULL,
    model_reason TEXT,
    flags TEXT NOT NULL,
    processing_version TEXT NOT NULL,
    PRIMARY KEY (observation_uuid, gas, model, processing_version)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error', 'critical')),
    kind TEXT NOT NULL,
    chamber TEXT,
    observation_uuid TEXT,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scheduled_at TEXT NOT NULL UNIQUE,
    started_at TEXT, finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'partial', 'missed', 'aborted')),
    observations INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS health (
    component TEXT PRIMARY KEY, ok INTEGER NOT NULL, detail TEXT,
    last_ok_at TEXT, updated_at TEXT NOT NULL, last_error TEXT, last_error_at TEXT,
    refused INTEGER
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT, at TEXT NOT NULL,
    state TEXT, started_at TEXT, round_at TEXT, activity TEXT NOT NULL, next_round_at TEXT,
    software_version TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    observation_uuid TEXT NOT NULL UNIQUE REFERENCES observations(uuid),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calibrations (
    id TEXT PRIMARY KEY, analyser TEXT NOT NULL, procedure TEXT NOT NULL,
    performed_at TEXT NOT NULL, operator TEXT, data TEXT, valid_from TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration_readings (
    calibration_id TEXT NOT NULL REFERENCES calibrations(id),
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    at TEXT NOT NULL,
    cylinder_id TEXT,
    gas TEXT,
    reference_value REAL,
    unit TEXT,
    mean REAL, sd REAL, n INTEGER, drift_per_min REAL, stable_s REAL, stable INTEGER,
    data TEXT,
    PRIMARY KEY (calibration_id, seq)
);
CREATE TABLE IF NOT EXISTS calibration_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    calibration_id TEXT NOT NULL UNIQUE REFERENCES calibrations(id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration_locks (
    scope TEXT PRIMARY KEY,
    calibration_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cylinders (
    id TEXT PRIMARY KEY, gas TEXT NOT NULL, value REAL NOT NULL, uncertainty REAL,
    unit TEXT NOT NULL, scale TEXT, certificate_date TEXT, expires_on TEXT NOT NULL,
    entered_by TEXT NOT NULL, entered_at TEXT NOT NULL, retired_at TEXT, retired_by TEXT,
    note TEXT
);
"""

#: Columns of ``calibrations`` added in schema version 2 (name, SQL type); all nullable so
#: that ``ALTER TABLE ADD COLUMN`` works on an existing store.
CALIBRATION_COLUMNS = (
    ("chamber", "TEXT"),
    ("supervisor", "TEXT"),
    ("started_at", "TEXT"),
    ("ended_at", "TEXT"),
    ("status", "TEXT"),
    ("result", "TEXT"),
    ("reason", "TEXT"),
    ("instrument_model", "TEXT"),
    ("instrument_serial", "TEXT"),
    ("instrument_firmware", "TEXT"),
    ("cylinder_ids", "TEXT"),
    ("as_found", "TEXT"),
    ("as_left", "TEXT"),
    ("adjusted", "INTEGER"),
    ("stability", "TEXT"),
    ("software_version", "TEXT"),
    ("pid", "INTEGER"),
)
#: Columns of ``chamber_geometry`` added in schema version 2: where a version came from
#: (``config`` or ``calibration``), the calibration record that measured it, when entered.
GEOMETRY_COLUMNS = (("source", "TEXT"), ("calibration_id", "TEXT"), ("created_at", "TEXT"))


_PHASE_COLUMNS = {
    "prepurge": "prepurge_at",
    "closing": "closing_at",
    "closed": "closed_at",
    "deadband": "deadband_at",
    "observing": "observing_at",
    "opening": "opening_at",
    "opened": "opened_at",
    "postpurge": "postpurge_at",
    "end": "ended_at",
}


def _insert(conn: sqlite3.Connection, table: str, record: Mapping[str, Any]) -> None:
    """INSERT one row (column names are chamberd's own, never user input)."""
    names = list(record)
    conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [record[n] for n in names],
    )


def _update(
    conn: sqlite3.Connection, table: str, key: str, value: Any, record: Mapping[str, Any]
) -> None:
    names = list(record)
    conn.execute(
        f"UPDATE {table} SET {', '.join(f'{n} = ?' for n in names)} WHERE {key} = ?",
        [*(record[n] for n in names), value],
    )


def iso(when: dt.datetime) -> str:
    """UTC ISO 8601 with microseconds and a 'Z' (sorts as text)."""
    if when.tzinfo is None:
        raise ValueError("store instants in UTC: a timezone-aware datetime is required")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not yet reaped,
    counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal test
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class _WrongDatabase(StorageError):
    """The file is another site's database, or a newer chamberd's: waiting will not help."""


class SiteStore:
    """The site database. Thread-safe: one connection guarded by a lock.

    With ``lazy=True`` (the daemon) a database that cannot be opened now (a full disk: SQLite
    must create its ``-shm`` and ``-wal`` files) is not an error yet: every use raises
    :class:`StorageError` and tries to open it again, so the daemon can put the site in the
    safe state, alarm, and carry on until it can. Another site's database is an error at
    once either way.
    """

    def __init__(self, path: str | Path, *, site_id: str, lazy: bool = False) -> None:
        self.path = str(path)
        self.site_id = site_id
        self._lock = threading.RLock()
        self.readonly = False
        self.consistent = True
        self._migrated = False
        self._db: sqlite_utils.Database | None = None
        try:
            self._open()
        except _WrongDatabase:
            raise
        except StorageError:
            if not lazy:
                raise

    def _open(self) -> None:
        with self._lock:
            if self._db is not None:
                return
            conn = None
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, check_same_thread=False, timeout=30.0, isolation_level=None
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                self._db = sqlite_utils.Database(conn)
                conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\nCOMMIT;")
                self._check_meta()
            except (sqlite3.DatabaseError, OSError) as exc:
                self._abandon(conn)
                raise StorageError(f"{self.path}: cannot open the site database: {exc}") from exc
            except StorageError:
                self._abandon(conn)
                raise
            with contextlib.suppress(StorageError):  # a full disk: at the first health write
                self._migrate()

    def _abandon(self, conn: sqlite3.Connection | None) -> None:
        self._db = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @property
    def db(self) -> sqlite_utils.Database:
        """The open database (opened now if it could not be before; StorageError if not)."""
        if self._db is None:
            self._open()
        assert self._db is not None
        return self._db

    def _migrate(self) -> None:
        """Columns added since schema version 1 was first released (all nullable), and the
        schema version recorded. Safe to repeat and safe on an existing store: only
        ``ADD COLUMN`` of nullable columns, one transaction."""
        if self._migrated:
            return
        with self._lock:
            wanted = {
                "health": (
                    ("last_error", "TEXT"),
                    ("last_error_at", "TEXT"),
                    ("refused", "INTEGER"),
                ),
                "calibrations": CALIBRATION_COLUMNS,
                "chamber_geometry": GEOMETRY_COLUMNS,
                # issue 13: several analysers per loop, per-gas quality
                "samples": (("analyser", "TEXT"),),
                "fluxes": (("analyser", "TEXT"), ("mdf", "REAL"), ("quality", "TEXT")),
            }
            missing: list[tuple[str, str, str]] = []
            for table, columns in wanted.items():
                have = {r[1] for r in self.db.conn.execute(f"PRAGMA table_info({table})")}
                missing += [(table, c, t) for c, t in columns if c not in have]
            version = dict(self.db.conn.execute("SELECT key, value FROM meta").fetchall()).get(
                "schema_version"
            )
            if missing or version != str(SCHEMA_VERSION):
                with self._tx() as conn:
                    for table, column, kind in missing:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (str(SCHEMA_VERSION),),
                    )
            self._migrated = True

    # --- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.DatabaseError):
                conn.execute("ROLLBACK")
            raise StorageError(f"{self.path}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(sqlite3.DatabaseError):
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable transaction (serialised across threads)."""
        with self._lock, self._tx() as conn:
            yield conn

    def _check_meta(self) -> None:
        conn = self.db.conn
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            with self._tx():
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("site", self.site_id)],
                )
            return
        if rows.get("site") != self.site_id:
            raise _WrongDatabase(
                f"{self.path}: belongs to site {rows.get('site')!r}, not {self.site_id!r}"
            )
        if int(rows.get("schema_version", "0")) > SCHEMA_VERSION:
            raise _WrongDatabase(
                f"{self.path}: schema version {rows['schema_version']} is newer than this "
                f"chamberd ({SCHEMA_VERSION})"
            )

    @classmethod
    def open_existing(cls, path: str | Path) -> SiteStore:
        """Open a site database for reading, whatever its site."""
        try:
            conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            site = dict(conn.execute("SELECT key, value FROM meta").fetchall()).get("site")
            conn.close()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: not a chamberd site database: {exc}") from exc
        if site is None:
            raise StorageError(f"{path}: not a chamberd site database (no site id)")
        return cls(path, site_id=site)

    @classmethod
    def open_readonly(cls, path: str | Path) -> SiteStore:
        """Open a site database for reading only: nothing is written (not even the schema),
        so it works beside a running daemon, on a read-only mount, and on a full disk (where
        SQLite cannot create the ``-shm`` file a WAL reader needs, the file is read as it
        is on disk, without locking: ``consistent`` is then False)."""
        store = cls.__new__(cls)
        store.path = str(path)
        store._lock = threading.RLock()
        store.readonly = True
        store._migrated = True
        store.consistent = True
        resolved = Path(path).resolve()
        conn = None
        site = None
        for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"file:{resolved}{suffix}", uri=True, check_same_thread=False
                )
                site = dict(conn.execute("SELECT key, value FROM meta").fetchall()).get("site")
                break
            except sqlite3.DatabaseError as exc:
                error: sqlite3.DatabaseError = exc
                if conn is not None:
                    conn.close()
                conn = None
                store.consistent = False
        if conn is None:
            raise StorageError(f"{path}: not a chamberd site database: {error}") from error
        if site is None:
            conn.close()
            raise StorageError(f"{path}: not a chamberd site database (no site id)")
        store.site_id = site
        store._db = sqlite_utils.Database(conn)
        return store

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.conn.close()

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.db.conn.execute(sql, params)
            names = [c[0] for c in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain tuples (for bulk reads where a dict per row would cost too much)."""
        with self._lock:
            return self.db.conn.execute(sql, params).fetchall()

    # --- configuration --------------------------------------------------------------------

    def sync_chambers(self, cfg: SiteConfig, now: dt.datetime) -> None:
        """Record the configured chambers and their geometry versions."""
        with self.transaction() as conn:
            for c in cfg.chambers:
                conn.execute(
                    "INSERT INTO chambers (id, label, analyser, enabled, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "label=excluded.label, analyser=excluded.analyser, enabled=excluded.enabled, "
                    "updated_at=excluded.updated_at",
                    (c.id, c.label, c.analyser, int(c.enabled), iso(now)),
                )
                for g in c.geometry:
                    conn.execute(
                        "INSERT INTO chamber_geometry (chamber, since, area_cm2, volume_cm3, "
                        "offset_cm) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                        "SET area_cm2=excluded.area_cm2, volume_cm3=excluded.volume_cm3, "
                        "offset_cm=excluded.offset_cm",
                        (c.id, g.since.isoformat(), g.area_cm2, g.volume_cm3, g.offset_cm),
                    )

    def update_chamber_service(
        self, chamber: str, out_until: dt.datetime | None, reason: str | None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE chambers SET out_of_service_until = ?, out_of_service_reason = ? "
                "WHERE id = ?",
                (iso(out_until) if out_until else None, reason if out_until else None, chamber),
            )

    # --- observations ---------------------------------------------------------------------

    def start_observation(self, row: Mapping[str, Any]) -> str:
        """Insert a running observation; returns its new uuid."""
        uuid = str(uuidlib.uuid4())
        record = {"uuid": uuid, "site": self.site_id, "status": "running", **row}
        with self.transaction() as conn:
            _insert(conn, "observations", record)
        return uuid

    def set_phase(self, uuid: str, phase: str, at: dt.datetime) -> None:
        column = _PHASE_COLUMNS[phase]
        with self.transaction() as conn:
            conn.execute(f"UPDATE observations SET {column} = ? WHERE uuid = ?", (iso(at), uuid))

    def update_observation(self, uuid: str, values: Mapping[str, Any]) -> None:
        if not values:
            return
        with self.transaction() as conn:
            _update(conn, "observations", "uuid", uuid, values)

    def add_samples(self, uuid: str, rows: Iterable[Mapping[str, Any]]) -> None:
        batch = [{"observation_uuid": uuid, **r} for r in rows]
        if batch:
            with self.transaction() as conn:
                for row in batch:
                    _insert(conn, "samples", row)

    def complete_observation(
        self,
        uuid: str,
        *,
        status: str,
        reason: str | None,
        ended_at: dt.datetime,
        fluxes: Sequence[Mapping[str, Any]] = (),
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Status, fluxes and the outbox row of an observation, in one transaction."""
        if status not in ("done", "aborted"):
            raise ValueError(f"status must be 'done' or 'aborted', got {status!r}")
        with self.transaction() as conn:
            update = {
                "status": status,
                "reason": reason,
                "ended_at": iso(ended_at),
                **(values or {}),
            }
            self.db["observations"].update(uuid, update)
            if fluxes:
                self.db["fluxes"].insert_all([{"observation_uuid": uuid, **f} for f in fluxes])
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, ?)",
                (uuid, iso(ended_at)),
            )

    def abort_running(self, reason: str, at: dt.datetime) -> list[str]:
        """Mark observations left running (a restart) aborted; returns their uuids."""
        with self.transaction() as conn:
            uuids = [
                r[0] for r in conn.execute("SELECT uuid FROM observations WHERE status = 'running'")
            ]
            for uuid in uuids:
                conn.execute(
                    "UPDATE observations SET status = 'aborted', reason = ?, ended_at = ? "
                    "WHERE uuid = ?",
                    (reason, iso(at), uuid),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO outbox (observation_uuid, created_at) VALUES (?, ?)",
                    (uuid, iso(at)),
                )
            conn.execute(
                "UPDATE rounds SET status = 'aborted', finished_at = ? WHERE status = 'running'",
                (iso(at),),
            )
        return uuids

    # --- events, rounds, health -----------------------------------------------------------

    def record_event(
        self,
        level: str,
        kind: str,
        message: str,
        at: dt.datetime,
        *,
        chamber: str | None = None,
        observation_uuid: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO events (at, level, kind, chamber, observation_uuid, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    iso(at),
                    level,
                    kind,
                    chamber,
                    observation_uuid,
                    message,
                    json.dumps(data, default=str) if data else None,
                ),
            )
            return int(cursor.lastrowid or 0)

    def record_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Several events in one transaction (those kept while the database was full)."""
        if not events:
            return
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO events (at, level, kind, chamber, observation_uuid, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        iso(e["at"]),
                        e["level"],
                        e["kind"],
                        e.get("chamber"),
                        e.get("observation_uuid"),
                        e["message"],
                        json.dumps(e["data"], default=str) if e.get("data") else None,
                    )
                    for e in events
                ],
            )

    def start_round(self, scheduled_at: dt.datetime, started_at: dt.datetime) -> int | None:
        """Insert a running round; None when this slot already ran (never run a slot twice)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO rounds (scheduled_at, started_at, status) "
                "VALUES (?, ?, 'running')",
                (iso(scheduled_at), iso(started_at)),
            )
            return int(cursor.lastrowid) if cursor.rowcount else None

    def finish_round(
        self, round_id: int, finished_at: dt.datetime, observations: int, failures: int
    ) -> None:
        status = "done" if failures == 0 else "partial"
        with self.transaction() as conn:
            conn.execute(
                "UPDATE rounds SET finished_at = ?, status = ?, observations = ?, failures = ? "
                "WHERE id = ?",
                (iso(finished_at), status, observations, failures, round_id),
            )

    def prune_samples(self, older_than: dt.datetime) -> int:
        """Delete the samples of observations that ended before ``older_than`` and are no
        longer waiting in the outbox (uploaded); the observations and fluxes stay."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM samples WHERE observation_uuid IN ("
                " SELECT o.uuid FROM observations o WHERE o.status != 'running'"
                " AND o.ended_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM outbox b WHERE b.observation_uuid = o.uuid))",
                (iso(older_than),),
            )
            return cursor.rowcount

    def record_missed_round(self, scheduled_at: dt.datetime) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO rounds (scheduled_at, status) VALUES (?, 'missed')",
                (iso(scheduled_at),),
            )
            return bool(cursor.rowcount)

    def last_round(self) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM rounds WHERE status != 'missed' ORDER BY scheduled_at DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def set_health(self, component: str, ok: bool, detail: str, at: dt.datetime) -> None:
        self.write_health(
            [
                {
                    "component": component,
                    "ok": ok,
                    "detail": detail,
                    "last_good_at": at if ok else None,
                    "last_error": None if ok else detail,
                    "last_error_at": None if ok else at,
                    "updated_at": at,
                }
            ]
        )

    def write_health(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Upsert health rows (``component``, ``ok`` (None: not used yet, stored as 0),
        ``detail``, ``last_good_at``, ``last_error``, ``last_error_at``, ``updated_at``),
        in one transaction. A time left None keeps the stored one."""
        if not entries:
            return
        self._migrate()

        def stamp(value: dt.datetime | None) -> str | None:
            return None if value is None else iso(value)

        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO health (component, ok, detail, last_ok_at, updated_at, last_error, "
                "last_error_at, refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(component) DO UPDATE SET "
                "ok = excluded.ok, detail = excluded.detail, updated_at = excluded.updated_at, "
                "refused = excluded.refused, "
                "last_ok_at = COALESCE(excluded.last_ok_at, health.last_ok_at), "
                "last_error = COALESCE(excluded.last_error, health.last_error), "
                "last_error_at = COALESCE(excluded.last_error_at, health.last_error_at)",
                [
                    (
                        e["component"],
                        int(bool(e["ok"])),
                        e.get("detail") or "",
                        stamp(e.get("last_good_at")),
                        iso(e["updated_at"]),
                        e.get("last_error"),
                        stamp(e.get("last_error_at")),
                        int(bool(e.get("refused"))),
                    )
                    for e in entries
                ],
            )

    # --- geometry versions measured by a calibration ----------------------------------------

    def add_geometry_version(
        self,
        chamber: str,
        since: dt.datetime,
        *,
        area_cm2: float,
        volume_cm3: float,
        offset_cm: float,
        calibration_id: str | None,
        conn: sqlite3.Connection | None = None,
    ) -> str:
        """A new dated geometry version of ``chamber`` (``since``: a UTC instant, stored as
        ISO text, which sorts after the configuration's dates of the same day). Pass
        ``conn`` to write it inside a caller's :meth:`transaction`. Returns ``since`` as
        stored."""
        self._migrate()
        stamp = iso(since)
        row = (chamber, stamp, area_cm2, volume_cm3, offset_cm, "calibration", calibration_id)
        sql = (
            "INSERT INTO chamber_geometry (chamber, since, area_cm2, volume_cm3, offset_cm, "
            "source, calibration_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if conn is not None:
            conn.execute(sql, (*row, stamp))
        else:
            with self.transaction() as own:
                own.execute(sql, (*row, stamp))
        return stamp

    def geometry_in_force(self, chamber: str, at: dt.datetime) -> dict[str, Any] | None:
        """The newest stored geometry version of ``chamber`` in force at ``at`` (from the
        configuration or measured by a calibration), or None when the store has none."""
        rows = self.query(
            "SELECT * FROM chamber_geometry WHERE chamber = ? AND since <= ? "
            "ORDER BY since DESC LIMIT 1",
            (chamber, iso(at)),
        )
        return rows[0] if rows else None

    # --- calibration locks and stale calibrations ------------------------------------------

    def calibration_locks(self) -> list[dict[str, Any]]:
        """Hardware held by running calibrations: scope, calibration_id, pid, started_at."""
        try:
            return self.query("SELECT * FROM calibration_locks ORDER BY scope")
        except sqlite3.OperationalError:  # a store older than schema version 2, read-only
            return []

    def take_calibration_locks(
        self, scopes: Sequence[str], calibration_id: str, pid: int, at: dt.datetime
    ) -> list[dict[str, Any]]:
        """Take every scope or none: returns the locks held by others (empty: taken)."""
        with self.transaction() as conn:
            held = [
                dict(zip(("scope", "calibration_id", "pid", "started_at"), r, strict=True))
                for r in conn.execute(
                    "SELECT scope, calibration_id, pid, started_at FROM calibration_locks "
                    f"WHERE scope IN ({', '.join('?' * len(scopes))})",
                    list(scopes),
                )
                if r[1] != calibration_id
            ]
            if held:
                return held
            conn.executemany(
                "INSERT OR REPLACE INTO calibration_locks (scope, calibration_id, pid, "
                "started_at) VALUES (?, ?, ?, ?)",
                [(scope, calibration_id, pid, iso(at)) for scope in scopes],
            )
        return []

    def release_calibration_locks(
        self, calibration_id: str, conn: sqlite3.Connection | None = None
    ) -> None:
        if conn is not None:
            conn.execute(
                "DELETE FROM calibration_locks WHERE calibration_id = ?", (calibration_id,)
            )
            return
        with self.transaction() as own:
            own.execute("DELETE FROM calibration_locks WHERE calibration_id = ?", (calibration_id,))

    def end_calibration(
        self,
        calibration_id: str,
        *,
        status: str,
        at: dt.datetime,
        values: Mapping[str, Any] | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> bool:
        """A calibration's final status (pass | fail | incomplete), its outbox row and the
        release of its locks, in one transaction. Only a ``running`` record is ended (a
        finished record is never changed): False when it was not running."""
        if status not in ("pass", "fail", "incomplete"):
            raise ValueError(f"status must be pass, fail or incomplete, got {status!r}")

        def write(tx: sqlite3.Connection) -> bool:
            record = {"status": status, "ended_at": iso(at), **(values or {})}
            names = list(record)
            cursor = tx.execute(
                f"UPDATE calibrations SET {', '.join(f'{n} = ?' for n in names)} "
                "WHERE id = ? AND status = 'running'",
                [*(record[n] for n in names), calibration_id],
            )
            if cursor.rowcount:
                tx.execute(
                    "INSERT OR IGNORE INTO calibration_outbox (calibration_id, created_at) "
                    "VALUES (?, ?)",
                    (calibration_id, iso(at)),
                )
            self.release_calibration_locks(calibration_id, tx)
            return bool(cursor.rowcount)

        if conn is not None:
            return write(conn)
        with self.transaction() as own:
            return write(own)

    def calibration_in_force(self, analyser: str, at: dt.datetime) -> str | None:
        """The newest finished calibration record of ``analyser`` carrying reference-gas
        checks (``data.checks``) and valid from before ``at``: the one in force."""
        try:
            rows = self.rows(
                "SELECT id FROM calibrations WHERE analyser = ? AND status IN ('pass', 'fail') "
                "AND valid_from <= ? AND json_array_length(json_extract(data, '$.checks')) > 0 "
                "ORDER BY valid_from DESC LIMIT 1",
                (analyser, iso(at)),
            )
        except sqlite3.OperationalError:  # a store older than schema version 2, read-only
            return None
        return rows[0][0] if rows else None

    def stale_calibration_locks(self) -> list[dict[str, Any]]:
        """Locks whose holder (a ``chamberd calibrate`` process on this machine) is dead."""
        return [lock for lock in self.calibration_locks() if not process_alive(int(lock["pid"]))]

    def write_heartbeat(self, beat: Mapping[str, Any]) -> None:
        """Replace the daemon's heartbeat (``pid``, ``host``, ``at``, ``state`` (starting,
        idle, measuring, stopped), ``started_at``,
        ``round_at``, ``activity`` (a list of dicts), ``next_round_at``,
        ``software_version``; times as datetimes or None)."""

        def stamp(value: Any) -> str | None:
            return (
                None if value is None else iso(value) if isinstance(value, dt.datetime) else value
            )

        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO heartbeat (id, pid, host, at, state, started_at, "
                "round_at, activity, next_round_at, software_version) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    beat["pid"],
                    beat.get("host"),
                    stamp(beat["at"]),
                    beat.get("state"),
                    stamp(beat.get("started_at")),
                    stamp(beat.get("round_at")),
                    json.dumps(beat.get("activity") or [], default=str),
                    stamp(beat.get("next_round_at")),
                    beat.get("software_version"),
                ),
            )

    def heartbeat(self) -> dict[str, Any] | None:
        """The daemon's last heartbeat (``activity`` decoded), or None (never written, or a
        database of a chamberd without heartbeats)."""
        have = self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", ("heartbeat",)
        )
        if not have:
            return None
        rows = self.query("SELECT * FROM heartbeat WHERE id = 1")
        if not rows:
            return None
        row = dict(rows[0])
        try:
            row["activity"] = json.loads(row.get("activity") or "[]")
        except ValueError:
            row["activity"] = []
        return row

    def integrity_check(self) -> str:
        return self.query("PRAGMA integrity_check")[0]["integrity_check"]
