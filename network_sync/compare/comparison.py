"""How well two series agree, and why not: :func:`compare` composes the whole analysis.

:func:`compare` selects the two series (:mod:`.pairing`), pairs them, computes every
agreement statistic with block-bootstrap confidence intervals by local standard day
(:func:`.stats.agreement`), the breakdowns asked for (:func:`.stats.breakdown`), the
within-system between-collar baseline of each system over the same period
(:func:`baselines`), the processing part of the disagreement, and each side's temperature
response, diel cycle and gap-filled sums (:mod:`.temporal`). The result is one frozen
:class:`Comparison`: ``chamberd compare`` prints its table (:meth:`Comparison.lines`),
``--json`` its :meth:`Comparison.as_dict`, and the HTML report is drawn from it alone.

Rules (docs/analyst.md repeats them for analysts):

Seeds
    One ``seed`` makes the whole result reproducible; each part draws from its own stream
    (``numpy.random.SeedSequence([seed, part])``), so adding a breakdown or a baseline does
    not change the main confidence intervals.
Within-system baseline (the floor)
    For every system of the comparison (one, when both sides are collars of one system):
    each pair of its collars (i < j) is compared like the main comparison (same
    processing, pairing method and tolerance, one to one), over the span of the main
    comparison's pairs. Per collar pair: n, bias, relative bias, RMSD, r, CCC (point estimates,
    :func:`.stats.breakdown`); the floor is their median, minimum and maximum over the
    collar pairs (of the absolute bias and relative bias: the sign of a collar pair's bias
    only says which collar came first). Collar-to-collar is the right floor for a
    comparison of single collars; a mean of many collars varies less.
Processing part of the disagreement
    When both sides have raw traces (samples) in the compared period, the comparison is
    repeated on each side's own processing and on one common central refit: the version
    given (``common_processing``), else the central version (``central-*``) both sides have
    with the most observations. Nothing is refitted here (the database is read-only to an
    analyst): without a common central version the result says which command makes one
    (``chamberd refit --target URL --method exponential --dead-band 20``).
Temperature response, diel cycle, sums
    Per side, from its own series (:mod:`.temporal`): Q10/R10 and Lloyd-Taylor on the
    soil temperature that side recorded, the diel cycle by hour of local standard time,
    the gap-filled series and its daily, monthly and period sums. When one side samples at
    least four times less often than the other, its schedule is emulated on the denser side
    (:func:`.temporal.emulate_sampling`): the bias of sparse sampling, apart from the bias
    of the method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chamberd.controller.errors import ChamberError, ConfigError
from chamberd.network_sync.central import Central, redact

from .pairing import (
    Pairing,
    PairingDiagnostics,
    Selection,
    SeriesSpec,
    has_raw_traces,
    pair,
    pair_all,
    parse_spec,
    processing_versions,
    selection,
)

__all__ = [
    "BASELINE_STATISTICS",
    "BY",
    "Baseline",
    "Comparison",
    "ProcessingPart",
    "Provenance",
    "SamplingEmulation",
    "Settings",
    "SideTemporal",
    "baselines",
    "compare",
    "plain",
]

#: breakdown names (``--by``) and the class column each one adds to the pairs
BY = {
    "month": "month",
    "hour": "hour",
    "flux": "flux_class",
    "temperature": "temperature_class",
    "moisture": "moisture_class",
}
#: statistics of a collar pair kept in a baseline (columns of :attr:`Baseline.pairs`)
BASELINE_STATISTICS = ("n_pairs", "bias", "relative_bias", "rmsd", "r", "ccc")
#: the floor: these over the collar pairs (absolute biases: a pair's sign is its order)
_FLOOR = ("abs_bias", "abs_relative_bias", "rmsd", "r", "ccc")
#: parts drawing from their own random stream (SeedSequence([seed, part]))
_STREAM = {
    "agreement": 0,
    "own": 1,
    "common": 2,
    "temporal_a": 3,
    "temporal_b": 4,
    "sampling": 5,
    "breakdown": 6,
    "baseline": 7,
}
_SPARSE_RATIO = 4.0  # a side sampling this many times less often is emulated
_REFIT_HINT = "chamberd refit --target URL --method exponential --dead-band 20"

Progress = Callable[[str], None]


# --- the result -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What was asked for (the arguments of :func:`compare`, normalised)."""

    gas: str
    start_utc: str | None
    end_utc: str | None
    a_processing: str | None
    b_processing: str | None
    common_processing: str | None
    tolerance_s: float
    method: str
    block: str | None
    completeness: float
    by: tuple[str, ...]
    n_boot: int
    seed: int


@dataclass(frozen=True)
class Provenance:
    """Where the numbers come from: software, database (password redacted), queries."""

    software_version: str
    database: str
    backend: str
    query_a: str
    query_b: str
    processing_a: dict[str, int]
    processing_b: dict[str, int]


@dataclass(frozen=True)
class Baseline:
    """The between-collar agreement of one system over the compared period (the floor).

    ``pairs``: one row per collar pair (``collar_a``, ``collar_b`` and
    :data:`BASELINE_STATISTICS`, bias = mean(collar_b - collar_a)); ``floor``: for
    ``abs_bias``, ``abs_relative_bias``, ``rmsd``, ``r`` and ``ccc``, the ``median``,
    ``min`` and ``max`` over the collar pairs; ``diagnostics``: the pairing of each collar
    pair, in the order of ``pairs``; ``note``: why there is none, or how it was made.
    """

    site: str
    system: str
    collars: tuple[str, ...]
    processing: str | None
    start_utc: str | None
    end_utc: str | None
    pairs: pd.DataFrame = field(repr=False)
    floor: dict[str, dict[str, float | None]]
    diagnostics: tuple[PairingDiagnostics, ...] = field(repr=False)
    note: str

    @property
    def label(self) -> str:
        return f"{self.site}/{self.system}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "system": self.system,
            "collars": list(self.collars),
            "processing": self.processing,
            "start_utc": self.start_utc,
            "end_utc": self.end_utc,
            "floor": plain(self.floor),
            "pairs": plain(self.pairs),
            "note": self.note,
        }

    def line(self) -> str:
        """One line: the floor of this system."""
        if not len(self.pairs):
            return f"{self.label}: no baseline ({self.note})"

        def show(label: str, name: str) -> str:
            s = self.floor.get(name) or {}
            if s.get("median") is None:
                return f"{label} -"
            return f"{label} {_num(s['median'])} ({_num(s['min'])} to {_num(s['max'])})"

        n = int(self.pairs["n_pairs"].sum()) if "n_pairs" in self.pairs else 0
        return (
            f"{self.label}: {len(self.pairs)} collar pair(s) of {len(self.collars)} collars, "
            f"{n} pairs; median (range) over collar pairs: {show('|bias|', 'abs_bias')}, "
            f"{show('RMSD', 'rmsd')}, {show('CCC', 'ccc')}"
        )


@dataclass(frozen=True)
class ProcessingPart:
    """The same comparison on each side's own processing and on one common central refit.

    ``status`` is ``compared`` or ``unavailable`` (then ``reason`` says why, and what to
    run); ``own_versions`` the versions each side's own processing used; ``candidates`` the
    central versions both sides have.
    """

    status: str
    reason: str
    own_versions: tuple[str, str]
    common_version: str | None
    candidates: tuple[str, ...]
    own: Any | None = None  # stats.Agreement
    common: Any | None = None  # stats.Agreement
    own_pairing: PairingDiagnostics | None = None
    common_pairing: PairingDiagnostics | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "own_versions": list(self.own_versions),
            "common_version": self.common_version,
            "candidates": list(self.candidates),
            "own": plain(self.own),
            "common": plain(self.common),
            "own_pairing": plain(self.own_pairing),
            "common_pairing": plain(self.common_pairing),
        }


@dataclass(frozen=True)
class SideTemporal:
    """One side's temperature response, diel cycle and gap-filled sums (:mod:`.temporal`).

    ``q10``/``lloyd_taylor``: :class:`.temporal.Q10Fit`/``LloydTaylorFit`` on the soil
    temperature this side recorded; ``diel``: :func:`.temporal.diel`; ``filled``:
    :func:`.temporal.gap_fill` (``filled`` flags the gap-filled slots); ``daily``,
    ``monthly``, ``period``: :func:`.temporal.sums`; ``cumulative``:
    :func:`.temporal.cumulative_sums` (the running sum and its uncertainty band). Any part
    a series cannot give (no soil temperature, too few days) is None, with the reason in
    ``notes``.
    """

    label: str
    q10: Any | None = None  # temporal.Q10Fit
    lloyd_taylor: Any | None = None  # temporal.LloydTaylorFit
    diel: pd.DataFrame | None = field(default=None, repr=False)
    filled: pd.DataFrame | None = field(default=None, repr=False)
    daily: pd.DataFrame | None = field(default=None, repr=False)
    monthly: pd.DataFrame | None = field(default=None, repr=False)
    period: pd.DataFrame | None = field(default=None, repr=False)
    cumulative: pd.DataFrame | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    @property
    def sum_unit(self) -> str | None:
        """The unit of the sums (``g C m-2``, ``mg C m-2``, ``mg N m-2``), or None without
        sums."""
        for frame in (self.period, self.daily, self.monthly, self.cumulative):
            if frame is not None and frame.attrs.get("unit"):
                return str(frame.attrs["unit"])
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "q10": plain(self.q10),
            "lloyd_taylor": plain(self.lloyd_taylor),
            "diel": plain(self.diel),
            "sums": {
                "unit": self.sum_unit,
                "daily": plain(self.daily),
                "monthly": plain(self.monthly),
                "period": plain(self.period),
            },
            "filled": (
                None
                if self.filled is None
                else {
                    "slots": len(self.filled),
                    "filled": int(self.filled["filled"].sum()),
                    "method": plain(self.filled.attrs.get("method")),
                }
            ),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class SamplingEmulation:
    """The sparse side's schedule emulated on the dense side (:func:`temporal.emulate_sampling`).

    ``result`` is the temporal module's ``SamplingBias``; ``continuous``/``sparse`` name
    the sides (``a`` or ``b``) and their series.
    """

    continuous: str
    sparse: str
    continuous_label: str
    sparse_label: str
    result: Any | None
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "continuous": self.continuous,
            "sparse": self.sparse,
            "continuous_label": self.continuous_label,
            "sparse_label": self.sparse_label,
            "result": plain(self.result),
            "note": self.note,
        }


@dataclass(frozen=True)
class Comparison:
    """Everything ``chamberd compare`` reports, as one frozen tree.

    Fields: ``a``, ``b`` (the two :class:`~.pairing.Selection`, with their series frames
    and provenance); ``settings``; ``provenance``; ``pairing`` (pairs and diagnostics);
    ``agreement`` (:class:`.stats.Agreement` of ``flux_b`` against ``flux_a``, CIs from a
    block bootstrap by local standard day); ``breakdowns`` (``--by`` name -> DataFrame of
    :func:`.stats.breakdown`); ``baselines`` (one :class:`Baseline` per system);
    ``processing`` (:class:`ProcessingPart`); ``temporal_a``, ``temporal_b``
    (:class:`SideTemporal`); ``temperature_difference`` (b - a on R10, Q10 and E0, with
    CIs); ``sampling`` (:class:`SamplingEmulation` or None).
    """

    a: Selection
    b: Selection
    settings: Settings
    provenance: Provenance
    pairing: Pairing
    agreement: Any  # stats.Agreement
    breakdowns: dict[str, pd.DataFrame] = field(repr=False)
    baselines: tuple[Baseline, ...]
    processing: ProcessingPart
    temporal_a: SideTemporal
    temporal_b: SideTemporal
    #: model ("q10", "lloyd_taylor") -> parameter -> temporal.TemperatureResponseDifference
    temperature_difference: dict[str, dict[str, Any]]
    sampling: SamplingEmulation | None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object: the agreement's flat keys (``n_pairs``, ``bias``,
        ``bias_ci``, ...) at the top level, then the nested sections."""
        flat = plain(self.agreement.as_dict()) if self.agreement is not None else {}
        bias, bias_ci = _sampling_bias(self.sampling)
        out: dict[str, Any] = {
            **flat,
            "sparse_sampling_bias": bias,
            "sparse_sampling_bias_ci": bias_ci,
            "a": _side(self.a),
            "b": _side(self.b),
            "pairing": self.pairing.diagnostics.as_dict(),
            "breakdowns": {k: plain(v) for k, v in self.breakdowns.items()},
            "baselines": [b.as_dict() for b in self.baselines],
            "processing": self.processing.as_dict(),
            "temperature": {
                "a": {
                    "q10": plain(self.temporal_a.q10),
                    "lloyd_taylor": plain(self.temporal_a.lloyd_taylor),
                },
                "b": {
                    "q10": plain(self.temporal_b.q10),
                    "lloyd_taylor": plain(self.temporal_b.lloyd_taylor),
                },
                "difference": plain(self.temperature_difference),
            },
            "temporal": {"a": self.temporal_a.as_dict(), "b": self.temporal_b.as_dict()},
            "sampling": self.sampling.as_dict() if self.sampling else None,
            "settings": plain(self.settings),
            "provenance": plain(self.provenance),
        }
        return out

    def lines(self) -> list[str]:
        """The terminal table: the series, the pairing, each statistic with its CI, the
        baselines and the processing part."""
        return _table(self)


def _side(chosen: Selection) -> dict[str, Any]:
    out = plain(chosen.as_dict())
    out["rows"] = len(chosen)
    return out


def _sampling_bias(sampling: SamplingEmulation | None) -> tuple[Any, Any]:
    if sampling is None or sampling.result is None:
        return None, None
    values = plain(sampling.result)
    if not isinstance(values, dict):
        return None, None
    for name in ("relative_bias", "bias"):
        if name in values:
            value = values[name]
            if isinstance(value, dict) and "value" in value:
                return value["value"], value.get("ci")
            return value, values.get(f"{name}_ci")
    return None, None


# --- plain values for JSON ----------------------------------------------------------------


def plain(value: Any) -> Any:
    """A result as JSON-ready values: dataclasses (their ``as_dict`` where they have one)
    and mappings as dicts, DataFrames as lists of records, numpy scalars as Python numbers,
    NaN and infinities as None, times as ISO 8601 text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if _named_index(value) else value
        return [
            {str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")
        ]
    if isinstance(value, pd.Series):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        if pd.isna(value):
            return None
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return pd.Timedelta(value).total_seconds()
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        as_dict = getattr(value, "as_dict", None)
        if callable(as_dict):
            return plain(as_dict())
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not isinstance(getattr(value, f.name), (pd.DataFrame, pd.Series)) or f.repr
        }
    if value is pd.NaT or (not isinstance(value, type) and _is_na(value)):
        return None
    return str(value)


def _named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --- compare --------------------------------------------------------------------------------


def compare(
    central: Central,
    a: str | SeriesSpec,
    b: str | SeriesSpec,
    *,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
    a_processing: str | None = None,
    b_processing: str | None = None,
    common_processing: str | None = None,
    tolerance_s: float = 900.0,
    method: str = "nearest",
    block: str | None = None,
    completeness: float = 0.5,
    by: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 1,
    min_collars: int | None = None,
    baseline: bool = True,
    temperature: bool = True,
    progress: Progress | None = None,
) -> Comparison:
    """Compare series ``b`` with series ``a`` (bias = mean(b - a)).

    Parameters
    ----------
    central : an open central database (``Central.connect(url, mode="read")``).
    a, b : ``SITE/SYSTEM[/CHAMBER[,CHAMBER...]]`` or ``SITE/SYSTEM/plot:NAME``.
    gas : ``co2`` [umol m-2 s-1], ``ch4`` or ``n2o`` [nmol m-2 s-1].
    start, end : begin times >= start and < end (ISO 8601 text, UTC if bare; or datetimes).
    a_processing, b_processing : processing versions (None: each side's own, selected).
    common_processing : the central refit for the processing part (None: the one both
        sides have most).
    tolerance_s : nearest pairing tolerance [s].
    method, block, completeness : see :func:`.pairing.pair`.
    by : breakdowns, any of :data:`BY` (``month``, ``hour``, ``flux``, ``temperature``,
        ``moisture``).
    n_boot : bootstrap resamples (by local standard day) for every CI; 0 for none.
    seed : the seed of every random draw (module docstring).
    min_collars : rounds with fewer collars are left out (several chambers only).
    baseline, temperature : False skips the within-system baselines, or the temperature
        responses, diel cycles and sums.
    progress : called with a short message as each step begins.

    Raises :class:`ConfigError` for an unknown series or processing version, a series
    without fluxes in the period, or no pairs (the message carries the pairing
    diagnostics).
    """
    from . import stats

    say = progress or (lambda message: None)
    by = tuple(dict.fromkeys(by))
    unknown = [x for x in by if x not in BY]
    if unknown:
        raise ConfigError(f"--by {', '.join(unknown)}: expected any of {', '.join(BY)}")
    n_boot = int(n_boot)
    if n_boot < 0:
        raise ConfigError(f"--boot {n_boot}: the number of resamples must be >= 0")
    seed = int(seed)
    spec_a, spec_b = parse_spec(a, "--a"), parse_spec(b, "--b")

    say(f"selecting {spec_a.text} ({gas})")
    sel_a = selection(
        central,
        spec_a,
        gas=gas,
        start=start,
        end=end,
        processing=a_processing,
        min_collars=min_collars,
        option="--a",
    )
    say(f"selecting {spec_b.text} ({gas})")
    sel_b = selection(
        central,
        spec_b,
        gas=gas,
        start=start,
        end=end,
        processing=b_processing,
        min_collars=min_collars,
        option="--b",
    )
    for option, chosen in (("--a", sel_a), ("--b", sel_b)):
        if not len(chosen):
            raise ConfigError(f"{option} {chosen.label}: {_empty_reason(central, chosen)}")
    settings = Settings(
        gas=gas,
        start_utc=sel_a.start_utc,
        end_utc=sel_a.end_utc,
        a_processing=a_processing,
        b_processing=b_processing,
        common_processing=common_processing,
        tolerance_s=float(tolerance_s),
        method=method,
        block=block,
        completeness=float(completeness),
        by=by,
        n_boot=n_boot,
        seed=seed,
    )
    say(f"pairing {len(sel_a)} with {len(sel_b)} rows")
    pairing = pair(
        sel_a,
        sel_b,
        tolerance_s=tolerance_s,
        method=method,
        block=block,
        completeness=completeness,
    )
    if not len(pairing):
        raise ConfigError(
            f"{spec_a.text} and {spec_b.text}: no pairs; "
            + "; ".join(line.strip() for line in pairing.diagnostics.lines())
            + f"; a spans {_extent(sel_a)}, b spans {_extent(sel_b)}"
        )
    pairs = _with_classes(pairing.pairs)
    pairing = Pairing(pairs, pairing.diagnostics)
    say(f"agreement of {len(pairs)} pairs ({n_boot} bootstrap resamples by day)")
    agreement = _agreement(stats, pairs, n_boot, _rng(seed, "agreement"))
    breakdowns: dict[str, pd.DataFrame] = {}
    for k, name in enumerate(by):
        say(f"breakdown by {name}")
        with _quiet(), _as_message(f"the breakdown by {name}"):
            breakdowns[name] = stats.breakdown(
                pairs,
                BY[name],
                a="flux_a",
                b="flux_b",
                blocks="date_local_standard",
                n_boot=n_boot,
                rng=_rng(seed, "breakdown", k),
            )
    found: tuple[Baseline, ...] = ()
    if baseline:
        span = _span(pairs, settings.start_utc, settings.end_utc)
        systems = list(dict.fromkeys([(spec_a.site, spec_a.system), (spec_b.site, spec_b.system)]))
        processing_of = {
            (spec_a.site, spec_a.system): a_processing,
            (spec_b.site, spec_b.system): b_processing,
        }
        found = tuple(
            _baseline(
                central,
                site,
                system,
                gas=gas,
                start=span[0],
                end=span[1],
                processing=processing_of[(site, system)],
                tolerance_s=tolerance_s,
                method=method,
                block=block,
                completeness=completeness,
                progress=say,
                known=(sel_a, sel_b),
            )
            for site, system in systems
        )
    processing = _processing_part(
        central, sel_a, sel_b, settings, stats, pairing, agreement, progress=say
    )
    if temperature:
        say("temperature responses, diel cycles and sums")
        temporal_a = _temporal(sel_a, gas, n_boot, _rng(seed, "temporal_a"))
        temporal_b = _temporal(sel_b, gas, n_boot, _rng(seed, "temporal_b"))
        difference = _temperature_difference(temporal_a, temporal_b)
        sampling = _sampling(
            sel_a, sel_b, temporal_a, temporal_b, gas, n_boot, _rng(seed, "sampling")
        )
    else:
        temporal_a = SideTemporal(sel_a.label, notes=("not asked for",))
        temporal_b = SideTemporal(sel_b.label, notes=("not asked for",))
        difference, sampling = {}, None
    provenance = Provenance(
        software_version=_software_version(),
        database=redact(central.url),
        backend=central.dialect,
        query_a=sel_a.query,
        query_b=sel_b.query,
        processing_a=dict(sel_a.processing_versions),
        processing_b=dict(sel_b.processing_versions),
    )
    return Comparison(
        a=sel_a,
        b=sel_b,
        settings=settings,
        provenance=provenance,
        pairing=pairing,
        agreement=agreement,
        breakdowns=breakdowns,
        baselines=found,
        processing=processing,
        temporal_a=temporal_a,
        temporal_b=temporal_b,
        temperature_difference=difference,
        sampling=sampling,
    )


def _extent(chosen: Selection) -> str:
    times = chosen.frame["time_utc"]
    return f"{times.min():%Y-%m-%d %H:%M} to {times.max():%Y-%m-%d %H:%M} UTC"


def _rng(seed: int, part: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM[part], *extra]))


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover - a bare checkout
        return "0+unknown"


def _empty_reason(central: Central, chosen: Selection) -> str:
    """Why a series has no rows: the period, the gas, or incomplete rounds."""
    what = f"no {chosen.gas} fluxes"
    if chosen.processing:
        what += f" in processing version {chosen.processing!r}"
    if chosen.rounds_incomplete:
        return (
            f"{chosen.rounds_incomplete} rounds, none with at least {chosen.min_collars} "
            "collars (min_collars)"
        )
    where, params = ["site_id = ?", "system_id = ?"], [chosen.spec.site, chosen.spec.system]
    if chosen.chambers:
        where.append(f"chamber IN ({', '.join('?' for _ in chosen.chambers)})")
        params += list(chosen.chambers)
    rows = central.query(
        "SELECT min(begin_utc) AS first, max(begin_utc) AS last, count(*) AS n "
        f"FROM observations WHERE {' AND '.join(where)}",
        params,
    )
    period = ""
    if chosen.start_utc or chosen.end_utc:
        period = f" from {chosen.start_utc or 'the start'} to {chosen.end_utc or 'the end'}"
    if rows and rows[0]["n"]:
        first, last = (pd.Timestamp(rows[0][k]) for k in ("first", "last"))
        held = (
            f"its {rows[0]['n']} observations begin from {first:%Y-%m-%d %H:%M} to "
            f"{last:%Y-%m-%d %H:%M} UTC"
        )
    else:
        held = "it has no observations"
    return f"{what}{period}; {held}"


def _with_classes(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs with the class column of every breakdown (:data:`BY`), made with the
    stats module's class helpers: month (1-12) and hour (0-23) of local standard time,
    quartiles of the pair mean (a + b) / 2, soil temperature in 5 degC classes and soil
    moisture quartiles (each on the mean of the two sides' readings)."""
    from . import stats

    out = pairs.copy()
    local = out["time_local_standard"]
    out["month"] = stats.month_class(local) if len(out) else np.zeros(0, dtype=int)
    out["hour"] = stats.hour_class(local) if len(out) else np.zeros(0, dtype=int)
    mean = ((out["flux_a"] + out["flux_b"]) / 2.0).to_numpy(dtype=float)
    out["flux_class"] = _classes(stats.flux_class, mean)
    temperature = out[["soil_temperature_degc_a", "soil_temperature_degc_b"]].mean(axis=1)
    values = temperature.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = np.floor(finite.min() / 5.0) * 5.0, np.floor(finite.max() / 5.0) * 5.0 + 5.0
        edges = np.arange(low, high + 2.5, 5.0)
        out["temperature_class"] = _classes(stats.value_class, values, edges)
    else:
        out["temperature_class"] = pd.Categorical([None] * len(out))
    moisture = out[["soil_moisture_pct_a", "soil_moisture_pct_b"]].mean(axis=1)
    out["moisture_class"] = _classes(stats.value_class, moisture.to_numpy(dtype=float))
    return out


def _classes(make: Callable[..., Any], values: np.ndarray, edges: Any = None) -> Any:
    """Class labels, or no class at all where the values allow none (all missing, one
    value)."""
    finite = values[np.isfinite(values)]
    if np.unique(finite).size < 2 and edges is None:
        return pd.Categorical([None] * len(values))
    try:
        return make(values, edges)
    except ValueError:
        return pd.Categorical([None] * len(values))


def _agreement(stats: Any, pairs: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> Any:
    se_a = pairs["flux_se_a"].to_numpy(dtype=float)
    se_b = pairs["flux_se_b"].to_numpy(dtype=float)
    with _quiet(), _as_message("the agreement statistics"):
        return stats.agreement(
            pairs["flux_a"].to_numpy(dtype=float),
            pairs["flux_b"].to_numpy(dtype=float),
            blocks=pairs["date_local_standard"].to_numpy(),
            se_a=se_a if np.isfinite(se_a).any() else None,
            se_b=se_b if np.isfinite(se_b).any() else None,
            n_boot=n_boot,
            rng=rng,
        )


@contextlib.contextmanager
def _as_message(what: str) -> Iterator[None]:
    """An estimator's refusal (too few pairs, a degenerate series) as a message."""
    try:
        yield
    except (ArithmeticError, ValueError) as exc:
        if isinstance(exc, ChamberError):
            raise
        raise ConfigError(f"{what}: {exc}") from exc


def _quiet() -> Any:
    """No floating-point warnings on the terminal: the estimators handle NaN and inf."""
    return np.errstate(divide="ignore", invalid="ignore", over="ignore")


def _span(
    pairs: pd.DataFrame, start: str | None = None, end: str | None = None
) -> tuple[str | None, str | None]:
    """The UTC span of the pairs (an hour more on each side, within [start, end)), as
    selection bounds (begin >= start, < end), in the stored text form."""
    if not len(pairs):
        return start, end
    times = pd.concat([pairs["time_a"], pairs["time_b"]])
    first = times.min().floor("s") - pd.Timedelta(hours=1)
    last = times.max().ceil("s") + pd.Timedelta(hours=1)
    if start is not None:
        first = max(first, pd.Timestamp(start))
    if end is not None:
        last = min(last, pd.Timestamp(end))
    return (
        first.isoformat(timespec="microseconds"),
        last.isoformat(timespec="microseconds"),
    )


# --- baselines ------------------------------------------------------------------------------


def baselines(
    central: Central,
    *,
    site: str | None = None,
    gas: str = "co2",
    start: Any = None,
    end: Any = None,
    processing: str | None = None,
    tolerance_s: float = 900.0,
    method: str = "nearest",
    block: str | None = None,
    completeness: float = 0.5,
    progress: Progress | None = None,
) -> list[Baseline]:
    """The between-collar baseline of every system (of ``site``), as ``chamberd compare
    --baseline`` lists them."""
    say = progress or (lambda message: None)
    if site is not None:
        known = central.query("SELECT site_id FROM sites WHERE site_id = ?", (site,))
        if not known:
            sites = [r["site_id"] for r in central.query("SELECT site_id FROM sites")]
            raise ConfigError(f"--site {site!r}: no such site; sites: {', '.join(sorted(sites))}")
    rows = central.query(
        "SELECT site_id, system_id FROM systems"
        + (" WHERE site_id = ?" if site else "")
        + " ORDER BY site_id, system_id",
        (site,) if site else (),
    )
    return [
        _baseline(
            central,
            r["site_id"],
            r["system_id"],
            gas=gas,
            start=start,
            end=end,
            processing=processing,
            tolerance_s=tolerance_s,
            method=method,
            block=block,
            completeness=completeness,
            progress=say,
        )
        for r in rows
    ]


def _baseline(
    central: Central,
    site: str,
    system: str,
    *,
    gas: str,
    start: Any,
    end: Any,
    processing: str | None,
    tolerance_s: float,
    method: str,
    block: str | None,
    completeness: float,
    progress: Progress,
    known: Sequence[Selection] = (),
) -> Baseline:
    """Every pair of collars of one system compared like the main comparison.

    ``known``: selections already read; one of every collar of this system, in this
    processing, over a period that holds [start, end), is reused instead of a new query.
    """
    from . import stats

    spec = SeriesSpec(site, system)
    progress(f"baseline {spec.text}: every collar")
    reuse = next(
        (
            s
            for s in known
            if s.spec == spec and s.processing == processing and _covers(s, start, end)
        ),
        None,
    )
    if reuse is not None and reuse.observations is not None:
        frame = _within(reuse.observations, start, end)
        bounds_start, bounds_end = start, end
    else:
        try:
            chosen = selection(
                central,
                spec,
                gas=gas,
                start=start,
                end=end,
                processing=processing,
                aggregate=False,
                option="baseline",
            )
        except ConfigError as exc:  # e.g. a processing version this system does not have
            return _no_baseline(spec, processing, start, end, str(exc))
        frame = chosen.frame
        bounds_start, bounds_end = chosen.start_utc, chosen.end_utc
    collars = tuple(sorted(frame["chamber"].unique())) if len(frame) else ()
    bounds = {"start_utc": bounds_start, "end_utc": bounds_end}
    if len(collars) < 2:
        note = f"{len(collars)} collar with {gas} fluxes in the period: no pair of collars"
        return _no_baseline(spec, processing, bounds_start, bounds_end, note)
    progress(
        f"baseline {spec.text}: {len(collars) * (len(collars) - 1) // 2} collar pairs "
        f"of {len(collars)} collars"
    )
    by_collar = {c: g.reset_index(drop=True) for c, g in frame.groupby("chamber", sort=True)}
    matched = pair_all(
        {c: by_collar[c] for c in collars},
        tolerance_s=tolerance_s,
        method=method,
        block=block,
        completeness=completeness,
    )
    labels = [(m.a, m.b) for m in matched]
    diagnostics = [m.diagnostics for m in matched]
    if not any(len(m.flux_a) for m in matched):
        note = "no collar pair has pairs within the tolerance"
        return _no_baseline(spec, processing, bounds_start, bounds_end, note, collars)
    sizes = [len(m.flux_a) for m in matched]
    pooled = pd.DataFrame(
        {
            "flux_a": np.concatenate([m.flux_a for m in matched]),
            "flux_b": np.concatenate([m.flux_b for m in matched]),
            "collar_pair": pd.Categorical.from_codes(
                np.repeat(np.arange(len(matched)), sizes),
                categories=[f"{a} / {b}" for a, b in labels],
            ),
        }
    )
    with _quiet(), _as_message(f"the baseline of {spec.text}"):
        table = stats.breakdown(pooled, "collar_pair", a="flux_a", b="flux_b")
    table = _collar_table(table, labels)
    floor = {}
    for name in _FLOOR:
        column = name.removeprefix("abs_")
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        if name.startswith("abs_"):  # the sign of a collar pair's bias is its order
            values = np.abs(values)
        values = values[np.isfinite(values)]
        floor[name] = {
            "median": float(np.median(values)) if len(values) else None,
            "min": float(np.min(values)) if len(values) else None,
            "max": float(np.max(values)) if len(values) else None,
        }
    return Baseline(
        site=site,
        system=system,
        collars=collars,
        processing=processing,
        pairs=table,
        floor=floor,
        diagnostics=tuple(diagnostics),
        note=(
            "each pair of collars of the system, paired like the comparison; floor = median "
            "(min to max) over the collar pairs"
        ),
        **bounds,
    )


def _covers(chosen: Selection, start: Any, end: Any) -> bool:
    """Whether a selection's period holds [start, end)."""
    if chosen.start_utc is not None and (
        start is None or pd.Timestamp(start) < pd.Timestamp(chosen.start_utc)
    ):
        return False
    return not (
        chosen.end_utc is not None
        and (end is None or pd.Timestamp(end) > pd.Timestamp(chosen.end_utc))
    )


def _within(observations: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """The observations whose begin time is in [start, end)."""
    keep = np.ones(len(observations), dtype=bool)
    begin = observations["begin_utc"]
    if start is not None:
        keep &= (begin >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (begin < pd.Timestamp(end)).to_numpy()
    return observations[keep].reset_index(drop=True)


def _collar_table(table: pd.DataFrame, labels: list[tuple[str, str]]) -> pd.DataFrame:
    """The breakdown per collar pair as ``collar_a, collar_b`` and the baseline statistics,
    in the order of ``labels`` (collar pairs without pairs: n_pairs 0)."""
    frame = table.copy()
    if "collar_pair" not in frame.columns:
        frame = frame.reset_index()
        if "collar_pair" not in frame.columns:
            frame = frame.rename(columns={frame.columns[0]: "collar_pair"})
    rows = []
    keyed = frame.set_index("collar_pair")
    for ca, cb in labels:
        key = f"{ca} / {cb}"
        row: dict[str, Any] = {"collar_a": ca, "collar_b": cb}
        for name in BASELINE_STATISTICS:
            value = keyed.loc[key, name] if key in keyed.index and name in keyed else None
            row[name] = _scalar(value)
        if row["n_pairs"] is None:
            row["n_pairs"] = 0
        rows.append(row)
    return pd.DataFrame(rows, columns=["collar_a", "collar_b", *BASELINE_STATISTICS])


def _scalar(value: Any) -> Any:
    """A statistic's number (an Estimate's value, or the value itself)."""
    if value is None:
        return None
    if hasattr(value, "value"):
        value = value.value
    if isinstance(value, (np.integer, int)):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _no_baseline(
    spec: SeriesSpec,
    processing: str | None,
    start: Any,
    end: Any,
    note: str,
    collars: tuple[str, ...] = (),
) -> Baseline:
    return Baseline(
        site=spec.site,
        system=spec.system,
        collars=collars,
        processing=processing,
        start_utc=start if isinstance(start, str) or start is None else str(start),
        end_utc=end if isinstance(end, str) or end is None else str(end),
        pairs=pd.DataFrame(columns=["collar_a", "collar_b", *BASELINE_STATISTICS]),
        floor={},
        diagnostics=(),
        note=note,
    )


# --- processing part ------------------------------------------------------------------------


def _processing_part(
    central: Central,
    sel_a: Selection,
    sel_b: Selection,
    settings: Settings,
    stats: Any,
    main: Pairing,
    main_agreement: Any,
    *,
    progress: Progress,
) -> ProcessingPart:
    own = (_main_version(sel_a), _main_version(sel_b))
    raw = {"a": has_raw_traces(central, sel_a), "b": has_raw_traces(central, sel_b)}
    if not all(raw.values()):
        without = " and ".join(
            f"{k} ({s.label})" for k, s in (("a", sel_a), ("b", sel_b)) if not raw[k]
        )
        return ProcessingPart(
            status="unavailable",
            reason=f"no raw traces on side {without} in the period: no common refit possible",
            own_versions=own,
            common_version=None,
            candidates=(),
        )
    window = {"start": sel_a.start_utc, "end": sel_a.end_utc}
    versions_a = processing_versions(central, sel_a.spec, gas=settings.gas, **window)
    versions_b = processing_versions(central, sel_b.spec, gas=settings.gas, **window)
    common = [v for v in versions_a if v.startswith("central-") and v in versions_b]
    common.sort(key=lambda v: (-min(versions_a[v], versions_b[v]), v))
    chosen = settings.common_processing
    if chosen is None:
        if not common:
            return ProcessingPart(
                status="unavailable",
                reason=(
                    "both sides have raw traces but no common central refit in the period; "
                    f"make one with: {_REFIT_HINT}"
                ),
                own_versions=own,
                common_version=None,
                candidates=(),
            )
        chosen = common[0]
    elif chosen not in versions_a or chosen not in versions_b:
        missing = [
            s.label for s, v in ((sel_a, versions_a), (sel_b, versions_b)) if chosen not in v
        ]
        raise ConfigError(
            f"--common-processing {chosen!r}: not in {' and '.join(missing)}; central "
            f"versions both sides have: {', '.join(common) or 'none'} ({_REFIT_HINT})"
        )

    def run(a_version: str | None, b_version: str | None, part: str) -> tuple[Any, Pairing]:
        xa = selection(
            central,
            sel_a.spec,
            gas=settings.gas,
            start=sel_a.start_utc,
            end=sel_a.end_utc,
            processing=a_version,
            min_collars=sel_a.min_collars,
            option="--a",
        )
        xb = selection(
            central,
            sel_b.spec,
            gas=settings.gas,
            start=sel_b.start_utc,
            end=sel_b.end_utc,
            processing=b_version,
            min_collars=sel_b.min_collars,
            option="--b",
        )
        paired = pair(
            xa,
            xb,
            tolerance_s=settings.tolerance_s,
            method=settings.method,
            block=settings.block,
            completeness=settings.completeness,
        )
        if not len(paired):
            return None, paired
        return _agreement(stats, paired.pairs, settings.n_boot, _rng(settings.seed, part)), paired

    progress(f"processing part: own processing, and both sides on {chosen}")
    if settings.a_processing is None and settings.b_processing is None:
        own_agreement, own_pairing = main_agreement, main
    else:
        own_agreement, own_pairing = run(None, None, "own")
    common_agreement, common_pairing = run(chosen, chosen, "common")
    return ProcessingPart(
        status="compared",
        reason=f"each side's own processing, and both sides refitted centrally as {chosen}",
        own_versions=own,
        common_version=chosen,
        candidates=tuple(common),
        own=own_agreement,
        common=common_agreement,
        own_pairing=own_pairing.diagnostics,
        common_pairing=common_pairing.diagnostics,
    )


def _main_version(chosen: Selection) -> str:
    versions = chosen.processing_versions
    return next(iter(versions)) if versions else (chosen.processing or "")


# --- temporal -------------------------------------------------------------------------------


def _temporal(chosen: Selection, gas: str, n_boot: int, rng: np.random.Generator) -> SideTemporal:
    """A side's temperature responses, diel cycle, gap-filled series and sums."""
    from . import temporal

    frame = chosen.frame
    notes: list[str] = []
    parts: dict[str, Any] = {}
    flux = frame["flux"].to_numpy(dtype=float)
    temperature = frame["soil_temperature_degc"].to_numpy(dtype=float)
    days = frame["time_local_standard"].dt.normalize().to_numpy()
    usable = np.isfinite(flux) & np.isfinite(temperature)
    if np.count_nonzero(usable & (flux > 0)) >= 10:
        for name, fit in (("q10", temporal.q10_fit), ("lloyd_taylor", temporal.lloyd_taylor_fit)):
            try:
                result = fit(
                    temperature[usable], flux[usable], n_boot=n_boot, rng=rng, blocks=days[usable]
                )
            except (ArithmeticError, ValueError) as exc:
                notes.append(f"{name}: {exc}")
                continue
            parts[name] = result
            if not getattr(result, "converged", True):
                notes.append(f"{name}: {result.message}")
    else:
        notes.append(
            "temperature response: fewer than 10 observations with a positive flux and a soil "
            "temperature"
        )
    try:
        parts["diel"] = temporal.diel(frame["time_local_standard"], flux)
    except (ArithmeticError, ValueError) as exc:
        notes.append(f"diel cycle: {exc}")
    try:
        filled = temporal.gap_fill(frame, time="time_utc", zone=chosen.time_zone)
    except (ArithmeticError, ValueError) as exc:
        notes.append(f"gap-filling and sums: {exc}")
    else:
        parts["filled"] = filled
        try:
            for freq, name in (("day", "daily"), ("month", "monthly"), ("period", "period")):
                parts[name] = temporal.sums(filled, gas, freq)
            parts["cumulative"] = temporal.cumulative_sums(filled, gas)
        except (ArithmeticError, ValueError) as exc:
            notes.append(f"sums: {exc}")
    return SideTemporal(chosen.label, notes=tuple(notes), **parts)


def _temperature_difference(ta: SideTemporal, tb: SideTemporal) -> dict[str, dict[str, Any]]:
    """Systems compared on R10 and Q10 (and E0): b - a with CIs, per model."""
    from . import temporal

    out: dict[str, dict[str, Any]] = {}
    for model in ("q10", "lloyd_taylor"):
        fa, fb = getattr(ta, model), getattr(tb, model)
        if fa is None or fb is None or not (fa.converged and fb.converged):
            continue
        try:
            out[model] = temporal.compare_temperature_response(fa, fb)
        except (ArithmeticError, ValueError):
            continue
    return out


def _rate_per_day(chosen: Selection) -> float:
    """Observations per day over the span the series covers (0 when it has fewer than two
    distinct times). By counts, not by the median interval: a survey that measures three
    times on a visit every few days has short intervals but a low rate."""
    t = np.unique(chosen.frame["time_utc"].dropna().to_numpy())
    if len(t) < 2:
        return 0.0
    span_days = (t[-1] - t[0]) / np.timedelta64(1, "D")
    return len(t) / span_days if span_days > 0 else 0.0


def _sampling(
    sel_a: Selection,
    sel_b: Selection,
    temporal_a: SideTemporal,
    temporal_b: SideTemporal,
    gas: str,
    n_boot: int,
    rng: np.random.Generator,
) -> SamplingEmulation | None:
    """The sparser side's schedule emulated on the denser side's gap-filled series, when it
    samples at least four times less often (with its own fluxes: the method bias too)."""
    from . import temporal

    ra, rb = _rate_per_day(sel_a), _rate_per_day(sel_b)
    if not (ra > 0 and rb > 0):
        return None
    if ra >= _SPARSE_RATIO * rb:
        dense, sparse, filled, names = sel_a, sel_b, temporal_a.filled, ("a", "b")
    elif rb >= _SPARSE_RATIO * ra:
        dense, sparse, filled, names = sel_b, sel_a, temporal_b.filled, ("b", "a")
    else:
        return None
    if filled is None:
        return SamplingEmulation(
            names[0],
            names[1],
            dense.label,
            sparse.label,
            None,
            f"not possible: the {names[0]} side's series could not be gap-filled",
        )
    finite = np.isfinite(sparse.frame["flux"].to_numpy(dtype=float))
    times = sparse.frame["time_utc"][finite]
    try:
        result = temporal.emulate_sampling(
            filled,
            times,
            gas=gas,
            sample_flux=sparse.frame["flux"][finite].to_numpy(dtype=float),
            n_boot=n_boot,
            rng=rng,
        )
        note = (
            f"the {names[1]} side's {len(times)} measurement times applied to the "
            f"{names[0]} side's gap-filled series"
        )
    except (ArithmeticError, ValueError) as exc:
        result, note = None, f"not possible: {exc}"
    return SamplingEmulation(names[0], names[1], dense.label, sparse.label, result, note)


# --- the terminal table ---------------------------------------------------------------------

#: rows of the terminal table: (label, key in Agreement.as_dict())
_TABLE = (
    ("bias (b - a)", "bias"),
    ("relative bias", "relative_bias"),
    ("RMSD", "rmsd"),
    ("MAE", "mae"),
    ("Pearson r", "r"),
    ("CCC (Lin)", "ccc"),
    ("  precision", "ccc_precision"),
    ("  accuracy", "ccc_accuracy"),
    ("limits of agreement, lower", "loa_lower"),
    ("limits of agreement, upper", "loa_upper"),
    ("Deming slope", "deming_slope"),
    ("Deming intercept", "deming_intercept"),
    ("SMA slope", "sma_slope"),
    ("SMA intercept", "sma_intercept"),
    ("Passing-Bablok slope", "passing_bablok_slope"),
    ("Passing-Bablok intercept", "passing_bablok_intercept"),
    ("OLS slope (reference)", "ols_slope"),
    ("OLS intercept (reference)", "ols_intercept"),
)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "-"
    if number and abs(number) < 10.0**-digits:
        return f"{number:.{max(digits - 1, 1)}e}"
    return f"{number:.{digits}f}"


def _ci(value: Any, digits: int = 3) -> str:
    if not value:
        return ""
    lo, hi = value
    return f"[{_num(lo, digits)}, {_num(hi, digits)}]"


def _table(c: Comparison) -> list[str]:
    flat = plain(c.agreement.as_dict()) if c.agreement is not None else {}
    unit = c.a.flux_unit
    pairs = c.pairing.pairs
    if len(pairs):
        first = min(pairs["time_a"].min(), pairs["time_b"].min())
        last = max(pairs["time_a"].max(), pairs["time_b"].max())
        span = f"pairs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    else:
        span = "no pairs"
    asked = ""
    if c.settings.start_utc or c.settings.end_utc:
        asked = f" (asked: {c.settings.start_utc or 'start'} to {c.settings.end_utc or 'end'})"
    lines = [
        f"compare {c.settings.gas} [{unit}], b - a; {span}{asked}",
        f"  a: {c.a.describe()}",
        f"  b: {c.b.describe()}",
        *c.pairing.diagnostics.lines(),
        "",
        f"{'statistic':<28}{'estimate':>10}   95% CI (block bootstrap by local standard day, "
        f"{c.settings.n_boot} resamples, seed {c.settings.seed})",
        f"{'pairs':<28}{flat.get('n_pairs', len(c.pairing)):>10}",
    ]
    for label, key in _TABLE:
        if key not in flat:
            continue
        lines.append(f"{label:<28}{_num(flat[key]):>10}   {_ci(flat.get(key + '_ci'))}")
    if flat.get("error_ratio") is not None:
        lines.append(
            f"{'Deming error ratio':<28}{_num(flat['error_ratio']):>10}   "
            f"({flat.get('error_ratio_source', '')})"
        )
    if c.sampling is not None:
        lines.append("")
        r = plain(c.sampling.result) if c.sampling.result is not None else None
        if isinstance(r, dict):
            lines.append(
                f"sparse sampling: {c.sampling.note}: relative bias of the period sum "
                f"{_num(r.get('relative_bias'))} {_ci(r.get('relative_bias_ci'))} "
                f"({_num(r.get('sparse_sum'))} vs {_num(r.get('continuous_sum'))} {r.get('unit')})"
            )
            if r.get("method_relative_bias") is not None:
                lines.append(
                    f"  method part (the {c.sampling.sparse} side's own sums at those times): "
                    f"relative bias {_num(r.get('method_relative_bias'))} "
                    f"{_ci(r.get('method_relative_bias_ci'))}"
                )
        else:
            lines.append(f"sparse sampling: {c.sampling.note}")
    for name, table in c.breakdowns.items():
        lines.append("")
        lines += _breakdown_lines(name, table)
    if c.baselines:
        lines.append("")
        lines.append("within-system baseline (between collars of one system, same period):")
        lines += ["  " + b.line() for b in c.baselines]
    lines.append("")
    p = c.processing
    lines.append(f"processing part: {p.reason}")
    if p.status == "compared":
        for label, value in (("own", p.own), ("common", p.common)):
            d = plain(value.as_dict()) if value is not None else {}
            lines.append(
                f"  {label:<7} n {d.get('n_pairs', 0)}, bias {_num(d.get('bias'))} "
                f"{_ci(d.get('bias_ci'))}, RMSD {_num(d.get('rmsd'))}, CCC {_num(d.get('ccc'))}"
            )
    for side in (c.temporal_a, c.temporal_b):
        q10 = plain(side.q10) if side.q10 is not None else None
        if isinstance(q10, dict) and q10.get("converged", True):
            lines.append(
                f"temperature response {side.label}: R10 {_num(q10.get('r10'))} "
                f"{_ci(q10.get('r10_ci'))}, Q10 {_num(q10.get('q10'))} {_ci(q10.get('q10_ci'))}"
            )
        period = side.period
        if period is not None and len(period):
            row = plain(period)[0]
            key = next((k for k in row if k.startswith("sum_")), None)
            if key:
                suffix = key.removeprefix("sum_")
                unit = period.attrs.get("unit", suffix)
                lines.append(
                    f"  period sum {_num(row[key])} +- {_num(row.get('total_se_' + suffix))} "
                    f"{unit} ({_num(row.get('filled_fraction'), 2)} of it gap-filled)"
                )
        for note in side.notes:
            lines.append(f"  note {side.label}: {note}")
    for model, parameters in c.temperature_difference.items():
        for name, d in parameters.items():
            v = plain(d)
            lines.append(
                f"temperature response b - a ({model} {name}): {_num(v.get('difference'))} "
                f"{_ci(v.get('difference_ci'))}"
            )
    return lines


def _breakdown_lines(name: str, table: pd.DataFrame) -> list[str]:
    """A breakdown as a compact table: class, n, bias [CI], relative bias, RMSD, r, CCC."""
    column = table.columns[0]
    lines = [
        f"by {name}:",
        f"  {'class':<16} {'n':>6} {'bias':>9} {'95% CI':<20} {'rel. bias':>9} {'RMSD':>8} "
        f"{'r':>8} {'CCC':>8}",
    ]
    if not len(table):
        lines.append("  (no classes: the pairs have no such values)")
    for row in table.to_dict(orient="records"):
        ci = ""
        if "bias_ci_low" in row:
            ci = _ci((row["bias_ci_low"], row["bias_ci_high"]))
        lines.append(
            f"  {row[column]!s:<16} {row['n_pairs']:>6} {_num(row.get('bias')):>9} {ci:<20} "
            f"{_num(row.get('relative_bias')):>9} {_num(row.get('rmsd')):>8} "
            f"{_num(row.get('r')):>8} {_num(row.get('ccc')):>8}"
        )
    return lines


def _value(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("value")
    return entry


def _interval(values: dict[str, Any], name: str) -> Any:
    entry = values.get(name)
    if isinstance(entry, dict):
        return entry.get("ci")
    return values.get(f"{name}_ci")
