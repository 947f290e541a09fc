"""Fixtures of the network tests: a measured site to upload."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import tomllib
from pathlib import Path

import pytest

from chamberd.controller.config import parse_config, to_toml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def measured_site(tmp_path_factory):
    """The config of a simulated site whose database holds four observations in its outbox
    (measured once per module; copy it with the ``site_copy`` fixture before changing it)."""
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import FakeClock
    from chamberd.controller.sim.site import SimulatedSite

    folder = tmp_path_factory.mktemp("site")
    data = tomllib.loads((ROOT / "controller/examples/sim-site.toml").read_text())
    for analyser in data["analysers"]:
        analyser["protocol"] = "memory"
    data["storage"] = {"path": str(folder / "site.db")}
    data["sync"] = {"system": "auto"}
    data["cycle"] = {
        **data["cycle"],
        "prepurge_s": 5,
        "dead_band_s": 10,
        "observation_s": 60,
        "postpurge_s": 5,
    }
    cfg = parse_config(data)
    start = dt.datetime(2026, 7, 1, 3, 59, 50, tzinfo=dt.UTC)
    clock = FakeClock(start=start)
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    site.daemon.run(until=start + dt.timedelta(minutes=30))
    site.daemon.shutdown("end")
    site.close()
    return cfg


@pytest.fixture
def site_copy():
    """``site_copy(cfg, folder, site_id=None)``: see :func:`copy_site`."""
    return copy_site


@pytest.fixture
def outbox():
    """``outbox(db)``: the number of outbox rows of a site database."""
    return count_outbox


def copy_site(cfg, folder: Path, site_id: str | None = None) -> tuple[Path, Path]:
    """The measured site's database and config copied into ``folder`` (optionally as another
    site); returns (config path, database path)."""
    db = folder / "site.db"
    shutil.copy(cfg.storage.path, db)
    if site_id:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE meta SET value = ? WHERE key = 'site'", (site_id,))
    data = tomllib.loads(to_toml(cfg))
    data["storage"]["path"] = str(db)
    if site_id:
        data["site"]["id"] = site_id
    config = folder / "site.toml"
    config.write_text(to_toml(parse_config(data)), encoding="utf-8")
    return config, db


def count_outbox(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM outbox").fetchone()[0]
