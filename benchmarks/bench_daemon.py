"""Benchmark of the site daemon: CPU, memory and sample timing.

Three parts, each in its own process so peak memory is the daemon's alone:

``day``
    A simulated day (48 rounds) of 16 and 64 chambers (eight per analyser, the groups in
    parallel) in virtual time with the in-memory hardware: the schedule, the cycles, the
    store (WAL, synchronous=FULL) and the fitting are the production code. CPU seconds
    per simulated day give the share of one core the daemon's own work needs; RSS after
    every round shows whether memory grows with the number of observations.
``wire``
    The same sites over the real protocols (LI-850 XML over TCP, Modbus RTU frames over
    TCP) against ``chamberd sim`` in another process, at two speed factors. CPU per real
    second is ``work * speed + idle`` (reader threads and polls cost per real second,
    the cycles per simulated second), so two speeds give both terms and their sum is the
    share of one core at real time.
``real time``
    The same sites over the wire at speed 1 for a few minutes from a minute before a round:
    the share of one core measured directly while measuring.
``jitter``
    Real time (speed 1): the spacing of the 1 Hz samples stamped by the daemon, against
    the simulator in another process, while the daemon writes and fits.

    python benchmarks/bench_daemon.py              # everything (about 20 minutes)
    python benchmarks/bench_daemon.py --quick      # shorter runs
    python benchmarks/bench_daemon.py --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIM_SITE = ROOT / "controller" / "examples" / "sim-site.toml"
START = dt.datetime(2026, 7, 1, 15, 59, 0, tzinfo=dt.UTC)  # 23:59 at the site
PER_GROUP = 8


def site_data(n: int, db: Path, **cycle: float) -> dict[str, Any]:
    """The bundled simulated site widened to ``n`` chambers, eight per analyser."""
    import tomllib

    data = tomllib.loads(SIM_SITE.read_text(encoding="utf-8"))
    base = data["chambers"]
    groups = math.ceil(n / PER_GROUP)
    data["analysers"] = [
        {"id": f"irga{g + 1}", "protocol": "li850", "port": f"sim://irga{g + 1}"}
        for g in range(groups)
    ]
    data["modbus"] = [
        {"id": f"relays{g + 1}", "framing": "rtu", "port": "sim://relays", "device_id": 10 + g}
        for g in range(groups)
    ] + [m for m in data["modbus"] if m["id"] != "relays"]
    data["pump"] = {"coil": {"device": "relays1", "coil": 15}, "mode": "always"}
    chambers = []
    for i in range(n):
        g, k = divmod(i, PER_GROUP)
        chamber = dict(base[i % len(base)])
        chamber.update(
            id=f"C{i + 1:02d}",
            label=f"collar {i + 1}",
            analyser=f"irga{g + 1}",
            lid={"device": f"relays{g + 1}", "coil": k},
            closed_switch={"device": f"relays{g + 1}", "input": k},
            open_switch={"device": f"relays{g + 1}", "input": 8 + k},
        )
        chambers.append(chamber)
    data["chambers"] = chambers
    aux = []
    for sensor in data["aux"]:
        if sensor.get("chamber") in {"C1", "C2"}:
            sensor = {**sensor, "chamber": f"C{int(sensor['chamber'][1:]):02d}"}
        elif "chamber" in sensor:
            continue
        aux.append(sensor)
    data["aux"] = aux
    data["storage"] = {"path": str(db)}
    data["cycle"] = {**data["cycle"], **cycle}
    data["schedule"] = {"interval_min": 30, "misfire_grace_s": 120}
    return data


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- part 1: a simulated day in virtual time ------------------------------------------------


def run_day(n: int, folder: Path) -> dict[str, Any]:
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import FakeClock
    from chamberd.controller.config import parse_config
    from chamberd.controller.sim.site import SimulatedSite

    data = site_data(n, folder / f"day-{n}.db")
    for analyser in data["analysers"]:
        analyser["protocol"] = "memory"
    cfg = parse_config(data, source=f"{n}-chamber site")
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    rss: list[float] = []
    run_round = site.daemon.run_round

    def measured_round(scheduled_at: dt.datetime) -> Any:
        result = run_round(scheduled_at)
        rss.append(_rss_mb())
        return result

    site.daemon.run_round = measured_round  # type: ignore[method-assign]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    site.daemon.run(until=START + dt.timedelta(days=1))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    site.daemon.shutdown("benchmark")
    site.close()
    with sqlite3.connect(cfg.storage.path) as con:
        done = con.execute("SELECT count(*) FROM observations WHERE status = 'done'").fetchone()[0]
        samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    size_mb = Path(cfg.storage.path).stat().st_size / 2**20
    # memory growth: RSS from the 6th round (caches warm) to the last, per observation
    settled = rss[5:] or rss
    per_obs_kb = (settled[-1] - settled[0]) * 1024 / max(1, (len(settled) - 1) * n)
    return {
        "chambers": n,
        "analysers": math.ceil(n / PER_GROUP),
        "rounds": len(rss),
        "observations_done": done,
        "samples": samples,
        "cpu_s_per_day": round(cpu, 2),
        "core_pct_at_real_time": round(100 * cpu / 86400, 4),
        "wall_s": round(wall, 1),
        "rss_mb_round_6": round(settled[0], 1),
        "rss_mb_last_round": round(settled[-1], 1),
        "rss_growth_kb_per_observation": round(per_obs_kb, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
        "database_mb": round(size_mb, 1),
    }


# --- part 2: the real protocols at two speeds ----------------------------------------------


def _start_sim(data: dict[str, Any], folder: Path, speed: float) -> tuple[Any, dict, Path]:
    from chamberd.controller.config import parse_config, to_toml

    config = folder / "sim-site.toml"
    config.write_text(to_toml(parse_config(data)), encoding="utf-8")
    daemon_config = folder / "daemon-site.toml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chamberd.controller.cli",
            "sim",
            "--config",
            str(config),
            "--speed",
            str(speed),
            "--json",
            "--daemon-config",
            str(daemon_config),
            "--start",
            START.isoformat(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    endpoints = json.loads(proc.stdout.readline())
    return proc, endpoints, daemon_config


def _stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wire(n: int, speed: float, real_s: float, folder: Path) -> dict[str, Any]:
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import ScaledClock
    from chamberd.controller.config import load_config

    data = site_data(n, folder / f"wire-{n}-{speed:g}.db")
    data["sim"]["speed"] = speed
    sim, endpoints, daemon_config = _start_sim(data, folder, speed)
    try:
        clock = ScaledClock.from_timeline(endpoints["timeline"], speed)
        cfg = load_config(daemon_config, environ={})
        site = build_site(cfg, clock=clock)
        site.daemon.startup()
        cpu0, real0, sim0 = time.process_time(), time.perf_counter(), clock.monotonic()
        timer = threading.Timer(real_s, site.daemon.stop_event.set)  # mid-round is fine
        timer.start()
        site.daemon.run()
        cpu = time.process_time() - cpu0
        real = time.perf_counter() - real0
        simulated = clock.monotonic() - sim0
        site.daemon.shutdown("benchmark")
        site.close()
    finally:
        _stop(sim)
    with sqlite3.connect(cfg.storage.path) as con:
        done = con.execute("SELECT count(*) FROM observations WHERE status = 'done'").fetchone()[0]
    return {
        "chambers": n,
        "speed": speed,
        "real_s": round(real, 1),
        "simulated_s": round(simulated, 1),
        "observations_done": done,
        "cpu_s": round(cpu, 2),
        "cpu_per_real_s": cpu / real,
        "peak_rss_mb": round(_peak_mb(), 1),
    }


# --- part 3: sample timing in real time ----------------------------------------------------


def run_jitter(real_s: float, folder: Path) -> dict[str, Any]:
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import ScaledClock
    from chamberd.controller.config import load_config

    data = site_data(4, folder / "jitter.db", prepurge_s=3, postpurge_s=3, dead_band_s=5)
    data["cycle"]["observation_s"] = 40
    data["schedule"] = {"interval_min": 5, "misfire_grace_s": 60}
    sim, endpoints, daemon_config = _start_sim(data, folder, 1.0)
    try:
        clock = ScaledClock.from_timeline(endpoints["timeline"], 1.0)
        cfg = load_config(daemon_config, environ={})
        site = build_site(cfg, clock=clock)
        site.daemon.startup()
        # run the round now, then stop after real_s seconds
        deadline = time.perf_counter() + real_s
        site.daemon.run_round(clock.now())
        while time.perf_counter() < deadline:
            site.daemon.run_round(clock.now() + dt.timedelta(microseconds=1))
        site.daemon.shutdown("benchmark")
        site.close()
    finally:
        _stop(sim)
    deviations: list[float] = []
    with sqlite3.connect(cfg.storage.path) as con:
        for (uuid,) in con.execute("SELECT uuid FROM observations WHERE status = 'done'"):
            times = [
                dt.datetime.fromisoformat(t).timestamp()
                for (t,) in con.execute(
                    "SELECT time FROM samples WHERE observation_uuid = ? ORDER BY seq", (uuid,)
                )
            ]
            deviations += [abs((b - a) - 1.0) * 1000 for a, b in itertools.pairwise(times)]
    deviations.sort()
    q = lambda p: deviations[min(len(deviations) - 1, int(p * len(deviations)))]  # noqa: E731
    return {
        "samples": len(deviations) + 1,
        "median_ms": round(statistics.median(deviations), 2),
        "p99_ms": round(q(0.99), 2),
        "max_ms": round(deviations[-1], 2),
    }


# --- driver ---------------------------------------------------------------------------------


def _child(part: str, args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", part, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter wire and jitter runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="chamberd-bench-"))
    if args.child:
        part, *rest = args.child
        if part == "day":
            result = run_day(int(rest[0]), folder)
        elif part == "wire":
            result = run_wire(int(rest[0]), float(rest[1]), float(rest[2]), folder)
        else:
            result = run_jitter(float(rest[0]), folder)
        print(json.dumps(result))
        return 0

    real_s = 25.0 if args.quick else 60.0
    report: dict[str, Any] = {"day": [], "wire": [], "jitter": None}
    for n in (16, 64):
        report["day"].append(_child("day", [str(n)]))
        if not args.json:
            print("day", json.dumps(report["day"][-1]), flush=True)
    for n in (16, 64):
        slow, fast = (_child("wire", [str(n), str(s), str(real_s)]) for s in (10.0, 40.0))
        work = (fast["cpu_per_real_s"] - slow["cpu_per_real_s"]) / (fast["speed"] - slow["speed"])
        idle = max(0.0, slow["cpu_per_real_s"] - work * slow["speed"])
        entry = {
            "chambers": n,
            "runs": [slow, fast],
            "work_cpu_per_simulated_s": round(work, 5),
            "idle_cpu_per_real_s": round(idle, 5),
            "core_pct_at_real_time": round(100 * (work + idle), 3),
        }
        report["wire"].append(entry)
        if not args.json:
            print("wire", json.dumps(entry), flush=True)
    # the direct measurement: real time, from a minute before the first round into it
    live = 150.0 if args.quick else 300.0
    report["real_time"] = [_child("wire", [str(n), "1", str(live)]) for n in (16, 64)]
    if not args.json:
        for entry in report["real_time"]:
            print("real time", json.dumps(entry), flush=True)
    report["jitter"] = _child("jitter", [str(90.0 if args.quick else 240.0)])
    if args.json:
        print(json.dumps(report))
    else:
        print("jitter", json.dumps(report["jitter"]))
        print()
        for d, w, r in zip(report["day"], report["wire"], report["real_time"], strict=True):
            print(
                f"{d['chambers']:3d} chambers: {d['cpu_s_per_day']:7.1f} CPU s per simulated day "
                f"({d['core_pct_at_real_time']:.3f} % of a core); over the wire "
                f"{w['core_pct_at_real_time']:.2f} % of a core by the two-speed estimate, "
                f"{100 * r['cpu_per_real_s']:.2f} % measured in real time "
                f"({r['observations_done']} observations); peak RSS "
                f"{d['peak_rss_mb']:.0f} MB, growth {d['rss_growth_kb_per_observation']:.2f} "
                "KB per observation"
            )
        j = report["jitter"]
        print(
            f"1 Hz sample spacing, real time: |dt - 1 s| median {j['median_ms']} ms, "
            f"p99 {j['p99_ms']} ms, max {j['max_ms']} ms over {j['samples']} samples"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
