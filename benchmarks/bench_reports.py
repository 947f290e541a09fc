"""Benchmark of the HTML reports: their size, the time to write them, the time to open them.

``fit``
    ``chamberd fit --report`` on the LI-8100A files of the reference data (180
    observations; ``CHAMBERD_SHARED_DATA`` or ../shared/data), and on the same folder given
    ``--copies`` times (about 1,000 observations, the default page cap): the refit alone,
    the refit with the report, and the report's size.
``compare``
    ``render_report`` of a comparison of ``--pairs`` half-hourly pairs (two collars of an
    automated system and a survey chamber 13 % low, synthetic, in a temporary SQLite
    central database; ``compare`` with ``--boot`` resamples first, timed apart).
``browser``
    Where Chromium is installed: each report opened from its file:// path in headless
    Chromium (``tests/browser.py``): until the load event, and until every figure is
    decoded (each scrolled into view).

    python benchmarks/bench_reports.py
    python benchmarks/bench_reports.py --pairs 10000 --copies 6 --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import state

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _shared_data() -> Path:
    explicit = os.environ.get("CHAMBERD_SHARED_DATA")
    for candidate in ([Path(explicit)] if explicit else []) + [
        ROOT.parent / "shared" / "data",
        ROOT.parent.parent / "shared" / "data",
        Path("/work/shared/data"),
    ]:
        if (candidate / "li8100a").is_dir():
            return candidate
    raise SystemExit("reference data not found: set CHAMBERD_SHARED_DATA")


def bench_fit(folder: Path, copies: int, out: Path) -> dict[str, Any]:
    from chamberd.network_sync.fit_report import FitReport, from_file_fit
    from chamberd.network_sync.refit import refit_paths

    result = {}
    for n_copies in (1, copies):
        paths = [folder] * n_copies
        started = time.perf_counter()
        plain = refit_paths(paths)
        fitted = time.perf_counter() - started
        report = FitReport(out / f"fit-{n_copies}.html", title="bench")
        started = time.perf_counter()
        rows = refit_paths(paths, observe=_adder(report, from_file_fit))
        report.write()
        total = time.perf_counter() - started
        pages = min(report.observations, report.max_pages)
        result[f"x{n_copies}"] = {
            "observations": len(rows.rows),
            "pages": pages,
            "fit_s": round(fitted, 2),
            "fit_and_report_s": round(total, 2),
            "report_s_per_page": round((total - fitted) / pages, 4),
            "size_mb": round(report.path.stat().st_size / 1e6, 2),
            "path": str(report.path),
        }
        assert len(plain.rows) == len(rows.rows)
    return result


def _adder(report: Any, build: Any) -> Any:
    return lambda obs, closure, fit, row: report.add(build(obs, closure, fit, row))


def _campaign(url: str, pairs: int, seed: int = 7) -> None:
    from comparedata import add_system, flux_row, observation, store, utc

    from chamberd.network_sync.central import Central

    rng = np.random.default_rng(seed)
    t0 = utc("2026-01-01T00:00:00Z")
    with Central.connect(url, mode="create") as central:
        central.migrate()
        add_system(central, "XLG", "auto", time_zone="Asia/Shanghai", chambers=["C1", "C2"])
        add_system(central, "XLG", "survey", time_zone="Asia/Shanghai", chambers=["S1"])
        auto, survey = [], []
        for k in range(pairs):
            begin = t0 + dt.timedelta(minutes=30 * k)
            day = k / 48.0
            hour = (begin.hour + 8 + begin.minute / 60) % 24
            season = 8 * math.sin(2 * math.pi * (day - 100) / 365)
            temperature = 12 + season + 5 * math.sin(2 * math.pi * (hour - 9) / 24)
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
                    )
                )
            flux = 0.87 * truth + rng.normal(0, 0.15)
            survey.append(
                observation(
                    "S1",
                    begin + dt.timedelta(minutes=4),
                    flux,
                    flux_se=0.08,
                    temperature=temperature + 0.3,
                    moisture=22.0,
                    version="manual",
                )
            )
        store(central, "XLG", "auto", auto)
        store(central, "XLG", "survey", survey)


def bench_compare(pairs: int, n_boot: int, out: Path) -> dict[str, Any]:
    from chamberd.network_sync.central import Central
    from chamberd.network_sync.compare.comparison import compare
    from chamberd.network_sync.compare.report import render_report

    url = f"sqlite:///{out / 'central.db'}"
    _campaign(url, pairs)
    started = time.perf_counter()
    with Central.connect(url, mode="read") as central:
        comparison = compare(
            central,
            "XLG/auto/C1",
            "XLG/survey/S1",
            n_boot=n_boot,
            by=("month", "hour", "flux", "temperature"),
        )
    compared = time.perf_counter() - started
    started = time.perf_counter()
    path = render_report(comparison, out / "compare.html")
    rendered = time.perf_counter() - started
    return {
        "pairs": len(comparison.pairing),
        "compare_s": round(compared, 2),
        "render_s": round(rendered, 2),
        "size_mb": round(path.stat().st_size / 1e6, 3),
        "path": str(path),
    }


def bench_browser(paths: list[str]) -> dict[str, Any]:
    from browser import Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        return {"skipped": "Chromium not found"}
    browser = Browser(executable, timeout_s=300)
    out: dict[str, Any] = {"version": browser.version}
    try:
        for path in paths:
            started = time.perf_counter()
            page = browser.open(path)
            loaded = time.perf_counter() - started
            images = page.images(timeout_s=600)
            decoded = time.perf_counter() - started
            page.close()
            out[Path(path).name] = {
                "load_s": round(loaded, 2),
                "all_figures_decoded_s": round(decoded, 2),
                "figures": len(images),
                "figures_loaded": sum(i["naturalWidth"] > 0 for i in images),
            }
    finally:
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6, help="copies of the LI-8100A folder")
    parser.add_argument("--pairs", type=int, default=10000, help="pairs of the comparison")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--keep", help="folder to keep the reports in (default: temporary)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chamberd-bench-reports-") as tmp:
        out = Path(args.keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"machine": state()}
        result["fit"] = bench_fit(_shared_data() / "li8100a", args.copies, out)
        result["compare"] = bench_compare(args.pairs, args.boot, out)
        paths = [v["path"] for v in result["fit"].values()] + [result["compare"]["path"]]
        result["browser"] = bench_browser(paths)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
