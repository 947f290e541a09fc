"""``chamberd compare``: the table, --json, --baseline and the errors, on both backends."""

from __future__ import annotations

import json

import pytest
from comparedata import two_systems

from chamberd.controller.cli import main
from chamberd.network_sync.central import Central

TOP_LEVEL = (
    "n_pairs",
    "bias",
    "relative_bias",
    "rmsd",
    "mae",
    "r",
    "ccc",
    "loa_lower",
    "loa_upper",
    "deming_slope",
    "sma_slope",
    "passing_bablok_slope",
)


@pytest.fixture
def target(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        two_systems(c, days=5, seed=2)
    return central_url


def run(capsys, *args):
    status = main(["compare", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_table(target, capsys):
    status, out, err = run(
        capsys, "--target", target, "--a", "XLG/auto/C1", "--b", "XLG/survey/S1", "--boot", "50"
    )
    assert status == 0, err
    for expected in (
        "compare co2 [umol m-2 s-1], b - a",
        "a: XLG/auto/C1: 240 observations; processing site-1 (240)",
        "pairing: nearest within 15 min, one to one: 15 pairs",
        "bias (b - a)",
        "CCC (Lin)",
        "within-system baseline",
        "XLG/auto: 3 collar pair(s) of 3 collars",
        "processing part: no raw traces",
    ):
        assert expected in out, expected
    assert "compare: pairing" in err  # progress on stderr
    assert "Traceback" not in out + err


def test_json_is_one_object_with_the_issue_keys(target, capsys):
    status, out, err = run(
        capsys,
        "--target",
        target,
        "--a",
        "XLG/auto",
        "--b",
        "XLG/survey",
        "--json",
        "--boot",
        "50",
        "--seed",
        "4",
        "--by",
        "hour",
        "--by",
        "flux",
        "--tolerance",
        "20",
        "-q",
    )
    assert status == 0, err
    assert err == "" and len(out.strip().splitlines()) == 1
    d = json.loads(out)
    for key in TOP_LEVEL:
        assert key in d, key
        if key != "n_pairs":
            assert f"{key}_ci" in d and len(d[f"{key}_ci"]) == 2, key
    assert d["pairing"]["tolerance_s"] == 1200.0 and d["settings"]["seed"] == 4
    assert set(d["breakdowns"]) == {"hour", "flux"}
    assert [b["system"] for b in d["baselines"]] == ["auto", "survey"]
    assert d["a"]["aggregation"] == "round mean"


def test_blocks_and_overlap(target, capsys):
    status, out, _ = run(
        capsys,
        "--target",
        target,
        "--a",
        "XLG/auto",
        "--b",
        "XLG/survey",
        "--block",
        "day",
        "--completeness",
        "0.1",
        "--boot",
        "0",
        "--json",
    )
    assert status == 0
    assert json.loads(out)["pairing"]["block"] == "day"
    status, _, err = run(
        capsys, "--target", target, "--a", "XLG/auto/C1", "--b", "XLG/auto/C2", "--pairing",
        "overlap", "--boot", "0",
    )  # fmt: skip
    # C1 and C2 close one after the other: no closures overlap
    assert status == 2 and "no pairs; pairing: overlapping closures" in err


def test_baseline_listing(target, capsys):
    status, out, err = run(capsys, "--target", target, "--baseline", "--site", "XLG")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("XLG/auto: 3 collar pair(s) of 3 collars")
    assert "  C1 / C2: n 240" in out and "XLG/survey: 1 collar pair(s)" in out
    status, out, _ = run(capsys, "--target", target, "--baseline", "--json", "-q")
    assert status == 0
    found = json.loads(out)["baselines"]
    assert [b["system"] for b in found] == ["auto", "survey"]
    assert set(found[0]["floor"]) == {"abs_bias", "abs_relative_bias", "rmsd", "r", "ccc"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--a", "XLG/auto/C9", "--b", "XLG/survey"], "XLG/auto has no chamber 'C9'; its chambers"),
        (["--a", "YMS/auto", "--b", "XLG/survey"], "--a YMS/auto: no site 'YMS'; sites: XLG"),
        (["--a", "XLG/lgr", "--b", "XLG/survey"], "its systems: auto, survey"),
        (["--a", "XLG", "--b", "XLG/survey"], "--a 'XLG': expected SITE/SYSTEM"),
        (["--a", "XLG/auto"], "--b"),
        (["--baseline", "--a", "XLG/auto"], "not with --baseline"),
        (["--a", "XLG/auto", "--b", "XLG/survey", "--site", "XLG"], "only with --baseline"),
        (["--a", "XLG/auto", "--b", "XLG/survey", "--from", "soon"], "--from 'soon'"),
        (["--a", "XLG/auto", "--b", "XLG/survey", "--tolerance", "-5"], "--tolerance"),
        (["--a", "XLG/auto", "--b", "XLG/survey", "--by", "week"], "--by"),
        (
            ["--a", "XLG/auto", "--b", "XLG/survey", "--a-processing", "cosore"],
            "--a-processing 'cosore': XLG/auto has no selected co2 fluxes",
        ),
    ],
)
def test_errors_are_messages(target, capsys, args, message):
    status, _, err = run(capsys, "--target", target, *args)
    assert status == 2
    assert message in err and "Traceback" not in err


def test_unknown_database_is_a_message(tmp_path, capsys):
    status, _, err = run(
        capsys, "--target", f"sqlite:///{tmp_path / 'none.db'}", "--a", "X/y", "--b", "X/z"
    )
    assert status == 2 and "none.db" in err


def test_report_is_written(target, capsys, tmp_path):
    path = tmp_path / "report.html"
    status, out, err = run(
        capsys, "--target", target, "--a", "XLG/auto/C1", "--b", "XLG/survey/S1", "--boot",
        "50", "-o", str(path), "--json",
    )  # fmt: skip
    assert status == 0, err
    assert f"report written to {path}" in err
    html = path.read_text(encoding="utf-8")
    assert "<html" in html.lower() and "XLG/survey/S1" in html
    assert json.loads(out)["n_pairs"] == 15  # --json and -o together
    status, _, err = run(
        capsys, "--target", target, "--a", "XLG/auto", "--b", "XLG/survey", "-o",
        str(tmp_path / "missing" / "r.html"),
    )  # fmt: skip
    assert status == 2 and "-o" in err
