"""LI-8100A .81x reader: real files, column keying, garbled input, truncation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from chamberd.controller.errors import DataFileError, TruncatedObservationError
from chamberd.network_sync.formats import read_81x


def test_salt_file_metadata_and_reference(salt_81x):
    result = read_81x(salt_81x)
    assert [o.index for o in result.observations] == [1, 3, 4, 5, 6, 7, 8]
    first = result.observations[0]
    assert (first.port, first.label, first.instrument) == (1, "SALT", "LI-8100A")
    assert first.volume_cm3 == 5020.1 and first.area_cm2 == 317.8 and first.offset_cm == 2.0
    assert first.obs_length_s == 120.0
    assert first.gases[0].dead_band_s == 25.0 and first.gases[0].end_s == 120.0
    assert first.start_time == dt.datetime(2019, 2, 24, 14, 7, 17)
    assert first.closed_time == dt.datetime(2019, 2, 24, 14, 7, 30)
    assert first.elapsed_s[0] == -1 and first.elapsed_s[-1] == 119
    ref = first.reference["co2"]
    assert (ref.model, ref.exp_flux, ref.lin_flux) == ("exponential", 0.68, 0.15)
    assert (ref.iterations, ref.max_iterations, ref.n_points) == (10, 10, 95)
    assert not ref.exp_converged  # it stopped at its iteration cap
    assert first.instrument_rows["initial"]["co2_dry_umol_mol"] == 402.23


def test_truncated_observation_is_refused_by_name(salt_81x):
    (refused,) = read_81x(salt_81x).rejected
    assert isinstance(refused, TruncatedObservationError)
    assert refused.observation == 2
    text = str(refused)
    assert "SALT_20181005_LT.81x" in text and "observation 2" in text
    assert "ends at elapsed 73 s of an observation length of 120 s" in text


def test_truncated_file_refuses_every_observation(reference_data):
    path = reference_data / "li8100a" / "2312_issue005_small.81x"
    result = read_81x(path)
    assert result.observations == ()
    messages = [str(e) for e in result.rejected]
    assert len(messages) == 2
    assert "observation 1" in messages[0] and "samples missing between elapsed 147 s" in messages[0]
    assert "Chamber close not detected" in messages[0]  # the instrument's own note
    assert "observation 2" in messages[1]


def test_file_without_flux_footer_is_reported(reference_data):
    result = read_81x(reference_data / "li8100a" / "licor_north1.81x")
    assert len(result.observations) == 2
    for obs in result.observations:
        assert not obs.has_footer and obs.reference == {}
        assert obs.gases[0].dead_band_s is None  # the file does not say


def test_restart_annotations_are_kept(reference_data):
    result = read_81x(reference_data / "li8100a" / "NoCRVFit.81x")
    assert len(result.observations) == 99
    refused = {e.observation: str(e) for e in result.rejected}
    assert set(refused) == {23, 94, 98}
    assert "The measurement was restarted." in refused[23]


def test_missing_annotation_cells_are_tolerated(reference_data):
    result = read_81x(reference_data / "li8100a" / "testVaryingColNumber.81x")
    assert [len(o.elapsed_s) for o in result.observations] == [185, 197]
    assert all(not o.warnings for o in result.observations)


def test_pre_closure_rows_and_exponential_fallback(reference_data):
    (obs,) = read_81x(reference_data / "li8100a" / "goflux_LI8150.81x").observations
    assert (obs.elapsed_s < 0).sum() == 62
    assert obs.reference["co2"].model == "linear"
    assert obs.reference["co2"].exp_cx == 1e6


def _block(salt_81x: Path, index: int = 0) -> list[str]:
    lines = salt_81x.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("LI-8100:")]
    starts.append(len(lines))
    return lines[starts[index] : starts[index + 1]]


def test_columns_are_keyed_by_header_name(salt_81x, tmp_path):
    block = _block(salt_81x)
    header_at = next(i for i, line in enumerate(block) if line.startswith("Type\t"))
    names = block[header_at].split("\t")
    order = [0, 1, 2, *range(len(names) - 1, 2, -1)]  # reverse all but Type/Etime/Date
    out = []
    for i, line in enumerate(block):
        cells = line.split("\t")
        if i >= header_at and cells[0] in ("Type", "1", "2", "3", "4"):
            cells += [""] * (len(names) - len(cells))
            line = "\t".join(cells[j] for j in order)
        out.append(line)
    path = tmp_path / "reordered.81x"
    path.write_text("\n".join(out) + "\n")
    original = read_81x(salt_81x).observations[0]
    (obs,) = read_81x(path).observations
    for key in ("co2_umol_mol", "h2o_mmol_mol", "pressure_kpa", "temperature_degc"):
        np.testing.assert_array_equal(obs.columns[key], original.columns[key])


def test_garbled_and_short_rows_are_skipped_with_their_line(salt_81x, tmp_path):
    block = _block(salt_81x)
    first_data = next(i for i, line in enumerate(block) if line.startswith("1\t"))
    cells = block[first_data + 20].split("\t")
    cells[4] = "gar#bage"  # the Pressure cell
    block[first_data + 20] = "\t".join(cells)
    block[first_data + 21] = "1\t20"  # short row
    block.insert(first_data + 22, "\x00\x13#%@!")  # line noise
    path = tmp_path / "garbled.81x"
    path.write_text("\n".join(block) + "\n")
    (obs,) = read_81x(path).observations
    warnings = "\n".join(obs.warnings)
    assert f"line {first_data + 21}: garbled row skipped" in warnings
    assert f"line {first_data + 22}: short row" in warnings
    assert f"line {first_data + 23}: garbled line skipped" in warnings
    assert obs.elapsed_s.size == 133 - 2
    assert obs.has_footer


def test_column_sets_may_change_between_observations(salt_81x, tmp_path):
    first, second = _block(salt_81x, 0), _block(salt_81x, 2)
    header_at = next(i for i, line in enumerate(second) if line.startswith("Type\t"))
    drop = second[header_at].split("\t").index("Tbench")

    def without(line: str) -> str:
        cells = line.split("\t")
        return "\t".join(cells[:drop] + cells[drop + 1 :])

    second = second[:header_at] + [
        without(x) if "\t" in x and not x.split("\t")[0].endswith(":") else x
        for x in second[header_at:]
    ]
    path = tmp_path / "mixed.81x"
    path.write_text("\n".join(first + second) + "\n")
    result = read_81x(path)
    assert len(result.observations) == 2
    assert (
        result.observations[1].elapsed_s.size == read_81x(salt_81x).observations[1].elapsed_s.size
    )


def test_observation_without_footer_in_a_file_with_footers(salt_81x, tmp_path):
    block = _block(salt_81x)
    footer_at = next(i for i, line in enumerate(block) if line.startswith("CrvFitStatus"))
    path = tmp_path / "nofooter.81x"
    path.write_text("\n".join(block[:footer_at]) + "\n")
    (obs,) = read_81x(path).observations
    assert not obs.has_footer and obs.reference == {}
    assert obs.gases[0].dead_band_s is None


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("", "no observation found", None),
        ("hello\nworld\n", "not an LI-8100A .81x file", 1),
        ("\n\nTime,CO2\n1,400\n", "not an LI-8100A .81x file", 3),
    ],
)
def test_not_an_81x_file(tmp_path, content, message, line):
    path = tmp_path / "bad.81x"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as info:
        read_81x(path)
    assert "bad.81x" in str(info.value)
    assert info.value.line == line


def test_missing_file_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="cannot read file"):
        read_81x(tmp_path / "absent.81x")


def test_missing_required_header_value_names_the_field(salt_81x, tmp_path):
    block = [line for line in _block(salt_81x) if not line.startswith("Vtotal:")]
    path = tmp_path / "novolume.81x"
    path.write_text("\n".join(block) + "\n")
    result = read_81x(path)
    (refused,) = result.rejected
    assert "Vtotal" in str(refused) and "observation 1" in str(refused)


def test_missing_required_column_names_it(salt_81x, tmp_path):
    block = _block(salt_81x)
    header_at = next(i for i, line in enumerate(block) if line.startswith("Type\t"))
    block[header_at] = block[header_at].replace("\tH2O\t", "\tH2Ox\t")
    path = tmp_path / "noh2o.81x"
    path.write_text("\n".join(block) + "\n")
    (refused,) = read_81x(path).rejected
    assert "no column H2O" in str(refused)
    assert refused.line == header_at + 1
