"""The comparison report (``render_report``): built from the Comparison alone, every figure
line is a number of its tables, self-contained, no password; and in a real browser."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import math
import re
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
from browser import non_white_fraction, save_artifact
from comparedata import add_system, flux_row, observation, store, utc
from PIL import Image

from chamberd.network_sync.central import Central
from chamberd.network_sync.compare import report as report_module
from chamberd.network_sync.compare import temporal
from chamberd.network_sync.compare.comparison import compare
from chamberd.network_sync.compare.report import STATISTICS, render_report
from chamberd.network_sync.compare.temporal import lloyd_taylor, q10_model
from chamberd.network_sync.html_report import fmt

T0 = utc("2026-07-01T00:00:00Z")
#: the survey chamber reads this fraction low (Pumpanen et al. 2004: -13 %)
SURVEY_BIAS = -0.13


def _campaign(url: str, *, days: int, sparse: bool, seed: int = 3) -> None:
    """Two collars of an automated system (half-hourly, with a central refit and raw
    samples) and a survey chamber reading 13 % low: beside them every half hour, or
    (``sparse``) every three hours in daytime only."""
    rng = np.random.default_rng(seed)
    sample = ((0, None, 0.0, "observing", 400.0, None, None, None, None, None),)
    with Central.connect(url, mode="create") as c:
        c.migrate()
        add_system(c, "XLG", "auto", time_zone="Asia/Shanghai", chambers=["C1", "C2"])
        add_system(c, "XLG", "survey", time_zone="Asia/Shanghai", chambers=["S1"])
        auto, survey = [], []
        for k in range(days * 48):
            begin = T0 + dt.timedelta(minutes=30 * k)
            hour = (begin.hour + 8 + begin.minute / 60) % 24
            temperature = 14 + 5 * math.sin(2 * math.pi * (hour - 9) / 24)
            truth = 2.0 * 2.2 ** ((temperature - 10) / 10)
            for i, chamber in enumerate(("C1", "C2")):
                flux = truth * (1 + 0.04 * i) + rng.normal(0, 0.12)
                auto.append(
                    observation(
                        chamber,
                        begin + dt.timedelta(seconds=150 * i),
                        flux,
                        flux_se=0.05,
                        temperature=temperature,
                        moisture=20.0,
                        fluxes=[flux_row("co2", flux * 1.02, "central-exponential-db20s")],
                        samples=sample,
                    )
                )
            if sparse and not (k % 6 == 0 and 8 <= hour < 17):
                continue
            flux = truth * (1 + SURVEY_BIAS) + rng.normal(0, 0.15)
            survey.append(
                observation(
                    "S1",
                    begin + dt.timedelta(minutes=4),
                    flux,
                    flux_se=0.08,
                    temperature=temperature + 0.3,
                    moisture=22.0,
                    fluxes=[flux_row("co2", flux * 1.01, "central-exponential-db20s")],
                    samples=sample,
                )
            )
        store(c, "XLG", "auto", auto)
        store(c, "XLG", "survey", survey)


@pytest.fixture(scope="module")
def dense_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('dense') / 'c.db'}"
    _campaign(url, days=6, sparse=False)
    return url


@pytest.fixture(scope="module")
def dense(dense_url):
    with Central.connect(dense_url, mode="read") as c:
        return compare(c, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, by=("hour", "flux"))


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('sparse') / 'c.db'}"
    _campaign(url, days=14, sparse=True)
    with Central.connect(url, mode="read") as c:
        return compare(c, "XLG/auto/C1", "XLG/survey/S1", n_boot=100, tolerance_s=900)


class _Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in a:
            assert a["id"] not in self.ids, a["id"]
            self.ids.add(a["id"])
        if tag == "a":
            self.hrefs.append(a.get("href", ""))
        if tag == "img":
            self.images.append(a)


def _self_contained(text: str) -> _Page:
    page = _Page(text)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//|file:)""", text)
    for href in page.hrefs:
        assert href.startswith("#") and href[1:] in page.ids, href
    for image in page.images:
        data = image["src"].removeprefix("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(data))) as png:
            assert png.size == (int(image["width"]), int(image["height"]))
        assert image["alt"]
    return page


CURVES = ("a Q10", "a Lloyd-Taylor", "b Q10", "b Lloyd-Taylor")
SECTIONS = {
    "summary",
    "statistics",
    "scatter",
    "bland-altman",
    "series",
    "diel",
    "temperature",
    "sums",
    "sampling",
    "pairing",
    "baseline",
    "processing",
    "breakdowns",
    "provenance",
}


def test_report_has_every_section_and_figure(dense, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # drawing the report warns of nothing
        path = render_report(dense, tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    page = _self_contained(text)
    assert page.ids >= SECTIONS
    # scatter, Bland-Altman (differences, log ratios), series, diel, temperature, sums, dt
    assert len(page.images) == 8
    assert "XLG/survey/S1 against XLG/auto/C1" in text
    # the pieces of the result, each in its table
    assert "each side&#x27;s own processing, and both sides refitted centrally" in text
    assert "central-exponential-db20s" in text
    assert "XLG/auto, 1 collar pair(s)" in text  # the floor beside the headline
    assert "<h3>by hour</h3>" in text and "<h3>by flux</h3>" in text
    assert "Not emulated" in text  # both sides half-hourly: no sparse-sampling emulation
    assert "FROM observations o JOIN fluxes f" in text  # the queries, in the provenance


def test_statistics_table_shows_every_estimate_of_the_result(dense, tmp_path):
    text = render_report(dense, tmp_path / "r.html").read_text(encoding="utf-8")
    flat = dense.agreement.as_dict()
    block = text[text.index("<h2>Statistics</h2>") : text.index("id='scatter'")]
    shown = 0
    for label, key, _analytic, kind in STATISTICS:
        if key not in flat:
            continue
        value = flat[key]
        cell = report_module.pct(value) if kind == "pct" else fmt(value)  # what the table shows
        row = re.search(rf"<td>{re.escape(report_module.esc(label))}</td><td class='num'>"
                        rf"([^<]*)</td><td class='num'>([^<]*)</td>", block)  # fmt: skip
        assert row is not None, label
        assert row.group(1) == cell, (label, row.group(1), cell)
        assert row.group(2) == report_module._ci_text(flat.get(f"{key}_ci"), kind), label
        shown += 1
    assert shown >= 25
    # the injected -13 % is recovered within the reported CI (13.x % low)
    low, high = flat["relative_bias_ci"]
    assert low < SURVEY_BIAS + 0.02 and high > SURVEY_BIAS - 0.02


@pytest.fixture
def figures(monkeypatch):
    """Every matplotlib figure the report draws, in order."""
    drawn = []
    real = report_module.figure_png

    def keep(figure):
        drawn.append(figure)
        return real(figure)

    monkeypatch.setattr(report_module, "figure_png", keep)
    return drawn


def _lines(figure):
    return [line for axis in figure.axes for line in axis.get_lines()]


def test_figures_draw_the_numbers_of_the_tables(dense, tmp_path, figures):
    """A figure never computes a statistic the tables do not show: its lines are the
    result's slopes, intercepts, means, limits and fitted responses."""
    render_report(dense, tmp_path / "r.html")
    flat = dense.agreement.as_dict()
    scatter, ba, log_ba, _series, _diel, temperature, sums, _dt = figures
    by_label = {line.get_label(): line for line in _lines(scatter)}
    for name, key in (("Deming", "deming"), ("SMA", "sma")):
        line = next(v for k, v in by_label.items() if k.startswith(name))
        x, y = line.get_xdata(), line.get_ydata()
        assert np.allclose(y, flat[f"{key}_intercept"] + flat[f"{key}_slope"] * np.asarray(x))
    one = by_label["1:1"]
    assert np.allclose(one.get_xdata(), one.get_ydata())

    def levels(figure):
        """The y of every horizontal solid line, in order."""
        out = []
        for line in _lines(figure):
            y = np.asarray(line.get_ydata(), dtype=float)
            if line.get_linestyle() == "-" and len(y) and np.all(y == y[0]):
                out.append(float(y[0]))
        return sorted(out)

    assert levels(ba) == pytest.approx(
        sorted([0.0, flat["bias"], flat["loa_lower"], flat["loa_upper"]])
    )
    assert levels(log_ba) == pytest.approx(
        sorted(
            [0.0, flat["log_ratio_mean"], flat["log_ratio_loa_lower"], flat["log_ratio_loa_upper"]]
        )
    )
    curves = [line for line in _lines(temperature) if line.get_label() in CURVES]
    assert len(curves) == 4
    for line in curves:
        side = dense.temporal_a if line.get_label().startswith("a") else dense.temporal_b
        t = np.asarray(line.get_xdata(), dtype=float)
        if line.get_label().endswith("Q10"):
            expected = q10_model(t, side.q10.r10, side.q10.q10)
            assert t.min() == side.q10.temperature_min_degc
        else:
            expected = lloyd_taylor(t, side.lloyd_taylor.r10, side.lloyd_taylor.e0_k)
        assert np.allclose(line.get_ydata(), expected)
    # the cumulative sums end at the period sums of the table
    for line, side in zip(_lines(sums), (dense.temporal_a, dense.temporal_b), strict=True):
        assert line.get_ydata()[-1] == pytest.approx(side.period["sum_g_c_m2"].iloc[0], rel=1e-9)


def test_sparse_sampling_is_reported(sparse, tmp_path):
    assert sparse.sampling is not None  # the survey samples every 3 h in daytime only
    emulation = sparse.sampling
    if emulation.result is None:
        # the emulation the comparison could not make: its note is the section
        text = render_report(sparse, tmp_path / "note.html").read_text(encoding="utf-8")
        assert report_module.esc(emulation.note) in text
        # then the section with a result, made here as compare() means to
        result = temporal.emulate_sampling(
            sparse.temporal_a.filled,
            sparse.b.frame["time_utc"],
            gas="co2",
            sample_flux=sparse.b.frame["flux"].to_numpy(),
            n_boot=50,
            rng=np.random.default_rng(1),
        )
        emulation = dataclasses.replace(emulation, result=result, note="emulated")
    text = render_report(
        dataclasses.replace(sparse, sampling=emulation), tmp_path / "r.html"
    ).read_text(encoding="utf-8")
    _self_contained(text)
    block = text[text.index("id='sampling'") : text.index("id='pairing'")]
    r = emulation.result
    assert "sparse-sampling bias" in block and fmt(r.bias) in block
    assert report_module._ci_text(r.bias_ci) in block
    assert "method bias (relative)" in block and report_module.pct(r.method_relative_bias) in block


def test_no_password_and_text_is_escaped(dense, tmp_path):
    hostile = dataclasses.replace(
        dense,
        provenance=dataclasses.replace(
            dense.provenance, database="postgresql://alice:s3cr3t@db/c?password=hunter2"
        ),
        a=dataclasses.replace(dense.a, instrument="<script>alert(1)</script>"),
    )
    text = render_report(hostile, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "s3cr3t" not in text and "hunter2" not in text
    assert "postgresql://alice:***@db/c?password=***" in text
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_comparison_without_its_optional_parts(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _campaign(url, days=2, sparse=False)
    with Central.connect(url, mode="read") as c:
        bare = compare(
            c, "XLG/auto/C1", "XLG/survey/S1", n_boot=0, baseline=False, temperature=False
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = render_report(bare, tmp_path / "r.html").read_text(encoding="utf-8")
    page = _self_contained(text)
    assert page.ids >= SECTIONS
    assert "no bootstrap (n_boot = 0): no intervals" in text
    assert "not asked for" in text and "None asked for" in text
    # scatter, two Bland-Altman, series, the fluxes against temperature (no fitted curves),
    # the dt histogram; no diel cycle and no sums
    assert len(page.images) == 6
    assert "Q10 (ln F" not in text and "Period sums" not in text


def test_chamberd_compare_writes_the_report(dense_url, tmp_path, capsys):
    from chamberd.controller.cli import main

    path = tmp_path / "report.html"
    argv = ["compare", "--target", dense_url, "--a", "XLG/auto/C1", "--b", "XLG/survey/S1"]
    assert main([*argv, "--boot", "50", "--by", "month", "-q", "-o", str(path)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    text = path.read_text(encoding="utf-8")
    page = _self_contained(text)
    assert page.ids >= SECTIONS and len(page.images) == 8
    assert "<h3>by month</h3>" in text and "50 resamples" in text


# --- in a real browser ------------------------------------------------------------------------


def test_report_renders_in_chromium(browser, dense, sparse, tmp_path):
    for name, comparison in (("compare-dense", dense), ("compare-sparse", sparse)):
        path = render_report(comparison, tmp_path / f"{name}.html")
        page = browser.open(path)
        try:
            images = page.images()
            assert len(images) == page.count("img") >= 7
            for image in images:
                assert image["error"] is None and image["complete"], image
                assert image["naturalWidth"] > 100 and image["naturalHeight"] > 100
            assert page.count("section") == len(SECTIONS)
            shot = page.screenshot()
            save_artifact(f"{name}.png", shot)
            assert non_white_fraction(shot) > 0.02
            scatter = page.screenshot(selector="#scatter img")
            save_artifact(f"{name}-scatter.png", scatter)
            assert non_white_fraction(scatter) > 0.05
            page.evaluate("document.querySelector(\"nav a[href='#provenance']\").click()")
            assert page.evaluate("location.hash") == "#provenance"
            assert "Provenance" in page.text()
            assert {url.split(":")[0] for url in page.requests()} <= {"file", "data"}
            assert page.errors() == []
        finally:
            page.close()


def test_values_that_cannot_be_drawn_are_left_out(dense, tmp_path):
    """Absurd values anywhere in the result (a logger's 1e308, infinities, NaN) give a
    report without an exception or a warning: they are not drawn."""
    from chamberd.network_sync.compare.pairing import Pairing

    pairs = dense.pairing.pairs.copy()
    pairs.loc[pairs.index[:3], "flux_a"] = [1e308, np.inf, np.nan]
    pairs.loc[pairs.index[3:5], "flux_b"] = [-1e308, -np.inf]
    pairs.loc[pairs.index[:2], "dt_s"] = [np.nan, 1e300]
    frame = dense.a.frame.copy()
    frame.loc[frame.index[:2], "flux"] = [1e308, np.inf]
    frame.loc[frame.index[2:4], "soil_temperature_degc"] = [np.inf, -1e308]
    diel = dense.temporal_a.diel.copy()
    diel.loc[diel.index[:2], "flux_mean"] = [np.inf, 1e308]
    hostile = dataclasses.replace(
        dense,
        pairing=Pairing(pairs, dense.pairing.diagnostics),
        a=dataclasses.replace(dense.a, frame=frame),
        temporal_a=dataclasses.replace(dense.temporal_a, diel=diel),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = render_report(hostile, tmp_path / "r.html").read_text(encoding="utf-8")
    assert len(_self_contained(text).images) == 8
