"""``chamberd serve``: a read-only web page of the site now, and of a central database.

Server-side rendered HTML (no JavaScript), served by bottle's routing on waitress (two
worker threads): every request opens the site database read-only, as ``chamberd status``
does, so the page never writes and never holds a lock the daemon waits on. Pages:

``/``                   the site now: daemon alive (heartbeat), each analyser group's chamber
                        and phase with the live trace of the closure in progress (an inline
                        SVG of the samples written so far, one per gas measured, each in
                        its own unit), the next round, device health,
                        the last warnings and alarms; per chamber its last fluxes with their
                        flags, the fluxes of the last days (a small SVG), its service state
``/obs/<uuid>``         one observation: its traces with the fits, dead band and window (the
                        plot of ``chamberd plot``, a panel per gas), the fits and QC flags
``/central``            with ``--central URL``: sites, systems, their last uploads and clock
                        skew; the comparison reports of ``--reports DIR``
``/status.json``        what ``chamberd status --json`` prints

Security: bound to 127.0.0.1 unless told otherwise; any other address (127.0.0.2 too)
needs a token (the
configuration's ``[web] token`` or ``token_file``), and every request must then carry it
(``?token=``, ``Authorization: Bearer``, or the cookie set by the first such request);
without it the answer is 403. Passwords never appear: every text shown goes through
:func:`scrub` (database URLs' passwords, ``password=`` parameters). The page reloads itself
every ``[web] refresh_s`` seconds (a ``<meta>`` refresh).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hmac
import html
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bottle

from .clock import Clock, local_and_utc
from .config import SiteConfig
from .errors import ConfigError, StorageError
from .output import flux_text
from .plot import PLOT_GASES
from .status import site_status
from .store import SiteStore, parse_iso

__all__ = ["SiteView", "WebServer", "make_app", "needs_token", "parse_bind", "scrub", "web_token"]

_COOKIE = "chamberd_token"
_TRACE_WIDTH, _TRACE_HEIGHT = 560, 180
_TRACE_SMALL_HEIGHT = 120  # each of several gases' traces
_SPARK_WIDTH, _SPARK_HEIGHT = 180, 36
_HISTORY_DAYS = 3
_PLOTS_KEPT = 16

_PASSWORD_IN_URL = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/:@\s]*):[^@/\s]*@")
_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&\s;]*")


def scrub(text: Any) -> str:
    """``text`` with any password in a URL or ``password=`` parameter replaced by ``***``.

    >>> scrub("upload failed: postgresql://site:s3cret@db.example/campaign down")
    'upload failed: postgresql://site:***@db.example/campaign down'
    """
    out = _PASSWORD_IN_URL.sub(r"\1:***@", str(text))
    return _PASSWORD_PARAM.sub(r"\1***", out)


def _e(value: Any) -> str:
    """Escaped, scrubbed text for the page (None as a dash)."""
    return "-" if value is None else html.escape(scrub(value))


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8580`` for IPv6; port 0: any free one) as (host, port);
    ConfigError if not."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--bind {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8580")
    return host, int(port)


def needs_token(host: str) -> bool:
    """Binding to ``host`` needs a token: anything but 127.0.0.1, ::1 and localhost (another
    127.x address is still an address other local users and containers may reach)."""
    return host not in ("127.0.0.1", "::1", "localhost")


def web_token(cfg: SiteConfig, config_path: str | Path | None = None) -> str | None:
    """The configured token (``[web] token``, or the first line of ``[web] token_file``,
    relative to the configuration's folder); None when there is none."""
    web = cfg.web
    if web.token:
        return web.token
    if not web.token_file:
        return None
    path = Path(web.token_file)
    if not path.is_absolute() and config_path is not None:
        path = Path(config_path).resolve().parent / path
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ConfigError(f"web.token_file: {path}: cannot read a token ({exc})") from exc
    if len(token) < 16:
        raise ConfigError(f"web.token_file: {path}: the token is shorter than 16 characters")
    return token


# --- what the pages show --------------------------------------------------------------------


class SiteView:
    """The data of the pages, read from the site database (read-only) at each request.

    ``central`` is called with the ``--central`` URL and returns the overview of
    :func:`chamberd.network_sync.queries.campaign_overview` (injected by the command, so
    this module needs nothing of network_sync)."""

    def __init__(
        self,
        cfg: SiteConfig,
        clock: Clock,
        *,
        central_url: str | None = None,
        central: Callable[[str], dict[str, Any]] | None = None,
        reports_dir: str | Path | None = None,
        refresh_s: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.central_url = central_url
        self.central = central
        self.reports_dir = Path(reports_dir).resolve() if reports_dir else None
        self.refresh_s = refresh_s if refresh_s is not None else cfg.web.refresh_s
        self._plots: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._plot_lock = threading.Lock()
        self._render_lock = threading.Lock()

    @contextlib.contextmanager
    def store(self) -> Iterator[SiteStore | None]:
        if not Path(self.cfg.storage.path).exists():
            yield None
            return
        store = SiteStore.open_readonly(self.cfg.storage.path)
        try:
            yield store
        finally:
            store.close()

    def when(self, text: str | None) -> str:
        if not text:
            return "-"
        return local_and_utc(parse_iso(text), self.cfg.site.time_zone)

    def status(self) -> dict[str, Any] | None:
        with self.store() as store:
            if store is None:
                return None
            return site_status(self.cfg, store, self.clock.now())

    # --- queries ---

    def _trace(self, store: SiteStore, uuid: str) -> list[dict[str, Any]]:
        return store.query(
            "SELECT elapsed_s, co2_umol_mol, ch4_nmol_mol, n2o_nmol_mol, phase FROM samples "
            "WHERE observation_uuid = ? ORDER BY seq",
            (uuid,),
        )

    def _history(self, store: SiteStore, since: dt.datetime) -> dict[str, dict[str, list[dict]]]:
        """The selected fluxes since ``since``, per chamber and gas (each gas its own
        series in its own unit: CO2 and CH4 never share a curve)."""
        rows = store.query(
            "SELECT o.chamber, o.uuid, o.started_at, f.gas, f.flux, f.flux_unit, f.flags "
            "FROM fluxes f JOIN observations o ON o.uuid = f.observation_uuid "
            "WHERE f.selected = 1 AND o.started_at >= ? ORDER BY o.started_at",
            (since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),),
        )
        out: dict[str, dict[str, list[dict]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        for row in rows:
            out[row["chamber"]][row["gas"]].append(row)
        return out

    def site_page(self) -> str:
        now = self.clock.now()
        with self.store() as store:
            if store is None:
                body = (
                    f"<p class=bad>No site database yet at {_e(self.cfg.storage.path)} "
                    "(has the daemon run?)</p>"
                )
                return _page(f"{self.cfg.site.id}: no data", body, self.refresh_s)
            status = site_status(self.cfg, store, now)
            daemon = status["daemon"]
            traces = {
                a["observation_uuid"]: self._trace(store, a["observation_uuid"])
                for a in daemon.get("activity") or []
                if daemon.get("running") and a.get("observation_uuid")
            }
            history = self._history(store, now - dt.timedelta(days=_HISTORY_DAYS))
        parts = [self._daemon_html(daemon, traces)]
        parts.append(self._chambers_html(status, history))
        parts.append(self._health_html(status))
        parts.append(self._warnings_html(status))
        if self.central_url:
            parts.append('<p><a href="/central">the central database</a></p>')
        title = f"{self.cfg.site.id}: " + ("running" if daemon.get("running") else "NOT RUNNING")
        return _page(title, "\n".join(parts), self.refresh_s)

    def _daemon_html(self, daemon: dict[str, Any], traces: dict[str, list]) -> str:
        out = ["<section id=now><h2>Now</h2>"]
        if daemon.get("running"):
            out.append(
                f"<p class=ok id=alive>daemon running (pid {_e(daemon.get('pid'))}, heartbeat "
                f"{daemon['heartbeat_age_s']:.0f} s ago)</p>"
            )
        else:
            out.append(f"<p class=bad id=alive>daemon NOT RUNNING: {_e(daemon.get('why'))}</p>")
        if daemon.get("running") and daemon.get("round_at"):
            out.append(f"<p>round of {_e(self.when(daemon['round_at']))}</p>")
            for a in daemon.get("activity") or []:
                out.append(
                    f"<div class=activity><p><b>{_e(a.get('chamber'))}</b> "
                    f"<span class=phase>{_e(a.get('phase'))}</span> on analyser "
                    f"{_e(a.get('analyser'))} since {_e(self.when(a.get('since')))}</p>"
                )
                samples = traces.get(a.get("observation_uuid") or "", [])
                if samples:
                    out.append(_traces_html(samples))
                out.append("</div>")
        elif daemon.get("running"):
            out.append("<p>waiting for the next round</p>")
        if daemon.get("next_round"):
            out.append(f"<p id=next>next round: {_e(daemon['next_round'])}</p>")
        out.append("</section>")
        return "\n".join(out)

    def _chambers_html(self, status: dict[str, Any], history: dict[str, list]) -> str:
        out = [
            "<section id=chambers><h2>Chambers</h2><table><tr><th>chamber</th><th>service</th>"
            "<th>last observation</th><th>status</th><th>CO2 flux [umol m-2 s-1]</th>"
            f"<th>model</th><th>flags</th><th>last {_HISTORY_DAYS} days</th></tr>"
        ]
        for c in status["chambers"]:
            obs = c["last_observation"] or {}
            flux = c["last_flux"] or {}
            service = (
                "in service"
                if c["in_service"]
                else ("disabled" if not c["enabled"] else f"OUT until {c['out_of_service_until']}")
            )
            value = _fluxes_html(flux, c.get("last_fluxes") or [])
            link = (
                f'<a href="/obs/{quote(obs["uuid"])}">{_e(obs.get("started_at"))}</a>'
                if obs.get("uuid")
                else "-"
            )
            reason = f"<br><small>{_e(obs['reason'])}</small>" if obs.get("reason") else ""
            out.append(
                f"<tr class=chamber><td>{_e(c['chamber'])}<br><small>{_e(c['label'])}</small></td>"
                f"<td>{_e(service)}</td><td>{link}</td><td>{_e(obs.get('status'))}{reason}</td>"
                f"<td class=flux>{value}</td><td>{_e(flux.get('model'))}</td>"
                f"<td>{_e(flux.get('flags') or 'none') if flux else '-'}</td>"
                f"<td>{_sparks_html(history.get(c['chamber'], {}))}</td></tr>"
            )
        out.append("</table></section>")
        return "\n".join(out)

    def _health_html(self, status: dict[str, Any]) -> str:
        out = [
            "<section id=health><h2>Devices</h2><table><tr><th>device</th><th>state</th>"
            "<th>last good reading</th><th>last error</th></tr>"
        ]
        for h in status["health"]:
            state = "ok" if h["ok"] else ("REFUSED" if h.get("refused") else "FAULT")
            error = h.get("last_error")
            error_text = f"{_e(h.get('last_error_at'))} {_e(error)}" if error else "-"
            out.append(
                f"<tr class={'ok' if h['ok'] else 'bad'}><td>{_e(h['component'])}</td>"
                f"<td>{state}</td><td>{_e(h.get('last_good_at'))}</td><td>{error_text}</td></tr>"
            )
        out.append(f"</table><p>disk free: {status['disk_free_mb']:.0f} MB</p></section>")
        return "\n".join(out)

    def _warnings_html(self, status: dict[str, Any]) -> str:
        rows = [*status.get("recent_pending_events", []), *status["recent_warnings"]]
        if not rows:
            return "<section id=warnings><h2>Warnings and alarms</h2><p>none</p></section>"
        out = [
            "<section id=warnings><h2>Warnings and alarms</h2><table>"
            "<tr><th>at</th><th>level</th><th>what</th><th>message</th></tr>"
        ]
        for w in rows:
            out.append(
                f"<tr class={_e(w['level'])}><td>{_e(w['at'])}</td><td>{_e(w['level'])}</td>"
                f"<td>{_e(w['kind'])}</td><td>{_e(w['message'])}</td></tr>"
            )
        out.append("</table></section>")
        return "\n".join(out)

    def observation_page(self, uuid: str) -> str | None:
        with self.store() as store:
            if store is None:
                return None
            rows = store.query("SELECT * FROM observations WHERE uuid = ?", (uuid,))
            if not rows:
                return None
            obs = rows[0]
            fluxes = store.query(
                "SELECT gas, model, selected, flux, flux_se, flux_unit, r2, nrmse, n_points, "
                "dead_band_s, end_s, flags, model_reason FROM fluxes "
                "WHERE observation_uuid = ? ORDER BY gas, model",
                (uuid,),
            )
            n_samples = store.query(
                "SELECT count(*) AS n FROM samples WHERE observation_uuid = ?", (uuid,)
            )[0]["n"]
        flags = sorted({f for row in fluxes for f in (row["flags"] or "").split(";") if f})
        out = [
            f'<p><a href="/">&larr; {_e(self.cfg.site.id)} now</a></p>',
            f"<section id=observation><h2>Chamber {_e(obs['chamber'])}, "
            f"{_e(self.when(obs['started_at']))}</h2>",
            f"<p>status <b id=obs-status>{_e(obs['status'])}</b>"
            + (f" ({_e(obs['reason'])})" if obs.get("reason") else "")
            + f"; {n_samples} samples; dead band {_e(obs.get('dead_band_s'))} s, observation "
            f"{_e(obs.get('observation_s'))} s; analyser {_e(obs.get('analyser'))} "
            f"{_e(obs.get('analyser_model'))} {_e(obs.get('analyser_serial'))}</p>",
            f"<p>QC flags: <span id=flags>{_e(', '.join(flags) or 'none')}</span></p>",
        ]
        if n_samples >= 4:
            out.append(
                f'<img id=plot alt="trace and fits of {_e(uuid)}" width=640 '
                f'src="/obs/{quote(uuid)}.png">'
            )
        out.append(
            "<table><tr><th>gas</th><th>model</th><th>reported</th><th>flux</th><th>s.e.</th>"
            "<th>unit</th>"
            "<th>R2</th><th>NRMSE</th><th>points</th><th>window [s]</th><th>flags</th></tr>"
        )
        for f in fluxes:
            out.append(
                f"<tr><td>{_e(_gas_name(f['gas']))}</td><td>{_e(f['model'])}</td>"
                f"<td>{'yes' if f['selected'] else ''}</td>"
                f"<td>{_num(f['flux'])}</td><td>{_num(f['flux_se'])}</td>"
                f"<td>{_e(f['flux_unit'])}</td><td>{_num(f['r2'])}</td><td>{_num(f['nrmse'])}</td>"
                f"<td>{_e(f['n_points'])}</td><td>{_num(f['dead_band_s'], 1)} - "
                f"{_num(f['end_s'], 1)}</td><td>{_e(f['flags'] or 'none')}</td></tr>"
            )
        out.append("</table>")
        out.append(
            f"<p><small>uuid {_e(uuid)}; config {_e(obs.get('config_hash'))}; chamberd "
            f"{_e(obs.get('software_version'))}</small></p></section>"
        )
        return _page(f"{self.cfg.site.id}: {obs['chamber']} observation", "\n".join(out), None)

    def observation_plot(self, uuid: str) -> bytes | None:
        """The PNG of ``chamberd plot`` (kept for finished observations)."""
        with self._plot_lock:
            if uuid in self._plots:
                self._plots.move_to_end(uuid)
                return self._plots[uuid]
        from .plot import plot_observation

        with self.store() as store, tempfile.TemporaryDirectory() as folder:
            if store is None:
                return None
            rows = store.query("SELECT status FROM observations WHERE uuid = ?", (uuid,))
            if not rows:
                return None
            try:
                with self._render_lock:  # pyplot is not thread-safe: one plot at a time
                    path = plot_observation(store, uuid, Path(folder) / "obs.png")
            except (ConfigError, StorageError):
                return None
            data = path.read_bytes()
        if rows[0]["status"] != "running":
            with self._plot_lock:
                self._plots[uuid] = data
                while len(self._plots) > _PLOTS_KEPT:
                    self._plots.popitem(last=False)
        return data

    def central_page(self) -> str | None:
        if not self.central_url or self.central is None:
            return None
        try:
            overview = self.central(self.central_url)
        except Exception as exc:  # an unreachable central database is shown, not raised
            body = f"<p class=bad>cannot read {_e(self.central_url)}: {_e(exc)}</p>"
            return _page("central database", body, self.refresh_s)
        out = [f'<p><a href="/">&larr; {_e(self.cfg.site.id)} now</a></p>']
        out.append(f"<section id=central><h2>{_e(overview['url'])}</h2>")
        out.append("<h3>Sites and systems</h3><table><tr><th>site</th><th>system</th>")
        out.append("<th>instrument</th><th>method</th><th>observations</th><th>latest</th></tr>")
        for s in overview["systems"]:
            out.append(
                f"<tr><td>{_e(s['site_id'])}</td><td>{_e(s['system_id'])}</td>"
                f"<td>{_e(s['instrument'])}</td><td>{_e(s['method'])}</td>"
                f"<td>{_e(s['observations'])}</td><td>{_e(s['last_observation'])}</td></tr>"
            )
        out.append("</table><h3>Last uploads</h3><table><tr><th>site</th><th>at</th>")
        out.append("<th>kind</th><th>sent</th><th>conflicts</th><th>clock skew [s]</th></tr>")
        for u in overview["last_uploads"]:
            flagged = " (beyond the limit)" if u.get("skew_flagged") else ""
            out.append(
                f"<tr><td>{_e(u['site_id'])}</td><td>{_e(u['at'])}</td><td>{_e(u['kind'])}</td>"
                f"<td>{_e(u['sent'])}</td><td>{_e(u['conflicts'])}</td>"
                f"<td>{_num(u.get('skew_s'), 1)}{flagged}</td></tr>"
            )
        out.append("</table>")
        reports = self.reports()
        out.append("<h3>Comparison reports</h3>")
        if reports:
            out.append("<ul>")
            out += [f'<li><a href="/reports/{quote(r)}">{_e(r)}</a></li>' for r in reports]
            out.append("</ul>")
        else:
            out.append("<p>none" + ("" if self.reports_dir else " (no --reports folder)") + "</p>")
        out.append("</section>")
        return _page("central database", "\n".join(out), self.refresh_s)

    def reports(self) -> list[str]:
        if self.reports_dir is None or not self.reports_dir.is_dir():
            return []
        return sorted(p.name for p in self.reports_dir.glob("*.html") if p.is_file())


# --- small SVGs, rendered here -------------------------------------------------------------


def _scale(values: list[float], lo_px: float, hi_px: float) -> Callable[[float], float]:
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return lambda v: lo_px + (v - lo) / span * (hi_px - lo_px)


#: how the live trace draws each gas: digits shown, curve colour
_TRACE_STYLE = {"co2": (1, "#1f6feb"), "ch4": (1, "#bf3989"), "n2o": (2, "#8250df")}
#: the gases of the live trace: gas, sample column, unit, digits shown, curve colour
_TRACE_GASES = tuple((*gas, *_TRACE_STYLE[gas[0]]) for gas in PLOT_GASES)


def _traces_html(samples: list[dict[str, Any]]) -> str:
    """The closure in progress: one trace per gas its samples report (CO2 first), each in
    its own unit on its own axis; a CO2-only closure is the one trace it always was."""
    present = [
        g
        for g in _TRACE_GASES
        if any(s.get(g[1]) is not None and s["elapsed_s"] is not None for s in samples)
    ]
    if [g[0] for g in present] in ([], ["co2"]):
        return _trace_svg(samples)
    return "\n".join(_trace_svg(samples, gas, named=True) for gas in present)


def _trace_svg(
    samples: list[dict[str, Any]],
    gas: tuple[str, str, str, int, str] = _TRACE_GASES[0],
    *,
    named: bool = False,
) -> str:
    """The concentration trace of one gas so far (CO2 by default) against elapsed time;
    ``named``: a smaller one of several, its gas named in the text before it."""
    name, column, unit, digits, colour = gas
    label = name.upper()
    points = [
        (s["elapsed_s"], s[column])
        for s in samples
        if s["elapsed_s"] is not None and s.get(column) is not None
    ]
    if len(points) < 2:
        which = f"{label} trace" if named else "trace"
        return f"<p><small>({which}: fewer than two samples written yet)</small></p>"
    w, h, pad = _TRACE_WIDTH, (_TRACE_SMALL_HEIGHT if named else _TRACE_HEIGHT), 30
    x = _scale([p[0] for p in points], pad, w - 8)
    y = _scale([p[1] for p in points], h - 20, 8)
    line = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in points)
    last_t, last_c = points[-1]
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    return (
        f'<svg class=trace width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{label} trace of the closure in progress">'
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#f6f8fa" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>'
        f'<text x="4" y="14" font-size="11">{hi:.{digits}f}</text>'
        f'<text x="4" y="{h - 22}" font-size="11">{lo:.{digits}f}</text>'
        f'<text x="{pad}" y="{h - 4}" font-size="11">{label} [{unit}] against elapsed time; '
        f"now {last_t:.0f} s, {last_c:.{digits}f} {unit} ({len(points)} samples written)</text>"
        "</svg>"
    )


def _gas_name(gas: str | None) -> str:
    return "-" if gas is None else gas.upper()


def _fluxes_html(flux: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """The last CO2 flux [umol m-2 s-1, the column's unit] and under it the chamber's
    other gases, each labelled in its own unit; below detection shown as ``< MDF``, as
    ``chamberd status`` does."""
    co2 = flux.get("flux") if (flux.get("gas") or "co2") == "co2" else None
    lines = ["-" if co2 is None else f"{co2:.3f}"]
    for g in others:
        if g["gas"] == "co2" or g["flux"] is None:
            continue
        shown = _e(flux_text(g["flux"], g.get("mdf"), g.get("flags")))
        lines.append(f"<small class=gas>{_gas_name(g['gas'])} {shown} {_e(g['flux_unit'])}</small>")
    return "<br>".join(lines)


def _sparks_html(series: dict[str, list[dict[str, Any]]]) -> str:
    """One small curve per gas (CO2 first), each labelled with its gas."""
    if not series:
        return "<small>-</small>"
    order = sorted(series, key=lambda gas: (gas != "co2", gas))
    if order == ["co2"]:
        return _spark_svg(series["co2"])
    return "<br>".join(
        f"<small>{_gas_name(gas)}</small> {_spark_svg(series[gas])}" for gas in order
    )


def _spark_svg(rows: list[dict[str, Any]]) -> str:
    values = [(r["started_at"], r["flux"]) for r in rows if r["flux"] is not None]
    unit = next((r.get("flux_unit") for r in rows if r.get("flux_unit")), "umol m-2 s-1")
    if len(values) < 2:
        return "<small>-</small>"
    w, h = _SPARK_WIDTH, _SPARK_HEIGHT
    x = _scale([float(i) for i in range(len(values))], 2, w - 2)
    y = _scale([v for _, v in values], h - 3, 3)
    line = " ".join(f"{x(float(i)):.1f},{y(v):.1f}" for i, (_, v) in enumerate(values))
    lo, hi = min(v for _, v in values), max(v for _, v in values)
    return (
        f'<svg class=spark width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="fluxes from {lo:.2f} to {hi:.2f}"><title>{len(values)} fluxes, '
        f"{lo:.2f} to {hi:.2f} {_e(unit)}</title>"
        f'<polyline fill="none" stroke="#2da44e" stroke-width="1.5" points="{line}"/></svg>'
    )


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #1f2328; background: #fff; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.ok { color: #1a7f37; } .bad, .critical, .error { color: #cf222e; } .warning { color: #9a6700; }
tr.ok td, tr.bad td { color: inherit; } tr.bad { background: #ffebe9; }
.phase { background: #ddf4ff; padding: 1px 6px; border-radius: 4px; }
small { color: #57606a; }
"""


def _page(title: str, body: str, refresh_s: float | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s:g}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
        '<link rel="icon" href="data:,">'  # no favicon request
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>\n{body}\n</body></html>"
    )


# --- the application ------------------------------------------------------------------------


def make_app(view: SiteView, *, token: str | None = None) -> bottle.Bottle:
    """The WSGI application of ``view``; with ``token`` every request must carry it."""
    app = bottle.Bottle()

    @app.hook("before_request")
    def _check_token() -> None:
        if token is None:
            return
        request = bottle.request
        given = request.query.get("token") or ""
        header = request.get_header("Authorization") or ""
        if header.startswith("Bearer "):
            given = given or header[7:].strip()
        given = given or request.get_cookie(_COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise bottle.HTTPResponse("403 Forbidden: a token is required\n", status=403)
        if request.query.get("token"):  # links and the reload carry it as a cookie
            bottle.response.set_cookie(_COOKIE, token, httponly=True, samesite="strict", path="/")

    def _html(text: str | None) -> str:
        if text is None:
            raise bottle.HTTPError(404, "not found")
        bottle.response.content_type = "text/html; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        return text

    @app.get("/")
    def _site() -> str:
        return _html(view.site_page())

    @app.get("/obs/<uuid>.png")
    def _plot(uuid: str) -> bytes:
        data = view.observation_plot(uuid)
        if data is None:
            raise bottle.HTTPError(404, "no such observation")
        bottle.response.content_type = "image/png"
        return data

    @app.get("/obs/<uuid>")
    def _observation(uuid: str) -> str:
        return _html(view.observation_page(uuid))

    @app.get("/central")
    def _central() -> str:
        return _html(view.central_page())

    @app.get("/reports/<name>")
    def _report(name: str) -> Any:
        if view.reports_dir is None or name not in view.reports():
            raise bottle.HTTPError(404, "no such report")
        return bottle.static_file(name, root=str(view.reports_dir), mimetype="text/html")

    @app.get("/status.json")
    def _status() -> Any:
        status = view.status()
        if status is None:
            raise bottle.HTTPError(404, "no site database yet")
        bottle.response.content_type = "application/json"
        return scrub(json.dumps(status, default=str))

    @app.error(404)
    def _missing(error: bottle.HTTPError) -> str:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return f"404 {error.body}\n"

    return app


class WebServer:
    """``app`` served by waitress on ``host:port`` (port 0: any free one) in a thread;
    :meth:`close` stops it."""

    def __init__(self, app: Any, host: str, port: int, *, threads: int = 2) -> None:
        import waitress

        self.server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="chamberd",
            clear_untrusted_proxy_headers=True,
        )
        self.host = host
        self.port = int(self.server.effective_port)
        self._thread = threading.Thread(target=self._run, name="chamberd-web", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed while serving
            self.server.run()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Finish the requests in progress, then close every connection and the socket (the
        serving loop ends when it has none left)."""
        server = self.server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        for channel in list(server._map.values()):
            with contextlib.suppress(OSError):
                channel.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
