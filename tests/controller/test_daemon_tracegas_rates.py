"""Two analysers of one chamber loop at different output rates, in virtual time: loop 1 an
LI-850-like CO2 analyser every 1 s and an LI-7810-like CH4 analyser every 2 s, loop 2 the CO2
analyser every 1 s and an LI-7820-like N2O analyser every 3 s (the production daemon, store
and fitting on memory analysers, as test_daemon_tracegas.py). Each analyser keeps its own
rate in the stored trace and the fluxes still recover the truth.

Measured on this seeded site (3 h, 24 observations): CO2 median |error| 2.0 % (irga1) and
1.3 % (irga2), max 4.6 %; CH4 (2 s) median 0.4 %, max 1.0 %; N2O (3 s, 6 closures where
emitted) median 5.4 %, max 6.7 %; tg1's lag from the closing CO2 step median 6.0 s (5-8 s).
Asserted: CO2 median < 2 % and all within 6 %; CH4 within 2 %; N2O within 10 %; tg1's lag
within 1 s. tg2's lag (from the H2O step, 3 s apart) is not asserted: its estimates scatter
(median 6.5 s against 9 s, 2-16 s), as they do less at 1 s (the 12 h test holds its median).

The faster analyser paces each loop here. The other order is not tested: a memory analyser
faster than its loop's first is polled after its tick, and returns the tick it missed stamped
at the poll beside the next one (pairs of equal stamps), so that case would test the fake, not
the daemon; over the wire a streaming driver queues each line stamped on arrival.
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

from .test_daemon_tracegas import _selected
from .tracegas_site import LAGS_S, tracegas_site

START = dt.datetime(2026, 7, 1, 15, 59, 50, tzinfo=dt.UTC)
HOURS = 3
INTERVALS_S = {"irga1": 1.0, "tg1": 2.0, "irga2": 1.0, "tg2": 3.0}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    db = tmp_path_factory.mktemp("tgrates") / "site.db"
    cfg = tracegas_site(db, intervals_s=INTERVALS_S)
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    site = build_site(cfg, clock=clock, site=sim, memory=True)
    site.daemon.run(until=START + dt.timedelta(hours=HOURS))
    site.daemon.shutdown("end of the test")
    site.close()
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    yield cfg, sim, con
    con.close()


def test_each_analyser_keeps_its_own_rate(day):
    _, _, con = day
    assert {r[0] for r in con.execute("SELECT status FROM observations")} == {"done"}
    assert con.execute("SELECT count(*) FROM observations").fetchone()[0] == HOURS * 2 * 4
    for analyser, interval in INTERVALS_S.items():
        gaps = []
        for (uuid,) in con.execute(
            "SELECT DISTINCT observation_uuid FROM samples WHERE analyser = ?", (analyser,)
        ):
            elapsed = [
                e
                for (e,) in con.execute(
                    "SELECT elapsed_s FROM samples WHERE observation_uuid = ? AND analyser = ? "
                    "AND phase = 'observing' ORDER BY elapsed_s",
                    (uuid, analyser),
                )
            ]
            gaps += [b - a for a, b in itertools.pairwise(elapsed)]
        assert gaps, analyser
        assert statistics.median(gaps) == pytest.approx(interval, abs=0.01), analyser
        assert min(gaps) == pytest.approx(interval, abs=0.01), analyser
    per = dict(con.execute("SELECT analyser, count(*) FROM samples GROUP BY analyser"))
    assert per["tg1"] == pytest.approx(per["irga1"] / 2, rel=0.1)
    assert per["tg2"] == pytest.approx(per["irga2"] / 3, rel=0.1)


def test_fluxes_recover_the_truth_at_each_rate(day):
    _, sim, con = day
    errors: dict[str, list[float]] = {"co2": [], "ch4": [], "n2o": []}
    for r, _, true, quality in _selected(con, sim):
        if true == 0 or (r["gas"] == "ch4" and "ebullition" in r["flags"].split(";")):
            continue
        assert quality["analyser"] == {"co2": r["analyser"], "ch4": "tg1", "n2o": "tg2"}[r["gas"]]
        errors[r["gas"]].append(r["flux"] / true - 1)
    co2, ch4, n2o = errors["co2"], errors["ch4"], errors["n2o"]
    assert len(co2) == HOURS * 2 * 4
    assert statistics.median(abs(e) for e in co2) < 0.02
    assert max(abs(e) for e in co2) < 0.06, max(co2, key=abs)
    assert len(ch4) >= HOURS * 2 * 2 - 3
    assert max(abs(e) for e in ch4) < 0.02, max(ch4, key=abs)
    assert len(n2o) == HOURS * 2  # C3 emits; C4 has none
    assert max(abs(e) for e in n2o) < 0.10, max(n2o, key=abs)


def test_the_slower_analysers_lag_recovered(day):
    _, sim, con = day
    estimates = [
        quality["lag_estimate_s"]
        for _r, _, _, quality in _selected(con, sim)
        if quality["analyser"] == "tg1" and quality["lag_estimate_s"] is not None
    ]
    assert len(estimates) >= HOURS * 2 * 2 * 0.7
    assert statistics.median(estimates) == pytest.approx(LAGS_S["tg1"], abs=1.0)
