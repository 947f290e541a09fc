"""The fit and refit reports in a real browser (headless Chromium, ``tests/browser.py``):
they open from a file:// path, every figure loads, nothing outside the file is requested,
no error is logged, the links navigate, and a screenshot shows something."""

from __future__ import annotations

from browser import non_white_fraction, save_artifact

from chamberd.controller.cli import main

#: Figure size of a page [px] (6.4 x 3.6 in at 90 dpi).
FIGURE = (576, 324)


def _check_page(page, *, sections: int, name: str) -> None:
    assert page.count("section.obs") == sections
    images = page.images()
    assert len(images) == sections
    for image in images:
        assert image["error"] is None and image["complete"], image
        assert (image["naturalWidth"], image["naturalHeight"]) == FIGURE
        assert image["scheme"] == "data"
    shot = page.screenshot()
    save_artifact(f"{name}.png", shot)
    assert non_white_fraction(shot) > 0.02  # text and tables, not a blank page
    figure = page.screenshot(selector="section.obs img")
    save_artifact(f"{name}-figure.png", figure)
    assert non_white_fraction(figure) > 0.2  # the plot itself: axes, window, points
    # the first link of the "disagree most" table leads to that observation's page
    target = page.evaluate(
        """(() => { const a = document.querySelector('#disagree + table a');
                    a.click(); return a.getAttribute('href'); })()"""
    )
    assert page.evaluate("location.hash") == target
    top = page.evaluate(f"document.querySelector({target!r}).getBoundingClientRect().top")
    assert -2 <= top <= 60  # at the top of the window, below the sticky navigation bar
    assert {url.split(":")[0] for url in page.requests()} <= {"file", "data"}
    assert page.errors() == []


def test_fit_report_of_180_observations_renders(browser, reference_data, tmp_path):
    html = tmp_path / "fits.html"
    argv = ["fit", "-q", str(reference_data / "li8100a"), "-o", str(tmp_path / "f.csv")]
    assert main([*argv, "--report", str(html)]) == 3  # 7 truncated observations refused
    page = browser.open(html)
    try:
        _check_page(page, sections=180, name="fit-report")
        text = page.text()
        assert "Where we and the instrument disagree most" in text
        assert "180 observation(s) fitted" in text
    finally:
        page.close()


def test_refit_report_renders(browser, reference_data, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'central.db'}"
    assert main(["central", "init", url]) == 0
    argv = ["import", "--target", url, "--site", "S", "--system", "survey", "--format"]
    assert main([*argv, "li8100a", "--time-zone", "UTC", str(reference_data / "li8100a")]) == 0
    html = tmp_path / "refit.html"
    argv = ["refit", "--target", url, "--method", "linear", "--report", str(html)]
    assert main([*argv, "--report-pages", "15"]) == 0
    page = browser.open(html)
    try:
        _check_page(page, sections=15, name="refit-report")
        assert "Where we and the system disagree most" in page.text()
    finally:
        page.close()
