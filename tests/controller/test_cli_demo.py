"""The README's main command runs and prints a flux table."""

from __future__ import annotations

from chamberd.controller.cli import main


def test_demo_prints_the_flux_table_and_agreement(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "SALT_20181005_LT.81x" in out
    assert "lin" in out and "exp" in out and "ref" in out
    assert "linear flux vs instrument" in out
    assert "refused" in out and "truncated" in out  # the cut observation is named, not fitted


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "chamberd" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nonsense"]) == 2
