"""Per-observation diagnostics of refits (``chamberd fit/refit --report``): content, ranking,
page cap, both backends, bad paths. The same reports in a real browser:
test_fit_report_browser.py."""

from __future__ import annotations

import csv
import io
import math
import re
import sqlite3
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from chamberd.controller.cli import main
from chamberd.controller.errors import StorageError
from chamberd.controller.output import write_text
from chamberd.network_sync.central import redact
from chamberd.network_sync.fit_report import (
    FitReport,
    ObservationDiagnostics,
    Side,
    disagreement,
)


class _Report(HTMLParser):
    """What a test needs of a report: ids, links, images, sections, outside references."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str]] = []
        self.sections: list[str] = []
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag == "a":
            self.hrefs.append(a.get("href", ""))
        if tag == "img":
            self.images.append(a)
        if tag == "section" and "obs" in a.get("class", "").split():
            self.sections.append(a["id"])


def _png(src: str) -> Image.Image:
    import base64

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))


def _check_self_contained(parsed: _Report, text: str) -> None:
    """No script, stylesheet link, frame or outside reference; every link an anchor that
    exists; every image an embedded PNG of its declared size."""
    assert not parsed.tags & {"script", "link", "iframe", "object", "embed"}
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//|file:)""", text)
    for href in parsed.hrefs:
        assert href.startswith("#") and href[1:] in parsed.ids, href
    for image in parsed.images:
        png = _png(image["src"])
        assert png.format == "PNG"
        assert png.size == (int(image["width"]), int(image["height"]))
        assert image["alt"] and image["loading"] == "lazy"


def test_fit_report_of_the_bundled_file(salt_81x, tmp_path, capsys):
    out, html = tmp_path / "f.csv", tmp_path / "fits.html"
    assert main(["fit", str(salt_81x), "-o", str(out), "--report", str(html)]) == 3
    err = capsys.readouterr().err
    assert f"report of 7 observations written to {html}" in err and "Traceback" not in err
    text = html.read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert parsed.sections == [f"o{i}" for i in range(1, 8)]
    assert len(parsed.images) == 7
    assert {_png(i["src"]).size for i in parsed.images} == {(576, 324)}
    assert {"summary", "index"} <= parsed.ids
    # the summary: provenance, agreement, the refused observation with its reason
    assert "SALT_20181005_LT.81x" in text and "chamberd</dt>" in text
    assert "7 observation(s) fitted, 7 with the instrument's own results; 1 refused" in text
    assert re.search(r"<li>[^<]*observation 2, line \d+: truncated", text)
    assert "linear flux vs instrument: 7 observations" in text
    # observation 1's page: our values beside the instrument's (footer: Exp_Flux 0.68)
    first = text[text.index("id='o1'") : text.index("id='o2'")]
    assert "SALT_20181005_LT.81x · observation 1 · port 1" in first
    assert "instrument (LI-8100A)" in first and "0.68 (exponential)" in first
    assert "fit window</td><td>25 to 120 s" in first


def _score(row: dict[str, str]) -> float:
    number = lambda k: float(row[k]) if row[k] not in ("", "inf") else math.nan  # noqa: E731
    return abs(
        disagreement(number("flux"), number("ref_flux") if row["ref_flux"] else None, number("mdf"))
    )


def test_pages_are_the_observations_that_disagree_most(reference_data, tmp_path):
    out, html = tmp_path / "f.csv", tmp_path / "fits.html"
    argv = ["fit", "-q", str(reference_data / "li8100a"), "-o", str(out)]
    assert main([*argv, "--report", str(html), "--report-pages", "25"]) == 3
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 180
    text = html.read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert "25 have a page below" in text and "155 are counted here without a page" in text
    # the kept pages: the 25 largest |difference| (NaN last, earlier first on ties)
    scores = [_score(r) for r in rows]
    order = sorted(range(180), key=lambda i: (-(scores[i] if math.isfinite(scores[i]) else -1), i))
    assert parsed.sections == [f"o{i + 1}" for i in sorted(order[:25])]
    # the summary's table: largest first, each linked to its page
    top = text[text.index("id='disagree'") : text.index("id='index'")]
    shown = [
        float(x)
        for x in re.findall(
            r"<td class='num'>(-?[\d.e+]+) %</td><td class='num'>"
            r"-?[\d.e+–]+(?: %)?</td><td class='num'>",
            top,
        )
    ]
    assert len(shown) == 25
    assert [abs(x) for x in shown] == sorted((abs(x) for x in shown), reverse=True)
    assert abs(shown[0]) == pytest.approx(100 * scores[order[0]], rel=1e-2)
    # every observation still counts in the statistics
    assert "180 observation(s) fitted, 178 with the instrument" in text


def _diag(flux: float, ref: float | None, flags: tuple[str, ...] = ()) -> ObservationDiagnostics:
    t = np.arange(-5.0, 60.0)
    return ObservationDiagnostics(
        title=f"synthetic {flux} vs {ref}",
        gas="co2",
        flux_unit="umol m-2 s-1",
        elapsed_s=t,
        mole_fraction=400 + 0.1 * t,
        in_window=t >= 10,
        dead_band_s=10.0,
        end_s=59.0,
        ours=Side("chamberd", flux, "linear", lin_flux=flux, flags=flags),
        reference=None if ref is None else Side("instrument", ref, "linear", lin_flux=ref),
        mdf=0.05,
    )


def test_page_cap_keeps_the_largest_differences_then_flags(tmp_path):
    report = FitReport(tmp_path / "r.html", title="t", max_pages=3)
    warnings.simplefilter("error")  # drawing warns of nothing (pytest restores the filters)
    for d in [
        _diag(1.0, 1.0),  # o1: 0
        _diag(1.5, 1.0),  # o2: 50 %
        _diag(1.0, None, ("low_r2", "few_points")),  # o3: no instrument, two flags
        _diag(0.9, 1.0),  # o4: 10 %
        _diag(0.02, 0.01),  # o5: near zero: 0.01 / MDF 0.05 = 20 %, not 100 %
        _diag(1.0, None),  # o6: nothing
    ]:
        report.add(d)
    report.write()
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert parsed.sections == ["o2", "o4", "o5"]
    assert "6 observation(s) fitted, 4 with the instrument" in text
    assert "3 are counted here without a page" in text
    assert "low_r2" in text  # counted in the flags table although it has no page
    with pytest.raises(ValueError, match="max_pages"):
        FitReport(tmp_path / "x.html", title="t", max_pages=0)


def test_a_report_where_nothing_could_be_fitted_or_compared(tmp_path):
    report = FitReport(tmp_path / "r.html", title="empty")
    report.refuse("a.81x: truncated")
    assert report.write() == tmp_path / "r.html"
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "0 observation(s) fitted" in text and "a.81x: truncated" in text
    assert "No observation has the instrument" in text


def test_report_paths_are_checked_before_any_work(salt_81x, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "r.html"
    assert main(["fit", "-q", str(salt_81x), "--report", str(missing)]) == 2
    assert "--report" in capsys.readouterr().err
    assert main(["fit", "-q", str(salt_81x), "--report", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["fit", "-q", str(salt_81x), "--report", "-"]) == 2
    assert "an HTML report is written to a file" in capsys.readouterr().err
    assert main(["fit", "-q", str(salt_81x), "-o", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert main(["fit", "-q", str(salt_81x), "--report-pages", "0", "--report", "r.html"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_a_storage_error(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(StorageError, match=f"cannot write {folder}"):
        write_text(str(folder), "x")


def test_redact_hides_passwords_in_the_query_too():
    assert redact("postgresql://u@db/c?sslmode=require&password=s3cret") == (
        "postgresql://u@db/c?sslmode=require&password=***"
    )
    assert redact("postgresql://u:pw@db/c?PASSWORD=x") == "postgresql://u:***@db/c?PASSWORD=***"
    assert redact("postgresql://u@db/c?passfile=/x") == "postgresql://u@db/c?passfile=/x"


@pytest.fixture
def imported(central_url, reference_data):
    assert main(["central", "init", central_url]) == 0
    argv = ["import", "--target", central_url, "--site", "S", "--system", "survey"]
    assert (
        main([*argv, "--format", "li8100a", "--time-zone", "UTC", str(reference_data / "li8100a")])
        == 0
    )
    return central_url


def test_refit_report_on_both_backends(imported, tmp_path, capsys):
    html = tmp_path / "refit.html"
    argv = ["refit", "--target", imported, "--method", "exponential"]
    assert main([*argv, "--report", str(html), "--report-pages", "12"]) == 0
    captured = capsys.readouterr()
    assert f"report of 180 observations written to {html}" in captured.err
    text = html.read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert len(parsed.sections) == len(parsed.images) == 12
    assert "180 observation(s) fitted, 178 with the system's own results" in text
    assert "central-exponential-dbstored" in text and redact(imported) in text
    page = text[text.index(f"id='{parsed.sections[0]}'") :]
    page = page[: page.index("</section>")]
    assert "<th>central-exponential-dbstored</th><th>instrument</th>" in page
    assert re.search(r"S/survey/port\d+ · 2018-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
    assert "observation uuid" in page


def test_refit_report_of_a_chamberd_site_with_an_unfittable_trace(
    measured_site, site_copy, tmp_path, capsys
):
    config, _db = site_copy(measured_site, tmp_path)
    url = f"sqlite:///{tmp_path / 'central.db'}"
    assert main(["central", "init", url]) == 0
    assert main(["sync", str(config), "--target", url]) == 0
    with sqlite3.connect(tmp_path / "central.db") as con:
        (uuid,) = con.execute("SELECT uuid FROM observations ORDER BY begin_utc LIMIT 1").fetchone()
        con.execute("UPDATE observations SET area_cm2 = NULL WHERE uuid = ?", (uuid,))
    capsys.readouterr()
    html = tmp_path / "r.html"
    assert main(["refit", "--target", url, "--method", "linear", "--report", str(html)]) == 0
    assert "(1 without geometry or a fit)" in capsys.readouterr().out
    text = html.read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert len(parsed.sections) == 4
    assert text.count("<th>site-1</th>") == 4  # the site's own processing beside ours
    broken = text[text.index(uuid) - 3000 :]
    assert "not fitted: " in text and "not_fitted" in broken
    assert "4 observation(s) fitted, 4 with the system's own results" in text
    assert "1 observation(s) could not be fitted" in text


def test_docstring_examples():
    import doctest

    from chamberd.network_sync import central_refit, fit_report

    for module in (fit_report, central_refit):
        assert doctest.testmod(module).failed == 0


def test_any_trace_and_values_render_without_warnings(tmp_path):
    """Seeded property test: traces and values a report may meet in stored data (NaN,
    infinities, 1e308, empty or constant traces, no window, missing values) give a page,
    never an exception or a floating-point or matplotlib warning."""
    rng = np.random.default_rng(20261201)
    specials = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 5e-324]
    report = FitReport(tmp_path / "fuzz.html", title="fuzz", max_pages=60)
    warnings.simplefilter("error")
    for _ in range(60):
        n = int(rng.choice([0, 1, 2, 5, 120]))
        t = np.sort(rng.uniform(-20, 200, n))
        y = 400 + rng.normal(0, 5, n) * rng.choice([0.0, 1.0, 1e6])
        for array in (t, y):
            if n and rng.random() < 0.5:
                array[rng.integers(0, n, max(1, n // 10))] = rng.choice(specials)
        value = lambda: None if rng.random() < 0.2 else float(rng.choice([*specials, 1.5]))  # noqa: E731
        band = float(rng.choice([10.0, math.nan, -5.0, 1e9]))
        side = Side(
            "chamberd",
            value(),
            rng.choice(["linear", "exponential", None]),
            lin_flux=value(),
            lin_r2=value(),
            exp_flux=value(),
            exp_r2=value(),
            flags=tuple(rng.choice(["low_r2", "made_up_flag", "exp_failed"], 2)),
        )
        ref = None if rng.random() < 0.3 else Side("instrument", value(), "linear", value())
        report.add(
            ObservationDiagnostics(
                title="<fuzz> & 'quotes'",
                gas=str(rng.choice(["co2", "ch4", "n2o", "xx"])),
                flux_unit="umol m-2 s-1",
                elapsed_s=t,
                mole_fraction=y,
                in_window=(t >= band) if n else np.zeros(0, dtype=bool),
                dead_band_s=band,
                end_s=float(rng.choice([120.0, math.nan, math.inf])),
                ours=side,
                reference=ref,
                mdf=float(rng.choice([0.05, math.nan, 0.0])),
            )
        )
    text = report.write().read_text(encoding="utf-8")
    parsed = _Report(text)
    _check_self_contained(parsed, text)
    assert len(parsed.sections) == 60 and "<fuzz>" not in text
