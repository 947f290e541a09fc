"""Roles and row-level security on the real PostgreSQL; hostile names and values."""

from __future__ import annotations

import contextlib
import math
import uuid as uuidlib

import psycopg
import pytest

from chamberd.controller.cli import main
from chamberd.controller.errors import ConfigError
from chamberd.network_sync.central import Central, add_site_role
from chamberd.network_sync.sync import register_site


def _site_url(admin_url: str, role: str, password: str) -> str:
    base, db = admin_url.rsplit("/", 1)
    host = base.split("@", 1)[1]
    return f"postgresql://{role}:{password}@{host}/{db}"


@pytest.fixture
def campaign(postgres_url):
    """A central database with two sites, A and B, each with its writer role."""
    suffix = uuidlib.uuid4().hex[:8]
    sites = {"A": f"site-a-{suffix}", "B": f"site-b-{suffix}"}
    roles = []
    with Central.connect(postgres_url) as central:
        central.migrate()
        urls = {}
        for key, site in sites.items():
            register_site(central, site_id=site, system_id="auto", at="2026-07-01T00:00:00Z")
            role, password = add_site_role(central, site)
            roles.append(role)
            urls[key] = _site_url(postgres_url, role, password)
        for key, site in sites.items():
            central.execute(
                "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
                "content_hash, received_at) VALUES (?, ?, 'auto', 'C1', "
                "'2026-07-01T04:00:00Z', 'done', 'h', '2026-07-01T05:00:00Z')",
                (f"obs-{key}-{suffix}", site),
            )
    # roles are cluster-wide: dropped at the end of the module, once their databases are gone
    request_roles.extend(roles)
    yield {"url": postgres_url, "sites": sites, "urls": urls, "suffix": suffix}


request_roles: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _drop_roles(postgres_admin_url):
    yield
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for role in request_roles:
            with contextlib.suppress(psycopg.Error):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_site_role_reads_and_writes_only_its_own_rows(campaign):
    a = campaign["sites"]["A"]
    b = campaign["sites"]["B"]
    with psycopg.connect(campaign["urls"]["A"], autocommit=True) as conn:
        seen = {r[0] for r in conn.execute("SELECT site_id FROM observations")}
        assert seen == {a}
        # its own rows: yes
        conn.execute("UPDATE observations SET reason = 'checked' WHERE site_id = %s", (a,))
        # another site's rows: invisible to update and to SELECT ... FOR UPDATE
        cur = conn.execute("UPDATE observations SET reason = 'hijacked' WHERE site_id = %s", (b,))
        assert cur.rowcount == 0
        assert (
            conn.execute(
                "SELECT uuid FROM observations WHERE site_id = %s FOR UPDATE", (b,)
            ).fetchall()
            == []
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
                "content_hash, received_at) VALUES ('x', %s, 'auto', 'C9', now(), 'done', 'h', "
                "now())",
                (b,),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("UPDATE observations SET site_id = %s WHERE site_id = %s", (b, a))
        # nor can it grant itself another site
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO site_roles VALUES (current_user, %s)", (b,))
    with Central.connect(campaign["url"]) as admin:
        rows = admin.query("SELECT site_id, reason FROM observations ORDER BY site_id")
        assert [(r["site_id"], r["reason"]) for r in rows] == [(a, "checked"), (b, None)]


def test_analyst_role_reads_everything_and_writes_nothing(campaign, postgres_admin):
    analyst = f"analyst_{campaign['suffix']}"
    postgres_admin.execute(f"CREATE ROLE {analyst} LOGIN PASSWORD 'pw' IN ROLE chamberd_analyst")
    request_roles.append(analyst)
    url = _site_url(campaign["url"], analyst, "pw")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 2
        for statement in (
            "INSERT INTO sites (site_id, time_zone, created_at) VALUES ('z', 'UTC', now())",
            "UPDATE observations SET reason = 'x'",
            "DELETE FROM fluxes",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_site_role_registers_only_its_own_site(campaign):
    """A site's own role registers its own site, and only its own."""
    with Central.connect(campaign["urls"]["A"]) as central:
        site = campaign["sites"]["A"]
        register_site(central, site_id=site, system_id="auto", name="renamed", at="2026-07-02Z")
        rows = central.query("SELECT name FROM sites")
        assert [r["name"] for r in rows] == ["renamed"]  # its own site row only
        with pytest.raises(Exception, match="row-level security"):
            register_site(
                central, site_id=campaign["sites"]["B"], system_id="auto", at="2026-07-02Z"
            )


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


def test_add_site_refuses_bad_names_and_sqlite(campaign, tmp_path):
    with Central.connect(campaign["url"]) as central, pytest.raises(ConfigError, match="letters"):
        add_site_role(central, "a'; DROP ROLE postgres; --")
    with Central.connect(f"sqlite:///{tmp_path / 'c.db'}") as central:
        central.migrate()
        with pytest.raises(ConfigError, match="PostgreSQL"):
            add_site_role(central, "a")


def test_cli_add_site_writes_a_private_url_file(campaign, tmp_path, capsys):
    site = f"site-c-{campaign['suffix']}"
    out = tmp_path / "c.url"
    assert main(["central", "add-site", campaign["url"], site, "--password-file", str(out)]) == 0
    printed = capsys.readouterr().out
    role = f"chamberd_site_{site.replace('-', '_')}"
    request_roles.append(role)
    url = out.read_text().strip()
    assert (
        url.startswith(f"postgresql://{role}:") and url.split(":")[2].split("@")[0] not in printed
    )
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0


def test_upload_with_the_site_role(campaign, tmp_path):
    import datetime as dt
    import tomllib
    from pathlib import Path

    from chamberd.controller.app import build_site
    from chamberd.controller.clock import FakeClock
    from chamberd.controller.config import parse_config
    from chamberd.controller.sim.site import SimulatedSite
    from chamberd.controller.store import SiteStore
    from chamberd.network_sync.sync import site_registration, upload

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "controller/examples/sim-site.toml").read_text())
    data["site"]["id"] = campaign["sites"]["A"]
    data["analysers"][0]["protocol"] = "memory"
    data["storage"] = {"path": str(tmp_path / "site.db")}
    data["sync"] = {"system": "auto"}
    cfg = parse_config(data)
    start = dt.datetime(2026, 7, 1, 3, 59, 50, tzinfo=dt.UTC)
    clock = FakeClock(start=start)
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    site.daemon.run(until=start + dt.timedelta(minutes=20))
    site.daemon.shutdown("end")
    site.close()
    store = SiteStore.open_existing(cfg.storage.path)
    with Central.connect(campaign["urls"]["A"]) as central:
        register_site(central, **site_registration(cfg, start))
        summary = upload(store, central, site_id=cfg.site.id, system_id="auto")
        assert (summary.sent, summary.conflicts) == (4, 0)
        assert central.query("SELECT count(*) AS n FROM fluxes")[0]["n"] == 8
        # the same data announced as another site's: refused by row-level security
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) "
                "SELECT uuid, 'x' FROM observations LIMIT 1"
            )
        other = store.query("SELECT uuid FROM observations LIMIT 1")[0]["uuid"]
        with pytest.raises(Exception, match="row-level security"):
            upload(store, central, site_id=campaign["sites"]["B"], system_id="auto")
        assert store.query("SELECT observation_uuid FROM outbox")[0]["observation_uuid"] == other
    store.close()
