"""LI-8200 Smart Chamber JSON reader."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import read_li8200_json

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fluxfinder_LI8200-01S.json"


def test_reps_in_file_order_with_metadata_and_reference():
    result = read_li8200_json(FIXTURE)
    obs = result.observations
    assert [(o.index, o.label) for o in obs] == [(1, "47"), (2, "47"), (3, "48"), (4, "48")]
    first = obs[0]
    assert first.instrument == "LI-8200" and first.port is None
    assert first.volume_cm3 == 6835.06 and first.area_cm2 == 318.0 and first.offset_cm == 8.0
    assert first.start_time == dt.datetime(2024, 6, 13, 8, 15, 3)
    assert first.time_zone == "America/New_York"
    assert {g.gas for g in first.gases} == {"co2", "ch4"}
    co2 = next(g for g in first.gases if g.gas == "co2")
    assert co2.dry and co2.window_start_exclusive and co2.dead_band_s == 5
    assert first.reference["co2"].model == "linear"  # C_x pinned at 1e6
    assert first.reference["co2"].flux == 6.6457
    assert obs[3].reference["co2"].model == "exponential"
    assert obs[3].reference["co2"].exp_t0_s == 4.45692


def test_empty_instrument_results_are_reported_not_invented():
    obs = read_li8200_json(FIXTURE).observations[2]
    assert obs.reference == {}
    assert any("reported no co2 flux" in w for w in obs.warnings)


def test_n2o_file(reference_data):
    (obs,) = read_li8200_json(reference_data / "smartchamber" / "goflux_LI8200.json").observations
    assert [g.gas for g in obs.gases] == ["n2o"]
    assert obs.gases[0].unit == "nmol/mol" and obs.gases[0].flux_unit == "nmol m-2 s-1"
    assert obs.reference["n2o"].model == "exponential"


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "datasets": [\n    {"47": \n')
    with pytest.raises(DataFileError, match="not valid JSON") as info:
        read_li8200_json(path)
    assert info.value.line is not None and "broken.json" in str(info.value)


def test_json_that_is_not_a_smart_chamber_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"name": "x"}')
    with pytest.raises(DataFileError, match="no 'datasets' list"):
        read_li8200_json(path)


def _doc() -> dict:
    return json.loads(FIXTURE.read_text())


def test_bad_rep_is_refused_and_the_others_read(tmp_path):
    doc = _doc()
    rep = doc["datasets"][0]["47"]["reps"]["REP_2"]
    rep["data"]["co2"] = rep["data"]["co2"][:-5]  # columns of different lengths
    del doc["datasets"][1]["48"]["reps"]["REP_2"]["header"]["TotalVolume"]
    path = tmp_path / "two_bad.json"
    path.write_text(json.dumps(doc))
    result = read_li8200_json(path)
    assert [o.index for o in result.observations] == [1, 3]
    messages = sorted(str(e) for e in result.rejected)
    assert "observation 2" in messages[0] and "differ in length" in messages[0]
    assert "observation 4" in messages[1] and "volume" in messages[1]


def test_gap_in_a_rep_is_refused_as_truncated(tmp_path):
    doc = _doc()
    data = doc["datasets"][0]["47"]["reps"]["REP_1"]["data"]
    for key in data:
        data[key] = data[key][:20] + data[key][40:]
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(doc))
    result = read_li8200_json(path)
    (refused,) = result.rejected
    assert "truncated" in str(refused) and "observation 1" in str(refused)


def test_garbled_values_become_missing_samples(tmp_path):
    doc = _doc()
    doc["datasets"][0]["47"]["reps"]["REP_1"]["data"]["co2"][30] = "garbage"
    path = tmp_path / "garbled.json"
    path.write_text(json.dumps(doc))
    obs = read_li8200_json(path).observations[0]
    import numpy as np

    assert np.isnan(obs.columns["co2_dry_umol_mol"][30])
