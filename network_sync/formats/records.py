"""What every instrument-file reader yields: one :class:`ChamberObservation` per closure.

A reader keys columns by header name and converts them to chamberd's column names, which
carry their units (see ``docs/nomenclature.md``):

=====================  ===========================================================
``elapsed_s``          time since the chamber closed [s] (negative while closing)
``co2_umol_mol``       CO2 mole fraction as measured (wet) [umol mol-1]
``co2_dry_umol_mol``   CO2 dry mole fraction (instrument-corrected) [umol mol-1]
``ch4_dry_nmol_mol``   CH4 dry mole fraction [nmol mol-1]
``n2o_dry_nmol_mol``   N2O dry mole fraction [nmol mol-1]
``h2o_mmol_mol``       water vapour mole fraction [mmol mol-1]
``pressure_kpa``       chamber (or cell) pressure [kPa]
``temperature_degc``   chamber air temperature [degC]
=====================  ===========================================================

Each gas to fit is a :class:`GasChannel`: which column, its unit, whether it is already dry,
and the fit window the instrument used for it. The instrument's own results, where the file
carries them, are an :class:`InstrumentFlux` per gas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Annotation",
    "ChamberObservation",
    "GasChannel",
    "InitialValues",
    "InstrumentFlux",
    "ReadResult",
]


@dataclass(frozen=True)
class GasChannel:
    """One gas of an observation and how the instrument processed it.

    ``window_start_exclusive`` is True where the instrument keeps samples with
    elapsed time strictly greater than the dead band (LI-8200), False where it keeps
    elapsed >= dead band (LI-8100A, LI-8250).
    """

    gas: str  # "co2" | "ch4" | "n2o"
    column: str  # key into ChamberObservation.columns
    unit: str  # "umol/mol" | "nmol/mol"
    dry: bool  # True when the column is already a dry mole fraction
    dead_band_s: float | None  # None where the file does not say (e.g. Compute Flux off)
    end_s: float  # last elapsed time of the instrument's fit window
    window_start_exclusive: bool = False
    # the instrument's initial values use 0 <= t < 10 s (LI-8100A) rather than <= 10 s
    initial_end_exclusive: bool = False

    @property
    def flux_unit(self) -> str:
        return "umol m-2 s-1" if self.unit == "umol/mol" else "nmol m-2 s-1"


@dataclass(frozen=True)
class InitialValues:
    """Initial values an instrument takes from somewhere other than the trace intercepts.

    ``None`` means: compute the intercept of a line over the first seconds of the trace.
    """

    pressure_kpa: float | None = None
    temperature_degc: float | None = None
    h2o_mmol_mol: float | None = None


@dataclass(frozen=True)
class InstrumentFlux:
    """The instrument's own result for one gas, as printed in its file (None = absent)."""

    gas: str
    flux: float | None  # the flux the instrument reports (its chosen model)
    model: str | None  # "exponential" | "linear" | None
    lin_flux: float | None = None
    lin_r2: float | None = None
    exp_flux: float | None = None
    exp_r2: float | None = None
    exp_a_per_s: float | None = None
    exp_cx: float | None = None
    exp_c0: float | None = None
    exp_t0_s: float | None = None
    iterations: int | None = None
    max_iterations: int | None = None
    n_points: int | None = None
    slope_per_s: float | None = None
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def exp_converged(self) -> bool:
        """The firmware's exponential fit ended before its iteration cap and did not degenerate."""
        if self.model != "exponential" or self.exp_flux is None:
            return False
        if self.iterations is not None and self.max_iterations is not None:
            return self.iterations < self.max_iterations
        return True


@dataclass(frozen=True)
class Annotation:
    """An event the instrument wrote into its data stream (LI-8100A Type -1 rows)."""

    line: int
    timestamp: str
    text: str


@dataclass(frozen=True)
class ChamberObservation:
    """One chamber closure read from an instrument file."""

    source_file: str  # the path as given
    index: int  # 1-based order of the observation in its file
    instrument: str  # "LI-8100A" | "LI-8200" | "LI-8250"
    port: int | None
    label: str
    start_time: dt.datetime | None  # first logged row, instrument clock (no zone)
    closed_time: dt.datetime | None  # row with elapsed time 0, instrument clock
    time_zone: str | None  # IANA name where the file declares one
    volume_cm3: float  # total system volume used for the flux
    area_cm2: float
    offset_cm: float | None
    obs_length_s: float
    elapsed_s: np.ndarray
    columns: Mapping[str, np.ndarray]
    gases: tuple[GasChannel, ...]
    initial: InitialValues = InitialValues()
    reference: Mapping[str, InstrumentFlux] = field(default_factory=dict)
    has_footer: bool = True
    header: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    # rows the instrument computed itself, by kind ("initial", "mean", "range"), keyed by
    # chamberd column name: LI-8100A Type 2/3/4 rows
    instrument_rows: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    first_line: int | None = None  # where the observation starts in a text file

    @property
    def name(self) -> str:
        return f"{self.source_file}, observation {self.index}"


@dataclass(frozen=True)
class ReadResult:
    """All a reader got from one file: observations, and those it refused with reasons."""

    path: str
    observations: tuple[ChamberObservation, ...]
    rejected: tuple[Exception, ...] = ()  # DataFileError instances, one per refused observation
    warnings: tuple[str, ...] = ()
