"""``chamberd sim``: endpoints as JSON on the first line, real servers, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from chamberd.controller.clock import SystemClock
from chamberd.controller.config import ModbusConfig
from chamberd.controller.hardware.li8x0 import LI8x0Analyser
from chamberd.controller.hardware.modbus import ModbusLink
from chamberd.controller.hardware.serial_link import SerialLink


def test_sim_prints_endpoints_and_serves_until_sigterm(sim_site_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from chamberd.controller.cli import main; sys.exit(main())",
            "sim",
            "--config",
            str(sim_site_path),
            "--json",
            "--speed",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        endpoints = json.loads(process.stdout.readline())
        (analyser,) = endpoints["analysers"]
        assert analyser["protocol"] == "li850" and analyser["url"].startswith("socket://127.0.0.1:")
        assert {(m["framing"], m["device_id"]) for m in endpoints["modbus"]} == {
            ("rtu", 1),
            ("tcp", 2),
            ("tcp", 3),  # the calibration gas manifold
        }
        assert all(m["host"] == "127.0.0.1" and m["port"] > 0 for m in endpoints["modbus"])

        link = SerialLink(analyser["url"], baudrate=9600, name="LI-850")
        driver = LI8x0Analyser(link, model="li850", clock=SystemClock())
        try:
            assert driver.read(5.0).co2_umol_mol > 300
        finally:
            driver.close()
        rtu = next(m for m in endpoints["modbus"] if m["framing"] == "rtu")
        modbus = ModbusLink(
            ModbusConfig(id="x", framing="rtu-over-tcp", host=rtu["host"], tcp_port=rtu["port"])
        )
        try:
            assert modbus.read_bits("input", 8, 4, device_id=1) == [True] * 4  # lids open
        finally:
            modbus.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        process.stdout.close()
        process.stderr.close()
    assert code == 0


def test_sim_daemon_config_keeps_the_database_beside_it(tmp_path):
    """With the bundled site, the written configuration's database is beside it (never in
    the installed package), and it loads as a valid configuration for chamberd run."""
    from chamberd.controller.config import load_config

    written = tmp_path / "sim.toml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from chamberd.controller.cli import main; sys.exit(main())",
            "sim",
            "--json",
            "--daemon-config",
            str(written),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        json.loads(process.stdout.readline())
        cfg = load_config(written)
        assert cfg.storage.path == str(tmp_path / "sim-site.db")
        assert cfg.analysers[0].port.startswith("socket://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        process.stdout.close()
        process.stderr.close()
    assert code == 0
