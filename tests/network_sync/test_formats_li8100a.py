"""LI-8100A .81x reader: real files, column keying, garbled input, truncation, bad files.

Broken inputs are built in ``tmp_path`` by editing the real files as text: the bundled
CC-BY SALT file, or the GPL files read in place from shared/data (never copied here).
Expected values below were read off the raw files (header and footer lines, and counts of
Type 1 rows), not off this reader.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from chamberd.controller.errors import DataFileError, TruncatedObservationError
from chamberd.network_sync.formats import read_81x

T = dt.datetime

# file: read, refused, and the first read observation's header, footer and trace facts
REAL = {
    "SALT_20181005_LT.81x": dict(
        read=7, refused=[2], port=1, label="SALT", volume=5020.1, area=317.8, offset=2.0,
        obs_length=120, dead_band=25, start=T(2019, 2, 24, 14, 7, 17),
        closed=T(2019, 2, 24, 14, 7, 30), rows=133, negative=13,
        ref=("exponential", 0.15, 0.68, 95),
    ),
    "worksWell.81x": dict(
        read=68, refused=[], port=0, label="N4r", volume=8020.9, area=317.8, offset=10.0,
        obs_length=90, dead_band=5, start=T(2018, 3, 18, 11, 12, 24),
        closed=T(2018, 3, 18, 11, 12, 24), rows=91, negative=0,
        ref=("exponential", 0.89, 0.91, 85),
    ),
    "NoCRVFit.81x": dict(
        read=99, refused=[23, 94, 98], port=0, label="C23i2", volume=8020.9, area=317.8,
        offset=10.0, obs_length=90, dead_band=5, start=T(2018, 3, 21, 11, 16, 3),
        closed=T(2018, 3, 21, 11, 16, 19), rows=106, negative=16,
        ref=("linear", 4.0, 4.0, 85),
    ),
    "testVaryingColNumber.81x": dict(
        read=2, refused=[], port=0, label="ChunkLabel1", volume=4842.9, area=317.8,
        offset=0.0, obs_length=180, dead_band=0, start=T(2014, 9, 29, 16, 56, 2),
        closed=T(2014, 9, 29, 16, 56, 7), rows=185, negative=5,
        ref=("linear", 2.22, 2.22, 180),
    ),
    "licor_north1.81x": dict(
        read=2, refused=[3], port=1, label="CH1", volume=5687.48, area=317.8, offset=4.1,
        obs_length=180, dead_band=None, start=T(2022, 5, 20, 0, 2, 56),
        closed=T(2022, 5, 20, 0, 3, 8), rows=191, negative=11, ref=None,
    ),
    "goflux_LI8100.81x": dict(
        read=1, refused=[], port=1, label="Ch1_Calluna", volume=225311.0, area=3215.0,
        offset=0.0, obs_length=300, dead_band=0, start=T(2022, 12, 21, 14, 31, 5),
        closed=T(2022, 12, 21, 14, 31, 47), rows=342, negative=42,
        ref=("exponential", 0.70, 0.96, 300),
    ),
    "goflux_LI8150.81x": dict(
        read=1, refused=[], port=1, label="within row 1", volume=5339.2, area=317.8,
        offset=3.3, obs_length=120, dead_band=25, start=T(2005, 9, 26, 15, 12, 53),
        closed=T(2005, 9, 26, 15, 13, 55), rows=182, negative=62,
        ref=("linear", 2.25, 2.25, 95),
    ),
}  # fmt: skip


def _real(reference_data: Path, name: str) -> Path:
    return reference_data / "li8100a" / name


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_are_read_with_header_footer_and_trace(reference_data, name):
    facts = REAL[name]
    result = read_81x(_real(reference_data, name))
    assert len(result.observations) == facts["read"]
    assert [e.observation for e in result.rejected] == facts["refused"]
    assert all(isinstance(e, TruncatedObservationError) for e in result.rejected)
    obs = result.observations[0]
    assert (obs.instrument, obs.index, obs.port, obs.label) == (
        "LI-8100A",
        1,
        facts["port"],
        facts["label"],
    )
    assert obs.volume_cm3 == facts["volume"] and obs.area_cm2 == facts["area"]
    assert obs.offset_cm == facts["offset"] and obs.obs_length_s == facts["obs_length"]
    (gas,) = obs.gases
    assert (gas.gas, gas.column, gas.dry) == ("co2", "co2_umol_mol", False)
    assert gas.dead_band_s == facts["dead_band"] and gas.end_s == facts["obs_length"]
    assert (obs.start_time, obs.closed_time) == (facts["start"], facts["closed"])
    assert obs.elapsed_s.size == facts["rows"]
    assert int((obs.elapsed_s < 0).sum()) == facts["negative"]
    for column in ("co2_umol_mol", "h2o_mmol_mol", "pressure_kpa", "temperature_degc"):
        assert obs.columns[column].shape == obs.elapsed_s.shape
        assert np.isfinite(obs.columns[column]).all()
    if facts["ref"] is None:
        assert not obs.has_footer and obs.reference == {}
    else:
        model, lin_flux, exp_flux, n_points = facts["ref"]
        ref = obs.reference["co2"]
        assert obs.has_footer
        assert (ref.model, ref.lin_flux, ref.exp_flux, ref.n_points) == (
            model,
            lin_flux,
            exp_flux,
            n_points,
        )
        assert ref.flux == (exp_flux if model == "exponential" else lin_flux)
    assert not obs.warnings


def test_salt_footer_and_instrument_rows(salt_81x):
    result = read_81x(salt_81x)
    assert [o.index for o in result.observations] == [1, 3, 4, 5, 6, 7, 8]
    first = result.observations[0]
    assert first.elapsed_s[0] == -1 and first.elapsed_s[-1] == 119
    assert first.first_line == 1 and first.header["Serial Number"] == "81A-1678"
    ref = first.reference["co2"]
    assert (ref.exp_r2, ref.lin_r2, ref.exp_a_per_s) == (0.8491, 0.6293, 4.0610e-02)
    assert (ref.exp_cx, ref.exp_c0, ref.exp_t0_s, ref.slope_per_s) == (404.8, 402.2, 27.4, 0.104)
    assert (ref.iterations, ref.max_iterations) == (10, 10)
    assert not ref.exp_converged  # it stopped at its iteration cap
    assert ref.raw["TimeClosing"] == "13"
    assert first.instrument_rows["initial"]["co2_dry_umol_mol"] == 402.23
    assert first.instrument_rows["mean"]["elapsed_s"] == 59.5
    assert first.instrument_rows["range"]["co2_umol_mol"] == 3.17


def test_truncated_observation_is_refused_by_name(salt_81x):
    (refused,) = read_81x(salt_81x).rejected
    assert isinstance(refused, TruncatedObservationError)
    assert refused.observation == 2 and refused.path == str(salt_81x)
    text = str(refused)
    assert "SALT_20181005_LT.81x" in text and "observation 2" in text
    assert "ends at elapsed 73 s of an observation length of 120 s" in text


def test_truncated_file_refuses_every_observation(reference_data):
    path = _real(reference_data, "2312_issue005_small.81x")
    result = read_81x(path)
    assert result.observations == ()
    messages = [str(e) for e in result.rejected]
    assert len(messages) == 2
    assert all("2312_issue005_small.81x" in m for m in messages)
    assert "observation 1" in messages[0] and "samples missing between elapsed 147 s" in messages[0]
    assert "Chamber close not detected" in messages[0]  # the instrument's own note
    assert "observation 2" in messages[1] and "truncated" in messages[1]


def test_file_without_flux_footer_is_reported(reference_data):
    result = read_81x(_real(reference_data, "licor_north1.81x"))
    for obs in result.observations:
        assert not obs.has_footer and obs.reference == {}
        assert obs.gases[0].dead_band_s is None  # the file does not say
    (refused,) = result.rejected
    assert "observation 3" in str(refused)
    assert "ends at elapsed 159 s of an observation length of 180 s" in str(refused)


def test_restart_annotations_are_kept(reference_data):
    result = read_81x(_real(reference_data, "NoCRVFit.81x"))
    refused = {e.observation: str(e) for e in result.rejected}
    assert "The measurement was restarted." in refused[23]


def test_missing_annotation_cells_are_tolerated(reference_data):
    result = read_81x(_real(reference_data, "testVaryingColNumber.81x"))
    assert [len(o.elapsed_s) for o in result.observations] == [185, 197]
    assert all(not o.warnings for o in result.observations)


def test_empty_header_values_and_degenerate_exponential(reference_data):
    (obs,) = read_81x(_real(reference_data, "goflux_LI8150.81x")).observations
    assert obs.header["Post-purge"] == "" and obs.header["TSource"] == "Tcham"
    ref = obs.reference["co2"]
    assert (ref.model, ref.exp_cx, ref.flux) == ("linear", 1e6, 2.25)
    assert not ref.exp_converged


# --- synthetic files, built from the bundled CC-BY SALT file ----------------------------


def _blocks(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("LI-8100:")]
    return [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def _block(path: Path, index: int = 0) -> list[str]:
    return _blocks(path)[index]


def _at(block: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(block) if line.startswith(prefix))


def _etime(line: str) -> float | None:
    cells = line.split("\t")
    return float(cells[1]) if cells[0] == "1" else None


def _write(tmp_path: Path, name: str, *blocks: list[str], newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(newline.join(line for b in blocks for line in b).encode() + b"\n")
    return path


@pytest.fixture(scope="module")
def salt(salt_81x):
    return read_81x(salt_81x)


def _same_trace(obs, original) -> None:
    np.testing.assert_array_equal(obs.elapsed_s, original.elapsed_s)
    for key in ("co2_umol_mol", "co2_dry_umol_mol", "h2o_mmol_mol", "pressure_kpa"):
        np.testing.assert_array_equal(obs.columns[key], original.columns[key])
    np.testing.assert_array_equal(
        obs.columns["temperature_degc"], original.columns["temperature_degc"]
    )


def _permute_columns(block: list[str], order: list[int]) -> list[str]:
    header_at = _at(block, "Type\t")
    width = len(block[header_at].split("\t"))
    out = []
    for i, line in enumerate(block):
        cells = line.split("\t")
        if i >= header_at and cells[0] in ("Type", "1", "2", "3", "4"):
            cells += [""] * (width - len(cells))
            line = "\t".join(cells[j] if j < width else "n/a" for j in order)
        out.append(line)
    return out


def test_columns_are_keyed_by_header_name(salt_81x, salt, tmp_path):
    block = _block(salt_81x)
    width = len(block[_at(block, "Type\t")].split("\t"))
    reordered = _permute_columns(block, [0, 1, 2, *range(width - 1, 2, -1)])
    (obs,) = read_81x(_write(tmp_path, "reordered.81x", reordered)).observations
    _same_trace(obs, salt.observations[0])
    assert obs.start_time == salt.observations[0].start_time


def test_extra_columns_are_ignored(salt_81x, salt, tmp_path):
    block = _block(salt_81x)
    header_at = _at(block, "Type\t")
    width = len(block[header_at].split("\t"))
    # two unknown columns, holding text, in front of the gas columns
    with_extra = _permute_columns(block, [0, 1, 2, width, width + 1, *range(3, width)])
    with_extra[header_at] = with_extra[header_at].replace("\tn/a\tn/a\t", "\tFoo\tBar\t", 1)
    (obs,) = read_81x(_write(tmp_path, "extra.81x", with_extra)).observations
    _same_trace(obs, salt.observations[0])
    assert not obs.warnings


def test_date_column_last_and_a_row_without_it(salt_81x, tmp_path):
    block = _block(salt_81x)
    width = len(block[_at(block, "Type\t")].split("\t"))
    moved = _permute_columns(block, [0, 1, *range(3, width), 2])
    first_data = _at(moved, "1\t")
    moved[first_data + 30] = moved[first_data + 30].rsplit("\t", 1)[0]  # no Date cell
    (obs,) = read_81x(_write(tmp_path, "date_last.81x", moved)).observations
    assert obs.elapsed_s.size == 133
    assert obs.start_time == dt.datetime(2019, 2, 24, 14, 7, 17)


def test_column_sets_may_change_between_observations(salt_81x, salt, tmp_path):
    first, second = _block(salt_81x, 0), _block(salt_81x, 2)
    header_at = _at(second, "Type\t")
    drop = second[header_at].split("\t").index("Tbench")

    def without(line: str) -> str:
        cells = line.split("\t")
        return "\t".join(cells[:drop] + cells[drop + 1 :])

    second = second[:header_at] + [
        without(x) if "\t" in x and not x.split("\t")[0].endswith(":") else x
        for x in second[header_at:]
    ]
    # the third observation keeps Tbench but swaps CO2 and H2O
    third = _block(salt_81x, 3)
    width = len(third[_at(third, "Type\t")].split("\t"))
    names = third[_at(third, "Type\t")].split("\t")
    order = list(range(width))
    co2, h2o = names.index("CO2"), names.index("H2O")
    order[co2], order[h2o] = h2o, co2
    third = _permute_columns(third, order)
    result = read_81x(_write(tmp_path, "mixed.81x", first, second, third))
    assert [o.index for o in result.observations] == [1, 2, 3]
    for obs, original in zip(result.observations, salt.observations, strict=False):
        _same_trace(obs, original)
        assert not obs.warnings


def test_garbled_and_short_rows_are_skipped_with_their_line(salt_81x, salt, tmp_path):
    block = _block(salt_81x)
    first_data = _at(block, "1\t")
    cells = block[first_data + 20].split("\t")
    cells[4] = "gar#bage"  # the Pressure cell
    block[first_data + 20] = "\t".join(cells)
    block[first_data + 21] = "1\t20"  # short row
    block.insert(first_data + 22, "\x00\x13#%@!")  # line noise
    (obs,) = read_81x(_write(tmp_path, "garbled.81x", block)).observations
    warnings = "\n".join(obs.warnings)
    assert f"line {first_data + 21}: garbled row skipped" in warnings
    assert f"line {first_data + 22}: short row" in warnings
    assert f"line {first_data + 23}: garbled line skipped" in warnings
    # the rest of the observation is intact
    original = salt.observations[0]
    keep = np.ones(original.elapsed_s.size, dtype=bool)
    keep[[20, 21]] = False
    np.testing.assert_array_equal(obs.elapsed_s, original.elapsed_s[keep])
    np.testing.assert_array_equal(
        obs.columns["co2_umol_mol"], original.columns["co2_umol_mol"][keep]
    )
    assert obs.has_footer and obs.reference == original.reference


def test_line_numbers_survive_form_feeds_and_separators(salt_81x, tmp_path):
    """Line noise with \\f, \\v or \\x1c-\\x1e is one line, as an editor counts them."""
    block = _block(salt_81x)
    first_data = _at(block, "1\t")
    block.insert(first_data + 5, "noise\x0c\x0b\x1c\x1d\x1emore noise")
    block[first_data + 40] = "1\t33\tgarbage"
    (obs,) = read_81x(_write(tmp_path, "noise.81x", block)).observations
    assert obs.warnings == (
        f"line {first_data + 6}: garbled line skipped",
        f"line {first_data + 41}: short row (3 of 30 cells) skipped",
    )


def test_crlf_and_byte_order_mark_read_the_same(salt_81x, salt, tmp_path):
    path = tmp_path / "windows.81x"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(_block(salt_81x)).encode() + b"\r\n")
    (obs,) = read_81x(path).observations
    _same_trace(obs, salt.observations[0])
    assert obs.header["Label"] == "SALT" and not obs.warnings


def test_observation_without_footer_in_a_file_with_footers(salt_81x, tmp_path):
    block = _block(salt_81x)
    path = _write(
        tmp_path, "nofooter.81x", block[: _at(block, "CrvFitStatus")], _block(salt_81x, 2)
    )
    first, second = read_81x(path).observations
    assert not first.has_footer and first.reference == {}
    assert first.gases[0].dead_band_s is None
    assert second.has_footer and second.gases[0].dead_band_s == 25


def test_unreadable_dead_band_is_a_warning_not_a_crash(salt_81x, tmp_path):
    block = _block(salt_81x)
    at = _at(block, "Dead Band:")
    block[at] = "Dead Band:\tsoon"
    (obs,) = read_81x(_write(tmp_path, "deadband.81x", block)).observations
    assert obs.gases[0].dead_band_s is None and obs.has_footer
    assert obs.warnings == (f"line {at + 1}: footer 'Dead Band:' unreadable ('soon'), ignored",)


def test_data_row_after_the_footer_is_skipped(salt_81x, salt, tmp_path):
    block = _block(salt_81x)
    stray = block[_at(block, "1\t")]
    block.append(stray)
    (obs,) = read_81x(_write(tmp_path, "after.81x", block)).observations
    assert obs.warnings == (f"line {len(block)}: data row after the footer skipped",)
    assert obs.elapsed_s.size == salt.observations[0].elapsed_s.size


def test_cut_short_observation_is_refused_and_the_others_read(salt_81x, tmp_path):
    first = [line for line in _block(salt_81x) if (_etime(line) or 0) <= 60]
    path = _write(tmp_path, "cut.81x", first, _block(salt_81x, 2))
    result = read_81x(path)
    assert [o.index for o in result.observations] == [2]
    (refused,) = result.rejected
    assert isinstance(refused, TruncatedObservationError)
    assert (refused.path, refused.observation, refused.line) == (str(path), 1, 1)
    assert str(refused).startswith(f"{path}, observation 1, line 1: truncated")
    assert "ends at elapsed 60 s of an observation length of 120 s" in str(refused)


def test_gap_in_the_trace_is_refused(salt_81x, tmp_path):
    block = [line for line in _block(salt_81x) if not 40 <= (_etime(line) or -9) <= 60]
    (refused,) = read_81x(_write(tmp_path, "gap.81x", block)).rejected
    assert "observation 1" in str(refused)
    assert "samples missing between elapsed 39 s and 61 s" in str(refused)


def test_file_cut_in_the_middle_of_a_row(salt_81x, tmp_path):
    second = _block(salt_81x, 2)
    cut = second[: _at(second, "1\t") + 50]
    cut[-1] = cut[-1][:25]
    path = tmp_path / "cut_mid_row.81x"
    path.write_text("\n".join(_block(salt_81x) + cut))  # no final newline either
    result = read_81x(path)
    assert [o.index for o in result.observations] == [1]
    (refused,) = result.rejected
    assert refused.observation == 2 and "truncated" in str(refused)


def test_block_without_a_data_table_is_refused(salt_81x, tmp_path):
    block = _block(salt_81x)
    header_only = block[: _at(block, "Type\t")]
    path = _write(tmp_path, "notable.81x", header_only, _block(salt_81x, 2))
    result = read_81x(path)
    assert [o.index for o in result.observations] == [2]
    (refused,) = result.rejected
    assert "observation 1" in str(refused) and "no data table" in str(refused)


@pytest.mark.parametrize(
    ("key", "value", "message", "on_its_line"),
    [
        ("Vtotal", None, "header has no 'Vtotal:' line", False),
        ("Area", "abc", "header 'Area:' is not a number: 'abc'", True),
        ("Area", "0", "header 'Area:' must be > 0", True),
        ("Vtotal", "-5020.1", "header 'Vtotal:' must be > 0", True),
        ("Observation Length", None, "'Observation Length:' is missing or zero", False),
        ("Observation Length", "", "'Observation Length:' is missing or zero", True),
        ("Observation Length", "2 min", "'Observation Length:' is not a duration", True),
    ],
)
def test_missing_or_bad_header_value_names_field_and_line(
    salt_81x, tmp_path, key, value, message, on_its_line
):
    block = _block(salt_81x)
    at = _at(block, f"{key}:")
    if value is None:
        del block[at]
    else:
        block[at] = f"{key}:\t{value}"
    path = _write(tmp_path, "badheader.81x", block, _block(salt_81x, 2))
    result = read_81x(path)
    assert [o.index for o in result.observations] == [2]
    (refused,) = result.rejected
    assert message in str(refused)
    assert str(refused).startswith(f"{path}, observation 1, line ")
    assert refused.line == (at + 1 if on_its_line else 1)


def test_missing_required_column_names_it(salt_81x, tmp_path):
    block = _block(salt_81x)
    header_at = _at(block, "Type\t")
    block[header_at] = block[header_at].replace("\tH2O\t", "\tH2Ox\t")
    (refused,) = read_81x(_write(tmp_path, "noh2o.81x", block)).rejected
    assert "no column H2O" in str(refused)
    assert refused.line == header_at + 1


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("", "empty file", None),
        ("\n\n  \n", "empty file", None),
        ("hello\nworld\n", "not an LI-8100A .81x file", 1),
        ("\n\nTime,CO2\n1,400\n", "not an LI-8100A .81x file", 3),
        ('{"datasets": []}\n', "not an LI-8100A .81x file", 1),
    ],
)
def test_not_an_81x_file(tmp_path, content, message, line):
    path = tmp_path / "bad.81x"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as info:
        read_81x(path)
    assert str(info.value).startswith(str(path))
    assert info.value.line == line


def test_binary_file_is_not_an_81x_file(reference_data, tmp_path):
    with pytest.raises(DataFileError, match="not an LI-8100A .81x file") as info:
        read_81x(reference_data / "li8250" / "82m-0147-20220125000045.82z")
    assert "82m-0147-20220125000045.82z" in str(info.value) and info.value.line == 1


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_unreadable_file_is_a_data_file_error(tmp_path, what):
    path = tmp_path / "absent.81x"
    if what == "folder":
        path.mkdir()
    with pytest.raises(DataFileError, match="cannot read file") as info:
        read_81x(path)
    assert str(path) in str(info.value)
