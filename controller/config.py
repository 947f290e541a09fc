"""The one configuration schema of a site: ``site.toml``.

Loaded with :func:`load_config` (defaults < file < environment < command line), validated
with pydantic: unknown keys are rejected and every error is reported at once with its path
(``chambers[3].geometry[0].volume_cm3: must be > 0``). Cross references (a chamber's
analyser, a lid's Modbus device, an aux sensor's chamber) are checked after the fields.
:func:`config_hash` fingerprints the resolved configuration; every observation records it.

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

See ``docs/examples/`` for complete configurations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tomllib
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

__all__ = [
    "AnalyserConfig",
    "AuxConfig",
    "ChamberConfig",
    "CoilRef",
    "GeometryVersion",
    "InputRef",
    "ModbusConfig",
    "SiteConfig",
    "config_hash",
    "load_config",
    "parse_config",
    "to_toml",
]

ENV_PREFIX = "CHAMBERD__"

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SiteSection(_Model):
    id: Identifier
    name: str = ""
    time_zone: str = "UTC"
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class StorageSection(_Model):
    path: str = "site.db"
    keep_samples_days: int | None = Field(default=None, gt=0)


class ScheduleSection(_Model):
    interval_min: int = Field(default=30, gt=0, le=1440)
    offset_min: int = Field(default=0, ge=0)
    misfire_grace_s: PositiveFloat = 300.0
    enabled: bool = True


class CycleSection(_Model):
    """Phase durations and fault thresholds, defaults for every chamber."""

    prepurge_s: NonNegativeFloat = 30.0
    closing_timeout_s: PositiveFloat = 30.0
    dead_band_s: NonNegativeFloat = 20.0
    observation_s: PositiveFloat = 120.0
    opening_timeout_s: PositiveFloat = 30.0
    postpurge_s: NonNegativeFloat = 30.0
    sample_interval_s: PositiveFloat = 1.0
    analyser_silent_s: PositiveFloat = 10.0
    max_failures: int = Field(default=3, gt=0)
    retry_after_min: PositiveFloat = 120.0


Protocol = Literal["li820", "li830", "li840a", "li850", "gmp343", "memory"]


class AnalyserConfig(_Model):
    id: Identifier
    protocol: Protocol
    port: str = Field(min_length=1)
    baudrate: int | None = Field(default=None, gt=0)
    timeout_s: PositiveFloat = 3.0
    precision_co2_umol_mol: PositiveFloat = 1.0
    output_interval_s: PositiveFloat = 1.0


class ModbusConfig(_Model):
    id: Identifier
    framing: Literal["rtu", "tcp", "rtu-over-tcp"]
    port: str | None = None  # serial URL for rtu
    host: str | None = None  # for tcp and rtu-over-tcp
    tcp_port: int = Field(default=502, gt=0, lt=65536)
    device_id: int = Field(default=1, ge=0, le=247)
    baudrate: int = Field(default=9600, gt=0)
    timeout_s: PositiveFloat = 1.0
    retries: int = Field(default=2, ge=0, le=10)


class CoilRef(_Model):
    """A relay: a coil (FC05) or, for register-style boards, a holding register (FC06)."""

    device: Identifier
    coil: int = Field(ge=0, le=65535)
    device_id: int | None = Field(default=None, ge=0, le=247)
    style: Literal["coil", "register"] = "coil"
    active_closes: bool = True  # coil on = lid closed (False: normally-closed wiring)


class InputRef(_Model):
    """An end-switch: a discrete input (FC02), true when the switch is made."""

    device: Identifier
    input: int = Field(ge=0, le=65535)
    device_id: int | None = Field(default=None, ge=0, le=247)
    active_high: bool = True


class GeometryVersion(_Model):
    """Chamber geometry valid from ``since`` (collars get re-installed, litter builds up)."""

    since: dt.date
    area_cm2: PositiveFloat
    volume_cm3: PositiveFloat  # total system volume
    offset_cm: NonNegativeFloat = 0.0


class ChamberSim(_Model):
    """Soil and chamber behaviour of this chamber in the simulated site."""

    r10_umol_m2_s: PositiveFloat = 2.0
    q10: PositiveFloat = 2.0
    saturation_per_s: NonNegativeFloat = 0.004  # curvature of the headspace rise
    h2o_flux_mmol_m2_s: NonNegativeFloat = 0.02


class ChamberConfig(_Model):
    id: Identifier
    label: str = ""
    analyser: Identifier
    lid: CoilRef
    closed_switch: InputRef | None = None
    open_switch: InputRef | None = None
    valve: CoilRef | None = None
    geometry: list[GeometryVersion] = Field(min_length=1)
    dead_band_s: NonNegativeFloat | None = None
    observation_s: PositiveFloat | None = None
    enabled: bool = True
    sim: ChamberSim = ChamberSim()

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
    device_id: int | None = Field(default=None, ge=0, le=247)
    quantity: Quantity
    chamber: Identifier | None = None
    table: Literal["input", "holding"] = Field(default="input", alias="register")
    address: int = Field(ge=0, le=65535)
    datatype: Literal["int16", "uint16", "int32", "uint32", "float32"] = "int16"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0


class PumpSection(_Model):
    coil: CoilRef | None = None
    mode: Literal["always", "measuring", "off"] = "measuring"


class AlarmSection(_Model):
    command: str | None = None  # receives each alarm as one JSON object on stdin
    timeout_s: PositiveFloat = 10.0


class SyncSection(_Model):
    """Upload to the shared intercomparison database (``chamberd sync``, and the daemon)."""

    target: str | None = None  # sqlite:///path or postgresql://user@host/db
    system: Identifier = "chamberd"  # this measurement system's id at the central side
    instrument: str = "automated chambers"
    method: str = "chamberd"
    owner: str = ""
    interval_min: PositiveFloat | None = None  # the daemon uploads this often (none: off)
    batch_size: int = Field(default=500, gt=0, le=100000)
    include_samples: bool = True
    max_skew_s: PositiveFloat = 120.0


class SimSection(_Model):
    """The simulated site (``chamberd sim`` and ``chamberd demo`` only)."""

    seed: int = 1
    speed: PositiveFloat = 1.0
    ambient_co2_umol_mol: PositiveFloat = 420.0
    soil_temperature_mean_degc: float = 15.0
    soil_temperature_amplitude_degc: NonNegativeFloat = 5.0
    analyser_noise_umol_mol: NonNegativeFloat = 0.3
    analyser_transport: Literal["pty", "tcp"] = "tcp"
    lid_delay_s: NonNegativeFloat = 3.0
    mixing_s: NonNegativeFloat = 3.0


class SiteConfig(_Model):
    site: SiteSection
    storage: StorageSection = StorageSection()
    schedule: ScheduleSection = ScheduleSection()
    cycle: CycleSection = CycleSection()
    analysers: list[AnalyserConfig] = Field(min_length=1)
    modbus: list[ModbusConfig] = Field(default_factory=list)
    chambers: list[ChamberConfig] = Field(min_length=1)
    aux: list[AuxConfig] = Field(default_factory=list)
    pump: PumpSection = PumpSection()
    alarms: AlarmSection = AlarmSection()
    sync: SyncSection = SyncSection()
    sim: SimSection = SimSection()

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

    def dead_band_s(self, chamber: ChamberConfig) -> float:
        return self.cycle.dead_band_s if chamber.dead_band_s is None else chamber.dead_band_s

    def observation_s(self, chamber: ChamberConfig) -> float:
        return self.cycle.observation_s if chamber.observation_s is None else chamber.observation_s


# --- loading -------------------------------------------------------------------------------


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_MESSAGES = {
    "greater_than": lambda c: f"must be > {c.get('gt')}",
    "greater_than_equal": lambda c: f"must be >= {c.get('ge')}",
    "less_than": lambda c: f"must be < {c.get('lt')}",
    "less_than_equal": lambda c: f"must be <= {c.get('le')}",
    "extra_forbidden": lambda c: "unknown key",
    "missing": lambda c: "required",
    "literal_error": lambda c: f"must be one of {c.get('expected')}",
    "too_short": lambda c: f"needs at least {c.get('min_length')} item(s)",
    "string_too_short": lambda c: "must not be empty",
    "string_pattern_mismatch": lambda c: "may contain only letters, digits, '_', '.', '-'",
}


def _format(error: Mapping[str, Any]) -> str:
    maker = _MESSAGES.get(error["type"])
    message = maker(error.get("ctx") or {}) if maker else error["msg"].lower()
    return f"{_path(error['loc'])}: {message}"


def _cross_checks(cfg: SiteConfig) -> list[str]:
    errors: list[str] = []
    try:
        zoneinfo.ZoneInfo(cfg.site.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(f"site.time_zone: unknown time zone {cfg.site.time_zone!r}")

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
    for i, m in enumerate(cfg.modbus):
        if m.framing == "rtu" and not m.port:
            errors.append(f"modbus[{i}].port: required for framing 'rtu'")
        if m.framing != "rtu" and not m.host:
            errors.append(f"modbus[{i}].host: required for framing '{m.framing}'")
    used: dict[tuple[str, int | None, str, int], str] = {}
    for i, c in enumerate(cfg.chambers):
        where = f"chambers[{i}]"
        if c.analyser not in analysers:
            errors.append(f"{where}.analyser: no analyser with id {c.analyser!r}")
        for field in ("lid", "closed_switch", "open_switch", "valve"):
            ref = getattr(c, field)
            if ref is None:
                continue
            if ref.device not in devices:
                errors.append(f"{where}.{field}.device: no modbus device with id {ref.device!r}")
            number = ref.coil if isinstance(ref, CoilRef) else ref.input
            kind = "coil" if isinstance(ref, CoilRef) else "input"
            key = (ref.device, ref.device_id, kind, number)
            if key in used:
                errors.append(f"{where}.{field}: {kind} {number} already used by {used[key]}")
            used[key] = f"{where}.{field}"
        dates = [g.since for g in c.geometry]
        if len(set(dates)) != len(dates):
            errors.append(f"{where}.geometry: two versions start on the same day")
        dead_band = cfg.dead_band_s(c)
        if dead_band + 10 >= cfg.observation_s(c):
            errors.append(
                f"{where}.dead_band_s: {dead_band:g} s leaves fewer than 10 s of the "
                f"{cfg.observation_s(c):g} s observation to fit"
            )
    for i, a in enumerate(cfg.aux):
        if a.device not in devices:
            errors.append(f"aux[{i}].device: no modbus device with id {a.device!r}")
        if a.chamber is not None and a.chamber not in chambers:
            errors.append(f"aux[{i}].chamber: no chamber with id {a.chamber!r}")
    if cfg.pump.coil is not None and cfg.pump.coil.device not in devices:
        errors.append(f"pump.coil.device: no modbus device with id {cfg.pump.coil.device!r}")
    return errors


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> SiteConfig:
    """Validate a configuration mapping; :class:`ConfigError` lists every problem."""
    try:
        cfg = SiteConfig.model_validate(dict(data))
    except ValidationError as exc:
        lines = [_format(e) for e in exc.errors()]
        raise ConfigError(f"{source}: {len(lines)} error(s)\n  " + "\n  ".join(lines)) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} error(s)\n  " + "\n  ".join(problems))
    return cfg


def _set_path(data: dict[str, Any], dotted: str, raw: str, origin: str) -> None:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string
    node: Any = data
    parts = dotted.split(".")
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


def load_config(
    path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> SiteConfig:
    """Read ``site.toml``, apply environment and command-line overrides, validate.

    Environment variables ``CHAMBERD__SECTION__KEY=value`` and overrides ``section.key=value``
    (list items by index: ``chambers.0.enabled=false``) take TOML literals, or bare strings.
    A relative ``storage.path`` is taken relative to the configuration file's folder.

    Raises
    ------
    ConfigError
        Naming the file and line for TOML syntax errors, and every invalid field otherwise.
    """
    path_text = os.fspath(path)
    try:
        text = Path(path_text).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path_text}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path_text}: {exc}") from None
    env = os.environ if environ is None else environ
    for key, value in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_path(data, dotted, value, f"environment {key}")
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _set_path(data, name.strip(), value.strip(), f"--set {item!r}")
    storage = data.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("path"), str):
        # a relative database path is relative to the configuration file, not to wherever
        # the daemon was started from
        db = Path(storage["path"]).expanduser()
        if not db.is_absolute():
            storage["path"] = str(Path(path_text).resolve().parent / db)
    return parse_config(data, source=path_text)


def config_hash(cfg: SiteConfig) -> str:
    """SHA-256 (first 16 hex digits) of the resolved configuration."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def to_toml(cfg: SiteConfig) -> str:
    """The resolved configuration as TOML (defaults filled in); loads back to ``cfg``."""
    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"\n[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines).strip() + "\n"
