"""The ``[calibration]`` section and the ``[sim]`` drift and cylinder fields: valid
examples, and every error naming its field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chamberd.controller.config import load_config, parse_config, to_toml
from chamberd.controller.errors import ConfigError

SIM_SITE = Path(__file__).resolve().parents[2] / "controller" / "examples" / "sim-site.toml"


def _data() -> dict:
    return tomllib.loads(SIM_SITE.read_text())


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="site.toml")
    return str(info.value)


def test_the_demo_site_has_a_three_cylinder_manifold():
    cfg = load_config(SIM_SITE)
    assert [m.slot for m in cfg.calibration.manifold] == ["zero", "span1", "span2"]
    assert cfg.calibration.slot("span1").cylinder == "SPAN-1000-01"
    assert cfg.sim.cylinders == {"zero": 0.0, "span1": 1000.0, "span2": 450.0}
    assert cfg.calibration.automatic is None and cfg.calibration.limits == {}
    assert cfg.sim.span_gain == 1.0 and cfg.sim.span_drift_per_day == 0.0


def test_automatic_checks_and_limits_round_trip_through_to_toml():
    data = _data()
    data["calibration"]["automatic"] = {
        "every_days": 7,
        "analyser": "irga",
        "zero_slot": "zero",
        "span_slots": ["span1", "span2"],
        "at": "03:30",
    }
    data["calibration"]["limits"] = {"span_rel": 0.01, "zero.umol_mol": 2.0}
    data["sim"]["drift"] = {"irga": {"span_drift_per_day": 0.007}}
    cfg = parse_config(data)
    assert cfg.calibration.automatic.purge_s == 120.0
    assert parse_config(tomllib.loads(to_toml(cfg))) == cfg


def _edit(path: str, value):
    def apply(data: dict) -> None:
        target = data
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _edit("calibration.manifold.0.coil", {"device": "nope", "coil": 4}),
            "calibration.manifold[0].coil.device: no modbus device with id 'nope'",
        ),
        (
            _edit("calibration.manifold.1.coil", {"device": "relays", "coil": 0}),
            "calibration.manifold[1].coil: coil 0 of device 'relays' (id 1) is already "
            "chambers[0].lid",
        ),
        (
            _edit("calibration.manifold.2.slot", "zero"),
            "calibration.manifold[2].slot: duplicate slot 'zero'",
        ),
        (
            _edit("calibration.manifold.0.slot", "zero gas"),
            "calibration.manifold[0].slot: may contain only letters",
        ),
        (
            _edit("calibration.manifold.0.analysers", ["irga9"]),
            "calibration.manifold[0].analysers[0]: no analyser with id 'irga9'",
        ),
        (
            _edit(
                "calibration.automatic", {"every_days": 7, "analyser": "irga9", "zero_slot": "zero"}
            ),
            "calibration.automatic.analyser: no analyser with id 'irga9'",
        ),
        (
            _edit(
                "calibration.automatic", {"every_days": 7, "analyser": "irga", "span_slots": ["n2"]}
            ),
            "calibration.automatic.span_slots[0]: no calibration.manifold slot 'n2'",
        ),
        (
            _edit("calibration.automatic", {"every_days": 7, "analyser": "irga"}),
            "calibration.automatic: give zero_slot or span_slots",
        ),
        (
            _edit(
                "calibration.automatic",
                {"every_days": 0, "analyser": "irga", "zero_slot": "zero", "at": "25:00"},
            ),
            "calibration.automatic.every_days: must be > 0",
        ),
        (
            _edit(
                "calibration.automatic",
                {"every_days": 1, "analyser": "irga", "zero_slot": "zero", "at": "25:00"},
            ),
            "calibration.automatic.at: must be a local time HH:MM",
        ),
        (_edit("calibration.colour", "red"), "calibration.colour: unknown key"),
        (
            _edit("sim.cylinders", {"argon": 0.0}),
            "sim.cylinders.argon: no calibration.manifold slot",
        ),
        (_edit("sim.cylinders", {"zero": -1.0}), "sim.cylinders.zero: must be >= 0"),
        (_edit("sim.span_gain", 0), "sim.span_gain: must be > 0"),
        (_edit("sim.span_drift_per_day", True), "sim.span_drift_per_day: must be a number"),
    ],
)
def test_calibration_errors_name_the_field(edit, message):
    data = _data()
    edit(data)
    assert message in _error(data)


def test_every_calibration_error_is_reported_at_once():
    data = _data()
    data["calibration"]["manifold"][0]["coil"]["device"] = "nope"
    data["calibration"]["manifold"][2]["slot"] = "span1"
    data["sim"]["cylinders"]["argon"] = 1.0
    text = _error(data)
    assert "4 error(s)" in text  # the renamed slot leaves sim.cylinders.span2 without one
    for line in (
        "calibration.manifold[0].coil.device: no modbus device",
        "calibration.manifold[2].slot: duplicate slot 'span1'",
        "sim.cylinders.span2: no calibration.manifold slot 'span2'",
        "sim.cylinders.argon: no calibration.manifold slot 'argon'",
    ):
        assert line in text
