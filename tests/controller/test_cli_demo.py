"""The README's main command: the real daemon against the simulated site, on real protocols."""

from __future__ import annotations

import json
import sqlite3

from chamberd.controller.cli import main


def test_demo_json_reports_every_chamber_close_to_the_truth(tmp_path, capsys):
    db = tmp_path / "demo.db"
    assert main(["demo", "--json", "--speed", "120", "--database", str(db)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert set(report) >= {"database", "wall_s", "chambers"}
    assert report["database"] == str(db)
    chambers = report["chambers"]
    assert [c["chamber"] for c in chambers] == ["C1", "C2", "C3", "C4"]
    for c in chambers:
        assert set(c) >= {"chamber", "true_flux", "flux", "lin_flux", "exp_flux", "r2", "flags"}
        assert c["observations"] == 2  # two rounds
        # the simulated curve bends: the exponential recovers the truth, the linear is low
        assert abs(c["exp_flux"] - c["true_flux"]) <= 0.05 * abs(c["true_flux"]) + 0.05
        assert c["lin_flux"] < c["exp_flux"]
        assert c["r2"] > 0.99
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = con.execute("SELECT status, count(*) FROM observations GROUP BY status")
        assert dict(statuses.fetchall()) == {"done": 8}


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "chamberd" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nonsense"]) == 2
