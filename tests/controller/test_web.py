"""``chamberd serve`` over HTTP (waitress on 127.0.0.1, an ephemeral port): the site page,
an observation's page and plot, the status JSON, the central database's page; a token for
any bind but 127.0.0.1; no password ever shown. The site is the in-memory hardware on a
virtual clock (its store is what the page reads)."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request

import pytest

from chamberd.controller.app import build_site
from chamberd.controller.cli import main
from chamberd.controller.clock import FakeClock
from chamberd.controller.config import to_toml
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.store import SiteStore
from chamberd.controller.web import SiteView, WebServer, make_app, needs_token, parse_bind

START = dt.datetime(2026, 7, 1, 3, 59, tzinfo=dt.UTC)
PASSWORD = "s3cret-Pw-9"
TOKEN = "a-token-of-at-least-16-characters"


def get(url, *, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _site_with_snapshot(cfg, clock):
    """The in-memory site of ``cfg``, its page's view, and a dict that gets one snapshot of
    the page (``"page"``), taken while C1 is opening (its trace written)."""
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    view = SiteView(cfg, clock)
    live: dict[str, str] = {}
    progress = site.daemon._progress

    def snapshot(analyser_id, chamber, phase, uuid):
        progress(analyser_id, chamber, phase, uuid)
        if chamber == "C1" and phase == "opening" and "page" not in live:
            live["page"] = view.site_page()

    site.daemon._progress = snapshot
    return site, view, live


@pytest.fixture(scope="module")
def measured(tmp_path_factory, make_site_cfg):
    """A site after two rounds, with one live snapshot of the page taken during C1's
    opening (its trace written), and an event naming a database URL with a password."""
    folder = tmp_path_factory.mktemp("web")
    target = f"postgresql://site:{PASSWORD}@127.0.0.1:9/campaign"
    cfg = make_site_cfg(4, 2, protocol="memory", db=folder / "site.db", sync={"target": target})
    clock = FakeClock(start=START)
    site, view, live = _site_with_snapshot(cfg, clock)
    site.daemon.startup()
    for minutes in (1, 31):
        site.daemon.run_round(START + dt.timedelta(minutes=minutes))
    site.daemon.alarm("warning", "sync_failed", f"upload to {target} failed: refused")
    config = folder / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    yield {"cfg": cfg, "clock": clock, "site": site, "view": view, "live": live, "config": config}
    site.daemon.shutdown("end of test")
    site.close()


@pytest.fixture
def server(measured):
    with WebServer(make_app(measured["view"]), "127.0.0.1", 0) as s:
        yield s


def test_the_site_page_shows_the_site_now(measured, server):
    status, headers, body = get(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "<title>sim-grassland: running</title>" in page
    assert "id=alive>daemon running (pid" in page
    assert "waiting for the next round" in page
    assert "next round: 2026-07-01 12:30:00 CST (04:30:00 UTC)" in page
    assert '<meta http-equiv="refresh" content="10">' in page
    rows = re.findall(r"<tr class=chamber>(.*?)</tr>", page)
    assert len(rows) == 4
    for row in rows:
        assert re.search(r"<td class=flux>-?\d+\.\d{3}</td>", row)
        assert "<svg class=spark" in row  # the fluxes of the last days
        assert re.search(r'href="/obs/[0-9a-f-]{36}"', row)
    assert "modbus:relays1" in page and "analyser:irga1" in page
    assert "sync_failed" in page
    assert PASSWORD not in page and "postgresql://site:***@127.0.0.1:9/campaign" in page
    assert "<script" not in page  # no JavaScript needed


def test_the_live_trace_of_the_closure_in_progress(measured):
    page = measured["live"]["page"]
    assert "<title>sim-grassland: running</title>" in page
    assert "round of 2026-07-01 12:00:00 CST (04:00:00 UTC)" in page
    assert "<b>C1</b> <span class=phase>opening</span> on analyser irga1" in page
    trace = re.search(r"<svg class=trace .*?</svg>", page)
    assert trace and "<polyline" in trace[0]
    points = re.search(r'points="([^"]+)"', trace[0])[1].split()
    assert len(points) >= 100  # closing, dead band and the observation, written
    activity = re.search(r"<div class=activity><p><b>C1</b>.*?</div>", page, re.S)[0]
    assert len(re.findall(r"<svg class=trace ", activity)) == 1  # a CO2 site: CO2 alone
    assert 'aria-label="CO2 trace of the closure in progress"' in trace[0]
    assert "CO2 [umol mol-1] against elapsed time" in trace[0]


def test_an_observation_page_and_its_plot(measured, server):
    page = get(server.url)[2].decode()
    link = re.search(r'href="(/obs/[0-9a-f-]{36})"', page)[1]
    status, _, body = get(server.url.rstrip("/") + link)
    assert status == 200
    obs = body.decode()
    assert "status <b id=obs-status>done</b>" in obs
    assert "QC flags: <span id=flags>" in obs
    assert re.search(r"<td>exponential</td><td>(yes)?</td><td>-?\d+\.\d{3}</td>", obs)
    assert "dead band 20.0 s" in obs or "dead band 20 s" in obs
    status, headers, png = get(server.url.rstrip("/") + link + ".png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert get(server.url + "obs/not-an-observation")[0] == 404
    assert get(server.url + "obs/not-an-observation.png")[0] == 404
    assert get(server.url + "central")[0] == 404  # no --central


def test_the_plot_of_a_co2_observation_is_one_panel(measured):
    """A CO2-only observation: the single panel of dry CO2 it always was."""
    import matplotlib.pyplot as plt

    from chamberd.controller.plot import observation_figure

    store = SiteStore.open_readonly(measured["cfg"].storage.path)
    try:
        uuid = store.query("SELECT uuid FROM observations WHERE status = 'done' LIMIT 1")[0]
        figure = observation_figure(store, uuid["uuid"])
    finally:
        store.close()
    try:
        assert [a.get_ylabel() for a in figure.axes] == ["dry CO2 [umol mol-1]"]
        assert "umol m-2 s-1" in figure.axes[0].get_title()
        assert tuple(figure.get_size_inches()) == (8, 4.5)
    finally:
        plt.close(figure)


def test_status_json_has_no_password(measured, server):
    status, headers, body = get(server.url + "status.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert data["daemon"]["running"] and len(data["chambers"]) == 4
    assert PASSWORD not in body.decode()


def test_a_token_is_required_on_any_address_but_127_0_0_1(measured):
    assert not needs_token("127.0.0.1") and not needs_token("::1")
    assert needs_token("127.0.0.2") and needs_token("0.0.0.0") and needs_token("192.0.2.7")
    with WebServer(make_app(measured["view"], token=TOKEN), "127.0.0.2", 0) as s:
        assert s.url.startswith("http://127.0.0.2:")
        status, _, body = get(s.url)
        assert status == 403 and b"token" in body
        assert get(s.url + "status.json")[0] == 403
        assert get(s.url + "?token=wrong-token-of-16-chars")[0] == 403
        status, headers, _ = get(s.url + f"?token={TOKEN}")
        assert status == 200
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"]
        assert get(s.url + "status.json", headers={"Cookie": cookie})[0] == 200  # links work
        assert get(s.url, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        page = get(s.url, headers={"Authorization": f"Bearer {TOKEN}"})[2].decode()
        assert TOKEN not in page


def test_serve_refuses_a_bind_elsewhere_without_a_token(measured, capsys):
    config = str(measured["config"])
    assert main(["serve", config, "--bind", "127.0.0.2:0"]) == 2
    err = capsys.readouterr().err
    assert "not 127.0.0.1, so the page needs a token" in err and "web.token" in err
    assert main(["serve", config, "--bind", "nonsense"]) == 2
    assert parse_bind("[::1]:8580") == ("::1", 8580)


def test_check_config_never_prints_the_token(tmp_path, make_site_cfg, capsys):
    token_file = tmp_path / "web.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    cfg = make_site_cfg(2, 1, protocol="memory", db=tmp_path / "site.db", web={"token": TOKEN})
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    assert main(["check-config", "--no-path-checks", str(config)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and "# web.token is set (not shown)" in out


def test_the_central_database_page(measured, tmp_path, salt_81x):
    url = f"sqlite:///{tmp_path / 'central.db'}"
    assert main(["central", "init", url]) == 0
    argv = ["import", "--target", url, "--site", "SALT", "--system", "li8100a"]
    assert main([*argv, "--format", "li8100a", "--time-zone", "UTC", str(salt_81x)]) == 0
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "campaign-report.html").write_text("<html>a report</html>", encoding="utf-8")
    from chamberd.network_sync.queries import campaign_overview

    view = SiteView(
        measured["cfg"],
        measured["clock"],
        central_url=url,
        central=campaign_overview,
        reports_dir=reports,
    )
    with WebServer(make_app(view), "127.0.0.1", 0) as s:
        assert 'href="/central"' in get(s.url)[2].decode()
        status, _, body = get(s.url + "central")
        page = body.decode()
        assert status == 200
        assert "<td>SALT</td><td>li8100a</td>" in page
        assert re.search(r"<td>SALT</td><td>[^<]+</td><td>import", page), page
        assert 'href="/reports/campaign-report.html"' in page
        assert get(s.url + "reports/campaign-report.html")[2] == b"<html>a report</html>"
        assert get(s.url + "reports/..%2Fsite.toml")[0] == 404


def test_the_page_of_a_site_without_a_database(tmp_path, make_site_cfg):
    cfg = make_site_cfg(2, 1, protocol="memory", db=tmp_path / "none" / "site.db")
    with WebServer(make_app(SiteView(cfg, FakeClock(start=START))), "127.0.0.1", 0) as s:
        status, _, body = get(s.url)
    assert status == 200 and b"No site database yet" in body


def test_the_page_reads_without_writing(measured, server):
    store = SiteStore.open_readonly(measured["cfg"].storage.path)
    try:
        before = store.query("SELECT count(*) AS n FROM events")[0]["n"]
        for _ in range(3):
            assert get(server.url)[0] == 200
        assert store.query("SELECT count(*) AS n FROM events")[0]["n"] == before
    finally:
        store.close()


def test_a_trace_gas_site_keeps_each_gas_in_its_own_unit(tmp_path):
    """CO2 + CH4 + N2O in each loop: the CO2 column holds CO2 only, the other gases are
    listed under it in nmol m-2 s-1 (N2O below detection as < MDF), each gas has its own
    small curve, and an observation's page names the gas of every fit."""
    from .tracegas_site import tracegas_site

    cfg = tracegas_site(tmp_path / "site.db")
    clock = FakeClock(start=START)
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    try:
        site.daemon.startup()
        for minutes in (1, 31):
            site.daemon.run_round(START + dt.timedelta(minutes=minutes))
        view = SiteView(cfg, clock)
        page = view.site_page()
    finally:
        site.daemon.shutdown("end of test")
        site.close()
    assert "<th>CO2 flux [umol m-2 s-1]</th>" in page
    rows = dict(re.findall(r"<tr class=chamber><td>(C\d)<br>(.*?)</tr>", page))
    assert set(rows) == {"C1", "C2", "C3", "C4"}
    for chamber, row in rows.items():
        cell = re.search(r"<td class=flux>(.*?)</td>", row).group(1)
        co2 = float(cell.split("<br>")[0])
        assert 0 < co2 < 20  # a soil CO2 efflux, never a CH4 value in nmol
        gases = re.findall(r"<small class=gas>(\w+) (.*?) nmol m-2 s-1</small>", cell)
        assert {g for g, _ in gases} == ({"CH4"} if chamber in ("C1", "C2") else {"N2O"})
        sparks = re.findall(r"<small>(\w+)</small> <svg class=spark", row)
        assert sparks == ["CO2", "CH4"] if chamber in ("C1", "C2") else ["CO2", "N2O"]
        assert "nmol m-2 s-1</title>" in row  # the trace gas's curve in its unit
    ch4 = re.search(r"<small class=gas>CH4 (-?[\d.]+) nmol", rows["C1"]).group(1)
    assert float(ch4) > 5  # the paddy's emission (40 nmol m-2 s-1 at 10 degC)
    uuid = re.search(r'href="/obs/([0-9a-f-]{36})"', rows["C1"]).group(1)
    obs = view.observation_page(uuid)
    assert "<th>gas</th>" in obs
    assert {"<td>CO2</td>", "<td>CH4</td>"} <= set(re.findall(r"<td>(?:CO2|CH4)</td>", obs))


def test_serve_runs_shows_the_token_once_and_stops_on_sigterm(measured, tmp_path):
    """The command itself: ``chamberd serve`` on 127.0.0.2 (a free port) prints where it
    serves and the token once, answers with the token and refuses without it, and ends on
    SIGTERM with status 0."""
    import signal
    import socket
    import subprocess
    import sys

    cfg = measured["cfg"].model_copy(
        update={"web": measured["cfg"].web.model_copy(update={"token": TOKEN})}
    )
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from chamberd.controller.cli import main; sys.exit(main())",
            "serve",
            str(config),
            "--bind",
            f"127.0.0.2:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"serving {cfg.site.id} at http://127.0.0.2:{port}/"), first
        second = proc.stdout.readline()
        assert second.startswith(f"token: {TOKEN}")
        url = f"http://127.0.0.2:{port}/"
        assert get(url)[0] == 403
        status, _, body = get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and TOKEN not in body.decode()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert TOKEN not in out  # shown once, at the start


def test_the_central_page_shows_a_synced_site_and_its_clock_skew(
    tmp_path, make_site_cfg, central_url
):
    """On both backends: a site synced by the daemon's own upload path appears with its
    system and its last upload; on PostgreSQL (the server's clock) its clock skew (a
    virtual site clock months behind) is shown and flagged, an SQLite file has none."""
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.queries import campaign_overview
    from chamberd.network_sync.sync import upload_site

    cfg = make_site_cfg(2, 1, protocol="memory", db=tmp_path / "site.db")
    clock = FakeClock(start=START)
    site = build_site(cfg, clock=clock, site=SimulatedSite(cfg, clock), memory=True)
    try:
        site.daemon.startup()
        site.daemon.run_round(START + dt.timedelta(minutes=1))
    finally:
        site.daemon.shutdown("end of test")
        site.close()
    assert main(["central", "init", central_url]) == 0
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id)
    try:
        with Central.connect(central_url) as central:
            summary = upload_site(store, central, cfg, clock=clock)
    finally:
        store.close()
    server_clock = central_url.startswith("postgresql")  # an SQLite file has no clock
    assert summary.skew_flagged == int(server_clock)
    view = SiteView(cfg, clock, central_url=central_url, central=campaign_overview)
    with WebServer(make_app(view), "127.0.0.1", 0) as s:
        status, _, body = get(s.url + "central")
    page = body.decode()
    assert status == 200
    assert f"<td>{cfg.site.id}</td>" in page
    if server_clock:
        skew = re.search(r"<td>(-?\d+\.\d) \(beyond the limit\)</td>", page)
        assert skew and float(skew.group(1)) < -86400 * 100  # July against December
    else:
        assert re.search(r"<td>-</td></tr>", page)  # no server clock: no skew, not 0


@pytest.fixture(scope="module")
def three_gases(tmp_path_factory):
    """One round of a loop of three analysers (CO2, CH4, N2O in every observation), with
    one live snapshot of the page taken during C1's opening."""
    from .tracegas_site import three_gas_loop_site

    folder = tmp_path_factory.mktemp("web3")
    cfg = three_gas_loop_site(folder / "site.db")
    clock = FakeClock(start=START)
    site, view, live = _site_with_snapshot(cfg, clock)
    try:
        site.daemon.startup()
        site.daemon.run_round(START + dt.timedelta(minutes=1))
        yield {"cfg": cfg, "view": view, "live": live}
    finally:
        site.daemon.shutdown("end of test")
        site.close()


def test_the_live_trace_of_a_trace_gas_closure_is_one_trace_per_gas(three_gases):
    """The closure in progress on a CO2 + CH4 + N2O loop: one trace per gas, CO2 first,
    each named with its unit and holding that gas's values (CH4 near its ambient 1950
    nmol mol-1, never a CO2 value in umol mol-1 on a shared axis)."""
    page = three_gases["live"]["page"]
    assert "<b>C1</b> <span class=phase>opening</span> on analyser irga1" in page
    activity = re.search(r"<div class=activity><p><b>C1</b>.*?</div>", page, re.S)[0]
    traces = re.findall(r"<svg class=trace .*?</svg>", activity)
    assert len(traces) == 3
    expected = [("CO2", "umol mol-1", 350, 700), ("CH4", "nmol mol-1", 1800, 4000)]
    expected.append(("N2O", "nmol mol-1", 300, 400))
    for svg, (gas, unit, lo, hi) in zip(traces, expected, strict=True):
        assert f'aria-label="{gas} trace of the closure in progress"' in svg
        text = re.search(
            rf"{gas} \[{unit}\] against elapsed time; now \d+ s, ([\d.]+) {unit} ", svg
        )
        assert text, svg[-300:]
        assert lo < float(text.group(1)) < hi
        labels = [float(v) for v in re.findall(r'font-size="11">([\d.]+)</text>', svg)]
        assert len(labels) == 2 and all(lo < v < hi for v in labels)  # the axis's range
        points = re.search(r'points="([^"]+)"', svg)[1].split()
        assert len(points) >= 100  # closing, dead band and the observation, written
    assert len({re.search(r'stroke="(#\w+)" stroke-width', svg)[1] for svg in traces}) == 3


def test_the_plot_of_a_trace_gas_observation_has_a_panel_per_gas(three_gases):
    """CO2, CH4 and N2O each in their own panel in their own unit, the fits drawn; the
    observation page and its PNG are served (the PNG decodes, three panels tall)."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from chamberd.controller.plot import observation_figure

    store = SiteStore.open_readonly(three_gases["cfg"].storage.path)
    try:
        uuid = store.query("SELECT uuid FROM observations WHERE chamber = 'C1'")[0]["uuid"]
        figure = observation_figure(store, uuid)
    finally:
        store.close()
    try:
        axes = figure.axes
        assert [a.get_ylabel() for a in axes] == [
            "dry CO2 [umol mol-1]",
            "dry CH4 [nmol mol-1]",
            "dry N2O [nmol mol-1]",
        ]
        assert "umol m-2 s-1" in axes[0].get_title()
        assert all("nmol m-2 s-1" in a.get_title() for a in axes[1:])
        for axis in axes:
            labels = {line.get_label().split()[0] for line in axis.get_lines()}
            assert {"linear", "exponential"} <= labels  # both fits drawn in every panel
        assert axes[0].get_ylim()[1] < 1000 < 1500 < axes[1].get_ylim()[0]  # own scales
    finally:
        plt.close(figure)
    with WebServer(make_app(three_gases["view"]), "127.0.0.1", 0) as s:
        status, _, body = get(s.url + f"obs/{uuid}")
        assert status == 200 and f'src="/obs/{uuid}.png"' in body.decode()
        status, headers, png = get(s.url + f"obs/{uuid}.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png))
    image.load()
    width, height = image.size
    assert width == 880 and height > 2 * 495  # three panels, each about a CO2 plot's height
