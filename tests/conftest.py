"""Shared fixtures: where the reference data lives, and skip-or-fail rules."""

from __future__ import annotations

import contextlib
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


@pytest.fixture
def mqtt_required() -> None:
    """Used (by ``tracegas.needs_broker``) only when CHAMBERD_REQUIRE_MQTT=1 and the broker or
    mosquitto is missing: the test fails instead of skipping."""
    pytest.fail(
        "CHAMBERD_REQUIRE_MQTT=1 but there is no MQTT broker on 127.0.0.1:1883 "
        "or mosquitto is not installed"
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


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of the test's own (``initdb`` + ``pg_ctl`` on a free
    port on 127.0.0.1), for tests that restart or kill the server: the machine's shared
    server is never stopped or restarted by a test."""

    def __init__(self, root: Path, bindir: Path) -> None:
        import socket

        self.root = root
        self.data = root / "data"
        self.bindir = bindir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: as root, the cluster belongs to the postgres user
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 120) -> None:
        import subprocess

        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-2000:]}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c shared_buffers=16MB -c max_connections=40"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            action,
            *extra,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)


def _postgres_bindir() -> Path | None:
    import glob
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of this test's own, stopped and removed afterwards; skips where
    initdb is not installed, fails when CHAMBERD_REQUIRE_POSTGRES=1 (CI)."""
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        message = "initdb not found (PostgreSQL server binaries) for a private cluster"
        if os.environ.get("CHAMBERD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # not under pytest's tmp_path: as root, the postgres user must be able to enter it
    root = Path(tempfile.mkdtemp(prefix="chamberd-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(root, bindir)
    try:
        server.init()
    except Exception as exc:
        shutil.rmtree(root, ignore_errors=True)
        message = f"cannot start a private PostgreSQL cluster: {exc}"
        if os.environ.get("CHAMBERD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the tests of one module (``tests/browser.py``), ended after
    them; skips where it is not installed, fails when CHAMBERD_REQUIRE_BROWSER=1 (CI)."""
    from browser import browser_session

    yield from browser_session()
