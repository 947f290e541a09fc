"""Agreement of our refit with the instruments' own fluxes on every reference file.

Tolerances (issue 2): linear flux within 0.5 % median relative difference and >= 95 % of
observations within 2 % (|instrument flux| >= 0.05); exponential flux, where the firmware
converged (status Exp, iterations below its cap), median within 1 %. Where we disagree by
more than 2 %, our fit has the higher R2.

Data quirk, documented in shared/data/README.md: the rows of worksWell.81x are not what the
firmware fitted (the file was re-exported). Ordinary least squares maximises R2 over all
lines through the same points, and on every other file our OLS R2 matches the footer's
Lin_R2 to 0.001; an observation whose footer Lin_R2 differs from the OLS R2 of its logged
rows (same window) by more than 0.002 therefore cannot have been fitted from those rows.
The 2 % and exponential criteria are asserted on the observations whose rows reproduce the
footer; the excluded ones are asserted to come from worksWell.81x only.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from chamberd.network_sync.formats import read_82z
from chamberd.network_sync.refit import agreement, refit_paths

R2_REPRODUCED = 0.002
MIN_REF = 0.05


@pytest.fixture(scope="module")
def report(reference_data: Path):
    files = sorted((reference_data / "li8100a").glob("*.81x"))
    files += sorted((reference_data / "smartchamber").glob("*.json"))
    assert len(files) == 10
    return refit_paths(files)


def _rel(ours: float, ref: float) -> float:
    return abs(ours - ref) / abs(ref)


def _reproduced(row: dict) -> bool:
    ref = row["ref_lin_r2"]
    return ref is None or abs(row["lin_r2"] - ref) <= R2_REPRODUCED


def test_every_file_is_read_and_only_truncated_observations_are_refused(report):
    refused = sorted((Path(e.path).name, e.observation) for e in report.refused)
    assert refused == [
        ("2312_issue005_small.81x", 1),
        ("2312_issue005_small.81x", 2),
        ("NoCRVFit.81x", 23),
        ("NoCRVFit.81x", 94),
        ("NoCRVFit.81x", 98),
        ("SALT_20181005_LT.81x", 2),
        ("licor_north1.81x", 3),
    ]
    assert all("truncated" in str(e) for e in report.refused)
    files = {r["source_file"] for r in report.rows}
    assert len(files) == 9  # every file but the wholly truncated one
    assert report.observations == 185


def test_linear_median_over_all_observations(report):
    diffs = [
        _rel(r["lin_flux"], r["ref_lin_flux"])
        for r in report.rows
        if r["ref_lin_flux"] is not None and abs(r["ref_lin_flux"]) >= MIN_REF
    ]
    assert len(diffs) >= 180
    assert statistics.median(diffs) < 0.005


def test_linear_within_two_percent_where_the_rows_are_what_was_fitted(report):
    rows = [
        r
        for r in report.rows
        if r["ref_lin_flux"] is not None and abs(r["ref_lin_flux"]) >= MIN_REF
    ]
    kept = [r for r in rows if _reproduced(r)]
    excluded = [r for r in rows if not _reproduced(r)]
    assert {r["source_file"] for r in excluded} <= {"worksWell.81x"}
    assert len(kept) >= 130
    within = [_rel(r["lin_flux"], r["ref_lin_flux"]) <= 0.02 for r in kept]
    assert sum(within) / len(within) >= 0.95
    assert statistics.median(_rel(r["lin_flux"], r["ref_lin_flux"]) for r in kept) < 0.005


def test_exponential_median_where_the_firmware_converged(report):
    rows = [
        r
        for r in report.rows
        if r["ref_model"] == "exponential" and r["ref_exp_converged"] and _reproduced(r)
    ]
    assert len(rows) >= 60
    diffs = [_rel(r["exp_flux"], r["ref_exp_flux"]) for r in rows]
    assert statistics.median(diffs) < 0.01


def test_where_we_disagree_our_fit_has_the_better_r2(report):
    checked = 0
    for r in report.rows:
        if not _reproduced(r):
            continue
        lin_checked = (
            r["ref_lin_flux"] is not None
            and abs(r["ref_lin_flux"]) >= MIN_REF
            and r["ref_lin_r2"] is not None
        )
        if lin_checked and _rel(r["lin_flux"], r["ref_lin_flux"]) > 0.02:
            assert r["lin_r2"] >= r["ref_lin_r2"] - 5e-5, r
            checked += 1
        exp_checked = r["ref_model"] == "exponential" and r["ref_exp_converged"]
        if exp_checked and _rel(r["exp_flux"], r["ref_exp_flux"]) > 0.02:
            assert r["exp_r2"] >= r["ref_exp_r2"] - 5e-5, r
            checked += 1
    assert checked >= 1  # there are disagreements, and each is explained


def test_agreement_summary_matches_the_rows(report):
    summary = agreement([r for r in report.rows if _reproduced(r)])
    assert summary.lin_within_2pct >= 0.95
    assert summary.exp_median < 0.01
    assert summary.exp_outside_better_r2 == summary.exp_outside
    assert any("linear flux vs instrument" in line for line in summary.lines())


def test_smart_chamber_linear_fallbacks_reproduce_the_firmware(report):
    rows = [r for r in report.rows if r["source_file"].endswith(".json")]
    fallbacks = [r for r in rows if r["ref_model"] == "linear"]
    assert len(fallbacks) == 5  # CO2 of reps 1 and 2, CH4 of reps 1, 2 and 4
    for r in fallbacks:
        assert _rel(r["lin_flux"], r["ref_lin_flux"]) < 0.005, r
    exps = [r for r in rows if r["ref_model"] == "exponential"]
    assert {r["gas"] for r in exps} == {"co2", "n2o"}
    for r in exps:
        assert _rel(r["exp_flux"], r["ref_exp_flux"]) < 0.02, r


def test_li8250_initial_values_and_window_match_the_summary(reference_data: Path):
    path = reference_data / "li8250" / "82m-0147-20220125000045.82z"
    report = refit_paths([path])
    (row,) = report.rows
    obs = read_82z(path).observations[0]
    ref = obs.reference["co2"]
    assert row["n_points"] == ref.n_points == 16
    assert row["c0"] == pytest.approx(ref.exp_c0, abs=0.0006)
    assert row["h2o_mmol_mol"] == pytest.approx(float(ref.raw["H2O"]), abs=6e-6)
    assert row["pressure_kpa"] == float(ref.raw["PA"])
    # our exponential is at least as good a least-squares fit as the firmware's curve
    t = obs.elapsed_s
    window = (t >= 5) & (t <= 20)
    y = obs.columns["co2_dry_umol_mol"][window]
    firmware = ref.exp_cx + (ref.exp_c0 - ref.exp_cx) * np.exp(
        -ref.exp_a_per_s * (t[window] - ref.exp_t0_s)
    )
    ours_r2 = row["exp_r2"]
    tss = float(((y - y.mean()) ** 2).sum())
    firmware_r2 = 1 - float(((y - firmware) ** 2).sum()) / tss
    assert ours_r2 >= firmware_r2 - 1e-9
    assert math.isfinite(row["flux"])
