"""The README's commands work as written from a checkout (the newcomer's path).

Every ``.venv/bin/chamberd`` line of the README names a real command, and every file it
reads exists in the repository or is written by an earlier line. The lines that finish on
their own and need no server are run, in order, in a scratch folder that sees the
repository's ``controller/`` and ``docs/``: each must exit as the README says (0, or 3 for
``fit`` of a file with a truncated closure).
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

from chamberd.controller.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ".venv/bin/chamberd"
# written by a README line (or by the daemon those lines start)
OUTPUT_OPTIONS = {"-o", "--output", "--daemon-config", "--password-file"}
# lines that keep running (the daemon, the web page) or need the daemon's database or a PostgreSQL
# server: parsed and checked, not run here (``sim`` runs in the background meanwhile);
# ``demo --campaign`` takes a minute or two: tests/controller/test_campaign.py runs it;
# ``demo --calibration`` about a minute: tests/calibration/test_demo_calibration.py runs it;
# ``demo --gases`` needs the MQTT broker on 127.0.0.1:1883: tests/controller/test_cli_demo.py
NOT_RUN = re.compile(
    r"chamberd (run|status|sync|serve) |postgresql://|demo --(campaign|calibration|gases)"
)
EXPECTED_STATUS = {"fit": 3}


def _readme_lines() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip().rstrip("&").strip()
            if line.startswith(PREFIX):
                lines.append(shlex.split(line))
    return lines


def test_every_readme_line_names_a_command_and_existing_files():
    lines = _readme_lines()
    assert len(lines) >= 8
    written: set[str] = {"sim-site.db", "campaign.db"}
    for words in lines:
        name = words[1]
        assert name in cli.commands, words
        command = cli.commands[name]
        if hasattr(command, "commands"):
            assert words[2] in command.commands, words
        for option, value in itertools.pairwise(words):
            if option in OUTPUT_OPTIONS:
                written.add(value)
        for word in words[2:]:
            looks_like_file = "/" in word or re.search(r"\.(toml|81x|json|82z|csv|db)$", word)
            if not looks_like_file or "://" in word or word in written:
                continue
            assert (ROOT / word).exists(), f"README: {' '.join(words)}: {word} does not exist"


def test_readme_lines_run_as_written(tmp_path):
    for folder in ("controller", "docs"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    ran = 0
    servers: list[subprocess.Popen] = []
    try:
        for words in _readme_lines():
            ran += _run(words, tmp_path, servers)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
            server.stdout.close()
    assert ran >= 5
    assert (tmp_path / "salt.csv").read_text().count("\n") == 8  # header and 7 observations


def _run(words: list[str], cwd: Path, servers: list[subprocess.Popen]) -> int:
    line = " ".join(words)
    command = [sys.executable, "-m", "chamberd.controller.cli", *words[1:]]
    if NOT_RUN.search(line):
        return 0
    if words[1] == "sim":  # serves until stopped: its first line says it is up
        server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
        servers.append(server)
        assert server.stdout.readline().startswith("simulated site"), line
        return 1
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXPECTED_STATUS.get(words[1], 0), (line, done.stderr)
    assert "Traceback" not in done.stderr, line
    return 1
