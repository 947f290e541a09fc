"""Helpers of the calibration tests: the bundled simulated site with its gas manifold, run
over the real wire protocols on a scaled clock, and a registry of its cylinders."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

from chamberd.calibration.cylinders import Cylinders
from chamberd.controller.clock import ScaledClock
from chamberd.controller.config import SiteConfig, parse_config
from chamberd.controller.sim.hardware import start_hardware
from chamberd.controller.sim.site import SimulatedSite
from chamberd.controller.store import SiteStore

ROOT = Path(__file__).resolve().parents[1]
SIM_SITE = ROOT / "controller" / "examples" / "sim-site.toml"
START = dt.datetime(2026, 7, 1, 4, 0, tzinfo=dt.UTC)
SPEED = 40.0
FAST_CYCLE = {
    "prepurge_s": 5,
    "closing_timeout_s": 20,
    "dead_band_s": 15,
    "observation_s": 90,
    "opening_timeout_s": 20,
    "postpurge_s": 5,
    "analyser_silent_s": 10,
}
#: The cylinders behind the example site's manifold slots (``[calibration] manifold``).
CYLINDERS = {
    "ZERO-N2-01": 0.0,
    "SPAN-1000-01": 1000.0,
    "SPAN-450-01": 450.0,
}


def site_config(db: Path, *, sim: dict | None = None, **sections: dict) -> SiteConfig:
    with SIM_SITE.open("rb") as f:
        data = tomllib.load(f)
    data["storage"] = {"path": str(db)}
    data["cycle"] = {**data["cycle"], **FAST_CYCLE}
    data["sim"] = {**data["sim"], **(sim or {})}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, source="calibration test site")


def register_cylinders(db: Path, site_id: str, *, expires_on: str = "2030-01-01") -> None:
    store = SiteStore(db, site_id=site_id)
    try:
        cylinders = Cylinders(store)
        for cylinder_id, value in CYLINDERS.items():
            cylinders.add(
                cylinder_id=cylinder_id,
                gas="co2",
                value=value,
                uncertainty=0.2 if value else None,
                scale="WMO X2019",
                certificate_date="2026-01-15",
                expires_on=expires_on,
                entered_by="test",
                at=START,
            )
    finally:
        store.close()


class SimSite:
    """A running simulated site (real wire protocols) and its daemon-side config."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        sim: dict | None = None,
        speed: float = SPEED,
        start: dt.datetime = START,
        protocol: str | None = None,
    ) -> None:
        self.db = tmp_path / "site.db"
        self.base = site_config(self.db, sim=sim)
        if protocol is not None:
            data = self.base.model_dump(mode="python")
            data["analysers"][0]["protocol"] = protocol
            self.base = parse_config(data, source="calibration test site")
        self.clock = ScaledClock(speed=speed, start=start)
        self.sim = SimulatedSite(self.base, self.clock)
        self.hardware = start_hardware(self.base, self.clock, site=self.sim)
        self.cfg = self.hardware.daemon_config()
        register_cylinders(self.db, self.cfg.site.id)

    def stop(self) -> None:
        self.hardware.stop()
