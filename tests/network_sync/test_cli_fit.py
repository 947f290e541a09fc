"""chamberd fit on real files: columns, refusals, exit statuses, atomic output."""

from __future__ import annotations

import csv

from chamberd.controller.cli import main

REQUIRED = (
    "source_file observation port start_time gas flux_unit n_points dead_band_s lin_flux "
    "lin_r2 exp_flux exp_r2 flux model flags ref_lin_flux ref_exp_flux ref_flux ref_model"
).split()


def test_fit_writes_every_column_and_summarises(salt_81x, tmp_path, capsys):
    out = tmp_path / "fluxes.csv"
    status = main(["fit", str(salt_81x), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 3  # observation 2 is truncated: refused, the others written
    assert "refused:" in err and "observation 2" in err and "Traceback" not in err
    assert "linear flux vs instrument" in err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7
    assert set(REQUIRED) <= set(rows[0])
    assert rows[0]["source_file"] == "SALT_20181005_LT.81x"
    assert rows[0]["observation"] == "1" and rows[0]["flux_unit"] == "umol m-2 s-1"
    assert rows[0]["start_time"] == "2019-02-24T14:07:30"
    assert rows[0]["ref_model"] == "exponential" and rows[0]["model"] == "exponential"
    assert abs(float(rows[0]["lin_flux"]) - float(rows[0]["ref_lin_flux"])) < 0.005


def test_fit_to_stdout_quietly(salt_81x, capsys):
    main(["fit", "-q", str(salt_81x)])
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[0].startswith("source_file,observation,port")


def test_bad_dead_band_is_a_usage_error(salt_81x, capsys):
    assert main(["fit", "--dead-band", "soon", str(salt_81x)]) == 2
    assert "--dead-band" in capsys.readouterr().err


def test_fixed_and_auto_dead_band(salt_81x, tmp_path):
    fixed = tmp_path / "fixed.csv"
    auto = tmp_path / "auto.csv"
    main(["fit", "-q", "--dead-band", "30", str(salt_81x), "-o", str(fixed)])
    main(["fit", "-q", "--dead-band", "auto", str(salt_81x), "-o", str(auto)])
    assert {r["dead_band_s"] for r in csv.DictReader(fixed.open())} == {"30"}
    rows = list(csv.DictReader(auto.open()))
    assert all("dead_band_auto" in r["flags"] and r["dead_band_reason"] for r in rows)


def test_unreadable_file_is_refused_and_nothing_half_written(tmp_path, capsys):
    bad = tmp_path / "bad.81x"
    bad.write_text("this is not an instrument file\n")
    out = tmp_path / "out.csv"
    out.write_text("previous content\n")
    assert main(["fit", str(bad), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "bad.81x" in err and "Traceback" not in err
    # the output is replaced whole (header only here), never left half-written
    assert out.read_text().startswith("source_file,")
    assert not list(tmp_path.glob(".chamberd-*"))


def test_folder_with_li8250_and_summary(reference_data, tmp_path):
    out = tmp_path / "li8250.csv"
    assert main(["fit", "-q", str(reference_data / "li8250"), "-o", str(out)]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert row["ref_flux"] == "0.993472" and row["n_points"] == "16"
