"""Clock-aligned rounds: APScheduler's trigger arithmetic, misfire grace and coalescing.

Rounds start every ``interval_min`` minutes from midnight, site time (plus ``offset_min``):
an :class:`apscheduler.triggers.interval.IntervalTrigger` anchored at local midnight, so
30-minute rounds fall on :00 and :30. Two runners share its semantics:

:class:`APSchedulerRunner`
    APScheduler 3's ``BlockingScheduler`` for the field (real time): one instance at a
    time (``max_instances=1``), coalescing, an explicit ``misfire_grace_time``; a missed
    run is reported through the listener, never replayed; a job's exception never stops
    the scheduler.
:class:`ClockRunner`
    The same rules on the injected clock (simulations, the demo, virtual-time tests),
    using the trigger's pure ``get_next_fire_time(prev, now)``.

Either calls ``run_round(scheduled_at)`` and ``missed(scheduled_at)``, and, while waiting
for the next slot, ``idle()`` about every second (ClockRunner) or every 10 s (APScheduler):
the daemon retries writing to a site database that could not be written.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import zoneinfo
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .clock import Clock
from .config import ScheduleSection

__all__ = ["APSchedulerRunner", "ClockRunner", "make_trigger", "slots_between"]

log = logging.getLogger(__name__)

RoundFn = Callable[[dt.datetime], None]
MissedFn = Callable[[dt.datetime], None]
IdleFn = Callable[[], None]
_IDLE_EVERY_S = 10


def _call_idle(idle: IdleFn | None) -> None:
    if idle is None:
        return
    try:
        idle()
    except Exception:  # never stops the schedule
        log.exception("idle task failed")


def make_trigger(schedule: ScheduleSection, time_zone: str, *, around: dt.datetime) -> BaseTrigger:
    """Rounds every ``interval_min`` from local midnight (+ ``offset_min``)."""
    zone = zoneinfo.ZoneInfo(time_zone)
    local = around.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=2)
    start = midnight + dt.timedelta(minutes=schedule.offset_min % schedule.interval_min)
    return IntervalTrigger(minutes=schedule.interval_min, start_date=start, timezone=zone)


def slots_between(
    trigger: BaseTrigger, after: dt.datetime, before: dt.datetime
) -> list[dt.datetime]:
    """Scheduled times strictly after ``after`` and strictly before ``before`` (UTC)."""
    out = []
    prev = None
    nxt = trigger.get_next_fire_time(prev, after + dt.timedelta(microseconds=1))
    while nxt is not None and nxt < before:
        out.append(nxt.astimezone(dt.UTC))
        prev = nxt
        nxt = trigger.get_next_fire_time(prev, nxt + dt.timedelta(microseconds=1))
    return out


class ClockRunner:
    """Runs rounds on the injected clock with APScheduler's semantics."""

    def __init__(
        self,
        trigger: BaseTrigger,
        *,
        clock: Clock,
        run_round: RoundFn,
        missed: MissedFn,
        misfire_grace_s: float,
        stop: threading.Event,
        idle: IdleFn | None = None,
    ) -> None:
        self.trigger = trigger
        self.clock = clock
        self.run_round = run_round
        self.missed = missed
        self.grace = dt.timedelta(seconds=misfire_grace_s)
        self.stop = stop
        self.idle = idle

    def _sleep_until(self, when: dt.datetime) -> bool:
        while not self.stop.is_set():
            remaining = (when - self.clock.now()).total_seconds()
            if remaining <= 0:
                return True
            _call_idle(self.idle)
            self.clock.sleep(min(remaining, 1.0))
        return False

    def run(self, *, until: dt.datetime | None = None, since: dt.datetime | None = None) -> None:
        """Run rounds until ``stop`` is set (or the clock passes ``until``).

        ``since`` is when the daemon began starting up: a slot that fell due while it was
        starting is run if still within the misfire grace, else recorded as missed.
        """
        prev: dt.datetime | None = None
        nxt = self.trigger.get_next_fire_time(None, since or self.clock.now())
        while nxt is not None and not self.stop.is_set():
            if until is not None and nxt > until:
                return
            if not self._sleep_until(nxt):
                return
            now = self.clock.now()
            # coalesce: of all the slots that have passed, only the latest can run; the
            # others are missed (recorded, never replayed)
            later = self.trigger.get_next_fire_time(nxt, nxt + dt.timedelta(microseconds=1))
            while later is not None and later <= now:
                self.missed(nxt.astimezone(dt.UTC))
                nxt, later = (
                    later,
                    self.trigger.get_next_fire_time(later, later + dt.timedelta(microseconds=1)),
                )
            if now - nxt > self.grace:
                self.missed(nxt.astimezone(dt.UTC))
            else:
                try:
                    self.run_round(nxt.astimezone(dt.UTC))
                except Exception:  # a round's failure never stops the schedule
                    log.exception("round scheduled at %s failed", nxt)
            prev = nxt
            nxt = self.trigger.get_next_fire_time(prev, self.clock.now())


class APSchedulerRunner:
    """APScheduler 3 in the field: one job, one instance, coalescing, misfire grace."""

    def __init__(
        self,
        trigger: BaseTrigger,
        *,
        clock: Clock,
        run_round: RoundFn,
        missed: MissedFn,
        misfire_grace_s: float,
        stop: threading.Event,
        since: dt.datetime | None = None,
        idle: IdleFn | None = None,
    ) -> None:
        self.clock = clock
        self.stop = stop
        self.missed = missed
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_s,
            },
            timezone=getattr(trigger, "timezone", dt.UTC),
        )
        self.job = self.scheduler.add_job(
            lambda: run_round(self._scheduled()),
            trigger,
            id="round",
            name="chamber round",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(misfire_grace_s),
            # the first slot counts from the start of start-up, so a slot that fell due
            # meanwhile is run within the grace or reported as missed, never skipped silently
            next_run_time=trigger.get_next_fire_time(None, since or clock.now()),
        )
        if idle is not None:  # shares the one worker thread: never runs during a round
            self.scheduler.add_job(
                functools.partial(_call_idle, idle),
                IntervalTrigger(seconds=_IDLE_EVERY_S),
                id="idle",
                name="idle tasks",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=_IDLE_EVERY_S,
            )
        self.scheduler.add_listener(self._listen, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        self._current: dt.datetime | None = None

    def _scheduled(self) -> dt.datetime:
        # APScheduler does not pass the scheduled time to the job; with coalescing the job
        # runs for the latest slot due, so that is the latest fire time not after now
        job = self.scheduler.get_job("round")
        now = self.clock.now()
        assert job is not None
        grace = dt.timedelta(seconds=job.misfire_grace_time or 1)
        slot = job.trigger.get_next_fire_time(None, now - grace)
        latest = None
        while slot is not None and slot <= now:
            latest = slot
            slot = job.trigger.get_next_fire_time(slot, slot + dt.timedelta(microseconds=1))
        return (latest or now).astimezone(dt.UTC)

    def _listen(self, event: JobExecutionEvent) -> None:
        if event.job_id != "round":
            return
        if event.code == EVENT_JOB_MISSED:
            self.missed(event.scheduled_run_time.astimezone(dt.UTC))
        elif event.exception is not None:
            log.error("round failed: %s", event.exception)

    def run(self, **_: Any) -> None:
        watcher = threading.Thread(target=self._watch, daemon=True)
        watcher.start()
        self.scheduler.start()

    def _watch(self) -> None:
        self.stop.wait()
        self.scheduler.shutdown(wait=False)
