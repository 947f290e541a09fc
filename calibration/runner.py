"""The guided runner: executes a procedure step by step on the real drivers.

``chamberd calibrate run PROCEDURE --config site.toml`` builds the drivers from the site
configuration the way the daemon does (:func:`chamberd.controller.hardware.make_analyser`,
``make_actuators``, ``make_aux_sensors``), then for each step: says what to do, waits for
the trainee, watches the live readings with a stability indicator (drift per minute, SD,
time stable, a progress bar), decides stability by the documented rule
(:mod:`chamberd.calibration.stability`), records, and says pass or fail and what to do on
a fail.

The same runner serves a person at a terminal (:class:`TerminalConsole`) and a TOML file of
the trainee's answers (:class:`AnswersConsole`, ``--answers FILE``), which is how the tests
and the demo drive it.

Order of a run, so that nothing is half-applied and the daemon never drives the same
hardware at once:

1. records of calibrations whose process died are marked incomplete (their hardware put
   in the safe state first);
2. the trainee's inputs are asked and checked (cylinders registered, in date, of the right
   gas) before anything is written or commanded;
3. the hardware is locked (``calibration_locks``: ``analyser:ID`` takes the analyser's
   whole group out of the daemon's schedule, ``chamber:ID`` one chamber), the record
   begins ``running``, and the runner waits for the daemon's observation on that hardware
   to finish;
4. the procedure runs; every command that changes the hardware has its undo (lid open,
   manifold closed) run on every exit path;
5. the record ends ``pass`` or ``fail``, with what it applies (a geometry version) in the
   same transaction; on Ctrl-C, SIGTERM, a lost device or any error it ends
   ``incomplete`` with the reason, the hardware in the safe state (all lids of the locked
   hardware open, the manifold closed) and the locks released.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import tomllib
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import click
import numpy as np

from chamberd.controller.clock import Clock
from chamberd.controller.config import ChamberConfig, SiteConfig
from chamberd.controller.errors import (
    ChamberError,
    ConfigError,
    HardwareError,
    ProtocolError,
)
from chamberd.controller.hardware import (
    AuxSensors,
    ChamberActuators,
    GasAnalyser,
    LidState,
    make_actuators,
    make_analyser,
    make_aux_sensors,
)
from chamberd.controller.store import SiteStore, iso, process_alive

from .cylinders import Cylinder, Cylinders
from .procedures import Procedure, get_procedure, limits_for
from .records import CalibrationRecords
from .stability import StabilityRule, StabilityState, progress_bar, update_stability

__all__ = [
    "AnswersConsole",
    "CalibrationRunner",
    "Console",
    "Interrupted",
    "Outcome",
    "TerminalConsole",
    "load_answers",
]

log = logging.getLogger(__name__)

_LI8X0 = ("li820", "li830", "li840a", "li850")
_H2O_MODELS = ("li840a", "li850")  # LI-8x0 models that measure H2O
_LEND_WAIT_S = 30.0  # the daemon checks the locks every 10 s at most (APScheduler's idle)


class Interrupted(ChamberError):
    """The trainee stopped the procedure (Ctrl-C) or the process was asked to stop."""

    exit_code = 130


# --- consoles ---------------------------------------------------------------------------


class Console(Protocol):
    interactive: bool

    def say(self, text: str) -> None: ...

    def ask(self, key: str, prompt: str, *, kind: type = str, default: Any = None) -> Any: ...

    def confirm(self, key: str, prompt: str, *, default: bool = True) -> bool: ...

    def wait(self, key: str, instruction: str) -> None: ...

    def live(self, text: str) -> None: ...

    def end_live(self) -> None: ...


class TerminalConsole:
    """A person at a terminal: prompts, Enter to go on, a live status line."""

    interactive = True

    def __init__(self) -> None:
        self._live = False

    def say(self, text: str) -> None:
        self.end_live()
        click.echo(text)

    def ask(self, key: str, prompt: str, *, kind: type = str, default: Any = None) -> Any:
        self.end_live()
        if kind is list:
            text = click.prompt(
                prompt + " (separated by spaces)",
                default=" ".join(str(v) for v in default) if default else None,
            )
            return [float(v) for v in str(text).replace(",", " ").split()]
        if kind is str and default == "":
            return click.prompt(prompt, default="", show_default=False)
        return click.prompt(prompt, type=kind, default=default)

    def confirm(self, key: str, prompt: str, *, default: bool = True) -> bool:
        self.end_live()
        return click.confirm(prompt, default=default)

    def wait(self, key: str, instruction: str) -> None:
        self.end_live()
        click.echo(instruction)
        click.prompt("Press Enter when done", default="", show_default=False)

    def live(self, text: str) -> None:
        click.echo("\r" + text.ljust(100), nl=False)
        self._live = True

    def end_live(self) -> None:
        if self._live:
            click.echo("")
            self._live = False


def load_answers(path: str | Path) -> dict[str, Any]:
    """The trainee's inputs from a TOML file; ConfigError naming the file otherwise."""
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the answers file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


class AnswersConsole:
    """The trainee's inputs from a mapping (a TOML answers file): no terminal needed.

    Each question has a key (``operator``, ``zero_cylinder``, ``flowmeter_l_min``...; see
    docs/trainee.md); a confirmation not answered is yes, a question with a default takes
    it, any other question not answered is a ConfigError naming the key. What the
    runner says is echoed (``echo``), the live indicator every ``live_every`` lines.
    """

    interactive = False

    def __init__(
        self,
        answers: Mapping[str, Any],
        *,
        source: str = "answers",
        echo: Callable[[str], None] | None = None,
        live_every: int = 10,
    ) -> None:
        self.answers = dict(answers)
        self.source = source
        self.echo = echo or click.echo
        self.live_every = live_every
        self.asked: list[str] = []
        self._lines = 0
        self.last_live = ""

    def say(self, text: str) -> None:
        self.echo(text)

    def ask(self, key: str, prompt: str, *, kind: type = str, default: Any = None) -> Any:
        self.asked.append(key)
        if key in self.answers:
            value = self.answers[key]
        elif default is not None:
            value = default
        else:
            raise ConfigError(f"{self.source}: no answer for {key!r} ({prompt})")
        try:
            if kind is list:
                if not isinstance(value, list):
                    raise TypeError
                value = [float(v) for v in value]
            elif kind is float:
                value = float(value)
            elif kind is int:
                value = int(value)
            elif kind is str:
                if isinstance(value, list):  # a list of ids
                    value = " ".join(str(v) for v in value)
                value = "" if value is None else str(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{self.source}: {key} = {value!r}: expected {kind.__name__} ({prompt})"
            ) from None
        self.echo(f"{prompt}: {value}")
        return value

    def confirm(self, key: str, prompt: str, *, default: bool = True) -> bool:
        self.asked.append(key)
        value = self.answers.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.source}: {key} = {value!r}: expected true or false")
        self.echo(f"{prompt} {'yes' if value else 'no'}")
        return value

    def wait(self, key: str, instruction: str) -> None:
        self.asked.append(key)
        self.echo(instruction)

    def live(self, text: str) -> None:
        self.last_live = text
        self._lines += 1
        if self._lines % self.live_every == 1:
            self.echo("  " + text)

    def end_live(self) -> None:
        if self.last_live:
            self.echo("  " + self.last_live)
            self.last_live = ""
            self._lines = 0


# --- results ----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # pass | fail
    result: str
    data: dict[str, Any] = field(default_factory=dict)
    as_left: dict[str, Any] | None = None
    adjusted: bool = False
    on_fail: str = ""
    after: Callable[[Any], None] | None = None  # written with the final status


@dataclass
class GasReading:
    cylinder: Cylinder | None
    state: StabilityState
    at: dt.datetime
    values: list[float]

    @property
    def mean(self) -> float:
        assert self.state.stats is not None
        return self.state.stats.mean


@dataclass
class _Hardware:
    analyser: GasAnalyser | None = None
    actuators: ChamberActuators | None = None
    aux: AuxSensors | None = None

    def close(self) -> None:
        for part in (self.analyser, self.actuators, self.aux):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()


# --- the runner -------------------------------------------------------------------------


class CalibrationRunner:
    """One run of one procedure.

    Parameters
    ----------
    cfg : SiteConfig
        The site (its analysers, Modbus lines, chambers, store and ``[calibration]``).
    procedure : str
        Id or number (``chamberd calibrate procedures``).
    clock : Clock
        Time for readings, timeouts and records.
    console : Console
        A terminal or an answers file.
    analyser, chamber : str, optional
        Which hardware (needed when the site has more than one).
    site : SimulatedSite, optional
        For analysers with the ``memory`` protocol and ``memory`` actuators (tests).
    memory : bool
        Use the in-memory actuators and aux sensors of ``site``.
    """

    def __init__(
        self,
        cfg: SiteConfig,
        procedure: str,
        *,
        clock: Clock,
        console: Console,
        analyser: str | None = None,
        chamber: str | None = None,
        site: Any = None,
        memory: bool = False,
        daemon_wait_s: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.procedure: Procedure = get_procedure(procedure)
        self.clock = clock
        self.console = console
        self.site = site
        self.memory = memory
        self.limits = limits_for(self.procedure, cfg.calibration.limits)
        self.analyser_id, self.chambers = self._targets(analyser, chamber)
        self.hw = _Hardware()
        self.record_id: str | None = None
        self.daemon_wait_s = daemon_wait_s
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self.store: SiteStore | None = None
        self.readings: list[dict[str, Any]] = []

    # --- targets --------------------------------------------------------------------------

    def _targets(
        self, analyser: str | None, chamber: str | None
    ) -> tuple[str | None, list[ChamberConfig]]:
        cfg, proc = self.cfg, self.procedure
        chambers = {c.id: c for c in cfg.chambers}
        if chamber is not None and chamber not in chambers:
            raise ConfigError(
                f"--chamber {chamber!r}: no such chamber (one of {', '.join(chambers)})"
            )
        if analyser is not None and analyser not in {a.id for a in cfg.analysers}:
            known = ", ".join(a.id for a in cfg.analysers)
            raise ConfigError(f"--analyser {analyser!r}: no such analyser (one of {known})")
        if proc.scope == "chambers":
            picked = [chambers[chamber]] if chamber else [c for c in cfg.chambers if c.enabled]
            return None, picked
        if proc.scope == "chamber":
            if chamber is None:
                if len(chambers) != 1:
                    raise ConfigError(
                        f"procedure {proc.id} is done on one chamber: give --chamber "
                        f"(one of {', '.join(chambers)})"
                    )
                chamber = next(iter(chambers))
            return chambers[chamber].analyser, [chambers[chamber]]
        # analyser procedures
        if analyser is None and chamber is not None:
            analyser = chambers[chamber].analyser
        if analyser is None:
            if len(cfg.analysers) != 1:
                known = ", ".join(a.id for a in cfg.analysers)
                raise ConfigError(f"procedure {proc.id}: give --analyser (one of {known})")
            analyser = cfg.analysers[0].id
        protocol = cfg.analyser(analyser).protocol
        if proc.models and protocol not in proc.models and protocol != "memory":
            raise ConfigError(
                f"procedure {proc.id} is for {', '.join(proc.models)}; analyser {analyser} "
                f"is {protocol}"
            )
        return analyser, [c for c in cfg.chambers if c.analyser == analyser]

    @property
    def scopes(self) -> list[str]:
        if self.procedure.scope == "analyser" or (
            self.procedure.scope == "chamber" and self.procedure.id in ("blank", "dead-band")
        ):
            assert self.analyser_id is not None
            return [f"analyser:{self.analyser_id}"]
        return [f"chamber:{c.id}" for c in self.chambers]

    @property
    def protocol(self) -> str | None:
        return None if self.analyser_id is None else self.cfg.analyser(self.analyser_id).protocol

    def _model(self) -> str:
        """The LI-8x0 model (the memory analyser of the simulator behaves as an LI-850)."""
        return "li850" if self.protocol == "memory" else str(self.protocol)

    # --- hardware -------------------------------------------------------------------------

    def _open_analyser(self) -> GasAnalyser:
        if self.hw.analyser is None:
            assert self.analyser_id is not None
            analyser = make_analyser(
                self.cfg.analyser(self.analyser_id), clock=self.clock, site=self.site
            )
            self.hw.analyser = analyser
        return self.hw.analyser

    def _open_actuators(self) -> ChamberActuators:
        if self.hw.actuators is None:
            backend = "memory" if self.memory else "modbus"
            self.hw.actuators = make_actuators(
                self.cfg, clock=self.clock, backend=backend, site=self.site
            )
        return self.hw.actuators

    def _open_aux(self) -> AuxSensors | None:
        if self.hw.aux is None and self.cfg.aux:
            backend = "memory" if self.memory else "modbus"
            self.hw.aux = make_aux_sensors(
                self.cfg, clock=self.clock, backend=backend, site=self.site
            )
        return self.hw.aux

    def _chambers_of(self, scopes: Sequence[str]) -> list[ChamberConfig]:
        out = []
        for scope in scopes:
            kind, _, name = scope.partition(":")
            for c in self.cfg.chambers:
                if (kind == "analyser" and c.analyser == name) or (
                    kind == "chamber" and c.id == name
                ):
                    out.append(c)
        return out

    def safe_state(self, scopes: Sequence[str], *, touched_only: bool = False) -> list[str]:
        """Lids of the locked hardware open, their valves and the manifold closed; returns
        what failed (never raises). ``touched_only``: nothing when this run opened no
        actuators and its procedure commands none (the collar geometry)."""
        failures: list[str] = []
        if touched_only and self.hw.actuators is None and not self.procedure.uses_hardware:
            return failures
        try:
            actuators = self._open_actuators()
        except ChamberError as exc:
            return [f"actuators: {exc}"]
        for chamber in self._chambers_of(scopes):
            for what, command in (
                ("open lid", lambda c=chamber: actuators.set_lid(c.id, False)),
                ("close valve", lambda c=chamber: actuators.set_valve(c.id, False)),
            ):
                try:
                    command()
                except (HardwareError, ProtocolError, ConfigError) as exc:
                    failures.append(f"{chamber.id}: {what}: {exc}")
        if self.cfg.calibration.manifold:
            try:
                actuators.set_manifold(None)
            except (HardwareError, ProtocolError, ConfigError, AttributeError) as exc:
                failures.append(f"manifold: close: {exc}")
        return failures

    def _push_undo(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def _run_undo(self) -> list[str]:
        failures = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:
                failures.append(f"{what}: {exc}")
        return failures

    # --- running --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the procedure; returns the final record (with readings)."""
        cfg, proc, console = self.cfg, self.procedure, self.console
        store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
        self.store = store
        records = CalibrationRecords(store)
        self.records = records
        self.cylinders = Cylinders(store)
        try:
            recovered = records.recover_stale(self.clock, safe=self.safe_state)
            for rid in recovered:
                console.say(
                    f"note: calibration {rid[:8]} was left running by a process that ended; "
                    "its hardware was put in the safe state and the record marked incomplete"
                )
            console.say(f"== {proc.number}. {proc.title} ==")
            console.say(proc.why)
            console.say("You need: " + "; ".join(proc.needs))
            operator = console.ask("operator", "Your name (who is doing this)")
            if not operator.strip():
                raise ConfigError("the operator's name is required")
            supervisor = console.ask("supervisor", "Supervisor (optional)", default="")
            handler = _HANDLERS[proc.id](self)
            handler.prepare()  # every input checked before anything is written or moved
            return self._execute(handler, operator, supervisor)
        finally:
            self.hw.close()
            store.close()

    def _execute(self, handler: _Handler, operator: str, supervisor: str) -> dict[str, Any]:
        store, records, console = self.store, self.records, self.console
        assert store is not None
        rid = str(uuidlib.uuid4())
        scopes = self.scopes
        held = store.take_calibration_locks(scopes, rid, os.getpid(), self.clock.now())
        if held:
            who = "; ".join(
                f"{h['scope']} by calibration {h['calibration_id'][:8]} (pid {h['pid']}, since "
                f"{h['started_at'][:19]})"
                for h in held
            )
            raise ConfigError(f"the hardware is being calibrated: {who}")
        self.record_id = rid
        reason: str | None = "ended without a result"
        try:
            records.begin(
                procedure=self.procedure.id,
                started_at=self.clock.now(),
                operator=operator,
                supervisor=supervisor,
                analyser=self.analyser_id,
                chamber=self.chambers[0].id if len(self.chambers) == 1 else None,
                cylinder_ids=[c.id for c in handler.cylinders],
                data={"limits": self.limits, "scopes": scopes},
                calibration_id=rid,
            )
            console.say(f"record {rid[:8]} started; {', '.join(scopes)} taken out of the schedule")
            self._wait_for_daemon()
            outcome = handler.execute()
            undo_failures = self._run_undo()
            safe_failures = self.safe_state(scopes, touched_only=True)
            if undo_failures or safe_failures:
                raise HardwareError(
                    "could not return the hardware to the safe state: "
                    + "; ".join(undo_failures + safe_failures)
                )
            outcome.data.setdefault("limits", self.limits)
            outcome.data.setdefault("scopes", scopes)
            records.finish(
                rid,
                outcome.status,
                at=self.clock.now(),
                result=outcome.result,
                as_left=outcome.as_left,
                adjusted=outcome.adjusted,
                data=outcome.data,
                stability=_rule_dict(self.rule()),
                after=outcome.after,
            )
            reason = None
            console.say("")
            console.say(f"RESULT: {outcome.status.upper()}: {outcome.result}")
            if outcome.status == "fail":
                console.say("What to do: " + (outcome.on_fail or self.procedure.on_fail))
            return records.get(rid)
        except (KeyboardInterrupt, click.exceptions.Abort):
            reason = "interrupted by the operator (Ctrl-C)"
            raise Interrupted(f"calibration {rid[:8]}: {reason}; recorded incomplete") from None
        except (HardwareError, ProtocolError) as exc:
            reason = f"device lost or refused: {exc}"
            raise
        except SystemExit:
            reason = "the process was asked to stop"
            raise
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.console.end_live()
            if reason is not None:
                failures = self._run_undo() + self.safe_state(scopes, touched_only=True)
                if failures:
                    reason += "; safe state incomplete: " + "; ".join(failures)
                data = {**handler.partial_data(), "limits": self.limits, "scopes": scopes}
                with contextlib.suppress(ChamberError):
                    records.mark_incomplete(rid, reason, at=self.clock.now(), data=data)
                with contextlib.suppress(ChamberError):
                    store.release_calibration_locks(rid)
                self.console.say(
                    f"INCOMPLETE: {reason}. The hardware was put in the safe state (lids "
                    "open, manifold closed); nothing of this run is applied. Repeat the "
                    "procedure from the start."
                )

    def _wait_for_daemon(self) -> None:
        """Wait until the daemon's running observations on the locked hardware end (it
        starts no new one while the lock is held). An observation left running by a dead
        daemon is not waited for."""
        assert self.store is not None
        chambers = [c.id for c in self._chambers_of(self.scopes)]
        if not chambers:
            return
        limit = self.daemon_wait_s
        if limit is None:
            cycle = self.cfg.cycle
            limit = (
                cycle.prepurge_s
                + cycle.closing_timeout_s
                + max(self.cfg.observation_s(c) for c in self.cfg.chambers)
                + cycle.opening_timeout_s
                + cycle.postpurge_s
                + 60.0
            )
        start = self.clock.monotonic()
        said = False
        waited = False
        while True:
            running = self.store.query(
                "SELECT chamber FROM observations WHERE status = 'running' AND chamber IN "
                f"({', '.join('?' * len(chambers))})",
                chambers,
            )
            if not running or not _daemon_alive(self.store.path):
                break
            if not said:
                self.console.say(
                    f"waiting for the daemon's observation of {running[0]['chamber']} to end"
                )
                said = True
            if self.clock.monotonic() - start > limit:
                raise HardwareError(
                    f"the daemon's observation of {running[0]['chamber']} did not end within "
                    f"{limit:g} s"
                )
            waited = True
            self.clock.sleep(1.0)
        self._wait_for_port(waited)

    def _wait_for_port(self, waited: bool) -> None:
        """A running daemon holds the analyser's serial port until it sees the lock (at
        its next chamber, or within its idle check): wait for its ``analyser_lent`` event
        (at most ``_LEND_WAIT_S``)."""
        assert self.store is not None and self.record_id is not None
        if not any(s.startswith("analyser:") for s in self.scopes):
            return
        if not _daemon_alive(self.store.path, unknown=False):
            return
        start = self.clock.monotonic()
        while self.clock.monotonic() - start < _LEND_WAIT_S:
            if self.store.query(
                "SELECT 1 FROM events WHERE kind = 'analyser_lent' AND data LIKE ?",
                (f'%"{self.record_id}"%',),
            ):
                return
            self.clock.sleep(0.5)
        log.warning("the daemon did not confirm it closed the analyser's port; going on")

    # --- helpers for the handlers ---------------------------------------------------------

    def rule(self, sd_key: str = "stability_max_sd") -> StabilityRule:
        lim = self.limits
        return StabilityRule(
            window_s=lim.get("stability_window_s", 30.0),
            max_drift_per_min=lim.get("stability_max_drift_per_min", 0.5),
            max_sd=lim.get(sd_key, 1.0),
            hold_s=lim.get("stability_hold_s", 20.0),
        )

    def step(self, step_id: str, *, wait: bool = False) -> None:
        step = self.procedure.step(step_id)
        self.console.say("")
        self.console.say(f"-- {step.title} --")
        if wait:
            self.console.wait(f"done_{step_id}", step.instruction)
        else:
            self.console.say(step.instruction)

    def analyser(self) -> GasAnalyser:
        analyser = self._open_analyser()
        if not getattr(self, "_configured", False):
            info = analyser.identify()
            analyser.configure(
                output_interval_s=self.cfg.analyser(self.analyser_id).output_interval_s
            )
            self._configured = True
            self.instrument = {
                "model": info.model,
                "serial": info.serial,
                "firmware": info.firmware,
            }
            assert self.record_id is not None
            self.records.update(self.record_id, instrument=self.instrument)
        return analyser

    def cylinder(
        self, key: str, prompt: str, *, gas: str = "co2", default: str | None = None
    ) -> Cylinder:
        cylinder_id = self.console.ask(key, prompt, default=default)
        return self.cylinders.usable(cylinder_id, on=self.clock.now().date(), gas=gas)

    def slot_for(self, cylinder: Cylinder) -> str | None:
        for slot in self.cfg.calibration.manifold:
            if slot.cylinder == cylinder.id and (
                not slot.analysers or self.analyser_id in slot.analysers
            ):
                return slot.slot
        return None

    def gas_on(self, cylinder: Cylinder) -> None:
        """The cylinder's gas to the analyser: its manifold valve, or the trainee."""
        slot = self.slot_for(cylinder)
        if slot is not None:
            actuators = self._open_actuators()
            actuators.set_manifold(slot)
            self._push_undo("close the manifold", lambda: actuators.set_manifold(None))
            self.console.say(f"manifold valve {slot} opened: {cylinder.label}")
        else:
            self.console.wait(
                f"connect_{cylinder.id}",
                f"Connect cylinder {cylinder.label} to the analyser inlet (open vent, flow "
                "slightly above the analyser's), then go on.",
            )

    def watch_gas(
        self,
        step: str,
        cylinder: Cylinder | None,
        *,
        quantity: str = "co2_umol_mol",
        unit: str = "umol/mol",
        rule: StabilityRule | None = None,
        record: bool = True,
    ) -> GasReading:
        """Read until stable by ``rule`` (or the timeout); the live indicator meanwhile;
        the reading recorded with its cylinder."""
        rule = rule or self.rule()
        analyser = self.analyser()
        analyser.discard_pending()
        timeout = self.limits.get("stability_timeout_s", 900.0)
        interval = self.cfg.analyser(self.analyser_id).output_interval_s
        silent = max(self.cfg.cycle.analyser_silent_s, 2 * interval)
        start = self.clock.monotonic()
        times: list[float] = []
        values: list[float] = []
        state = StabilityState(False, 0.0, None, False, rule.hold_s)
        label = cylinder.id if cylinder is not None else "ambient"
        while True:
            reading = analyser.read(silent)
            value = getattr(reading, quantity)
            if value is None or not math.isfinite(value):
                continue
            times.append(reading.monotonic_s - start)
            values.append(float(value))
            state = update_stability(state, times, values, rule)
            stats = state.stats
            if stats is not None:
                self.console.live(
                    f"{label}: {value:9.2f} {unit}  drift {stats.drift_per_min:+7.2f}/min  "
                    f"SD {stats.sd:6.2f}  stable {state.stable_s:4.0f}/{rule.hold_s:g} s "
                    f"{progress_bar(state.progress)}"
                )
            if state.stable or times[-1] >= timeout:
                break
        self.console.end_live()
        gas = GasReading(cylinder, state, self.clock.now(), values)
        if not state.stable:
            self.console.say(f"{label}: NOT stable within {timeout:g} s")
        else:
            stats = state.stats
            assert stats is not None
            self.console.say(
                f"{label}: stable: mean {stats.mean:.2f} {unit}, SD {stats.sd:.2f}, n {stats.n}"
            )
        if record:
            self.add_reading(step, gas, unit=unit)
        return gas

    def add_reading(
        self, step: str, gas: GasReading, *, unit: str, data: Mapping[str, Any] | None = None
    ) -> None:
        stats = gas.state.stats
        cylinder = gas.cylinder
        row = {
            "cylinder_id": cylinder.id if cylinder else None,
            "gas": cylinder.gas if cylinder else "co2",
            "reference_value": cylinder.value if cylinder else None,
            "unit": unit,
            "mean": stats.mean if stats else None,
            "sd": stats.sd if stats else None,
            "n": stats.n if stats else 0,
            "drift_per_min": stats.drift_per_min if stats else None,
            "stable_s": gas.state.stable_s,
            "stable": gas.state.stable,
            "data": dict(data or {}),
        }
        assert self.record_id is not None
        self.records.add_reading(self.record_id, step=step, at=gas.at, **row)
        self.readings.append({"step": step, "at": iso(gas.at), **row})

    def check(self, gas: GasReading) -> dict[str, Any]:
        """A reading as a correction input (``data.checks``)."""
        assert gas.cylinder is not None
        return {
            "gas": gas.cylinder.gas,
            "at": iso(gas.at),
            "reference": gas.cylinder.value,
            "measured": gas.mean if gas.state.stats else None,
            "cylinder_id": gas.cylinder.id,
            "stable": gas.state.stable,
        }

    def read_for(self, seconds: float) -> list[Any]:
        analyser = self.analyser()
        analyser.discard_pending()
        interval = self.cfg.analyser(self.analyser_id).output_interval_s
        silent = max(self.cfg.cycle.analyser_silent_s, 2 * interval)
        start = self.clock.monotonic()
        out = []
        while True:
            reading = analyser.read(silent)
            out.append(reading)
            if reading.monotonic_s - start >= seconds:
                return out

    def geometry(self, chamber: ChamberConfig) -> dict[str, Any]:
        """The geometry in force now: the store's newest version, else the config's."""
        assert self.store is not None
        now = self.clock.now()
        row = self.store.geometry_in_force(chamber.id, now)
        if row is not None:
            return row
        g = chamber.geometry_on(now.date())
        return {
            "since": g.since.isoformat(),
            "area_cm2": g.area_cm2,
            "volume_cm3": g.volume_cm3,
            "offset_cm": g.offset_cm,
        }

    def closure(self, chamber: ChamberConfig, *, observation_s: float | None = None) -> dict:
        """One closure of ``chamber`` as the daemon makes it (not stored as an
        observation): prepurge, close, read, open. Returns the trace and the means."""
        cfg = self.cfg
        actuators = self._open_actuators()
        analyser = self.analyser()
        observation = observation_s or cfg.observation_s(chamber)
        actuators.set_lid(chamber.id, False)
        actuators.set_valve(chamber.id, True)
        self._push_undo(
            f"close the valve of {chamber.id}", lambda: actuators.set_valve(chamber.id, False)
        )
        if cfg.pump.mode == "measuring":
            actuators.set_pump(True)
        self.clock.sleep(cfg.cycle.prepurge_s)
        analyser.discard_pending()
        actuators.set_lid(chamber.id, True)
        self._push_undo(
            f"open the lid of {chamber.id}", lambda: actuators.set_lid(chamber.id, False)
        )
        start = self.clock.monotonic()
        while True:
            state = actuators.lid_state(chamber.id)
            waited = self.clock.monotonic() - start
            if state is LidState.CLOSED or (
                state is LidState.UNKNOWN and waited >= cfg.cycle.closing_timeout_s
            ):
                break
            if waited >= cfg.cycle.closing_timeout_s:
                raise HardwareError(
                    f"{chamber.id}: lid did not close within {cfg.cycle.closing_timeout_s:g} s"
                )
            self.clock.sleep(0.2)
        closed = self.clock.monotonic()
        interval = cfg.analyser(self.analyser_id).output_interval_s
        silent = max(cfg.cycle.analyser_silent_s, 2 * interval)
        t, co2, h2o, pressure = [], [], [], []
        aux_before = self._aux_means(chamber)
        while True:
            reading = analyser.read(silent)
            elapsed = reading.monotonic_s - closed
            if reading.co2_umol_mol is not None:
                t.append(elapsed)
                co2.append(reading.co2_umol_mol)
                h2o.append(reading.h2o_mmol_mol)
                pressure.append(reading.cell_pressure_kpa)
                if len(t) % 5 == 0:
                    self.console.live(
                        f"{chamber.id} closed {elapsed:5.0f}/{observation:g} s  CO2 "
                        f"{reading.co2_umol_mol:8.2f} umol/mol "
                        f"{progress_bar(elapsed / observation)}"
                    )
            if elapsed >= observation:
                break
        self.console.end_live()
        actuators.set_lid(chamber.id, False)
        aux = {**aux_before, **{k: v for k, v in self._aux_means(chamber).items() if v is not None}}
        return {
            "elapsed_s": t,
            "co2_umol_mol": co2,
            "h2o_mmol_mol": h2o,
            "cell_pressure_kpa": pressure,
            "aux": aux,
            "observation_s": observation,
        }

    def _aux_means(self, chamber: ChamberConfig) -> dict[str, float | None]:
        aux = self._open_aux()
        if aux is None:
            return {}
        readings = aux.read()
        out: dict[str, float | None] = {}
        for quantity in ("air_temperature_degc", "soil_temperature_degc", "pressure_kpa"):
            own = [r.value for r in readings if r.quantity == quantity and r.chamber == chamber.id]
            site = [r.value for r in readings if r.quantity == quantity and r.chamber is None]
            values = own or site
            out[quantity] = float(np.mean(values)) if values else None
        return out

    def fit(self, chamber: ChamberConfig, trace: Mapping[str, Any], *, dead_band_s: Any) -> Any:
        from chamberd.fitting import fit_closure

        geometry = self.geometry(chamber)
        aux = trace["aux"]
        pressures = trace["cell_pressure_kpa"]
        pressure: Any = (
            np.array(pressures, dtype=float)
            if all(p is not None for p in pressures)
            else aux.get("pressure_kpa")
        )
        temperature = aux.get("air_temperature_degc") or aux.get("soil_temperature_degc")
        if pressure is None or temperature is None:
            raise ConfigError(
                f"{chamber.id}: no temperature or pressure sensor: the flux cannot be computed"
            )
        h2o_values = trace["h2o_mmol_mol"]
        has_h2o = all(v is not None for v in h2o_values)
        return fit_closure(
            np.array(trace["elapsed_s"]),
            np.array(trace["co2_umol_mol"]),
            h2o_mmol_mol=np.array(h2o_values, dtype=float) if has_h2o else 0.0,
            pressure_kpa=pressure,
            temperature_degc=temperature,
            volume_cm3=geometry["volume_cm3"],
            area_cm2=geometry["area_cm2"],
            dead_band_s=dead_band_s,
            end_s=trace["observation_s"],
            precision_mf=self.cfg.analyser(self.analyser_id).precision_co2_umol_mol,
            dry=not has_h2o,
        )


def _daemon_alive(store_path: str, *, unknown: bool = True) -> bool:
    """Whether the daemon of this store runs (its live health file names its pid)."""
    try:
        live = json.loads(Path(f"{store_path}.health").read_text())
    except (OSError, ValueError):
        return unknown
    pid = live.get("pid")
    return isinstance(pid, int) and process_alive(pid)


def _rule_dict(rule: StabilityRule) -> dict[str, float]:
    return {
        "window_s": rule.window_s,
        "max_drift_per_min": rule.max_drift_per_min,
        "max_sd": rule.max_sd,
        "hold_s": rule.hold_s,
        "min_n": rule.min_n,
    }


# --- the procedures ---------------------------------------------------------------------


class _Handler:
    """One procedure's prepare (inputs, checked before anything happens) and execute."""

    def __init__(self, run: CalibrationRunner) -> None:
        self.run = run
        self.cylinders: list[Cylinder] = []
        self.data: dict[str, Any] = {}

    @property
    def console(self) -> Console:
        return self.run.console

    @property
    def limits(self) -> dict[str, float]:
        return self.run.limits

    def prepare(self) -> None:
        pass

    def execute(self) -> Outcome:
        raise NotImplementedError

    def partial_data(self) -> dict[str, Any]:
        """What an interrupted run leaves in its (incomplete) record: never applied."""
        return dict(self.data)


class _Warmup(_Handler):
    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        run.step("power", wait=True)
        run.step("watch")
        readings = run.read_for(lim["watch_s"])
        temps = [r.cell_temperature_degc for r in readings if r.cell_temperature_degc is not None]
        pressures = [r.cell_pressure_kpa for r in readings if r.cell_pressure_kpa is not None]
        flows = [r.flow_l_min for r in readings if getattr(r, "flow_l_min", None) is not None]
        problems, notes = [], []
        summary: dict[str, Any] = {"n": len(readings)}
        if temps:
            sd = float(np.std(temps, ddof=1)) if len(temps) > 1 else 0.0
            summary["cell_temperature_degc"] = float(np.mean(temps))
            summary["cell_temperature_sd_degc"] = sd
            notes.append(f"cell temperature {np.mean(temps):.2f} degC (SD {sd:.3f})")
            if sd > lim["max_temperature_sd_degc"]:
                problems.append(f"cell temperature not stable (SD {sd:.2f} degC)")
        site_p = run._aux_means(run.chambers[0]).get("pressure_kpa") if run.chambers else None
        if pressures:
            cell = float(np.mean(pressures))
            summary["cell_pressure_kpa"] = cell
            notes.append(f"cell pressure {cell:.2f} kPa")
            if site_p is not None:
                summary["site_pressure_kpa"] = site_p
                diff = cell - site_p
                notes.append(f"site barometer {site_p:.2f} kPa (difference {diff:+.2f})")
                if abs(diff) > lim["max_pressure_difference_kpa"]:
                    problems.append(f"cell pressure {diff:+.2f} kPa off the site barometer")
        if flows:
            flow = float(np.mean(flows))
            summary["flow_l_min"] = flow
            notes.append(f"flow {flow:.2f} L/min")
            if not lim["min_flow_l_min"] <= flow <= lim["max_flow_l_min"]:
                problems.append(
                    f"flow {flow:.2f} L/min outside {lim['min_flow_l_min']:g}-"
                    f"{lim['max_flow_l_min']:g}"
                )
        run.step("diagnostics")
        analyser = run.analyser()
        if hasattr(analyser, "errors"):
            errors = list(analyser.errors())
            summary["errors"] = errors
            if errors:
                problems.append("analyser reports errors: " + "; ".join(errors))
        elif hasattr(analyser, "diagnostics"):
            diagnostics = dict(analyser.diagnostics())
            summary["diagnostics"] = diagnostics
            bad = {k: v for k, v in diagnostics.items() if _diagnostic_bad(k, v)}
            if bad:
                problems.append(f"diagnostics report a fault: {bad}")
        for note in notes:
            self.console.say("  " + note)
        self.data["health"] = summary
        result = "; ".join(problems) if problems else "healthy: " + "; ".join(notes)
        return Outcome("fail" if problems else "pass", result, data=self.data)


def _diagnostic_bad(key: str, value: str) -> bool:
    """An LI-8x0 diagnostic field that reports a fault (``raw/...``/``diag`` bits, FALSE
    flags of the ``..ok``/``..good`` kind)."""
    name = key.rsplit("/", 1)[-1].lower()
    text = str(value).strip().upper()
    if name in ("diag", "error", "errors"):
        return text not in ("", "0", "FALSE", "OK", "NONE")
    if name.endswith(("ok", "good")):
        return text == "FALSE"
    return False


class _ZeroSpanCheck(_Handler):
    def prepare(self) -> None:
        run = self.run
        self.zero = run.cylinder("zero_cylinder", "Zero gas cylinder id")
        spans = self.console.ask("span_cylinders", "Span cylinder id(s)", kind=str)
        ids = spans if isinstance(spans, list) else str(spans).replace(",", " ").split()
        if not ids:
            raise ConfigError("give at least one span cylinder")
        today = run.clock.now().date()
        self.spans = [run.cylinders.usable(i, on=today, gas="co2") for i in ids]
        self.cylinders = [self.zero, *self.spans]
        if self.zero.value != 0:
            raise ConfigError(f"zero cylinder {self.zero.label}: its value must be 0")

    def measure(self, cylinder: Cylinder, step: str) -> GasReading:
        self.run.gas_on(cylinder)
        gas = self.run.watch_gas(step, cylinder)
        self.data.setdefault("checks", []).append(self.run.check(gas))
        return gas

    def judge(self, readings: Sequence[GasReading]) -> tuple[list[str], list[str]]:
        lim = self.limits
        problems, notes = [], []
        for gas in readings:
            assert gas.cylinder is not None
            if not gas.state.stable:
                problems.append(f"{gas.cylinder.id} not stable")
                continue
            ref = gas.cylinder.value
            if ref == 0:
                notes.append(f"zero reads {gas.mean:+.2f} umol/mol")
                if abs(gas.mean) > lim["max_zero_umol_mol"]:
                    problems.append(
                        f"zero {gas.mean:+.2f} umol/mol (limit {lim['max_zero_umol_mol']:g})"
                    )
            else:
                error = 100.0 * (gas.mean - ref) / ref
                notes.append(f"{gas.cylinder.id} {gas.mean:.2f} vs {ref:g} ({error:+.2f} %)")
                if abs(error) > lim["max_span_error_pct"]:
                    problems.append(
                        f"{gas.cylinder.id} {error:+.2f} % (limit {lim['max_span_error_pct']:g} %)"
                    )
        return problems, notes

    def execute(self) -> Outcome:
        run = self.run
        run.step("zero")
        readings = [self.measure(self.zero, "zero")]
        run.step("span")
        readings += [self.measure(c, "span") for c in self.spans]
        self.data["adjusted"] = False
        problems, notes = self.judge(readings)
        status = "fail" if problems else "pass"
        result = "; ".join(problems or notes) + ("" if problems else " (within limits)")
        if problems:
            result += "; recorded as a correction of the data"
        return Outcome(status, result, data=self.data)


class _ZeroSpanAdjust(_ZeroSpanCheck):
    def prepare(self) -> None:
        run = self.run
        self.zero = run.cylinder("zero_cylinder", "Zero gas cylinder id")
        self.span = run.cylinder("span_cylinder", "Span cylinder id")
        self.second = run.cylinder("check_cylinder", "Second span cylinder id (re-check)")
        if self.zero.value != 0:
            raise ConfigError(f"zero cylinder {self.zero.label}: its value must be 0")
        if self.second.id == self.span.id or self.second.value == self.span.value:
            raise ConfigError("the re-check needs a second span gas of another value")
        self.span2 = None
        if self.console.confirm(
            "use_span2", "Also set a second span point (CO2SPAN2)?", default=False
        ):
            self.span2 = run.cylinder("span2_cylinder", "Second span point cylinder id")
        self.h2o_zero = run._model() in _H2O_MODELS and self.console.confirm(
            "zero_h2o", "Zero H2O with the (dry) zero gas too?", default=True
        )
        self.cylinders = [c for c in (self.zero, self.span, self.span2, self.second) if c]

    def command(self, what: str, send: Callable[[], str]) -> None:
        text = send()
        entry = {"step": what, "command": text, "ack": True, "at": iso(self.run.clock.now())}
        self.data.setdefault("commands", []).append(entry)
        self.console.say(f"  sent {text!r}: ACK TRUE")

    def execute(self) -> Outcome:
        run = self.run
        analyser = run.analyser()
        if not hasattr(analyser, "calibration_state"):
            raise ConfigError(f"analyser {run.analyser_id}: the driver cannot adjust it")
        today = run.clock.now().date()
        run.step("as-found")
        as_found = dict(analyser.calibration_state())
        assert run.record_id is not None
        run.records.update(run.record_id, as_found=as_found)
        found = [self.measure(self.zero, "as-found zero"), self.measure(self.span, "as-found span")]
        self.data["adjusted"] = False
        for gas in found:
            if not gas.state.stable:
                return Outcome(
                    "fail",
                    f"{gas.cylinder.id if gas.cylinder else '?'} not stable as found: nothing "
                    "adjusted",
                    data=self.data,
                )
        run.step("zero")
        run.gas_on(self.zero)
        gas = run.watch_gas("zero", self.zero)
        if not gas.state.stable:
            return Outcome("fail", "zero gas not stable: nothing adjusted", data=self.data)
        self.data["adjusted"] = True  # from the first command on, the analyser is changed
        self.command("co2zero", lambda: analyser.zero_co2(today))
        if self.h2o_zero:
            self.command("h2ozero", lambda: analyser.zero_h2o(today))
        run.step("span")
        run.gas_on(self.span)
        gas = run.watch_gas("span", self.span)
        if not gas.state.stable:
            raise HardwareError(
                f"span gas {self.span.id} not stable after the zero: the analyser is zeroed "
                "but not spanned"
            )
        self.command("co2span", lambda: analyser.span_co2(self.span.value, today))
        if self.span2 is not None:
            run.gas_on(self.span2)
            gas = run.watch_gas("span2", self.span2)
            if not gas.state.stable:
                raise HardwareError(f"span2 gas {self.span2.id} not stable")
            self.command("co2span2", lambda: analyser.span2_co2(self.span2.value, today))
        run.step("as-left")
        as_left = dict(analyser.calibration_state())
        after = [
            self.measure_after(self.second, "re-check"),
            self.measure_after(self.zero, "re-check zero"),
        ]
        problems, notes = self.judge(after)
        status = "fail" if problems else "pass"
        result = "adjusted; as left: " + "; ".join(problems or notes)
        return Outcome(status, result, data=self.data, as_left=as_left, adjusted=True)

    def measure_after(self, cylinder: Cylinder, step: str) -> GasReading:
        self.run.gas_on(cylinder)
        gas = self.run.watch_gas(step, cylinder)
        self.data.setdefault("checks_after", []).append(self.run.check(gas))
        return gas

    def partial_data(self) -> dict[str, Any]:
        data = dict(self.data)
        if data.get("commands"):
            data["partly_adjusted"] = True
        return data


class _GMP343Check(_Handler):
    def prepare(self) -> None:
        run = self.run
        ids = self.console.ask("cylinders", "Cylinder ids, in the order to connect them", kind=str)
        ids = ids if isinstance(ids, list) else str(ids).replace(",", " ").split()
        today = run.clock.now().date()
        self.sequence = [run.cylinders.usable(i, on=today, gas="co2") for i in ids]
        distinct = {c.id for c in self.sequence}
        if len(distinct) < self.limits["min_cylinders"]:
            raise ConfigError(
                f"the GMP343 check needs at least {self.limits['min_cylinders']:g} different "
                "cylinders"
            )
        if len(self.sequence) == len(distinct) and len(distinct) >= 2:
            # alternate: low, high, low, high ... as the issue asks
            ordered = sorted(self.sequence, key=lambda c: c.value)
            self.sequence = ordered + ordered
        self.cylinders = list({c.id: c for c in self.sequence}.values())

    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        analyser = run.analyser()
        problems, notes = [], []
        run.step("compensation")
        if hasattr(analyser, "compensation"):
            comp = dict(analyser.compensation())
            errors = list(analyser.errors())
            assert run.record_id is not None
            run.records.update(run.record_id, as_found={"compensation": comp, "errors": errors})
            self.data["compensation"] = comp
            site = run._aux_means(run.chambers[0]).get("pressure_kpa") if run.chambers else None
            if errors:
                problems.append("probe errors: " + "; ".join(errors))
            if not comp.get("pressure_on"):
                problems.append("pressure compensation is off")
            if site is not None and comp.get("pressure_hpa") is not None:
                diff = float(comp["pressure_hpa"]) - 10.0 * site
                notes.append(f"pressure setting {comp['pressure_hpa']:g} hPa ({diff:+.1f} hPa)")
                if abs(diff) > lim["max_pressure_setting_difference_hpa"] or not comp.get(
                    "pressure_on"
                ):
                    if self.console.confirm(
                        "set_pressure",
                        f"Set the probe's pressure to {10 * site:.0f} hPa?",
                        default=False,
                    ):
                        analyser.set_compensation(
                            pressure_hpa=round(10 * site, 1), pressure_on=True
                        )
                        comp = dict(analyser.compensation())
                        self.data["compensation_set"] = comp
                        problems = [p for p in problems if "pressure" not in p]
                        notes.append(f"pressure compensation set to {comp['pressure_hpa']:g} hPa")
                    else:
                        problems.append(f"pressure setting {diff:+.1f} hPa off the site's")
        run.step("cylinders")
        rule = run.rule("stability_max_sd")
        for cylinder in self.sequence:
            run.gas_on(cylinder)
            gas = run.watch_gas("cylinder", cylinder, rule=rule)
            self.data.setdefault("checks", []).append(run.check(gas))
            if not gas.state.stable:
                problems.append(f"{cylinder.id} not stable")
        checks = [c for c in self.data.get("checks", []) if c["measured"] is not None]
        if len({c["reference"] for c in checks}) >= 2:
            ref = np.array([c["reference"] for c in checks])
            meas = np.array([c["measured"] for c in checks])
            gain, offset = np.polyfit(ref, meas, 1)
            self.data["gain"] = float(gain)
            self.data["offset_umol_mol"] = float(offset)
            notes.append(
                f"gain {gain:.4f}, offset {offset:+.2f} umol/mol (measured = offset + gain x true)"
            )
            for c in checks:
                allowed = lim["max_error_umol_mol"] + lim["max_error_pct"] / 100 * c["reference"]
                error = c["measured"] - c["reference"]
                if abs(error) > allowed:
                    problems.append(
                        f"{c['cylinder_id']} {error:+.2f} umol/mol (allowed {allowed:.1f})"
                    )
        self.data["adjusted"] = False
        status = "fail" if problems else "pass"
        result = "; ".join(problems + notes)
        return Outcome(status, result, data=self.data)


class _Linearity(_Handler):
    def prepare(self) -> None:
        run = self.run
        ids = self.console.ask("cylinders", "Cylinder ids, lowest to highest", kind=str)
        ids = ids if isinstance(ids, list) else str(ids).replace(",", " ").split()
        today = run.clock.now().date()
        self.sequence = sorted(
            (run.cylinders.usable(i, on=today, gas="co2") for i in ids), key=lambda c: c.value
        )
        if len({c.value for c in self.sequence}) < self.limits["min_cylinders"]:
            raise ConfigError(
                f"linearity needs at least {self.limits['min_cylinders']:g} cylinders of "
                "different values"
            )
        self.cylinders = self.sequence

    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        run.step("cylinders")
        for cylinder in self.sequence:
            run.gas_on(cylinder)
            gas = run.watch_gas("cylinder", cylinder)
            self.data.setdefault("checks", []).append(run.check(gas))
        run.step("fit")
        checks = [c for c in self.data["checks"] if c["stable"]]
        problems = [
            f"{c['cylinder_id']} not stable" for c in self.data["checks"] if not c["stable"]
        ]
        if len(checks) < 2:
            return Outcome("fail", "; ".join(problems) or "too few readings", data=self.data)
        ref = np.array([c["reference"] for c in checks])
        meas = np.array([c["measured"] for c in checks])
        gain, offset = np.polyfit(ref, meas, 1)
        residuals = meas - (offset + gain * ref)
        table = []
        for c, r in zip(checks, residuals, strict=True):
            allowed = max(
                lim["max_residual_umol_mol"], lim["max_residual_pct"] / 100 * c["reference"]
            )
            table.append(
                {
                    "cylinder_id": c["cylinder_id"],
                    "reference": c["reference"],
                    "measured": c["measured"],
                    "residual_umol_mol": float(r),
                    "allowed_umol_mol": allowed,
                }
            )
            self.console.say(
                f"  {c['cylinder_id']:>12} {c['reference']:9.2f} {c['measured']:9.2f} "
                f"residual {r:+6.2f} (allowed {allowed:.2f})"
            )
            if abs(r) > allowed:
                problems.append(f"{c['cylinder_id']} residual {r:+.2f} umol/mol")
        self.data.update(
            gain=float(gain), offset_umol_mol=float(offset), residuals=table, adjusted=False
        )
        worst = max(abs(float(r)) for r in residuals)
        status = "fail" if problems else "pass"
        result = (
            "; ".join(problems) if problems else f"linear: largest residual {worst:.2f} umol/mol"
        )
        return Outcome(status, result + f" (gain {gain:.4f}, offset {offset:+.2f})", data=self.data)


class _Blank(_Handler):
    def prepare(self) -> None:
        self.breath = self.console.confirm(
            "breath_test", "Do the breath test as well?", default=False
        )

    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        chamber = run.chambers[0]
        run.step("plate", wait=True)
        run.step("closure")
        trace = run.closure(chamber)
        fit = run.fit(chamber, trace, dead_band_s=run.cfg.dead_band_s(chamber))
        # judged on the linear flux: the MDF is the linear slope's detection limit, and the
        # exponential of a flat, noisy trace may put any slope at t0 (a blip early on)
        flux, mdf = float(fit.lin_flux), float(fit.mdf) * lim["mdf_factor"]
        rise = trace["co2_umol_mol"][-1] - trace["co2_umol_mol"][0] if trace["co2_umol_mol"] else 0
        self.data["blank"] = {
            "chamber": chamber.id,
            "flux_umol_m2_s": flux,
            "mdf_umol_m2_s": mdf,
            "model": "linear",
            "exponential_flux_umol_m2_s": float(fit.exp_flux),
            "rise_umol_mol": rise,
            "geometry": run.geometry(chamber),
        }
        self.data["trace"] = {k: trace[k] for k in ("elapsed_s", "co2_umol_mol")}
        problems = []
        self.console.say(f"  blank flux {flux:+.4f} umol m-2 s-1, MDF {mdf:.4f}")
        if not abs(flux) < mdf:
            problems.append(
                f"blank flux {flux:+.4f} umol m-2 s-1 >= MDF {mdf:.4f}: a leak or artefact"
            )
        if self.breath:
            run.step("breath")
            breath = run.closure(chamber, observation_s=lim["breath_s"])
            values = np.array(breath["co2_umol_mol"])
            t = np.array(breath["elapsed_s"])
            trend = np.polyval(np.polyfit(t, values, 1), t) if t.size > 2 else values
            excess = float(np.max(values - trend)) if values.size else 0.0
            self.data["breath"] = {
                "max_excess_umol_mol": excess,
                "trace": {"elapsed_s": breath["elapsed_s"], "co2_umol_mol": breath["co2_umol_mol"]},
            }
            self.console.say(f"  breath test: largest excess over the trend {excess:.1f} umol/mol")
            if excess > lim["max_breath_rise_umol_mol"]:
                problems.append(f"breath test: CO2 rose {excess:.1f} umol/mol above the trend")
        status = "fail" if problems else "pass"
        result = "; ".join(problems) if problems else f"blank flux {flux:+.4f} below MDF {mdf:.4f}"
        return Outcome(status, result, data=self.data)


class _LidCheck(_Handler):
    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        actuators = run._open_actuators()
        cycle = run.cfg.cycle
        problems = []
        results = []
        for chamber in run.chambers:
            run.step("close")
            entry: dict[str, Any] = {"chamber": chamber.id, "flags": []}
            actuators.set_lid(chamber.id, True)
            run._push_undo(
                f"open the lid of {chamber.id}", lambda c=chamber: actuators.set_lid(c.id, False)
            )
            entry["close_s"], entry["close_switch"] = self._time(
                actuators, chamber, LidState.CLOSED, cycle.closing_timeout_s
            )
            run.step("open")
            actuators.set_lid(chamber.id, False)
            entry["open_s"], entry["open_switch"] = self._time(
                actuators, chamber, LidState.OPEN, cycle.opening_timeout_s
            )
            for what in ("close", "open"):
                seconds, switch = entry[f"{what}_s"], entry[f"{what}_switch"]
                if switch == "unknown":
                    entry["flags"].append(f"no {what} switch")
                elif seconds is None:
                    entry["flags"].append(f"{what} switch did not make")
                elif seconds > lim["max_move_s"]:
                    entry["flags"].append(f"slow to {what} ({seconds:.1f} s)")
            text = (
                f"  {chamber.id}: close {_s(entry['close_s'])} ({entry['close_switch']}), open "
                f"{_s(entry['open_s'])} ({entry['open_switch']})"
                + (f": {', '.join(entry['flags'])}" if entry["flags"] else ": ok")
            )
            self.console.say(text)
            if entry["flags"]:
                problems.append(f"{chamber.id} {', '.join(entry['flags'])}")
            results.append(entry)
            run.records.add_reading(
                run.record_id,
                step="lid",
                at=run.clock.now(),
                data=entry,
                stable=not entry["flags"],
            )
        self.data["lids"] = results
        status = "fail" if problems else "pass"
        result = (
            "; ".join(problems)
            if problems
            else f"{len(results)} lid(s) within {lim['max_move_s']:g} s"
        )
        return Outcome(status, result, data=self.data)

    def _time(
        self, actuators: ChamberActuators, chamber: ChamberConfig, want: LidState, timeout: float
    ) -> tuple[float | None, str]:
        clock = self.run.clock
        start = clock.monotonic()
        while True:
            state = actuators.lid_state(chamber.id)
            waited = clock.monotonic() - start
            if state is want:
                return waited, state.value
            if state is LidState.UNKNOWN:
                clock.sleep(timeout)
                return None, state.value
            if waited >= timeout:
                return None, state.value
            clock.sleep(0.1)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


class _Flow(_Handler):
    def prepare(self) -> None:
        self.meter = None

    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        run.step("meter", wait=True)
        meter = self.console.ask("flowmeter_l_min", "Your flowmeter reading [L/min]", kind=float)
        readings = run.read_for(10.0)
        flows = [r.flow_l_min for r in readings if getattr(r, "flow_l_min", None) is not None]
        problems = []
        self.data["flowmeter_l_min"] = meter
        if not lim["min_flow_l_min"] <= meter <= lim["max_flow_l_min"]:
            problems.append(
                f"flow {meter:g} L/min outside {lim['min_flow_l_min']:g}-"
                f"{lim['max_flow_l_min']:g} L/min"
            )
        if flows:
            own = float(np.mean(flows))
            self.data["analyser_flow_l_min"] = own
            diff = 100.0 * (own - meter) / meter if meter else math.inf
            self.console.say(f"  analyser reports {own:.3f} L/min ({diff:+.1f} % of the flowmeter)")
            if abs(diff) > lim["max_flow_difference_pct"]:
                problems.append(f"analyser flow {own:.2f} L/min differs by {diff:+.1f} %")
        else:
            self.console.say("  the analyser does not report its flow: the flowmeter is recorded")
        run.records.add_reading(
            run.record_id,
            step="flow",
            at=run.clock.now(),
            unit="L/min",
            reference_value=meter,
            mean=self.data.get("analyser_flow_l_min"),
            n=len(flows),
        )
        status = "fail" if problems else "pass"
        result = "; ".join(problems) if problems else f"flow {meter:g} L/min within limits"
        return Outcome(status, result, data=self.data)


class _Sensors(_Handler):
    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        run.step("reference", wait=True)
        p_ref = self.console.ask("reference_pressure_kpa", "Reference barometer [kPa]", kind=float)
        t_ref = self.console.ask(
            "reference_temperature_degc", "Reference thermometer [degC]", kind=float
        )
        run.step("compare")
        aux = run._open_aux()
        if aux is None:
            raise ConfigError("the site has no aux sensors ([[aux]]) to compare")
        readings = aux.read()
        problems, rows = [], []
        for r in readings:
            if r.quantity == "pressure_kpa":
                limit, ref = lim["max_pressure_difference_kpa"], p_ref
            elif r.quantity == "air_temperature_degc":
                limit, ref = lim["max_temperature_difference_degc"], t_ref
            else:
                continue
            diff = r.value - ref
            rows.append(
                {
                    "sensor": r.sensor,
                    "quantity": r.quantity,
                    "value": r.value,
                    "reference": ref,
                    "difference": diff,
                    "limit": limit,
                }
            )
            self.console.say(
                f"  {r.sensor}: {r.value:.2f} vs {ref:g} ({diff:+.2f}, limit {limit:g})"
            )
            run.records.add_reading(
                run.record_id,
                step=r.sensor,
                at=run.clock.now(),
                reference_value=ref,
                mean=r.value,
                n=1,
                unit="kPa" if r.quantity == "pressure_kpa" else "degC",
            )
            if abs(diff) > limit:
                problems.append(f"{r.sensor} {diff:+.2f} off the reference")
        if run.analyser_id is not None:
            cells = [
                x.cell_pressure_kpa for x in run.read_for(5.0) if x.cell_pressure_kpa is not None
            ]
            if cells:
                self.data["cell_pressure_kpa"] = float(np.mean(cells))
                self.console.say(f"  analyser cell pressure {np.mean(cells):.2f} kPa (informative)")
        if not rows:
            problems.append("no pressure or air temperature sensor configured")
        self.data["sensors"] = rows
        status = "fail" if problems else "pass"
        result = "; ".join(problems) if problems else f"{len(rows)} sensor(s) within limits"
        return Outcome(status, result, data=self.data)


class _Geometry(_Handler):
    def prepare(self) -> None:
        run, lim = self.run, self.limits
        chamber = run.chambers[0]
        g = chamber.geometry_on(run.clock.now().date())
        self.offsets = self.console.ask(
            "offsets_cm", "Collar offsets [cm], 4 or more points", kind=list
        )
        if len(self.offsets) < lim["min_points"]:
            raise ConfigError(
                f"give at least {lim['min_points']:g} offsets (got {len(self.offsets)})"
            )
        if any(not 0 <= v <= 100 for v in self.offsets):
            raise ConfigError("offsets_cm: each between 0 and 100 cm")
        self.area = self.console.ask(
            "area_cm2", "Collar inside area [cm2]", kind=float, default=g.area_cm2
        )
        self.chamber_v = self.console.ask(
            "chamber_volume_cm3", "Chamber volume above the collar [cm3]", kind=float
        )
        self.tubing_v = self.console.ask(
            "tubing_volume_cm3", "Tubing volume [cm3]", kind=float, default=0.0
        )
        self.analyser_v = self.console.ask(
            "analyser_volume_cm3", "Analyser (cell, filters) volume [cm3]", kind=float, default=0.0
        )
        for name, value in (("area_cm2", self.area), ("chamber_volume_cm3", self.chamber_v)):
            if not value > 0:
                raise ConfigError(f"{name}: must be > 0")
        for name, value in (
            ("tubing_volume_cm3", self.tubing_v),
            ("analyser_volume_cm3", self.analyser_v),
        ):
            if value < 0:
                raise ConfigError(f"{name}: must be >= 0")

    def execute(self) -> Outcome:
        run, lim = self.run, self.limits
        chamber = run.chambers[0]
        run.step("offsets")
        run.step("volumes")
        offsets = np.array(self.offsets)
        mean = float(offsets.mean())
        sd = float(offsets.std(ddof=1))
        collar = self.area * mean
        total = self.chamber_v + self.tubing_v + self.analyser_v + collar
        geometry = {
            "area_cm2": self.area,
            "offset_cm": mean,
            "offset_sd_cm": sd,
            "offsets_cm": self.offsets,
            "chamber_volume_cm3": self.chamber_v,
            "tubing_volume_cm3": self.tubing_v,
            "analyser_volume_cm3": self.analyser_v,
            "collar_volume_cm3": collar,
            "volume_cm3": total,
            "previous": run.geometry(chamber),
        }
        self.data["geometry"] = geometry
        self.console.say(
            f"  offset {mean:.2f} cm (SD {sd:.2f}, n {offsets.size}); collar air {collar:.0f} cm3; "
            f"total volume {total:.0f} cm3 (was {geometry['previous']['volume_cm3']:.0f})"
        )
        if sd > lim["max_offset_sd_cm"]:
            return Outcome(
                "fail",
                f"offsets uneven: SD {sd:.2f} cm > {lim['max_offset_sd_cm']:g} cm; "
                "geometry not changed",
                data=self.data,
            )
        since = run.clock.now()
        rid = run.record_id
        store = run.store
        assert store is not None
        store.sync_chambers(run.cfg, since)  # the chambers' rows (as the daemon writes them)

        def apply(conn: Any) -> None:
            store.add_geometry_version(
                chamber.id,
                since,
                area_cm2=self.area,
                volume_cm3=total,
                offset_cm=mean,
                calibration_id=rid,
                conn=conn,
            )

        geometry["since"] = iso(since)
        return Outcome(
            "pass",
            f"new geometry of {chamber.id} from {iso(since)[:19]}Z: area {self.area:g} cm2, "
            f"volume {total:.0f} cm3, offset {mean:.2f} cm",
            data=self.data,
            after=apply,
        )


class _DeadBand(_Handler):
    def execute(self) -> Outcome:
        from chamberd.fitting.flux import slope_to_flux

        run, lim = self.run, self.limits
        chamber = run.chambers[0]
        n = int(
            self.console.ask(
                "closures", "How many closures?", kind=int, default=int(lim["closures"])
            )
        )
        scans = []
        run.step("closures")
        for k in range(n):
            trace = run.closure(chamber)
            run.step("scan")
            fit = run.fit(chamber, trace, dead_band_s="auto")
            choice = fit.dead_band_choice
            fluxes = [
                slope_to_flux(s, fit.dry_air_mol_m2) if math.isfinite(s) else None
                for s in choice.slopes_mf_s
            ]
            self.console.say(
                f"  closure {k + 1}: dead band [s] -> flux [umol m-2 s-1] ({choice.model})"
            )
            for d, f in zip(choice.candidates_s, fluxes, strict=True):
                if d % 5 == 0 or d == choice.dead_band_s:  # every 5 s, and the choice
                    mark = "  <- chosen" if d == choice.dead_band_s else ""
                    self.console.say(f"    {d:5.0f}  {'-' if f is None else f'{f:8.4f}'}{mark}")
            self.console.say(f"  {choice.reason}")
            scan = {
                "closure": k + 1,
                "dead_band_s": list(choice.candidates_s),
                "flux_umol_m2_s": fluxes,
                "chosen_dead_band_s": choice.dead_band_s,
                "end_s": choice.end_s,
                "sensitivity_pct_per_10s": 1000.0 * choice.sensitivity_per_s,
                "model": choice.model,
                "reason": choice.reason,
                "configured_dead_band_s": run.cfg.dead_band_s(chamber),
            }
            scans.append(scan)
            run.records.add_reading(
                run.record_id,
                step=f"closure {k + 1}",
                at=run.clock.now(),
                data={
                    **scan,
                    "trace": {
                        "elapsed_s": trace["elapsed_s"],
                        "co2_umol_mol": trace["co2_umol_mol"],
                    },
                },
            )
        self.data["scans"] = scans
        worst = max(s["sensitivity_pct_per_10s"] for s in scans)
        chosen = [s["chosen_dead_band_s"] for s in scans]
        ok = worst <= lim["max_sensitivity_pct_per_10s"]
        result = (
            f"dead bands chosen by the fitting engine: {', '.join(f'{c:g}' for c in chosen)} s "
            f"(configured {run.cfg.dead_band_s(chamber):g} s); flux sensitivity "
            f"{worst:.2f} % per 10 s"
        )
        return Outcome("pass" if ok else "fail", result, data=self.data)


_HANDLERS: dict[str, type[_Handler]] = {
    "warmup": _Warmup,
    "zero-span-check": _ZeroSpanCheck,
    "zero-span-adjust": _ZeroSpanAdjust,
    "gmp343-check": _GMP343Check,
    "linearity": _Linearity,
    "blank": _Blank,
    "lid-check": _LidCheck,
    "flow": _Flow,
    "sensors": _Sensors,
    "geometry": _Geometry,
    "dead-band": _DeadBand,
}
