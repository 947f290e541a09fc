"""Site -> central sync on both backends: replay, revision, de-duplication, conflicts."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import parse_config, to_toml
from chamberd.controller.errors import SyncError
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import LATEST_VERSION, MIGRATIONS, Central, redact
from chamberd.network_sync.sync import register_site, upload

START = dt.datetime(2026, 7, 1, 3, 59, 50, tzinfo=dt.UTC)
SHORT = {"prepurge_s": 5, "dead_band_s": 10, "observation_s": 60, "postpurge_s": 5}


def _measure(cfg, hours: float) -> None:
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    site.daemon.run(until=START + dt.timedelta(hours=hours))
    site.daemon.shutdown("end")
    site.close()


@pytest.fixture
def site_cfg(tmp_path):
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "controller/examples/sim-site.toml").read_text())
    for analyser in data["analysers"]:
        analyser["protocol"] = "memory"
    data["storage"] = {"path": str(tmp_path / "site.db")}
    data["cycle"] = {**data["cycle"], **SHORT}
    return parse_config(data)


def _central(url):
    central = Central.connect(url)
    central.migrate()
    return central


def _register(central, cfg):
    register_site(
        central,
        site_id=cfg.site.id,
        system_id="auto",
        time_zone=cfg.site.time_zone,
        geometry=[
            {
                "chamber": c.id,
                "since": "2026-01-01",
                "area_cm2": 317.8,
                "volume_cm3": 5000.0,
                "offset_cm": 2.0,
            }
            for c in cfg.chambers
        ],
        at="2026-07-01T00:00:00+00:00",
    )


def _upload(store, central, cfg, **kwargs):
    return upload(store, central, site_id=cfg.site.id, system_id="auto", **kwargs)


def _count(central, table):
    return central.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_migrations_are_versioned_and_idempotent(central_url):
    with Central.connect(central_url) as central:
        assert central.schema_version() == 0
        assert central.migrate() == [m[0] for m in MIGRATIONS]
        assert central.migrate() == []
        assert central.schema_version() == LATEST_VERSION
        for table in (
            "sites",
            "systems",
            "chambers",
            "observations",
            "samples",
            "fluxes",
            "calibrations",
            "conflicts",
            "ingest_log",
        ):
            assert _count(central, table) == 0


def test_upload_then_replay_is_a_no_op(central_url, site_cfg):
    _measure(site_cfg, 1.0)  # two rounds of four chambers
    store = SiteStore.open_existing(site_cfg.storage.path)
    with _central(central_url) as central:
        _register(central, site_cfg)
        first = _upload(store, central, site_cfg, batch_size=3)
        assert (first.sent, first.unchanged, first.revised, first.conflicts) == (8, 0, 0, 0)
        assert first.remaining == 0 and first.batches == 3
        assert _count(central, "observations") == 8
        assert _count(central, "fluxes") == 16
        site_samples = store.query("SELECT count(*) AS n FROM samples")[0]["n"]
        assert _count(central, "samples") == site_samples
        # row for row: the same fluxes on both sides
        here = {
            (r["observation_uuid"], r["model"]): r["flux"]
            for r in store.query("SELECT * FROM fluxes")
        }
        there = {
            (r["observation_uuid"], r["model"]): r["flux"]
            for r in central.query("SELECT * FROM fluxes")
        }
        assert here == pytest.approx(there)
        # replay: the same announcements again change nothing
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) "
                "SELECT uuid, ended_at FROM observations"
            )
        again = _upload(store, central, site_cfg)
        assert (again.sent, again.unchanged, again.revised) == (0, 8, 0)
        assert _count(central, "observations") == 8 and _count(central, "fluxes") == 16
        log = central.query("SELECT * FROM ingest_log ORDER BY id")
        assert [r["received"] for r in log] == [3, 3, 2, 8]
    store.close()


def test_reprocessed_observation_becomes_a_revision(central_url, site_cfg):
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    with _central(central_url) as central:
        _register(central, site_cfg)
        _upload(store, central, site_cfg)
        uuid = store.query("SELECT uuid FROM observations LIMIT 1")[0]["uuid"]
        with store.transaction() as conn:  # refitted at the site
            conn.execute("UPDATE fluxes SET flux = flux * 1.1 WHERE observation_uuid = ?", (uuid,))
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, '2026-07-02')",
                (uuid,),
            )
        summary = _upload(store, central, site_cfg)
        assert (summary.sent, summary.unchanged, summary.revised) == (0, 0, 1)
        row = central.query("SELECT revision FROM observations WHERE uuid = ?", (uuid,))[0]
        assert row["revision"] == 2
        fluxes = central.query(
            "SELECT flux, revision FROM fluxes WHERE observation_uuid = ?", (uuid,)
        )
        here = store.query("SELECT flux FROM fluxes WHERE observation_uuid = ?", (uuid,))
        assert sorted(f["flux"] for f in fluxes) == pytest.approx(sorted(f["flux"] for f in here))
        assert {f["revision"] for f in fluxes} == {2}
    store.close()


def test_duplicates_inside_a_batch_are_collapsed(central_url, site_cfg):
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    uuids = [r["uuid"] for r in store.query("SELECT uuid FROM observations")]
    with store.transaction() as conn:  # the outbox announces every observation three times
        conn.execute("DROP INDEX IF EXISTS outbox_uuid")
        conn.execute("CREATE TABLE outbox2 AS SELECT * FROM outbox")
        conn.execute("DROP TABLE outbox")
        conn.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "observation_uuid TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        for _ in range(3):
            conn.executemany(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, 'x')",
                [(u,) for u in uuids],
            )
    with _central(central_url) as central:
        _register(central, site_cfg)
        summary = _upload(store, central, site_cfg, batch_size=100)
        assert summary.batches == 1
        assert (summary.sent, summary.unchanged) == (len(uuids), 0)
        log = central.query("SELECT received, sent FROM ingest_log")[0]
        assert (log["received"], log["sent"]) == (3 * len(uuids), len(uuids))
    store.close()


def test_same_chamber_and_time_with_another_uuid_is_a_conflict(central_url, site_cfg, tmp_path):
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    with _central(central_url) as central:
        _register(central, site_cfg)
        _upload(store, central, site_cfg)
        # the same site database restored from a backup and re-measured: a new uuid for
        # chamber C1 at the same start time
        original = store.query("SELECT * FROM observations WHERE chamber = 'C1'")[0]
        with store.transaction() as conn:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute(
                "UPDATE observations SET uuid = 'f0000000-0000-4000-8000-000000000001' "
                "WHERE uuid = ?",
                (original["uuid"],),
            )
            conn.execute(
                "UPDATE fluxes SET observation_uuid = 'f0000000-0000-4000-8000-000000000001' "
                "WHERE observation_uuid = ?",
                (original["uuid"],),
            )
            conn.execute(
                "UPDATE samples SET observation_uuid = 'f0000000-0000-4000-8000-000000000001' "
                "WHERE observation_uuid = ?",
                (original["uuid"],),
            )
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, 'x')",
                ("f0000000-0000-4000-8000-000000000001",),
            )
        summary = _upload(store, central, site_cfg)
        assert summary.conflicts == 1 and summary.sent == 0
        conflict = central.query("SELECT * FROM conflicts")[0]
        assert conflict["existing_uuid"] == original["uuid"]
        assert conflict["incoming_uuid"] == "f0000000-0000-4000-8000-000000000001"
        assert json.loads(conflict["incoming"])["chamber"] == "C1"
        # never overwritten
        kept = central.query("SELECT uuid FROM observations WHERE chamber = 'C1'")
        assert [k["uuid"] for k in kept] == [original["uuid"]]
        # reported once, even when announced again
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, 'x')",
                ("f0000000-0000-4000-8000-000000000001",),
            )
        _upload(store, central, site_cfg)
        assert _count(central, "conflicts") == 1
    store.close()


def test_dry_run_changes_nothing(central_url, site_cfg):
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    with _central(central_url) as central:
        _register(central, site_cfg)
        summary = _upload(store, central, site_cfg, dry_run=True)
        assert summary.sent == 4 and summary.dry_run
        assert _count(central, "observations") == 0 and _count(central, "ingest_log") == 0
        assert store.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 4
    store.close()


def test_unreachable_central_leaves_the_outbox(site_cfg):
    _measure(site_cfg, 0.5)
    with pytest.raises(SyncError, match=r"postgresql://chamberd:\*\*\*@127.0.0.1:1/x"):
        Central.connect("postgresql://chamberd:s3cret@127.0.0.1:1/x", connect_timeout_s=2)
    store = SiteStore.open_existing(site_cfg.storage.path)
    assert store.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 4
    store.close()


def test_redact_hides_passwords():
    assert redact("postgresql://site_a:pw@db.example:5432/c") == (
        "postgresql://site_a:***@db.example:5432/c"
    )
    assert redact("sqlite:///tmp/c.db") == "sqlite:///tmp/c.db"


def test_cli_central_init_and_sync_json(central_url, site_cfg, tmp_path, capsys):
    _measure(site_cfg, 0.5)
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site_cfg), encoding="utf-8")
    assert main(["central", "init", central_url]) == 0
    assert f"schema version {LATEST_VERSION}" in capsys.readouterr().out
    assert main(["sync", str(config), "--target", central_url, "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry == {
        "sent": 4,
        "unchanged": 0,
        "revised": 0,
        "conflicts": 0,
        "remaining": 4,
        "dry_run": True,
    }
    assert main(["sync", str(config), "--target", central_url, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done == {
        "sent": 4,
        "unchanged": 0,
        "revised": 0,
        "conflicts": 0,
        "remaining": 0,
        "dry_run": False,
    }
    with sqlite3.connect(site_cfg.storage.path) as con:
        assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert main(["sync", str(config), "--target", central_url]) == 0
    assert "sent 0, unchanged 0, revised 0, conflicts 0, remaining 0" in capsys.readouterr().out


def test_cli_sync_without_schema_is_a_message(site_cfg, tmp_path, capsys):
    _measure(site_cfg, 0.5)
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site_cfg), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["sync", str(config), "--target", url]) == 2
    assert "chamberd central init" in capsys.readouterr().err


def _with_sync(cfg, **sync):
    return cfg.model_copy(update={"sync": cfg.sync.model_copy(update=sync)})


def test_daemon_uploads_on_its_schedule(central_url, site_cfg):
    with _central(central_url):
        pass
    cfg = _with_sync(site_cfg, target=central_url, interval_min=30, system="auto")
    _measure(cfg, 2.0)  # rounds 04:00 .. 05:30, an upload after each
    store = SiteStore.open_existing(cfg.storage.path)
    with Central.connect(central_url) as central:
        assert _count(central, "observations") == 16
        assert _count(central, "ingest_log") >= 4
    assert store.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 0
    health = store.query("SELECT ok, detail FROM health WHERE component = 'sync'")[0]
    assert health["ok"] == 1 and "remaining 0" in health["detail"]
    store.close()


def test_daemon_keeps_measuring_while_the_central_database_is_down(site_cfg):
    cfg = _with_sync(
        site_cfg, target="postgresql://site:secret@127.0.0.1:1/campaign", interval_min=30
    )
    _measure(cfg, 2.0)
    store = SiteStore.open_existing(cfg.storage.path)
    statuses = store.query("SELECT status, count(*) AS n FROM observations GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"done": 16}
    assert store.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 16  # kept for later
    alarms = store.query("SELECT message FROM events WHERE kind = 'sync_failed'")
    assert len(alarms) == 1  # one alarm per outage, retries back off quietly
    assert "secret" not in alarms[0]["message"] and "***" in alarms[0]["message"]
    health = store.query("SELECT ok FROM health WHERE component = 'sync'")[0]
    assert health["ok"] == 0
    store.close()


def test_a_flux_in_the_wrong_unit_is_refused_with_a_message(central_url, site_cfg):
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    with store.transaction() as conn:
        conn.execute("UPDATE fluxes SET flux_unit = 'mg m-2 h-1' WHERE rowid = 1")
    with _central(central_url) as central:
        _register(central, site_cfg)
        with pytest.raises(SyncError, match=r"co2 flux in 'mg m-2 h-1'; chamberd stores co2"):
            _upload(store, central, site_cfg)
        assert _count(central, "observations") == 0  # the batch is not half-written
    assert store.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 4
    store.close()


def test_site_clock_skew_is_flagged_on_the_batch(postgres_url, site_cfg):
    """The site's clock reading travels with each batch; the server's clock judges it."""
    _measure(site_cfg, 0.5)
    store = SiteStore.open_existing(site_cfg.storage.path)
    with _central(postgres_url) as central:
        _register(central, site_cfg)
        server_now = central.now_utc()
        fast = FakeClock(start=server_now + dt.timedelta(minutes=10))  # 10 min ahead
        summary = _upload(store, central, site_cfg, clock=fast, max_skew_s=120)
        assert summary.skew_flagged == 1 and summary.sent == 4
        log = central.query("SELECT skew_s, skew_flagged, detail FROM ingest_log")[0]
        assert log["skew_flagged"] == 1 and 590 < log["skew_s"] < 610
        assert "site clock +6" in log["detail"]
        # device time orders nothing: the observations are stored as measured
        begins = central.query("SELECT count(*) AS n FROM observations")[0]["n"]
        assert begins == 4
    store.close()
