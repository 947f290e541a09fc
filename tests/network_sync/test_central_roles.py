"""Roles on the real PostgreSQL: per-campaign names, add-site collisions, analysts, a site
using another site's credentials, the upgrade of a version-2 database; hostile values."""

from __future__ import annotations

import contextlib
import math
import uuid as uuidlib
from pathlib import Path

import psycopg
import pytest
from pgtools import drop_campaign_database

from chamberd.controller.cli import main
from chamberd.controller.errors import ConfigError, StorageError, SyncError
from chamberd.network_sync.central import LATEST_VERSION, Central, add_site_role, site_role_name
from chamberd.network_sync.sync import register_site

ROOT = Path(__file__).resolve().parents[2]


def _site_url(admin_url: str, role: str, password: str) -> str:
    base, db = admin_url.rsplit("/", 1)
    host = base.split("@", 1)[1]
    return f"postgresql://{role}:{password}@{host}/{db}"


@pytest.fixture
def campaign(postgres_url):
    """A central database with two sites, A and B, each with its writer role."""
    suffix = uuidlib.uuid4().hex[:8]
    sites = {"A": f"site-a-{suffix}", "B": f"site-b-{suffix}"}
    with Central.connect(postgres_url) as central:
        central.migrate()
        urls, roles = {}, {}
        for key, site in sites.items():
            register_site(central, site_id=site, system_id="auto", at="2026-07-01T00:00:00Z")
            roles[key], password = add_site_role(central, site)
            urls[key] = _site_url(postgres_url, roles[key], password)
        for key, site in sites.items():
            central.execute(
                "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
                "content_hash, received_at) VALUES (?, ?, 'auto', 'C1', "
                "'2026-07-01T04:00:00Z', 'done', 'h', '2026-07-01T05:00:00Z')",
                (f"obs-{key}-{suffix}", site),
            )
        groups = central.role_names()
        cid = central.campaign_id()
    return {
        "url": postgres_url,
        "sites": sites,
        "urls": urls,
        "roles": roles,
        "groups": groups,
        "cid": cid,
        "suffix": suffix,
    }


def _login(campaign, postgres_admin, name: str, group: str) -> str:
    """A login role in one of the campaign's groups; named under the campaign's prefix, so
    the database fixture drops it."""
    role = f"chamberd_{campaign['cid']}_test_{name}"
    postgres_admin.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'pw\' IN ROLE "{group}"')
    return _site_url(campaign["url"], role, "pw")


# --- role names -----------------------------------------------------------------------------


def test_role_names_are_exact_scoped_and_short_enough():
    assert site_role_name("ab12cd", "FZ-C") == "chamberd_ab12cd_site_FZ-C"
    assert site_role_name("ab12cd", "fz_c") == "chamberd_ab12cd_site_fz_c"
    assert site_role_name("ab12cd", "FZ-C") != site_role_name("ff00ff", "FZ-C")
    long_a, long_b = "x" * 60 + "-a", "x" * 60 + "-b"
    names = {site_role_name("ab12cd", s) for s in (long_a, long_b, "x" * 42, "x" * 43)}
    assert len(names) == 4 and all(len(n.encode()) <= 63 for n in names)
    assert "~" in site_role_name("ab12cd", long_a) and "~" not in site_role_name("ab12cd", "x" * 42)


def test_site_ids_differing_only_in_case_or_punctuation_get_different_roles(campaign):
    suffix = campaign["suffix"]
    with Central.connect(campaign["url"]) as central:
        upper, _ = add_site_role(central, f"FZ-C-{suffix}")
        lower, _ = add_site_role(central, f"fz_c-{suffix}")
        assert upper != lower
        rows = central.query("SELECT role_name, site_id FROM site_roles ORDER BY site_id")
        mapping = {r["role_name"]: r["site_id"] for r in rows}
        assert mapping[upper] == f"FZ-C-{suffix}" and mapping[lower] == f"fz_c-{suffix}"
        # the same site again: the same role, a new password; nothing else changes
        again, _ = add_site_role(central, f"FZ-C-{suffix}")
        assert again == upper
        assert len(central.query("SELECT * FROM site_roles")) == len(rows)


def test_add_site_refuses_a_role_it_did_not_make(campaign, postgres_admin):
    site = f"site-x-{campaign['suffix']}"
    role = site_role_name(campaign["cid"], site)
    postgres_admin.execute(f'CREATE ROLE "{role}" LOGIN')
    with Central.connect(campaign["url"]) as central:
        with pytest.raises(ConfigError, match="already exists and is not this database's role"):
            add_site_role(central, site)
        assert not central.query("SELECT 1 FROM site_roles WHERE site_id = ?", (site,))


def test_the_same_site_id_in_two_databases_gets_two_roles(campaign, postgres_admin_url):
    other = f"{campaign['url']}_2"
    site = campaign["sites"]["A"]
    try:
        with Central.connect(other, mode="create") as central:
            central.migrate()
            register_site(central, site_id=site, system_id="auto", at="2026-07-01T00:00:00Z")
            role_2, password_2 = add_site_role(central, site)
        assert role_2 != campaign["roles"]["A"]
        # the first database's role has nothing in the second, nor the second's in the first
        for url in (
            _site_url(other, campaign["roles"]["A"], "x"),
            _site_url(campaign["url"], role_2, password_2),
        ):
            with Central.connect(url) as central:
                with pytest.raises(SyncError, match="not allowed"):
                    central.query("SELECT * FROM observations")
                with pytest.raises(SyncError, match="no access to this campaign's tables"):
                    register_site(central, site_id=site, system_id="auto", at="2026-07-02Z")
    finally:
        drop_campaign_database(postgres_admin_url, other)


def test_add_site_refuses_bad_names_and_sqlite(campaign, tmp_path):
    with Central.connect(campaign["url"]) as central, pytest.raises(ConfigError, match="letters"):
        add_site_role(central, "a'; DROP ROLE postgres; --")
    with Central.connect(f"sqlite:///{tmp_path / 'c.db'}") as central:
        central.migrate()
        with pytest.raises(ConfigError, match="PostgreSQL"):
            add_site_role(central, "a")


def test_cli_add_site_writes_a_private_url_file(campaign, tmp_path, capsys):
    site = f"Site.C-{campaign['suffix']}"
    out = tmp_path / "c.url"
    assert main(["central", "add-site", campaign["url"], site, "--password-file", str(out)]) == 0
    printed = capsys.readouterr().out
    role = site_role_name(campaign["cid"], site)
    assert role in printed
    url = out.read_text().strip()
    assert url.startswith(f"postgresql://{role}:")
    assert url.split(":")[2].split("@")[0] not in printed
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0
        assert conn.execute("SELECT current_user").fetchone()[0] == role


def test_cli_init_names_the_campaign_roles(postgres_url, capsys):
    assert main(["central", "init", postgres_url]) == 0
    out = capsys.readouterr().out
    with Central.connect(postgres_url, mode="read") as central:
        roles = central.role_names()
    assert roles["analyst"] in out and roles["writer"] in out


# --- what each role may do ------------------------------------------------------------------


def test_site_role_reads_and_writes_only_its_own_rows(campaign):
    a = campaign["sites"]["A"]
    b = campaign["sites"]["B"]
    with psycopg.connect(campaign["urls"]["A"], autocommit=True) as conn:
        seen = {r[0] for r in conn.execute("SELECT site_id FROM observations")}
        assert seen == {a}
        conn.execute("UPDATE observations SET reason = 'checked' WHERE site_id = %s", (a,))
        cur = conn.execute("UPDATE observations SET reason = 'hijacked' WHERE site_id = %s", (b,))
        assert cur.rowcount == 0
        # nor can it list the other sites, or their roles
        assert {r[0] for r in conn.execute("SELECT site_id FROM sites")} == {a}
        assert {r[0] for r in conn.execute("SELECT site_id FROM systems")} == {a}
        assert conn.execute("SELECT site_id FROM site_roles").fetchall() == [(a,)]
    with Central.connect(campaign["url"]) as admin:
        rows = admin.query("SELECT site_id, reason FROM observations ORDER BY site_id")
        assert [(r["site_id"], r["reason"]) for r in rows] == [(a, "checked"), (b, None)]


def test_analyst_role_reads_everything_and_writes_nothing(campaign, postgres_admin):
    url = _login(campaign, postgres_admin, "alice", campaign["groups"]["analyst"])
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM site_roles").fetchone()[0] == 2
        for statement in (
            "INSERT INTO sites (site_id, time_zone, created_at) VALUES ('z', 'UTC', now())",
            "UPDATE observations SET reason = 'x'",
            "DELETE FROM fluxes",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with (
        Central.connect(url) as central,
        pytest.raises(SyncError, match=r"refused site .* for role .*alice: this role may only"),
    ):
        register_site(central, site_id=campaign["sites"]["A"], system_id="auto", at="2026-07-02Z")


def test_site_role_registers_only_its_own_site(campaign):
    with Central.connect(campaign["urls"]["A"]) as central:
        site = campaign["sites"]["A"]
        register_site(central, site_id=site, system_id="auto", name="renamed", at="2026-07-02Z")
        rows = central.query("SELECT name FROM sites")
        assert [r["name"] for r in rows] == ["renamed"]
        b = campaign["sites"]["B"]
        with pytest.raises(
            SyncError,
            match=rf"refused site '{b}''s rows for role {campaign['roles']['A']}: "
            rf"this role writes site '{site}'",
        ):
            register_site(central, site_id=b, system_id="auto", at="2026-07-02Z")


def test_a_raw_row_level_security_refusal_is_translated(campaign):
    """Below the pre-check: the adapter's own translation names role, site and table."""
    with Central.connect(campaign["urls"]["A"]) as central:
        central.require_writer(campaign["sites"]["A"])
        with pytest.raises(
            SyncError, match=r"refused a sites row for role .*writes site"
        ) as caught:
            central.execute(
                "INSERT INTO sites (site_id, time_zone, created_at) VALUES (?, 'UTC', now())",
                (campaign["sites"]["B"],),
            )
        assert isinstance(caught.value.__cause__, psycopg.errors.InsufficientPrivilege)


# --- a site using another site's credentials, through the commands ----------------------------


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("chamberd: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_sync_with_another_sites_credentials_is_refused_and_keeps_the_outbox(
    campaign, measured_site, site_copy, outbox, tmp_path, capsys
):
    b = campaign["sites"]["B"]
    config, db = site_copy(measured_site, tmp_path, site_id=b)
    before = outbox(db)
    assert main(["sync", str(config), "--target", campaign["urls"]["A"]]) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    role = campaign["roles"]["A"]
    assert f"refused site '{b}''s rows for role {role}" in line
    assert f"this role writes site '{campaign['sites']['A']}'" in line
    password = campaign["urls"]["A"].split(":")[2].split("@")[0]
    assert password not in captured.err + captured.out
    assert outbox(db) == before > 0
    with Central.connect(campaign["url"]) as admin:
        assert admin.query("SELECT count(*) AS n FROM observations")[0]["n"] == 2


def test_sync_with_its_own_credentials_works(
    campaign, measured_site, site_copy, outbox, tmp_path, capsys
):
    config, db = site_copy(measured_site, tmp_path, site_id=campaign["sites"]["A"])
    assert main(["sync", str(config), "--target", campaign["urls"]["A"]]) == 0
    assert "sent 4" in capsys.readouterr().out and outbox(db) == 0
    with Central.connect(campaign["url"]) as admin:
        rows = admin.query("SELECT DISTINCT site_id FROM fluxes")
        assert [r["site_id"] for r in rows] == [campaign["sites"]["A"]]


def test_import_with_another_sites_credentials_is_refused(campaign, salt_81x, capsys):
    b = campaign["sites"]["B"]
    args = ["import", "--target", campaign["urls"]["A"], "--site", b, "--system", "survey"]
    assert main([*args, "--format", "li8100a", "--time-zone", "UTC", str(salt_81x)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"refused site '{b}''s rows for role {campaign['roles']['A']}" in line
    with Central.connect(campaign["url"]) as admin:
        assert admin.query("SELECT count(*) AS n FROM observations")[0]["n"] == 2


def test_import_by_an_analyst_is_refused(campaign, postgres_admin, salt_81x, capsys):
    url = _login(campaign, postgres_admin, "bob", campaign["groups"]["analyst"])
    args = ["import", "--target", url, "--site", campaign["sites"]["A"], "--system", "survey"]
    assert main([*args, "--format", "li8100a", "--time-zone", "UTC", str(salt_81x)]) == 1
    assert "this role may only read" in _one_error_line(capsys.readouterr().err)


def test_refit_by_an_analyst_is_refused_with_a_message(campaign, postgres_admin, capsys):
    url = _login(campaign, postgres_admin, "carol", campaign["groups"]["analyst"])
    with Central.connect(campaign["url"]) as admin:
        admin.execute(
            "INSERT INTO samples (site_id, observation_uuid, seq, elapsed_s, co2_umol_mol, "
            "h2o_mmol_mol, cell_temperature_degc, cell_pressure_kpa) "
            "SELECT site_id, uuid, s, s * 1.0, 400 + s, 10, 25, 100 FROM observations, "
            "generate_series(0, 40) AS s"
        )
        admin.execute("UPDATE observations SET area_cm2 = 317.8, volume_cm3 = 5000")
    assert main(["refit", "--target", url, "--method", "linear", "--dead-band", "5"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "not allowed" in line and "fluxes" in line


# --- upgrading a version-2 database ---------------------------------------------------------


def _legacy_role(central: Central, site_id: str) -> str:
    """The version-2 add-site: chamberd_site_<site id folded>, in the shared group."""
    role = "chamberd_site_" + site_id.lower().replace("-", "_")
    central._execute_raw(f'CREATE ROLE "{role}" LOGIN')
    central._execute_raw(f'GRANT chamberd_site_writer TO "{role}"')
    central.execute("INSERT INTO site_roles (role_name, site_id) VALUES (?, ?)", (role, site_id))
    return role


def _v2_rows(central: Central, sites: list[str]) -> None:
    for site in sites:
        register_site(central, site_id=site, system_id="auto", at="2026-07-01T00:00:00Z")
        central.execute(
            "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
            "content_hash, received_at) VALUES (?, ?, 'auto', 'C1', '2026-07-01T04:00:00Z', "
            "'done', 'h', '2026-07-01T05:00:00Z')",
            (f"obs-{site}", site),
        )
        central.execute(
            "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
            "flux, flux_unit) VALUES (?, ?, 'co2', 'linear', 'site-1', 1.5, 'umol m-2 s-1')",
            (site, f"obs-{site}"),
        )
        central.execute(
            "INSERT INTO samples (site_id, observation_uuid, seq, co2_umol_mol) "
            "VALUES (?, ?, 0, 420)",
            (site, f"obs-{site}"),
        )
        central.execute(
            "INSERT INTO conflicts (detected_at, site_id, system_id, chamber, begin_utc, "
            "existing_uuid, incoming_uuid, source, incoming) VALUES ('2026-07-01T05:00:00Z', ?, "
            "'auto', 'C1', '2026-07-01T04:00:00Z', ?, 'other', 'sync', '{}')",
            (site, f"obs-{site}"),
        )


def _contents(central: Central) -> dict[str, list]:
    tables = ("sites", "systems", "observations", "fluxes", "samples", "conflicts")
    return {
        t: sorted(map(repr, central.conn.execute(f"SELECT * FROM {t}").fetchall())) for t in tables
    }


def test_upgrade_from_version_2_keeps_data_and_legacy_site_roles(postgres_url, postgres_admin):
    suffix = uuidlib.uuid4().hex[:8]
    a, b = f"Old-A-{suffix}", f"old-b-{suffix}"
    legacy = []
    try:
        with Central.connect(postgres_url) as central:
            assert central.migrate(upto=2) == [1, 2]
            _v2_rows(central, [a, b])
            legacy = [_legacy_role(central, a), _legacy_role(central, b)]
            analyst = f"chamberd_v2_analyst_{suffix}"  # an analyst of the version-2 scheme
            central._execute_raw(f'CREATE ROLE "{analyst}" LOGIN IN ROLE chamberd_analyst')
            legacy.append(analyst)
            before = _contents(central)
            assert central.migrate(upto=3) == [3]
            assert _contents(central) == before
            # later migrations keep the rows too (version 4 adds systems.metadata, empty)
            assert central.migrate() == list(range(4, LATEST_VERSION + 1))
            assert {r["metadata"] for r in central.query("SELECT metadata FROM systems")} == {""}
            assert central.query("SELECT count(*) AS n FROM observations")[0]["n"] == 2
            groups = central.role_names()
            assert [r["role_name"] for r in central.legacy_site_roles()] == legacy[:2]
        with psycopg.connect(_site_url(postgres_url, analyst, "x"), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 2
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM fluxes")
        # the old role still writes its own site, and only that; hanging rows onto the other
        # site's observation is refused now
        with psycopg.connect(_site_url(postgres_url, legacy[0], "x"), autocommit=True) as conn:
            conn.execute("UPDATE observations SET reason = 'ok' WHERE site_id = %s", (a,))
            assert {r[0] for r in conn.execute("SELECT site_id FROM observations")} == {a}
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute(
                    "INSERT INTO fluxes (site_id, observation_uuid, gas, model, "
                    "processing_version, flux_unit) VALUES (%s, %s, 'co2', 'x', 'evil', 'u')",
                    (a, f"obs-{b}"),
                )
        with Central.connect(postgres_url) as central:
            # the shared version-2 groups lost their access to this database
            for old in ("chamberd_analyst", "chamberd_site_writer"):
                for table in ("observations", "site_roles"):
                    assert not central.query(
                        "SELECT has_table_privilege(?, ?, 'SELECT') AS ok", (old, table)
                    )[0]["ok"]
            # add-site replaces the old role: it leaves site_roles and the writer group
            role, _ = add_site_role(central, a)
            assert role == site_role_name(central.campaign_id(), a)
            assert [r["role_name"] for r in central.legacy_site_roles()] == [legacy[1]]
            assert not central.query(
                "SELECT pg_has_role(?, ?, 'MEMBER') AS m", (legacy[0], groups["writer"])
            )[0]["m"]
        retired = _site_url(postgres_url, legacy[0], "x")
        with (
            psycopg.connect(retired, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT * FROM observations")
    finally:
        for role in legacy:  # not under the campaign's prefix: dropped here
            with contextlib.suppress(psycopg.Error):
                postgres_admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_refuses_rows_written_across_sites(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'c.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with Central.connect(url) as central:
        central.migrate(upto=2)
        _v2_rows(central, ["A", "B"])
        # what version 2 let a site role do: a flux of A's on B's observation
        central.execute(
            "INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version, "
            "flux_unit) VALUES ('A', 'obs-B', 'co2', 'linear', 'evil', 'umol m-2 s-1')"
        )
        with pytest.raises(StorageError, match=r"migration 3 .* 1 fluxes row\(s\) carry a site_id"):
            central.migrate()
        assert central.schema_version() == 2  # nothing of migration 3 applied
        assert not central.has_table("campaign")
        central.execute("DELETE FROM fluxes WHERE processing_version = 'evil'")
        assert central.migrate() == list(range(3, LATEST_VERSION + 1))


# --- hostile values, stored literally ---------------------------------------------------------


def test_hostile_names_and_values_are_stored_literally(campaign):
    site = campaign["sites"]["A"]
    hostile = "C1'); DROP TABLE observations; --"
    huge = "x" * 100_000
    with Central.connect(campaign["urls"]["A"]) as central:
        central.execute(
            "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
            "reason, soil_temperature_degc, content_hash, received_at) "
            "VALUES (?, ?, 'auto', ?, '2026-07-01T05:00:00Z', 'done', ?, ?, 'h', now())",
            ("hostile-1", site, hostile, huge, math.nan),
        )
        row = central.query(
            "SELECT chamber, reason, soil_temperature_degc FROM observations "
            "WHERE uuid = 'hostile-1'"
        )[0]
        assert row["chamber"] == hostile and len(row["reason"]) == 100_000
        assert math.isnan(row["soil_temperature_degc"])
        assert central.query("SELECT count(*) AS n FROM observations")[0]["n"] == 2
