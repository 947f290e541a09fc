"""Central refit of stored raw traces with one method, checked against the instruments."""

from __future__ import annotations

import pytest

from chamberd.controller.cli import main
from chamberd.network_sync.central import Central
from chamberd.network_sync.central_refit import refit
from chamberd.network_sync.importers import import_paths
from chamberd.network_sync.queries import fluxes


@pytest.fixture
def central(central_url, reference_data):
    with Central.connect(central_url) as c:
        c.migrate()
        import_paths(
            c,
            [reference_data / "li8100a"],
            site_id="S",
            system_id="survey",
            fmt="li8100a",
            time_zone="UTC",
        )
        yield c


@pytest.mark.parametrize(
    ("method", "median_pct", "within_2pct"),
    [
        ("linear", 0.5, 0.8),
        ("exponential", 1.0, 0.6),
    ],
)
def test_refit_agrees_with_the_instrument(central, method, median_pct, within_2pct):
    report = refit(central, method=method)
    assert (report.observations, report.fitted, report.skipped) == (180, 180, 0)
    frame = fluxes(central, selected_only=False, gas="co2")
    inst = frame[(frame.processing_version == "instrument") & (frame.model == method)]
    ours = frame[frame.processing_version == f"central-{method}-dbstored"]
    joined = (
        inst.set_index("uuid")["flux"]
        .to_frame("i")
        .join(ours.set_index("uuid")["flux"].to_frame("o"), how="inner")
    )
    diff = (joined.o / joined.i - 1).abs()
    assert diff.median() * 100 < median_pct
    assert (diff < 0.02).mean() > within_2pct


def test_refit_again_replaces_and_a_fixed_dead_band_is_another_version(central):
    refit(central, method="linear")
    refit(central, method="linear")
    refit(central, method="linear", dead_band_s=30)
    versions = central.query(
        "SELECT processing_version AS v, count(*) AS n FROM fluxes GROUP BY processing_version "
        "ORDER BY processing_version"
    )
    counts = {r["v"]: r["n"] for r in versions}
    assert counts["central-linear-dbstored"] == 180 and counts["central-linear-db30s"] == 180


def test_cli_refit(central, central_url, capsys):
    assert main(["refit", "--target", central_url, "--method", "exponential", "--site", "S"]) == 0
    assert "180 of 180 observations refitted as central-exponential-dbstored" in (
        capsys.readouterr().out
    )
    assert main(["refit", "--target", central_url, "--method", "linear", "--dead-band", "-3"]) == 2
