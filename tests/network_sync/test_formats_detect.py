"""Format sniffing and the read_file dispatcher."""

from __future__ import annotations

import pytest

from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import detect_format, read_file


def test_each_format_is_recognised(reference_data, salt_81x):
    assert detect_format(salt_81x) == "li8100a"
    assert detect_format(reference_data / "smartchamber" / "goflux_LI8200.json") == "li8200"
    assert detect_format(reference_data / "li8250" / "82m-0147-20220125000045.82z") == "li8250"


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n")
    with pytest.raises(DataFileError, match="unknown file format") as info:
        detect_format(path)
    assert "notes.txt" in str(info.value)


def test_explicit_format_overrides_sniffing(salt_81x):
    with pytest.raises(DataFileError):
        read_file(salt_81x, "li8200")  # an .81x read as JSON: refused, not a traceback
    assert read_file(salt_81x, "li8100a").observations
