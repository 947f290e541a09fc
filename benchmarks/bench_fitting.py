"""Benchmark of the batch fitting path against a per-closure scipy curve_fit loop.

Fits N synthetic 1 Hz closures of 120 samples (a saturating exponential with known flux
and seeded noise) with the batch linear and exponential paths, and a subsample with a
``scipy.optimize.curve_fit`` loop of the same LI-COR model, in the same run. Each figure is
the median of ``--repeats`` runs; the speed-up is the median of the per-run ratios, so a
machine that speeds up or slows down between runs does not bias it.

    python benchmarks/bench_fitting.py                 # 200,000 closures
    python benchmarks/bench_fitting.py -n 1000000 --json
    python benchmarks/bench_fitting.py --blas-threads 2 --load 1   # threads on a loaded machine

``--blas-threads`` limits numpy's BLAS (threadpoolctl) for the whole run, ``--load N``
keeps N busy processes spinning meanwhile.

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import warnings

import numpy as np
from _machine import busy, state
from scipy.optimize import OptimizeWarning, curve_fit
from threadpoolctl import threadpool_limits

from chamberd.fitting.batch import fit_exponential_batch, fit_linear_batch

SAMPLES = 120


def synthetic_closures(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Time axis, (n, 120) dry CO2 traces, their C'0 and true slopes at t = 0.

    Curvature a log-uniform in 2e-4..2e-2 s-1, initial slope 0.02..1 umol mol-1 s-1, C'0
    400..450 umol mol-1, white noise 0.3 umol mol-1 (an LI-840-class analyser at 1 Hz).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES, dtype=float)
    a = 10.0 ** rng.uniform(np.log10(2e-4), np.log10(2e-2), n)
    slope = rng.uniform(0.02, 1.0, n)
    c0 = rng.uniform(400.0, 450.0, n)
    y = np.empty((n, SAMPLES))
    for start in range(0, n, 65536):  # build in blocks to keep temporaries small
        sl = slice(start, min(start + 65536, n))
        y[sl] = c0[sl, None] + (slope[sl] / a[sl])[:, None] * -np.expm1(-a[sl, None] * t)
        y[sl] += rng.normal(0.0, 0.3, (y[sl].shape[0], SAMPLES))
    return t, y, c0, slope


def curve_fit_loop(
    t: np.ndarray, y: np.ndarray, c0: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds taken, slopes at t0 and residual sums of squares, fitting
    C = Cx + (C0 - Cx) exp(-a (t - t0)) row by row."""
    slopes = np.full(y.shape[0], np.nan)
    rss = np.full(y.shape[0], np.nan)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        for i in range(y.shape[0]):
            row = y[i]
            lin = np.polyfit(t, row, 1)[0]
            c0_i = c0[i]

            def model(tt: np.ndarray, cx: float, a: float, t0: float, c0_i: float = c0_i):
                return cx + (c0_i - cx) * np.exp(-a * (tt - t0))

            guess = (row[-1] + 60.0 * lin, 0.01, 0.0)
            try:
                (cx, a, t0), _ = curve_fit(model, t, row, p0=guess, maxfev=5000)
                slopes[i] = a * (cx - c0_i)
                rss[i] = float(((model(t, cx, a, t0) - row) ** 2).sum())
            except RuntimeError:
                pass
    return time.perf_counter() - start, slopes, rss


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--closures", type=int, default=200_000)
    parser.add_argument("--loop", type=int, default=300, help="closures in the curve_fit loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--blas-threads", type=int, help="BLAS threads (default: numpy's)")
    parser.add_argument("--load", type=int, default=0, help="busy processes meanwhile")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with busy(args.load), threadpool_limits(limits=args.blas_threads, user_api="blas"):
        return run(args)


def run(args: argparse.Namespace) -> int:
    t, y, c0, true_slope = synthetic_closures(args.closures, args.seed)
    loop_rows = np.linspace(0, args.closures - 1, min(args.loop, args.closures)).astype(int)

    lin_rates, exp_rates, loop_rates, ratios = [], [], [], []
    exp = None
    loop_slopes = loop_rss = None
    for _ in range(args.repeats):
        dt_lin, _lin = timed(fit_linear_batch, t, y)
        dt_exp, exp = timed(fit_exponential_batch, t, y, c0_mf=c0, chunk_size=args.chunk_size)
        dt_loop, loop_slopes, loop_rss = curve_fit_loop(t, y[loop_rows], c0[loop_rows])
        lin_rates.append(args.closures / dt_lin)
        exp_rates.append(args.closures / dt_exp)
        loop_rates.append(loop_rows.size / dt_loop)
        ratios.append(exp_rates[-1] / loop_rates[-1])

    assert exp is not None and loop_slopes is not None and loop_rss is not None
    batch_slopes = exp.slope_mf_s[loop_rows]
    both = np.isfinite(loop_slopes) & exp.converged[loop_rows]
    agreement = np.abs(batch_slopes[both] - loop_slopes[both]) / np.abs(loop_slopes[both])
    batch_rss = exp.rmse_mf[loop_rows] ** 2 * exp.n_points[loop_rows]
    differ = both & (np.abs(batch_slopes - loop_slopes) > 1e-4 * np.abs(loop_slopes))
    ours_better = int(np.sum(batch_rss[differ] <= loop_rss[differ] * (1 + 1e-9)))
    truth = np.abs(exp.slope_mf_s - true_slope) / true_slope
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {
        "closures": args.closures,
        "linear_per_s": statistics.median(lin_rates),
        "exponential_per_s": statistics.median(exp_rates),
        "curve_fit_per_s": statistics.median(loop_rates),
        "speedup_vs_curve_fit": statistics.median(ratios),
        "peak_rss_mb": peak_mb,
        "repeats": args.repeats,
        "curve_fit_closures": int(loop_rows.size),
        "converged_fraction": float(exp.converged.mean()),
        "median_rel_diff_vs_curve_fit": float(np.median(agreement)) if agreement.size else None,
        "max_rel_diff_vs_curve_fit": float(np.max(agreement)) if agreement.size else None,
        "median_rel_error_vs_truth": float(np.median(truth[exp.converged])),
        "differ_from_curve_fit": int(differ.sum()),
        "differ_with_lower_rss": ours_better,
        "busy_processes": args.load,
        "machine": state(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"closures                  {args.closures:>12,d}  (1 Hz, {SAMPLES} samples)")
        print(f"batch linear              {result['linear_per_s']:>12,.0f} closures/s")
        print(
            f"batch exponential         {result['exponential_per_s']:>12,.0f} closures/s "
            f"({100 * result['converged_fraction']:.1f} % converged)"
        )
        print(
            f"curve_fit loop            {result['curve_fit_per_s']:>12,.0f} closures/s "
            f"({loop_rows.size} closures)"
        )
        print(f"speed-up vs curve_fit     {result['speedup_vs_curve_fit']:>12,.0f} x")
        print(f"peak memory               {peak_mb:>12,.0f} MB")
        print(
            f"slope vs curve_fit        median {result['median_rel_diff_vs_curve_fit']:.1e}, "
            f"max {result['max_rel_diff_vs_curve_fit']:.1e} relative"
        )
        print(
            f"  where they differ (>1e-4) our residual sum of squares is lower in "
            f"{ours_better} of {int(differ.sum())}"
        )
        print(f"slope vs truth            median {result['median_rel_error_vs_truth']:.2%}")
        print(f"(medians of {args.repeats} runs; {args.load} busy processes; {state()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
