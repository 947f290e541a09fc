"""Line-oriented serial links: the only module of chamberd that imports pyserial.

Every port is opened with ``serial.serial_for_url``, so ``/dev/serial/by-id/...``,
``socket://host:port`` (serial device servers in the field), ``loop://`` and a pty's
``/dev/pts/N`` take one code path. :class:`SerialLink` reads lines with a deadline (never
blocking forever), keeps the last frames for error messages, traces every frame at DEBUG,
and reopens a dropped port with exponential backoff. pyserial's exceptions are translated
here into :class:`~chamberd.controller.errors.HardwareError`.

A link made with ``stamped=True`` (streaming analysers) reads in a background thread and
stamps every line with the clock when its last byte arrived, so a sample's time does not
depend on how busy the reading thread was (a database write, a fit, another group).

A network link (``socket://``, ``rfc2217://``) can die without an error: a serial device
server that reboots or loses power leaves the client's TCP connection open and silent. The
reader of a streaming link therefore learns the stream's interval and, when nothing has
arrived for three intervals (at least ``idle_reopen_s[0]``), reopens the port, backing off
(doubling up to ``idle_reopen_s[1]``) while nothing comes: the link is back well before a
cycle's silence limit, and the first closure after the device returns measures.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import statistics
import threading

import serial

from chamberd.controller.clock import Clock, SystemClock
from chamberd.controller.errors import HardwareError, HardwareTimeoutError, operator_message

__all__ = ["SerialLink"]

log = logging.getLogger(__name__)


def _close_serial(port: serial.SerialBase) -> None:
    """Close ``port``, and its socket for ``socket://`` ports: pyserial 3.5 forgets the
    socket without closing it when ``shutdown`` fails (the peer already reset it)."""
    sock = getattr(port, "_socket", None)
    with contextlib.suppress(serial.SerialException, OSError):  # closing a dead port
        port.close()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


class SerialLink:
    """A serial port that reads and writes whole lines.

    Parameters
    ----------
    url : str
        Device path or pyserial URL.
    baudrate : int
        Line speed (8N1).
    eol : bytes
        Line terminator written after commands (LI-COR wants LF; Vaisala CR).
    name : str
        Used in messages ("analyser irga1 (socket://127.0.0.1:40001): not connected").
    clock : Clock
        For deadlines and backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        eol: bytes = b"\n",
        name: str = "serial device",
        clock: Clock | None = None,
        max_line: int = 4096,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        stamped: bool = False,
        max_queued: int = 4096,
        idle_reopen_s: tuple[float, float] | None = (2.0, 60.0),
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.eol = eol
        self.name = name
        self.clock = clock or SystemClock()
        self.max_line = max_line
        self.backoff_s = backoff_s
        self.frames: collections.deque[str] = collections.deque(maxlen=8)
        self._port: serial.SerialBase | None = None
        self._buffer = bytearray()
        self._lock = threading.RLock()
        self._failures = 0
        self._next_attempt = 0.0
        self.stamped = stamped
        self._lines: collections.deque[tuple[str, dt.datetime, float]] = collections.deque(
            maxlen=max_queued
        )
        self._arrived = threading.Condition()
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        # idle detection (stamped network links): the stream's gaps, the last arrival
        network = url.split("://", 1)[0].lower() in ("socket", "rfc2217")
        self.idle_reopen_s = idle_reopen_s if network else None
        self._gaps: collections.deque[float] = collections.deque(maxlen=16)
        self._last_arrival: float | None = None
        self._opened_at = 0.0
        self._idle_reopens = 0
        self.reopens = 0  # times the port was reopened after a drop or a silent stretch
        # the last time the port failed with an error (monotonic), and the error
        self.last_drop: tuple[float, str] | None = None

    # --- connection -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.name} ({self.url})"

    @property
    def where(self) -> str:
        """The device and its port, for messages: ``analyser irga1 (socket://h:4001)``."""
        return self._where()

    def state(self) -> str:
        """``"not connected, "`` while the port is closed (it cannot be reopened), else
        empty: the start of a message about a read that got nothing."""
        return "" if self._port is not None else "not connected, "

    def lost_since(self, since_s: float | None) -> str:
        """The start of a message about a read that got nothing: ``"link lost (read failed:
        socket disconnected), "`` when the port failed after monotonic time ``since_s``
        (None: ever), then :meth:`state`."""
        drop = self.last_drop
        lost = ""
        if drop is not None and (since_s is None or drop[0] > since_s):
            lost = f"link lost ({drop[1]}), "
        return lost + self.state()

    def last_frames(self) -> str:
        return " | ".join(self.frames) if self.frames else "(nothing exchanged)"

    def _fail(self, message: str, cause: BaseException | None = None) -> HardwareError:
        return HardwareError(f"{self._where()}: {message}; last frames: {self.last_frames()}")

    def open(self) -> None:
        """Open the port now; :class:`HardwareError` if it cannot be opened."""
        with self._lock:
            if self._port is not None:
                return
            port = None
            try:
                port = serial.serial_for_url(
                    self.url,
                    baudrate=self.baudrate,
                    timeout=0.05,
                    write_timeout=2.0,
                    do_not_open=True,
                )
                port.open()
                self._port = port
            except (serial.SerialException, OSError, ValueError) as exc:
                if port is not None:  # a socket:// connected, then failed: close it now
                    _close_serial(port)
                self._failures += 1
                delay = min(self.backoff_s[0] * 2 ** (self._failures - 1), self.backoff_s[1])
                self._next_attempt = self.clock.monotonic() + delay
                raise self._fail(f"cannot open: {exc}") from exc
            self._failures = 0
            self._buffer.clear()
            self._opened_at = self.clock.monotonic()
            log.debug("%s: opened", self._where())

    def close(self) -> None:
        """Stop the reader thread (if any) and close the port."""
        reader = self._reader
        if reader is not None:
            self._stop.set()
            reader.join(timeout=5.0)
            self._reader = None
            self._stop = threading.Event()
        self._close_port()
        with self._arrived:
            self._lines.clear()

    def _close_port(self) -> None:
        with self._lock:
            port, self._port = self._port, None
            self._buffer.clear()
            self._last_arrival = None  # the next gap counts from the reopening
        if port is not None:
            _close_serial(port)

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def _drop(self, exc: BaseException) -> None:
        log.warning("%s: link lost (%s); will reopen", self._where(), operator_message(exc, 120))
        self.reopens += 1
        self.last_drop = (self.clock.monotonic(), operator_message(exc, 80))
        self._close_port()
        self._failures += 1
        delay = min(self.backoff_s[0] * 2 ** (self._failures - 1), self.backoff_s[1])
        self._next_attempt = self.clock.monotonic() + delay

    def _ensure_open(self, deadline: float, *, now_first: bool = False) -> bool:
        """Try to (re)open before ``deadline``, respecting the backoff (``now_first``: one
        attempt at once first, for a command the caller is waiting on); True when open."""
        if now_first and self._port is None:
            with contextlib.suppress(HardwareError):
                self.open()
        while self._port is None:
            now = self.clock.monotonic()
            if now >= deadline:
                return False
            if now < self._next_attempt:
                self.clock.sleep(min(self._next_attempt, deadline) - now)
                continue
            try:
                self.open()
            except HardwareError:
                continue
        return True

    # --- I/O ------------------------------------------------------------------------------

    def write_line(self, text: str) -> None:
        """Write ``text`` and the line terminator; reopens a dropped port once."""
        data = text.encode("ascii", errors="replace") + self.eol
        with self._lock:
            for attempt in range(2):
                if not self._ensure_open(self.clock.monotonic() + 2.0, now_first=True):
                    raise self._fail("not connected")
                assert self._port is not None
                try:
                    self._port.write(data)
                    self._port.flush()
                except (serial.SerialException, OSError) as exc:
                    self._drop(exc)
                    if attempt:
                        raise self._fail(f"write failed: {exc}", exc) from exc
                    continue
                self.frames.append(f">{text!r}")
                log.debug("%s > %r", self._where(), data)
                return

    def read_line(self, timeout_s: float) -> str:
        """The next complete line (without its terminator), decoded as ASCII.

        Raises
        ------
        HardwareTimeoutError
            When no complete line arrives within ``timeout_s`` (reopening a dropped link
            counts against it).
        """
        return self.read_stamped(timeout_s)[0]

    def read_stamped(self, timeout_s: float) -> tuple[str, dt.datetime, float]:
        """The next line with the wall and monotonic clock readings of its arrival."""
        if self.stamped:
            return self._next_queued(timeout_s)
        line = self._read_line(timeout_s)
        return line, self.clock.now(), self.clock.monotonic()

    # --- the background reader (stamped links) --------------------------------------------

    def _next_queued(self, timeout_s: float) -> tuple[str, dt.datetime, float]:
        deadline = self.clock.monotonic() + timeout_s
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(
                target=self._read_forever, name=f"reader {self.name}", daemon=True
            )
            self._reader.start()
        speed = float(getattr(self.clock, "speed", 1.0))  # site seconds per real second
        with self._arrived:
            while not self._lines:
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    state = "" if self._port is not None else " (not connected)"
                    raise HardwareTimeoutError(
                        f"{self._where()}: no line within {timeout_s:g} s{state}; "
                        f"last frames: {self.last_frames()}"
                    )
                # woken at once by each line; otherwise at the deadline, at most a second
                # later (every wake-up is a system call)
                self._arrived.wait(min(1.0, max(0.001, remaining / speed)))
            return self._lines.popleft()

    def _idle_limit(self) -> float | None:
        """Seconds without a byte after which the port is reopened (None: never)."""
        if self.idle_reopen_s is None or len(self._gaps) < 3:
            return None
        low, high = self.idle_reopen_s
        limit = max(3.0 * statistics.median(self._gaps), low)
        return min(limit * 2**self._idle_reopens, max(high, limit))

    def _check_idle(self, port: serial.SerialBase) -> None:
        limit = self._idle_limit()
        if limit is None:
            return
        now = self.clock.monotonic()
        since = max(self._last_arrival or self._opened_at, self._opened_at)
        if now - since < limit:
            return
        with self._lock:
            if self._port is not port:
                return
            log.info(
                "%s: nothing received for %.1f s; reopening the port (a dropped network "
                "connection gives no error)",
                self._where(),
                now - since,
            )
            self._idle_reopens += 1
            self.reopens += 1
            self._close_port()

    def _read_forever(self) -> None:
        stop = self._stop
        speed = float(getattr(self.clock, "speed", 1.0))  # site seconds per real second
        # wake at least twice a (site) second, to notice a silent stream in time
        wait_s = min(1.0, max(0.02, 0.5 / speed))
        while not stop.is_set():
            with self._lock:
                if not self._ensure_open(self.clock.monotonic() + 0.5):
                    continue
                port = self._port
            assert port is not None
            try:
                # block (briefly) for the first byte, then take whatever has arrived
                # without waiting: one wake-up per burst, and a line is stamped as soon as
                # its last byte is read (socket:// reports in_waiting as 0 or 1, so asking
                # it for the count would read byte by byte)
                port.timeout = wait_s
                chunk = port.read(1)
                if chunk:
                    port.timeout = 0
                    chunk += port.read(65536)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                with self._lock:
                    if self._port is port and not stop.is_set():
                        self._drop(exc)
                continue
            if not chunk:
                self._check_idle(port)
                continue
            now, mono = self.clock.now(), self.clock.monotonic()
            if self._last_arrival is not None and self._idle_reopens == 0:
                self._gaps.append(mono - self._last_arrival)
            self._last_arrival = mono
            self._idle_reopens = 0
            with self._lock:
                self._take(chunk)
                lines = []
                while (line := self._pop_line()) is not None:
                    lines.append((line, now, mono))
            if lines:
                with self._arrived:
                    self._lines.extend(lines)
                    self._arrived.notify_all()

    def _take(self, chunk: bytes) -> None:
        self._buffer.extend(chunk)
        if len(self._buffer) > self.max_line and b"\n" not in self._buffer:
            junk = bytes(self._buffer[: self.max_line])
            del self._buffer[: self.max_line]
            self.frames.append(f"<overlong {junk[:40]!r}...")

    # --- pulling lines in the caller's thread ---------------------------------------------

    def _read_line(self, timeout_s: float) -> str:
        deadline = self.clock.monotonic() + timeout_s
        with self._lock:
            while True:
                line = self._pop_line()
                if line is not None:
                    return line
                if not self._ensure_open(deadline):
                    raise HardwareTimeoutError(
                        f"{self._where()}: no line within {timeout_s:g} s (not connected); "
                        f"last frames: {self.last_frames()}"
                    )
                assert self._port is not None
                try:
                    chunk = self._port.read(max(1, self._port.in_waiting or 1))
                except (serial.SerialException, OSError) as exc:
                    self._drop(exc)
                    continue
                if chunk:
                    self._take(chunk)
                elif self.clock.monotonic() >= deadline:
                    raise HardwareTimeoutError(
                        f"{self._where()}: no line within {timeout_s:g} s; "
                        f"last frames: {self.last_frames()}"
                    )

    def _pop_line(self) -> str | None:
        for terminator in (b"\n", b"\r"):
            index = self._buffer.find(terminator)
            if index >= 0:
                raw = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                text = raw.decode("ascii", errors="replace").strip("\r\n\x00 ")
                if not text:
                    return self._pop_line()
                self.frames.append(f"<{text[:120]!r}")
                log.debug("%s < %r", self._where(), raw)
                return text
        return None

    def drain(self) -> None:
        """Forget buffered input (after a configuration command, before reading replies)."""
        with self._arrived:
            self._lines.clear()
        with self._lock:
            self._buffer.clear()
            if self._port is not None:
                try:
                    self._port.reset_input_buffer()
                except (serial.SerialException, OSError) as exc:
                    self._drop(exc)
