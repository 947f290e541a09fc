"""LI-8250 .82z reader and its dense summary."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import read_82z, read_dense_summary

NAME = "82m-0147-20220125000045.82z"
SUMMARY = "82m-0147-20220125000000_dense_summary.csv"


def test_observation_and_its_summary_row(reference_data):
    (obs,) = read_82z(reference_data / "li8250" / NAME).observations
    assert (obs.instrument, obs.port, obs.label) == ("LI-8250", 1, "CH1")
    assert obs.closed_time == dt.datetime(2022, 1, 25, 0, 0, 55)
    assert obs.start_time == dt.datetime(2022, 1, 25, 0, 0, 46)
    assert obs.elapsed_s[0] == -9 and obs.elapsed_s[-1] == 180
    assert obs.volume_cm3 == pytest.approx(5893.1) and obs.area_cm2 == pytest.approx(317.8)
    (gas,) = obs.gases
    assert (gas.gas, gas.dead_band_s, gas.end_s, gas.dry) == ("co2", 5, 20, True)
    assert obs.initial.pressure_kpa == 99.9785 and obs.initial.temperature_degc == -0.31
    ref = obs.reference["co2"]
    assert ref.flux == 0.993472 and ref.model == "exponential" and ref.n_points == 16


def test_dense_summary_table(reference_data):
    table = read_dense_summary(reference_data / "li8250" / SUMMARY)
    assert len(table) == 62
    assert table[(dt.datetime(2022, 1, 25, 0, 0, 55), 1)]["co2"].flux == 0.993472


def _rezip(reference_data, tmp_path, drop=None, edit=None):
    source = zipfile.ZipFile(reference_data / "li8250" / NAME)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name in source.namelist():
            if name == drop:
                continue
            data = source.read(name)
            if edit and name in edit:
                data = edit[name](data)
            out.writestr(name, data)
    path = tmp_path / NAME
    path.write_bytes(buffer.getvalue())
    return path


def test_zip_without_data_csv(reference_data, tmp_path):
    path = _rezip(reference_data, tmp_path, drop="data.csv")
    with pytest.raises(DataFileError, match="no data.csv") as info:
        read_82z(path, summary={})
    assert NAME in str(info.value)


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.82z"
    path.write_text("not a zip")
    with pytest.raises(DataFileError, match="not a readable .82z"):
        read_82z(path)


def test_never_closed_is_refused(reference_data, tmp_path):
    def open_state(data: bytes) -> bytes:
        lines = data.decode().splitlines()
        out = lines[:3] + [
            ",".join([*line.split(",")[:-2], "1", line.split(",")[-1]]) for line in lines[3:]
        ]
        return ("\n".join(out) + "\n").encode()

    path = _rezip(reference_data, tmp_path, edit={"data.csv": open_state})
    result = read_82z(path, summary={})
    (refused,) = result.rejected
    assert "never reached the closed state" in str(refused)


def test_no_data_rows_is_refused(reference_data, tmp_path):
    def header_only(data: bytes) -> bytes:
        return ("\n".join(data.decode().splitlines()[:3]) + "\n").encode()

    path = _rezip(reference_data, tmp_path, edit={"data.csv": header_only})
    (refused,) = read_82z(path, summary={}).rejected
    assert "no data rows" in str(refused)


def test_bad_metadata_json_names_the_line(reference_data, tmp_path):
    path = _rezip(reference_data, tmp_path, edit={"metadata.json": lambda d: d[:200]})
    with pytest.raises(DataFileError, match="metadata.json is not valid JSON") as info:
        read_82z(path, summary={})
    assert info.value.line is not None


def test_summary_elsewhere_or_absent(reference_data, tmp_path):
    path = _rezip(reference_data, tmp_path)  # a copy with no summary beside it
    (obs,) = read_82z(path).observations
    assert obs.reference == {} and not obs.has_footer
    (obs,) = read_82z(path, summary=reference_data / "li8250" / SUMMARY).observations
    assert obs.reference["co2"].flux == 0.993472
