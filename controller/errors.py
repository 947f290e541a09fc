"""The one exception tree of chamberd.

Every error chamberd raises on purpose is a :class:`ChamberError`. Each branch also inherits
the builtin that callers would naturally catch, so ``except ValueError`` keeps working for
code that does not know our names::

    ChamberError (Exception)
     +-- ConfigError (ValueError)            bad site.toml, bad command-line value
     +-- DataFileError (ValueError)          an instrument or import file we cannot read
     |    +-- TruncatedObservationError      an observation cut short: reported, never refitted
     +-- FitError (ArithmeticError)          a trace that cannot be fitted at all
     +-- HardwareError (OSError)             a device did not do what it was told
     |    +-- HardwareTimeoutError (TimeoutError)
     +-- ProtocolError (ValueError)          bytes on a wire that do not parse, NAK, bad CRC
     +-- StorageError (OSError)              the site or central database failed
     +-- SyncError (ConnectionError)         the central database is unreachable or refused

Foreign exceptions (pyserial, pymodbus, sqlite3, psycopg) are translated at the adapter with
``raise ... from``. ``chamberd.fitting`` does not import this module (it imports nothing of
ours); it raises plain ``ValueError`` for invalid arguments, and callers translate.
Only the command line turns these errors into messages and exit codes.

:func:`operator_message` is the one place that turns an error into the short line an
operator reads (in the log at INFO and above, in events, alarms and ``status``): one line,
the device's own frame trace (``; last frames: ...``, kept for DEBUG and for an event's
``data``) cut off, transport jargon said plainly.
"""

from __future__ import annotations

import re

__all__ = [
    "ChamberError",
    "ConfigError",
    "DataFileError",
    "FitError",
    "HardwareError",
    "HardwareTimeoutError",
    "ProtocolError",
    "StorageError",
    "SyncError",
    "TruncatedObservationError",
    "operator_message",
]

#: where an adapter's frame trace starts in an error's text (everything after it is DEBUG)
TRACE_MARK = "; last frames:"

#: transport wording (pyserial, sockets, pymodbus) and what an operator reads instead
_PLAIN = (
    (
        re.compile(r"could not open port \S+: \[Errno 111\] Connection refused"),
        "connection refused",
    ),
    (re.compile(r"\[Errno 111\] Connection refused"), "connection refused"),
    (re.compile(r"\[Errno 113\] No route to host"), "no route to host"),
    (re.compile(r"\[Errno 110\] Connection timed out"), "connection timed out"),
    (
        re.compile(r"\[Errno 2\] (could not open port [^:]+: )?No such file or directory[^;]*"),
        "no such device",
    ),
    (re.compile(r"Attempting to use a port that is not open"), "not connected"),
    (re.compile(r"port not available for writing"), "not connected"),
    (re.compile(r"Modbus Error: \[[A-Za-z/ ]+\] "), ""),
    (
        re.compile(r"No response received after (\d+) retries, continue with next request"),
        r"no response after \1 retries",
    ),
)


def operator_message(error: BaseException | str, limit: int = 200) -> str:
    """One short line of an error for people: which device, what failed.

    The frame trace after ``; last frames:`` is cut off (it stays in DEBUG logs and an
    event's ``data``), whitespace is collapsed, transport jargon is said plainly, and the
    line is at most ``limit`` characters.

    >>> operator_message("analyser irga1 (socket://h:1): port not available for writing; "
    ...                  "last frames: >'<li850>...'")
    'analyser irga1 (socket://h:1): not connected'
    """
    text = " ".join(str(error).split())
    text = text.split(TRACE_MARK, 1)[0]
    for pattern, plain in _PLAIN:
        text = pattern.sub(plain, text)
    if not text:
        text = type(error).__name__ if isinstance(error, BaseException) else "error"
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


class ChamberError(Exception):
    """Root of every error chamberd raises on purpose."""

    exit_code = 1


class ConfigError(ChamberError, ValueError):
    """Invalid configuration or command-line value; the message names the field."""

    exit_code = 2


class DataFileError(ChamberError, ValueError):
    """A data file that cannot be read.

    ``path``, ``line`` (1-based) and ``observation`` (1-based order in the file) say where,
    when known; the message always names the file.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        observation: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.observation = observation
        self.reason = message
        where = []
        if path is not None:
            where.append(str(path))
        if observation is not None:
            where.append(f"observation {observation}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class TruncatedObservationError(DataFileError):
    """An observation whose trace stops short of its observation length."""


class FitError(ChamberError, ArithmeticError):
    """A trace that cannot be fitted at all (too few points, no finite values)."""


class HardwareError(ChamberError, OSError):
    """A device did not respond as commanded.

    ``device`` names the part that failed as the daemon's health table does
    (``modbus:<line>``), when the adapter knows it (None otherwise).
    """

    device: str | None = None


class HardwareTimeoutError(HardwareError, TimeoutError):
    """A device did not answer in time."""


class ProtocolError(ChamberError, ValueError):
    """Bytes on a wire that do not parse, a negative acknowledgement, a bad checksum."""


class StorageError(ChamberError, OSError):
    """The site or central database failed."""


class SyncError(ChamberError, ConnectionError):
    """The central database is unreachable or refused a batch."""
