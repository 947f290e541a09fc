"""The web page of a running site in a real browser (headless Chromium, ``tests/browser.py``).

The simulated site speaks its real protocols on 127.0.0.1 (LI-850 XML over TCP, Modbus RTU
frames over TCP); the daemon measures it on a clock 20 times faster than real time, in a
thread, and ``chamberd serve``'s application (waitress on 127.0.0.1) reads its database.
While the first round runs, the page shows the chamber in progress and its phase beside the
fluxes already measured; the link of a chamber's last observation leads to that
observation's page, whose plot loads; a screenshot shows something. On 127.0.0.2 a token is
required: without it the browser gets 403.
"""

from __future__ import annotations

import threading
import time

import pytest
from browser import non_white_fraction, save_artifact

from chamberd.controller.app import build_site
from chamberd.controller.clock import ScaledClock
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.web import SiteView, WebServer, make_app

CYCLE = {
    "prepurge_s": 5,
    "closing_timeout_s": 10,
    "dead_band_s": 10,
    "observation_s": 60,
    "opening_timeout_s": 10,
    "postpurge_s": 5,
    "analyser_silent_s": 10,
}
SPEED = 20.0
PHASES = {"prepurge", "closing", "deadband", "observing", "opening", "postpurge"}
TOKEN = "browser-test-token-0123456789"


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s  # noqa: TID251 - real time: a bound
    while not condition():
        if time.monotonic() > deadline:  # noqa: TID251
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)  # noqa: TID251


@pytest.fixture
def running(tmp_path, make_site_cfg, fake_clock):
    """The demo site measuring: a round starts 2 s (site time) after the fixture."""
    start = fake_clock.now().replace(minute=29, second=58)  # rounds at :00 and :30
    cfg = make_site_cfg(4, 1, db=tmp_path / "site.db", cycle=CYCLE, modbus_timeout_s=0.5)
    clock = ScaledClock(speed=SPEED, start=start)
    sim = SimulatedSite(cfg, clock)
    hardware = start_hardware(cfg, clock, site=sim)
    site = build_site(hardware.daemon_config(), clock=clock)
    thread = threading.Thread(target=site.daemon.run, name="daemon", daemon=True)
    thread.start()
    view = SiteView(site.cfg, clock, refresh_s=60)
    try:
        yield site, view
    finally:
        site.daemon.stop_event.set()
        thread.join(timeout=60)
        site.daemon.shutdown("end of test")
        site.close()
        hardware.stop()


def _done(site) -> int:
    rows = site.store.query("SELECT count(*) AS n FROM observations WHERE status = 'done'")
    return rows[0]["n"]


def test_the_page_of_the_running_site_in_a_browser(running, browser):
    site, view = running
    # C1 measured, the next chamber in progress
    _wait(lambda: _done(site) >= 1, 120, "the first observation")
    _wait(lambda: site.daemon.activity.get("irga1", {}).get("chamber") == "C2", 60, "C2")
    with WebServer(make_app(view), "127.0.0.1", 0) as server:
        page = browser.open(server.url)
        try:
            assert page.evaluate("document.title") == "sim-grassland: running"
            alive = page.evaluate("document.getElementById('alive').innerText")
            assert alive.startswith("daemon running (pid")
            phase = page.evaluate("document.querySelector('.activity .phase').innerText")
            chamber = page.evaluate("document.querySelector('.activity b').innerText")
            assert phase in PHASES and chamber in ("C2", "C3")
            fluxes = page.evaluate(
                "Array.from(document.querySelectorAll('td.flux')).map(e => e.innerText)"
            )
            assert len(fluxes) == 4
            measured = [float(f) for f in fluxes if f != "-"]
            assert measured and all(0 < f < 20 for f in measured)  # C1 at least
            assert "next round:" in page.text()
            shot = page.screenshot()
            save_artifact("site-page.png", shot)
            assert non_white_fraction(shot) > 0.02  # tables and text, not a blank page
            # the link of C1's last observation: its page, with the plot
            href = page.evaluate(
                """(() => { const a = document.querySelector('tr.chamber a');
                            return a.getAttribute('href'); })()"""
            )
            assert href.startswith("/obs/")
            page.evaluate("document.querySelector('tr.chamber a').click()")
            browser.wait_event("Page.loadEventFired", session=page.session)
            assert page.evaluate("location.pathname") == href
            assert page.evaluate("document.getElementById('obs-status').innerText") == "done"
            assert "Chamber C1" in page.text()
            images = page.images()
            assert len(images) == 1 and images[0]["error"] is None
            assert images[0]["naturalWidth"] > 300
            shot = page.screenshot()
            save_artifact("observation-page.png", shot)
            assert non_white_fraction(shot) > 0.05
            assert page.errors() == []
            hosts = {u.split("/")[2] for u in page.requests() if u.startswith("http")}
            assert hosts == {f"127.0.0.1:{server.port}"}  # nothing else is loaded
        finally:
            page.close()


def test_without_the_token_a_bind_elsewhere_is_refused(running, browser):
    _, view = running
    with WebServer(make_app(view, token=TOKEN), "127.0.0.2", 0) as server:
        page = browser.open(server.url)
        try:
            assert "403 Forbidden: a token is required" in page.text()
            assert page.count("table") == 0
        finally:
            page.close()
        page = browser.open(f"{server.url}?token={TOKEN}")
        try:
            assert page.evaluate("document.title").startswith("sim-grassland")
            assert TOKEN not in page.evaluate("document.documentElement.outerHTML")
        finally:
            page.close()
