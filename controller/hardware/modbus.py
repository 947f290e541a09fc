"""Modbus lids, valves, pump, end-switches and aux sensors: the only module importing pymodbus.

pymodbus changes its API between minors (``slave=`` became ``device_id=`` in 3.10, the
datastore was replaced by ``SimData``/``SimDevice`` in 3.12, the simulator action hook's
arguments differ on the 4.0 branch), so every use of it lives here: the client side
(:class:`ModbusLink`, :class:`ModbusActuators`, :class:`ModbusAuxSensors`) and the server
glue the simulated site uses (:class:`ModbusSimServer`).

Register maps are data (the site configuration), not code: a lid is a coil (FC05) or, for
register-style relay boards, a holding register written 0x0100 (on) / 0x0200 (off); an
end-switch is a discrete input (FC02); an aux sensor is one or two input or holding
registers with a data type, word order, scale and offset.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chamberd.controller.clock import Clock, SystemClock
from chamberd.controller.config import (
    REGISTER_WIDTH,
    AuxConfig,
    CoilRef,
    InputRef,
    ModbusConfig,
    SiteConfig,
)
from chamberd.controller.errors import (
    ConfigError,
    HardwareError,
    HardwareTimeoutError,
    ProtocolError,
)

from .ports import AuxReading, LidState

__all__ = [
    "ModbusActuators",
    "ModbusAuxSensors",
    "ModbusLink",
    "ModbusSimServer",
    "SimDeviceSpec",
    "decode_registers",
    "encode_value",
]

log = logging.getLogger(__name__)

REGISTER_ON = 0x0100
REGISTER_OFF = 0x0200
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def decode_registers(registers: Sequence[int], datatype: str, word_order: str) -> float:
    """A number from 1 or 2 16-bit registers.

    >>> decode_registers([0xFF9B], "int16", "big")
    -101.0
    >>> decode_registers([0x0000, 0x41C8], "float32", "little")
    25.0
    """
    words = list(registers[: REGISTER_WIDTH[datatype]])
    if word_order == "little":
        words.reverse()
    raw = b"".join(int(w).to_bytes(2, "big") for w in words)
    return float(struct.unpack(_STRUCT[datatype], raw)[0])


def encode_value(value: float, datatype: str, word_order: str) -> list[int]:
    """Registers holding ``value`` (already scaled to the raw unit); inverse of decoding.

    >>> encode_value(-101, "int16", "big")
    [65435]
    """
    if datatype == "float32":
        raw = struct.pack(">f", float(value))
    else:
        bits = 16 * REGISTER_WIDTH[datatype]
        if datatype.startswith("int"):
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:
            lo, hi = 0, 2**bits - 1
        raw = struct.pack(_STRUCT[datatype], max(lo, min(hi, round(value))))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    return words


class ModbusLink:
    """One Modbus line: RTU on a serial port, TCP, or RTU frames over TCP.

    Every call has a timeout and ``retries``; pymodbus exceptions become
    :class:`HardwareError` / :class:`HardwareTimeoutError`, exception responses become
    :class:`ProtocolError`; each message names the device, the function and the address
    and carries the last frames on the wire.
    """

    def __init__(self, cfg: ModbusConfig, *, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.frames: collections.deque[str] = collections.deque(maxlen=8)
        self._lock = threading.Lock()
        trace = self._trace
        if cfg.framing == "tcp":
            self.where = f"modbus line {cfg.id} (TCP {cfg.host}:{cfg.tcp_port})"
            self.client: Any = ModbusTcpClient(
                cfg.host or "127.0.0.1",
                port=cfg.tcp_port,
                timeout=cfg.timeout_s,
                retries=cfg.retries,
                reconnect_delay=0.1,
                reconnect_delay_max=5.0,
                trace_packet=trace,
            )
        else:
            url = cfg.port if cfg.framing == "rtu" else f"socket://{cfg.host}:{cfg.tcp_port}"
            assert url is not None
            self.where = f"modbus line {cfg.id} (RTU {url})"
            self.client = ModbusSerialClient(
                url,
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                timeout=cfg.timeout_s,
                retries=cfg.retries,
                reconnect_delay=0.1,
                reconnect_delay_max=5.0,
                trace_packet=trace,
            )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        self.frames.append(("> " if sending else "< ") + data.hex(" "))
        log.debug("%s %s %s", self.where, ">" if sending else "<", data.hex(" "))
        return data

    def last_frames(self) -> str:
        return " | ".join(self.frames) if self.frames else "(nothing exchanged)"

    def _lost(self, cls: type[HardwareError], message: str) -> HardwareError:
        """The line did not answer: the error names it (``modbus:<id>``) for the health."""
        error = cls(f"{message}; last frames: {self.last_frames()}")
        error.device = f"modbus:{self.cfg.id}"
        return error

    def _call(self, what: str, device_id: int, fn: Callable[[], Any]) -> Any:
        label = f"{self.where} device {device_id}: {what}"
        with self._lock:
            try:
                if not self.client.connected and not self.client.connect():
                    raise self._lost(HardwareError, f"{label}: cannot connect")
                response = fn()
            except HardwareError:
                raise
            except ModbusIOException as exc:
                raise self._lost(HardwareTimeoutError, f"{label}: no valid reply ({exc})") from exc
            except ConnectionException as exc:
                self.client.close()
                # pymodbus reports a device that stays silent after its retries as a
                # connection error: a timeout, as far as the caller is concerned
                raise self._lost(
                    HardwareTimeoutError,
                    f"{label}: no valid reply within {self.cfg.timeout_s:g} s "
                    f"({self.cfg.retries + 1} attempts) or connection lost ({exc})",
                ) from exc
            except ModbusException as exc:
                raise self._lost(HardwareError, f"{label}: {exc}") from exc
            except OSError as exc:
                self.client.close()
                raise self._lost(HardwareError, f"{label}: {exc}") from exc
        if response.isError():
            # the device answered (the line works) and refused the request
            code = getattr(response, "exception_code", None)
            raise ProtocolError(
                f"{label}: exception response (code {code}); last frames: {self.last_frames()}"
            )
        return response

    def read_bits(self, kind: str, address: int, count: int, device_id: int) -> list[bool]:
        if kind == "coil":
            fn = functools.partial(
                self.client.read_coils, address, count=count, device_id=device_id
            )
        else:
            fn = functools.partial(
                self.client.read_discrete_inputs, address, count=count, device_id=device_id
            )
        response = self._call(f"read {kind} {address} (x{count})", device_id, fn)
        return list(response.bits[:count])

    def write_coil(self, address: int, value: bool, device_id: int) -> None:
        self._call(
            f"write coil {address} = {value}",
            device_id,
            functools.partial(self.client.write_coil, address, value, device_id=device_id),
        )

    def write_register(self, address: int, value: int, device_id: int) -> None:
        self._call(
            f"write register {address} = 0x{value:04x}",
            device_id,
            functools.partial(self.client.write_register, address, value, device_id=device_id),
        )

    def read_registers(self, kind: str, address: int, count: int, device_id: int) -> list[int]:
        fn = (
            self.client.read_input_registers
            if kind == "input"
            else self.client.read_holding_registers
        )
        response = self._call(
            f"read {kind} register {address} (x{count})",
            device_id,
            functools.partial(fn, address, count=count, device_id=device_id),
        )
        return list(response.registers[:count])

    def close(self) -> None:
        with self._lock:
            self.client.close()


def make_links(cfg: SiteConfig, clock: Clock | None = None) -> dict[str, ModbusLink]:
    return {m.id: ModbusLink(m, clock=clock) for m in cfg.modbus}


class ModbusActuators:
    """Lids, valves and pump of a site on Modbus relay boards and input modules."""

    def __init__(self, cfg: SiteConfig, links: dict[str, ModbusLink], *, clock: Clock) -> None:
        self.cfg = cfg
        self.links = links
        self.clock = clock
        self._chambers = {c.id: c for c in cfg.chambers}
        self._slots = {m.slot: m for m in cfg.calibration.manifold}

    def _device(self, ref: CoilRef | InputRef) -> tuple[ModbusLink, int]:
        link = self.links[ref.device]
        return link, link.cfg.device_id if ref.device_id is None else ref.device_id

    def _switch(self, ref: CoilRef, on: bool) -> None:
        link, device_id = self._device(ref)
        if ref.style == "register":
            link.write_register(ref.coil, REGISTER_ON if on else REGISTER_OFF, device_id)
        else:
            link.write_coil(ref.coil, on, device_id)

    def set_lid(self, chamber: str, closed: bool) -> None:
        lid = self._chambers[chamber].lid
        self._switch(lid, closed if lid.active_closes else not closed)

    def _input(self, ref: InputRef | None) -> bool | None:
        if ref is None:
            return None
        link, device_id = self._device(ref)
        made = link.read_bits("input", ref.input, 1, device_id)[0]
        return made if ref.active_high else not made

    def lid_state(self, chamber: str) -> LidState:
        c = self._chambers[chamber]
        closed = self._input(c.closed_switch)
        opened = self._input(c.open_switch)
        if closed is None and opened is None:
            return LidState.UNKNOWN
        if closed and not opened:
            return LidState.CLOSED
        if opened and not closed:
            return LidState.OPEN
        if closed is None and opened is False:
            return LidState.MOVING  # only an open switch, not made
        if opened is None and closed is False:
            return LidState.MOVING if self._lid_commanded_closed(c.id) else LidState.OPEN
        return LidState.UNKNOWN if closed and opened else LidState.MOVING

    def _lid_commanded_closed(self, chamber: str) -> bool:
        lid = self._chambers[chamber].lid
        link, device_id = self._device(lid)
        if lid.style == "register":
            return False
        on = link.read_bits("coil", lid.coil, 1, device_id)[0]
        return on if lid.active_closes else not on

    def set_valve(self, chamber: str, open_: bool) -> None:
        valve = self._chambers[chamber].valve
        if valve is not None:
            self._switch(valve, open_ if valve.active_closes else not open_)

    def set_pump(self, on: bool) -> None:
        coil = self.cfg.pump.coil
        if coil is not None:
            self._switch(coil, on if coil.active_closes else not on)

    def set_analyser_power(self, analyser: str, on: bool) -> None:
        """Switch the relay powering ``analyser`` (its ``power`` coil; none: nothing)."""
        coil = self.cfg.analyser(analyser).power
        if coil is not None:
            self._switch(coil, on if coil.active_closes else not on)

    def _set_slot(self, slot: str, open_: bool) -> None:
        coil = self._slots[slot].coil
        self._switch(coil, open_ if coil.active_closes else not open_)

    def set_manifold(self, slot: str | None) -> None:
        """Close every other manifold valve, then open ``slot``'s (None: close all)."""
        if slot is not None and slot not in self._slots:
            raise ConfigError(f"calibration.manifold: no slot {slot!r}")
        for other in self._slots:
            if other != slot:
                self._set_slot(other, False)
        if slot is not None:
            self._set_slot(slot, True)

    def open_all(self) -> None:
        failures: list[str] = []
        for chamber in self._chambers.values():
            for action in (
                functools.partial(self.set_lid, chamber.id, False),
                functools.partial(self.set_valve, chamber.id, False),
            ):
                try:
                    action()
                except (HardwareError, ProtocolError) as exc:
                    failures.append(f"{chamber.id}: {exc}")
        for slot in self._slots:
            try:
                self._set_slot(slot, False)
            except (HardwareError, ProtocolError) as exc:
                failures.append(f"manifold {slot}: {exc}")
        if failures:
            raise HardwareError("safe state incomplete: " + "; ".join(failures))

    def close(self) -> None:
        for link in self.links.values():
            link.close()


class ModbusAuxSensors:
    """Auxiliary sensors read through their register maps."""

    def __init__(self, cfg: SiteConfig, links: dict[str, ModbusLink], *, clock: Clock) -> None:
        self.sensors = list(cfg.aux)
        self.links = links
        self.clock = clock

    def read_one(self, sensor: AuxConfig) -> AuxReading:
        link = self.links[sensor.device]
        device_id = link.cfg.device_id if sensor.device_id is None else sensor.device_id
        registers = link.read_registers(
            sensor.table, sensor.address, REGISTER_WIDTH[sensor.datatype], device_id
        )
        raw = decode_registers(registers, sensor.datatype, sensor.word_order)
        return AuxReading(
            sensor=sensor.id,
            quantity=sensor.quantity,
            chamber=sensor.chamber,
            value=raw * sensor.scale + sensor.offset,
            time=self.clock.now(),
        )

    def read(self) -> tuple[AuxReading, ...]:
        return tuple(self.read_one(s) for s in self.sensors)

    def close(self) -> None:
        for link in self.links.values():
            link.close()


# --- the server side, for the simulated site -----------------------------------------------


@dataclass
class SimDeviceSpec:
    """One simulated Modbus device: its id, block sizes, and callbacks into the site.

    ``coil_written(address, value)`` is called for every coil write;
    ``inputs()`` returns all discrete inputs now; ``registers(kind)`` returns all input
    (``"input"``) or holding (``"holding"``) registers now.
    """

    device_id: int
    coils: int
    inputs: int
    holding: int
    input_registers: int
    coil_written: Callable[[int, bool], None]
    register_written: Callable[[int, int], None]
    read_inputs: Callable[[], list[bool]]
    read_registers: Callable[[str], list[int]]


def _pack_bits(bits: Sequence[bool]) -> list[int]:
    words = []
    for start in range(0, len(bits), 16):
        word = 0
        for i, bit in enumerate(bits[start : start + 16]):
            if bit:
                word |= 1 << i
        words.append(word)
    return words


class ModbusSimServer:
    """A pymodbus server on 127.0.0.1 (ephemeral port) serving simulated devices.

    ``framing`` is ``"tcp"`` (Modbus TCP) or ``"rtu"`` (RTU frames over TCP, for clients
    using ``socket://`` as a serial port). ``faults()`` is consulted on every request and
    returns (exception code by device id, device ids that never answer, device ids whose
    RTU replies get a wrong CRC).
    """

    def __init__(
        self,
        devices: Sequence[SimDeviceSpec],
        *,
        framing: str = "tcp",
        faults: Callable[[], tuple[dict[int, int], set[int], set[int]]] = lambda: (
            {},
            set(),
            set(),
        ),
    ) -> None:
        self.devices = list(devices)
        self.framing = framing
        self.faults = faults
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ModbusTcpServer | None = None
        self.requests = 0

    async def _action(
        self,
        spec: SimDeviceSpec,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        exceptions, silent, _ = self.faults()
        if spec.device_id in silent:
            await asyncio.sleep(3600)  # never answers in time; cancelled at shutdown
        if spec.device_id in exceptions:
            return ExcCodes(exceptions[spec.device_id])
        if function_code in (5, 15) and values is not None:
            for i, value in enumerate(values):
                spec.coil_written(address + i, bool(value))
        elif function_code in (6, 16) and values is not None:
            for i, value in enumerate(values):
                spec.register_written(address + i, int(value))
        elif function_code == 2:
            registers[:] = _pack_bits(spec.read_inputs()) + [0] * max(
                0, len(registers) - (spec.inputs + 15) // 16
            )
        elif function_code == 4:
            registers[: spec.input_registers] = spec.read_registers("input")
        elif function_code == 3:
            registers[: spec.holding] = spec.read_registers("holding")
        return None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending and self.framing == "rtu" and len(data) > 3:
            _, _, bad_crc = self.faults()
            if data[0] in bad_crc:
                return data[:-2] + bytes([data[-2] ^ 0xFF, data[-1] ^ 0xFF])
        return data

    def _device(self, spec: SimDeviceSpec) -> SimDevice:
        def bits(count: int) -> list[SimData]:
            return [SimData(0, count=max(16, count), datatype=DataType.BITS)]

        def regs(count: int) -> list[SimData]:
            return [SimData(0, count=max(1, count), values=0, datatype=DataType.UINT16)]

        return SimDevice(
            spec.device_id,
            (bits(spec.coils), bits(spec.inputs), regs(spec.holding), regs(spec.input_registers)),
            action=functools.partial(self._action, spec),
        )

    def start(self, timeout_s: float = 5.0) -> tuple[str, int]:
        """Start serving in a background thread; returns (host, port).

        After :meth:`stop`, starting again serves on the same port (a gateway that was
        switched off and on: its clients reconnect to the address they know)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            framer = FramerType.RTU if self.framing == "rtu" else FramerType.SOCKET

            async def serve() -> None:
                self._server = ModbusTcpServer(
                    [self._device(s) for s in self.devices],
                    framer=framer,
                    address=(self.host, self.port),
                    trace_packet=self._trace,
                )
                task = asyncio.ensure_future(self._server.serve_forever())
                while self._server.transport is None and not task.done():
                    await asyncio.sleep(0.005)
                if task.done() and task.exception():
                    errors.append(task.exception())  # type: ignore[arg-type]
                else:
                    self.port = self._server.transport.sockets[0].getsockname()[1]
                ready.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # report to the starting thread
                errors.append(exc)
                ready.set()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="modbus-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or errors:
            self.stop()
            raise HardwareError(f"simulated Modbus server did not start: {errors or 'timeout'}")
        return self.host, self.port

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self, timeout_s: float = 5.0) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._thread = None
        self._server = None
