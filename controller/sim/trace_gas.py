"""Simulated laser trace-gas analysers speaking their instruments' protocols.

* :class:`LI78x0Publisher`: an LI-7810/7820 publishing its records to an MQTT broker as
  the instrument does (``<topic_root>/output/concentration``, one JSON object per second
  keyed by the instrument's column names, and the units on ``.../units``, retained). The
  topic root defaults to the instrument's (``licor/niobrara``); the simulator gives each
  analyser a root of its own so that parallel sites on one broker never mix.
* :class:`LGRDevice`: an LGR/ABB GGA, UGGA or N2O/CO streaming comma-separated records
  (carried by :class:`~chamberd.controller.sim.analyser.AnalyserServer` over a pty or TCP).
* :class:`PicarroDevice`: a Picarro's remote command interface (``_Instr_GetStatus``,
  ``_Meas_GetConcEx``, ``_Meas_GetBuffer``, ``ERR:`` replies), also carried by an
  :class:`~chamberd.controller.sim.analyser.AnalyserServer`.

The gas comes from :meth:`SimulatedSite.trace_gas_values` (dry mole fractions, with the
loop's transport, mixing and the analyser's lag); each simulator adds its instrument's
noise (1 s, 1 sigma; :data:`NOISE`: LI-COR's LI-7810 figures, the others the simulator's
assumptions of the right order) and reports wet and/or dry as the instrument does.
Faults (:class:`~chamberd.controller.sim.site.Faults`): ``analyser_silent``,
``analyser_garbage``, ``stale``, ``fit_invalid``, ``analyser_err``; a broker that is down
is the broker's own business (stop it, or point the driver elsewhere); a serial drop is
the :class:`AnalyserServer`'s ``link_down`` and ``power_off``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid

import numpy as np

from chamberd.controller.clock import Clock
from chamberd.controller.hardware.lgr import LAYOUTS
from chamberd.controller.hardware.mqtt_link import MqttLink

from .site import SimulatedSite

__all__ = ["NOISE", "LGRDevice", "LI78x0Publisher", "PicarroDevice", "measured_values"]

log = logging.getLogger(__name__)

#: protocol -> gas -> 1 s noise (1 sigma) in chamberd's units
NOISE = {
    "li7810": {"ch4_nmol_mol": 0.6, "co2_umol_mol": 3.5, "h2o_mmol_mol": 0.045},
    "li7820": {"n2o_nmol_mol": 0.4, "h2o_mmol_mol": 0.045},
    "lgr-ugga": {"ch4_nmol_mol": 2.0, "co2_umol_mol": 0.3, "h2o_mmol_mol": 0.1},
    "lgr-gga": {"ch4_nmol_mol": 2.0, "co2_umol_mol": 0.3, "h2o_mmol_mol": 0.1},
    "lgr-n2oco": {"n2o_nmol_mol": 0.3, "h2o_mmol_mol": 0.1},
    "picarro": {
        "ch4_nmol_mol": 0.5,
        "co2_umol_mol": 0.2,
        "n2o_nmol_mol": 3.0,
        "h2o_mmol_mol": 0.05,
    },
}
_CAVITY_T_DEGC = 55.0
_LI_CAVITY_P_KPA = 39.6  # the LI-78x0 cavity runs below ambient pressure
_LGR_GAS_P_TORR = 140.0


def measured_values(
    site: SimulatedSite, analyser: str, protocol: str, mono: float
) -> dict[str, float]:
    """The cell's gas as ``analyser`` (a ``protocol`` instrument) measures it now: dry
    CO2 [umol/mol], dry CH4 and N2O [nmol/mol] with the instrument's noise, H2O
    [mmol/mol]; seeded by the site, the analyser and the time."""
    values = site.trace_gas_values(analyser)
    rng = np.random.default_rng([site.seed, site._hash_int("trace", analyser), round(mono * 1e3)])
    for name, sigma in NOISE[protocol].items():
        values[name] = float(values[name] + rng.normal(0.0, sigma))
    return values


def _wet(dry: float, h2o_mmol_mol: float) -> float:
    return dry * (1.0 - h2o_mmol_mol / 1000.0)


class LI78x0Publisher:
    """An LI-7810/7820 publishing to an MQTT broker once per site second.

    ``style``: ``"pairs"`` (``"CH4": [2068.0, 1]``), ``"scalars"`` (``"CH4": 2068.0``),
    or ``"mixed"`` (gases as pairs, the rest as numbers).
    """

    def __init__(
        self,
        site: SimulatedSite,
        analyser: str,
        *,
        clock: Clock,
        broker: str = "mqtt://127.0.0.1:1883",
        topic_root: str | None = None,
        style: str = "mixed",
        interval_s: float = 1.0,
    ) -> None:
        if style not in ("pairs", "scalars", "mixed"):
            raise ValueError(f"style must be pairs, scalars or mixed, got {style!r}")
        self.site = site
        self.analyser = analyser
        self.protocol = site.cfg.analyser(analyser).protocol
        if self.protocol not in ("li7810", "li7820"):
            raise ValueError(f"{analyser} is not an LI-7810/7820 ({self.protocol})")
        self.clock = clock
        self.url = broker
        self.topic_root = topic_root or f"chamberd-sim/{uuid.uuid4().hex[:12]}/{analyser}"
        self.style = style
        self.interval_s = interval_s
        self.lines_sent = 0
        self.index = 0
        self._last: dict[str, object] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.link = MqttLink(
            broker, name=f"sim {self.protocol} {analyser}", clock=clock, backoff_s=(1, 2)
        )
        self._rng = np.random.default_rng([site.seed, site._hash_int("garbage", analyser)])

    @property
    def concentration_topic(self) -> str:
        return f"{self.topic_root}/output/concentration"

    @property
    def units_topic(self) -> str:
        return f"{self.topic_root}/output/concentration/units"

    def units(self) -> dict[str, str]:
        gases = ("CO2", "CH4") if self.protocol == "li7810" else ("N2O",)
        units = {"SECONDS": "secs", "NANOSECONDS": "nsecs", "NDX": "index", "DIAG": "diag"}
        units |= {"H2O": "ppm", **{g: "ppb" if g != "CO2" else "ppm" for g in gases}}
        return units | {"CAVITY_P": "kPa", "CAVITY_T": "°C"}

    def record(self) -> dict[str, object]:
        """The next record as the instrument would publish it."""
        mono = self.clock.monotonic()
        now = self.clock.now()
        v = measured_values(self.site, self.analyser, self.protocol, mono)
        self.index += 1
        gases: dict[str, float] = {"H2O": v["h2o_mmol_mol"] * 1000.0}  # ppm
        if self.protocol == "li7810":
            gases["CO2"] = v["co2_umol_mol"]
            gases["CH4"] = v["ch4_nmol_mol"]
        else:
            gases["N2O"] = v["n2o_nmol_mol"]
        stamp = now.timestamp()
        seconds = math.floor(stamp)
        record: dict[str, object] = {
            "SECONDS": seconds,
            "NANOSECONDS": round((stamp - seconds) * 1e9),
            "NDX": self.index,
            "DIAG": 0,
            "REMARK": "",
        }
        for name, value in gases.items():
            rounded = round(value, 4)
            record[name] = rounded if self.style == "scalars" else [rounded, 1]
        extras = {"CAVITY_P": _LI_CAVITY_P_KPA, "CAVITY_T": _CAVITY_T_DEGC}
        for name, value in extras.items():
            record[name] = [value, 1] if self.style == "pairs" else value
        return record

    def start(self) -> str:
        self.link.open()
        self._thread = threading.Thread(
            target=self._run, name=f"sim-mqtt-{self.analyser}", daemon=True
        )
        self._thread.start()
        return self.url

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        self.link.wait_connected(timeout_s)

    def _publish_once(self) -> None:
        faults = self.site.faults
        if self.analyser in faults.analyser_silent:
            return
        if self.analyser in faults.analyser_garbage:
            junk = bytes(self._rng.integers(0, 256, 24).tolist())
            self.link.publish(self.concentration_topic, junk)
            return
        if self.analyser in faults.stale and self._last is not None:
            payload = self._last  # the measurement froze: the same record, again
        else:
            payload = self.record()
            self._last = payload
        if self.link.publish(self.concentration_topic, json.dumps(payload)):
            self.lines_sent += 1

    def _run(self) -> None:
        speed = float(getattr(self.clock, "speed", 1.0))
        units_sent = -1
        next_at = self.clock.monotonic()
        while not self._stop.is_set():
            if self.link.is_connected and units_sent != self.link.connects:
                # retained: a client subscribing later gets the units at once
                self.link.publish(self.units_topic, json.dumps(self.units()), retain=True)
                units_sent = self.link.connects
            now = self.clock.monotonic()
            if now >= next_at:
                try:
                    self._publish_once()
                except Exception as exc:  # the sim keeps running whatever the broker does
                    log.debug("sim %s: publish failed: %s", self.analyser, exc)
                next_at = max(next_at + self.interval_s, now - self.interval_s)
            self._stop.wait(max(0.001, min(0.05, (next_at - self.clock.monotonic()) / speed)))

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.link.close()


class LGRDevice:
    """An LGR/ABB analyser's serial data stream (the Device of an AnalyserServer)."""

    eol = b"\n"

    def __init__(self, site: SimulatedSite, analyser: str, model: str = "lgr-ugga") -> None:
        if model not in LAYOUTS:
            raise ValueError(f"unknown LGR model {model!r}")
        self.site = site
        self.analyser = analyser
        self.model = model
        self.layout = LAYOUTS[model]
        self.interval = site.cfg.analyser(analyser).output_interval_s
        self.send_header = False  # the first line a header (as some firmware sends)
        self._last: str | None = None

    @property
    def interval_s(self) -> float | None:
        return self.interval

    def handle(self, line: str) -> list[str]:
        return []  # the stream takes no commands

    def header(self) -> str:
        return ", ".join(self.layout.columns)

    def data_line(self) -> str:
        if self.send_header:
            self.send_header = False
            return self.header()
        if self.analyser in self.site.faults.stale and self._last is not None:
            return self._last  # the measurement froze: the same record, again
        self._last = self._record()
        return self._last

    def _record(self) -> str:
        clock = self.site.clock
        v = measured_values(self.site, self.analyser, self.model, clock.monotonic())
        w = v["h2o_mmol_mol"]
        sd = dict.fromkeys(("co2", "ch4", "n2o", "h2o"), 0.0)
        sd.update(
            {k.split("_")[0]: s for k, s in NOISE[self.model].items()}  # per-record SD
        )
        ppm = {
            "[CO2]": (v["co2_umol_mol"], sd["co2"]),
            "[CH4]": (v["ch4_nmol_mol"] / 1000.0, sd["ch4"] / 1000.0),
            "[N2O]": (v["n2o_nmol_mol"] / 1000.0, sd["n2o"] / 1000.0),
            "[CO]": (0.12, 0.0005),
        }
        fields: dict[str, str] = {}
        for gas, (dry, sigma) in ppm.items():
            fields[f"{gas}_ppm"] = f"{_wet(dry, w):.6e}"
            fields[f"{gas}_ppm_sd"] = f"{sigma:.6e}"
            fields[f"{gas}d_ppm"] = f"{dry:.6e}"
            fields[f"{gas}d_ppm_sd"] = f"{sigma:.6e}"
        fields["[H2O]_ppm"] = f"{w * 1000.0:.6e}"
        fields["[H2O]_ppm_sd"] = f"{sd['h2o'] * 1000.0:.6e}"
        fields |= {
            "GasP_torr": f"{_LGR_GAS_P_TORR:.6e}",
            "GasT_C": f"{35.0:.6e}",
            "AmbT_C": f"{self.site.air_temperature_degc(clock.now()):.6e}",
            "RD0_us": f"{9.0:.6e}",
            "RD1_us": f"{8.99:.6e}",
            "Fit_Flag": "0" if self.analyser in self.site.faults.fit_invalid else "3",
            "MIU_VALVE": "0",
            "MIU_DESC": "-",
        }
        now = clock.now()
        fields["Time"] = (
            "  " + now.strftime("%m/%d/%Y %H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        )
        return ",".join(fields.get(c, f"{0.0:.6e}") for c in self.layout.columns)


class PicarroDevice:
    """A Picarro's remote command interface (the Device of an AnalyserServer).

    The analyser measures every ``scan_s`` of site time; each measurement is queued for
    ``_Meas_GetBuffer`` (at most 1000) and the latest answers ``_Meas_GetConcEx``.
    """

    eol = b"\r"
    STATUS_OK = 1 | 2 | 64 | 128 | 256 | 512  # ready, measuring, flowing, locked

    def __init__(
        self, site: SimulatedSite, analyser: str, species: tuple[str, ...], scan_s: float = 1.0
    ) -> None:
        self.site = site
        self.analyser = analyser
        self.species = tuple(species)
        self.scan_s = scan_s
        self._latest: tuple[str, dict[str, float]] | None = None
        self._queue: list[tuple[str, dict[str, float]]] = []
        self._next_scan = -math.inf
        self.status = self.STATUS_OK

    @property
    def interval_s(self) -> float | None:
        return None  # polled only

    def _stamp(self) -> str:
        now = self.site.clock.now()
        return now.strftime("%y/%m/%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"

    def _measure(self) -> None:
        clock = self.site.clock
        mono = clock.monotonic()
        if mono < self._next_scan:
            return
        self._next_scan = max(self._next_scan + self.scan_s, mono)
        if self.analyser in self.site.faults.stale and self._latest is not None:
            return  # the measurement system froze: the latest stays the latest
        v = measured_values(self.site, self.analyser, "picarro", mono)
        w = v["h2o_mmol_mol"]
        dry = {
            "CO2": v["co2_umol_mol"],
            "CH4": v["ch4_nmol_mol"] / 1000.0,
            "N2O": v["n2o_nmol_mol"] / 1000.0,
        }
        values: dict[str, float] = {}
        for s in self.species:
            if s.endswith("_dry"):
                values[s] = dry[s[:-4]]
            elif s in dry:
                values[s] = _wet(dry[s], w)
            elif s == "H2O":
                values[s] = w / 10.0  # %
            elif s == "NH3":
                values[s] = 5.0  # ppb
            else:
                values[s] = 0.12  # CO, ppm
        self._latest = (self._stamp(), values)
        self._queue.append(self._latest)
        del self._queue[:-1000]

    def _err(self, code: str) -> str:
        return f"ERR:{code}\t{self._stamp()}"

    def handle(self, line: str) -> list[str]:
        command = line.strip()
        self._measure()
        code = self.site.faults.analyser_err.get(self.analyser)
        if command == "_Instr_GetStatus":
            return [str(self.status)]
        if code is not None and command.startswith("_Meas_"):
            return [self._err(code)]
        if command == "_Meas_GetConcEx":
            if self._latest is None:
                return [self._err("3002")]
            stamp, values = self._latest
            return [";".join([stamp, *(f"{values[s]:.3f}" for s in self.species)])]
        if command == "_Meas_GetConc":
            if self._latest is None:
                return [self._err("3002")]
            return [";".join(f"{self._latest[1][s]:.3f}" for s in self.species)]
        if command == "_Meas_GetBuffer":
            queued, self._queue = self._queue, []
            lines = [f"{len(queued)};"]
            for stamp, values in queued:
                lines.append("".join(f"{stamp};{values[s]:.3f};" for s in self.species))
            return lines
        if command == "_Meas_ClearBuffer":
            self._queue = []
            return ["OK"]
        if command == "_Meas_GetScanTime":
            return [f"{self.scan_s:.3f}"]
        return [self._err("1002")]  # an unknown command [the code: simulator's choice]
