"""What ``chamberd run`` logs at INFO, in virtual time with the in-memory hardware: one line
at start-up (site, chambers, analysers, the next round in local and UTC time), one per round
(start; end with counts and duration) and one per observation (flux and unit, model, R2,
flags, or the abort reason in a few words). Fault lines are short; the detail is at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys

import pytest

from chamberd.controller.app import JournalFormatter, build_site
from chamberd.controller.clock import FakeClock
from chamberd.controller.errors import operator_message
from chamberd.controller.sim.site import SimulatedSite

START = dt.datetime(2026, 7, 1, 3, 58, tzinfo=dt.UTC)  # 11:58 at the site (Asia/Shanghai)
LOGGER = "chamberd.controller.daemon"


class Lines(logging.Handler):
    """Every record as ``chamberd run`` writes it (the journal format)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JournalFormatter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.INFO, name: str = LOGGER) -> list[str]:
        return [
            r.getMessage() for r in self.records if r.levelno >= level and r.name.startswith(name)
        ]

    def formatted(self, level: int) -> list[str]:
        return [self.format(r) for r in self.records if r.levelno >= level]


@pytest.fixture
def lines():
    handler = Lines()
    root = logging.getLogger("chamberd")
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def _site(tmp_path, make_site_cfg, **kwargs):
    cfg = make_site_cfg(4, 2, protocol="memory", db=tmp_path / "site.db", **kwargs)
    clock = FakeClock(start=START)
    sim = SimulatedSite(cfg, clock)
    return build_site(cfg, clock=clock, site=sim, memory=True), sim, clock


def test_start_up_round_and_observation_lines(tmp_path, make_site_cfg, lines):
    site, _, _ = _site(tmp_path, make_site_cfg)
    try:
        site.daemon.run(until=START + dt.timedelta(minutes=40))
    finally:
        site.daemon.shutdown("end of test")
        site.close()
    info = [t for t in lines.text() if not t.startswith(("startup:", "shutdown:"))]
    # start-up: the site, its chambers and analysers, the next round in local and UTC time
    assert info[0] == (
        "site sim-grassland: 4 chamber(s) (C1, C2, C3, C4) on 2 analyser(s) (irga1, irga2), "
        "a round every 30 min; next round 2026-07-01 12:00:00 CST (04:00:00 UTC)"
    )
    rounds = [t for t in info if t.startswith("round ")]
    assert rounds[0] == "round 2026-07-01 12:00:00 CST (04:00:00 UTC): started, 4 chamber(s)"
    ended = re.compile(
        r"round 2026-07-01 12:00:00 CST \(04:00:00 UTC\): ended after (\d+) min (\d+) s: "
        r"4 done, 0 aborted, 0 skipped; next round 2026-07-01 12:30:00 CST \(04:30:00 UTC\)$"
    )
    match = ended.match(rounds[1])
    assert match, rounds[1]
    assert 4 <= int(match[1]) <= 6  # two closures in sequence per analyser
    assert len(rounds) == 4  # 12:00 and 12:30, each started and ended
    observations = [t for t in info if re.match(r"C\d: ", t)]
    assert len(observations) == 8
    line = re.compile(
        r"C\d: flux -?\d+\.\d{3} umol m-2 s-1 \((linear|exponential), R2 [01]\.\d{3}\), "
        r"flags: [a-z_, ]+$"
    )
    assert all(line.match(t) for t in observations), observations
    # each line is one short line in the journal format
    assert all(len(t) < 200 for t in lines.formatted(logging.INFO))


def test_an_abort_says_why_in_a_few_words(tmp_path, make_site_cfg, lines):
    site, sim, _ = _site(tmp_path, make_site_cfg, cycle={"max_failures": 5})
    sim.faults.lid_stuck["C1"] = "open"
    sim.faults.analyser_silent.add("irga2")
    try:
        site.daemon.startup()
        site.daemon.run_round(START + dt.timedelta(minutes=2))
    finally:
        site.daemon.shutdown("end of test")
        site.close()
    info = lines.text()
    c1 = next(t for t in info if t.startswith("C1: "))
    assert c1 == "C1: aborted: lid did not close within 20 s (switch: open)"
    c3 = next(t for t in info if t.startswith("C3: "))
    assert c3 == "C3: aborted: analyser silent for 10 s"
    c4 = next(t for t in info if t.startswith("C4: "))
    assert c4.startswith("C4: skipped: analyser irga2 failed: analyser silent")
    assert any(re.match(r"C2: flux ", t) for t in info)
    end = next(t for t in info if " ended after " in t)
    assert ": 1 done, 2 aborted, 1 skipped; next round " in end
    assert all(len(line) < 300 for line in lines.formatted(logging.INFO))


def test_operator_message_is_one_short_line_without_the_frame_trace():
    frames = " | ".join(f">'<li850><data>{i}</data></li850>'" for i in range(300))
    text = (
        "analyser irga1 (socket://127.0.0.1:4001): port not available for writing; "
        f"last frames: {frames}"
    )
    assert len(text) > 4000
    assert operator_message(text) == "analyser irga1 (socket://127.0.0.1:4001): not connected"
    refused = "could not open port socket://127.0.0.1:9: [Errno 111] Connection refused"
    assert operator_message(f"analyser a (socket://127.0.0.1:9): cannot open: {refused}") == (
        "analyser a (socket://127.0.0.1:9): cannot open: connection refused"
    )
    assert len(operator_message("x" * 5000)) == 200
    assert operator_message(ValueError("")) == "ValueError"


def test_the_docstring_examples_of_the_operator_messages_run():
    import doctest

    from chamberd.controller import clock, errors, health, web

    for module in (clock, errors, health, web):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


def test_a_logged_exception_is_one_short_line_unless_at_debug():
    formatter = JournalFormatter()
    frames = "; last frames: " + " | ".join(["> 0a 05 00 00 ff 00 8c 3a"] * 200)
    try:
        raise OSError("modbus line relays1 (RTU socket://h:1) device 10: cannot connect" + frames)
    except OSError:
        record = logging.getLogger("chamberd.test").makeRecord(
            "chamberd.test", logging.ERROR, __file__, 1, "round failed", (), sys.exc_info()
        )
    root = logging.getLogger()
    old = root.level
    try:
        root.setLevel(logging.INFO)
        assert formatter.format(record) == (
            "<3>chamberd.test: round failed (OSError: modbus line relays1 (RTU socket://h:1) "
            "device 10: cannot connect)"
        )
        root.setLevel(logging.DEBUG)
        full = formatter.format(record)
        assert "Traceback (most recent call last)" in full and "last frames" in full
        assert "\n" not in full
    finally:
        root.setLevel(old)
