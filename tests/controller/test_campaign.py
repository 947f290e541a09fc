"""``chamberd demo --campaign``: the simulated campaign recovers its known truth.

The campaign is simulated once for the module (the daemon on the simulated site for the
demo's 20 days of virtual time, and the survey's CSV), then loaded into a central database
on each backend (the sync of the automated system, the import of the survey) and compared:
the survey's injected relative bias (-13 %) and the sparse-sampling bias of its schedule
(computed from the simulator's true flux) must lie inside the CIs the comparison reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import sqlite3
import statistics
import zoneinfo

import pytest

from chamberd.controller.campaign import (
    CampaignDesign,
    analyse_campaign,
    format_campaign,
    load_campaign,
    simulate_campaign,
    sparse_relative_bias,
)
from chamberd.controller.cli import main
from chamberd.network_sync.central import Central

DESIGN = CampaignDesign()  # the demo's own design


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return simulate_campaign(tmp_path_factory.mktemp("campaign"), DESIGN)


def test_the_automated_system_ran_through_the_daemon_for_the_whole_campaign(campaign):
    per_round = len(DESIGN.collars)
    rounds = DESIGN.days * 24 * 60 // DESIGN.interval_min
    assert len(campaign.closures) >= rounds * per_round
    # closures in every half-hour of every day: daily cycles, not a few rounds
    days = {t.date() for _, t, _ in campaign.closures}
    assert len(days) >= DESIGN.days
    fluxes = [f for c, _, f in campaign.closures if c == "C1"]
    assert max(fluxes) / min(fluxes) > 1.5  # the diel cycle of the soil temperature


def test_the_survey_samples_sparsely_in_daytime(campaign):
    zone = zoneinfo.ZoneInfo(campaign.cfg.site.time_zone)
    local = [at.astimezone(zone) for _, at, _, _ in campaign.survey]
    assert all(dt.time(10, 0) <= t.time() <= dt.time(14, 0) for t in local)
    visit_days = sorted({t.date() for t in local})
    assert len(visit_days) == len(range(0, DESIGN.days, DESIGN.survey_every_days))
    assert {(b - a).days for a, b in itertools.pairwise(visit_days)} == {DESIGN.survey_every_days}
    # the survey's chamber reads low by the design's fraction, with its random error
    ratios = [observed / true for _, _, observed, true in campaign.survey]
    assert statistics.fmean(ratios) == pytest.approx(1 + DESIGN.survey_bias, abs=0.04)
    assert statistics.stdev(ratios) == pytest.approx(
        (1 + DESIGN.survey_bias) * DESIGN.survey_noise, rel=0.4
    )
    lines = campaign.survey_csv.read_text().splitlines()
    assert lines[0] == "chamber,start_time,co2_flux_umol_m2_s,area_cm2,volume_cm3"
    assert len(lines) == len(campaign.survey) + 1


def test_the_truth_is_the_simulator_s(campaign):
    assert campaign.truth["relative_bias"] == DESIGN.survey_bias
    # daytime sampling of a flux that peaks at 15:00 over-estimates the period's mean
    assert 0.1 < campaign.truth["sparse_sampling_bias"] < 0.35
    # the helper itself: a constant flux has no sampling bias; a step is interpolated
    start = campaign.start_utc
    end = start + dt.timedelta(days=2)
    times = [start + dt.timedelta(hours=h) for h in (12, 36)]
    assert sparse_relative_bias(lambda t: 2.0, times, start, end) == pytest.approx(0.0)
    step = sparse_relative_bias(lambda t: 1.0 if t < start + dt.timedelta(days=1) else 3.0,
                                times, start, end)  # fmt: skip
    assert step == pytest.approx(0.0, abs=1e-3)  # 1 held to 12 h, ramp, 3 held: mean 2


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres_url")


def _fresh(campaign, folder):
    """The campaign with its own copy of the site database (a sync empties the outbox)."""
    copy = folder / "campaign-auto.db"
    with sqlite3.connect(campaign.site_db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    return dataclasses.replace(campaign, site_db=copy)


def test_the_comparison_recovers_the_truth(campaign, target, tmp_path):
    campaign = _fresh(campaign, tmp_path)
    loaded = load_campaign(campaign, target)
    n_auto = len(campaign.closures)
    assert loaded["sync"]["sent"] == n_auto and loaded["sync"]["remaining"] == 0
    assert loaded["import"]["sent"] == len(campaign.survey) and not loaded["import"]["rejected"]
    out = analyse_campaign(campaign, target, report=None, n_boot=1000)
    values = out["json"]
    found, truth = values["comparison"], values["truth"]
    print(json.dumps({"truth": truth, "comparison": found}, indent=1))  # the evidence
    n_visits = len(range(0, DESIGN.days, DESIGN.survey_every_days))
    assert found["n_pairs"] == n_visits * len(DESIGN.survey_loops)
    for name in ("relative_bias", "sparse_sampling_bias"):
        low, high = found[f"{name}_ci"]
        assert low <= truth[name] <= high, (name, truth[name], low, high)
        assert values["recovered"][name] is True
    # the bias is recovered, not merely covered by a very wide interval
    assert found["relative_bias_ci"][1] - found["relative_bias_ci"][0] < 0.1
    assert found["sparse_sampling_bias_ci"][1] - found["sparse_sampling_bias_ci"][0] < 0.1
    # the method part of the survey's sparse estimate is its chamber's bias
    sampling = out["comparison"].sampling.result
    assert sampling.method_relative_bias == pytest.approx(
        DESIGN.survey_bias * (1 + truth["sparse_sampling_bias"]), abs=0.04
    )
    # each system's within-system baseline is reported beside the comparison
    assert {b["system"] for b in values["baselines"]} == {
        f"{campaign.site_id}/auto",
        f"{campaign.site_id}/survey",
    }
    with Central.connect(target, mode="read") as central:
        systems = central.query("SELECT system_id, method FROM systems ORDER BY system_id")
    assert [(r["system_id"], r["method"]) for r in systems] == [
        ("auto", "chamberd"),
        ("survey", "imported"),
    ]
    text = format_campaign({"json": {**values, "wall_s": 1.0}})
    assert "relative bias" in text and "sparse-sampling bias" in text and "NO" not in text


def test_cli_json_last_line(tmp_path, capsys):
    status = main(["demo", "--campaign", "--days", "4", "--json", "--folder", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr()
    last = json.loads(out.out.strip().splitlines()[-1])
    assert set(last) >= {"truth", "comparison", "report"}
    assert set(last["truth"]) >= {"relative_bias", "sparse_sampling_bias"}
    for name in ("relative_bias", "sparse_sampling_bias"):
        assert name in last["comparison"] and f"{name}_ci" in last["comparison"]
    assert last["report"].endswith("campaign-report.html")
    assert (tmp_path / "campaign-report.html").is_file()
    assert "survey" in out.err  # the progress went to stderr, not before the JSON


def test_cli_refuses_target_without_campaign(capsys):
    assert main(["demo", "--target", "sqlite:///x.db"]) == 2
    assert "--target" in capsys.readouterr().err


def test_cli_a_folder_that_cannot_be_written_is_a_message(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status = main(["demo", "--campaign", "--days", "4", "--folder", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert status == 1 and "cannot write the campaign's files" in err
    assert "Traceback" not in err
