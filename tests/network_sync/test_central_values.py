"""Values one backend refuses (NUL bytes, lone surrogates, integers out of range, times near
year 1 or 9999 with an offset, text where a number goes) are refused on both, before anything
is written, with a message naming the observation and the field; through sync and import."""

from __future__ import annotations

import math
import random
import sqlite3

import pytest

from chamberd.controller.cli import main
from chamberd.controller.errors import ConfigError, DataFileError, SyncError
from chamberd.network_sync.central import Central
from chamberd.network_sync.queries import fluxes as query_fluxes
from chamberd.network_sync.sync import (
    _FLUX_KINDS,
    _OBSERVATION_KINDS,
    _SAMPLE_KINDS,
    SAMPLE_FIELDS,
    VALUE_FIELDS,
    content_hash,
    register_site,
    upload,
    upsert_batch,
)

BAD = {
    "key": ["a\x00b", "\udcff", 12, ""],
    "text": ["a\x00b", "x\ud800y", 3.5],
    "float": ["12.5", 10**400, [1.0]],
    "int": [2**40, -(2**31) - 1, 1.5, "7"],
    "time": [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:30:00+01:00",
        "1899-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "not a time",
        "2026-07-01T04:00:00\x00",
        5,
    ],
}


def _payload(uuid: str, chamber: str = "C1", begin: str = "2026-07-01T04:00:00+00:00"):
    observation = {
        "uuid": uuid,
        "chamber": chamber,
        "status": "done",
        "reason": None,
        "started_at": begin,
        "ended_at": "2026-07-01T04:02:00+00:00",
        **dict.fromkeys(VALUE_FIELDS),
        "area_cm2": 317.8,
        "volume_cm3": 5000.0,
        "analyser_serial": "SN-1",
        "n_samples": 2,
    }
    fluxes = [
        {
            "gas": "co2",
            "model": "linear",
            "processing_version": "site-1",
            "flux": 1.5,
            "flux_unit": "umol m-2 s-1",
            "flux_se": 0.1,
            "r2": 0.99,
            "nrmse": 0.01,
            "n_points": 60,
            "selected": 1,
            "flags": "",
        }
    ]
    samples = [
        (seq, f"2026-07-01T04:00:{seq:02d}+00:00", float(seq), "observing", 420.0 + seq)
        + (None,) * 5
        for seq in range(2)
    ]
    return {"observation": observation, "fluxes": fluxes, "samples": samples}


def _write(central, payloads, site="S1"):
    for p in payloads:
        p["hash"] = content_hash(p["observation"], p["fluxes"])
    with central.transaction():
        return upsert_batch(central, payloads, site_id=site, system_id="auto", now=_NOW)


_NOW = "2026-07-02T00:00:00+00:00"


def _counts(central):
    return [
        central.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("observations", "fluxes", "samples")
    ]


def _cases():
    for key, kind in _OBSERVATION_KINDS.items():
        for bad in BAD[kind]:
            yield ("observation", key, bad)
    for key, kind in _FLUX_KINDS.items():
        for bad in BAD[kind]:
            yield ("flux", key, bad)
    for index, kind in enumerate(_SAMPLE_KINDS):
        for bad in BAD["text" if kind == "key" else kind]:
            yield ("sample", index, bad)


CASES = list(_cases())


def _spoil(payload, section, key, bad):
    if section == "observation":
        payload["observation"][key] = bad
    elif section == "flux":
        payload["fluxes"][0][key] = bad
    else:
        row = list(payload["samples"][1])
        row[key] = bad
        payload["samples"][1] = tuple(row)
    return SAMPLE_FIELDS[key] if section == "sample" else key


@pytest.fixture
def central(central_url):
    with Central.connect(central_url) as central:
        central.migrate()
        register_site(central, site_id="S1", system_id="auto", at=_NOW)
        yield central


def test_every_field_refuses_every_value_either_backend_cannot_hold(central):
    """Each field of an observation, a flux and a sample, each class of bad value: refused
    with the observation and field named; nothing written, on either backend."""
    for n, (section, key, bad) in enumerate(CASES):
        payload = _payload(f"obs-{n}")
        field = _spoil(payload, section, key, bad)
        with pytest.raises(DataFileError) as caught:
            _write(central, [_payload(f"good-{n}"), payload])
        message = str(caught.value)
        assert field in message, (section, key, bad, message)
        if section != "observation" or key != "uuid":
            assert f"observation obs-{n}" in message, message
    assert _counts(central) == [0, 0, 0]
    assert len(CASES) > 140


def test_values_at_the_edges_are_stored_and_read_back(central):
    edge = _payload("edge-1", chamber="Ü-ß 🌲 'quoted'", begin="1900-01-01T00:00:00Z")
    edge["observation"]["ended_at"] = "2199-12-31T23:59:59+00:00"
    edge["observation"]["reason"] = "x" * 50_000
    edge["observation"]["soil_temperature_degc"] = math.nan
    edge["observation"]["pressure_kpa"] = 2**62  # an integer where a float goes
    edge["fluxes"][0].update(flux=math.inf, flux_se=-0.0, n_points=2**31 - 1, selected=True)
    late = _payload("edge-2", begin="2199-12-31T23:00:00-00:30")
    assert _write(central, [edge, late]) == ["sent", "sent"]
    frame = query_fluxes(central).set_index("uuid")
    assert len(frame) == 2 and frame.loc["edge-1", "chamber"] == "Ü-ß 🌲 'quoted'"
    assert str(frame.loc["edge-1", "begin_utc"]) == "1900-01-01 00:00:00+00:00"
    assert frame.loc["edge-1", "flux"] == math.inf
    assert _counts(central) == [2, 2, 4]


def _hostile(rng: random.Random, kind: str):
    """A random value of roughly the right shape, often one a backend refuses."""
    roll = rng.random()
    if kind in ("text", "key"):
        alphabet = ["a", "Z", "0", " ", "'", ";", "\x00", "\ud83c", "é", "🌲", "\n", "\t"]
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
    if kind == "float":
        if roll < 0.3:
            return rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0])
        if roll < 0.6:
            return rng.randint(-(2**90), 2**90)
        return rng.uniform(-1e6, 1e6)
    if kind == "int":
        return rng.randint(-(2**34), 2**34) if roll < 0.5 else rng.randint(-5, 5)
    year = rng.choice([1, 2, 1899, 1900, 2026, 2199, 2200, 9998, 9999])
    minutes = rng.randint(-14 * 60, 14 * 60)
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    offset = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{year:04d}-12-31T23:{rng.randint(0, 59):02d}:00{offset}"


def test_seeded_hostile_values_are_refused_or_stored_readably(central):
    """200 payloads with one random field set to a random hostile value: each is either
    refused with the field named or stored so that the queries read it back."""
    rng = random.Random(9)
    fields = [("observation", k, v) for k, v in _OBSERVATION_KINDS.items() if k != "uuid"]
    fields += [("flux", k, v) for k, v in _FLUX_KINDS.items()]
    fields += [("sample", i, v) for i, v in enumerate(_SAMPLE_KINDS)]
    stored = refused = 0
    for n in range(200):
        section, key, kind = rng.choice(fields)
        payload = _payload(f"fuzz-{n}", chamber=f"C{n}")
        field = _spoil(payload, section, key, _hostile(rng, kind))
        try:
            _write(central, [payload])
        except DataFileError as exc:
            assert field in str(exc) and f"fuzz-{n}" in str(exc)
            refused += 1
        except SyncError as exc:  # a constraint (a unique key, NOT NULL) or a flux unit
            assert "refused" in str(exc) or f"fuzz-{n}" in str(exc)
            refused += 1
        else:
            stored += 1
    query_fluxes(central, selected_only=False, status=None)
    central.query("SELECT * FROM samples")
    central.query("SELECT * FROM observations")
    assert stored > 20 and refused > 20, (stored, refused)


# --- through sync and import ---------------------------------------------------------------

SPOILS = [
    ("UPDATE observations SET analyser_serial = 'SN' || char(0) || '1' WHERE rowid = 2",
     "analyser_serial", "NUL"),
    ("UPDATE observations SET started_at = '9999-12-31T23:00:00-05:00' WHERE rowid = 2",
     "started_at", "out of range"),
    ("UPDATE fluxes SET n_points = 1099511627776 WHERE rowid = 2", "n_points", "out of range"),
    ("UPDATE samples SET co2_umol_mol = 'high' WHERE seq = 3", "co2_umol_mol", "not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "field", "why"), SPOILS, ids=[s[1] for s in SPOILS])
def test_sync_refuses_the_batch_naming_observation_and_field(
    central_url, measured_site, site_copy, outbox, tmp_path, capsys, sql, field, why
):
    config, db = site_copy(measured_site, tmp_path)
    with sqlite3.connect(db) as con:
        con.execute(sql)
    assert main(["central", "init", central_url]) == 0
    capsys.readouterr()
    assert main(["sync", str(config), "--target", central_url]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "batch refused: observation " in lines[0] and field in lines[0] and why in lines[0]
    assert outbox(db) == 4  # kept, to send once the site's data is mended
    with Central.connect(central_url, mode="read") as central:
        assert _counts(central) == [0, 0, 0]


def test_sync_refusal_is_reported_by_the_library_too(central, measured_site, site_copy, tmp_path):
    from chamberd.controller.store import SiteStore

    _, db = site_copy(measured_site, tmp_path)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE observations SET chamber = 'C' || char(0) WHERE rowid = 1")
    store = SiteStore.open_existing(db)
    try:
        with pytest.raises(SyncError, match=r"observation [0-9a-f-]+: chamber 'C\\x00'"):
            upload(store, central, site_id="S1", system_id="auto")
    finally:
        store.close()


MANUAL = (
    "chamber,start_time,elapsed_s,co2_umol_mol,area_cm2,volume_cm3\n"
    "{chamber},{start},0,421.3,490.9,9817\n"
    "{chamber},{start},300,438.9,490.9,9817\n"
)


@pytest.mark.parametrize(
    ("chamber", "start", "field"),
    [
        ("M\x001", "2026-07-01T10:02:00+08:00", "chamber"),
        ("M1", "1899-06-01T10:02:00+00:00", "started_at"),
    ],
    ids=["nul-in-chamber", "before-1900"],
)
def test_import_rejects_the_file_naming_observation_and_field(
    central_url, tmp_path, capsys, chamber, start, field
):
    bad = tmp_path / "bad.csv"
    bad.write_text(MANUAL.format(chamber=chamber, start=start), encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text(MANUAL.format(chamber="M2", start="2026-07-01T10:02:00+08:00"))
    assert main(["central", "init", central_url]) == 0
    args = ["import", "--target", central_url, "--site", "S1", "--system", "manual"]
    assert main([*args, "--format", "manual-csv", str(bad), str(good)]) == 3
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    rejected = [line for line in captured.err.splitlines() if line.startswith("rejected:")]
    assert len(rejected) == 1 and str(bad) in rejected[0] and field in rejected[0]
    # named by its observation (the central value check) or its line (the plausibility rules
    # of the importers, which see a year before 1980 first)
    assert "observation " in rejected[0] or ", line " in rejected[0]
    with Central.connect(central_url, mode="read") as central:
        assert [r["chamber"] for r in central.query("SELECT chamber FROM observations")] == ["M2"]


def test_site_registration_refuses_values_either_backend_cannot_hold(central):
    for field, value in (("name", "a\x00b"), ("time_zone", "\udcff"), ("latitude", "north")):
        with pytest.raises(ConfigError, match=f"site 'S2': {field} "):
            register_site(central, site_id="S2", system_id="auto", at=_NOW, **{field: value})
    geometry = [{"chamber": "C\x00", "since": "2026-01-01", "area_cm2": 1.0, "volume_cm3": 1.0,
                 "offset_cm": 0.0}]  # fmt: skip
    with pytest.raises(ConfigError, match="chamber geometry chamber"):
        register_site(central, site_id="S2", system_id="auto", at=_NOW, geometry=geometry)
    assert not central.query("SELECT 1 FROM sites WHERE site_id = 'S2'")


def test_a_query_filter_that_is_not_unicode_is_one_line(central_url, capsys):
    """A lone surrogate from a command line of non-UTF-8 bytes, into either backend."""
    assert main(["central", "init", central_url]) == 0
    capsys.readouterr()
    assert main(["query", "--target", central_url, "--site", "\udcff"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid Unicode" in err and "Traceback" not in err
