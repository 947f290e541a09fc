"""The shared intercomparison database: one logical schema, two backends.

``sqlite:///path/to/central.db`` (the embedded default) or ``postgresql://user@host/db``
(psycopg 3, when the campaign shares one server). The schema is created and upgraded by
versioned migrations (:data:`MIGRATIONS`, recorded in ``schema_migrations``); SQL is
written once with ``?`` placeholders and type names from :data:`_TYPES`.

Tables: ``sites``, ``systems``, ``chambers`` (dated geometry), ``observations`` (key
``uuid``; natural key ``site_id, system_id, chamber, begin_utc``), ``samples``, ``fluxes``
(key ``observation_uuid, gas, model, processing_version``), ``calibrations``,
``conflicts``, ``ingest_log``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chamberd.controller.errors import ConfigError, SyncError

__all__ = ["MIGRATIONS", "Central", "add_site_role", "redact"]

_TYPES = {
    "sqlite": {"TS": "TEXT", "FLOAT": "REAL", "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {
        "TS": "TIMESTAMPTZ",
        "FLOAT": "DOUBLE PRECISION",
        "SERIAL": "BIGSERIAL PRIMARY KEY",
    },
}

_SITE_TABLES = (
    "sites",
    "systems",
    "chambers",
    "observations",
    "samples",
    "fluxes",
    "calibrations",
    "conflicts",
    "ingest_log",
)
_OWN_SITE = "site_id IN (SELECT r.site_id FROM site_roles r WHERE r.role_name = current_user)"
_CREATE_ROLE = (
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
    "CREATE ROLE {role} NOLOGIN; END IF; END $$"
)

#: (version, description, statements for both backends, statements for PostgreSQL only);
#: never edit a released migration, add one.
MIGRATIONS: list[tuple[int, str, list[str], list[str]]] = [
    (
        1,
        "logical schema: sites, systems, chambers, observations, samples, fluxes, "
        "calibrations, conflicts, ingest log",
        [
            """CREATE TABLE sites (
                site_id TEXT PRIMARY KEY,
                name TEXT NOT NULL DEFAULT '',
                time_zone TEXT NOT NULL,
                latitude {FLOAT}, longitude {FLOAT},
                created_at {TS} NOT NULL
            )""",
            """CREATE TABLE systems (
                site_id TEXT NOT NULL REFERENCES sites(site_id),
                system_id TEXT NOT NULL,
                instrument TEXT NOT NULL DEFAULT '',
                method TEXT NOT NULL DEFAULT '',
                owner TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (site_id, system_id)
            )""",
            """CREATE TABLE chambers (
                site_id TEXT NOT NULL,
                system_id TEXT NOT NULL,
                chamber TEXT NOT NULL,
                since TEXT NOT NULL,
                area_cm2 {FLOAT}, volume_cm3 {FLOAT}, offset_cm {FLOAT},
                plot TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (site_id, system_id, chamber, since),
                FOREIGN KEY (site_id, system_id) REFERENCES systems(site_id, system_id)
            )""",
            """CREATE TABLE observations (
                uuid TEXT PRIMARY KEY,
                site_id TEXT NOT NULL,
                system_id TEXT NOT NULL,
                chamber TEXT NOT NULL,
                begin_utc {TS} NOT NULL,
                end_utc {TS},
                status TEXT NOT NULL,
                reason TEXT,
                dead_band_s {FLOAT}, observation_s {FLOAT},
                area_cm2 {FLOAT}, volume_cm3 {FLOAT}, offset_cm {FLOAT},
                soil_temperature_degc {FLOAT}, soil_moisture_pct {FLOAT},
                air_temperature_degc {FLOAT}, pressure_kpa {FLOAT},
                analyser_model TEXT, analyser_serial TEXT, calibration_id TEXT,
                config_hash TEXT, software_version TEXT,
                content_hash TEXT NOT NULL,
                revision INTEGER NOT NULL DEFAULT 1,
                received_at {TS} NOT NULL,
                ingest_id INTEGER,
                FOREIGN KEY (site_id, system_id) REFERENCES systems(site_id, system_id),
                UNIQUE (site_id, system_id, chamber, begin_utc)
            )""",
            "CREATE INDEX observations_site_time ON observations (site_id, begin_utc)",
            """CREATE TABLE samples (
                site_id TEXT NOT NULL,
                observation_uuid TEXT NOT NULL REFERENCES observations(uuid),
                seq INTEGER NOT NULL,
                time_utc {TS},
                elapsed_s {FLOAT},
                phase TEXT,
                co2_umol_mol {FLOAT}, h2o_mmol_mol {FLOAT},
                ch4_nmol_mol {FLOAT}, n2o_nmol_mol {FLOAT},
                cell_temperature_degc {FLOAT}, cell_pressure_kpa {FLOAT},
                PRIMARY KEY (observation_uuid, seq)
            )""",
            """CREATE TABLE fluxes (
                site_id TEXT NOT NULL,
                observation_uuid TEXT NOT NULL REFERENCES observations(uuid),
                gas TEXT NOT NULL,
                model TEXT NOT NULL,
                processing_version TEXT NOT NULL,
                flux {FLOAT},
                flux_unit TEXT NOT NULL,
                flux_se {FLOAT},
                r2 {FLOAT}, nrmse {FLOAT}, n_points INTEGER,
                selected INTEGER NOT NULL DEFAULT 0,
                flags TEXT NOT NULL DEFAULT '',
                revision INTEGER NOT NULL DEFAULT 1,
                PRIMARY KEY (observation_uuid, gas, model, processing_version)
            )""",
            """CREATE TABLE calibrations (
                id TEXT PRIMARY KEY,
                site_id TEXT NOT NULL REFERENCES sites(site_id),
                analyser TEXT NOT NULL,
                procedure TEXT NOT NULL,
                performed_at {TS} NOT NULL,
                data TEXT
            )""",
            """CREATE TABLE conflicts (
                id {SERIAL},
                detected_at {TS} NOT NULL,
                site_id TEXT NOT NULL,
                system_id TEXT NOT NULL,
                chamber TEXT NOT NULL,
                begin_utc {TS} NOT NULL,
                existing_uuid TEXT NOT NULL,
                incoming_uuid TEXT NOT NULL,
                source TEXT NOT NULL,
                incoming TEXT NOT NULL,
                UNIQUE (existing_uuid, incoming_uuid)
            )""",
            """CREATE TABLE ingest_log (
                id {SERIAL},
                at {TS} NOT NULL,
                site_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                source TEXT NOT NULL,
                received INTEGER NOT NULL,
                sent INTEGER NOT NULL,
                unchanged INTEGER NOT NULL,
                revised INTEGER NOT NULL,
                conflicts INTEGER NOT NULL,
                site_clock_utc {TS},
                skew_s {FLOAT},
                skew_flagged INTEGER NOT NULL DEFAULT 0,
                detail TEXT NOT NULL DEFAULT ''
            )""",
        ],
        [],
    ),
    (
        2,
        "roles and row-level security: a read-only analyst role; site writers see and "
        "write only their own site's rows (PostgreSQL)",
        [
            """CREATE TABLE site_roles (
                role_name TEXT PRIMARY KEY,
                site_id TEXT NOT NULL
            )""",
        ],
        [
            _CREATE_ROLE.format(role="chamberd_analyst"),
            _CREATE_ROLE.format(role="chamberd_site_writer"),
            "GRANT USAGE ON SCHEMA public TO chamberd_analyst, chamberd_site_writer",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO chamberd_analyst",
            "GRANT SELECT ON schema_migrations, site_roles TO chamberd_site_writer",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO chamberd_site_writer",
            *(
                statement
                for table in _SITE_TABLES
                for statement in (
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO chamberd_site_writer",
                    f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
                    f"CREATE POLICY analyst_reads ON {table} FOR SELECT TO chamberd_analyst "
                    "USING (true)",
                    f"CREATE POLICY own_site ON {table} TO chamberd_site_writer "
                    f"USING ({_OWN_SITE}) WITH CHECK ({_OWN_SITE})",
                )
            ),
        ],
    ),
]


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class Central:
    """A connection to the central database; ``with central.transaction():`` groups writes.

    Thread-safe for one writer at a time (a lock around transactions).
    """

    def __init__(self, url: str, conn: Any, dialect: str) -> None:
        self.url = url
        self.conn = conn
        self.dialect = dialect
        self._lock = threading.RLock()
        self._depth = 0
        self._copy_ok: bool | None = None

    # --- connecting -----------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, *, connect_timeout_s: float = 10.0) -> Central:
        """Open ``sqlite:///path`` or ``postgresql://...``; :class:`SyncError` if unreachable."""
        scheme = url.split(":", 1)[0].lower()
        if scheme == "sqlite":
            path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
            if not path:
                raise ConfigError(f"{url!r}: expected sqlite:///path/to/central.db")
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=30000")
            except (sqlite3.Error, OSError) as exc:
                raise SyncError(f"{url}: cannot open: {exc}") from exc
            return cls(url, conn, "sqlite")
        if scheme in ("postgresql", "postgres"):
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - psycopg is a dependency
                raise ConfigError(
                    "PostgreSQL needs psycopg (pip install 'psycopg[binary]')"
                ) from exc
            try:
                conn = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout_s))
            except psycopg.Error as exc:
                raise SyncError(f"{redact(url)}: cannot connect: {_first_line(exc)}") from None
            return cls(url, conn, "postgresql")
        raise ConfigError(f"{redact(url)}: unknown database URL (sqlite:/// or postgresql://)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self) -> Central:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- statements -----------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        if self.dialect == "postgresql":
            return re.sub(r"\?", "%s", sql.replace("%", "%%"))
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(self._sql(sql), tuple(params))
        except Exception as exc:
            raise self._translate(exc) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            if self.dialect == "sqlite":
                self.conn.executemany(sql, rows)
            else:
                with self.conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)
        except Exception as exc:
            raise self._translate(exc) from exc

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert (PostgreSQL ``COPY``, SQLite ``executemany``) inside the transaction."""
        if not rows:
            return
        if self.dialect == "sqlite" or not self._may_copy():
            # PostgreSQL refuses COPY under row-level security (site roles): plain inserts
            self.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(len(columns))})",
                rows,
            )
            return
        try:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except Exception as exc:
            raise self._translate(exc) from exc

    def _may_copy(self) -> bool:
        if self._copy_ok is None:
            row = self.execute(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            self._copy_ok = bool(row and row[0])
        return self._copy_ok

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, SyncError):
            return exc
        if self.dialect == "postgresql":
            import psycopg

            if isinstance(exc, psycopg.OperationalError):
                return SyncError(f"{redact(self.url)}: connection lost: {_first_line(exc)}")
        return exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Central]:
        """One atomic unit; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                with contextlib.suppress(Exception):
                    self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.execute("COMMIT")

    def now_utc(self) -> Any:
        """The database server's clock (PostgreSQL), or None for the embedded file."""
        if self.dialect == "postgresql":
            return self.execute("SELECT now()").fetchone()[0]
        return None

    # --- schema ---------------------------------------------------------------------------

    def schema_version(self) -> int:
        try:
            rows = self.query("SELECT max(version) AS v FROM schema_migrations")
        except Exception:
            if self.dialect == "postgresql":
                self.conn.rollback() if not self.conn.autocommit else None
            return 0
        return int(rows[0]["v"] or 0)

    def migrate(self) -> list[int]:
        """Apply the migrations not yet applied, each in its own transaction."""
        types = _TYPES[self.dialect]
        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            f"(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at {types['TS']})"
        )
        applied = []
        current = self.schema_version()
        for version, description, statements, pg_only in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction():
                for statement in statements:
                    self.execute(statement.format(**types))
                if self.dialect == "postgresql":
                    for statement in pg_only:
                        self.conn.execute(statement)  # DDL with literal $$ bodies
                self.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (version, description, _now_iso()),
                )
            applied.append(version)
        return applied


def add_site_role(central: Central, site_id: str, password: str | None = None) -> tuple[str, str]:
    """Create the login role that may write only ``site_id``'s rows (PostgreSQL).

    Returns ``(role, password)``; the password is generated unless given, and is never
    logged. Re-running for the same site sets a new password.
    """
    if central.dialect != "postgresql":
        raise ConfigError("site roles need PostgreSQL (an SQLite file has no roles)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", site_id):
        raise ConfigError(f"site id {site_id!r}: letters, digits, '-', '_' and '.' only")
    import secrets

    from psycopg import sql

    role = "chamberd_site_" + re.sub(r"[^a-z0-9_]", "_", site_id.lower())
    password = password or secrets.token_urlsafe(24)
    with central.transaction():
        exists = central.query("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,))
        verb = "ALTER" if exists else "CREATE"
        central.conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
            )
        )
        central.conn.execute(
            sql.SQL("GRANT chamberd_site_writer TO {}").format(sql.Identifier(role))
        )
        central.execute("DELETE FROM site_roles WHERE role_name = ?", (role,))
        central.execute(
            "INSERT INTO site_roles (role_name, site_id) VALUES (?, ?)", (role, site_id)
        )
    return role, password


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def _now_iso() -> str:
    from chamberd.controller.clock import SystemClock

    return SystemClock().now().isoformat()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
