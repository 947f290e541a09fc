"""Picarro remote command interface: exact exchanges over a real pty, then the simulator
over TCP (ERR: replies, stale measurements, a dropped link)."""

from __future__ import annotations

import threading

import pytest
from tracegas import trace_site

from chamberd.controller.clock import ScaledClock, SystemClock
from chamberd.controller.config import parse_config
from chamberd.controller.errors import HardwareError, HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware import make_analyser
from chamberd.controller.hardware.picarro import PicarroAnalyser, PicarroError
from chamberd.controller.hardware.serial_link import SerialLink
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite

SPECIES = ("N2O_dry", "CO2_dry", "CH4_dry", "H2O")


class Instrument:
    """Plays the analyser on the pty's master side: answers each command from a script."""

    def __init__(self, pty_device, replies: dict[bytes, list[bytes]]):
        self.pty = pty_device
        self.replies = replies
        self.commands: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        buffer = b""
        while not self._stop.is_set():
            buffer += self.pty.received(0.05)
            while b"\r" in buffer:
                command, buffer = buffer.split(b"\r", 1)
                self.commands.append(command)
                queue = self.replies.get(command, [b"ERR:1002\t26/12/02 01:00:00.000"])
                reply = queue.pop(0) if len(queue) > 1 else queue[0]
                self.pty.send(reply + b"\r\n")

    def stop(self):
        self._stop.set()
        self._thread.join(2.0)


@pytest.fixture
def analyser(pty_device):
    link = SerialLink(pty_device.url, baudrate=19200, eol=b"\r", name="G2508")
    link.open()
    driver = PicarroAnalyser(link, species=SPECIES, clock=SystemClock(), reply_timeout_s=1.0)
    yield driver
    driver.close()


def test_configure_and_poll_exact_exchange(analyser, pty_device):
    device = Instrument(
        pty_device,
        {
            b"_Instr_GetStatus": [b"963"],
            b"_Meas_GetConcEx": [
                b"26/12/02 01:00:00.250;0.336;421.503;2.012;1.203",
                b"26/12/02 01:00:00.250;0.336;421.503;2.012;1.203",  # not new: asked again
                b"26/12/02 01:00:01.250;0.337;421.601;2.013;1.204",
            ],
        },
    )
    try:
        analyser.configure(output_interval_s=0.2)
        first = analyser.read(2.0)
        second = analyser.read(2.0)
    finally:
        device.stop()
    assert device.commands == [
        b"_Instr_GetStatus",
        b"_Meas_GetConcEx",
        b"_Meas_GetConcEx",
        b"_Meas_GetConcEx",
    ]
    assert first.n2o_nmol_mol == pytest.approx(336.0)  # ppm x 1000
    assert first.co2_umol_mol == pytest.approx(421.503)
    assert first.ch4_nmol_mol == pytest.approx(2012.0)
    assert first.h2o_mmol_mol == pytest.approx(12.03)  # % x 10
    assert first.dry is True
    assert second.n2o_nmol_mol == pytest.approx(337.0)
    assert analyser.stale == 1  # the repeated reply
    assert analyser.stale_watch.run == 0


def test_err_replies_are_protocol_errors_with_their_code(analyser, pty_device):
    device = Instrument(
        pty_device,
        {b"_Meas_GetConcEx": [b"ERR:3001\t26/12/02 01:00:00.000"]},
    )
    try:
        with pytest.raises(PicarroError, match=r"ERR:3001 \(measurement system disabled\)") as e:
            analyser.read(2.0)
    finally:
        device.stop()
    assert e.value.code == "3001"
    assert isinstance(e.value, ProtocolError)


def test_no_data_yet_is_asked_again_until_the_deadline(analyser, pty_device):
    device = Instrument(pty_device, {b"_Meas_GetConcEx": [b"ERR:3002\t26/12/02 01:00:00.000"]})
    analyser.interval_s = 0.1
    try:
        with pytest.raises(HardwareTimeoutError, match=r"no measurement data \(ERR:3002\)"):
            analyser.read(0.5)
    finally:
        device.stop()
    assert len(device.commands) >= 3


def test_buffer_and_wrong_species_count(analyser, pty_device):
    device = Instrument(
        pty_device,
        {
            b"_Meas_GetBuffer": [
                b"2;\r\n26/12/02 01:00:00.250;0.336;26/12/02 01:00:00.250;421.5;"
                b"26/12/02 01:00:00.250;2.012;26/12/02 01:00:00.250;1.2;\r\n"
                b"26/12/02 01:00:01.250;0.337;26/12/02 01:00:01.250;421.6;"
                b"26/12/02 01:00:01.250;2.013;26/12/02 01:00:01.250;1.2;"
            ],
            b"_Meas_GetConcEx": [b"26/12/02 01:00:00.250;0.336;421.503"],
        },
    )
    try:
        buffered = analyser.read_buffer()
        with pytest.raises(ProtocolError, match="2 values for 4 configured species"):
            analyser.read(2.0)
    finally:
        device.stop()
    assert [m.values["CH4_dry"] for m in buffered] == [2.012, 2.013]


def test_system_error_status_refuses_configure(analyser, pty_device):
    device = Instrument(pty_device, {b"_Instr_GetStatus": [str(963 | 16384).encode()]})
    try:
        with pytest.raises(HardwareError, match="system error"):
            analyser.configure(output_interval_s=1.0)
    finally:
        device.stop()


@pytest.fixture
def rig(make_site_dict, no_leaks):
    data = trace_site(make_site_dict, ("picarro",), n_chambers=1)
    cfg = parse_config(data)
    clock = ScaledClock(speed=10.0)
    site = SimulatedSite(cfg, clock)
    hardware = start_hardware(cfg, clock, site=site, transport="tcp")
    driver = make_analyser(hardware.daemon_config().analyser("irga1"), clock=clock)
    yield site, hardware, driver
    driver.close()
    hardware.stop()


def test_against_the_simulator(rig):
    _site, _hardware, driver = rig
    driver.configure(output_interval_s=1.0)
    readings = [driver.read(5.0) for _ in range(4)]
    assert all(abs(r.n2o_nmol_mol - 335.0) < 15 for r in readings)
    assert all(abs(r.ch4_nmol_mol - 1950.0) < 5 for r in readings)
    assert len({r.monotonic_s for r in readings}) == 4
    buffered = driver.read_buffer()
    assert buffered and all(set(m.values) == set(SPECIES) for m in buffered)


def test_simulated_err_and_stale_faults(rig):
    site, _, driver = rig
    driver.configure(output_interval_s=1.0)
    driver.read(5.0)
    site.faults.analyser_err["irga1"] = "3001"
    with pytest.raises(PicarroError, match="ERR:3001"):
        driver.read(5.0)
    site.faults.analyser_err.clear()
    driver.read(5.0)
    site.faults.stale.add("irga1")
    with pytest.raises(HardwareTimeoutError, match=r"stale data \(timestamps stopped at 20"):
        driver.read(5.0)
    site.faults.stale.clear()
    assert driver.read(5.0).co2_umol_mol > 300


def test_simulated_link_drop_times_out_then_reconnects(rig):
    site, _hardware, driver = rig
    driver.configure(output_interval_s=1.0)
    site.faults.link_down.add("irga1")
    site.clock.sleep(1.0)  # the device server drops the connection
    with pytest.raises(HardwareError, match="link (lost|down)"):
        driver.read(3.0)
    site.faults.link_down.clear()
    for _ in range(10):
        try:
            assert driver.read(5.0).co2_umol_mol > 300
            break
        except HardwareError:
            continue
    else:
        pytest.fail("the link did not come back")
