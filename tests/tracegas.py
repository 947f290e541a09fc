"""Helpers for the trace-gas analyser tests: sites with laser analysers, MQTT brokers.

Tests publish to the machine's Mosquitto on 127.0.0.1:1883 under topic roots of their own
(the simulator draws a random root per analyser), so parallel runs never collide; a test
that needs a broker to die starts a private Mosquitto (:func:`private_broker`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BROKER = "mqtt://127.0.0.1:1883"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(not port_open(1883), reason="no MQTT broker on 127.0.0.1:1883")
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    """A Mosquitto of the test's own on 127.0.0.1 (stop and start it to fault a broker)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="chamberd-mqtt-")
        self._conf = Path(self._dir.name) / "mosquitto.conf"
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0  # noqa: TID251 - real time: a real process
        while not port_open(self.port):
            if time.monotonic() > deadline:  # noqa: TID251
                raise RuntimeError("private mosquitto did not start")
            time.sleep(0.02)  # noqa: TID251

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


@contextlib.contextmanager
def private_broker() -> Iterator[PrivateBroker]:
    broker = PrivateBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def trace_site(
    site_dict_,
    protocols: tuple[str, ...] = ("li7810",),
    *,
    n_chambers: int = 2,
    broker: str = BROKER,
    chamber_sim: dict | None = None,
    **kwargs,
) -> dict:
    """The bundled simulated site with one analyser group per protocol (irga1, irga2, ...
    become the given laser analysers), chambers dealt in blocks; ``broker`` is where the
    simulated LI-7810/7820 publish (``[sim] mqtt_broker``)."""
    data = site_dict_(n_chambers, len(protocols), **kwargs)
    for k, (analyser, protocol) in enumerate(zip(data["analysers"], protocols, strict=True)):
        analyser["protocol"] = protocol
        if protocol in ("li7810", "li7820"):
            # each instrument runs its own broker (as in the field); the simulator
            # publishes to ``broker`` instead, under a topic root of its own
            analyser["port"] = f"mqtt://192.168.10.{k + 1}:1883"
        if protocol == "picarro":
            analyser["species"] = ["N2O_dry", "CO2_dry", "CH4_dry", "H2O"]
    data.setdefault("sim", {})["mqtt_broker"] = broker
    for chamber in data["chambers"]:
        chamber["sim"] = {**chamber.get("sim", {}), **(chamber_sim or {})}
    return data
