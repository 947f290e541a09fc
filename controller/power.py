"""Power budget: how long each device is powered in a day, and the energy it draws.

Laser analysers (an LI-7810 draws about 30 W, a Picarro 100 W or more) and their pumps
dominate a remote site's budget. An analyser with a ``power`` relay and the pump in
``measuring`` mode are powered only around their group's observations: switched on at the
start of the group's part of a round, ``warmup_s`` before its first prepurge, and off when
its last chamber is done. Everything else is on all day.

The estimate is arithmetic on the configuration (no measurement): per round, a group is
busy for the sum of its chambers' prepurge, the longest gas window plus the loop's largest
transit lag, the postpurge, and a typical lid travel (``LID_TRAVEL_S``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import SiteConfig

__all__ = ["LID_TRAVEL_S", "PowerDevice", "energy_per_day", "group_busy_s"]

LID_TRAVEL_S = 10.0  # closing plus opening, a typical motorised lid
_GASES = ("co2", "ch4", "n2o")


@dataclass(frozen=True)
class PowerDevice:
    device: str  # ``analyser:ID`` or ``pump``
    power_w: float
    hours_per_day: float
    switched: bool  # powered only around its group's observations

    @property
    def wh_per_day(self) -> float:
        return self.power_w * self.hours_per_day


def group_busy_s(cfg: SiteConfig, analyser_id: str) -> float:
    """Seconds one round keeps the group of ``analyser_id`` (its first analyser) busy."""
    cycle, total = cfg.cycle, 0.0
    for chamber in cfg.chambers:
        if not chamber.enabled or chamber.analyser != analyser_id:
            continue
        window = max(cfg.observation_s(chamber, g) for g in _GASES)
        lag = max(cfg.analyser(a).lag_s for a in chamber.loop)
        total += cycle.prepurge_s + window + lag + cycle.postpurge_s + LID_TRAVEL_S
    return total


def energy_per_day(cfg: SiteConfig) -> list[PowerDevice]:
    """Every device with a configured ``power_w``: its hours powered per day and energy."""
    rounds = 24 * 60 / cfg.schedule.interval_min if cfg.schedule.enabled else 0.0
    out: list[PowerDevice] = []
    groups = {c.analyser: c.loop for c in cfg.chambers if c.enabled}
    for a in cfg.analysers:
        if a.power_w is None:
            continue
        first = next((g for g, loop in groups.items() if a.id in loop), None)
        if a.power is None or first is None:
            out.append(PowerDevice(f"analyser:{a.id}", a.power_w, 24.0, False))
            continue
        busy = a.warmup_s + group_busy_s(cfg, first)
        hours = min(24.0, rounds * busy / 3600)
        out.append(PowerDevice(f"analyser:{a.id}", a.power_w, hours, True))
    pump = cfg.pump
    if pump.power_w is not None and pump.mode != "off":
        if pump.mode == "always":
            out.append(PowerDevice("pump", pump.power_w, 24.0, False))
        else:
            # one pump for the site: on while any group measures (groups run in parallel)
            busy = max((group_busy_s(cfg, g) for g in groups), default=0.0) + pump.warmup_s
            out.append(PowerDevice("pump", pump.power_w, min(24.0, rounds * busy / 3600), True))
    return out
