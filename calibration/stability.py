"""When is a reading stable? Pure functions over a trace of (elapsed time, value).

The rule (:class:`StabilityRule`), evaluated at each new reading over the trailing
``window_s`` seconds:

* the drift, the slope of a least-squares line through the window, is at most
  ``max_drift_per_min`` (in the quantity's unit per minute), and
* the standard deviation of the readings about that line is at most ``max_sd``, and
* the window holds at least ``min_n`` readings and spans at least 80 % of ``window_s``.

A reading is *stable* once these held at every reading for ``hold_s`` seconds in a row
(``stable_s`` counts that time; it restarts at 0 when the condition fails). The mean, SD
and n recorded are those of the last window. The instruments themselves do no stability
test (the LI-8x0 manual: the zero and span commands average the next 5 s, whatever the
gas does), so the runner decides before commanding anything.

The default limits for CO2 (µmol mol-1): drift 0.5 per minute, SD 1.0 over 30 s, held for
20 s. The SD limit is about twice the LI-850's stated RMS noise at 400 µmol mol-1 with
1 s averaging (< 1 µmol mol-1, LI-850 specifications), so a healthy analyser meets it
while a purge still in progress (exponential approach, several µmol mol-1 per minute) does
not; 0.5 per minute is the drift under which a 5 s instrument average moves by less than
0.05 µmol mol-1, well within the 1 % second-gas criterion. Site overrides:
``[calibration] limits`` (``stability_max_drift_per_min``, ``stability_max_sd``,
``stability_window_s``, ``stability_hold_s``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "StabilityRule",
    "StabilityState",
    "WindowStats",
    "assess_stability",
    "drift_per_min",
    "progress_bar",
    "update_stability",
    "window_stats",
]


@dataclass(frozen=True)
class StabilityRule:
    """Limits of a stable reading, in the unit of the quantity watched."""

    window_s: float = 30.0
    max_drift_per_min: float = 0.5
    max_sd: float = 1.0
    hold_s: float = 20.0
    min_n: int = 10

    def describe(self, unit: str) -> str:
        return (
            f"drift <= {self.max_drift_per_min:g} {unit}/min and SD <= {self.max_sd:g} {unit} "
            f"over the last {self.window_s:g} s, held for {self.hold_s:g} s"
        )


@dataclass(frozen=True)
class WindowStats:
    mean: float
    sd: float
    n: int
    drift_per_min: float
    span_s: float


@dataclass(frozen=True)
class StabilityState:
    stable: bool
    stable_s: float  # how long the condition has held without a break [s]
    stats: WindowStats | None
    ok_now: bool  # the condition holds at the latest reading
    hold_s: float
    since_s: float | None = None  # elapsed time when the condition last began to hold

    @property
    def progress(self) -> float:
        """0 .. 1: ``stable_s`` over the rule's hold time (for the progress bar)."""
        return 1.0 if self.hold_s <= 0 else min(1.0, self.stable_s / self.hold_s)


def drift_per_min(elapsed_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against ``elapsed_s`` [s], per minute.

    >>> round(drift_per_min([0, 30, 60], [400.0, 400.5, 401.0]), 6)
    1.0
    """
    t = np.asarray(elapsed_s, dtype=float)
    y = np.asarray(values, dtype=float)
    if t.size < 2 or np.ptp(t) == 0:
        return 0.0
    slope = np.polyfit(t - t.mean(), y, 1)[0]
    return float(slope * 60.0)


def window_stats(
    elapsed_s: Sequence[float], values: Sequence[float], window_s: float
) -> WindowStats | None:
    """Statistics of the readings of the last ``window_s`` seconds (None if none).

    ``sd`` is about the fitted line (a steady drift is the drift's business, not the
    noise's), with n - 2 degrees of freedom (n - 1 with fewer than 3 readings)."""
    t = np.asarray(elapsed_s, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(y) & np.isfinite(t)
    t, y = t[keep], y[keep]
    if t.size == 0:
        return None
    inside = t >= t[-1] - window_s
    t, y = t[inside], y[inside]
    n = int(t.size)
    if n >= 3 and np.ptp(t) > 0:
        coef = np.polyfit(t - t.mean(), y, 1)
        residuals = y - np.polyval(coef, t - t.mean())
        sd = float(math.sqrt(float(np.sum(residuals**2)) / (n - 2)))
        drift = float(coef[0] * 60.0)
    else:
        sd = float(np.std(y, ddof=1)) if n >= 2 else 0.0
        drift = drift_per_min(t, y)
    return WindowStats(
        mean=float(np.mean(y)), sd=sd, n=n, drift_per_min=drift, span_s=float(t[-1] - t[0])
    )


def _ok(stats: WindowStats | None, rule: StabilityRule) -> bool:
    return (
        stats is not None
        and stats.n >= rule.min_n
        and stats.span_s >= 0.8 * rule.window_s
        and abs(stats.drift_per_min) <= rule.max_drift_per_min
        and stats.sd <= rule.max_sd
    )


def assess_stability(
    elapsed_s: Sequence[float], values: Sequence[float], rule: StabilityRule
) -> StabilityState:
    """The rule applied at every reading of the trace; the state at the last one.

    >>> import numpy as np
    >>> t = np.arange(0.0, 80.0)
    >>> steady = assess_stability(t, 400 + 0.1 * np.sin(t), StabilityRule())
    >>> steady.stable, round(steady.stable_s)
    (True, 55)
    >>> assess_stability(t, 400 + 0.2 * t, StabilityRule()).stable  # 12 per minute
    False
    """
    t = np.asarray(elapsed_s, dtype=float)
    y = np.asarray(values, dtype=float)
    state = StabilityState(False, 0.0, None, False, rule.hold_s)
    for i in range(t.size):
        state = update_stability(state, t[: i + 1], y[: i + 1], rule)
    return state


def update_stability(
    previous: StabilityState,
    elapsed_s: Sequence[float],
    values: Sequence[float],
    rule: StabilityRule,
) -> StabilityState:
    """The state after the latest reading of the trace, given the state before it (what
    :func:`assess_stability` does at each reading; the runner calls it once per reading).
    """
    t = np.asarray(elapsed_s, dtype=float)
    if t.size == 0:
        return StabilityState(False, 0.0, None, False, rule.hold_s)
    stats = window_stats(t, values, rule.window_s)
    ok = _ok(stats, rule)
    now = float(t[-1])
    since = (previous.since_s if previous.ok_now else None) if ok else None
    if ok and since is None:
        since = now
    stable_s = 0.0 if since is None else now - since
    return StabilityState(
        stable=ok and stable_s >= rule.hold_s,
        stable_s=stable_s,
        stats=stats,
        ok_now=ok,
        hold_s=rule.hold_s,
        since_s=since,
    )


def progress_bar(fraction: float, width: int = 20) -> str:
    """``[#########-----------]`` for 0 <= fraction <= 1.

    >>> progress_bar(0.5, 10)
    '[#####-----]'
    """
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return "[" + "#" * full + "-" * (width - full) + "]"
