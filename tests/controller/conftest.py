"""Fixtures for the controller tests: the bundled simulated site, clocks, leak checks."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.config import SiteConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
SIM_SITE = ROOT / "controller" / "examples" / "sim-site.toml"
START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)  # noon at the site (UTC+8)


@pytest.fixture
def sim_site_path() -> Path:
    return SIM_SITE


@pytest.fixture
def sim_cfg() -> SiteConfig:
    return load_config(SIM_SITE)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def fast_clock() -> ScaledClock:
    """Site time 20 times faster than real time (a 3 s lid move takes 0.15 s)."""
    return ScaledClock(speed=20.0, start=START)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks():
    """Fail when a test leaves a thread, a socket, a pty or a file open."""
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    deadline = time.monotonic() + 5.0  # noqa: TID251 - real time: waiting for threads to end
    while time.monotonic() < deadline:  # noqa: TID251
        extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        if not extra:
            break
        time.sleep(0.05)  # noqa: TID251
    assert not extra, f"threads left running: {extra}"
    left = {fd for fd in _fds() - fds if os.path.exists(f"/proc/self/fd/{fd}")}
    described = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in left if _readable(fd)}
    assert not described, f"file descriptors left open: {described}"


def _readable(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True
