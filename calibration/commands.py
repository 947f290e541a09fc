"""``chamberd calibrate``: cylinders, procedures, guided runs, records and reports.

Thin commands: parse, load the site configuration, call :mod:`chamberd.calibration`.
Exit status of ``calibrate run``: 0 pass, 5 fail (recorded), 130 interrupted (recorded
incomplete), 2 bad input (nothing recorded), 1 a device lost (recorded incomplete).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import click

from chamberd.controller.errors import ConfigError

__all__ = ["COMMANDS", "calibrate"]

FAIL_EXIT = 5


def _config(path: str) -> Any:
    from chamberd.controller.config import load_config

    return load_config(path)


def _store(cfg: Any) -> Any:
    from chamberd.controller.store import SiteStore

    return SiteStore(cfg.storage.path, site_id=cfg.site.id)


def _clock(speed: float | None = None, timeline: str | None = None) -> Any:
    from chamberd.controller.clock import ScaledClock, SystemClock

    if timeline is not None:
        try:
            return ScaledClock.from_timeline(timeline, speed or 1.0)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--timeline") from exc
    if speed and speed != 1:
        return ScaledClock(speed=speed)
    return SystemClock()


_CONFIG = click.option(
    "--config",
    "config",
    required=True,
    type=click.Path(dir_okay=False),
    help="The site configuration (its database holds the records).",
)


@click.group("calibrate")
def calibrate() -> None:
    """Guided calibration: cylinders, procedures, records (see docs/trainee.md).

    Example: chamberd calibrate run zero-span-check --config site.toml
    """


# --- cylinders --------------------------------------------------------------------------


@calibrate.group("cylinders")
def cylinders_group() -> None:
    """The site's registry of reference gas cylinders.

    Example: chamberd calibrate cylinders list --config site.toml
    """


@cylinders_group.command("add")
@_CONFIG
@click.option("--id", "cylinder_id", required=True, help="The cylinder's number.")
@click.option("--gas", required=True, help="co2, h2o, ch4 or n2o.")
@click.option("--value", required=True, type=float, help="Certified value (0 for zero gas).")
@click.option("--uncertainty", type=float, default=None, help="Certified uncertainty.")
@click.option("--unit", default=None, help="Default: umol/mol (co2), nmol/mol (ch4, n2o).")
@click.option("--scale", default=None, help="Calibration scale, e.g. 'WMO X2019'.")
@click.option("--certified", "certificate_date", default=None, help="Certificate date.")
@click.option("--expires", "expires_on", required=True, help="Expiry date (YYYY-MM-DD).")
@click.option("--by", "entered_by", required=True, help="Who enters it.")
@click.option("--note", default=None)
def cylinders_add(config: str, **values: Any) -> None:
    """Register a cylinder (refused whole, with every problem named, if anything is wrong).

    Example: chamberd calibrate cylinders add --config site.toml --id CC12345 --gas co2
    --value 401.32 --uncertainty 0.05 --scale "WMO X2019" --certified 2026-01-10
    --expires 2029-01-10 --by "Li Wei"
    """
    from chamberd.calibration.cylinders import Cylinders

    cfg = _config(config)
    store = _store(cfg)
    try:
        cylinder = Cylinders(store).add(at=_clock().now(), **values)
    finally:
        store.close()
    click.echo(f"registered {cylinder.label}, expires {cylinder.expires_on}")


@cylinders_group.command("list")
@_CONFIG
@click.option("--all", "include_retired", is_flag=True, help="Retired cylinders too.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
def cylinders_list(config: str, include_retired: bool, as_json: bool) -> None:
    """List the registered cylinders (expired ones marked).

    Example: chamberd calibrate cylinders list --config site.toml --all
    """
    from chamberd.calibration.cylinders import Cylinders

    cfg = _config(config)
    store = _store(cfg)
    try:
        cylinders = Cylinders(store).list(include_retired=include_retired)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in cylinders], indent=2))
        return
    today = _clock().now().date()
    if not cylinders:
        click.echo("no cylinders registered")
    for c in cylinders:
        state = (
            "retired"
            if c.retired_at
            else ("EXPIRED" if c.expired_on(today) else f"expires {c.expires_on}")
        )
        unc = f" +-{c.uncertainty:g}" if c.uncertainty is not None else ""
        click.echo(
            f"{c.id:<16} {c.gas:<4} {c.value:>10g}{unc} {c.unit:<9} {c.scale or '-':<10} "
            f"{state}  (entered by {c.entered_by})"
        )


@cylinders_group.command("retire")
@_CONFIG
@click.argument("cylinder_id")
@click.option("--by", required=True, help="Who retires it.")
@click.option("--note", default=None, help="Why (empty, returned to the supplier...).")
def cylinders_retire(config: str, cylinder_id: str, by: str, note: str | None) -> None:
    """Retire a cylinder (kept in the registry; procedures refuse it).

    Example: chamberd calibrate cylinders retire --config site.toml CC12345 --by "Li Wei"
    """
    from chamberd.calibration.cylinders import Cylinders

    cfg = _config(config)
    store = _store(cfg)
    try:
        cylinder = Cylinders(store).retire(cylinder_id, by=by, at=_clock().now(), note=note)
    finally:
        store.close()
    click.echo(f"retired {cylinder.label}")


# --- procedures and runs ----------------------------------------------------------------


@calibrate.command("procedures")
@click.option("--json", "as_json", is_flag=True, help="The procedures as JSON.")
@click.option("--details", is_flag=True, help="Steps, pass criteria and limits too.")
def procedures_command(as_json: bool, details: bool) -> None:
    """List the calibration procedures (no hardware needed).

    Example: chamberd calibrate procedures --details
    """
    from dataclasses import asdict

    from chamberd.calibration.procedures import PROCEDURES

    if as_json:
        click.echo(json.dumps([asdict(p) for p in PROCEDURES.values()], indent=2, default=str))
        return
    for p in PROCEDURES.values():
        click.echo(f"{p.number:>2}. {p.id:<17} {p.title}  [{p.scope}]")
        if details:
            click.echo(f"    why: {p.why}")
            click.echo(f"    you need: {'; '.join(p.needs)}")
            for k, step in enumerate(p.steps, 1):
                click.echo(f"    step {k} ({step.id}): {step.instruction}")
            click.echo(f"    pass: {p.criterion}")
            for name, limit in p.limits.items():
                click.echo(f"      {name} = {limit.value:g} {limit.unit}: {limit.source}")
            click.echo(f"    on a fail: {p.on_fail}")


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@calibrate.command("run")
@click.argument("procedure")
@_CONFIG
@click.option("--chamber", default=None, help="The chamber (chamber procedures).")
@click.option("--analyser", default=None, help="The analyser (when the site has several).")
@click.option(
    "--answers",
    type=click.Path(dir_okay=False),
    default=None,
    help="A TOML file of the trainee's inputs: runs without a terminal.",
)
@click.option("--speed", type=float, default=None, hidden=True)
@click.option("--timeline", default=None, hidden=True)
def run_command(
    procedure: str,
    config: str,
    chamber: str | None,
    analyser: str | None,
    answers: str | None,
    speed: float | None,
    timeline: str | None,
) -> None:
    """Run a procedure step by step on the site's hardware, and record it.

    The analyser's group (or the chamber) is taken out of the daemon's schedule while it
    runs. Ctrl-C leaves the lids open and the record incomplete. Exit status: 0 pass,
    5 fail, 130 interrupted.

    Example: chamberd calibrate run zero-span-adjust --config site.toml --analyser irga
    """
    from chamberd.calibration.runner import (
        AnswersConsole,
        CalibrationRunner,
        TerminalConsole,
        load_answers,
    )

    cfg = _config(config)
    console: Any
    if answers is not None:
        console = AnswersConsole(load_answers(answers), source=answers)
    else:
        console = TerminalConsole()
    runner = CalibrationRunner(
        cfg,
        procedure,
        clock=_clock(speed, timeline),
        console=console,
        analyser=analyser,
        chamber=chamber,
    )
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        record = runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(f"recorded as {record['id']} (chamberd calibrate report {record['id'][:8]})")
    if record["status"] != "pass":
        raise SystemExit(FAIL_EXIT)


@calibrate.command("list")
@_CONFIG
@click.option("--analyser", default=None)
@click.option("--chamber", default=None)
@click.option("--procedure", default=None)
@click.option("--status", type=click.Choice(["running", "pass", "fail", "incomplete"]))
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
def list_command(config: str, as_json: bool, **where: Any) -> None:
    """List the site's calibration records, newest first.

    Example: chamberd calibrate list --config site.toml --analyser irga
    """
    from chamberd.calibration.records import CalibrationRecords
    from chamberd.calibration.report import summary_line

    cfg = _config(config)
    store = _store(cfg)
    try:
        records = CalibrationRecords(store).list(**where)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        click.echo("no calibration records")
    from chamberd.controller.store import process_alive

    for record in records:
        line = summary_line(record)
        if record.get("status") == "running" and not process_alive(int(record.get("pid") or 0)):
            line += "  (its process has ended: the daemon or the next run marks it incomplete)"
        click.echo(line)


@calibrate.command("report")
@click.argument("calibration_id")
@_CONFIG
@click.option("--html", "as_html", is_flag=True, help="A printable HTML page.")
@click.option("-o", "--output", default=None, type=click.Path(), help="Write to this file.")
@click.option("--json", "as_json", is_flag=True, help="The record as JSON.")
def report_command(
    calibration_id: str, config: str, as_html: bool, output: str | None, as_json: bool
) -> None:
    """A printable record of one calibration (id or its first characters).

    Example: chamberd calibrate report 3f2b9c0e --config site.toml --html -o cal.html
    """
    from chamberd.calibration.records import CalibrationRecords
    from chamberd.calibration.report import format_record, html_record
    from chamberd.controller.output import check_output_folder

    check_output_folder(output, "-o")
    cfg = _config(config)
    store = _store(cfg)
    try:
        record = CalibrationRecords(store).get(calibration_id)
    finally:
        store.close()
    if as_json:
        text = json.dumps(record, indent=2, default=str)
    elif as_html:
        text = html_record(record)
    else:
        text = format_record(record)
    if output is None:
        click.echo(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the report: {exc}") from exc
    click.echo(f"wrote {output}")


COMMANDS = [calibrate]
