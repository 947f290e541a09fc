"""Import identity: uuids from (site, system, file content, place in the file), never the
time zone; revisions that move begin times; old-scheme uuids; site roles."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import uuid as uuidlib

import psycopg
import pytest

from chamberd.controller.cli import main
from chamberd.controller.errors import DataFileError, SyncError
from chamberd.network_sync import importers
from chamberd.network_sync.central import Central, add_site_role
from chamberd.network_sync.importers import import_paths, report_json


@pytest.fixture
def central(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        yield c


def _count(central, sql, *args):
    return central.query(sql, args)[0]["n"]


def _begins(central, site="S", system="a"):
    rows = central.query(
        "SELECT uuid, begin_utc, revision FROM observations WHERE site_id = ? AND system_id = ?",
        (site, system),
    )
    return {r["uuid"]: (_utc(r["begin_utc"]), r["revision"]) for r in rows}


def _utc(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC)


def _import(central, path, site="S", system="a", zone="Asia/Shanghai"):
    return import_paths(
        central, [path], site_id=site, system_id=system, fmt="li8100a", time_zone=zone
    )


def test_another_site_or_system_imports_the_same_file_as_new(central, reference_data):
    source = reference_data / "li8100a" / "worksWell.81x"
    first = _import(central, source, site="S", system="a")
    other_site = _import(central, source, site="T", system="a")
    other_system = _import(central, source, site="S", system="b")
    for report in (first, other_site, other_system):
        assert report.totals()["sent"] == 68 and report.totals()["conflicts"] == 0
    assert _count(central, "SELECT count(*) AS n FROM observations") == 3 * 68
    # each has its own rows: site T's fluxes and samples are T's, S's are untouched
    assert _count(central, "SELECT count(*) AS n FROM fluxes WHERE site_id = 'T'") > 0
    s_uuids = set(_begins(central, "S", "a"))
    assert s_uuids.isdisjoint(_begins(central, "T", "a"))
    assert s_uuids.isdisjoint(_begins(central, "S", "b"))
    again = _import(central, source, site="T", system="a", zone="Asia/Tokyo")
    # a corrected zone for T revises T's observations and leaves S's alone
    assert again.totals()["revised"] == 68
    assert all(revision == 1 for _begin, revision in _begins(central, "S", "a").values())


def test_a_corrected_time_zone_revises_the_begin_times(central, reference_data, tmp_path):
    source = reference_data / "li8100a" / "worksWell.81x"
    _import(central, source, zone="Asia/Tokyo")  # UTC+9, but the logger ran on UTC+8
    before = _begins(central)
    n_fluxes = _count(central, "SELECT count(*) AS n FROM fluxes")
    n_samples = _count(central, "SELECT count(*) AS n FROM samples")
    # one hour later: two observations move onto begin times that others, later in the
    # file, leave in the same revision
    report = _import(central, source, zone="Asia/Shanghai")
    t = report.totals()
    assert (t["sent"], t["revised"], t["unchanged"], t["conflicts"]) == (0, 68, 0, 0)
    assert report.files[0].status == "imported"
    after = _begins(central)
    assert set(after) == set(before)  # the same uuids
    for uuid, (begin, revision) in after.items():
        assert begin == before[uuid][0] + dt.timedelta(hours=1)
        assert revision == 2
    assert _count(central, "SELECT count(*) AS n FROM fluxes") == n_fluxes
    assert _count(central, "SELECT count(*) AS n FROM samples") == n_samples
    assert _count(central, "SELECT count(*) AS n FROM conflicts") == 0
    log = central.query("SELECT sent, revised, unchanged FROM ingest_log ORDER BY id")
    assert (log[-1]["sent"], log[-1]["revised"], log[-1]["unchanged"]) == (0, 68, 0)
    assert json.loads(report_json(report))["revised"] == 68
    # the corrected import again: unchanged
    assert _import(central, source, zone="Asia/Shanghai").totals()["unchanged"] == 68


def test_a_revision_onto_another_observations_begin_time_is_a_conflict(
    central, reference_data, tmp_path
):
    source = reference_data / "li8100a" / "goflux_LI8100.81x"
    _import(central, source, zone="UTC")
    other = tmp_path / "another_export.81x"
    other.write_bytes(source.read_bytes() + b"\n")  # another file: other uuids
    assert _import(central, other, zone="Etc/GMT+1").totals()["sent"] == 1  # 1 h later
    before = _begins(central)
    # the first file "corrected" to UTC-1 would take the other file's natural key
    report = _import(central, source, zone="Etc/GMT+1")
    assert (report.totals()["revised"], report.totals()["conflicts"]) == (0, 1)
    assert _begins(central) == before  # nothing moved, no integrity error
    conflict = central.query("SELECT existing_uuid, incoming_uuid FROM conflicts")
    assert len(conflict) == 1 and conflict[0]["existing_uuid"] != conflict[0]["incoming_uuid"]


def test_old_scheme_uuids_are_recognised(central, reference_data, monkeypatch):
    source = reference_data / "li8100a" / "worksWell.81x"
    with monkeypatch.context() as old:  # chamberd before identities included site, system
        old.setattr(
            importers, "_uuid", lambda s, y, digest, key: importers._legacy_uuid(digest, key)
        )
        _import(central, source)
    legacy = set(_begins(central))
    again = _import(central, source)
    assert (again.totals()["unchanged"], again.totals()["conflicts"]) == (68, 0)
    corrected = _import(central, source, zone="Asia/Tokyo")
    assert corrected.totals()["revised"] == 68
    assert set(_begins(central)) == legacy
    # another site importing the old file gets the new identities, as new observations
    assert _import(central, source, site="T").totals()["sent"] == 68


def test_same_file_from_another_path_and_renamed_is_unchanged(central, reference_data, tmp_path):
    source = reference_data / "li8100a" / "SALT_20181005_LT.81x"
    _import(central, source)
    copy = tmp_path / "renamed.81x"
    shutil.copy(source, copy)
    assert _import(central, copy).totals()["unchanged"] == 7


def test_cli_lines_count_revised(central_url, reference_data, capsys):
    assert main(["central", "init", central_url]) == 0
    source = str(reference_data / "li8100a" / "worksWell.81x")
    base = ["import", "--target", central_url, "--site", "S", "--system", "a"]
    base += ["--format", "li8100a"]
    assert main([*base, "--time-zone", "Asia/Shanghai", source]) == 0
    capsys.readouterr()
    assert main([*base, "--time-zone", "Asia/Tokyo", source]) == 0
    captured = capsys.readouterr()
    assert "new 0, revised 68, unchanged 0, conflicts 0" in captured.err
    assert "new 0, revised 68, unchanged 0, conflicts 0" in captured.out


# --- site roles (PostgreSQL row-level security) -------------------------------------------


@pytest.fixture
def roles(postgres_url, postgres_admin_url):
    """Two sites' writer roles on a fresh database; the roles are dropped afterwards."""
    suffix = uuidlib.uuid4().hex[:8]
    sites = {"A": f"imp-a-{suffix}", "B": f"imp-b-{suffix}"}
    urls, made = {}, []
    with Central.connect(postgres_url) as central:
        central.migrate()
        for key, site in sites.items():
            role, password = add_site_role(central, site)
            made.append(role)
            base, db = postgres_url.rsplit("/", 1)
            host = base.split("@", 1)[1]
            urls[key] = f"postgresql://{role}:{password}@{host}/{db}"
    yield {"url": postgres_url, "sites": sites, "urls": urls}
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        db = postgres_url.rsplit("/", 1)[1]
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for role in made:
            with contextlib.suppress(psycopg.Error):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_site_roles_import_the_same_file_each_for_itself(roles, reference_data):
    source = reference_data / "li8100a" / "worksWell.81x"
    a, b = roles["sites"]["A"], roles["sites"]["B"]
    with Central.connect(roles["urls"]["A"]) as central:
        assert _import(central, source, site=a).totals()["sent"] == 68
    with Central.connect(roles["urls"]["B"]) as central:
        # under the old identity these uuids were site A's: a UniqueViolation traceback
        report = _import(central, source, site=b)
        assert not report.rejected and report.totals()["sent"] == 68
        with pytest.raises(SyncError, match=f"refused site '{a}'.*this role writes site '{b}'"):
            _import(central, source, site=a)
    with Central.connect(roles["url"]) as admin:
        sites = admin.query("SELECT site_id, count(*) AS n FROM observations GROUP BY site_id")
        assert {r["site_id"]: r["n"] for r in sites} == {a: 68, b: 68}


def test_site_role_clash_on_the_command_line_is_a_message(roles, reference_data):
    a = roles["sites"]["A"]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "chamberd.controller.cli", "import"),
            *("--target", roles["urls"]["B"], "--site", a, "--system", "x"),
            *("--format", "li8100a", "--time-zone", "UTC"),
            str(reference_data / "li8100a" / "goflux_LI8100.81x"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr  # a refusal of the central database
    assert "Traceback" not in done.stderr
    assert f"refused site '{a}'" in done.stderr and "this role writes site" in done.stderr


# --- revisions at the upsert (shared with chamberd sync) -----------------------------------


def _payload(uuid, begin, *, soil=None, chamber="C1"):
    from chamberd.network_sync.sync import VALUE_FIELDS, content_hash

    observation = dict.fromkeys(("reason", "ended_at", *VALUE_FIELDS))
    observation.update(uuid=uuid, chamber=chamber, status="done", started_at=begin, n_samples=0)
    observation["soil_temperature_degc"] = soil
    return {
        "observation": observation,
        "fluxes": [],
        "samples": [],
        "hash": content_hash(observation, []),
    }


def _upsert(central, payloads, site="S", system="a"):
    from chamberd.network_sync.sync import register_site, upsert_batch

    register_site(central, site_id=site, system_id=system, at="2026-07-01T00:00:00+00:00")
    with central.transaction():
        return upsert_batch(
            central, payloads, site_id=site, system_id=system, now="2026-07-02T00:00:00+00:00"
        )


def test_a_revision_rewrites_begin_time_and_values(central):
    assert _upsert(central, [_payload("u1", "2026-07-01T10:00:00+00:00", soil=12.0)]) == ["sent"]
    revised = _payload("u1", "2026-07-01T11:00:00+00:00", soil=13.5)
    assert _upsert(central, [revised]) == ["revised"]
    row = central.query("SELECT begin_utc, soil_temperature_degc, revision FROM observations")[0]
    assert _utc(row["begin_utc"]) == dt.datetime(2026, 7, 1, 11, tzinfo=dt.UTC)
    assert (row["soil_temperature_degc"], row["revision"]) == (13.5, 2)


def test_revisions_may_swap_natural_keys_in_one_batch(central):
    t1, t2 = "2026-07-01T10:00:00+00:00", "2026-07-01T11:00:00+00:00"
    _upsert(central, [_payload("u1", t1), _payload("u2", t2)])
    assert _upsert(central, [_payload("u1", t2), _payload("u2", t1)]) == ["revised", "revised"]
    begins = {
        r["uuid"]: _utc(r["begin_utc"]).hour
        for r in central.query("SELECT uuid, begin_utc FROM observations")
    }
    assert begins == {"u1": 11, "u2": 10}


def test_another_sites_uuid_is_refused_never_a_rewrite(central):
    """An observation belongs to one site: another site's uuid refuses the batch (a copied
    site database, or a forged one), naming both sites; nothing is rewritten."""
    _upsert(central, [_payload("u1", "2026-07-01T10:00:00+00:00", soil=12.0)], site="S")
    with pytest.raises(DataFileError, match="u1 is already stored under site 'S', not 'T'"):
        _upsert(central, [_payload("u1", "2026-07-01T12:00:00+00:00")], site="T")
    row = central.query("SELECT site_id, soil_temperature_degc, revision FROM observations")[0]
    assert (row["site_id"], row["soil_temperature_degc"], row["revision"]) == ("S", 12.0, 1)
