"""Compare the batch path with the single path, field by field (shared by the fitting and
network_sync tests)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from chamberd.fitting import fit_closure

RTOL = 1e-6
# t0 may sit near 0 s, where a relative comparison means nothing: it is compared on the
# scale of the window's length
WINDOW_SCALED = {"t0_s"}
# the asymptote Cx = p + q / a of a falling curve can sit near 0, far below the trace it is
# computed from: it is compared on the scale of the trace (C'0)
LEVEL_SCALED = {"cx_mf"}
# R2 near 0 (no trend at all) is compared on the scale of 0.01
R2_SCALE = 0.01
# the batch engine counts its own evaluations
SKIPPED = {"iterations"}
# Residual measures (RMSE, NRMSE, standard errors) come from the residual sum of squares,
# which both paths know to about 1e-12 of the total sum of squares (rounding in the
# profiled RSS, and the batch engine's first-order last step): for a fit that is nearly
# exact (R2 = 1 - 1e-9: an exponential through four samples) that is more than 1e-6 of
# the RSS. They are compared to max(RTOL, RSS_FLOOR / (1 - R2)) relative.
RSS_FLOOR = 1e-12
RESIDUAL = {"rmse_mf", "nrmse", "slope_se_mf_s", "intercept_se_mf", "a_se_per_s"}
# ClosureFit's own residual fields and the fit they come from
CLOSURE_RESIDUAL = {"lin_flux_se": "linear", "exp_flux_se": "exponential"}


def single(closure: Any) -> Any:
    """What ``fit_closure`` gives for a ``Closure``: the fit, or the ValueError it raises."""
    try:
        return fit_closure(**vars(closure))
    except ValueError as exc:
        return exc


def _residual_tolerance(fit: Any) -> float:
    """How much more than RTOL the residual measures of ``fit`` may differ (>= 1)."""
    if getattr(fit, "at_bound", None) == "a_max":
        # a step-like curve at the upper curvature bound: the linearised covariance is
        # near-singular (standard errors of 1e9), known to a few digits in either path
        return math.inf
    r2 = getattr(fit, "r_squared", math.nan)
    if not math.isfinite(r2) or r2 < 1.0 - RSS_FLOOR / RTOL:
        return 1.0
    return math.inf if r2 >= 1.0 else RSS_FLOOR / (1.0 - r2) / RTOL


def _number(
    x: float, y: float, path: str, scale: float, slack: float, out: list[tuple[float, str]]
) -> None:
    if not (math.isfinite(x) and math.isfinite(y)):
        same = (math.isnan(x) and math.isnan(y)) or x == y
        out.append((0.0 if same else math.inf, path))
    elif x == y or math.isinf(slack):
        out.append((0.0, path))
    else:
        out.append((abs(x - y) / max(abs(x), abs(y), scale) / slack, path))


def _differences(
    a: Any,
    b: Any,
    path: str,
    scales: tuple[float, float],
    out: list[tuple[float, str]],
    slack: float = 1.0,
) -> None:
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        residual = _residual_tolerance(a)
        for f in dataclasses.fields(a):
            name = f.name
            if name in SKIPPED:
                continue
            field_slack = residual if name in RESIDUAL else 1.0
            if name in CLOSURE_RESIDUAL:
                field_slack = _residual_tolerance(getattr(a, CLOSURE_RESIDUAL[name]))
            if name == "flux_se":
                source = a.exponential if a.model == "exponential" else a.linear
                field_slack = _residual_tolerance(source)
            _differences(
                getattr(a, name), getattr(b, name), f"{path}.{name}", scales, out, field_slack
            )
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _differences(x, y, f"{path}[{i}]", scales, out, slack)
    elif isinstance(a, float) or isinstance(b, float):
        name = path.rsplit(".", 1)[-1]
        window, level = scales
        scale = window if name in WINDOW_SCALED else level if name in LEVEL_SCALED else 0.0
        scale = R2_SCALE if name == "r_squared" else scale
        _number(float(a), float(b), path, scale, slack, out)
    else:
        assert a == b, (path, a, b)


def relative_differences(want: Any, got: Any) -> list[tuple[float, str]]:
    """(relative difference, field) for every number of two ClosureFits (residual measures of
    nearly exact fits scaled to their own tolerance); asserts that
    everything else (flags, model, reasons, messages, bounds) is equal, and that a closure
    the single path refuses is refused with the same message."""
    if isinstance(want, ValueError) or isinstance(got, ValueError):
        assert type(want) is type(got) and str(want) == str(got), (want, got)
        return []
    out: list[tuple[float, str]] = []
    window = abs(want.end_s - want.dead_band_s) if math.isfinite(want.end_s) else 1.0
    _differences(want, got, "fit", (max(window, 1.0), abs(want.c0_mf)), out)
    return out


def assert_same(want: Any, got: Any, rtol: float = RTOL) -> float:
    """Assert that a batch result equals the single one to ``rtol``; returns the largest
    relative difference."""
    worst = max(relative_differences(want, got), default=(0.0, ""))
    assert worst[0] <= rtol, (worst, want, got)
    return worst[0]
