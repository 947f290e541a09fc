"""``chamberd status``: what an operator checks, read from the site database.

Nothing is written: the database is opened read-only (see
:meth:`~chamberd.controller.store.SiteStore.open_readonly`), so status works beside a
running daemon, on a full disk and on a read-only copy. The health of each device comes
from the ``health`` table and, when newer, from the daemon's live health file beside the
database (``<database>.health``), which the daemon keeps current even while the database
cannot be written; the storage itself is also judged from the free space.

Whether the daemon runs comes from its heartbeat (the store's ``heartbeat`` table, or the
live file when newer): running when it is fresh (written less than ``STALE_S`` ago), its
state is not ``stopped`` and, on the same machine, its pid exists. The heartbeat also says
what each analyser group is doing (chamber, phase, since when) and when the next round is.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .clock import Clock, local_and_utc
from .config import SiteConfig
from .health import LiveHealthFile
from .output import flux_text
from .store import SiteStore, parse_iso, process_alive

__all__ = ["STALE_S", "daemon_status", "format_status", "site_status", "watch_status"]

#: a heartbeat older than this [s] means the daemon is not running (it writes one at each
#: phase of a cycle and at least every 30 s)
STALE_S = 120.0

_LOW_DISK_MB = 1.0  # below this the database cannot grow: reported as a storage fault


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
            "SELECT f.flux, f.model, f.r2, f.flags, o.started_at, f.gas, f.flux_unit, f.mdf, "
            "f.observation_uuid FROM fluxes f "
            "JOIN observations o ON o.uuid = f.observation_uuid "
            "WHERE o.chamber = ? AND f.selected = 1 "
            "ORDER BY o.started_at DESC, f.gas = 'co2' DESC, f.gas LIMIT 1",
            (chamber.id,),
        )
        # every gas of that observation (a loop with CH4 and N2O analysers)
        gases = (
            store.query(
                "SELECT gas, flux, flux_unit, mdf, flags FROM fluxes WHERE observation_uuid = ? "
                "AND selected = 1 ORDER BY gas = 'co2' DESC, gas",
                (flux[0]["observation_uuid"],),
            )
            if flux
            else []
        )
        if flux:
            flux[0].pop("observation_uuid", None)
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
                "last_fluxes": gases,
            }
        )
    health = _health(store, now)
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
    free_mb = usage.free / 2**20
    if free_mb < _LOW_DISK_MB:
        storage = next((h for h in health if h["component"] == "storage"), None)
        if storage is None:
            storage = {"component": "storage", "last_good_at": None, "source": "disk"}
            health.append(storage)
            health.sort(key=lambda h: h["component"])
        if storage["ok"] is not False:
            storage.update(
                ok=False,
                detail=f"disk full: {free_mb:.1f} MB free in {folder}",
                last_error=f"disk full: {free_mb:.1f} MB free in {folder}",
                last_error_at=now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
    live = LiveHealthFile.read(f"{store.path}.health") or {}
    calibrations = _calibrations(store)
    return {
        "site": cfg.site.id,
        "database": str(Path(store.path).resolve()),
        "now": now.astimezone(dt.UTC).isoformat(),
        "time_zone": cfg.site.time_zone,
        "daemon": daemon_status(store, now, live=live, time_zone=cfg.site.time_zone),
        "chambers": chambers,
        "health": health,
        "recent_warnings": warnings,
        "last_successful_round": last_round[0] if last_round else None,
        "disk_free_mb": round(free_mb, 1),
        "disk_free_fraction": round(usage.free / usage.total, 3) if usage.total else None,
        "consistent": getattr(store, "consistent", True),
        "pending_events": live.get("pending_events", 0) if live else 0,
        "recent_pending_events": live.get("recent_pending_events", []) if live else [],
        "calibrations_in_progress": calibrations,
        "power": _power(cfg),
    }


def _power(cfg: SiteConfig) -> dict[str, Any]:
    """The estimated energy per day of the devices with a configured power draw."""
    from .power import energy_per_day

    devices = energy_per_day(cfg)
    return {
        "devices": [
            {
                "device": d.device,
                "power_w": d.power_w,
                "hours_per_day": round(d.hours_per_day, 2),
                "switched": d.switched,
                "wh_per_day": round(d.wh_per_day, 1),
            }
            for d in devices
        ],
        "wh_per_day": round(sum(d.wh_per_day for d in devices), 1),
    }


def _calibrations(store: SiteStore) -> list[dict[str, Any]]:
    """Calibrations holding hardware now (``calibration_locks``), with their record."""
    out = []
    for lock in store.calibration_locks():
        record = store.query(
            "SELECT procedure, operator, started_at FROM calibrations WHERE id = ?",
            (lock["calibration_id"],),
        )
        out.append(
            {
                **lock,
                **(record[0] if record else {}),
                "process_alive": process_alive(int(lock["pid"])),
            }
        )
    return out


def daemon_status(
    store: SiteStore,
    now: dt.datetime,
    *,
    live: dict[str, Any] | None = None,
    time_zone: str = "UTC",
) -> dict[str, Any]:
    """Whether the daemon runs, and what it does: from the newer of the store's heartbeat
    and the live file's. ``running`` is False with a ``why`` when the heartbeat is stale,
    says the daemon stopped, or names a pid that no longer exists on this machine."""
    beat = store.heartbeat()
    other = (live or {}).get("heartbeat")
    if (
        isinstance(other, dict)
        and other.get("at")
        and (beat is None or str(other["at"]) > str(beat.get("at") or ""))
    ):
        beat = dict(other)
    if not beat or not beat.get("at"):
        return {"running": False, "why": "no heartbeat: the daemon has not run here"}
    at = parse_iso(str(beat["at"]))
    age_s = (now - at).total_seconds()
    pid = beat.get("pid")
    here = beat.get("host") == socket.gethostname()
    pid_exists = _pid_exists(int(pid)) if here and isinstance(pid, int) else None
    why = None
    if beat.get("state") == "stopped":
        why = "stopped"
    elif age_s > STALE_S:
        why = f"no heartbeat for {_age(age_s)}"
    elif pid_exists is False:
        why = f"process {pid} is gone"
    next_round = beat.get("next_round_at")
    return {
        "running": why is None,
        "why": why,
        "pid": pid,
        "host": beat.get("host"),
        "pid_exists": pid_exists,
        "state": beat.get("state"),
        "heartbeat_at": beat["at"],
        "heartbeat_age_s": round(age_s, 1),
        "started_at": beat.get("started_at"),
        "round_at": beat.get("round_at"),
        "activity": beat.get("activity") or [],
        "next_round_at": next_round,
        "next_round": local_and_utc(parse_iso(next_round), time_zone) if next_round else None,
        "software_version": beat.get("software_version"),
    }


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _age(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def daemon_lines(daemon: dict[str, Any], time_zone: str) -> list[str]:
    """The first lines of ``status``: running or not, what it does now, the next round."""
    if not daemon.get("heartbeat_at"):
        return [f"daemon: NOT RUNNING ({daemon.get('why')})"]
    age = _age(daemon["heartbeat_age_s"])
    if daemon["running"]:
        lines = [f"daemon: running (pid {daemon['pid']}, heartbeat {age} ago)"]
    else:
        lines = [
            f"daemon: NOT RUNNING ({daemon['why']}; last heartbeat {daemon['heartbeat_at']}, "
            f"pid {daemon['pid']})"
        ]
    if daemon["running"]:
        if daemon.get("round_at"):
            at = local_and_utc(parse_iso(daemon["round_at"]), time_zone)
            lines.append(f"now: round of {at}")
            for a in daemon.get("activity") or []:
                since = a.get("since")
                lines.append(
                    f"  {a.get('analyser')}: {a.get('chamber')} {a.get('phase')}"
                    + (f" since {since}" if since else "")
                )
        else:
            lines.append(f"now: {daemon.get('state') or 'idle'}, waiting for the next round")
    if daemon.get("next_round"):
        lines.append(f"next round: {daemon['next_round']}")
    return lines


_COLUMNS = (
    "component",
    "ok",
    "detail",
    "last_good_at",
    "last_error",
    "last_error_at",
    "refused",
)


def _health(store: SiteStore, now: dt.datetime) -> list[dict[str, Any]]:
    """Per device: ok, what it is or what failed, its last good reading, its last error.

    The database's rows, replaced by the live health file's entries when those are newer
    (the daemon could not write them to the database, or has not yet)."""
    rows = store.query("SELECT * FROM health ORDER BY component")
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out[row["component"]] = {
            "component": row["component"],
            "ok": bool(row["ok"]),
            "detail": row.get("detail"),
            "last_good_at": row.get("last_ok_at"),
            "last_error": row.get("last_error"),
            "last_error_at": row.get("last_error_at"),
            "refused": bool(row.get("refused")),
            "updated_at": row.get("updated_at"),
            "source": "database",
        }
    live = LiveHealthFile.read(f"{store.path}.health")
    if live and isinstance(live.get("health"), list):
        written = str(live.get("written_at") or "")
        for entry in live["health"]:
            if not isinstance(entry, dict) or entry.get("ok") is None:
                continue
            name = str(entry.get("component"))
            known = out.get(name)
            if known is not None and str(known.get("updated_at") or "") >= written:
                continue
            out[name] = {
                **{k: entry.get(k) for k in _COLUMNS},
                "ok": bool(entry.get("ok")),
                "detail": entry.get("detail") if entry.get("ok") else entry.get("last_error"),
                "updated_at": written,
                "source": "live",
            }
    return [out[k] for k in sorted(out)]


def format_status(status: dict[str, Any]) -> str:
    lines = [f"site {status['site']}  ({status['database']})"]
    if status.get("daemon"):
        lines.extend(daemon_lines(status["daemon"], status.get("time_zone", "UTC")))
    last = status["last_successful_round"]
    lines.append(
        "last successful round: "
        + (
            f"{last['scheduled_at']} ({last['status']}, {last['observations']} observations)"
            if last
            else "none yet"
        )
    )
    lines.append(f"disk free: {status['disk_free_mb']:.1f} MB")
    if not status.get("consistent", True):
        lines.append("(read without locking: SQLite could not create its -shm file)")
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
        for g in c.get("last_fluxes") or []:
            if g["gas"] == "co2" or g["flux"] is None:
                continue
            shown = flux_text(g["flux"], g.get("mdf"), g.get("flags"))
            lines.append(f"{'':<8} {g['gas'].upper()} {shown} {g['flux_unit']}  {g['flags']}")
        if obs.get("reason"):
            lines.append(f"{'':<8} last reason: {obs['reason']}")
    lines.append("")
    lines.append("health:")
    lines.append(f"  {'device':<22} {'state':<7} {'last good reading':<28} last error")
    for h in status["health"]:
        error = ""
        if h.get("last_error"):
            error = f"{h.get('last_error_at') or ''} {h['last_error']}".strip()
        detail = "" if not h["ok"] or not h.get("detail") else f"  ({h['detail']})"
        lines.append(
            f"  {h['component']:<22} {_state(h):<7} "
            f"{h.get('last_good_at') or '-':<28} {error or '-'}{detail}"
        )
    for cal in status.get("calibrations_in_progress", []):
        alive = (
            "" if cal["process_alive"] else " (its process has ended: recovered at the next round)"
        )
        lines.append(
            f"calibration in progress: {cal['scope']} ({cal.get('procedure', '?')} by "
            f"{cal.get('operator') or '?'}, since {cal['started_at']}, record "
            f"{cal['calibration_id'][:8]}): not measured by the daemon{alive}"
        )
    power = status.get("power") or {}
    if power.get("devices"):
        parts = ", ".join(
            f"{d['device']} {d['power_w']:g} W x {d['hours_per_day']:g} h"
            + (" (switched)" if d["switched"] else "")
            for d in power["devices"]
        )
        lines.append(f"energy: about {power['wh_per_day']:g} Wh/day estimated ({parts})")
    if status.get("pending_events"):
        lines.append(
            f"{status['pending_events']} event(s) waiting in the daemon's memory to be recorded:"
        )
        for w in status.get("recent_pending_events", []):
            lines.append(f"  {w['at']} {w['level']:<8} {w['kind']}: {w['message']}")
    if status["recent_warnings"]:
        lines.append("recent warnings:")
        for w in status["recent_warnings"]:
            lines.append(f"  {w['at']} {w['level']:<8} {w['kind']}: {w['message']}")
    return "\n".join(lines)


def _state(health: dict[str, Any]) -> str:
    if health["ok"]:
        return "ok"
    return "REFUSED" if health.get("refused") else "FAULT"


_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen


def watch_status(
    read: Callable[[], dict[str, Any]],
    clock: Clock,
    *,
    interval_s: float = 5.0,
    refreshes: int | None = None,
    out: TextIO,
    clear: bool = True,
) -> int:
    """``chamberd status --watch``: the status table, redrawn every ``interval_s`` seconds
    of ``clock`` (``refreshes`` times, or until interrupted); the number drawn.

    Each refresh reads the database anew (``read``); an error reading it is shown in place
    of the table and the view goes on."""
    drawn = 0
    while refreshes is None or drawn < refreshes:
        if drawn:
            clock.sleep(interval_s)
        try:
            text = format_status(read())
        except Exception as exc:  # a view: it shows the error and tries again
            text = f"cannot read the status: {exc}"
        stamp = clock.now().astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        out.write(
            (_CLEAR if clear else "")
            + f"chamberd status --watch  {stamp}  (every {interval_s:g} s; Ctrl-C ends)\n"
            + text
            + "\n"
            + ("" if clear else "\n")
        )
        out.flush()
        drawn += 1
    return drawn
