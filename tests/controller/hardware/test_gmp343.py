"""Vaisala GMP343 driver: exact bytes written and parsed, over a real pty."""

from __future__ import annotations

import pytest

from chamberd.controller.clock import SystemClock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware.gmp343 import GMP343Analyser, parse_data_line
from chamberd.controller.hardware.serial_link import SerialLink


@pytest.fixture
def probe(pty_device):
    link = SerialLink(pty_device.url, baudrate=19200, eol=b"\r", name="GMP343")
    link.open()  # pyserial flushes input on open: open before the device speaks
    driver = GMP343Analyser(link, clock=SystemClock())
    yield driver
    driver.close()


def test_configure_writes_exact_commands(probe, pty_device):
    # replies: the first command is echoed, then echo is off; each ends with a prompt
    pty_device.send(b"S\r\n>\r\n>\r\n>\r\nOutput intrv.  : 1 s\r\n>\r\n>\r\n")
    probe.configure(output_interval_s=1)
    written = pty_device.received(until=b"R\r")
    assert written == b"S\rECHO OFF\rSMODE STOP\rINTV 1 s\rFORM CO2 #r #n\rR\r"


def test_reads_plain_and_labelled_lines(probe, pty_device):
    pty_device.send(b"431.7\r\nCO2= 452 ppm\r\n>\r\n 433.9 (ppm)\r\n")
    assert probe.read(1.0).co2_umol_mol == 431.7
    assert probe.read(1.0).co2_umol_mol == 452.0
    assert probe.read(1.0).co2_umol_mol == 433.9  # the bare prompt is skipped


def test_missed_command_is_resent_once(probe, pty_device):
    with pytest.raises(HardwareTimeoutError, match="no '>' prompt"):
        probe._command("INTV 1 s", timeout_s=0.2)
    assert pty_device.received() == b"INTV 1 s\rINTV 1 s\r"


def test_refusal_is_a_protocol_error(probe, pty_device):
    pty_device.send(b"Unknown command\r\n>\r\n")
    with pytest.raises(ProtocolError, match="refused 'S'"):
        probe.configure(output_interval_s=1)


def test_identify(probe, pty_device):
    pty_device.send(b">\r\nGMP343 / 2.0.0\r\nSerial number   : J0123456\r\n>\r\n")
    info = probe.identify()
    assert (info.model, info.serial, info.firmware) == ("GMP343", "J0123456", "2.0.0")


@pytest.mark.parametrize("line", ["T= 25.1 'C", "CO2= abc", "452 %"])
def test_parse_refuses_other_lines(line):
    with pytest.raises(ProtocolError):
        parse_data_line(line)
