"""A streaming network link whose peer vanishes without closing (a serial device server
that lost power) is noticed and reopened; reads never block beyond their timeout."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from realtime import real_time_bound

from chamberd.controller.clock import SystemClock
from chamberd.controller.errors import HardwareTimeoutError
from chamberd.controller.hardware.serial_link import SerialLink


class Streamer:
    """A TCP device server streaming a numbered line every 50 ms to its latest client."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.serving = True  # False: keep every connection open, send nothing
        self.stop = threading.Event()
        self.n = 0
        self.threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def _send(self) -> None:
        while not self.stop.wait(0.05):
            if self.serving and self.conns:
                self.n += 1
                with contextlib.suppress(OSError):
                    self.conns[-1].sendall(f"line {self.n}\r\n".encode())

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        for c in [*self.conns, self.listener]:
            c.close()


@pytest.fixture
def streamer():
    s = Streamer()
    yield s
    s.close()


def test_half_open_connection_is_reopened(no_leaks, streamer):
    link = SerialLink(
        f"socket://127.0.0.1:{streamer.port}",
        baudrate=9600,
        clock=SystemClock(),
        stamped=True,
        idle_reopen_s=(0.3, 5.0),
    )
    try:
        for _ in range(5):
            link.read_line(5.0)
        streamer.serving = False  # the old connection stays open and silent for good
        connections = len(streamer.conns)
        with pytest.raises(HardwareTimeoutError):
            link.read_line(0.2)  # bounded: no line, no hang
        deadline = time.monotonic() + 20  # noqa: TID251 - real time, generous
        while len(streamer.conns) == connections and time.monotonic() < deadline:  # noqa: TID251
            time.sleep(0.02)  # noqa: TID251
        assert len(streamer.conns) > connections and link.reopens >= 1  # it reconnected
        link.drain()
        streamer.serving = True  # to the newest connection only
        assert link.read_line(10.0).startswith("line ")
    finally:
        link.close()


def test_idle_reopen_is_for_network_links_only():
    assert SerialLink("loop://", baudrate=9600).idle_reopen_s is None
    assert SerialLink("/dev/ttyUSB0", baudrate=9600).idle_reopen_s is None
    assert SerialLink("socket://127.0.0.1:1", baudrate=9600).idle_reopen_s == (2.0, 60.0)


def test_read_never_blocks_beyond_its_timeout_when_the_server_is_gone():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: connections refused
    link = SerialLink(f"socket://127.0.0.1:{port}", baudrate=9600, stamped=True)
    try:
        start = time.monotonic()  # noqa: TID251 - real time: a bound, not a measurement
        with pytest.raises(HardwareTimeoutError, match="not connected"):
            link.read_line(0.5)
        assert time.monotonic() - start < real_time_bound(10.0)  # noqa: TID251
    finally:
        link.close()
