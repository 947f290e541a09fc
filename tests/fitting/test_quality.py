"""Quality measures and the selection rule."""

from __future__ import annotations

import numpy as np
import pytest

from chamberd.fitting import (
    fit_exponential,
    fit_linear,
    g_factor,
    kappa_max_per_s,
    minimal_detectable_flux,
    select_model,
)


def test_mdf_kappa_max_and_g_factor_by_hand():
    mdf = minimal_detectable_flux(precision_mf=0.5, closure_s=100.0, dry_air_mol_m2=6.0)
    assert mdf == pytest.approx(0.03)
    assert kappa_max_per_s(lin_flux=-0.9, mdf=0.03, closure_s=100.0) == pytest.approx(0.3)
    assert g_factor(-2.0, -1.0) == 2.0
    with pytest.raises(ValueError):
        minimal_detectable_flux(precision_mf=1.0, closure_s=0.0, dry_air_mol_m2=1.0)


def _saturating():
    t = np.arange(10.0, 121.0)
    y = 560 - 150 * np.exp(-0.01 * t) + np.random.default_rng(2).normal(0, 0.2, t.size)
    return t, y


def test_licor_rule_prefers_a_converged_exponential():
    t, y = _saturating()
    choice = select_model(fit_linear(t, y), fit_exponential(t, y, c0_mf=410.0))
    assert choice.model == "exponential" and "converged" in choice.reason


def test_kappa_max_rule_falls_back_to_linear_with_a_reason():
    t, y = _saturating()
    exp = fit_exponential(t, y, c0_mf=410.0)
    choice = select_model(fit_linear(t, y), exp, rule="kappa_max", kappa_max=exp.a_per_s / 2)
    assert choice.model == "linear" and "kappa_max" in choice.reason


def test_degenerate_exponential_gives_linear_with_the_reason():
    t = np.arange(0.0, 90.0)
    y = 400 + 0.3 * t
    choice = select_model(fit_linear(t, y), fit_exponential(t, y, c0_mf=400.0))
    assert choice.model == "linear" and "straight" in choice.reason


def test_unknown_rule_raises():
    t, y = _saturating()
    with pytest.raises(ValueError, match="unknown selection rule"):
        select_model(fit_linear(t, y), fit_exponential(t, y), rule="aic")
