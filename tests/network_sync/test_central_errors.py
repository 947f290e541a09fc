"""The paths a newcomer takes: every database command against every wrong database gives one
line, no traceback, and creates nothing; the adapter translates each class of foreign error."""

from __future__ import annotations

import sqlite3
import tomllib
import uuid as uuidlib
from pathlib import Path

import psycopg
import pytest
from pgtools import drop_campaign_database

from chamberd.controller.cli import main
from chamberd.controller.config import parse_config, to_toml
from chamberd.controller.errors import ConfigError, StorageError, SyncError
from chamberd.controller.store import SiteStore
from chamberd.network_sync.central import LATEST_VERSION, Central, add_site_role
from chamberd.network_sync.sync import register_site

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"


def _site_url(url: str, role: str, password: str) -> str:
    base, db = url.rsplit("/", 1)
    return f"postgresql://{role}:{password}@{base.split('@', 1)[1]}/{db}"


@pytest.fixture
def world(tmp_path, postgres_admin_url, request):
    """Every kind of wrong database, and a site with its config and an empty outbox."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.db").write_text("not a database, just words\n" * 40, encoding="utf-8")
    (tmp_path / "empty.db").touch()
    data = tomllib.loads((ROOT / "controller/examples/sim-site.toml").read_text())
    data["storage"] = {"path": str(tmp_path / "site.db")}
    data["sync"] = {"system": "auto"}
    cfg = parse_config(data)
    SiteStore(cfg.storage.path, site_id=cfg.site.id).close()
    config = tmp_path / "site.toml"
    config.write_text(to_toml(cfg), encoding="utf-8")
    base = postgres_admin_url.rsplit("/", 1)[0]
    return {
        "tmp": tmp_path,
        "config": config,
        "site": cfg.site.id,
        "missing file": f"sqlite:///{tmp_path / 'nowhere' / 'c.db'}",
        "folder": f"sqlite:///{tmp_path / 'folder'}",
        "not SQLite": f"sqlite:///{tmp_path / 'text.db'}",
        "uninitialised file": f"sqlite:///{tmp_path / 'empty.db'}",
        "missing database": f"{base}/chamberd_missing_{uuidlib.uuid4().hex[:10]}",
        "unknown login": (
            f"postgresql://chamberd_nobody_{uuidlib.uuid4().hex[:6]}:{SECRET}@"
            f"{postgres_admin_url.split('@', 1)[1]}"
        ),
        "unreachable": f"postgresql://site:{SECRET}@127.0.0.1:1/campaign",
        "request": request,
    }


@pytest.fixture
def roles(postgres_url, postgres_admin, world):
    """An initialised campaign: site A's role, and an analyst login."""
    with Central.connect(postgres_url) as central:
        central.migrate()
        other = f"other-{uuidlib.uuid4().hex[:6]}"
        register_site(central, site_id=other, system_id="auto", at="2026-07-01T00:00:00Z")
        role, password = add_site_role(central, other)
        groups = central.role_names()
        analyst = f"chamberd_{central.campaign_id()}_test_analyst"
    postgres_admin.execute(
        f'CREATE ROLE "{analyst}" LOGIN PASSWORD \'pw\' IN ROLE "{groups["analyst"]}"'
    )
    return {
        "another site's role": _site_url(postgres_url, role, password),
        "analyst": _site_url(postgres_url, analyst, "pw"),
    }


def _argv(command: str, url: str, world, salt_81x) -> list[str]:
    out = str(world["tmp"] / "out.csv")
    site = world["site"]
    return {
        "query": ["query", "--target", url, "-o", out],
        "export": ["export", "--target", url, "--site", site, "--layout", "fluxnet", "-o", out],
        "refit": ["refit", "--target", url, "--method", "linear"],
        "sync": ["sync", str(world["config"]), "--target", url],
        "import": [
            "import",
            "--target",
            url,
            "--site",
            site,
            "--system",
            "survey",
            "--format",
            "li8100a",
            "--time-zone",
            "UTC",
            str(salt_81x),
        ],
        "central init": ["central", "init", url],
        "central add-site": ["central", "add-site", url, site],
    }[command]


COMMANDS = ("query", "export", "refit", "sync", "import", "central init", "central add-site")
# (condition, exit status, a fragment of the message); central init creates a missing file,
# initialises an empty one and creates a missing PostgreSQL database (tested below)
CONDITIONS = {
    "missing file": (2, "no database file"),
    "folder": (2, "is a folder"),
    "not SQLite": (2, "not an SQLite database"),
    "uninitialised file": (2, "not a chamberd central database"),
    "uninitialised database": (2, "not a chamberd central database"),
    "missing database": (2, "does not exist"),
    "unknown login": (2, "refused the login"),
    "unreachable": (1, "cannot connect"),
    "another site's role": (1, "this role writes site"),
    "analyst": (1, "this role may only read"),
}
SKIP = {
    ("central init", "missing file"),  # creates it
    ("central init", "uninitialised file"),  # initialises it
    ("central init", "uninitialised database"),
    ("central init", "missing database"),  # creates it where the login may
}
# only writers can be refused for writing; reading is allowed to every role
WRITERS = {"sync", "import"}
SPECIAL = {
    ("central add-site", "uninitialised file"): (2, "need PostgreSQL"),
    ("refit", "analyst"): None,  # nothing to refit: an empty campaign (refusal tested in roles)
    ("central add-site", "analyst"): (1, "not allowed"),
    ("central add-site", "another site's role"): (1, "not allowed"),
    ("central init", "analyst"): None,  # up to date: nothing to do, nothing refused
    ("central init", "another site's role"): None,
}

CASES = [
    (command, condition)
    for command in COMMANDS
    for condition in CONDITIONS
    if (command, condition) not in SKIP
    and SPECIAL.get((command, condition), ()) is not None
    and (
        condition not in ("another site's role", "analyst")
        or command in WRITERS
        or (command, condition) in SPECIAL
    )
]


def _files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith("site.db")
    }


@pytest.mark.parametrize(("command", "condition"), CASES, ids=[f"{c}|{k}" for c, k in CASES])
def test_every_command_on_every_wrong_database_is_one_line(
    command, condition, world, salt_81x, capsys
):
    if condition == "uninitialised database":
        url = world["request"].getfixturevalue("postgres_url")
    elif condition in ("another site's role", "analyst"):
        url = world["request"].getfixturevalue("roles")[condition]
    else:
        url = world[condition]
    status, fragment = SPECIAL.get((command, condition)) or CONDITIONS[condition]
    before = _files(world["tmp"])
    code = main(_argv(command, url, world, salt_81x))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == status, captured.err
    assert len(lines) == 1 and lines[0].startswith("chamberd: error: "), captured.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert SECRET not in captured.err + captured.out
    assert _files(world["tmp"]) == before  # nothing created: no database file, no output
    if condition == "missing database":
        with psycopg.connect(world["missing database"].rsplit("/", 1)[0] + "/test") as conn:
            name = world["missing database"].rsplit("/", 1)[1]
            assert not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchall()


def test_the_matrix_covers_every_command():
    assert {c for c, _ in CASES} == set(COMMANDS)
    assert len(CASES) >= 50


# --- central init creates what is missing -----------------------------------------------------


def test_central_init_creates_a_missing_file_and_a_missing_database(
    tmp_path, postgres_admin_url, capsys
):
    url = f"sqlite:///{tmp_path / 'new' / 'campaign.db'}"
    assert main(["central", "init", url]) == 0
    assert (tmp_path / "new" / "campaign.db").is_file()
    missing = f"{postgres_admin_url.rsplit('/', 1)[0]}/chamberd_new_{uuidlib.uuid4().hex[:10]}"
    try:
        assert main(["central", "init", missing]) == 0
        assert f"schema version {LATEST_VERSION}" in capsys.readouterr().out
        with Central.connect(missing, mode="read") as central:
            assert central.schema_version() == LATEST_VERSION
    finally:
        drop_campaign_database(postgres_admin_url, missing)


def test_central_init_says_how_when_the_login_may_not_create_databases(
    postgres_admin, postgres_admin_url, capsys
):
    role = f"chamberd_nocreatedb_{uuidlib.uuid4().hex[:6]}"
    postgres_admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        host = postgres_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
        name = f"chamberd_new_{uuidlib.uuid4().hex[:10]}"
        assert main(["central", "init", f"postgresql://{role}:pw@{host}/{name}"]) == 2
        err = capsys.readouterr().err
        assert (
            "cannot create it" in err and f"createdb -h 127.0.0.1 -p 5432 -U {role} {name}" in err
        )
        assert "'pw'" not in err and ":pw@" not in err
    finally:
        postgres_admin.execute(f"DROP ROLE IF EXISTS {role}")


# --- read-only opens ---------------------------------------------------------------------------


def test_a_read_only_open_writes_nothing(central_url):
    with Central.connect(central_url) as central:
        central.migrate()
    with Central.connect(central_url, mode="read") as central:
        assert central.schema_version() == LATEST_VERSION
        with pytest.raises(StorageError, match="read-only|readonly"):
            central.execute(
                "INSERT INTO sites (site_id, time_zone, created_at) "
                "VALUES ('x', 'UTC', '2026-01-01T00:00:00Z')"
            )


# --- the adapter translates each class of foreign error ----------------------------------------


def _sqlite_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    central = Central.connect(url)
    central.migrate()
    central.execute("INSERT INTO sites (site_id, time_zone, created_at) VALUES ('A', 'UTC', 't')")
    insert = "INSERT INTO sites (site_id, time_zone, created_at) VALUES (?, 'UTC', 't')"
    return central, [
        ("unique violation", SyncError, insert, ("A",), sqlite3.IntegrityError),
        (
            "foreign key",
            SyncError,
            "INSERT INTO systems (site_id, system_id) VALUES ('nowhere', 'x')",
            (),
            sqlite3.IntegrityError,
        ),
        ("no such table", ConfigError, "SELECT * FROM nonsense", (), sqlite3.OperationalError),
        ("integer overflow", SyncError, insert, (2**70,), OverflowError),
        ("lone surrogate", SyncError, insert, ("\udcff",), UnicodeEncodeError),
        ("unsupported type", SyncError, insert, ({"a": 1},), sqlite3.ProgrammingError),
    ]


def test_sqlite_errors_are_translated(tmp_path):
    central, cases = _sqlite_errors(tmp_path)
    with central:
        for name, kind, sql, params, cause in cases:
            with pytest.raises(kind) as caught:
                central.execute(sql, params)
            assert any(isinstance(e, cause) for e in _chain(caught.value)), name
            assert str(tmp_path) in str(caught.value), name


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out[1:]


def test_postgresql_errors_are_translated(postgres_url, postgres_admin):
    central = Central.connect(postgres_url)
    central.migrate()
    insert = "INSERT INTO sites (site_id, time_zone, created_at) VALUES (?, 'UTC', now())"
    central.execute(insert, ("A",))
    errors = psycopg.errors
    cases = [
        ("unique violation", SyncError, insert, ("A",), errors.UniqueViolation),
        (
            "foreign key",
            SyncError,
            "INSERT INTO systems (site_id, system_id) VALUES ('nowhere', 'x')",
            (),
            errors.ForeignKeyViolation,
        ),
        ("undefined table", ConfigError, "SELECT * FROM nonsense", (), errors.UndefinedTable),
        ("NUL in text", SyncError, insert, ("a\x00b",), psycopg.DataError),
        (
            "integer out of range",
            SyncError,
            "UPDATE sites SET latitude = ?::int",
            (2**40,),
            errors.NumericValueOutOfRange,
        ),
        ("lone surrogate", SyncError, insert, ("\udcff",), UnicodeEncodeError),
        (
            "bad time",
            SyncError,
            "UPDATE sites SET created_at = ?",
            ("2026-13-45",),
            psycopg.DataError,
        ),
    ]
    with central:
        for name, kind, sql, params, cause in cases:
            with pytest.raises(kind) as caught:
                central.execute(sql, params)
            assert isinstance(caught.value.__cause__, cause), name
        with Central.connect(postgres_url, mode="read") as reader:
            with pytest.raises(StorageError, match="read-only") as caught:
                reader.execute(insert, ("B",))
            assert isinstance(caught.value.__cause__, errors.ReadOnlySqlTransaction)
        # the connection lost under it
        pid = central.conn.info.backend_pid
        postgres_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(SyncError, match="connection lost") as caught:
            central.query("SELECT 1")
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
