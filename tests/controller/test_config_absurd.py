"""Configurations that cannot work are refused, each with the field and the reason.

A corpus of absurd configurations, each a small mutation of a shipped example
(``controller/examples/sim-site.toml`` or ``docs/examples/site-16.toml``), written to a file
and loaded the way ``chamberd check-config`` loads it. Every one must raise
:class:`ConfigError` whose message names the field path and says why. A second list holds
unusual but legitimate configurations that must stay valid.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chamberd.controller.config import load_config
from chamberd.controller.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASES = {
    "sim": ROOT / "controller" / "examples" / "sim-site.toml",
    "s16": ROOT / "docs" / "examples" / "site-16.toml",
}


# --- a minimal TOML writer for the test's own mutations (independent of chamberd's) ---------


def _string(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif code > 0xFFFF:
            out.append(f"\\U{code:08X}")
        elif code > 0x7E:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def dump(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{_string(key)}]")
            lines += [f"{_string(k)} = {_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"[[{_string(key)}]]")
                lines += [f"{_string(k)} = {_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{_string(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


# --- how a case edits its base ---------------------------------------------------------------


@dataclass
class Site:
    data: dict[str, Any]
    tmp: Path
    raw: bytes  # the base file as shipped
    text: bytes | None = None  # raw file content instead of ``data``
    overrides: list[str] = field(default_factory=list)
    environ: dict[str, str] = field(default_factory=dict)


Edit = Callable[[Site], None]


def _walk(data: Any, dotted: str) -> tuple[Any, Any]:
    parts: list[Any] = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    node = data
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def put(dotted: str, value: Any) -> Edit:
    def edit(site: Site) -> None:
        node, key = _walk(site.data, dotted)
        v = value(site) if callable(value) else value
        if isinstance(key, int) and key == len(node):
            node.append(v)
        else:
            node[key] = v

    return edit


def drop(dotted: str) -> Edit:
    def edit(site: Site) -> None:
        node, key = _walk(site.data, dotted)
        del node[key]

    return edit


def both(*edits: Edit) -> Edit:
    def edit(site: Site) -> None:
        for e in edits:
            e(site)

    return edit


def text(change: Callable[[bytes], bytes]) -> Edit:
    """An edit of the shipped file's bytes (its storage path is relative: in ``tmp``)."""

    def edit(site: Site) -> None:
        site.text = change(site.raw)

    return edit


def override(*items: str) -> Edit:
    def edit(site: Site) -> None:
        site.overrides += items

    return edit


def env(**values: str) -> Edit:
    def edit(site: Site) -> None:
        site.environ.update(values)

    return edit


def _tmp(*parts: str) -> Callable[[Site], str]:
    return lambda site: str(site.tmp.joinpath(*parts))


def _a_file(site: Site) -> str:
    (site.tmp / "notes.txt").write_text("not a folder")
    return str(site.tmp / "notes.txt" / "site.db")


S16_NORTH_PORT = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"
S16_RS485_PORT = "/dev/serial/by-id/usb-FTDI_USB_RS485_Cable_FT5Y2A1K-if00-port0"
NO_CLOSED_SWITCHES = both(*(drop(f"chambers.{i}.closed_switch") for i in range(4)))


def _line(**kw: Any) -> dict[str, Any]:
    return {"id": "extra", **kw}


@dataclass
class Case:
    id: str
    base: str
    edit: Edit
    expect: tuple[str, ...]  # substrings of the message; the first names the field
    absent: tuple[str, ...] = ()  # must not appear (passwords)


def case(id: str, base: str, edit: Edit, *expect: str, absent: tuple[str, ...] = ()) -> Case:
    return Case(id, base, edit, expect, absent)


CASES = [
    # --- [site] ----------------------------------------------------------------------------
    case(
        "site-latitude-bool", "sim", put("site.latitude", True), "site.latitude: must be a number"
    ),
    case(
        "site-latitude-nan", "sim", put("site.latitude", math.nan), "site.latitude: must be finite"
    ),
    case("site-latitude-91", "sim", put("site.latitude", 91), "site.latitude: must be <= 90"),
    case(
        "site-longitude-inf", "sim", put("site.longitude", math.inf), "site.longitude: must be fin"
    ),
    case(
        "site-longitude-181", "sim", put("site.longitude", -181), "site.longitude: must be >= -180"
    ),
    case("tz-mars", "sim", put("site.time_zone", "Mars/Olympus"), "site.time_zone: unknown time"),
    case("tz-empty", "sim", put("site.time_zone", ""), "site.time_zone:"),
    case("tz-folder", "sim", put("site.time_zone", "America"), "site.time_zone: unknown time zone"),
    case("tz-path", "sim", put("site.time_zone", "../../etc/passwd"), "site.time_zone: unknown"),
    case("tz-long", "sim", put("site.time_zone", "A/" + "x" * 5000), "site.time_zone:"),
    case("site-id-empty", "sim", put("site.id", ""), "site.id: must not be empty"),
    case("site-id-space", "sim", put("site.id", "my site"), "site.id: may contain only"),
    case(
        "site-name-huge", "sim", put("site.name", "x" * 1000), "site.name: at most 200 characters"
    ),
    # --- [storage] -------------------------------------------------------------------------
    case("storage-empty", "sim", put("storage.path", ""), "storage.path: must not be empty"),
    case("storage-folder", "sim", put("storage.path", _tmp()), "storage.path:", "is a folder"),
    case(
        "storage-missing-folder",
        "sim",
        put("storage.path", _tmp("no-such-folder", "site.db")),
        "storage.path:",
        "no-such-folder",
        "does not exist",
    ),
    case(
        "storage-under-file", "sim", put("storage.path", _a_file), "storage.path:", "not a folder"
    ),
    case("storage-nul", "sim", put("storage.path", "site\x00.db"), "storage.path:", "control char"),
    case("storage-devnull", "sim", put("storage.path", "/dev/null"), "storage.path:", "not a file"),
    case("storage-not-string", "sim", put("storage.path", 5), "storage.path:"),
    case("keep-days-0", "sim", put("storage.keep_samples_days", 0), "storage.keep_samples_days:"),
    case(
        "keep-days-huge",
        "sim",
        put("storage.keep_samples_days", 10**9),
        "storage.keep_samples_days: must be <= 36500",
    ),
    case(
        "keep-days-bool",
        "sim",
        put("storage.keep_samples_days", True),
        "storage.keep_samples_days: must be a number",
    ),
    # --- [schedule] ------------------------------------------------------------------------
    case("interval-0", "sim", put("schedule.interval_min", 0), "schedule.interval_min: must be >"),
    case("interval-2000", "sim", put("schedule.interval_min", 2000), "schedule.interval_min: must"),
    case(
        "interval-bool",
        "sim",
        put("schedule.interval_min", True),
        "schedule.interval_min: must be a",
    ),
    case(
        "offset-eq-interval", "sim", put("schedule.offset_min", 30), "schedule.offset_min:", "less"
    ),
    case("offset-1000", "sim", put("schedule.offset_min", 1000), "schedule.offset_min:"),
    case(
        "offset-negative", "sim", put("schedule.offset_min", -5), "schedule.offset_min: must be >="
    ),
    case(
        "grace-0", "sim", put("schedule.misfire_grace_s", 0), "schedule.misfire_grace_s: must be >"
    ),
    case("grace-inf", "sim", put("schedule.misfire_grace_s", math.inf), "schedule.misfire_grace_s"),
    case(
        "grace-huge", "sim", put("schedule.misfire_grace_s", 1e7), "schedule.misfire_grace_s: must"
    ),
    case(
        "round-8x660s-in-30min",
        "s16",
        put("cycle.observation_s", 600),
        "schedule.interval_min: a round of analyser 'irga-north'",
        "8 chambers",
    ),
    case(
        "round-4x140s-in-5min",
        "sim",
        put("schedule.interval_min", 5),
        "schedule.interval_min: a round of analyser 'irga'",
    ),
    case(
        "round-one-long-chamber",
        "s16",
        put("chambers.1.observation_s", 1500),
        "schedule.interval_min: a round of analyser 'irga-north'",
    ),
    case(
        "round-slow-lids-beyond-grace",
        "sim",
        both(put("schedule.interval_min", 10), put("schedule.misfire_grace_s", 10)),
        "schedule.interval_min: a round of analyser 'irga'",
        "misfire",
    ),
    case(
        "round-no-switch-waits-closing-timeout",
        "sim",
        both(
            NO_CLOSED_SWITCHES, put("cycle.closing_timeout_s", 60), put("schedule.interval_min", 10)
        ),
        "schedule.interval_min: a round of analyser 'irga'",
    ),
    # --- [cycle] ---------------------------------------------------------------------------
    case("prepurge-neg", "sim", put("cycle.prepurge_s", -1), "cycle.prepurge_s: must be >= 0"),
    case("prepurge-inf", "sim", put("cycle.prepurge_s", math.inf), "cycle.prepurge_s: must be fin"),
    case("prepurge-huge", "sim", put("cycle.prepurge_s", 1e5), "cycle.prepurge_s: must be <="),
    case("closing-0", "sim", put("cycle.closing_timeout_s", 0), "cycle.closing_timeout_s: must be"),
    case(
        "closing-tiny", "sim", put("cycle.closing_timeout_s", 0.2), "cycle.closing_timeout_s: must"
    ),
    case(
        "closing-huge", "sim", put("cycle.closing_timeout_s", 1e5), "cycle.closing_timeout_s: mus"
    ),
    case(
        "closing-shorter-than-modbus",
        "sim",
        put("cycle.closing_timeout_s", 2),
        "cycle.closing_timeout_s: 2 s",
        "'relays'",
    ),
    case("opening-inf", "sim", put("cycle.opening_timeout_s", math.inf), "cycle.opening_timeout_s"),
    case(
        "opening-huge", "sim", put("cycle.opening_timeout_s", 1e5), "cycle.opening_timeout_s: mus"
    ),
    case(
        "opening-shorter-than-modbus",
        "sim",
        put("cycle.opening_timeout_s", 2),
        "cycle.opening_timeout_s: 2 s",
    ),
    case("postpurge-huge", "sim", put("cycle.postpurge_s", 1e5), "cycle.postpurge_s: must be <="),
    case(
        "deadband-nan", "sim", put("cycle.dead_band_s", math.nan), "cycle.dead_band_s: must be fi"
    ),
    case("deadband-115", "sim", put("cycle.dead_band_s", 115), "cycle.dead_band_s: 115 s leaves"),
    case("deadband-neg", "sim", put("cycle.dead_band_s", -1), "cycle.dead_band_s: must be >= 0"),
    case("observation-inf", "sim", put("cycle.observation_s", math.inf), "cycle.observation_s: mu"),
    case("observation-2h", "sim", put("cycle.observation_s", 7200), "cycle.observation_s: must be"),
    case(
        "observation-bool",
        "sim",
        put("cycle.observation_s", True),
        "cycle.observation_s: must be a",
    ),
    case(
        "sample-0", "sim", put("cycle.sample_interval_s", 0), "cycle.sample_interval_s: must be >"
    ),
    case(
        "sample-huge", "sim", put("cycle.sample_interval_s", 1e5), "cycle.sample_interval_s: must"
    ),
    case(
        "silent-below-output",
        "sim",
        put("cycle.analyser_silent_s", 1.5),
        "cycle.analyser_silent_s: 1.5 s",
        "'irga'",
    ),
    case(
        "silent-huge", "sim", put("cycle.analyser_silent_s", 1e9), "cycle.analyser_silent_s: must"
    ),
    case("max-failures-0", "sim", put("cycle.max_failures", 0), "cycle.max_failures: must be"),
    case(
        "max-failures-huge", "sim", put("cycle.max_failures", 10**6), "cycle.max_failures: must be"
    ),
    case(
        "max-failures-bool", "sim", put("cycle.max_failures", True), "cycle.max_failures: must be a"
    ),
    case(
        "retry-1e300", "sim", put("cycle.retry_after_min", 1e300), "cycle.retry_after_min: must be"
    ),
    case("retry-inf", "sim", put("cycle.retry_after_min", math.inf), "cycle.retry_after_min: must"),
    case("retry-0", "sim", put("cycle.retry_after_min", 0), "cycle.retry_after_min: must be >"),
    # --- [[analysers]] ---------------------------------------------------------------------
    case("analyser-port-empty", "sim", put("analysers.0.port", ""), "analysers[0].port: must not"),
    case(
        "two-analysers-one-port",
        "s16",
        put("analysers.1.port", S16_NORTH_PORT),
        "analysers[1].port:",
        "analysers[0]",
    ),
    case(
        "two-analysers-one-port-spelled-twice",
        "s16",
        put("analysers.1.port", S16_NORTH_PORT.replace("/by-id/", "/by-id/./")),
        "analysers[1].port:",
        "analysers[0]",
    ),
    case(
        "two-analysers-one-server-host-case",
        "s16",
        both(
            put("analysers.0.port", "socket://Serial-Box.local:4001"),
            put("analysers.1.port", "socket://serial-box.local:4001"),
        ),
        "analysers[1].port:",
    ),
    case(
        "analysers-socket-and-rfc2217",
        "s16",
        put("analysers.0.port", "rfc2217://192.168.10.21:4001"),
        "analysers[1].port:",
    ),
    case(
        "analyser-and-rtu-line-one-port",
        "sim",
        put("modbus.0.port", "/dev/serial/by-id/usb-LI-COR_LI-850-if00"),
        "modbus[0].port:",
        "analysers[0]",
    ),
    case(
        "analyser-and-rtu-over-tcp-one-server",
        "sim",
        both(
            put("analysers.0.port", "socket://192.168.1.60:4001"),
            put("modbus.0.framing", "rtu-over-tcp"),
            drop("modbus.0.port"),
            put("modbus.0.host", "192.168.1.60"),
            put("modbus.0.tcp_port", 4001),
        ),
        "modbus[0].host:",
        "analysers[0]",
    ),
    case(
        "analyser-on-modbus-gateway",
        "sim",
        put("analysers.0.port", "socket://192.168.1.50:502"),
        "modbus[1].host:",
        "analysers[0]",
    ),
    case(
        "analyser-socket-no-port", "sim", put("analysers.0.port", "socket://10.0.0.9"), "analysers"
    ),
    case(
        "analyser-socket-bad-port",
        "sim",
        put("analysers.0.port", "socket://10.0.0.9:99999"),
        "analysers[0].port:",
    ),
    case(
        "analyser-socket-no-host", "sim", put("analysers.0.port", "socket://:4001"), "analysers[0]"
    ),
    case(
        "analyser-port-newline",
        "sim",
        put("analysers.0.port", "/dev/tty\nUSB0"),
        "analysers[0].port:",
        "control char",
    ),
    case(
        "analyser-protocol", "sim", put("analysers.0.protocol", "li7000"), "analysers[0].protocol:"
    ),
    case(
        "analyser-baud-0", "sim", put("analysers.0.baudrate", 0), "analysers[0].baudrate: must be"
    ),
    case(
        "analyser-baud-huge", "sim", put("analysers.0.baudrate", 10**12), "analysers[0].baudrate:"
    ),
    case(
        "analyser-baud-bool", "sim", put("analysers.0.baudrate", True), "analysers[0].baudrate: mu"
    ),
    case(
        "analyser-timeout-inf", "sim", put("analysers.0.timeout_s", math.inf), "analysers[0].timeo"
    ),
    case(
        "analyser-timeout-huge", "sim", put("analysers.0.timeout_s", 1e6), "analysers[0].timeout_"
    ),
    case(
        "analyser-output-tiny",
        "sim",
        put("analysers.0.output_interval_s", 0.001),
        "analysers[0].output_interval_s: must be >=",
    ),
    case(
        "analyser-output-huge",
        "sim",
        put("analysers.0.output_interval_s", 1e6),
        "analysers[0].output_interval_s: must be <=",
    ),
    case(
        "fit-window-too-few-readings",
        "sim",
        both(put("analysers.0.output_interval_s", 20), put("cycle.analyser_silent_s", 60)),
        "cycle.observation_s: the fit window (100 s after the 20 s dead band) holds only 5",
    ),
    case(
        "analyser-precision-inf",
        "sim",
        put("analysers.0.precision_co2_umol_mol", math.inf),
        "analysers[0].precision_co2_umol_mol: must be finite",
    ),
    case(
        "analyser-duplicate-id", "s16", put("analysers.1.id", "irga-north"), "analysers[1].id: dup"
    ),
    # --- [[modbus]] ------------------------------------------------------------------------
    case(
        "line-device-id-0", "sim", put("modbus.0.device_id", 0), "modbus[0].device_id:", "broadcast"
    ),
    case("line-device-id-248", "sim", put("modbus.0.device_id", 248), "modbus[0].device_id: must"),
    case(
        "line-device-id-bool", "sim", put("modbus.0.device_id", True), "modbus[0].device_id: must"
    ),
    case("line-tcp-port-0", "sim", put("modbus.1.tcp_port", 0), "modbus[1].tcp_port: must be"),
    case("line-tcp-port-70000", "sim", put("modbus.1.tcp_port", 70000), "modbus[1].tcp_port: must"),
    case(
        "two-rtu-lines-one-port",
        "s16",
        put("modbus.2", _line(framing="rtu", port=S16_RS485_PORT, device_id=5)),
        "modbus[2].port:",
        "modbus[0]",
    ),
    case(
        "two-rtu-lines-one-port-spelled-twice",
        "s16",
        put("modbus.2", _line(framing="rtu", port=S16_RS485_PORT.replace("/by-id/", "/by-id//"))),
        "modbus[2].port:",
        "modbus[0]",
    ),
    case(
        "two-rtu-over-tcp-lines-one-server",
        "sim",
        both(
            put("modbus.0", {"id": "relays", "framing": "rtu-over-tcp", "host": "10.0.0.5"}),
            put("modbus.2", _line(framing="rtu-over-tcp", host="10.0.0.5", device_id=9)),
        ),
        "modbus[2].host:",
        "modbus[0]",
    ),
    case(
        "two-tcp-lines-same-device",
        "sim",
        put("modbus.2", _line(framing="tcp", host="192.168.1.50", device_id=2)),
        "modbus[2]",
        "modbus[1]",
    ),
    case(
        "tcp-and-rtu-over-tcp-one-server",
        "sim",
        put("modbus.2", _line(framing="rtu-over-tcp", host="192.168.1.50", tcp_port=502)),
        "modbus[2].host:",
        "modbus[1]",
    ),
    case("rtu-without-port", "sim", drop("modbus.0.port"), "modbus[0].port: required"),
    case("tcp-without-host", "sim", drop("modbus.1.host"), "modbus[1].host: required"),
    case("rtu-with-host", "sim", put("modbus.0.host", "10.0.0.7"), "modbus[0].host: not used"),
    case("tcp-with-port", "sim", put("modbus.1.port", "/dev/ttyUSB3"), "modbus[1].port: not used"),
    case("line-baud-0", "sim", put("modbus.0.baudrate", 0), "modbus[0].baudrate: must be"),
    case("line-baud-huge", "sim", put("modbus.0.baudrate", 10**12), "modbus[0].baudrate: must be"),
    case(
        "line-timeout-inf", "sim", put("modbus.0.timeout_s", math.inf), "modbus[0].timeout_s: mus"
    ),
    case("line-timeout-huge", "sim", put("modbus.0.timeout_s", 1e6), "modbus[0].timeout_s: must"),
    case("line-retries-11", "sim", put("modbus.0.retries", 11), "modbus[0].retries: must be <="),
    case("line-retries-bool", "sim", put("modbus.0.retries", True), "modbus[0].retries: must be a"),
    case("line-host-empty", "sim", put("modbus.1.host", ""), "modbus[1].host:"),
    case(
        "line-host-space", "sim", put("modbus.1.host", "bad host"), "modbus[1].host:", "host name"
    ),
    case("line-host-with-port", "sim", put("modbus.1.host", "192.168.1.50:502"), "tcp_port"),
    case("line-duplicate-id", "sim", put("modbus.1.id", "relays"), "modbus[1].id: duplicate"),
    case("line-framing", "sim", put("modbus.0.framing", "ascii"), "modbus[0].framing: must be one"),
    # --- relays and switches -----------------------------------------------------------
    case(
        "lid-on-pump-coil",
        "sim",
        put("chambers.3.lid.coil", 7),
        "chambers[3].lid: coil 7 of device 'relays' (id 1) is already pump.coil",
    ),
    case(
        "two-lids-one-coil-default-device-id",
        "s16",
        put("chambers.1.lid", {"device": "rs485", "coil": 0}),
        "chambers[1].lid: coil 0 of device 'rs485' (id 1) is already chambers[0].lid",
    ),
    case(
        "two-lids-one-coil-explicit-default",
        "sim",
        put("chambers.1.lid", {"device": "relays", "coil": 0, "device_id": 1}),
        "chambers[1].lid: coil 0 of device 'relays' (id 1) is already chambers[0].lid",
    ),
    case(
        "two-lids-one-coil",
        "sim",
        put("chambers.1.lid.coil", 0),
        "chambers[1].lid: coil 0 of device 'relays' (id 1) is already chambers[0].lid",
    ),
    case(
        "two-lids-one-coil-explicit",
        "s16",
        put("chambers.8.lid.device_id", 1),
        "chambers[8].lid: coil 0 of device 'rs485' (id 1) is already chambers[0].lid",
    ),
    case(
        "valve-on-a-lid-coil",
        "sim",
        put("chambers.0.valve", {"device": "relays", "coil": 1}),
        "chambers[1].lid: coil 1 of device 'relays' (id 1) is already chambers[0].valve",
    ),
    case(
        "valve-on-pump-coil",
        "sim",
        put("chambers.0.valve", {"device": "relays", "coil": 7}),
        "chambers[0].valve: coil 7 of device 'relays' (id 1) is already pump.coil",
    ),
    case(
        "pump-on-a-lid-coil",
        "sim",
        put("pump.coil", {"device": "relays", "coil": 0, "device_id": 1}),
        "chambers[0].lid: coil 0 of device 'relays' (id 1) is already pump.coil",
    ),
    case(
        "both-switches-one-input",
        "sim",
        put("chambers.0.open_switch.input", 0),
        "chambers[0].open_switch: input 0 of device 'relays' (id 1) is already chambers[0].clo",
    ),
    case(
        "two-switches-one-input-default-device-id",
        "sim",
        put("chambers.1.closed_switch", {"device": "relays", "input": 0, "device_id": 1}),
        "chambers[1].closed_switch: input 0 of device 'relays' (id 1) is already chambers[0]",
    ),
    case(
        "two-register-relays-one-register",
        "sim",
        both(
            put("chambers.0.lid", {"device": "relays", "coil": 5, "style": "register"}),
            put("chambers.1.valve", {"device": "relays", "coil": 5, "style": "register"}),
        ),
        "chambers[1].valve: holding register 5 of device 'relays' (id 1) is already chambers[0]",
    ),
    case(
        "aux-reads-a-relay-register",
        "sim",
        both(
            put("chambers.0.lid", {"device": "probes", "coil": 1, "style": "register"}),
        ),
        "aux[4].address: holding register 1 of device 'probes' (id 2) is chambers[0].lid",
    ),
    case(
        "lid-device-id-0", "sim", put("chambers.0.lid.device_id", 0), "chambers[0].lid.device_id:"
    ),
    case("lid-device-id-300", "sim", put("chambers.0.lid.device_id", 300), "chambers[0].lid.devi"),
    case("lid-coil-70000", "sim", put("chambers.0.lid.coil", 70000), "chambers[0].lid.coil: must"),
    case("lid-coil-neg", "sim", put("chambers.0.lid.coil", -1), "chambers[0].lid.coil: must be >="),
    case(
        "switch-input-70000",
        "sim",
        put("chambers.0.closed_switch.input", 70000),
        "chambers[0].closed_switch.input: must be <= 65535",
    ),
    case(
        "lid-device-unknown", "sim", put("chambers.0.lid.device", "nope"), "chambers[0].lid.devic"
    ),
    case(
        "pump-device-unknown", "sim", put("pump.coil.device", "nope"), "pump.coil.device: no modbus"
    ),
    case("pump-device-id-0", "sim", put("pump.coil.device_id", 0), "pump.coil.device_id:"),
    case("pump-coil-70000", "sim", put("pump.coil.coil", 70000), "pump.coil.coil: must be <="),
    # --- [[chambers]] ----------------------------------------------------------------------
    case(
        "chamber-analyser-unknown", "sim", put("chambers.0.analyser", "x"), "chambers[0].analyser"
    ),
    case(
        "chamber-deadband-inf", "sim", put("chambers.0.dead_band_s", math.inf), "chambers[0].dead"
    ),
    case(
        "chamber-fit-window-too-short",
        "sim",
        put("chambers.2.observation_s", 25),
        "chambers[2].dead_band_s: 20 s leaves fewer than 10 s of the 25 s observation",
    ),
    case(
        "chamber-observation-huge",
        "sim",
        put("chambers.0.observation_s", 1e9),
        "chambers[0].observation_s: must be <=",
    ),
    case(
        "chamber-observation-inf",
        "sim",
        put("chambers.0.observation_s", math.inf),
        "chambers[0].observation_s: must be finite",
    ),
    case("chamber-label-huge", "sim", put("chambers.0.label", "x" * 1000), "chambers[0].label: at"),
    case("chamber-duplicate-id", "sim", put("chambers.2.id", "C1"), "chambers[2].id: duplicate"),
    case("geometry-empty", "sim", put("chambers.0.geometry", []), "chambers[0].geometry: needs"),
    case(
        "geometry-same-day",
        "sim",
        put("chambers.0.geometry.1", lambda s: dict(s.data["chambers"][0]["geometry"][0])),
        "chambers[0].geometry: two versions",
    ),
    *(
        case(f"{name}-{label}", "sim", put(f"chambers.0.geometry.0.{name}", value), *expect)
        for name, label, value, expect in [
            ("area_cm2", "bool", True, ("chambers[0].geometry[0].area_cm2: must be a number",)),
            ("area_cm2", "inf", math.inf, ("chambers[0].geometry[0].area_cm2: must be finite",)),
            ("area_cm2", "nan", math.nan, ("chambers[0].geometry[0].area_cm2: must be finite",)),
            ("area_cm2", "m2", 0.03178, ("chambers[0].geometry[0].area_cm2: must be >= 1",)),
            ("area_cm2", "huge", 1e9, ("chambers[0].geometry[0].area_cm2: must be <= 100000",)),
            ("volume_cm3", "inf", math.inf, ("chambers[0].geometry[0].volume_cm3: must be fin",)),
            ("volume_cm3", "litres", 5.02, ("chambers[0].geometry[0].volume_cm3: must be >= 10",)),
            ("volume_cm3", "huge", 1e12, ("chambers[0].geometry[0].volume_cm3: must be <=",)),
            ("volume_cm3", "neg", -1, ("chambers[0].geometry[0].volume_cm3: must be >=",)),
            ("volume_cm3", "bool", True, ("chambers[0].geometry[0].volume_cm3: must be a num",)),
            ("offset_cm", "huge", 1e6, ("chambers[0].geometry[0].offset_cm: must be <= 100",)),
            ("offset_cm", "inf", math.inf, ("chambers[0].geometry[0].offset_cm: must be finite",)),
            ("offset_cm", "neg", -1, ("chambers[0].geometry[0].offset_cm: must be >= 0",)),
            ("since", "year-1", dt.date(1, 1, 1), ("chambers[0].geometry[0].since: must be >=",)),
            ("since", "year-9999", dt.date(9999, 12, 31), ("chambers[0].geometry[0].since: mu",)),
            ("volume_cm3", "flat", 100.0, ("chambers[0].geometry[0]:", "cm tall")),
            ("offset_cm", "deep-collar", 50.0, ("chambers[0].geometry[0].offset_cm:", "volume")),
        ]
    ),
    case(
        "geometry-tower",
        "sim",
        both(
            put("chambers.0.geometry.0.area_cm2", 10.0),
            put("chambers.0.geometry.0.volume_cm3", 900000.0),
            put("chambers.0.geometry.0.offset_cm", 0.0),
        ),
        "chambers[0].geometry[0]:",
        "cm tall",
    ),
    case("chamber-sim-r10-inf", "sim", put("chambers.0.sim.r10_umol_m2_s", math.inf), "chambers"),
    case(
        "chamber-sim-q10-huge", "sim", put("chambers.0.sim.q10", 1e9), "chambers[0].sim.q10: must"
    ),
    case(
        "chamber-sim-saturation",
        "sim",
        put("chambers.0.sim.saturation_per_s", 5),
        "chambers[0].sim.saturation_per_s: must be <= 1",
    ),
    # --- [[aux]] ---------------------------------------------------------------------------
    case(
        "aux-float32-at-65535",
        "sim",
        put("aux.6.address", 65535),
        "aux[6].address: 65535 + 2 registers",
    ),
    case(
        "aux-int32-at-65535",
        "sim",
        both(put("aux.0.datatype", "int32"), put("aux.0.address", 65535)),
        "aux[0].address: 65535 + 2 registers",
    ),
    case("aux-address-70000", "sim", put("aux.0.address", 70000), "aux[0].address: must be <="),
    case("aux-device-id-0", "sim", put("aux.0.device_id", 0), "aux[0].device_id:", "broadcast"),
    case("aux-scale-0", "sim", put("aux.0.scale", 0), "aux[0].scale: must not be 0"),
    case("aux-scale-inf", "sim", put("aux.0.scale", math.inf), "aux[0].scale: must be finite"),
    case("aux-scale-huge", "sim", put("aux.0.scale", 1e300), "aux[0].scale: must be <="),
    case("aux-scale-bool", "sim", put("aux.0.scale", True), "aux[0].scale: must be a number"),
    case("aux-offset-nan", "sim", put("aux.0.offset", math.nan), "aux[0].offset: must be finite"),
    case("aux-chamber-unknown", "sim", put("aux.0.chamber", "C9"), "aux[0].chamber: no chamber"),
    case("aux-device-unknown", "sim", put("aux.0.device", "nope"), "aux[0].device: no modbus"),
    case("aux-duplicate-id", "sim", put("aux.1.id", "C1_soil_t"), "aux[1].id: duplicate"),
    case("aux-register-coil", "sim", put("aux.0.register", "coil"), "aux[0].register: must be one"),
    # --- [alarms] --------------------------------------------------------------------------
    case("alarm-timeout-inf", "sim", put("alarms", {"timeout_s": math.inf}), "alarms.timeout_s"),
    case("alarm-timeout-huge", "sim", put("alarms", {"timeout_s": 1e9}), "alarms.timeout_s: must"),
    case("alarm-command-empty", "sim", put("alarms", {"command": ""}), "alarms.command: must not"),
    case(
        "alarm-command-blank", "sim", put("alarms", {"command": "  "}), "alarms.command: must not"
    ),
    # --- [sync] ----------------------------------------------------------------------------
    case("sync-mysql", "sim", put("sync", {"target": "mysql://u@h/db"}), "sync.target:", "sqlite"),
    case("sync-bare-file", "sim", put("sync", {"target": "central.db"}), "sync.target:"),
    case("sync-sqlite-2-slashes", "sim", put("sync", {"target": "sqlite://c.db"}), "sync.target:"),
    case("sync-sqlite-no-path", "sim", put("sync", {"target": "sqlite:///"}), "sync.target:"),
    case("sync-http", "sim", put("sync", {"target": "https://example.org/api"}), "sync.target:"),
    case("sync-empty", "sim", put("sync", {"target": ""}), "sync.target: must not be empty"),
    case(
        "sync-sqlite-missing-folder",
        "sim",
        put("sync", lambda s: {"target": f"sqlite:///{s.tmp}/nowhere/central.db"}),
        "sync.target:",
        "nowhere",
        "does not exist",
    ),
    case(
        "sync-sqlite-folder",
        "sim",
        put("sync", lambda s: {"target": f"sqlite:///{s.tmp}"}),
        "sync.target:",
        "is a folder",
    ),
    case(
        "sync-pg-bad-port",
        "sim",
        put("sync", {"target": "postgresql://site:secret@db.example.org:99999/campaign"}),
        "sync.target:",
        "port",
        absent=("secret",),
    ),
    case(
        "sync-pg-space-in-host",
        "sim",
        put("sync", {"target": "postgresql://site:secret@db example.org/campaign"}),
        "sync.target:",
        absent=("secret",),
    ),
    case("sync-batch-0", "sim", put("sync", {"batch_size": 0}), "sync.batch_size: must be"),
    case("sync-batch-bool", "sim", put("sync", {"batch_size": True}), "sync.batch_size: must be a"),
    case("sync-interval-inf", "sim", put("sync", {"interval_min": math.inf}), "sync.interval_min"),
    case("sync-interval-huge", "sim", put("sync", {"interval_min": 1e9}), "sync.interval_min: mu"),
    case("sync-interval-0", "sim", put("sync", {"interval_min": 0}), "sync.interval_min: must be"),
    case("sync-skew-inf", "sim", put("sync", {"max_skew_s": math.inf}), "sync.max_skew_s: must be"),
    case("sync-skew-huge", "sim", put("sync", {"max_skew_s": 1e9}), "sync.max_skew_s: must be <="),
    case("sync-system-space", "sim", put("sync", {"system": "a b"}), "sync.system: may contain"),
    case("sync-owner-huge", "sim", put("sync", {"owner": "x" * 1000}), "sync.owner: at most 200"),
    # --- [sim] -----------------------------------------------------------------------------
    case("sim-speed-inf", "sim", put("sim.speed", math.inf), "sim.speed: must be finite"),
    case("sim-speed-huge", "sim", put("sim.speed", 1e9), "sim.speed: must be <="),
    case("sim-seed-negative", "sim", put("sim.seed", -1), "sim.seed: must be >= 0"),
    case("sim-ambient-inf", "sim", put("sim.ambient_co2_umol_mol", math.inf), "sim.ambient_co2"),
    case(
        "sim-soil-t-huge",
        "sim",
        put("sim.soil_temperature_mean_degc", 1e6),
        "sim.soil_temperature_mean_degc: must be <=",
    ),
    case(
        "sim-noise-nan", "sim", put("sim.analyser_noise_umol_mol", math.nan), "sim.analyser_noise"
    ),
    case("sim-lid-delay-inf", "sim", put("sim.lid_delay_s", math.inf), "sim.lid_delay_s: must be"),
    case("sim-mixing-huge", "sim", put("sim.mixing_s", 1e9), "sim.mixing_s: must be <="),
    # --- the file itself, and overrides ----------------------------------------------------
    case(
        "file-not-utf8",
        "sim",
        text(lambda b: b.replace(b"[cycle]", b"# caf\xe9 \xff\n[cycle]")),
        "site.toml: line ",
        "UTF-8",
    ),
    case(
        "file-5000-digit-integer",
        "sim",
        text(lambda b: b.replace(b"interval_min = 30", b"interval_min = " + b"1" * 5000)),
        "site.toml: line ",
        "digits",
    ),
    case(
        "file-deep-nesting",
        "sim",
        text(lambda b: b"deep = " + b"[" * 5000 + b"]" * 5000 + b"\n" + b),
        "site.toml:",
        "nested",
    ),
    case(
        "file-huge",
        "sim",
        text(lambda b: b + b"#" * 10_000_000 + b"\n"),
        "site.toml: larger than 10 MB",
    ),
    case(
        "file-toml-syntax", "sim", text(lambda b: b + b"this is not toml\n"), "site.toml: ", "line"
    ),
    case(
        "env-5000-digit-integer",
        "sim",
        env(CHAMBERD__CYCLE__OBSERVATION_S="9" * 5000),
        "environment CHAMBERD__CYCLE__OBSERVATION_S:",
        "digits",
    ),
    case("set-empty-name", "sim", override("cycle..observation_s=60"), "--set", "empty"),
    case("set-surrogate", "sim", override("site.name=caf\udce9"), "--set", "UTF-8"),
    case("env-empty-name", "sim", env(CHAMBERD__="1"), "environment CHAMBERD__", "empty"),
    case("set-into-a-value", "sim", override("site.id.x=1"), "--set", "does not name a section"),
]


def _load(c: Case, tmp_path: Path) -> Any:
    raw = BASES[c.base].read_bytes()
    data = tomllib.loads(raw.decode())
    data["storage"]["path"] = str(tmp_path / "site.db")
    site = Site(copy.deepcopy(data), tmp_path, raw)
    c.edit(site)
    path = tmp_path / "site.toml"
    path.write_bytes(site.text if site.text is not None else dump(site.data).encode())
    return load_config(path, environ=site.environ, overrides=site.overrides)


def test_the_corpus_is_large_and_named_uniquely():
    assert len(CASES) >= 129
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_absurd_config_is_refused_naming_the_field(c: Case, tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        _load(c, tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "site.toml")), message
    for part in c.expect:
        assert part in message, f"{part!r} not in:\n{message}"
    for part in c.absent:
        assert part not in message, f"{part!r} printed in:\n{message}"


LEGIT = [
    case("sim-as-shipped", "sim", both()),
    case("site-16-as-shipped", "s16", both()),
    case(
        "coil-and-register-share-a-number",
        "sim",
        put("chambers.0.valve", {"device": "relays", "coil": 0, "style": "register"}),
    ),
    case(
        "two-tcp-lines-one-gateway",
        "sim",
        put("modbus.3", _line(framing="tcp", host="192.168.1.50", device_id=4)),
    ),
    case(
        "loop-ports-are-independent",
        "s16",
        both(put("analysers.0.port", "loop://"), put("analysers.1.port", "loop://")),
    ),
    case("one-server-two-ports", "s16", put("analysers.0.port", "socket://192.168.10.21:4002")),
    case(
        "rfc2217-options", "s16", put("analysers.1.port", "rfc2217://192.168.10.21:4001?timeout=2")
    ),
    case("byte-order-mark", "sim", text(lambda b: b"\xef\xbb\xbf" + b)),
    case("crlf-line-ends", "sim", text(lambda b: b.replace(b"\n", b"\r\n"))),
    case("emoji-label", "sim", put("chambers.0.label", "plot 1 \U0001f331")),
    case("cjk-name", "sim", put("site.name", "\u9521\u6797\u6d69\u7279 grassland")),
    case("quotes-backslashes-controls", "sim", put("chambers.0.label", 'a "b" \\ c\td\x7f\n')),
    case("offset-just-below-interval", "sim", put("schedule.offset_min", 29)),
    case(
        "register-style-relays-beside-inputs",
        "sim",
        both(*(put(f"chambers.{i}.lid.style", "register") for i in range(4))),
    ),
    case("relative-storage-path", "sim", put("storage.path", "data.db")),
    case(
        "sync-sqlite-target",
        "sim",
        put("sync", lambda s: {"target": f"sqlite:///{s.tmp}/central.db", "interval_min": 30}),
    ),
    case("sync-postgres", "sim", put("sync", {"target": "postgresql://site@db.example.org/c"})),
    case("sync-postgres-socket", "sim", put("sync", {"target": "postgresql:///campaign"})),
    case("sync-postgres-alias", "sim", put("sync", {"target": "postgres://u:pw@127.0.0.1:5433/c"})),
    case(
        "disabled-chambers-do-not-lengthen-the-round",
        "s16",
        both(
            put("chambers.0.observation_s", 1500),
            put("chambers.0.enabled", False),
        ),
    ),
    case("integral-float-for-an-integer", "sim", put("schedule.interval_min", 30.0)),
    case(
        "set-and-environment",
        "sim",
        both(override("cycle.dead_band_s=25"), env(CHAMBERD__SITE__NAME="x")),
    ),
]


@pytest.mark.parametrize("c", LEGIT, ids=[c.id for c in LEGIT])
def test_unusual_but_legitimate_config_is_valid(c: Case, tmp_path: Path):
    _load(c, tmp_path)
