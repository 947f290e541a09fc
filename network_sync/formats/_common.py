"""Checks shared by the instrument-file readers.

Every reader takes its bytes, text, zip members, JSON documents, CSV cells and numbers from
the helpers here, so that each class of bad input has one place where it becomes a
:class:`~chamberd.controller.errors.DataFileError` naming the file (and the line where it is
known):

===================  =====================================================================
helper               what it guards against
===================  =====================================================================
``read_bytes``       unreadable files, files over the format's size limit (checked before
                     reading; the read itself is bounded too)
``decode_text``      bytes that are not UTF-8 (become U+FFFD, reported where they matter)
``split_lines``      CR-only and mixed line ends, form feeds and other line noise
``open_zip``,        damaged archives, unsupported compression methods, the encryption
``read_zip_member``  flag, members declaring more than the limit (refused before
                     decompressing), corrupt deflate streams
``load_json``        invalid JSON, nesting deeper than :data:`MAX_JSON_DEPTH`
                     (``RecursionError``), integers too long to convert
``split_csv_line``   fields over the csv module's limit, stray quotes (one line at a time)
``finite_or_none``,  ``inf``/``nan``/``1e999``/5,000-digit numbers where a finite value or a
``count_or_none``    count is expected (``OverflowError`` from ``int(float("inf"))``)
``zone_name``        time-zone names that are not IANA names (``ZoneInfo`` raises several
                     kinds of error for them)
===================  =====================================================================
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
import zoneinfo
from typing import Any

import numpy as np

from chamberd.controller.errors import DataFileError, TruncatedObservationError

# A trace counts as truncated when it ends more than this many sample intervals before the
# observation length, or when consecutive samples are further apart than this many intervals.
GAP_INTERVALS = 3.0

MIB = 1024 * 1024

#: Largest files the readers accept [bytes]. A file over its limit is refused before it is
#: read, with its size and the limit in the message. Real files are far smaller: an .81x
#: holds about 18 kB per observation, a Smart Chamber JSON about 6 kB per rep, an .82z one
#: observation (well under 1 MB once decompressed), a dense summary about 200 bytes per
#: observation. docs/cli.md and docs/import.md list these figures.
MAX_81X_BYTES = 256 * MIB
MAX_JSON_BYTES = 64 * MIB
MAX_82Z_BYTES = 64 * MIB
MAX_82Z_MEMBER_BYTES = 16 * MIB  # each member once decompressed (data.csv, metadata.json)
MAX_SUMMARY_BYTES = 64 * MIB
#: Limit of :func:`read_bytes` where a caller names none.
DEFAULT_MAX_BYTES = 256 * MIB

#: Deepest nesting of JSON arrays and objects accepted (a Smart Chamber file nests 6 deep,
#: an .82z metadata.json 4).
MAX_JSON_DEPTH = 32

# integers with more digits than this are read as floats (inf when out of range) instead of
# Python ints: int() of 4,300 digits or more raises, and float(int) of ~310 digits overflows
_MAX_INT_DIGITS = 300
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB ({n:,} bytes)" if n >= MIB else f"{n:,} bytes"


def decode_text(raw: bytes) -> str:
    """Bytes of a text file as UTF-8 text, without a leading byte-order mark.

    Undecodable bytes become U+FFFD; they then fail to parse where they matter and are
    reported there, with their line.
    """
    return raw.decode("utf-8-sig", errors="replace")


def split_lines(text: str) -> list[str]:
    """Physical lines of ``text``, split only at CR LF, CR or LF.

    Unlike :meth:`str.splitlines` this does not break at form feeds, vertical tabs or the
    ASCII separators (``\\x1c``-``\\x1e``) that line noise can contain, so line ``n`` of
    the result is line ``n`` in an editor and in our messages.
    """
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # the break that ends the last line does not start another
    return lines


def strip_bom(head: bytes) -> bytes:
    """The first bytes of a file without a UTF-8 byte-order mark."""
    return head.removeprefix(codecs.BOM_UTF8)


def read_bytes(
    path: str | os.PathLike[str],
    limit: int = -1,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "this kind of file",
) -> tuple[str, bytes]:
    """(path as text, the file's bytes); DataFileError when unreadable or too large.

    ``limit`` >= 0 reads only the first ``limit`` bytes (for sniffing a format) and skips
    the size check. Otherwise a file of more than ``max_bytes`` is refused: before reading
    when its size is known, and in any case after ``max_bytes + 1`` bytes (a pipe, a
    device, a file still growing), so memory stays bounded.
    """
    path_text = os.fspath(path)
    try:
        with open(path_text, "rb") as handle:
            if limit >= 0:
                return path_text, handle.read(limit)
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise DataFileError(
                    f"file is {_size(size)}, over the limit of {_size(max_bytes)} for {what}",
                    path=path_text,
                )
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise DataFileError(f"cannot read file: {exc.strerror or exc}", path=path_text) from exc
    if len(raw) > max_bytes:
        raise DataFileError(
            f"file is over the limit of {_size(max_bytes)} for {what}", path=path_text
        )
    return path_text, raw


# --- zip archives ---------------------------------------------------------------------------

# what zipfile raises for damaged archives besides BadZipFile: seeks and reads past the end,
# undecodable names, short structures, methods or flags it does not support
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
)


def open_zip(raw: bytes, *, path: str, what: str) -> zipfile.ZipFile:
    """A zip archive over ``raw`` (already read with a size limit); DataFileError if damaged."""
    try:
        return zipfile.ZipFile(io.BytesIO(raw))
    except _ZIP_ERRORS as exc:
        raise DataFileError(f"not a readable {what} (zip) file: {exc}", path=path) from exc


def read_zip_member(
    archive: zipfile.ZipFile, name: str, *, path: str, max_bytes: int, what: str
) -> bytes:
    """The bytes of member ``name``, refused (DataFileError) rather than read when it is
    encrypted, compressed with a method other than stored or deflate, or declares more than
    ``max_bytes``; a damaged stream is a DataFileError too.

    The declared size is checked before anything is decompressed, and zipfile never returns
    more than the declared size, so a member cannot expand past ``max_bytes`` in memory.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise DataFileError(f"{what} has no {name}", path=path) from None
    if info.flag_bits & 0x1:
        raise DataFileError(
            f"{what} member {name} is encrypted: chamberd reads only unencrypted archives",
            path=path,
        )
    if info.compress_type not in _ZIP_METHODS:
        raise DataFileError(
            f"{what} member {name} uses compression method {info.compress_type}; "
            f"only {' and '.join(_ZIP_METHODS.values())} are supported",
            path=path,
        )
    if info.file_size > max_bytes:
        raise DataFileError(
            f"{what} member {name} is {_size(info.file_size)} once decompressed, over the "
            f"limit of {_size(max_bytes)}",
            path=path,
        )
    try:
        with archive.open(info) as member:
            data = member.read(max_bytes + 1)
    except _ZIP_ERRORS as exc:
        raise DataFileError(f"damaged {what} (zip) file: {name}: {exc}", path=path) from exc
    if len(data) > max_bytes:  # pragma: no cover - zipfile stops at the declared size
        raise DataFileError(f"{what} member {name} is over {_size(max_bytes)}", path=path)
    return data


# --- JSON --------------------------------------------------------------------------------------


_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # digits -> "0"
_LONG_RUN = b"0" * (_MAX_INT_DIGITS + 1)


def _has_long_digit_run(text: str) -> bool:
    """True when ``text`` has a run of more than :data:`_MAX_INT_DIGITS` digits (C speed)."""
    return _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_ONLY)


def _parse_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= _MAX_INT_DIGITS else float(text)


_CONTAINERS = (dict, list)


def _too_deep(doc: Any, limit: int) -> bool:
    """True when the arrays and objects of a parsed JSON document nest deeper than
    ``limit``. Containers whose children are all scalars (the data arrays) are passed over
    at C speed (``set(map(type, ...))``)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        kinds = set(map(type, children))
        if dict not in kinds and list not in kinds:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return False


def load_json(text: str, *, path: str, what: str = "") -> Any:
    """Parse a JSON document; DataFileError (with the line where known) when it is not JSON
    or nests deeper than :data:`MAX_JSON_DEPTH`.

    ``NaN`` and ``Infinity`` are read as floats (readers treat them as missing values); an
    integer of more than 300 digits is read as a float (``inf`` when out of range) rather
    than raising, so it too becomes a missing value where a number is expected.
    """
    subject = f"{what} is " if what else ""
    # the hook costs a Python call per integer: used only where an integer that long exists
    hook = _parse_int if _has_long_digit_run(text) else None
    try:
        doc = json.loads(text, parse_int=hook)
    except json.JSONDecodeError as exc:
        raise DataFileError(
            f"{subject}not valid JSON: {exc.msg}", path=path, line=exc.lineno
        ) from None
    except RecursionError:  # the parser itself ran out of stack
        too_deep = True
    else:
        too_deep = isinstance(doc, dict | list) and _too_deep(doc, MAX_JSON_DEPTH)
    if too_deep:
        raise DataFileError(
            f"{subject}not an instrument file: JSON nested deeper than {MAX_JSON_DEPTH} levels",
            path=path,
        )
    return doc


# --- CSV and numbers ---------------------------------------------------------------------------


def split_csv_line(line: str) -> list[str]:
    """The cells of one CSV line; ValueError (with the reason) when it cannot be split.

    A line without a quote is split at commas (no field-size limit); one with quotes goes
    through the csv module, whose errors (a field over its limit of 131,072 characters, say)
    become ValueError.
    """
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, None where absent, not a number, or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def count_or_none(value: Any) -> int | None:
    """``value`` as a whole number (a count, a port, an iteration number), None where absent,
    not a finite number, or beyond 2**53 (never an instrument's count)."""
    number = finite_or_none(value)
    if number is None or abs(number) > 2.0**53:
        return None
    return round(number)


def shown(value: Any, width: int = 40) -> str:
    """``repr(value)`` cut to about ``width`` characters, for quoting bad input in messages."""
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= width else f"{text[: width - 5]}...{text[-2:]}"


def zone_name(value: Any) -> str | None:
    """``value`` where it is an IANA time-zone name known here, else None."""
    if not isinstance(value, str) or not value or len(value) > 255:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, LookupError, OSError):
        return None
    return value


# --- completeness ----------------------------------------------------------------------------


def check_complete(
    elapsed_s: np.ndarray,
    obs_length_s: float | None,
    *,
    path: str,
    index: int,
    line: int | None = None,
    notes: str = "",
) -> None:
    """Raise :class:`TruncatedObservationError` for a closed-chamber trace with holes.

    ``obs_length_s`` None skips the end check (formats that do not state the length).
    """
    closed = np.sort(elapsed_s[np.isfinite(elapsed_s) & (elapsed_s >= 0)])
    suffix = f" ({notes})" if notes else ""
    length = f"{obs_length_s:g} s" if obs_length_s is not None else "the observation"
    if closed.size < 2:
        raise TruncatedObservationError(
            f"truncated: {closed.size} closed-chamber samples for {length}{suffix}",
            path=path,
            observation=index,
            line=line,
        )
    steps = np.diff(closed)
    positive = steps[steps > 0]
    interval = float(np.median(positive)) if positive.size else 1.0
    big = np.flatnonzero(steps > GAP_INTERVALS * interval)
    if big.size:
        i = int(big[0])
        raise TruncatedObservationError(
            f"truncated: samples missing between elapsed {closed[i]:g} s and "
            f"{closed[i + 1]:g} s{suffix}",
            path=path,
            observation=index,
            line=line,
        )
    if obs_length_s is not None and closed[-1] < obs_length_s - GAP_INTERVALS * interval:
        raise TruncatedObservationError(
            f"truncated: trace ends at elapsed {closed[-1]:g} s of an observation length of "
            f"{obs_length_s:g} s{suffix}",
            path=path,
            observation=index,
            line=line,
        )


def read_gzip_bytes(path: str | os.PathLike[str], limit: int) -> tuple[str, bytes]:
    """(path as text, the decompressed content of a gzip file of at most ``limit`` bytes).

    Decompresses at most ``limit + 1`` bytes, so a small file that would inflate to
    gigabytes (a gzip bomb) costs no more memory than ``limit``. Raises
    :class:`DataFileError` naming the file when it cannot be read, is not gzip, is
    corrupt or truncated, or decompresses to more than ``limit`` bytes.
    """
    import gzip
    import zlib

    path_text = os.fspath(path)
    try:
        with gzip.open(path_text, "rb") as handle:
            content = handle.read(limit + 1)
    except gzip.BadGzipFile as exc:
        raise DataFileError(f"not gzip, or corrupt: {exc}", path=path_text) from exc
    except EOFError as exc:
        raise DataFileError(
            "truncated: the compressed stream ends before its end marker", path=path_text
        ) from exc
    except zlib.error as exc:
        raise DataFileError(f"corrupt compressed data: {exc}", path=path_text) from exc
    except OSError as exc:
        raise DataFileError(f"cannot read file: {exc.strerror or exc}", path=path_text) from exc
    if len(content) > limit:
        raise DataFileError(
            f"decompresses to more than {limit:,} bytes, the limit for this file",
            path=path_text,
        )
    return path_text, content
