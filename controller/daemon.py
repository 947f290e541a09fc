"""The site daemon: rounds of chamber cycles, safe hardware, alarms, restart recovery.

:class:`Daemon` is the composition of a site: its store, its analysers (one per analyser
group; chambers sharing an analyser run in sequence, groups run in parallel), its
actuators and aux sensors, and its alarm sink. It does not know where the time comes
from or which drivers it has: ``chamberd run`` builds it with real drivers and the system
clock, the demo and the tests with the simulator and a scaled or virtual clock.

Safe state (all lids open, valves closed, pump as configured) on start-up, on stop
(SIGTERM/SIGINT), on any unhandled error in a round, when an analyser is silent longer than
``cycle.analyser_silent_s``, when a lid does not confirm, and when the site database
cannot be written. A chamber that fails ``cycle.max_failures`` times in a row is taken out
of service with an alarm and retried after ``cycle.retry_after_min``; the other chambers
keep measuring.

Faults of shared parts are not charged to the chambers: an analyser that fails skips its
group for the round, a Modbus line (relay board, gateway) that does not answer skips the
chambers that need it, each with one alarm when it fails and one ``*_restored`` event when
it answers again (:mod:`chamberd.controller.health` keeps each device's own last good
reading and last error).

What an operator sees: at INFO one line at start-up (site, chambers, analysers, the next
round in local and UTC time), one per round (start; end with done/aborted/skipped counts
and duration) and one per observation (chamber, flux and unit, model, R2, flags, or the
abort reason); fault lines are short (:func:`~chamberd.controller.errors.operator_message`)
and the full detail is logged at DEBUG. A heartbeat (pid, the round, what each analyser
group is doing, the next round) is written to the store's ``heartbeat`` table at each
phase and at least every ``HEARTBEAT_S`` seconds, and copied into the live health file;
``chamberd status`` tells from it whether the daemon is alive.

When the site database cannot be written (a full disk above all) the daemon opens every
lid, raises one critical alarm (delivered to ``alarms.command`` although it cannot be
recorded), keeps events and the completions of the interrupted observations in memory,
measures nothing, and tries again with a back-off (10 s doubling to 5 min, and at every
round slot). When a write succeeds again it records what it kept, the rounds it skipped
(as missed) and a ``storage_restored`` event, and measures again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shlex
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, FakeClock, SystemClock, local_and_utc
from .config import SiteConfig, config_hash
from .cycle import CycleOutcome, CycleRunner, Stopped
from .errors import (
    ChamberError,
    ConfigError,
    HardwareError,
    ProtocolError,
    StorageError,
    SyncError,
)
from .hardware import AuxSensors, ChamberActuators, GasAnalyser
from .health import (
    DETAIL_CHARS,
    DeviceHealth,
    HealthBoard,
    LiveHealthFile,
    TrackedActuators,
    brief,
    chamber_lines,
    open_lids,
    refusals,
)
from .output import flux_text
from .schedule import APSchedulerRunner, ClockRunner, make_trigger, slots_between
from .store import SiteStore, iso, parse_iso

__all__ = ["HEARTBEAT_S", "AlarmSink", "Daemon", "observation_line", "software_version"]

log = logging.getLogger(__name__)

_LEVELS = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_MAX_MISSED_EVENTS = 500
_MAX_PENDING_EVENTS = 2000  # events kept in memory while the database cannot be written
_MESSAGE_CHARS = 300  # an event's message: one line; the full text goes to data["detail"]
_STORAGE_RETRY_S = (10.0, 300.0)  # back-off of the attempts to write again
_LID_RETRY_S = (10.0, 300.0)  # back-off of the attempts to open a lid on a dead line
#: the heartbeat is written at each phase and at least this often [s, site clock]
HEARTBEAT_S = 30.0


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover
        return "0+unknown"


def bounded(message: str, data: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """An event's message as one short line; what was cut (frame traces, long lists) is
    kept, bounded, in ``data["detail"]``."""
    full = " ".join(str(message).split())
    short = brief(full, _MESSAGE_CHARS)
    out = dict(data or {})
    if short != full and "detail" not in out:
        out["detail"] = full[:DETAIL_CHARS]
    return short, out


def _short_list(names: list[str], *, at_most: int = 6) -> str:
    """Names joined, a long list shortened to its first and last (one short log line).

    >>> _short_list(["C1", "C2"])
    'C1, C2'
    >>> _short_list([f"C{i:02d}" for i in range(1, 17)])
    'C01, ..., C16'
    """
    if len(names) <= at_most:
        return ", ".join(names)
    return f"{names[0]}, ..., {names[-1]}"


class AlarmSink:
    """Records every alarm as an event; warnings and worse also go to ``alarms.command``.

    The command receives one JSON object on stdin (site, level, kind, message, chamber,
    at, data); it runs in a background thread so a slow mail server never delays a cycle.
    A failing command is itself recorded (not re-alarmed).

    Delivery never depends on the database: when an event cannot be recorded it is kept
    in memory (in order, at most ``_MAX_PENDING_EVENTS``; beyond that they go to the log
    only), the alarm is delivered all the same, and ``on_storage_error`` is told;
    :meth:`flush` records the kept events once the database can be written.
    """

    def __init__(
        self,
        cfg: SiteConfig,
        store: SiteStore,
        clock: Clock,
        *,
        on_storage_error: Callable[[StorageError, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.on_storage_error = on_storage_error
        self.sent: deque[dict[str, Any]] = deque(maxlen=1000)  # the latest, for tests
        self.pending: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self._lock = threading.RLock()

    def __call__(
        self,
        level: str,
        kind: str,
        message: str,
        *,
        chamber: str | None = None,
        observation_uuid: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        at = self.clock.now()
        message, details = bounded(message, data)
        log.log(_LEVELS.get(level, logging.INFO), "%s: %s", kind, message)
        if details.get("detail") and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: detail: %s", kind, details["detail"])
        event = {
            "at": at,
            "level": level,
            "kind": kind,
            "message": message,
            "chamber": chamber,
            "observation_uuid": observation_uuid,
            "data": details,
        }
        failed = self.record(event)
        if level != "info":
            payload = {
                "site": self.cfg.site.id,
                "level": level,
                "kind": kind,
                "message": message,
                "chamber": chamber,
                "observation_uuid": observation_uuid,
                "at": iso(at),
                "data": details,
            }
            self.sent.append(payload)
            if self.cfg.alarms.command:
                threading.Thread(target=self._deliver, args=(payload,), daemon=True).start()
        if failed is not None and self.on_storage_error is not None:
            self.on_storage_error(failed, f"recording the event {kind!r}")

    def record(self, event: dict[str, Any]) -> StorageError | None:
        """Record ``event`` now, or keep it (after those already kept); the error, if any."""
        with self._lock:
            if not self.pending:
                try:
                    self.store.record_event(
                        event["level"],
                        event["kind"],
                        event["message"],
                        event["at"],
                        chamber=event.get("chamber"),
                        observation_uuid=event.get("observation_uuid"),
                        data=event.get("data") or None,
                    )
                    return None
                except StorageError as exc:
                    self._keep(event)
                    return exc
            self._keep(event)
            return None

    def _keep(self, event: dict[str, Any]) -> None:
        if len(self.pending) >= _MAX_PENDING_EVENTS:
            self.dropped += 1
            log.warning(
                "event not recorded (the database cannot be written and %d are kept): %s %s %s: %s",
                _MAX_PENDING_EVENTS,
                iso(event["at"]),
                event["level"],
                event["kind"],
                event["message"],
            )
            return
        self.pending.append(event)

    def flush(self) -> int:
        """Record the kept events in one transaction; their number. StorageError if not."""
        with self._lock:
            events = list(self.pending)
            if self.dropped:
                events.append(
                    {
                        "at": self.clock.now(),
                        "level": "warning",
                        "kind": "events_dropped",
                        "message": f"{self.dropped} event(s) could not be kept while the "
                        "database could not be written (they are in the log)",
                        "data": {"dropped": self.dropped},
                    }
                )
            if not events:
                return 0
            self.store.record_events(events)
            self.pending.clear()
            self.dropped = 0
            return len(events)

    def _deliver(self, payload: dict[str, Any]) -> None:
        command = self.cfg.alarms.command or ""
        try:
            result = subprocess.run(
                shlex.split(command),
                input=json.dumps(payload),
                text=True,
                capture_output=True,
                timeout=self.cfg.alarms.timeout_s,
                check=False,
            )
            if result.returncode != 0:
                raise OSError(f"exit status {result.returncode}: {result.stderr.strip()[:200]}")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            message, details = bounded(f"alarm command {command!r} failed: {exc}", None)
            log.warning("alarm_failed: %s", message)
            failed = self.record(
                {
                    "at": self.clock.now(),
                    "level": "warning",
                    "kind": "alarm_failed",
                    "message": message,
                    "data": details,
                }
            )
            if failed is not None and self.on_storage_error is not None:
                self.on_storage_error(failed, "recording a failed alarm")


@dataclass
class _Service:
    failures: int = 0
    out_until: dt.datetime | None = None


@dataclass
class RoundResult:
    scheduled_at: dt.datetime
    outcomes: list[CycleOutcome] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(o.failed for o in self.outcomes)


class Daemon:
    """A site's measurement loop. Call :meth:`startup`, then :meth:`run` or :meth:`run_round`."""

    def __init__(
        self,
        cfg: SiteConfig,
        *,
        clock: Clock,
        store: SiteStore,
        analysers: Mapping[str, GasAnalyser],
        actuators: ChamberActuators,
        aux: AuxSensors | None = None,
        alarm: AlarmSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.analysers = dict(analysers)
        self.board = HealthBoard(clock)
        self._refused_before: dict[str, bool] = {}  # per component: its fault was a refusal
        self.board.listeners.append(self._health_changed)
        self.actuators = TrackedActuators(actuators, cfg, self.board)
        self.aux = aux
        self.alarm = alarm or AlarmSink(cfg, store, clock)
        if isinstance(self.alarm, AlarmSink) and self.alarm.on_storage_error is None:
            self.alarm.on_storage_error = self._storage_failed
        self.stop_event = threading.Event()
        self.config_hash = config_hash(cfg)
        self.version = software_version()
        self.service = {c.id: _Service() for c in cfg.chambers}
        self.analyser_info: dict[str, dict[str, str]] = {}
        self.rounds: deque[RoundResult] = deque(maxlen=4)  # the latest few, in memory
        self._started = False
        self.started_at: dt.datetime | None = None
        self._next_sync: dt.datetime | None = None
        self._sync_backoff_min: float | None = None
        self._idle = threading.Event()
        self._idle.set()
        # the site database: while it cannot be written, what is to be written waits here
        self.storage_down = threading.Event()
        self._storage_lock = threading.RLock()
        self._storage_since: dt.datetime | None = None
        self._storage_backoff_s = _STORAGE_RETRY_S[0]
        self._storage_retry_at = 0.0
        self._deferred: deque[tuple[str, Callable[[], None]]] = deque()
        self._skipped_rounds: list[dt.datetime] = []
        self._startup_pending = False
        self._lid_backoff_s = _LID_RETRY_S[0] / 2
        self._lid_retry_at = 0.0
        self.live = LiveHealthFile(f"{store.path}.health")
        # calibrations (issue 11): analysers whose port was released to a calibration, and
        # groups skipped for one (a ``calibration_resumed`` event when measured again)
        self._released: set[str] = set()
        self._calibration_skipped: set[str] = set()
        self._calibration_check_at = -1e18
        self._active_groups: set[str] = set()  # groups measuring in the current round
        self._powered: set[str] = set()  # analysers whose power relay is on (issue 13)
        self._pump_on = False  # switched on for its warm-up by _power_on
        self._calibration_lock = threading.RLock()
        # what the daemon is doing, for the heartbeat: per analyser group its chamber and
        # phase; the round in progress; the next round
        self.activity: dict[str, dict[str, Any]] = {}
        self.round_at: dt.datetime | None = None
        self.next_round_at: dt.datetime | None = None
        self.state = "starting"
        self._beat_lock = threading.RLock()
        self._beat_mono = -math.inf

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (real time) until no round is running; True when idle."""
        return self._idle.wait(timeout_s)

    # --- health ---------------------------------------------------------------------------

    def _health_changed(self, entry: DeviceHealth, ok: bool, since: dt.datetime | None) -> None:
        """One alarm when a shared part fails, one event when it answers again."""
        component = entry.component
        if not ok:
            self._refused_before[component] = entry.refused
        if component.startswith("modbus:"):
            line = component.split(":", 1)[1]
            needs = [
                c.id
                for c in self.cfg.chambers
                if c.enabled and component in chamber_lines(self.cfg, c)
            ]
            what = f"chambers {', '.join(needs)}" if needs else "its sensors"
            if entry.refused:
                # the device refuses commands: the cycle's own alarm (hardware_error,
                # safe_state_failed) says so; the health entry shows it as a FAULT
                log.info("modbus line %s: the device refuses: %s", line, entry.last_error)
            elif ok and since is not None and self._refused_before.pop(component, False):
                self.alarm(
                    "info",
                    "modbus_device_restored",
                    f"modbus line {line}: the device accepts commands again (refused since "
                    f"{_when(since)})",
                    data={"line": line},
                )
            elif ok:
                self.alarm(
                    "info",
                    "modbus_line_restored",
                    f"modbus line {line} answers again (down since {_when(since)}); "
                    f"{what} measured from now on",
                    data={"line": line},
                )
            else:
                closed = sorted(self.actuators.closed_lids & set(needs))
                self.alarm(
                    "critical" if closed else "error",
                    "modbus_line_down",
                    f"modbus line {line} not answering; {what} skipped until it answers "
                    "(not charged to the chambers)"
                    + (f"; the lid of {', '.join(closed)} may still be closed" if closed else "")
                    + f": {brief(entry.last_error or '', 120)}",
                    data={
                        "line": line,
                        "chambers": needs,
                        "lids_maybe_closed": closed,
                        "error": entry.last_error,
                    },
                )
        elif component == "aux":
            if ok:
                self.alarm("info", "aux_restored", "aux sensors read again")
            else:
                self.alarm(
                    "warning",
                    "aux_error",
                    f"aux sensors not read ({entry.last_error}); fluxes use the analyser's "
                    "cell values or are not computed until they are",
                )
        elif component.startswith("analyser:") and ok:
            self.alarm(
                "info",
                "analyser_restored",
                f"analyser {component.split(':', 1)[1]} reads again",
            )
        self._write_live()

    def _persist_health(self) -> None:
        """Copy changed health entries to the database (the live file always)."""
        if not self.storage_down.is_set():
            entries = [e for e in self.board.take_dirty() if e.ok is not None]
            try:
                self.store.write_health([_health_row(e, self.clock.now()) for e in entries])
            except StorageError as exc:
                self.board.mark_dirty(e.component for e in entries)
                self._storage_failed(exc, "writing the health table")
        self._write_live()

    def _write_live(self) -> None:
        pending = list(getattr(self.alarm, "pending", ()))
        self.live.write(
            {
                "site": self.cfg.site.id,
                "pid": os.getpid(),
                "written_at": iso(self.clock.now()),
                "storage_down": self.storage_down.is_set(),
                "heartbeat": self._beat(),
                "health": [e.as_dict() for e in self.board.entries()],
                "pending_events": len(pending),
                "recent_pending_events": [
                    {
                        "at": iso(e["at"]),
                        "level": e["level"],
                        "kind": e["kind"],
                        "chamber": e.get("chamber"),
                        "message": e["message"],
                    }
                    for e in pending[-10:]
                ],
            }
        )

    # --- the heartbeat --------------------------------------------------------------------

    def next_round(
        self, after: dt.datetime | None = None, *, inclusive: bool = False
    ) -> dt.datetime:
        """The first round slot after ``after`` (default: now; at it when ``inclusive``), UTC."""
        now = after or self.clock.now()
        trigger = make_trigger(self.cfg.schedule, self.cfg.site.time_zone, around=now)
        step = dt.timedelta(microseconds=0 if inclusive else 1)
        slot = trigger.get_next_fire_time(None, now + step)
        return slot.astimezone(dt.UTC)

    def _beat(self) -> dict[str, Any]:
        with self._beat_lock:
            activity = [dict(a) for _, a in sorted(self.activity.items())]
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "at": iso(self.clock.now()),
            "state": self.state,
            "started_at": iso(self.started_at) if self.started_at else None,
            "round_at": iso(self.round_at) if self.round_at else None,
            "activity": activity,
            "next_round_at": iso(self.next_round_at) if self.next_round_at else None,
            "software_version": self.version,
        }

    def heartbeat(self, *, force: bool = False) -> None:
        """Write the heartbeat to the store (and the live file): now when ``force``, else
        when ``HEARTBEAT_S`` has passed. A database that cannot be written only skips it
        (the live file still has it)."""
        with self._beat_lock:  # one at a time: the groups' beats are written in order
            mono = self.clock.monotonic()
            if not force and mono - self._beat_mono < HEARTBEAT_S:
                return
            self._beat_mono = mono
            beat = self._beat()
            if not self.storage_down.is_set():
                try:
                    self.store.write_heartbeat(beat)
                except StorageError as exc:  # the next write of anything raises the fault
                    log.debug("heartbeat not written: %s", brief(exc))
            self._write_live()

    def _progress(self, analyser_id: str, chamber: str, phase: str, uuid: str | None) -> None:
        """A cycle's phase (or sample): the heartbeat, at once when the phase changed."""
        with self._beat_lock:
            known = self.activity.get(analyser_id)
            changed = known is None or (known["chamber"], known["phase"]) != (chamber, phase)
            if changed:
                self.activity[analyser_id] = {
                    "analyser": analyser_id,
                    "chamber": chamber,
                    "phase": phase,
                    "since": iso(self.clock.now()),
                    "observation_uuid": uuid,
                }
        self.heartbeat(force=changed)

    def _when_local(self, at: dt.datetime) -> str:
        return local_and_utc(at, self.cfg.site.time_zone)

    # --- the site database ----------------------------------------------------------------

    def _storage_failed(self, exc: StorageError, doing: str) -> None:
        """The database cannot be written: every lid open, one alarm, measuring paused."""
        with self._storage_lock:
            first = not self.storage_down.is_set()
            self.storage_down.set()
            self.board.fault("storage", _without_path(exc, self.store.path))
            if first:
                self._storage_since = self.clock.now()
                self._storage_backoff_s = _STORAGE_RETRY_S[0]
                self._storage_retry_at = self.clock.monotonic() + self._storage_backoff_s
        if first:
            complete = self.safe_state("the site database cannot be written")
            cause = brief(_without_path(exc, self.store.path), 120)
            self.alarm(
                "critical",
                "storage_failed",
                f"site database {self.store.path} cannot be written ({cause}) "
                f"while {doing}; all lids commanded open{'' if complete else ' (incomplete)'}; "
                "measuring paused until it can be written; events kept in memory",
                data={"error": str(exc)[:DETAIL_CHARS], "while": doing},
            )
        self._write_live()

    def _guard(self, doing: str, write: Callable[[], Any], *, defer: bool = True) -> bool:
        """Run a database write; when it fails, the storage fault (and the write kept for
        later when ``defer``). True when written."""
        if self.storage_down.is_set():
            if defer:
                self._deferred.append((doing, write))
            return False
        try:
            write()
        except StorageError as exc:
            if defer:
                self._deferred.append((doing, write))
            self._storage_failed(exc, doing)
            return False
        return True

    def recover_storage(self, *, force: bool = False) -> bool:
        """Write what was kept while the database could not be written; True when it can be
        written again (also when it never failed). Backs off unless ``force``."""
        if not self.storage_down.is_set():
            return True
        with self._storage_lock:
            if not force and self.clock.monotonic() < self._storage_retry_at:
                return False
            counts = {"events": 0, "writes": 0}
            try:
                self._write_kept(counts)
            except StorageError as exc:
                self.board.fault("storage", _without_path(exc, self.store.path))
                self._storage_backoff_s = min(2 * self._storage_backoff_s, _STORAGE_RETRY_S[1])
                self._storage_retry_at = self.clock.monotonic() + self._storage_backoff_s
                log.info(
                    "site database still cannot be written (%s); next attempt in %.0f s",
                    brief(exc, 120),
                    self._storage_backoff_s,
                )
                self._write_live()
                return False
            since = self._storage_since
            self.storage_down.clear()
            self._storage_since = None
            self.board.good("storage", "writable")
        self.alarm(
            "info",
            "storage_restored",
            f"site database {self.store.path} can be written again (it could not since "
            f"{iso(since) if since else '?'}); recorded {counts['events']} kept event(s) "
            f"and {counts['writes']} kept write(s)",
            data=counts,
        )
        self._persist_health()
        return True

    def _write_kept(self, counts: dict[str, int]) -> None:
        if isinstance(self.alarm, AlarmSink):
            counts["events"] += self.alarm.flush()
        if self._startup_pending:
            aborted = self._recover_last_run(self.clock.now())
            self._startup_pending = False
            if aborted:
                self.alarm(
                    "info",
                    "restart_recovered",
                    f"{len(aborted)} observation(s) interrupted by the last stop marked "
                    "aborted (restart)",
                    data={"aborted": aborted},
                )
            self._record_downtime(self.started_at or self.clock.now())
        while self._deferred:
            _, write = self._deferred[0]
            write()
            self._deferred.popleft()
            counts["writes"] += 1
        while self._skipped_rounds:
            self._record_missed(self._skipped_rounds[0], "the site database could not be written")
            self._skipped_rounds.pop(0)
        self.store.write_health(
            [_health_row(e, self.clock.now()) for e in self.board.entries() if e.ok is not None]
        )
        if isinstance(self.alarm, AlarmSink) and self.alarm.pending:
            # an event of this very recovery could not be recorded
            raise StorageError(f"{self.store.path}: events still cannot be recorded")

    def idle(self) -> None:
        """Called by the schedule runners while they wait for the next round: retry writing
        to the database, and opening lids that may have been left closed (their line did
        not answer), each with its back-off."""
        if self.storage_down.is_set():
            self.recover_storage()
        if self.actuators.closed_lids and self._idle.is_set():
            self._reopen_lids()
        if self._idle.is_set() and not self.storage_down.is_set():
            now = self.clock.monotonic()
            if now - self._calibration_check_at >= _CALIBRATION_CHECK_S:
                self._calibration_check_at = now
                self._lend_idle_analysers(self.calibration_locks())
        if self._idle.is_set():
            self.heartbeat()

    def _reopen_lids(self) -> None:
        now = self.clock.monotonic()
        if now < self._lid_retry_at:
            return
        chambers = [c for c in self.cfg.chambers if c.id in self.actuators.closed_lids]
        failures = open_lids(self.actuators, chambers)
        if failures:
            self._lid_backoff_s = min(2 * self._lid_backoff_s, _LID_RETRY_S[1])
            self._lid_retry_at = now + self._lid_backoff_s
        else:
            log.info("lids of %s commanded open", ", ".join(c.id for c in chambers))
            self._lid_backoff_s = _LID_RETRY_S[0] / 2
            self._lid_retry_at = 0.0
        self._persist_health()

    # --- life cycle -----------------------------------------------------------------------

    def safe_state(self, reason: str, *, persist: bool = True) -> bool:
        """All lids open, valves closed, pump as configured; True when every command went.

        Needs no database: a line that does not answer is one health fault (and one
        alarm); a device that refuses is a critical ``safe_state_failed`` alarm."""
        failures = open_lids(self.actuators, self.cfg.chambers)
        try:
            if self.cfg.pump.mode == "always":
                self.actuators.set_pump(True)
            elif self.cfg.pump.coil is not None:
                self.actuators.set_pump(False)
        except (HardwareError, ProtocolError) as exc:
            failures.append(("pump", "switch pump", exc))
        refused = refusals(failures)
        if refused is not None:
            self.alarm(
                "critical",
                "safe_state_failed",
                f"safe state ({reason}) incomplete: {refused[0]}",
                data={"detail": refused[1]},
            )
        for _, _, exc in failures:
            log.warning("safe state (%s): %s", reason, brief(exc))
        if persist:
            self._persist_health()
        else:
            self._write_live()
        return not failures

    def startup(self) -> None:
        """Safe state first (it needs no database), then the recovery of an interrupted run,
        analyser set-up and missed rounds; on a database that cannot be written, the
        recovery waits until it can."""
        now = self.clock.now()
        # a slot that fell due less than the misfire grace ago still runs; older ones
        # (and those passed while the daemon was down) are recorded as missed
        self.started_at = now - dt.timedelta(seconds=self.cfg.schedule.misfire_grace_s)
        self.safe_state("start-up", persist=False)  # before anything, the database included
        aborted: list[str] = []
        try:
            aborted = self._recover_last_run(now)
        except StorageError as exc:
            self._startup_pending = True
            self._storage_failed(exc, "starting up")
        waits = "; the site database cannot be written: the recovery of the last run waits"
        self.alarm(
            "warning" if aborted or self._startup_pending else "info",
            "startup",
            f"chamberd {self.version} started (config {self.config_hash})"
            + (
                f"; {len(aborted)} observation(s) interrupted by the last stop marked aborted"
                if aborted
                else ""
            )
            + (waits if self._startup_pending else ""),
            data={"aborted": aborted},
        )
        try:  # an analyser lent to a running calibration is set up when it is returned
            lent = {lock["scope"] for lock in self.store.calibration_locks()}
        except StorageError:
            lent = set()
        for analyser_id, analyser in self.analysers.items():
            if self.cfg.analyser(analyser_id).power is not None:
                continue  # powered and set up around its group's observations
            if f"analyser:{analyser_id}" not in lent:
                self._setup_analyser(analyser_id, analyser)
        if not self._startup_pending:
            try:
                self._record_downtime(self.started_at)
            except StorageError as exc:
                self._startup_pending = True
                self._storage_failed(exc, "recording missed rounds")
        self._persist_health()
        self._started = True
        self.state = "idle"
        self.next_round_at = self.next_round(self.started_at, inclusive=True)
        chambers = [c.id for c in self.cfg.chambers if c.enabled]
        log.info(
            "site %s: %d chamber(s) (%s) on %d analyser(s) (%s), a round every %g min; "
            "next round %s",
            self.cfg.site.id,
            len(chambers),
            _short_list(chambers) or "none enabled",
            len(self.analysers),
            ", ".join(self.analysers),
            self.cfg.schedule.interval_min,
            self._when_local(self.next_round_at),
        )
        self.heartbeat(force=True)

    def _recover_last_run(self, now: dt.datetime) -> list[str]:
        """Chambers out of service stay out; the configured chambers are recorded;
        observations left running are marked aborted (their uuids)."""
        for row in self.store.query(
            "SELECT id, out_of_service_until FROM chambers WHERE out_of_service_until IS NOT NULL"
        ):
            if row["id"] in self.service:  # out of service survives a restart
                self.service[row["id"]].out_until = parse_iso(row["out_of_service_until"])
        self.store.sync_chambers(self.cfg, now)
        return self.store.abort_running("restart", now)

    def _setup_analyser(self, analyser_id: str, analyser: GasAnalyser) -> bool:
        cfg = self.cfg.analyser(analyser_id)
        component = f"analyser:{analyser_id}"
        try:
            info = analyser.identify()
            analyser.configure(output_interval_s=cfg.output_interval_s)
        except (HardwareError, ProtocolError) as exc:
            if self.board.fault(component, exc):
                self.alarm(
                    "error",
                    "analyser_setup",
                    f"analyser {analyser_id}: cannot be set up ({brief(exc)}); "
                    "its chambers are skipped until it answers",
                    data={"detail": str(exc)[:DETAIL_CHARS]},
                )
            else:
                log.info("analyser %s still cannot be set up: %s", analyser_id, brief(exc))
            return False
        self.analyser_info[analyser_id] = {"model": info.model, "serial": info.serial}
        with self._calibration_lock:
            self._released.discard(analyser_id)  # its port is the daemon's again
        # identified, not yet read: its health comes from its first reading
        self.board.describe(component, f"{info.model} {info.serial}".strip())
        return True

    def _record_downtime(self, now: dt.datetime) -> None:
        last = self.store.last_round()
        if last is None:
            return
        trigger = make_trigger(self.cfg.schedule, self.cfg.site.time_zone, around=now)
        slots = slots_between(trigger, parse_iso(last["scheduled_at"]), now)
        for slot in slots[:_MAX_MISSED_EVENTS]:
            self._record_missed(slot, "the daemon was not running")
        if len(slots) > _MAX_MISSED_EVENTS:
            self.alarm(
                "warning", "missed_rounds", f"{len(slots) - _MAX_MISSED_EVENTS} more rounds missed"
            )

    def missed(self, scheduled_at: dt.datetime, why: str = "late (misfire grace exceeded)") -> None:
        if self.storage_down.is_set():
            self._skip_round(scheduled_at)
            return
        try:
            self._record_missed(scheduled_at, why)
        except StorageError as exc:
            self._storage_failed(exc, "recording a missed round")
            self._skip_round(scheduled_at)

    def _record_missed(self, scheduled_at: dt.datetime, why: str) -> None:
        if self.store.record_missed_round(scheduled_at):
            self.alarm(
                "warning",
                "missed_round",
                f"round of {iso(scheduled_at)} missed: {why}",
                data={"scheduled_at": iso(scheduled_at)},
            )

    def _skip_round(self, scheduled_at: dt.datetime) -> None:
        log.warning("round of %s not run: the site database cannot be written", iso(scheduled_at))
        if len(self._skipped_rounds) < _MAX_MISSED_EVENTS:
            self._skipped_rounds.append(scheduled_at)

    def shutdown(self, reason: str = "stop requested") -> None:
        self.stop_event.set()
        self.safe_state(reason)
        self.recover_storage(force=True)
        self.alarm("info", "shutdown", f"chamberd stopped: {reason}")
        self.state = "stopped"
        with self._beat_lock:
            self.activity.clear()
        self.round_at = None
        self.heartbeat(force=True)
        pending = list(getattr(self.alarm, "pending", ()))
        if pending or self._deferred:
            log.warning(
                "stopping with the site database not writable: %d event(s) and %d write(s) "
                "not recorded; observations left running are marked aborted at the next start",
                len(pending),
                len(self._deferred),
            )
            for event in pending:
                log.warning(
                    "not recorded: %s %s %s: %s",
                    iso(event["at"]),
                    event["level"],
                    event["kind"],
                    event["message"],
                )
        self._persist_health()

    # --- rounds ---------------------------------------------------------------------------

    def _in_service(self, chamber_id: str, now: dt.datetime) -> bool:
        service = self.service[chamber_id]
        if service.out_until is None:
            return True
        if now >= service.out_until:
            self.alarm(
                "info",
                "retry_chamber",
                f"{chamber_id}: retrying after being out of service",
                chamber=chamber_id,
            )
            return True
        return False

    def _account(self, outcome: CycleOutcome) -> None:
        service = self.service[outcome.chamber]
        chamber = outcome.chamber
        if not outcome.failed:
            if service.out_until is not None:
                self.alarm(
                    "info",
                    "back_in_service",
                    f"{outcome.chamber}: back in service",
                    chamber=outcome.chamber,
                )
            if service.out_until is not None or service.failures:
                self._guard(
                    f"putting {chamber} back in service",
                    lambda: self.store.update_chamber_service(chamber, None, None),
                )
            service.failures = 0
            service.out_until = None
            return
        service.failures += 1
        if service.failures >= self.cfg.cycle.max_failures and service.out_until is None:
            service.out_until = self.clock.now() + dt.timedelta(
                minutes=self.cfg.cycle.retry_after_min
            )
            self.alarm(
                "error",
                "out_of_service",
                f"{outcome.chamber}: {service.failures} failures in a row "
                f"(last: {outcome.reason or 'lid fault'}); "
                f"out of service until {iso(service.out_until)}",
                chamber=outcome.chamber,
            )
        elif service.out_until is not None:  # a failed retry
            service.out_until = self.clock.now() + dt.timedelta(
                minutes=self.cfg.cycle.retry_after_min
            )
        out_until, reason = service.out_until, outcome.reason
        self._guard(
            f"recording the service of {chamber}",
            lambda: self.store.update_chamber_service(chamber, out_until, reason),
        )

    def _group(
        self, analyser_id: str, round_id: int | None, result: RoundResult, began: float
    ) -> None:
        with self._calibration_lock:
            self._active_groups.add(analyser_id)
        try:
            self._group_chambers(analyser_id, round_id, result, began)
        finally:
            with self._calibration_lock:
                self._active_groups.discard(analyser_id)
            self._power_off(analyser_id)
            # a calibration that took this analyser after its last chamber gets the port
            # now, not only when the whole round has ended
            self._lend_idle_analysers(self.calibration_locks())

    # --- power (issue 13): relays around a group's observations ----------------------------

    def _switched(self, analyser_id: str) -> list[str]:
        """The analysers of the group's loop that have a power relay."""
        loop = next((c.loop for c in self.cfg.chambers if c.analyser == analyser_id), [analyser_id])
        return [a for a in loop if self.cfg.analyser(a).power is not None]

    def _power_on(self, analyser_id: str) -> None:
        """Switch on the group's relayed analysers (and the pump, when it has a warm-up)
        and wait the longest warm-up of those that were off; they are set up afterwards."""
        set_power = getattr(self.actuators, "set_analyser_power", None)
        warmup = 0.0
        for name in self._switched(analyser_id):
            if set_power is None:
                break
            if name not in self._powered:
                try:
                    set_power(name, True)
                except (HardwareError, ProtocolError) as exc:
                    self.alarm(
                        "error",
                        "power_failed",
                        f"analyser {name}: its power relay did not switch on ({brief(exc)})",
                    )
                    continue
                self._powered.add(name)
                self.analyser_info.pop(name, None)  # a fresh start: identify it again
                warmup = max(warmup, self.cfg.analyser(name).warmup_s)
        pump = self.cfg.pump
        if pump.mode == "measuring" and pump.warmup_s > 0 and not self._pump_on:
            try:
                self.actuators.set_pump(True)
                self._pump_on = True
                warmup = max(warmup, pump.warmup_s)
            except (HardwareError, ProtocolError) as exc:
                log.info("pump: cannot switch on for its warm-up: %s", brief(exc))
        if warmup > 0:
            log.info("group %s: warming up for %g s", analyser_id, warmup)
            # the heartbeat goes on while it waits (a warm-up of minutes must not read as a
            # dead daemon), and says what the group is doing: the chamber it will measure
            first = next(
                (c.id for c in self.cfg.chambers if c.analyser == analyser_id and c.enabled), "-"
            )
            self._progress(analyser_id, first, "warming_up", None)
            end = self.clock.monotonic() + warmup
            while not self.stop_event.is_set():
                remaining = end - self.clock.monotonic()
                if remaining <= 0:
                    break
                self.clock.sleep(min(remaining, 1.0))
                self.heartbeat()

    def _power_off(self, analyser_id: str) -> None:
        """Switch the group's relayed analysers off once its chambers are done (and the
        pump when no other group measures)."""
        set_power = getattr(self.actuators, "set_analyser_power", None)
        for name in self._switched(analyser_id):
            if set_power is None or name not in self._powered:
                continue
            try:
                set_power(name, False)
            except (HardwareError, ProtocolError) as exc:
                self.alarm(
                    "warning",
                    "power_failed",
                    f"analyser {name}: its power relay did not switch off ({brief(exc)})",
                )
                continue
            self._powered.discard(name)
            self.analyser_info.pop(name, None)
        with self._calibration_lock:
            others = bool(self._active_groups)
        if self._pump_on and not others:
            try:
                self.actuators.set_pump(False)
                self._pump_on = False
            except (HardwareError, ProtocolError) as exc:
                log.info("pump: cannot switch off: %s", brief(exc))

    def _group_chambers(
        self, analyser_id: str, round_id: int | None, result: RoundResult, began: float
    ) -> None:
        analyser = self.analysers[analyser_id]
        chambers = [c for c in self.cfg.chambers if c.analyser == analyser_id and c.enabled]
        self._power_on(analyser_id)
        held = f"analyser:{analyser_id}" in self.calibration_locks()  # its port is lent
        if (
            not held
            and analyser_id not in self.analyser_info
            and not self._setup_analyser(analyser_id, analyser)
        ):
            for chamber in chambers:
                result.outcomes.append(
                    CycleOutcome(chamber.id, "skipped", f"analyser {analyser_id} not available")
                )
            return
        # the other analysers in series in this group's loop
        loop_ids = chambers[0].loop if chambers else [analyser_id]
        for other in loop_ids[1:]:
            if other not in self.analyser_info and not self._setup_analyser(
                other, self.analysers[other]
            ):
                for chamber in chambers:
                    result.outcomes.append(
                        CycleOutcome(chamber.id, "skipped", f"analyser {other} not available")
                    )
                return
        loop = {a: self.analysers[a] for a in loop_ids}
        runner = CycleRunner(
            self.cfg,
            clock=self.clock,
            store=self.store,
            analyser=analyser,
            analyser_id=analyser_id,
            actuators=self.actuators,
            aux=self.aux,
            alarm=self.alarm,
            config_hash=self.config_hash,
            software_version=self.version,
            stop=self.stop_event,
            analyser_info=self.analyser_info.get(analyser_id),
            board=self.board,
            storage_down=self.storage_down,
            progress=lambda chamber, phase, uuid: self._progress(analyser_id, chamber, phase, uuid),
            loop=loop,
        )
        group_fault: str | None = None
        told = False  # one calibration_in_progress event per round per group
        for chamber in chambers:
            if self.stop_event.is_set():
                return
            locks = self.calibration_locks()
            self._lend_idle_analysers(locks)  # those of groups done with this round
            lock = locks.get(f"analyser:{analyser_id}") or locks.get(f"chamber:{chamber.id}")
            if lock is not None:
                told = self._calibration_skip(analyser_id, chamber, lock, result, told)
                continue
            for scope in (f"analyser:{analyser_id}", f"chamber:{chamber.id}"):
                if scope in self._calibration_skipped:
                    self._calibration_resumed(scope)
            if analyser_id not in self.analyser_info and group_fault is None:
                # its port was lent to a calibration: set it up again
                if self._setup_analyser(analyser_id, analyser):
                    runner.analyser_info = self.analyser_info.get(analyser_id) or {}
                else:
                    group_fault = f"analyser {analyser_id} not available after a calibration"
            if self.storage_down.is_set():
                result.outcomes.append(
                    CycleOutcome(chamber.id, "skipped", "the site database cannot be written")
                )
                continue
            if group_fault is not None:
                # the analyser failed: its other chambers wait for the next round (their
                # service record is not charged with the analyser's fault)
                result.outcomes.append(CycleOutcome(chamber.id, "skipped", group_fault))
                continue
            # a line that did not answer in this round is not tried again before the next
            # (the first chamber needing it in a round probes it; nobody is charged)
            down = [
                line
                for line in sorted(chamber_lines(self.cfg, chamber))
                if _failed_since(self.board.get(line), began)
            ]
            if down:
                result.outcomes.append(
                    CycleOutcome(
                        chamber.id,
                        "skipped",
                        f"modbus line {down[0].split(':', 1)[1]} not answering",
                        line_fault=down[0],
                    )
                )
                continue
            if not self._in_service(chamber.id, self.clock.now()):
                result.outcomes.append(CycleOutcome(chamber.id, "skipped", "out of service"))
                continue
            outcome = runner.run(chamber, round_id)
            result.outcomes.append(outcome)
            log.info("%s", observation_line(outcome))
            self._deferred.extend(outcome.deferred)
            if outcome.storage_error is not None:
                if not self.storage_down.is_set():
                    self._storage_failed(outcome.storage_error, f"measuring {chamber.id}")
                if outcome.uuid is not None:
                    kept = "measured" if outcome.status == "done" else "aborted"
                    reason = outcome.reason or ""
                    if outcome.status != "done" and reason and not reason.startswith("storage:"):
                        kept += f" ({brief(reason, 80)})"
                    self.alarm(
                        "info",
                        "storage_abort",
                        f"{chamber.id}: observation {kept}, kept in memory: the site database "
                        "cannot be written; its lid commanded open; written when it can be",
                        chamber=chamber.id,
                        observation_uuid=outcome.uuid,
                    )
            if outcome.group_fault:
                group_fault = f"analyser {analyser_id} failed: {outcome.reason}"
                for name in loop_ids:
                    self.analyser_info.pop(name, None)  # identify them again next round
            elif outcome.line_fault is None and not (outcome.reason or "").startswith("storage:"):
                self._account(outcome)  # the chamber's own result (its write may wait)
            self._persist_health()

    # --- calibrations (issue 11) ------------------------------------------------------------

    def calibration_locks(self) -> dict[str, dict[str, Any]]:
        """Hardware held by running calibrations (``chamberd calibrate``), by scope
        (``analyser:ID``, ``chamber:ID``). A lock whose holder has died (kill -9, a crash)
        is recovered first: its hardware put in the safe state, its record marked
        incomplete, the lock released."""
        try:
            with self._calibration_lock:  # one recovery, whichever group thread finds it
                for lock in self.store.stale_calibration_locks():
                    self._abandoned_calibration(lock)
            return {lock["scope"]: lock for lock in self.store.calibration_locks()}
        except StorageError as exc:
            self._storage_failed(exc, "reading the calibration locks")
            return {}

    def _abandoned_calibration(self, lock: Mapping[str, Any]) -> None:
        scope, record = lock["scope"], lock["calibration_id"]
        kind, _, name = scope.partition(":")
        chambers = [
            c
            for c in self.cfg.chambers
            if (kind == "analyser" and c.analyser == name) or (kind == "chamber" and c.id == name)
        ]
        failures = open_lids(self.actuators, chambers)
        if self.cfg.calibration.manifold:
            try:
                self.actuators.set_manifold(None)
            except (HardwareError, ProtocolError) as exc:
                failures.append(("manifold", "close manifold", exc))
        reason = (
            f"the calibration process (pid {lock['pid']}) ended without finishing; the daemon "
            "put its hardware in the safe state"
        )
        self.store.end_calibration(
            record,
            status="incomplete",
            at=self.clock.now(),
            values={"reason": reason, "result": f"incomplete: {reason}"},
        )
        self.store.release_calibration_locks(record)
        self.alarm(
            "warning",
            "calibration_abandoned",
            f"{scope}: calibration {record[:8]} ended without finishing (pid {lock['pid']}); "
            f"lids of {', '.join(c.id for c in chambers) or 'none'} commanded open, manifold "
            "closed, record marked incomplete"
            + (f"; safe state incomplete: {brief(failures[0][2])}" if failures else ""),
            data={"scope": scope, "calibration_id": record, "pid": lock["pid"]},
        )

    def _calibration_skip(
        self,
        analyser_id: str,
        chamber: Any,
        lock: Mapping[str, Any],
        result: RoundResult,
        told: bool,
    ) -> bool:
        """Skip a chamber held by a calibration; the analyser's port is released when the
        calibration holds the analyser (reopened when it is measured again)."""
        result.outcomes.append(
            CycleOutcome(chamber.id, "skipped", f"calibration in progress ({lock['scope']})")
        )
        self._calibration_skipped.add(lock["scope"])
        if lock["scope"].startswith("analyser:"):
            self._lend_analyser(analyser_id, lock)
        if not told:
            self.alarm(
                "info",
                "calibration_in_progress",
                f"{lock['scope']} is being calibrated (record {lock['calibration_id'][:8]}, "
                f"since {lock['started_at'][:19]}Z): analyser group {analyser_id} skipped"
                + ("" if lock["scope"].startswith("analyser:") else f" for {chamber.id}"),
                chamber=None if lock["scope"].startswith("analyser:") else chamber.id,
                data={
                    "scope": lock["scope"],
                    "calibration_id": lock["calibration_id"],
                    "analyser": analyser_id,
                },
            )
        return True

    def _lend_idle_analysers(self, locks: Mapping[str, Mapping[str, Any]]) -> None:
        """Lend the ports of held analysers whose group is not measuring now."""
        for scope, lock in locks.items():
            kind, _, name = scope.partition(":")
            if kind == "analyser":
                with self._calibration_lock:
                    if name in self._active_groups:
                        continue  # its own thread lends it at its next chamber
                    self._lend_analyser(name, lock)

    def _lend_analyser(self, analyser_id: str, lock: Mapping[str, Any]) -> None:
        """Close the analyser's port for the calibration holding it (one process at a time
        can use a serial port); an ``analyser_lent`` event tells the calibration it may
        open it. Set up again when the daemon next measures with it."""
        with self._calibration_lock:
            if analyser_id in self._released or analyser_id not in self.analysers:
                return
            self._released.add(analyser_id)
        analyser = self.analysers[analyser_id]
        if getattr(analyser, "link", None) is not None:  # a port to hand over
            try:
                analyser.close()
            except (HardwareError, ProtocolError, OSError) as exc:
                log.info("analyser %s: closing for a calibration: %s", analyser_id, exc)
            self.analyser_info.pop(analyser_id, None)  # set up again afterwards
        self.alarm(
            "info",
            "analyser_lent",
            f"analyser {analyser_id}: port closed for calibration {lock['calibration_id'][:8]}",
            data={"analyser": analyser_id, "calibration_id": lock["calibration_id"]},
        )

    def _calibration_resumed(self, scope: str) -> None:
        self._calibration_skipped.discard(scope)
        kind, _, name = scope.partition(":")
        if kind == "analyser":
            self._released.discard(name)
        what = f"analyser group {name}" if kind == "analyser" else f"chamber {name}"
        self.alarm(
            "info",
            "calibration_resumed",
            f"{what} measured again (no calibration holds it)",
            chamber=name if kind == "chamber" else None,
            data={"scope": scope},
        )

    def run_round(self, scheduled_at: dt.datetime) -> RoundResult | None:
        """One round: every analyser group in parallel, its chambers in sequence."""
        if not self._started:
            self.startup()
        if self.storage_down.is_set() and not self.recover_storage(force=True):
            self._skip_round(scheduled_at)  # nothing measured that could not be recorded
            return None
        try:
            round_id = self.store.start_round(scheduled_at, self.clock.now())
        except StorageError as exc:
            self._storage_failed(exc, "starting a round")
            self._skip_round(scheduled_at)
            return None
        if round_id is None:
            log.info("round of %s already ran: skipped", iso(scheduled_at))
            return None
        self._idle.clear()
        self.state = "measuring"
        self.round_at = scheduled_at
        self.next_round_at = self.next_round(max(scheduled_at, self.clock.now()))
        with self._beat_lock:
            self.activity.clear()
        chambers = [c.id for c in self.cfg.chambers if c.enabled]
        log.info("round %s: started, %d chamber(s)", self._when_local(scheduled_at), len(chambers))
        began = self.clock.monotonic()
        result = None
        try:
            result = self._round(scheduled_at, round_id)
            return result
        finally:
            self.state = "stopped" if self.stop_event.is_set() else "idle"
            self.round_at = None
            with self._beat_lock:
                self.activity.clear()
            self.next_round_at = self.next_round()
            self._idle.set()
            self._round_line(scheduled_at, result, self.clock.monotonic() - began)
            self.heartbeat(force=True)

    def _round_line(
        self, scheduled_at: dt.datetime, result: RoundResult | None, took_s: float
    ) -> None:
        outcomes = result.outcomes if result is not None else []
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "aborted", "skipped")}
        for outcome in outcomes:
            if outcome.status == "skipped":
                log.info("%s", observation_line(outcome))
        how = "ended" if result is not None else "interrupted"
        log.info(
            "round %s: %s after %s: %d done, %d aborted, %d skipped; next round %s",
            self._when_local(scheduled_at),
            how,
            _duration(took_s),
            counts["done"],
            counts["aborted"],
            counts["skipped"],
            self._when_local(self.next_round_at) if self.next_round_at else "?",
        )

    def _round(self, scheduled_at: dt.datetime, round_id: int) -> RoundResult:
        result = RoundResult(scheduled_at)
        began = self.clock.monotonic()
        groups = [
            a
            for a in self.analysers
            if any(c.analyser == a and c.enabled for c in self.cfg.chambers)
        ]
        errors: list[BaseException] = []
        # on virtual time every group must be attached before any sleeps, or the first
        # one would run ahead alone
        barrier = threading.Barrier(len(groups)) if groups else None

        def work(analyser_id: str) -> None:
            attach = self.clock.attach() if isinstance(self.clock, FakeClock) else _nullcontext()
            with attach:
                if barrier is not None:
                    barrier.wait()
                try:
                    self._group(analyser_id, round_id, result, began)
                except Stopped as stop:
                    if stop.deferred:  # the interrupted observation could not be completed
                        self._deferred.extend(stop.deferred)
                        self._storage_failed(
                            StorageError(f"{self.store.path}: an observation's end not written"),
                            "stopping",
                        )
                except BaseException as exc:  # reported, then the safe state
                    errors.append(exc)

        if len(groups) == 1:
            work(groups[0])
        else:
            threads = [threading.Thread(target=work, args=(g,), name=f"group-{g}") for g in groups]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            self.safe_state("unhandled error in a round")
            for exc in errors:
                log.debug("unhandled error in the round", exc_info=exc)
                self.alarm(
                    "critical",
                    "round_error",
                    f"unhandled error in the round: {type(exc).__name__}: {brief(exc)}; "
                    "all lids commanded open",
                    data={"detail": repr(exc)[:DETAIL_CHARS]},
                )
        done = sum(o.status == "done" for o in result.outcomes)
        failures = result.failures + len(errors)
        finished = self.clock.now()
        self._guard(
            "finishing the round",
            lambda: self.store.finish_round(round_id, finished, done, failures),
        )
        keep = self.cfg.storage.keep_samples_days
        if keep is not None and not self.storage_down.is_set():
            try:
                pruned = self.store.prune_samples(self.clock.now() - dt.timedelta(days=keep))
            except StorageError as exc:
                self._storage_failed(exc, "pruning old samples")
            else:
                if pruned:
                    log.info(
                        "pruned %d samples older than %d days (already uploaded)", pruned, keep
                    )
        self.rounds.append(result)
        self._persist_health()
        if not self.storage_down.is_set():
            self._maybe_calibrate()
            self._maybe_sync()
        return result

    def _maybe_calibrate(self) -> None:
        """The scheduled zero/span check through the manifold, when due
        (``[calibration.automatic]``, :mod:`chamberd.calibration.automatic`)."""
        if self.cfg.calibration.automatic is None:
            return
        from chamberd.calibration.automatic import maybe_check

        try:
            maybe_check(self)
        except ChamberError as exc:
            self.alarm("warning", "automatic_calibration", f"automatic check failed: {brief(exc)}")

    def _maybe_sync(self) -> None:
        """Upload the outbox after a round when ``sync.interval_min`` has passed.

        Bounded (a connection timeout and at most ``_SYNC_BATCHES_PER_ROUND`` batches), so an
        unreachable or slow central database never stops the measurements; failures back
        off (doubling up to a day) and raise one alarm per outage.
        """
        sync = self.cfg.sync
        now = self.clock.now()
        if not sync.target or sync.interval_min is None:
            return
        if self._next_sync is not None and now < self._next_sync:
            return
        from chamberd.network_sync.central import Central
        from chamberd.network_sync.sync import upload_site

        try:
            with Central.connect(sync.target, mode="write", connect_timeout_s=10) as central:
                if central.schema_version() == 0:
                    raise SyncError("the central database has no chamberd schema")
                summary = upload_site(
                    self.store,
                    central,
                    self.cfg,
                    clock=self.clock,
                    max_batches=_SYNC_BATCHES_PER_ROUND,
                )
        except StorageError as exc:  # the site side: the outbox could not be updated
            self._storage_failed(exc, "uploading")
            return
        except (SyncError, ConfigError) as exc:
            self.board.fault("sync", exc)
            if self._sync_backoff_min is None:
                self.alarm("warning", "sync_failed", f"upload failed: {brief(exc)}; will retry")
            self._sync_backoff_min = min(
                2 * (self._sync_backoff_min or sync.interval_min / 2), 24 * 60
            )
            self._next_sync = now + dt.timedelta(minutes=self._sync_backoff_min)
            self._persist_health()
            return
        if self._sync_backoff_min is not None:
            self.alarm("info", "sync_restored", "upload works again")
        self._sync_backoff_min = None
        self._next_sync = now + dt.timedelta(minutes=sync.interval_min)
        detail = (
            f"sent {summary.sent}, unchanged {summary.unchanged}, revised {summary.revised}, "
            f"conflicts {summary.conflicts}, remaining {summary.remaining}"
        )
        self.board.good("sync", detail)
        self._persist_health()
        if summary.conflicts:
            self.alarm(
                "warning",
                "sync_conflict",
                f"{summary.conflicts} observation(s) conflict with the central database "
                "(same chamber and start time, another uuid)",
                data={"conflicts": summary.conflict_details},
            )

    def run(self, *, until: dt.datetime | None = None) -> None:
        """Run rounds on schedule until stopped (or until ``until`` on a simulated clock)."""
        if not self._started:
            self.startup()
        trigger = make_trigger(self.cfg.schedule, self.cfg.site.time_zone, around=self.clock.now())
        try:
            if isinstance(self.clock, SystemClock) and until is None:
                runner: Any = APSchedulerRunner(
                    trigger,
                    clock=self.clock,
                    run_round=self.run_round,
                    missed=self.missed,
                    misfire_grace_s=self.cfg.schedule.misfire_grace_s,
                    stop=self.stop_event,
                    since=self.started_at,
                    idle=self.idle,
                )
            else:
                runner = ClockRunner(
                    trigger,
                    clock=self.clock,
                    run_round=self.run_round,
                    missed=self.missed,
                    misfire_grace_s=self.cfg.schedule.misfire_grace_s,
                    stop=self.stop_event,
                    idle=self.idle,
                )
            runner.run(until=until, since=self.started_at)
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.alarm(
                    "critical",
                    "daemon_error",
                    f"unhandled error: {type(exc).__name__}: {brief(exc)}",
                    data={"detail": repr(exc)[:DETAIL_CHARS]},
                )
            self.safe_state("unhandled error")
            raise


_SYNC_BATCHES_PER_ROUND = 20
_CALIBRATION_CHECK_S = 2.0  # how often an idle daemon looks at the calibration locks


def observation_line(outcome: CycleOutcome) -> str:
    """One log line of an observation: chamber, flux and unit, model, R2 and flags, or why
    it was aborted or skipped, in a few words."""
    if outcome.status == "done":
        extra = outcome.extra or {}
        flags = ", ".join(outcome.flags) or "none"
        flux = outcome.flux
        if flux is None or not math.isfinite(flux):
            return f"{outcome.chamber}: done, no flux (flags: {flags})"
        r2 = extra.get("r2")
        r2_text = f", R2 {r2:.3f}" if isinstance(r2, float) and math.isfinite(r2) else ""
        lid = "; lid did not confirm open" if outcome.lid_fault else ""
        others = ""
        for gas, g in (extra.get("gases") or {}).items():
            if gas == "co2" or g.get("flux") is None:
                continue
            value = flux_text(g["flux"], g.get("mdf"), g.get("flags"))
            bubbles = ", ebullition" if "ebullition" in g.get("flags", ()) else ""
            others += f"; {gas.upper()} {value} {g['flux_unit']}{bubbles}"
        return (
            f"{outcome.chamber}: flux {flux:.3f} umol m-2 s-1 ({extra.get('model', '?')}"
            f"{r2_text}), flags: {flags}{others}{lid}"
        )
    return f"{outcome.chamber}: {outcome.status}: {brief(outcome.reason or 'no reason', 120)}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def _failed_since(entry: DeviceHealth | None, began_mono: float) -> bool:
    """The entry is a fault whose last error came after ``began_mono`` (this round)."""
    return (
        entry is not None
        and entry.ok is False
        and not entry.refused  # a device that refuses is the chambers' fault, tried each time
        and entry.last_error_mono >= began_mono
    )


def _without_path(exc: BaseException, path: str) -> str:
    """A store error's message without the database path it starts with."""
    return str(exc).removeprefix(f"{path}: ")


def _when(at: dt.datetime | None) -> str:
    return "?" if at is None else iso(at)


def _health_row(entry: DeviceHealth, now: dt.datetime) -> dict[str, Any]:
    return {
        "component": entry.component,
        "ok": bool(entry.ok),
        "detail": entry.detail if entry.ok else (entry.last_error or entry.detail),
        "last_good_at": entry.last_good_at,
        "last_error": entry.last_error,
        "last_error_at": entry.last_error_at,
        "refused": entry.refused,
        "updated_at": now,
    }


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
