"""Shared fixtures: where the reference data lives, and skip-or-fail rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "controller" / "examples"


def _find_reference_data() -> Path | None:
    """The workplace's shared/data folder (GPL files are read there, never copied)."""
    explicit = os.environ.get("CHAMBERD_SHARED_DATA")
    candidates = [Path(explicit)] if explicit else []
    candidates += [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    candidates.append(Path("/work/shared/data"))
    for candidate in candidates:
        if (candidate / "li8100a").is_dir():
            return candidate
    return None


REFERENCE_DATA = _find_reference_data()


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Path of shared/data; skips with a reason where absent, fails in CI."""
    if REFERENCE_DATA is None:
        message = "reference data (shared/data) not found; set CHAMBERD_SHARED_DATA to its path"
        if os.environ.get("CHAMBERD_REQUIRE_REFERENCE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def salt_81x() -> Path:
    """The bundled CC-BY LI-8100A example file."""
    return EXAMPLES / "SALT_20181005_LT.81x"
