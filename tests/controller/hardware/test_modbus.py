"""Modbus adapters: exact RTU frames, register maps, and pymodbus errors translated."""

from __future__ import annotations

import socket
import threading

import pytest

from chamberd.controller.clock import SystemClock
from chamberd.controller.config import ModbusConfig
from chamberd.controller.errors import HardwareError, HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware.modbus import ModbusLink, decode_registers, encode_value


class RtuDevice:
    """A device on RTU-over-TCP answering each request with a canned reply."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(2.0)
        with conn:
            while self.replies:
                try:
                    request = conn.recv(256)
                except TimeoutError:
                    return
                if not request:
                    return
                self.requests.append(request)
                reply = self.replies.pop(0)
                if reply is not None:
                    conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(3)


def _link(port: int, **kw) -> ModbusLink:
    cfg = ModbusConfig(
        id="relays", framing="rtu-over-tcp", host="127.0.0.1", tcp_port=port, device_id=1, **kw
    )
    return ModbusLink(cfg, clock=SystemClock())


def test_write_coil_frame_matches_the_relay_board_manual():
    # Waveshare relay 1 on: 01 05 00 00 FF 00 8C 3A, echoed back
    frame = bytes.fromhex("010500 00FF008C3A".replace(" ", ""))
    device = RtuDevice([frame])
    link = _link(device.port, retries=0)
    try:
        link.write_coil(0, True, device_id=1)
    finally:
        link.close()
        device.close()
    assert device.requests == [frame]


def test_read_soil_probe_registers_dfrobot_example():
    # DFRobot SEN0600 manual: 01 03 00 00 00 03 05 CB -> 01 03 06 02 92 FF 9B 03 E8 D8 0F
    device = RtuDevice([bytes.fromhex("0103060292FF9B03E8D80F")])
    link = _link(device.port, retries=0)
    try:
        registers = link.read_registers("holding", 0, 3, device_id=1)
    finally:
        link.close()
        device.close()
    assert device.requests == [bytes.fromhex("010300000003 05CB".replace(" ", ""))]
    assert decode_registers(registers[0:1], "uint16", "big") * 0.1 == pytest.approx(65.8)
    assert decode_registers(registers[1:2], "int16", "big") * 0.1 == pytest.approx(-10.1)
    assert registers[2] == 1000


def test_exception_response_is_a_protocol_error_naming_device_and_address():
    # 01 83 02 C0 F1: illegal data address
    device = RtuDevice([bytes.fromhex("018302C0F1")])
    link = _link(device.port, retries=0)
    try:
        with pytest.raises(ProtocolError, match=r"device 1: read holding register 7 .*code 2"):
            link.read_registers("holding", 7, 1, device_id=1)
    finally:
        link.close()
        device.close()


def test_no_reply_times_out_with_the_frames_sent():
    device = RtuDevice([None, None])
    link = _link(device.port, retries=1, timeout_s=0.3)
    try:
        with pytest.raises(HardwareTimeoutError, match="no valid reply") as info:
            link.read_bits("input", 0, 8, device_id=1)
    finally:
        link.close()
        device.close()
    assert "01 02 00 00 00 08" in str(info.value)  # the request is in the message


def test_unreachable_device_is_a_hardware_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    link = _link(port, retries=0, timeout_s=0.3)
    try:
        with pytest.raises(HardwareError, match="cannot connect|connection"):
            link.write_coil(0, False, device_id=1)
    finally:
        link.close()


@pytest.mark.parametrize(
    ("value", "datatype", "order", "registers"),
    [
        (-101, "int16", "big", [0xFF9B]),
        (658, "uint16", "big", [0x0292]),
        (-70000, "int32", "big", [0xFFFE, 0xEE90]),
        (-70000, "int32", "little", [0xEE90, 0xFFFE]),
        (4_000_000_000, "uint32", "big", [0xEE6B, 0x2800]),
        (25.0, "float32", "big", [0x41C8, 0x0000]),
        (25.0, "float32", "little", [0x0000, 0x41C8]),
    ],
)
def test_register_maps_round_trip(value, datatype, order, registers):
    assert encode_value(value, datatype, order) == registers
    assert decode_registers(registers, datatype, order) == pytest.approx(value)


def test_encoding_clamps_to_the_type():
    assert encode_value(1e9, "int16", "big") == [0x7FFF]
    assert encode_value(-5, "uint16", "big") == [0]
