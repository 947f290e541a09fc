"""A simulated site with two analysers in each chamber loop (tests of issue 13).

Loop 1: an LI-850-like CO2/H2O analyser ``irga1`` and an LI-7810-like ``tg1`` (CH4, CO2,
H2O, dry, 6 s further down the loop); loop 2: ``irga2`` and an LI-7820-like ``tg2`` (N2O,
H2O, dry, 9 s further). All ``memory`` analysers (the laser ones report the ``species``
configured), so a day runs in virtual time. :func:`three_gas_loop_site`: one loop of all
three (CO2, CH4 and N2O in every observation).
"""

from __future__ import annotations

from pathlib import Path

from chamberd.controller.config import SiteConfig, parse_config

from .conftest import site_dict

LAGS_S = {"irga1": 0.0, "tg1": 6.0, "irga2": 0.0, "tg2": 9.0}
CHAMBER_SIM = [
    # a flooded paddy: CH4 emission with bubbles, some N2O
    {
        "ch4_nmol_m2_s": 40.0,
        "n2o_nmol_m2_s": 0.3,
        "ebullition_per_h": 10.0,
        "ebullition_nmol_mol": 60.0,
    },
    {"ch4_nmol_m2_s": 25.0, "n2o_nmol_m2_s": 0.0},
    # upland: CH4 uptake, fertilised N2O, and one with no N2O at all
    {"ch4_nmol_m2_s": -1.5, "n2o_nmol_m2_s": 1.5},
    {"ch4_nmol_m2_s": -1.0, "n2o_nmol_m2_s": 0.0},
]


def tracegas_site(
    db: Path | str, *, cycle: dict | None = None, intervals_s: dict[str, float] | None = None
) -> SiteConfig:
    """The site; ``intervals_s``: analyser id -> its output interval (1 s otherwise)."""
    data = site_dict(4, 2, protocol="memory", db=db, cycle=cycle)
    data["analysers"] += [
        {
            "id": "tg1",
            "protocol": "memory",
            "port": "sim://tg1",
            "species": ["CH4_dry", "CO2_dry", "H2O"],
            "precision_ch4_nmol_mol": 0.6,
            "precision_co2_umol_mol": 0.2,
            "lag_s": LAGS_S["tg1"],
        },
        {
            "id": "tg2",
            "protocol": "memory",
            "port": "sim://tg2",
            "species": ["N2O_dry", "H2O"],
            "precision_n2o_nmol_mol": 0.4,
            "lag_s": LAGS_S["tg2"],
        },
    ]
    for i, chamber in enumerate(data["chambers"]):
        first = chamber.pop("analyser")
        chamber["analysers"] = [first, "tg1" if first == "irga1" else "tg2"]
        chamber["sim"] = {**chamber.get("sim", {}), **CHAMBER_SIM[i]}
    for analyser in data["analysers"]:
        if intervals_s and analyser["id"] in intervals_s:
            analyser["output_interval_s"] = intervals_s[analyser["id"]]
    data["cycle"] = {**data["cycle"], "gases": {"ch4": {"dead_band_s": 30.0}}}
    return parse_config(data, source="trace-gas test site")


def three_gas_loop_site(db: Path | str) -> SiteConfig:
    """Two chambers on one loop of three analysers, as ``chamberd demo --gases
    co2,ch4,n2o``: ``irga1`` (CO2, H2O), ``tg1`` (CH4, CO2, H2O, dry, 6 s down the loop)
    and ``tg2`` (N2O, H2O, dry, 9 s): every observation measures CO2, CH4 and N2O."""
    data = site_dict(2, 1, protocol="memory", db=db)
    data["analysers"] += [
        {
            "id": "tg1",
            "protocol": "memory",
            "port": "sim://tg1",
            "species": ["CH4_dry", "CO2_dry", "H2O"],
            "precision_ch4_nmol_mol": 0.6,
            "lag_s": LAGS_S["tg1"],
        },
        {
            "id": "tg2",
            "protocol": "memory",
            "port": "sim://tg2",
            "species": ["N2O_dry", "H2O"],
            "precision_n2o_nmol_mol": 0.4,
            "lag_s": LAGS_S["tg2"],
        },
    ]
    for i, chamber in enumerate(data["chambers"]):
        chamber["analysers"] = [chamber.pop("analyser"), "tg1", "tg2"]
        chamber["sim"] = {**chamber.get("sim", {}), **CHAMBER_SIM[2 * i]}  # paddy, upland
    return parse_config(data, source="three-gas loop test site")
