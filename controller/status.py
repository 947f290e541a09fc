"""``chamberd status``: what an operator checks, read from the site database."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from .config import SiteConfig
from .store import SiteStore, parse_iso

__all__ = ["format_status", "site_status"]


def site_status(cfg: SiteConfig, store: SiteStore, now: dt.datetime) -> dict[str, Any]:
    """Per chamber the last observation, flux and flags and whether it is in service;
    analyser and Modbus health; recent warnings; disk free; the last successful round."""
    chambers = []
    for chamber in cfg.chambers:
        last = store.query(
            "SELECT uuid, started_at, status, reason FROM observations WHERE chamber = ? "
            "ORDER BY started_at DESC LIMIT 1",
            (chamber.id,),
        )
        flux = store.query(
            "SELECT f.flux, f.model, f.r2, f.flags, o.started_at FROM fluxes f "
            "JOIN observations o ON o.uuid = f.observation_uuid "
            "WHERE o.chamber = ? AND f.selected = 1 ORDER BY o.started_at DESC LIMIT 1",
            (chamber.id,),
        )
        service = store.query(
            "SELECT out_of_service_until, out_of_service_reason FROM chambers WHERE id = ?",
            (chamber.id,),
        )
        out_until = service[0]["out_of_service_until"] if service else None
        in_service = chamber.enabled and (out_until is None or parse_iso(out_until) <= now)
        chambers.append(
            {
                "chamber": chamber.id,
                "label": chamber.label,
                "enabled": chamber.enabled,
                "in_service": in_service,
                "out_of_service_until": out_until,
                "out_of_service_reason": service[0]["out_of_service_reason"] if service else None,
                "last_observation": last[0] if last else None,
                "last_flux": flux[0] if flux else None,
            }
        )
    health = store.query(
        "SELECT component, ok, detail, last_ok_at, updated_at FROM health ORDER BY component"
    )
    warnings = store.query(
        "SELECT at, level, kind, chamber, message FROM events WHERE level != 'info' "
        "ORDER BY id DESC LIMIT 10"
    )
    last_round = store.query(
        "SELECT scheduled_at, finished_at, status, observations, failures FROM rounds "
        "WHERE status IN ('done', 'partial') ORDER BY scheduled_at DESC LIMIT 1"
    )
    folder = Path(store.path).resolve().parent
    usage = shutil.disk_usage(folder)
    return {
        "site": cfg.site.id,
        "database": str(Path(store.path).resolve()),
        "now": now.astimezone(dt.UTC).isoformat(),
        "chambers": chambers,
        "health": [{**h, "ok": bool(h["ok"])} for h in health],
        "recent_warnings": warnings,
        "last_successful_round": last_round[0] if last_round else None,
        "disk_free_mb": round(usage.free / 2**20, 1),
        "disk_free_fraction": round(usage.free / usage.total, 3) if usage.total else None,
    }


def format_status(status: dict[str, Any]) -> str:
    lines = [f"site {status['site']}  ({status['database']})"]
    last = status["last_successful_round"]
    lines.append(
        "last successful round: "
        + (
            f"{last['scheduled_at']} ({last['status']}, {last['observations']} observations)"
            if last
            else "none yet"
        )
    )
    lines.append(f"disk free: {status['disk_free_mb']:.0f} MB")
    lines.append("")
    head = f"{'chamber':<8} {'service':<12} {'last observation':<28} {'status':<8} {'flux':>8}"
    lines.append(head + " model  flags")
    for c in status["chambers"]:
        obs = c["last_observation"] or {}
        flux = c["last_flux"] or {}
        service = "in service" if c["in_service"] else ("disabled" if not c["enabled"] else "OUT")
        value = "" if flux.get("flux") is None else f"{flux['flux']:8.3f}"
        model = flux.get("model") or ""
        flags = flux.get("flags") or ""
        lines.append(
            f"{c['chamber']:<8} {service:<12} {obs.get('started_at', '-'):<28} "
            f"{obs.get('status', '-'):<8} {value:>8} {model:<6} {flags}"
        )
        if obs.get("reason"):
            lines.append(f"{'':<8} last reason: {obs['reason']}")
    lines.append("")
    lines.append("health:")
    for h in status["health"]:
        lines.append(
            f"  {h['component']:<24} {'ok' if h['ok'] else 'FAULT':<6} {h['detail'] or ''}"
        )
    if status["recent_warnings"]:
        lines.append("recent warnings:")
        for w in status["recent_warnings"]:
            lines.append(f"  {w['at']} {w['level']:<8} {w['kind']}: {w['message']}")
    return "\n".join(lines)
