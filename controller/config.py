"""The one configuration schema of a site: ``site.toml``.

Loaded with :func:`load_config` (defaults < file < environment < command line), validated
with pydantic: unknown keys are rejected and every error is reported at once with its path
and why (``chambers[3].geometry[0].volume_cm3: must be >= 10 (10 cm3 to 1 m3, ...)``).
Numbers must be finite and within bounds an operator would accept (a TOML ``true`` is not
a number). Cross references (a chamber's analyser, a lid's Modbus device, an aux sensor's
chamber), shared ports, coils and registers, and whether a round fits its interval are
checked by the schema itself, after the fields (:func:`_cross_checks`); :func:`load_config`
also checks the paths a site writes (``storage.path``, a ``sqlite:///`` sync target) on
this machine. :func:`config_hash` fingerprints the resolved configuration; every
observation records it.

A minimal site::

    [site]
    id = "demo"
    time_zone = "Asia/Shanghai"

    [[analysers]]
    id = "irga"
    protocol = "li850"
    port = "/dev/serial/by-id/usb-LI-COR_LI-850-if00"

    [[modbus]]
    id = "relays"
    framing = "rtu"
    port = "/dev/serial/by-id/usb-FTDI-if00"

    [[chambers]]
    id = "C1"
    analyser = "irga"
    lid = { device = "relays", coil = 0 }
    closed_switch = { device = "relays", input = 0 }
    geometry = [{ since = 2026-05-01, area_cm2 = 317.8, volume_cm3 = 4076.1 }]

See ``docs/examples/`` for complete configurations and ``docs/operator.md`` for every key,
its bounds and the cross-checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import posixpath
import re
import shlex
import sys
import tomllib
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import ChamberError, ConfigError

__all__ = [
    "AnalyserConfig",
    "AnalyserDrift",
    "AutomaticCheck",
    "AuxConfig",
    "CalibrationSection",
    "ChamberConfig",
    "CoilRef",
    "GeometryVersion",
    "InputRef",
    "ManifoldSlot",
    "ModbusConfig",
    "SiteConfig",
    "config_hash",
    "load_config",
    "parse_config",
    "to_toml",
]

ENV_PREFIX = "CHAMBERD__"

MIN_FIT_READINGS = 10  # = chamberd.fitting.closure.FitSettings.min_points (tested)
REGISTER_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


# --- field types: what a value may be, and its plausible bounds ---------------------------


def _not_bool(value: Any) -> Any:
    # pydantic reads a TOML ``true`` as the number 1 (``area_cm2 = true`` is 1 cm2)
    if isinstance(value, bool):
        raise PydanticCustomError("bool_number", "must be a number, not true or false")
    return value


_NUMBER = BeforeValidator(_not_bool)


def _number(kind: type, **bounds: Any) -> Any:
    """A number type: booleans refused, inf and nan refused (``allow_inf_nan``), bounded."""
    return Annotated[kind, _NUMBER, Field(**bounds)]


def _printable(text: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise PydanticCustomError("control_character", "must not contain control characters")
    return text


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "must not be empty or blank")
    return text


# geography and the site
Latitude = _number(float, ge=-90, le=90)
Longitude = _number(float, ge=-180, le=180)
Text = Annotated[str, Field(max_length=200)]  # names, labels: free text
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
FilePath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)]
# phases and thresholds [s]
PhaseSeconds = _number(float, ge=0, le=3600)  # prepurge, dead band, postpurge: up to 1 h
ObservationSeconds = _number(float, gt=0, le=3600)  # a closure of at most 1 h
LidTimeoutSeconds = _number(float, ge=1, le=600)  # no lid moves in under 1 s or over 10 min
SilentSeconds = _number(float, ge=1, le=600)
SampleSeconds = _number(float, gt=0, le=60)
OutputSeconds = _number(float, ge=0.1, le=60)
WireTimeoutSeconds = _number(float, gt=0, le=60)
# hardware addresses
DeviceId = _number(int, ge=1, le=247)  # 0 is Modbus broadcast: no device answers it
Address = _number(int, ge=0, le=65535)
Baudrate = _number(int, ge=50, le=4_000_000)
TcpPort = _number(int, ge=1, le=65535)
# chamber geometry
AreaCm2 = _number(float, ge=1, le=100_000)  # 1 cm2 .. 10 m2
VolumeCm3 = _number(float, ge=10, le=1_000_000)  # 10 cm3 .. 1 m3
OffsetCm = _number(float, ge=0, le=100)
Since = Annotated[dt.date, Field(ge=dt.date(1970, 1, 1), le=dt.date(2100, 12, 31))]
MIN_HEIGHT_CM, MAX_HEIGHT_CM = 0.5, 300.0  # volume / area of a real chamber


def _serial_port(port: str) -> str:
    _printable(port)
    scheme, sep, rest = port.partition("://")
    if sep and scheme in ("socket", "rfc2217"):
        try:
            _host_port(rest)
        except ValueError as exc:
            raise PydanticCustomError(
                "serial_url",
                "{scheme}:// needs host:port with a port 1..65535, e.g. "
                "{scheme}://192.168.10.21:4001 ({why})",
                {"scheme": scheme, "why": str(exc)},
            ) from None
    return port


def _host(host: str) -> str:
    if not _valid_host(host):
        hint = " (give the port in tcp_port)" if re.fullmatch(r"[^:]+:\d+", host) else ""
        raise PydanticCustomError(
            "host",
            "'{host}' is not a host name or IP address{hint}",
            {"host": host[:80], "hint": hint},
        )
    return host


SerialPort = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_serial_port)]
Host = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_host)]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$"
)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(_HOSTNAME.match(host))
    return True


def _host_port(rest: str) -> tuple[str, int]:
    """(host, port) of ``host:port[/...][?options]`` in a serial URL; ValueError if not."""
    parts = urlsplit("//" + rest)
    port = parts.port  # ValueError when out of range or not a number
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    if port is None or port == 0:
        raise ValueError("no port")
    if not _valid_host(host):
        raise ValueError(f"bad host {host[:80]!r}")
    return host.lower(), port


def _sync_target(url: str) -> str:
    """``sqlite:///path`` or ``postgresql://...`` (as Central.connect opens them). Messages
    never repeat the URL: it may hold a password."""
    if not url:
        raise PydanticCustomError(
            "sync_target", "must not be empty (leave sync.target out for no upload)"
        )
    _printable(url)
    usage = "sqlite:///path/to/central.db or postgresql://user@host/db"
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise PydanticCustomError(
            "sync_target", "not a database URL: give {usage}", {"usage": usage}
        )
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise PydanticCustomError(
                "sync_target",
                "a SQLite target is sqlite:/// (three slashes) and the file's path, "
                "e.g. sqlite:///central.db or sqlite:////var/lib/chamberd/central.db",
            )
        return url
    if scheme in ("postgresql", "postgres"):
        if any(c.isspace() for c in url):
            raise PydanticCustomError(
                "sync_target", "a PostgreSQL URL must not contain spaces (encode them as %20)"
            )
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError:
            raise PydanticCustomError(
                "sync_target", "the PostgreSQL URL's port must be a number 1..65535"
            ) from None
        if parts.hostname and not _valid_host(parts.hostname):
            raise PydanticCustomError(
                "sync_target", "the PostgreSQL URL's host is not a host name or IP address"
            )
        return url
    shown = f" {scheme!r}" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,19}", scheme) else ""
    raise PydanticCustomError(
        "sync_target",
        "unknown database URL scheme{shown}: give {usage}",
        {"shown": shown, "usage": usage},
    )


def _alarm_command(command: str) -> str:
    _printable(command)
    _not_blank(command)
    try:
        shlex.split(command)
    except ValueError as exc:
        raise PydanticCustomError(
            "command", "cannot be split into words: {why}", {"why": str(exc)}
        ) from None
    return command


def _not_zero(value: float) -> float:
    if value == 0:
        raise PydanticCustomError("zero_scale", "must not be 0 (every reading would be offset)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class SiteSection(_Model):
    id: Identifier
    name: Text = ""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    latitude: Latitude | None = None
    longitude: Longitude | None = None


class StorageSection(_Model):
    path: FilePath = "site.db"
    keep_samples_days: _number(int, ge=1, le=36500) | None = None


class ScheduleSection(_Model):
    interval_min: _number(int, gt=0, le=1440) = 30
    offset_min: _number(int, ge=0, lt=1440) = 0
    misfire_grace_s: _number(float, gt=0, le=86400) = 300.0
    enabled: bool = True


class GasWindow(_Model):
    """The fit window of one gas, overriding the chamber's dead band and observation
    length for that gas (elapsed times aligned by each analyser's ``lag_s``)."""

    dead_band_s: PhaseSeconds | None = None
    observation_s: ObservationSeconds | None = None


class CycleSection(_Model):
    """Phase durations and fault thresholds, defaults for every chamber."""

    prepurge_s: PhaseSeconds = 30.0
    closing_timeout_s: LidTimeoutSeconds = 30.0
    dead_band_s: PhaseSeconds = 20.0
    observation_s: ObservationSeconds = 120.0
    opening_timeout_s: LidTimeoutSeconds = 30.0
    postpurge_s: PhaseSeconds = 30.0
    sample_interval_s: SampleSeconds = 1.0
    analyser_silent_s: SilentSeconds = 10.0
    max_failures: _number(int, ge=1, le=100) = 3
    retry_after_min: _number(float, gt=0, le=43200) = 120.0  # at most 30 days
    # per-gas fit window (``[cycle.gases.ch4] dead_band_s = 40``); unset: the chamber's
    gases: dict[Literal["co2", "ch4", "n2o"], GasWindow] = Field(default_factory=dict)


Protocol = Literal[
    "li820",
    "li830",
    "li840a",
    "li850",
    "gmp343",
    "li7810",
    "li7820",
    "lgr-gga",
    "lgr-ugga",
    "lgr-n2oco",
    "picarro",
    "memory",
]
#: Protocols whose port is an MQTT broker (``mqtt://host:port``), not a serial port.
MQTT_PROTOCOLS = ("li7810", "li7820")
#: Laser trace-gas analysers (CH4 and/or N2O).
TRACE_GAS_PROTOCOLS = ("li7810", "li7820", "lgr-gga", "lgr-ugga", "lgr-n2oco", "picarro")
#: Picarro species labels chamberd understands (as the instrument's command interface names
#: them) and what each is.
PICARRO_SPECIES = (
    "CO2",
    "CO2_dry",
    "CH4",
    "CH4_dry",
    "N2O",
    "N2O_dry",
    "H2O",
    "NH3",
    "CO",
)


def _mqtt_topic_root(text: str) -> str:
    _printable(text)
    if not text or text.startswith("/") or text.endswith("/") or any(c in text for c in "#+"):
        raise PydanticCustomError(
            "topic_root",
            "must be an MQTT topic without wildcards (# +) and without a leading or trailing "
            "'/', e.g. licor/niobrara",
        )
    return text


TopicRoot = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_mqtt_topic_root)]
PicarroSpecies = Literal["CO2", "CO2_dry", "CH4", "CH4_dry", "N2O", "N2O_dry", "H2O", "NH3", "CO"]


class AnalyserConfig(_Model):
    """One gas analyser.

    ``port`` is a serial port or pyserial URL (``socket://host:port`` for serial servers and
    for a Picarro's TCP command port), or for the LI-7810/7820 the instrument's MQTT broker
    ``mqtt://host:port`` (``topic_root`` its topics' prefix). ``species``: the Picarro's
    reported columns, in the order its command interface is set up to report them.
    """

    id: Identifier
    protocol: Protocol
    port: SerialPort
    baudrate: Baudrate | None = None
    timeout_s: WireTimeoutSeconds = 3.0
    precision_co2_umol_mol: _number(float, gt=0, le=1000) = 1.0
    precision_ch4_nmol_mol: _number(float, gt=0, le=10_000) = 1.0
    precision_n2o_nmol_mol: _number(float, gt=0, le=10_000) = 1.0
    output_interval_s: OutputSeconds = 1.0
    lag_s: _number(float, ge=0, le=600) = 0.0  # transit lag from the chamber to the cell
    power_w: _number(float, ge=0, le=5000) | None = None  # power draw (tgloop's budget)
    warmup_s: _number(float, ge=0, le=86400) = 0.0  # after power on, before readings count
    power: CoilRef | None = None  # a relay powering the analyser around its observations
    topic_root: TopicRoot = "licor/niobrara"  # MQTT protocols only
    species: list[PicarroSpecies] = Field(default_factory=list, max_length=16)  # picarro


class ModbusConfig(_Model):
    id: Identifier
    framing: Literal["rtu", "tcp", "rtu-over-tcp"]
    port: SerialPort | None = None  # serial URL for rtu
    host: Host | None = None  # for tcp and rtu-over-tcp
    tcp_port: TcpPort = 502
    device_id: DeviceId = 1
    baudrate: Baudrate = 9600
    timeout_s: WireTimeoutSeconds = 1.0
    retries: _number(int, ge=0, le=10) = 2


class CoilRef(_Model):
    """A relay: a coil (FC05) or, for register-style boards, a holding register (FC06)."""

    device: Identifier
    coil: Address
    device_id: DeviceId | None = None
    style: Literal["coil", "register"] = "coil"
    active_closes: bool = True  # coil on = lid closed (False: normally-closed wiring)


class InputRef(_Model):
    """An end-switch: a discrete input (FC02), true when the switch is made."""

    device: Identifier
    input: Address
    device_id: DeviceId | None = None
    active_high: bool = True


class GeometryVersion(_Model):
    """Chamber geometry valid from ``since`` (collars get re-installed, litter builds up)."""

    since: Since
    area_cm2: AreaCm2
    volume_cm3: VolumeCm3  # total system volume (chamber, collar offset, tubing, analyser)
    offset_cm: OffsetCm = 0.0


class ChamberSim(_Model):
    """Soil and chamber behaviour of this chamber in the simulated site.

    CH4 and N2O fluxes are given at 10 degC and scale with their own Q10 (negative: uptake,
    as in a well-drained upland grassland; positive: emission, as in a flooded paddy).
    Ebullition: bubbles arrive at random (seeded) times at ``ebullition_per_h`` on average
    while the lid is shut, each raising the headspace CH4 by about ``ebullition_nmol_mol``.
    """

    r10_umol_m2_s: _number(float, gt=0, le=100) = 2.0
    q10: _number(float, gt=0, le=10) = 2.0
    saturation_per_s: _number(float, ge=0, le=1) = 0.004  # curvature of the headspace rise
    h2o_flux_mmol_m2_s: _number(float, ge=0, le=100) = 0.02
    ch4_nmol_m2_s: _number(float, ge=-1000, le=100_000) = -1.0  # at 10 degC
    ch4_q10: _number(float, gt=0, le=10) = 1.5
    n2o_nmol_m2_s: _number(float, ge=-100, le=10_000) = 0.2  # at 10 degC
    n2o_q10: _number(float, gt=0, le=10) = 2.5
    ebullition_per_h: _number(float, ge=0, le=3600) = 0.0
    ebullition_nmol_mol: _number(float, ge=0, le=1_000_000) = 50.0


class ChamberConfig(_Model):
    """One chamber. Its loop's analysers: ``analyser = "A1"`` or, several in series,
    ``analysers = ["A1", "T1"]`` (then ``analyser`` is the first of them)."""

    id: Identifier
    label: Text = ""
    analyser: Identifier
    analysers: list[Identifier] | None = Field(default=None, min_length=1, max_length=8)
    lid: CoilRef
    closed_switch: InputRef | None = None
    open_switch: InputRef | None = None
    valve: CoilRef | None = None
    geometry: list[GeometryVersion] = Field(min_length=1, max_length=1000)
    dead_band_s: PhaseSeconds | None = None
    observation_s: ObservationSeconds | None = None
    enabled: bool = True
    sim: ChamberSim = ChamberSim()

    @model_validator(mode="before")
    @classmethod
    def _first_analyser(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "analyser" not in data:
            listed = data.get("analysers")
            if isinstance(listed, list) and listed:
                data = {**data, "analyser": listed[0]}
        return data

    @property
    def loop(self) -> list[str]:
        """The analysers of this chamber's loop, the group's key (``analyser``) first."""
        return list(self.analysers) if self.analysers else [self.analyser]

    def geometry_on(self, day: dt.date) -> GeometryVersion:
        """The geometry version valid on ``day`` (the earliest one before it starts)."""
        valid = [g for g in self.geometry if g.since <= day]
        return (
            max(valid, key=lambda g: g.since)
            if valid
            else min(self.geometry, key=lambda g: g.since)
        )


Quantity = Literal[
    "soil_temperature_degc", "soil_moisture_pct", "air_temperature_degc", "pressure_kpa"
]


class AuxConfig(_Model):
    """An auxiliary sensor read from Modbus registers with a configurable map."""

    id: Identifier
    device: Identifier
    device_id: DeviceId | None = None
    quantity: Quantity
    chamber: Identifier | None = None
    table: Literal["input", "holding"] = Field(default="input", alias="register")
    address: Address
    datatype: Literal["int16", "uint16", "int32", "uint32", "float32"] = "int16"
    word_order: Literal["big", "little"] = "big"
    scale: Annotated[_number(float, ge=-1e6, le=1e6), AfterValidator(_not_zero)] = 1.0
    offset: _number(float, ge=-1e6, le=1e6) = 0.0


class PumpSection(_Model):
    coil: CoilRef | None = None
    mode: Literal["always", "measuring", "off"] = "measuring"
    power_w: _number(float, ge=0, le=5000) | None = None  # for the energy estimate
    warmup_s: _number(float, ge=0, le=3600) = 0.0  # after switching on, before prepurge


class AlarmSection(_Model):
    # receives each alarm as one JSON object on stdin
    command: Annotated[str, Field(max_length=4096), AfterValidator(_alarm_command)] | None = None
    timeout_s: _number(float, gt=0, le=3600) = 10.0


class SyncSection(_Model):
    """Upload to the shared intercomparison database (``chamberd sync``, and the daemon)."""

    # sqlite:///path or postgresql://user@host/db
    target: Annotated[str, Field(max_length=4096), AfterValidator(_sync_target)] | None = None
    system: Identifier = "chamberd"  # this measurement system's id at the central side
    instrument: Text = "automated chambers"
    method: Text = "chamberd"
    owner: Text = ""
    interval_min: _number(float, gt=0, le=10080) | None = None  # the daemon uploads this often
    batch_size: _number(int, gt=0, le=100000) = 500
    include_samples: bool = True
    max_skew_s: _number(float, gt=0, le=86400) = 120.0


SpanGain = _number(float, gt=0, le=10)
SpanDrift = _number(float, ge=-1, le=1)  # relative gain change per day
ZeroOffset = _number(float, ge=-100_000, le=100_000)
ZeroDrift = _number(float, ge=-10_000, le=10_000)


class AnalyserDrift(_Model):
    """The drift of one simulated analyser (unset fields: the ``[sim]`` defaults)."""

    span_gain: SpanGain | None = None
    span_drift_per_day: SpanDrift | None = None
    zero_offset_umol_mol: ZeroOffset | None = None
    zero_drift_umol_mol_per_day: ZeroDrift | None = None


class ManifoldSlot(_Model):
    """One valve of the calibration gas manifold: opening its coil sends the gas of the
    cylinder connected to it to the analysers (every analyser when ``analysers`` is
    empty)."""

    slot: Identifier
    coil: CoilRef
    cylinder: Identifier | None = None  # id in the cylinder registry
    analysers: list[Identifier] = Field(default_factory=list, max_length=100)


def _clock_time(text: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise PydanticCustomError("clock_time", "must be a local time HH:MM (00:00 to 23:59)")
    return text


class AutomaticCheck(_Model):
    """A scheduled zero/span check through the manifold (no adjustment)."""

    every_days: _number(float, gt=0, le=365)
    analyser: Identifier
    zero_slot: Identifier | None = None
    span_slots: list[Identifier] = Field(default_factory=list, max_length=10)
    purge_s: _number(float, gt=0, le=3600) = 120.0
    average_s: _number(float, gt=0, le=3600) = 30.0
    at: Annotated[str, AfterValidator(_clock_time)] = "03:00"  # local time of the site


def _limit_name(name: str) -> str:
    # The limit names are the procedures' data; the rule is theirs (``unknown_limit``),
    # imported late so that loading a config does not load the procedures before it needs
    # them (the runner applies the same rule in ``limits_for``).
    from chamberd.calibration.procedures import unknown_limit

    why = unknown_limit(name)
    if why is not None:
        raise PydanticCustomError("unknown_limit", "{why}", {"why": why})
    return name


LimitName = Annotated[Identifier, AfterValidator(_limit_name)]


class CalibrationSection(_Model):
    """Calibration hardware and settings (``chamberd calibrate``)."""

    manifold: list[ManifoldSlot] = Field(default_factory=list, max_length=32)
    automatic: AutomaticCheck | None = None
    # overrides of the procedures' limits, by limit name (see docs/trainee.md)
    limits: dict[LimitName, _number(float, ge=-1e9, le=1e9)] = Field(
        default_factory=dict, max_length=100
    )

    def slot(self, slot_id: str) -> ManifoldSlot:
        for slot in self.manifold:
            if slot.slot == slot_id:
                return slot
        raise KeyError(slot_id)


class WebSection(_Model):
    """``chamberd serve``: the read-only web page. Binding to any address but loopback needs
    a token (``token``, or ``token_file`` holding it); requests must carry it."""

    bind: Annotated[str, Field(min_length=3, max_length=300)] = "127.0.0.1:8580"
    token: (
        Annotated[str, Field(min_length=16, max_length=512), AfterValidator(_printable)] | None
    ) = None
    token_file: FilePath | None = None
    refresh_s: _number(float, ge=2, le=3600) = 10.0  # the page reloads itself this often


class SimSection(_Model):
    """The simulated site (``chamberd sim`` and ``chamberd demo`` only)."""

    seed: _number(int, ge=0, le=2**63 - 1) = 1
    speed: _number(float, gt=0, le=100_000) = 1.0
    ambient_co2_umol_mol: _number(float, gt=0, le=100_000) = 420.0
    soil_temperature_mean_degc: _number(float, ge=-50, le=60) = 15.0
    soil_temperature_amplitude_degc: _number(float, ge=0, le=50) = 5.0
    analyser_noise_umol_mol: _number(float, ge=0, le=1000) = 0.3
    analyser_transport: Literal["pty", "tcp"] = "tcp"
    lid_delay_s: _number(float, ge=0, le=600) = 3.0
    mixing_s: _number(float, ge=0, le=3600) = 3.0
    pressure_kpa: _number(float, ge=30, le=110) = 99.5  # air pressure at the site
    # the analysers' own error: output = offset(t) + gain(t) * true, drifting linearly in
    # time from the site clock's start; per analyser overrides in ``drift``
    span_gain: SpanGain = 1.0
    span_drift_per_day: SpanDrift = 0.0
    zero_offset_umol_mol: ZeroOffset = 0.0
    zero_drift_umol_mol_per_day: ZeroDrift = 0.0
    drift: dict[Identifier, AnalyserDrift] = Field(default_factory=dict, max_length=100)
    # a response that is not straight: the raw reading adds curvature x true^2 before the
    # gain (5e-5 reads 1000 umol/mol 50 high and 450 10 high: the linearity procedure fails)
    co2_curvature_per_umol_mol: _number(float, ge=-1e-3, le=1e-3) = 0.0
    # the gas in the cylinder behind each calibration manifold slot [umol mol-1]
    cylinders: dict[Identifier, _number(float, ge=0, le=1_000_000)] = Field(
        default_factory=dict, max_length=100
    )
    manifold_delay_s: _number(float, ge=0, le=600) = 4.0  # valve to analyser transport
    manifold_purge_s: _number(float, gt=0, le=3600) = 6.0  # e-folding time of the purge
    # trace gases: ambient air, the broker the simulated LI-7810/7820 publish to, and each
    # analyser's true transit lag (default: its configured lag_s)
    ambient_ch4_nmol_mol: _number(float, ge=0, le=1_000_000) = 1950.0
    ambient_n2o_nmol_mol: _number(float, ge=0, le=100_000) = 335.0
    mqtt_broker: Annotated[str, Field(min_length=1, max_length=300)] = "mqtt://127.0.0.1:1883"
    lag_s: dict[Identifier, _number(float, ge=0, le=600)] = Field(
        default_factory=dict, max_length=100
    )


class SiteConfig(_Model):
    site: SiteSection
    storage: StorageSection = StorageSection()
    schedule: ScheduleSection = ScheduleSection()
    cycle: CycleSection = CycleSection()
    analysers: list[AnalyserConfig] = Field(min_length=1, max_length=100)
    modbus: list[ModbusConfig] = Field(default_factory=list, max_length=100)
    chambers: list[ChamberConfig] = Field(min_length=1, max_length=1000)
    aux: list[AuxConfig] = Field(default_factory=list, max_length=1000)
    pump: PumpSection = PumpSection()
    alarms: AlarmSection = AlarmSection()
    sync: SyncSection = SyncSection()
    calibration: CalibrationSection = CalibrationSection()
    web: WebSection = WebSection()
    sim: SimSection = SimSection()

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SiteConfig:
        context = info.context or {}
        problems = _cross_checks(self, check_paths=bool(context.get("check_paths")))
        if problems:
            raise PydanticCustomError(
                "cross_checks", "{count} inconsistencies", {"problems": problems, "count": 0}
            )
        return self

    def chamber(self, chamber_id: str) -> ChamberConfig:
        for chamber in self.chambers:
            if chamber.id == chamber_id:
                return chamber
        raise KeyError(chamber_id)

    def analyser(self, analyser_id: str) -> AnalyserConfig:
        for analyser in self.analysers:
            if analyser.id == analyser_id:
                return analyser
        raise KeyError(analyser_id)

    def modbus_device(self, device_id: str) -> ModbusConfig:
        for device in self.modbus:
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def dead_band_s(self, chamber: ChamberConfig, gas: str | None = None) -> float:
        window = self.cycle.gases.get(gas) if gas is not None else None  # type: ignore[call-overload]
        if window is not None and window.dead_band_s is not None:
            return window.dead_band_s
        return self.cycle.dead_band_s if chamber.dead_band_s is None else chamber.dead_band_s

    def observation_s(self, chamber: ChamberConfig, gas: str | None = None) -> float:
        window = self.cycle.gases.get(gas) if gas is not None else None  # type: ignore[call-overload]
        if window is not None and window.observation_s is not None:
            return window.observation_s
        return self.cycle.observation_s if chamber.observation_s is None else chamber.observation_s


# --- cross-checks: the rules between fields -----------------------------------------------


def _cross_checks(cfg: SiteConfig, *, check_paths: bool = False) -> list[str]:
    """Every inconsistency of a configuration whose fields are each valid, as
    ``path: what is wrong and why`` lines. ``check_paths`` adds the checks of this machine
    (the database folders exist; serial device symlinks resolved)."""
    errors: list[str] = []
    _check_time_zone(cfg, errors)
    _check_ids_and_references(cfg, errors)
    _check_lines(cfg, errors)
    _check_analysers(cfg, errors)
    _check_ports(cfg, errors, resolve=check_paths)
    _check_addresses(cfg, errors, resolve=check_paths)
    _check_chambers(cfg, errors)
    _check_calibration(cfg, errors)
    _check_timing(cfg, errors)
    _check_rounds(cfg, errors)
    if check_paths:
        _check_paths(cfg, errors)
    return list(dict.fromkeys(errors))  # a cycle default shared by chambers: said once


def _check_time_zone(cfg: SiteConfig, errors: list[str]) -> None:
    try:
        zoneinfo.ZoneInfo(cfg.site.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        errors.append(
            f"site.time_zone: unknown time zone {cfg.site.time_zone!r} "
            "(an IANA name such as 'Asia/Shanghai', or 'UTC')"
        )


def _check_ids_and_references(cfg: SiteConfig, errors: list[str]) -> None:
    def unique(name: str, items: Sequence[Any]) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                errors.append(f"{name}[{i}].id: duplicate id {item.id!r}")
            seen.add(item.id)

    unique("analysers", cfg.analysers)
    unique("modbus", cfg.modbus)
    unique("chambers", cfg.chambers)
    unique("aux", cfg.aux)
    analysers = {a.id for a in cfg.analysers}
    devices = {m.id for m in cfg.modbus}
    chambers = {c.id for c in cfg.chambers}
    loops: dict[str, tuple[int, list[str]]] = {}
    for i, c in enumerate(cfg.chambers):
        if c.analyser not in analysers:
            errors.append(f"chambers[{i}].analyser: no analyser with id {c.analyser!r}")
        if c.analysers is not None:
            if c.analysers[0] != c.analyser:
                errors.append(
                    f"chambers[{i}].analyser: {c.analyser!r} is not the first of analysers "
                    f"{c.analysers!r} (give one of the two, or the same first analyser)"
                )
            if len(set(c.analysers)) != len(c.analysers):
                errors.append(f"chambers[{i}].analysers: an analyser is listed twice")
            for name in c.analysers[1:]:
                if name not in analysers:
                    errors.append(f"chambers[{i}].analysers: no analyser with id {name!r}")
        # one loop per group: chambers sharing an analyser share all of its loop
        for name in c.loop:
            seen = loops.setdefault(name, (i, c.loop))
            if seen[1] != c.loop:
                errors.append(
                    f"chambers[{i}].analysers: analyser {name!r} is in the loop "
                    f"{seen[1]!r} of chambers[{seen[0]}]; chambers sharing an analyser "
                    f"share its whole loop (got {c.loop!r})"
                )
                break
        for name, ref in _refs(c):
            if ref.device not in devices:
                errors.append(
                    f"chambers[{i}].{name}.device: no modbus device with id {ref.device!r}"
                )
    for i, a in enumerate(cfg.aux):
        if a.device not in devices:
            errors.append(f"aux[{i}].device: no modbus device with id {a.device!r}")
        if a.chamber is not None and a.chamber not in chambers:
            errors.append(f"aux[{i}].chamber: no chamber with id {a.chamber!r}")
    for i, a in enumerate(cfg.analysers):
        if a.power is not None and a.power.device not in devices:
            errors.append(
                f"analysers[{i}].power.device: no modbus device with id {a.power.device!r}"
            )
    if cfg.pump.coil is not None and cfg.pump.coil.device not in devices:
        errors.append(f"pump.coil.device: no modbus device with id {cfg.pump.coil.device!r}")
    for i, slot in enumerate(cfg.calibration.manifold):
        if slot.coil.device not in devices:
            errors.append(
                f"calibration.manifold[{i}].coil.device: no modbus device with id "
                f"{slot.coil.device!r}"
            )


def mqtt_endpoint(port: str) -> tuple[str, int] | None:
    """(host, port) of ``mqtt://host[:port]`` (port 1883 by default); None if not one."""
    scheme, sep, rest = port.partition("://")
    if not sep or scheme.lower() != "mqtt":
        return None
    rest = rest.rstrip("/")
    try:
        parts = urlsplit("//" + rest)
        number = parts.port or 1883
    except ValueError:
        return None
    host = parts.hostname
    if not host or not _valid_host(host) or parts.path or parts.query:
        return None
    return host.lower(), number


def _check_analysers(cfg: SiteConfig, errors: list[str]) -> None:
    """Each protocol's own fields: an MQTT broker for the LI-7810/7820, species for a
    Picarro, no MQTT URL for a serial protocol."""
    for i, a in enumerate(cfg.analysers):
        where = f"analysers[{i}]"
        is_mqtt = a.port.lower().startswith("mqtt://")
        if a.protocol in MQTT_PROTOCOLS:
            if mqtt_endpoint(a.port) is None:
                errors.append(
                    f"{where}.port: protocol {a.protocol!r} reads the analyser's MQTT broker: "
                    "give mqtt://host:port (e.g. mqtt://192.168.10.1:1883)"
                )
            if a.baudrate is not None:
                errors.append(f"{where}.baudrate: not used with protocol {a.protocol!r} (MQTT)")
        elif is_mqtt and a.protocol != "memory":
            errors.append(
                f"{where}.port: protocol {a.protocol!r} talks over a serial port or socket://, "
                "not an MQTT broker (mqtt:// is for li7810 and li7820)"
            )
        if a.topic_root != "licor/niobrara" and a.protocol not in MQTT_PROTOCOLS:
            errors.append(f"{where}.topic_root: only used with protocols li7810 and li7820")
        if a.protocol == "picarro":
            if not a.species:
                errors.append(
                    f"{where}.species: required for protocol 'picarro': the columns its "
                    'command interface reports, in order (e.g. ["N2O_dry", "CO2_dry", '
                    '"CH4_dry", "H2O"])'
                )
            elif len(set(a.species)) != len(a.species):
                errors.append(f"{where}.species: a species is listed twice")
            elif not {"CO2", "CO2_dry", "CH4", "CH4_dry", "N2O", "N2O_dry"} & set(a.species):
                errors.append(f"{where}.species: lists no CO2, CH4 or N2O species")
        elif a.species and a.protocol != "memory":  # memory: what the fake analyser reports
            errors.append(f"{where}.species: only used with protocol 'picarro'")
    for name in cfg.sim.lag_s:
        if name not in {a.id for a in cfg.analysers}:
            errors.append(f"sim.lag_s.{name}: no analyser with id {name!r}")
    if mqtt_endpoint(cfg.sim.mqtt_broker) is None:
        errors.append("sim.mqtt_broker: give mqtt://host:port (e.g. mqtt://127.0.0.1:1883)")


def _refs(chamber: ChamberConfig) -> list[tuple[str, CoilRef | InputRef]]:
    refs = [
        ("lid", chamber.lid),
        ("closed_switch", chamber.closed_switch),
        ("open_switch", chamber.open_switch),
        ("valve", chamber.valve),
    ]
    return [(name, ref) for name, ref in refs if ref is not None]


def _check_lines(cfg: SiteConfig, errors: list[str]) -> None:
    for i, m in enumerate(cfg.modbus):
        if m.framing == "rtu":
            if not m.port:
                errors.append(f"modbus[{i}].port: required for framing 'rtu'")
            if m.host is not None:
                errors.append(
                    f"modbus[{i}].host: not used with framing 'rtu' (the line is its serial "
                    "port; for RTU frames through a serial server use framing 'rtu-over-tcp')"
                )
        else:
            if not m.host:
                errors.append(f"modbus[{i}].host: required for framing '{m.framing}'")
            if m.port is not None:
                errors.append(
                    f"modbus[{i}].port: not used with framing '{m.framing}' "
                    "(give host and tcp_port)"
                )


def _device_path(path: str, resolve: bool) -> str:
    if re.fullmatch(r"(?i)com\d+", path):  # Windows port names ignore case
        return path.upper()
    if resolve:
        try:
            return os.path.realpath(path)  # /dev/serial/by-id/... -> /dev/ttyUSB0
        except (OSError, ValueError):
            pass
    return posixpath.normpath(path) if path.startswith("/") else path


def _serial_endpoint(port: str, resolve: bool) -> tuple[Any, ...] | None:
    """What opening ``port`` reaches, so two devices sharing one can be told: ``("tcp",
    host, port)`` for a serial server (``socket://``, ``rfc2217://``), ``("serial", path)``
    for a local device; None for URLs opening a channel of their own (``loop://``) or
    unknown here."""
    scheme, sep, rest = port.partition("://")
    if not sep:
        return ("serial", _device_path(port, resolve))
    if scheme in ("socket", "rfc2217"):
        try:
            return ("tcp", *_host_port(rest))
        except ValueError:
            return None  # refused by the field itself
    if scheme == "spy":  # spy://PORT?options wraps another port
        return _serial_endpoint(rest.partition("?")[0], resolve)
    return None


def _line_endpoint(m: ModbusConfig, resolve: bool) -> tuple[Any, ...] | None:
    if m.framing == "rtu":
        return _serial_endpoint(m.port, resolve) if m.port else None
    return ("tcp", m.host.strip("[]").lower(), m.tcp_port) if m.host else None


def _check_ports(cfg: SiteConfig, errors: list[str], *, resolve: bool) -> None:
    """A serial port, or a serial server's TCP port, carries one device stream: two
    analysers, an analyser and a Modbus line, or two Modbus RTU lines cannot share one. A
    Modbus TCP gateway serves many lines, as long as they address different devices."""
    users: dict[tuple[Any, ...], list[tuple[str, str, int | None]]] = {}
    for i, a in enumerate(cfg.analysers):
        if a.protocol in MQTT_PROTOCOLS:
            broker = mqtt_endpoint(a.port)
            ep = None if broker is None else ("mqtt", *broker, a.topic_root)
            if ep is not None and ep in users:
                other = users[ep][0][0]
                errors.append(
                    f"analysers[{i}].topic_root: {a.topic_root!r} on {a.port!r} is already "
                    f"the stream of {other}: two analysers would read one instrument's data"
                )
            if ep is not None:
                users.setdefault(ep, []).append((f"analysers[{i}] ({a.id!r})", "mqtt", None))
            continue
        ep = None if a.protocol == "memory" else _serial_endpoint(a.port, resolve)
        if ep is None:  # an in-memory analyser opens no port
            continue
        if ep in users:
            other = users[ep][0][0]
            errors.append(
                f"analysers[{i}].port: {a.port!r} is already the port of {other}: "
                "a serial port (or a serial server's TCP port) carries one device's stream"
            )
        users.setdefault(ep, []).append((f"analysers[{i}] ({a.id!r})", "analyser", None))
    for i, m in enumerate(cfg.modbus):
        ep = _line_endpoint(m, resolve)
        if ep is None:
            continue
        kind = "modbus-tcp" if m.framing == "tcp" else "exclusive"
        field, shown = (
            ("port", repr(m.port)) if m.framing == "rtu" else ("host", f"{m.host}:{m.tcp_port}")
        )
        for other, other_kind, other_id in users.get(ep, []):
            if kind == other_kind == "modbus-tcp":
                if other_id == m.device_id:
                    errors.append(
                        f"modbus[{i}].device_id: {m.host}:{m.tcp_port} device {m.device_id} "
                        f"is already {other}: two lines would address one device (use one "
                        "line; a reference can name another device_id)"
                    )
                    break
                continue
            if other_kind == "analyser" or (kind == "exclusive" and other_kind == "exclusive"):
                hint = (
                    "a serial port (or a serial server's TCP port) carries one device's stream"
                    if other_kind == "analyser"
                    else "put the boards on one [[modbus]] line and give each reference "
                    "its device_id"
                )
            else:
                hint = "Modbus TCP and RTU frames cannot share one TCP port"
            errors.append(f"modbus[{i}].{field}: {shown} is already the port of {other}: {hint}")
            break
        users.setdefault(ep, []).append((f"modbus[{i}] ({m.id!r})", kind, m.device_id))


def _check_addresses(cfg: SiteConfig, errors: list[str], *, resolve: bool) -> None:
    """Each coil, holding register, discrete input of a device has one use. A device is
    (where its line reaches, the reference's device_id or its line's default)."""
    lines = {m.id: m for m in cfg.modbus}

    def device(ref: CoilRef | InputRef | AuxConfig) -> tuple[Any, int, str] | None:
        line = lines.get(ref.device)
        if line is None:
            return None  # reported as an unknown device
        unit = line.device_id if ref.device_id is None else ref.device_id
        where = _line_endpoint(line, resolve) or ("line", line.id)
        return where, unit, f"device {line.id!r} (id {unit})"

    used: dict[tuple[Any, ...], str] = {}
    relay_registers: dict[tuple[Any, ...], str] = {}

    def claim(where: str, ref: CoilRef | InputRef) -> None:
        dev = device(ref)
        if dev is None:
            return
        if isinstance(ref, CoilRef):
            space = "holding register" if ref.style == "register" else "coil"
            number = ref.coil
        else:
            space, number = "input", ref.input
        key = (dev[0], dev[1], space, number)
        if key in used:
            errors.append(f"{where}: {space} {number} of {dev[2]} is already {used[key]}")
            return
        used[key] = where
        if space == "holding register":
            relay_registers[key] = where

    if cfg.pump.coil is not None:
        claim("pump.coil", cfg.pump.coil)
    for i, c in enumerate(cfg.chambers):
        for name, ref in _refs(c):
            claim(f"chambers[{i}].{name}", ref)
    for i, slot in enumerate(cfg.calibration.manifold):
        claim(f"calibration.manifold[{i}].coil", slot.coil)
    for i, analyser in enumerate(cfg.analysers):
        if analyser.power is not None:
            claim(f"analysers[{i}].power", analyser.power)
    for i, a in enumerate(cfg.aux):
        width = REGISTER_WIDTH[a.datatype]
        if a.address + width > 65536:
            errors.append(
                f"aux[{i}].address: {a.address} + {width} registers of {a.datatype} "
                "runs past register 65535"
            )
            continue
        dev = device(a)
        if dev is None or a.table != "holding":
            continue
        for register in range(a.address, a.address + width):
            relay = relay_registers.get((dev[0], dev[1], "holding register", register))
            if relay is not None:
                errors.append(
                    f"aux[{i}].address: holding register {register} of {dev[2]} is "
                    f"{relay}'s relay register, not a sensor"
                )


def _check_chambers(cfg: SiteConfig, errors: list[str]) -> None:
    analysers = {a.id: a for a in cfg.analysers}
    for i, c in enumerate(cfg.chambers):
        where = f"chambers[{i}]"
        dates = [g.since for g in c.geometry]
        if len(set(dates)) != len(dates):
            errors.append(f"{where}.geometry: two versions start on the same day")
        for k, g in enumerate(c.geometry):
            height = g.volume_cm3 / g.area_cm2
            if not MIN_HEIGHT_CM <= height <= MAX_HEIGHT_CM:
                tall = f"{height:.3g}" if height < 1000 else f"{height:.0f}"
                errors.append(
                    f"{where}.geometry[{k}]: volume_cm3 {g.volume_cm3:g} over area_cm2 "
                    f"{g.area_cm2:g} makes the chamber {tall} cm tall; chambers are "
                    f"{MIN_HEIGHT_CM:g} to {MAX_HEIGHT_CM:g} cm tall (are the units cm3 "
                    "and cm2?)"
                )
            collar = g.area_cm2 * g.offset_cm
            if collar > g.volume_cm3:
                errors.append(
                    f"{where}.geometry[{k}].offset_cm: the collar's headspace alone "
                    f"(area_cm2 x offset_cm = {collar:g} cm3) is larger than volume_cm3 "
                    f"{g.volume_cm3:g}, the total volume that includes it"
                )
        dead_band, observation = cfg.dead_band_s(c), cfg.observation_s(c)
        # name the chamber when it overrides a length, else the cycle's default
        own = c.dead_band_s is not None or c.observation_s is not None
        section = where if own else "cycle"
        if dead_band + 10 >= observation:
            errors.append(
                f"{section}.dead_band_s: {dead_band:g} s leaves fewer than 10 s of the "
                f"{observation:g} s observation to fit"
            )
            continue
        analyser = analysers.get(c.analyser)
        if analyser is None:
            continue
        readings = (observation - dead_band) / analyser.output_interval_s
        if readings < MIN_FIT_READINGS:
            errors.append(
                f"{section}.observation_s: the fit window ({observation - dead_band:g} s "
                f"after the {dead_band:g} s dead band) holds only {int(readings)} readings "
                f"of analyser {analyser.id!r} (output_interval_s "
                f"{analyser.output_interval_s:g}); the fit needs at least {MIN_FIT_READINGS}"
            )


def _check_calibration(cfg: SiteConfig, errors: list[str]) -> None:
    """Manifold slots unique, automatic checks and sim cylinders naming real slots."""
    calibration = cfg.calibration
    analysers = {a.id for a in cfg.analysers}
    slots: set[str] = set()
    for i, slot in enumerate(calibration.manifold):
        if slot.slot in slots:
            errors.append(f"calibration.manifold[{i}].slot: duplicate slot {slot.slot!r}")
        slots.add(slot.slot)
        for k, analyser in enumerate(slot.analysers):
            if analyser not in analysers:
                errors.append(
                    f"calibration.manifold[{i}].analysers[{k}]: no analyser with id {analyser!r}"
                )
    auto = calibration.automatic
    if auto is not None:
        if auto.analyser not in analysers:
            errors.append(f"calibration.automatic.analyser: no analyser with id {auto.analyser!r}")
        if auto.zero_slot is None and not auto.span_slots:
            errors.append(
                "calibration.automatic: give zero_slot or span_slots (a check needs a gas)"
            )
        if auto.zero_slot is not None and auto.zero_slot not in slots:
            errors.append(
                f"calibration.automatic.zero_slot: no calibration.manifold slot {auto.zero_slot!r}"
            )
        for k, slot_id in enumerate(auto.span_slots):
            if slot_id not in slots:
                errors.append(
                    f"calibration.automatic.span_slots[{k}]: no calibration.manifold slot "
                    f"{slot_id!r}"
                )
    for slot_id in cfg.sim.cylinders:
        if slot_id not in slots:
            errors.append(f"sim.cylinders.{slot_id}: no calibration.manifold slot {slot_id!r}")
    for analyser in cfg.sim.drift:
        if analyser not in analysers:
            errors.append(f"sim.drift.{analyser}: no analyser with id {analyser!r}")


def _check_timing(cfg: SiteConfig, errors: list[str]) -> None:
    cycle = cfg.cycle
    for a in cfg.analysers:
        if cycle.analyser_silent_s < 2 * a.output_interval_s:
            errors.append(
                f"cycle.analyser_silent_s: {cycle.analyser_silent_s:g} s is less than twice "
                f"the output interval of analyser {a.id!r} ({a.output_interval_s:g} s): one "
                "late line would abort a closure as 'analyser silent'"
            )
    lines = {m.id: m for m in cfg.modbus}
    polled: dict[str, ModbusConfig] = {}  # lines commanded and read while lids move
    for c in cfg.chambers:
        for name, ref in _refs(c):
            if name != "valve" and ref.device in lines:
                polled.setdefault(ref.device, lines[ref.device])
    for name in ("closing_timeout_s", "opening_timeout_s"):
        limit = getattr(cycle, name)
        for line in polled.values():
            request = line.timeout_s * (1 + line.retries)
            if limit < request:
                errors.append(
                    f"cycle.{name}: {limit:g} s is shorter than one request to Modbus line "
                    f"{line.id!r} may take (timeout_s {line.timeout_s:g} s x (1 + retries "
                    f"{line.retries}) = {request:g} s): one slow reply would fail the lid"
                )


def _check_rounds(cfg: SiteConfig, errors: list[str]) -> None:
    """Chambers sharing an analyser are measured one after the other; analyser groups run
    in parallel. A round must fit its interval when every lid confirms at once (a chamber
    without a closed switch always waits closing_timeout_s), and, with every lid slow
    (both timeouts in full), within the interval plus the misfire grace: beyond it the
    next round would be missed."""
    schedule, cycle = cfg.schedule, cfg.cycle
    interval_s = schedule.interval_min * 60
    if schedule.offset_min >= schedule.interval_min:
        errors.append(
            f"schedule.offset_min: {schedule.offset_min} min must be less than interval_min "
            f"({schedule.interval_min} min): rounds start every interval_min from local "
            "midnight plus offset_min"
        )
    for a in cfg.analysers:
        group = [c for c in cfg.chambers if c.enabled and c.analyser == a.id]
        # an analyser on a power relay warms up before the group's first chamber
        loop = group[0].loop if group else []
        least = most = max(
            (x.warmup_s for x in cfg.analysers if x.id in loop and x.power is not None),
            default=0.0,
        )
        for c in group:
            window = max(cfg.observation_s(c, g) for g in ("co2", "ch4", "n2o"))
            lag = max((x.lag_s for x in cfg.analysers if x.id in c.loop), default=0.0)
            phases = cycle.prepurge_s + window + lag + cycle.postpurge_s
            least += phases + (cycle.closing_timeout_s if c.closed_switch is None else 0.0)
            most += phases + cycle.closing_timeout_s
            most += cycle.opening_timeout_s if c.open_switch is not None else 0.0
        n = f"{len(group)} chamber{'s' if len(group) != 1 else ''} in sequence"
        if least > interval_s:
            errors.append(
                f"schedule.interval_min: a round of analyser {a.id!r} ({n}) takes at least "
                f"{least:g} s (prepurge_s + observation_s + postpurge_s of each, and "
                f"closing_timeout_s where no closed_switch confirms) but rounds start every "
                f"{interval_s} s: lengthen interval_min, shorten the phases or move chambers "
                "to another analyser"
            )
        elif most > interval_s + schedule.misfire_grace_s:
            errors.append(
                f"schedule.interval_min: a round of analyser {a.id!r} ({n}) takes up to "
                f"{most:g} s when lids are slow (closing_timeout_s and opening_timeout_s in "
                f"full), more than the {interval_s} s interval plus the "
                f"{schedule.misfire_grace_s:g} s misfire grace: the next round would be "
                "missed; lengthen interval_min or misfire_grace_s, or shorten the timeouts"
            )


def _file_problem(path: str) -> str | None:
    """Why a database file cannot be at ``path``: it may be missing, its folder must exist."""
    target = Path(path)
    try:
        if target.is_dir():
            return f"{path} is a folder; give the database file's path, e.g. {target / 'site.db'}"
        if target.exists() and not target.is_file():
            return f"{path} exists but is not a file"
        folder = target.resolve().parent
        if not folder.exists():
            return (
                f"folder {folder} does not exist: create it first (a missing folder is taken "
                "for a typo, not created)"
            )
        if not folder.is_dir():
            return f"{folder} is not a folder"
    except (OSError, ValueError) as exc:
        return f"cannot be checked: {exc}"
    return None


def _check_paths(cfg: SiteConfig, errors: list[str]) -> None:
    hint = "; for a configuration meant for another machine: check-config --no-path-checks"
    problem = _file_problem(cfg.storage.path)
    if problem:
        errors.append(f"storage.path: {problem}" + (hint if "does not exist" in problem else ""))
    target = cfg.sync.target
    if target and target.startswith("sqlite:///"):
        problem = _file_problem(target[len("sqlite:///") :])
        if problem:
            errors.append(f"sync.target: {problem}")


# --- loading -------------------------------------------------------------------------------


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # an error in a table's key: the key itself names the field
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", text):  # a quoted TOML key: show it quoted
            text = json.dumps(text[:60] + ("..." if len(text) > 60 else ""))
        out += f".{text}" if out else text
    return out or "(top level)"


def _n(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# the bounds' reasons, after "must be <= ..." where a number alone would not say why
_WHY = {
    "device_id": "a Modbus device id is 1 to 247; 0 is the broadcast address, which no "
    "device answers",
    "area_cm2": "1 cm2 to 10 m2",
    "volume_cm3": "10 cm3 to 1 m3, the total system volume",
    "offset_cm": "the collar's height above the soil, 0 to 100 cm",
    "observation_s": "a closure of at most 1 h",
    "closing_timeout_s": "a lid moves in 1 s to 10 min",
    "opening_timeout_s": "a lid moves in 1 s to 10 min",
    "since": "a date from 1970 to 2100",
    "coil": "Modbus addresses are 0 to 65535",
    "input": "Modbus addresses are 0 to 65535",
    "address": "Modbus addresses are 0 to 65535",
    "tcp_port": "a TCP port is 1 to 65535",
}

_MESSAGES = {
    "greater_than": lambda c: f"must be > {_n(c.get('gt'))}",
    "greater_than_equal": lambda c: f"must be >= {_n(c.get('ge'))}",
    "less_than": lambda c: f"must be < {_n(c.get('lt'))}",
    "less_than_equal": lambda c: f"must be <= {_n(c.get('le'))}",
    "finite_number": lambda c: "must be finite (not inf or nan)",
    "extra_forbidden": lambda c: "unknown key",
    "missing": lambda c: "required",
    "literal_error": lambda c: f"must be one of {c.get('expected')}",
    "too_short": lambda c: f"needs at least {c.get('min_length')} item(s)",
    "too_long": lambda c: f"at most {c.get('max_length')} items",
    "string_too_short": lambda c: "must not be empty",
    "string_too_long": lambda c: f"at most {c.get('max_length')} characters",
    "string_pattern_mismatch": lambda c: "may contain only letters, digits, '_', '.', '-'",
    "string_type": lambda c: "must be a string (in quotes)",
    "bool_type": lambda c: "must be true or false",
    "bool_parsing": lambda c: "must be true or false",
    "int_type": lambda c: "must be a whole number",
    "int_parsing": lambda c: "must be a whole number",
    "int_from_float": lambda c: "must be a whole number",
    "float_type": lambda c: "must be a number",
    "float_parsing": lambda c: "must be a number",
    "date_type": lambda c: "must be a date (YYYY-MM-DD)",
    "date_parsing": lambda c: "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": lambda c: "must be a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": lambda c: "must be a date without a time (YYYY-MM-DD)",
    "model_type": lambda c: "must be a table ({ key = value, ... })",
    "model_attributes_type": lambda c: "must be a table ({ key = value, ... })",
    "dict_type": lambda c: "must be a table ({ key = value, ... })",
    "list_type": lambda c: "must be a list ([ ... ])",
}

_RANGES = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _format(error: Mapping[str, Any]) -> str:
    maker = _MESSAGES.get(error["type"])
    message = maker(error.get("ctx") or {}) if maker else str(error["msg"])
    message = message.removeprefix("Value error, ")
    loc = error["loc"]
    why = _WHY.get(str(loc[-1])) if loc and error["type"] in _RANGES else None
    return f"{_path(loc)}: {message}" + (f" ({why})" if why else "")


def _problems(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        if error["type"] == "cross_checks":
            lines += error["ctx"]["problems"]
        else:
            lines.append(_format(error))
    return lines


def parse_config(
    data: Mapping[str, Any], *, source: str = "<config>", check_paths: bool = False
) -> SiteConfig:
    """Validate a configuration mapping; :class:`ConfigError` lists every problem.

    ``check_paths`` also checks this machine: ``storage.path`` and a ``sqlite:///`` sync
    target are not folders and their folders exist (relative paths: from the current
    folder; :func:`load_config` makes ``storage.path`` relative to the file).
    """
    try:
        return SiteConfig.model_validate(dict(data), context={"check_paths": check_paths})
    except ValidationError as exc:
        lines = _problems(exc)
        raise ConfigError(f"{source}: {len(lines)} error(s)\n  " + "\n  ".join(lines)) from None


def _has_surrogates(text: str) -> bool:
    # undecodable bytes in an environment variable or an argument (surrogateescape)
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _set_path(data: dict[str, Any], dotted: str, raw: str, origin: str) -> None:
    if _has_surrogates(dotted) or _has_surrogates(raw):
        raise ConfigError(f"{origin}: not valid UTF-8 text")
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{origin}: empty name in {dotted!r} (expected section.key)")
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        value: Any = raw  # a bare string
    except ValueError:  # an integer of more digits than Python converts
        raise ConfigError(
            f"{origin}: a number of more than {sys.get_int_max_str_digits()} digits"
        ) from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply") from None
    else:
        value = parsed["v"] if parsed.keys() == {"v"} else raw
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise ConfigError(f"{origin}: no list item {part!r} in {dotted!r}") from None
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"{origin}: {dotted!r} does not name a section")
    if isinstance(node, list):
        raise ConfigError(f"{origin}: {dotted!r} ends in a list")
    node[parts[-1]] = value


MAX_CONFIG_BYTES = 10_000_000  # a site of 1000 chambers is ~1 MB of TOML


def _read_text(path_text: str) -> str:
    try:
        with open(path_text, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path_text}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path_text}: larger than {MAX_CONFIG_BYTES // 1_000_000} MB: not a site configuration"
        )
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some editors write
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.end].hex(" ")
        raise ConfigError(
            f"{path_text}: line {line}, column {column}: not UTF-8 text (bytes {bad}); "
            "save the file as UTF-8"
        ) from None


def _parse_toml(text: str, path_text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path_text}: {exc}") from None
    except ValueError:  # an integer of more digits than Python converts
        limit = sys.get_int_max_str_digits()
        found = re.search(rf"\d{{{limit + 1},}}", text)
        line = text.count("\n", 0, found.start()) + 1 if found else 0
        raise ConfigError(
            f"{path_text}: line {line}: a number of more than {limit} digits"
        ) from None
    except RecursionError:
        raise ConfigError(f"{path_text}: arrays or tables nested too deeply to read") from None


def load_config(
    path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> SiteConfig:
    """Read ``site.toml``, apply environment and command-line overrides, validate.

    Environment variables ``CHAMBERD__SECTION__KEY=value`` and overrides ``section.key=value``
    (list items by index: ``chambers.0.enabled=false``) take TOML literals, or bare strings.
    A relative ``storage.path`` is taken relative to the configuration file's folder.
    ``check_paths`` (the default) checks that the database folders exist on this machine
    (see :func:`parse_config`).

    Raises
    ------
    ConfigError
        Naming the file and line for unreadable bytes and TOML syntax errors, and every
        invalid field otherwise.
    """
    path_text = os.fspath(path)
    data = _parse_toml(_read_text(path_text), path_text)
    env = os.environ if environ is None else environ
    for key, value in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_path(data, dotted, value, f"{path_text}: environment {key}")
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{path_text}: --set {item!r}: expected section.key=value")
        _set_path(data, name.strip(), value.strip(), f"{path_text}: --set {item!r}")
    storage = data.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("path"), str) and storage["path"]:
        # a relative database path is relative to the configuration file, not to wherever
        # the daemon was started from
        try:
            db = Path(storage["path"]).expanduser()
        except RuntimeError:  # ~user of no such user
            raise ConfigError(
                f"{path_text}: storage.path: cannot expand {storage['path']!r} (no such user)"
            ) from None
        if not db.is_absolute():
            storage["path"] = str(Path(path_text).resolve().parent / db)
    return parse_config(data, source=path_text, check_paths=check_paths)


def config_hash(cfg: SiteConfig) -> str:
    """SHA-256 (first 16 hex digits) of the resolved configuration."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- writing -------------------------------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_SHORT_ESCAPES |= {"\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string, ASCII only: \\uXXXX for the rest of the BMP, \\UXXXXXXXX beyond
    it (json.dumps would write surrogate pairs, which TOML refuses), every control
    character escaped (DEL included)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif 0xD800 <= code <= 0xDFFF:
            raise ChamberError(f"cannot write {text!r} as TOML: a lone surrogate")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    return _toml_string(str(value))


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one (a '.' would make it a dotted key), else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def to_toml(cfg: SiteConfig) -> str:
    """The resolved configuration as TOML (defaults filled in); loads back to ``cfg``."""
    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    plain: list[str] = []  # before any table header, or they would land in the last table
    tables: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{key}]]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            plain.append(f"{key} = {_toml_value(value)}")
    return "\n".join(plain + tables).strip() + "\n"
