"""Refit instrument files with chamberd's engine and compare with the instruments' results.

This is what ``chamberd fit`` runs: read each file, fit every observation and gas with
the instrument's own processing (its dead band, window and initial values) unless told
otherwise, and put the instrument's results beside ours. :func:`agreement` summarises how
well the two agree.

The fits go through the batch path, :func:`chamberd.fitting.fit_closures`, which gives for
every closure what :func:`chamberd.fitting.fit_closure` gives: :func:`refit_paths` collects
the closures of many files (up to ``chunk_closures`` at a time, so memory stays bounded on
a year of files), fits them together and builds the rows in file order.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from threadpoolctl import threadpool_limits

from chamberd.controller.errors import DataFileError
from chamberd.fitting import Closure, ClosureFit, FitSettings, fit_closures

from .formats import ChamberObservation, GasChannel, ReadResult, read_file

__all__ = [
    "ANALYSER_PRECISION_MF",
    "BLAS_THREADS",
    "CHUNK_CLOSURES",
    "COLUMNS",
    "TRACE_GAS_CURVATURE_ALPHA",
    "Agreement",
    "Observer",
    "RefitReport",
    "agreement",
    "observation_closures",
    "refit_observation",
    "refit_paths",
]

#: Analyser precision (1 sigma at 1 Hz) assumed for the minimal detectable flux, by gas
#: [umol mol-1 for CO2, nmol mol-1 for CH4 and N2O]. Conservative spec-sheet values for the
#: LI-COR analysers these files come from (LI-840A/LI-870 class for CO2, LI-7810 CH4,
#: LI-7820 N2O). They only feed flags (below_mdf, kappa_above_max), never a flux.
ANALYSER_PRECISION_MF = {"co2": 1.0, "ch4": 0.6, "n2o": 0.4}

#: Level of the curvature-significance test that ``licor`` (and ``kappa_max``) selection
#: applies to these gases: the LI-8200 Smart Chamber firmware reports the linear flux for
#: CH4 unless the exponential's curvature is significant (nested F-test, see
#: docs/fitting.md "CH4 and N2O: the curvature must be significant"). CO2 is left out: the
#: LI-8100A firmware applies no such test (it would cut model agreement on its files from
#: 161 to 138 of 178 observations).
TRACE_GAS_CURVATURE_ALPHA = {"ch4": 0.05, "n2o": 0.05}

#: Closures fitted together by :func:`refit_paths` (about 40 MB of working arrays for
#: 1 Hz closures of a few minutes).
CHUNK_CLOSURES = 4096

#: BLAS threads while fitting files. The batch engine's matrix products are small
#: (closures x samples times samples x 48); on the 2-core machine measured, numpy's default
#: of a thread per core made the batch fits 2.3 times slower on a quiet machine and 2.6
#: times slower with both cores busy (see docs/fitting.md, "Threads").
BLAS_THREADS = 1

#: Columns of ``chamberd fit`` output, in order.
COLUMNS = (
    "source_file",
    "observation",
    "port",
    "label",
    "start_time",
    "time_zone",
    "gas",
    "flux_unit",
    "n_points",
    "dead_band_s",
    "end_s",
    "lin_flux",
    "lin_flux_se",
    "lin_r2",
    "exp_flux",
    "exp_flux_se",
    "exp_r2",
    "exp_a_per_s",
    "exp_t0_s",
    "flux",
    "flux_se",
    "model",
    "model_reason",
    "flags",
    "mdf",
    "g_factor",
    "c0",
    "pressure_kpa",
    "temperature_degc",
    "h2o_mmol_mol",
    "ref_lin_flux",
    "ref_lin_r2",
    "ref_exp_flux",
    "ref_exp_r2",
    "ref_flux",
    "ref_model",
    "ref_exp_converged",
    "ref_n_points",
    "dead_band_reason",
)


def refit_observation(
    obs: ChamberObservation,
    *,
    dead_band: str | float = "instrument",
    settings: FitSettings | None = None,
) -> list[dict[str, Any]]:
    """Fit every gas of one observation; one output row per gas.

    Parameters
    ----------
    obs : ChamberObservation
    dead_band : "instrument", "auto" or seconds
        ``"instrument"`` uses the file's dead band, falling back to ``"auto"`` (flagged)
        where the file does not carry one.
    settings : FitSettings, optional
        Processing choices; default :class:`FitSettings()` (LI-COR firmware behaviour).

    Raises
    ------
    DataFileError
        When the trace cannot be fitted (non-physical header values, no samples in the
        first seconds), naming file and observation.
    """
    closures = observation_closures(obs, dead_band=dead_band, settings=settings)
    rows, error = _rows(obs, fit_closures([c for c, _ in closures]), [n for _, n in closures])
    if error is not None:
        raise error
    return rows


def observation_closures(
    obs: ChamberObservation,
    *,
    dead_band: str | float = "instrument",
    settings: FitSettings | None = None,
) -> list[tuple[Closure, str]]:
    """The closures of every gas of ``obs`` as ``chamberd fit`` fits them, each with a note
    on its dead band ("" or why it was chosen automatically)."""
    chosen = settings if settings is not None else _DEFAULT_SETTINGS
    return [
        _closure(obs, gas, dead_band, _initial_rule(chosen, gas.initial_end_exclusive, gas.gas))
        for gas in obs.gases
    ]


_DEFAULT_SETTINGS = FitSettings()


@functools.lru_cache(maxsize=64)
def _initial_rule(settings: FitSettings, end_exclusive: bool, gas: str = "co2") -> FitSettings:
    """``settings`` with the instrument's rule for the initial-value window and, for CH4
    and N2O under ``licor`` or ``kappa_max`` selection, the curvature-significance test
    (one object per rule, so that the closures of a run share their settings)."""
    alpha = settings.curvature_alpha
    if alpha is None and settings.selection in ("licor", "kappa_max"):
        alpha = TRACE_GAS_CURVATURE_ALPHA.get(gas)
    return replace(settings, initial_window_end_exclusive=end_exclusive, curvature_alpha=alpha)


def _closure(
    obs: ChamberObservation, gas: GasChannel, dead_band: str | float, settings: FitSettings
) -> tuple[Closure, str]:
    note = ""
    if dead_band == "instrument":
        if gas.dead_band_s is None:
            chosen: str | float = "auto"
            note = "the file states no dead band: chosen automatically"
        else:
            chosen = gas.dead_band_s
    else:
        chosen = dead_band
    cols = obs.columns
    initial = obs.initial
    closure = Closure(
        obs.elapsed_s,
        cols[gas.column],
        h2o_mmol_mol=cols["h2o_mmol_mol"] if initial.h2o_mmol_mol is None else initial.h2o_mmol_mol,
        pressure_kpa=cols["pressure_kpa"] if initial.pressure_kpa is None else initial.pressure_kpa,
        temperature_degc=cols["temperature_degc"]
        if initial.temperature_degc is None
        else initial.temperature_degc,
        volume_cm3=obs.volume_cm3,
        area_cm2=obs.area_cm2,
        dead_band_s=chosen,
        end_s=gas.end_s,
        precision_mf=ANALYSER_PRECISION_MF.get(gas.gas, 1.0),
        dry=gas.dry,
        start_exclusive=gas.window_start_exclusive,
        settings=settings,
    )
    return closure, note


def _rows(
    obs: ChamberObservation, fits: list[ClosureFit | ValueError], notes: list[str]
) -> tuple[list[dict[str, Any]], DataFileError | None]:
    """Rows of one observation's gases, or the error refusing it (its first failed gas)."""
    rows = []
    for gas, fit, note in zip(obs.gases, fits, notes, strict=True):
        if isinstance(fit, ValueError):
            error = DataFileError(
                f"{gas.gas}: cannot fit: {fit}", path=obs.source_file, observation=obs.index
            )
            error.__cause__ = fit
            return [], error
        rows.append(_row(obs, gas, fit, note))
    return rows, None


def _row(obs: ChamberObservation, gas: GasChannel, fit: ClosureFit, note: str) -> dict[str, Any]:
    ref = obs.reference.get(gas.gas)
    reason = fit.dead_band_choice.reason if fit.dead_band_choice else ""
    if note:
        reason = f"{note}; {reason}" if reason else note
    return {
        "source_file": os.path.basename(obs.source_file),
        "observation": obs.index,
        "port": obs.port,
        "label": obs.label,
        # the chamber closed (elapsed 0): the start of the measurement, instrument clock
        "start_time": (obs.closed_time or obs.start_time).isoformat()
        if (obs.closed_time or obs.start_time)
        else None,
        "time_zone": obs.time_zone,
        "gas": gas.gas,
        "flux_unit": gas.flux_unit,
        "n_points": fit.n_points,
        "dead_band_s": fit.dead_band_s,
        "end_s": fit.end_s,
        "lin_flux": fit.lin_flux,
        "lin_flux_se": fit.lin_flux_se,
        "lin_r2": fit.linear.r_squared,
        "exp_flux": fit.exp_flux,
        "exp_flux_se": fit.exp_flux_se,
        "exp_r2": fit.exponential.r_squared,
        "exp_a_per_s": fit.exponential.a_per_s,
        "exp_t0_s": fit.exponential.t0_s,
        "flux": fit.flux,
        "flux_se": fit.flux_se,
        "model": fit.model,
        "model_reason": fit.model_reason,
        "flags": ";".join(fit.flags),
        "mdf": fit.mdf,
        "g_factor": fit.g_factor,
        "c0": fit.c0_mf,
        "pressure_kpa": fit.pressure_kpa,
        "temperature_degc": fit.temperature_degc,
        "h2o_mmol_mol": fit.h2o_mmol_mol,
        "ref_lin_flux": ref.lin_flux if ref else None,
        "ref_lin_r2": ref.lin_r2 if ref else None,
        "ref_exp_flux": ref.exp_flux if ref else None,
        "ref_exp_r2": ref.exp_r2 if ref else None,
        "ref_flux": ref.flux if ref else None,
        "ref_model": ref.model if ref else None,
        "ref_exp_converged": ref.exp_converged if ref else None,
        "ref_n_points": ref.n_points if ref else None,
        "dead_band_reason": reason,
    }


@dataclass
class RefitReport:
    """Rows fitted, and what was refused with reasons."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    refused: list[DataFileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    observations: int = 0


def _iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    for path in paths:
        text = os.fspath(path)
        if os.path.isdir(text):
            for name in sorted(os.listdir(text)):
                full = os.path.join(text, name)
                if os.path.isfile(full) and not name.endswith("_dense_summary.csv"):
                    yield full
        elif text.endswith("_dense_summary.csv"):
            continue  # read by the .82z reader beside it
        else:
            yield text


#: ``observe(obs, closure, fit, row)``: called for every row of :func:`refit_paths`.
Observer = Callable[[ChamberObservation, Closure, ClosureFit, dict[str, Any]], None]


def refit_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    fmt: str = "auto",
    dead_band: str | float = "instrument",
    settings: FitSettings | None = None,
    progress: Callable[[RefitReport, str], None] | None = None,
    chunk_closures: int = CHUNK_CLOSURES,
    observe: Observer | None = None,
    sheet: str | os.PathLike[str] | None = None,
    search_s: float | None = None,
) -> RefitReport:
    """Refit every observation of every file; a bad file or observation is refused whole.

    Files are read one by one; their closures are fitted together in batches of about
    ``chunk_closures`` (:func:`chamberd.fitting.fit_closures`), and the report is built in
    file order, as if each file were fitted when read. ``progress`` is called after each
    file with the report so far and the file name; ``observe`` with each row as it is
    added, its observation, closure and fit (what ``chamberd fit --report`` draws).
    Analyser streams (LI-7810/7820, LGR, Picarro) are cut into closures by the field sheet
    ``sheet``, searching ``search_s`` around each stated start for the closure step
    (None: the default of :func:`~chamberd.network_sync.formats.read_file`).
    """
    options: dict[str, Any] = {}
    if sheet is not None:
        options["sheet"] = sheet
    if search_s is not None:
        options["search_s"] = search_s
    report = RefitReport()
    pending: list[tuple[str, ReadResult | DataFileError]] = []
    waiting = 0
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        for path in _iter_files(paths):
            try:
                result: ReadResult | DataFileError = read_file(path, fmt, **options)
            except DataFileError as exc:
                result = exc
            pending.append((path, result))
            if isinstance(result, ReadResult):
                waiting += sum(len(obs.gases) for obs in result.observations)
            if waiting >= chunk_closures:
                _report(pending, report, dead_band, settings, progress, observe)
                pending, waiting = [], 0
        _report(pending, report, dead_band, settings, progress, observe)
    return report


def _report(
    pending: list[tuple[str, ReadResult | DataFileError]],
    report: RefitReport,
    dead_band: str | float,
    settings: FitSettings | None,
    progress: Callable[[RefitReport, str], None] | None,
    observe: Observer | None = None,
) -> None:
    """Fit the closures of the files read so far, then add them to the report in order."""
    closures: list[tuple[Closure, str]] = []
    for _path, result in pending:
        if isinstance(result, ReadResult):
            for obs in result.observations:
                closures.extend(observation_closures(obs, dead_band=dead_band, settings=settings))
    fits = iter(fit_closures([c for c, _ in closures]))
    notes = iter([n for _, n in closures])
    traces = iter([c for c, _ in closures])
    for path, result in pending:
        report.files += 1
        if isinstance(result, DataFileError):
            report.refused.append(result)
            continue
        report.refused.extend(e for e in result.rejected if isinstance(e, DataFileError))
        report.warnings.extend(f"{path}: {w}" for w in result.warnings)
        for obs in result.observations:
            report.observations += 1
            report.warnings.extend(f"{obs.name}: {w}" for w in obs.warnings)
            gases = len(obs.gases)
            obs_fits = [next(fits) for _ in range(gases)]
            obs_closures = [next(traces) for _ in range(gases)]
            rows, error = _rows(obs, obs_fits, [next(notes) for _ in range(gases)])
            if error is None:
                report.rows.extend(rows)
                if observe is not None:
                    for row, closure, fit in zip(rows, obs_closures, obs_fits, strict=True):
                        observe(obs, closure, fit, row)  # type: ignore[arg-type]
            else:
                report.refused.append(error)
        if progress is not None:
            progress(report, path)


def _rel(ours: Any, ref: Any) -> float:
    if ours is None or ref is None or not math.isfinite(ours) or ref == 0:
        return math.nan
    return (ours - ref) / abs(ref)


@dataclass(frozen=True)
class Agreement:
    """How a refit agrees with the instruments' own results.

    Relative differences are (ours - instrument) / |instrument|; medians are of absolute
    values. ``*_better_r2`` counts, among the observations differing by more than 2 %, those
    where our fit has an R2 at least as high as the instrument's (printed to 4 decimals).
    """

    lin_n: int
    lin_median: float
    lin_within_2pct: float
    lin_outside: int
    lin_outside_better_r2: int
    exp_n: int
    exp_median: float
    exp_within_2pct: float
    exp_outside: int
    exp_outside_better_r2: int
    model_n: int
    model_same: int

    def lines(self) -> list[str]:
        def pct(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{100 * x:.2f} %"

        return [
            f"linear flux vs instrument: {self.lin_n} observations, median |diff| "
            f"{pct(self.lin_median)}, {pct(self.lin_within_2pct)} within 2 %; "
            f"{self.lin_outside_better_r2} of {self.lin_outside} beyond 2 % have our R2 >= the "
            "instrument's",
            f"exponential flux (instrument converged): {self.exp_n} observations, median "
            f"|diff| {pct(self.exp_median)}, {pct(self.exp_within_2pct)} within 2 %; "
            f"{self.exp_outside_better_r2} of {self.exp_outside} beyond 2 % have our R2 >= the "
            "instrument's",
            f"model choice same as the instrument: {self.model_same} of {self.model_n}",
        ]


def agreement(rows: Iterable[dict[str, Any]], *, min_ref: float = 0.05) -> Agreement:
    """Summarise agreement of refit rows with the instruments' results.

    Linear: rows with an instrument linear flux of magnitude >= ``min_ref``. Exponential:
    rows where the instrument reported its exponential and it converged (iterations below
    its cap).
    """
    lin: list[tuple[float, bool]] = []
    exp: list[tuple[float, bool]] = []
    model_n = model_same = 0
    for row in rows:
        ref_lin = row.get("ref_lin_flux")
        if ref_lin is not None and abs(ref_lin) >= min_ref:
            d = _rel(row["lin_flux"], ref_lin)
            if math.isfinite(d):
                better = _r2_at_least(row["lin_r2"], row.get("ref_lin_r2"))
                lin.append((abs(d), better))
        if row.get("ref_model") == "exponential" and row.get("ref_exp_converged"):
            d = _rel(row["exp_flux"], row.get("ref_exp_flux"))
            if math.isfinite(d):
                exp.append((abs(d), _r2_at_least(row["exp_r2"], row.get("ref_exp_r2"))))
        if row.get("ref_model"):
            model_n += 1
            model_same += row["ref_model"] == row["model"]

    def stats(items: list[tuple[float, bool]]) -> tuple[int, float, float, int, int]:
        if not items:
            return 0, math.nan, math.nan, 0, 0
        diffs = [d for d, _ in items]
        outside = [(d, b) for d, b in items if d > 0.02]
        return (
            len(items),
            statistics.median(diffs),
            sum(d <= 0.02 for d in diffs) / len(diffs),
            len(outside),
            sum(b for _, b in outside),
        )

    ln, lmed, lwithin, lout, lbetter = stats(lin)
    en, emed, ewithin, eout, ebetter = stats(exp)
    return Agreement(
        ln, lmed, lwithin, lout, lbetter, en, emed, ewithin, eout, ebetter, model_n, model_same
    )


def _r2_at_least(ours: Any, ref: Any) -> bool:
    if ref is None or ours is None or not math.isfinite(ours):
        return False
    return ours >= ref - 5e-5  # the instrument prints R2 to 4 decimals
