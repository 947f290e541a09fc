"""site.toml: the schema, every error at once with its path, overrides, the hash."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from chamberd.controller.config import config_hash, load_config, parse_config, to_toml
from chamberd.controller.errors import ConfigError

SIM_SITE = Path(__file__).resolve().parents[2] / "controller" / "examples" / "sim-site.toml"


def _data() -> dict:
    return tomllib.loads(SIM_SITE.read_text())


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="site.toml")
    return str(info.value)


def test_bundled_simulated_site_is_valid(sim_cfg):
    assert sim_cfg.site.id == "sim-grassland"
    assert [c.id for c in sim_cfg.chambers] == ["C1", "C2", "C3", "C4"]
    assert sim_cfg.dead_band_s(sim_cfg.chambers[0]) == 20
    assert sim_cfg.aux[5].table == "input" and sim_cfg.aux[3].table == "holding"


def test_geometry_is_versioned_by_date():
    data = _data()
    data["chambers"][0]["geometry"].append(
        {"since": dt.date(2026, 6, 1), "area_cm2": 317.8, "volume_cm3": 4500.0}
    )
    cfg = parse_config(data)
    chamber = cfg.chambers[0]
    assert chamber.geometry_on(dt.date(2026, 5, 31)).volume_cm3 == 5020.1
    assert chamber.geometry_on(dt.date(2026, 6, 1)).volume_cm3 == 4500.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["chambers"][3]["geometry"][0].update(volume_cm3=-1),
            "chambers[3].geometry[0].volume_cm3: must be >= 10 (10 cm3 to 1 m3",
        ),
        (lambda d: d["chambers"][0].update(colour="red"), "chambers[0].colour: unknown key"),
        (lambda d: d["site"].pop("id"), "site.id: required"),
        (
            lambda d: d["analysers"][0].update(protocol="li7000"),
            "analysers[0].protocol: must be one of",
        ),
        (
            lambda d: d["chambers"][1].update(analyser="nope"),
            "chambers[1].analyser: no analyser with id 'nope'",
        ),
        (
            lambda d: d["chambers"][1]["lid"].update(device="nope"),
            "chambers[1].lid.device: no modbus device with id 'nope'",
        ),
        (
            lambda d: d["chambers"][1]["lid"].update(coil=0),
            "chambers[1].lid: coil 0 of device 'relays' (id 1) is already chambers[0].lid",
        ),
        (lambda d: d["chambers"][2].update(id="C1"), "chambers[2].id: duplicate id 'C1'"),
        (lambda d: d["site"].update(time_zone="Mars/Olympus"), "site.time_zone: unknown time zone"),
        (lambda d: d["cycle"].update(dead_band_s=115), "dead_band_s: 115 s leaves fewer than 10 s"),
        (lambda d: d["aux"][0].update(chamber="C9"), "aux[0].chamber: no chamber with id 'C9'"),
        (lambda d: d["modbus"][1].pop("host"), "modbus[1].host: required for framing 'tcp'"),
        (lambda d: d["schedule"].update(interval_min=0), "schedule.interval_min: must be > 0"),
    ],
)
def test_broken_configs_name_the_field(edit, message):
    data = _data()
    edit(data)
    assert message in _error(data)


def test_every_error_is_reported_at_once():
    data = _data()
    data["chambers"][0]["geometry"][0]["area_cm2"] = 0
    data["chambers"][2]["label"] = 5
    data["storage"]["size"] = 1
    text = _error(data)
    assert "3 error(s)" in text
    assert "chambers[0].geometry[0].area_cm2: must be >= 1 (1 cm2 to 10 m2)" in text
    assert "storage.size: unknown key" in text


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text("[site]\nid = 'x'\nthis is not toml\n")
    with pytest.raises(ConfigError, match=r"site.toml: .*line 3"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_precedence_file_then_environment_then_command_line(tmp_path):
    env = {"CHAMBERD__STORAGE__PATH": f"{tmp_path}/env.db", "CHAMBERD__CYCLE__DEAD_BAND_S": "25"}
    cfg = load_config(SIM_SITE, environ=env)
    assert cfg.storage.path == f"{tmp_path}/env.db" and cfg.cycle.dead_band_s == 25
    cfg = load_config(
        SIM_SITE,
        environ=env,
        overrides=[f"storage.path={tmp_path}/cli.db", "chambers.1.enabled=false"],
    )
    assert cfg.storage.path == f"{tmp_path}/cli.db"
    assert cfg.chambers[1].enabled is False
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(SIM_SITE, environ={}, overrides=["nonsense"])


def test_hash_changes_with_the_config(sim_cfg):
    other = load_config(SIM_SITE, environ={}, overrides=["cycle.dead_band_s=25"])
    assert config_hash(sim_cfg) == config_hash(load_config(SIM_SITE, environ={}))
    assert config_hash(sim_cfg) != config_hash(other)
    assert len(config_hash(sim_cfg)) == 16


def test_example_configs_are_valid():
    # site-16 is a configuration for its logger (/var/lib/chamberd): here its paths may not
    # exist, so they are not checked; everything else is
    root = Path(__file__).resolve().parents[2]
    examples = sorted([*(root / "docs" / "examples").glob("*.toml"), SIM_SITE])
    assert len(examples) == 4
    for path in examples:
        load_config(path, environ={}, check_paths=False)
    # the paddy site (issue 13): three analysers in one loop, per-gas windows, relays
    paddy = load_config(root / "docs" / "examples" / "paddy-site.toml", check_paths=False)
    assert {tuple(c.loop) for c in paddy.chambers} == {("irga", "ch4", "n2o")}
    assert paddy.dead_band_s(paddy.chambers[0], "ch4") == 45
    assert paddy.observation_s(paddy.chambers[0], "co2") == 180
    assert paddy.analyser("ch4").power is not None and paddy.analyser("n2o").warmup_s == 600
    load_config(SIM_SITE, environ={})  # its database is beside it


def test_resolved_config_round_trips_through_to_toml(sim_cfg):
    data = sim_cfg.model_dump(mode="python", by_alias=True)
    data["aux"] = []  # an empty list is written before the tables, not into the last one
    cfg = parse_config(data)
    again = parse_config(tomllib.loads(to_toml(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg)


def test_fit_window_rule_matches_the_fitting_engine():
    from chamberd.controller.config import MIN_FIT_READINGS
    from chamberd.fitting.closure import FitSettings

    assert FitSettings().min_points == MIN_FIT_READINGS


def test_serial_ports_are_compared_through_their_links_on_this_machine(tmp_path):
    device = tmp_path / "ttyUSB7"
    device.write_text("")
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-FTDI-if00").symlink_to(device)
    data = _data()
    data["storage"]["path"] = str(tmp_path / "site.db")
    data["analysers"][0]["port"] = str(tmp_path / "by-id" / "usb-FTDI-if00")
    data["modbus"][0]["port"] = str(device)
    parse_config(data)  # as text the two ports differ
    with pytest.raises(ConfigError, match=r"modbus\[0\]\.port: .* already the port of analysers"):
        parse_config(data, check_paths=True)


def test_check_config_no_path_checks_is_for_another_machine(tmp_path, capsys):
    from chamberd.controller.cli import main

    text = SIM_SITE.read_text(encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(text.replace('path = "sim-site.db"', 'path = "/nonexistent/folder/site.db"'))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 1 error(s)" in err and "storage.path: folder /nonexistent/folder" in err
    assert main(["check-config", "--no-path-checks", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"# {path}: valid; config hash ")


def test_sync_target_password_is_never_printed(tmp_path, capsys):
    from chamberd.controller.cli import main

    path = tmp_path / "site.toml"
    path.write_text(SIM_SITE.read_text(encoding="utf-8"))
    target = "sync.target=postgresql://site:s3cret@db.example.org:70000/campaign"
    assert main(["check-config", str(path), "--set", target]) == 2
    err = capsys.readouterr().err
    assert "sync.target: the PostgreSQL URL's port" in err and "s3cret" not in err
    target = "sync.target=postgresql://site:s3cret@db.example.org/campaign"
    assert main(["check-config", str(path), "--set", target]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and 'target = "postgresql://site:***@db.example.org/campaign"' in out
