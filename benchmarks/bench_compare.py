"""Benchmark of ``chamberd compare``: two years of two 16-chamber systems from PostgreSQL.

Two automated systems, ``A`` and ``B``, of one site measure 16 collars each every 30 minutes
for two years: 2 x 16 x 48 x 730 = 1,121,280 observations with one selected CO2 flux each
(flux = R10 Q10^((T - 10) / 10), a diel and seasonal soil temperature, a factor per collar,
5 % noise; system B reads 8 % low). They are generated inside the server
(``INSERT ... SELECT`` over ``generate_series``: no Python round trip) into an empty
PostgreSQL database, then compared with :func:`chamberd.network_sync.compare.compare`
exactly as ``chamberd compare --target URL --a BENCH/A --b BENCH/B`` does, on a read-only
connection, with 1,000 bootstrap resamples.

What is paired: the two *systems*, ``BENCH/A`` against ``BENCH/B``: each side is the mean of
its 16 collars per half-hourly round (35,040 rounds a side), paired nearest within 15
minutes (35,040 pairs). Every collar's observations are used as well: the within-system
baseline of each system pairs each of its 120 collar pairs (about 35,000 pairs each, 8.4
million pairs in all). So the whole 1.1 million observations are queried twice (the round
means and the baselines), and the statistics run on 35,040 pairs with the bootstrap and on
8.4 million pairs without.

Phases (from the ``progress`` messages of ``compare``): ``query`` (both selections),
``pairing``, ``statistics`` (agreement with 1,000 resamples), ``baselines`` (their queries,
240 pairings and per-collar-pair statistics), ``processing`` (the raw-trace check),
``temporal`` (Q10 and Lloyd-Taylor fits with 1,000 resamples, diel cycles, gap-filling,
sums, for both sides). For each: seconds and the peak resident memory of the process during
the phase (``VmHWM``, reset between phases through ``/proc/self/clear_refs``).

    python benchmarks/bench_compare.py                 # postgresql://postgres@127.0.0.1/test
    python benchmarks/bench_compare.py --days 60 --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid as uuidlib
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import state

from chamberd.network_sync.central import Central
from chamberd.network_sync.compare import compare
from chamberd.network_sync.sync import register_site

CHAMBERS = 16
SITE = "BENCH"
ZONE = "Asia/Shanghai"
START = "2024-01-01T00:00:00+00:00"


def _status(key: str) -> float:
    """A /proc/self/status value in MB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> None:
    """Reset the peak resident set (VmHWM) to the current one (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:  # pragma: no cover - not Linux, or not allowed
        pass


def generate(url: str, days: int, chambers: int) -> tuple[int, float]:
    """Two systems of ``chambers`` collars, half-hourly for ``days`` days, made by the server."""
    started = time.perf_counter()
    with Central.connect(url, mode="write") as central:
        for system in ("A", "B"):
            register_site(
                central,
                site_id=SITE,
                system_id=system,
                name="benchmark site",
                time_zone=ZONE,
                instrument="LI-8100A" if system == "A" else "LI-7810",
                geometry=[
                    {
                        "chamber": f"C{c + 1:02d}",
                        "since": "2020-01-01T00:00:00+00:00",
                        "area_cm2": 317.8,
                        "volume_cm3": 4076.0,
                        "offset_cm": 2.0,
                        "plot": f"plot{c // 4 + 1}",
                    }
                    for c in range(chambers)
                ],
                at=START,
            )
    rounds = days * 48
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        for system, factor, offset_s in (("A", 1.0, 0), ("B", 0.92, 50)):
            conn.execute(
                f"""
                INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, end_utc,
                    status, observation_s, area_cm2, volume_cm3, soil_temperature_degc,
                    soil_moisture_pct, content_hash, revision, received_at)
                SELECT md5('{system}' || r || '-' || c)::uuid::text, '{SITE}', '{system}',
                    'C' || lpad((c + 1)::text, 2, '0'),
                    t, t + interval '120 seconds', 'done', 120, 317.8, 4076.0,
                    12 + 8 * sin(2 * pi() * (r / 48.0 - 100) / 365.0)
                       + 4 * sin(2 * pi() * ((r % 48) / 48.0 - 0.375)),
                    25, md5(r || '-' || c), 1, now()
                FROM generate_series(0, {rounds - 1}) AS r,
                     generate_series(0, {chambers - 1}) AS c,
                     LATERAL (SELECT timestamptz '{START}' + r * interval '30 minutes'
                              + (c * 100 + {offset_s}) * interval '1 second' AS t) AS times
                """
            )
            conn.execute(
                f"""
                INSERT INTO fluxes (site_id, observation_uuid, gas, model, processing_version,
                    flux, flux_unit, flux_se, r2, n_points, selected, flags, revision)
                SELECT o.site_id, o.uuid, 'co2', 'exponential', 'site-1',
                    {factor} * 2.0 * power(2.0, (o.soil_temperature_degc - 10) / 10.0)
                      * (0.85 + 0.3 * (('x' || substr(md5(o.chamber), 1, 4))::bit(16)::int
                                       / 65535.0))
                      * (1 + 0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())),
                    'umol m-2 s-1', 0.05, 0.99, 100, 1, '', 1
                FROM observations o WHERE o.system_id = '{system}'
                """
            )
        conn.execute("ANALYZE observations")
        conn.execute("ANALYZE fluxes")
        n = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    return int(n), time.perf_counter() - started


_PHASES = (
    ("selecting", "query"),
    ("pairing", "pairing"),
    ("agreement", "statistics"),
    ("baseline", "baselines"),
    ("processing", "processing"),
    ("temperature", "temporal"),
)


def run(url: str, n_boot: int) -> tuple[dict[str, dict[str, float]], object]:
    phases: dict[str, dict[str, float]] = {}
    current: list[object] = ["setup", time.perf_counter()]  # connecting, importing

    def close_phase() -> None:
        name, since = current
        if name is not None:
            entry = phases.setdefault(str(name), {"seconds": 0.0, "peak_rss_mb": 0.0})
            entry["seconds"] += time.perf_counter() - float(since)
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], _status("VmHWM"))

    def progress(message: str) -> None:
        name = next((phase for key, phase in _PHASES if message.startswith(key)), None)
        print(f"  {time.perf_counter() - t0:7.2f} s  {message}", file=sys.stderr, flush=True)
        if name == current[0]:
            return
        close_phase()
        _reset_peak()
        current[0], current[1] = name, time.perf_counter()

    t0 = time.perf_counter()
    with Central.connect(url, mode="read") as central:
        result = compare(
            central, f"{SITE}/A", f"{SITE}/B", n_boot=n_boot, seed=1, progress=progress
        )
    close_phase()
    phases["total"] = {"seconds": time.perf_counter() - t0, "peak_rss_mb": max(
        p["peak_rss_mb"] for p in phases.values()
    )}  # fmt: skip
    return phases, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--chambers", type=int, default=CHAMBERS)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark database.")
    parser.add_argument("--existing", help="URL of a database a --keep run generated.")
    args = parser.parse_args()
    if args.existing:
        with psycopg.connect(args.existing) as conn:
            n = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        seconds = 0.0
        phases, result = run(args.existing, args.boot)
    else:
        name = f"chamberd_bench_compare_{uuidlib.uuid4().hex[:8]}"
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url = f"{args.url.rsplit('/', 1)[0]}/{name}"
        try:
            with Central.connect(url, mode="create") as central:
                central.migrate()
            n, seconds = generate(url, args.days, args.chambers)
            print(f"generated {n} observations in {seconds:.1f} s", file=sys.stderr)
            phases, result = run(url, args.boot)
        finally:
            if not args.keep:
                with psycopg.connect(args.url, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    d = result.as_dict()  # type: ignore[attr-defined]
    report = {
        "observations": n,
        "days": args.days,
        "chambers_per_system": args.chambers,
        "n_boot": args.boot,
        "pairs": d["n_pairs"],
        "baseline_pairs": sum(row["n_pairs"] for b in d["baselines"] for row in b["pairs"]),
        "relative_bias": d["relative_bias"],
        "relative_bias_ci": d["relative_bias_ci"],
        "phases": {k: {m: round(v, 2) for m, v in p.items()} for k, p in phases.items()},
        "generate_s": round(seconds, 1),
        "machine": state(),
        "pid": os.getpid(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{n} observations ({args.chambers} chambers x 2 systems x {args.days} days), "
        f"{report['pairs']} pairs of round means, {report['baseline_pairs']} baseline pairs, "
        f"{args.boot} resamples"
    )
    print(f"{'phase':<12}{'seconds':>10}{'peak RSS MB':>14}")
    for phase, values in report["phases"].items():
        print(f"{phase:<12}{values['seconds']:>10.2f}{values['peak_rss_mb']:>14.0f}")
    print(f"relative bias of B: {d['relative_bias']:.4f} {d['relative_bias_ci']}")


if __name__ == "__main__":
    main()
