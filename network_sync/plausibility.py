"""Physical plausibility of imported data: one rule table for every importer.

Every importer (``li8100a``, ``li8200``, ``li8250``, ``cosore``, ``manual-csv``) builds the
same records: an observation dict, its flux dicts and its sample dicts (the sync payload
shape, see :mod:`chamberd.network_sync.sync`). Before anything is written, each record is
checked against :data:`RULES`. A rule names the record kind and field, the condition a
value must meet, what happens when it does not, and where the limit comes from:

``refuse``
    the observation is refused, so the file is rejected whole, with the reason;
``withhold``
    the value is stored as missing (the observation is kept), and the file's report and
    its ``ingest_log`` row say which rule fired on how many records, and where.

Missing values (``None``) pass every rule: a rule judges only what a file states. The
table is documented, rule by rule, in ``docs/import.md`` ("Plausibility").

One data-set-level rule lives beside the table: :func:`soil_moisture_scale` decides whether
a soil-moisture column declared in m3 m-3 is really in percent (COSORE ``CSR_SM*``).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PRESSURE_KPA",
    "REFUSE",
    "RULES",
    "TEMPERATURE_DEGC",
    "WITHHOLD",
    "Finding",
    "Limits",
    "Rule",
    "check",
    "soil_moisture_scale",
    "summarise",
    "withhold",
]

REFUSE = "refuse"
WITHHOLD = "withhold"

#: air, soil and cell temperatures chamberd accepts [degC]
TEMPERATURE_DEGC = (-60.0, 70.0)
#: air and cell pressures chamberd accepts [kPa]
PRESSURE_KPA = (50.0, 110.0)
#: the first year an imported observation may begin in
FIRST_YEAR = 1980


@dataclass(frozen=True)
class Limits:
    """Limits that depend on the import's clock: the last plausible begin year."""

    last_year: int

    @classmethod
    def at(cls, now: dt.datetime) -> Limits:
        """Limits for an import made at ``now`` (begin years up to next year)."""
        return cls(last_year=now.year + 1)


@dataclass(frozen=True)
class Rule:
    """One plausibility rule: ``test(value, record, limits)`` is True for a plausible value."""

    record: str  # "observation" | "flux" | "sample"
    field: str
    action: str  # REFUSE | WITHHOLD
    condition: str  # what a plausible value is, for messages
    source: str  # why the limit is where it is (docs/import.md repeats it)
    test: Callable[[Any, dict[str, Any], Limits], bool]

    @property
    def name(self) -> str:
        return f"{self.record}.{self.field}"


@dataclass(frozen=True)
class Finding:
    """A rule that fired on one record."""

    rule: Rule
    where: str  # file, and line or observation (and sample) where known
    value: Any
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.where}: {self.rule.field} = {_show(self.value)}: {self.rule.condition}"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _positive(value: Any, record: dict[str, Any], limits: Limits) -> bool:
    x = _number(value)
    return x is not None and math.isfinite(x) and x > 0


def _not_negative(value: Any, record: dict[str, Any], limits: Limits) -> bool:
    x = _number(value)
    return x is not None and math.isfinite(x) and x >= 0


def _finite(value: Any, record: dict[str, Any], limits: Limits) -> bool:
    x = _number(value)
    return x is not None and math.isfinite(x)


def _within(low: float, high: float) -> Callable[[Any, dict[str, Any], Limits], bool]:
    def test(value: Any, record: dict[str, Any], limits: Limits) -> bool:
        x = _number(value)
        return x is not None and math.isfinite(x) and low <= x <= high

    return test


def _year(value: Any) -> int | None:
    if isinstance(value, dt.datetime):
        return value.year
    try:
        return dt.datetime.fromisoformat(str(value)).year
    except ValueError:
        return None


def _plausible_year(value: Any, record: dict[str, Any], limits: Limits) -> bool:
    year = _year(value)
    return year is not None and FIRST_YEAR <= year <= limits.last_year


def _not_before_begin(value: Any, record: dict[str, Any], limits: Limits) -> bool:
    try:
        end = dt.datetime.fromisoformat(str(value))
        begin = dt.datetime.fromisoformat(str(record.get("started_at")))
        return end >= begin
    except (TypeError, ValueError):
        return True  # a begin time that does not parse is the begin rule's business


_T = f"within {TEMPERATURE_DEGC[0]:g} .. {TEMPERATURE_DEGC[1]:g} degC"
_P = f"within {PRESSURE_KPA[0]:g} .. {PRESSURE_KPA[1]:g} kPa"
_T_SOURCE = (
    "beyond the coldest and hottest soils and chamber air chambers are run in; a value "
    "outside is a sensor fault or a missing-value code such as -9999"
)
_P_SOURCE = (
    "50 kPa is about 5,500 m above sea level, above any soil-respiration site; 110 kPa is "
    "above the highest sea-level pressure recorded (108.4 kPa); a value outside is in "
    "another unit (hPa, atm, psi)"
)
_GEOMETRY = "the flux divides by the area and scales with the volume"

#: The rule table. Order is the order findings are reported in.
RULES: tuple[Rule, ...] = (
    Rule(
        "observation",
        "started_at",
        REFUSE,
        f"must be in the years {FIRST_YEAR} .. next year",
        "chamber systems with infrared gas analysers date from the 1980s; a later year is a "
        "clock or date-format error",
        _plausible_year,
    ),
    Rule(
        "observation",
        "ended_at",
        REFUSE,
        "must not be before the begin time",
        "an observation ends after it begins",
        _not_before_begin,
    ),
    Rule("observation", "area_cm2", REFUSE, "must be finite and > 0 cm2", _GEOMETRY, _positive),
    Rule("observation", "volume_cm3", REFUSE, "must be finite and > 0 cm3", _GEOMETRY, _positive),
    Rule(
        "observation",
        "observation_s",
        REFUSE,
        "must be finite and > 0 s",
        "a closure lasts some time",
        _positive,
    ),
    Rule(
        "observation",
        "dead_band_s",
        REFUSE,
        "must be finite and >= 0 s",
        "the dead band is a time after closing",
        _not_negative,
    ),
    Rule(
        "observation",
        "offset_cm",
        REFUSE,
        "must be finite",
        "the collar offset enters the chamber volume",
        _finite,
    ),
    Rule(
        "observation",
        "soil_moisture_pct",
        REFUSE,
        "must not exceed 100 % (1 m3 m-3)",
        "a volume of soil holds at most its own volume of water; a larger value is in another unit",
        lambda v, r, lim: _number(v) is not None and not _number(v) > 100.0,
    ),
    Rule(
        "observation",
        "soil_moisture_pct",
        WITHHOLD,
        "must be finite and >= 0 %",
        "negative readings are a sensor below its calibration range or a missing-value code",
        _not_negative,
    ),
    Rule(
        "observation", "soil_temperature_degc", WITHHOLD, _T, _T_SOURCE, _within(*TEMPERATURE_DEGC)
    ),
    Rule(
        "observation", "air_temperature_degc", WITHHOLD, _T, _T_SOURCE, _within(*TEMPERATURE_DEGC)
    ),
    Rule("observation", "pressure_kpa", REFUSE, _P, _P_SOURCE, _within(*PRESSURE_KPA)),
    Rule(
        "flux",
        "flux",
        REFUSE,
        "must be finite",
        "a flux that is not a number is not stored as one",
        _finite,
    ),
    *(
        Rule("flux", name, WITHHOLD, "must be finite", "a statistic of the fit", _finite)
        for name in ("flux_se", "r2", "nrmse")
    ),
    Rule(
        "sample",
        "elapsed_s",
        REFUSE,
        "must be finite",
        "the time axis of the trace",
        _finite,
    ),
    *(
        Rule("sample", name, WITHHOLD, "must be finite", "a reading of the trace", _finite)
        for name in ("co2_umol_mol", "h2o_mmol_mol", "ch4_nmol_mol", "n2o_nmol_mol")
    ),
    Rule("sample", "cell_temperature_degc", WITHHOLD, _T, _T_SOURCE, _within(*TEMPERATURE_DEGC)),
    Rule("sample", "cell_pressure_kpa", WITHHOLD, _P, _P_SOURCE, _within(*PRESSURE_KPA)),
)


def check(
    observation: dict[str, Any],
    fluxes: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    *,
    where: str,
    limits: Limits,
) -> list[Finding]:
    """Every rule of :data:`RULES` that fires on one observation and its fluxes and samples.

    Pure: the records are not changed (see :func:`withhold`). ``where`` names the file and
    the observation's line or place in it.
    """
    findings = []
    records: list[tuple[str, str, dict[str, Any]]] = [("observation", where, observation)]
    records += [("flux", f"{where}, {f.get('gas')} {f.get('model')} flux", f) for f in fluxes]
    records += [
        ("sample", f"{where}, sample {s.get('seq', i) + 1}", s) for i, s in enumerate(samples)
    ]
    for kind, place, record in records:
        for rule in _BY_RECORD[kind]:
            value = record.get(rule.field)
            if value is None:
                continue
            if not rule.test(value, record, limits):
                findings.append(Finding(rule, place, value, record))
    return findings


def withhold(findings: Iterable[Finding]) -> int:
    """Store the values of the ``withhold`` findings of :func:`check` as missing (in their
    records); the number of values withheld."""
    n = 0
    for finding in findings:
        if finding.rule.action == WITHHOLD:
            finding.record[finding.rule.field] = None
            n += 1
    return n


def summarise(findings: Sequence[Finding], *, examples: int = 3) -> list[str]:
    """One line per rule that fired: how often, what was done, and the first places."""
    by_rule: dict[Rule, list[Finding]] = {}
    for finding in findings:
        by_rule.setdefault(finding.rule, []).append(finding)
    lines = []
    for rule in RULES:
        hits = by_rule.get(rule)
        if not hits:
            continue
        done = "refused" if rule.action == REFUSE else "stored as missing"
        shown = "; ".join(f"{h.where} ({_show(h.value)})" for h in hits[:examples])
        more = f"; +{len(hits) - examples} more" if len(hits) > examples else ""
        lines.append(
            f"{rule.field} {rule.condition} [rule {rule.name}]: {len(hits)} {rule.record}(s) "
            f"{done}: {shown}{more}"
        )
    return lines


def soil_moisture_scale(values: Sequence[float], column: str) -> tuple[float, str | None]:
    """The factor from a column declared in m3 m-3 to percent, and a note when it is not 100.

    A column whose median is above 1 and whose maximum is at most 100 is in percent already
    (no soil holds more than 1 m3 m-3 of water, and a median above 1 m3 m-3 is not a
    sensor glitch): its values are read as percent (factor 1) and the note says so. Any
    other column is taken as declared (factor 100); values above 1 m3 m-3 are then refused
    by the ``soil_moisture_pct`` rule.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 100.0, None
    median, largest = statistics.median(finite), max(finite)
    if median > 1.0 and largest <= 100.0:
        return 1.0, (
            f"{column} is declared in m3 m-3, but its values are percent (median "
            f"{median:.4g}, maximum {largest:.4g} over {len(finite)} values): read as "
            "percent (x 0.01 m3 m-3), not as m3 m-3"
        )
    return 100.0, None


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else f"{value}"
    return text if len(text) <= 40 else text[:37] + "..."


_BY_RECORD: dict[str, tuple[Rule, ...]] = {
    kind: tuple(r for r in RULES if r.record == kind) for kind in ("observation", "flux", "sample")
}
