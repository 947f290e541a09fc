"""The site's commands: ``sim``, ``check-config``, ``run``, ``status``, ``serve``, ``plot``,
``demo``.

Thin commands: parse, load the configuration, call the library. The root
(:mod:`chamberd.controller.cli`) assembles them with the other packages' commands and turns
errors into messages and exit codes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import click

from chamberd.controller.errors import ConfigError
from chamberd.controller.output import check_output_folder

__all__ = ["COMMANDS"]


def _example(name: str) -> Any:
    return resources.files("chamberd.controller.examples") / name


@click.command("sim")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Site configuration (default: the bundled simulated site).",
)
@click.option("--speed", type=float, help="Time speed-up factor (default: the config's).")
@click.option("--seed", type=int, help="Random seed (default: the config's).")
@click.option(
    "--start",
    "start_text",
    metavar="ISO_TIME",
    help="Site time to start from, e.g. 2026-07-01T03:59:00Z (default: now).",
)
@click.option("--transport", type=click.Choice(["tcp", "pty"]), help="Analyser transport.")
@click.option("--json", "as_json", is_flag=True, help="First line: one JSON object of endpoints.")
@click.option(
    "--daemon-config",
    type=click.Path(dir_okay=False),
    help="Also write the site configuration pointed at this simulator, for chamberd run.",
)
def sim_command(
    config_path: str | None,
    speed: float | None,
    seed: int | None,
    transport: str | None,
    as_json: bool,
    daemon_config: str | None,
    start_text: str | None,
) -> None:
    """Start the simulated site's hardware on 127.0.0.1 and serve until SIGTERM.

    Analysers speak their serial protocols over TCP (socket://) or a pty, relays, switches
    and soil probes are Modbus servers (TCP, or RTU frames over TCP); the printed addresses
    are what a daemon's configuration, or a Modbus tool, should use.

    Example: chamberd sim --config site.toml --json
    """
    import contextlib
    import json
    import signal
    import threading

    from chamberd.controller.clock import ScaledClock
    from chamberd.controller.config import MQTT_PROTOCOLS, load_config
    from chamberd.controller.sim import SimulatedSite, start_hardware
    from chamberd.controller.sim.broker import ensure_broker

    with resources.as_file(_example("sim-site.toml")) as default:
        cfg = load_config(config_path or default)
    start = None
    if start_text:
        try:
            start = dt.datetime.fromisoformat(start_text.replace("Z", "+00:00"))
            if start.tzinfo is None:
                raise ValueError("give a UTC offset or Z")
        except ValueError as exc:
            raise click.BadParameter(f"{start_text!r}: {exc}", param_hint="--start") from exc
    clock = ScaledClock(speed=speed or cfg.sim.speed, start=start)
    exits = contextlib.ExitStack()
    if any(a.protocol in MQTT_PROTOCOLS for a in cfg.analysers):
        # the simulated LI-7810/7820 publish to [sim] mqtt_broker, or to a private
        # Mosquitto started here when none answers there
        broker = exits.enter_context(ensure_broker(cfg.sim.mqtt_broker, clock))
        if broker != cfg.sim.mqtt_broker:
            click.echo(f"no MQTT broker at {cfg.sim.mqtt_broker}: started one at {broker}")
            cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"mqtt_broker": broker})})
    site = SimulatedSite(cfg, clock, seed=seed)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        hardware = start_hardware(cfg, clock, site=site, transport=transport)
    except BaseException:
        exits.close()
        raise
    try:
        endpoints = {**hardware.endpoints(), "speed": clock.speed, "timeline": clock.timeline}
        if daemon_config:
            from chamberd.controller.config import to_toml

            pointed = hardware.daemon_config()
            if config_path is None:
                # the bundled site's database goes beside the written configuration (a
                # relative path is taken relative to it), never into the installed package
                storage = pointed.storage.model_copy(update={"path": "sim-site.db"})
                pointed = pointed.model_copy(update={"storage": storage})
            Path(daemon_config).write_text(to_toml(pointed), encoding="utf-8")
        if as_json:
            click.echo(json.dumps(endpoints))
        else:
            click.echo(
                f"simulated site {cfg.site.id!r} at {clock.speed:g}x speed, seed {site.seed}"
            )
            for a in endpoints["analysers"]:
                topic = f" topic_root {a['topic_root']}" if "topic_root" in a else ""
                click.echo(f"  analyser {a['id']:<10} {a['protocol']:<7} {a['url']}{topic}")
            for m in endpoints["modbus"]:
                click.echo(
                    f"  modbus   {m['id']:<10} {m['framing']:<7} {m['host']}:{m['port']} "
                    f"device {m['device_id']}"
                )
            click.echo(
                f"  timeline {clock.timeline} (chamberd run --speed {clock.speed:g} --timeline)"
            )
            click.echo("serving until SIGTERM or Ctrl-C")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        hardware.stop()
        exits.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sim_clock_options(function: Any) -> Any:
    """``--speed`` and ``--timeline``: a daemon on a simulator's clock is judged on that clock."""
    function = click.option(
        "--timeline",
        default=None,
        metavar="START@UNIX",
        help="The daemon runs on a simulator's clock ('timeline' in chamberd sim --json): "
        "judge its heartbeat on that clock.",
    )(function)
    return click.option(
        "--speed",
        type=float,
        default=None,
        help="With --timeline: the simulated site's clock speed (simulated sites only).",
    )(function)


def _load(path: str, overrides: Sequence[str]) -> Any:
    from chamberd.controller.config import load_config

    return load_config(path, overrides=overrides)


def _shown(path: str) -> str:
    """``path`` for a message: control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


@click.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option(
    "--no-path-checks",
    is_flag=True,
    help="The configuration is for another machine: do not check its database folders here.",
)
def check_config_command(config: str, overrides: tuple[str, ...], no_path_checks: bool) -> None:
    """Validate a site configuration and print it resolved (defaults filled in).

    Every error is listed at once with its path; exit status 2 when any.

    Example: chamberd check-config site.toml
    """
    import tomllib

    from chamberd.controller.config import config_hash, load_config, parse_config, to_toml
    from chamberd.controller.errors import ChamberError
    from chamberd.network_sync.central import redact

    cfg = load_config(config, overrides=overrides, check_paths=not no_path_checks)
    digest = config_hash(cfg)
    if cfg.sync.target:  # never print a password
        cfg = cfg.model_copy(
            update={"sync": cfg.sync.model_copy(update={"target": redact(cfg.sync.target)})}
        )
    hidden = cfg.web.token is not None
    if hidden:  # nor the web page's token
        cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"token": None})})
    text = to_toml(cfg)
    # the printout is itself valid TOML and loads back to the same configuration
    try:
        again = parse_config(tomllib.loads(text), source="the printed configuration")
    except (ValueError, ChamberError) as exc:
        raise ChamberError(
            f"{_shown(config)}: internal error, the printout does not load: {exc}"
        ) from exc
    if config_hash(again) != config_hash(cfg):
        raise ChamberError(f"{_shown(config)}: internal error, the printout loads differently")
    click.echo(f"# {_shown(config)}: valid; config hash {digest}")
    if hidden:
        click.echo("# web.token is set (not shown)")
    click.echo(text)


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG traces every frame.")
@click.option(
    "--speed",
    type=float,
    default=None,
    help="Run on a clock this many times faster than real time (simulated sites only).",
)
@click.option(
    "--timeline",
    default=None,
    metavar="START@UNIX",
    help="With --speed: share the clock of a simulator ('timeline' in chamberd sim --json).",
)
def run_command(
    config: str,
    overrides: tuple[str, ...],
    log_level: str,
    speed: float | None,
    timeline: str | None,
) -> None:
    """Run the site daemon in the foreground until SIGTERM or Ctrl-C.

    Logs go to stderr with syslog priority prefixes (journald reads them); on any stop the
    lids are left open. See docs/operator.md and docs/chamberd.service.

    Example: chamberd run /etc/chamberd/site.toml
    """
    from chamberd.controller.app import build_site, configure_logging, serve
    from chamberd.controller.clock import ScaledClock, SystemClock

    configure_logging(log_level)
    cfg = _load(config, overrides)
    if timeline is not None:
        try:
            clock: Any = ScaledClock.from_timeline(timeline, speed or 1.0)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--timeline") from exc
    elif not speed or speed == 1:
        clock = SystemClock()
    else:
        clock = ScaledClock(speed=speed)
    site = build_site(cfg, clock=clock)
    try:
        serve(site)
    finally:
        site.close()


def _clock(timeline: str | None, speed: float | None) -> Any:
    """The system clock, or a simulator's (``--timeline``) for a simulated site."""
    from chamberd.controller.clock import ScaledClock, SystemClock

    if timeline is None:
        return SystemClock()
    try:
        return ScaledClock.from_timeline(timeline, speed or 1.0)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeline") from exc


@click.command("status")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option("--watch", is_flag=True, help="A live view, refreshed every --interval seconds.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="--watch: seconds between refreshes.",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="--watch: stop after this many refreshes (default: until Ctrl-C).",
)
@_sim_clock_options
def status_command(
    config: str,
    as_json: bool,
    watch: bool,
    interval: float,
    count: int | None,
    speed: float | None,
    timeline: str | None,
) -> None:
    """Show whether the daemon runs and what it does, the next round, each chamber's last
    observation and flux, service, and each device's health.

    Reads the site database named in the configuration (the daemon may be running); with
    --watch the view is redrawn every few seconds until Ctrl-C.

    Example: chamberd status site.toml --watch
    """
    import json

    from chamberd.controller.status import format_status, site_status, watch_status
    from chamberd.controller.store import SiteStore

    cfg = _load(config, ())
    clock = _clock(timeline, speed)

    def read() -> dict[str, Any]:
        if not Path(cfg.storage.path).exists():
            raise ConfigError(
                f"{config}: storage.path {cfg.storage.path!r} does not exist (has the daemon run?)"
            )
        store = SiteStore.open_readonly(cfg.storage.path)  # writes nothing: works on a full disk
        try:
            return site_status(cfg, store, clock.now())
        finally:
            store.close()

    if watch:
        if as_json:
            raise click.BadParameter("not with --watch", param_hint="--json")
        with contextlib.suppress(KeyboardInterrupt):
            watch_status(
                read,
                clock,
                interval_s=interval,
                refreshes=count,
                out=sys.stdout,
                clear=sys.stdout.isatty(),
            )
        return
    status = read()
    click.echo(json.dumps(status, indent=2, default=str) if as_json else format_status(status))


@click.command("serve")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=None,
    help="Address to listen on (default: the config's web.bind, 127.0.0.1:8580); any but "
    "127.0.0.1 needs web.token.",
)
@click.option("--central", "central_url", metavar="URL", help="Also show a central database.")
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False),
    help="With --central: a folder of comparison reports (*.html) to link.",
)
@_sim_clock_options
def serve_command(
    config: str,
    bind: str | None,
    central_url: str | None,
    reports_dir: str | None,
    speed: float | None,
    timeline: str | None,
) -> None:
    """Serve a read-only web page of the site now (and of a central database).

    The site's daemon state, the closure in progress with its live trace, the next round,
    device health, warnings, each chamber's last fluxes, and each observation's plot; with
    --central the sites, systems, last uploads and clock skew of a campaign database.
    Bound to 127.0.0.1 unless --bind says otherwise; then the configuration's web.token
    is required on every request (?token=..., or Authorization: Bearer ...).

    Example: chamberd serve site.toml --bind 127.0.0.1:8580
    """
    import signal
    import threading

    from chamberd.controller.web import (
        SiteView,
        WebServer,
        make_app,
        needs_token,
        parse_bind,
        web_token,
    )

    cfg = _load(config, ())
    host, port = parse_bind(bind or cfg.web.bind)
    token = web_token(cfg, config)
    if needs_token(host) and token is None:
        raise ConfigError(
            f"--bind {host}:{port}: not 127.0.0.1, so the page needs a token: set "
            f"web.token or web.token_file in {_shown(config)}"
        )
    clock = _clock(timeline, speed)
    central = None
    if central_url:
        from chamberd.network_sync.queries import campaign_overview

        central = campaign_overview
    view = SiteView(cfg, clock, central_url=central_url, central=central, reports_dir=reports_dir)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        required = token if needs_token(host) else None
        with WebServer(make_app(view, token=required), host, port) as server:
            click.echo(f"serving {cfg.site.id} at {server.url} (read-only) until Ctrl-C")
            if required is not None:  # shown once, here; never again
                click.echo(f"token: {token}  (open {server.url}?token={token})")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("plot")
@click.argument("database", type=click.Path(exists=True, dir_okay=False))
@click.argument("observation")
@click.option("-o", "--output", default="observation.png", show_default=True, type=click.Path())
def plot_command(database: str, observation: str, output: str) -> None:
    """Plot one observation: its trace, the fit window, the linear and exponential fits.

    One panel per gas measured (CO2, CH4, N2O), each in its own unit.

    Example: chamberd plot site.db 3f2b9c0e-... -o obs.png
    """
    check_output_folder(output, "-o")
    from chamberd.controller.plot import plot_observation
    from chamberd.controller.store import SiteStore

    site = SiteStore.open_existing(database)
    try:
        path = plot_observation(site, observation, output)
    finally:
        site.close()
    click.echo(str(path))


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option("--speed", type=float, default=60.0, show_default=True, help="Time speed-up.")
@click.option(
    "--database",
    default="chamberd-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite file the demo writes (replaced at each run).",
)
@click.option(
    "--gases",
    default="co2",
    show_default=True,
    help="Gases measured, e.g. co2,ch4,n2o: an LI-7810 (CH4) and an LI-7820 (N2O) join the "
    "LI-850 in the loop, over MQTT (a broker on sim.mqtt_broker, 127.0.0.1:1883).",
)
@click.option(
    "--campaign",
    is_flag=True,
    help="A simulated intercomparison campaign with known truth, compared (chamberd compare).",
)
@click.option(
    "--calibration",
    is_flag=True,
    help="A drifted analyser checked and adjusted by a scripted trainee; data refitted "
    "with and without --apply-calibrations.",
)
@click.option(
    "--days",
    type=click.IntRange(4, 366),
    default=20,
    show_default=True,
    help="--campaign: simulated days.",
)
@click.option(
    "--folder",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="--campaign, --calibration: where their files go (site and central databases, ...).",
)
@click.option(
    "--target",
    help="--campaign: central database URL (default: campaign-central.db in --folder, replaced).",
)
def demo_command(
    as_json: bool,
    speed: float,
    database: str,
    campaign: bool,
    calibration: bool,
    days: int,
    folder: str,
    target: str | None,
    gases: str,
) -> None:
    """Run the real daemon against the simulated site for two rounds and show the fluxes.

    The simulator serves LI-850 XML and Modbus on 127.0.0.1; the daemon measures its four
    chambers (120 s closures) at SPEED times real time, stores everything in DATABASE, and
    prints per chamber the true flux, the measured exponential and linear fluxes, R2 and
    flags, and writes a plot of one observation beside the database.

    With --campaign: an automated system (the daemon on the simulated site, in virtual
    time) and a survey chamber that reads 13 % low and visits every other day at
    10:00-14:00 measure neighbouring collars for DAYS days; they are synced and imported
    into one central database and compared. Prints the truth beside what the comparison
    recovered (relative bias, sparse-sampling bias, with CIs) and writes an HTML report;
    with --json the last line is one JSON object (truth, comparison, report).

    With --calibration: the analyser's span has drifted 5 %; a week of closures, then a
    scripted trainee runs the zero/span check and adjustment over the real wire, then a
    second week; both are synced and refitted centrally with and without
    --apply-calibrations. Prints what happened; with --json the last line is one JSON object
    (span_error_before, span_error_after, flux_error_uncorrected, flux_error_corrected,
    records_synced). About a minute.

    With --gases co2,ch4,n2o: an LI-7810 and an LI-7820 (publishing to the MQTT broker at
    127.0.0.1:1883, as the instruments' own brokers do) follow the LI-850 in the loop; the
    chambers are paddy and upland soils; per chamber and gas the table (and, with --json,
    ``fluxes``: gas, flux, true_flux, flux_unit, flags, mdf) shows the fluxes, N2O near
    zero as "< MDF".

    Example: chamberd demo --campaign
    """
    import json

    if calibration:
        if campaign or target is not None:
            raise click.BadParameter("not with --campaign or --target", param_hint="--calibration")
        from chamberd.calibration.demo import run_calibration_demo

        say = (lambda text: click.echo(text, err=True)) if as_json else click.echo
        outcome = run_calibration_demo(folder=folder, progress=say)
        if as_json:
            click.echo(json.dumps(outcome["json"]))
        else:
            click.echo(outcome["text"])
        return

    if campaign:
        from chamberd.controller.campaign import CampaignDesign, format_campaign, run_campaign

        say = (lambda text: click.echo(text, err=True)) if as_json else click.echo
        result = run_campaign(
            folder=folder, target=target, design=CampaignDesign(days=days), progress=say
        )
        if as_json:
            click.echo(json.dumps(result["json"]))
        else:
            click.echo(format_campaign(result))
        return
    if target is not None:
        raise click.BadParameter("only with --campaign", param_hint="--target")

    from chamberd.controller.demo import parse_gases, run_demo

    try:
        chosen = parse_gases(gases)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gases") from exc
    result = run_demo(
        database=database,
        speed=speed,
        progress=None if as_json else click.echo,
        gases=chosen,
    )
    if as_json:
        click.echo(json.dumps(result["json"]))
    else:
        click.echo(result["table"])


COMMANDS = [
    sim_command,
    check_config_command,
    run_command,
    status_command,
    serve_command,
    plot_command,
    demo_command,
]
