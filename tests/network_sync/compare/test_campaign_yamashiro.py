"""The two Yamashiro systems of COSORE, end to end from import to the comparison.

ATAKA (Vaisala GMP343, 2 ports, 2012-09 .. 2015-02) and UEYAMA (LGR FGGA, 4 ports,
2016-11 .. 2018-08) measured the same forest (AsiaFlux YMS), but never at the same time:

* a between-system pairing has no pairs, and says so with the reason (every observation
  of each side lies outside the other's period), never a traceback or an empty table;
* what can be compared across periods is compared: each system's temperature response
  (R10, Q10; Lloyd-Taylor) on the soil temperature it recorded, and its diel cycle;
* each system's within-system between-collar baseline is reproduced: two collars of one
  system differ by about 0.5 umol m-2 s-1 with a CCC of about 0.8 (shared/data README,
  docs/analyst.md): the floor any between-system difference is judged against.

The data sets (CC-BY-4.0) are read in place from shared/data (the ``reference_data``
fixture). SQLite imports them in full; PostgreSQL imports the first 60 days of each (the
full import is timed in benchmarks/bench_sync.py), which keeps every port.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pytest

from chamberd.controller.cli import main
from chamberd.controller.errors import ConfigError
from chamberd.network_sync.central import Central
from chamberd.network_sync.compare import baselines, compare, parse_spec, selection, temporal
from chamberd.network_sync.importers import import_paths

SETS = {"ataka": "d20200212_ATAKA", "ueyama": "d20200328_UEYAMA_YAMASHIRO"}
PORTS = {"ataka": 2, "ueyama": 4}
WINDOW_DAYS = 60


def _window(source: Path, target: Path, days: int) -> Path:
    """``days`` days of a data set from the day its last port starts (ATAKA's port 2
    starts in 2013-04), so that every port is in it (a copy in tmp_path)."""
    target.mkdir(parents=True)
    for member in ("DESCRIPTION.txt", "PORTS.txt"):
        (target / member).write_bytes((source / member).read_bytes())
    lines = gzip.decompress((source / "data.csv.gz").read_bytes()).decode().splitlines()
    header = lines[0].split(",")
    port, begin = header.index("CSR_PORT"), header.index("CSR_TIMESTAMP_BEGIN")
    rows = [line.split(",") for line in lines[1:]]
    times = [dt.datetime.fromisoformat(cells[begin]) for cells in rows]
    starts: dict[str, dt.datetime] = {}
    for cells, t in zip(rows, times, strict=True):
        starts[cells[port]] = min(t, starts.get(cells[port], t))
    first = max(starts.values())
    kept = [lines[0]] + [
        line
        for line, t in zip(lines[1:], times, strict=True)
        if first <= t < first + dt.timedelta(days=days)
    ]
    (target / "data.csv.gz").write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))
    return target


def _load(url: str, folders: dict[str, Path]) -> None:
    with Central.connect(url) as central:
        central.migrate()
        for system, folder in folders.items():
            report = import_paths(central, [folder], site_id="YMS", system_id=system, fmt="cosore")
            assert not report.rejected, report.files[0].reasons


@pytest.fixture(scope="module")
def full_sqlite(tmp_path_factory, reference_data):
    url = f"sqlite:///{tmp_path_factory.mktemp('yamashiro') / 'central.db'}"
    _load(url, {s: reference_data / "cosore" / n for s, n in SETS.items()})
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def yamashiro(request, reference_data, tmp_path):
    """(central database URL, full data sets?) on each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("full_sqlite"), True
    url = request.getfixturevalue("postgres_url")
    folders = {
        s: _window(reference_data / "cosore" / n, tmp_path / n, WINDOW_DAYS)
        for s, n in SETS.items()
    }
    _load(url, folders)
    return url, False


def _span(central, spec):
    frame = selection(central, parse_spec(spec), gas="co2").frame
    return frame["time_utc"].min(), frame["time_utc"].max(), len(frame)


def test_between_the_systems_there_are_no_pairs_and_compare_says_why(yamashiro):
    url, _full = yamashiro
    with Central.connect(url, mode="read") as central:
        a_first, a_last, n_a = _span(central, "YMS/ataka")
        b_first, _, n_b = _span(central, "YMS/ueyama")
        assert a_last < b_first  # the two periods do not overlap
        with pytest.raises(ConfigError) as info:
            compare(central, "YMS/ataka", "YMS/ueyama", n_boot=0)
    message = str(info.value)
    print(message)
    assert "YMS/ataka and YMS/ueyama: no pairs" in message
    # every observation of each side is outside the other side's period, counted
    assert f"a: {n_a} candidates, unpaired {n_a} (outside period {n_a})" in message
    assert f"b: {n_b} candidates, unpaired {n_b} (outside period {n_b})" in message
    # and when each side was measured
    assert f"a spans {a_first:%Y-%m-%d %H:%M} to {a_last:%Y-%m-%d %H:%M} UTC" in message
    assert f"b spans {b_first:%Y-%m-%d %H:%M}" in message


def test_the_cli_says_it_without_a_traceback(yamashiro, capsys):
    url, _full = yamashiro
    status = main(["compare", "--target", url, "--a", "YMS/ataka", "--b", "YMS/ueyama"])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert "no pairs" in captured.err and "outside period" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_within_system_baselines_reproduce_the_floor(yamashiro):
    url, full = yamashiro
    with Central.connect(url, mode="read") as central:
        found = {b.system: b for b in baselines(central, site="YMS")}
    assert set(found) == set(SETS)
    for system, ports in PORTS.items():
        b = found[system]
        print(b.line())
        # the 60-day window may miss a port (UEYAMA's port 3 has long gaps)
        assert len(b.collars) == ports if full else len(b.collars) >= 2
        n = len(b.collars)
        assert len(b.pairs) == n * (n - 1) // 2
        assert (b.pairs["n_pairs"] > 0).any()
    if not full:
        return
    # UEYAMA's ports 2 and 4 were never measured within 15 minutes of each other: that
    # collar pair has no pairs, and the floor is the median over the five others
    empty = found["ueyama"].pairs[found["ueyama"].pairs["n_pairs"] == 0]
    assert [tuple(r) for r in empty[["collar_a", "collar_b"]].to_numpy()] == [("port2", "port4")]
    # the published floor: about 0.5 umol m-2 s-1 between two collars, CCC about 0.8
    ueyama = found["ueyama"].floor
    assert 0.3 <= ueyama["abs_bias"]["median"] <= 0.6
    assert 0.7 <= ueyama["ccc"]["median"] <= 0.9
    ataka = found["ataka"].floor
    assert ataka["abs_bias"]["median"] <= 0.5
    assert 0.75 <= ataka["ccc"]["median"] <= 0.9
    assert 0.8 <= ataka["rmsd"]["median"] <= 1.3


def test_two_collars_of_one_system_compared_directly(yamashiro):
    url, full = yamashiro
    with Central.connect(url, mode="read") as central:
        result = compare(
            central, "YMS/ataka/port1", "YMS/ataka/port2", n_boot=200, temperature=False
        )
    values = result.as_dict()
    print({k: values[k] for k in ("n_pairs", "bias", "mae", "rmsd", "ccc", "ccc_ci")})
    assert values["pairing"]["median_abs_dt_s"] <= 900
    low, high = values["ccc_ci"]
    assert low <= values["ccc"] <= high
    if full:
        assert values["n_pairs"] > 15000
        assert 0.5 <= values["mae"] <= 0.9 and 0.75 <= values["ccc"] <= 0.9


def _response(central, spec, n_boot=200):
    frame = selection(central, parse_spec(spec), gas="co2").frame
    t = frame["soil_temperature_degc"].to_numpy(float)
    f = frame["flux"].to_numpy(float)
    days = frame["time_local_standard"].dt.normalize().to_numpy()
    ok = np.isfinite(t) & np.isfinite(f) & (f > 0)
    q10 = temporal.q10_fit(t[ok], f[ok], n_boot=n_boot, rng=1, blocks=days[ok])
    lt = temporal.lloyd_taylor_fit(t[ok], f[ok], n_boot=n_boot, rng=2, blocks=days[ok])
    diel = temporal.diel(frame["time_local_standard"], frame["flux"])
    return q10, lt, diel


def test_across_periods_temperature_response_and_diel_cycle(yamashiro):
    url, full = yamashiro
    with Central.connect(url, mode="read") as central:
        fits = {s: _response(central, f"YMS/{s}") for s in SETS}
    for system, (q10, lt, diel) in fits.items():
        peak = int(diel.loc[diel["flux_mean"].idxmax(), "hour_local_standard"])
        print(
            f"{system}: R10 {q10.r10:.3f} {q10.r10_ci}, Q10 {q10.q10:.2f} {q10.q10_ci}, "
            f"Lloyd-Taylor R10 {lt.r10:.3f} E0 {lt.e0_k:.0f} K, diel peak {peak}:00, "
            f"{q10.n} observations, {q10.temperature_min_degc:.1f}-"
            f"{q10.temperature_max_degc:.1f} degC"
        )
        assert q10.r10_ci[0] <= q10.r10 <= q10.r10_ci[1]
        assert len(diel) == 24
        if full:
            assert 2.0 <= q10.q10 <= 4.0  # a temperate forest soil
            assert 11 <= peak <= 17  # afternoon, after the soil temperature
    if full:
        ataka, ueyama = fits["ataka"][0], fits["ueyama"][0]
        # different collars, years and sensor depths (CSR_T5 and CSR_T3): the base rates
        # differ well beyond their CIs, the temperature sensitivities much less
        assert ataka.r10_ci[0] > ueyama.r10_ci[1]
        assert abs(ataka.q10 - ueyama.q10) < 1.0


def test_cli_compare_baseline_lists_both_systems(yamashiro, capsys):
    url, _full = yamashiro
    assert main(["compare", "--target", url, "--baseline"]) == 0
    out = capsys.readouterr().out
    assert "YMS/ataka" in out and "YMS/ueyama" in out
