"""``chamberd demo``: the real daemon against the simulated site, two rounds, a table.

The simulator (real LI-850 XML and Modbus on 127.0.0.1) and the daemon share one clock that
runs ``speed`` times faster than real time, started a few seconds before a round boundary;
rounds are 15 minutes apart, so two rounds of four 120 s closures take about half a minute.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .app import build_site, serve
from .clock import ScaledClock
from .config import load_config
from .plot import plot_observation
from .sim import start_hardware
from .store import parse_iso

__all__ = ["run_demo"]

START = dt.datetime(2026, 7, 1, 3, 59, 30, tzinfo=dt.UTC)  # 11:59:30 at the site (UTC+8)


def run_demo(
    *,
    database: str = "chamberd-demo.db",
    speed: float = 60.0,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _text: None)
    wall_start = time.perf_counter()
    db = Path(database).resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    example = resources.files("chamberd.controller.examples") / "sim-site.toml"
    with resources.as_file(example) as path:
        cfg = load_config(
            path,
            environ={},
            overrides=[
                f'storage.path="{db}"',
                "schedule.interval_min=15",
                "schedule.misfire_grace_s=60",
            ],
        )
    clock = ScaledClock(speed=speed, start=START)
    say(f"simulated site {cfg.site.id!r}: {len(cfg.chambers)} chambers, one LI-850, Modbus relays")
    with start_hardware(cfg, clock) as hardware:
        endpoints = hardware.endpoints()
        for a in endpoints["analysers"]:
            say(f"  analyser {a['id']} ({a['protocol']}) at {a['url']}")
        for m in endpoints["modbus"]:
            where = f"{m['host']}:{m['port']} device {m['device_id']}"
            say(f"  modbus {m['id']} ({m['framing']}) at {where}")
        say(f"running the daemon at {speed:g}x real time for two rounds ...")
        site = build_site(hardware.daemon_config(), clock=clock)
        try:
            serve(site, until=START + dt.timedelta(minutes=15, seconds=40))
            truth = hardware.site.closures()
            rows = site.store.query(
                "SELECT o.uuid, o.chamber, o.status, o.closed_at, f.model, f.flux, f.r2, f.flags, "
                "f.selected FROM observations o LEFT JOIN fluxes f ON f.observation_uuid = o.uuid "
                "ORDER BY o.started_at"
            )
        finally:
            site.close()
    table = _summarise(cfg.chambers, rows, truth)
    plot_path = None
    done = [r for r in rows if r["status"] == "done" and r["selected"]]
    if done:
        from .store import SiteStore

        store = SiteStore.open_existing(db)
        try:
            plot_path = plot_observation(store, done[0]["uuid"], db.with_suffix(".png"))
        finally:
            store.close()
    wall = time.perf_counter() - wall_start
    return {
        "json": {
            "database": str(db),
            "wall_s": round(wall, 2),
            "plot": str(plot_path) if plot_path else None,
            "chambers": table,
        },
        "table": _format(table, db, plot_path, wall),
    }


def _summarise(chambers: Any, rows: list[dict[str, Any]], truth: list[Any]) -> list[dict[str, Any]]:
    out = []
    for chamber in chambers:
        mine = [r for r in rows if r["chamber"] == chamber.id]
        observations = sorted({r["uuid"] for r in mine if r["status"] == "done"})
        true_fluxes = []
        for uuid in observations:
            closed = next((r["closed_at"] for r in mine if r["uuid"] == uuid), None)
            if closed is None:
                continue
            at = parse_iso(closed)
            match = min(
                (t for t in truth if t.chamber == chamber.id),
                key=lambda t: abs((t.sealed_at - at).total_seconds()),
                default=None,
            )
            if match is not None:
                true_fluxes.append(match.flux_umol_m2_s)

        def mean(model: str | None, field: str, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [
                r[field]
                for r in mine
                if r["status"] == "done"
                and r[field] is not None
                and (r["selected"] if model is None else r["model"] == model)
            ]
            return round(statistics.fmean(values), 4) if values else None

        flags = sorted(
            {f for r in mine if r["selected"] and r["flags"] for f in r["flags"].split(";")}
        )
        out.append(
            {
                "chamber": chamber.id,
                "true_flux": round(statistics.fmean(true_fluxes), 4) if true_fluxes else None,
                "flux": mean(None, "flux"),
                "lin_flux": mean("linear", "flux"),
                "exp_flux": mean("exponential", "flux"),
                "r2": mean(None, "r2"),
                "flags": flags,
                "observations": len(observations),
            }
        )
    return out


def _format(table: list[dict[str, Any]], db: Path, plot: Path | None, wall: float) -> str:
    def num(value: float | None) -> str:
        return "" if value is None else f"{value:8.3f}"

    lines = [
        "",
        "fluxes in umol m-2 s-1, means over each chamber's observations",
        f"{'chamber':<8} {'obs':>3} {'true':>8} {'exp':>8} {'linear':>8} {'R2':>7}  flags",
    ]
    for row in table:
        r2 = "" if row["r2"] is None else f"{row['r2']:7.4f}"
        lines.append(
            f"{row['chamber']:<8} {row['observations']:>3} {num(row['true_flux'])} "
            f"{num(row['exp_flux'])} {num(row['lin_flux'])} {r2:>7}  {','.join(row['flags'])}"
        )
    lines.append("")
    lines.append(f"database: {db}")
    if plot is not None:
        lines.append(f"plot of one observation: {plot}")
    lines.append(f"wall time: {wall:.1f} s")
    return "\n".join(lines)
