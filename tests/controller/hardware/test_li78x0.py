"""LI-7810/7820 over MQTT: exact payloads through the machine's Mosquitto (127.0.0.1:1883).

Each test uses a topic root and client ids of its own, so parallel runs never collide.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from chamberd.controller.clock import SystemClock
from chamberd.controller.errors import HardwareTimeoutError, ProtocolError
from chamberd.controller.hardware.li78x0 import (
    LI78x0Analyser,
    parse_concentration,
    parse_units,
)
from chamberd.controller.hardware.mqtt_link import MqttLink

BROKER = "mqtt://127.0.0.1:1883"


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1.0):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")


@pytest.fixture
def root():
    return f"test-{uuid.uuid4().hex[:12]}/niobrara"


@pytest.fixture
def publisher():
    link = MqttLink(BROKER, name="test publisher", clock=SystemClock())
    link.wait_connected(5.0)
    yield link
    link.close()


def _driver(root, model="li7810", clock=None):
    clock = clock or SystemClock()
    link = MqttLink(
        BROKER, topics=LI78x0Analyser.topics_for(root), name=f"{model} under test", clock=clock
    )
    return LI78x0Analyser(link, model=model, clock=clock, topic_root=root)


# a record as the LI-7810 of ../shared/data/one_hz wrote it (first DATA line), in the
# [value, flag] form one public client shows, mixed with plain numbers
RECORD = {
    "SECONDS": 1666884942,
    "NANOSECONDS": 313442945,
    "NDX": 4509,
    "DIAG": 0,
    "REMARK": "",
    "H2O": [12500.346, 1],
    "CO2": [458.86121, 1],
    "CH4": 2068.0002,
    "CAVITY_P": 39.6316,
    "CAVITY_T": 55.0003,
}


def test_parse_pairs_and_scalars_and_envelope():
    record = parse_concentration(json.dumps(RECORD))
    assert record.values["H2O"] == 12500.346 and record.flags["H2O"] == 1
    assert record.values["CH4"] == 2068.0002 and "CH4" not in record.flags
    assert record.instrument_time_s == pytest.approx(1666884942.313442945)
    wrapped = parse_concentration(json.dumps({"Concentration": RECORD}))
    assert wrapped.values == record.values
    assert parse_units('{"CH4": "ppb", "H2O": ["ppm", 0]}') == {"CH4": "ppb", "H2O": "ppm"}


@pytest.mark.parametrize(
    "payload",
    ["not json", "[1, 2]", '{"SECONDS": 1}', '{"CH4": "high"}', '{"CO2": [null, 1]}'],
)
def test_parse_refuses_garbage(payload):
    with pytest.raises(ProtocolError):
        parse_concentration(payload)


@needs_broker
def test_reads_published_records_in_domain_units(root, publisher, no_leaks):
    driver = _driver(root)
    try:
        driver.configure(output_interval_s=1.0)
        publisher.publish(f"{root}/output/concentration", json.dumps(RECORD))
        reading = driver.read(5.0)
    finally:
        driver.close()
    assert reading.ch4_nmol_mol == pytest.approx(2068.0002)
    assert reading.co2_umol_mol == pytest.approx(458.86121)
    assert reading.h2o_mmol_mol == pytest.approx(12.500346)  # ppm -> mmol/mol
    assert reading.cell_pressure_kpa == pytest.approx(39.6316)
    assert reading.n2o_nmol_mol is None
    assert reading.dry is True
    assert list(driver.link.frames)[:3] == [
        f">SUBSCRIBE {root}/output/concentration",
        f">SUBSCRIBE {root}/output/concentration/units",
        "<SUBACK",
    ]


@needs_broker
def test_units_topic_changes_the_conversion(root, publisher):
    driver = _driver(root, model="li7820")
    try:
        driver.configure(output_interval_s=1.0)
        publisher.publish(f"{root}/output/concentration/units", '{"N2O": "ppm", "H2O": "ppm"}')
        publisher.publish(
            f"{root}/output/concentration",
            '{"SECONDS": 10, "NANOSECONDS": 0, "N2O": [0.335, 1], "H2O": 9000}',
        )
        reading = driver.read(5.0)
    finally:
        driver.close()
    assert reading.n2o_nmol_mol == pytest.approx(335.0)
    assert reading.h2o_mmol_mol == pytest.approx(9.0)
    assert reading.co2_umol_mol is None


@needs_broker
def test_stale_timestamps_end_in_a_timeout_naming_them(root, publisher):
    driver = _driver(root)
    topic = f"{root}/output/concentration"
    try:
        driver.configure(output_interval_s=1.0)
        publisher.publish(topic, json.dumps(RECORD))
        driver.read(5.0)
        for _ in range(3):  # the instrument's clock stopped: the same record again
            publisher.publish(topic, json.dumps(RECORD))
        stale = r"stale data \(timestamps stopped at SECONDS 1666884942, 3 repeats"
        with pytest.raises(HardwareTimeoutError, match=stale):
            driver.read(1.0)
    finally:
        driver.close()
    assert driver.stale == 3


@needs_broker
def test_garbled_messages_are_skipped_then_refused(root, publisher):
    driver = _driver(root)
    driver.max_garbled = 3
    topic = f"{root}/output/concentration"
    try:
        driver.configure(output_interval_s=1.0)
        publisher.publish(topic, b"\x00\xffjunk")
        publisher.publish(topic, json.dumps(RECORD))
        assert driver.read(5.0).ch4_nmol_mol == pytest.approx(2068.0002)
        for _ in range(3):
            publisher.publish(topic, "{")
        with pytest.raises(ProtocolError, match="3 garbled messages in a row"):
            driver.read(5.0)
    finally:
        driver.close()


def test_broker_down_is_a_bounded_timeout(no_leaks):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = SystemClock()
    link = MqttLink(f"mqtt://127.0.0.1:{port}", topics=("x/y",), name="LI-7810 T9", clock=clock)
    driver = LI78x0Analyser(link, clock=clock, topic_root="x", connect_timeout_s=0.5)
    try:
        with pytest.raises(HardwareTimeoutError, match="broker not reachable within 0.5 s"):
            driver.configure(output_interval_s=1.0)
        with pytest.raises(HardwareTimeoutError, match=r"no data \(broker not conn.*within 0.3 s"):
            driver.read(0.3)
    finally:
        driver.close()
