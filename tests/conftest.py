"""Shared fixtures: where the reference data lives, and skip-or-fail rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# test helpers shared across packages (``from fuzzing import mutants``)
sys.path.insert(0, str(Path(__file__).resolve().parent))
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


POSTGRES_ADMIN_URL = os.environ.get(
    "CHAMBERD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The machine's PostgreSQL (database ``test``); skips where there is none, fails when
    CHAMBERD_REQUIRE_POSTGRES=1 (CI)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} not reachable: {exc}"
        if os.environ.get("CHAMBERD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_admin(postgres_admin_url):
    """An admin connection for one test (a test may restart the server: each gets its own)."""
    import psycopg

    with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=30) as conn:
        yield conn


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"chamberd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    from pgtools import drop_campaign_database

    drop_campaign_database(postgres_admin_url, f"{base}/{name}")


@pytest.fixture(params=["sqlite", "postgresql"])
def central_url(request, tmp_path):
    """The central database on each backend: an SQLite file, and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres_url")
