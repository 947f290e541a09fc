"""Benchmark of the site daemon with three analysers in one loop (issue 13).

The demo's site (four chambers) with an LI-850, an LI-7810 and an LI-7820 in its loop,
against the same site with the LI-850 alone, each part in its own process (peak memory is
the daemon's alone):

``day``
    A simulated day (48 rounds) in virtual time with in-memory analysers (the laser ones
    report their configured species): CPU seconds per simulated day and peak RSS.
``wire``
    The real protocols: LI-850 XML over TCP and the LI-7810/7820 over MQTT (the broker on
    127.0.0.1:1883), against ``chamberd sim`` in another process, for ``--real`` seconds at
    ``--speed``: the daemon's CPU per real second (``work x speed + idle``: an upper bound of
    the share of one core at real time) and its peak RSS.

    python benchmarks/bench_tracegas.py              # both (about four minutes)
    python benchmarks/bench_tracegas.py --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_daemon import _peak_mb, _start_sim, _stop

ROOT = Path(__file__).resolve().parents[1]
SIM_SITE = ROOT / "controller" / "examples" / "sim-site.toml"
START = dt.datetime(2026, 7, 1, 15, 59, 0, tzinfo=dt.UTC)


def site_data(three: bool, db: Path, *, memory: bool) -> dict[str, Any]:
    from chamberd.controller.config import load_config
    from chamberd.controller.demo import _with_gases

    cfg = load_config(SIM_SITE, environ={}, overrides=[f'storage.path="{db}"'])
    if three:
        cfg = _with_gases(cfg, ("co2", "ch4", "n2o"))
    data = cfg.model_dump(mode="python")
    data["calibration"] = {}
    data["sim"]["cylinders"] = {}
    data["modbus"] = [m for m in data["modbus"] if m["id"] != "gasvalves"]
    if memory:
        species = {"li7810": ["CH4_dry", "CO2_dry", "H2O"], "li7820": ["N2O_dry", "H2O"]}
        for a in data["analysers"]:
            if a["id"] in species:
                a.update(protocol="memory", port=f"sim://{a['id']}", species=species[a["id"]])
                a["topic_root"] = "licor/niobrara"
            else:
                a["protocol"] = "memory"
    return data


def run_day(three: bool, folder: Path) -> dict[str, Any]:
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import FakeClock
    from chamberd.controller.config import parse_config
    from chamberd.controller.sim.site import SimulatedSite

    db = folder / f"day-{int(three)}.db"
    cfg = parse_config(site_data(three, db, memory=True), source="bench")
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    site.daemon.run(until=START + dt.timedelta(days=1))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    site.daemon.shutdown("benchmark")
    site.close()
    with sqlite3.connect(db) as con:
        done = con.execute("SELECT count(*) FROM observations WHERE status = 'done'").fetchone()[0]
        samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
        fluxes = con.execute("SELECT count(*) FROM fluxes WHERE selected = 1").fetchone()[0]
    return {
        "analysers_in_loop": 3 if three else 1,
        "observations_done": done,
        "samples": samples,
        "selected_fluxes": fluxes,
        "cpu_s_per_day": round(cpu, 2),
        "core_pct_at_real_time": round(100 * cpu / 86400, 4),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "database_mb": round(db.stat().st_size / 2**20, 1),
    }


def run_wire(three: bool, speed: float, real_s: float, folder: Path) -> dict[str, Any]:
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import ScaledClock
    from chamberd.controller.config import load_config

    db = folder / f"wire-{int(three)}.db"
    data = site_data(three, db, memory=False)
    data["sim"]["speed"] = speed
    sim, endpoints, daemon_config = _start_sim(data, folder, speed)
    try:
        clock = ScaledClock.from_timeline(endpoints["timeline"], speed)
        cfg = load_config(daemon_config, environ={})
        site = build_site(cfg, clock=clock)
        site.daemon.startup()
        cpu0, real0 = time.process_time(), time.perf_counter()
        timer = threading.Timer(real_s, site.daemon.stop_event.set)
        timer.start()
        site.daemon.run()
        cpu, real = time.process_time() - cpu0, time.perf_counter() - real0
        site.daemon.shutdown("benchmark")
        site.close()
    finally:
        _stop(sim)
    with sqlite3.connect(db) as con:
        done = con.execute("SELECT count(*) FROM observations WHERE status = 'done'").fetchone()[0]
        per = dict(con.execute("SELECT analyser, count(*) FROM samples GROUP BY analyser"))
    return {
        "analysers_in_loop": 3 if three else 1,
        "speed": speed,
        "real_s": round(real, 1),
        "observations_done": done,
        "samples_per_analyser": per,
        "cpu_s": round(cpu, 2),
        "core_pct_per_real_s": round(100 * cpu / real, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--real", type=float, default=60.0, help="wire: real seconds")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        part, three = args.child[0], args.child[1] == "3"
        with tempfile.TemporaryDirectory() as tmp:
            if part == "day":
                result = run_day(three, Path(tmp))
            else:
                result = run_wire(three, float(args.child[2]), float(args.child[3]), Path(tmp))
        print(json.dumps(result))
        return 0
    report: dict[str, Any] = {"day": [], "wire": []}
    for n in ("1", "3"):
        report["day"].append(_child(["day", n]))
    for n in ("1", "3"):
        report["wire"].append(_child(["wire", n, str(args.speed), str(args.real)]))
    if args.json:
        print(json.dumps(report))
    else:
        for part, rows in report.items():
            print(part)
            for row in rows:
                print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
