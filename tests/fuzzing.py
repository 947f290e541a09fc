"""Seeded mutants of real files, for the fuzz tests of readers, importers and configs.

Every mutant is a deterministic function of (the original bytes, the seed), so a failure
names its seed and replays exactly: ``mutants(data, "zip", seed=7, count=1)``. Operators are
the classes of bad input found in the field and by earlier fuzzing:

* bytes: flips, non-UTF-8 sequences, NUL bytes, truncation, CR-only or mixed line ends, a
  byte-order mark in the middle, a field longer than the csv module's limit;
* lines: deleted, duplicated, swapped;
* tokens: a number replaced by ``inf``/``nan``/``1e999``/a 5,000-digit integer/``-0``/an empty
  cell; a date replaced by one near year 1 or 9999;
* JSON: deep nesting (``RecursionError`` bait) and huge integers;
* containers: a zip member with an unsupported compression method or the encryption flag, a
  corrupt deflate stream, a member whose content is mutated, a member of a declared size far
  over any limit (a zip bomb); a gzip stream corrupted, truncated or mutated inside.

Used from tests as ``from fuzzing import mutants`` (``tests/`` is on ``sys.path``, see
``tests/conftest.py``).
"""

from __future__ import annotations

import gzip
import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable

__all__ = ["KINDS", "mutants", "mutate_text"]

KINDS = ("text", "json", "zip", "gzip")

_NUMBER = re.compile(rb"(?<![A-Za-z_])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}|\b\d{8}\b")
_BAD_NUMBERS = (
    b"inf",
    b"-inf",
    b"nan",
    b"NaN",
    b"1e999",
    b"-1e308",
    b"1" * 5000,
    b"-0",
    b"",
    b"NA",
    b"1,5",
    b"0x1f",
    b"\xef\xbc\x91",  # a full-width digit one
)
_BAD_DATES = (
    b"0001-01-01",
    b"9999-12-31",
    b"0000-00-00",
    b"00010101",
    b"99991231",
    b"2026-02-30",
)


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\xff"
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]


def _insert(data: bytes, rng: random.Random, piece: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + piece + data[i:]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    if len(lines) < 2:
        return data + b"\n" + data
    i = rng.randrange(len(lines))
    j = rng.randrange(len(lines))
    how = rng.choice(("delete", "duplicate", "swap"))
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(i, lines[j])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def _token(data: bytes, rng: random.Random, pattern: re.Pattern[bytes], bad: tuple) -> bytes:
    found = list(pattern.finditer(data[:2_000_000]))
    if not found:
        return _flip(data, rng)
    match = rng.choice(found)
    return data[: match.start()] + rng.choice(bad) + data[match.end() :]


_TEXT_OPERATORS: tuple[tuple[str, Callable[[bytes, random.Random], bytes]], ...] = (
    ("flip", _flip),
    ("non-utf8", lambda d, r: _insert(d, r, b"\xff\xfe\xc3(\x80")),
    ("nul", lambda d, r: _insert(d, r, b"\x00")),
    ("truncate", _truncate),
    ("cr-only", lambda d, r: d.replace(b"\r\n", b"\n").replace(b"\n", b"\r")),
    ("mixed-eol", lambda d, r: d.replace(b"\n", b"\r\n", r.randrange(1, 50))),
    ("bom", lambda d, r: _insert(d, r, b"\xef\xbb\xbf")),
    ("long-field", lambda d, r: _insert(d, r, b"x" * 200_000)),
    ("quote", lambda d, r: _insert(d, r, b'"')),
    ("lines", _lines),
    ("number", lambda d, r: _token(d, r, _NUMBER, _BAD_NUMBERS)),
    ("number", lambda d, r: _token(d, r, _NUMBER, _BAD_NUMBERS)),
    ("date", lambda d, r: _token(d, r, _DATE, _BAD_DATES)),
)

_JSON_OPERATORS = (
    *_TEXT_OPERATORS,
    ("deep-nesting", lambda d, r: _insert(d, r, b"[" * 100_000 + b"]" * 100_000)),
    ("deep-object", lambda d, r: b'{"datasets": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001),
    ("huge-int", lambda d, r: _token(d, r, _NUMBER, (b"9" * 5000, b"-" + b"9" * 5000))),
)


def mutate_text(data: bytes, rng: random.Random, operators=_TEXT_OPERATORS) -> tuple[str, bytes]:
    """One to three operators applied in turn; returns (their names, the mutant)."""
    names = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        name, operator = rng.choice(operators)
        data = operator(data, rng)
        names.append(name)
    return "+".join(names), data


# --- containers ----------------------------------------------------------------------------


def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _rezip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return out.getvalue()


def _patch_headers(data: bytes, offset_in_header: int, value: int, size: int = 2) -> bytes:
    """Set a field of every local (PK\\3\\4) and central (PK\\1\\2) header."""
    out = bytearray(data)
    fmt = "<H" if size == 2 else "<I"
    for signature, local_offset in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        start = 0
        while (i := out.find(signature, start)) >= 0:
            struct.pack_into(fmt, out, i + offset_in_header + local_offset, value)
            start = i + 4
    return bytes(out)


def _zip_unsupported_method(data: bytes, rng: random.Random) -> bytes:
    # compression method field: offset 8 in a local header, 10 in a central one
    return _patch_headers(data, 8, rng.choice((98, 99, 14, 95)))


def _zip_encrypted(data: bytes, rng: random.Random) -> bytes:
    # general purpose flags: offset 6 (local) / 8 (central); bit 0 = encrypted
    return _patch_headers(data, 6, 0x0001)


def _zip_corrupt_stream(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    i = out.find(b"PK\x03\x04")
    if i < 0:
        return _flip(data, rng)
    name_len, extra_len = struct.unpack_from("<HH", out, i + 26)
    begin = i + 30 + name_len + extra_len
    size = struct.unpack_from("<I", out, i + 18)[0]
    for _ in range(rng.randrange(1, 6)):
        j = begin + rng.randrange(max(size, 1))
        if j < len(out):
            out[j] ^= 1 << rng.randrange(8)
    return bytes(out)


def _zip_member_mutated(data: bytes, rng: random.Random) -> bytes:
    members = [(info.filename, content) for info, content in _members(data)]
    i = rng.randrange(len(members))
    ops = _JSON_OPERATORS if members[i][0].endswith(".json") else _TEXT_OPERATORS
    members[i] = (members[i][0], mutate_text(members[i][1], rng, ops)[1])
    return _rezip(members)


def _zip_bomb(data: bytes, rng: random.Random) -> bytes:
    members = [(info.filename, content) for info, content in _members(data)]
    i = rng.randrange(len(members))
    # 160 MB of one repeated line deflates to about 160 kB
    members[i] = (members[i][0], members[i][1] + b"1,2,3\n" * 27_000_000)
    return _rezip(members)


def _zip_dropped_member(data: bytes, rng: random.Random) -> bytes:
    members = [(info.filename, content) for info, content in _members(data)]
    del members[rng.randrange(len(members))]
    return _rezip(members)


_ZIP_OPERATORS = (
    ("zip-method", _zip_unsupported_method),
    ("zip-encrypted", _zip_encrypted),
    ("zip-corrupt-deflate", _zip_corrupt_stream),
    ("zip-member", _zip_member_mutated),
    ("zip-member", _zip_member_mutated),
    ("zip-member", _zip_member_mutated),
    ("zip-dropped-member", _zip_dropped_member),
    ("zip-bytes", lambda d, r: mutate_text(d, r)[1]),
)


def _gzip_corrupt(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        j = 10 + rng.randrange(max(len(out) - 18, 1))
        if j < len(out):
            out[j] ^= 1 << rng.randrange(8)
    return bytes(out)


def _gzip_inner(data: bytes, rng: random.Random) -> bytes:
    return gzip.compress(mutate_text(gzip.decompress(data), rng)[1], mtime=0)


_GZIP_OPERATORS = (
    ("gzip-corrupt-deflate", _gzip_corrupt),
    ("gzip-truncated", _truncate),
    ("gzip-inner", _gzip_inner),
    ("gzip-inner", _gzip_inner),
    ("gzip-inner", _gzip_inner),
    ("gzip-not-gzip", lambda d, r: gzip.decompress(d)[:1000]),
    ("gzip-bomb", lambda d, r: gzip.compress(b"1,2,3\n" * 27_000_000, compresslevel=1, mtime=0)),
)

_BY_KIND = {
    "text": _TEXT_OPERATORS,
    "json": _JSON_OPERATORS,
    "zip": _ZIP_OPERATORS,
    "gzip": _GZIP_OPERATORS,
}


def mutants(data: bytes, kind: str, *, seed: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutants of ``data`` (a file of ``kind``: text, json, zip or gzip), each
    named ``"<seed>.<n>:<operators>"``; the same arguments give the same mutants."""
    if kind not in _BY_KIND:
        raise ValueError(f"kind must be one of {KINDS}")
    out = []
    for n in range(count):
        rng = random.Random(f"{seed}/{n}/{zlib.crc32(data)}")
        if kind in ("text", "json"):
            name, mutant = mutate_text(data, rng, _BY_KIND[kind])
        else:
            name, operator = rng.choice(_BY_KIND[kind])
            try:
                mutant = operator(data, rng)
            except (zipfile.BadZipFile, OSError, EOFError):
                name, mutant = name + "(bytes)", mutate_text(data, rng)[1]
        out.append((f"{seed}.{n}:{name}", mutant))
    return out
