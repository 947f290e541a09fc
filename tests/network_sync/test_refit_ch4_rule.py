"""The Smart Chamber firmware's CH4 model choice, reproduced by ``--selection licor``.

On ``smartchamber/fluxfinder_LI8200-01S.json`` the firmware reports the linear flux for
every CH4 rep (C_x pinned at 0, t_o = 0), where chamberd's exponential converges; the
curvature-significance test (nested F-test at 5 %, docs/fitting.md) makes the choices
agree: CH4 0 of 3 before, 3 of 3 after; CO2 and N2O are unchanged (3 of 3, 1 of 1), and
the LI-8100A files keep their agreement (the test is not applied to CO2).
"""

from __future__ import annotations

from collections import Counter

import pytest

from chamberd.fitting.quality import curvature_f_test
from chamberd.network_sync import refit as refit_module
from chamberd.network_sync.refit import refit_paths


def _agreement(rows):
    same, total = Counter(), Counter()
    for row in rows:
        if row["ref_model"]:
            total[row["gas"]] += 1
            same[row["gas"]] += row["model"] == row["ref_model"]
    return {gas: (same[gas], total[gas]) for gas in total}


def test_ch4_model_choice_agrees_with_the_firmware(reference_data, monkeypatch):
    files = sorted((reference_data / "smartchamber").glob("*.json"))
    after = _agreement(refit_paths(files).rows)
    assert after == {"co2": (3, 3), "ch4": (3, 3), "n2o": (1, 1)}
    monkeypatch.setattr(refit_module, "TRACE_GAS_CURVATURE_ALPHA", {})
    refit_module._initial_rule.cache_clear()
    before = _agreement(refit_paths(files).rows)
    refit_module._initial_rule.cache_clear()
    assert before == {"co2": (3, 3), "ch4": (0, 3), "n2o": (1, 1)}


def test_ch4_reason_names_the_test(reference_data):
    rows = refit_paths([reference_data / "smartchamber/fluxfinder_LI8200-01S.json"]).rows
    ch4 = [r for r in rows if r["gas"] == "ch4" and r["ref_model"]]
    assert all(r["model"] == "linear" for r in ch4)
    assert any("curvature is not significant" in r["model_reason"] for r in ch4)


def test_li8100a_co2_agreement_is_kept(reference_data):
    rows = refit_paths(sorted((reference_data / "li8100a").glob("*.81x"))).rows
    same, total = _agreement(rows)["co2"]
    assert (same, total) == (161, 178)


@pytest.mark.parametrize(
    ("lin", "exp", "n", "significant"),
    [(0.7326, 0.7357, 54, False), (0.9945, 0.9972, 54, True), (0.6100, 0.6257, 159, True)],
)
def test_f_test_values(lin, exp, n, significant):
    f_stat, crit = curvature_f_test(lin, exp, n, 0.05)
    assert (f_stat > crit) is significant
