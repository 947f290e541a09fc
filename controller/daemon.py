"""The site daemon: rounds of chamber cycles, safe hardware, alarms, restart recovery.

:class:`Daemon` is the composition of a site: its store, its analysers (one per analyser
group; chambers sharing an analyser run in sequence, groups run in parallel), its
actuators and aux sensors, and its alarm sink. It does not know where the time comes
from or which drivers it has: ``chamberd run`` builds it with real drivers and the system
clock, the demo and the tests with the simulator and a scaled or virtual clock.

Safe state (all lids open, valves closed, pump as configured) on start-up, on stop
(SIGTERM/SIGINT), on any unhandled error in a round, when an analyser is silent longer than
``cycle.analyser_silent_s``, and when a lid does not confirm. A chamber that fails
``cycle.max_failures`` times in a row is taken out of service with an alarm and retried
after ``cycle.retry_after_min``; the other chambers keep measuring.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, FakeClock, SystemClock
from .config import SiteConfig, config_hash
from .cycle import CycleOutcome, CycleRunner, Stopped
from .errors import ConfigError, HardwareError, ProtocolError, SyncError
from .hardware import AuxSensors, ChamberActuators, GasAnalyser
from .schedule import APSchedulerRunner, ClockRunner, make_trigger, slots_between
from .store import SiteStore, iso, parse_iso

__all__ = ["AlarmSink", "Daemon", "software_version"]

log = logging.getLogger(__name__)

_LEVELS = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_MAX_MISSED_EVENTS = 500


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover
        return "0+unknown"


class AlarmSink:
    """Records every alarm as an event; warnings and worse also go to ``alarms.command``.

    The command receives one JSON object on stdin (site, level, kind, message, chamber,
    at, data); it runs in a background thread so a slow mail server never delays a cycle.
    A failing command is itself recorded (not re-alarmed).
    """

    def __init__(self, cfg: SiteConfig, store: SiteStore, clock: Clock) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.sent: deque[dict[str, Any]] = deque(maxlen=1000)  # the latest, for tests

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
        log.log(_LEVELS.get(level, logging.INFO), "%s: %s", kind, message)
        self.store.record_event(
            level, kind, message, at, chamber=chamber, observation_uuid=observation_uuid, data=data
        )
        if level == "info":
            return
        payload = {
            "site": self.cfg.site.id,
            "level": level,
            "kind": kind,
            "message": message,
            "chamber": chamber,
            "observation_uuid": observation_uuid,
            "at": iso(at),
            "data": dict(data or {}),
        }
        self.sent.append(payload)
        if self.cfg.alarms.command:
            threading.Thread(target=self._deliver, args=(payload,), daemon=True).start()

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
            self.store.record_event(
                "warning",
                "alarm_failed",
                f"alarm command {command!r} failed: {exc}",
                self.clock.now(),
            )


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
        self.actuators = actuators
        self.aux = aux
        self.alarm = alarm or AlarmSink(cfg, store, clock)
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

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (real time) until no round is running; True when idle."""
        return self._idle.wait(timeout_s)

    # --- life cycle -----------------------------------------------------------------------

    def safe_state(self, reason: str) -> bool:
        """All lids open, valves closed, pump as configured; True when every command went."""
        lines = sorted({line for c in self.cfg.chambers for line in _modbus_lines(c)})
        try:
            self.actuators.open_all()
            if self.cfg.pump.mode == "always":
                self.actuators.set_pump(True)
            elif self.cfg.pump.coil is not None:
                self.actuators.set_pump(False)
        except (HardwareError, ProtocolError) as exc:
            self.alarm("critical", "safe_state_failed", f"safe state ({reason}) incomplete: {exc}")
            for line in lines:
                self.store.set_health(f"modbus:{line}", False, str(exc), self.clock.now())
            return False
        for line in lines:
            self.store.set_health(f"modbus:{line}", True, "ok", self.clock.now())
        return True

    def startup(self) -> None:
        """Safe state, recovery of an interrupted run, analyser set-up, missed rounds."""
        now = self.clock.now()
        # a slot that fell due less than the misfire grace ago still runs; older ones
        # (and those passed while the daemon was down) are recorded as missed
        self.started_at = now - dt.timedelta(seconds=self.cfg.schedule.misfire_grace_s)
        self.store.sync_chambers(self.cfg, now)
        for row in self.store.query(
            "SELECT id, out_of_service_until FROM chambers WHERE out_of_service_until IS NOT NULL"
        ):
            if row["id"] in self.service:  # out of service survives a restart
                self.service[row["id"]].out_until = parse_iso(row["out_of_service_until"])
        self.safe_state("start-up")
        aborted = self.store.abort_running("restart", now)
        self.alarm(
            "warning" if aborted else "info",
            "startup",
            f"chamberd {self.version} started (config {self.config_hash})"
            + (
                f"; {len(aborted)} observation(s) interrupted by the last stop marked aborted"
                if aborted
                else ""
            ),
            data={"aborted": aborted},
        )
        for analyser_id, analyser in self.analysers.items():
            self._setup_analyser(analyser_id, analyser)
        self._record_downtime(self.started_at)
        self._started = True

    def _setup_analyser(self, analyser_id: str, analyser: GasAnalyser) -> bool:
        cfg = self.cfg.analyser(analyser_id)
        try:
            info = analyser.identify()
            analyser.configure(output_interval_s=cfg.output_interval_s)
        except (HardwareError, ProtocolError) as exc:
            self.store.set_health(f"analyser:{analyser_id}", False, str(exc), self.clock.now())
            self.alarm("error", "analyser_setup", f"analyser {analyser_id}: {exc}")
            return False
        self.analyser_info[analyser_id] = {"model": info.model, "serial": info.serial}
        self.store.set_health(
            f"analyser:{analyser_id}", True, f"{info.model} {info.serial}".strip(), self.clock.now()
        )
        return True

    def _record_downtime(self, now: dt.datetime) -> None:
        last = self.store.last_round()
        if last is None:
            return
        trigger = make_trigger(self.cfg.schedule, self.cfg.site.time_zone, around=now)
        slots = slots_between(trigger, parse_iso(last["scheduled_at"]), now)
        for slot in slots[:_MAX_MISSED_EVENTS]:
            self.missed(slot, why="the daemon was not running")
        if len(slots) > _MAX_MISSED_EVENTS:
            self.alarm(
                "warning", "missed_rounds", f"{len(slots) - _MAX_MISSED_EVENTS} more rounds missed"
            )

    def missed(self, scheduled_at: dt.datetime, why: str = "late (misfire grace exceeded)") -> None:
        if self.store.record_missed_round(scheduled_at):
            self.alarm(
                "warning",
                "missed_round",
                f"round of {iso(scheduled_at)} missed: {why}",
                data={"scheduled_at": iso(scheduled_at)},
            )

    def shutdown(self, reason: str = "stop requested") -> None:
        self.stop_event.set()
        self.safe_state(reason)
        self.alarm("info", "shutdown", f"chamberd stopped: {reason}")

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
        if not outcome.failed:
            if service.out_until is not None:
                self.alarm(
                    "info",
                    "back_in_service",
                    f"{outcome.chamber}: back in service",
                    chamber=outcome.chamber,
                )
            if service.out_until is not None or service.failures:
                self.store.update_chamber_service(outcome.chamber, None, None)
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
        self.store.update_chamber_service(outcome.chamber, service.out_until, outcome.reason)

    def _group(self, analyser_id: str, round_id: int | None, result: RoundResult) -> None:
        analyser = self.analysers[analyser_id]
        if analyser_id not in self.analyser_info and not self._setup_analyser(
            analyser_id, analyser
        ):
            for chamber in self.cfg.chambers:
                if chamber.analyser == analyser_id and chamber.enabled:
                    result.outcomes.append(
                        CycleOutcome(chamber.id, "skipped", f"analyser {analyser_id} not available")
                    )
            return
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
        )
        group_fault: str | None = None
        for chamber in self.cfg.chambers:
            if chamber.analyser != analyser_id or not chamber.enabled:
                continue
            if self.stop_event.is_set():
                return
            if group_fault is not None:
                # the analyser failed: its other chambers wait for the next round (their
                # service record is not charged with the analyser's fault)
                result.outcomes.append(CycleOutcome(chamber.id, "skipped", group_fault))
                continue
            if not self._in_service(chamber.id, self.clock.now()):
                result.outcomes.append(CycleOutcome(chamber.id, "skipped", "out of service"))
                continue
            outcome = runner.run(chamber, round_id)
            result.outcomes.append(outcome)
            if outcome.group_fault:
                group_fault = f"analyser {analyser_id} failed: {outcome.reason}"
                self.analyser_info.pop(analyser_id, None)  # identify it again next round
            else:
                self._account(outcome)
            self.store.set_health(
                f"analyser:{analyser_id}",
                not outcome.group_fault,
                outcome.reason if outcome.group_fault else "ok",
                self.clock.now(),
            )
            hardware_fault = (outcome.reason or "").startswith("hardware:")
            if outcome.status == "done" or hardware_fault:
                for line in _modbus_lines(chamber):
                    self.store.set_health(
                        f"modbus:{line}",
                        not hardware_fault,
                        outcome.reason if hardware_fault else "ok",
                        self.clock.now(),
                    )

    def run_round(self, scheduled_at: dt.datetime) -> RoundResult | None:
        """One round: every analyser group in parallel, its chambers in sequence."""
        if not self._started:
            self.startup()
        round_id = self.store.start_round(scheduled_at, self.clock.now())
        if round_id is None:
            log.info("round of %s already ran: skipped", iso(scheduled_at))
            return None
        self._idle.clear()
        try:
            return self._round(scheduled_at, round_id)
        finally:
            self._idle.set()

    def _round(self, scheduled_at: dt.datetime, round_id: int) -> RoundResult:
        result = RoundResult(scheduled_at)
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
                    self._group(analyser_id, round_id, result)
                except Stopped:
                    pass
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
                self.alarm("critical", "round_error", f"unhandled error in the round: {exc!r}")
        done = sum(o.status == "done" for o in result.outcomes)
        self.store.finish_round(round_id, self.clock.now(), done, result.failures + len(errors))
        keep = self.cfg.storage.keep_samples_days
        if keep is not None:
            pruned = self.store.prune_samples(self.clock.now() - dt.timedelta(days=keep))
            if pruned:
                log.info("pruned %d samples older than %d days (already uploaded)", pruned, keep)
        self.rounds.append(result)
        self._maybe_sync()
        return result

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
        except (SyncError, ConfigError) as exc:
            self.store.set_health("sync", False, str(exc), now)
            if self._sync_backoff_min is None:
                self.alarm("warning", "sync_failed", f"upload failed: {exc}; will retry")
            self._sync_backoff_min = min(
                2 * (self._sync_backoff_min or sync.interval_min / 2), 24 * 60
            )
            self._next_sync = now + dt.timedelta(minutes=self._sync_backoff_min)
            return
        if self._sync_backoff_min is not None:
            self.alarm("info", "sync_restored", "upload works again")
        self._sync_backoff_min = None
        self._next_sync = now + dt.timedelta(minutes=sync.interval_min)
        detail = (
            f"sent {summary.sent}, unchanged {summary.unchanged}, revised {summary.revised}, "
            f"conflicts {summary.conflicts}, remaining {summary.remaining}"
        )
        self.store.set_health("sync", True, detail, now)
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
                )
            else:
                runner = ClockRunner(
                    trigger,
                    clock=self.clock,
                    run_round=self.run_round,
                    missed=self.missed,
                    misfire_grace_s=self.cfg.schedule.misfire_grace_s,
                    stop=self.stop_event,
                )
            runner.run(until=until, since=self.started_at)
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.alarm("critical", "daemon_error", f"unhandled error: {exc!r}")
            self.safe_state("unhandled error")
            raise


_SYNC_BATCHES_PER_ROUND = 20


def _modbus_lines(chamber: Any) -> set[str]:
    """The Modbus lines (``[[modbus]]`` ids) a chamber's lid, switches and valve are on."""
    refs = (chamber.lid, chamber.closed_switch, chamber.open_switch, chamber.valve)
    return {ref.device for ref in refs if ref is not None}


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
