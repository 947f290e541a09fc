"""Format sniffing and the read_file dispatcher."""

from __future__ import annotations

import pytest

from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import FORMATS, detect_format, read_file

LI8250 = "82m-0147-20220125000045.82z"


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("li8100a/SALT_20181005_LT.81x", "li8100a"),
        ("li8100a/testVaryingColNumber.81x", "li8100a"),  # CRLF
        ("li8100a/goflux_LI8150.81x", "li8100a"),
        ("smartchamber/goflux_LI8200.json", "li8200"),
        ("smartchamber/fluxfinder_LI8200-01S.json", "li8200"),
        (f"li8250/{LI8250}", "li8250"),
    ],
)
def test_each_format_is_recognised(reference_data, relative, fmt):
    assert detect_format(reference_data / relative) == fmt


def test_bundled_example_is_recognised(salt_81x):
    assert detect_format(salt_81x) == "li8100a"
    assert detect_format(str(salt_81x)) == "li8100a"  # a str path as well


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        (b"\xef\xbb\xbfLI-8100:\t 243\n", "li8100a"),  # byte-order mark
        (b"\n\n  LI-8100:\t 243\n", "li8100a"),  # leading blank lines
        (b'\xef\xbb\xbf{\n "datasets": []}', "li8200"),
        (b' \n{"name": "x", "datasets": []}', "li8200"),
        (b"PK\x03\x04rest", "li8250"),
    ],
)
def test_sniffing_tolerates_bom_and_leading_space(tmp_path, content, fmt):
    path = tmp_path / "file.dat"
    path.write_bytes(content)
    assert detect_format(path) == fmt


@pytest.mark.parametrize(
    "content",
    [b"shopping list\n", b'{"name": "not a smart chamber file"}', b"Type\tEtime\n", b"\x00\x01"],
)
def test_unknown_format_names_the_file(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match="unknown file format") as info:
        detect_format(path)
    assert str(info.value).startswith(f"{path}, line 1: unknown file format")
    for name in FORMATS:
        assert name in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\n  \r\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.81x"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match="empty file") as info:
        read_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_unreadable_file(tmp_path, what):
    path = tmp_path / "absent.81x"
    if what == "folder":
        path.mkdir()
    with pytest.raises(DataFileError, match="cannot read file") as info:
        read_file(path)
    assert str(path) in str(info.value)


def test_read_file_dispatches_on_content_not_name(reference_data, tmp_path):
    # an .81x under a misleading name is still read as one
    path = tmp_path / "renamed.json"
    path.write_bytes((reference_data / "li8100a" / "goflux_LI8100.81x").read_bytes())
    result = read_file(path)
    assert result.observations[0].instrument == "LI-8100A"
    smart = read_file(reference_data / "smartchamber" / "goflux_LI8200.json")
    assert smart.observations[0].instrument == "LI-8200"


def test_read_file_finds_the_li8250_summary(reference_data):
    (obs,) = read_file(reference_data / "li8250" / LI8250).observations
    assert obs.instrument == "LI-8250" and obs.reference["co2"].flux == 0.993472


def test_explicit_format_overrides_sniffing(salt_81x):
    with pytest.raises(DataFileError, match="not valid JSON"):
        read_file(salt_81x, "li8200")  # an .81x read as JSON: refused, not a traceback
    with pytest.raises(DataFileError, match="not a readable .82z"):
        read_file(salt_81x, "li8250")
    assert read_file(salt_81x, "li8100a").observations


def test_unknown_format_name(salt_81x):
    with pytest.raises(DataFileError, match="unknown format 'csv'") as info:
        read_file(salt_81x, "csv")
    assert "SALT_20181005_LT.81x" in str(info.value)
