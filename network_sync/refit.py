"""Refit instrument files with chamberd's engine and compare with the instruments' results.

This is what ``chamberd fit`` runs: read each file, fit every observation and gas with
:func:`chamberd.fitting.fit_closure` using the instrument's own processing (its dead band,
window and initial values) unless told otherwise, and put the instrument's results beside
ours. :func:`agreement` summarises how well the two agree.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from chamberd.controller.errors import DataFileError
from chamberd.fitting import FitSettings, fit_closure

from .formats import ChamberObservation, GasChannel, read_file

__all__ = [
    "ANALYSER_PRECISION_MF",
    "COLUMNS",
    "Agreement",
    "RefitReport",
    "agreement",
    "refit_observation",
    "refit_paths",
]

#: Analyser precision (1 sigma at 1 Hz) assumed for the minimal detectable flux, by gas
#: [umol mol-1 for CO2, nmol mol-1 for CH4 and N2O]. Conservative spec-sheet values for the
#: LI-COR analysers these files come from (LI-840A/LI-870 class for CO2, LI-7810 CH4,
#: LI-7820 N2O). They only feed flags (below_mdf, kappa_above_max), never a flux.
ANALYSER_PRECISION_MF = {"co2": 1.0, "ch4": 0.6, "n2o": 0.4}

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
    chosen = settings if settings is not None else FitSettings()
    return [
        _refit_gas(
            obs,
            gas,
            dead_band,
            replace(chosen, initial_window_end_exclusive=gas.initial_end_exclusive),
        )
        for gas in obs.gases
    ]


def _refit_gas(
    obs: ChamberObservation, gas: GasChannel, dead_band: str | float, settings: FitSettings
) -> dict[str, Any]:
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
    try:
        fit = fit_closure(
            obs.elapsed_s,
            cols[gas.column],
            h2o_mmol_mol=cols["h2o_mmol_mol"]
            if initial.h2o_mmol_mol is None
            else initial.h2o_mmol_mol,
            pressure_kpa=cols["pressure_kpa"]
            if initial.pressure_kpa is None
            else initial.pressure_kpa,
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
    except ValueError as exc:
        raise DataFileError(
            f"{gas.gas}: cannot fit: {exc}", path=obs.source_file, observation=obs.index
        ) from exc
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


def refit_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    fmt: str = "auto",
    dead_band: str | float = "instrument",
    settings: FitSettings | None = None,
    progress: Callable[[RefitReport, str], None] | None = None,
) -> RefitReport:
    """Refit every observation of every file; a bad file or observation is refused whole.

    ``progress`` is called after each file with the report so far and the file name.
    """
    report = RefitReport()
    for path in _iter_files(paths):
        report.files += 1
        try:
            result = read_file(path, fmt)
        except DataFileError as exc:
            report.refused.append(exc)
            continue
        report.refused.extend(e for e in result.rejected if isinstance(e, DataFileError))
        report.warnings.extend(f"{path}: {w}" for w in result.warnings)
        for obs in result.observations:
            report.observations += 1
            report.warnings.extend(f"{obs.name}: {w}" for w in obs.warnings)
            try:
                report.rows.extend(refit_observation(obs, dead_band=dead_band, settings=settings))
            except DataFileError as exc:
                report.refused.append(exc)
        if progress is not None:
            progress(report, path)
    return report


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
