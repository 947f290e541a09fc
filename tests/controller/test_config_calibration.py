"""The ``[calibration]`` section and the ``[sim]`` drift and cylinder fields: valid
examples, and every error naming its field."""

from __future__ import annotations

import re
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
    data["calibration"]["limits"] = {"max_span_error_pct": 1.5, "stability_timeout_s": 1200}
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


def test_every_limit_of_every_procedure_is_accepted_and_applied():
    """A limit added to a procedure is a valid ``[calibration] limits`` name at once."""
    from chamberd.calibration.procedures import PROCEDURES, limit_names, limits_for

    data = _data()
    overrides = {name: 7.5 for name in limit_names()}
    data["calibration"]["limits"] = overrides
    cfg = parse_config(data)
    assert cfg.calibration.limits == overrides
    for procedure in PROCEDURES.values():
        assert limits_for(procedure, cfg.calibration.limits) == dict.fromkeys(
            procedure.limits, 7.5
        ), procedure.id
    assert set(limit_names()) == {n for p in PROCEDURES.values() for n in p.limits}


def _mutations(name: str) -> list[str]:
    return [name[:-1], name + "_", name.replace("_", "-", 1), name.upper(), "x" + name]


def test_a_misspelt_limit_is_refused_naming_the_field_and_the_nearest_name():
    from chamberd.calibration.procedures import limit_names

    names = limit_names()
    for name in names:
        for wrong in _mutations(name):
            if wrong in names or wrong == name:
                continue
            data = _data()
            data["calibration"]["limits"] = {wrong: 1.0}
            text = _error(data)
            assert f"calibration.limits.{wrong}: unknown limit" in text, text
            assert name in text.split(f"calibration.limits.{wrong}:", 1)[1], (wrong, text)


def test_a_limit_no_procedure_has_is_refused_with_the_valid_names():
    data = _data()
    # the name the hardware guide once showed; with another bad one, both are reported
    data["calibration"]["limits"] = {"span_rel": 0.01, "zero_umol": 2.0}
    text = _error(data)
    assert "2 error(s)" in text
    line = next(x for x in text.splitlines() if "calibration.limits.span_rel:" in x)
    assert "unknown limit (one of: " in line and "max_span_error_pct" in line
    assert "calibration.limits.zero_umol: unknown limit" in text


def test_the_runner_refuses_an_unknown_limit_too():
    """``limits_for`` is the runner's and the automatic check's door to the limits: a name
    no procedure has is an error there as well, whoever built the overrides."""
    from chamberd.calibration.procedures import get_procedure, limits_for

    with pytest.raises(ConfigError, match=r"calibration\.limits\.span_rel: unknown limit"):
        limits_for(get_procedure("zero-span-check"), {"span_rel": 0.01})


def test_the_docs_limits_examples_name_real_limits():
    """Every ``limits = { ... }`` in the docs and the example configs parses."""
    from chamberd.calibration.procedures import unknown_limit

    root = Path(__file__).resolve().parents[2]
    found = 0
    paths = [*(root / "docs").rglob("*.md"), *(root / "docs").rglob("*.toml"), root / "README.md"]
    paths += list((root / "controller" / "examples").glob("*.toml"))
    for path in paths:
        for example in re.findall(r"\blimits\s*=\s*\{[^}\n]*\}", path.read_text("utf-8")):
            for name in tomllib.loads(example)["limits"]:
                assert unknown_limit(name) is None, (path.name, name)
                found += 1
    assert found >= 2  # hardware.md and trainee.md each show one
