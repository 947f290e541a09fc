"""Clock-aligned rounds: alignment, coalescing, misfire grace, APScheduler in real time."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

from apscheduler.triggers.interval import IntervalTrigger

from chamberd.controller.clock import FakeClock, SystemClock
from chamberd.controller.config import ScheduleSection
from chamberd.controller.schedule import (
    APSchedulerRunner,
    ClockRunner,
    make_trigger,
    slots_between,
)

START = dt.datetime(2026, 7, 1, 3, 55, tzinfo=dt.UTC)  # 11:55 in Shanghai


def test_rounds_are_aligned_to_local_time():
    trigger = make_trigger(
        ScheduleSection(interval_min=30, offset_min=10), "Asia/Shanghai", around=START
    )
    slots = slots_between(trigger, START, START + dt.timedelta(hours=2))
    local = [s.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%H:%M") for s in slots]
    assert local == ["12:10", "12:40", "13:10", "13:40"]
    hourly = make_trigger(ScheduleSection(interval_min=60), "Asia/Kolkata", around=START)
    # UTC+5:30: local full hours are at half past in UTC
    first = slots_between(hourly, START, START + dt.timedelta(hours=1))[0]
    assert first.minute == 30


def test_a_long_round_coalesces_the_slots_it_overran():
    clock = FakeClock(start=START)
    trigger = make_trigger(ScheduleSection(interval_min=30), "UTC", around=START)
    ran, missed = [], []

    def round_(at: dt.datetime) -> None:
        ran.append(at.strftime("%H:%M"))
        if len(ran) == 1:
            clock.sleep(70 * 60)  # a round that takes 70 minutes

    runner = ClockRunner(
        trigger,
        clock=clock,
        run_round=round_,
        missed=lambda at: missed.append(at.strftime("%H:%M")),
        misfire_grace_s=120,
        stop=threading.Event(),
    )
    runner.run(until=START + dt.timedelta(hours=3))
    # 04:00 ran until 05:10; 04:30 and 05:00 passed meanwhile: missed, not run in a burst
    assert ran == ["04:00", "05:30", "06:00", "06:30"]
    assert missed == ["04:30", "05:00"]


def test_apscheduler_runs_in_real_time_with_one_instance():
    clock = SystemClock()
    now = clock.now()
    trigger = IntervalTrigger(seconds=1, start_date=now.replace(microsecond=0))
    ran: list[dt.datetime] = []
    stop = threading.Event()

    def round_(at: dt.datetime) -> None:
        ran.append(at)
        if len(ran) == 3:
            stop.set()

    runner = APSchedulerRunner(
        trigger,
        clock=clock,
        run_round=round_,
        missed=lambda at: None,
        misfire_grace_s=5,
        stop=stop,
        since=now - dt.timedelta(seconds=2),  # start-up began 2 s ago: that slot still runs
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert len(ran) >= 3
    assert all(t.microsecond == 0 for t in ran)  # the slots, not the moments they ran
    assert ran[0] < now  # the slot due during start-up ran, within the grace
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ran)][:2] == [1.0, 1.0]
