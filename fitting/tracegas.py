"""Quality of trace-gas closures: ebullition steps, the diffusive part, the closing onset.

Pure functions over arrays (elapsed time since the chamber closed [s], mole fraction in the
gas's own unit ``mf``: nmol mol-1 for CH4 and N2O), returning frozen dataclasses.

Ebullition rule (documented in ``docs/fitting.md``)
---------------------------------------------------
A bubble reaching the headspace raises CH4 within a few samples (the loop's mixing time),
far faster than diffusion does. On the first differences ``d`` of the window's trace, with
``m`` their median (the diffusive rise per sample) and ``s`` their robust spread
(1.4826 x MAD, at least ``precision_mf``), a step starts where ``d - m`` exceeds
``threshold_sigma x s`` and continues while ``d - m`` exceeds ``2 s``; its size is the sum
of ``d - m`` over the run, its time the elapsed time where it starts; runs less than
``merge_s`` apart are one step (a bubble mixes in over several samples). Only steps larger
than ``min_step_mf`` count.

The diffusive flux is fitted on the longest step-free segment of the window (each step's
run plus ``guard_s`` after it excluded, the mixing tail) when that segment spans at least
``min_fraction`` of the window and holds at least ``min_points`` samples; otherwise no
diffusive flux is reported (the total flux, bubbles included, still is, flagged). The
segment is fitted like any window (exponential with C'0 fixed at the closure's start, or
linear, by the usual selection rule), so the headspace's curvature is still accounted for,
on the trace with the steps before it taken out (:func:`without_steps`): C'0 is measured at
the closure's start, before any bubble, and a curve through it cannot pass through a
segment lifted by the bubbles that came before. Steps are looked for over the whole closure,
dead band included: a bubble there leaves the window's slope alone but lifts the window off
C'0, which biases the exponential (by 8 % for a 150 nmol/mol bubble 10 s into a closure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "EbullitionStep",
    "Onset",
    "Segment",
    "closing_onset_s",
    "detect_ebullition",
    "diffusive_segment",
    "without_steps",
]


@dataclass(frozen=True)
class EbullitionStep:
    """One sudden rise: when it started [s since closed], its size [mf], how many samples."""

    time_s: float
    size_mf: float
    n_samples: int


@dataclass(frozen=True)
class Segment:
    """The fit window chosen for the diffusive flux [s since closed]; ``found`` False when
    no segment satisfies the rule (then start_s and end_s are NaN)."""

    found: bool
    start_s: float
    end_s: float
    n_points: int
    reason: str


def _sorted(t: ArrayLike, c: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    tt = np.asarray(t, dtype=float).ravel()
    cc = np.asarray(c, dtype=float).ravel()
    if tt.shape != cc.shape:
        raise ValueError(f"mole_fraction has {cc.size} samples, elapsed_s has {tt.size}")
    keep = np.isfinite(tt) & np.isfinite(cc)
    tt, cc = tt[keep], cc[keep]
    order = np.argsort(tt, kind="stable")
    return tt[order], cc[order]


def detect_ebullition(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    precision_mf: float,
    threshold_sigma: float = 6.0,
    min_step_mf: float | None = None,
    merge_s: float = 8.0,
) -> tuple[EbullitionStep, ...]:
    """Sudden positive steps (bubbles) in a closure's trace, by the rule of the module.

    Parameters
    ----------
    elapsed_s : array_like
        Time since the chamber closed, the fit window's samples [s].
    mole_fraction : array_like
        The gas's mole fraction (CH4 [nmol mol-1]) [mf].
    precision_mf : float
        Analyser precision (1 sigma at the logging rate) [mf]; floor of the spread.
    threshold_sigma : float
        Where a step starts, in robust spreads of the first differences.
    min_step_mf : float or None
        Smallest step reported [mf]; default 10 x ``precision_mf``.
    merge_s : float
        Runs starting at most this long after the previous run's last sample are one step
        (a bubble mixes into the loop over several samples) [s].

    Returns
    -------
    tuple of EbullitionStep

    Examples
    --------
    >>> t = np.arange(0.0, 120.0)
    >>> c = 2000 + 0.5 * t + np.where(t >= 60, 40.0, 0.0)
    >>> [(s.time_s, round(s.size_mf, 1)) for s in detect_ebullition(t, c, precision_mf=0.5)]
    [(60.0, 40.0)]
    """
    t, c = _sorted(elapsed_s, mole_fraction)
    if t.size < 5:
        return ()
    d = np.diff(c)
    m = float(np.median(d))
    spread = 1.4826 * float(np.median(np.abs(d - m)))
    s = max(spread, abs(precision_mf), 1e-12)
    smallest = 10.0 * abs(precision_mf) if min_step_mf is None else min_step_mf
    excess = d - m
    steps: list[EbullitionStep] = []
    runs: list[tuple[int, int]] = []
    i = 0
    while i < excess.size:
        if excess[i] > threshold_sigma * s:
            j = i
            while j + 1 < excess.size and excess[j + 1] > 2.0 * s:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    # one bubble mixes in over several samples: runs less than merge_s apart are one step
    merged: list[list[int]] = []
    for i, j in runs:
        if merged and t[i + 1] - t[merged[-1][1] + 1] <= merge_s:
            merged[-1][1] = j
        else:
            merged.append([i, j])
    for i, j in merged:
        size = float(np.sum(excess[i : j + 1]))
        if size >= smallest:
            steps.append(EbullitionStep(float(t[i + 1]), size, j - i + 1))
    return tuple(steps)


def without_steps(
    elapsed_s: ArrayLike, mole_fraction: ArrayLike, steps: tuple[EbullitionStep, ...]
) -> np.ndarray:
    """The trace with each step's size taken out of every sample from its start on [mf]
    (the samples of the step itself are left partly lifted: the diffusive segment excludes
    them and the mixing tail after them).

    Examples
    --------
    >>> t = np.arange(0.0, 6.0)
    >>> c = 2000 + t + np.where(t >= 3, 40.0, 0.0)
    >>> without_steps(t, c, (EbullitionStep(3.0, 40.0, 1),)).tolist()
    [2000.0, 2001.0, 2002.0, 2003.0, 2004.0, 2005.0]
    """
    t = np.asarray(elapsed_s, dtype=float)
    out = np.array(mole_fraction, dtype=float)
    for step in steps:
        out = out - np.where(t >= step.time_s, step.size_mf, 0.0)
    return out


def diffusive_segment(
    elapsed_s: ArrayLike,
    steps: tuple[EbullitionStep, ...],
    *,
    start_s: float,
    end_s: float,
    guard_s: float = 10.0,
    min_fraction: float = 0.4,
    min_points: int = 10,
) -> Segment:
    """The longest step-free part of the window [start_s, end_s], by the module's rule.

    Parameters
    ----------
    elapsed_s : array_like
        Sample times [s since closed].
    steps : tuple of EbullitionStep
        From :func:`detect_ebullition`.
    start_s, end_s : float
        The fit window [s].
    guard_s : float
        Excluded after each step's last sample (the mixing tail) [s].
    min_fraction : float
        The segment must span at least this fraction of the window.
    min_points : int
        ... and hold at least this many samples.

    Examples
    --------
    >>> t = np.arange(0.0, 121.0)
    >>> diffusive_segment(t, (EbullitionStep(90.0, 40.0, 2),), start_s=20, end_s=120)
    Segment(found=True, start_s=20.0, end_s=89.0, n_points=70, reason='longest step-free part')
    """
    t = np.sort(np.asarray(elapsed_s, dtype=float).ravel())
    t = t[np.isfinite(t) & (t >= start_s) & (t <= end_s)]
    cuts: list[tuple[float, float]] = []  # excluded intervals
    for step in steps:
        last = step.time_s
        after = t[t >= step.time_s]
        if after.size:
            last = float(after[min(step.n_samples, after.size) - 1])
        cuts.append((step.time_s, last + guard_s))
    bounds = [start_s]
    for a, b in sorted(cuts):
        bounds += [a, b]
    bounds.append(end_s)
    best: tuple[float, float, int] | None = None
    for k in range(0, len(bounds), 2):
        a, b = bounds[k], bounds[k + 1]
        inside = t[(t >= a) & (t < b)] if k + 2 < len(bounds) else t[(t >= a) & (t <= b)]
        if inside.size < 2:
            continue
        span = (float(inside[0]), float(inside[-1]), int(inside.size))
        if best is None or span[1] - span[0] > best[1] - best[0]:
            best = span
    window = end_s - start_s
    if best is None or best[2] < min_points or (best[1] - best[0]) < min_fraction * window:
        return Segment(False, math.nan, math.nan, 0 if best is None else best[2], "too short")
    return Segment(True, best[0], best[1], best[2], "longest step-free part")


@dataclass(frozen=True)
class Onset:
    """Where a trace leaves its baseline at the closure (a broken-stick fit).

    ``found`` False when the rise after the hinge is not at least ``min_rise_sigma``
    residual spreads over the searched span (then ``time_s`` is NaN)."""

    found: bool
    time_s: float
    slope_mf_s: float
    rise_sigma: float


def closing_onset_s(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    min_rise_sigma: float = 10.0,
) -> Onset:
    """The time a closure's rise reaches an analyser [s since closed]: the hinge of
    ``c = b`` before and ``c = b + k (t - t_h)`` after, least squares over every sample
    time as ``t_h``. Comparing two analysers' onsets in the same loop gives their
    difference in transit lag.

    Parameters
    ----------
    elapsed_s : array_like
        Sample times, from before the lid closed to some tens of seconds after [s].
    mole_fraction : array_like
        A quantity that changes at the closure (CO2, H2O, CH4) [mf].
    min_rise_sigma : float
        The change after the hinge, in residual standard deviations, needed to report it.

    Examples
    --------
    >>> t = np.arange(-5.0, 40.0)
    >>> c = 420 + 0.8 * np.clip(t - 7.0, 0, None)
    >>> closing_onset_s(t, c).time_s
    7.0
    """
    t, c = _sorted(elapsed_s, mole_fraction)
    if t.size < 8:
        return Onset(False, math.nan, math.nan, 0.0)
    best = (math.inf, math.nan, math.nan)
    for th in t[2:-3]:
        x = np.clip(t - th, 0.0, None)
        design = np.column_stack([np.ones_like(t), x])
        coef, *_ = np.linalg.lstsq(design, c, rcond=None)
        sse = float(np.sum((design @ coef - c) ** 2))
        if sse < best[0]:
            best = (sse, float(th), float(coef[1]))
    sse, th, k = best
    sigma = math.sqrt(sse / max(t.size - 3, 1))
    rise = abs(k) * (float(t[-1]) - th)
    score = rise / sigma if sigma > 0 else math.inf
    if not score >= min_rise_sigma:
        return Onset(False, math.nan, k, score)
    return Onset(True, th, k, score)
