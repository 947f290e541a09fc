"""The plausibility rule table: each rule on its own, and applied by every importer."""

from __future__ import annotations

import datetime as dt
import gzip
import math
import shutil

import pytest

from chamberd.network_sync import plausibility
from chamberd.network_sync.central import Central
from chamberd.network_sync.importers import import_paths
from chamberd.network_sync.plausibility import REFUSE, RULES, WITHHOLD, Limits, check

LIMITS = Limits(last_year=2027)


def _fired(observation=None, fluxes=(), samples=()):
    base = {"started_at": "2026-07-01T10:00:00+00:00"}
    base.update(observation or {})
    return {
        (f.rule.field, f.rule.action)
        for f in check(base, list(fluxes), list(samples), where="f.csv, line 2", limits=LIMITS)
    }


@pytest.mark.parametrize(
    ("values", "fired"),
    [
        ({"area_cm2": 0.0}, {("area_cm2", REFUSE)}),
        ({"area_cm2": -317.8}, {("area_cm2", REFUSE)}),
        ({"area_cm2": math.inf}, {("area_cm2", REFUSE)}),
        ({"area_cm2": math.nan}, {("area_cm2", REFUSE)}),
        ({"area_cm2": 317.8, "volume_cm3": 4076.0}, set()),
        ({"volume_cm3": -1.0}, {("volume_cm3", REFUSE)}),
        ({"observation_s": -90.0}, {("observation_s", REFUSE)}),
        ({"observation_s": 0.0}, {("observation_s", REFUSE)}),
        ({"dead_band_s": -1.0}, {("dead_band_s", REFUSE)}),
        ({"dead_band_s": 0.0}, set()),
        ({"offset_cm": math.nan}, {("offset_cm", REFUSE)}),
        ({"offset_cm": -2.0}, set()),
        ({"started_at": "1979-12-31T23:00:00+00:00"}, {("started_at", REFUSE)}),
        ({"started_at": "1980-01-01T00:00:00+00:00"}, set()),
        ({"started_at": "2027-12-31T23:59:59+00:00"}, set()),
        ({"started_at": "2028-01-01T00:00:00+00:00"}, {("started_at", REFUSE)}),
        ({"ended_at": "2026-07-01T09:59:00+00:00"}, {("ended_at", REFUSE)}),
        ({"ended_at": "2026-07-01T10:06:00+00:00"}, set()),
        ({"soil_moisture_pct": 100.0}, set()),
        ({"soil_moisture_pct": 285.0}, {("soil_moisture_pct", REFUSE)}),
        ({"soil_moisture_pct": -0.5}, {("soil_moisture_pct", WITHHOLD)}),
        ({"soil_moisture_pct": math.nan}, {("soil_moisture_pct", WITHHOLD)}),
        ({"soil_temperature_degc": -9999.0}, {("soil_temperature_degc", WITHHOLD)}),
        ({"soil_temperature_degc": 70.0}, set()),
        ({"air_temperature_degc": 71.0}, {("air_temperature_degc", WITHHOLD)}),
        ({"pressure_kpa": 1013.25}, {("pressure_kpa", REFUSE)}),
        ({"pressure_kpa": 14.7}, {("pressure_kpa", REFUSE)}),
        ({"pressure_kpa": 55.0}, set()),
    ],
)
def test_observation_rules(values, fired):
    assert _fired(values) == fired


def test_flux_and_sample_rules():
    flux = {"gas": "co2", "model": "linear", "flux": math.nan, "r2": math.inf}
    assert _fired(fluxes=[flux]) == {("flux", REFUSE), ("r2", WITHHOLD)}
    assert _fired(fluxes=[{"gas": "co2", "model": "linear", "flux": -0.3, "r2": 0.9}]) == set()
    samples = [
        {"seq": 0, "elapsed_s": 0.0, "co2_umol_mol": 410.0, "cell_pressure_kpa": 99.0},
        {"seq": 1, "elapsed_s": 1.0, "co2_umol_mol": math.nan, "cell_pressure_kpa": 990.0},
        {"seq": 2, "elapsed_s": math.inf, "cell_temperature_degc": -80.0},
    ]
    assert _fired(samples=samples) == {
        ("co2_umol_mol", WITHHOLD),
        ("cell_pressure_kpa", WITHHOLD),
        ("elapsed_s", REFUSE),
        ("cell_temperature_degc", WITHHOLD),
    }


def test_missing_values_pass_every_rule():
    record = {rule.field: None for rule in RULES}
    assert check(record, [record], [record], where="x", limits=LIMITS) == []


def test_withhold_sets_only_the_withheld_values_to_missing():
    observation = {"started_at": "2026-07-01T10:00:00+00:00", "soil_temperature_degc": -9999.0}
    observation["area_cm2"] = 0.0
    findings = check(observation, [], [], where="x", limits=LIMITS)
    assert plausibility.withhold(findings) == 1
    assert observation["soil_temperature_degc"] is None and observation["area_cm2"] == 0.0


def test_summary_is_bounded_and_names_the_places():
    observations = [
        {"started_at": "2026-07-01T10:00:00+00:00", "soil_temperature_degc": -9999.0}
        for _ in range(500)
    ]
    findings = [
        f
        for i, o in enumerate(observations)
        for f in check(o, [], [], where=f"data.csv.gz, line {i + 2}", limits=LIMITS)
    ]
    (line,) = plausibility.summarise(findings)
    assert "500 observation(s) stored as missing" in line
    assert "data.csv.gz, line 2 (-9999.0)" in line and "+497 more" in line
    assert len(line) < 400


def test_every_rule_says_why():
    for rule in RULES:
        assert rule.condition and rule.source and rule.action in (REFUSE, WITHHOLD)


@pytest.mark.parametrize(
    ("values", "factor", "noted"),
    [
        ([0.115, 0.151, 0.22], 100.0, False),  # m3 m-3, as declared
        ([11.5, 15.1, 22.3, 28.5], 1.0, True),  # percent: read as percent
        ([0.2, 0.3, 1.4], 100.0, False),  # m3 m-3 with a bad value: refused by the rule
        ([12.0, 15.0, 250.0], 100.0, False),  # neither: refused by the rule
        ([], 100.0, False),
    ],
)
def test_soil_moisture_scale(values, factor, noted):
    got, note = plausibility.soil_moisture_scale(values, "CSR_SM5")
    assert got == factor and (note is not None) == noted
    if noted:
        assert "CSR_SM5" in note and "percent" in note


# --- applied by the importers ---------------------------------------------------------------


@pytest.fixture
def central(central_url):
    with Central.connect(central_url) as c:
        c.migrate()
        yield c


def _count(central, table):
    return central.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def _cosore(reference_data, tmp_path, edit=None, rows=60, ports=None, description=None):
    source = reference_data / "cosore" / "d20200212_ATAKA"
    target = tmp_path / "d20200212_ATAKA"
    target.mkdir(parents=True)
    for member in ("DESCRIPTION.txt", "PORTS.txt"):
        shutil.copy(source / member, target / member)
    if ports:
        text = (target / "PORTS.txt").read_text()
        (target / "PORTS.txt").write_text(ports(text))
    if description:
        text = (target / "DESCRIPTION.txt").read_text()
        (target / "DESCRIPTION.txt").write_text(description(text))
    lines = gzip.decompress((source / "data.csv.gz").read_bytes()).decode().splitlines()
    lines = lines[: rows + 1]
    if edit:
        lines = [lines[0]] + [edit(i, line) for i, line in enumerate(lines[1:], start=2)]
    (target / "data.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return target


def _cells(line, **changes):
    # ATAKA: CSR_PORT,CSR_TIMESTAMP_BEGIN,CSR_TIMESTAMP_END,CSR_FLUX_CO2,CSR_SM5,CSR_T5
    cells = line.split(",")
    names = ["port", "begin", "end", "flux", "sm", "t"]
    for name, value in changes.items():
        cells[names.index(name)] = value
    return ",".join(cells)


def _import_cosore(central, folder):
    return import_paths(central, [folder], site_id="YMS", system_id="ataka", fmt="cosore")


def test_cosore_soil_moisture_in_percent_is_converted_and_said(central, reference_data, tmp_path):
    def percent(i, line):
        return _cells(line, sm=f"{float(line.split(',')[4]) * 100:.4f}")

    folder = _cosore(reference_data, tmp_path, percent)
    report = _import_cosore(central, folder)
    outcome = report.files[0]
    assert outcome.status == "imported" and outcome.sent == 60
    (warning,) = outcome.warnings
    assert "CSR_SM5 is declared in m3 m-3, but its values are percent" in warning
    assert "data.csv.gz" in warning
    first = central.query("SELECT soil_moisture_pct FROM observations ORDER BY begin_utc")[0]
    assert first["soil_moisture_pct"] == pytest.approx(11.5553)  # 0.115553 m3 m-3, not 1155 %
    detail = central.query("SELECT detail FROM ingest_log")[0]["detail"]
    assert "warning:" in detail and "percent" in detail


def test_cosore_soil_moisture_over_one_is_refused(central, reference_data, tmp_path):
    def wet(i, line):
        return _cells(line, sm="28.5") if i in (7, 9) else line

    report = _import_cosore(central, _cosore(reference_data, tmp_path, wet))
    outcome = report.files[0]
    assert outcome.status == "rejected"
    reason = outcome.reasons[0]
    assert "2 observation(s) refused" in reason and "soil_moisture_pct" in reason
    assert "data.csv.gz, line 7 (2850.0)" in reason and "data.csv.gz, line 9" in reason
    assert _count(central, "observations") == 0


def test_cosore_temperature_code_is_withheld(central, reference_data, tmp_path):
    def code(i, line):
        return _cells(line, t="-9999") if i == 5 else line

    outcome = _import_cosore(central, _cosore(reference_data, tmp_path, code)).files[0]
    assert outcome.status == "imported" and outcome.sent == 60
    (warning,) = outcome.warnings
    assert "soil_temperature_degc" in warning and "line 5 (-9999.0)" in warning
    assert "1 observation(s) stored as missing" in warning
    temps = [r["t"] for r in central.query("SELECT soil_temperature_degc AS t FROM observations")]
    assert sum(t is None for t in temps) == 1 and min(t for t in temps if t is not None) > -60


@pytest.mark.parametrize("bad", ["inf", "nan", "-inf", "1e999"])
def test_cosore_flux_not_finite_is_refused(central, reference_data, tmp_path, bad):
    def edit(i, line):
        return _cells(line, flux=bad) if i == 12 else line

    outcome = _import_cosore(central, _cosore(reference_data, tmp_path, edit)).files[0]
    assert outcome.status == "rejected"
    assert "flux must be finite" in outcome.reasons[0] and "line 12, co2" in outcome.reasons[0]
    assert _count(central, "fluxes") == 0


def test_cosore_negative_measurement_length_and_area(central, reference_data, tmp_path):
    length = _cosore(
        reference_data,
        tmp_path / "length",
        description=lambda t: t.replace("CSR_MSMT_LENGTH: 360", "CSR_MSMT_LENGTH: -360"),
    )
    outcome = _import_cosore(central, length).files[0]
    assert (
        outcome.status == "rejected"
        and "observation_s must be finite and > 0 s" in (outcome.reasons[0])
    )
    area = _cosore(
        reference_data,
        tmp_path / "area",
        ports=lambda t: t.replace("None,\t\t\t320,", "None,\t\t\t-320,"),
    )
    outcome = _import_cosore(central, area).files[0]
    assert outcome.status == "rejected"
    assert "PORTS.txt, line 15 (-320.0)" in outcome.reasons[0]
    assert "area_cm2 must be finite and > 0 cm2" in outcome.reasons[0]
    assert _count(central, "observations") == 0


def test_cosore_years_outside_the_plausible_range(central, reference_data, tmp_path):
    def edit(i, line):
        return line.replace("2012-09-28", "1912-09-28") if i == 3 else line

    outcome = _import_cosore(central, _cosore(reference_data, tmp_path, edit)).files[0]
    assert outcome.status == "rejected"
    assert "started_at must be in the years 1980 .. next year" in outcome.reasons[0]


MANUAL = (
    "chamber,start_time,elapsed_s,co2_umol_mol,air_temperature_degc,pressure_kpa,area_cm2,"
    "volume_cm3\n"
    "M1,2026-07-01T10:02:00+08:00,0,421.3,24.1,88.9,490.9,9817\n"
    "M1,2026-07-01T10:02:00+08:00,300,438.9,24.3,88.9,490.9,9817\n"
)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("88.9", "1013.2"), "pressure_kpa within 50 .. 110 kPa"),
        (lambda t: t.replace("2026-07-01", "1979-07-01"), "started_at must be in the years"),
        (lambda t: t.replace(",300,", ",inf,"), "elapsed_s must be finite"),
        (lambda t: t.replace("9817", "-9817"), "volume_cm3 must be finite and > 0 cm3"),
    ],
)
def test_manual_refusals(central, tmp_path, edit, message):
    path = tmp_path / "manual.csv"
    path.write_text(edit(MANUAL))
    outcome = import_paths(central, [path], site_id="M", system_id="m", fmt="manual-csv").files[0]
    assert outcome.status == "rejected" and message in outcome.reasons[0]
    assert str(path) in outcome.reasons[0]
    assert _count(central, "observations") == 0


def test_manual_withheld_values_are_listed(central, tmp_path):
    path = tmp_path / "manual.csv"
    path.write_text(MANUAL.replace("438.9,24.3", "nan,24.3"))
    outcome = import_paths(central, [path], site_id="M", system_id="m", fmt="manual-csv").files[0]
    assert outcome.status == "imported"
    (warning,) = outcome.warnings
    assert "co2_umol_mol must be finite" in warning and "line 2, sample 2" in warning
    co2 = [r["c"] for r in central.query("SELECT co2_umol_mol AS c FROM samples ORDER BY seq")]
    assert co2 == [421.3, None]


def test_the_year_limit_follows_the_injected_clock(central, tmp_path):
    from chamberd.controller.clock import FakeClock

    path = tmp_path / "manual.csv"
    path.write_text(MANUAL)
    clock = FakeClock(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    outcome = import_paths(
        central, [path], site_id="M", system_id="m", fmt="manual-csv", clock=clock
    ).files[0]
    assert outcome.status == "rejected" and "1980 .. next year" in outcome.reasons[0]
