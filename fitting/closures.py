"""Many closures at once: the batch form of :func:`~chamberd.fitting.fit_closure`.

:func:`fit_closures` takes closures as :class:`Closure` records (the arguments of
``fit_closure``) and returns, for each, what ``fit_closure`` returns for it: the same
initial values, window, fits, fluxes, flags and model choice (to 1e-6 relative; the
equivalence tests compare every field), or the ``ValueError`` it raises. It is the one path
from closures to the batch engine (:mod:`chamberd.fitting.batch`), used by ``chamberd fit``
for instrument files and by the central ``chamberd refit`` for stored traces.

How the work is split:

- Closures are grouped by their processing settings and by time axis: closures sharing
  one (1 Hz loggers) form a group and take the engine's shared-axis fast paths; the others
  are grouped by trace length (lengths within a quarter of each other, shorter traces
  padded with missing samples).
  Within a group, water correction, initial values (intercepts over the first seconds),
  window masks and the linear, quadratic and exponential fits are computed for all
  closures at once.
- What cannot be batched cheaply is done per closure with the single path's own code:
  the automatic dead-band scan (:func:`~chamberd.fitting.choose_dead_band`, with
  ``dead_band_s="auto"``), and everything after the fits (fluxes, detection limit, model
  selection and flags: :func:`chamberd.fitting.closure.assemble`, shared with
  ``fit_closure``).
- A closure whose inputs the batch preparation does not take (arrays of other lengths,
  an unknown dead-band word) or that fails a check (no sample in the first seconds,
  non-physical geometry) is handed to ``fit_closure`` itself, so its error is exactly the
  single path's.

One difference: ``ExponentialFit.iterations`` counts the batch engine's evaluations, not
those of the single path's root finder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .batch import (
    AT_BOUND_CODES,
    BatchExponential,
    BatchLinear,
    BatchQuadratic,
    fit_exponential_batch,
    fit_linear_batch,
    fit_quadratic_batch,
)
from .closure import ClosureFit, FitSettings, assemble, fit_closure
from .exponential import ExponentialFit, failed, status
from .flux import dry_air_mol_m2
from .linear import LinearFit, QuadraticFit, _clean
from .window import DeadBandChoice, choose_dead_band

__all__ = ["Closure", "fit_closures"]

# a group holds traces whose lengths are within this factor (padded to the longest)
_LENGTH_RATIO = 1.25
# closures sharing one time axis form a group of their own from this many on (the engine's
# shared-axis paths: matrix products and power series instead of passes over the samples)
_SHARED_MIN = 32
_DEFAULT_SETTINGS = FitSettings()


@dataclass(frozen=True, eq=False)
class Closure:
    """One closure of one gas: the arguments of :func:`~chamberd.fitting.fit_closure`.

    Attributes have the meaning and units of ``fit_closure``'s parameters, so
    ``fit_closure(**vars(closure))`` is the single path for the same closure.
    """

    elapsed_s: ArrayLike
    mole_fraction: ArrayLike
    h2o_mmol_mol: float | ArrayLike
    pressure_kpa: float | ArrayLike
    temperature_degc: float | ArrayLike
    volume_cm3: float
    area_cm2: float
    dead_band_s: float | str
    end_s: float
    precision_mf: float
    dry: bool = False
    start_exclusive: bool = False
    settings: FitSettings = _DEFAULT_SETTINGS


@dataclass(slots=True)
class _Prepared:
    """A closure's arrays, as the batch preparation takes them."""

    index: int
    t: np.ndarray
    c: np.ndarray
    h2o: np.ndarray  # a trace, or 0-d
    pressure: np.ndarray
    temperature: np.ndarray
    auto: bool


_F64 = np.dtype(np.float64)
_NUMBER = (int, float, np.floating, np.integer)


def _array(value: ArrayLike) -> np.ndarray:
    if type(value) is np.ndarray and value.dtype is _F64:
        return value
    return np.asarray(value, dtype=float)


def _prepare(index: int, closure: Closure) -> _Prepared | None:
    """The closure's arrays, or None where it is left to the single path (which then
    decides, and raises its own error where it refuses the closure)."""
    t = _array(closure.elapsed_s)
    c = _array(closure.mole_fraction)
    if t.ndim != 1:
        t = t.ravel()
    if c.ndim != 1:
        c = c.ravel()
    if t.shape != c.shape or t.size == 0:
        return None
    band = closure.dead_band_s
    auto = isinstance(band, str)
    if (auto and band != "auto") or not (auto or isinstance(band, _NUMBER)):
        return None
    h2o = _array(closure.h2o_mmol_mol)
    pressure = _array(closure.pressure_kpa)
    temperature = _array(closure.temperature_degc)
    for arr in (h2o, pressure, temperature):
        if arr.ndim and arr.shape != t.shape:
            return None
    return _Prepared(index, t, c, h2o, pressure, temperature, auto)


def _groups(prepared: list[_Prepared], closures: Sequence[Closure]) -> list[list[_Prepared]]:
    """Closures with the same settings and one time axis (where at least ``_SHARED_MIN``
    share it), or similar lengths."""
    by_settings: dict[FitSettings, list[_Prepared]] = {}
    for item in prepared:
        by_settings.setdefault(closures[item.index].settings, []).append(item)
    groups = []
    for items in by_settings.values():
        by_axis: dict[bytes, list[_Prepared]] = {}
        for item in items:
            by_axis.setdefault(item.t.tobytes(), []).append(item)
        rest = []
        for same in by_axis.values():
            if len(same) >= _SHARED_MIN and np.isfinite(same[0].t).all():
                groups.append(same)
            else:
                rest.extend(same)
        rest.sort(key=lambda p: p.t.size)
        current: list[_Prepared] = []
        for item in rest:
            if current and item.t.size > max(
                current[0].t.size * _LENGTH_RATIO, current[0].t.size + 8
            ):
                groups.append(current)
                current = []
            current.append(item)
        if current:
            groups.append(current)
    return groups


def _stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : row.size] = row
    return out


def _intercepts(
    t: np.ndarray, v: np.ndarray, window_s: float, end_exclusive: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``intercept_at_start`` of every row: (values, whether defined)."""
    inside = np.isfinite(t) & np.isfinite(v) & (t >= 0.0)
    inside &= (t < window_s) if end_exclusive else (t <= window_s)
    w = inside.astype(float)
    n = w.sum(axis=1)
    tv = np.where(inside, t, 0.0)
    vv = np.where(inside, v, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_mean = tv.sum(axis=1) / n
        v_mean = vv.sum(axis=1) / n
        dt = (tv - t_mean[:, None]) * w
        dv = (vv - v_mean[:, None]) * w
        stt = np.einsum("ij,ij->i", dt, dt)
        slope = np.einsum("ij,ij->i", dt, dv) / stt
        span = np.where(inside, t, -np.inf).max(axis=1) - np.where(inside, t, np.inf).min(axis=1)
        line = (n >= 2) & (span > 0)
        value = np.where(line, v_mean - slope * t_mean, v_mean)
    ok = (n > 0) & np.isfinite(value)
    return value, ok


def _initial(
    items: list[_Prepared], name: str, t: np.ndarray, settings: FitSettings, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Initial value of a quantity per closure: its scalar, or the intercept of its trace."""
    values = [getattr(p, name) for p in items]
    scalar = np.array([v.ndim == 0 for v in values])
    out = np.array([float(v) if v.ndim == 0 else math.nan for v in values])
    ok = np.isfinite(out)
    if not scalar.all():
        rows = np.flatnonzero(~scalar)
        trace = _stack([values[i] for i in rows], width)
        value, good = _intercepts(
            t[rows], trace, settings.initial_window_s, settings.initial_window_end_exclusive
        )
        out[rows], ok[rows] = value, good
    return out, ok


def _window_stats(t: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Span of the window's times and range of its values, per row."""
    t_lo = np.where(mask, t, np.inf).min(axis=1)
    t_hi = np.where(mask, t, -np.inf).max(axis=1)
    y_lo = np.where(mask, y, np.inf).min(axis=1)
    y_hi = np.where(mask, y, -np.inf).max(axis=1)
    return t_hi - t_lo, y_hi - y_lo


def _nrmse(rmse: float, span: float) -> float:
    return rmse / span if span > 0 else math.inf


class _Lists:
    """The fields of a batch result as Python lists (indexing them is cheap)."""

    def __init__(self, batch: BatchLinear | BatchQuadratic | BatchExponential) -> None:
        for name, value in vars(batch).items():
            setattr(self, name, value.tolist())

    def __getattr__(self, name: str) -> list[Any]:  # for type checkers: every field a list
        raise AttributeError(name)


def _linear(fit: _Lists, i: int, y_span: float) -> LinearFit:
    n = fit.n_points[i]
    if not fit.converged[i]:
        nan = math.nan
        return LinearFit(
            nan, nan, nan, nan, nan, nan, nan, n, False, f"too few points for a line ({n})"
        )
    rmse = fit.rmse_mf[i]
    return LinearFit(
        slope_mf_s=fit.slope_mf_s[i],
        intercept_mf=fit.intercept_mf[i],
        slope_se_mf_s=fit.slope_se_mf_s[i],
        intercept_se_mf=fit.intercept_se_mf[i],
        r_squared=fit.r_squared[i],
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y_span),
        n_points=n,
        converged=True,
        message="" if n > 2 else "two points: no standard error",
    )


def _quadratic(fit: _Lists, i: int, y_span: float) -> QuadraticFit:
    n = fit.n_points[i]
    if not fit.converged[i]:
        nan = math.nan
        return QuadraticFit(
            nan, nan, nan, nan, 0.0, nan, nan, nan, n, False, f"too few points for a parabola ({n})"
        )
    rmse = fit.rmse_mf[i]
    return QuadraticFit(
        slope_mf_s=fit.slope_mf_s[i],
        slope_se_mf_s=fit.slope_se_mf_s[i],
        curvature_mf_s2=fit.curvature_mf_s2[i],
        value_at_t0_mf=fit.value_at_t0_mf[i],
        t0_s=0.0,
        r_squared=fit.r_squared[i],
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y_span),
        n_points=n,
        converged=True,
        message="",
    )


def _exponential(fit: _Lists, i: int, y_span: float, settings: FitSettings) -> ExponentialFit:
    fixed = settings.exp_form == "fixed_c0"
    form = "fixed_c0" if fixed else "free_c0"
    t0_s = 0.0 if fixed else settings.exp_t0_s
    n = fit.n_points[i]
    a = fit.a_per_s[i]
    if not math.isfinite(a):  # fewer than four samples or distinct times
        return failed(form, n, t0_s)
    at_bound = AT_BOUND_CODES[fit.at_bound[i]]
    t0 = fit.t0_s[i]
    converged, message = status(at_bound, has_t0=not fixed or not math.isnan(t0))
    rmse = fit.rmse_mf[i]
    return ExponentialFit(
        form=form,
        slope_mf_s=fit.slope_mf_s[i],
        slope_se_mf_s=fit.slope_se_mf_s[i],
        a_per_s=a,
        a_se_per_s=fit.a_se_per_s[i],
        cx_mf=fit.cx_mf[i],
        c0_mf=fit.c0_mf[i],
        t0_s=t0,
        r_squared=fit.r_squared[i],
        rmse_mf=rmse,
        nrmse=_nrmse(rmse, y_span),
        n_points=n,
        converged=converged,
        at_bound=at_bound,
        iterations=fit.iterations[i],
        message=message,
        ref_time_s=fit.ref_time_s[i],
        value_at_ref_mf=fit.value_at_ref_mf[i],
        slope_at_ref_mf_s=fit.slope_at_ref_mf_s[i],
    )


def _shared_axis(t: np.ndarray) -> np.ndarray:
    """The one time axis of all rows, (M,), when they share one; else the rows, (N, M)."""
    if t.shape[0] > 1 and np.isfinite(t).all() and bool((t == t[0]).all()):
        return t[0]
    return np.where(np.isfinite(t), t, 0.0)  # masked out anyway; the engine needs numbers


def _fit_group(
    items: list[_Prepared],
    closures: Sequence[Closure],
    results: list[ClosureFit | ValueError | None],
    fallback: list[int],
) -> None:
    settings = closures[items[0].index].settings
    width = max(p.t.size for p in items)
    t = _stack([p.t for p in items], width)
    c = _stack([p.c for p in items], width)
    dry = np.array([closures[p.index].dry for p in items])
    if not dry.all():
        h2o = _stack([np.broadcast_to(p.h2o, p.t.shape) for p in items], width)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(dry[:, None], c, c / (1.0 - h2o / 1000.0))  # wet_to_dry
    p0, ok_p = _initial(items, "pressure", t, settings, width)
    t0, ok_t = _initial(items, "temperature", t, settings, width)
    w0, ok_w = _initial(items, "h2o", t, settings, width)
    c0, ok_c = _intercepts(t, c, settings.initial_window_s, settings.initial_window_end_exclusive)
    ok = ok_p & ok_t & ok_w & ok_c
    air = np.full(len(items), math.nan)
    bands = np.zeros(len(items))
    ends = np.zeros(len(items))
    choices: list[DeadBandChoice | None] = [None] * len(items)
    for k, item in enumerate(items):
        closure = closures[item.index]
        if not ok[k]:
            fallback.append(item.index)  # the single path raises its own error
            continue
        try:
            air[k] = dry_air_mol_m2(
                volume_cm3=closure.volume_cm3,
                area_cm2=closure.area_cm2,
                pressure_kpa=float(p0[k]),
                temperature_degc=float(t0[k]),
                h2o_mmol_mol=float(w0[k]),
            )
        except ValueError:
            ok[k] = False
            fallback.append(item.index)
            continue
        if item.auto:
            tt, cc = _clean(item.t, c[k, : item.t.size])
            try:
                choice = choose_dead_band(tt, cc, c0_mf=float(c0[k]), end_s=closure.end_s)
            except ValueError as exc:  # where fit_closure raises it, with the same message
                ok[k] = False
                results[item.index] = exc
                continue
            choices[k] = choice
            bands[k], ends[k] = choice.dead_band_s, choice.end_s
        else:
            bands[k], ends[k] = float(closure.dead_band_s), float(closure.end_s)
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return
    t, c = t[rows], c[rows]
    excl = np.array([closures[items[k].index].start_exclusive for k in rows])
    band, end = bands[rows, None], ends[rows, None]
    with np.errstate(invalid="ignore"):
        mask = np.where(excl[:, None], t > band, t >= band) & (t <= end)
    mask &= np.isfinite(t) & np.isfinite(c)
    axis = _shared_axis(t)
    lin = fit_linear_batch(axis, c, mask)
    quad = fit_quadratic_batch(axis, c, mask, t0_s=0.0)
    if settings.exp_form == "fixed_c0":
        exp = fit_exponential_batch(
            axis, c, mask, c0_mf=c0[rows], a_bounds_per_s=settings.a_bounds_per_s
        )
    else:
        exp = fit_exponential_batch(
            axis, c, mask, t0_s=settings.exp_t0_s, a_bounds_per_s=settings.a_bounds_per_s
        )
    with np.errstate(invalid="ignore"):
        t_span, y_span = _window_stats(t, c, mask)
    lin_l, quad_l, exp_l = _Lists(lin), _Lists(quad), _Lists(exp)
    n_window = mask.sum(axis=1).tolist()
    t_spans, y_spans = t_span.tolist(), y_span.tolist()
    p0_l, t0_l, w0_l, c0_l = p0.tolist(), t0.tolist(), w0.tolist(), c0.tolist()
    air_l, bands_l, ends_l = air.tolist(), bands.tolist(), ends.tolist()
    for j, k in enumerate(rows.tolist()):
        item = items[k]
        n = n_window[j]
        span = y_spans[j]
        results[item.index] = assemble(
            _linear(lin_l, j, span),
            _exponential(exp_l, j, span, settings),
            _quadratic(quad_l, j, span),
            dead_band_s=bands_l[k],
            end_s=ends_l[k],
            n_points=n,
            closure_s=t_spans[j] if n > 1 else math.nan,
            initial=(p0_l[k], t0_l[k], w0_l[k], c0_l[k]),
            dry_air=air_l[k],
            precision_mf=closures[item.index].precision_mf,
            settings=settings,
            flags=["dead_band_auto"] if item.auto else [],
            choice=choices[k],
        )


# absurd magnitudes (a logger's 1e308) end in a refusal or a flag, never in floating-point
# warnings on the user's terminal
@np.errstate(all="ignore")
def fit_closures(closures: Sequence[Closure]) -> list[ClosureFit | ValueError]:
    """Fit many closures; for each, what :func:`~chamberd.fitting.fit_closure` gives.

    Parameters
    ----------
    closures : sequence of Closure
        The closures, each with the inputs and settings of one ``fit_closure`` call. The
        caller bounds memory by the number of closures per call (working arrays are a few
        times closures x samples x 8 bytes).

    Returns
    -------
    list of ClosureFit or ValueError
        In the order of ``closures``: the fit, or the ``ValueError`` that ``fit_closure``
        raises for that closure (returned, not raised, so one bad closure costs only
        itself).

    Examples
    --------
    >>> t = np.arange(0.0, 121.0)
    >>> trace = 500 - 100 * np.exp(-0.01 * t)
    >>> args = dict(h2o_mmol_mol=10.0, pressure_kpa=100.0, temperature_degc=20.0,
    ...             volume_cm3=5000.0, area_cm2=300.0, dead_band_s=10.0, end_s=120.0,
    ...             precision_mf=1.0, dry=True)
    >>> fits = fit_closures([Closure(t, trace, **args), Closure(t, trace[:5], **args)])
    >>> round(fits[0].exponential.a_per_s, 6), fits[0].model
    (0.01, 'exponential')
    >>> fits[1]
    ValueError('mole_fraction has 5 samples, elapsed_s has 121')
    """
    results: list[ClosureFit | ValueError | None] = [None] * len(closures)
    fallback: list[int] = []
    prepared = []
    for i, closure in enumerate(closures):
        item = _prepare(i, closure)
        if item is None:
            fallback.append(i)
        else:
            prepared.append(item)
    for group in _groups(prepared, closures):
        _fit_group(group, closures, results, fallback)
    for i in fallback:
        try:
            results[i] = fit_closure(**vars(closures[i]))
        except ValueError as exc:
            results[i] = exc
    out: list[ClosureFit | ValueError] = []
    for result in results:
        assert result is not None
        out.append(result)
    return out
