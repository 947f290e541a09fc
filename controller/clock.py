"""The one injected clock: UTC wall time, monotonic time, sleep.

Nothing else in chamberd calls ``time.time``, ``time.sleep`` or ``datetime.now`` (ruff's
banned-api rule enforces it). Three implementations:

:class:`SystemClock`
    Real time, for the daemon in the field.
:class:`ScaledClock`
    Time that runs ``speed`` times faster than real time from a chosen start: the demo and
    the simulator run a day in minutes without shortening a closure (a 120 s closure still
    holds 120 samples of simulated time).
:class:`FakeClock`
    Virtual time for tests: ``sleep`` advances it at once, so a simulated day of cycles is
    a fast test. Several threads may sleep on it; time advances to the earliest wake-up
    once every registered thread is waiting (see :meth:`FakeClock.attach`).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
import zoneinfo
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "ScaledClock", "SystemClock", "local_and_utc"]

UTC = dt.UTC


@runtime_checkable
class Clock(Protocol):
    """What chamberd needs of time."""

    def now(self) -> dt.datetime:
        """The current UTC instant (timezone-aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Real time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)  # noqa: TID251 - the one place real time is read

    def monotonic(self) -> float:
        return time.monotonic()  # noqa: TID251

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)  # noqa: TID251


class ScaledClock:
    """Time running ``speed`` times faster than real time, from ``start`` (UTC).

    ``jump(seconds)`` moves wall time (not monotonic time) to inject a clock jump.
    """

    def __init__(
        self,
        speed: float = 1.0,
        start: dt.datetime | None = None,
        *,
        anchor_unix: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = float(speed)
        self._real0 = time.monotonic()  # noqa: TID251
        if anchor_unix is not None:
            # ``start`` was the site time at real Unix time ``anchor_unix``: processes that
            # share (start, anchor, speed) share one timeline (a simulator and the daemons
            # started, killed and restarted against it)
            self._real0 -= time.time() - anchor_unix  # noqa: TID251
        self.anchor_unix = time.time() if anchor_unix is None else anchor_unix  # noqa: TID251
        self._start = start or dt.datetime.now(UTC)  # noqa: TID251
        if self._start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed  # noqa: TID251

    def now(self) -> dt.datetime:
        with self._lock:
            offset = self._offset_s
        return self._start + dt.timedelta(seconds=self.monotonic() + offset)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)  # noqa: TID251

    @property
    def timeline(self) -> str:
        """``START@ANCHOR``: what ``chamberd run --timeline`` needs to share this clock."""
        return f"{self._start.isoformat()}@{self.anchor_unix:.6f}"

    @classmethod
    def from_timeline(cls, timeline: str, speed: float) -> ScaledClock:
        """The clock of :attr:`timeline` (``2026-07-01T04:00:00+00:00@1790000000.0``)."""
        start_text, sep, anchor_text = timeline.rpartition("@")
        try:
            if not sep:
                raise ValueError("expected START@UNIX_TIME")
            start = dt.datetime.fromisoformat(start_text)
            if start.tzinfo is None:
                raise ValueError("the start needs a UTC offset")
            return cls(speed=speed, start=start, anchor_unix=float(anchor_text))
        except ValueError as exc:
            raise ValueError(f"timeline {timeline!r}: {exc}") from exc

    def jump(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (a clock jump); monotonic time is unaffected."""
        with self._lock:
            self._offset_s += seconds


class FakeClock:
    """Virtual time for tests; ``sleep`` returns at once with time advanced.

    Single-threaded use needs nothing more. With several threads, each thread that sleeps
    on the clock should be registered with :meth:`attach` (a context manager); virtual time
    then advances only when every attached thread is asleep, to the earliest wake-up, so
    threads interleave as they would in real time.
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._start = start or dt.datetime(2026, 1, 1, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._t = 0.0
        self._offset_s = 0.0
        self._cond = threading.Condition()
        self._attached: set[int] = set()
        self._sleepers: list[tuple[float, int, int]] = []  # (wake time, seq, thread id)
        self._seq = itertools.count()

    def now(self) -> dt.datetime:
        with self._cond:
            return self._start + dt.timedelta(seconds=self._t + self._offset_s)

    def monotonic(self) -> float:
        with self._cond:
            return self._t

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (from a test, not a sleeper)."""
        with self._cond:
            self._t += max(0.0, seconds)
            self._cond.notify_all()

    def jump(self, seconds: float) -> None:
        """Step the wall clock by ``seconds``; monotonic time is unaffected."""
        with self._cond:
            self._offset_s += seconds

    def attach(self) -> _Attachment:
        """Register the calling thread as a sleeper for the duration of a ``with`` block."""
        return _Attachment(self)

    def _maybe_advance(self) -> None:
        # called with the condition held
        if not self._sleepers:
            return
        asleep = {tid for _, _, tid in self._sleepers}
        if self._attached and not self._attached <= asleep:
            return  # some attached thread is still working
        wake = self._sleepers[0][0]
        if wake > self._t:
            self._t = wake
        self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        tid = threading.get_ident()
        with self._cond:
            if not self._attached or tid not in self._attached:
                self._t += max(0.0, seconds)  # unattached: advance at once
                self._cond.notify_all()
                return
            wake = self._t + max(0.0, seconds)
            entry = (wake, next(self._seq), tid)
            heapq.heappush(self._sleepers, entry)
            self._maybe_advance()
            while self._t < wake:
                self._cond.wait()
            self._sleepers.remove(entry)
            heapq.heapify(self._sleepers)
            self._maybe_advance()


class _Attachment:
    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def __enter__(self) -> FakeClock:
        with self._clock._cond:
            self._clock._attached.add(threading.get_ident())
        return self._clock

    def __exit__(self, *exc: object) -> None:
        with self._clock._cond:
            self._clock._attached.discard(threading.get_ident())
            self._clock._maybe_advance()


def local_and_utc(at: dt.datetime, time_zone: str) -> str:
    """``at`` for people: the site's local time and UTC.

    >>> local_and_utc(dt.datetime(2026, 7, 1, 4, 30, tzinfo=dt.UTC), "Asia/Shanghai")
    '2026-07-01 12:30:00 CST (04:30:00 UTC)'
    """
    local = at.astimezone(zoneinfo.ZoneInfo(time_zone))
    utc = at.astimezone(dt.UTC)
    same_day = local.date() == utc.date()
    return (
        f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or time_zone} "
        f"({utc:%H:%M:%S} UTC{'' if same_day else f' {utc:%Y-%m-%d}'})"
    )
