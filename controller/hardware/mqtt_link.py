"""MQTT links: the only module of chamberd that imports paho-mqtt (2.x).

The LI-COR LI-7810/7820 run their own broker (Eclipse Mosquitto on port 1883) and publish
every record on it; a client subscribes. :class:`MqttLink` is that client, and the
simulator's publisher: it connects in paho's background thread (``connect_async`` and
``loop_start``), which reconnects after a lost connection with paho's exponential back-off
(``reconnect_delay_set``) and re-subscribes in ``on_connect``; every message is stamped by
the injected clock on arrival, in that thread, and queued. :meth:`MqttLink.read` waits with
a deadline, never forever. paho's exceptions (and the socket errors it lets through) are
translated here into :class:`~chamberd.controller.errors.HardwareError`; every message in
and out is traced at DEBUG, and the last few are kept for error messages.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import logging
import os
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from chamberd.controller.clock import Clock, SystemClock
from chamberd.controller.config import mqtt_endpoint
from chamberd.controller.errors import HardwareError, HardwareTimeoutError

__all__ = ["MqttLink", "MqttMessage", "parse_mqtt_url"]

log = logging.getLogger(__name__)

_COUNTER = itertools.count(1)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:port]``; :class:`HardwareError` if it is not one.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1883")
    ('127.0.0.1', 1883)
    >>> parse_mqtt_url("mqtt://analyser.local")
    ('analyser.local', 1883)
    """
    endpoint = mqtt_endpoint(url)
    if endpoint is None:
        raise HardwareError(f"not an MQTT broker URL (mqtt://host:port): {url!r}")
    return endpoint


@dataclass(frozen=True)
class MqttMessage:
    """One message as it arrived: topic, raw payload, and the clock's readings then."""

    topic: str
    payload: bytes
    time: dt.datetime
    monotonic_s: float


class MqttLink:
    """A client of one broker: subscribes to ``topics`` (and re-subscribes on reconnect).

    Parameters
    ----------
    url : str
        ``mqtt://host:port`` of the broker.
    topics : sequence of str
        Topics to subscribe to (none for a publisher).
    name : str
        Used in messages ("LI-7810 T1").
    clock : Clock
        Stamps messages; deadlines.
    client_id : str, optional
        Unique per broker (default: ``chamberd-<pid>-<n>``); two clients with one id throw
        each other off the broker.
    backoff_s : (float, float)
        paho's reconnection delay, doubling from the first to the second.
    """

    def __init__(
        self,
        url: str,
        *,
        topics: tuple[str, ...] | list[str] = (),
        name: str = "MQTT broker",
        clock: Clock | None = None,
        client_id: str | None = None,
        backoff_s: tuple[float, float] = (0.5, 10.0),
        keepalive_s: int = 10,
        max_queued: int = 4096,
    ) -> None:
        self.url = url
        self.host, self.port = parse_mqtt_url(url)
        self.topics = tuple(topics)
        self.name = name
        self.clock = clock or SystemClock()
        self.client_id = client_id or f"chamberd-{os.getpid()}-{next(_COUNTER)}"
        self.backoff_s = backoff_s
        self.keepalive_s = keepalive_s
        self.frames: collections.deque[str] = collections.deque(maxlen=8)
        self._messages: collections.deque[MqttMessage] = collections.deque(maxlen=max_queued)
        self._arrived = threading.Condition()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()  # connected and subscribed
        self._subscribe_mid: int | None = None
        self.connects = 0  # successful connections (1 + reconnections)
        self.last_error = ""

    # --- connection -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.name} on {self.url}"

    def last_frames(self) -> str:
        return " | ".join(self.frames) if self.frames else "(nothing exchanged)"

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def open(self) -> None:
        """Start connecting (in the background; reconnects by itself). Idempotent."""
        if self._client is not None:
            return
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        low, high = self.backoff_s
        client.reconnect_delay_set(min_delay=max(1, round(low)), max_delay=max(1, round(high)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        try:
            client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
            client.loop_start()
        except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
            raise HardwareError(f"{self._where()}: cannot start the MQTT client: {exc}") from exc
        self._client = client
        log.debug("%s: connecting as %s", self._where(), self.client_id)

    def wait_connected(self, timeout_s: float) -> None:
        """Block until connected; :class:`HardwareTimeoutError` after ``timeout_s``."""
        self.open()
        deadline = self.clock.monotonic() + timeout_s
        speed = float(getattr(self.clock, "speed", 1.0))
        while not self._connected.is_set():
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                why = f" ({self.last_error})" if self.last_error else ""
                raise HardwareTimeoutError(
                    f"{self._where()}: broker not reachable within {timeout_s:g} s{why}"
                )
            self._connected.wait(min(0.5, max(0.001, remaining / speed)))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # a dead connection
            with contextlib.suppress(OSError, ValueError, mqtt.WebsocketConnectionError):
                client.disconnect()
            client.loop_stop()
        self._connected.clear()
        with self._arrived:
            self._messages.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("%s: %s", self._where(), self.last_error)
            return
        self.connects += 1
        if self.connects > 1:
            log.info("%s: reconnected", self._where())
        if not self.topics:
            self._connected.set()
            return
        # ready once the broker acknowledged the subscriptions (SUBACK): a message
        # published before that would not reach us
        _result, mid = client.subscribe([(topic, 0) for topic in self.topics])
        self._subscribe_mid = mid
        for topic in self.topics:
            self.frames.append(f">SUBSCRIBE {topic}")
            log.debug("%s > SUBSCRIBE %s", self._where(), topic)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            self.last_error = f"subscription refused: {', '.join(refused)}"
            log.warning("%s: %s", self._where(), self.last_error)
            return
        self.frames.append("<SUBACK")
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self.last_error = f"disconnected: {reason_code}"
        if was and self._client is not None:
            log.warning("%s: connection lost (%s); paho reconnects", self._where(), reason_code)
        with self._arrived:
            self._arrived.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        now, mono = self.clock.now(), self.clock.monotonic()
        payload = bytes(message.payload)
        log.debug("%s < %s %r", self._where(), message.topic, payload[:500])
        self.frames.append(f"<{message.topic} {payload[:100]!r}")
        with self._arrived:
            self._messages.append(MqttMessage(message.topic, payload, now, mono))
            self._arrived.notify_all()

    # --- I/O ------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> MqttMessage:
        """The next message; :class:`HardwareTimeoutError` when none comes in time."""
        self.open()
        deadline = self.clock.monotonic() + timeout_s
        speed = float(getattr(self.clock, "speed", 1.0))
        with self._arrived:
            while not self._messages:
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    state = "" if self._connected.is_set() else " (not connected"
                    if state and self.last_error:
                        state += f": {self.last_error}"
                    state += ")" if state else ""
                    raise HardwareTimeoutError(
                        f"{self._where()}: no message within {timeout_s:g} s{state}; "
                        f"last frames: {self.last_frames()}"
                    )
                self._arrived.wait(min(0.5, max(0.001, remaining / speed)))
            return self._messages.popleft()

    def drain(self) -> None:
        with self._arrived:
            self._messages.clear()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> bool:
        """Publish (QoS 0); False when not connected (the message is dropped, as an
        instrument's broker drops data nobody is connected to receive)."""
        self.open()
        assert self._client is not None
        if not self._connected.is_set():
            return False
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            info = self._client.publish(topic, data, qos=0, retain=retain)
        except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
            raise HardwareError(f"{self._where()}: publish to {topic} failed: {exc}") from exc
        log.debug("%s > %s %r", self._where(), topic, data[:500])
        return info.rc == mqtt.MQTT_ERR_SUCCESS
