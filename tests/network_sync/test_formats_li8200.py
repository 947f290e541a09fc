"""LI-8200 Smart Chamber JSON reader: real files, keying by labels, bad reps, bad files.

Broken inputs are built in ``tmp_path`` from the MIT fluxfinder fixture. Expected values
were read off the JSON (headers and footers), not off this reader.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from chamberd.controller.errors import DataFileError, TruncatedObservationError
from chamberd.network_sync.formats import read_li8200_json

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fluxfinder_LI8200-01S.json"
DOC = json.loads(FIXTURE.read_text())


def _doc() -> dict:
    return copy.deepcopy(DOC)


def _rep(doc: dict, dataset: int, label: str, rep: str) -> dict:
    return doc["datasets"][dataset][label]["reps"][rep]


def _write(tmp_path: Path, doc: dict, name: str = "edited.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=1))
    return path


@pytest.fixture(scope="module")
def fluxfinder():
    return read_li8200_json(FIXTURE)


def test_reps_in_file_order_with_metadata_and_reference(fluxfinder):
    obs = fluxfinder.observations
    assert fluxfinder.rejected == () and fluxfinder.path == str(FIXTURE)
    assert [(o.index, o.label) for o in obs] == [(1, "47"), (2, "47"), (3, "48"), (4, "48")]
    assert [o.start_time for o in obs] == [
        dt.datetime(2024, 6, 13, 8, 15, 3),
        dt.datetime(2024, 6, 13, 8, 16, 27),
        dt.datetime(2024, 6, 13, 8, 18, 48),
        dt.datetime(2024, 6, 13, 8, 20, 13),
    ]
    first = obs[0]
    assert first.instrument == "LI-8200" and first.port is None
    assert first.volume_cm3 == 6835.06 and first.area_cm2 == 318.0 and first.offset_cm == 8.0
    assert first.time_zone == "America/New_York"
    assert first.header["InstrumentSerialNumber"] == "TG10-01087"
    assert first.elapsed_s.size == 60 and first.obs_length_s == 59
    assert [g.gas for g in first.gases] == ["co2", "ch4"]
    co2, ch4 = first.gases
    assert (co2.column, co2.unit, co2.flux_unit) == ("co2_dry_umol_mol", "umol/mol", "umol m-2 s-1")
    assert (ch4.column, ch4.unit, ch4.flux_unit) == ("ch4_dry_nmol_mol", "nmol/mol", "nmol m-2 s-1")
    assert co2.dry and co2.window_start_exclusive and co2.dead_band_s == 5 and co2.end_s == 59
    assert first.columns["co2_dry_umol_mol"][0] == 522.005
    assert first.columns["pressure_kpa"][0] == 101.732
    # C_x pinned at 1e6 (rising CO2) and at 0 (falling CH4) with t_o 0: the OLS fallback
    ref = first.reference["co2"]
    assert (ref.model, ref.flux, ref.lin_flux, ref.exp_flux) == ("linear", 6.6457, 6.6457, None)
    assert (ref.n_points, ref.iterations, ref.slope_per_s) == (54, 10, 0.757144)
    assert first.reference["ch4"].model == "linear" and first.reference["ch4"].flux == -0.120484
    assert first.has_footer and not first.warnings


def test_converged_exponential_reference(fluxfinder):
    ref = fluxfinder.observations[3].reference["co2"]
    assert (ref.model, ref.flux, ref.exp_flux, ref.lin_flux) == (
        "exponential",
        5.72601,
        5.72601,
        None,
    )
    assert (ref.exp_r2, ref.exp_a_per_s, ref.exp_cx, ref.exp_c0, ref.exp_t0_s) == (
        0.997253,
        0.007013,
        614.653,
        521.527,
        4.45692,
    )
    assert (ref.iterations, ref.n_points) == (5, 54)


def test_empty_instrument_results_are_reported_not_invented(fluxfinder):
    obs = fluxfinder.observations[2]
    assert obs.reference == {} and not obs.has_footer
    assert obs.warnings == (
        "datasets[1].48.reps.REP_1: the instrument reported no ch4 flux (empty footer)",
        "datasets[1].48.reps.REP_1: the instrument reported no co2 flux (empty footer)",
    )
    assert obs.elapsed_s.size == 60  # the trace itself is still there to refit


def test_n2o_file(reference_data):
    result = read_li8200_json(reference_data / "smartchamber" / "goflux_LI8200.json")
    (obs,) = result.observations
    assert (obs.label, obs.volume_cm3, obs.area_cm2, obs.offset_cm) == (
        "Farum_C_E",
        682.96,
        318.0,
        2.0,
    )
    assert obs.start_time == dt.datetime(2022, 10, 3, 11, 3, 17)
    assert obs.time_zone == "Europe/Copenhagen" and obs.elapsed_s.size == 180
    (gas,) = obs.gases
    assert (gas.gas, gas.column, gas.dead_band_s, gas.end_s) == ("n2o", "n2o_dry_nmol_mol", 20, 179)
    assert gas.unit == "nmol/mol" and gas.flux_unit == "nmol m-2 s-1"
    ref = obs.reference["n2o"]
    assert (ref.model, ref.flux, ref.exp_t0_s, ref.exp_cx, ref.n_points) == (
        "exponential",
        0.0107354,
        19.3189,
        349.91,
        159,
    )


def test_columns_are_keyed_by_the_reps_labels(fluxfinder, tmp_path):
    doc = _doc()
    rep = _rep(doc, 0, "47", "REP_1")
    renamed = {"timestamp": "t_s", "chamber_p": "p_kpa", "chamber_t": "t_c", "h2o": "w"}
    rep["data"] = {renamed.get(k, k): v for k, v in reversed(rep["data"].items())}
    rep["data"]["extra"] = ["x"] * 60  # an unknown column, not even numbers
    for key, name in (("etime", "t_s"), ("pressure", "p_kpa"), ("temperature", "t_c")):
        rep["labels"][key] = name
    rep["labels"]["h2o"] = "w"
    rep["header"]["Volume2"] = rep["header"].pop("TotalVolume")
    rep["labels"]["volume"] = "Volume2"
    obs = read_li8200_json(_write(tmp_path, doc)).observations[0]
    original = fluxfinder.observations[0]
    np.testing.assert_array_equal(obs.elapsed_s, original.elapsed_s)
    for key, values in original.columns.items():
        np.testing.assert_array_equal(obs.columns[key], values)
    assert obs.volume_cm3 == original.volume_cm3 and not obs.warnings


def test_gas_sets_may_change_between_reps(fluxfinder, tmp_path):
    doc = _doc()
    del _rep(doc, 0, "47", "REP_2")["data"]["ch4"]
    result = read_li8200_json(_write(tmp_path, doc))
    assert [[g.gas for g in o.gases] for o in result.observations] == [
        ["co2", "ch4"],
        ["co2"],
        ["co2", "ch4"],
        ["co2", "ch4"],
    ]
    np.testing.assert_array_equal(
        result.observations[1].columns["co2_dry_umol_mol"],
        fluxfinder.observations[1].columns["co2_dry_umol_mol"],
    )


def test_garbled_values_become_missing_samples_with_a_warning(fluxfinder, tmp_path):
    doc = _doc()
    data = _rep(doc, 0, "47", "REP_1")["data"]
    data["co2"][30] = "garbage"
    data["co2"][31] = None
    data["h2o"][7] = True
    obs = read_li8200_json(_write(tmp_path, doc)).observations[0]
    co2 = obs.columns["co2_dry_umol_mol"]
    assert np.isnan(co2[30]) and np.isnan(co2[31]) and np.isnan(obs.columns["h2o_mmol_mol"][7])
    original = fluxfinder.observations[0].columns["co2_dry_umol_mol"]
    keep = np.ones(co2.size, dtype=bool)
    keep[[30, 31]] = False
    np.testing.assert_array_equal(co2[keep], original[keep])  # the rest intact
    assert obs.warnings == (
        "datasets[0].47.reps.REP_1.data.h2o: 1 value(s) not a number, first at [7] (True): "
        "missing samples",
        "datasets[0].47.reps.REP_1.data.co2: 2 value(s) not a number, first at [30] "
        "('garbage'): missing samples",
    )


def test_rep_without_footer_is_read_and_reported(tmp_path):
    doc = _doc()
    del _rep(doc, 1, "48", "REP_2")["footer"]
    obs = read_li8200_json(_write(tmp_path, doc)).observations[3]
    assert not obs.has_footer and obs.reference == {}
    assert obs.gases[0].dead_band_s == 5  # the dead band is in the header


def test_bad_reps_are_refused_and_the_others_read(tmp_path):
    doc = _doc()
    rep = _rep(doc, 0, "47", "REP_2")
    rep["data"]["co2"] = rep["data"]["co2"][:-5]  # columns of different lengths
    del _rep(doc, 1, "48", "REP_2")["header"]["TotalVolume"]
    path = _write(tmp_path, doc, "two_bad.json")
    result = read_li8200_json(path)
    assert [o.index for o in result.observations] == [1, 3]
    first, second = result.rejected
    assert str(first).startswith(f"{path}, observation 2: datasets[0].47.reps.REP_2:")
    assert "differ in length (timestamp 60" in str(first) and "co2_dry_umol_mol 55" in str(first)
    assert str(second).startswith(f"{path}, observation 4: datasets[1].48.reps.REP_2.header")
    assert "volume missing or not positive" in str(second)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h.pop("Area"), "area missing or not positive"),
        (lambda h: h.__setitem__("Area", 0), "area missing or not positive"),
        (lambda h: h.__setitem__("TotalVolume", "big"), "volume missing or not positive"),
        (lambda h: h.pop("DeadBand"), "dead band missing or negative"),
        (lambda h: h.__setitem__("DeadBand", -1), "dead band missing or negative"),
    ],
)
def test_missing_header_values_refuse_the_rep(tmp_path, edit, message):
    doc = _doc()
    edit(_rep(doc, 1, "48", "REP_1")["header"])
    path = _write(tmp_path, doc)
    result = read_li8200_json(path)
    assert [o.index for o in result.observations] == [1, 2, 4]
    (refused,) = result.rejected
    assert str(refused) == (f"{path}, observation 3: datasets[1].48.reps.REP_1.header: {message}")


def test_missing_data_column_refuses_the_rep(tmp_path):
    doc = _doc()
    del _rep(doc, 0, "47", "REP_1")["data"]["chamber_t"]
    (refused,) = read_li8200_json(_write(tmp_path, doc)).rejected
    assert "observation 1" in str(refused)
    assert "no temperature column 'chamber_t' in data" in str(refused)


def test_rep_cut_short_is_refused_by_its_summary(tmp_path):
    doc = _doc()
    data = _rep(doc, 1, "48", "REP_2")["data"]
    for key in data:
        data[key] = data[key][:40]  # ends at 39 s; the summary says the rep spans 59 s
    path = _write(tmp_path, doc)
    result = read_li8200_json(path)
    assert [o.index for o in result.observations] == [1, 2, 3]
    (refused,) = result.rejected
    assert isinstance(refused, TruncatedObservationError)
    assert str(refused).startswith(f"{path}, observation 4: truncated")
    assert "ends at elapsed 39 s" in str(refused) and "summary spans 59 s" in str(refused)


def test_gap_in_a_rep_is_refused_as_truncated(tmp_path):
    doc = _doc()
    data = _rep(doc, 0, "47", "REP_1")["data"]
    for key in data:
        data[key] = data[key][:20] + data[key][40:]
    result = read_li8200_json(_write(tmp_path, doc))
    (refused,) = result.rejected
    assert "observation 1" in str(refused) and "samples missing between elapsed 19 s" in str(
        refused
    )
    assert len(result.observations) == 3


def test_datasets_and_labels_that_are_not_objects_are_refused(tmp_path):
    doc = _doc()
    doc["datasets"].insert(0, "not an object")
    doc["datasets"][1]["47"] = {"remark": "no reps here"}
    path = _write(tmp_path, doc)
    result = read_li8200_json(path)
    assert [(o.index, o.label) for o in result.observations] == [(1, "48"), (2, "48")]
    assert [str(e) for e in result.rejected] == [
        f"{path}: datasets[0]: not an object, skipped",
        f"{path}: datasets[1].47: no 'reps' object, skipped",
    ]


def test_byte_order_mark_is_accepted(fluxfinder, tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    assert len(read_li8200_json(path).observations) == 4


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "datasets": [\n    {"47": ,\n')
    with pytest.raises(DataFileError, match="not valid JSON") as info:
        read_li8200_json(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}, line 3: not valid JSON")


def test_cut_json_names_the_last_line(tmp_path):
    text = FIXTURE.read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataFileError, match="not valid JSON") as info:
        read_li8200_json(path)
    assert info.value.line == text[: len(text) // 2].count("\n") + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("  \n", "empty file"),
        ('{"name": "x"}', "no 'datasets' list: not a Smart Chamber file"),
        ("[1, 2]", "no 'datasets' list: not a Smart Chamber file"),
        ('{"datasets": []}', "no reps found"),
        ('{"datasets": [{"47": {"reps": {}}}]}', "no reps found"),
    ],
)
def test_not_a_smart_chamber_file(tmp_path, content, message):
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as info:
        read_li8200_json(path)
    assert str(info.value).startswith(str(path))


def test_an_81x_file_is_not_json(salt_81x):
    with pytest.raises(DataFileError, match="not valid JSON") as info:
        read_li8200_json(salt_81x)
    assert info.value.line == 1 and "SALT_20181005_LT.81x" in str(info.value)


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_unreadable_file_is_a_data_file_error(tmp_path, what):
    path = tmp_path / "absent.json"
    if what == "folder":
        path.mkdir()
    with pytest.raises(DataFileError, match="cannot read file") as info:
        read_li8200_json(path)
    assert str(path) in str(info.value)


def test_rep_without_gas_data_says_so(tmp_path):
    # a Smart Chamber logging only its own sensors: no analyser columns, empty labels
    doc = _doc()
    rep = _rep(doc, 0, "47", "REP_2")
    for gas in ("co2", "ch4", "h2o"):
        del rep["data"][gas]
    rep["labels"]["h2o"] = ""
    rep["header"]["InstrumentModel"] = ""
    path = _write(tmp_path, doc)
    result = read_li8200_json(path)
    assert [o.index for o in result.observations] == [1, 3, 4]
    (refused,) = result.rejected
    assert str(refused) == (
        f"{path}, observation 2: datasets[0].47.reps.REP_2: no gas data (co2, ch4 or n2o): "
        "only the chamber's own sensors were logged, so there is no flux to fit"
    )


def test_file_without_any_gas_data_refuses_every_rep(tmp_path):
    doc = _doc()
    for dataset, label in ((0, "47"), (1, "48")):
        for rep in doc["datasets"][dataset][label]["reps"].values():
            for gas in ("co2", "ch4"):
                del rep["data"][gas]
    result = read_li8200_json(_write(tmp_path, doc))
    assert result.observations == () and len(result.rejected) == 4
    assert all("no gas data" in str(e) for e in result.rejected)


def test_empty_labels_fall_back_to_the_default_columns(fluxfinder, tmp_path):
    doc = _doc()
    labels = _rep(doc, 0, "47", "REP_1")["labels"]
    for key in ("etime", "pressure", "temperature", "h2o", "volume", "area", "deadband"):
        labels[key] = ""
    labels["h2o"] = None
    obs = read_li8200_json(_write(tmp_path, doc)).observations[0]
    original = fluxfinder.observations[0]
    np.testing.assert_array_equal(obs.elapsed_s, original.elapsed_s)
    assert obs.columns.keys() == original.columns.keys() and not obs.warnings


def test_missing_water_column_is_named(tmp_path):
    doc = _doc()
    rep = _rep(doc, 0, "47", "REP_1")
    del rep["data"]["h2o"]
    (refused,) = read_li8200_json(_write(tmp_path, doc)).rejected
    assert "REP_1: no water vapour column 'h2o' in data" in str(refused)


def test_time_zone_that_is_not_an_iana_name_is_ignored_with_a_warning(tmp_path):
    doc = _doc()
    _rep(doc, 0, "47", "REP_1")["header"]["TimeZone"] = "Eastern Time"
    obs = read_li8200_json(_write(tmp_path, doc)).observations[0]
    assert obs.time_zone is None
    assert obs.warnings == (
        "datasets[0].47.reps.REP_1.header: TimeZone 'Eastern Time' is not a known IANA time "
        "zone, ignored",
    )
