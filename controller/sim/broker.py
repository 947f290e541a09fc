"""An MQTT broker for the simulated LI-7810/7820 when none runs where ``[sim] mqtt_broker``
points: ``chamberd sim`` starts a private Eclipse Mosquitto (the broker the instruments
themselves run) on an ephemeral port of 127.0.0.1 and stops it on exit.

Mosquitto is a system program (Debian package ``mosquitto``), not a Python dependency;
without it, and without a broker, the simulated LI-78x0 cannot publish and
:func:`ensure_broker` says so.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chamberd.controller.clock import Clock
from chamberd.controller.config import mqtt_endpoint
from chamberd.controller.errors import ConfigError, HardwareError

__all__ = ["broker_reachable", "ensure_broker"]


def broker_reachable(url: str, timeout_s: float = 1.0) -> bool:
    endpoint = mqtt_endpoint(url)
    if endpoint is None:
        raise ConfigError(f"sim.mqtt_broker: not an mqtt://host:port URL: {url!r}")
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            return True
    except OSError:
        return False


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    return None


@contextlib.contextmanager
def ensure_broker(url: str, clock: Clock, *, start_timeout_s: float = 10.0) -> Iterator[str]:
    """Yield ``url`` when a broker answers there, else the URL of a private Mosquitto
    started for the duration of the ``with`` block."""
    if broker_reachable(url):
        yield url
        return
    program = _mosquitto()
    if program is None:
        raise HardwareError(
            f"no MQTT broker at {url} for the simulated LI-7810/7820, and mosquitto is not "
            "installed to start one: install it (apt-get install mosquitto) or set "
            "[sim] mqtt_broker to a running broker"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="chamberd-broker-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        process = subprocess.Popen(
            [program, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        private = f"mqtt://127.0.0.1:{port}"
        try:
            waited = 0.0
            while not broker_reachable(private, timeout_s=0.2):
                if process.poll() is not None or waited > start_timeout_s:
                    raise HardwareError(f"could not start mosquitto on 127.0.0.1:{port}")
                clock.sleep(0.05 * float(getattr(clock, "speed", 1.0)))
                waited += 0.05
            yield private
        finally:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
