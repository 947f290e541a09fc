"""The comparison report: one self-contained HTML page drawn from a :class:`Comparison`.

:func:`render_report` is what ``chamberd compare -o report.html`` writes. It reads nothing
but the :class:`~.comparison.Comparison` it is given (no database, no file), and every line
in a figure is a number of that result that a table of the report also shows: the 1:1,
Deming and SMA lines are the result's slopes and intercepts, the Bland-Altman lines its
mean difference and limits of agreement (with their confidence intervals as bands), the
temperature-response curves its fitted R10, Q10 and E0. Points are the data themselves:
the pairs (scatter, Bland-Altman) and each side's series (time series, temperature).

Sections, in order: summary (the headline numbers beside the within-system floor), the
statistics table (every estimate with its block-bootstrap CI and, where the estimator has
one, its analytic CI), scatter, Bland-Altman (differences and log ratios), time series, diel
cycles, temperature responses, sums (cumulative, with uncertainty bands; daily, monthly and
period tables), sparse-sampling emulation, pairing diagnostics, within-system baselines,
the processing part, breakdowns, and the provenance (queries, processing versions, software
version, database with its password removed).

The page has no script and loads nothing: figures are palette PNGs in ``data:`` URIs
(:mod:`chamberd.network_sync.html_report`), so it opens from a ``file://`` path anywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chamberd.network_sync.html_report import (
    TAIL,
    esc,
    figure_png,
    fmt,
    head,
    img,
    new_figure,
    pct,
    table,
)

__all__ = ["STATISTICS", "render_report"]

_A, _B = "tab:blue", "tab:orange"
#: Points drawn as single pixels (and lighter) from this many on.
_MANY_POINTS = 20000

#: Rows of the statistics table: (label, key of ``Agreement.as_dict()``, analytic CI
#: suffix or None, unit: "flux" or "" for dimensionless, "ratio" for a ratio of b to a).
STATISTICS: tuple[tuple[str, str, str | None, str], ...] = (
    ("mean bias (b − a)", "bias", "t", "flux"),
    ("relative bias", "relative_bias", None, "pct"),
    ("RMSD", "rmsd", None, "flux"),
    ("MAE", "mae", None, "flux"),
    ("Pearson r", "r", "fisher", ""),
    ("Lin's CCC", "ccc", "lin", ""),
    ("  precision (r)", "ccc_precision", None, ""),
    ("  accuracy (C_b)", "ccc_accuracy", None, ""),
    ("Bland-Altman lower limit of agreement", "loa_lower", "ba1999", "flux"),
    ("Bland-Altman upper limit of agreement", "loa_upper", "ba1999", "flux"),
    ("proportional bias: slope of (b − a) on mean", "proportional_bias_slope", "t", ""),
    ("proportional bias: intercept", "proportional_bias_intercept", "t", "flux"),
    ("log ratio ln(b/a): mean", "log_ratio_mean", "t", ""),
    ("  mean, as a ratio b/a", "ratio_mean", None, "ratio"),
    ("log ratio: lower limit of agreement", "log_ratio_loa_lower", "ba1999", ""),
    ("  lower limit, as a ratio b/a", "ratio_loa_lower", None, "ratio"),
    ("log ratio: upper limit of agreement", "log_ratio_loa_upper", "ba1999", ""),
    ("  upper limit, as a ratio b/a", "ratio_loa_upper", None, "ratio"),
    ("log proportional bias: slope", "log_proportional_bias_slope", "t", ""),
    ("log proportional bias: intercept", "log_proportional_bias_intercept", "t", ""),
    ("Deming slope", "deming_slope", "jackknife", ""),
    ("Deming intercept", "deming_intercept", "jackknife", "flux"),
    ("SMA slope", "sma_slope", "warton", ""),
    ("SMA intercept", "sma_intercept", "warton", "flux"),
    ("Passing-Bablok slope", "passing_bablok_slope", "rank", ""),
    ("Passing-Bablok intercept", "passing_bablok_intercept", "rank", "flux"),
    ("OLS slope (for reference)", "ols_slope", "t", ""),
    ("OLS intercept (for reference)", "ols_intercept", "t", "flux"),
)

_HEADLINE = (
    ("pairs", "n_pairs"),
    ("mean bias (b − a)", "bias"),
    ("relative bias", "relative_bias"),
    ("RMSD", "rmsd"),
    ("CCC", "ccc"),
    ("Deming slope", "deming_slope"),
)


def render_report(comparison: Any, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of ``comparison`` to ``path`` (atomically) and return it.

    Parameters
    ----------
    comparison : Comparison
        The result of :func:`chamberd.network_sync.compare.comparison.compare`.
    path : str or path-like
        The HTML file to write.
    """
    from chamberd.controller.output import open_output

    c = comparison
    flat = _flat(c.agreement)
    unit = c.a.flux_unit
    title = f"chamberd compare: {c.b.label} against {c.a.label} ({_gas(c.settings.gas)})"
    parts = [
        ("summary", "Summary", _summary(c, flat, unit, title)),
        ("statistics", "Statistics", _statistics(c, flat, unit)),
        ("scatter", "Scatter", _scatter_section(c, flat, unit)),
        ("bland-altman", "Bland-Altman", _bland_altman_section(c, flat, unit)),
        ("series", "Time series", _series_section(c, unit)),
        ("diel", "Diel cycle", _diel_section(c, unit)),
        ("temperature", "Temperature", _temperature_section(c, unit)),
        ("sums", "Sums", _sums_section(c)),
        ("sampling", "Sparse sampling", _sampling_section(c)),
        ("pairing", "Pairing", _pairing_section(c)),
        ("baseline", "Baseline", _baseline_section(c, unit)),
        ("processing", "Processing", _processing_section(c, unit)),
        ("breakdowns", "Breakdowns", _breakdowns_section(c, unit)),
        ("provenance", "Provenance", _provenance_section(c)),
    ]
    target = Path(path)
    with open_output(os.fspath(target)) as out:
        out.write(head(title, nav=[(anchor, label) for anchor, label, _ in parts]))
        for anchor, _label, body in parts:
            out.write(f"<section id='{anchor}'>\n{body}\n</section>\n")
        out.write(TAIL)
    return target


# --- numbers ----------------------------------------------------------------------------------


def _flat(agreement: Any) -> dict[str, Any]:
    if agreement is None:
        return {}
    return agreement.as_dict()


def _gas(gas: str) -> str:
    return {"co2": "CO2", "ch4": "CH4", "n2o": "N2O"}.get(gas, gas)


def _ci_text(ci: Any, kind: str = "") -> str:
    if not ci or len(ci) != 2 or any(v is None for v in ci):
        return "–"
    lo, hi = ci
    if kind == "pct":
        return f"[{pct(lo)}, {pct(hi)}]"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _value(v: Any, kind: str = "") -> str:
    return pct(v) if kind == "pct" else fmt(v)


#: Beyond this magnitude a value is not drawn (it would break the axis scaling).
PLOTTABLE = 1e12


def _finite(*values: Any) -> bool:
    """Every value a number that can be drawn (finite, below :data:`PLOTTABLE`)."""
    try:
        return all(
            v is not None and math.isfinite(float(v)) and abs(float(v)) < PLOTTABLE for v in values
        )
    except (TypeError, ValueError):
        return False


def _plottable(values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.isfinite(values) & (np.abs(values) < PLOTTABLE)


def _clean(values: Any) -> np.ndarray:
    """``values`` as floats, NaN (a gap in a line) where they cannot be drawn."""
    out = np.array(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float, copy=True)
    out[~_plottable(out)] = np.nan
    return out


def _caption(text: str) -> str:
    return f"<p class='muted'>{text}</p>"


def _figure(png: bytes, alt: str, caption: str) -> str:
    return f"<figure>{img(png, alt)}<figcaption>{caption}</figcaption></figure>"


def _points(n: int) -> dict[str, Any]:
    """Marker style for ``n`` points: dots, or single pixels for many."""
    if n >= _MANY_POINTS:
        return {"marker": ",", "linestyle": "none", "alpha": 0.5}
    return {"marker": ".", "linestyle": "none", "ms": 3 if n < 2000 else 2, "alpha": 0.6}


def _style(axis: Any, xlabel: str, ylabel: str) -> None:
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(labelsize=7)
    axis.grid(True, color="0.92", lw=0.6)


# --- summary and statistics -------------------------------------------------------------------


def _summary(c: Any, flat: dict[str, Any], unit: str, title: str) -> str:
    s = c.settings
    period = f"{s.start_utc or 'the first observation'} to {s.end_utc or 'the last'} (UTC)"
    rows = []
    for label, key in _HEADLINE:
        kind = "pct" if key == "relative_bias" else ""
        value = flat.get(key, len(c.pairing) if key == "n_pairs" else None)
        rows.append([esc(label), _value(value, kind), _ci_text(flat.get(f"{key}_ci"), kind)])
    floors = []
    for baseline in c.baselines:
        floor = baseline.floor or {}
        if not floor:
            floors.append(f"<li>{esc(baseline.label)}: no baseline ({esc(baseline.note)})</li>")
            continue

        def show(name: str, floor: dict = floor) -> str:
            entry = floor.get(name) or {}
            return (
                f"{name} {fmt(entry.get('median'))} ({fmt(entry.get('min'))} to "
                f"{fmt(entry.get('max'))})"
            )

        floors.append(
            f"<li>{esc(baseline.label)}, {len(baseline.pairs)} collar pair(s): median (range) "
            f"{esc(show('bias'))}, {esc(show('rmsd'))}, {esc(show('ccc'))}</li>"
        )
    floor_html = (
        "<p>Within-system floor (between collars of each system, same period):</p><ul>"
        + "".join(floors)
        + "</ul>"
        if floors
        else ""
    )
    return (
        f"<h1>{esc(title)}</h1>"
        f"<p><b>a</b>: {esc(c.a.describe())}<br><b>b</b>: {esc(c.b.describe())}<br>"
        f"period: {esc(period)}; fluxes in {esc(unit)}; bias = mean(b − a)</p>"
        "<h2>Summary</h2>"
        + table(
            ["", "estimate", f"{_level(flat)} CI"],
            rows,
            numeric=[False, True, True],
            caption=_ci_caption(c, flat),
        )
        + floor_html
    )


def _level(flat: dict[str, Any]) -> str:
    alpha = flat.get("alpha")
    return f"{100 * (1 - alpha):g} %" if _finite(alpha) else "95 %"


def _ci_caption(c: Any, flat: dict[str, Any]) -> str:
    n_boot = flat.get("n_boot") or 0
    if not n_boot:
        return "no bootstrap (n_boot = 0): no intervals"
    return (
        f"intervals: {esc(flat.get('ci_method') or 'block bootstrap')}, {n_boot} resamples of "
        f"{flat.get('n_blocks')} {esc(flat.get('block_kind') or 'blocks')} (local standard "
        f"days), seed {c.settings.seed}"
    )


def _statistics(c: Any, flat: dict[str, Any], unit: str) -> str:
    if not flat:
        return "<h2>Statistics</h2><p>No agreement statistics (no pairs).</p>"
    rows = []
    for label, key, analytic, kind in STATISTICS:
        if key not in flat:
            continue
        shown = "pct" if kind == "pct" else ""
        analytic_ci = flat.get(f"{key}_ci_{analytic}") if analytic else None
        units = {"flux": unit, "pct": "", "ratio": "b/a", "": "–"}[kind]
        rows.append(
            [
                esc(label),
                _value(flat.get(key), shown),
                _ci_text(flat.get(f"{key}_ci"), shown),
                (f"{_ci_text(analytic_ci, shown)} ({esc(analytic)})" if analytic else "–"),
                esc(units),
            ]
        )
    notes = [
        f"pairs {flat.get('n_pairs')}, dropped {flat.get('n_dropped')}",
        f"Deming error ratio λ = {fmt(flat.get('error_ratio'))} "
        f"({esc(flat.get('error_ratio_source') or '')})",
        f"limits of agreement: mean ± {fmt(flat.get('loa_k'))} SD of the differences "
        f"(SD {fmt(flat.get('sd_difference'))})",
        f"log ratios on {flat.get('log_ratio_n')} pairs with both fluxes positive "
        f"({flat.get('log_ratio_n_excluded')} left out)",
        f"relative bias relative to {esc(flat.get('relative_to'))}",
    ]
    if flat.get("passing_bablok_note"):
        notes.append(f"Passing-Bablok: {esc(flat['passing_bablok_note'])}")
    return (
        "<h2>Statistics</h2>"
        + table(
            ["statistic", "estimate", f"{_level(flat)} CI (bootstrap)", "analytic CI", "unit"],
            rows,
            numeric=[False, True, True, True, False],
            caption=_ci_caption(c, flat),
        )
        + "<ul class='muted'>"
        + "".join(f"<li>{n}</li>" for n in notes)
        + "</ul>"
    )


# --- scatter and Bland-Altman -------------------------------------------------------------------


def _pairs(c: Any) -> tuple[np.ndarray, np.ndarray]:
    pairs = c.pairing.pairs
    a = pd.to_numeric(pairs["flux_a"], errors="coerce").to_numpy(dtype=float)
    b = pd.to_numeric(pairs["flux_b"], errors="coerce").to_numpy(dtype=float)
    keep = _plottable(a) & _plottable(b)
    return a[keep], b[keep]


def _scatter_section(c: Any, flat: dict[str, Any], unit: str) -> str:
    a, b = _pairs(c)
    if not len(a):
        return "<h2>Scatter</h2><p>No pairs.</p>"
    figure = new_figure(5.2, 5.0)
    axis = figure.subplots()
    axis.plot(a, b, color="0.25", **_points(len(a)))
    lo = float(min(a.min(), b.min()))
    hi = float(max(a.max(), b.max()))
    pad = 0.04 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 2)
    axis.plot(grid, grid, color="0.5", lw=1, ls="--", label="1:1")
    for key, label, colour in (("deming", "Deming", "tab:red"), ("sma", "SMA", "tab:green")):
        slope, intercept = flat.get(f"{key}_slope"), flat.get(f"{key}_intercept")
        if _finite(slope, intercept):
            axis.plot(
                grid,
                intercept + slope * grid,
                color=colour,
                lw=1.4,
                label=f"{label}: b = {fmt(intercept, 3)} + {fmt(slope, 3)} a",
            )
    axis.set_xlim(lo - pad, hi + pad)
    axis.set_ylim(lo - pad, hi + pad)
    axis.set_aspect("equal", adjustable="box")
    _style(axis, f"a: {c.a.label} [{unit}]", f"b: {c.b.label} [{unit}]")
    axis.legend(fontsize=7, loc="upper left", frameon=False)
    figure.subplots_adjust(left=0.14, right=0.97, top=0.97, bottom=0.1)
    return "<h2>Scatter</h2>" + _figure(
        figure_png(figure),
        "scatter of b against a",
        f"{len(a)} pairs. Lines: 1:1; Deming and SMA regressions of the statistics table "
        "(slopes and intercepts with their CIs there).",
    )


def _bland_altman_section(c: Any, flat: dict[str, Any], unit: str) -> str:
    a, b = _pairs(c)
    if not len(a):
        return "<h2>Bland-Altman</h2><p>No pairs.</p>"
    out = ["<h2>Bland-Altman</h2><div class='grid'>"]
    mean, diff = (a + b) / 2.0, b - a
    out.append(
        _ba_figure(
            mean,
            diff,
            flat,
            prefix="",
            regression="proportional_bias",
            xlabel=f"mean of a and b [{unit}]",
            ylabel=f"b − a [{unit}]",
            alt="Bland-Altman plot of differences",
            caption=f"{len(a)} pairs. Lines: mean difference and limits of agreement with "
            "their CIs (bands); dotted, the proportional-bias regression of the differences "
            "on the means.",
        )
    )
    positive = (a > 0) & (b > 0)
    if positive.sum() >= 3 and flat.get("log_ratio_mean") is not None:
        la, lb = np.log(a[positive]), np.log(b[positive])
        out.append(
            _ba_figure(
                (la + lb) / 2.0,
                lb - la,
                flat,
                prefix="log_ratio_",
                regression="log_proportional_bias",
                xlabel=f"mean of ln a and ln b [ln {unit}]",
                ylabel="ln(b / a)",
                alt="Bland-Altman plot of log ratios",
                caption=f"{int(positive.sum())} pairs with both fluxes positive. Lines: mean "
                "log ratio and its limits of agreement with CIs; as ratios b/a: "
                f"{fmt(flat.get('ratio_mean'), 3)} ({fmt(flat.get('ratio_loa_lower'), 3)} to "
                f"{fmt(flat.get('ratio_loa_upper'), 3)}).",
            )
        )
    else:
        out.append("<p>Log ratios: too few pairs with both fluxes positive.</p>")
    out.append("</div>")
    return "".join(out)


def _ba_figure(
    x: np.ndarray,
    y: np.ndarray,
    flat: dict[str, Any],
    *,
    prefix: str,
    regression: str,
    xlabel: str,
    ylabel: str,
    alt: str,
    caption: str,
) -> str:
    figure = new_figure(5.2, 3.8)
    axis = figure.subplots()
    axis.plot(x, y, color="0.25", **_points(len(x)))
    axis.axhline(0.0, color="0.6", lw=0.8)
    mean_key = f"{prefix}mean" if prefix else "bias"
    lines = ((mean_key, "tab:red", "mean"), (f"{prefix}loa_lower", "tab:purple", "lower LoA"))
    lines += ((f"{prefix}loa_upper", "tab:purple", "upper LoA"),)
    for key, colour, label in lines:
        value = flat.get(key)
        if not _finite(value):
            continue
        ci = flat.get(f"{key}_ci")
        if ci and _finite(*ci):
            axis.axhspan(ci[0], ci[1], color=colour, alpha=0.12, lw=0)
        axis.axhline(value, color=colour, lw=1.3, label=f"{label} {fmt(value, 3)}")
    slope = flat.get(f"{regression}_slope")
    intercept = flat.get(f"{regression}_intercept")
    if _finite(slope, intercept) and len(x) > 1:
        grid = np.linspace(float(np.min(x)), float(np.max(x)), 2)
        axis.plot(
            grid,
            intercept + slope * grid,
            color="tab:green",
            lw=1.1,
            ls=":",
            label=f"proportional bias: slope {fmt(slope, 3)}",
        )
    _style(axis, xlabel, ylabel)
    axis.legend(fontsize=7, loc="best", frameon=False)
    figure.subplots_adjust(left=0.15, right=0.97, top=0.96, bottom=0.14)
    return _figure(figure_png(figure), alt, caption)


# --- time series, diel, temperature ------------------------------------------------------------


def _frame(selection: Any) -> pd.DataFrame:
    return selection.frame if selection is not None and selection.frame is not None else None


def _series_section(c: Any, unit: str) -> str:
    figure = new_figure(9.6, 3.4)
    axis = figure.subplots()
    drawn = 0
    pairs = c.pairing.pairs
    for side, colour, name in ((c.a, _A, "a"), (c.b, _B, "b")):
        frame = _frame(side)
        if frame is None or not len(frame):
            continue
        t = pd.to_datetime(frame["time_utc"], utc=True).dt.tz_localize(None)
        f = pd.to_numeric(frame["flux"], errors="coerce").to_numpy(dtype=float)
        keep = _plottable(f) & t.notna().to_numpy()
        style = _points(len(frame))
        style["alpha"] = 0.25
        axis.plot(t[keep], f[keep], color=colour, **style)
        paired_t = pd.to_datetime(pairs[f"time_{name}"], utc=True).dt.tz_localize(None)
        paired_f = pd.to_numeric(pairs[f"flux_{name}"], errors="coerce").to_numpy(dtype=float)
        keep = _plottable(paired_f) & paired_t.notna().to_numpy()
        paired = {**_points(len(pairs)), "alpha": 0.9}
        axis.plot(
            paired_t[keep],
            paired_f[keep],
            color=colour,
            label=f"{name}: {side.label}",
            **paired,
        )
        drawn += len(frame)
    if not drawn:
        return "<h2>Time series</h2><p>No observations.</p>"
    _style(axis, "time (UTC)", f"flux [{unit}]")
    axis.legend(fontsize=7, loc="upper left", frameon=False, markerscale=3)
    figure.autofmt_xdate()
    figure.subplots_adjust(left=0.07, right=0.99, top=0.97, bottom=0.2)
    return "<h2>Time series</h2>" + _figure(
        figure_png(figure),
        "time series of both sides",
        f"Each side's series ({len(c.a)} and {len(c.b)} rows); paired observations drawn "
        "darker, unpaired ones light.",
    )


def _diel_section(c: Any, unit: str) -> str:
    sides = [(c.temporal_a, _A, "a"), (c.temporal_b, _B, "b")]
    available = [(s, col, n) for s, col, n in sides if s is not None and s.diel is not None]
    if not available:
        return "<h2>Diel cycle</h2>" + _notes(c, "diel")
    figure = new_figure(6.4, 3.4)
    axis = figure.subplots()
    for side, colour, name in available:
        d = side.diel
        hours = d["hour_local_standard"].to_numpy(dtype=float) + 0.5
        axis.fill_between(
            hours,
            _clean(d["flux_mean_ci_lower"]),
            _clean(d["flux_mean_ci_upper"]),
            color=colour,
            alpha=0.2,
            lw=0,
        )
        axis.plot(
            hours,
            _clean(d["flux_mean"]),
            "-o",
            color=colour,
            ms=3,
            lw=1.3,
            label=f"{name}: {side.label}",
        )
        axis.plot(hours, _clean(d["flux_q25"]), ":", color=colour, lw=0.8)
        axis.plot(hours, _clean(d["flux_q75"]), ":", color=colour, lw=0.8)
    axis.set_xlim(0, 24)
    axis.set_xticks(range(0, 25, 3))
    _style(axis, "hour of local standard time", f"flux [{unit}]")
    axis.legend(fontsize=7, loc="best", frameon=False)
    figure.subplots_adjust(left=0.11, right=0.98, top=0.96, bottom=0.14)
    tables = "".join(
        f"<details><summary>{esc(name)}: {esc(side.label)}, by hour</summary>"
        + _frame_table(
            side.diel,
            [
                "hour_local_standard",
                "n",
                "flux_mean",
                "flux_mean_ci_lower",
                "flux_mean_ci_upper",
                "flux_sd",
                "flux_median",
                "flux_q25",
                "flux_q75",
            ],
        )
        + "</details>"
        for side, _colour, name in available
    )
    return (
        "<h2>Diel cycle</h2>"
        + _figure(
            figure_png(figure),
            "diel cycles",
            "Mean by hour of local standard time with its CI (band); dotted, the quartiles "
            "(values in the tables below).",
        )
        + tables
        + _notes(c, "diel")
    )


def _temperature_section(c: Any, unit: str) -> str:
    from . import temporal

    rows = []
    figure = new_figure(6.4, 3.8)
    axis = figure.subplots()
    drawn = False
    for selection, side, colour, name in (
        (c.a, c.temporal_a, _A, "a"),
        (c.b, c.temporal_b, _B, "b"),
    ):
        frame = _frame(selection)
        if frame is not None and len(frame):
            t = pd.to_numeric(frame["soil_temperature_degc"], errors="coerce").to_numpy(float)
            f = pd.to_numeric(frame["flux"], errors="coerce").to_numpy(float)
            ok = _plottable(t) & _plottable(f)
            if ok.any():
                style = {**_points(int(ok.sum())), "alpha": 0.3}
                axis.plot(t[ok], f[ok], color=colour, label=f"{name}: {selection.label}", **style)
                drawn = True
        q10 = side.q10 if side is not None else None
        lt = side.lloyd_taylor if side is not None else None
        for fit, model, label, ls in ((q10, "q10", "Q10", "-"), (lt, "lt", "Lloyd-Taylor", "--")):
            if fit is None or not _finite(fit.r10, fit.temperature_min_degc):
                continue
            grid = np.linspace(fit.temperature_min_degc, fit.temperature_max_degc, 100)
            if model == "q10" and _finite(fit.q10):
                curve = temporal.q10_model(grid, fit.r10, fit.q10)
            elif model == "lt" and _finite(fit.e0_k):
                curve = temporal.lloyd_taylor(grid, fit.r10, fit.e0_k)
            else:
                continue
            axis.plot(grid, _clean(curve), ls, color=colour, lw=1.5, label=f"{name} {label}")
            drawn = True
        if q10 is not None:
            rows.append(
                [
                    f"{name}: {esc(selection.label)}",
                    "Q10 (ln F = a + b T)",
                    f"R10 {fmt(q10.r10)} {_ci_text(q10.r10_ci)}",
                    f"Q10 {fmt(q10.q10)} {_ci_text(q10.q10_ci)}",
                    str(q10.n),
                    f"{fmt(q10.temperature_min_degc, 3)} to {fmt(q10.temperature_max_degc, 3)}",
                ]
            )
        if lt is not None:
            rows.append(
                [
                    f"{name}: {esc(selection.label)}",
                    "Lloyd-Taylor (T0 = 227.13 K)",
                    f"R10 {fmt(lt.r10)} {_ci_text(lt.r10_ci)}",
                    f"E0 {fmt(lt.e0_k)} K {_ci_text(lt.e0_k_ci)}",
                    str(lt.n),
                    f"{fmt(lt.temperature_min_degc, 3)} to {fmt(lt.temperature_max_degc, 3)}",
                ]
            )
    if not drawn and not rows:
        return "<h2>Temperature response</h2>" + _notes(c, "temperature")
    _style(axis, "soil temperature [°C]", f"flux [{unit}]")
    axis.legend(fontsize=7, loc="upper left", frameon=False, markerscale=3)
    figure.subplots_adjust(left=0.11, right=0.98, top=0.96, bottom=0.13)
    return (
        "<h2>Temperature response</h2>"
        + _figure(
            figure_png(figure),
            "flux against soil temperature with the fitted responses",
            "Each side's fluxes against the soil temperature it recorded; curves: the fitted "
            "Q10 and Lloyd-Taylor responses of the table, over the temperatures fitted.",
        )
        + table(
            ["side", "model", "R10", "Q10 or E0", "n", "temperatures [°C]"],
            rows,
            numeric=[False, False, True, True, True, True],
            caption=f"R10 in {esc(unit)}; bootstrap CIs by day",
        )
        + _notes(c, "temperature")
    )


# --- sums -------------------------------------------------------------------------------------


def _sum_columns(frame: pd.DataFrame) -> tuple[str, str] | None:
    """The sum column and its unit suffix (``sum_g_c_m2`` -> ``g_c_m2``)."""
    for column in frame.columns:
        if column.startswith("sum_"):
            return column, column[4:]
    return None


_SUM_UNITS = {"g_c_m2": "g C m-2", "mg_c_m2": "mg C m-2", "mg_n_m2": "mg N m-2"}


def _cumulative(side: Any, gas: str) -> pd.DataFrame | None:
    """The side's running sum with its uncertainty: the result's own where it has one,
    else :func:`.temporal.cumulative_sums` of its gap-filled series (the error model of
    its sums; its last value is the period sum of the table)."""
    from . import temporal

    own = getattr(side, "cumulative", None)
    if own is not None:
        return own
    if side is None or side.filled is None or not len(side.filled):
        return None
    try:
        return temporal.cumulative_sums(side.filled, gas)
    except (ArithmeticError, ValueError):
        return None


def _sums_section(c: Any) -> str:
    gas = c.settings.gas
    sides = [(c.temporal_a, _A, "a"), (c.temporal_b, _B, "b")]
    curves = [(s, col, n, _cumulative(s, gas)) for s, col, n in sides if s is not None]
    curves = [x for x in curves if x[3] is not None and len(x[3])]
    out = ["<h2>Sums</h2>"]
    if curves:
        figure = new_figure(9.6, 3.4)
        axis = figure.subplots()
        unit = ""
        for side, colour, name, run in curves:
            found = [col for col in run.columns if col.startswith("cumulative_")]
            if not found:
                continue
            suffix = found[0][len("cumulative_") :]
            unit = _SUM_UNITS.get(suffix, suffix)
            t = pd.to_datetime(run["time_utc"], utc=True).dt.tz_localize(None)
            axis.fill_between(
                t,
                _clean(run[f"ci_lower_{suffix}"]),
                _clean(run[f"ci_upper_{suffix}"]),
                color=colour,
                alpha=0.2,
                lw=0,
            )
            axis.plot(
                t,
                _clean(run[f"cumulative_{suffix}"]),
                color=colour,
                lw=1.4,
                label=f"{name}: {side.label}",
            )
        _style(axis, "time (UTC)", f"cumulative sum [{unit}]")
        axis.legend(fontsize=7, loc="upper left", frameon=False)
        figure.autofmt_xdate()
        figure.subplots_adjust(left=0.07, right=0.99, top=0.97, bottom=0.2)
        out.append(
            _figure(
                figure_png(figure),
                "cumulative sums with uncertainty bands",
                "Running sum of each gap-filled series with its CI (band: random measurement "
                "error and gap-filling error, autocorrelation accounted for); the last value "
                "is the period sum of the table.",
            )
        )
    rows = []
    for side, _colour, name in sides:
        if side is None or side.period is None or not len(side.period):
            continue
        found = _sum_columns(side.period)
        if found is None:
            continue
        column, suffix = found
        for _, r in side.period.iterrows():
            rows.append(
                [
                    f"{name}: {esc(side.label)}",
                    fmt(r[column]),
                    fmt(r.get(f"total_se_{suffix}")),
                    _ci_text((r.get(f"ci_lower_{suffix}"), r.get(f"ci_upper_{suffix}"))),
                    fmt(r.get(f"random_se_{suffix}")),
                    fmt(r.get(f"gap_fill_se_{suffix}")),
                    pct(r.get("filled_fraction")),
                    esc(_SUM_UNITS.get(suffix, suffix)),
                ]
            )
    if rows:
        out.append(
            "<h3>Period sums</h3>"
            + table(
                ["side", "sum", "total SE", "CI", "random SE", "gap-filling SE", "filled", "unit"],
                rows,
                numeric=[False, True, True, True, True, True, True, False],
            )
        )
    for side, _colour, name in sides:
        for label, frame in (("monthly", side.monthly), ("daily", side.daily)):
            if frame is None or not len(frame):
                continue
            found = _sum_columns(frame)
            if found is None:
                continue
            column, suffix = found
            out.append(
                f"<details><summary>{esc(name)}: {esc(side.label)}, {label} sums "
                f"({len(frame)}) [{esc(_SUM_UNITS.get(suffix, suffix))}]</summary>"
                + _frame_table(
                    frame,
                    [
                        "period_start",
                        "n_measured",
                        "n_filled",
                        column,
                        f"total_se_{suffix}",
                        f"ci_lower_{suffix}",
                        f"ci_upper_{suffix}",
                    ],
                )
                + "</details>"
            )
    if len(out) == 1:
        out.append("<p>No sums.</p>")
    out.append(_notes(c, "sums"))
    return "".join(out)


def _sampling_section(c: Any) -> str:
    s = c.sampling
    if s is None:
        return (
            "<h2>Sparse sampling</h2><p>Not emulated: neither side samples at least four "
            "times less often than the other.</p>"
        )
    r = s.result
    if r is None:
        return f"<h2>Sparse sampling</h2><p>{esc(s.note)}</p>"
    rows = [
        ["continuous sum", fmt(r.continuous_sum), "–"],
        ["sparse estimate", fmt(r.sparse_sum), "–"],
        ["sparse-sampling bias", fmt(r.bias), _ci_text(r.bias_ci)],
        ["  relative", pct(r.relative_bias), _ci_text(r.relative_bias_ci, "pct")],
        ["samples used (outside the series)", f"{r.n_samples} ({r.n_samples_outside})", "–"],
    ]
    if r.other_sparse_sum is not None:
        rows += [
            [f"{esc(s.sparse_label)}'s own sparse estimate", fmt(r.other_sparse_sum), "–"],
            [
                "method bias (relative)",
                pct(r.method_relative_bias),
                _ci_text(r.method_relative_bias_ci, "pct"),
            ],
            ["total bias (relative)", pct(r.total_relative_bias), "–"],
        ]
    return (
        "<h2>Sparse sampling</h2>"
        f"<p>{esc(s.note)}: {esc(s.sparse_label)}'s schedule applied to "
        f"{esc(s.continuous_label)} (sums in {esc(r.unit)}, {esc(r.start_utc)} to "
        f"{esc(r.end_utc)}).</p>" + table(["", "estimate", "CI"], rows, numeric=[False, True, True])
    )


# --- pairing, baselines, processing, breakdowns ------------------------------------------------


def _pairing_section(c: Any) -> str:
    d = c.pairing.diagnostics
    rows = []
    for name in ("a", "b"):
        u = getattr(d, f"unpaired_{name}")
        rows.append(
            [
                name,
                str(getattr(d, f"candidates_{name}")),
                str(d.pairs),
                str(u.total),
                str(u.non_finite),
                str(u.outside_period),
                str(u.no_partner),
                str(u.partner_used),
                str(u.block_incomplete),
            ]
        )
    out = [
        "<h2>Pairing</h2>",
        "<p>" + "<br>".join(esc(line.strip()) for line in d.lines()) + "</p>",
        table(
            [
                "side",
                "candidates",
                "pairs",
                "unpaired",
                "not finite",
                "outside the period",
                "no partner",
                "partner used",
                "block incomplete",
            ],
            rows,
            numeric=[False] + [True] * 8,
        ),
    ]
    pairs = c.pairing.pairs
    if "dt_s" in pairs and len(pairs) and not d.block:
        dt_s = pd.to_numeric(pairs["dt_s"], errors="coerce").to_numpy(dtype=float)
        dt_s = dt_s[_plottable(dt_s)]
        if len(dt_s):
            figure = new_figure(5.2, 2.8)
            axis = figure.subplots()
            axis.hist(dt_s / 60.0, bins=40, color="0.45")
            _style(axis, "time of b − time of a [min]", "pairs")
            figure.subplots_adjust(left=0.14, right=0.97, top=0.95, bottom=0.18)
            out.append(
                _figure(
                    figure_png(figure),
                    "histogram of the time differences of the pairs",
                    f"Median |dt| {fmt(d.median_abs_dt_s, 3)} s, max {fmt(d.max_abs_dt_s, 3)} s.",
                )
            )
    return "".join(out)


def _baseline_section(c: Any, unit: str) -> str:
    out = ["<h2>Within-system baseline</h2>"]
    if not c.baselines:
        out.append("<p>Not computed.</p>")
    for baseline in c.baselines:
        out.append(
            f"<h3>{esc(baseline.label)}</h3><p class='muted'>{esc(baseline.note)}; processing "
            f"{esc(baseline.processing or 'own')}; {esc(baseline.start_utc)} to "
            f"{esc(baseline.end_utc)}</p>"
        )
        if baseline.floor:
            rows = [
                [esc(name), fmt(v.get("median")), fmt(v.get("min")), fmt(v.get("max"))]
                for name, v in baseline.floor.items()
            ]
            out.append(
                table(
                    ["statistic", "median", "min", "max"],
                    rows,
                    numeric=[False, True, True, True],
                    caption=f"over the collar pairs; bias, RMSD, MAE in {esc(unit)}",
                )
            )
        if len(baseline.pairs):
            out.append(_frame_table(baseline.pairs, list(baseline.pairs.columns)))
    return "".join(out)


def _processing_section(c: Any, unit: str) -> str:
    p = c.processing
    out = ["<h2>Processing part of the disagreement</h2>", f"<p>{esc(p.reason)}</p>"]
    if p.status != "compared":
        return "".join(out)
    rows = []
    for label, agreement in (
        (f"own ({p.own_versions[0]} / {p.own_versions[1]})", p.own),
        (f"common ({p.common_version})", p.common),
    ):
        d = _flat(agreement)
        rows.append(
            [
                esc(label),
                fmt(d.get("n_pairs")),
                f"{fmt(d.get('bias'))} {_ci_text(d.get('bias_ci'))}",
                f"{pct(d.get('relative_bias'))} {_ci_text(d.get('relative_bias_ci'), 'pct')}",
                fmt(d.get("rmsd")),
                fmt(d.get("ccc")),
                fmt(d.get("deming_slope")),
            ]
        )
    out.append(
        table(
            [
                "processing",
                "pairs",
                "bias (CI)",
                "relative bias (CI)",
                "RMSD",
                "CCC",
                "Deming slope",
            ],
            rows,
            numeric=[False] + [True] * 6,
            caption=f"bias and RMSD in {esc(unit)}; central versions both sides have: "
            f"{esc(', '.join(p.candidates) or 'none')}",
        )
    )
    return "".join(out)


def _breakdowns_section(c: Any, unit: str) -> str:
    out = ["<h2>Breakdowns</h2>"]
    if not c.breakdowns:
        out.append("<p>None asked for (<code>--by month|hour|flux|temperature</code>).</p>")
    for name, frame in c.breakdowns.items():
        out.append(f"<h3>by {esc(name)}</h3>")
        out.append(_frame_table(frame, list(frame.columns)))
    out.append(f"<p class='muted'>bias, RMSD in {esc(unit)}; relative bias as a fraction</p>")
    return "".join(out)


# --- provenance ---------------------------------------------------------------------------------


def _provenance_section(c: Any) -> str:
    from chamberd.network_sync.central import redact

    p, s = c.provenance, c.settings
    entries = [
        ("chamberd", p.software_version),
        ("database", redact(p.database)),
        ("backend", p.backend),
        ("gas", s.gas),
        ("period (UTC)", f"{s.start_utc or '–'} to {s.end_utc or '–'}"),
        ("a", c.a.describe()),
        ("b", c.b.describe()),
        (
            "processing asked for",
            f"a: {s.a_processing or 'own'}, b: {s.b_processing or 'own'}, "
            f"common: {s.common_processing or 'the central refit both have most'}",
        ),
        ("processing used, a", _versions(p.processing_a)),
        ("processing used, b", _versions(p.processing_b)),
        (
            "pairing",
            f"{s.method}, tolerance {fmt(s.tolerance_s)} s, block {s.block or 'none'}, "
            f"completeness {fmt(s.completeness)}",
        ),
        ("breakdowns", ", ".join(s.by) or "none"),
        ("bootstrap", f"{s.n_boot} resamples by local standard day, seed {s.seed}"),
    ]
    for name, side in (("a", c.a), ("b", c.b)):
        entries.append(
            (
                f"series {name}",
                f"{side.label}: instrument {side.instrument or '–'}, method "
                f"{side.method or '–'}, time zone {side.time_zone}, {side.aggregation} "
                f"({', '.join(side.chambers)}), {side.n_observations} observations read",
            )
        )
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in entries)
    queries = "".join(
        f"<h3>query {name}</h3><pre>{esc(q)}</pre>"
        for name, q in (("a", p.query_a), ("b", p.query_b))
    )
    return f"<h2>Provenance</h2><dl class='prov'>{body}</dl>{queries}"


def _versions(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} ({n})" for v, n in counts.items()) or "none"


# --- helpers ------------------------------------------------------------------------------------


def _notes(c: Any, _topic: str) -> str:
    notes = []
    for side in (c.temporal_a, c.temporal_b):
        if side is not None:
            notes += [f"{side.label}: {n}" for n in side.notes]
    if not notes:
        return ""
    return "<ul class='muted'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"


def _frame_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    columns = [col for col in columns if col in frame.columns]
    rows = []
    numeric = []
    for col in columns:
        numeric.append(pd.api.types.is_numeric_dtype(frame[col]))
    for _, r in frame[columns].iterrows():
        rows.append([_cell(r[col]) for col in columns])
    return table([esc(col) for col in columns], rows, numeric=numeric)


def _cell(value: Any) -> str:
    if hasattr(value, "value") and hasattr(value, "ci"):  # an Estimate
        return f"{fmt(value.value)} {_ci_text(value.ci)}"
    if isinstance(value, pd.Timestamp):
        return esc(value.isoformat())
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return fmt(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return esc(value)
