"""LGR/ABB serial stream: exact lines over a real pty, then against the simulator over TCP
(invalid Fit_Flag, stale timestamps, a dropped link, a silent analyser)."""

from __future__ import annotations

import pytest
from tracegas import trace_site

from chamberd.controller.clock import ScaledClock, SystemClock
from chamberd.controller.config import parse_config
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware import make_analyser
from chamberd.controller.hardware.lgr import LAYOUTS, LGRAnalyser, parse_record
from chamberd.controller.hardware.serial_link import SerialLink
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

# a UGGA record: wet CH4/H2O/CO2 and SDs, dry CH4/CO2 and SDs, GasP (Torr), GasT, AmbT,
# ringdowns, Fit_Flag, MIU valve and description
UGGA = (
    b"  12/02/2026 01:00:00.123,1.99000e+00,1.0e-03,1.20000e+04,5.1e+00,4.55000e+02,"
    b"2.0e-01,2.01418e+00,1.0e-03,4.60526e+02,2.0e-01,1.40120e+02,1.0e-02,3.51e+01,"
    b"1.0e-02,3.02e+01,1.0e-02,9.01,1.0e-02,8.99,1.0e-02,3,0,-\r\n"
)


@pytest.fixture
def analyser(pty_device):
    link = SerialLink(pty_device.url, baudrate=115200, eol=b"\r\n", name="UGGA", stamped=True)
    link.open()
    driver = LGRAnalyser(link, model="lgr-ugga", clock=SystemClock(), max_invalid=3)
    yield driver
    driver.close()


def test_reads_the_dry_columns_in_domain_units(analyser, pty_device):
    pty_device.send(UGGA)
    reading = analyser.read(2.0)
    assert reading.ch4_nmol_mol == pytest.approx(2014.18)  # [CH4]d_ppm x 1000
    assert reading.co2_umol_mol == pytest.approx(460.526)  # [CO2]d_ppm
    assert reading.h2o_mmol_mol == pytest.approx(12.0)  # [H2O]_ppm / 1000
    assert reading.cell_pressure_kpa == pytest.approx(140.12 * 0.133322368)
    assert reading.cell_temperature_degc == pytest.approx(35.1)
    assert reading.dry is True
    assert pty_device.received(0.1) == b""  # the stream takes no commands


def test_invalid_fit_flag_records_are_skipped_then_refused(analyser, pty_device):
    bad = UGGA.replace(b",3,0,-", b",0,0,-")
    pty_device.send(bad + UGGA)
    assert analyser.read(2.0).ch4_nmol_mol == pytest.approx(2014.18)
    assert analyser.invalid_total == 1
    pty_device.send(bad * 3)
    with pytest.raises(ProtocolError, match="3 records in a row with Fit_Flag 0 .valid: 3"):
        analyser.read(2.0)
    pty_device.send(bad)  # fewer than max_invalid, then nothing: still the fit's fault
    with pytest.raises(ProtocolError, match=r"no valid record within 0.5 s: 1 records with"):
        analyser.read(0.5)


def test_a_repeated_time_is_stale_and_ends_in_a_timeout_naming_it(analyser, pty_device):
    pty_device.send(UGGA)
    assert analyser.read(2.0).ch4_nmol_mol == pytest.approx(2014.18)
    earlier = UGGA.replace(b"01:00:00.123", b"00:59:59.123")
    pty_device.send(UGGA + UGGA + earlier)  # the measurement froze; the line repeats
    stale = r"stale data \(timestamps stopped at 12/02/2026 01:00:00.123, 3 repeats\) within 0.5 s"
    with pytest.raises(HardwareTimeoutError, match=stale):
        analyser.read(0.5)
    assert analyser.stale == 3
    # a new date is later whichever way the stream writes dates, even at an earlier hour
    pty_device.send(UGGA.replace(b"12/02/2026 01:00:00.123", b"13/02/2026 00:00:01.000"))
    assert analyser.read(2.0).ch4_nmol_mol == pytest.approx(2014.18)
    assert analyser.stale_watch.run == 0


def test_a_header_line_sets_the_columns_by_name(analyser, pty_device):
    columns = list(LAYOUTS["lgr-ugga"].columns)
    order = [columns.index(c) for c in reversed(columns[1:])]  # a firmware's other order
    fields = UGGA.decode().strip().split(",")
    header = ", ".join(["Time", *(columns[i] for i in order)])
    line = ",".join([fields[0], *(fields[i] for i in order)])
    pty_device.send(f"{header}\r\n{line}\r\n".encode())
    assert analyser.read(2.0).co2_umol_mol == pytest.approx(460.526)


def test_garbled_and_short_lines(analyser, pty_device):
    with pytest.raises(ProtocolError, match="fields"):
        parse_record("  12/02/2026 01:00:00.123,1.99", LAYOUTS["lgr-ugga"])
    pty_device.send(b"\x00\x13junk\r\n" + UGGA)
    assert analyser.read(2.0).co2_umol_mol == pytest.approx(460.526)
    assert analyser.garbled == 0


@pytest.fixture
def rig(make_site_dict, no_leaks):
    data = trace_site(make_site_dict, ("lgr-ugga",), n_chambers=1)
    data["analysers"][0]["id"] = "T1"
    data["chambers"][0]["analyser"] = "T1"
    cfg = parse_config(data)
    clock = ScaledClock(speed=10.0)
    site = SimulatedSite(cfg, clock)
    hardware = start_hardware(cfg, clock, site=site, transport="tcp")
    driver = make_analyser(hardware.daemon_config().analyser("T1"), clock=clock)
    yield site, hardware, driver
    driver.close()
    hardware.stop()


def test_against_the_simulator_ambient_air(rig):
    _site, hardware, driver = rig
    assert hardware.analyser_urls["T1"].startswith("socket://127.0.0.1:")
    driver.configure(output_interval_s=1.0)
    readings = [driver.read(5.0) for _ in range(5)]
    ch4 = [r.ch4_nmol_mol for r in readings]
    assert all(abs(v - 1950.0) < 12 for v in ch4), ch4  # ambient, 2 nmol/mol noise
    assert all(r.dry and r.n2o_nmol_mol is None for r in readings)
    assert readings[-1].monotonic_s > readings[0].monotonic_s


def test_simulated_invalid_fit_flag_then_recovery(rig):
    site, _, driver = rig
    driver.configure(output_interval_s=1.0)
    site.faults.fit_invalid.add("T1")
    with pytest.raises(ProtocolError, match="Fit_Flag 0"):
        driver.read(30.0)
    site.faults.fit_invalid.clear()
    driver.discard_pending()
    assert driver.read(5.0).ch4_nmol_mol > 1900


def test_simulated_stale_stream_times_out_then_recovers(rig):
    site, _, driver = rig
    driver.configure(output_interval_s=1.0)
    driver.read(5.0)
    site.faults.stale.add("T1")
    with pytest.raises(HardwareTimeoutError, match=r"stale data \(timestamps stopped at "):
        for _ in range(20):  # lines already queued come first
            driver.read(4.0)
    assert driver.stale >= 2
    site.faults.stale.clear()
    assert driver.read(10.0).ch4_nmol_mol > 1900


def test_simulated_serial_drop_times_out_then_reconnects(rig):
    site, _, driver = rig
    driver.configure(output_interval_s=1.0)
    site.faults.link_down.add("T1")
    with pytest.raises(
        HardwareTimeoutError, match=r"link lost \(.+\), .*no valid record within 4 s"
    ):
        for _ in range(20):  # lines already queued come first
            driver.read(4.0)
    site.faults.link_down.clear()
    assert driver.read(30.0).ch4_nmol_mol > 1900
    assert driver.link.reopens >= 1
