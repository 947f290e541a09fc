"""The fit window: fixed dead band, or chosen automatically where the flux is least sensitive."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .exponential import fit_exponential
from .linear import fit_linear

__all__ = ["DeadBandChoice", "choose_dead_band", "window_mask"]


def window_mask(
    elapsed_s: ArrayLike,
    *,
    dead_band_s: float,
    end_s: float,
    start_exclusive: bool = False,
) -> np.ndarray:
    """Samples of the fit window: dead band <= elapsed <= end (or > dead band).

    >>> window_mask([0, 5, 10, 15], dead_band_s=5, end_s=10).tolist()
    [False, True, True, False]
    >>> window_mask([0, 5, 10, 15], dead_band_s=5, end_s=10, start_exclusive=True).tolist()
    [False, False, True, False]
    """
    t = np.asarray(elapsed_s, dtype=float)
    start = t > dead_band_s if start_exclusive else t >= dead_band_s
    return start & (t <= end_s) & np.isfinite(t)


@dataclass(frozen=True)
class DeadBandChoice:
    """An automatically chosen fit window and the reason for it.

    Attributes
    ----------
    dead_band_s, end_s : float
        The chosen window [s since closure].
    sensitivity_per_s : float
        Relative change of the flux per second of dead band around the choice [s-1].
    model : str
        The model whose flux was scanned.
    reason : str
        One sentence an operator can read.
    candidates_s : tuple of float
        The dead bands scanned.
    slopes_mf_s : tuple of float
        The slope at each candidate (full length) [mf s-1].
    """

    dead_band_s: float
    end_s: float
    sensitivity_per_s: float
    model: str
    reason: str
    candidates_s: tuple[float, ...]
    slopes_mf_s: tuple[float, ...]


def _slope(t: np.ndarray, y: np.ndarray, c0_mf: float, use_exp: bool) -> float:
    if use_exp:
        fit = fit_exponential(t, y, c0_mf=c0_mf)
        if fit.converged:
            return fit.slope_mf_s
    return fit_linear(t, y).slope_mf_s


def choose_dead_band(
    elapsed_s: ArrayLike,
    mole_fraction: ArrayLike,
    *,
    c0_mf: float,
    end_s: float,
    max_dead_band_s: float | None = None,
    step_s: float = 1.0,
    min_points: int = 20,
    lengths: tuple[float, ...] = (1.0, 0.85, 0.7),
) -> DeadBandChoice:
    """Scan dead bands and window lengths; keep the window where the flux is steadiest.

    For each candidate dead band d (0 to ``max_dead_band_s``, default a third of
    ``end_s``, in ``step_s`` steps) and each window end (fractions ``lengths`` of
    ``end_s``), the slope is fitted with the exponential (C'0 fixed) where it converges
    and the linear otherwise. The sensitivity at d is the largest relative change of the
    slope against the neighbouring dead bands (d - step, d + step), per second; where a
    neighbour's window holds the same samples (a gap in the trace), the next one that holds
    others is taken instead. The window
    with the smallest sensitivity wins; ties go to the shorter dead band and the longer
    window. Windows with fewer than ``min_points`` samples are not considered.

    Parameters
    ----------
    elapsed_s : array_like
        Time since closure [s].
    mole_fraction : array_like
        Dry mole fraction [mf].
    c0_mf : float
        Initial dry mole fraction C'0 [mf].
    end_s : float
        Observation length [s].
    max_dead_band_s, step_s : float
        Scan range and step [s].
    min_points : int
        Fewest samples a window may have.
    lengths : tuple of float
        Window ends to try, as fractions of ``end_s``.

    Returns
    -------
    DeadBandChoice

    Raises
    ------
    ValueError
        When no candidate window has ``min_points`` samples.
    """
    t_all = np.asarray(elapsed_s, dtype=float)
    y_all = np.asarray(mole_fraction, dtype=float)
    keep = np.isfinite(t_all) & np.isfinite(y_all)
    t_all, y_all = t_all[keep], y_all[keep]
    top = end_s / 3.0 if max_dead_band_s is None else max_dead_band_s
    candidates = np.arange(0.0, top + step_s / 2, step_s)
    use_exp = fit_exponential(
        t_all[(t_all >= 0) & (t_all <= end_s)],
        y_all[(t_all >= 0) & (t_all <= end_s)],
        c0_mf=c0_mf,
    ).converged
    model = "exponential" if use_exp else "linear"
    best: tuple[float, float, float] | None = None  # (sensitivity, dead band, end)
    full_slopes: list[float] = []
    for fraction in lengths:
        end = end_s * fraction
        slopes = []
        counts = []  # samples in each window: equal counts, the same samples
        for d in candidates:
            mask = (t_all >= d) & (t_all <= end)
            counts.append(int(mask.sum()))
            if counts[-1] < min_points:
                slopes.append(math.nan)
                continue
            slopes.append(_slope(t_all[mask], y_all[mask], c0_mf, use_exp))
        s = np.asarray(slopes)
        if fraction == lengths[0]:
            full_slopes = slopes
        for i, d in enumerate(candidates):
            if not math.isfinite(s[i]) or s[i] == 0:
                continue
            # against the nearest candidate on each side whose window holds other samples:
            # a neighbour over the same samples (a gap in the trace) has the same slope,
            # which is no evidence that the flux is steady there
            changes = []
            for direction in (-1, 1):
                j = i + direction
                while 0 <= j < s.size and counts[j] == counts[i]:
                    j += direction
                if 0 <= j < s.size and math.isfinite(s[j]):
                    changes.append(abs(s[j] - s[i]) / (abs(j - i) * step_s))
            if not changes:
                continue
            sens = max(changes) / abs(s[i])
            key = (sens, float(d), -end)
            if best is None or key < (best[0], best[1], -best[2]):
                best = (sens, float(d), end)
    if best is None:
        raise ValueError(f"no window of at least {min_points} samples to choose a dead band")
    sens, dead_band, end = best
    reason = (
        f"{model} flux changes {100 * sens:.2g} % per s of dead band at {dead_band:g} s, the "
        f"steadiest of {candidates.size} dead bands (0-{candidates[-1]:g} s) and "
        f"{len(lengths)} window lengths; window {dead_band:g}-{end:g} s"
    )
    return DeadBandChoice(
        dead_band_s=dead_band,
        end_s=end,
        sensitivity_per_s=sens,
        model=model,
        reason=reason,
        candidates_s=tuple(float(c) for c in candidates),
        slopes_mf_s=tuple(float(v) for v in full_slopes),
    )
