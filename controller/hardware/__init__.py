"""The hardware boundary: ports, drivers, and the registry that picks them.

Backends are chosen by a string (python-can's ``BACKENDS`` idea): an analyser's
``protocol`` (``li820``, ``li830``, ``li840a``, ``li850``, ``gmp343``, the laser trace-gas
analysers ``li7810``, ``li7820`` (MQTT), ``lgr-gga``, ``lgr-ugga``, ``lgr-n2oco`` (serial
stream) and ``picarro`` (command interface, serial or TCP), or ``memory``), and for
lids, valves, pump and aux sensors ``modbus`` (the configured Modbus lines) or ``memory``.
The ``memory`` backends need a :class:`~chamberd.controller.sim.site.SimulatedSite`; the
wire-level simulator is reached by the real drivers themselves (see
:func:`chamberd.controller.sim.start_hardware`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from chamberd.controller.clock import Clock
from chamberd.controller.config import (
    TRACE_GAS_PROTOCOLS,
    AnalyserConfig,
    Protocol,
    SiteConfig,
)
from chamberd.controller.errors import ConfigError

from .ports import (
    AnalyserInfo,
    AnalyserReading,
    AuxReading,
    AuxSensors,
    ChamberActuators,
    GasAnalyser,
    GMP343Settings,
    LI8x0Calibration,
    LidState,
)

if TYPE_CHECKING:
    from chamberd.controller.sim.site import SimulatedSite

__all__ = [
    "ANALYSER_BACKENDS",
    "AnalyserInfo",
    "AnalyserReading",
    "AuxReading",
    "AuxSensors",
    "ChamberActuators",
    "GMP343Settings",
    "GasAnalyser",
    "LI8x0Calibration",
    "LidState",
    "make_actuators",
    "make_analyser",
    "make_aux_sensors",
]

#: every analyser protocol the configuration accepts (the one list: config.Protocol)
ANALYSER_BACKENDS = get_args(Protocol)


def make_analyser(
    cfg: AnalyserConfig,
    *,
    clock: Clock,
    site: SimulatedSite | None = None,
    memory: bool = False,
) -> GasAnalyser:
    """The driver for one configured analyser (not yet configured; call ``configure``).

    ``memory``: the in-memory fake of the configured instrument instead (needs ``site``):
    a trace-gas protocol gets :class:`~.memory.MemoryTraceGasAnalyser`, reporting that
    instrument's gases; other protocols the plain ``memory`` analyser.
    """
    if memory and cfg.protocol in TRACE_GAS_PROTOCOLS:
        if site is None:
            raise ConfigError(f"analysers.{cfg.id}: a memory analyser needs a simulated site")
        from .memory import MemoryTraceGasAnalyser

        return MemoryTraceGasAnalyser(
            site, cfg.id, protocol=cfg.protocol, clock=clock, species=tuple(cfg.species)
        )
    if cfg.protocol == "memory" or memory:
        if site is None:
            raise ConfigError(f"analysers.{cfg.id}: protocol 'memory' needs a simulated site")
        from .memory import MemoryAnalyser

        return MemoryAnalyser(site, cfg.id, clock=clock)
    if cfg.protocol in ("li7810", "li7820"):
        from .li78x0 import MODELS as LI78_MODELS
        from .li78x0 import LI78x0Analyser
        from .mqtt_link import MqttLink

        mqtt_link = MqttLink(
            cfg.port,
            topics=LI78x0Analyser.topics_for(cfg.topic_root),
            name=f"{LI78_MODELS[cfg.protocol][0]} {cfg.id}",
            clock=clock,
        )
        return LI78x0Analyser(
            mqtt_link,
            model=cfg.protocol,
            clock=clock,
            topic_root=cfg.topic_root,
            connect_timeout_s=max(cfg.timeout_s, 5.0),
        )
    from .serial_link import SerialLink

    if cfg.protocol in ("lgr-gga", "lgr-ugga", "lgr-n2oco"):
        from .lgr import BAUDRATE as LGR_BAUDRATE
        from .lgr import LAYOUTS, LGRAnalyser

        link = SerialLink(
            cfg.port,
            baudrate=cfg.baudrate or LGR_BAUDRATE,
            eol=b"\r\n",
            name=f"{LAYOUTS[cfg.protocol].model} {cfg.id}",
            clock=clock,
            stamped=True,  # streaming: stamp each line on arrival
        )
        return LGRAnalyser(link, model=cfg.protocol, clock=clock)
    if cfg.protocol == "picarro":
        from .picarro import BAUDRATE as PICARRO_BAUDRATE
        from .picarro import PicarroAnalyser

        link = SerialLink(
            cfg.port,
            baudrate=cfg.baudrate or PICARRO_BAUDRATE,
            eol=b"\r",
            name=f"Picarro {cfg.id}",
            clock=clock,
        )
        return PicarroAnalyser(
            link, species=tuple(cfg.species), clock=clock, reply_timeout_s=cfg.timeout_s
        )

    if cfg.protocol == "gmp343":
        from .gmp343 import BAUDRATE, GMP343Analyser

        link = SerialLink(
            cfg.port,
            baudrate=cfg.baudrate or BAUDRATE,
            eol=b"\r",
            name=f"analyser {cfg.id}",
            clock=clock,
        )
        return GMP343Analyser(link, clock=clock)
    from .li8x0 import BAUDRATE as LI_BAUDRATE
    from .li8x0 import LI8x0Analyser

    link = SerialLink(
        cfg.port,
        baudrate=cfg.baudrate or LI_BAUDRATE,
        eol=b"\n",
        name=f"analyser {cfg.id}",
        clock=clock,
        stamped=True,  # streaming: stamp each line on arrival, in a reader thread
    )
    return LI8x0Analyser(link, model=cfg.protocol, clock=clock)


def make_actuators(
    cfg: SiteConfig, *, clock: Clock, backend: str = "modbus", site: SimulatedSite | None = None
) -> ChamberActuators:
    if backend == "memory":
        if site is None:
            raise ConfigError("actuators: backend 'memory' needs a simulated site")
        from .memory import MemoryActuators

        return MemoryActuators(site)
    if backend != "modbus":
        raise ConfigError(f"actuators: unknown backend {backend!r} (modbus or memory)")
    from .modbus import ModbusActuators, make_links

    return ModbusActuators(cfg, make_links(cfg, clock), clock=clock)


def make_aux_sensors(
    cfg: SiteConfig, *, clock: Clock, backend: str = "modbus", site: SimulatedSite | None = None
) -> AuxSensors:
    if backend == "memory":
        if site is None:
            raise ConfigError("aux sensors: backend 'memory' needs a simulated site")
        from .memory import MemoryAuxSensors

        return MemoryAuxSensors(site, clock=clock)
    if backend != "modbus":
        raise ConfigError(f"aux sensors: unknown backend {backend!r} (modbus or memory)")
    from .modbus import ModbusAuxSensors, make_links

    return ModbusAuxSensors(cfg, make_links(cfg, clock), clock=clock)
