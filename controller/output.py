"""Writing command output for people and programs: CSV cells, atomic files, folders.

Shared by the command modules of every package. A file is written to a temporary file in
its folder and renamed over the target only when the target is a regular file (or does not
exist yet): a device node (``/dev/null``), a FIFO or a terminal is written in place, never
replaced. A file that cannot be written (a folder, no permission, a full disk) is a
:class:`~chamberd.controller.errors.StorageError` naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import click

from .errors import ChamberError, StorageError

__all__ = ["check_output_folder", "flux_text", "open_output", "write_csv", "write_text"]


def flux_text(flux: float, mdf: float | None, flags: str | Iterable[str] | None) -> str:
    """A trace-gas flux for people: ``< MDF`` when flagged ``below_detection`` (flags as a
    ``;``-joined text or a sequence), else the number; the log line, ``chamberd status``
    and the web page all show it so.

    >>> flux_text(0.0123, 0.0257, "below_detection;low_r2"), flux_text(3.30291, 0.025, ())
    ('< 0.0257', '3.303')
    """
    names = flags.split(";") if isinstance(flags, str) else list(flags or ())
    if "below_detection" in names and mdf:
        return f"< {mdf:.3g}"
    return f"{flux:.3f}"


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, ".7g")
    return str(value)


def _mode_for(target: str) -> int:
    """The permission bits a file written at ``target`` should get."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _replaceable(target: str) -> bool:
    """True when ``target`` may be replaced by a rename: missing, or a regular file."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return True
    return stat.S_ISREG(mode)


@contextlib.contextmanager
def open_output(path: str | None, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A text stream for ``path``: stdout for None or ``-``; a regular file atomically
    (temporary file, fsync, rename; nothing is left behind on an error); anything else
    (a device, a FIFO) written directly."""
    if path is None or path == "-":
        yield sys.stdout
        return
    try:
        with _open_file(path, newline) as handle:
            yield handle
    except ChamberError:
        raise
    except OSError as exc:  # a folder, no permission, disk full: a message, not a traceback
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _open_file(path: str, newline: str | None) -> Iterator[IO[str]]:
    # through a symbolic link, the file it names is written (the link stays a link)
    target = os.path.realpath(path)
    if not _replaceable(target):
        with open(target, "w", newline=newline, encoding="utf-8") as handle:
            yield handle
        return
    folder = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=".chamberd-", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600): give it the mode the replaced file had, or
        # what the umask gives a new file, as a plain open() would
        os.chmod(tmp, _mode_for(target))
        with os.fdopen(fd, "w", newline=newline, encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | None, text: str) -> None:
    """Write ``text`` to ``path`` as :func:`open_output` does."""
    with open_output(path) as handle:
        handle.write(text)


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], path: str | None) -> None:
    """Write rows as CSV to ``path`` (see :func:`open_output`), or to stdout."""
    with open_output(path, newline="") as handle:
        _write_rows(handle, rows, columns)


def check_output_folder(path: str | None, option: str) -> None:
    """Refuse an output whose folder does not exist before any work is done."""
    if path is None or path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.BadParameter(f"{path}: folder {folder} does not exist", param_hint=option)
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a folder, not a file", param_hint=option)


def _write_rows(
    handle: io.TextIOBase | Any, rows: Iterable[dict[str, Any]], columns: Sequence[str]
) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_value(row.get(c)) for c in columns])
