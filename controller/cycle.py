"""One observation of one chamber: the phases, the samples, the fit, the safe state.

Phases, with LI-COR's names::

    prepurge -> closing (until the closed end-switch, or a timeout) -> deadband
    -> observing -> opening (until the open end-switch) -> postpurge -> done | aborted(reason)

The observation's uuid is minted when the lid starts to close. Samples are logged from
then on (negative elapsed time while closing; 0 is the moment the closed switch confirmed)
and written in batches; the completion (status, fluxes, outbox row) is one transaction.
Every failure ends in a safe state: the chamber's lid commanded open, and all lids when the
analyser is silent or the error is not the chamber's own.

Shared parts are told apart from the chamber: an analyser fault (``group_fault``), a
Modbus line that does not answer (``line_fault``) and a site database that cannot be
written (``storage_error``) are reported in the outcome and not charged to the chamber.
When the database cannot be written, the lids are opened first; the observation's
unwritten samples and its completion are handed back (``deferred``) to be written when
the database can be written again, so nothing is half-written and nothing measured is
lost: a finished observation stays ``done``, an interrupted one ends ``aborted`` with the
reason that interrupted it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chamberd.fitting import (
    FitSettings,
    closing_onset_s,
    detect_ebullition,
    diffusive_segment,
    fit_closure,
    without_steps,
)

from .clock import Clock
from .config import TRACE_GAS_PROTOCOLS, ChamberConfig, SiteConfig
from .errors import (
    ChamberError,
    HardwareError,
    HardwareTimeoutError,
    ProtocolError,
    StorageError,
)
from .hardware import AuxReading, AuxSensors, ChamberActuators, GasAnalyser, LidState
from .health import DETAIL_CHARS, HealthBoard, brief, line_of, open_lids, refusals
from .store import SiteStore, iso

__all__ = ["PROCESSING_VERSION", "CycleOutcome", "CycleRunner", "Stopped"]

log = logging.getLogger(__name__)

PROCESSING_VERSION = "site-1"
_FLUSH_EVERY = 30
_LID_CHECK_S = 10.0
_CLOCK_STEP_S = 2.0
_ANALYSER_FAULTS = frozenset({"analyser_silent", "analyser_garbled"})
_POLL_S = 0.05  # how long a poll of another analyser of the loop waits for a reading
#: the gases fitted, their sample column, flux unit and precision field
GASES = (
    ("co2", "co2_umol_mol", "umol m-2 s-1", "precision_co2_umol_mol"),
    ("ch4", "ch4_nmol_mol", "nmol m-2 s-1", "precision_ch4_nmol_mol"),
    ("n2o", "n2o_nmol_mol", "nmol m-2 s-1", "precision_n2o_nmol_mol"),
)
#: each gas's mole-fraction unit: the flux unit's amount per mol (umol m-2 s-1 from umol mol-1)
MOLE_FRACTION_UNITS = {gas: f"{unit.split()[0]} mol-1" for gas, _, unit, _ in GASES}


class Stopped(ChamberError):
    """The daemon is stopping: the cycle ends in the safe state.

    ``deferred`` holds the interrupted observation's writes when its completion could not
    be written (see :attr:`CycleOutcome.deferred`)."""

    deferred: tuple[tuple[str, Callable[[], None]], ...] = ()


class _StorageDown(Exception):
    """Another part of the daemon found the site database not writable: stop measuring."""


class _Abort(Exception):
    def __init__(self, reason: str, *, kind: str = "cycle_abort") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Geometry:
    """A chamber's geometry version as an observation uses it."""

    area_cm2: float
    volume_cm3: float
    offset_cm: float
    since_text: str  # the version's start, as stored (a date, or a UTC instant)


@dataclass
class CycleOutcome:
    chamber: str
    status: str  # "done" | "aborted" | "skipped"
    reason: str | None = None
    uuid: str | None = None
    flux: float | None = None
    flags: tuple[str, ...] = ()
    lid_fault: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    group_fault: bool = False  # the analyser failed, not the chamber
    line_fault: str | None = None  # this Modbus line (``modbus:<id>``) did not answer
    storage_error: StorageError | None = None  # the site database could not be written
    # writes to make when the database can be written again: (what, write)
    deferred: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status != "done" or self.lid_fault


Alarm = Callable[..., None]
#: told ``progress(chamber, phase, uuid)`` at each phase and each sample (for the heartbeat)
Progress = Callable[[str, str, "str | None"], None]


class CycleRunner:
    """Runs observations of the chambers of one analyser group."""

    def __init__(
        self,
        cfg: SiteConfig,
        *,
        clock: Clock,
        store: SiteStore,
        analyser: GasAnalyser,
        analyser_id: str,
        actuators: ChamberActuators,
        aux: AuxSensors | None,
        alarm: Alarm,
        config_hash: str,
        software_version: str,
        stop: threading.Event,
        analyser_info: dict[str, str] | None = None,
        calibration_id: str | None = None,
        board: HealthBoard | None = None,
        storage_down: threading.Event | None = None,
        progress: Progress | None = None,
        loop: dict[str, GasAnalyser] | None = None,
    ) -> None:
        self.cfg = cfg
        # the loop's other analysers (in series after the first), polled between its readings
        self.others = {k: v for k, v in (loop or {}).items() if k != analyser_id}
        self.progress = progress
        self.clock = clock
        self.store = store
        self.analyser = analyser
        self.analyser_id = analyser_id
        self.actuators = actuators
        self.aux = aux
        self.alarm = alarm
        self.config_hash = config_hash
        self.software_version = software_version
        self.stop = stop
        self.analyser_info = analyser_info or {}
        self.calibration_id = calibration_id
        self.fit_settings = FitSettings()
        self.board = board or HealthBoard(clock)
        self.storage_down = storage_down or threading.Event()
        self.component = f"analyser:{analyser_id}"

    # --- helpers --------------------------------------------------------------------------

    def _phase(self, state: dict[str, Any], phase: str) -> None:
        state["phase"] = phase
        if self.progress is not None:
            self.progress(state["chamber"], phase, state["uuid"])

    def _sleep(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while True:
            if self.stop.is_set():
                raise Stopped("stopping")
            if self.storage_down.is_set():
                raise _StorageDown()
            remaining = end - self.clock.monotonic()
            if remaining <= 0:
                return
            self.clock.sleep(min(remaining, 1.0))

    def _aux(self) -> list[AuxReading]:
        if self.aux is None or not self.cfg.aux:
            return []
        try:
            readings = list(self.aux.read())
        except (HardwareError, ProtocolError) as exc:
            # one alarm per outage (the daemon's health listener); the line too, if named
            line = line_of(exc)
            if line is not None:
                self.board.fault(line, exc)
            self.board.fault("aux", exc)
            return []
        for line in sorted({f"modbus:{a.device}" for a in self.cfg.aux}):
            self.board.good(line)
        self.board.good("aux", f"{len(readings)} reading(s)")
        return readings

    # --- the cycle ------------------------------------------------------------------------

    def run(self, chamber: ChamberConfig, round_id: int | None) -> CycleOutcome:
        state: dict[str, Any] = {
            "uuid": None,
            "chamber": chamber.id,
            "samples": [],
            "written": 0,
            "closed_mono": None,
            "completion": None,  # the completion being written
            "outcome": None,  # the outcome of a finished observation
        }
        try:
            return self._run(chamber, round_id, state)
        except Stopped as stop:
            outcome = self._finish_abort(chamber, state, "shutdown", kind="shutdown")
            stop.deferred = tuple(outcome.deferred)
            raise
        except (StorageError, _StorageDown) as exc:
            return self._storage_abort(chamber, state, exc)
        except _Abort as abort:
            outcome = CycleOutcome(
                chamber.id,
                "aborted",
                abort.reason,
                state["uuid"],
                group_fault=abort.kind in _ANALYSER_FAULTS,
            )
            return self._finish_abort(chamber, state, abort.reason, kind=abort.kind, out=outcome)
        except (HardwareError, ProtocolError) as exc:
            line = line_of(exc)
            if line is None:
                reason = f"hardware: {brief(exc)}"
                outcome = CycleOutcome(chamber.id, "aborted", reason, state["uuid"])
                return self._finish_abort(
                    chamber, state, reason, kind="hardware_error", out=outcome, error=exc
                )
            # the line, not the chamber: one alarm per outage comes from the daemon
            reason = f"modbus line {line.split(':', 1)[1]} not answering: {brief(exc, 150)}"
            status = "aborted" if state["uuid"] is not None else "skipped"
            outcome = CycleOutcome(chamber.id, status, reason, state["uuid"], line_fault=line)
            return self._finish_abort(
                chamber, state, reason, kind="line_fault", out=outcome, level="info", error=exc
            )

    def _run(
        self, chamber: ChamberConfig, round_id: int | None, state: dict[str, Any]
    ) -> CycleOutcome:
        cfg, cycle = self.cfg, self.cfg.cycle
        dead_band = cfg.dead_band_s(chamber)
        observation = cfg.observation_s(chamber)
        interval = cycle.sample_interval_s
        # every gas's window, in aligned time, must be covered by its analyser's arrivals
        lags = [cfg.analyser(a).lag_s for a in [self.analyser_id, *self.others]]
        sampled = max(observation, *(cfg.observation_s(chamber, g) for g, *_ in GASES)) + max(lags)

        # prepurge: lid open, flow routed through this chamber
        self._phase(state, "prepurge")
        prepurge_at = self.clock.now()
        self.actuators.set_lid(chamber.id, False)
        self.actuators.set_valve(chamber.id, True)
        if self.cfg.pump.mode == "measuring":
            self.actuators.set_pump(True)
        self._sleep(cycle.prepurge_s)

        # closing: the observation exists from here on
        self.analyser.discard_pending()
        for other in self.others.values():
            other.discard_pending()
        state["last_arrival"] = {a: self.clock.monotonic() for a in self.others}
        closing_at = self.clock.now()
        geometry = self._geometry(chamber, closing_at)
        state["uuid"] = self.store.start_observation(
            {
                "chamber": chamber.id,
                "round_id": round_id,
                "started_at": iso(closing_at),
                "prepurge_at": iso(prepurge_at),
                "closing_at": iso(closing_at),
                "dead_band_s": dead_band,
                "observation_s": observation,
                "area_cm2": geometry.area_cm2,
                "volume_cm3": geometry.volume_cm3,
                "offset_cm": geometry.offset_cm,
                "geometry_since": geometry.since_text,
                "analyser": self.analyser_id,
                "analyser_model": self.analyser_info.get("model"),
                "analyser_serial": self.analyser_info.get("serial"),
                "calibration_id": self.calibration_id
                or self.store.calibration_in_force(self.analyser_id, closing_at),
                "config_hash": self.config_hash,
                "software_version": self.software_version,
                "time_zone": cfg.site.time_zone,
            }
        )
        uuid = state["uuid"]
        self._phase(state, "closing")
        self.actuators.set_lid(chamber.id, True)
        start_mono = self.clock.monotonic()
        closed_mono = None
        while closed_mono is None:
            self._sample(state, "closing", interval)
            lid = self.actuators.lid_state(chamber.id)
            waited = self.clock.monotonic() - start_mono
            if lid is LidState.CLOSED or (
                lid is LidState.UNKNOWN and waited >= cycle.closing_timeout_s
            ):
                closed_mono = self.clock.monotonic()
            elif waited >= cycle.closing_timeout_s:
                raise _Abort(
                    f"lid did not close within {cycle.closing_timeout_s:g} s (switch: {lid.value})",
                    kind="lid_timeout",
                )
        state["closed_mono"] = closed_mono
        closed_at = self.clock.now()
        self.store.set_phase(uuid, "closed", closed_at)
        self.store.set_phase(uuid, "deadband", closed_at)
        self._phase(state, "deadband")

        # deadband and observing
        aux_start = self._aux()
        last_lid_check = closed_mono
        observing_marked = False
        while True:
            reading = self._sample(state, "observing" if observing_marked else "deadband", interval)
            elapsed = reading.monotonic_s - closed_mono
            if not observing_marked and elapsed >= dead_band:
                self.store.set_phase(uuid, "observing", reading.time)
                observing_marked = True
                self._phase(state, "observing")
            if reading.monotonic_s - last_lid_check >= _LID_CHECK_S:
                last_lid_check = reading.monotonic_s
                lid = self.actuators.lid_state(chamber.id)
                if lid not in (LidState.CLOSED, LidState.UNKNOWN):
                    raise _Abort(
                        f"lid left the closed position during the observation ({lid.value})",
                        kind="lid_lost",
                    )
            if elapsed >= sampled:
                break
        aux_end = self._aux()
        self._flush(state)

        # opening and postpurge
        opening_at = self.clock.now()
        self.store.set_phase(uuid, "opening", opening_at)
        self._phase(state, "opening")
        self.actuators.set_lid(chamber.id, False)
        lid_fault = False
        start_mono = self.clock.monotonic()
        while True:
            lid = self.actuators.lid_state(chamber.id)
            if lid in (LidState.OPEN, LidState.UNKNOWN):
                break
            if self.clock.monotonic() - start_mono >= cycle.opening_timeout_s:
                lid_fault = True
                self.alarm(
                    "error",
                    "lid_not_open",
                    f"{chamber.id}: lid did not confirm open within {cycle.opening_timeout_s:g} s "
                    f"(switch: {lid.value}); all lids commanded open",
                    chamber=chamber.id,
                    observation_uuid=uuid,
                )
                self._safe(chamber)
                break
            self._sleep(min(1.0, interval))
        self.store.set_phase(uuid, "opened", self.clock.now())
        self.store.set_phase(uuid, "postpurge", self.clock.now())
        self._phase(state, "postpurge")
        self._sleep(cycle.postpurge_s)
        self.actuators.set_valve(chamber.id, False)

        # the fit, and the completion in one transaction
        fluxes, summary = self._fit(chamber, state, geometry, aux_start + aux_end)
        state["outcome"] = CycleOutcome(
            chamber.id,
            "done",
            None,
            uuid,
            flux=summary.get("flux"),
            flags=tuple(summary.get("flags", ())),
            lid_fault=lid_fault,
            extra=summary,
        )
        self._complete(
            state,
            status="done",
            reason=None,
            ended_at=self.clock.now(),
            fluxes=fluxes,
            values=summary["ancillary"],
        )
        return state["outcome"]

    def _geometry(self, chamber: ChamberConfig, at: dt.datetime) -> Geometry:
        """The geometry in force at ``at``: the store's newest version (the configuration's
        versions are copied there at start-up; a collar-geometry calibration adds dated
        ones), else the configuration's."""
        row = self.store.geometry_in_force(chamber.id, at)
        if row is not None:
            return Geometry(row["area_cm2"], row["volume_cm3"], row["offset_cm"], row["since"])
        g = chamber.geometry_on(at.astimezone(dt.UTC).date())
        return Geometry(g.area_cm2, g.volume_cm3, g.offset_cm, g.since.isoformat())

    def _complete(self, state: dict[str, Any], **completion: Any) -> None:
        """Write the observation's remaining samples and its completion (kept in ``state``
        until written, for :meth:`_storage_abort`)."""
        state["completion"] = completion
        self._flush(state)
        self.store.complete_observation(state["uuid"], **completion)
        state["completion"] = None

    def _sample(self, state: dict[str, Any], phase: str, interval: float) -> Any:
        timeout = self.cfg.cycle.analyser_silent_s
        if self.stop.is_set():
            raise Stopped("stopping")
        if self.storage_down.is_set():
            raise _StorageDown()
        try:
            reading = self.analyser.read(max(timeout, interval))
        except HardwareTimeoutError as exc:
            # one alarm per outage: while it stays faulty, each abort is an event only
            new = self.board.fault(self.component, exc)
            self.alarm(
                "error" if new else "info",
                "analyser_silent",
                f"analyser {self.analyser_id} silent for {timeout:g} s ({brief(exc, 120)}); "
                "its group's lids opened, its other chambers skipped this round",
                data={"detail": str(exc)},
            )
            raise _Abort(f"analyser silent for {timeout:g} s", kind="analyser_silent") from exc
        except ProtocolError as exc:
            new = self.board.fault(self.component, exc)
            self.alarm(
                "error" if new else "info",
                "analyser_garbled",
                f"analyser {self.analyser_id}: {brief(exc, 150)}; its group's lids opened",
                data={"detail": str(exc)},
            )
            reason = f"analyser output unreadable: {brief(exc, 150)}"
            raise _Abort(reason, kind="analyser_garbled") from exc
        self.board.good(self.component)
        if self.progress is not None:
            self.progress(state["chamber"], state.get("phase", phase), state["uuid"])
        self._check_clock(state, reading)
        self._keep(state, phase, self.analyser_id, reading)
        self._poll_others(state, phase)
        if state["closed_mono"] is not None and len(state["samples"]) >= _FLUSH_EVERY:
            self._flush(state)
        return reading

    def _keep(self, state: dict[str, Any], phase: str, analyser_id: str, reading: Any) -> None:
        """One reading as a sample row, stamped with its arrival and its analyser."""
        closed = state["closed_mono"]
        state["samples"].append(
            {
                "seq": state["written"] + len(state["samples"]),
                "time": iso(reading.time),
                "mono": reading.monotonic_s,
                "dry": bool(getattr(reading, "dry", False)),
                "analyser": analyser_id,
                "elapsed_s": None if closed is None else reading.monotonic_s - closed,
                "phase": phase,
                "co2_umol_mol": reading.co2_umol_mol,
                "h2o_mmol_mol": reading.h2o_mmol_mol,
                "cell_temperature_degc": reading.cell_temperature_degc,
                "cell_pressure_kpa": reading.cell_pressure_kpa,
                "ch4_nmol_mol": reading.ch4_nmol_mol,
                "n2o_nmol_mol": reading.n2o_nmol_mol,
            }
        )
        state.setdefault("all", []).append(state["samples"][-1])

    def _poll_others(self, state: dict[str, Any], phase: str) -> None:
        """Collect what the loop's other analysers sent since the last poll (each waits
        at most ``_POLL_S``: a polling loop that never blocks for long). One that sent
        nothing for ``analyser_silent_s`` or sends garbage aborts the observation, as the
        first analyser does."""
        timeout = self.cfg.cycle.analyser_silent_s
        for analyser_id, analyser in self.others.items():
            component = f"analyser:{analyser_id}"
            for _ in range(100):  # a bounded drain
                try:
                    reading = analyser.read(_POLL_S)
                except HardwareTimeoutError as exc:
                    quiet = self.clock.monotonic() - state["last_arrival"][analyser_id]
                    if quiet < timeout:
                        break
                    new = self.board.fault(component, exc)
                    self.alarm(
                        "error" if new else "info",
                        "analyser_silent",
                        f"analyser {analyser_id} silent for {timeout:g} s "
                        f"({brief(exc, 120)}); its group's lids opened, its other chambers "
                        "skipped this round",
                        data={"detail": str(exc), "analyser": analyser_id},
                    )
                    raise _Abort(
                        f"analyser {analyser_id} silent for {timeout:g} s", kind="analyser_silent"
                    ) from exc
                except ProtocolError as exc:
                    new = self.board.fault(component, exc)
                    self.alarm(
                        "error" if new else "info",
                        "analyser_garbled",
                        f"analyser {analyser_id}: {brief(exc, 150)}; its group's lids opened",
                        data={"detail": str(exc), "analyser": analyser_id},
                    )
                    raise _Abort(
                        f"analyser {analyser_id} output unreadable: {brief(exc, 150)}",
                        kind="analyser_garbled",
                    ) from exc
                state["last_arrival"][analyser_id] = self.clock.monotonic()
                self.board.good(component)
                self._keep(state, phase, analyser_id, reading)

    def _check_clock(self, state: dict[str, Any], reading: Any) -> None:
        """A step of the wall clock (NTP, an operator, a GPS fix) is reported once per
        observation. Phase durations, elapsed times and the fit use the monotonic clock, so
        the observation stays valid; its wall-clock stamps carry the step."""
        offset = reading.time.timestamp() - reading.monotonic_s
        first = state.setdefault("clock_offset_s", offset)
        step = offset - first
        if abs(step) > _CLOCK_STEP_S and not state.get("clock_stepped"):
            state["clock_stepped"] = True
            self.alarm(
                "warning",
                "clock_jump",
                f"the wall clock stepped by {step:+.1f} s during the observation; "
                "elapsed times and the fit use the monotonic clock",
                chamber=state.get("chamber"),
                observation_uuid=state.get("uuid"),
                data={"step_s": round(step, 3)},
            )

    def _rows(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """Buffered samples as rows (closing samples get their elapsed time once known).

        With several analysers in the loop each row keeps its analyser and its arrival
        time (``time``); ``elapsed_s`` is aligned by the analyser's ``lag_s`` (the time
        the gas left the chamber), so a later refit from the rows fits every gas on its
        own time axis. A gas an earlier analyser of the loop also reports is left out of
        the later analyser's rows (one trace per gas: the one the site fitted), and dry
        mole fractions are stored wet-equivalent beside their own H2O, as the central
        refit expects of every sample. A laser analyser's cavity pressure is not stored as
        ``cell_pressure_kpa`` (readers take that for the chamber's pressure).
        """
        closed = state["closed_mono"]
        loop = [self.analyser_id, *self.others]
        reporters: dict[str, set[str]] = state.setdefault("reporters", {})
        rows = []
        for sample in state["samples"]:
            row = {k: v for k, v in sample.items() if k not in ("mono", "dry")}
            analyser = sample.get("analyser", self.analyser_id)
            if closed is not None:
                row["elapsed_s"] = sample["mono"] - closed - self.cfg.analyser(analyser).lag_s
            if self.cfg.analyser(analyser).protocol in TRACE_GAS_PROTOCOLS:
                # a laser's cavity pressure is not the chamber's, which readers of the
                # column (the central refit) take it for
                row["cell_pressure_kpa"] = None
            if self.others:
                h2o = sample["h2o_mmol_mol"]
                for _gas, name, *_ in GASES:
                    if sample[name] is None:
                        continue
                    reporters.setdefault(name, set()).add(analyser)
                    earlier = loop[: loop.index(analyser)] if analyser in loop else []
                    if any(a in reporters[name] for a in earlier):
                        row[name] = None
                    elif sample.get("dry") and h2o is not None:
                        row[name] = sample[name] * (1.0 - h2o / 1000.0)
            rows.append(row)
        return rows

    def _flush(self, state: dict[str, Any]) -> None:
        """Write buffered samples (they stay buffered when the write fails)."""
        rows = self._rows(state)
        if rows and state["uuid"] is not None:
            self.store.add_samples(state["uuid"], rows)
            state["written"] += len(rows)
        state["samples"] = []

    def _fit(
        self,
        chamber: ChamberConfig,
        state: dict[str, Any],
        geometry: Any,
        aux: list[AuxReading],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every gas of the loop, each from the first analyser reporting it, on times
        aligned by that analyser's configured lag; water from the first analyser
        measuring H2O (none for dry mole fractions)."""
        cfg = self.cfg
        samples = state.get("all", [])
        closed = state["closed_mono"]
        loop = [self.analyser_id, *self.others]
        by = {a: [s for s in samples if s.get("analyser", self.analyser_id) == a] for a in loop}

        def aligned(a: str) -> np.ndarray:
            lag = cfg.analyser(a).lag_s
            return np.array([s["mono"] - closed - lag for s in by[a]], dtype=float)

        def column(a: str, name: str) -> np.ndarray:
            return np.array([np.nan if s[name] is None else s[name] for s in by[a]], dtype=float)

        def complete(a: str, name: str) -> bool:
            return bool(by[a]) and all(s[name] is not None for s in by[a])

        def on_times(a: str, name: str, target: str) -> np.ndarray:
            """``name`` of analyser ``a`` at the sample times of ``target``."""
            if a == target:
                return column(a, name)
            return np.interp(aligned(target), aligned(a), column(a, name))

        ancillary = _means(aux, chamber.id)
        summary: dict[str, Any] = {
            "ancillary": {k: v for k, v in ancillary.items() if v is not None}
        }
        # the chamber's pressure: an NDIR cell at ambient pressure, not a laser's cavity
        pressure_source = next(
            (
                a
                for a in loop
                if complete(a, "cell_pressure_kpa")
                and cfg.analyser(a).protocol not in TRACE_GAS_PROTOCOLS
            ),
            None,
        )
        temperature = ancillary.get("air_temperature_degc")
        base_flags: list[str] = []
        if temperature is None:
            temperature = ancillary.get("soil_temperature_degc")
            base_flags.append("no_air_temperature")
        if temperature is None or (
            pressure_source is None and ancillary.get("pressure_kpa") is None
        ):
            summary["flags"] = [*base_flags, "no_flux_inputs"]
            self.alarm(
                "warning",
                "no_flux_inputs",
                f"{chamber.id}: no chamber temperature or pressure: flux not computed",
                chamber=chamber.id,
                observation_uuid=state["uuid"],
            )
            return [], summary
        water_source = next((a for a in loop if complete(a, "h2o_mmol_mol")), None)
        lags = self._lag_estimates(chamber, by, loop, closed)
        summary["lags"] = lags
        rows: list[dict[str, Any]] = []
        gases: dict[str, dict[str, Any]] = {}
        for gas, name, unit, precision_field in GASES:
            source = next(
                (
                    a
                    for a in loop
                    if by[a] and sum(s[name] is not None for s in by[a]) * 2 >= len(by[a])
                ),
                None,
            )
            if source is None:
                continue
            flags = list(base_flags)
            elapsed = aligned(source)
            values = column(source, name)
            dry = bool(by[source]) and all(s.get("dry") for s in by[source])
            if water_source is not None:
                h2o: Any = on_times(water_source, "h2o_mmol_mol", source)
            else:
                h2o = 0.0
                if not dry:
                    flags.append("no_h2o")
                    dry = True  # no correction possible: fitted as measured
            if pressure_source is not None:
                pressure: Any = on_times(pressure_source, "cell_pressure_kpa", source)
            else:
                pressure = ancillary.get("pressure_kpa")
            precision = getattr(cfg.analyser(source), precision_field)
            dead_band = cfg.dead_band_s(chamber, gas)
            end = cfg.observation_s(chamber, gas)
            common: dict[str, Any] = {
                "h2o_mmol_mol": h2o,
                "pressure_kpa": pressure,
                "temperature_degc": temperature,
                "volume_cm3": geometry.volume_cm3,
                "area_cm2": geometry.area_cm2,
                "precision_mf": precision,
                "dry": dry,
            }
            try:
                fit = fit_closure(
                    elapsed,
                    values,
                    dead_band_s=dead_band,
                    end_s=end,
                    settings=self.fit_settings,
                    **common,
                )
            except ValueError as exc:  # e.g. no sample in the first seconds
                log.info("%s: %s not fitted: %s", chamber.id, gas, exc)
                continue
            flags = [*fit.flags, *flags]
            quality: dict[str, Any] = {
                "analyser": source,
                "lag_s": cfg.analyser(source).lag_s,
                "lag_estimate_s": lags.get(source, {}).get("estimated_s"),
                "water_from": None if dry else water_source,
            }
            fits: list[tuple[str, Any, float, float]] = [
                ("linear", fit.linear, fit.lin_flux, fit.lin_flux_se),
                ("exponential", fit.exponential, fit.exp_flux, fit.exp_flux_se),
            ]
            selected, flux, mdf, lin_flux = fit.model, fit.flux, fit.mdf, fit.lin_flux
            reason = fit.model_reason
            n_points, window = fit.n_points, (fit.dead_band_s, fit.end_s)
            if gas == "ch4":
                # bubbles over the whole closure: one in the dead band lifts the window
                # off C'0 (see fitting.tracegas)
                closure = (elapsed >= 0) & (elapsed <= end) & np.isfinite(values)
                inside = closure & (elapsed >= dead_band)
                steps = detect_ebullition(elapsed[closure], values[closure], precision_mf=precision)
                if steps:
                    flags.append("ebullition")
                    quality["ebullition"] = [
                        {"time_s": round(st.time_s, 1), "size_nmol_mol": round(st.size_mf, 2)}
                        for st in steps
                    ]
                    segment = diffusive_segment(
                        elapsed[inside], steps, start_s=dead_band, end_s=end
                    )
                    diffusive = None
                    if segment.found:
                        try:
                            diffusive = fit_closure(
                                elapsed,
                                without_steps(elapsed, values, steps),
                                dead_band_s=segment.start_s,
                                end_s=segment.end_s,
                                settings=self.fit_settings,
                                **common,
                            )
                        except ValueError:
                            diffusive = None
                    if diffusive is not None:
                        flags.append("diffusive_segment")
                        quality["diffusive_window_s"] = [segment.start_s, segment.end_s]
                        quality["total_flux"] = _finite(fit.flux)
                        best = (
                            diffusive.exponential
                            if diffusive.model == "exponential"
                            else diffusive.linear
                        )
                        fits.append(("diffusive", best, diffusive.flux, diffusive.flux_se))
                        selected, flux, mdf = "diffusive", diffusive.flux, diffusive.mdf
                        lin_flux = diffusive.lin_flux
                        reason = f"ebullition: {diffusive.model} fit of the longest step-free part"
                        n_points = diffusive.n_points
                        window = (segment.start_s, segment.end_s)
                    else:
                        flags.append("no_diffusive_part")
            # near zero the linear slope is the estimator noise moves least (a curvature
            # has no meaning without a signal): below the MDF, reported as "< MDF"
            if gas != "co2" and math.isfinite(mdf) and abs(lin_flux) < mdf:
                flags.append("below_detection")
            for model, result, value, se in fits:
                rows.append(
                    {
                        "gas": gas,
                        "model": model,
                        "flux": _finite(value),
                        "flux_se": _finite(se),
                        "flux_unit": unit,
                        "r2": _finite(result.r_squared),
                        "nrmse": _finite(result.nrmse),
                        "n_points": n_points if model == selected else fit.n_points,
                        "dead_band_s": window[0] if model == selected else fit.dead_band_s,
                        "end_s": window[1] if model == selected else fit.end_s,
                        "a_per_s": _finite(getattr(result, "a_per_s", None)),
                        "t0_s": _finite(getattr(result, "t0_s", None)),
                        "c0": _finite(fit.c0_mf),
                        "selected": int(model == selected),
                        "model_reason": reason if model == selected else None,
                        "flags": ";".join(flags),
                        "processing_version": PROCESSING_VERSION,
                        "analyser": source,
                        "mdf": _finite(mdf),
                        "quality": json.dumps(quality, sort_keys=True),
                    }
                )
            gases[gas] = {
                "flux": _finite(flux),
                "flux_unit": unit,
                "mdf": _finite(mdf),
                "model": selected,
                "flags": flags,
                "analyser": source,
                **{k: v for k, v in quality.items() if k in ("ebullition", "lag_estimate_s")},
            }
            if gas == "co2" or "flux" not in summary:
                summary.update(
                    flux=fit.flux,
                    lin_flux=fit.lin_flux,
                    exp_flux=fit.exp_flux,
                    r2=fit.r_squared,
                    model=fit.model,
                    flags=flags,
                )
        summary["gases"] = gases
        summary.setdefault("flags", base_flags)
        return rows, summary

    def _lag_estimates(
        self,
        chamber: ChamberConfig,
        by: dict[str, list[dict[str, Any]]],
        loop: list[str],
        closed: float,
    ) -> dict[str, dict[str, Any]]:
        """Each analyser's transit lag estimated from the closing step: the onset of a
        quantity it shares with the loop's first analyser (CO2, else H2O, else CH4),
        against that analyser's onset and configured lag. None where no clear step."""
        cfg = self.cfg
        first = loop[0]
        # the whole closure: a slow quantity (H2O) needs its length to stand out of noise
        horizon = math.inf
        out: dict[str, dict[str, Any]] = {
            first: {"configured_s": cfg.analyser(first).lag_s, "estimated_s": None}
        }

        def onset(a: str, name: str) -> float | None:
            rows = [s for s in by[a] if s[name] is not None and s["mono"] - closed <= horizon]
            if len(rows) < 8:
                return None
            t = np.array([s["mono"] - closed for s in rows])
            c = np.array([s[name] for s in rows], dtype=float)
            found = closing_onset_s(t, c)
            return found.time_s if found.found else None

        for other in loop[1:]:
            estimate = None
            for name in ("co2_umol_mol", "h2o_mmol_mol", "ch4_nmol_mol"):
                mine, theirs = onset(other, name), onset(first, name)
                if mine is not None and theirs is not None:
                    estimate = round(cfg.analyser(first).lag_s + mine - theirs, 2)
                    break
            out[other] = {"configured_s": cfg.analyser(other).lag_s, "estimated_s": estimate}
        return out

    def _safe(self, chamber: ChamberConfig) -> list[tuple[str, str, BaseException]]:
        """The group's safe state; a refusal (not a silent line: that is the line's one
        alarm) is a critical alarm. Returns the failures."""
        failures = self.safe_state()
        refused = refusals(failures)
        if refused is not None:
            self.alarm(
                "critical",
                "safe_state_failed",
                f"{chamber.id}: safe state incomplete: {refused[0]}",
                chamber=chamber.id,
                data={"detail": refused[1]},
            )
        return failures

    def _finish_abort(
        self,
        chamber: ChamberConfig,
        state: dict[str, Any],
        reason: str,
        *,
        kind: str,
        out: CycleOutcome | None = None,
        level: str | None = None,
        error: BaseException | None = None,
    ) -> CycleOutcome:
        # every abort ends with all the group's lids open: in a group only this chamber
        # should be closed, but after a fault nothing about the hardware is assumed
        self._safe(chamber)
        outcome = out or CycleOutcome(chamber.id, "aborted", reason, state.get("uuid"))
        uuid = state.get("uuid")
        if uuid is not None:
            try:
                self._complete(state, status="aborted", reason=reason, ended_at=self.clock.now())
            except StorageError as exc:
                outcome.deferred = self._deferred(state)
                outcome.storage_error = exc
        if uuid is None and kind == "line_fault":
            return outcome  # nothing was measured: the line's alarm says it all
        if level is None:
            # an analyser fault's alarm was raised when it was found (see _sample)
            level = "info" if kind == "shutdown" or kind in _ANALYSER_FAULTS else "error"
        self.alarm(
            level,
            kind,
            f"{chamber.id}: observation aborted: {reason}",
            chamber=chamber.id,
            observation_uuid=uuid,
            data={"detail": str(error)[:DETAIL_CHARS]} if error is not None else None,
        )
        return outcome

    def _deferred(self, state: dict[str, Any]) -> list[tuple[str, Callable[[], None]]]:
        """The observation's unwritten samples and completion, as writes for later."""
        uuid = state["uuid"]
        out: list[tuple[str, Callable[[], None]]] = []
        rows = self._rows(state)
        state["samples"] = []
        if rows:
            out.append(
                (
                    f"{len(rows)} samples of {uuid}",
                    functools.partial(self.store.add_samples, uuid, rows),
                )
            )
        completion = state.get("completion")
        if completion is not None:
            out.append(
                (
                    f"completion of {uuid} ({completion['status']})",
                    functools.partial(self.store.complete_observation, uuid, **completion),
                )
            )
        return out

    def _storage_abort(
        self, chamber: ChamberConfig, state: dict[str, Any], exc: BaseException
    ) -> CycleOutcome:
        """The site database cannot be written: lids open first, then the observation's
        unwritten part handed back to be written later (nothing half-written)."""
        self._safe(chamber)
        error = (
            exc
            if isinstance(exc, StorageError)
            else StorageError(
                f"{self.store.path}: cannot be written (found by another part of the daemon)"
            )
        )
        reason = "storage: the site database could not be written"
        uuid = state["uuid"]
        done = state.get("outcome")
        if uuid is not None and state.get("completion") is None:
            state["completion"] = {
                "status": "aborted",
                "reason": reason,
                "ended_at": self.clock.now(),
            }
        if done is not None:
            outcome = done  # measured and fitted: it stays done, written later
        else:
            status = "aborted" if uuid is not None else "skipped"
            outcome = CycleOutcome(chamber.id, status, reason, uuid)
        outcome.storage_error = error
        outcome.deferred = self._deferred(state) if uuid is not None else []
        return outcome  # the daemon raises the storage alarm and records the event

    def safe_state(self) -> list[tuple[str, str, BaseException]]:
        """Every lid of this analyser group open and its valves closed (and the pump as
        configured when the site has one group); returns the commands that failed.

        The other groups' lids are left alone, so a fault of one analyser or relay board
        does not spoil the observations running in parallel on the others; the daemon's
        own safe state (start-up, stop, unhandled errors) opens every lid of the site.
        """
        group = [c for c in self.cfg.chambers if c.analyser == self.analyser_id]
        failures = open_lids(self.actuators, group)
        groups = {c.analyser for c in self.cfg.chambers if c.enabled}
        if self.cfg.pump.mode != "always" and len(groups) <= 1:
            with _suppress_hardware():
                self.actuators.set_pump(False)
        return failures


class _suppress_hardware:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (HardwareError, ProtocolError))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _means(readings: list[AuxReading], chamber: str) -> dict[str, float | None]:
    """Means of each aux quantity: the chamber's own sensors first, else site-wide ones."""
    out: dict[str, float | None] = {}
    for quantity in (
        "soil_temperature_degc",
        "soil_moisture_pct",
        "air_temperature_degc",
        "pressure_kpa",
    ):
        own = [r.value for r in readings if r.quantity == quantity and r.chamber == chamber]
        site = [r.value for r in readings if r.quantity == quantity and r.chamber is None]
        values = own or site
        out[quantity] = float(np.mean(values)) if values else None
    return out
