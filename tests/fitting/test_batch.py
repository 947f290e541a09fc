"""The batch path equals the single-closure path to 1e-6 relative."""

from __future__ import annotations

import numpy as np
import pytest

from chamberd.fitting import fit_exponential, fit_linear
from chamberd.fitting.batch import AT_BOUND_CODES, fit_exponential_batch, fit_linear_batch

FIELDS = ("slope_mf_s", "slope_se_mf_s", "a_per_s", "cx_mf", "c0_mf", "r_squared", "rmse_mf")


def _closures(n=400, seed=7):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 120.0)
    a = 10 ** rng.uniform(-4, -0.7, n)
    c0 = 400 + rng.normal(0, 5, n)
    cx = c0 + rng.uniform(2, 300, n) * rng.choice([-1, 1], n)
    y = cx[:, None] + (c0 - cx)[:, None] * np.exp(-a[:, None] * t)
    y += rng.normal(0, 1, (n, 1)) * rng.uniform(0.01, 2, (n, 1)) * rng.normal(0, 1, (n, t.size))
    y[: n // 10] = 400 + 0.3 * t + rng.normal(0, 0.5, (n // 10, t.size))  # straight traces
    return t, y, c0


def _assert_same(single, batch, i):
    assert single.converged == bool(batch.converged[i]), i
    assert single.at_bound == AT_BOUND_CODES[int(batch.at_bound[i])], i
    for name in FIELDS:
        want, got = getattr(single, name), getattr(batch, name)[i]
        if np.isnan(want):
            assert np.isnan(got), (i, name)
        else:
            assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (i, name)
    # t0 may sit near 0: compare on the scale of the window
    assert batch.t0_s[i] == pytest.approx(single.t0_s, abs=1e-6 * 120, nan_ok=True), i


def test_exponential_batch_equals_single_fixed_c0():
    t, y, c0 = _closures()
    mask = np.broadcast_to(t >= 10, y.shape)
    batch = fit_exponential_batch(t, y, mask, c0_mf=c0, chunk_size=97)
    for i in range(y.shape[0]):
        _assert_same(fit_exponential(t[10:], y[i, 10:], c0_mf=c0[i]), batch, i)


def test_exponential_batch_equals_single_free_c0_with_holes_and_own_windows():
    t, y, _ = _closures(n=150, seed=8)
    rng = np.random.default_rng(9)
    y[rng.random(y.shape) < 0.03] = np.nan  # dropped samples
    starts = rng.integers(0, 30, y.shape[0])
    mask = t[None, :] >= starts[:, None]
    batch = fit_exponential_batch(t, y, mask, t0_s=5.0)
    for i in range(y.shape[0]):
        keep = mask[i] & np.isfinite(y[i])
        _assert_same(fit_exponential(t[keep], y[i, keep], t0_s=5.0), batch, i)


def test_exponential_batch_with_a_time_axis_per_closure():
    t, y, c0 = _closures(n=60, seed=10)
    times = t[None, :] + np.random.default_rng(1).uniform(0, 1000, (y.shape[0], 1))
    batch = fit_exponential_batch(times, y, c0_mf=c0)
    for i in range(y.shape[0]):
        _assert_same(fit_exponential(times[i], y[i], c0_mf=c0[i]), batch, i)


def test_chunking_does_not_change_results():
    t, y, c0 = _closures(n=300)
    a = fit_exponential_batch(t, y, c0_mf=c0, chunk_size=1024)
    b = fit_exponential_batch(t, y, c0_mf=c0, chunk_size=37, workers=2)
    np.testing.assert_allclose(a.slope_mf_s, b.slope_mf_s, rtol=1e-9)


def test_linear_batch_equals_single():
    t, y, _ = _closures(n=200)
    y[5, 7] = np.nan
    mask = np.broadcast_to(t < 100, y.shape)
    for m in (None, mask):
        batch = fit_linear_batch(t, y, m, chunk_size=64)
        for i in range(y.shape[0]):
            keep = np.isfinite(y[i]) & (np.ones_like(t, bool) if m is None else m[i])
            single = fit_linear(t[keep], y[i, keep])
            for name in ("slope_mf_s", "intercept_mf", "slope_se_mf_s", "r_squared", "rmse_mf"):
                assert getattr(batch, name)[i] == pytest.approx(getattr(single, name), rel=1e-9)


def test_rows_without_enough_points_are_not_converged():
    t = np.arange(0.0, 10.0)
    y = np.vstack([np.full(10, np.nan), np.r_[1.0, 2.0, 3.0, np.full(7, np.nan)], t * 2.0])
    exp = fit_exponential_batch(t, y, c0_mf=[0.0, 0.0, 0.0])
    assert not exp.converged[0] and not exp.converged[1]
    assert np.isnan(exp.slope_mf_s[0])
    lin = fit_linear_batch(t, y)
    assert not lin.converged[0] and lin.converged[1] and lin.slope_mf_s[2] == pytest.approx(2.0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="2-D"):
        fit_exponential_batch(np.arange(3.0), np.arange(3.0))
    with pytest.raises(ValueError, match="samples"):
        fit_linear_batch(np.arange(4.0), np.zeros((2, 3)))


@pytest.mark.parametrize("a", [1e-5, 1e-3, 1e-2, 2.5e-2])
def test_power_series_sums_equal_the_sums_over_samples(a):
    """The shared-window fast path sums the same quantities as the per-sample path."""
    from chamberd.fitting import _series, _vp

    t, y, _ = _closures(n=40, seed=12)
    window = t >= 5
    inside = np.broadcast_to(window, y.shape)
    work = _vp.Workspace(y.shape[0], t.size)
    prob, _ = _vp.Problem.from_window(t, np.full(y.shape[0], t[window][0]), y, inside, work)
    series = _series.prepare(prob.tau[0, window], prob.yc[:, window], prob.syy)
    assert a * series.span <= _series.X_MAX
    by_samples = _vp.evaluate(np.full(y.shape[0], a), prob, work, second=True)
    by_series = _series.evaluate(np.full(y.shape[0], a), series)
    for name in ("p", "q", "rss", "grad_u", "curv_u", "sf", "sff", "sd", "sdf", "sdd", "dq_da"):
        np.testing.assert_allclose(
            getattr(by_series, name), getattr(by_samples, name), rtol=1e-8, err_msg=name
        )


def test_quadratic_batch_equals_single_with_holes_and_own_windows():
    from chamberd.fitting import fit_quadratic
    from chamberd.fitting.batch import fit_quadratic_batch

    t, y, _ = _closures(n=150, seed=13)
    rng = np.random.default_rng(14)
    y[rng.random(y.shape) < 0.03] = np.nan
    starts = rng.integers(0, 117, y.shape[0])  # windows down to 3 samples
    mask = t[None, :] >= starts[:, None]
    batch = fit_quadratic_batch(t, y, mask, t0_s=5.0, chunk_size=40)
    fields = ("slope_mf_s", "slope_se_mf_s", "curvature_mf_s2", "value_at_t0_mf", "r_squared")
    for i in range(y.shape[0]):
        keep = mask[i] & np.isfinite(y[i])
        single = fit_quadratic(t[keep], y[i, keep], t0_s=5.0)
        assert single.converged == bool(batch.converged[i]), i
        assert single.n_points == batch.n_points[i]
        if not single.converged:
            assert np.isnan(batch.slope_mf_s[i])
            continue
        for name in fields:
            want = getattr(single, name)
            if np.isinf(want):  # three samples: no standard error
                assert np.isinf(getattr(batch, name)[i]), (i, name)
            else:
                assert getattr(batch, name)[i] == pytest.approx(want, rel=1e-6), (i, name)


def test_linear_batch_intercept_se_equals_single():
    t, y, _ = _closures(n=50, seed=15)
    batch = fit_linear_batch(t, y)
    for i in range(y.shape[0]):
        want = fit_linear(t, y[i]).intercept_se_mf
        assert batch.intercept_se_mf[i] == pytest.approx(want, rel=1e-9)
