"""The network's commands: ``fit``, ``central``, ``import``, ``query``, ``export``, ``refit``,
``sync``, ``compare``.

Thin commands: parse, call the library, report. The root (:mod:`chamberd.controller.cli`)
assembles them with the other packages' commands and turns errors into messages and exit
codes.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import click

from chamberd.controller.errors import ConfigError
from chamberd.controller.output import check_output_folder, write_csv, write_text

__all__ = ["COMMANDS"]


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


_REPORT_OPTIONS = [
    click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False),
        help="Also write per-observation diagnostics as one self-contained HTML file.",
    ),
    click.option(
        "--report-pages",
        type=click.IntRange(1, 100000),
        default=1000,
        show_default=True,
        help="At most this many observations get a page in --report (those that disagree "
        "most with the instrument).",
    ),
]


def _with_report(function: Any) -> Any:
    for option in reversed(_REPORT_OPTIONS):
        function = option(function)
    return function


def _report_writer(
    path: str | None, pages: int, title: str, provenance: list, reference: str = "instrument"
) -> Any:
    """The FitReport for --report (None without it), with the chamberd version and the
    time it is written added to ``provenance``."""
    if not path:
        return None
    from chamberd.controller.clock import SystemClock
    from chamberd.network_sync.fit_report import FitReport
    from chamberd.network_sync.html_report import software_version

    if path == "-":
        raise click.BadParameter("an HTML report is written to a file", param_hint="--report")
    check_output_folder(path, "--report")
    written = SystemClock().now().replace(microsecond=0).isoformat()
    provenance = [*provenance, ("chamberd", software_version()), ("written (UTC)", written)]
    return FitReport(path, title=title, provenance=provenance, max_pages=pages, reference=reference)


@click.command("fit")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "li8100a", "li8200", "li8250", "li78x0", "lgr", "picarro"]),
    default="auto",
    show_default=True,
    help="File format; auto sniffs each file.",
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False),
    help="Field sheet CSV of the closures in analyser streams (LI-7810/7820 .data, LGR "
    ".txt, Picarro .dat); template in docs/import.md.",
)
@click.option(
    "--step-search",
    "step_search_s",
    type=click.FloatRange(0, 600),
    default=None,
    help="Search this many seconds around each stated start for the closure step "
    "(default 30; 0: use the sheet's times as they are).",
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
@_with_report
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def fit_command(
    files: tuple[str, ...],
    fmt: str,
    sheet: str | None,
    step_search_s: float | None,
    dead_band: str,
    selection: str,
    output: str | None,
    report_path: str | None,
    report_pages: int,
    quiet: bool,
) -> None:
    """Refit every observation of instrument files and compare with the instrument.

    Writes one CSV row per observation and gas; the instrument's own results are in the
    ref_* columns. --report adds an HTML page per observation (trace, window, both fits,
    the instrument's values, flags) after a summary of where we disagree most. Exit
    status 3 when an observation or file was refused (the others are still written).

    Analyser streams need --sheet: their closures are cut by the field sheet, each
    window moved to the closure step found near its stated start (reported as a warning).

    Example: chamberd fit data/*.81x -o fluxes.csv --report fits.html
    """
    from chamberd.fitting import FitSettings
    from chamberd.network_sync.refit import COLUMNS, agreement, refit_paths

    settings = FitSettings(selection=selection)
    chosen = _dead_band(dead_band)
    check_output_folder(output, "-o")
    shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
    html = _report_writer(
        report_path,
        report_pages,
        "chamberd fit: per-observation diagnostics",
        [
            ("files", shown),
            ("format", fmt),
            ("dead band", dead_band),
            ("model selection", selection),
        ],
    )
    observe = None
    if html is not None:
        from chamberd.network_sync.fit_report import from_file_fit

        def observe(obs: Any, closure: Any, fit: Any, row: dict[str, Any]) -> None:
            html.add(from_file_fit(obs, closure, fit, row))

    def progress(report: Any, path: str) -> None:
        if not quiet and report.observations >= 50:
            click.echo(
                f"fitted {report.observations} observations in {report.files} files "
                f"({os.path.basename(path)})",
                err=True,
            )

    report = refit_paths(
        files,
        fmt=fmt,
        dead_band=chosen,
        settings=settings,
        progress=progress,
        observe=observe,
        sheet=sheet,
        search_s=step_search_s,
    )
    write_csv(report.rows, COLUMNS, output)
    if html is not None:
        for refused in report.refused:
            html.refuse(str(refused))
        html.write(notes=agreement(report.rows).lines())
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
        if html is not None:
            click.echo(
                f"report of {html.observations} observations written to {html.path}", err=True
            )
    if report.refused:
        raise SystemExit(3)


@click.group("central")
def central_group() -> None:
    """The shared intercomparison database (SQLite file or PostgreSQL).

    Example: chamberd central init sqlite:///campaign.db
    """


@central_group.command("init")
@click.argument("url")
def central_init_command(url: str) -> None:
    """Create or upgrade the central schema (versioned migrations).

    URL is sqlite:///path/to/central.db or postgresql://user@host/database. A missing SQLite
    file is created; so is a missing PostgreSQL database, where the server lets this login.

    Example: chamberd central init postgresql://postgres@127.0.0.1/campaign
    """
    from chamberd.network_sync.central import Central, redact

    with Central.connect(url, mode="create") as central:
        applied = central.migrate()
        version = central.schema_version()
        roles = central.role_names() if central.dialect == "postgresql" else None
        legacy = central.legacy_site_roles()
    done = f"applied migration(s) {', '.join(map(str, applied))}" if applied else "up to date"
    click.echo(f"{redact(url)}: schema version {version} ({done})")
    if roles:
        click.echo(
            f"roles: analysts {roles['analyst']} (GRANT {roles['analyst']} TO <login>), "
            f"site writers {roles['writer']} (chamberd central add-site)"
        )
    for old in legacy:
        click.echo(
            f"site {old['site_id']!r} still writes with role {old['role_name']} of an older "
            f"chamberd: chamberd central add-site {redact(url)} {old['site_id']} replaces it"
        )


@central_group.command("add-site")
@click.argument("url")
@click.argument("site")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False),
    help="Write the new role's connection URL (with its password) here, mode 600, "
    "instead of printing it.",
)
def central_add_site_command(url: str, site: str, password_file: str | None) -> None:
    """Create the login role that may write only SITE's rows (PostgreSQL, row-level security).

    Running it again gives the role a new password.

    Example: chamberd central add-site postgresql://postgres@db/c xilin-a --password-file a.url
    """
    from urllib.parse import quote, urlsplit, urlunsplit

    from chamberd.network_sync.central import Central, add_site_role

    with Central.connect(url, mode="write") as central:
        role, password = add_site_role(central, site)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    site_url = urlunsplit(
        (
            parts.scheme,
            f"{quote(role, safe='')}:{quote(password, safe='')}@{host}",
            parts.path,
            "",
            "",
        )
    )
    if password_file:
        path = Path(password_file)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(site_url + "\n", encoding="utf-8")
        click.echo(f"role {role} may write site {site!r}; its URL is in {path} (mode 600)")
    else:
        click.echo(f"role {role} may write site {site!r}; its URL (shown once): {site_url}")


@click.command("import")
@click.option("--target", required=True, help="Central database URL.")
@click.option("--site", "site_id", required=True, help="Site id at the central side.")
@click.option("--system", "system_id", required=True, help="Measurement system name.")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(
        [
            "li8100a",
            "li8200",
            "li8250",
            "li78x0",
            "lgr",
            "picarro",
            "cosore",
            "manual-csv",
            "calibration-csv",
        ]
    ),
    help="The files' format.",
)
@click.option(
    "--sheet",
    type=click.Path(exists=True, dir_okay=False),
    help="Field sheet CSV of the closures (required for li78x0, lgr and picarro streams).",
)
@click.option(
    "--step-search",
    "step_search_s",
    type=click.FloatRange(0, 600),
    default=None,
    help="Seconds searched around each stated start for the closure step (default 30).",
)
@click.option("--time-zone", help="IANA zone of instrument clocks (default: the site's).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def import_command(
    target: str,
    site_id: str,
    system_id: str,
    fmt: str,
    sheet: str | None,
    step_search_s: float | None,
    time_zone: str | None,
    as_json: bool,
    paths: tuple[str, ...],
) -> None:
    """Import other systems' files into the central database, each file whole or not at all.

    Re-importing a file is a no-op; with a corrected --time-zone its observations are
    revised. Values the plausibility rules refuse reject the file; withheld ones are warned
    about. Exit status 3 when a file was rejected (the others are imported).

    Example: chamberd import --target sqlite:///c.db --site YMS --system gmp --format cosore d2020
    """
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.importers import import_paths, report_json

    if time_zone:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise click.BadParameter(
                f"{time_zone!r} is not an IANA zone", param_hint="--time-zone"
            ) from exc

    def progress(outcome: Any) -> None:
        if as_json:
            return
        if outcome.status == "rejected":
            for reason in outcome.reasons:
                click.echo(f"rejected: {reason}", err=True)
        else:
            for warning in outcome.warnings:
                click.echo(f"warning: {warning}", err=True)
            for reason in outcome.skipped:
                click.echo(f"skipped: {reason}", err=True)
            what = "calibration records" if fmt == "calibration-csv" else "observations"
            click.echo(
                f"{outcome.path}: {outcome.observations} {what}: new {outcome.sent}, "
                f"revised {outcome.revised}, unchanged {outcome.unchanged}, "
                f"conflicts {outcome.conflicts}",
                err=True,
            )

    with Central.connect(target, mode="write") as central:
        central.require_schema()
        central.require_writer(site_id)
        report = import_paths(
            central,
            paths,
            site_id=site_id,
            system_id=system_id,
            fmt=fmt,
            time_zone=time_zone,
            progress=progress,
            sheet=sheet,
            search_s=step_search_s,
        )
    if as_json:
        click.echo(report_json(report))
    else:
        t = report.totals()
        click.echo(
            f"{t['files']} file(s), {t['rejected']} rejected; {t['observations']} observations: "
            f"new {t['sent']}, revised {t['revised']}, unchanged {t['unchanged']}, "
            f"conflicts {t['conflicts']}; {t['warnings']} warning(s); "
            f"{t['skipped']} truncated observation(s) skipped"
        )
    if report.rejected:
        raise SystemExit(3)


def _query_filters(site, system, chamber, gas, start, end) -> dict[str, Any]:
    from chamberd.network_sync.queries import parse_time

    return {
        "site": list(site) or None,
        "system": list(system) or None,
        "chamber": list(chamber) or None,
        "gas": list(gas) or None,
        "start": parse_time(start, "--from"),
        "end": parse_time(end, "--to"),
    }


_FILTER_OPTIONS = [
    click.option("--site", multiple=True, help="Site id (repeat for several)."),
    click.option("--system", multiple=True, help="System id (repeat for several)."),
    click.option("--chamber", multiple=True, help="Chamber id (repeat for several)."),
    click.option("--gas", multiple=True, type=click.Choice(["co2", "ch4", "n2o"])),
    click.option("--from", "start", metavar="TIME", help="Begin time >= this (ISO 8601, UTC)."),
    click.option("--to", "end", metavar="TIME", help="Begin time < this (ISO 8601, UTC)."),
]


def _with_filters(function: Any) -> Any:
    for option in reversed(_FILTER_OPTIONS):
        function = option(function)
    return function


@click.command("query")
@click.option("--target", required=True, help="Central database URL.")
@_with_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "json"]),
    default="csv",
    show_default=True,
)
@click.option("--all-models", is_flag=True, help="Every model, not only the reported one.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default stdout).")
def query_command(
    target: str,
    site: tuple[str, ...],
    system: tuple[str, ...],
    chamber: tuple[str, ...],
    gas: tuple[str, ...],
    start: str | None,
    end: str | None,
    fmt: str,
    all_models: bool,
    output: str | None,
) -> None:
    """Fluxes by site, system, chamber, gas and time, as CSV, Parquet or JSON.

    One row per observation and gas (the reported model; --all-models for every model),
    with begin and end times in UTC, units, R2, flags and the ancillary means.

    Example: chamberd query --target sqlite:///c.db --site YMS --gas co2 --from 2017-01-01 -o q.csv
    """
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.queries import fluxes, format_float

    filters = _query_filters(site, system, chamber, gas, start, end)
    if fmt == "parquet" and not output:
        raise click.BadParameter("Parquet needs a file", param_hint="-o")
    check_output_folder(output, "-o")
    with Central.connect(target, mode="read") as central:
        central.require_schema()
        frame = fluxes(central, selected_only=not all_models, **filters)
    if fmt == "csv":
        text = frame.to_csv(
            index=False, date_format="%Y-%m-%dT%H:%M:%SZ", float_format=format_float
        )
    elif fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", lines=True)
    if fmt == "parquet":
        frame.to_parquet(output, index=False)
    elif output:
        write_text(output, text)
    else:
        click.echo(text, nl=False)
    if output:
        click.echo(f"{len(frame)} rows written to {output}", err=True)


@click.command("export")
@click.option("--target", required=True, help="Central database URL.")
@click.option("--site", required=True, help="Site id.")
@click.option("--system", help="System id (required for cosore).")
@click.option("--layout", type=click.Choice(["cosore", "fluxnet"]), required=True)
@click.option("--from", "start", metavar="TIME", help="Begin time >= this (ISO 8601, UTC).")
@click.option("--to", "end", metavar="TIME", help="Begin time < this (ISO 8601, UTC).")
@click.option("-o", "--output", required=True, type=click.Path(), help="Folder (cosore) or file.")
def export_command(
    target: str,
    site: str,
    system: str | None,
    layout: str,
    start: str | None,
    end: str | None,
    output: str,
) -> None:
    """Export one site as a COSORE data set or a FLUXNET-style CSV.

    COSORE: a folder with data.csv, PORTS.csv and DESCRIPTION.csv (COSORE column names and
    units). FLUXNET: TIMESTAMP_START/END in local standard time, -9999 for missing.

    Example: chamberd export --target sqlite:///c.db --site YMS --layout fluxnet -o yms.csv
    """
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.queries import export_cosore, export_fluxnet, parse_time

    window = {"start": parse_time(start, "--from"), "end": parse_time(end, "--to")}
    with Central.connect(target, mode="read") as central:
        central.require_schema()
        if layout == "cosore":
            if not system:
                raise click.BadParameter("a COSORE data set is one system", param_hint="--system")
            tables = export_cosore(central, output, site=site, system=system, **window)
            rows = len(tables["data"])
        else:
            check_output_folder(output, "-o")
            rows = len(export_fluxnet(central, output, site=site, system=system, **window))
    click.echo(f"{rows} rows exported to {output}")


@click.command("refit")
@click.option("--target", required=True, help="Central database URL.")
@click.option("--site", help="Only this site.")
@click.option("--system", help="Only this system.")
@click.option("--method", type=click.Choice(["linear", "exponential"]), required=True)
@click.option("--gas", type=click.Choice(["co2", "ch4", "n2o"]), default="co2", show_default=True)
@click.option("--dead-band", "dead_band", type=float, help="Seconds (default: each stored one).")
@click.option(
    "--apply-calibrations",
    is_flag=True,
    help="Correct the concentrations by the calibration records first (version ...-cal).",
)
@_with_report
def refit_command(
    target: str,
    site: str | None,
    system: str | None,
    method: str,
    gas: str,
    dead_band: float | None,
    apply_calibrations: bool,
    report_path: str | None,
    report_pages: int,
) -> None:
    """Refit every stored raw trace with one method (the batch path), as a new processing version.

    The results sit beside each system's own fluxes, under processing_version
    central-<method>-db<dead band>; running it again replaces them. --report writes an HTML
    page per observation: the stored trace, both fits, the new version's flux beside the
    observation's own processing (the instrument's where it has one).
    --apply-calibrations first corrects each sample by the gain and offset in force
    (from the central calibration records of the observation's analyser, matched by
    serial, else analyser id) and writes processing_version ...-cal; the stored samples
    are never changed, and refit_calibrations names the calibrations each observation used.

    Example: chamberd refit --target sqlite:///c.db --method exponential --dead-band 20
    """
    from chamberd.network_sync.central import Central, redact
    from chamberd.network_sync.central_refit import processing_version, refit

    if dead_band is not None and (not math.isfinite(dead_band) or dead_band < 0):
        raise click.BadParameter("a number of seconds >= 0", param_hint="--dead-band")
    version = processing_version(method, dead_band, calibrated=apply_calibrations)
    html = _report_writer(
        report_path,
        report_pages,
        f"chamberd refit {version}: per-observation diagnostics",
        [
            ("database", redact(target)),
            ("site", site or "(all)"),
            ("system", system or "(all)"),
            ("gas", gas),
            ("method", method),
            (
                "dead band",
                "each observation's stored one" if dead_band is None else f"{dead_band:g} s",
            ),
            ("processing version", version),
            (
                "compared with",
                "each observation's own processing (the system): its 'instrument' fluxes "
                "where it has them, else its system's (site-1, cosore, manual)",
            ),
        ],
        reference="system",
    )

    def progress(report: Any) -> None:
        click.echo(f"refitted {report.fitted} of {report.observations}", err=True)

    with Central.connect(target, mode="write") as central:
        central.require_schema()
        observe = None
        if html is not None:
            from chamberd.network_sync.fit_report import central_observer

            observe = central_observer(
                html, central, gas=gas, processing_version=version, method=method
            )
        report = refit(
            central,
            method=method,
            gas=gas,
            site=site,
            system=system,
            dead_band_s=dead_band,
            progress=progress,
            observe=observe,
            apply_calibrations=apply_calibrations,
        )
    if html is not None:
        html.write()
        click.echo(f"report of {html.observations} observations written to {html.path}", err=True)
    rate = report.fitted / report.seconds if report.seconds else 0.0
    click.echo(
        f"{report.fitted} of {report.observations} observations refitted as "
        f"{report.processing_version} ({report.skipped} without geometry or a fit) in "
        f"{report.seconds:.1f} s ({rate:.0f}/s)"
    )
    if apply_calibrations:
        click.echo(
            f"calibrations applied to {report.corrected} observations; "
            f"{report.uncalibrated} had no calibration of their analyser (refitted "
            "uncorrected, flagged no_calibration)"
        )


@click.command("sync")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--target", help="Central database URL (default: the config's sync.target).")
@click.option("--dry-run", is_flag=True, help="Compare with the central side, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--batch-size", type=click.IntRange(1, 100000), help="Observations per batch.")
def sync_command(
    config: str, target: str | None, dry_run: bool, as_json: bool, batch_size: int | None
) -> None:
    """Upload the site's outbox to the central database, in order, exactly once in effect.

    Prints progress and a summary: sent, unchanged, revised, conflicts, remaining.

    Example: chamberd sync site.toml --dry-run
    """
    import json

    from chamberd.controller.clock import SystemClock
    from chamberd.controller.store import SiteStore
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.sync import upload_site

    cfg = _load(config, ())
    url = target or cfg.sync.target
    if not url:
        raise ConfigError(f"{config}: no sync.target (or --target URL) to upload to")
    if not Path(cfg.storage.path).exists():
        raise ConfigError(f"{config}: storage.path {cfg.storage.path!r} does not exist")
    clock = SystemClock()
    store = SiteStore.open_existing(cfg.storage.path)
    try:
        with Central.connect(url, mode="write") as central:
            central.require_schema()

            def progress(summary: Any) -> None:
                if not as_json:
                    click.echo(
                        f"batch {summary.batches}: sent {summary.sent}, unchanged "
                        f"{summary.unchanged}, revised {summary.revised}, conflicts "
                        f"{summary.conflicts}",
                        err=True,
                    )

            def run() -> Any:
                return upload_site(
                    store,
                    central,
                    cfg,
                    clock=clock,
                    dry_run=dry_run,
                    batch_size=batch_size,
                    progress=progress,
                )

            if dry_run:  # everything in one transaction, rolled back
                outcome: list[Any] = []
                with contextlib.suppress(_RollBack), central.transaction():
                    outcome.append(run())
                    raise _RollBack
                summary = outcome[0]
            else:
                summary = run()
    finally:
        store.close()
    result = {
        k: getattr(summary, k)
        for k in ("sent", "unchanged", "revised", "conflicts", "remaining", "dry_run")
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    for c in summary.conflict_details:
        click.echo(
            f"conflict: {c['chamber']} at {c['begin_utc']}: {c['incoming_uuid']} not stored, "
            f"{c['existing_uuid']} holds that chamber and time",
            err=True,
        )
    click.echo(
        f"{'would send' if dry_run else 'sent'} {summary.sent}, unchanged {summary.unchanged}, "
        f"revised {summary.revised}, conflicts {summary.conflicts}, remaining {summary.remaining}"
    )
    cal = summary.calibrations
    if cal and (cal["sent"] or cal["unchanged"] or cal["revised"] or cal["remaining"]):
        click.echo(
            f"calibration records: {'would send' if dry_run else 'sent'} {cal['sent']}, "
            f"unchanged {cal['unchanged']}, revised {cal['revised']}, "
            f"remaining {cal['remaining']}"
        )


@click.command("compare")
@click.option("--target", required=True, help="Central database URL (read only).")
@click.option("--a", "spec_a", metavar="SPEC", help="Series a: SITE/SYSTEM[/CHAMBER[,...]].")
@click.option("--b", "spec_b", metavar="SPEC", help="Series b (bias = mean(b - a)).")
@click.option("--gas", type=click.Choice(["co2", "ch4", "n2o"]), default="co2", show_default=True)
@click.option("--from", "start", metavar="TIME", help="Begin time >= this (ISO 8601, UTC).")
@click.option("--to", "end", metavar="TIME", help="Begin time < this (ISO 8601, UTC).")
@click.option("--a-processing", metavar="VERSION", help="Processing version of a (default own).")
@click.option("--b-processing", metavar="VERSION", help="Processing version of b (default own).")
@click.option(
    "--common-processing",
    metavar="VERSION",
    help="Central refit for the processing part (default: the one both sides have most).",
)
@click.option(
    "--tolerance",
    "tolerance_min",
    type=float,
    default=15.0,
    show_default=True,
    metavar="MIN",
    help="Nearest pairing: largest time difference [min].",
)
@click.option(
    "--pairing",
    "method",
    type=click.Choice(["nearest", "overlap"]),
    default="nearest",
    show_default=True,
    help="Nearest in time within the tolerance, or overlapping closures.",
)
@click.option("--block", type=click.Choice(["hour", "day"]), help="Pair hourly or daily means.")
@click.option(
    "--completeness",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Blocks: share of its expected observations each side needs.",
)
@click.option(
    "--by",
    multiple=True,
    type=click.Choice(["month", "hour", "flux", "temperature", "moisture"]),
    help="Breakdown of the main statistics (repeat for several).",
)
@click.option("--min-collars", type=click.IntRange(1), help="Several chambers: fewest per round.")
@click.option("--boot", "n_boot", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of every resample.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="HTML report to write.")
@click.option(
    "--baseline",
    is_flag=True,
    help="List the between-collar agreement of every system (no --a/--b).",
)
@click.option("--site", help="--baseline: only this site's systems.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def compare_command(
    target: str,
    spec_a: str | None,
    spec_b: str | None,
    gas: str,
    start: str | None,
    end: str | None,
    a_processing: str | None,
    b_processing: str | None,
    common_processing: str | None,
    tolerance_min: float,
    method: str,
    block: str | None,
    completeness: float,
    by: tuple[str, ...],
    min_collars: int | None,
    n_boot: int,
    seed: int,
    as_json: bool,
    output: str | None,
    baseline: bool,
    site: str | None,
    quiet: bool,
) -> None:
    """Compare two series of the central database: how well they agree, and why not.

    SPEC is SITE/SYSTEM (every chamber: the mean of the collars per round),
    SITE/SYSTEM/CHAMBER[,CHAMBER...] or SITE/SYSTEM/plot:NAME. Prints every agreement
    statistic with its block-bootstrap CI (by local standard day), the pairing diagnostics,
    the within-system baselines, the processing part, temperature responses and sums.
    --baseline lists the between-collar agreement of every system instead.

    Example: chamberd compare --target sqlite:///c.db --a YMS/ataka/port1 --b YMS/ueyama/port1
    """
    import json

    from chamberd.network_sync.central import Central
    from chamberd.network_sync.compare import baselines, compare
    from chamberd.network_sync.queries import parse_time

    if not (math.isfinite(tolerance_min) and tolerance_min >= 0):
        raise click.BadParameter("minutes >= 0", param_hint="--tolerance")
    window = {"start": parse_time(start, "--from"), "end": parse_time(end, "--to")}

    def progress(message: str) -> None:
        if not quiet:
            click.echo(f"compare: {message} ...", err=True)

    if baseline:
        for given, name in ((spec_a, "--a"), (spec_b, "--b"), (output, "-o")):
            if given:
                raise click.BadParameter("not with --baseline", param_hint=name)
        with Central.connect(target, mode="read") as central:
            central.require_schema()
            found = baselines(
                central,
                site=site,
                gas=gas,
                tolerance_s=tolerance_min * 60.0,
                method=method,
                block=block,
                completeness=completeness,
                progress=progress,
                **window,
            )
        if as_json:
            click.echo(json.dumps({"baselines": [b.as_dict() for b in found]}, allow_nan=False))
            return
        if not found:
            click.echo("no systems in the central database")
        for b in found:
            click.echo(b.line())
            for row in b.pairs.to_dict(orient="records"):
                click.echo(
                    f"  {row['collar_a']} / {row['collar_b']}: n {row['n_pairs']}, bias "
                    f"{_number(row['bias'])}, RMSD {_number(row['rmsd'])}, r "
                    f"{_number(row['r'])}, CCC {_number(row['ccc'])}"
                )
        return
    if site:
        raise click.BadParameter(
            "only with --baseline (the specs name the sites)", param_hint="--site"
        )
    for given, name in ((spec_a, "--a"), (spec_b, "--b")):
        if not given:
            raise click.BadParameter("required (or --baseline)", param_hint=name)
    if output:
        check_output_folder(output, "-o")
    with Central.connect(target, mode="read") as central:
        central.require_schema()
        comparison = compare(
            central,
            spec_a,
            spec_b,
            gas=gas,
            a_processing=a_processing,
            b_processing=b_processing,
            common_processing=common_processing,
            tolerance_s=tolerance_min * 60.0,
            method=method,
            block=block,
            completeness=completeness,
            by=by,
            n_boot=n_boot,
            seed=seed,
            min_collars=min_collars,
            progress=progress,
            **window,
        )
    if output:
        from chamberd.network_sync.compare.report import render_report

        progress(f"writing the report {output}")
        written = render_report(comparison, output)
        if not quiet:
            click.echo(f"report written to {written}", err=True)
    if as_json:
        click.echo(json.dumps(comparison.as_dict(), allow_nan=False))
    else:
        for line in comparison.lines():
            click.echo(line)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.3f}"


class _RollBack(Exception):
    """Ends a dry run's transaction without committing it."""


def _load(path: str, overrides: tuple[str, ...] = ()) -> Any:
    from chamberd.controller.config import load_config

    return load_config(path, overrides=overrides)


COMMANDS = [
    fit_command,
    central_group,
    import_command,
    query_command,
    export_command,
    refit_command,
    sync_command,
    compare_command,
]
