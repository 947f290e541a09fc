"""``chamberd calibrate``: the cylinder registry, the procedures, a run from an answers file,
the list and the printable report; and docs/trainee.md covers every procedure and limit."""

from __future__ import annotations

import json
from pathlib import Path

from calsite import START, site_config
from click.testing import CliRunner

from chamberd.calibration.procedures import PROCEDURES
from chamberd.controller.cli import cli, main
from chamberd.controller.config import to_toml

ROOT = Path(__file__).resolve().parents[2]


def _site(tmp_path: Path) -> Path:
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site_config(tmp_path / "site.db")), encoding="utf-8")
    return config


def test_cylinders_add_list_retire(tmp_path):
    config = str(_site(tmp_path))
    runner = CliRunner()
    add = [
        "calibrate", "cylinders", "add", "--config", config, "--id", "CC1", "--gas", "co2",
        "--value", "401.3", "--uncertainty", "0.1", "--scale", "WMO X2019",
        "--certified", "2026-01-10", "--expires", "2099-01-10", "--by", "Li Wei",
    ]  # fmt: skip
    result = runner.invoke(cli, add)
    assert result.exit_code == 0, result.output
    assert "registered CC1 (co2 401.3 umol/mol, WMO X2019)" in result.output
    assert main(add) == 2  # the same id again: refused
    bad = ["calibrate", "cylinders", "add", "--config", config, "--id", "X 1", "--gas", "xe",
           "--value", "1", "--expires", "2020-13-01", "--by", "me"]  # fmt: skip
    assert main(bad) == 2
    listed = runner.invoke(cli, ["calibrate", "cylinders", "list", "--config", config, "--json"])
    assert [c["id"] for c in json.loads(listed.output)] == ["CC1"]
    retire = ["calibrate", "cylinders", "retire", "--config", config, "CC1", "--by", "Li Wei"]
    assert runner.invoke(cli, retire).exit_code == 0
    listed = runner.invoke(cli, ["calibrate", "cylinders", "list", "--config", config])
    assert "no cylinders registered" in listed.output
    listed = runner.invoke(cli, ["calibrate", "cylinders", "list", "--config", config, "--all"])
    assert "retired" in listed.output


def test_procedures_listed_without_hardware():
    result = CliRunner().invoke(cli, ["calibrate", "procedures", "--details"])
    assert result.exit_code == 0
    for p in PROCEDURES.values():
        assert f"{p.number:>2}. {p.id}" in result.output
    assert "LI-COR" in result.output and "1 %" in result.output
    data = json.loads(CliRunner().invoke(cli, ["calibrate", "procedures", "--json"]).output)
    assert len(data) == 11


def test_run_from_answers_then_list_and_report(tmp_path):
    config = str(_site(tmp_path))
    answers = tmp_path / "answers.toml"
    answers.write_text(
        'operator = "Li Wei"\nsupervisor = "Zhang Min"\n'
        "offsets_cm = [2.0, 2.2, 1.8, 2.1]\nchamber_volume_cm3 = 4300.0\n",
        encoding="utf-8",
    )
    run = ["calibrate", "run", "geometry", "--config", config, "--chamber", "C1",
           "--answers", str(answers)]  # fmt: skip
    result = CliRunner().invoke(cli, run)
    assert result.exit_code == 0, result.output
    assert "RESULT: PASS" in result.output
    listed = CliRunner().invoke(cli, ["calibrate", "list", "--config", config, "--json"])
    (record,) = json.loads(listed.output)
    assert record["procedure"] == "geometry" and record["status"] == "pass"
    text = CliRunner().invoke(cli, ["calibrate", "report", record["id"][:8], "--config", config])
    assert "Operator        Li Wei" in text.output and "max_offset_sd_cm" in text.output
    page = tmp_path / "cal.html"
    html = ["calibrate", "report", record["id"], "--config", config, "--html", "-o", str(page)]
    assert CliRunner().invoke(cli, html).exit_code == 0
    content = page.read_text(encoding="utf-8")
    assert content.startswith("<!doctype html>") and "PASS" in content and "<script" not in content
    # a missing answer: refused before anything is recorded
    answers.write_text('operator = "Li Wei"\n', encoding="utf-8")
    assert main(run) == 2
    listed = CliRunner().invoke(cli, ["calibrate", "list", "--config", config, "--json"])
    assert len(json.loads(listed.output)) == 1
    assert START.year == 2026


def test_trainee_guide_covers_every_procedure_and_limit():
    text = (ROOT / "docs" / "trainee.md").read_text(encoding="utf-8")
    for p in PROCEDURES.values():
        assert f"## {p.number}. {p.title} (`{p.id}`)" in text, p.id
        for name in p.limits:
            assert f"`{name}`" in text, (p.id, name)
        assert p.on_fail in text, p.id
    assert "## How to read a calibration record" in text
