"""Calibration commands of the LI-8x0 and GMP343 drivers: exact bytes, over a real pty."""

from __future__ import annotations

import datetime as dt

import pytest

from chamberd.controller.clock import ScaledClock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware import GMP343Settings, LI8x0Calibration
from chamberd.controller.hardware.gmp343 import GMP343Analyser
from chamberd.controller.hardware.li8x0 import LI8x0Analyser, cal_command
from chamberd.controller.hardware.serial_link import SerialLink

ACK = b"<li850><ack>TRUE</ack></li850>\r\n"
NAK = b"<li850><ack>FALSE</ack></li850>\r\n"
DAY = dt.date(2026, 7, 1)


@pytest.fixture
def clock():
    return ScaledClock(speed=20.0)  # the 5 s average and the ACK timeouts in 1/20


@pytest.fixture
def analyser(pty_device, clock):
    link = SerialLink(pty_device.url, baudrate=9600, eol=b"\n", name="LI-850", clock=clock)
    link.open()  # pyserial flushes input on open: open before the device speaks
    driver = LI8x0Analyser(link, model="li850", clock=clock)
    yield driver
    driver.close()


def test_the_driver_implements_the_calibration_port(analyser):
    assert isinstance(analyser, LI8x0Calibration)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda a: a.zero_co2(DAY),
            b"<li850><cal><date>2026-07-01</date><co2zero>true</co2zero></cal></li850>\n",
        ),
        (
            lambda a: a.span_co2(1000.0, DAY),
            b"<li850><cal><date>2026-07-01</date><co2span>1000</co2span></cal></li850>\n",
        ),
        (
            lambda a: a.span2_co2(450.25, DAY),
            b"<li850><cal><date>2026-07-01</date><co2span2>450.25</co2span2></cal></li850>\n",
        ),
        (
            lambda a: a.zero_h2o(DAY),
            b"<li850><cal><date>2026-07-01</date><h2ozero>true</h2ozero></cal></li850>\n",
        ),
    ],
)
def test_calibration_commands_are_the_documented_xml_and_need_the_ack(
    analyser, pty_device, clock, call, expected
):
    # a data line before the ACK is skipped, as while streaming
    pty_device.send(b"<li850><data><co2>401.0</co2></data></li850>\r\n" + ACK)
    start = clock.monotonic()
    sent = call(analyser)
    assert sent.encode() + b"\n" == expected
    assert pty_device.received(until=b"</li850>\n") == expected
    assert clock.monotonic() - start >= 5.0  # the instrument's 5 s average is waited for


def test_ack_false_is_a_protocol_error(analyser, pty_device):
    pty_device.send(NAK)
    with pytest.raises(ProtocolError, match="ACK FALSE"):
        analyser.span_co2(1000.0, DAY)


def test_no_ack_times_out_and_the_command_is_never_resent(analyser, pty_device):
    with pytest.raises(HardwareTimeoutError, match="no ACK"):
        analyser.zero_co2(DAY)
    assert pty_device.received().count(b"<co2zero>") == 1  # a resent zero would average twice


def test_span_values_must_be_positive_and_finite():
    with pytest.raises(ValueError, match="span gas value"):
        cal_command("li850", "co2span", DAY, 0.0)
    with pytest.raises(ValueError, match="finite"):
        cal_command("li850", "co2span", DAY, float("nan"))


def test_calibration_state_reads_cal_and_poly(analyser, pty_device):
    pty_device.send(
        b"<li850><cal><co2lastzero>2026-06-01</co2lastzero><co2kzero>0.9213</co2kzero>"
        b"<co2lastspan>2026-06-01</co2lastspan><co2kspan>1.0312</co2kspan></cal></li850>\r\n"
        + ACK
        + b"<li850><poly><date>HGA 2025-01-10</date><co2><a1>0.15</a1></co2></poly></li850>\r\n"
        + ACK
    )
    state = analyser.calibration_state()
    assert state == {
        "cal/co2lastzero": "2026-06-01",
        "cal/co2kzero": "0.9213",
        "cal/co2lastspan": "2026-06-01",
        "cal/co2kspan": "1.0312",
        "poly/date": "HGA 2025-01-10",
        "poly/co2/a1": "0.15",
    }
    assert pty_device.received(until=b"</li850>\n</li850>\n") in (
        b"<li850><cal>?</cal></li850>\n<li850><poly>?</poly></li850>\n",
        b"<li850><cal>?</cal></li850>\n",
    )


def test_calibration_state_without_cal_values_is_a_protocol_error(analyser, pty_device):
    pty_device.send(ACK)
    with pytest.raises(ProtocolError, match="no <cal> values"):
        analyser.calibration_state()


def test_readings_carry_the_flow(analyser, pty_device):
    pty_device.send(b"<li850><data><co2>401.5</co2><flowrate>0.812</flowrate></data></li850>\r\n")
    assert analyser.read(1.0).flow_l_min == pytest.approx(0.812)


@pytest.fixture
def probe(pty_device, clock):
    link = SerialLink(pty_device.url, baudrate=19200, eol=b"\r", name="GMP343", clock=clock)
    link.open()
    driver = GMP343Analyser(link, clock=clock)
    yield driver
    driver.close()


def test_gmp343_compensation_queries_each_setting_with_output_stopped(probe, pty_device):
    assert isinstance(probe, GMP343Settings)
    pty_device.send(
        b">\r\n"  # S
        b"Pressure compensation    : ON\r\n>\r\n"
        b"Pressure (hPa)           : 880.000\r\n>\r\n"
        b"Temperature compensation : ON\r\n>\r\n"
        b"Temperature (C)          : 18.40\r\n>\r\n"
        b"Humidity compensation    : OFF\r\n>\r\n"
        b"Humidity (%RH)           : 0.000\r\n>\r\n"
        b"Oxygen compensation      : ON\r\n>\r\n"
        b"Oxygen (%)               : 20.950\r\n>\r\n"
    )
    assert probe.compensation() == {
        "pressure_on": True,
        "pressure_hpa": 880.0,
        "temperature_on": True,
        "temperature_degc": 18.4,
        "humidity_on": False,
        "humidity_pct": 0.0,
        "oxygen_on": True,
        "oxygen_pct": 20.95,
    }
    assert pty_device.received(until=b"R\r") == b"S\rPC\rP\rTC\rT\rRHC\rRH\rOC\rO2\rR\r"


def test_gmp343_set_compensation_and_errs(probe, pty_device):
    pty_device.send(b">\r\nPressure (hPa)           : 880.000\r\n>\r\n")
    probe.set_compensation(pressure_hpa=880.0)
    assert pty_device.received(until=b"R\r") == b"S\rP 880.00\rR\r"
    pty_device.send(b">\r\nOK: No errors detected.\r\n>\r\n")
    assert probe.errors() == []
    pty_device.send(b">\r\nE: Sensor heater failure\r\n>\r\n")
    assert probe.errors() == ["E: Sensor heater failure"]
    pty_device.send(b">\r\nError: P out of range 700 ... 1300\r\n>\r\n")
    with pytest.raises(ProtocolError, match="refused 'P 5000.00'"):
        probe.set_compensation(pressure_hpa=5000)
    with pytest.raises(ValueError, match="temperature_on"):
        probe.set_compensation(temperature_degc=20.0)
