"""A device lost in the middle of a procedure, over the real wire: the analyser's serial
device server goes off (the connection closed, or left open and silent as a device server
that lost power leaves it) while the blank test has the lid of C1 closed, or while a
zero/span adjustment has zeroed the analyser and purges the span gas. The runner raises the
hardware error (``chamberd calibrate run`` exits 1), the lids are commanded open and the
manifold closed, the record ends ``incomplete`` with the reason and nothing of it is in
force, and the locks are freed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from chamberd.calibration.records import CalibrationRecords
from chamberd.calibration.runner import AnswersConsole, CalibrationRunner
from chamberd.controller.errors import HardwareError
from chamberd.controller.store import SiteStore

SPEED = 20.0  # a closure's readings hold their timing under load


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s  # noqa: TID251 - real time: the runner runs on a thread
    while time.monotonic() < end:  # noqa: TID251
        if predicate():
            return True
        time.sleep(0.02)  # noqa: TID251
    return predicate()


def _lose_the_analyser(site, procedure, answers, when, *, half_open, after_s, **kwargs):
    """Run ``procedure`` on a thread; once ``when(commands)`` holds (the simulator's
    commands since the start) and ``after_s`` more [s, site clock] have passed, switch the
    analyser's device server off. Returns the runner's error, its record, its output and
    how long [s, site clock] it took to end after the loss."""
    lines: list[str] = []
    console = AnswersConsole({"operator": "Trainee Six", **answers}, echo=lines.append)
    runner = CalibrationRunner(site.cfg, procedure, clock=site.clock, console=console, **kwargs)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["record"] = runner.run()
        except BaseException as exc:  # asserted on the test's thread
            outcome["error"] = exc

    mark = len(site.sim.commands)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: when(site.sim.commands[mark:]), 300.0), "\n".join(lines)
        site.clock.sleep(after_s)
        assert thread.is_alive(), outcome
        lost_at = site.clock.monotonic()
        site.hardware.analysers["irga"].power_off(half_open=half_open)
        thread.join(180.0)
        assert not thread.is_alive(), "the runner did not end after the analyser was lost"
        ended_s = site.clock.monotonic() - lost_at
    finally:
        thread.join(0)
    text = "\n".join(lines)
    error = outcome.get("error")
    assert isinstance(error, HardwareError), (outcome, text)
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        (row,) = store.query("SELECT id FROM calibrations")
        record = CalibrationRecords(store).get(row["id"])
        assert store.calibration_locks() == []
        outbox = store.query("SELECT calibration_id FROM calibration_outbox")
        assert outbox == [{"calibration_id": record["id"]}]  # sent once, as incomplete
        assert CalibrationRecords(store).latest_in_force("irga", site.clock.now()) is None
    finally:
        store.close()
    assert record["status"] == "incomplete", record
    assert record["reason"].startswith("device lost or refused: "), record["reason"]
    assert str(error) in record["reason"]
    assert "INCOMPLETE: device lost or refused" in text
    # it stopped when the analyser went, within the configured silence (10 s) and the
    # driver's reconnection attempts; silence alone (half open) is waited out
    assert ended_s < 60.0, (ended_s, text)
    if half_open:
        assert ended_s >= 0.9 * site.cfg.cycle.analyser_silent_s, ended_s
    assert site.sim.lids_commanded_open(), text
    assert site.sim.manifold_open == set(), text
    return error, record, text


@pytest.mark.parametrize("half_open", [False, True], ids=["closed", "silent"])
def test_analyser_lost_during_the_blank_opens_the_lid(make_sim_site, half_open):
    site = make_sim_site(speed=SPEED)
    site.sim.faults.plate.add("C1")

    def lid_closed(commands) -> bool:
        return any(k == "lid" and c == "C1" and v for _, k, c, v in commands)

    # 20 s into the 90 s closure (the lid takes 3 s): readings have arrived, the lid is shut
    _, record, _ = _lose_the_analyser(
        site, "blank", {}, lid_closed, half_open=half_open, after_s=23.0, chamber="C1"
    )
    assert record["chamber"] == "C1" and record["procedure"] == "blank"
    assert "blank" not in (record["data"] or {})  # no judgement of a half closure
    assert _wait_for(lambda: site.sim.open_switch("C1"), 30.0)


def test_analyser_lost_during_an_adjustment_is_recorded_partly_adjusted(make_sim_site):
    site = make_sim_site(speed=SPEED, sim={"span_gain": 1.04, "zero_offset_umol_mol": 3.0})
    answers = {
        "zero_cylinder": "ZERO-N2-01",
        "span_cylinder": "SPAN-1000-01",
        "check_cylinder": "SPAN-450-01",
    }

    def adjusting_span(commands) -> bool:  # span1 opened the second time: after the zero
        return sum(1 for _, k, s, v in commands if k == "manifold" and s == "span1" and v) >= 2

    _, record, text = _lose_the_analyser(
        site, "zero-span-adjust", answers, adjusting_span, half_open=False, after_s=5.0
    )
    data = record["data"]
    assert [c["step"] for c in data["commands"]] == ["co2zero", "h2ozero"], text
    assert all(c["ack"] for c in data["commands"])
    assert data["partly_adjusted"] is True
    assert "checks_after" not in data and record["as_left"] is None
    assert record["as_found"]  # the state before it is kept, to set the analyser back
    assert abs(site.sim.span_gain("irga") - 1.04) < 1e-3  # the span was never sent


def test_calibrate_run_exits_1_when_the_analyser_is_lost(make_sim_site, tmp_path, capsys):
    """The same through ``chamberd calibrate run`` (on the site's clock): exit status 1,
    the error on stderr, the record incomplete."""
    from chamberd.controller.cli import main
    from chamberd.controller.config import to_toml

    site = make_sim_site(speed=SPEED)
    site.sim.faults.plate.add("C1")
    config = tmp_path / "site.toml"
    config.write_text(to_toml(site.cfg), encoding="utf-8")
    answers = tmp_path / "answers.toml"
    answers.write_text('operator = "Trainee Six"\n', encoding="utf-8")
    mark = len(site.sim.commands)

    def lose() -> None:
        if _wait_for(
            lambda: any(k == "lid" and c == "C1" and v for _, k, c, v in site.sim.commands[mark:]),
            300.0,
        ):
            site.clock.sleep(23.0)
            site.hardware.analysers["irga"].power_off()

    helper = threading.Thread(target=lose, daemon=True)
    helper.start()
    argv = ["calibrate", "run", "blank", "--config", str(config), "--chamber", "C1"]
    argv += ["--answers", str(answers), "--speed", str(SPEED), "--timeline", site.clock.timeline]
    status = main(argv)  # on this thread: it installs its SIGTERM handler
    helper.join(60.0)
    out, err = capsys.readouterr()
    assert status == 1, (out, err)
    assert "chamberd: error: analyser irga" in err and "no data within" in err
    assert "INCOMPLETE: device lost or refused" in out
    assert site.sim.lids_commanded_open()
    store = SiteStore(site.db, site_id=site.cfg.site.id)
    try:
        assert [r["status"] for r in store.query("SELECT status FROM calibrations")] == [
            "incomplete"
        ]
        assert store.calibration_locks() == []
    finally:
        store.close()
