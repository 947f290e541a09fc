"""A 5 % span drift over a simulated week: the daemon measures the simulated site (its
analyser's span drifting 5 % in the week), checks the analyser through the manifold at both
ends of the week (the automatic zero/span check), uploads everything; refitted with
``--apply-calibrations`` the fluxes recover the simulator's truth within 1 %, without they
end the week about 5 % off. Records reach the central database exactly once."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chamberd.controller.cli import main
from chamberd.controller.config import parse_config
from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import Central
from chamberd.network_sync.sync import upload_site

ROOT = Path(__file__).resolve().parents[2]
DRIFT_PER_WEEK = 0.05
# 02:50 local (UTC+8) on 1 July: rounds every 6 h from local midnight; the automatic check
# is due at 03:00 local, so it runs after the 06:00 round, on 1 July and on 8 July
START = dt.datetime(2026, 6, 30, 18, 50, tzinfo=dt.UTC)
DAYS = 7 + 4 / 24


@pytest.fixture(scope="module")
def drifted_week(tmp_path_factory):
    """A site database after a simulated week (measured once per module)."""
    from chamberd.calibration.cylinders import Cylinders
    from chamberd.controller.app import build_site
    from chamberd.controller.clock import FakeClock
    from chamberd.controller.sim.site import SimulatedSite

    folder = tmp_path_factory.mktemp("week")
    data = tomllib.loads((ROOT / "controller/examples/sim-site.toml").read_text())
    for analyser in data["analysers"]:
        analyser["protocol"] = "memory"
    data["storage"] = {"path": str(folder / "site.db")}
    data["sync"] = {"system": "auto"}
    data["schedule"] = {"interval_min": 360, "misfire_grace_s": 3600}
    data["sim"]["span_drift_per_day"] = DRIFT_PER_WEEK / 7
    data["calibration"]["automatic"] = {
        "every_days": 7,
        "analyser": "irga",
        "zero_slot": "zero",
        "span_slots": ["span1", "span2"],
        "purge_s": 60,
        "average_s": 30,
        "at": "03:00",
    }
    cfg = parse_config(data)
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    cylinders = Cylinders(store)
    for cid, value in (("ZERO-N2-01", 0.0), ("SPAN-1000-01", 1000.0), ("SPAN-450-01", 450.0)):
        cylinders.add(
            cylinder_id=cid,
            gas="co2",
            value=value,
            expires_on="2030-01-01",
            entered_by="test",
            at=START,
        )
    store.close()
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    site.daemon.run(until=START + dt.timedelta(days=DAYS))
    site.daemon.shutdown("end")
    site.close()
    # per closure: the true flux and the analyser's span error then
    truth = {
        (t.chamber, t.sealed_at.replace(microsecond=0)): (
            t.flux_umol_m2_s,
            sim.span_gain("irga", t.sealed_at),
        )
        for t in sim.closures()
    }
    gains = {when: sim.span_gain("irga", when) for when in (START, START + dt.timedelta(days=7))}
    return cfg, truth, gains


def _errors(central: Central, version: str, truth: dict) -> list[tuple[Any, ...]]:
    """(closure time, relative error against the simulator's truth, flux, the span gain
    then) per refitted flux, in closure order."""
    rows = central.query(
        "SELECT o.chamber, o.begin_utc, f.flux FROM fluxes f JOIN observations o "
        "ON o.uuid = f.observation_uuid WHERE f.processing_version = ? AND f.gas = 'co2'",
        (version,),
    )
    out = []
    for r in rows:
        begin = r["begin_utc"]
        if isinstance(begin, str):
            begin = dt.datetime.fromisoformat(begin.replace("Z", "+00:00"))
        # the simulator's truth of the closure that sealed just after the lid began to close
        match = [
            (sealed, flux)
            for (chamber, sealed), flux in truth.items()
            if chamber == r["chamber"] and 0 <= (sealed - begin).total_seconds() < 120
        ]
        assert match, r
        out.append((begin, r["flux"] / match[0][1][0] - 1.0, r["flux"], match[0][1][1]))
    return sorted(out, key=lambda x: x[0])


def test_span_drift_over_a_week_is_corrected_by_the_checks(drifted_week, site_copy, tmp_path):
    cfg, truth, gains = drifted_week
    assert gains[START] == pytest.approx(1.0, abs=1e-6)
    assert gains[START + dt.timedelta(days=7)] == pytest.approx(1 + DRIFT_PER_WEEK, rel=1e-6)
    _, db = site_copy(cfg, tmp_path)
    url = f"sqlite:///{tmp_path / 'central.db'}"
    store = SiteStore(db, site_id=cfg.site.id)
    try:
        checks = store.query(
            "SELECT id, status, performed_at, data FROM calibrations ORDER BY performed_at"
        )
        assert len(checks) == 2, checks
        found = [json.loads(c["data"])["checks"] for c in checks]
        span1 = [next(x for x in f if x["reference"] == 1000.0)["measured"] for f in found]
        assert span1[0] == pytest.approx(1000.0, rel=0.003)
        assert span1[1] == pytest.approx(1051.0, rel=0.003)
        with Central.connect(url) as central:
            central.migrate()
            summary = upload_site(store, central, cfg, clock=_clock())
            assert summary.calibrations["sent"] == 2
            again = upload_site(store, central, cfg, clock=_clock())
            assert again.calibrations == {
                "sent": 0,
                "unchanged": 0,
                "revised": 0,
                "remaining": 0,
                "batches": 0,
            }
            assert central.query("SELECT count(*) AS n FROM calibrations")[0]["n"] == 2
    finally:
        store.close()
    for flag in ([], ["--apply-calibrations"]):
        assert main(["refit", "--target", url, "--method", "exponential", *flag]) == 0
    with Central.connect(url) as central:
        raw = _errors(central, "central-exponential-dbstored", truth)
        cal = _errors(central, "central-exponential-dbstored-cal", truth)
        assert len(raw) == len(cal) > 100
        last_day = [e for t, e, *_ in raw if t > START + dt.timedelta(days=6)]
        median_raw = statistics.median(e for _, e, *_ in raw)
        median_raw_end = statistics.median(last_day)
        median_cal = statistics.median(e for _, e, *_ in cal)
        print(
            f"uncorrected: median {median_raw:+.4f}, last day {median_raw_end:+.4f}; "
            f"corrected: median {median_cal:+.4f}, median |error| "
            f"{statistics.median(abs(e) for _, e, *_ in cal):.4f}"
        )
        # corrected: the truth within 1 %; uncorrected: the week ends about 5 % high
        assert abs(median_cal) < 0.01
        assert 0.04 < median_raw_end < 0.065
        assert 0.015 < median_raw < 0.035
        # closure by closure the correction removes the analyser's span error: the ratio of
        # the corrected to the uncorrected flux is 1 / gain at the closure (to 0.3 %)
        for (t, _, flux_raw, gain), (t_cal, _, flux_cal, _) in zip(raw, cal, strict=True):
            assert t == t_cal
            assert flux_cal / flux_raw == pytest.approx(1.0 / gain, rel=0.003), t
        # every refitted observation names the calibrations in force
        links = central.query(
            "SELECT observation_uuid, count(*) AS n FROM refit_calibrations "
            "WHERE processing_version = 'central-exponential-dbstored-cal' "
            "GROUP BY observation_uuid"
        )
        assert len(links) == len(cal)
        ids = {r["id"] for r in central.query("SELECT id FROM calibrations")}
        linked = {
            r["calibration_id"]
            for r in central.query("SELECT calibration_id FROM refit_calibrations")
        }
        assert linked == ids
        # the raw samples are untouched: the site's fluxes and the stored samples agree
        n_site = central.query(
            "SELECT count(*) AS n FROM fluxes WHERE processing_version NOT LIKE 'central-%'"
        )[0]["n"]
        assert n_site > 0


def _clock():
    from chamberd.controller.clock import FakeClock

    return FakeClock(start=START + dt.timedelta(days=8))


def _synthetic(central: Central, *, serial: str | None, analyser: str | None) -> None:
    """One site, one observation whose analyser reads 5 % high and 3 umol/mol offset, and
    a zero/span check of that analyser a day before (both backends)."""
    import numpy as np

    from chamberd.network_sync.sync import register_site, upsert_calibrations

    register_site(central, site_id="S", system_id="auto", at="2026-07-01T00:00:00Z")
    t = np.arange(0.0, 121.0)
    true = 420.0 + 0.8 / 0.002 * (1 - np.exp(-0.002 * t))
    measured = 3.0 + 1.05 * true
    central.execute(
        "INSERT INTO observations (uuid, site_id, system_id, chamber, begin_utc, status, "
        "dead_band_s, observation_s, area_cm2, volume_cm3, pressure_kpa, air_temperature_degc, "
        "analyser_serial, analyser, content_hash, received_at) VALUES ('o1', 'S', 'auto', "
        "'C1', '2026-07-02T00:00:00Z', 'done', 10, 120, 317.8, 5000, 99.5, 20, ?, ?, 'h', "
        "'2026-07-02T01:00:00Z')",
        (serial, analyser),
    )
    central.executemany(
        "INSERT INTO samples (site_id, observation_uuid, seq, elapsed_s, co2_umol_mol) "
        "VALUES ('S', 'o1', ?, ?, ?)",
        [(i, float(x), float(c)) for i, (x, c) in enumerate(zip(t, measured, strict=True))],
    )
    checks = [
        {"gas": "co2", "at": "2026-07-01T00:00:00Z", "reference": 0.0, "measured": 3.0},
        {"gas": "co2", "at": "2026-07-01T00:00:00Z", "reference": 1000.0, "measured": 1053.0},
    ]
    upsert_calibrations(
        central,
        [
            {
                "id": "cal-1",
                "analyser": "irga",
                "procedure": "zero-span-check",
                "performed_at": "2026-07-01T00:00:00Z",
                "instrument_serial": "SN-7",
                "status": "fail",
                "data": json.dumps({"checks": checks, "adjusted": False}),
            }
        ],
        site_id="S",
        now="2026-07-01T00:00:00Z",
    )


@pytest.mark.parametrize(
    ("serial", "analyser", "matched"),
    [("SN-7", None, True), (None, "irga", True), ("SN-other", "irga", True), (None, None, False)],
)
def test_apply_calibrations_on_both_backends(central_url, serial, analyser, matched):
    """Matched by serial, else by analyser id; the corrected flux is the uncorrected one
    divided by the gain (the offset cancels); unmatched: refitted uncorrected, flagged."""
    from chamberd.network_sync.central_refit import refit

    with Central.connect(central_url) as central:
        central.migrate()
        with central.transaction():
            _synthetic(central, serial=serial, analyser=analyser)
        plain = refit(central, method="linear")
        report = refit(central, method="linear", apply_calibrations=True)
        assert (report.corrected, report.uncalibrated) == (int(matched), int(not matched))
        rows = {
            r["processing_version"]: r
            for r in central.query("SELECT processing_version, flux, flags FROM fluxes")
        }
        raw = rows[plain.processing_version]
        cal = rows[report.processing_version]
        links = central.query("SELECT * FROM refit_calibrations")
        if matched:
            assert cal["flux"] == pytest.approx(raw["flux"] / 1.05, rel=1e-6)
            assert [(r["calibration_id"], r["gain"], r["offset_mf"]) for r in links] == [
                ("cal-1", pytest.approx(1.05), pytest.approx(3.0))
            ]
            assert cal["flags"] == ""
        else:
            assert cal["flux"] == pytest.approx(raw["flux"], rel=1e-12)
            assert links == [] and "no_calibration" in cal["flags"]
        # the samples are untouched
        first = central.query("SELECT co2_umol_mol FROM samples WHERE seq = 0")[0]
        assert first["co2_umol_mol"] == pytest.approx(3.0 + 1.05 * 420.0)
