"""``chamberd demo --calibration``: a drifted analyser found, adjusted and corrected for.

The story, on the simulated site (``controller/examples/sim-site.toml``, its LI-850 with a
calibration manifold of three cylinders):

1. the analyser's span has drifted: it reads ``SPAN_GAIN`` (5 %) high; the daemon measures
   the four chambers for a week in virtual time (the simulator's analyser on the in-memory
   port: a week of closures in seconds);
2. a trainee runs, through the guided runner with an answers file, the zero/span check and
   then the zero/span adjustment over the real wire: the simulator serves LI-850 XML on
   127.0.0.1 and the manifold's Modbus coils, the runner opens the valves, watches the
   readings until stable, sends ``<CO2ZERO>`` and ``<CO2SPAN>`` and re-checks with a second
   gas (a clock ``TRAINEE_SPEED`` times real time);
3. the daemon measures another week with the adjusted analyser (the instrument's new
   calibration carried over to the in-memory simulator: it is the same instrument);
4. the site is synced to a central database (observations and the calibration records,
   exactly once), and every closure of both weeks is refitted centrally with and without
   ``--apply-calibrations``; each flux is compared with the simulator's truth.

What it reports (``--json``: the last line): ``span_error_before`` and
``span_error_after`` (relative error on the check gas, as found by the check and as left
after the adjustment), ``flux_error_uncorrected`` and ``flux_error_corrected`` (median
relative error of the refitted fluxes of both weeks against the simulator's truth, and the
same per week), ``records_synced`` (calibration records that reached the central database).
"""

from __future__ import annotations

import copy
import datetime as dt
import statistics
import time
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.config import parse_config

__all__ = ["SPAN_GAIN", "run_calibration_demo"]

#: how far the demo analyser's span has drifted (output / true)
SPAN_GAIN = 1.05
#: the trainee's clock runs this many times faster than real time
TRAINEE_SPEED = 30.0
_ANALYSER = "irga"
_CYLINDERS = (
    ("ZERO-N2-01", 0.0, "CO2-free nitrogen"),
    ("SPAN-1000-01", 1000.0, "span gas"),
    ("SPAN-450-01", 450.0, "second span gas, near ambient"),
)
# 02:50 at the site (UTC+8) on 1 July 2026; rounds every 6 hours
START = dt.datetime(2026, 6, 30, 18, 50, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)


def _config(folder: Path, db: Path) -> Any:
    example = resources.files("chamberd.controller.examples") / "sim-site.toml"
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    data["storage"] = {"path": str(db)}
    data["sync"] = {"system": "auto"}
    data["schedule"] = {"interval_min": 360, "misfire_grace_s": 3600}
    data["sim"]["span_gain"] = SPAN_GAIN
    return parse_config(data)


def _memory(cfg: Any) -> Any:
    from chamberd.controller.config import to_toml

    data = tomllib.loads(to_toml(cfg))
    for analyser in data["analysers"]:
        analyser["protocol"] = "memory"
    return parse_config(data)


def _week(cfg: Any, start: dt.datetime, calibration: Any = None) -> list[Any]:
    """A week of the daemon on virtual time; returns the simulator's closures."""
    from chamberd.controller.app import build_site
    from chamberd.controller.sim.site import SimulatedSite

    clock = FakeClock(start=start)
    sim = SimulatedSite(cfg, clock)
    if calibration is not None:
        sim.calibration[_ANALYSER] = copy.deepcopy(calibration)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    try:
        site.daemon.run(until=start + WEEK)
        site.daemon.shutdown("end of the week")
    finally:
        site.close()
    return sim.closures()


def _trainee(cfg: Any, start: dt.datetime, say: Callable[[str], Any]) -> tuple[dict, dict, Any]:
    """The zero/span check, then the adjustment, over the real wire; returns both records
    and the instrument's calibration as left."""
    from chamberd.controller.sim import start_hardware

    from .runner import AnswersConsole, CalibrationRunner

    clock = ScaledClock(speed=TRAINEE_SPEED, start=start)
    answers = {
        "operator": "Trainee (demo)",
        "supervisor": "",
        "zero_cylinder": "ZERO-N2-01",
        "span_cylinders": "SPAN-450-01",
        "span_cylinder": "SPAN-1000-01",
        "check_cylinder": "SPAN-450-01",
        "use_span2": False,
        "zero_h2o": True,
    }
    lines: list[str] = []
    with start_hardware(cfg, clock) as hardware:
        wired = hardware.daemon_config()
        for a in hardware.endpoints()["analysers"]:
            say(f"  analyser {a['id']} ({a['protocol']}) at {a['url']}")
        records = []
        for procedure in ("zero-span-check", "zero-span-adjust"):
            say(f"  trainee runs `chamberd calibrate run {procedure}` (answers file)")
            console = AnswersConsole(answers, source="demo answers", echo=lines.append)
            runner = CalibrationRunner(
                wired, procedure, clock=clock, console=console, analyser=_ANALYSER
            )
            record = runner.run()
            say(f"    {record['status'].upper()}: {record['result']}")
            records.append(record)
        calibration = copy.deepcopy(hardware.site.calibration[_ANALYSER])
    return records[0], records[1], calibration


def _check_gas_error(checks: list[dict[str, Any]], reference: float) -> float | None:
    values = [c["measured"] for c in checks or [] if c.get("reference") == reference]
    values = [v for v in values if v is not None]
    return values[-1] / reference - 1.0 if values else None


def _flux_errors(central: Any, version: str, truth: list[Any]) -> list[tuple[dt.datetime, float]]:
    by_chamber: dict[str, list[Any]] = {}
    for t in truth:
        by_chamber.setdefault(t.chamber, []).append(t)
    out = []
    for r in central.query(
        "SELECT o.chamber, o.begin_utc, f.flux FROM fluxes f JOIN observations o "
        "ON o.uuid = f.observation_uuid WHERE f.processing_version = ? AND f.gas = 'co2'",
        (version,),
    ):
        begin = r["begin_utc"]
        if isinstance(begin, str):
            begin = dt.datetime.fromisoformat(begin.replace("Z", "+00:00"))
        match = [
            t
            for t in by_chamber.get(r["chamber"], [])
            if 0 <= (t.sealed_at - begin).total_seconds() < 120
        ]
        if match and match[0].flux_umol_m2_s and r["flux"] is not None:
            out.append((begin, r["flux"] / match[0].flux_umol_m2_s - 1.0))
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 5) if values else None


def run_calibration_demo(
    *, folder: str | Path = ".", progress: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Run the demo in ``folder`` (its site and central databases are replaced); returns
    ``{"json": {...}, "text": "..."}``."""
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.central_refit import refit
    from chamberd.network_sync.sync import upload_site

    from .cylinders import Cylinders

    say = progress or (lambda _text: None)
    wall_start = time.perf_counter()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "calibration-demo.db"
    central_db = folder / "calibration-demo-central.db"
    for path in (db, central_db):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    cfg = _config(folder, db)
    memory = _memory(cfg)
    from chamberd.controller.store import SiteStore

    store = SiteStore(db, site_id=cfg.site.id)
    try:
        cylinders = Cylinders(store)
        for cid, value, note in _CYLINDERS:
            cylinders.add(
                cylinder_id=cid,
                gas="co2",
                value=value,
                uncertainty=0.0 if value == 0 else round(value * 0.002, 2),
                scale="WMO CO2 X2019",
                certificate_date="2026-01-10",
                expires_on="2029-01-10",
                entered_by="demo",
                at=START,
                note=note,
            )
    finally:
        store.close()
    say(
        f"simulated site {cfg.site.id!r}: {len(cfg.chambers)} chambers, LI-850 {_ANALYSER!r} "
        f"whose span has drifted: it reads {100 * (SPAN_GAIN - 1):+.0f} % "
        f"(the simulator's truth), and a manifold of {len(_CYLINDERS)} cylinders"
    )
    say("week 1: the daemon measures every 6 hours (virtual time) ...")
    before = _week(memory, START)
    session = START + WEEK + dt.timedelta(minutes=15)
    say("the trainee's zero/span check and adjustment, over the real wire:")
    check, adjust, calibration = _trainee(cfg, session, say)
    say("week 2: the daemon measures with the adjusted analyser ...")
    after = _week(memory, session + dt.timedelta(hours=1), calibration)
    say("sync to the central database, then refit with and without --apply-calibrations ...")
    url = f"sqlite:///{central_db}"
    store = SiteStore(db, site_id=cfg.site.id)
    try:
        with Central.connect(url) as central:
            central.migrate()
            sync_clock = FakeClock(start=session + WEEK + dt.timedelta(hours=2))
            summary = upload_site(store, central, cfg, clock=sync_clock)
            again = upload_site(store, central, cfg, clock=sync_clock)
            plain = refit(central, method="exponential")
            corrected = refit(central, method="exponential", apply_calibrations=True)
            truth = before + after
            raw = _flux_errors(central, plain.processing_version, truth)
            cal = _flux_errors(central, corrected.processing_version, truth)
            n_records = central.query("SELECT count(*) AS n FROM calibrations")[0]["n"]
    finally:
        store.close()
    cut = session

    def part(errors: list[tuple[dt.datetime, float]], early: bool) -> float | None:
        return _median([e for t, e in errors if (t < cut) == early])

    check_data = check.get("data") or {}
    adjust_data = adjust.get("data") or {}
    span_before = _check_gas_error(check_data.get("checks", []), 450.0)
    span_after = _check_gas_error(adjust_data.get("checks_after", []), 450.0)
    result = {
        "span_error_before": None if span_before is None else round(span_before, 5),
        "span_error_after": None if span_after is None else round(span_after, 5),
        "flux_error_uncorrected": _median([e for _, e in raw]),
        "flux_error_corrected": _median([e for _, e in cal]),
        "flux_error_uncorrected_week_before": part(raw, True),
        "flux_error_corrected_week_before": part(cal, True),
        "flux_error_uncorrected_week_after": part(raw, False),
        "flux_error_corrected_week_after": part(cal, False),
        "observations": len(raw),
        "records_synced": summary.calibrations.get("sent", 0),
        "records_resent_unchanged": again.calibrations.get("sent", 0),
        "central_calibrations": n_records,
        "check_status": check["status"],
        "adjust_status": adjust["status"],
        "site_database": str(db),
        "central_database": url,
        "wall_s": round(time.perf_counter() - wall_start, 1),
    }
    return {"json": result, "text": _words(result)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def _words(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            "",
            f"The zero/span check found the analyser reading {_pct(r['span_error_before'])} on "
            f"the check gas (450 umol/mol): {r['check_status']}.",
            f"The adjustment (CO2ZERO, CO2SPAN over the wire) left it at "
            f"{_pct(r['span_error_after'])} on the same gas: {r['adjust_status']}.",
            f"{r['records_synced']} calibration records reached the central database "
            f"(sent again: {r['records_resent_unchanged']} new, exactly once).",
            f"{r['observations']} closures of the two weeks refitted centrally; median error "
            "against the simulator's truth:",
            f"  uncorrected: {_pct(r['flux_error_uncorrected'])} "
            f"(week before the adjustment {_pct(r['flux_error_uncorrected_week_before'])}, "
            f"after {_pct(r['flux_error_uncorrected_week_after'])})",
            f"  with --apply-calibrations: {_pct(r['flux_error_corrected'])} "
            f"(week before {_pct(r['flux_error_corrected_week_before'])}, "
            f"after {_pct(r['flux_error_corrected_week_after'])})",
            "A span error scales the flux one to one; the correction from the check removes "
            "it from the week before, and the adjustment from the week after.",
            f"site database: {r['site_database']}",
            f"central database: {r['central_database']}",
            f"wall time: {r['wall_s']:.1f} s",
        ]
    )
