"""Device health from each device's own readings; bounded one-line fault messages."""

from __future__ import annotations

import datetime as dt
import random

from chamberd.controller.clock import FakeClock
from chamberd.controller.daemon import bounded
from chamberd.controller.errors import HardwareError, HardwareTimeoutError, ProtocolError
from chamberd.controller.health import HealthBoard, LiveHealthFile, brief, line_of

START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)


def test_one_change_per_outage_and_the_last_good_reading_stays():
    clock = FakeClock(start=START)
    board = HealthBoard(clock)
    changes = []
    board.listeners.append(lambda e, ok, since: changes.append((e.component, ok, since)))
    board.describe("analyser:a", "LI-850 X1")  # identified: not a reading
    assert board.get("analyser:a").ok is None
    board.good("analyser:a")
    clock.advance(10)
    good_at = board.get("analyser:a").last_good_at
    for _ in range(3):  # the same outage, seen three times: one change
        board.fault("analyser:a", HardwareTimeoutError("no data within 6 s; last frames: x"))
        clock.advance(60)
    entry = board.get("analyser:a")
    assert entry.ok is False and entry.last_good_at == good_at
    assert entry.last_error == "no data within 6 s"  # the frame trace cut off
    board.good("analyser:a")
    assert [(c, ok) for c, ok, _ in changes] == [("analyser:a", False), ("analyser:a", True)]
    assert changes[1][2] == START + dt.timedelta(seconds=10)  # it had been down since then
    assert not changes[0][2] or changes[0][2] == START  # up since its first reading


def test_line_of_tells_a_silent_line_from_a_refusal():
    silent = HardwareTimeoutError("no reply")
    silent.device = "modbus:relays1"
    refused = ProtocolError("exception response (code 2)")
    assert line_of(silent) == "modbus:relays1"
    assert line_of(refused) is None
    assert line_of(HardwareError("analyser gone")) is None


def test_messages_are_one_bounded_line_with_the_rest_in_data():
    rng = random.Random(7)
    frames = " | ".join(f"> 0a 05 00 {i:02x} ff 00 8c 3a" for i in range(400))
    for _ in range(200):
        words = [rng.choice(["lid", "C1", "timeout", "\n", "\t", "x" * rng.randrange(1, 300)])]
        text = " ".join(words * rng.randrange(1, 40)) + f"; last frames: {frames}"
        message, data = bounded(text, None)
        assert "\n" not in message and "\t" not in message
        assert len(message) <= 300 and "last frames" not in message
        assert data["detail"].startswith(" ".join(text.split())[:50])
        assert len(data["detail"]) <= 4000
        assert len(brief(text)) <= 200


def test_live_health_file_is_rewritten_in_place(tmp_path):
    path = tmp_path / "site.db.health"
    live = LiveHealthFile(str(path))
    assert live.write({"health": [{"component": "storage", "ok": False}], "n": 1})
    size = path.stat().st_size
    many = [{"component": f"modbus:l{i}", "ok": True, "detail": "z" * 500} for i in range(60)]
    assert live.write({"health": many, "written_at": "t", "big": "y" * 50000})  # shortened
    assert path.stat().st_size == size == LiveHealthFile.SIZE
    shortened = LiveHealthFile.read(str(path))
    assert shortened["truncated"] and len(shortened["health"]) == 60  # still valid JSON
    assert live.write({"health": [], "n": 3})
    assert LiveHealthFile.read(str(path)) == {"health": [], "n": 3}
    assert LiveHealthFile.read(str(tmp_path / "none")) is None
