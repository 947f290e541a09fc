"""Bad input never crashes ``chamberd check-config``: seeded fuzzing of the example configs.

Mutants of every shipped example (``tests/fuzzing.py``: byte flips, non-UTF-8, NUL, CR-only,
truncation, long fields, bad numbers and dates, lines deleted or swapped) and of
``--set`` overrides each go through the real command in-process. Each ends with exit
status 0 or 2, never a traceback; a refusal names the file; a "valid" printout loads back
with ``tomllib`` to the same configuration hash. Separately, any Unicode text in labels and
names round-trips through ``to_toml``.
"""

from __future__ import annotations

import collections
import random
import tomllib
from pathlib import Path

import pytest
from fuzzing import mutants

from chamberd.controller.cli import main
from chamberd.controller.config import config_hash, load_config, parse_config, to_toml

ROOT = Path(__file__).resolve().parents[2]
# (file, its own storage path exists here?) site-16 is written for its logger's folders
EXAMPLES = [
    (ROOT / "controller" / "examples" / "sim-site.toml", True),
    (ROOT / "docs" / "examples" / "sim-site.toml", True),
    (ROOT / "docs" / "examples" / "site-16.toml", False),
]
MUTANTS_PER_FILE = 150


@pytest.fixture
def clean_environment(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("CHAMBERD__"):
            monkeypatch.delenv(key)


def _check_config(args: list[str], capsys) -> tuple[int | str, str, str]:
    try:
        status: int | str = main(["check-config", *args])
    except BaseException as exc:  # what a user would see as a traceback
        status = f"traceback: {type(exc).__name__}: {exc}"[:300]
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _judge(status, out: str, err: str, path: Path) -> str:
    """The outcome ('valid' or 'refused'), or what is wrong with it."""
    if isinstance(status, str) or "Traceback" in out + err:
        return f"{status}\n{err[-500:]}"
    if status == 2:
        return "refused" if str(path) in err else f"refusal does not name the file: {err[:300]}"
    if status != 0:
        return f"exit status {status}: {err[:300]}"
    first = out.partition("\n")[0]
    if not first.startswith(f"# {path}: valid; config hash "):
        return f"unexpected first line {first[:200]!r}"
    digest = first.rsplit(" ", 1)[1]
    try:
        again = parse_config(tomllib.loads(out), source="printout")
    except Exception as exc:
        return f"printout does not load back: {exc}"[:500]
    if config_hash(again) != digest:
        return "printout loads back to another configuration"
    return "valid"


def test_mutants_of_the_examples_never_crash_check_config(tmp_path, capsys, clean_environment):
    outcomes: collections.Counter[str] = collections.Counter()
    problems = []
    for k, (example, paths_here) in enumerate(EXAMPLES):
        # the two sim-site copies are identical: a seed per file gives each its own mutants
        for name, data in mutants(example.read_bytes(), "text", seed=900 + k, count=150):
            path = tmp_path / f"{example.stem}-{k}.toml"  # its relative database: in tmp_path
            path.write_bytes(data)
            args = [str(path)] if paths_here else ["--no-path-checks", str(path)]
            outcome = _judge(*_check_config(args, capsys), path)
            outcomes[outcome if outcome in ("valid", "refused") else "wrong"] += 1
            if outcome not in ("valid", "refused"):
                problems.append(f"{example.name} mutant {name}: {outcome}")
    print(f"check-config on {sum(outcomes.values())} mutants: {dict(outcomes)}")
    assert not problems, "\n".join(problems[:10])
    assert outcomes["valid"] > 0 and outcomes["refused"] > 0  # the mutants test both ways


_KEYS = [
    "site.id",
    "site.latitude",
    "site.time_zone",
    "storage.path",
    "storage.keep_samples_days",
    "schedule.interval_min",
    "schedule.offset_min",
    "cycle.observation_s",
    "cycle.dead_band_s",
    "cycle.analyser_silent_s",
    "analysers.0.port",
    "analysers.0.output_interval_s",
    "modbus.0.device_id",
    "modbus.1.host",
    "chambers.0.lid.coil",
    "chambers.1.lid.device_id",
    "chambers.2.geometry.0.area_cm2",
    "chambers.3.enabled",
    "chambers.9.label",
    "aux.0.address",
    "pump.coil.coil",
    "sync.target",
    "alarms.command",
    "sim.seed",
    "nonsense.key",
    "site",
    "chambers",
    "chambers.x.id",
    "site..id",
    ".",
]
_VALUES = [
    "inf",
    "-inf",
    "nan",
    "1e999",
    "1" * 5000,
    "-0",
    "",
    "true",
    "0",
    "-1",
    "65536",
    '"a string"',
    "[1, 2",
    "{ a = 1 }",
    "[" * 3000 + "]" * 3000,
    '"\\ud800"',
    "caf\udce9",
    "\U0001f331",
    "1\nsite.id = 'x'",
    "2026-02-30",
    "0001-01-01",
    "x" * 10000,
    "socket://host",
    "postgresql://u:secret@h:99999/db",
    "sqlite:///no/such/folder/c.db",
    '"unbalanced',
]


def test_bad_overrides_never_crash_check_config(tmp_path, capsys, clean_environment):
    example = EXAMPLES[0][0]
    path = tmp_path / "site.toml"
    path.write_bytes(example.read_bytes())
    rng = random.Random(20261201)
    outcomes: collections.Counter[str] = collections.Counter()
    problems = []
    for _ in range(200):
        key, value = rng.choice(_KEYS), rng.choice(_VALUES)
        outcome = _judge(*_check_config([str(path), "--set", f"{key}={value}"], capsys), path)
        outcomes[outcome if outcome in ("valid", "refused") else "wrong"] += 1
        if outcome not in ("valid", "refused"):
            problems.append(f"--set {key}={value[:40]!r}: {outcome}")
        assert "secret" not in capsys.readouterr().err
    print(f"check-config with 200 bad --set overrides: {dict(outcomes)}")
    assert not problems, "\n".join(problems[:10])


def test_environment_overrides_with_bad_values_are_messages(tmp_path, capsys, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_bytes(EXAMPLES[0][0].read_bytes())
    for value in ("1" * 5000, "nan", "[" * 3000, "caf\udce9"):
        monkeypatch.setenv("CHAMBERD__CYCLE__OBSERVATION_S", value)
        status, _, err = _check_config([str(path)], capsys)
        assert status == 2 and "Traceback" not in err, err
        assert str(path) in err
        assert "CHAMBERD__CYCLE__OBSERVATION_S" in err or "cycle.observation_s" in err


# --- the writer: any text round-trips --------------------------------------------------------

_POOLS = [
    [chr(c) for c in range(0x20, 0x7F)],  # printable ASCII
    [chr(c) for c in [*range(0x20), 0x7F]],  # control characters, DEL
    ['"', "\\", "'", '"""', "'''", "\\u0041", "\\n", "#", "=", "[", "]", "{", "}"],
    [chr(c) for c in range(0x80, 0x800)],  # Latin, Greek, Cyrillic, ...
    [chr(c) for c in range(0x4E00, 0x4F00)],  # CJK
    [chr(c) for c in range(0xE000, 0xFFFE)],  # private use to the end of the BMP
    [chr(c) for c in range(0x1F300, 0x1F650)],  # emoji
    [chr(c) for c in (0x10000, 0x1D11E, 0x10FFFF, 0xFEFF, 0x200B, 0x2028, 0x2029)],
]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(rng.choice(_POOLS)) for _ in range(rng.randrange(0, 40)))[:200]


def test_any_text_in_labels_and_names_round_trips_through_to_toml(sim_cfg):
    rng = random.Random(4242)
    for _ in range(300):
        texts = [_random_text(rng) for _ in range(6)]
        data = sim_cfg.model_dump(mode="python", by_alias=True)
        data["site"]["name"] = texts[0]
        for i, chamber in enumerate(data["chambers"]):
            chamber["label"] = texts[1 + i]
        data["sync"]["owner"] = texts[5]
        cfg = parse_config(data)
        text = to_toml(cfg)
        assert text.isascii()  # escaped: safe on any terminal
        again = parse_config(tomllib.loads(text))
        assert again == cfg, texts
        assert config_hash(again) == config_hash(cfg)


def test_an_emoji_label_prints_valid_toml(tmp_path, capsys, clean_environment):
    text = EXAMPLES[0][0].read_text(encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(text.replace('"grazed, plot 1"', '"grazed \U0001f404, plot 1"'), "utf-8")
    status, out, err = _check_config([str(path)], capsys)
    assert _judge(status, out, err, path) == "valid", err
    assert '"grazed \\U0001f404, plot 1"' in out
    assert load_config(path, environ={}).chambers[0].label == "grazed \U0001f404, plot 1"


def test_non_utf8_file_names_the_file_and_line(tmp_path, capsys, clean_environment):
    path = tmp_path / "site.toml"
    text = EXAMPLES[0][0].read_bytes()
    path.write_bytes(text.replace(b'name = "Simulated', b'name = "Simul\xe9ted'))
    status, _, err = _check_config([str(path)], capsys)
    assert status == 2
    assert f"{path}: line 7, column 14: not UTF-8 text (bytes e9)" in err
