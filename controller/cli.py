"""The ``chamberd`` command line: thin commands that parse, call the library and report.

This module is a composition root: it may import every package of chamberd. Only here are
errors turned into messages and exit codes (0 ok, 1 unexpected chamberd error, 2 bad
configuration or usage, 3 a data file or observation refused).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import click

from chamberd.controller.errors import ChamberError, ConfigError

__all__ = ["cli", "main"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover - only when run from a bare checkout
        return "0+unknown"


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, ".7g")
    return str(value)


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], path: str | None) -> None:
    """Write rows as CSV to ``path`` atomically (temp file, then rename), or to stdout."""
    if path is None or path == "-":
        _write_rows(sys.stdout, rows, columns)
        return
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=".chamberd-", suffix=".csv", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            _write_rows(handle, rows, columns)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_rows(
    handle: io.TextIOBase | Any, rows: Iterable[dict[str, Any]], columns: Sequence[str]
) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_value(row.get(c)) for c in columns])


def _dead_band(value: str) -> str | float:
    if value in ("instrument", "auto"):
        return value
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(
            f"--dead-band: expected 'instrument', 'auto' or seconds, got {value!r}"
        ) from None
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ConfigError(f"--dead-band: must be >= 0 seconds, got {value!r}")
    return seconds


def _table(rows: list[dict[str, Any]]) -> str:
    """A compact fixed-width flux table for people."""
    head = (
        f"{'file':<26} {'obs':>3} {'port':>4} {'gas':<3} {'n':>4} {'db_s':>5} "
        f"{'lin':>9} {'exp':>9} {'flux':>9} {'model':<6} {'ref':>9} {'ref_mod':<7} flags"
    )
    lines = [head, "-" * len(head)]

    def num(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:9.4f}"

    for r in rows:
        lines.append(
            f"{r['source_file'][:26]:<26} {r['observation']:>3} "
            f"{'' if r['port'] is None else r['port']:>4} {r['gas']:<3} {r['n_points']:>4} "
            f"{r['dead_band_s']:>5g} {num(r['lin_flux']):>9} {num(r['exp_flux']):>9} "
            f"{num(r['flux']):>9} {r['model'][:6]:<6} {num(r['ref_flux']):>9} "
            f"{(r['ref_model'] or '')[:7]:<7} {r['flags']}"
        )
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="chamberd")
def cli() -> None:
    """chamberd: automated soil-respiration chambers, flux fitting and network sync."""


@cli.command("fit")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "li8100a", "li8200", "li8250"]),
    default="auto",
    show_default=True,
    help="File format; auto sniffs each file.",
)
@click.option(
    "--dead-band",
    default="instrument",
    show_default=True,
    help="'instrument' (the file's own), 'auto' (scan for the steadiest flux) or seconds.",
)
@click.option(
    "--selection",
    type=click.Choice(["licor", "kappa_max", "linear", "exponential"]),
    default="licor",
    show_default=True,
    help="Model-selection rule (see docs/fitting.md).",
)
@click.option("-o", "--output", type=click.Path(), help="CSV file to write (default stdout).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def fit_command(
    files: tuple[str, ...],
    fmt: str,
    dead_band: str,
    selection: str,
    output: str | None,
    quiet: bool,
) -> None:
    """Refit every observation of instrument files and compare with the instrument.

    Writes one CSV row per observation and gas; the instrument's own results are in the
    ref_* columns. Exit status 3 when an observation or file was refused (the others are
    still written).

    Example: chamberd fit data/*.81x -o fluxes.csv
    """
    from chamberd.fitting import FitSettings
    from chamberd.network_sync.refit import COLUMNS, agreement, refit_paths

    settings = FitSettings(selection=selection)
    chosen = _dead_band(dead_band)

    def progress(report: Any, path: str) -> None:
        if not quiet and report.observations >= 50:
            click.echo(
                f"fitted {report.observations} observations in {report.files} files "
                f"({os.path.basename(path)})",
                err=True,
            )

    report = refit_paths(files, fmt=fmt, dead_band=chosen, settings=settings, progress=progress)
    write_csv(report.rows, COLUMNS, output)
    if not quiet:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        for refused in report.refused:
            click.echo(f"refused: {refused}", err=True)
        click.echo(
            f"{len(report.rows)} rows from {report.observations} observations in "
            f"{report.files} files; {len(report.refused)} refused",
            err=True,
        )
        for line in agreement(report.rows).lines():
            click.echo(line, err=True)
    if report.refused:
        raise SystemExit(3)


@cli.command("demo")
def demo_command() -> None:
    """Refit the bundled LI-8100A example and print the flux table.

    Until the site daemon exists this shows the fitting engine on real instrument data
    (COSORE's SALT file, CC-BY-4.0) beside the instrument's own fluxes.

    Example: chamberd demo
    """
    from chamberd.network_sync.refit import agreement, refit_paths

    example = resources.files("chamberd.controller") / "examples" / "SALT_20181005_LT.81x"
    with resources.as_file(example) as path:
        report = refit_paths([path])
    click.echo("chamberd demo: refit of the bundled LI-8100A file SALT_20181005_LT.81x")
    click.echo("fluxes in umol m-2 s-1; ref = the instrument's own result\n")
    click.echo(_table(report.rows))
    click.echo("")
    for refused in report.refused:
        click.echo(f"refused: {refused}")
    for line in agreement(report.rows).lines():
        click.echo(line)


def _example(name: str) -> Any:
    return resources.files("chamberd.controller.examples") / name


@cli.command("sim")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Site configuration (default: the bundled simulated site).",
)
@click.option("--speed", type=float, help="Time speed-up factor (default: the config's).")
@click.option("--seed", type=int, help="Random seed (default: the config's).")
@click.option("--transport", type=click.Choice(["tcp", "pty"]), help="Analyser transport.")
@click.option("--json", "as_json", is_flag=True, help="First line: one JSON object of endpoints.")
def sim_command(
    config_path: str | None,
    speed: float | None,
    seed: int | None,
    transport: str | None,
    as_json: bool,
) -> None:
    """Start the simulated site's hardware on 127.0.0.1 and serve until SIGTERM.

    Analysers speak their serial protocols over TCP (socket://) or a pty, relays, switches
    and soil probes are Modbus servers (TCP, or RTU frames over TCP); the printed addresses
    are what a daemon's configuration, or a Modbus tool, should use.

    Example: chamberd sim --config site.toml --json
    """
    import json
    import signal
    import threading

    from chamberd.controller.clock import ScaledClock
    from chamberd.controller.config import load_config
    from chamberd.controller.sim import SimulatedSite, start_hardware

    with resources.as_file(_example("sim-site.toml")) as default:
        cfg = load_config(config_path or default)
    clock = ScaledClock(speed=speed or cfg.sim.speed)
    site = SimulatedSite(cfg, clock, seed=seed)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    hardware = start_hardware(cfg, clock, site=site, transport=transport)
    try:
        endpoints = hardware.endpoints()
        if as_json:
            click.echo(json.dumps(endpoints))
        else:
            click.echo(
                f"simulated site {cfg.site.id!r} at {clock.speed:g}x speed, seed {site.seed}"
            )
            for a in endpoints["analysers"]:
                click.echo(f"  analyser {a['id']:<10} {a['protocol']:<7} {a['url']}")
            for m in endpoints["modbus"]:
                click.echo(
                    f"  modbus   {m['id']:<10} {m['framing']:<7} {m['host']}:{m['port']} "
                    f"device {m['device_id']}"
                )
            click.echo("serving until SIGTERM or Ctrl-C")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        hardware.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chamberd`` console script."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except ChamberError as exc:
        click.echo(f"chamberd: error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
