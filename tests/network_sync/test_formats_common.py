"""The readers' guards against bad input (``formats/_common.py``), one class at a time."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import pytest

from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import read_file
from chamberd.network_sync.formats._common import (
    MAX_81X_BYTES,
    MAX_82Z_BYTES,
    MAX_82Z_MEMBER_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    count_or_none,
    finite_or_none,
    load_json,
    open_zip,
    read_bytes,
    read_zip_member,
    split_csv_line,
    zone_name,
)


def _sparse(path: Path, size: int, head: bytes) -> Path:
    """A file of ``size`` bytes that costs no disk: ``head``, then a hole."""
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


@pytest.mark.parametrize(
    ("name", "head", "limit", "what"),
    [
        ("big.81x", b"LI-8100:\n", MAX_81X_BYTES, "an .81x file"),
        ("big.json", b'{"datasets": []}', MAX_JSON_BYTES, "a Smart Chamber JSON file"),
        ("big.82z", b"PK\x03\x04", MAX_82Z_BYTES, "an .82z file"),
    ],
)
def test_file_over_its_limit_is_refused_before_it_is_read(tmp_path, name, head, limit, what):
    path = _sparse(tmp_path / name, limit + 1, head)
    with pytest.raises(DataFileError) as info:
        read_file(path)
    mib = limit // (1024 * 1024)
    assert str(info.value) == (
        f"{path}: file is {mib}.0 MiB ({limit + 1:,} bytes), over the limit of "
        f"{mib}.0 MiB ({limit:,} bytes) for {what}"
    )


def test_file_at_its_limit_is_read(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 100)
    assert read_bytes(path, max_bytes=100) == (str(path), b"x" * 100)
    with pytest.raises(DataFileError, match="over the limit of 99 bytes for a test file"):
        read_bytes(path, max_bytes=99, what="a test file")
    assert read_bytes(path, 10, max_bytes=5)[1] == b"x" * 10  # a head read is not limited


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return open_zip(buffer.getvalue(), path="x.82z", what=".82z")


def test_zip_member_declaring_more_than_the_limit_is_never_decompressed():
    archive = _zip({"data.csv": b"1,2,3\n" * (MAX_82Z_MEMBER_BYTES // 6 + 1)})
    with pytest.raises(DataFileError, match="member data.csv is 16.0 MiB .* once decompressed"):
        read_zip_member(
            archive, "data.csv", path="x.82z", max_bytes=MAX_82Z_MEMBER_BYTES, what=".82z"
        )
    assert read_zip_member(archive, "data.csv", path="x.82z", max_bytes=2**25, what=".82z")


def test_zip_member_encrypted_or_of_another_method_is_refused():
    archive = _zip({"data.csv": b"a,b\n"})
    info = archive.getinfo("data.csv")
    info.flag_bits |= 0x1
    with pytest.raises(DataFileError, match="x.82z: .82z member data.csv is encrypted"):
        read_zip_member(archive, "data.csv", path="x.82z", max_bytes=100, what=".82z")
    info.flag_bits &= ~0x1
    info.compress_type = zipfile.ZIP_BZIP2
    with pytest.raises(DataFileError, match="compression method 12; only stored and deflate"):
        read_zip_member(archive, "data.csv", path="x.82z", max_bytes=100, what=".82z")


def test_corrupt_deflate_stream_is_a_data_file_error():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", bytes(range(256)) * 40)
    raw = bytearray(buffer.getvalue())
    raw[60:90] = bytes(30)  # inside the compressed data
    archive = open_zip(bytes(raw), path="x.82z", what=".82z")
    with pytest.raises(DataFileError, match=r"x.82z: damaged .82z \(zip\) file: data.csv"):
        read_zip_member(archive, "data.csv", path="x.82z", max_bytes=10**6, what=".82z")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),  # RecursionError
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper than 32"),
        ('{"a": [1, 2,', "not valid JSON"),
    ],
)
def test_json_that_is_not_an_instrument_file(text, message):
    with pytest.raises(DataFileError, match=message) as info:
        load_json(text, path="f.json", what="metadata.json")
    assert str(info.value).startswith("f.json")


def test_json_numbers_out_of_range_become_non_finite_floats():
    doc = load_json('{"a": %s, "b": NaN, "c": 1e999, "d": 12}' % ("9" * 5000), path="f")
    assert doc["a"] == math.inf and math.isnan(doc["b"]) and doc["c"] == math.inf
    assert doc["d"] == 12 and isinstance(doc["d"], int)
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, path="f") is not None


def test_csv_line_over_the_csv_field_limit():
    assert split_csv_line("a," + "x" * 200_000) == ["a", "x" * 200_000]  # no quote: plain split
    with pytest.raises(ValueError, match="field larger than field limit"):
        split_csv_line('"' + "x" * 200_000 + '",b')
    assert split_csv_line('"a,b",c') == ["a,b", "c"]


@pytest.mark.parametrize(
    ("value", "number", "count"),
    [
        ("3", 3.0, 3),
        ("2.6", 2.6, 3),
        ("inf", None, None),
        ("-inf", None, None),
        ("nan", None, None),
        ("1e999", None, None),
        ("9" * 5000, None, None),  # float: inf
        (10**400, None, None),  # int too large for a float: OverflowError
        ("1e300", 1e300, None),  # finite but no count
        ("", None, None),
        ("x", None, None),
        (None, None, None),
        (True, None, None),
    ],
)
def test_numbers_from_files(value, number, count):
    assert finite_or_none(value) == number
    assert count_or_none(value) == count


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("Europe/Copenhagen", True),
        ("UTC", True),
        ("", False),
        ("utc ", False),
        ("../../etc/passwd", False),
        ("/etc/localtime", False),
        ("a\x00b", False),
        ("A" * 5000, False),
        (5, False),
    ],
)
def test_zone_names(name, known):
    assert (zone_name(name) == name) is known
