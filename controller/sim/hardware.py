"""The simulated site's hardware on real wire protocols: analysers and Modbus servers.

:func:`start_hardware` builds, from a site configuration, one analyser server per analyser
(LI-8x0 XML, GMP343, an LGR/ABB stream or a Picarro command interface, over a pty or
TCP; an LI-7810/7820 publishing to the ``[sim] mqtt_broker`` under a topic root of its own)
and one Modbus server per Modbus line (Modbus TCP,
or RTU frames over TCP for lines configured as RTU), all on 127.0.0.1 with ephemeral ports,
wired to a :class:`~chamberd.controller.sim.site.SimulatedSite`. The register layout of
every device follows the configuration, so a daemon given the same configuration (with the
simulator's addresses) cannot tell it from the field hardware.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from chamberd.controller.clock import Clock
from chamberd.controller.config import REGISTER_WIDTH, AuxConfig, CoilRef, InputRef, SiteConfig
from chamberd.controller.hardware.li8x0 import MODELS
from chamberd.controller.hardware.modbus import (
    REGISTER_ON,
    ModbusSimServer,
    SimDeviceSpec,
    encode_value,
)

from .analyser import AnalyserServer, GMP343Device, LI8x0Device
from .site import SimulatedSite
from .trace_gas import LGRDevice, LI78x0Publisher, PicarroDevice

__all__ = ["SimHardware", "start_hardware"]


@dataclass
class _DeviceMap:
    # kind, chamber (or manifold slot), reference
    coils: dict[int, tuple[str, str, CoilRef]] = field(default_factory=dict)
    registers_out: dict[int, tuple[str, str, CoilRef]] = field(default_factory=dict)
    inputs: dict[int, tuple[str, InputRef]] = field(default_factory=dict)  # chamber
    aux: list[AuxConfig] = field(default_factory=list)


@dataclass
class SimHardware:
    """Running simulated hardware; stop it with :meth:`stop` (or use as a context manager)."""

    site: SimulatedSite
    analysers: dict[str, AnalyserServer]
    modbus: dict[str, ModbusSimServer]
    modbus_device_ids: dict[str, list[int]]
    publishers: dict[str, LI78x0Publisher] = field(default_factory=dict)  # LI-7810/7820

    @property
    def analyser_urls(self) -> dict[str, str]:
        urls = {k: v.url for k, v in self.analysers.items()}
        return urls | {k: v.url for k, v in self.publishers.items()}

    def endpoints(self) -> dict[str, Any]:
        """What ``chamberd sim --json`` prints."""
        analysers = [
            {"id": k, "protocol": self.site.cfg.analyser(k).protocol, "url": v.url}
            for k, v in self.analysers.items()
        ]
        analysers += [
            {
                "id": k,
                "protocol": self.site.cfg.analyser(k).protocol,
                "url": v.url,
                "topic_root": v.topic_root,
            }
            for k, v in self.publishers.items()
        ]
        modbus = []
        for line, server in self.modbus.items():
            for device_id in self.modbus_device_ids[line]:
                modbus.append(
                    {
                        "id": line,
                        "framing": "rtu" if server.framing == "rtu" else "tcp",
                        "host": server.host,
                        "port": server.port,
                        "device_id": device_id,
                    }
                )
        return {"analysers": analysers, "modbus": modbus}

    def daemon_config(self) -> SiteConfig:
        """The site configuration with its ports pointed at this simulator."""
        data = self.site.cfg.model_dump(mode="python")
        for analyser in data["analysers"]:
            if analyser["id"] in self.analysers:
                analyser["port"] = self.analysers[analyser["id"]].url
            elif analyser["id"] in self.publishers:
                publisher = self.publishers[analyser["id"]]
                analyser["port"] = publisher.url
                analyser["topic_root"] = publisher.topic_root
        for line in data["modbus"]:
            server = self.modbus[line["id"]]
            line["host"] = server.host
            line["tcp_port"] = server.port
            if line["framing"] == "rtu":
                line["framing"] = "rtu-over-tcp"
                line["port"] = None
        return SiteConfig.model_validate(data)

    def line_down(self, line: str) -> None:
        """Switch Modbus line ``line`` off (its gateway or relay board loses power): its
        server stops, open connections are closed and new ones refused."""
        self.modbus[line].stop()

    def line_up(self, line: str) -> None:
        """Switch Modbus line ``line`` on again, on the address its clients know."""
        server = self.modbus[line]
        if not server.running:
            server.start()

    def stop(self) -> None:
        for publisher in self.publishers.values():
            publisher.stop()
        for server in self.analysers.values():
            server.stop()
        for server in self.modbus.values():
            server.stop()

    def __enter__(self) -> SimHardware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _maps(cfg: SiteConfig) -> dict[str, dict[int, _DeviceMap]]:
    maps: dict[str, dict[int, _DeviceMap]] = {m.id: defaultdict(_DeviceMap) for m in cfg.modbus}
    default_id = {m.id: m.device_id for m in cfg.modbus}

    def device(ref: CoilRef | InputRef | AuxConfig) -> _DeviceMap:
        return maps[ref.device][default_id[ref.device] if ref.device_id is None else ref.device_id]

    for chamber in cfg.chambers:
        for kind, ref in (("lid", chamber.lid), ("valve", chamber.valve)):
            if ref is None:
                continue
            target = device(ref).registers_out if ref.style == "register" else device(ref).coils
            target[ref.coil] = (kind, chamber.id, ref)
        for kind, inp in (("closed", chamber.closed_switch), ("open", chamber.open_switch)):
            if inp is not None:
                device(inp).inputs[inp.input] = (f"{kind}:{chamber.id}", inp)
    if cfg.pump.coil is not None:
        ref = cfg.pump.coil
        target = device(ref).registers_out if ref.style == "register" else device(ref).coils
        target[ref.coil] = ("pump", "", ref)
    for slot in cfg.calibration.manifold:
        ref = slot.coil
        target = device(ref).registers_out if ref.style == "register" else device(ref).coils
        target[ref.coil] = ("manifold", slot.slot, ref)
    for analyser in cfg.analysers:  # power relays of analysers (issue 13)
        if analyser.power is not None:
            ref = analyser.power
            target = device(ref).registers_out if ref.style == "register" else device(ref).coils
            target[ref.coil] = ("power", analyser.id, ref)
    for aux in cfg.aux:
        device(aux).aux.append(aux)
    return maps


def _spec(site: SimulatedSite, device_id: int, dmap: _DeviceMap) -> SimDeviceSpec:
    def actuate(kind: str, chamber: str, ref: CoilRef, on: bool) -> None:
        active = on if ref.active_closes else not on
        if kind == "lid":
            site.command_lid(chamber, active)
        elif kind == "valve":
            site.command_valve(chamber, active)
        elif kind == "manifold":
            site.command_manifold(chamber, active)
        elif kind == "power":
            site.command_analyser_power(chamber, active)
        else:
            site.command_pump(active)

    def coil_written(address: int, value: bool) -> None:
        if address in dmap.coils:
            actuate(*dmap.coils[address], value)

    def register_written(address: int, value: int) -> None:
        if address in dmap.registers_out:
            actuate(*dmap.registers_out[address], value == REGISTER_ON)

    n_inputs = max(dmap.inputs, default=-1) + 1

    def read_inputs() -> list[bool]:
        bits = [False] * n_inputs
        for number, (what, ref) in dmap.inputs.items():
            kind, chamber = what.split(":", 1)
            made = site.closed_switch(chamber) if kind == "closed" else site.open_switch(chamber)
            bits[number] = made if ref.active_high else not made
        return bits

    def extent(register: str) -> int:
        ends = [a.address + REGISTER_WIDTH[a.datatype] for a in dmap.aux if a.table == register]
        if register == "holding":
            ends += [r + 1 for r in dmap.registers_out]
        return max(ends, default=0)

    sizes = {"input": extent("input"), "holding": extent("holding")}

    def read_registers(register: str) -> list[int]:
        values = [0] * sizes[register]
        for aux in dmap.aux:
            if aux.table != register:
                continue
            true = site.aux_value(aux.quantity, aux.chamber)
            raw = (true - aux.offset) / aux.scale if aux.scale else 0.0
            for i, word in enumerate(encode_value(raw, aux.datatype, aux.word_order)):
                values[aux.address + i] = word
        return values

    return SimDeviceSpec(
        device_id=device_id,
        coils=max(dmap.coils, default=-1) + 1,
        inputs=n_inputs,
        holding=sizes["holding"],
        input_registers=sizes["input"],
        coil_written=coil_written,
        register_written=register_written,
        read_inputs=read_inputs,
        read_registers=read_registers,
    )


def start_hardware(
    cfg: SiteConfig,
    clock: Clock,
    *,
    site: SimulatedSite | None = None,
    transport: str | None = None,
) -> SimHardware:
    """Start every simulated device of ``cfg`` on 127.0.0.1; stop with ``.stop()``."""
    site = site or SimulatedSite(cfg, clock)
    kind = transport or cfg.sim.analyser_transport
    analysers: dict[str, AnalyserServer] = {}
    servers: dict[str, ModbusSimServer] = {}
    device_ids: dict[str, list[int]] = {}
    publishers: dict[str, LI78x0Publisher] = {}
    hardware = SimHardware(site, analysers, servers, device_ids, publishers)
    try:
        for analyser in cfg.analysers:
            if analyser.protocol in ("li7810", "li7820"):
                publisher = LI78x0Publisher(
                    site, analyser.id, clock=clock, broker=cfg.sim.mqtt_broker
                )
                publisher.start()
                publishers[analyser.id] = publisher
                continue
            if analyser.protocol in MODELS:
                device: Any = LI8x0Device(site, analyser.id, MODELS[analyser.protocol])
            elif analyser.protocol == "gmp343":
                device = GMP343Device(site, analyser.id)
            elif analyser.protocol.startswith("lgr-"):
                device = LGRDevice(site, analyser.id, analyser.protocol)
            elif analyser.protocol == "picarro":
                device = PicarroDevice(site, analyser.id, tuple(analyser.species))
            else:
                continue
            server = AnalyserServer(
                device, site=site, analyser=analyser.id, clock=clock, transport=kind
            )
            server.start()
            analysers[analyser.id] = server
        faults = site.faults

        def modbus_faults() -> tuple[dict[int, int], set[int], set[int]]:
            return faults.modbus_exception, faults.modbus_timeout, faults.modbus_bad_crc

        for line, dmaps in _maps(cfg).items():
            framing = "tcp" if cfg.modbus_device(line).framing == "tcp" else "rtu"
            ids = sorted(dmaps) or [cfg.modbus_device(line).device_id]
            specs = [_spec(site, i, dmaps[i]) for i in ids]
            server = ModbusSimServer(specs, framing=framing, faults=modbus_faults)
            server.start()
            servers[line] = server
            device_ids[line] = ids
    except BaseException:
        with contextlib.suppress(Exception):
            hardware.stop()
        raise
    return hardware
