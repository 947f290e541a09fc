"""Fixtures for the controller tests: the bundled simulated site, clocks, leak checks."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import tomllib
from pathlib import Path

import pytest

from chamberd.controller.clock import FakeClock, ScaledClock
from chamberd.controller.config import SiteConfig, load_config, parse_config

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


def site_dict(
    n_chambers: int = 4,
    n_analysers: int = 1,
    *,
    protocol: str = "li850",
    db: Path | str = "site.db",
    cycle: dict | None = None,
    modbus_timeout_s: float | None = None,
    **sections: dict,
) -> dict:
    """The bundled simulated site, widened to ``n_chambers`` on ``n_analysers`` analysers.

    Chambers are dealt to analysers in blocks (C1..C4 on irga1, C5..C8 on irga2, ...); each
    analyser group has its own relay board (device 10, 11, ...: lids on coils 0.., closed
    switches on inputs 0.., open switches on inputs 8..) so a group can be faulted on its
    own; the pump is on a relay box of its own (device 30).
    """
    with SIM_SITE.open("rb") as f:
        data = tomllib.load(f)
    base = data["chambers"]
    per_group = -(-n_chambers // n_analysers)
    data["analysers"] = [
        {"id": f"irga{g + 1}", "protocol": protocol, "port": f"sim://irga{g + 1}"}
        for g in range(n_analysers)
    ]
    relays = [
        {"id": f"relays{g + 1}", "framing": "rtu", "port": "sim://relays", "device_id": 10 + g}
        for g in range(n_analysers)
    ]
    pumpbox = {"id": "pumpbox", "framing": "rtu", "port": "sim://pump", "device_id": 30}
    if modbus_timeout_s is not None:
        for line in [*relays, pumpbox]:
            line["timeout_s"] = modbus_timeout_s
    data["modbus"] = relays + [pumpbox] + [m for m in data["modbus"] if m["id"] != "relays"]
    data["pump"] = {"coil": {"device": "pumpbox", "coil": 0}, "mode": "measuring"}
    chambers = []
    for i in range(n_chambers):
        g, k = divmod(i, per_group)
        template = dict(base[i % len(base)])
        template.update(
            id=f"C{i + 1}",
            label=f"collar {i + 1}",
            analyser=f"irga{g + 1}",
            lid={"device": f"relays{g + 1}", "coil": k},
            closed_switch={"device": f"relays{g + 1}", "input": k},
            open_switch={"device": f"relays{g + 1}", "input": 8 + k},
        )
        chambers.append(template)
    data["chambers"] = chambers
    ids = {c["id"] for c in chambers}
    data["aux"] = [a for a in data["aux"] if a.get("chamber") in ids or "chamber" not in a]
    data["storage"] = {"path": str(db)}
    data["cycle"] = {**data["cycle"], **(cycle or {})}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


@pytest.fixture(scope="session")
def make_site_cfg():
    def make(*args, **kwargs) -> SiteConfig:
        return parse_config(site_dict(*args, **kwargs), source="test site")

    return make


@pytest.fixture(scope="session")
def make_site_dict():
    """:func:`site_dict` itself, for tests that change the data before parsing it."""
    return site_dict
