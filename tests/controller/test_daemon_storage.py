"""A site database that cannot be written: the disk really fills, in virtual time.

The disk is a 4 MiB tmpfs mounted for the test (we run as root in CI and the sandbox), then
filled to the last byte with a filler file, so SQLite's own writes fail with "database or
disk is full" (SQLITE_FULL) exactly as on a field logger whose card is full; deleting the
filler gives the space back. Where mounting is refused (an unprivileged run), the same
SQLITE_FULL is produced by SQLite itself with ``PRAGMA max_page_count`` on the daemon's
connection (the database may not grow by a page), and freeing lifts the limit.

The alarm command writes to a file on another file system (the test's tmp folder), so
delivery is shown not to depend on the full disk. The hardware is the in-memory backend on
the simulated site, on a virtual clock whose sleeps run the test's scheduled actions (fill
the disk, look at ``chamberd status``, free the disk) at chosen site times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import to_toml
from chamberd.controller.sim.site import SimulatedSite

START = dt.datetime(2026, 7, 1, 3, 59, 50, tzinfo=dt.UTC)
SHORT = {"prepurge_s": 5, "dead_band_s": 10, "observation_s": 60, "postpurge_s": 5}


class SmallDisk:
    """A small file system that really fills (tmpfs), or SQLite's page limit instead."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(folder)]
        if os.environ.get("CHAMBERD_TEST_NO_MOUNT"):
            command = ["false"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        self.mounted = result.returncode == 0
        self.why = "" if self.mounted else (result.stderr.strip() or "mount refused")
        self.filler = folder / "filler"
        self.store = None  # for the page-limit fallback: the daemon's SiteStore

    @property
    def kind(self) -> str:
        return "tmpfs" if self.mounted else "sqlite max_page_count"

    def fill(self) -> None:
        if self.mounted:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                block = b"\0" * 4096
                while True:
                    try:
                        os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        if len(block) == 1:
                            break
                        block = block[: len(block) // 2]  # to the last byte
            finally:
                os.close(fd)
        else:
            conn = self.store.db.conn
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

    def free(self) -> None:
        if self.mounted:
            with contextlib.suppress(FileNotFoundError):
                self.filler.unlink()
        else:
            self.store.db.conn.execute("PRAGMA max_page_count = 1073741823")

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True, check=False)


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "disk")
    yield d
    d.close()


@pytest.fixture
def full_disk(disk):
    """A real small disk, for the tests that check exact sequences."""
    if not disk.mounted:
        pytest.skip(f"needs a small tmpfs (mount refused: {disk.why})")
    return disk


class ActClock(FakeClock):
    """Virtual time that runs the test's actions once their site time has come."""

    def __init__(self, start: dt.datetime) -> None:
        super().__init__(start)
        self.actions: list[tuple[object, object]] = []
        self.log: list[tuple[dt.datetime, str]] = []

    def when(self, condition, action, name: str) -> None:
        """``condition`` is a time or a callable; ``action`` runs at the first sleep after."""
        self.actions.append((condition, (action, name)))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for entry in list(self.actions):
            condition, (action, name) = entry
            due = condition(self) if callable(condition) else self.now() >= condition
            if due:
                self.actions.remove(entry)
                self.log.append((self.now(), name))
                action()


def _rows(db, sql, *args):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, args).fetchall()]
    finally:
        con.close()


def _alarm_script(tmp_path: Path) -> tuple[str, Path]:
    inbox = tmp_path / "alarms.jsonl"
    script = tmp_path / "alarm.py"
    script.write_text(
        "import sys, pathlib\n"
        f"pathlib.Path({str(inbox)!r}).open('a').write(sys.stdin.read().strip() + '\\n')\n"
    )
    return f"{sys.executable} {script}", inbox


def _alarms(inbox: Path, kinds: set[str], timeout_s: float = 30.0) -> list[dict]:
    """The delivered alarms, once every kind in ``kinds`` has arrived (real time: the
    command runs in a thread)."""
    deadline = time.monotonic() + timeout_s  # noqa: TID251
    while True:
        alarms = (
            [json.loads(line) for line in inbox.read_text().splitlines()] if inbox.exists() else []
        )
        if kinds <= {a["kind"] for a in alarms} or time.monotonic() > deadline:  # noqa: TID251
            return alarms
        time.sleep(0.05)  # noqa: TID251


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"


def _status(config: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _lid_closings(sim, after: float) -> list[tuple[float, str]]:
    return [(t, c) for t, k, c, v in sim.commands if k == "lid" and v and t > after]


def _site(cfg, clock, sim=None):
    sim = sim or SimulatedSite(cfg, clock)
    return sim, build_site(cfg, clock=clock, site=sim, memory=True)


def _check_whole(db):
    """No observation half-written: done ones complete, aborted ones without fluxes."""
    observations = _rows(db, "SELECT uuid, status FROM observations")
    assert all(o["status"] in ("done", "aborted") for o in observations), observations
    for o in observations:
        fluxes = _rows(db, "SELECT count(*) AS n FROM fluxes WHERE observation_uuid = ?", o["uuid"])
        outbox = _rows(db, "SELECT count(*) AS n FROM outbox WHERE observation_uuid = ?", o["uuid"])
        assert outbox[0]["n"] == 1, o
        assert (fluxes[0]["n"] == 2) == (o["status"] == "done"), o
    assert _rows(db, "PRAGMA integrity_check")[0]["integrity_check"] == "ok"


def test_disk_fills_during_a_round(tmp_path, make_site_cfg, full_disk, capsys):
    """(a) The disk fills while C1 is observing: its lid is commanded open although nothing
    can be written, the alarm reaches the command, ``status`` (read-only) shows the storage
    fault, no closure is made while the disk is full, and when space returns everything
    kept in memory is recorded: the interrupted observation ends ``aborted`` with its trace
    up to the fault, the round that could not run is a missed round, and measuring goes on.
    """
    disk = full_disk
    db = disk.folder / "site.db"
    command, inbox = _alarm_script(tmp_path)
    cfg = make_site_cfg(2, 1, protocol="memory", db=db, cycle=SHORT, alarms={"command": command})
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    clock = ActClock(START)
    sim, site = _site(cfg, clock)
    disk.store = site.store
    seen: dict[str, object] = {}

    def c1_observing(clock) -> bool:
        rows = _rows(db, "SELECT observing_at FROM observations WHERE chamber = 'C1'")
        return bool(rows) and rows[-1]["observing_at"] is not None

    def fill() -> None:
        seen["filled_mono"] = clock.monotonic()
        disk.fill()

    def look() -> None:  # chamberd status while the disk is full; it must write nothing
        before = {p.name: _digest(p) for p in disk.folder.glob("site.db*")}
        seen["status"] = _status(config, capsys)
        assert main(["status", str(config)]) == 0
        seen["table"] = capsys.readouterr().out
        seen["unchanged"] = before == {p.name: _digest(p) for p in disk.folder.glob("site.db*")}
        seen["lids_open_during"] = sim.lids_commanded_open()

    clock.when(
        lambda c: c1_observing(c) and c.now() >= START + dt.timedelta(seconds=45), fill, "fill"
    )
    clock.when(START + dt.timedelta(minutes=20), look, "status")
    clock.when(START + dt.timedelta(minutes=45), disk.free, "free")
    site.daemon.run(until=START + dt.timedelta(hours=1, minutes=10))  # 04:00 .. 05:00
    site.daemon.shutdown("end of test")
    site.close()

    # the safe state did not need the database: every lid open at once
    assert seen["lids_open_during"] and sim.lids_commanded_open()
    # nothing closed while the disk was full (04:30 was not measured)
    free_at = next(t for t, name in clock.log if name == "free")
    closings = _lid_closings(sim, seen["filled_mono"])
    assert closings and all(START + dt.timedelta(seconds=t) > free_at for t, _ in closings)

    # status, read-only on the full disk, showed the fault and the kept events
    status = seen["status"]
    assert seen["unchanged"], "chamberd status wrote to the database"
    health = {h["component"]: h for h in status["health"]}
    assert health["storage"]["ok"] is False
    assert "full" in health["storage"]["last_error"]
    assert health["storage"]["source"] == "live"  # the daemon's live file, rewritten in place
    assert status["pending_events"] >= 2
    kinds = {e["kind"] for e in status["recent_pending_events"]}
    assert "storage_failed" in kinds

    # the alarm went to the command (a file on another file system) while nothing could be
    # recorded, short and in one line
    alarms = _alarms(inbox, {"storage_failed"})
    full = next(a for a in alarms if a["kind"] == "storage_failed")
    assert full["level"] == "critical" and "\n" not in full["message"]
    assert "all lids commanded open" in full["message"] and len(full["message"]) <= 300

    # what was kept in memory was recorded when space returned, in order
    events = _rows(db, "SELECT id, at, level, kind, chamber, message FROM events ORDER BY id")
    kinds = [e["kind"] for e in events]
    for kind in ("storage_failed", "storage_abort", "storage_restored", "missed_round"):
        assert kind in kinds, kinds
    assert kinds.index("storage_failed") < kinds.index("storage_restored")
    failed_at = next(e["at"] for e in events if e["kind"] == "storage_failed")
    restored = next(e for e in events if e["kind"] == "storage_restored")
    assert failed_at < restored["at"]  # recorded with the time it happened
    missed = [e for e in events if e["kind"] == "missed_round"]
    assert [m["message"][9:25] for m in missed] == ["2026-07-01T04:30"]
    assert "could not be written" in missed[0]["message"]
    assert all(len(e["message"]) <= 300 and "\n" not in e["message"] for e in events)

    # the observations: the interrupted one aborted with its trace up to the fault; the
    # rounds after the return of space measured both chambers; nothing left running
    obs = _rows(
        db,
        "SELECT o.uuid, o.chamber, o.status, o.reason, r.scheduled_at, "
        "(SELECT count(*) FROM samples s WHERE s.observation_uuid = o.uuid) AS samples "
        "FROM observations o JOIN rounds r ON r.id = o.round_id ORDER BY o.started_at",
    )
    first = obs[0]
    assert (first["chamber"], first["status"]) == ("C1", "aborted")
    assert first["reason"] == "storage: the site database could not be written"
    assert first["samples"] >= 40  # closing and observing until the fault, none lost
    later = [(o["scheduled_at"][11:16], o["chamber"], o["status"]) for o in obs[1:]]
    assert later == [("05:00", "C1", "done"), ("05:00", "C2", "done")]
    rounds = {r["scheduled_at"][11:16]: r["status"] for r in _rows(db, "SELECT * FROM rounds")}
    assert rounds == {"04:00": "partial", "04:30": "missed", "05:00": "done"}
    _check_whole(db)
    health = {r["component"]: r for r in _rows(db, "SELECT * FROM health")}
    assert health["storage"]["ok"] == 1 and "full" in health["storage"]["last_error"]
    print(f"\n[disk: {disk.kind}]\nchamberd status at 04:20, disk full:\n{seen['table']}")
    for e in events:
        print(f"  {e['at']} {e['level']:<8} {e['kind']}: {e['message']}")
    for o in obs:
        print(
            f"  obs {o['scheduled_at'][11:16]} {o['chamber']} {o['status']} "
            f"({o['reason']}) samples={o['samples']}"
        )


def test_disk_full_at_the_completion_keeps_the_observation(tmp_path, make_site_cfg, full_disk):
    """(c) The disk fills after C1's closure was measured, just before its completion: the
    fitted observation is kept in memory and written ``done``, with its fluxes and its
    whole trace, when space returns."""
    disk = full_disk
    db = disk.folder / "site.db"
    cfg = make_site_cfg(2, 1, protocol="memory", db=db, cycle=SHORT)
    clock = ActClock(START)
    sim, site = _site(cfg, clock)
    disk.store = site.store

    def c1_postpurge(_clock) -> bool:
        rows = _rows(db, "SELECT postpurge_at FROM observations WHERE chamber = 'C1'")
        return bool(rows) and rows[-1]["postpurge_at"] is not None

    clock.when(c1_postpurge, disk.fill, "fill")
    clock.when(START + dt.timedelta(minutes=10), disk.free, "free")
    site.daemon.run(until=START + dt.timedelta(minutes=40))  # 04:00 and 04:30
    site.daemon.shutdown("end of test")
    site.close()
    assert sim.lids_commanded_open()
    obs = _rows(
        db,
        "SELECT o.uuid, o.chamber, o.status, o.observing_at, o.round_id, "
        "(SELECT count(*) FROM samples s WHERE s.observation_uuid = o.uuid) AS samples, "
        "(SELECT count(*) FROM fluxes f WHERE f.observation_uuid = o.uuid) AS fluxes "
        "FROM observations o ORDER BY o.started_at",
    )
    # C1 kept and written done; C2 not measured at 04:00 (no closure that could not be
    # recorded); both measured at 04:30
    assert [(o["chamber"], o["status"], o["round_id"]) for o in obs] == [
        ("C1", "done", 1),
        ("C1", "done", 2),
        ("C2", "done", 2),
    ]
    assert obs[0]["fluxes"] == 2 and obs[0]["samples"] >= 60
    kinds = [e["kind"] for e in _rows(db, "SELECT kind FROM events ORDER BY id")]
    assert "storage_failed" in kinds and "storage_restored" in kinds
    _check_whole(db)


def test_start_on_a_full_disk(tmp_path, make_site_cfg, full_disk, capsys):
    """(b) The daemon starts on a full disk after a crash that left a lid closed and an
    observation running: every lid is commanded open before anything else, the alarm goes
    out, nothing is measured until space returns; then the interrupted observation is
    marked aborted (restart) and the site measures."""
    disk = full_disk
    db = disk.folder / "site.db"
    command, inbox = _alarm_script(tmp_path)
    cfg = make_site_cfg(3, 1, protocol="memory", db=db, cycle=SHORT, alarms={"command": command})
    clock = ActClock(START)
    sim, site = _site(cfg, clock)
    site.daemon.run(until=START + dt.timedelta(minutes=10))  # 04:00 measured
    # a crash in the middle of the next closure: observation running, the lid of C2 shut
    site.store.start_observation(
        {
            "chamber": "C2",
            "started_at": "2026-07-01T04:30:05.000000Z",
            "config_hash": site.daemon.config_hash,
            "software_version": "test",
            "time_zone": cfg.site.time_zone,
        }
    )
    sim.command_lid("C2", True)
    site.close()  # no shutdown: killed

    disk.fill()
    mark = len(sim.commands)
    clock.advance(25 * 60)  # restarted at 04:28:48, on the full disk
    _, site = _site(cfg, clock, sim)
    clock.when(START + dt.timedelta(hours=1, minutes=15), disk.free, "free")
    # 04:30 and 05:00 not measured (full), space back at 05:15, 05:30 measured
    site.daemon.run(until=START + dt.timedelta(hours=1, minutes=40))
    site.daemon.shutdown("end of test")
    site.close()

    # every lid commanded open first, before any other command or any closing
    after = sim.commands[mark:]
    first = after[:3]
    assert [(k, c, v) for _, k, c, v in first] == [
        ("lid", "C1", False),
        ("lid", "C2", False),
        ("lid", "C3", False),
    ]
    free_mono = next((t - START).total_seconds() for t, name in clock.log if name == "free")
    closes = [(t, c) for t, k, c, v in after if k == "lid" and v]
    assert closes and min(t for t, _ in closes) > free_mono  # nothing closed while full
    alarms = _alarms(inbox, {"storage_failed", "startup"})
    kinds = {a["kind"]: a for a in alarms}
    assert kinds["storage_failed"]["level"] == "critical"
    assert "starting up" in kinds["storage_failed"]["message"]
    assert "recovery of the last run waits" in kinds["startup"]["message"]

    obs = _rows(
        db,
        "SELECT o.chamber, o.status, o.reason, r.scheduled_at FROM observations o "
        "LEFT JOIN rounds r ON r.id = o.round_id ORDER BY o.started_at",
    )
    crashed = [o for o in obs if o["scheduled_at"] is None]
    assert [(o["chamber"], o["status"], o["reason"]) for o in crashed] == [
        ("C2", "aborted", "restart")
    ]
    last = [(o["scheduled_at"][11:16], o["status"]) for o in obs if o["scheduled_at"]]
    assert last[-3:] == [("05:30", "done")] * 3
    rounds = {r["scheduled_at"][11:16]: r["status"] for r in _rows(db, "SELECT * FROM rounds")}
    assert rounds == {"04:00": "done", "04:30": "missed", "05:00": "missed", "05:30": "done"}
    missed = _rows(db, "SELECT message FROM events WHERE kind = 'missed_round'")
    assert len(missed) == 2 and all("could not be written" in m["message"] for m in missed)
    events = [e["kind"] for e in _rows(db, "SELECT kind FROM events ORDER BY id")]
    assert "restart_recovered" in events and "storage_restored" in events
    _check_whole(db)


def test_a_clean_stop_on_a_full_disk_loses_no_lid(tmp_path, make_site_cfg, full_disk):
    """Stopping while the disk is still full: lids open, the kept events go to the log,
    and the next start (with space) marks the interrupted observation aborted."""
    disk = full_disk
    db = disk.folder / "site.db"
    cfg = make_site_cfg(1, 1, protocol="memory", db=db, cycle=SHORT)
    clock = ActClock(START)
    sim, site = _site(cfg, clock)
    disk.store = site.store
    clock.when(START + dt.timedelta(seconds=50), disk.fill, "fill")
    site.daemon.run(until=START + dt.timedelta(minutes=5))
    site.daemon.shutdown("stopped while full")
    assert sim.lids_commanded_open()
    assert site.daemon.alarm.pending  # could not be recorded: they are in the log
    site.close()
    disk.free()
    _, site = _site(cfg, clock, sim)
    disk.store = site.store
    site.daemon.startup()
    site.daemon.shutdown("end")
    site.close()
    obs = _rows(db, "SELECT status, reason FROM observations")
    assert [(o["status"], o["reason"]) for o in obs] == [("aborted", "restart")]
    _check_whole(db)


def test_disk_fills_at_random_moments(tmp_path, make_site_cfg, disk):
    """Seeded: the disk fills at 16 random moments of a round (any write: a phase, samples,
    a completion, an event, the health, the round's end, the service record) and frees
    after a random outage. Each time the daemon keeps running, every lid is open and
    nothing closes while the disk is full, every warning it raised is recorded in the end,
    every slot is a round (done, partial or missed), and no observation is half-written."""
    import random

    rng = random.Random(20260701)
    for trial in range(16):
        db = disk.folder / f"site{trial}.db"
        cfg = make_site_cfg(3, 1, protocol="memory", db=db, cycle=SHORT)
        clock = ActClock(START)
        sim, site = _site(cfg, clock)
        disk.store = site.store
        fill_at = START + dt.timedelta(seconds=rng.uniform(10, 300))
        free_at = fill_at + dt.timedelta(minutes=rng.uniform(1, 50))
        clock.when(fill_at, disk.fill, "fill")
        clock.when(free_at, disk.free, "free")
        site.daemon.run(until=START + dt.timedelta(hours=1, minutes=50))  # 04:00 .. 05:30
        sent = [a["kind"] for a in site.daemon.alarm.sent]
        site.daemon.shutdown("end of trial")
        site.close()
        where = f"trial {trial}: fill {fill_at:%H:%M:%S}, free {free_at:%H:%M:%S}"
        assert sim.lids_commanded_open(), where
        filled = next(t for t, name in clock.log if name == "fill")
        freed = next(t for t, name in clock.log if name == "free")
        closes = [
            START + dt.timedelta(seconds=t) for t, k, _, v in sim.commands if k == "lid" and v
        ]
        failed = _rows(db, "SELECT at FROM events WHERE kind = 'storage_failed'")
        if failed:  # a write was tried while full (else the fill fell between writes)
            noticed = dt.datetime.fromisoformat(failed[0]["at"].replace("Z", "+00:00"))
            assert filled <= noticed <= freed + dt.timedelta(minutes=31), where
            assert not [t for t in closes if noticed < t < freed], where
        recorded = [e["kind"] for e in _rows(db, "SELECT kind FROM events WHERE level != 'info'")]
        assert sorted(recorded) == sorted(sent), where
        slots = {r["scheduled_at"][11:16]: r["status"] for r in _rows(db, "SELECT * FROM rounds")}
        assert set(slots) == {"04:00", "04:30", "05:00", "05:30"}, (where, slots)
        assert set(slots.values()) <= {"done", "partial", "missed"}, (where, slots)
        assert slots["05:30"] == "done", (where, slots)
        _check_whole(db)
        for path in disk.folder.glob(f"site{trial}.db*"):
            path.unlink()
