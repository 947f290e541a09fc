"""LI-8x0 XML driver: exact bytes written and parsed, over a real pty."""

from __future__ import annotations

import time

import pytest
from realtime import real_time_bound

from chamberd.controller.clock import SystemClock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware.li8x0 import LI8x0Analyser, parse_message
from chamberd.controller.hardware.serial_link import SerialLink

ACK = b"<li850><ack>TRUE</ack></li850>\r\n"
NAK = b"<li850><ack>FALSE</ack></li850>\r\n"


@pytest.fixture
def analyser(pty_device):
    link = SerialLink(pty_device.url, baudrate=9600, eol=b"\n", name="LI-850")
    link.open()  # pyserial flushes input on open: open before the device speaks
    driver = LI8x0Analyser(link, model="li850", clock=SystemClock())
    yield driver
    driver.close()


def test_configure_writes_exact_commands_and_checks_each_ack(analyser, pty_device):
    pty_device.send(ACK + ACK)
    analyser.configure(output_interval_s=1)
    written = pty_device.received(until=b"</li850>\n" * 2)
    assert written == (
        b"<li850><rs232><co2>true</co2><h2o>true</h2o><celltemp>true</celltemp>"
        b"<cellpres>true</cellpres><flowrate>true</flowrate><strip>false</strip></rs232>"
        b"</li850>\n"
        b"<li850><cfg><outrate>1</outrate></cfg></li850>\n"
    )


def test_refused_command_is_a_protocol_error(analyser, pty_device):
    pty_device.send(NAK)
    with pytest.raises(ProtocolError, match="ACK FALSE"):
        analyser.configure(output_interval_s=1)


def test_missing_ack_is_resent_once_then_times_out(analyser, pty_device):
    start = time.monotonic()  # noqa: TID251
    with pytest.raises(HardwareTimeoutError, match="no ACK"):
        analyser._command("<li850><cfg><outrate>1</outrate></cfg></li850>", timeout_s=0.3)
    assert time.monotonic() - start < real_time_bound(0.6)  # noqa: TID251 - two attempts
    assert pty_device.received().count(b"<outrate>1</outrate>") == 2


def test_reads_records_with_varying_fields(analyser, pty_device):
    pty_device.send(
        b"<li850><data><celltemp>5.1464400e1</celltemp><cellpres>9.8119945e1</cellpres>"
        b"<co2>4.5745673e2</co2><co2abs>7.0640377e-2</co2abs><ivolt>1.7046508e1</ivolt>"
        b"<raw>3265640,3115406</raw></data></li850>\r\n"
        + ACK
        + b"<LI850><DATA><CO2>648.2</CO2><H2O>6.79</H2O></DATA></LI850>\r\n"
    )
    first = analyser.read(1.0)
    assert first.co2_umol_mol == pytest.approx(457.45673)
    assert first.cell_temperature_degc == pytest.approx(51.4644)
    assert first.cell_pressure_kpa == pytest.approx(98.119945)
    assert first.h2o_mmol_mol is None
    second = analyser.read(1.0)  # the ACK in between is skipped
    assert (second.co2_umol_mol, second.h2o_mmol_mol) == (648.2, 6.79)
    assert second.monotonic_s >= first.monotonic_s


def test_garbled_lines_are_skipped_then_refused(analyser, pty_device):
    pty_device.send(
        b"\x13\x07garbage\r\n<li850><data><co2>4\r\n<li850><data><co2>401.5</co2></data></li850>\r\n"
    )
    assert analyser.read(1.0).co2_umol_mol == 401.5
    pty_device.send(b"<li850><data><co2>nan</co2></data></li850>\r\n" * analyser.max_garbled)
    with pytest.raises(ProtocolError, match="garbled lines in a row"):
        analyser.read(2.0)


def test_silence_times_out_in_bounded_time(analyser):
    start = time.monotonic()  # noqa: TID251
    with pytest.raises(HardwareTimeoutError, match="no data within 0.3 s"):
        analyser.read(0.3)
    assert time.monotonic() - start < real_time_bound(0.3)  # noqa: TID251


def test_identify_parses_the_configuration_reply(analyser, pty_device):
    pty_device.send(
        b"<li850><ver>2.0.4</ver><serialnum>CSD-1234</serialnum><cfg><outrate>1</outrate>"
        b"</cfg></li850>\r\n" + ACK
    )
    info = analyser.identify()
    assert (info.model, info.serial, info.firmware) == ("LI-850", "CSD-1234", "2.0.4")
    assert pty_device.received(until=b"\n") == b"<li850>?</li850>\n"


@pytest.mark.parametrize(
    "line", ["<li850><data><co2>1</co2>", "<!DOCTYPE x><li850/>", "co2=400", "<foo><data/></foo>"]
)
def test_parse_refuses_non_messages(line):
    with pytest.raises(ProtocolError):
        parse_message(line)


def test_raw_frames_are_traced_at_debug(analyser, pty_device, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="chamberd.controller.hardware.serial_link")
    pty_device.send(b"<li850><data><co2>401.5</co2></data></li850>\r\n")
    analyser.read(1.0)
    assert any("<co2>401.5</co2>" in record.getMessage() for record in caplog.records)
