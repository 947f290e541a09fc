"""``chamberd demo --campaign``: a simulated intercomparison campaign with a known truth.

Two systems measure neighbouring collars of one simulated site (the bundled simulated
grassland, its soil model in :mod:`chamberd.controller.sim.site`):

* ``auto``: the automated system: the real daemon (scheduler, cycle runner, fitting, site
  store) measures two chambers every 30 minutes for ``days`` simulated days; the site is
  uploaded to the central database with ``chamberd sync``'s code path
  (:func:`chamberd.network_sync.sync.upload_site`);
* ``survey``: a portable survey chamber on collars ``S1`` and ``S2`` beside ``C1`` and
  ``C2`` (the same soil: the simulator's flux model of its neighbour). Its chamber design
  reads low by a known fraction (``survey_bias``, -13 %: the mean of the non-through-flow
  chambers in Pumpanen et al. 2004, doi:10.1016/j.agrformet.2003.12.001) with a random
  error, and a crew visits every few days in daytime (10:00-14:00 local time). Its
  fluxes are written as the manual-chamber CSV of docs/import.md and imported with the
  importer (:func:`chamberd.network_sync.importers.import_paths`).

The truth is known: the relative bias of the survey is ``survey_bias``, and the
sparse-sampling bias of its schedule is computed from the simulator's true flux of ``C1``
(the trapezoidal sparse estimate between the survey's sampling times, against the integral
of the true flux over the campaign). The comparison (``compare``) and the sampling-schedule
emulation (``temporal.emulate_sampling``) must recover both within their confidence
intervals.

Speed: the automated system runs on the in-memory hardware (the simulator's physics
through :mod:`chamberd.controller.hardware.memory`) with a virtual clock, as the daemon-day
tests do: the schedule, the phases, the fitting and the store are the production code, and
twenty simulated days take seconds, not the hours the wire protocols at a high speed-up
would (``chamberd demo`` shows the wire path).

network_sync is imported lazily (inside the functions), as the daemon does.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import time
import tomllib
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .clock import FakeClock, SystemClock
from .config import SiteConfig, parse_config
from .errors import ConfigError, DataFileError, StorageError

__all__ = [
    "CampaignDesign",
    "SimulatedCampaign",
    "analyse_campaign",
    "format_campaign",
    "load_campaign",
    "run_campaign",
    "simulate_campaign",
    "sparse_relative_bias",
]

#: the campaign starts at local midnight of this day (the simulated site's zone)
START_DATE = dt.date(2026, 7, 1)


@dataclass(frozen=True)
class CampaignDesign:
    """What is simulated, and so what the comparison must find."""

    days: int = 20
    #: the survey chamber's relative bias (Pumpanen et al. 2004: non-through-flow mean)
    survey_bias: float = -0.13
    #: the survey's random error: relative standard deviation of one measurement
    survey_noise: float = 0.08
    #: a survey visit every this many days, from the first day
    survey_every_days: int = 2
    #: the local times a survey loop starts on a visit day (each collar once per loop)
    survey_loops: tuple[str, ...] = ("10:00", "11:30", "13:00")
    #: (automated chamber, survey collar beside it)
    collars: tuple[tuple[str, str], ...] = (("C1", "S1"), ("C2", "S2"))
    seed: int = 10
    #: the automated system's measurement interval [min]
    interval_min: int = 30


@dataclass
class SimulatedCampaign:
    """The simulated campaign: where its files are and what the truth is."""

    design: CampaignDesign
    cfg: SiteConfig
    site_db: Path
    survey_csv: Path
    start_utc: dt.datetime
    end_utc: dt.datetime
    #: survey observations: (collar, start time UTC, observed flux, true flux)
    survey: list[tuple[str, dt.datetime, float, float]]
    #: automated closures: (chamber, sealed at UTC, true flux)
    closures: list[tuple[str, dt.datetime, float]]
    truth: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def site_id(self) -> str:
        return self.cfg.site.id

    def spec(self, system: str, chamber: str) -> str:
        return f"{self.site_id}/{system}/{chamber}"


def campaign_config(folder: Path, design: CampaignDesign) -> SiteConfig:
    """The automated system: the bundled simulated site with the campaign's chambers."""
    example = resources.files("chamberd.controller.examples") / "sim-site.toml"
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    keep = {a for a, _ in design.collars}
    data["chambers"] = [c for c in data["chambers"] if c["id"] in keep]
    data["aux"] = [a for a in data.get("aux", []) if a.get("chamber") in (None, *keep)]
    data["storage"] = {"path": str(folder / "campaign-auto.db")}
    data["schedule"] = {**data["schedule"], "interval_min": design.interval_min}
    data["sync"] = {
        "system": "auto",
        "instrument": "LI-850, automated chambers (simulated)",
        "method": "chamberd",
        "owner": "chamberd demo --campaign",
    }
    data["sim"] = {**data["sim"], "seed": design.seed}
    return parse_config(data, source="the campaign's automated system")


def survey_times(
    design: CampaignDesign, zone: str, rng: np.random.Generator
) -> list[tuple[str, str, dt.datetime]]:
    """(survey collar, its automated neighbour, start time UTC) of every survey closure."""
    tz = zoneinfo.ZoneInfo(zone)
    out = []
    for day in range(0, design.days, design.survey_every_days):
        date = START_DATE + dt.timedelta(days=day)
        for loop in design.survey_loops:
            hour, minute = (int(x) for x in loop.split(":"))
            begin = dt.datetime.combine(date, dt.time(hour, minute), tzinfo=tz)
            for k, (auto, collar) in enumerate(design.collars):
                # the crew walks the collars in order, a closure every ~2.5 minutes
                offset_s = 150.0 * k + float(rng.uniform(0.0, 120.0))
                at = begin + dt.timedelta(seconds=round(offset_s))
                out.append((collar, auto, at.astimezone(dt.UTC)))
    return out


def sparse_relative_bias(
    flux: Callable[[dt.datetime], float],
    sample_times: Sequence[dt.datetime],
    start: dt.datetime,
    end: dt.datetime,
    *,
    step_s: float = 60.0,
) -> float:
    """The relative bias of a sparse estimate of the period mean of ``flux``: the flux at
    ``sample_times`` interpolated linearly between them (held before the first and after
    the last), integrated over [start, end), against the integral of ``flux`` itself
    (midpoint rule on a ``step_s`` grid)."""
    span = (end - start).total_seconds()
    n = max(1, round(span / step_s))
    grid = [start + dt.timedelta(seconds=(i + 0.5) * span / n) for i in range(n)]
    continuous = float(np.mean([flux(t) for t in grid]))
    times = sorted(t for t in sample_times if start <= t < end)
    x = np.array([(t - start).total_seconds() for t in times])
    y = np.array([flux(t) for t in times])
    xs = np.array([(t - start).total_seconds() for t in grid])
    sparse = float(np.mean(np.interp(xs, x, y)))
    return sparse / continuous - 1.0


def simulate_campaign(
    folder: str | Path,
    design: CampaignDesign | None = None,
    *,
    progress: Callable[[str], Any] | None = None,
) -> SimulatedCampaign:
    """Run the automated system through the daemon and write the survey's CSV, in
    ``folder`` (the site database and ``campaign-survey.csv`` are replaced)."""
    from .app import build_site, serve
    from .sim.site import SimulatedSite

    design = design or CampaignDesign()
    say = progress or (lambda _text: None)
    wall_start = time.perf_counter()
    folder = _folder(folder)
    cfg = campaign_config(folder, design)
    db = Path(cfg.storage.path)
    _remove(db, ("", "-wal", "-shm"))
    zone = zoneinfo.ZoneInfo(cfg.site.time_zone)
    start = dt.datetime.combine(START_DATE, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = start + dt.timedelta(days=design.days)
    clock = FakeClock(start=start - dt.timedelta(seconds=10))
    sim = SimulatedSite(cfg, clock)
    chambers = ", ".join(c.id for c in cfg.chambers)
    say(
        f"automated system 'auto' ({chambers}, every {design.interval_min} min): the daemon "
        f"on the simulated site for {design.days} days of virtual time ..."
    )
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    try:
        serve(site, until=end)
    finally:
        site.close()
    closures = [(t.chamber, t.sealed_at, t.flux_umol_m2_s) for t in sim.closures()]
    say(f"  {len(closures)} closures in {db.name}")

    rng = np.random.default_rng([design.seed, 2004])
    survey = []
    for collar, auto, at in survey_times(design, cfg.site.time_zone, rng):
        true = sim.true_flux(auto, at)
        error = float(rng.normal(0.0, design.survey_noise))
        survey.append((collar, at, true * (1.0 + design.survey_bias) * (1.0 + error), true))
    path = folder / "campaign-survey.csv"
    try:
        _write_survey(path, survey, cfg, zone)
    except OSError as exc:
        problem = exc.strerror or exc
        raise StorageError(f"{path}: cannot write the survey's file: {problem}") from exc
    visits = len(range(0, design.days, design.survey_every_days))
    say(
        f"survey system 'survey' ({', '.join(c for _, c in design.collars)}): {len(survey)} "
        f"closures on {visits} visits, 10:00-14:00 local time, in {path.name}"
    )

    first_auto, first_collar = design.collars[0]
    times = [at for collar, at, _, _ in survey if collar == first_collar]
    truth = {
        "relative_bias": design.survey_bias,
        "sparse_sampling_bias": sparse_relative_bias(
            lambda t: sim.true_flux(first_auto, t), times, start, end
        ),
        # what this campaign's random errors made of the design's bias, for reference
        "realised_relative_bias": _realised(survey, first_collar),
        "a": f"{cfg.site.id}/auto/{first_auto}",
        "b": f"{cfg.site.id}/survey/{first_collar}",
    }
    return SimulatedCampaign(
        design=design,
        cfg=cfg,
        site_db=db,
        survey_csv=path,
        start_utc=start,
        end_utc=end,
        survey=survey,
        closures=closures,
        truth=truth,
        wall_s=time.perf_counter() - wall_start,
    )


def _folder(path: str | Path) -> Path:
    """The campaign's folder, created; StorageError naming it when it cannot be written."""
    folder = Path(path).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".chamberd-campaign-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"{folder}: cannot write the campaign's files there: {exc.strerror or exc}"
        ) from exc
    return folder


def _remove(path: Path, suffixes: Sequence[str]) -> None:
    """Delete a database a previous run left (and its journal files)."""
    for suffix in suffixes:
        try:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}{suffix}: cannot replace it: {exc.strerror or exc}") from exc


def _realised(survey: list[tuple[str, dt.datetime, float, float]], collar: str) -> float:
    rows = [(obs, true) for c, _, obs, true in survey if c == collar]
    return sum(o - t for o, t in rows) / sum(t for _, t in rows)


def _write_survey(
    path: Path,
    survey: list[tuple[str, dt.datetime, float, float]],
    cfg: SiteConfig,
    zone: zoneinfo.ZoneInfo,
) -> None:
    """The survey's fluxes as the manual-chamber template (one row per closure)."""
    # a portable survey chamber on a 10 cm collar (LI-8100-103 size)
    area_cm2, volume_cm3 = 317.8, 4076.0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["chamber", "start_time", "co2_flux_umol_m2_s", "area_cm2", "volume_cm3"])
        for collar, at, observed, _true in survey:
            local = at.astimezone(zone).isoformat()
            writer.writerow([collar, local, f"{observed:.4f}", area_cm2, volume_cm3])


def load_campaign(
    campaign: SimulatedCampaign,
    target: str,
    *,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Sync the automated system and import the survey into the central database
    ``target`` (created or upgraded first); the sync and import summaries."""
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.importers import import_paths
    from chamberd.network_sync.sync import upload_site

    from .store import SiteStore

    say = progress or (lambda _text: None)
    clock = SystemClock()  # the upload happens now, after the campaign
    with Central.connect(target, mode="create") as central:  # chamberd central init
        central.migrate()
        store = SiteStore.open_existing(campaign.site_db)
        try:
            summary = upload_site(store, central, campaign.cfg, clock=clock)
        finally:
            store.close()
        say(f"chamberd sync: sent {summary.sent}, conflicts {summary.conflicts}")
        report = import_paths(
            central,
            [campaign.survey_csv],
            site_id=campaign.site_id,
            system_id="survey",
            fmt="manual-csv",
            instrument="portable survey chamber (non-through-flow)",
            clock=clock,
        )
        totals = report.totals()
        if report.rejected:
            raise DataFileError("; ".join(report.rejected[0].reasons))
        say(f"chamberd import (manual-csv): {totals['sent']} survey observations")
    return {"sync": summary.as_dict(), "import": totals}


def run_campaign(
    *,
    folder: str | Path = ".",
    target: str | None = None,
    design: CampaignDesign | None = None,
    report: str | Path | None = "campaign-report.html",
    n_boot: int = 1000,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The whole campaign: simulate, load into ``target`` (default: an SQLite file
    ``campaign-central.db`` in ``folder``, replaced), compare, render the report
    (``report``: relative to ``folder``; None for none).

    Returns ``{"json": the --json object, "comparison": the Comparison, "campaign": the
    SimulatedCampaign}``."""
    wall_start = time.perf_counter()
    folder = _folder(folder)
    if target is None:
        central_db = folder / "campaign-central.db"
        _remove(central_db, ("", "-wal", "-shm", "-journal"))
        target = f"sqlite:///{central_db}"
    campaign = simulate_campaign(folder, design, progress=progress)
    loaded = load_campaign(campaign, target, progress=progress)
    out = analyse_campaign(
        campaign,
        target,
        report=None if report is None else folder / report,
        n_boot=n_boot,
        progress=progress,
    )
    out["json"]["files"] = {
        "site_database": str(campaign.site_db),
        "survey_csv": str(campaign.survey_csv),
    }
    out["json"]["loaded"] = loaded
    out["json"]["wall_s"] = round(time.perf_counter() - wall_start, 2)
    out["campaign"] = campaign
    return out


def format_campaign(result: dict[str, Any]) -> str:
    """The terminal summary of :func:`run_campaign`: the truth beside what was recovered."""
    values = result["json"]
    truth, found = values["truth"], values["comparison"]

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:+.3f}"

    def ci(value: Any) -> str:
        if not value or value[0] is None:
            return "-"
        return f"[{value[0]:+.3f}, {value[1]:+.3f}]"

    lines = [
        "",
        f"{values['b']} (b) against {values['a']} (a), CO2, {found['n_pairs']} pairs",
        f"{'':<24} {'truth':>8} {'recovered':>10} {'95 % CI':>18}  within",
    ]
    for name, label in (
        ("relative_bias", "relative bias (b - a)/a"),
        ("sparse_sampling_bias", "sparse-sampling bias"),
    ):
        within = values["recovered"].get(name)
        mark = "-" if within is None else ("yes" if within else "NO")
        lines.append(
            f"{label:<24} {num(truth[name]):>8} {num(found[name]):>10} "
            f"{ci(found[name + '_ci']):>18}  {mark}"
        )
    lines.append("")
    lines.append("within-system baselines (the floor):")
    lines += [f"  {b['line']}" for b in values["baselines"]]
    lines.append("")
    lines.append(f"central database: {values['database']}")
    if values.get("report"):
        lines.append(f"report: {values['report']}")
    lines.append(
        f"the full table: chamberd compare --target {values['database']} --a {values['a']} "
        f"--b {values['b']}"
    )
    lines.append(f"wall time: {values['wall_s']:.1f} s")
    return "\n".join(lines)


def analyse_campaign(
    campaign: SimulatedCampaign,
    target: str,
    *,
    report: Path | None,
    n_boot: int = 1000,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Compare the survey (b) with the automated system (a) on the neighbouring collars,
    emulate the survey's schedule on the automated series, render the report; the
    ``--json`` object: ``truth``, ``comparison``, ``recovered``, ``report``."""
    import dataclasses

    from chamberd.network_sync.central import Central
    from chamberd.network_sync.compare import SamplingEmulation, compare, temporal

    say = progress or (lambda _text: None)
    design = campaign.design
    a, b = campaign.truth["a"], campaign.truth["b"]
    with Central.connect(target, mode="read") as central:
        result = compare(central, a, b, gas="co2", n_boot=n_boot, seed=design.seed, progress=say)
    # the survey's schedule on the automated system's gap-filled series: the visits are
    # every few days, so a resampled schedule moves each by up to half that spacing
    filled = result.temporal_a.filled
    if filled is None:
        notes = "; ".join(result.temporal_a.notes)
        raise ConfigError(f"{a}: its series could not be gap-filled ({notes})")
    sampling = temporal.emulate_sampling(
        filled,
        result.b.frame["time_utc"],
        gas="co2",
        start=campaign.start_utc,
        end=campaign.end_utc,
        sample_flux=result.b.frame["flux"],
        n_boot=n_boot,
        rng=np.random.default_rng([design.seed, 5]),
        jitter_days=max(1, design.survey_every_days // 2),
    )
    result = dataclasses.replace(
        result,
        sampling=SamplingEmulation(
            continuous="a",
            sparse="b",
            continuous_label=result.a.label,
            sparse_label=result.b.label,
            result=sampling,
            note=(
                f"the survey's {len(result.b)} measurement times applied to the automated "
                f"system's gap-filled series; visits moved by up to "
                f"{max(1, design.survey_every_days // 2)} day(s) for the CI"
            ),
        ),
    )
    values = result.as_dict()
    comparison = {
        name: _finite(values.get(name))
        for name in (
            "n_pairs",
            "relative_bias",
            "relative_bias_ci",
            "sparse_sampling_bias",
            "sparse_sampling_bias_ci",
            "bias",
            "bias_ci",
            "ccc",
            "ccc_ci",
            "deming_slope",
            "deming_slope_ci",
        )
    }
    truth = {k: campaign.truth[k] for k in ("relative_bias", "sparse_sampling_bias")}
    recovered = {name: _within(truth[name], comparison.get(f"{name}_ci")) for name in truth}
    path = None
    if report is not None:
        from chamberd.network_sync.compare.report import render_report

        say(f"rendering the report {report}")
        path = str(render_report(result, report))
    return {
        "json": {
            "truth": {
                **truth,
                "realised_relative_bias": campaign.truth["realised_relative_bias"],
            },
            "comparison": comparison,
            "recovered": recovered,
            "report": path,
            "a": a,
            "b": b,
            "database": _redacted(target),
            "baselines": [
                {"system": x.label, "line": x.line(), "floor": values["baselines"][i]["floor"]}
                for i, x in enumerate(result.baselines)
            ],
        },
        "comparison": result,
    }


def _within(value: float, ci: Any) -> bool | None:
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return bool(ci[0] <= value <= ci[1])


def _redacted(url: str) -> str:
    from chamberd.network_sync.central import redact

    return redact(url)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
