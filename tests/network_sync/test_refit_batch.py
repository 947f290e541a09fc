"""chamberd fit's batch path equals the single path on every real file.

Every closure of every instrument file in the reference data is fitted both ways: with
``fit_closures`` (what ``refit_paths`` runs) and with ``fit_closure`` one closure at a
time. Fluxes, standard errors, R2 and every other number agree to 1e-6 relative; flags,
model choice, reasons and refusals are the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fitcompare import assert_same, single
from threadpoolctl import threadpool_info

from chamberd.controller.errors import DataFileError
from chamberd.fitting import FitSettings, fit_closures
from chamberd.network_sync.formats import read_file
from chamberd.network_sync.refit import BLAS_THREADS, observation_closures, refit_paths


def _files(reference_data: Path, salt_81x: Path) -> list[Path]:
    files = sorted((reference_data / "li8100a").glob("*.81x"))
    files += sorted((reference_data / "smartchamber").glob("*.json"))
    files += sorted((reference_data / "li8250").glob("*.82z"))
    return [*files, salt_81x]


def _closures(files, **options):
    out = []
    for path in files:
        try:
            result = read_file(path)
        except DataFileError:
            continue  # refused whole by the reader: nothing to fit
        for obs in result.observations:
            out += [c for c, _ in observation_closures(obs, **options)]
    return out


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"dead_band": 30.0},
        {"settings": FitSettings(selection="kappa_max")},
        {"settings": FitSettings(exp_form="free_c0")},
    ],
    ids=["instrument", "dead-band-30", "kappa-max", "free-c0"],
)
def test_every_closure_of_every_real_file_as_the_single_path(reference_data, salt_81x, options):
    closures = _closures(_files(reference_data, salt_81x), **options)
    assert len(closures) > 190  # all three instruments' files
    batch = fit_closures(closures)
    for closure, got in zip(closures, batch, strict=True):
        assert_same(single(closure), got)
    models = {b.model for b in batch if not isinstance(b, ValueError)}
    assert models == {"linear", "exponential"}


def test_automatic_dead_band_on_real_files_as_the_single_path(reference_data):
    files = [
        *sorted((reference_data / "smartchamber").glob("*.json")),
        reference_data / "li8100a" / "goflux_LI8100.81x",
        reference_data / "li8100a" / "goflux_LI8150.81x",
    ]
    closures = _closures(files, dead_band="auto")
    batch = fit_closures(closures)
    for closure, got in zip(closures, batch, strict=True):
        assert_same(single(closure), got)
    assert all("dead_band_auto" in b.flags for b in batch if not isinstance(b, ValueError))


def test_chunks_do_not_change_the_report(reference_data, salt_81x, tmp_path):
    """Closures of many files fitted together, or a few at a time: the same rows, refusals,
    warnings and progress calls, in file order."""
    bad = tmp_path / "bad.81x"
    bad.write_text("this is not an instrument file\n")
    files = [*_files(reference_data, salt_81x), bad, reference_data / "li8250"]

    blas_threads = set()

    def run(chunk):
        calls = []

        def progress(report, path):
            calls.append((path, report.files, report.observations, len(report.rows)))
            blas_threads.update(
                i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
            )

        report = refit_paths(files, progress=progress, chunk_closures=chunk)
        return report, calls

    whole, whole_calls = run(100_000)
    piece, piece_calls = run(3)
    assert whole_calls == piece_calls
    assert len(whole.rows) == len(piece.rows) > 190
    for a, b in zip(whole.rows, piece.rows, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], rel=1e-9, nan_ok=True), key
            else:
                assert a[key] == b[key], key
    assert [str(e) for e in whole.refused] == [str(e) for e in piece.refused]
    assert whole.warnings == piece.warnings
    assert (whole.files, whole.observations) == (piece.files, piece.observations)
    assert any(str(bad) in str(e) for e in whole.refused)
    assert blas_threads == {BLAS_THREADS}  # the fits ran with the chosen BLAS threads
