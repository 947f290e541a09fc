"""Checks shared by the instrument-file readers."""

from __future__ import annotations

import codecs
import os
import re

import numpy as np

from chamberd.controller.errors import DataFileError, TruncatedObservationError

# A trace counts as truncated when it ends more than this many sample intervals before the
# observation length, or when consecutive samples are further apart than this many intervals.
GAP_INTERVALS = 3.0

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


def read_bytes(path: str | os.PathLike[str], limit: int = -1) -> tuple[str, bytes]:
    """(path as text, the file's bytes, at most ``limit``); DataFileError when unreadable."""
    path_text = os.fspath(path)
    try:
        with open(path_text, "rb") as handle:
            return path_text, handle.read(limit)
    except OSError as exc:
        raise DataFileError(f"cannot read file: {exc.strerror or exc}", path=path_text) from exc


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
