"""Ebullition steps, the diffusive segment and the closing onset (fitting/tracegas.py)."""

from __future__ import annotations

import numpy as np
import pytest

from chamberd.fitting import closing_onset_s, detect_ebullition, diffusive_segment


def _trace(seed: int, bubbles=(), noise=0.6, tau_s=3.0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 180.0)
    c = 2000.0 + 0.8 * t
    for at, size in bubbles:  # a step mixed into the loop with time constant tau_s
        c = c + size * np.clip(1 - np.exp(-(t - at) / tau_s), 0, None) * (t >= at)
    return t, c + rng.normal(0, noise, t.size)


def test_steps_found_with_size_and_time():
    t, c = _trace(1, bubbles=[(60.0, 50.0), (130.0, 30.0)])
    steps = detect_ebullition(t, c, precision_mf=0.6)
    assert [round(s.time_s) for s in steps] == [61, 131]
    assert steps[0].size_mf == pytest.approx(50.0 * (1 - np.exp(-1 / 3)) * 2.5, rel=0.6)
    assert sum(s.size_mf for s in steps) > 50


def test_no_false_steps_on_noise():
    false = sum(len(detect_ebullition(*_trace(seed), precision_mf=0.6)) for seed in range(200))
    assert false <= 2  # at most 1 % of diffusive closures


def test_diffusive_segment_rule():
    t, c = _trace(2, bubbles=[(150.0, 80.0)])
    steps = detect_ebullition(t, c, precision_mf=0.6)
    seg = diffusive_segment(t, steps, start_s=20, end_s=175)
    assert seg.found and seg.start_s == 20 and seg.end_s <= 150
    slope = np.polyfit(t[(t >= seg.start_s) & (t <= seg.end_s)], c[(t >= 20) & (t <= seg.end_s)], 1)
    assert slope[0] == pytest.approx(0.8, rel=0.03)
    # a bubble in the middle of a short window leaves no part long enough
    t, c = _trace(3, bubbles=[(60.0, 80.0)])
    steps = detect_ebullition(t[t <= 100], c[t <= 100], precision_mf=0.6)
    assert not diffusive_segment(t, steps, start_s=20, end_s=100, min_fraction=0.6).found


def test_onset_recovers_a_lag():
    rng = np.random.default_rng(4)
    t = np.arange(-5.0, 120.0)
    for lag in (0.0, 6.0, 11.0):
        c = 420 + 0.5 * np.clip(t - 3.0 - lag, 0, None) + rng.normal(0, 0.3, t.size)
        assert closing_onset_s(t, c).time_s == pytest.approx(3.0 + lag, abs=1.0)
    flat = 420 + rng.normal(0, 0.3, t.size)
    assert not closing_onset_s(t, flat).found
