"""Bad numbers never escape as a traceback or a floating-point warning (seeded, bounded).

Every entry point of compare.temporal gets series laced with NaN, +-inf, 1e300, -9999-like
values, constant temperatures, unsorted and duplicated times: it either returns (a fit that
says ``converged=False`` and why, or a result) or raises a ChamberError with a message.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from chamberd.controller.errors import ChamberError
from chamberd.network_sync.compare import temporal as tp

BAD = [np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0, -5.0, 1e-300, 5000.0, -9999.0, -273.0]


def _call(function):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return function()
        except ChamberError as exc:
            assert str(exc)
            return exc


def _laced(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 160))
    temp = rng.normal(12, 6, n)
    flux = np.exp(rng.normal(0.5, 0.5, n))
    k = int(rng.integers(0, n // 3 + 1))
    if n:
        temp[rng.integers(0, n, k)] = rng.choice(BAD, k)
        flux[rng.integers(0, n, k)] = rng.choice(BAD, k)
        if rng.uniform() < 0.1:
            temp[:] = temp[0]
    offsets = np.sort(rng.integers(0, 86400 * 20, n))
    times = pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(offsets, unit="s")
    if rng.uniform() < 0.2:
        times = times[rng.permutation(n)]
    return rng, temp, flux, times


@pytest.mark.parametrize("seed", range(150))
def test_fits_gap_filling_and_sums_survive_bad_numbers(seed):
    rng, temp, flux, times = _laced(seed)
    blocks = times.floor("D") if len(times) else None
    q = _call(lambda: tp.q10_fit(temp, flux, n_boot=20, rng=seed, blocks=blocks))
    if isinstance(q, tp.Q10Fit):
        assert q.converged or q.message
        n_left = q.n_nonpositive_excluded + q.n_nonfinite_excluded + q.n_implausible_excluded
        assert q.n + n_left == len(temp)
    lt = _call(lambda: tp.lloyd_taylor_fit(temp, flux, n_boot=20, rng=seed, blocks=blocks))
    if isinstance(lt, tp.LloydTaylorFit) and lt.converged:
        assert np.isfinite(lt.r10) and np.isfinite(lt.e0_k)
    _call(lambda: tp.diel(times, flux, zone="Etc/GMT-9"))
    frame = pd.DataFrame(
        {"begin_utc": times, "flux": flux, "soil_temperature_degc": temp,
         "flux_se": np.abs(rng.normal(0, 0.1, len(temp)))}
    )  # fmt: skip
    model = "q10" if seed % 2 else "lloyd_taylor"
    filled = _call(lambda: tp.gap_fill(frame, model=model, zone=9))
    if isinstance(filled, pd.DataFrame):
        assert np.isfinite(filled["flux"]).all()
        sums = _call(lambda: tp.sums(filled, "co2", "day"))
        assert isinstance(sums, pd.DataFrame)
        assert np.isfinite(sums["total_se_g_c_m2"]).all()
        _call(lambda: tp.cumulative_sums(filled, "ch4"))
        schedule = tp.sampling_schedule(
            filled["time_utc"].iloc[0], filled["time_utc"].iloc[-1], zone=9, every_days=3
        )
        values = rng.choice(BAD, len(schedule))
        _call(lambda: tp.emulate_sampling(filled, schedule, sample_flux=values, n_boot=10))
