"""Service accounting, alarms, restarts and the operator commands, in virtual time."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
import time

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import to_toml
from chamberd.controller.sim.site import SimulatedSite

START = dt.datetime(2026, 7, 1, 3, 59, 50, tzinfo=dt.UTC)
SHORT = {"prepurge_s": 5, "dead_band_s": 10, "observation_s": 60, "postpurge_s": 5}


def _site(cfg, clock, sim=None):
    sim = sim or SimulatedSite(cfg, clock)
    return sim, build_site(cfg, clock=clock, site=sim, memory=True)


def _rows(db, sql, *args):
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return con.execute(sql, args).fetchall()


def test_failing_chamber_goes_out_of_service_and_is_retried(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    cycle = {**SHORT, "max_failures": 2, "retry_after_min": 60}
    cfg = make_site_cfg(4, 1, protocol="memory", db=db, cycle=cycle)
    clock = FakeClock(start=START)
    sim, site = _site(cfg, clock)
    sim.faults.lid_stuck["C2"] = "open"
    site.daemon.run(until=START + dt.timedelta(hours=2, minutes=15))  # rounds 04:00 .. 06:00
    sim.faults.lid_stuck.clear()  # repaired at 06:05
    site.daemon.run(until=START + dt.timedelta(hours=4, minutes=5))  # 06:30 .. 08:00
    site.daemon.shutdown("end")
    site.close()
    c2 = _rows(db, "SELECT status, round_id FROM observations WHERE chamber = 'C2'")
    rounds = {r["id"]: r["scheduled_at"][11:16] for r in _rows(db, "SELECT * FROM rounds")}
    # two failures (04:00, 04:30): out of service for an hour, so 05:00 and 05:30 are
    # skipped; the retry at 06:00 fails (out for another hour: 06:30, 07:00 skipped); after
    # the repair the retry at 07:30 succeeds and it stays in service
    assert [(rounds[r["round_id"]], r["status"]) for r in c2] == [
        ("04:00", "aborted"),
        ("04:30", "aborted"),
        ("06:00", "aborted"),
        ("07:30", "done"),
        ("08:00", "done"),
    ]
    others = _rows(db, "SELECT DISTINCT status FROM observations WHERE chamber != 'C2'")
    assert [r["status"] for r in others] == ["done"]  # the other chambers kept measuring
    kinds = [r["kind"] for r in _rows(db, "SELECT kind FROM events WHERE chamber = 'C2'")]
    assert kinds.count("out_of_service") == 1
    assert "retry_chamber" in kinds and "back_in_service" in kinds
    assert _rows(db, "SELECT out_of_service_until FROM chambers WHERE id = 'C2'")[0][0] is None


def test_alarm_command_receives_each_alarm_as_json(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    inbox = tmp_path / "alarms.jsonl"
    script = tmp_path / "alarm.py"
    script.write_text(
        "import sys, pathlib\n"
        f"pathlib.Path({str(inbox)!r}).open('a').write(sys.stdin.read().strip() + '\\n')\n"
    )
    cfg = make_site_cfg(
        2,
        1,
        protocol="memory",
        db=db,
        cycle=SHORT,
        alarms={"command": f"{sys.executable} {script}"},
    )
    clock = FakeClock(start=START)
    sim, site = _site(cfg, clock)
    sim.faults.lid_stuck["C1"] = "open"
    site.daemon.run(until=START + dt.timedelta(minutes=10))
    site.daemon.shutdown("end")
    site.close()
    deadline = time.monotonic() + 20  # noqa: TID251 - real time: the command runs in a thread
    while time.monotonic() < deadline and "lid_timeout" not in (  # noqa: TID251
        inbox.read_text() if inbox.exists() else ""
    ):
        time.sleep(0.05)  # noqa: TID251
    alarms = [json.loads(line) for line in inbox.read_text().splitlines()]
    timeout = next(a for a in alarms if a["kind"] == "lid_timeout")
    assert timeout["site"] == cfg.site.id and timeout["chamber"] == "C1"
    assert timeout["level"] == "error" and timeout["observation_uuid"]
    assert "did not close" in timeout["message"]
    assert all(a["level"] != "info" for a in alarms)  # info events are not alarms


def test_failing_alarm_command_is_recorded_not_fatal(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    cfg = make_site_cfg(
        1, 1, protocol="memory", db=db, cycle=SHORT, alarms={"command": "/nonexistent/alarm"}
    )
    clock = FakeClock(start=START)
    sim, site = _site(cfg, clock)
    sim.faults.lid_stuck["C1"] = "open"
    site.daemon.run(until=START + dt.timedelta(minutes=10))
    deadline = time.monotonic() + 20  # noqa: TID251
    while time.monotonic() < deadline and not _rows(  # noqa: TID251
        db, "SELECT 1 FROM events WHERE kind = 'alarm_failed'"
    ):
        time.sleep(0.05)  # noqa: TID251
    site.daemon.shutdown("end")
    site.close()
    failed = _rows(db, "SELECT message FROM events WHERE kind = 'alarm_failed'")
    assert failed and "/nonexistent/alarm" in failed[0]["message"]


def test_rounds_missed_while_down_are_events_not_replayed(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    cfg = make_site_cfg(2, 1, protocol="memory", db=db, cycle=SHORT)
    clock = FakeClock(start=START)
    sim, site = _site(cfg, clock)
    site.daemon.run(until=START + dt.timedelta(minutes=40))  # 04:00 and 04:30
    site.daemon.shutdown("maintenance")
    site.close()
    clock.advance(2 * 3600)  # down for two hours: 05:00 .. 06:30 pass
    _, site = _site(cfg, clock, sim)
    site.daemon.run(until=START + dt.timedelta(hours=3, minutes=10))
    site.daemon.shutdown("end")
    site.close()
    rounds = {r["scheduled_at"][11:16]: r["status"] for r in _rows(db, "SELECT * FROM rounds")}
    assert rounds == {
        "04:00": "done",
        "04:30": "done",
        "05:00": "missed",
        "05:30": "missed",
        "06:00": "missed",
        "06:30": "missed",  # 9 min 50 s late at the restart: beyond the 120 s grace
        "07:00": "done",
    }
    missed = _rows(db, "SELECT message FROM events WHERE kind = 'missed_round'")
    assert len(missed) == 4 and all("not running" in m["message"] for m in missed)
    per_round = _rows(db, "SELECT round_id, count(*) AS n FROM observations GROUP BY round_id")
    assert {r["n"] for r in per_round} == {2}  # no burst of catch-up rounds


def test_late_start_within_grace_runs_the_round(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    cfg = make_site_cfg(1, 1, protocol="memory", db=db, cycle=SHORT)
    clock = FakeClock(start=START + dt.timedelta(seconds=40))  # 04:00:30, grace 120 s
    _, site = _site(cfg, clock)
    site.daemon.run(until=START + dt.timedelta(minutes=5))
    site.daemon.shutdown("end")
    site.close()
    rounds = _rows(db, "SELECT scheduled_at, status FROM rounds")
    assert [(r["scheduled_at"][11:19], r["status"]) for r in rounds] == [("04:00:00", "done")]


@pytest.fixture(scope="module")
def measured(tmp_path_factory, make_site_cfg):
    """A site database after two rounds, and its configuration file."""
    folder = tmp_path_factory.mktemp("site")
    cfg = make_site_cfg(3, 1, protocol="memory", db=folder / "site.db", cycle=SHORT)
    clock = FakeClock(start=START)
    sim, site = _site(cfg, clock)
    sim.faults.lid_stuck["C3"] = "open"
    site.daemon.run(until=START + dt.timedelta(minutes=40))
    site.daemon.shutdown("end")
    site.close()
    config = folder / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    return config, folder / "site.db"


def test_status_json(measured, capsys):
    config, db = measured
    assert main(["status", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["database"] == str(db.resolve())
    chambers = {c["chamber"]: c for c in status["chambers"]}
    assert chambers["C1"]["in_service"] and chambers["C1"]["last_observation"]["status"] == "done"
    assert chambers["C1"]["last_flux"]["flux"] > 0
    assert chambers["C3"]["last_observation"]["status"] == "aborted"
    health = {h["component"]: h["ok"] for h in status["health"]}
    assert health["analyser:irga1"] is True and health["modbus:relays1"] is True
    assert any(w["kind"] == "lid_timeout" for w in status["recent_warnings"])
    assert status["last_successful_round"]["scheduled_at"].startswith("2026-07-01T04:30")
    assert status["disk_free_mb"] > 0


def test_status_table(measured, capsys):
    config, _ = measured
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    assert "last successful round: 2026-07-01T04:30" in out
    assert "C3" in out and "did not close" in out and "analyser:irga1" in out


def test_status_without_a_database_is_a_message(tmp_path, make_site_cfg, capsys):
    cfg = make_site_cfg(1, 1, protocol="memory", db=tmp_path / "none.db")
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    assert main(["status", str(config)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_writes_a_png(measured, tmp_path, capsys):
    _, db = measured
    uuid = _rows(db, "SELECT uuid FROM observations WHERE status = 'done' LIMIT 1")[0][0]
    out = tmp_path / "obs.png"
    assert main(["plot", str(db), uuid, "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(db), "no-such-uuid", "-o", str(out)]) == 2
    assert "no-such-uuid" in capsys.readouterr().err


def test_check_config_prints_the_resolved_config(measured, capsys):
    config, _ = measured
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {config}: valid; config hash ")
    assert "[cycle]" in out and "max_failures = 3" in out  # defaults filled in


def test_check_config_reports_every_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[site]\nid = "x"\n[[analysers]]\nid = "a"\nprotocol = "li850"\nport = "loop://"\n'
        '[[chambers]]\nid = "C1"\nanalyser = "b"\nlid = { device = "m", coil = 0 }\n'
        "geometry = [{ since = 2026-01-01, area_cm2 = 0, volume_cm3 = 5000 }]\n"
        "[cycle]\nobservation_s = -1\ncolour = 1\n"
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "chambers[0].geometry[0].area_cm2" in err
    assert "cycle.observation_s" in err
    assert "cycle.colour" in err


def test_samples_are_pruned_only_after_upload(tmp_path, make_site_cfg):
    db = tmp_path / "site.db"
    cfg = make_site_cfg(
        1, 1, protocol="memory", db=db, cycle=SHORT, storage={"keep_samples_days": 1}
    )
    clock = FakeClock(start=START)
    _, site = _site(cfg, clock)
    site.daemon.run(until=START + dt.timedelta(hours=1))  # 04:00, 04:30
    first = _rows(db, "SELECT uuid FROM observations ORDER BY started_at")[0][0]
    with sqlite3.connect(db) as con:  # the first one was uploaded
        con.execute("DELETE FROM outbox WHERE observation_uuid = ?", (first,))
    clock.advance(86400)
    site.daemon.run(until=START + dt.timedelta(days=1, hours=1, minutes=10))
    site.daemon.shutdown("end")
    site.close()
    counts = dict(
        _rows(db, "SELECT observation_uuid, count(*) FROM samples GROUP BY observation_uuid")
    )
    assert first not in counts  # uploaded and older than a day: its samples are gone
    assert len(counts) == len(_rows(db, "SELECT uuid FROM observations")) - 1
    assert _rows(db, "SELECT count(*) FROM fluxes WHERE observation_uuid = ?", first)[0][0] == 2
