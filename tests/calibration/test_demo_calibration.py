"""``chamberd demo --calibration --json``: the drifted analyser is found about 5 % high on
the check gas and left within the limit; uncorrected fluxes of the drifted week are about
5 % off the simulator's truth, corrected within 1 %; the two calibration records reach the
central database once. Runs the demo once (about a minute)."""

from __future__ import annotations

import json

import pytest

from chamberd.controller.cli import main


def test_demo_calibration_json(tmp_path, capsys):
    assert main(["demo", "--calibration", "--json", "--folder", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert set(result) >= {
        "span_error_before",
        "span_error_after",
        "flux_error_uncorrected",
        "flux_error_corrected",
        "records_synced",
    }
    assert result["span_error_before"] == pytest.approx(0.05, abs=0.004)
    assert abs(result["span_error_after"]) < 0.004
    assert result["check_status"] == "fail" and result["adjust_status"] == "pass"
    assert result["flux_error_uncorrected_week_before"] == pytest.approx(0.05, abs=0.015)
    assert abs(result["flux_error_corrected_week_before"]) < 0.01
    assert abs(result["flux_error_corrected"]) < 0.01
    assert result["flux_error_uncorrected"] > result["flux_error_corrected"] + 0.01
    assert result["records_synced"] == 2 and result["records_resent_unchanged"] == 0
    assert result["central_calibrations"] == 2
    assert result["observations"] > 200
    # the words went to stderr, in order
    err = captured.err
    assert err.index("week 1") < err.index("trainee runs") < err.index("week 2")
    assert "zero-span-adjust" in err and "PASS: adjusted" in err
