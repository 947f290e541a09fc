"""The uploader killed with SIGKILL at random points (22 times) and PostgreSQL restarted
during a sync: afterwards central and site agree row for row, nothing lost or duplicated.

The server restarted is a private cluster of this test's own (``private_postgres``), never the
machine's shared one."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from chamberd.controller.app import build_site
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import parse_config, to_toml
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import Central

KILLS = 22
START = dt.datetime(2026, 7, 1, 15, 59, 50, tzinfo=dt.UTC)


def _site(tmp_path: Path):
    import tomllib

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "controller/examples/sim-site.toml").read_text())
    data["analysers"][0]["protocol"] = "memory"
    data["storage"] = {"path": str(tmp_path / "site.db")}
    data["cycle"] = {**data["cycle"], "prepurge_s": 5, "postpurge_s": 5}
    data["sync"] = {"system": "auto", "batch_size": 1}
    cfg = parse_config(data)
    clock = FakeClock(start=START)
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    site.daemon.run(until=START + dt.timedelta(hours=24))  # 48 rounds of 4 chambers
    site.daemon.shutdown("end")
    site.close()
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    return cfg, config


def _outbox(db) -> int:
    store = SiteStore.open_existing(db)
    try:
        return store.query("SELECT count(*) AS n FROM outbox")[0]["n"]
    finally:
        store.close()


def test_uploader_killed_and_server_restarted(tmp_path, private_postgres):
    postgres_url = private_postgres.url
    cfg, config = _site(tmp_path)
    with Central.connect(postgres_url) as central:
        central.migrate()
    command = [
        sys.executable,
        "-m",
        "chamberd.controller.cli",
        "sync",
        str(config),
        "--target",
        postgres_url,
        "--json",
    ]
    rng = random.Random(1130)
    outcomes = {"killed": 0, "finished": 0, "server_restarted": 0}
    i = 0
    while outcomes["killed"] < KILLS and i < 3 * KILLS:
        i += 1
        if _outbox(cfg.storage.path) == 0:  # everything sent: announce it all again (replays)
            store = SiteStore.open_existing(cfg.storage.path)
            with store.transaction() as conn:
                conn.execute(
                    "INSERT INTO outbox (observation_uuid, created_at) "
                    "SELECT uuid, ended_at FROM observations ORDER BY started_at"
                )
            store.close()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if i == 8:  # PostgreSQL restarts in the middle of a sync
            time.sleep(0.9)  # noqa: TID251 - real time: the uploader is a real process
            private_postgres.restart()
            outcomes["server_restarted"] += 1
            proc.wait(60)
            continue
        time.sleep(rng.uniform(0.3, 1.2))  # noqa: TID251
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            outcomes["killed"] += 1
        else:
            outcomes["finished"] += 1
        proc.wait(30)
    assert outcomes["killed"] >= KILLS and outcomes["server_restarted"] == 1, outcomes
    # a last, uninterrupted run
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _outbox(cfg.storage.path) == 0

    site = SiteStore.open_existing(cfg.storage.path)
    with psycopg.connect(postgres_url) as central:

        def rows(sql):
            return sorted(tuple(r) for r in central.execute(sql).fetchall())

        assert rows("SELECT uuid, chamber, status FROM observations") == sorted(
            (r["uuid"], r["chamber"], r["status"])
            for r in site.query("SELECT uuid, chamber, status FROM observations")
        )
        central_fluxes = rows(
            "SELECT observation_uuid, gas, model, round(flux::numeric, 9) FROM fluxes"
        )
        site_fluxes = sorted(
            (r["observation_uuid"], r["gas"], r["model"], round(r["flux"], 9))
            for r in site.query("SELECT * FROM fluxes")
        )
        assert [c[:3] for c in central_fluxes] == [s[:3] for s in site_fluxes]
        assert all(
            abs(float(c[3]) - s[3]) < 1e-8 for c, s in zip(central_fluxes, site_fluxes, strict=True)
        )
        assert rows("SELECT observation_uuid, count(*) FROM samples GROUP BY 1") == sorted(
            (r["observation_uuid"], r["n"])
            for r in site.query(
                "SELECT observation_uuid, count(*) AS n FROM samples GROUP BY observation_uuid"
            )
        )
        assert rows("SELECT max(revision) FROM observations") == [(1,)]  # replays: no revision
    site.close()
