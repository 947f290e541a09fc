"""``chamberd compare --gas ch4|n2o`` end to end, on both backends: two systems that measure
CO2, CH4 and N2O on every closure (synced like a laser analyser's site), a known relative
bias per gas, through the command line, its table, ``--json`` and ``-o``.

Units checked against factors written out here, not the code's: fluxes in nmol m-2 s-1;
sums in mg C m-2 for CH4 (CH4-C, 12.011 g C per mol CH4) and mg N m-2 for N2O (N2O-N,
2 x 14.007 g N per mol N2O), as docs/temperature-and-sums.md documents.

Seed 1 is one draw; over 30 seeds of this set-up (10 days, 28 pairs) the relative bias was
unbiased (mean -0.1300 for CH4, +0.0884 for N2O) and its 95 % CI held the truth 24 and 29
times (the percentile interval of ten day-blocks runs short, docs/agreement.md); over 20
seeds the period sum's CI held the true sum 19 and 20 times.
"""

from __future__ import annotations

import json
import re

import pytest
from comparedata import TRACE_GASES, trace_gas_systems

from chamberd.controller.cli import main
from chamberd.network_sync.central import Central

#: gas -> (sum unit, JSON column suffix, mg of the element per nmol of the gas)
SUM_UNITS = {
    "ch4": ("mg C m-2", "mg_c_m2", 12.011e-9 * 1e3),
    "n2o": ("mg N m-2", "mg_n_m2", 2 * 14.007e-9 * 1e3),
}


@pytest.fixture
def target(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        truth = trace_gas_systems(c, days=10, seed=1)
    return central_url, truth


def run(capsys, *args):
    status = main(["compare", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("gas", ["ch4", "n2o"])
def test_trace_gas_comparison_recovers_the_bias_in_its_units(target, capsys, tmp_path, gas):
    url, truth = target
    unit, suffix, per_nmol = SUM_UNITS[gas]
    report = tmp_path / f"{gas}.html"
    status, out, err = run(
        capsys, "--target", url, "--a", "XLG/auto", "--b", "XLG/survey", "--gas", gas,
        "--boot", "200", "--json", "-q", "-o", str(report),
    )  # fmt: skip
    assert status == 0, err
    d = json.loads(out)
    # the gas asked for, in its unit, on both sides
    assert d["settings"]["gas"] == gas
    for side in ("a", "b"):
        assert d[side]["gas"] == gas and d[side]["flux_unit"] == "nmol m-2 s-1"
    # 10 days x 3 visits, less the 2 visits inside the automated system's power cut
    assert d["n_pairs"] == 28
    # the injected bias, within its CI; and not another gas's bias (each gas has its own)
    lo, hi = d["relative_bias_ci"]
    assert lo <= truth[gas]["relative_bias"] <= hi, (d["relative_bias"], lo, hi)
    for other, p in TRACE_GASES.items():
        if other != gas:
            assert not lo <= p["bias"] <= hi, other
    if gas == "ch4":  # uptake read 13 % weaker: b - a is positive
        assert d["bias"] > 0 and d["bias_ci"][0] > 0
    # gap-filled sums: in mg C / mg N per m2, the power cut filled and flagged
    sums = d["temporal"]["a"]["sums"]
    assert sums["unit"] == unit and d["temporal"]["b"]["sums"]["unit"] == unit
    (period,) = sums["period"]
    assert not [k for k in period if k.startswith("sum_") and k != f"sum_{suffix}"]
    assert period["n_slots"] == 480 and period["n_filled"] == 16
    expected = truth[gas]["sum_a"] * per_nmol  # nmol m-2 -> mg m-2 of C or N
    assert period[f"sum_{suffix}"] == pytest.approx(expected, rel=0.02)
    assert period[f"ci_lower_{suffix}"] <= expected <= period[f"ci_upper_{suffix}"], (
        period,
        expected,
    )
    assert period[f"gap_fill_se_{suffix}"] > 0
    daily = sums["daily"]
    assert sum(r[f"sum_{suffix}"] for r in daily) == pytest.approx(period[f"sum_{suffix}"])
    assert d["sampling"]["result"]["unit"] == unit
    # the report names the same units
    html = report.read_text(encoding="utf-8")
    assert "nmol m-2 s-1" in html and unit in html
    # the table
    status, out, err = run(
        capsys, "--target", url, "--a", "XLG/auto", "--b", "XLG/survey", "--gas", gas,
        "--boot", "50", "-q",
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith(f"compare {gas} [nmol m-2 s-1], b - a;")
    found = re.findall(r"period sum (-?[\d.]+) \+- [\d.]+ (mg [CN] m-2) \(([\d.]+) of it", out)
    assert [u for _, u, _ in found] == [unit, unit], out
    assert float(found[0][0]) == pytest.approx(expected, rel=0.02)
    assert float(found[0][2]) > 0  # the a side's gap-filled share
