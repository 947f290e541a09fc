"""Health of each device from its own last good reading, and the lines lids depend on.

A device is OK only when it last answered and did what it was asked: an analyser when a
reading arrived from it, a Modbus line when a request on it got a reply that was not a
refusal (an exception response is a reply: the line works, but the device refused, so it is
a FAULT marked ``refused``, not a line outage), the aux sensors when they were read, the
site database when a write committed, the upload when a batch went through. A cycle that
ends before a device was used leaves that device's entry alone, so a lid fault never makes
a silent analyser look healthy.

:class:`HealthBoard` keeps, per component (``analyser:<id>``, ``modbus:<line>``, ``aux``,
``storage``, ``sync``), whether it is OK, the time of its last good reading, and its last
error; it reports each change from OK to FAULT and back once, so the daemon raises one
alarm per outage. It lives in memory: the daemon copies it into the ``health`` table when
it can write, and into the live health file (:class:`LiveHealthFile`) always.

:class:`TrackedActuators` wraps the actuators port and charges each command's success or
failure to the Modbus line it went over (from the configuration's relay and switch
references), so a line that stops answering is one line fault, not a fault of each chamber
on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .clock import Clock
from .config import ChamberConfig, SiteConfig
from .errors import HardwareError, ProtocolError, operator_message
from .hardware import ChamberActuators, LidState

__all__ = [
    "DeviceHealth",
    "HealthBoard",
    "LiveHealthFile",
    "TrackedActuators",
    "brief",
    "chamber_lines",
    "line_of",
    "open_lids",
    "refusals",
]

log = logging.getLogger(__name__)

_BRIEF_CHARS = 200
#: the longest error text kept in an event's ``data`` (the message itself stays one line)
DETAIL_CHARS = 4000


def brief(error: BaseException | str, limit: int = _BRIEF_CHARS) -> str:
    """One short line of an error (:func:`chamberd.controller.errors.operator_message`).

    >>> brief("Modbus RTU socket://h:1 device 10: cannot connect; last frames: > 0a 05")
    'Modbus RTU socket://h:1 device 10: cannot connect'
    """
    return operator_message(error, limit)


def line_of(error: BaseException) -> str | None:
    """The Modbus line (``modbus:<id>``) that did not answer, when ``error`` says so.

    A :class:`ProtocolError` (an exception response) is not a line fault: the line answered.
    """
    if isinstance(error, HardwareError) and not isinstance(error, ProtocolError):
        device = error.device
        if device is not None and device.startswith("modbus:"):
            return device
    return None


def refusals(failures: Iterable[tuple[str, str, BaseException]]) -> tuple[str, str] | None:
    """The safe-state failures that are refusals, as (one line, the detail for ``data``);
    None when there are none. A line that does not answer is not a refusal here: it has
    its own one alarm per outage."""
    refused = [(who, what, exc) for who, what, exc in failures if line_of(exc) is None]
    if not refused:
        return None
    line = "; ".join(f"{who}: {what}: {brief(exc, 120)}" for who, what, exc in refused)
    detail = "; ".join(f"{who}: {exc}" for who, _, exc in refused)[:DETAIL_CHARS]
    return line, detail


def chamber_lines(cfg: SiteConfig, chamber: ChamberConfig) -> set[str]:
    """The Modbus lines a chamber's cycle needs: its lid, switches and valve, and the pump's
    line when the pump runs during cycles."""
    refs = [chamber.lid, chamber.closed_switch, chamber.open_switch, chamber.valve]
    if cfg.pump.coil is not None and cfg.pump.mode != "off":
        refs.append(cfg.pump.coil)
    return {f"modbus:{ref.device}" for ref in refs if ref is not None}


@dataclass
class DeviceHealth:
    """The state of one component, from its own readings."""

    component: str
    ok: bool | None = None  # None: not used yet
    detail: str = ""  # what it is (model and serial) or what it last did
    last_good_at: dt.datetime | None = None
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    changed_at: dt.datetime | None = None  # when ``ok`` last changed
    last_error_mono: float = -math.inf  # the monotonic clock at the last error
    refused: bool = False  # the fault is a refusal: the device answers, refusing commands

    def as_dict(self) -> dict[str, Any]:
        def stamp(value: dt.datetime | None) -> str | None:
            return None if value is None else _iso(value)

        return {
            "component": self.component,
            "ok": self.ok,
            "detail": self.detail,
            "last_good_at": stamp(self.last_good_at),
            "last_error": self.last_error,
            "last_error_at": stamp(self.last_error_at),
            "changed_at": stamp(self.changed_at),
            "refused": self.refused,
        }


#: called as ``listener(entry, ok, since)`` when a component turns OK (``True``) or FAULT
#: (``False``); ``since`` is when it had turned to the state it leaves (None: never used)
Listener = Callable[[DeviceHealth, bool, "dt.datetime | None"], None]


class HealthBoard:
    """Per component: OK or FAULT, the last good reading and the last error (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, DeviceHealth] = {}
        self._dirty: set[str] = set()
        self.listeners: list[Listener] = []

    def _entry(self, component: str) -> DeviceHealth:
        entry = self._entries.get(component)
        if entry is None:
            entry = self._entries[component] = DeviceHealth(component)
        return entry

    def good(self, component: str, detail: str | None = None) -> bool:
        """A good reading from ``component`` now; True when this ends a fault."""
        now = self.clock.now()
        with self._lock:
            entry = self._entry(component)
            recovered = entry.ok is False
            since = entry.changed_at
            if entry.ok is not True:
                entry.changed_at = now
            entry.ok = True
            entry.refused = False
            entry.last_good_at = now
            if detail is not None:
                entry.detail = detail
            self._dirty.add(component)
            copy = replace(entry)
        if recovered:
            self._notify(copy, True, since)
        return recovered

    def fault(self, component: str, error: BaseException | str, *, refused: bool = False) -> bool:
        """``component`` failed now; True when this starts a fault (it was OK or unused).

        ``refused``: it answered, refusing the command (a Modbus exception response)."""
        now = self.clock.now()
        with self._lock:
            entry = self._entry(component)
            # a refusal that turns into silence is a new fault (the line went down)
            started = entry.ok is not False or (entry.refused and not refused)
            since = entry.changed_at
            if started:
                entry.changed_at = now
            entry.ok = False
            entry.refused = refused
            entry.last_error = brief(error)
            entry.last_error_at = now
            entry.last_error_mono = self.clock.monotonic()
            self._dirty.add(component)
            copy = replace(entry)
        if started:
            self._notify(copy, False, since)
        return started

    def describe(self, component: str, detail: str) -> None:
        """Set what a component is (model, serial) without changing its state."""
        with self._lock:
            self._entry(component).detail = detail
            self._dirty.add(component)

    def _notify(self, entry: DeviceHealth, ok: bool, since: dt.datetime | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(entry, ok, since)
            except Exception:  # a listener's failure never hides the fault itself
                log.exception("health listener failed for %s", entry.component)

    def get(self, component: str) -> DeviceHealth | None:
        with self._lock:
            entry = self._entries.get(component)
            return None if entry is None else replace(entry)

    def faulty(self, component: str) -> bool:
        with self._lock:
            entry = self._entries.get(component)
            return entry is not None and entry.ok is False

    def entries(self) -> list[DeviceHealth]:
        with self._lock:
            return [replace(e) for _, e in sorted(self._entries.items())]

    def take_dirty(self) -> list[DeviceHealth]:
        """The entries changed since the last call (to be written to the database)."""
        with self._lock:
            out = [replace(self._entries[c]) for c in sorted(self._dirty)]
            self._dirty.clear()
            return out

    def mark_dirty(self, components: Iterable[str]) -> None:
        """Put entries back (their write failed)."""
        with self._lock:
            self._dirty.update(c for c in components if c in self._entries)


class LiveHealthFile:
    """A small JSON file beside the database with the daemon's live health.

    ``chamberd status`` reads it, so the state of the devices (the storage fault above all)
    shows even while the database cannot be written. The file is created once at a fixed
    size and then rewritten in place, never extended: overwriting allocated blocks needs no
    free space, so it keeps working on a full disk (not on copy-on-write file systems).
    """

    SIZE = 16384

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ready = False

    def _prepare(self) -> bool:
        if self._ready:
            return True
        try:
            if not os.path.exists(self.path) or os.path.getsize(self.path) < self.SIZE:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, b" " * self.SIZE, 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            log.debug("live health file %s not available: %s", self.path, exc)
            with contextlib.suppress(OSError):
                if os.path.getsize(self.path) < self.SIZE:
                    os.remove(self.path)  # a partly allocated file would grow later
            return False
        self._ready = True
        return True

    def write(self, state: dict[str, Any]) -> bool:
        """Rewrite the file in place; False when it could not be (it is only a view)."""
        data = _fit(state, self.SIZE - 1)
        with self._lock:
            if not self._prepare():
                return False
            try:
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    os.pwrite(fd, data + b" " * (self.SIZE - len(data)), 0)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.debug("live health file %s not written: %s", self.path, exc)
                return False
        return True

    @staticmethod
    def read(path: str) -> dict[str, Any] | None:
        """The state last written, or None (no file, or caught mid-write)."""
        for _ in range(3):
            try:
                with open(path, "rb") as f:
                    text = f.read().strip()
            except OSError:
                return None
            if not text:
                return None
            try:
                value = json.loads(text)
            except ValueError:
                continue  # read while being rewritten: try again
            return value if isinstance(value, dict) else None
        return None


def open_lids(
    actuators: ChamberActuators, chambers: Sequence[ChamberConfig]
) -> list[tuple[str, str, BaseException]]:
    """Command every lid of ``chambers`` open, then close their valves; the failures.

    Every lid is tried whatever failed before it. Valves are skipped on lines that did not
    answer a lid command (a dead line would cost a timeout per valve before the report)."""
    failures: list[tuple[str, str, BaseException]] = []
    dead: set[str] = set()
    for chamber in chambers:
        try:
            actuators.set_lid(chamber.id, False)
        except (HardwareError, ProtocolError) as exc:
            failures.append((chamber.id, "open lid", exc))
            line = line_of(exc)
            if line is not None:
                dead.add(line)
    for chamber in chambers:
        if chamber.valve is None or f"modbus:{chamber.valve.device}" in dead:
            continue
        try:
            actuators.set_valve(chamber.id, False)
        except (HardwareError, ProtocolError) as exc:
            failures.append((chamber.id, "close valve", exc))
    return failures


class TrackedActuators:
    """The actuators port, with every command's outcome charged to its Modbus line.

    A command that gets a reply (an exception response included) is a good reading of the
    line; one that gets none (refused connection, timeout, bad frames) is a fault of the
    line, re-raised with the line named in ``error.device``. ``closed_lids`` holds the
    chambers whose lid was commanded closed and not since confirmed commanded open.
    """

    def __init__(self, inner: ChamberActuators, cfg: SiteConfig, board: HealthBoard) -> None:
        self.inner = inner
        self.cfg = cfg
        self.board = board
        self._chambers = {c.id: c for c in cfg.chambers}
        self.closed_lids: set[str] = set()

    def _do(self, lines: Iterable[str], fn: Callable[[], Any]) -> Any:
        lines = sorted(lines)
        try:
            result = fn()
        except ProtocolError as exc:
            # the line answers, the device refused: a fault of the device (status shows it),
            # not a line outage (no chamber skipped for it)
            for line in lines:
                self.board.fault(line, exc, refused=True)
            raise
        except HardwareError as exc:
            line = line_of(exc)
            if line is None and len(lines) == 1:
                line = lines[0]
                exc.device = line
            if line is not None:
                self.board.fault(line, exc)
            raise
        for line in lines:
            self.board.good(line)
        return result

    @staticmethod
    def _line(ref: Any) -> list[str]:
        return [] if ref is None else [f"modbus:{ref.device}"]

    def set_lid(self, chamber: str, closed: bool) -> None:
        ref = self._chambers[chamber].lid
        if closed:  # from the moment the command may have gone out
            self.closed_lids.add(chamber)
        self._do(self._line(ref), lambda: self.inner.set_lid(chamber, closed))
        if not closed:
            self.closed_lids.discard(chamber)

    def lid_state(self, chamber: str) -> LidState:
        c = self._chambers[chamber]
        lines = self._line(c.closed_switch) + self._line(c.open_switch)
        return self._do(lines or self._line(c.lid), lambda: self.inner.lid_state(chamber))

    def set_valve(self, chamber: str, open_: bool) -> None:
        ref = self._chambers[chamber].valve
        self._do(self._line(ref), lambda: self.inner.set_valve(chamber, open_))

    def set_pump(self, on: bool) -> None:
        self._do(self._line(self.cfg.pump.coil), lambda: self.inner.set_pump(on))

    def set_analyser_power(self, analyser: str, on: bool) -> None:
        inner = getattr(self.inner, "set_analyser_power", None)
        if inner is not None:
            self._do(self._line(self.cfg.analyser(analyser).power), lambda: inner(analyser, on))

    def set_manifold(self, slot: str | None) -> None:
        lines = {f"modbus:{m.coil.device}" for m in self.cfg.calibration.manifold}
        self._do(lines, lambda: self.inner.set_manifold(slot))

    def open_all(self) -> None:
        failures = open_lids(self, self.cfg.chambers)
        if self.cfg.calibration.manifold:
            try:
                self.set_manifold(None)
            except (HardwareError, ProtocolError) as exc:
                failures.append(("manifold", "close manifold", exc))
        if failures:
            error = HardwareError(
                "safe state incomplete: "
                + "; ".join(f"{c}: {what}: {brief(exc, 120)}" for c, what, exc in failures)
            )
            dead = {line_of(exc) for _, _, exc in failures} - {None}
            if len(dead) == 1:
                error.device = dead.pop()
            raise error

    def close(self) -> None:
        self.inner.close()


def _fit(state: dict[str, Any], size: int) -> bytes:
    """``state`` as JSON of at most ``size`` bytes (shortened step by step, still valid)."""

    def dump(value: dict[str, Any]) -> bytes:
        return json.dumps(value, default=str, separators=(",", ":")).encode()

    data = dump(state)
    if len(data) <= size:
        return data
    health = [
        {k: (v[:80] if isinstance(v, str) else v) for k, v in e.items()}
        for e in state.get("health", [])
        if isinstance(e, dict)
    ]
    keep = ("site", "pid", "written_at", "storage_down", "pending_events", "heartbeat")
    short = {k: state[k] for k in keep if k in state} | {"health": health, "truncated": True}
    data = dump(short)
    if len(data) <= size:
        return data
    short["health"] = [{"component": e.get("component"), "ok": e.get("ok")} for e in health]
    return dump(short)[:size]  # only with hundreds of components


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
