"""Real data: the COSORE Yamashiro data sets (CC-BY-4.0), read in place.

d20200212_ATAKA (Vaisala GMP343 automated chambers, soil temperature CSR_T5) and
d20200328_UEYAMA_YAMASHIRO (LGR FGGA automated chambers, CSR_T3) at the same forest.
Each port: Q10/R10 and Lloyd-Taylor with block-bootstrap CIs by local standard day; one
well-covered calendar year of one port per system gap-filled and summed. The figures are
printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chamberd.network_sync.compare import temporal as tp

SYSTEMS = {
    # folder: (soil temperature column, port and calendar year to sum)
    "d20200212_ATAKA": ("CSR_T5", 1, 2013),
    "d20200328_UEYAMA_YAMASHIRO": ("CSR_T3", 1, 2017),
}


def _zone(folder):
    for line in (folder / "DESCRIPTION.txt").read_text().splitlines():
        if line.startswith("CSR_TIMEZONE:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no CSR_TIMEZONE")


@pytest.fixture(scope="module")
def yamashiro(reference_data):
    out = {}
    for name, (temperature, _, _) in SYSTEMS.items():
        folder = reference_data / "cosore" / name
        if not folder.is_dir():
            pytest.skip(f"{folder} not found")
        data = pd.read_csv(
            folder / "data.csv.gz",
            usecols=["CSR_PORT", "CSR_TIMESTAMP_BEGIN", "CSR_FLUX_CO2", temperature],
        )
        frame = pd.DataFrame(
            {
                "port": data["CSR_PORT"],
                "begin_utc": pd.to_datetime(
                    data["CSR_TIMESTAMP_BEGIN"], utc=True, format="ISO8601"
                ),
                "flux": data["CSR_FLUX_CO2"],
                "soil_temperature_degc": data[temperature],
            }
        )
        out[name] = (frame, _zone(folder))
    return out


def test_yamashiro_temperature_response_per_system(yamashiro):
    fits = {}
    for name, (frame, zone) in yamashiro.items():
        for port, series in frame.groupby("port"):
            if series["soil_temperature_degc"].notna().sum() < 100:
                continue  # UEYAMA port 4 has no soil temperature
            days = tp.to_local_standard(series["begin_utc"], zone).floor("D")
            q = tp.q10_fit(
                series["soil_temperature_degc"], series["flux"], n_boot=500, rng=1, blocks=days
            )
            lt = tp.lloyd_taylor_fit(
                series["soil_temperature_degc"], series["flux"], n_boot=300, rng=1, blocks=days
            )
            print(
                f"\n{name} port {port}: n={q.n} (left out {q.n_nonpositive_excluded} <= 0, "
                f"{q.n_nonfinite_excluded} missing) Q10={q.q10:.3f} {q.q10_ci} "
                f"R10={q.r10:.3f} {q.r10_ci} umol m-2 s-1; Lloyd-Taylor R10={lt.r10:.3f} "
                f"{lt.r10_ci} E0={lt.e0_k:.1f} K {lt.e0_k_ci}; T {q.temperature_min_degc:.1f}.."
                f"{q.temperature_max_degc:.1f} degC, {q.n_blocks} days"
            )
            assert q.converged and lt.converged
            assert 1.5 < q.q10 < 4.0
            assert q.q10_ci[0] < q.q10 < q.q10_ci[1]
            assert 0.2 < q.r10 < 3.0
            assert 150.0 < lt.e0_k < 600.0
            assert q.n_blocks > 100
            fits[(name, port)] = q
    assert len(fits) >= 5
    a = fits[("d20200212_ATAKA", 1)]
    b = fits[("d20200328_UEYAMA_YAMASHIRO", 1)]
    diff = tp.compare_temperature_response(a, b)
    print(
        f"\nUEYAMA 1 - ATAKA 1: R10 {diff['r10'].difference:+.3f} {diff['r10'].difference_ci}, "
        f"Q10 {diff['q10'].difference:+.3f} {diff['q10'].difference_ci}"
    )
    assert diff["r10"].difference_ci[0] < diff["r10"].difference < diff["r10"].difference_ci[1]


def test_yamashiro_one_year_gap_filled_and_summed(yamashiro):
    for name, (frame, zone) in yamashiro.items():
        _, port, year = SYSTEMS[name]
        series = frame[frame["port"] == port]
        offset = pd.Timedelta(hours=9)  # both zones are UTC+9 without DST
        begin = pd.Timestamp(f"{year}-01-01", tz="UTC") - offset
        end = pd.Timestamp(f"{year + 1}-01-01", tz="UTC") - offset
        series = series[(series["begin_utc"] >= begin) & (series["begin_utc"] < end)]
        filled = tp.gap_fill(series, start=begin, end=end, zone=zone, flux_se=None)
        assert len(filled) == (366 if year % 4 == 0 else 365) * 48
        annual = tp.sums(filled, "co2", "year")
        assert len(annual) == 1
        row = annual.iloc[0]
        monthly = tp.sums(filled, "co2", "month")
        print(
            f"\n{name} port {port}, {year} (local standard time): "
            f"{row['sum_g_c_m2']:.1f} g C m-2 +- {row['total_se_g_c_m2']:.1f} "
            f"(random {row['random_se_g_c_m2']:.2f}, gap-filling {row['gap_fill_se_g_c_m2']:.1f}); "
            f"{row['filled_fraction']:.0%} of {row['n_slots']} half-hours filled; "
            f"Q10 used {filled.attrs['q10']:.2f}; residual rho {filled.attrs['residual_rho']:.3f}; "
            f"monthly {np.round(monthly['sum_g_c_m2'].to_numpy(), 1).tolist()}"
        )
        assert row["period_start"] == pd.Timestamp(f"{year}-01-01")
        assert 400.0 < row["sum_g_c_m2"] < 2000.0
        assert row["filled_fraction"] < 0.5
        assert 0 < row["total_se_g_c_m2"] < 0.15 * row["sum_g_c_m2"]
        assert monthly["sum_g_c_m2"].sum() == pytest.approx(row["sum_g_c_m2"], rel=1e-12)
        # summer months respire more than winter ones
        assert monthly["sum_g_c_m2"].iloc[6:8].min() > 2 * monthly["sum_g_c_m2"].iloc[:2].max()
        # measured values are untouched
        measured = filled[~filled["filled"]]
        assert measured["n_observations"].ge(1).all()
        d = tp.diel(filled.loc[~filled["filled"], "time_local_standard"], measured["flux"])
        assert (d["n"] > 100).all()
        # weekly manual sampling at 10:00 local standard time, emulated on this series
        schedule = tp.sampling_schedule(begin, end, zone=zone, every_days=7)
        bias = tp.emulate_sampling(filled, schedule, n_boot=300, rng=1)
        print(
            f"weekly 10:00 sampling: sparse {bias.sparse_sum:.1f} vs continuous "
            f"{bias.continuous_sum:.1f} g C m-2, bias {bias.relative_bias:+.1%} "
            f"(CI {bias.relative_bias_ci[0]:+.1%} .. {bias.relative_bias_ci[1]:+.1%}); "
            f"diel range {d['flux_mean'].min():.2f}..{d['flux_mean'].max():.2f} umol m-2 s-1"
        )
        assert bias.n_samples == 52 or bias.n_samples == 53
        assert bias.continuous_sum == pytest.approx(row["sum_g_c_m2"], rel=1e-9)
        assert bias.relative_bias_ci[0] <= bias.relative_bias <= bias.relative_bias_ci[1]
        assert abs(bias.relative_bias) < 0.3
