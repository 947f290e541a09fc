"""Benchmark of the network sync: a month's catch-up into PostgreSQL, and COSORE imports.

``catch-up``
    A site that was offline for 30 days: 16 chambers at 30-minute rounds (23,040
    observations with 1 Hz raw traces of 150 samples each, about 3.5 million samples, two
    fluxes each) waiting in its outbox. The uploader sends it all to an empty PostgreSQL
    database in batches (``chamberd sync``'s code path) and is timed: observations/s and
    samples/s. Baseline in the same run: the same rows written with bare ``COPY`` (the
    fastest PostgreSQL can take them), so the ratio shows the uploader's own cost.
``cosore``
    ``chamberd import --format cosore`` of the two COSORE data sets in shared/data into an
    empty PostgreSQL database: observations/s.

The site database is synthetic (generated straight into the site schema, not measured by the
daemon: that would take a month) but has the daemon's layout and sizes.

    python benchmarks/bench_sync.py                      # postgresql://postgres@127.0.0.1/test
    python benchmarks/bench_sync.py --days 3 --json      # quicker

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import psycopg

from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths
from chamberd.network_sync.sync import register_site, upload

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 150  # closing, dead band and observing at 1 Hz
CHAMBERS = 16
START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_site(path: Path, days: int, seed: int = 1) -> tuple[int, int]:
    """A site database with ``days`` of observations waiting in the outbox."""
    rng = random.Random(seed)
    store = SiteStore(path, site_id="bench-site")
    conn = store.db.conn
    n_obs = n_samples = 0
    with store.transaction():
        for chamber in range(CHAMBERS):
            conn.execute(
                "INSERT INTO chambers (id, label, analyser, enabled, updated_at) "
                "VALUES (?, ?, 'irga', 1, ?)",
                (f"C{chamber + 1:02d}", f"collar {chamber + 1}", _iso(START)),
            )
    for day in range(days):
        observations, fluxes, samples, outbox = [], [], [], []
        for slot in range(48):
            round_start = START + dt.timedelta(days=day, minutes=30 * slot)
            for chamber in range(CHAMBERS):
                begin = round_start + dt.timedelta(seconds=100 * chamber)
                uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                observations.append(
                    (
                        uuid,
                        "bench-site",
                        f"C{chamber + 1:02d}",
                        None,
                        "done",
                        None,
                        _iso(begin),
                        _iso(begin - dt.timedelta(seconds=30)),
                        _iso(begin),
                        _iso(begin + dt.timedelta(seconds=3)),
                        _iso(begin + dt.timedelta(seconds=3)),
                        _iso(begin + dt.timedelta(seconds=23)),
                        _iso(begin + dt.timedelta(seconds=123)),
                        _iso(begin + dt.timedelta(seconds=126)),
                        _iso(begin + dt.timedelta(seconds=126)),
                        _iso(begin + dt.timedelta(seconds=156)),
                        20.0,
                        120.0,
                        317.8,
                        5020.0,
                        2.0,
                        "2026-01-01",
                        15.0,
                        25.0,
                        18.0,
                        99.5,
                        "irga",
                        "LI-850",
                        "SIM",
                        None,
                        "0123456789abcdef",
                        "0.1.0",
                        "Asia/Shanghai",
                    )
                )
                flux = rng.uniform(0.5, 6.0)
                for model, value, selected in (("linear", 0.8 * flux, 0), ("exponential", flux, 1)):
                    fluxes.append(
                        (
                            uuid,
                            "co2",
                            model,
                            value,
                            0.02,
                            "umol m-2 s-1",
                            0.998,
                            0.01,
                            100,
                            20.0,
                            120.0,
                            None,
                            None,
                            None,
                            selected,
                            None,
                            "",
                            "site-1",
                        )
                    )
                c = 420.0
                for k in range(SAMPLES):
                    elapsed = k - 30.0
                    c += 0.01 * flux if elapsed > 0 else 0.0
                    samples.append(
                        (
                            uuid,
                            k,
                            _iso(begin + dt.timedelta(seconds=elapsed)),
                            elapsed,
                            "observing"
                            if elapsed >= 20
                            else ("deadband" if elapsed >= 0 else "closing"),
                            c,
                            12.0,
                            35.0,
                            99.5,
                            None,
                            None,
                        )
                    )
                outbox.append((uuid, _iso(begin + dt.timedelta(seconds=156))))
        with store.transaction():
            conn.executemany(f"INSERT INTO observations VALUES ({_marks(33)})", observations)
            conn.executemany(f"INSERT INTO fluxes VALUES ({_marks(18)})", fluxes)
            conn.executemany(f"INSERT INTO samples VALUES ({_marks(11)})", samples)
            conn.executemany(
                "INSERT INTO outbox (observation_uuid, created_at) VALUES (?, ?)", outbox
            )
        n_obs += len(observations)
        n_samples += len(samples)
    store.close()
    return n_obs, n_samples


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


class Database:
    """A fresh PostgreSQL database for one measurement, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"chamberd_bench_{os.getpid()}_{uuidlib.uuid4().hex[:6]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def drop(self) -> None:
        """Drop the database, then its campaign's roles (roles outlive databases)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass('campaign')").fetchone()
            campaign = row[0] and conn.execute("SELECT campaign_id FROM campaign").fetchone()[0]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            if campaign:
                for (role,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                    (f"chamberd\\_{campaign}\\_%",),
                ).fetchall():
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _prepare(central: Central) -> None:
    """The schema, and the benchmark site registered as a site's first sync would."""
    central.migrate()
    register_site(
        central, site_id="bench-site", system_id="auto", time_zone="Asia/Shanghai", at=_iso(START)
    )


def catch_up(site_db: Path, admin_url: str, batch_size: int) -> dict[str, float]:
    db = Database(admin_url)
    try:
        store = SiteStore.open_existing(site_db)
        with Central.connect(db.url) as central:
            _prepare(central)
            started = time.perf_counter()
            summary = upload(
                store, central, site_id="bench-site", system_id="auto", batch_size=batch_size
            )
            seconds = time.perf_counter() - started
            samples = central.query("SELECT count(*) AS n FROM samples")[0]["n"]
        store.close()
    finally:
        db.drop()
    return {
        "seconds": seconds,
        "observations": summary.sent,
        "samples": samples,
        "batches": summary.batches,
    }


def copy_baseline(site_db: Path, admin_url: str) -> float:
    """Bare COPY of the same observations, fluxes and samples into the same schema."""
    import sqlite3

    db = Database(admin_url)
    try:
        with Central.connect(db.url) as central:
            _prepare(central)
        src = sqlite3.connect(site_db)
        started = time.perf_counter()
        with psycopg.connect(db.url) as conn, conn.cursor() as cur:
            with cur.copy(
                "COPY observations (uuid, site_id, system_id, chamber, begin_utc, status, "
                "content_hash, received_at) FROM STDIN"
            ) as copy:
                for uuid, chamber, begin in src.execute(
                    "SELECT uuid, chamber, started_at FROM observations"
                ):
                    copy.write_row((uuid, "bench-site", "auto", chamber, begin, "done", "h", begin))
            with cur.copy(
                "COPY fluxes (site_id, observation_uuid, gas, model, processing_version, flux, "
                "flux_unit) FROM STDIN"
            ) as copy:
                for row in src.execute(
                    "SELECT observation_uuid, gas, model, processing_version, flux, flux_unit "
                    "FROM fluxes"
                ):
                    copy.write_row(("bench-site", *row))
            with cur.copy(
                "COPY samples (site_id, observation_uuid, seq, time_utc, elapsed_s, phase, "
                "co2_umol_mol, h2o_mmol_mol, cell_temperature_degc, cell_pressure_kpa) FROM STDIN"
            ) as copy:
                for row in src.execute(
                    "SELECT observation_uuid, seq, time, elapsed_s, phase, co2_umol_mol, "
                    "h2o_mmol_mol, cell_temperature_degc, cell_pressure_kpa FROM samples"
                ):
                    copy.write_row(("bench-site", *row))
            conn.commit()
        seconds = time.perf_counter() - started
        src.close()
    finally:
        db.drop()
    return seconds


def cosore(admin_url: str, data: Path) -> dict[str, float]:
    db = Database(admin_url)
    try:
        with Central.connect(db.url) as central:
            central.migrate()
            folders = sorted(p for p in (data / "cosore").iterdir() if p.is_dir())
            started = time.perf_counter()
            report = import_paths(central, folders, site_id="YMS", system_id="cosore", fmt="cosore")
            seconds = time.perf_counter() - started
    finally:
        db.drop()
    totals = report.totals()
    return {
        "seconds": seconds,
        "observations": totals["sent"],
        "conflicts": totals["conflicts"],
        "rejected": totals["rejected"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an admin URL: fresh databases are created beside it",
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="chamberd-bench-sync-"))
    site_db = folder / "site.db"
    made = time.perf_counter()
    n_obs, n_samples = make_site(site_db, args.days)
    report: dict[str, object] = {
        "site": {
            "days": args.days,
            "observations": n_obs,
            "samples": n_samples,
            "generated_s": round(time.perf_counter() - made, 1),
        },
    }
    up = catch_up(site_db, args.target, args.batch_size)
    baseline = copy_baseline(site_db, args.target)
    report["catch_up"] = {
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in up.items()},
        "observations_per_s": round(up["observations"] / up["seconds"]),
        "samples_per_s": round(up["samples"] / up["seconds"]),
        "copy_baseline_s": round(baseline, 2),
        "ratio_to_copy": round(up["seconds"] / baseline, 2),
    }
    data = Path(args.data)
    if (data / "cosore").is_dir():
        co = cosore(args.target, data)
        report["cosore"] = {
            **co,
            "seconds": round(co["seconds"], 2),
            "observations_per_s": round(co["observations"] / co["seconds"]),
        }
    if args.json:
        print(json.dumps(report))
    else:
        site = report["site"]
        c = report["catch_up"]
        print(
            f"site: {site['days']} days, {site['observations']} observations, "
            f"{site['samples']} samples"
        )
        print(
            f"catch-up into PostgreSQL: {c['seconds']} s ({c['observations_per_s']} "
            f"observations/s, {c['samples_per_s']} samples/s; bare COPY {c['copy_baseline_s']} s, "
            f"ratio {c['ratio_to_copy']})"
        )
        if "cosore" in report:
            co = report["cosore"]
            print(
                f"COSORE import: {co['observations']} observations in {co['seconds']} s "
                f"({co['observations_per_s']}/s), {co['conflicts']} conflicts"
            )
    return 0 if not math.isnan(float(up["seconds"])) else 1


if __name__ == "__main__":
    sys.exit(main())
