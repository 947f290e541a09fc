"""A simulated day of 8 chambers on two analysers, in virtual time (seconds of wall time).

The daemon runs with the in-memory hardware on a FakeClock: the schedule, the phases, the
parallel analyser groups, the fitting and the store are the production code.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import statistics

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.clock import FakeClock
from chamberd.controller.sim.site import SimulatedSite

START = dt.datetime(2026, 7, 1, 15, 59, 50, tzinfo=dt.UTC)  # 23:59:50 at the site
PHASES = [
    "prepurge_at",
    "closing_at",
    "closed_at",
    "deadband_at",
    "observing_at",
    "opening_at",
    "opened_at",
    "postpurge_at",
    "ended_at",
]


@pytest.fixture(scope="module")
def day(tmp_path_factory, make_site_cfg):
    make = make_site_cfg
    db = tmp_path_factory.mktemp("day") / "site.db"
    cfg = make(8, 2, protocol="memory", db=db)
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    site.daemon.run(until=START + dt.timedelta(days=1))
    site.daemon.shutdown("end of the test day")
    site.close()
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    yield cfg, sim, con
    con.close()


def test_every_scheduled_observation_is_present_once(day):
    _, _, con = day
    rounds = con.execute("SELECT scheduled_at, status FROM rounds ORDER BY scheduled_at")
    rounds = rounds.fetchall()
    assert len(rounds) == 48
    assert {r["status"] for r in rounds} == {"done"}
    starts = [dt.datetime.fromisoformat(r["scheduled_at"]) for r in rounds]
    assert all(s.minute in (0, 30) and s.second == 0 for s in starts)  # aligned to the clock
    rows = con.execute(
        "SELECT chamber, round_id, count(*) AS n, min(status) AS status FROM observations "
        "GROUP BY chamber, round_id"
    ).fetchall()
    assert len(rows) == 48 * 8
    assert {r["n"] for r in rows} == {1}
    assert {r["status"] for r in rows} == {"done"}
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 48 * 8
    missing = con.execute(
        "SELECT count(*) FROM observations o WHERE NOT EXISTS "
        "(SELECT 1 FROM fluxes f WHERE f.observation_uuid = o.uuid AND f.selected = 1)"
    )
    assert missing.fetchone()[0] == 0


def test_phases_in_order_and_groups_in_parallel(day):
    cfg, _, con = day
    observations = con.execute("SELECT * FROM observations ORDER BY started_at").fetchall()
    for o in observations:
        times = [o[p] for p in PHASES]
        assert None not in times, o["uuid"]
        assert o["started_at"] == o["closing_at"]  # the uuid is minted as the lid closes
        assert times == sorted(times), (o["uuid"], times)
        closed = dt.datetime.fromisoformat(o["closed_at"])
        opening = dt.datetime.fromisoformat(o["opening_at"])
        observing = dt.datetime.fromisoformat(o["observing_at"])
        # LI-COR's convention: the observation length counts from closure, dead band included
        assert (opening - closed).total_seconds() == pytest.approx(120, abs=1.5)
        assert (observing - closed).total_seconds() == pytest.approx(20, abs=1.5)
    by_round: dict[int, list[sqlite3.Row]] = {}
    for o in observations:
        by_round.setdefault(o["round_id"], []).append(o)
    group = {c.id: c.analyser for c in cfg.chambers}
    for members in by_round.values():
        for analyser in ("irga1", "irga2"):
            mine = [o for o in members if group[o["chamber"]] == analyser]
            # one analyser: its chambers in sequence, never two lids closed at once
            for a, b in itertools.pairwise(mine):
                assert a["ended_at"] <= b["prepurge_at"]
        first = {group[o["chamber"]]: o for o in reversed(members)}
        # the two groups start together
        t1 = dt.datetime.fromisoformat(first["irga1"]["prepurge_at"])
        t2 = dt.datetime.fromisoformat(first["irga2"]["prepurge_at"])
        assert abs((t1 - t2).total_seconds()) < 5


def test_samples_and_metadata(day):
    _cfg, _, con = day
    counts = con.execute(
        "SELECT o.uuid, count(s.seq) AS n, sum(s.phase = 'observing') AS obs FROM observations o "
        "JOIN samples s ON s.observation_uuid = o.uuid GROUP BY o.uuid"
    ).fetchall()
    assert len(counts) == 48 * 8
    assert all(98 <= r["obs"] <= 102 for r in counts)
    o = con.execute("SELECT * FROM observations WHERE chamber = 'C1' LIMIT 1").fetchone()
    assert o["config_hash"] and o["software_version"] and o["geometry_since"] == "2026-01-01"
    assert o["volume_cm3"] > 0 and o["area_cm2"] == pytest.approx(317.8)
    assert o["soil_temperature_degc"] is not None and o["pressure_kpa"] is not None


def test_fluxes_follow_the_simulator_truth(day):
    _, sim, con = day
    truth = {(t.chamber, t.sealed_at.replace(microsecond=0)): t for t in sim.closures()}
    rows = con.execute(
        "SELECT o.chamber, o.closed_at, f.model, f.flux FROM fluxes f "
        "JOIN observations o ON o.uuid = f.observation_uuid WHERE f.gas = 'co2'"
    ).fetchall()
    errors: dict[str, list[float]] = {"exponential": [], "linear": []}
    by_chamber = {}
    for t in sim.closures():
        by_chamber.setdefault(t.chamber, []).append(t)
    for r in rows:
        closed = dt.datetime.fromisoformat(r["closed_at"])
        t = min(by_chamber[r["chamber"]], key=lambda c: abs((c.sealed_at - closed).total_seconds()))
        assert abs((t.sealed_at - closed).total_seconds()) < 10
        errors[r["model"]].append(r["flux"] / t.flux_umol_m2_s - 1.0)
    assert truth
    exp = errors["exponential"]
    lin = errors["linear"]
    assert len(exp) == len(lin) == 48 * 8
    # the exponential recovers the truth; the linear fit of a bending curve is biased low
    assert abs(statistics.median(exp)) < 0.02
    assert statistics.median(abs(e) for e in exp) < 0.03
    assert sum(abs(e) < 0.10 for e in exp) / len(exp) > 0.95
    assert statistics.median(lin) < -0.10
