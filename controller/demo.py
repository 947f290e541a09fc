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


#: ``--gases``: the laser analyser each trace gas adds to the loop, after the LI-850
TRACE_ANALYSERS = {
    "ch4": {"id": "li7810", "protocol": "li7810", "lag_s": 5.0, "precision_ch4_nmol_mol": 0.6},
    "n2o": {"id": "li7820", "protocol": "li7820", "lag_s": 8.0, "precision_n2o_nmol_mol": 0.4},
}
#: the simulated soils of ``--gases``: two paddy chambers (CH4 with bubbles), two upland
#: ones (CH4 uptake, N2O from fertiliser; one with none)
TRACE_SOILS = (
    {"ch4_nmol_m2_s": 40.0, "n2o_nmol_m2_s": 0.3, "ebullition_per_h": 12.0},
    {"ch4_nmol_m2_s": 25.0, "n2o_nmol_m2_s": 0.2},
    {"ch4_nmol_m2_s": -1.5, "n2o_nmol_m2_s": 1.5},
    {"ch4_nmol_m2_s": -1.0, "n2o_nmol_m2_s": 0.0},
)
GASES = ("co2", "ch4", "n2o")


def parse_gases(text: str) -> tuple[str, ...]:
    """``co2,ch4,n2o`` -> the gases, in the fixed order; CO2 is always measured."""
    names = [g.strip().lower() for g in text.split(",") if g.strip()]
    unknown = [g for g in names if g not in GASES]
    if unknown:
        raise ValueError(f"unknown gas {unknown[0]!r} (choose among {', '.join(GASES)})")
    return tuple(g for g in GASES if g in names or g == "co2")


def _with_gases(cfg: Any, gases: tuple[str, ...]) -> Any:
    """The demo site with an LI-7810 (CH4) and/or LI-7820 (N2O) after the LI-850 in its
    loop, publishing over MQTT to the broker of ``sim.mqtt_broker``."""
    from .config import parse_config

    data = cfg.model_dump(mode="python")
    extra = [TRACE_ANALYSERS[g] for g in gases if g in TRACE_ANALYSERS]
    for analyser in extra:
        data["analysers"].append(
            {
                **analyser,
                "port": data["sim"]["mqtt_broker"],
                "topic_root": f"licor/{analyser['id']}",
            }
        )
    for i, chamber in enumerate(data["chambers"]):
        chamber["analysers"] = [chamber["analyser"], *(a["id"] for a in extra)]
        chamber["sim"] = {**chamber["sim"], **TRACE_SOILS[i % len(TRACE_SOILS)]}
    data["cycle"]["gases"] = {"ch4": {"dead_band_s": 30.0}} if "ch4" in gases else {}
    return parse_config(data, source="demo --gases")


def run_demo(
    *,
    database: str = "chamberd-demo.db",
    speed: float = 60.0,
    progress: Callable[[str], Any] | None = None,
    gases: tuple[str, ...] = ("co2",),
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
    if gases != ("co2",):
        cfg = _with_gases(cfg, gases)
    clock = ScaledClock(speed=speed, start=START)
    loop = ", ".join(cfg.chambers[0].loop)
    say(f"simulated site {cfg.site.id!r}: {len(cfg.chambers)} chambers, loop {loop}, Modbus relays")
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
                "SELECT o.uuid, o.chamber, o.status, o.closed_at, f.gas, f.model, f.flux, f.r2, "
                "f.flags, f.selected, f.flux_unit, f.mdf FROM observations o LEFT JOIN fluxes f "
                "ON f.observation_uuid = o.uuid ORDER BY o.started_at"
            )
        finally:
            site.close()
    per_gas = _per_gas(cfg.chambers, rows, truth, gases)
    table = _summarise(cfg.chambers, [r for r in rows if r["gas"] in (None, "co2")], truth)
    plot_path = None
    done = [r for r in rows if r["status"] == "done" and r["selected"] and r["gas"] == "co2"]
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
            **({"fluxes": per_gas} if gases != ("co2",) else {}),
        },
        "table": _format(table, db, plot_path, wall)
        + ("\n" + _format_gases(per_gas) if gases != ("co2",) else ""),
    }


def _per_gas(
    chambers: Any, rows: list[dict[str, Any]], truth: list[Any], gases: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Per chamber and gas: the mean selected flux, the mean true flux, unit and flags.
    A gas whose every observation is below detection is reported as ``flux`` None with
    its detection limit (``mdf``), not as the noise's number."""
    field = {"co2": "flux_umol_m2_s", "ch4": "ch4_flux_nmol_m2_s", "n2o": "n2o_flux_nmol_m2_s"}
    out = []
    for chamber in chambers:
        for gas in gases:
            mine = [
                r
                for r in rows
                if r["chamber"] == chamber.id
                and r["status"] == "done"
                and r["gas"] == gas
                and r["selected"]
            ]
            if not mine:
                continue
            true = []
            for r in mine:
                at = parse_iso(r["closed_at"])
                match = min(
                    (t for t in truth if t.chamber == chamber.id),
                    key=lambda t: abs((t.sealed_at - at).total_seconds()),
                    default=None,
                )
                if match is not None:
                    true.append(getattr(match, field[gas]))
            flags = sorted({f for r in mine if r["flags"] for f in r["flags"].split(";")})
            below = all("below_detection" in (r["flags"] or "").split(";") for r in mine)
            fluxes = [r["flux"] for r in mine if r["flux"] is not None]
            mdfs = [r["mdf"] for r in mine if r["mdf"] is not None]
            out.append(
                {
                    "chamber": chamber.id,
                    "gas": gas,
                    "flux": None if below or not fluxes else round(statistics.fmean(fluxes), 4),
                    "true_flux": round(statistics.fmean(true), 4) if true else None,
                    "flux_unit": mine[0]["flux_unit"],
                    "mdf": round(statistics.fmean(mdfs), 4) if mdfs else None,
                    "flags": flags,
                    "observations": len(mine),
                }
            )
    return out


def _format_gases(rows: list[dict[str, Any]]) -> str:
    lines = [
        "per gas (CO2 in umol m-2 s-1, CH4 and N2O in nmol m-2 s-1), means",
        f"{'chamber':<8} {'gas':<4} {'true':>9} {'measured':>14} {'MDF':>7}  flags",
    ]
    for row in rows:
        if row["flux"] is None:
            shown = f"< {row['mdf']:.3f}" if row["mdf"] is not None else "-"
        else:
            shown = f"{row['flux']:9.3f}"
        true = "" if row["true_flux"] is None else f"{row['true_flux']:9.3f}"
        mdf = "" if row["mdf"] is None else f"{row['mdf']:7.3f}"
        lines.append(
            f"{row['chamber']:<8} {row['gas']:<4} {true:>9} {shown:>14} {mdf:>7}  "
            f"{','.join(row['flags'])}"
        )
    return "\n".join(lines)


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
