"""Configuration of the laser trace-gas analysers: protocols, fields, cross-checks whose
errors name their field, and a TOML round trip."""

from __future__ import annotations

import tomllib

import pytest
from tracegas import trace_site

from chamberd.controller.config import parse_config, to_toml
from chamberd.controller.errors import ConfigError


def _problems(data) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return str(err.value)


def test_every_trace_gas_protocol_is_accepted(make_site_dict):
    protocols = ("li7810", "li7820", "lgr-gga", "lgr-ugga", "lgr-n2oco", "picarro")
    data = trace_site(make_site_dict, protocols, n_chambers=6)
    data["analysers"][0] |= {"lag_s": 6.5, "power_w": 22.0, "warmup_s": 900.0}
    data["analysers"][1] |= {"precision_n2o_nmol_mol": 0.4, "topic_root": "licor/site2"}
    data["sim"]["lag_s"] = {"irga1": 7.0}
    cfg = parse_config(data)
    first = cfg.analyser("irga1")
    assert (first.lag_s, first.power_w, first.warmup_s) == (6.5, 22.0, 900.0)
    assert first.topic_root == "licor/niobrara"
    assert cfg.analyser("irga6").species == ["N2O_dry", "CO2_dry", "CH4_dry", "H2O"]
    assert parse_config(tomllib.loads(to_toml(cfg))) == cfg


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {0: {"port": "/dev/ttyUSB0"}},
            "analysers[0].port: protocol 'li7810' reads the analyser's MQTT broker",
        ),
        ({0: {"port": "mqtt://"}}, "analysers[0].port: protocol 'li7810'"),
        ({0: {"baudrate": 9600}}, "analysers[0].baudrate: not used with protocol 'li7810'"),
        (
            {1: {"port": "mqtt://10.0.0.1:1883"}},
            "analysers[1].port: protocol 'lgr-ugga' talks over a serial port or socket://",
        ),
        ({1: {"topic_root": "x/y"}}, "analysers[1].topic_root: only used with protocols"),
        ({0: {"topic_root": "licor/#"}}, "analysers[0].topic_root: must be an MQTT topic"),
        ({1: {"species": ["CH4_dry"]}}, "analysers[1].species: only used with protocol"),
        ({2: {"species": []}}, "analysers[2].species: required for protocol 'picarro'"),
        ({2: {"species": ["H2O", "H2O"]}}, "analysers[2].species: a species is listed twice"),
        ({2: {"species": ["H2O", "NH3"]}}, "analysers[2].species: lists no CO2, CH4 or N2O"),
        ({2: {"species": ["CH4_wet"]}}, "analysers[2].species[0]: must be one of"),
        ({0: {"lag_s": -1}}, "analysers[0].lag_s: must be >= 0"),
        ({0: {"precision_ch4_nmol_mol": 0}}, "analysers[0].precision_ch4_nmol_mol: must be > 0"),
    ],
)
def test_errors_name_the_field(make_site_dict, change, says):
    data = trace_site(make_site_dict, ("li7810", "lgr-ugga", "picarro"), n_chambers=3)
    for index, values in change.items():
        data["analysers"][index] |= values
    assert says in _problems(data)


def test_two_analysers_cannot_read_one_topic_of_one_broker(make_site_dict):
    data = trace_site(make_site_dict, ("li7810", "li7820"))
    data["analysers"][1]["port"] = data["analysers"][0]["port"]
    assert "analysers[1].topic_root: 'licor/niobrara' on 'mqtt://192.168.10.1:1883' is already" in (
        _problems(data)
    )
    data["analysers"][1]["topic_root"] = "licor/second"
    parse_config(data)


def test_sim_trace_gas_fields_are_checked(make_site_dict):
    data = trace_site(make_site_dict, ("li7810",))
    data["sim"] |= {"lag_s": {"nope": 3.0}, "mqtt_broker": "tcp://x"}
    problems = _problems(data)
    assert "sim.lag_s.nope: no analyser with id 'nope'" in problems
    assert "sim.mqtt_broker: give mqtt://host:port" in problems
    data = trace_site(make_site_dict, ("li7810",), chamber_sim={"ch4_q10": 0})
    assert "chambers[0].sim.ch4_q10: must be > 0" in _problems(data)
