"""The shared intercomparison database: one logical schema, two backends.

``sqlite:///path/to/central.db`` (the embedded default) or ``postgresql://user@host/db``
(psycopg 3, when the campaign shares one server). The schema is created and upgraded by
versioned migrations (:data:`MIGRATIONS`, recorded in ``schema_migrations``); SQL is
written once with ``?`` placeholders and type names from :data:`_TYPES`.

Tables: ``campaign`` (the database's own short random id), ``sites``, ``systems`` (with
``metadata``: an imported data set's own description, JSON), ``chambers`` (dated
geometry), ``observations`` (key ``uuid``; natural key ``site_id, system_id, chamber,
begin_utc``), ``samples``, ``fluxes`` (key ``observation_uuid, gas, model,
processing_version``), ``calibrations`` (the site calibration records, schema version 5 on
with their fields) and ``calibration_readings``, ``refit_calibrations`` (which calibrations a
``refit --apply-calibrations`` applied to which observation), ``conflicts``, ``ingest_log``,
``site_roles``.

This module is the database boundary: every sqlite3 or psycopg exception is translated here
(:meth:`Central._translate`) into the chamberd tree, with a message that names the table,
role and site where it can and never a password:

* ``ConfigError``: a URL that names no database (a missing file, a folder, a file that is not
  SQLite, a PostgreSQL database that does not exist), a login the server refuses, no chamberd
  schema (``chamberd central init`` makes one) or a newer one;
* ``SyncError``: the database refused (row-level security, a permission, a key taken, a
  parent of another site, a value it cannot hold) or cannot be reached;
* ``StorageError``: the database failed (corrupt file, disk full, anything else).

Multi-site security (PostgreSQL): each campaign database has its own roles, named after the
``campaign`` id (roles are cluster-wide): ``chamberd_<id>_analyst`` (read-only),
``chamberd_<id>_writer`` (the group of site roles) and one login role per site,
``chamberd_<id>_site_<site id>`` (:func:`site_role_name`). Row-level security confines a site
role to the rows whose ``site_id`` is its site, and every child row is bound to its parent's
site by a composite foreign key ``(site_id, observation_uuid) REFERENCES observations
(site_id, uuid)`` (samples, fluxes; conflicts through ``existing_uuid``), so no site can hang
rows onto another site's observation or re-point its own there. A later child table follows
the same two rules (``tests/network_sync/test_central_security.py`` checks every table).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from chamberd.controller.errors import ChamberError, ConfigError, StorageError, SyncError

__all__ = [
    "CALIBRATION_VERSION",
    "LATEST_VERSION",
    "METADATA_VERSION",
    "MIGRATIONS",
    "Central",
    "add_site_role",
    "redact",
    "site_role_name",
    "value_problem",
    "values_fine",
]

_TYPES = {
    "sqlite": {
        "TS": "TEXT",
        "FLOAT": "REAL",
        "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "RANDOM_ID": "lower(hex(randomblob(3)))",
        "NOW": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    },
    "postgresql": {
        "TS": "TIMESTAMPTZ",
        "FLOAT": "DOUBLE PRECISION",
        "SERIAL": "BIGSERIAL PRIMARY KEY",
        "RANDOM_ID": "substr(md5(random()::text || clock_timestamp()::text), 1, 6)",
        "NOW": "now()",
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

#: the columns migration 5 adds to ``calibrations``: the site record's fields
#: (``calibration/records.py``), a content hash and revision for an idempotent sync, and
#: where the record came from (``sync`` or ``import:<file>``)
_CALIBRATION_COLUMNS = (
    "chamber TEXT",
    "operator TEXT",
    "supervisor TEXT",
    "started_at {TS}",
    "ended_at {TS}",
    "valid_from {TS}",
    "status TEXT",
    "result TEXT",
    "reason TEXT",
    "instrument_model TEXT",
    "instrument_serial TEXT",
    "instrument_firmware TEXT",
    "cylinder_ids TEXT",
    "as_found TEXT",
    "as_left TEXT",
    "adjusted INTEGER",
    "stability TEXT",
    "software_version TEXT",
    "content_hash TEXT",
    "revision INTEGER NOT NULL DEFAULT 1",
    "source TEXT NOT NULL DEFAULT ''",
    "received_at {TS}",
)

#: a statement of a migration: SQL for both backends, or SQL per backend
Statement = str | dict[str, list[str]]

#: (version, description, statements for both backends, statements for PostgreSQL only);
#: never edit a released migration, add one.
MIGRATIONS: list[tuple[int, str, list[Statement], list[str]]] = [
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
    (
        3,
        "campaign id and per-campaign roles; child rows bound to their parent observation's "
        "site (composite foreign keys); site_roles private to each role (PostgreSQL)",
        [
            """CREATE TABLE campaign (
                campaign_id TEXT PRIMARY KEY,
                created_at {TS} NOT NULL
            )""",
            "INSERT INTO campaign (campaign_id, created_at) VALUES ({RANDOM_ID}, {NOW})",
            {
                "sqlite": [
                    "CREATE UNIQUE INDEX observations_site_uuid ON observations (site_id, uuid)",
                    """CREATE TABLE samples_v3 (
                        site_id TEXT NOT NULL,
                        observation_uuid TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        time_utc {TS},
                        elapsed_s {FLOAT},
                        phase TEXT,
                        co2_umol_mol {FLOAT}, h2o_mmol_mol {FLOAT},
                        ch4_nmol_mol {FLOAT}, n2o_nmol_mol {FLOAT},
                        cell_temperature_degc {FLOAT}, cell_pressure_kpa {FLOAT},
                        PRIMARY KEY (observation_uuid, seq),
                        CONSTRAINT samples_observation_site FOREIGN KEY (site_id, observation_uuid)
                            REFERENCES observations (site_id, uuid)
                    )""",
                    "INSERT INTO samples_v3 SELECT site_id, observation_uuid, seq, time_utc, "
                    "elapsed_s, phase, co2_umol_mol, h2o_mmol_mol, ch4_nmol_mol, n2o_nmol_mol, "
                    "cell_temperature_degc, cell_pressure_kpa FROM samples",
                    "DROP TABLE samples",
                    "ALTER TABLE samples_v3 RENAME TO samples",
                    """CREATE TABLE fluxes_v3 (
                        site_id TEXT NOT NULL,
                        observation_uuid TEXT NOT NULL,
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
                        PRIMARY KEY (observation_uuid, gas, model, processing_version),
                        CONSTRAINT fluxes_observation_site FOREIGN KEY (site_id, observation_uuid)
                            REFERENCES observations (site_id, uuid)
                    )""",
                    "INSERT INTO fluxes_v3 SELECT site_id, observation_uuid, gas, model, "
                    "processing_version, flux, flux_unit, flux_se, r2, nrmse, n_points, selected, "
                    "flags, revision FROM fluxes",
                    "DROP TABLE fluxes",
                    "ALTER TABLE fluxes_v3 RENAME TO fluxes",
                    """CREATE TABLE conflicts_v3 (
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
                        UNIQUE (existing_uuid, incoming_uuid),
                        CONSTRAINT conflicts_system FOREIGN KEY (site_id, system_id)
                            REFERENCES systems (site_id, system_id),
                        CONSTRAINT conflicts_existing_observation
                            FOREIGN KEY (site_id, existing_uuid)
                            REFERENCES observations (site_id, uuid)
                            DEFERRABLE INITIALLY DEFERRED
                    )""",
                    "INSERT INTO conflicts_v3 SELECT id, detected_at, site_id, system_id, chamber, "
                    "begin_utc, existing_uuid, incoming_uuid, source, incoming FROM conflicts",
                    "DROP TABLE conflicts",
                    "ALTER TABLE conflicts_v3 RENAME TO conflicts",
                ],
                "postgresql": [
                    "ALTER TABLE observations ADD CONSTRAINT observations_site_uuid "
                    "UNIQUE (site_id, uuid)",
                    "ALTER TABLE samples ADD CONSTRAINT samples_observation_site "
                    "FOREIGN KEY (site_id, observation_uuid) "
                    "REFERENCES observations (site_id, uuid)",
                    "ALTER TABLE fluxes ADD CONSTRAINT fluxes_observation_site "
                    "FOREIGN KEY (site_id, observation_uuid) "
                    "REFERENCES observations (site_id, uuid)",
                    "ALTER TABLE conflicts ADD CONSTRAINT conflicts_system "
                    "FOREIGN KEY (site_id, system_id) REFERENCES systems (site_id, system_id)",
                    "ALTER TABLE conflicts ADD CONSTRAINT conflicts_existing_observation "
                    "FOREIGN KEY (site_id, existing_uuid) REFERENCES observations (site_id, uuid) "
                    "DEFERRABLE INITIALLY DEFERRED",
                ],
            },
        ],
        [
            # a campaign id no other database of this server uses for its roles
            "DO $$ DECLARE cid text; BEGIN SELECT campaign_id INTO cid FROM campaign; "
            "WHILE EXISTS (SELECT 1 FROM pg_roles WHERE rolname LIKE 'chamberd\\_' || cid || "
            "'\\_%') LOOP cid := substr(md5(random()::text || clock_timestamp()::text), 1, 6); "
            "UPDATE campaign SET campaign_id = cid; END LOOP; END $$",
            "CREATE ROLE {analyst} NOLOGIN",
            "CREATE ROLE {writer} NOLOGIN",
            "GRANT USAGE ON SCHEMA public TO {analyst}, {writer}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {analyst}",
            "GRANT SELECT ON schema_migrations, campaign, site_roles TO {writer}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {writer}",
            *(
                statement
                for table in _SITE_TABLES
                for statement in (
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {{writer}}",
                    f"DROP POLICY IF EXISTS analyst_reads ON {table}",
                    f"DROP POLICY IF EXISTS own_site ON {table}",
                    f"CREATE POLICY analyst_reads ON {table} FOR SELECT TO {{analyst}} "
                    "USING (true)",
                    f"CREATE POLICY own_site ON {table} TO {{writer}} "
                    f"USING ({_OWN_SITE}) WITH CHECK ({_OWN_SITE})",
                )
            ),
            # a site role sees its own row of site_roles only: no list of the other sites
            "ALTER TABLE site_roles ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY analyst_reads ON site_roles FOR SELECT TO {analyst} USING (true)",
            "CREATE POLICY own_role ON site_roles FOR SELECT TO {writer} "
            "USING (role_name = current_user)",
            # roles of the version-2 scheme: analysts of the shared chamberd_analyst group and
            # the site roles this database lists keep their access through this campaign's
            # groups; the shared groups lose theirs here
            "DO $$ DECLARE r record; BEGIN "
            "FOR r IN SELECT m.rolname FROM pg_auth_members a "
            "JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
            "WHERE g.rolname = 'chamberd_analyst' LOOP "
            "EXECUTE format('GRANT %I TO %I', '{analyst}', r.rolname); END LOOP; "
            "FOR r IN SELECT s.role_name FROM site_roles s "
            "JOIN pg_roles p ON p.rolname = s.role_name LOOP "
            "EXECUTE format('GRANT %I TO %I', '{writer}', r.role_name); END LOOP; "
            "IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chamberd_analyst') THEN "
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM chamberd_analyst; "
            "REVOKE USAGE ON SCHEMA public FROM chamberd_analyst; END IF; "
            "IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chamberd_site_writer') THEN "
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM chamberd_site_writer; "
            "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM chamberd_site_writer; "
            "REVOKE USAGE ON SCHEMA public FROM chamberd_site_writer; END IF; END $$",
        ],
    ),
    (
        4,
        "systems.metadata: what an imported data set says of itself (COSORE DESCRIPTION.txt "
        "and PORTS.txt, as JSON), carried to exports",
        ["ALTER TABLE systems ADD COLUMN metadata TEXT NOT NULL DEFAULT ''"],
        [],
    ),
    (
        5,
        "calibration records: calibrations carry the site record's fields, their readings in "
        "calibration_readings, the calibrations a refit applied in refit_calibrations, "
        "observations name their analyser",
        [
            *(f"ALTER TABLE calibrations ADD COLUMN {column}" for column in _CALIBRATION_COLUMNS),
            "ALTER TABLE observations ADD COLUMN analyser TEXT",
            {
                "sqlite": [
                    "CREATE UNIQUE INDEX calibrations_site_id ON calibrations (site_id, id)",
                ],
                "postgresql": [
                    "ALTER TABLE calibrations ADD CONSTRAINT calibrations_site_id "
                    "UNIQUE (site_id, id)",
                ],
            },
            "CREATE INDEX calibrations_site_serial ON calibrations (site_id, instrument_serial)",
            """CREATE TABLE calibration_readings (
                site_id TEXT NOT NULL,
                calibration_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                step TEXT,
                at {TS},
                cylinder_id TEXT,
                gas TEXT,
                reference_value {FLOAT},
                unit TEXT,
                mean {FLOAT}, sd {FLOAT}, n INTEGER,
                drift_per_min {FLOAT}, stable_s {FLOAT}, stable INTEGER,
                data TEXT,
                PRIMARY KEY (calibration_id, seq),
                CONSTRAINT calibration_readings_calibration_site
                    FOREIGN KEY (site_id, calibration_id) REFERENCES calibrations (site_id, id)
            )""",
            """CREATE TABLE refit_calibrations (
                site_id TEXT NOT NULL,
                observation_uuid TEXT NOT NULL,
                gas TEXT NOT NULL,
                processing_version TEXT NOT NULL,
                calibration_id TEXT NOT NULL,
                gain {FLOAT} NOT NULL,
                offset_mf {FLOAT} NOT NULL,
                PRIMARY KEY (observation_uuid, gas, processing_version, calibration_id),
                CONSTRAINT refit_calibrations_observation_site
                    FOREIGN KEY (site_id, observation_uuid) REFERENCES observations (site_id, uuid),
                CONSTRAINT refit_calibrations_calibration_site
                    FOREIGN KEY (site_id, calibration_id) REFERENCES calibrations (site_id, id)
            )""",
        ],
        [
            *(
                statement
                for table in ("calibration_readings", "refit_calibrations")
                for statement in (
                    f"GRANT SELECT ON {table} TO {{analyst}}",
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {{writer}}",
                    f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
                    f"CREATE POLICY analyst_reads ON {table} FOR SELECT TO {{analyst}} "
                    "USING (true)",
                    f"CREATE POLICY own_site ON {table} TO {{writer}} "
                    f"USING ({_OWN_SITE}) WITH CHECK ({_OWN_SITE})",
                )
            ),
        ],
    ),
]

#: the schema version this chamberd writes
LATEST_VERSION = MIGRATIONS[-1][0]
#: the version from which ``systems.metadata`` exists
METADATA_VERSION = 4
#: the version from which calibration records and their readings travel
CALIBRATION_VERSION = 5

#: rows a migration cannot carry over: (table, count query, what is wrong with them)
_PRECHECKS: dict[int, list[tuple[str, str, str]]] = {
    3: [
        (
            "fluxes",
            "SELECT count(*) AS n FROM fluxes f LEFT JOIN observations o "
            "ON o.uuid = f.observation_uuid WHERE o.uuid IS NULL OR o.site_id <> f.site_id",
            "carry a site_id other than their observation's",
        ),
        (
            "samples",
            "SELECT count(*) AS n FROM samples s LEFT JOIN observations o "
            "ON o.uuid = s.observation_uuid WHERE o.uuid IS NULL OR o.site_id <> s.site_id",
            "carry a site_id other than their observation's",
        ),
        (
            "conflicts",
            "SELECT count(*) AS n FROM conflicts c LEFT JOIN observations o "
            "ON o.uuid = c.existing_uuid WHERE o.uuid IS NULL OR o.site_id <> c.site_id",
            "name an existing observation of another site",
        ),
        (
            "conflicts",
            "SELECT count(*) AS n FROM conflicts c LEFT JOIN systems y "
            "ON y.site_id = c.site_id AND y.system_id = c.system_id WHERE y.site_id IS NULL",
            "name a system their site does not have",
        ),
    ]
}


def redact(url: str) -> str:
    """``url`` without its password (for messages, logs and reports): the one in the
    authority (``user:pw@host``) and a libpq ``password=`` parameter in the query."""
    try:
        parts = urlsplit(url)
        password = parts.password
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable database URL>"
    query = re.sub(r"(?i)(^|&)(password)=[^&]*", r"\1\2=***", parts.query)
    if password is None:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    if port:
        host = f"{host}:{port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, query, parts.fragment))


def _scrub(text: str, url: str) -> str:
    """``text`` with any form of ``url``'s password replaced by ``***``."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            for form in {password, unquote(password)}:
                text = text.replace(form, "***")
    return text


def site_role_name(campaign_id: str, site_id: str) -> str:
    """The login role of ``site_id`` in the campaign database ``campaign_id``.

    ``chamberd_<campaign id>_site_<site id>``: the site id exactly (case kept; site ids are
    letters, digits, ``_``, ``.`` and ``-``), so different sites never share a role and the
    same site id in two databases of one server gets two roles. A site id too long for
    PostgreSQL's 63-byte names keeps its first characters and ends in ``~`` and 12 hex digits
    of its SHA-256 (``~`` never occurs in a site id, so the two forms cannot meet).
    """
    prefix = f"chamberd_{campaign_id}_site_"
    name = prefix + site_id
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(site_id.encode()).hexdigest()[:12]
    return f"{prefix}{site_id[: 63 - len(prefix) - 13]}~{digest}"


# --- values both backends can hold ----------------------------------------------------------

_INT4 = 2**31
#: the ISO 8601 forms both backends read: a date, a time to the second or finer, an offset
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_TIME_RANGE = (
    dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2200, 1, 1, tzinfo=dt.UTC),
)


def value_problem(value: Any, kind: str) -> str | None:
    """Why ``value`` cannot be stored as a ``kind`` column on both backends, or None.

    Kinds: ``text`` (a string, or None), ``key`` (a non-empty string), ``float`` (a number,
    NaN and infinities included), ``int`` (an integer within PostgreSQL's 4-byte INTEGER),
    ``time`` (an ISO 8601 string or datetime from 1900 to 2199 UTC; without an offset it is
    UTC). Strings must be valid Unicode without NUL characters: PostgreSQL refuses NUL in
    text and lone surrogates in UTF-8, SQLite would take the first; a value is refused on
    both, so a campaign behaves the same on either.
    """
    if value is None:
        return "is missing" if kind == "key" else None
    if kind in ("text", "key"):
        if not isinstance(value, str):
            return f"is a {type(value).__name__}, not text"
        if kind == "key" and not value:
            return "is empty"
        return _text_problem(value)
    if kind == "float":
        if isinstance(value, float):
            return None
        if isinstance(value, int):
            return None if abs(value) < 2**63 else "is out of range"
        return f"is a {type(value).__name__}, not a number"
    if kind == "int":
        if not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return f"is a {type(value).__name__}, not an integer"
        return None if -_INT4 <= value < _INT4 else "is out of range (beyond 32-bit INTEGER)"
    if kind == "time":
        return _time_problem(value)
    raise ValueError(f"unknown value kind {kind!r}")  # pragma: no cover - a programming error


def values_fine(values: Sequence[Any], kind: str) -> bool:
    """True when every value is fine for ``kind`` (:func:`value_problem`), decided quickly
    for a whole column; False means: look at each value."""
    types = set(map(type, values))
    types.discard(type(None))
    missing = values.count(None)
    if kind == "float":
        return types <= {float}
    if kind == "int":
        present = [v for v in values if v is not None] if missing else values
        return types <= {int} and (not present or -_INT4 <= min(present) <= max(present) < _INT4)
    if not types <= {str} or (kind == "key" and missing):
        return False
    strings = list(filter(None, values))
    if kind in ("key", "time") and len(strings) != len(values) - missing:
        return False  # an empty string
    if _text_problem("".join(strings)):
        return False
    if kind != "time" or not strings:
        return True
    if not all(map(_ISO_TIME.fullmatch, strings)):
        return False
    try:
        times = list(map(dt.datetime.fromisoformat, strings))
        aware = {t.tzinfo is not None for t in times}
        if aware == {True}:
            first, last = min(times).astimezone(dt.UTC), max(times).astimezone(dt.UTC)
        elif aware == {False}:
            first, last = min(times).replace(tzinfo=dt.UTC), max(times).replace(tzinfo=dt.UTC)
        else:
            return False
    except (ValueError, OverflowError):
        return False
    return _TIME_RANGE[0] <= first and last < _TIME_RANGE[1]


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000)"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate: bytes that were not UTF-8?)"
    return None


def _time_problem(value: Any) -> str | None:
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            return problem
        if not _ISO_TIME.fullmatch(value):
            return "is not an ISO 8601 time (like 2026-07-01T04:00:00Z)"
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return "is not an ISO 8601 time (like 2026-07-01T04:00:00Z)"
    if not isinstance(value, dt.datetime):
        return f"is a {type(value).__name__}, not a time"
    if _TIME_RANGE[0].year < value.year < _TIME_RANGE[1].year - 1:
        return None  # no UTC offset can take it out of range
    try:
        utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return "is out of range (1900 to 2199 UTC)"
    if not _TIME_RANGE[0] <= utc < _TIME_RANGE[1]:
        return "is out of range (1900 to 2199 UTC)"
    return None


# --- the adapter ----------------------------------------------------------------------------

_MODES = ("read", "write", "create")


class Central:
    """A connection to the central database; ``with central.transaction():`` groups writes.

    Open it with :meth:`connect`. Thread-safe for one writer at a time (a lock around
    transactions). Every foreign exception leaves it as a :class:`ChamberError`.
    """

    def __init__(self, url: str, conn: Any, dialect: str, *, mode: str = "create") -> None:
        self.url = url
        self.conn = conn
        self.dialect = dialect
        self.mode = mode
        self.role: str | None = None  # PostgreSQL: the login role
        self._lock = threading.RLock()
        self._depth = 0
        self._copy_ok: bool | None = None
        self._writes: set[str] = set()  # site ids this role was checked to write
        self._role_sites: list[str] | None = None

    # --- connecting -----------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, *, mode: str = "create", connect_timeout_s: float = 10.0) -> Central:
        """Open ``sqlite:///path`` or ``postgresql://...``.

        ``mode``: ``read`` (never writes: SQLite opened read-only, PostgreSQL sessions
        read-only), ``write`` (the database must exist) or ``create`` (``chamberd central
        init``: creates the SQLite file, or the PostgreSQL database where the server lets
        this role). Neither ``read`` nor ``write`` creates anything. :class:`ConfigError`
        when the URL names no database or the login is refused, :class:`SyncError` when the
        server cannot be reached.
        """
        if mode not in _MODES:
            raise ValueError(f"mode {mode!r}: expected one of {_MODES}")
        scheme = url.split(":", 1)[0].lower()
        if scheme == "sqlite":
            return cls(url, _open_sqlite(url, mode), "sqlite", mode=mode)
        if scheme in ("postgresql", "postgres"):
            conn = _open_postgresql(url, mode, connect_timeout_s)
            central = cls(url, conn, "postgresql", mode=mode)
            try:
                central.conn.execute("SET TIME ZONE 'UTC'")  # times read back as UTC
                if mode == "read":
                    central.conn.execute("SET default_transaction_read_only = on")
                central.role = central.conn.execute("SELECT current_user").fetchone()[0]
            except Exception as exc:
                central.close()
                raise central._translate(exc) from exc
            return central
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

    def _execute_raw(self, sql: str) -> None:
        """A statement without parameters, sent as written (DDL with ``$$`` bodies)."""
        try:
            self.conn.execute(sql)
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
        try:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except Exception as exc:
            raise self._translate(exc) from exc

    def query_csv(self, sql: str, params: Sequence[Any] = ()) -> bytes:
        """A query's rows as CSV with a header line, the fast path for large reads.

        PostgreSQL: ``COPY (query) TO STDOUT`` (the parameters bound client side); SQLite:
        the rows through the csv module. NULL is an empty field, numbers are written so
        that they read back exactly.
        """
        if self.dialect == "sqlite":
            cur = self.execute(sql, params)
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            try:
                writer.writerow([d[0] for d in cur.description])
                while rows := cur.fetchmany(100_000):
                    writer.writerows(rows)
            except Exception as exc:
                raise self._translate(exc) from exc
            return out.getvalue().encode("utf-8")
        statement = f"COPY ({self._sql(sql)}) TO STDOUT WITH (FORMAT csv, HEADER true)"
        buffer = io.BytesIO()
        try:
            with self.conn.cursor() as cur, cur.copy(statement, tuple(params)) as copy:
                for data in copy:
                    buffer.write(data)
        except Exception as exc:
            raise self._translate(exc) from exc
        return buffer.getvalue()

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
            try:
                self.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    self.conn.execute("ROLLBACK")
                raise

    def now_utc(self) -> Any:
        """The database server's clock (PostgreSQL), or None for the embedded file."""
        if self.dialect == "postgresql":
            return self.execute("SELECT now()").fetchone()[0]
        return None

    # --- errors ---------------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> ChamberError:
        """The chamberd error for a foreign exception raised by a statement."""
        if isinstance(exc, ChamberError):
            return exc
        where = redact(self.url)
        if isinstance(exc, sqlite3.Error) and isinstance(
            exc.__context__, (UnicodeEncodeError, OverflowError, sqlite3.ProgrammingError)
        ):
            # sqlite3 (3.11) reports a value it could not bind under the connection's last,
            # stale error message; the binding error is the one to report
            exc = exc.__context__
        if isinstance(exc, UnicodeEncodeError):
            return SyncError(
                f"{where}: cannot store {_snippet(exc.object)!r}: not valid Unicode "
                "(a lone surrogate: bytes that were not UTF-8?)"
            )
        if isinstance(exc, OverflowError):
            return SyncError(f"{where}: cannot store a value: {exc}")
        if self.dialect == "sqlite":
            return self._translate_sqlite(exc, where)
        return self._translate_postgresql(exc, where)

    def _translate_sqlite(self, exc: BaseException, where: str) -> ChamberError:
        text = _first_line(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return SyncError(f"{where}: refused a row: {text}")
        if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
            return SyncError(f"{where}: cannot store a value: {text}")
        if isinstance(exc, sqlite3.OperationalError):
            missing = re.match(r"no such (table|column): (\S+)", text)
            if missing:
                return _no_schema(where, f"no {missing[1]} {missing[2]}")
            if "readonly" in text:
                return StorageError(f"{where}: cannot write: {text}")
            if "locked" in text or "busy" in text:
                return SyncError(f"{where}: busy ({text}); try again")
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            return ConfigError(f"{where}: not an SQLite database file")
        return StorageError(f"{where}: {text}")

    def _translate_postgresql(self, exc: BaseException, where: str) -> ChamberError:
        import psycopg
        from psycopg import errors

        text = _scrub(_first_line(exc), self.url)
        diag = getattr(exc, "diag", None)
        table = getattr(diag, "table_name", None) or "a table"
        detail = _scrub(getattr(diag, "message_detail", None) or "", self.url)
        role = self.role or "this role"
        if isinstance(exc, errors.InsufficientPrivilege):
            rls = re.search(r'row-level security policy.*for table "([^"]+)"', text)
            if rls:
                return SyncError(
                    f"{where}: the central database refused a {rls[1]} row for role {role}"
                    f"{self._writes_sites()}: row-level security (a site role writes only its "
                    "own site's rows)"
                )
            return SyncError(f"{where}: role {role} is not allowed to do this: {text}")
        if isinstance(exc, errors.ForeignKeyViolation):
            return SyncError(
                f"{where}: the central database refused a {table} row for role {role}"
                f"{self._writes_sites()}: {detail or text} (a row must name a parent of its "
                "own site)"
            )
        if isinstance(exc, errors.UniqueViolation):
            hidden = " (held by a row this role cannot see)" if self._role_sites else ""
            return SyncError(f"{where}: refused a {table} row: {detail or text}{hidden}")
        if isinstance(exc, psycopg.IntegrityError):
            return SyncError(f"{where}: refused a {table} row: {text}")
        if isinstance(exc, (errors.UndefinedTable, errors.UndefinedColumn)):
            return _no_schema(where, text)
        if isinstance(exc, psycopg.DataError):
            return SyncError(f"{where}: a value the database cannot hold: {text}")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return StorageError(f"{where}: opened read-only: {text}")
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate.startswith(("53", "58", "XX")):
            return StorageError(f"{where}: the server failed: {text}")
        if sqlstate.startswith("40") or isinstance(exc, errors.QueryCanceled):
            return SyncError(f"{where}: interrupted ({text}); try again")
        if isinstance(exc, psycopg.OperationalError):
            return SyncError(f"{where}: connection lost: {text}")
        return StorageError(f"{where}: {text}")

    def _writes_sites(self) -> str:
        if self._role_sites is None:
            return ""
        return f" (this role writes {_site_list(self._role_sites)})"

    # --- who may write ----------------------------------------------------------------------

    def require_writer(self, site_id: str) -> None:
        """Refuse, before anything is written, a role that may not write ``site_id``'s rows.

        PostgreSQL only (an SQLite file has no roles): a read-only role (an analyst) and a
        site role of another site get a :class:`SyncError` naming the site, the role and
        the site(s) the role writes. Checked once per site and connection.
        """
        if self.dialect != "postgresql" or site_id in self._writes:
            return
        row = self.query(
            "SELECT has_table_privilege('observations', 'INSERT') AS may_insert, "
            "has_table_privilege('observations', 'SELECT') AS may_read, "
            "row_security_active('observations') AS confined"
        )[0]
        role = self.role or "this role"
        if not row["may_read"]:
            raise SyncError(
                f"{redact(self.url)}: the central database refused site {site_id!r}'s rows for "
                f"role {role}: this role has no access to this campaign's tables (a role of "
                "another campaign database?)"
            )
        if not row["may_insert"]:
            raise SyncError(
                f"{redact(self.url)}: the central database refused site {site_id!r}'s rows for "
                f"role {role}: this role may only read (a site writes with its own role: "
                "chamberd central add-site)"
            )
        if row["confined"]:
            self._role_sites = [
                r["site_id"]
                for r in self.query(
                    "SELECT site_id FROM site_roles WHERE role_name = current_user ORDER BY site_id"
                )
            ]
            if site_id not in self._role_sites:
                raise SyncError(
                    f"{redact(self.url)}: the central database refused site {site_id!r}'s rows "
                    f"for role {role}: this role writes {_site_list(self._role_sites)}"
                )
        self._writes.add(site_id)

    # --- schema ---------------------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        if self.dialect == "sqlite":
            sql = "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?"
            return bool(self.query(sql, (name,)))
        return bool(self.query("SELECT to_regclass(?) IS NOT NULL AS x", (name,))[0]["x"])

    def schema_version(self) -> int:
        """The applied schema version; 0 when there is no chamberd schema."""
        if not self.has_table("schema_migrations"):
            return 0
        rows = self.query("SELECT max(version) AS v FROM schema_migrations")
        return int(rows[0]["v"] or 0)

    def require_schema(self, minimum: int = 1) -> int:
        """The schema version; :class:`ConfigError` when missing, older than ``minimum``
        or newer than this chamberd."""
        version = self.schema_version()
        where = redact(self.url)
        if version == 0:
            raise _no_schema(where, "no chamberd schema")
        if version > LATEST_VERSION:
            raise ConfigError(
                f"{where}: schema version {version} is newer than this chamberd knows "
                f"({LATEST_VERSION}): upgrade chamberd"
            )
        if version < minimum:
            raise ConfigError(
                f"{where}: schema version {version} is older than this needs ({minimum}): "
                f"run chamberd central init {where}"
            )
        return version

    def campaign_id(self) -> str | None:
        """The campaign's short random id (schema version 3 on), or None."""
        if not self.has_table("campaign"):
            return None
        rows = self.query("SELECT campaign_id FROM campaign")
        return rows[0]["campaign_id"] if rows else None

    def role_names(self) -> dict[str, str]:
        """This campaign's group roles: ``analyst`` (read-only) and ``writer`` (site roles)."""
        cid = self.campaign_id()
        if cid is None:
            raise ConfigError(
                f"{redact(self.url)}: the central schema has no campaign id yet: run "
                f"chamberd central init {redact(self.url)}"
            )
        return {"analyst": f"chamberd_{cid}_analyst", "writer": f"chamberd_{cid}_writer"}

    def legacy_site_roles(self) -> list[dict[str, str]]:
        """Site roles made by the version-2 scheme that this database still lists."""
        if self.dialect != "postgresql" or not self.has_table("site_roles"):
            return []
        cid = self.campaign_id()
        rows = self.query("SELECT role_name, site_id FROM site_roles ORDER BY site_id")
        prefix = f"chamberd_{cid}_site_"
        return [r for r in rows if not r["role_name"].startswith(prefix)]

    def migrate(self, *, upto: int | None = None) -> list[int]:
        """Apply the migrations not yet applied (up to version ``upto``, default all), each
        in its own transaction: all of it or nothing of it."""
        types = _TYPES[self.dialect]
        where = redact(self.url)
        if not self.has_table("schema_migrations"):
            self.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                f"description TEXT NOT NULL, applied_at {types['TS']})"
            )
        current = self.schema_version()
        if current > LATEST_VERSION:
            self.require_schema()
        applied = []
        for version, description, statements, pg_only in MIGRATIONS:
            if version <= current or (upto is not None and version > upto):
                continue
            try:
                with self.transaction():
                    self._precheck(version)
                    for statement in statements:
                        for sql in _for_dialect(statement, self.dialect):
                            self.execute(sql.format(**types))
                    if self.dialect == "postgresql":
                        for sql in pg_only:
                            if version >= 3 and "{" in sql:
                                sql = sql.format(**self.role_names())
                            self._execute_raw(sql)
                    self.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at) "
                        "VALUES (?, ?, ?)",
                        (version, description, _now_iso()),
                    )
            except ChamberError as exc:
                raise type(exc)(
                    f"{where}: migration {version} ({description.split(':')[0]}) not applied, "
                    f"nothing of it was written: {_strip_where(str(exc), where)}"
                ) from exc
            applied.append(version)
        return applied

    def _precheck(self, version: int) -> None:
        for table, sql, wrong in _PRECHECKS.get(version, []):
            n = int(self.query(sql)[0]["n"])
            if n:
                raise StorageError(
                    f"{n} {table} row(s) {wrong} (written across sites before version "
                    f"{version} bound them): find them with: {sql.replace('count(*) AS n', '*')}"
                    "; correct or delete them, then run chamberd central init again"
                )


def _open_sqlite(url: str, mode: str) -> sqlite3.Connection:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise ConfigError(f"{url!r}: expected sqlite:///path/to/central.db")
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{url}: {path} is a folder, not a database file")
    if mode != "create" and not file.exists():
        raise ConfigError(
            f"{url}: no database file {path} (chamberd central init {url} creates one)"
        )
    try:
        if mode == "create":
            file.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        else:
            access = "ro" if mode == "read" else "rw"
            conn = sqlite3.connect(
                f"file:{quote(str(file.resolve()))}?mode={access}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"{url}: cannot open: {exc}") from exc
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if mode != "read":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except sqlite3.Error as exc:
        conn.close()
        if "not a database" in str(exc):
            raise ConfigError(f"{url}: {path} is not an SQLite database file") from exc
        raise StorageError(f"{url}: cannot open: {exc}") from exc
    return conn


def _open_postgresql(url: str, mode: str, timeout_s: float) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise ConfigError("PostgreSQL needs psycopg (pip install 'psycopg[binary]')") from exc
    where = redact(url)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as exc:
        reason = _scrub(_server_reason(exc), url)
        missing = re.search(r'database "(.+)" does not exist', reason)
        if missing and mode == "create":
            _create_database(url, missing[1], timeout_s)
            try:
                return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)))
            except psycopg.Error as again:
                raise SyncError(
                    f"{where}: cannot connect: {_scrub(_server_reason(again), url)}"
                ) from None
        if missing:
            raise ConfigError(
                f"{where}: database {missing[1]!r} does not exist on the server (chamberd "
                f"central init {where} creates it, or: {_createdb(url, missing[1])})"
            ) from None
        if re.search(
            r"password authentication failed|role .* does not exist|not permitted to log in|"
            r"no pg_hba\.conf entry|password is required|authentication failed",
            reason,
        ):
            raise ConfigError(f"{where}: the server refused the login: {reason}") from None
        if isinstance(exc, psycopg.ProgrammingError) or "for connection option" in reason:
            raise ConfigError(f"{where}: not a usable PostgreSQL URL: {reason}") from None
        raise SyncError(f"{where}: cannot connect: {reason}") from None
    except ValueError:
        # a URL libpq rejects before connecting (an unparseable port, say)
        raise ConfigError(f"{where}: not a usable PostgreSQL URL") from None


def _create_database(url: str, name: str, timeout_s: float) -> None:
    """``CREATE DATABASE name`` through the server's ``postgres`` database, same login."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    where = redact(url)
    params = conninfo_to_dict(url)
    params["dbname"] = "postgres"
    try:
        with psycopg.connect(
            make_conninfo(**params), autocommit=True, connect_timeout=max(1, int(timeout_s))
        ) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return
    except psycopg.Error as exc:
        raise ConfigError(
            f"{where}: database {name!r} does not exist and this login cannot create it "
            f"({_scrub(_server_reason(exc), url)}): ask the server's administrator to run "
            f"{_createdb(url, name)}, then chamberd central init again"
        ) from None


def _createdb(url: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:
        params = {}
    words = ["createdb"]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            words += [flag, str(params[key])]
    return " ".join([*words, name])


def _server_reason(exc: BaseException) -> str:
    """The server's reason from a connection error (the part after ``FATAL:``)."""
    text = str(exc).strip()
    if "FATAL:" in text:
        text = text.split("FATAL:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _no_schema(where: str, what: str) -> ConfigError:
    return ConfigError(
        f"{where}: not a chamberd central database ({what}): run chamberd central init {where}"
    )


def _for_dialect(statement: Statement, dialect: str) -> list[str]:
    if isinstance(statement, str):
        return [statement]
    return statement.get(dialect, [])


def _site_list(sites: Sequence[str]) -> str:
    if not sites:
        return "no site"
    return ("site " if len(sites) == 1 else "sites ") + ", ".join(repr(s) for s in sites)


def _strip_where(text: str, where: str) -> str:
    return text[len(where) + 2 :] if text.startswith(where + ": ") else text


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def add_site_role(central: Central, site_id: str, password: str | None = None) -> tuple[str, str]:
    """Create the login role that may write only ``site_id``'s rows (PostgreSQL).

    The role is :func:`site_role_name` of this campaign. Returns ``(role, password)``; the
    password is generated unless given, and is never logged. Re-running for the same site
    sets a new password. Refused (:class:`ConfigError`) when a role of that name exists but
    is not this database's role for ``site_id``. A role of the version-2 scheme that this
    database lists for the site is retired here: it leaves ``site_roles`` and this
    campaign's writer group.
    """
    if central.dialect != "postgresql":
        raise ConfigError("site roles need PostgreSQL (an SQLite file has no roles)")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", site_id):
        raise ConfigError(
            f"site id {site_id!r}: letters, digits, '-', '_' and '.' only (1 to 64 characters)"
        )
    central.require_schema(minimum=3)
    import secrets

    from psycopg import sql

    groups = central.role_names()
    cid = central.campaign_id() or ""
    role = site_role_name(cid, site_id)
    password = password or secrets.token_urlsafe(24)
    with central.transaction():
        exists = central.query("SELECT 1 AS x FROM pg_roles WHERE rolname = ?", (role,))
        mapped = [
            r["site_id"]
            for r in central.query("SELECT site_id FROM site_roles WHERE role_name = ?", (role,))
        ]
        if (exists or mapped) and mapped != [site_id]:
            raise ConfigError(
                f"role {role} already exists and is not this database's role for site "
                f"{site_id!r}"
                + (f" (it is listed for {_site_list(mapped)})" if mapped else "")
                + ": refused; drop or rename that role first"
            )
        verb = "ALTER" if exists else "CREATE"
        central._execute_raw(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}")
            .format(sql.SQL(verb), sql.Identifier(role), sql.Literal(password))
            .as_string(central.conn)
        )
        central._execute_raw(
            sql.SQL("GRANT {} TO {}")
            .format(sql.Identifier(groups["writer"]), sql.Identifier(role))
            .as_string(central.conn)
        )
        if not mapped:
            central.execute(
                "INSERT INTO site_roles (role_name, site_id) VALUES (?, ?)", (role, site_id)
            )
        for old in central.query(
            "SELECT role_name FROM site_roles WHERE site_id = ? AND role_name <> ?",
            (site_id, role),
        ):
            central.execute("DELETE FROM site_roles WHERE role_name = ?", (old["role_name"],))
            if central.query("SELECT 1 AS x FROM pg_roles WHERE rolname = ?", (old["role_name"],)):
                central._execute_raw(
                    sql.SQL("REVOKE {} FROM {}")
                    .format(sql.Identifier(groups["writer"]), sql.Identifier(old["role_name"]))
                    .as_string(central.conn)
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
