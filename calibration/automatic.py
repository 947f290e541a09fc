"""The optional scheduled zero/span check in the daemon, through the calibration manifold.

``[calibration.automatic]`` (``every_days``, ``analyser``, ``zero_slot``, ``span_slots``,
``purge_s``, ``average_s``, ``at``) makes the daemon check one analyser against the
manifold's cylinders every N days, between rounds (:func:`maybe_check`, called by the
daemon after each round; the daemon's own thread, so no observation runs meanwhile).

When it is due: at the local time ``at`` of the site, every ``every_days`` days counted
from the last automatic check (its local date at ``at``; a check that ran late does not
push the next one later); with no automatic check recorded yet, at the first ``at`` after
the daemon started. A check missed while the daemon was down runs once when it is back,
never several to catch up.

What it does, recorded like a manual ``zero-span-check`` (procedure
``automatic-zero-span-check``, operator ``chamberd (automatic)``): the analyser's lock
(``analyser:ID``, as ``chamberd calibrate`` takes it; a calibration already holding it
means the check is skipped, with an event); for the zero slot, then each span slot: open
its manifold valve (a Modbus coil), wait ``purge_s``, average the readings of
``average_s`` (mean, SD, n, drift per minute), record the reading with the slot's cylinder
(which must be registered and in date); then close the manifold (on every path). The record
ends ``pass`` when the zero and spans are within the ``zero-span-check`` limits (the site's
``[calibration] limits`` overrides apply), ``fail`` otherwise; its ``data.checks`` feed the
corrections (:mod:`chamberd.calibration.corrections`). A hardware fault or a missing
cylinder ends it ``incomplete`` with the reason (an event says so); the daemon goes on.
No adjustment is ever made automatically.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import statistics
import uuid as uuidlib
import zoneinfo
from typing import Any

from chamberd.controller.clock import Clock
from chamberd.controller.config import AutomaticCheck, SiteConfig
from chamberd.controller.errors import ChamberError, ConfigError
from chamberd.controller.hardware import ChamberActuators, GasAnalyser
from chamberd.controller.store import SiteStore, iso, parse_iso

from .cylinders import Cylinders
from .procedures import get_procedure, limits_for
from .records import CalibrationRecords

__all__ = ["OPERATOR", "PROCEDURE", "check_due_at", "maybe_check", "run_check"]

log = logging.getLogger(__name__)

PROCEDURE = "automatic-zero-span-check"
OPERATOR = "chamberd (automatic)"


def _local_at(day: dt.date, at: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    hour, minute = (int(x) for x in at.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone).astimezone(dt.UTC)


def check_due_at(
    auto: AutomaticCheck,
    *,
    last: dt.datetime | None,
    started: dt.datetime,
    time_zone: str,
) -> dt.datetime:
    """When the next automatic check is due (UTC); see the module docstring.

    >>> from chamberd.controller.config import AutomaticCheck
    >>> auto = AutomaticCheck(every_days=7, analyser="li850", zero_slot="zero", at="03:00")
    >>> start = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    >>> check_due_at(auto, last=None, started=start, time_zone="UTC").isoformat()
    '2026-07-02T03:00:00+00:00'
    >>> last = dt.datetime(2026, 7, 2, 3, 9, tzinfo=dt.UTC)
    >>> check_due_at(auto, last=last, started=start, time_zone="UTC").isoformat()
    '2026-07-09T03:00:00+00:00'
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    if last is None:
        due = _local_at(started.astimezone(zone).date(), auto.at, zone)
        return (
            due
            if due >= started
            else _local_at(started.astimezone(zone).date() + dt.timedelta(days=1), auto.at, zone)
        )
    base = _local_at(last.astimezone(zone).date(), auto.at, zone)
    if base > last:
        base = _local_at(last.astimezone(zone).date() - dt.timedelta(days=1), auto.at, zone)
    return base + dt.timedelta(days=auto.every_days)


def _last_check(store: SiteStore, analyser: str) -> dt.datetime | None:
    rows = store.query(
        "SELECT max(performed_at) AS at FROM calibrations WHERE procedure = ? AND analyser = ?",
        (PROCEDURE, analyser),
    )
    return parse_iso(rows[0]["at"]) if rows and rows[0]["at"] else None


def maybe_check(daemon: Any) -> str | None:
    """The daemon's hook (after each round): run the automatic check when it is due;
    returns the record id, or None. Never raises for a hardware fault (the record ends
    ``incomplete`` and an event says why)."""
    cfg: SiteConfig = daemon.cfg
    auto = cfg.calibration.automatic
    if auto is None or auto.analyser not in daemon.analysers:
        return None
    now = daemon.clock.now()
    started = daemon.started_at or now
    due = check_due_at(
        auto,
        last=_last_check(daemon.store, auto.analyser),
        started=started,
        time_zone=cfg.site.time_zone,
    )
    if now < due:
        return None
    info = getattr(daemon, "analyser_info", {}).get(auto.analyser)
    if info is None:
        # not set up (it failed, or its port was lent to a calibration and the daemon has
        # not measured with it since): the check waits for a round that sets it up
        log.info("automatic check of %s due, waiting for the analyser", auto.analyser)
        return None
    return run_check(
        cfg,
        clock=daemon.clock,
        store=daemon.store,
        analyser=daemon.analysers[auto.analyser],
        actuators=daemon.actuators,
        instrument=info,
        alarm=getattr(daemon, "alarm", None),
    )


def run_check(
    cfg: SiteConfig,
    *,
    clock: Clock,
    store: SiteStore,
    analyser: GasAnalyser,
    actuators: ChamberActuators,
    instrument: dict[str, str] | None = None,
    alarm: Any = None,
) -> str | None:
    """One automatic zero/span check of ``[calibration.automatic]``'s analyser; returns the
    record id (None when skipped because a calibration holds the analyser)."""
    auto = cfg.calibration.automatic
    if auto is None:
        raise ConfigError("calibration.automatic: not configured")
    records = CalibrationRecords(store)
    cylinders = Cylinders(store)
    slots = [s for s in (auto.zero_slot, *auto.span_slots) if s is not None]
    now = clock.now()
    cylinder_ids = [cfg.calibration.slot(s).cylinder for s in slots]
    record_id = str(uuidlib.uuid4())
    # the lock first: a calibration holding the analyser means no record at all
    held = store.take_calibration_locks([f"analyser:{auto.analyser}"], record_id, os.getpid(), now)
    if held:
        _event(
            store,
            clock,
            alarm,
            "info",
            f"automatic check of {auto.analyser} skipped: calibration "
            f"{held[0]['calibration_id']} holds the analyser",
        )
        return None
    try:
        records.begin(
            procedure=PROCEDURE,
            started_at=now,
            operator=OPERATOR,
            analyser=auto.analyser,
            instrument=instrument or {},
            cylinder_ids=[c for c in cylinder_ids if c],
            data={"automatic": True, "slots": slots},
            calibration_id=record_id,
        )
    except BaseException:
        store.release_calibration_locks(record_id)
        raise
    limits = limits_for(get_procedure("zero-span-check"), cfg.calibration.limits)
    checks: list[dict[str, Any]] = []
    problems: list[str] = []
    notes: list[str] = []
    try:
        for slot_id, cylinder_id in zip(slots, cylinder_ids, strict=True):
            if cylinder_id is None:
                raise ConfigError(
                    f"calibration.manifold slot {slot_id!r} names no cylinder: its gas is unknown"
                )
            cylinder = cylinders.usable(cylinder_id, on=clock.now().date(), gas="co2")
            actuators.set_manifold(slot_id)
            clock.sleep(auto.purge_s)
            values, at = _average(analyser, clock, auto.average_s, cfg, auto.analyser)
            mean = statistics.fmean(values)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            step = "zero" if slot_id == auto.zero_slot else "span"
            records.add_reading(
                record_id,
                step=step,
                at=at,
                cylinder_id=cylinder.id,
                gas="co2",
                reference_value=cylinder.value,
                unit="umol/mol",
                mean=mean,
                sd=sd,
                n=len(values),
                stable=sd <= limits.get("stability_max_sd", 1.0),
                data={"slot": slot_id, "purge_s": auto.purge_s, "average_s": auto.average_s},
            )
            checks.append(
                {
                    "gas": "co2",
                    "at": iso(at),
                    "reference": cylinder.value,
                    "measured": mean,
                    "cylinder_id": cylinder.id,
                    "stable": sd <= limits.get("stability_max_sd", 1.0),
                }
            )
            if cylinder.value == 0:
                notes.append(f"zero reads {mean:+.2f} umol/mol")
                if abs(mean) > limits["max_zero_umol_mol"]:
                    problems.append(f"zero {mean:+.2f} umol/mol")
            else:
                error = 100.0 * (mean - cylinder.value) / cylinder.value
                notes.append(f"{cylinder.id} {mean:.2f} vs {cylinder.value:g} ({error:+.2f} %)")
                if abs(error) > limits["max_span_error_pct"]:
                    problems.append(f"{cylinder.id} {error:+.2f} %")
    except (ChamberError, OSError) as exc:
        _close(actuators)
        records.mark_incomplete(
            record_id, f"{type(exc).__name__}: {exc}", at=clock.now(), data={"checks": checks}
        )
        _event(
            store,
            clock,
            alarm,
            "warning",
            f"automatic check of {auto.analyser} not completed: {exc}; manifold closed",
        )
        return record_id
    except BaseException:
        _close(actuators)
        records.mark_incomplete(record_id, "interrupted", at=clock.now())
        raise
    _close(actuators)
    status = "fail" if problems else "pass"
    result = "; ".join(problems or notes) + (
        "; recorded as a correction of the data" if problems else " (within limits)"
    )
    records.finish(
        record_id,
        status,
        at=clock.now(),
        result=result,
        data={"automatic": True, "slots": slots, "checks": checks, "adjusted": False},
    )
    _event(
        store,
        clock,
        alarm,
        "info" if status == "pass" else "warning",
        f"automatic zero/span check of {auto.analyser}: {status}: {result}",
    )
    return record_id


def _average(
    analyser: GasAnalyser, clock: Clock, seconds: float, cfg: SiteConfig, analyser_id: str
) -> tuple[list[float], dt.datetime]:
    interval = cfg.analyser(analyser_id).output_interval_s
    silent = max(cfg.cycle.analyser_silent_s, 2 * interval)
    analyser.discard_pending()
    start = clock.monotonic()
    values: list[float] = []
    while clock.monotonic() - start < seconds or not values:
        reading = analyser.read(silent)
        value = reading.co2_umol_mol
        if value is not None and math.isfinite(value):
            values.append(float(value))
    return values, clock.now()


def _close(actuators: ChamberActuators) -> None:
    try:
        actuators.set_manifold(None)
    except (ChamberError, OSError) as exc:  # the record says so; the daemon's safe state
        log.error("automatic check: the manifold could not be closed: %s", exc)


def _event(store: SiteStore, clock: Clock, alarm: Any, level: str, message: str) -> None:
    if alarm is not None:
        alarm(level, "automatic_calibration", message)
        return
    store.record_event(level, "automatic_calibration", message, clock.now())
