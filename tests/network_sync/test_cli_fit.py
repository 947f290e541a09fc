"""chamberd fit on real files: columns, refusals, exit statuses, atomic output."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from chamberd.controller.cli import main

REQUIRED = (
    "source_file observation port start_time gas flux_unit n_points dead_band_s lin_flux "
    "lin_r2 exp_flux exp_r2 flux model flags ref_lin_flux ref_exp_flux ref_flux ref_model"
).split()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".chamberd-*"))


def test_fit_writes_every_column_and_summarises(salt_81x, tmp_path, capsys):
    out = tmp_path / "fluxes.csv"
    status = main(["fit", str(salt_81x), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 3  # observation 2 is truncated: refused, the others written
    assert f"refused: {salt_81x}, observation 2, line " in err and "truncated" in err
    assert "Traceback" not in err
    assert "7 rows from 7 observations in 1 files; 1 refused" in err
    assert "linear flux vs instrument" in err
    rows = _rows(out.read_text())
    assert len(rows) == 7
    assert set(REQUIRED) <= set(rows[0])
    assert [r["observation"] for r in rows] == ["1", "3", "4", "5", "6", "7", "8"]
    first = rows[0]
    assert first["source_file"] == "SALT_20181005_LT.81x" and first["port"] == "1"
    assert first["observation"] == "1" and first["gas"] == "co2"
    assert first["flux_unit"] == "umol m-2 s-1" and first["dead_band_s"] == "25"
    assert first["start_time"] == "2019-02-24T14:07:30"
    assert first["ref_model"] == "exponential" and first["model"] == "exponential"
    assert (first["ref_lin_flux"], first["ref_exp_flux"], first["ref_flux"]) == (
        "0.15",
        "0.68",
        "0.68",
    )
    assert abs(float(first["lin_flux"]) - float(first["ref_lin_flux"])) < 0.005
    assert float(first["lin_r2"]) == pytest.approx(0.6293, abs=0.002)
    assert int(first["n_points"]) == 95
    assert _no_temp_files(tmp_path)


def test_fit_to_stdout_quietly(salt_81x, capsys):
    assert main(["fit", "-q", str(salt_81x)]) == 3
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[0].startswith("source_file,observation,port")
    assert len(_rows(captured.out)) == 7


def test_truncated_file_exit_3_names_file_and_observations(reference_data, tmp_path, capsys):
    path = reference_data / "li8100a" / "2312_issue005_small.81x"
    out = tmp_path / "out.csv"
    assert main(["fit", str(path), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for n in (1, 2):
        assert f"refused: {path}, observation {n}, line " in err
    assert "0 rows from 0 observations in 1 files; 2 refused" in err
    assert out.read_text().startswith("source_file,observation,port")
    assert _rows(out.read_text()) == []


def test_refused_run_still_writes_the_good_rows_atomically(
    reference_data, salt_81x, tmp_path, capsys
):
    out = tmp_path / "out.csv"
    out.write_text("previous content\n")
    bad = tmp_path / "bad.81x"
    bad.write_text("this is not an instrument file\n")
    files = [
        str(salt_81x),
        str(bad),
        str(reference_data / "li8100a" / "licor_north1.81x"),
        str(reference_data / "smartchamber" / "fluxfinder_LI8200-01S.json"),
    ]
    assert main(["fit", "-q", *files, "-o", str(out)]) == 3
    rows = _rows(out.read_text())
    per_file: dict[str, int] = {}
    for row in rows:
        per_file[row["source_file"]] = per_file.get(row["source_file"], 0) + 1
    # 7 SALT closures, 2 licor_north1 (no footer), 4 Smart Chamber reps x 2 gases
    assert per_file == {
        "SALT_20181005_LT.81x": 7,
        "licor_north1.81x": 2,
        "fluxfinder_LI8200-01S.json": 8,
    }
    north = [r for r in rows if r["source_file"] == "licor_north1.81x"]
    assert all(r["ref_model"] == "" and r["ref_flux"] == "" for r in north)
    ch4 = [r for r in rows if r["gas"] == "ch4"]
    assert {r["flux_unit"] for r in ch4} == {"nmol m-2 s-1"}
    assert _no_temp_files(tmp_path)


def test_unreadable_file_is_refused_and_nothing_half_written(tmp_path, capsys):
    bad = tmp_path / "bad.81x"
    bad.write_text("this is not an instrument file\n")
    out = tmp_path / "out.csv"
    out.write_text("previous content\n")
    assert main(["fit", str(bad), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"refused: {bad}, line 1: unknown file format" in err and "Traceback" not in err
    # the output is replaced whole (header only here), never left half-written
    assert out.read_text().startswith("source_file,")
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("content", [None, "", "{not json"])
def test_missing_empty_or_broken_file_exit_3(tmp_path, capsys, content):
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    assert main(["fit", "-q", str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.out.startswith("source_file,")
    assert main(["fit", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"refused: {path}" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", ""])
def test_bad_dead_band_is_a_usage_error(salt_81x, tmp_path, capsys, value):
    out = tmp_path / "out.csv"
    assert main(["fit", f"--dead-band={value}", str(salt_81x), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--dead-band" in err and "Traceback" not in err
    assert not out.exists()  # nothing written for a usage error


def test_fixed_and_auto_dead_band(salt_81x, tmp_path):
    fixed = tmp_path / "fixed.csv"
    auto = tmp_path / "auto.csv"
    main(["fit", "-q", "--dead-band", "30", str(salt_81x), "-o", str(fixed)])
    main(["fit", "-q", "--dead-band", "auto", str(salt_81x), "-o", str(auto)])
    assert {r["dead_band_s"] for r in csv.DictReader(fixed.open())} == {"30"}
    rows = list(csv.DictReader(auto.open()))
    assert all("dead_band_auto" in r["flags"] and r["dead_band_reason"] for r in rows)


def test_folder_with_li8250_and_summary(reference_data, tmp_path):
    out = tmp_path / "li8250.csv"
    assert main(["fit", "-q", str(reference_data / "li8250"), "-o", str(out)]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert row["ref_flux"] == "0.993472" and row["n_points"] == "16"
    assert row["port"] == "1" and row["start_time"] == "2022-01-25T00:00:55"


def test_explicit_format_mismatch_is_refused(salt_81x, capsys):
    assert main(["fit", "--format", "li8200", str(salt_81x)]) == 3
    err = capsys.readouterr().err
    assert "SALT_20181005_LT.81x" in err and "not valid JSON" in err


def test_output_into_a_missing_folder_is_a_message(salt_81x, tmp_path, capsys):
    status = main(["fit", "-q", str(salt_81x), "-o", str(tmp_path / "no" / "out.csv")])
    assert status in (2, 3)
    assert "no/out.csv" in capsys.readouterr().err


def test_failure_while_writing_keeps_the_previous_output(salt_81x, tmp_path, monkeypatch, capsys):
    import chamberd.controller.output as output

    out = tmp_path / "out.csv"
    out.write_text("previous content\n")

    def fail_halfway(handle, rows, columns):
        handle.write("source_file,half a line")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output, "_write_rows", fail_halfway)
    # a message naming the file, not a traceback (a StorageError)
    assert main(["fit", "-q", str(salt_81x), "-o", str(out)]) == 1
    assert f"cannot write {out}: No space left on device" in capsys.readouterr().err
    assert out.read_text() == "previous content\n"
    assert _no_temp_files(tmp_path)


def test_output_to_a_fifo_or_through_a_link_is_written_in_place(salt_81x, tmp_path):
    """-o replaces only regular files: a FIFO (or a device such as /dev/null) is written
    to, never renamed over; a symbolic link keeps pointing at the file it names."""
    import os
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["fit", "-q", str(salt_81x), "-o", str(fifo)]) == 3  # observation 2 refused
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and got[0].startswith(b"source_file,")
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["fit", "-q", str(salt_81x), "-o", str(link)]) == 3
    assert link.is_symlink() and target.read_text().startswith("source_file,")
    assert _no_temp_files(tmp_path)
