"""The batch path of whole closures (fit_closures) equals fit_closure, closure by closure.

Seeded synthetic closures cover what fit_closure does per closure: wet and dry traces,
traces or single values of P, T and W, pre-closure samples, missing samples, shared and
own time axes of many lengths, windows of a few samples, every selection rule and
exponential form, the automatic dead band, and inputs fit_closure refuses.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from fitcompare import assert_same, single

from chamberd.fitting import Closure, FitSettings, fit_closures
from chamberd.fitting.closures import _groups, _prepare


def _trace(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A saturating (or straight, or falling) closed-chamber trace with noise."""
    kind = rng.random()
    c0 = rng.uniform(380, 520)
    slope = rng.uniform(0.02, 1.5) * rng.choice([-1.0, 1.0], p=[0.2, 0.8])
    tt = np.maximum(t, 0.0)
    if kind < 0.15:
        y = c0 + slope * tt  # straight
    elif kind < 0.2:
        y = c0 + slope * tt + 2e-4 * abs(slope) * tt**2  # bends upward (a leak)
    else:
        a = 10 ** rng.uniform(-4, -1)
        y = c0 + slope / a * -np.expm1(-a * tt)
    return y + rng.normal(0, rng.choice([0.05, 0.3, 1.0, 3.0]), t.size)


def _closures(seed: int = 20261201, n: int = 900) -> list[Closure]:
    rng = np.random.default_rng(seed)
    out = []
    settings_choices = [
        FitSettings(),
        FitSettings(initial_window_end_exclusive=True),
        FitSettings(selection="kappa_max"),
        FitSettings(selection="linear", r2_min=0.99),
        FitSettings(selection="exponential", min_points=30),
        FitSettings(exp_form="free_c0", exp_t0_s=5.0),
        FitSettings(a_bounds_per_s=(1e-4, 0.1), initial_window_s=15.0),
    ]
    shared = np.arange(-5.0, 120.0)
    for i in range(n):
        kind = i % 4
        if kind == 0:  # 1 Hz logger, one axis for all
            t = shared.copy()
        elif kind == 1:  # own axis, irregular steps
            steps = rng.uniform(0.5, 2.5, int(rng.integers(20, 300)))
            t = np.cumsum(steps) - rng.uniform(0, 8)
        elif kind == 2:  # own length at 1 Hz
            t = np.arange(-float(rng.integers(0, 10)), float(rng.integers(30, 240)))
        else:  # a slow logger: few samples
            t = np.arange(0.0, float(rng.integers(2, 14))) * rng.uniform(4, 12)
        y = _trace(rng, t)
        dry = bool(rng.random() < 0.5)
        h2o: float | np.ndarray = float(rng.uniform(5, 30))
        if not dry or rng.random() < 0.5:
            h2o = h2o + 0.02 * np.maximum(t, 0) + rng.normal(0, 0.05, t.size)
            y = y * (1 - h2o / 1000.0) if not dry else y
        pressure: float | np.ndarray = float(rng.uniform(95, 102))
        temperature: float | np.ndarray = float(rng.uniform(-5, 35))
        if rng.random() < 0.5:
            pressure = pressure + rng.normal(0, 0.01, t.size)
            temperature = temperature + 0.01 * np.maximum(t, 0)
        if rng.random() < 0.2:  # dropped samples
            y = y.copy()
            y[rng.random(t.size) < 0.05] = np.nan
        if rng.random() < 0.05 and not np.isscalar(h2o):
            h2o = np.array(h2o, copy=True)
            h2o[rng.integers(0, t.size)] = np.nan  # that sample cannot be made dry
        end = float(np.nanmax(t)) if rng.random() < 0.7 else float(np.nanmax(t)) * 0.8
        out.append(
            Closure(
                t,
                y,
                h2o_mmol_mol=h2o,
                pressure_kpa=pressure,
                temperature_degc=temperature,
                volume_cm3=float(rng.uniform(1000, 8000)),
                area_cm2=float(rng.uniform(80, 400)),
                dead_band_s=float(rng.choice([0.0, 5.0, 10.0, 25.0])),
                end_s=end,
                precision_mf=float(rng.choice([0.1, 1.0])),
                dry=dry,
                start_exclusive=bool(rng.random() < 0.3),
                settings=settings_choices[int(rng.integers(0, len(settings_choices)))],
            )
        )
    return out


def _refused(base: Closure) -> list[Closure]:
    """Closures fit_closure refuses, each for another reason."""
    t = np.asarray(base.elapsed_s)
    return [
        replace(base, elapsed_s=t + 20.0),  # no sample in the first 10 s
        replace(base, area_cm2=0.0),
        replace(base, volume_cm3=-1.0),
        replace(base, h2o_mmol_mol=1000.0),
        replace(base, pressure_kpa=math.nan),
        replace(base, temperature_degc=-300.0),
        replace(base, mole_fraction=np.asarray(base.mole_fraction)[:-1]),
        replace(base, pressure_kpa=np.ones(3)),
        replace(base, dead_band_s="soon"),
        replace(base, dead_band_s="auto", end_s=15.0),  # no window of 20 samples to scan
    ]


def test_batch_equals_single_on_seeded_synthetic_closures():
    closures = _closures()
    batch = fit_closures(closures)
    assert len(batch) == len(closures)
    worst = 0.0
    for closure, got in zip(closures, batch, strict=True):
        worst = max(worst, assert_same(single(closure), got))
    assert worst > 0  # the comparison did compare numbers
    models = {getattr(b, "model", None) for b in batch}
    assert {"linear", "exponential"} <= models
    flags = {f for b in batch if not isinstance(b, ValueError) for f in b.flags}
    assert {"few_points", "exp_degenerate", "exp_failed", "low_r2", "bends_upward"} <= flags


def test_automatic_dead_band_and_refused_closures_as_the_single_path():
    base = _closures(seed=3, n=1)[0]
    base = replace(base, settings=FitSettings(), end_s=float(np.nanmax(base.elapsed_s)))
    auto = [replace(base, dead_band_s="auto"), replace(base, dead_band_s="auto", end_s=60.0)]
    closures = [base, *auto, *_refused(base)]
    batch = fit_closures(closures)
    for closure, got in zip(closures, batch, strict=True):
        assert_same(single(closure), got)
    assert "dead_band_auto" in batch[1].flags and batch[1].dead_band_choice is not None
    errors = [b for b in batch[3:] if isinstance(b, ValueError)]
    assert len(errors) == len(closures) - 3
    assert "no finite sample between elapsed 0 and 10 s" in str(batch[3])
    assert "area_cm2 must be > 0" in str(batch[4])


def test_results_do_not_depend_on_the_company_a_closure_keeps():
    closures = _closures(seed=11, n=120)
    together = fit_closures(closures)
    alone = [fit_closures([c])[0] for c in closures[:40]]
    for a, b in zip(alone, together[:40], strict=True):
        assert_same(a, b, rtol=1e-9)


def test_groups_are_by_settings_and_similar_length():
    closures = [replace(c, settings=FitSettings()) for c in _closures(seed=5, n=200)]
    closures[::2] = [replace(c, settings=FitSettings(r2_min=0.5)) for c in closures[::2]]
    prepared = [p for i, c in enumerate(closures) if (p := _prepare(i, c)) is not None]
    groups = _groups(prepared, closures)
    assert sum(len(g) for g in groups) == len(prepared)
    shared = 0
    for group in groups:
        assert len({closures[p.index].settings for p in group}) == 1
        sizes = [p.t.size for p in group]
        assert max(sizes) <= max(1.25 * min(sizes), min(sizes) + 8)
        shared += len({p.t.tobytes() for p in group}) == 1 and len(group) >= 32
    assert shared  # the closures on the 1 Hz axis


def test_empty_input():
    assert fit_closures([]) == []


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_tiny_closures(length):
    # (with noise: on an exactly straight line the parabola's curvature is rounding noise
    # of either sign in both paths)
    t = np.arange(float(length))
    closure = Closure(
        t,
        400 + t + np.random.default_rng(length).normal(0, 0.1, length),
        h2o_mmol_mol=10.0,
        pressure_kpa=100.0,
        temperature_degc=20.0,
        volume_cm3=5000.0,
        area_cm2=300.0,
        dead_band_s=0.0,
        end_s=float(length),
        precision_mf=1.0,
        dry=True,
    )
    (got,) = fit_closures([closure])
    assert_same(single(closure), got)
