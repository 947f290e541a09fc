"""Fuzz the instrument-file readers and ``chamberd fit`` with seeded mutants of real files.

Every reader format with files in shared/data is mutated with ``tests/fuzzing.py`` (bytes,
lines, bad numbers and dates, JSON nesting and huge integers, zip methods, encryption flags,
corrupt deflate streams): every LI-8100A ``.81x``, both LI-8200 ``.json``, the LI-8250
``.82z`` (read with its dense summary beside it) and the dense summary itself. Each mutant is
written to a file of the original's name, then

* read with :func:`~chamberd.network_sync.formats.read_file` (the summary: with
  :func:`read_dense_summary`): nothing may escape but a ``DataFileError``, and every refusal,
  of the file or of an observation, names the file;
* fitted in-process with ``chamberd fit`` (the CLI's ``main``): exit status 0 or 3, no
  traceback on stderr, every ``refused:``, ``warning:`` and ``chamberd: error:`` line names
  the file.

Each mutant runs in a worker thread with a generous bound, so a hang fails the test with the
mutant's name (``<seed>.<n>:<operators>``; replay it with ``mutants(data, kind, seed=<seed>,
count=<n> + 1)[<n>]``). The mutants that crashed the readers before they had their guards
are kept as a regression corpus below.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import random
import re
import shutil
import threading
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzzing import _zip_bomb, mutants

from chamberd.controller.cli import main
from chamberd.controller.errors import DataFileError
from chamberd.network_sync.formats import read_dense_summary, read_file

Z82 = "li8250/82m-0147-20220125000045.82z"
SUMMARY = "li8250/82m-0147-20220125000000_dense_summary.csv"
LARGE_81X = ("NoCRVFit.81x", "worksWell.81x")  # the costly ones to fit: fewer mutants

#: A hang detector, not a performance limit: far above what any mutant needs (< 2 s).
BOUND_S = 120.0


LI8100A = (
    "2312_issue005_small.81x",
    "NoCRVFit.81x",
    "SALT_20181005_LT.81x",
    "goflux_LI8100.81x",
    "goflux_LI8150.81x",
    "licor_north1.81x",
    "testVaryingColNumber.81x",
    "worksWell.81x",
)
#: (file relative to shared/data, mutant kind, mutants of it): 266 in all
SOURCES = [
    *((f"li8100a/{name}", "text", 6 if name in LARGE_81X else 14) for name in LI8100A),
    ("smartchamber/fluxfinder_LI8200-01S.json", "json", 40),
    ("smartchamber/goflux_LI8200.json", "json", 40),
    (Z82, "zip", 60),
    (SUMMARY, "text", 30),
]


def _place(data: Path, rel: str, content: bytes, folder: Path) -> Path:
    """Write the mutant under its original name, with the LI-8250 companion file beside it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    path = folder / Path(rel).name
    path.write_bytes(content)
    if rel == Z82:
        shutil.copy(data / SUMMARY, folder)
    elif rel == SUMMARY:
        shutil.copy(data / Z82, folder)
    return path


def _named(message: str, path: Path) -> bool:
    return str(path) in message


def _check_read(rel: str, path: Path) -> str:
    """Read the mutant; the outcome ("read" or "refused"), or AssertionError."""
    try:
        if rel == SUMMARY:
            read_dense_summary(path)
            return "read"
        result = read_file(path)
    except DataFileError as exc:
        assert _named(str(exc), path), f"refusal does not name the file: {exc}"
        return "refused"
    for exc in result.rejected:
        assert isinstance(exc, DataFileError), f"rejection of type {type(exc).__name__}"
        assert _named(str(exc), path), f"rejection does not name the file: {exc}"
    return "read" if result.observations else "refused"


def _check_fit(rel: str, path: Path, out: Path) -> None:
    target = path.parent / Path(Z82).name if rel == SUMMARY else path
    err = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("always")
        status = main(["fit", str(target), "-o", str(out)])
    text = err.getvalue()
    assert "Traceback" not in text, text[-2000:]
    # a numpy floating-point warning would reach the user's terminal as noise
    assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught]
    assert status in (0, 3), f"exit status {status}: {text[-500:]}"
    for line in text.splitlines():
        if line.startswith(("refused:", "warning:", "chamberd: error:")):
            assert str(path.parent) in line, f"message does not name the file: {line}"


def _bounded(name: str, work: Callable[[], str]) -> str:
    """Run ``work`` in a thread; fail with the mutant's name if it raises or never ends."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["outcome"] = work()
        except BaseException as exc:  # reported below, with the mutant's name
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"fuzz {name}", daemon=True)
    faulthandler.dump_traceback_later(BOUND_S, exit=False)
    try:
        worker.start()
        worker.join(BOUND_S)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if worker.is_alive():
        pytest.fail(f"{name}: still running after {BOUND_S:g} s (a hang)")
    if "error" in box:
        error = box["error"]
        if isinstance(error, AssertionError):
            pytest.fail(f"{name}: {error}")
        raise AssertionError(f"{name}: {type(error).__name__}: {error}") from error
    return str(box["outcome"])


def fuzz(data: Path, rel: str, cases: list[tuple[str, bytes]], tmp: Path) -> Counter[str]:
    """Outcomes ("read", "refused") of the mutants of ``rel``; fails on the first crash."""
    outcomes: Counter[str] = Counter()
    for name, content in cases:

        def work(content: bytes = content) -> str:
            path = _place(data, rel, content, tmp / "case")
            outcome = _check_read(rel, path)
            _check_fit(rel, path, tmp / "out.csv")
            return outcome

        outcomes[_bounded(f"{rel} {name}", work)] += 1
    return outcomes


@pytest.mark.parametrize(("rel", "kind", "count"), SOURCES, ids=[s[0] for s in SOURCES])
def test_mutants_never_crash_a_reader_or_fit(reference_data, tmp_path, rel, kind, count):
    cases = mutants((reference_data / rel).read_bytes(), kind, seed=9, count=count)
    outcomes = fuzz(reference_data, rel, cases, tmp_path)
    assert sum(outcomes.values()) == count


# --- regression corpus -----------------------------------------------------------------------
#
# Mutants that raised a traceback from the readers before their guards (seed 1 is the seed of
# the first fuzzing run), and hand-made members of the same classes.

CRASHED = {
    # huge JSON integers (ValueError from int()), deep nesting (RecursionError)
    "smartchamber/fluxfinder_LI8200-01S.json": ("json", [2, 3, 7, 10]),
    "smartchamber/goflux_LI8200.json": ("json", [1, 4, 5, 9]),
    # compression method 99 (NotImplementedError from zipfile)
    Z82: ("zip", [0]),
    # a field over the csv module's limit (csv.Error)
    SUMMARY: ("text", [3, 11, 12]),
}


@pytest.mark.parametrize("rel", CRASHED, ids=str)
def test_mutants_that_used_to_crash(reference_data, tmp_path, rel):
    kind, numbers = CRASHED[rel]
    data = (reference_data / rel).read_bytes()
    generated = mutants(data, kind, seed=1, count=max(numbers) + 1)
    outcomes = fuzz(reference_data, rel, [generated[n] for n in numbers], tmp_path)
    assert sum(outcomes.values()) == len(numbers)


def _81x_footer(value: bytes) -> Callable[[bytes], bytes]:
    return lambda d: re.sub(rb"Exp_Iter:\t\d+", b"Exp_Iter:\t" + value, d)


def _zip_flags(flag: int, method: int | None = None) -> Callable[[bytes], bytes]:
    """Every member encrypted (flag bit 0) or compressed with ``method``, in both headers."""

    def edit(d: bytes) -> bytes:
        out = bytearray(d)
        for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
            start = 0
            while (i := out.find(signature, start)) >= 0:
                out[i + flags_at] |= flag
                if method is not None:
                    out[i + method_at : i + method_at + 2] = method.to_bytes(2, "little")
                start = i + 4
        return bytes(out)

    return edit


def _summary_quoted_long_field(d: bytes) -> bytes:
    lines = d.split(b"\n")
    lines[4] = b'"' + b"x" * 200_000 + b'",' + lines[4]
    return b"\n".join(lines)


def _json_nested(depth: int) -> Callable[[bytes], bytes]:
    """A header value nested ``depth`` arrays deep (after "datasets", so the file still
    sniffs as Smart Chamber JSON)."""
    value = b"[" * depth + b"]" * depth
    return lambda d: d.replace(b'"Chamber":', b'"Deep": ' + value + b', "Chamber":', 1)


HAND_MADE = [
    ("li8100a/SALT_20181005_LT.81x", "Exp_Iter: inf", _81x_footer(b"inf")),
    ("li8100a/SALT_20181005_LT.81x", "Exp_Iter: nan", _81x_footer(b"nan")),
    ("li8100a/SALT_20181005_LT.81x", "Exp_Iter: 5000 digits", _81x_footer(b"9" * 5000)),
    ("li8100a/SALT_20181005_LT.81x", "CR-only", lambda d: d.replace(b"\n", b"\r")),
    (
        "li8100a/SALT_20181005_LT.81x",
        "Port# full-width",
        lambda d: d.replace(b"Port#:\t1", b"Port#:\t\xc2\xb2"),
    ),
    # 5000 deep: RecursionError in the parser; 900 deep parses (as a header value, str()
    # of it recurses again): both refused by the depth limit
    ("smartchamber/fluxfinder_LI8200-01S.json", "nested 5000 deep", _json_nested(5000)),
    ("smartchamber/fluxfinder_LI8200-01S.json", "nested 900 deep", _json_nested(900)),
    (
        "smartchamber/fluxfinder_LI8200-01S.json",
        "TimeZone not a zone",
        lambda d: d.replace(b"America/New_York", b"../../etc/passwd"),
    ),
    (
        "smartchamber/fluxfinder_LI8200-01S.json",
        "year 9999",
        lambda d: d.replace(b"2024-06-13", b"9999-12-31"),
    ),
    (
        "smartchamber/goflux_LI8200.json",
        "huge integer",
        lambda d: d.replace(b'"RepNum":1', b'"RepNum":' + b"9" * 5000),
    ),
    (Z82, "encrypted", _zip_flags(0x01)),
    (Z82, "bzip2", _zip_flags(0, zipfile.ZIP_BZIP2)),
    (Z82, "method 99", _zip_flags(0, 99)),
    (Z82, "zip bomb (155 MiB data.csv)", lambda d: _zip_bomb(d, random.Random(1))),
    (
        Z82,
        "CR-only data.csv",
        lambda d: _rezip_member(d, "data.csv", lambda m: m.replace(b"\n", b"\r")),
    ),
    (
        Z82,
        "year 9999",
        lambda d: _rezip_member(d, "data.csv", lambda m: m.replace(b"20220125", b"99991231")),
    ),
    (
        Z82,
        "year 1",
        lambda d: _rezip_member(d, "data.csv", lambda m: m.replace(b"20220125", b"00010101")),
    ),
    (SUMMARY, "quoted field over the csv limit", _summary_quoted_long_field),
]


def _rezip_member(data: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for member in src.namelist():
            content = src.read(member)
            dst.writestr(member, change(content) if member == name else content)
    return out.getvalue()


@pytest.mark.parametrize(
    ("rel", "what", "change"), HAND_MADE, ids=[f"{r} {w}" for r, w, _ in HAND_MADE]
)
def test_hand_made_bad_input(reference_data, tmp_path, rel, what, change):
    original = (reference_data / rel).read_bytes()
    mutant = change(original)
    assert mutant != original, f"{what}: the edit did not apply"
    outcomes = fuzz(reference_data, rel, [(what, mutant)], tmp_path)
    assert sum(outcomes.values()) == 1


def test_absurd_magnitudes_give_no_floating_point_warnings(salt_81x, tmp_path):
    """Readings of 1e308 (a logger's overflow) in a closed-chamber trace: fitted or refused,
    never a numpy overflow warning on the user's terminal."""
    lines = salt_81x.read_text(encoding="utf-8").split("\n")
    changed = 0
    for i, line in enumerate(lines):
        cells = line.split("\t")
        closed = len(cells) > 10 and cells[0] == "1" and cells[1].isdigit()
        if closed and int(cells[1]) >= 30 and changed < 20:
            cells[6] = cells[7] = "1e308"  # CO2 and Cdry
            lines[i] = "\t".join(cells)
            changed += 1
    path = tmp_path / "absurd.81x"
    path.write_text("\n".join(lines), encoding="utf-8")
    _check_fit("absurd.81x", path, tmp_path / "out.csv")
