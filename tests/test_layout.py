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
