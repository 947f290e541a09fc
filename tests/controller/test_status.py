"""``chamberd status`` in virtual time with the in-memory hardware: whether the daemon runs
(its heartbeat fresh, its pid), what it does now (the round, each group's chamber and
phase), the next round; and ``status --watch`` redrawn on an injected clock."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import to_toml
from chamberd.controller.daemon import HEARTBEAT_S
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.status import (
    STALE_S,
    daemon_status,
    format_status,
    site_status,
    watch_status,
)
from chamberd.controller.store import SiteStore

START = dt.datetime(2026, 7, 1, 3, 59, tzinfo=dt.UTC)  # 11:59 at the site (Asia/Shanghai)


@pytest.fixture
def site(tmp_path, make_site_cfg):
    cfg = make_site_cfg(4, 2, protocol="memory", db=tmp_path / "site.db")
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    s = build_site(cfg, clock=clock, site=sim, memory=True)
    yield s
    s.close()


def _status(site, now=None):
    store = SiteStore.open_readonly(site.cfg.storage.path)
    try:
        return site_status(site.cfg, store, now or site.clock.now())
    finally:
        store.close()


def test_status_says_what_the_daemon_does_now_and_the_next_round(site):
    daemon = site.daemon
    seen: dict[str, dict] = {}
    progress = daemon._progress

    def snapshot(analyser_id, chamber, phase, uuid):
        progress(analyser_id, chamber, phase, uuid)
        if chamber == "C1" and phase not in seen:  # status read while C1 is in this phase
            seen[phase] = _status(site)

    daemon._progress = snapshot
    daemon.startup()
    before = _status(site)["daemon"]
    assert before["running"] and before["state"] == "idle" and before["pid"] > 0
    assert before["next_round_at"] == "2026-07-01T04:00:00.000000Z"
    assert before["next_round"] == "2026-07-01 12:00:00 CST (04:00:00 UTC)"

    daemon.run_round(dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC))
    assert set(seen) == {"prepurge", "closing", "deadband", "observing", "opening", "postpurge"}
    during = seen["observing"]["daemon"]
    assert during["running"] and during["state"] == "measuring"
    assert during["round_at"] == "2026-07-01T04:00:00.000000Z"
    c1 = next(a for a in during["activity"] if a["analyser"] == "irga1")
    assert c1["chamber"] == "C1" and c1["phase"] == "observing" and c1["observation_uuid"]
    assert during["next_round_at"] == "2026-07-01T04:30:00.000000Z"  # the one after this
    assert {a["analyser"] for a in during["activity"]} <= {"irga1", "irga2"}
    table = format_status(seen["observing"])
    assert "daemon: running (pid" in table
    assert "now: round of 2026-07-01 12:00:00 CST (04:00:00 UTC)" in table
    assert "  irga1: C1 observing since " in table

    after = _status(site)
    assert after["daemon"]["state"] == "idle" and after["daemon"]["activity"] == []
    assert after["daemon"]["next_round_at"] == "2026-07-01T04:30:00.000000Z"
    text = format_status(after)
    assert "now: idle, waiting for the next round" in text
    assert "next round: 2026-07-01 12:30:00 CST (04:30:00 UTC)" in text

    # no heartbeat for longer than STALE_S: not running, whatever the last one said
    later = site.clock.now() + dt.timedelta(seconds=STALE_S + 60)
    stale = _status(site, later)["daemon"]
    assert not stale["running"] and stale["why"] == "no heartbeat for 3 min"
    assert (
        format_status(_status(site, later))
        .splitlines()[1]
        .startswith("daemon: NOT RUNNING (no heartbeat for 3 min; last heartbeat ")
    )
    # while it waits, the heartbeat is written at least every HEARTBEAT_S
    at = _status(site)["daemon"]["heartbeat_at"]
    site.clock.advance(HEARTBEAT_S + 1)
    daemon.idle()
    assert _status(site)["daemon"]["heartbeat_at"] > at

    daemon.shutdown("end of test")
    stopped = _status(site)["daemon"]
    assert not stopped["running"] and stopped["why"] == "stopped"


def test_a_heartbeat_whose_process_is_gone_is_not_running(site):
    site.daemon.startup()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = SiteStore(site.cfg.storage.path, site_id=site.cfg.site.id)
    beat = store.heartbeat()
    store.write_heartbeat({**beat, "pid": gone.pid, "at": site.clock.now(), "activity": []})
    store.close()
    reader = SiteStore.open_readonly(site.cfg.storage.path)
    try:
        status = daemon_status(reader, site.clock.now(), time_zone="Asia/Shanghai")
    finally:
        reader.close()
    assert not status["running"] and status["why"] == f"process {gone.pid} is gone"
    assert status["pid_exists"] is False


def test_no_heartbeat_yet(tmp_path, make_site_cfg):
    cfg = make_site_cfg(2, 1, protocol="memory", db=tmp_path / "site.db")
    SiteStore(cfg.storage.path, site_id=cfg.site.id).close()
    store = SiteStore.open_readonly(cfg.storage.path)
    try:
        status = site_status(cfg, store, START)
    finally:
        store.close()
    why = "no heartbeat: the daemon has not run here"
    assert status["daemon"] == {"running": False, "why": why}
    assert "daemon: NOT RUNNING (no heartbeat: the daemon has not run here)" in format_status(
        status
    )


def test_watch_redraws_on_the_injected_clock(site):
    """Three refreshes 61 s apart in virtual time: the heartbeat ages, and the third view
    (more than STALE_S after the last heartbeat) says the daemon is not running."""
    site.daemon.startup()
    site.daemon.run_round(dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC))
    clock = site.clock
    out = io.StringIO()
    drawn = watch_status(
        lambda: _status(site, clock.now()), clock, interval_s=61, refreshes=3, out=out
    )
    assert drawn == 3
    frames = out.getvalue().split("\x1b[H\x1b[2J")[1:]
    assert len(frames) == 3
    stamps = [f.splitlines()[0] for f in frames]
    assert stamps[0].startswith("chamberd status --watch  2026-07-01 04:0")
    assert "(every 61 s; Ctrl-C ends)" in stamps[0]
    assert "daemon: running" in frames[0] and "daemon: running" in frames[1]
    assert "daemon: NOT RUNNING (no heartbeat for 2 min" in frames[2]
    assert all("health:" in f for f in frames)


def test_status_command_json_and_watch(site, capsys, tmp_path):
    site.daemon.startup()
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site.cfg), encoding="utf-8")
    assert main(["status", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["daemon"]["pid"] > 0 and status["daemon"]["next_round_at"]
    assert main(["status", str(config), "--watch", "--count", "2", "--interval", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.count("chamberd status --watch") == 2 and out.count("health:") == 2
    assert main(["status", str(config), "--watch", "--json"]) == 2
