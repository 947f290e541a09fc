"""Benchmark: the daemon's CPU with the web page open and refreshing, against without it.

A field computer runs the daemon; ``chamberd serve`` must not slow it down. Three processes,
as in the field: ``chamberd sim`` (the simulated site, real protocols on 127.0.0.1),
``chamberd run`` (the daemon, on the simulator's clock at ``--speed`` times real time so
that it measures most of the time) and, in the "open" windows, ``chamberd serve`` with a
client that loads the page every ``--refresh-s`` seconds, as the page's own refresh does
(10 s by default; a lower value stands for several open tabs). The daemon's CPU time is
read from ``/proc/<pid>/stat`` over windows of one round interval each (15 simulated
minutes: one round of four 120 s closures and the wait for the next, so every window holds
the same work), closed and open alternately (the order swapped every pair), and the median
of the runs is reported with the ratio open / closed, the server's own CPU and the page's
latency.

    python benchmarks/bench_serve.py                 # 3 pairs of 30 s windows (~3.5 min)
    python benchmarks/bench_serve.py --runs 5 --refresh-s 1 --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

from _machine import state  # beside this file (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
SIM_SITE = ROOT / "controller" / "examples" / "sim-site.toml"
START = "2026-07-01T03:59:30Z"  # half a minute before a round (11:59:30 at the site)
INTERVAL_MIN = 15
TICK = os.sysconf("SC_CLK_TCK")
_pause = threading.Event().wait  # a real-time wait (the benchmark is not chamberd code)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _chamberd(*args: str, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "chamberd.controller.cli", *args], **kw)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(folder: Path, speed: float) -> Path:
    from chamberd.controller.config import parse_config, to_toml

    data = tomllib.loads(SIM_SITE.read_text(encoding="utf-8"))
    data["storage"] = {"path": str(folder / "site.db")}
    data["schedule"] = {
        **data.get("schedule", {}),
        "interval_min": INTERVAL_MIN,
        "misfire_grace_s": 120,
    }
    data["sim"] = {**data.get("sim", {}), "speed": speed}
    config = folder / "sim-site.toml"
    config.write_text(to_toml(parse_config(data)), encoding="utf-8")
    return config


def _page_loads(url: str, every_s: float, stop: threading.Event, latencies: list) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        latencies.append(time.perf_counter() - began)
        stop.wait(every_s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="chamberd-bench-serve-"))
    config = _site(folder, args.speed)
    daemon_config = folder / "daemon.toml"
    sim = _chamberd(
        "sim",
        "--config",
        str(config),
        "--json",
        "--start",
        START,
        "--daemon-config",
        str(daemon_config),
        stdout=subprocess.PIPE,
        text=True,
    )
    procs = [sim]
    try:
        assert sim.stdout is not None
        timeline = json.loads(sim.stdout.readline())["timeline"]
        clock = ["--speed", str(args.speed), "--timeline", timeline]
        daemon = _chamberd("run", str(daemon_config), *clock, stderr=subprocess.DEVNULL)
        procs.append(daemon)
        window_s = INTERVAL_MIN * 60 / args.speed  # one round and its wait
        _pause(args.warm_up_s)  # start-up, the first round begun
        closed: list[float] = []
        opened: list[float] = []
        server_share: list[float] = []
        latencies: list[float] = []
        for i in range(args.runs):
            for mode in ("closed", "open") if i % 2 == 0 else ("open", "closed"):
                server = loader = None
                stop = threading.Event()
                if mode == "open":
                    port = _free_port()
                    server = _chamberd(
                        "serve",
                        str(daemon_config),
                        "--bind",
                        f"127.0.0.1:{port}",
                        *clock,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    procs.append(server)
                    assert server.stdout is not None
                    server.stdout.readline()  # "serving ... at ..."
                    url = f"http://127.0.0.1:{port}/"
                    loader = threading.Thread(
                        target=_page_loads, args=(url, args.refresh_s, stop, latencies)
                    )
                    loader.start()
                    server_cpu0 = cpu_s(server.pid)
                cpu0, real0 = cpu_s(daemon.pid), time.perf_counter()
                _pause(window_s)
                share = (cpu_s(daemon.pid) - cpu0) / (time.perf_counter() - real0)
                (opened if mode == "open" else closed).append(share)
                if server is not None and loader is not None:
                    elapsed = time.perf_counter() - real0
                    server_share.append((cpu_s(server.pid) - server_cpu0) / elapsed)
                    stop.set()
                    loader.join()
                    _stop(server)
                    procs.remove(server)
                if not args.json:
                    print(
                        f"run {i + 1} {mode:<6} daemon {100 * share:6.2f} % of a core", flush=True
                    )
        if daemon.poll() is not None:
            raise RuntimeError("the daemon stopped during the benchmark")
    finally:
        for proc in reversed(procs):
            _stop(proc)
    median_closed, median_open = statistics.median(closed), statistics.median(opened)
    return {
        "speed": args.speed,
        "runs": args.runs,
        "window_s": round(window_s, 1),
        "refresh_s": args.refresh_s,
        "daemon_core_pct_closed": [round(100 * v, 3) for v in closed],
        "daemon_core_pct_open": [round(100 * v, 3) for v in opened],
        "median_closed_pct": round(100 * median_closed, 3),
        "median_open_pct": round(100 * median_open, 3),
        "ratio_open_to_closed": round(median_open / median_closed, 3) if median_closed else None,
        "server_core_pct_median": round(100 * statistics.median(server_share), 3),
        "page_loads": len(latencies),
        "page_latency_ms_median": round(1000 * statistics.median(latencies), 1),
        "machine": state(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="pairs of windows (default 3)")
    parser.add_argument("--refresh-s", type=float, default=10.0, help="seconds between loads")
    parser.add_argument("--speed", type=float, default=30.0, help="the site's clock speed")
    parser.add_argument("--warm-up-s", type=float, default=5.0, help="before the first window")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"daemon CPU, median of {result['runs']} windows of {result['window_s']:g} s at "
            f"{result['speed']:g}x: {result['median_closed_pct']:.2f} % of a core without the "
            f"page, {result['median_open_pct']:.2f} % with it open and loaded every "
            f"{result['refresh_s']:g} s: ratio {result['ratio_open_to_closed']}; the server "
            f"itself {result['server_core_pct_median']:.2f} % of a core; page latency median "
            f"{result['page_latency_ms_median']} ms over {result['page_loads']} loads"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
