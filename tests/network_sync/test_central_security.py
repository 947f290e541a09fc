"""Multi-site security on the real PostgreSQL: every table, every operation, by site A's
role against site B's rows; and the schema rule that binds every child row to its parent's
site, checked on every table of both backends (so a later table cannot forget it)."""

from __future__ import annotations

import uuid as uuidlib

import psycopg
import pytest
from pgtools import drop_campaign_database

from chamberd.network_sync.central import Central, add_site_role

# --- a campaign with two sites, A and B, each with a row in every table ----------------------


def _site_url(admin_url: str, role: str, password: str) -> str:
    base, db = admin_url.rsplit("/", 1)
    host = base.split("@", 1)[1]
    return f"postgresql://{role}:{password}@{host}/{db}"


def _fill(central: Central, site: str, key: str, suffix: str) -> dict[str, str]:
    """One row of every site table for ``site``; returns the ids made."""
    obs = f"obs-{key}-{suffix}"
    cal = f"cal-{key}-{suffix}"
    central.execute(
        "INSERT INTO sites (site_id, name, time_zone, created_at) VALUES (?, ?, 'UTC', now())",
        (site, f"site {key}"),
    )
    for system in ("auto", f"only-{key}"):
        central.execute("INSERT INTO systems (site_id, system_id) VALUES (?, ?)", (site, system))
    central.execute(
        "INSERT INTO chambers (site_id, system_id, chamber, since, area_cm2) "
        "VALUES (?, 'auto', 'C1', '2026-01-01', 317.8)",
        (site,),
    )
    for uuid, chamber in ((obs, "C1"), (f"{obs}-2", "C2")):
        central.execute(
            "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
            "content_hash, received_at) VALUES (?, ?, 'auto', ?, '2026-07-01T04:00:00Z', "
            "'done', 'h', now())",
            (uuid, site, chamber),
        )
    for seq in (0, 1):
        central.execute(
            "INSERT INTO samples (site_id, observation_uuid, seq, elapsed_s, co2_umol_mol) "
            "VALUES (?, ?, ?, ?, 420.0)",
            (site, obs, seq, float(seq)),
        )
    central.execute(
        "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, flux, "
        "flux_unit) VALUES (?, ?, 'co2', 'linear', 'site-1', 1.5, 'umol m-2 s-1')",
        (site, obs),
    )
    central.execute(
        "INSERT INTO calibrations (id, site_id, analyser, procedure, performed_at) "
        "VALUES (?, ?, 'li850', 'co2-span', now())",
        (cal, site),
    )
    central.execute(
        "INSERT INTO conflicts (detected_at, site_id, system_id, chamber, begin_utc, "
        "existing_uuid, incoming_uuid, source, incoming) VALUES (now(), ?, 'auto', 'C1', "
        "'2026-07-01T04:00:00Z', ?, ?, 'sync', '{}')",
        (site, obs, f"incoming-{key}-{suffix}"),
    )
    central.execute(
        "INSERT INTO ingest_log (at, site_id, kind, source, received, sent, unchanged, revised, "
        "conflicts) VALUES (now(), ?, 'sync', 'auto', 1, 1, 0, 0, 0)",
        (site,),
    )
    return {"obs": obs, "cal": cal}


@pytest.fixture(scope="module")
def campaign(postgres_admin_url):
    """One database for the whole matrix (every attempt must change nothing)."""
    suffix = uuidlib.uuid4().hex[:8]
    name = f"chamberd_test_sec_{suffix}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    sites = {"A": f"site-a-{suffix}", "B": f"site-b-{suffix}"}
    try:
        with Central.connect(url) as central:
            central.migrate()
            ids = {}
            with central.transaction():
                for key, site in sites.items():
                    ids[key] = _fill(central, site, key, suffix)
            role_a, password = add_site_role(central, sites["A"])
            add_site_role(central, sites["B"])
        yield {
            "url": url,
            "a_url": _site_url(url, role_a, password),
            "role_a": role_a,
            "a": sites["A"],
            "b": sites["B"],
            "c": f"site-c-{suffix}",
            "a_obs": ids["A"]["obs"],
            "b_obs": ids["B"]["obs"],
            "b_cal": ids["B"]["cal"],
            "b_system": "only-B",
        }
    finally:
        drop_campaign_database(postgres_admin_url, url)


_TABLES = (
    "sites",
    "systems",
    "chambers",
    "observations",
    "samples",
    "fluxes",
    "calibrations",
    "conflicts",
    "ingest_log",
    "site_roles",
    "campaign",
    "schema_migrations",
)


def _snapshot(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}").fetchall())) for t in _TABLES
        }


# (table, operation, SQL run by site A's role, how it is refused)
# refused by: "rls" (row-level security), "fk" (composite foreign key: a parent of another
# site), "unique" (a key held by a row A cannot see), "privilege" (no grant), "invisible"
# (B's rows are not there for A: 0 rows read, updated or deleted)
_OWN = "site_id = %(a)s"
ATTEMPTS = [
    # sites
    (
        "sites",
        "insert",
        "INSERT INTO sites (site_id, time_zone, created_at) VALUES (%(c)s, 'UTC', now())",
        "rls",
    ),
    (
        "sites",
        "insert",
        "INSERT INTO sites (site_id, time_zone, created_at) VALUES (%(b)s, 'UTC', now())",
        "rls",
    ),
    ("sites", "update", "UPDATE sites SET name = 'hijacked' WHERE site_id = %(b)s", "invisible"),
    ("sites", "re-point", "UPDATE sites SET site_id = %(c)s WHERE site_id = %(a)s", "rls"),
    ("sites", "delete", "DELETE FROM sites WHERE site_id = %(b)s", "invisible"),
    ("sites", "read", "SELECT * FROM sites WHERE site_id <> %(a)s", "invisible"),
    # systems
    ("systems", "insert", "INSERT INTO systems (site_id, system_id) VALUES (%(b)s, 'evil')", "rls"),
    ("systems", "update", "UPDATE systems SET owner = 'x' WHERE site_id = %(b)s", "invisible"),
    ("systems", "re-point", f"UPDATE systems SET site_id = %(b)s WHERE {_OWN}", "rls"),
    ("systems", "delete", "DELETE FROM systems WHERE site_id = %(b)s", "invisible"),
    ("systems", "read", "SELECT * FROM systems WHERE site_id <> %(a)s", "invisible"),
    # chambers
    (
        "chambers",
        "insert",
        "INSERT INTO chambers (site_id, system_id, chamber, since) "
        "VALUES (%(b)s, 'auto', 'C9', '2026-01-01')",
        "rls",
    ),
    (
        "chambers",
        "insert onto B's system",
        "INSERT INTO chambers (site_id, system_id, chamber, "
        "since) VALUES (%(a)s, %(b_system)s, 'C9', '2026-01-01')",
        "fk",
    ),
    ("chambers", "update", "UPDATE chambers SET area_cm2 = 1 WHERE site_id = %(b)s", "invisible"),
    ("chambers", "re-point", f"UPDATE chambers SET site_id = %(b)s WHERE {_OWN}", "rls"),
    (
        "chambers",
        "re-point to B's system",
        f"UPDATE chambers SET system_id = %(b_system)s WHERE {_OWN}",
        "fk",
    ),
    ("chambers", "delete", "DELETE FROM chambers WHERE site_id = %(b)s", "invisible"),
    ("chambers", "read", "SELECT * FROM chambers WHERE site_id <> %(a)s", "invisible"),
    # observations
    (
        "observations",
        "insert",
        "INSERT INTO observations (uuid, site_id, system_id, chamber, "
        "begin_utc, status, content_hash, received_at) VALUES ('x1', %(b)s, 'auto', 'C9', now(), "
        "'done', 'h', now())",
        "rls",
    ),
    (
        "observations",
        "insert onto B's system",
        "INSERT INTO observations (uuid, site_id, "
        "system_id, chamber, begin_utc, status, content_hash, received_at) VALUES ('x2', %(a)s, "
        "%(b_system)s, 'C9', now(), 'done', 'h', now())",
        "fk",
    ),
    (
        "observations",
        "insert with B's uuid",
        "INSERT INTO observations (uuid, site_id, "
        "system_id, chamber, begin_utc, status, content_hash, received_at) VALUES (%(b_obs)s, "
        "%(a)s, 'auto', 'C9', now(), 'done', 'h', now())",
        "unique",
    ),
    (
        "observations",
        "update",
        "UPDATE observations SET reason = 'x' WHERE site_id = %(b)s",
        "invisible",
    ),
    (
        "observations",
        "re-point",
        "UPDATE observations SET site_id = %(b)s WHERE uuid = %(a_obs)s",
        "rls",
    ),
    (
        "observations",
        "re-point an observation without children",
        f"UPDATE observations SET site_id = %(b)s WHERE {_OWN} AND uuid <> %(a_obs)s",
        "rls",
    ),
    ("observations", "delete", "DELETE FROM observations WHERE site_id = %(b)s", "invisible"),
    ("observations", "read", "SELECT * FROM observations WHERE site_id <> %(a)s", "invisible"),
    (
        "observations",
        "lock",
        "SELECT * FROM observations WHERE site_id = %(b)s FOR UPDATE",
        "invisible",
    ),
    # samples
    (
        "samples",
        "insert",
        "INSERT INTO samples (site_id, observation_uuid, seq) VALUES (%(b)s, %(b_obs)s, 99)",
        "rls",
    ),
    (
        "samples",
        "insert onto B's observation",
        "INSERT INTO samples (site_id, observation_uuid, seq) VALUES (%(a)s, %(b_obs)s, 99)",
        "fk",
    ),
    ("samples", "update", "UPDATE samples SET co2_umol_mol = 0 WHERE site_id = %(b)s", "invisible"),
    (
        "samples",
        "update by B's observation",
        "UPDATE samples SET co2_umol_mol = 0 WHERE observation_uuid = %(b_obs)s",
        "invisible",
    ),
    ("samples", "re-point site", f"UPDATE samples SET site_id = %(b)s WHERE {_OWN}", "rls"),
    (
        "samples",
        "re-point observation",
        f"UPDATE samples SET observation_uuid = %(b_obs)s, seq = seq + 100 WHERE {_OWN}",
        "fk",
    ),
    ("samples", "delete", "DELETE FROM samples WHERE observation_uuid = %(b_obs)s", "invisible"),
    ("samples", "read", "SELECT * FROM samples WHERE site_id <> %(a)s", "invisible"),
    # fluxes
    (
        "fluxes",
        "insert",
        "INSERT INTO fluxes (site_id, observation_uuid, gas, model, "
        "processing_version, flux_unit) VALUES (%(b)s, %(b_obs)s, 'co2', 'x', 'evil', 'u')",
        "rls",
    ),
    (
        "fluxes",
        "insert onto B's observation",
        "INSERT INTO fluxes (site_id, observation_uuid, "
        "gas, model, processing_version, flux_unit) VALUES (%(a)s, %(b_obs)s, 'co2', 'x', "
        "'evil', 'u')",
        "fk",
    ),
    ("fluxes", "update", "UPDATE fluxes SET flux = -99 WHERE site_id = %(b)s", "invisible"),
    (
        "fluxes",
        "update by B's observation",
        "UPDATE fluxes SET flux = -99 WHERE observation_uuid = %(b_obs)s",
        "invisible",
    ),
    ("fluxes", "re-point site", f"UPDATE fluxes SET site_id = %(b)s WHERE {_OWN}", "rls"),
    (
        "fluxes",
        "re-point observation",
        f"UPDATE fluxes SET observation_uuid = %(b_obs)s, model = 'moved' WHERE {_OWN}",
        "fk",
    ),
    ("fluxes", "delete", "DELETE FROM fluxes WHERE observation_uuid = %(b_obs)s", "invisible"),
    ("fluxes", "read", "SELECT * FROM fluxes WHERE site_id <> %(a)s", "invisible"),
    # calibrations (children of sites)
    (
        "calibrations",
        "insert",
        "INSERT INTO calibrations (id, site_id, analyser, procedure, "
        "performed_at) VALUES ('x', %(b)s, 'a', 'p', now())",
        "rls",
    ),
    (
        "calibrations",
        "insert with B's id",
        "INSERT INTO calibrations (id, site_id, analyser, "
        "procedure, performed_at) VALUES (%(b_cal)s, %(a)s, 'a', 'p', now())",
        "unique",
    ),
    (
        "calibrations",
        "update",
        "UPDATE calibrations SET data = 'x' WHERE site_id = %(b)s",
        "invisible",
    ),
    ("calibrations", "re-point", f"UPDATE calibrations SET site_id = %(b)s WHERE {_OWN}", "rls"),
    ("calibrations", "delete", "DELETE FROM calibrations WHERE site_id = %(b)s", "invisible"),
    ("calibrations", "read", "SELECT * FROM calibrations WHERE site_id <> %(a)s", "invisible"),
    # conflicts
    (
        "conflicts",
        "insert",
        "INSERT INTO conflicts (detected_at, site_id, system_id, chamber, "
        "begin_utc, existing_uuid, incoming_uuid, source, incoming) VALUES (now(), %(b)s, 'auto', "
        "'C1', now(), %(b_obs)s, 'y', 'sync', '{}')",
        "rls",
    ),
    (
        "conflicts",
        "insert naming B's observation",
        "INSERT INTO conflicts (detected_at, "
        "site_id, system_id, chamber, begin_utc, existing_uuid, incoming_uuid, source, incoming) "
        "VALUES (now(), %(a)s, 'auto', 'C1', now(), %(b_obs)s, 'y', 'sync', '{}')",
        "fk",
    ),
    (
        "conflicts",
        "update",
        "UPDATE conflicts SET incoming = 'x' WHERE site_id = %(b)s",
        "invisible",
    ),
    ("conflicts", "re-point site", f"UPDATE conflicts SET site_id = %(b)s WHERE {_OWN}", "rls"),
    (
        "conflicts",
        "re-point observation",
        f"UPDATE conflicts SET existing_uuid = %(b_obs)s WHERE {_OWN}",
        "fk",
    ),
    ("conflicts", "delete", "DELETE FROM conflicts WHERE site_id = %(b)s", "invisible"),
    ("conflicts", "read", "SELECT * FROM conflicts WHERE site_id <> %(a)s", "invisible"),
    # ingest_log
    (
        "ingest_log",
        "insert",
        "INSERT INTO ingest_log (at, site_id, kind, source, received, "
        "sent, unchanged, revised, conflicts) VALUES (now(), %(b)s, 'sync', 'x', 0, 0, 0, 0, 0)",
        "rls",
    ),
    (
        "ingest_log",
        "update",
        "UPDATE ingest_log SET detail = 'x' WHERE site_id = %(b)s",
        "invisible",
    ),
    ("ingest_log", "re-point", f"UPDATE ingest_log SET site_id = %(b)s WHERE {_OWN}", "rls"),
    ("ingest_log", "delete", "DELETE FROM ingest_log WHERE site_id = %(b)s", "invisible"),
    ("ingest_log", "read", "SELECT * FROM ingest_log WHERE site_id <> %(a)s", "invisible"),
    # site_roles: a role can neither grant itself a site nor list the others
    ("site_roles", "insert", "INSERT INTO site_roles VALUES (current_user, %(b)s)", "privilege"),
    ("site_roles", "update", "UPDATE site_roles SET site_id = %(b)s", "privilege"),
    ("site_roles", "delete", "DELETE FROM site_roles", "privilege"),
    ("site_roles", "read", "SELECT * FROM site_roles WHERE role_name <> current_user", "invisible"),
    # the campaign id and the migrations: read-only for site roles
    ("campaign", "update", "UPDATE campaign SET campaign_id = 'x'", "privilege"),
    ("schema_migrations", "delete", "DELETE FROM schema_migrations", "privilege"),
]


@pytest.mark.parametrize(
    ("table", "operation", "sql", "refusal"),
    ATTEMPTS,
    ids=[f"{t}-{o.replace(' ', '_')}" for t, o, _, _ in ATTEMPTS],
)
def test_site_role_cannot_touch_another_sites_rows(campaign, table, operation, sql, refusal):
    before = _snapshot(campaign["url"])
    expected = {
        "rls": psycopg.errors.InsufficientPrivilege,
        "privilege": psycopg.errors.InsufficientPrivilege,
        "fk": psycopg.errors.ForeignKeyViolation,
        "unique": psycopg.errors.UniqueViolation,
    }
    with psycopg.connect(campaign["a_url"], autocommit=True) as conn:
        if refusal == "invisible":
            cur = conn.execute(sql, campaign)
            rows = cur.fetchall() if cur.description else []
            assert (rows, cur.rowcount if not cur.description else 0) == ([], 0)
        else:
            with pytest.raises(expected[refusal]) as caught:
                conn.execute(sql, campaign)
            if refusal == "rls":
                assert "row-level security" in str(caught.value)
    assert _snapshot(campaign["url"]) == before, f"{table} {operation} changed something"


def test_site_role_still_writes_its_own_rows(campaign):
    """The matrix refuses A's attempts on B, not A's own work."""
    with psycopg.connect(campaign["a_url"], autocommit=True) as conn:
        conn.execute("UPDATE observations SET reason = 'checked' WHERE uuid = %(a_obs)s", campaign)
        conn.execute(
            "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
            "flux_unit) VALUES (%(a)s, %(a_obs)s, 'co2', 'x', 'own', 'u')",
            campaign,
        )
        conn.execute("DELETE FROM fluxes WHERE processing_version = 'own'")
        mine = conn.execute("SELECT role_name, site_id FROM site_roles").fetchall()
        assert mine == [(campaign["role_a"], campaign["a"])]
        assert {r[0] for r in conn.execute("SELECT site_id FROM sites")} == {campaign["a"]}
    with psycopg.connect(campaign["url"], autocommit=True) as admin:
        admin.execute("UPDATE observations SET reason = NULL WHERE uuid = %(a_obs)s", campaign)


def test_cross_site_attempts_cover_every_table_and_operation():
    """The figures for the report, and a guard: every site table has insert, update,
    re-point, delete and read attempts."""
    by_table: dict[str, set[str]] = {}
    for table, operation, _, _ in ATTEMPTS:
        by_table.setdefault(table, set()).add(operation.split(" ")[0])
    for table in _TABLES[:9]:
        assert {"insert", "update", "re-point", "delete", "read"} <= by_table[table], table


# --- the schema rule, on every table of both backends ---------------------------------------


def _foreign_keys(central: Central) -> dict[str, set[tuple[tuple[str, ...], str, tuple]]]:
    """table -> {(child columns, parent table, parent columns)}."""
    out: dict[str, set] = {}
    if central.dialect == "sqlite":
        tables = [
            r["name"] for r in central.query("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            groups: dict[int, list] = {}
            for row in central.query(f"PRAGMA foreign_key_list({table})"):
                groups.setdefault(row["id"], []).append(row)
            for rows in groups.values():
                rows.sort(key=lambda r: r["seq"])
                out.setdefault(table, set()).add(
                    (
                        tuple(r["from"] for r in rows),
                        rows[0]["table"],
                        tuple(r["to"] for r in rows),
                    )
                )
        return out
    for row in central.query(
        "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a "
        "ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols, "
        "ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i) "
        "JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS pcols "
        "FROM pg_constraint c WHERE c.contype = 'f'"
    ):
        out.setdefault(row["child"], set()).add(
            (tuple(row["cols"]), row["parent"], tuple(row["pcols"]))
        )
    return out


def _columns(central: Central, table: str) -> list[str]:
    if central.dialect == "sqlite":
        return [r["name"] for r in central.query(f"PRAGMA table_info({table})")]
    return [
        r["column_name"]
        for r in central.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,)
        )
    ]


def _tables(central: Central) -> list[str]:
    if central.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        return [r["name"] for r in central.query(sql)]
    sql = "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
    return [r["name"] for r in central.query(sql)]


def test_every_child_row_is_bound_to_its_parents_site(central_url):
    """Any table naming an observation names it together with its own site_id (a composite
    foreign key), and any table with a site_id and a system_id names the site's system."""
    with Central.connect(central_url) as central:
        central.migrate()
        keys = _foreign_keys(central)
        for table in _tables(central):
            columns = _columns(central, table)
            for column in ("observation_uuid", "existing_uuid"):
                if column in columns:
                    assert (("site_id", column), "observations", ("site_id", "uuid")) in keys.get(
                        table, set()
                    ), f"{table}.{column} is not bound to its observation's site"
            if "site_id" in columns and "system_id" in columns and table != "systems":
                assert (
                    ("site_id", "system_id"),
                    "systems",
                    ("site_id", "system_id"),
                ) in keys.get(table, set()), f"{table}.system_id is not bound to its site"


def test_every_site_table_has_row_level_security(postgres_url):
    """Every table with a site_id is confined to the writer's own site, readable by the
    analysts; the others are read-only to site roles."""
    with Central.connect(postgres_url) as central:
        central.migrate()
        roles = central.role_names()
        for table in _tables(central):
            if table in ("site_roles", "campaign", "schema_migrations"):
                continue
            assert "site_id" in _columns(central, table), f"{table}: no site_id to confine"
            rls = central.query(
                "SELECT relrowsecurity AS on FROM pg_class WHERE oid = ?::regclass", (table,)
            )[0]["on"]
            assert rls, f"{table}: row-level security is off"
            policies = {
                (r["policyname"], tuple(r["roles"]))
                for r in central.query(
                    "SELECT policyname, roles::text[] AS roles FROM pg_policies "
                    "WHERE tablename = ?",
                    (table,),
                )
            }
            assert ("own_site", (roles["writer"],)) in policies, table
            assert ("analyst_reads", (roles["analyst"],)) in policies, table
        for table in _tables(central):
            assert central.query(
                "SELECT has_table_privilege(?, ?, 'SELECT') AS ok", (roles["analyst"], table)
            )[0]["ok"], f"analysts cannot read {table}"
            for privilege in ("INSERT", "UPDATE", "DELETE"):
                assert not central.query(
                    "SELECT has_table_privilege(?, ?, ?) AS ok",
                    (roles["analyst"], table, privilege),
                )[0]["ok"], f"analysts may {privilege} {table}"


def test_sqlite_binds_child_rows_too(tmp_path):
    """The composite foreign keys hold in the embedded file as well (no roles there)."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Central.connect(url) as central:
        central.migrate()
        with central.transaction():
            for key in ("A", "B"):
                _fill_sqlite(central, key)
        attempts = [
            "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
            "flux_unit) VALUES ('A', 'obs-B', 'co2', 'x', 'evil', 'u')",
            "INSERT INTO samples (site_id, observation_uuid, seq) VALUES ('A', 'obs-B', 9)",
            "UPDATE fluxes SET observation_uuid = 'obs-B' WHERE site_id = 'A'",
            "UPDATE samples SET site_id = 'B' WHERE site_id = 'A'",
            "UPDATE observations SET site_id = 'B' WHERE uuid = 'obs-A'",
            "INSERT INTO conflicts (detected_at, site_id, system_id, chamber, begin_utc, "
            "existing_uuid, incoming_uuid, source, incoming) VALUES ('t', 'A', 'auto', 'C1', "
            "'t', 'obs-B', 'y', 'sync', '{}')",
        ]
        for sql in attempts:
            with pytest.raises(Exception, match="refused") as caught, central.transaction():
                central.execute(sql)
            assert isinstance(caught.value.__cause__, sqlite3.IntegrityError), sql
        assert central.query("SELECT count(*) AS n FROM fluxes WHERE site_id = 'A'")[0]["n"] == 1


def _fill_sqlite(central: Central, key: str) -> None:
    central.execute(
        "INSERT INTO sites (site_id, time_zone, created_at) VALUES (?, 'UTC', 't')", (key,)
    )
    central.execute("INSERT INTO systems (site_id, system_id) VALUES (?, 'auto')", (key,))
    central.execute(
        "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
        "content_hash, received_at) VALUES (?, ?, 'auto', 'C1', 't', 'done', 'h', 't')",
        (f"obs-{key}", key),
    )
    central.execute(
        "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
        "flux_unit) VALUES (?, ?, 'co2', 'linear', 'site-1', 'u')",
        (key, f"obs-{key}"),
    )
    central.execute(
        "INSERT INTO samples (site_id, observation_uuid, seq) VALUES (?, ?, 0)",
        (key, f"obs-{key}"),
    )
