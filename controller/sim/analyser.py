"""Simulated gas analysers speaking the instruments' serial protocols over a pty or TCP.

:class:`LI8x0Device` and :class:`GMP343Device` hold the protocol logic (what to answer to a
command, what a data line looks like); :class:`AnalyserServer` carries one of them over a
pseudo-terminal (a real tty for pyserial) or a TCP socket on 127.0.0.1, emitting data lines
at the configured interval of the site's clock and applying the analyser faults of
:class:`~chamberd.controller.sim.site.Faults`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import select
import socket
import threading
import tty
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chamberd.controller.clock import Clock

from .site import SimulatedSite

__all__ = ["AnalyserServer", "Deferred", "GMP343Device", "LI8x0Device"]

log = logging.getLogger(__name__)

_LI_FIELDS = {
    "co2": "co2_umol_mol",
    "h2o": "h2o_mmol_mol",
    "celltemp": "cell_temperature_degc",
    "cellpres": "cell_pressure_kpa",
}
_LI_TOGGLES = set(_LI_FIELDS) | {"co2abs", "h2oabs", "h2odewpoint", "ivolt", "raw", "flowrate"}


@dataclass
class Deferred:
    """A reply the device sends later: at monotonic time ``at``, the lines ``reply()``
    returns then (an LI-8x0 answers a zero or span command after its 5 s average)."""

    at: float
    reply: Callable[[], list[str]]


class Device(Protocol):
    eol: bytes  # what ends a command from the host

    @property
    def interval_s(self) -> float | None: ...

    def handle(self, line: str) -> list[str | Deferred]: ...

    def data_line(self) -> str: ...


_CAL_TAGS = ("co2zero", "co2span", "co2span2", "h2ozero")
_CAL_AVERAGE_S = 5.0


class LI8x0Device:
    """An LI-820/830/840A/850: XML commands, ACKs, and a data record per interval.

    ``<cal>?`` and ``<poly>?`` answer the calibration state; a ``<cal>`` command with a
    ``<date>`` and one of ``<co2zero>true</co2zero>``, ``<co2span>ppm</co2span>``,
    ``<co2span2>ppm</co2span2>``, ``<h2ozero>true</h2ozero>`` averages the next 5 s and
    then applies the calibration to the site's instrument and ACKs (FALSE when the XML,
    the date or the value is bad, or the site refuses it).
    """

    eol = b"\n"

    def __init__(self, site: SimulatedSite, analyser: str, root: str = "li850") -> None:
        self.site = site
        self.analyser = analyser
        self.root = root
        self.outrate = 1.0
        self.fields = {"co2", "h2o", "celltemp", "cellpres", "co2abs", "h2oabs", "ivolt"}
        self.serial = f"SIM-{analyser}"
        self.has_flow = root in ("li830", "li840", "li850")
        self.has_h2o = root != "li820"

    @property
    def interval_s(self) -> float | None:
        return self.outrate if self.outrate > 0 else None

    def _ack(self, ok: bool) -> str:
        return f"<{self.root}><ack>{'TRUE' if ok else 'FALSE'}</ack></{self.root}>"

    def _wrap(self, inner: str) -> str:
        return f"<{self.root}>{inner}</{self.root}>"

    def cal_xml(self) -> str:
        cal = self.site.calibration[self.analyser]
        leaves = {
            "co2lastzero": cal.dates["co2lastzero"],
            "co2kzero": f"{cal.co2_zero_umol_mol:.6g}",
            "co2lastspan": cal.dates["co2lastspan"],
            "co2kspan": f"{cal.co2_span_factor:.6g}",
            "co2lastspan2": cal.dates["co2lastspan2"],
            "co2kspan2": f"{cal.co2_span2_k:.6g}",
        }
        if self.has_h2o:
            leaves |= {
                "h2olastzero": cal.dates["h2olastzero"],
                "h2okzero": f"{cal.h2o_zero_mmol_mol:.6g}",
                "h2olastspan": cal.dates["h2olastspan"],
                "h2okspan": "1",
            }
        return "<cal>" + "".join(f"<{k}>{v}</{k}>" for k, v in leaves.items()) + "</cal>"

    def poly_xml(self) -> str:
        return (
            f"<poly><date>{self.serial} 2026-01-15</date><bb>1.15</bb><xs>0.0026</xs>"
            "<co2><a1>0.15</a1><a2>1.8e-05</a2><a3>3.2e-09</a3><a4>0.0</a4></co2>"
            "<pres><a0>0.0254</a0><a1>0.8</a1></pres></poly>"
        )

    def _calibrate(self, tag: str, element: ET.Element, date: str) -> list[str | Deferred]:
        text = (element.text or "").strip()
        value: float | None = None
        if tag.endswith("zero"):
            if text.lower() != "true":
                return [self._ack(False)]
        else:
            try:
                value = float(text)
            except ValueError:
                return [self._ack(False)]
        if tag == "h2ozero" and not self.has_h2o:
            return [self._ack(False)]
        started = self.site.clock.monotonic()

        def done() -> list[str]:
            ok = self.site.calibrate(self.analyser, tag, value, started, date)
            return [self._ack(ok)]

        return [Deferred(started + _CAL_AVERAGE_S, done)]

    def handle(self, line: str) -> list[str | Deferred]:
        text = line.strip()
        if self.analyser in self.site.faults.analyser_nak:
            return [self._ack(False)]
        if text.lower() == f"<{self.root}>?</{self.root}>":
            config = self._wrap(
                f"<ver>2.0.4</ver><serialnum>{self.serial}</serialnum>"
                f"<cfg><outrate>{self.outrate:g}</outrate><heater>TRUE</heater>"
                f"<pcomp>TRUE</pcomp></cfg>{self.cal_xml()}{self.poly_xml()}"
                + (
                    "<pump><enabled>TRUE</enabled><status>0</status></pump>"
                    if self.has_flow
                    else ""
                )
                + "<source>1234</source>"
            )
            return [config, self.data_line(full=True), self._ack(True)]
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return [self._ack(False)]
        if root.tag.lower() != self.root:
            return [self._ack(False)]
        children = {child.tag.lower(): child for child in root}
        if set(children) == {"cal"} and (children["cal"].text or "").strip() == "?":
            return [self._wrap(self.cal_xml()), self._ack(True)]
        if set(children) == {"poly"} and (children["poly"].text or "").strip() == "?":
            return [self._wrap(self.poly_xml()), self._ack(True)]
        if "cal" in children:
            cal = {child.tag.lower(): child for child in children["cal"]}
            commands = [t for t in _CAL_TAGS if t in cal]
            date = (cal["date"].text or "").strip() if "date" in cal else ""
            if len(commands) != 1 or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
                return [self._ack(False)]
            return self._calibrate(commands[0], cal[commands[0]], date)
        for element in root.iter():
            tag = element.tag.lower()
            if tag == "outrate":
                try:
                    self.outrate = max(0.0, float(element.text or ""))
                except ValueError:
                    return [self._ack(False)]
            elif element is not root and tag in _LI_TOGGLES:
                if (element.text or "").strip().lower() == "true":
                    self.fields.add(tag)
                else:
                    self.fields.discard(tag)
            elif tag == "data" and (element.text or "").strip() == "?":
                return [self.data_line(), self._ack(True)]
        return [self._ack(True)]

    def data_line(self, *, full: bool = False) -> str:
        values = self.site.analyser_values(self.analyser)
        parts = []
        fields = set(_LI_FIELDS) | {"co2abs", "ivolt", "flowrate"} if full else self.fields
        for tag, key in _LI_FIELDS.items():
            if tag in fields and (self.has_h2o or tag != "h2o"):
                parts.append(f"<{tag}>{values[key]:.4f}</{tag}>")
        if "co2abs" in fields:
            parts.append("<co2abs>0.0812</co2abs>")
        if "ivolt" in fields:
            parts.append("<ivolt>12.02</ivolt>")
        if "flowrate" in fields and self.has_flow:
            parts.append(f"<flowrate>{values['flow_l_min']:.3f}</flowrate>")
        return f"<{self.root}><data>{''.join(parts)}</data></{self.root}>"


# the GMP343's compensation commands: switch -> (ProbeSettings attribute, label)
_PROBE_SWITCHES = {
    "PC": ("pressure_on", "Pressure compensation"),
    "TC": ("temperature_on", "Temperature compensation"),
    "RHC": ("humidity_on", "Humidity compensation"),
    "OC": ("oxygen_on", "Oxygen compensation"),
}
# value -> (attribute, label, low, high)
_PROBE_VALUES = {
    "P": ("pressure_hpa", "Pressure (hPa)", 700.0, 1300.0),
    "RH": ("humidity_pct", "Humidity (%RH)", 0.0, 100.0),
    "O2": ("oxygen_pct", "Oxygen (%)", 0.0, 100.0),
}


class GMP343Device:
    """A Vaisala GMP343: echo, ``>`` prompts, R/S/SEND/INTV/FORM."""

    eol = b"\r"

    def __init__(self, site: SimulatedSite, analyser: str) -> None:
        self.site = site
        self.analyser = analyser
        self.running = True
        self.echo = True
        self.interval = 2.0
        self.form_plain = False

    @property
    def interval_s(self) -> float | None:
        return self.interval if self.running else None

    def handle(self, line: str) -> list[str]:
        command = line.strip()
        out = [command] if self.echo and command else []
        words = command.upper().split()
        if not words:
            return [*out, ">"]
        head = words[0]
        if self.analyser in self.site.faults.analyser_nak:
            return [*out, "Unknown command", ">"]
        if head == "R":
            self.running = True
            return out  # output follows, no prompt
        if head == "S":
            self.running = False
        elif head == "SEND":
            out.append(self.data_line())
        elif head == "ECHO" and len(words) > 1:
            self.echo = words[1] == "ON"
            out = [command] if self.echo else []
        elif head == "SMODE":
            pass
        elif head == "INTV" and len(words) >= 2:
            try:
                value = float(words[1])
            except ValueError:
                return [*out, "Error: INTV needs a number", ">"]
            unit = words[2] if len(words) > 2 else "S"
            self.interval = value * {"S": 1, "MIN": 60, "H": 3600}.get(unit, 1)
            out.append(f"Output intrv.  : {words[1]} {unit.lower()}")
        elif head == "FORM":
            self.form_plain = len(words) > 1 and words[1] != "/"
        elif head == "ERRS":
            errors = self.site.faults.probe_errors.get(self.analyser) or []
            out += list(errors) if errors else ["OK: No errors detected."]
        elif head in _PROBE_SWITCHES:
            attribute, label = _PROBE_SWITCHES[head]
            settings = self.site.probe[self.analyser]
            if len(words) > 1:
                if words[1] not in ("ON", "OFF"):
                    return [*out, f"Error: {head} takes ON or OFF", ">"]
                setattr(settings, attribute, words[1] == "ON")
            state = "ON" if getattr(settings, attribute) else "OFF"
            out.append(f"{label:<25}: {state}")
        elif head in _PROBE_VALUES:
            attribute, label, low, high = _PROBE_VALUES[head]
            settings = self.site.probe[self.analyser]
            if len(words) > 1:
                try:
                    value = float(words[1])
                except ValueError:
                    return [*out, f"Error: {head} needs a number", ">"]
                if not low <= value <= high:
                    return [*out, f"Error: {head} out of range {low:g} ... {high:g}", ">"]
                setattr(settings, attribute, value)
            out.append(f"{label:<25}: {getattr(settings, attribute):.3f}")
        elif head == "T":
            if len(words) > 1:
                return [*out, "Error: the temperature is measured, use TC ON/OFF", ">"]
            temperature = self.site.analyser_values(self.analyser)["probe_temperature_degc"]
            out.append(f"{'Temperature (C)':<25}: {temperature:.2f}")
        elif head == "?":
            out += [
                "GMP343 / 2.0.0",
                f"Serial number   : SIM{abs(hash(self.analyser)) % 10**7:07d}",
                "Batch number    : SIM",
                f"Output interval : {self.interval:g} s",
            ]
        else:
            return [*out, "Unknown command", ">"]
        return [*out, ">"]

    def data_line(self) -> str:
        co2 = self.site.analyser_values(self.analyser)["co2_umol_mol"]
        return f"{co2:.1f}" if self.form_plain else f"CO2= {co2:.0f} ppm"


class AnalyserServer:
    """Serves one simulated analyser over a pty (``transport="pty"``) or TCP on 127.0.0.1.

    ``url`` is what a driver opens: the pty's slave device, or ``socket://127.0.0.1:PORT``.

    Over TCP the serial device server can be switched off and on (:meth:`power_off`,
    :meth:`power_on`); switched off it refuses connections and either closes the open one
    or, as a device server that lost power does, leaves it open and silent (the client's
    end sees no error at all).
    """

    def __init__(
        self,
        device: Device,
        *,
        site: SimulatedSite,
        analyser: str,
        clock: Clock,
        transport: str = "tcp",
    ) -> None:
        if transport not in ("tcp", "pty"):
            raise ValueError(f"transport must be 'tcp' or 'pty', got {transport!r}")
        self.device = device
        self.site = site
        self.analyser = analyser
        self.clock = clock
        self.transport = transport
        self.url = ""
        self.lines_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._rng = random.Random(f"{site.seed}:{analyser}")
        self._port = 0
        self._abandoned: list[socket.socket] = []  # half-open connections, never served
        self._power: list[tuple[bool, bool]] = []  # (on, half_open) requests for the loop
        self._applied = threading.Condition()
        self._deferred: list[Deferred] = []  # replies due later (LI-8x0 calibration ACKs)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> str:
        if self.transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        else:
            self._listener = self._listen()
            self.url = f"socket://127.0.0.1:{self._port}"
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.analyser}", daemon=True)
        self._thread.start()
        return self.url

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(4)
        self._port = listener.getsockname()[1]
        return listener

    def power_off(self, *, half_open: bool = False, timeout_s: float = 5.0) -> None:
        """The device server goes off: new connections refused; the open connection
        closed, or (``half_open``) left open and never served again."""
        self._request(False, half_open, timeout_s)

    def power_on(self, timeout_s: float = 5.0) -> None:
        """The device server is back, on the same port."""
        self._request(True, False, timeout_s)

    def _request(self, on: bool, half_open: bool, timeout_s: float) -> None:
        if self.transport != "tcp":
            raise ValueError("only a TCP device server can be switched off and on")
        with self._applied:
            self._power.append((on, half_open))
            self._applied.wait_for(lambda: not self._power, timeout_s)

    def _apply_power(self) -> None:
        with self._applied:
            requests, self._power = self._power, []
            for on, half_open in requests:
                if on and self._listener is None:
                    self._listener = self._listen()
                elif not on:
                    if self._listener is not None:
                        with contextlib.suppress(OSError):
                            self._listener.close()
                        self._listener = None
                    if self._conn is not None:
                        if half_open:
                            self._abandoned.append(self._conn)
                            self._conn = None
                        else:
                            self._close_conn()
            self._applied.notify_all()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        for conn in self._abandoned:
            with contextlib.suppress(OSError):
                conn.close()
        self._abandoned.clear()
        for closer in (self._conn, self._listener):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._conn = self._listener = None
        self._master = self._slave = None

    # --- the loop -------------------------------------------------------------------------

    def _send(self, text: str, terminate: bool = True) -> None:
        data = text.encode("ascii", errors="replace") + (b"\r\n" if terminate else b"")
        try:
            if self._master is not None:
                os.write(self._master, data)
            elif self._conn is not None:
                self._conn.sendall(data)
        except OSError:
            self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def _emit(self) -> None:
        faults = self.site.faults
        if self.analyser in faults.analyser_silent:
            return
        if self.analyser in faults.analyser_garbage:
            junk = bytes(self._rng.randrange(1, 256) for _ in range(self._rng.randrange(5, 40)))
            self._send(junk.decode("latin-1"))
            return
        line = self.device.data_line()
        if self.analyser in faults.analyser_truncated:
            line = line[: self._rng.randrange(1, max(2, len(line) - 1))]
        self._send(line)
        self.lines_sent += 1

    def _run(self) -> None:
        buffer = b""
        speed = float(getattr(self.clock, "speed", 1.0))
        next_emit = self.clock.monotonic()
        while not self._stop.is_set():
            if self._power:
                self._apply_power()
            readable = []
            if self._listener is not None:
                if self.analyser in self.site.faults.link_down:
                    self._close_conn()
                readable.append(self._listener)
                if self._conn is not None:
                    readable.append(self._conn)
            elif self._master is not None:
                readable.append(self._master)
            interval = self.device.interval_s
            now = self.clock.monotonic()
            wait = 0.05 if interval is None else min(0.05, max(0.0, (next_emit - now) / speed))
            try:
                ready, _, _ = select.select(readable, [], [], max(wait, 0.001))
            except (OSError, ValueError):
                if self._stop.is_set():
                    break
                continue
            for source in ready:
                if source is self._listener and self._listener is not None:
                    conn, _ = self._listener.accept()
                    if self.analyser in self.site.faults.link_down:
                        conn.close()
                        continue
                    self._close_conn()
                    self._conn = conn
                    buffer = b""
                    continue
                try:
                    chunk = (
                        os.read(self._master, 4096) if source is self._master else source.recv(4096)
                    )
                except OSError:
                    chunk = b""
                if not chunk:
                    if source is self._conn:
                        self._close_conn()
                    continue
                buffer += chunk
                while True:
                    index = min(
                        (i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0), default=-1
                    )
                    if index < 0:
                        break
                    line, buffer = buffer[:index], buffer[index + 1 :]
                    text = line.decode("ascii", errors="replace").strip()
                    if not text:
                        continue
                    for reply in self.device.handle(text):
                        if isinstance(reply, Deferred):
                            self._deferred.append(reply)
                        else:
                            self._send(reply)
            now = self.clock.monotonic()
            due = [d for d in self._deferred if d.at <= now]
            if due:
                self._deferred = [d for d in self._deferred if d.at > now]
                for deferred in due:
                    for text_out in deferred.reply():
                        self._send(text_out)
            interval = self.device.interval_s
            now = self.clock.monotonic()
            if interval is None:
                next_emit = now
            elif now >= next_emit:
                if self._conn is not None or self._master is not None:
                    self._emit()
                next_emit = max(next_emit + interval, now - interval)
