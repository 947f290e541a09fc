"""Project layout rules: the chamberd namespace, one-way imports, documented commands."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from chamberd.controller.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name",
    [
        "chamberd.controller",
        "chamberd.fitting",
        "chamberd.network_sync",
        "chamberd.calibration",
        "chamberd.network_sync.formats",
    ],
)
def test_packages_import_under_the_chamberd_namespace(name):
    module = importlib.import_module(name)
    folder = name.split(".", 1)[1].replace(".", "/")
    assert Path(module.__file__).resolve().parent == (ROOT / folder).resolve()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_fitting_imports_nothing_of_ours_and_does_no_io():
    for path in (ROOT / "fitting").glob("*.py"):
        imported = _imports(path)
        assert not {n for n in imported if n.startswith("chamberd")}, path
        assert not imported & {"logging", "sqlite3", "serial", "pymodbus", "os", "pathlib"}, path


def test_no_direct_time_calls_outside_the_clock():
    pattern = re.compile(r"\b(time\.time|time\.sleep|time\.monotonic|datetime\.now|utcnow)\(")
    for folder in ("controller", "fitting", "network_sync", "calibration"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "clock.py":
                continue
            assert not pattern.search(path.read_text(encoding="utf-8")), path


def test_every_command_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")

    def walk(group, prefix):
        for name, command in group.commands.items():
            full = f"{prefix} {name}".strip()
            yield full
            if hasattr(command, "commands"):
                yield from walk(command, full)

    for name in walk(cli, ""):
        assert f"## chamberd {name}" in text, name


def test_every_command_has_a_summary_and_an_example():
    for name, command in cli.commands.items():
        assert command.help and "Example:" in command.help, name


def test_every_package_folder_is_installed():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    roots = config["tool"]["setuptools"]["package-dir"]
    for package, folder in roots.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.parent.relative_to(ROOT / folder)
            name = ".".join([package, *relative.parts]) if relative.parts else package
            assert name in listed, f"{path} is not in [tool.setuptools] packages"


def test_pymodbus_and_pyserial_each_live_in_one_module():
    where: dict[str, set[str]] = {"pymodbus": set(), "serial": set()}
    for folder in ("controller", "fitting", "network_sync", "calibration"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in where:
                    where[top].add(str(path.relative_to(ROOT)))
    assert where["pymodbus"] == {"controller/hardware/modbus.py"}
    assert where["serial"] == {"controller/hardware/serial_link.py"}


def test_paho_lives_in_one_module():
    where = set()
    for folder in ("controller", "fitting", "network_sync", "calibration"):
        for path in (ROOT / folder).rglob("*.py"):
            if any(name.split(".")[0] == "paho" for name in _imports(path)):
                where.add(path.relative_to(ROOT).as_posix())
    assert where == {"controller/hardware/mqtt_link.py"}


def test_each_package_owns_its_commands():
    """The root only assembles: every command lives in its package's command module."""
    owners = {
        "chamberd.controller.commands": {
            "sim",
            "check-config",
            "run",
            "status",
            "serve",
            "plot",
            "demo",
        },
        "chamberd.network_sync.commands": {
            "fit",
            "central",
            "import",
            "query",
            "export",
            "refit",
            "sync",
            "compare",
        },
        "chamberd.calibration.commands": {"calibrate"},
    }
    for name, command in cli.commands.items():
        module = command.callback.__module__
        assert module != "chamberd.controller.cli", name
        assert name in owners.get(module, set()), (name, module)
    root = (ROOT / "controller" / "cli.py").read_text(encoding="utf-8")
    assert "@click.command" not in root and ".command(" not in root


def test_no_test_stops_or_restarts_the_machines_servers():
    """A test that needs a server to die starts its own (``private_postgres``)."""
    pattern = re.compile(r"pg_ctlcluster[^\n]*(restart|stop)|systemctl\s+(restart|stop)")
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == "test_layout.py":
            continue
        assert not pattern.search(path.read_text(encoding="utf-8")), path
