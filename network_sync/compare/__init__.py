"""Intercomparison analysis: how well two measurement systems agree, and why not.

Pure functions over arrays and DataFrames returning frozen dataclasses (no I/O in the
statistics); the selection from the central database, the pairing, the comparison that
composes them and the reports sit beside them:

==================  ==========================================================================
``stats``           agreement estimators: bias, RMSD, MAE, r, CCC, Bland-Altman, Deming, SMA,
                    Passing-Bablok, OLS; the block bootstrap by day
``temporal``        temperature response (Q10/R10, Lloyd-Taylor), diel cycle, gap-filling,
                    sums with uncertainty, sampling-schedule emulation
``pairing``         series selection (``SITE/SYSTEM[/CHAMBER]``) and pairing in time
``comparison``      :func:`compare`: selection, pairing, statistics, baselines, in one result
``report``          the self-contained HTML report built from those result objects
==================  ==========================================================================

The names most analyses need are importable from here (the estimators from ``stats``, the
temperature responses and sums from ``temporal``, ``render_report`` from ``report``)::

    from chamberd.network_sync.compare import compare, select, pair, parse_spec
"""

from .comparison import (
    BY,
    Baseline,
    Comparison,
    ProcessingPart,
    Provenance,
    SamplingEmulation,
    Settings,
    SideTemporal,
    baselines,
    compare,
    plain,
)
from .pairing import (
    Matched,
    Pairing,
    PairingDiagnostics,
    Selection,
    SeriesSpec,
    Unpaired,
    pair,
    pair_all,
    parse_spec,
    processing_versions,
    select,
    selection,
    standard_offset_s,
)

__all__ = [
    "BY",
    "Baseline",
    "Comparison",
    "Matched",
    "Pairing",
    "PairingDiagnostics",
    "ProcessingPart",
    "Provenance",
    "SamplingEmulation",
    "Selection",
    "SeriesSpec",
    "Settings",
    "SideTemporal",
    "Unpaired",
    "baselines",
    "compare",
    "pair",
    "pair_all",
    "parse_spec",
    "plain",
    "processing_versions",
    "select",
    "selection",
    "standard_offset_s",
]
